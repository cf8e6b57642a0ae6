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
//! `natrec-corrmem --dir /var/tmp/nb10`

use std::alloc::System;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use anyhow::{Context, Result};
use natrec_capture::correlate::{Correlator, CorrelatorConfig, CorrelatorMemory, Side};
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
        println!("usage: natrec-corrmem --dir DIR (a natrec-gen --link two-eth directory)\n\nReplays DIR's two files through the correlator alone under a counting allocator and\nprints the bytes held by structure at the peak of active flows, and a digest of the mappings.");
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
    let mut c = Correlator::new(cfg);
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
            c.push(pkt.ts_ns, heads[i].1, &d, &mut out);
        } else {
            c.advance(pkt.ts_ns, &mut out);
        }
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
    c.finish(&mut out);
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
        ("total", m.total()),
    ] {
        println!("  {name:<14} {b:>11} bytes {:>6.1} per active flow", per(b));
    }
    println!(
        "peak correlator bytes allocated or mapped {peak_bytes} = {:.1} bytes per peak active flow",
        peak_bytes as f64 / peak_flows.max(1) as f64
    );
    println!("mappings emitted: digest {:016x}", digest.finish());
    println!("final counters: {s:?}");
    Ok(())
}
