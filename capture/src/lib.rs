//! natrec's packet side: reading captures and decoding packets into the fields NAT correlation
//! needs.
//!
//! - [`source`]: [`source::CaptureFile`] opens a pcap or pcapng file (memory-mapped, zero-copy)
//!   and yields [`source::RawPacket`]s with a timestamp, link type and interface.
//! - [`decode`]: [`decode::decode`] turns one packet's bytes into a [`decode::Decoded`] summary
//!   (addresses, ports or ICMP identifier, IP id, TCP seq/ack/flags, payload fingerprint), or says
//!   why it was skipped ([`decode::Skip`]). It is a pure function: no I/O, no allocation.
//! - `live` (feature `live`, needs libpcap): `live::LiveCapture` reads packets from an
//!   interface through libpcap and yields the same fields as a capture file.
//!
//! ```no_run
//! use natrec_capture::{decode::decode, source::CaptureFile};
//! # fn main() -> Result<(), natrec_capture::source::CaptureError> {
//! let file = CaptureFile::open(std::path::Path::new("wan.pcapng"))?;
//! for packet in file.packets() {
//!     let packet = packet?;
//!     match decode(packet.linktype, packet.data) {
//!         Ok(d) => println!("{} {:?} {}:{} -> {}:{}", packet.ts_ns, d.proto, d.src, d.sport, d.dst, d.dport),
//!         Err(skip) => println!("skipped: {}", skip.reason()),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Unsafe code is denied crate-wide; the exceptions are the read-only memory map (its
//! prefetch, and the inline pcap record read's unchecked window) in `source.rs` and the
//! correlator's flow slab map in `correlate/slab.rs`, each with a `// SAFETY:` comment stating
//! what is assumed.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod correlate;
pub mod decode;
#[cfg(feature = "live")]
pub mod live;
pub mod source;
