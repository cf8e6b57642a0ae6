//! `natrec status`: is a recorder writing this store, what is in it, what
//! was lost lately; and, when reachable, the recorder's own metrics.
//!
//! Prints one fact a line:
//! - `recorder:` running (another process holds `store.lock`) or not running;
//! - `partitions:` active and sealed counts, records in the active ones;
//! - `newest partition:` start of the newest partition (UTC);
//! - `gaps (last 24 h):` gap records and packets lost, by kind;
//! - with `--metrics-addr` (default 127.0.0.1:9633): the recorder's packet,
//!   drop, mapping and queue figures from its Prometheus endpoint, or
//!   `metrics: unreachable`.
//!
//! Exit 0 when a recorder is running and nothing was lost in the last 24 h,
//! 1 when no recorder is running or packets were lost (worth a look),
//! 2 on error.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use natrec_storage::{PartitionState, Store, NANOS_PER_SEC};

use crate::timefmt::format_utc;

/// Metrics lines `status` shows (name prefixes).
const SHOWN: &[&str] = &[
    "natrec_packets_captured_total",
    "natrec_packets_dropped_total",
    "natrec_mappings_opened_total",
    "natrec_records_appended_total",
    "natrec_gaps_written_total",
    "natrec_flows_active",
    "natrec_queue_depth_batches",
    "natrec_reorder_buffer_packets",
    "natrec_partitions_active",
    "natrec_last_packet_timestamp_seconds",
];

fn recorder_running(dir: &Path) -> Result<bool> {
    let lock = dir.join("store.lock");
    let Ok(f) = OpenOptions::new().write(true).open(&lock) else {
        return Ok(false);
    };
    #[allow(clippy::incompatible_msrv)]
    match f.try_lock() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::anyhow!("lock {}: {e}", lock.display()))
        }
    }
}

/// Fetches `/metrics` (bounded: 2 s, 1 MiB).
fn fetch_metrics(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = Vec::new();
    s.take(1 << 20).read_to_end(&mut body).ok()?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let (_, b) = text.split_once("\r\n\r\n")?;
    Some(b.to_string())
}

/// Runs `natrec status`.
pub fn run(store: &Store, metrics: Option<SocketAddr>, out: &mut dyn Write) -> Result<ExitCode> {
    let running = recorder_running(store.dir())?;
    writeln!(
        out,
        "recorder:          {}",
        if running {
            "running (store.lock is held)"
        } else {
            "not running (store.lock is free)"
        }
    )?;
    let parts = store.reader().partitions()?;
    let active: Vec<_> = parts
        .iter()
        .filter(|p| p.state == PartitionState::Active)
        .collect();
    let sealed = parts.len() - active.len();
    writeln!(
        out,
        "partitions:        {} active ({} records), {} sealed",
        active.len(),
        active.iter().map(|p| p.records).sum::<u64>(),
        sealed
    )?;
    if let Some(p) = parts.iter().max_by_key(|p| p.start_ns) {
        writeln!(
            out,
            "newest partition:  {} ({})",
            format_utc(p.start_ns),
            p.file_name
        )?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let (gaps, errors) = store.reader().gaps(now - 86_400 * NANOS_PER_SEC, now);
    let mut by_kind: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for g in &gaps {
        let e = by_kind.entry(g.kind.name()).or_default();
        e.0 += 1;
        e.1 += g.count;
    }
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(k, (n, c))| format!("{k}: {n} gap(s), {c} packets"))
        .collect();
    writeln!(
        out,
        "gaps (last 24 h):  {}",
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join("; ")
        }
    )?;
    for e in &errors {
        eprintln!("natrec: {e}");
    }
    if let Some(addr) = metrics {
        match fetch_metrics(addr) {
            Some(body) => {
                writeln!(out, "metrics:           http://{addr}/metrics")?;
                for l in body
                    .lines()
                    .filter(|l| !l.starts_with('#') && SHOWN.iter().any(|s| l.starts_with(s)))
                {
                    writeln!(out, "  {l}")?;
                }
            }
            None => writeln!(out, "metrics:           unreachable at {addr}")?,
        }
    }
    Ok(if !errors.is_empty() {
        ExitCode::from(2)
    } else if !running || !gaps.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
