//! `y += x · Wᵀ` for a few rows of `x`, against a weight packed once as `Wᵀ` (K, H).
//!
//! A general GEMM packs its right-hand side on every call; for one or a few rows that
//! packing is most of the work (see benches/kernels.rs). Here the weight was transposed
//! once when it was set, so each row of `y` is a sum of scaled rows of `Wᵀ` — an axpy
//! that vectorises without horizontal reductions. Columns go in blocks whose
//! accumulators stay in registers across the whole K loop. Versions for AVX-512 and
//! AVX2+FMA are chosen at run time; `gemv_rows_plain` (in the tests) is the oracle.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::madd;
use crate::element::Float;
use crate::params::MIN_PACKED_WIDTH as NARROW;

/// Columns `j..j + B` of one row, with the accumulators in registers. Even and odd `k`
/// accumulate separately (two independent FMA chains per register) and are added at
/// the end.
#[inline(always)]
fn row_block<T: Float, const B: usize, const FMA: bool>(
    x: &[T],
    wt: &[T],
    ldw: usize,
    y: &mut [T],
    j: usize,
) {
    let mut even = [T::zero(); B];
    let mut odd = [T::zero(); B];
    even.copy_from_slice(&y[j..j + B]);
    let pairs = x.len() / 2;
    for q in 0..pairs {
        let (k0, k1) = (2 * q, 2 * q + 1);
        let (x0, x1) = (x[k0], x[k1]);
        let r0 = &wt[k0 * ldw + j..k0 * ldw + j + B];
        let r1 = &wt[k1 * ldw + j..k1 * ldw + j + B];
        for l in 0..B {
            even[l] = madd::<T, FMA>(x0, r0[l], even[l]);
            odd[l] = madd::<T, FMA>(x1, r1[l], odd[l]);
        }
    }
    if x.len() % 2 == 1 {
        let k = x.len() - 1;
        let r = &wt[k * ldw + j..k * ldw + j + B];
        for l in 0..B {
            even[l] = madd::<T, FMA>(x[k], r[l], even[l]);
        }
    }
    for l in 0..B {
        y[j + l] = even[l] + odd[l];
    }
}

/// Columns `j..j + B` of one row with one accumulator chain per register: for a block
/// of 16 registers, whose 16 independent chains already keep both FMA units busy. Each
/// `k` then reads one contiguous run of `B` weights (a kilobyte for 256 f32), which the
/// hardware prefetcher follows better than two half-width passes over the rows.
#[inline(always)]
fn row_block_wide<T: Float, const B: usize, const FMA: bool>(
    x: &[T],
    wt: &[T],
    ldw: usize,
    y: &mut [T],
    j: usize,
) {
    let mut acc = [T::zero(); B];
    acc.copy_from_slice(&y[j..j + B]);
    for (k, &xk) in x.iter().enumerate() {
        let r = &wt[k * ldw + j..k * ldw + j + B];
        for l in 0..B {
            acc[l] = madd::<T, FMA>(xk, r[l], acc[l]);
        }
    }
    y[j..j + B].copy_from_slice(&acc);
}

/// One row: `y[j] += sum_k x[k] * wt[k * ldw + j]`, in column blocks of `B`, `B/2`,
/// `B/4`, `B/8`, then a plain tail.
#[inline(always)]
fn row_body<
    T: Float,
    const B: usize,
    const B2: usize,
    const B4: usize,
    const B8: usize,
    const FMA: bool,
>(
    x: &[T],
    wt: &[T],
    ldw: usize,
    y: &mut [T],
) {
    let h = y.len();
    let mut j = 0;
    // 16 registers' worth of columns (2B) at a time while the row is that wide.
    if std::mem::size_of::<T>() == 4 {
        while j + 256 <= h {
            row_block_wide::<T, 256, FMA>(x, wt, ldw, y, j);
            j += 256;
        }
    } else {
        while j + 128 <= h {
            row_block_wide::<T, 128, FMA>(x, wt, ldw, y, j);
            j += 128;
        }
    }
    while j + B <= h {
        row_block::<T, B, FMA>(x, wt, ldw, y, j);
        j += B;
    }
    if j + B2 <= h {
        row_block::<T, B2, FMA>(x, wt, ldw, y, j);
        j += B2;
    }
    if j + B4 <= h {
        row_block::<T, B4, FMA>(x, wt, ldw, y, j);
        j += B4;
    }
    if j + B8 <= h {
        row_block::<T, B8, FMA>(x, wt, ldw, y, j);
        j += B8;
    }
    let k = x.len();
    if j < h && k > 0 && j + B8 <= ldw && wt.len() >= (k - 1) * ldw + j + B8 {
        // The last columns as one B8-wide block that reads into the row's padding (see
        // `params::padded_width`) and keeps only the real lanes.
        let mut acc = [T::zero(); B8];
        for (a, &v) in acc.iter_mut().zip(&y[j..]) {
            *a = v;
        }
        for (p, &xk) in x.iter().enumerate() {
            let r: &[T; B8] = wt[p * ldw + j..p * ldw + j + B8]
                .try_into()
                .expect("B8-wide slice"); // ok: the range is B8 long
            for l in 0..B8 {
                acc[l] = madd::<T, FMA>(xk, r[l], acc[l]);
            }
        }
        for (v, &a) in y[j..].iter_mut().zip(&acc) {
            *v = a;
        }
    } else if j < h {
        let tail = &mut y[j..];
        for (k, &xk) in x.iter().enumerate() {
            let row = &wt[k * ldw + j..k * ldw + h];
            for (a, &w) in tail.iter_mut().zip(row) {
                *a = madd::<T, FMA>(xk, w, *a);
            }
        }
    }
}

/// A row narrower than one vector, against a weight whose rows are padded to `W`
/// (`ldw == W`): one `W`-wide multiply-add per input element, then the `h` real columns
/// stored back.
#[inline(always)]
fn row_narrow<T: Float, const W: usize, const FMA: bool>(x: &[T], wt: &[T], y: &mut [T]) {
    // The product is accumulated from zero in registers and added to `y` at the end:
    // filling the accumulator from `y` element by element and then reading it as a
    // vector would stall on store forwarding.
    let mut acc = [T::zero(); W];
    for (k, &xk) in x.iter().enumerate() {
        let row: &[T; W] = wt[k * W..(k + 1) * W].try_into().expect("W-wide row"); // ok: range is W long
        for l in 0..W {
            acc[l] = madd::<T, FMA>(xk, row[l], acc[l]);
        }
    }
    for (v, &a) in y.iter_mut().zip(acc.iter()) {
        *v += a;
    }
}

#[inline(always)]
fn rows_body<T: Float, const FMA: bool>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) {
    for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
        let (Some(xs), Some(ys)) = (xr.as_slice(), yr.as_slice_mut()) else {
            unreachable!("rows are checked contiguous by gemv_rows")
        };
        if ldw == NARROW && ys.len() < NARROW && wt.len() >= xs.len() * NARROW {
            row_narrow::<T, NARROW, FMA>(xs, wt, ys)
        } else if std::mem::size_of::<T>() == 4 {
            row_body::<T, 128, 64, 32, 16, FMA>(xs, wt, ldw, ys)
        } else {
            row_body::<T, 64, 32, 16, 8, FMA>(xs, wt, ldw, ys)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn rows_avx512<T: Float>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) {
    rows_body::<T, true>(x, wt, ldw, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<T: Float>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) {
    rows_body::<T, true>(x, wt, ldw, y)
}

/// `y += x · wt`, where `x` is (m, K), `y` is (m, H), and `wt` holds `Wᵀ` row-major with
/// row stride `ldw >= H` (so a column range of a wider packed weight can be passed as a
/// sub-slice).
///
/// The values do not depend on the strides of `x` and `y`: rows without unit column
/// stride are copied into row-major buffers and take the same vectorised kernels (a
/// plain loop would round differently, so a caller's memory layout would change the last
/// bits of its results).
pub(crate) fn gemv_rows<T: Float>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = x.dim();
    let h = y.ncols();
    assert!(
        y.nrows() == m && ldw >= h && (k == 0 || wt.len() >= (k - 1) * ldw + h),
        "gemv_rows shape mismatch"
    );
    if !(x.strides()[1] == 1 || k <= 1) {
        return gemv_rows(&x.as_standard_layout().view(), wt, ldw, y);
    }
    if !(y.strides()[1] == 1 || h <= 1) {
        let mut rows = y.as_standard_layout().into_owned();
        gemv_rows(x, wt, ldw, &mut rows.view_mut());
        return y.assign(&rows);
    }
    // Blocks of rows go through the register-tiled kernel (when a row is at least one
    // vector wide), the leftover rows below.
    // (Every tile is at least 4 rows high: fewer rows go straight to the row kernel.)
    let done = if h >= 16 && m >= 4 {
        super::packed_gemm::packed_gemm_rows(x, wt, ldw, y)
    } else {
        0
    };
    if done == m {
        return;
    }
    let (x, mut y) = if done == 0 {
        (x.view(), y.view_mut())
    } else {
        (
            x.view().split_at(ndarray::Axis(0), done).1,
            y.view_mut().split_at(ndarray::Axis(0), done).1,
        )
    };
    let (x, y) = (&x, &mut y);
    match super::isa::active() {
        // SAFETY: `active` only answers a path the CPU supports, and the function is
        // compiled for that path's features.
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx512 => unsafe { rows_avx512(x, wt, ldw, y) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx2 => unsafe { rows_avx2(x, wt, ldw, y) },
        _ => rows_body::<T, false>(x, wt, ldw, y),
    }
}

/// The plain triple loop: the oracle for [`gemv_rows`].
#[cfg(test)]
pub(crate) fn gemv_rows_plain<T: Float>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = x.dim();
    let h = y.ncols();
    for i in 0..m {
        for j in 0..h {
            let mut acc = y[[i, j]];
            for p in 0..k {
                acc += x[[i, p]] * wt[p * ldw + j];
            }
            y[[i, j]] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    fn case<T: Float>(m: usize, k: usize, h: usize, tol: f64) {
        let x = Array2::from_shape_fn((m, k), |(i, p)| {
            T::of(((i * 31 + p * 7) % 23) as f64 * 0.05 - 0.5)
        });
        let wt: Vec<T> = (0..k * h)
            .map(|i| T::of(((i * 13) % 29) as f64 * 0.03 - 0.4))
            .collect();
        // y is a column slice of a wider buffer, as in the layer output.
        let mut wide = Array2::from_shape_fn((m, h + 3), |(i, j)| T::of((i + j) as f64 * 0.01));
        let mut want = wide.clone();
        gemv_rows(&x.view(), &wt, h, &mut wide.slice_mut(s![.., 1..1 + h]));
        gemv_rows_plain(&x.view(), &wt, h, &mut want.slice_mut(s![.., 1..1 + h]));
        // A column range of the weight, as the threaded split passes it.
        if h > 2 && k > 0 {
            let (j0, j1) = (1, h - 1);
            let mut part = Array2::from_elem((m, j1 - j0), T::one());
            let mut part_want = part.clone();
            gemv_rows(&x.view(), &wt[j0..], h, &mut part.view_mut());
            gemv_rows_plain(&x.view(), &wt[j0..], h, &mut part_want.view_mut());
            for (a, b) in part.iter().zip(part_want.iter()) {
                assert!((a.as_f64() - b.as_f64()).abs() <= tol * (1.0 + b.as_f64().abs()));
            }
        }
        for (a, b) in wide.iter().zip(want.iter()) {
            let (a, b) = (a.as_f64(), b.as_f64());
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{m}x{k}x{h}: {a} vs {b}"
            );
        }
    }

    /// Weights laid out as the layers pack them (rows padded to `padded_width`), with NaN
    /// in the padding: the tiles that read past the last real column must discard those
    /// lanes. Also from a column offset into the rows, as the threaded splits pass them.
    fn padded_case<T: Float>(m: usize, k: usize, h: usize, tol: f64) {
        let ldw = crate::params::padded_width::<T>(h);
        let x = Array2::from_shape_fn((m, k), |(i, p)| {
            T::of(((i * 7 + p * 3) % 11) as f64 * 0.1 - 0.5)
        });
        let mut wt = vec![T::nan(); k * ldw];
        for p in 0..k {
            for j in 0..h {
                wt[p * ldw + j] = T::of(((p * 5 + j * 3) % 17) as f64 * 0.05 - 0.4);
            }
        }
        for start in [0, h / 3] {
            let width = h - start;
            let mut y = Array2::from_elem((m, width), T::of(0.25));
            let mut want = y.clone();
            gemv_rows(&x.view(), &wt[start..], ldw, &mut y.view_mut());
            gemv_rows_plain(&x.view(), &wt[start..], ldw, &mut want.view_mut());
            for (a, b) in y.iter().zip(want.iter()) {
                let (a, b) = (a.as_f64(), b.as_f64());
                assert!(
                    (a - b).abs() <= tol * (1.0 + b.abs()),
                    "{m}x{k}x{h} from {start}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn tiles_past_the_last_column_discard_the_padding() {
        for &m in &[1, 3, 8, 9, 16, 17] {
            for &k in &[1, 5, 40] {
                for &h in &[1, 3, 15, 17, 33, 47, 100, 129, 400] {
                    padded_case::<f32>(m, k, h, 1e-5);
                    padded_case::<f64>(m, k, h, 1e-12);
                }
            }
        }
    }

    #[test]
    fn narrow_rows_against_padded_weights() {
        for h in 1..NARROW {
            for k in [0, 1, 2, 7] {
                let x = Array2::from_shape_fn((3, k), |(i, p)| (i as f32 - p as f32) * 0.3);
                let mut wt = vec![0.0f32; k * NARROW];
                for p in 0..k {
                    for j in 0..h {
                        wt[p * NARROW + j] = (p * 5 + j) as f32 * 0.1 - 0.7;
                    }
                }
                let mut y = Array2::from_elem((3, h), 0.5f32);
                let mut want = y.clone();
                gemv_rows(&x.view(), &wt, NARROW, &mut y.view_mut());
                gemv_rows_plain(&x.view(), &wt, NARROW, &mut want.view_mut());
                for (a, b) in y.iter().zip(want.iter()) {
                    assert!((a - b).abs() <= 1e-5, "h {h} k {k}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn matches_plain_loop_on_awkward_sizes() {
        for &m in &[1, 2, 3, 4, 5, 8, 9, 17, 33] {
            for &k in &[0, 1, 15, 16, 17, 127] {
                for &h in &[1, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 257] {
                    case::<f32>(m, k, h, 1e-5);
                    case::<f64>(m, k, h, 1e-12);
                }
            }
        }
    }
}
