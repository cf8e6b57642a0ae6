//! decode: one captured packet's bytes → `Decoded` (SLL2 and Ethernet+VLAN, IPv4 TCP).
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use natrec_capture::decode::{decode, linktype};

fn ipv4_tcp() -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 92, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 100, 64, 0, 2, 198, 18, 0, 1,
    ];
    p.extend_from_slice(&[
        0x9c, 0x41, 0x01, 0xbb, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x50, 0x18, 0xfa, 0xf0, 0, 0, 0, 0,
    ]);
    p.extend((0..52u8).map(|i| i.wrapping_mul(37)));
    p
}

fn bench(c: &mut Criterion) {
    let ip = ipv4_tcp();
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(&ip);
    let mut vlan = vec![
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xfe, 0x81, 0x00, 0, 10, 0x08, 0x00,
    ];
    vlan.extend_from_slice(&ip);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sll2_ipv4_tcp", |b| {
        b.iter(|| decode(black_box(linktype::LINUX_SLL2), black_box(&sll2)))
    });
    g.bench_function("ethernet_vlan_ipv4_tcp", |b| {
        b.iter(|| decode(black_box(linktype::ETHERNET), black_box(&vlan)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
