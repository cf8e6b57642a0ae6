//! lookup: "who held public ip:port at T" on a sealed store of 1 000 000
//! mappings over 17 one-hour partitions, random held mappings.
use criterion::{criterion_group, criterion_main, Criterion};
use natrec_benches::{mapping, S};
use natrec_storage::{Query, Store, StoreConfig};

const N: u32 = 1_000_000;
const LOOKUPS: usize = 4096;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("s"), StoreConfig::default()).unwrap();
    {
        let mut w = store.writer().unwrap();
        for i in 0..N {
            w.append(&mapping(i)).unwrap();
        }
        w.seal_all().unwrap();
    }
    let reader = store.reader();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let qs: Vec<Query> = (0..LOOKUPS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = mapping((x % u64::from(N)) as u32);
            Query::at(m.public.ip(), m.public.port(), m.first_ns + S)
        })
        .collect();
    let mut i = 0;
    c.bench_function("lookup/point_1m_mappings_17_partitions", |b| {
        b.iter(|| {
            i = (i + 1) % LOOKUPS;
            let out = reader.lookup(&qs[i]).unwrap();
            assert!(!out.holders.is_empty());
            out
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
