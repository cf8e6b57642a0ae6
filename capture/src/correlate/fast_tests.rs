//! [`Preparer::prepare_bytes`] returns exactly what `decode` then `prepare` return: on generated
//! packets of every kind the fast path reads, on mutations and truncations of them, and on
//! random bytes.

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
            prop_oneof![
                3 => Just(0i32),
                1 => -30i32..30,
                1 => any::<u16>().prop_map(|v| i32::from(v) - 100_000),
            ],
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
                let mut l4 = Vec::new();
                match proto {
                    6 => {
                        l4.extend_from_slice(&fields[..12]);
                        l4.push(doff << 4 | (fields[0] & 0x0f));
                        l4.push(fields[1]);
                        l4.extend_from_slice(&fields[2..8]);
                        l4.resize(usize::from(doff) * 4, 0xa5);
                    }
                    1 => {
                        l4.push(icmp_type);
                        l4.extend_from_slice(&fields[..7]);
                    }
                    _ => l4.extend_from_slice(&fields[..8]),
                }
                l4.extend_from_slice(&payload);
                let header_len = usize::from(ihl) * 4;
                let total = (header_len + l4.len()) as i32;
                let total_len = if len_delta < -50_000 {
                    (len_delta + 100_000) as u16
                } else {
                    (total + len_delta).clamp(0, 0xffff) as u16
                };
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

/// A link layer around `ip`: (link type, frame).
fn arb_frame() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let tpid = prop::sample::select(vec![0x8100u16, 0x88a8, 0x9100, 0x9200]);
    let inner = prop_oneof![
        8 => Just(0x0800u16),
        1 => prop::sample::select(vec![0x86ddu16, 0x8864, 0x0806, 0x8100]),
        1 => any::<u16>(),
    ];
    (
        0u8..6,
        prop::collection::vec((tpid, any::<u16>()), 0..6),
        inner,
        prop_oneof![3 => 0u16..8, 1 => any::<u16>()],
        any::<u32>(),
        any::<[u8; 8]>(),
        arb_ipv4(),
    )
        .prop_map(|(kind, tags, inner, pkttype, ifindex, addr, ip)| {
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
            walk.extend_from_slice(&ip);
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
                    [linktype::IPV4, linktype::DLT_RAW_12, linktype::DLT_RAW_14]
                        [ifindex as usize % 3],
                    ip,
                ),
                _ => {
                    let lt = [
                        linktype::NULL,
                        linktype::LOOP,
                        linktype::PPP,
                        linktype::IPV6,
                    ][ifindex as usize % 4];
                    let mut f = match lt {
                        linktype::NULL => vec![2, 0, 0, 0],
                        linktype::LOOP => vec![0, 0, 0, 2],
                        linktype::PPP => vec![0xff, 0x03, 0x00, 0x21],
                        _ => Vec::new(),
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
        assert!(fast_v4(lt, b).is_some(), "link type {lt}");
        let d = decode(lt, b).unwrap();
        assert_eq!(p.prepare_bytes(lt, b), Ok((p.prepare(&d), d.link)));
    }
    let d = decode(linktype::ETHERNET, &eth).unwrap();
    assert_eq!((d.link.vlan, d.link.vlan_outer), (Some(100), Some(10)));
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
        head in prop::sample::select(vec![vec![], vec![0x45u8], vec![8, 0], vec![0x81, 0, 0, 1, 8, 0, 0x45]]),
        bytes in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let p = preparer();
        let b = [&head[..], &bytes[..]].concat();
        prop_assert_eq!(p.prepare_bytes(lt, &b), slow(&p, lt, &b));
    }
}
