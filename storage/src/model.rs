//! The value stored: one NAT mapping, as observed on the wire.
//!
//! These types are the vocabulary shared by the correlator (which produces
//! [`Mapping`]s) and the store (which persists and finds them). They carry no
//! packet bytes: a mapping is addresses, ports, times and counts (Order 82
//! Art. 4: payload is never stored).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC.
pub type UnixNanos = i64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Transport protocol of a mapping. For ICMP and ICMPv6 echo the identifier
/// plays the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// ICMP (IPv4) echo request/reply; port = identifier.
    Icmp,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMPv6 echo request/reply; port = identifier.
    Icmpv6,
}

impl Proto {
    /// IANA protocol number, as stored on disk.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Icmp => 1,
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmpv6 => 58,
        }
    }

    /// Inverse of [`Proto::number`]; `None` for protocols natrec does not record.
    pub const fn from_number(n: u8) -> Option<Proto> {
        match n {
            1 => Some(Proto::Icmp),
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            58 => Some(Proto::Icmpv6),
            _ => None,
        }
    }

    /// Lower-case name used in every output format (`tcp`, `udp`, `icmp`, `icmpv6`).
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Icmp => "icmp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmpv6 => "icmpv6",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a mapping ended, as far as the packets show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum EndReason {
    /// Not ended yet: the mapping is still active.
    Open = 0,
    /// TCP FIN seen in both directions.
    Fin = 1,
    /// TCP RST seen.
    Rst = 2,
    /// No packet for the protocol's hold time.
    Idle = 3,
    /// The capture ended while the mapping was active.
    CaptureEnd = 4,
    /// The same internal endpoint and remote were seen with a new public
    /// endpoint (or a new TCP connection on the same tuple) and this one was closed.
    Replaced = 5,
    /// Evicted from the correlator's flow table at its bound (`flows_active_max`).
    Evicted = 6,
}

impl EndReason {
    /// Inverse of `as u8`; `None` for unknown codes.
    pub const fn from_code(c: u8) -> Option<EndReason> {
        match c {
            0 => Some(EndReason::Open),
            1 => Some(EndReason::Fin),
            2 => Some(EndReason::Rst),
            3 => Some(EndReason::Idle),
            4 => Some(EndReason::CaptureEnd),
            5 => Some(EndReason::Replaced),
            6 => Some(EndReason::Evicted),
            _ => None,
        }
    }

    /// Kebab-case name used in output (`open`, `fin`, `rst`, `idle`, `capture-end`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            EndReason::Open => "open",
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Idle => "idle",
            EndReason::CaptureEnd => "capture-end",
            EndReason::Replaced => "replaced",
            EndReason::Evicted => "evicted",
        }
    }
}

/// Mapping flag: the first packet seen was not a connection start (a TCP
/// packet without SYN): the flow was already running when the capture began,
/// so `first_ns` is only the first *observed* time.
pub const FLAG_MIDFLOW: u8 = 1 << 0;

/// One NAT mapping: which internal endpoint held which public endpoint
/// towards which remote endpoint, and when packets were seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// Transport protocol.
    pub proto: Proto,
    /// Subscriber side (pre-translation source).
    pub internal: SocketAddr,
    /// Public side (post-translation source).
    pub public: SocketAddr,
    /// The far end, unchanged by source NAT.
    pub remote: SocketAddr,
    /// Time of the first translated packet observed.
    pub first_ns: UnixNanos,
    /// Time of the last translated packet observed so far.
    pub last_ns: UnixNanos,
    /// How it ended; [`EndReason::Open`] while active.
    pub end: EndReason,
    /// Translated packets seen subscriber → remote.
    pub packets_out: u32,
    /// Translated packets seen remote → subscriber.
    pub packets_in: u32,
    /// `FLAG_*` bits.
    pub flags: u8,
}

/// Linux treats a UDP flow as a stream (longer timeout) once it saw a reply
/// and is still active two seconds after its first packet
/// (`nf_conntrack_proto_udp.c`: "Still active after two seconds? Extend timeout").
pub const UDP_STREAM_AFTER_NS: i64 = 2 * NANOS_PER_SEC;

/// How long the NAT keeps holding a public endpoint after the last packet,
/// per protocol and state (Linux conntrack's timeouts are the model). A
/// mapping is *held* from `first_ns` to `last_ns + hold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldTimes {
    /// TCP after FIN or RST (TIME_WAIT; Linux `nf_conntrack_tcp_timeout_time_wait` = 120 s).
    pub tcp_closed_s: u32,
    /// TCP without a close seen (RFC 5382 REQ-5: at least 2 h 4 min).
    pub tcp_open_s: u32,
    /// UDP that never saw a reply (Linux `nf_conntrack_udp_timeout` = 30 s).
    pub udp_s: u32,
    /// UDP that saw replies and was still active more than
    /// [`UDP_STREAM_AFTER_NS`] after its first packet (Linux
    /// `nf_conntrack_udp_timeout_stream` = 120 s). A single request/response
    /// exchange keeps the plain [`udp_s`](HoldTimes::udp_s), as in Linux.
    pub udp_stream_s: u32,
    /// ICMP / ICMPv6 echo (Linux `nf_conntrack_icmp_timeout` = 30 s).
    pub icmp_s: u32,
}

impl Default for HoldTimes {
    fn default() -> Self {
        HoldTimes {
            tcp_closed_s: 120,
            tcp_open_s: 7440,
            udp_s: 30,
            udp_stream_s: 120,
            icmp_s: 30,
        }
    }
}

impl HoldTimes {
    /// Hold time in nanoseconds that applies to `m` in its current state.
    #[inline]
    pub fn hold_ns(&self, m: &Mapping) -> i64 {
        self.hold_ns_of(m.proto, m.end, m.first_ns, m.last_ns, m.packets_in)
    }

    /// [`HoldTimes::hold_ns`] from the fields the rule reads (the seal
    /// takes them from a record's bytes without decoding the mapping).
    #[inline]
    pub fn hold_ns_of(
        &self,
        proto: Proto,
        end: EndReason,
        first_ns: UnixNanos,
        last_ns: UnixNanos,
        packets_in: u32,
    ) -> i64 {
        let s = match proto {
            Proto::Tcp => match end {
                EndReason::Fin | EndReason::Rst => self.tcp_closed_s,
                _ => self.tcp_open_s,
            },
            Proto::Udp if packets_in > 0 && last_ns - first_ns > UDP_STREAM_AFTER_NS => {
                self.udp_stream_s
            }
            Proto::Udp => self.udp_s,
            Proto::Icmp | Proto::Icmpv6 => self.icmp_s,
        };
        i64::from(s) * NANOS_PER_SEC
    }

    /// Largest hold of any protocol and state, in nanoseconds.
    pub fn max_ns(&self) -> i64 {
        let s = self
            .tcp_closed_s
            .max(self.tcp_open_s)
            .max(self.udp_s)
            .max(self.udp_stream_s)
            .max(self.icmp_s);
        i64::from(s) * NANOS_PER_SEC
    }

    /// End of the held interval, or `None` while the mapping is still open
    /// (held until further notice).
    pub fn held_until_ns(&self, m: &Mapping) -> Option<UnixNanos> {
        match m.end {
            EndReason::Open => None,
            _ => Some(m.last_ns.saturating_add(self.hold_ns(m))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_numbers_round_trip() {
        for p in [Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Icmpv6] {
            assert_eq!(Proto::from_number(p.number()), Some(p));
        }
        assert_eq!(Proto::from_number(47), None);
    }

    #[test]
    fn end_codes_round_trip() {
        for c in 0..=6u8 {
            assert_eq!(EndReason::from_code(c).map(|e| e as u8), Some(c));
        }
        assert_eq!(EndReason::from_code(7), None);
    }

    #[test]
    fn hold_depends_on_state() {
        let h = HoldTimes::default();
        let mut m = Mapping {
            proto: Proto::Udp,
            internal: "100.64.0.2:5000".parse().unwrap(),
            public: "203.0.113.1:5000".parse().unwrap(),
            remote: "198.51.100.9:53".parse().unwrap(),
            first_ns: 0,
            last_ns: 10 * NANOS_PER_SEC,
            end: EndReason::Idle,
            packets_out: 1,
            packets_in: 0,
            flags: 0,
        };
        assert_eq!(h.held_until_ns(&m), Some(40 * NANOS_PER_SEC));
        m.packets_in = 1;
        assert_eq!(h.held_until_ns(&m), Some(130 * NANOS_PER_SEC));
        // One request and its reply within two seconds: not a stream.
        m.first_ns = 9 * NANOS_PER_SEC;
        assert_eq!(h.held_until_ns(&m), Some(40 * NANOS_PER_SEC));
        m.end = EndReason::Open;
        assert_eq!(h.held_until_ns(&m), None);
    }
}
