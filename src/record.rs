//! `natrec record`: configuration (TOML file + flags), `--check-config`,
//! and the hand-over to the live recorder (`src/live.rs`, feature `live`).
//!
//! Every option is a key of the TOML file (`/etc/natrec/natrec.toml` by
//! default) and a flag (`snake_case` key = `--kebab-case` flag); a flag wins
//! over the file, the file over the default. Durations are strings with a
//! unit (`"1h"`, `"30s"`, `"500ms"`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ipnet::IpNet;
use natrec_capture::correlate::CorrelatorConfig;
use natrec_storage::{HoldTimes, StoreConfig};
use serde::Deserialize;

use crate::timefmt;

/// Default configuration file.
pub const CONFIG_PATH_DEFAULT: &str = "/etc/natrec/natrec.toml";
/// Order 82 Art. 13: records are kept at least 60 days.
pub const RETENTION_DAYS_MIN: u32 = 60;
/// Default `metrics_addr`.
pub const METRICS_ADDR_DEFAULT: &str = "127.0.0.1:9633";

/// Flags of `natrec record`; the same names (snake_case) are the keys of
/// the TOML configuration file.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordArgs {
    /// Configuration file (TOML). Missing is fine at the default path, an error when named.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Validate the configuration, explain every setting, and exit (0 valid, 2 not).
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// Store directory (created if missing; a restart resumes it).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Interface facing subscribers (repeat). With --outside-interface: one capture per interface.
    #[arg(long = "inside-interface")]
    pub inside_interface: Vec<String>,
    /// Interface facing the Internet (repeat).
    #[arg(long = "outside-interface")]
    pub outside_interface: Vec<String>,
    /// `any`: one capture on all interfaces (Linux SLL2); sides from the ifindex of
    /// --inside-interface/--outside-interface if given, else from the subscriber prefixes.
    #[arg(long)]
    pub interface: Option<String>,
    /// Subscriber prefixes (repeat). Default: 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7.
    #[arg(long = "inside-prefix")]
    pub inside_prefix: Vec<IpNet>,
    /// The NAT's public addresses (repeat); mappings whose public address is outside are counted.
    #[arg(long = "public-pool")]
    pub public_pool: Vec<IpNet>,
    /// Partition length (store creation only) [default: 1h].
    #[arg(long)]
    pub partition_span: Option<String>,
    /// Time a partition stays writable after its span (store creation only) [default: 60s].
    #[arg(long)]
    pub grace: Option<String>,
    /// Longest time appended records stay in memory only (store creation only) [default: 1s].
    #[arg(long)]
    pub flush_interval: Option<String>,
    /// TCP hold after FIN/RST [default: 120s].
    #[arg(long)]
    pub hold_tcp_closed: Option<String>,
    /// TCP hold when not seen closing [default: 2h4m].
    #[arg(long)]
    pub hold_tcp_open: Option<String>,
    /// UDP hold [default: 30s].
    #[arg(long)]
    pub hold_udp: Option<String>,
    /// UDP stream hold [default: 120s].
    #[arg(long)]
    pub hold_udp_stream: Option<String>,
    /// ICMP echo hold [default: 30s].
    #[arg(long)]
    pub hold_icmp: Option<String>,
    /// Days records are kept; at least 60 (Order 82 Art. 13) [default: 180]. natrec deletes nothing.
    #[arg(long)]
    pub retention_days: Option<u32>,
    /// BPF filter [default: "ip or ip6"].
    #[arg(long)]
    pub filter: Option<String>,
    /// Bytes kept per packet: headers only [default: 128].
    #[arg(long)]
    pub snaplen_bytes: Option<u32>,
    /// Kernel capture ring per interface, MiB [default: 64].
    #[arg(long)]
    pub buffer_mib: Option<u32>,
    /// Longest time the kernel holds a partly filled block, ms [default: 50].
    #[arg(long)]
    pub capture_timeout_ms: Option<u32>,
    /// Packets per batch from a capture thread [default: 1024].
    #[arg(long)]
    pub batch_packets_max: Option<usize>,
    /// Longest time a capture thread holds a partly filled batch, ms [default: 20].
    #[arg(long)]
    pub batch_wait_ms: Option<u32>,
    /// Batches queued from the capture threads to the correlator; beyond it batches are dropped,
    /// counted and written as gaps [default: 256].
    #[arg(long)]
    pub queue_batches_max: Option<usize>,
    /// How long packets wait to be merged by timestamp across interfaces, ms [default: 200].
    #[arg(long)]
    pub reorder_window_ms: Option<u32>,
    /// Packets held in the reorder buffer; beyond it the oldest is released early and counted [default: 262144].
    #[arg(long)]
    pub reorder_packets_max: Option<usize>,
    /// Batches of mappings queued to the writer; at the bound the correlator waits (and the
    /// capture queue fills, which is counted) [default: 64].
    #[arg(long)]
    pub mapping_queue_batches_max: Option<usize>,
    /// How often kernel drop counters are read and losses reported, ms [default: 1000].
    #[arg(long)]
    pub stats_interval_ms: Option<u32>,
    /// Longest time between a packet's two copies [default: 2s].
    #[arg(long)]
    pub pair_window: Option<String>,
    /// Copies waiting for their twin; beyond it the oldest is dropped, counted and a gap written [default: 1048576].
    #[arg(long)]
    pub pending_max: Option<usize>,
    /// Active flows; beyond it the least recent is closed as evicted [default: 4194304].
    #[arg(long)]
    pub flows_active_max: Option<usize>,
    /// Prometheus metrics on this local address, or `off` [default: 127.0.0.1:9633].
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Drop to this user (and its group) after opening the captures, when started as root.
    #[arg(long)]
    pub user: Option<String>,
    /// Log to this file instead of stderr; SIGHUP reopens it (logrotate).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// Everything `natrec record` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the configuration came from.
    pub config_file: Option<PathBuf>,
    /// Store directory.
    pub store: PathBuf,
    /// Store settings for creation (an existing store keeps its own).
    pub store_cfg: StoreConfig,
    /// Captures to open.
    pub captures: Vec<CaptureSpec>,
    /// With `any`: interface names whose ifindex is inside / outside.
    pub any_inside: Vec<String>,
    /// With `any`: outside interface names.
    pub any_outside: Vec<String>,
    /// Correlator configuration.
    pub correlator: CorrelatorConfig,
    /// Public pool (informational: counted).
    pub public_pool: Vec<IpNet>,
    /// Retention in days (validated; nothing is deleted).
    pub retention_days: u32,
    /// BPF filter.
    pub filter: String,
    /// Snapshot length.
    pub snaplen_bytes: u32,
    /// Kernel ring bytes per capture.
    pub buffer_bytes: u32,
    /// Kernel block timeout.
    pub capture_timeout_ms: u32,
    /// Packets per batch.
    pub batch_packets_max: usize,
    /// Batch wait.
    pub batch_wait_ms: u32,
    /// Capture → correlator queue bound.
    pub queue_batches_max: usize,
    /// Reorder window.
    pub reorder_window_ms: u32,
    /// Reorder buffer bound.
    pub reorder_packets_max: usize,
    /// Correlator → writer queue bound.
    pub mapping_queue_batches_max: usize,
    /// Stats/gap report interval.
    pub stats_interval_ms: u32,
    /// Metrics endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// User to drop to.
    pub user: Option<String>,
    /// Log file.
    pub log_file: Option<PathBuf>,
}

/// One capture to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSpec {
    /// Interface name or `any`.
    pub device: String,
    /// Inside, outside, or decided per packet (`any`).
    pub side: natrec_capture::correlate::Side,
}

fn dur_s(key: &str, v: &Option<String>, default: u32) -> Result<u32> {
    v.as_deref()
        .map(timefmt::parse_duration_secs)
        .transpose()
        .with_context(|| key.to_string())
        .map(|x| x.unwrap_or(default))
}

/// Reads the file (if any) and applies the flags over it.
pub fn load(flags: RecordArgs) -> Result<RecordArgs> {
    let (path, named) = match &flags.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(CONFIG_PATH_DEFAULT), false),
    };
    let mut file = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read configuration {}", path.display()))?;
        let mut f: RecordArgs = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "configuration {}: {e}; every key is a `natrec record` flag in snake_case (see `natrec record --help`)",
                path.display()
            )
        })?;
        f.config = Some(path);
        f
    } else if named {
        bail!(
            "configuration {}: no such file; give an existing file or omit --config",
            path.display()
        );
    } else {
        RecordArgs::default()
    };
    macro_rules! over {
        ($($f:ident),*) => { $( if flags.$f.is_some() { file.$f = flags.$f; } )* };
    }
    macro_rules! over_vec {
        ($($f:ident),*) => { $( if !flags.$f.is_empty() { file.$f = flags.$f; } )* };
    }
    over!(
        store,
        interface,
        partition_span,
        grace,
        flush_interval,
        hold_tcp_closed,
        hold_tcp_open,
        hold_udp,
        hold_udp_stream,
        hold_icmp,
        retention_days,
        filter,
        snaplen_bytes,
        buffer_mib,
        capture_timeout_ms,
        batch_packets_max,
        batch_wait_ms,
        queue_batches_max,
        reorder_window_ms,
        reorder_packets_max,
        mapping_queue_batches_max,
        stats_interval_ms,
        pair_window,
        pending_max,
        flows_active_max,
        metrics_addr,
        user,
        log_file
    );
    over_vec!(
        inside_interface,
        outside_interface,
        inside_prefix,
        public_pool
    );
    file.check_config = flags.check_config;
    Ok(file)
}

/// Checks the merged options and resolves defaults.
pub fn resolve(a: &RecordArgs) -> Result<Settings> {
    use natrec_capture::correlate::Side;
    let Some(store) = a.store.clone() else {
        bail!("no store: give --store DIR (or `store = \"/var/lib/natrec/store\"` in the configuration)");
    };
    let base = StoreConfig::default();
    let h = base.hold;
    let store_cfg = StoreConfig {
        partition_span_s: dur_s("partition_span", &a.partition_span, base.partition_span_s)?,
        grace_s: dur_s("grace", &a.grace, base.grace_s)?,
        flush_interval_ms: match &a.flush_interval {
            Some(s) => {
                let ns = timefmt::parse_duration(s).context("flush_interval")?;
                u32::try_from(ns / 1_000_000)
                    .ok()
                    .filter(|ms| *ms >= 1)
                    .context("flush_interval must be between 1 ms and 49 days")?
            }
            None => base.flush_interval_ms,
        },
        hold: HoldTimes {
            tcp_closed_s: dur_s("hold_tcp_closed", &a.hold_tcp_closed, h.tcp_closed_s)?,
            tcp_open_s: dur_s("hold_tcp_open", &a.hold_tcp_open, h.tcp_open_s)?,
            udp_s: dur_s("hold_udp", &a.hold_udp, h.udp_s)?,
            udp_stream_s: dur_s("hold_udp_stream", &a.hold_udp_stream, h.udp_stream_s)?,
            icmp_s: dur_s("hold_icmp", &a.hold_icmp, h.icmp_s)?,
        },
    };
    let span = store_cfg.partition_span_s;
    if !(natrec_storage::PARTITION_SPAN_S_MIN..=natrec_storage::PARTITION_SPAN_S_MAX)
        .contains(&span)
        || !(86_400 % span == 0 || span.is_multiple_of(86_400))
    {
        bail!(
            "partition_span {span} s: must be 60 s .. 7 days and divide a day (or be whole days)"
        );
    }

    let mut captures = Vec::new();
    let (mut any_inside, mut any_outside) = (Vec::new(), Vec::new());
    match a.interface.as_deref() {
        Some("any") => {
            captures.push(CaptureSpec {
                device: "any".into(),
                side: Side::Unknown,
            });
            any_inside = a.inside_interface.clone();
            any_outside = a.outside_interface.clone();
        }
        Some(other) => bail!(
            "interface '{other}': only `any` is accepted here; name interfaces with --inside-interface and --outside-interface"
        ),
        None => {
            if a.inside_interface.is_empty() || a.outside_interface.is_empty() {
                bail!("no capture: give --inside-interface IF and --outside-interface IF (one capture each), or --interface any");
            }
            for (list, side) in [
                (&a.inside_interface, Side::Inside),
                (&a.outside_interface, Side::Outside),
            ] {
                for d in list {
                    if d == "any" {
                        bail!("--inside-interface/--outside-interface any: use --interface any");
                    }
                    captures.push(CaptureSpec {
                        device: d.clone(),
                        side,
                    });
                }
            }
            let mut names: Vec<&String> = captures.iter().map(|c| &c.device).collect();
            names.sort();
            names.dedup();
            if names.len() != captures.len() {
                bail!("an interface is named twice (inside and outside must differ)");
            }
        }
    }

    let retention_days = a.retention_days.unwrap_or(180);
    if retention_days < RETENTION_DAYS_MIN {
        bail!(
            "retention_days {retention_days}: Order 82 Art. 13 requires keeping records at least {RETENTION_DAYS_MIN} days (Art. 14 forbids deleting them earlier); give {RETENTION_DAYS_MIN} or more"
        );
    }
    let pair_window_ns = match &a.pair_window {
        Some(s) => timefmt::parse_duration(s).context("pair_window")?,
        None => 2 * natrec_storage::NANOS_PER_SEC,
    };
    let correlator = crate::cli::correlator_config(
        &a.inside_prefix,
        pair_window_ns,
        a.pending_max.unwrap_or(1 << 20),
        a.flows_active_max.unwrap_or(1 << 22),
        store_cfg.hold,
    )?;
    let metrics_addr = match a.metrics_addr.as_deref().unwrap_or(METRICS_ADDR_DEFAULT) {
        "off" => None,
        s => Some(
            s.parse::<SocketAddr>()
                .with_context(|| format!("metrics_addr '{s}' is not IP:PORT (or `off`)"))?,
        ),
    };
    let positive = |name: &str, v: usize| -> Result<usize> {
        if v == 0 {
            bail!("{name} must be at least 1");
        }
        Ok(v)
    };
    let s = Settings {
        config_file: a.config.clone(),
        store,
        store_cfg,
        captures,
        any_inside,
        any_outside,
        correlator,
        public_pool: a.public_pool.clone(),
        retention_days,
        filter: a.filter.clone().unwrap_or_else(|| "ip or ip6".into()),
        snaplen_bytes: a.snaplen_bytes.unwrap_or(128),
        buffer_bytes: a
            .buffer_mib
            .unwrap_or(64)
            .checked_mul(1 << 20)
            .filter(|b| *b <= i32::MAX as u32)
            .context("buffer_mib must be at most 2047")?,
        capture_timeout_ms: positive(
            "capture_timeout_ms",
            a.capture_timeout_ms.unwrap_or(50) as usize,
        )? as u32,
        batch_packets_max: positive("batch_packets_max", a.batch_packets_max.unwrap_or(1024))?,
        batch_wait_ms: positive("batch_wait_ms", a.batch_wait_ms.unwrap_or(20) as usize)? as u32,
        queue_batches_max: positive("queue_batches_max", a.queue_batches_max.unwrap_or(256))?,
        reorder_window_ms: a.reorder_window_ms.unwrap_or(200),
        reorder_packets_max: positive(
            "reorder_packets_max",
            a.reorder_packets_max.unwrap_or(1 << 18),
        )?,
        mapping_queue_batches_max: positive(
            "mapping_queue_batches_max",
            a.mapping_queue_batches_max.unwrap_or(64),
        )?,
        stats_interval_ms: positive(
            "stats_interval_ms",
            a.stats_interval_ms.unwrap_or(1000) as usize,
        )? as u32,
        metrics_addr,
        user: a.user.clone(),
        log_file: a.log_file.clone(),
    };
    if s.snaplen_bytes < 96 {
        bail!("snaplen_bytes {}: at least 96 are needed for link, IP and TCP headers plus the 16-byte payload fingerprint", s.snaplen_bytes);
    }
    if i64::from(s.reorder_window_ms) * 1_000_000 >= s.correlator.pair_window_ns {
        bail!("reorder_window_ms must be shorter than pair_window");
    }
    if s.reorder_window_ms < s.capture_timeout_ms + s.batch_wait_ms {
        bail!(
            "reorder_window_ms {} must be at least capture_timeout_ms + batch_wait_ms ({}): packets from one interface can arrive that much later than from another",
            s.reorder_window_ms,
            s.capture_timeout_ms + s.batch_wait_ms
        );
    }
    Ok(s)
}

/// `--check-config`: what each setting is and where the bounds are.
pub fn explain(s: &Settings) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let c = &s.correlator;
    let st = &s.store_cfg;
    let _ = writeln!(
        o,
        "configuration: {}",
        s.config_file
            .as_deref()
            .map_or("(none; flags and defaults)".into(), |p: &Path| p
                .display()
                .to_string())
    );
    let _ = writeln!(o, "store:                     {} (created with the settings below if missing; an existing store keeps its store.json)", s.store.display());
    for cap in &s.captures {
        let _ = writeln!(o, "capture:                   {} ({:?}; snaplen {} bytes, kernel ring {} MiB, TPACKET_V3 block timeout {} ms, filter \"{}\")",
            cap.device, cap.side, s.snaplen_bytes, s.buffer_bytes >> 20, s.capture_timeout_ms, s.filter);
    }
    if !s.any_inside.is_empty() || !s.any_outside.is_empty() {
        let _ = writeln!(o, "sides on `any`:            inside {:?}, outside {:?} (by ifindex from /sys/class/net/IF/ifindex at start)", s.any_inside, s.any_outside);
    }
    let _ = writeln!(
        o,
        "subscriber prefixes:       {}",
        c.subscriber_prefixes
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "public pool:               {}",
        if s.public_pool.is_empty() {
            "(not given; not checked)".into()
        } else {
            s.public_pool
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(o, "partition span:            {} s, grace {} s, flush interval {} ms (at most this much is lost on power failure)", st.partition_span_s, st.grace_s, st.flush_interval_ms);
    let h = st.hold;
    let _ = writeln!(o, "hold times:                tcp closed {} s, tcp open {} s, udp {} s, udp stream {} s, icmp {} s", h.tcp_closed_s, h.tcp_open_s, h.udp_s, h.udp_stream_s, h.icmp_s);
    let _ = writeln!(o, "retention:                 {} days (minimum {RETENTION_DAYS_MIN}, Order 82 Art. 13). natrec deletes nothing: remove sealed partitions older than this by hand or by your own job", s.retention_days);
    let _ = writeln!(
        o,
        "batch_packets_max:         {} packets per batch, sent after at most batch_wait_ms {} ms",
        s.batch_packets_max, s.batch_wait_ms
    );
    let _ = writeln!(o, "queue_batches_max:         {} batches capture -> correlator; when full the batch is dropped, counted and written as a gap (kind queue)", s.queue_batches_max);
    let _ = writeln!(o, "reorder_window_ms:         {} ms merge window across interfaces; reorder_packets_max {} packets (at the bound the oldest is released early, counted)", s.reorder_window_ms, s.reorder_packets_max);
    let _ = writeln!(o, "mapping_queue_batches_max: {} batches correlator -> writer; when full the correlator waits (the capture queue then fills and its drops are gaps)", s.mapping_queue_batches_max);
    let _ = writeln!(o, "pair window:               {} ms; pending_max {} copies (oldest dropped, counted, gap kind correlator); flows_active_max {} (least recent closed as evicted)", c.pair_window_ns / 1_000_000, c.pending_max, c.flows_active_max);
    let _ = writeln!(o, "stats_interval_ms:         {} ms between kernel drop-counter reads (gap kinds kernel, interface)", s.stats_interval_ms);
    let _ = writeln!(
        o,
        "metrics:                   {}",
        s.metrics_addr.map_or("off".into(), |a| format!(
            "http://{a}/metrics (Prometheus text)"
        ))
    );
    let _ = writeln!(o, "user:                      {}", s.user.as_deref().map_or("(stay as started; with systemd User=natrec + AmbientCapabilities=CAP_NET_RAW)".to_string(), |u| format!("{u} (setgid/setuid after opening the captures and the metrics socket; no capability kept)")));
    let _ = writeln!(
        o,
        "log:                       {}",
        s.log_file
            .as_deref()
            .map_or("stderr (journald)".into(), |p| format!(
                "{} (reopened on SIGHUP)",
                p.display()
            ))
    );
    if !cfg!(feature = "live") {
        let _ = writeln!(o, "note: this natrec was built without the `live` feature; `natrec record` needs `cargo install --features live` (libpcap-dev)");
    }
    o
}
