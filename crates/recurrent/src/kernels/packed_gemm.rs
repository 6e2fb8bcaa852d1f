//! `y += x · Wᵀ` for many rows, against `Wᵀ` packed once (K, H) row-major.
//!
//! A register-blocked micro-kernel: a tile of `MR` rows × `NR` columns of `y` lives in
//! vector registers while the whole K loop runs, each step loading `NR` weights once and
//! broadcasting `MR` inputs. Column blocks are the outer loop so that a block of the
//! weight (K × NR) stays in L1 while every row block uses it. Unlike a general GEMM,
//! nothing is packed per call: the weight was laid out when it was set. Rows left over
//! go through [`super::matvec`]'s row kernel; `matvec::gemv_rows_plain` (in the tests)
//! is the oracle for both.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use super::madd;
use crate::element::Float;

/// One MR × NR tile at (i0, j0); `xs` are the MR input rows (each of length K), `ys` the
/// MR output rows (each of length h).
#[inline(always)]
fn tile<T: Float, const MR: usize, const NR: usize, const FMA: bool>(
    xs: &[&[T]; MR],
    wt: &[T],
    ldw: usize,
    j0: usize,
    ys: &mut [&mut [T]; MR],
) {
    let k = xs[0].len();
    let mut acc = [[T::zero(); NR]; MR];
    for i in 0..MR {
        acc[i].copy_from_slice(&ys[i][j0..j0 + NR]);
    }
    for p in 0..k {
        let b: &[T; NR] = wt[p * ldw + j0..p * ldw + j0 + NR]
            .try_into()
            .expect("NR-wide slice"); // ok: the range is NR long
        for i in 0..MR {
            let a = xs[i][p];
            for l in 0..NR {
                acc[i][l] = madd::<T, FMA>(a, b[l], acc[i][l]);
            }
        }
    }
    for i in 0..MR {
        ys[i][j0..j0 + NR].copy_from_slice(&acc[i]);
    }
}

/// The last `r < W` columns at `j0` as one W-wide tile whose extra lanes are discarded:
/// the packed weight's rows are padded (see `params::padded_width`), so the W weights
/// from `j0` on exist; the caller checks that `wt` holds them for every k.
#[inline(always)]
fn tile_tail<T: Float, const MR: usize, const W: usize, const FMA: bool>(
    xs: &[&[T]; MR],
    wt: &[T],
    ldw: usize,
    j0: usize,
    ys: &mut [&mut [T]; MR],
) {
    let k = xs[0].len();
    let mut acc = [[T::zero(); W]; MR];
    for i in 0..MR {
        for (a, &v) in acc[i].iter_mut().zip(&ys[i][j0..]) {
            *a = v;
        }
    }
    for p in 0..k {
        let b: &[T; W] = wt[p * ldw + j0..p * ldw + j0 + W]
            .try_into()
            .expect("W-wide slice"); // ok: the range is W long
        for i in 0..MR {
            let a = xs[i][p];
            for l in 0..W {
                acc[i][l] = madd::<T, FMA>(a, b[l], acc[i][l]);
            }
        }
    }
    for i in 0..MR {
        for (v, &a) in ys[i][j0..].iter_mut().zip(&acc[i]) {
            *v = a;
        }
    }
}

/// The same for a column range narrower than NR (the right edge).
#[inline(always)]
fn edge<T: Float, const MR: usize, const FMA: bool>(
    xs: &[&[T]; MR],
    wt: &[T],
    ldw: usize,
    j0: usize,
    ys: &mut [&mut [T]; MR],
) {
    let k = xs[0].len();
    for i in 0..MR {
        let h = ys[i].len();
        let y = &mut ys[i][j0..h];
        for p in 0..k {
            let a = xs[i][p];
            for (c, &w) in y.iter_mut().zip(&wt[p * ldw + j0..p * ldw + h]) {
                *c = madd::<T, FMA>(a, w, *c);
            }
        }
    }
}

/// How a block of columns is computed.
#[derive(Clone, Copy)]
enum Cols {
    /// NR columns.
    Full,
    /// NH = NR / 2 columns.
    Half,
    /// The last columns, fewer than NH, as an NH-wide tile.
    Tail,
    /// The last columns, by the plain loop (the weight is not padded that far).
    Edge,
}

#[inline(always)]
fn body<T: Float, const MR: usize, const NR: usize, const NH: usize, const FMA: bool>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) -> usize {
    let h = y.ncols();
    let full_rows = x.nrows() / MR * MR;
    if full_rows == 0 {
        return 0; // fewer rows than one tile: all the caller's
    }
    let k = x.ncols();
    let mut j0 = 0;
    while j0 < h {
        let rest = h - j0;
        let (cols, width) = if rest >= NR {
            (Cols::Full, NR)
        } else if rest >= NH {
            (Cols::Half, NH)
        } else if k > 0 && j0 + NH <= ldw && wt.len() >= (k - 1) * ldw + j0 + NH {
            (Cols::Tail, rest)
        } else {
            (Cols::Edge, rest)
        };
        let blocks = x
            .axis_chunks_iter(Axis(0), MR)
            .zip(y.axis_chunks_iter_mut(Axis(0), MR))
            .take(full_rows / MR);
        for (xc, mut yc) in blocks {
            let mut x_rows = xc.rows().into_iter();
            let xs: [&[T]; MR] = std::array::from_fn(|_| {
                x_rows
                    .next()
                    .and_then(|r| r.to_slice())
                    .expect("contiguous row") // ok: rows checked contiguous by the caller
            });
            let mut y_rows = yc.rows_mut().into_iter();
            let mut ys: [&mut [T]; MR] = std::array::from_fn(|_| {
                y_rows
                    .next()
                    .and_then(|r| r.into_slice())
                    .expect("contiguous row") // ok: rows checked contiguous by the caller
            });
            match cols {
                Cols::Full => tile::<T, MR, NR, FMA>(&xs, wt, ldw, j0, &mut ys),
                Cols::Half => tile::<T, MR, NH, FMA>(&xs, wt, ldw, j0, &mut ys),
                Cols::Tail => tile_tail::<T, MR, NH, FMA>(&xs, wt, ldw, j0, &mut ys),
                Cols::Edge => edge::<T, MR, FMA>(&xs, wt, ldw, j0, &mut ys),
            }
        }
        j0 += width;
    }
    full_rows
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn body_avx512<T: Float>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) -> usize {
    // 8 rows x 2 zmm of columns: 16 accumulators of the 32 registers.
    if std::mem::size_of::<T>() == 4 {
        body::<T, 8, 32, 16, true>(x, wt, ldw, y)
    } else {
        body::<T, 8, 16, 8, true>(x, wt, ldw, y)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn body_avx2<T: Float>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) -> usize {
    // 4 rows x 2 ymm: 8 accumulators of the 16 registers.
    if std::mem::size_of::<T>() == 4 {
        body::<T, 4, 16, 8, true>(x, wt, ldw, y)
    } else {
        body::<T, 4, 8, 4, true>(x, wt, ldw, y)
    }
}

/// `y += x · wt` for rows that are contiguous (checked by the caller); returns how many
/// leading rows were done (a multiple of the tile height). The rest are the caller's.
pub(crate) fn packed_gemm_rows<T: Float>(
    x: &ArrayView2<'_, T>,
    wt: &[T],
    ldw: usize,
    y: &mut ArrayViewMut2<'_, T>,
) -> usize {
    match super::isa::active() {
        // SAFETY: `active` only answers a path the CPU supports, and the function is
        // compiled for that path's features.
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx512 => unsafe { body_avx512(x, wt, ldw, y) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        super::isa::Isa::Avx2 => unsafe { body_avx2(x, wt, ldw, y) },
        _ if std::mem::size_of::<T>() == 4 => body::<T, 4, 8, 4, false>(x, wt, ldw, y),
        _ => body::<T, 4, 4, 2, false>(x, wt, ldw, y),
    }
}
