//! correlate: pairing both copies of translated packets and folding them into
//! flows (UDP request/reply flows, 20 000 flows, 4 packets each = 160 000 copies).
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use natrec_benches::{internal_ip, public_ip, remote_ip, T0};
use natrec_capture::correlate::{Correlator, CorrelatorConfig, Side};
use natrec_capture::decode::{Decoded, LinkInfo};
use natrec_storage::Proto;

const FLOWS: u32 = 20_000;

fn pkt(src: SocketAddr, dst: SocketAddr, id: u32) -> Decoded {
    Decoded {
        link: LinkInfo::default(),
        proto: Proto::Udp,
        src: src.ip(),
        dst: dst.ip(),
        sport: src.port(),
        dport: dst.port(),
        ip_id: id & 0xffff,
        ip_total_len: 60,
        tcp: None,
        icmp_seq: 0,
        payload_fp: u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        payload_len: 32,
        payload_fp_bytes: 16,
    }
}

/// (ts, side, packet): every packet's pre copy then its post copy 5 µs later.
fn workload() -> Vec<(i64, Side, Decoded)> {
    let mut v = Vec::new();
    for f in 0..FLOWS {
        let internal = SocketAddr::new(internal_ip(f), 40_000 + (f % 512) as u16);
        let public = SocketAddr::new(public_ip(f), 1024 + (f % 60_000) as u16);
        let remote = SocketAddr::new(remote_ip(f), 53);
        for k in 0..4u32 {
            let t = T0 + i64::from(f) * 20_000 + i64::from(k) * 5_000;
            let id = f * 4 + k;
            if k % 2 == 0 {
                v.push((t, Side::Inside, pkt(internal, remote, id)));
                v.push((t + 1_000, Side::Outside, pkt(public, remote, id)));
            } else {
                v.push((t, Side::Outside, pkt(remote, public, id)));
                v.push((t + 1_000, Side::Inside, pkt(remote, internal, id)));
            }
        }
    }
    v.sort_by_key(|e| e.0);
    v
}

fn bench(c: &mut Criterion) {
    let w = workload();
    let mut g = c.benchmark_group("correlate");
    g.throughput(Throughput::Elements(w.len() as u64));
    g.sample_size(20);
    g.bench_function("udp_flows_4_packets", |b| {
        b.iter_batched(
            || {
                (
                    Correlator::new(CorrelatorConfig::default()),
                    Vec::with_capacity(1024),
                )
            },
            |(mut c, mut out)| {
                for (ts, side, p) in &w {
                    c.push(*ts, *side, p, &mut out);
                    out.clear();
                }
                c.finish(&mut out);
                c
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
