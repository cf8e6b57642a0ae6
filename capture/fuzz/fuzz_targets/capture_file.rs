//! Reading a capture of arbitrary bytes must never panic, and every packet handed out must lie
//! inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natrec_capture::decode::decode;
use natrec_capture::source::CaptureFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = CaptureFile::from_bytes("fuzz", data.to_vec()) else {
        return;
    };
    let mut packets = file.packets();
    for packet in packets.by_ref() {
        match packet {
            Ok(p) => {
                assert!(p.offset < file.len_bytes());
                let _ = decode(p.linktype, p.data);
            }
            Err(_) => break,
        }
    }
    assert!(packets.next().is_none(), "the iterator ends after an error");
    assert!(packets.position() <= file.len_bytes());
});
