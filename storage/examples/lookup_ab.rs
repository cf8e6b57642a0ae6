//! Same-process lookup timing on several stores (e.g. one sealed in v1,
//! one in v2, from the same capture): `lookup_ab TRUTH.jsonl N STORE...`.
//! Asks N random truth mappings at a time inside their held interval, on
//! every store in turn (interleaved, so machine noise hits all alike), and
//! prints p50/p90/p99/p999 per store.
use std::time::Instant;

use natrec_storage::{Query, Store, NANOS_PER_SEC};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let truth = std::fs::read_to_string(&args[1])?;
    let n: usize = args[2].parse()?;
    let rows: Vec<serde_json::Value> = truth
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let stores: Vec<Store> = args[3..]
        .iter()
        .map(|d| Store::open(std::path::Path::new(d)))
        .collect::<Result<_, _>>()?;
    let readers: Vec<_> = stores.iter().map(|s| s.reader()).collect();
    let mut times: Vec<Vec<u64>> = vec![Vec::new(); readers.len()];
    let mut x = 0x1234_5678u64;
    for pass in 0..2 {
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = &rows[(x % rows.len() as u64) as usize];
            let new = (r["new_unix"].as_f64().unwrap_or(0.0) * 1e9) as i64;
            let t = new + (x >> 20) as i64 % NANOS_PER_SEC / 10;
            let ip = r["public_ip"].as_str().unwrap_or("").parse()?;
            let port = r["public_port"].as_u64().unwrap_or(0) as u16;
            for (k, rd) in readers.iter().enumerate() {
                let s = Instant::now();
                let out = rd.lookup(&Query::at(ip, port, t))?;
                let ns = s.elapsed().as_nanos() as u64;
                assert!(out.errors.is_empty(), "{:?}", out.errors);
                assert!(!out.holders.is_empty());
                if pass == 1 {
                    times[k].push(ns);
                }
            }
        }
    }
    for (k, mut t) in times.into_iter().enumerate() {
        t.sort_unstable();
        let q = |f: f64| t[((t.len() - 1) as f64 * f) as usize] as f64 / 1000.0;
        println!(
            "{}: n {} p50 {:.1} µs p90 {:.1} µs p99 {:.1} µs p999 {:.1} µs max {:.1} µs",
            args[3 + k],
            t.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(1.0)
        );
    }
    Ok(())
}
