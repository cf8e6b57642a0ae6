//! The common case of [`super::decode`] read straight from the bytes: Ethernet (with VLAN
//! tags), Linux SLL / SLL2 or raw IP, then IPv4 without fragmentation or an authentication
//! header, then TCP, UDP or ICMP echo, all headers complete.
//!
//! [`fast_v4`] answers `None` for anything else, including every packet `decode` would skip:
//! the caller then runs `decode` itself. When it answers `Some`, the fields are exactly those
//! `decode` returns for the same bytes (the tests in `correlate` compare the two on generated,
//! mutated and random packets). It never returns a [`super::Skip`]: the rare and the broken go
//! the slow way.

use super::{
    ethertype, linktype, payload_fingerprint, LinkInfo, TcpInfo, PAYLOAD_FP_BYTES_MAX,
    VLAN_TAGS_MAX,
};
use natrec_storage::Proto;

/// The fields of an IPv4 packet as [`super::Decoded`] holds them, addresses as `u32`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastV4 {
    pub link: LinkInfo,
    pub proto: Proto,
    pub src: u32,
    pub dst: u32,
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

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// `decode(linktype, data)` for the common IPv4 case, or `None` (then ask `decode`).
#[inline]
pub(crate) fn fast_v4(lt: u16, data: &[u8]) -> Option<FastV4> {
    let mut link = LinkInfo::default();
    let ip = match lt {
        linktype::ETHERNET => ether_v4(be16(data, 12)?, data.get(14..)?, &mut link)?,
        linktype::LINUX_SLL => {
            // decode refuses a packet type above 255: leave that to it.
            link.pkttype = Some(u8::try_from(be16(data, 0)?).ok()?);
            ether_v4(be16(data, 14)?, data.get(16..)?, &mut link)?
        }
        linktype::LINUX_SLL2 => {
            let protocol = be16(data, 0)?;
            let rest = data.get(20..)?;
            link.pkttype = Some(data[10]);
            link.ifindex = Some(be32(data, 4)?);
            ether_v4(protocol, rest, &mut link)?
        }
        linktype::RAW | linktype::DLT_RAW_12 | linktype::DLT_RAW_14 | linktype::IPV4 => data,
        _ => return None,
    };
    ipv4(ip, link)
}

/// Follows VLAN tags to IPv4; `None` for anything else (IPv6, PPPoE, not IP, cut tags).
#[inline]
fn ether_v4<'a>(
    mut ether_type: u16,
    mut payload: &'a [u8],
    link: &mut LinkInfo,
) -> Option<&'a [u8]> {
    let mut tags = 0;
    loop {
        match ether_type {
            ethertype::IPV4 => return Some(payload),
            ethertype::VLAN
            | ethertype::QINQ
            | ethertype::QINQ_OLD_9100
            | ethertype::QINQ_OLD_9200 => {
                if tags == VLAN_TAGS_MAX {
                    return None;
                }
                tags += 1;
                let tci = be16(payload, 0)?;
                ether_type = be16(payload, 2)?;
                if link.vlan_outer.is_none() {
                    link.vlan_outer = link.vlan;
                }
                link.vlan = Some(tci & 0x0fff);
                payload = &payload[4..];
            }
            _ => return None,
        }
    }
}

/// IPv4 and the transport header; `None` where `decode` skips or takes a rarer path.
#[inline]
fn ipv4(data: &[u8], link: LinkInfo) -> Option<FastV4> {
    let h = data.get(..20)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total_len = u16::from_be_bytes([h[2], h[3]]);
    if header_len < 20 || data.len() < header_len || usize::from(total_len) < header_len {
        return None;
    }
    // More fragments, or a fragment offset.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let ip_number = h[9];
    let l4_len = usize::from(total_len) - header_len;
    let l4 = &data[header_len..data.len().min(usize::from(total_len))];
    let (proto, sport, dport, tcp, icmp_seq, l4_header_len) = match ip_number {
        6 => {
            let t = l4.get(..20)?;
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
                Proto::Tcp,
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
                Some(info),
                0,
                len,
            )
        }
        17 => {
            let u = l4.get(..8)?;
            (
                Proto::Udp,
                u16::from_be_bytes([u[0], u[1]]),
                u16::from_be_bytes([u[2], u[3]]),
                None,
                0,
                8,
            )
        }
        1 => {
            let c = l4.get(..8)?;
            let id = u16::from_be_bytes([c[4], c[5]]);
            let seq = u16::from_be_bytes([c[6], c[7]]);
            let (sport, dport) = match c[0] {
                8 => (id, 0),
                0 => (0, id),
                _ => return None,
            };
            (Proto::Icmp, sport, dport, None, seq, 8)
        }
        _ => return None,
    };
    let captured = &l4[l4_header_len..];
    let hashed = &captured[..captured.len().min(PAYLOAD_FP_BYTES_MAX)];
    // l4_header_len <= l4.len() <= l4_len: no underflow; at most 16 bits.
    let payload_len = (l4_len - l4_header_len) as u32;
    Some(FastV4 {
        link,
        proto,
        src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        sport,
        dport,
        ip_id: u32::from(u16::from_be_bytes([h[4], h[5]])),
        ip_total_len: total_len,
        tcp,
        icmp_seq,
        payload_fp: payload_fingerprint(hashed, payload_len),
        payload_len,
        payload_fp_bytes: hashed.len() as u16,
    })
}
