//! Scan one direction of one layer over time.

use ndarray::{s, Array2, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis};

use crate::element::Float;
use crate::kernels::{gemm, gemv_rows, Activation};
use crate::params::{DirectionParams, Packed};

/// Up to this many rows, products go through the packed-weight row kernel
/// ([`gemv_rows`]); from here on through the GEMM crate, whose per-call packing of the
/// weight is then amortised. Measured with `cargo bench -p recurrent --bench kernels`.
const SMALL_ROWS: usize = 4;

/// `y = x · Wᵀ + beta · y`, with `w` (H, K) as torch stores it and `wt` its packed
/// transpose (K, H).
fn matmul_acc<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &Array2<T>,
    wt: &Array2<T>,
    beta: T,
    y: &mut ArrayViewMut2<'_, T>,
) {
    match wt.as_slice() {
        Some(wt) if x.nrows() <= SMALL_ROWS => {
            if beta == T::zero() {
                y.fill(T::zero());
            }
            gemv_rows(x, wt, y);
        }
        _ => gemm(x, &w.t(), beta, y),
    }
}

/// Applies the activation in place, row by row (rows are contiguous column ranges).
fn activate<T: Float, A: Activation>(y: &mut ArrayViewMut2<'_, T>) {
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
/// - `output`: the layer's output in the same axis order, `(.., .., D*H)`, standard layout;
///   this direction owns columns `cols_start..cols_start + H` and writes all of them.
/// - `h0`: `(N, H)`, or `None` for zeros.
///
/// Returns nothing; the final state is the output row at the last step scanned.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan<T: Float, A: Activation>(
    params: &DirectionParams<T>,
    packed: &Packed<T>,
    input: ArrayView3<'_, T>,
    mut output: ArrayViewMut3<'_, T>,
    batch_first: bool,
    cols_start: usize,
    h0: Option<ArrayView2<'_, T>>,
    reverse: bool,
) {
    let hidden = params.w_hh.nrows();
    let cols = cols_start..cols_start + hidden;
    let (d0, d1, features) = input.dim();
    let rows = d0 * d1;
    if rows == 0 {
        return;
    }

    // 1. Input projection of all time steps: out[.., cols] = x W_ih^T (+ b_ih + b_hh).
    {
        let x2 = input
            .into_shape_with_order((rows, features))
            .expect("standard-layout input reshapes to rows"); // ok: invariant of prepare()
        let width = output.len_of(Axis(2));
        let out2 = output
            .view_mut()
            .into_shape_with_order((rows, width))
            .expect("standard-layout output reshapes to rows"); // ok: allocated by stack
        let mut proj = out2.slice_move(s![.., cols.clone()]);
        let beta = match &packed.bias {
            Some(bias) => {
                proj.assign(bias);
                T::one()
            }
            None => T::zero(),
        };
        matmul_acc(&x2, &params.w_ih, &packed.w_ih_t, beta, &mut proj);
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
        let mut current = current.slice_mut(s![.., cols.clone()]);
        match (previous, &h0) {
            (Some(prev), _) => {
                let prev = prev.slice_move(s![.., cols.clone()]);
                matmul_acc(&prev.view(), &params.w_hh, &packed.w_hh_t, T::one(), &mut current);
            }
            (None, Some(h)) => matmul_acc(h, &params.w_hh, &packed.w_hh_t, T::one(), &mut current),
            (None, None) => {}
        }
        activate::<T, A>(&mut current);
    }
}
