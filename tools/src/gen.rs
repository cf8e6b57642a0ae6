//! `natrec-gen`: writes the capture of a Linux source-NAT host carrying N
//! flows, and the truth (the mappings the simulated NAT made).
//!
//! The model is Linux netfilter SNAT/MASQUERADE with a pool:
//! * each subscriber sticks to one public address of the pool (hash of its
//!   address, as a CGN does);
//! * the subscriber's port is kept when the public tuple (proto, public
//!   ip:port, remote ip:port) is free, else another port is taken (a
//!   pseudo-random start in 1024..65535, then the next free one), so one
//!   public ip:port is held at once by several subscribers towards different
//!   remotes;
//! * a tuple is busy from its first packet until its last packet plus the
//!   hold time of its protocol, then free for reuse (by anyone);
//! * ICMP echo identifiers are kept or remapped the same way.
//!
//! Every translated packet appears twice with the same IP id, lengths, TCP
//! seq/ack/flags, ICMP sequence and payload bytes: the pre-translation copy
//! and, a few µs later (sometimes before, as two capture points disagree),
//! the post-translation copy. A small share of packets are the NAT host's own
//! (outside only, never a mapping).
//!
//! Link layers: `sll2` (one `tcpdump -i any` file, inside ifindex 2, outside
//! 3), `vlan` (one Ethernet mirror file, inside VLAN 10, outside VLAN 20),
//! `two-eth` (inside.pcap and outside.pcap, plain Ethernet).
//!
//! `--ip 6` writes the same traffic as NAT66 (IPv6 without extension headers;
//! each IPv4 address a.b.c.d of the model becomes fd00::a.b.c.d for a
//! subscriber and 2001:db8:ffff::a.b.c.d for the pool, the NAT host and the
//! remotes; ICMP echo becomes ICMPv6 echo; the IP id has no IPv6 field, and a
//! per-flow, per-direction flow label takes its place as Linux's automatic
//! flow labels do). `--inside-encap pppoe` carries the subscriber side in PPPoE
//! sessions (one session per subscriber), as a BRAS sees it.
//!
//! Output directory: the capture(s), `truth.jsonl` (one line per mapping, the
//! format of tests/fixtures/natlab.truth.jsonl) and `gen.json` (parameters,
//! counts and the `natrec replay` arguments that match the generator's hold
//! times and sides).
//!
//! Deterministic: the same arguments give the same bytes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

const USAGE: &str =
    "usage: natrec-gen --out DIR [--packets N] [--seed S] [--link sll2|vlan|two-eth]
  [--ip 4|6] [--inside-encap none|pppoe]
  [--subscribers N] [--pool N] [--remotes N] [--flow-rate FLOWS_PER_S] [--mean-len PACKETS]
  [--mix TCP,UDP,ICMP] [--own-permille N] [--port-range N] [--snaplen BYTES]
  [--hold-tcp-closed S] [--hold-tcp-open S] [--hold-udp S] [--hold-udp-stream S] [--hold-icmp S]";

/// Payload bytes that are random (the rest of a fully captured payload is zero).
const PAYLOAD_RANDOM_MAX: usize = 48;
/// Most packets in one flow.
const FLOW_PACKETS_MAX: u32 = 400;
/// Margin added to a tuple's hold before it may be reused, ns: the
/// correlator looks for idle flows once per second of packet time.
const REUSE_MARGIN_NS: i64 = 3_000_000_000;
/// Tries to find a subscriber port not in use towards the chosen remote.
const CLIENT_PORT_TRIES_MAX: u32 = 64;
const NS: i64 = 1_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Sll2,
    Vlan,
    TwoEth,
}

struct Params {
    out: PathBuf,
    packets: u64,
    seed: u64,
    link: Link,
    /// NAT66: every address of the model written as IPv6 (see the module docs).
    ip6: bool,
    /// The subscriber side in PPPoE sessions.
    pppoe: bool,
    subscribers: u32,
    pool: u32,
    remotes: u32,
    flow_rate: f64,
    mean_len: f64,
    mix: [u32; 3],
    own_permille: u32,
    port_range: u32,
    /// Bytes kept of each packet (link header included); natlog refuses cut packets.
    snaplen: u32,
    /// tcp_closed, tcp_open, udp, udp_stream, icmp; seconds.
    hold: [u32; 5],
    start_unix: i64,
}

impl Params {
    fn parse(args: Vec<String>) -> Result<Params> {
        let mut p = Params {
            out: PathBuf::new(),
            packets: 10_000_000,
            seed: 1,
            link: Link::Sll2,
            ip6: false,
            pppoe: false,
            subscribers: 50_000,
            pool: 16,
            remotes: 20_000,
            flow_rate: 20_000.0,
            mean_len: 10.0,
            mix: [60, 35, 5],
            own_permille: 5,
            port_range: 512,
            snaplen: 128,
            hold: [10, 300, 10, 30, 10],
            start_unix: 1_772_323_200 + 13 * 3600 + 1800, // 2026-03-01T13:30:00Z
        };
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            if a == "-h" || a == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let v = args
                .get(i + 1)
                .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
            match a {
                "--out" => p.out = PathBuf::from(v),
                "--packets" => p.packets = v.replace('_', "").parse()?,
                "--seed" => p.seed = v.parse()?,
                "--link" => {
                    p.link = match v.as_str() {
                        "sll2" => Link::Sll2,
                        "vlan" => Link::Vlan,
                        "two-eth" => Link::TwoEth,
                        _ => bail!("--link: sll2, vlan or two-eth"),
                    }
                }
                "--ip" => {
                    p.ip6 = match v.as_str() {
                        "4" => false,
                        "6" => true,
                        _ => bail!("--ip: 4 or 6"),
                    }
                }
                "--inside-encap" => {
                    p.pppoe = match v.as_str() {
                        "none" => false,
                        "pppoe" => true,
                        _ => bail!("--inside-encap: none or pppoe"),
                    }
                }
                "--subscribers" => p.subscribers = v.parse()?,
                "--pool" => p.pool = v.parse()?,
                "--remotes" => p.remotes = v.parse()?,
                "--flow-rate" => p.flow_rate = v.parse()?,
                "--mean-len" => p.mean_len = v.parse()?,
                "--mix" => {
                    let v: Vec<u32> = v.split(',').map(str::parse).collect::<Result<_, _>>()?;
                    if v.len() != 3 || v.iter().sum::<u32>() == 0 {
                        bail!("--mix TCP,UDP,ICMP (relative weights)");
                    }
                    p.mix = [v[0], v[1], v[2]];
                }
                "--own-permille" => p.own_permille = v.parse()?,
                "--port-range" => p.port_range = v.parse()?,
                "--snaplen" => p.snaplen = v.parse()?,
                "--hold-tcp-closed" => p.hold[0] = v.parse()?,
                "--hold-tcp-open" => p.hold[1] = v.parse()?,
                "--hold-udp" => p.hold[2] = v.parse()?,
                "--hold-udp-stream" => p.hold[3] = v.parse()?,
                "--hold-icmp" => p.hold[4] = v.parse()?,
                _ => bail!("unknown argument {a}\n{USAGE}"),
            }
            i += 2;
        }
        if p.out.as_os_str().is_empty() {
            bail!("--out DIR is required\n{USAGE}");
        }
        if p.subscribers == 0 || p.subscribers > 1 << 20 || p.pool == 0 || p.pool > 250 {
            bail!("--subscribers 1..=1048576, --pool 1..=250");
        }
        if !(96..=65_535).contains(&p.snaplen) {
            bail!("--snaplen 96..=65535");
        }
        if p.remotes == 0 || p.remotes > 1 << 24 || p.port_range == 0 || p.port_range > 28_000 {
            bail!("--remotes 1..=16777216, --port-range 1..=28000");
        }
        Ok(p)
    }

    /// Longest hold of a protocol (any state), ns.
    fn hold_max_ns(&self, proto: u8) -> i64 {
        let s = match proto {
            6 => self.hold[0].max(self.hold[1]),
            17 => self.hold[2].max(self.hold[3]),
            _ => self.hold[4],
        };
        i64::from(s) * NS
    }
}

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

#[derive(Clone, Copy)]
struct Pkt {
    /// Time of the pre-translation copy, ns.
    ts: i64,
    /// Post-translation copy minus pre copy, ns (negative: seen first).
    post_dt: i32,
    out: bool,
    flags: u8,
    ip_id: u16,
    seq: u32,
    ack: u32,
    payload_len: u16,
}

/// A copy to write: (ts, order, flow slot, packet index, post copy?).
type CopyEvent = (i64, u64, u32, u16, bool);

struct Flow {
    id: u64,
    proto: u8,
    /// The NAT host's own traffic: outside copies only, not a mapping.
    own: bool,
    internal: (u32, u16),
    public: (u32, u16),
    remote: (u32, u16),
    pkts: Vec<Pkt>,
    copies_left: u32,
}

/// (proto, ip, port, remote ip, remote port) packed.
fn tuple(proto: u8, ip: u32, port: u16, r: (u32, u16)) -> u128 {
    (u128::from(proto) << 96)
        | (u128::from(ip) << 64)
        | (u128::from(port) << 48)
        | (u128::from(r.0) << 16)
        | u128::from(r.1)
}

const POOL_BASE: u32 = 0xcb00_7100; // 203.0.113.0
const NAT_HOST_OWN: u32 = 0xcb00_71fe; // 203.0.113.254, not in the pool
const SUB_BASE: u32 = 0x6440_0000; // 100.64.0.0
const REMOTE_BASE: u32 = 0xc612_0000; // 198.18.0.0/15 and up (benchmarking range)

struct Nat<'a> {
    p: &'a Params,
    /// Public tuple → busy until (ns).
    public_busy: HashMap<u128, i64>,
    /// (proto, internal, remote) → busy until (ns).
    flow_busy: HashMap<u128, i64>,
}

impl Nat<'_> {
    fn free(map: &HashMap<u128, i64>, k: u128, t: i64) -> bool {
        map.get(&k).is_none_or(|&u| u < t)
    }

    /// Linux-like SNAT: keep the port when the public tuple is free, else the
    /// next free one from a pseudo-random start. `None` if the pool is full.
    fn allocate(
        &self,
        proto: u8,
        internal: (u32, u16),
        remote: (u32, u16),
        t: i64,
    ) -> Option<(u32, u16)> {
        let ip = POOL_BASE + 1 + (mix64(u64::from(internal.0)) % u64::from(self.p.pool)) as u32;
        if Self::free(&self.public_busy, tuple(proto, ip, internal.1, remote), t) {
            return Some((ip, internal.1));
        }
        let (lo, n) = if proto == 1 {
            (0u32, 65_536u32)
        } else {
            (1024, 64_512)
        };
        let start = (mix64(tuple(proto, internal.0, internal.1, remote) as u64 ^ t as u64)
            % u64::from(n)) as u32;
        for i in 0..n {
            let port = (lo + (start + i) % n) as u16;
            if Self::free(&self.public_busy, tuple(proto, ip, port, remote), t) {
                return Some((ip, port));
            }
        }
        None
    }
}

fn proto_name(p: u8, ip6: bool) -> &'static str {
    match (p, ip6) {
        (6, _) => "tcp",
        (17, _) => "udp",
        (_, false) => "icmp",
        (_, true) => "icmpv6",
    }
}

/// The packets of one flow starting at `t0`.
fn schedule(rng: &mut Rng, p: &Params, proto: u8, own: bool, t0: i64) -> Vec<Pkt> {
    // Long-lived flows (5 %): packets far apart (a UDP stream, a TCP session).
    let long = rng.below(100) < 5;
    let gap_mean_ns = if long { 400e6 } else { 3e6 };
    let mut len = (1.0 + rng.exp(p.mean_len - 1.0)).round() as u32;
    len = len.clamp(1, FLOW_PACKETS_MAX);
    let mut v = Vec::with_capacity(len as usize + 6);
    let mut t = t0;
    let mut push =
        |rng: &mut Rng, out: bool, flags: u8, seq: u32, ack: u32, plen: u16, t: &mut i64| {
            let post_dt = if rng.below(50) == 0 {
                -(1_000 + rng.below(20_000) as i32)
            } else {
                2_000 + rng.below(40_000) as i32
            };
            v.push(Pkt {
                ts: *t,
                post_dt,
                out,
                flags,
                ip_id: rng.next() as u16,
                seq,
                ack,
                payload_len: plen,
            });
            *t += 50_000 + rng.exp(gap_mean_ns) as i64;
        };
    match proto {
        6 if !own => {
            const FIN: u8 = 1;
            const SYN: u8 = 2;
            const RST: u8 = 4;
            const PSH: u8 = 8;
            const ACK: u8 = 16;
            let (mut c, mut s) = (rng.next() as u32, rng.next() as u32);
            push(rng, true, SYN, c, 0, 0, &mut t);
            c = c.wrapping_add(1);
            push(rng, false, SYN | ACK, s, c, 0, &mut t);
            s = s.wrapping_add(1);
            push(rng, true, ACK, c, s, 0, &mut t);
            for _ in 0..len.saturating_sub(6) {
                let out = rng.below(3) == 0;
                let plen = 1 + rng.below(1400) as u16;
                if out {
                    push(rng, true, PSH | ACK, c, s, plen, &mut t);
                    c = c.wrapping_add(u32::from(plen));
                } else {
                    push(rng, false, PSH | ACK, s, c, plen, &mut t);
                    s = s.wrapping_add(u32::from(plen));
                }
            }
            if rng.below(20) == 0 {
                let out = rng.below(2) == 0;
                push(
                    rng,
                    out,
                    RST | ACK,
                    if out { c } else { s },
                    if out { s } else { c },
                    0,
                    &mut t,
                );
            } else {
                push(rng, true, FIN | ACK, c, s, 0, &mut t);
                c = c.wrapping_add(1);
                push(rng, false, FIN | ACK, s, c, 0, &mut t);
                s = s.wrapping_add(1);
                push(rng, true, ACK, c, s, 0, &mut t);
            }
        }
        _ => {
            // UDP request/response (10 % never answered) or ICMP echo.
            let answered = rng.below(10) != 0;
            let n = len.max(1);
            for i in 0..n {
                let out = i % 2 == 0 || !answered;
                let plen = if proto == 1 {
                    56
                } else {
                    20 + rng.below(500) as u16
                };
                // ICMP: `seq` carries the echo sequence number.
                push(rng, out, 0, i / 2 + 1, 0, plen, &mut t);
            }
        }
    }
    v
}

struct Out {
    link: Link,
    ip6: bool,
    pppoe: bool,
    snaplen: usize,
    any: Option<BufWriter<File>>,
    inside: Option<BufWriter<File>>,
    outside: Option<BufWriter<File>>,
    buf: Vec<u8>,
    written: u64,
    bytes: u64,
}

fn pcap_header(linktype: u32, snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&linktype.to_le_bytes());
    h
}

impl Out {
    fn create(p: &Params) -> Result<Out> {
        std::fs::create_dir_all(&p.out).with_context(|| format!("create {}", p.out.display()))?;
        let open = |name: &str, lt: u32| -> Result<BufWriter<File>> {
            let path = p.out.join(name);
            let mut w = BufWriter::with_capacity(
                1 << 20,
                File::create(&path).with_context(|| format!("create {}", path.display()))?,
            );
            w.write_all(&pcap_header(lt, p.snaplen))?;
            Ok(w)
        };
        let mut o = Out {
            link: p.link,
            ip6: p.ip6,
            pppoe: p.pppoe,
            snaplen: p.snaplen as usize,
            any: None,
            inside: None,
            outside: None,
            buf: Vec::with_capacity(256),
            written: 0,
            bytes: 0,
        };
        match p.link {
            Link::Sll2 => o.any = Some(open("capture.pcap", 276)?),
            Link::Vlan => o.any = Some(open("capture.pcap", 1)?),
            Link::TwoEth => {
                o.inside = Some(open("inside.pcap", 1)?);
                o.outside = Some(open("outside.pcap", 1)?);
            }
        }
        Ok(o)
    }

    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        ts: i64,
        inside: bool,
        f: &Flow,
        k: usize,
        src: (u32, u16),
        dst: (u32, u16),
    ) -> Result<()> {
        let pk = &f.pkts[k];
        let b = &mut self.buf;
        b.clear();
        let l4_len: usize = if f.proto == 6 { 20 } else { 8 };
        let ip_len = if self.ip6 { 40 } else { 20 };
        let total = ip_len + l4_len + usize::from(pk.payload_len);
        let pppoe = self.pppoe && inside;
        let ether_type: u16 = match (pppoe, self.ip6) {
            (true, _) => 0x8864,
            (false, true) => 0x86dd,
            (false, false) => 0x0800,
        };
        let eth = |b: &mut Vec<u8>, vlan: Option<u16>| {
            // dst and src MAC (locally administered), then tag and EtherType.
            b.extend_from_slice(&[0x02, 0, 0, 0, 0, if inside { 1 } else { 2 }]);
            b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]);
            if let Some(v) = vlan {
                b.extend_from_slice(&0x8100u16.to_be_bytes());
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.extend_from_slice(&ether_type.to_be_bytes());
        };
        match self.link {
            Link::Sll2 => {
                b.extend_from_slice(&ether_type.to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&(if inside { 2u32 } else { 3 }).to_be_bytes());
                b.extend_from_slice(&1u16.to_be_bytes());
                // Packet type: to us (inside copy arriving from a subscriber or
                // delivered to one) or outgoing.
                b.push(if inside == pk.out { 0 } else { 4 });
                b.push(6);
                b.extend_from_slice(&[0x02, 0, 0, 0, 0, if inside { 1 } else { 2 }, 0, 0]);
            }
            Link::Vlan => eth(b, Some(if inside { 10 } else { 20 })),
            Link::TwoEth => eth(b, None),
        }
        if pppoe {
            // Session header (version 1, type 1, code 0, the subscriber's
            // session, PPP length), then PPP's protocol field.
            let session = 1 + ((f.internal.0 - SUB_BASE) % 0xfffe) as u16;
            b.extend_from_slice(&[0x11, 0]);
            b.extend_from_slice(&session.to_be_bytes());
            b.extend_from_slice(&(2 + total as u16).to_be_bytes());
            b.extend_from_slice(&(if self.ip6 { 0x0057u16 } else { 0x0021 }).to_be_bytes());
        }
        let link_len = b.len();
        // TTL: the NAT forwards, so the later copy has one less.
        let first_is_inside = pk.out;
        let ttl = if pk.out { 64 } else { 52 } - u8::from(inside != first_is_inside);
        if self.ip6 {
            let label = (mix64(f.id ^ u64::from(pk.out) << 63) & 0xf_ffff) as u32;
            b.extend_from_slice(&(6 << 28 | label).to_be_bytes());
            b.extend_from_slice(&((l4_len + usize::from(pk.payload_len)) as u16).to_be_bytes());
            b.push(if f.proto == 1 { 58 } else { f.proto });
            b.push(ttl);
            b.extend_from_slice(&ip6(src.0).octets());
            b.extend_from_slice(&ip6(dst.0).octets());
        } else {
            ipv4_header(b, total, pk.ip_id, ttl, f.proto, src.0, dst.0);
        }
        match f.proto {
            6 => {
                b.extend_from_slice(&src.1.to_be_bytes());
                b.extend_from_slice(&dst.1.to_be_bytes());
                b.extend_from_slice(&pk.seq.to_be_bytes());
                b.extend_from_slice(&pk.ack.to_be_bytes());
                b.extend_from_slice(&[0x50, pk.flags]);
                b.extend_from_slice(&64240u16.to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, 0]);
            }
            17 => {
                b.extend_from_slice(&src.1.to_be_bytes());
                b.extend_from_slice(&dst.1.to_be_bytes());
                b.extend_from_slice(&(8 + pk.payload_len).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
            }
            _ => {
                // Echo request carries the identifier as the source "port",
                // the reply as the destination "port".
                let id = if pk.out { src.1 } else { dst.1 };
                b.push(match (self.ip6, pk.out) {
                    (false, true) => 8,
                    (false, false) => 0,
                    (true, true) => 128,
                    (true, false) => 129,
                });
                b.extend_from_slice(&[0, 0, 0]);
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&(pk.seq as u16).to_be_bytes());
            }
        }
        let captured = usize::from(pk.payload_len).min(self.snaplen.saturating_sub(b.len()));
        let mut h = mix64(f.id.wrapping_mul(1_000_003) ^ k as u64);
        for i in 0..captured.min(PAYLOAD_RANDOM_MAX) {
            if i % 8 == 0 {
                h = mix64(h);
            }
            b.push((h >> ((i % 8) * 8)) as u8);
        }
        b.resize(b.len() + captured.saturating_sub(PAYLOAD_RANDOM_MAX), 0);
        let orig = (link_len + total) as u32;
        let w = match (self.link, inside) {
            (Link::TwoEth, true) => self.inside.as_mut(),
            (Link::TwoEth, false) => self.outside.as_mut(),
            _ => self.any.as_mut(),
        }
        .expect("file for this side");
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&((ts / NS) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&(((ts % NS) / 1000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(b.len() as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&orig.to_le_bytes());
        w.write_all(&rec)?;
        w.write_all(b)?;
        self.written += 1;
        self.bytes += 16 + b.len() as u64;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        for w in [self.any, self.inside, self.outside].into_iter().flatten() {
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        Ok(())
    }
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// The NAT66 form of a model address: fd00::a.b.c.d for a subscriber
/// (100.64.0.0/10), 2001:db8:ffff::a.b.c.d for the rest.
fn ip6(a: u32) -> Ipv6Addr {
    let prefix: u128 = if a & 0xffc0_0000 == SUB_BASE {
        0xfd00 << 112
    } else {
        0x2001_0db8_ffff << 80
    };
    Ipv6Addr::from(prefix | u128::from(a))
}

/// An IPv4 header without options, with its checksum.
fn ipv4_header(b: &mut Vec<u8>, total: usize, id: u16, ttl: u8, proto: u8, src: u32, dst: u32) {
    let ip_start = b.len();
    b.extend_from_slice(&[0x45, 0]);
    b.extend_from_slice(&(total as u16).to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
    b.push(ttl);
    b.push(proto);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&src.to_be_bytes());
    b.extend_from_slice(&dst.to_be_bytes());
    let mut sum: u32 = 0;
    for c in b[ip_start..ip_start + 20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    b[ip_start + 10..ip_start + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Runs `natrec-gen` with `args` (the command line without the program
/// name); see the module docs and `--help` for the arguments.
pub fn run(args: Vec<String>) -> Result<()> {
    let p = Params::parse(args)?;
    let started = std::time::Instant::now();
    let mut rng = Rng(p.seed ^ 0x6e61_7472_6563);
    let mut nat = Nat {
        p: &p,
        public_busy: HashMap::new(),
        flow_busy: HashMap::new(),
    };
    let mut out = Out::create(&p)?;
    let truth_path = p.out.join("truth.jsonl");
    let mut truth = BufWriter::new(
        File::create(&truth_path).with_context(|| format!("create {}", truth_path.display()))?,
    );

    // Min-heap of copies to write: (ts, order, flow slot, packet, post copy?).
    let mut heap: BinaryHeap<Reverse<CopyEvent>> = BinaryHeap::new();
    let mut slots: Vec<Option<Flow>> = Vec::new();
    let mut free_slots: Vec<u32> = Vec::new();
    let mut order = 0u64;
    let mut copies_planned = 0u64;
    let mut next_arrival = p.start_unix * NS;
    let mut flow_id = 0u64;
    let (mut mappings, mut own_flows, mut skipped_flows, mut remapped) = (0u64, 0u64, 0u64, 0u64);
    let mix_total: u32 = p.mix.iter().sum();
    let mut last_ts = 0i64;
    let addr = |a: u32| {
        if p.ip6 {
            ip6(a).to_string()
        } else {
            ip(a).to_string()
        }
    };

    loop {
        let creating = copies_planned < p.packets;
        let head = heap.peek().map(|Reverse(e)| e.0);
        if creating && head.is_none_or(|h| next_arrival <= h) {
            let t0 = next_arrival;
            next_arrival += rng.exp(NS as f64 / p.flow_rate).max(1.0) as i64;
            flow_id += 1;
            let own = rng.below(1000) < p.own_permille;
            let r = rng.below(mix_total);
            let proto = if r < p.mix[0] {
                6
            } else if r < p.mix[0] + p.mix[1] {
                17
            } else {
                1
            };
            // Popular remotes are popular: 30 % of flows go to 16 big services,
            // the rest to the square of a uniform (low indices more often).
            let ri = if rng.below(10) < 3 {
                rng.below(p.remotes.min(16))
            } else {
                let u = rng.unit();
                ((u * u) * f64::from(p.remotes)) as u32
            };
            let remote_port = match proto {
                6 => [443u16, 80, 443, 8080, 22, 993][rng.below(6) as usize],
                17 => [53u16, 443, 123, 3478, 51820][rng.below(5) as usize],
                _ => 0,
            };
            let remote = (REMOTE_BASE + ri, remote_port);
            let pkts = schedule(&mut rng, &p, proto, own, t0);
            let last = pkts
                .iter()
                .map(|k| k.ts + i64::from(k.post_dt.max(0)))
                .max()
                .expect("a packet");
            let busy_until = last + p.hold_max_ns(proto) + REUSE_MARGIN_NS;
            let (internal, public) = if own {
                own_flows += 1;
                let port = 32768 + rng.below(28_000) as u16;
                ((NAT_HOST_OWN, port), (NAT_HOST_OWN, port))
            } else {
                let sub = SUB_BASE + 2 + rng.below(p.subscribers);
                let mut found = None;
                for _ in 0..CLIENT_PORT_TRIES_MAX {
                    let port = if proto == 1 {
                        1 + rng.below(p.port_range) as u16
                    } else {
                        40_000 + rng.below(p.port_range) as u16
                    };
                    if Nat::free(&nat.flow_busy, tuple(proto, sub, port, remote), t0) {
                        found = Some((sub, port));
                        break;
                    }
                }
                let Some(internal) = found else {
                    skipped_flows += 1;
                    continue;
                };
                let Some(public) = nat.allocate(proto, internal, remote, t0) else {
                    skipped_flows += 1;
                    continue;
                };
                nat.flow_busy
                    .insert(tuple(proto, internal.0, internal.1, remote), busy_until);
                nat.public_busy
                    .insert(tuple(proto, public.0, public.1, remote), busy_until);
                remapped += u64::from(public.1 != internal.1);
                mappings += 1;
                let first = pkts
                    .iter()
                    .map(|k| k.ts + i64::from(k.post_dt.min(0)))
                    .min()
                    .expect("a packet");
                let hold = match proto {
                    // FIN both ways (or RST): TIME_WAIT hold.
                    6 if pkts.iter().any(|k| k.flags & 5 != 0) => p.hold[0],
                    6 => p.hold[1],
                    17 if pkts.iter().any(|k| !k.out) && last - first > 2 * NS => p.hold[3],
                    17 => p.hold[2],
                    _ => p.hold[4],
                };
                writeln!(
                    truth,
                    "{}",
                    serde_json::json!({
                        "proto": proto_name(proto, p.ip6),
                        "internal_ip": addr(internal.0), "internal_port": internal.1,
                        "public_ip": addr(public.0), "public_port": public.1,
                        "remote_ip": addr(remote.0), "remote_port": remote.1,
                        "new_unix": first as f64 / 1e9,
                        "destroy_unix": (last + i64::from(hold) * NS) as f64 / 1e9,
                    })
                )?;
                (internal, public)
            };
            let copies = if own {
                pkts.len() as u32
            } else {
                2 * pkts.len() as u32
            };
            copies_planned += u64::from(copies);
            let slot = free_slots.pop().unwrap_or_else(|| {
                slots.push(None);
                (slots.len() - 1) as u32
            });
            for (k, pk) in pkts.iter().enumerate() {
                if !own {
                    heap.push(Reverse((pk.ts, order, slot, k as u16, false)));
                    order += 1;
                }
                heap.push(Reverse((
                    pk.ts + i64::from(pk.post_dt),
                    order,
                    slot,
                    k as u16,
                    true,
                )));
                order += 1;
            }
            slots[slot as usize] = Some(Flow {
                id: flow_id,
                proto,
                own,
                internal,
                public,
                remote,
                pkts,
                copies_left: copies,
            });
            continue;
        }
        let Some(Reverse((ts, _, slot, k, post))) = heap.pop() else {
            break;
        };
        last_ts = last_ts.max(ts);
        let f = slots[slot as usize].as_mut().expect("live flow");
        let pk = f.pkts[k as usize];
        // Out: pre = internal → remote (inside), post = public → remote (outside).
        // In: pre = remote → public (outside), post = remote → internal (inside).
        let inside = pk.out != post;
        let (src, dst) = match (pk.out, post) {
            (true, false) => (f.internal, f.remote),
            (true, true) => (f.public, f.remote),
            (false, false) => (f.remote, f.public),
            (false, true) => (f.remote, f.internal),
        };
        let inside = inside && !f.own;
        out.packet(ts, inside, f, k as usize, src, dst)?;
        f.copies_left -= 1;
        if f.copies_left == 0 {
            slots[slot as usize] = None;
            free_slots.push(slot);
        }
    }
    truth.flush()?;
    let (written, bytes) = (out.written, out.bytes);
    out.finish()?;

    let dir = std::fs::canonicalize(&p.out)?;
    let hold_flags = [
        ("--hold-tcp-closed", p.hold[0]),
        ("--hold-tcp-open", p.hold[1]),
        ("--hold-udp", p.hold[2]),
        ("--hold-udp-stream", p.hold[3]),
        ("--hold-icmp", p.hold[4]),
    ];
    let mut replay_args: Vec<String> = Vec::new();
    for (f, s) in hold_flags {
        replay_args.push(f.into());
        replay_args.push(format!("{s}s"));
    }
    let files: Vec<String> = match p.link {
        Link::Sll2 => {
            replay_args
                .extend(["--inside-interface", "2", "--outside-interface", "3"].map(String::from));
            vec![dir.join("capture.pcap").display().to_string()]
        }
        Link::Vlan => {
            replay_args.extend(["--inside-vlan", "10", "--outside-vlan", "20"].map(String::from));
            vec![dir.join("capture.pcap").display().to_string()]
        }
        Link::TwoEth => {
            let (i, o) = (
                dir.join("inside.pcap").display().to_string(),
                dir.join("outside.pcap").display().to_string(),
            );
            replay_args.extend(["--inside".into(), i.clone(), "--outside".into(), o.clone()]);
            vec![i, o]
        }
    };
    if matches!(p.link, Link::Sll2 | Link::Vlan) {
        replay_args.push(files[0].clone());
    }
    let meta = serde_json::json!({
        "generator": "natrec-gen",
        "seed": p.seed,
        "link": match p.link { Link::Sll2 => "sll2", Link::Vlan => "vlan", Link::TwoEth => "two-eth" },
        "ip": if p.ip6 { 6 } else { 4 },
        "inside_encap": if p.pppoe { "pppoe" } else { "none" },
        "packets": written,
        "capture_bytes": bytes + 24 * files.len() as u64,
        "files": files,
        "mappings": mappings,
        "own_flows": own_flows,
        "flows_not_started_pool_full": skipped_flows,
        "mappings_remapped_port": remapped,
        "subscribers": p.subscribers,
        "pool": p.pool,
        "pool_first": addr(POOL_BASE + 1),
        "remotes": p.remotes,
        "flow_rate_per_s": p.flow_rate,
        "mean_len_packets": p.mean_len,
        "mix_tcp_udp_icmp": p.mix,
        "port_range": p.port_range,
        "snaplen": p.snaplen,
        "first_unix": p.start_unix,
        "last_unix": last_ts as f64 / 1e9,
        "hold_s": { "tcp_closed": p.hold[0], "tcp_open": p.hold[1], "udp": p.hold[2], "udp_stream": p.hold[3], "icmp": p.hold[4] },
        "replay_args": replay_args,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    std::fs::write(
        p.out.join("gen.json"),
        serde_json::to_string_pretty(&meta)? + "\n",
    )?;
    eprintln!(
        "natrec-gen: {written} packets, {mappings} mappings ({remapped} remapped), {} s of traffic, {:.1} s",
        (last_ts - p.start_unix * NS) / NS,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
