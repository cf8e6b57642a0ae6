//! The flow slab's memory: one anonymous map reserved for every slot the
//! correlator may ever hand out (`flows_active_max`), advised for transparent
//! huge pages (`MADV_HUGEPAGE`) and touched only as slots are handed out.
//!
//! Why: the slots of a large flow table (12 MB on the bench capture, up to
//! `flows_active_max` × 56 bytes) are read in hash order, so with 4 KiB
//! pages nearly every slot read is a TLB miss as well as a cache miss. In
//! 2 MiB pages the whole table is a handful of TLB entries. The reservation
//! costs address space, not memory: pages are faulted in as the slots are
//! first written (`MAP_NORESERVE`, no swap reserved). Where transparent huge
//! pages are off (or not Linux) the advice is ignored and this is an ordinary
//! lazily faulted map.

use std::marker::PhantomData;

use memmap2::{Advice, MmapMut, MmapOptions};

/// Transparent huge page size the map is aligned to (x86-64 and arm64 with
/// 4 KiB base pages).
pub(super) const HUGE_PAGE_BYTES: usize = 2 << 20;

/// A slab of `T` in a reserved anonymous map: at most `capacity` entries,
/// handed out in order by [`push`](MappedSlab::push), never moved or freed
/// while the slab lives.
pub(super) struct MappedSlab<T: Copy> {
    map: MmapMut,
    /// Byte offset of entry 0 in `map` (the first huge page boundary).
    offset: usize,
    capacity: usize,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Copy> MappedSlab<T> {
    /// Reserves room for `capacity` entries.
    ///
    /// # Panics
    /// When the address space cannot be reserved (a `capacity` near
    /// `FLOWS_ACTIVE_MAX_LIMIT` is ~1 GB of address space, no memory).
    pub(super) fn new(capacity: usize) -> MappedSlab<T> {
        // 2 MiB alignment covers T's (a page boundary is already aligned
        // for any T the correlator keeps).
        const { assert!(std::mem::align_of::<T>() <= 4096 && std::mem::size_of::<T>() > 0) };
        let bytes = capacity
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(HUGE_PAGE_BYTES))
            .expect("slab size fits usize");
        let map = MmapOptions::new()
            .len(bytes)
            .no_reserve_swap()
            .map_anon()
            .expect("reserving the flow slab's address space");
        let addr = map.as_ptr() as usize;
        let offset = (HUGE_PAGE_BYTES - addr % HUGE_PAGE_BYTES) % HUGE_PAGE_BYTES;
        #[cfg(target_os = "linux")]
        {
            // A hint: without transparent huge pages the map works the same.
            let _ = map.advise_range(Advice::HugePage, offset, bytes - offset);
        }
        MappedSlab {
            map,
            offset,
            capacity,
            len: 0,
            _t: PhantomData,
        }
    }

    /// Entries handed out so far.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends `v` and returns its index, or `None` at the capacity.
    pub(super) fn push(&mut self, v: T) -> Option<usize> {
        if self.len == self.capacity {
            return None;
        }
        let i = self.len;
        // SAFETY: `i < capacity`, so in bounds and aligned as in `get`;
        // writing (not assigning: no old value is read or dropped) makes
        // entry `i` a valid `T` before `len` admits it.
        #[allow(unsafe_code)]
        unsafe {
            self.map
                .as_mut_ptr()
                .add(self.offset)
                .cast::<T>()
                .add(i)
                .write(v)
        };
        self.len += 1;
        Some(i)
    }

    /// Bytes of memory the handed-out entries may hold: their size rounded
    /// up to whole huge pages (what a huge-page-backed map has faulted in).
    pub(super) fn resident_bytes(&self) -> usize {
        (self.len * std::mem::size_of::<T>()).div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    }

    /// Entry `i`.
    ///
    /// # Panics
    /// When `i` was not handed out.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(super) fn get(&self, i: usize) -> &T {
        assert!(i < self.len, "slab entry {i} of {}", self.len);
        // SAFETY: the map is `offset + capacity * size_of::<T>()` bytes at
        // least (`new`), `offset` is a multiple of 4 KiB and the map starts
        // on a page, so the entry is in bounds and aligned (align_of::<T>()
        // ≤ 4096, checked in `new`). Entries `..len` were written by `push`
        // with a valid `T` (fresh anonymous pages are never taken as a `T`
        // before that). The map lives as long as `self`, does not move when
        // `self` does, and is only written through `&mut self`, so the
        // returned reference is not aliased by a mutable one.
        unsafe { &*self.map.as_ptr().add(self.offset).cast::<T>().add(i) }
    }

    /// Entry `i`, to change.
    ///
    /// # Panics
    /// When `i` was not handed out.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(super) fn get_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "slab entry {i} of {}", self.len);
        // SAFETY: as `get`; `&mut self` makes the reference unique.
        unsafe { &mut *self.map.as_mut_ptr().add(self.offset).cast::<T>().add(i) }
    }
}

/// Asks the CPU to start loading the cache line of `r` (and of its last
/// byte, when `T` straddles two lines). A hint: no effect on any result.
#[inline(always)]
pub(super) fn prefetch<T>(r: &T) {
    let p = (r as *const T).cast::<u8>();
    prefetch_line(p);
    prefetch_line(p.wrapping_add(std::mem::size_of::<T>() - 1));
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline(always)]
fn prefetch_line(p: *const u8) {
    // SAFETY: a prefetch is a hint: it never faults and changes no memory
    // (and `p` points into a live reference anyway).
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>()) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch_line(_p: *const u8) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_values_and_the_capacity_holds() {
        let mut s: MappedSlab<(u64, u32)> = MappedSlab::new(1000);
        for i in 0..1000u64 {
            assert_eq!(s.push((i, i as u32 * 3)), Some(i as usize));
        }
        assert_eq!(s.push((0, 0)), None);
        assert_eq!(s.len(), 1000);
        *s.get_mut(7) = (70, 71);
        for i in 0..1000usize {
            let want = if i == 7 {
                (70, 71)
            } else {
                (i as u64, i as u32 * 3)
            };
            assert_eq!(*s.get(i), want);
        }
        assert_eq!(s.resident_bytes(), HUGE_PAGE_BYTES);
    }

    #[test]
    #[should_panic(expected = "slab entry")]
    fn an_entry_not_handed_out_panics() {
        let s: MappedSlab<u64> = MappedSlab::new(10);
        s.get(0);
    }
}
