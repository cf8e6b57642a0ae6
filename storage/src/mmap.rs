//! All of natrec-storage's `unsafe`: memory maps of partition files (habit 11),
//! a prefetch hint for reading a log's map out of order, and the start of a
//! file's writeback (`sync_file_range`) for the publish.
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
//!   deleted after sealing, which leaves existing maps valid on Unix, or its
//!   file is renamed and used again for a later log (never shrunk), with the
//!   map its seal read it through: that map keeps its length, at most the
//!   file's then, and reads what the later log writes over the same pages;
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

/// Asks the CPU to load the cache lines of `r` (a record in a log's map, for
/// the seal's reads in sorted order, which jump around the log): a hint, no
/// effect on any value read.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = (r as *const T).cast::<i8>();
        let last = p.wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
        // SAFETY: a prefetch is a hint: it reads nothing the program sees,
        // changes no memory and never faults, whatever the address (x86
        // `PREFETCHh` raises no exception); both addresses are bytes of `r`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(last);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Starts writing `f`'s dirty pages to the disk without waiting for them
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` over the whole file: pages
/// already under writeback are skipped), so a later fsync waits only for
/// what is still in flight. No durability: the fsync that follows still
/// writes whatever this did not (metadata, the device's cache), and an
/// error here shows again there; so this one's result is ignored. Linux
/// only; elsewhere nothing.
pub(crate) fn start_writeback(f: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: `sync_file_range` (Linux ≥ 2.6.17, declared by the `libc`
        // crate) takes a file descriptor and three integers and touches no
        // memory of ours; the descriptor is `f`'s, open for the whole call.
        // Offset 0 and length 0 mean "to the end of the file".
        let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}
