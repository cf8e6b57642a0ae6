//! `natrec-corrmem`: RAM per active correlator flow, measured honestly.
//!
//! Replays `inside.pcap` and `outside.pcap` of a `natrec-gen --link two-eth`
//! directory through the correlator alone (merge by timestamp, decode,
//! correlate; no store) under a counting global allocator, and reports the
//! bytes allocated at the moment the number of active flows peaked, divided
//! by that peak. Everything the correlator holds is in the figure: the flow
//! table, the pending copies, the expiry queue and the growth slack of each.
//! The flow slab is not allocated but mapped (its own anonymous map, in
//! huge pages): its resident size as the correlator reports it
//! (`CorrelatorMemory::mapped`, the slots handed out rounded up to 4 KiB)
//! is added to the allocator's count.
//! The reader's own allocations are measured before the first packet and
//! subtracted.
//!
//! `natrec-corrmem --dir /var/tmp/nb10 [--split]`
//!
//! `--split`: the correlator as the three-thread replay runs it, a pairing
//! part and a flow part joined by batches of flow events (handed over at
//! the replay's batch size, on one thread here); both parts' memory and the
//! one batch of events being filled are counted (the replay may hold up to
//! `FLOW_EVENT_BATCHES_IN_FLIGHT_MAX` batches while its writing thread is
//! behind: a bound, printed beside the figure).

use std::alloc::System;
use std::hash::{Hash, Hasher};
use std::mem::size_of;
use std::path::PathBuf;

use anyhow::{Context, Result};
use natrec_capture::correlate::{
    Correlator, CorrelatorConfig, CorrelatorMemory, CorrelatorStats, FlowEvent, Side,
};
use natrec_capture::decode::decode;
use natrec_capture::source::CaptureFile;
use natrec_storage::{HoldTimes, Mapping};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts every allocation (stats_alloc: the counting wrapper is the crate's,
/// so this binary adds no `unsafe`).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated through the global allocator and not yet freed
/// (stats_alloc already adds a realloc's growth to `bytes_allocated` and its
/// shrinking to `bytes_deallocated`).
fn allocated_bytes() -> usize {
    let s = GLOBAL.stats();
    s.bytes_allocated - s.bytes_deallocated
}

/// `--split`: events handed from the pairing part to the flow part at once
/// (the replay's `FLOW_EVENTS_PER_BATCH`).
const SPLIT_EVENTS_PER_BATCH: usize = 1024;
/// `--split`: batches the replay may hold in flight at most (its
/// `FLOW_EVENT_BATCHES_IN_FLIGHT_MAX`), each of `SPLIT_EVENTS_PER_BATCH` + 2.
const SPLIT_BATCHES_IN_FLIGHT_MAX: usize = 64;

/// The correlator measured: one, or split in two as the three-thread replay
/// runs it (the flow part fed the pairing part's events in batches).
struct Measured {
    one: Correlator,
    /// `--split`: the flow part (`one` is then the pairing part).
    flows: Option<Correlator>,
    events: Vec<FlowEvent>,
}

impl Measured {
    /// Moves the queued events to the flow part (all of them, or once a
    /// batch is full).
    fn hand_over(&mut self, all: bool, out: &mut Vec<Mapping>) {
        if let Some(f) = &mut self.flows {
            if all || self.one.events_len() >= SPLIT_EVENTS_PER_BATCH {
                self.one.take_events(&mut self.events);
                f.apply_events(&self.events, out);
                self.events.clear();
            }
        }
    }

    fn stats(&self) -> CorrelatorStats {
        match &self.flows {
            Some(f) => self.one.stats().merged(&f.stats()),
            None => self.one.stats(),
        }
    }

    fn memory(&self) -> CorrelatorMemory {
        let a = self.one.memory();
        let Some(f) = &self.flows else {
            return a;
        };
        let b = f.memory();
        CorrelatorMemory {
            flow_slab: a.flow_slab + b.flow_slab,
            flow_index: a.flow_index + b.flow_index,
            expiry: a.expiry + b.expiry,
            pending: a.pending + b.pending,
            v6_names: a.v6_names + b.v6_names,
            flow_events: a.flow_events
                + b.flow_events
                + self.events.capacity() * size_of::<FlowEvent>(),
            mapped: a.mapped + b.mapped,
        }
    }
}

/// Flows and bytes are sampled once per this many packets.
const SAMPLE_EVERY_PACKETS: u64 = 4096;

fn hold_from_gen(dir: &std::path::Path) -> Result<HoldTimes> {
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("gen.json")).context("reading gen.json")?)?;
    let h = &g["hold_s"];
    let s = |k: &str| {
        h[k].as_u64()
            .map(|v| v as u32)
            .context("hold_s in gen.json")
    };
    Ok(HoldTimes {
        tcp_closed_s: s("tcp_closed")?,
        tcp_open_s: s("tcp_open")?,
        udp_s: s("udp")?,
        udp_stream_s: s("udp_stream")?,
        icmp_s: s("icmp")?,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: natrec-corrmem --dir DIR [--split] (a natrec-gen --link two-eth directory)\n\nReplays DIR's two files through the correlator alone under a counting allocator and\nprints the bytes held by structure at the peak of active flows, and a digest of the mappings.\n--split: the correlator as the three-thread replay runs it (pairing part, flow part, events between).");
        return Ok(());
    }
    let dir = PathBuf::from(
        args.iter()
            .position(|a| a == "--dir")
            .and_then(|i| args.get(i + 1))
            .context("usage: natrec-corrmem --dir DIR (a natrec-gen --link two-eth directory)")?,
    );
    let files = [
        (CaptureFile::open(&dir.join("inside.pcap"))?, Side::Inside),
        (CaptureFile::open(&dir.join("outside.pcap"))?, Side::Outside),
    ];
    let cfg = CorrelatorConfig {
        hold: hold_from_gen(&dir)?,
        ..CorrelatorConfig::default()
    };
    let mut heads: Vec<_> = files.iter().map(|(f, s)| (f.packets(), *s)).collect();
    let mut next: Vec<_> = heads.iter_mut().map(|(p, _)| p.next()).collect();
    let mut out: Vec<Mapping> = Vec::with_capacity(1 << 16);
    let base = allocated_bytes();
    let split = args.iter().any(|a| a == "--split");
    let mut c = if split {
        Measured {
            one: Correlator::try_new_pairing(cfg.clone())?,
            flows: Some(Correlator::try_new_flows(cfg)?),
            events: Vec::with_capacity(SPLIT_EVENTS_PER_BATCH + 2),
        }
    } else {
        Measured {
            one: Correlator::new(cfg),
            flows: None,
            events: Vec::new(),
        }
    };
    let (mut peak_flows, mut bytes_at_peak, mut peak_bytes) = (0u64, 0usize, 0usize);
    let mut packets = 0u64;
    let (mut pending_at_peak, mut peak_pending) = (0u64, 0u64);
    // Every mapping emitted, in order: two builds that emit the same
    // mappings in the same order print the same digest.
    let mut digest = std::hash::DefaultHasher::new();
    let mut memory_at_peak = CorrelatorMemory::default();
    // The earliest head each time; ties go to the earlier file (as replay).
    while let Some(i) = (0..next.len())
        .filter(|&i| matches!(next[i], Some(Ok(_))))
        .min_by_key(|&i| next[i].as_ref().map(|r| r.as_ref().map(|p| p.ts_ns).ok()))
    {
        let pkt = next[i].take().expect("some").expect("ok");
        next[i] = heads[i].0.next();
        packets += 1;
        if let Ok(d) = decode(pkt.linktype, pkt.data) {
            c.one.push(pkt.ts_ns, heads[i].1, &d, &mut out);
        } else {
            c.one.advance(pkt.ts_ns, &mut out);
        }
        c.hand_over(false, &mut out);
        for m in &out {
            m.hash(&mut digest);
        }
        out.clear();
        if packets.is_multiple_of(SAMPLE_EVERY_PACKETS) {
            let flows = c.stats().flows_active;
            let bytes = allocated_bytes() - base + c.memory().mapped;
            peak_bytes = peak_bytes.max(bytes);
            if flows > peak_flows {
                peak_flows = flows;
                bytes_at_peak = bytes;
                pending_at_peak = c.stats().pending;
                memory_at_peak = c.memory();
            }
            peak_pending = peak_pending.max(c.stats().pending);
        }
    }
    c.one.finish(&mut out);
    c.hand_over(true, &mut out);
    if let Some(f) = &mut c.flows {
        f.finish(&mut out);
    }
    for m in &out {
        m.hash(&mut digest);
    }
    let s = c.stats();
    println!("packets {packets}, mappings opened {}", s.mappings_opened);
    println!(
        "peak active flows {peak_flows}; correlator bytes allocated or mapped then {bytes_at_peak} = {:.1} bytes per active flow",
        bytes_at_peak as f64 / peak_flows.max(1) as f64
    );
    println!("copies pending then {pending_at_peak}; most copies pending at once {peak_pending}");
    let m = &memory_at_peak;
    let per = |b: usize| b as f64 / peak_flows.max(1) as f64;
    println!("by structure then (capacities, as the correlator reports them):");
    for (name, b) in [
        ("flow slab", m.flow_slab),
        ("flow index", m.flow_index),
        ("expiry", m.expiry),
        ("pending copies", m.pending),
        ("IPv6 names", m.v6_names),
        ("flow events", m.flow_events),
        ("total", m.total()),
    ] {
        println!("  {name:<14} {b:>11} bytes {:>6.1} per active flow", per(b));
    }
    println!(
        "peak correlator bytes allocated or mapped {peak_bytes} = {:.1} bytes per peak active flow",
        peak_bytes as f64 / peak_flows.max(1) as f64
    );
    if split {
        println!(
            "split: without the flow-event buffers (a constant, {} bytes then): {:.1} bytes per active flow",
            m.flow_events,
            (bytes_at_peak - m.flow_events) as f64 / peak_flows.max(1) as f64
        );
        let in_flight = SPLIT_BATCHES_IN_FLIGHT_MAX
            * (SPLIT_EVENTS_PER_BATCH + 2)
            * std::mem::size_of::<FlowEvent>();
        println!(
            "split: the replay's flow-event batches in flight, at most (writing thread behind) {in_flight} bytes = {:.1} per peak active flow here",
            in_flight as f64 / peak_flows.max(1) as f64
        );
    }
    println!("mappings emitted: digest {:016x}", digest.finish());
    println!("final counters: {s:?}");
    Ok(())
}
