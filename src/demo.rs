//! `natrec demo`: the main job end to end on a bundled capture.
//!
//! The capture (`tests/fixtures/natlab.any.pcap`, `tcpdump -i any` on a real
//! Linux NAT built by `tools/natlab.sh`) and the kernel's conntrack record of
//! the same run (`natlab.truth.jsonl`) are compiled into the binary, so the
//! demo runs anywhere. It replays the capture into a store, then asks, for
//! every mapping the kernel made, "who held this public ip:port at this
//! time?", and checks the answer against the kernel's record; then asks about
//! a time when nobody held a port.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use natrec_capture::source::CaptureFile;
use natrec_storage::{HoldTimes, Proto, Query, Store, StoreConfig};
use serde::Deserialize;

use crate::replay::{Input, SideRules};
use crate::timefmt::format_utc;

/// The bundled capture: both sides of a real Linux NAT, `tcpdump -i any`.
const CAPTURE: &[u8] = include_bytes!("../tests/fixtures/natlab.any.pcap");
/// conntrack's NEW/DESTROY events of the same run, one translated entry a line.
const TRUTH: &str = include_str!("../tests/fixtures/natlab.truth.jsonl");
/// The lab's settings, with the conntrack timeouts it used.
const META: &str = include_str!("../tests/fixtures/natlab.meta.json");

/// One line of `natlab.truth.jsonl`.
#[derive(Debug, Deserialize)]
pub struct TruthEntry {
    /// tcp, udp or icmp.
    pub proto: String,
    /// Subscriber address.
    pub internal_ip: String,
    /// Subscriber port (ICMP: identifier).
    pub internal_port: u16,
    /// Public address after translation.
    pub public_ip: String,
    /// Public port (ICMP: identifier).
    pub public_port: u16,
    /// Far end.
    pub remote_ip: String,
    /// Far end port (0 for ICMP).
    pub remote_port: u16,
    /// conntrack NEW, Unix seconds.
    pub new_unix: f64,
}

/// Parses the truth file (one JSON object a line).
pub fn parse_truth(text: &str) -> Result<Vec<TruthEntry>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("truth line {}", i + 1)))
        .collect()
}

/// The conntrack timeouts the lab set, as hold times.
pub fn lab_hold_times(meta: &str) -> Result<HoldTimes> {
    let v: serde_json::Value = serde_json::from_str(meta).context("natlab.meta.json")?;
    let t = &v["conntrack_sysctls"];
    let get = |k: &str| -> Result<u32> {
        t[k].as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .with_context(|| format!("natlab.meta.json: conntrack_sysctls.{k} missing"))
    };
    Ok(HoldTimes {
        tcp_closed_s: get("nf_conntrack_tcp_timeout_time_wait")?,
        tcp_open_s: get("nf_conntrack_tcp_timeout_established")?,
        udp_s: get("nf_conntrack_udp_timeout")?,
        udp_stream_s: get("nf_conntrack_udp_timeout_stream")?,
        icmp_s: get("nf_conntrack_icmp_timeout")?,
    })
}

/// Unix seconds (as conntrack and the lab write them, µs precision) to ns.
fn unix_to_ns(secs: f64) -> i64 {
    (secs * 1e6).round() as i64 * 1000
}

fn proto_of(name: &str) -> Option<Proto> {
    match name {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "icmp" => Some(Proto::Icmp),
        "icmpv6" => Some(Proto::Icmpv6),
        _ => None,
    }
}

/// Runs the demo; exit 0 if every answer matched the kernel's record.
pub fn run(keep: Option<&Path>) -> Result<ExitCode> {
    let tmp;
    let dir = match keep {
        Some(d) => d.to_path_buf(),
        None => {
            tmp =
                tempfile::tempdir().context("creating a temporary directory for the demo store")?;
            tmp.path().join("store")
        }
    };
    let hold = lab_hold_times(META)?;
    let truth = parse_truth(TRUTH)?;
    let store = Store::create(
        &dir,
        StoreConfig {
            hold,
            ..StoreConfig::default()
        },
    )?;
    println!(
        "natrec demo: replaying a `tcpdump -i any` capture taken on a real Linux NAT ({} bytes)",
        CAPTURE.len()
    );
    println!(
        "  store: {} (hold times = the lab's conntrack timeouts)",
        dir.display()
    );
    let inputs = vec![Input {
        file: CaptureFile::from_bytes("natlab.any.pcap", CAPTURE.to_vec())?,
        side: natrec_capture::correlate::Side::Unknown,
    }];
    let cfg = crate::cli::correlator_config(&[], 2_000_000_000, 1 << 20, 1 << 22, hold)?;
    let mut writer = store.writer()?;
    let summary = crate::replay::run(&inputs, &SideRules::default(), cfg, &mut writer, false, 3)?;
    drop(writer);
    for line in summary.render().lines() {
        println!("  {line}");
    }

    let meta: serde_json::Value = serde_json::from_str(META).context("natlab.meta.json")?;
    let capture_start_ns = unix_to_ns(
        meta["capture_start_unix"]
            .as_f64()
            .context("natlab.meta.json: capture_start_unix missing")?,
    );
    println!("\nTraceback questions, one per mapping the kernel's conntrack made, asked 0.1 s after it began");
    println!("(or 1 s into the capture, for a connection already open when the capture started):");
    let reader = store.reader();
    let mut wrong = 0;
    for t in &truth {
        let Some(proto) = proto_of(&t.proto) else {
            bail!("truth: unknown proto {}", t.proto)
        };
        let at = unix_to_ns(t.new_unix).max(capture_start_ns + 1_000_000_000) + 100_000_000;
        let ip = t.public_ip.parse().context("truth public_ip")?;
        let q = Query {
            ip,
            port: Some(t.public_port),
            proto: Some(proto),
            from_ns: at,
            to_ns: at,
            remote_ip: Some(t.remote_ip.parse()?),
            remote_port: Some(t.remote_port),
        };
        let outcome = reader.lookup(&q)?;
        let found: Vec<String> = outcome
            .holders
            .iter()
            .map(|h| h.mapping.internal.to_string())
            .collect();
        let expected = format!("{}:{}", t.internal_ip, t.internal_port);
        let ok = found.len() == 1 && found[0] == expected;
        if !ok {
            wrong += 1;
        }
        println!(
            "  {} who held {} {}:{} (talking to {}:{}) at {}?  natrec: {}  conntrack: {}",
            if ok { "ok  " } else { "DIFF" },
            t.proto,
            t.public_ip,
            t.public_port,
            t.remote_ip,
            t.remote_port,
            format_utc(at),
            if found.is_empty() {
                "nobody".to_string()
            } else {
                found.join(", ")
            },
            expected
        );
    }
    // A question nobody should answer: the first public endpoint, an hour before the capture.
    if let Some(t) = truth.first() {
        let at = unix_to_ns(t.new_unix) - 3_600_000_000_000;
        let outcome = reader.lookup(&Query::at(t.public_ip.parse()?, t.public_port, at))?;
        let ok = outcome.holders.is_empty();
        if !ok {
            wrong += 1;
        }
        println!(
            "  {} who held {}:{} at {} (an hour before the capture)?  natrec: {}",
            if ok { "ok  " } else { "DIFF" },
            t.public_ip,
            t.public_port,
            format_utc(at),
            if ok { "nobody (exit 1)" } else { "someone?!" }
        );
    }
    // The question as police send it: Beijing time, no remote endpoint. Case 4
    // of the lab: two subscribers held one public ip:port at once, towards
    // different remotes; both are named, with the evidence.
    if let Some(t) = truth.iter().find(|t| {
        truth
            .iter()
            .filter(|u| {
                u.public_ip == t.public_ip && u.public_port == t.public_port && u.proto == t.proto
            })
            .count()
            == 2
            && t.proto == "tcp"
    }) {
        let bj = crate::timefmt::parse_tz("Asia/Shanghai")?;
        let at = unix_to_ns(t.new_unix) + 300_000_000;
        println!(
            "\nnatrec lookup --ip {} --port {} --at '{}' --tz Asia/Shanghai",
            t.public_ip,
            t.public_port,
            crate::timefmt::format_in(at, &bj)
        );
        let req = crate::query::LookupRequest {
            ip: t.public_ip.parse()?,
            port: Some(t.public_port),
            proto: None,
            at_ns: at,
            window_ns: 0,
            remote: None,
        };
        crate::query::lookup(
            &store,
            &req,
            Some(&bj),
            crate::cli::LookupFormat::Table,
            &mut std::io::stdout().lock(),
        )?;
    }
    println!(
        "\nTry it yourself: natrec lookup --store {} --ip IP --port PORT --at TIME",
        dir.display()
    );
    if keep.is_none() {
        println!("(the store is temporary; `natrec demo --store DIR` keeps it)");
    }
    if wrong > 0 {
        eprintln!("natrec demo: {wrong} answer(s) differ from the kernel's record");
        return Ok(ExitCode::from(2));
    }
    println!("every answer matches the kernel's conntrack record");
    Ok(ExitCode::SUCCESS)
}
