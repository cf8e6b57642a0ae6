//! All of natrec's `unsafe`: memory maps of partition files (habit 11).
//!
//! Mapping a file is unsafe because another process may change or shrink it
//! while it is mapped: a write is seen through the map (harmless here, every
//! record is checksummed and re-validated after reading), a shrink turns a
//! read of the lost pages into SIGBUS. natrec's invariants that make these
//! maps sound:
//!
//! * sealed `.part` files are published by rename and never written,
//!   truncated or appended again; they are only ever deleted by an
//!   operator;
//! * active `.log` files only ever grow (`set_len` to a larger size); the
//!   store never truncates a log, it zeroes unused slots instead; a log is
//!   deleted after sealing, which leaves existing maps valid on Unix;
//! * only the holder of `store.lock` writes, and each map is created with
//!   the file length read just before, so `len <= file length`.
//!
//! `lib.rs` allows `unsafe_code` for this module only; the crate denies it.

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// Maps the first `len` bytes of `file` read-only. `len` must not exceed
/// the file's length; the caller read it from `file.metadata()`.
pub(crate) fn map_read(file: &File, len: u64) -> io::Result<Mmap> {
    let len = usize::try_from(len)
        .map_err(|_| io::Error::other("file too large to map on this platform"))?;
    // SAFETY: `len` <= the file's current length (the caller took it from
    // metadata), and natrec never shrinks a partition file (module docs):
    // sealed files are immutable, logs only grow. Content changes made by the
    // writer through its own map are allowed: every record read through this
    // map is CRC-checked before use, so a torn record is rejected, not trusted.
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// Maps the first `len` bytes of `file` read-write. The file must be opened
/// read-write and already be at least `len` bytes long (preallocated).
pub(crate) fn map_write(file: &File, len: u64) -> io::Result<MmapMut> {
    let len = usize::try_from(len)
        .map_err(|_| io::Error::other("file too large to map on this platform"))?;
    // SAFETY: the writer holds `store.lock`, so no other natrec process
    // writes this log; `len` is the file's length read just before (logs
    // only grow, never shrink), and the writer maps a log writable only while
    // recovering it at open, dropping the map before it appends.
    unsafe { MmapOptions::new().len(len).map_mut(file) }
}
