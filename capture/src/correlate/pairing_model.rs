//! Tests: the pairing side against a model of it as it was until round 12
//! (every ambiguous outside copy waiting as two entries, one under each of
//! its pair keys), written with plain vectors: the waiting entries in
//! arrival order, a key's list being its entries in that order. The
//! correlator, with coarse entries ([`Copy::coarse`]) on (any bound on a
//! coarse list) and off, must make
//! the same pairs (the same observations, in the same order, with the same
//! clock) and count the same in every counter after every packet, on
//! packets built to collide: few endpoints and invariants, outside copies
//! between two remote hosts (one coarse key, several pair keys), copies on
//! the wrong side, duplicates, both arrival orders, and small bounds.

use super::*;
use std::net::SocketAddr;

/// One waiting entry of the model (the old slab entry: key and copy).
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: PairKey,
    copy: Copy,
}

/// The counters the pairing side keeps, in [`CorrelatorStats`]' order.
type Counts = [u64; 11];

fn counts(s: &CorrelatorStats) -> Counts {
    [
        s.packets,
        s.paired_copies,
        s.untranslated,
        s.subscriber_to_subscriber,
        s.not_subscriber_inside,
        s.duplicate_copies,
        s.unmatched_inside,
        s.unmatched_outside,
        s.pending_evicted,
        s.pending_key_full,
        s.pending,
    ]
}

/// An observation as compared: (clock, time, internal, public, remote,
/// direction, protocol, flags).
type Obs = (i64, i64, Ep, Ep, Ep, Dir, Proto, u8);

fn observations(events: &[FlowEvent]) -> Vec<Obs> {
    events
        .iter()
        .filter_map(|e| match e.0 {
            Ev::Observe(o) => Some((
                o.now_ns, o.ts_ns, o.internal, o.public, o.remote, o.dir, o.proto, o.flags,
            )),
            Ev::Scan(_) => None,
        })
        .collect()
}

/// The old pairing side (round 11's `push_prepared`, `take_twin`,
/// `wait_at`, `insert`, `drop_oldest_pending` and the window's drops), as
/// the code did it, over a vector.
struct Model {
    cfg: CorrelatorConfig,
    entries: Vec<Entry>,
    now: i64,
    s: CorrelatorStats,
    obs: Vec<Obs>,
}

impl Model {
    fn new(cfg: CorrelatorConfig) -> Model {
        Model {
            cfg,
            entries: Vec::new(),
            now: i64::MIN,
            s: CorrelatorStats::default(),
            obs: Vec::new(),
        }
    }

    fn counts(&mut self) -> Counts {
        self.s.pending = self.entries.len() as u64;
        counts(&self.s)
    }

    /// Removes the entry of `packet` under `key`, if any.
    fn remove(&mut self, key: PairKey, packet: u64) {
        if let Some(j) = self
            .entries
            .iter()
            .position(|e| e.key == key && e.copy.packet == packet)
        {
            self.entries.remove(j);
        }
    }

    fn pop_oldest(&mut self, evicted: bool) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let e = self.entries.remove(0);
        if let Some(other) = twin_key(e.key, &e.copy) {
            self.remove(other, e.copy.packet);
        }
        if evicted {
            self.s.pending_evicted += 1;
        } else if e.copy.inside {
            self.s.unmatched_inside += 1;
        } else {
            self.s.unmatched_outside += 1;
        }
        true
    }

    fn advance(&mut self, ts: i64) {
        if ts <= self.now {
            return;
        }
        self.now = ts;
        let horizon = ts.saturating_sub(self.cfg.pair_window_ns);
        while self.entries.first().is_some_and(|e| e.copy.ts_ns < horizon) {
            self.pop_oldest(false);
        }
    }

    /// `Ok`: taken (paired, or a duplicate); `Err`: the key's list length.
    fn take_twin(&mut self, ts: i64, p: &Prepared, dir: Dir, inside: bool) -> Result<(), usize> {
        let (key, endpoint) = p.pair_key(dir);
        let list: Vec<usize> = (0..self.entries.len())
            .filter(|&j| self.entries[j].key == key)
            .collect();
        let Some(&j) = list
            .iter()
            .find(|&&j| self.entries[j].copy.inside != inside)
        else {
            let same = list
                .iter()
                .any(|&j| self.entries[j].copy.inside && self.entries[j].copy.endpoint == endpoint);
            if inside && same {
                self.s.duplicate_copies += 1;
                return Ok(());
            }
            return Err(list.len());
        };
        let twin = self.entries.remove(j).copy;
        if let Some(other) = twin_key(key, &twin) {
            self.remove(other, twin.packet);
        }
        let (internal, public) = if inside {
            (endpoint, twin.endpoint)
        } else {
            (twin.endpoint, endpoint)
        };
        if internal == public {
            self.s.untranslated += 2;
            return Ok(());
        }
        self.s.paired_copies += 2;
        self.obs.push((
            self.now,
            ts.min(twin.ts_ns),
            internal,
            public,
            key.remote,
            key.dir,
            key.proto,
            p.tcp_flags | twin.tcp_flags,
        ));
        Ok(())
    }

    fn wait(&mut self, key: PairKey, copy: Copy, len: usize) {
        if len >= self.cfg.pending_per_key_max {
            self.s.pending_key_full += 1;
        } else {
            self.entries.push(Entry { key, copy });
        }
    }

    fn insert(&mut self, key: PairKey, copy: Copy) {
        while self.entries.len() >= self.cfg.pending_max {
            if !self.pop_oldest(true) {
                break;
            }
        }
        let len = self.entries.iter().filter(|e| e.key == key).count();
        self.wait(key, copy, len);
    }

    fn push(&mut self, ts: i64, side: Side, p: &Prepared) {
        self.s.packets += 1;
        self.advance(ts);
        let (src_sub, dst_sub) = (p.src_sub(), p.dst_sub());
        if src_sub && dst_sub {
            self.s.subscriber_to_subscriber += 1;
            return;
        }
        let packet = self.s.packets;
        let copy = move |endpoint, inside, ambiguous| Copy {
            ts_ns: ts,
            packet,
            inside,
            endpoint,
            ambiguous,
            coarse: false,
            tcp_flags: p.tcp_flags,
        };
        match side {
            Side::Outside if src_sub || dst_sub => self.s.untranslated += 1,
            Side::Inside if !src_sub && !dst_sub => self.s.not_subscriber_inside += 1,
            Side::Inside | Side::Unknown if src_sub || dst_sub => {
                let dir = if src_sub { Dir::Out } else { Dir::In };
                if let Err(len) = self.take_twin(ts, p, dir, true) {
                    let (key, endpoint) = p.pair_key(dir);
                    let c = copy(endpoint, true, false);
                    if self.entries.len() < self.cfg.pending_max {
                        self.wait(key, c, len);
                    } else {
                        self.insert(key, c);
                    }
                }
            }
            _ => {
                let Err(out_len) = self.take_twin(ts, p, Dir::Out, false) else {
                    return;
                };
                let Err(in_len) = self.take_twin(ts, p, Dir::In, false) else {
                    return;
                };
                let (out_key, src) = p.pair_key(Dir::Out);
                let (in_key, dst) = p.pair_key(Dir::In);
                if self.entries.len() + 2 <= self.cfg.pending_max {
                    self.wait(out_key, copy(src, false, true), out_len);
                    self.wait(in_key, copy(dst, false, true), in_len);
                } else {
                    self.insert(out_key, copy(src, false, true));
                    self.insert(in_key, copy(dst, false, true));
                }
            }
        }
    }

    fn finish(&mut self) {
        while self.pop_oldest(false) {}
    }
}

fn pkt(proto: Proto, src: SocketAddr, dst: SocketAddr, id: u32, flags: u8) -> Decoded {
    Decoded {
        link: LinkInfo::default(),
        proto,
        src: src.ip(),
        dst: dst.ip(),
        sport: src.port(),
        dport: dst.port(),
        ip_id: id,
        ip_total_len: 60,
        tcp: (proto == Proto::Tcp).then_some(TcpInfo {
            seq: id,
            ack: 0,
            flags,
        }),
        icmp_seq: 0,
        payload_fp: 0,
        payload_len: 0,
        payload_fp_bytes: 0,
    }
}

/// Pseudo-random packets built to collide: two subscribers, two public
/// addresses, `remotes` remote hosts, one port each (ports too are few), ids
/// 0..3 (so invariants repeat across flows and within one: retransmissions
/// and duplicates), both directions, every side including the wrong one,
/// outside packets between two remote hosts or two public addresses (many
/// pair keys under one coarse key), and time steps around the pair window.
fn colliding_packets(seed: u64, n: usize, ids: u64, remotes: u64) -> Vec<(i64, Side, Decoded)> {
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut t = NANOS_PER_SEC;
    let addr = |s: String| -> SocketAddr { s.parse().expect("address") };
    (0..n)
        .map(|_| {
            // Bursts and gaps around the pair window.
            let step = if next(2) == 0 { 20 } else { 400 };
            t += next(step) as i64 * 1_000_000;
            let sub = addr(format!("100.64.0.{}:5000", 1 + next(2)));
            let public = addr(format!("203.0.113.{}:6000", 1 + next(2)));
            let remote = addr(format!("198.51.100.{}:443", 1 + next(remotes)));
            let other = match next(4) {
                0 => public,
                1 => sub,
                _ => addr(format!("198.51.100.{}:443", 1 + next(remotes))),
            };
            let id = next(ids) as u32;
            let proto = if next(3) == 0 { Proto::Tcp } else { Proto::Udp };
            let flags = [TcpInfo::SYN, TcpInfo::ACK, TcpInfo::FIN | TcpInfo::ACK][next(3) as usize];
            let (side, src, dst) = match next(10) {
                0 => (Side::Inside, sub, remote),
                1 => (Side::Inside, remote, sub),
                2 => (Side::Outside, public, remote),
                3 => (Side::Outside, remote, public),
                4 => (Side::Outside, remote, other),
                5 => (Side::Unknown, sub, remote),
                6 => (Side::Unknown, remote, public),
                7 => (Side::Inside, remote, other),
                8 => (Side::Outside, sub, remote),
                _ => (Side::Unknown, other, remote),
            };
            (t, side, pkt(proto, src, dst, id, flags))
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
    /// The correlator's pairing part (coarse entries on, with coarse lists
    /// of at most 1..=[`COARSE_LIST_MAX`] entries, and off) against
    /// the model of the old pairing side: after every packet the same
    /// counters and the same observations so far, in order; the same at
    /// the end. Its pending slab's invariant holds throughout.
    #[test]
    fn coarse_entries_pair_and_count_as_two_entries_did(
        seed in proptest::prelude::any::<u64>(),
        pending_max in 1usize..40,
        pending_per_key_max in 1usize..6,
        ids in 1u64..4,
        remotes in 1u64..8,
        window_ms in 200i64..3000,
        probe_again in proptest::prelude::any::<bool>(),
        coarse_list_max in 1usize..=COARSE_LIST_MAX,
    ) {
        let cfg = CorrelatorConfig {
            pending_max,
            pending_per_key_max,
            pair_window_ns: window_ms * 1_000_000,
            ..CorrelatorConfig::default()
        };
        let mut model = Model::new(cfg.clone());
        let mut on = Correlator::try_new_pairing(cfg.clone()).expect("pairing part");
        let mut off = Correlator::try_new_pairing(cfg).expect("pairing part");
        on.test_probe_again = probe_again;
        on.test_coarse_list_max = coarse_list_max;
        off.test_coarse_list_max = 0;
        let preparer = on.preparer();
        let mut sink = Vec::new();
        let (mut ev_on, mut ev_off) = (Vec::new(), Vec::new());
        for (t, side, d) in colliding_packets(seed, 400, ids, remotes) {
            model.push(t, side, &preparer.prepare(&d));
            on.push(t, side, &d, &mut sink);
            off.push(t, side, &d, &mut sink);
            for (c, all) in [(&mut on, &mut ev_on), (&mut off, &mut ev_off)] {
                let mut batch = Vec::new();
                c.take_events(&mut batch);
                all.extend(batch);
            }
            let want = model.counts();
            proptest::prop_assert_eq!(counts(&on.stats()), want);
            proptest::prop_assert_eq!(counts(&off.stats()), want);
            on.check_pending();
            off.check_pending();
        }
        proptest::prop_assert_eq!(&observations(&ev_on), &model.obs);
        proptest::prop_assert_eq!(&observations(&ev_off), &model.obs);
        model.finish();
        on.finish(&mut sink);
        off.finish(&mut sink);
        let want = model.counts();
        proptest::prop_assert_eq!(counts(&on.stats()), want);
        proptest::prop_assert_eq!(counts(&off.stats()), want);
        proptest::prop_assert!(sink.is_empty());
    }
}
