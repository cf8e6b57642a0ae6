//! The live recorder (feature `live`): capture threads → correlator thread
//! → writer thread, connected by bounded crossbeam channels carrying
//! batches. ARCHITECTURE.md, "Live path", draws it with every bound.
//!
//! * one capture thread per interface (or one on `any`) reads packets from
//!   libpcap into batches (`batch_packets_max`, `batch_wait_ms`) and
//!   `try_send`s them to the correlator (`queue_batches_max`). A full queue
//!   never blocks the kernel ring: the batch is dropped, counted, and its
//!   interval becomes a gap record. Every `stats_interval_ms` the kernel's
//!   drop counters are read; growth becomes a gap too.
//! * the correlator thread merges batches by timestamp in a reorder buffer
//!   (`reorder_window_ms`, `reorder_packets_max`), decodes, correlates, and
//!   sends mapping batches to the writer (`mapping_queue_batches_max`; at the
//!   bound it waits, and the capture queue absorbs or counts the rest).
//! * the writer thread owns the store [`Writer`]: appends mappings and gaps,
//!   seals partitions on the wall clock (`Writer::advance`, also when idle).
//!
//! SIGTERM/SIGINT: capture threads stop, the correlator drains its buffer
//! and closes every active flow as `capture-end` at its last packet, the
//! writer flushes. Partitions stay active; a restart resumes them (closing
//! what a crash left open, and writing a `recorder-down` gap). SIGHUP
//! reopens the log file.

use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use natrec_capture::correlate::{Correlator, Preparer, Side};
use natrec_capture::live::{LiveCapture, LiveConfig, LiveStats};
use natrec_capture::source::RawPacket;
use natrec_storage::{Gap, GapKind, Mapping, Store, Writer};

use crate::record::Settings;
use crate::replay::{IfaceSel, SideRules};

/// How often the correlator and writer threads wake up when idle.
const TICK_MS: u64 = 10;
/// How often the writer moves its clock (seals partitions) and flushes if due.
const WRITER_ADVANCE_MS: u64 = 200;
/// Mappings per batch sent to the writer.
const MAPPING_BATCH_MAX: usize = 256;
/// Mapping batches the writer appends in one call at most: the batches
/// already queued when it takes one go to the files together (one `pwrite`
/// per log for up to 16 × 256 mappings, ~384 KiB), which costs the kernel
/// less per record than a write per batch when the writer falls behind.
const WRITER_BATCHES_PER_CALL_MAX: usize = 16;
/// Bytes of an HTTP request the metrics responder reads at most.
const METRICS_REQUEST_BYTES_MAX: usize = 8192;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

// ------------------------------------------------------------------ logging

struct Log {
    path: Option<PathBuf>,
    file: Option<std::fs::File>,
}

static LOG: OnceLock<Mutex<Log>> = OnceLock::new();

/// Writes one line to the log (stderr, or the log file).
pub fn log(msg: &str) {
    let line = format!(
        "{} natrec record: {msg}\n",
        crate::timefmt::format_utc(now_ns())
    );
    let Some(l) = LOG.get() else {
        eprint!("{line}");
        return;
    };
    let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
    match l.file.as_mut() {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => eprint!("{line}"),
    }
}

fn log_open(path: Option<PathBuf>) -> Result<()> {
    let file = match &path {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open log file {}", p.display()))?,
        ),
        None => None,
    };
    let _ = LOG.set(Mutex::new(Log { path, file }));
    Ok(())
}

fn log_reopen() {
    if let Some(l) = LOG.get() {
        let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = l.path.clone() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
            {
                Ok(f) => l.file = Some(f),
                Err(e) => eprintln!("natrec record: reopen log {}: {e}", p.display()),
            }
        }
    }
    log("SIGHUP: log reopened");
}

// ------------------------------------------------------------------ metrics

/// Counters of one capture.
#[derive(Default)]
struct CaptureMetrics {
    device: String,
    packets: AtomicU64,
    kernel_dropped: AtomicU64,
    if_dropped: AtomicU64,
    queue_dropped: AtomicU64,
    batches_queue_dropped: AtomicU64,
}

/// Everything the metrics endpoint shows; updated by the threads.
#[derive(Default)]
struct Metrics {
    captures: Vec<CaptureMetrics>,
    packets_correlated: AtomicU64,
    packets_not_decoded: AtomicU64,
    reorder_forced: AtomicU64,
    reorder_late: AtomicU64,
    reorder_packets: AtomicU64,
    mappings_opened: AtomicU64,
    mappings_closed: AtomicU64,
    flows_active: AtomicU64,
    pending_copies: AtomicU64,
    pending_evicted: AtomicU64,
    flows_evicted: AtomicU64,
    records_appended: AtomicU64,
    gaps_written: AtomicU64,
    gap_packets: AtomicU64,
    partitions_sealed: AtomicU64,
    partitions_active: AtomicU64,
    public_outside_pool: AtomicU64,
    last_packet_ns: AtomicU64,
    capture_queue_batches: AtomicU64,
    mapping_queue_batches: AtomicU64,
    started_ns: AtomicU64,
}

impl Metrics {
    fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(o, "# HELP natrec_{name} {help}");
            let _ = writeln!(o, "# TYPE natrec_{name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(o, "natrec_{name}{labels} {v}");
            }
        };
        let per = |f: &dyn Fn(&CaptureMetrics) -> u64| -> Vec<(String, u64)> {
            self.captures
                .iter()
                .map(|c| (format!("{{interface=\"{}\"}}", c.device), f(c)))
                .collect()
        };
        let one = |a: &AtomicU64| vec![(String::new(), a.load(Relaxed))];
        metric(
            "packets_captured_total",
            "counter",
            "Packets read from the kernel.",
            per(&|c| c.packets.load(Relaxed)),
        );
        metric(
            "packets_dropped_total",
            "counter",
            "Packets lost, by where (each loss is also a gap record in the store).",
            {
                let mut v = Vec::new();
                for c in &self.captures {
                    for (k, a) in [
                        ("kernel", &c.kernel_dropped),
                        ("interface", &c.if_dropped),
                        ("queue", &c.queue_dropped),
                    ] {
                        v.push((
                            format!("{{interface=\"{}\",where=\"{k}\"}}", c.device),
                            a.load(Relaxed),
                        ));
                    }
                }
                v.push((
                    "{interface=\"\",where=\"correlator\"}".into(),
                    self.pending_evicted.load(Relaxed),
                ));
                v
            },
        );
        metric(
            "batches_dropped_total",
            "counter",
            "Capture batches dropped because queue_batches_max was reached.",
            per(&|c| c.batches_queue_dropped.load(Relaxed)),
        );
        metric(
            "packets_correlated_total",
            "counter",
            "Packets handed to the correlator.",
            one(&self.packets_correlated),
        );
        metric(
            "packets_not_decoded_total",
            "counter",
            "Packets that could not be decoded (not IP, truncated, ...).",
            one(&self.packets_not_decoded),
        );
        metric(
            "reorder_forced_total",
            "counter",
            "Packets released early because reorder_packets_max was reached.",
            one(&self.reorder_forced),
        );
        metric(
            "reorder_late_total",
            "counter",
            "Packets that arrived after later packets had been released.",
            one(&self.reorder_late),
        );
        metric(
            "mappings_opened_total",
            "counter",
            "Mappings confirmed.",
            one(&self.mappings_opened),
        );
        metric(
            "mappings_closed_total",
            "counter",
            "Mappings ended.",
            one(&self.mappings_closed),
        );
        metric(
            "flows_evicted_total",
            "counter",
            "Flows closed at flows_active_max.",
            one(&self.flows_evicted),
        );
        metric(
            "mappings_public_outside_pool_total",
            "counter",
            "Mappings whose public address is outside public_pool.",
            one(&self.public_outside_pool),
        );
        metric(
            "records_appended_total",
            "counter",
            "Mapping records appended to the store.",
            one(&self.records_appended),
        );
        metric(
            "gaps_written_total",
            "counter",
            "Gap records written to the store.",
            one(&self.gaps_written),
        );
        metric(
            "gap_packets_total",
            "counter",
            "Packets lost according to the gap records written.",
            one(&self.gap_packets),
        );
        metric(
            "partitions_sealed_total",
            "counter",
            "Partitions sealed by this process.",
            one(&self.partitions_sealed),
        );
        metric(
            "partitions_active",
            "gauge",
            "Active (writable) partitions.",
            one(&self.partitions_active),
        );
        metric(
            "flows_active",
            "gauge",
            "Flows the correlator holds.",
            one(&self.flows_active),
        );
        metric(
            "pending_copies",
            "gauge",
            "Packet copies waiting for their twin.",
            one(&self.pending_copies),
        );
        metric(
            "queue_depth_batches",
            "gauge",
            "Batches waiting in each queue.",
            vec![
                (
                    "{queue=\"capture\"}".into(),
                    self.capture_queue_batches.load(Relaxed),
                ),
                (
                    "{queue=\"mapping\"}".into(),
                    self.mapping_queue_batches.load(Relaxed),
                ),
            ],
        );
        metric(
            "reorder_buffer_packets",
            "gauge",
            "Packets in the reorder buffer.",
            one(&self.reorder_packets),
        );
        metric(
            "last_packet_timestamp_seconds",
            "gauge",
            "Timestamp of the last packet correlated.",
            vec![(
                String::new(),
                self.last_packet_ns.load(Relaxed) / 1_000_000_000,
            )],
        );
        metric(
            "start_timestamp_seconds",
            "gauge",
            "When this recorder started.",
            vec![(String::new(), self.started_ns.load(Relaxed) / 1_000_000_000)],
        );
        o
    }
}

fn serve_metrics(listener: TcpListener, m: Arc<Metrics>) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while req.len() < METRICS_REQUEST_BYTES_MAX && !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let body = m.render();
        let ok = req.starts_with(b"GET /metrics") || req.starts_with(b"GET / ");
        let head = if ok { "200 OK" } else { "404 Not Found" };
        let body = if ok { body } else { "try /metrics\n".into() };
        let _ = write!(
            s,
            "HTTP/1.0 {head}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

// ------------------------------------------------------------------ batches

#[derive(Clone, Copy)]
struct PktMeta {
    ts_ns: i64,
    linktype: u16,
    orig_len: u32,
    start: u32,
    len: u32,
}

/// Packets of one capture, copied into one buffer (no allocation per packet),
/// plus losses to report.
struct Batch {
    side: Side,
    meta: Vec<PktMeta>,
    data: Vec<u8>,
    gaps: Vec<Gap>,
}

impl Batch {
    fn new(side: Side, packets_max: usize, snaplen: u32) -> Batch {
        Batch {
            side,
            meta: Vec::with_capacity(packets_max),
            data: Vec::with_capacity(packets_max * snaplen as usize),
            gaps: Vec::new(),
        }
    }
}

/// Turns the growth of the kernel's drop counters since `last` (kernel,
/// interface) into gaps over `during` and into metrics; returns the counters
/// now.
fn account_drops(
    s: &LiveStats,
    last: (u64, u64),
    during: (i64, i64),
    kernel_gap: &mut Option<Gap>,
    iface_gap: &mut Option<Gap>,
    cm: &CaptureMetrics,
) -> (u64, u64) {
    let (kd, id) = (s.dropped - last.0, s.if_dropped - last.1);
    if kd > 0 {
        merge_gap(kernel_gap, during.0, during.1, kd, GapKind::Kernel);
        cm.kernel_dropped.fetch_add(kd, Relaxed);
    }
    if id > 0 {
        merge_gap(iface_gap, during.0, during.1, id, GapKind::Interface);
        cm.if_dropped.fetch_add(id, Relaxed);
    }
    (s.dropped, s.if_dropped)
}

/// A gap being accumulated: merged until reported.
fn merge_gap(slot: &mut Option<Gap>, from: i64, to: i64, count: u64, kind: GapKind) {
    match slot {
        Some(g) => {
            g.from_ns = g.from_ns.min(from);
            g.to_ns = g.to_ns.max(to);
            g.count += count;
        }
        None => {
            *slot = Some(Gap {
                from_ns: from,
                to_ns: to.max(from),
                count,
                kind,
            })
        }
    }
}

struct CaptureCtx {
    index: usize,
    side: Side,
    tx: Sender<Batch>,
    stop: Arc<AtomicBool>,
    fatal: Arc<AtomicBool>,
    m: Arc<Metrics>,
    batch_packets_max: usize,
    batch_wait: Duration,
    stats_interval: Duration,
    snaplen: u32,
}

fn capture_thread(mut cap: LiveCapture, c: CaptureCtx) {
    let cm = &c.m.captures[c.index];
    let mut batch = Batch::new(c.side, c.batch_packets_max, c.snaplen);
    let mut batch_started = Instant::now();
    let mut last_stats = Instant::now();
    let mut last_stats_ns = now_ns();
    let mut kernel = (0u64, 0u64);
    // Losses not yet handed to the correlator (the queue may be full).
    let mut queue_gap: Option<Gap> = None;
    let mut kernel_gap: Option<Gap> = None;
    let mut iface_gap: Option<Gap> = None;
    let send = |batch: &mut Batch,
                qg: &mut Option<Gap>,
                kg: &mut Option<Gap>,
                ig: &mut Option<Gap>,
                last: bool| {
        if batch.meta.is_empty() && qg.is_none() && kg.is_none() && ig.is_none() {
            return;
        }
        let mut b = std::mem::replace(batch, Batch::new(c.side, c.batch_packets_max, c.snaplen));
        b.gaps.extend(qg.take());
        b.gaps.extend(kg.take());
        b.gaps.extend(ig.take());
        let r = if last {
            c.tx.send_timeout(b, Duration::from_secs(2))
                .map_err(|e| match e {
                    crossbeam_channel::SendTimeoutError::Timeout(b)
                    | crossbeam_channel::SendTimeoutError::Disconnected(b) => b,
                })
        } else {
            c.tx.try_send(b).map_err(|e| match e {
                TrySendError::Full(b) | TrySendError::Disconnected(b) => b,
            })
        };
        if let Err(b) = r {
            // Queue full: the packets are lost; say when and how many.
            let n = b.meta.len() as u64;
            if n > 0 {
                let (from, to) = (b.meta[0].ts_ns, b.meta[b.meta.len() - 1].ts_ns);
                merge_gap(qg, from, to, n, GapKind::Queue);
                cm.queue_dropped.fetch_add(n, Relaxed);
                cm.batches_queue_dropped.fetch_add(1, Relaxed);
            }
            // Keep the losses it carried for the next batch.
            for g in b.gaps {
                let slot = match g.kind {
                    GapKind::Kernel => &mut *kg,
                    GapKind::Interface => &mut *ig,
                    _ => &mut *qg,
                };
                merge_gap(slot, g.from_ns, g.to_ns, g.count, g.kind);
            }
        }
    };
    loop {
        if c.stop.load(Relaxed) {
            break;
        }
        match cap.next_packet() {
            Ok(Some(p)) => {
                let start = batch.data.len() as u32;
                batch.data.extend_from_slice(p.data);
                batch.meta.push(PktMeta {
                    ts_ns: p.ts_ns,
                    linktype: p.linktype,
                    orig_len: p.orig_len,
                    start,
                    len: p.data.len() as u32,
                });
                cm.packets.fetch_add(1, Relaxed);
                if batch.meta.len() == 1 {
                    batch_started = Instant::now();
                }
            }
            Ok(None) => {}
            Err(e) => {
                log(&format!("{e}"));
                let t = now_ns();
                merge_gap(&mut queue_gap, last_stats_ns, t, 0, GapKind::Capture);
                c.fatal.store(true, Relaxed);
                c.stop.store(true, Relaxed);
                break;
            }
        }
        if batch.meta.len() >= c.batch_packets_max
            || (!batch.meta.is_empty() && batch_started.elapsed() >= c.batch_wait)
        {
            send(
                &mut batch,
                &mut queue_gap,
                &mut kernel_gap,
                &mut iface_gap,
                false,
            );
        }
        if last_stats.elapsed() >= c.stats_interval {
            let t = now_ns();
            match cap.stats() {
                Ok(s) => {
                    kernel = account_drops(
                        &s,
                        kernel,
                        (last_stats_ns, t),
                        &mut kernel_gap,
                        &mut iface_gap,
                        cm,
                    );
                }
                Err(e) => log(&format!("{e}")),
            }
            last_stats = Instant::now();
            last_stats_ns = t;
            send(
                &mut batch,
                &mut queue_gap,
                &mut kernel_gap,
                &mut iface_gap,
                false,
            );
        }
    }
    // Final kernel counters, then the rest, waiting a little for room.
    if let Ok(s) = cap.stats() {
        account_drops(
            &s,
            kernel,
            (last_stats_ns, now_ns()),
            &mut kernel_gap,
            &mut iface_gap,
            cm,
        );
    }
    send(
        &mut batch,
        &mut queue_gap,
        &mut kernel_gap,
        &mut iface_gap,
        true,
    );
    if queue_gap.is_some() || kernel_gap.is_some() || iface_gap.is_some() {
        // Still no room after waiting: one more try with the losses only.
        send(
            &mut batch,
            &mut queue_gap,
            &mut kernel_gap,
            &mut iface_gap,
            true,
        );
    }
    log(&format!("capture on {} stopped", cap.device()));
}

// ------------------------------------------------------------------ correlator

enum ToWriter {
    Mappings(Vec<Mapping>),
    Gap(Gap),
}

struct CorrelateCtx {
    rx: Receiver<Batch>,
    tx: Sender<ToWriter>,
    rules: SideRules,
    /// Decodes and prepares each packet in one pass (the same fast path as replay).
    preparer: Preparer,
    correlator: Correlator,
    reorder_window_ns: i64,
    reorder_packets_max: usize,
    stats_interval: Duration,
    m: Arc<Metrics>,
}

fn correlate_thread(mut c: CorrelateCtx) -> Result<()> {
    // (Reverse(ts), Reverse(seq)) → earliest first; seq keeps arrival order on ties.
    let mut heap: BinaryHeap<std::cmp::Reverse<(i64, u64, u64, u32)>> = BinaryHeap::new();
    let mut batches: HashMap<u64, (Batch, usize)> = HashMap::new();
    let mut next_batch = 0u64;
    let mut seq = 0u64;
    let mut out: Vec<Mapping> = Vec::with_capacity(MAPPING_BATCH_MAX);
    let mut last_released = i64::MIN;
    let mut last_report = Instant::now();
    let mut last_report_ns = now_ns();
    let mut evicted_reported = 0u64;
    let mut draining = false;
    let send = |tx: &Sender<ToWriter>, msg: ToWriter| -> Result<()> {
        tx.send(msg)
            .map_err(|_| anyhow::anyhow!("the writer thread stopped"))
    };
    loop {
        let mut got = match c.rx.recv_timeout(Duration::from_millis(TICK_MS)) {
            Ok(b) => Some(b),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                draining = true;
                None
            }
        };
        // Take what is queued now, bounded so the release below runs often.
        let mut taken = 0;
        while let Some(b) = got.take() {
            for g in &b.gaps {
                send(&c.tx, ToWriter::Gap(*g))?;
            }
            if !b.meta.is_empty() {
                let id = next_batch;
                next_batch += 1;
                for (i, p) in b.meta.iter().enumerate() {
                    heap.push(std::cmp::Reverse((p.ts_ns, seq, id, i as u32)));
                    seq += 1;
                }
                let n = b.meta.len();
                batches.insert(id, (b, n));
            }
            taken += 1;
            if taken < 64 {
                got = c.rx.try_recv().ok();
            }
        }
        let release_before = if draining {
            i64::MAX
        } else {
            now_ns() - c.reorder_window_ns
        };
        while let Some(&std::cmp::Reverse((ts, _, id, i))) = heap.peek() {
            let forced = heap.len() > c.reorder_packets_max;
            if ts > release_before && !forced {
                break;
            }
            heap.pop();
            if forced && ts > release_before {
                c.m.reorder_forced.fetch_add(1, Relaxed);
            }
            if ts < last_released {
                c.m.reorder_late.fetch_add(1, Relaxed);
            }
            last_released = last_released.max(ts);
            let entry = batches.get_mut(&id).expect("batch of a queued packet");
            let meta = entry.0.meta[i as usize];
            let data = &entry.0.data[meta.start as usize..(meta.start + meta.len) as usize];
            match c.preparer.prepare_bytes(meta.linktype, data) {
                Ok((p, link)) => {
                    let raw = RawPacket {
                        ts_ns: ts,
                        linktype: meta.linktype,
                        interface: 0,
                        interface_name: None,
                        data,
                        orig_len: meta.orig_len,
                        offset: 0,
                    };
                    let side = c.rules.side(entry.0.side, &raw, &link);
                    c.correlator.push_prepared(ts, side, &p, &mut out);
                    c.m.packets_correlated.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    c.m.packets_not_decoded.fetch_add(1, Relaxed);
                    c.correlator.advance(ts, &mut out);
                }
            }
            c.m.last_packet_ns.store(ts.max(0) as u64, Relaxed);
            entry.1 -= 1;
            if entry.1 == 0 {
                batches.remove(&id);
            }
            if out.len() >= MAPPING_BATCH_MAX {
                send(&c.tx, ToWriter::Mappings(std::mem::take(&mut out)))?;
            }
        }
        if !draining && release_before > last_released {
            // Idle link: flows still expire and copies without a twin age out.
            c.correlator.advance(release_before, &mut out);
        }
        if !out.is_empty() {
            send(&c.tx, ToWriter::Mappings(std::mem::take(&mut out)))?;
        }
        let st = c.correlator.stats();
        c.m.reorder_packets.store(heap.len() as u64, Relaxed);
        c.m.capture_queue_batches.store(c.rx.len() as u64, Relaxed);
        c.m.mappings_opened.store(st.mappings_opened, Relaxed);
        c.m.mappings_closed.store(st.mappings_closed, Relaxed);
        c.m.flows_active.store(st.flows_active, Relaxed);
        c.m.pending_copies.store(st.pending, Relaxed);
        c.m.flows_evicted.store(st.flows_evicted, Relaxed);
        c.m.pending_evicted.store(st.pending_evicted, Relaxed);
        if last_report.elapsed() >= c.stats_interval || (draining && heap.is_empty()) {
            let t = now_ns();
            if st.pending_evicted > evicted_reported {
                send(
                    &c.tx,
                    ToWriter::Gap(Gap {
                        from_ns: last_report_ns,
                        to_ns: t,
                        count: st.pending_evicted - evicted_reported,
                        kind: GapKind::Correlator,
                    }),
                )?;
                evicted_reported = st.pending_evicted;
            }
            last_report = Instant::now();
            last_report_ns = t;
        }
        if draining && heap.is_empty() {
            break;
        }
    }
    // Stopping: we stop seeing the flows. Each active mapping is closed as
    // `capture-end` at its last packet, so it stays findable for its hold
    // time after that (and no longer: a restart sees continuing flows anew).
    c.correlator.finish(&mut out);
    let n = out.len();
    if !out.is_empty() {
        send(&c.tx, ToWriter::Mappings(out))?;
    }
    log(&format!(
        "correlator drained; {n} active mapping(s) closed as capture-end at their last packet"
    ));
    Ok(())
}

// ------------------------------------------------------------------ writer

fn writer_thread(
    mut writer: Writer,
    rx: Receiver<ToWriter>,
    pool: Vec<ipnet::IpNet>,
    m: Arc<Metrics>,
) -> Result<()> {
    let mut last_advance = Instant::now();
    let in_pool = |ip: IpAddr| pool.is_empty() || pool.iter().any(|p| p.contains(&ip));
    // The batches of one `append_batches` call (kept between calls).
    let mut batches: Vec<Vec<Mapping>> = Vec::with_capacity(WRITER_BATCHES_PER_CALL_MAX);
    loop {
        let next = match rx.recv_timeout(Duration::from_millis(TICK_MS * 10)) {
            Ok(ToWriter::Mappings(v)) => {
                // With every mapping batch queued right behind it, in order;
                // a gap met on the way is written after them.
                batches.clear();
                batches.push(v);
                let mut after = None;
                while batches.len() < WRITER_BATCHES_PER_CALL_MAX {
                    match rx.try_recv() {
                        Ok(ToWriter::Mappings(v)) => batches.push(v),
                        Ok(gap) => {
                            after = Some(gap);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                writer.append_batches(batches.iter().map(Vec::as_slice))?;
                for mapping in batches.iter().flatten() {
                    if !in_pool(mapping.public.ip()) {
                        m.public_outside_pool.fetch_add(1, Relaxed);
                    }
                }
                after
            }
            Ok(gap) => Some(gap),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(ToWriter::Gap(g)) = next {
            writer.append_gap(&g)?;
            m.gaps_written.fetch_add(1, Relaxed);
            m.gap_packets.fetch_add(g.count, Relaxed);
            log(&format!(
                "lost {} packet(s) ({}) between {} and {}; written as a gap record",
                g.count,
                g.kind.name(),
                crate::timefmt::format_utc(g.from_ns),
                crate::timefmt::format_utc(g.to_ns)
            ));
        }
        if last_advance.elapsed() >= Duration::from_millis(WRITER_ADVANCE_MS) {
            // Packet time ≈ wall clock; this also seals on an idle link.
            writer.advance(now_ns())?;
            last_advance = Instant::now();
        }
        let s = writer.stats();
        m.records_appended.store(s.records_appended, Relaxed);
        m.partitions_sealed.store(s.partitions_sealed, Relaxed);
        m.partitions_active
            .store(writer.active_partitions() as u64, Relaxed);
        m.mapping_queue_batches.store(rx.len() as u64, Relaxed);
    }
    writer.flush()?;
    let s = writer.stats();
    log(&format!(
        "store flushed: {} records appended, {} partitions sealed, {} gap records",
        s.records_appended, s.partitions_sealed, s.gaps_appended
    ));
    Ok(())
}

// ------------------------------------------------------------------ main

fn ifindex(name: &str) -> Result<u32> {
    let p = format!("/sys/class/net/{name}/ifindex");
    let s = std::fs::read_to_string(&p).with_context(|| {
        format!("interface {name}: cannot read {p}; check the name (`ip link`)")
    })?;
    s.trim()
        .parse()
        .with_context(|| format!("interface {name}: {p} holds '{}'", s.trim()))
}

/// Drops to `user`; returns the line to log (the log file is opened after).
fn drop_privileges(user: &str) -> Result<Option<String>> {
    use nix::unistd::{getuid, setgid, setgroups, setuid, User};
    let u = User::from_name(user)
        .with_context(|| format!("look up user {user}"))?
        .with_context(|| {
            format!(
                "user {user} does not exist; create it (useradd --system natrec) or omit --user"
            )
        })?;
    if !getuid().is_root() {
        if getuid() == u.uid {
            return Ok(Some(format!(
                "already running as {user} (uid {}); nothing to drop",
                u.uid
            )));
        }
        bail!(
            "--user {user}: natrec runs as uid {} and cannot switch; start it as root or as {user}",
            getuid()
        );
    }
    setgroups(&[]).context("setgroups")?;
    setgid(u.gid).context("setgid")?;
    setuid(u.uid).context("setuid")?;
    if setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
        bail!("dropping privileges to {user} did not stick (setuid(0) still works)");
    }
    Ok(Some(format!("dropped privileges: running as {user} (uid {}, gid {}); no capabilities kept: the capture sockets are already open", u.uid, u.gid)))
}

/// Runs the recorder until SIGTERM/SIGINT (exit 0) or a fatal error (exit 2).
pub fn run(s: Settings) -> Result<ExitCode> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // The threads stop on `stop`; a signal only sets `signal`, and the main
    // loop logs it before it sets `stop`, so "SIGTERM received" comes before
    // every line the stopping threads write.
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    let hup = Arc::new(AtomicBool::new(false));
    let fatal = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_usize(SIGTERM, signal.clone(), SIGTERM as usize)?;
    signal_hook::flag::register_usize(SIGINT, signal.clone(), SIGINT as usize)?;
    signal_hook::flag::register(SIGHUP, hup.clone())?;

    // 1. As started (root or CAP_NET_RAW): open every capture.
    let mut caps = Vec::new();
    for spec in &s.captures {
        let cap = LiveCapture::open(&LiveConfig {
            device: spec.device.clone(),
            snaplen_bytes: s.snaplen_bytes,
            buffer_bytes: s.buffer_bytes,
            timeout_ms: s.capture_timeout_ms,
            filter: s.filter.clone(),
        })?;
        caps.push((cap, spec.side));
    }
    let rules = SideRules {
        inside_interfaces: s
            .any_inside
            .iter()
            .map(|n| ifindex(n).map(IfaceSel::Index))
            .collect::<Result<_>>()?,
        outside_interfaces: s
            .any_outside
            .iter()
            .map(|n| ifindex(n).map(IfaceSel::Index))
            .collect::<Result<_>>()?,
        ..SideRules::default()
    };
    let listener = match s.metrics_addr {
        Some(a) => Some(TcpListener::bind(a).with_context(|| {
            format!("metrics_addr {a}: cannot listen; choose another port or `off`")
        })?),
        None => None,
    };
    // 2. Drop to the service user; then everything else (the log file too, so
    // it belongs to that user and SIGHUP can reopen it).
    let dropped = match &s.user {
        Some(u) => drop_privileges(u)?,
        None => None,
    };
    log_open(s.log_file.clone())?;
    if let Some(msg) = dropped {
        log(&msg);
    }
    let store = Store::open_or_create(&s.store, s.store_cfg)?;
    if *store.config() != s.store_cfg {
        log(&format!("note: {} keeps the partition span, flush interval and hold times it was created with (store.json); the differing settings were not applied", store.dir().display()));
    }
    let mut correlator_cfg = s.correlator.clone();
    correlator_cfg.hold = store.config().hold;
    let mut writer = store.writer()?;
    // A previous recorder that crashed left mappings open (held until further
    // notice, carried forward forever) and stopped seeing packets at about the
    // time of its last record: close those as capture-end at their last packet,
    // and say the recorder was down from then until now.
    let (unclosed, last_record_ns) = writer.unclosed()?;
    for m in &unclosed {
        writer.append(&natrec_storage::Mapping {
            end: natrec_storage::EndReason::CaptureEnd,
            ..*m
        })?;
    }
    let started = now_ns();
    if let Some(t) = last_record_ns.filter(|t| *t < started) {
        // What the previous run held in memory when it stopped (copies waiting
        // for their twin, packets in the reorder buffer) may be older than its
        // last record: the gap starts that much earlier.
        let in_flight_ns =
            correlator_cfg.pair_window_ns + i64::from(s.reorder_window_ms) * 1_000_000;
        writer.append_gap(&Gap {
            from_ns: t.saturating_sub(in_flight_ns),
            to_ns: started,
            count: 0,
            kind: GapKind::Down,
        })?;
        log(&format!(
            "resuming: the store's last record is from {}; written as a recorder-down gap until now; {} mapping(s) left open by a crash closed as capture-end",
            crate::timefmt::format_utc(t),
            unclosed.len()
        ));
    }
    let ws = writer.stats();
    log(&format!(
        "recording {} into {} (resumed: {} torn slots zeroed, {} interrupted carries finished)",
        s.captures
            .iter()
            .map(|c| format!("{} ({:?})", c.device, c.side))
            .collect::<Vec<_>>()
            .join(", "),
        store.dir().display(),
        ws.recovered_zeroed_slots,
        ws.recovered_carries
    ));

    let m = Arc::new(Metrics {
        captures: s
            .captures
            .iter()
            .map(|c| CaptureMetrics {
                device: c.device.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    m.started_ns.store(now_ns() as u64, Relaxed);
    if let Some(l) = listener {
        let m2 = m.clone();
        log(&format!("metrics on http://{}/metrics", l.local_addr()?));
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve_metrics(l, m2))?;
    }

    let (btx, brx) = bounded::<Batch>(s.queue_batches_max);
    let (wtx, wrx) = bounded::<ToWriter>(s.mapping_queue_batches_max);
    let mut capture_threads = Vec::new();
    for (index, (cap, side)) in caps.into_iter().enumerate() {
        let ctx = CaptureCtx {
            index,
            side,
            tx: btx.clone(),
            stop: stop.clone(),
            fatal: fatal.clone(),
            m: m.clone(),
            batch_packets_max: s.batch_packets_max,
            batch_wait: Duration::from_millis(u64::from(s.batch_wait_ms)),
            stats_interval: Duration::from_millis(u64::from(s.stats_interval_ms)),
            snaplen: s.snaplen_bytes,
        };
        capture_threads.push(
            std::thread::Builder::new()
                .name(format!("capture-{}", s.captures[index].device))
                .spawn(move || capture_thread(cap, ctx))?,
        );
    }
    drop(btx);
    let correlator = Correlator::try_new(correlator_cfg)?;
    let cctx = CorrelateCtx {
        rx: brx,
        tx: wtx,
        rules,
        preparer: correlator.preparer(),
        correlator,
        reorder_window_ns: i64::from(s.reorder_window_ms) * 1_000_000,
        reorder_packets_max: s.reorder_packets_max,
        stats_interval: Duration::from_millis(u64::from(s.stats_interval_ms)),
        m: m.clone(),
    };
    let stop_c = stop.clone();
    let fatal_c = fatal.clone();
    let correlate = std::thread::Builder::new()
        .name("correlate".into())
        .spawn(move || {
            let r = correlate_thread(cctx);
            if r.is_err() {
                fatal_c.store(true, Relaxed);
                stop_c.store(true, Relaxed);
            }
            r
        })?;
    let pool = s.public_pool.clone();
    let (stop_w, fatal_w, m_w) = (stop.clone(), fatal.clone(), m.clone());
    let write = std::thread::Builder::new()
        .name("write".into())
        .spawn(move || {
            let r = writer_thread(writer, wrx, pool, m_w);
            if r.is_err() {
                fatal_w.store(true, Relaxed);
                stop_w.store(true, Relaxed);
            }
            r
        })?;

    // 3. Wait for a signal (bounded sleeps; no busy loop).
    while !stop.load(Relaxed) && signal.load(Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(100));
        if hup.swap(false, Relaxed) {
            log_reopen();
        }
    }
    match signal.load(Relaxed) {
        _ if fatal.load(Relaxed) => log("stopping after an error"),
        n if n == SIGINT as usize => log("SIGINT received: stopping"),
        _ => log("SIGTERM received: stopping"),
    }
    stop.store(true, Relaxed);
    for t in capture_threads {
        let _ = t.join();
    }
    let rc = correlate
        .join()
        .map_err(|_| anyhow::anyhow!("correlator thread panicked"))?;
    let rw = write
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    let mut failed = fatal.load(Relaxed);
    for r in [rc, rw] {
        if let Err(e) = r {
            log(&format!("{e:#}"));
            failed = true;
        }
    }
    log(&format!(
        "stopped: {} packets correlated, {} mappings opened, {} closed, {} records appended, {} gap records",
        m.packets_correlated.load(Relaxed),
        m.mappings_opened.load(Relaxed),
        m.mappings_closed.load(Relaxed),
        m.records_appended.load(Relaxed),
        m.gaps_written.load(Relaxed)
    ));
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
