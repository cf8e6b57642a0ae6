//! Command-line interface: argument definitions and dispatch. The names of
//! commands, flags and output fields are a stable interface for scripts.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use natrec_capture::correlate::{
    default_subscriber_prefixes, CorrelatorConfig, FLOWS_ACTIVE_MAX_LIMIT,
};
use natrec_storage::{HoldTimes, Proto, Store, StoreConfig, NANOS_PER_SEC};

use crate::replay::{IfaceSel, SideRules};
use crate::timefmt;

/// Records which subscriber held which public address and port, and when,
/// from packets captured on a NAT host; answers traceback requests.
#[derive(Parser, Debug)]
#[command(name = "natrec", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay capture files (pcap, pcapng) into a store.
    Replay(ReplayArgs),
    /// Who held a public IP (and port) at a time? Exit 0: someone; 1: nobody; 2: error.
    Lookup(LookupArgs),
    /// Every mapping held in a time range, one per line.
    Export(ExportArgs),
    /// List a store's partitions: spans, counts, sizes, sealed or active.
    Inspect(InspectArgs),
    /// Check every checksum of every partition. Exit 0: all good; 2: damage found.
    Verify(InspectArgs),
    /// Record live on the NAT host (feature `live`): capture the inside and outside
    /// interfaces, store every mapping, until SIGTERM.
    Record(Box<crate::record::RecordArgs>),
    /// Is a recorder writing this store, what is in it, what was lost in the last 24 h.
    /// Exit 0: recording, nothing lost; 1: not recording or packets lost; 2: error.
    Status(StatusArgs),
    /// Replay the bundled capture from a real Linux NAT into a temporary store
    /// and answer sample traceback questions against the kernel's own record.
    Demo(DemoArgs),
}

/// Partitioning and hold times (how long the NAT keeps a mapping after its
/// last packet). They apply when the store is created and are kept in its
/// `store.json`; an existing store keeps its own (a differing option is
/// reported, not applied).
#[derive(Args, Debug, Clone)]
pub struct StoreSettings {
    /// Length of one partition (e.g. 1h, 15m, 1d) [default: 1h].
    #[arg(long, value_parser = timefmt::parse_duration_secs)]
    partition_span: Option<u32>,
    /// How long a partition stays open for late packets after its span ends [default: 60s].
    #[arg(long, value_parser = timefmt::parse_duration_secs)]
    grace: Option<u32>,
    /// TCP hold after FIN or RST (Linux TIME_WAIT) [default: 120s].
    #[arg(long, value_parser = timefmt::parse_duration_secs)]
    hold_tcp_closed: Option<u32>,
    /// TCP hold after the last packet of a connection not seen closing [default: 2h4m].
    #[arg(long, value_parser = timefmt::parse_duration_secs)]
    hold_tcp_open: Option<u32>,
    /// UDP hold without a stream (Linux nf_conntrack_udp_timeout) [default: 30s].
    #[arg(long, value_parser = timefmt::parse_duration_secs)]
    hold_udp: Option<u32>,
    /// UDP hold for a stream: replies seen and active over 2 s (nf_conntrack_udp_timeout_stream) [default: 120s].
    #[arg(long, value_parser = timefmt::parse_duration_secs)]
    hold_udp_stream: Option<u32>,
    /// ICMP echo hold (Linux nf_conntrack_icmp_timeout) [default: 30s].
    #[arg(long, value_parser = timefmt::parse_duration_secs)]
    hold_icmp: Option<u32>,
}

impl StoreSettings {
    /// `base` with every option given on the command line applied.
    fn apply(&self, base: StoreConfig) -> StoreConfig {
        let h = base.hold;
        StoreConfig {
            partition_span_s: self.partition_span.unwrap_or(base.partition_span_s),
            grace_s: self.grace.unwrap_or(base.grace_s),
            hold: HoldTimes {
                tcp_closed_s: self.hold_tcp_closed.unwrap_or(h.tcp_closed_s),
                tcp_open_s: self.hold_tcp_open.unwrap_or(h.tcp_open_s),
                udp_s: self.hold_udp.unwrap_or(h.udp_s),
                udp_stream_s: self.hold_udp_stream.unwrap_or(h.udp_stream_s),
                icmp_s: self.hold_icmp.unwrap_or(h.icmp_s),
            },
            ..base
        }
    }
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// Store directory (created if missing).
    #[arg(long)]
    store: PathBuf,
    /// Captures holding both sides of the NAT (e.g. `tcpdump -i any`, a mirror port).
    files: Vec<PathBuf>,
    /// A capture of the inside (subscriber-facing) interface only.
    #[arg(long)]
    inside: Vec<PathBuf>,
    /// A capture of the outside (Internet-facing) interface only.
    #[arg(long)]
    outside: Vec<PathBuf>,
    /// Subscriber prefixes (repeat). Default: 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7.
    #[arg(long = "inside-prefix")]
    inside_prefixes: Vec<IpNet>,
    /// Interface facing subscribers: pcapng if_name, or SLL2 ifindex (repeat).
    #[arg(long = "inside-interface")]
    inside_interfaces: Vec<IfaceSel>,
    /// Interface facing the Internet: pcapng if_name, or SLL2 ifindex (repeat).
    #[arg(long = "outside-interface")]
    outside_interfaces: Vec<IfaceSel>,
    /// VLAN id (innermost tag) of the inside on a mirror port (repeat).
    #[arg(long = "inside-vlan")]
    inside_vlans: Vec<u16>,
    /// VLAN id (innermost tag) of the outside on a mirror port (repeat).
    #[arg(long = "outside-vlan")]
    outside_vlans: Vec<u16>,
    /// Longest time between a packet's two copies (capture clock skew included).
    #[arg(long, default_value = "2s", value_parser = timefmt::parse_duration)]
    pair_window: i64,
    /// Most packet copies waiting for their twin; beyond it the oldest is dropped and counted.
    #[arg(long, default_value_t = 1 << 20)]
    pending_max: usize,
    /// Most active flows in the correlator; beyond it the least recent is closed and counted.
    #[arg(long, default_value_t = 1 << 22)]
    flows_active_max: usize,
    #[command(flatten)]
    settings: StoreSettings,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// No progress bar even on a terminal.
    #[arg(long, short)]
    quiet: bool,
    /// 1: one thread does everything; 2: a reader thread (read, merge, decode)
    /// and a writing thread (flow table, append, seal), the pairing stage
    /// taken by whichever of the two is free (fastest on two cores); 3: the
    /// reader, a correlating thread (decoding what the reader leaves) and a
    /// writing thread (append, seal). Default: the CPUs this process may run
    /// on, at most 3 (`default_replay_threads`).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    threads: Option<u8>,
}

/// `replay --threads` when not given: one busy thread per CPU this process
/// may run on (its affinity and cgroup quota, `available_parallelism`), at
/// most the pipeline's three stages. More threads than CPUs leave a
/// preempted thread waiting while a CPU idles (round 19); on two CPUs the
/// two-thread pipeline is 0.93–0.98 of the three-thread wall under the
/// normal scheduler (round20-float20.md). 1 when the count is unknown.
fn default_replay_threads(cpus: Option<std::num::NonZeroUsize>) -> usize {
    cpus.map_or(1, |n| n.get().min(3))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl From<ProtoArg> for Proto {
    fn from(p: ProtoArg) -> Proto {
        match p {
            ProtoArg::Tcp => Proto::Tcp,
            ProtoArg::Udp => Proto::Udp,
            ProtoArg::Icmp => Proto::Icmp,
            ProtoArg::Icmpv6 => Proto::Icmpv6,
        }
    }
}

/// Output format of `lookup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LookupFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON array.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Output format of `export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

#[derive(Args, Debug)]
struct LookupArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// Public IP address asked about (required unless --batch).
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    ip: Option<IpAddr>,
    /// Public port (ICMP: echo identifier). Omitted: any port.
    #[arg(long, conflicts_with = "batch")]
    port: Option<u16>,
    /// Only this protocol.
    #[arg(long, value_enum)]
    proto: Option<ProtoArg>,
    /// The time: RFC 3339 with offset, Unix seconds (fraction allowed), or local time with --tz
    /// (required unless --batch).
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    at: Option<String>,
    /// Many requests from FILE (`-`: standard input), one per line: `IP PORT TIME`, PORT a
    /// number or `-` for any port, TIME (the rest of the line) in the forms of --at; blank
    /// lines and lines starting with `#` are skipped. --proto, --window, --remote and --tz
    /// apply to every line. Each answer is printed as a single lookup prints it, with its line
    /// number (table: `line N: ` before each heading; CSV: a first column `line`, and each
    /// request nobody held named on stderr; JSON: one array of {line, request, holders}).
    /// Every request is audited (one audit line each, naming the file and line). Exit 0:
    /// every request found a holder; 1: some found nobody; 2: an error.
    #[arg(long, value_name = "FILE")]
    batch: Option<PathBuf>,
    /// With --batch: a malformed line is reported (stderr; JSON: {line, error}) and the other
    /// lines are answered (exit 2). Without it a malformed line stops the batch before any
    /// lookup.
    #[arg(long, requires = "batch")]
    keep_going: bool,
    /// Also answer for anyone holding it this long before or after --at (clock uncertainty).
    #[arg(long, default_value = "0s", value_parser = timefmt::parse_duration)]
    window: i64,
    /// Remote endpoint named in the request: IP or IP:PORT (`[v6]:PORT`).
    #[arg(long)]
    remote: Option<String>,
    /// Zone for --at without an offset, and for showing times (e.g. Asia/Shanghai, +08:00).
    #[arg(long)]
    tz: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: LookupFormat,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// Start of the range (same forms as lookup --at). Omitted: from the start.
    #[arg(long)]
    from: Option<String>,
    /// End of the range. Omitted: to the end.
    #[arg(long)]
    to: Option<String>,
    /// Zone for times without an offset, and an extra local-time column.
    #[arg(long)]
    tz: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: ExportFormat,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// The recorder's metrics endpoint (IP:PORT), or `off`.
    #[arg(long, default_value = crate::record::METRICS_ADDR_DEFAULT)]
    metrics_addr: String,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Keep the demo store in this directory instead of a temporary one.
    #[arg(long)]
    store: Option<PathBuf>,
}

/// Runs one command; the exit code follows the command's contract.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay(a) => replay(a),
        Command::Lookup(a) if a.batch.is_some() => lookup_batch(a),
        Command::Lookup(a) => {
            let tz = a.tz.as_deref().map(timefmt::parse_tz).transpose()?;
            let at_arg = a.at.as_deref().context("--at is required")?;
            let at = timefmt::parse_time(at_arg, tz.as_ref()).context("--at")?;
            let remote = a.remote.as_deref().map(parse_remote).transpose()?;
            let store = open_store(&a.store)?;
            let req = crate::query::LookupRequest {
                ip: a.ip.context("--ip is required")?,
                port: a.port,
                proto: a.proto.map(Proto::from),
                at_ns: at,
                window_ns: a.window,
                remote,
            };
            crate::query::lookup(
                &store,
                &req,
                tz.as_ref(),
                a.format,
                &mut std::io::stdout().lock(),
            )
        }
        Command::Export(a) => {
            let tz = a.tz.as_deref().map(timefmt::parse_tz).transpose()?;
            let from = a
                .from
                .as_deref()
                .map(|s| timefmt::parse_time(s, tz.as_ref()))
                .transpose()
                .context("--from")?;
            let to =
                a.to.as_deref()
                    .map(|s| timefmt::parse_time(s, tz.as_ref()))
                    .transpose()
                    .context("--to")?;
            if let (Some(f), Some(t)) = (from, to) {
                if f > t {
                    bail!(
                        "--from {} is after --to {}; swap them",
                        timefmt::format_utc(f),
                        timefmt::format_utc(t)
                    );
                }
            }
            let store = open_store(&a.store)?;
            crate::query::export(
                &store,
                from,
                to,
                tz.as_ref(),
                a.format,
                &mut std::io::stdout().lock(),
            )
        }
        Command::Inspect(a) => {
            let store = open_store(&a.store)?;
            crate::query::inspect(&store, a.json, &mut std::io::stdout().lock())
        }
        Command::Verify(a) => {
            let store = open_store(&a.store)?;
            crate::query::verify(&store, a.json, &mut std::io::stdout().lock())
        }
        Command::Demo(a) => crate::demo::run(a.store.as_deref()),
        Command::Record(a) => record(*a),
        Command::Status(a) => {
            let store = open_store(&a.store)?;
            let addr = match a.metrics_addr.as_str() {
                "off" => None,
                s => Some(
                    s.parse()
                        .with_context(|| format!("--metrics-addr '{s}' is not IP:PORT or off"))?,
                ),
            };
            crate::status::run(&store, addr, &mut std::io::stdout().lock())
        }
    }
}

fn record(a: crate::record::RecordArgs) -> Result<ExitCode> {
    let merged = crate::record::load(a)?;
    let check = merged.check_config;
    let settings = crate::record::resolve(&merged)?;
    if check {
        print!("{}", crate::record::explain(&settings));
        println!("configuration valid");
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(feature = "live")]
    {
        crate::live::run(settings)
    }
    #[cfg(not(feature = "live"))]
    {
        bail!("this natrec was built without live capture; build it with `cargo install --features live` (needs libpcap-dev)")
    }
}

/// Requests one `natrec lookup --batch` reads at most (each answer is kept
/// until all are audited, then shown).
pub const BATCH_REQUESTS_MAX: usize = 1_000_000;

/// `natrec lookup --batch FILE|-`.
fn lookup_batch(a: LookupArgs) -> Result<ExitCode> {
    let tz = a.tz.as_deref().map(timefmt::parse_tz).transpose()?;
    let remote = a.remote.as_deref().map(parse_remote).transpose()?;
    let path = a.batch.as_deref().expect("batch mode");
    let (source, text) = if path == Path::new("-") {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut t)
            .context("read the batch from standard input")?;
        ("<stdin>".to_string(), t)
    } else {
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("read the batch file {}", path.display()))?;
        (path.display().to_string(), t)
    };
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if lines.len() == BATCH_REQUESTS_MAX {
            bail!("{source}: more than {BATCH_REQUESTS_MAX} requests; split the batch");
        }
        let req =
            parse_batch_line(t, tz.as_ref()).map(|(ip, port, at_ns)| crate::query::LookupRequest {
                ip,
                port,
                proto: a.proto.map(Proto::from),
                at_ns,
                window_ns: a.window,
                remote,
            });
        if let Err(why) = &req {
            if !a.keep_going {
                bail!("{source} line {}: {why}; nothing was looked up (fix the line, or pass --keep-going to answer the other lines)", i + 1);
            }
        }
        lines.push((i + 1, req));
    }
    let store = open_store(&a.store)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let code =
        crate::query::lookup_batch(&store, &source, &lines, tz.as_ref(), a.format, &mut out)?;
    std::io::Write::flush(&mut out).context("write the answers")?;
    Ok(code)
}

/// One batch line, `IP PORT TIME` (PORT a number or `-`; TIME the rest of
/// the line, as --at): the address, port and time, or what is wrong with
/// which field.
pub fn parse_batch_line(
    line: &str,
    tz: Option<&jiff::tz::TimeZone>,
) -> std::result::Result<(IpAddr, Option<u16>, i64), String> {
    let line = line.trim();
    let (ip, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("field 1 (ip): '{ip}' is not an IP address"))?;
    let rest = rest.trim_start();
    let (port, time) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let port = match port {
        "" => return Err("field 2 (port): missing; give a port or - for any port".into()),
        "-" => None,
        p => Some(p.parse::<u16>().map_err(|_| {
            format!("field 2 (port): '{p}' is not a port (0..=65535) or - for any port")
        })?),
    };
    let time = time.trim();
    if time.is_empty() {
        return Err("field 3 (time): missing".into());
    }
    let at =
        timefmt::parse_time(time, tz).map_err(|e| format!("field 3 (time): '{time}': {e:#}"))?;
    Ok((ip, port, at))
}

fn open_store(dir: &Path) -> Result<Store> {
    Ok(Store::open(dir)?)
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`.
fn parse_remote(s: &str) -> Result<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    bail!("--remote '{s}' is not IP, IP:PORT or [IPv6]:PORT")
}

/// Correlator settings from replay flags (shared with the demo).
pub fn correlator_config(
    prefixes: &[IpNet],
    pair_window_ns: i64,
    pending_max: usize,
    flows_active_max: usize,
    hold: HoldTimes,
) -> Result<CorrelatorConfig> {
    if pair_window_ns <= 0 || pair_window_ns > 60 * NANOS_PER_SEC {
        bail!("--pair-window must be more than 0 and at most 60s");
    }
    if pending_max == 0 || flows_active_max == 0 {
        bail!("--pending-max and --flows-active-max must be at least 1");
    }
    if flows_active_max > FLOWS_ACTIVE_MAX_LIMIT {
        bail!(
            "--flows-active-max (flows_active_max) {flows_active_max} is more than the correlator can index ({FLOWS_ACTIVE_MAX_LIMIT}: 24-bit slot links); give at most {FLOWS_ACTIVE_MAX_LIMIT} (about 1 GiB of flow table) or split the traffic over several recorders"
        );
    }
    Ok(CorrelatorConfig {
        subscriber_prefixes: if prefixes.is_empty() {
            default_subscriber_prefixes()
        } else {
            prefixes.to_vec()
        },
        pair_window_ns,
        pending_max,
        flows_active_max,
        hold,
        ..CorrelatorConfig::default()
    })
}

fn replay(a: ReplayArgs) -> Result<ExitCode> {
    if a.files.is_empty() && a.inside.is_empty() && a.outside.is_empty() {
        bail!("no capture given; name files (both sides), or --inside FILE --outside FILE");
    }
    if a.inside.is_empty() != a.outside.is_empty() {
        bail!("--inside and --outside go together: give a capture of each side of the NAT");
    }
    let inputs = crate::replay::open_inputs(&a.files, &a.inside, &a.outside)?;
    let store = Store::open_or_create(&a.store, a.settings.apply(StoreConfig::default()))?;
    let stored = *store.config();
    if a.settings.apply(stored) != stored {
        eprintln!(
            "natrec: note: {} keeps the partition span and hold times it was created with (store.json); \
             the differing options given were not applied (use a new store directory to change them)",
            store.dir().display()
        );
    }
    let cfg = correlator_config(
        &a.inside_prefixes,
        a.pair_window,
        a.pending_max,
        a.flows_active_max,
        store.config().hold,
    )?;
    let rules = SideRules {
        inside_interfaces: a.inside_interfaces,
        outside_interfaces: a.outside_interfaces,
        inside_vlans: a.inside_vlans,
        outside_vlans: a.outside_vlans,
    };
    let mut writer = store.writer()?;
    let progress = !a.quiet && std::io::stderr().is_terminal();
    let summary = crate::replay::run(
        &inputs,
        &rules,
        cfg,
        &mut writer,
        progress,
        a.threads.map_or_else(
            || default_replay_threads(std::thread::available_parallelism().ok()),
            usize::from,
        ),
    )?;
    drop(writer);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    } else {
        print!("{}", summary.render());
    }
    if summary.capture_errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for e in &summary.capture_errors {
        eprintln!(
            "natrec: {e}; the packets before it were recorded, the rest of that file was not read"
        );
    }
    Ok(ExitCode::from(2))
}

#[cfg(test)]
mod tests {
    use super::default_replay_threads;
    use std::num::NonZeroUsize;

    #[test]
    fn replay_threads_default_to_the_cpus_at_most_three() {
        let n = |k| NonZeroUsize::new(k);
        assert_eq!(default_replay_threads(None), 1);
        assert_eq!(default_replay_threads(n(1)), 1);
        assert_eq!(default_replay_threads(n(2)), 2);
        assert_eq!(default_replay_threads(n(3)), 3);
        assert_eq!(default_replay_threads(n(64)), 3);
    }
}
