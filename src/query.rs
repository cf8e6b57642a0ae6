//! `lookup`, `export`, `inspect`, `verify`: reading a store and showing it.
//!
//! Every holder is shown with the same fields in every format (the JSON names
//! are a stable interface): `proto`, `internal_ip`, `internal_port`,
//! `public_ip`, `public_port`, `remote_ip`, `remote_port`, `start` (first
//! translated packet), `end` (last packet + the NAT's hold time; `null` while
//! still held), and the evidence: `first_seen`, `last_seen`, `end_reason`,
//! `packets_out`, `packets_in`, `midflow`, `partition`. Times are RFC 3339
//! UTC; with `--tz`, `start_local`/`end_local` repeat them in that zone.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use jiff::tz::TimeZone;
use natrec_storage::{Holder, PartitionState, Proto, Query, Store, StoreError, FLAG_MIDFLOW};
use serde_json::{json, Value};

use crate::cli::{ExportFormat, LookupFormat};
use crate::timefmt::{format_in, format_utc, tz_name};

/// A traceback question.
#[derive(Clone, Debug)]
pub struct LookupRequest {
    /// Public address.
    pub ip: IpAddr,
    /// Public port; `None` = any.
    pub port: Option<u16>,
    /// Protocol; `None` = any.
    pub proto: Option<Proto>,
    /// The instant asked about.
    pub at_ns: i64,
    /// Tolerance either side of `at_ns`.
    pub window_ns: i64,
    /// Remote endpoint named in the request.
    pub remote: Option<(IpAddr, Option<u16>)>,
}

/// CSV / table columns, in order.
const COLUMNS: [&str; 16] = [
    "proto",
    "internal_ip",
    "internal_port",
    "public_ip",
    "public_port",
    "remote_ip",
    "remote_port",
    "start",
    "end",
    "first_seen",
    "last_seen",
    "end_reason",
    "packets_out",
    "packets_in",
    "midflow",
    "partition",
];

/// The stable JSON object for one holder.
pub fn holder_json(h: &Holder, tz: Option<&TimeZone>) -> Value {
    let m = &h.mapping;
    let mut v = json!({
        "proto": m.proto.name(),
        "internal_ip": m.internal.ip().to_string(),
        "internal_port": m.internal.port(),
        "public_ip": m.public.ip().to_string(),
        "public_port": m.public.port(),
        "remote_ip": m.remote.ip().to_string(),
        "remote_port": m.remote.port(),
        "start": format_utc(m.first_ns),
        "end": h.held_until_ns.map(format_utc),
        "first_seen": format_utc(m.first_ns),
        "last_seen": format_utc(m.last_ns),
        "end_reason": m.end.name(),
        "packets_out": m.packets_out,
        "packets_in": m.packets_in,
        "midflow": m.flags & FLAG_MIDFLOW != 0,
        "partition": h.partition,
    });
    if let Some(tz) = tz {
        v["start_local"] = json!(format_in(m.first_ns, tz));
        v["end_local"] = json!(h.held_until_ns.map(|t| format_in(t, tz)));
    }
    v
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_header(tz: bool) -> String {
    let mut cols: Vec<&str> = COLUMNS.to_vec();
    if tz {
        cols.extend(["start_local", "end_local"]);
    }
    cols.join(",")
}

fn csv_row(v: &Value, tz: bool) -> String {
    let mut cols: Vec<&str> = COLUMNS.to_vec();
    if tz {
        cols.extend(["start_local", "end_local"]);
    }
    cols.iter()
        .map(|c| csv_field(&cell(&v[*c])))
        .collect::<Vec<_>>()
        .join(",")
}

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: PathBuf::from("<stdout>"),
        op: "write",
        source: e,
    }
}

/// The storage query of a request.
fn query_of(req: &LookupRequest) -> Query {
    Query {
        ip: req.ip,
        port: req.port,
        proto: req.proto,
        from_ns: req.at_ns.saturating_sub(req.window_ns),
        to_ns: req.at_ns.saturating_add(req.window_ns),
        remote_ip: req.remote.map(|r| r.0),
        remote_port: req.remote.and_then(|r| r.1),
    }
}

/// The question as the audit log names it.
fn audit_query(req: &LookupRequest) -> Value {
    json!({
        "ip": req.ip.to_string(),
        "port": req.port,
        "proto": req.proto.map(|p| p.name()),
        "at": format_utc(req.at_ns),
        "window_s": req.window_ns as f64 / 1e9,
        "remote_ip": req.remote.map(|r| r.0.to_string()),
        "remote_port": req.remote.and_then(|r| r.1),
    })
}

/// Answers a traceback question. Exit 0 if someone held it, 1 if nobody, 2
/// if a partition in range could not be read (the answers from the others
/// are still printed, the errors go to stderr).
pub fn lookup(
    store: &Store,
    req: &LookupRequest,
    tz: Option<&TimeZone>,
    format: LookupFormat,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let outcome = store.reader().lookup(&query_of(req))?;
    let rows: Vec<Value> = outcome.holders.iter().map(|h| holder_json(h, tz)).collect();
    crate::audit::record(store, "lookup", audit_query(req), Some(rows.len() as u64))?;
    match format {
        LookupFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        LookupFormat::Csv => {
            writeln!(out, "{}", csv_header(tz.is_some()))?;
            for r in &rows {
                writeln!(out, "{}", csv_row(r, tz.is_some()))?;
            }
        }
        LookupFormat::Table => write_answer(out, store, req, &outcome, &rows, tz, "")?,
    }
    for w in lookup_gaps_warnings(&outcome.gaps) {
        eprintln!("natrec: warning: {w}");
    }
    for e in &outcome.errors {
        eprintln!("natrec: {e}");
    }
    if !outcome.errors.is_empty() {
        eprintln!("natrec: {} partition(s) in range could not be read; the answer above may be incomplete", outcome.errors.len());
        return Ok(ExitCode::from(2));
    }
    Ok(if rows.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A request in words, as its answer's heading names it: the address and
/// port, and the time (in UTC, then in `tz` when given, then the window).
fn request_words(req: &LookupRequest, tz: Option<&TimeZone>) -> (String, String) {
    let what = match req.port {
        Some(p) => format!("{} port {p}", req.ip),
        None => format!("{} (any port)", req.ip),
    };
    let mut when = format_utc(req.at_ns);
    if let Some(tz) = tz {
        when = format!("{when} ({} {})", format_in(req.at_ns, tz), tz_name(tz));
    }
    if req.window_ns > 0 {
        when.push_str(&format!(" ± {} s", req.window_ns as f64 / 1e9));
    }
    (what, when)
}

/// One request's answer as a table (a single lookup's output; in a batch
/// each heading starts with `line N: `).
fn write_answer(
    out: &mut dyn Write,
    store: &Store,
    req: &LookupRequest,
    outcome: &natrec_storage::LookupOutcome,
    rows: &[Value],
    tz: Option<&TimeZone>,
    prefix: &str,
) -> Result<()> {
    let (what, when) = request_words(req, tz);
    if rows.is_empty() {
        writeln!(out, "{prefix}nobody held {what} at {when}")?;
    } else {
        writeln!(out, "{prefix}{} holder(s) of {what} at {when}:", rows.len())?;
        write_table(out, &outcome.holders, tz)?;
        writeln!(
            out,
            "held = first translated packet .. last packet + the NAT's hold time ({}); end blank = still held",
            hold_summary(store)
        )?;
    }
    for w in lookup_gaps_warnings(&outcome.gaps) {
        writeln!(out, "WARNING: {w}")?;
    }
    Ok(())
}

/// A writer that indents every line after the first by two spaces: an
/// array item pretty-printed alone through it reads as serde's pretty
/// printer writes it inside the array (strings never hold a raw newline).
struct Indented<'a>(&'a mut dyn Write);

impl Write for Indented<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.0.write_all(&rest[..=i])?;
            self.0.write_all(b"  ")?;
            rest = &rest[i + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// One line of a batch: its number (from 1) and the request, or why the
/// line could not be read (naming the field).
pub type BatchLine = (usize, std::result::Result<LookupRequest, String>);

/// Answers many traceback questions with one reader: the requests are
/// looked up in time order (so each partition is opened once while the
/// reader's view cache holds it, and the directory listed once; an active
/// log is read once, as of the first request that reads it, and searched
/// through a sorted index: `Reader::with_log_snapshots`), answered in line
/// order. Every request answered is audited (one line per request,
/// naming the batch and the line, all synced at once) before anything is
/// shown. A malformed line (only present with `--keep-going`; otherwise
/// the caller stopped at it) is reported and gets no answer. Exit 0 if
/// every request found a holder, 1 if any found nobody, 2 if a line was
/// malformed or a partition could not be read (the other answers are
/// still shown).
pub fn lookup_batch(
    store: &Store,
    source: &str,
    lines: &[BatchLine],
    tz: Option<&TimeZone>,
    format: LookupFormat,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    // Active logs read once and indexed (answers as of their first read).
    let reader = store.reader().with_log_snapshots();
    let mut order: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].1.is_ok()).collect();
    let key = |i: usize| {
        let r = lines[i].1.as_ref().expect("filtered");
        (r.at_ns, r.ip, r.port)
    };
    order.sort_by_key(|&i| key(i));
    let mut outcomes: Vec<Option<natrec_storage::LookupOutcome>> =
        (0..lines.len()).map(|_| None).collect();
    for i in order {
        let req = lines[i].1.as_ref().expect("filtered");
        outcomes[i] = Some(reader.lookup(&query_of(req))?);
    }
    let audits: Vec<Value> = lines
        .iter()
        .zip(&outcomes)
        .filter_map(|((line, req), outcome)| {
            let (req, outcome) = (req.as_ref().ok()?, outcome.as_ref()?);
            let mut q = audit_query(req);
            q["batch"] = json!(source);
            q["line"] = json!(line);
            Some(crate::audit::entry(
                "lookup",
                q,
                Some(outcome.holders.len() as u64),
            ))
        })
        .collect();
    crate::audit::record_entries(store, &audits)?;
    // Shown request by request (each answer's rows built when shown, so a
    // batch holds its answers' holders, not their JSON, in memory).
    let (mut nobody, mut bad_lines, mut errors) = (0usize, 0usize, 0usize);
    if format == LookupFormat::Csv {
        writeln!(out, "line,{}", csv_header(tz.is_some()))?;
    }
    let mut json_items = 0usize;
    // One JSON array as serde's pretty printer writes it, an item at a time.
    let mut json_item = |out: &mut dyn Write, v: &Value| -> Result<()> {
        out.write_all(if json_items == 0 { b"[\n  " } else { b",\n  " })?;
        serde_json::to_writer_pretty(Indented(out), v)?;
        json_items += 1;
        Ok(())
    };
    for ((line, req), outcome) in lines.iter().zip(&outcomes) {
        let (req, outcome) = match (req, outcome) {
            (Ok(req), Some(o)) => (req, o),
            (Err(why), _) => {
                bad_lines += 1;
                eprintln!("natrec: {source} line {line}: {why}; not answered");
                if format == LookupFormat::Json {
                    json_item(out, &json!({"line": line, "error": why}))?;
                }
                continue;
            }
            (Ok(_), None) => unreachable!("every request was looked up"),
        };
        let rows: Vec<Value> = outcome.holders.iter().map(|h| holder_json(h, tz)).collect();
        if rows.is_empty() {
            nobody += 1;
        }
        match format {
            LookupFormat::Json => json_item(
                out,
                &json!({
                    "line": line,
                    "request": audit_query(req),
                    "holders": rows,
                }),
            )?,
            LookupFormat::Csv => {
                for r in &rows {
                    writeln!(out, "{line},{}", csv_row(r, tz.is_some()))?;
                }
                // No row says nobody; name the request where people read.
                if rows.is_empty() {
                    let (what, when) = request_words(req, tz);
                    eprintln!("natrec: {source} line {line}: nobody held {what} at {when}");
                }
            }
            LookupFormat::Table => write_answer(
                out,
                store,
                req,
                outcome,
                &rows,
                tz,
                &format!("line {line}: "),
            )?,
        }
        for w in lookup_gaps_warnings(&outcome.gaps) {
            eprintln!("natrec: warning: line {line}: {w}");
        }
        for e in &outcome.errors {
            eprintln!("natrec: line {line}: {e}");
        }
        if !outcome.errors.is_empty() {
            errors += 1;
        }
    }
    if format == LookupFormat::Json {
        if json_items == 0 {
            writeln!(out, "[]")?;
        } else {
            writeln!(out, "\n]")?;
        }
    }
    if errors > 0 {
        eprintln!("natrec: {errors} request(s) met partitions that could not be read; their answers may be incomplete");
    }
    Ok(if errors > 0 || bad_lines > 0 {
        ExitCode::from(2)
    } else if nobody > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One warning per kind of gap overlapping a question: how many intervals,
/// how many packets, and the first and last interval (however many there
/// are, the warning stays one line per kind).
pub fn gaps_warnings(gaps: &[natrec_storage::Gap]) -> Vec<String> {
    gaps_warnings_in(gaps, "overlapping this time")
}

/// [`gaps_warnings`] for a lookup, whose gaps reach back by the longest
/// hold time (`LookupOutcome::gaps`): says so.
pub fn lookup_gaps_warnings(gaps: &[natrec_storage::Gap]) -> Vec<String> {
    gaps_warnings_in(
        gaps,
        "overlapping this time or the longest hold time before it",
    )
}

fn gaps_warnings_in(gaps: &[natrec_storage::Gap], overlapping: &str) -> Vec<String> {
    let mut by_kind: std::collections::BTreeMap<_, Vec<&natrec_storage::Gap>> =
        std::collections::BTreeMap::new();
    for g in gaps {
        by_kind.entry(g.kind).or_default().push(g);
    }
    let span =
        |g: &natrec_storage::Gap| format!("{}..{}", format_utc(g.from_ns), format_utc(g.to_ns));
    by_kind
        .into_iter()
        .map(|(kind, mut v)| {
            v.sort_by_key(|g| (g.from_ns, g.to_ns));
            let n = v.len();
            let where_ = if n == 1 {
                format!("1 interval {overlapping} ({})", span(v[0]))
            } else {
                format!(
                    "{n} intervals {overlapping} (first {}, last {})",
                    span(v[0]),
                    span(v[n - 1])
                )
            };
            if kind == natrec_storage::GapKind::Down {
                format!("{}: the recorder was not running in {where_}; the answer may be incomplete", kind.name())
            } else {
                let total: u64 = v.iter().map(|g| g.count).sum();
                format!(
                    "{}: the recorder lost {total} packets in {where_}; the answer may be incomplete",
                    kind.name()
                )
            }
        })
        .collect()
}

fn hold_summary(store: &Store) -> String {
    let h = store.config().hold;
    format!(
        "tcp {} s after close / {} s open, udp {} s / {} s with replies, icmp {} s",
        h.tcp_closed_s, h.tcp_open_s, h.udp_s, h.udp_stream_s, h.icmp_s
    )
}

fn write_table(
    out: &mut dyn Write,
    holders: &[Holder],
    tz: Option<&TimeZone>,
) -> std::io::Result<()> {
    let mut rows: Vec<[String; 8]> = vec![[
        "PROTO".into(),
        "INTERNAL".into(),
        "PUBLIC".into(),
        "REMOTE".into(),
        "HELD FROM".into(),
        "HELD UNTIL".into(),
        "LAST PACKET".into(),
        "EVIDENCE".into(),
    ]];
    let show = |t: i64| match tz {
        Some(tz) => format_in(t, tz),
        None => format_utc(t),
    };
    for h in holders {
        let m = &h.mapping;
        let mut ev = format!(
            "{} out/{} in, {}",
            m.packets_out,
            m.packets_in,
            m.end.name()
        );
        if m.flags & FLAG_MIDFLOW != 0 {
            ev.push_str(", began before capture");
        }
        rows.push([
            m.proto.name().into(),
            m.internal.to_string(),
            m.public.to_string(),
            m.remote.to_string(),
            show(m.first_ns),
            h.held_until_ns.map(show).unwrap_or_default(),
            show(m.last_ns),
            ev,
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// Writes every mapping held in the range. Exit 0, or 2 if a partition
/// could not be read (the rest is still written).
pub fn export(
    store: &Store,
    from: Option<i64>,
    to: Option<i64>,
    tz: Option<&TimeZone>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    crate::audit::record(
        store,
        "export",
        json!({ "from": from.map(format_utc), "to": to.map(format_utc) }),
        None,
    )?;
    if format == ExportFormat::Csv {
        writeln!(out, "{}", csv_header(tz.is_some()))?;
    }
    let errors = store.reader().export(from, to, &mut |h| {
        let v = holder_json(h, tz);
        match format {
            ExportFormat::Jsonl => writeln!(out, "{v}").map_err(io_err),
            ExportFormat::Csv => writeln!(out, "{}", csv_row(&v, tz.is_some())).map_err(io_err),
        }
    })?;
    let (gaps, gap_errors) = store
        .reader()
        .gaps(from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    for w in gaps_warnings(&gaps) {
        eprintln!("natrec: warning: {w}");
    }
    let errors: Vec<_> = errors.into_iter().chain(gap_errors).collect();
    for e in &errors {
        eprintln!("natrec: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Lists the partitions of a store.
pub fn inspect(store: &Store, json_out: bool, out: &mut dyn Write) -> Result<ExitCode> {
    let parts = store.reader().partitions()?;
    let cfg = store.config();
    let mut bad = 0;
    if json_out {
        let v: Vec<Value> = parts
            .iter()
            .map(|p| {
                json!({
                    "file": p.file_name,
                    "start": format_utc(p.start_ns),
                    "end": format_utc(p.start_ns + p.span_ns),
                    "segment": p.segment,
                    "state": match p.state { PartitionState::Sealed => "sealed", PartitionState::Active => "active" },
                    "records": p.records,
                    "carried_in": p.carried_in,
                    "late_in": p.late_in,
                    "bytes": p.bytes,
                    "format_version": p.format_version,
                    "problem": p.problem.as_ref().map(|e| e.to_string()),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &json!({"store": store.dir(), "config": cfg, "partitions": v})
            )?
        )?;
        bad = parts.iter().filter(|p| p.problem.is_some()).count();
    } else {
        writeln!(
            out,
            "store {}: partitions of {} s, grace {} s, flush every {} ms; {}",
            store.dir().display(),
            cfg.partition_span_s,
            cfg.grace_s,
            cfg.flush_interval_ms,
            hold_summary(store)
        )?;
        writeln!(
            out,
            "{:<28} {:<20} {:<20} {:<6} {:>10} {:>8} {:>6} {:>12}  PROBLEM",
            "FILE", "START (UTC)", "END (UTC)", "STATE", "RECORDS", "CARRIED", "LATE", "BYTES"
        )?;
        let (mut records, mut bytes) = (0u64, 0u64);
        for p in &parts {
            records += p.records;
            bytes += p.bytes;
            let state = match p.state {
                PartitionState::Sealed => "sealed",
                PartitionState::Active => "active",
            };
            let problem = p
                .problem
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            if p.problem.is_some() {
                bad += 1;
            }
            writeln!(
                out,
                "{:<28} {:<20} {:<20} {:<6} {:>10} {:>8} {:>6} {:>12}  {}",
                p.file_name,
                format_utc(p.start_ns),
                format_utc(p.start_ns + p.span_ns),
                state,
                p.records,
                p.carried_in,
                p.late_in,
                p.bytes,
                problem
            )?;
        }
        writeln!(
            out,
            "{} partition file(s), {records} records, {bytes} bytes",
            parts.len()
        )?;
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Checks every checksum; exit 2 if anything is damaged.
pub fn verify(store: &Store, json_out: bool, out: &mut dyn Write) -> Result<ExitCode> {
    let errors = store.reader().verify()?;
    if json_out {
        let v: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({"ok": errors.is_empty(), "problems": v}))?
        )?;
    } else if errors.is_empty() {
        writeln!(
            out,
            "store {}: every partition checks out",
            store.dir().display()
        )?;
    } else {
        for e in &errors {
            writeln!(out, "{e}")?;
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
