//! CRC-32C of one record's 92 bytes (a version 2 log's record CRC,
//! [`crate::format::RecordCrc::Castagnoli`]) with the SSE 4.2 `crc32`
//! instruction: eleven 8-byte steps and one 4-byte step, ~30 instructions with the
//! call (callgrind: 31 a record on `natrec-bigstore`).
//! The `crc32c` crate computes the same value (the fallback here, and what
//! the property test compares with) but is built for long buffers: its
//! alignment split and three-way interleaving cost ~160 instructions on 92
//! bytes (callgrind), more than crc32fast's CRC-32/IEEE (~125).
//!
//! `lib.rs` allows `unsafe_code` for this module: its one `unsafe` is the
//! call of the `sse4.2` function after the CPU was checked to have it.

/// Bytes of a record covered by its CRC.
pub(crate) const RECORD_CRC_BYTES: usize = 92;

/// CRC-32C of `b`: the instruction when the CPU has SSE 4.2 (detected at
/// run time, once; then a load and a test a call), else the `crc32c` crate.
#[inline]
pub(crate) fn crc32c_record(b: &[u8; RECORD_CRC_BYTES]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: `crc32c_record_sse42` only requires the `sse4.2` target
            // feature, and the CPU has it (checked on the line above). It
            // reads only `b` through safe indexing.
            return unsafe { crc32c_record_sse42(b) };
        }
    }
    crc32c::crc32c(b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_record_sse42(b: &[u8; RECORD_CRC_BYTES]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let mut c = u64::from(u32::MAX);
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
        /// The instruction's CRC is the crate's, on any 92 bytes.
        #[test]
        fn record_crc_is_the_crates(v in proptest::collection::vec(proptest::num::u8::ANY, RECORD_CRC_BYTES)) {
            let b: &[u8; RECORD_CRC_BYTES] = v.as_slice().try_into().unwrap();
            proptest::prop_assert_eq!(crc32c_record(b), crc32c::crc32c(b));
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(
            crc32c_record(&[0; RECORD_CRC_BYTES]),
            crc32c::crc32c(&[0; 92])
        );
        assert_eq!(
            crc32c_record(&[0xff; RECORD_CRC_BYTES]),
            crc32c::crc32c(&[0xff; 92])
        );
    }
}
