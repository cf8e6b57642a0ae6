//! natrec micro benchmarks, one file per hot path in `benches/` (criterion):
//! `decode`, `correlate`, `append`, `seal`, `lookup`. Shared inputs live here.
//!
//! ```sh
//! cargo bench -p natrec-benches                 # all
//! cargo bench -p natrec-benches --bench correlate
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Nanoseconds in a second.
pub const S: i64 = 1_000_000_000;
/// 2026-03-01T13:30:00Z in ns.
pub const T0: i64 = 1_772_371_800 * S;

/// A subscriber address, 100.64.0.0/10.
pub fn internal_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x6440_0000 + 2 + (i % 1_000_000)))
}

/// A public address of a 16-address pool, 203.0.113.1..
pub fn public_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xcb00_7101 + (i % 16)))
}

/// A remote address, 198.18.0.0/15.
pub fn remote_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc612_0000 + (i % 100_000)))
}

/// The `i`th synthetic mapping, starting `i` ms after [`T0`].
pub fn mapping(i: u32) -> natrec_storage::Mapping {
    use natrec_storage::{EndReason, Mapping, Proto};
    let t = T0 + i64::from(i) * 1_000_000;
    Mapping {
        proto: Proto::Tcp,
        internal: SocketAddr::new(internal_ip(i.wrapping_mul(7919)), 40_000 + (i % 512) as u16),
        public: SocketAddr::new(public_ip(i), 1024 + (i % 64_000) as u16),
        remote: SocketAddr::new(remote_ip(i), 443),
        first_ns: t,
        last_ns: t + 2 * S,
        end: EndReason::Fin,
        packets_out: 6,
        packets_in: 5,
        flags: 0,
    }
}
