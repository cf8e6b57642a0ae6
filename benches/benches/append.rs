//! append: the store writer's append path (route to the partition of the
//! record's time, encode, checksum, write into the log's map), 100 000 mappings.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use natrec_benches::mapping;
use natrec_storage::{Store, StoreConfig};

const N: u32 = 100_000;

fn bench(c: &mut Criterion) {
    let ms: Vec<_> = (0..N).map(mapping).collect();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(10);
    g.bench_function("100k_mappings", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::create(&dir.path().join("s"), StoreConfig::default()).unwrap();
                let w = store.writer().unwrap();
                (dir, w)
            },
            |(dir, mut w)| {
                for m in &ms {
                    w.append(m).unwrap();
                }
                (dir, w)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
