//! `natrec replay`: capture files → decode → correlate → store.
//!
//! Several files are merged by timestamp (the k-way merge takes the earliest
//! head each time), so `--inside A --outside B` and a directory of rotated
//! captures replay as one stream. Each packet's side comes from the file it
//! is in (`--inside`/`--outside`), else from the interface or VLAN the capture
//! names (`--inside-interface`, `--inside-vlan`, ...), else the correlator's
//! subscriber prefixes decide.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use natrec_capture::correlate::{
    Correlator, CorrelatorConfig, CorrelatorStats, FlowEvent, Prepared, Preparer, Side,
};
use natrec_capture::decode::{linktype_supported, LinkInfo, Skip};
use natrec_capture::source::{CaptureFile, Packets, RawPacket};
use natrec_storage::{EndReason, Mapping, Writer, WriterStats};

/// How often (in packets) the writer's clock and the progress bar move.
const PACKETS_PER_TICK: u64 = 4096;

/// An interface named on the command line: by name (pcapng `if_name`) or by
/// number (Linux SLL2 interface index, or pcapng interface id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfaceSel {
    /// `if_name` in a pcapng file.
    Name(String),
    /// SLL2 ifindex or pcapng interface id.
    Index(u32),
}

impl std::str::FromStr for IfaceSel {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.parse::<u32>()
            .map(IfaceSel::Index)
            .unwrap_or_else(|_| IfaceSel::Name(s.to_string())))
    }
}

/// Which packets are inside and which outside, when the capture can say.
#[derive(Clone, Debug, Default)]
pub struct SideRules {
    /// Interfaces facing subscribers.
    pub inside_interfaces: Vec<IfaceSel>,
    /// Interfaces facing the Internet.
    pub outside_interfaces: Vec<IfaceSel>,
    /// VLANs (innermost tag) facing subscribers.
    pub inside_vlans: Vec<u16>,
    /// VLANs (innermost tag) facing the Internet.
    pub outside_vlans: Vec<u16>,
}

impl SideRules {
    fn iface_matches(sel: &[IfaceSel], pkt: &RawPacket<'_>, link: &LinkInfo) -> bool {
        sel.iter().any(|s| match s {
            IfaceSel::Name(n) => pkt.interface_name == Some(n.as_str()),
            IfaceSel::Index(i) => link
                .ifindex()
                .map_or(pkt.interface == *i && pkt.interface_name.is_some(), |x| {
                    x == *i
                }),
        })
    }

    /// The side of one packet.
    #[inline(always)]
    pub fn side(&self, file_side: Side, pkt: &RawPacket<'_>, link: &LinkInfo) -> Side {
        if file_side != Side::Unknown {
            return file_side;
        }
        self.side_of_unknown(pkt, link)
    }

    /// [`SideRules::side`] of a packet whose file gives no side.
    #[inline(never)]
    fn side_of_unknown(&self, pkt: &RawPacket<'_>, link: &LinkInfo) -> Side {
        if Self::iface_matches(&self.inside_interfaces, pkt, link) {
            return Side::Inside;
        }
        if Self::iface_matches(&self.outside_interfaces, pkt, link) {
            return Side::Outside;
        }
        if let Some(v) = link.vlan() {
            if self.inside_vlans.contains(&v) {
                return Side::Inside;
            }
            if self.outside_vlans.contains(&v) {
                return Side::Outside;
            }
        }
        Side::Unknown
    }
}

/// One input of a replay.
pub struct Input {
    /// The opened capture.
    pub file: CaptureFile,
    /// `Inside`/`Outside` when given with `--inside`/`--outside`.
    pub side: Side,
}

/// What a replay did, for the summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// Packets read from all files.
    pub packets: u64,
    /// Bytes of capture files read.
    pub bytes: u64,
    /// Packets not decoded, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// The correlator's counters.
    pub correlator: CorrelatorStats,
    /// The store writer's counters.
    pub writer: WriterStats,
    /// Mappings in final state written (one per mapping).
    pub mappings: u64,
    /// Of those, the ones still active when the capture ended.
    pub mappings_at_capture_end: u64,
    /// First and last packet time.
    pub span_ns: Option<(i64, i64)>,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Errors reading the captures (each stopped its file, not the replay),
    /// as messages naming the file and offset.
    pub capture_errors: Vec<String>,
}

struct Head<'a> {
    packets: Packets<'a>,
    /// The file's next packet, read in place ([`Packets::read_into`]); meaningful while `live`.
    next: RawPacket<'a>,
    /// `next` holds a packet not handed out yet.
    live: bool,
    side: Side,
    index: usize,
    /// Every packet of the file has a supported link type (a legacy pcap file whose header
    /// names one: [`Packets::fixed_linktype`]), so the per-packet check is skipped.
    linktypes_supported: bool,
}

/// Packets per batch handed from the reader thread to the correlator thread.
pub const PACKETS_PER_BATCH: usize = 1024;
/// Batches in flight between the two threads (the channel's bound); the
/// reader blocks when the correlator is this far behind. Batches are
/// recycled through a return channel, so the steady state allocates nothing.
/// With three threads on two cores the kernel time-slices them (a few ms a
/// slice): the queue must outlast a slice the reader spends descheduled, or
/// the pairing thread drains it and waits. 8 batches were ~0.4 ms of the
/// pairing thread's work; 128 (~10 MB of 80-byte items, touched as batches
/// rotate) took a quiet machine's three-thread replay from ~1.10 to
/// ~0.97 s (round 10, docs/BENCHMARKS.md; the items were 80 bytes until
/// round 19, 64 since: ~8 MB).
pub const BATCHES_IN_FLIGHT_MAX: usize = 128;
/// An item is one cache line (round 19: it was 80 bytes, and a batch's
/// items, written on one core and read on the other, moved 1.25 lines a
/// packet between them).
const _: () = assert!(std::mem::size_of::<Item<'static>>() == 64);
/// Mappings the correlating stage collects before handing them to the writer
/// in one batch (also handed over at each tick and at the end).
pub const SINK_MAPPINGS_MAX: usize = 256;
/// Three threads: the pairing thread hands the flow table's work
/// ([`FlowEvent`]s: observations and idle scans) to the writing thread in
/// batches of at most this many events (+2: a packet adds at most a scan
/// and an observation), also at each tick and at the end: ~2 000 packets
/// of the bench capture a batch (about half of them pair), ~80 KB, so a
/// batch written on one core is still in the second-level cache when the
/// other reads it, and a thread waking for each costs little.
pub const FLOW_EVENTS_PER_BATCH: usize = 1024;
/// Batches of flow events (and ticks) in flight from the pairing thread to
/// the writing thread (three threads); the pairing thread blocks when the
/// writing thread is this far behind (~0.1 M packets of the bench capture,
/// ~10 ms: the writing thread no longer waits for an `fdatasync`, which
/// the background thread does). Memory is taken only while the writer is
/// behind: at most this many batches of `FLOW_EVENTS_PER_BATCH` (+2)
/// events of 80 bytes, ~5.3 MB (the mapping batches this channel carried
/// before: up to 1 024 × 264 mappings, ~35 MB). Batches are recycled like
/// the packet batches.
pub const FLOW_EVENT_BATCHES_IN_FLIGHT_MAX: usize = 64;
/// Three threads: the reader decodes and prepares a batch itself when at
/// least this many batches wait for the correlating thread, and hands it over
/// undecoded otherwise, so decoding goes to whichever of the two threads has
/// time (with one fixed split either one was the bottleneck). One: the
/// correlating thread decodes only what it would otherwise wait for. It is
/// the slower stage (~650 instructions a packet against the reader's ~75 +
/// ~290 to decode), but with half the batches in flight as the bound (round
/// 6) it decoded about half the packets in perf profiles of a loaded machine,
/// where the reader is often descheduled and the queue runs low.
pub const DECODE_HERE_QUEUED_MIN: usize = 1;

/// One packet as the correlator needs it: decoded, read but not decoded yet
/// (three threads: the correlating thread decodes, see [`Decoding`]), or
/// only its time (a packet that was not decoded still moves the clock).
/// 64 bytes (round 19; 80 before): a packet's side is kept in its `Prepared` ([`Prepared::side`]), and the
/// `Raw` form holds only the fields its decoding reads ([`RawItem`]).
#[derive(Clone, Copy)]
enum Item<'a> {
    /// The packet's time and the packet, its side set
    /// ([`Prepared::set_side`]).
    Packet(i64, Prepared),
    Raw(RawItem<'a>),
    Tick(i64),
}

/// A batch's slot: an [`Item`] on a cache line of its own (64-byte
/// alignment, which an enum with a niche does not take itself: the batches'
/// allocations are aligned, so no item straddles two lines, round 19).
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Line<'a>(Item<'a>);

const _: () = assert!(std::mem::size_of::<Line<'static>>() == 64);

/// A packet handed over undecoded ([`Item::Raw`]): the fields of its
/// [`RawPacket`] that decoding it ([`Decoding::item_into`]) and giving it a
/// side ([`SideRules::side`]) read, and the side its file gives; 48 bytes
/// (the whole `RawPacket` and the side were 72, more than a cache line).
#[derive(Clone, Copy)]
struct RawItem<'a> {
    ts_ns: i64,
    data: &'a [u8],
    interface_name: Option<&'a str>,
    interface: u32,
    linktype: u16,
    file_side: Side,
}

impl<'a> RawItem<'a> {
    #[inline(always)]
    fn of(file_side: Side, pkt: &RawPacket<'a>) -> RawItem<'a> {
        RawItem {
            ts_ns: pkt.ts_ns,
            data: pkt.data,
            interface_name: pkt.interface_name,
            interface: pkt.interface,
            linktype: pkt.linktype,
            file_side,
        }
    }

    /// The packet again, for decoding: its wire length is taken as its
    /// captured length and its offset as 0 (neither is kept, and decoding
    /// and the side rules read neither).
    #[inline(always)]
    fn packet(&self) -> RawPacket<'a> {
        RawPacket {
            ts_ns: self.ts_ns,
            linktype: self.linktype,
            interface: self.interface,
            interface_name: self.interface_name,
            data: self.data,
            orig_len: u32::try_from(self.data.len()).unwrap_or(u32::MAX),
            offset: 0,
        }
    }
}

/// What [`Reader::next_into_with`] put in its slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Got {
    /// A packet decoded and prepared (the one-thread loop's slot); for an
    /// [`Item`], anything but `End` (a packet, raw or prepared, or a tick).
    Packet,
    /// Only a packet's time (a packet of no use).
    Tick,
    /// Nothing: all inputs are done (the slot is untouched).
    End,
}

/// The one-thread loop's slot: a packet prepared in place (its `Prepared`
/// written once, as in a batch's [`Item`]), or only its time. Which of the
/// two is the [`Got`] its read returned, which the loop keeps (in a
/// register) and hands to [`Sink::push_one`] with it: no kind is stored in
/// the slot, or tested in memory, before preparing or before pushing
/// (round 13).
struct OneSlot {
    ts: i64,
    side: Side,
    p: Prepared,
}

impl OneSlot {
    const EMPTY: OneSlot = OneSlot {
        ts: 0,
        side: Side::Unknown,
        p: Prepared::EMPTY,
    };
}

/// Where [`Reader::next_into_with`] puts the packet it takes: a batch's
/// [`Item`] or the one-thread loop's [`OneSlot`].
trait Slot<'a> {
    /// A packet whose file was stopped: only its time.
    fn put_tick(&mut self, ts_ns: i64) -> Got;
    /// A packet decoded and prepared here; `prepared` is called with it
    /// once prepared (not for a tick).
    fn put_decoded(
        &mut self,
        decoding: &mut Decoding<'_>,
        file_side: Side,
        pkt: &RawPacket<'a>,
        prepared: impl FnOnce(&Prepared),
    ) -> Got;
    /// A packet handed over undecoded.
    fn put_raw(&mut self, file_side: Side, pkt: &RawPacket<'a>) -> Got;
}

impl<'a> Slot<'a> for Item<'a> {
    #[inline(always)]
    fn put_tick(&mut self, ts_ns: i64) -> Got {
        *self = Item::Tick(ts_ns);
        Got::Tick
    }

    #[inline(always)]
    fn put_decoded(
        &mut self,
        decoding: &mut Decoding<'_>,
        file_side: Side,
        pkt: &RawPacket<'a>,
        prepared: impl FnOnce(&Prepared),
    ) -> Got {
        decoding.item_into(file_side, pkt, self, prepared);
        Got::Packet
    }

    #[inline(always)]
    fn put_raw(&mut self, file_side: Side, pkt: &RawPacket<'a>) -> Got {
        *self = Item::Raw(RawItem::of(file_side, pkt));
        Got::Packet
    }
}

impl<'a> Slot<'a> for OneSlot {
    #[inline(always)]
    fn put_tick(&mut self, ts_ns: i64) -> Got {
        self.ts = ts_ns;
        Got::Tick
    }

    #[inline(always)]
    fn put_decoded(
        &mut self,
        decoding: &mut Decoding<'_>,
        file_side: Side,
        pkt: &RawPacket<'a>,
        prepared: impl FnOnce(&Prepared),
    ) -> Got {
        decoding.one_into(file_side, pkt, self, prepared)
    }

    fn put_raw(&mut self, _: Side, _: &RawPacket<'a>) -> Got {
        unreachable!("the one-thread loop decodes every packet")
    }
}

/// The merge heads, one per input: two kept in place (`--inside A
/// --outside B`, the common case: the merge reads both at fixed places, with
/// no length or pointer of a vector loaded and tested a packet; round 13),
/// any other number in a vector. One per replay, so the pair's size (two
/// heads in place, the point of it) costs nothing: not boxed.
#[allow(clippy::large_enum_variant)]
enum Heads<'a> {
    Pair([Head<'a>; 2]),
    Other(Vec<Head<'a>>),
}

impl<'a> Heads<'a> {
    fn of(heads: Vec<Head<'a>>) -> Self {
        match <[Head<'a>; 2]>::try_from(heads) {
            Ok(pair) => Heads::Pair(pair),
            Err(heads) => Heads::Other(heads),
        }
    }

    /// Every head, in input order.
    fn all(&self) -> &[Head<'a>] {
        match self {
            Heads::Pair(pair) => pair,
            Heads::Other(heads) => heads,
        }
    }
}

/// The first stage: k-way merge of the inputs, decode, sides. Owns the
/// summary's packet-side counters.
struct Reader<'a, 'i> {
    inputs: &'i [Input],
    heads: Heads<'a>,
    /// Decoding, sides, subscriber tests and pair-key hashing, done here
    /// (the reader's thread) unless left to the correlating thread.
    decoding: Decoding<'i>,
    /// `false`: hand packets over undecoded ([`Item::Raw`]); the correlating
    /// thread decodes them.
    decode_here: bool,
    summary: Summary,
    /// Earliest and latest packet time so far (the summary's `span_ns` once reading is over;
    /// meaningful once `summary.packets` > 0). `ts_min` starts at the first packet's time
    /// (the earliest of the heads' first packets, which the merge takes first): a packet
    /// that is not earlier than `ts_max` is not earlier than the first packet either, so only
    /// the others are compared with `ts_min` ([`Reader::next_into_with`]).
    ts_min: i64,
    ts_max: i64,
}

impl<'a, 'i: 'a> Reader<'a, 'i> {
    fn new(
        inputs: &'i [Input],
        rules: &'i SideRules,
        preparer: Preparer,
        decode_here: bool,
    ) -> Self {
        let mut summary = Summary::default();
        let mut heads: Vec<Head<'a>> = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.iter().enumerate() {
            let packets = input.file.packets();
            let linktypes_supported = packets.fixed_linktype().is_some_and(linktype_supported);
            let mut head = Head {
                packets,
                next: RawPacket::EMPTY,
                live: false,
                side: input.side,
                index,
                linktypes_supported,
            };
            pull(&mut head, &mut summary);
            heads.push(head);
        }
        // The merge takes the earliest of the heads' first packets first.
        let ts_min = heads
            .iter()
            .filter(|h| h.live)
            .map(|h| h.next.ts_ns)
            .min()
            .unwrap_or(i64::MAX);
        Reader {
            inputs,
            heads: Heads::of(heads),
            decoding: Decoding::new(rules, preparer),
            decode_here,
            summary,
            ts_min,
            ts_max: i64::MIN,
        }
    }

    /// The summary's packet-side counters once reading is over.
    fn finish(mut self) -> Summary {
        self.summary.bytes = self.position();
        if self.summary.packets > 0 {
            self.summary.span_ns = Some((self.ts_min, self.ts_max));
        }
        for (reason, n) in self.decoding.skipped {
            *self.summary.skipped.entry(reason).or_insert(0) += n;
        }
        self.summary
    }

    fn position(&self) -> u64 {
        self.heads.all().iter().map(|h| h.packets.position()).sum()
    }

    /// The next packet in time order, decoded, written into `slot` (a
    /// decoded packet straight into the `Prepared` a `Packet` slot already
    /// holds: no item is built elsewhere and copied); `false` at the end of
    /// all inputs (`slot` untouched).
    /// The batch loop decodes by [`fill`]'s constant; this is the tests'.
    #[cfg(test)]
    fn next_into(&mut self, slot: &mut Item<'a>) -> bool {
        self.next_into_with(slot, self.decode_here, |_| {}) != Got::End
    }

    /// [`Reader::next_into`], decoding here when `decode` says so (not
    /// `decode_here`: the one-thread loop always decodes, and a constant
    /// `true` leaves no test in its loop). `prepared` is called with a packet
    /// decoded and prepared here, on the path that prepared it (the one-thread
    /// loop's prefetch: no second test of the slot's kind).
    #[inline(always)]
    fn next_into_with(
        &mut self,
        slot: &mut impl Slot<'a>,
        decode: bool,
        prepared: impl FnOnce(&Prepared),
    ) -> Got {
        // The earliest head each time; ties go to the earlier file (strictly earlier replaces
        // the best so far, and heads are in input order), so the merge is stable.
        // The head itself, not its index: no second bounds check.
        let head = match &mut self.heads {
            // `--inside A --outside B`: the common case. The earlier by time
            // first, then only its `live` tested: a head that ended keeps its
            // last packet's time, so it is taken only when that time is not
            // later than the other's, and then the full test below decides
            // (the same head as testing both first).
            Heads::Pair([a, b]) => {
                let b_first = b.next.ts_ns < a.next.ts_ns;
                let first_live = if b_first { b.live } else { a.live };
                if first_live {
                    if b_first {
                        b
                    } else {
                        a
                    }
                } else {
                    match (a.live, b.live) {
                        (true, true) => unreachable!("the earlier head is live"),
                        (true, false) => a,
                        (false, true) => b,
                        (false, false) => return Got::End,
                    }
                }
            }
            Heads::Other(heads) => {
                let mut best: Option<usize> = None;
                let mut best_ts = i64::MAX;
                for (i, head) in heads.iter().enumerate() {
                    if head.live && (best.is_none() || head.next.ts_ns < best_ts) {
                        best = Some(i);
                        best_ts = head.next.ts_ns;
                    }
                }
                let Some(best) = best else {
                    return Got::End;
                };
                &mut heads[best]
            }
        };
        let summary = &mut self.summary;
        // The packet is used where it lies, then the head reads the file's next one over it.
        let pkt = &head.next;
        summary.packets += 1;
        // Packets mostly come in time order: one compare for those (see `ts_min`).
        if pkt.ts_ns >= self.ts_max {
            self.ts_max = pkt.ts_ns;
        } else if pkt.ts_ns < self.ts_min {
            self.ts_min = pkt.ts_ns;
        }
        if !head.linktypes_supported && !linktype_supported(pkt.linktype) {
            // Nothing in this file can be decoded: stop it and say so (after what reading
            // its next record reports, as before the packet was used in place).
            // Its record offset, which `read_into`'s common case leaves to `complete`.
            let mut whole = *pkt;
            head.packets.complete(&mut whole);
            let (ts_ns, offset, linktype) = (whole.ts_ns, whole.offset, whole.linktype);
            pull(head, summary);
            summary.capture_errors.push(format!(
                "{}: packet at byte {offset}: link type {linktype} is not supported (natrec reads Ethernet with VLAN/QinQ/PPPoE, Linux SLL and SLL2, raw IP, loopback, PPP); capture with `tcpdump -i any` or on an Ethernet interface",
                self.inputs[head.index].file.path().display(),
            ));
            head.live = false;
            head.packets.stop();
            return slot.put_tick(ts_ns);
        }
        let got = if decode {
            slot.put_decoded(&mut self.decoding, head.side, pkt, prepared)
        } else {
            slot.put_raw(head.side, pkt)
        };
        pull_live(head, summary);
        got
    }
}

/// What the pairing stage hands to the writing thread (three threads).
enum ToWriter {
    /// The flow table's work, in order: observations and idle scans.
    Events(Vec<FlowEvent>),
    /// The data clock reached this time: seal what is due (after the
    /// mappings of every event sent before).
    Advance(i64),
}

/// Where the correlating stage's work goes: its mappings straight into the
/// writer (one or two threads), or its flow events over a channel to a
/// writing thread that runs the flow table and writes (three).
enum Out<'w> {
    Direct(&'w mut Writer),
    Channel {
        tx: crossbeam_channel::Sender<ToWriter>,
        /// Emptied batches coming back from the writing thread.
        empty: crossbeam_channel::Receiver<Vec<FlowEvent>>,
    },
}

/// The writing thread went away: it stopped on a store error, which it
/// reports itself.
#[derive(Debug)]
struct WriterGone;

impl std::fmt::Display for WriterGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the writing thread stopped")
    }
}

impl std::error::Error for WriterGone {}

/// Decoding on the correlating thread (three threads, where the reader is
/// the busiest stage): what the reader does per packet after reading it.
struct Decoding<'r> {
    rules: &'r SideRules,
    preparer: Preparer,
    /// The link details of the packet being prepared (scratch: written
    /// whole by each, so never cleared).
    link: LinkInfo,
    /// Packets not decoded, by reason (merged into the summary's).
    skipped: BTreeMap<&'static str, u64>,
}

impl<'r> Decoding<'r> {
    fn new(rules: &'r SideRules, preparer: Preparer) -> Self {
        Decoding {
            rules,
            preparer,
            link: LinkInfo::default(),
            skipped: BTreeMap::new(),
        }
    }

    /// A packet of a supported link type (the reader checks), decoded and
    /// prepared into `slot`, or a tick if it is of no use (counted by
    /// reason). A slot that holds a `Packet` already (the usual case: slots
    /// are reused) is prepared in place. `prepared` is called with the packet
    /// once it is prepared (not for a tick).
    #[inline(always)]
    fn item_into<'a>(
        &mut self,
        file_side: Side,
        pkt: &RawPacket<'_>,
        slot: &mut Item<'a>,
        prepared: impl FnOnce(&Prepared),
    ) {
        if !matches!(slot, Item::Packet(..)) {
            *slot = Item::Packet(0, Prepared::EMPTY);
        }
        let Item::Packet(ts, p) = slot else {
            unreachable!("the slot was made a packet above")
        };
        match self.preparer.prepare_packet_into(pkt, p, &mut self.link) {
            Ok(()) => {
                *ts = pkt.ts_ns;
                p.set_side(self.rules.side(file_side, pkt, &self.link));
                prepared(p);
            }
            Err(skip) => self.skip(skip, pkt.ts_ns, slot),
        }
    }

    /// [`Decoding::item_into`] for the one-thread loop's slot: what it
    /// holds is the `Got` returned.
    #[inline(always)]
    fn one_into(
        &mut self,
        file_side: Side,
        pkt: &RawPacket<'_>,
        slot: &mut OneSlot,
        prepared: impl FnOnce(&Prepared),
    ) -> Got {
        slot.ts = pkt.ts_ns;
        match self
            .preparer
            .prepare_packet_into(pkt, &mut slot.p, &mut self.link)
        {
            Ok(()) => {
                slot.side = self.rules.side(file_side, pkt, &self.link);
                prepared(&slot.p);
                Got::Packet
            }
            Err(skip) => {
                self.count_skip(skip);
                Got::Tick
            }
        }
    }

    /// A packet of no use: counted by reason, and a tick in `slot`.
    #[inline(never)]
    fn skip(&mut self, skip: Skip, ts_ns: i64, slot: &mut Item<'_>) {
        self.count_skip(skip);
        *slot = Item::Tick(ts_ns);
    }

    /// A packet of no use, counted by reason.
    #[inline(never)]
    fn count_skip(&mut self, skip: Skip) {
        *self.skipped.entry(skip.reason()).or_insert(0) += 1;
    }
}

/// The second stage: correlate (and write, unless a writing thread does).
/// Owns the summary's mapping counters.
struct Sink<'w> {
    /// Set when packets arrive undecoded ([`Item::Raw`]).
    decoding: Option<Decoding<'w>>,
    /// Its clock ([`Correlator::now_ns`]: the latest time of the items
    /// pushed, packets and ticks) is the writer's clock at each tick.
    correlator: Correlator,
    out_to: Out<'w>,
    out: Vec<Mapping>,
    /// Items to push before the next tick (from [`PACKETS_PER_TICK`] down
    /// to 0: a countdown, one decrement and test an item).
    until_tick: u64,
    mappings: u64,
    mappings_at_capture_end: u64,
}

/// What the correlating stage counted, for the summary.
struct SinkCounts {
    /// Packets the correlating thread could not decode, by reason.
    skipped: BTreeMap<&'static str, u64>,
    correlator: CorrelatorStats,
    mappings: u64,
    mappings_at_capture_end: u64,
}

impl<'w> Sink<'w> {
    fn counts(&self) -> SinkCounts {
        SinkCounts {
            skipped: self
                .decoding
                .as_ref()
                .map(|d| d.skipped.clone())
                .unwrap_or_default(),
            correlator: self.correlator.stats(),
            mappings: self.mappings,
            mappings_at_capture_end: self.mappings_at_capture_end,
        }
    }

    fn new(correlator: Correlator, out_to: Out<'w>, decoding: Option<Decoding<'w>>) -> Self {
        Sink {
            decoding,
            correlator,
            out_to,
            out: Vec::with_capacity(SINK_MAPPINGS_MAX + 8),
            until_tick: PACKETS_PER_TICK,
            mappings: 0,
            mappings_at_capture_end: 0,
        }
    }

    /// Feeds one item; every [`PACKETS_PER_TICK`] items the writer's clock
    /// moves (sealing finished partitions) and `true` is returned. The
    /// tests' item-at-a-time model of [`pair_batch`] (the replay's loops
    /// use [`Sink::push_one`] and [`pair_batch`]).
    #[cfg(test)]
    fn push(&mut self, item: &Item<'_>) -> Result<bool> {
        self.push_item(item);
        self.until_tick -= 1;
        if self.out.len() >= SINK_MAPPINGS_MAX || self.until_tick == 0 {
            return self.after_push();
        }
        Ok(false)
    }

    /// The item itself, without [`Sink::push`]'s countdown and bound.
    #[inline(always)]
    fn push_item(&mut self, item: &Item<'_>) {
        match item {
            Item::Packet(ts, d) => {
                self.correlator
                    .push_prepared(*ts, d.side(), d, &mut self.out);
            }
            Item::Tick(ts) => self.tick(*ts),
            Item::Raw(raw) => self.push_raw(raw),
        }
    }

    /// [`Sink::push`] of the one-thread loop's slot, `got` saying what it
    /// holds (a packet or a tick; never `End`).
    #[inline(always)]
    fn push_one(&mut self, got: Got, slot: &OneSlot) -> Result<bool> {
        if got == Got::Packet {
            self.correlator
                .push_prepared(slot.ts, slot.side, &slot.p, &mut self.out);
        } else {
            self.tick(slot.ts);
        }
        self.until_tick -= 1;
        if self.out.len() >= SINK_MAPPINGS_MAX || self.until_tick == 0 {
            return self.after_push();
        }
        Ok(false)
    }

    /// A hint for the item a pairing correlator takes next (two and three
    /// threads): its pending-table entries only
    /// ([`Correlator::prefetch_next_pairing`]).
    #[inline(always)]
    fn prefetch_pairing(&mut self, item: &Item<'_>) {
        if let Item::Packet(_, p) = item {
            self.correlator.prefetch_next_pairing(p);
        }
    }

    /// A packet that was not decoded: only its time.
    #[inline(never)]
    fn tick(&mut self, ts: i64) {
        self.correlator.advance(ts, &mut self.out);
    }

    /// A packet the reader handed over undecoded: decoded here, then
    /// correlated as [`Sink::push`] does a decoded one.
    #[inline(never)]
    fn push_raw(&mut self, raw: &RawItem<'_>) {
        let Some(d) = &mut self.decoding else {
            unreachable!("raw packets come with a decoding sink")
        };
        let mut slot = Item::Packet(0, Prepared::EMPTY);
        d.item_into(raw.file_side, &raw.packet(), &mut slot, |_| {});
        match slot {
            Item::Packet(ts, p) => {
                self.correlator
                    .push_prepared(ts, p.side(), &p, &mut self.out);
            }
            Item::Tick(ts) => self.tick(ts),
            Item::Raw(..) => unreachable!("decoding gives a packet or a tick"),
        }
    }

    /// [`Sink::push`]'s work every [`SINK_MAPPINGS_MAX`] mappings and every
    /// [`PACKETS_PER_TICK`] items.
    #[inline(never)]
    fn after_push(&mut self) -> Result<bool> {
        if self.out.len() >= SINK_MAPPINGS_MAX {
            self.drain()?;
        }
        if self.until_tick == 0 {
            self.until_tick = PACKETS_PER_TICK;
            self.drain()?;
            match &mut self.out_to {
                Out::Direct(w) => w.advance(self.correlator.now_ns())?,
                Out::Channel { tx, .. } => tx
                    .send(ToWriter::Advance(self.correlator.now_ns()))
                    .map_err(|_| WriterGone)?,
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Hands the mappings produced so far to the writer in one batch (one
    /// `pwrite` per active log), or (three threads: a pairing correlator,
    /// which makes no mappings) the flow events queued so far to the
    /// writing thread.
    fn drain(&mut self) -> Result<()> {
        match &mut self.out_to {
            Out::Direct(w) => {
                if self.out.is_empty() {
                    return Ok(());
                }
                count_mappings(
                    &self.out,
                    &mut self.mappings,
                    &mut self.mappings_at_capture_end,
                );
                w.append_batch(&self.out)?;
                self.out.clear();
            }
            Out::Channel { tx, empty } => {
                debug_assert!(
                    self.out.is_empty(),
                    "a pairing correlator makes no mappings"
                );
                if self.correlator.events_len() == 0 {
                    return Ok(());
                }
                // A recycled batch if one is back, else a new one (only
                // until the batches in flight are all allocated).
                let mut next = empty
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(FLOW_EVENTS_PER_BATCH + 2));
                self.correlator.take_events(&mut next);
                tx.send(ToWriter::Events(next)).map_err(|_| WriterGone)?;
            }
        }
        Ok(())
    }

    /// Closes every flow as capture-end and hands the rest to the writer;
    /// seals everything when it writes directly (a writing thread seals
    /// when its channel closes).
    fn finish(&mut self) -> Result<()> {
        self.correlator.finish(&mut self.out);
        self.drain()?;
        if let Out::Direct(w) = &mut self.out_to {
            w.seal_all()?;
        }
        Ok(())
    }
}

/// Counts mapping states as the summary does: every final state once, and
/// the capture-end ones also on their own.
fn count_mappings(out: &[Mapping], mappings: &mut u64, at_capture_end: &mut u64) {
    for m in out {
        match m.end {
            EndReason::Open => {}
            EndReason::CaptureEnd => {
                *mappings += 1;
                *at_capture_end += 1;
            }
            _ => *mappings += 1,
        }
    }
}

/// What the writing thread of a three-thread replay counted: the flow
/// table's counters and the mappings, for the summary.
struct WriteCounts {
    flows: CorrelatorStats,
    mappings: u64,
    mappings_at_capture_end: u64,
}

/// The writing thread of a three-thread replay: runs the flow table on the
/// pairing thread's events (`flows`: [`Correlator::try_new_flows`]) and
/// appends its mappings and seals in the order the events came, then, when
/// the channel closes, closes every flow and seals everything. Stops at the
/// first store error (closing the channel stops the threads before it).
///
/// The replay's tail: once the pairing thread is done (`pairing_done`) with
/// at least [`TAIL_APPEND_QUEUED_MIN`] messages still queued here (the last
/// seconds of packet time, each ending ~20 k flows on the bench capture, are
/// read and paired quickly and leave their idle scans queued), the appends
/// and clock moves go to a helper thread (`natrec-append`) in the same order
/// and cut the same way, so the writer makes exactly the same calls while
/// the idle scans run here on the other core; the helper is joined before
/// the final `finish` and seal. While packets flow the two cores are busy
/// and a fourth thread would only cost (round10-tail5.md).
fn write_stage(
    writer: &mut Writer,
    mut flows: Correlator,
    rx: crossbeam_channel::Receiver<ToWriter>,
    empty: crossbeam_channel::Sender<Vec<FlowEvent>>,
    pairing_done: &AtomicBool,
    tail_queued_min: usize,
) -> Result<WriteCounts> {
    let mut out: Vec<Mapping> = Vec::with_capacity(SINK_MAPPINGS_MAX * 4);
    let mut counts = (0, 0);
    let tail = take_events(
        &mut Appends::Here(&mut *writer),
        &mut flows,
        &rx,
        &empty,
        &mut out,
        &mut counts,
        Some((pairing_done, tail_queued_min)),
    )?;
    if tail {
        std::thread::scope(|scope| -> Result<()> {
            let (tx, helper_rx) =
                crossbeam_channel::bounded::<ToAppender>(TAIL_APPENDS_IN_FLIGHT_MAX);
            let (back_tx, back) =
                crossbeam_channel::bounded::<Vec<Mapping>>(TAIL_APPENDS_IN_FLIGHT_MAX + 2);
            let w = &mut *writer;
            let helper = std::thread::Builder::new()
                .name("natrec-append".into())
                .spawn_scoped(scope, move || append_stage(w, helper_rx, back_tx))?;
            let mut appends = Appends::Helper { tx, back };
            let taken = take_events(
                &mut appends,
                &mut flows,
                &rx,
                &empty,
                &mut out,
                &mut counts,
                None,
            )
            .and_then(|_| {
                flows.finish(&mut out);
                appends.append(&mut out, &mut counts)
            });
            // The helper ends when its channel closes, after the last append.
            drop(appends);
            let appended = helper.join().expect("append thread does not panic");
            // Its own error first: a send that failed stopped because of it.
            appended?;
            taken
        })?;
    } else {
        flows.finish(&mut out);
        Appends::Here(&mut *writer).append(&mut out, &mut counts)?;
    }
    writer.seal_all()?;
    Ok(WriteCounts {
        flows: flows.stats(),
        mappings: counts.0,
        mappings_at_capture_end: counts.1,
    })
}

/// Three threads, the writing thread's tail ([`write_stage`]): once the pairing
/// thread is done, the appends go to a helper thread if at least this many
/// messages (event batches and clock moves) still wait for the writing thread.
pub const TAIL_APPEND_QUEUED_MIN: usize = 8;
/// Mapping batches in flight from the writing thread to its tail's append
/// thread (each the mappings of one or more event batches: ~2.5 MB when a
/// batch holds an idle scan of 20 k flows; batches recycled).
pub const TAIL_APPENDS_IN_FLIGHT_MAX: usize = 4;

/// What the writing thread's tail hands its append thread, in order.
enum ToAppender {
    Append(Vec<Mapping>),
    Advance(i64),
}

/// Where the writing thread's mappings and clock moves go: the writer, or
/// (the tail, [`write_stage`]) its append thread, in order.
enum Appends<'w> {
    Here(&'w mut Writer),
    Helper {
        tx: crossbeam_channel::Sender<ToAppender>,
        /// Emptied batches coming back.
        back: crossbeam_channel::Receiver<Vec<Mapping>>,
    },
}

impl Appends<'_> {
    /// Counts `out` (mappings, capture-end ones) and appends it, or hands it
    /// over (leaving `out` an empty recycled batch).
    fn append(&mut self, out: &mut Vec<Mapping>, counts: &mut (u64, u64)) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        count_mappings(out, &mut counts.0, &mut counts.1);
        match self {
            Appends::Here(w) => {
                w.append_batch(out)?;
                out.clear();
            }
            Appends::Helper { tx, back } => {
                let next = back
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(out.capacity()));
                let full = std::mem::replace(out, next);
                tx.send(ToAppender::Append(full)).map_err(|_| WriterGone)?;
            }
        }
        Ok(())
    }

    /// Appends `out` then moves the writer's clock to `ts`.
    fn advance(&mut self, ts: i64, out: &mut Vec<Mapping>, counts: &mut (u64, u64)) -> Result<()> {
        self.append(out, counts)?;
        match self {
            Appends::Here(w) => w.advance(ts)?,
            Appends::Helper { tx, .. } => {
                tx.send(ToAppender::Advance(ts)).map_err(|_| WriterGone)?
            }
        }
        Ok(())
    }
}

/// The writing thread's loop over the pairing thread's messages: applies
/// each event batch to the flow table, appending its mappings once
/// [`SINK_MAPPINGS_MAX`] have gathered and before each clock move. Returns
/// `true` when it stopped early because `tail`'s flag (the pairing thread
/// is done) was set with at least its number of messages left
/// ([`TAIL_APPEND_QUEUED_MIN`]), `false` when the channel closed.
fn take_events(
    appends: &mut Appends<'_>,
    flows: &mut Correlator,
    rx: &crossbeam_channel::Receiver<ToWriter>,
    empty: &crossbeam_channel::Sender<Vec<FlowEvent>>,
    out: &mut Vec<Mapping>,
    counts: &mut (u64, u64),
    tail: Option<(&AtomicBool, usize)>,
) -> Result<bool> {
    for msg in rx.iter() {
        take_message(appends, flows, msg, empty, out, counts)?;
        if let Some((done, queued_min)) = tail {
            if done.load(Ordering::Acquire) && rx.len() >= queued_min {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// One message of the pairing stage's, taken by the writing thread: an event
/// batch applied to the flow table (its mappings appended once
/// [`SINK_MAPPINGS_MAX`] have gathered) and sent back, or a clock move.
#[inline(always)]
fn take_message(
    appends: &mut Appends<'_>,
    flows: &mut Correlator,
    msg: ToWriter,
    empty: &crossbeam_channel::Sender<Vec<FlowEvent>>,
    out: &mut Vec<Mapping>,
    counts: &mut (u64, u64),
) -> Result<()> {
    match msg {
        ToWriter::Events(mut batch) => {
            flows.apply_events(&batch, out);
            batch.clear();
            // The pairing thread may have finished: a closed return channel is fine.
            let _ = empty.try_send(batch);
            if out.len() >= SINK_MAPPINGS_MAX {
                appends.append(out, counts)?;
            }
        }
        ToWriter::Advance(ts) => appends.advance(ts, out, counts)?,
    }
    Ok(())
}

/// The tail's append thread ([`write_stage`]): appends and clock moves in
/// the order handed over, emptied batches sent back. Stops at the first
/// store error (dropping its channel stops the writing thread's sends).
/// While nothing waits for it (the writing thread is running the flow
/// table's idle scans) it makes the final seal's scratch ready, a step at a
/// time ([`Writer::warm_seal_scratch`]: page faults the seal's threads would
/// take on the tail; nothing stored changes).
fn append_stage(
    writer: &mut Writer,
    rx: crossbeam_channel::Receiver<ToAppender>,
    back: crossbeam_channel::Sender<Vec<Mapping>>,
) -> Result<()> {
    let mut warming = true;
    loop {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                if warming {
                    warming = writer.warm_seal_scratch();
                    continue;
                }
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                }
            }
        };
        match msg {
            ToAppender::Append(mut batch) => {
                writer.append_batch(&batch)?;
                batch.clear();
                let _ = back.try_send(batch);
                // The log grew: so may the scratch to make ready.
                warming = true;
            }
            ToAppender::Advance(ts) => writer.advance(ts)?,
        }
    }
    Ok(())
}

/// The first stage on its own thread: reads, merges, decodes and prepares
/// packets into batches of [`PACKETS_PER_BATCH`], recycled through `empty_rx`.
fn read_stage<'i>(
    reader: Reader<'i, 'i>,
    bar: &ProgressBar,
    full_tx: crossbeam_channel::Sender<Vec<Line<'i>>>,
    empty_rx: crossbeam_channel::Receiver<Vec<Line<'i>>>,
) -> Summary {
    let mut reader = reader;
    let mut batches = 0u64;
    // A batch comes back from the correlator thread, or (if it
    // stopped on an error) the replay ends here.
    while let Ok(mut batch) = empty_rx.recv() {
        // Batches come back as they were sent, and their slots are reused:
        // a packet is prepared straight into the `Prepared` of the slot's
        // previous packet. Only a new batch is filled with placeholders first.
        batch.resize(PACKETS_PER_BATCH, Line(Item::Tick(0)));
        // Decode here while the correlating thread has a batch waiting,
        // else leave decoding to it (it would wait otherwise): the two
        // threads settle where they are equally busy. Either thread
        // decodes a packet to the same result.
        reader.decode_here = full_tx.len() >= DECODE_HERE_QUEUED_MIN;
        let filled = if reader.decode_here {
            fill::<true>(&mut reader, &mut batch)
        } else {
            fill::<false>(&mut reader, &mut batch)
        };
        batch.truncate(filled);
        let last = filled < PACKETS_PER_BATCH;
        if !batch.is_empty() && full_tx.send(batch).is_err() {
            break;
        }
        batches += 1;
        if batches.is_multiple_of((PACKETS_PER_TICK / PACKETS_PER_BATCH as u64).max(1)) {
            bar.set_position(reader.position());
            bar.set_message(format!("{} packets", reader.summary.packets));
        }
        if last {
            break;
        }
    }
    reader.finish()
}

/// Fills `batch` from the reader, decoding each packet (`DECODE`) or
/// handing it over raw: the choice made once a batch, as `decode_here` is,
/// so the loop tests nothing for it a packet (round 14). How many slots were
/// filled (fewer than the batch's length at the end of all inputs).
#[inline(always)]
fn fill<'i, const DECODE: bool>(reader: &mut Reader<'i, 'i>, batch: &mut [Line<'i>]) -> usize {
    let mut filled = 0;
    for slot in batch.iter_mut() {
        if reader.next_into_with(&mut slot.0, DECODE, |_| {}) == Got::End {
            break;
        }
        filled += 1;
    }
    filled
}

/// One step of the one-thread loop: reads the packet after `item` (which
/// holds `got`) into `next` and starts loading its pending-table entries,
/// then correlates `item`. What `next` holds.
#[inline(always)]
fn one_ahead<'i>(
    reader: &mut Reader<'i, 'i>,
    sink: &mut Sink<'_>,
    got: Got,
    item: &OneSlot,
    next: &mut OneSlot,
    bar: &ProgressBar,
) -> Result<Got> {
    // The next packet's pending-table entries (a hint), asked for where it
    // was prepared.
    let more = reader.next_into_with(next, true, |p| sink.correlator.prefetch_next(p));
    if sink.push_one(got, item)? {
        bar.set_position(reader.position());
        bar.set_message(format!(
            "{} packets, {} mappings",
            reader.summary.packets,
            sink.correlator.stats().mappings_opened
        ));
    }
    Ok(more)
}

/// The pairing thread's loop (three threads): the sink's correlator is a
/// pairing part, whose flow events go to the writing thread in batches of
/// [`FLOW_EVENTS_PER_BATCH`]; batches go back to the reader.
fn correlate_stage<'a>(
    sink: &mut Sink<'_>,
    full_rx: &crossbeam_channel::Receiver<Vec<Line<'a>>>,
    empty_tx: &crossbeam_channel::Sender<Vec<Line<'a>>>,
) -> Result<()> {
    for batch in full_rx.iter() {
        pair_batch(sink, &batch)?;
        // The reader may have finished: a closed return channel is fine.
        let _ = empty_tx.send(batch);
    }
    sink.finish()
}

/// The pairing thread's work on one batch (three threads): what
/// [`Sink::push`] and a drain at [`FLOW_EVENTS_PER_BATCH`] events do item by
/// item, with the tick countdown taken a run at a time (the items up to the
/// next tick, at most the batch) instead of an item at a time, and no test
/// of the mapping bound (a pairing correlator makes no mappings). The same
/// calls in the same order: the tick still comes after its
/// [`PACKETS_PER_TICK`]-th item, after that item's event drain, which
/// leaves nothing the tick's own drain would have sent otherwise (it sends
/// every queued event either way; round 14).
fn pair_batch(sink: &mut Sink<'_>, batch: &[Line<'_>]) -> Result<()> {
    let mut rest = batch;
    while !rest.is_empty() {
        // `until_tick` is at least 1 here: it is reset when it reaches 0.
        let n = rest.len().min(sink.until_tick as usize);
        for (k, Line(item)) in rest[..n].iter().enumerate() {
            // The next packet's pending-table entries (a hint; across the
            // tick as well).
            if let Some(Line(next)) = rest.get(k + 1) {
                sink.prefetch_pairing(next);
            }
            // A packet by the pairing part's own entry (no flow slot
            // hints to keep); a tick or a raw packet as `push_item`.
            match item {
                Item::Packet(ts, d) => {
                    sink.correlator
                        .push_prepared_pairing(*ts, d.side(), d, &mut sink.out);
                }
                _ => sink.push_item(item),
            }
            if sink.correlator.events_len() >= FLOW_EVENTS_PER_BATCH {
                sink.drain()?;
            }
        }
        sink.until_tick -= n as u64;
        if sink.until_tick == 0 {
            sink.after_push()?;
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// Two threads ([`run`]): batches a thread pairs at most before it lets go
/// of the pairing stage (the pending table moves between the two cores'
/// caches at every hand-over, so each holds it for several batches).
pub const FLOAT_HOLD_BATCHES: usize = 8;
// The writing thread pairs only with its events channel empty, and sends
// into it while it holds the stage: a hold must not fill the channel, or the
// thread would wait on itself. A batch's packets pair at most once each, so
// it sends at most one full event batch a `FLOW_EVENTS_PER_BATCH` packets
// (the batch's length), plus a drain and a clock move at each of the
// hold's ticks (at most one a `PACKETS_PER_TICK` packets, and one more for a
// run cut across two ticks), and the drain when it lets go (the strict `<`).
const _: () = assert!(
    FLOAT_HOLD_BATCHES * PACKETS_PER_BATCH / FLOW_EVENTS_PER_BATCH
        + 2 * (FLOAT_HOLD_BATCHES * PACKETS_PER_BATCH / PACKETS_PER_TICK as usize + 1)
        < FLOW_EVENT_BATCHES_IN_FLIGHT_MAX
);
/// Two threads: the reader takes the pairing stage (when it is free) once at
/// least this many batches wait for it (the writing thread is behind).
pub const FLOAT_READER_QUEUED_MIN: usize = 16;
/// Two threads: once it holds the stage, the reader pairs another batch
/// while at least this many wait, [`FLOAT_HOLD_BATCHES`] at most. Below
/// [`FLOAT_READER_QUEUED_MIN`], so that a turn of the reader's pairs several
/// batches: with the two equal (round 20) nearly every turn paired one
/// batch (~2 800 turns for ~2 900 batches a run on the 10 M capture), each
/// a hand-over of the pending table and a drain of a part-filled event
/// batch; with 8 (and [`FLOAT_READER_EVENTS_MIN`]), ~570–590 turns for the
/// same share.
pub const FLOAT_READER_KEEP_MIN: usize = 8;
/// Two threads: the reader pairs a batch only while at least this many
/// messages (event batches, clock moves) wait for the writing thread, so
/// that it holds the stage only while the writing thread has other work:
/// a writing thread that runs out of events while the reader pairs waits
/// for it (round 20: ~1 000 such waits a run on the 10 M capture, ~13 ms in
/// all; with 2 and [`FLOAT_READER_KEEP_MIN`], ~120–140 waits, ~1.3 ms). 1
/// left more idle in some runs, 8 starved the reader's turns (the queue
/// filled, 0.2 core-s idle a run), 3 was the same as 2.
pub const FLOAT_READER_EVENTS_MIN: usize = 2;
/// Two threads: the reader decodes and prepares a batch itself while at
/// least this many batches wait, and hands it over undecoded otherwise, for
/// the pairing stage's holder to decode. Higher than three threads'
/// [`DECODE_HERE_QUEUED_MIN`] (1): here the reader also pays the capture
/// map's page faults (about half its CPU on the 10 M capture), so the
/// writing thread has to take more of the decoding; 4 left the least idle
/// time in alternating rows of 1, 2, 3, 4 and 8 (round20-float20.md), and
/// more left raw batches waiting long enough to cost more CPU.
pub const FLOAT_DECODE_QUEUED_MIN: usize = 4;

/// How the pairing stage floats between the two threads of a two-thread
/// replay ([`FLOAT_HOLD_BATCHES`], [`FLOAT_READER_QUEUED_MIN`]; tests make
/// it change hands at every batch).
#[derive(Clone, Copy, Debug)]
struct Floating {
    hold_batches: usize,
    reader_queued_min: usize,
    /// The reader, holding the stage, pairs another batch only while at
    /// least this many wait ([`FLOAT_READER_KEEP_MIN`]).
    reader_keep_min: usize,
    /// The reader pairs a batch only while at least this many messages wait
    /// for the writing thread ([`FLOAT_READER_EVENTS_MIN`]).
    reader_events_min: usize,
    /// The reader decodes a batch itself while at least this many wait,
    /// else hands it over undecoded ([`FLOAT_DECODE_QUEUED_MIN`]).
    decode_queued_min: usize,
    /// Tests: the writing thread fails as a store error would, the first
    /// time it finds the pairing stage held by the reader after taking at
    /// least this many messages.
    #[cfg(test)]
    fail_when_held_after: Option<u64>,
    /// Tests: the writing thread fails as a store error would once it has
    /// taken this many messages.
    #[cfg(test)]
    fail_after: Option<u64>,
    /// Tests: the reader keeps the stage this long after each of its turns
    /// (as if descheduled before it let go).
    #[cfg(test)]
    reader_holds_for: Option<std::time::Duration>,
}

impl Floating {
    const DEFAULT: Floating = Floating {
        hold_batches: FLOAT_HOLD_BATCHES,
        reader_queued_min: FLOAT_READER_QUEUED_MIN,
        reader_keep_min: FLOAT_READER_KEEP_MIN,
        reader_events_min: FLOAT_READER_EVENTS_MIN,
        decode_queued_min: FLOAT_DECODE_QUEUED_MIN,
        #[cfg(test)]
        fail_when_held_after: None,
        #[cfg(test)]
        fail_after: None,
        #[cfg(test)]
        reader_holds_for: None,
    };
}

/// The pairing stage's state while it runs: the sink (a pairing correlator
/// whose flow events go to the writing thread) and the ends of the reader's
/// batch queue it takes batches from and returns them to.
struct PairingStage<'i, 'w> {
    sink: Sink<'w>,
    full_rx: crossbeam_channel::Receiver<Vec<Line<'i>>>,
    empty_tx: crossbeam_channel::Sender<Vec<Line<'i>>>,
    /// Batches paired so far.
    paired: u64,
}

impl<'i> PairingStage<'i, '_> {
    /// Pairs `batch` and returns it to the reader.
    fn pair_one(&mut self, batch: Vec<Line<'i>>) -> Result<()> {
        pair_batch(&mut self.sink, &batch)?;
        self.paired += 1;
        // The reader may have finished: a closed return channel is fine.
        let _ = self.empty_tx.send(batch);
        Ok(())
    }

    /// [`Pairing::writer_turn`]'s batches: `true` when the reader is done
    /// and every batch is paired.
    fn writer_turn(&mut self, hold: usize) -> Result<bool> {
        let mut paired = 0;
        while paired < hold {
            let batch = match self.full_rx.try_recv() {
                Ok(batch) => batch,
                Err(crossbeam_channel::TryRecvError::Empty)
                    if paired > 0 || self.sink.correlator.events_len() > 0 =>
                {
                    return Ok(false);
                }
                // Nothing to do on either side: the reader is the one
                // behind. It takes the stage only once batches queue up or
                // it has read everything, and either ends this wait.
                Err(crossbeam_channel::TryRecvError::Empty) => match self.full_rx.recv() {
                    Ok(batch) => batch,
                    Err(_) => return Ok(true),
                },
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(true),
            };
            self.pair_one(batch)?;
            paired += 1;
        }
        Ok(false)
    }

    /// [`Pairing::reader_turn`]'s batches.
    fn reader_turn(&mut self, hold: usize, keep_min: usize, events_min: usize) -> Result<bool> {
        for _ in 0..hold {
            if self.full_rx.len() < keep_min.max(1) || self.events_queued() < events_min {
                break;
            }
            let Ok(batch) = self.full_rx.try_recv() else {
                break;
            };
            self.pair_one(batch)?;
        }
        Ok(false)
    }

    /// Messages waiting for the writing thread.
    fn events_queued(&self) -> usize {
        match &self.sink.out_to {
            Out::Channel { tx, .. } => tx.len(),
            Out::Direct(_) => 0,
        }
    }

    /// [`Pairing::reader_last`]'s batches: all that are left.
    fn rest(&mut self) -> Result<bool> {
        while let Ok(batch) = self.full_rx.recv() {
            self.pair_one(batch)?;
        }
        Ok(true)
    }
}

/// Batches the pairing stage of a two-thread replay paired on each thread.
#[derive(Clone, Copy, Debug, Default)]
struct PairedBy {
    reader: u64,
    writer: u64,
}

/// The pairing stage of a two-thread replay, behind a lock: whichever
/// thread holds it alone takes the reader's batches and sends the flow
/// events, so batches are paired and events sent in the order of one
/// pairing thread. The writing thread pairs when its events run out, the
/// reader when its batches queue up; a holder sends the events it queued
/// before letting go, and the reader wakes the writing thread once it has
/// let go ([`float_read_stage`]).
struct Pairing<'i, 'w> {
    /// `None` once finished (or stopped on an error): dropping it drops the
    /// sink's sender, which tells the writing thread that everything was
    /// sent, and the batch queue's ends, which stops the reader.
    stage: Option<PairingStage<'i, 'w>>,
    /// What the sink counted, once finished.
    counts: Option<SinkCounts>,
    /// Batches paired by the reader and by the writing thread.
    paired_by: PairedBy,
    /// Set once everything is paired and sent, or the stage stopped.
    done: &'w AtomicBool,
    floating: Floating,
}

impl<'i, 'w> Pairing<'i, 'w> {
    /// The writing thread's turn (it has no events left): pairs up to
    /// `hold_batches`, and waits for one only when it has nothing at all to
    /// do (no batch paired yet, no event queued). Finishes the stage when
    /// the reader is done and every batch is paired.
    fn writer_turn(&mut self) -> Result<()> {
        let hold = self.floating.hold_batches;
        self.turn(false, |stage| stage.writer_turn(hold))
            .map(|_| ())
    }

    /// The reader's turn (at least `reader_queued_min` batches wait): pairs
    /// while `reader_keep_min` batches and `reader_events_min` messages for
    /// the writing thread wait, `hold_batches` at most. `true` when batches
    /// are left for the writing thread to pair.
    fn reader_turn(&mut self) -> Result<bool> {
        let f = self.floating;
        self.turn(true, |stage| {
            stage.reader_turn(f.hold_batches, f.reader_keep_min, f.reader_events_min)
        })
    }

    /// The reader read everything (its end of the queue is closed): pairs
    /// what is left and finishes.
    fn reader_last(&mut self) -> Result<()> {
        self.turn(true, PairingStage::rest).map(|_| ())
    }

    /// A turn of the reader's (`by_reader`) or the writing thread's: `pair`
    /// on the stage if it still runs, its batches counted for that thread,
    /// then [`Pairing::let_go`] (`true`: batches are left).
    fn turn(
        &mut self,
        by_reader: bool,
        pair: impl FnOnce(&mut PairingStage<'i, 'w>) -> Result<bool>,
    ) -> Result<bool> {
        let Some(stage) = &mut self.stage else {
            return Ok(false);
        };
        let before = stage.paired;
        let r = pair(stage);
        let paired = stage.paired - before;
        if by_reader {
            self.paired_by.reader += paired;
        } else {
            self.paired_by.writer += paired;
        }
        self.let_go(r)
    }

    /// Ends a turn whose batches gave `r`: stops the stage on an error (the
    /// writing thread went away), finishes it if everything was read and
    /// paired, else sends the events queued so far. `true` when batches are
    /// left to pair (the reader then wakes the writing thread, once the
    /// stage is free).
    fn let_go(&mut self, r: Result<bool>) -> Result<bool> {
        let Some(stage) = &mut self.stage else {
            return r.map(|_| false);
        };
        match r {
            Ok(true) => {
                let finished = stage.sink.finish();
                self.counts = Some(stage.sink.counts());
                self.stop();
                finished.map(|()| false)
            }
            Ok(false) => {
                let sent = stage.sink.drain();
                if sent.is_err() {
                    self.stop();
                }
                let left = self.stage.as_ref().is_some_and(|s| !s.full_rx.is_empty());
                sent.map(|()| left)
            }
            Err(e) => {
                self.stop();
                Err(e)
            }
        }
    }

    /// Ends the stage: the writing thread's channel closes (after what was
    /// sent), the reader's sends and waits fail.
    fn stop(&mut self) {
        self.stage = None;
        self.done.store(true, Ordering::Release);
    }
}

/// Two threads: the reading thread's loop. Reads, merges, decodes and
/// prepares packets into batches of [`PACKETS_PER_BATCH`] as
/// [`read_stage`] does (its loop body repeated, not shared: the shared
/// forms tried cost the three-thread reader 1–2 instructions a packet in
/// the merge, round 20's review), pairs some itself while they queue up (the writing
/// thread is behind), and once it has read everything pairs the rest
/// (waiting for the writing thread to let go first). The pairing error, if
/// any, comes with the summary.
fn float_read_stage<'i>(
    mut reader: Reader<'i, 'i>,
    bar: &ProgressBar,
    full_tx: crossbeam_channel::Sender<Vec<Line<'i>>>,
    empty_rx: crossbeam_channel::Receiver<Vec<Line<'i>>>,
    pairing: &Mutex<Pairing<'i, '_>>,
    wake: &crossbeam_channel::Sender<()>,
    floating: Floating,
) -> (Summary, Result<()>) {
    let mut batches = 0u64;
    let mut paired = Ok(());
    // A batch comes back from the pairing stage, or (if it stopped on an
    // error) the replay ends here.
    while let Ok(mut batch) = empty_rx.recv() {
        batch.resize(PACKETS_PER_BATCH, Line(Item::Tick(0)));
        // Decode here while batches wait, else leave it to the pairing
        // stage's holder (as the three-thread reader does).
        let filled = if full_tx.len() >= floating.decode_queued_min {
            fill::<true>(&mut reader, &mut batch)
        } else {
            fill::<false>(&mut reader, &mut batch)
        };
        batch.truncate(filled);
        let last = filled < PACKETS_PER_BATCH;
        if !batch.is_empty() && full_tx.send(batch).is_err() {
            break;
        }
        batches += 1;
        if batches.is_multiple_of((PACKETS_PER_TICK / PACKETS_PER_BATCH as u64).max(1)) {
            bar.set_position(reader.position());
            bar.set_message(format!("{} packets", reader.summary.packets));
        }
        if last {
            break;
        }
        if full_tx.len() >= floating.reader_queued_min {
            if let Ok(mut p) = pairing.try_lock() {
                let turn = p.reader_turn();
                #[cfg(test)]
                if let Some(held) = floating.reader_holds_for {
                    std::thread::sleep(held);
                }
                drop(p);
                match turn {
                    // Batches are left: wake the writing thread if it waits,
                    // once the stage is free. A writing thread that found the
                    // stage held sleeps only until this token comes (or an
                    // older one it has not taken yet, after which it tries
                    // the stage again), so none is lost: a token sent while
                    // the stage was still held could be taken by the writing
                    // thread, which then still found the stage held and
                    // slept with no token to come (a hang once the reader
                    // then waited on a full queue).
                    Ok(true) => {
                        let _ = wake.try_send(());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        paired = Err(e);
                        break;
                    }
                }
            }
        }
    }
    // The end of the queue: the stage's holder sees it once it is empty.
    drop(full_tx);
    if paired.is_ok() {
        paired = pairing
            .lock()
            .expect("no thread panics holding the pairing stage")
            .reader_last();
    }
    (reader.finish(), paired)
}

/// Two threads: the writing thread's loop while the pairing stage runs.
/// Applies the pairing stage's messages as [`write_stage`] does, and when
/// none is queued pairs batches itself if the stage is free, else waits for
/// a message or a wake-up (the holder let go with batches left). Once the
/// stage is done, [`write_stage`] takes what is left (and the tail). Stops at
/// the first store error (the caller then stops the pairing stage).
fn float_write_stage<'i>(
    writer: &mut Writer,
    mut flows: Correlator,
    pairing: &Mutex<Pairing<'i, '_>>,
    rx: crossbeam_channel::Receiver<ToWriter>,
    empty: crossbeam_channel::Sender<Vec<FlowEvent>>,
    wake: crossbeam_channel::Receiver<()>,
) -> Result<WriteCounts> {
    let mut out: Vec<Mapping> = Vec::with_capacity(SINK_MAPPINGS_MAX * 4);
    let mut counts = (0, 0);
    let (done, _floating) = {
        let p = pairing
            .lock()
            .expect("no thread panics holding the pairing stage");
        (p.done, p.floating)
    };
    #[cfg(test)]
    let mut taken = 0u64;
    let mut appends = Appends::Here(&mut *writer);
    while !done.load(Ordering::Acquire) {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                match pairing.try_lock() {
                    Ok(mut p) => {
                        p.writer_turn()?;
                        continue;
                    }
                    Err(std::sync::TryLockError::WouldBlock) => {
                        #[cfg(test)]
                        if _floating.fail_when_held_after.is_some_and(|n| taken >= n) {
                            anyhow::bail!("store error (injected while the reader pairs)");
                        }
                    }
                    Err(std::sync::TryLockError::Poisoned(_)) => {
                        panic!("no thread panics holding the pairing stage")
                    }
                }
                crossbeam_channel::select! {
                    recv(rx) -> msg => match msg {
                        Ok(msg) => msg,
                        Err(_) => break,
                    },
                    recv(wake) -> _ => continue,
                }
            }
        };
        take_message(&mut appends, &mut flows, msg, &empty, &mut out, &mut counts)?;
        #[cfg(test)]
        {
            taken += 1;
            if _floating.fail_after.is_some_and(|n| taken >= n) {
                anyhow::bail!("store error (injected)");
            }
        }
    }
    // A cut between two appends: a log's bytes do not depend on it.
    appends.append(&mut out, &mut counts)?;
    drop(appends);
    let rest = write_stage(writer, flows, rx, empty, done, TAIL_APPEND_QUEUED_MIN)?;
    Ok(WriteCounts {
        flows: rest.flows,
        mappings: counts.0 + rest.mappings,
        mappings_at_capture_end: counts.1 + rest.mappings_at_capture_end,
    })
}

/// A two-thread replay: the reading thread (spawned) and this one, the
/// writing thread (the flow table, appends, seals), with the pairing stage
/// floating between them ([`Pairing`]). What it read and counted.
fn run_floating<'i>(
    inputs: &'i [Input],
    rules: &'i SideRules,
    cfg: CorrelatorConfig,
    preparer: Preparer,
    writer: &mut Writer,
    bar: &ProgressBar,
    floating: Floating,
) -> Result<(Summary, SinkCounts, PairedBy)> {
    let (full_tx, full_rx) = crossbeam_channel::bounded::<Vec<Line<'i>>>(BATCHES_IN_FLIGHT_MAX);
    let (empty_tx, empty_rx) =
        crossbeam_channel::bounded::<Vec<Line<'i>>>(BATCHES_IN_FLIGHT_MAX + 2);
    for _ in 0..BATCHES_IN_FLIGHT_MAX + 2 {
        let _ = empty_tx.send(Vec::with_capacity(PACKETS_PER_BATCH));
    }
    let (to_writer, from_sink) =
        crossbeam_channel::bounded::<ToWriter>(FLOW_EVENT_BATCHES_IN_FLIGHT_MAX);
    let (back_tx, back_rx) =
        crossbeam_channel::bounded::<Vec<FlowEvent>>(FLOW_EVENT_BATCHES_IN_FLIGHT_MAX + 2);
    // Wakes the writing thread when it waits for events but batches are left
    // to pair (bound 1: one token is enough). Kept here, so the writing
    // thread's end of it never closes.
    let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(1);
    let sink = Sink::new(
        Correlator::try_new_pairing(cfg.clone())?,
        Out::Channel {
            tx: to_writer,
            empty: back_rx,
        },
        Some(Decoding::new(rules, preparer.clone())),
    );
    let flows = Correlator::try_new_flows(cfg)?;
    let reader = Reader::new(inputs, rules, preparer, false);
    let done = AtomicBool::new(false);
    let pairing = Mutex::new(Pairing {
        stage: Some(PairingStage {
            sink,
            full_rx,
            empty_tx,
            paired: 0,
        }),
        counts: None,
        paired_by: PairedBy::default(),
        done: &done,
        floating,
    });
    std::thread::scope(|scope| -> Result<(Summary, SinkCounts, PairedBy)> {
        let (pairing, wake) = (&pairing, &wake_tx);
        let producer = std::thread::Builder::new()
            .name("natrec-read".into())
            .spawn_scoped(scope, move || {
                float_read_stage(reader, bar, full_tx, empty_rx, pairing, wake, floating)
            })?;
        let written = float_write_stage(writer, flows, pairing, from_sink, back_tx, wake_rx);
        // On an error (the events' receiver is gone now, so a holder's sends
        // fail) the stage stops, which stops the reader.
        if written.is_err() {
            pairing
                .lock()
                .expect("no thread panics holding the pairing stage")
                .stop();
        }
        let (summary, paired) = producer.join().expect("reader thread does not panic");
        // The writer's own error first: a pairing that could not hand over
        // its events stopped because of it.
        let written = written?;
        paired?;
        let (counts, paired_by) = {
            let mut p = pairing
                .lock()
                .expect("no thread panics holding the pairing stage");
            (p.counts.take(), p.paired_by)
        };
        let mut counts = counts.expect("a pairing stage that did not stop finished");
        counts.correlator = counts.correlator.merged(&written.flows);
        counts.mappings = written.mappings;
        counts.mappings_at_capture_end = written.mappings_at_capture_end;
        Ok((summary, counts, paired_by))
    })
}

/// Replays `inputs` into `writer`. Errors from a capture stop that file only
/// (reported in the summary); store errors stop the replay.
///
/// `threads` = 1: one loop does everything. `threads` = 2: a reader thread
/// (merge, decode, sides) hands batches of [`PACKETS_PER_BATCH`] packets to
/// the pairing stage, which floats between it and this thread (the flow
/// table, write, seal: [`run_floating`]). 3 or more: reader, pairing thread
/// and this thread. All give the same store and summary.
pub fn run(
    inputs: &[Input],
    rules: &SideRules,
    cfg: CorrelatorConfig,
    writer: &mut Writer,
    progress: bool,
    threads: usize,
) -> Result<Summary> {
    run_with(
        inputs,
        rules,
        cfg,
        writer,
        progress,
        threads,
        Floating::DEFAULT,
    )
}

/// [`run`], the two-thread pipeline's pairing stage floating as `floating`
/// says.
fn run_with(
    inputs: &[Input],
    rules: &SideRules,
    cfg: CorrelatorConfig,
    writer: &mut Writer,
    progress: bool,
    threads: usize,
    floating: Floating,
) -> Result<Summary> {
    let started = Instant::now();
    let total_bytes: u64 = inputs.iter().map(|i| i.file.len_bytes()).sum();
    let bar = if progress {
        ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} replay [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}")
            .expect("valid template"),
    );

    // The replay's appends (a batch per tick, ~375 records) are written
    // out 384 KiB at a time, and before every sync and seal: the same
    // calls, the same store bytes after every flush (`Writer::set_write_behind`).
    writer.set_write_behind(true)?;
    let preparer = Preparer::new(&cfg);
    let (mut summary, sink) = match threads {
        0 | 1 => {
            let correlator = Correlator::try_new(cfg)?;
            let mut sink = Sink::new(correlator, Out::Direct(&mut *writer), None);
            let mut reader = Reader::new(inputs, rules, preparer, true);
            // Each packet is read one ahead of the one correlated, so its
            // pending-table entries are loading while the one before is
            // correlated (a hint: the order is the same either way). Two
            // slots, taking turns, so no item is copied; what each holds is
            // the `Got` of its read, kept here.
            let (mut x, mut y) = (OneSlot::EMPTY, OneSlot::EMPTY);
            let mut got = reader.next_into_with(&mut x, true, |_| {});
            while got != Got::End {
                got = one_ahead(&mut reader, &mut sink, got, &x, &mut y, &bar)?;
                if got == Got::End {
                    break;
                }
                got = one_ahead(&mut reader, &mut sink, got, &y, &mut x, &bar)?;
            }
            sink.finish()?;
            (reader.finish(), sink.counts())
        }
        2 => {
            let (summary, counts, _) =
                run_floating(inputs, rules, cfg, preparer, writer, &bar, floating)?;
            (summary, counts)
        }
        _ => {
            let (full_tx, full_rx) =
                crossbeam_channel::bounded::<Vec<Line<'_>>>(BATCHES_IN_FLIGHT_MAX);
            let (empty_tx, empty_rx) =
                crossbeam_channel::bounded::<Vec<Line<'_>>>(BATCHES_IN_FLIGHT_MAX + 2);
            for _ in 0..BATCHES_IN_FLIGHT_MAX + 2 {
                let _ = empty_tx.send(Vec::with_capacity(PACKETS_PER_BATCH));
            }
            let (to_writer, from_sink) =
                crossbeam_channel::bounded::<ToWriter>(FLOW_EVENT_BATCHES_IN_FLIGHT_MAX);
            let (back_tx, back_rx) =
                crossbeam_channel::bounded::<Vec<FlowEvent>>(FLOW_EVENT_BATCHES_IN_FLIGHT_MAX + 2);
            // The correlator split in two: pairing on the correlating thread,
            // the flow table on the writing thread (`write_stage`).
            let pairing = Correlator::try_new_pairing(cfg.clone())?;
            let flows = Correlator::try_new_flows(cfg)?;
            // The reader decodes and prepares while this thread is behind, and
            // leaves it to this thread otherwise (`DECODE_HERE_QUEUED_MIN`).
            let mut sink = Sink::new(
                pairing,
                Out::Channel {
                    tx: to_writer,
                    empty: back_rx,
                },
                Some(Decoding::new(rules, preparer.clone())),
            );
            let reader = Reader::new(inputs, rules, preparer, false);
            let writer = &mut *writer;
            // Set by the pairing thread once it has sent everything.
            let pairing_done = AtomicBool::new(false);
            std::thread::scope(|scope| -> Result<(Summary, SinkCounts)> {
                let bar = &bar;
                let pairing_done = &pairing_done;
                let producer = scope.spawn(move || read_stage(reader, bar, full_tx, empty_rx));
                let correlating = scope.spawn(move || {
                    let r = correlate_stage(&mut sink, &full_rx, &empty_tx);
                    pairing_done.store(true, Ordering::Release);
                    // Dropping the sink (its sender) tells the writer that
                    // everything was sent; closing our ends stops the reader
                    // on an error.
                    let counts = sink.counts();
                    drop(sink);
                    drop(full_rx);
                    drop(empty_tx);
                    (r, counts)
                });
                let written = write_stage(
                    writer,
                    flows,
                    from_sink,
                    back_tx,
                    pairing_done,
                    TAIL_APPEND_QUEUED_MIN,
                );
                let (correlated, mut counts) = correlating
                    .join()
                    .expect("correlating thread does not panic");
                let summary = producer.join().expect("reader thread does not panic");
                // The writer's own error first: a correlating thread that
                // could not hand over its events stopped because of it.
                let written = written?;
                correlated?;
                counts.correlator = counts.correlator.merged(&written.flows);
                counts.mappings = written.mappings;
                counts.mappings_at_capture_end = written.mappings_at_capture_end;
                Ok((summary, counts))
            })?
        }
    };
    bar.finish_and_clear();

    for (reason, n) in sink.skipped {
        *summary.skipped.entry(reason).or_insert(0) += n;
    }
    summary.correlator = sink.correlator;
    writer.set_write_behind(false)?;
    summary.writer = writer.stats();
    summary.mappings = sink.mappings;
    summary.mappings_at_capture_end = sink.mappings_at_capture_end;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Reads the next packet of `head` into `head.next` (`live` says whether there
/// was one); a capture error ends
/// that file and is kept for the summary. A file that ended, failed or was
/// stopped ([`Packets::stop`]) reads nothing more.
#[inline(always)]
fn pull<'a>(head: &mut Head<'a>, summary: &mut Summary) {
    head.live = head.packets.read_into(&mut head.next);
    if !head.live {
        if let Some(e) = head.packets.take_error() {
            summary.capture_errors.push(format!("{e}"));
        }
    }
}

/// [`pull`] of a head that is `live` (the one the merge took): `live` is
/// written only when the file has no next packet (one store a packet less).
#[inline(always)]
fn pull_live<'a>(head: &mut Head<'a>, summary: &mut Summary) {
    debug_assert!(head.live);
    if !head.packets.read_into(&mut head.next) {
        head.live = false;
        if let Some(e) = head.packets.take_error() {
            summary.capture_errors.push(format!("{e}"));
        }
    }
}

/// Opens every capture, failing on the first that cannot be opened.
pub fn open_inputs(
    files: &[PathBuf],
    inside: &[PathBuf],
    outside: &[PathBuf],
) -> Result<Vec<Input>> {
    let mut v = Vec::new();
    for (list, side) in [
        (files, Side::Unknown),
        (inside, Side::Inside),
        (outside, Side::Outside),
    ] {
        for p in list {
            v.push(Input {
                file: CaptureFile::open(p)?,
                side,
            });
        }
    }
    Ok(v)
}

impl Summary {
    /// Human-readable summary, one fact a line, units stated.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let c = &self.correlator;
        let w = &self.writer;
        let mut s = String::new();
        let rate = if self.elapsed_s > 0.0 {
            self.packets as f64 / self.elapsed_s
        } else {
            0.0
        };
        let _ = writeln!(s, "packets read:        {}", self.packets);
        if let Some((a, b)) = self.span_ns {
            let _ = writeln!(
                s,
                "capture span:        {} .. {}",
                crate::timefmt::format_utc(a),
                crate::timefmt::format_utc(b)
            );
        }
        let skipped: u64 = self.skipped.values().sum();
        let _ = writeln!(
            s,
            "not decoded:         {skipped}{}",
            reasons(self.skipped.iter().map(|(k, v)| (*k, *v)))
        );
        let _ = writeln!(
            s,
            "translated packets:  {} (pairs of copies)",
            c.paired_copies / 2
        );
        let _ = writeln!(
            s,
            "mappings:            {} ({} still active when the capture ended)",
            self.mappings, self.mappings_at_capture_end
        );
        let unmatched = [
            ("no-outside-copy", c.unmatched_inside),
            ("no-inside-copy", c.unmatched_outside),
            ("untranslated", c.untranslated),
            ("duplicate-copy", c.duplicate_copies),
            ("subscriber-to-subscriber", c.subscriber_to_subscriber),
            ("no-subscriber-address", c.not_subscriber_inside),
            ("pending-evicted", c.pending_evicted),
            ("pending-key-full", c.pending_key_full),
        ];
        let total: u64 = unmatched.iter().map(|(_, n)| n).sum();
        let _ = writeln!(
            s,
            "not paired:          {total}{}",
            reasons(unmatched.into_iter())
        );
        let _ = writeln!(
            s,
            "flows evicted:       {} (at flows_active_max)",
            c.flows_evicted
        );
        let _ = writeln!(
            s,
            "store:               {} records, {} partitions sealed, {} carried over, {} late, {} bytes written",
            w.records_appended, w.partitions_sealed, w.carried, w.late_records, w.bytes_written
        );
        let _ = writeln!(
            s,
            "elapsed:             {:.3} s ({:.0} packets/s)",
            self.elapsed_s, rate
        );
        s
    }

    /// The summary as JSON (stable field names).
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.correlator;
        let w = &self.writer;
        serde_json::json!({
            "packets": self.packets,
            "bytes": self.bytes,
            "first_packet": self.span_ns.map(|s| crate::timefmt::format_utc(s.0)),
            "last_packet": self.span_ns.map(|s| crate::timefmt::format_utc(s.1)),
            "skipped": self.skipped,
            "translated_packets": c.paired_copies / 2,
            "mappings": self.mappings,
            "mappings_at_capture_end": self.mappings_at_capture_end,
            "unmatched": {
                "no-outside-copy": c.unmatched_inside,
                "no-inside-copy": c.unmatched_outside,
                "untranslated": c.untranslated,
                "duplicate-copy": c.duplicate_copies,
                "subscriber-to-subscriber": c.subscriber_to_subscriber,
                "no-subscriber-address": c.not_subscriber_inside,
                "pending-evicted": c.pending_evicted,
                "pending-key-full": c.pending_key_full,
            },
            "flows_evicted": c.flows_evicted,
            "records_appended": w.records_appended,
            "partitions_sealed": w.partitions_sealed,
            "elapsed_s": self.elapsed_s,
            "capture_errors": self.capture_errors,
        })
    }
}

fn reasons<'a>(it: impl Iterator<Item = (&'a str, u64)>) -> String {
    let parts: Vec<String> = it
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natrec_storage::{Store, StoreConfig};

    /// What a pairing sink sent, in order, as text (`FlowEvent` is opaque).
    fn sent(rx: &crossbeam_channel::Receiver<ToWriter>) -> Vec<String> {
        rx.try_iter()
            .map(|m| match m {
                ToWriter::Events(batch) => format!("events {batch:?}"),
                ToWriter::Advance(ts) => format!("advance {ts}"),
            })
            .collect()
    }

    /// A pairing sink as the three-thread replay makes one, its messages
    /// queued on an unbounded channel.
    fn pairing_sink<'r>(
        cfg: &CorrelatorConfig,
        rules: &'r SideRules,
    ) -> (Sink<'r>, crossbeam_channel::Receiver<ToWriter>) {
        let (tx, rx) = crossbeam_channel::unbounded::<ToWriter>();
        let (_, back_rx) = crossbeam_channel::unbounded::<Vec<FlowEvent>>();
        let sink = Sink::new(
            Correlator::try_new_pairing(cfg.clone()).unwrap(),
            Out::Channel { tx, empty: back_rx },
            Some(Decoding::new(rules, Preparer::new(cfg))),
        );
        (sink, rx)
    }

    /// A batch's items ([`Line`]s of 64-byte [`Item`]s, round 19: the side
    /// in the packet's `Prepared`, a raw packet as a [`RawItem`]) give the
    /// correlator the inputs the one-thread loop's slots give: the same
    /// packets' times, sides and prepared fields, and the same ticks, in
    /// order, decoded by the reader or handed over raw and decoded as the
    /// correlating thread does, for the three link layers natrec-gen writes
    /// (sides by file, by VLAN and by SLL2 interface index), IPv4 and IPv6.
    #[test]
    fn batch_items_give_the_one_thread_loops_inputs() {
        #[derive(Debug, PartialEq)]
        enum In {
            Packet(i64, Side, Prepared),
            Tick(i64),
        }
        // The packet with its side byte cleared (the one-thread slot keeps
        // the side beside it) and the side as the push takes it.
        let packet = |ts: i64, side: Side, p: &Prepared| {
            let mut p = *p;
            p.set_side(Side::Unknown);
            In::Packet(ts, side, p)
        };
        let dir = tempfile::tempdir().unwrap();
        for (link, ip) in [
            ("two-eth", "4"),
            ("vlan", "4"),
            ("sll2", "4"),
            ("two-eth", "6"),
        ] {
            let gen = dir.path().join(format!("{link}-{ip}"));
            natrec_tools::gen::run(
                [
                    "--out",
                    gen.to_str().unwrap(),
                    "--packets",
                    "6000",
                    "--seed",
                    "7",
                    "--link",
                    link,
                    "--ip",
                    ip,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            )
            .unwrap();
            let mut rules = SideRules::default();
            let open = || match link {
                "two-eth" => {
                    open_inputs(&[], &[gen.join("inside.pcap")], &[gen.join("outside.pcap")])
                }
                _ => open_inputs(&[gen.join("capture.pcap")], &[], &[]),
            };
            match link {
                "vlan" => (rules.inside_vlans, rules.outside_vlans) = (vec![10], vec![20]),
                "sll2" => {
                    rules.inside_interfaces = vec![IfaceSel::Index(2)];
                    rules.outside_interfaces = vec![IfaceSel::Index(3)];
                }
                _ => {}
            }
            let cfg = CorrelatorConfig::default();
            let inputs = open().unwrap();
            let mut reader = Reader::new(&inputs, &rules, Preparer::new(&cfg), true);
            let mut one = Vec::new();
            let mut slot = OneSlot::EMPTY;
            loop {
                match reader.next_into_with(&mut slot, true, |_| {}) {
                    Got::Packet => one.push(packet(slot.ts, slot.side, &slot.p)),
                    Got::Tick => one.push(In::Tick(slot.ts)),
                    Got::End => break,
                }
            }
            let sides = |side| {
                one.iter()
                    .filter(|i| matches!(i, In::Packet(_, s, _) if *s == side))
                    .count()
            };
            assert!(
                sides(Side::Inside) > 1000 && sides(Side::Outside) > 1000,
                "{link} IPv{ip}: {} inputs",
                one.len()
            );
            for decode in [true, false] {
                let inputs = open().unwrap();
                let mut reader = Reader::new(&inputs, &rules, Preparer::new(&cfg), true);
                let mut decoding = Decoding::new(&rules, Preparer::new(&cfg));
                let mut batched = Vec::new();
                loop {
                    let mut batch = vec![Line(Item::Tick(0)); 1000];
                    let filled = if decode {
                        fill::<true>(&mut reader, &mut batch)
                    } else {
                        fill::<false>(&mut reader, &mut batch)
                    };
                    for Line(item) in &batch[..filled] {
                        let mut decoded = Item::Tick(0);
                        let item = match item {
                            Item::Raw(raw) => {
                                decoding.item_into(
                                    raw.file_side,
                                    &raw.packet(),
                                    &mut decoded,
                                    |_| {},
                                );
                                &decoded
                            }
                            _ => item,
                        };
                        batched.push(match item {
                            Item::Packet(ts, p) => packet(*ts, p.side(), p),
                            Item::Tick(ts) => In::Tick(*ts),
                            Item::Raw(..) => unreachable!("decoded above"),
                        });
                    }
                    if filled < batch.len() {
                        break;
                    }
                }
                assert_eq!(one.len(), batched.len(), "{link} IPv{ip} decode {decode}");
                assert!(one == batched, "{link} IPv{ip} decode {decode}");
            }
        }
    }

    /// [`pair_batch`] (round 14: the tick countdown a run at a time) sends
    /// the pairing thread's messages exactly as round 13's loop did
    /// ([`Sink::push`] an item at a time, then a drain at
    /// [`FLOW_EVENTS_PER_BATCH`] events), for batches cut anywhere (ticks
    /// inside a batch, at its end, batches longer than a tick's run, the
    /// replay's own 1 024), packets decoded by the reader or left raw, batch
    /// by batch. Cuts from a fixed-seed generator (no proptest in this crate).
    #[test]
    fn pair_batch_sends_what_the_item_loop_sent() {
        let dir = tempfile::tempdir().unwrap();
        let gen = dir.path().join("gen");
        natrec_tools::gen::run(
            [
                "--out",
                gen.to_str().unwrap(),
                "--packets",
                "30000",
                "--seed",
                "5",
                "--link",
                "two-eth",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
        .unwrap();
        let inputs =
            open_inputs(&[], &[gen.join("inside.pcap")], &[gen.join("outside.pcap")]).unwrap();
        let mut cfg = CorrelatorConfig::default();
        cfg.hold.udp_s = 2;
        cfg.hold.tcp_closed_s = 2;
        cfg.hold.icmp_s = 2;
        let rules = SideRules::default();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for case in 0..10 {
            // Batch lengths and decode choices: the replay's own in case 0,
            // else random lengths below, around and above a tick's 4 096.
            let mut cut = |_: usize| -> (usize, bool) {
                match case {
                    0 => (PACKETS_PER_BATCH, true),
                    1 => (PACKETS_PER_TICK as usize, next() % 2 == 0),
                    _ => (1 + (next() % 9000) as usize, next() % 4 != 0),
                }
            };
            let mut reader = Reader::new(&inputs, &rules, Preparer::new(&cfg), true);
            let mut batches: Vec<Vec<Line<'_>>> = Vec::new();
            for b in 0.. {
                let (len, decode) = cut(b);
                let mut batch = vec![Line(Item::Tick(0)); len];
                let filled = if decode {
                    fill::<true>(&mut reader, &mut batch)
                } else {
                    fill::<false>(&mut reader, &mut batch)
                };
                batch.truncate(filled);
                if !batch.is_empty() {
                    batches.push(batch);
                }
                if filled < len {
                    break;
                }
            }
            let (mut old, old_rx) = pairing_sink(&cfg, &rules);
            for batch in &batches {
                for Line(item) in batch {
                    old.push(item).unwrap();
                    if old.correlator.events_len() >= FLOW_EVENTS_PER_BATCH {
                        old.drain().unwrap();
                    }
                }
            }
            old.finish().unwrap();
            let (mut new, new_rx) = pairing_sink(&cfg, &rules);
            for batch in &batches {
                pair_batch(&mut new, batch).unwrap();
            }
            new.finish().unwrap();
            let (old_sent, new_sent) = (sent(&old_rx), sent(&new_rx));
            let advances = old_sent.iter().filter(|m| m.starts_with("advance")).count();
            assert!(advances >= 7, "case {case}: {advances} ticks");
            assert!(
                old_sent.len() > advances + 7,
                "case {case}: {} messages",
                old_sent.len()
            );
            assert_eq!(old_sent, new_sent, "case {case}");
        }
    }

    /// The pairing part's messages for a generated capture (natrec-gen:
    /// 40 000 packets, idle scans closing flows every second), queued as a
    /// three-thread replay sends them, handed to [`write_stage`] with the
    /// pairing thread done from the start: with the tail's append thread
    /// (from the first message, `tail_queued_min` 1) and without it, the
    /// store's sealed bytes and the counts are the same.
    #[test]
    fn tail_append_thread_writes_what_the_writing_thread_writes() {
        let dir = tempfile::tempdir().unwrap();
        let gen = dir.path().join("gen");
        natrec_tools::gen::run(
            [
                "--out",
                gen.to_str().unwrap(),
                "--packets",
                "40000",
                "--seed",
                "3",
                "--link",
                "two-eth",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
        .unwrap();
        let mut results = Vec::new();
        for (name, done, queued_min) in [("direct", false, 1), ("tail", true, 1)] {
            let inputs =
                open_inputs(&[], &[gen.join("inside.pcap")], &[gen.join("outside.pcap")]).unwrap();
            let mut cfg = CorrelatorConfig::default();
            cfg.hold.udp_s = 2;
            cfg.hold.tcp_closed_s = 2;
            cfg.hold.icmp_s = 2;
            let rules = SideRules::default();
            let (tx, rx) = crossbeam_channel::unbounded::<ToWriter>();
            let (back_tx, back_rx) = crossbeam_channel::unbounded::<Vec<FlowEvent>>();
            let mut sink = Sink::new(
                Correlator::try_new_pairing(cfg.clone()).unwrap(),
                Out::Channel { tx, empty: back_rx },
                None,
            );
            let mut reader = Reader::new(&inputs, &rules, Preparer::new(&cfg), true);
            let mut item = Item::Tick(0);
            let mut pushed = 0;
            while reader.next_into(&mut item) {
                sink.push(&item).unwrap();
                pushed += 1;
                // Small batches, so that many messages queue.
                if pushed % 16 == 0 {
                    sink.drain().unwrap();
                }
            }
            sink.finish().unwrap();
            drop(sink);
            // More than one: the tail path starts after the first.
            assert!(rx.len() >= 4, "{} messages queued", rx.len());
            let store_dir = dir.path().join(name);
            let store = Store::create(&store_dir, StoreConfig::default()).unwrap();
            let mut writer = store.writer().unwrap();
            let flows = Correlator::try_new_flows(cfg).unwrap();
            let counts = write_stage(
                &mut writer,
                flows,
                rx,
                back_tx,
                &AtomicBool::new(done),
                queued_min,
            )
            .unwrap();
            drop(writer);
            let mut parts: Vec<_> = std::fs::read_dir(store_dir.join("partitions"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "part"))
                .collect();
            parts.sort();
            assert!(!parts.is_empty());
            let bytes: Vec<Vec<u8>> = parts.iter().map(|p| std::fs::read(p).unwrap()).collect();
            results.push((
                counts.mappings,
                counts.mappings_at_capture_end,
                counts.flows,
                bytes,
            ));
        }
        assert!(results[0].0 > 0);
        assert_eq!(results[0], results[1]);
    }

    /// A generated capture (two Ethernet files) for the two-thread tests,
    /// with short hold times so that flows end (idle scans, many events).
    fn float_capture(dir: &std::path::Path, packets: u64) -> (PathBuf, CorrelatorConfig) {
        let gen = dir.join("gen");
        natrec_tools::gen::run(
            [
                "--out",
                gen.to_str().unwrap(),
                "--packets",
                &packets.to_string(),
                "--seed",
                "5",
                "--link",
                "two-eth",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
        .unwrap();
        let mut cfg = CorrelatorConfig::default();
        cfg.hold.udp_s = 2;
        cfg.hold.tcp_closed_s = 2;
        cfg.hold.icmp_s = 2;
        (gen, cfg)
    }

    /// The sealed `.part` files of a store, in name order.
    fn parts_of(store_dir: &std::path::Path) -> Vec<Vec<u8>> {
        let mut parts: Vec<_> = std::fs::read_dir(store_dir.join("partitions"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "part"))
            .collect();
        parts.sort();
        parts.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// The two-thread pipeline, its pairing stage handed over at every batch
    /// (each thread pairs one batch at a time, the reader as soon as one
    /// waits), left to the writing thread with every packet undecoded, or to
    /// the reader with every packet decoded, and with the defaults: the same
    /// sealed bytes, mappings and correlator counters as the one-thread loop.
    #[test]
    fn floating_pairing_stage_writes_what_one_thread_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (gen, cfg) = float_capture(dir.path(), 40_000);
        let rules = SideRules::default();
        let inputs =
            || open_inputs(&[], &[gen.join("inside.pcap")], &[gen.join("outside.pcap")]).unwrap();
        let one_dir = dir.path().join("one");
        let one = {
            let store = Store::create(&one_dir, StoreConfig::default()).unwrap();
            let mut writer = store.writer().unwrap();
            run(&inputs(), &rules, cfg.clone(), &mut writer, false, 1).unwrap()
        };
        let want = parts_of(&one_dir);
        assert!(!want.is_empty() && one.mappings > 0);
        // Each thread pairs a batch at a time, the reader as soon as one
        // waits; every packet is handed over raw (the reader is the faster,
        // so batches wait and both threads pair).
        let every_batch = Floating {
            hold_batches: 1,
            reader_queued_min: 1,
            reader_keep_min: 1,
            reader_events_min: 0,
            decode_queued_min: usize::MAX,
            fail_when_held_after: None,
            fail_after: None,
            reader_holds_for: None,
        };
        let mut floated = false;
        for (name, floating, attempts) in [
            ("every-batch", every_batch, 10),
            (
                "writer-pairs",
                Floating {
                    reader_queued_min: usize::MAX,
                    ..every_batch
                },
                1,
            ),
            (
                "reader-decodes",
                Floating {
                    decode_queued_min: 0,
                    ..every_batch
                },
                1,
            ),
            // The reader takes the stage but pairs none while fewer than 2
            // messages wait for the writing thread; once it holds the stage
            // it pairs while 8 batches wait.
            (
                "reader-gated",
                Floating {
                    hold_batches: 8,
                    reader_queued_min: 2,
                    reader_keep_min: 1,
                    reader_events_min: 2,
                    ..every_batch
                },
                1,
            ),
            ("default", Floating::DEFAULT, 1),
        ] {
            for attempt in 0..attempts {
                let name = format!("{name}-{attempt}");
                let inputs = inputs();
                let store_dir = dir.path().join(&name);
                let store = Store::create(&store_dir, StoreConfig::default()).unwrap();
                let mut writer = store.writer().unwrap();
                writer.set_write_behind(true).unwrap();
                let (summary, counts, paired_by) = run_floating(
                    &inputs,
                    &rules,
                    cfg.clone(),
                    Preparer::new(&cfg),
                    &mut writer,
                    &ProgressBar::hidden(),
                    floating,
                )
                .unwrap();
                writer.set_write_behind(false).unwrap();
                drop(writer);
                assert_eq!(summary.packets, one.packets, "{name}");
                assert_eq!(counts.mappings, one.mappings, "{name}");
                assert_eq!(
                    counts.mappings_at_capture_end, one.mappings_at_capture_end,
                    "{name}"
                );
                assert_eq!(counts.correlator, one.correlator, "{name}");
                assert!(parts_of(&store_dir) == want, "{name}: sealed bytes differ");
                // Every batch paired once, by one thread or the other.
                let batches = one.packets.div_ceil(PACKETS_PER_BATCH as u64);
                assert_eq!(paired_by.reader + paired_by.writer, batches, "{name}");
                if floating.hold_batches == 1 && floating.reader_queued_min == 1 {
                    // The stage changed hands: both threads paired.
                    floated |= paired_by.reader > 0 && paired_by.writer > 0;
                }
                std::fs::remove_dir_all(&store_dir).unwrap();
                if floated {
                    break;
                }
            }
        }
        assert!(floated, "the pairing stage never changed hands");
    }

    /// A store error on the writing thread ends the two-thread replay with
    /// that error, both threads stopped, nothing hung (a run that passes a
    /// minute fails the test), nothing panicked: injected the first time the
    /// writing thread finds the pairing stage held by the reader (which then
    /// fails to send its events), and once it has taken 8 messages while the
    /// reader never pairs (the reader then fills the batch queue, more
    /// batches than it holds, and waits on it until the stage stops).
    #[test]
    fn a_store_error_on_the_writing_thread_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let batches = BATCHES_IN_FLIGHT_MAX as u64 + 40;
        let (gen, cfg) = float_capture(dir.path(), batches * PACKETS_PER_BATCH as u64);
        let floating = Floating {
            hold_batches: 1,
            reader_queued_min: 1,
            reader_keep_min: 1,
            reader_events_min: 0,
            decode_queued_min: 1,
            fail_when_held_after: None,
            fail_after: None,
            reader_holds_for: None,
        };
        let replay = |name: &str, floating: Floating| {
            let store_dir = dir.path().join(name);
            let (gen, cfg) = (gen.clone(), cfg.clone());
            let (tx, rx) = crossbeam_channel::bounded(1);
            std::thread::spawn(move || {
                let inputs =
                    open_inputs(&[], &[gen.join("inside.pcap")], &[gen.join("outside.pcap")])
                        .unwrap();
                let store = Store::create(&store_dir, StoreConfig::default()).unwrap();
                let mut writer = store.writer().unwrap();
                let r = run_with(
                    &inputs,
                    &SideRules::default(),
                    cfg,
                    &mut writer,
                    false,
                    2,
                    floating,
                );
                let _ = tx.send(r.map(|s| s.packets).map_err(|e| e.to_string()));
            });
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("the replay ends")
        };
        let mut failed = 0;
        for attempt in 0..20 {
            // Raw packets: the reader is the faster and pairs.
            let held = Floating {
                decode_queued_min: usize::MAX,
                fail_when_held_after: Some(8),
                ..floating
            };
            match replay(&format!("held-{attempt}"), held) {
                Err(e) => {
                    assert!(e.contains("injected while the reader pairs"), "{e}");
                    failed += 1;
                }
                // The writing thread never found the stage held.
                Ok(packets) => assert!(packets > 0),
            }
            if failed >= 2 {
                break;
            }
        }
        assert!(failed >= 1, "the error was never injected");
        let queued = Floating {
            reader_queued_min: usize::MAX,
            decode_queued_min: 0,
            fail_after: Some(8),
            ..floating
        };
        let e = replay("queued", queued).unwrap_err();
        assert!(e.contains("store error (injected)"), "{e}");
    }

    /// The writing thread sleeps (the stage held, no event to apply) only
    /// when a wake-up is sure to come. Here the reader takes the stage after
    /// every batch it sends but pairs none (its turns wait for events that
    /// the writing thread never leaves queued), so its wake-up is the only
    /// thing that can wake the writing thread, and it keeps the stage a
    /// while after each turn, so the writing thread finds it held and
    /// sleeps; it sends more batches than the queue holds. A wake-up sent
    /// before the stage is free is taken by a writing thread that then finds
    /// the stage still held and sleeps with none to come, and the reader
    /// then waits on a full queue (a hang). Each run is watched for a
    /// minute.
    #[test]
    fn the_writing_thread_is_woken_whenever_the_reader_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let batches = BATCHES_IN_FLIGHT_MAX as u64 + 40;
        let (gen, cfg) = float_capture(dir.path(), batches * PACKETS_PER_BATCH as u64);
        let floating = Floating {
            hold_batches: 1,
            reader_queued_min: 1,
            reader_keep_min: 1,
            reader_events_min: usize::MAX,
            decode_queued_min: usize::MAX,
            fail_when_held_after: None,
            fail_after: None,
            reader_holds_for: Some(std::time::Duration::from_micros(200)),
        };
        for attempt in 0..3 {
            let store_dir = dir.path().join(format!("wake-{attempt}"));
            let (gen, cfg) = (gen.clone(), cfg.clone());
            let (tx, rx) = crossbeam_channel::bounded(1);
            std::thread::spawn(move || {
                let inputs =
                    open_inputs(&[], &[gen.join("inside.pcap")], &[gen.join("outside.pcap")])
                        .unwrap();
                let store = Store::create(&store_dir, StoreConfig::default()).unwrap();
                let mut writer = store.writer().unwrap();
                let r = run_floating(
                    &inputs,
                    &SideRules::default(),
                    cfg.clone(),
                    Preparer::new(&cfg),
                    &mut writer,
                    &ProgressBar::hidden(),
                    floating,
                )
                .map(|(summary, _, paired_by)| (summary.packets, paired_by));
                drop(writer);
                let _ = std::fs::remove_dir_all(&store_dir);
                let _ = tx.send(r.map_err(|e| e.to_string()));
            });
            let (packets, paired_by) = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("run {attempt} hung"))
                .unwrap();
            // More batches than the queue holds, each paired once.
            let sent = packets.div_ceil(PACKETS_PER_BATCH as u64);
            assert!(sent > BATCHES_IN_FLIGHT_MAX as u64 + 2, "{sent}");
            assert_eq!(paired_by.reader + paired_by.writer, sent);
        }
    }

    /// The reader, holding the pairing stage, pairs a batch only while at
    /// least `reader_events_min` messages wait for the writing thread (else
    /// the writing thread would run out of work while it waits for the
    /// stage), and, once it pairs, goes on while `reader_keep_min` batches
    /// wait (below the `reader_queued_min` that made it take the stage), at
    /// most `hold_batches`; it reports whether batches are left for the
    /// writing thread.
    #[test]
    fn the_readers_turn_pairs_while_batches_and_the_writers_messages_wait() {
        let cfg = CorrelatorConfig::default();
        let rules = SideRules::default();
        let (sink, events) = pairing_sink(&cfg, &rules);
        let Out::Channel { tx: to_writer, .. } = &sink.out_to else {
            unreachable!("a pairing sink sends to the writing thread")
        };
        let to_writer = to_writer.clone();
        let (full_tx, full_rx) = crossbeam_channel::unbounded::<Vec<Line<'_>>>();
        let (empty_tx, _empty_rx) = crossbeam_channel::unbounded::<Vec<Line<'_>>>();
        for _ in 0..20 {
            full_tx.send(vec![Line(Item::Tick(0))]).unwrap();
        }
        let done = AtomicBool::new(false);
        let mut pairing = Pairing {
            stage: Some(PairingStage {
                sink,
                full_rx,
                empty_tx,
                paired: 0,
            }),
            counts: None,
            paired_by: PairedBy::default(),
            done: &done,
            floating: Floating {
                hold_batches: 8,
                reader_queued_min: 16,
                reader_keep_min: 8,
                reader_events_min: 2,
                ..Floating::DEFAULT
            },
        };
        let queued = |p: &Pairing<'_, '_>| p.stage.as_ref().unwrap().full_rx.len();
        // One message waits for the writing thread: no batch paired.
        to_writer.send(ToWriter::Advance(0)).unwrap();
        assert!(pairing.reader_turn().unwrap());
        assert_eq!((pairing.paired_by.reader, queued(&pairing)), (0, 20));
        // Two: 8 batches (the hold), then down to 7 left (the keep).
        to_writer.send(ToWriter::Advance(0)).unwrap();
        assert!(pairing.reader_turn().unwrap());
        assert_eq!((pairing.paired_by.reader, queued(&pairing)), (8, 12));
        assert!(pairing.reader_turn().unwrap());
        assert_eq!((pairing.paired_by.reader, queued(&pairing)), (13, 7));
        assert!(pairing.reader_turn().unwrap());
        assert_eq!(pairing.paired_by.reader, 13);
        // The writing thread took its messages: none paired.
        while events.try_recv().is_ok() {}
        let left = queued(&pairing);
        for _ in 0..left {
            full_tx.send(vec![Line(Item::Tick(0))]).unwrap();
        }
        assert!(pairing.reader_turn().unwrap());
        assert_eq!(pairing.paired_by.reader, 13);
        assert!(!done.load(Ordering::Acquire));
    }
}
