//! Bytes per mapping that format v2 spends on each part of the sealed
//! partitions given (v1 or v2 files): `v2_columns FILE.part...`.
use natrec_storage::sealed_v2::{column_bytes, ColumnBytes, COLUMN_NAMES};

fn main() {
    let (mut n, mut t) = (0u64, ColumnBytes::default());
    for p in std::env::args().skip(1) {
        let (k, c) = match column_bytes(std::path::Path::new(&p)) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("v2_columns: {e}");
                std::process::exit(2);
            }
        };
        n += k;
        t.header_footer += c.header_footer;
        t.dictionary += c.dictionary;
        t.index += c.index;
        t.block_overhead += c.block_overhead;
        for (a, b) in t.columns.iter_mut().zip(c.columns) {
            *a += b;
        }
    }
    let per = |b: u64| b as f64 / n.max(1) as f64;
    let mut total = t.header_footer + t.dictionary + t.index + t.block_overhead;
    println!("{n} mappings");
    println!("| part | bytes | bytes per mapping |\n|---|---:|---:|");
    for (name, b) in COLUMN_NAMES.iter().zip(t.columns) {
        println!("| column {name} | {b} | {:.2} |", per(b));
        total += b;
    }
    for (name, b) in [
        ("address dictionary + chunk CRCs", t.dictionary),
        ("block index", t.index),
        ("block count, units, CRC", t.block_overhead),
        ("header + footer", t.header_footer),
    ] {
        println!("| {name} | {b} | {:.2} |", per(b));
    }
    println!("| **total** | {total} | **{:.2}** |", per(total));
}
