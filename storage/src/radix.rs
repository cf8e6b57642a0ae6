//! Least-significant-digit radix sort of integer keys over a range of their
//! bits, for the seal's index and the v2 address dictionary: ~10
//! instructions per key and digit against ~250 per key for a comparison
//! sort of the same entries at a partition's sizes.

/// Digit width: 2^11 counters (8 KiB) per pass, whose write positions stay
/// in L1/L2 while keys are scattered.
const DIGIT_BITS_MAX: u32 = 11;
const RADIX: usize = 1 << DIGIT_BITS_MAX;

/// An unsigned integer key.
pub(crate) trait Key: Copy + Default {
    /// `(self >> shift) as usize` (shift below the type's width).
    fn shifted(self, shift: u32) -> usize;
}

impl Key for u64 {
    #[inline]
    fn shifted(self, shift: u32) -> usize {
        (self >> shift) as usize
    }
}

impl Key for u128 {
    #[inline]
    fn shifted(self, shift: u32) -> usize {
        (self >> shift) as usize
    }
}

/// Sorts `keys` by their bits `lo..lo + bits`, stably (keys equal there keep
/// their order): least significant digit first, one counting pass for all
/// digits, a digit every key shares skipped. `tmp` is scratch (its contents
/// are lost; kept by callers so its pages are not faulted in every time).
pub(crate) fn sort_bits<K: Key>(keys: &mut Vec<K>, tmp: &mut Vec<K>, lo: u32, bits: u32) {
    tmp.clear();
    tmp.resize(keys.len(), K::default());
    if sort_bits_in(keys, tmp, lo, bits) {
        std::mem::swap(keys, tmp);
    }
}

/// [`sort_bits`] between two slices of the same length: the keys in `a`,
/// scratch `b`. Returns whether the sorted keys ended in `b` (each pass
/// moves them from one to the other).
pub(crate) fn sort_bits_in<K: Key>(a: &mut [K], b: &mut [K], lo: u32, bits: u32) -> bool {
    let n = a.len();
    assert_eq!(n, b.len(), "scratch as long as the keys");
    if bits == 0 || n < 2 {
        return false;
    }
    assert!(n <= u32::MAX as usize, "at most 2^32 - 1 keys");
    let passes = bits.div_ceil(DIGIT_BITS_MAX);
    let width = bits.div_ceil(passes);
    // Digit p is bits lo + p * width .. (the last one may be narrower):
    // its shift and mask.
    let digits: Vec<(u32, usize)> = (0..passes)
        .map(|p| (lo + p * width, (1usize << width.min(bits - p * width)) - 1))
        .collect();
    let mut counts = vec![[0u32; RADIX]; passes as usize];
    for &k in a.iter() {
        for (c, &(shift, mask)) in counts.iter_mut().zip(&digits) {
            c[k.shifted(shift) & mask & (RADIX - 1)] += 1;
        }
    }
    let (mut from, mut to) = (a, b);
    let mut in_b = false;
    for (c, &(shift, mask)) in counts.iter_mut().zip(&digits) {
        if c.iter().any(|&x| x as usize == n) {
            continue;
        }
        let mut sum = 0u32;
        for x in c.iter_mut() {
            let t = *x;
            *x = sum;
            sum += t;
        }
        for &k in from.iter() {
            let d = k.shifted(shift) & mask & (RADIX - 1);
            to[c[d] as usize] = k;
            c[d] += 1;
        }
        std::mem::swap(&mut from, &mut to);
        in_b = !in_b;
    }
    in_b
}

/// Buckets of at most this many keys are sorted by comparison in
/// [`sort_msd`] (they fit in L1: 64 KiB of u128s).
const MSD_COMPARE_MAX: usize = 4096;

/// Sorts the keys of `a` (all below 2^`top`) ascending into `b` (as long;
/// `a` is scratch afterwards): one stable scatter on the digit just below
/// bit `top`, then each bucket sorted by comparison while it is small (in
/// cache), else by the next digit the same way. One pass over memory where
/// [`sort_bits`] makes one per digit.
pub(crate) fn sort_msd<K: Key + Ord>(a: &mut [K], b: &mut [K], top: u32) {
    let n = a.len();
    assert_eq!(n, b.len(), "scratch as long as the keys");
    if n <= MSD_COMPARE_MAX || top == 0 {
        b.copy_from_slice(a);
        b.sort_unstable();
        return;
    }
    let width = top.min(DIGIT_BITS_MAX);
    let shift = top - width;
    let mask = (1usize << width) - 1;
    let mut starts = [0u32; RADIX + 1];
    for &k in a.iter() {
        starts[(k.shifted(shift) & mask & (RADIX - 1)) + 1] += 1;
    }
    for d in 0..RADIX {
        starts[d + 1] += starts[d];
    }
    let mut next = starts;
    for &k in a.iter() {
        let d = k.shifted(shift) & mask & (RADIX - 1);
        b[next[d] as usize] = k;
        next[d] += 1;
    }
    for d in 0..RADIX {
        let (from, to) = (starts[d] as usize, starts[d + 1] as usize);
        if to - from < 2 {
            continue;
        }
        let bucket = &mut b[from..to];
        if bucket.len() <= MSD_COMPARE_MAX || shift == 0 {
            bucket.sort_unstable();
        } else {
            let spare = &mut a[from..to];
            spare.copy_from_slice(bucket);
            sort_msd(spare, bucket, shift);
        }
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
            sort_msd(&mut a, &mut b, top);
            assert_eq!(b, expect, "n {n} top {top}");
        }
    }

    /// Orders by the chosen bits only and keeps the order of keys equal
    /// there, for every width and digit split, u64 and u128.
    #[test]
    fn a_stable_sort_of_the_bits() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (lo, bits) in [
            (0, 1),
            (3, 5),
            (12, 11),
            (12, 12),
            (20, 23),
            (7, 100),
            (16, 112),
        ] {
            let keys: Vec<u128> = (0..3000)
                .map(|_| u128::from(next()) << 64 | u128::from(next() % 4))
                .collect();
            let field = |k: u128| (k >> lo) & ((1u128 << bits) - 1);
            let mut expect = keys.clone();
            expect.sort_by_key(|&k| field(k));
            let (mut got, mut tmp) = (keys.clone(), Vec::new());
            sort_bits(&mut got, &mut tmp, lo, bits);
            assert_eq!(got, expect, "u128 lo {lo} bits {bits}");
            if lo + bits <= 64 {
                let keys: Vec<u64> = keys.iter().map(|&k| (k >> 62) as u64).collect();
                let field = |k: u64| (k >> lo) & ((1u64 << bits) - 1);
                let mut expect = keys.clone();
                expect.sort_by_key(|&k| field(k));
                let (mut got, mut tmp) = (keys.clone(), Vec::new());
                sort_bits(&mut got, &mut tmp, lo, bits);
                assert_eq!(got, expect, "u64 lo {lo} bits {bits}");
            }
        }
    }
}
