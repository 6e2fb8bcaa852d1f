//! The general fast path: any kind (RNN, LSTM, GRU), an LSTM's cell state and
//! projection, and per-sequence lengths.
//!
//! Per layer and direction: one product projects every step's input onto all gates
//! (biases folded in: `b_ih + b_hh`, except a GRU's `b_hn`, which `r` multiplies); then
//! each step multiplies the state by `W_hhᵀ` into a scratch row of gates and runs the
//! kind's epilogue row by row, writing the new state and the output. The state lives in
//! its own buffer (not in the output), so a sequence that has ended keeps its last state
//! while its output rows stay zero.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis};

use super::direction::matmul_acc;
use crate::config::{Kind, Nonlinearity};
use crate::element::Float;
use crate::params::{DirectionParams, Layers, Packed};
use crate::shape::Prepared;

/// Runs the stack; returns `(output, h_n, c_n)` in batched form (output in the input's
/// axis order; `c_n` zeros unless LSTM). `lengths` has one entry per sequence, each in
/// `1..=L` (checked by the caller).
pub(crate) fn forward_gated<T: Float>(
    layers: &Layers<T>,
    prepared: &Prepared<'_, T>,
    lengths: &[usize],
    dropout: super::stack::Dropout<'_, T>,
) -> (Array3<T>, Array3<T>, Array3<T>) {
    let mut dropout = dropout;
    let config = layers.config();
    let directions = config.num_directions();
    let h_out = config.output_hidden_size();
    let input = prepared.input.view();
    let batch_first = prepared.batch_first;
    let (d0, d1, _) = input.dim();
    let batch = prepared.batch();
    let threads = rayon::current_num_threads();
    let threads_per_direction = if directions == 2 {
        (threads / 2).max(1)
    } else {
        threads
    };

    let mut output = Array3::zeros((d0, d1, directions * h_out));
    let mut h_n = Array3::zeros((directions * config.num_layers, batch, h_out));
    let mut c_n = Array3::zeros((directions * config.num_layers, batch, config.hidden_size));
    let mut intermediate: Option<Array3<T>> = None;
    for layer in 0..config.num_layers {
        let is_last = layer + 1 == config.num_layers;
        let mut own = (!is_last).then(|| Array3::zeros((d0, d1, directions * h_out)));
        let layer_input: ArrayView3<'_, T> = match &intermediate {
            Some(previous) => previous.view(),
            None => input.view(),
        };
        let out = match own.as_mut() {
            Some(buffer) => buffer.view_mut(),
            None => output.view_mut(),
        };
        let (forward_half, reverse_half) = out.split_at(Axis(2), h_out);
        let run = |direction: usize, half: ArrayViewMut3<'_, T>| {
            let index = layer * directions + direction;
            scan(
                config.kind,
                config.nonlinearity,
                &layers.all_direction_params()[index],
                layers.packed(index),
                layer_input.view(),
                half,
                batch_first,
                prepared.h0.as_ref().map(|h| h.index_axis(Axis(0), index)),
                prepared.c0.as_ref().map(|c| c.index_axis(Axis(0), index)),
                direction == 1,
                lengths,
                threads_per_direction,
            )
        };
        let states = if directions == 2 && threads > 1 {
            let (a, b) = rayon::join(|| run(0, forward_half), || run(1, reverse_half));
            vec![a, b]
        } else {
            let mut states = vec![run(0, forward_half)];
            if directions == 2 {
                states.push(run(1, reverse_half));
            }
            states
        };
        for (direction, (h, c)) in states.into_iter().enumerate() {
            let index = layer * directions + direction;
            h_n.index_axis_mut(Axis(0), index).assign(&h);
            c_n.index_axis_mut(Axis(0), index).assign(&c);
        }
        if let Some(buffer) = own.as_mut() {
            let steps = prepared.seq_len();
            dropout.apply(layer, config.dropout, buffer, batch_first, 0..steps);
        }
        if own.is_some() {
            intermediate = own;
        }
    }
    (output, h_n, c_n)
}

/// One direction of one layer; returns its final `(h, c)`.
#[allow(clippy::too_many_arguments)]
fn scan<T: Float>(
    kind: Kind,
    nonlinearity: Nonlinearity,
    params: &DirectionParams<T>,
    packed: &Packed<T>,
    input: ArrayView3<'_, T>,
    output: ArrayViewMut3<'_, T>,
    batch_first: bool,
    h0: Option<ArrayView2<'_, T>>,
    c0: Option<ArrayView2<'_, T>>,
    reverse: bool,
    lengths: &[usize],
    threads: usize,
) -> (Array2<T>, Array2<T>) {
    let (d0, d1, features) = input.dim();
    let batch = if batch_first { d0 } else { d1 };
    let h_out = output.len_of(Axis(2));
    let gates = params.w_ih.nrows();
    let hidden = gates / kind.gate_count();
    // Private row-major copies of the initial states (the caller's may have any layout).
    let mut h = h0.map_or_else(
        || Array2::zeros((batch, h_out)),
        |h| h.as_standard_layout().into_owned(),
    );
    let mut c = c0.map_or_else(
        || Array2::zeros((batch, hidden)),
        |c| c.as_standard_layout().into_owned(),
    );
    let rows = d0 * d1;
    if rows == 0 {
        return (h, c);
    }

    // 1. All steps' input projections onto the gates, biases folded in.
    let mut gx = Array3::<T>::zeros((d0, d1, gates));
    {
        let x2 = input
            .into_shape_with_order((rows, features))
            .expect("standard-layout input reshapes to rows"); // ok: invariant of prepare()
        let mut gx2 = gx
            .view_mut()
            .into_shape_with_order((rows, gates))
            .expect("fresh array reshapes to rows"); // ok: allocated just above
        let bias = match kind {
            // r multiplies b_hn: only b_in goes into the projection's n part.
            Kind::Gru => packed.gru_bias.as_ref().map(|(projection, _)| projection),
            _ => packed.bias.as_ref(),
        };
        let beta = match bias {
            Some(b) => {
                gx2.assign(b);
                T::one()
            }
            None => T::zero(),
        };
        matmul_acc(&x2, &packed.w_ih_t, beta, &mut gx2, threads);
    }
    let b_hn = match kind {
        Kind::Gru => packed.gru_bias.as_ref().map(|(_, b_hn)| b_hn),
        _ => None,
    };

    // 2. The steps, in time-major views.
    let (gx, output) = if batch_first {
        (
            gx.view().permuted_axes([1, 0, 2]),
            output.permuted_axes([1, 0, 2]),
        )
    } else {
        (gx.view(), output)
    };
    let seq_len = gx.len_of(Axis(0));
    let step = StepWeights {
        kind,
        nonlinearity,
        packed,
        b_hn: b_hn.and_then(|b| b.as_slice()),
        hidden,
        reverse,
    };
    if threads >= 2 && batch >= 16 && seq_len * batch * gates * h_out >= 1 << 18 {
        // Sequences recur independently: each thread takes half of the batch for the
        // whole sequence, with no synchronisation between steps.
        let half = batch / 2 / 8 * 8;
        let (gx0, gx1) = gx.split_at(Axis(1), half);
        let (out0, out1) = output.split_at(Axis(1), half);
        let (h0_, h1_) = h.view_mut().split_at(Axis(0), half);
        let (c0_, c1_) = c.view_mut().split_at(Axis(0), half);
        let (l0, l1) = lengths.split_at(half);
        rayon::join(
            || recur(&step, gx0, out0, h0_, c0_, l0, 1),
            || recur(&step, gx1, out1, h1_, c1_, l1, 1),
        );
    } else {
        recur(
            &step,
            gx,
            output,
            h.view_mut(),
            c.view_mut(),
            lengths,
            threads,
        );
    }
    (h, c)
}

/// What every step of one direction needs besides the data.
struct StepWeights<'a, T> {
    kind: Kind,
    nonlinearity: Nonlinearity,
    packed: &'a Packed<T>,
    b_hn: Option<&'a [T]>,
    hidden: usize,
    reverse: bool,
}

/// The step loop over time-major views: `gx` (L, N, G*H) the input projections, `output`
/// (L, N, H_out), states `h` (N, H_out) and `c` (N, H) updated in place.
fn recur<T: Float>(
    w: &StepWeights<'_, T>,
    gx: ArrayView3<'_, T>,
    mut output: ArrayViewMut3<'_, T>,
    mut h: ArrayViewMut2<'_, T>,
    mut c: ArrayViewMut2<'_, T>,
    lengths: &[usize],
    threads: usize,
) {
    let (seq_len, batch, gates) = gx.dim();
    let (hidden, h_out) = (w.hidden, h.ncols());
    let half = T::of(0.5);
    // Scratch, reused every step: the gates of the whole batch, and a second (N, H)
    // buffer (the GRU's candidate, the LSTM's tanh(c)); the LSTM's cell output and
    // projection.
    let mut gh = Array2::<T>::zeros((batch, gates));
    let mut aux = Array2::<T>::zeros((batch, hidden));
    let lstm_rows = if w.kind == Kind::Lstm { batch } else { 0 };
    let mut h_proj = Array2::<T>::zeros((lstm_rows, h_out));
    for step in 0..seq_len {
        let t = if w.reverse { seq_len - 1 - step } else { step };
        matmul_acc(
            &h.view(),
            &w.packed.w_hh_t,
            T::zero(),
            &mut gh.view_mut(),
            threads,
        );
        let gxt = gx.index_axis(Axis(0), t);
        // Activations run over the whole batch at once (one vectorised call per kind of
        // gate, not one per row); rows of sequences that have ended are computed but
        // never committed.
        match w.kind {
            Kind::Rnn => {
                gh.zip_mut_with(&gxt, |g, &x| *g += x);
                activate_all(w.nonlinearity, &mut gh);
                commit_rows(&gh, &mut h, t, lengths);
            }
            Kind::Lstm => {
                // i, f, o through sigmoid(v) = 0.5 + 0.5 tanh(v / 2) and g through tanh:
                // one tanh over the whole (N, 4H) block.
                for (g, x) in row_slices(&mut gh).zip(gxt.rows()) {
                    let x = contiguous(x);
                    for (v, &xv) in g.iter_mut().zip(x) {
                        *v = (*v + xv) * half;
                    }
                    for v in &mut g[2 * hidden..3 * hidden] {
                        *v = *v + *v; // g: undo the halving, tanh(v) wanted
                    }
                }
                tanh_all(&mut gh);
                let gh_rows = gh.as_slice().map(|s| s.chunks_exact(gates));
                let Some(gh_rows) = gh_rows else {
                    unreachable!("owned standard array")
                };
                for (((g, mut cr), a), &length) in gh_rows
                    .zip(c.rows_mut())
                    .zip(row_slices(&mut aux))
                    .zip(lengths)
                {
                    let (i, rest) = g.split_at(hidden);
                    let (f, rest) = rest.split_at(hidden);
                    let cand = &rest[..hidden];
                    let Some(cr) = cr.as_slice_mut() else {
                        unreachable!("state rows are contiguous")
                    };
                    for j in 0..hidden {
                        let cell = (f[j] * half + half) * cr[j] + (i[j] * half + half) * cand[j];
                        a[j] = cell;
                    }
                    if t < length {
                        cr.copy_from_slice(a);
                    }
                }
                tanh_all(&mut aux);
                let Some(gh_all) = gh.as_slice() else {
                    unreachable!("owned standard array")
                };
                for (a, g) in row_slices(&mut aux).zip(gh_all.chunks_exact(gates)) {
                    for (v, &o) in a.iter_mut().zip(&g[3 * hidden..]) {
                        *v = (o * half + half) * *v;
                    }
                }
                match &w.packed.w_hr_t {
                    Some(w_hr_t) => {
                        matmul_acc(
                            &aux.view(),
                            w_hr_t,
                            T::zero(),
                            &mut h_proj.view_mut(),
                            threads,
                        );
                        commit_rows(&h_proj, &mut h, t, lengths);
                    }
                    None => commit_rows(&aux, &mut h, t, lengths),
                }
            }
            Kind::Gru => {
                // Keep h W_hnᵀ + b_hn (which r multiplies) before the gates go through tanh.
                let Some(gh_all) = gh.as_slice() else {
                    unreachable!("owned standard array")
                };
                for (a, g) in row_slices(&mut aux).zip(gh_all.chunks_exact(gates)) {
                    let hn = &g[2 * hidden..];
                    match w.b_hn {
                        Some(b) => a
                            .iter_mut()
                            .zip(hn)
                            .zip(b)
                            .for_each(|((v, &p), &q)| *v = p + q),
                        None => a.copy_from_slice(hn),
                    }
                }
                // r, z = sigmoid(x + h W_hᵀ + b) = 0.5 + 0.5 tanh(v / 2): one tanh over the
                // block (the n columns ride along and are not used).
                for (g, x) in row_slices(&mut gh).zip(gxt.rows()) {
                    let x = contiguous(x);
                    for (v, &xv) in g[..2 * hidden].iter_mut().zip(x) {
                        *v = (*v + xv) * half;
                    }
                }
                tanh_all(&mut gh);
                // n = tanh(x_n + r (h W_hnᵀ + b_hn)).
                let Some(gh_all) = gh.as_slice() else {
                    unreachable!("owned standard array")
                };
                for ((a, g), x) in row_slices(&mut aux)
                    .zip(gh_all.chunks_exact(gates))
                    .zip(gxt.rows())
                {
                    let x = contiguous(x);
                    for j in 0..hidden {
                        a[j] = x[2 * hidden + j] + (g[j] * half + half) * a[j];
                    }
                }
                tanh_all(&mut aux);
                // h = (h - n) z + n, ATen's order, for the sequences still running.
                let Some(gh_all) = gh.as_slice() else {
                    unreachable!("owned standard array")
                };
                let Some(aux_all) = aux.as_slice() else {
                    unreachable!("owned standard array")
                };
                for (((mut hr, n), g), &length) in h
                    .rows_mut()
                    .into_iter()
                    .zip(aux_all.chunks_exact(hidden))
                    .zip(gh_all.chunks_exact(gates))
                    .zip(lengths)
                {
                    if t < length {
                        let Some(hr) = hr.as_slice_mut() else {
                            unreachable!("state rows are contiguous")
                        };
                        for j in 0..hidden {
                            let update = g[hidden + j] * half + half;
                            hr[j] = (hr[j] - n[j]) * update + n[j];
                        }
                    }
                }
            }
        }
        let mut out_t = output.index_axis_mut(Axis(0), t);
        for (n, &length) in lengths.iter().enumerate() {
            if t < length {
                out_t.row_mut(n).assign(&h.row(n));
            }
        }
    }
}

/// The rows of an owned standard-layout array as slices.
fn row_slices<T: Float>(a: &mut Array2<T>) -> std::slice::ChunksExactMut<'_, T> {
    let width = a.ncols().max(1);
    match a.as_slice_mut() {
        Some(all) => all.chunks_exact_mut(width),
        None => unreachable!("owned standard array"), // ok: allocated by recur
    }
}

/// A row of the gate projections as a slice (its last axis has unit stride).
fn contiguous<'a, T: Float>(row: ndarray::ArrayView1<'a, T>) -> &'a [T] {
    match row.to_slice() {
        Some(s) => s,
        None => unreachable!("projection rows are contiguous"), // ok: standard layout
    }
}

/// `tanh` of every element of a standard-layout array, in one vectorised call.
fn tanh_all<T: Float>(a: &mut Array2<T>) {
    match a.as_slice_mut() {
        Some(all) => T::tanh_slice(all),
        None => a.mapv_inplace(|v| v.tanh()),
    }
}

/// The RNN activation of every element.
fn activate_all<T: Float>(nonlinearity: Nonlinearity, a: &mut Array2<T>) {
    match nonlinearity {
        Nonlinearity::Tanh => tanh_all(a),
        Nonlinearity::Relu => a.mapv_inplace(|v| v.relu()),
    }
}

/// `to[n] = from[n]` for the sequences still running at step `t`.
fn commit_rows<T: Float>(
    from: &Array2<T>,
    to: &mut ArrayViewMut2<'_, T>,
    t: usize,
    lengths: &[usize],
) {
    for (n, &length) in lengths.iter().enumerate() {
        if t < length {
            to.row_mut(n).assign(&from.row(n));
        }
    }
}
