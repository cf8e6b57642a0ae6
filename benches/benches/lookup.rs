//! lookup: "who held public ip:port at T" on a sealed store of 1 000 000
//! mappings over 17 one-hour partitions, random held mappings; and in the
//! active log of a partition still being written (200 000 records).
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

/// The current hour: its records are still in the active log, which a lookup
/// scans (the committed length found with one CRC per 256 records, then the
/// public address compared in each slot).
fn bench_active_log(c: &mut Criterion) {
    const RECORDS: u32 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("s"), StoreConfig::default()).unwrap();
    let mut w = store.writer().unwrap();
    for i in 0..RECORDS {
        w.append(&mapping(i)).unwrap();
    }
    w.flush().unwrap();
    let reader = store.reader();
    let mut i = 0u32;
    c.bench_function("lookup/point_active_log_200k_records", |b| {
        b.iter(|| {
            i = (i + 7919) % RECORDS;
            let m = mapping(i);
            let out = reader
                .lookup(&Query::at(m.public.ip(), m.public.port(), m.first_ns + S))
                .unwrap();
            assert!(!out.holders.is_empty());
            out
        })
    });
    drop(w);
}

criterion_group!(benches, bench, bench_active_log);
criterion_main!(benches);
