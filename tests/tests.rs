//! Integration tests: the `natrec` binary on captures from a real Linux NAT
//! (`tools/natlab.sh`), checked against the kernel's conntrack record.
//!
//! One test binary (so `cargo test` links once); every test runs the real
//! executable in a fresh temporary store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn natrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_natrec"))
        .args(args)
        .output()
        .expect("run natrec")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally, not by a signal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Clone, Debug)]
struct Truth {
    proto: String,
    internal: String,
    public: String,
    public_ip: String,
    public_port: u16,
    remote: String,
    new_ns: i64,
    destroy_ns: Option<i64>,
}

impl Truth {
    fn key(&self) -> (String, String, String, String) {
        (
            self.proto.clone(),
            self.internal.clone(),
            self.public.clone(),
            self.remote.clone(),
        )
    }
}

fn truth() -> Vec<Truth> {
    truth_from(&fixture("natlab.truth.jsonl"))
}

fn truth_from(path: &Path) -> Vec<Truth> {
    let text = std::fs::read_to_string(path).expect("truth file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("truth line is JSON");
            Truth {
                proto: v["proto"].as_str().unwrap().to_string(),
                internal: format!(
                    "{}:{}",
                    v["internal_ip"].as_str().unwrap(),
                    v["internal_port"]
                ),
                public: format!("{}:{}", v["public_ip"].as_str().unwrap(), v["public_port"]),
                public_ip: v["public_ip"].as_str().unwrap().to_string(),
                public_port: v["public_port"].as_u64().unwrap() as u16,
                remote: format!("{}:{}", v["remote_ip"].as_str().unwrap(), v["remote_port"]),
                new_ns: (v["new_unix"].as_f64().unwrap() * 1e9) as i64,
                destroy_ns: v["destroy_unix"].as_f64().map(|d| (d * 1e9) as i64),
            }
        })
        .collect()
}

fn meta() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("natlab.meta.json")).unwrap()).unwrap()
}

/// A time at which conntrack says `t` was held and the capture had been
/// running for a second (a flow already running when the capture began is
/// only seen from its first captured packet on).
fn held_time(t: &Truth) -> i64 {
    let capture_start = (meta()["capture_start_unix"].as_f64().unwrap() * 1e9) as i64;
    t.new_ns.max(capture_start + 1_000_000_000) + 50_000_000
}

/// Hold flags equal to the lab's conntrack timeouts (natlab.meta.json).
fn hold_flags() -> Vec<String> {
    let meta = meta();
    let t = &meta["conntrack_sysctls"];
    let s = |k: &str| {
        format!(
            "{}s",
            t[k].as_u64().unwrap_or_else(|| panic!("meta lacks {k}"))
        )
    };
    vec![
        "--hold-tcp-closed".into(),
        s("nf_conntrack_tcp_timeout_time_wait"),
        "--hold-tcp-open".into(),
        s("nf_conntrack_tcp_timeout_established"),
        "--hold-udp".into(),
        s("nf_conntrack_udp_timeout"),
        "--hold-udp-stream".into(),
        s("nf_conntrack_udp_timeout_stream"),
        "--hold-icmp".into(),
        s("nf_conntrack_icmp_timeout"),
    ]
}

/// Replays `captures` (plain args, e.g. files or `--inside F --outside G`) into a new store.
fn replay(dir: &Path, captures: &[&str]) -> Output {
    let store = dir.join("store");
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--quiet".into(),
        "--store".into(),
        store.display().to_string(),
    ];
    args.extend(hold_flags());
    args.extend(captures.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    natrec(&refs)
}

/// A new store with the `-i any` fixture replayed into it.
fn replayed_any() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = replay(dir.path(), &[fixture("natlab.any.pcap").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "replay: {}{}", stdout(&o), stderr(&o));
    dir
}

fn store_arg(dir: &Path) -> String {
    dir.join("store").display().to_string()
}

fn export(dir: &Path) -> Vec<Value> {
    let o = natrec(&["export", "--store", &store_arg(dir), "--format", "jsonl"]);
    assert_eq!(code(&o), 0, "export failed: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl line"))
        .collect()
}

fn key_of(v: &Value) -> (String, String, String, String) {
    (
        v["proto"].as_str().unwrap().to_string(),
        format!(
            "{}:{}",
            v["internal_ip"].as_str().unwrap(),
            v["internal_port"]
        ),
        format!("{}:{}", v["public_ip"].as_str().unwrap(), v["public_port"]),
        format!("{}:{}", v["remote_ip"].as_str().unwrap(), v["remote_port"]),
    )
}

/// Every truth mapping exported (recall 100 %), nothing else (precision 100 %).
fn assert_export_equals_truth(dir: &Path) {
    assert_export_equals(dir, &truth());
}

fn assert_export_equals(dir: &Path, truth: &[Truth]) {
    let mut want: BTreeMap<_, usize> = BTreeMap::new();
    for t in truth {
        *want.entry(t.key()).or_default() += 1;
    }
    let mut got: BTreeMap<_, usize> = BTreeMap::new();
    for v in export(dir) {
        *got.entry(key_of(&v)).or_default() += 1;
    }
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing (recall < 100%): {missing:#?}\nextra (precision < 100%): {extra:#?}"
    );
    assert_eq!(
        got, want,
        "each mapping exactly as often as conntrack made it"
    );
}

#[test]
fn replay_any_capture_recovers_every_conntrack_mapping_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let o = replay(dir.path(), &[fixture("natlab.any.pcap").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "replay: {}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("mappings:"),
        "summary printed: {}",
        stdout(&o)
    );
    assert_export_equals_truth(dir.path());
}

#[test]
fn replay_inside_and_outside_captures_merged_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let o = replay(
        dir.path(),
        &[
            "--inside",
            fixture("natlab.inside.pcap").to_str().unwrap(),
            "--outside",
            fixture("natlab.outside.pcap").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "replay: {}{}", stdout(&o), stderr(&o));
    assert_export_equals_truth(dir.path());
}

fn lookup(
    dir: &Path,
    ip: &str,
    port: u16,
    at_ns: i64,
    extra: &[&str],
) -> (i32, Vec<Value>, String) {
    let at = format!("{}.{:09}", at_ns / 1_000_000_000, at_ns % 1_000_000_000);
    let port = port.to_string();
    let store = store_arg(dir);
    let mut args = vec![
        "lookup", "--store", &store, "--ip", ip, "--port", &port, "--at", &at, "--format", "json",
    ];
    args.extend_from_slice(extra);
    let o = natrec(&args);
    let c = code(&o);
    let rows: Vec<Value> = if c == 2 {
        Vec::new()
    } else {
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("json: {e}: {}", stdout(&o)))
    };
    (c, rows, stderr(&o))
}

#[test]
fn lookups_at_chosen_times_name_the_kernels_holder() {
    let dir = replayed_any();
    let truth = truth();
    assert!(
        truth.len() >= 10,
        "the fixture covers the cases: {} mappings",
        truth.len()
    );
    for t in &truth {
        // Shortly after conntrack created the entry: the holder is there.
        let at = held_time(t);
        let (c, rows, err) = lookup(
            dir.path(),
            &t.public_ip,
            t.public_port,
            at,
            &["--proto", &t.proto],
        );
        assert_eq!(c, 0, "{t:?}: exit {c}, {err}");
        let holders: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["internal_ip"].as_str().unwrap(),
                    r["internal_port"]
                )
            })
            .collect();
        assert!(holders.contains(&t.internal), "{t:?}: holders {holders:?}");
        // Everyone named held that public endpoint at that time per conntrack.
        for r in &rows {
            let k = key_of(r);
            assert!(
                truth.iter().any(|u| u.key() == k
                    && u.new_ns <= at + 1_000_000_000
                    && u.destroy_ns.is_none_or(|d| at <= d + 1_000_000_000)),
                "{k:?} named at {at} but conntrack did not hold it then"
            );
            assert!(r["start"].as_str().unwrap().ends_with('Z'));
        }
        // With the remote endpoint named, exactly the one holder.
        let remote = t.remote.clone();
        let (c, rows, _) = lookup(
            dir.path(),
            &t.public_ip,
            t.public_port,
            at,
            &["--proto", &t.proto, "--remote", &remote],
        );
        assert_eq!((c, rows.len()), (0, 1), "{t:?}: {rows:?}");
        assert_eq!(key_of(&rows[0]), t.key());
    }
}

#[test]
fn lookups_when_nobody_held_the_port_exit_1() {
    let dir = replayed_any();
    let truth = truth();
    let mut asked = 0;
    for t in &truth {
        let same_port: Vec<&Truth> = truth
            .iter()
            .filter(|u| u.public == t.public && u.proto == t.proto)
            .collect();
        // One second before the first holder of this public endpoint appeared.
        let first = same_port.iter().map(|u| u.new_ns).min().unwrap();
        let (c, rows, err) = lookup(
            dir.path(),
            &t.public_ip,
            t.public_port,
            first - 1_000_000_000,
            &["--proto", &t.proto],
        );
        assert_eq!(
            (c, rows.len()),
            (1, 0),
            "{t:?} before {first}: {rows:?} {err}"
        );
        asked += 1;
        // Well after the last holder's conntrack entry was destroyed.
        if let Some(last) = same_port
            .iter()
            .map(|u| u.destroy_ns)
            .collect::<Option<Vec<i64>>>()
            .and_then(|v| v.into_iter().max())
        {
            let (c, rows, err) = lookup(
                dir.path(),
                &t.public_ip,
                t.public_port,
                last + 5_000_000_000,
                &["--proto", &t.proto],
            );
            assert_eq!(
                (c, rows.len()),
                (1, 0),
                "{t:?} after {last}: {rows:?} {err}"
            );
            asked += 1;
        }
    }
    // A port nobody used at all.
    let (c, rows, _) = lookup(dir.path(), "203.0.113.1", 9, truth[0].new_ns, &[]);
    assert_eq!((c, rows.len()), (1, 0));
    assert!(asked >= truth.len());
}

#[test]
fn lookup_accepts_local_time_with_tz_and_shows_both_zones() {
    let dir = replayed_any();
    let t = &truth()[0];
    let at = held_time(t);
    // The same instant written as Beijing wall-clock time.
    let bj = at + 8 * 3600 * 1_000_000_000;
    let secs = bj / 1_000_000_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let local = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:09}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        bj % 1_000_000_000
    );
    let port = t.public_port.to_string();
    let store = store_arg(dir.path());
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--ip",
        &t.public_ip,
        "--port",
        &port,
        "--at",
        &local,
        "--tz",
        "Asia/Shanghai",
        "--format",
        "json",
        "--proto",
        &t.proto,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(rows.iter().any(|r| key_of(r) == t.key()));
    assert!(rows[0]["start_local"].as_str().unwrap().ends_with("+08:00"));
    // Without a zone the same text is refused, and the message says how to fix it.
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--ip",
        &t.public_ip,
        "--at",
        &local,
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--tz"), "{}", stderr(&o));
    // Table and CSV formats answer too.
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--ip",
        &t.public_ip,
        "--port",
        &port,
        "--at",
        &local,
        "--tz",
        "+08:00",
    ]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains(&t.internal), "{}", stdout(&o));
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--ip",
        &t.public_ip,
        "--port",
        &port,
        "--at",
        &local,
        "--tz",
        "+08:00",
        "--format",
        "csv",
    ]);
    assert!(stdout(&o).starts_with(
        "proto,internal_ip,internal_port,public_ip,public_port,remote_ip,remote_port,start,end"
    ));
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
/// RFC 3339 UTC as natrec prints it.
fn utc(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .unwrap()
        .to_string()
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[test]
fn inspect_lists_sealed_partitions_and_verify_passes() {
    let dir = replayed_any();
    let o = natrec(&["inspect", "--store", &store_arg(dir.path()), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let parts = v["partitions"].as_array().unwrap();
    assert!(!parts.is_empty());
    assert!(
        parts.iter().all(|p| p["state"] == "sealed"),
        "a finished replay seals everything: {parts:?}"
    );
    let o = natrec(&["verify", "--store", &store_arg(dir.path())]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn demo_answers_match_the_kernel() {
    let o = natrec(&["demo"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("every answer matches"));
}

// ---- bad input: exit 2, a message naming the file/offset/field, nothing stored damaged ----

fn assert_clean_error(o: &Output, needles: &[&str]) {
    assert_eq!(code(o), 2, "stdout {} stderr {}", stdout(o), stderr(o));
    let e = stderr(o);
    assert!(e.starts_with("natrec: "), "{e}");
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn garbage_file_is_not_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, b"this is not a capture file at all").unwrap();
    let o = replay(dir.path(), &[bad.to_str().unwrap()]);
    assert_clean_error(&o, &["notes.txt"]);
    assert!(
        !dir.path().join("store").exists(),
        "no store is made for input that cannot be read"
    );
}

#[test]
fn truncated_capture_records_what_came_before_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("natlab.any.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3 + 7]).unwrap();
    let o = replay(dir.path(), &[cut.to_str().unwrap()]);
    assert_clean_error(&o, &["cut.pcap", "byte"]);
    let got = export(dir.path());
    assert!(!got.is_empty(), "mappings before the cut were stored");
    let truth: Vec<_> = truth().iter().map(Truth::key).collect();
    assert!(
        got.iter().all(|v| truth.contains(&key_of(v))),
        "and nothing false"
    );
    let o = natrec(&["verify", "--store", &store_arg(dir.path())]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn unknown_link_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("natlab.outside.pcap")).unwrap();
    // pcap global header: link type at bytes 20..24, little-endian in a file
    // whose magic reads d4 c3 b2 a1 (µs) or 4d 3c b2 a1 (ns); 147 = USER0.
    assert!(
        matches!(
            &bytes[..4],
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]
        ),
        "fixture is a little-endian pcap"
    );
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes());
    let f = dir.path().join("user0.pcap");
    std::fs::write(&f, &bytes).unwrap();
    let o = replay(dir.path(), &[f.to_str().unwrap()]);
    assert_clean_error(&o, &["user0.pcap: packet at byte 24:", "link type 147"]);
    // The same with three threads, where the reader may leave decoding to
    // the correlating thread: the reader still stops the file and names it.
    for threads in ["1", "3"] {
        let store = dir.path().join(format!("store-{threads}"));
        let o = natrec(&[
            "replay",
            "--quiet",
            "--threads",
            threads,
            "--store",
            store.to_str().unwrap(),
            f.to_str().unwrap(),
        ]);
        assert_clean_error(&o, &["user0.pcap: packet at byte 24:", "link type 147"]);
    }
}

#[test]
fn capture_span_is_the_earliest_and_latest_packet_whatever_the_order() {
    // The outside fixture with its first and last records swapped (the first packet read is
    // the latest, the earliest comes last), alone and merged with the fixture itself: the
    // summary's first and last packet are those of the fixture, with one and three threads.
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read(fixture("natlab.outside.pcap")).unwrap();
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= src.len() {
        let caplen = u32::from_le_bytes(src[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(&src[at..at + 16 + caplen]);
        at += 16 + caplen;
    }
    assert!(records.len() > 2);
    let n = records.len();
    records.swap(0, n - 1);
    let mut swapped = src[..24].to_vec();
    for r in &records {
        swapped.extend_from_slice(r);
    }
    let f = dir.path().join("swapped.pcap");
    std::fs::write(&f, &swapped).unwrap();
    let original = fixture("natlab.outside.pcap");
    let span = |threads: &str, files: &[&Path]| {
        let store = dir.path().join(format!("store-{}", files.len()));
        let _ = std::fs::remove_dir_all(&store);
        let mut args = vec![
            "replay",
            "--quiet",
            "--json",
            "--threads",
            threads,
            "--store",
            store.to_str().unwrap(),
        ];
        args.extend(files.iter().map(|p| p.to_str().unwrap()));
        let o = natrec(&args);
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        (v["first_packet"].clone(), v["last_packet"].clone())
    };
    // A little-endian µs pcap (as `repeated_capture` checks).
    let ns = |r: &[u8]| {
        let le32 = |at: usize| i64::from(u32::from_le_bytes(r[at..at + 4].try_into().unwrap()));
        le32(0) * 1_000_000_000 + le32(4) * 1_000
    };
    let (first, last) = (
        records.iter().map(|r| ns(r)).min().unwrap(),
        records.iter().map(|r| ns(r)).max().unwrap(),
    );
    assert!(ns(records[0]) == last && ns(records[n - 1]) == first && first < last);
    let want = (Value::from(utc(first)), Value::from(utc(last)));
    for threads in ["1", "3"] {
        assert_eq!(
            span(threads, &[&original]),
            want,
            "{threads} threads, in order"
        );
        assert_eq!(span(threads, &[&f]), want, "{threads} threads, swapped");
        assert_eq!(
            span(threads, &[&f, &original]),
            want,
            "{threads} threads, merged"
        );
    }
}

#[test]
fn packets_not_decoded_are_counted_alike_whichever_thread_decodes() {
    // The outside capture plus ARP frames and a truncated IPv4 packet after
    // its last record (time order kept): each pipeline shape must count the
    // same skips (with three threads the correlating thread may decode).
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("natlab.outside.pcap")).unwrap();
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let (mut pos, mut last_sec) = (24, 0);
    while pos < bytes.len() {
        last_sec = le32(&bytes, pos);
        pos += 16 + le32(&bytes, pos + 8) as usize;
    }
    let mut arp = vec![0xff; 6];
    arp.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend([0u8; 28]);
    let mut cut_ipv4 = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    cut_ipv4.extend([0x45, 0, 0, 60, 0, 1, 0, 0]);
    for (i, frame) in [&arp, &arp, &cut_ipv4, &arp].iter().enumerate() {
        for v in [
            last_sec + 1,
            i as u32,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            bytes.extend(v.to_le_bytes());
        }
        bytes.extend(frame.iter());
    }
    let f = dir.path().join("with-skips.pcap");
    std::fs::write(&f, &bytes).unwrap();
    let mut seen = Vec::new();
    for threads in ["1", "2", "3"] {
        let store = dir.path().join(format!("store-{threads}"));
        let o = natrec(&[
            "replay",
            "--quiet",
            "--json",
            "--threads",
            threads,
            "--store",
            store.to_str().unwrap(),
            f.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        seen.push((
            v["skipped"].clone(),
            v["packets"].clone(),
            v["mappings"].clone(),
        ));
    }
    let skipped_total: u64 = seen[0]
        .0
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(skipped_total, 4, "{:?}", seen[0]);
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}

#[test]
fn a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let o = natrec(&[
        "lookup",
        "--store",
        &d,
        "--ip",
        "203.0.113.1",
        "--at",
        "2026-03-01T14:03:22+08:00",
    ]);
    assert_clean_error(&o, &[&d, "not a natrec store"]);
    let o = natrec(&["inspect", "--store", &d]);
    assert_clean_error(&o, &["not a natrec store"]);
}

#[test]
fn impossible_query_times_are_refused() {
    let dir = replayed_any();
    let store = store_arg(dir.path());
    for (at, needle) in [
        ("2026-02-30T10:00:00Z", "2026-02-30"),
        ("12", "1990..2200"),
        ("tomorrow", "tomorrow"),
        ("2026-03-01 14:03:22", "--tz"),
    ] {
        let o = natrec(&[
            "lookup",
            "--store",
            &store,
            "--ip",
            "203.0.113.1",
            "--at",
            at,
        ]);
        assert_clean_error(&o, &[needle]);
    }
    let o = natrec(&[
        "export",
        "--store",
        &store,
        "--from",
        "2026-03-02T00:00:00Z",
        "--to",
        "2026-03-01T00:00:00Z",
    ]);
    assert_clean_error(&o, &["after"]);
}

#[test]
fn partition_with_bad_checksum_is_reported_and_others_still_answer() {
    let dir = replayed_any();
    let parts = dir.path().join("store/partitions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    files.sort();
    let victim = &files[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();

    let o = natrec(&["verify", "--store", &store_arg(dir.path())]);
    assert_eq!(code(&o), 2);
    assert!(stdout(&o).contains(&name), "{}", stdout(&o));

    // Every truth mapping whose time falls in the damaged partition: exit 2 and the file named.
    let t = &truth()[0];
    let (c, _, err) = lookup(dir.path(), &t.public_ip, t.public_port, held_time(t), &[]);
    if c == 2 {
        assert!(err.contains(&name), "{err}");
    }
    // Export still writes what it can read, and says what it could not.
    let o = natrec(&["export", "--store", &store_arg(dir.path())]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains(&name), "{}", stderr(&o));
}

#[test]
fn replay_pcapng_mirror_with_sides_by_interface_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("natlab.mirror.pcapng");
    let o = replay(
        dir.path(),
        &[
            f.to_str().unwrap(),
            "--inside-interface",
            "nat-in",
            "--outside-interface",
            "nat-out",
        ],
    );
    assert_eq!(code(&o), 0, "replay: {}{}", stdout(&o), stderr(&o));
    assert_export_equals_truth(dir.path());
}

#[test]
fn replay_any_capture_with_sides_by_sll2_ifindex() {
    // natlab.meta.json: in nrlab-nat, ifindex 2 = nat-in (inside), 3 = nat-out (outside).
    let meta = meta();
    let ifs = meta["namespaces"]["nrlab-nat"].as_array().unwrap();
    let index_of =
        |role: &str| ifs.iter().find(|i| i["role"] == role).unwrap()["ifindex"].to_string();
    let (inside, outside) = (index_of("inside"), index_of("outside"));
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("natlab.any.pcap");
    let o = replay(
        dir.path(),
        &[
            f.to_str().unwrap(),
            "--inside-interface",
            &inside,
            "--outside-interface",
            &outside,
        ],
    );
    assert_eq!(code(&o), 0, "replay: {}{}", stdout(&o), stderr(&o));
    assert_export_equals_truth(dir.path());
}

#[test]
fn replay_twice_into_one_store_keeps_one_answer_per_mapping() {
    // A second replay of the same capture writes new segments; it never
    // touches the sealed ones, and lookups still name one holder each.
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("natlab.any.pcap");
    assert_eq!(code(&replay(dir.path(), &[f.to_str().unwrap()])), 0);
    let parts = dir.path().join("store/partitions");
    let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let o = replay(dir.path(), &[f.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for (p, bytes) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), bytes, "{} changed", p.display());
    }
    assert_export_equals_truth(dir.path());
}

#[test]
fn replay_into_an_existing_store_keeps_its_hold_times_and_says_so() {
    let dir = replayed_any();
    let store = store_arg(dir.path());
    let f = fixture("natlab.any.pcap");
    let o = natrec(&[
        "replay",
        "--quiet",
        "--store",
        &store,
        "--hold-udp",
        "999s",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("were not applied"), "{}", stderr(&o));
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("store/store.json")).unwrap())
            .unwrap();
    assert_ne!(json["hold"]["udp_s"], 999);
}

/// The `-i any` fixture repeated `copies` times, each copy `shift_s` later:
/// a long capture of the same traffic (pcap, little-endian, µs).
fn repeated_capture(copies: u32, shift_s: u32) -> Vec<u8> {
    let src = std::fs::read(fixture("natlab.any.pcap")).unwrap();
    assert_eq!(
        &src[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "the -i any fixture is a little-endian µs pcap"
    );
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= src.len() {
        let caplen = u32::from_le_bytes(src[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(&src[at..at + 16 + caplen]);
        at += 16 + caplen;
    }
    let mut out = src[..24].to_vec();
    for c in 0..copies {
        for r in &records {
            let secs = u32::from_le_bytes(r[..4].try_into().unwrap()) + c * shift_s;
            out.extend_from_slice(&secs.to_le_bytes());
            out.extend_from_slice(&r[4..]);
        }
    }
    out
}

#[test]
fn kill_9_during_replay_leaves_a_store_that_opens_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("long.pcap");
    // 3000 copies a minute apart: 50 hours of traffic, ~1.1 M packets.
    std::fs::write(&big, repeated_capture(3000, 60)).unwrap();
    let store = store_arg(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_natrec"))
        .args([
            "replay",
            "--quiet",
            "--store",
            &store,
            "--partition-span",
            "1h",
            big.to_str().unwrap(),
        ])
        .args(hold_flags())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it write for a while (it flushes at least every second), then SIGKILL.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();

    // The store opens; every byte that is there checks out.
    let o = natrec(&["verify", "--store", &store]);
    assert_eq!(
        code(&o),
        0,
        "verify after kill -9: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let got = export(dir.path());
    assert!(
        !got.is_empty(),
        "mappings written before the kill are there"
    );
    let truth: Vec<_> = truth().iter().map(Truth::key).collect();
    assert!(
        got.iter().all(|v| truth.contains(&key_of(v))),
        "and nothing false"
    );
    // A new writer recovers the active logs and finishes the job.
    let o = natrec(&[
        "replay",
        "--quiet",
        "--store",
        &store,
        fixture("natlab.any.pcap").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "replay after kill -9: {}", stderr(&o));
    let o = natrec(&["inspect", "--store", &store, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    if !killed {
        eprintln!("note: the replay finished before the kill; only recovery of a complete store was exercised");
    }
}

/// `natrec record` live on a real Linux NAT (tools/natlab.sh in network
/// namespaces `nrlive-*`): two recorders run at once on the NAT host, one
/// per interface (nat-in, nat-out) and one on `any` (sides by ifindex),
/// while natlab drives its bounded traffic; both are stopped with SIGTERM;
/// every conntrack mapping must be exported (recall and precision 100 %)
/// and found by lookup. Root only, with iproute2, iptables, tcpdump,
/// conntrack and python3; otherwise it prints why it is skipped.
#[cfg(feature = "live")]
#[test]
fn live_record_on_a_real_nat_finds_every_conntrack_mapping() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        println!("skipped: live_record_on_a_real_nat_finds_every_conntrack_mapping needs root (network namespaces)");
        return;
    }
    for tool in [
        "ip",
        "iptables",
        "tcpdump",
        "conntrack",
        "python3",
        "timeout",
        "stdbuf",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            println!("skipped: live_record_on_a_real_nat_finds_every_conntrack_mapping needs {tool} (apt-get install iproute2 iptables tcpdump conntrack python3)");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let bin = env!("CARGO_BIN_EXE_natrec");
    // The lab's conntrack timeouts (tools/README.md) as hold times.
    let hold = "--hold-tcp-closed 3s --hold-tcp-open 60s --hold-udp 5s --hold-udp-stream 10s --hold-icmp 5s";
    let script = format!(
        r#"#!/bin/sh
# Runs in the NAT namespace: two recorders, stopped together by SIGTERM.
O={out}
{bin} record --config /dev/null --store $O/if/store --inside-interface nat-in --outside-interface nat-out --metrics-addr off {hold} 2> $O/if.log & a=$!
{bin} record --config /dev/null --store $O/any/store --interface any --inside-interface nat-in --outside-interface nat-out --metrics-addr off {hold} 2> $O/any.log & b=$!
trap 'kill -TERM $a $b; wait $a; ra=$?; wait $b; rb=$?; echo "exit codes $ra $rb" >&2; exit $((ra + rb))' TERM
i=0
while [ $i -lt 200 ]; do
    grep -q recording $O/if.log && grep -q recording $O/any.log && break
    kill -0 $a $b || exit 3
    i=$((i + 1)); sleep 0.1
done
echo "both recorders ready" >&2
wait
"#,
        out = out.display()
    );
    std::fs::create_dir_all(out.join("if")).unwrap();
    std::fs::create_dir_all(out.join("any")).unwrap();
    let script_path = out.join("during.sh");
    std::fs::write(&script_path, script).unwrap();
    let lab = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/natlab.sh"))
        .arg(out.join("lab"))
        .arg("lab")
        .env("NATLAB_PREFIX", "nrlive-")
        .env("NATLAB_DURING", format!("sh {}", script_path.display()))
        .env("NATLAB_DURING_READY_TEXT", "both recorders ready")
        .output()
        .expect("run tools/natlab.sh");
    let logs = || {
        format!(
            "natlab:\n{}\nper-interface recorder:\n{}\nany recorder:\n{}",
            stderr(&lab),
            std::fs::read_to_string(out.join("if.log")).unwrap_or_default(),
            std::fs::read_to_string(out.join("any.log")).unwrap_or_default()
        )
    };
    assert!(lab.status.success(), "natlab failed\n{}", logs());
    let rc = std::fs::read_to_string(out.join("lab/lab.during.rc")).unwrap_or_default();
    assert_eq!(
        rc.trim(),
        "0",
        "both recorders exit 0 on SIGTERM\n{}",
        logs()
    );
    let truth = truth_from(&out.join("lab/lab.truth.jsonl"));
    assert!(truth.len() >= 10, "natlab made {} mappings", truth.len());
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lab/lab.meta.json")).unwrap())
            .unwrap();
    let capture_start = (meta["capture_start_unix"].as_f64().unwrap() * 1e9) as i64;
    for mode in ["if", "any"] {
        let d = out.join(mode);
        assert_export_equals(&d, &truth);
        let mut found = 0;
        for t in &truth {
            let at = t.new_ns.max(capture_start) + 50_000_000;
            let (c, rows, err) = lookup(&d, &t.public_ip, t.public_port, at, &[]);
            assert_eq!(c, 0, "{mode}: lookup {} at {at}: {err}", t.public);
            assert!(
                rows.iter().any(|r| key_of(r) == t.key()),
                "{mode}: lookup of {} at {at} names {:?}, conntrack says {}",
                t.public,
                rows.iter().map(key_of).collect::<Vec<_>>(),
                t.internal
            );
            assert!(!err.contains("lost"), "{mode}: no packets lost: {err}");
            found += 1;
        }
        let o = natrec(&["verify", "--store", &store_arg(&d)]);
        assert_eq!(code(&o), 0, "{mode}: verify: {}{}", stdout(&o), stderr(&o));
        println!(
            "live {mode}: {} conntrack mappings, exported {} (recall 100 %, precision 100 %), {found} lookups name the kernel's holder",
            truth.len(),
            truth.len()
        );
    }
}

#[test]
fn record_check_config_explains_and_refuses_what_it_must() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/systemd/natrec.toml");
    let o = natrec(&[
        "record",
        "--config",
        example.to_str().unwrap(),
        "--check-config",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    for needle in [
        "configuration valid",
        "queue_batches_max:",
        "retention:                 180 days",
        "eth1 (Inside",
    ] {
        assert!(stdout(&o).contains(needle), "{needle}: {}", stdout(&o));
    }
    // A flag wins over the file.
    let o = natrec(&[
        "record",
        "--config",
        example.to_str().unwrap(),
        "--retention-days",
        "59",
        "--check-config",
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("Art. 13"), "{}", stderr(&o));
    // More flows than the correlator can index: an operator error, not a panic,
    // for the recorder and for a replay alike.
    let o = natrec(&[
        "record",
        "--config",
        example.to_str().unwrap(),
        "--flows-active-max",
        "20000000",
        "--check-config",
    ]);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("flows_active_max") && stderr(&o).contains("give at most 16769022"),
        "{}",
        stderr(&o)
    );
    let store = tempfile::tempdir().unwrap();
    let o = natrec(&[
        "replay",
        "--quiet",
        "--store",
        &store_arg(store.path()),
        "--flows-active-max",
        "20000000",
        fixture("natlab.any.pcap").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("give at most"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "store = \"/tmp/s\"\ninterface = \"any\"\nqueue_batches = 3\n",
    )
    .unwrap();
    let o = natrec(&[
        "record",
        "--config",
        bad.to_str().unwrap(),
        "--check-config",
    ]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("queue_batches"),
        "names the key: {}",
        stderr(&o)
    );
    let o = natrec(&[
        "record",
        "--config",
        "/nonexistent/natrec.toml",
        "--check-config",
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    let o = natrec(&[
        "record",
        "--config",
        "/dev/null",
        "--store",
        "/tmp/s",
        "--check-config",
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--inside-interface"), "{}", stderr(&o));
}

/// A gap (packets the recorder lost) overlapping a lookup: holders found →
/// exit 0 with a warning on stderr (JSON stdout unchanged); nobody found →
/// exit 1 with the warning; the table says it too.
#[test]
fn lookup_warns_when_the_recorder_lost_packets_in_the_window() {
    let dir = replayed_any();
    let t = &truth()[0];
    let at = held_time(t);
    let (c, rows, err) = lookup(dir.path(), &t.public_ip, t.public_port, at, &[]);
    assert_eq!((c, err.contains("lost")), (0, false), "{err}");
    let before = rows.len();
    {
        let store = natrec_storage::Store::open(&dir.path().join("store")).unwrap();
        let mut w = store.writer().unwrap();
        w.append_gap(&natrec_storage::Gap {
            from_ns: at - 1_000_000_000,
            to_ns: at + 1_000_000_000,
            count: 42,
            kind: natrec_storage::GapKind::Kernel,
        })
        .unwrap();
    }
    let (c, rows, err) = lookup(dir.path(), &t.public_ip, t.public_port, at, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(rows.len(), before, "JSON output unchanged");
    assert!(
        err.contains("warning")
            && err.contains("kernel: the recorder lost 42 packets in 1 interval")
            && err.contains("may be incomplete"),
        "{err}"
    );
    // Nobody held port 1 then: exit 1, and the warning says the answer may be incomplete.
    let (c, rows, err) = lookup(dir.path(), &t.public_ip, 1, at, &[]);
    assert_eq!((c, rows.len()), (1, 0));
    assert!(err.contains("may be incomplete"), "{err}");
    let at_s = format!("{}.{:09}", at / 1_000_000_000, at % 1_000_000_000);
    let o = natrec(&[
        "lookup",
        "--store",
        &store_arg(dir.path()),
        "--ip",
        &t.public_ip,
        "--port",
        "1",
        "--at",
        &at_s,
    ]);
    assert!(
        stdout(&o).contains("WARNING: kernel: the recorder lost 42 packets"),
        "{}",
        stdout(&o)
    );
    // After the gap but within the longest hold time: still a warning (a
    // mapping made in the gap and idle since would still be held then).
    let (_, _, err) = lookup(
        dir.path(),
        &t.public_ip,
        t.public_port,
        at + 5_000_000_000,
        &[],
    );
    assert!(
        err.contains("lost 42 packets") && err.contains("the longest hold time before it"),
        "{err}"
    );
    // After the gap by more than the longest hold time: no warning.
    let hold_max = natrec_storage::Store::open(&dir.path().join("store"))
        .unwrap()
        .config()
        .hold
        .max_ns();
    let (_, _, err) = lookup(
        dir.path(),
        &t.public_ip,
        t.public_port,
        at + 1_000_000_000 + hold_max + 2_000_000_000,
        &[],
    );
    assert!(!err.contains("lost"), "{err}");
    // Before the gap: no warning.
    let (_, _, err) = lookup(
        dir.path(),
        &t.public_ip,
        t.public_port,
        at - 5_000_000_000,
        &[],
    );
    assert!(!err.contains("lost"), "{err}");
    // Many gaps: one warning line per kind, with the count and the first and
    // last interval, not one line per gap.
    {
        let store = natrec_storage::Store::open(&dir.path().join("store")).unwrap();
        let mut w = store.writer().unwrap();
        for i in 0..50i64 {
            let from = at + 3_000_000_000 + i * 10_000_000;
            w.append_gap(&natrec_storage::Gap {
                from_ns: from,
                to_ns: from + 5_000_000,
                count: 2,
                kind: natrec_storage::GapKind::Queue,
            })
            .unwrap();
        }
    }
    let o = natrec(&[
        "export",
        "--store",
        &store_arg(dir.path()),
        "--format",
        "jsonl",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 2, "one line per kind: {warnings:#?}");
    let queue = warnings
        .iter()
        .find(|l| l.contains("queue:"))
        .expect("queue line");
    assert!(
        queue.contains("lost 100 packets in 50 intervals")
            && queue.contains(&format!("first {}", utc(at + 3_000_000_000)))
            && queue.contains(&format!(
                "..{}",
                utc(at + 3_000_000_000 + 49 * 10_000_000 + 5_000_000)
            )),
        "{queue}"
    );
    let o = natrec(&["verify", "--store", &store_arg(dir.path())]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

/// Runs natrec-gen with `args` (its `--out` is `out`) and returns its
/// `gen.json` and the `natrec replay` arguments it names.
fn generate(out: &Path, args: &[&str]) -> (Value, Vec<String>) {
    let mut all = vec!["--out".to_string(), out.to_str().unwrap().to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    natrec_tools::gen::run(all).unwrap();
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("gen.json")).unwrap()).unwrap();
    let replay_args = meta["replay_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (meta, replay_args)
}

#[test]
fn generated_workloads_replay_to_exactly_their_truth() {
    // natrec-gen's Linux SNAT model, made crowded (few subscribers, a pool of
    // two, 32 ports each, 16 remotes) so ports collide, get remapped and are
    // held by several subscribers at once; once per link layer, and as NAT66
    // and behind PPPoE (a BRAS's subscriber side) on each.
    for (link, ip, encap) in [
        ("sll2", "4", "none"),
        ("vlan", "4", "none"),
        ("two-eth", "4", "none"),
        ("sll2", "6", "pppoe"),
        ("vlan", "4", "pppoe"),
        ("two-eth", "6", "none"),
    ] {
        let what = format!("{link}, IPv{ip}, inside encapsulation {encap}");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("gen");
        let (meta, replay_args) = generate(
            &out,
            &[
                "--packets",
                "30000",
                "--link",
                link,
                "--ip",
                ip,
                "--inside-encap",
                encap,
                "--subscribers",
                "300",
                "--pool",
                "2",
                "--port-range",
                "32",
                "--remotes",
                "16",
                "--seed",
                "7",
            ],
        );
        assert!(
            meta["mappings_remapped_port"].as_u64().unwrap() > 10,
            "{what}: crowded enough to remap: {meta}"
        );
        // The capture really is of the asked-for shape: PPPoE session headers
        // (version/type 1/1, code 0, then PPP's IPv4 or IPv6), IPv6 subscriber addresses
        // (fd00::100.64.x.y).
        let capture: Vec<u8> = meta["files"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| std::fs::read(f.as_str().unwrap()).unwrap())
            .collect();
        let has = |needle: &[u8]| capture.windows(needle.len()).any(|w| w == needle);
        let pppoe_ppp = capture
            .windows(8)
            .any(|w| w[..2] == [0x11, 0x00] && (w[6..] == [0x00, 0x21] || w[6..] == [0x00, 0x57]));
        assert_eq!(pppoe_ppp, encap == "pppoe", "{what}");
        let v6_subscriber = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64];
        assert_eq!(has(&v6_subscriber), ip == "6", "{what}");
        let truth = truth_from(&out.join("truth.jsonl"));
        assert!(truth.len() > 500, "{what}: {} mappings", truth.len());
        // Every pipeline shape (one loop; reader + correlate/write; reader +
        // correlate + write) gives exactly the truth.
        for threads in ["1", "2", "3"] {
            let store_dir = dir.path().join(format!("threads-{threads}"));
            std::fs::create_dir(&store_dir).unwrap();
            let mut cmd = vec![
                "replay".to_string(),
                "--quiet".into(),
                "--threads".into(),
                threads.into(),
                "--store".into(),
                store_arg(&store_dir),
            ];
            cmd.extend(replay_args.iter().cloned());
            let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let o = natrec(&refs);
            assert_eq!(
                code(&o),
                0,
                "{what}, {threads} threads: {}{}",
                stdout(&o),
                stderr(&o)
            );
            assert_export_equals(&store_dir, &truth);
        }
    }
}

#[test]
fn a_flow_table_larger_than_the_address_space_limit_is_an_error_naming_the_option() {
    // The flow table's address space (flows_active_max slots) is reserved up
    // front; under `ulimit -v` that cannot hold it, replay says which option
    // to lower, and with the option lowered it runs.
    let dir = tempfile::tempdir().unwrap();
    let run = |store: &str, extra: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 150000 && exec \"$0\" replay --quiet --store \"$1\" {extra} \"$2\""
            ))
            .arg(env!("CARGO_BIN_EXE_natrec"))
            .arg(dir.path().join(store))
            .arg(fixture("natlab.any.pcap"))
            .output()
            .unwrap()
    };
    let o = run("big", "--flows-active-max 4194304");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--flows-active-max 4194304")
            && stderr(&o).contains("lower --flows-active-max"),
        "{}",
        stderr(&o)
    );
    let o = run("small", "--flows-active-max 1000");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn export_into_a_closed_pipe_stops_quietly() {
    // `natrec export | head -1`: the reader goes away after one line; natrec
    // stops with 141 (as SIGPIPE would end a C tool) and says nothing, and the
    // same export into a reader that stays prints every mapping.
    let dir = tempfile::tempdir().unwrap();
    let (_, replay_args) = generate(
        &dir.path().join("gen"),
        &["--packets", "40000", "--link", "two-eth"],
    );
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let mut cmd = vec![
        "replay".to_string(),
        "--quiet".into(),
        "--store".into(),
        store_arg(&store_dir),
    ];
    cmd.extend(replay_args);
    let o = natrec(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let export = [
        "export",
        "--store",
        &store_arg(&store_dir),
        "--format",
        "csv",
    ];
    let whole = natrec(&export);
    assert_eq!(code(&whole), 0, "{}", stderr(&whole));
    // More than a pipe's buffer (64 KiB), so natrec is still writing when the reader leaves.
    assert!(
        whole.stdout.len() > 256 * 1024,
        "{} bytes",
        whole.stdout.len()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_natrec"))
        .args(export)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("proto,internal_ip"), "{first}");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(141), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

// ------------------------------------------------------------------ live: operations
//
// Each test below builds its own lab (tools/natlab.sh) in namespaces with its
// own prefix (`nrops1-` ...), so they run at once with each other and with
// anyone else's lab; natlab deletes its namespaces on exit.

/// Why a live lab cannot run here (not root, a tool missing), printed as
/// `skipped: ...`; `None` when it can.
#[cfg(feature = "live")]
fn live_lab_unavailable(test: &str) -> bool {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        println!("skipped: {test} needs root (network namespaces)");
        return true;
    }
    for tool in [
        "ip",
        "iptables",
        "tcpdump",
        "conntrack",
        "python3",
        "timeout",
        "stdbuf",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            println!("skipped: {test} needs {tool} (apt-get install iproute2 iptables tcpdump conntrack python3)");
            return true;
        }
    }
    false
}

/// The lab's conntrack timeouts (tools/README.md) as hold times.
#[cfg(feature = "live")]
const LAB_HOLD: &str =
    "--hold-tcp-closed 3s --hold-tcp-open 60s --hold-udp 5s --hold-udp-stream 10s --hold-icmp 5s";

/// One finished natlab run in `out/lab/lab.*`.
#[cfg(feature = "live")]
struct LabRun {
    out: PathBuf,
    natlab_stderr: String,
    truth: Vec<Truth>,
    capture_start_ns: i64,
}

#[cfg(feature = "live")]
impl LabRun {
    fn file(&self, ext: &str) -> String {
        std::fs::read_to_string(self.out.join("lab").join(format!("lab.{ext}"))).unwrap_or_default()
    }
    /// Everything worth reading when an assertion fails.
    fn logs(&self) -> String {
        let mut s = format!("natlab:\n{}", self.natlab_stderr);
        for ext in ["during1.log", "during.log", "midway.log"] {
            s.push_str(&format!("\n--- {ext}:\n{}", self.file(ext)));
        }
        s
    }
}

/// Runs natlab with `NATLAB_DURING=during` and the extra environment, in
/// namespaces `prefix*`; panics (with the logs) when natlab itself fails.
#[cfg(feature = "live")]
fn run_lab(out: &Path, prefix: &str, during: &str, env: &[(&str, &str)]) -> LabRun {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/natlab.sh"))
        .arg(out.join("lab"))
        .arg("lab")
        .env("NATLAB_PREFIX", prefix)
        .env("NATLAB_DURING", during);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run tools/natlab.sh");
    let mut run = LabRun {
        out: out.to_path_buf(),
        natlab_stderr: stderr(&o),
        truth: Vec::new(),
        capture_start_ns: 0,
    };
    assert!(o.status.success(), "natlab failed\n{}", run.logs());
    let leftover = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !stdout(&leftover).contains(prefix),
        "natlab left namespaces {prefix}*: {}",
        stdout(&leftover)
    );
    run.truth = truth_from(&out.join("lab/lab.truth.jsonl"));
    let meta: Value = serde_json::from_str(&run.file("meta.json")).unwrap();
    run.capture_start_ns = (meta["capture_start_unix"].as_f64().unwrap() * 1e9) as i64;
    run
}

/// A `NATLAB_DURING` command for a recorder that logs to `log` (not stderr):
/// a shell that starts it, writes its PID to `pid`, says `natrec ready` on
/// stderr once the log says `recording`, and passes SIGTERM on.
#[cfg(feature = "live")]
fn during_with_log_file(out: &Path, args: &str, log: &Path, pid: &Path) -> String {
    let script = format!(
        r#"#!/bin/sh
{bin} record {args} --log-file {log} & p=$!
echo $p > {pid}
trap 'kill -TERM $p; wait $p; rc=$?; echo "exit code $rc" >&2; exit $rc' TERM
i=0
while [ $i -lt 200 ]; do
    grep -q recording {log} 2>/dev/null && break
    kill -0 $p || exit 3
    i=$((i + 1)); sleep 0.1
done
echo "natrec ready" >&2
wait
"#,
        bin = env!("CARGO_BIN_EXE_natrec"),
        log = log.display(),
        pid = pid.display()
    );
    let path = out.join("during.sh");
    std::fs::write(&path, script).unwrap();
    format!("sh {}", path.display())
}

/// Unix ns of an RFC 3339 time as natrec prints it.
#[cfg(feature = "live")]
fn parse_utc(s: &str) -> i64 {
    let ts: jiff::Timestamp = s.parse().unwrap_or_else(|e| panic!("time '{s}': {e}"));
    ts.as_nanosecond() as i64
}

/// Checks a store written by two recorder runs with a restart in the middle
/// of the traffic (`lab.restart.json`): verify passes, nothing stays
/// `open`, every export row is a conntrack mapping, a flow that spans the
/// restart appears as two halves (before: `capture-end`; after: `midflow`
/// when TCP), every conntrack mapping is found by a lookup at a time it was
/// held (or, if it lived only while the recorder was down, the lookup warns
/// `recorder-down`), and a lookup inside the downtime warns.
#[cfg(feature = "live")]
fn assert_restarted_store(run: &LabRun, store_dir: &Path) {
    let logs = run.logs();
    let o = natrec(&["verify", "--store", &store_arg(store_dir)]);
    assert_eq!(code(&o), 0, "verify: {}{}\n{logs}", stdout(&o), stderr(&o));
    let restart: Value = serde_json::from_str(&run.file("restart.json")).unwrap();
    let ns = |k: &str| (restart[k].as_f64().unwrap() * 1e9) as i64;
    let (signal, stopped, ready) = (ns("signal_unix"), ns("stopped_unix"), ns("ready_unix"));
    assert!(signal <= stopped && stopped <= ready, "{restart}");

    let rows = export(store_dir);
    let mut by_key: BTreeMap<_, Vec<&Value>> = BTreeMap::new();
    for r in &rows {
        assert_ne!(
            r["end_reason"], "open",
            "still open after the stop: {r}\n{logs}"
        );
        by_key.entry(key_of(r)).or_default().push(r);
    }
    let truth_keys: BTreeMap<_, &Truth> = run.truth.iter().map(|t| (t.key(), t)).collect();
    for k in by_key.keys() {
        assert!(
            truth_keys.contains_key(k),
            "exported {k:?}, which conntrack never made\n{logs}"
        );
    }
    // The halves of a flow across the restart.
    let mut split = 0;
    for (k, v) in &mut by_key {
        if v.len() < 2 {
            continue;
        }
        assert_eq!(v.len(), 2, "{k:?}: {v:#?}");
        v.sort_by_key(|r| parse_utc(r["first_seen"].as_str().unwrap()));
        let (a, b) = (v[0], v[1]);
        assert_eq!(a["end_reason"], "capture-end", "first half of {k:?}: {a}");
        // Packets captured between the signal and the capture threads
        // noticing it are still recorded: the bound is the old recorder's exit.
        assert!(
            parse_utc(a["last_seen"].as_str().unwrap()) <= stopped,
            "first half ends before the old recorder exits: {a}"
        );
        assert!(
            parse_utc(b["first_seen"].as_str().unwrap()) >= stopped,
            "second half starts after the stop: {b}"
        );
        if k.0 == "tcp" {
            assert_eq!(b["midflow"], true, "second half has no SYN: {b}");
        }
        split += 1;
    }
    let across = run
        .truth
        .iter()
        .find(|t| t.internal == "100.64.0.4:40090")
        .expect("case 13 (across-midway) in the truth");
    assert_eq!(
        by_key.get(&across.key()).map(Vec::len),
        Some(2),
        "the flow across the restart appears twice: {:?}\n{logs}",
        by_key.get(&across.key())
    );

    let mut found = 0;
    let mut down_only = Vec::new();
    for t in &run.truth {
        let at = t.new_ns.max(run.capture_start_ns) + 50_000_000;
        let (c, rows, err) = lookup(store_dir, &t.public_ip, t.public_port, at, &[]);
        assert_ne!(c, 2, "lookup {} at {at}: {err}", t.public);
        if rows.iter().any(|r| key_of(r) == t.key()) {
            found += 1;
            continue;
        }
        // Not seen: only acceptable if conntrack made it while the recorder was down.
        assert!(
            t.new_ns >= signal - 1_000_000_000 && t.new_ns <= ready + 1_000_000_000,
            "lookup of {} at {at} names {:?}, conntrack says {} (outside the downtime)\n{logs}",
            t.public,
            rows.iter().map(key_of).collect::<Vec<_>>(),
            t.internal
        );
        assert!(
            err.contains("recorder-down"),
            "missed during the downtime without a warning: {err}\nlookup of {} at {at} (conntrack new {}, signal {signal}, stopped {stopped}, ready {ready}) for {}; rows {:?}\n{logs}",
            t.public,
            t.new_ns,
            t.internal,
            rows.iter().map(key_of).collect::<Vec<_>>()
        );
        down_only.push(t.internal.clone());
    }
    // Inside the downtime: the lookup warns; the flow across it is still held
    // (capture-end at its last packet + the hold time).
    // Between the old recorder's exit and the new one being ready nothing is
    // captured (between the signal and the exit, packets already in flight
    // may still be); the new one opens its captures just before it writes
    // the gap, which ends then (before natlab sees it ready).
    // Just after the old recorder's exit: the new one is still starting.
    let mid = stopped + 1_000_000;
    let (c, rows, err) = lookup(store_dir, &across.public_ip, across.public_port, mid, &[]);
    assert_eq!(c, 0, "{err}");
    assert!(rows.iter().any(|r| key_of(r) == across.key()), "{rows:?}");
    let line = err
        .lines()
        .find(|l| l.contains("recorder-down: the recorder was not running"))
        .unwrap_or_else(|| panic!("no recorder-down warning inside the downtime: {err}"));
    // The gap runs from the store's last record (never after the stop) to the restart.
    let span = line
        .split(" (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    let (from, to) = span.split_once("..").unwrap();
    let (from, to) = (parse_utc(from), parse_utc(to));
    assert!(
        from <= stopped,
        "gap starts {from}, old recorder exited at {stopped}: {line}"
    );
    assert!(
        from >= run.capture_start_ns,
        "gap starts at the last record: {line}"
    );
    assert!(
        stopped <= to && to <= ready,
        "gap ends at the restart ({stopped}..{ready}): {line}"
    );
    // After the restart, outside the gap but within the longest hold time
    // after it: still the warning (a mapping made while the recorder was
    // down and idle since would be held then); after that hold: none.
    let (_, _, err) = lookup(
        store_dir,
        &across.public_ip,
        across.public_port,
        ready + 500_000_000,
        &[],
    );
    assert!(
        err.contains("recorder-down") && err.contains("the longest hold time before it"),
        "{err}"
    );
    let hold_max = natrec_storage::Store::open(&store_dir.join("store"))
        .unwrap()
        .config()
        .hold
        .max_ns();
    let (_, _, err) = lookup(
        store_dir,
        &across.public_ip,
        across.public_port,
        ready + hold_max + 2_000_000_000,
        &[],
    );
    assert!(!err.contains("warning"), "{err}");
    println!(
        "restart: {} conntrack mappings, {found} found by lookup, {} only while down {down_only:?}, {split} split across the restart; downtime {:.2} s, gap {:.2} s",
        run.truth.len(),
        down_only.len(),
        (ready - signal) as f64 / 1e9,
        (to - from) as f64 / 1e9
    );
}

/// SIGTERM in the middle of the traffic, then a new recorder on the same
/// store, SIGTERM at the end: both exit 0, and the store answers for every
/// mapping (see `assert_restarted_store`). Also: "SIGTERM received" is
/// logged before the threads report stopping.
#[cfg(feature = "live")]
#[test]
fn live_record_restarted_by_sigterm_during_traffic_answers_for_every_mapping() {
    let test = "live_record_restarted_by_sigterm_during_traffic_answers_for_every_mapping";
    if live_lab_unavailable(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let during = format!(
        "{} record --config /dev/null --store {} --inside-interface nat-in --outside-interface nat-out --metrics-addr off {LAB_HOLD}",
        env!("CARGO_BIN_EXE_natrec"),
        out.join("store").display()
    );
    let run = run_lab(
        out,
        "nrops1-",
        &during,
        &[("NATLAB_DURING_RESTART", "term")],
    );
    let logs = run.logs();
    assert_eq!(
        run.file("during1.rc").trim(),
        "0",
        "first run exits 0 on SIGTERM\n{logs}"
    );
    assert_eq!(
        run.file("during.rc").trim(),
        "0",
        "second run exits 0 on SIGTERM\n{logs}"
    );
    let first = run.file("during1.log");
    let pos = |s: &str| {
        first
            .find(s)
            .unwrap_or_else(|| panic!("'{s}' not logged\n{logs}"))
    };
    assert!(
        pos("SIGTERM received") < pos("capture on")
            && pos("capture on") < pos("correlator drained"),
        "log order: signal, captures stopped, correlator drained\n{logs}"
    );
    let second = run.file("during.log");
    assert!(
        second.contains("resuming") && second.contains("0 mapping(s) left open by a crash"),
        "a clean stop leaves nothing open\n{logs}"
    );
    assert_restarted_store(&run, out);
}

/// kill -9 in the middle of the traffic, then a new recorder on the same
/// store: it closes the mappings the dead one left open (and says how many),
/// nothing is `open` after its stop, verify passes, every mapping answers.
#[cfg(feature = "live")]
#[test]
fn live_record_killed_during_traffic_then_restarted_closes_what_was_left_open() {
    let test = "live_record_killed_during_traffic_then_restarted_closes_what_was_left_open";
    if live_lab_unavailable(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let during = format!(
        "{} record --config /dev/null --store {} --interface any --inside-interface nat-in --outside-interface nat-out --metrics-addr off {LAB_HOLD}",
        env!("CARGO_BIN_EXE_natrec"),
        out.join("store").display()
    );
    let run = run_lab(
        out,
        "nrops2-",
        &during,
        &[("NATLAB_DURING_RESTART", "kill")],
    );
    let logs = run.logs();
    assert_eq!(
        run.file("during1.rc").trim(),
        "137",
        "first run killed by SIGKILL\n{logs}"
    );
    assert_eq!(
        run.file("during.rc").trim(),
        "0",
        "second run exits 0 on SIGTERM\n{logs}"
    );
    let second = run.file("during.log");
    let n: u64 = second
        .split(" mapping(s) left open by a crash")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the restart says how many it closed\n{logs}"));
    assert!(
        n >= 1,
        "the flow across the kill was open: closed {n}\n{logs}"
    );
    assert_restarted_store(&run, out);
}

/// Prometheus counters during the traffic are non-zero and consistent, and
/// `natrec status` (store + metrics) exits 0 while recording without loss.
#[cfg(feature = "live")]
#[test]
fn live_record_metrics_and_status_during_traffic() {
    let test = "live_record_metrics_and_status_during_traffic";
    if live_lab_unavailable(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let bin = env!("CARGO_BIN_EXE_natrec");
    let store = out.join("store");
    // The NAT namespace has its own loopback: a fixed port cannot collide.
    let addr = "127.0.0.1:19633";
    let during = format!(
        "{bin} record --config /dev/null --store {} --inside-interface nat-in --outside-interface nat-out --metrics-addr {addr} {LAB_HOLD}",
        store.display()
    );
    let fetch = format!(
        "import urllib.request; print(urllib.request.urlopen('http://{addr}/metrics', timeout=5).read().decode())"
    );
    let midway = format!(
        "ip netns exec nrops3-nat python3 -c \"{fetch}\" > {m} && ip netns exec nrops3-nat {bin} status --store {s} --metrics-addr {addr} > {st}; echo $? > {st}.rc",
        m = out.join("metrics.txt").display(),
        s = store.display(),
        st = out.join("status.txt").display()
    );
    let run = run_lab(out, "nrops3-", &during, &[("NATLAB_MIDWAY", &midway)]);
    let logs = run.logs();
    assert_eq!(run.file("midway.rc").trim(), "0", "{logs}");
    assert_eq!(run.file("during.rc").trim(), "0", "{logs}");
    let text = std::fs::read_to_string(out.join("metrics.txt")).unwrap();
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let captured = sum("natrec_packets_captured_total");
    let correlated = sum("natrec_packets_correlated_total");
    let not_decoded = sum("natrec_packets_not_decoded_total");
    let opened = sum("natrec_mappings_opened_total");
    let closed = sum("natrec_mappings_closed_total");
    let appended = sum("natrec_records_appended_total");
    let m = format!("metrics:\n{text}\n{logs}");
    assert!(correlated > 0 && opened > 0 && appended > 0, "{m}");
    assert!(captured >= correlated + not_decoded, "{m}");
    assert!(opened >= closed && appended >= opened, "{m}");
    assert!(sum("natrec_flows_active") <= opened, "{m}");
    for zero in [
        "natrec_packets_dropped_total",
        "natrec_batches_dropped_total",
        "natrec_gaps_written_total",
        "natrec_gap_packets_total",
        "natrec_reorder_forced_total",
        "natrec_flows_evicted_total",
    ] {
        assert_eq!(sum(zero), 0, "{zero}: {m}");
    }
    assert!(sum("natrec_partitions_active") >= 1, "{m}");
    let now_s = (run.capture_start_ns / 1_000_000_000) as u64;
    let last = sum("natrec_last_packet_timestamp_seconds");
    assert!(
        last >= now_s && last < now_s + 60,
        "last packet {last}, capture start {now_s}: {m}"
    );
    assert!(sum("natrec_start_timestamp_seconds") <= last, "{m}");
    // Cases before the midway point are all confirmed by then.
    let before = run
        .truth
        .iter()
        .filter(|t| t.new_ns < run.capture_start_ns + 1_000_000_000)
        .count() as u64;
    assert!(
        opened >= before,
        "{opened} opened, {before} conntrack entries in the first second: {m}"
    );
    // At the end, every conntrack mapping was opened.
    let stopped = run.file("during.log");
    let total: u64 = stopped
        .split(" mappings opened")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("stop line with counts\n{logs}"));
    assert!(
        total >= run.truth.len() as u64 && total >= 16,
        "{total} opened, truth {}\n{logs}",
        run.truth.len()
    );

    let status = std::fs::read_to_string(out.join("status.txt")).unwrap();
    let status_rc = std::fs::read_to_string(out.join("status.txt.rc")).unwrap();
    assert_eq!(
        status_rc.trim(),
        "0",
        "status while recording, no loss:\n{status}\n{logs}"
    );
    for needle in [
        "recorder:          running",
        "gaps (last 24 h):  none",
        &format!("metrics:           http://{addr}/metrics"),
        "natrec_mappings_opened_total",
    ] {
        assert!(status.contains(needle), "{needle}:\n{status}");
    }
    // Stopped: status says so (exit 1).
    let o = natrec(&[
        "status",
        "--store",
        store.to_str().unwrap(),
        "--metrics-addr",
        "off",
    ]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("not running"), "{}", stdout(&o));
    println!("metrics at midway: {captured} captured, {correlated} correlated, {opened} opened, {closed} closed, {appended} records; {total} opened in all");
}

/// SIGHUP reopens --log-file: after the file is moved aside, new lines go to
/// a new file at the original path (logrotate's `create` without copytruncate).
#[cfg(feature = "live")]
#[test]
fn live_record_sighup_reopens_the_log_file() {
    let test = "live_record_sighup_reopens_the_log_file";
    if live_lab_unavailable(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let log = out.join("natrec.log");
    let pid = out.join("natrec.pid");
    let args = format!(
        "--config /dev/null --store {} --inside-interface nat-in --outside-interface nat-out --metrics-addr off {LAB_HOLD}",
        out.join("store").display()
    );
    let during = during_with_log_file(out, &args, &log, &pid);
    let midway = format!(
        "mv {log} {log}.1 && kill -HUP $(cat {pid}) && sleep 0.5 && test -s {log}",
        log = log.display(),
        pid = pid.display()
    );
    let run = run_lab(
        out,
        "nrops4-",
        &during,
        &[
            ("NATLAB_MIDWAY", &midway),
            ("NATLAB_DURING_READY_TEXT", "natrec ready"),
        ],
    );
    let old = std::fs::read_to_string(log.with_extension("log.1")).unwrap_or_default();
    let new = std::fs::read_to_string(&log).unwrap_or_default();
    let all = format!("old log:\n{old}\nnew log:\n{new}\n{}", run.logs());
    assert_eq!(run.file("midway.rc").trim(), "0", "{all}");
    assert_eq!(run.file("during.rc").trim(), "0", "{all}");
    assert!(
        old.contains("recording") && !old.contains("stopped:"),
        "{all}"
    );
    assert!(
        !old.contains("SIGHUP"),
        "the reopen line goes to the new file: {all}"
    );
    assert!(
        new.starts_with(|c: char| c.is_ascii_digit()) && new.contains("SIGHUP: log reopened"),
        "{all}"
    );
    let pos = |s: &str| {
        new.find(s)
            .unwrap_or_else(|| panic!("'{s}' not in the new log\n{all}"))
    };
    assert!(
        pos("SIGHUP: log reopened") < pos("SIGTERM received")
            && pos("SIGTERM received") < pos("stopped:"),
        "{all}"
    );
    assert!(
        !new.contains("recording "),
        "nothing from before the move: {all}"
    );
    assert_export_equals(out, &run.truth);
}

/// Removes the test's system user when dropped (also when a test panics).
#[cfg(feature = "live")]
struct TestUser(&'static str);

#[cfg(feature = "live")]
impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.0).output();
    }
}

/// `--user`: started as root, natrec opens the captures, drops to the user,
/// says so in its log, and every file it then creates (the store, the log)
/// belongs to that user. Creates and deletes a system user
/// (`natrec-test-ops`), so it runs only with NATREC_TEST_USERADD=1 (set by
/// .ci/run, which runs on a fresh machine).
#[cfg(feature = "live")]
#[test]
fn live_record_drops_to_user_and_its_files_belong_to_that_user() {
    use std::os::unix::fs::MetadataExt;
    let test = "live_record_drops_to_user_and_its_files_belong_to_that_user";
    if live_lab_unavailable(test) {
        return;
    }
    if std::env::var("NATREC_TEST_USERADD").as_deref() != Ok("1") {
        println!("skipped: {test} creates a system user; set NATREC_TEST_USERADD=1 to run it");
        return;
    }
    const USER: &str = "natrec-test-ops";
    let _ = Command::new("userdel").arg(USER).output(); // left over from an interrupted run
    let o = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        ])
        .output()
        .expect("useradd");
    assert!(o.status.success(), "useradd: {}", stderr(&o));
    let _user = TestUser(USER);
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, USER]).output().unwrap();
        stdout(&o).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    // The user needs to reach its directory (the temp dir is 0700 root).
    std::fs::set_permissions(out, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let svc = out.join("svc");
    std::fs::create_dir(&svc).unwrap();
    std::os::unix::fs::chown(&svc, Some(uid), Some(gid)).unwrap();
    let log = svc.join("natrec.log");
    let args = format!(
        "--config /dev/null --store {} --inside-interface nat-in --outside-interface nat-out --metrics-addr 127.0.0.1:19634 --user {USER} {LAB_HOLD}",
        svc.join("store").display()
    );
    let during = during_with_log_file(out, &args, &log, &out.join("natrec.pid"));
    let run = run_lab(
        out,
        "nrops5-",
        &during,
        &[("NATLAB_DURING_READY_TEXT", "natrec ready")],
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let all = format!("log:\n{text}\n{}", run.logs());
    assert_eq!(run.file("during.rc").trim(), "0", "{all}");
    assert!(
        text.contains(&format!(
            "dropped privileges: running as {USER} (uid {uid}, gid {gid})"
        )),
        "{all}"
    );
    let drop_at = text.find("dropped privileges").unwrap();
    assert!(
        drop_at < text.find("recording").unwrap(),
        "dropped before the store was opened: {all}"
    );
    // Every file and directory the recorder made after the drop is the user's.
    let mut stack = vec![svc.join("store")];
    let mut n = 0;
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (uid, gid),
            "{} belongs to {USER}",
            p.display()
        );
        n += 1;
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    assert!(n >= 3, "store, store.json, a partition: {n}");
    let md = std::fs::metadata(&log).unwrap();
    assert_eq!(md.uid(), uid, "the log file belongs to {USER}");
    assert_export_equals(&svc, &run.truth);
}

/// Regression: with the default hold times (TCP 2 h 4 min after the last
/// packet) against one-hour partitions, every final state written when a
/// hold ran out was late by more than two partitions and opened a new
/// segment of its own sealed partition: one file per mapping (2 703 files
/// for 50 hours of the fixture). Late states now go to the oldest active
/// partition.
#[test]
fn long_holds_do_not_make_a_file_per_late_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("five-hours.pcap");
    // The fixture every minute for 5 hours.
    std::fs::write(&capture, repeated_capture(300, 60)).unwrap();
    let store = store_arg(dir.path());
    let o = natrec(&[
        "replay",
        "--quiet",
        "--store",
        &store,
        capture.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let files = std::fs::read_dir(dir.path().join("store/partitions"))
        .unwrap()
        .count();
    // 5 hours of data, plus the hours the last holds are carried into.
    assert!(
        files <= 12,
        "{files} partition files for 5 hours of traffic"
    );
    let rows = export(dir.path());
    assert!(rows.len() > 300 * 10, "{} mappings", rows.len());
    assert!(
        rows.iter().all(|r| r["end_reason"] != "open"),
        "a finished replay closes everything"
    );
    let o = natrec(&["verify", "--store", &store]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn every_lookup_and_export_is_audited_and_unaudited_access_is_refused() {
    let dir = replayed_any();
    let store = store_arg(dir.path());
    let t = &truth()[1];
    let port = t.public_port.to_string();
    let at = format!("{}", held_time(t) as f64 / 1e9);
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--ip",
        &t.public_ip,
        "--port",
        &port,
        "--at",
        &at,
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = natrec(&[
        "export",
        "--store",
        &store,
        "--from",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let log = std::fs::read_to_string(dir.path().join("store/audit.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[0]["command"], "lookup");
    assert_eq!(lines[0]["query"]["ip"], t.public_ip.as_str());
    assert_eq!(lines[0]["query"]["port"], t.public_port);
    assert_eq!(lines[0]["answers"], 1);
    assert!(lines[0]["uid"].is_u64(), "{}", lines[0]);
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["command"], "export");
    assert_eq!(lines[1]["query"]["from"], "2026-01-01T00:00:00Z");
    // An audit log that cannot be written: no answer at all.
    std::fs::remove_file(dir.path().join("store/audit.log")).unwrap();
    std::fs::create_dir(dir.path().join("store/audit.log")).unwrap();
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--ip",
        &t.public_ip,
        "--port",
        &port,
        "--at",
        &at,
    ]);
    assert_eq!(code(&o), 2);
    assert!(stdout(&o).is_empty(), "nothing shown: {}", stdout(&o));
    assert!(stderr(&o).contains("audit log"), "{}", stderr(&o));
}

/// `lookup --batch`: every request's answer is exactly what a single lookup
/// of it prints (pseudo-random requests: the truth's endpoints at held
/// times, other ports, any port, times off the record); every answered
/// request is audited with its line; table and CSV carry the line numbers.
#[test]
fn batch_lookup_answers_exactly_as_single_lookups() {
    let dir = replayed_any();
    let truth = truth();
    let store = store_arg(dir.path());
    let mut z = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let mut reqs: Vec<(String, Option<u16>, i64)> = Vec::new();
    for _ in 0..40 {
        let t = &truth[(next() % truth.len() as u64) as usize];
        let at = held_time(t) + (next() % 20_000_000_000) as i64 - 10_000_000_000;
        let port = match next() % 4 {
            0 => None,
            1 => Some((next() % 65_536) as u16),
            _ => Some(t.public_port),
        };
        reqs.push((t.public_ip.clone(), port, at));
    }
    let mut text = String::from("# a traceback request\n\n");
    for (ip, port, at) in &reqs {
        let port = port.map_or("-".to_string(), |p| p.to_string());
        text.push_str(&format!(
            "{ip} {port} {}.{:09}\n",
            at / 1_000_000_000,
            at % 1_000_000_000
        ));
    }
    let file = dir.path().join("batch.txt");
    std::fs::write(&file, &text).unwrap();
    let audit_before = std::fs::read_to_string(dir.path().join("store/audit.log"))
        .unwrap_or_default()
        .lines()
        .count();
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(code(&o) <= 1, "exit {}: {}", code(&o), stderr(&o));
    let answers: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(answers.len(), reqs.len());
    let audit = std::fs::read_to_string(dir.path().join("store/audit.log")).unwrap();
    let audit: Vec<Value> = audit
        .lines()
        .skip(audit_before)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(audit.len(), reqs.len(), "one audit line per request");
    let mut any_found = false;
    for (k, ((ip, port, at), a)) in reqs.iter().zip(&answers).enumerate() {
        assert_eq!(
            a["line"],
            k + 3,
            "lines counted from 1, comments and blanks included"
        );
        let at_s = format!("{}.{:09}", at / 1_000_000_000, at % 1_000_000_000);
        let mut args = vec![
            "lookup", "--store", &store, "--ip", ip, "--at", &at_s, "--format", "json",
        ];
        let p;
        if let Some(port) = port {
            p = port.to_string();
            args.extend(["--port", &p]);
        }
        let single = natrec(&args);
        let rows: Vec<Value> = serde_json::from_str(&stdout(&single)).unwrap();
        assert_eq!(a["holders"], Value::Array(rows.clone()), "line {}", k + 3);
        any_found |= !rows.is_empty();
        let q = &audit.iter().find(|e| e["query"]["line"] == k + 3).unwrap();
        assert_eq!(q["command"], "lookup");
        assert_eq!(q["answers"], rows.len());
        assert_eq!(q["query"]["ip"], ip.as_str());
        assert_eq!(q["query"]["batch"], file.to_str().unwrap());
        assert_eq!(q["query"], {
            let mut r = a["request"].clone();
            r["batch"] = q["query"]["batch"].clone();
            r["line"] = q["query"]["line"].clone();
            r
        });
    }
    assert!(any_found, "the requests include held endpoints");
    // CSV: one header, the line number first; table: `line N: ` headings.
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let csv = stdout(&o);
    assert!(csv.starts_with("line,proto,internal_ip,"), "{csv}");
    let rows: usize = answers
        .iter()
        .map(|a| a["holders"].as_array().unwrap().len())
        .sum();
    assert_eq!(csv.lines().count(), 1 + rows);
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
    ]);
    let table = stdout(&o);
    for k in 0..reqs.len() {
        assert!(table.contains(&format!("line {}: ", k + 3)), "{table}");
    }
    // Table: each request's block is the single lookup's output with its
    // heading prefixed; the same batch from standard input answers the same.
    let mut want = String::new();
    for (k, (ip, port, at)) in reqs.iter().enumerate() {
        let at_s = format!("{}.{:09}", at / 1_000_000_000, at % 1_000_000_000);
        let mut args = vec!["lookup", "--store", &store, "--ip", ip, "--at", &at_s];
        let p;
        if let Some(port) = port {
            p = port.to_string();
            args.extend(["--port", &p]);
        }
        want.push_str(&format!("line {}: {}", k + 3, stdout(&natrec(&args))));
    }
    assert_eq!(table, want);
    let mut child = Command::new(env!("CARGO_BIN_EXE_natrec"))
        .args(["lookup", "--store", &store, "--batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), want);
}

/// A malformed batch line stops the batch before any lookup (exit 2, the
/// file, line and field named, nothing audited); with --keep-going it is
/// reported and the other lines are answered (exit 2).
#[test]
fn batch_lookup_names_a_malformed_line_and_field() {
    let dir = replayed_any();
    let t = &truth()[0];
    let store = store_arg(dir.path());
    let at = held_time(t);
    let good = format!(
        "{} {} {}.{:09}",
        t.public_ip,
        t.public_port,
        at / 1_000_000_000,
        at % 1_000_000_000
    );
    let file = dir.path().join("batch.txt");
    std::fs::write(
        &file,
        format!(
            "{good}\n{} 70000 {}\n{good}\n",
            t.public_ip,
            at / 1_000_000_000
        ),
    )
    .unwrap();
    let audit = || {
        std::fs::read_to_string(dir.path().join("store/audit.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = audit();
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert!(
        err.contains("batch.txt line 2: field 2 (port): '70000'"),
        "{err}"
    );
    assert!(err.contains("--keep-going"), "{err}");
    assert_eq!(audit(), before, "nothing looked up, nothing audited");
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--keep-going",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let answers: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(answers.len(), 3);
    assert!(answers[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("field 2 (port)"));
    assert_eq!(answers[0]["holders"], answers[2]["holders"]);
    assert!(!answers[0]["holders"].as_array().unwrap().is_empty());
    assert_eq!(audit(), before + 2, "the two answered requests audited");
    // Time field and missing fields.
    std::fs::write(
        &file,
        format!("{} {} yesterday\n", t.public_ip, t.public_port),
    )
    .unwrap();
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("line 1: field 3 (time): 'yesterday'"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&file, "203.0.113.x 1 5\n").unwrap();
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("line 1: field 1 (ip)"),
        "{}",
        stderr(&o)
    );
}

/// In CSV a request nobody held has no row, so the batch names it on stderr
/// (file, line, address and time) and exits 1; the held one has its rows.
#[test]
fn batch_lookup_csv_names_the_requests_nobody_held() {
    let dir = replayed_any();
    let t = &truth()[0];
    let store = store_arg(dir.path());
    let at = held_time(t);
    let secs = format!("{}.{:09}", at / 1_000_000_000, at % 1_000_000_000);
    let file = dir.path().join("batch.txt");
    std::fs::write(
        &file,
        format!(
            "{} {} {secs}\n# a comment\n198.51.100.250 9 {secs}\n",
            t.public_ip, t.public_port
        ),
    )
    .unwrap();
    let o = natrec(&[
        "lookup",
        "--store",
        &store,
        "--batch",
        file.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.starts_with("1,")),
        "{out}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("batch.txt line 3: nobody held 198.51.100.250 port 9 at "),
        "{err}"
    );
    assert!(!err.contains("line 1:"), "{err}");
}
