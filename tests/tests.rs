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
    assert_clean_error(&o, &["user0.pcap", "link type 147"]);
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
    // Outside the gap: no warning.
    let (_, _, err) = lookup(
        dir.path(),
        &t.public_ip,
        t.public_port,
        at + 5_000_000_000,
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

#[test]
fn generated_workloads_replay_to_exactly_their_truth() {
    // natrec-gen's Linux SNAT model, made crowded (few subscribers, a pool of
    // two, 32 ports each, 16 remotes) so ports collide, get remapped and are
    // held by several subscribers at once; once per link layer.
    for link in ["sll2", "vlan", "two-eth"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("gen");
        let args = [
            "--out",
            out.to_str().unwrap(),
            "--packets",
            "30000",
            "--link",
            link,
            "--subscribers",
            "300",
            "--pool",
            "2",
        ];
        let more = ["--port-range", "32", "--remotes", "16", "--seed", "7"];
        natrec_tools::gen::run(
            args.iter()
                .chain(more.iter())
                .map(|s| s.to_string())
                .collect(),
        )
        .unwrap();
        let meta: Value =
            serde_json::from_slice(&std::fs::read(out.join("gen.json")).unwrap()).unwrap();
        assert!(
            meta["mappings_remapped_port"].as_u64().unwrap() > 10,
            "{link}: crowded enough to remap: {meta}"
        );
        let replay_args: Vec<String> = meta["replay_args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let store = store_arg(dir.path());
        let mut cmd = vec![
            "replay".to_string(),
            "--quiet".into(),
            "--store".into(),
            store,
        ];
        cmd.extend(replay_args);
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let o = natrec(&refs);
        assert_eq!(code(&o), 0, "{link}: {}{}", stdout(&o), stderr(&o));
        let truth = truth_from(&out.join("truth.jsonl"));
        assert!(truth.len() > 500, "{link}: {} mappings", truth.len());
        assert_export_equals(dir.path(), &truth);
    }
}
