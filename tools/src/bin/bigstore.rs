//! `natrec-bigstore`: lookup at scale. Writes `--mappings` mappings spread
//! evenly over `--days` days of one-hour partitions through
//! `natrec_storage::Writer` (no capture needed; 2 records per mapping, the
//! open state then the final state, as the correlator writes them; the rate
//! is printed in mappings/s and records/s: sustained, appends and seals,
//! and beside it the appends alone, the writer's time in `append_batch`, and its
//! time in `advance`/`seal_before`, handing seals over and waiting for them), then asks "who held public
//! ip:port at T" for random stored mappings at random times in their held
//! interval: hdrhistogram p50/p99/p999, warm and first-touch (page cache
//! dropped before), and the same lookups (mappings of day 1) after 1, 10 and
//! `--days` days are stored, to show the cost does not grow with retention;
//! last, lookups each through a new `Reader` (no cached listing or view:
//! what every `natrec lookup` process pays, less its start and audit).
//!
//! ```sh
//! target/release/natrec-bigstore --dir /var/tmp/natrec-big --mappings 100000000 --days 60
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use natrec_storage::{EndReason, Mapping, Proto, Query, Reader, Store, StoreConfig, NANOS_PER_SEC};

const USAGE: &str = "usage: natrec-bigstore --dir DIR [--mappings N] [--days D] [--lookups N] [--batches-per-call K] [--write-behind] [--no-drop-caches] [--write-only]";
const S: i64 = NANOS_PER_SEC;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600 * S;
/// Public pool: 203.0.113.0/24 and 198.51.100.0/24 (512 addresses).
const POOL: u32 = 512;
/// Records handed to `Writer::append_batch` at once (as `SINK_MAPPINGS_MAX`
/// in the replay).
const BATCH_MAPPINGS_MAX: usize = 256;
/// Appends between two `Writer::advance` calls (which seal finished partitions).
const APPENDS_PER_ADVANCE: u64 = 65_536;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`th of `n` mappings over `span_ns`: times increase with `i`.
fn mapping(i: u64, n: u64, span_ns: i64) -> Mapping {
    let h = mix(i);
    let first = T0 + (i128::from(i) * i128::from(span_ns) / i128::from(n)) as i64;
    let pub_i = (h % u64::from(POOL)) as u32;
    let pub_ip = if pub_i < 256 {
        0xcb00_7100 + pub_i
    } else {
        0xc633_6400 + pub_i - 256
    };
    let proto = if h >> 60 < 10 { Proto::Tcp } else { Proto::Udp };
    Mapping {
        proto,
        internal: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0x6440_0000 + ((h >> 8) as u32 & 0x3f_ffff))),
            40_000 + ((h >> 32) % 512) as u16,
        ),
        public: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(pub_ip)),
            1024 + ((h >> 16) % 64_512) as u16,
        ),
        remote: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0xc612_0000 + ((h >> 40) as u32 & 0x1_ffff))),
            443,
        ),
        first_ns: first,
        last_ns: first + ((h >> 48) % 60) as i64 * S,
        end: if proto == Proto::Tcp {
            EndReason::Fin
        } else {
            EndReason::Idle
        },
        packets_out: 10,
        packets_in: 9,
        flags: 0,
    }
}

struct Lookups {
    hist: Histogram<u64>,
    missed: u64,
}

/// Where each lookup's [`Reader`] comes from.
enum Readers<'a> {
    /// One reader for all lookups: its listing and view caches warm up.
    Shared(&'a Reader),
    /// A new reader for every lookup, taken inside the timed part: no
    /// listing, no cached view, as a `natrec lookup` process (without the
    /// process start, the store.json read and the audit line).
    Fresh(&'a Store),
}

fn lookups(
    readers: Readers,
    n: u64,
    count: u64,
    span_ns: i64,
    only_below: u64,
    seed: u64,
) -> Result<Lookups> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let mut missed = 0;
    for k in 0..count {
        let i = mix(seed ^ k) % only_below;
        let m = mapping(i, n, span_ns);
        let t = m.first_ns + (mix(k) % (m.last_ns - m.first_ns + S) as u64) as i64;
        let q = Query::at(m.public.ip(), m.public.port(), t);
        let started = Instant::now();
        let out = match readers {
            Readers::Shared(r) => r.lookup(&q)?,
            Readers::Fresh(store) => store.reader().lookup(&q)?,
        };
        hist.record(started.elapsed().as_nanos().max(1) as u64)?;
        if !out
            .holders
            .iter()
            .any(|h| h.mapping.internal == m.internal && h.mapping.first_ns == m.first_ns)
        {
            missed += 1;
        }
    }
    Ok(Lookups { hist, missed })
}

fn show(label: &str, l: &Lookups) {
    let h = &l.hist;
    println!(
        "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3,
        l.missed
    );
}

/// The process's CPU and scheduling counters so far (`getrusage(RUSAGE_SELF)`:
/// every thread, those that ended included).
struct Usage {
    user_s: f64,
    sys_s: f64,
    minor_faults: i64,
    voluntary_switches: i64,
    involuntary_switches: i64,
    blocks_out: i64,
}

fn usage() -> Usage {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable `rusage`; `getrusage` only writes it
    // (and cannot fail for RUSAGE_SELF with a valid pointer).
    #[allow(unsafe_code)]
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        user_s: s(ru.ru_utime),
        sys_s: s(ru.ru_stime),
        minor_faults: ru.ru_minflt,
        voluntary_switches: ru.ru_nvcsw,
        involuntary_switches: ru.ru_nivcsw,
        blocks_out: ru.ru_oublock,
    }
}

fn drop_caches() -> Result<()> {
    std::process::Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "1").context("drop the page cache (needs root)")
}

/// Makes way for a new store at `dir`: nothing to do if it does not exist or is empty; removed if
/// it is a natrec store (an earlier run's: `store.json` and `partitions/`, nothing else but the
/// lock and audit files); anything else is an error, so a mistyped `--dir` never deletes data.
fn replace_earlier_store(dir: &std::path::Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut names = Vec::new();
    for e in entries {
        names.push(
            e.with_context(|| format!("read {}", dir.display()))?
                .file_name(),
        );
    }
    if names.is_empty() {
        return Ok(());
    }
    let store_like = dir.join("store.json").is_file()
        && names.iter().all(|n| {
            matches!(
                n.to_str(),
                Some("store.json" | "partitions" | "store.lock" | "audit.log")
            )
        });
    if !store_like {
        bail!(
            "{} exists and is not a store an earlier natrec-bigstore run made (it holds {} entries); \
             give --dir a new or empty directory",
            dir.display(),
            names.len()
        );
    }
    std::fs::remove_dir_all(dir)
        .with_context(|| format!("remove the earlier store {}", dir.display()))
}

fn main() -> Result<()> {
    let (mut dir, mut n, mut days, mut count, mut drop_cache) =
        (PathBuf::new(), 100_000_000u64, 60u64, 100_000u64, true);
    // Batches handed to the writer per call (`Writer::append_batches`): 1,
    // as the replay's writing thread hands them over now; more, as a writing
    // thread that appends everything queued on its channel at once would.
    let mut per_call = 1usize;
    let mut write_behind = false;
    // Stop after the write phase (appends, seals, `seal_all`): no lookups,
    // so the process's CPU counters printed are the writer's alone.
    let mut write_only = false;
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        if v[i] == "--help" || v[i] == "-h" {
            println!("{USAGE}\n\nWrites N mappings over D days of one-hour partitions into a new store at DIR\n(DIR must not exist, be empty, or be a store an earlier run made: it is replaced),\nthen times random point lookups: warm, first touch (the page cache dropped: root;\n--no-drop-caches skips it), after 1, 10 and D days, and through a new reader each.\nThe mappings go to the writer in batches of {BATCH_MAPPINGS_MAX} records, --batches-per-call K\nbatches per call (default 1, as the replay's writing thread); --write-behind turns the writer's\nwrite-behind on, as the replay does (`Writer::set_write_behind`: records written out 384 KiB at a\ntime and before each sync or seal, so part of the pwrites count in `advance`, not the appends).\n--write-only stops after the write phase (appends, seals, the final seal_all): no lookups, so the\nprocess CPU printed (user, system, faults, switches) is the writer's and its threads' alone.");
            return Ok(());
        }
        if v[i] == "--write-behind" {
            write_behind = true;
            i += 1;
            continue;
        }
        if v[i] == "--write-only" {
            write_only = true;
            i += 1;
            continue;
        }
        if v[i] == "--no-drop-caches" {
            drop_cache = false;
            i += 1;
            continue;
        }
        let x = v.get(i + 1).with_context(|| USAGE.to_string())?;
        match v[i].as_str() {
            "--dir" => dir = PathBuf::from(x),
            "--mappings" => n = x.replace('_', "").parse()?,
            "--days" => days = x.parse()?,
            "--lookups" => count = x.parse()?,
            "--batches-per-call" => per_call = x.parse::<usize>()?.max(1),
            _ => bail!("{USAGE}"),
        }
        i += 2;
    }
    if dir.as_os_str().is_empty() || days < 10 || n < days {
        bail!("--dir is required, --days ≥ 10\n{USAGE}");
    }
    replace_earlier_store(&dir)?;
    let span_ns = days as i64 * 86_400 * S;
    let store = Store::create(&dir, StoreConfig::default())?;
    let reader = store.reader();
    let mut w = store.writer()?;
    w.set_write_behind(write_behind)?;
    let day1_end = n / days;
    let checkpoints = [(1u64, n / days), (10, n / days * 10), (days, n)];
    println!("## natrec-bigstore: {n} mappings over {days} days of one-hour partitions\n");
    if !write_only {
        println!("| lookups (ask for mappings of day 1) | n | p50 µs | p99 µs | p999 µs | max µs | not found |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
    }
    let started = Instant::now();
    let mut write_s = 0.0;
    // Time on the writer's thread inside `append_batch` alone (encode,
    // route, `pwrite`): the seals (`advance`, `seal_before`, `seal_all`)
    // and their waits excluded. The sustained rate below counts both.
    let mut append_s = 0.0;
    // Time on the writer's thread in `advance` and `seal_before`: handing
    // due partitions to seal threads, waiting for the oldest seal when
    // four run, for carries, and (`seal_before`, at each checkpoint) for
    // every seal and the flush's fsyncs.
    let mut seal_wait_s = 0.0;
    let mut written = 0u64;
    // As the replay hands them over: batches (one pwrite per active log).
    let mut batch: Vec<Mapping> = Vec::with_capacity(BATCH_MAPPINGS_MAX * per_call);
    for (d, upto) in checkpoints {
        let t = Instant::now();
        while written < upto {
            // As the correlator does: the open state at the first packet,
            // then the final state.
            let m = mapping(written, n, span_ns);
            batch.push(Mapping {
                end: EndReason::Open,
                last_ns: m.first_ns,
                ..m
            });
            batch.push(m);
            written += 1;
            if batch.len() >= BATCH_MAPPINGS_MAX * per_call {
                let a = Instant::now();
                w.append_batches(batch.chunks(BATCH_MAPPINGS_MAX))?;
                append_s += a.elapsed().as_secs_f64();
                batch.clear();
            }
            if written.is_multiple_of(APPENDS_PER_ADVANCE) {
                let a = Instant::now();
                w.append_batches(batch.chunks(BATCH_MAPPINGS_MAX))?;
                append_s += a.elapsed().as_secs_f64();
                batch.clear();
                let a = Instant::now();
                w.advance(mapping(written - 1, n, span_ns).first_ns)?;
                seal_wait_s += a.elapsed().as_secs_f64();
            }
        }
        let a = Instant::now();
        w.append_batches(batch.chunks(BATCH_MAPPINGS_MAX))?;
        append_s += a.elapsed().as_secs_f64();
        batch.clear();
        let a = Instant::now();
        w.seal_before(mapping(upto - 1, n, span_ns).first_ns)?;
        // The lookups below read the active logs' files: everything
        // appended written out first (write-behind may hold some).
        w.write_out()?;
        seal_wait_s += a.elapsed().as_secs_f64();
        write_s += t.elapsed().as_secs_f64();
        if write_only {
            continue;
        }
        let l = lookups(
            Readers::Shared(&reader),
            n,
            count.min(20_000),
            span_ns,
            day1_end,
            7,
        )?;
        show(&format!("after {d} day(s) stored, warm"), &l);
        if d == 1 {
            // The same lookups through a batch reader: each active log read
            // once and searched through a sorted index (`lookup --batch`).
            let batch = store.reader().with_log_snapshots();
            let l = lookups(
                Readers::Shared(&batch),
                n,
                count.min(20_000),
                span_ns,
                day1_end,
                7,
            )?;
            show(
                "after 1 day(s) stored, batch reader (active logs indexed once)",
                &l,
            );
        }
    }
    w.seal_all()?;
    let w_stats = w.stats();
    drop(w);
    let write_total_s = started.elapsed().as_secs_f64();
    let records = w_stats.records_appended;
    let bytes: u64 = std::fs::read_dir(dir.join("partitions"))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let files = std::fs::read_dir(dir.join("partitions"))?.count();
    let u = usage();
    if write_only {
        println!(
            "- written: {n} mappings = {records} records in {write_s:.2} s of appends + seals: {:.0} mappings/s ({write_total_s:.2} s with the final seal_all), {files} partition files, {:.1} bytes per mapping on disk",
            n as f64 / write_s,
            bytes as f64 / n as f64
        );
        println!(
            "- appends alone: {append_s:.2} s ({:.0} mappings/s); seals handed over and waited for: {seal_wait_s:.2} s",
            n as f64 / append_s
        );
        println!(
            "- process CPU of the write phase (every thread): user {:.3} s, system {:.3} s; {} minor faults, {} voluntary and {} involuntary switches, {} blocks written",
            u.user_s, u.sys_s, u.minor_faults, u.voluntary_switches, u.involuntary_switches, u.blocks_out
        );
        return Ok(());
    }

    if drop_cache {
        drop_caches()?;
        let l = lookups(
            Readers::Shared(&reader),
            n,
            count.min(10_000),
            span_ns,
            n,
            99,
        )?;
        show("all days, first touch (page cache dropped)", &l);
    }
    let _ = lookups(Readers::Shared(&reader), n, count, span_ns, n, 11)?;
    let l = lookups(Readers::Shared(&reader), n, count, span_ns, n, 11)?;
    show("all days, warm (second pass over the same lookups)", &l);
    let l = lookups(Readers::Fresh(&store), n, count.min(10_000), span_ns, n, 13)?;
    show(
        "all days, cold view (a new Reader per lookup, as the CLI; page cache warm)",
        &l,
    );
    println!();
    println!(
        "- written: {n} mappings = {records} records (2 per mapping, as the correlator writes them: the open state when a mapping is confirmed, the final state when it ends) in {write_s:.1} s of appends + seals: {:.0} mappings/s = {:.0} records/s ({write_total_s:.1} s with the lookups), {files} partition files, {:.1} GB, {:.1} bytes per mapping on disk",
        n as f64 / write_s,
        records as f64 / write_s,
        bytes as f64 / 1e9,
        bytes as f64 / n as f64
    );
    println!(
        "- appends alone: {append_s:.2} s in `append_batch` on the writer's thread (seals excluded): {:.0} mappings/s = {:.0} records/s",
        n as f64 / append_s,
        records as f64 / append_s
    );
    println!(
        "- seals handed over and waited for: {seal_wait_s:.2} s of the writer's thread in `advance` and `seal_before` ({per_call} batch(es) of {BATCH_MAPPINGS_MAX} records per append call, write-behind {})",
        if write_behind { "on: pwrites in `advance` and the seals count here" } else { "off" }
    );
    Ok(())
}
