//! `natrec-bench`: the end-to-end benchmark. On one generated capture, in one
//! run, interleaved: the bare libpcap read (`tcpdump -r FILE -w /dev/null`),
//! `natrec replay` (the release binary next to this one), and the peers
//! `natlog` (tcpdump mode, two files) and `nfpcapd` (`-r FILE`). Each is run
//! `--runs` times; the table shows the median wall time. natrec's rate only
//! counts if its export equals the generator's truth: recall and precision
//! are printed beside it. Then random point lookups on the replayed store
//! (hdrhistogram p50/p99/p999). Before the runs each capture is dropped from the
//! page cache and read back once, so every tool replays it from memory as it would a
//! capture read from the disk (`settle_page_cache`).
//!
//! One run, in this order: the libpcap read of every file; for each `--threads`
//! value (then `--one-cpu`'s pinned `--threads 1`), `natrec replay` and, with
//! `--baseline`, `natrec-base replay`, the two builds in alternating order from
//! run to run (`natrec` first in runs 1, 3, 5, …, `natrec-base` first in runs
//! 2, 4, …: [`build_order`]), so neither build always runs right after the
//! libpcap reads; then the peers. The order of each run is printed (stderr as it
//! starts, and in the report and `bench.json`). With an odd `--runs` the build
//! named first in run 1 leads once more than the other.
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/natrec-bench --dir /var/tmp/natrec-bench            # 10 M packets, 3 runs
//! target/release/natrec-bench --dir /tmp/small --packets 1000000 --runs 1
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use natrec_storage::{Query, Store, NANOS_PER_SEC};
use serde_json::Value;

const USAGE: &str =
    "usage: natrec-bench --dir DIR [--packets N] [--seed S] [--runs N] [--lookups N]
  [--threads LIST (e.g. 1,2; passed as natrec replay --threads)] [--no-peers] [--gen-arg ARG]...
  [--one-cpu (also run each build's --threads 1 held to one CPU with taskset -c 0: its seal
   and sync threads then share that CPU, rows \"... --threads 1 on one CPU\")]
  [--baseline PATH (another natrec binary, e.g. a copy of an earlier build, run interleaved
   with this one on the same files: rows \"natrec-base ...\")]

Each run: tcpdump -r of every file; then for each --threads value (and --one-cpu's pinned
--threads 1) natrec replay and, with --baseline, natrec-base replay, the two builds in
alternating order (natrec first in odd runs, natrec-base first in even runs; printed);
then the peers (natlog, nfpcapd). Rows are medians over the runs.";

/// Puts `path` in the page cache as a capture read from the disk is: its cached pages are
/// written back and dropped (`POSIX_FADV_DONTNEED`), then the file is read through once.
///
/// How the cache was filled matters to a replay that maps the file: pages cached by the
/// generator's small writes sit in small folios, so mapping 3.6 GB takes ~880 000 page-table
/// entries (~0.4 s of kernel time, made ahead and torn down behind the reader), while a file
/// read back by readahead sits in large folios, mapped a 2 MiB entry at a time (~0.006 s).
/// `tcpdump -r` copies with `read` either way. Every run of every tool then sees the same
/// cache, and the figures no longer depend on whether the capture was just generated.
fn settle_page_cache(path: &Path) -> Result<()> {
    use std::io::Read;
    let ctx = || format!("read {} into the page cache", path.display());
    let mut f = std::fs::File::open(path).with_context(ctx)?;
    f.sync_data().with_context(ctx)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a file descriptor `f` owns for the whole call; it
        // only drops clean cached pages of the file (a hint: on error the pages stay).
        #[allow(unsafe_code)]
        let _ = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).with_context(ctx)? > 0 {}
    Ok(())
}

/// How often the child's /proc status is sampled for its peak memory.
const RSS_POLL_INTERVAL: Duration = Duration::from_millis(5);

struct Args {
    dir: PathBuf,
    packets: u64,
    seed: u64,
    runs: usize,
    lookups: u64,
    threads: Vec<String>,
    peers: bool,
    /// Also run `--threads 1` held to CPU 0, so its background threads share that CPU.
    one_cpu: bool,
    gen_args: Vec<String>,
    baseline: Option<PathBuf>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        dir: PathBuf::new(),
        packets: 10_000_000,
        seed: 1,
        runs: 3,
        lookups: 100_000,
        threads: Vec::new(),
        peers: true,
        one_cpu: false,
        gen_args: Vec::new(),
        baseline: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let k = v[i].as_str();
        if k == "--no-peers" {
            a.peers = false;
            i += 1;
            continue;
        }
        if k == "--one-cpu" {
            a.one_cpu = true;
            i += 1;
            continue;
        }
        if k == "-h" || k == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let x = v
            .get(i + 1)
            .with_context(|| format!("{k} needs a value\n{USAGE}"))?;
        match k {
            "--dir" => a.dir = PathBuf::from(x),
            "--packets" => a.packets = x.replace('_', "").parse()?,
            "--seed" => a.seed = x.parse()?,
            "--runs" => a.runs = x.parse()?,
            "--lookups" => a.lookups = x.parse()?,
            "--threads" => a.threads = x.split(',').map(String::from).collect(),
            "--gen-arg" => a.gen_args.push(x.clone()),
            "--baseline" => a.baseline = Some(PathBuf::from(x)),
            _ => bail!("unknown argument {k}\n{USAGE}"),
        }
        i += 2;
    }
    if a.dir.as_os_str().is_empty() || a.runs == 0 {
        bail!("--dir DIR is required, --runs ≥ 1\n{USAGE}");
    }
    Ok(a)
}

/// One timed child: wall time and peak memory (sampled from /proc).
struct Timed {
    wall_s: f64,
    /// Peak resident set, bytes (file-backed pages included: the capture map).
    rss_peak: u64,
    /// Peak anonymous resident memory, bytes (heap: tables, buffers).
    anon_peak: u64,
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_timed(cmd: &mut Command) -> Result<Timed> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {cmd:?}"))?;
    let pid = child.id();
    let (mut rss_peak, mut anon_peak) = (0u64, 0u64);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Some(kb) = status_kb(pid, "VmHWM:") {
            rss_peak = rss_peak.max(kb * 1024);
        }
        if let Some(kb) = status_kb(pid, "RssAnon:") {
            anon_peak = anon_peak.max(kb * 1024);
        }
        std::thread::sleep(RSS_POLL_INTERVAL);
    };
    let wall_s = started.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{cmd:?} failed ({status}): {}", err.trim());
    }
    Ok(Timed {
        wall_s,
        rss_peak,
        anon_peak,
    })
}

/// The order in which run `run` (from 0) replays the `builds` builds
/// (indices: 0 = `natrec`, 1 = `natrec-base`): as given in even runs,
/// reversed in odd ones, so each build takes each place, after the libpcap
/// reads and before the peers, in turn.
fn build_order(run: usize, builds: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..builds).collect();
    if run % 2 == 1 {
        order.reverse();
    }
    order
}

/// The fastest median wall of this build's rows (`natrec ...`), the
/// "natrec ÷ tool" column's numerator: never a `natrec-base ...` row, which
/// is the earlier build run beside it (`--baseline`).
fn natrec_best_median(times: &HashMap<String, Vec<f64>>) -> f64 {
    times
        .iter()
        .filter(|(n, _)| n.starts_with("natrec "))
        .map(|(_, t)| median(t.clone()))
        .fold(f64::INFINITY, f64::min)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

type Key = (String, String, String, String);

fn key(proto: &str, ip: &str, port: u64, pip: &str, pport: u64, rip: &str, rport: u64) -> Key {
    (
        proto.to_string(),
        format!("{ip}:{port}"),
        format!("{pip}:{pport}"),
        format!("{rip}:{rport}"),
    )
}

fn read_truth(dir: &Path) -> Result<(HashMap<Key, u64>, Vec<Value>)> {
    let text = std::fs::read_to_string(dir.join("truth.jsonl"))?;
    let mut m = HashMap::new();
    let mut rows = Vec::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l)?;
        *m.entry(key_of(&v)).or_default() += 1;
        rows.push(v);
    }
    Ok((m, rows))
}

fn key_of(v: &Value) -> Key {
    key(
        v["proto"].as_str().unwrap_or(""),
        v["internal_ip"].as_str().unwrap_or(""),
        v["internal_port"].as_u64().unwrap_or(0),
        v["public_ip"].as_str().unwrap_or(""),
        v["public_port"].as_u64().unwrap_or(0),
        v["remote_ip"].as_str().unwrap_or(""),
        v["remote_port"].as_u64().unwrap_or(0),
    )
}

/// (recall, precision) of `got` against `want`, both multisets.
fn score(want: &HashMap<Key, u64>, got: &HashMap<Key, u64>) -> (f64, f64) {
    let hit: u64 = want
        .iter()
        .map(|(k, n)| (*n).min(got.get(k).copied().unwrap_or(0)))
        .sum();
    let w: u64 = want.values().sum();
    let g: u64 = got.values().sum();
    (hit as f64 / w.max(1) as f64, hit as f64 / g.max(1) as f64)
}

/// natlog's `--log-data` table: type, srcNr, srcIP (public), srcPort, dstNr,
/// dstIP, dstPort, viaNr, viaIP (internal), viaPort, ...; addresses zero-padded.
fn natlog_keys(path: &Path) -> Result<HashMap<Key, u64>> {
    let text = std::fs::read_to_string(path)?;
    let unpad = |s: &str| -> String {
        s.split('.')
            .map(|o| o.parse::<u8>().map(|x| x.to_string()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut m = HashMap::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        if f.len() < 10 {
            continue;
        }
        let p = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        let k = key(
            f[0],
            &unpad(f[8]),
            p(9),
            &unpad(f[2]),
            p(3),
            &unpad(f[5]),
            p(6),
        );
        *m.entry(k).or_default() += 1;
    }
    Ok(m)
}

/// Most mappings held at once according to the truth (a sweep over [new, destroy]).
fn peak_active(rows: &[Value]) -> u64 {
    let mut ev: Vec<(i64, i64)> = Vec::with_capacity(rows.len() * 2);
    for r in rows {
        let a = (r["new_unix"].as_f64().unwrap_or(0.0) * 1e6) as i64;
        let b = (r["destroy_unix"].as_f64().unwrap_or(0.0) * 1e6) as i64;
        ev.push((a, 1));
        ev.push((b, -1));
    }
    ev.sort_unstable();
    let (mut cur, mut peak) = (0i64, 0i64);
    for (_, d) in ev {
        cur += d;
        peak = peak.max(cur);
    }
    peak as u64
}

fn dir_bytes(dir: &Path, ext: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let a = parse()?;
    let bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let natrec = bin.join("natrec");
    if !natrec.exists() {
        bail!(
            "{} missing; run `cargo build --release --workspace` first",
            natrec.display()
        );
    }
    std::fs::create_dir_all(&a.dir)?;
    let gen_json = a.dir.join("gen.json");
    let want_packets = |g: &Value| {
        g["packets"].as_u64().unwrap_or(0) >= a.packets && g["seed"].as_u64() == Some(a.seed)
    };
    let fresh = std::fs::read_to_string(&gen_json)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    if let Some(g) = fresh.as_ref().filter(|g| !want_packets(g)) {
        // Never overwrite a capture that is there: the directory may be one of
        // symlinks to a shared capture (as the docs suggest), and generating
        // would write through them.
        bail!(
            "{} describes a capture of {} packets with seed {}, not the {} packets with seed {} asked \
             for; pass --packets/--seed to match it, or give an empty --dir to generate a new one",
            gen_json.display(),
            g["packets"].as_u64().unwrap_or(0),
            g["seed"].as_u64().unwrap_or(0),
            a.packets,
            a.seed
        );
    }
    if fresh.is_none() {
        for f in ["gen.json", "inside.pcap", "outside.pcap", "truth.jsonl"] {
            let p = a.dir.join(f);
            if p.symlink_metadata().is_ok() {
                bail!(
                    "{} exists but {} is missing or unreadable; generating would overwrite it \
                     (through a symlink, if it is one): remove it or give an empty --dir",
                    p.display(),
                    gen_json.display()
                );
            }
        }
        eprintln!(
            "natrec-bench: generating {} packets into {}",
            a.packets,
            a.dir.display()
        );
        let mut c = Command::new(bin.join("natrec-gen"));
        c.args(["--out".as_ref(), a.dir.as_os_str()])
            .args([
                "--packets",
                &a.packets.to_string(),
                "--seed",
                &a.seed.to_string(),
            ])
            .args(["--link", "two-eth", "--snaplen", "65535"])
            .args(&a.gen_args);
        if !c.status()?.success() {
            bail!("natrec-gen failed");
        }
    }
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&gen_json)?)?;
    let files: Vec<PathBuf> = g["files"]
        .as_array()
        .context("gen.json files")?
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap_or("")))
        .collect();
    let replay_args: Vec<String> = g["replay_args"]
        .as_array()
        .context("replay_args")?
        .iter()
        .map(|x| x.as_str().unwrap_or("").to_string())
        .collect();
    let packets = g["packets"].as_u64().unwrap_or(0);
    let capture_bytes = g["capture_bytes"].as_u64().unwrap_or(0);
    let (truth, truth_rows) = read_truth(&a.dir)?;
    let mappings: u64 = truth.values().sum();
    let active_peak = peak_active(&truth_rows);

    // Page cache: every capture read once, as from the disk, so all runs replay from memory.
    for f in &files {
        settle_page_cache(f)?;
    }

    let have = |p: &str| Path::new(p).exists();
    let peers = a.peers && have("/usr/bin/natlog") && have("/usr/bin/nfpcapd");
    // (threads, held to one CPU)
    let mut variants: Vec<(Option<String>, bool)> = if a.threads.is_empty() {
        vec![(None, false)]
    } else {
        a.threads
            .iter()
            .cloned()
            .map(|t| (Some(t), false))
            .collect()
    };
    variants.dedup();
    if a.one_cpu {
        if !have("/usr/bin/taskset") {
            bail!("--one-cpu needs taskset (Debian package util-linux)");
        }
        variants.push((Some("1".to_string()), true));
    }
    let mut times: HashMap<String, Vec<f64>> = HashMap::new();
    let mut mem: HashMap<String, (u64, u64)> = HashMap::new();
    let mut accuracy: HashMap<String, (f64, f64)> = HashMap::new();
    let mut store_of_first: Option<PathBuf> = None;
    let mut record = |name: &str, t: &Timed, times: &mut HashMap<String, Vec<f64>>| {
        times.entry(name.to_string()).or_default().push(t.wall_s);
        let e = mem.entry(name.to_string()).or_default();
        e.0 = e.0.max(t.rss_peak);
        e.1 = e.1.max(t.anon_peak);
    };
    let all_bins: Vec<(&str, &Path)> = std::iter::once(("natrec", natrec.as_path()))
        .chain(a.baseline.as_deref().map(|b| ("natrec-base", b)))
        .collect();
    // The builds' order in each run, as printed.
    let mut orders: Vec<Vec<&str>> = Vec::with_capacity(a.runs);
    for run in 0..a.runs {
        let bins: Vec<(&str, &Path)> = build_order(run, all_bins.len())
            .into_iter()
            .map(|i| all_bins[i])
            .collect();
        let order: Vec<&str> = bins.iter().map(|b| b.0).collect();
        eprintln!(
            "natrec-bench: run {}/{}: tcpdump, {}{}",
            run + 1,
            a.runs,
            order.join(", "),
            if peers { ", peers" } else { "" }
        );
        orders.push(order);
        // Bare libpcap read of every file.
        let mut sum = Timed {
            wall_s: 0.0,
            rss_peak: 0,
            anon_peak: 0,
        };
        for f in &files {
            let t = run_timed(Command::new("tcpdump").args([
                "-r".as_ref(),
                f.as_os_str(),
                "-w".as_ref(),
                "/dev/null".as_ref(),
            ]))?;
            sum.wall_s += t.wall_s;
            sum.rss_peak = sum.rss_peak.max(t.rss_peak);
        }
        record("tcpdump -r -w /dev/null", &sum, &mut times);

        for ((v, pinned), (label, exe)) in variants
            .iter()
            .flat_map(|v| bins.iter().map(move |b| (v, b)))
        {
            let on = if *pinned { " on one CPU" } else { "" };
            let name = match v {
                Some(t) => format!("{label} replay --threads {t}{on}"),
                None => format!("{label} replay{on}"),
            };
            let store = a.dir.join(format!(
                "store-{label}-{}{}",
                v.as_deref().unwrap_or("default"),
                if *pinned { "-cpu0" } else { "" }
            ));
            let _ = std::fs::remove_dir_all(&store);
            // taskset execs the replay in its own process: the pid (and so the
            // memory sampled) is the replay's.
            let mut c = if *pinned {
                let mut c = Command::new("taskset");
                c.args(["-c", "0"]).arg(exe);
                c
            } else {
                Command::new(exe)
            };
            c.args(["replay", "--quiet", "--store"]).arg(&store);
            if let Some(t) = v {
                c.args(["--threads", t]);
            }
            c.args(&replay_args);
            let t = run_timed(&mut c)?;
            record(&name, &t, &mut times);
            if run == 0 {
                let out = Command::new(exe)
                    .args(["export", "--format", "jsonl", "--store"])
                    .arg(&store)
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "natrec export failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let mut got: HashMap<Key, u64> = HashMap::new();
                for l in String::from_utf8_lossy(&out.stdout).lines() {
                    *got.entry(key_of(&serde_json::from_str(l)?)).or_default() += 1;
                }
                accuracy.insert(name.clone(), score(&truth, &got));
                if store_of_first.is_none() {
                    store_of_first = Some(store.clone());
                }
            }
        }

        if peers {
            // natlog, tcpdump mode: outside file with the public network, inside
            // file with the subscriber network.
            let nl = a.dir.join("natlog.data");
            let _ = std::fs::remove_file(&nl);
            let (inside, outside) = (&files[0], &files[files.len() - 1]);
            let t = run_timed(
                Command::new("natlog")
                    .args([
                        "--no-daemon",
                        "--log",
                        "off",
                        "--protocol",
                        "all",
                        "--log-data",
                    ])
                    .arg(&nl)
                    .arg(outside)
                    .args(["203.0.113.0", "/24"])
                    .arg(inside)
                    .args(["100.64.0.0", "/10"]),
            );
            match t {
                Ok(t) => {
                    record("natlog (tcpdump mode)", &t, &mut times);
                    if run == 0 {
                        accuracy.insert(
                            "natlog (tcpdump mode)".into(),
                            score(&truth, &natlog_keys(&nl)?),
                        );
                    }
                }
                Err(e) => eprintln!("natrec-bench: natlog: {e:#}"),
            }
            let mut sum = Timed {
                wall_s: 0.0,
                rss_peak: 0,
                anon_peak: 0,
            };
            for (i, f) in files.iter().enumerate() {
                let d = a.dir.join(format!("nfpcapd-{i}"));
                let _ = std::fs::remove_dir_all(&d);
                std::fs::create_dir_all(&d)?;
                let t = run_timed(Command::new("nfpcapd").args([
                    "-r".as_ref(),
                    f.as_os_str(),
                    "-w".as_ref(),
                    d.as_os_str(),
                ]))?;
                sum.wall_s += t.wall_s;
                sum.rss_peak = sum.rss_peak.max(t.rss_peak);
                sum.anon_peak = sum.anon_peak.max(t.anon_peak);
            }
            record("nfpcapd -r (per file)", &sum, &mut times);
        }
    }

    // Lookups on the replayed store: random truth mappings at a random time
    // inside their held interval.
    let store = Store::open(store_of_first.as_ref().context("a natrec run")?)?;
    let reader = store.reader();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut rng = 0x1234_5678u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut found, mut asked) = (0u64, 0u64);
    for _ in 0..a.lookups {
        let r = &truth_rows[(next() % truth_rows.len() as u64) as usize];
        let new = (r["new_unix"].as_f64().unwrap_or(0.0) * 1e9) as i64;
        let t = new + (next() % NANOS_PER_SEC as u64) as i64 / 10;
        let ip: IpAddr = r["public_ip"].as_str().unwrap_or("").parse()?;
        let port = r["public_port"].as_u64().unwrap_or(0) as u16;
        let started = Instant::now();
        let out = reader.lookup(&Query::at(ip, port, t))?;
        hist.record(started.elapsed().as_nanos().max(1) as u64)?;
        asked += 1;
        found += u64::from(!out.holders.is_empty());
    }

    let parts = store_of_first.as_ref().unwrap().join("partitions");
    let part_bytes = dir_bytes(&parts, "part");
    let base = median(times["tcpdump -r -w /dev/null"].clone());
    println!("## natrec-bench: {packets} packets ({} MB, {} file(s)), {mappings} mappings, peak {active_peak} held at once, {} run(s), median wall time", capture_bytes / 1_000_000, files.len(), a.runs);
    println!();
    println!("| tool | wall s | packets/s | mappings/s | × libpcap read | natrec ÷ tool | peak RSS MB | peak anon MB | recall | precision |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut names: Vec<&String> = times.keys().collect();
    names.sort_by_key(|n| {
        (
            if n.starts_with("tcpdump") {
                0
            } else if n.starts_with("natrec") {
                1
            } else {
                2
            },
            n.to_string(),
        )
    });
    let natrec_best = natrec_best_median(&times);
    let mut json = serde_json::Map::new();
    for n in names {
        let w = median(times[n].clone());
        let (rss, anon) = mem[n];
        let (rc, pr) = accuracy
            .get(n)
            .map_or(("n/a".to_string(), "n/a".to_string()), |(r, p)| {
                (format!("{:.4} %", r * 100.0), format!("{:.4} %", p * 100.0))
            });
        println!(
            "| {n} | {w:.3} | {:.0} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {rc} | {pr} |",
            packets as f64 / w,
            if n.starts_with("tcpdump") {
                "".to_string()
            } else {
                format!("{:.0}", mappings as f64 / w)
            },
            base / w,
            w / natrec_best,
            rss as f64 / 1e6,
            anon as f64 / 1e6,
        );
        json.insert(n.clone(), serde_json::json!({"wall_s": times[n], "median_s": w, "rss_peak": rss, "anon_peak": anon, "accuracy": accuracy.get(n)}));
    }
    println!();
    let natrec_anon = mem
        .iter()
        .filter(|(n, _)| n.starts_with("natrec "))
        .map(|(_, m)| m.1)
        .max()
        .unwrap_or(0);
    // Several threads against one, per build, from the medians of the same run
    // (issue 3's "two cores ≥ 1.7× one").
    let mut sorted: Vec<(&String, &Vec<f64>)> = times.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (label, one) in sorted
        .iter()
        .filter_map(|(n, t)| n.strip_suffix(" replay --threads 1").map(|l| (l, t)))
    {
        let one = median(one.to_vec());
        for (n, t) in &sorted {
            if let Some(k) = n.strip_prefix(&format!("{label} replay --threads ")) {
                if k != "1" && !k.ends_with(" on one CPU") {
                    println!(
                        "- {label} --threads {k} ÷ --threads 1: {:.2}× (medians, same run)",
                        one / median(t.to_vec())
                    );
                }
            }
        }
    }
    if all_bins.len() > 1 {
        let runs: Vec<String> = orders
            .iter()
            .enumerate()
            .map(|(i, o)| format!("run {} {}", i + 1, o.join(" then ")))
            .collect();
        println!(
            "- order of the builds within each threads row (after the libpcap reads, before the peers): {}",
            runs.join("; ")
        );
    }
    println!(
        "- bytes per stored mapping (sealed .part bytes ÷ mappings): {:.1}",
        part_bytes as f64 / mappings.max(1) as f64
    );
    println!("- RAM per active flow (peak anonymous RSS of natrec replay ÷ peak mappings held at once, an upper bound: includes the pending table and write buffers): {:.0} bytes", natrec_anon as f64 / active_peak.max(1) as f64);
    println!(
        "- lookup (in process, {asked} random held mappings, {found} answered): p50 {:.1} µs, p99 {:.1} µs, p999 {:.1} µs, max {:.1} µs",
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.value_at_quantile(0.999) as f64 / 1e3,
        hist.max() as f64 / 1e3
    );
    json.insert("lookup_ns".into(), serde_json::json!({"p50": hist.value_at_quantile(0.5), "p99": hist.value_at_quantile(0.99), "p999": hist.value_at_quantile(0.999), "found": found, "asked": asked}));
    json.insert("build_order".into(), serde_json::json!(orders));
    json.insert("packets".into(), packets.into());
    json.insert("mappings".into(), mappings.into());
    std::fs::write(
        a.dir.join("bench.json"),
        serde_json::to_string_pretty(&Value::Object(json))? + "\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{build_order, natrec_best_median};
    use std::collections::HashMap;

    /// The ratio column is this build's: a faster baseline row is not it.
    #[test]
    fn natrec_best_is_this_builds_fastest_row() {
        let times: HashMap<String, Vec<f64>> = [
            ("tcpdump -r -w /dev/null", vec![0.5]),
            ("natrec replay --threads 1", vec![1.3, 1.2, 1.4]),
            ("natrec replay --threads 3", vec![0.9, 0.95, 0.91]),
            ("natrec-base replay --threads 3", vec![0.8, 0.85, 0.84]),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        assert_eq!(natrec_best_median(&times), 0.91);
    }

    /// The two builds swap places every run; one build keeps its place.
    #[test]
    fn builds_alternate_their_order_from_run_to_run() {
        assert_eq!(build_order(0, 2), [0, 1]);
        assert_eq!(build_order(1, 2), [1, 0]);
        assert_eq!(build_order(2, 2), [0, 1]);
        assert_eq!(build_order(5, 2), [1, 0]);
        assert_eq!(build_order(0, 1), [0]);
        assert_eq!(build_order(1, 1), [0]);
    }
}
