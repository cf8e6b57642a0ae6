//! CRC-32C of one record's 92 bytes (a version 2 log's record CRC,
//! [`crate::format::RecordCrc::Castagnoli`]) with the SSE 4.2 `crc32`
//! instruction: eleven 8-byte steps and one 4-byte step, ~30 instructions with the
//! call (callgrind: 31 a record on `natrec-bigstore`).
//! The `crc32c` crate computes the same value (the fallback here, and what
//! the property test compares with) but is built for long buffers: its
//! alignment split and three-way interleaving cost ~160 instructions on 92
//! bytes (callgrind), more than crc32fast's CRC-32/IEEE (~125).
//!
//! [`crc32c_set`] writes the CRCs of a run of records three at a time (three
//! interleaved chains: ~16 instructions a record, and a third of the
//! latency); [`crc32c_all_right`] checks them the same way.
//!
//! Both take a `seed`: the CRC-32C of bytes that come before the record's
//! in the CRC (0: none, a version 2 log's record). A version 3 log's record
//! CRC is the CRC-32C of its generation's four bytes followed by the
//! record's 92 ([`crate::format::RecordCrc::Generation`]): the seed is the
//! CRC-32C of those four bytes, computed once per log, so the record costs
//! the same instructions as without (only the chain's first value differs).
//!
//! `lib.rs` allows `unsafe_code` for this module: its three `unsafe` blocks
//! are the calls of the `sse4.2` functions, each after the CPU was checked
//! to have it.

/// Bytes of a record covered by its CRC.
pub(crate) const RECORD_CRC_BYTES: usize = 92;

/// CRC-32C of the bytes whose CRC-32C is `seed` followed by `b` (`seed` 0:
/// of `b` alone): the instruction when the CPU has SSE 4.2 (detected at
/// run time, once; then a load and a test a call), else the `crc32c` crate.
#[inline]
pub(crate) fn crc32c_record(seed: u32, b: &[u8; RECORD_CRC_BYTES]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: `crc32c_record_sse42` only requires the `sse4.2` target
            // feature, and the CPU has it (checked on the line above). It
            // reads only `b` through safe indexing.
            return unsafe { crc32c_record_sse42(seed, b) };
        }
    }
    crc32c::crc32c_append(seed, b)
}

/// Bytes of a record: its CRC sits in the last four.
const RECORD_BYTES: usize = RECORD_CRC_BYTES + 4;

/// Writes the CRC-32C of each record of `records` (whole 96-byte records
/// back to back) into its last four bytes (little-endian), as
/// [`crc32c_record`] computes it with `seed`. With SSE 4.2 three records at a time:
/// their three chains of dependent `crc32` steps interleave, so the CPU
/// runs them side by side (one chain is latency-bound: 12 steps of 3
/// cycles); the same instructions, a third of the waiting.
pub(crate) fn crc32c_set(seed: u32, records: &mut [u8]) {
    assert_eq!(records.len() % RECORD_BYTES, 0, "whole records");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: as in `crc32c_record`: the CPU has SSE 4.2, the only
            // requirement; the function reads and writes `records` only
            // through safe indexing.
            unsafe { crc32c_set_sse42(seed, records) };
            return;
        }
    }
    for r in records.chunks_exact_mut(RECORD_BYTES) {
        let c = crc32c::crc32c_append(seed, &r[..RECORD_CRC_BYTES]);
        r[RECORD_CRC_BYTES..].copy_from_slice(&c.to_le_bytes());
    }
}

/// Whether every record of `records` (whole 96-byte records back to back)
/// holds in its last four bytes (little-endian) the CRC-32C that
/// [`crc32c_record`] computes with `seed`: the check of a version 2 or 3
/// log's records as the seal reads them back. With SSE 4.2 three records
/// at a time, as [`crc32c_set`] (~16 instructions a record; one CRC over a
/// chunk of records with the `crc32c` crate, compared with the chunk's
/// expected value, was ~42 on `natrec-bigstore`'s seals).
pub(crate) fn crc32c_all_right(seed: u32, records: &[u8]) -> bool {
    assert_eq!(records.len() % RECORD_BYTES, 0, "whole records");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: as in `crc32c_record`: the CPU has SSE 4.2, the only
            // requirement; the function reads `records` only through safe
            // indexing.
            return unsafe { crc32c_all_right_sse42(seed, records) };
        }
    }
    records.chunks_exact(RECORD_BYTES).all(|r| {
        crc32c::crc32c_append(seed, &r[..RECORD_CRC_BYTES]).to_le_bytes() == r[RECORD_CRC_BYTES..]
    })
}

/// The CRC-32C of the first [`RECORD_CRC_BYTES`] of three records at once
/// (three independent chains, so the instruction's latency is overlapped):
/// what [`crc32c_record_sse42`] gives for each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[inline]
fn crc32c_three_sse42(seed: u32, a: &[u8], b: &[u8], c: &[u8]) -> [u32; 3] {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let word = |r: &[u8], i: usize| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().expect("8"));
    let tail = |r: &[u8]| u32::from_le_bytes(r[88..92].try_into().expect("4 bytes"));
    let (mut x, mut y, mut z) = (u64::from(!seed), u64::from(!seed), u64::from(!seed));
    for i in 0..RECORD_CRC_BYTES / 8 {
        x = _mm_crc32_u64(x, word(a, i));
        y = _mm_crc32_u64(y, word(b, i));
        z = _mm_crc32_u64(z, word(c, i));
    }
    [
        !_mm_crc32_u32(x as u32, tail(a)),
        !_mm_crc32_u32(y as u32, tail(b)),
        !_mm_crc32_u32(z as u32, tail(c)),
    ]
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_all_right_sse42(seed: u32, records: &[u8]) -> bool {
    let held = |r: &[u8]| u32::from_le_bytes(r[92..96].try_into().expect("4 bytes"));
    // The differences of all the records' CRCs from the ones they hold,
    // OR-ed: no branch a record.
    let mut wrong = 0u32;
    let mut threes = records.chunks_exact(3 * RECORD_BYTES);
    for t in &mut threes {
        let (a, rest) = t.split_at(RECORD_BYTES);
        let (b, c) = rest.split_at(RECORD_BYTES);
        let [x, y, z] = crc32c_three_sse42(seed, a, b, c);
        wrong |= (x ^ held(a)) | (y ^ held(b)) | (z ^ held(c));
    }
    for r in threes.remainder().chunks_exact(RECORD_BYTES) {
        let c = crc32c_record_sse42(seed, r[..RECORD_CRC_BYTES].try_into().expect("92 bytes"));
        wrong |= c ^ held(r);
    }
    wrong == 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_set_sse42(seed: u32, records: &mut [u8]) {
    let mut threes = records.chunks_exact_mut(3 * RECORD_BYTES);
    for t in &mut threes {
        let (a, rest) = t.split_at_mut(RECORD_BYTES);
        let (b, c) = rest.split_at_mut(RECORD_BYTES);
        let [x, y, z] = crc32c_three_sse42(seed, a, b, c);
        a[RECORD_CRC_BYTES..].copy_from_slice(&x.to_le_bytes());
        b[RECORD_CRC_BYTES..].copy_from_slice(&y.to_le_bytes());
        c[RECORD_CRC_BYTES..].copy_from_slice(&z.to_le_bytes());
    }
    for r in threes.into_remainder().chunks_exact_mut(RECORD_BYTES) {
        let c = crc32c_record_sse42(seed, r[..RECORD_CRC_BYTES].try_into().expect("92 bytes"));
        r[RECORD_CRC_BYTES..].copy_from_slice(&c.to_le_bytes());
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_record_sse42(seed: u32, b: &[u8; RECORD_CRC_BYTES]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let mut c = u64::from(!seed);
    for i in 0..RECORD_CRC_BYTES / 8 {
        c = _mm_crc32_u64(c, word(i));
    }
    let tail = u32::from_le_bytes(b[88..92].try_into().expect("4 bytes"));
    !_mm_crc32_u32(c as u32, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The instruction's CRC is the crate's, on any 92 bytes, with no
        /// seed or with the seed of any 4-byte prefix (a generation).
        #[test]
        fn record_crc_is_the_crates(
            v in proptest::collection::vec(proptest::num::u8::ANY, RECORD_CRC_BYTES),
            g in proptest::num::u32::ANY,
        ) {
            let b: &[u8; RECORD_CRC_BYTES] = v.as_slice().try_into().unwrap();
            proptest::prop_assert_eq!(crc32c_record(0, b), crc32c::crc32c(b));
            let mut prefixed = g.to_le_bytes().to_vec();
            prefixed.extend_from_slice(b);
            let seed = crc32c::crc32c(&g.to_le_bytes());
            proptest::prop_assert_eq!(crc32c_record(seed, b), crc32c::crc32c(&prefixed));
        }
    }

    proptest::proptest! {
        /// Three at a time or one by one, each record's CRC-32C is the
        /// crate's, in its last four bytes; the 92 bytes before untouched.
        #[test]
        fn set_writes_each_records_crc(
            v in proptest::collection::vec(proptest::num::u8::ANY, 0..RECORD_BYTES * 8),
            seed in proptest::num::u32::ANY,
        ) {
            let n = v.len() / RECORD_BYTES;
            let mut b = v[..n * RECORD_BYTES].to_vec();
            crc32c_set(seed, &mut b);
            for (r, orig) in b.chunks_exact(RECORD_BYTES).zip(v.chunks_exact(RECORD_BYTES)) {
                proptest::prop_assert_eq!(&r[..RECORD_CRC_BYTES], &orig[..RECORD_CRC_BYTES]);
                proptest::prop_assert_eq!(
                    &r[RECORD_CRC_BYTES..],
                    &crc32c::crc32c_append(seed, &orig[..RECORD_CRC_BYTES]).to_le_bytes()[..]
                );
            }
        }
    }

    proptest::proptest! {
        /// The check three at a time or one by one: right where every
        /// record holds the crate's CRC-32C with the seed, wrong with
        /// another seed or where one bit of any record (its 92 bytes or
        /// its CRC) is flipped.
        #[test]
        fn all_right_is_each_record_checked(
            v in proptest::collection::vec(proptest::num::u8::ANY, 0..RECORD_BYTES * 8),
            seed in proptest::num::u32::ANY,
            flip in proptest::num::usize::ANY,
        ) {
            let n = v.len() / RECORD_BYTES;
            let mut b = v[..n * RECORD_BYTES].to_vec();
            for r in b.chunks_exact_mut(RECORD_BYTES) {
                let c = crc32c::crc32c_append(seed, &r[..RECORD_CRC_BYTES]);
                r[RECORD_CRC_BYTES..].copy_from_slice(&c.to_le_bytes());
            }
            proptest::prop_assert!(crc32c_all_right(seed, &b));
            if n > 0 {
                // Another seed (generation) gives every record another CRC.
                proptest::prop_assert!(!crc32c_all_right(seed ^ 1, &b));
                let bit = flip % (b.len() * 8);
                b[bit / 8] ^= 1 << (bit % 8);
                proptest::prop_assert!(!crc32c_all_right(seed, &b));
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(
            crc32c_record(0, &[0; RECORD_CRC_BYTES]),
            crc32c::crc32c(&[0; 92])
        );
        assert_eq!(
            crc32c_record(0, &[0xff; RECORD_CRC_BYTES]),
            crc32c::crc32c(&[0xff; 92])
        );
    }
}
