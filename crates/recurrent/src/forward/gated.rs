//! The general fast path: any kind (RNN, LSTM, GRU), an LSTM's cell state and
//! projection, and per-sequence lengths.
//!
//! Per layer and direction: one product projects every step's input onto all gates
//! (biases folded in: `b_ih + b_hh`, except a GRU's `b_hn`, which `r` multiplies); then
//! each step multiplies the state by `W_hhᵀ` into a scratch row of gates and runs the
//! kind's epilogue row by row, writing the new state and the output. The state lives in
//! its own buffer (not in the output), so a sequence that has ended keeps its last state
//! while its output rows stay zero.

use ndarray::{
    s, Array1, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis,
};

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
    dropout_rng: Option<&mut dyn rand::RngCore>,
) -> (Array3<T>, Array3<T>, Array3<T>) {
    let mut dropout_rng = dropout_rng;
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
            if config.dropout > 0.0 {
                if let Some(rng) = dropout_rng.as_deref_mut() {
                    super::stack::apply_dropout(buffer, config.dropout, rng);
                }
            }
        }
        if own.is_some() {
            intermediate = own;
        }
    }
    (output, h_n, c_n)
}

/// The logistic function of every element, as `0.5 + 0.5 tanh(x / 2)` so that it runs
/// on the vectorised `tanh` (within ~6e-8 of the exact value in f32).
fn sigmoid_slice<T: Float>(xs: &mut [T]) {
    let half = T::of(0.5);
    for x in xs.iter_mut() {
        *x = *x * half;
    }
    T::tanh_slice(xs);
    for x in xs.iter_mut() {
        *x = *x * half + half;
    }
}

/// RNN: `h = act(x + r)`, with `g` holding `r = h W_hhᵀ` on entry.
fn rnn_row<T: Float>(nonlinearity: Nonlinearity, x: &[T], g: &mut [T], h: &mut [T]) {
    for (a, &b) in g.iter_mut().zip(x) {
        *a = *a + b;
    }
    match nonlinearity {
        Nonlinearity::Tanh => T::tanh_slice(g),
        Nonlinearity::Relu => g.iter_mut().for_each(|v| *v = v.relu()),
    }
    h.copy_from_slice(&g[..h.len()]);
}

/// LSTM: gates `i, f, g, o` = `x + r` (`g` holds `r` on entry); `c = f c + i g`;
/// `h_full = o tanh(c)` (projected by the caller when the layer has `W_hr`).
fn lstm_row<T: Float>(hidden: usize, x: &[T], g: &mut [T], c: &mut [T], h_full: &mut [T]) {
    for (a, &b) in g.iter_mut().zip(x) {
        *a = *a + b;
    }
    sigmoid_slice(&mut g[..2 * hidden]);
    T::tanh_slice(&mut g[2 * hidden..3 * hidden]);
    sigmoid_slice(&mut g[3 * hidden..]);
    let (i, rest) = g.split_at(hidden);
    let (f, rest) = rest.split_at(hidden);
    let (cand, o) = rest.split_at(hidden);
    for j in 0..hidden {
        c[j] = f[j] * c[j] + i[j] * cand[j];
        h_full[j] = c[j];
    }
    T::tanh_slice(h_full);
    for (v, &gate) in h_full.iter_mut().zip(o) {
        *v = gate * *v;
    }
}

/// GRU: `r, z = sigmoid(x + r_h)`, `n = tanh(x_n + r (r_hn + b_hn))`, `h = (h - n) z + n`
/// (ATen's order), with `g` holding `h W_hhᵀ` (no bias) on entry.
fn gru_row<T: Float>(hidden: usize, x: &[T], g: &mut [T], b_hn: Option<&[T]>, h: &mut [T]) {
    for (a, &b) in g[..2 * hidden].iter_mut().zip(x) {
        *a = *a + b;
    }
    sigmoid_slice(&mut g[..2 * hidden]);
    let (rz, n) = g.split_at_mut(2 * hidden);
    let (reset, update) = rz.split_at(hidden);
    for j in 0..hidden {
        let hn = n[j] + b_hn.map_or(T::zero(), |b| b[j]);
        n[j] = x[2 * hidden + j] + reset[j] * hn;
    }
    T::tanh_slice(n);
    for j in 0..hidden {
        h[j] = (h[j] - n[j]) * update[j] + n[j];
    }
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
    let mut h = h0.map_or_else(|| Array2::zeros((batch, h_out)), |h| h.to_owned());
    let mut c = c0.map_or_else(|| Array2::zeros((batch, hidden)), |c| c.to_owned());
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
        let bias: Option<Array1<T>> = match (kind, &params.b_ih, &params.b_hh) {
            // r multiplies b_hn: only b_in goes into the projection's n part.
            (Kind::Gru, Some(b_ih), Some(b_hh)) => {
                let mut b = b_ih + b_hh;
                b.slice_mut(s![2 * hidden..])
                    .assign(&b_ih.slice(s![2 * hidden..]));
                Some(b)
            }
            _ => packed.bias.clone(),
        };
        let beta = match &bias {
            Some(b) => {
                gx2.assign(b);
                T::one()
            }
            None => T::zero(),
        };
        matmul_acc(&x2, &params.w_ih, &packed.w_ih_t, beta, &mut gx2, threads);
    }
    let b_hn: Option<Array1<T>> = match (kind, &params.b_hh) {
        (Kind::Gru, Some(b_hh)) => Some(b_hh.slice(s![2 * hidden..]).to_owned()),
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
        params,
        packed,
        b_hn: b_hn.as_ref().and_then(|b| b.as_slice()),
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
    params: &'a DirectionParams<T>,
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
    let mut gh = Array2::<T>::zeros((batch, gates));
    let mut h_full = Array2::<T>::zeros((batch, hidden));
    let mut h_proj = Array2::<T>::zeros((batch, h_out));
    for step in 0..seq_len {
        let t = if w.reverse { seq_len - 1 - step } else { step };
        matmul_acc(
            &h.view(),
            &w.params.w_hh,
            &w.packed.w_hh_t,
            T::zero(),
            &mut gh.view_mut(),
            threads,
        );
        let gxt = gx.index_axis(Axis(0), t);
        for (n, &length) in lengths.iter().enumerate() {
            if t >= length {
                continue;
            }
            let (Some(x), Some(g)) = (gxt.row(n).to_slice(), gh.row_mut(n).into_slice()) else {
                unreachable!("gate rows are contiguous") // ok: standard-layout rows
            };
            let (Some(hr), Some(cr), Some(fr)) = (
                h.row_mut(n).into_slice(),
                c.row_mut(n).into_slice(),
                h_full.row_mut(n).into_slice(),
            ) else {
                unreachable!("state rows are contiguous") // ok: rows of standard arrays
            };
            match w.kind {
                Kind::Rnn => rnn_row(w.nonlinearity, x, g, hr),
                Kind::Lstm => lstm_row(hidden, x, g, cr, fr),
                Kind::Gru => gru_row(hidden, x, g, w.b_hn, hr),
            }
        }
        if w.kind == Kind::Lstm {
            match (&w.params.w_hr, &w.packed.w_hr_t) {
                (Some(w_hr), Some(w_hr_t)) => {
                    matmul_acc(
                        &h_full.view(),
                        w_hr,
                        w_hr_t,
                        T::zero(),
                        &mut h_proj.view_mut(),
                        threads,
                    );
                    copy_valid_rows(&h_proj, &mut h, t, lengths);
                }
                _ => copy_valid_rows(&h_full, &mut h, t, lengths),
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

/// `to[n] = from[n]` for the sequences still running at step `t`.
fn copy_valid_rows<T: Float>(
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
