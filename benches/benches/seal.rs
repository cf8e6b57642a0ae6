//! seal: reduce, sort by public endpoint and time, checksum and publish one
//! partition of 100 000 mappings (the index build: a sealed partition is its
//! own sorted index).
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use natrec_benches::mapping;
use natrec_storage::{Store, StoreConfig};

const N: u32 = 100_000;

fn bench(c: &mut Criterion) {
    let ms: Vec<_> = (0..N).map(mapping).collect();
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(10);
    g.bench_function("100k_mappings", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::create(&dir.path().join("s"), StoreConfig::default()).unwrap();
                let mut w = store.writer().unwrap();
                for m in &ms {
                    w.append(m).unwrap();
                }
                w.flush().unwrap();
                (dir, w)
            },
            |(dir, mut w)| {
                w.seal_all().unwrap();
                (dir, w)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
