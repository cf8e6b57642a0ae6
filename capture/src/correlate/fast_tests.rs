//! [`Preparer::prepare_bytes`] returns exactly what `decode` then `prepare` return: on generated
//! packets of every kind the fast path reads (IPv4 and IPv6, on Ethernet with VLAN tags and
//! PPPoE sessions, SLL, SLL2 and raw IP), on mutations and truncations of them, and on random
//! bytes.

use super::*;
use crate::decode::linktype;
use proptest::prelude::*;

fn preparer() -> Preparer {
    Preparer::new(&CorrelatorConfig {
        subscriber_prefixes: [
            "10.0.0.0/8",
            "100.64.0.0/10",
            "192.168.1.0/24",
            "192.168.7.128/25",
            "2001:db8:1::/48",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect(),
        ..CorrelatorConfig::default()
    })
}

/// The slow path: what `prepare_bytes` must equal.
fn slow(p: &Preparer, lt: u16, data: &[u8]) -> Result<(Prepared, LinkInfo), Skip> {
    decode(lt, data).map(|d| (p.prepare(&d), d.link))
}

fn arb_v4() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![
        prop::sample::select(vec![
            [10, 0, 0, 1],
            [100, 64, 3, 9],
            [100, 128, 0, 1],
            [192, 168, 1, 77],
            [192, 168, 7, 200],
            [192, 168, 7, 20],
            [93, 184, 216, 34],
            [0, 0, 0, 0],
            [255, 255, 255, 255],
        ]),
        any::<[u8; 4]>(),
    ]
}

/// A transport header and payload: TCP (data offset `doff`, options), ICMP / ICMPv6 of type
/// `icmp_type`, or 8 bytes of something else.
fn l4_bytes(proto: u8, doff: u8, icmp_type: u8, fields: &[u8; 12], payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    match proto {
        6 => {
            l4.extend_from_slice(&fields[..12]);
            l4.push(doff << 4 | (fields[0] & 0x0f));
            l4.push(fields[1]);
            l4.extend_from_slice(&fields[2..8]);
            l4.resize(usize::from(doff) * 4, 0xa5);
        }
        1 | 58 => {
            l4.push(icmp_type);
            l4.extend_from_slice(&fields[..7]);
        }
        _ => l4.extend_from_slice(&fields[..8]),
    }
    l4.extend_from_slice(payload);
    l4
}

/// A length field: right (`right`), off by a little, or anything.
fn arb_len_delta() -> impl Strategy<Value = i32> {
    prop_oneof![
        3 => Just(0i32),
        1 => -30i32..30,
        1 => any::<u16>().prop_map(|v| i32::from(v) - 100_000),
    ]
}

fn with_delta(right: usize, delta: i32) -> u16 {
    if delta < -50_000 {
        (delta + 100_000) as u16
    } else {
        (right as i32 + delta).clamp(0, 0xffff) as u16
    }
}

/// An IPv4 packet: header with options, TCP (with options) / UDP / ICMP or another protocol,
/// payload; lengths right or not, flags any.
fn arb_ipv4() -> impl Strategy<Value = Vec<u8>> {
    (
        (
            5u8..=15,
            any::<u8>(),
            any::<u16>(),
            prop_oneof![
                4 => prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x0001, 0x8000, 0x1fff]),
                1 => any::<u16>(),
            ],
            prop_oneof![
                6 => prop::sample::select(vec![6u8, 17, 1]),
                1 => prop::sample::select(vec![51u8, 58, 2, 0, 47]),
                1 => any::<u8>(),
            ],
            arb_v4(),
            arb_v4(),
        ),
        (
            arb_len_delta(),
            5u8..=15,
            prop::sample::select(vec![8u8, 0, 3, 128, 129]),
            any::<[u8; 12]>(),
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec(any::<u8>(), 0..8),
        ),
    )
        .prop_map(
            |(
                (ihl, tos, id, frag, proto, src, dst),
                (len_delta, doff, icmp_type, fields, payload, pad),
            )| {
                let l4 = l4_bytes(proto, doff, icmp_type, &fields, &payload);
                let header_len = usize::from(ihl) * 4;
                let total_len = with_delta(header_len + l4.len(), len_delta);
                let mut ip = vec![0x40 | ihl, tos];
                ip.extend_from_slice(&total_len.to_be_bytes());
                ip.extend_from_slice(&id.to_be_bytes());
                ip.extend_from_slice(&frag.to_be_bytes());
                ip.extend_from_slice(&[64, proto, 0x12, 0x34]);
                ip.extend_from_slice(&src);
                ip.extend_from_slice(&dst);
                // Options: NOPs and an end-of-list, contents do not matter to the decoder.
                ip.resize(header_len, 1);
                ip.extend_from_slice(&l4);
                ip.extend_from_slice(&pad);
                ip
            },
        )
}

fn arb_v6() -> impl Strategy<Value = [u8; 16]> {
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    prop_oneof![
        prop::sample::select(vec![
            v6("2001:db8:1::5"),
            v6("2001:db8:1:ffff::1"),
            v6("2001:db8:2::5"),
            v6("fd00::1"),
            v6("fc00::ffff"),
            v6("fe80::1"),
            v6("2606:4700::1111"),
            v6("::ffff:10.0.0.1"),
            v6("::ffff:93.184.216.34"),
            v6("::"),
        ]),
        any::<[u8; 16]>(),
    ]
}

/// An IPv6 packet: TCP (with options) / UDP / ICMPv6, an extension header or another next
/// header, payload; payload length right, off, 0 or anything; version mostly 6.
fn arb_ipv6() -> impl Strategy<Value = Vec<u8>> {
    (
        (
            prop_oneof![8 => Just(6u8), 1 => any::<u8>().prop_map(|v| v >> 4)],
            any::<[u8; 3]>(),
            prop_oneof![
                6 => prop::sample::select(vec![6u8, 17, 58]),
                1 => prop::sample::select(vec![0u8, 43, 44, 60, 51, 59, 1, 135]),
                1 => any::<u8>(),
            ],
            arb_v6(),
            arb_v6(),
        ),
        (
            prop_oneof![8 => arb_len_delta().prop_map(Some), 1 => Just(None)],
            5u8..=15,
            prop::sample::select(vec![128u8, 129, 8, 0, 1, 135]),
            any::<[u8; 12]>(),
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec(any::<u8>(), 0..8),
        ),
    )
        .prop_map(
            |(
                (version, class_flow, next, src, dst),
                (len_delta, doff, icmp_type, fields, payload, pad),
            )| {
                let l4 = l4_bytes(next, doff, icmp_type, &fields, &payload);
                let payload_length = len_delta.map_or(0, |d| with_delta(l4.len(), d));
                let mut ip = vec![version << 4 | class_flow[0] >> 4];
                ip.extend_from_slice(&class_flow[1..]);
                ip.extend_from_slice(&payload_length.to_be_bytes());
                ip.extend_from_slice(&[next, 64]);
                ip.extend_from_slice(&src);
                ip.extend_from_slice(&dst);
                ip.extend_from_slice(&l4);
                ip.extend_from_slice(&pad);
                ip
            },
        )
}

/// An IPv4 or IPv6 packet, and whether it is IPv6.
fn arb_ip() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        arb_ipv4().prop_map(|ip| (false, ip)),
        arb_ipv6().prop_map(|ip| (true, ip)),
    ]
}

/// What a frame carries the IP packet in: its EtherType, or PPPoE.
#[derive(Clone, Debug)]
enum Inner {
    /// The IP version's own EtherType.
    Ip,
    /// A PPPoE session: version/type, code, session id, length delta, PPP protocol field
    /// (`None`: the IP version's, 2 bytes; `Some(1 byte)` compressed; `Some(2 bytes)` as
    /// given), padding after the session payload.
    Pppoe(u8, u8, u16, i32, Option<Vec<u8>>, Vec<u8>),
    /// Another EtherType.
    Other(u16),
}

fn arb_inner() -> impl Strategy<Value = Inner> {
    let ppp_field = prop_oneof![
        4 => Just(None),
        1 => prop::sample::select(vec![
            vec![0x21u8],
            vec![0x57],
            vec![0x00, 0x57],
            vec![0x00, 0x21],
            vec![0xc0, 0x21],
            vec![0x80, 0x21],
            vec![0x00],
        ])
        .prop_map(Some),
        1 => prop::collection::vec(any::<u8>(), 0..3).prop_map(Some),
    ];
    prop_oneof![
        8 => Just(Inner::Ip),
        4 => (
            prop_oneof![6 => Just(0x11u8), 1 => any::<u8>()],
            prop_oneof![6 => Just(0u8), 1 => any::<u8>()],
            any::<u16>(),
            arb_len_delta(),
            ppp_field,
            prop::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(vt, code, id, delta, ppp, pad)| Inner::Pppoe(vt, code, id, delta, ppp, pad)),
        1 => prop::sample::select(vec![0x0800u16, 0x86dd, 0x8863, 0x0806, 0x8100])
            .prop_map(Inner::Other),
        1 => any::<u16>().prop_map(Inner::Other),
    ]
}

/// A link layer around an IP packet: (link type, frame).
fn arb_frame() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let tpid = prop::sample::select(vec![0x8100u16, 0x88a8, 0x9100, 0x9200]);
    (
        0u8..6,
        prop::collection::vec((tpid, any::<u16>()), 0..6),
        arb_inner(),
        prop_oneof![3 => 0u16..8, 1 => any::<u16>()],
        any::<u32>(),
        any::<[u8; 8]>(),
        arb_ip(),
    )
        .prop_map(|(kind, tags, inner, pkttype, ifindex, addr, (v6, ip))| {
            let (inner, carried) = match inner {
                Inner::Ip => (if v6 { 0x86dd } else { 0x0800 }, ip.clone()),
                Inner::Other(t) => (t, ip.clone()),
                Inner::Pppoe(vt, code, id, delta, ppp, pad) => {
                    let ppp = ppp.unwrap_or(if v6 { vec![0, 0x57] } else { vec![0, 0x21] });
                    let length = with_delta(ppp.len() + ip.len(), delta);
                    let mut s = vec![vt, code];
                    s.extend_from_slice(&id.to_be_bytes());
                    s.extend_from_slice(&length.to_be_bytes());
                    s.extend_from_slice(&ppp);
                    s.extend_from_slice(&ip);
                    s.extend_from_slice(&pad);
                    (0x8864, s)
                }
            };
            let mut walk = Vec::new();
            let mut ether_type = inner;
            // Built from the inside out: each tag names what follows it.
            let mut tagged = Vec::new();
            for (tpid, tci) in tags.iter().rev() {
                let mut t = tci.to_be_bytes().to_vec();
                t.extend_from_slice(&ether_type.to_be_bytes());
                t.extend_from_slice(&tagged);
                tagged = t;
                ether_type = *tpid;
            }
            walk.extend_from_slice(&tagged);
            walk.extend_from_slice(&carried);
            match kind {
                0 => {
                    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
                    f.extend_from_slice(&ether_type.to_be_bytes());
                    f.extend_from_slice(&walk);
                    (linktype::ETHERNET, f)
                }
                1 => {
                    let mut f = pkttype.to_be_bytes().to_vec();
                    f.extend_from_slice(&[0, 1, 0, 6]);
                    f.extend_from_slice(&addr);
                    f.extend_from_slice(&ether_type.to_be_bytes());
                    f.extend_from_slice(&walk);
                    (linktype::LINUX_SLL, f)
                }
                2 => {
                    let mut f = ether_type.to_be_bytes().to_vec();
                    f.extend_from_slice(&[0, 0]);
                    f.extend_from_slice(&ifindex.to_be_bytes());
                    f.extend_from_slice(&[0, 1, pkttype as u8, 6]);
                    f.extend_from_slice(&addr);
                    f.extend_from_slice(&walk);
                    (linktype::LINUX_SLL2, f)
                }
                3 => (linktype::RAW, ip),
                4 => (
                    [
                        linktype::IPV4,
                        linktype::IPV6,
                        linktype::DLT_RAW_12,
                        linktype::DLT_RAW_14,
                    ][ifindex as usize % 4],
                    ip,
                ),
                _ => {
                    let lt = [linktype::NULL, linktype::LOOP, linktype::PPP][ifindex as usize % 3];
                    let mut f = match lt {
                        linktype::NULL => vec![if v6 { 10 } else { 2 }, 0, 0, 0],
                        linktype::LOOP => vec![0, 0, 0, if v6 { 24 } else { 2 }],
                        _ => vec![0xff, 0x03, 0x00, if v6 { 0x57 } else { 0x21 }],
                    };
                    f.extend_from_slice(&ip);
                    (lt, f)
                }
            }
        })
}

#[test]
fn fast_path_reads_the_common_packets() {
    // IPv4 TCP with options under two VLAN tags; UDP on SLL2; ICMP echo reply raw.
    let tcp: &[u8] = &[
        0x46, 0, 0, 52, 0x1c, 0x46, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 93, 184, 216, 34, //
        1, 1, 1, 0, // IP options
        0xc3, 0x50, 0, 80, 1, 2, 3, 4, 10, 11, 12, 13, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, b'a',
        b'b', b'c', b'd',
    ];
    let udp: &[u8] = &[
        0x45, 0, 0, 30, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, //
        3, 0xe8, 0, 53, 0, 10, 0, 0, b'h', b'i',
    ];
    let icmp: &[u8] = &[
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 8, 8, 8, 8, 10, 0, 0, 1, //
        0, 0, 0, 0, 0x12, 0x34, 0, 7,
    ];
    let mut eth = vec![
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xa8, 0, 10, 0x81, 0, 0, 100, 8, 0,
    ];
    eth.extend_from_slice(tcp);
    let mut sll2 = vec![8, 0, 0, 0, 0, 0, 0, 7, 0, 1, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0];
    sll2.extend_from_slice(udp);
    let mut sll = vec![0, 4, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    sll.extend_from_slice(icmp);
    let p = preparer();
    for (lt, b) in [
        (linktype::ETHERNET, &eth[..]),
        (linktype::LINUX_SLL2, &sll2[..]),
        (linktype::LINUX_SLL, &sll[..]),
        (linktype::RAW, tcp),
        (linktype::IPV4, udp),
    ] {
        assert!(
            fast(lt, b, &mut LinkInfo::default()).is_some(),
            "link type {lt}"
        );
        let d = decode(lt, b).unwrap();
        assert_eq!(p.prepare_bytes(lt, b), Ok((p.prepare(&d), d.link)));
    }
    let d = decode(linktype::ETHERNET, &eth).unwrap();
    assert_eq!((d.link.vlan(), d.link.vlan_outer()), (Some(100), Some(10)));
}

/// The IP version nibble against what the link layer announced (the fast path tests it with
/// the IP header's other fields): every version on every link type that names one, and on raw
/// IP, gives what `decode` then `prepare` give; only the matching ones take the fast path.
#[test]
fn version_nibbles_the_link_layer_does_not_announce_are_left_to_decode() {
    let udp4: &[u8] = &[
        0x45, 0, 0, 30, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 100, 64, 0, 1, 10, 0, 0, 2, //
        3, 0xe8, 0, 53, 0, 10, 0, 0, b'h', b'i',
    ];
    let mut udp6 = vec![0x60, 0, 0, 0, 0, 10, 17, 64];
    udp6.extend_from_slice(&[0xfd; 16]);
    udp6.extend_from_slice(&[0x26; 16]);
    udp6.extend_from_slice(&[3, 0xe8, 0, 53, 0, 10, 0, 0, b'h', b'i']);
    let p = preparer();
    for (ip, is_v6) in [(udp4, false), (&udp6[..], true)] {
        for version in 0u8..16 {
            let mut ip = ip.to_vec();
            ip[0] = version << 4 | (ip[0] & 0x0f);
            let mut v4_frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
            v4_frame.extend_from_slice(&ip);
            let mut v6_frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
            v6_frame.extend_from_slice(&ip);
            for (lt, b, announced) in [
                (linktype::ETHERNET, &v4_frame[..], Some(4)),
                (linktype::ETHERNET, &v6_frame[..], Some(6)),
                (linktype::IPV4, &ip[..], Some(4)),
                (linktype::IPV6, &ip[..], Some(6)),
                (linktype::RAW, &ip[..], None),
            ] {
                let own = if is_v6 { 6 } else { 4 };
                let fits = version == own && announced.is_none_or(|a| a == own);
                assert_eq!(
                    fast(lt, b, &mut LinkInfo::default()).is_some(),
                    fits,
                    "link type {lt}, version {version}, IPv6 header {is_v6}"
                );
                assert_eq!(p.prepare_bytes(lt, b), slow(&p, lt, b), "link type {lt}");
            }
        }
    }
}

#[test]
fn fast_path_reads_ipv6_and_pppoe() {
    // IPv6 TCP 2001:db8:1::5 → 2606:4700::1111, 4 payload bytes.
    let mut tcp6 = vec![0x60, 0, 0, 0, 0, 24, 6, 64];
    tcp6.extend_from_slice(
        &"2001:db8:1::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    tcp6.extend_from_slice(
        &"2606:4700::1111"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    tcp6.extend_from_slice(&[
        0xc3, 0x50, 0, 80, 1, 2, 3, 4, 10, 11, 12, 13, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, b'a',
        b'b', b'c', b'd',
    ]);
    // ICMPv6 echo request and UDP, same addresses.
    let mut icmp6 = tcp6[..40].to_vec();
    icmp6[4..7].copy_from_slice(&[0, 10, 58]);
    icmp6.extend_from_slice(&[128, 0, 0, 0, 0x12, 0x34, 0, 9, b'h', b'i']);
    let mut udp6 = tcp6[..40].to_vec();
    udp6[4..7].copy_from_slice(&[0, 10, 17]);
    udp6.extend_from_slice(&[3, 0xe8, 0, 53, 0, 10, 0, 0, b'h', b'i']);
    let udp4: &[u8] = &[
        0x45, 0, 0, 30, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 100, 64, 0, 1, 10, 0, 0, 2, //
        3, 0xe8, 0, 53, 0, 10, 0, 0, b'h', b'i',
    ];
    let eth = |ether_type: &[u8], rest: &[u8]| {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        f.extend_from_slice(ether_type);
        f.extend_from_slice(rest);
        f
    };
    // PPPoE session 0x0101 (length = PPP field + IP), Ethernet padding after it.
    let pppoe = |ppp: &[u8], ip: &[u8]| {
        let mut s = vec![0x11, 0, 0x01, 0x01];
        s.extend_from_slice(&((ppp.len() + ip.len()) as u16).to_be_bytes());
        s.extend_from_slice(ppp);
        s.extend_from_slice(ip);
        s.extend_from_slice(&[0; 6]);
        s
    };
    let vlan_pppoe4 = eth(&[0x81, 0, 0, 7, 0x88, 0x64], &pppoe(&[0, 0x21], udp4));
    let pppoe6 = eth(&[0x88, 0x64], &pppoe(&[0, 0x57], &tcp6));
    let pppoe6_compressed = eth(&[0x88, 0x64], &pppoe(&[0x57], &icmp6));
    let eth6 = eth(&[0x86, 0xdd], &tcp6);
    let mut sll2 = vec![
        0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    sll2.extend_from_slice(&udp6);
    let p = preparer();
    for (lt, b) in [
        (linktype::ETHERNET, &vlan_pppoe4[..]),
        (linktype::ETHERNET, &pppoe6[..]),
        (linktype::ETHERNET, &pppoe6_compressed[..]),
        (linktype::ETHERNET, &eth6[..]),
        (linktype::LINUX_SLL2, &sll2[..]),
        (linktype::RAW, &icmp6[..]),
        (linktype::IPV6, &tcp6[..]),
    ] {
        assert!(
            fast(lt, b, &mut LinkInfo::default()).is_some(),
            "link type {lt}: {b:02x?}"
        );
        let d = decode(lt, b).unwrap();
        assert_eq!(p.prepare_bytes(lt, b), Ok((p.prepare(&d), d.link)));
    }
    let d = decode(linktype::ETHERNET, &vlan_pppoe4).unwrap();
    assert_eq!(
        (d.link.vlan(), d.link.pppoe_session()),
        (Some(7), Some(0x0101))
    );
    assert_eq!((d.sport, d.dport, d.payload_len), (1000, 53, 2));
    let d = decode(linktype::ETHERNET, &pppoe6_compressed).unwrap();
    assert_eq!(
        (d.proto, d.sport, d.icmp_seq, d.payload_len),
        (Proto::Icmpv6, 0x1234, 9, 2)
    );
    // Not on the fast path: an extension header, a PPP control protocol.
    let mut hop = tcp6.clone();
    hop[6] = 0;
    assert!(fast(linktype::RAW, &hop, &mut LinkInfo::default()).is_none());
    let lcp = eth(&[0x88, 0x64], &pppoe(&[0xc0, 0x21], udp4));
    assert!(fast(linktype::ETHERNET, &lcp, &mut LinkInfo::default()).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Generated packets, whole, mutated and cut.
    #[test]
    fn prepare_bytes_is_decode_then_prepare(
        (lt, frame) in arb_frame(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop_oneof![2 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
    ) {
        let p = preparer();
        prop_assert_eq!(p.prepare_bytes(lt, &frame), slow(&p, lt, &frame));
        let mut m = frame.clone();
        for (at, v) in &flips {
            let i = at.index(m.len());
            m[i] = *v;
        }
        let keep = cut.map_or(m.len(), |c| c.index(m.len() + 1));
        let m = &m[..keep];
        prop_assert_eq!(p.prepare_bytes(lt, m), slow(&p, lt, m));
    }

    /// Random bytes on every link type (and a few others).
    #[test]
    fn prepare_bytes_is_decode_then_prepare_on_random_bytes(
        lt in prop_oneof![prop::sample::select(linktype::SUPPORTED.to_vec()), any::<u16>()],
        head in prop::sample::select(vec![
            vec![],
            vec![0x45u8],
            vec![8, 0],
            vec![0x81, 0, 0, 1, 8, 0, 0x45],
            vec![0x60],
            vec![0x86, 0xdd, 0x60],
            vec![0x88, 0x64, 0x11, 0, 0, 1],
            vec![0x88, 0x64, 0x11, 0, 0, 1, 0, 60, 0, 0x57, 0x60],
        ]),
        bytes in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let p = preparer();
        let b = [&head[..], &bytes[..]].concat();
        prop_assert_eq!(p.prepare_bytes(lt, &b), slow(&p, lt, &b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Prepared in place over the slot of a previous packet (as the replay
    /// reuses its batch slots): the same as into a fresh one.
    #[test]
    fn prepare_bytes_into_a_used_slot_is_prepare_bytes(
        (lt0, frame0) in arb_frame(),
        (lt, frame) in arb_frame(),
    ) {
        let p = preparer();
        let (mut slot, mut link) = (Prepared::EMPTY, LinkInfo::default());
        let _ = p.prepare_bytes_into(lt0, &frame0, &mut slot, &mut link);
        let r = p.prepare_bytes_into(lt, &frame, &mut slot, &mut link);
        prop_assert_eq!(r.map(|()| (slot, link)), slow(&p, lt, &frame));
        // The replay's form, the packet by reference: the same again.
        let pkt = crate::source::RawPacket { linktype: lt, data: &frame, ..crate::source::RawPacket::EMPTY };
        let r = p.prepare_packet_into(&pkt, &mut slot, &mut link);
        prop_assert_eq!(r.map(|()| (slot, link)), slow(&p, lt, &frame));
    }
}

/// The flow key hash `find_flow` computes for the flow whose inside copy this is (`internal`
/// the subscriber's end, `remote` the other), as it builds the key: both ends IPv4, else
/// `None` (the table then hashes the key itself).
fn table_flow_hash(p: &Prepared, internal: &Ep, remote: &Ep) -> Option<u64> {
    let (i, r) = Ep::both_v4(internal, remote)?;
    Some(Correlator::key_hash(&FlowKey {
        internal: i,
        remote: r,
        internal_port: internal.port,
        remote_port: remote.port,
        proto: p.proto,
        fam: 0,
    }))
}

/// The preparer's side of the round-14 contract (`Prepared::flow_hash`): the hash an inside copy
/// carries for its direction, where not 0, is the table's hash of its flow key; it is set for
/// every IPv4 flow with one subscriber end, and 0 where the preparer sets none.
fn carried_hash_is_the_tables(p: &Prepared) -> Result<(), TestCaseError> {
    let expected = match (p.src_sub(), p.dst_sub()) {
        (true, false) => table_flow_hash(p, &p.src, &p.dst).unwrap_or(0),
        (false, true) => table_flow_hash(p, &p.dst, &p.src).unwrap_or(0),
        _ => 0,
    };
    prop_assert_eq!(p.flow_hash, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    /// `find_flow` uses an inside copy's carried flow hash as the key's hash (round 14): it
    /// must be exactly the hash the table computes, on every packet the preparer reads (the
    /// fast path and `decode` then `prepare`), IPv4 and IPv6, subscriber ends or not.
    #[test]
    fn carried_flow_hash_is_the_tables(
        (lt, frame) in arb_frame(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
    ) {
        let p = preparer();
        let mut m = frame.clone();
        for (at, v) in &flips {
            let i = at.index(m.len());
            m[i] = *v;
        }
        for b in [&frame, &m] {
            if let Ok((prep, _)) = p.prepare_bytes(lt, b) {
                carried_hash_is_the_tables(&prep)?;
            }
            if let Ok((prep, _)) = slow(&p, lt, b) {
                carried_hash_is_the_tables(&prep)?;
            }
        }
    }
}

/// The fast path against the one it replaced (`decode::fast_reference`, round 11's, kept for
/// these tests): the same packets taken (`Some` exactly where it was), the same fields and
/// link details for each. `prepare_bytes_is_decode_then_prepare` alone would not see a packet
/// the rewrite sends to `decode` that the old path read (the result is the same, only slower).
fn same_as_reference(lt: u16, b: &[u8]) -> Result<(), TestCaseError> {
    let (mut new_link, mut old_link) = (
        {
            // Every detail present, the link as a previous packet may leave it.
            let mut l = LinkInfo::default();
            l.push_vlan(2);
            l.push_vlan(1);
            l.set_ifindex(3);
            l.set_pkttype(4);
            l.set_pppoe_session(5);
            l
        },
        LinkInfo::default(),
    );
    let new = fast(lt, b, &mut new_link);
    let old = crate::decode::fast_reference::fast(lt, b, &mut old_link);
    prop_assert_eq!(new, old.map(|o| o.words()), "link type {}: {:02x?}", lt, b);
    if new.is_some() {
        prop_assert_eq!(new_link, old_link, "link type {}: {:02x?}", lt, b);
    }
    Ok(())
}

/// Ethernet, IPv4 with a 20-byte header, TCP with a 20-byte header, UDP or ICMP echo: the
/// frames the replay mostly reads, whole or with their lengths off.
fn arb_plain_ethernet_ipv4() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![6u8, 17, 1]),
        prop::sample::select(vec![8u8, 0, 3, 11]),
        any::<[u8; 12]>(),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<u8>(), 0..8),
        arb_len_delta(),
        prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x0001]),
        arb_v4(),
        arb_v4(),
    )
        .prop_map(
            |(proto, icmp_type, fields, payload, pad, len_delta, frag, src, dst)| {
                let l4 = l4_bytes(proto, 5, icmp_type, &fields, &payload);
                let total_len = with_delta(20 + l4.len(), len_delta);
                let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0];
                f.extend_from_slice(&total_len.to_be_bytes());
                f.extend_from_slice(&[0x1c, 0x46]);
                f.extend_from_slice(&frag.to_be_bytes());
                f.extend_from_slice(&[64, proto, 0x12, 0x34]);
                f.extend_from_slice(&src);
                f.extend_from_slice(&dst);
                f.extend_from_slice(&l4);
                f.extend_from_slice(&pad);
                f
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Generated frames of every kind, whole, mutated anywhere and cut anywhere.
    #[test]
    fn fast_path_takes_what_it_took_and_reads_the_same(
        (lt, frame) in arb_frame(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop_oneof![2 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
    ) {
        same_as_reference(lt, &frame)?;
        let mut m = frame.clone();
        for (at, v) in &flips {
            let i = at.index(m.len());
            m[i] = *v;
        }
        let keep = cut.map_or(m.len(), |c| c.index(m.len() + 1));
        same_as_reference(lt, &m[..keep])?;
    }

    /// The common frame with bytes of its headers (the first 60) changed, single bits
    /// flipped, and cut at every length up to them.
    #[test]
    fn fast_path_on_common_frames_with_header_bytes_changed(
        frame in arb_plain_ethernet_ipv4(),
        sets in prop::collection::vec((0usize..60, any::<u8>()), 0..3),
        bits in prop::collection::vec((0usize..60, 0u8..8), 0..3),
        cut in prop_oneof![2 => Just(None), 1 => (0usize..70).prop_map(Some)],
    ) {
        let mut m = frame;
        for &(at, v) in &sets {
            if at < m.len() {
                m[at] = v;
            }
        }
        for &(at, bit) in &bits {
            if at < m.len() {
                m[at] ^= 1 << bit;
            }
        }
        let keep = cut.map_or(m.len(), |c| c.min(m.len()));
        same_as_reference(linktype::ETHERNET, &m[..keep])?;
        let p = preparer();
        prop_assert_eq!(p.prepare_bytes(linktype::ETHERNET, &m[..keep]), slow(&p, linktype::ETHERNET, &m[..keep]));
    }

    /// Random bytes after a few likely starts, on every link type (and a few others).
    #[test]
    fn fast_path_on_random_bytes_takes_what_it_took(
        lt in prop_oneof![prop::sample::select(linktype::SUPPORTED.to_vec()), any::<u16>()],
        head in prop::sample::select(vec![
            vec![],
            vec![0x45u8],
            vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x45],
            vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x46],
            vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6],
            vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17],
            vec![8, 0],
            vec![0x81, 0, 0, 1, 8, 0, 0x45],
            vec![0x60],
            vec![0x86, 0xdd, 0x60],
            vec![0x88, 0x64, 0x11, 0, 0, 1],
        ]),
        bytes in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let b = [&head[..], &bytes[..]].concat();
        same_as_reference(lt, &b)?;
    }
}
