//! The seal's column scans built for CPU features detected at run time
//! (the release target is baseline x86-64: SSE2, no AVX2), as
//! [`crate::hwcrc`] does for the CRC: each function here has a portable
//! body for the baseline and a `#[target_feature]` body, plain safe Rust
//! written so that LLVM vectorizes it with the wider instructions, called
//! only after `is_x86_feature_detected!` found the feature (a load and a
//! test a call, the detection itself cached by std). The property tests
//! compare both bodies with the library on the same values.
//!
//! [`min_max`]: a sealed block's column of 512 values took ~5 instructions
//! a value in the baseline (a load, two compares, two `cmov`s; 184.6 M of
//! the 4 406.5 M of `natrec-bigstore`'s 4 M seals). With AVX2 four values
//! take a `vpxor` (unsigned order as signed), two `vpcmpgtq` and two
//! `vblendvpd`. [`min_max_sum`]: the same with the sum of a function of
//! each value (the varint sizes), in two passes with AVX2 and one without.
//!
//! [`v3!`](v3): the seal's hot functions in two versions through the
//! `multiversion` crate: one compiled for x86-64-v3's integer features
//! (AVX2, BMI1, BMI2, LZCNT, MOVBE, POPCNT), called where the CPU has them
//! (the crate detects them on the first call and keeps its choice in a
//! static: then a load and a call a call), and the baseline's, called
//! elsewhere. Used where the second version pays (callgrind of bigstore
//! 4 M's seals, round21-mv21.md): the encoder's `put_col` (with
//! `min_max_sum` inlined), `bounds_reject`, `packed_const` and
//! `encode_file_split` (the dictionary), and the index keys'
//! `keys_counted_sorted`, `halves_keys_counted` and `sort_msd_counted`:
//! 4 140.1 M → 4 084.0 M instructions (−1.4 %). Not for `encode_blocks`,
//! `dict_size_below`, `walk_occurrences`, `reduce_with` or `Ranges::see`,
//! whose x86-64-v3 versions ran as many instructions or more.
//!
//! `lib.rs` allows `unsafe_code` for this module: its two `unsafe` blocks
//! (and one in a test) are calls of [`min_max_avx2`], each after the CPU
//! was checked to have AVX2. The functions [`v3!`](v3) defines allow it for
//! the `multiversion` crate's dispatch (its calls of the
//! `#[target_feature]` copy after its detection), which has no `unsafe` of
//! ours.
#[cfg(test)]
thread_local! {
    /// Tests: the functions [`v3!`](v3) defines run their baseline versions
    /// on this thread, where the CPU has x86-64-v3 too.
    static FORCE_BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Tests: whether [`baseline`] is forcing the baseline versions on this
/// thread.
#[cfg(test)]
pub(crate) fn forced_baseline() -> bool {
    FORCE_BASELINE.get()
}

/// Tests: runs `f` with the baseline versions of every [`v3!`](v3) function
/// on this thread, then as before.
#[cfg(test)]
pub(crate) fn baseline<R>(f: impl FnOnce() -> R) -> R {
    let was = FORCE_BASELINE.replace(true);
    let r = f();
    FORCE_BASELINE.set(was);
    r
}

/// Defines `$name` as a call of `$body` in two versions, through
/// `multiversion`'s `#[multiversion]`: one compiled with x86-64-v3's
/// integer features, where the CPU has them, else the baseline's. BMI2's
/// `shlx`/`shrx` shift by a register without first copying the count into
/// `cl`, LZCNT counts bits without the baseline's `bsr` and its zero test,
/// MOVBE loads a big-endian word in one instruction, AVX2 widens what LLVM
/// vectorizes. `$name` is never inlined (one dispatch a call: keep such
/// functions coarse, a column or a block, not a value).
///
/// The body is `#[inline(always)]`, and so must be every function it calls
/// that should be compiled in both versions: a function that is not
/// inlined is compiled once, for the baseline, unless it is itself defined
/// by this macro. (A function that was inlined because it had one caller
/// now has two, the body's two copies, and may no longer be: the seal's
/// helpers that were are marked `#[inline(always)]`. Core's iterator folds
/// behind `Vec::extend` and `[T; N]::map` are not inlined either way and
/// stay the baseline's: written as loops of `push`es or stores they ran
/// more instructions, round21-mv21.md.) Both versions give the same
/// results: the same safe source, no floating point, no feature-specific
/// intrinsics; the property tests run the reduce and the encoder under
/// [`baseline`] and without and compare.
///
/// In tests, under [`baseline`], each version calls a third copy of the
/// body, compiled for the baseline and never inlined (so never into the v3
/// version).
///
/// Generic parameters go in brackets after the name (`fn f[T: Copy](..)`),
/// their arguments likewise after the body's name (`=> f_body[T];`).
macro_rules! v3 {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $([$($gp:tt)*])? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        => $body:ident $([$($ga:tt)*])?;
    ) => {
        $(#[$attr])*
        #[multiversion::multiversion(targets("x86_64+avx2+bmi1+bmi2+lzcnt+movbe+popcnt"))]
        #[inline(never)]
        #[allow(unsafe_code, clippy::too_many_arguments)]
        $vis fn $name $(<$($gp)*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(test)]
            if $crate::simd::forced_baseline() {
                #[inline(never)]
                fn baseline $(<$($gp)*>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body $(::<$($ga)*>)? ($($arg),*)
                }
                return baseline $(::<$($ga)*>)? ($($arg),*);
            }
            $body $(::<$($ga)*>)? ($($arg),*)
        }
    };
}
pub(crate) use v3;

/// Lanes of [`min_max_portable`]: independent minima and maxima, so that a
/// value's compares do not wait for the previous value's.
const MIN_MAX_LANES: usize = 4;

/// The least and the largest of `vals` (`u64::MAX` and 0 when empty): with
/// AVX2 where the CPU has it, else [`min_max_portable`] for the baseline.
#[inline]
pub(crate) fn min_max(vals: &[u64]) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `min_max_avx2` only requires the `avx2` target
            // feature, and the CPU has it (checked on the line above). Its
            // body is safe code reading `vals` only.
            return unsafe { min_max_avx2(vals) };
        }
    }
    min_max_portable(vals)
}

/// [`min_max`] and the sum of `size` over `vals`: with AVX2 in two passes
/// ([`min_max_avx2`], then the sum alone), else in one
/// ([`min_max_sum_portable`]: one load a value, not two; the baseline's
/// compares cost more than the second load). The sealed column's varint
/// sizes (`size` a table lookup, which AVX2 would only gather).
// Always: called from the two versions of `put_col` (a function called
// from two places is no longer inlined as one called once was).
#[inline(always)]
pub(crate) fn min_max_sum(vals: &[u64], size: impl Fn(u64) -> usize) -> (u64, u64, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as in `min_max`: the CPU has AVX2, the only
            // requirement; the body is safe code reading `vals` only.
            let (min, max) = unsafe { min_max_avx2(vals) };
            return (min, max, vals.iter().map(|&v| size(v)).sum());
        }
    }
    min_max_sum_portable(vals, size)
}

/// [`min_max`] with AVX2: one value a step, which LLVM's loop vectorizer
/// turns into four-value vectors (the lanes of [`min_max_portable`] it
/// would transpose first). AVX2 compares 64-bit integers as signed only
/// (`vpcmpgtq`), so each value's top bit is flipped (unsigned order is
/// then signed order) and the results flipped back: a `vpxor`, two
/// compares and two blends for four values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn min_max_avx2(vals: &[u64]) -> (u64, u64) {
    const TOP: u64 = 1 << 63;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for &v in vals {
        let x = (v ^ TOP) as i64;
        min = min.min(x);
        max = max.max(x);
    }
    (min as u64 ^ TOP, max as u64 ^ TOP)
}

/// The least and the largest of `vals` (`u64::MAX` and 0 when empty),
/// [`MIN_MAX_LANES`] values a step, each lane's compares without a branch.
#[inline(always)]
fn min_max_portable(vals: &[u64]) -> (u64, u64) {
    // The sum of a constant 0 compiles away.
    let (min, max, _) = min_max_sum_portable(vals, |_| 0);
    (min, max)
}

/// [`min_max_portable`] and the sum of `size` over `vals`, in one pass.
#[inline(always)]
fn min_max_sum_portable(vals: &[u64], size: impl Fn(u64) -> usize) -> (u64, u64, usize) {
    let mut mins = [u64::MAX; MIN_MAX_LANES];
    let mut maxs = [0u64; MIN_MAX_LANES];
    let mut sum = 0usize;
    let mut chunks = vals.chunks_exact(MIN_MAX_LANES);
    for c in &mut chunks {
        for l in 0..MIN_MAX_LANES {
            mins[l] = mins[l].min(c[l]);
            maxs[l] = maxs[l].max(c[l]);
            sum += size(c[l]);
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        mins[l] = mins[l].min(v);
        maxs[l] = maxs[l].max(v);
        sum += size(v);
    }
    let min = mins.iter().fold(u64::MAX, |a, &b| a.min(b));
    let max = maxs.iter().fold(0, |a, &b| a.max(b));
    (min, max, sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The least and largest of `vals` by the library's iterators.
    fn min_max_model(vals: &[u64]) -> (u64, u64) {
        (
            vals.iter().copied().min().unwrap_or(u64::MAX),
            vals.iter().copied().max().unwrap_or(0),
        )
    }

    /// Values whose order as signed differs from their order as unsigned
    /// (the top bit), near the ends and near each other.
    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            0u64..4,
            (u64::MAX - 3)..=u64::MAX,
            ((1u64 << 63) - 2)..((1u64 << 63) + 2),
            0u64..1 << 23,
        ]
    }

    proptest! {
        /// Any length (the lanes' remainder), any values: the portable scan,
        /// the one this CPU runs and the AVX2 one (where the CPU has it)
        /// each give the library's least and largest.
        #[test]
        fn min_max_is_the_librarys(vals in prop::collection::vec(value(), 0..600)) {
            let want = min_max_model(&vals);
            prop_assert_eq!(min_max_portable(&vals), want);
            prop_assert_eq!(min_max(&vals), want);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked on the line above).
                prop_assert_eq!(unsafe { min_max_avx2(&vals) }, want);
            }
        }
    }

    proptest! {
        /// With the sum: the portable pass and the one this CPU runs give
        /// the library's least and largest and the sum of `size` (here a
        /// value's bit length: any function of the value).
        #[test]
        fn min_max_sum_is_the_librarys(vals in prop::collection::vec(value(), 0..600)) {
            let size = |v: u64| (64 - v.leading_zeros()) as usize;
            let (min, max) = min_max_model(&vals);
            let want = (min, max, vals.iter().map(|&v| size(v)).sum::<usize>());
            prop_assert_eq!(min_max_sum_portable(&vals, size), want);
            prop_assert_eq!(min_max_sum(&vals, size), want);
        }
    }

    /// `baseline` forces the baseline versions inside it (nested too) and
    /// lets go after it as before.
    #[test]
    fn baseline_forces_inside_and_lets_go_after() {
        assert!(!forced_baseline());
        baseline(|| {
            assert!(forced_baseline());
            baseline(|| assert!(forced_baseline()));
            assert!(forced_baseline(), "still inside the outer one");
        });
        assert!(!forced_baseline());
    }

    /// The extremes in every position of a short column (every lane, the
    /// remainder): `0` and `u64::MAX`, or `2^63` and `2^63 - 1` (where
    /// signed order would rank the two the other way), among values both
    /// below and above them.
    #[test]
    fn min_max_extremes_anywhere() {
        for n in 1..=40usize {
            for at in 0..n {
                for (lo, hi) in [(0u64, u64::MAX), (1 << 63, (1 << 63) - 1)] {
                    let mut v: Vec<u64> = (0..n as u64)
                        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                        .collect();
                    let mut w = v.clone();
                    v[at] = lo;
                    w[at] = hi;
                    assert_eq!(min_max(&v), min_max_model(&v), "n {n} at {at}");
                    assert_eq!(min_max(&w), min_max_model(&w), "n {n} at {at}");
                }
            }
        }
    }
}
