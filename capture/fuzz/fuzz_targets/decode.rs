//! `decode` must never panic: the first byte picks a supported link type (or, past the list, a
//! raw 16-bit link type from the next two bytes), the rest is the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natrec_capture::decode::{decode, linktype, PAYLOAD_FP_BYTES_MAX};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (lt, packet) = match linktype::SUPPORTED.get(usize::from(pick)) {
        Some(&lt) => (lt, rest),
        None => match rest {
            [hi, lo, packet @ ..] => (u16::from_be_bytes([*hi, *lo]), packet),
            _ => return,
        },
    };
    if let Ok(d) = decode(lt, packet) {
        assert!(usize::from(d.payload_fp_bytes) <= PAYLOAD_FP_BYTES_MAX);
        assert!(u32::from(d.payload_fp_bytes) <= d.payload_len);
    }
});
