//! Scan one direction of one layer over time.

use ndarray::{Array2, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis};

use crate::element::Float;
use crate::kernels::{gemm, gemv_rows, Activation};
use crate::params::{DirectionParams, Packed};

/// `y = x · Wᵀ + beta · y`, with `w` (H, K) as torch stores it and `wt` its packed
/// transpose (K, H).
///
/// The backend is chosen by shape, from `cargo bench -p recurrent --bench kernels` (see
/// the README): the packed-weight kernels (no per-call packing) win on every per-step
/// product and on projections with weights up to a few hundred KiB; `matrixmultiply`
/// wins on large projections (many rows against a weight of 2 MiB and more), where its
/// cache blocking over K pays off. With `threads > 1` and enough work, the product is
/// split between two threads.
fn matmul_acc<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &Array2<T>,
    wt: &Array2<T>,
    beta: T,
    y: &mut ArrayViewMut2<'_, T>,
    threads: usize,
) {
    if beta == T::zero() {
        y.fill(T::zero());
    }
    let (m, k) = x.dim();
    let h = y.ncols();
    let product = |x: &ArrayView2<'_, T>,
                   wt_cols: &[T],
                   w_rows: ArrayView2<'_, T>,
                   y: &mut ArrayViewMut2<'_, T>| {
        if m >= CRATE_GEMM_MIN_ROWS && k * h >= CRATE_GEMM_MIN_WEIGHT {
            gemm(x, &w_rows.t(), T::one(), y)
        } else {
            gemv_rows(x, wt_cols, wt.ncols(), y)
        }
    };
    let Some(wt_all) = wt.as_slice() else {
        return gemm(x, &w.t(), T::one(), y);
    };
    if threads < 2 || m * k * h < PARALLEL_MIN_MACS {
        return product(x, wt_all, w.view(), y);
    }
    if m >= 16 {
        // Split the rows: both halves read the whole weight.
        let half = m / 2 / 8 * 8;
        let (x0, x1) = x.view().split_at(Axis(0), half);
        let (mut y0, mut y1) = y.view_mut().split_at(Axis(0), half);
        rayon::join(
            || product(&x0, wt_all, w.view(), &mut y0),
            || product(&x1, wt_all, w.view(), &mut y1),
        );
    } else {
        // Few rows: split the columns, each thread streaming half of the weight.
        let ldw = wt.ncols();
        let half = h / 2 / 16 * 16;
        if half == 0 {
            return gemv_rows(x, wt_all, ldw, y);
        }
        let (mut y0, mut y1) = y.view_mut().split_at(Axis(1), half);
        rayon::join(
            || gemv_rows(x, wt_all, ldw, &mut y0),
            || gemv_rows(x, &wt_all[half..], ldw, &mut y1),
        );
    }
}

/// Below this many multiply-adds a product stays on one thread: a fork-join costs a few
/// microseconds.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// `matrixmultiply` takes products with at least this many rows...
const CRATE_GEMM_MIN_ROWS: usize = 1024;
/// ...against a weight of at least this many elements (2 MiB of f32).
const CRATE_GEMM_MIN_WEIGHT: usize = 1 << 19;

/// Applies the activation in place, row by row (rows are contiguous column ranges).
fn activate<T: Float, A: Activation>(y: &mut ArrayViewMut2<'_, T>) {
    if let Some(all) = y.as_slice_mut() {
        return A::apply_slice(all);
    }
    for mut row in y.rows_mut() {
        match row.as_slice_mut() {
            Some(slice) => A::apply_slice(slice),
            None => row.mapv_inplace(A::apply),
        }
    }
}

/// Runs one direction of one layer.
///
/// - `input`: `(L, N, F)` or `(N, L, F)` (`batch_first`), standard layout.
/// - `output`: this direction's `H` columns of the layer's output, in the same axis order;
///   every element is written.
/// - `h0`: `(N, H)`, or `None` for zeros.
/// - `threads`: how many threads the products may use.
///
/// The final state is the output row at the last step scanned.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan<T: Float, A: Activation>(
    params: &DirectionParams<T>,
    packed: &Packed<T>,
    input: ArrayView3<'_, T>,
    mut output: ArrayViewMut3<'_, T>,
    batch_first: bool,
    h0: Option<ArrayView2<'_, T>>,
    reverse: bool,
    threads: usize,
) {
    let (d0, d1, features) = input.dim();
    let rows = d0 * d1;
    if rows == 0 {
        return;
    }

    // 1. Input projection of all time steps: out = x W_ih^T (+ b_ih + b_hh).
    {
        let x2 = input
            .into_shape_with_order((rows, features))
            .expect("standard-layout input reshapes to rows"); // ok: invariant of prepare()
        let mut proj = output.view_mut();
        // (d0, d1, H) with rows d0*d1 apart by a uniform stride: merge the first two axes.
        let merged = proj.merge_axes(Axis(0), Axis(1));
        debug_assert!(merged, "output rows have a uniform stride");
        let mut proj = proj.index_axis_move(Axis(0), 0);
        let beta = match &packed.bias {
            Some(bias) => {
                proj.assign(bias);
                T::one()
            }
            None => T::zero(),
        };
        matmul_acc(&x2, &params.w_ih, &packed.w_ih_t, beta, &mut proj, threads);
    }

    // 2. The recurrence, in time-major view: out[t] = act(out[t] + h_{t-1} W_hh^T).
    let mut seq = if batch_first {
        output.permuted_axes([1, 0, 2])
    } else {
        output
    };
    let seq_len = seq.len_of(Axis(0));
    for step in 0..seq_len {
        let t = if reverse { seq_len - 1 - step } else { step };
        // Split so that the previous step (read) and this step (written) are disjoint.
        let (mut current, previous) = if reverse {
            let (cur, prev) = seq.view_mut().split_at(Axis(0), t + 1);
            let cur = cur.index_axis_move(Axis(0), t);
            let prev = (step > 0).then(|| prev.index_axis_move(Axis(0), 0));
            (cur, prev)
        } else {
            let (prev, cur) = seq.view_mut().split_at(Axis(0), t);
            let cur = cur.index_axis_move(Axis(0), 0);
            let prev = (step > 0).then(|| prev.index_axis_move(Axis(0), t - 1));
            (cur, prev)
        };
        let w = (&params.w_hh, &packed.w_hh_t);
        match (previous, &h0) {
            (Some(prev), _) => matmul_acc(&prev.view(), w.0, w.1, T::one(), &mut current, threads),
            (None, Some(h)) => matmul_acc(h, w.0, w.1, T::one(), &mut current, threads),
            (None, None) => {}
        }
        activate::<T, A>(&mut current);
    }
}
