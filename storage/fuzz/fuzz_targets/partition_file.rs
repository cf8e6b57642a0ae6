//! A partition file of arbitrary bytes — sealed (`.part`, format v1 or v2) or an active log
//! (`.log`) — must never panic a reader: lookups, export, the partition listing and verify
//! return answers or errors. Every holder a lookup returns is for the address and port asked.
//!
//! The first input byte steers the harness, the rest is the file: bit 0 picks `.log` over
//! `.part`; bit 1 writes the partition identity (start, span, segment) the file name and store
//! expect into the header; bits 2 and 3 make the header's and the last 64 bytes' (a sealed
//! footer's) CRC-32 right. Without them nearly every input stops at the first check. Seed the
//! corpus with real files: `natrec replay` a fixture into a store, then copy
//! `STORE/partitions/*.part` into `corpus/partition_file/` with a zero byte in front
//! (`printf '\x0e' | cat - FILE > corpus/partition_file/NAME`).
#![no_main]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use natrec_storage::format::{file_name, FileKind};
use natrec_storage::{Query, Store, StoreConfig, NANOS_PER_SEC};

/// 2026-03-01T14:00:00Z, the one partition the harness writes.
const START_NS: i64 = 1_772_373_600 * NANOS_PER_SEC;

fn store() -> &'static (PathBuf, StoreConfig) {
    static STORE: OnceLock<(PathBuf, StoreConfig)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("natrec-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = StoreConfig::default();
        Store::create(&dir, cfg).expect("a store in the temp directory");
        (dir, cfg)
    })
}

fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&steer, file)) = data.split_first() else {
        return;
    };
    let (dir, cfg) = store();
    let mut file = file.to_vec();
    if file.len() >= 64 {
        if steer & 2 != 0 {
            file[16..24].copy_from_slice(&START_NS.to_le_bytes());
            file[24..32].copy_from_slice(&cfg.span_ns().to_le_bytes());
            file[32..36].copy_from_slice(&0u32.to_le_bytes());
        }
        if steer & 4 != 0 {
            fix_crc(&mut file[..64]);
        }
        if steer & 8 != 0 {
            let n = file.len();
            fix_crc(&mut file[n - 64..]);
        }
    }
    let kind = if steer & 1 != 0 { FileKind::Active } else { FileKind::Sealed };
    let parts = dir.join("partitions");
    for k in [FileKind::Active, FileKind::Sealed] {
        let _ = std::fs::remove_file(parts.join(file_name(START_NS, 0, k)));
    }
    std::fs::write(parts.join(file_name(START_NS, 0, kind)), &file).expect("write the partition");

    let store = Store::open(dir).expect("the store made above");
    let reader = store.reader();
    let t = START_NS + 1800 * NANOS_PER_SEC;
    for (ip, port) in [("203.0.113.7", Some(1024)), ("192.0.2.1", None), ("2001:db8::7", Some(443))] {
        let ip: IpAddr = ip.parse().unwrap();
        let mut q = Query::at(ip, port.unwrap_or(0), t);
        q.port = port;
        q.from_ns = START_NS;
        if let Ok(out) = reader.lookup(&q) {
            for h in &out.holders {
                assert_eq!(h.mapping.public.ip(), ip);
                assert!(port.is_none_or(|p| p == h.mapping.public.port()));
            }
        }
    }
    let _ = reader.export(None, None, &mut |_| Ok(()));
    let _ = reader.partitions();
    let _ = reader.verify();
});
