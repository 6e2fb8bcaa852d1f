//! A whole direction of a narrow layer (H below one vector) in one loop.
//!
//! When `H < 16` every row of every step fits in one 16-lane register, and the general
//! path's fixed costs dominate: an input projection written to memory and read back, a
//! product call and an activation call per step, each for a handful of numbers. Here a
//! row of a step is computed where it stays in registers from start to end:
//! `acc = b + x_t W_ihᵀ + h_{t-1} W_hhᵀ`, the activation applied to `acc`, and the `H`
//! real lanes stored. The rows of a step are independent, so the CPU overlaps them.
//!
//! The oracle is the reference loop (`crate::reference`); `tests/suite/properties.rs` runs every
//! hidden size below 16 through both.

use ndarray::{ArrayView2, ArrayView3, ArrayViewMut3};

use super::{madd, Activation};
use crate::element::Float;
use crate::params::MIN_PACKED_WIDTH as W;

/// The operands of [`narrow_scan`], flattened to pointers and element strides.
struct Operands<'a, T> {
    /// `W_ihᵀ` and `W_hhᵀ`, rows padded to `W`.
    w_ih_t: &'a [T],
    w_hh_t: &'a [T],
    /// `b_ih + b_hh`, padded with zeros to `W`.
    bias: [T; W],
    /// `(N, H)` initial state, if any.
    h0: Option<ArrayView2<'a, T>>,
    /// Input: element `(t, n, k)` at `x + t * xt + n * xn + k`.
    x: *const T,
    xt: isize,
    xn: isize,
    features: usize,
    /// Output: element `(t, n, j)` at `y + t * yt + n * yn + j`.
    y: *mut T,
    yt: isize,
    yn: isize,
    seq_len: usize,
    batch: usize,
    hidden: usize,
    reverse: bool,
}

/// Runs the recurrence `out[t] = act(b + x[t] W_ihᵀ + out[t-1] W_hhᵀ)` of one direction
/// with `H < 16`, writing every element of `out`. `input` is `(L, N, F)` and `out`
/// `(L, N, H)` in time-major view (any strides for the first two axes, unit stride along
/// the last); the weights are the packed transposes, rows padded to 16.
///
/// Returns `false`, touching nothing, if the operands are not in that form.
pub(crate) fn narrow_scan<T: Float, A: Activation>(
    input: ArrayView3<'_, T>,
    w_ih_t: &[T],
    w_hh_t: &[T],
    bias: Option<&[T]>,
    h0: Option<ArrayView2<'_, T>>,
    mut out: ArrayViewMut3<'_, T>,
    reverse: bool,
) -> bool {
    let (seq_len, batch, features) = input.dim();
    let (l2, n2, hidden) = out.dim();
    let unit = |s: isize, len: usize| s == 1 || len <= 1;
    let nonneg = |s: &[isize]| s.iter().all(|&s| s >= 0);
    if (l2, n2) != (seq_len, batch)
        || hidden == 0
        || hidden >= W
        || w_ih_t.len() != features * W
        || w_hh_t.len() != hidden * W
        || bias.is_some_and(|b| b.len() != hidden)
        || h0.as_ref().is_some_and(|h| h.dim() != (batch, hidden))
        || !unit(input.strides()[2], features)
        || !unit(out.strides()[2], hidden)
        || !nonneg(input.strides())
        || !nonneg(out.strides())
    {
        return false;
    }
    let mut padded = [T::zero(); W];
    if let Some(b) = bias {
        padded[..hidden].copy_from_slice(b);
    }
    let ops = Operands {
        w_ih_t,
        w_hh_t,
        bias: padded,
        h0,
        x: input.as_ptr(),
        xt: input.strides()[0],
        xn: input.strides()[1],
        features,
        y: out.as_mut_ptr(),
        yt: out.strides()[0],
        yn: out.strides()[1],
        seq_len,
        batch,
        hidden,
        reverse,
    };
    match super::isa::active() {
        // SAFETY: `active` only answers a path the CPU supports, and the function is
        // compiled for that path's features; the operands were checked above (see
        // `scan_body`).
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx512 => unsafe { scan_avx512::<T, A>(&ops) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx2 => unsafe { scan_avx2::<T, A>(&ops) },
        // SAFETY: the operands were checked above.
        _ => unsafe { scan_body::<T, A, false>(&ops) },
    }
    true
}

/// The loop.
///
/// # Safety
/// `ops.x` and `ops.y` with their strides address the `(L, N, F)` input and the
/// `(L, N, H)` output views that `narrow_scan` checked: non-negative strides, unit
/// stride along the last axis, and the output is writable and not aliased by the input.
#[inline(always)]
unsafe fn scan_body<T: Float, A: Activation, const FMA: bool>(ops: &Operands<'_, T>) {
    let (f, h) = (ops.features, ops.hidden);
    for step in 0..ops.seq_len {
        let t = if ops.reverse {
            ops.seq_len - 1 - step
        } else {
            step
        };
        let previous = (step > 0).then(|| if ops.reverse { t + 1 } else { t - 1 });
        for n in 0..ops.batch {
            let mut acc = ops.bias;
            // SAFETY: (t, n, 0..F) lies in the input view (see the function's contract).
            let x = unsafe {
                std::slice::from_raw_parts(
                    ops.x.offset(t as isize * ops.xt + n as isize * ops.xn),
                    f,
                )
            };
            for (&xk, row) in x.iter().zip(ops.w_ih_t.as_chunks::<W>().0) {
                axpy::<T, FMA>(&mut acc, xk, row);
            }
            let w_hh = ops.w_hh_t.as_chunks::<W>().0;
            match (previous, &ops.h0) {
                (Some(p), _) => {
                    // SAFETY: row (p, n) lies in the output view and was written in the
                    // previous step; no mutable reference to it is live.
                    let hp = unsafe {
                        std::slice::from_raw_parts(
                            ops.y.offset(p as isize * ops.yt + n as isize * ops.yn),
                            h,
                        )
                    };
                    for (&hk, row) in hp.iter().zip(w_hh) {
                        axpy::<T, FMA>(&mut acc, hk, row);
                    }
                }
                (None, Some(h0)) => {
                    for (&hk, row) in h0.row(n).iter().zip(w_hh) {
                        axpy::<T, FMA>(&mut acc, hk, row);
                    }
                }
                (None, None) => {}
            }
            // f32's tanh is vectorised: all lanes at once. f64's is libm's, one call per
            // lane: only the H real ones.
            let lanes = if std::mem::size_of::<T>() == 4 { W } else { h };
            for a in &mut acc[..lanes] {
                *a = A::apply_inline::<T, FMA>(*a);
            }
            // SAFETY: row (t, n) lies in the output view; nothing else refers to it now.
            let y = unsafe {
                std::slice::from_raw_parts_mut(
                    ops.y.offset(t as isize * ops.yt + n as isize * ops.yn),
                    h,
                )
            };
            // A fixed-trip loop with a condition rather than copy_from_slice, which would
            // become a memcpy call costing more than the row.
            for (l, &a) in acc.iter().enumerate() {
                if l < h {
                    y[l] = a;
                }
            }
        }
    }
}

/// `acc += a * row`, one `W`-wide multiply-add.
#[inline(always)]
fn axpy<T: Float, const FMA: bool>(acc: &mut [T; W], a: T, row: &[T; W]) {
    for l in 0..W {
        acc[l] = madd::<T, FMA>(a, row[l], acc[l]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn scan_avx512<T: Float, A: Activation>(ops: &Operands<'_, T>) {
    // SAFETY: the caller's contract is scan_body's.
    unsafe { scan_body::<T, A, true>(ops) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_avx2<T: Float, A: Activation>(ops: &Operands<'_, T>) {
    // SAFETY: as above.
    unsafe { scan_body::<T, A, true>(ops) }
}
