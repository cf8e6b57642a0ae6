//! Sealed partition format v2: the sorted records of a partition as columns
//! in blocks of [`BLOCK_RECORDS`], with a per-partition address dictionary,
//! a block index and a CRC-32 on every piece. About 12–16 bytes per mapping
//! instead of v1's 96 (docs/FORMAT.md draws every byte).
//!
//! ```text
//! header (64, as v1 with version 2) | dictionary | dictionary chunk CRCs
//!   | block 0 | block 1 | ... | block index (32 per block) | footer (64)
//! ```
//!
//! Decoding is pure (bytes in, records out) and checks everything: a block
//! is decoded only after its CRC matched, and then every length, width, id,
//! code and time is bounds-checked again, so a damaged file is an error
//! naming the byte, never a panic and never a wrong record.

use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use memmap2::Mmap;
use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::format::{
    header_crc, Record, SealedHeader, HEADER_SIZE, SEALED_MAGIC, SF_CARRIED, SF_INTERNAL_V4,
    SF_LATE, SF_PUBLIC_V4, SF_REMOTE_V4,
};
use crate::model::{EndReason, Proto};
use crate::radix::AddrKeys;
use crate::StoreError;

/// Version in the header of a v2 sealed partition (v1 readers refuse it with
/// "written by a newer natrec; upgrade natrec").
pub const SEALED_VERSION_V2: u32 = 2;
/// Highest sealed-partition version this build reads.
pub const SEALED_VERSION_MAX: u32 = SEALED_VERSION_V2;
/// Magic of a v2 footer.
pub const FOOTER_V2_MAGIC: [u8; 8] = *b"NATRECF2";
/// Records per block (the last block may hold fewer). A lookup decodes one
/// block: 512 mappings, ~7 KiB.
pub const BLOCK_RECORDS: usize = 512;
/// The dictionary is checksummed in chunks of this many bytes, so a lookup
/// checks only the chunks holding the addresses it resolves.
pub const DICT_CHUNK_BYTES: usize = 256;
/// Bytes of one block index entry.
pub const INDEX_ENTRY_SIZE: usize = 32;
/// Bound on one block's encoded size (a block of 512 records needs < 64 KiB
/// even with every column at full width); larger is corrupt.
const BLOCK_BYTES_MAX: u32 = 1 << 20;

/// Footer of a v2 sealed partition.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct FooterV2 {
    /// [`FOOTER_V2_MAGIC`].
    pub magic: [u8; 8],
    /// Records in the file; must equal the header's.
    pub record_count: U64,
    /// Smallest `first_ns` of the records marked `LATE`; `i64::MAX` if none.
    pub late_min_first_ns: I64,
    /// Largest `last_ns` of any record; 0 if none.
    pub max_last_ns: I64,
    /// CRC-32 of the block index bytes.
    pub index_crc: U32,
    /// Records with `CARRIED`.
    pub carried_in: U32,
    /// Records with `LATE`.
    pub late_in: U32,
    /// Blocks (= index entries).
    pub block_count: U32,
    /// IPv4 addresses in the dictionary (4 bytes each).
    pub dict_v4: U32,
    /// IPv6 addresses in the dictionary (16 bytes each).
    pub dict_v6: U32,
    /// Records per block (all blocks but the last are full).
    pub block_records: U32,
    /// CRC-32 of bytes 0..60.
    pub crc: U32,
}
const _: () = assert!(size_of::<FooterV2>() == HEADER_SIZE);

/// One block index entry: the sort key of the block's first record and
/// where the block is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct IndexEntry {
    /// `public_ip` (16-byte form) of the block's first record.
    pub public_ip: [u8; 16],
    /// `public_port` of the block's first record.
    pub public_port: U16,
    /// Zero.
    pub reserved: [u8; 2],
    /// Bytes of the block, its 4-byte CRC included.
    pub len: U32,
    /// Byte offset of the block in the file.
    pub offset: U64,
}
const _: () = assert!(size_of::<IndexEntry>() == INDEX_ENTRY_SIZE);

// ---------------------------------------------------------------- varints

/// A varint pushed byte by byte: the reference [`BlockBuf::varint`] is
/// tested against.
#[cfg(test)]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn bits(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Appends `vals` as `width`-bit integers, least significant bit first,
/// byte by byte: the reference [`BlockBuf::packed`] is tested against.
#[cfg(test)]
fn put_packed(out: &mut Vec<u8>, vals: impl Iterator<Item = u64>, width: u32) {
    if width == 0 {
        return;
    }
    let (mut acc, mut nbits) = (0u128, 0u32);
    for v in vals {
        acc |= u128::from(v) << nbits;
        nbits += width;
        while nbits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    }
    if nbits > 0 {
        out.push(acc as u8);
    }
}

/// `varint_len` by the index of the highest set bit of `v | 1` (a load, not
/// a division; indexed by the bit, not by the count of leading zeros, so
/// that no instruction turns the one into the other).
const VARINT_LEN_BY_TOP_BIT: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut top = 0;
    while top < 64 {
        t[top] = (top + 1).div_ceil(7) as u8;
        top += 1;
    }
    t
};

/// [`varint_len`] through [`VARINT_LEN_BY_TOP_BIT`].
#[inline(always)]
fn varint_len_fast(v: u64) -> usize {
    usize::from(VARINT_LEN_BY_TOP_BIT[(v | 1).ilog2() as usize])
}

/// Bytes of the largest block payload [`encode_blocks`] can write, plus
/// the 8 bytes a word store may reach past the end: the count and units (4),
/// then 11 columns, each its tag and at most `n` varints (any encoding is
/// chosen only when it is no larger than the varints).
const BLOCK_PAYLOAD_BOUND: usize = 4 + 11 * (1 + 10 * BLOCK_RECORDS) + 8;

/// One block's payload while it is encoded: a buffer of fixed length
/// written at `pos` through bounds-checked stores, packed bits and varints
/// eight bytes at a time (bytes past `pos` are scratch; only
/// `bytes()` is the payload). The same bytes as `put_varint` and
/// `put_packed` (property-tested), in a fraction of their instructions:
/// those push one byte at a time onto a `Vec`.
struct BlockBuf {
    buf: Vec<u8>,
    pos: usize,
}

impl BlockBuf {
    fn new() -> BlockBuf {
        BlockBuf {
            buf: vec![0; BLOCK_PAYLOAD_BOUND],
            pos: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    fn clear(&mut self) {
        self.pos = 0;
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    /// The low `len` bytes of `w` (little-endian); the other bytes of the
    /// word land past the end, where the next store overwrites them.
    #[inline(always)]
    fn word(&mut self, w: u64, len: usize) {
        let p = self.pos;
        self.buf[p..p + 8].copy_from_slice(&w.to_le_bytes());
        self.pos = p + len;
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
            return;
        }
        self.varint_long(v);
    }

    fn varint_long(&mut self, mut v: u64) {
        let p = self.pos;
        let out = &mut self.buf[p..p + 10];
        let mut i = 0;
        while v >= 0x80 {
            out[i] = v as u8 | 0x80;
            v >>= 7;
            i += 1;
        }
        out[i] = v as u8;
        self.pos = p + i + 1;
    }

    /// `vals` (each below 2^`width`) as `width`-bit integers, least
    /// significant bit first, stored 64 bits at a time; the last word's
    /// unused high bits are zero.
    #[inline(always)]
    fn packed(&mut self, vals: impl Iterator<Item = u64>, width: u32) {
        if width == 0 {
            return;
        }
        // `acc` holds `nbits` (< 64) pending bits; a value that fills it
        // leaves its high `nbits` bits (after the subtraction) as the next
        // pending ones: `v >> (width - nbits)`, written as two shifts so
        // that no shift is by 64 (`v` has no bits from `width` up).
        let (mut acc, mut nbits) = (0u64, 0u32);
        for v in vals {
            acc |= v << nbits;
            nbits += width;
            if nbits >= 64 {
                self.word(acc, 8);
                nbits -= 64;
                acc = (v >> 1) >> (width - 1 - nbits);
            }
        }
        if nbits > 0 {
            self.word(acc, nbits.div_ceil(8) as usize);
        }
    }
}

impl BlockBuf {
    /// [`Self::packed`] of `vals` mapped through `f` (each result below
    /// 2^`width`): the same bytes, with the width a constant up to 32 bits
    /// (property-tested against [`put_packed`]).
    #[inline(always)]
    fn packed_by<T: Copy>(&mut self, vals: &[T], f: impl Fn(T) -> u64, width: u32) {
        match width {
            0 => {}
            1 => self.packed_const::<1, T>(vals, f),
            2 => self.packed_const::<2, T>(vals, f),
            3 => self.packed_const::<3, T>(vals, f),
            4 => self.packed_const::<4, T>(vals, f),
            5 => self.packed_const::<5, T>(vals, f),
            6 => self.packed_const::<6, T>(vals, f),
            7 => self.packed_const::<7, T>(vals, f),
            8 => self.packed_const::<8, T>(vals, f),
            9 => self.packed_const::<9, T>(vals, f),
            10 => self.packed_const::<10, T>(vals, f),
            11 => self.packed_const::<11, T>(vals, f),
            12 => self.packed_const::<12, T>(vals, f),
            13 => self.packed_const::<13, T>(vals, f),
            14 => self.packed_const::<14, T>(vals, f),
            15 => self.packed_const::<15, T>(vals, f),
            16 => self.packed_const::<16, T>(vals, f),
            17 => self.packed_const::<17, T>(vals, f),
            18 => self.packed_const::<18, T>(vals, f),
            19 => self.packed_const::<19, T>(vals, f),
            20 => self.packed_const::<20, T>(vals, f),
            21 => self.packed_const::<21, T>(vals, f),
            22 => self.packed_const::<22, T>(vals, f),
            23 => self.packed_const::<23, T>(vals, f),
            24 => self.packed_const::<24, T>(vals, f),
            25 => self.packed_const::<25, T>(vals, f),
            26 => self.packed_const::<26, T>(vals, f),
            27 => self.packed_const::<27, T>(vals, f),
            28 => self.packed_const::<28, T>(vals, f),
            29 => self.packed_const::<29, T>(vals, f),
            30 => self.packed_const::<30, T>(vals, f),
            31 => self.packed_const::<31, T>(vals, f),
            32 => self.packed_const::<32, T>(vals, f),
            _ => self.packed(vals.iter().map(|&v| f(v)), width),
        }
    }

    /// `vals` through `f` as `W`-bit integers, bits in the same order as
    /// [`Self::packed`]'s, least significant first, so the same bytes.
    ///
    /// Runs of 64 values first: 64 values are `W` whole words, put
    /// together by constant shifts and stored at constant offsets
    /// ([`pack_words`]; the position a local, one bounds check a run), ~3.5
    /// instructions a value (round 18; a chunk of two 23-bit values cost
    /// ~12). The rest (fewer than 64) starts on a word: `64 / W` values are
    /// put together by constant shifts into one chunk, and the chunks
    /// (`64 / W * W` bits each; whole words when `W` divides 64) are
    /// appended as [`Self::packed`] appends values, so one test and one
    /// variable shift a chunk rather than a value.
    #[inline(always)]
    fn packed_const<const W: u32, T: Copy>(&mut self, vals: &[T], f: impl Fn(T) -> u64) {
        packed_const_mv::<W, T, _>(self, vals, f);
    }
}

crate::simd::v3! {
    /// [`BlockBuf::packed_const`], for the baseline and for x86-64-v3.
    fn packed_const_mv[const W: u32, T: Copy, F: Fn(T) -> u64](b: &mut BlockBuf, vals: &[T], f: F)
    => packed_const_body[W, T, F];
}

/// [`BlockBuf::packed_const`]'s body ([`packed_const_mv`]'s two versions).
#[inline(always)]
fn packed_const_body<const W: u32, T: Copy, F: Fn(T) -> u64>(b: &mut BlockBuf, vals: &[T], f: F) {
    let mut runs = vals.chunks_exact(PACK_RUN_VALUES);
    let mut pos = b.pos;
    let run_bytes = 8 * W as usize;
    for run in &mut runs {
        let run: &[T; PACK_RUN_VALUES] = run.try_into().expect("chunks_exact");
        pack_words::<W, T>(run, &f, &mut b.buf[pos..pos + run_bytes]);
        pos += run_bytes;
    }
    b.pos = pos;
    let vals = runs.remainder();
    let g = (64 / W) as usize;
    let bits = g as u32 * W;
    let mut chunks = vals.chunks_exact(g);
    let (mut acc, mut nbits) = (0u64, 0u32);
    for c in &mut chunks {
        let mut x = 0u64;
        for (i, &v) in c.iter().enumerate() {
            x |= f(v) << (i as u32 * W);
        }
        if bits == 64 {
            // `nbits` stays 0: every chunk is a whole word.
            b.word(x, 8);
            continue;
        }
        acc |= x << nbits;
        nbits += bits;
        if nbits >= 64 {
            b.word(acc, 8);
            nbits -= 64;
            acc = (x >> 1) >> (bits - 1 - nbits);
        }
    }
    for &v in chunks.remainder() {
        let v = f(v);
        acc |= v << nbits;
        nbits += W;
        if nbits >= 64 {
            b.word(acc, 8);
            nbits -= 64;
            acc = (v >> 1) >> (W - 1 - nbits);
        }
    }
    if nbits > 0 {
        b.word(acc, nbits.div_ceil(8) as usize);
    }
}

/// `$body` eight times, `$i` bound to 0, 1, ..., 7 in turn: a loop
/// unrolled where its steps must see their index as a constant.
macro_rules! unroll8 {
    ($i:ident => $body:block) => {
        unroll8!(@ $i $body 0 1 2 3 4 5 6 7)
    };
    (@ $i:ident $body:block $($n:literal)*) => {{
        $({
            let $i: usize = $n;
            $body
        })*
    }};
}

/// Values [`BlockBuf::packed_const`] packs as whole words at a time: 64
/// values of `W` bits are `W` words exactly.
const PACK_RUN_VALUES: usize = 64;

/// The 64 values of `run` through `f` as `W`-bit integers, least
/// significant bit first, into `out` (`8 * W` bytes: `W` little-endian
/// words). The loop's bounds are constants, so it unrolls into constant
/// shifts and stores at constant offsets.
#[inline(always)]
fn pack_words<const W: u32, T: Copy>(
    run: &[T; PACK_RUN_VALUES],
    f: &impl Fn(T) -> u64,
    out: &mut [u8],
) {
    assert!(out.len() == 8 * W as usize && (1..=32).contains(&W));
    let mut acc = 0u64;
    let mut word = 0usize;
    // 8 x 8 steps written out (LLVM does not unroll 64 by itself): `i`,
    // `off` and `word` are constants in each.
    unroll8!(hi => {
        unroll8!(lo => {
            let i = 8 * hi + lo;
            let v = f(run[i]);
            let off = (i as u32 * W) % 64;
            acc |= v << off;
            if off + W >= 64 {
                out[8 * word..8 * word + 8].copy_from_slice(&acc.to_le_bytes());
                word += 1;
                // The value's bits past the word (none when it ends
                // there); `off` is at least 32 here, so the shift is
                // below 64.
                acc = if off + W > 64 { v >> (64 - off) } else { 0 };
            }
        })
    });
    debug_assert!(word == W as usize && acc == 0);
}

/// A fault inside one block: position relative to the block start.
#[derive(Debug)]
struct BlockFault {
    field: &'static str,
    pos: usize,
    detail: String,
}

type Res<T> = Result<T, BlockFault>;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn fault(&self, field: &'static str, detail: impl Into<String>) -> BlockFault {
        BlockFault {
            field,
            pos: self.pos,
            detail: detail.into(),
        }
    }

    fn byte(&mut self, field: &'static str) -> Res<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.fault(field, "block ends inside it"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, field: &'static str) -> Res<u64> {
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(field)?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(self.fault(field, "varint longer than 64 bits"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.fault(field, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, field: &'static str) -> Res<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.fault(field, format!("{n} bytes needed, block ends first")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// `n` values of `width` bits into `out` (cleared first).
    fn packed_into(
        &mut self,
        n: usize,
        width: u32,
        field: &'static str,
        out: &mut Vec<u64>,
    ) -> Res<()> {
        if width > 64 {
            return Err(self.fault(field, format!("bit width {width} > 64")));
        }
        let bytes = (n as u64 * u64::from(width)).div_ceil(8) as usize;
        let data = self.take(bytes, field)?;
        out.clear();
        if width == 0 {
            out.resize(n, 0);
            return Ok(());
        }
        let mask = if width == 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        let w = width as usize;
        // Value j is bits j·w .. (j+1)·w: at most 8 + 1 bytes from byte
        // j·w/8. While 8 bytes are there (and w ≤ 56) read them as one word.
        let mut j = 0usize;
        if w <= 56 {
            while j < n {
                let bit = j * w;
                let Some(word) = data.get(bit / 8..bit / 8 + 8) else {
                    break;
                };
                let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                out.push((word >> (bit % 8)) & mask);
                j += 1;
            }
        }
        // The last few values (and any width above 56), byte by byte.
        while j < n {
            let bit = j * w;
            let mut acc = 0u128;
            for (k, &b) in data[bit / 8..].iter().take(9).enumerate() {
                acc |= u128::from(b) << (8 * k);
            }
            out.push((acc >> (bit % 8)) as u64 & mask);
            j += 1;
        }
        Ok(())
    }
}

// ---------------------------------------------------------- int columns

/// Column encodings (first byte of a column).
const COL_FOR: u8 = 0; // varint min, u8 width, packed (v - min)
const COL_VARINT: u8 = 1; // n varints
const COL_DICT: u8 = 2; // varint k, k varints (first, then gaps), u8 width, packed ids

/// Reusable buffers of [`put_col`] (one per encoded file).
struct ColScratch {
    /// Distinct values of the column (sorted once complete).
    distinct: Vec<u64>,
    /// Open-addressing table for counting up to [`DISTINCT_HASHED_MAX`]
    /// distinct values; a slot is in use for this column when its `stamp`
    /// is `gen` (one increment per column instead of clearing the table).
    /// A column whose range is below [`DISTINCT_SLOTS`] uses the stamps
    /// alone, directly indexed by `v - min` (no hash, no probe).
    slots: [u64; DISTINCT_SLOTS],
    stamp: [u32; DISTINCT_SLOTS],
    gen: u32,
    /// How `distinct` was counted, i.e. how a value's id is found.
    counted: Counted,
    /// Dictionary id of the value in each used slot (set by `put_col`).
    ids: [u16; DISTINCT_SLOTS],
    /// Slot of each value of the column (valid for `Hashed` and
    /// `Direct`), or its id (`Rows`).
    at: [u16; DISTINCT_HASHED_MAX],
    /// Set by the caller: count by sorting (value, row) keys instead of
    /// hashing (a hint from the previous block's column; same decision and
    /// bytes either way).
    sort_first: bool,
    /// Set by the caller: try [`gap_bound`] first (a hint as `sort_first`:
    /// same decision and bytes either way).
    bound_first: bool,
    /// Set by the caller: with `sort_first`, try [`fine_gap_bound`] first
    /// (a hint as `sort_first`).
    fine_bound: bool,
    /// Set by the caller: try the fine bound before the coarse one (the
    /// fine one rejected the previous block's column).
    fine_first: bool,
    /// Whether [`gap_bound`] was tried on the last column and did not
    /// reject it.
    bound_failed: bool,
    /// Whether [`fine_gap_bound`] was tried on the last column and did
    /// not reject it.
    fine_failed: bool,
    /// Whether [`fine_gap_bound`] rejected the last column.
    fine_rejected: bool,
    /// Set by the caller: [`put_col`] finds the least and largest values
    /// first and sums the varint sizes in a second pass only when frame of
    /// reference is not provably no larger than the varints (a hint: same
    /// bytes either way).
    for_first: bool,
    /// Whether frame of reference was provably no larger than the varints
    /// on the last column (`size_for <= n * varint_len(min)`).
    for_proven: bool,
    /// Distinct values the last column had (0 when its count was
    /// abandoned or not started).
    seen: usize,
    /// Scratch of the (value, row) keys, and the second buffer of their
    /// radix sort ([`sort_rows`]).
    keys: Vec<u64>,
    keys_tmp: Vec<u64>,
    /// Bitmap of occupied buckets ([`gap_bound`]).
    buckets: [u64; 1 << (GAP_BUCKET_BITS_MAX - 6)],
    /// Set by the caller: where the range is below 2^[`MAP_BITS`], count
    /// the distinct values in `map` first, only to reject the column (a
    /// hint: the previous block's column was abandoned; same decision and
    /// bytes either way).
    map_first: bool,
    /// A bitmap of 2^[`MAP_BITS`] bits ([`more_distinct_than`]), all zero between its uses (it clears what
    /// it set).
    map: [u64; MAP_WORDS],
    /// A byte a bucket of [`fine_gap_bound_mapped`] (64 KiB, on the heap),
    /// all zero between its uses (it clears what it set).
    fine_map: Box<[u8; FINE_MAP_BYTES]>,
}

/// Bits of the values (less the least) [`more_distinct_than`] counts in
/// [`ColScratch::map`] and of the buckets [`fine_gap_bound_mapped`] counts
/// in [`ColScratch::fine_map`]; the bitmap's words (8 KiB).
const MAP_BITS: u32 = 16;
const MAP_WORDS: usize = 1 << (MAP_BITS - 6);

/// How [`dict_size_below`] counted a column's distinct values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counted {
    /// In `slots` by hash: a distinct value's slot is found by probing from
    /// [`distinct_slot`]; each value's slot is in `at`.
    Hashed,
    /// In `stamp` at `v - min`: each value's slot is in `at`.
    Direct { min: u64 },
    /// By sorting a copy of the column: ids by binary search.
    Sorted,
    /// By sorting the column's (value, row) keys: each row's id in `at`.
    Rows,
}

/// Bits of a row in [`dict_size_below`]'s (value, row) keys, and the widest
/// range (`max - min`, in bits) such keys hold.
const ROW_BITS: u32 = 9;
const ROW_MASK: u64 = (1 << ROW_BITS) - 1;
const SORTED_ROW_BITS_MAX: u32 = 64 - ROW_BITS;
const _: () = assert!(DISTINCT_HASHED_MAX <= 1 << ROW_BITS);

impl ColScratch {
    /// A new stamp for the table (the stamps cleared when it wraps).
    fn next_gen(&mut self) -> u32 {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.stamp = [0; DISTINCT_SLOTS];
            self.gen = 1;
        }
        self.gen
    }
}

impl Default for ColScratch {
    fn default() -> ColScratch {
        ColScratch {
            distinct: Vec::with_capacity(BLOCK_RECORDS + 1),
            slots: [0; DISTINCT_SLOTS],
            stamp: [0; DISTINCT_SLOTS],
            gen: 0,
            counted: Counted::Sorted,
            ids: [0; DISTINCT_SLOTS],
            at: [0; DISTINCT_HASHED_MAX],
            sort_first: false,
            bound_first: false,
            fine_bound: false,
            fine_first: false,
            bound_failed: false,
            fine_failed: false,
            fine_rejected: false,
            for_first: false,
            for_proven: false,
            seen: 0,
            keys: Vec::with_capacity(BLOCK_RECORDS),
            keys_tmp: Vec::with_capacity(BLOCK_RECORDS),
            buckets: [0; 1 << (GAP_BUCKET_BITS_MAX - 6)],
            map_first: false,
            map: [0; MAP_WORDS],
            // `vec!` of zeros is `calloc`: no memset for fresh pages.
            fine_map: vec![0; FINE_MAP_BYTES]
                .into_boxed_slice()
                .try_into()
                .expect("FINE_MAP_BYTES"),
        }
    }
}

/// Distinct values [`put_col`] counts with its hash table before it falls
/// back to sorting a copy of the column (at most half the slots are used):
/// a block's worth, so a block's column is never sorted whole, only its
/// distinct values when the dictionary may still win.
const DISTINCT_HASHED_MAX: usize = BLOCK_RECORDS;
const DISTINCT_SLOT_BITS: u32 = 10;
const DISTINCT_SLOTS: usize = 1 << DISTINCT_SLOT_BITS;
const _: () =
    assert!(DISTINCT_SLOTS == 2 * DISTINCT_HASHED_MAX && DISTINCT_HASHED_MAX <= u16::MAX as usize);

/// First slot of `v`'s probe in [`ColScratch::slots`].
fn distinct_slot(v: u64) -> usize {
    (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - DISTINCT_SLOT_BITS)) as usize
}

/// Size of the dictionary encoding (tag 2) of `vals` (least `min`, largest
/// `max`) if it is smaller than `best` bytes (the smaller of the other
/// two), with `s.distinct` then holding the sorted distinct values; `None`
/// if it is not smaller.
///
/// Exactly what computing the dictionary's size always would decide, but
/// without sorting the column when the dictionary cannot win: it needs
/// `k` distinct values with `bits(k - 1) < w_for` (narrower ids than frame
/// of reference) and at least `lb(k)` bytes (each of its `k` values takes a
/// byte or more), so counting stops once `k` passes the largest count that
/// could still win.
///
/// Where the caller sets `bound_first` (a hint), a wide column is first
/// tried against [`gap_bound`], an exact lower bound on the dictionary's
/// size from one pass over the values, and a column the (value, row) sort
/// would count against [`fine_gap_bound`] (`fine_first`: that one first):
/// a column they reject is neither hashed nor sorted.
///
/// The counting: a column whose range is below [`DISTINCT_SLOTS`] is
/// counted in the stamps directly indexed by `v - min` (and its distinct
/// values listed in order by a scan of the stamps when the range is small
/// next to the count, else sorted); any other in the hash table, a run of
/// equal values with one probe.
#[inline(never)]
fn dict_size_below(
    vals: &[u64],
    min: u64,
    max: u64,
    best: usize,
    s: &mut ColScratch,
) -> Option<usize> {
    let n = vals.len() as u64;
    let w_for = bits(max - min);
    s.seen = 0;
    if n == 0 || w_for == 0 {
        return None;
    }
    let packed = |k: u64| (n * u64::from(bits(k - 1))).div_ceil(8) as usize;
    let lb = |k: u64| varint_len(k) + varint_len(min) + (k as usize - 1) + 1 + packed(k);
    // Largest k that could win (0: none), searched only up to one past the
    // hashed bound: `lb` grows with k, so a binary search finds it.
    let k_for = if w_for >= 64 {
        u64::MAX
    } else {
        1u64 << (w_for - 1)
    };
    let cap = k_for.min(n).min(DISTINCT_HASHED_MAX as u64 + 1);
    if lb(1) >= best {
        return None;
    }
    // Invariant: lb(lo) < best, and lb(hi + 1) >= best or hi == cap.
    let (mut lo, mut hi) = (1u64, cap);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if lb(mid) < best {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let limit = lo as usize;
    s.bound_failed = false;
    s.fine_failed = false;
    s.fine_rejected = false;
    let hashable = vals.len() <= DISTINCT_HASHED_MAX;
    let range = max - min;
    // The fine bound where the (value, row) sort would count the column
    // (nearly all distinct last time), the coarse one on wide columns.
    let fine = s.fine_bound && s.sort_first && hashable && range >= DISTINCT_SLOTS as u64;
    let coarse = s.bound_first && w_for > GAP_BUCKET_BITS_MAX && w_for < 64;
    if (fine || coarse) && bounds_reject(vals, min, w_for, best, fine, coarse, s) {
        // Provably too big: keep the hints for the next block.
        s.seen = vals.len();
        return None;
    }
    if s.map_first
        && hashable
        && range >= DISTINCT_SLOTS as u64
        && range >> MAP_BITS == 0
        && more_distinct_than(vals, min, range, limit, &mut s.map)
    {
        // What the hash table would find after `limit + 1` probes, for a
        // bit a value.
        return None;
    }
    s.distinct.clear();
    let gen = s.next_gen();
    let mut complete = true;
    // The dictionary's values' varint bytes, where the counting summed them.
    let mut row_gaps = None;
    if s.sort_first
        && hashable
        && range >> SORTED_ROW_BITS_MAX == 0
        && range >= DISTINCT_SLOTS as u64
    {
        // Nearly all distinct last time: one sort of (value, row) keys
        // gives the distinct values in order and each row's id, no hash.
        s.counted = Counted::Rows;
        s.keys.clear();
        s.keys.extend(
            vals.iter()
                .enumerate()
                .map(|(j, &v)| (v - min) << ROW_BITS | j as u64),
        );
        sort_rows(&mut s.keys, &mut s.keys_tmp, bits(range));
        // The first key is `min`'s (`x` = 0): the dictionary's first
        // value; each next distinct value adds its gap's varint (summed
        // here, not in a pass over `distinct` below).
        debug_assert_eq!(s.keys[0] >> ROW_BITS, 0);
        s.distinct.push(min);
        let (mut prev, mut k, mut gaps) = (0u64, 1usize, varint_len(min));
        for &key in &s.keys {
            let x = key >> ROW_BITS;
            if x != prev {
                gaps += varint_len_fast(x - prev);
                prev = x;
                k += 1;
                s.distinct.push(min + x);
                if k > limit {
                    return None; // more distinct values than could win
                }
            }
            s.at[(key & ROW_MASK) as usize] = (k - 1) as u16;
        }
        row_gaps = Some(gaps);
    } else if range < DISTINCT_SLOTS as u64 {
        s.counted = Counted::Direct { min };
        for (j, &v) in vals.iter().enumerate() {
            let h = (v - min) as usize & (DISTINCT_SLOTS - 1);
            if s.stamp[h] != gen {
                s.stamp[h] = gen;
                s.distinct.push(v);
                if s.distinct.len() > limit {
                    if limit <= DISTINCT_HASHED_MAX {
                        return None; // more distinct values than could win
                    }
                    complete = false; // could still win: count them all by sorting
                    break;
                }
            }
            if let Some(a) = s.at.get_mut(j) {
                *a = h as u16;
            }
        }
    } else {
        s.counted = Counted::Hashed;
        // `prev` starts as a value that is not the first.
        let mut prev = (vals[0].wrapping_add(1), 0usize);
        'vals: for (j, &v) in vals.iter().enumerate() {
            let h = if v == prev.0 {
                prev.1
            } else {
                let mut h = distinct_slot(v);
                loop {
                    if s.stamp[h] != gen {
                        s.stamp[h] = gen;
                        s.slots[h] = v;
                        s.distinct.push(v);
                        if s.distinct.len() > limit {
                            if limit <= DISTINCT_HASHED_MAX {
                                return None; // more distinct values than could win
                            }
                            complete = false; // could still win: count them all by sorting
                            break 'vals;
                        }
                        break;
                    }
                    if s.slots[h] == v {
                        break;
                    }
                    h = (h + 1) % DISTINCT_SLOTS;
                }
                h
            };
            prev = (v, h);
            if let Some(a) = s.at.get_mut(j) {
                *a = h as u16;
            }
        }
    }
    if s.counted == Counted::Rows {
        // `distinct` is in order already.
    } else if !(complete && hashable) {
        s.counted = Counted::Sorted;
        s.distinct.clear();
        s.distinct.extend_from_slice(vals);
        s.distinct.sort_unstable();
        s.distinct.dedup();
    } else if matches!(s.counted, Counted::Direct { .. })
        && range < DIRECT_SCAN_PER_VALUE * s.distinct.len() as u64
    {
        // The stamps in order are the distinct values in order.
        s.distinct.clear();
        for (h, &st) in s.stamp[..=range as usize].iter().enumerate() {
            if st == gen {
                s.distinct.push(min + h as u64);
            }
        }
    } else if s.distinct.len() >= DISTINCT_RADIX_MIN && bits(range) <= DISTINCT_RADIX_BITS_MAX {
        // Many distinct values over a narrow range (the 10 M capture's
        // final seal: ~2 800 columns, a library sort of each ~16 500
        // instructions, the passes ~15 000): [`sort_rows`]' passes on the
        // values less `min` (distinct, so no row bits are needed).
        s.keys.clear();
        s.keys
            .extend(s.distinct.iter().map(|&v| (v - min) << ROW_BITS));
        sort_rows(&mut s.keys, &mut s.keys_tmp, bits(range));
        s.distinct.clear();
        s.distinct
            .extend(s.keys.iter().map(|&key| min + (key >> ROW_BITS)));
    } else {
        s.distinct.sort_unstable();
    }
    s.seen = s.distinct.len();
    let k = s.distinct.len() as u64;
    let mut size = varint_len(k) + 1 + packed(k);
    if let Some(gaps) = row_gaps {
        size += gaps;
    } else {
        let mut prev = 0u64;
        for &v in &s.distinct {
            size += varint_len_fast(v - prev);
            prev = v;
        }
    }
    (size < best).then_some(size)
}

/// Whether `vals` (each `v - min` at most `range`, below 2^[`MAP_BITS`])
/// hold more than `limit` distinct values: each value's bit is set in
/// `map` (all zero before and after), the new ones counted, until the
/// count passes `limit`. Exactly the count the hash table makes, without
/// a hash, a probe or a list of the values; the bits set are cleared by
/// the words of the range or by the values, whichever are fewer.
fn more_distinct_than(
    vals: &[u64],
    min: u64,
    range: u64,
    limit: usize,
    map: &mut [u64; MAP_WORDS],
) -> bool {
    debug_assert!(range >> MAP_BITS == 0);
    let mut k = 0usize;
    // Sets `v`'s bit; 1 if it was not set.
    let mut mark = |v: u64| {
        // The mask (no-op: `v - min <= range`) stands for the bounds check.
        let x = (v - min) as usize;
        let w = &mut map[(x >> 6) & (MAP_WORDS - 1)];
        let b = 1u64 << (x % 64);
        let new = usize::from(*w & b == 0);
        *w |= b;
        new
    };
    // The count compared once a chunk (it may pass `limit` by a few).
    let mut end = 0;
    let mut chunks = vals.chunks_exact(MAP_CHUNK);
    for c in &mut chunks {
        for &v in c {
            k += mark(v);
        }
        end += MAP_CHUNK;
        if k > limit {
            break;
        }
    }
    if k <= limit {
        for &v in chunks.remainder() {
            k += mark(v);
        }
        end = vals.len();
    }
    let words = (range >> 6) as usize + 1;
    if words <= end {
        map[..words].fill(0);
    } else {
        for &v in &vals[..end] {
            map[((v - min) as usize >> 6) & (MAP_WORDS - 1)] = 0;
        }
    }
    k > limit
}

/// Values [`more_distinct_than`] marks between two comparisons of its count.
const MAP_CHUNK: usize = 8;

/// Distinct values [`dict_size_below`] counted in the hash table (or
/// directly) from which it sorts them with [`sort_rows`]' passes, not
/// `sort_unstable` (below, the passes' 256 counters each cost more than
/// the comparisons).
const DISTINCT_RADIX_MIN: usize = 128;

/// Widest range (bits) whose distinct values [`dict_size_below`] sorts by
/// [`sort_rows`]' passes: three passes at most (a few hundred values'
/// library sort costs about what six passes do).
const DISTINCT_RADIX_BITS_MAX: u32 = 3 * ROW_SORT_DIGIT_BITS;
const _: () = assert!(DISTINCT_RADIX_BITS_MAX <= SORTED_ROW_BITS_MAX);

/// Bits of a digit of [`sort_rows`], and its most passes.
const ROW_SORT_DIGIT_BITS: u32 = 8;
const ROW_SORT_PASSES_MAX: u32 = SORTED_ROW_BITS_MAX.div_ceil(ROW_SORT_DIGIT_BITS);

/// Sorts (value, row) keys (`value << ROW_BITS | row`, values below
/// `2^w`, at most [`DISTINCT_HASHED_MAX`] keys) standing in row order, as
/// `sort_unstable` would: the keys are distinct (one row each), so there
/// is one sorted order. A least significant digit first radix sort on
/// the value's bits alone (each pass stable, and the rows already
/// ascending), [`ROW_SORT_DIGIT_BITS`] bits a pass, a pass skipped where
/// every key has the same digit; `tmp` is its second buffer.
fn sort_rows(keys: &mut Vec<u64>, tmp: &mut Vec<u64>, w: u32) {
    debug_assert!(keys.len() <= DISTINCT_HASHED_MAX && w <= SORTED_ROW_BITS_MAX);
    match w.div_ceil(ROW_SORT_DIGIT_BITS) {
        0 => {}
        1 => sort_rows_passes::<1>(keys, tmp),
        2 => sort_rows_passes::<2>(keys, tmp),
        3 => sort_rows_passes::<3>(keys, tmp),
        4 => sort_rows_passes::<4>(keys, tmp),
        5 => sort_rows_passes::<5>(keys, tmp),
        6 => sort_rows_passes::<6>(keys, tmp),
        _ => sort_rows_passes::<{ ROW_SORT_PASSES_MAX as usize }>(keys, tmp),
    }
}

/// [`sort_rows`] in `P` passes.
fn sort_rows_passes<const P: usize>(keys: &mut Vec<u64>, tmp: &mut Vec<u64>) {
    const DIGITS: usize = 1 << ROW_SORT_DIGIT_BITS;
    let n = keys.len();
    // u16: at most 512 keys (2 KiB of counters for four passes).
    let mut counts = [[0u16; DIGITS]; P];
    for &k in keys.iter() {
        let mut v = k >> ROW_BITS;
        for c in counts.iter_mut() {
            c[v as usize % DIGITS] += 1;
            v >>= ROW_SORT_DIGIT_BITS;
        }
    }
    if tmp.len() != n {
        tmp.resize(n, 0); // every slot written before it is read
    }
    for (p, c) in counts.iter_mut().enumerate() {
        let shift = ROW_BITS + p as u32 * ROW_SORT_DIGIT_BITS;
        if n == 0 || c[(keys[0] >> shift) as usize % DIGITS] as usize == n {
            continue; // one digit: the pass would not move a key
        }
        let mut at = 0u16;
        for x in c.iter_mut() {
            (*x, at) = (at, at + *x);
        }
        // Slices, so that their pointers and lengths stay in registers
        // (a store through the `Vec`'s buffer could be to its header).
        let (src, dst) = (&keys[..], &mut tmp[..n]);
        for &k in src {
            let d = (k >> shift) as usize % DIGITS;
            dst[c[d] as usize] = k;
            c[d] += 1;
        }
        std::mem::swap(keys, tmp);
    }
}

/// Blocks [`encode_blocks`] does not try [`gap_bound`] (or [`fine_gap_bound`]) on a column after
/// it failed to reject that column.
const BOUND_SKIP: u32 = 32;

/// Occupied buckets a [`gap_bound`] bitmap holds at most (in bits).
const GAP_BUCKET_BITS_MAX: u32 = 13;

/// A lower bound on the dictionary encoding's size of `vals` (least `min`,
/// range `w_for` bits, `GAP_BUCKET_BITS_MAX < w_for < 64`) without counting
/// its distinct values: each value's bucket `(v - min) >> t` (`t` a
/// multiple of 7 leaving at most 2^[`GAP_BUCKET_BITS_MAX`] buckets) is
/// marked in a bitmap. With `b` buckets occupied in `r` runs of
/// consecutive buckets: the column has `k >= b` distinct values; in
/// sorted order each of their `k - 1` gaps takes a byte or more, and the
/// `r - 1` gaps that cross an empty bucket are at least `2^t + 1`, so
/// `t / 7` bytes more each; the first value (`min`) takes
/// `varint_len(min)`. The size grows with `k` at a fixed gap excess, so `k
/// = b` gives the bound.
#[inline(always)]
fn gap_bound(vals: &[u64], min: u64, w_for: u32, s: &mut ColScratch) -> usize {
    let t = (w_for - GAP_BUCKET_BITS_MAX).div_ceil(7) * 7;
    let buckets = (((1u64 << w_for) - 1) >> t) as usize + 1;
    let words = buckets.div_ceil(64);
    s.buckets[..words].fill(0);
    // `b < buckets`: the mask (no-op) stands for the bounds check.
    const WORDS: usize = 1 << (GAP_BUCKET_BITS_MAX - 6);
    for &v in vals {
        let b = ((v - min) >> t) as usize;
        s.buckets[(b / 64) & (WORDS - 1)] |= 1 << (b % 64);
    }
    let map = &s.buckets[..words];
    let (mut b, mut runs, mut carry) = (0u64, 0u64, 0u64);
    for &w in map.iter() {
        b += u64::from(w.count_ones());
        // Run starts: occupied buckets whose predecessor is empty.
        runs += u64::from((w & !(w << 1 | carry)).count_ones());
        carry = w >> 63;
    }
    let n = vals.len() as u64;
    varint_len(b)
        + varint_len(min)
        + (b as usize - 1)
        + (runs as usize - 1) * (t / 7) as usize
        + 1
        + (n * u64::from(bits(b - 1))).div_ceil(8) as usize
}

crate::simd::v3! {
    /// [`bounds_reject_body`], for the baseline and for x86-64-v3.
    fn bounds_reject(
        vals: &[u64],
        min: u64,
        w_for: u32,
        best: usize,
        fine: bool,
        coarse: bool,
        s: &mut ColScratch,
    ) -> bool
    => bounds_reject_body;
}

/// Whether [`fine_gap_bound`] (where `fine`) or [`gap_bound`] (where
/// `coarse`) is at least `best`, the one that rejected the previous
/// block's column first; sets the scratch's `fine_rejected`,
/// `fine_failed` and `bound_failed`.
#[inline(always)]
fn bounds_reject_body(
    vals: &[u64],
    min: u64,
    w_for: u32,
    best: usize,
    fine: bool,
    coarse: bool,
    s: &mut ColScratch,
) -> bool {
    for try_fine in [s.fine_first, !s.fine_first] {
        let bound = if try_fine && fine {
            fine_gap_bound(vals, min, w_for, s)
        } else if !try_fine && coarse {
            gap_bound(vals, min, w_for, s)
        } else {
            continue;
        };
        if bound >= best {
            s.fine_rejected = try_fine;
            return true;
        }
        if try_fine {
            s.fine_failed = true;
        } else {
            s.bound_failed = true;
        }
    }
    false
}

/// Bits of a bucket of [`fine_gap_bound`]: the gaps a varint holds in one
/// byte.
const FINE_BUCKET_BITS: u32 = 7;

/// A lower bound on the dictionary encoding's size of `vals` (least `min`,
/// at most [`DISTINCT_HASHED_MAX`] values) as [`gap_bound`]'s, with buckets
/// of 2^[`FINE_BUCKET_BITS`] whatever the range: the occupied buckets `(v -
/// min) >> 7` are counted in the hash table (`b` of them, so `k >= b`
/// distinct values) and a bucket whose predecessor is empty starts a run
/// (`r` runs). Each of the `k - 1` gaps in sorted order takes a byte or
/// more, and the `r - 1` that cross an empty bucket are above 2^7, so a
/// byte more each. Where a column is nearly all distinct with gaps around
/// 2^7..2^21 (the replay's first-time deltas) this rejects what the
/// coarse bitmap, sized by the range, cannot, for a hash probe or two a
/// value instead of [`sort_rows`]' passes.
///
/// `w_for`: the bits of the range. Where the buckets are below
/// 2^[`MAP_BITS`] they are marked in [`ColScratch::fine_map`] and counted
/// there ([`fine_gap_bound_mapped`]), else in the hash table
/// ([`fine_gap_bound_hashed`]): the same `b` and `r`, so the same bound.
#[inline(always)]
fn fine_gap_bound(vals: &[u64], min: u64, w_for: u32, s: &mut ColScratch) -> usize {
    if w_for <= FINE_BUCKET_BITS + MAP_BITS {
        fine_gap_bound_mapped(vals, min, w_for, &mut s.fine_map)
    } else {
        fine_gap_bound_hashed(vals, min, s)
    }
}

/// [`fine_gap_bound`] where the buckets (`w_for` bits of range less
/// [`FINE_BUCKET_BITS`]) are below 2^[`MAP_BITS`]: each value's bucket
/// marked in `map` (a byte a bucket, bucket `u`'s at `u + 1`; all zero
/// before and after, cleared by the values), in one pass: a bucket marked
/// for the first time is a new one, and makes a pair with each neighbour
/// marked before it; every pair of adjacent occupied buckets is so counted
/// once (when its second bucket is marked), and the runs are the buckets
/// less the pairs. Three bytes read and one written a value, where the
/// hash table took two probes a value, and a bitmap's three bits each a
/// shift by a count (~34 instructions a value in bigstore's seals, ~16
/// with the bytes; no scan of a bitmap either: `count_ones` is not an
/// instruction in the baseline x86-64 target).
fn fine_gap_bound_mapped(
    vals: &[u64],
    min: u64,
    w_for: u32,
    map: &mut [u8; FINE_MAP_BYTES],
) -> usize {
    debug_assert!(!vals.is_empty() && w_for <= FINE_BUCKET_BITS + MAP_BITS);
    // Bucket `u`'s byte. The mask (no-op: buckets are below 2^16) stands
    // for the bounds checks: `at - 1` and `at + 1` are then in the map too
    // (the first and the last byte: never set).
    let at = |v: u64| (((v - min) >> FINE_BUCKET_BITS) as usize & ((1 << MAP_BITS) - 1)) + 1;
    let (mut b, mut pairs) = (0u64, 0u64);
    for &v in vals {
        let i = at(v);
        let new = u64::from(map[i] ^ 1);
        pairs += new * u64::from(map[i - 1] + map[i + 1]);
        b += new;
        map[i] = 1;
    }
    for &v in vals {
        map[at(v)] = 0;
    }
    let runs = b - pairs;
    let n = vals.len() as u64;
    varint_len(b)
        + varint_len(min)
        + (b as usize - 1)
        + (runs as usize - 1)
        + 1
        + (n * u64::from(bits(b - 1))).div_ceil(8) as usize
}

/// Bytes of [`ColScratch::fine_map`]: one for each of the 2^[`MAP_BITS`]
/// buckets of [`fine_gap_bound_mapped`], one before and one after (the
/// neighbours of the lowest and the highest bucket, never set).
const FINE_MAP_BYTES: usize = (1 << MAP_BITS) + 2;

/// [`fine_gap_bound`] with the buckets counted in the hash table. Leaves
/// `s.distinct` holding the buckets (the caller clears it before
/// counting).
fn fine_gap_bound_hashed(vals: &[u64], min: u64, s: &mut ColScratch) -> usize {
    debug_assert!(!vals.is_empty() && vals.len() <= DISTINCT_HASHED_MAX);
    let gen = s.next_gen();
    s.distinct.clear();
    // No bucket is `u64::MAX` (they are below 2^57).
    let mut prev = u64::MAX;
    for &v in vals {
        let u = (v - min) >> FINE_BUCKET_BITS;
        if u == prev {
            continue;
        }
        prev = u;
        let mut h = distinct_slot(u);
        loop {
            if s.stamp[h] != gen {
                s.stamp[h] = gen;
                s.slots[h] = u;
                s.distinct.push(u);
                break;
            }
            if s.slots[h] == u {
                break;
            }
            h = (h + 1) % DISTINCT_SLOTS;
        }
    }
    let mut runs = 0usize;
    for &u in &s.distinct {
        // `u` starts a run unless bucket `u - 1` is occupied.
        let mut start = true;
        if u > 0 {
            let mut h = distinct_slot(u - 1);
            while s.stamp[h] == gen {
                if s.slots[h] == u - 1 {
                    start = false;
                    break;
                }
                h = (h + 1) % DISTINCT_SLOTS;
            }
        }
        runs += usize::from(start);
    }
    let b = s.distinct.len() as u64;
    let n = vals.len() as u64;
    varint_len(b)
        + varint_len(min)
        + (b as usize - 1)
        + (runs - 1)
        + 1
        + (n * u64::from(bits(b - 1))).div_ceil(8) as usize
}

/// A directly counted column's distinct values are listed by a scan of its
/// stamps (rather than sorted) when its range is below this many slots per
/// distinct value (a guess at a sort's cost per value; same list either way).
const DIRECT_SCAN_PER_VALUE: u64 = 16;

crate::simd::v3! {
    /// [`put_col_body`], for the baseline and for x86-64-v3.
    fn put_col(
        out: &mut BlockBuf,
        vals: &[u64],
        s: &mut ColScratch,
    )
    => put_col_body;
}

/// Appends `vals` in whichever of the three encodings is smallest
/// (ties: the lower code).
///
/// The varint size is only compared with frame of reference's, so where
/// frame of reference is no larger than `n * varint_len(min)` (every value
/// is at least `min`, so the varints take at least that) it is not needed:
/// with `s.for_first` set the least and largest values are found first
/// and the varint sizes summed in a second pass only when that does not
/// hold; otherwise with them ([`crate::simd::min_max_sum`]).
#[inline(always)]
fn put_col_body(out: &mut BlockBuf, vals: &[u64], s: &mut ColScratch) {
    let n = vals.len() as u64;
    let (min, max, mut size_var) = if s.for_first {
        let (min, max) = crate::simd::min_max(vals);
        (min, max, 0)
    } else {
        crate::simd::min_max_sum(vals, varint_len_fast)
    };
    let min = if vals.is_empty() { 0 } else { min };
    let w_for = bits(max - min);
    let size_for = varint_len(min) + 1 + (n * u64::from(w_for)).div_ceil(8) as usize;
    let var_least = vals.len() * varint_len(min);
    s.for_proven = size_for <= var_least;
    if s.for_first {
        size_var = if s.for_proven {
            // At most the varints' size, and no smaller than frame of
            // reference's: every comparison below is decided as with it.
            var_least
        } else {
            vals.iter().map(|&v| varint_len_fast(v)).sum()
        };
    }
    match dict_size_below(vals, min, max, size_for.min(size_var), s) {
        None if size_for <= size_var => {
            out.byte(COL_FOR);
            out.varint(min);
            out.byte(w_for as u8);
            out.packed_by(vals, |v| v - min, w_for);
        }
        None => {
            out.byte(COL_VARINT);
            for &v in vals {
                out.varint(v);
            }
        }
        Some(_) => {
            let distinct = &s.distinct;
            let k = distinct.len() as u64;
            out.byte(COL_DICT);
            out.varint(k);
            let mut prev = 0;
            for &v in distinct {
                out.varint(v - prev);
                prev = v;
            }
            let w_dict = bits(k - 1);
            out.byte(w_dict as u8);
            match s.counted {
                Counted::Hashed => {
                    // Each distinct value's id into its slot (the probe
                    // from its hash meets only slots used by other values
                    // before its own), then each value's id through the
                    // slot it was counted in.
                    for (i, &v) in distinct.iter().enumerate() {
                        let mut h = distinct_slot(v);
                        while s.slots[h] != v {
                            h = (h + 1) % DISTINCT_SLOTS;
                        }
                        s.ids[h] = i as u16;
                    }
                }
                Counted::Direct { min } => {
                    for (i, &v) in distinct.iter().enumerate() {
                        s.ids[(v - min) as usize & (DISTINCT_SLOTS - 1)] = i as u16;
                    }
                }
                Counted::Sorted | Counted::Rows => {}
            }
            if s.counted == Counted::Rows {
                out.packed_by(&s.at[..vals.len()], u64::from, w_dict);
            } else if s.counted == Counted::Sorted {
                out.packed(
                    vals.iter()
                        .map(|v| distinct.binary_search(v).expect("in distinct") as u64),
                    w_dict,
                );
            } else {
                let (ids, at) = (&s.ids, &s.at[..vals.len()]);
                out.packed_by(at, |h| u64::from(ids[usize::from(h)]), w_dict);
            }
        }
    }
}

/// One column of `n` values (tests).
#[cfg(test)]
fn get_col(c: &mut Cursor, n: usize, field: &'static str) -> Res<Vec<u64>> {
    let (mut out, mut dict) = (Vec::new(), Vec::new());
    get_col_into(c, n, field, &mut out, &mut dict)?;
    Ok(out)
}

/// One column of `n` values into `out` (cleared first); `dict` is scratch
/// for a dictionary column's values. Buffers are reused from block to block.
fn get_col_into(
    c: &mut Cursor,
    n: usize,
    field: &'static str,
    out: &mut Vec<u64>,
    dict: &mut Vec<u64>,
) -> Res<()> {
    match c.byte(field)? {
        COL_FOR => {
            let min = c.varint(field)?;
            let w = u32::from(c.byte(field)?);
            c.packed_into(n, w, field, out)?;
            if min != 0 {
                for v in out.iter_mut() {
                    *v = v
                        .checked_add(min)
                        .ok_or_else(|| c.fault(field, "value overflows 64 bits"))?;
                }
            }
            Ok(())
        }
        COL_VARINT => {
            out.clear();
            for _ in 0..n {
                out.push(c.varint(field)?);
            }
            Ok(())
        }
        COL_DICT => {
            let k = c.varint(field)?;
            if k == 0 && n > 0 || k > n as u64 {
                return Err(c.fault(field, format!("{k} distinct values for {n} records")));
            }
            dict.clear();
            let mut prev = 0u64;
            for i in 0..k {
                let g = c.varint(field)?;
                if i > 0 && g == 0 {
                    return Err(c.fault(field, "dictionary values not strictly increasing"));
                }
                prev = prev
                    .checked_add(g)
                    .ok_or_else(|| c.fault(field, "value overflows 64 bits"))?;
                dict.push(prev);
            }
            let w = u32::from(c.byte(field)?);
            c.packed_into(n, w, field, out)?;
            for id in out.iter_mut() {
                *id = dict
                    .get(*id as usize)
                    .copied()
                    .ok_or_else(|| c.fault(field, format!("id {id} of {k} values")))?;
            }
            Ok(())
        }
        other => Err(c.fault(field, format!("unknown column encoding {other}"))),
    }
}

// ---------------------------------------------------------- dictionary

/// Applies `$f` to the constant `10^e` (`e` in 0..=9): a division by a
/// constant is a multiply, where one by a variable power of ten is a `div`
/// (tens of cycles) per value.
macro_rules! with_pow10 {
    ($e:expr, $f:expr) => {
        match $e {
            0 => $f(1),
            1 => $f(10),
            2 => $f(100),
            3 => $f(1_000),
            4 => $f(10_000),
            5 => $f(100_000),
            6 => $f(1_000_000),
            7 => $f(10_000_000),
            8 => $f(100_000_000),
            9 => $f(1_000_000_000),
            e => unreachable!("unit exponent {e}"),
        }
    };
}

/// `v` is a multiple of `10^e`.
#[inline(always)]
fn divisible_pow10(v: u64, e: u8) -> bool {
    with_pow10!(e, |p: u64| v.is_multiple_of(p))
}

/// `v / 10^e`.
#[inline(always)]
fn div_pow10(v: u64, e: u8) -> u64 {
    with_pow10!(e, |p: u64| v / p)
}

/// `v.div_euclid(10^e)`.
#[inline(always)]
fn div_euclid_pow10(v: i64, e: u8) -> i64 {
    with_pow10!(e, |p: i64| v.div_euclid(p))
}

/// Largest power of ten up to 10^9 dividing every value (one pass: the
/// exponent only ever drops). The values are scanned with the current
/// exponent's divisor a constant (one test of a value, not the nine the
/// compiler hoists out of [`divisible_pow10`]'s match when that is inside
/// the loop): only a value that is not a multiple lowers it. The same
/// exponent as [`unit_exp_reference`] (property-tested).
fn unit_exp(mut vals: impl Iterator<Item = u64>) -> u8 {
    let mut e = 9u8;
    while e > 0 {
        let Some(v) = with_pow10!(e, |p: u64| vals.find(|v| !v.is_multiple_of(p))) else {
            break;
        };
        while e > 0 && !divisible_pow10(v, e) {
            e -= 1;
        }
    }
    e
}

/// [`unit_exp`] one value at a time: the reference it is tested against.
#[cfg(test)]
fn unit_exp_reference(vals: impl Iterator<Item = u64>) -> u8 {
    let mut e = 9u8;
    for v in vals {
        while e > 0 && !divisible_pow10(v, e) {
            e -= 1;
        }
        if e == 0 {
            break;
        }
    }
    e
}

fn unit_exp_i64(vals: impl Iterator<Item = i64>) -> u8 {
    unit_exp(vals.map(i64::unsigned_abs))
}

/// Bytes of each column over a whole file, for reports (`natrec-bigstore`
/// and the round-5 notes): what the format spends where.
#[derive(Clone, Copy, Debug, Default)]
pub struct ColumnBytes {
    /// Header + footer.
    pub header_footer: u64,
    /// Dictionary entries and chunk CRCs.
    pub dictionary: u64,
    /// Block index.
    pub index: u64,
    /// Per block: count, units, CRC.
    pub block_overhead: u64,
    /// Each column, in block order (see [`COLUMN_NAMES`]).
    pub columns: [u64; 11],
}

/// Partitions of at least this many records encode their blocks on two
/// threads (about 0.1 s of work per million records).
const ENCODE_SPLIT_RECORDS_MIN: usize = 1 << 17;

/// Names of the block columns, in order.
pub const COLUMN_NAMES: [&str; 11] = [
    "public_ip",
    "public_port",
    "first_ns",
    "duration",
    "internal_ip",
    "internal_port",
    "remote_ip",
    "remote_port",
    "codes",
    "packets_out",
    "packets_in",
];

/// The partition's address dictionary: every distinct address, IPv4 (4
/// bytes) then IPv6 (16), each sorted, and each record's three address ids
/// (public, internal, remote).
///
/// One hash pass (FxHash: the keys are our own records, not an attacker's
/// choice, and a v4 key is one `u32`) gives each address a provisional id
/// in order of appearance; sorting the distinct addresses then gives the
/// final ids, and the records' provisional ids are renumbered through a
/// table as their blocks are encoded (on the blocks' threads). No second
/// hash lookup per address.
struct Dictionary {
    v4: Vec<u32>,
    v6: Vec<u128>,
    /// Per part (one, or the two halves): its records' provisional
    /// (public, internal, remote) ids, and their final ids through `remap`
    /// (renumbered as the blocks are encoded, on their threads).
    ids: Vec<Vec<Ids>>,
    remap: Vec<Remap>,
}

/// A record's (public, internal, remote) dictionary ids, and a fourth
/// slot of [`Dictionary::of`]'s own (the mark of a run's first record;
/// not an id, not encoded): four, so that an occurrence's place
/// (`record << 2 | field`) indexes the ids as one flat slice.
type Ids = [u32; 4];

/// One part's provisional address ids -> final ids (or, `final_ids`, the
/// ids are final already: [`Dictionary::of`]).
struct Remap {
    v4: Vec<u32>,
    v6: Vec<u32>,
    final_ids: bool,
}

impl Remap {
    /// The ids are the final ones.
    const FINAL: Remap = Remap {
        v4: Vec::new(),
        v6: Vec::new(),
        final_ids: true,
    };

    #[inline(always)]
    fn id(&self, prov: u32) -> u32 {
        if self.final_ids {
            prov
        } else if prov & PROV_V6 != 0 {
            self.v6[(prov & !PROV_V6) as usize]
        } else {
            self.v4[prov as usize]
        }
    }
}

/// Records per distinct IPv4 address the dictionary's hash table is first
/// sized for.
const DICT_V4_RESERVE_DIVISOR: usize = 4;

/// IPv4 keys (distinct addresses of the halves, or address occurrences on
/// one thread) from which the dictionary radix-sorts them.
const DICT_RADIX_MIN: usize = 512;

/// Provisional ids of IPv6 addresses carry this bit (a partition holds at
/// most 3 × `PARTITION_RECORDS_MAX` = 3 × 2^25 addresses, far below it).
const PROV_V6: u32 = 1 << 31;

/// One part's provisional dictionary: each distinct address with its id
/// in order of appearance in the part, and the part's records' ids.
struct Provisional {
    v4: rustc_hash::FxHashMap<u32, u32>,
    v6: rustc_hash::FxHashMap<u128, u32>,
    ids: Vec<Ids>,
}

impl Provisional {
    fn of(records: Pieces<'_>) -> Provisional {
        use std::collections::hash_map::Entry;
        let mut v4: rustc_hash::FxHashMap<u32, u32> = rustc_hash::FxHashMap::default();
        let mut v6: rustc_hash::FxHashMap<u128, u32> = rustc_hash::FxHashMap::default();
        // Room for a quarter as many distinct addresses as records (a
        // mapping's two or three states share theirs, and a subscriber's
        // and a remote's recur): sized by the records, the table was ~4x
        // too large for the cache on the 10 M bench (9 ms of the final
        // seal's 25 ms dictionary). It grows if needed; the ids are the
        // same either way (order of appearance).
        v4.reserve(records.len() / DICT_V4_RESERVE_DIVISOR);
        let mut ids: Vec<Ids> = Vec::with_capacity(records.len());
        let mut prov = |bytes: &[u8; 16], is_v4: bool| -> u32 {
            if is_v4 {
                let a = u32::from_be_bytes(bytes[12..].try_into().expect("4 bytes"));
                let next = v4.len() as u32;
                *v4.entry(a).or_insert(next)
            } else {
                let a = u128::from_be_bytes(*bytes);
                let next = v6.len() as u32 | PROV_V6;
                match v6.entry(a) {
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(e) => *e.insert(next),
                }
            }
        };
        let mut prev_public: Option<([u8; 16], bool, u32)> = None;
        for r in records.a.iter().chain(records.b) {
            let sf = r.store_flags;
            // Records are sorted by public address: runs of one address.
            let p4 = sf & SF_PUBLIC_V4 != 0;
            let p = match prev_public {
                Some((b, f, id)) if b == r.public_ip && f == p4 => id,
                _ => prov(&r.public_ip, p4),
            };
            prev_public = Some((r.public_ip, p4, p));
            let i = prov(&r.internal_ip, sf & SF_INTERNAL_V4 != 0);
            let x = prov(&r.remote_ip, sf & SF_REMOTE_V4 != 0);
            ids.push([p, i, x, 0]);
        }
        assert!(v4.len() < PROV_V6 as usize && v6.len() < PROV_V6 as usize);
        Provisional { v4, v6, ids }
    }
}

impl Dictionary {
    /// The dictionary of `records`, on one thread: every address
    /// occurrence (a run of one public address once) sorted with its place,
    /// so each record gets its final ids (the addresses' ranks) in one walk
    /// over the sorted occurrences, with no hash table and no remap (the
    /// same as [`Self::of_hashed`], property-tested).
    ///
    /// `tmp`: the sort's second buffer (any contents; kept by the caller
    /// when it holds at most [`DICT_SCRATCH_KEEP_KEYS`] keys).
    #[inline(always)]
    fn of(records: Pieces<'_>, tmp: &mut Vec<u64>) -> Dictionary {
        let n = records.len();
        // An occurrence's place: record << 2 | field (0 public, 1 internal,
        // 2 remote), below 2^32 for any partition.
        assert!(
            n <= 1 << 30,
            "a partition holds at most PARTITION_RECORDS_MAX records"
        );
        // IPv4: address << 32 | place, one vector per field (public runs,
        // internal, remote), each sorted as whole keys (distinct). A
        // field's addresses often lie in a range of their own (a pool of
        // subscribers, one of NAT addresses, the remotes): sorted apart, each
        // takes only the passes its own range needs (round 14).
        // One pass over the records a field (few values live in each, so
        // they stay in registers; the records are read three times).
        let mut occ6: Vec<(u128, u32)> = Vec::new();
        let mut o0 = AddrKeys::with_capacity(n);
        let mut prev_public: Option<(&[u8; 16], bool)> = None;
        // The ids made by this first pass (written once, not zeroed first):
        // every slot but the run mark is set below.
        let mut ids: Vec<Ids> = Vec::with_capacity(n);
        let mut place = 0u32;
        for piece in [records.a, records.b] {
            for r in piece {
                // Records are sorted by public address: a run of one
                // address is looked up once (its first record marked in
                // the fourth slot of `ids`) and its id copied to the rest
                // below.
                let p4 = r.store_flags & SF_PUBLIC_V4 != 0;
                let mut mark = 0;
                if prev_public != Some((&r.public_ip, p4)) {
                    if p4 {
                        o0.push(occurrence4(&r.public_ip, place));
                    } else {
                        occ6.push((u128::from_be_bytes(r.public_ip), place));
                    }
                    prev_public = Some((&r.public_ip, p4));
                    mark = 1;
                }
                ids.push([0, 0, 0, mark]);
                place += 4;
            }
        }
        let o1 = field_occurrences(records, 1, SF_INTERNAL_V4, |r| &r.internal_ip, &mut occ6);
        let o2 = field_occurrences(records, 2, SF_REMOTE_V4, |r| &r.remote_ip, &mut occ6);
        let occ4: [Vec<u64>; 3] = [o0, o1, o2].map(|occ| {
            if occ.len() >= DICT_RADIX_MIN {
                // An occurrence's place is its order of appearance: the low
                // 32 bits ascend in each field's keys already, so the
                // addresses alone are sorted (least significant digit
                // first, each pass stable, the digits counted as the keys
                // were added).
                occ.into_sorted(tmp)
            } else {
                let mut occ = occ.into_keys();
                occ.sort_unstable();
                occ
            }
        });
        if tmp.capacity() > DICT_SCRATCH_KEEP_KEYS {
            *tmp = Vec::new();
        }
        occ6.sort_unstable();
        // The fields in order of their least address: where each one's
        // addresses all lie below the next one's, their concatenation is
        // in address order; otherwise they are merged by address (the
        // order of one address's occurrences does not matter to the ids).
        let mut fields: Vec<Vec<u64>> = occ4.into_iter().filter(|f| !f.is_empty()).collect();
        fields.sort_unstable_by_key(|f| f[0] >> 32);
        let disjoint = fields
            .windows(2)
            .all(|w| w[0][w[0].len() - 1] >> 32 < w[1][0] >> 32);
        if !disjoint {
            let mut merged = Vec::new();
            for f in fields {
                merged = merge_by_address(&merged, &f);
            }
            fields = vec![merged];
        }
        // An occurrence's place is its field's index in `ids` as one flat
        // slice (a record's four slots; the fourth is the run mark).
        let flat = ids.as_flattened_mut();
        let mut v4: Vec<u32> = Vec::with_capacity(fields.iter().map(Vec::len).sum());
        for f in &fields {
            walk_occurrences(f, &mut v4, flat);
        }
        let n4 = v4.len() as u32;
        let mut v6: Vec<u128> = Vec::new();
        for &(a, place) in &occ6 {
            if v6.last() != Some(&a) {
                v6.push(a);
            }
            flat[place as usize] = n4 + v6.len() as u32 - 1;
        }
        // The rest of each run of one public address (the first record
        // of the partition starts one: `p` is always set before it is
        // copied).
        let mut p = 0u32;
        for id in ids.iter_mut() {
            if id[3] != 0 {
                p = id[0];
            } else {
                id[0] = p;
            }
        }
        Dictionary {
            v4,
            v6,
            ids: vec![ids],
            remap: vec![Remap::FINAL],
        }
    }

    /// [`Self::of`] through the provisional ids of one hash pass, as
    /// [`Self::of_halves`] builds each half's (tests).
    #[cfg(test)]
    fn of_hashed(records: Pieces<'_>) -> Dictionary {
        Dictionary::merge(vec![Provisional::of(records)])
    }

    /// The dictionary of `records`, the provisional ids of `records[..split]`
    /// and `records[split..]` found on two threads. The same as [`Self::of`]:
    /// the final ids are the ranks of the distinct addresses.
    fn of_halves(records: Pieces<'_>, split: usize) -> Dictionary {
        let (first, second) = records.split_at(split);
        let parts = std::thread::scope(|scope| {
            let other = scope.spawn(|| Provisional::of(second));
            let one = Provisional::of(first);
            vec![one, other.join().expect("the dictionary does not panic")]
        });
        Dictionary::merge(parts)
    }

    /// Final ids from the parts' provisional ones: every part's distinct
    /// addresses sorted together (IPv4 then IPv6), equal addresses of two
    /// parts getting one id, and a table per part from its provisional ids
    /// to the final ones.
    fn merge(parts: Vec<Provisional>) -> Dictionary {
        assert!(parts.len() <= 2, "one part or two");
        // (address, part, provisional id) as one u64 (the id is below
        // 2^31), ordered by the address: radix-sorted (whole keys) from a
        // few hundred on.
        let mut s4: Vec<u64> = Vec::with_capacity(parts.iter().map(|p| p.v4.len()).sum());
        let mut s6: Vec<(u128, u32, u32)> = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            s4.extend(
                p.v4.iter()
                    .map(|(&a, &i)| u64::from(a) << 32 | (k as u64) << 31 | u64::from(i)),
            );
            s6.extend(p.v6.iter().map(|(&a, &i)| (a, k as u32, i & !PROV_V6)));
        }
        // The keys are distinct (an address once per part), so sorting the
        // whole key orders by address and then part: what a stable sort by
        // the address alone gave.
        if s4.len() >= DICT_RADIX_MIN {
            // An address is in `s4` at most once per part, the first part's
            // before the second's: keys of one address stand in order, so
            // the addresses alone are sorted (stable passes).
            crate::radix::sort_lsd_above(&mut s4, &mut Vec::new(), 32);
        } else {
            s4.sort_unstable();
        }
        s6.sort_unstable();
        let mut remap4: Vec<Vec<u32>> = parts.iter().map(|p| vec![0u32; p.v4.len()]).collect();
        let mut remap6: Vec<Vec<u32>> = parts.iter().map(|p| vec![0u32; p.v6.len()]).collect();
        let mut v4: Vec<u32> = Vec::with_capacity(s4.len());
        for &e in &s4 {
            let a = (e >> 32) as u32;
            if v4.last() != Some(&a) {
                v4.push(a);
            }
            remap4[(e >> 31) as usize & 1][(e as u32 & !PROV_V6) as usize] = v4.len() as u32 - 1;
        }
        let n4 = v4.len() as u32;
        let mut v6: Vec<u128> = Vec::with_capacity(s6.len());
        for &(a, k, i) in &s6 {
            if v6.last() != Some(&a) {
                v6.push(a);
            }
            remap6[k as usize][i as usize] = n4 + v6.len() as u32 - 1;
        }
        let remap = remap4
            .into_iter()
            .zip(remap6)
            .map(|(v4, v6)| Remap {
                v4,
                v6,
                final_ids: false,
            })
            .collect();
        let ids = parts.into_iter().map(|p| p.ids).collect();
        Dictionary { v4, v6, ids, remap }
    }
}

/// An IPv4 occurrence's key for [`Dictionary::of`]: the address (the last
/// four of its 16 bytes) above its place.
#[inline(always)]
fn occurrence4(bytes: &[u8; 16], place: u32) -> u64 {
    let a = u32::from_be_bytes(bytes[12..].try_into().expect("4 bytes"));
    u64::from(a) << 32 | u64::from(place)
}

/// The IPv4 occurrences of a record's `field` (1 internal, 2 remote: its
/// address `addr`, IPv4 where its store flags hold `flag`) in record order,
/// their digits counted for the sort ([`Dictionary::of`]); its IPv6 ones
/// are appended to `occ6`.
#[inline(always)]
fn field_occurrences(
    records: Pieces<'_>,
    field: u32,
    flag: u8,
    addr: impl Fn(&Record) -> &[u8; 16],
    occ6: &mut Vec<(u128, u32)>,
) -> AddrKeys {
    let mut out = AddrKeys::with_capacity(records.len());
    let mut place = field;
    for piece in [records.a, records.b] {
        if piece.iter().all(|r| r.store_flags & flag != 0) {
            // All IPv4 (the common case): one exact-size extend, no
            // capacity test a key.
            let first = place;
            out.extend(
                piece
                    .iter()
                    .enumerate()
                    .map(|(j, r)| occurrence4(addr(r), first + 4 * j as u32)),
            );
            place += 4 * piece.len() as u32;
            continue;
        }
        for r in piece {
            if r.store_flags & flag != 0 {
                out.push(occurrence4(addr(r), place));
            } else {
                occ6.push((u128::from_be_bytes(*addr(r)), place));
            }
            place += 4;
        }
    }
    out
}

/// Gives each IPv4 occurrence of `f` (`address << 32 | place`, in address
/// order, every address above those already in `v4`) its address's id in
/// `flat` at its place, the address appended to `v4` when it is new
/// ([`Dictionary::of`]'s walk; a function of its own, so that its few
/// values stay in registers).
#[inline(never)]
fn walk_occurrences(f: &[u64], v4: &mut Vec<u32>, flat: &mut [u32]) {
    // The last address appended and its id (none yet: `u64::MAX` is no
    // address).
    let (mut last, mut id) = (u64::MAX, 0u32);
    for &e in f {
        let a = e >> 32;
        if a != last {
            last = a;
            id = v4.len() as u32;
            v4.push(a as u32);
        }
        flat[e as u32 as usize] = id;
    }
}

/// The keys (`address << 32 | place`) of `a` and `b`, each in address
/// order, merged in address order ([`Dictionary::of`] where its fields'
/// address ranges overlap).
fn merge_by_address(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j] >> 32 < a[i] >> 32 {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Sorted records as two consecutive pieces, `a` then `b` (a split seal's
/// two halves, encoded as one sequence without being copied into one
/// buffer; `b` empty for one slice).
#[derive(Clone, Copy)]
pub(crate) struct Pieces<'a> {
    a: &'a [Record],
    b: &'a [Record],
}

impl<'a> Pieces<'a> {
    /// `a` then `b`.
    pub fn two(a: &'a [Record], b: &'a [Record]) -> Pieces<'a> {
        Pieces { a, b }
    }

    /// One slice.
    pub fn one(a: &'a [Record]) -> Pieces<'a> {
        Pieces { a, b: &[] }
    }

    fn len(&self) -> usize {
        self.a.len() + self.b.len()
    }

    fn get(&self, i: usize) -> &'a Record {
        match self.a.get(i) {
            Some(r) => r,
            None => &self.b[i - self.a.len()],
        }
    }

    /// The first `i` records and the rest.
    fn split_at(self, i: usize) -> (Pieces<'a>, Pieces<'a>) {
        if i <= self.a.len() {
            let (x, y) = self.a.split_at(i);
            (Pieces::one(x), Pieces::two(y, self.b))
        } else {
            let (x, y) = self.b.split_at(i - self.a.len());
            (Pieces::two(self.a, x), Pieces::one(y))
        }
    }

    /// The records in blocks of [`BLOCK_RECORDS`] (the last may be
    /// shorter): the block that straddles `a` and `b` is copied into
    /// `junction`, every other one is a slice of its piece.
    fn blocks<'j>(&self, junction: &'j mut Vec<Record>) -> impl Iterator<Item = &'j [Record]>
    where
        'a: 'j,
    {
        let full = self.a.len() / BLOCK_RECORDS * BLOCK_RECORDS;
        let (a_full, a_tail) = self.a.split_at(full);
        let take = if a_tail.is_empty() {
            0
        } else {
            (BLOCK_RECORDS - a_tail.len()).min(self.b.len())
        };
        let (b_head, b_rest) = self.b.split_at(take);
        junction.clear();
        junction.extend_from_slice(a_tail);
        junction.extend_from_slice(b_head);
        let junction: &'j [Record] = junction;
        a_full
            .chunks(BLOCK_RECORDS)
            .chain((!junction.is_empty()).then_some(junction))
            .chain(b_rest.chunks(BLOCK_RECORDS))
    }

    /// Asserts the records strictly sorted (each piece, and where they meet).
    fn assert_sorted(&self) {
        assert_sorted(self.a);
        assert_sorted(self.b);
        if let (Some(x), Some(y)) = (self.a.last(), self.b.first()) {
            assert_sorted(&[*x, *y]);
        }
    }
}

/// The block encoder's scratch: the columns of a block, its buffer and the
/// distinct-value tables (~120 KB). A seal thread gets it from the writer,
/// which keeps it between seals, so a partition's encoding does not
/// allocate and zero it again. Nothing in it outlives a block's use (the
/// columns and the buffer are written before they are read; the tables are
/// stamped per column), so the bytes do not depend on what it held.
pub(crate) struct EncodeScratch {
    cols: Box<[[u64; BLOCK_RECORDS]; 11]>,
    buf: BlockBuf,
    col: Box<ColScratch>,
    /// The second buffer of the one-thread dictionary's occurrence sort
    /// (every slot written before it is read), kept up to
    /// [`DICT_SCRATCH_KEEP_KEYS`] keys so a small partition's seal does not
    /// allocate and zero it again.
    dict_tmp: Vec<u64>,
}

/// Keys of the dictionary's sort scratch an [`EncodeScratch`] keeps between
/// seals (2 MiB; a larger one is freed after its seal).
const DICT_SCRATCH_KEEP_KEYS: usize = 1 << 18;

impl Default for EncodeScratch {
    fn default() -> EncodeScratch {
        EncodeScratch {
            cols: Box::new([[0; BLOCK_RECORDS]; 11]),
            buf: BlockBuf::new(),
            col: Box::default(),
            dict_tmp: Vec::new(),
        }
    }
}

/// Encodes a whole v2 sealed file. `records` must be strictly sorted by
/// [`Record::sort_key`] (asserted, by each half's block encoder when the
/// blocks are split) and valid (they come from the writer's log).
///
/// The file is returned in parts, to be written one after the other
/// (header, dictionary and the first blocks; the second thread's blocks,
/// empty when not split; block index and footer): the second thread's
/// blocks are not copied after the first's.
pub(crate) fn encode_file(
    start_ns: i64,
    span_ns: i64,
    segment: u32,
    records: Pieces<'_>,
    acct: &mut ColumnBytes,
    scratch: &mut EncodeScratch,
) -> [Vec<u8>; 3] {
    encode_file_split(
        start_ns,
        span_ns,
        segment,
        records,
        acct,
        ENCODE_SPLIT_RECORDS_MIN,
        scratch,
    )
}

crate::simd::v3! {
    /// [`encode_file_split_body`], for the baseline and for x86-64-v3.
    fn encode_file_split(
        start_ns: i64,
        span_ns: i64,
        segment: u32,
        records: Pieces<'_>,
        acct: &mut ColumnBytes,
        split_min: usize,
        scratch: &mut EncodeScratch,
    ) -> [Vec<u8>; 3]
    => encode_file_split_body;
}

/// [`encode_file`], encoding the blocks on two threads from `split_min`
/// records on.
#[inline(always)]
fn encode_file_split_body(
    start_ns: i64,
    span_ns: i64,
    segment: u32,
    records: Pieces<'_>,
    acct: &mut ColumnBytes,
    split_min: usize,
    scratch: &mut EncodeScratch,
) -> [Vec<u8>; 3] {
    // Where the blocks are split between two threads, if they are; the
    // dictionary's hash pass is split there too.
    let split = (records.len() >= split_min && records.len() > BLOCK_RECORDS)
        .then(|| records.len().div_ceil(BLOCK_RECORDS).div_ceil(2) * BLOCK_RECORDS);
    let dict = match split {
        Some(split) => Dictionary::of_halves(records, split),
        None => Dictionary::of(records, &mut scratch.dict_tmp),
    };
    let n4 = dict.v4.len();
    let n_dict = n4 + dict.v6.len();
    let mut out = Vec::with_capacity(HEADER_SIZE * 2 + n_dict * 5 + records.len() * 16);
    out.extend_from_slice(header_v2(start_ns, span_ns, segment, records.len() as u64).as_bytes());
    let dict_start = out.len();
    // Resized once and filled by position (not one `extend` an address).
    out.resize(dict_start + n4 * 4 + dict.v6.len() * 16, 0);
    let (d4, d6) = out[dict_start..].split_at_mut(n4 * 4);
    for (to, a) in d4.chunks_exact_mut(4).zip(&dict.v4) {
        to.copy_from_slice(&a.to_be_bytes());
    }
    for (to, a) in d6.chunks_exact_mut(16).zip(&dict.v6) {
        to.copy_from_slice(&a.to_be_bytes());
    }
    let chunks = (out.len() - dict_start).div_ceil(DICT_CHUNK_BYTES);
    for c in 0..chunks {
        let from = dict_start + c * DICT_CHUNK_BYTES;
        let to = (from + DICT_CHUNK_BYTES).min(dict_start + n4 * 4 + dict.v6.len() * 16);
        let crc = crc32fast::hash(&out[from..to]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    acct.dictionary += (out.len() - dict_start) as u64;

    // Blocks are independent once the dictionary is known: a large
    // partition encodes its second half on another thread (the end of a
    // replay seals while nothing else runs), the halves are written one
    // after the other (not copied together). Same bytes either way.
    let mut index: Vec<IndexEntry>;
    let mut stats = Stats::NONE;
    let mut blocks2 = Vec::new();
    if let Some(split) = split {
        let (first, second) = records.split_at(split);
        assert_sorted(&[*records.get(split - 1), *records.get(split)]);
        let (ids1, ids2) = (&dict.ids[0], &dict.ids[1]);
        let (remap1, remap2) = (&dict.remap[0], &dict.remap[1]);
        let mut acct2 = ColumnBytes::default();
        let (idx1, (b2, idx2, stats2)) = std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                let mut b = Vec::with_capacity(second.len() * 16);
                let mut st = Stats::NONE;
                let mut sc = EncodeScratch::default();
                let idx = encode_blocks(
                    &mut b, second, ids2, remap2, start_ns, &mut acct2, &mut st, &mut sc,
                );
                (b, idx, st)
            });
            let idx1 = encode_blocks(
                &mut out, first, ids1, remap1, start_ns, acct, &mut stats, scratch,
            );
            (idx1, other.join().expect("block encoding does not panic"))
        });
        stats = stats.merge(stats2);
        // The second thread's blocks follow the first's in the file.
        let shift = out.len() as u64;
        blocks2 = b2;
        index = idx1;
        index.extend(idx2.into_iter().map(|mut e| {
            e.offset = U64::new(e.offset.get() + shift);
            e
        }));
        acct.block_overhead += acct2.block_overhead;
        for (a, b) in acct.columns.iter_mut().zip(acct2.columns) {
            *a += b;
        }
    } else {
        index = encode_blocks(
            &mut out,
            records,
            &dict.ids[0],
            &dict.remap[0],
            start_ns,
            acct,
            &mut stats,
            scratch,
        );
    }
    let mut tail = Vec::with_capacity(index.len() * size_of::<IndexEntry>() + HEADER_SIZE);
    for e in &index {
        tail.extend_from_slice(e.as_bytes());
    }
    acct.index += tail.len() as u64;
    let stats = stats.finish(records.len());
    let mut f = FooterV2 {
        magic: FOOTER_V2_MAGIC,
        record_count: U64::new(records.len() as u64),
        late_min_first_ns: I64::new(stats.late_min_first_ns),
        max_last_ns: I64::new(stats.max_last_ns),
        index_crc: U32::new(crc32fast::hash(&tail)),
        carried_in: U32::new(stats.carried_in),
        late_in: U32::new(stats.late_in),
        block_count: U32::new(index.len() as u32),
        dict_v4: U32::new(n4 as u32),
        dict_v6: U32::new(dict.v6.len() as u32),
        block_records: U32::new(BLOCK_RECORDS as u32),
        crc: U32::new(0),
    };
    f.crc = U32::new(header_crc(f.as_bytes()));
    tail.extend_from_slice(f.as_bytes());
    acct.header_footer += 2 * HEADER_SIZE as u64;
    [out, blocks2, tail]
}

/// Encodes `records` (whole blocks; `ids` their provisional dictionary
/// ids, final through `remap`) as blocks
/// appended to `out`; the index entries' offsets are their place in `out`.
/// The records are added to `stats` on the way (no pass of its own).
///
/// Each block's columns are filled by position into fixed arrays, encoded
/// into one [`BlockBuf`], CRC'd there and appended with one copy.
#[allow(clippy::too_many_arguments)] // one call per half of the blocks; a struct would only rename them
fn encode_blocks(
    out: &mut Vec<u8>,
    records: Pieces<'_>,
    ids: &[Ids],
    remap: &Remap,
    start_ns: i64,
    acct: &mut ColumnBytes,
    stats: &mut Stats,
    enc: &mut EncodeScratch,
) -> Vec<IndexEntry> {
    records.assert_sorted();
    let mut index: Vec<IndexEntry> = Vec::with_capacity(records.len().div_ceil(BLOCK_RECORDS));
    let mut junction = Vec::new();
    let EncodeScratch {
        cols,
        buf,
        col: scratch,
        dict_tmp: _,
    } = enc;
    let mut seen = [0usize; 11];
    let mut bound_skip = [0u32; 11];
    let mut fine_skip = [0u32; 11];
    let mut fine_fails = [0u32; 11];
    let mut for_first = [false; 11];
    let mut fine_first = [false; 11];
    for (block, ids) in records.blocks(&mut junction).zip(ids.chunks(BLOCK_RECORDS)) {
        let off = out.len();
        let n = block.len();
        assert_eq!(ids.len(), n, "an id triple per record");
        let ef = unit_exp_i64(block.iter().map(|r| r.first_ns.get()));
        let durs = |r: &Record| r.last_ns.get().wrapping_sub(r.first_ns.get()) as u64;
        let ed = unit_exp(block.iter().map(durs));
        let mut prev_q = div_euclid_pow10(start_ns, ef);
        let (mut prev_pid, mut prev_port) = (u64::MAX, 0u64);
        for (j, (r, id)) in block.iter().zip(ids).enumerate() {
            stats.add(r);
            let [pid, iid, rid] = [id[0], id[1], id[2]].map(|p| u64::from(remap.id(p)));
            let port = u64::from(r.public_port.get());
            // Records are sorted: within a run of one public address the
            // ports do not decrease. Ids are below 2^32, so no record's id
            // is the first record's `u64::MAX`.
            let base = if pid == prev_pid { prev_port } else { 0 };
            (prev_pid, prev_port) = (pid, port);
            let q = div_euclid_pow10(r.first_ns.get(), ef);
            let row = [
                pid,
                port - base,
                zigzag(q.wrapping_sub(prev_q)),
                div_pow10(durs(r), ed),
                iid,
                u64::from(r.internal_port.get()),
                rid,
                u64::from(r.remote_port.get()),
                u64::from(r.proto)
                    | u64::from(r.end) << 8
                    | u64::from(r.flags) << 16
                    | u64::from(r.store_flags & (SF_CARRIED | SF_LATE)) << 24,
                u64::from(r.packets_out.get()),
                u64::from(r.packets_in.get()),
            ];
            prev_q = q;
            for (c, v) in cols.iter_mut().zip(row) {
                c[j] = v;
            }
        }
        buf.clear();
        buf.varint(n as u64);
        buf.byte(ef);
        buf.byte(ed);
        acct.block_overhead += (buf.pos + 4) as u64;
        for (k, c) in cols.iter().enumerate() {
            let before = buf.pos;
            // Count by sorting where the previous block's column had more
            // distinct values than half its records.
            scratch.sort_first = 8 * seen[k] > 7 * n;
            // Try the gap bound first where the previous block's column
            // was nearly all distinct or abandoned, unless the bound failed
            // on one of the last few blocks' columns.
            scratch.bound_first = (scratch.sort_first || seen[k] == 0) && bound_skip[k] == 0;
            // Likewise the fine bound where the column is counted by a
            // sort, first where it rejected the previous block's column.
            scratch.fine_bound = fine_skip[k] == 0;
            scratch.fine_first = fine_first[k];
            // No varint sizes where they were provably not needed last time.
            scratch.for_first = for_first[k];
            // Count in the bitmap first where the previous block's column
            // was abandoned (or is the first).
            scratch.map_first = seen[k] == 0;
            put_col(buf, &c[..n], scratch);
            for_first[k] = scratch.for_proven;
            seen[k] = scratch.seen;
            fine_first[k] = scratch.fine_rejected;
            bound_skip[k] = if scratch.bound_failed {
                BOUND_SKIP
            } else {
                bound_skip[k].saturating_sub(1)
            };
            // The fine bound costs a fifth of the sort it saves: after a
            // failure it is skipped for 1, 2, 4, ... up to BOUND_SKIP
            // blocks, from 1 again once it rejects a column.
            if scratch.fine_failed {
                fine_skip[k] = (1 << fine_fails[k]).min(BOUND_SKIP);
                fine_fails[k] += 1;
            } else {
                fine_skip[k] = fine_skip[k].saturating_sub(1);
                if scratch.fine_rejected {
                    fine_fails[k] = 0;
                }
            }
            acct.columns[k] += (buf.pos - before) as u64;
        }
        let payload = buf.bytes();
        let crc = crc32fast::hash(payload);
        out.extend_from_slice(payload);
        out.extend_from_slice(&crc.to_le_bytes());
        index.push(IndexEntry {
            public_ip: block[0].public_ip,
            public_port: block[0].public_port,
            reserved: [0; 2],
            len: U32::new((out.len() - off) as u32),
            offset: U64::new(off as u64),
        });
    }
    index
}

/// Asserts `records` strictly sorted by [`Record::sort_key`] (a sealed
/// file's invariant; the writer's reduction makes them so). The key's
/// address compared as one big-endian `u128` (the same order as its bytes'),
/// the record's bytes only when the rest is equal.
fn assert_sorted(records: &[Record]) {
    let head = |r: &Record| {
        (
            u128::from_be_bytes(r.public_ip),
            r.public_port.get(),
            r.first_ns.get(),
        )
    };
    assert!(
        records.windows(2).all(|w| {
            let (a, b) = (head(&w[0]), head(&w[1]));
            a < b || a == b && w[0].as_bytes() < w[1].as_bytes()
        }),
        "sealed records must be strictly sorted"
    );
}

/// The footer statistics of some records (same definitions as v1's).
#[derive(Clone, Copy)]
struct Stats {
    late_min_first_ns: i64,
    max_last_ns: i64,
    carried_in: u32,
    late_in: u32,
}

impl Stats {
    /// Of no records yet: `max_last_ns` is `i64::MIN` until a record is
    /// added ([`Self::finish`] makes it 0 for none).
    const NONE: Stats = Stats {
        late_min_first_ns: i64::MAX,
        max_last_ns: i64::MIN,
        carried_in: 0,
        late_in: 0,
    };

    #[inline(always)]
    fn add(&mut self, r: &Record) {
        if r.store_flags & SF_LATE != 0 {
            self.late_min_first_ns = self.late_min_first_ns.min(r.first_ns.get());
            self.late_in += 1;
        }
        self.carried_in += u32::from(r.store_flags & SF_CARRIED != 0);
        self.max_last_ns = self.max_last_ns.max(r.last_ns.get());
    }

    /// The statistics of two parts' records together.
    fn merge(self, o: Stats) -> Stats {
        Stats {
            late_min_first_ns: self.late_min_first_ns.min(o.late_min_first_ns),
            max_last_ns: self.max_last_ns.max(o.max_last_ns),
            carried_in: self.carried_in + o.carried_in,
            late_in: self.late_in + o.late_in,
        }
    }

    /// As stored, for `count` records.
    fn finish(mut self, count: usize) -> Stats {
        if count == 0 {
            self.max_last_ns = 0;
        }
        self
    }

    fn of(records: &[Record]) -> Stats {
        let mut s = Stats::NONE;
        for r in records {
            s.add(r);
        }
        s.finish(records.len())
    }
}

/// The 64-byte header of a v2 file: v1's layout, version 2, `record_size`
/// 0 (records have no fixed size).
fn header_v2(start_ns: i64, span_ns: i64, segment: u32, record_count: u64) -> SealedHeader {
    let mut h = SealedHeader {
        magic: SEALED_MAGIC,
        version: U32::new(SEALED_VERSION_V2),
        record_size: U32::new(0),
        start_ns: I64::new(start_ns),
        span_ns: I64::new(span_ns),
        segment: U32::new(segment),
        reserved0: [0; 4],
        record_count: U64::new(record_count),
        reserved: [0; 12],
        crc: U32::new(0),
    };
    h.crc = U32::new(header_crc(h.as_bytes()));
    h
}

/// Reads the header of a sealed partition of any version: magic and CRC
/// first, then the version. Version 1 is checked by [`SealedHeader::read`];
/// version 2 here; a higher one is "written by a newer natrec".
pub(crate) fn read_sealed_header(
    path: &Path,
    bytes: &[u8],
) -> Result<(SealedHeader, u32), StoreError> {
    let (h, _) = SealedHeader::read_from_prefix(bytes).map_err(|_| {
        corrupt(
            path,
            0,
            "header",
            format!("file is {} bytes, shorter than the header", bytes.len()),
        )
    })?;
    let version = h.version.get();
    if h.magic != SEALED_MAGIC || header_crc(h.as_bytes()) != h.crc.get() || version <= 1 {
        // Not ours to judge here: v1's checks name the fault.
        return SealedHeader::read(bytes)
            .map(|h| (h, 1))
            .map_err(|f| f.at(path, 0));
    }
    if version > SEALED_VERSION_MAX {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            found: version,
            supported: SEALED_VERSION_MAX,
        });
    }
    if h.record_size.get() != 0 {
        return Err(corrupt(
            path,
            12,
            "record_size",
            format!(
                "expected 0 (variable) in a version 2 header, found {}",
                h.record_size.get()
            ),
        ));
    }
    if h.reserved != [0; 12] || h.reserved0 != [0; 4] {
        return Err(corrupt(path, 36, "reserved", "expected zero".into()));
    }
    Ok((h, version))
}

/// What sealing the records of the sealed partition at `path` (v1 or v2)
/// in format v2 spends on each part: for reports of the format's cost
/// (`cargo run --release -p natrec-storage --example v2_columns`).
pub fn column_bytes(path: &Path) -> Result<(u64, ColumnBytes), StoreError> {
    let bytes = std::fs::read(path).map_err(StoreError::io(path, "read partition"))?;
    let (h, _) = read_sealed_header(path, &bytes)?;
    let (start, span, seg) = (h.start_ns.get(), h.span_ns.get(), h.segment.get());
    let v = crate::partition::SealedView::open(path, start, span, seg)?;
    let recs = v.records()?;
    let mut acct = ColumnBytes::default();
    encode_file(
        start,
        span,
        seg,
        Pieces::one(&recs),
        &mut acct,
        &mut EncodeScratch::default(),
    );
    Ok((recs.len() as u64, acct))
}

// ---------------------------------------------------------- reading

fn corrupt(path: &Path, offset: u64, field: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        field,
        detail,
    }
}

/// One decoded block: its columns, addresses still as dictionary ids.
#[derive(Default)]
pub(crate) struct Block {
    /// Index of the block's first record in the file.
    first: u64,
    offset: u64,
    pub_id: Vec<u64>,
    pub_port: Vec<u16>,
    first_ns: Vec<i64>,
    last_ns: Vec<i64>,
    int_id: Vec<u64>,
    int_port: Vec<u16>,
    rem_id: Vec<u64>,
    rem_port: Vec<u16>,
    /// proto, end, flags, store bits.
    codes: Vec<[u8; 4]>,
    packets_out: Vec<u32>,
    packets_in: Vec<u32>,
    /// Scratch for one column's values and a dictionary column's values
    /// (kept so a reused block allocates nothing).
    tmp: Vec<u64>,
    tmp_dict: Vec<u64>,
}

/// A checked, read-only view of a v2 sealed partition.
pub(crate) struct V2View {
    path: PathBuf,
    map: Mmap,
    pub footer: FooterV2,
    pub count: u64,
    start_ns: i64,
    dict_start: usize,
    dict_bytes: usize,
    n4: u64,
    n_dict: u64,
    crc_start: usize,
    index_start: usize,
    block_records: u64,
    /// The block index, copied out of the map and CRC-checked at open: the
    /// bytes searched are the bytes checked, however long the view lives.
    index: Box<[IndexEntry]>,
    /// Dictionary chunks a lookup has used: each copied out of the map, then
    /// its CRC checked on the copy, so every address resolved comes from
    /// checked bytes even if the page under the map is later re-read from
    /// a damaged disk. At most the dictionary's size per view.
    chunks: Box<[OnceLock<Box<[u8]>>]>,
    /// The last fully decoded block ([`V2View::record`] reads in order).
    cache: Mutex<Option<Arc<Block>>>,
    /// The last block a lookup read ([`V2View::scan_public`]).
    key_cache: Mutex<Option<Arc<KeyBlock>>>,
}

impl V2View {
    /// Checks header (already read as `header`), footer, layout and the
    /// block index (CRC, contiguity), not the blocks or the dictionary
    /// (a lookup checks what it reads; [`V2View::verify`] checks all).
    pub fn open(path: &Path, map: Mmap, header: &SealedHeader) -> Result<V2View, StoreError> {
        let len = map.len();
        let foot_off = len - HEADER_SIZE;
        let footer = FooterV2::read_from_bytes(&map[foot_off..]).expect("64 bytes");
        if footer.magic != FOOTER_V2_MAGIC {
            return Err(corrupt(
                path,
                foot_off as u64,
                "footer magic",
                format!(
                    "expected \"NATRECF2\", found {:?}",
                    String::from_utf8_lossy(&footer.magic)
                ),
            ));
        }
        let found = header_crc(footer.as_bytes());
        if found != footer.crc.get() {
            return Err(StoreError::BadChecksum {
                path: path.to_path_buf(),
                what: format!("footer crc at byte {}", foot_off + HEADER_SIZE - 4),
                expected: footer.crc.get(),
                found,
            });
        }
        let count = header.record_count.get();
        if footer.record_count.get() != count {
            return Err(corrupt(
                path,
                foot_off as u64 + 8,
                "footer record_count",
                format!(
                    "header says {count}, footer says {}",
                    footer.record_count.get()
                ),
            ));
        }
        let block_records = u64::from(footer.block_records.get());
        let blocks = u64::from(footer.block_count.get());
        if block_records == 0 || count.div_ceil(block_records) != blocks {
            return Err(corrupt(
                path,
                foot_off as u64 + 44,
                "block_count",
                format!(
                    "{count} records in blocks of {block_records} need {} blocks, footer says {blocks}",
                    count.checked_div(block_records).map_or(0, |_| count.div_ceil(block_records))
                ),
            ));
        }
        let (n4, n6) = (
            u64::from(footer.dict_v4.get()),
            u64::from(footer.dict_v6.get()),
        );
        let dict_bytes = n4 * 4 + n6 * 16;
        let chunks = dict_bytes.div_ceil(DICT_CHUNK_BYTES as u64);
        let fixed =
            2 * HEADER_SIZE as u64 + dict_bytes + 4 * chunks + blocks * INDEX_ENTRY_SIZE as u64;
        if fixed > len as u64 {
            return Err(corrupt(
                path,
                foot_off as u64 + 44,
                "footer counts",
                format!(
                    "{blocks} blocks and {} dictionary addresses need at least {fixed} bytes, file is {len} bytes",
                    n4 + n6
                ),
            ));
        }
        let dict_start = HEADER_SIZE;
        let crc_start = dict_start + dict_bytes as usize;
        let blocks_start = crc_start + 4 * chunks as usize;
        let index_start = foot_off - blocks as usize * INDEX_ENTRY_SIZE;
        let index: Box<[IndexEntry]> = <[IndexEntry]>::ref_from_bytes(&map[index_start..foot_off])
            .expect("unaligned entries, length a multiple")
            .into();
        let found = crc32fast::hash(index.as_bytes());
        if found != footer.index_crc.get() {
            return Err(StoreError::BadChecksum {
                path: path.to_path_buf(),
                what: format!("block index (bytes {index_start}..{foot_off})"),
                expected: footer.index_crc.get(),
                found,
            });
        }
        let mut next = blocks_start as u64;
        for (i, e) in index.iter().enumerate() {
            let at = (index_start + i * INDEX_ENTRY_SIZE) as u64;
            if e.offset.get() != next || e.len.get() < 5 || e.len.get() > BLOCK_BYTES_MAX {
                return Err(corrupt(
                    path,
                    at + 20,
                    "block index entry",
                    format!(
                        "block {i} at byte {} with {} bytes; expected it at byte {next}, 5..={BLOCK_BYTES_MAX} bytes",
                        e.offset.get(),
                        e.len.get()
                    ),
                ));
            }
            if e.reserved != [0; 2] {
                return Err(corrupt(
                    path,
                    at + 18,
                    "block index reserved",
                    "expected zero".into(),
                ));
            }
            next += u64::from(e.len.get());
        }
        if next != index_start as u64 {
            return Err(corrupt(
                path,
                index_start as u64,
                "block index",
                format!("blocks end at byte {next}, the index starts at byte {index_start}"),
            ));
        }
        Ok(V2View {
            path: path.to_path_buf(),
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            index,
            map,
            footer,
            count,
            start_ns: header.start_ns.get(),
            dict_start,
            dict_bytes: dict_bytes as usize,
            n4,
            n_dict: n4 + n6,
            crc_start,
            index_start,
            block_records,
            cache: Mutex::new(None),
            key_cache: Mutex::new(None),
        })
    }

    fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// Dictionary chunk `c`: its bytes, copied from the map and checked
    /// against its CRC on the first use, kept from then on.
    fn chunk(&self, c: usize) -> Result<&[u8], StoreError> {
        if let Some(b) = self.chunks[c].get() {
            return Ok(b);
        }
        let from = self.dict_start + c * DICT_CHUNK_BYTES;
        let to = (from + DICT_CHUNK_BYTES).min(self.crc_start);
        let at = self.crc_start + 4 * c;
        let copy: Box<[u8]> = self.map[from..to].into();
        let want = u32::from_le_bytes(self.map[at..at + 4].try_into().expect("4 bytes"));
        let found = crc32fast::hash(&copy);
        if want != found {
            return Err(StoreError::BadChecksum {
                path: self.path.clone(),
                what: format!("dictionary chunk {c} (bytes {from}..{to}; CRC at byte {at})"),
                expected: want,
                found,
            });
        }
        // Two threads may both check it; both copies are good, one is kept.
        Ok(self.chunks[c].get_or_init(|| copy))
    }

    /// Dictionary entry `id`: 16-byte form and whether it is IPv4.
    fn address(&self, id: u64) -> Result<([u8; 16], bool), StoreError> {
        assert!(id < self.n_dict, "ids are checked when a block is decoded");
        let (off, len) = if id < self.n4 {
            (id as usize * 4, 4)
        } else {
            (self.n4 as usize * 4 + (id - self.n4) as usize * 16, 16)
        };
        let mut b = [0u8; 16];
        // An IPv6 entry may straddle two chunks.
        let mut done = 0;
        while done < len {
            let pos = off + done;
            let chunk = self.chunk(pos / DICT_CHUNK_BYTES)?;
            let in_chunk = pos % DICT_CHUNK_BYTES;
            let take = (len - done).min(chunk.len() - in_chunk);
            b[done..done + take].copy_from_slice(&chunk[in_chunk..in_chunk + take]);
            done += take;
        }
        let mut out = [0u8; 16];
        if len == 4 {
            out[10] = 0xff;
            out[11] = 0xff;
            out[12..].copy_from_slice(&b[..4]);
        } else {
            out = b;
        }
        Ok((out, len == 4))
    }

    /// Decodes block `b` (CRC first), or returns it from the cache. The
    /// cached block's buffers are reused when no caller still holds it; a
    /// block that fails to decode is dropped, never cached.
    pub fn block(&self, b: usize) -> Result<Arc<Block>, StoreError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(blk) = cache.as_ref() {
            if blk.first == b as u64 * self.block_records {
                return Ok(blk.clone());
            }
        }
        let reuse = cache
            .take()
            .and_then(|a| Arc::try_unwrap(a).ok())
            .unwrap_or_default();
        let blk = Arc::new(self.decode_block_into(b, reuse)?);
        *cache = Some(blk.clone());
        Ok(blk)
    }

    fn decode_block(&self, b: usize) -> Result<Block, StoreError> {
        self.decode_block_into(b, Block::default())
    }

    /// Decodes block `b` into `blk`'s buffers (whatever they held is
    /// overwritten; on error `blk` is consumed).
    fn decode_block_into(&self, b: usize, mut blk: Block) -> Result<Block, StoreError> {
        let e = self.index()[b];
        let off = e.offset.get() as usize;
        let len = e.len.get() as usize;
        let bytes = &self.map[off..off + len];
        let (payload, crc) = bytes.split_at(len - 4);
        let want = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        let found = crc32fast::hash(payload);
        if want != found {
            return Err(StoreError::BadChecksum {
                path: self.path.clone(),
                what: format!(
                    "block {b} (bytes {off}..{}; CRC at byte {})",
                    off + len,
                    off + len - 4
                ),
                expected: want,
                found,
            });
        }
        let first = b as u64 * self.block_records;
        let n = (self.count - first).min(self.block_records) as usize;
        decode_payload(payload, n, self.start_ns, self.n_dict, &mut blk)
            .map_err(|f| corrupt(&self.path, off as u64 + f.pos as u64, f.field, f.detail))?;
        blk.first = first;
        blk.offset = off as u64;
        Ok(blk)
    }

    fn materialize(&self, blk: &Block, j: usize) -> Result<Record, StoreError> {
        let row = Row {
            pub_id: blk.pub_id[j],
            pub_port: blk.pub_port[j],
            first_ns: blk.first_ns[j],
            last_ns: blk.last_ns[j],
            int_id: blk.int_id[j],
            int_port: blk.int_port[j],
            rem_id: blk.rem_id[j],
            rem_port: blk.rem_port[j],
            codes: blk.codes[j],
            packets_out: blk.packets_out[j],
            packets_in: blk.packets_in[j],
        };
        self.build(&row, blk.offset)
    }

    /// The 96-byte record of a row: addresses resolved through the checked
    /// dictionary, family bits from the ids, CRC recomputed, and the record
    /// checked as a whole (habit 10), naming the block at `offset` if not.
    fn build(&self, row: &Row, offset: u64) -> Result<Record, StoreError> {
        let (public_ip, p4) = self.address(row.pub_id)?;
        let (internal_ip, i4) = self.address(row.int_id)?;
        let (remote_ip, r4) = self.address(row.rem_id)?;
        let [proto, end, flags, sf] = row.codes;
        let sf = sf
            | if p4 { SF_PUBLIC_V4 } else { 0 }
            | if i4 { SF_INTERNAL_V4 } else { 0 }
            | if r4 { SF_REMOTE_V4 } else { 0 };
        let mut r = Record {
            public_ip,
            internal_ip,
            remote_ip,
            first_ns: I64::new(row.first_ns),
            last_ns: I64::new(row.last_ns),
            packets_out: U32::new(row.packets_out),
            packets_in: U32::new(row.packets_in),
            public_port: U16::new(row.pub_port),
            internal_port: U16::new(row.int_port),
            remote_port: U16::new(row.rem_port),
            proto,
            end,
            flags,
            store_flags: sf,
            reserved: [0; 10],
            crc: U32::new(0),
        };
        r.crc = U32::new(r.compute_crc());
        r.decode_fields()
            .map_err(|f| corrupt(&self.path, offset, f.field, f.detail))?;
        Ok(r)
    }

    /// Block `b` as a lookup reads it ([`KeyBlock`]), or from the cache;
    /// a block that fails is dropped, never cached.
    fn key_block(&self, b: usize) -> Result<Arc<KeyBlock>, StoreError> {
        let first = b as u64 * self.block_records;
        let mut cache = self.key_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(blk) = cache.as_ref() {
            if blk.first == first {
                return Ok(blk.clone());
            }
        }
        let mut blk = cache
            .take()
            .and_then(|a| Arc::try_unwrap(a).ok())
            .unwrap_or_default();
        let e = self.index()[b];
        let off = e.offset.get() as usize;
        let len = e.len.get() as usize;
        blk.payload.clear();
        blk.payload.extend_from_slice(&self.map[off..off + len - 4]);
        let want = u32::from_le_bytes(
            self.map[off + len - 4..off + len]
                .try_into()
                .expect("4 bytes"),
        );
        let found = crc32fast::hash(&blk.payload);
        if want != found {
            return Err(StoreError::BadChecksum {
                path: self.path.clone(),
                what: format!(
                    "block {b} (bytes {off}..{}; CRC at byte {})",
                    off + len,
                    off + len - 4
                ),
                expected: want,
                found,
            });
        }
        let n = (self.count - first).min(self.block_records) as usize;
        let KeyBlock {
            payload,
            uf,
            ud,
            pub_id,
            pub_port,
            cols,
            ..
        } = &mut blk;
        let mut c = Cursor {
            buf: payload,
            pos: 0,
        };
        let (mut tmp, mut tmp_dict) = (Vec::new(), Vec::new());
        let located = decode_head(
            &mut c,
            n,
            self.n_dict,
            pub_id,
            pub_port,
            &mut tmp,
            &mut tmp_dict,
        )
        .and_then(|units| {
            for (col, field) in cols.iter_mut().zip(LAZY_COLUMNS) {
                LazyCol::locate(&mut c, n, field, col)?;
            }
            if c.pos != c.buf.len() {
                return Err(c.fault(
                    "block length",
                    format!("{} bytes left after the last column", c.buf.len() - c.pos),
                ));
            }
            Ok(units)
        });
        (*uf, *ud) = located
            .map_err(|f| corrupt(&self.path, off as u64 + f.pos as u64, f.field, f.detail))?;
        blk.first = first;
        blk.offset = off as u64;
        blk.n = n;
        let blk = Arc::new(blk);
        *cache = Some(blk.clone());
        Ok(blk)
    }

    /// Calls `f` with every record whose public address is `ip` (and port
    /// `port`, when given) and whose `first_ns` is at most `to_ns`, in file
    /// order: the block index and the decoded `public_ip`/`public_port`
    /// columns find the run, the `first_ns` deltas are summed along it, and
    /// only the records in the run that start by `to_ns` are read from the
    /// other columns (each value checked, then the record as a whole). A
    /// record starting after `to_ns` cannot be held at any time up to it,
    /// and every state of a mapping has the same `first_ns`, so leaving
    /// those out never changes which state of a mapping a lookup keeps.
    pub fn scan_public(
        &self,
        ip: [u8; 16],
        port: Option<u16>,
        to_ns: i64,
        f: &mut dyn FnMut(Record),
    ) -> Result<(), StoreError> {
        let key = (ip, port.unwrap_or(0));
        let idx = self.index();
        let b0 = idx
            .partition_point(|e| (e.public_ip, e.public_port.get()) < key)
            .saturating_sub(1);
        for b in b0..idx.len() {
            let blk = self.key_block(b)?;
            let fault =
                |f: BlockFault| corrupt(&self.path, blk.offset + f.pos as u64, f.field, f.detail);
            let mut lo = 0usize;
            if b == b0 {
                let mut hi = blk.n;
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let (a, _) = self.address(blk.pub_id[mid])?;
                    if (a, blk.pub_port[mid]) < key {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
            }
            // q of the record before `lo` (the deltas are running sums).
            let first_col = &blk.cols[0];
            let mut q = self.start_ns.div_euclid(blk.uf);
            for j in 0..lo {
                q = q.wrapping_add(unzigzag(first_col.get(&blk.payload, j).map_err(fault)?));
            }
            // The address of the last id compared (ids repeat along a run).
            let mut last: Option<(u64, bool)> = None;
            for j in lo..blk.n {
                let id = blk.pub_id[j];
                let same = match last {
                    Some((l, same)) if l == id => same,
                    _ => {
                        let same = self.address(id)?.0 == ip;
                        last = Some((id, same));
                        same
                    }
                };
                if !same || port.is_some_and(|p| p != blk.pub_port[j]) {
                    return Ok(());
                }
                q = q.wrapping_add(unzigzag(first_col.get(&blk.payload, j).map_err(fault)?));
                let first_ns = q.checked_mul(blk.uf).ok_or_else(|| {
                    fault(BlockFault {
                        field: "first_ns",
                        pos: first_col.at,
                        detail: "time overflows i64".into(),
                    })
                })?;
                if first_ns > to_ns {
                    continue;
                }
                f(self.key_record(&blk, j, first_ns)?);
            }
        }
        Ok(())
    }

    /// Record `j` of a [`KeyBlock`] whose `first_ns` is known: every other
    /// value read and checked as a full decode checks it.
    fn key_record(&self, blk: &KeyBlock, j: usize, first_ns: i64) -> Result<Record, StoreError> {
        let p = &blk.payload;
        let [_, dur, int_id, int_port, rem_id, rem_port, codes, pk_out, pk_in] = &blk.cols;
        let bad = |col: &LazyCol, detail: String| BlockFault {
            field: col.field,
            pos: col.at,
            detail,
        };
        let id = |col: &LazyCol| -> Res<u64> {
            let v = col.get(p, j)?;
            if v >= self.n_dict {
                return Err(bad(
                    col,
                    format!("address id {v}, dictionary has {}", self.n_dict),
                ));
            }
            Ok(v)
        };
        let port16 = |col: &LazyCol| -> Res<u16> {
            let v = col.get(p, j)?;
            u16::try_from(v).map_err(|_| bad(col, format!("{v} > 65535")))
        };
        let count32 = |col: &LazyCol| -> Res<u32> {
            let v = col.get(p, j)?;
            u32::try_from(v).map_err(|_| bad(col, format!("{v} > {}", u32::MAX)))
        };
        let row = (|| -> Res<Row> {
            let d = dur.get(p, j)?;
            let last_ns = d
                .checked_mul(blk.ud)
                .and_then(|d| first_ns.checked_add_unsigned(d))
                .ok_or_else(|| bad(dur, format!("record {j}: last_ns overflows i64")))?;
            Ok(Row {
                pub_id: blk.pub_id[j],
                pub_port: blk.pub_port[j],
                first_ns,
                last_ns,
                int_id: id(int_id)?,
                int_port: port16(int_port)?,
                rem_id: id(rem_id)?,
                rem_port: port16(rem_port)?,
                codes: code(codes.get(p, j)?)
                    .map_err(|d| bad(codes, format!("record {j}: {d}")))?,
                packets_out: count32(pk_out)?,
                packets_in: count32(pk_in)?,
            })
        })()
        .map_err(|f| corrupt(&self.path, blk.offset + f.pos as u64, f.field, f.detail))?;
        self.build(&row, blk.offset)
    }

    /// Record `i`, decoded from its (CRC-checked) block.
    pub fn record(&self, i: u64) -> Result<Record, StoreError> {
        assert!(i < self.count);
        let b = (i / self.block_records) as usize;
        let blk = self.block(b)?;
        self.materialize(&blk, (i - blk.first) as usize)
    }

    /// First index whose (public_ip, public_port) is not below `key`: a
    /// binary search of the block index, then of one decoded block.
    pub fn lower_bound_key(&self, key: ([u8; 16], u16)) -> Result<u64, StoreError> {
        let idx = self.index();
        let b = idx.partition_point(|e| (e.public_ip, e.public_port.get()) < key);
        if b == 0 {
            return Ok(0);
        }
        let blk = self.block(b - 1)?;
        let (mut lo, mut hi) = (0usize, blk.pub_id.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (ip, _) = self.address(blk.pub_id[mid])?;
            if (ip, blk.pub_port[mid]) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(blk.first + lo as u64)
    }

    /// All records, decoded block by block.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(self.count as usize);
        for b in 0..self.index().len() {
            let blk = self.decode_block(b)?;
            for j in 0..blk.pub_id.len() {
                out.push(self.materialize(&blk, j)?);
            }
        }
        Ok(out)
    }

    /// File size in bytes.
    pub fn bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// Full check: every dictionary chunk and its order, every block CRC and
    /// field, the index keys, strict sort order, footer statistics.
    pub fn verify(&self) -> Vec<StoreError> {
        let mut errors = Vec::new();
        for c in 0..self.chunks.len() {
            if let Err(e) = self.chunk(c) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            let mut prev: Option<([u8; 16], bool)> = None;
            for id in 0..self.n_dict {
                let a = self.address(id).expect("chunks checked");
                if let Some(p) = prev {
                    let ordered = if p.1 == a.1 { p.0 < a.0 } else { p.1 && !a.1 };
                    if !ordered {
                        let off = self.dict_start as u64
                            + if id < self.n4 {
                                id * 4
                            } else {
                                self.n4 * 4 + (id - self.n4) * 16
                            };
                        errors.push(corrupt(
                            &self.path,
                            off,
                            "dictionary order",
                            format!("address {id} does not sort after address {}", id - 1),
                        ));
                        break;
                    }
                }
                prev = Some(a);
            }
        }
        let _ = self.dict_bytes;
        let idx = self.index();
        let mut prev: Option<Record> = None;
        let mut all = Vec::with_capacity(self.count as usize);
        let mut damaged = false;
        for (b, e) in idx.iter().enumerate() {
            let blk = match self.decode_block(b) {
                Ok(blk) => blk,
                Err(err) => {
                    errors.push(err);
                    prev = None;
                    damaged = true;
                    continue;
                }
            };
            for j in 0..blk.pub_id.len() {
                let r = match self.materialize(&blk, j) {
                    Ok(r) => r,
                    Err(err) => {
                        errors.push(err);
                        damaged = true;
                        prev = None;
                        break;
                    }
                };
                if j == 0
                    && (r.public_ip, r.public_port.get()) != (e.public_ip, e.public_port.get())
                {
                    errors.push(corrupt(
                        &self.path,
                        (self.index_start + b * INDEX_ENTRY_SIZE) as u64,
                        "block index key",
                        format!("entry {b} does not name its block's first record"),
                    ));
                }
                if let Some(p) = prev {
                    if p.sort_key() >= r.sort_key() {
                        errors.push(corrupt(
                            &self.path,
                            e.offset.get(),
                            "record order",
                            format!(
                                "record {} does not sort after record {}",
                                blk.first + j as u64,
                                blk.first + j as u64 - 1
                            ),
                        ));
                    }
                }
                prev = Some(r);
                all.push(r);
            }
        }
        if !damaged && errors.is_empty() {
            let s = Stats::of(&all);
            let f = &self.footer;
            let found = (
                all.len() as u64,
                f.late_min_first_ns.get(),
                f.max_last_ns.get(),
                f.carried_in.get(),
                f.late_in.get(),
            );
            let want = (
                all.len() as u64,
                s.late_min_first_ns,
                s.max_last_ns,
                s.carried_in,
                s.late_in,
            );
            if want != found || all.len() as u64 != self.count {
                errors.push(corrupt(
                    &self.path,
                    (self.map.len() - HEADER_SIZE) as u64,
                    "footer",
                    format!(
                        "footer statistics (records, late_min_first_ns, max_last_ns, carried_in, late_in) do not match the records: expected {want:?}, found {found:?}"
                    ),
                ));
            }
        }
        errors
    }
}

/// The block's record count and time units, then its `public_ip` and
/// `public_port` columns (every id and port checked): what a lookup's
/// search needs, and the start of every full decode.
fn decode_head(
    c: &mut Cursor,
    n: usize,
    n_dict: u64,
    pub_id: &mut Vec<u64>,
    pub_port: &mut Vec<u16>,
    tmp: &mut Vec<u64>,
    tmp_dict: &mut Vec<u64>,
) -> Res<(i64, u64)> {
    let found_n = c.varint("block record count")?;
    if found_n != n as u64 {
        return Err(BlockFault {
            field: "block record count",
            pos: 0,
            detail: format!("expected {n}, found {found_n}"),
        });
    }
    let ef = c.byte("first_ns unit")?;
    let ed = c.byte("duration unit")?;
    if ef > 9 || ed > 9 {
        return Err(c.fault("time unit", format!("exponents {ef}, {ed}; at most 9")));
    }
    let (uf, ud) = (10i64.pow(u32::from(ef)), 10u64.pow(u32::from(ed)));
    get_col_into(c, n, "public_ip", pub_id, tmp_dict)?;
    if let Some(bad) = pub_id.iter().find(|&&id| id >= n_dict) {
        return Err(c.fault(
            "public_ip",
            format!("address id {bad}, dictionary has {n_dict}"),
        ));
    }
    get_col_into(c, n, "public_port", tmp, tmp_dict)?;
    pub_port.clear();
    for j in 0..n {
        let base = if j > 0 && pub_id[j] == pub_id[j - 1] {
            u64::from(pub_port[j - 1])
        } else {
            0
        };
        let p = base
            .checked_add(tmp[j])
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| c.fault("public_port", format!("record {j}: port above 65535")))?;
        pub_port.push(p);
    }
    Ok((uf, ud))
}

/// A `codes` value split into proto, end, flags and store bits, each
/// checked.
fn code(x: u64) -> Result<[u8; 4], String> {
    let [proto, end, flags, sf, rest @ ..] = x.to_le_bytes();
    if rest != [0; 4] {
        Err("bits above 32 set".to_string())
    } else if Proto::from_number(proto).is_none() {
        Err(format!("proto {proto}; expected 1, 6, 17 or 58"))
    } else if EndReason::from_code(end).is_none() {
        Err(format!("end {end}; expected 0..=6"))
    } else if sf & !(SF_CARRIED | SF_LATE) != 0 {
        Err(format!(
            "store flags {sf:#04x}; only CARRIED and LATE are stored here"
        ))
    } else {
        Ok([proto, end, flags, sf])
    }
}

/// A column found in a block but not decoded: each value is read when a
/// record needs it (frame of reference and dictionary columns by position;
/// a varint column, which cannot be indexed, was decoded while locating it).
#[derive(Default)]
struct LazyCol {
    field: &'static str,
    tag: u8,
    /// Frame of reference: the minimum added to each value.
    min: u64,
    width: u32,
    /// Payload offset of the packed bits (frame of reference, dictionary).
    at: usize,
    /// Packed bytes.
    len: usize,
    /// Dictionary: the `k` values; varint: the `n` values.
    vals: Vec<u64>,
}

impl LazyCol {
    /// Finds the column at the cursor and moves past it, checking its
    /// structure as [`get_col_into`] does (tag, varints, width, lengths,
    /// dictionary order), not its packed values.
    fn locate(c: &mut Cursor, n: usize, field: &'static str, col: &mut LazyCol) -> Res<()> {
        col.field = field;
        col.tag = c.byte(field)?;
        col.vals.clear();
        let packed = |c: &mut Cursor, col: &mut LazyCol| -> Res<()> {
            col.width = u32::from(c.byte(field)?);
            if col.width > 64 {
                return Err(c.fault(field, format!("bit width {} > 64", col.width)));
            }
            col.len = (n as u64 * u64::from(col.width)).div_ceil(8) as usize;
            col.at = c.pos;
            c.take(col.len, field)?;
            Ok(())
        };
        match col.tag {
            COL_FOR => {
                col.min = c.varint(field)?;
                packed(c, col)
            }
            COL_VARINT => {
                for _ in 0..n {
                    col.vals.push(c.varint(field)?);
                }
                Ok(())
            }
            COL_DICT => {
                let k = c.varint(field)?;
                if k == 0 && n > 0 || k > n as u64 {
                    return Err(c.fault(field, format!("{k} distinct values for {n} records")));
                }
                let mut prev = 0u64;
                for i in 0..k {
                    let g = c.varint(field)?;
                    if i > 0 && g == 0 {
                        return Err(c.fault(field, "dictionary values not strictly increasing"));
                    }
                    prev = prev
                        .checked_add(g)
                        .ok_or_else(|| c.fault(field, "value overflows 64 bits"))?;
                    col.vals.push(prev);
                }
                packed(c, col)
            }
            other => Err(c.fault(field, format!("unknown column encoding {other}"))),
        }
    }

    /// Packed value `j` (the bits [`Cursor::packed_into`] reads).
    fn packed(&self, payload: &[u8], j: usize) -> u64 {
        if self.width == 0 {
            return 0;
        }
        let bit = j * self.width as usize;
        let data = &payload[self.at..self.at + self.len];
        let mask = if self.width == 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        };
        // As `packed_into`: one 8-byte word while 8 bytes are there and the
        // value fits in the 57 bits it surely holds (width ≤ 56).
        if self.width <= 56 {
            if let Some(word) = data.get(bit / 8..bit / 8 + 8) {
                let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                return (word >> (bit % 8)) & mask;
            }
        }
        let mut acc = 0u128;
        for (k, &b) in data[bit / 8..].iter().take(9).enumerate() {
            acc |= u128::from(b) << (8 * k);
        }
        (acc >> (bit % 8)) as u64 & mask
    }

    /// Value `j`, checked as a full decode checks it.
    fn get(&self, payload: &[u8], j: usize) -> Res<u64> {
        let fault = |detail: String| BlockFault {
            field: self.field,
            pos: self.at,
            detail,
        };
        match self.tag {
            COL_FOR => self
                .packed(payload, j)
                .checked_add(self.min)
                .ok_or_else(|| fault("value overflows 64 bits".into())),
            COL_VARINT => Ok(self.vals[j]),
            _ => {
                let id = self.packed(payload, j);
                self.vals
                    .get(id as usize)
                    .copied()
                    .ok_or_else(|| fault(format!("id {id} of {} values", self.vals.len())))
            }
        }
    }
}

/// One record's values, addresses as dictionary ids.
struct Row {
    pub_id: u64,
    pub_port: u16,
    first_ns: i64,
    last_ns: i64,
    int_id: u64,
    int_port: u16,
    rem_id: u64,
    rem_port: u16,
    codes: [u8; 4],
    packets_out: u32,
    packets_in: u32,
}

/// A block as a lookup reads it: its payload copied out of the map and
/// CRC-checked on the copy (kept, so the bytes read later are the bytes
/// checked), the `public_ip` and `public_port` columns decoded for the
/// search, the other nine located (structure checked) and read only for the
/// records that match (docs/FORMAT.md, "Lookups").
#[derive(Default)]
pub(crate) struct KeyBlock {
    first: u64,
    offset: u64,
    payload: Vec<u8>,
    n: usize,
    uf: i64,
    ud: u64,
    pub_id: Vec<u64>,
    pub_port: Vec<u16>,
    /// Columns 3..=11: first_ns, duration, internal_ip, internal_port,
    /// remote_ip, remote_port, codes, packets_out, packets_in.
    cols: [LazyCol; 9],
}

/// Names of the columns a [`KeyBlock`] leaves undecoded, in file order.
const LAZY_COLUMNS: [&str; 9] = [
    "first_ns",
    "duration",
    "internal_ip",
    "internal_port",
    "remote_ip",
    "remote_port",
    "codes",
    "packets_out",
    "packets_in",
];

/// Decodes a block's payload (its CRC already checked) into `blk`,
/// checking every value; on error `blk` holds partial columns and must be
/// dropped.
fn decode_payload(
    payload: &[u8],
    n: usize,
    start_ns: i64,
    n_dict: u64,
    blk: &mut Block,
) -> Res<()> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let Block {
        first: _,
        offset: _,
        pub_id,
        pub_port,
        first_ns,
        last_ns,
        int_id,
        int_port,
        rem_id,
        rem_port,
        codes,
        packets_out,
        packets_in,
        tmp,
        tmp_dict,
    } = blk;
    let (uf, ud) = decode_head(&mut c, n, n_dict, pub_id, pub_port, tmp, tmp_dict)?;
    let id_col = |c: &mut Cursor, field, out: &mut Vec<u64>, d: &mut Vec<u64>| -> Res<()> {
        get_col_into(c, n, field, out, d)?;
        if let Some(bad) = out.iter().find(|&&id| id >= n_dict) {
            return Err(c.fault(field, format!("address id {bad}, dictionary has {n_dict}")));
        }
        Ok(())
    };
    let narrow16 = |c: &Cursor, v: &[u64], out: &mut Vec<u16>, field| -> Res<()> {
        out.clear();
        for &x in v {
            out.push(u16::try_from(x).map_err(|_| c.fault(field, format!("{x} > 65535")))?);
        }
        Ok(())
    };
    let narrow32 = |c: &Cursor, v: &[u64], out: &mut Vec<u32>, field| -> Res<()> {
        out.clear();
        for &x in v {
            out.push(u32::try_from(x).map_err(|_| c.fault(field, format!("{x} > {}", u32::MAX)))?);
        }
        Ok(())
    };
    get_col_into(&mut c, n, "first_ns", tmp, tmp_dict)?;
    first_ns.clear();
    let mut q = start_ns.div_euclid(uf);
    for &d in tmp.iter() {
        q = q.wrapping_add(unzigzag(d));
        first_ns.push(
            q.checked_mul(uf)
                .ok_or_else(|| c.fault("first_ns", "time overflows i64"))?,
        );
    }
    get_col_into(&mut c, n, "duration", tmp, tmp_dict)?;
    last_ns.clear();
    for (j, &d) in tmp.iter().enumerate() {
        let l = d
            .checked_mul(ud)
            .and_then(|d| first_ns[j].checked_add_unsigned(d))
            .ok_or_else(|| c.fault("duration", format!("record {j}: last_ns overflows i64")))?;
        last_ns.push(l);
    }
    id_col(&mut c, "internal_ip", int_id, tmp_dict)?;
    get_col_into(&mut c, n, "internal_port", tmp, tmp_dict)?;
    narrow16(&c, tmp, int_port, "internal_port")?;
    id_col(&mut c, "remote_ip", rem_id, tmp_dict)?;
    get_col_into(&mut c, n, "remote_port", tmp, tmp_dict)?;
    narrow16(&c, tmp, rem_port, "remote_port")?;
    get_col_into(&mut c, n, "codes", tmp, tmp_dict)?;
    codes.clear();
    for (j, &x) in tmp.iter().enumerate() {
        codes.push(code(x).map_err(|d| c.fault("codes", format!("record {j}: {d}")))?);
    }
    get_col_into(&mut c, n, "packets_out", tmp, tmp_dict)?;
    narrow32(&c, tmp, packets_out, "packets_out")?;
    get_col_into(&mut c, n, "packets_in", tmp, tmp_dict)?;
    narrow32(&c, tmp, packets_in, "packets_in")?;
    if c.pos != payload.len() {
        return Err(c.fault(
            "block length",
            format!("{} bytes left after the last column", payload.len() - c.pos),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mapping;
    use crate::partition::{write_sealed, SealedView};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    const PROTOS: [Proto; 4] = [Proto::Icmp, Proto::Tcp, Proto::Udp, Proto::Icmpv6];
    const ENDS: [EndReason; 7] = [
        EndReason::Open,
        EndReason::Fin,
        EndReason::Rst,
        EndReason::Idle,
        EndReason::CaptureEnd,
        EndReason::Replaced,
        EndReason::Evicted,
    ];

    /// An address from a small pool (so dictionaries and runs repeat) or
    /// anywhere; IPv4, IPv6, and IPv6 that looks like IPv4-mapped.
    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u32..8).prop_map(|i| IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + i))),
            any::<u32>().prop_map(|i| IpAddr::V4(Ipv4Addr::from(i))),
            any::<u128>().prop_map(|i| IpAddr::V6(Ipv6Addr::from(i))),
            (0u32..4).prop_map(|i| IpAddr::V6(Ipv4Addr::from(0xcb00_7100 + i).to_ipv6_mapped())),
            (0u128..4).prop_map(|i| IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | i))),
        ]
    }

    fn port() -> impl Strategy<Value = u16> {
        prop_oneof![0u16..4, any::<u16>(), Just(443), Just(u16::MAX)]
    }

    /// Times: realistic (µs or ms multiples near the partition) or anything.
    fn times() -> impl Strategy<Value = (i64, i64)> {
        prop_oneof![
            (0i64..3_600_000_000, 0i64..600_000_000)
                .prop_map(|(a, d)| (T0 + a * 1000, T0 + a * 1000 + d * 1000)),
            (0i64..3_600_000, 0i64..60_000)
                .prop_map(|(a, d)| (T0 + a * 1_000_000, T0 + (a + d) * 1_000_000)),
            (any::<i64>(), any::<i64>()).prop_map(|(a, b)| (a.min(b), a.max(b))),
            any::<i64>().prop_map(|a| (a, a)),
        ]
    }

    const T0: i64 = 1_772_373_600_000_000_000;

    fn record() -> impl Strategy<Value = Record> {
        (
            (0usize..4, 0usize..7, any::<u8>(), 0u8..4),
            (ip(), port(), ip(), port(), ip(), port()),
            times(),
            (
                prop_oneof![0u32..20, any::<u32>()],
                prop_oneof![0u32..20, any::<u32>()],
            ),
        )
            .prop_map(
                |((p, e, flags, sf), (pi, pp, ii, ip_, ri, rp), (f, l), (po, pin))| {
                    let m = Mapping {
                        proto: PROTOS[p],
                        internal: SocketAddr::new(ii, ip_),
                        public: SocketAddr::new(pi, pp),
                        remote: SocketAddr::new(ri, rp),
                        first_ns: f,
                        last_ns: l,
                        end: ENDS[e],
                        packets_out: po,
                        packets_in: pin,
                        flags,
                    };
                    let sf = [0, SF_CARRIED, SF_LATE, SF_CARRIED | SF_LATE][sf as usize];
                    Record::encode(&m, sf).unwrap()
                },
            )
    }

    fn sorted(mut recs: Vec<Record>) -> Vec<Record> {
        recs.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        recs.dedup_by(|a, b| a.sort_key() == b.sort_key());
        recs
    }

    fn records() -> impl Strategy<Value = Vec<Record>> {
        prop_oneof![
            prop::collection::vec(record(), 0..40),
            prop::collection::vec(record(), 500..1300),
        ]
        .prop_map(sorted)
    }

    fn write(dir: &Path, recs: &[Record]) -> PathBuf {
        let p = dir.join("20260301T140000Z-0000.part");
        write_sealed(&p, T0, 3_600_000_000_000, 0, recs, &[]).unwrap();
        p
    }

    fn open(p: &Path) -> Result<SealedView, StoreError> {
        SealedView::open(p, T0, 3_600_000_000_000, 0)
    }

    /// What [`SealedView::scan_public`] must pass on: a filter of all records.
    fn scan_reference(recs: &[Record], ip: [u8; 16], port: Option<u16>, to_ns: i64) -> Vec<Record> {
        recs.iter()
            .filter(|r| {
                r.public_ip == ip
                    && port.is_none_or(|p| p == r.public_port.get())
                    && r.first_ns.get() <= to_ns
            })
            .copied()
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// The dictionary from sorted occurrences gives every record the
        /// final ids the hash pass and its remap gave, and the same
        /// address lists, over one slice or two pieces cut anywhere.
        #[test]
        fn sorted_occurrences_dictionary_is_the_hashed_one(recs in records(), cut in any::<prop::sample::Index>()) {
            let at = if recs.is_empty() { 0 } else { cut.index(recs.len() + 1) };
            let (a, b) = recs.split_at(at);
            // Sort scratch with other contents, reused by the second call.
            let mut tmp = vec![u64::MAX; at];
            for pieces in [Pieces::one(&recs), Pieces::two(a, b)] {
                let new = Dictionary::of(pieces, &mut tmp);
                let old = Dictionary::of_hashed(pieces);
                prop_assert_eq!(&new.v4, &old.v4);
                prop_assert_eq!(&new.v6, &old.v6);
                let finals = |d: &Dictionary| -> Vec<[u32; 3]> {
                    d.ids[0].iter().map(|id| [id[0], id[1], id[2]].map(|p| d.remap[0].id(p))).collect()
                };
                prop_assert_eq!(finals(&new), finals(&old));
            }
        }
    }

    /// Records whose public, internal and remote addresses each lie in a
    /// range of their own (`spread` 0: apart, as a NAT's pools; 1: the
    /// remotes' range reaching into the public one; 2: one address in
    /// every field; 3: the internal and remote ranges the same), a few
    /// IPv6, 0-1 300 records (every field on either side of the radix
    /// sort's threshold).
    fn field_records() -> impl Strategy<Value = Vec<Record>> {
        let one = (
            0u32..600,
            0u32..1 << 22,
            0u32..1 << 17,
            0u8..20,
            any::<u16>(),
        );
        (0usize..4, prop::collection::vec(one, 0..1300)).prop_map(|(spread, raw)| {
            let recs = raw
                .iter()
                .map(|&(p, i, x, v6, port)| {
                    let public = 0xcb00_7100 + p % 300 + (p / 300) * 0x0400_0000;
                    let (internal, remote) = match spread {
                        0 => (0x6440_0000 + i, 0xc612_0000 + x),
                        1 => (0x6440_0000 + i, 0xcb00_7100 + x),
                        2 => (0xcb00_7100, 0xcb00_7100),
                        _ => (0x6440_0000 + i, 0x6440_0000 + (x << 5)),
                    };
                    let v4 = |a: u32| IpAddr::V4(Ipv4Addr::from(a));
                    let remote = if v6 == 0 {
                        IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(x)))
                    } else {
                        v4(remote)
                    };
                    let m = Mapping {
                        proto: Proto::Udp,
                        internal: SocketAddr::new(v4(internal), port),
                        public: SocketAddr::new(v4(public), port),
                        remote: SocketAddr::new(remote, 443),
                        first_ns: T0,
                        last_ns: T0,
                        end: EndReason::Idle,
                        packets_out: 1,
                        packets_in: 1,
                        flags: 0,
                    };
                    Record::encode(&m, 0).unwrap()
                })
                .collect();
            sorted(recs)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// The dictionary from each field's sorted occurrences (joined
        /// where the fields' ranges are apart, merged where they are not)
        /// is the hashed one.
        #[test]
        fn field_sorted_dictionary_is_the_hashed_one(recs in field_records()) {
            let mut tmp = Vec::new();
            let new = Dictionary::of(Pieces::one(&recs), &mut tmp);
            let old = Dictionary::of_hashed(Pieces::one(&recs));
            prop_assert_eq!(&new.v4, &old.v4);
            prop_assert_eq!(&new.v6, &old.v6);
            let finals = |d: &Dictionary| -> Vec<[u32; 3]> {
                d.ids[0].iter().map(|id| [id[0], id[1], id[2]].map(|p| d.remap[0].id(p))).collect()
            };
            prop_assert_eq!(finals(&new), finals(&old));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Blocks encoded on two threads and concatenated are the bytes of
        /// one thread's encoding (the records here span up to 3 blocks);
        /// and a scratch that encoded other records before gives the same
        /// bytes as a fresh one.
        #[test]
        fn encoding_on_two_threads_gives_the_same_bytes(recs in records()) {
            // Forced split (any partition of two blocks or more) against none.
            let one = encode_file_split(T0, 3_600_000_000_000, 0, Pieces::one(&recs), &mut ColumnBytes::default(), usize::MAX, &mut EncodeScratch::default()).concat();
            // The scratch the rest use has encoded other records first.
            let mut sc = EncodeScratch::default();
            let other: Vec<Record> = recs.iter().skip(1).step_by(4).copied().collect();
            encode_file_split(T0, 3_600_000_000_000, 0, Pieces::one(&other), &mut ColumnBytes::default(), usize::MAX, &mut sc);
            let two = encode_file_split(T0, 3_600_000_000_000, 0, Pieces::one(&recs), &mut ColumnBytes::default(), 0, &mut sc).concat();
            prop_assert_eq!(&one, &two);
            // The records as two pieces cut anywhere (a split seal's halves,
            // not concatenated), encoded on one thread or two: the same bytes.
            for cut in [0, 1, recs.len() / 3, recs.len() / 2, recs.len().saturating_sub(1), recs.len()] {
                let cut = cut.min(recs.len());
                let (a, b) = recs.split_at(cut);
                for split_min in [usize::MAX, 0] {
                    let pieces = encode_file_split(T0, 3_600_000_000_000, 0, Pieces::two(a, b), &mut ColumnBytes::default(), split_min, &mut sc).concat();
                    prop_assert_eq!(&pieces, &one, "cut {} split_min {}", cut, split_min);
                }
            }
        }

        /// decode(encode(x)) == x for any sorted record set, and every
        /// lookup by key finds what a linear search finds.

        #[test]
        fn sorted_records_round_trip(recs in records(), probes in prop::collection::vec((ip(), port()), 8)) {
            let d = tempfile::tempdir().unwrap();
            let p = write(d.path(), &recs);
            let v = open(&p).unwrap();
            prop_assert_eq!(v.version(), 2);
            prop_assert_eq!(v.count, recs.len() as u64);
            prop_assert_eq!(&v.records().unwrap(), &recs);
            for (i, r) in recs.iter().enumerate().step_by(37) {
                prop_assert_eq!(&v.record(i as u64).unwrap(), r);
            }
            prop_assert!(v.verify().is_empty(), "{:?}", v.verify());
            let mut keys: Vec<([u8; 16], u16)> = probes
                .iter()
                .map(|(ip, port)| (crate::format::ip16(*ip), *port))
                .collect();
            keys.extend(recs.iter().step_by(53).map(|r| (r.public_ip, r.public_port.get())));
            for (k, key) in keys.into_iter().enumerate() {
                let want = recs.partition_point(|r| (r.public_ip, r.public_port.get()) < key);
                prop_assert_eq!(v.lower_bound_key(key).unwrap(), want as u64);
                // The lookup's scan (only the matching records' columns
                // read) finds what a filter of the full decode finds
                // (two window ends a key, four in turn; the any-port scans
                // are the long ones).
                let ends = [i64::MIN, T0, T0 + 1_800_000_000_000, i64::MAX];
                for port in [Some(key.1), None] {
                    for to_ns in [ends[k % 4], ends[(k + 2) % 4]] {
                        let mut found = Vec::new();
                        v.scan_public(key.0, port, to_ns, &mut |r| found.push(r)).unwrap();
                        prop_assert_eq!(&found, &scan_reference(&recs, key.0, port, to_ns));
                    }
                }
            }
        }

        /// The file's bytes are the same whichever versions of the
        /// multiversioned encoder functions run (`simd::v3!`: x86-64-v3's
        /// where the CPU has it, and the baseline's), and decode to the
        /// records.
        #[test]
        fn encode_is_the_same_for_the_baseline_and_x86_64_v3(recs in records()) {
            let encode = || {
                let mut acct = ColumnBytes::default();
                let parts = encode_file(T0, 3_600_000_000_000, 0, Pieces::one(&recs), &mut acct, &mut EncodeScratch::default());
                parts.concat()
            };
            let ours = encode();
            prop_assert_eq!(&ours, &crate::simd::baseline(encode));
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("20260301T140000Z-0000.part");
            std::fs::write(&p, &ours).unwrap();
            prop_assert_eq!(open(&p).unwrap().records().unwrap(), recs);
        }

        /// Any flipped byte is an error naming the file (open, a read, or
        /// verify), never a panic, never a wrong record; so is any truncation.
        #[test]
        fn damage_is_an_error_never_a_wrong_record(
            recs in prop::collection::vec(record(), 1..700).prop_map(sorted),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            cut in any::<prop::sample::Index>(),
        ) {
            let d = tempfile::tempdir().unwrap();
            let p = write(d.path(), &recs);
            let good = std::fs::read(&p).unwrap();
            let mut bad = good.clone();
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
            std::fs::write(&p, &bad).unwrap();
            let name = p.to_string_lossy().to_string();
            match open(&p) {
                Err(e) => prop_assert!(e.to_string().contains(&name), "{e}"),
                Ok(v) => {
                    let errs = v.verify();
                    prop_assert!(!errs.is_empty(), "flip at byte {} not found", i);
                    for e in &errs {
                        prop_assert!(e.to_string().contains(&name), "{e}");
                    }
                    // Whatever still reads must be exactly what was written.
                    for (j, r) in recs.iter().enumerate() {
                        if let Ok(found) = v.record(j as u64) {
                            prop_assert_eq!(&found, r);
                        }
                    }
                    if let Ok(all) = v.records() {
                        prop_assert_eq!(&all, &recs, "flip at byte {} read back wrong records", i);
                    }
                    // A lookup's scan: what it passes on before any error
                    // is a prefix of the right answer; without an error, all of it.
                    for r in recs.iter().step_by(61) {
                        for port in [Some(r.public_port.get()), None] {
                            let want = scan_reference(&recs, r.public_ip, port, i64::MAX);
                            let mut found = Vec::new();
                            match v.scan_public(r.public_ip, port, i64::MAX, &mut |r| found.push(r)) {
                                Ok(()) => prop_assert_eq!(&found, &want, "flip at byte {}", i),
                                Err(e) => {
                                    prop_assert!(e.to_string().contains(&name), "{e}");
                                    prop_assert_eq!(&found[..], &want[..found.len()], "flip at byte {}", i);
                                }
                            }
                        }
                    }
                }
            }
            let n = cut.index(good.len());
            std::fs::write(&p, &good[..n]).unwrap();
            match open(&p) {
                Err(e) => prop_assert!(e.to_string().contains(&name), "{e}"),
                Ok(v) => prop_assert!(!v.verify().is_empty(), "truncation to {} bytes not found", n),
            }
        }
    }

    #[test]
    fn a_newer_version_is_refused_with_upgrade() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), &[]);
        let mut b = std::fs::read(&p).unwrap();
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = header_crc(&b[..64]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&p, &b).unwrap();
        let e = open(&p).err().unwrap();
        assert!(
            matches!(
                e,
                StoreError::Version {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("upgrade natrec"), "{e}");
    }

    /// What a natrec that reads only v1 does with a v2 file: its header
    /// check (`SealedHeader::read`, unchanged from v1) says "newer; upgrade".
    #[test]
    fn a_v1_reader_refuses_v2_with_upgrade() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), &[]);
        let b = std::fs::read(&p).unwrap();
        let f = SealedHeader::read(&b[..64]).unwrap_err();
        assert_eq!((f.field, f.version), ("version", Some((2, 1))));
        assert!(f
            .at(&p, 0)
            .to_string()
            .contains("written by a newer natrec"));
    }

    /// The column chooser before the seal was made cheap: sizes of all
    /// three encodings, the dictionary's from a sorted copy. The cheap one
    /// must choose exactly the same bytes (the format says "smallest, ties:
    /// the lower tag", so a seal's bytes do not depend on the build).
    /// The exact size of `vals` (not empty) as a dictionary column: the
    /// count, the distinct values as gaps, the id width, the packed ids
    /// (the bounds' proptests compare against it).
    fn dict_size_exact(vals: &[u64]) -> usize {
        let mut distinct = vals.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let k = distinct.len() as u64;
        let mut prev = 0u64;
        let mut exact =
            varint_len(k) + 1 + (vals.len() as u64 * u64::from(bits(k - 1))).div_ceil(8) as usize;
        for &v in &distinct {
            exact += varint_len(v - prev);
            prev = v;
        }
        exact
    }

    fn put_col_reference(out: &mut Vec<u8>, vals: &[u64]) {
        let n = vals.len() as u64;
        let (min, max) = vals
            .iter()
            .fold((u64::MAX, 0u64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let min = if vals.is_empty() { 0 } else { min };
        let w_for = bits(max - min);
        let size_for = varint_len(min) + 1 + (n * u64::from(w_for)).div_ceil(8) as usize;
        let size_var: usize = vals.iter().map(|&v| varint_len(v)).sum();
        let mut distinct = vals.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let k = distinct.len() as u64;
        let w_dict = bits(k.saturating_sub(1));
        let size_dict = varint_len(k)
            + distinct
                .iter()
                .scan(0u64, |prev, &v| {
                    let g = v - *prev;
                    *prev = v;
                    Some(varint_len(g))
                })
                .sum::<usize>()
            + 1
            + (n * u64::from(w_dict)).div_ceil(8) as usize;
        if size_for <= size_var && size_for <= size_dict {
            out.push(COL_FOR);
            put_varint(out, min);
            out.push(w_for as u8);
            put_packed(out, vals.iter().map(|&v| v - min), w_for);
        } else if size_var <= size_dict {
            out.push(COL_VARINT);
            for &v in vals {
                put_varint(out, v);
            }
        } else {
            out.push(COL_DICT);
            put_varint(out, k);
            let mut prev = 0;
            for &v in &distinct {
                put_varint(out, v - prev);
                prev = v;
            }
            out.push(w_dict as u8);
            put_packed(
                out,
                vals.iter()
                    .map(|v| distinct.binary_search(v).expect("in distinct") as u64),
                w_dict,
            );
        }
    }

    /// A column: few distinct values, a narrow range, or anything, with
    /// a base anywhere in u64.
    fn column() -> impl Strategy<Value = Vec<u64>> {
        (
            0usize..=BLOCK_RECORDS,
            prop_oneof![Just(0u64), any::<u64>(), 0u64..1 << 20],
            prop_oneof![1u64..4, 1u64..70, 1u64..300, 1u64..5000, Just(u64::MAX)],
            prop_oneof![Just(1u64), 1u64..1000, Just(1u64 << 40)],
            any::<u64>(),
        )
            .prop_map(|(n, base, k, step, seed)| {
                let mut x = seed | 1;
                (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        base.wrapping_add((x % k).wrapping_mul(step))
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The cheap chooser writes the same bytes as the exhaustive one,
        /// and they decode to the column.
        #[test]
        fn put_col_chooses_what_the_exhaustive_chooser_chose(vals in column()) {
            let (mut a, mut b) = (BlockBuf::new(), Vec::new());
            put_col(&mut a, &vals, &mut ColScratch::default());
            put_col_reference(&mut b, &vals);
            let a = a.bytes().to_vec();
            prop_assert_eq!(&a, &b);
            // The same bytes with the varint sizes summed only when needed.
            let (mut f, mut s) = (BlockBuf::new(), ColScratch::default());
            s.for_first = true;
            put_col(&mut f, &vals, &mut s);
            prop_assert_eq!(f.bytes(), &b[..]);
            let mut c = Cursor { buf: &a, pos: 0 };
            prop_assert_eq!(get_col(&mut c, vals.len(), "x").unwrap(), vals);
        }
    }

    /// [`dict_size_below`] as it was before the direct-indexed and run
    /// paths (the hash table abandoned the column once it counted more than
    /// `limit` distinct values), with the counting by a sort: the model the
    /// current one must agree with, `best` anything.
    fn dict_size_below_before(vals: &[u64], min: u64, w_for: u32, best: usize) -> Option<Vec<u64>> {
        let n = vals.len() as u64;
        if n == 0 || w_for == 0 {
            return None;
        }
        let packed = |k: u64| (n * u64::from(bits(k - 1))).div_ceil(8) as usize;
        let lb = |k: u64| varint_len(k) + varint_len(min) + (k as usize - 1) + 1 + packed(k);
        let k_for = if w_for >= 64 {
            u64::MAX
        } else {
            1u64 << (w_for - 1)
        };
        let cap = k_for.min(n).min(DISTINCT_HASHED_MAX as u64 + 1);
        if lb(1) >= best {
            return None;
        }
        let limit = (1..=cap)
            .rev()
            .find(|&k| lb(k) < best)
            .expect("lb(1) < best");
        let mut distinct = vals.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let k = distinct.len() as u64;
        if k > limit && limit <= DISTINCT_HASHED_MAX as u64 {
            return None;
        }
        let mut prev = 0u64;
        let mut size = varint_len(k) + 1 + packed(k);
        for &v in &distinct {
            size += varint_len(v - prev);
            prev = v;
        }
        (size < best).then_some(distinct)
    }

    /// `n ≥ 1` values from `k` evenly spaced levels of `base..=base +
    /// range` in a random order (xorshift of `seed`), the first `base` and
    /// the last (when `n > 1`) `base + range`: the range exactly.
    fn spread(n: usize, base: u64, range: u64, k: u64, seed: u64) -> Vec<u64> {
        let mut x = seed | 1;
        let mut v: Vec<u64> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                base + (x % k) * range / k
            })
            .collect();
        v[0] = base;
        if n > 1 {
            v[n - 1] = base + range;
        }
        v
    }

    /// A column shaped like the ones that take the new paths: runs of
    /// equal values, all equal, all distinct, narrow (direct-indexed) and
    /// wide ranges.
    fn column_shaped() -> impl Strategy<Value = Vec<u64>> {
        prop_oneof![
            column(),
            // Runs of values from a few.
            (
                0usize..=BLOCK_RECORDS,
                any::<u64>(),
                1u64..40,
                1usize..60,
                any::<u64>()
            )
                .prop_map(|(n, base, k, run, seed)| {
                    let mut x = seed | 1;
                    let mut out = Vec::with_capacity(n);
                    while out.len() < n {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let v = base.wrapping_add(x % k);
                        out.extend(std::iter::repeat_n(v, run.min(n - out.len())));
                    }
                    out
                }),
            // All equal.
            (0usize..=BLOCK_RECORDS, any::<u64>()).prop_map(|(n, v)| vec![v; n]),
            // All distinct, narrow (range n - 1 up to 1 100: both sides of
            // the direct table's bound) or wide.
            (1usize..=BLOCK_RECORDS, 0u64..1 << 20, 1u64..3, any::<u64>()).prop_map(
                |(n, base, step, seed)| {
                    let mut v: Vec<u64> = (0..n as u64).map(|i| base + i * step).collect();
                    let mut x = seed | 1;
                    for i in (1..v.len()).rev() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        v.swap(i, (x % (i as u64 + 1)) as usize);
                    }
                    v
                }
            ),
            // Range exactly at the direct table's bound, either side.
            (
                1usize..=BLOCK_RECORDS,
                any::<u64>(),
                1020u64..1030,
                1u64..200,
                any::<u64>()
            )
                .prop_map(|(n, base, range, k, seed)| {
                    spread(n, base.min(u64::MAX - range), range, k, seed)
                }),
            // A range from 2^10 to 2^17 (either side of the bitmap's
            // 2^16, and at it), `k` distinct values of it: the bitmap's
            // count either side of the limit.
            (
                1usize..=BLOCK_RECORDS,
                0u64..1 << 40,
                prop_oneof![1024u64..1 << 17, (1u64 << 16) - 2..(1 << 16) + 2],
                prop_oneof![1u64..=BLOCK_RECORDS as u64, 200u64..=BLOCK_RECORDS as u64],
                any::<u64>()
            )
                .prop_map(|(n, base, range, k, seed)| spread(n, base, range, k, seed)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// The direct-indexed, run and sorted (value, row) paths decide
        /// exactly what the hash table alone decided, for any `best` (the
        /// real one, the exact size and either side of it, anything), with
        /// one scratch reused over several columns, either hint.
        #[test]
        fn dict_size_below_decides_what_it_decided_before(
            cols in prop::collection::vec(
                (column_shaped(), 0usize..4000, 0u8..4, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()), 1..6),
        ) {
            let mut s = ColScratch::default();
            for (vals, any_best, pick, sort_first, bound_first, fine_first, map_first) in &cols {
                s.map_first = *map_first;
                s.sort_first = *sort_first;
                s.bound_first = *bound_first;
                s.fine_bound = *fine_first || *bound_first;
                s.fine_first = *fine_first;
                s.for_first = *sort_first != *fine_first;
                let (min, max) = vals
                    .iter()
                    .fold((u64::MAX, 0u64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let min = if vals.is_empty() { 0 } else { min };
                let w_for = bits(max - min);
                let n = vals.len() as u64;
                let size_for = varint_len(min) + 1 + (n * u64::from(w_for)).div_ceil(8) as usize;
                let size_var: usize = vals.iter().map(|&v| varint_len(v)).sum();
                let real = size_for.min(size_var);
                // The exact size (found with an unbeatable best).
                let exact = dict_size_below(vals, min, max, usize::MAX, &mut s);
                let best = match (pick, exact) {
                    (0, _) => real,
                    (1, Some(e)) => e,
                    (2, Some(e)) => e + 1,
                    _ => *any_best,
                };
                let got = dict_size_below(vals, min, max, best, &mut s);
                // The bitmap is cleared after each use.
                prop_assert!(s.map.iter().all(|&w| w == 0));
                let want = dict_size_below_before(vals, min, w_for, best);
                prop_assert_eq!(got.is_some(), want.is_some());
                if let (Some(size), Some(distinct)) = (got, want) {
                    prop_assert_eq!(&s.distinct, &distinct);
                    prop_assert_eq!(Some(size), exact);
                }
                let (mut a, mut b) = (BlockBuf::new(), Vec::new());
                put_col(&mut a, vals, &mut s);
                put_col_reference(&mut b, vals);
                prop_assert_eq!(a.bytes(), &b[..]);
            }
        }
    }

    /// A wide column: values spread over `2^w` (w from 14 to 63) from
    /// any base, clustered or uniform, with repeats.
    fn column_wide() -> impl Strategy<Value = Vec<u64>> {
        (
            1usize..=BLOCK_RECORDS,
            any::<u64>(),
            14u32..64,
            1u32..64,
            1u64..600,
            any::<u64>(),
        )
            .prop_map(|(n, base, w, spread, k, seed)| {
                let span = (1u64 << w) - 1;
                let base = base.min(u64::MAX - span);
                let spread = spread.min(w);
                let mut x = seed | 1;
                let mut pool = vec![base, base + span];
                while (pool.len() as u64) < k {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Clusters: a random point plus a small offset.
                    let at = pool[(x % pool.len() as u64) as usize];
                    let off = (x >> 8) & ((1u64 << spread) - 1);
                    pool.push(if x & 1 == 0 {
                        at.saturating_add(off).min(base + span)
                    } else {
                        at.saturating_sub(off).max(base)
                    });
                }
                (0..n)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if i < 2 {
                            pool[i]
                        } else {
                            pool[(x % pool.len() as u64) as usize]
                        }
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// The gap bound never exceeds the dictionary's exact size, and a
        /// column it rejects is one the dictionary would not have won.
        #[test]
        fn gap_bound_is_a_lower_bound(vals in prop_oneof![3 => column_wide(), 1 => column(), 1 => column_shaped()]) {
            let (min, max) = vals
                .iter()
                .fold((u64::MAX, 0u64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let w_for = bits(max.wrapping_sub(min));
            if vals.is_empty() || w_for <= GAP_BUCKET_BITS_MAX || w_for >= 64 {
                return Ok(()); // not a column the bound is tried on
            }
            let mut s = ColScratch::default();
            let bound = gap_bound(&vals, min, w_for, &mut s);
            let exact = dict_size_exact(&vals);
            prop_assert!(bound <= exact, "bound {} exact {}", bound, exact);
            prop_assert_eq!(dict_size_below(&vals, min, max, exact + 1, &mut s), Some(exact));
            s.bound_first = true;
            prop_assert_eq!(dict_size_below(&vals, min, max, exact + 1, &mut s), Some(exact));
            prop_assert_eq!(dict_size_below(&vals, min, max, exact, &mut s), None);
        }
    }

    /// A nearly distinct column of small gaps: sorted-order gaps drawn from
    /// 1..2^g (g 1 to 20) with a few far values, shuffled, some repeats:
    /// the replay's first-time deltas and durations, where the fine bound
    /// is close to the exact size.
    fn column_gappy() -> impl Strategy<Value = Vec<u64>> {
        (
            1usize..=BLOCK_RECORDS,
            0u64..1 << 40,
            1u32..=20,
            0usize..4,
            0u64..8,
            any::<u64>(),
        )
            .prop_map(|(n, base, g, far, repeat, seed)| {
                let mut x = seed | 1;
                let mut step = || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let mut at = base;
                let mut v: Vec<u64> = (0..n)
                    .map(|i| {
                        let r = step();
                        if i < far {
                            at + (r >> 20)
                        } else if r % 8 < repeat {
                            at
                        } else {
                            at += 1 + (r >> 8) % (1 << g);
                            at
                        }
                    })
                    .collect();
                for i in (1..v.len()).rev() {
                    let j = (step() % (i as u64 + 1)) as usize;
                    v.swap(i, j);
                }
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// The fine gap bound never exceeds the dictionary's exact size,
        /// and with it tried first (or the coarse one first) the decision
        /// is the one without bounds, `best` either side of the bound and
        /// of the exact size.
        #[test]
        fn fine_gap_bound_is_a_lower_bound(
            vals in prop_oneof![3 => column_gappy(), 1 => column_wide(), 1 => column_shaped()],
        ) {
            if vals.is_empty() {
                return Ok(());
            }
            let (min, max) = vals
                .iter()
                .fold((u64::MAX, 0u64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let mut s = ColScratch::default();
            let bound = fine_gap_bound(&vals, min, bits(max - min), &mut s);
            prop_assert!(s.map.iter().all(|&w| w == 0));
            prop_assert!(s.fine_map.iter().all(|&x| x == 0));
            prop_assert_eq!(bound, fine_gap_bound_hashed(&vals, min, &mut s));
            let exact = dict_size_exact(&vals);
            prop_assert!(bound <= exact, "bound {} exact {}", bound, exact);
            if max == min {
                return Ok(()); // no dictionary is tried
            }
            for (sort_first, fine_first) in [(true, true), (true, false), (false, true)] {
                s.bound_first = true;
                s.fine_bound = true;
                s.sort_first = sort_first;
                s.fine_first = fine_first;
                for best in [bound, bound + 1, exact - 1, exact, exact + 1] {
                    let got = dict_size_below(&vals, min, max, best, &mut s);
                    let want = dict_size_below_before(&vals, min, bits(max - min), best);
                    prop_assert_eq!(got.is_some(), want.is_some());
                    if let (Some(size), Some(want)) = (got, want) {
                        prop_assert_eq!(size, exact);
                        prop_assert_eq!(&s.distinct, &want);
                    }
                }
            }
        }
    }

    /// A value of any bit length (uniform u64s are nearly all 64 bits long).
    fn any_length() -> impl Strategy<Value = u64> {
        (0u32..=64, any::<u64>()).prop_map(|(b, v)| if b == 64 { v } else { v & ((1 << b) - 1) })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// `BlockBuf` writes, in sequence, the bytes of the byte-at-a-time
        /// writers; varint lengths by table equal `varint_len`.
        #[test]
        fn block_buf_writes_what_the_reference_writers_write(
            parts in prop::collection::vec(
                (0u32..=64, prop::collection::vec(any_length(), 0..40), any_length()), 0..12),
        ) {
            let (mut w, mut r) = (BlockBuf::new(), Vec::new());
            for (width, vals, v) in &parts {
                let vals: Vec<u64> = vals
                    .iter()
                    .map(|&x| if *width == 64 { x } else { x & ((1 << width) - 1) })
                    .collect();
                w.packed(vals.iter().copied(), *width);
                put_packed(&mut r, vals.iter().copied(), *width);
                w.packed_by(&vals, |v| v, *width);
                put_packed(&mut r, vals.iter().copied(), *width);
                w.varint(*v);
                put_varint(&mut r, *v);
                prop_assert_eq!(varint_len_fast(*v), varint_len(*v));
                w.byte(*width as u8);
                r.push(*width as u8);
            }
            prop_assert_eq!(w.bytes(), &r[..]);
        }

        /// [`BlockBuf::packed_by`] (constant widths, chunked) writes the
        /// bytes of the byte-at-a-time packer on block-length columns of
        /// every width: random values, all at the width's largest value,
        /// all zero; lengths across the chunk and block edges; after an
        /// unaligned start.
        #[test]
        fn packed_by_writes_what_put_packed_writes(
            width in 0u32..=64,
            len in 0usize..=BLOCK_RECORDS + 3,
            kind in 0u8..3,
            lead in 0usize..3,
            seed in any::<u64>(),
        ) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let mut x = seed | 1;
            let vals: Vec<u64> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match kind {
                        0 => x & mask,
                        1 => mask,
                        _ => 0,
                    }
                })
                .collect();
            let (mut w, mut r) = (BlockBuf::new(), vec![0xa5u8; lead]);
            for _ in 0..lead {
                w.byte(0xa5);
            }
            w.packed_by(&vals, |v| v, width);
            put_packed(&mut r, vals.iter().copied(), width);
            w.byte(0x5a);
            r.push(0x5a);
            let ids: Vec<u16> = (0..len).map(|j| (j % 7) as u16).collect();
            let table: Vec<u64> = (0..7u64).map(|i| (i * 0x9e37_79b9) & mask).collect();
            w.packed_by(&ids, |h| table[usize::from(h)], width);
            put_packed(&mut r, ids.iter().map(|&h| table[usize::from(h)]), width);
            prop_assert_eq!(w.bytes(), &r[..]);
        }

        /// Units and divisions by constant powers of ten equal the ones by
        /// a variable power.
        #[test]
        fn powers_of_ten_by_constant(v in any::<i64>(), e in 0u8..=9, m in 0u64..1000) {
            let p = 10u64.pow(u32::from(e));
            let u = v.unsigned_abs();
            prop_assert_eq!(divisible_pow10(u, e), u % p == 0);
            prop_assert_eq!(div_pow10(u, e), u / p);
            prop_assert_eq!(div_euclid_pow10(v, e), v.div_euclid(p as i64));
            let vals = [u, m * p, u.wrapping_mul(p)];
            let mut want = 9u8;
            while want > 0 && vals.iter().any(|x| x % 10u64.pow(u32::from(want)) != 0) {
                want -= 1;
            }
            prop_assert_eq!(unit_exp(vals.iter().copied()), want);
        }

        /// [`unit_exp`] equals the one-value-at-a-time reference on columns
        /// of multiples of random powers of ten (the exponent dropping at
        /// any place, or never).
        #[test]
        fn unit_exp_equals_reference(
            vals in proptest::collection::vec((any::<u64>(), 0u32..=12, 0u64..3), 0..600)
        ) {
            let vals: Vec<u64> = vals
                .iter()
                .map(|&(v, e, k)| match k {
                    0 => v,
                    1 => (v >> 40).wrapping_mul(10u64.pow(e)),
                    _ => 10u64.pow(e),
                })
                .collect();
            prop_assert_eq!(unit_exp(vals.iter().copied()), unit_exp_reference(vals.iter().copied()));
            let tail = vals.iter().copied().filter(|v| v % 1000 == 0);
            prop_assert_eq!(unit_exp(tail.clone()), unit_exp_reference(tail));
        }
    }

    proptest! {
        /// The radix sort of (value, row) keys gives the library sort's
        /// order: values of every width up to the widest such keys hold,
        /// with repeats (rows break the ties), up to a block's worth, the
        /// scratch buffer left at any length by an earlier call.
        #[test]
        fn sort_rows_sorts_as_the_library_sort(
            w in 0u32..=SORTED_ROW_BITS_MAX,
            vals in prop::collection::vec(any::<u64>(), 0..=DISTINCT_HASHED_MAX),
            repeat_mask in any::<u64>(),
            tmp_len in 0usize..600,
        ) {
            let mask = if w == 0 { 0 } else { u64::MAX >> (64 - w) };
            let mut keys: Vec<u64> = vals
                .iter()
                .enumerate()
                .map(|(j, &v)| (v & mask & repeat_mask) << ROW_BITS | j as u64)
                .collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let mut tmp = vec![7u64; tmp_len];
            sort_rows(&mut keys, &mut tmp, w);
            prop_assert_eq!(keys, expect);
        }
    }

    #[test]
    fn block_buf_varints_at_every_bit_length() {
        let (mut w, mut r) = (BlockBuf::new(), Vec::new());
        for b in 0..64 {
            for v in [
                1u64 << b,
                (1u64 << b) - 1,
                (1u64 << b) | 1,
                u64::MAX >> (63 - b),
                0x5555_5555_5555_5555 >> (63 - b),
                0xaaaa_aaaa_aaaa_aaaa >> (63 - b),
            ] {
                w.varint(v);
                put_varint(&mut r, v);
                w.byte(0xff);
                r.push(0xff);
            }
        }
        assert_eq!(w.bytes(), &r[..]);
    }

    #[test]
    fn varint_len_fast_at_every_bit_length() {
        for b in 0..64 {
            for v in [
                1u64 << b,
                (1u64 << b) - 1,
                (1u64 << b) | 1,
                u64::MAX >> (63 - b),
            ] {
                assert_eq!(varint_len_fast(v), varint_len(v), "{v:#x}");
            }
        }
        assert_eq!(varint_len_fast(0), 1);
    }

    #[test]
    fn varints_and_columns_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX, 1 << 63] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut c = Cursor { buf: &b, pos: 0 };
            assert_eq!(c.varint("x").unwrap(), v);
        }
        for vals in [
            vec![],
            vec![5u64; 10],
            vec![0, u64::MAX, 3],
            (0..600).map(|i| i * 7919 % 1000).collect(),
            (0..600).map(|i| [443, 80, 53][i % 3]).collect(),
            (0..100).map(|i| 1u64 << (i % 64)).collect(),
        ] {
            let mut w = BlockBuf::new();
            put_col(&mut w, &vals, &mut ColScratch::default());
            let b = w.bytes();
            let mut c = Cursor { buf: b, pos: 0 };
            assert_eq!(get_col(&mut c, vals.len(), "x").unwrap(), vals);
            assert_eq!(c.pos, b.len());
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
    }
}
