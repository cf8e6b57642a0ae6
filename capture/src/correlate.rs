//! NAT correlation: pairs each packet's pre-translation copy with its
//! post-translation copy and folds the pairs into [`Mapping`]s.
//!
//! A source NAT rewrites the subscriber's address and port and leaves
//! everything else alone: the remote endpoint, the protocol, the IP
//! identification, the lengths, TCP sequence and acknowledgment numbers and
//! flags, the ICMP echo sequence, the payload. So two copies of one packet,
//! one seen on the inside (subscriber address) and one on the outside (public
//! address), agree on a *pair key* made of exactly those fields. The
//! correlator keeps copies that are still waiting for their twin in a table
//! bounded in size (`pending_max`) and in time (`pair_window_ns`); when the
//! twin arrives — in either order — the two make one *observation*
//! `internal ↔ public` towards `remote`.
//!
//! Observations fold into flows keyed by (protocol, internal endpoint, remote
//! endpoint). A flow is a [`Mapping`]: it is emitted once when confirmed
//! (`end = Open`, so a crash still leaves it in the store) and once more, final,
//! when it ends: TCP FIN both ways or RST and then the TIME_WAIT hold, no
//! packet for the protocol's hold time (`Idle`), a new public endpoint or a
//! new TCP connection on the same tuple (`Replaced`), the table's bound
//! (`Evicted`), or the end of the capture ([`Correlator::finish`]).
//!
//! Which copy is which: a packet seen on an interface known to be inside or
//! outside ([`Side`]) is taken as such; otherwise the subscriber prefixes
//! decide (a subscriber source is an outbound inside copy, a subscriber
//! destination an inbound inside copy). An outside copy whose direction is not
//! known from addresses alone waits under both directions; when one pairs, its
//! twin entry is removed.
//!
//! Not translated, and so not a mapping (each counted in [`CorrelatorStats`]):
//! a subscriber address seen on the outside, traffic between two subscribers,
//! packets of the NAT host itself (an outside copy with no inside twin), and
//! inside packets the NAT dropped or delivered locally (no outside twin).
//!
//! The correlator is a pure state machine over (time, side, decoded packet):
//! no I/O, no clock. Time only moves forward with the packets' timestamps.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rustc_hash::FxHashMap;
#[cfg(test)]
use std::collections::HashMap;

use ipnet::IpNet;
use natrec_storage::{
    EndReason, HoldTimes, Mapping, Proto, UnixNanos, FLAG_MIDFLOW, NANOS_PER_SEC,
};

use crate::decode::fast::{fast, Fast, FastAddrs};
use crate::decode::{decode, fold_mul, Decoded, LinkInfo, Skip, TcpInfo};
use crate::source::RawPacket;

/// Where a packet was captured, when the capture says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Subscriber-facing interface or VLAN.
    Inside,
    /// Internet-facing interface or VLAN.
    Outside,
    /// Not known: the subscriber prefixes decide.
    Unknown,
}

/// Bounds and policy of a [`Correlator`].
#[derive(Clone, Debug)]
pub struct CorrelatorConfig {
    /// Subscriber (inside) prefixes. Default: RFC 1918, 100.64.0.0/10, fc00::/7.
    pub subscriber_prefixes: Vec<IpNet>,
    /// How far apart (ns) two copies of one packet may be and still pair.
    /// Copies older than this without a twin are dropped and counted.
    pub pair_window_ns: i64,
    /// Most copies waiting for their twin; at the bound the oldest is dropped
    /// and counted as `pending_evicted`.
    pub pending_max: usize,
    /// Most copies with one identical pair key waiting at once (retransmissions);
    /// beyond it the new copy is dropped and counted as `pending_key_full`.
    pub pending_per_key_max: usize,
    /// Most active flows; at the bound the least recently active flow is
    /// closed with [`EndReason::Evicted`] and counted.
    pub flows_active_max: usize,
    /// How often (ns of packet time) idle flows are looked for.
    pub expiry_scan_interval_ns: i64,
    /// How often (ns of packet time) an active mapping's state is written
    /// again while packets flow (still `Open`, with the last packet time and
    /// counts so far); 0 = never. Bounds what a crash loses of a long flow's
    /// evidence: the restarted recorder closes it at its last written state.
    pub refresh_interval_ns: i64,
    /// How long the NAT keeps a mapping after its last packet.
    pub hold: HoldTimes,
}

/// RFC 1918, RFC 6598 shared address space and IPv6 unique local addresses.
pub fn default_subscriber_prefixes() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    ]
    .iter()
    .map(|s| s.parse().expect("valid literal prefix"))
    .collect()
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            subscriber_prefixes: default_subscriber_prefixes(),
            pair_window_ns: 2 * NANOS_PER_SEC,
            pending_max: 1 << 20,
            pending_per_key_max: 8,
            flows_active_max: 1 << 22,
            expiry_scan_interval_ns: NANOS_PER_SEC,
            refresh_interval_ns: 60 * NANOS_PER_SEC,
            hold: HoldTimes::default(),
        }
    }
}

/// What the correlator saw, by outcome. Every packet handed to
/// [`Correlator::push`] is counted once in `packets`, and ends up in exactly
/// one of `paired_copies`, `untranslated`, `subscriber_to_subscriber`,
/// `not_subscriber_inside`, `duplicate_copies`, `pending_evicted`,
/// `pending_key_full`, `unmatched_inside`, `unmatched_outside` — or is still
/// pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorrelatorStats {
    /// Packets pushed.
    pub packets: u64,
    /// Copies that found their twin (two per translated packet).
    pub paired_copies: u64,
    /// Packets seen with a subscriber address on the outside, or whose two
    /// copies carry the same endpoint (forwarded without translation).
    pub untranslated: u64,
    /// Packets between two subscriber addresses (never cross the NAT).
    pub subscriber_to_subscriber: u64,
    /// Inside packets with no subscriber address on either end.
    pub not_subscriber_inside: u64,
    /// The same copy seen twice (e.g. on two capture points of one side).
    pub duplicate_copies: u64,
    /// Inside copies whose outside twin never came (dropped by the NAT,
    /// delivered to the NAT host, or lost by the capture).
    pub unmatched_inside: u64,
    /// Outside copies whose inside twin never came (the NAT host's own
    /// traffic, traffic to a public address nobody held, or capture loss).
    pub unmatched_outside: u64,
    /// Copies dropped at the `pending_max` bound.
    pub pending_evicted: u64,
    /// Copies dropped at the `pending_per_key_max` bound.
    pub pending_key_full: u64,
    /// Mappings confirmed.
    pub mappings_opened: u64,
    /// Mappings ended (any reason, including capture end).
    pub mappings_closed: u64,
    /// Interim `Open` states written for long flows (`refresh_interval_ns`).
    pub mappings_refreshed: u64,
    /// Mappings closed at the `flows_active_max` bound.
    pub flows_evicted: u64,
    /// Flows active now.
    pub flows_active: u64,
    /// Times the idle-expiry queue was rebuilt at its bound. Always 0 since
    /// the wheel links each active flow exactly once (in its slot) and so
    /// has no bound to reach; kept so the struct's fields stay as they were.
    pub deadline_rebuilds: u64,
    /// Copies waiting for their twin now.
    pub pending: u64,
}

/// Bytes a [`Correlator`] holds, by structure: allocated capacities
/// (growth slack included), not items. `natrec-corrmem` prints it next to
/// the allocator's own count, to which it adds `mapped`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorrelatorMemory {
    /// The flow slab (the slots handed out so far, rounded up to 4 KiB)
    /// and the times of flows too long for a slot.
    pub flow_slab: usize,
    /// The flow index (chain heads; the chain links are in the slots).
    pub flow_index: usize,
    /// The idle-expiry structure.
    pub expiry: usize,
    /// The copies waiting for their twin: the pending slab and the table of
    /// its keys.
    pub pending: usize,
    /// Interned IPv6 addresses.
    pub v6_names: usize,
    /// The pairing part of a split correlator: the buffer of flow events
    /// it queues ([`Correlator::take_events`] swaps it with the caller's;
    /// a constant, not per flow).
    pub flow_events: usize,
    /// Of the above, the bytes not from the global allocator: the flow
    /// slab's slots, in an anonymous map of their own (so a counting
    /// allocator does not see them).
    pub mapped: usize,
}

impl CorrelatorMemory {
    /// Sum of the parts.
    pub fn total(&self) -> usize {
        self.flow_slab
            + self.flow_index
            + self.expiry
            + self.pending
            + self.v6_names
            + self.flow_events
    }
}

impl CorrelatorStats {
    /// The counters of two parts of one correlator added up: a pairing part
    /// ([`Correlator::try_new_pairing`]) counts packets, pairs and copies, the
    /// flow part fed by its [`FlowEvent`]s counts mappings and flows; each
    /// counter is counted by one of the two, so the sum is what one
    /// correlator doing both counts.
    pub fn merged(&self, o: &CorrelatorStats) -> CorrelatorStats {
        CorrelatorStats {
            packets: self.packets + o.packets,
            paired_copies: self.paired_copies + o.paired_copies,
            untranslated: self.untranslated + o.untranslated,
            subscriber_to_subscriber: self.subscriber_to_subscriber + o.subscriber_to_subscriber,
            not_subscriber_inside: self.not_subscriber_inside + o.not_subscriber_inside,
            duplicate_copies: self.duplicate_copies + o.duplicate_copies,
            unmatched_inside: self.unmatched_inside + o.unmatched_inside,
            unmatched_outside: self.unmatched_outside + o.unmatched_outside,
            pending_evicted: self.pending_evicted + o.pending_evicted,
            pending_key_full: self.pending_key_full + o.pending_key_full,
            mappings_opened: self.mappings_opened + o.mappings_opened,
            mappings_closed: self.mappings_closed + o.mappings_closed,
            mappings_refreshed: self.mappings_refreshed + o.mappings_refreshed,
            flows_evicted: self.flows_evicted + o.flows_evicted,
            flows_active: self.flows_active + o.flows_active,
            deadline_rebuilds: self.deadline_rebuilds + o.deadline_rebuilds,
            pending: self.pending + o.pending,
        }
    }
}

/// What the pairing part of a split correlator hands its flow part, in
/// order ([`Correlator::try_new_pairing`], [`Correlator::apply_events`]):
/// an observation (a pair: the arguments of the flow table's fold, and the
/// clock when it was made), or an idle scan due at a clock time. The
/// pairing part queues a scan exactly where one correlator would run it
/// (it keeps the scan schedule, which depends on the clock alone), so the
/// flow part sees observations and scans in one correlator's order and
/// produces the same mappings in the same order. Opaque outside the crate.
#[derive(Clone, Copy, Debug)]
pub struct FlowEvent(Ev);

#[derive(Clone, Copy, Debug)]
enum Ev {
    Observe(Observation),
    Scan(UnixNanos),
}

/// One pair as the flow table folds it (`Correlator::observe`'s
/// arguments), with the pairing part's clock when it paired (the flow
/// table's first timer-wheel bucket is chosen from it).
#[derive(Clone, Copy, Debug)]
struct Observation {
    now_ns: UnixNanos,
    ts_ns: UnixNanos,
    internal: Ep,
    public: Ep,
    remote: Ep,
    /// The high half of the flow key's [`Correlator::key_hash`] as an
    /// inside copy's preparer carried it (`observe`'s `flow_hash`, see
    /// [`Correlator::find_flow`]), or 0: none (the outside copy paired, or
    /// not IPv4 on both ends). The flow index's head number is the hash's
    /// top `index_bits` (at most 31) bits, all in this half. In the
    /// padding the event had (73 bytes of data in 80).
    flow_hi: u32,
    dir: Dir,
    proto: Proto,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<FlowEvent>() == 80);

/// Whether a correlator does both parts, or one of a split pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// Pairing and flow table (one thread, live).
    Both,
    /// Pairing only: observations and scans queued as [`FlowEvent`]s.
    Pairing,
    /// The flow table only, fed by [`Correlator::apply_events`].
    Flows,
}

/// Direction of a packet relative to the subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dir {
    /// Subscriber → remote.
    Out,
    /// Remote → subscriber.
    In,
}

/// The fields a source NAT leaves alone, plus the direction. Hashed by
/// [`pair_hash`]; compared invariants first (they differ most often).
#[derive(Clone, Copy, Debug, Eq)]
struct PairKey {
    dir: Dir,
    proto: Proto,
    remote: Ep,
    /// Hash of the invariant fields (IP id, lengths, TCP seq/ack/flags, ICMP
    /// sequence, payload fingerprint).
    invariants: u64,
    /// Not part of the key (neither compared nor hashed): in an inside
    /// copy's waiting entry, the high half of its flow key's
    /// [`Correlator::key_hash`] as its preparer carried it
    /// (`Prepared::flow_hash`), which the
    /// outside copy that pairs with it hands on as the pair's carried hash
    /// ([`take_coarse_inside`](Correlator::take_coarse_inside)); 0: none
    /// (not IPv4 on both ends), and in every other key. In the 4 bytes
    /// the key had as padding (round 16).
    flow_hi: u32,
}

/// One copy waiting for its twin.
#[derive(Clone, Copy, Debug)]
struct Copy {
    ts_ns: UnixNanos,
    /// Sequence number of the packet this copy came from (twins of an
    /// ambiguous outside packet share it).
    packet: u64,
    inside: bool,
    /// The translated endpoint: internal (inside copy) or public (outside copy).
    endpoint: Ep,
    /// An outside copy whose direction is not known: it also waits under
    /// the other direction's key, which is derived ([`twin_key`]).
    ambiguous: bool,
    /// Waiting on its coarse key's list ([`coarse_hash`]: protocol and
    /// invariants), not its pair key's (see [`Correlator::wait_coarse`]).
    /// An ambiguous copy there is one entry for both directions' keys, not
    /// two entries under them: its slab entry's key is the out key (remote:
    /// the destination) and its endpoint the source; the in key is
    /// [`twin_key`]'s. An inside copy there stands for its own key (round
    /// 12, `onekey2`).
    coarse: bool,
    tcp_flags: u8,
}

/// An endpoint as the pending table keeps it: the IPv6 (or IPv4-mapped)
/// address and the port, 18 bytes instead of a 32-byte `SocketAddr`. The
/// address is its `u128` value ([`Ipv6Addr::to_bits`]) in little-endian
/// bytes, so it loads as two words (hashing, compares, the IPv4 test) with
/// no byte shuffling; nothing outside the correlator ever sees the bytes.
/// An IPv4 address and its IPv4-mapped IPv6 form are one `Ep`: IPv4-mapped
/// addresses compare as IPv4.
#[derive(Clone, Copy, Debug, Eq)]
struct Ep {
    ip: [u8; 16],
    port: u16,
}

/// The derived compare, field by field: the address as its `u128` (two
/// words; equal exactly when its 16 bytes are) instead of a byte-array
/// compare, then the port.
impl PartialEq for Ep {
    #[inline(always)]
    fn eq(&self, o: &Ep) -> bool {
        self.bits() == o.bits() && self.port == o.port
    }
}

/// `Ep::bits() >> 32` of an IPv4-mapped address (`::ffff:a.b.c.d`).
const V4_MAPPED_HIGH: u128 = 0xffff;

impl Ep {
    fn of(ip: IpAddr, port: u16) -> Ep {
        let bits = match ip {
            IpAddr::V4(a) => V4_MAPPED_HIGH << 32 | u128::from(a.to_bits()),
            IpAddr::V6(a) => a.to_bits(),
        };
        Ep {
            ip: bits.to_le_bytes(),
            port,
        }
    }

    /// An IPv4 address and port ([`Ep::of`] of the `IpAddr::V4`).
    #[inline(always)]
    fn of_v4(a: u32, port: u16) -> Ep {
        Ep {
            ip: (V4_MAPPED_HIGH << 32 | u128::from(a)).to_le_bytes(),
            port,
        }
    }

    /// An IPv6 address as its `u128` and port ([`Ep::of`] of the
    /// `IpAddr::V6`; IPv4-mapped stays IPv4-mapped, as there).
    #[inline(always)]
    fn of_v6(bits: u128, port: u16) -> Ep {
        Ep {
            ip: bits.to_le_bytes(),
            port,
        }
    }

    /// The address as an IPv6 address's `u128`.
    fn bits(&self) -> u128 {
        u128::from_le_bytes(self.ip)
    }

    /// The address's low 32 bits: the IPv4 address, when it is one.
    #[inline(always)]
    fn low32(&self) -> u32 {
        self.bits() as u32
    }

    /// The IPv4 address, if the address is one (IPv4-mapped).
    #[inline(always)]
    fn v4(&self) -> Option<u32> {
        // `bits() >> 32 == V4_MAPPED_HIGH` as the two words: the high one
        // zero, the low one's high half 0xffff.
        let b = self.bits();
        let (lo, hi) = (b as u64, (b >> 64) as u64);
        (hi == 0 && lo >> 32 == V4_MAPPED_HIGH as u64).then_some(lo as u32)
    }

    /// Both IPv4 addresses, if both are IPv4: `Some` exactly when
    /// [`v4`](Ep::v4) of each is, with the same values, in one test of the
    /// four words.
    #[inline(always)]
    fn both_v4(a: &Ep, b: &Ep) -> Option<(u32, u32)> {
        let (a, b) = (a.bits(), b.bits());
        let (a_lo, a_hi, b_lo, b_hi) = (a as u64, (a >> 64) as u64, b as u64, (b >> 64) as u64);
        let high = V4_MAPPED_HIGH as u64;
        let not_v4 = a_hi | b_hi | (a_lo >> 32 ^ high) | (b_lo >> 32 ^ high);
        (not_v4 == 0).then_some((a_lo as u32, b_lo as u32))
    }

    /// The address as the flow table keeps it ([`Correlator::addr32_find`]).
    /// Tests: `open_flow` builds its `Mapping` from the slot.
    #[cfg(test)]
    fn ip(&self) -> IpAddr {
        match self.v4() {
            Some(a) => IpAddr::V4(Ipv4Addr::from_bits(a)),
            None => IpAddr::V6(Ipv6Addr::from_bits(self.bits())),
        }
    }

    /// Back to a `SocketAddr`; an IPv4-mapped address comes back as IPv4.
    #[cfg(test)]
    fn socket(self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }
}

impl PartialEq for PairKey {
    fn eq(&self, o: &PairKey) -> bool {
        self.invariants == o.invariants
            && self.remote == o.remote
            && self.dir == o.dir
            && self.proto == o.proto
    }
}

const _: () = assert!(std::mem::size_of::<PairKey>() == 32);
const _: () = assert!(std::mem::size_of::<Copy>() == 40);

/// Constants of the hashes below (wyhash's secrets: odd, half their bits
/// set, no structure in common with packet fields).
const MIX: [u64; 4] = [
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
    0x8ebc_6af0_9c88_c6e3,
    0x5899_65cc_7537_4cc3,
];

/// The first and last eight bytes of an endpoint's address as words.
#[inline(always)]
fn ip_words(ip: &[u8; 16]) -> (u64, u64) {
    let (a, b) = ip.split_at(8);
    (
        u64::from_le_bytes(a.try_into().expect("8 bytes")),
        u64::from_le_bytes(b.try_into().expect("8 bytes")),
    )
}

/// The hash of a pair key in the pending table: its 32 bytes as four words,
/// one folded multiplication (not a derived `Hash` field by field: this runs
/// one to two times per packet in the preparer, and again for an ambiguous
/// copy's twin key). Only where a key lands in the table depends on it: keys
/// are compared whole, the table is never walked in its order, and a tag
/// only decides whether the whole keys are compared (test
/// `pending_table_positions_change_no_output`).
fn pair_hash(key: &PairKey) -> u64 {
    let (lo, hi) = ip_words(&key.remote.ip);
    pair_hash_words(lo, hi, key.remote.port, key.dir, key.proto, key.invariants)
}

/// [`pair_hash`] of a key given as its remote address's words ([`ip_words`]),
/// remote port, direction, protocol and invariants hash (the preparer's form:
/// no `PairKey` built, an IPv4 address's high word a constant 0).
///
/// One multiplication: the invariants are already a 64-bit hash (every
/// packet field a NAT keeps, folded), so the high word of the remote
/// address, the port, direction and protocol are xor-ed into them (the
/// small fields in bits the invariants fill at random, so no two keys of a
/// packet share the word) and that is multiplied with the low word of the
/// address (an IPv4 address with its `::ffff` mark, never equal to
/// `MIX[0]`). Two multiplications until round 10 (~6 instructions more a
/// hash, two hashes for most packets).
#[inline(always)]
fn pair_hash_words(lo: u64, hi: u64, port: u16, dir: Dir, proto: Proto, invariants: u64) -> u64 {
    let small = u64::from(port) | u64::from(dir as u8) << 16 | u64::from(proto as u8) << 24;
    let h = fold_mul(lo ^ MIX[0], invariants ^ hi ^ small ^ MIX[1]);
    #[cfg(test)]
    let h = degenerate::pair_hash(h);
    h
}

/// Tests: pair hashes made as bad as can be ([`degenerate::on`]: four
/// values, all on one home entry of the pending table), to show that where
/// keys land in the table changes no output.
#[cfg(test)]
mod degenerate {
    use std::cell::Cell;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes this thread's pair hashes degenerate (`true`) or not.
    pub(super) fn on(yes: bool) {
        ON.with(|c| c.set(yes));
    }

    /// `h`, or its two high bits alone while degenerate: four tags, one
    /// home entry (the home is the tag's low bits), so every key shares a
    /// probe run and most probes meet a matching tag of another key.
    pub(super) fn pair_hash(h: u64) -> u64 {
        if ON.with(Cell::get) {
            h & 0xc000_0000_0000_0000
        } else {
            h
        }
    }
}

/// The other key an ambiguous outside copy waiting under `key` also waits
/// under: the other direction, and its remote is this copy's endpoint (an
/// outside copy `a → b` waits as (out, remote b, public a) and as (in, remote
/// a, public b)).
fn twin_key(key: PairKey, c: &Copy) -> Option<PairKey> {
    c.ambiguous.then_some(PairKey {
        dir: match key.dir {
            Dir::Out => Dir::In,
            Dir::In => Dir::Out,
        },
        remote: c.endpoint,
        ..key
    })
}

/// Most entries on one coarse list (the ambiguous copies waiting as one
/// entry under one coarse key, [`coarse_hash`]): an ambiguous copy finding
/// this many waits as two entries under its two pair keys instead, as all
/// did until round 12. Bounds the coarse walk a packet adds to its probes:
/// copies of distinct flows share a coarse key only when their protocol and
/// invariants (IP id, lengths, TCP seq/ack/flags, ICMP sequence, payload
/// fingerprint) are all equal, which a flood of identical packets from many
/// hosts makes happen on purpose.
const COARSE_LIST_MAX: usize = 8;

/// The hash under which an ambiguous outside copy waits as one entry
/// (`coarse`) under its coarse key: its protocol and invariants hash, the
/// fields the outside copy and an inside copy of either direction have in
/// common. The invariants are already a 64-bit hash of every field a NAT
/// keeps (TCP's flags with a TCP mark among them), so they are the hash
/// (the protocol is compared, not hashed: keys of two protocols with equal
/// invariants share a home, which changes no output). Only where a key
/// lands depends on it (entries are compared whole, as for [`pair_hash`]).
#[inline(always)]
fn coarse_hash(_proto: Proto, invariants: u64) -> u64 {
    let h = invariants;
    #[cfg(test)]
    let h = degenerate::pair_hash(h);
    h
}

/// Whether the coarse entry `w` ([`Copy::coarse`]) stands for a copy
/// waiting under `key` (same protocol and invariants, which the coarse
/// probe compared): the out key's remote is the destination (the entry's
/// key), the in key's the source (its endpoint).
///
/// An inside copy on a coarse list (round 12, `onekey2`) stands for its own
/// key alone.
#[inline(always)]
fn coarse_matches(w: &Waiting, key: &PairKey) -> bool {
    if w.copy.inside {
        return w.key.dir == key.dir && w.key.remote == key.remote;
    }
    match key.dir {
        Dir::Out => w.key.remote == key.remote,
        Dir::In => w.copy.endpoint == key.remote,
    }
}

/// What [`Correlator::take_twin`] found under a key.
enum Twin {
    /// Paired, or swallowed as a duplicate: the packet is done.
    Taken,
    /// No twin: the copies waiting under the key now.
    Absent(KeyList),
}

/// The copies waiting under one key, as a probe walked them: how many, the
/// last ([`NO_SLOT`]: none; a new copy is linked after it), and whether one
/// is an inside copy of the probing packet's endpoint (the duplicate test).
/// Lengths are `u32` (here and in [`CoarseList`]): a list holds waiting
/// entries, which the slab numbers in `u32`, so no list is longer.
#[derive(Clone, Copy, Debug)]
struct KeyList {
    len: u32,
    tail: u32,
    same_inside: bool,
    /// An inside copy's probe: its coarse key's list, its length and last
    /// entry ([`NO_SLOT`]: none), where it waits while that list is below
    /// [`COARSE_LIST_MAX`].
    coarse_len: u32,
    coarse_tail: u32,
}

impl KeyList {
    const NONE: KeyList = KeyList {
        len: 0,
        tail: NO_SLOT,
        same_inside: false,
        coarse_len: 0,
        coarse_tail: NO_SLOT,
    };

    fn add(&mut self, i: u32, c: &Copy, endpoint: &Ep) {
        self.len += 1;
        self.tail = i;
        self.same_inside |= c.inside && c.endpoint == *endpoint;
    }
}

/// Which lists a probe found may hold copies (see [`Correlator::take_twin`]).
#[derive(Clone, Copy, Debug)]
struct Lists {
    fine: bool,
    coarse: bool,
}

/// A coarse key's list ([`Correlator::coarse_list`]) as an ambiguous copy
/// sees it: its entries, its last ([`NO_SLOT`]: none), how many stand for
/// the copy's out key and for its in key ([`coarse_matches`]), and the first
/// inside copy there under each (its twin, unless an older one waits on the
/// key's own list). The walk stops at the first inside copy under the out
/// key: the copy then pairs under that key, reading nothing else here, so
/// the counts, `len` and `tail` are only complete when `out_first` is none.
#[derive(Clone, Copy, Debug)]
struct CoarseList {
    len: u32,
    tail: u32,
    out_len: u32,
    in_len: u32,
    /// The table entry naming the list (meaningless when `len` is 0).
    entry: pending::Found,
    /// The first inside copy on the list under the out key and under the
    /// in key, with its predecessor on the list: (entry, predecessor),
    /// [`NO_SLOT`] for none.
    out_first: (u32, u32),
    in_first: (u32, u32),
}

impl CoarseList {
    const NONE: CoarseList = CoarseList {
        len: 0,
        tail: NO_SLOT,
        out_len: 0,
        in_len: 0,
        entry: pending::Found::NONE,
        out_first: (NO_SLOT, NO_SLOT),
        in_first: (NO_SLOT, NO_SLOT),
    };
}

/// A copy waiting for its twin, as the pending slab keeps it (88 bytes,
/// asserted): its key, the copy, and two lists through the slab: the copies
/// waiting under the same key (arrival order; the pending table points at the
/// oldest) and every waiting copy in arrival order (for the pair window and
/// the `pending_max` bound). A copy leaves both lists when it pairs or is
/// dropped, so neither ever holds a copy that is gone.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    key: PairKey,
    copy: Copy,
    /// Next copy waiting under the same key, or [`NO_SLOT`] (free entries:
    /// the next free entry).
    key_next: u32,
    /// Arrival-order neighbours, [`NO_SLOT`] at the ends.
    order_prev: u32,
    order_next: u32,
    /// The other entry of the same ambiguous outside copy (it waits under
    /// two keys) when both were placed together by `wait_at`, so the one
    /// left when its twin pairs is removed without its key being compared
    /// or its list searched ([`remove_linked_twin`](Correlator::remove_linked_twin));
    /// [`NO_SLOT`]: not linked (an inside copy, or an ambiguous copy whose
    /// other entry was refused at `pending_per_key_max` or placed through
    /// `insert`: found by its key, as before). The two entries of a copy
    /// always leave together (a pair removes both, so does a drop), so a
    /// link never names an entry that is gone or reused. In the 4 bytes the
    /// entry had as padding.
    twin: u32,
}

const _: () = assert!(std::mem::size_of::<Waiting>() == 88);

impl Waiting {
    /// Whether this entry waits under pair key `key` (not a coarse entry).
    #[inline(always)]
    fn is_fine(&self, key: &PairKey) -> bool {
        !self.copy.coarse && self.key == *key
    }

    /// Whether this is a coarse entry of `key`'s coarse key (protocol and
    /// invariants).
    #[inline(always)]
    fn is_coarse(&self, key: &PairKey) -> bool {
        self.is_coarse_of(key.proto, key.invariants)
    }

    /// [`is_coarse`](Waiting::is_coarse) of a key's protocol and
    /// invariants.
    #[inline(always)]
    fn is_coarse_of(&self, proto: Proto, invariants: u64) -> bool {
        self.copy.coarse && self.key.invariants == invariants && self.key.proto == proto
    }

    /// A new slab entry before it is filled (no copy; never read as one).
    const VACANT: Waiting = Waiting {
        key: PairKey {
            dir: Dir::Out,
            proto: Proto::Icmp,
            remote: Ep {
                ip: [0; 16],
                port: 0,
            },
            invariants: 0,
            flow_hi: 0,
        },
        copy: Copy {
            ts_ns: 0,
            packet: 0,
            inside: false,
            endpoint: Ep {
                ip: [0; 16],
                port: 0,
            },
            ambiguous: false,
            coarse: false,
            tcp_flags: 0,
        },
        key_next: NO_SLOT,
        order_prev: NO_SLOT,
        order_next: NO_SLOT,
        twin: NO_SLOT,
    };
}

/// Waiting copies the pending slab grows by (88 KiB): its capacity is a
/// multiple of this, and it keeps its entries (its high-water mark is
/// bounded by `pending_max`). One vector, not chunks: an entry is one bounds
/// check and one load away (entries are named by index, so moving them when
/// the vector grows changes nothing).
const WAITING_CHUNK: usize = 1024;

/// An endpoint address as the flow table keeps it: an IPv4 address as its
/// `u32`, an IPv6 address as its index in [`V6Names`] (the key's `fam` bits
/// say which). Keeps a flow key at 16 bytes whatever the family.
type Addr32 = u32;

/// `FlowKey::fam` / `Flow::bits`: the internal address is an IPv6 name.
const FAM_INTERNAL_V6: u8 = 1;
/// `FlowKey::fam` / `Flow::bits`: the remote address is an IPv6 name.
const FAM_REMOTE_V6: u8 = 2;

/// Protocol, internal endpoint, remote endpoint: 16 bytes (asserted below).
/// What the flow index hashes and compares; a slot keeps the fields
/// ([`Flow::key`]), not the padded struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    internal: Addr32,
    remote: Addr32,
    internal_port: u16,
    remote_port: u16,
    proto: Proto,
    fam: u8,
}

impl FlowKey {
    /// The addresses (internal low) and the ports (internal low) as two
    /// words: equal words, equal fields ([`Flow::key_is`]).
    #[inline(always)]
    fn words(&self) -> (u64, u32) {
        Self::words_of(
            self.internal,
            self.remote,
            self.internal_port,
            self.remote_port,
        )
    }

    #[inline(always)]
    fn words_of(
        internal: Addr32,
        remote: Addr32,
        internal_port: u16,
        remote_port: u16,
    ) -> (u64, u32) {
        (
            u64::from(internal) | u64::from(remote) << 32,
            u32::from(internal_port) | u32::from(remote_port) << 16,
        )
    }
}

/// `Flow::bits`: FIN seen subscriber → remote.
const BIT_FIN_OUT: u8 = 4;
/// `Flow::bits`: FIN seen remote → subscriber.
const BIT_FIN_IN: u8 = 8;
/// `Flow::bits`: RST seen.
const BIT_RST: u8 = 16;
/// `Flow::bits`: the public address is an IPv6 name.
const BIT_PUBLIC_V6: u8 = 32;
/// `Flow::bits`: the slot holds an active flow (else it is on the free list,
/// `public` being the next free slot).
const BIT_LIVE: u8 = 64;
/// `Flow::bits`: the mapping's [`FLAG_MIDFLOW`], the only flag the
/// correlator sets (asserted in `Correlator::insert_flow`).
const BIT_MIDFLOW: u8 = 128;

/// Most nanoseconds a flow's last packet (or last written state) may lie
/// after its first packet and still be kept in its slot
/// (`flow_span_max_ns`, 2^47 − 2 ns, 39 hours). At the bound nothing changes
/// for the flow: both times move to `Correlator::flow_wide` for the rest of
/// its life, and the slot's offsets say so ([`OFF47_WIDE`]).
const FLOW_SPAN_MAX_NS: u64 = OFF47_WIDE - 1;
/// `Flow` time offsets: the times are in `Correlator::flow_wide`.
const OFF47_WIDE: u64 = (1 << 47) - 1;

/// `Flow::word` bit positions: last packet offset, last written offset (47
/// bits each), protocol (2 bits, [`PROTOS`]).
const WORD_WRITTEN_SHIFT: u32 = 47;
const WORD_PROTO_SHIFT: u32 = 94;
/// The protocols by their 2-bit number in `Flow::word`.
const PROTOS: [Proto; 4] = [Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Icmpv6];

// A protocol's code in the word is its `Proto as u8` (`Flow::key_is`
// compares the two), and the code is the word's top two bits, the last of
// its 12 bytes' (`Flow::proto_code`).
const _: () = {
    let mut i = 0;
    while i < PROTOS.len() {
        assert!(PROTOS[i] as usize == i);
        i += 1;
    }
    assert!(WORD_PROTO_SHIFT + 2 == 96);
};

/// A 24-bit link in a slot ([`Flow::links`]): a slot number, a bucket head of
/// the expiry wheel (from [`WHEEL_BASE`] on) or [`LINK_NONE`].
type Link = u32;
/// No slot: the end of an index chain, or a flow not linked in the wheel.
const LINK_NONE: Link = (1 << 24) - 1;
/// First wheel head in the [`Link`] space: head of bucket `b` is
/// `WHEEL_BASE + b`; slot numbers stay below it. (One more link value, the
/// one before [`LINK_NONE`], named the scan's list until round 11; it is
/// left unused, so [`FLOWS_ACTIVE_MAX_LIMIT`] stays as it was.)
const WHEEL_BASE: Link = LINK_NONE - (EXPIRY_WHEEL_BUCKETS as Link + 1);
/// Most flow slots, so most active flows (`flows_active_max` is checked
/// against it): slot numbers are 24-bit links below the expiry wheel's bucket heads
/// (16 769 022; 939 MB of slots).
pub const FLOWS_ACTIVE_MAX_LIMIT: usize = WHEEL_BASE as usize;

/// `Flow::links` positions.
const LINK_WHEEL_PREV: usize = 0;
const LINK_WHEEL_NEXT: usize = 1;
const LINK_INDEX_NEXT: usize = 2;

/// One active flow: a fixed 56-byte slot of the flow slab (asserted below).
/// The mapping is rebuilt from it when written ([`Correlator::mapping`]).
/// Times are exact: the first packet's in full, the last packet's and the
/// last written state's as 47-bit nanosecond offsets after it
/// ([`FLOW_SPAN_MAX_NS`]). The key's fields are kept unpadded (its family
/// bits share `bits` with the TCP state, the mapping's flag and `BIT_LIVE`;
/// its protocol shares `word` with the offsets), and the slot links itself
/// into its expiry wheel bucket and its flow index chain with 24-bit links.
///
/// The field order is fixed (`repr(C)`; offsets asserted below): a pair
/// that continues its flow (98 % of those on the bench capture find it as
/// their chain's first slot, so read no link) reads or writes every field
/// but the links, so those come first, in bytes 0..[`FLOW_FOLD_BYTES`]
/// (47), and the links last: the fold's bytes lie in one cache line for
/// three of the eight positions a 56-byte slot takes against the lines
/// (slot start 0, 8 or 16 bytes into a line), which no order of these
/// fields betters (the links are the only 9 bytes the fold does not need).
/// This is the order the compiler chose until round 11
/// (docs/bench/round11-slot.md), now pinned so that a compiler's choice
/// cannot scatter it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Flow {
    first_ns: UnixNanos,
    internal: Addr32,
    remote: Addr32,
    /// Public address ([`Addr32`]; `BIT_PUBLIC_V6`), or the next free slot.
    public: Addr32,
    packets_out: u32,
    packets_in: u32,
    /// Little-endian: last packet − `first_ns` (47 bits), last written state
    /// − `first_ns` (47 bits), protocol (2 bits).
    word: [u8; 12],
    internal_port: u16,
    remote_port: u16,
    public_port: u16,
    /// `FAM_*` and `BIT_*`.
    bits: u8,
    /// Three little-endian 24-bit [`Link`]s: the flow's neighbours in the
    /// list of its expiry wheel bucket (`LINK_WHEEL_*`; [`LINK_NONE`] both
    /// when not linked: a free slot, or a flow taken off its bucket by the
    /// scan looking at it) and the next flow of its flow index chain.
    links: [u8; 9],
}

/// A flow slot's first bytes, which hold every field the fold of a pair
/// continuing its flow reads or writes (`find_flow`'s key, `observe`'s
/// public endpoint, bits, counters and time word): all but the links.
const FLOW_FOLD_BYTES: usize = std::mem::offset_of!(Flow, links);
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(Flow, first_ns) == 0);
    assert!(offset_of!(Flow, internal) == 8);
    assert!(offset_of!(Flow, remote) == 12);
    assert!(offset_of!(Flow, public) == 16);
    assert!(offset_of!(Flow, packets_out) == 20);
    assert!(offset_of!(Flow, packets_in) == 24);
    assert!(offset_of!(Flow, word) == 28);
    assert!(offset_of!(Flow, internal_port) == 40);
    assert!(offset_of!(Flow, remote_port) == 42);
    assert!(offset_of!(Flow, public_port) == 44);
    assert!(offset_of!(Flow, bits) == 46);
    assert!(FLOW_FOLD_BYTES == 47);
    assert!(std::mem::align_of::<Flow>() == 8);
};

const _: () = assert!(std::mem::size_of::<FlowKey>() == 16);
const _: () = assert!(std::mem::size_of::<Flow>() == 56);

impl Flow {
    const FREE: Flow = Flow {
        first_ns: 0,
        internal: 0,
        remote: 0,
        public: NO_SLOT,
        packets_out: 0,
        packets_in: 0,
        internal_port: 0,
        remote_port: 0,
        public_port: 0,
        bits: 0,
        links: [0xff; 9],
        word: [0; 12],
    };

    fn live(&self) -> bool {
        self.bits & BIT_LIVE != 0
    }

    fn link(&self, k: usize) -> Link {
        let b = &self.links[3 * k..3 * k + 3];
        u32::from_le_bytes([b[0], b[1], b[2], 0])
    }

    fn set_link(&mut self, k: usize, l: Link) {
        assert!(l <= LINK_NONE);
        self.links[3 * k..3 * k + 3].copy_from_slice(&l.to_le_bytes()[..3]);
    }

    fn word(&self) -> u128 {
        let mut b = [0; 16];
        b[..12].copy_from_slice(&self.word);
        u128::from_le_bytes(b)
    }

    fn set_word(&mut self, w: u128) {
        self.word.copy_from_slice(&w.to_le_bytes()[..12]);
    }

    fn proto(&self) -> Proto {
        PROTOS[(self.word() >> WORD_PROTO_SHIFT) as usize & 3]
    }

    /// The protocol's code ([`PROTOS`]' index: `proto() as u8`), read
    /// from the word's last byte alone.
    #[inline(always)]
    fn proto_code(&self) -> u8 {
        self.word[11] >> (WORD_PROTO_SHIFT - 88)
    }

    /// Whether the slot's key is `key` (`self.key() == *key`), given
    /// `key`'s addresses and ports as [`FlowKey::words`] packs them: the
    /// two addresses and the two ports each compared as one word (adjacent
    /// in the slot and loaded together), then the protocol and family.
    #[inline(always)]
    fn key_is(&self, key: &FlowKey, (addrs, ports): (u64, u32)) -> bool {
        let own = FlowKey::words_of(
            self.internal,
            self.remote,
            self.internal_port,
            self.remote_port,
        );
        let is = own == (addrs, ports)
            && self.proto_code() == key.proto as u8
            && self.bits & (FAM_INTERNAL_V6 | FAM_REMOTE_V6) == key.fam;
        debug_assert_eq!(is, self.key() == *key && key.words() == (addrs, ports));
        is
    }

    fn key(&self) -> FlowKey {
        FlowKey {
            internal: self.internal,
            remote: self.remote,
            internal_port: self.internal_port,
            remote_port: self.remote_port,
            proto: self.proto(),
            fam: self.bits & (FAM_INTERNAL_V6 | FAM_REMOTE_V6),
        }
    }

    /// The mapping's `FLAG_*` bits.
    fn flags(&self) -> u8 {
        if self.bits & BIT_MIDFLOW != 0 {
            FLAG_MIDFLOW
        } else {
            0
        }
    }

    fn last_off(&self) -> u64 {
        self.word() as u64 & OFF47_WIDE
    }

    fn written_off(&self) -> u64 {
        (self.word() >> WORD_WRITTEN_SHIFT) as u64 & OFF47_WIDE
    }

    /// Whether the times are in `Correlator::flow_wide`.
    fn wide(&self) -> bool {
        self.last_off() == OFF47_WIDE
    }

    fn set_offs(&mut self, last_off: u64, written_off: u64) {
        assert!(last_off <= OFF47_WIDE && written_off <= OFF47_WIDE);
        let proto = self.word() >> WORD_PROTO_SHIFT;
        self.set_word(
            u128::from(last_off)
                | u128::from(written_off) << WORD_WRITTEN_SHIFT
                | proto << WORD_PROTO_SHIFT,
        );
    }

    /// FIN/RST state as an end reason (`Open` if not closed).
    fn closed_reason(&self) -> EndReason {
        if self.bits & BIT_RST != 0 {
            EndReason::Rst
        } else if self.bits & (BIT_FIN_OUT | BIT_FIN_IN) == BIT_FIN_OUT | BIT_FIN_IN {
            EndReason::Fin
        } else {
            EndReason::Open
        }
    }

    /// Packet time after which the flow is idle: its last packet (`last_ns`,
    /// from `Correlator::flow_times`) + the hold of its state (closed by
    /// FIN/RST, else idle).
    fn deadline_ns(&self, last_ns: UnixNanos, hold: &HoldTimes) -> UnixNanos {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let probe = Mapping {
            proto: self.proto(),
            internal: unspecified,
            public: unspecified,
            remote: unspecified,
            first_ns: self.first_ns,
            last_ns,
            end: match self.closed_reason() {
                EndReason::Open => EndReason::Idle,
                r => r,
            },
            packets_out: self.packets_out,
            packets_in: self.packets_in,
            flags: self.flags(),
        };
        probe.last_ns.saturating_add(hold.hold_ns(&probe))
    }
}

/// Active flows per flow index head before the heads double
/// (`index_flows_per_head_max`), in fifths: 8 / 5 = 1.6, so chains average
/// at most 1.6 slots, and the heads take 4 bytes per 0.8 to 1.6 flows: at
/// most 5 B a flow at any peak (the heads double past a power of two times
/// 1.6), 4.7 B at the bench capture's. 2 until round 9 (at most 4 B a flow,
/// 2.3 B there): with chains shorter, the chain's first slot (the one the
/// prefetch hints load) is more often the flow a pair looks up (perf,
/// docs/bench/round9-corr5.md); `natrec-corrmem` 63.7 B a flow in all
/// (bound 64).
const INDEX_FLOWS_PER_HEAD_MAX_FIFTHS: usize = 8;

/// Whether `flows` active flows are more than the index of `1 << bits`
/// heads takes ([`INDEX_FLOWS_PER_HEAD_MAX_FIFTHS`]).
const fn index_over(flows: usize, bits: u32) -> bool {
    flows * 5 > INDEX_FLOWS_PER_HEAD_MAX_FIFTHS << bits
}
/// log2 of the flow index's first number of heads (1 024, 4 KiB).
const INDEX_BITS_MIN: u32 = 10;
/// log2 of the most heads the flow index can reach: at 2^31 heads
/// `index_over` is false for any number of flows a correlator may hold
/// ([`FLOWS_ACTIVE_MAX_LIMIT`]), so it never doubles past. So a head number
/// (a flow key hash's top `index_bits` bits) is always in the hash's high
/// half, the part a flow event carries ([`Observation::flow_hi`]).
const INDEX_BITS_MAX: u32 = 31;
const _: () = assert!(!index_over(FLOWS_ACTIVE_MAX_LIMIT, INDEX_BITS_MAX) && INDEX_BITS_MAX <= 32);

pub(crate) use flow_heads::{FlowHeads, HeadNo};

/// The flow index's heads, a power of two of [`Link`]s, and the head
/// numbers that read them without a bounds check.
mod flow_heads {
    use super::{Link, INDEX_BITS_MAX, LINK_NONE};

    /// A head number of a [`FlowHeads`], made only by
    /// [`FlowHeads::head_of`] (the field is private to this module), so
    /// below the length of the table that made it, which never shrinks
    /// (`double` is its only change of size): below it for ever.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct HeadNo(u32);

    impl HeadNo {
        /// Head 0, which every table has: a placeholder (the idle scan's
        /// ring before it is filled).
        pub(crate) const FIRST: HeadNo = HeadNo(0);

        /// The number, for a hint kept across calls (read back with the
        /// checked [`FlowHeads::get`]: the table may have doubled since,
        /// and hints are kept as plain numbers).
        #[inline(always)]
        pub(crate) fn number(self) -> u32 {
            self.0
        }
    }

    /// `1 << bits` heads, numbered by a flow key hash's top `bits` bits.
    /// Reading a head by its [`HeadNo`] needs no bounds check: the three
    /// index reads an observation makes were three `cmp`/`jae` pairs with
    /// the length's load before (round15-split15.md, next step 3).
    pub(crate) struct FlowHeads {
        heads: Vec<Link>,
        /// `64 - bits`: a hash shifted right by it is its head number
        /// (kept, not subtracted at each of the three or four uses an
        /// observation makes).
        shift: u32,
    }

    impl FlowHeads {
        /// `1 << bits` empty heads (`bits` in 1..=[`INDEX_BITS_MAX`]).
        pub(crate) fn new(bits: u32) -> FlowHeads {
            assert!((1..=INDEX_BITS_MAX).contains(&bits));
            FlowHeads {
                heads: vec![LINK_NONE; 1 << bits],
                shift: 64 - bits,
            }
        }

        /// log2 of the number of heads.
        #[inline(always)]
        pub(crate) fn bits(&self) -> u32 {
            64 - self.shift
        }

        /// The number of heads (tests).
        #[cfg(test)]
        pub(crate) fn len(&self) -> usize {
            self.heads.len()
        }

        /// Bytes allocated.
        pub(crate) fn allocation_size(&self) -> usize {
            self.heads.capacity() * std::mem::size_of::<Link>()
        }

        /// The head number of flow key hash `hash`: its top `bits()` bits.
        #[inline(always)]
        pub(crate) fn head_of(&self, hash: u64) -> HeadNo {
            // `shift` ≥ 64 − INDEX_BITS_MAX ≥ 32: the number fits a u32.
            HeadNo((hash >> self.shift) as u32)
        }

        /// Twice as many heads, all empty (the caller links every flow
        /// again). Head numbers made before stay below the length.
        pub(crate) fn double(&mut self) {
            let bits = self.bits() + 1;
            assert!(bits <= INDEX_BITS_MAX);
            self.heads = vec![LINK_NONE; 1 << bits];
            self.shift = 64 - bits;
        }

        /// Head `h` kept as a plain number (a hint across calls), if the
        /// table has it.
        #[inline(always)]
        pub(crate) fn get(&self, h: u32) -> Option<Link> {
            self.heads.get(h as usize).copied()
        }

        /// Every head with its number (tests).
        #[cfg(test)]
        pub(crate) fn iter(&self) -> impl Iterator<Item = (HeadNo, Link)> + '_ {
            self.heads
                .iter()
                .enumerate()
                .map(|(h, &l)| (HeadNo(h as u32), l))
        }
    }

    impl FlowHeads {
        /// The hints of one step of `Correlator::apply_events`: starts
        /// loading the head of flow key hash `ahead` (0: none) and returns
        /// the head of hash `half` (0: none, `LINK_NONE`), the table's
        /// place and size read once for the two (a prefetch makes the
        /// compiler read them again for a second `head_of`).
        #[inline(always)]
        #[allow(unsafe_code)]
        pub(crate) fn hints(&self, ahead: u64, half: u64) -> Link {
            let (shift, heads) = (self.shift, &self.heads[..]);
            let first = if half != 0 {
                let h = (half >> shift) as usize;
                debug_assert!(h < heads.len());
                // SAFETY: `half >> shift` is `head_of(half)`'s number, in
                // bounds (`index`).
                unsafe { *heads.get_unchecked(h) }
            } else {
                LINK_NONE
            };
            if ahead != 0 {
                // A hint: the address only (no reference made, so no
                // bound to keep; a prefetch never faults).
                super::slab::prefetch_ptr(heads.as_ptr().wrapping_add((ahead >> shift) as usize));
            }
            first
        }
    }

    impl std::ops::Index<HeadNo> for FlowHeads {
        type Output = Link;

        #[inline(always)]
        #[allow(unsafe_code)]
        fn index(&self, h: HeadNo) -> &Link {
            debug_assert!(
                (h.0 as usize) < self.heads.len(),
                "head {} of {}",
                h.0,
                self.heads.len()
            );
            // SAFETY: `h` was made by `head_of` of this table (each
            // correlator has one table and its head numbers never leave
            // it: the hints it keeps across calls are plain numbers, read
            // with `get`), as `hash >> shift` < `1 << (64 - shift)`, the
            // length then; the length only grows (`double`), so `h` is in
            // bounds now.
            unsafe { self.heads.get_unchecked(h.0 as usize) }
        }
    }

    impl std::ops::IndexMut<HeadNo> for FlowHeads {
        #[inline(always)]
        #[allow(unsafe_code)]
        fn index_mut(&mut self, h: HeadNo) -> &mut Link {
            debug_assert!(
                (h.0 as usize) < self.heads.len(),
                "head {} of {}",
                h.0,
                self.heads.len()
            );
            // SAFETY: as `index`.
            unsafe { self.heads.get_unchecked_mut(h.0 as usize) }
        }
    }
}

/// End of the slab's free list (through `Flow::public`) and of the pending
/// slab's lists.
const NO_SLOT: u32 = u32::MAX;

/// IPv6 addresses of active flows, interned to a `u32` with a reference count
/// (one per endpoint of a flow that uses it); freed names are reused.
#[derive(Default)]
struct V6Names {
    ids: FxHashMap<u128, u32>,
    /// (address, references) by name; references 0 = free.
    names: Vec<(u128, u32)>,
    free: Vec<u32>,
}

impl V6Names {
    fn find(&self, a: u128) -> Option<u32> {
        self.ids.get(&a).copied()
    }

    fn acquire(&mut self, a: u128) -> u32 {
        if let Some(&id) = self.ids.get(&a) {
            self.names[id as usize].1 += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = (a, 1);
                id
            }
            None => {
                self.names.push((a, 1));
                u32::try_from(self.names.len() - 1).expect("fewer names than flows_active_max")
            }
        };
        self.ids.insert(a, id);
        id
    }

    fn release(&mut self, id: u32) {
        let e = &mut self.names[id as usize];
        assert!(e.1 > 0, "IPv6 name released more often than acquired");
        e.1 -= 1;
        if e.1 == 0 {
            self.ids.remove(&e.0);
            self.free.push(id);
        }
    }

    fn addr(&self, id: u32) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self.names[id as usize].0))
    }
}

/// How many expired flows ahead of the one being removed a scan prefetches
/// the slot of (half as far ahead the index head, a quarter as far the
/// first flow of its index chain).
const EXPIRE_PREFETCH_AHEAD: usize = 8;
/// The flow part of a split correlator ([`Correlator::apply_events`]):
/// an observation's index head is prefetched this many events ahead, its
/// chain's first slot half as far ahead (hints only).
const FLOW_EVENT_PREFETCH_AHEAD: usize = 8;
/// [`Correlator::apply_events`] keeps its hints' hashes for this many
/// events at a time (on the stack, with `FLOW_EVENT_PREFETCH_AHEAD` more).
const EVENT_RUN: usize = 64;

/// Buckets of the expiry wheel (`expiry_wheel_buckets`), each
/// [`EXPIRY_BUCKET_NS`] of deadlines wide: a span of 1 024 s (17 min), longer
/// than the default holds but TCP open's (2 h 4 min). A deadline further
/// ahead is queued in the last bucket of the span and queued again (at its
/// own bucket, or the span's last again) when that bucket is due: a flow
/// held for two hours is looked at about eight times instead of once, which
/// is nothing against the scans' due flows. Each bucket is a circular doubly
/// linked list through its head and the wheel links of the flows in it
/// ([`Flow::links`]), so a flow is linked, unlinked and moved in O(1) and the
/// wheel allocates nothing per flow. The heads are 8 bytes each (64 KiB).
const EXPIRY_WHEEL_BUCKETS: usize = 8192;
/// Width of an expiry wheel bucket (`expiry_bucket_ns`, 1/8 s). A scan looks
/// at every flow of the bucket holding its clock (part of it is past), and
/// the flows due later in that bucket, queued again there, are looked at
/// again by the next scan: with one-second buckets (until round 11) and the
/// default one-second scans, nearly every flow was looked at twice, once a
/// scan before its deadline (the scan ran early in its deadline's second)
/// and once when closed; an eighth of a second leaves about a sixteenth of
/// them looked at twice (docs/bench/round11-tailq.md). Which flows a scan
/// closes does not depend on it (every active flow past its deadline), nor
/// their order (sorted).
const EXPIRY_BUCKET_NS: i64 = NANOS_PER_SEC / 8;
/// Most lists a scan walks at once (`expiry_walk_lists_max`): its due
/// buckets' lists, each from both ends ([`Correlator::expire_idle`]). Eight
/// a second of due buckets with the default one-second scans.
const EXPIRE_WALK_LISTS: usize = 8;

/// A decoded packet reduced to what the correlator needs: endpoints (canonical,
/// compact), subscriber tests, protocol, TCP flags and the hash of the fields
/// a NAT leaves alone. Computed without correlator state, so a pipeline can
/// do it on the thread that decodes ([`Preparer`]); 56 bytes, with a byte
/// for the side its carrier gives ([`Prepared::side`]), so that a pipeline's
/// item of it and its time is one 64-byte cache line (round 19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    src: Ep,
    dst: Ep,
    invariants: u64,
    /// For a packet with exactly one subscriber end, the hash of its flow's
    /// key (IPv4 flows; else 0): the key with the subscriber's end as the
    /// internal one, whichever of the two it is; 0 for a packet with none
    /// or two. **A result input since round 14** (`corr14`): when an inside
    /// copy pairs, `find_flow` takes it, if not 0, as the flow key's
    /// [`Correlator::key_hash`] instead of hashing the key again; it must be
    /// exactly that hash (debug builds assert it; the proptest
    /// `carried_flow_hash_is_the_tables`). Also [`Correlator::prefetch_next`]'s
    /// hint. Until round 19 two fields, `hash_out` (subscriber destination)
    /// and `hash_in` (subscriber source), of which the preparer set at most
    /// one: the subscriber tests say which one this is (an inside copy's
    /// direction is `Out` exactly when its source is the subscriber's).
    /// Until round 12 (`onekey2`) the slots carried the [`pair_hash`] of the
    /// packet's out and in keys; copies now wait and probe under their
    /// coarse key ([`coarse_hash`]: the invariants), and the correlator
    /// hashes a pair key only where a copy waits on, or looks at, a pair
    /// key's list (rare), so the preparer computes none.
    flow_hash: u64,
    proto: Proto,
    tcp_flags: u8,
    /// The subscriber tests of the source ([`SUB_SRC`]) and destination
    /// ([`SUB_DST`]) addresses, one bit each (two `bool`s until round 19:
    /// one byte freed for `side`).
    subs: u8,
    /// Not the packet's: the side its carrier gives it ([`Prepared::set_side`]),
    /// kept here for a pipeline's item (the replay's batches); the preparer
    /// writes [`Side::Unknown`] where it writes the whole value and leaves it
    /// alone where it writes in place, and the correlator never reads it
    /// (its pushes take the side as an argument).
    side: Side,
}

/// [`Prepared::subs`]: the source address is a subscriber's.
const SUB_SRC: u8 = 1;
/// [`Prepared::subs`]: the destination address is a subscriber's.
const SUB_DST: u8 = 2;

/// [`Prepared::subs`] of the two subscriber tests.
#[inline(always)]
fn subs_of(src_sub: bool, dst_sub: bool) -> u8 {
    (u8::from(src_sub) * SUB_SRC) | (u8::from(dst_sub) * SUB_DST)
}

const _: () = assert!(std::mem::size_of::<Prepared>() == 56);

impl Prepared {
    /// The pair key of this packet in direction `dir` (the remote end is the
    /// destination going out, the source coming in) and the endpoint a copy
    /// waiting under it keeps (the other end: the translated one).
    #[inline(always)]
    fn pair_key(&self, dir: Dir) -> (PairKey, Ep) {
        let (remote, endpoint) = match dir {
            Dir::Out => (self.dst, self.src),
            Dir::In => (self.src, self.dst),
        };
        let key = PairKey {
            dir,
            proto: self.proto,
            remote,
            invariants: self.invariants,
            flow_hi: 0,
        };
        (key, endpoint)
    }

    /// A placeholder (all zero, no subscriber, ICMP) for a slot that
    /// [`Preparer::prepare_bytes_into`] fills; not a packet.
    pub const EMPTY: Prepared = Prepared {
        src: Ep {
            ip: [0; 16],
            port: 0,
        },
        dst: Ep {
            ip: [0; 16],
            port: 0,
        },
        invariants: 0,
        flow_hash: 0,
        proto: Proto::Icmp,
        tcp_flags: 0,
        subs: 0,
        side: Side::Unknown,
    };

    /// Whether the source address is a subscriber's.
    #[inline(always)]
    fn src_sub(&self) -> bool {
        self.subs & SUB_SRC != 0
    }

    /// Whether the destination address is a subscriber's.
    #[inline(always)]
    fn dst_sub(&self) -> bool {
        self.subs & SUB_DST != 0
    }

    /// The side stored by [`Prepared::set_side`] (its carrier's, not read
    /// by the correlator), or [`Side::Unknown`].
    #[inline(always)]
    pub fn side(&self) -> Side {
        self.side
    }

    /// Stores the side the carrier gives this packet in the byte kept for
    /// it (a pipeline item's time and side fit one cache line with it).
    #[inline(always)]
    pub fn set_side(&mut self, side: Side) {
        self.side = side;
    }
}

/// Prepares decoded packets for a [`Correlator`] (its subscriber prefixes):
/// the per-packet work that needs no correlator state.
#[derive(Clone, Debug)]
pub struct Preparer {
    /// What an IPv4 address's first 16 bits alone say, one bit pair per /16
    /// (`[any, all]` words of 64 /16s each, side by side so one cache line
    /// answers): `any`, some subscriber prefix holds addresses of it (`any`
    /// clear: no subscriber prefix holds it, the remote ends' common answer,
    /// one bit); `all`, a prefix of /16 or shorter holds every address of it;
    /// `any` without `all`, only longer prefixes start in it (look in
    /// `sub_v4_long`). With the default prefixes (all /16 or shorter) every
    /// IPv4 test is one or two bits.
    v4_16: Box<[[u64; 2]; 1024]>,
    /// Subscriber prefixes longer than /16 as (network, mask).
    sub_v4_long: Vec<(u32, u32)>,
    /// IPv6 subscriber prefixes as (network, mask).
    sub_v6: Vec<(u128, u128)>,
}

impl Preparer {
    /// The preparer for a correlator configured by `cfg`.
    pub fn new(cfg: &CorrelatorConfig) -> Preparer {
        let mut v4_16 = Box::new([[0u64; 2]; 1024]);
        let mut sub_v4_long = Vec::new();
        let mut sub_v6 = Vec::new();
        // `k` 1: `all` (and `any`); 0: `any` alone.
        let mut set = |i: u32, k: usize| {
            let w = &mut v4_16[(i >> 6) as usize];
            w[0] |= 1 << (i & 63);
            w[k] |= 1 << (i & 63);
        };
        for p in &cfg.subscriber_prefixes {
            match p {
                IpNet::V4(n) => {
                    let (net, len) = (u32::from(n.network()), n.prefix_len());
                    if len <= 16 {
                        // Every /16 under the prefix: 2^(16 - len) of them.
                        let first = net >> 16;
                        for i in first..first + (1 << (16 - len)) {
                            set(i, 1);
                        }
                    } else {
                        set(net >> 16, 0);
                        sub_v4_long.push((net, u32::from(n.netmask())));
                    }
                }
                IpNet::V6(n) => sub_v6.push((u128::from(n.network()), u128::from(n.netmask()))),
            }
        }
        Preparer {
            v4_16,
            sub_v4_long,
            sub_v6,
        }
    }

    /// Whether the IPv4 address is a subscriber's.
    #[inline(always)]
    fn is_subscriber_v4(&self, a: u32) -> bool {
        let i = a >> 16;
        let [any, all] = self.v4_16[(i >> 6) as usize];
        let bit = 1u64 << (i & 63);
        any & bit != 0 && (all & bit != 0 || self.sub_v4_long.iter().any(|&(n, m)| a & m == n))
    }

    /// Whether the IPv6 address (as its `u128`, not IPv4-mapped) is a
    /// subscriber's.
    #[inline]
    fn is_subscriber_v6(&self, a: u128) -> bool {
        self.sub_v6.iter().any(|&(n, m)| a & m == n)
    }

    /// Whether the address is a subscriber's (an IPv4-mapped address tested
    /// as IPv4).
    #[inline]
    fn is_subscriber(&self, ep: &Ep) -> bool {
        match ep.v4() {
            Some(a) => self.is_subscriber_v4(a),
            None => self.is_subscriber_v6(ep.bits()),
        }
    }

    /// `pkt` as [`Correlator::push_prepared`] takes it.
    pub fn prepare(&self, pkt: &Decoded) -> Prepared {
        let (src, dst) = (Ep::of(pkt.src, pkt.sport), Ep::of(pkt.dst, pkt.dport));
        self.prepared(
            src,
            dst,
            self.is_subscriber(&src),
            self.is_subscriber(&dst),
            pkt.proto,
            pkt.tcp.map_or(0, |t| t.flags),
            invariants(pkt),
        )
    }

    /// [`decode`] then [`Preparer::prepare`] of one packet's bytes, with the
    /// link details: exactly what those two return, for every input. The
    /// common cases (IPv4 or IPv6 without extension headers, TCP / UDP /
    /// ICMP echo, on Ethernet with or without VLAN tags and PPPoE, Linux
    /// SLL / SLL2 or raw IP) are read straight from the bytes; everything
    /// else, skips included, goes through `decode`.
    #[inline]
    pub fn prepare_bytes(&self, linktype: u16, data: &[u8]) -> Result<(Prepared, LinkInfo), Skip> {
        let (mut p, mut link) = (Prepared::EMPTY, LinkInfo::default());
        self.prepare_bytes_into(linktype, data, &mut p, &mut link)?;
        Ok((p, link))
    }

    /// [`Preparer::prepare_bytes`] written in place: on `Ok`, `out` and
    /// `link` hold what it returns; on a skip they are left as they were or
    /// partly written (meaningless). The replay's reader prepares each packet
    /// straight into its batch slot this way, so the 56-byte `Prepared` is
    /// not built on the stack and copied through a returned `Result`.
    #[inline(always)]
    pub fn prepare_bytes_into(
        &self,
        linktype: u16,
        data: &[u8],
        out: &mut Prepared,
        link: &mut LinkInfo,
    ) -> Result<(), Skip> {
        if self.prepare_fast_into(linktype, data, out, link) {
            return Ok(());
        }
        self.prepare_slow(linktype, data, out, link)
    }

    /// [`Preparer::prepare_bytes_into`] of a packet's link type and bytes
    /// (`pkt.linktype`, `pkt.data`; no other field is read). The packet is
    /// passed by reference and the slow path reads it from there, so a caller
    /// keeping it in memory (the replay's merge heads) loads its link type and
    /// bytes straight into the fast path's arguments and keeps none of them
    /// in its registers across that call for the slow path (round 13).
    #[inline(always)]
    pub fn prepare_packet_into(
        &self,
        pkt: &RawPacket<'_>,
        out: &mut Prepared,
        link: &mut LinkInfo,
    ) -> Result<(), Skip> {
        if self.prepare_fast_into(pkt.linktype, pkt.data, out, link) {
            return Ok(());
        }
        self.prepare_packet_slow(pkt, out, link)
    }

    /// The fast path of [`Preparer::prepare_bytes_into`] in one function
    /// (the decode, the hashes and the stores into `out` inlined into it,
    /// nothing returned through memory); `false`: not a packet it reads.
    #[inline(never)]
    fn prepare_fast_into(
        &self,
        linktype: u16,
        data: &[u8],
        out: &mut Prepared,
        link: &mut LinkInfo,
    ) -> bool {
        match fast(linktype, data, link) {
            Some(f) => {
                self.prepare_fast_to(&f, out);
                true
            }
            None => false,
        }
    }

    /// [`Preparer::prepare_slow`] of `pkt`'s link type and bytes, read from
    /// `pkt` here, not kept by the caller across the fast path.
    #[inline(never)]
    fn prepare_packet_slow(
        &self,
        pkt: &RawPacket<'_>,
        out: &mut Prepared,
        link: &mut LinkInfo,
    ) -> Result<(), Skip> {
        self.prepare_slow(pkt.linktype, pkt.data, out, link)
    }

    /// The rest of [`Preparer::prepare_bytes_into`]: `decode`, then
    /// [`Preparer::prepare`].
    #[inline(never)]
    fn prepare_slow(
        &self,
        linktype: u16,
        data: &[u8],
        out: &mut Prepared,
        link: &mut LinkInfo,
    ) -> Result<(), Skip> {
        let d = decode(linktype, data)?;
        *out = self.prepare(&d);
        *link = d.link;
        Ok(())
    }

    /// [`Preparer::prepare_fast`] written into `out`: an IPv4 packet's
    /// fields each stored as soon as they are known (the decoded ones
    /// first, then the invariants hash, the subscriber tests and the flow
    /// hash), so fewer of them are kept, or spilled, across the hashes
    /// (round 13); the same values as [`Preparer::prepared`] builds.
    #[inline(always)]
    fn prepare_fast_to(&self, f: &Fast, out: &mut Prepared) {
        let FastAddrs::V4 { src, dst } = f.addrs else {
            *out = self.prepare_fast(f);
            return;
        };
        let proto = f.proto;
        out.proto = proto;
        out.tcp_flags = f.tcp_flags();
        out.src = Ep::of_v4(src, f.sport);
        out.dst = Ep::of_v4(dst, f.dport);
        out.invariants = invariant_hash_words(f.w0, f.seq_ack, f.w2, f.payload_fp);
        let (src_sub, dst_sub) = (self.is_subscriber_v4(src), self.is_subscriber_v4(dst));
        out.subs = subs_of(src_sub, dst_sub);
        // As `prepared`: the flow's key hash where one end is a subscriber's.
        let flow = |internal: u32, remote: u32, internal_port: u16, remote_port: u16| {
            Correlator::key_hash(&FlowKey {
                internal,
                remote,
                internal_port,
                remote_port,
                proto,
                fam: 0,
            })
        };
        out.flow_hash = match (src_sub, dst_sub) {
            (false, true) => flow(dst, src, f.dport, f.sport),
            (true, false) => flow(src, dst, f.sport, f.dport),
            _ => 0,
        };
    }

    /// [`Preparer::prepare`] of the [`Decoded`] that `f` stands for.
    #[inline(always)]
    fn prepare_fast(&self, f: &Fast) -> Prepared {
        let invariants = invariant_hash_words(f.w0, f.seq_ack, f.w2, f.payload_fp);
        let flags = f.tcp_flags();
        match f.addrs {
            FastAddrs::V4 { src, dst } => self.prepared(
                Ep::of_v4(src, f.sport),
                Ep::of_v4(dst, f.dport),
                self.is_subscriber_v4(src),
                self.is_subscriber_v4(dst),
                f.proto,
                flags,
                invariants,
            ),
            FastAddrs::V6 { src, dst } => {
                let (src, dst) = (Ep::of_v6(src, f.sport), Ep::of_v6(dst, f.dport));
                self.prepared(
                    src,
                    dst,
                    self.is_subscriber(&src),
                    self.is_subscriber(&dst),
                    f.proto,
                    flags,
                    invariants,
                )
            }
        }
    }

    /// The [`Prepared`] of a packet's endpoints, their subscriber tests,
    /// protocol, TCP flags and invariant hash.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn prepared(
        &self,
        src: Ep,
        dst: Ep,
        src_sub: bool,
        dst_sub: bool,
        proto: Proto,
        tcp_flags: u8,
        invariants: u64,
    ) -> Prepared {
        // The flow's key hash where one end is a subscriber's (IPv4).
        let flow = |internal: &Ep, remote: &Ep| match (internal.v4(), remote.v4()) {
            (Some(i), Some(r)) => Correlator::key_hash(&FlowKey {
                internal: i,
                remote: r,
                internal_port: internal.port,
                remote_port: remote.port,
                proto,
                fam: 0,
            }),
            _ => 0,
        };
        Prepared {
            src,
            dst,
            invariants,
            // The subscriber's end as the internal one (see
            // `Prepared::flow_hash`).
            flow_hash: match (src_sub, dst_sub) {
                (false, true) => flow(&dst, &src),
                (true, false) => flow(&src, &dst),
                _ => 0,
            },
            proto,
            tcp_flags,
            subs: subs_of(src_sub, dst_sub),
            side: Side::Unknown,
        }
    }
}

/// The correlation state machine. See the module docs.
pub struct Correlator {
    cfg: CorrelatorConfig,
    // Unkeyed hashes ([`pair_hash`], `key_hash`; FxHash for the side
    // tables): the keys are packet fields, chosen by remote hosts; a flood of
    // colliding keys is bounded by `pending_max` and `flows_active_max`, and
    // SipHash cost a fifth of the replay time.
    /// Pending copies by pair key: the slab entry of the oldest copy waiting
    /// under each key; hashed with [`pair_hash`], which the reader computes
    /// ([`Prepared`]) for the two keys of each packet.
    pending: PendingTable,
    /// The pending slab: [`Waiting`] copies, grown by [`WAITING_CHUNK`].
    waiting: Vec<Waiting>,
    /// First free entry (linked through `key_next`), or [`NO_SLOT`].
    waiting_free: u32,
    /// Oldest and newest waiting copy ([`NO_SLOT`]: none).
    order_head: u32,
    order_tail: u32,
    pending_count: usize,
    /// Entries on pair keys' lists (not coarse): when 0, no probe looks
    /// for a pair key's list.
    fine_count: usize,
    /// The flow index: chains of slots by key hash, linked through the
    /// slots' `LINK_INDEX_NEXT` ([`LINK_NONE`]: empty). A power of two of
    /// heads, doubled (and every chain rebuilt) when the active flows exceed
    /// [`INDEX_FLOWS_PER_HEAD_MAX_FIFTHS`] per head ([`FlowHeads`]: read by
    /// a [`HeadNo`] without a bounds check).
    index_heads: FlowHeads,
    /// The slab: 56-byte slots in one map reserved for `flows_active_max`
    /// of them, filled 2 MiB ranges in transparent huge pages ([`slab`]).
    flows: MappedSlab<Flow>,
    /// First free slot (linked through `Flow::public`), or [`NO_SLOT`].
    flow_free: u32,
    flows_active: usize,
    /// (last packet, last written state) of the flows whose times lie more
    /// than [`FLOW_SPAN_MAX_NS`] after their first packet, by slot.
    flow_wide: FxHashMap<u32, (UnixNanos, UnixNanos)>,
    /// IPv6 addresses of active flows.
    v6: V6Names,
    /// Idle expiry: a timer wheel of [`EXPIRY_WHEEL_BUCKETS`] buckets of
    /// [`EXPIRY_BUCKET_NS`]; the deadlines from `p × EXPIRY_BUCKET_NS` (the
    /// wheel position `p`) to the next position go to bucket
    /// `p mod EXPIRY_WHEEL_BUCKETS`. Each
    /// bucket is a list of flows linked through their slots ([`Link`]); these
    /// are the heads, (prev, next).
    /// Invariant: every active flow is in exactly one bucket, of a position at
    /// or before its own deadline's ([`Flow::deadline_ns`]) and in
    /// `wheel_pos..wheel_pos + EXPIRY_WHEEL_BUCKETS`; a deadline only moves
    /// earlier when a TCP flow closes (FIN both ways, RST), and the flow is
    /// moved to its new deadline's bucket then. A removed flow leaves its
    /// bucket; a flow not due yet when its bucket is looked at is moved to
    /// the bucket of its deadline.
    wheel: Vec<(Link, Link)>,
    /// First wheel position whose bucket has not been emptied (`i64::MIN`:
    /// nothing queued yet).
    wheel_pos: i64,
    preparer: Preparer,
    /// `refresh_interval_ns`, or `i64::MAX` when it is not above 0 (no
    /// refresh: a narrow slot's time since its last written state is at
    /// most `FLOW_SPAN_MAX_NS`, never that), so a pair's refresh test is one
    /// compare ([`touch_narrow`](Correlator::touch_narrow)).
    refresh_due_ns: i64,
    /// The clock. In a flow part (`Part::Flows`) it is moved only by the
    /// events that may need it, scans and opens (`apply_event`): its one
    /// use there is the expiry wheel's first position (`wheel_insert`'s
    /// first call, made by the first open), so an observation that
    /// continues a flow does not store it.
    now_ns: UnixNanos,
    next_scan_ns: UnixNanos,
    stats: CorrelatorStats,
    /// The index head an inside copy that waited last had prefetched
    /// ([`prefetch_flow`](Correlator::prefetch_flow)), whose flow slot
    /// the next packet prefetches; [`NO_SLOT`]: none. A hint only.
    prefetch_head: u32,
    /// The index head [`prefetch_next`](Correlator::prefetch_next) loaded
    /// for the packet after the next one pushed, and the one it loaded for
    /// the next one pushed (whose slot that push prefetches first);
    /// [`NO_SLOT`]: none. Hints only.
    next_head: u32,
    armed_head: u32,
    /// Which part(s) of the work this correlator does.
    part: Part,
    /// [`Part::Pairing`]: the observations and scans made so far, for the
    /// flow part ([`take_events`](Correlator::take_events)).
    events: Vec<FlowEvent>,
    /// Tests: every copy that waits probes its key again
    /// ([`probe_once_off`](Correlator::probe_once_off)).
    #[cfg(test)]
    test_probe_again: bool,
    /// Tests: [`coarse_list_max`](Correlator::coarse_list_max).
    #[cfg(test)]
    test_coarse_list_max: usize,
}

impl Correlator {
    /// A correlator with no state.
    ///
    /// # Panics
    /// When the flow slab's address space cannot be reserved
    /// ([`Correlator::try_new`] says so as an error instead), or on a
    /// configuration the CLI refuses (zero bounds, `flows_active_max` over
    /// [`FLOWS_ACTIVE_MAX_LIMIT`]).
    pub fn new(cfg: CorrelatorConfig) -> Correlator {
        Correlator::try_new(cfg).expect("reserving the flow slab's address space")
    }

    /// A correlator with no state, or an error naming what could not be
    /// reserved: `flows_active_max` slots of address space for the flow
    /// slab (memory is taken only as flows arrive).
    pub fn try_new(cfg: CorrelatorConfig) -> Result<Correlator, std::io::Error> {
        Correlator::try_new_part(cfg, Part::Both)
    }

    /// [`try_new`](Correlator::try_new) for a part: a pairing part has no
    /// flow table (a slab of one slot, no expiry wheel, an index of two
    /// empty heads for the flow hints of `prefetch_next`, which then find no
    /// chain to prefetch), so a split correlator reserves the flow slab's
    /// address space once.
    fn try_new_part(cfg: CorrelatorConfig, part: Part) -> Result<Correlator, std::io::Error> {
        assert!(cfg.pair_window_ns > 0 && cfg.pending_max > 0 && cfg.flows_active_max > 0);
        assert!(cfg.pending_per_key_max > 0);
        assert!(
            cfg.flows_active_max <= FLOWS_ACTIVE_MAX_LIMIT,
            "flows_active_max {} is over FLOWS_ACTIVE_MAX_LIMIT {FLOWS_ACTIVE_MAX_LIMIT}",
            cfg.flows_active_max
        );
        let flows_active_max = cfg.flows_active_max;
        let pairing = part == Part::Pairing;
        let slab_slots = if pairing { 1 } else { flows_active_max };
        let index_bits = if pairing { 1 } else { INDEX_BITS_MIN };
        Ok(Correlator {
            preparer: Preparer::new(&cfg),
            refresh_due_ns: if cfg.refresh_interval_ns > 0 {
                cfg.refresh_interval_ns
            } else {
                i64::MAX
            },
            cfg,
            pending: PendingTable::default(),
            waiting: Vec::new(),
            waiting_free: NO_SLOT,
            order_head: NO_SLOT,
            order_tail: NO_SLOT,
            pending_count: 0,
            fine_count: 0,
            index_heads: FlowHeads::new(index_bits),
            flows: MappedSlab::new(slab_slots).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "reserving {} MB of address space for the flow table (--flows-active-max {flows_active_max}): {e}; lower --flows-active-max or raise the process's address-space limit (ulimit -v)",
                        (flows_active_max * std::mem::size_of::<Flow>()) >> 20
                    ),
                )
            })?,
            flow_free: NO_SLOT,
            flows_active: 0,
            flow_wide: FxHashMap::default(),
            v6: V6Names::default(),
            wheel: if pairing {
                Vec::new()
            } else {
                (0..EXPIRY_WHEEL_BUCKETS as Link)
                    .map(|b| (WHEEL_BASE + b, WHEEL_BASE + b))
                    .collect()
            },
            wheel_pos: i64::MIN,
            now_ns: i64::MIN,
            next_scan_ns: i64::MIN,
            stats: CorrelatorStats::default(),
            prefetch_head: NO_SLOT,
            next_head: NO_SLOT,
            armed_head: NO_SLOT,
            part,
            events: Vec::new(),
            #[cfg(test)]
            test_probe_again: false,
            #[cfg(test)]
            test_coarse_list_max: COARSE_LIST_MAX,
        })
    }

    /// The pairing part of a correlator split over two threads: pairs
    /// copies as [`try_new`](Correlator::try_new)'s does and keeps the
    /// clock, but hands each observation and each idle scan over as a
    /// [`FlowEvent`] ([`take_events`](Correlator::take_events)) instead of
    /// folding it into flows. Its mappings come from a correlator made by
    /// [`try_new_flows`](Correlator::try_new_flows) fed those events in
    /// order ([`apply_events`](Correlator::apply_events)); the two
    /// [`stats`](Correlator::stats) [`merged`](CorrelatorStats::merged) are
    /// one correlator's. The events queue until taken: the caller bounds
    /// them (the replay takes them every `FLOW_EVENTS_PER_BATCH`).
    pub fn try_new_pairing(cfg: CorrelatorConfig) -> Result<Correlator, std::io::Error> {
        Correlator::try_new_part(cfg, Part::Pairing)
    }

    /// The flow part of a split correlator (see
    /// [`try_new_pairing`](Correlator::try_new_pairing)): only
    /// [`apply_events`](Correlator::apply_events) and
    /// [`finish`](Correlator::finish) are used on it.
    pub fn try_new_flows(cfg: CorrelatorConfig) -> Result<Correlator, std::io::Error> {
        Correlator::try_new_part(cfg, Part::Flows)
    }

    /// Events queued so far (a pairing part,
    /// [`try_new_pairing`](Correlator::try_new_pairing); always 0 otherwise).
    #[inline(always)]
    pub fn events_len(&self) -> usize {
        self.events.len()
    }

    /// Swaps the queued events with `into` (expected empty, its capacity
    /// reused for the next events).
    pub fn take_events(&mut self, into: &mut Vec<FlowEvent>) {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.events, into);
    }

    /// The flow part: folds a pairing part's events, in the order it queued
    /// them, appending mappings that open or end to `out`.
    pub fn apply_events(&mut self, events: &[FlowEvent], out: &mut Vec<Mapping>) {
        debug_assert_eq!(self.part, Part::Flows);
        // Hints: an observation's index head is prefetched
        // `FLOW_EVENT_PREFETCH_AHEAD` events ahead, its chain's first slot
        // half as far ahead, from the flow key hash kept in `hashes` (by
        // position in a run, below; found once an event: carried by the
        // preparer, or hashed here). The same hash is then the lookup's
        // (`observe`'s `flow_hash`), kept only for a flow whose two ends
        // are IPv4, where it is exact (a function of the observation's
        // fields alone; an IPv6 address's name may be given or released by
        // the events in between, so such a flow keeps 0). The head number
        // is taken from the hash with the index's size at each use, so the
        // index growing in between costs no wrong guess.
        const AHEAD: usize = FLOW_EVENT_PREFETCH_AHEAD;
        const HALF: usize = AHEAD / 2;
        const _: () = assert!(AHEAD.is_power_of_two() && HALF >= 1);
        // The hashes by position in a run of up to `EVENT_RUN` events:
        // `hashes[i]` is the `i`-th event's of the run, and the `AHEAD`
        // after the run are the next run's first ones (moved to the front
        // between runs), so the three an event reads and writes are at
        // constant offsets from its position (no ring index to wrap).
        let mut hashes = [0u64; EVENT_RUN + AHEAD];
        for (j, e) in events.iter().enumerate().take(AHEAD) {
            hashes[j] = self.event_hints(e, 0);
        }
        // All but the last `AHEAD` events have one `AHEAD` later (and one
        // `HALF` later): no test for either.
        let body = events.len().saturating_sub(AHEAD);
        let mut at = 0;
        while at < body {
            let m = (body - at).min(EVENT_RUN);
            // This run's events and the `AHEAD` after it, walked by windows
            // of `AHEAD + 1`: an event and the one `AHEAD` later at a
            // constant offset from one pointer (zipped slices were two
            // positions, each multiplied out), beside the window of their
            // hashes (the one `HALF` later in between).
            let run = &events[at..at + m + AHEAD];
            let hs = Cell::from_mut(&mut hashes[..]).as_slice_of_cells();
            let steps = run.windows(AHEAD + 1).zip(hs.windows(AHEAD + 1));
            for (w, h) in steps {
                let flow_hash = h[0].get();
                h[AHEAD].set(self.event_hints(&w[AHEAD], h[HALF].get()));
                self.apply_event(&w[0], flow_hash, out);
            }
            hashes.copy_within(m..m + AHEAD, 0);
            at += m;
        }
        for (j, e) in events[body..].iter().enumerate() {
            if j + HALF < AHEAD.min(events.len()) {
                self.prefetch_hashed_chain(hashes[j + HALF]);
            }
            self.apply_event_outlined(e, hashes[j], out);
        }
    }

    /// One event of [`apply_events`](Correlator::apply_events), with the
    /// flow key hash its prefetch kept (`observe`'s `flow_hash`).
    #[inline(always)]
    fn apply_event(&mut self, e: &FlowEvent, flow_hash: u64, out: &mut Vec<Mapping>) {
        match &e.0 {
            Ev::Observe(o) => {
                if !self.continue_flow(
                    o.ts_ns,
                    o.dir,
                    o.proto,
                    &o.internal,
                    &o.public,
                    &o.remote,
                    o.flags,
                    flow_hash,
                    out,
                ) {
                    self.open_event(o, flow_hash, out);
                }
            }
            &Ev::Scan(now_ns) => {
                self.now_ns = now_ns;
                self.expire_idle(now_ns, out);
            }
        }
    }

    /// [`apply_event`](Correlator::apply_event) out of line: a batch's last
    /// `FLOW_EVENT_PREFETCH_AHEAD` events (one copy of the inlined fold).
    #[inline(never)]
    fn apply_event_outlined(&mut self, e: &FlowEvent, flow_hash: u64, out: &mut Vec<Mapping>) {
        self.apply_event(e, flow_hash, out);
    }

    /// The hints of one step of [`apply_events`](Correlator::apply_events):
    /// starts loading the index head the flow lookup of event `e` reads
    /// (`FLOW_EVENT_PREFETCH_AHEAD` events ahead) and the first slot of the
    /// chain of flow key hash `half` (an event half as far ahead, whose
    /// head an earlier step loaded; 0: none), and returns `e`'s flow key
    /// hash, for a flow whose two ends are IPv4 (0: a scan, or an IPv6
    /// end, whose head is prefetched if an active flow may have it but
    /// whose hash is not kept: an IPv6 address's name may be given or
    /// released by the events in between). The hash is the preparer's
    /// carried one (its high half, all the head number needs) when the
    /// observation has it, else [`key_hash`](Correlator::key_hash) of its
    /// key.
    #[inline(always)]
    fn event_hints(&self, e: &FlowEvent, half: u64) -> u64 {
        let hash = match &e.0 {
            Ev::Observe(o) if o.flow_hi != 0 => u64::from(o.flow_hi) << 32,
            Ev::Observe(o) => match Ep::both_v4(&o.internal, &o.remote) {
                Some((i, r)) => Self::key_hash(&FlowKey {
                    internal: i,
                    remote: r,
                    internal_port: o.internal.port,
                    remote_port: o.remote.port,
                    proto: o.proto,
                    fam: 0,
                }),
                None => {
                    self.prefetch_v6_head(o);
                    0
                }
            },
            Ev::Scan(_) => 0,
        };
        let first = self.index_heads.hints(hash, half);
        if first != LINK_NONE {
            self.flows.prefetch_entry(first);
        }
        hash
    }

    /// [`event_hints`](Correlator::event_hints) of an
    /// observation with an IPv6 end: its index head, if both its addresses
    /// have names (else no active flow has them). A hint. Out of line: rare.
    #[inline(never)]
    fn prefetch_v6_head(&self, o: &Observation) {
        let Some((i, i6)) = self.addr32_find(&o.internal) else {
            return;
        };
        let Some((r, r6)) = self.addr32_find(&o.remote) else {
            return;
        };
        let key = FlowKey {
            internal: i,
            remote: r,
            internal_port: o.internal.port,
            remote_port: o.remote.port,
            proto: o.proto,
            fam: (u8::from(i6) * FAM_INTERNAL_V6) | (u8::from(r6) * FAM_REMOTE_V6),
        };
        slab::prefetch(&self.index_heads[self.index_head(&key)]);
    }

    /// Prefetches the first slot of the index chain of flow key hash
    /// `hash`, whose head an earlier hint loaded (0: nothing). A hint.
    #[inline(always)]
    fn prefetch_hashed_chain(&self, hash: u64) {
        if hash != 0 {
            let s = self.index_heads[self.head_of(hash)];
            if s != LINK_NONE {
                self.flows.prefetch_entry(s);
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CorrelatorStats {
        let mut s = self.stats.clone();
        s.flows_active = self.flows_active as u64;
        s.pending = self.pending_count as u64;
        s
    }

    /// Heap bytes held now, by structure.
    pub fn memory(&self) -> CorrelatorMemory {
        use std::mem::size_of;
        CorrelatorMemory {
            mapped: self.flows.resident_bytes(),
            flow_slab: self.flows.resident_bytes()
                + self.flow_wide.capacity() * (size_of::<(u32, (UnixNanos, UnixNanos))>() + 1),
            flow_index: self.index_heads.allocation_size(),
            expiry: self.wheel.capacity() * size_of::<(Link, Link)>(),
            pending: self.pending.allocation_size()
                + self.waiting.capacity() * size_of::<Waiting>(),
            v6_names: self.v6.ids.capacity() * (size_of::<(u128, u32)>() + 1)
                + self.v6.names.capacity() * size_of::<(u128, u32)>()
                + self.v6.free.capacity() * size_of::<u32>(),
            flow_events: self.events.capacity() * size_of::<FlowEvent>(),
        }
    }

    /// The correlator's clock: the latest time it was moved to by
    /// [`push_prepared`](Correlator::push_prepared) (or [`push`](Correlator::push))
    /// and [`advance`](Correlator::advance), i.e. the latest of their times
    /// (`i64::MIN` before any); the replay's writer clock. Not for a flow part
    /// ([`try_new_flows`](Correlator::try_new_flows)), whose clock is the
    /// pairing part's as its events carry it.
    pub fn now_ns(&self) -> UnixNanos {
        self.now_ns
    }

    /// A copy of the preparer of this correlator's packets, for another thread.
    pub fn preparer(&self) -> Preparer {
        self.preparer.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> &CorrelatorConfig {
        &self.cfg
    }

    /// Feeds one decoded packet captured at `ts_ns` on `side`. Mappings that
    /// open or end are appended to `out`.
    pub fn push(&mut self, ts_ns: UnixNanos, side: Side, pkt: &Decoded, out: &mut Vec<Mapping>) {
        let p = self.preparer.prepare(pkt);
        if self.part == Part::Pairing {
            self.push_prepared_pairing(ts_ns, side, &p, out);
        } else {
            self.push_prepared(ts_ns, side, &p, out);
        }
    }

    /// As [`push`](Correlator::push), for a packet already prepared by this
    /// correlator's [`Preparer`] (on another thread, say).
    pub fn push_prepared(
        &mut self,
        ts_ns: UnixNanos,
        side: Side,
        pkt: &Prepared,
        out: &mut Vec<Mapping>,
    ) {
        self.push_prepared_in::<false>(ts_ns, side, pkt, out);
    }

    /// [`push_prepared`](Correlator::push_prepared) for a pairing part
    /// ([`try_new_pairing`](Correlator::try_new_pairing)): the same
    /// results, without the flow slot hints' bookkeeping, which a pairing
    /// part (no flow table) never uses (its hint fields stay [`NO_SLOT`]):
    /// two tests and two stores a packet less (round 17). A copy of the
    /// pairing code of its own (the one-thread path's is unchanged).
    pub fn push_prepared_pairing(
        &mut self,
        ts_ns: UnixNanos,
        side: Side,
        pkt: &Prepared,
        out: &mut Vec<Mapping>,
    ) {
        debug_assert_eq!(self.part, Part::Pairing);
        self.push_prepared_in::<true>(ts_ns, side, pkt, out);
    }

    /// [`push_prepared`](Correlator::push_prepared) (`PAIRING` false) and
    /// [`push_prepared_pairing`](Correlator::push_prepared_pairing).
    #[inline(always)]
    fn push_prepared_in<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        side: Side,
        pkt: &Prepared,
        out: &mut Vec<Mapping>,
    ) {
        // The packet's number (from 1; a copy keeps it, `Copy::packet`):
        // the packets pushed so far, counted once.
        self.stats.packets += 1;
        // Hinted: the caller asks `prefetch_next` for the packets it pushes
        // (the replay's loops), so this packet's flow slot was prefetched
        // by now (here, or by the push before); else (live capture) an
        // inside copy that waits prefetches its flow itself (`offer_wait`).
        // A pairing part: never (`prefetch_flow` leaves it no head, and it
        // is asked `prefetch_next_pairing`, which arms none).
        let hinted = if PAIRING {
            debug_assert!(
                self.prefetch_head == NO_SLOT
                    && self.armed_head == NO_SLOT
                    && self.next_head == NO_SLOT,
                "a pairing part keeps no flow slot hint"
            );
            false
        } else {
            if self.prefetch_head != NO_SLOT {
                self.prefetch_slot();
            }
            let hinted = self.armed_head != NO_SLOT;
            if hinted {
                self.prefetch_armed_slot();
            }
            self.armed_head = self.next_head;
            self.next_head = NO_SLOT;
            hinted
        };
        self.advance(ts_ns, out);

        let (src_sub, dst_sub) = (pkt.src_sub(), pkt.dst_sub());
        if src_sub && dst_sub {
            self.stats.subscriber_to_subscriber += 1;
            return;
        }
        match side {
            Side::Outside if src_sub || dst_sub => {
                self.stats.untranslated += 1;
            }
            Side::Inside if !src_sub && !dst_sub => {
                self.stats.not_subscriber_inside += 1;
            }
            Side::Inside | Side::Unknown if src_sub => {
                // The flow's key hash (see `Prepared::flow_hash`), to
                // prefetch its flow while it waits unless hinted.
                let prefetch = if hinted { 0 } else { pkt.flow_hash };
                self.offer::<PAIRING>(ts_ns, pkt, Dir::Out, prefetch, out);
            }
            Side::Inside | Side::Unknown if dst_sub => {
                let prefetch = if hinted { 0 } else { pkt.flow_hash };
                self.offer::<PAIRING>(ts_ns, pkt, Dir::In, prefetch, out);
            }
            _ => {
                // An outside copy: either subscriber→remote after translation
                // (public = src) or remote→subscriber before it (public = dst).
                // Its coarse key's list: the inside copies waiting there
                // (the first under each key is a twin), and the copies that
                // count towards `pending_per_key_max` under each key with
                // those on its own list. No list (about half the outside
                // copies): the code below with the empty list's fields as
                // constants.
                // No list: where its probe ended is where the copy waits.
                let chash = coarse_hash(pkt.proto, pkt.invariants);
                match self.coarse_list_found(pkt, chash) {
                    Err(vacant) => self.offer_outside::<PAIRING>(
                        ts_ns,
                        pkt,
                        chash,
                        CoarseList::NONE,
                        Some(vacant),
                        out,
                    ),
                    Ok(coarse) => {
                        self.offer_outside::<PAIRING>(ts_ns, pkt, chash, coarse, None, out)
                    }
                }
            }
        }
    }

    /// [`push_prepared`](Correlator::push_prepared)'s outside copy, with
    /// its coarse key's list (hashed `chash`) as
    /// [`coarse_list_found`](Correlator::coarse_list_found) walked it: pairs it with an
    /// inside copy, or makes it wait. `vacant`: with no list, where the
    /// probe for it ended ([`wait_coarse`](Correlator::wait_coarse)).
    #[inline(always)]
    fn offer_outside<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        chash: u64,
        coarse: CoarseList,
        vacant: Option<pending::Vacant>,
        out: &mut Vec<Mapping>,
    ) {
        // The keys are read from `pkt` where they are used, not built
        // once on the stack and copied from there (round 15).
        let Twin::Absent(mut out_at) =
            self.take_inside::<PAIRING>(ts_ns, pkt, Dir::Out, &coarse, out)
        else {
            return;
        };
        let Twin::Absent(mut in_at) =
            self.take_inside::<PAIRING>(ts_ns, pkt, Dir::In, &coarse, out)
        else {
            return;
        };
        out_at.len += coarse.out_len;
        in_at.len += coarse.in_len;
        let (seq, flags) = (self.stats.packets, pkt.tcp_flags);
        let copy = |endpoint| Copy {
            ts_ns,
            packet: seq,
            inside: false,
            endpoint,
            ambiguous: true,
            coarse: false,
            tcp_flags: flags,
        };
        // Neither probe changed the other key's list (the two keys
        // differ in direction), so both places still hold unless
        // making room at `pending_max` drops copies.
        if self.pending_count + 2 <= self.cfg.pending_max && !self.probe_once_off() {
            let pkm = self.cfg.pending_per_key_max;
            if (out_at.len as usize) < pkm
                && (in_at.len as usize) < pkm
                && (coarse.len as usize) < self.coarse_list_max()
            {
                // Both entries would be placed together: one instead.
                // (Neither probe above changed the table: a `take_inside`
                // that changes it takes a twin and returns.)
                let (out_key, src) = pkt.pair_key(Dir::Out);
                self.wait_coarse(out_key, chash, copy(src), coarse.tail, vacant);
                return;
            }
            let ((out_key, src), (in_key, dst)) = (pkt.pair_key(Dir::Out), pkt.pair_key(Dir::In));
            let (out_hash, in_hash) = (pair_hash(&out_key), pair_hash(&in_key));
            let a = self.wait_at(out_key, out_hash, copy(src), out_at);
            let b = self.wait_at(in_key, in_hash, copy(dst), in_at);
            if a != NO_SLOT && b != NO_SLOT {
                self.waiting_mut(a).twin = b;
                self.waiting_mut(b).twin = a;
            }
        } else {
            let ((out_key, src), (in_key, dst)) = (pkt.pair_key(Dir::Out), pkt.pair_key(Dir::In));
            self.insert(out_key, pair_hash(&out_key), copy(src));
            self.insert(in_key, pair_hash(&in_key), copy(dst));
        }
    }

    /// Pairs an inside copy with a waiting outside twin, or makes it wait.
    /// `flow_hash`: its flow's key hash as the preparer carried it, to
    /// prefetch the flow if it waits (0: none, or already prefetched). A
    /// hint only: the pair's `find_flow` takes the packet's own hash.
    #[inline(always)]
    fn offer<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        flow_hash: u64,
        out: &mut Vec<Mapping>,
    ) {
        let inside = true;
        // No copy waits under either of its keys (most inside copies that
        // wait): the waiting code with `take_twin`'s answer for that case
        // as constants, apart from the code after the call.
        let (hash, lists) = match self.twin_lists(pkt, dir) {
            Ok(found) => found,
            Err(vacant) => {
                self.offer_wait::<PAIRING>(ts_ns, pkt, dir, flow_hash, KeyList::NONE, Some(vacant));
                return;
            }
        };
        let Twin::Absent(at) =
            self.take_twin_held::<PAIRING>(ts_ns, pkt, dir, inside, hash, lists, out)
        else {
            return;
        };
        self.offer_wait::<PAIRING>(ts_ns, pkt, dir, flow_hash, at, None);
    }

    /// [`offer`](Correlator::offer)'s inside copy that found no twin
    /// waits (`at`: the copies waiting under its keys; `vacant`: with no
    /// list, where the probe of its coarse key ended, as
    /// [`twin_lists`](Correlator::twin_lists) left it).
    #[inline(always)]
    fn offer_wait<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        flow_hash: u64,
        at: KeyList,
        vacant: Option<pending::Vacant>,
    ) {
        // The key and the copy built in each branch, where they go: built
        // once before the branches, they were one value on the stack (the
        // out-of-line `insert` takes them in memory) copied into the entry.
        let packet = self.stats.packets;
        let key_copy = || {
            let (mut key, endpoint) = pkt.pair_key(dir);
            // Its flow key hash's high half, for the outside copy that
            // pairs with it (as `take_twin` takes an inside copy's).
            // An inside copy has one subscriber end, the one its direction
            // names: `flow_hash` is its flow's (`Prepared::flow_hash`).
            key.flow_hi = (pkt.flow_hash >> 32) as u32;
            let copy = Copy {
                ts_ns,
                packet,
                inside: true,
                endpoint,
                ambiguous: false,
                coarse: false,
                tcp_flags: pkt.tcp_flags,
            };
            (key, copy)
        };
        if self.pending_count < self.cfg.pending_max && !self.probe_once_off() {
            if (at.coarse_len as usize) < self.coarse_list_max() {
                // On its coarse key's list (while below its bound).
                if at.len as usize >= self.cfg.pending_per_key_max {
                    self.stats.pending_key_full += 1;
                } else {
                    let (key, copy) = key_copy();
                    let chash = coarse_hash(key.proto, key.invariants);
                    self.wait_coarse(key, chash, copy, at.coarse_tail, vacant);
                }
            } else {
                let (key, copy) = key_copy();
                self.wait_at(key, pair_hash(&key), copy, at);
            }
        } else {
            let (key, copy) = key_copy();
            self.insert(key, pair_hash(&key), copy);
        }
        // Its outside twin comes a few packets later (usually), and the pair
        // then looks up the flow: start loading its index head now, its slot
        // with the next packet. Not when the caller hinted this packet
        // (`flow_hash` 0, `push_prepared`): `prefetch_next` loaded its index
        // head and the push's start its slot already, and doing it twice
        // cost 7.8 instructions a packet (round 14).
        self.prefetch_flow::<PAIRING>(flow_hash);
    }

    /// A hint for the packet pushed next, called before the push of the
    /// one before it: starts loading the pending table entries its keys
    /// land on (from the hashes its preparer carried), so that the probes
    /// of [`push_prepared`](Correlator::push_prepared) do not wait for them
    /// (the pending table is larger than the first-level cache, and the
    /// flow slab's traffic evicts it from the second); for a packet with
    /// one subscriber end, also its flow's index head, whose chain's first
    /// slot its own push then prefetches first, and its coarse key's entry
    /// (an inside copy probes both). No effect on any result.
    #[inline(always)]
    pub fn prefetch_next(&mut self, pkt: &Prepared) {
        if pkt.subs == SUB_SRC | SUB_DST {
            return;
        }
        self.pending
            .prefetch(coarse_hash(pkt.proto, pkt.invariants));
        // Set only for a packet with one subscriber end
        // (`Prepared::flow_hash`), or 0 (no subscriber end, or not IPv4).
        let flow = pkt.flow_hash;
        if flow != 0 {
            self.next_head = self.prefetch_index_head(flow);
        }
    }

    /// [`prefetch_next`](Correlator::prefetch_next) for a pairing part
    /// ([`try_new_pairing`](Correlator::try_new_pairing)): the pending
    /// table's entries only, as it has no flow table. A hint.
    #[inline(always)]
    pub fn prefetch_next_pairing(&mut self, pkt: &Prepared) {
        if pkt.subs != SUB_SRC | SUB_DST {
            self.pending
                .prefetch(coarse_hash(pkt.proto, pkt.invariants));
        }
    }

    /// Starts loading the flow index head for key hash `hash` (the head
    /// [`find_flow`](Correlator::find_flow) reads for it) and returns its
    /// number, for a later [`prefetch_chain_start`](Correlator::prefetch_chain_start).
    #[inline(always)]
    fn prefetch_index_head(&self, hash: u64) -> u32 {
        let h = self.head_of(hash);
        slab::prefetch(&self.index_heads[h]);
        h.number()
    }

    /// Prefetches the first slot of the index chain
    /// [`prefetch_next`](Correlator::prefetch_next) loaded the head of. A hint.
    #[inline(always)]
    fn prefetch_armed_slot(&mut self) {
        self.prefetch_chain_start(self.armed_head);
        self.armed_head = NO_SLOT;
    }

    /// Prefetches the first slot of the index chain whose head is
    /// `index_heads[head]` (loaded, or being loaded, by an earlier hint). The
    /// index may have grown since, or `head` be [`NO_SLOT`]: then nothing.
    #[inline(always)]
    fn prefetch_chain_start(&self, head: u32) {
        if let Some(s) = self.index_heads.get(head) {
            if s != LINK_NONE {
                self.flows.prefetch_entry(s);
            }
        }
    }

    /// Starts loading the index head of the flow whose key hash the
    /// preparer carried (`flow_hash`: the pair-hash slot an inside copy does
    /// not use, see [`Prepared`]; 0 for a flow that is not IPv4) and leaves
    /// it for the next packet to prefetch the chain's first slot
    /// ([`prefetch_slot`](Correlator::prefetch_slot)). The head is the one
    /// [`find_flow`](Correlator::find_flow) reads for the flow (the same key
    /// hash), without building the key again. A hint: no effect on any
    /// result.
    #[inline(always)]
    fn prefetch_flow<const PAIRING: bool>(&mut self, flow_hash: u64) {
        // A pairing part has no flow table to prefetch (`apply_events`
        // prefetches on the flow part's thread).
        if !PAIRING && flow_hash != 0 && self.part != Part::Pairing {
            self.prefetch_head = self.prefetch_index_head(flow_hash);
        }
    }

    /// Prefetches the first slot of the index chain
    /// [`prefetch_flow`](Correlator::prefetch_flow) left. A hint.
    #[inline(always)]
    fn prefetch_slot(&mut self) {
        self.prefetch_chain_start(self.prefetch_head);
        self.prefetch_head = NO_SLOT;
    }

    /// Tests: whether the one-probe path is switched off (every copy that
    /// waits then probes its key again, as [`insert`](Correlator::insert)
    /// does at `pending_max`), to check that both paths give one result.
    #[cfg(test)]
    fn probe_once_off(&self) -> bool {
        self.test_probe_again
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn probe_once_off(&self) -> bool {
        false
    }

    /// [`COARSE_LIST_MAX`]; tests set it (0: every ambiguous copy waits as
    /// two entries, as until round 12), to check that all give one result.
    #[cfg(test)]
    fn coarse_list_max(&self) -> usize {
        self.test_coarse_list_max
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn coarse_list_max(&self) -> usize {
        COARSE_LIST_MAX
    }

    /// Whether [`take_twin`](Correlator::take_twin) can find anything
    /// under an inside copy's key: `Err` when the pending table holds no
    /// value with the hash's tag on its probe run
    /// ([`PendingTable::may_hold`](pending::PendingTable::may_hold)) of any
    /// list the copy looks at, so `take_twin`'s probe would find nothing and
    /// it would return `Absent(KeyList::NONE)` (no list: no twin, no
    /// duplicate), which the caller uses straight away, with where the
    /// probe of its coarse key ended (where the copy then waits,
    /// [`wait_coarse`](Correlator::wait_coarse)); else the pair hash
    /// (0 unless computed) and which lists may hold copies, for
    /// [`take_twin_held`](Correlator::take_twin_held). Inline: the first
    /// copy of a packet (most probes) costs a few loads instead of the
    /// out-of-line call and its setup for the key compares.
    #[inline(always)]
    fn twin_lists(&self, pkt: &Prepared, dir: Dir) -> Result<(u64, Lists), pending::Vacant> {
        // Its pair key's list only while copies wait on pair keys' lists
        // (its hash computed only then).
        let mut hash = 0;
        let fine = self.fine_count != 0 && {
            hash = pair_hash(&pkt.pair_key(dir).0);
            self.pending.may_hold(hash)
        };
        // An inside copy also looks for its twin among the copies waiting
        // under their coarse key.
        let coarse = self
            .pending
            .may_hold_or_vacant(coarse_hash(pkt.proto, pkt.invariants));
        match coarse {
            Err(vacant) if !fine => Err(vacant),
            _ => Ok((
                hash,
                Lists {
                    fine,
                    coarse: coarse.is_ok(),
                },
            )),
        }
    }

    /// [`take_twin`](Correlator::take_twin) (or its specialised
    /// [`take_twin_coarse`](Correlator::take_twin_coarse)) when
    /// [`twin_lists`](Correlator::twin_lists) found lists that may hold
    /// copies under the key.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn take_twin_held<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        inside: bool,
        hash: u64,
        lists: Lists,
        out: &mut Vec<Mapping>,
    ) -> Twin {
        let Lists { fine, coarse: _ } = lists;
        if inside && !fine {
            // The common case (no copy waits on a fine list): the call
            // without the arguments it fixes.
            return match dir {
                Dir::Out => self.take_twin_coarse::<true, PAIRING>(ts_ns, pkt, out),
                Dir::In => self.take_twin_coarse::<false, PAIRING>(ts_ns, pkt, out),
            };
        }
        self.take_twin::<PAIRING>(ts_ns, pkt, dir, hash, inside, lists, u64::MAX, out)
    }

    /// [`take_twin`](Correlator::take_twin) of an inside copy when only its
    /// coarse key's list may hold its twin (`lists`: coarse alone; no pair
    /// hash, no `before`): the same code with those arguments fixed, so the
    /// call passes four and the fine list's probe is compiled out. One
    /// copy per direction (`OUT`: the key's direction is `Dir::Out`): with
    /// the direction a constant, the key and the endpoint are read from
    /// the packet's fields, not chosen between them at run time
    /// (−13.5 instructions a packet, round13-corr13.md). Inlined into
    /// `push_prepared` since round 15 (−11.0 a packet, round15-pair15.md):
    /// out of line, each call (~70 k on the callgrind workload) saved and
    /// restored six registers and returned its `Twin` through memory; that
    /// paid while the inlined pairing paths kept their keys on the stack.
    #[inline(always)]
    fn take_twin_coarse<const OUT: bool, const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        out: &mut Vec<Mapping>,
    ) -> Twin {
        let dir = if OUT { Dir::Out } else { Dir::In };
        let lists = Lists {
            fine: false,
            coarse: true,
        };
        self.take_twin_body::<PAIRING>(ts_ns, pkt, dir, 0, true, lists, u64::MAX, out)
    }

    /// Looks for a waiting copy of the other side under `key`, in one probe
    /// of the pending table. Found: the pair becomes an observation
    /// ([`Twin::Taken`]). A waiting copy of the *same* side with the same
    /// endpoint is this very packet seen again: counted and swallowed (also
    /// `Taken`). Otherwise where a copy under `key` would wait
    /// ([`Twin::Absent`]).
    ///
    /// Takes the packet and the key's direction, not the key: the key and
    /// the copy's endpoint are read from `pkt` here ([`Prepared::pair_key`]),
    /// so the caller builds nothing on its stack for the call.
    ///
    /// `lists`: which of the key's list and (an inside copy) its coarse
    /// key's list may hold copies ([`PendingTable::may_hold`](pending::PendingTable::may_hold)):
    /// a list that cannot is not probed again.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn take_twin<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        hash: u64,
        inside: bool,
        lists: Lists,
        before: u64,
        out: &mut Vec<Mapping>,
    ) -> Twin {
        self.take_twin_body::<PAIRING>(ts_ns, pkt, dir, hash, inside, lists, before, out)
    }

    /// [`take_twin`](Correlator::take_twin)'s code, inlined into it and
    /// into [`take_twin_coarse`](Correlator::take_twin_coarse).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn take_twin_body<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        hash: u64,
        inside: bool,
        lists: Lists,
        before: u64,
        out: &mut Vec<Mapping>,
    ) -> Twin {
        let flags = pkt.tcp_flags;
        // The oldest copy of the other side.
        let taken = if inside {
            self.take_outside(pkt, dir, hash, lists)
        } else {
            // Only an inside copy older than `before` (the first one under
            // `key` on the coarse list, which the caller takes otherwise).
            let (key, endpoint) = pkt.pair_key(dir);
            self.take_waiting(key, hash, &endpoint, |c| c.inside && c.packet < before)
        };
        let (twin, link) = match taken {
            Ok(twin) => twin,
            Err(at) => {
                if inside && at.same_inside {
                    // Inside twice with the same source: either one capture
                    // point saw it twice, or it was forwarded without
                    // translation and the outside copy still carries the
                    // subscriber address (seen on an interface we could not
                    // tell apart). Either way, not a mapping.
                    self.stats.duplicate_copies += 1;
                    return Twin::Taken;
                }
                return Twin::Absent(at);
            }
        };
        let (key, endpoint) = pkt.pair_key(dir);
        // An inside copy's flow key hash, as its preparer carried it
        // (`Prepared::flow_hash`: its one subscriber end is the one its
        // direction names; 0: none): `find_flow` uses it instead of hashing
        // the key again.
        let flow_hash = if inside { pkt.flow_hash } else { 0 };
        self.pair_taken::<PAIRING>(
            ts_ns, key, endpoint, flags, inside, twin, link, flow_hash, out,
        )
    }

    /// An outside copy's probe of its key in direction `dir` for the oldest
    /// inside copy waiting under it: on the key's own list (only when copies
    /// wait on pair keys' lists at all, `fine_count`) or on its coarse key's
    /// list (`coarse`, walked by [`coarse_list_found`](Correlator::coarse_list_found)),
    /// the older of the two (both lists in arrival order). As
    /// [`take_twin`](Correlator::take_twin): `Taken`, or `Absent` with the
    /// key's own list.
    #[inline(always)]
    fn take_inside<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        coarse: &CoarseList,
        out: &mut Vec<Mapping>,
    ) -> Twin {
        let (first, prev) = match dir {
            Dir::Out => coarse.out_first,
            Dir::In => coarse.in_first,
        };
        let mut at = KeyList::NONE;
        if self.fine_count != 0 {
            match self.take_inside_fine::<PAIRING>(ts_ns, pkt, dir, first, out) {
                Twin::Taken => return Twin::Taken,
                Twin::Absent(a) => at = a,
            }
        }
        if first == NO_SLOT {
            return Twin::Absent(at);
        }
        self.take_coarse_inside::<PAIRING>(ts_ns, pkt, dir, coarse.entry, first, prev, out);
        Twin::Taken
    }

    /// [`take_inside`](Correlator::take_inside)'s probe of the key's own
    /// list (only while copies wait on pair keys' lists: rare, out of line):
    /// the oldest inside copy there if older than `first` (the first under
    /// the key on the coarse list, [`NO_SLOT`]: none).
    #[inline(never)]
    fn take_inside_fine<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        first: u32,
        out: &mut Vec<Mapping>,
    ) -> Twin {
        let hash = pair_hash(&pkt.pair_key(dir).0);
        if !self.pending.may_hold(hash) {
            return Twin::Absent(KeyList::NONE);
        }
        let before = match first {
            NO_SLOT => u64::MAX,
            i => self.waiting(i).copy.packet,
        };
        let lists = Lists {
            fine: true,
            coarse: false,
        };
        self.take_twin::<PAIRING>(ts_ns, pkt, dir, hash, false, lists, before, out)
    }

    /// Pairs an outside copy with inside copy `i` on the coarse list the
    /// pending table's `entry` names (after `prev`), found by
    /// [`take_inside`](Correlator::take_inside). Inline (out of line it
    /// cost 10.8 instructions a packet more, round13-corr13.md).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn take_coarse_inside<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        pkt: &Prepared,
        dir: Dir,
        entry: pending::Found,
        i: u32,
        prev: u32,
        out: &mut Vec<Mapping>,
    ) {
        // The inside copy's carried flow hash (its high half, all that
        // `find_flow` and the flow part's event take).
        let flow_hash = u64::from(self.waiting(i).key.flow_hi) << 32;
        self.unlist(entry, i, prev);
        let (twin, link) = self.unlink_waiting(i);
        let (key, endpoint) = pkt.pair_key(dir);
        self.pair_taken::<PAIRING>(
            ts_ns,
            key,
            endpoint,
            pkt.tcp_flags,
            false,
            twin,
            link,
            flow_hash,
            out,
        );
    }

    /// The pair of this packet's copy (`endpoint` under `key`, `flags`,
    /// `inside` or not) with `twin`, taken off the pending lists (`link`:
    /// its twin entry, [`Waiting::twin`]): removes the twin's other entry,
    /// counts the pair and observes it.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn pair_taken<const PAIRING: bool>(
        &mut self,
        ts_ns: UnixNanos,
        key: PairKey,
        endpoint: Ep,
        flags: u8,
        inside: bool,
        twin: Copy,
        link: u32,
        flow_hash: u64,
        out: &mut Vec<Mapping>,
    ) -> Twin {
        if link != NO_SLOT {
            self.remove_linked_twin(link);
        } else if let Some(other) = twin_key(key, &twin) {
            self.remove_twin_entry(other, twin.packet);
        }
        let (internal, public) = if inside {
            (endpoint, twin.endpoint)
        } else {
            (twin.endpoint, endpoint)
        };
        if internal == public {
            self.stats.untranslated += 2;
            return Twin::Taken;
        }
        self.stats.paired_copies += 2;
        let ts = ts_ns.min(twin.ts_ns);
        if PAIRING || self.part == Part::Pairing {
            self.events.push(FlowEvent(Ev::Observe(Observation {
                now_ns: self.now_ns,
                ts_ns: ts,
                internal,
                public,
                remote: key.remote,
                flow_hi: (flow_hash >> 32) as u32,
                dir: key.dir,
                proto: key.proto,
                flags: flags | twin.tcp_flags,
            })));
            return Twin::Taken;
        }
        self.observe(
            ts,
            key.dir,
            key.proto,
            &internal,
            &public,
            &key.remote,
            flags | twin.tcp_flags,
            flow_hash,
            out,
        );
        Twin::Taken
    }

    /// Makes `copy` wait under `key` (hashed `hash`), first dropping the
    /// oldest copies at `pending_max`. Probes the pending table for the
    /// key's list: the path for when copies were dropped since the key was
    /// looked at (the common path is [`wait_at`](Correlator::wait_at) with
    /// what [`take_twin`](Correlator::take_twin) found).
    fn insert(&mut self, key: PairKey, hash: u64, copy: Copy) {
        while self.pending_count >= self.cfg.pending_max {
            if !self.pop_oldest_pending(true) {
                break;
            }
        }
        let mut at = KeyList::NONE;
        if let Some(head) = self.find_pending(key, hash) {
            let mut i = head;
            while i != NO_SLOT {
                let w = self.waiting(i);
                at.add(i, &w.copy, &copy.endpoint);
                i = w.key_next;
            }
        }
        // Coarse entries standing for `key` wait under it too (an
        // ambiguous copy's under any key, inside copies under their own).
        at.len += self.coarse_count(&key);
        self.wait_at(key, hash, copy, at);
    }

    /// Makes `copy` wait under `key` (hashed `hash`), at the end of the
    /// key's list `at` as it is now (or counts it at `pending_per_key_max`).
    /// The caller has made room under `pending_max`. The entry it waits in
    /// ([`NO_SLOT`]: counted, not waiting), not linked to a twin.
    #[inline(always)]
    fn wait_at(&mut self, key: PairKey, hash: u64, copy: Copy, at: KeyList) -> u32 {
        debug_assert!(self.pending_count < self.cfg.pending_max);
        if at.len as usize >= self.cfg.pending_per_key_max {
            self.stats.pending_key_full += 1;
            return NO_SLOT;
        }
        // Written field by field where it stays (not built on the stack
        // and copied: 88 bytes).
        let order_prev = self.order_tail;
        let i = self.alloc_waiting();
        let e = self.waiting_mut(i);
        e.key = key;
        e.copy = copy;
        e.key_next = NO_SLOT;
        e.order_prev = order_prev;
        e.order_next = NO_SLOT;
        e.twin = NO_SLOT;
        if at.tail == NO_SLOT {
            self.pending.insert_unique(hash, i);
        } else {
            self.waiting_mut(at.tail).key_next = i;
        }
        match self.order_tail {
            NO_SLOT => self.order_head = i,
            t => self.waiting_mut(t).order_next = i,
        }
        self.order_tail = i;
        self.pending_count += 1;
        self.fine_count += 1;
        i
    }

    /// The list of the coarse key of an outside copy `pkt`'s out key and
    /// in key (hashed `chash`, [`coarse_hash`]): at most
    /// [`COARSE_LIST_MAX`] entries walked.
    ///
    /// `Err` when the table holds no list under the coarse key (the walk
    /// of an empty list, [`CoarseList::NONE`]): where the probe ended, for
    /// the copy to wait there ([`wait_coarse`](Correlator::wait_coarse)).
    #[inline(always)]
    fn coarse_list_found(&self, pkt: &Prepared, chash: u64) -> Result<CoarseList, pending::Vacant> {
        // Its out key's remote (the destination) and its in key's (the
        // source), read from the packet (no key built).
        let (out_remote, src) = (&pkt.dst, &pkt.src);
        let chunks = &self.waiting;
        let mut l = CoarseList::NONE;
        let (entry, mut i) = self.pending.find_val_or_vacant(chash, |h| {
            Self::waiting_in(chunks, h).is_coarse_of(pkt.proto, pkt.invariants)
        })?;
        l.entry = entry;
        // The common list: its first entry is the out key's inside copy,
        // the twin (the loop's first round for it, on its own: what the
        // packet's fields are compared with is not kept for the loop).
        // `i` is a table value, so not `NO_SLOT`.
        let w = Self::waiting_in(chunks, i);
        if w.copy.inside && w.key.dir == Dir::Out && w.key.remote == *out_remote {
            l.out_len = 1;
            l.out_first = (i, NO_SLOT);
            return Ok(l);
        }
        while i != NO_SLOT {
            let w = Self::waiting_in(chunks, i);
            // What `coarse_matches` says for the out key and the in key
            // (remote: the source), in one test of the entry's kind.
            if w.copy.inside {
                // It stands for its own key only.
                let (first, len, remote) = match w.key.dir {
                    Dir::Out => (&mut l.out_first, &mut l.out_len, out_remote),
                    Dir::In => (&mut l.in_first, &mut l.in_len, src),
                };
                if w.key.remote == *remote {
                    *len += 1;
                    if first.0 == NO_SLOT {
                        *first = (i, l.tail);
                        // The out key's twin: the outside copy pairs with
                        // it (or with an older one on the key's own list)
                        // before it reads anything else of the walk.
                        if w.key.dir == Dir::Out {
                            return Ok(l);
                        }
                    }
                }
            } else {
                l.out_len += u32::from(w.key.remote == *out_remote);
                l.in_len += u32::from(w.copy.endpoint == *src);
            }
            l.len += 1;
            l.tail = i;
            i = w.key_next;
        }
        Ok(l)
    }

    /// Makes the ambiguous `copy` (the out key's copy: endpoint the source)
    /// wait as one coarse entry for both its keys, or the inside `copy`
    /// under its key `out_key`, after `tail` on its coarse key's list
    /// ([`NO_SLOT`]: a new list under `chash`, in the table's entry
    /// `vacant` if given: where the caller's probe for `chash` ended, the
    /// table unchanged since). The caller has checked that
    /// the old code would have placed the entries: room under `pending_max`,
    /// each key under `pending_per_key_max`. An ambiguous copy counts as the
    /// two entries it stands for in `pending_count`.
    #[inline(always)]
    fn wait_coarse(
        &mut self,
        out_key: PairKey,
        chash: u64,
        mut copy: Copy,
        tail: u32,
        vacant: Option<pending::Vacant>,
    ) {
        // (`out_key`: for an inside copy, its key.)
        copy.coarse = true;
        let order_prev = self.order_tail;
        let i = self.alloc_waiting();
        let e = self.waiting_mut(i);
        e.key = out_key;
        e.copy = copy;
        e.key_next = NO_SLOT;
        e.order_prev = order_prev;
        e.order_next = NO_SLOT;
        e.twin = NO_SLOT;
        match (tail, vacant) {
            (NO_SLOT, Some(at)) => self.pending.insert_vacant(chash, i, at),
            (NO_SLOT, None) => self.pending.insert_unique(chash, i),
            _ => self.waiting_mut(tail).key_next = i,
        }
        match self.order_tail {
            NO_SLOT => self.order_head = i,
            t => self.waiting_mut(t).order_next = i,
        }
        self.order_tail = i;
        // An ambiguous copy's coarse entry stands for two entries.
        self.pending_count += if copy.ambiguous { 2 } else { 1 };
    }

    /// The coarse entries standing for `key` ([`coarse_matches`]): what
    /// they add to `key`'s list for `pending_per_key_max`.
    fn coarse_count(&self, key: &PairKey) -> u32 {
        let chunks = &self.waiting;
        let Some(entry) = self
            .pending
            .find(coarse_hash(key.proto, key.invariants), |h| {
                Self::waiting_in(chunks, h).is_coarse(key)
            })
        else {
            return 0;
        };
        let (mut n, mut i) = (0, self.pending.get(entry));
        while i != NO_SLOT {
            let w = Self::waiting_in(chunks, i);
            n += u32::from(coarse_matches(w, key));
            i = w.key_next;
        }
        n
    }

    /// Entry `i` of the pending slab `slab` (always `&self.waiting`),
    /// without a bounds check in release builds.
    ///
    /// **Invariant (the pending slab's indices):** `waiting` only grows
    /// (`alloc_waiting` pushes; nothing removes, truncates or clears an
    /// entry), and every entry number the correlator keeps — the pending
    /// table's values, `waiting_free`, `order_head`, `order_tail` and each
    /// entry's `key_next`, `order_prev`, `order_next` and `twin` — is either
    /// [`NO_SLOT`] (`u32::MAX`, which `alloc_waiting` never hands out) or a
    /// number `alloc_waiting` handed out, so below `waiting.len()` for
    /// ever. Every caller passes such a number after testing it against
    /// `NO_SLOT`. The bounds check this saves was ~16 instructions a packet
    /// (docs/bench/round13-corr13.md); debug builds (every test) still
    /// assert it.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn waiting_in(slab: &[Waiting], i: u32) -> &Waiting {
        debug_assert!(
            (i as usize) < slab.len(),
            "pending entry {i} of {}",
            slab.len()
        );
        // SAFETY: `i < slab.len()` by the invariant above (`slab` is the
        // pending slab, `i` an entry number it handed out, not `NO_SLOT`).
        unsafe { slab.get_unchecked(i as usize) }
    }

    fn waiting(&self, i: u32) -> &Waiting {
        Self::waiting_in(&self.waiting, i)
    }

    /// [`waiting_in`](Correlator::waiting_in), to change.
    #[allow(unsafe_code)]
    fn waiting_mut(&mut self, i: u32) -> &mut Waiting {
        let len = self.waiting.len();
        debug_assert!((i as usize) < len, "pending entry {i} of {len}");
        // SAFETY: as `waiting_in`: `i` is an entry number the pending slab
        // handed out, so below its length.
        unsafe { self.waiting.get_unchecked_mut(i as usize) }
    }

    /// The oldest copy waiting under `key` (hashed `hash`), if any.
    fn find_pending(&self, key: PairKey, hash: u64) -> Option<u32> {
        let chunks = &self.waiting;
        let at = self
            .pending
            .find(hash, |h| Self::waiting_in(chunks, h).is_fine(&key))?;
        Some(self.pending.get(at))
    }

    /// A free entry of the pending slab for the caller to fill (every
    /// field): the first free one, else a new one at the end.
    #[inline(always)]
    fn alloc_waiting(&mut self) -> u32 {
        if self.waiting_free != NO_SLOT {
            let i = self.waiting_free;
            self.waiting_free = self.waiting(i).key_next;
            return i;
        }
        let i = u32::try_from(self.waiting.len())
            .ok()
            .filter(|&n| n < NO_SLOT)
            .expect("pending_max < 2^32 - 1");
        if self.waiting.len() == self.waiting.capacity() {
            self.waiting.reserve_exact(WAITING_CHUNK);
        }
        self.waiting.push(Waiting::VACANT);
        i
    }

    /// Takes the oldest copy waiting under `key` (hashed `hash`) for which
    /// `pick` holds off both lists and frees it; with its twin link
    /// ([`Waiting::twin`]). `Err`: none does; the list
    /// of copies waiting under `key` (empty if none). One probe of the
    /// pending table, whose entry is updated in place.
    fn take_waiting(
        &mut self,
        key: PairKey,
        hash: u64,
        endpoint: &Ep,
        pick: impl Fn(&Copy) -> bool,
    ) -> Result<(Copy, u32), KeyList> {
        let chunks = &mut self.waiting;
        let Some(entry) = self
            .pending
            .find(hash, |h| Self::waiting_in(chunks, h).is_fine(&key))
        else {
            return Err(KeyList::NONE);
        };
        let head = self.pending.get(entry);
        let mut at = KeyList::NONE;
        let mut i = head;
        loop {
            if i == NO_SLOT {
                return Err(at);
            }
            let w = Self::waiting_in(chunks, i);
            if pick(&w.copy) {
                break;
            }
            at.add(i, &w.copy, endpoint);
            i = w.key_next;
        }
        let prev = at.tail;
        let next = Self::waiting_in(chunks, i).key_next;
        match (prev, next) {
            (NO_SLOT, NO_SLOT) => self.pending.remove(entry),
            (NO_SLOT, next) => self.pending.set(entry, next),
            (prev, next) => {
                chunks[prev as usize].key_next = next;
            }
        }
        self.fine_count -= 1;
        Ok(self.unlink_waiting(i))
    }

    /// [`take_waiting`](Correlator::take_waiting) of the oldest outside copy
    /// for an inside copy under `key`: the oldest of the first outside copy
    /// on `key`'s list and the first coarse entry standing for `key` (on the
    /// list of its coarse key, [`coarse_matches`]), by packet number (both
    /// lists are in arrival order, and copies wait in the order of their
    /// packets). A coarse entry comes back as the copy its entry under `key`
    /// would have been (its endpoint the public one for `key`'s direction)
    /// and not ambiguous: it was one entry, now gone, so there is no twin
    /// entry to remove. `Err`: neither; `key`'s list (inside copies only).
    #[inline(always)]
    fn take_outside(
        &mut self,
        pkt: &Prepared,
        dir: Dir,
        hash: u64,
        lists: Lists,
    ) -> Result<(Copy, u32), KeyList> {
        let (key, endpoint) = pkt.pair_key(dir);
        let endpoint = &endpoint;
        let chunks = &self.waiting;
        let mut at = KeyList::NONE;
        // (table entry, slab entry, its predecessor on the list)
        let mut fine = None;
        let found = match lists.fine {
            true => self
                .pending
                .find(hash, |h| Self::waiting_in(chunks, h).is_fine(&key)),
            false => None,
        };
        if let Some(entry) = found {
            let mut i = self.pending.get(entry);
            while i != NO_SLOT {
                let w = Self::waiting_in(chunks, i);
                if !w.copy.inside {
                    fine = Some((entry, i, at.tail));
                    break;
                }
                at.add(i, &w.copy, endpoint);
                i = w.key_next;
            }
        }
        let mut coarse = None;
        let chash = coarse_hash(key.proto, key.invariants);
        let found = match lists.coarse {
            true => self
                .pending
                .find_val(chash, |h| Self::waiting_in(chunks, h).is_coarse(&key)),
            false => None,
        };
        // The common list: its first entry is the twin (the walk's first
        // round for it, on its own, as in `coarse_list_found`). `head` is
        // a table value, so not `NO_SLOT`.
        let first = found.filter(|&(_, head)| {
            let w = Self::waiting_in(chunks, head);
            !w.copy.inside && coarse_matches(w, &key)
        });
        if let Some((entry, head)) = first {
            coarse = Some((entry, head, NO_SLOT));
            at.coarse_tail = NO_SLOT;
        } else if let Some((entry, head)) = found {
            let (mut prev, mut i) = (NO_SLOT, head);
            while i != NO_SLOT {
                let w = Self::waiting_in(chunks, i);
                if coarse_matches(w, &key) {
                    if !w.copy.inside {
                        coarse = Some((entry, i, prev));
                        break;
                    }
                    // An inside copy under `key` on the coarse list: in
                    // `key`'s list as the old code had it.
                    at.len += 1;
                    at.same_inside |= w.copy.endpoint == *endpoint;
                }
                at.coarse_len += 1;
                (prev, i) = (i, w.key_next);
            }
            at.coarse_tail = prev;
        }
        let (entry, i, prev, is_coarse) = match (fine, coarse) {
            (None, None) => return Err(at),
            (Some((e, i, p)), None) => (e, i, p, false),
            (None, Some((e, i, p))) => (e, i, p, true),
            (Some((fe, fi, fp)), Some((ce, ci, cp))) => {
                if chunks[ci as usize].copy.packet < chunks[fi as usize].copy.packet {
                    (ce, ci, cp, true)
                } else {
                    (fe, fi, fp, false)
                }
            }
        };
        // The public endpoint of a coarse entry for an in key: the
        // destination (its key's remote).
        let dst = chunks[i as usize].key.remote;
        self.unlist(entry, i, prev);
        let (mut copy, link) = self.unlink_waiting(i);
        if !is_coarse {
            self.fine_count -= 1;
        } else {
            // It stood for two entries (`pending_count` counts entries;
            // only an outside copy is taken here, always ambiguous).
            self.pending_count -= 1;
            if key.dir == Dir::In {
                copy.endpoint = dst;
            }
            copy.ambiguous = false;
            copy.coarse = false;
        }
        Ok((copy, link))
    }

    /// Takes slab entry `i` off the list whose oldest entry the pending
    /// table's `entry` names; `prev`: its predecessor there ([`NO_SLOT`]:
    /// it heads the list).
    #[inline(always)]
    fn unlist(&mut self, entry: pending::Found, i: u32, prev: u32) {
        let next = self.waiting(i).key_next;
        match (prev, next) {
            (NO_SLOT, NO_SLOT) => self.pending.remove(entry),
            (NO_SLOT, next) => self.pending.set(entry, next),
            (prev, next) => self.waiting_mut(prev).key_next = next,
        }
    }

    /// Takes entry `i`, already off its key's chain, off the arrival-order
    /// list and frees it; its copy and twin link. (The caller counts a
    /// fine entry off `fine_count`.)
    #[inline(always)]
    fn unlink_waiting(&mut self, i: u32) -> (Copy, u32) {
        // The links and the copy only (not the whole 88-byte entry).
        let free = self.waiting_free;
        let e = self.waiting_mut(i);
        let (order_prev, order_next, copy, twin) = (e.order_prev, e.order_next, e.copy, e.twin);
        e.key_next = free;
        e.order_prev = NO_SLOT;
        e.order_next = NO_SLOT;
        match order_prev {
            NO_SLOT => self.order_head = order_next,
            p => self.waiting_mut(p).order_next = order_next,
        }
        match order_next {
            NO_SLOT => self.order_tail = order_prev,
            n => self.waiting_mut(n).order_prev = order_prev,
        }
        self.waiting_free = i;
        self.pending_count -= 1;
        (copy, twin)
    }

    /// Removes the copy of `packet` waiting under `key`, if still there.
    #[inline]
    fn remove_copy(&mut self, key: PairKey, packet: u64) -> Option<Copy> {
        self.take_waiting(key, pair_hash(&key), &key.remote, |c| c.packet == packet)
            .ok()
            .map(|(copy, _)| copy)
    }

    /// Removes entry `b`, the twin entry of an ambiguous copy that paired
    /// ([`Waiting::twin`]): what [`remove_twin_entry`](Correlator::remove_twin_entry)
    /// does, found by its link. The probe of its key's hash stops at the
    /// table entry holding `b` (it heads its list: the common case) without
    /// reading a key, or at its key's (`b` further down the list: its
    /// predecessor is found by walking the list to it). Out of line, as
    /// `remove_twin_entry`.
    #[inline(never)]
    fn remove_linked_twin(&mut self, b: u32) {
        let w = self.waiting(b);
        let (key, next) = (w.key, w.key_next);
        let chunks = &self.waiting;
        let entry = self
            .pending
            .find(pair_hash(&key), |h| {
                h == b || Self::waiting_in(chunks, h).is_fine(&key)
            })
            .expect("a waiting copy's key is in the pending table");
        let head = self.pending.get(entry);
        if head == b {
            match next {
                NO_SLOT => self.pending.remove(entry),
                n => self.pending.set(entry, n),
            }
        } else {
            let mut p = head;
            loop {
                let n = self.waiting(p).key_next;
                assert!(n != NO_SLOT, "a linked twin is on its key's list");
                if n == b {
                    break;
                }
                p = n;
            }
            self.waiting_mut(p).key_next = next;
        }
        self.unlink_waiting(b);
        self.fine_count -= 1;
    }

    /// [`remove_copy`](Correlator::remove_copy) for the other entry of an
    /// ambiguous copy that paired: the copy is not wanted, so not read out.
    /// Out of line (half the pairs of a two-sided capture come outside copy
    /// first: the inbound packets).
    #[inline(never)]
    fn remove_twin_entry(&mut self, key: PairKey, packet: u64) {
        self.remove_copy(key, packet);
    }

    /// Drops the oldest waiting copy and its twin entry (an ambiguous outside
    /// copy waits under two keys); returns it. `None` when nothing waits.
    fn drop_oldest_pending(&mut self) -> Option<Copy> {
        let i = self.order_head;
        if i == NO_SLOT {
            return None;
        }
        if self.waiting(i).copy.coarse {
            return Some(self.drop_oldest_coarse(i));
        }
        let key = self.waiting(i).key;
        let copy = self
            .remove_copy(key, self.waiting(i).copy.packet)
            .expect("the oldest copy waits under its key");
        if let Some(other) = twin_key(key, &copy) {
            self.remove_copy(other, copy.packet);
        }
        Some(copy)
    }

    /// Drops coarse entry `i`, the oldest waiting copy: the oldest on its
    /// coarse key's list too (both lists are in arrival order), so it heads
    /// that list. Out of line: rare on a capture whose copies pair.
    #[inline(never)]
    fn drop_oldest_coarse(&mut self, i: u32) -> Copy {
        let w = self.waiting(i);
        let chash = coarse_hash(w.key.proto, w.key.invariants);
        let entry = self
            .pending
            .find(chash, |h| h == i)
            .expect("the oldest coarse entry heads its list");
        self.unlist(entry, i, NO_SLOT);
        let (copy, _) = self.unlink_waiting(i);
        if copy.ambiguous {
            self.pending_count -= 1;
        }
        copy
    }

    /// Drops the oldest waiting copy (with its twin entry); counts it as
    /// evicted (`evicted`) or unmatched. Returns false when nothing waits.
    fn pop_oldest_pending(&mut self, evicted: bool) -> bool {
        let Some(copy) = self.drop_oldest_pending() else {
            return false;
        };
        if evicted {
            self.stats.pending_evicted += 1;
        } else if copy.inside {
            self.stats.unmatched_inside += 1;
        } else {
            self.stats.unmatched_outside += 1;
        }
        true
    }

    /// Slots handed out so far (the slab's high-water mark).
    fn flow_slots_used(&self) -> u32 {
        self.flows.len() as u32
    }

    #[inline(always)]
    fn flow(&self, slot: u32) -> &Flow {
        self.flows.get(slot as usize)
    }

    #[inline(always)]
    fn flow_mut(&mut self, slot: u32) -> &mut Flow {
        self.flows.get_mut(slot as usize)
    }

    /// The hash of a flow key: its 16 bytes as two words, one folded
    /// multiplication.
    fn key_hash(key: &FlowKey) -> u64 {
        let a = u64::from(key.internal) | u64::from(key.remote) << 32;
        let b = u64::from(key.internal_port)
            | u64::from(key.remote_port) << 16
            | u64::from(key.proto as u8) << 32
            | u64::from(key.fam) << 40;
        fold_mul(a ^ MIX[0], b ^ MIX[1])
    }

    /// The address as the flow table knows it, without naming a new IPv6
    /// address (`None`: no active flow uses it). The bool: IPv6 name.
    /// Inline (an IPv4 address is a compare): left to the compiler, one
    /// correlator's outside-copy pair called it twice a pair.
    #[inline(always)]
    fn addr32_find(&self, ep: &Ep) -> Option<(Addr32, bool)> {
        match ep.v4() {
            Some(a) => Some((a, false)),
            None => self.addr32_find_v6(ep),
        }
    }

    /// [`addr32_find`](Correlator::addr32_find) of an IPv6 address.
    #[inline(never)]
    fn addr32_find_v6(&self, ep: &Ep) -> Option<(Addr32, bool)> {
        self.v6.find(ep.bits()).map(|id| (id, true))
    }

    fn addr(&self, a: Addr32, v6: bool) -> IpAddr {
        if v6 {
            self.v6.addr(a)
        } else {
            IpAddr::V4(Ipv4Addr::from(a))
        }
    }

    /// The slot of the active flow (proto, internal, remote), if any.
    /// Inline, as `touch_narrow`: `observe` has two callers (one
    /// correlator's `take_twin`, a flow part's `apply_events`), and left to
    /// the compiler these two went out of line (+2.4 M instructions on the
    /// callgrind workload).
    ///
    /// `flow_hash`: the key's [`key_hash`](Correlator::key_hash) as an
    /// inside copy's preparer carried it ([`Prepared::flow_hash`], for a
    /// flow whose two ends are IPv4), or as a flow part
    /// found it for its prefetch (`apply_events`: the carried hash's high
    /// half, [`Observation::flow_hi`], or the key hashed there), or 0:
    /// hashed here. Not 0 only when both ends are IPv4 (the preparer
    /// carries none for another flow, and a flow part keeps none), so the
    /// addresses are then taken without the IPv4 test; its high half is
    /// that of this very key's hash (both asserted in debug builds;
    /// proptest `carried_flow_hash_is_the_tables`), and the head number
    /// is in the high half (`INDEX_BITS_MAX`), so which one is used
    /// changes no result.
    #[inline(always)]
    fn find_flow(
        &self,
        proto: Proto,
        internal: &Ep,
        remote: &Ep,
        flow_hash: u64,
    ) -> Option<SlotNo> {
        // A carried hash: both ends are IPv4 (the contract above), so
        // their addresses are the low words, untested. Else both IPv4
        // (most flows): one test for the two.
        let (i, i6, r, r6, carried) = if flow_hash != 0 {
            debug_assert!(
                Ep::both_v4(internal, remote).is_some(),
                "carried flow hash: IPv4"
            );
            (internal.low32(), false, remote.low32(), false, flow_hash)
        } else {
            match Ep::both_v4(internal, remote) {
                Some((i, r)) => (i, false, r, false, 0),
                None => {
                    let (i, i6) = self.addr32_find(internal)?;
                    let (r, r6) = self.addr32_find(remote)?;
                    (i, i6, r, r6, 0)
                }
            }
        };
        let key = FlowKey {
            internal: i,
            remote: r,
            internal_port: internal.port,
            remote_port: remote.port,
            proto,
            fam: (u8::from(i6) * FAM_INTERNAL_V6) | (u8::from(r6) * FAM_REMOTE_V6),
        };
        let words = key.words();
        let hash = if carried != 0 {
            // All of it (one correlator's pair), or its high half (a flow
            // part's event, `Observation::flow_hi`): the head number is in
            // the high half.
            debug_assert_eq!(
                carried >> 32,
                Self::key_hash(&key) >> 32,
                "carried flow hash"
            );
            carried
        } else {
            Self::key_hash(&key)
        };
        let mut s = self.index_heads[self.head_of(hash)];
        while s != LINK_NONE {
            // SAFETY: an index head or chain link that is not `LINK_NONE`
            // is a live flow's slot (`index_link` links only the slots
            // `insert_flow` fills; `index_unlink_at` takes a slot out before
            // `forget_flow` frees it; `index_grow` links the live slots
            // again: `check_index`), so one the slab handed out.
            #[allow(unsafe_code)]
            let slot = unsafe { SlotNo::handed_out(s) };
            let f = self.flows.at(slot);
            if f.key_is(&key, words) {
                return Some(slot);
            }
            s = f.link(LINK_INDEX_NEXT);
        }
        None
    }

    /// The index head number of flow key hash `hash`: its top
    /// `index_bits` bits.
    #[inline(always)]
    fn head_of(&self, hash: u64) -> HeadNo {
        self.index_heads.head_of(hash)
    }

    /// The index chain of `key`.
    fn index_head(&self, key: &FlowKey) -> HeadNo {
        self.head_of(Self::key_hash(key))
    }

    /// Doubles the index's heads and rebuilds every chain.
    fn index_grow(&mut self) {
        self.index_heads.double();
        for slot in 0..self.flow_slots_used() {
            if self.flow(slot).live() {
                self.index_link(slot);
            }
        }
    }

    /// Puts the flow in `slot` at the front of its index chain.
    fn index_link(&mut self, slot: u32) {
        let h = self.index_head(&self.flow(slot).key());
        // SAFETY: `flow(slot)` above read it: below the slab's length,
        // which never shrinks.
        #[allow(unsafe_code)]
        let at = unsafe { SlotNo::handed_out(slot) };
        self.index_link_at(at, h);
    }

    /// [`index_link`](Correlator::index_link) given the flow's index head
    /// `h` (`index_head` of its key, found by the caller).
    #[inline(always)]
    fn index_link_at(&mut self, at: SlotNo, h: HeadNo) {
        debug_assert_eq!(h, self.index_head(&self.flows.at(at).key()));
        let next = self.index_heads[h];
        self.flows.at_mut(at).set_link(LINK_INDEX_NEXT, next);
        self.index_heads[h] = at.number();
    }

    /// Takes the flow in `slot` off its index chain, whose head `h` is
    /// `index_head` of the flow's key (computed earlier by the caller).
    fn index_unlink_at(&mut self, slot: u32, h: HeadNo) {
        debug_assert_eq!(h, self.index_head(&self.flow(slot).key()));
        let next = self.flow(slot).link(LINK_INDEX_NEXT);
        if self.index_heads[h] == slot {
            self.index_heads[h] = next;
            return;
        }
        let mut s = self.index_heads[h];
        while s != LINK_NONE {
            let n = self.flow(s).link(LINK_INDEX_NEXT);
            if n == slot {
                self.flow_mut(s).set_link(LINK_INDEX_NEXT, next);
                return;
            }
            s = n;
        }
        panic!("active flow missing from the index");
    }

    /// (last packet, last written state) of the flow in `slot`.
    #[inline]
    fn flow_times(&self, slot: u32) -> (UnixNanos, UnixNanos) {
        self.flow_times_of(self.flow(slot), slot)
    }

    /// [`flow_times`](Correlator::flow_times) of the flow `f` in `slot`,
    /// read by the caller.
    #[inline]
    fn flow_times_of(&self, f: &Flow, slot: u32) -> (UnixNanos, UnixNanos) {
        if f.wide() {
            self.flow_wide[&slot]
        } else {
            // Both offsets ≤ FLOW_SPAN_MAX_NS (set_flow_times): no overflow.
            (
                f.first_ns + f.last_off() as i64,
                f.first_ns + f.written_off() as i64,
            )
        }
    }

    /// Sets the flow's last packet and last written state. If either lies
    /// more than [`FLOW_SPAN_MAX_NS`] after its first packet (or before it),
    /// both move to `flow_wide` for the rest of the flow.
    #[inline]
    fn set_flow_times(&mut self, slot: u32, last_ns: UnixNanos, written_ns: UnixNanos) {
        let f = self.flow_mut(slot);
        let first_ns = f.first_ns;
        let off = |t: UnixNanos| {
            t.checked_sub(first_ns)
                .and_then(|d| u64::try_from(d).ok())
                .filter(|&d| d <= FLOW_SPAN_MAX_NS)
        };
        match (f.wide(), off(last_ns), off(written_ns)) {
            (false, Some(l), Some(w)) => f.set_offs(l, w),
            _ => {
                f.set_offs(OFF47_WIDE, OFF47_WIDE);
                self.flow_wide.insert(slot, (last_ns, written_ns));
            }
        }
    }

    /// A packet of the flow in `slot` paired at `ts_ns`: its last packet
    /// time moves to `ts_ns` if later, its last written state to `ts_ns` if
    /// a refresh is due (`refresh_interval_ns` since the last). Returns the
    /// last packet time and whether the refresh is due. As
    /// [`flow_times`](Correlator::flow_times) then
    /// [`set_flow_times`](Correlator::set_flow_times), reading and writing
    /// the time word once when both offsets stay narrow (the common case).
    /// Tests: `observe` runs its two halves itself (the slot taken once).
    #[cfg(test)]
    fn touch_flow_times(&mut self, slot: u32, ts_ns: UnixNanos) -> (UnixNanos, bool) {
        let refresh = self.refresh_due_ns;
        match Self::touch_narrow(self.flow_mut(slot), ts_ns, refresh) {
            Some(r) => r,
            None => self.touch_flow_times_wide(slot, ts_ns),
        }
    }

    /// `touch_flow_times` (tests) on the slot `f`
    /// when both offsets stay narrow (its one read and write of the time
    /// word; `refresh`: `refresh_due_ns`, above 0); `None`, with `f` untouched,
    /// otherwise (then [`touch_flow_times_wide`](Correlator::touch_flow_times_wide)).
    /// On the slot, not the correlator: the caller keeps the one reference
    /// to the slot for the rest of the fold.
    #[inline(always)]
    fn touch_narrow(f: &mut Flow, ts_ns: UnixNanos, refresh: i64) -> Option<(UnixNanos, bool)> {
        let word = f.word();
        let last_off = word as u64 & OFF47_WIDE;
        if last_off != OFF47_WIDE {
            let written_off = (word >> WORD_WRITTEN_SHIFT) as u64 & OFF47_WIDE;
            let first_ns = f.first_ns;
            if let Some(d) = ts_ns.checked_sub(first_ns) {
                if d <= FLOW_SPAN_MAX_NS as i64 {
                    // d < 0 (a pair older than the first packet) leaves the
                    // last packet; a due refresh means d > written_off ≥ 0.
                    let d_off = u64::try_from(d).unwrap_or(0);
                    // `ts_ns - written_ns` is `d - written_off` (both
                    // offsets ≤ FLOW_SPAN_MAX_NS: no overflow for d ≥ 0);
                    // for d < 0 it is negative, as `0 - written_off` is,
                    // and no refresh (> 0) is due: the slow path's
                    // saturating test, without the saturation.
                    // (`refresh` > 0: `refresh_due_ns`.)
                    let refreshed = d_off as i64 - written_off as i64 >= refresh;
                    let last_off = last_off.max(d_off);
                    let written_off = if refreshed { d as u64 } else { written_off };
                    f.set_word(
                        u128::from(last_off)
                            | u128::from(written_off) << WORD_WRITTEN_SHIFT
                            | word >> WORD_PROTO_SHIFT << WORD_PROTO_SHIFT,
                    );
                    return Some((first_ns + last_off as i64, refreshed));
                }
            }
        }
        None
    }

    /// `touch_flow_times` (tests) when an offset is
    /// or becomes wide: through [`flow_times`](Correlator::flow_times) and
    /// [`set_flow_times`](Correlator::set_flow_times). Rare: out of line.
    #[inline(never)]
    fn touch_flow_times_wide(&mut self, slot: u32, ts_ns: UnixNanos) -> (UnixNanos, bool) {
        let refresh = self.cfg.refresh_interval_ns;
        let (last_ns, written_ns) = self.flow_times(slot);
        let last_ns = last_ns.max(ts_ns);
        let refreshed = refresh > 0 && ts_ns.saturating_sub(written_ns) >= refresh;
        let written_ns = if refreshed { ts_ns } else { written_ns };
        self.set_flow_times(slot, last_ns, written_ns);
        (last_ns, refreshed)
    }

    /// Deadline of the flow in `slot` ([`Flow::deadline_ns`]). Tests.
    #[cfg(test)]
    fn flow_deadline_ns(&self, slot: u32) -> UnixNanos {
        let (last_ns, _) = self.flow_times(slot);
        self.flow(slot).deadline_ns(last_ns, &self.cfg.hold)
    }

    /// The mapping the flow in `slot` stands for, rebuilt (end `Open`).
    fn mapping(&self, slot: u32) -> Mapping {
        self.mapping_of(self.flow(slot), slot)
    }

    /// [`mapping`](Correlator::mapping) of `f`, the flow in `slot` (or a
    /// copy of it), inline: the idle scan builds one for each flow it closes.
    #[inline(always)]
    fn mapping_of(&self, f: &Flow, slot: u32) -> Mapping {
        let last_ns = if f.wide() {
            self.flow_wide[&slot].0
        } else {
            // ≤ FLOW_SPAN_MAX_NS after the first packet (set_flow_times).
            f.first_ns + f.last_off() as i64
        };
        Mapping {
            proto: f.proto(),
            internal: SocketAddr::new(
                self.addr(f.internal, f.bits & FAM_INTERNAL_V6 != 0),
                f.internal_port,
            ),
            public: SocketAddr::new(
                self.addr(f.public, f.bits & BIT_PUBLIC_V6 != 0),
                f.public_port,
            ),
            remote: SocketAddr::new(
                self.addr(f.remote, f.bits & FAM_REMOTE_V6 != 0),
                f.remote_port,
            ),
            first_ns: f.first_ns,
            last_ns,
            end: EndReason::Open,
            packets_out: f.packets_out,
            packets_in: f.packets_in,
            flags: f.flags(),
        }
    }

    /// Stores a new active flow for `m` in a free slot and indexes it
    /// (tests: [`insert_flow_eps`](Correlator::insert_flow_eps) of the
    /// mapping's endpoints, as `open_flow` stores a pair's).
    #[cfg(test)]
    fn insert_flow(&mut self, m: &Mapping, bits: u8, written_ns: UnixNanos) -> u32 {
        assert!(
            m.flags & !FLAG_MIDFLOW == 0,
            "a flow slot keeps FLAG_MIDFLOW only"
        );
        let bits = bits
            | if m.flags & FLAG_MIDFLOW != 0 {
                BIT_MIDFLOW
            } else {
                0
            };
        let slot = self
            .insert_flow_eps(
                m.proto,
                &Ep::of(m.internal.ip(), m.internal.port()),
                &Ep::of(m.public.ip(), m.public.port()),
                &Ep::of(m.remote.ip(), m.remote.port()),
                m.first_ns,
                (m.packets_out, m.packets_in),
                bits,
                0,
            )
            .number();
        self.set_flow_times(slot, m.last_ns, written_ns);
        slot
    }

    /// The address as the flow table keeps it, naming a new IPv6 address
    /// (one more flow using it): an IPv4 address (also IPv4-mapped, as
    /// [`Ep::ip`] reads it) is its `u32`. The bool: IPv6 name.
    #[inline(always)]
    fn addr32_acquire(&mut self, ep: &Ep) -> (Addr32, bool) {
        match ep.v4() {
            Some(a) => (a, false),
            None => (self.v6.acquire(ep.bits()), true),
        }
    }

    /// Stores a new active flow of `proto` between the endpoints, first
    /// packet (and last, and last written state) at `first_ns`, in a free
    /// slot, and indexes it; its `bits` (FIN/RST, `BIT_MIDFLOW`) as given.
    /// From the pair's endpoints, with no `SocketAddr` between: `open_flow`
    /// builds the `Mapping` from the slot afterwards. `flow_hash`: the
    /// key's hash as `observe` was given it (`find_flow`'s), or 0: hashed
    /// here; only its index head is used.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn insert_flow_eps(
        &mut self,
        proto: Proto,
        internal: &Ep,
        public: &Ep,
        remote: &Ep,
        first_ns: UnixNanos,
        (packets_out, packets_in): (u32, u32),
        bits: u8,
        flow_hash: u64,
    ) -> SlotNo {
        let (i, i6) = self.addr32_acquire(internal);
        let (r, r6) = self.addr32_acquire(remote);
        let (p, p6) = self.addr32_acquire(public);
        let key = FlowKey {
            internal: i,
            remote: r,
            internal_port: internal.port,
            remote_port: remote.port,
            proto,
            fam: (u8::from(i6) * FAM_INTERNAL_V6) | (u8::from(r6) * FAM_REMOTE_V6),
        };
        // The time word's offsets 0 (last packet and last written state
        // at the first packet: `set_flow_times` of `first_ns` twice) and
        // the protocol's code (`PROTOS`' index: `proto as u8`, asserted).
        let mut flow = Flow {
            first_ns,
            internal: key.internal,
            remote: key.remote,
            public: p,
            packets_out,
            packets_in,
            internal_port: key.internal_port,
            remote_port: key.remote_port,
            public_port: public.port,
            links: [0xff; 9],
            word: [0; 12],
            bits: bits | key.fam | BIT_LIVE | if p6 { BIT_PUBLIC_V6 } else { 0 },
        };
        flow.set_word((key.proto as u128) << WORD_PROTO_SHIFT);
        debug_assert_eq!((flow.last_off(), flow.written_off()), (0, 0));
        debug_assert_eq!(flow.proto(), proto);
        // Into the free list's first slot, or pushed (not pushed free,
        // then written).
        let at = if self.flow_free != NO_SLOT {
            // SAFETY: the free list links slots `forget_flow` freed, each
            // one the slab handed out (`push`); a slab never takes a slot
            // back.
            #[allow(unsafe_code)]
            let at = unsafe { SlotNo::handed_out(self.flow_free) };
            self.flow_free = self.flows.at(at).public;
            // A hint: the next open pops that slot and reads its free link
            // (a miss on most opens: the free list's slots were freed by an
            // idle scan long before), then writes it whole.
            if self.flow_free != NO_SLOT {
                self.flows.prefetch_entry(self.flow_free);
            }
            *self.flows.at_mut(at) = flow;
            at
        } else {
            let slot = self
                .flows
                .push(flow)
                .expect("no more slots than flows_active_max");
            assert!(slot < FLOWS_ACTIVE_MAX_LIMIT);
            // SAFETY: `push` just handed it out (below the length).
            #[allow(unsafe_code)]
            unsafe {
                SlotNo::handed_out(slot as u32)
            }
        };
        self.flows_active += 1;
        if index_over(self.flows_active, self.index_heads.bits()) {
            self.index_grow();
        } else {
            // A carried hash's head is the key's (`find_flow`'s contract).
            let h = if flow_hash != 0 {
                self.head_of(flow_hash)
            } else {
                self.index_head(&key)
            };
            self.index_link_at(at, h);
        }
        at
    }

    /// Removes the active flow in `slot`; returns its mapping (end `Open`)
    /// and its FIN/RST state.
    fn remove_flow(&mut self, slot: u32) -> (Mapping, EndReason) {
        self.remove_flow_at(slot, self.index_head(&self.flow(slot).key()))
    }

    /// [`remove_flow`](Correlator::remove_flow) given the flow's index head
    /// (`index_head` of its key, computed earlier by the caller).
    fn remove_flow_at(&mut self, slot: u32, head: HeadNo) -> (Mapping, EndReason) {
        self.wheel_unlink(slot);
        let f = *self.flow(slot);
        assert!(f.live(), "removing a free slot");
        let m = self.mapping(slot);
        self.forget_flow(slot, &f, head);
        (m, f.closed_reason())
    }

    /// Closes the flow in `slot`, past its deadline, for the idle scan,
    /// whose walk took it off the wheel: as [`remove_flow_at`] then
    /// [`close`](Correlator::close) with its FIN/RST end or `Idle`, the
    /// mapping built once, inline, from the slot as read.
    ///
    /// [`remove_flow_at`]: Correlator::remove_flow_at
    #[inline(always)]
    fn close_expired(&mut self, slot: u32, head: HeadNo, out: &mut Vec<Mapping>) {
        let f = *self.flow(slot);
        assert!(f.live(), "removing a free slot");
        debug_assert_eq!(f.link(LINK_WHEEL_NEXT), LINK_NONE, "still on the wheel");
        let mut m = self.mapping_of(&f, slot);
        m.end = match f.closed_reason() {
            EndReason::Open => EndReason::Idle,
            r => r,
        };
        self.forget_flow(slot, &f, head);
        self.stats.mappings_closed += 1;
        out.push(m);
    }

    /// The rest of a removal once the flow `f` in `slot` is off the wheel
    /// and its mapping built: its long times, index link and IPv6 names
    /// released, its slot freed. `head`: `index_head` of its key.
    #[inline(always)]
    fn forget_flow(&mut self, slot: u32, f: &Flow, head: HeadNo) {
        if f.wide() {
            self.flow_wide.remove(&slot);
        }
        self.index_unlink_at(slot, head);
        if f.bits & FAM_INTERNAL_V6 != 0 {
            self.v6.release(f.internal);
        }
        if f.bits & FAM_REMOTE_V6 != 0 {
            self.v6.release(f.remote);
        }
        if f.bits & BIT_PUBLIC_V6 != 0 {
            self.v6.release(f.public);
        }
        let free = self.flow_free;
        let s = self.flow_mut(slot);
        *s = Flow {
            public: free,
            ..Flow::FREE
        };
        self.flow_free = slot;
        self.flows_active -= 1;
    }

    fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.flow_slots_used()).filter(|&s| self.flow(s).live())
    }

    /// Folds one pair into the flow table. Inline: out of line (as a
    /// second caller, `apply_events`, made it) costs ~6.7 M instructions on
    /// the callgrind workload (the call's arguments and `take_twin`'s frame).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn observe(
        &mut self,
        ts_ns: UnixNanos,
        dir: Dir,
        proto: Proto,
        internal: &Ep,
        public: &Ep,
        remote: &Ep,
        flags: u8,
        flow_hash: u64,
        out: &mut Vec<Mapping>,
    ) {
        if !self.continue_flow(
            ts_ns, dir, proto, internal, public, remote, flags, flow_hash, out,
        ) {
            self.open_flow(
                ts_ns, dir, proto, internal, public, remote, flags, flow_hash, out,
            );
        }
    }

    /// [`observe`](Correlator::observe) but the open: folds the pair into
    /// the active flow it continues and returns true, or returns false
    /// when none does (none has its key, or the one that has it was just
    /// ended: a new connection or another public endpoint), for the caller
    /// to open one ([`open_flow`](Correlator::open_flow)). The flow part
    /// opens from the event itself ([`open_event`](Correlator::open_event)),
    /// so the pair's fields an open needs are not kept across the lookup.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn continue_flow(
        &mut self,
        ts_ns: UnixNanos,
        dir: Dir,
        proto: Proto,
        internal: &Ep,
        public: &Ep,
        remote: &Ep,
        flags: u8,
        flow_hash: u64,
        out: &mut Vec<Mapping>,
    ) -> bool {
        if let Some(at) = self.find_flow(proto, internal, remote, flow_hash) {
            let slot = at.number();
            let f = self.flows.at(at);
            // A SYN going out on a closed flow's tuple (FIN or RST seen):
            // the flow's bits first, so most pairs (an open flow's) take
            // one test and a branch, not the four terms.
            let new_connection = f.bits & (BIT_FIN_OUT | BIT_FIN_IN | BIT_RST) != 0
                && Self::opens_again(dir, proto, flags);
            // By the slot's family: an IPv4 public address is the same
            // exactly when `public` is its IPv4-mapped form (`v4()` is
            // `Some` of it); an IPv6 one when `public` is not IPv4 and its
            // bits are the name's.
            let same_public = f.public_port == public.port
                && if f.bits & BIT_PUBLIC_V6 == 0 {
                    public.bits() == V4_MAPPED_HIGH << 32 | u128::from(f.public)
                } else {
                    public.v4().is_none() && self.v6.names[f.public as usize].0 == public.bits()
                };
            if same_public && !new_connection {
                // `first_ns` stays as written in the Open record: it is part
                // of the mapping's identity in the store (a pair completed
                // late may carry an earlier time; it is evidence, not identity).
                // One reference to the slot for the times and the counts
                // (`touch_flow_times` then the counts, each taking the slot
                // again, read the slab's length and base again after the
                // slot's writes).
                let refresh = self.refresh_due_ns;
                let flow = self.flows.at_mut(at);
                let (last_ns, refreshed, moved_earlier) =
                    match Self::touch_narrow(flow, ts_ns, refresh) {
                        Some((last_ns, refreshed)) => {
                            let moved = Self::fold_counts(flow, dir, proto, flags);
                            (last_ns, refreshed, moved)
                        }
                        None => {
                            let (last_ns, refreshed) = self.touch_flow_times_wide(slot, ts_ns);
                            let moved = Self::fold_counts(self.flow_mut(slot), dir, proto, flags);
                            (last_ns, refreshed, moved)
                        }
                    };
                if refreshed {
                    self.stats.mappings_refreshed += 1;
                    let m = self.mapping(slot);
                    out.push(m);
                }
                if moved_earlier {
                    let deadline_ns = self.flows.at(at).deadline_ns(last_ns, &self.cfg.hold);
                    self.wheel_unlink(slot);
                    self.wheel_insert(slot, deadline_ns);
                }
                return true;
            }
            self.replace_flow(slot, new_connection, out);
        }
        false
    }

    /// [`open_flow`](Correlator::open_flow) of a flow event's pair (the
    /// flow part: an observation no active flow continued), its fields
    /// read from the event here; the clock moves to the event's first
    /// (the flow part's clock, `now_ns`).
    #[inline(never)]
    fn open_event(&mut self, o: &Observation, flow_hash: u64, out: &mut Vec<Mapping>) {
        self.now_ns = o.now_ns;
        self.open_flow_in(
            o.ts_ns,
            o.dir,
            o.proto,
            &o.internal,
            &o.public,
            &o.remote,
            o.flags,
            flow_hash,
            out,
        );
    }

    /// Whether a pair going `dir` with TCP flags `flags` opens a new
    /// connection on a closed flow's tuple: a TCP SYN (no ACK) going out.
    #[inline(always)]
    fn opens_again(dir: Dir, proto: Proto, flags: u8) -> bool {
        proto == Proto::Tcp
            && flags & (TcpInfo::SYN | TcpInfo::ACK) == TcpInfo::SYN
            && dir == Dir::Out
    }

    /// The counts and TCP bits of a pair continuing the flow in slot `f`
    /// (going `dir`, TCP flags `flags` of both copies); whether its
    /// deadline moved earlier (a close: the TIME_WAIT hold is shorter).
    #[inline(always)]
    fn fold_counts(flow: &mut Flow, dir: Dir, proto: Proto, flags: u8) -> bool {
        match dir {
            Dir::Out => flow.packets_out = flow.packets_out.saturating_add(1),
            Dir::In => flow.packets_in = flow.packets_in.saturating_add(1),
        }
        let mut moved_earlier = false;
        // Neither FIN nor RST: no bit changes, so the end reason (and the
        // deadline's hold) stays as it was; tested first, as most TCP pairs
        // carry neither.
        if proto == Proto::Tcp && flags & (TcpInfo::RST | TcpInfo::FIN) != 0 {
            let was_open = flow.closed_reason() == EndReason::Open;
            if flags & TcpInfo::RST != 0 {
                flow.bits |= BIT_RST;
            }
            if flags & TcpInfo::FIN != 0 {
                flow.bits |= match dir {
                    Dir::Out => BIT_FIN_OUT,
                    Dir::In => BIT_FIN_IN,
                };
            }
            if was_open && flow.closed_reason() != EndReason::Open {
                // The hold shrinks (TIME_WAIT): the deadline moved earlier.
                moved_earlier = true;
            }
        }
        moved_earlier
    }

    /// Ends the flow in `slot` for a pair that does not continue it: a new
    /// TCP connection after a close (its FIN/RST end), or another public
    /// endpoint (`Replaced`). Out of line: rare, and it keeps the common
    /// path's frame small.
    #[inline(never)]
    fn replace_flow(&mut self, slot: u32, new_connection: bool, out: &mut Vec<Mapping>) {
        let (old, closed) = self.remove_flow(slot);
        let reason = if new_connection {
            closed
        } else {
            EndReason::Replaced
        };
        self.close(old, reason, out);
    }

    /// Opens a flow for a pair that no active flow continues (written as
    /// `Open` at once). Out of line: one pair in ten or fewer opens a flow.
    /// `flow_hash`: `observe`'s (the key's hash, or 0).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn open_flow(
        &mut self,
        ts_ns: UnixNanos,
        dir: Dir,
        proto: Proto,
        internal: &Ep,
        public: &Ep,
        remote: &Ep,
        flags: u8,
        flow_hash: u64,
        out: &mut Vec<Mapping>,
    ) {
        self.open_flow_in(
            ts_ns, dir, proto, internal, public, remote, flags, flow_hash, out,
        );
    }

    /// [`open_flow`](Correlator::open_flow)'s body, inlined there and in
    /// [`open_event`](Correlator::open_event) (which reads its arguments
    /// from the event: no call of ten arguments from it).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn open_flow_in(
        &mut self,
        ts_ns: UnixNanos,
        dir: Dir,
        proto: Proto,
        internal: &Ep,
        public: &Ep,
        remote: &Ep,
        flags: u8,
        flow_hash: u64,
        out: &mut Vec<Mapping>,
    ) {
        if self.flows_active >= self.cfg.flows_active_max {
            self.evict_least_recent(out);
        }
        let mut bits = 0;
        if proto == Proto::Tcp {
            if flags & TcpInfo::SYN == 0 {
                bits |= BIT_MIDFLOW;
            }
            if flags & TcpInfo::FIN != 0 {
                bits |= match dir {
                    Dir::Out => BIT_FIN_OUT,
                    Dir::In => BIT_FIN_IN,
                };
            }
            if flags & TcpInfo::RST != 0 {
                bits |= BIT_RST;
            }
        }
        self.stats.mappings_opened += 1;
        // The slot from the pair's endpoints, then the `Mapping` (end
        // `Open`) from the slot, as the idle scan builds one: no
        // `SocketAddr` turned back into the table's addresses.
        let packets = (u32::from(dir == Dir::Out), u32::from(dir == Dir::In));
        let at = self.insert_flow_eps(
            proto, internal, public, remote, ts_ns, packets, bits, flow_hash,
        );
        let f = *self.flows.at(at);
        out.push(self.mapping_of(&f, at.number()));
        let deadline_ns = f.deadline_ns(ts_ns, &self.cfg.hold);
        self.wheel_insert(at.number(), deadline_ns);
    }

    fn wheel_node(&self, l: Link) -> (Link, Link) {
        if l >= WHEEL_BASE {
            self.wheel[(l - WHEEL_BASE) as usize]
        } else {
            let f = self.flow(l);
            (f.link(LINK_WHEEL_PREV), f.link(LINK_WHEEL_NEXT))
        }
    }

    fn wheel_set_prev(&mut self, l: Link, prev: Link) {
        if l >= WHEEL_BASE {
            self.wheel[(l - WHEEL_BASE) as usize].0 = prev;
        } else {
            self.flow_mut(l).set_link(LINK_WHEEL_PREV, prev);
        }
    }

    fn wheel_set_next(&mut self, l: Link, next: Link) {
        if l >= WHEEL_BASE {
            self.wheel[(l - WHEEL_BASE) as usize].1 = next;
        } else {
            self.flow_mut(l).set_link(LINK_WHEEL_NEXT, next);
        }
    }

    /// Appends the (unlinked) flow in `slot` to the list of head `head`.
    fn wheel_push_back(&mut self, head: usize, slot: u32) {
        let head = WHEEL_BASE + head as Link;
        let tail = self.wheel_node(head).0;
        self.wheel_set_next(tail, slot);
        self.wheel_set_prev(head, slot);
        let f = self.flow_mut(slot);
        debug_assert!(
            f.link(LINK_WHEEL_NEXT) == LINK_NONE,
            "linking a linked flow"
        );
        f.set_link(LINK_WHEEL_PREV, tail);
        f.set_link(LINK_WHEEL_NEXT, head);
    }

    /// Takes the flow in `slot` off its bucket's list (nothing if unlinked).
    fn wheel_unlink(&mut self, slot: u32) {
        let (prev, next) = self.wheel_node(slot);
        if next == LINK_NONE {
            return;
        }
        self.wheel_set_next(prev, next);
        self.wheel_set_prev(next, prev);
        let f = self.flow_mut(slot);
        f.set_link(LINK_WHEEL_PREV, LINK_NONE);
        f.set_link(LINK_WHEEL_NEXT, LINK_NONE);
    }

    /// Links the (unlinked) flow in `slot` into the bucket of its deadline's
    /// wheel position, clamped to the wheel's span (never before `wheel_pos`:
    /// that bucket is the next one looked at; never past the span's last
    /// bucket: looked at again then).
    fn wheel_insert(&mut self, slot: u32, deadline_ns: UnixNanos) {
        let pos = deadline_ns.div_euclid(EXPIRY_BUCKET_NS);
        if self.wheel_pos == i64::MIN {
            // Start at the clock (the first flow's deadline may be hours
            // away, the next flow's seconds away).
            self.wheel_pos = if self.now_ns == i64::MIN {
                pos
            } else {
                pos.min(self.now_ns.div_euclid(EXPIRY_BUCKET_NS))
            };
        }
        let span = EXPIRY_WHEEL_BUCKETS as i64;
        let pos = pos.clamp(self.wheel_pos, self.wheel_pos + span - 1);
        self.wheel_push_back(pos.rem_euclid(span) as usize, slot);
    }

    /// Closes the least recently active flow. Ties (same last packet time)
    /// go to the earliest first packet, then the smallest key, as the idle
    /// scan orders its output: never to a slot number, which depends on the
    /// order earlier flows left.
    fn evict_least_recent(&mut self, out: &mut Vec<Mapping>) {
        let Some(slot) = self.live_slots().min_by(|&a, &b| {
            let (la, lb) = (self.flow_times(a).0, self.flow_times(b).0);
            la.cmp(&lb).then_with(|| {
                let (ma, mb) = (self.mapping(a), self.mapping(b));
                (ma.first_ns, ma.internal, ma.remote, ma.proto as u8).cmp(&(
                    mb.first_ns,
                    mb.internal,
                    mb.remote,
                    mb.proto as u8,
                ))
            })
        }) else {
            return;
        };
        let (m, _) = self.remove_flow(slot);
        self.stats.flows_evicted += 1;
        self.close(m, EndReason::Evicted, out);
    }

    fn close(&mut self, mut m: Mapping, reason: EndReason, out: &mut Vec<Mapping>) {
        m.end = reason;
        self.stats.mappings_closed += 1;
        out.push(m);
    }

    /// Moves the correlator's clock to `now_ns` (packet time; never
    /// backwards): copies older than the pair window are dropped and counted,
    /// and flows idle for longer than their hold time are closed.
    #[inline]
    pub fn advance(&mut self, now_ns: UnixNanos, out: &mut Vec<Mapping>) {
        if now_ns <= self.now_ns {
            return;
        }
        self.now_ns = now_ns;
        // Per packet: most packets drop no copy and start no scan. The
        // oldest copy is out of the window when older than `now_ns` less
        // the window (`advance_work`'s `horizon`); when that difference
        // overflows, `horizon` saturates at `i64::MIN` and no copy is
        // older: the same test without the saturation's instructions.
        let oldest_out = self.order_head != NO_SLOT
            && now_ns
                .checked_sub(self.cfg.pair_window_ns)
                .is_some_and(|horizon| self.waiting(self.order_head).copy.ts_ns < horizon);
        if oldest_out || now_ns >= self.next_scan_ns {
            self.advance_work(now_ns, out);
        }
    }

    /// [`advance`](Correlator::advance) when copies leave the window or a
    /// scan is due.
    #[inline(never)]
    fn advance_work(&mut self, now_ns: UnixNanos, out: &mut Vec<Mapping>) {
        let horizon = now_ns.saturating_sub(self.cfg.pair_window_ns);
        // In arrival order, up to the first copy still inside its window.
        while self.order_head != NO_SLOT && self.waiting(self.order_head).copy.ts_ns < horizon {
            self.pop_oldest_pending(false);
        }
        if now_ns >= self.next_scan_ns {
            self.next_scan_ns = now_ns.saturating_add(self.cfg.expiry_scan_interval_ns);
            if self.part == Part::Pairing {
                // The flow part scans here, between the same observations.
                self.events.push(FlowEvent(Ev::Scan(now_ns)));
            } else {
                self.expire_idle(now_ns, out);
            }
        }
    }

    /// Closes the flows idle at `now_ns` (last packet + hold before it):
    /// takes every flow off the buckets of the wheel positions up to
    /// `now_ns`'s (its own bucket included: part of it is past), closing
    /// those past their deadline and linking the others again at their
    /// deadline. A flow is closed at the first call with `now_ns` past its
    /// deadline, as with a queue ordered by deadline. Cost: the flows of at
    /// most `EXPIRY_WHEEL_BUCKETS` buckets, not the table's size.
    fn expire_idle(&mut self, now_ns: UnixNanos, out: &mut Vec<Mapping>) {
        if self.wheel_pos == i64::MIN {
            return;
        }
        let now_pos = now_ns.div_euclid(EXPIRY_BUCKET_NS);
        let span = EXPIRY_WHEEL_BUCKETS as i64;
        // Buckets wheel_pos..=now_pos, at most the whole wheel once.
        let buckets = now_pos
            .saturating_sub(self.wheel_pos)
            .saturating_add(1)
            .clamp(0, span);
        // The due buckets' lists are taken off their heads (each head left
        // empty) as at most `EXPIRE_WALK_LISTS` lists (more due buckets are
        // joined to them in turn), so the walk below follows several lists at
        // once. Every bucket before now_pos is empty now; flows queued again
        // go to now_pos's bucket or later, which are empty heads or hold
        // only flows not taken here: the walk only meets flows that were
        // due when it started, and queueing a flow again never writes the
        // links of one it has still to look at.
        let first = self.wheel_pos;
        let mut walks = [(LINK_NONE, LINK_NONE); EXPIRE_WALK_LISTS];
        let mut lists = 0;
        for k in 0..buckets {
            let b = (first + k).rem_euclid(span) as usize;
            let head = WHEEL_BASE + b as Link;
            let (last, front) = self.wheel[b];
            if front == head {
                continue;
            }
            self.wheel[b] = (head, head);
            if lists < EXPIRE_WALK_LISTS {
                walks[lists] = (front, last);
                lists += 1;
            } else {
                // Joined after the list of `k mod EXPIRE_WALK_LISTS`. The
                // walk never reads the links of a list's two ends that lead
                // out of it (it stops where its two ends meet).
                let w = &mut walks[k as usize % EXPIRE_WALK_LISTS];
                self.flow_mut(w.1).set_link(LINK_WHEEL_NEXT, front);
                self.flow_mut(front).set_link(LINK_WHEEL_PREV, w.1);
                w.1 = last;
            }
        }
        self.wheel_pos = self.wheel_pos.max(now_pos);
        // Each flow of those lists in turn: past its deadline it is kept
        // aside (still in its slot and the index: `expired`, as (last
        // packet, first packet, slot)), else (touched since it was queued,
        // queued at the span's end, or due later in now's bucket) queued
        // again at its deadline; its links are cleared as it is looked at.
        // The lists are chains of dependent loads through the slab (a
        // random cache line a flow): each list is walked from both ends,
        // the lists in turn, the next flow at each end prefetched when its
        // link is read, so up to `2 × EXPIRE_WALK_LISTS` loads are in flight
        // instead of one. The order the flows are looked at in changes
        // nothing but the order requeued flows take in their buckets (the
        // expired ones are sorted below).
        let mut expired: Vec<(UnixNanos, UnixNanos, u32)> = Vec::new();
        while lists > 0 {
            let mut i = 0;
            while i < lists {
                let (front, back) = walks[i];
                // SAFETY: a due list's two ends are flows on the wheel (a
                // list never holds a head: its ends meet before one), and
                // the wheel links live flows only (`wheel_insert` takes the
                // slot `insert_flow` filled, or one the scan found live;
                // `remove_flow_at` unlinks before `forget_flow` frees), so
                // slots the slab handed out.
                #[allow(unsafe_code)]
                let (front_at, back_at) =
                    unsafe { (SlotNo::handed_out(front), SlotNo::handed_out(back)) };
                if front == back {
                    self.expire_look(front_at, now_ns, &mut expired);
                    lists -= 1;
                    walks[i] = walks[lists];
                    continue;
                }
                let after = self.flows.at(front_at).link(LINK_WHEEL_NEXT);
                let before = self.flows.at(back_at).link(LINK_WHEEL_PREV);
                self.expire_look(front_at, now_ns, &mut expired);
                self.expire_look(back_at, now_ns, &mut expired);
                if after == back {
                    lists -= 1;
                    walks[i] = walks[lists];
                    continue;
                }
                self.flows.prefetch_entry(after);
                self.flows.prefetch_entry(before);
                walks[i] = (after, before);
                i += 1;
            }
        }
        // Deterministic output order: by last packet, then first packet, then
        // key. The key (internal, remote, protocol) is unique among flows
        // active at once, and every flow here is still active, so no two
        // flows compare equal and the order is total. The flows are removed
        // (their mappings rebuilt from their slots) in that order, so no
        // mapping is built or moved but the one written; removing them in
        // another order than the scan's changes only which free slot a later
        // flow gets, never a result.
        let expired = Self::expiry_sorted(expired, |a, b| {
            key_order(&self.mapping(a), &self.mapping(b))
        });
        debug_assert!(
            expired
                .windows(2)
                .all(|w| expiry_order(&self.mapping(w[0].2), &self.mapping(w[1].2)).is_lt()),
            "two expired flows with one key"
        );
        // In sorted order the slots are scattered: each is prefetched
        // `EXPIRE_PREFETCH_AHEAD` flows ahead, its index head half as far
        // ahead (both hints). Each flow's index head is computed once, half
        // as far ahead, and kept in `heads` (by position, modulo its length)
        // for the chain's prefetch and the unlinking: removing flows leaves
        // the index's size as it is, so a head stays right.
        const HALF: usize = EXPIRE_PREFETCH_AHEAD / 2;
        const RING: usize = EXPIRE_PREFETCH_AHEAD;
        const _: () = assert!(RING.is_power_of_two() && HALF < RING && HALF >= 1);
        let mut heads = [HeadNo::FIRST; RING];
        for (j, &(_, _, slot)) in expired.iter().enumerate().take(HALF) {
            heads[j] = self.index_head(&self.flow(slot).key());
        }
        for k in 0..expired.len() {
            if let Some(&(_, _, ahead)) = expired.get(k + EXPIRE_PREFETCH_AHEAD) {
                self.flows.prefetch_entry(ahead);
            }
            if let Some(&(_, _, ahead)) = expired.get(k + HALF) {
                let h = self.index_head(&self.flow(ahead).key());
                heads[(k + HALF) & (RING - 1)] = h;
                slab::prefetch(&self.index_heads[h]);
            }
            // Unlinking from the index walks the chain from its head: the
            // chain's first flow (when another) a quarter as far ahead.
            if let Some(&(_, _, ahead)) = expired.get(k + EXPIRE_PREFETCH_AHEAD / 4) {
                let first = self.index_heads[heads[(k + EXPIRE_PREFETCH_AHEAD / 4) & (RING - 1)]];
                if first != ahead && first != LINK_NONE {
                    self.flows.prefetch_entry(first);
                }
            }
            self.close_expired(expired[k].2, heads[k & (RING - 1)], out);
        }
    }

    /// The idle scan's look at the flow in `slot`, taken off its bucket's
    /// list ([`expire_idle`](Correlator::expire_idle)): its links cleared,
    /// then kept aside in `expired` if past its deadline at `now_ns`, else
    /// queued again at its deadline.
    #[inline(always)]
    fn expire_look(
        &mut self,
        at: SlotNo,
        now_ns: UnixNanos,
        expired: &mut Vec<(UnixNanos, UnixNanos, u32)>,
    ) {
        let slot = at.number();
        let f = self.flows.at_mut(at);
        f.set_link(LINK_WHEEL_PREV, LINK_NONE);
        f.set_link(LINK_WHEEL_NEXT, LINK_NONE);
        let f = *f;
        let (last_ns, _) = self.flow_times_of(&f, slot);
        let due = f.deadline_ns(last_ns, &self.cfg.hold);
        if now_ns > due {
            expired.push((last_ns, f.first_ns, slot));
        } else {
            self.wheel_insert(slot, due);
        }
    }

    /// `expired` (last packet, first packet, slot) sorted by the two times,
    /// flows with both times equal by `key_cmp` of their slots (rare). The
    /// times are packed with the slot into one `u128` (each time less its
    /// minimum here, in the bits its range needs) and sorted as integers
    /// ([`sorted_by_top_digit`]: no comparator per comparison, and about
    /// three passes over them instead of a comparison sort's ~14 for a
    /// scan's 20 000); a span too wide to pack (times more than ~2^52 ns
    /// apart) is sorted by a comparator instead, to the same order.
    fn expiry_sorted(
        mut expired: Vec<(UnixNanos, UnixNanos, u32)>,
        key_cmp: impl Fn(u32, u32) -> std::cmp::Ordering,
    ) -> Vec<(UnixNanos, UnixNanos, u32)> {
        let (Some(last_min), Some(first_min)) = (
            expired.iter().map(|e| e.0).min(),
            expired.iter().map(|e| e.1).min(),
        ) else {
            return expired;
        };
        let last_max = expired.iter().map(|e| e.0).max().unwrap_or(last_min);
        let first_max = expired.iter().map(|e| e.1).max().unwrap_or(first_min);
        // Offsets from the minimum, as unsigned (i64 differences fit u64).
        let off = |t: UnixNanos, min: UnixNanos| t.wrapping_sub(min) as u64;
        let bits = |span: u64| u64::BITS - span.leading_zeros();
        let (last_bits, first_bits) = (
            bits(off(last_max, last_min)),
            bits(off(first_max, first_min)),
        );
        const SLOT_BITS: u32 = 24;
        const _: () = assert!(WHEEL_BASE < 1 << SLOT_BITS);
        if last_bits + first_bits + SLOT_BITS > u128::BITS {
            expired.sort_unstable_by(|a, b| {
                (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| key_cmp(a.2, b.2))
            });
            return expired;
        }
        let first_shift = SLOT_BITS;
        let last_shift = SLOT_BITS + first_bits;
        let packed: Vec<u128> = expired
            .iter()
            .map(|&(last, first, slot)| {
                u128::from(off(last, last_min)) << last_shift
                    | u128::from(off(first, first_min)) << first_shift
                    | u128::from(slot)
            })
            .collect();
        let packed = sorted_by_top_digit(packed, last_shift + last_bits);
        let slot_mask = (1u128 << SLOT_BITS) - 1;
        for (e, &p) in expired.iter_mut().zip(&packed) {
            let slot = (p & slot_mask) as u32;
            *e = (
                last_min.wrapping_add((p >> last_shift) as i64),
                first_min.wrapping_add((p >> first_shift & ((1u128 << first_bits) - 1)) as i64),
                slot,
            );
        }
        // Runs of equal times (ordered by slot so far): by key instead.
        let mut i = 0;
        while i < expired.len() {
            let mut j = i + 1;
            while j < expired.len() && (expired[j].0, expired[j].1) == (expired[i].0, expired[i].1)
            {
                j += 1;
            }
            if j - i > 1 {
                expired[i..j].sort_unstable_by(|a, b| key_cmp(a.2, b.2));
            }
            i = j;
        }
        expired
    }

    /// The capture ended: every copy still waiting is counted unmatched and
    /// every active flow is closed with [`EndReason::CaptureEnd`] (or FIN/RST
    /// when the connection was closed), in order of first packet.
    ///
    /// Split: the pairing part counts its waiting copies, the flow part
    /// (after its last events) closes the flows.
    pub fn finish(&mut self, out: &mut Vec<Mapping>) {
        while self.pop_oldest_pending(false) {}
        if self.part == Part::Pairing {
            return;
        }
        let live: Vec<u32> = self.live_slots().collect();
        let mut flows: Vec<(Mapping, EndReason)> =
            live.into_iter().map(|s| self.remove_flow(s)).collect();
        // By first packet, then key (total: not the slots' order; the key is
        // unique among active flows, so unstable sorting is deterministic).
        flows.sort_unstable_by(|(a, _), (b, _)| {
            a.first_ns.cmp(&b.first_ns).then_with(|| key_order(a, b))
        });
        for (m, closed) in flows {
            let reason = match closed {
                EndReason::Open => EndReason::CaptureEnd,
                r => r,
            };
            self.close(m, reason, out);
        }
    }
}

/// Most bits of the digit [`sorted_by_top_digit`] scatters on (4 096
/// buckets, 16 KiB of counts).
const TOP_DIGIT_BITS_MAX: u32 = 12;

/// `keys` (each below `2^bits`) in increasing order, as `sort_unstable`
/// gives them: scattered by their top digit (as many bits as a quarter of
/// their number needs, at most [`TOP_DIGIT_BITS_MAX`]) into buckets in digit
/// order, then each bucket sorted (by insertion when small). Keys spread
/// over their range (the idle scan's last packet times are, over about a
/// scan interval) leave about four a bucket; keys piled in a few buckets
/// cost one comparison sort of those, as before.
fn sorted_by_top_digit(mut keys: Vec<u128>, bits: u32) -> Vec<u128> {
    let n = keys.len();
    let digit_bits = (usize::BITS - n.leading_zeros())
        .saturating_sub(2)
        .min(TOP_DIGIT_BITS_MAX)
        .min(bits);
    if digit_bits == 0 {
        keys.sort_unstable();
        return keys;
    }
    let shift = bits - digit_bits;
    let digits = 1usize << digit_bits;
    // Bucket d is starts[d]..starts[d + 1] (counted, then summed).
    let mut starts = vec![0usize; digits + 1];
    for &k in &keys {
        starts[(k >> shift) as usize + 1] += 1;
    }
    for d in 0..digits {
        starts[d + 1] += starts[d];
    }
    let mut next = starts.clone();
    let mut sorted = vec![0u128; n];
    for &k in &keys {
        let d = (k >> shift) as usize;
        sorted[next[d]] = k;
        next[d] += 1;
    }
    for d in 0..digits {
        let bucket = &mut sorted[starts[d]..starts[d + 1]];
        if bucket.len() <= 16 {
            for i in 1..bucket.len() {
                let k = bucket[i];
                let mut j = i;
                while j > 0 && bucket[j - 1] > k {
                    bucket[j] = bucket[j - 1];
                    j -= 1;
                }
                bucket[j] = k;
            }
        } else {
            bucket.sort_unstable();
        }
    }
    sorted
}

/// The idle scan's output order: last packet, first packet, then
/// [`key_order`].
fn expiry_order(a: &Mapping, b: &Mapping) -> std::cmp::Ordering {
    a.last_ns
        .cmp(&b.last_ns)
        .then_with(|| a.first_ns.cmp(&b.first_ns))
        .then_with(|| key_order(a, b))
}

/// Flows with equal times: internal endpoint, remote endpoint, protocol (a
/// total order on the flow key, unique among active flows).
fn key_order(a: &Mapping, b: &Mapping) -> std::cmp::Ordering {
    (a.internal, a.remote, a.proto as u8).cmp(&(b.internal, b.remote, b.proto as u8))
}

/// IPv4-mapped IPv6 addresses compare as IPv4 (what [`Ep`] does; the tests
/// check the two agree).
#[cfg(test)]
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Hash of the fields a source NAT does not rewrite: the header fields
/// packed without loss into three words (the TCP fields' presence included),
/// the payload's first 16 bytes already one word (the fingerprint, one folded
/// multiplication), then two more folded multiplications. Two copies pair
/// only if their hashes are equal; two different packets collide with a
/// chance taken as ~2^-64 (ARCHITECTURE.md, "Decisions", argues it).
fn invariants(pkt: &Decoded) -> u64 {
    invariant_hash(
        pkt.ip_id,
        pkt.ip_total_len,
        pkt.icmp_seq,
        pkt.tcp,
        pkt.payload_len,
        pkt.payload_fp_bytes,
        pkt.payload_fp,
    )
}

/// [`invariants`] of a packet with these fields.
#[inline]
fn invariant_hash(
    ip_id: u32,
    ip_total_len: u16,
    icmp_seq: u16,
    tcp: Option<TcpInfo>,
    payload_len: u32,
    payload_fp_bytes: u16,
    payload_fp: u64,
) -> u64 {
    let [w0, tcp_seq_ack, w2] = invariant_words(
        ip_id,
        ip_total_len,
        icmp_seq,
        tcp,
        payload_len,
        payload_fp_bytes,
    );
    invariant_hash_words(w0, tcp_seq_ack, w2, payload_fp)
}

/// The header fields of [`invariant_hash`] packed without loss into its three words: `w0` =
/// `ip_id | ip_total_len << 32 | icmp_seq << 48`, TCP's `seq | ack << 32` (else 0), `w2` =
/// `payload_len | payload_fp_bytes << 32 | (flags | 0x100) << 48` for TCP (the `0x100`: the
/// TCP fields' presence), else the same without the top part. The fast decoder builds the same
/// words itself (`decode::fast::Fast`), each part in the branch that knows it; its tests check
/// it against this function.
#[inline(always)]
pub(crate) fn invariant_words(
    ip_id: u32,
    ip_total_len: u16,
    icmp_seq: u16,
    tcp: Option<TcpInfo>,
    payload_len: u32,
    payload_fp_bytes: u16,
) -> [u64; 3] {
    let (tcp_seq_ack, tcp_flags) = match tcp {
        Some(t) => (
            u64::from(t.seq) | u64::from(t.ack) << 32,
            u64::from(t.flags) | 0x100,
        ),
        None => (0, 0),
    };
    let w0 = u64::from(ip_id) | u64::from(ip_total_len) << 32 | u64::from(icmp_seq) << 48;
    let w2 = u64::from(payload_len) | u64::from(payload_fp_bytes) << 32 | tcp_flags << 48;
    [w0, tcp_seq_ack, w2]
}

/// [`invariant_hash`] of its words ([`invariant_words`]) and the payload's fingerprint.
#[inline(always)]
fn invariant_hash_words(w0: u64, tcp_seq_ack: u64, w2: u64, payload_fp: u64) -> u64 {
    // `a` is a pseudo-random word of (w0, tcp_seq_ack); `w2` xor-ed into it
    // and the fingerprint are the final multiplication's factors: with `a`
    // equal (its inputs equal, or a 2^-64 collision) they differ exactly when
    // `w2` differs; with `a` different, `a ^ w2` agrees only by a 2^-64
    // chance. The constant keeps a fingerprint of 0 (no likelier than any
    // other value from a payload, but what a test or a bench may write) from
    // making the product 0 whatever the header.
    let a = fold_mul(w0 ^ MIX[1], tcp_seq_ack ^ MIX[0]);
    fold_mul(a ^ w2, payload_fp ^ MIX[2])
}

#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod pairing_model;
mod pending;
mod slab;
use pending::PendingTable;
use slab::{MappedSlab, SlotNo};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::LinkInfo;

    const S: i64 = NANOS_PER_SEC;
    const MS: i64 = 1_000_000;

    /// An address whose words are near the IPv4-mapped form: each bit of
    /// `pick` chooses one of a few values per word.
    fn near_mapped(pick: u8, low: u32) -> Ep {
        let hi = [0u64, 1, 1 << 63, 0xffff][usize::from(pick & 3)];
        let mid = [0xffffu64, 0, 0xfffe, 0x1_ffff][usize::from(pick >> 2 & 3)];
        Ep::of_v6(
            u128::from(hi) << 64 | u128::from(mid) << 32 | u128::from(low),
            7,
        )
    }

    proptest::proptest! {
        /// `Ep::both_v4` is `v4` of each, both `Some`, with their values.
        #[test]
        fn both_v4_agrees_with_v4(pa: u8, pb: u8, la: u32, lb: u32) {
            let (a, b) = (near_mapped(pa, la), near_mapped(pb, lb));
            let each = match (a.v4(), b.v4()) {
                (Some(x), Some(y)) => Some((x, y)),
                _ => None,
            };
            proptest::prop_assert_eq!(Ep::both_v4(&a, &b), each);
            proptest::prop_assert_eq!(a.v4().is_some(), pa & 15 == 0);
        }
    }

    /// A decoded packet as the decoder would produce it.
    fn pkt(proto: Proto, src: &str, dst: &str, ip_id: u32, flags: u8, seq: u32) -> Decoded {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        Decoded {
            link: LinkInfo::default(),
            proto,
            src: src.ip(),
            dst: dst.ip(),
            sport: src.port(),
            dport: dst.port(),
            ip_id,
            ip_total_len: 60,
            tcp: (proto == Proto::Tcp).then_some(TcpInfo { seq, ack: 0, flags }),
            icmp_seq: 0,
            payload_fp: 0,
            payload_len: 0,
            payload_fp_bytes: 0,
        }
    }

    fn run(events: &[(i64, Side, Decoded)]) -> (Vec<Mapping>, CorrelatorStats) {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        for (ts, side, p) in events {
            c.push(*ts, *side, p, &mut out);
        }
        c.finish(&mut out);
        (out, c.stats())
    }

    fn finals(out: &[Mapping]) -> Vec<Mapping> {
        out.iter()
            .filter(|m| m.end != EndReason::Open)
            .copied()
            .collect()
    }

    const SYN: u8 = TcpInfo::SYN;
    const SYNACK: u8 = TcpInfo::SYN | TcpInfo::ACK;
    const ACK: u8 = TcpInfo::ACK;
    const FINACK: u8 = TcpInfo::FIN | TcpInfo::ACK;

    /// A TCP connection through the NAT: both copies of each packet, in the
    /// order (pre, post) unless `post_first`.
    fn tcp_conn(
        t0: i64,
        internal: &str,
        public: &str,
        remote: &str,
        id0: u32,
        post_first: bool,
    ) -> Vec<(i64, Side, Decoded)> {
        let steps = [
            (true, SYN),
            (false, SYNACK),
            (true, ACK),
            (true, FINACK),
            (false, FINACK),
            (true, ACK),
        ];
        let mut v = Vec::new();
        for (i, (outbound, flags)) in steps.iter().enumerate() {
            let t = t0 + i as i64 * 10 * MS;
            let id = id0 + i as u32;
            let seq = 1000 + i as u32;
            let (pre, post) = if *outbound {
                (
                    pkt(Proto::Tcp, internal, remote, id, *flags, seq),
                    pkt(Proto::Tcp, public, remote, id, *flags, seq),
                )
            } else {
                (
                    pkt(Proto::Tcp, remote, public, id, *flags, seq),
                    pkt(Proto::Tcp, remote, internal, id, *flags, seq),
                )
            };
            // Sides are left to the subscriber prefixes.
            let (a, b) = if post_first { (post, pre) } else { (pre, post) };
            v.push((t, Side::Unknown, a));
            v.push((t + MS, Side::Unknown, b));
        }
        v
    }

    #[test]
    fn long_flows_are_written_again_every_refresh_interval() {
        // A UDP stream with a packet pair every 10 s for 5 minutes.
        let mut ev = Vec::new();
        for i in 0..30i64 {
            let t = S + i * 10 * S;
            ev.push((
                t,
                Side::Inside,
                pkt(
                    Proto::Udp,
                    "100.64.0.2:5000",
                    "198.51.100.10:3478",
                    i as u32,
                    0,
                    0,
                ),
            ));
            ev.push((
                t + MS,
                Side::Outside,
                pkt(
                    Proto::Udp,
                    "203.0.113.1:5000",
                    "198.51.100.10:3478",
                    i as u32,
                    0,
                    0,
                ),
            ));
        }
        let (out, stats) = run(&ev);
        let open: Vec<&Mapping> = out.iter().filter(|m| m.end == EndReason::Open).collect();
        // Confirmed at 1 s, then written again at 61, 121, 181, 241 s.
        assert_eq!(open.len(), 5, "{open:?}");
        assert_eq!(stats.mappings_refreshed, 4);
        assert!(open.iter().all(|m| m.first_ns == S), "one identity");
        assert_eq!(open[4].last_ns, 241 * S);
        assert_eq!(open[4].packets_out, 25);
        let f = finals(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].last_ns, 291 * S);
    }

    #[test]
    fn port_preserving_tcp_connection_is_one_mapping_closed_by_fin() {
        let ev = tcp_conn(
            10 * S,
            "100.64.0.2:40001",
            "203.0.113.1:40001",
            "198.51.100.10:80",
            100,
            false,
        );
        let (out, stats) = run(&ev);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].end, EndReason::Open);
        let m = out[1];
        assert_eq!(m.end, EndReason::Fin);
        assert_eq!(m.internal, "100.64.0.2:40001".parse().unwrap());
        assert_eq!(m.public, "203.0.113.1:40001".parse().unwrap());
        assert_eq!(m.remote, "198.51.100.10:80".parse().unwrap());
        assert_eq!((m.packets_out, m.packets_in), (4, 2));
        assert_eq!(m.first_ns, 10 * S);
        assert_eq!(m.last_ns, 10 * S + 50 * MS);
        assert_eq!(m.flags & FLAG_MIDFLOW, 0);
        assert_eq!(stats.paired_copies, 12);
        assert_eq!(stats.unmatched_inside + stats.unmatched_outside, 0);
    }

    #[test]
    fn post_translation_copy_first_pairs_the_same() {
        let a = run(&tcp_conn(
            10 * S,
            "100.64.0.2:40001",
            "203.0.113.1:5000",
            "198.51.100.10:80",
            100,
            false,
        ))
        .0;
        let b = run(&tcp_conn(
            10 * S,
            "100.64.0.2:40001",
            "203.0.113.1:5000",
            "198.51.100.10:80",
            100,
            true,
        ))
        .0;
        assert_eq!(finals(&a).len(), 1);
        assert_eq!(finals(&a)[0].public, finals(&b)[0].public);
        assert_eq!(finals(&b)[0].internal, "100.64.0.2:40001".parse().unwrap());
    }

    #[test]
    fn colliding_subscribers_get_remapped_ports_and_stay_apart() {
        let mut ev = tcp_conn(
            10 * S,
            "100.64.0.2:40002",
            "203.0.113.1:40002",
            "198.51.100.10:80",
            100,
            false,
        );
        ev.extend(tcp_conn(
            10 * S + 5 * MS,
            "100.64.0.3:40002",
            "203.0.113.1:1024",
            "198.51.100.10:80",
            500,
            false,
        ));
        ev.sort_by_key(|e| e.0);
        let f = finals(&run(&ev).0);
        assert_eq!(f.len(), 2);
        let by_internal: HashMap<SocketAddr, SocketAddr> =
            f.iter().map(|m| (m.internal, m.public)).collect();
        assert_eq!(
            by_internal[&"100.64.0.2:40002".parse().unwrap()],
            "203.0.113.1:40002".parse().unwrap()
        );
        assert_eq!(
            by_internal[&"100.64.0.3:40002".parse().unwrap()],
            "203.0.113.1:1024".parse().unwrap()
        );
    }

    #[test]
    fn same_public_port_towards_different_remotes_is_two_holders() {
        let mut ev = tcp_conn(
            10 * S,
            "100.64.0.2:40010",
            "203.0.113.1:40010",
            "198.51.100.10:80",
            100,
            false,
        );
        ev.extend(tcp_conn(
            10 * S + 3 * MS,
            "100.64.0.3:40010",
            "203.0.113.1:40010",
            "198.51.100.11:80",
            100,
            false,
        ));
        ev.sort_by_key(|e| e.0);
        let f = finals(&run(&ev).0);
        assert_eq!(f.len(), 2);
        assert!(f
            .iter()
            .all(|m| m.public == "203.0.113.1:40010".parse().unwrap()));
        assert!(f.iter().any(
            |m| m.internal.ip() == "100.64.0.3".parse::<IpAddr>().unwrap()
                && m.remote.ip() == "198.51.100.11".parse::<IpAddr>().unwrap()
        ));
    }

    #[test]
    fn udp_without_reply_is_a_mapping_closed_by_idle() {
        let ev = vec![
            (
                S,
                Side::Inside,
                pkt(
                    Proto::Udp,
                    "100.64.0.4:40030",
                    "198.51.100.10:9999",
                    7,
                    0,
                    0,
                ),
            ),
            (
                S + MS,
                Side::Outside,
                pkt(
                    Proto::Udp,
                    "203.0.113.1:40030",
                    "198.51.100.10:9999",
                    7,
                    0,
                    0,
                ),
            ),
            // Much later: the flow has been idle longer than the 30 s UDP hold.
            (
                100 * S,
                Side::Outside,
                pkt(Proto::Udp, "198.51.100.99:1", "203.0.113.1:1", 9, 0, 0),
            ),
        ];
        let (out, stats) = run(&ev);
        let f = finals(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].end, EndReason::Idle);
        assert_eq!((f[0].packets_out, f[0].packets_in), (1, 0));
        assert_eq!(
            stats.unmatched_outside, 1,
            "the stray outside packet has no inside copy"
        );
    }

    #[test]
    fn retransmitted_syns_pair_one_to_one() {
        let syn = |src: &str| pkt(Proto::Tcp, src, "198.51.100.11:81", 0, SYN, 777);
        let ev = vec![
            (S, Side::Inside, syn("100.64.0.4:40040")),
            (S + MS, Side::Inside, syn("100.64.0.4:40040")), // second SYN before the first's post copy: same key
            (S + 2 * MS, Side::Outside, syn("203.0.113.1:40040")),
            (S + 3 * MS, Side::Outside, syn("203.0.113.1:40040")),
        ];
        let (out, stats) = run(&ev);
        let f = finals(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].packets_out, 1,
            "the duplicate inside copy is swallowed"
        );
        assert_eq!(stats.duplicate_copies, 1);
        assert_eq!(stats.unmatched_outside, 1);
    }

    #[test]
    fn flow_running_before_capture_is_flagged_midflow() {
        let ev = vec![
            (
                S,
                Side::Unknown,
                pkt(
                    Proto::Tcp,
                    "100.64.0.3:40050",
                    "198.51.100.10:8080",
                    5,
                    ACK,
                    1,
                ),
            ),
            (
                S + MS,
                Side::Unknown,
                pkt(
                    Proto::Tcp,
                    "203.0.113.1:40050",
                    "198.51.100.10:8080",
                    5,
                    ACK,
                    1,
                ),
            ),
        ];
        let f = finals(&run(&ev).0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].flags & FLAG_MIDFLOW, FLAG_MIDFLOW);
        assert_eq!(f[0].end, EndReason::CaptureEnd);
    }

    #[test]
    fn nat_host_own_and_untranslated_traffic_is_not_a_mapping() {
        let ev = vec![
            // NAT host's own packet: outside only.
            (
                S,
                Side::Unknown,
                pkt(Proto::Udp, "203.0.113.1:5353", "198.51.100.10:53", 1, 0, 0),
            ),
            // Forwarded without translation, captured on both sides.
            (
                S,
                Side::Unknown,
                pkt(
                    Proto::Tcp,
                    "100.64.0.5:40060",
                    "198.51.100.10:80",
                    2,
                    SYN,
                    9,
                ),
            ),
            (
                S + MS,
                Side::Unknown,
                pkt(
                    Proto::Tcp,
                    "100.64.0.5:40060",
                    "198.51.100.10:80",
                    2,
                    SYN,
                    9,
                ),
            ),
            // Subscriber address on the outside interface.
            (
                S + MS,
                Side::Outside,
                pkt(
                    Proto::Tcp,
                    "100.64.0.5:40060",
                    "198.51.100.10:80",
                    3,
                    ACK,
                    9,
                ),
            ),
        ];
        let (out, stats) = run(&ev);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(stats.unmatched_outside, 1);
        assert_eq!(stats.duplicate_copies, 1);
        assert_eq!(stats.untranslated, 1);
        assert_eq!(stats.unmatched_inside, 1);
    }

    #[test]
    fn same_public_port_reused_over_time_by_another_subscriber() {
        let udp = |src: &str, dst: &str, id| pkt(Proto::Udp, src, dst, id, 0, 0);
        let ev = vec![
            (
                S,
                Side::Unknown,
                udp("100.64.0.2:40020", "198.51.100.10:53", 1),
            ),
            (
                S + MS,
                Side::Unknown,
                udp("203.0.113.1:40020", "198.51.100.10:53", 1),
            ),
            (
                S + 2 * MS,
                Side::Unknown,
                udp("198.51.100.10:53", "203.0.113.1:40020", 2),
            ),
            (
                S + 3 * MS,
                Side::Unknown,
                udp("198.51.100.10:53", "100.64.0.2:40020", 2),
            ),
            (
                200 * S,
                Side::Unknown,
                udp("100.64.0.3:40020", "198.51.100.10:53", 3),
            ),
            (
                200 * S + MS,
                Side::Unknown,
                udp("203.0.113.1:40020", "198.51.100.10:53", 3),
            ),
        ];
        let (out, _) = run(&ev);
        let f = finals(&out);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].internal, "100.64.0.2:40020".parse().unwrap());
        assert_eq!(f[0].end, EndReason::Idle);
        assert_eq!((f[0].packets_out, f[0].packets_in), (1, 1));
        assert_eq!(f[1].internal, "100.64.0.3:40020".parse().unwrap());
        assert_eq!(f[1].public, f[0].public);
    }

    #[test]
    fn new_syn_after_close_on_same_tuple_is_a_new_mapping() {
        let mut ev = tcp_conn(
            10 * S,
            "100.64.0.2:40001",
            "203.0.113.1:40001",
            "198.51.100.10:80",
            100,
            false,
        );
        ev.extend(tcp_conn(
            11 * S,
            "100.64.0.2:40001",
            "203.0.113.1:40001",
            "198.51.100.10:80",
            200,
            false,
        ));
        let f = finals(&run(&ev).0);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].end, EndReason::Fin);
        assert_eq!(f[1].first_ns, 11 * S);
    }

    #[test]
    fn icmp_echo_identifier_is_the_port() {
        let mut req = pkt(Proto::Icmp, "100.64.0.2:33", "198.51.100.10:0", 1, 0, 0);
        req.icmp_seq = 1;
        let mut req_post = req;
        req_post.src = "203.0.113.1".parse().unwrap();
        req_post.sport = 7;
        let mut rep = pkt(Proto::Icmp, "198.51.100.10:0", "203.0.113.1:7", 2, 0, 0);
        rep.icmp_seq = 1;
        let mut rep_post = rep;
        rep_post.dst = "100.64.0.2".parse().unwrap();
        rep_post.dport = 33;
        let ev = vec![
            (S, Side::Unknown, req),
            (S + 1, Side::Unknown, req_post),
            (S + 2, Side::Unknown, rep),
            (S + 3, Side::Unknown, rep_post),
        ];
        let f = finals(&run(&ev).0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].internal, "100.64.0.2:33".parse().unwrap());
        assert_eq!(f[0].public, "203.0.113.1:7".parse().unwrap());
        assert_eq!((f[0].packets_out, f[0].packets_in), (1, 1));
    }

    #[test]
    fn copies_outside_the_pair_window_do_not_pair() {
        let ev = vec![
            (
                S,
                Side::Unknown,
                pkt(Proto::Udp, "100.64.0.2:1000", "198.51.100.10:53", 1, 0, 0),
            ),
            (
                5 * S,
                Side::Unknown,
                pkt(Proto::Udp, "203.0.113.1:1000", "198.51.100.10:53", 1, 0, 0),
            ),
        ];
        let (out, stats) = run(&ev);
        assert!(out.is_empty());
        assert_eq!((stats.unmatched_inside, stats.unmatched_outside), (1, 1));
    }

    #[test]
    fn pending_bound_evicts_oldest_and_counts() {
        let mut c = Correlator::new(CorrelatorConfig {
            pending_max: 2,
            ..CorrelatorConfig::default()
        });
        let mut out = Vec::new();
        for i in 0..5u32 {
            c.push(
                S,
                Side::Inside,
                &pkt(Proto::Udp, "100.64.0.2:1000", "198.51.100.10:53", i, 0, 0),
                &mut out,
            );
        }
        let s = c.stats();
        assert_eq!(s.pending, 2);
        assert_eq!(s.pending_evicted, 3);
    }

    #[test]
    fn flow_bound_evicts_least_recent_and_counts() {
        let mut c = Correlator::new(CorrelatorConfig {
            flows_active_max: 1,
            ..CorrelatorConfig::default()
        });
        let mut out = Vec::new();
        for (i, port) in [1000u16, 1001].iter().enumerate() {
            let t = S + i as i64 * MS;
            c.push(
                t,
                Side::Inside,
                &pkt(
                    Proto::Udp,
                    &format!("100.64.0.2:{port}"),
                    "198.51.100.10:53",
                    i as u32,
                    0,
                    0,
                ),
                &mut out,
            );
            c.push(
                t,
                Side::Outside,
                &pkt(
                    Proto::Udp,
                    &format!("203.0.113.1:{port}"),
                    "198.51.100.10:53",
                    i as u32,
                    0,
                    0,
                ),
                &mut out,
            );
        }
        assert_eq!(c.stats().flows_evicted, 1);
        assert!(out
            .iter()
            .any(|m| m.end == EndReason::Evicted && m.internal.port() == 1000));
    }

    /// Idle expiry by deadline queue (no full scan): a flow touched after its
    /// wake-up was queued is re-queued, not closed early; a TCP flow closed by
    /// FIN both ways expires at the TIME_WAIT hold (its deadline moved
    /// earlier); each final is emitted at the first scan after its deadline.
    #[test]
    fn idle_expiry_follows_touches_and_closes() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        let mut id = 0;
        let mut both = |c: &mut Correlator,
                        out: &mut Vec<Mapping>,
                        t: i64,
                        proto,
                        inside: &str,
                        outside: &str,
                        remote: &str,
                        flags| {
            id += 1;
            c.push(
                t,
                Side::Inside,
                &pkt(proto, inside, remote, id, flags, id),
                out,
            );
            c.push(
                t + MS,
                Side::Outside,
                &pkt(proto, outside, remote, id, flags, id),
                out,
            );
        };
        // UDP (30 s hold, no reply) touched every 20 s up to 100 s.
        for k in 0..=5 {
            both(
                &mut c,
                &mut out,
                k * 20 * S,
                Proto::Udp,
                "100.64.0.5:5000",
                "203.0.113.1:5000",
                "198.51.100.1:53",
                0,
            );
        }
        // TCP (7440 s open, 120 s closed) closed by FIN both ways at 10 s.
        both(
            &mut c,
            &mut out,
            5 * S,
            Proto::Tcp,
            "100.64.0.6:6000",
            "203.0.113.1:6000",
            "198.51.100.2:80",
            SYN,
        );
        both(
            &mut c,
            &mut out,
            10 * S,
            Proto::Tcp,
            "100.64.0.6:6000",
            "203.0.113.1:6000",
            "198.51.100.2:80",
            FINACK,
        );
        c.push(
            10 * S + 2 * MS,
            Side::Inside,
            &pkt(
                Proto::Tcp,
                "198.51.100.2:80",
                "100.64.0.6:6000",
                999,
                FINACK,
                999,
            ),
            &mut out,
        );
        c.push(
            10 * S + 3 * MS,
            Side::Outside,
            &pkt(
                Proto::Tcp,
                "198.51.100.2:80",
                "203.0.113.1:6000",
                999,
                FINACK,
                999,
            ),
            &mut out,
        );
        let finals_at = |c: &mut Correlator, out: &mut Vec<Mapping>, t: i64| {
            c.advance(t, out);
            finals(out)
        };
        assert!(
            finals_at(&mut c, &mut out, 129 * S).is_empty(),
            "nothing is due before 130 s"
        );
        let f = finals_at(&mut c, &mut out, 131 * S);
        assert_eq!(f.len(), 2, "{f:?}");
        let tcp = f.iter().find(|m| m.proto == Proto::Tcp).unwrap();
        assert_eq!(tcp.end, EndReason::Fin);
        let udp = f.iter().find(|m| m.proto == Proto::Udp).unwrap();
        assert_eq!(
            (udp.end, udp.last_ns, udp.packets_out),
            (EndReason::Idle, 100 * S, 6)
        );
        assert_eq!(c.stats().flows_active, 0);
    }

    /// The expiry wheel starts at the clock, not at the first deadline (a
    /// first flow held for hours must not hold back a later flow held for
    /// seconds), and a deadline past the wheel's span (here a TCP hold longer
    /// than the wheel's `EXPIRY_WHEEL_BUCKETS` × `EXPIRY_BUCKET_NS`, reached by one jump of the clock) still
    /// closes at the first scan after it.
    #[test]
    fn expiry_wheel_short_hold_after_long_and_hold_past_the_span() {
        let cfg = CorrelatorConfig {
            hold: HoldTimes {
                tcp_open_s: 20_000,
                ..HoldTimes::default()
            },
            ..CorrelatorConfig::default()
        };
        assert!(20_000 * S > EXPIRY_WHEEL_BUCKETS as i64 * EXPIRY_BUCKET_NS);
        let mut c = Correlator::new(cfg);
        let mut out = Vec::new();
        let tcp_in = pkt(Proto::Tcp, "100.64.0.7:7000", "198.51.100.3:443", 1, SYN, 1);
        let tcp_out = pkt(
            Proto::Tcp,
            "203.0.113.1:7000",
            "198.51.100.3:443",
            1,
            SYN,
            1,
        );
        let udp_in = pkt(Proto::Udp, "100.64.0.8:8000", "198.51.100.4:53", 2, 0, 0);
        let udp_out = pkt(Proto::Udp, "203.0.113.1:8000", "198.51.100.4:53", 2, 0, 0);
        c.push(0, Side::Inside, &tcp_in, &mut out);
        c.push(MS, Side::Outside, &tcp_out, &mut out);
        c.push(S, Side::Inside, &udp_in, &mut out);
        c.push(S + MS, Side::Outside, &udp_out, &mut out);
        c.advance(31 * S, &mut out);
        assert!(finals(&out).is_empty(), "the UDP hold ends after 31 s");
        c.advance(32 * S, &mut out);
        let f = finals(&out);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].proto, f[0].end), (Proto::Udp, EndReason::Idle));
        c.advance(20_000 * S, &mut out);
        assert_eq!(finals(&out).len(), 1, "the TCP hold ends after 20 000 s");
        c.advance(20_001 * S, &mut out);
        let f = finals(&out);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f
            .iter()
            .any(|m| m.proto == Proto::Tcp && m.end == EndReason::Idle));
        assert_eq!(c.stats().flows_active, 0);
    }

    impl Correlator {
        /// The wheel's invariant, walked: every list is consistent both ways,
        /// every active flow is in exactly one
        /// bucket, of a position in the span and at or before its deadline's.
        fn check_wheel(&self) {
            let span = EXPIRY_WHEEL_BUCKETS as i64;
            let mut seen = vec![false; self.flows.len()];
            let mut linked = 0;
            for b in 0..EXPIRY_WHEEL_BUCKETS {
                let head = WHEEL_BASE + b as Link;
                let (mut prev, mut l) = (head, self.wheel[b].1);
                while l != head {
                    assert!(l < WHEEL_BASE, "bucket {b} runs into another head");
                    let f = self.flow(l);
                    assert!(f.live(), "free slot {l} linked in bucket {b}");
                    assert_eq!(f.link(LINK_WHEEL_PREV), prev, "slot {l}: prev link");
                    assert!(!seen[l as usize], "slot {l} linked twice");
                    seen[l as usize] = true;
                    linked += 1;
                    // The wheel position this bucket stands for now.
                    let pos = self.wheel_pos + (b as i64 - self.wheel_pos).rem_euclid(span);
                    let deadline_pos = self.flow_deadline_ns(l).div_euclid(EXPIRY_BUCKET_NS);
                    assert!(pos <= deadline_pos, "slot {l} queued after its deadline");
                    (prev, l) = (l, f.link(LINK_WHEEL_NEXT));
                }
                assert_eq!(self.wheel[b].0, prev, "bucket {b}: tail link");
            }
            assert_eq!(
                linked, self.flows_active,
                "active flows not linked once each"
            );
            for s in 0..self.flow_slots_used() {
                let f = self.flow(s);
                if !f.live() {
                    assert_eq!(f.links, [0xff; 9], "free slot {s} linked");
                }
            }
        }
    }

    /// Slot reuse, replaced flows, deadlines moved earlier (FIN, RST), holds
    /// short and long (past the wheel's span) and clock jumps, on a few
    /// tuples in a pseudo-random order: after every packet the wheel's
    /// invariant holds, and after every scan no active flow is past its
    /// deadline while every idle final was past its deadline when emitted.
    /// The idle scan writes every expired flow once, in (last packet, first
    /// packet, key) order, also when many share both times (the key breaks
    /// the tie) and when their slots are scattered by earlier removals.
    #[test]
    fn idle_scan_writes_expired_flows_in_time_then_key_order() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let base = 1_000 * S;
        let mut opened = 0;
        for round in 0..3i64 {
            let t0 = base + round * 1_000 * S;
            for id in 0..400u32 {
                // Few distinct times: many flows tie on (last, first).
                let t = t0 + next(5) as i64 * MS;
                let sub = next(64);
                let port = 1024 + next(8) as u32;
                let internal = format!("100.64.1.{}:{port}", 1 + sub);
                let public = format!("203.0.113.{}:{}", 1 + next(4), 20_000 + id);
                let remote = format!("198.51.100.{}:53", 1 + next(3));
                let pre = pkt(Proto::Udp, &internal, &remote, id, 0, id);
                let post = pkt(Proto::Udp, &public, &remote, id, 0, id);
                c.push(t, Side::Inside, &pre, &mut out);
                c.push(t + 10_000, Side::Outside, &post, &mut out);
            }
            opened = c.stats().mappings_opened;
            out.clear();
            // Every flow of the round expires at the next round's first scan.
            c.advance(t0 + 900 * S, &mut out);
            assert!(out.len() > 300 && out.iter().all(|m| m.end == EndReason::Idle));
            assert_eq!(
                c.stats().mappings_closed,
                opened,
                "round {round}: all written"
            );
            assert_eq!(c.stats().flows_active, 0, "round {round}: all expired");
            assert!(
                out.windows(2).all(|w| expiry_order(&w[0], &w[1]).is_lt()),
                "round {round}: written in (last, first, key) order"
            );
            assert!(
                out.windows(2)
                    .any(|w| (w[0].last_ns, w[0].first_ns) == (w[1].last_ns, w[1].first_ns)),
                "round {round}: ties exercised"
            );
            out.clear();
        }
        assert_eq!(c.stats().mappings_closed, opened);
    }

    #[test]
    fn expiry_wheel_model_with_slot_reuse_replace_close_and_jumps() {
        let cfg = CorrelatorConfig {
            hold: HoldTimes {
                tcp_closed_s: 3,
                tcp_open_s: 10_000,
                udp_s: 5,
                udp_stream_s: 40,
                icmp_s: 2,
            },
            ..CorrelatorConfig::default()
        };
        assert!(cfg.hold.tcp_open_s as i64 * S > EXPIRY_WHEEL_BUCKETS as i64 * EXPIRY_BUCKET_NS);
        let hold = cfg.hold;
        let mut c = Correlator::new(cfg);
        let mut out = Vec::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut t = 1_000 * S;
        let mut finals_seen = 0;
        for id in 0..4_000u32 {
            t += match next(100) {
                0 => 9_000 * S,      // past most holds, not the TCP open one
                1..=2 => 20_000 * S, // past the wheel's span
                3..=20 => S + next(S as u64) as i64,
                _ => next(300) as i64 * MS,
            };
            let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp][next(3) as usize];
            let sub = next(4);
            let remote = format!("198.51.100.{}:{}", 1 + next(2), 80);
            let public = format!("203.0.113.{}:{}", 1 + next(2), 7000 + sub);
            let internal = format!("100.64.0.{}:{}", 1 + sub, 7000 + sub);
            let flags = [SYN, SYNACK, ACK, FINACK, TcpInfo::RST][next(5) as usize];
            let outbound = next(3) != 0;
            let (pre, post) = if outbound {
                (
                    pkt(proto, &internal, &remote, id, flags, id),
                    pkt(proto, &public, &remote, id, flags, id),
                )
            } else {
                (
                    pkt(proto, &remote, &public, id, flags, id),
                    pkt(proto, &remote, &internal, id, flags, id),
                )
            };
            let scan_before = c.next_scan_ns;
            c.push(t, Side::Inside, &pre, &mut out);
            if c.next_scan_ns != scan_before {
                // A scan ran at `t`: nothing active is past its deadline.
                for s in c.live_slots() {
                    assert!(c.flow_deadline_ns(s) >= t, "flow left past its deadline");
                }
            }
            c.push(t + 10 * 1_000, Side::Outside, &post, &mut out);
            c.check_wheel();
            c.check_index();
            for m in out.drain(..) {
                // (FIN/RST finals also come from a new SYN on a closed tuple;
                // those closed by a scan are covered by the check above.)
                if m.end == EndReason::Idle {
                    assert!(m.last_ns + hold.hold_ns(&m) < t + 10 * 1_000);
                    finals_seen += 1;
                }
            }
        }
        assert!(
            finals_seen > 100,
            "the model test closed {finals_seen} flows by expiry"
        );
        assert!(c.stats().mappings_closed > 1_000);
        assert!(c.flow_slots_used() <= 16 * 3 + 1, "slots are reused");
        c.finish(&mut out);
        assert_eq!(c.stats().flows_active, 0);
        assert_eq!(c.stats().deadline_rebuilds, 0);
        c.check_wheel();
    }

    /// At the `flows_active_max` bound, flows with the same last packet time
    /// are evicted by first packet, then key; not by slot number.
    #[test]
    fn flow_bound_ties_go_to_the_earliest_first_packet_then_key() {
        let mut c = Correlator::new(CorrelatorConfig {
            flows_active_max: 2,
            ..CorrelatorConfig::default()
        });
        let mut out = Vec::new();
        let udp = |c: &mut Correlator, out: &mut Vec<Mapping>, t: i64, port: u16, id: u32| {
            let inside = pkt(
                Proto::Udp,
                &format!("100.64.0.2:{port}"),
                "198.51.100.10:53",
                id,
                0,
                0,
            );
            let outside = pkt(
                Proto::Udp,
                &format!("203.0.113.1:{port}"),
                "198.51.100.10:53",
                id,
                0,
                0,
            );
            c.push(t, Side::Inside, &inside, out);
            c.push(t, Side::Outside, &outside, out);
        };
        // Port 2000 first at 1 s, port 1000 first at 2 s; both last at 3 s.
        udp(&mut c, &mut out, S, 2000, 1);
        udp(&mut c, &mut out, 2 * S, 1000, 2);
        udp(&mut c, &mut out, 3 * S, 1000, 3);
        udp(&mut c, &mut out, 3 * S, 2000, 4);
        udp(&mut c, &mut out, 3 * S, 3000, 5);
        let evicted: Vec<_> = out.iter().filter(|m| m.end == EndReason::Evicted).collect();
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].internal.port(), 2000);
    }

    /// A flow running longer than a slot's 47-bit offsets hold (39 h): its
    /// times move to `flow_wide` and stay exact to the nanosecond, in the
    /// refreshed states and in the final; the entry leaves with the flow.
    #[test]
    fn flow_longer_than_flow_span_max_keeps_exact_times() {
        let mut c = Correlator::new(CorrelatorConfig {
            refresh_interval_ns: 10 * 3600 * S,
            ..CorrelatorConfig::default()
        });
        let mut out = Vec::new();
        let t0 = 1_700_000_000 * S + 123_456_789;
        let mut last = t0;
        // A TCP flow (2 h 4 min open hold) with a packet pair every hour and
        // a few odd nanoseconds, for 100 hours.
        for k in 0..=100i64 {
            let t = t0 + k * 3600 * S + k * 7;
            let flags = if k == 0 { SYN } else { ACK };
            let id = k as u32;
            c.push(
                t,
                Side::Inside,
                &pkt(
                    Proto::Tcp,
                    "100.64.0.9:9000",
                    "198.51.100.9:22",
                    id,
                    flags,
                    id,
                ),
                &mut out,
            );
            c.push(
                t + 1_000,
                Side::Outside,
                &pkt(
                    Proto::Tcp,
                    "203.0.113.9:9000",
                    "198.51.100.9:22",
                    id,
                    flags,
                    id,
                ),
                &mut out,
            );
            last = t;
            let wide = c.flow_wide.len();
            assert_eq!(
                wide,
                usize::from((t - t0) as u64 > FLOW_SPAN_MAX_NS),
                "at hour {k}"
            );
            c.check_wheel();
        }
        assert!((last - t0) as u64 > FLOW_SPAN_MAX_NS);
        let refreshed: Vec<_> = out
            .iter()
            .filter(|m| m.end == EndReason::Open)
            .skip(1)
            .collect();
        assert_eq!(refreshed.len(), 10, "one refresh every 10 hours");
        for (i, m) in refreshed.iter().enumerate() {
            let k = 10 * (i as i64 + 1);
            assert_eq!(m.first_ns, t0);
            assert_eq!(m.last_ns, t0 + k * 3600 * S + k * 7, "refresh {i}");
        }
        c.advance(last + 3 * 3600 * S, &mut out);
        let f = finals(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].first_ns, f[0].last_ns, f[0].end),
            (t0, last, EndReason::Idle)
        );
        assert_eq!((f[0].packets_out, f[0].packets_in), (101, 0));
        assert!(c.flow_wide.is_empty());
        c.check_wheel();
    }

    impl Correlator {
        /// The pending slab's invariant, walked: the arrival list links every
        /// waiting copy once, both ways; every key's list holds copies of that
        /// key only, at most `pending_per_key_max`, in arrival order; every
        /// waiting copy is on exactly one key's list.
        pub(super) fn check_pending(&self) {
            let mut in_order = vec![false; self.waiting.len()];
            let (mut prev, mut i, mut n) = (NO_SLOT, self.order_head, 0);
            let mut rank = vec![usize::MAX; self.waiting.len()];
            // Entries as counted: a coarse entry stands for two.
            let mut counted = 0;
            let mut fine = 0;
            while i != NO_SLOT {
                let w = self.waiting(i);
                assert_eq!(w.order_prev, prev, "entry {i}: order prev link");
                assert!(!in_order[i as usize], "entry {i} twice in arrival order");
                in_order[i as usize] = true;
                rank[i as usize] = n;
                n += 1;
                counted += if w.copy.coarse && w.copy.ambiguous {
                    2
                } else {
                    1
                };
                fine += usize::from(!w.copy.coarse);
                if w.copy.coarse {
                    assert!(
                        (w.copy.ambiguous && !w.copy.inside && w.key.dir == Dir::Out)
                            || (w.copy.inside && !w.copy.ambiguous)
                    );
                    assert_eq!(w.twin, NO_SLOT, "entry {i}: a coarse entry linked");
                }
                (prev, i) = (i, w.order_next);
            }
            assert_eq!(self.order_tail, prev, "arrival order tail");
            assert_eq!(counted, self.pending_count, "pending_count");
            assert_eq!(fine, self.fine_count, "fine_count");
            // Twin links name the other entry of the same ambiguous copy,
            // waiting, linked back.
            for (i, w) in self.waiting.iter().enumerate() {
                if !in_order[i] || w.twin == NO_SLOT {
                    continue;
                }
                let t = self.waiting(w.twin);
                assert!(in_order[w.twin as usize], "entry {i}: twin gone");
                assert_eq!(t.twin as usize, i, "entry {i}: twin not linked back");
                assert_eq!(
                    t.copy.packet, w.copy.packet,
                    "entry {i}: twin of another packet"
                );
                assert_eq!(twin_key(w.key, &w.copy), Some(t.key), "entry {i}: twin key");
            }
            let mut in_key = 0;
            for head in self.pending.iter() {
                let key = self.waiting(head).key;
                let coarse = self.waiting(head).copy.coarse;
                let at = if coarse {
                    let chunks = &self.waiting;
                    self.pending
                        .find(coarse_hash(key.proto, key.invariants), |h| {
                            Self::waiting_in(chunks, h).is_coarse(&key)
                        })
                        .map(|f| self.pending.get(f))
                } else {
                    self.find_pending(key, pair_hash(&key))
                };
                assert_eq!(at, Some(head));
                let (mut i, mut len, mut last_rank) = (head, 0, None);
                while i != NO_SLOT {
                    let w = self.waiting(i);
                    if coarse {
                        assert!(w.is_coarse(&key), "entry {i} on another coarse list");
                        // Each key it stands for, with the copies on that
                        // key's list, within `pending_per_key_max`.
                        let keys = match twin_key(w.key, &w.copy) {
                            Some(t) => vec![w.key, t],
                            None => vec![w.key],
                        };
                        for k in keys {
                            let fine = self.find_pending(k, pair_hash(&k)).map_or(0, |mut j| {
                                let mut m = 0;
                                while j != NO_SLOT {
                                    (m, j) = (m + 1, self.waiting(j).key_next);
                                }
                                m
                            });
                            assert!(
                                fine + self.coarse_count(&k) as usize
                                    <= self.cfg.pending_per_key_max
                            );
                        }
                    } else {
                        assert!(w.is_fine(&key), "entry {i} on another key's list");
                    }
                    assert!(in_order[i as usize], "entry {i} not in arrival order");
                    assert!(last_rank < Some(rank[i as usize]), "key list out of order");
                    last_rank = Some(rank[i as usize]);
                    len += 1;
                    i = w.key_next;
                }
                if coarse {
                    assert!(len <= self.coarse_list_max(), "coarse list of {len}");
                } else {
                    assert!(len + self.coarse_count(&key) as usize <= self.cfg.pending_per_key_max);
                }
                in_key += len;
            }
            assert_eq!(in_key, n, "a waiting copy on no key's list");
        }
    }

    /// Copies inside and outside, retransmitted (one key, several copies),
    /// ambiguous (two keys), paired, dropped at the window, at `pending_max`
    /// and at `pending_per_key_max`, in a pseudo-random order: after every
    /// packet the pending slab's invariant holds, and in the end nothing
    /// waits and every entry is back on the free list.
    #[test]
    fn pending_slab_model_with_retransmissions_bounds_and_window() {
        let mut c = Correlator::new(CorrelatorConfig {
            pending_max: 16,
            pending_per_key_max: 2,
            ..CorrelatorConfig::default()
        });
        let mut out = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut t = S;
        for _ in 0..20_000 {
            t += next(200) as i64 * MS;
            let id = next(6) as u32; // few ids: retransmissions and reuse
            let sub = 1 + next(3);
            let remote = format!("198.51.100.{}:443", 1 + next(2));
            let (inside, outside) = (
                format!("100.64.0.{sub}:5000"),
                format!("203.0.113.{sub}:6000"),
            );
            let p = match next(4) {
                0 => (Side::Inside, pkt(Proto::Udp, &inside, &remote, id, 0, 0)),
                1 => (Side::Outside, pkt(Proto::Udp, &outside, &remote, id, 0, 0)),
                2 => (Side::Outside, pkt(Proto::Udp, &remote, &outside, id, 0, 0)),
                _ => (Side::Inside, pkt(Proto::Udp, &remote, &inside, id, 0, 0)),
            };
            c.push(t, p.0, &p.1, &mut out);
            c.check_pending();
        }
        let s = c.stats();
        assert!(
            s.paired_copies > 1_000 && s.pending_evicted > 0 && s.pending_key_full > 0,
            "{s:?}"
        );
        assert!(s.unmatched_inside > 0 && s.unmatched_outside > 0 && s.duplicate_copies > 0);
        c.finish(&mut out);
        c.check_pending();
        assert_eq!((c.stats().pending, c.order_head), (0, NO_SLOT));
        assert!(c.pending.is_empty());
        let (mut free, mut i) = (0, c.waiting_free);
        while i != NO_SLOT {
            (free, i) = (free + 1, c.waiting(i).key_next);
        }
        assert_eq!(free, c.waiting.len(), "every entry back on the free list");
    }

    /// Pseudo-random packets of a few subscribers, remotes and ids, inside
    /// and outside, both directions, TCP and UDP, some repeated: retransmissions,
    /// duplicates, ambiguous outside copies, untranslated pairs, drops at the
    /// window, at `pending_max` and at `pending_per_key_max`, flows replaced,
    /// refreshed, evicted and idle.
    fn random_packets(seed: u64, n: usize) -> Vec<(i64, Side, Decoded)> {
        let mut rng = seed | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut t = S;
        (0..n)
            .map(|_| {
                t += next(300) as i64 * MS;
                let id = next(8) as u32;
                let sub = 1 + next(3);
                let remote = format!("198.51.100.{}:443", 1 + next(2));
                let (inside, outside) = (
                    format!("100.64.0.{sub}:5000"),
                    match next(8) {
                        0 => format!("100.64.0.{sub}:5000"),            // untranslated
                        1 => format!("203.0.113.{}:6000", 1 + next(3)), // another public
                        _ => format!("203.0.113.{sub}:6000"),
                    },
                );
                let proto = if next(2) == 0 { Proto::Udp } else { Proto::Tcp };
                let flags = [
                    TcpInfo::SYN,
                    TcpInfo::ACK,
                    TcpInfo::ACK | TcpInfo::FIN,
                    TcpInfo::RST,
                ][next(4) as usize];
                let (side, d) = match next(5) {
                    0 => (Side::Inside, pkt(proto, &inside, &remote, id, flags, id)),
                    1 => (Side::Outside, pkt(proto, &outside, &remote, id, flags, id)),
                    2 => (Side::Outside, pkt(proto, &remote, &outside, id, flags, id)),
                    3 => (Side::Unknown, pkt(proto, &inside, &remote, id, flags, id)),
                    _ => (Side::Inside, pkt(proto, &remote, &inside, id, flags, id)),
                };
                (t, side, d)
            })
            .collect()
    }

    proptest::proptest! {
        /// The clock (`now_ns`, the replay's writer clock since round 11) is
        /// the latest time pushed or advanced to, whatever the order, the
        /// sides and whether the packets pair: what the replay's sink kept
        /// itself as `max_ts` before.
        #[test]
        fn clock_is_the_latest_time_pushed_or_advanced_to(
            steps in proptest::collection::vec((0u8..4, -5i64..5, 0u32..3), 0..60),
            base in -(1i64 << 40)..(1i64 << 40),
        ) {
            let mut c = Correlator::new(CorrelatorConfig::default());
            let mut out = Vec::new();
            let mut latest = i64::MIN;
            proptest::prop_assert_eq!(c.now_ns(), latest);
            for (k, (what, dt, id)) in steps.into_iter().enumerate() {
                let ts = base + k as i64 * 100 * MS + dt * 300 * MS;
                let (inside, outside) = (
                    pkt(Proto::Tcp, "10.0.0.5:4000", "8.8.8.8:443", id, 0x02, id),
                    pkt(Proto::Tcp, "192.0.2.1:5000", "8.8.8.8:443", id, 0x02, id),
                );
                match what {
                    0 => c.push(ts, Side::Inside, &inside, &mut out),
                    1 => c.push(ts, Side::Outside, &outside, &mut out),
                    2 => c.push(ts, Side::Unknown, &outside, &mut out),
                    _ => c.advance(ts, &mut out),
                }
                latest = latest.max(ts);
                proptest::prop_assert_eq!(c.now_ns(), latest);
            }
        }
    }

    /// The idle scan's sort of `expired` (slots made unique, as in the scan)
    /// and the comparator sort it must equal: by last, then first packet,
    /// then key, where a slot's "key" is a scramble of it (so the key order
    /// is not the slot order). Returns (scan's, comparator's).
    #[allow(clippy::type_complexity)]
    fn expiry_sorts(
        expired: impl Iterator<Item = (UnixNanos, UnixNanos, u32)>,
    ) -> (
        Vec<(UnixNanos, UnixNanos, u32)>,
        Vec<(UnixNanos, UnixNanos, u32)>,
    ) {
        let mut seen = std::collections::HashSet::new();
        let expired: Vec<_> = expired.filter(|e| seen.insert(e.2)).collect();
        let key = |s: u32| s.wrapping_mul(0x9e37_79b9).rotate_left(7);
        let key_cmp = |a: u32, b: u32| key(a).cmp(&key(b));
        let mut want = expired.clone();
        want.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| key_cmp(a.2, b.2)));
        (Correlator::expiry_sorted(expired, key_cmp), want)
    }

    proptest::proptest! {
        /// The idle scan's sort (times packed into integers, equal times by
        /// key) gives the comparator sort's order: few distinct times (many
        /// ties), times near `i64::MIN`/`MAX` (spans too wide to pack, the
        /// comparator path) and slots up to the 24-bit limit.
        #[test]
        fn expiry_sort_matches_the_comparator_sort(
            raw in proptest::collection::vec((0u8..6, 0u8..6, 0u32..WHEEL_BASE), 0..200),
            wide in proptest::prelude::any::<bool>(),
            base in proptest::prelude::any::<i64>(),
        ) {
            let time = |k: u8| -> UnixNanos {
                if wide && k == 5 { i64::MAX } else if wide && k == 0 { i64::MIN }
                else { base.saturating_add(i64::from(k) * 1_000_003) }
            };
            let (got, want) = expiry_sorts(raw.into_iter().map(|(l, f, slot)| (time(l), time(f), slot)));
            proptest::prop_assert_eq!(got, want);
        }

        /// The same with times spread over up to 2^`span_bits` ns (the
        /// scan's usual case: few ties, the top digit's buckets holding a
        /// few flows each, or piled into one when the span is narrow), up to
        /// 1 500 flows.
        #[test]
        fn expiry_sort_of_spread_times_matches_the_comparator_sort(
            raw in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), 0u32..WHEEL_BASE),
                0..1500,
            ),
            span_bits in 0u32..62,
            base in -(1i64 << 61)..(1i64 << 61),
        ) {
            let time = |r: u64| base + (r >> (64 - span_bits.max(1)) >> u32::from(span_bits == 0)) as i64;
            let (got, want) = expiry_sorts(raw.into_iter().map(|(l, f, slot)| (time(l), time(f), slot)));
            proptest::prop_assert_eq!(got, want);
        }

        /// [`sorted_by_top_digit`] is `sort_unstable`, whatever the keys'
        /// spread (all in one bucket, a few, or evenly over all).
        #[test]
        fn sorted_by_top_digit_is_sort_unstable(
            raw in proptest::collection::vec(proptest::prelude::any::<u128>(), 0..2000),
            bits in 0u32..=128,
            narrow in 0u32..128,
        ) {
            let mask = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
            let keys: Vec<u128> = raw.iter().map(|k| (k >> narrow.min(127)) & mask).collect();
            let mut want = keys.clone();
            want.sort_unstable();
            proptest::prop_assert_eq!(sorted_by_top_digit(keys, bits), want);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// A copy that waits goes where its key's one probe found its list
        /// (`wait_at`), not through a second probe (`insert`, the path at
        /// `pending_max`): both give the same mappings, in the same order,
        /// the same counters and the same waiting copies, whatever the bounds.
        #[test]
        fn one_probe_per_key_agrees_with_probing_again(
            seed in proptest::prelude::any::<u64>(),
            pending_max in 1usize..24,
            pending_per_key_max in 1usize..4,
            flows_active_max in 1usize..8,
        ) {
            let cfg = CorrelatorConfig {
                pending_max,
                pending_per_key_max,
                flows_active_max,
                refresh_interval_ns: 2 * S,
                ..CorrelatorConfig::default()
            };
            let (mut a, mut b) = (Correlator::new(cfg.clone()), Correlator::new(cfg));
            b.test_probe_again = true;
            let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
            for (t, side, d) in random_packets(seed, 600) {
                a.push(t, side, &d, &mut out_a);
                b.push(t, side, &d, &mut out_b);
                proptest::prop_assert_eq!(&out_a, &out_b);
                proptest::prop_assert_eq!(a.stats(), b.stats());
            }
            a.check_pending();
            a.check_wheel();
            a.finish(&mut out_a);
            b.finish(&mut out_b);
            proptest::prop_assert_eq!(&out_a, &out_b);
            proptest::prop_assert_eq!(a.stats(), b.stats());
        }
    }

    /// Feeds `packets` to one correlator and to a split pair (pairing part,
    /// then its events to the flow part in batches of `batch` packets);
    /// after every batch and at the end, the mappings so far (in order) and
    /// the counters must be equal. `tick_every`: every so many packets the
    /// clock also moves alone (a packet that was not decoded), by `jump`.
    fn split_agrees(
        cfg: &CorrelatorConfig,
        packets: &[(i64, Side, Decoded)],
        batch: usize,
        tick_every: usize,
        jump: i64,
    ) -> Result<(), String> {
        let mut one = Correlator::new(cfg.clone());
        let mut pairing = Correlator::try_new_pairing(cfg.clone()).unwrap();
        let mut flows = Correlator::try_new_flows(cfg.clone()).unwrap();
        let (mut out_one, mut out_split, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let mut events = Vec::new();
        let mut hand_over =
            |pairing: &mut Correlator, flows: &mut Correlator, out: &mut Vec<Mapping>| {
                pairing.take_events(&mut events);
                flows.apply_events(&events, out);
                events.clear();
            };
        let check = |one: &Correlator,
                     pairing: &Correlator,
                     flows: &Correlator,
                     a: &[Mapping],
                     b: &[Mapping],
                     at: &str| {
            if a != b {
                return Err(format!(
                    "mappings differ {at}: one {} split {}",
                    a.len(),
                    b.len()
                ));
            }
            let merged = pairing.stats().merged(&flows.stats());
            if one.stats() != merged {
                return Err(format!(
                    "counters differ {at}: {:?} vs {merged:?}",
                    one.stats()
                ));
            }
            // The clock as each part keeps it: the pairing part's is the
            // one correlator's, and the flow part's timer wheel starts and
            // moves where the one correlator's does.
            if (one.now_ns, one.next_scan_ns) != (pairing.now_ns, pairing.next_scan_ns)
                || one.wheel_pos != flows.wheel_pos
            {
                return Err(format!(
                    "clocks differ {at}: now {} / {}, wheel {} / {}",
                    one.now_ns, pairing.now_ns, one.wheel_pos, flows.wheel_pos
                ));
            }
            Ok(())
        };
        for (k, (t, side, d)) in packets.iter().enumerate() {
            one.push(*t, *side, d, &mut out_one);
            pairing.push(*t, *side, d, &mut none);
            if tick_every > 0 && k % tick_every == tick_every - 1 {
                one.advance(t + jump, &mut out_one);
                pairing.advance(t + jump, &mut none);
            }
            assert!(none.is_empty(), "the pairing part makes no mappings");
            if k % batch == batch - 1 {
                hand_over(&mut pairing, &mut flows, &mut out_split);
                check(
                    &one,
                    &pairing,
                    &flows,
                    &out_one,
                    &out_split,
                    &format!("after packet {k}"),
                )?;
            }
        }
        one.finish(&mut out_one);
        pairing.finish(&mut none);
        assert!(none.is_empty());
        hand_over(&mut pairing, &mut flows, &mut out_split);
        flows.finish(&mut out_split);
        check(&one, &pairing, &flows, &out_one, &out_split, "at the end")?;
        one.check_wheel();
        flows.check_wheel();
        Ok(())
    }

    #[test]
    fn split_correlator_agrees_on_connections_and_idle_flows() {
        let mut ev = tcp_conn(
            10 * S,
            "100.64.0.1:40000",
            "203.0.113.1:40000",
            "198.51.100.1:443",
            1,
            false,
        );
        ev.extend(tcp_conn(
            12 * S,
            "100.64.0.2:40000",
            "203.0.113.1:40001",
            "198.51.100.1:443",
            100,
            true,
        ));
        // A UDP flow that idles out while other packets move the clock.
        ev.push((
            13 * S,
            Side::Inside,
            pkt(Proto::Udp, "100.64.0.3:5000", "198.51.100.2:53", 7, 0, 0),
        ));
        ev.push((
            13 * S + MS,
            Side::Outside,
            pkt(Proto::Udp, "203.0.113.1:5000", "198.51.100.2:53", 7, 0, 0),
        ));
        ev.extend(tcp_conn(
            60 * S,
            "100.64.0.4:40000",
            "203.0.113.1:40002",
            "198.51.100.1:443",
            200,
            false,
        ));
        ev.extend(tcp_conn(
            400 * S,
            "100.64.0.1:40000",
            "203.0.113.1:40000",
            "198.51.100.1:443",
            300,
            false,
        ));
        let (want, _) = run(&ev);
        assert!(want.iter().any(|m| m.end == EndReason::Idle), "{want:?}");
        for batch in [1, 2, 3, 7, 1000] {
            split_agrees(&CorrelatorConfig::default(), &ev, batch, 0, 0).unwrap();
            split_agrees(&CorrelatorConfig::default(), &ev, batch, 5, 20 * S).unwrap();
        }
    }

    /// A pairing part's observation carries the high half of the flow key
    /// hash the inside copy's preparer carried, whichever copy paired
    /// second (the inside copy's own, or, since round 16, the waiting
    /// inside copy's that the outside copy took, `PairKey::flow_hi`), so
    /// the flow part hashes no key for it; an IPv6 flow carries none (0).
    /// The flow part's
    /// lookups find the flow each pair continues (one flow each, not two):
    /// the IPv4 one with the carried half or the hash its prefetch kept,
    /// the IPv6 one hashed at the lookup (a kept hash for it, or the IPv4
    /// shortcut, fails).
    #[test]
    fn split_events_carry_the_inside_copys_flow_hash() {
        let cfg = CorrelatorConfig::default();
        let mut pairing = Correlator::try_new_pairing(cfg.clone()).unwrap();
        let mut none = Vec::new();
        let out_pkt = |src, dst, id| pkt(Proto::Udp, src, dst, id, 0, 0);
        let (sub, public, remote) = ("100.64.0.1:5000", "203.0.113.1:5000", "198.51.100.2:53");
        // Outside copy first: the inside copy pairs it (carried).
        pairing.push(
            10 * S,
            Side::Outside,
            &out_pkt(public, remote, 1),
            &mut none,
        );
        pairing.push(
            10 * S + MS,
            Side::Inside,
            &out_pkt(sub, remote, 1),
            &mut none,
        );
        // Inside copy first: the outside copy pairs it (carried from the
        // inside copy's waiting entry).
        pairing.push(11 * S, Side::Inside, &out_pkt(sub, remote, 2), &mut none);
        pairing.push(
            11 * S + MS,
            Side::Outside,
            &out_pkt(public, remote, 2),
            &mut none,
        );
        // IPv6: the preparer carries no hash.
        let (sub6, remote6) = ("[fd00::1]:5000", "[2001:db8::5]:53");
        pairing.push(
            12 * S,
            Side::Outside,
            &out_pkt("[2001:db8::1]:5000", remote6, 3),
            &mut none,
        );
        pairing.push(
            12 * S + MS,
            Side::Inside,
            &out_pkt(sub6, remote6, 3),
            &mut none,
        );
        let public6 = "[2001:db8::1]:5000";
        pairing.push(13 * S, Side::Inside, &out_pkt(sub6, remote6, 4), &mut none);
        pairing.push(
            13 * S + MS,
            Side::Outside,
            &out_pkt(public6, remote6, 4),
            &mut none,
        );
        let mut events = Vec::new();
        pairing.take_events(&mut events);
        let his: Vec<u32> = events
            .iter()
            .filter_map(|e| match &e.0 {
                Ev::Observe(o) => Some(o.flow_hi),
                Ev::Scan(_) => None,
            })
            .collect();
        let key = FlowKey {
            internal: u32::from(Ipv4Addr::new(100, 64, 0, 1)),
            remote: u32::from(Ipv4Addr::new(198, 51, 100, 2)),
            internal_port: 5000,
            remote_port: 53,
            proto: Proto::Udp,
            fam: 0,
        };
        let want = (Correlator::key_hash(&key) >> 32) as u32;
        assert_ne!(want, 0);
        assert_eq!(his, [want, want, 0, 0]);
        let mut flows = Correlator::try_new_flows(cfg).unwrap();
        let mut out = Vec::new();
        flows.apply_events(&events, &mut out);
        assert_eq!(flows.stats().mappings_opened, 2, "{out:?}");
        assert_eq!(flows.flows_active, 2);
    }

    #[test]
    fn a_pairing_part_holds_no_flow_table() {
        // The split correlator reserves the flow slab's address space once
        // (under `ulimit -v` a default replay needs no more than one thread's).
        let cfg = CorrelatorConfig {
            flows_active_max: FLOWS_ACTIVE_MAX_LIMIT,
            ..CorrelatorConfig::default()
        };
        let p = Correlator::try_new_pairing(cfg.clone()).unwrap();
        let m = p.memory();
        assert_eq!((m.expiry, m.flow_slab, m.mapped), (0, 0, 0));
        assert_eq!(m.flow_index, 2 * std::mem::size_of::<Link>());
        assert_eq!(p.flows.capacity(), 1);
        let f = Correlator::try_new_flows(cfg).unwrap();
        assert_eq!(f.flows.capacity(), FLOWS_ACTIVE_MAX_LIMIT);
        assert_eq!(f.memory().pending, 0);
    }

    /// `apply_events` keeps its hints' hashes in runs of `EVENT_RUN`
    /// events (the lookups' carried hashes among them): batches of several
    /// runs and a part of one, IPv4 and mixed with IPv6, with and without
    /// the clock's own moves, give one correlator's mappings and counters.
    #[test]
    fn split_correlator_agrees_with_one_in_batches_of_several_runs() {
        let cfg = CorrelatorConfig {
            refresh_interval_ns: 2 * S,
            ..CorrelatorConfig::default()
        };
        for seed in 1..=6u64 {
            for packets in [
                random_packets(seed, 1_500),
                random_packets_mixed(seed, 1_500),
            ] {
                for batch in [4 * EVENT_RUN + 37, 700, 1_500] {
                    split_agrees(&cfg, &packets, batch, 0, 0).unwrap();
                    split_agrees(&cfg, &packets, batch, 9, 20 * S).unwrap();
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
        /// The correlator split in two (pairing, then the flow table fed by
        /// its events in batches) gives one correlator's mappings, in the
        /// same order, and its counters, whatever the bounds, the batch size
        /// and the clock's own moves (idle scans between observations).
        #[test]
        fn split_correlator_agrees_with_one(
            seed in proptest::prelude::any::<u64>(),
            pending_max in 1usize..24,
            flows_active_max in 1usize..8,
            batch in 1usize..80,
            tick_every in 0usize..20,
            jump_ms in 0i64..30_000,
            scan_ms in 1i64..3_000,
        ) {
            let cfg = CorrelatorConfig {
                pending_max,
                flows_active_max,
                refresh_interval_ns: 2 * S,
                expiry_scan_interval_ns: scan_ms * MS,
                ..CorrelatorConfig::default()
            };
            let packets = random_packets(seed, 600);
            if let Err(e) = split_agrees(&cfg, &packets, batch, tick_every, jump_ms * MS) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
    }

    /// [`random_packets`] with some flows' addresses IPv6: by the remote
    /// (`198.51.100.1` and `.3`) so both copies of a pair agree. Remote 1:
    /// every address IPv6 (a subscriber `fd00::n`, a public
    /// `2001:db8::…`, the remote `2001:db8:1::1`); remote 3 (one in
    /// three flows of remote 2 moved there): only the outside copy's
    /// public address IPv6, the remote as `::ffff:198.51.100.3` (so the
    /// pair's internal and remote ends are IPv4, with the inside copy's
    /// flow hash carried, and its public end IPv6: a wide event with a
    /// carried hash).
    fn random_packets_mixed(seed: u64, n: usize) -> Vec<(i64, Side, Decoded)> {
        let v6 = |a: IpAddr, prefix: u128| match a {
            IpAddr::V4(v4) => IpAddr::V6(Ipv6Addr::from_bits(prefix | u128::from(v4.to_bits()))),
            a => a,
        };
        let fd00 = 0xfd00u128 << 112;
        let db8 = 0x2001_0db8u128 << 96;
        let mapped = 0xffffu128 << 32;
        random_packets(seed, n)
            .into_iter()
            .map(|(t, side, mut d)| {
                let remote_of = |a: &IpAddr| match a {
                    IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100] => Some(v4.octets()[3]),
                    _ => None,
                };
                let remote = remote_of(&d.src).or(remote_of(&d.dst));
                let sub = |a: &IpAddr| matches!(a, IpAddr::V4(v4) if v4.octets()[0] == 100);
                let moved = remote == Some(2) && d.ip_id % 3 == 0;
                for a in [&mut d.src, &mut d.dst] {
                    if remote == Some(1) {
                        *a = if remote_of(a).is_some() {
                            v6(*a, db8 | 1 << 64)
                        } else if sub(a) {
                            v6(*a, fd00)
                        } else {
                            v6(*a, db8)
                        };
                    } else if moved && side != Side::Inside && side != Side::Unknown {
                        *a = if remote_of(a).is_some() {
                            let IpAddr::V4(v4) = *a else { unreachable!() };
                            v6(Ipv4Addr::from_bits(v4.to_bits() + 1).into(), mapped)
                        } else {
                            v6(*a, db8)
                        };
                    } else if moved && remote_of(a).is_some() {
                        let IpAddr::V4(v4) = *a else { unreachable!() };
                        *a = Ipv4Addr::from_bits(v4.to_bits() + 1).into();
                    }
                }
                (t, side, d)
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// [`split_correlator_agrees_with_one`] with IPv6 flows and flows
        /// with one IPv6 end ([`random_packets_mixed`]): their events (the
        /// IPv6 prefetch, carried hashes of flows with an IPv6 public end,
        /// whatever batch boundary, the tail loop) fold as one correlator
        /// folds the pairs; pair windows of 1 to 9 s.
        #[test]
        fn split_correlator_agrees_with_one_on_ipv6(
            seed in proptest::prelude::any::<u64>(),
            pending_max in 1usize..24,
            flows_active_max in 1usize..8,
            batch in 1usize..80,
            tick_every in 0usize..20,
            window_s in 1i64..10,
        ) {
            let cfg = CorrelatorConfig {
                pending_max,
                flows_active_max,
                pair_window_ns: window_s * S,
                refresh_interval_ns: 2 * S,
                ..CorrelatorConfig::default()
            };
            let packets = random_packets_mixed(seed, 600);
            if let Err(e) = split_agrees(&cfg, &packets, batch, tick_every, 3 * S) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
    }

    /// The pairs [`split_correlator_agrees_with_one_on_ipv6`] relies on:
    /// its packets make observations of an IPv6 flow, of a flow with an
    /// IPv6 public end and a carried hash (from the inside copy, and from
    /// the waiting inside copy the outside one took), and IPv4 ones.
    #[test]
    fn mixed_packets_make_every_kind_of_pair() {
        let cfg = CorrelatorConfig {
            pair_window_ns: 9 * S,
            ..CorrelatorConfig::default()
        };
        let (mut v6, mut v6_public_carried, mut v4) = (0, 0, 0);
        for seed in 1..40u64 {
            let mut pairing = Correlator::try_new_pairing(cfg.clone()).unwrap();
            let mut none = Vec::new();
            for (t, side, d) in random_packets_mixed(seed, 600) {
                pairing.push(t, side, &d, &mut none);
            }
            let mut events = Vec::new();
            pairing.take_events(&mut events);
            for e in &events {
                let Ev::Observe(o) = &e.0 else { continue };
                if o.internal.v4().is_none() {
                    assert_eq!(o.flow_hi, 0);
                    v6 += 1;
                } else if o.public.v4().is_none() {
                    v6_public_carried += usize::from(o.flow_hi != 0);
                } else {
                    v4 += 1;
                }
            }
        }
        assert!(
            v6 > 0 && v6_public_carried > 0 && v4 > 0,
            "{v6} {v6_public_carried} {v4}"
        );
    }

    proptest::proptest! {
        /// `touch_flow_times` (one read and write of the time word) agrees
        /// with `flow_times` then `set_flow_times`, for pairs before the
        /// first packet, inside the 47-bit span, past it, and refreshes.
        #[test]
        fn touch_flow_times_agrees_with_get_then_set(
            refresh_s in 0i64..4,
            steps in proptest::collection::vec((0u8..4, 0i64..1 << 20), 1..40),
        ) {
            let cfg = CorrelatorConfig {
                refresh_interval_ns: refresh_s * S,
                ..CorrelatorConfig::default()
            };
            let (mut a, mut b) = (Correlator::new(cfg.clone()), Correlator::new(cfg));
            let first = 1_700_000_000 * S;
            let m = Mapping {
                proto: Proto::Tcp,
                internal: "100.64.0.1:1000".parse().unwrap(),
                public: "203.0.113.1:1000".parse().unwrap(),
                remote: "198.51.100.1:80".parse().unwrap(),
                first_ns: first,
                last_ns: first,
                end: EndReason::Open,
                packets_out: 1,
                packets_in: 0,
                flags: 0,
            };
            let (sa, sb) = (a.insert_flow(&m, 0, first), b.insert_flow(&m, 0, first));
            let mut t = first;
            for (kind, x) in steps {
                let ts = match kind {
                    0 => t + x * MS,                              // later, narrow
                    1 => first - x,                               // before the first packet
                    2 => first + FLOW_SPAN_MAX_NS as i64 + x - (1 << 19), // about the span's end
                    _ => t - x,                                   // a little older
                };
                t = t.max(ts);
                let got = a.touch_flow_times(sa, ts);
                let refresh = b.cfg.refresh_interval_ns;
                let (last_ns, written_ns) = b.flow_times(sb);
                let last_ns = last_ns.max(ts);
                let refreshed = refresh > 0 && ts.saturating_sub(written_ns) >= refresh;
                let written_ns = if refreshed { ts } else { written_ns };
                b.set_flow_times(sb, last_ns, written_ns);
                proptest::prop_assert_eq!(got, (last_ns, refreshed));
                proptest::prop_assert_eq!(a.flow_times(sa), b.flow_times(sb));
                proptest::prop_assert_eq!(a.flow(sa).word, b.flow(sb).word);
            }
        }
    }

    /// The pair window holds for a copy that arrives after a younger one
    /// (timestamps out of order): it leaves at the first advance past its
    /// own window, whatever became of the copies that arrived before it.
    #[test]
    fn pair_window_holds_for_copies_arriving_out_of_timestamp_order() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        let a_in = pkt(Proto::Udp, "100.64.0.1:5000", "198.51.100.1:53", 1, 0, 0);
        let a_out = pkt(Proto::Udp, "203.0.113.1:5000", "198.51.100.1:53", 1, 0, 0);
        let b_in = pkt(Proto::Udp, "100.64.0.2:5000", "198.51.100.1:53", 2, 0, 0);
        let b_out = pkt(Proto::Udp, "203.0.113.2:5000", "198.51.100.1:53", 2, 0, 0);
        c.push(10 * S, Side::Inside, &a_in, &mut out);
        // B's inside copy arrives after A's with an older timestamp.
        c.push(9 * S + 500 * MS, Side::Inside, &b_in, &mut out);
        c.push(10 * S + MS, Side::Outside, &a_out, &mut out);
        assert_eq!(c.stats().paired_copies, 2);
        // 11.6 s: B's window (2 s from 9.5 s) is over; A paired long ago.
        c.advance(11 * S + 600 * MS, &mut out);
        assert_eq!(c.stats().unmatched_inside, 1);
        c.push(11 * S + 700 * MS, Side::Outside, &b_out, &mut out);
        let s = c.stats();
        // B's outside copy waits (under both directions: it is ambiguous).
        assert_eq!((s.paired_copies, s.unmatched_inside, s.pending), (2, 1, 2));
    }

    impl Correlator {
        /// The flow index's invariant, walked: every active flow is on
        /// exactly one chain, the chain of its key's head, and nothing else.
        fn check_index(&self) {
            let mut seen = vec![false; self.flows.len()];
            let mut n = 0;
            for (h, head) in self.index_heads.iter() {
                let mut s = head;
                while s != LINK_NONE {
                    let f = self.flow(s);
                    assert!(f.live(), "free slot {s} indexed");
                    assert_eq!(self.index_head(&f.key()), h, "slot {s} on another chain");
                    assert!(!seen[s as usize], "slot {s} indexed twice");
                    seen[s as usize] = true;
                    n += 1;
                    s = f.link(LINK_INDEX_NEXT);
                }
            }
            assert_eq!(n, self.flows_active, "active flows not indexed once each");
            assert!(!index_over(self.flows_active, self.index_heads.bits()));
        }
    }

    /// The flow index through growth (1 024 heads doubled to 4 096) and
    /// removals from the front, middle and end of chains: every active flow
    /// is found, removed ones are not, and the chains stay exact.
    #[test]
    fn flow_index_chains_through_growth_and_removals() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        let n = 5_000u32;
        let ep = |i: u32| {
            (
                format!("100.64.{}.{}:{}", i / 250, i % 250, 1000 + i % 7),
                format!("203.0.113.{}:{}", 1 + i % 16, 2000 + i),
            )
        };
        for i in 0..n {
            let (inside, outside) = ep(i);
            let t = S + i64::from(i) * 1_000;
            c.push(
                t,
                Side::Inside,
                &pkt(Proto::Udp, &inside, "198.51.100.7:53", i, 0, 0),
                &mut out,
            );
            c.push(
                t,
                Side::Outside,
                &pkt(Proto::Udp, &outside, "198.51.100.7:53", i, 0, 0),
                &mut out,
            );
        }
        assert_eq!(c.stats().flows_active, u64::from(n));
        assert_eq!(c.index_heads.len(), 4096);
        c.check_index();
        let remote: SocketAddr = "198.51.100.7:53".parse().unwrap();
        let find = |c: &Correlator, i: u32| {
            let internal: SocketAddr = ep(i).0.parse().unwrap();
            c.find_flow(
                Proto::Udp,
                &Ep::of(internal.ip(), internal.port()),
                &Ep::of(remote.ip(), remote.port()),
                0,
            )
            .map(SlotNo::number)
        };
        // Remove every third flow (a replace: a new public endpoint closes it).
        let mut removed = Vec::new();
        for i in (0..n).step_by(3) {
            let slot = find(&c, i).expect("indexed");
            c.remove_flow(slot);
            removed.push(i);
        }
        c.check_index();
        for i in 0..n {
            assert_eq!(find(&c, i).is_some(), i % 3 != 0, "flow {i}");
        }
        assert_eq!(c.stats().flows_active, u64::from(n) - removed.len() as u64);
        let _ = out;
    }

    /// Flow `k` of the index model below: few remotes and ports (so keys
    /// share heads and chains grow past one slot), one in eight with an
    /// IPv6 internal end (found by name, never by a carried hash), two
    /// protocols.
    fn model_flow(k: u16) -> (Proto, SocketAddr, SocketAddr) {
        let proto = if k & 1 == 0 { Proto::Udp } else { Proto::Tcp };
        let internal: IpAddr = if k % 8 == 5 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, k))
        } else {
            IpAddr::V4(Ipv4Addr::new(100, 64, (k >> 8) as u8, k as u8))
        };
        let remote = IpAddr::V4(Ipv4Addr::new(198, 51, 100, (k % 5) as u8));
        (
            proto,
            SocketAddr::new(internal, 1000 + k % 3),
            SocketAddr::new(remote, 53),
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
        /// The flow index against a `HashMap` model: opens (`insert_flow`,
        /// the heads doubling from 1 024 to 2 048 and 4 096 on the way up),
        /// removals (`remove_flow`, from any chain position) and lookups
        /// (`find_flow`, for an IPv4 flow both with the key's hash carried
        /// and without) in any order: a key is found, in the slot its open
        /// returned, exactly while the model holds it, and the chains stay
        /// exact (`check_index`) at the end.
        #[test]
        fn flow_index_matches_a_hashmap_model(
            ops in proptest::collection::vec((0u8..8, 0u16..6000), 1..9000),
        ) {
            let mut c = Correlator::new(CorrelatorConfig::default());
            let mut model: HashMap<u16, u32> = HashMap::new();
            let mut grew = c.index_heads.bits();
            let find = |c: &Correlator, k: u16| {
                let (proto, internal, remote) = model_flow(k);
                let (i, r) = (Ep::of(internal.ip(), internal.port()), Ep::of(remote.ip(), remote.port()));
                let plain = c.find_flow(proto, &i, &r, 0);
                if let Some((a, b)) = Ep::both_v4(&i, &r) {
                    let key = FlowKey {
                        internal: a,
                        remote: b,
                        internal_port: internal.port(),
                        remote_port: remote.port(),
                        proto,
                        fam: 0,
                    };
                    // The whole hash (a pair) and its high half (an event).
                    let h = Correlator::key_hash(&key);
                    assert_eq!(c.find_flow(proto, &i, &r, h), plain);
                    assert_eq!(c.find_flow(proto, &i, &r, h >> 32 << 32), plain);
                }
                plain.map(SlotNo::number)
            };
            // 2 000 opens first: past 1.6 flows a head of 1 024 heads.
            let fill = (0..2000u16).map(|k| (0u8, k * 3));
            for (op, k) in fill.chain(ops) {
                match op {
                    // Open when absent (most ops: the table grows).
                    0..=4 => {
                        if model.contains_key(&k) {
                            continue;
                        }
                        let (proto, internal, remote) = model_flow(k);
                        let m = Mapping {
                            proto,
                            internal,
                            public: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), k),
                            remote,
                            first_ns: S,
                            last_ns: S,
                            end: EndReason::Open,
                            packets_out: 1,
                            packets_in: 1,
                            flags: 0,
                        };
                        let slot = c.insert_flow(&m, 0, S);
                        model.insert(k, slot);
                        grew = grew.max(c.index_heads.bits());
                    }
                    5 | 6 => {
                        if let Some(slot) = model.remove(&k) {
                            proptest::prop_assert_eq!(find(&c, k), Some(slot));
                            let (m, _) = c.remove_flow(slot);
                            proptest::prop_assert_eq!(m.internal, model_flow(k).1);
                        }
                    }
                    _ => {}
                }
                proptest::prop_assert_eq!(find(&c, k), model.get(&k).copied(), "key {}", k);
            }
            for k in 0..6000 {
                proptest::prop_assert_eq!(find(&c, k), model.get(&k).copied(), "key {}", k);
            }
            proptest::prop_assert_eq!(c.flows_active, model.len());
            c.check_index();
            proptest::prop_assert!(grew > INDEX_BITS_MIN, "the heads doubled");
        }
    }

    /// `flows_active_max` above what 24-bit slot links can name is refused.
    #[test]
    #[should_panic(expected = "FLOWS_ACTIVE_MAX_LIMIT")]
    fn flows_active_max_over_the_limit_is_refused() {
        Correlator::new(CorrelatorConfig {
            flows_active_max: FLOWS_ACTIVE_MAX_LIMIT + 1,
            ..CorrelatorConfig::default()
        });
    }

    /// The subscriber test as it was, on `canonical` addresses and a scan of
    /// every prefix: the model the first-octet table must agree with.
    fn is_subscriber_model(prefixes: &[IpNet], ip: IpAddr) -> bool {
        let ip = canonical(ip);
        prefixes.iter().any(|p| p.contains(&ip))
    }

    fn arb_ip() -> impl proptest::strategy::Strategy<Value = IpAddr> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from_bits(a))),
            // IPv4-mapped IPv6: the same address as the IPv4 one.
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from_bits(a)).to_canonical()),
            any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from_bits(a).to_ipv6_mapped())),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from_bits(a))),
            // Near the default prefixes' edges.
            (
                prop::sample::select(vec![10u32, 100, 172, 192, 0, 255]),
                any::<u32>()
            )
                .prop_map(|(o, a)| IpAddr::V4(Ipv4Addr::from_bits(o << 24 | a >> 8))),
            (
                prop::sample::select(vec![0xfcu128, 0xfd, 0xfe, 0]),
                any::<u128>()
            )
                .prop_map(|(o, a)| IpAddr::V6(Ipv6Addr::from_bits(o << 120 | a >> 8))),
        ]
    }

    fn arb_prefix() -> impl proptest::strategy::Strategy<Value = IpNet> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, l)| {
                IpNet::new(IpAddr::V4(Ipv4Addr::from_bits(a)), l)
                    .unwrap()
                    .trunc()
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(a, l)| {
                IpNet::new(IpAddr::V6(Ipv6Addr::from_bits(a)), l)
                    .unwrap()
                    .trunc()
            }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// `Ep` is `canonical`'s address: built from either form of an
        /// IPv4(-mapped) address it is one value, and comes back as the
        /// canonical `SocketAddr`.
        #[test]
        fn ep_is_the_canonical_endpoint(ip in arb_ip(), port in proptest::prelude::any::<u16>()) {
            let ep = Ep::of(ip, port);
            proptest::prop_assert_eq!(ep, Ep::of(canonical(ip), port));
            proptest::prop_assert_eq!(ep.socket(), SocketAddr::new(canonical(ip), port));
            proptest::prop_assert_eq!(ep.v4().is_some(), canonical(ip).is_ipv4());
        }

        /// `open_flow` stores a pair's endpoints straight from its `Ep`s
        /// and builds the written `Mapping` from the slot: the mapping is
        /// the one of the endpoints' canonical `SocketAddr`s (an IPv4-mapped
        /// address as IPv4, an IPv6 one named in the table), one packet in
        /// its direction, `FLAG_MIDFLOW` for a TCP pair without SYN, end
        /// `Open`; the flow is found by its key, reads back as the same
        /// mapping, and sits in the index and the wheel by its deadline.
        #[test]
        fn open_flow_maps_the_pairs_endpoints(
            opens in proptest::collection::vec(
                (arb_ip(), arb_ip(), arb_ip(), proptest::prelude::any::<(u16, u16, u16)>(),
                 0usize..4, proptest::prelude::any::<bool>(), proptest::prelude::any::<u8>()),
                1..12,
            ),
        ) {
            let mut c = Correlator::new(CorrelatorConfig::default());
            let t0 = 1_700_000_000 * NANOS_PER_SEC;
            for (n, (ii, pi, ri, (ip, pp, rp), proto, out_dir, flags)) in opens.into_iter().enumerate() {
                // A new key each open: the internal port's high byte is `n`.
                let ip = (n as u16) << 8 | (ip & 0xff);
                let (proto, dir) = (PROTOS[proto], if out_dir { Dir::Out } else { Dir::In });
                let (i, p, r) = (Ep::of(ii, ip), Ep::of(pi, pp), Ep::of(ri, rp));
                let ts = t0 + n as i64 * 1_000_000;
                let mut out = Vec::new();
                c.now_ns = ts; // as a push sets the clock first
                c.open_flow(ts, dir, proto, &i, &p, &r, flags, 0, &mut out);
                let want = Mapping {
                    proto,
                    internal: SocketAddr::new(canonical(ii), ip),
                    public: SocketAddr::new(canonical(pi), pp),
                    remote: SocketAddr::new(canonical(ri), rp),
                    first_ns: ts,
                    last_ns: ts,
                    end: EndReason::Open,
                    packets_out: u32::from(out_dir),
                    packets_in: u32::from(!out_dir),
                    flags: if proto == Proto::Tcp && flags & TcpInfo::SYN == 0 {
                        FLAG_MIDFLOW
                    } else {
                        0
                    },
                };
                proptest::prop_assert_eq!(&out, &vec![want]);
                let slot = c.find_flow(proto, &i, &r, 0).map(|s| s.number());
                proptest::prop_assert!(slot.is_some(), "the opened flow is found by its key");
                let slot = slot.unwrap();
                proptest::prop_assert_eq!(c.mapping(slot), want);
                proptest::prop_assert_eq!(c.flow_times(slot), (ts, ts));
                proptest::prop_assert_eq!(c.flows_active, n + 1);
            }
            c.check_index();
            c.check_wheel();
        }

        /// The /16 bit table decides exactly as scanning every prefix,
        /// for the default prefixes and for random sets (short and long
        /// prefixes, both families).
        #[test]
        fn subscriber_test_agrees_with_scanning_the_prefixes(
            extra in proptest::collection::vec(arb_prefix(), 0..6),
            ips in proptest::collection::vec(arb_ip(), 1..32),
            tails in proptest::collection::vec(proptest::prelude::any::<u128>(), 6),
        ) {
            // Addresses inside each extra prefix, and the neighbour across its
            // last network bit (inside a shorter prefix, outside this one).
            let mut ips = ips;
            for (p, t) in extra.iter().zip(&tails) {
                let (net, host, len) = match p {
                    IpNet::V4(n) => (u128::from(u32::from(n.network())), u128::from(u32::from(n.hostmask())), 32 - u32::from(n.prefix_len())),
                    IpNet::V6(n) => (u128::from(n.network()), u128::from(n.hostmask()), 128 - u32::from(n.prefix_len())),
                };
                for a in [net | (t & host), (net | (t & host)) ^ 1u128.checked_shl(len).unwrap_or(0)] {
                    ips.push(match p {
                        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(a as u32)),
                        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(a)),
                    });
                }
            }
            for prefixes in [default_subscriber_prefixes(), extra.clone(), {
                let mut all = default_subscriber_prefixes();
                all.extend(extra.iter().copied());
                all
            }] {
                let p = Preparer::new(&CorrelatorConfig {
                    subscriber_prefixes: prefixes.clone(),
                    ..CorrelatorConfig::default()
                });
                for &ip in &ips {
                    proptest::prop_assert_eq!(
                        p.is_subscriber(&Ep::of(ip, 0)),
                        is_subscriber_model(&prefixes, ip),
                        "{} in {:?}", ip, prefixes
                    );
                }
            }
        }
    }

    /// A stray flow hash where the preparer sets none (a packet with no
    /// subscriber end, or two): a pair hash of the packet's out key (what
    /// `Prepared` held there before round 12). Kept where it set one (an
    /// inside copy's flow key hash, read by `find_flow` since round 14).
    fn with_stray_hash(mut p: Prepared) -> Prepared {
        if p.src_sub() == p.dst_sub() {
            p.flow_hash = pair_hash(&PairKey {
                dir: Dir::Out,
                proto: p.proto,
                remote: p.dst,
                invariants: p.invariants,
                flow_hi: 0,
            }) | 1;
        }
        p
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// The correlator reads `Prepared::flow_hash` only of a packet
        /// with one subscriber end (but as a hint): the same packets with a
        /// stray hash where the preparer sets none give the same mappings
        /// and counters, on any sides, subscriber or not, paired or not.
        /// (Until round 19 `left_out_pair_hashes_are_never_used`, of the
        /// two fields `hash_out` and `hash_in`.)
        #[test]
        fn stray_flow_hashes_are_never_used(
            events in proptest::collection::vec(
                (0i64..3_000, 0u8..3, 0usize..6, 0usize..6, 0u32..4, 0u8..3),
                1..300,
            ),
        ) {
            const ADDRS: [&str; 6] = [
                "10.0.0.1:1000", "100.64.0.2:2000", "203.0.113.1:1000",
                "203.0.113.1:40000", "198.51.100.7:443", "[fd00::1]:53",
            ];
            let preparer = Preparer::new(&CorrelatorConfig::default());
            let mut a = Correlator::new(CorrelatorConfig::default());
            let mut b = Correlator::new(CorrelatorConfig::default());
            let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
            let mut ts = 0;
            for (dt, side, src, dst, id, proto) in events {
                ts += dt * MS;
                let side = [Side::Inside, Side::Outside, Side::Unknown][usize::from(side)];
                let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp][usize::from(proto)];
                let (src, dst) = (ADDRS[src], ADDRS[dst]);
                if src.starts_with('[') != dst.starts_with('[') {
                    continue;
                }
                let p = preparer.prepare(&pkt(proto, src, dst, id, ACK, id));
                a.push_prepared(ts, side, &p, &mut out_a);
                b.push_prepared(ts, side, &with_stray_hash(p), &mut out_b);
            }
            a.finish(&mut out_a);
            b.finish(&mut out_b);
            proptest::prop_assert_eq!(out_a, out_b);
            proptest::prop_assert_eq!(format!("{:?}", a.stats()), format!("{:?}", b.stats()));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Where pair keys land in the pending table changes no output: the
        /// same packets with degenerate pair hashes (four values, every key
        /// on one probe run, tags matching other keys) give the same
        /// mappings, in the same order, and the same counters, with the
        /// pending bounds (`pending_max`, `pending_per_key_max`) reached or
        /// not. So a cheaper pair hash keeps every stored byte.
        #[test]
        fn pending_table_positions_change_no_output(
            events in proptest::collection::vec(
                (0i64..1_500, 0u8..3, 0usize..8, 0usize..8, 0u32..4, 0u8..3),
                1..300,
            ),
            pending_max in proptest::sample::select(vec![3usize, 16, 1 << 20]),
            pending_per_key_max in 1usize..4,
        ) {
            const ADDRS: [&str; 8] = [
                "10.0.0.1:1000", "100.64.0.2:2000", "203.0.113.1:1000",
                "203.0.113.1:40000", "198.51.100.7:443", "198.51.100.8:443",
                "[fd00::1]:53", "[2001:db8::5]:53",
            ];
            let cfg = CorrelatorConfig {
                pending_max,
                pending_per_key_max,
                ..CorrelatorConfig::default()
            };
            let preparer = Preparer::new(&cfg);
            let replay = |bad: bool| {
                degenerate::on(bad);
                let mut c = Correlator::new(cfg.clone());
                let mut out = Vec::new();
                let mut ts = 0;
                for &(dt, side, src, dst, id, proto) in &events {
                    ts += dt * MS;
                    let side = [Side::Inside, Side::Outside, Side::Unknown][usize::from(side)];
                    let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp][usize::from(proto)];
                    let (src, dst) = (ADDRS[src], ADDRS[dst]);
                    if src.starts_with('[') != dst.starts_with('[') {
                        continue;
                    }
                    let p = preparer.prepare(&pkt(proto, src, dst, id, ACK, id));
                    c.push_prepared(ts, side, &p, &mut out);
                }
                c.finish(&mut out);
                degenerate::on(false);
                (out, format!("{:?}", c.stats()))
            };
            let (good, bad) = (replay(false), replay(true));
            proptest::prop_assert_eq!(good, bad);
        }
    }

    /// The invariants hash changes with every field it covers (each one
    /// alone, TCP present or not), and 1 000 000 packets of one flow differing
    /// in sequence numbers, IP id or payload never collide.
    #[test]
    fn invariants_hash_covers_every_field_and_does_not_collide() {
        let base = pkt(Proto::Tcp, "10.0.0.1:1000", "198.51.100.1:80", 7, ACK, 1000);
        let mut variants = vec![base];
        let mut v = base;
        v.ip_id ^= 1;
        variants.push(v);
        let mut v = base;
        v.ip_total_len ^= 1;
        variants.push(v);
        for f in [
            |t: &mut TcpInfo| t.seq ^= 1,
            |t: &mut TcpInfo| t.ack ^= 1,
            |t: &mut TcpInfo| t.flags ^= 1,
        ] {
            let mut v = base;
            f(v.tcp.as_mut().unwrap());
            variants.push(v);
        }
        let mut v = base;
        v.tcp = Some(TcpInfo {
            seq: 0,
            ack: 0,
            flags: 0,
        });
        variants.push(v);
        v.tcp = None;
        variants.push(v);
        let mut v = base;
        v.icmp_seq ^= 1;
        variants.push(v);
        let mut v = base;
        v.payload_len ^= 1;
        variants.push(v);
        let mut v = base;
        v.payload_fp_bytes ^= 1;
        variants.push(v);
        let mut v = base;
        v.payload_fp ^= 1;
        variants.push(v);
        let hashes: std::collections::HashSet<u64> = variants.iter().map(invariants).collect();
        assert_eq!(hashes.len(), variants.len());

        let mut seen = std::collections::HashSet::new();
        for i in 0..1_000_000u32 {
            let mut v = base;
            let t = v.tcp.as_mut().unwrap();
            t.seq = t.seq.wrapping_add(i.wrapping_mul(1448));
            t.ack = i / 3;
            v.ip_id = i & 0xffff;
            v.payload_fp = u64::from(i % 7);
            v.payload_len = i % 1449;
            assert!(seen.insert(invariants(&v)), "collision at {i}");
        }
    }
}
