//! The flow slab's memory: one anonymous map reserved for every slot the
//! correlator may ever hand out (`flows_active_max`), aligned to 2 MiB,
//! touched only as slots are handed out, and each 2 MiB of it made one
//! transparent huge page (`MADV_COLLAPSE`) as soon as the slots handed out
//! fill it.
//!
//! Why: the slots of a large flow table (12 MB on the bench capture, up to
//! `flows_active_max` × 56 bytes) are read in hash order, so with 4 KiB
//! pages nearly every slot read is a TLB miss as well as a cache miss. In
//! 2 MiB pages the whole table is a handful of TLB entries. The reservation
//! costs address space, not memory: pages are faulted in as the slots are
//! first written (`MAP_NORESERVE`, no swap reserved). Only *filled* 2 MiB
//! ranges are collapsed, so the partly used last one stays in 4 KiB pages
//! and the slab holds no more than its slots rounded up to 4 KiB (advising
//! the whole map `MADV_HUGEPAGE` instead would fault a whole 2 MiB page in
//! for the first slot of each range: up to 2 MiB more, ~9 B per flow on the
//! bench). Where the kernel cannot collapse (not Linux, before 6.1, THP
//! `never`) the slab is an ordinary lazily faulted map.

use std::marker::PhantomData;

use memmap2::{MmapMut, MmapOptions};

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
    /// Reserves room for `capacity` entries: an error when the address space
    /// cannot be reserved (`ulimit -v`; a `capacity` near
    /// `FLOWS_ACTIVE_MAX_LIMIT` is ~1 GB of address space, no memory).
    pub(super) fn new(capacity: usize) -> std::io::Result<MappedSlab<T>> {
        // 2 MiB alignment covers T's (a page boundary is already aligned
        // for any T the correlator keeps).
        const { assert!(std::mem::align_of::<T>() <= 4096 && std::mem::size_of::<T>() > 0) };
        let bytes = capacity
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(HUGE_PAGE_BYTES))
            .ok_or_else(|| std::io::Error::other("slab size overflows usize"))?;
        let map = MmapOptions::new().len(bytes).no_reserve_swap().map_anon()?;
        let addr = map.as_ptr() as usize;
        let offset = (HUGE_PAGE_BYTES - addr % HUGE_PAGE_BYTES) % HUGE_PAGE_BYTES;
        Ok(MappedSlab {
            map,
            offset,
            capacity,
            len: 0,
            _t: PhantomData,
        })
    }

    /// Entries room was reserved for.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.capacity
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
        let size = std::mem::size_of::<T>();
        let (before, after) = (
            i * size / HUGE_PAGE_BYTES,
            self.len * size / HUGE_PAGE_BYTES,
        );
        if after > before {
            // The slots now fill the 2 MiB range `before`.
            self.collapse(before * HUGE_PAGE_BYTES);
        }
        Some(i)
    }

    /// Asks the kernel to back the 2 MiB of entries from byte `at` (a
    /// multiple of 2 MiB, filled) with one huge page. A hint: the bytes stay
    /// the same whatever the outcome, so the outcome is ignored.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn collapse(&mut self, at: usize) {
        let p = self.map.as_mut_ptr().wrapping_add(self.offset + at);
        // SAFETY: `[p, p + 2 MiB)` lies inside the map (entries up to
        // `len` fill it, and the map holds `capacity` entries from
        // `offset`), is 2 MiB aligned (`offset`), and is ours alone.
        // MADV_COLLAPSE copies its pages into one huge page and remaps it in
        // place, preserving every byte (it is refused, changing nothing, where
        // it cannot); no reference into the map is invalidated.
        unsafe {
            libc::madvise(p.cast(), HUGE_PAGE_BYTES, libc::MADV_COLLAPSE);
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn collapse(&mut self, _at: usize) {}

    /// Bytes of memory the handed-out entries hold: their size rounded up
    /// to whole 4 KiB pages (filled 2 MiB ranges are huge pages, the rest
    /// 4 KiB pages; with THP set to `always` system-wide the kernel may fault
    /// the last range as a huge page as well).
    pub(super) fn resident_bytes(&self) -> usize {
        (self.len * std::mem::size_of::<T>()).div_ceil(4096) * 4096
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

    /// Entry `s`, without a bounds check (a [`SlotNo`] is below `len`).
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(super) fn at(&self, s: SlotNo) -> &T {
        let i = s.0 as usize;
        debug_assert!(i < self.len, "slab entry {i} of {}", self.len);
        // SAFETY: `i < len` (`SlotNo::handed_out`'s contract: `len` only
        // grows, so a number handed out stays below it); the rest as `get`.
        unsafe { &*self.map.as_ptr().add(self.offset).cast::<T>().add(i) }
    }

    /// Entry `s`, to change, without a bounds check.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(super) fn at_mut(&mut self, s: SlotNo) -> &mut T {
        let i = s.0 as usize;
        debug_assert!(i < self.len, "slab entry {i} of {}", self.len);
        // SAFETY: as `at`; `&mut self` makes the reference unique.
        unsafe { &mut *self.map.as_mut_ptr().add(self.offset).cast::<T>().add(i) }
    }

    /// Starts loading entry `i` (a hint: any `i`, handed out or not, even
    /// past the map: the address is only computed, never dereferenced, and
    /// a prefetch does not fault).
    #[inline(always)]
    pub(super) fn prefetch_entry(&self, i: u32) {
        let p = self
            .map
            .as_ptr()
            .wrapping_add(self.offset)
            .cast::<T>()
            .wrapping_add(i as usize);
        prefetch_ptr(p);
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

/// An entry number of the one [`MappedSlab`] a correlator keeps its flows
/// in, known to be handed out: read with [`MappedSlab::at`] /
/// [`at_mut`](MappedSlab::at_mut) without a bounds check. Made only by
/// [`SlotNo::handed_out`] (`unsafe`: the caller vouches for it; the field is
/// private to this module). A slab never takes an entry back (`len` only
/// grows), so a number handed out once stays below `len` for the slab's
/// life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlotNo(u32);

impl SlotNo {
    /// Vouches that `i` is an entry number the slab it will read has
    /// handed out ([`push`](MappedSlab::push)).
    ///
    /// # Safety
    /// `i` must be below the `len` of every slab the `SlotNo` is used with
    /// (for the correlator: a slot taken from its flow index or timer
    /// wheel, which hold handed-out slots only; debug builds assert it at
    /// each read).
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(super) unsafe fn handed_out(i: u32) -> SlotNo {
        SlotNo(i)
    }

    /// The number.
    #[inline(always)]
    pub(super) fn number(self) -> u32 {
        self.0
    }
}

/// Asks the CPU to start loading the cache line of `r` (and of its last
/// byte, when a `T` may straddle two lines). A hint: no effect on any result.
///
/// A `T` no larger than its alignment, aligned to at most a line, lies in
/// one line (an aligned block of its alignment lies in one line): the index
/// heads (4 bytes) and the pending table's entries (8 bytes, aligned to 8)
/// take one prefetch, not two naming the same line.
#[inline(always)]
pub(super) fn prefetch<T>(r: &T) {
    prefetch_ptr(r as *const T);
}

/// [`prefetch`] of an address that need not point at a live `T` (a
/// prefetch never faults and changes no memory).
#[inline(always)]
pub(super) fn prefetch_ptr<T>(r: *const T) {
    let p = r.cast::<u8>();
    prefetch_line(p);
    let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    if size > align || align > 64 {
        prefetch_line(p.wrapping_add(size - 1));
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline(always)]
fn prefetch_line(p: *const u8) {
    // SAFETY: a prefetch is a hint: it never faults and changes no memory,
    // whatever the address (`prefetch_entry` may name one past the map).
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
        let mut s: MappedSlab<(u64, u32)> = MappedSlab::new(1000).unwrap();
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
        assert_eq!(s.resident_bytes(), 16 * 1000usize.div_ceil(256) * 256);
    }

    #[test]
    fn entries_keep_their_values_across_collapsed_ranges() {
        // 2.5 huge pages of 24-byte entries: two ranges collapsed (where the
        // kernel can), the last in 4 KiB pages.
        let n = HUGE_PAGE_BYTES * 5 / 2 / 24;
        let mut s: MappedSlab<[u64; 3]> = MappedSlab::new(n).unwrap();
        for i in 0..n as u64 {
            s.push([i, !i, i.rotate_left(17)]);
            if i % 1000 == 0 {
                *s.get_mut(i as usize / 2) = [i, i, i];
            }
        }
        for i in 0..n {
            let j = i as u64;
            let changed = (2 * i) % 1000 == 0 && 2 * i < n;
            let want = if changed {
                [2 * j, 2 * j, 2 * j]
            } else {
                [j, !j, j.rotate_left(17)]
            };
            assert_eq!(*s.get(i), want, "entry {i}");
        }
        assert_eq!(s.resident_bytes(), (n * 24).div_ceil(4096) * 4096);
    }

    #[test]
    fn slot_numbers_read_and_write_what_get_does() {
        let mut s: MappedSlab<[u64; 7]> = MappedSlab::new(3000).unwrap();
        for i in 0..3000u64 {
            s.push([i, !i, i * 3, i ^ 0x55, i << 9, i.rotate_left(31), 7]);
            // Every number handed out so far, the oldest and the newest.
            for j in [0, i / 2, i] {
                // SAFETY: `j ≤ i` was handed out.
                #[allow(unsafe_code)]
                let at = unsafe { SlotNo::handed_out(j as u32) };
                assert_eq!(at.number(), j as u32);
                assert_eq!(s.at(at), s.get(j as usize), "entry {j} of {}", i + 1);
                s.prefetch_entry(j as u32);
            }
            if i % 7 == 0 {
                // SAFETY: `i / 3 ≤ i` was handed out.
                #[allow(unsafe_code)]
                let at = unsafe { SlotNo::handed_out((i / 3) as u32) };
                s.at_mut(at)[6] = i;
            }
        }
        for i in 0..3000u64 {
            let changed = (0..3000u64).filter(|k| k % 7 == 0 && k / 3 == i).max();
            assert_eq!(s.get(i as usize)[6], changed.unwrap_or(7), "entry {i}");
            assert_eq!(s.get(i as usize)[0], i);
        }
        // A hint for any number, even one past the map: computed, never read.
        s.prefetch_entry(u32::MAX);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "slab entry 3 of 3")]
    fn a_slot_number_not_handed_out_panics_in_debug_builds() {
        let mut s: MappedSlab<u64> = MappedSlab::new(10).unwrap();
        for v in 0..3 {
            s.push(v);
        }
        // SAFETY: not kept: the debug assertion in `at` panics before the
        // read (this test is compiled in debug builds only).
        #[allow(unsafe_code)]
        let at = unsafe { SlotNo::handed_out(3) };
        s.at(at);
    }

    #[test]
    #[should_panic(expected = "slab entry")]
    fn an_entry_not_handed_out_panics() {
        let s: MappedSlab<u64> = MappedSlab::new(10).unwrap();
        s.get(0);
    }
}
