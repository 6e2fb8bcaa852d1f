//! Scan one direction of one layer over time.

use ndarray::{
    Array2, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis, CowArray, Ix2, ShapeBuilder,
};

use super::pair::{run_parts, SharedPtr};
use crate::element::Float;
use crate::kernels::panel::{gemm_panels_bias, gemm_panels_ordered, ColumnOrder};
use crate::kernels::{narrow_scan, Activation};
use crate::params::{Packed, PackedWeight};

/// `y = x · B[:, c0..c0 + y.ncols()] (+ y when accumulate)` on this thread, `B` `(K, N)` packed once as
/// [`PackedWeight`] (for the forward `B = Wᵀ`, `W` `(N, K)` as torch stores it); `c0` is a
/// multiple of 16 (every split of the columns is). `order` is the order of the column
/// tiles (a scan's step products alternate it: see [`ColumnOrder`]); no value depends on
/// it.
///
/// Every product goes through the panel GEMM (`kernels/panel.rs`): measured with
/// `cargo run --release -p recurrent-bench --example gflops`, it beats the earlier
/// row-major kernels on every shape the layers multiply, one row included (BENCHMARKS.md),
/// and `matrixmultiply` on the large projections.
pub(crate) fn product_cols<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &PackedWeight<T>,
    c0: usize,
    y: &mut ArrayViewMut2<'_, T>,
    accumulate: bool,
    order: ColumnOrder,
) {
    gemm_panels_ordered(x, &w.panels, c0, y, accumulate, order)
}

/// `y = x · B + beta · y` for `beta` 0 or 1, `B` `(K, N = y.ncols())` packed once as [`PackedWeight`] (see
/// [`product_cols`]). With `threads > 1` and enough work, the product is split between
/// two threads: by rows when there are many (both halves read all of `B`), else by
/// columns (each thread streams half of `B`).
pub(crate) fn matmul_acc<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &PackedWeight<T>,
    beta: T,
    y: &mut ArrayViewMut2<'_, T>,
    threads: usize,
) {
    matmul_ordered(x, w, beta, y, threads, ColumnOrder::Ascending)
}

/// [`matmul_acc`] visiting the column tiles in `order` (each thread its own columns): a
/// scan's product for step `t` passes [`ColumnOrder::for_step`]`(t)`.
pub(crate) fn matmul_ordered<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &PackedWeight<T>,
    beta: T,
    y: &mut ArrayViewMut2<'_, T>,
    threads: usize,
    order: ColumnOrder,
) {
    // beta is 0 (y only written) or 1 (accumulated into), the two the callers need.
    debug_assert!(beta == T::zero() || beta == T::one());
    let accumulate = beta != T::zero();
    split_product(x, y, threads, |x, c0, y| {
        product_cols(x, w, c0, y, accumulate, order)
    })
}

/// `y = bias + x · B`, `bias` `(N,)` broadcast over the rows (`y` only written), split
/// between threads as [`matmul_acc`] splits: a layer's input projection with its biases
/// folded in, in one pass over `y`.
pub(crate) fn matmul_bias<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &PackedWeight<T>,
    bias: &[T],
    y: &mut ArrayViewMut2<'_, T>,
    threads: usize,
) {
    split_product(x, y, threads, |x, c0, y| {
        gemm_panels_bias(x, &w.panels, c0, &bias[c0..c0 + y.ncols()], y)
    })
}

/// Runs `product(x, c0, y)` over all of `y`, or with `threads > 1` and enough work over
/// two halves on two threads: by rows when there are many (both halves read all of
/// `B`), else by columns from `c0` (each thread streams half of `B`).
fn split_product<T: Float>(
    x: &ArrayView2<'_, T>,
    y: &mut ArrayViewMut2<'_, T>,
    threads: usize,
    product: impl Fn(&ArrayView2<'_, T>, usize, &mut ArrayViewMut2<'_, T>) + Sync,
) {
    let (m, k) = x.dim();
    let h = y.ncols();
    if threads < 2 || m * k * h < PARALLEL_MIN_MACS {
        return product(x, 0, y);
    }
    if m >= 16 {
        let half = m / 2 / 8 * 8;
        let (x0, x1) = x.view().split_at(Axis(0), half);
        let (mut y0, mut y1) = y.view_mut().split_at(Axis(0), half);
        rayon::join(|| product(&x0, 0, &mut y0), || product(&x1, 0, &mut y1));
    } else {
        let half = h / 2 / 16 * 16;
        if half == 0 {
            return product(x, 0, y);
        }
        let (mut y0, mut y1) = y.view_mut().split_at(Axis(1), half);
        rayon::join(|| product(x, 0, &mut y0), || product(x, half, &mut y1));
    }
}

/// A whole small-batch recurrence of at least this many multiply-adds is split between
/// two threads for its whole length (see [`split_recurrence`]).
const SPLIT_SCAN_MIN_MACS: usize = 1 << 24;

/// The recurrence of a small batch with a wide hidden state as two parts of every step
/// (see `forward/pair.rs`), each owning half of the columns of `W_hhᵀ` and of every
/// step's output: on two threads in lockstep when a second one comes in time (each
/// part's half of `W_hhᵀ` then stays in its core's L2), otherwise on this thread, part 0
/// then part 1 of each step, with the same kernel calls and so the same bits. Returns
/// `false`, having touched nothing, when `W_hhᵀ` is not one slice (which does not
/// depend on timing).
///
/// `seq` is the direction's output in time-major view `(L, N, H)`, holding the input
/// projection.
fn split_recurrence<T: Float, A: Activation>(
    mut seq: ArrayViewMut3<'_, T>,
    w_hh_t: &PackedWeight<T>,
    h0: Option<ArrayView2<'_, T>>,
    reverse: bool,
) -> bool {
    let (seq_len, batch, hidden) = seq.dim();
    let split = hidden / 2 / 16 * 16;
    let strides: Vec<usize> = seq.strides().iter().map(|&s| s as usize).collect();
    let base = SharedPtr(seq.as_mut_ptr());

    // Protocol. Part p writes only columns cols(p) of row t(step) during `step`, and
    // reads all columns of row t(step - 1). It starts `step` only once the other part
    // has finished `step - 1` (or runs after it on the same thread), so that row is
    // complete and no longer written; the other part meanwhile writes only its own
    // columns of row t(step), which this part neither reads nor writes. Views are made
    // per step from the raw pointer and dropped before the step is published, so no two
    // live views alias an element being written.
    let step = |part: usize, step: usize, _: &mut ()| {
        // Capture the Send/Sync wrapper whole (a closure would otherwise capture the bare
        // pointer field, which is neither).
        #[allow(clippy::redundant_locals)]
        let base = base;
        let cols = if part == 0 { 0..split } else { split..hidden };
        let t = if reverse { seq_len - 1 - step } else { step };
        let at = |t: usize, col: usize| base.0.wrapping_add(t * strides[0] + col * strides[2]);
        let shape =
            |width: usize| ndarray::Ix2(batch, width).strides(ndarray::Ix2(strides[1], strides[2]));
        // SAFETY: see the protocol above; shapes and strides are those of `seq`.
        let mut current =
            unsafe { ArrayViewMut2::from_shape_ptr(shape(cols.len()), at(t, cols.start)) };
        let order = ColumnOrder::for_step(t);
        if step > 0 {
            let prev_t = if reverse { t + 1 } else { t - 1 };
            // SAFETY: as above; row prev_t is complete and only read during this step.
            let previous =
                unsafe { ArrayView2::from_shape_ptr(shape(hidden), at(prev_t, 0) as *const T) };
            product_cols(&previous, w_hh_t, cols.start, &mut current, true, order);
        } else if let Some(h) = &h0 {
            product_cols(h, w_hh_t, cols.start, &mut current, true, order);
        }
        activate::<T, A>(&mut current);
    };
    run_parts([(), ()], seq_len, &step);
    true
}

/// Below this many multiply-adds (a few microseconds of work) a product, or a batch's
/// whole recurrence, stays on one thread: a fork-join that has to wake the other worker
/// costs about as much. (At 2^18, LSTM/GRU small lost 4 µs of 35 to splitting their
/// projection.)
const PARALLEL_MIN_MACS: usize = 1 << 20;

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

/// The initial state as the scan reads it: the caller's `h0` in row-major order whatever
/// its strides (a strided state would take the products' plain loop, which rounds
/// differently), borrowed when it already is. Without `h0` the state is zeros, and the
/// first step's product `0 · W_hhᵀ` is skipped only when it is exactly zero: when
/// `W_hh` holds a NaN or an infinity that product is NaN in torch (`0 · ∞ = NaN`), so
/// explicit zeros are returned and multiplied.
fn initial_state<'a, T: Float>(
    packed: &Packed<T>,
    h0: Option<&'a ArrayView2<'_, T>>,
    batch: usize,
    hidden: usize,
) -> Option<CowArray<'a, T, Ix2>> {
    match h0 {
        Some(h) => Some(h.as_standard_layout()),
        None if packed.w_hh_finite => None,
        None => Some(CowArray::from(Array2::zeros((batch, hidden)))),
    }
}

/// Runs one direction of one layer.
///
/// - `input`: `(L, N, F)` or `(N, L, F)` (`batch_first`), standard layout.
/// - `output`: this direction's `H` columns of the layer's output, in the same axis order;
///   every element is written.
/// - `h0`: `(N, H)` in any layout, or `None` for zeros.
/// - `threads`: how many threads the products may use.
///
/// The final state is the output row at the last step scanned.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan<T: Float, A: Activation>(
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
    let batch = if batch_first { d0 } else { d1 };
    let given = h0;
    let h0 = initial_state(packed, given.as_ref(), batch, output.len_of(Axis(2)));
    let h0 = h0.as_ref().map(|h| h.view());
    if scan_narrow::<T, A>(
        packed,
        input,
        output.view_mut(),
        batch_first,
        h0,
        reverse,
        threads,
    ) {
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
        match packed.bias.as_ref().and_then(|b| b.as_slice()) {
            Some(bias) => matmul_bias(&x2, &packed.w_ih_t, bias, &mut proj, threads),
            None => matmul_acc(&x2, &packed.w_ih_t, T::zero(), &mut proj, threads),
        }
    }

    // 2. The recurrence, in time-major view: out[t] = act(out[t] + h_{t-1} W_hh^T).
    let mut seq = if batch_first {
        output.permuted_axes([1, 0, 2])
    } else {
        output
    };
    let seq_len = seq.len_of(Axis(0));
    let (_, batch, hidden) = seq.dim();
    // The path depends on the shapes and `threads` only (see `forward/pair.rs`).
    if threads >= 2
        && batch < 16
        && hidden >= 256
        && seq_len * batch * hidden * hidden >= SPLIT_SCAN_MIN_MACS
        && split_recurrence::<T, A>(seq.view_mut(), &packed.w_hh_t, h0, reverse)
    {
        return;
    }
    if threads >= 2 && batch >= 16 && seq_len * batch * hidden * hidden >= PARALLEL_MIN_MACS {
        // Batch elements recur independently: each thread takes half of the batch for
        // the whole sequence, with no synchronisation between steps.
        let half = batch / 2 / 8 * 8;
        let (seq0, seq1) = seq.view_mut().split_at(Axis(1), half);
        let (h0_0, h0_1) = h0.map(|h| h.split_at(Axis(0), half)).unzip();
        rayon::join(
            || recur::<T, A>(seq0, packed, h0_0, reverse, 1),
            || recur::<T, A>(seq1, packed, h0_1, reverse, 1),
        );
        return;
    }
    recur::<T, A>(seq, packed, h0, reverse, threads);
}

/// A direction with `H < 16` through the fused kernel ([`narrow_scan`]), the batch split
/// in halves between two threads when it is large enough to pay for the fork. Returns
/// `false`, having written nothing, when the kernel does not apply.
fn scan_narrow<T: Float, A: Activation>(
    packed: &Packed<T>,
    input: ArrayView3<'_, T>,
    output: ArrayViewMut3<'_, T>,
    batch_first: bool,
    h0: Option<ArrayView2<'_, T>>,
    reverse: bool,
    threads: usize,
) -> bool {
    let (Some(w_ih_t), Some(w_hh_t)) = (
        packed.w_ih_t.narrow.as_ref().and_then(|w| w.as_slice()),
        packed.w_hh_t.narrow.as_ref().and_then(|w| w.as_slice()),
    ) else {
        return false;
    };
    let bias = match &packed.bias {
        Some(b) => match b.as_slice() {
            Some(b) => Some(b),
            None => return false,
        },
        None => None,
    };
    let time_major = [usize::from(batch_first), usize::from(!batch_first), 2];
    let x = input.permuted_axes(time_major);
    let y = output.permuted_axes(time_major);
    let (seq_len, batch, hidden) = y.dim();
    let run = |x, y, h0| narrow_scan::<T, A>(x, w_ih_t, w_hh_t, bias, h0, y, reverse);
    let macs = seq_len * batch * hidden * (hidden + x.len_of(Axis(2)));
    if threads < 2 || batch < 16 || macs < PARALLEL_MIN_MACS {
        return run(x, y, h0);
    }
    let half = batch / 2;
    let (x0, x1) = x.split_at(Axis(1), half);
    let (y0, y1) = y.split_at(Axis(1), half);
    let (h0_0, h0_1) = h0.map(|h| h.split_at(Axis(0), half)).unzip();
    // Both halves have the same shapes and strides, so both apply or neither does.
    let (a, b) = rayon::join(|| run(x0, y0, h0_0), || run(x1, y1, h0_1));
    debug_assert_eq!(a, b);
    a && b
}

/// The step loop over `seq` (time-major `(L, N, H)`, holding the input projection):
/// `out[t] = act(out[t] + h_{t-1} W_hhᵀ)`.
fn recur<T: Float, A: Activation>(
    mut seq: ArrayViewMut3<'_, T>,
    packed: &Packed<T>,
    h0: Option<ArrayView2<'_, T>>,
    reverse: bool,
    threads: usize,
) {
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
        let w = &packed.w_hh_t;
        let order = ColumnOrder::for_step(t);
        match (previous, &h0) {
            (Some(prev), _) => {
                matmul_ordered(&prev.view(), w, T::one(), &mut current, threads, order)
            }
            (None, Some(h)) => matmul_ordered(h, w, T::one(), &mut current, threads, order),
            (None, None) => {}
        }
        activate::<T, A>(&mut current);
    }
}
