//! Decoder tests on packets written out byte by byte.

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// IPv4 192.168.1.2 -> 93.184.216.34, id 0x1c46, DF; TCP 50000 -> 80, seq 0x01020304,
/// ack 0x0a0b0c0d, PSH|ACK; payload "abcd".
static IPV4_TCP: [u8; 44] = [
    0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // ver/ihl .. csum
    0xc0, 0xa8, 0x01, 0x02, 0x5d, 0xb8, 0xd8, 0x22, // src, dst
    0xc3, 0x50, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, // sport, dport, seq
    0x0a, 0x0b, 0x0c, 0x0d, 0x50, 0x18, 0xff, 0xff, // ack, offset, flags, window
    0x00, 0x00, 0x00, 0x00, // csum, urg
    b'a', b'b', b'c', b'd',
];

/// IPv4 10.0.0.1 -> 10.0.0.2, id 0x1234; UDP 1000 -> 53; payload "hi".
static IPV4_UDP: [u8; 30] = [
    0x45, 0x00, 0x00, 0x1e, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, //
    0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, //
    0x03, 0xe8, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, //
    b'h', b'i',
];

/// IPv4 10.0.0.1 -> 8.8.8.8; ICMP echo request id 0x1234 seq 7; 4 payload bytes.
static IPV4_ICMP_REQUEST: [u8; 32] = [
    0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, //
    0x0a, 0x00, 0x00, 0x01, 0x08, 0x08, 0x08, 0x08, //
    0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x07, //
    1, 2, 3, 4,
];

/// IPv6 2001:db8::1 -> 2001:db8::2, UDP 5353 -> 5353, payload "hi".
static IPV6_UDP: [u8; 50] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x11, 0x40, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
    0x14, 0xe9, 0x14, 0xe9, 0x00, 0x0a, 0x00, 0x00, //
    b'h', b'i',
];

/// IPv6 2001:db8::1 -> 2001:db8::2, ICMPv6 echo reply id 0x0bcd seq 3, no payload.
static IPV6_ICMP_REPLY: [u8; 48] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x08, 0x3a, 0x40, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
    0x81, 0x00, 0x00, 0x00, 0x0b, 0xcd, 0x00, 0x03,
];

/// IPv6 with a hop-by-hop header (PadN) and an atomic fragment header (offset 0, M=0,
/// id 0xdeadbeef) before TCP 443 -> 40000, SYN, no payload.
static IPV6_EXTS_TCP: [u8; 76] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x40, // payload 36, next: hop-by-hop
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
    0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // hop-by-hop: next fragment, PadN
    0x06, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, // fragment: next TCP, offset 0, M=0
    0x01, 0xbb, 0x9c, 0x40, 0x00, 0x00, 0x00, 0x01, // TCP
    0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0x72, 0x10, //
    0x00, 0x00, 0x00, 0x00,
];

const MAC_HEADER: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    cat(&[&MAC_HEADER, &ethertype.to_be_bytes(), payload])
}

#[test]
fn raw_ipv4_tcp() {
    let d = decode(linktype::RAW, &IPV4_TCP).unwrap();
    assert_eq!(d.proto, Proto::Tcp);
    assert_eq!(d.src, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)));
    assert_eq!(d.dst, IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)));
    assert_eq!((d.sport, d.dport), (50000, 80));
    assert_eq!(d.ip_id, 0x1c46);
    assert_eq!(d.ip_total_len, 44);
    assert_eq!(
        d.tcp,
        Some(TcpInfo {
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
            flags: TcpInfo::PSH | TcpInfo::ACK
        })
    );
    assert_eq!(d.icmp_seq, 0);
    assert_eq!(d.payload_len, 4);
    assert_eq!(d.payload_fp_bytes, 4);
    assert_eq!(d.payload_fp, payload_fingerprint(b"abcd"));
    assert_eq!(d.link, LinkInfo::default());
    // The same packet on the IPv4-only link types and as DLT_RAW.
    for lt in [linktype::IPV4, linktype::DLT_RAW_12, linktype::DLT_RAW_14] {
        assert_eq!(decode(lt, &IPV4_TCP), Ok(d), "linktype {lt}");
    }
    assert_eq!(
        decode(linktype::IPV6, &IPV4_TCP),
        Err(Skip::Malformed {
            layer: "ipv6",
            detail: "version is not 6"
        })
    );
}

#[test]
fn fingerprint_known_value() {
    // Pinned (also computed by a 6-line Python model of the definition): the fingerprint
    // must not change between platforms or releases unnoticed.
    assert_eq!(payload_fingerprint(&[]), 0x02c4_5fcc_a5b2_4b2a_u64);
    assert_eq!(
        payload_fingerprint(b"0123456789abcdef"),
        0xc46e_f3d8_ac7b_f22c_u64
    );
    assert_eq!(payload_fingerprint(b"ab"), 0x709b_15c2_7b94_7adb_u64);
    // Only the first 16 bytes count.
    assert_eq!(
        payload_fingerprint(b"0123456789abcdefXYZ"),
        payload_fingerprint(b"0123456789abcdef")
    );
    // Zero padding: a shorter input equals itself zero-extended (the count of bytes beside
    // it, in the invariants hash, tells them apart).
    assert_eq!(payload_fingerprint(b"ab"), payload_fingerprint(b"ab\0"));
}

/// The fingerprint's definition byte by byte: the model the decoders' word loads must
/// agree with.
fn fingerprint_model(bytes: &[u8]) -> u64 {
    let (mut w0, mut w1) = (0u64, 0u64);
    for (i, &b) in bytes.iter().take(16).enumerate() {
        if i < 8 {
            w0 |= u64::from(b) << (8 * i);
        } else {
            w1 |= u64::from(b) << (8 * (i - 8));
        }
    }
    let p = u128::from(w0 ^ 0x8ebc_6af0_9c88_c6e3) * u128::from(w1 ^ 0x5899_65cc_7537_4cc3);
    (p as u64) ^ (p >> 64) as u64
}

#[test]
fn fingerprint_is_its_model_for_every_length() {
    let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(151) ^ 0x5a).collect();
    for n in 0..=bytes.len() {
        assert_eq!(
            payload_fingerprint(&bytes[..n]),
            fingerprint_model(&bytes[..n]),
            "{n} bytes"
        );
    }
}

#[test]
fn fingerprint_sees_every_byte_and_bit() {
    let base: Vec<u8> = (1u8..=16).collect();
    let f = payload_fingerprint(&base);
    for n in 0..=16 {
        let prefix = &base[..n];
        for i in 0..n {
            for bit in 0..8 {
                let mut b = prefix.to_vec();
                b[i] ^= 1 << bit;
                assert_ne!(
                    payload_fingerprint(&b),
                    payload_fingerprint(prefix),
                    "{n} bytes, byte {i} bit {bit}"
                );
            }
        }
        if n < 16 {
            assert_ne!(payload_fingerprint(prefix), f, "prefix of {n} bytes");
        }
    }
}

#[test]
fn ipv4_udp_on_ethernet_with_padding() {
    // Ethernet pads short frames to 60 bytes; the padding is not payload.
    let mut frame = ethernet(0x0800, &IPV4_UDP);
    frame.resize(60, 0xee);
    let d = decode(linktype::ETHERNET, &frame).unwrap();
    assert_eq!(d.proto, Proto::Udp);
    assert_eq!((d.sport, d.dport), (1000, 53));
    assert_eq!(d.ip_id, 0x1234);
    assert_eq!((d.ip_total_len, d.payload_len), (30, 2));
    assert_eq!(d.payload_fp, payload_fingerprint(b"hi"));
    assert_eq!(d.tcp, None);
}

#[test]
fn icmp_echo_request_and_reply() {
    let d = decode(linktype::RAW, &IPV4_ICMP_REQUEST).unwrap();
    assert_eq!(d.proto, Proto::Icmp);
    assert_eq!((d.sport, d.dport, d.icmp_seq), (0x1234, 0, 7));
    assert_eq!(d.payload_len, 4);

    let mut reply = IPV4_ICMP_REQUEST;
    reply[20] = 0;
    let d = decode(linktype::RAW, &reply).unwrap();
    assert_eq!((d.sport, d.dport, d.icmp_seq), (0, 0x1234, 7));

    let mut unreachable = IPV4_ICMP_REQUEST;
    unreachable[20] = 3;
    assert_eq!(
        decode(linktype::RAW, &unreachable),
        Err(Skip::IcmpNotEcho(3))
    );
}

#[test]
fn icmpv6_echo() {
    let d = decode(linktype::IPV6, &IPV6_ICMP_REPLY).unwrap();
    assert_eq!(d.proto, Proto::Icmpv6);
    assert_eq!((d.sport, d.dport, d.icmp_seq), (0, 0x0bcd, 3));
    assert_eq!(
        (d.ip_total_len, d.payload_len, d.payload_fp_bytes),
        (48, 0, 0)
    );
    let mut request = IPV6_ICMP_REPLY;
    request[40] = 128;
    let d = decode(linktype::RAW, &request).unwrap();
    assert_eq!((d.sport, d.dport), (0x0bcd, 0));
    request[40] = 135; // neighbour solicitation
    assert_eq!(decode(linktype::RAW, &request), Err(Skip::IcmpNotEcho(135)));
}

#[test]
fn ipv6_udp_and_extension_headers() {
    let d = decode(linktype::RAW, &IPV6_UDP).unwrap();
    assert_eq!(
        d.src,
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    );
    assert_eq!(
        (d.proto, d.sport, d.dport, d.ip_id),
        (Proto::Udp, 5353, 5353, 0)
    );
    assert_eq!((d.ip_total_len, d.payload_len), (50, 2));

    let d = decode(linktype::IPV6, &IPV6_EXTS_TCP).unwrap();
    assert_eq!((d.proto, d.sport, d.dport), (Proto::Tcp, 443, 40000));
    assert_eq!(d.ip_id, 0xdead_beef);
    assert_eq!(d.tcp.unwrap().flags, TcpInfo::SYN);
    assert_eq!((d.ip_total_len, d.payload_len), (76, 0));
}

#[test]
fn fragments_are_skipped() {
    let mut more = IPV4_UDP;
    more[6] = 0x20; // MF
    assert_eq!(decode(linktype::RAW, &more), Err(Skip::Fragment));
    let mut later = IPV4_UDP;
    later[7] = 0x01; // offset 8
    assert_eq!(decode(linktype::RAW, &later), Err(Skip::Fragment));
    let mut v6 = IPV6_EXTS_TCP;
    v6[51] = 0x01; // M flag in the fragment header
    assert_eq!(decode(linktype::RAW, &v6), Err(Skip::Fragment));
}

#[test]
fn vlan_and_qinq() {
    let frame = ethernet(0x8100, &cat(&[&[0x20, 0x64, 0x08, 0x00], &IPV4_TCP]));
    let d = decode(linktype::ETHERNET, &frame).unwrap();
    assert_eq!(d.link.vlan(), Some(100));
    assert_eq!(d.link.vlan_outer(), None);
    assert_eq!(d.sport, 50000);

    for outer_tpid in [0x88a8u16, 0x9100, 0x8100] {
        let tags = cat(&[&[0x00, 0x0a], &[0x81, 0x00], &[0x00, 0x64, 0x86, 0xdd]]);
        let frame = ethernet(outer_tpid, &cat(&[&tags, &IPV6_UDP]));
        let d = decode(linktype::ETHERNET, &frame).unwrap();
        assert_eq!((d.link.vlan(), d.link.vlan_outer()), (Some(100), Some(10)));
        assert_eq!(d.proto, Proto::Udp);
    }

    let five_tags = cat(&[
        &[0, 1, 0x81, 0],
        &[0, 2, 0x81, 0],
        &[0, 3, 0x81, 0],
        &[0, 4, 0x81, 0],
        &[0, 5, 8, 0],
    ]);
    let frame = ethernet(0x8100, &cat(&[&five_tags, &IPV4_TCP]));
    assert_eq!(
        decode(linktype::ETHERNET, &frame).unwrap_err().reason(),
        "malformed"
    );
}

#[test]
fn pppoe_session() {
    let len = (IPV4_UDP.len() + 2) as u16;
    let pppoe = cat(&[
        &[0x11, 0x00, 0x12, 0x34],
        &len.to_be_bytes(),
        &[0x00, 0x21],
        &IPV4_UDP,
    ]);
    let mut frame = ethernet(0x8864, &pppoe);
    frame.resize(64, 0); // padding after the PPPoE payload
    let d = decode(linktype::ETHERNET, &frame).unwrap();
    assert_eq!(d.link.pppoe_session(), Some(0x1234));
    assert_eq!((d.sport, d.dport, d.payload_len), (1000, 53, 2));

    let len6 = (IPV6_UDP.len() + 2) as u16;
    let pppoe6 = cat(&[
        &[0x11, 0x00, 0x00, 0x07],
        &len6.to_be_bytes(),
        &[0x00, 0x57],
        &IPV6_UDP,
    ]);
    let d = decode(linktype::ETHERNET, &ethernet(0x8864, &pppoe6)).unwrap();
    assert_eq!((d.link.pppoe_session(), d.proto), (Some(7), Proto::Udp));

    let lcp = cat(&[
        &[0x11, 0x00, 0x00, 0x07, 0x00, 0x06],
        &[0xc0, 0x21],
        &[1, 1, 0, 4],
    ]);
    assert_eq!(
        decode(linktype::ETHERNET, &ethernet(0x8864, &lcp)),
        Err(Skip::PppNotIp(0xc021))
    );
    assert_eq!(
        decode(
            linktype::ETHERNET,
            &ethernet(0x8863, &[0x11, 0x09, 0, 0, 0, 0])
        ),
        Err(Skip::NotIp(0x8863))
    );
    let mut bad_version = pppoe.clone();
    bad_version[0] = 0x21;
    assert_eq!(
        decode(linktype::ETHERNET, &ethernet(0x8864, &bad_version))
            .unwrap_err()
            .reason(),
        "malformed"
    );
}

#[test]
fn linux_sll_and_sll2() {
    let sll = cat(&[
        &[0x00, 0x04, 0x00, 0x01, 0x00, 0x06],
        &[2, 0, 0, 0, 0, 1, 0, 0],
        &[0x08, 0x00],
        &IPV4_TCP,
    ]);
    let d = decode(linktype::LINUX_SLL, &sll).unwrap();
    assert_eq!(d.link.pkttype(), Some(4));
    assert_eq!(d.link.ifindex(), None);
    assert_eq!(d.sport, 50000);

    let sll2 = cat(&[
        &[0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0x00, 0x01, 0x03, 0x06],
        &[2, 0, 0, 0, 0, 1, 0, 0],
        &IPV6_UDP,
    ]);
    let d = decode(linktype::LINUX_SLL2, &sll2).unwrap();
    assert_eq!((d.link.pkttype(), d.link.ifindex()), (Some(3), Some(7)));
    assert_eq!(d.proto, Proto::Udp);

    // VLAN tag left in place under SLL2.
    let sll2_vlan = cat(&[
        &[0x81, 0x00, 0, 0, 0, 0, 0, 2, 0x00, 0x01, 0x00, 0x06],
        &[0; 8],
        &[0x00, 0x05, 0x08, 0x00],
        &IPV4_UDP,
    ]);
    assert_eq!(
        decode(linktype::LINUX_SLL2, &sll2_vlan)
            .unwrap()
            .link
            .vlan(),
        Some(5)
    );

    let arp = cat(&[
        &[0x08, 0x06, 0, 0, 0, 0, 0, 7, 0x00, 0x01, 0x00, 0x06],
        &[0; 8],
        &[0; 28],
    ]);
    assert_eq!(decode(linktype::LINUX_SLL2, &arp), Err(Skip::NotIp(0x0806)));
}

#[test]
fn loopback_and_ppp() {
    let null_le = cat(&[&[2, 0, 0, 0], &IPV4_UDP]);
    assert_eq!(decode(linktype::NULL, &null_le).unwrap().proto, Proto::Udp);
    let null_be = cat(&[&[0, 0, 0, 30], &IPV6_UDP]);
    assert_eq!(decode(linktype::NULL, &null_be).unwrap().proto, Proto::Udp);
    let loop_v6 = cat(&[&[0, 0, 0, 24], &IPV6_UDP]);
    assert_eq!(decode(linktype::LOOP, &loop_v6).unwrap().proto, Proto::Udp);
    assert_eq!(
        decode(linktype::LOOP, &cat(&[&[0, 0, 0, 17], &IPV6_UDP])),
        Err(Skip::LoopbackNotIp(17))
    );

    let ppp_hdlc = cat(&[&[0xff, 0x03, 0x00, 0x21], &IPV4_TCP]);
    assert_eq!(decode(linktype::PPP, &ppp_hdlc).unwrap().sport, 50000);
    let ppp_compressed = cat(&[&[0x57], &IPV6_UDP]);
    assert_eq!(decode(linktype::PPP, &ppp_compressed).unwrap().sport, 5353);
}

#[test]
fn other_skips() {
    assert_eq!(decode(147, &IPV4_TCP), Err(Skip::UnsupportedLinkType(147)));
    assert_eq!(
        decode(linktype::ETHERNET, &ethernet(0x0806, &[0; 28])),
        Err(Skip::NotIp(0x0806))
    );
    let mut gre = IPV4_UDP;
    gre[9] = 47;
    assert_eq!(decode(linktype::RAW, &gre), Err(Skip::UnsupportedProto(47)));
    let mut icmp_in_v6 = IPV6_UDP;
    icmp_in_v6[6] = 1;
    assert_eq!(
        decode(linktype::RAW, &icmp_in_v6),
        Err(Skip::UnsupportedProto(1))
    );
    let mut short_total = IPV4_UDP;
    short_total[3] = 24; // total length 24: UDP header does not fit
    assert_eq!(
        decode(linktype::RAW, &short_total),
        Err(Skip::Malformed {
            layer: "udp",
            detail: "header longer than the IP packet"
        })
    );
    assert_eq!(Skip::Fragment.to_string(), "IP fragment");
    assert_eq!(Skip::Truncated { layer: "tcp" }.reason(), "truncated");
}

#[test]
fn snaplen_cut_payload_still_decodes() {
    let cut = &IPV4_TCP[..42];
    let d = decode(linktype::RAW, cut).unwrap();
    assert_eq!(
        (d.ip_total_len, d.payload_len, d.payload_fp_bytes),
        (44, 4, 2)
    );
    assert_eq!(d.payload_fp, payload_fingerprint(b"ab"));
}

#[test]
fn long_payload_fingerprint_is_bounded() {
    let payload = [0x5au8; 300];
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = IPV4_UDP[..28].to_vec();
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&payload);
    let d = decode(linktype::RAW, &ip).unwrap();
    assert_eq!(
        (d.payload_len, usize::from(d.payload_fp_bytes)),
        (300, PAYLOAD_FP_BYTES_MAX)
    );
    assert_eq!(
        d.payload_fp,
        payload_fingerprint(&payload[..PAYLOAD_FP_BYTES_MAX])
    );
}

/// Every valid packet of the tests, with the link type and the length of its headers.
fn valid_packets() -> Vec<(u16, Vec<u8>, usize)> {
    let len = (IPV4_UDP.len() + 2) as u16;
    vec![
        (linktype::RAW, IPV4_TCP.to_vec(), 40),
        (linktype::RAW, IPV4_UDP.to_vec(), 28),
        (linktype::RAW, IPV4_ICMP_REQUEST.to_vec(), 28),
        (linktype::IPV6, IPV6_UDP.to_vec(), 48),
        (linktype::IPV6, IPV6_ICMP_REPLY.to_vec(), 48),
        (linktype::IPV6, IPV6_EXTS_TCP.to_vec(), 76),
        (linktype::ETHERNET, ethernet(0x0800, &IPV4_TCP), 54),
        (
            linktype::ETHERNET,
            ethernet(
                0x88a8,
                &cat(&[&[0, 10, 0x81, 0, 0, 100, 0x86, 0xdd], &IPV6_UDP]),
            ),
            14 + 8 + 48,
        ),
        (
            linktype::ETHERNET,
            ethernet(
                0x8864,
                &cat(&[&[0x11, 0, 0, 1], &len.to_be_bytes(), &[0, 0x21], &IPV4_UDP]),
            ),
            14 + 8 + 28,
        ),
        (
            linktype::LINUX_SLL,
            cat(&[&[0, 0, 0, 1, 0, 6], &[0; 8], &[0x08, 0x00], &IPV4_TCP]),
            16 + 40,
        ),
        (
            linktype::LINUX_SLL2,
            cat(&[
                &[0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6],
                &[0; 8],
                &IPV6_EXTS_TCP,
            ]),
            20 + 76,
        ),
        (linktype::NULL, cat(&[&[2, 0, 0, 0], &IPV4_UDP]), 4 + 28),
        (
            linktype::PPP,
            cat(&[&[0xff, 0x03, 0x00, 0x57], &IPV6_UDP]),
            4 + 48,
        ),
    ]
}

#[test]
fn truncated_at_every_length() {
    for (lt, packet, headers) in valid_packets() {
        let full = decode(lt, &packet).unwrap_or_else(|e| panic!("{lt} {packet:02x?}: {e}"));
        for cut in 0..packet.len() {
            let got = decode(lt, &packet[..cut]);
            if cut < headers {
                match got {
                    Err(Skip::Truncated { .. }) => {}
                    other => panic!("linktype {lt}, cut at {cut} of {}: {other:?}", packet.len()),
                }
            } else {
                let d = got.unwrap_or_else(|e| panic!("linktype {lt}, cut at {cut}: {e}"));
                assert_eq!(
                    (
                        d.src,
                        d.dst,
                        d.sport,
                        d.dport,
                        d.ip_id,
                        d.ip_total_len,
                        d.payload_len,
                        d.tcp,
                        d.link
                    ),
                    (
                        full.src,
                        full.dst,
                        full.sport,
                        full.dport,
                        full.ip_id,
                        full.ip_total_len,
                        full.payload_len,
                        full.tcp,
                        full.link
                    ),
                    "linktype {lt}, cut at {cut}"
                );
                assert_eq!(usize::from(d.payload_fp_bytes), cut - headers);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The fingerprint equals its byte-by-byte definition on any bytes.
    #[test]
    fn fingerprint_agrees_with_its_model(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assert_eq!(payload_fingerprint(&bytes), fingerprint_model(&bytes));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(
        lt in prop_oneof![prop::sample::select(linktype::SUPPORTED.to_vec()), any::<u16>()],
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = decode(lt, &bytes);
    }

    #[test]
    fn never_panics_on_mutated_packets(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let packets = valid_packets();
        let (lt, mut packet, _) = packets[which.index(packets.len())].clone();
        for (at, value) in flips {
            let i = at.index(packet.len());
            packet[i] = value;
        }
        let keep = cut.index(packet.len() + 1);
        if let Ok(d) = decode(lt, &packet[..keep]) {
            prop_assert!(usize::from(d.payload_fp_bytes) <= PAYLOAD_FP_BYTES_MAX);
            prop_assert!(u32::from(d.payload_fp_bytes) <= d.payload_len);
        }
    }
}

#[test]
fn linktype_supported_is_what_decode_reads() {
    // Every link type: decode refuses the type itself exactly when
    // linktype_supported says no, whatever the bytes.
    for lt in 0..=u16::MAX {
        for data in [&[][..], &[0u8; 64][..], &[0x45u8; 64][..]] {
            let unsupported = matches!(decode(lt, data), Err(Skip::UnsupportedLinkType(_)));
            assert_eq!(unsupported, !linktype_supported(lt), "link type {lt}");
        }
    }
}

/// Round 12's `LinkInfo` (five public `Option`s), the model of the bit mask one: each step as
/// the decoders wrote it then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct LinkModel {
    vlan: Option<u16>,
    vlan_outer: Option<u16>,
    ifindex: Option<u32>,
    pkttype: Option<u8>,
    pppoe_session: Option<u16>,
}

#[derive(Clone, Copy, Debug)]
enum LinkStep {
    Clear,
    Vlan(u16),
    Ifindex(u32),
    Pkttype(u8),
    Pppoe(u16),
}

fn link_steps() -> impl Strategy<Value = Vec<LinkStep>> {
    prop::collection::vec(
        prop_oneof![
            1 => Just(LinkStep::Clear),
            3 => (0u16..4).prop_map(LinkStep::Vlan),
            1 => (0u32..3).prop_map(LinkStep::Ifindex),
            1 => (0u8..3).prop_map(LinkStep::Pkttype),
            1 => (0u16..3).prop_map(LinkStep::Pppoe),
        ],
        0..24,
    )
}

fn link_apply(link: &mut LinkInfo, model: &mut LinkModel, step: LinkStep) {
    match step {
        LinkStep::Clear => {
            link.clear();
            *model = LinkModel::default();
        }
        LinkStep::Vlan(id) => {
            link.push_vlan(id);
            if model.vlan_outer.is_none() {
                model.vlan_outer = model.vlan;
            }
            model.vlan = Some(id);
        }
        LinkStep::Ifindex(i) => {
            link.set_ifindex(i);
            model.ifindex = Some(i);
        }
        LinkStep::Pkttype(t) => {
            link.set_pkttype(t);
            model.pkttype = Some(t);
        }
        LinkStep::Pppoe(s) => {
            link.set_pppoe_session(s);
            model.pppoe_session = Some(s);
        }
    }
}

fn link_seen(link: &LinkInfo) -> LinkModel {
    LinkModel {
        vlan: link.vlan(),
        vlan_outer: link.vlan_outer(),
        ifindex: link.ifindex(),
        pkttype: link.pkttype(),
        pppoe_session: link.pppoe_session(),
    }
}

fn hash_of(x: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(x)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `LinkInfo`'s presence bits against round 12's five `Option`s: after every step (a clear,
    /// a VLAN tag, an SLL detail, a PPPoE session) each accessor gives what the old field held;
    /// and two links built by different steps (stale values left behind a clear) are equal,
    /// hash alike and print alike exactly when their models are equal.
    #[test]
    fn link_info_bits_are_the_five_options(a in link_steps(), b in link_steps()) {
        let (mut la, mut ma) = (LinkInfo::default(), LinkModel::default());
        for step in a {
            link_apply(&mut la, &mut ma, step);
            prop_assert_eq!(link_seen(&la), ma);
        }
        let (mut lb, mut mb) = (LinkInfo::default(), LinkModel::default());
        for step in b {
            link_apply(&mut lb, &mut mb, step);
        }
        prop_assert_eq!(la == lb, ma == mb);
        if ma == mb {
            prop_assert_eq!(hash_of(&la), hash_of(&lb));
            prop_assert_eq!(format!("{la:?}"), format!("{lb:?}"));
        }
        prop_assert_eq!(
            format!("{la:?}"),
            format!("{ma:?}").replace("LinkModel", "LinkInfo")
        );
    }
}
