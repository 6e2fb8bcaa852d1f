//! A vectorisable float32 `tanh`, and the plain one beside it as the oracle.
//!
//! libm's `tanhf` is a scalar call (~10 ns); in a recurrent layer it runs once per hidden
//! unit per step, which made it the largest cost of a medium-sized forward. This version
//! is branch-free, so LLVM turns a loop over a slice into AVX-512 / AVX2 code (selected at
//! run time) or SSE2 code (the baseline):
//!
//! - `|x| < 0.3`: the odd Taylor polynomial to `x^11` (relative error < 1e-8 there);
//! - otherwise `sign(x) * (1 - e) / (1 + e)` with `e = exp(-2|x|)`, `|x|` clamped to 9
//!   (`tanh(9)` rounds to 1 in f32), and `exp` by Cody-Waite range reduction and a
//!   degree-7 polynomial.
//!
//! Maximum error against f64 `tanh` over the whole f32 range is a few 1e-8 (see the
//! tests), far inside torch.testing.assert_close's float32 tolerance (atol 1e-5,
//! rtol 1.3e-6).

/// `a * b + c` in f32, fused in the versions compiled with FMA (this file's own copy of
/// `kernels::madd`, so that `element.rs` can use the tanh without a circle of imports).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `tanh(x)` in f32 without branches or libm calls (the portable version, two
/// operations for each multiply-add).
#[cfg(test)]
fn tanh_f32(x: f32) -> f32 {
    tanh_f32_with::<false>(x)
}

/// `tanh(x)` with the multiply-adds fused (`FMA`, for the versions compiled with FMA)
/// or not. The polynomials are evaluated in Estrin's scheme rather than Horner's: the
/// same terms in a shorter dependency chain, which is what a recurrence waits on.
#[inline(always)]
pub(crate) fn tanh_f32_with<const FMA: bool>(x: f32) -> f32 {
    let fma = madd::<FMA>;
    let a = x.abs().min(9.0);

    // Small |x|: x + x^3 * (c3 + c5 x^2 + c7 x^4 + c9 x^6 + c11 x^8).
    let a2 = a * a;
    let a4 = a2 * a2;
    let c35 = fma(a2, 2.0 / 15.0, -1.0 / 3.0);
    let c79 = fma(a2, 62.0 / 2835.0, -17.0 / 315.0);
    let c3_9 = fma(a4, c79, c35);
    let c3_11 = fma(a4 * a4, -1382.0 / 155925.0, c3_9);
    let poly = fma(a * a2, c3_11, a);

    // Larger |x|: e = exp(-2a) = 2^n * exp(r), n in [-26, 0].
    let (p, n_bits) = exp_reduced::<FMA>(-2.0 * a);
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    let e = p * scale;
    let large = (1.0 - e) / (1.0 + e);

    let t = if a < 0.3 { poly } else { large };
    if x.is_nan() {
        x
    } else {
        t.copysign(x)
    }
}

/// `exp(z) = 2^n · p` by Cody-Waite range reduction: `n = round(z / ln 2)`, `r = z - n ln
/// 2` in `[-ln2/2, ln2/2]` (ln 2 in two parts), and `p = exp(r)` by its degree-7 Taylor
/// polynomial in Estrin's scheme. Returns `p` and the bits of `1.5 · 2^23 + n`, whose low
/// bits hold `n` in two's complement: the caller builds `2^n` from them with integer
/// operations only (`(bits + bias) << 23`), which vectorise in any loop, where a
/// float-to-int cast saturates and LLVM scalarises it outside the loop vectoriser.
#[inline(always)]
fn exp_reduced<const FMA: bool>(z: f32) -> (f32, u32) {
    let fma = madd::<FMA>;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to an integer
    let shifted = fma(z, LOG2E, ROUND);
    let n = shifted - ROUND;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let r = fma(-n, LN2_LO, fma(-n, LN2_HI, z));
    // (1 + r) + r^2 (1/2 + r/6) + r^4 ((1/24 + r/120) + r^2 (1/720 + r/5040)).
    let r2 = r * r;
    let p01 = 1.0 + r;
    let p23 = fma(r, 1.0 / 6.0, 0.5);
    let p45 = fma(r, 1.0 / 120.0, 1.0 / 24.0);
    let p67 = fma(r, 1.0 / 5040.0, 1.0 / 720.0);
    let q0 = fma(r2, p23, p01);
    let q1 = fma(r2, p67, p45);
    (fma(r2 * r2, q1, q0), shifted.to_bits())
}

/// The logistic function `1 / (1 + exp(-x))` in f32 without branches or libm calls, as
/// `torch.sigmoid` defines it: `exp` by the same Cody-Waite reduction and degree-7
/// polynomial as [`tanh_f32_with`], over `-x` clamped to `[-87, 89]`, and one division.
/// Below -87 the result has rounded to 1; past 88.72 `exp` overflows to +inf exactly as
/// float32's does, so the result is +0 there as in torch (which matters for special
/// values: `σ(-inf) · inf` is NaN, as `0 · inf` is).
/// About half the work of `0.5 + 0.5 tanh(x / 2)` (one exponential, no second
/// polynomial, no blend), and more accurate for very negative `x`, where the `tanh`
/// form rounds to 0. NaN gives NaN.
#[inline(always)]
pub(crate) fn sigmoid_f32_with<const FMA: bool>(x: f32) -> f32 {
    let z = (-x).clamp(-87.0, 89.0);
    let (p, n_bits) = exp_reduced::<FMA>(z);
    // n is in [-126, 128]: 2^(n-1) has the biased exponent n + 126 in [0, 254] (0 gives
    // +0 at n = -126, where 1 + e rounds to 1 anyway), and p · 2^(n-1) · 2 overflows to
    // +inf just where e^z exceeds the largest float.
    let scale = f32::from_bits(n_bits.wrapping_add(126) << 23);
    let s = 1.0 / (1.0 + (p * scale) * 2.0);
    if x.is_nan() {
        x
    } else {
        s
    }
}

/// The body, inlined into each instruction-set version below: fixed-width chunks (one
/// or two vector registers each), and the remainder padded into one more chunk so that
/// short rows do not fall back to scalar code.
#[inline(always)]
fn tanh_slice_body<const FMA: bool>(xs: &mut [f32]) {
    const W: usize = 16;
    let mut chunks = xs.chunks_exact_mut(W);
    for chunk in &mut chunks {
        for x in chunk {
            *x = tanh_f32_with::<FMA>(*x);
        }
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    if n > 0 {
        // Fixed-trip loops with a condition (not copy_from_slice, which LLVM turns into
        // a memcpy call costing more than the whole chunk).
        let mut buf = [0.0f32; W];
        for (l, b) in buf.iter_mut().enumerate() {
            if l < n {
                *b = rest[l];
            }
        }
        for x in &mut buf {
            *x = tanh_f32_with::<FMA>(*x);
        }
        for (l, &b) in buf.iter().enumerate() {
            if l < n {
                rest[l] = b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn tanh_slice_avx512(xs: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_storeu_ps,
    };
    // Whole 16-lane chunks, then the remainder through one masked load and store (the
    // portable body pads it through a buffer element by element instead).
    let full = xs.len() / 16 * 16;
    let (head, rest) = xs.split_at_mut(full);
    tanh_slice_body::<true>(head);
    let n = rest.len();
    if n > 0 {
        let mask: u16 = (1u16 << n) - 1; // n < 16
        let mut buf = [0.0f32; 16];
        // SAFETY: the mask covers exactly the n elements of `rest`; buf holds 16.
        unsafe {
            _mm512_storeu_ps(buf.as_mut_ptr(), _mm512_maskz_loadu_ps(mask, rest.as_ptr()));
        }
        for x in &mut buf {
            *x = tanh_f32_with::<true>(*x);
        }
        // SAFETY: as above.
        unsafe {
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, _mm512_loadu_ps(buf.as_ptr()));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tanh_slice_avx2(xs: &mut [f32]) {
    tanh_slice_body::<true>(xs)
}

/// Applies `tanh_f32` to every element, on the kernel path that runs ([`super::isa::active`]).
pub(crate) fn tanh_slice_f32(xs: &mut [f32]) {
    match super::isa::active() {
        // SAFETY: `active` only answers a path the CPU supports, and the function is
        // compiled for that path's features.
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx512 => unsafe { tanh_slice_avx512(xs) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx2 => unsafe { tanh_slice_avx2(xs) },
        _ => tanh_slice_body::<false>(xs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(x: f32) -> f64 {
        // The FMA version computed outside an FMA-enabled function calls libm's fmaf:
        // slow, but the same values.
        check_one(x, tanh_f32(x)).max(check_one(x, tanh_f32_with::<true>(x)))
    }

    fn check_one(x: f32, got: f32) -> f64 {
        let want = (x as f64).tanh();
        let got = got as f64;
        let err = (got - want).abs();
        // Absolute error well inside f32 assert_close (atol 1e-5), and relative error
        // small where tanh is small.
        assert!(err <= 1.2e-7, "tanh({x}) = {got}, want {want}, err {err:e}");
        if want.abs() < 0.3 {
            assert!(
                err <= 2e-7 * want.abs().max(1e-30),
                "tanh({x}): relative error"
            );
        }
        err
    }

    #[test]
    fn sigmoid_close_to_f64_everywhere() {
        let check = |x: f32| {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            for got in [sigmoid_f32_with::<false>(x), sigmoid_f32_with::<true>(x)] {
                let got = got as f64;
                // Within a few float32 ulps of the value relative to it (and absolutely
                // below 1e-38, past the clamp).
                let err = (got - want).abs();
                assert!(
                    err <= 4e-7 * want || err <= 1e-38,
                    "sigmoid({x}) = {got}, want {want}, err {err:e}"
                );
            }
        };
        let mut x = -100.0f32;
        while x <= 100.0 {
            check(x);
            x += 1.0 / 1024.0;
        }
        let mut m = 1e-30f32;
        while m < 1e30 {
            check(m);
            check(-m);
            m *= 1.07;
        }
        for x in [
            0.0,
            -0.0,
            87.0,
            -87.0,
            88.0,
            -88.0,
            89.0,
            -89.0,
            f32::MAX,
            f32::MIN,
        ] {
            check(x);
        }
        // Where float32's own 1 / (1 + exp(-x)) reaches 1 or 0, so does this (special
        // values then propagate alike: 0 · inf is NaN).
        let plain = |x: f32| 1.0 / (1.0 + (-x).exp());
        for x in [
            f32::INFINITY,
            100.0,
            20.0,
            -89.0,
            -100.0,
            f32::NEG_INFINITY,
            f32::MIN,
        ] {
            assert_eq!(sigmoid_f32_with::<false>(x), plain(x), "sigmoid({x})");
            assert_eq!(sigmoid_f32_with::<true>(x), plain(x), "sigmoid({x})");
        }
        assert!(sigmoid_f32_with::<false>(f32::NAN).is_nan());
        assert!(sigmoid_f32_with::<true>(-f32::NAN).is_nan());
    }

    #[test]
    fn close_to_f64_tanh_everywhere() {
        let mut worst = 0.0f64;
        // A dense grid over the interesting range and a geometric sweep of magnitudes.
        let mut x = -12.0f32;
        while x <= 12.0 {
            worst = worst.max(check(x));
            x += 1.0 / 4096.0;
        }
        let mut m = 1e-30f32;
        while m < 1e30 {
            worst = worst.max(check(m)).max(check(-m));
            m *= 1.07;
        }
        for x in [
            0.0,
            -0.0,
            0.3,
            -0.3,
            0.29999998,
            9.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
        ] {
            worst = worst.max(check(x));
        }
        assert!(worst < 1.2e-7, "{worst:e}");
    }

    #[test]
    fn special_values() {
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(-0.0).is_sign_negative());
        assert!(tanh_f32_with::<true>(f32::NAN).is_nan());
        assert_eq!(tanh_f32_with::<true>(f32::INFINITY), 1.0);
        assert!(tanh_f32_with::<true>(-0.0).is_sign_negative());
    }

    #[test]
    fn slice_version_matches_scalar_on_awkward_lengths() {
        for len in [0usize, 1, 15, 16, 17, 31, 33, 127, 128, 129] {
            let xs: Vec<f32> = (0..len).map(|i| (i as f32 - 60.0) * 0.11).collect();
            let mut ys = xs.clone();
            tanh_slice_f32(&mut ys);
            for (x, y) in xs.iter().zip(&ys) {
                // FMA contraction may differ between versions by an ulp or so.
                assert!((y - tanh_f32(*x)).abs() <= 2.5e-7, "len {len}, x {x}");
            }
        }
    }
}
