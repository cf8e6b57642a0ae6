//! decode: one captured packet's bytes → `Decoded` (SLL2 and Ethernet+VLAN, IPv4 TCP); and
//! `Preparer::prepare_bytes` (the fused fast path replay uses) on Ethernet IPv4, IPv6 and
//! VLAN + PPPoE.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use natrec_capture::correlate::{CorrelatorConfig, Preparer};
use natrec_capture::decode::{decode, linktype};

/// The same TCP segment over IPv6 (100.64.0.2 → fd00::6440:2, 198.18.0.1 → 2001:db8::c612:1).
fn ipv6_tcp(v4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((v4.len() - 20) as u16).to_be_bytes());
    p.extend_from_slice(&[6, 64]);
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&v4[12..16]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&v4[16..20]);
    p.extend_from_slice(&v4[20..]);
    p
}

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

    let preparer = Preparer::new(&CorrelatorConfig::default());
    let eth = |ether_type: [u8; 2], rest: &[u8]| {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xfe];
        f.extend_from_slice(&ether_type);
        f.extend_from_slice(rest);
        f
    };
    let eth4 = eth([0x08, 0x00], &ip);
    let eth6 = eth([0x86, 0xdd], &ipv6_tcp(&ip));
    let mut session = vec![0, 100, 0x88, 0x64, 0x11, 0, 0x12, 0x34];
    session.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    session.extend_from_slice(&[0x00, 0x21]);
    session.extend_from_slice(&ip);
    let pppoe = eth([0x81, 0x00], &session);
    let mut g = c.benchmark_group("prepare_bytes");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [
        ("ethernet_ipv4_tcp", &eth4),
        ("ethernet_ipv6_tcp", &eth6),
        ("ethernet_vlan_pppoe_ipv4_tcp", &pppoe),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| preparer.prepare_bytes(black_box(linktype::ETHERNET), black_box(frame)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
