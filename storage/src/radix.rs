//! Radix sorts of integer keys for the seal. [`sort_msd`], most significant
//! digit first, for the seal's index: each level scatters on the digit just
//! below the highest bit where its keys differ, so a field whose range is
//! not dense costs no extra pass (~20-40 instructions per key and level
//! against ~150-250 per key for a comparison sort at a partition's sizes).
//! [`sort_lsd_above`], least significant digit first, for the v2 address
//! dictionary's `u64` keys whose low bits already stand in order: a few
//! stable passes over the address bits alone; [`AddrKeys`], the same for
//! the one-thread dictionary's occurrences with the digits counted as the
//! keys are made.

/// Digit width: 2^11 counters (8 KiB) per pass, whose write positions stay
/// in L1/L2 while keys are scattered.
const DIGIT_BITS_MAX: u32 = 11;
const RADIX: usize = 1 << DIGIT_BITS_MAX;

/// An unsigned integer key.
pub(crate) trait Key: Copy + Default {
    /// `(self >> shift) as usize` (shift below the type's width).
    fn shifted(self, shift: u32) -> usize;
    /// The bits where `self` and `o` differ (`self ^ o`), or'ed into `acc`.
    fn diff_into(self, o: Self, acc: Self) -> Self;
    /// Bits needed for `0..=self` (the highest set bit's position + 1).
    fn bit_len(self) -> u32;
    /// The key's bits from `HIGH_SHIFT` up, as a `u64` (a digit that lies
    /// there is one 64-bit shift away, not a double-word one).
    const HIGH_SHIFT: u32;
    fn high(self) -> u64;
    /// Keys a level's bucket holds on average, as a power of two (chosen
    /// by callgrind counts on the seal's workloads, round 11: the index's
    /// `u128` keys sort in fewer instructions with four, the dictionary's
    /// `u64` occurrences with two).
    const BUCKET_KEYS_LOG2: u32;
}

impl Key for u64 {
    #[inline]
    fn shifted(self, shift: u32) -> usize {
        (self >> shift) as usize
    }
    #[inline]
    fn diff_into(self, o: u64, acc: u64) -> u64 {
        acc | (self ^ o)
    }
    #[inline]
    fn bit_len(self) -> u32 {
        64 - self.leading_zeros()
    }
    const HIGH_SHIFT: u32 = 0;
    #[inline]
    fn high(self) -> u64 {
        self
    }
    const BUCKET_KEYS_LOG2: u32 = 1;
}

impl Key for u128 {
    #[inline]
    fn shifted(self, shift: u32) -> usize {
        (self >> shift) as usize
    }
    #[inline]
    fn diff_into(self, o: u128, acc: u128) -> u128 {
        acc | (self ^ o)
    }
    #[inline]
    fn bit_len(self) -> u32 {
        128 - self.leading_zeros()
    }
    const HIGH_SHIFT: u32 = 64;
    #[inline]
    fn high(self) -> u64 {
        (self >> 64) as u64
    }
    const BUCKET_KEYS_LOG2: u32 = 2;
}

/// Slices of at most this many keys are sorted by comparison in
/// [`sort_msd`] (a scatter's counters cost more than that sort there).
const MSD_COMPARE_MAX: usize = 64;

/// Sorts the keys of `a` (all below 2^`top`) ascending into `b` (as long;
/// `a` is scratch afterwards): one stable scatter on the digit just below
/// the highest bit where the keys differ (bits all keys share above it are
/// skipped: a field's range need not be dense, e.g. two address blocks far
/// apart), at most [`DIGIT_BITS_MAX`] bits and about one bucket per two
/// (`u64`) or four (`u128`) keys, then each bucket the same way until it is small enough to sort by
/// comparison. Every level splits on a bit that differs, so at most `top`
/// levels. One pass over memory per level, where a least-significant-digit
/// sort makes one per digit of the whole key.
///
/// `low`: keys of `a` equal in their bits from `low` up already stand in
/// ascending order (e.g. their low bits are their place in `a`: the seal's
/// slots, the dictionary's occurrences), so no level scatters below bit
/// `low` and a bucket whose keys differ only below it is left as the stable
/// scatter put it (`low` 0: no such promise).
pub(crate) fn sort_msd<K: Key + Ord>(a: &mut [K], b: &mut [K], top: u32, low: u32) {
    let n = a.len();
    assert_eq!(n, b.len(), "scratch as long as the keys");
    if n <= MSD_COMPARE_MAX || top == 0 {
        b.copy_from_slice(a);
        b.sort_unstable();
        return;
    }
    let first = a[0];
    let diff = a
        .iter()
        .fold(K::default(), |acc, &k| k.diff_into(first, acc));
    // Below 2^top, so at most `top`; 0 when every key is the same.
    let top = diff.bit_len();
    if top <= low {
        // In order already (every key the same, or differing below `low`).
        b.copy_from_slice(a);
        return;
    }
    // About one bucket per 2^BUCKET_KEYS_LOG2 keys (n > MSD_COMPARE_MAX, so
    // at least 5 bits; the insertion sort takes buckets of a few keys more
    // cheaply than a bucket per key costs in counters and their loop), none
    // below `low`.
    let width = (top - low)
        .min(DIGIT_BITS_MAX)
        .min(usize::BITS - K::BUCKET_KEYS_LOG2 - n.leading_zeros());
    // The counters zeroed are as many as the level's buckets need (a
    // small level's call does not zero 8 KiB).
    if width <= SMALL_DIGIT_BITS_MAX {
        level::<K, { SMALL_RADIX + 1 }>(a, b, top - width, width, low);
    } else if width <= MID_DIGIT_BITS_MAX {
        level::<K, { MID_RADIX + 1 }>(a, b, top - width, width, low);
    } else {
        level::<K, { RADIX + 1 }>(a, b, top - width, width, low);
    }
}

/// Digits of 9 or 10 bits are counted in a 4 KiB array (a bucket of
/// ~500-4 000 keys: bigstore's partitions and their second level).
const MID_DIGIT_BITS_MAX: u32 = 10;
const MID_RADIX: usize = 1 << MID_DIGIT_BITS_MAX;

/// Digits of at most this many bits are counted in a 1 KiB array
/// ([`sort_msd`]'s recursion into buckets of fewer than ~1 000 keys).
const SMALL_DIGIT_BITS_MAX: u32 = 8;
const SMALL_RADIX: usize = 1 << SMALL_DIGIT_BITS_MAX;

/// One level of [`sort_msd`] on the `width` bits from `shift` up, with
/// `N - 1` (a power of two, at least `2^width`) counters, and its buckets'
/// recursion.
#[inline(always)]
fn level<K: Key + Ord, const N: usize>(a: &mut [K], b: &mut [K], shift: u32, width: u32, low: u32) {
    let mask = (1usize << width) - 1;
    let buckets = 1usize << width;
    debug_assert!(buckets < N);
    // Bucket d's count in `at[d + 1]`, then its start in `at[d]`, which
    // the scatter advances to its end (the next bucket's start). The digit
    // from the key's high word when it lies there (the loop chosen once).
    let mut at = [0u32; N];
    if shift >= K::HIGH_SHIFT {
        let s = shift - K::HIGH_SHIFT;
        let digit = |k: K| (k.high() >> s) as usize & mask;
        count(a, &mut at, digit);
        scatter(a, b, &mut at, buckets, digit);
    } else {
        let digit = |k: K| k.shifted(shift) & mask;
        count(a, &mut at, digit);
        scatter(a, b, &mut at, buckets, digit);
    }
    sort_buckets(a, b, &at[..buckets], shift, low);
}

/// The top level's choice of [`sort_msd`] for `n` keys below 2^`top`
/// whose highest differing bit is `top - 1` (the caller knows it, e.g.
/// from the fields' ranges): the digit's `(shift, width)`, or `None` where
/// [`sort_msd`] makes no level (few keys, or none differing from `low`
/// up).
pub(crate) fn msd_top_digit(n: usize, top: u32, low: u32) -> Option<(u32, u32)> {
    if n <= MSD_COMPARE_MAX || top <= low {
        return None;
    }
    let width = (top - low)
        .min(TOP_DIGIT_BITS_MAX)
        .min(usize::BITS - <u128 as Key>::BUCKET_KEYS_LOG2 - n.leading_zeros());
    Some((top - width, width))
}

/// Most bits of [`msd_top_digit`]'s digit: wider than a level of
/// [`sort_msd`] (its counters are made once a sort, as the keys are): at
/// ~33 000 keys (bigstore's 4 M-mapping partitions, two log records a
/// mapping) 14 bits leave about two keys a bucket, most often one
/// mapping's two states, in order already, where 13 left four (round 18:
/// the sort 361 -> 347 M instructions on bigstore's 4 M seals, the 64 KiB
/// of counters zeroed a sort counted in; 15 bits would not split the
/// pairs, which share their prefix, and double the buckets' loops).
const TOP_DIGIT_BITS_MAX: u32 = 14;

/// [`TopCounts`]' counters for a digit of at most [`DIGIT_BITS_MAX`] bits
/// (8 KiB zeroed a sort) and for a wider one (64 KiB): the caller picks
/// the narrow kind where the digit fits it.
pub(crate) const TOP_COUNTS_NARROW: usize = RADIX + 1;
pub(crate) const TOP_COUNTS_WIDE: usize = (1 << TOP_DIGIT_BITS_MAX) + 1;
pub(crate) const TOP_NARROW_BITS_MAX: u32 = DIGIT_BITS_MAX;

/// Counters of [`msd_top_digit`]'s digit, filled while the keys are made
/// (so the sort makes no counting pass of its own at the top level).
pub(crate) struct TopCounts<const N: usize> {
    at: [u32; N],
    shift: u32,
    mask: usize,
}

impl<const N: usize> TopCounts<N> {
    pub(crate) fn new(shift: u32, width: u32) -> TopCounts<N> {
        assert!(
            width <= TOP_DIGIT_BITS_MAX && (1usize << width) < N && (N - 1).is_power_of_two(),
            "a digit of at most TOP_DIGIT_BITS_MAX bits, fewer buckets than N, N - 1 a power of two"
        );
        TopCounts {
            at: [0; N],
            shift,
            mask: (1usize << width) - 1,
        }
    }

    /// Counts `k`'s digit.
    #[inline(always)]
    pub(crate) fn see(&mut self, k: u128) {
        self.see_digit(k.shifted(self.shift));
    }

    /// Counts a key whose bits from the digit's up are `d` (the caller
    /// shifted the key, or a part of it holding the digit, by
    /// [`TopCounts::shift`]; the bits above the digit are masked off here).
    #[inline(always)]
    pub(crate) fn see_digit(&mut self, d: usize) {
        self.at[(d & self.mask & (N - 2)) + 1] += 1;
    }

    /// Counts a key whose bits from the digit's up are `d`, the digit the
    /// key's top bits (nothing above it to mask off: one mask less than
    /// [`TopCounts::see_digit`], the counters' bound only).
    #[inline(always)]
    pub(crate) fn see_top(&mut self, d: u64) {
        debug_assert!(d as usize <= self.mask, "nothing above the digit");
        self.at[(d as usize & (N - 2)) + 1] += 1;
    }

    /// The digit's lowest bit in the key.
    pub(crate) fn shift(&self) -> u32 {
        self.shift
    }

    /// The counters: digit `d`'s count in `[d + 1]` (tests).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> &[u32] {
        &self.at
    }
}

crate::simd::v3! {
    /// [`sort_msd_counted_body`], for the baseline and for x86-64-v3.
    pub(crate) fn sort_msd_counted[const N: usize](
        a: &mut [u128],
        b: &mut [u128],
        c: &mut TopCounts<N>,
        low: u32,
    )
    => sort_msd_counted_body[N];
}

/// [`sort_msd`] of `a` into `b` whose top level's digit ([`msd_top_digit`]'s,
/// `c`) was counted as the keys were made: `c` has seen every key of `a`
/// once (by reference: 8 KiB of counters, not copied; spent afterwards).
/// The same order as [`sort_msd`] (the keys' ascending order).
#[inline(always)]
fn sort_msd_counted_body<const N: usize>(
    a: &mut [u128],
    b: &mut [u128],
    c: &mut TopCounts<N>,
    low: u32,
) {
    assert_eq!(a.len(), b.len(), "scratch as long as the keys");
    let buckets = c.mask + 1;
    debug_assert_eq!(
        c.at[1..=buckets].iter().map(|&x| x as usize).sum::<usize>(),
        a.len(),
        "every key counted once"
    );
    let (shift, mask) = (c.shift, c.mask);
    if shift >= <u128 as Key>::HIGH_SHIFT {
        let s = shift - <u128 as Key>::HIGH_SHIFT;
        scatter(a, b, &mut c.at, buckets, |k: u128| {
            (k.high() >> s) as usize & mask
        });
    } else {
        scatter(a, b, &mut c.at, buckets, |k: u128| k.shifted(shift) & mask);
    }
    sort_buckets(a, b, &c.at[..buckets], shift, low);
}

/// [`sort_msd`]'s recursion into the buckets a level's scatter left in `b`
/// (`ends`: each bucket's end; the level's digit from bit `shift` up).
#[inline(always)]
fn sort_buckets<K: Key + Ord>(a: &mut [K], b: &mut [K], ends: &[u32], shift: u32, low: u32) {
    let mut from = 0usize;
    for &end in ends {
        let to = end as usize;
        let from = std::mem::replace(&mut from, to);
        if to - from < 2 || shift <= low {
            // One key, or keys equal from `low` up: in order already.
            continue;
        }
        let bucket = &mut b[from..to];
        if bucket.len() <= INSERTION_MAX {
            insertion_sort(bucket);
        } else if bucket.len() <= MSD_COMPARE_MAX || shift == 0 {
            bucket.sort_unstable();
        } else {
            let spare = &mut a[from..to];
            spare.copy_from_slice(bucket);
            sort_msd(spare, bucket, shift, low);
        }
    }
}

/// Counts the digits of `a` into `at[d + 1]`.
#[inline(always)]
fn count<K: Key, const N: usize>(a: &[K], at: &mut [u32; N], digit: impl Fn(K) -> usize) {
    for &k in a.iter() {
        at[(digit(k) & (N - 2)) + 1] += 1;
    }
}

/// One level of [`sort_msd`] after [`count`]: turns the counts `at[d + 1]`
/// into bucket starts and scatters `a` into `b` stably (each `at[d]` ends
/// at its bucket's end).
#[inline(always)]
fn scatter<K: Key, const N: usize>(
    a: &[K],
    b: &mut [K],
    at: &mut [u32; N],
    buckets: usize,
    digit: impl Fn(K) -> usize,
) {
    // Running sums (`at[0]` is 0): bucket d's start in `at[d]`.
    let mut sum = 0;
    for x in at[..=buckets].iter_mut() {
        sum += *x;
        *x = sum;
    }
    for &k in a.iter() {
        let d = digit(k) & (N - 2);
        b[at[d] as usize] = k;
        at[d] += 1;
    }
}

/// Sorts `u64` keys ascending, given that keys equal in their bits from
/// `low` up already stand in ascending order in `keys` (e.g. their low bits
/// are their place: the dictionary's occurrences; or, for equal high bits,
/// the order a stable sort by the high bits alone would give): a
/// least-significant-digit radix sort of the bits from `low` up below the
/// highest where keys differ, in as few passes of at most [`DIGIT_BITS_MAX`] bits as their
/// range needs (digits of equal width), every pass's counters filled in one
/// loop, a pass skipped where all keys share its digit. Each pass is
/// stable, so the result is the one ascending order of the keys (or, for
/// keys equal from `low` up, their order in `keys`). `tmp` is the second
/// buffer (any contents, replaced when shorter than `keys`, truncated when
/// longer); the result is in `keys`.
///
/// For many keys over a wide range this is ~3 scatters a key where
/// [`sort_msd`] makes about as many levels plus their small buckets'
/// comparison sorts (round 12, docs/bench/round12-seal10.md).
pub(crate) fn sort_lsd_above(keys: &mut Vec<u64>, tmp: &mut Vec<u64>, low: u32) {
    assert!(low < 64, "some bits above `low`");
    let n = keys.len();
    if n < 2 {
        return;
    }
    // Keys share their bits from `low + w` up: only the `w` below matter.
    let first = keys[0];
    let diff = keys.iter().fold(0u64, |acc, &k| acc | (k ^ first)) >> low;
    let w = 64 - diff.leading_zeros();
    if w == 0 {
        return; // equal from `low` up: in order already
    }
    let passes = w.div_ceil(DIGIT_BITS_MAX);
    let d = w.div_ceil(passes);
    match passes {
        1 => lsd_passes::<1>(keys, tmp, low, d),
        2 => lsd_passes::<2>(keys, tmp, low, d),
        3 => lsd_passes::<3>(keys, tmp, low, d),
        4 => lsd_passes::<4>(keys, tmp, low, d),
        5 => lsd_passes::<5>(keys, tmp, low, d),
        _ => lsd_passes::<6>(keys, tmp, low, d),
    }
}

/// `tmp` made `n` keys long for a pass's scatter, whose every slot is
/// written before it is read: cut where it is longer, else a fresh
/// `vec!` of zeros (`calloc`: fresh pages, no memset, where `resize`
/// would write them).
fn scatter_scratch(tmp: &mut Vec<u64>, n: usize) {
    if tmp.len() < n {
        *tmp = vec![0; n];
    } else {
        tmp.truncate(n);
    }
}

/// [`sort_lsd_above`] in `P` passes of `d` bits of `k >> low`.
fn lsd_passes<const P: usize>(keys: &mut Vec<u64>, tmp: &mut Vec<u64>, low: u32, d: u32) {
    const _: () = assert!(6 * DIGIT_BITS_MAX >= 64);
    debug_assert!(d <= DIGIT_BITS_MAX && P as u32 * d < 64 + DIGIT_BITS_MAX);
    let n = keys.len();
    // At most RADIX digits (the `& (RADIX - 1)` below is a no-op the
    // compiler uses to drop the counters' bounds checks).
    let mask = ((1u64 << d) - 1) as usize;
    // u32: at most 3 * 2^30 occurrences (a partition's records' addresses).
    assert!(n <= u32::MAX as usize, "at most 2^32 - 1 keys");
    let mut counts = vec![[0u32; RADIX]; P];
    for &k in keys.iter() {
        let mut v = k >> low;
        for c in counts.iter_mut() {
            c[v as usize & mask & (RADIX - 1)] += 1;
            v >>= d;
        }
    }
    scatter_scratch(tmp, n);
    for (p, c) in counts.iter_mut().enumerate() {
        let shift = low + p as u32 * d;
        if c[(keys[0] >> shift) as usize & mask & (RADIX - 1)] as usize == n {
            continue; // one digit: the pass would not move a key
        }
        let mut at = 0u32;
        for x in c[..=mask].iter_mut() {
            (*x, at) = (at, at + *x);
        }
        for &k in keys.iter() {
            let g = (k >> shift) as usize & mask & (RADIX - 1);
            tmp[c[g] as usize] = k;
            c[g] += 1;
        }
        std::mem::swap(keys, tmp);
    }
}

/// The digits of an IPv4 dictionary key's address (its bits 32..64), each
/// `(shift, width)`: 11, 11 and 10 bits, so each digit's counters are at
/// most [`RADIX`] and the digits' positions are constants.
const ADDR_DIGITS: [(u32, u32); 3] = [(32, 11), (43, 11), (54, 10)];

/// IPv4 dictionary keys `address << 32 | low` (the low bits ascending in
/// the order the keys are added: their place) with the counts of their
/// address's two low digits ([`ADDR_DIGITS`]) and the bits all keys share,
/// kept as the keys are added: [`AddrKeys::into_sorted`] needs no counting
/// pass over the keys (but where the top digit differs) and no pass for
/// the bits where they differ (a digit whose keys all share it is skipped,
/// as [`sort_lsd_above`] skips it). The keys change only through
/// [`AddrKeys::push`] and [`AddrKeys::extend`], which count them, so the
/// counts are always those of `keys`.
pub(crate) struct AddrKeys {
    keys: Vec<u64>,
    /// `counts[j][d]`: keys whose digit `j` is `d` (the third counted in
    /// [`AddrKeys::into_sorted`] where needed).
    counts: Box<[[u32; RADIX]; 3]>,
    /// Every key or'ed together and and'ed together: the bits where they
    /// differ are `or ^ and`.
    or: u64,
    and: u64,
}

/// Digit `j` of `k` ([`ADDR_DIGITS`]); below [`RADIX`] (the mask is a no-op
/// the compiler uses to drop the counters' bounds checks).
#[inline(always)]
fn addr_digit<const J: usize>(k: u64) -> usize {
    let (shift, width) = ADDR_DIGITS[J];
    (k >> shift) as usize & ((1 << width) - 1) & (RADIX - 1)
}

impl AddrKeys {
    /// No keys, room for `n`.
    pub(crate) fn with_capacity(n: usize) -> AddrKeys {
        AddrKeys {
            keys: Vec::with_capacity(n),
            // `vec!` of zeros is `calloc`: no memset for fresh pages.
            counts: vec![[0u32; RADIX]; 3]
                .into_boxed_slice()
                .try_into()
                .expect("three digits"),
            or: 0,
            and: u64::MAX,
        }
    }

    #[inline(always)]
    fn count(counts: &mut [[u32; RADIX]; 3], k: u64) {
        counts[0][addr_digit::<0>(k)] += 1;
        counts[1][addr_digit::<1>(k)] += 1;
    }

    /// Adds `k` (its low bits above those of every key added before).
    #[inline(always)]
    pub(crate) fn push(&mut self, k: u64) {
        Self::count(&mut self.counts, k);
        self.or |= k;
        self.and &= k;
        self.keys.push(k);
    }

    /// Adds the keys of `it` in order (as [`Self::push`] each; an exact-size
    /// iterator is appended without a capacity test a key).
    #[inline(always)]
    pub(crate) fn extend(&mut self, it: impl Iterator<Item = u64>) {
        let counts = &mut *self.counts;
        let (mut or, mut and) = (self.or, self.and);
        // `map` as measured (`Map` of a slice iterator is an exact-size
        // extend), not `inspect`.
        #[allow(clippy::manual_inspect)]
        self.keys.extend(it.map(|k| {
            Self::count(counts, k);
            or |= k;
            and &= k;
            k
        }));
        (self.or, self.and) = (or, and);
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys in the order they were added.
    pub(crate) fn into_keys(self) -> Vec<u64> {
        self.keys
    }

    /// The keys sorted by address, keys of one address in the order they
    /// were added: the order of `sort_unstable` when the low bits ascend
    /// (as [`sort_lsd_above`] with `low` 32). Least significant digit
    /// first, one stable scatter a digit on which the keys differ. `tmp`:
    /// the scatters' second buffer, as [`sort_lsd_above`]'s.
    pub(crate) fn into_sorted(self, tmp: &mut Vec<u64>) -> Vec<u64> {
        let AddrKeys {
            mut keys,
            mut counts,
            or,
            and,
        } = self;
        let n = keys.len();
        // u32 counters: at most 3 * 2^30 occurrences (a partition's
        // records' addresses).
        assert!(n <= u32::MAX as usize, "at most 2^32 - 1 keys");
        let differ = or ^ and;
        if n < 2 || differ >> ADDR_DIGITS[0].0 == 0 {
            return keys; // one address: in order already
        }
        scatter_scratch(tmp, n);
        if differ >> ADDR_DIGITS[0].0 & ((1 << ADDR_DIGITS[0].1) - 1) != 0 {
            addr_pass::<0>(&mut keys, tmp, &mut counts[0]);
        }
        if differ >> ADDR_DIGITS[1].0 & ((1 << ADDR_DIGITS[1].1) - 1) != 0 {
            addr_pass::<1>(&mut keys, tmp, &mut counts[1]);
        }
        if differ >> ADDR_DIGITS[2].0 != 0 {
            let c = &mut counts[2];
            for &k in keys.iter() {
                c[addr_digit::<2>(k)] += 1;
            }
            addr_pass::<2>(&mut keys, tmp, c);
        }
        keys
    }
}

/// One stable scatter of `keys` into `tmp` (as long) by digit `J`, whose
/// counts are `c`, then the two swapped.
#[inline(always)]
fn addr_pass<const J: usize>(keys: &mut Vec<u64>, tmp: &mut Vec<u64>, c: &mut [u32; RADIX]) {
    let mut at = 0u32;
    for x in c[..1 << ADDR_DIGITS[J].1].iter_mut() {
        (*x, at) = (at, at + *x);
    }
    // Two keys a step (the second's counter read after the first's is
    // moved on: they may be the same).
    let mut pairs = keys.chunks_exact(2);
    for p in &mut pairs {
        let (k0, k1) = (p[0], p[1]);
        let g0 = addr_digit::<J>(k0);
        let at0 = c[g0];
        c[g0] = at0 + 1;
        tmp[at0 as usize] = k0;
        let g1 = addr_digit::<J>(k1);
        let at1 = c[g1];
        c[g1] = at1 + 1;
        tmp[at1 as usize] = k1;
    }
    for &k in pairs.remainder() {
        let g = addr_digit::<J>(k);
        tmp[c[g] as usize] = k;
        c[g] += 1;
    }
    std::mem::swap(keys, tmp);
}

/// Buckets of at most this many keys are sorted by insertion in place (most
/// of [`sort_msd`]'s buckets hold two or three keys: a call of the library
/// sort costs more than the sort).
const INSERTION_MAX: usize = 8;

/// A key not below the one before it is left where it is (no store): the
/// usual case, where a bucket holds one mapping's states (the same prefix,
/// slots ascending).
fn insertion_sort<K: Copy + Ord>(v: &mut [K]) {
    for i in 1..v.len() {
        let k = v[i];
        if v[i - 1] <= k {
            continue;
        }
        let mut j = i - 1;
        v[i] = v[j];
        while j > 0 && v[j - 1] > k {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enough keys for the widest top digit (the wide counters, ~34 000
    /// keys as bigstore's 4 M-mapping partitions' logs): the
    /// counted sort gives the library sort's order, with the narrow
    /// counters too where the digit is cut to fit them.
    #[test]
    fn counted_sort_with_a_wide_top_digit() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let n = 34_000usize;
        let low = usize::BITS - n.leading_zeros();
        let keys: Vec<u128> = (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // 40 bits of prefix above the place.
                u128::from(x >> 24) << low | i as u128
            })
            .collect();
        let mut expect = keys.clone();
        expect.sort_unstable();
        let top = keys
            .iter()
            .fold(0u128, |acc, &k| acc | (k ^ keys[0]))
            .bit_len();
        let (shift, width) = msd_top_digit(n, top, low).expect("a level");
        assert_eq!(width, TOP_DIGIT_BITS_MAX);
        let mut c = TopCounts::<TOP_COUNTS_WIDE>::new(shift, width);
        keys.iter().for_each(|&k| c.see(k));
        let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
        sort_msd_counted(&mut a, &mut b, &mut c, low);
        assert_eq!(b, expect);
        let narrow = TOP_NARROW_BITS_MAX;
        let mut c = TopCounts::<TOP_COUNTS_NARROW>::new(shift + width - narrow, narrow);
        keys.iter().for_each(|&k| c.see(k));
        let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
        sort_msd_counted(&mut a, &mut b, &mut c, low);
        assert_eq!(b, expect);
    }

    /// Sorts fully, for buckets small and large (a skewed top digit
    /// recurses to the next one).
    #[test]
    fn msd_sorts() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (n, top, skew) in [
            (10, 40, false),
            (5000, 40, false),
            (60_000, 40, false),
            (60_000, 70, true),
            (9000, 5, false),
        ] {
            let keys: Vec<u128> = (0..n)
                .map(|_| {
                    let k = u128::from(next()) << 64 | u128::from(next());
                    let k = k & ((1u128 << top) - 1);
                    // Skewed: most keys share the top 20 bits.
                    if skew && next() % 8 != 0 {
                        k & ((1u128 << (top - 20)) - 1)
                    } else {
                        k
                    }
                })
                .collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
            sort_msd(&mut a, &mut b, top, 0);
            assert_eq!(b, expect, "n {n} top {top}");
        }
    }

    /// The proptests' clustered high parts: each pick a base (of a few)
    /// plus an offset within `spread`, its `repeat_mask` bits cleared so
    /// that values repeat.
    fn clustered_highs(
        bases: &[u64],
        picks: &[(usize, u64)],
        spread: u64,
        repeat_mask: u64,
    ) -> Vec<u64> {
        picks
            .iter()
            .map(|&(c, off)| bases[c % bases.len()].wrapping_add(off & spread & !repeat_mask))
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Sorts keys drawn from a few clusters far apart (a field's range
        /// that is not dense: the digit skips the bits the keys share),
        /// with repeats, of any count around the comparison bound (up to three
        /// levels), in
        /// u128 and u64.
        #[test]
        fn msd_sorts_clustered_keys(
            bases in proptest::collection::vec(proptest::prelude::any::<u128>(), 1..4),
            spread_bits in 0u32..40,
            picks in proptest::collection::vec((0usize..4, proptest::prelude::any::<u64>()), 0..2000),
            dup_every in 0usize..8,
        ) {
            let spread = (1u128 << spread_bits) - 1;
            let mut keys: Vec<u128> = picks
                .iter()
                .map(|&(c, off)| bases[c % bases.len()].wrapping_add(u128::from(off) & spread))
                .collect();
            if dup_every > 0 {
                for i in (dup_every..keys.len()).step_by(dup_every + 1) {
                    keys[i] = keys[i - dup_every];
                }
            }
            let n = keys.len();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
            sort_msd(&mut a, &mut b, 128, 0);
            proptest::prop_assert_eq!(&b, &expect);
            let keys: Vec<u64> = keys.iter().map(|&k| (k >> 40) as u64 ^ k as u64).collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let (mut a, mut b) = (keys.clone(), vec![0u64; n]);
            sort_msd(&mut a, &mut b, 64, 0);
            proptest::prop_assert_eq!(&b, &expect);
        }

        /// With `low`: keys whose low bits are their place (ascending in
        /// the input, as the seal's slots and the dictionary's occurrences),
        /// high parts from a few clusters with many repeats; the same order
        /// as the library sort, in u128 and u64.
        #[test]
        fn msd_with_ordered_low_bits_sorts(
            bases in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..4),
            spread_bits in 0u32..30,
            picks in proptest::collection::vec((0usize..4, proptest::prelude::any::<u64>()), 0..3000),
            repeat_mask in 0u64..16,
            low_extra in 0u32..8,
            shift_hi in 0u32..40,
        ) {
            let n = picks.len();
            let low = (usize::BITS - n.leading_zeros()) + low_extra;
            let spread = (1u64 << spread_bits) - 1;
            let highs = clustered_highs(&bases, &picks, spread, repeat_mask);
            let keys: Vec<u128> = highs
                .iter()
                .enumerate()
                .map(|(i, &h)| u128::from(h) << (low + shift_hi) | i as u128)
                .collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
            sort_msd(&mut a, &mut b, 128, low + shift_hi);
            proptest::prop_assert_eq!(&b, &expect);
            let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
            sort_msd(&mut a, &mut b, 128, low);
            proptest::prop_assert_eq!(&b, &expect);
            let keys: Vec<u64> = highs
                .iter()
                .enumerate()
                .map(|(i, &h)| (h >> low) << low | i as u64)
                .collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let (mut a, mut b) = (keys.clone(), vec![0u64; n]);
            sort_msd(&mut a, &mut b, 64, low);
            proptest::prop_assert_eq!(&b, &expect);
        }

        /// `sort_msd_counted` (the top digit counted as the keys are made,
        /// its position from the highest bit where they differ, as the
        /// seal's exact ranges give it) sorts as `sort_msd` and the library
        /// sort: keys whose low bits ascend (their place), high parts from a
        /// few clusters, any count around the comparison bound.
        #[test]
        fn counted_sorts_as_sort_msd(
            bases in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..4),
            spread_bits in 0u32..40,
            picks in proptest::collection::vec((0usize..4, proptest::prelude::any::<u64>()), 0..3000),
            repeat_mask in 0u64..16,
            shift_hi in 0u32..50,
        ) {
            let n = picks.len();
            let low = usize::BITS - n.leading_zeros();
            let spread = (1u64 << spread_bits) - 1;
            let keys: Vec<u128> = clustered_highs(&bases, &picks, spread, repeat_mask)
                .into_iter()
                .enumerate()
                .map(|(i, h)| u128::from(h) << (low + shift_hi) | i as u128)
                .collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let top = keys
                .iter()
                .fold(0u128, |acc, &k| acc | (k ^ keys.first().copied().unwrap_or(0)))
                .bit_len();
            let mut want = vec![0u128; n];
            sort_msd(&mut keys.clone(), &mut want, 128, low);
            proptest::prop_assert_eq!(&want, &expect);
            for low in [low, low + shift_hi] {
                let got = match msd_top_digit(n, top, low) {
                    Some((shift, width)) => {
                        let mut c = TopCounts::<TOP_COUNTS_WIDE>::new(shift, width);
                        keys.iter().for_each(|&k| c.see(k));
                        let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
                        sort_msd_counted(&mut a, &mut b, &mut c, low);
                        b
                    }
                    None => {
                        let (mut a, mut b) = (keys.clone(), vec![0u128; n]);
                        sort_msd(&mut a, &mut b, top, low);
                        b
                    }
                };
                proptest::prop_assert_eq!(&got, &expect);
            }
        }

        /// `sort_lsd_above` gives the library sort's order for keys whose
        /// low bits ascend in the input (their place, as the dictionary's
        /// occurrences), high parts from a few clusters of any spread
        /// (every pass count, skipped passes, repeats), any `low`, and
        /// scratch of any length; a second sort reuses the scratch.
        #[test]
        fn lsd_sorts_as_the_library_sort(
            bases in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..4),
            spread_bits in 0u32..64,
            picks in proptest::collection::vec((0usize..4, proptest::prelude::any::<u64>()), 0..3000),
            repeat_mask in 0u64..16,
            low_extra in 0u32..20,
            tmp_len in 0usize..4000,
        ) {
            let n = picks.len();
            let low = ((usize::BITS - n.leading_zeros()) + low_extra).min(63);
            let spread = if spread_bits == 0 { 0 } else { u64::MAX >> (64 - spread_bits) };
            let keys: Vec<u64> = clustered_highs(&bases, &picks, spread, repeat_mask)
                .into_iter()
                .enumerate()
                .map(|(i, h)| (h >> low) << low | i as u64)
                .collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let (mut a, mut tmp) = (keys.clone(), vec![7u64; tmp_len]);
            sort_lsd_above(&mut a, &mut tmp, low);
            proptest::prop_assert_eq!(&a, &expect);
            let mut b = keys.clone();
            sort_lsd_above(&mut b, &mut tmp, low);
            proptest::prop_assert_eq!(&b, &expect);
        }

        /// `AddrKeys::into_sorted` gives the library sort's order for
        /// dictionary keys (address above place, the places ascending),
        /// addresses from a few clusters of any spread (each digit varying
        /// or not, the top one too, repeats), added by `push` and `extend`
        /// in any mix, and scratch of any length.
        #[test]
        fn addr_keys_sort_as_the_library_sort(
            bases in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..4),
            spread_bits in 0u32..=32,
            picks in proptest::collection::vec((0usize..4, proptest::prelude::any::<u64>()), 0..3000),
            repeat_mask in 0u64..16,
            pushed in 0usize..3000,
            tmp_len in 0usize..4000,
        ) {
            let spread = if spread_bits == 0 { 0 } else { u64::MAX >> (64 - spread_bits) };
            let bases: Vec<u64> = bases.iter().map(|&b| u64::from(b)).collect();
            let keys: Vec<u64> = clustered_highs(&bases, &picks, spread, repeat_mask)
                .into_iter()
                .enumerate()
                .map(|(i, a)| (a & 0xffff_ffff) << 32 | i as u64)
                .collect();
            let mut expect = keys.clone();
            expect.sort_unstable();
            let mut a = AddrKeys::with_capacity(0);
            let split = pushed.min(keys.len());
            for &k in &keys[..split] {
                a.push(k);
            }
            a.extend(keys[split..].iter().copied());
            proptest::prop_assert_eq!(a.len(), keys.len());
            let mut tmp = vec![7u64; tmp_len];
            let got = a.into_sorted(&mut tmp);
            proptest::prop_assert_eq!(&got, &expect);
        }
    }
}
