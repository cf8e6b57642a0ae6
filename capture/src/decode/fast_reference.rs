//! Tests only: the fast path as it was at the end of round 11 (main 353e361), kept word for
//! word (but [`FastAddrs`], shared with [`super::fast`]; its result type is round 11's `Fast`,
//! which [`Fast::words`] turns into the new one) so that property tests can check that the
//! rewritten [`super::fast::fast`] takes exactly the packets this one took and gives the same
//! fields for each (`correlate/fast_tests.rs`). Not used outside tests. Since round 13 it
//! writes the link details through [`LinkInfo`]'s methods (`clear`, `push_vlan`, the setters:
//! the same details as the five `Option` fields it wrote, proptest
//! `link_info_bits_are_the_five_options`).

use super::fast::FastAddrs;
use super::{ethertype, linktype, ppp, LinkInfo, TcpInfo, PAYLOAD_FP_BYTES_MAX, VLAN_TAGS_MAX};
use natrec_storage::Proto;

/// The fields of an IP packet as [`super::Decoded`] holds them (round 11's `fast::Fast`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fast {
    pub addrs: FastAddrs,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
    pub ip_id: u32,
    pub ip_total_len: u16,
    pub tcp: Option<TcpInfo>,
    pub icmp_seq: u16,
    pub payload_fp: u64,
    pub payload_len: u32,
    pub payload_fp_bytes: u16,
}

impl Fast {
    /// The [`super::fast::Fast`] of these fields: the invariants hash's words built by
    /// `correlate`'s own function for them.
    pub(crate) fn words(&self) -> super::fast::Fast {
        let [w0, seq_ack, w2] = crate::correlate::invariant_words(
            self.ip_id,
            self.ip_total_len,
            self.icmp_seq,
            self.tcp,
            self.payload_len,
            self.payload_fp_bytes,
        );
        super::fast::Fast {
            addrs: self.addrs,
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
            w0,
            seq_ack,
            w2,
            payload_fp: self.payload_fp,
        }
    }
}

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
        let h = data.first_chunk::<14>()?;
        ether(u16::from_be_bytes([h[12], h[13]]), &data[14..], link)?
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
    let h = data.first_chunk::<20>()?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = u16::from_be_bytes([h[2], h[3]]);
    // The captured IP packet, at most what the header announces; the header must fit in both
    // (one compare for the two: `data.len() < header_len || total_len < header_len`).
    let end = data.len().min(usize::from(total_len));
    if header_len < 20 || end < header_len {
        return None;
    }
    // More fragments, or a fragment offset.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let l4_len = usize::from(total_len) - header_len;
    let l4 = &data[header_len..end];
    // One dispatch on the protocol: `transport` inlined with it constant in each arm.
    let (proto, t) = match h[9] {
        6 => (Proto::Tcp, transport(Proto::Tcp, l4, l4_len)?),
        17 => (Proto::Udp, transport(Proto::Udp, l4, l4_len)?),
        1 => (Proto::Icmp, transport(Proto::Icmp, l4, l4_len)?),
        _ => return None,
    };
    Some(Fast {
        addrs: FastAddrs::V4 {
            src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        },
        proto,
        sport: t.sport,
        dport: t.dport,
        ip_id: u32::from(u16::from_be_bytes([h[4], h[5]])),
        ip_total_len: total_len,
        tcp: t.tcp,
        icmp_seq: t.icmp_seq,
        payload_fp: t.payload_fp,
        payload_len: t.payload_len,
        payload_fp_bytes: t.payload_fp_bytes,
    })
}

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
        ip_id: 0,
        // At most 65 535 + 40: saturates as decode does.
        ip_total_len: u16::try_from(payload_length + IPV6_HEADER_BYTES).unwrap_or(u16::MAX),
        tcp: t.tcp,
        icmp_seq: t.icmp_seq,
        payload_fp: t.payload_fp,
        payload_len: t.payload_len,
        payload_fp_bytes: t.payload_fp_bytes,
    })
}

/// What the transport header and payload give.
struct Transport {
    sport: u16,
    dport: u16,
    tcp: Option<TcpInfo>,
    icmp_seq: u16,
    payload_fp: u64,
    payload_len: u32,
    payload_fp_bytes: u16,
}

/// Size of the ICMP / ICMPv6 echo header, in bytes.
const ICMP_ECHO_HEADER_BYTES: usize = 8;

/// The transport header in `l4` (captured bytes, at most `l4_len`, the length the IP header
/// announces, which is at most 16 bits), and the payload's fingerprint.
#[inline(always)]
fn transport(proto: Proto, l4: &[u8], l4_len: usize) -> Option<Transport> {
    let (sport, dport, tcp, icmp_seq, header_len) = match proto {
        Proto::Tcp => {
            let t = l4.first_chunk::<20>()?;
            let len = usize::from(t[12] >> 4) * 4;
            if len < 20 || l4.len() < len {
                return None;
            }
            let info = TcpInfo {
                seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
                ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
                flags: t[13],
            };
            (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
                Some(info),
                0,
                len,
            )
        }
        Proto::Udp => {
            let u = l4.first_chunk::<8>()?;
            (
                u16::from_be_bytes([u[0], u[1]]),
                u16::from_be_bytes([u[2], u[3]]),
                None,
                0,
                8,
            )
        }
        Proto::Icmp | Proto::Icmpv6 => {
            let c = l4.first_chunk::<ICMP_ECHO_HEADER_BYTES>()?;
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
            (sport, dport, None, seq, ICMP_ECHO_HEADER_BYTES)
        }
    };
    // header_len <= l4.len() <= l4_len: no underflow; at most 16 bits.
    let payload_len = (l4_len - header_len) as u32;
    let (payload_fp, payload_fp_bytes) = fingerprint_prefix(&l4[header_len..]);
    Some(Transport {
        sport,
        dport,
        tcp,
        icmp_seq,
        payload_fp,
        payload_len,
        payload_fp_bytes,
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
