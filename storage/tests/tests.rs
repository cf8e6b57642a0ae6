//! natrec-storage integration tests: one binary (habit 17), shared helpers
//! at the top, one module per concern.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use natrec_storage::format::{file_name, FileKind};
use natrec_storage::{
    EndReason, HoldTimes, Holder, Mapping, Proto, Query, Store, StoreConfig, StoreError,
    NANOS_PER_SEC,
};

/// 2026-03-01T00:00:00Z in ns.
const T0: i64 = 1_772_323_200 * NANOS_PER_SEC;
const S: i64 = NANOS_PER_SEC;
const H: i64 = 3600 * NANOS_PER_SEC;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mapping(
    proto: Proto,
    internal: &str,
    public: &str,
    first: i64,
    last: i64,
    end: EndReason,
) -> Mapping {
    Mapping {
        proto,
        internal: sa(internal),
        public: sa(public),
        remote: sa("198.51.100.9:443"),
        first_ns: first,
        last_ns: last,
        end,
        packets_out: 3,
        packets_in: 2,
        flags: 0,
    }
}

fn new_store(dir: &Path, cfg: StoreConfig) -> Store {
    Store::create(&dir.join("store"), cfg).unwrap()
}

fn lookup_at(store: &Store, public: &str, t: i64) -> (Vec<Holder>, Vec<StoreError>) {
    let p = sa(public);
    let o = store
        .reader()
        .lookup(&Query::at(p.ip(), p.port(), t))
        .unwrap();
    (o.holders, o.errors)
}

fn part_path(store: &Store, start: i64, seg: u32, kind: FileKind) -> PathBuf {
    store
        .dir()
        .join("partitions")
        .join(file_name(start, seg, kind))
}

fn part_name(start: i64, seg: u32) -> String {
    file_name(start, seg, FileKind::Sealed)
}

mod roundtrip {
    use super::*;
    use natrec_storage::format::{Record, SF_CARRIED, SF_LATE};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use zerocopy::IntoBytes;

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(a, p)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                p,
                0,
                0
            ))),
        ]
    }

    pub(crate) fn arb_mapping() -> impl Strategy<Value = Mapping> {
        let proto = prop_oneof![
            Just(Proto::Icmp),
            Just(Proto::Tcp),
            Just(Proto::Udp),
            Just(Proto::Icmpv6)
        ];
        let end = (0u8..=6).prop_map(|c| EndReason::from_code(c).unwrap());
        (
            proto,
            addr(),
            addr(),
            addr(),
            any::<i64>(),
            any::<i64>(),
            end,
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
        )
            .prop_map(
                |(proto, internal, public, remote, a, b, end, po, pi, flags)| Mapping {
                    proto,
                    internal,
                    public,
                    remote,
                    first_ns: a.min(b),
                    last_ns: a.max(b),
                    end,
                    packets_out: po,
                    packets_in: pi,
                    flags,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn decode_encode_is_identity(m in arb_mapping(), sf in prop_oneof![Just(0), Just(SF_CARRIED), Just(SF_LATE)]) {
            let r = Record::encode(&m, sf).unwrap();
            let back = Record::read(r.as_bytes()).unwrap();
            prop_assert_eq!(back, r);
            prop_assert_eq!(back.decode().unwrap(), m);
            prop_assert_eq!(back.store_flags & (SF_CARRIED | SF_LATE), sf);
        }

        #[test]
        fn any_single_bit_flip_is_caught(m in arb_mapping(), bit in 0usize..(96 * 8)) {
            let r = Record::encode(&m, 0).unwrap();
            let mut b = r.as_bytes().to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Record::read(&b).is_err());
        }
    }
}

mod basics {
    use super::*;

    #[test]
    fn second_writer_is_refused_while_first_runs() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let w = store.writer().unwrap();
        let e = store.writer().unwrap_err();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("another natrec is writing"), "{e}");
        drop(w);
        store.writer().unwrap();
    }

    #[test]
    fn port_reuse_over_time_returns_only_the_holder_at_that_time() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let t = T0 + 10 * H;
        let a = mapping(
            Proto::Udp,
            "100.64.0.2:5000",
            "203.0.113.1:5000",
            t,
            t + 300 * S,
            EndReason::Idle,
        );
        let b = mapping(
            Proto::Udp,
            "100.64.0.3:6000",
            "203.0.113.1:5000",
            t + 1800 * S,
            t + 2400 * S,
            EndReason::Idle,
        );
        // The Open states first, as the correlator writes them.
        w.append(&Mapping {
            end: EndReason::Open,
            last_ns: a.first_ns,
            ..a
        })
        .unwrap();
        w.append(&a).unwrap();
        w.append(&Mapping {
            end: EndReason::Open,
            last_ns: b.first_ns,
            ..b
        })
        .unwrap();
        w.append(&b).unwrap();
        // Before sealing: answered from the active log.
        let (h, e) = lookup_at(&store, "203.0.113.1:5000", t + 120 * S);
        assert!(e.is_empty());
        assert_eq!(h.iter().map(|h| h.mapping).collect::<Vec<_>>(), vec![a]);
        w.seal_all().unwrap();
        for (at, want) in [
            (t + 120 * S, vec![a]),
            (t + 2100 * S, vec![b]),
            (t + 1200 * S, vec![]),
        ] {
            let (h, e) = lookup_at(&store, "203.0.113.1:5000", at);
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(
                h.iter().map(|h| h.mapping).collect::<Vec<_>>(),
                want,
                "at +{}s",
                (at - t) / S
            );
        }
        // a is held 120 s (udp_stream) after its last packet, then nothing.
        assert_eq!(
            lookup_at(&store, "203.0.113.1:5000", t + 419 * S).0.len(),
            1
        );
        assert_eq!(
            lookup_at(&store, "203.0.113.1:5000", t + 421 * S).0.len(),
            0
        );
        // Other port, other address family: nothing.
        assert!(lookup_at(&store, "203.0.113.1:5001", t + 120 * S)
            .0
            .is_empty());
        assert!(lookup_at(&store, "[::ffff:203.0.113.1]:5000", t + 120 * S)
            .0
            .is_empty());
        let o = store
            .reader()
            .lookup(&Query {
                port: None,
                from_ns: t,
                to_ns: t + H,
                ..Query::at(ip("203.0.113.1"), 0, 0)
            })
            .unwrap();
        assert_eq!(
            o.holders.iter().map(|h| h.mapping).collect::<Vec<_>>(),
            vec![a, b]
        );
        assert!(store.reader().verify().unwrap().is_empty());
    }

    #[test]
    fn bad_query_and_bad_mapping_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let q = Query {
            from_ns: 5,
            to_ns: 4,
            ..Query::at(ip("192.0.2.1"), 1, 0)
        };
        assert!(matches!(
            store.reader().lookup(&q),
            Err(StoreError::BadQuery { .. })
        ));
        let mut w = store.writer().unwrap();
        let m = mapping(
            Proto::Tcp,
            "10.0.0.1:1",
            "192.0.2.1:1",
            T0 + 5,
            T0 + 4,
            EndReason::Fin,
        );
        assert!(matches!(w.append(&m), Err(StoreError::BadMapping { .. })));
        let m = mapping(
            Proto::Tcp,
            "10.0.0.1:1",
            "192.0.2.1:1",
            -5,
            4,
            EndReason::Fin,
        );
        assert!(matches!(w.append(&m), Err(StoreError::BadMapping { .. })));
        assert_eq!(w.stats().records_appended, 0);
    }
}

mod carry {
    use super::*;

    /// A TCP mapping opened in hour 0 and closed in hour 3: a lookup at a time
    /// in hour 1 or 2 reads only that hour's partition and finds it there.
    #[test]
    fn held_mapping_is_found_in_every_hour_from_that_hours_partition() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        let closed = Mapping {
            last_ns: T0 + 3 * H + 200 * S,
            end: EndReason::Fin,
            packets_out: 900,
            ..open
        };
        w.append(&open).unwrap();
        for hour in 1..=3 {
            w.advance(T0 + hour * H + 61 * S).unwrap();
        }
        w.append(&closed).unwrap();
        w.seal_all().unwrap();
        let st = w.stats();
        assert_eq!(st.partitions_sealed, 4);
        assert_eq!(st.carried, 3);
        for hour in 0..=3 {
            let (h, e) = lookup_at(&store, "203.0.113.7:1024", T0 + hour * H + 150 * S);
            assert!(e.is_empty());
            assert_eq!(h.len(), 1, "hour {hour}");
            assert_eq!(h[0].partition, part_name(T0 + hour * H, 0), "hour {hour}");
            assert_eq!(h[0].mapping.internal, open.internal);
        }
        // Hour 3 has the final state; held 120 s after FIN.
        let (h, _) = lookup_at(&store, "203.0.113.7:1024", T0 + 3 * H + 300 * S);
        assert_eq!(h[0].mapping, closed);
        assert_eq!(h[0].held_until_ns, Some(closed.last_ns + 120 * S));
        assert!(lookup_at(&store, "203.0.113.7:1024", T0 + 3 * H + 321 * S)
            .0
            .is_empty());
        // Export: exactly once, final state.
        let mut seen = Vec::new();
        let errs = store
            .reader()
            .export(None, None, &mut |h| {
                seen.push(h.mapping);
                Ok(())
            })
            .unwrap();
        assert!(errs.is_empty());
        assert_eq!(seen, vec![closed]);
        let parts = store.reader().partitions().unwrap();
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.records, p.carried_in))
                .collect::<Vec<_>>(),
            vec![(1, 0), (1, 1), (1, 1), (1, 0)]
        );
        assert!(parts.iter().all(|p| p.problem.is_none()));
    }

    #[test]
    fn seal_all_carries_a_still_open_mapping_one_partition_only() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        w.append(&open).unwrap();
        w.seal_all().unwrap();
        assert_eq!(w.stats().partitions_sealed, 2);
        assert_eq!(w.stats().open_at_seal_all, 1);
        assert_eq!(
            lookup_at(&store, "203.0.113.7:1024", T0 + H + 5 * S)
                .0
                .len(),
            1
        );
        assert_eq!(store.reader().partitions().unwrap().len(), 2);
    }

    /// An idle-closed TCP mapping is held tcp_open_s (2 h 4 min) after its
    /// last packet: carried through the following partitions until then.
    #[test]
    fn finite_hold_is_carried_until_it_ends() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let m = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 3000 * S,
            EndReason::Idle,
        );
        w.append(&m).unwrap();
        w.seal_all().unwrap();
        // held until T0 + 3000 s + 7440 s = T0 + 2 h 54 min: partitions 0, 1, 2.
        assert_eq!(w.stats().partitions_sealed, 3);
        let (h, _) = lookup_at(&store, "203.0.113.7:1024", T0 + 2 * H + 3000 * S);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].partition, part_name(T0 + 2 * H, 0));
        assert!(lookup_at(&store, "203.0.113.7:1024", T0 + 2 * H + 3300 * S)
            .0
            .is_empty());
    }
}

mod late {
    use super::*;

    /// A TCP mapping idle for its 2 h 4 min hold gets its final state written
    /// three partitions later: it goes to the active partition (no segment of
    /// its own), and a lookup in its first hour shows the final state.
    #[test]
    fn final_state_after_a_long_hold_is_routed_forward_and_shown() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:1000",
            "203.0.113.1:2000",
            T0 + 10 * S,
            T0 + 10 * S,
            EndReason::Open,
        );
        w.append(&open).unwrap();
        // Other traffic every 10 minutes keeps the later hours active.
        for i in 1..=20 {
            let t = T0 + i * 600 * S;
            let other = mapping(
                Proto::Udp,
                "100.64.0.9:53",
                &format!("203.0.113.9:{}", 1000 + i),
                t,
                t,
                EndReason::Open,
            );
            w.append(&other).unwrap();
            w.advance(t).unwrap();
        }
        // 3 h 20 min: the hold ran out; the final state names the last packet.
        let done = Mapping {
            last_ns: T0 + 20 * S,
            end: EndReason::Idle,
            ..open
        };
        w.append(&done).unwrap();
        w.seal_all().unwrap();
        let files: Vec<String> = std::fs::read_dir(d.path().join("store/partitions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            files.iter().all(|f| f.contains("-0000.")),
            "no extra segment: {files:?}"
        );
        let (held, errors) = lookup_at(&store, "203.0.113.1:2000", T0 + 15 * S);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(held.len(), 1);
        assert_eq!(
            held[0].mapping.end,
            EndReason::Idle,
            "the final state, three partitions later"
        );
        assert_eq!(held[0].mapping.last_ns, T0 + 20 * S);
    }

    #[test]
    fn late_record_goes_to_the_next_active_partition_and_is_still_found() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let early = mapping(
            Proto::Udp,
            "100.64.0.2:1000",
            "203.0.113.1:2000",
            T0 + 10 * S,
            T0 + 20 * S,
            EndReason::Idle,
        );
        let next = mapping(
            Proto::Udp,
            "100.64.0.3:1000",
            "203.0.113.1:3000",
            T0 + H + 10 * S,
            T0 + H + 20 * S,
            EndReason::Idle,
        );
        w.append(&early).unwrap();
        w.append(&next).unwrap();
        w.advance(T0 + H + 61 * S).unwrap(); // seals hour 0
        let late = mapping(
            Proto::Udp,
            "100.64.0.4:1000",
            "203.0.113.1:4000",
            T0 + 30 * S,
            T0 + 40 * S,
            EndReason::Idle,
        );
        w.append(&late).unwrap();
        assert_eq!(w.stats().late_records, 1);
        w.seal_all().unwrap();
        let (h, e) = lookup_at(&store, "203.0.113.1:4000", T0 + 35 * S);
        assert!(e.is_empty());
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].partition, part_name(T0 + H, 0));
        let parts = store.reader().partitions().unwrap();
        assert_eq!(parts[1].late_in, 1);
    }

    /// Sealing hands the carry to the seal thread, and the writer appends it
    /// later. A late record for the sealed hour that arrives before then must
    /// still go to the partition the carry creates (flagged late), as when
    /// the carry was appended at the seal, not to a new segment of its own.
    #[test]
    fn late_record_after_a_pending_carry_goes_where_the_carry_went() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let held = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        w.append(&held).unwrap();
        // Seals hour 0; nothing was appended to hour 1, so only the carry
        // creates it.
        w.advance(T0 + H + 61 * S).unwrap();
        let late = mapping(
            Proto::Udp,
            "100.64.0.4:1000",
            "203.0.113.1:4000",
            T0 + 30 * S,
            T0 + 40 * S,
            EndReason::Idle,
        );
        w.append(&late).unwrap();
        assert_eq!(w.stats().late_records, 1);
        assert_eq!(w.stats().carried, 1);
        assert!(!part_path(&store, T0, 1, FileKind::Active).exists());
        w.seal_all().unwrap();
        assert!(!part_path(&store, T0, 1, FileKind::Sealed).exists());
        let (h, e) = lookup_at(&store, "203.0.113.1:4000", T0 + 35 * S);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].partition, part_name(T0 + H, 0));
    }

    /// Two partitions due at once: the second one's seal thread takes the
    /// first one's carry (chained seals). The sealed bytes are those of a
    /// writer that seals one hour at a time and appends each carry before
    /// the next seal, whichever order the carried copies reach a log in.
    #[test]
    fn chained_seals_write_the_bytes_of_one_seal_at_a_time() {
        let write = |dir: &Path, one_at_a_time: bool| -> Vec<(String, Vec<u8>)> {
            let store = new_store(dir, StoreConfig::default());
            let mut w = store.writer().unwrap();
            for hour in 0..6i64 {
                for i in 0..40i64 {
                    let t = T0 + hour * H + (i * 97 + 13) * S;
                    let public = format!("203.0.113.{}:{}", 1 + i % 3, 1000 + hour * 100 + i);
                    let internal = format!("100.64.0.{}:{}", 2 + i % 5, 40000 + i);
                    let (proto, end, last) = match i % 4 {
                        0 => (Proto::Tcp, EndReason::Open, t),
                        1 => (Proto::Tcp, EndReason::Fin, t + 5 * S),
                        2 => (Proto::Udp, EndReason::Idle, t + 20 * S),
                        _ => (Proto::Udp, EndReason::Open, t),
                    };
                    let m = mapping(proto, &internal, &public, t, last, end);
                    w.append(&m).unwrap();
                    if i % 4 == 0 && hour % 2 == 0 {
                        // Its final state, two hours later (late).
                        w.append(&Mapping {
                            end: EndReason::Fin,
                            last_ns: t + 2 * H,
                            ..m
                        })
                        .unwrap();
                    }
                }
                if hour % 2 == 1 {
                    if one_at_a_time {
                        for k in (0..=hour - 1).rev() {
                            w.advance(T0 + (hour - k) * H + 61 * S).unwrap();
                            w.finish_carries().unwrap();
                        }
                    } else {
                        // Two hours due in one call.
                        w.advance(T0 + hour * H + 61 * S).unwrap();
                    }
                }
            }
            w.seal_all().unwrap();
            let mut parts: Vec<(String, Vec<u8>)> =
                std::fs::read_dir(store.dir().join("partitions"))
                    .unwrap()
                    .map(|e| {
                        let e = e.unwrap();
                        let name = e.file_name().to_string_lossy().into_owned();
                        (name, std::fs::read(e.path()).unwrap())
                    })
                    .collect();
            parts.sort();
            assert!(store.reader().verify().unwrap().is_empty());
            parts
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let chained = write(a.path(), false);
        let single = write(b.path(), true);
        assert!(chained.iter().all(|(n, _)| n.ends_with(".part")));
        assert!(chained.len() >= 6, "{chained:?}");
        assert_eq!(chained, single);
    }

    /// The writer reuses the route of the last record's partition; sealing
    /// and creating partitions must change it, also in the middle of one
    /// batch: a late record goes to the oldest active later partition as it
    /// is at that record, never into the sealed partition's old log.
    #[test]
    fn cached_route_follows_seals_and_new_partitions_within_a_batch() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let udp = |port: u16, first: i64| {
            mapping(
                Proto::Udp,
                "100.64.0.2:1000",
                &format!("203.0.113.1:{port}"),
                first,
                first + S,
                EndReason::Idle,
            )
        };
        let mut w = store.writer().unwrap();
        w.append(&udp(1, T0 + 10 * S)).unwrap(); // creates hour 0
        w.append(&udp(9, T0 + H + 5 * S)).unwrap(); // creates hour 1
        w.append(&udp(10, T0 + 15 * S)).unwrap(); // route: hour 0 -> hour 0
        w.advance(T0 + H + 61 * S).unwrap(); // seals hour 0; hour 1 stays
        assert_eq!(w.active_partitions(), 1);
        w.append(&udp(11, T0 + 35 * S)).unwrap(); // late: hour 1, not hour 0's old route
        assert_eq!(w.stats().late_records, 1);
        w.advance(T0 + 2 * H + 61 * S).unwrap(); // seals hour 1; nothing active
        assert_eq!(w.active_partitions(), 0);
        w.append_batch(&[
            udp(2, T0 + 3 * H + 10 * S), // creates hour 3
            udp(3, T0 + 30 * S),         // late: oldest active later = hour 3
            udp(4, T0 + 2 * H + 10 * S), // creates hour 2
            udp(5, T0 + 40 * S),         // late: now hour 2
            udp(6, T0 + 50 * S),         // late: hour 2 (cached route)
        ])
        .unwrap();
        assert_eq!(w.stats().late_records, 4);
        w.seal_all().unwrap();
        let where_is = |port: u16, t: i64| {
            let (h, e) = lookup_at(&store, &format!("203.0.113.1:{port}"), t);
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(h.len(), 1, "port {port}");
            h[0].partition.clone()
        };
        assert_eq!(where_is(1, T0 + 10 * S), part_name(T0, 0));
        assert_eq!(where_is(11, T0 + 35 * S), part_name(T0 + H, 0));
        assert_eq!(where_is(3, T0 + 30 * S), part_name(T0 + 3 * H, 0));
        assert_eq!(where_is(5, T0 + 40 * S), part_name(T0 + 2 * H, 0));
        assert_eq!(where_is(6, T0 + 50 * S), part_name(T0 + 2 * H, 0));
        // Never a second segment of hour 0.
        assert!(!part_path(&store, T0, 1, FileKind::Sealed).exists());

        // Late with no later partition active: a new segment of its own.
        drop(w);
        let mut w = store.writer().unwrap();
        w.append_batch(&[udp(7, T0 + 20 * S), udp(8, T0 + 25 * S)])
            .unwrap();
        assert_eq!(w.stats().late_records, 2);
        w.seal_all().unwrap();
        assert_eq!(where_is(7, T0 + 20 * S), part_name(T0, 1));
        assert_eq!(where_is(8, T0 + 25 * S), part_name(T0, 1));
    }

    /// A second replay into a store that already covers the same hour never
    /// touches the sealed file: it writes segment -0001.
    /// A record for a sealed hour that the pending carry is about to open a
    /// new segment of goes to that segment, not late to a later hour: as
    /// when the carry was appended at the seal.
    #[test]
    fn record_for_the_hour_a_pending_carry_reopens_is_not_late() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let udp = |internal: &str, t: i64| {
            mapping(
                Proto::Udp,
                internal,
                "203.0.113.1:2000",
                t,
                t + S,
                EndReason::Idle,
            )
        };
        {
            let mut w = store.writer().unwrap();
            w.append(&udp("100.64.0.2:1000", T0 + 10 * S)).unwrap();
            w.append(&udp("100.64.0.3:1000", T0 + H + 10 * S)).unwrap();
            w.seal_all().unwrap();
        }
        let mut w = store.writer().unwrap();
        let held = mapping(
            Proto::Tcp,
            "100.64.0.4:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        w.append(&held).unwrap(); // hour 0, segment 1
        w.advance(T0 + H + 61 * S).unwrap(); // sealed; its carry reopens hour 1
        w.append(&udp("100.64.0.5:1000", T0 + 2 * H + 10 * S))
            .unwrap();
        let y = udp("100.64.0.6:1000", T0 + H + 20 * S);
        w.append(&y).unwrap();
        // Only `held` (its hour sealed, nothing later active then).
        assert_eq!(w.stats().late_records, 1);
        w.seal_all().unwrap();
        drop(w);
        let (h, e) = lookup_at(&store, "203.0.113.1:2000", T0 + H + 20 * S);
        assert!(e.is_empty(), "{e:?}");
        let found: Vec<_> = h.iter().filter(|h| h.mapping == y).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].partition, part_name(T0 + H, 1));
    }

    #[test]
    fn second_replay_writes_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let a = mapping(
            Proto::Udp,
            "100.64.0.2:1000",
            "203.0.113.1:2000",
            T0 + 10 * S,
            T0 + 20 * S,
            EndReason::Idle,
        );
        let b = mapping(
            Proto::Udp,
            "100.64.0.9:1000",
            "203.0.113.1:2000",
            T0 + 10 * S,
            T0 + 25 * S,
            EndReason::Idle,
        );
        {
            let mut w = store.writer().unwrap();
            w.append(&a).unwrap();
            w.seal_all().unwrap();
        }
        let first = std::fs::read(part_path(&store, T0, 0, FileKind::Sealed)).unwrap();
        {
            let mut w = store.writer().unwrap();
            w.append(&b).unwrap();
            w.seal_all().unwrap();
        }
        assert_eq!(
            std::fs::read(part_path(&store, T0, 0, FileKind::Sealed)).unwrap(),
            first
        );
        assert!(part_path(&store, T0, 1, FileKind::Sealed).exists());
        let (h, e) = lookup_at(&store, "203.0.113.1:2000", T0 + 15 * S);
        assert!(e.is_empty());
        assert_eq!(h.iter().map(|h| h.mapping).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(h[1].partition, part_name(T0, 1));
    }
}

mod corruption {
    use super::*;

    fn two_hours(dir: &Path) -> (Store, Mapping, Mapping) {
        let store = new_store(dir, StoreConfig::default());
        let mut w = store.writer().unwrap();
        let a = mapping(
            Proto::Udp,
            "100.64.0.2:1000",
            "203.0.113.1:2000",
            T0 + 10 * S,
            T0 + 20 * S,
            EndReason::Idle,
        );
        let b = mapping(
            Proto::Udp,
            "100.64.0.3:1000",
            "203.0.113.1:2000",
            T0 + H + 10 * S,
            T0 + H + 20 * S,
            EndReason::Idle,
        );
        w.append(&a).unwrap();
        w.append(&b).unwrap();
        w.seal_all().unwrap();
        (store, a, b)
    }

    /// Byte offset of block `b` of a v2 sealed file, from its index
    /// (docs/FORMAT.md: footer `block_count` at 44, 32-byte entries before
    /// the footer, `offset` at 24 of an entry).
    fn block_offset(path: &Path, b: usize) -> usize {
        let bytes = std::fs::read(path).unwrap();
        let foot = bytes.len() - 64;
        assert_eq!(&bytes[foot..foot + 8], b"NATRECF2");
        let blocks = u32::from_le_bytes(bytes[foot + 44..foot + 48].try_into().unwrap()) as usize;
        let e = foot - 32 * blocks + 32 * b;
        u64::from_le_bytes(bytes[e + 24..e + 32].try_into().unwrap()) as usize
    }

    fn flip(path: &Path, offset: usize) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[offset] ^= 0x01;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn flipped_record_byte_is_reported_and_other_partitions_still_answer() {
        let d = tempfile::tempdir().unwrap();
        let (store, _a, b) = two_hours(d.path());
        let p0 = part_path(&store, T0, 0, FileKind::Sealed);
        let blk = block_offset(&p0, 0);
        flip(&p0, blk + 4); // inside block 0's columns (format v2)
        let q = Query {
            from_ns: T0,
            to_ns: T0 + 2 * H - 1,
            ..Query::at(ip("203.0.113.1"), 2000, 0)
        };
        let o = store.reader().lookup(&q).unwrap();
        assert_eq!(
            o.holders.iter().map(|h| h.mapping).collect::<Vec<_>>(),
            vec![b]
        );
        assert_eq!(o.errors.len(), 1);
        let msg = o.errors[0].to_string();
        assert!(
            matches!(&o.errors[0], StoreError::BadChecksum { path, .. } if *path == p0),
            "{msg}"
        );
        assert!(msg.contains(&format!("block 0 (bytes {blk}..")), "{msg}");
        let v = store.reader().verify().unwrap();
        assert!(!v.is_empty());
        assert!(v
            .iter()
            .all(|e| e.to_string().contains(&*p0.to_string_lossy())));
    }

    #[test]
    fn flipped_header_or_footer_byte_is_reported() {
        for off in [20usize, 64 + 96 + 20] {
            let d = tempfile::tempdir().unwrap();
            let (store, _a, b) = two_hours(d.path());
            let p0 = part_path(&store, T0, 0, FileKind::Sealed);
            flip(&p0, off);
            let q = Query {
                from_ns: T0,
                to_ns: T0 + 2 * H - 1,
                ..Query::at(ip("203.0.113.1"), 2000, 0)
            };
            let o = store.reader().lookup(&q).unwrap();
            assert_eq!(
                o.holders.iter().map(|h| h.mapping).collect::<Vec<_>>(),
                vec![b]
            );
            assert!(
                matches!(&o.errors[..], [StoreError::BadChecksum { what, .. }] if what.contains(if off == 20 { "header" } else { "footer" })),
                "{:?}",
                o.errors
            );
            let parts = store.reader().partitions().unwrap();
            assert!(parts[0].problem.is_some());
            assert!(parts[1].problem.is_none());
        }
    }

    /// A byte flipped in a record the lookup does not read is still found by
    /// verify (full checksum pass).
    #[test]
    fn verify_finds_damage_a_lookup_skips() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        // Three v2 blocks of 512 records: a lookup decodes only its own.
        for i in 0..1100u16 {
            let public = format!("203.0.113.1:{}", 1000 + i);
            w.append(&mapping(
                Proto::Udp,
                "100.64.0.2:1000",
                &public,
                T0 + 10 * S,
                T0 + 20 * S,
                EndReason::Idle,
            ))
            .unwrap();
        }
        w.seal_all().unwrap();
        let p0 = part_path(&store, T0, 0, FileKind::Sealed);
        flip(&p0, block_offset(&p0, 1) + 9); // inside block 1 (records 512..1023)
        let (h, e) = lookup_at(&store, "203.0.113.1:1003", T0 + 15 * S);
        assert_eq!((h.len(), e.len()), (1, 0));
        let (h, e) = lookup_at(&store, "203.0.113.1:2040", T0 + 15 * S);
        assert_eq!((h.len(), e.len()), (1, 0));
        let (h, e) = lookup_at(&store, "203.0.113.1:1600", T0 + 15 * S);
        assert_eq!((h.len(), e.len()), (0, 1));
        let v = store.reader().verify().unwrap();
        assert_eq!(v.len(), 1, "{v:?}"); // block 1's CRC
        assert!(v[0].to_string().contains("block 1 "), "{v:?}");
    }
}

mod recovery {
    use super::*;

    fn log_path(store: &Store) -> PathBuf {
        part_path(store, T0, 0, FileKind::Active)
    }

    fn m(i: u16) -> Mapping {
        mapping(
            Proto::Udp,
            "100.64.0.2:1000",
            &format!("203.0.113.1:{}", 1000 + i),
            T0 + 10 * S,
            T0 + 20 * S,
            EndReason::Idle,
        )
    }

    #[test]
    fn torn_tail_is_ignored_zeroed_and_never_resurrects() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        {
            let mut w = store.writer().unwrap();
            for i in 0..10 {
                w.append(&m(i)).unwrap();
            }
            // Dropped: the writer flushes on drop; a process kill would leave
            // the same bytes in the kernel's page cache.
        }
        // Simulate a torn append (half a record in slot 10) and a stale
        // complete record beyond it (slot 12), as a power loss might leave.
        let path = log_path(&store);
        let mut bytes = std::fs::read(&path).unwrap();
        let slot = |i: usize| 64 + i * 96;
        let good11 = bytes[slot(9)..slot(10)].to_vec();
        bytes[slot(10)..slot(10) + 48].copy_from_slice(&good11[..48]);
        let stale = {
            use zerocopy::IntoBytes;
            natrec_storage::format::Record::encode(&m(77), 0)
                .unwrap()
                .as_bytes()
                .to_vec()
        };
        bytes[slot(12)..slot(13)].copy_from_slice(&stale);
        std::fs::write(&path, &bytes).unwrap();

        // A reader sees exactly the 10 committed records.
        let parts = store.reader().partitions().unwrap();
        assert_eq!(parts[0].records, 10);
        assert!(lookup_at(&store, "203.0.113.1:1077", T0 + 15 * S)
            .0
            .is_empty());

        let mut w = store.writer().unwrap();
        assert_eq!(w.stats().recovered_zeroed_slots, 2);
        w.append(&m(10)).unwrap();
        w.append(&m(11)).unwrap();
        w.append(&m(12)).unwrap();
        w.flush().unwrap();
        assert_eq!(store.reader().partitions().unwrap()[0].records, 13);
        w.seal_all().unwrap();
        for i in 0..13 {
            assert_eq!(
                lookup_at(&store, &format!("203.0.113.1:{}", 1000 + i), T0 + 15 * S)
                    .0
                    .len(),
                1,
                "{i}"
            );
        }
        assert!(lookup_at(&store, "203.0.113.1:1077", T0 + 15 * S)
            .0
            .is_empty());
        assert!(store.reader().verify().unwrap().is_empty());
    }

    #[test]
    fn log_cut_mid_record_and_empty_log_recover() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        {
            let mut w = store.writer().unwrap();
            for i in 0..3 {
                w.append(&m(i)).unwrap();
            }
            w.flush().unwrap();
        }
        // File shortened in the middle of record 2 (a file system that lost the tail).
        let path = log_path(&store);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(64 + 2 * 96 + 50).unwrap();
        drop(f);
        // A log created but never written (crash right after create).
        std::fs::write(part_path(&store, T0 + H, 0, FileKind::Active), b"").unwrap();
        // Readers see the two whole records and an empty log.
        let parts = store.reader().partitions().unwrap();
        assert_eq!(
            parts.iter().map(|p| p.records).collect::<Vec<_>>(),
            vec![2, 0]
        );
        assert!(parts.iter().all(|p| p.problem.is_none()), "{parts:?}");
        assert_eq!(
            lookup_at(&store, "203.0.113.1:1001", T0 + H + 10 * S)
                .0
                .len(),
            0
        );
        let mut w = store.writer().unwrap();
        w.append(&m(5)).unwrap();
        w.seal_all().unwrap();
        let mut seen = Vec::new();
        store
            .reader()
            .export(None, None, &mut |h| {
                seen.push(h.mapping.public.port());
                Ok(())
            })
            .unwrap();
        seen.sort();
        assert_eq!(seen, vec![1000, 1001, 1005]);
        assert!(store.reader().verify().unwrap().is_empty());
    }

    /// A new log's header is durable only with the first flush: a power
    /// loss before it can leave records behind a zero header. The next
    /// writer writes the header again from the file name. An older
    /// natrec's log (version 2 here) keeps its records; a version 3 log's
    /// records are dropped (their generation was in the lost header, and a
    /// used-again file may hold an earlier use's records: FORMAT.md, "Log
    /// generations"), every slot zeroed; none was promised. A reader
    /// meanwhile sees an empty log, not an error.
    #[test]
    fn zero_header_before_the_first_flush_is_rewritten_and_records_kept() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        {
            let mut w = store.writer().unwrap();
            for i in 0..3 {
                w.append(&m(i)).unwrap();
            }
        }
        let path = log_path(&store);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..64].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let parts = store.reader().partitions().unwrap();
        assert_eq!(parts.iter().map(|p| p.records).collect::<Vec<_>>(), vec![0]);
        {
            let w = store.writer().unwrap();
            assert_eq!(w.stats().recovered_log_headers, 1);
            assert_eq!(w.stats().recovered_zeroed_slots, 3);
            let b = std::fs::read(&path).unwrap();
            assert_eq!(&b[..8], b"NATRECL1");
            assert_eq!(&b[8..12], &3u32.to_le_bytes());
            assert_eq!(&b[36..40], &1u32.to_le_bytes());
            assert!(b[64..].iter().all(|&x| x == 0), "every slot zeroed");
        }
        let parts = store.reader().partitions().unwrap();
        assert_eq!(parts.iter().map(|p| p.records).collect::<Vec<_>>(), vec![0]);

        // The same crash on a version 2 log: the records are kept.
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        {
            let mut w = store.writer().unwrap();
            for i in 0..3 {
                w.append(&m(i)).unwrap();
            }
        }
        let path = log_path(&store);
        as_older_log(&path, 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..64].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let parts = store.reader().partitions().unwrap();
        assert_eq!(parts.iter().map(|p| p.records).collect::<Vec<_>>(), vec![0]);
        let mut w = store.writer().unwrap();
        assert_eq!(w.stats().recovered_log_headers, 1);
        assert_eq!(&std::fs::read(&path).unwrap()[..8], b"NATRECL1");
        assert_eq!(&std::fs::read(&path).unwrap()[8..12], &2u32.to_le_bytes());
        w.append(&m(3)).unwrap();
        w.seal_all().unwrap();
        let mut seen = Vec::new();
        store
            .reader()
            .export(None, None, &mut |h| {
                seen.push(h.mapping.public.port());
                Ok(())
            })
            .unwrap();
        seen.sort();
        assert_eq!(seen, vec![1000, 1001, 1002, 1003]);
        assert!(store.reader().verify().unwrap().is_empty());

        // A header that is damaged, not zero, is still an error.
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        {
            let mut w = store.writer().unwrap();
            w.append(&m(0)).unwrap();
        }
        let path = log_path(&store);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            store.writer(),
            Err(StoreError::BadChecksum { .. } | StoreError::Corrupt { .. })
        ));
    }

    /// The log `path` rewritten as an older natrec wrote it: header
    /// `version` (1: every record's CRC a CRC-32/IEEE; 2: a CRC-32C of the
    /// record alone), generation field zero. Slots that are not records of
    /// this log (zero, torn) are left as they are.
    fn as_older_log(path: &Path, version: u32) {
        use natrec_storage::format::{header_crc, Record, RecordCrc};
        use zerocopy::{FromBytes, IntoBytes};
        let mut b = std::fs::read(path).unwrap();
        assert_eq!(&b[8..12], &3u32.to_le_bytes(), "a new log is version 3");
        let generation = u32::from_le_bytes(b[36..40].try_into().unwrap());
        let now = RecordCrc::of_generation(generation);
        let then = if version == 1 {
            RecordCrc::Ieee
        } else {
            RecordCrc::Castagnoli
        };
        b[8..12].copy_from_slice(&version.to_le_bytes());
        b[36..40].fill(0);
        let c = header_crc(&b[..64]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        for slot in b[64..].chunks_exact_mut(96) {
            let r = Record::mut_from_bytes(slot).unwrap();
            if r.check_crc_with(now).is_ok() {
                r.crc = zerocopy::little_endian::U32::new(then.of(r));
                assert!(Record::read_with(r.as_bytes(), then).is_ok());
            }
        }
        std::fs::write(path, &b).unwrap();
    }

    fn as_version_1_log(path: &Path) {
        as_older_log(path, 1)
    }

    /// A log left by an older natrec (version 1: CRC-32/IEEE records, a
    /// torn last record) is read by lookups, recovered (the torn slot
    /// zeroed), appended to in its own version, and sealed to the bytes the
    /// same mappings seal to through version 3 logs.
    #[test]
    fn version_1_log_is_recovered_appended_in_its_version_and_sealed_the_same() {
        older_log_is_recovered_appended_in_its_version_and_sealed_the_same(1);
    }

    /// [`version_1_log_is_recovered_appended_in_its_version_and_sealed_the_same`]
    /// for a version 2 log (CRC-32C records, no generation).
    #[test]
    fn version_2_log_is_recovered_appended_in_its_version_and_sealed_the_same() {
        older_log_is_recovered_appended_in_its_version_and_sealed_the_same(2);
    }

    fn older_log_is_recovered_appended_in_its_version_and_sealed_the_same(version: u32) {
        use natrec_storage::format::{Record, RecordCrc};
        let crc = if version == 1 {
            RecordCrc::Ieee
        } else {
            RecordCrc::Castagnoli
        };
        let d = tempfile::tempdir().unwrap();
        let old = Store::create(&d.path().join("old"), StoreConfig::default()).unwrap();
        let new = Store::create(&d.path().join("new"), StoreConfig::default()).unwrap();
        for store in [&old, &new] {
            let mut w = store.writer().unwrap();
            for i in 0..4 {
                w.append(&m(i)).unwrap();
            }
            w.flush().unwrap();
        }
        let path = log_path(&old);
        // The fourth record torn by a power loss (its second half lost).
        let mut b = std::fs::read(&path).unwrap();
        b[64 + 3 * 96 + 48..64 + 4 * 96].fill(0);
        std::fs::write(&path, &b).unwrap();
        as_older_log(&path, version);
        let parts = old.reader().partitions().unwrap();
        assert_eq!(parts.iter().map(|p| p.records).collect::<Vec<_>>(), vec![3]);
        assert!(parts.iter().all(|p| p.problem.is_none()), "{parts:?}");
        assert_eq!(lookup_at(&old, "203.0.113.1:1001", T0 + 15 * S).0.len(), 1);
        {
            let mut w = old.writer().unwrap();
            w.append(&m(3)).unwrap();
            w.append(&m(4)).unwrap();
            w.flush().unwrap();
            let b = std::fs::read(&path).unwrap();
            assert_eq!(&b[8..12], &version.to_le_bytes(), "still its version");
            assert_eq!(&b[36..40], &[0; 4], "no generation");
            for slot in b[64..64 + 5 * 96].chunks_exact(96) {
                Record::read_with(slot, crc).unwrap();
            }
            assert!(b[64 + 5 * 96..].iter().all(|&x| x == 0));
            assert_eq!(lookup_at(&old, "203.0.113.1:1004", T0 + 15 * S).0.len(), 1);
            w.seal_all().unwrap();
        }
        {
            let mut w = new.writer().unwrap();
            w.append(&m(4)).unwrap();
            w.seal_all().unwrap();
        }
        let name = part_name(T0, 0);
        let a = std::fs::read(old.dir().join("partitions").join(&name)).unwrap();
        let b = std::fs::read(new.dir().join("partitions").join(&name)).unwrap();
        assert_eq!(a, b, "the same sealed bytes from either log version");
        assert!(old.reader().verify().unwrap().is_empty());
    }

    /// A zero header in front of records (a crash before the first flush)
    /// is written again in the version whose CRC the records hold: an older
    /// natrec's log stays version 1.
    #[test]
    fn zero_header_of_a_version_1_log_is_rewritten_as_version_1() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        {
            let mut w = store.writer().unwrap();
            for i in 0..3 {
                w.append(&m(i)).unwrap();
            }
        }
        let path = log_path(&store);
        as_version_1_log(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..64].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let mut w = store.writer().unwrap();
        assert_eq!(w.stats().recovered_log_headers, 1);
        assert_eq!(&std::fs::read(&path).unwrap()[8..12], &1u32.to_le_bytes());
        w.append(&m(3)).unwrap();
        w.seal_all().unwrap();
        let mut seen = Vec::new();
        store
            .reader()
            .export(None, None, &mut |h| {
                seen.push(h.mapping.public.port());
                Ok(())
            })
            .unwrap();
        seen.sort();
        assert_eq!(seen, vec![1000, 1001, 1002, 1003]);
    }

    /// Crash after the sealed file was renamed into place but before the
    /// carry reached the next log and the old log was deleted.
    #[test]
    fn crash_between_publish_and_carry_is_finished_on_open() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        let log0 = log_path(&store);
        let saved;
        {
            let mut w = store.writer().unwrap();
            w.append(&open).unwrap();
            w.flush().unwrap();
            saved = std::fs::read(&log0).unwrap();
            w.advance(T0 + H + 61 * S).unwrap();
            w.finish_carries().unwrap();
            assert_eq!(w.stats().carried, 1);
        }
        // Put the world back to "renamed, not carried, log not deleted".
        std::fs::write(&log0, &saved).unwrap();
        std::fs::remove_file(part_path(&store, T0 + H, 0, FileKind::Active)).unwrap();
        std::fs::write(
            store
                .dir()
                .join("partitions")
                .join("20260301T000000Z-0000.part.tmp"),
            b"junk",
        )
        .unwrap();
        // A reader before recovery still finds it (the pending partition is read).
        assert_eq!(
            lookup_at(&store, "203.0.113.7:1024", T0 + H + 1800 * S)
                .0
                .len(),
            1
        );

        let mut w = store.writer().unwrap();
        assert_eq!(w.stats().recovered_carries, 1);
        assert!(!log0.exists());
        assert!(!store
            .dir()
            .join("partitions")
            .join("20260301T000000Z-0000.part.tmp")
            .exists());
        w.seal_all().unwrap();
        let (h, e) = lookup_at(&store, "203.0.113.7:1024", T0 + H + 1800 * S);
        assert!(e.is_empty());
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].partition, part_name(T0 + H, 0));
    }

    /// A sealed log stays next to its `.part` until the next flush has made
    /// the carried copies durable (docs/FORMAT.md, "Sealing", step 6); a
    /// reader in between finds the held mapping, and so does a writer that
    /// opens after a crash in between (the log is "carry pending").
    #[test]
    fn sealed_log_is_deleted_by_the_next_flush_not_by_the_seal() {
        let d = tempfile::tempdir().unwrap();
        // No flush on the wall clock during the test (no timing in tests).
        let cfg = StoreConfig {
            flush_interval_ms: u32::MAX,
            ..StoreConfig::default()
        };
        let store = new_store(d.path(), cfg);
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        let log0 = log_path(&store);
        let mut w = store.writer().unwrap();
        w.append(&open).unwrap();
        w.advance(T0 + H + 61 * S).unwrap();
        w.finish_carries().unwrap();
        assert_eq!(w.stats().carried, 1);
        // The .part may still be being published on the seal thread; the
        // log stays either way.
        assert!(log0.exists(), "deleted before the carried copy was synced");
        assert_eq!(w.active_partitions(), 1);
        let (h, e) = lookup_at(&store, "203.0.113.7:1024", T0 + H + 1800 * S);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(h.len(), 1);
        w.flush().unwrap();
        assert!(part_path(&store, T0, 0, FileKind::Sealed).exists());
        assert!(!log0.exists());
        drop(w);

        // The same state left by a crash before that flush: recovery carries
        // again from the .part; the duplicate copy is reduced at sealing.
        let d2 = tempfile::tempdir().unwrap();
        let store2 = new_store(d2.path(), cfg);
        let saved;
        {
            let mut w = store2.writer().unwrap();
            w.append(&open).unwrap();
            w.advance(T0 + H + 61 * S).unwrap();
            saved = std::fs::read(log_path(&store2)).unwrap();
        }
        std::fs::write(log_path(&store2), &saved).unwrap();
        let mut w = store2.writer().unwrap();
        assert_eq!(w.stats().recovered_carries, 1);
        assert!(!log_path(&store2).exists());
        w.seal_all().unwrap();
        // Its own hour, the next (the carried copy, once, not twice), and
        // the one `seal_all` carries a still-open mapping into.
        let parts = store2.reader().partitions().unwrap();
        assert_eq!(
            parts.iter().map(|p| p.records).collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
    }

    /// The publish runs on the seal thread after the carry: if it fails,
    /// the error comes back on the next call that waits for it, the writer
    /// refuses further work (`SealFailed`), the partition's log stays intact
    /// next to the carried copy in the next log (the state a crash between
    /// the carry and the rename leaves), and the next writer seals it again
    /// without duplicating the carried copy.
    #[test]
    fn failed_publish_stops_the_writer_and_the_next_one_seals_again() {
        let d = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            flush_interval_ms: u32::MAX,
            ..StoreConfig::default()
        };
        let store = new_store(d.path(), cfg);
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        // A directory where the publish wants its temp file: creating it fails.
        let tmp = store
            .dir()
            .join("partitions")
            .join(format!("{}.tmp", part_name(T0, 0)));
        let mut w = store.writer().unwrap();
        std::fs::create_dir(&tmp).unwrap();
        w.append(&open).unwrap();
        w.advance(T0 + H + 61 * S).unwrap(); // carried, publish handed over
        w.finish_carries().unwrap();
        assert_eq!(w.stats().carried, 1);
        assert!(matches!(w.flush(), Err(StoreError::Io { .. })));
        assert!(matches!(
            w.append(&open),
            Err(StoreError::SealFailed { .. })
        ));
        assert!(matches!(w.seal_all(), Err(StoreError::SealFailed { .. })));
        drop(w);
        assert!(log_path(&store).exists());
        assert!(!part_path(&store, T0, 0, FileKind::Sealed).exists());
        std::fs::remove_dir(&tmp).unwrap();

        let mut w = store.writer().unwrap();
        assert_eq!(w.active_partitions(), 2);
        w.append(&Mapping {
            end: EndReason::Fin,
            last_ns: T0 + H + 50 * S,
            ..open
        })
        .unwrap();
        w.seal_all().unwrap();
        let parts = store.reader().partitions().unwrap();
        assert_eq!(
            parts.iter().map(|p| p.records).collect::<Vec<_>>(),
            vec![1, 1]
        );
        let (h, e) = lookup_at(&store, "203.0.113.7:1024", T0 + H + 10 * S);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].mapping.end, EndReason::Fin);
        assert!(store.reader().verify().unwrap().is_empty());
    }

    /// A sealed log need not wait for a flush when its carried copies are
    /// durable otherwise: nothing carried (deleted once its `.part` is
    /// published), or carried into a segment that has been published since.
    #[test]
    fn sealed_log_is_deleted_once_its_carried_copies_are_published() {
        let d = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            flush_interval_ms: u32::MAX,
            ..StoreConfig::default()
        };
        let store = new_store(d.path(), cfg);
        let log = |h: i64| part_path(&store, T0 + h * H, 0, FileKind::Active);
        let mut w = store.writer().unwrap();
        // Held until further notice: carried 0 -> 1 -> 2 -> 3 -> ...
        w.append(&mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        ))
        .unwrap();
        // PUBLISHES_IN_FLIGHT_MAX (n) seals unfinished at once (four until
        // round 15, eight until round 19): the seal of hour k waits for
        // hour k - n's.
        let n = natrec_storage::PUBLISHES_IN_FLIGHT_MAX as i64;
        for k in 1..=n {
            w.advance(T0 + k * H + 61 * S).unwrap(); // hours 0..n handed over
        }
        w.advance(T0 + (n + 1) * H + 61 * S).unwrap(); // hour 0 published; hour n handed over
        assert!(part_path(&store, T0, 0, FileKind::Sealed).exists());
        assert!(
            log(0).exists(),
            "its copy in hour 1 is neither synced nor published"
        );
        w.advance(T0 + (n + 2) * H + 61 * S).unwrap(); // hour 1 published
        w.finish_chores().unwrap(); // the removal runs on the background thread
        assert!(!log(0).exists(), "its copy is in hour 1's .part now");
        assert!(log(1).exists());
        assert!(part_path(&store, T0 + H, 0, FileKind::Sealed).exists());
        drop(w);

        // Nothing held: the log goes as soon as its .part is published.
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), cfg);
        let mut w = store.writer().unwrap();
        for h in 0..=n {
            w.append(&mapping(
                Proto::Udp,
                "100.64.0.2:1000",
                "203.0.113.1:1000",
                T0 + h * H + 10 * S,
                T0 + h * H + 11 * S,
                EndReason::Idle,
            ))
            .unwrap();
        }
        for k in 1..=n {
            w.advance(T0 + k * H + 61 * S).unwrap(); // hours 0..n handed over
        }
        w.advance(T0 + (n + 1) * H + 61 * S).unwrap(); // hour 0 published; hour n handed over
        w.finish_chores().unwrap();
        assert!(!part_path(&store, T0, 0, FileKind::Active).exists());
        assert!(part_path(&store, T0, 0, FileKind::Sealed).exists());
    }

    /// Two publishes run at once and may finish out of order: a crash can
    /// leave the next hour published and this hour's log without its
    /// `.part`. The next writer seals this hour again; its carried copy goes
    /// to a new segment of the (sealed) next hour, and lookups still show
    /// the mapping once.
    #[test]
    fn crash_with_the_next_hour_published_first_is_sealed_again() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        let log0 = log_path(&store);
        let saved;
        {
            let mut w = store.writer().unwrap();
            w.append(&open).unwrap();
            w.flush().unwrap();
            saved = std::fs::read(&log0).unwrap();
            w.advance(T0 + H + 61 * S).unwrap();
            w.advance(T0 + 2 * H + 61 * S).unwrap();
        }
        // Hour 1 published (with the carried copy), hour 0 not: its log is back.
        std::fs::remove_file(part_path(&store, T0, 0, FileKind::Sealed)).unwrap();
        std::fs::write(&log0, &saved).unwrap();
        let mut w = store.writer().unwrap();
        assert_eq!(w.stats().recovered_carries, 0);
        w.append(&Mapping {
            end: EndReason::Fin,
            last_ns: T0 + 2 * H + 50 * S,
            ..open
        })
        .unwrap();
        w.seal_all().unwrap();
        assert!(part_path(&store, T0, 0, FileKind::Sealed).exists());
        assert!(part_path(&store, T0 + H, 1, FileKind::Sealed).exists());
        // Held in every hour, shown once (duplicate copies reduced); the
        // final state is in hour 2, where it ended (earlier hours show the
        // carried open copy, "held until further notice", as designed).
        for (t, end) in [
            (T0 + 200 * S, EndReason::Open),
            (T0 + H + 1800 * S, EndReason::Open),
            (T0 + 2 * H + 10 * S, EndReason::Fin),
        ] {
            let (h, e) = lookup_at(&store, "203.0.113.7:1024", t);
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(h.len(), 1, "at {t}");
            assert_eq!(h[0].mapping.end, end, "at {t}");
        }
        assert!(store.reader().verify().unwrap().is_empty());
    }

    /// Four seal threads run at once (chained: each takes the previous
    /// hour's carry): a crash can leave the last of them published and the
    /// three before it with their logs and no `.part`. The next writer seals
    /// those again in order, each carrying into the next (the last one into
    /// a new segment of the published hour), and the held mapping is shown
    /// once in every hour.
    #[test]
    fn crash_with_a_later_hour_published_before_three_earlier_ones() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        let other = |h: i64| {
            mapping(
                Proto::Udp,
                "100.64.0.3:1000",
                "203.0.113.8:2000",
                T0 + h * H + 10 * S,
                T0 + h * H + 11 * S,
                EndReason::Idle,
            )
        };
        let mut saved = Vec::new();
        {
            let mut w = store.writer().unwrap();
            w.append(&open).unwrap();
            for h in 1..4 {
                w.append(&other(h)).unwrap();
            }
            w.flush().unwrap();
            for h in 0..3 {
                let p = part_path(&store, T0 + h * H, 0, FileKind::Active);
                saved.push((p.clone(), std::fs::read(&p).unwrap()));
            }
            // Hours 0..=3 due at once: four seal threads, chained.
            w.advance(T0 + 4 * H + 61 * S).unwrap();
        }
        // Hour 3 published (with the carried copy), hours 0..=2 not.
        for (h, (p, bytes)) in saved.iter().enumerate() {
            std::fs::remove_file(part_path(&store, T0 + h as i64 * H, 0, FileKind::Sealed))
                .unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let mut w = store.writer().unwrap();
        assert_eq!(w.stats().recovered_carries, 0);
        w.append(&Mapping {
            end: EndReason::Fin,
            last_ns: T0 + 4 * H + 50 * S,
            ..open
        })
        .unwrap();
        w.seal_all().unwrap();
        drop(w);
        for h in 0..3 {
            assert!(part_path(&store, T0 + h * H, 0, FileKind::Sealed).exists());
        }
        assert!(part_path(&store, T0 + 3 * H, 1, FileKind::Sealed).exists());
        for (t, end) in [
            (T0 + 200 * S, EndReason::Open),
            (T0 + H + 1800 * S, EndReason::Open),
            (T0 + 2 * H + 1800 * S, EndReason::Open),
            (T0 + 3 * H + 1800 * S, EndReason::Open),
            (T0 + 4 * H + 10 * S, EndReason::Fin),
        ] {
            let (h, e) = lookup_at(&store, "203.0.113.7:1024", t);
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(h.len(), 1, "at {t}");
            assert_eq!(h[0].mapping.end, end, "at {t}");
        }
        for h in 1..4 {
            let (found, e) = lookup_at(&store, "203.0.113.8:2000", T0 + h * H + 10 * S);
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(found.len(), 1, "hour {h}");
        }
        assert!(store.reader().verify().unwrap().is_empty());
    }

    /// At most `SEALED_LOGS_PENDING_MAX` sealed logs wait for a flush: the
    /// seal that reaches the bound flushes, which deletes them all.
    #[test]
    fn sealed_logs_waiting_for_deletion_stay_bounded() {
        let d = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            flush_interval_ms: u32::MAX,
            ..StoreConfig::default()
        };
        let store = new_store(d.path(), cfg);
        let mut w = store.writer().unwrap();
        let pending_max = natrec_storage::SEALED_LOGS_PENDING_MAX;
        let in_flight_max = natrec_storage::PUBLISHES_IN_FLIGHT_MAX;
        let n = (pending_max + in_flight_max) as i64 + 3;
        let count_logs = || {
            std::fs::read_dir(store.dir().join("partitions"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".log")
                })
                .count()
        };
        for k in 0..n {
            // One UDP mapping per hour, held 30 s: nothing is carried.
            let t = T0 + k * H + 10 * S;
            w.append(&mapping(
                Proto::Udp,
                "100.64.0.2:1000",
                "203.0.113.1:1000",
                t,
                t + S,
                EndReason::Idle,
            ))
            .unwrap();
            w.advance(t + H + 60 * S).unwrap();
            // Sealed logs not yet deleted (at most the bound - 1 after the
            // flush at the bound), those being published (at most
            // PUBLISHES_IN_FLIGHT_MAX), the active one.
            assert!(
                count_logs() <= pending_max + in_flight_max,
                "{} logs after {} seals",
                count_logs(),
                k + 1
            );
        }
        w.flush().unwrap();
        assert_eq!(w.stats().partitions_sealed, n as u64);
        assert_eq!(count_logs(), 0);
        let (h, e) = lookup_at(&store, "203.0.113.1:1000", T0 + 5 * H + 10 * S);
        assert!(e.is_empty());
        assert_eq!(h.len(), 1);
    }

    /// Crash after the carry, before the log was deleted: carrying again
    /// duplicates the copy in the next log; sealing removes the duplicate.
    #[test]
    fn crash_after_carry_before_delete_does_not_duplicate() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            "203.0.113.7:1024",
            T0 + 100 * S,
            T0 + 100 * S,
            EndReason::Open,
        );
        let log0 = log_path(&store);
        let saved;
        {
            let mut w = store.writer().unwrap();
            w.append(&open).unwrap();
            w.flush().unwrap();
            saved = std::fs::read(&log0).unwrap();
            w.advance(T0 + H + 61 * S).unwrap();
        }
        std::fs::write(&log0, &saved).unwrap();
        let mut w = store.writer().unwrap();
        assert_eq!(w.stats().recovered_carries, 1);
        assert_eq!(store.reader().partitions().unwrap()[1].records, 2);
        w.append(&Mapping {
            end: EndReason::Fin,
            last_ns: T0 + H + 50 * S,
            ..open
        })
        .unwrap();
        w.seal_all().unwrap();
        let parts = store.reader().partitions().unwrap();
        assert_eq!(
            parts.iter().map(|p| p.records).collect::<Vec<_>>(),
            vec![1, 1]
        );
        let (h, _) = lookup_at(&store, "203.0.113.7:1024", T0 + H + 10 * S);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].mapping.end, EndReason::Fin);
    }
}

mod unclosed {
    use super::*;

    /// A recorder that crashed left a mapping `Open` and another closed: the
    /// next writer is told about the open one (to close it) and about the
    /// latest time its predecessor recorded.
    #[test]
    fn a_new_writer_is_told_what_a_crashed_one_left_open() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let open = mapping(
            Proto::Tcp,
            "100.64.0.2:1000",
            "203.0.113.1:1000",
            T0 + 10 * S,
            T0 + 10 * S,
            EndReason::Open,
        );
        let closed_first = mapping(
            Proto::Udp,
            "100.64.0.3:53",
            "203.0.113.1:2000",
            T0 + 20 * S,
            T0 + 20 * S,
            EndReason::Open,
        );
        let closed = Mapping {
            last_ns: T0 + 25 * S,
            end: EndReason::Idle,
            ..closed_first
        };
        {
            let mut w = store.writer().unwrap();
            w.append(&open).unwrap();
            w.append(&closed_first).unwrap();
            w.append(&closed).unwrap();
            let (left, latest) = w.unclosed().unwrap();
            assert_eq!(left, vec![open]);
            assert_eq!(latest, Some(T0 + 25 * S));
        }
        let mut w = store.writer().unwrap();
        let (left, latest) = w.unclosed().unwrap();
        assert_eq!(left, vec![open], "after a restart too");
        assert_eq!(latest, Some(T0 + 25 * S));
        // Closing it: nothing is left open, and a lookup long after its hold
        // no longer names it.
        w.append(&Mapping {
            end: EndReason::CaptureEnd,
            ..open
        })
        .unwrap();
        assert!(w.unclosed().unwrap().0.is_empty());
        w.seal_all().unwrap();
        let (held, errors) = lookup_at(&store, "203.0.113.1:1000", T0 + 3 * H);
        assert!(errors.is_empty() && held.is_empty(), "{held:?}");
        let (held, _) = lookup_at(&store, "203.0.113.1:1000", T0 + 11 * S);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].mapping.end, EndReason::CaptureEnd);
    }
}

mod concurrent {
    use super::*;

    /// A reader looks up while the writer appends past the log's
    /// preallocation (so the log grows and is remapped under the reader).
    #[test]
    fn reader_answers_while_writer_appends_and_grows() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), StoreConfig::default());
        let mut w = store.writer().unwrap();
        let n = 3 * natrec_storage::LOG_SLOTS_INITIAL as u16;
        let mk = |i: u16| {
            let public = format!("203.0.113.{}:{}", 1 + i % 7, 1024 + i);
            mapping(
                Proto::Udp,
                "100.64.0.2:1000",
                &public,
                T0 + i64::from(i) * S,
                T0 + i64::from(i) * S,
                EndReason::Idle,
            )
        };
        for i in 0..n {
            w.append(&mk(i)).unwrap();
            if i % 500 == 0 {
                w.flush().unwrap();
                let m = mk(i / 2);
                let (h, e) = lookup_at(&store, &m.public.to_string(), m.first_ns);
                assert!(e.is_empty(), "{e:?}");
                assert_eq!(h.iter().map(|h| h.mapping).collect::<Vec<_>>(), vec![m]);
            }
        }
        w.flush().unwrap();
        assert_eq!(
            store.reader().partitions().unwrap()[0].records,
            u64::from(n)
        );
        w.seal_all().unwrap();
        let (h, _) = lookup_at(&store, &mk(n - 1).public.to_string(), mk(n - 1).first_ns);
        assert_eq!(h.len(), 1);
    }
}

mod model {
    //! The store against an in-memory model (habit 18): random mappings,
    //! emitted in time order with random delays (some late), with advances
    //! in between; then random lookups must return exactly the mappings the
    //! model says were held.
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    const SPAN_S: i64 = 60;

    fn cfg() -> StoreConfig {
        StoreConfig {
            partition_span_s: SPAN_S as u32,
            grace_s: 5,
            flush_interval_ms: 0,
            hold: HoldTimes {
                tcp_closed_s: 10,
                tcp_open_s: 150,
                udp_s: 5,
                udp_stream_s: 20,
                icmp_s: 5,
            },
        }
    }

    #[derive(Clone, Debug)]
    struct Gen {
        proto: u8,
        sub: u8,
        public: u8,
        port: u8,
        first_s: u16,
        dur_s: u16,
        end: u8,
        open_delay_s: u8,
        close_delay_s: u8,
        pin: u8,
    }

    fn gen() -> impl Strategy<Value = Gen> {
        (
            0u8..3,
            0u8..4,
            0u8..2,
            0u8..3,
            0u16..600,
            0u16..200,
            0u8..7,
            0u8..60,
            0u8..60,
            0u8..2,
        )
            .prop_map(
                |(
                    proto,
                    sub,
                    public,
                    port,
                    first_s,
                    dur_s,
                    end,
                    open_delay_s,
                    close_delay_s,
                    pin,
                )| Gen {
                    proto,
                    sub,
                    public,
                    port,
                    first_s,
                    dur_s,
                    end,
                    open_delay_s,
                    close_delay_s,
                    pin,
                },
            )
    }

    fn build(g: &Gen, i: usize) -> Mapping {
        let proto = [Proto::Tcp, Proto::Udp, Proto::Icmp][g.proto as usize];
        let public: SocketAddr = if g.public == 0 {
            format!("203.0.113.1:{}", 1000 + u16::from(g.port))
                .parse()
                .unwrap()
        } else {
            format!("[2001:db8::1]:{}", 1000 + u16::from(g.port))
                .parse()
                .unwrap()
        };
        let first = T0 + i64::from(g.first_s) * S + i as i64; // distinct first_ns per mapping
        Mapping {
            proto,
            internal: format!("100.64.0.{}:{}", g.sub + 2, 40000 + i)
                .parse()
                .unwrap(),
            public,
            remote: sa("198.51.100.9:443"),
            first_ns: first,
            last_ns: first + i64::from(g.dur_s) * S,
            end: EndReason::from_code(g.end).unwrap(),
            packets_out: 1,
            packets_in: u32::from(g.pin),
            flags: 0,
        }
    }

    fn tcp(port: u16, first_s: i64, last_s: i64, end: EndReason) -> Mapping {
        let public = format!("203.0.113.1:{port}");
        mapping(
            Proto::Tcp,
            "100.64.0.2:40000",
            &public,
            T0 + first_s * S,
            T0 + last_s * S,
            end,
        )
    }

    fn opened(m: &Mapping) -> Mapping {
        Mapping {
            end: EndReason::Open,
            last_ns: m.first_ns,
            ..*m
        }
    }

    /// Found by the model test: the late final state and the carried Open
    /// copy sat in the same log; filtering by time before reducing let the
    /// Open copy answer long after the mapping ended.
    #[test]
    fn regression_open_copy_does_not_outlive_the_final_state_in_the_same_log() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), cfg());
        let mut w = store.writer().unwrap();
        let m = tcp(1000, 211, 378, EndReason::Fin);
        w.advance(T0 + 211 * S).unwrap();
        w.append(&opened(&m)).unwrap();
        w.advance(T0 + 425 * S).unwrap(); // seals through 360..420 carrying the Open copy
        w.append(&m).unwrap(); // late: goes to 420..480 next to the carried copy
        w.flush().unwrap();
        assert_eq!(w.stats().late_records, 1);
        assert!(lookup_at(&store, "203.0.113.1:1000", T0 + 762 * S)
            .0
            .is_empty());
        assert_eq!(
            lookup_at(&store, "203.0.113.1:1000", T0 + 385 * S).0.len(),
            1
        );
    }

    /// Found by the model test: a late Open record and its (not late) final
    /// state were reduced to the final state, losing the LATE mark, so
    /// lookups in the mapping's own partition no longer looked ahead.
    #[test]
    fn regression_late_mark_survives_reduction() {
        let d = tempfile::tempdir().unwrap();
        let store = new_store(d.path(), cfg());
        let mut w = store.writer().unwrap();
        let a = tcp(1000, 0, 90, EndReason::Idle);
        let b = tcp(1001, 209, 240, EndReason::Fin);
        w.advance(T0).unwrap();
        w.append(&opened(&a)).unwrap();
        w.advance(T0 + 90 * S).unwrap();
        w.append(&a).unwrap();
        w.advance(T0 + 245 * S).unwrap();
        w.append(&opened(&b)).unwrap(); // late: 180..240 is sealed
        w.append(&b).unwrap(); // own: 240..300
        w.seal_all().unwrap();
        let q = Query {
            port: None,
            from_ns: T0 + 237 * S,
            to_ns: T0 + 239 * S,
            ..Query::at(ip("203.0.113.1"), 0, 0)
        };
        let o = store.reader().lookup(&q).unwrap();
        assert_eq!(
            o.holders.iter().map(|h| h.mapping).collect::<Vec<_>>(),
            vec![a, b]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn lookups_agree_with_the_model(
            gens in prop::collection::vec(gen(), 1..40),
            ticks in prop::collection::vec(0u16..900, 0..20),
            seal_all in any::<bool>(),
            queries in prop::collection::vec((0u8..2, 0u8..4, 0u16..1000, 0u16..30), 40),
        ) {
            let d = tempfile::tempdir().unwrap();
            let store = new_store(d.path(), cfg());
            let hold = cfg().hold;
            let finals: Vec<Mapping> = gens.iter().enumerate().map(|(i, g)| build(g, i)).collect();
            let any_open = finals.iter().any(|m| m.end == EndReason::Open);
            // Events: (emit time, mapping state). The Open state is emitted
            // after first_ns, the final state after last_ns; delays < span.
            let mut events: Vec<(i64, Mapping)> = Vec::new();
            for (g, m) in gens.iter().zip(&finals) {
                let open = Mapping { end: EndReason::Open, last_ns: m.first_ns, ..*m };
                events.push((m.first_ns + i64::from(g.open_delay_s) * S, open));
                if m.end != EndReason::Open {
                    let emit = (m.last_ns + i64::from(g.close_delay_s) * S).max(m.first_ns + i64::from(g.open_delay_s) * S);
                    events.push((emit, *m));
                }
            }
            for t in &ticks {
                // A bare advance (the capture's clock moving without records).
                events.push((T0 + i64::from(*t) * S, Mapping { flags: 0xff, ..finals[0] }));
            }
            events.sort_by_key(|(t, m)| (*t, m.end != EndReason::Open));
            let mut w = store.writer().unwrap();
            for (t, m) in &events {
                w.advance(*t).unwrap();
                if m.flags != 0xff {
                    w.append(m).unwrap();
                }
            }
            if seal_all && !any_open {
                w.seal_all().unwrap();
            } else {
                w.flush().unwrap();
            }
            let reader = store.reader();
            for (public, port, at_s, len_s) in queries {
                let ip = if public == 0 { ip("203.0.113.1") } else { ip("2001:db8::1") };
                let port = (port < 3).then_some(1000 + u16::from(port));
                let from = T0 + i64::from(at_s) * S;
                let to = from + i64::from(len_s) * S;
                let want: BTreeSet<_> = finals
                    .iter()
                    .filter(|m| m.public.ip() == ip && port.is_none_or(|p| p == m.public.port()))
                    .filter(|m| m.first_ns <= to && hold.held_until_ns(m).is_none_or(|h| h >= from))
                    .map(|m| (m.first_ns, m.internal))
                    .collect();
                let o = reader.lookup(&Query { ip, port, proto: None, from_ns: from, to_ns: to, remote_ip: None, remote_port: None }).unwrap();
                prop_assert!(o.errors.is_empty(), "{:?}", o.errors);
                let got: BTreeSet<_> = o.holders.iter().map(|h| (h.mapping.first_ns, h.mapping.internal)).collect();
                prop_assert_eq!(&got, &want, "query {:?} {:?} [{}, {}] s", ip, port, at_s, at_s + len_s);
                prop_assert_eq!(got.len(), o.holders.len());
                // Each answer is a state of the mapping: its final state or Open.
                let by_key: HashMap<_, _> = finals.iter().map(|m| ((m.first_ns, m.internal), m)).collect();
                for h in &o.holders {
                    let f = by_key[&(h.mapping.first_ns, h.mapping.internal)];
                    prop_assert!(h.mapping == *f || h.mapping.end == EndReason::Open);
                }
            }
            prop_assert!(reader.verify().unwrap().is_empty());
            // Export sees every mapping exactly once, in its final state when sealed.
            let mut seen = Vec::new();
            reader.export(None, None, &mut |h| { seen.push(h.mapping); Ok(()) }).unwrap();
            prop_assert_eq!(seen.len(), finals.len());
            prop_assert!(seen.windows(2).all(|w| w[0].first_ns <= w[1].first_ns));
            if seal_all && !any_open {
                let mut want = finals.clone();
                want.sort_by_key(|m| m.first_ns);
                prop_assert_eq!(seen, want);
            }
        }
    }
}
