//! The common case of [`super::decode`] read straight from the bytes: Ethernet (with VLAN
//! tags and a PPPoE session), Linux SLL / SLL2 or raw IP, then IPv4 without fragmentation or an
//! authentication header, or IPv6 without extension headers, then TCP, UDP or ICMP / ICMPv6
//! echo, all headers complete.
//!
//! [`fast`] answers `None` for anything else, including every packet `decode` would skip:
//! the caller then runs `decode` itself. When it answers `Some`, the fields are exactly those
//! `decode` returns for the same bytes (the tests in `correlate` compare the two on generated,
//! mutated and random packets). It never returns a [`super::Skip`]: the rare and the broken go
//! the slow way.
//!
//! Headers are read as fixed-size arrays (`first_chunk`), so each header costs one length
//! check and its fields none.

use super::{ethertype, linktype, ppp, LinkInfo, PAYLOAD_FP_BYTES_MAX, VLAN_TAGS_MAX};
use natrec_storage::Proto;

/// The addresses of a [`Fast`] packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FastAddrs {
    /// IPv4 source and destination.
    V4 { src: u32, dst: u32 },
    /// IPv6 source and destination as [`std::net::Ipv6Addr::to_bits`] gives them.
    V6 { src: u128, dst: u128 },
}

/// The fields of an IP packet as the correlator's preparer needs them (the link details apart,
/// which [`fast`] writes where its caller says): addresses as integers, and the header fields
/// that [`super::Decoded`] holds one by one already packed as the invariants hash's words
/// (`correlate::invariant_words` gives their layout), each built where its fields are known —
/// the TCP ones in TCP's arm, `icmp_seq` in ICMP's — so that fewer values cross the joins of
/// the protocols' and the families' paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fast {
    pub addrs: FastAddrs,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
    /// `ip_id | ip_total_len << 32 | icmp_seq << 48`.
    pub w0: u64,
    /// TCP: `seq | ack << 32`; else 0.
    pub seq_ack: u64,
    /// `payload_len | payload_fp_bytes << 32 | tcp << 48`, `tcp` being TCP's `flags | 0x100`
    /// (0 for the other protocols).
    pub w2: u64,
    pub payload_fp: u64,
}

impl Fast {
    /// TCP's flags; 0 for the other protocols (bits 48–55 of `w2`).
    #[inline(always)]
    pub fn tcp_flags(&self) -> u8 {
        (self.w2 >> W2_TCP_SHIFT) as u8
    }
}

/// Where [`Fast::w2`] holds TCP's flags (and above them the presence bit `0x100`).
const W2_TCP_SHIFT: u32 = 48;
/// Where [`Fast::w0`] holds the ICMP echo sequence number.
const W0_ICMP_SEQ_SHIFT: u32 = 48;

/// Which IP version the link layer announced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    V4,
    V6,
    /// Raw IP link types: the version nibble decides.
    Any,
}

/// `decode(linktype, data)` for the common cases, or `None` (then ask `decode`). The link
/// details are written into `link` (all of it: it need not be cleared first); on `None`, `link`
/// is meaningless.
#[inline]
pub(crate) fn fast(lt: u16, data: &[u8], link: &mut LinkInfo) -> Option<Fast> {
    link.clear();
    // Ethernet first: the common link type costs one compare.
    let (want, ip) = if lt == linktype::ETHERNET {
        // The common frame, IPv4 with a 20-byte header right after the Ethernet header, on
        // one length check of both headers and one compare of the EtherType with the
        // version/header-length byte; anything else takes the walk below.
        if let Some(h) = data.first_chunk::<{ ETHERNET_HEADER_BYTES + IPV4_HEADER_BYTES }>() {
            if u32::from_le_bytes([h[12], h[13], h[14], 0]) == ETHERNET_IPV4_PLAIN {
                return ipv4_body(
                    h[ETHERNET_HEADER_BYTES..].first_chunk()?,
                    &data[ETHERNET_HEADER_BYTES..],
                    IPV4_HEADER_BYTES,
                );
            }
        }
        let h = data.first_chunk::<ETHERNET_HEADER_BYTES>()?;
        ether(
            u16::from_be_bytes([h[12], h[13]]),
            &data[ETHERNET_HEADER_BYTES..],
            link,
        )?
    } else {
        other_link(lt, data, link)?
    };
    // The version nibble must match what the link layer announced; `ipv4` and `ipv6` test it
    // with their headers' other fields (the common case: no separate first-byte read).
    let v4 = match want {
        Want::V4 => true,
        Want::V6 => false,
        Want::Any => match ip.first()? >> 4 {
            4 => true,
            6 => false,
            _ => return None,
        },
    };
    if v4 {
        ipv4(ip)
    } else {
        ipv6(ip)
    }
}

/// Size of the Ethernet header, in bytes.
const ETHERNET_HEADER_BYTES: usize = 14;
/// Size of an IPv4 header without options, in bytes.
const IPV4_HEADER_BYTES: usize = 20;
/// Bytes 12 to 14 of an Ethernet frame carrying IPv4 with a 20-byte header (EtherType 0x0800,
/// version 4, header length 5 words), as a little-endian word with its top byte 0.
const ETHERNET_IPV4_PLAIN: u32 = u32::from_le_bytes([0x08, 0x00, 0x45, 0]);

/// The link layers other than Ethernet.
#[inline]
fn other_link<'a>(lt: u16, data: &'a [u8], link: &mut LinkInfo) -> Option<(Want, &'a [u8])> {
    Some(match lt {
        linktype::LINUX_SLL => {
            let h = data.first_chunk::<16>()?;
            // decode refuses a packet type above 255: leave that to it.
            if h[0] != 0 {
                return None;
            }
            link.set_pkttype(h[1]);
            ether(u16::from_be_bytes([h[14], h[15]]), &data[16..], link)?
        }
        linktype::LINUX_SLL2 => {
            let h = data.first_chunk::<20>()?;
            link.set_pkttype(h[10]);
            link.set_ifindex(u32::from_be_bytes([h[4], h[5], h[6], h[7]]));
            ether(u16::from_be_bytes([h[0], h[1]]), &data[20..], link)?
        }
        linktype::RAW | linktype::DLT_RAW_12 | linktype::DLT_RAW_14 => (Want::Any, data),
        linktype::IPV4 => (Want::V4, data),
        linktype::IPV6 => (Want::V6, data),
        _ => return None,
    })
}

/// Follows VLAN tags and a PPPoE session to IPv4 or IPv6; `None` for anything else (not IP,
/// cut tags, PPP control protocols, a malformed PPPoE header). IPv4 right after the link
/// header, the most common case, is decided here without the walk.
#[inline(always)]
fn ether<'a>(ether_type: u16, payload: &'a [u8], link: &mut LinkInfo) -> Option<(Want, &'a [u8])> {
    if ether_type == ethertype::IPV4 {
        Some((Want::V4, payload))
    } else {
        ether_walk(ether_type, payload, link)
    }
}

/// [`ether`] beyond its first test.
#[inline(never)]
fn ether_walk<'a>(
    mut ether_type: u16,
    mut payload: &'a [u8],
    link: &mut LinkInfo,
) -> Option<(Want, &'a [u8])> {
    let mut tags = 0;
    loop {
        match ether_type {
            ethertype::IPV4 => return Some((Want::V4, payload)),
            ethertype::IPV6 => return Some((Want::V6, payload)),
            ethertype::VLAN
            | ethertype::QINQ
            | ethertype::QINQ_OLD_9100
            | ethertype::QINQ_OLD_9200 => {
                if tags == VLAN_TAGS_MAX {
                    return None;
                }
                tags += 1;
                let t = payload.first_chunk::<4>()?;
                ether_type = u16::from_be_bytes([t[2], t[3]]);
                link.push_vlan(u16::from_be_bytes([t[0], t[1]]) & 0x0fff);
                payload = &payload[4..];
            }
            ethertype::PPPOE_SESSION => return pppoe(payload, link),
            _ => return None,
        }
    }
}

/// A PPPoE session header (version/type 1/1, code 0), then a PPP protocol field (two bytes, or
/// one when compressed) naming IPv4 or IPv6. The IP packet is bounded by the PPPoE length.
#[inline]
fn pppoe<'a>(data: &'a [u8], link: &mut LinkInfo) -> Option<(Want, &'a [u8])> {
    let h = data.first_chunk::<6>()?;
    if h[0] != 0x11 || h[1] != 0 {
        return None;
    }
    link.set_pppoe_session(u16::from_be_bytes([h[2], h[3]]));
    let rest = &data[6..];
    let len = usize::from(u16::from_be_bytes([h[4], h[5]])).min(rest.len());
    let session = &rest[..len];
    let (protocol, ip) = match *session {
        // An odd first byte is a compressed one-byte protocol field.
        [p, ref ip @ ..] if p & 1 == 1 => (u16::from(p), ip),
        [hi, lo, ref ip @ ..] => (u16::from_be_bytes([hi, lo]), ip),
        _ => return None,
    };
    match protocol {
        ppp::IPV4 => Some((Want::V4, ip)),
        ppp::IPV6 => Some((Want::V6, ip)),
        _ => None,
    }
}

/// IPv4 and the transport header; `None` where `decode` skips or takes a rarer path.
#[inline]
fn ipv4(data: &[u8]) -> Option<Fast> {
    let h = data.first_chunk::<IPV4_HEADER_BYTES>()?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_BYTES {
        return None;
    }
    ipv4_body(h, data, header_len)
}

/// [`ipv4`] after the version and header length tests: `h` is the first 20 bytes of `data`,
/// `header_len` (at least 20) the header's length (a constant where the caller knows it).
#[inline(always)]
fn ipv4_body(h: &[u8; IPV4_HEADER_BYTES], data: &[u8], header_len: usize) -> Option<Fast> {
    let total_len = u16::from_be_bytes([h[2], h[3]]);
    // The captured IP packet, at most what the header announces; the header must fit in both
    // (one compare for the two: `data.len() < header_len || total_len < header_len`).
    let end = data.len().min(usize::from(total_len));
    if end < header_len {
        return None;
    }
    // More fragments, or a fragment offset.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let l4_len = usize::from(total_len) - header_len;
    let l4 = &data[header_len..end];
    // One dispatch on the protocol: `transport` inlined with it constant in each arm, TCP
    // tested first (the commonest), then UDP.
    let (proto, t) = if h[9] == 6 {
        (Proto::Tcp, transport(Proto::Tcp, l4, l4_len)?)
    } else if h[9] == 17 {
        (Proto::Udp, transport(Proto::Udp, l4, l4_len)?)
    } else if h[9] == 1 {
        rarer();
        (Proto::Icmp, transport(Proto::Icmp, l4, l4_len)?)
    } else {
        return None;
    };
    Some(Fast {
        addrs: FastAddrs::V4 {
            src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        },
        proto,
        sport: t.sport,
        dport: t.dport,
        w0: u64::from(u16::from_be_bytes([h[4], h[5]])) | u64::from(total_len) << 32 | t.w0_icmp,
        seq_ack: t.seq_ack,
        w2: t.w2,
        payload_fp: t.payload_fp,
    })
}

/// Marks the path that calls it as the rarer one (a branch weight for the compiler, which
/// then tests the commoner cases first); does nothing.
#[cold]
fn rarer() {}

/// Size of the fixed IPv6 header, in bytes.
const IPV6_HEADER_BYTES: usize = 40;

/// IPv6 without extension headers (the next header is TCP, UDP or ICMPv6) and the transport
/// header; `None` for anything else, and for a payload length of 0 (a jumbogram, which
/// `decode` skips).
#[inline]
fn ipv6(data: &[u8]) -> Option<Fast> {
    let h = data.first_chunk::<IPV6_HEADER_BYTES>()?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let payload_length = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let proto = match h[6] {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        58 => Proto::Icmpv6,
        _ => return None,
    };
    if payload_length == 0 {
        return None;
    }
    // The captured payload, at most what the header announces.
    let rest = &data[IPV6_HEADER_BYTES..];
    let l4 = &rest[..rest.len().min(payload_length)];
    // One `transport` for the three protocols here (dispatching as `ipv4` does made the
    // IPv4 path's code 5 instructions longer: the two families share the tail).
    let t = transport(proto, l4, payload_length)?;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        u128::from_be_bytes(a)
    };
    Some(Fast {
        addrs: FastAddrs::V6 {
            src: addr(8),
            dst: addr(24),
        },
        proto,
        sport: t.sport,
        dport: t.dport,
        // An IP id of 0; the total length at most 65 535 + 40: saturates as decode does.
        w0: u64::from(u16::try_from(payload_length + IPV6_HEADER_BYTES).unwrap_or(u16::MAX)) << 32
            | t.w0_icmp,
        seq_ack: t.seq_ack,
        w2: t.w2,
        payload_fp: t.payload_fp,
    })
}

/// What the transport header and payload give: the ports, and their parts of the invariants
/// hash's words ([`Fast`]).
struct Transport {
    sport: u16,
    dport: u16,
    /// `icmp_seq << 48` (0 but for ICMP), to be or-ed into [`Fast::w0`].
    w0_icmp: u64,
    seq_ack: u64,
    w2: u64,
    payload_fp: u64,
}

/// Size of a TCP header without options, in bytes.
const TCP_HEADER_BYTES: usize = 20;

/// Size of the ICMP / ICMPv6 echo header, in bytes.
const ICMP_ECHO_HEADER_BYTES: usize = 8;

/// The transport header in `l4` (captured bytes, at most `l4_len`, the length the IP header
/// announces, which is at most 16 bits), and the payload's fingerprint.
#[inline(always)]
fn transport(proto: Proto, l4: &[u8], l4_len: usize) -> Option<Transport> {
    // Each arm gives the header's length and the captured payload after it.
    let (sport, dport, w0_icmp, seq_ack, w2_tcp, header_len, payload) = match proto {
        Proto::Tcp => {
            let (t, rest) = l4.split_first_chunk::<TCP_HEADER_BYTES>()?;
            // No options (the common case): the header is the 20 bytes just checked.
            let (len, payload) = if t[12] & 0xf0 == 0x50 {
                (TCP_HEADER_BYTES, rest)
            } else {
                let len = usize::from(t[12] >> 4) * 4;
                if len < TCP_HEADER_BYTES || l4.len() < len {
                    return None;
                }
                (len, &l4[len..])
            };
            let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
            let ports = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
            (
                (ports >> 16) as u16,
                ports as u16,
                0,
                u64::from(seq) | u64::from(ack) << 32,
                (u64::from(t[13]) | 0x100) << W2_TCP_SHIFT,
                len,
                payload,
            )
        }
        Proto::Udp => {
            let (u, payload) = l4.split_first_chunk::<8>()?;
            let ports = u32::from_be_bytes([u[0], u[1], u[2], u[3]]);
            ((ports >> 16) as u16, ports as u16, 0, 0, 0, 8, payload)
        }
        Proto::Icmp | Proto::Icmpv6 => {
            let (c, payload) = l4.split_first_chunk::<ICMP_ECHO_HEADER_BYTES>()?;
            let id = u16::from_be_bytes([c[4], c[5]]);
            let seq = u16::from_be_bytes([c[6], c[7]]);
            let (request, reply) = if proto == Proto::Icmp {
                (8, 0)
            } else {
                (128, 129)
            };
            let (sport, dport) = match c[0] {
                t if t == request => (id, 0),
                t if t == reply => (0, id),
                _ => return None,
            };
            (
                sport,
                dport,
                u64::from(seq) << W0_ICMP_SEQ_SHIFT,
                0,
                0,
                ICMP_ECHO_HEADER_BYTES,
                payload,
            )
        }
    };
    // header_len <= l4.len() <= l4_len: no underflow; at most 16 bits.
    let payload_len = (l4_len - header_len) as u32;
    let (payload_fp, payload_fp_bytes) = fingerprint_prefix(payload);
    Some(Transport {
        sport,
        dport,
        w0_icmp,
        seq_ack,
        w2: u64::from(payload_len) | u64::from(payload_fp_bytes) << 32 | w2_tcp,
        payload_fp,
    })
}

/// [`super::payload_fingerprint`] of the first [`PAYLOAD_FP_BYTES_MAX`] bytes of `captured`
/// (all of them if fewer), and how many that is: the same value, its two words read in
/// straight-line code.
#[inline(always)]
fn fingerprint_prefix(captured: &[u8]) -> (u64, u16) {
    const _: () = assert!(PAYLOAD_FP_BYTES_MAX == 16);
    let n = captured.len().min(PAYLOAD_FP_BYTES_MAX);
    let (w0, w1) = if let Some(w) = captured.first_chunk::<16>() {
        let (a, b) = w.split_at(8);
        (
            u64::from_le_bytes(a.try_into().expect("8 bytes")),
            u64::from_le_bytes(b.try_into().expect("8 bytes")),
        )
    } else if let Some((a, rest)) = captured.split_first_chunk::<8>() {
        let b = if rest.is_empty() {
            0
        } else {
            super::fp_partial_word(rest)
        };
        (u64::from_le_bytes(*a), b)
    } else if !captured.is_empty() {
        (super::fp_partial_word(captured), 0)
    } else {
        (0, 0)
    };
    (super::fp_words(w0, w1), n as u16)
}
