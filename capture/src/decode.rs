//! Packet decoding: one captured packet's bytes → the fields NAT correlation needs.
//!
//! [`decode`] is a pure function over `(linktype, bytes)`: no I/O, no clock, no heap allocation.
//! It strips the link layer itself with small views in [`wire`] (Ethernet with any stack of
//! 802.1Q / 802.1ad / QinQ tags, PPPoE sessions, Linux cooked SLL and SLL2, BSD loopback, PPP),
//! then hands the IP packet to `etherparse`'s lax slices for IPv4 / IPv6 (with extension headers)
//! and TCP / UDP headers; ICMP echo headers are read here.
//!
//! What comes out is a [`Decoded`] summary, or a [`Skip`] saying why the packet is of no use
//! (not IP, a fragment, not an echo, cut too short, malformed). Skips are normal operating events,
//! counted by [`Skip::reason`], never errors.
//!
//! Packets cut by the snapshot length are decoded as long as the IP and transport headers are
//! complete: lengths come from the IP header ([`Decoded::ip_total_len`], [`Decoded::payload_len`]),
//! and the payload fingerprint covers what was captured, at most [`PAYLOAD_FP_BYTES_MAX`] bytes.
//!
//! ```
//! use natrec_capture::decode::{decode, linktype};
//! // IPv4 + UDP 10.0.0.1:1000 -> 10.0.0.2:53, 2 payload bytes, on a raw-IP link.
//! let packet = [
//!     0x45, 0, 0, 30, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
//!     0x03, 0xe8, 0, 53, 0, 10, 0, 0, b'h', b'i',
//! ];
//! let d = decode(linktype::RAW, &packet).unwrap();
//! assert_eq!((d.sport, d.dport, d.ip_id, d.payload_len), (1000, 53, 0x1234, 2));
//! ```

use std::fmt;
use std::net::IpAddr;

use etherparse::{err, IpNumber, LaxIpv4Slice, LaxIpv6Slice, TcpHeaderSlice, UdpHeaderSlice};
use natrec_storage::Proto;

pub mod wire;

pub(crate) mod fast;
#[cfg(test)]
pub(crate) mod fast_reference;

#[cfg(test)]
mod tests;

use wire::{EthernetFrame, LinuxSll, LinuxSll2, PppoeSession, VlanTag};

/// `LINKTYPE_*` values [`decode`] understands (see <https://www.tcpdump.org/linktypes.html>).
pub mod linktype {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: u16 = 0;
    /// Ethernet II (with 802.1Q / 802.1ad / QinQ tags and PPPoE sessions).
    pub const ETHERNET: u16 = 1;
    /// PPP, optionally with the HDLC-like `ff 03` address and control bytes.
    pub const PPP: u16 = 9;
    /// `DLT_RAW` as numbered on most BSDs: raw IPv4 or IPv6.
    pub const DLT_RAW_12: u16 = 12;
    /// `DLT_RAW` as numbered on OpenBSD: raw IPv4 or IPv6.
    pub const DLT_RAW_14: u16 = 14;
    /// Raw IPv4 or IPv6, version from the first nibble.
    pub const RAW: u16 = 101;
    /// OpenBSD loopback: 4-byte address family, big-endian.
    pub const LOOP: u16 = 108;
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    pub const LINUX_SLL: u16 = 113;
    /// Raw IPv4 only.
    pub const IPV4: u16 = 228;
    /// Raw IPv6 only.
    pub const IPV6: u16 = 229;
    /// Linux cooked capture v2 (`tcpdump -i any` since libpcap 1.10).
    pub const LINUX_SLL2: u16 = 276;

    /// Every link type [`super::decode`] accepts.
    pub const SUPPORTED: &[u16] = &[
        NULL, ETHERNET, PPP, DLT_RAW_12, DLT_RAW_14, RAW, LOOP, LINUX_SLL, IPV4, IPV6, LINUX_SLL2,
    ];
}

/// EtherType values handled by the link-layer walk.
mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD_9100: u16 = 0x9100;
    pub const QINQ_OLD_9200: u16 = 0x9200;
    pub const PPPOE_SESSION: u16 = 0x8864;
}

/// PPP protocol numbers for IP.
mod ppp {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
}

/// Most VLAN tags followed in one frame; a deeper stack is [`Skip::Malformed`].
pub const VLAN_TAGS_MAX: usize = 4;

/// Most payload bytes hashed into [`Decoded::payload_fp`]. Small on purpose: the two copies of
/// a packet are often captured with different link headers (SLL2 20 bytes, Ethernet 14, a VLAN
/// tag 4 more, PPPoE 8 more), so under one snapshot length they keep different amounts of
/// payload; both still agree on a short prefix. 16 bytes hold a DNS header, a QUIC or TLS
/// record header, and are kept by `tcpdump -s 128` behind IPv4/TCP with full options.
pub const PAYLOAD_FP_BYTES_MAX: usize = 16;

/// TCP header fields that a NAT leaves alone (unless it scrubs sequence numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpInfo {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags byte as on the wire: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20,
    /// ECE 0x40, CWR 0x80.
    pub flags: u8,
}

impl TcpInfo {
    /// FIN flag bit.
    pub const FIN: u8 = 0x01;
    /// SYN flag bit.
    pub const SYN: u8 = 0x02;
    /// RST flag bit.
    pub const RST: u8 = 0x04;
    /// PSH flag bit.
    pub const PSH: u8 = 0x08;
    /// ACK flag bit.
    pub const ACK: u8 = 0x10;
    /// URG flag bit.
    pub const URG: u8 = 0x20;
}

/// What the link layer said about a packet, beyond the IP packet itself: five details, each
/// `None` unless its layer named it, read through [`LinkInfo::vlan`], [`LinkInfo::vlan_outer`],
/// [`LinkInfo::ifindex`], [`LinkInfo::pkttype`] and [`LinkInfo::pppoe_session`].
///
/// Which of them hold a value is one presence bit mask, not five `Option` tags, so clearing a
/// `LinkInfo` ([`LinkInfo::clear`], what the fast decoder does for every packet) is one byte
/// store instead of five (round 13). The value of an absent detail is whatever was there
/// before: it is never returned, compared, hashed or shown (equality, hashing and `Debug` go
/// through the accessors).
#[derive(Clone, Copy, Default)]
pub struct LinkInfo {
    /// `LinkInfo::HAS_*` bits: which fields below hold a value.
    present: u8,
    pkttype: u8,
    vlan: u16,
    vlan_outer: u16,
    pppoe_session: u16,
    ifindex: u32,
}

impl LinkInfo {
    const HAS_VLAN: u8 = 1;
    const HAS_VLAN_OUTER: u8 = 2;
    const HAS_IFINDEX: u8 = 4;
    const HAS_PKTTYPE: u8 = 8;
    const HAS_PPPOE_SESSION: u8 = 16;

    /// The value of the field whose presence bit is `bit`.
    #[inline(always)]
    fn get<T>(&self, bit: u8, value: T) -> Option<T> {
        (self.present & bit != 0).then_some(value)
    }

    /// Innermost 802.1Q VLAN id.
    #[inline]
    pub fn vlan(&self) -> Option<u16> {
        self.get(Self::HAS_VLAN, self.vlan)
    }

    /// Outermost VLAN id, when two or more tags are stacked (QinQ).
    #[inline]
    pub fn vlan_outer(&self) -> Option<u16> {
        self.get(Self::HAS_VLAN_OUTER, self.vlan_outer)
    }

    /// Linux interface index (SLL2 only).
    #[inline]
    pub fn ifindex(&self) -> Option<u32> {
        self.get(Self::HAS_IFINDEX, self.ifindex)
    }

    /// Linux packet type (SLL / SLL2): 0 to us, 1 broadcast, 2 multicast, 3 to another host,
    /// 4 sent by us.
    #[inline]
    pub fn pkttype(&self) -> Option<u8> {
        self.get(Self::HAS_PKTTYPE, self.pkttype)
    }

    /// PPPoE session id.
    #[inline]
    pub fn pppoe_session(&self) -> Option<u16> {
        self.get(Self::HAS_PPPOE_SESSION, self.pppoe_session)
    }

    /// Every detail `None` again (one store).
    #[inline(always)]
    pub fn clear(&mut self) {
        self.present = 0;
    }

    /// One more VLAN tag, met walking inwards: it becomes the innermost ([`LinkInfo::vlan`]),
    /// and the first tag of a stack of two or more stays the outermost
    /// ([`LinkInfo::vlan_outer`]).
    #[inline(always)]
    pub fn push_vlan(&mut self, id: u16) {
        if self.present & (Self::HAS_VLAN | Self::HAS_VLAN_OUTER) == Self::HAS_VLAN {
            self.vlan_outer = self.vlan;
            self.present |= Self::HAS_VLAN_OUTER;
        }
        self.vlan = id;
        self.present |= Self::HAS_VLAN;
    }

    /// Sets [`LinkInfo::ifindex`].
    #[inline(always)]
    pub fn set_ifindex(&mut self, ifindex: u32) {
        self.ifindex = ifindex;
        self.present |= Self::HAS_IFINDEX;
    }

    /// Sets [`LinkInfo::pkttype`].
    #[inline(always)]
    pub fn set_pkttype(&mut self, pkttype: u8) {
        self.pkttype = pkttype;
        self.present |= Self::HAS_PKTTYPE;
    }

    /// Sets [`LinkInfo::pppoe_session`].
    #[inline(always)]
    pub fn set_pppoe_session(&mut self, session: u16) {
        self.pppoe_session = session;
        self.present |= Self::HAS_PPPOE_SESSION;
    }

    /// The five details, as equality, hashing and `Debug` see them.
    #[allow(clippy::type_complexity)]
    fn details(
        &self,
    ) -> (
        Option<u16>,
        Option<u16>,
        Option<u32>,
        Option<u8>,
        Option<u16>,
    ) {
        (
            self.vlan(),
            self.vlan_outer(),
            self.ifindex(),
            self.pkttype(),
            self.pppoe_session(),
        )
    }
}

impl PartialEq for LinkInfo {
    fn eq(&self, other: &Self) -> bool {
        self.details() == other.details()
    }
}

impl Eq for LinkInfo {}

impl std::hash::Hash for LinkInfo {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.details().hash(state);
    }
}

impl fmt::Debug for LinkInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkInfo")
            .field("vlan", &self.vlan())
            .field("vlan_outer", &self.vlan_outer())
            .field("ifindex", &self.ifindex())
            .field("pkttype", &self.pkttype())
            .field("pppoe_session", &self.pppoe_session())
            .finish()
    }
}

/// The fields of one IP packet that NAT correlation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decoded {
    /// Link-layer details.
    pub link: LinkInfo,
    /// Transport protocol.
    pub proto: Proto,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TCP/UDP source port; ICMP echo request: the identifier; echo reply: 0.
    pub sport: u16,
    /// TCP/UDP destination port; ICMP echo reply: the identifier; echo request: 0.
    pub dport: u16,
    /// IPv4 identification; IPv6: the fragment header's identification if an (atomic) fragment
    /// header is present, else 0.
    pub ip_id: u32,
    /// Length from the IP header, in bytes: IPv4 total length, IPv6 payload length + 40
    /// (saturating at 65 535 for the rare IPv6 payload longer than 65 495 bytes).
    pub ip_total_len: u16,
    /// TCP sequence, acknowledgment and flags; `None` for other protocols.
    pub tcp: Option<TcpInfo>,
    /// ICMP / ICMPv6 echo sequence number; 0 for TCP and UDP.
    pub icmp_seq: u16,
    /// Hash ([`payload_fingerprint`], 64 bit) of the first captured transport payload bytes (at most
    /// [`PAYLOAD_FP_BYTES_MAX`], zero-padded; their count is `payload_fp_bytes`). Ports, addresses
    /// and checksums are not included: NAT rewrites them.
    pub payload_fp: u64,
    /// Transport payload length in bytes, from the IP header (not the captured length).
    pub payload_len: u32,
    /// How many payload bytes went into `payload_fp` (less than `min(payload_len,
    /// PAYLOAD_FP_BYTES_MAX)` when the snapshot length cut the packet). Two fingerprints are
    /// comparable only when this is equal.
    pub payload_fp_bytes: u16,
}

/// Why a packet was not decoded. These are normal events on a busy link: count them by
/// [`Skip::reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Skip {
    /// The link layer carries something other than IP (the EtherType or SLL protocol; 802.3
    /// length frames show their length).
    NotIp(u16),
    /// A PPP or PPPoE frame whose PPP protocol is not IPv4 or IPv6 (LCP, IPCP, ...).
    PppNotIp(u16),
    /// A loopback (NULL / LOOP) frame whose address family is not IPv4 or IPv6.
    LoopbackNotIp(u32),
    /// [`decode`] does not know this link type.
    UnsupportedLinkType(u16),
    /// The capture ends before the named header does (snapshot length too small).
    Truncated {
        /// The layer cut short.
        layer: &'static str,
    },
    /// A header that cannot be right.
    Malformed {
        /// The layer at fault.
        layer: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
    /// An IPv4 or IPv6 fragment (offset ≠ 0 or more-fragments set): no transport header to read,
    /// or not all of it.
    Fragment,
    /// A transport protocol natrec does not record (the IP protocol number).
    UnsupportedProto(u8),
    /// ICMP or ICMPv6 other than echo request / reply (the type).
    IcmpNotEcho(u8),
}

impl Skip {
    /// A stable, short name for counting skips in summaries.
    pub const fn reason(&self) -> &'static str {
        match self {
            Skip::NotIp(_) => "not-ip",
            Skip::PppNotIp(_) => "ppp-not-ip",
            Skip::LoopbackNotIp(_) => "loopback-not-ip",
            Skip::UnsupportedLinkType(_) => "unsupported-linktype",
            Skip::Truncated { .. } => "truncated",
            Skip::Malformed { .. } => "malformed",
            Skip::Fragment => "fragment",
            Skip::UnsupportedProto(_) => "unsupported-proto",
            Skip::IcmpNotEcho(_) => "icmp-not-echo",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotIp(t) => write!(f, "not IP (ethertype {t:#06x})"),
            Skip::PppNotIp(p) => write!(f, "PPP protocol {p:#06x} is not IP"),
            Skip::LoopbackNotIp(af) => write!(f, "loopback address family {af} is not IP"),
            Skip::UnsupportedLinkType(l) => write!(f, "link type {l} not supported"),
            Skip::Truncated { layer } => {
                write!(f, "{layer} header cut short by the snapshot length")
            }
            Skip::Malformed { layer, detail } => write!(f, "malformed {layer} header: {detail}"),
            Skip::Fragment => f.write_str("IP fragment"),
            Skip::UnsupportedProto(p) => write!(f, "IP protocol {p} not recorded"),
            Skip::IcmpNotEcho(t) => write!(f, "ICMP type {t} is not an echo request or reply"),
        }
    }
}

impl std::error::Error for Skip {}

/// Whether [`decode`] reads packets of `linktype` at all (it never returns
/// [`Skip::UnsupportedLinkType`] for these), so a reader can stop a file of
/// another link type without decoding its packets.
pub const fn linktype_supported(linktype: u16) -> bool {
    matches!(
        linktype,
        linktype::ETHERNET
            | linktype::LINUX_SLL
            | linktype::LINUX_SLL2
            | linktype::RAW
            | linktype::DLT_RAW_12
            | linktype::DLT_RAW_14
            | linktype::IPV4
            | linktype::IPV6
            | linktype::NULL
            | linktype::LOOP
            | linktype::PPP
    )
}

/// Decodes one packet captured on a link of type `linktype` (a `LINKTYPE_*` value, see
/// [`linktype`]). Never panics, whatever the bytes.
pub fn decode(linktype: u16, data: &[u8]) -> Result<Decoded, Skip> {
    let mut link = LinkInfo::default();
    let ip = match linktype {
        linktype::ETHERNET => {
            let frame = EthernetFrame::new_checked(data)?;
            ethertype_walk(frame.ethertype(), frame.payload(), &mut link)?
        }
        linktype::LINUX_SLL => {
            let sll = LinuxSll::new_checked(data)?;
            let pkttype = u8::try_from(sll.pkttype()).map_err(|_| Skip::Malformed {
                layer: "linux-sll",
                detail: "packet type above 255",
            })?;
            link.set_pkttype(pkttype);
            ethertype_walk(sll.protocol(), sll.payload(), &mut link)?
        }
        linktype::LINUX_SLL2 => {
            let sll = LinuxSll2::new_checked(data)?;
            link.set_pkttype(sll.pkttype());
            link.set_ifindex(sll.ifindex());
            ethertype_walk(sll.protocol(), sll.payload(), &mut link)?
        }
        linktype::RAW | linktype::DLT_RAW_12 | linktype::DLT_RAW_14 => Ip::Any(data),
        linktype::IPV4 => Ip::V4(data),
        linktype::IPV6 => Ip::V6(data),
        linktype::NULL | linktype::LOOP => loopback(linktype, data)?,
        linktype::PPP => {
            let rest = match data {
                [0xff, 0x03, rest @ ..] => rest,
                // The first byte of the HDLC-like framing only.
                [0xff] => return Err(Skip::Truncated { layer: "ppp" }),
                _ => data,
            };
            ppp_walk(rest)?
        }
        other => return Err(Skip::UnsupportedLinkType(other)),
    };
    let mut d = match ip {
        Ip::V4(b) => ipv4(b)?,
        Ip::V6(b) => ipv6(b)?,
        Ip::Any(b) => match b.first().map(|v| v >> 4) {
            None => return Err(Skip::Truncated { layer: "ip" }),
            Some(4) => ipv4(b)?,
            Some(6) => ipv6(b)?,
            Some(_) => {
                return Err(Skip::Malformed {
                    layer: "ip",
                    detail: "version is neither 4 nor 6",
                })
            }
        },
    };
    d.link = link;
    Ok(d)
}

/// The IP packet found under the link layer.
enum Ip<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
    /// Version from the first nibble.
    Any(&'a [u8]),
}

/// Follows VLAN tags and PPPoE from an EtherType down to IP.
fn ethertype_walk<'a>(
    mut ether_type: u16,
    mut payload: &'a [u8],
    link: &mut LinkInfo,
) -> Result<Ip<'a>, Skip> {
    let mut tags = 0;
    loop {
        match ether_type {
            ethertype::VLAN
            | ethertype::QINQ
            | ethertype::QINQ_OLD_9100
            | ethertype::QINQ_OLD_9200 => {
                if tags == VLAN_TAGS_MAX {
                    return Err(Skip::Malformed {
                        layer: "vlan",
                        detail: "more than 4 stacked VLAN tags",
                    });
                }
                tags += 1;
                let tag = VlanTag::new_checked(payload)?;
                link.push_vlan(tag.vlan_id());
                ether_type = tag.ethertype();
                payload = tag.into_payload();
            }
            ethertype::PPPOE_SESSION => {
                let session = PppoeSession::new_checked(payload)?;
                link.set_pppoe_session(session.session_id());
                return ppp_walk(session.into_payload());
            }
            ethertype::IPV4 => return Ok(Ip::V4(payload)),
            ethertype::IPV6 => return Ok(Ip::V6(payload)),
            // PPPoE discovery (0x8863), ARP, LLDP, 802.3 length fields, ...
            other => return Err(Skip::NotIp(other)),
        }
    }
}

/// Reads a PPP protocol field (2 bytes, or 1 when protocol-field compression is on) and
/// continues to IP.
fn ppp_walk(data: &[u8]) -> Result<Ip<'_>, Skip> {
    let (protocol, rest) = match data {
        [] => return Err(Skip::Truncated { layer: "ppp" }),
        // An odd first byte is a compressed one-byte protocol field (RFC 1661 §6.5).
        [p, rest @ ..] if p & 1 == 1 => (u16::from(*p), rest),
        [hi, lo, rest @ ..] => (u16::from_be_bytes([*hi, *lo]), rest),
        [_] => return Err(Skip::Truncated { layer: "ppp" }),
    };
    match protocol {
        ppp::IPV4 => Ok(Ip::V4(rest)),
        ppp::IPV6 => Ok(Ip::V6(rest)),
        other => Err(Skip::PppNotIp(other)),
    }
}

/// BSD loopback: a 4-byte address family, host byte order for NULL, big-endian for LOOP.
fn loopback(linktype: u16, data: &[u8]) -> Result<Ip<'_>, Skip> {
    let Some((family, rest)) = data.split_first_chunk::<4>() else {
        return Err(Skip::Truncated { layer: "loopback" });
    };
    let be = u32::from_be_bytes(*family);
    let family = if linktype == linktype::LOOP {
        be
    } else {
        // Written in the capturing host's order: families are small, so the reading that gives
        // a small number is the right one.
        let le = u32::from_le_bytes(*family);
        if le <= 0xff {
            le
        } else {
            be
        }
    };
    match family {
        2 => Ok(Ip::V4(rest)),
        // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS.
        10 | 24 | 28 | 30 => Ok(Ip::V6(rest)),
        other => Err(Skip::LoopbackNotIp(other)),
    }
}

/// IP-layer facts handed to the transport decoder.
struct IpFacts {
    src: IpAddr,
    dst: IpAddr,
    ip_id: u32,
    ip_total_len: u16,
}

fn ipv4(data: &[u8]) -> Result<Decoded, Skip> {
    const LAYER: &str = "ipv4";
    match data.first() {
        None => return Err(Skip::Truncated { layer: LAYER }),
        Some(v) if v >> 4 != 4 => {
            return Err(Skip::Malformed {
                layer: LAYER,
                detail: "version is not 4",
            })
        }
        Some(_) => {}
    }
    let (ip, auth_err) = LaxIpv4Slice::from_slice(data).map_err(|e| match e {
        err::ipv4::HeaderSliceError::Len(_) => Skip::Truncated { layer: LAYER },
        err::ipv4::HeaderSliceError::Content(_) => Skip::Malformed {
            layer: LAYER,
            detail: "header length below 20 bytes",
        },
    })?;
    let header = ip.header();
    let header_len = header.slice().len();
    let total_len = header.total_len();
    if usize::from(total_len) < header_len {
        return Err(Skip::Malformed {
            layer: LAYER,
            detail: "total length shorter than the header",
        });
    }
    if ip.is_payload_fragmented() {
        return Err(Skip::Fragment);
    }
    let payload = ip.payload();
    let ext_len = match auth_err {
        Some(err::ip_auth::HeaderSliceError::Len(_)) => {
            return Err(cut_or_malformed(
                payload.payload.len() + header_len < usize::from(total_len),
                "ip-auth",
            ))
        }
        Some(err::ip_auth::HeaderSliceError::Content(_)) => {
            return Err(Skip::Malformed {
                layer: "ip-auth",
                detail: "payload length field is zero",
            })
        }
        None => ip.extensions().auth.map_or(0, |a| a.slice().len()),
    };
    let l4_len = usize::from(total_len)
        .checked_sub(header_len + ext_len)
        .ok_or(Skip::Malformed {
            layer: LAYER,
            detail: "total length shorter than the headers",
        })?;
    transport(
        payload.ip_number,
        payload.payload,
        l4_len,
        false,
        IpFacts {
            src: IpAddr::V4(header.source_addr()),
            dst: IpAddr::V4(header.destination_addr()),
            ip_id: u32::from(header.identification()),
            ip_total_len: total_len,
        },
    )
}

/// A header that does not fit: cut by the snapshot length if the capture holds less than the IP
/// header announced, else malformed (the header claims more than the IP packet holds).
fn cut_or_malformed(cut: bool, layer: &'static str) -> Skip {
    if cut {
        Skip::Truncated { layer }
    } else {
        Skip::Malformed {
            layer,
            detail: "header longer than the IP packet",
        }
    }
}

/// Size of the fixed IPv6 header, in bytes.
const IPV6_HEADER_BYTES: usize = 40;

fn ipv6(data: &[u8]) -> Result<Decoded, Skip> {
    const LAYER: &str = "ipv6";
    match data.first() {
        None => return Err(Skip::Truncated { layer: LAYER }),
        Some(v) if v >> 4 != 6 => {
            return Err(Skip::Malformed {
                layer: LAYER,
                detail: "version is not 6",
            })
        }
        Some(_) => {}
    }
    let (ip, ext_err) = LaxIpv6Slice::from_slice(data).map_err(|e| match e {
        err::ipv6::HeaderSliceError::Len(_) => Skip::Truncated { layer: LAYER },
        err::ipv6::HeaderSliceError::Content(_) => Skip::Malformed {
            layer: LAYER,
            detail: "version is not 6",
        },
    })?;
    let header = ip.header();
    let payload_length = usize::from(header.payload_length());
    if payload_length == 0 {
        // Jumbograms (RFC 2675) and empty packets: nothing natrec can use.
        return Err(Skip::Malformed {
            layer: LAYER,
            detail: "payload length 0 (jumbogram or empty packet)",
        });
    }
    let captured_payload = data.len() - IPV6_HEADER_BYTES;
    let cut = captured_payload < payload_length;
    match ext_err {
        Some((err::ipv6_exts::HeaderSliceError::Len(_), _)) => {
            return Err(cut_or_malformed(cut, "ipv6-extension"))
        }
        Some((err::ipv6_exts::HeaderSliceError::Content(_), _)) => {
            return Err(Skip::Malformed {
                layer: "ipv6-extension",
                detail: "hop-by-hop header not first, or authentication header length zero",
            })
        }
        None => {}
    }
    if ip.is_payload_fragmented() {
        return Err(Skip::Fragment);
    }
    let exts = ip.extensions();
    let ip_id = exts
        .clone()
        .into_iter()
        .find_map(|e| match e {
            etherparse::Ipv6ExtensionSlice::Fragment(f) => Some(f.identification()),
            _ => None,
        })
        .unwrap_or(0);
    let l4_len = payload_length
        .checked_sub(exts.slice().len())
        .ok_or(Skip::Malformed {
            layer: LAYER,
            detail: "payload length shorter than the extension headers",
        })?;
    let payload = ip.payload();
    transport(
        payload.ip_number,
        payload.payload,
        l4_len,
        true,
        IpFacts {
            src: IpAddr::V6(header.source_addr()),
            dst: IpAddr::V6(header.destination_addr()),
            ip_id,
            ip_total_len: u16::try_from(payload_length + IPV6_HEADER_BYTES).unwrap_or(u16::MAX),
        },
    )
}

/// Size of the ICMP / ICMPv6 echo header, in bytes.
const ICMP_ECHO_HEADER_BYTES: usize = 8;

/// Decodes the transport header in `l4` (captured bytes, at most `l4_len`, the length the IP
/// header announces) and fingerprints the payload.
fn transport(
    ip_number: IpNumber,
    l4: &[u8],
    l4_len: usize,
    v6: bool,
    ip: IpFacts,
) -> Result<Decoded, Skip> {
    // etherparse bounds the payload by the IP length; keep that true even if it stopped doing so.
    debug_assert!(
        l4.len() <= l4_len,
        "etherparse bounds the payload by the IP length"
    );
    let l4 = &l4[..l4.len().min(l4_len)];
    let cut = l4.len() < l4_len;
    let (proto, sport, dport, tcp, icmp_seq, header_len) = match ip_number {
        IpNumber::TCP => {
            let h = TcpHeaderSlice::from_slice(l4).map_err(|e| match e {
                err::tcp::HeaderSliceError::Len(_) => cut_or_malformed(cut, "tcp"),
                err::tcp::HeaderSliceError::Content(_) => Skip::Malformed {
                    layer: "tcp",
                    detail: "data offset below 5",
                },
            })?;
            let raw = h.slice();
            let info = TcpInfo {
                seq: h.sequence_number(),
                ack: h.acknowledgment_number(),
                flags: raw[13],
            };
            (
                Proto::Tcp,
                h.source_port(),
                h.destination_port(),
                Some(info),
                0,
                raw.len(),
            )
        }
        IpNumber::UDP => {
            let h = UdpHeaderSlice::from_slice(l4).map_err(|_| cut_or_malformed(cut, "udp"))?;
            (
                Proto::Udp,
                h.source_port(),
                h.destination_port(),
                None,
                0,
                h.slice().len(),
            )
        }
        IpNumber::ICMP | IpNumber::IPV6_ICMP => {
            let (proto, layer, request, reply) = match (ip_number, v6) {
                (IpNumber::ICMP, false) => (Proto::Icmp, "icmp", 8, 0),
                (IpNumber::IPV6_ICMP, true) => (Proto::Icmpv6, "icmpv6", 128, 129),
                // ICMPv4 inside IPv6 or ICMPv6 inside IPv4: not a thing natrec records.
                _ => return Err(Skip::UnsupportedProto(ip_number.0)),
            };
            let Some(h) = l4.first_chunk::<ICMP_ECHO_HEADER_BYTES>() else {
                return Err(cut_or_malformed(cut, layer));
            };
            let id = u16::from_be_bytes([h[4], h[5]]);
            let seq = u16::from_be_bytes([h[6], h[7]]);
            let (sport, dport) = match h[0] {
                t if t == request => (id, 0),
                t if t == reply => (0, id),
                other => return Err(Skip::IcmpNotEcho(other)),
            };
            (proto, sport, dport, None, seq, ICMP_ECHO_HEADER_BYTES)
        }
        other => return Err(Skip::UnsupportedProto(other.0)),
    };
    let payload_len = l4_len.checked_sub(header_len).ok_or(Skip::Malformed {
        layer: "transport",
        detail: "header longer than the IP packet",
    })?;
    // header_len <= l4.len() (the header parsed from l4), so this slice is in bounds.
    let captured = &l4[header_len..];
    let hashed = &captured[..captured.len().min(PAYLOAD_FP_BYTES_MAX)];
    let payload_len = u32::try_from(payload_len).expect("IP lengths are at most 16 bits");
    Ok(Decoded {
        link: LinkInfo::default(),
        proto,
        src: ip.src,
        dst: ip.dst,
        sport,
        dport,
        ip_id: ip.ip_id,
        ip_total_len: ip.ip_total_len,
        tcp,
        icmp_seq,
        payload_fp: payload_fingerprint(hashed),
        payload_len,
        payload_fp_bytes: u16::try_from(hashed.len()).expect("bounded by PAYLOAD_FP_BYTES_MAX"),
    })
}

/// Multiplies two words to 128 bits and folds the halves together (the mixing step of
/// wyhash/rapidhash): every input bit reaches every output bit in one multiplication. For a
/// fixed nonzero `b` the 128-bit product is injective in `a`; the fold to 64 bits is what can
/// collide. Also the step of the correlator's invariants and key hashes.
#[inline(always)]
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ (p >> 64) as u64
}

/// Constants of [`payload_fingerprint`]'s multiplication (wyhash's third and fourth secrets:
/// odd, half their bits set), xor-ed into the two words so that no payload a capture is likely
/// to hold (zeros, text) makes a factor 0.
const FP_MIX: [u64; 2] = [0x8ebc_6af0_9c88_c6e3, 0x5899_65cc_7537_4cc3];

/// Hash of the first [`PAYLOAD_FP_BYTES_MAX`] (16) bytes of `bytes` (all of them if fewer):
/// the two little-endian words they make, zero-padded, in one [`fold_mul`]. No allocation,
/// stable across runs and platforms. The count of bytes and the payload length are not in it:
/// the invariants hash covers them beside it ([`Decoded::payload_fp_bytes`],
/// [`Decoded::payload_len`]), so two fingerprints are comparable only with those equal. Two
/// different 16-byte inputs collide only if the folds of two different 128-bit products agree,
/// a chance taken as 2^-64 (the argument in ARCHITECTURE.md, "Decisions").
pub fn payload_fingerprint(bytes: &[u8]) -> u64 {
    let n = bytes.len().min(PAYLOAD_FP_BYTES_MAX);
    let mut w = [0u8; PAYLOAD_FP_BYTES_MAX];
    w[..n].copy_from_slice(&bytes[..n]);
    let (lo, hi) = w.split_at(8);
    fp_words(
        u64::from_le_bytes(lo.try_into().expect("8 bytes")),
        u64::from_le_bytes(hi.try_into().expect("8 bytes")),
    )
}

/// [`payload_fingerprint`] of the payload whose first two words (zero-padded) are `w0`, `w1`.
#[inline(always)]
fn fp_words(w0: u64, w1: u64) -> u64 {
    fold_mul(w0 ^ FP_MIX[0], w1 ^ FP_MIX[1])
}

/// 1 to 7 bytes (8 are allowed too) as a little-endian word, zero-padded: two overlapping
/// loads instead of a copy into a buffer (the overlap holds the same bytes in the same
/// places, so or-ing them is exact).
#[inline(always)]
fn fp_partial_word(b: &[u8]) -> u64 {
    let k = b.len();
    debug_assert!((1..=8).contains(&k));
    if let (Some(lo), Some(hi)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << ((k - 4) * 8)
    } else {
        u64::from(b[0]) | u64::from(b[k / 2]) << (k / 2 * 8) | u64::from(b[k - 1]) << ((k - 1) * 8)
    }
}
