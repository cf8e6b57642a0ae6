//! Most-significant-digit radix sort of integer keys, for the seal's index
//! and the v2 address dictionary: each level scatters on the digit just
//! below the highest bit where its keys differ, so a field whose range is
//! not dense costs no extra pass (~20-40 instructions per key and level
//! against ~150-250 per key for a comparison sort at a partition's sizes).

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
    } else {
        level::<K, { RADIX + 1 }>(a, b, top - width, width, low);
    }
}

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
        scatter(a, b, &mut at, buckets, |k: K| {
            (k.high() >> s) as usize & mask
        });
    } else {
        scatter(a, b, &mut at, buckets, |k: K| k.shifted(shift) & mask);
    }
    let mut from = 0usize;
    for &end in &at[..buckets] {
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

/// One level of [`sort_msd`]: counts the digits of `a` into `at[d + 1]`,
/// turns them into bucket starts and scatters `a` into `b` stably (each
/// `at[d]` ends at its bucket's end).
#[inline(always)]
fn scatter<K: Key, const N: usize>(
    a: &[K],
    b: &mut [K],
    at: &mut [u32; N],
    buckets: usize,
    digit: impl Fn(K) -> usize,
) {
    for &k in a.iter() {
        at[(digit(k) & (N - 2)) + 1] += 1;
    }
    for d in 0..buckets {
        at[d + 1] += at[d];
    }
    for &k in a.iter() {
        let d = digit(k) & (N - 2);
        b[at[d] as usize] = k;
        at[d] += 1;
    }
}

/// Buckets of at most this many keys are sorted by insertion in place (most
/// of [`sort_msd`]'s buckets hold two or three keys: a call of the library
/// sort costs more than the sort).
const INSERTION_MAX: usize = 8;

fn insertion_sort<K: Copy + Ord>(v: &mut [K]) {
    for i in 1..v.len() {
        let k = v[i];
        let mut j = i;
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
            let highs: Vec<u64> = picks
                .iter()
                .map(|&(c, off)| bases[c % bases.len()].wrapping_add(off & spread & !repeat_mask))
                .collect();
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
    }
}
