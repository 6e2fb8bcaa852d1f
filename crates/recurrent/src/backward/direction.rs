//! The backward of one direction of one layer: backpropagation through time. The step
//! loop ([`backward_steps`]) walks time against the direction's scan, one cell's chain
//! rule per step and sequence, and keeps every step's pre-activation gradients; their
//! products with the inputs, the states and the weights (the parameter gradients and the
//! input's) are then taken once over all steps ([`direction_backward`]). With two threads
//! and a batch of 16 or more each thread runs the step loop of half of the batch.
//!
//! Depends on `saved.rs` (what the forward kept) and `cell.rs` (the LSTM and GRU cells'
//! derivatives), and on the forward's kernels.

use ndarray::{
    s, Array1, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis,
};

use super::cell::{gru_cell_backward, lstm_cell_backward};
use super::saved::{time_order, Saved, SavedView};
use crate::config::{Kind, Nonlinearity, RnnConfig};
use crate::element::Float;
use crate::forward::{matmul_acc, row_slice, row_slice_mut};
use crate::kernels::gemm;
use crate::params::{DirectionParams, PackedWeight};

/// Sets the rows of `(L, N, F)` `a` past each sequence's length to zero.
pub(super) fn clear_padding<T: Float>(a: &mut ArrayViewMut3<'_, T>, lengths: &[usize]) {
    for (n, &length) in lengths.iter().enumerate() {
        a.slice_mut(s![length.., n, ..]).fill(T::zero());
    }
}

/// An owned `(L, N, W)` array as `(L*N, W)` rows.
fn flat<T: Float>(a: &Array3<T>, rows: usize) -> ArrayView2<'_, T> {
    let width = a.len_of(Axis(2));
    a.view()
        .into_shape_with_order((rows, width))
        .expect("owned standard array") // ok: every caller's array is owned and standard
}

/// The weights the backward multiplies gradients by, `da W`, in the packed-weight
/// kernels' operand layout (torch's `(G*H, K)`, rows padded; see `params::padded`).
struct RowWeights<T> {
    w_ih: PackedWeight<T>,
    w_hh: PackedWeight<T>,
    /// `W_hr` `(P, H)`, or empty.
    w_hr: PackedWeight<T>,
}

impl<T: Float> RowWeights<T> {
    fn new(p: &DirectionParams<T>) -> Self {
        RowWeights {
            w_ih: PackedWeight::new(p.w_ih.view()),
            w_hh: PackedWeight::new(p.w_hh.view()),
            w_hr: PackedWeight::new(
                p.w_hr
                    .as_ref()
                    .map_or_else(|| Array2::zeros((0, 0)), |w| w.clone())
                    .view(),
            ),
        }
    }
}

/// Parameter gradients of one direction, summed over its steps.
pub(super) struct Accumulated<T> {
    pub(super) w_ih: Array2<T>,
    pub(super) w_hh: Array2<T>,
    pub(super) b_ih: Array1<T>,
    pub(super) b_hh: Array1<T>,
    pub(super) w_hr: Array2<T>,
}

impl<T: Float> Accumulated<T> {
    fn zeros(p: &DirectionParams<T>) -> Self {
        Accumulated {
            w_ih: Array2::zeros(p.w_ih.raw_dim()),
            w_hh: Array2::zeros(p.w_hh.raw_dim()),
            b_ih: Array1::zeros(p.w_ih.nrows()),
            b_hh: Array1::zeros(p.w_hh.nrows()),
            w_hr: p
                .w_hr
                .as_ref()
                .map_or_else(|| Array2::zeros((0, 0)), |w| Array2::zeros(w.raw_dim())),
        }
    }
}

/// What one direction's backward gives: its parameter gradients, the gradients of its
/// initial states, and its share of the gradient of the layer's input.
pub(super) struct DirectionGrads<T> {
    pub(super) acc: Accumulated<T>,
    pub(super) dh: Array2<T>,
    pub(super) dc: Array2<T>,
    pub(super) grad_x: Array3<T>,
}

/// The backward of one direction of one layer: `s` what its forward kept, `x` the
/// layer's input, `grad` the gradient of this direction's output columns, `dh`/`dc` the
/// gradients of its h_n/c_n.
#[allow(clippy::too_many_arguments)]
pub(super) fn direction_backward<T: Float>(
    config: &RnnConfig,
    p: &DirectionParams<T>,
    s: &Saved<Array3<T>>,
    x: &Array3<T>,
    grad: ArrayView3<'_, T>,
    mut dh: Array2<T>,
    mut dc: Array2<T>,
    lengths: &[usize],
    reverse: bool,
    threads: usize,
) -> DirectionGrads<T> {
    let (seq_len, batch, _) = x.dim();
    let rows = seq_len * batch;
    let gates = p.w_ih.nrows();
    let mut grad_x = Array3::<T>::zeros(x.raw_dim());
    let mut acc = Accumulated::zeros(p);
    let weights = RowWeights::new(p);
    // Per step (indexed by t): the pre-activation gradients on the input side and
    // on the hidden side; their products with the inputs, the states and the
    // weights are taken once for all steps after the loop.
    let mut all_da_in = Array3::<T>::zeros((seq_len, batch, gates));
    let mut all_da_hidden = match config.kind {
        Kind::Gru => Array3::<T>::zeros((seq_len, batch, gates)),
        _ => Array3::<T>::zeros((0, batch, gates)), // the same as da_in
    };
    let grad_dir = grad;
    let saved_dir = s.as_ref().map(|a| a.view());
    let run = |s: SavedView<'_, T>,
               grad: ArrayView3<'_, T>,
               dh: ArrayViewMut2<'_, T>,
               dc: ArrayViewMut2<'_, T>,
               da_in: ArrayViewMut3<'_, T>,
               da_hidden: ArrayViewMut3<'_, T>,
               lengths: &[usize],
               threads: usize| {
        backward_steps(
            config, p, &weights, s, grad, dh, dc, da_in, da_hidden, lengths, reverse, threads,
        )
    };
    let w_hr_grad = if threads >= 2 && batch >= 16 {
        // Sequences recur independently: half of the batch per thread.
        let half = batch / 2;
        let (s0, s1) = saved_dir.map(|a| a.split_at(Axis(1), half)).unzip();
        let (g0, g1) = grad_dir.split_at(Axis(1), half);
        let (dh0, dh1) = dh.view_mut().split_at(Axis(0), half);
        let (dc0, dc1) = dc.view_mut().split_at(Axis(0), half);
        let (a0, a1) = all_da_in.view_mut().split_at(Axis(1), half);
        let (b0, b1) = all_da_hidden.view_mut().split_at(Axis(1), half);
        let (l0, l1) = lengths.split_at(half);
        let (w0, w1) = rayon::join(
            || run(s0, g0, dh0, dc0, a0, b0, l0, 1),
            || run(s1, g1, dh1, dc1, a1, b1, l1, 1),
        );
        w0 + w1
    } else {
        run(
            saved_dir,
            grad_dir,
            dh.view_mut(),
            dc.view_mut(),
            all_da_in.view_mut(),
            all_da_hidden.view_mut(),
            lengths,
            threads,
        )
    };
    if p.w_hr.is_some() {
        acc.w_hr += &w_hr_grad;
    }
    {
        let da_in = flat(&all_da_in, rows);
        let da_hidden = match config.kind {
            Kind::Gru => flat(&all_da_hidden, rows),
            _ => da_in.view(),
        };
        par_gemm(da_in.t(), flat(x, rows), acc.w_ih.view_mut(), threads);
        par_gemm(
            da_hidden.t(),
            flat(&s.h_prev, rows),
            acc.w_hh.view_mut(),
            threads,
        );
        acc.b_ih += &da_in.sum_axis(Axis(0));
        acc.b_hh += &da_hidden.sum_axis(Axis(0));
        let mut gx = grad_x
            .view_mut()
            .into_shape_with_order((rows, x.len_of(Axis(2))))
            .expect("owned standard array"); // ok: allocated above
        matmul_acc(&da_in, &weights.w_ih, T::one(), &mut gx, threads);
    }
    // The input gradient past each length is zero, as pad_packed_sequence's backward
    // gives (not 0 * W_ih, which is NaN where W_ih is infinite).
    clear_padding(&mut grad_x.view_mut(), lengths);
    DirectionGrads {
        acc,
        dh,
        dc,
        grad_x,
    }
}

/// The backward step loop of one direction for a range of the batch, walking time
/// against the direction's scan: `s` what its forward kept, `grad` `(L, n, H_out)` the
/// gradient of its output, `dh`/`dc` the gradients of h_n/c_n on entry and of h_0/c_0 on
/// return, `all_da_in`/`all_da_hidden` `(L, n, G*H)` receive each step's pre-activation
/// gradients (the hidden side only for a GRU, where it differs). Returns this range's
/// share of the `W_hr` gradient (an LSTM with projections; otherwise empty).
#[allow(clippy::too_many_arguments)]
fn backward_steps<T: Float>(
    config: &RnnConfig,
    p: &DirectionParams<T>,
    weights: &RowWeights<T>,
    s: SavedView<'_, T>,
    grad: ArrayView3<'_, T>,
    mut dh_io: ArrayViewMut2<'_, T>,
    mut dc_io: ArrayViewMut2<'_, T>,
    mut all_da_in: ArrayViewMut3<'_, T>,
    mut all_da_hidden: ArrayViewMut3<'_, T>,
    lengths: &[usize],
    reverse: bool,
    threads: usize,
) -> Array2<T> {
    let (batch, h_out) = dh_io.dim();
    let hidden = config.hidden_size;
    let seq_len = grad.len_of(Axis(0));
    let mut dh = dh_io.to_owned();
    let mut dc = dc_io.to_owned();
    let mut w_hr_grad = match &p.w_hr {
        Some(w) => Array2::zeros(w.raw_dim()),
        None => Array2::zeros((0, 0)),
    };
    // Scratch, reused every step.
    let mut dh_t = Array2::<T>::zeros((batch, h_out));
    let mut dh_full = Array2::<T>::zeros((batch, hidden));
    let mut dh_prev = Array2::<T>::zeros((batch, h_out));
    let mut dc_prev = Array2::<T>::zeros((batch, hidden));
    let mut tanh_c = vec![T::zero(); hidden];
    for &t in time_order(seq_len, reverse).iter().rev() {
        // The output gradient reaches only the steps that produced an output.
        dh_t.assign(&dh);
        for (n, &length) in lengths.iter().enumerate() {
            if t < length {
                let g = grad.slice(s![t, n, ..]);
                dh_t.row_mut(n).zip_mut_with(&g, |a, &b| *a += b);
            }
        }
        let h_prev = s.h_prev.index_axis(Axis(0), t);
        let c_prev = s.c_prev.index_axis(Axis(0), t);
        let step_gates = s.gates.index_axis(Axis(0), t);
        let extra = s.extra.index_axis(Axis(0), t);
        // LSTM with projections: h = W_hr h_full, so dh_full = dh W_hr and
        // dW_hr += dhᵀ h_full (running sequences only).
        if p.w_hr.is_some() {
            let mut dh_run = dh_t.clone();
            for (n, &length) in lengths.iter().enumerate() {
                if t >= length {
                    dh_run.row_mut(n).fill(T::zero());
                }
            }
            gemm(
                &dh_run.t(),
                &s.h_full.index_axis(Axis(0), t),
                T::one(),
                &mut w_hr_grad.view_mut(),
            );
            dh_full.fill(T::zero());
            matmul_acc(
                &dh_run.view(),
                &weights.w_hr,
                T::one(),
                &mut dh_full.view_mut(),
                threads,
            );
        }
        let mut da_in_t = all_da_in.index_axis_mut(Axis(0), t);
        for (n, &length) in lengths.iter().enumerate() {
            let mut dh_prev_row = dh_prev.row_mut(n);
            let dh_prev_row = row_slice_mut(&mut dh_prev_row);
            let mut dc_prev_row = dc_prev.row_mut(n);
            let dc_prev_row = row_slice_mut(&mut dc_prev_row);
            let mut da_row = da_in_t.row_mut(n);
            let da = row_slice_mut(&mut da_row);
            if t >= length {
                // A sequence that had ended: an identity step, gradients pass
                // through and reach no weight.
                da.fill(T::zero());
                dh_prev_row.copy_from_slice(row_slice(dh_t.row(n)));
                dc_prev_row.copy_from_slice(row_slice(dc.row(n)));
                continue;
            }
            let g = row_slice(step_gates.row(n));
            let dh_row = match &p.w_hr {
                Some(_) => row_slice(dh_full.row(n)),
                None => row_slice(dh_t.row(n)),
            };
            match config.kind {
                Kind::Rnn => {
                    let h = row_slice(extra.row(n));
                    for ((d, &gr), &hv) in da.iter_mut().zip(dh_row).zip(h) {
                        *d = match config.nonlinearity {
                            Nonlinearity::Tanh => gr * (T::one() - hv * hv),
                            Nonlinearity::Relu if hv > T::zero() => gr,
                            Nonlinearity::Relu => T::zero(),
                        };
                    }
                    dh_prev_row.fill(T::zero());
                }
                Kind::Lstm => {
                    tanh_c.copy_from_slice(row_slice(extra.row(n)));
                    T::tanh_slice(&mut tanh_c);
                    lstm_cell_backward(
                        g,
                        &tanh_c,
                        row_slice(c_prev.row(n)),
                        dh_row,
                        row_slice(dc.row(n)),
                        da,
                        dc_prev_row,
                    );
                    dh_prev_row.fill(T::zero());
                }
                Kind::Gru => {
                    let mut da_h_row = all_da_hidden.slice_mut(s![t, n, ..]);
                    gru_cell_backward(
                        g,
                        row_slice(extra.row(n)),
                        row_slice(h_prev.row(n)),
                        dh_row,
                        da,
                        row_slice_mut(&mut da_h_row),
                        dh_prev_row,
                    );
                }
            }
        }
        // Through W_hh into the previous state.
        let da_hidden_t = match config.kind {
            Kind::Gru => all_da_hidden.index_axis(Axis(0), t),
            _ => all_da_in.index_axis(Axis(0), t),
        };
        matmul_acc(
            &da_hidden_t,
            &weights.w_hh,
            T::one(),
            &mut dh_prev.view_mut(),
            threads,
        );
        // An ended sequence's step is the identity: its zero pre-activation gradient
        // times W_hh must not reach it (0 * Inf is NaN).
        for (n, &length) in lengths.iter().enumerate() {
            if t >= length {
                dh_prev.row_mut(n).assign(&dh_t.row(n));
            }
        }
        std::mem::swap(&mut dh, &mut dh_prev);
        std::mem::swap(&mut dc, &mut dc_prev);
    }
    dh_io.assign(&dh);
    dc_io.assign(&dc);
    w_hr_grad
}

/// `c += a b` through matrixmultiply (any strides), the rows of `c` split between two
/// threads when there is enough work.
fn par_gemm<T: Float>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    mut c: ArrayViewMut2<'_, T>,
    threads: usize,
) {
    let (m, k) = a.dim();
    if threads < 2 || m < 32 || m * k * b.ncols() < 1 << 20 {
        return gemm(&a, &b, T::one(), &mut c);
    }
    let half = m / 2;
    let (a0, a1) = a.split_at(Axis(0), half);
    let (mut c0, mut c1) = c.split_at(Axis(0), half);
    rayon::join(
        || gemm(&a0, &b, T::one(), &mut c0),
        || gemm(&a1, &b, T::one(), &mut c1),
    );
}
