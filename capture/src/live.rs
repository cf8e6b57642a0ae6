//! Live capture through libpcap (the `pcap` crate), behind the `live`
//! feature. A [`LiveCapture`] yields the same fields a capture file does
//! (timestamp in ns, link type, interface, bytes), so decoding and
//! correlation are the same as for replay.
//!
//! Opened with a snapshot length just large enough for the headers natrec
//! decodes (no payload beyond the 16 bytes the correlator fingerprints ever
//! leaves the kernel), a kernel buffer of `buffer_bytes`, immediate mode off
//! (libpcap uses TPACKET_V3 blocks on Linux, delivered when full or after
//! `timeout_ms`), nanosecond timestamps, a BPF filter. On the `any` device
//! the link type is set to LINUX_SLL2, which carries the interface index.
//!
//! This module only reads packets and the kernel's drop counters; what to
//! do with drops is the caller's.

use pcap::{Active, Capture, Linktype, Precision};

/// LINKTYPE_LINUX_SLL2.
pub const LINKTYPE_LINUX_SLL2: i32 = 276;

/// How to open one live capture.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Interface name (`eth0`, or `any`).
    pub device: String,
    /// Bytes kept of each packet (snapshot length).
    pub snaplen_bytes: u32,
    /// Kernel capture buffer (ring) size in bytes.
    pub buffer_bytes: u32,
    /// Longest time (ms) the kernel holds a partly filled block before
    /// delivering it; also how often [`LiveCapture::next_packet`] returns `None`
    /// on an idle link.
    pub timeout_ms: u32,
    /// BPF filter program (tcpdump syntax); empty = everything.
    pub filter: String,
}

/// Errors opening or reading a live capture; each names the interface.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// libpcap refused (no such device, no permission, bad filter, ...).
    #[error("capture on {device}: {what}: {source}; {hint}")]
    Pcap {
        /// The interface.
        device: String,
        /// The step that failed.
        what: &'static str,
        /// libpcap's error.
        #[source]
        source: pcap::Error,
        /// What to do.
        hint: &'static str,
    },
}

/// One packet as read from the kernel, borrowed until the next read.
#[derive(Clone, Copy, Debug)]
pub struct LivePacket<'a> {
    /// Kernel timestamp, ns since the Unix epoch.
    pub ts_ns: i64,
    /// Link type (pcap LINKTYPE_* value).
    pub linktype: u16,
    /// Captured bytes (at most the snapshot length).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
}

/// The kernel's counters for one capture, cumulative since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Packets the filter accepted.
    pub received: u64,
    /// Dropped because the capture ring was full.
    pub dropped: u64,
    /// Dropped by the interface or driver.
    pub if_dropped: u64,
}

/// An open live capture on one interface (or `any`).
pub struct LiveCapture {
    cap: Capture<Active>,
    device: String,
    linktype: u16,
    /// libpcap's counters are 32 bits and wrap: kept widened here.
    last_raw: (u32, u32, u32),
    total: LiveStats,
    timeout_ms: u32,
    /// The last read found nothing.
    idle: bool,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("device", &self.device)
            .field("linktype", &self.linktype)
            .finish()
    }
}

impl LiveCapture {
    /// Opens and activates the capture (needs CAP_NET_RAW), sets the link
    /// type (SLL2 on `any`) and the filter.
    pub fn open(cfg: &LiveConfig) -> Result<LiveCapture, LiveError> {
        let err = |what, hint| {
            let device = cfg.device.clone();
            move |source| LiveError::Pcap {
                device,
                what,
                source,
                hint,
            }
        };
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let cap = Capture::from_device(cfg.device.as_str())
            .map_err(err("find device", "check the interface name (`ip link`)"))?
            .snaplen(clamp(cfg.snaplen_bytes))
            .buffer_size(clamp(cfg.buffer_bytes))
            .timeout(clamp(cfg.timeout_ms.max(1)))
            .immediate_mode(false)
            .promisc(false)
            .precision(Precision::Nano)
            .open()
            .map_err(err(
                "open",
                "natrec record needs CAP_NET_RAW (run as root, or give the unit AmbientCapabilities=CAP_NET_RAW) and an existing interface",
            ))?
            // libpcap's TPACKET_V3 reader blocks without a timeout on an idle
            // link; non-blocking reads plus our own poll() with timeout_ms
            // keep the thread responsive to a stop request.
            .setnonblock()
            .map_err(err("set non-blocking", "report this libpcap version"))?;
        let mut cap = cap;
        if cfg.device == "any" {
            let sll2 = Linktype(LINKTYPE_LINUX_SLL2);
            if cap.list_datalinks().is_ok_and(|l| l.contains(&sll2)) {
                cap.set_datalink(sll2)
                    .map_err(err("set link type LINUX_SLL2", "use per-interface capture"))?;
            }
        }
        if !cfg.filter.is_empty() {
            cap.filter(&cfg.filter, true).map_err(err(
                "set BPF filter",
                "check the filter's syntax (man pcap-filter)",
            ))?;
        }
        let linktype = u16::try_from(cap.get_datalink().0).unwrap_or(u16::MAX);
        Ok(LiveCapture {
            cap,
            device: cfg.device.clone(),
            linktype,
            last_raw: (0, 0, 0),
            total: LiveStats::default(),
            timeout_ms: cfg.timeout_ms.max(1),
            idle: false,
        })
    }

    /// The interface name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The link type packets come with.
    pub fn linktype(&self) -> u16 {
        self.linktype
    }

    /// The next packet, or `Ok(None)` when none is ready; after a `None`,
    /// the next call first waits up to `timeout_ms` for one.
    pub fn next_packet(&mut self) -> Result<Option<LivePacket<'_>>, LiveError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let linktype = self.linktype;
        if self.idle {
            let mut fds = [PollFd::new(self.cap.as_fd(), PollFlags::POLLIN)];
            let t = PollTimeout::try_from(self.timeout_ms).unwrap_or(PollTimeout::MAX);
            // EINTR (a signal) is a timeout here: the caller checks its stop flag.
            let _ = poll(&mut fds, t);
        }
        match self.cap.next_packet() {
            Ok(p) => {
                self.idle = false;
                // With Precision::Nano, tv_usec holds nanoseconds.
                // time_t / suseconds_t are i64 on 64-bit Linux, narrower elsewhere.
                #[allow(clippy::useless_conversion)]
                let ts_ns = i64::from(p.header.ts.tv_sec)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(i64::from(p.header.ts.tv_usec));
                Ok(Some(LivePacket {
                    ts_ns,
                    linktype,
                    data: p.data,
                    orig_len: p.header.len,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => {
                // Nothing ready: the next call waits in poll() first.
                self.idle = true;
                Ok(None)
            }
            Err(source) => Err(LiveError::Pcap {
                device: self.device.clone(),
                what: "read",
                source,
                hint: "the interface may have gone away; natrec records the loss as a gap",
            }),
        }
    }

    /// The kernel's counters, cumulative since open (32-bit wraps undone).
    pub fn stats(&mut self) -> Result<LiveStats, LiveError> {
        let s = self.cap.stats().map_err(|source| LiveError::Pcap {
            device: self.device.clone(),
            what: "read statistics",
            source,
            hint: "drops can no longer be counted on this interface",
        })?;
        let (r0, d0, i0) = self.last_raw;
        self.total.received += u64::from(s.received.wrapping_sub(r0));
        self.total.dropped += u64::from(s.dropped.wrapping_sub(d0));
        self.total.if_dropped += u64::from(s.if_dropped.wrapping_sub(i0));
        self.last_raw = (s.received, s.dropped, s.if_dropped);
        Ok(self.total)
    }
}
