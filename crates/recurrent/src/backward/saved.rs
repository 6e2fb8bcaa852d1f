//! The forward again, keeping what the backward reads: for one direction of one layer,
//! every step's starting state, the activated gates, the cell state (LSTM), the
//! unprojected output (LSTM with `proj_size`) and `h W_hnᵀ + b_hn` (GRU), in [`Saved`],
//! computed in evaluation mode through the fast path's kernels on weights packed in
//! torch's gate order; plus [`time_order`], the order a direction scans time in.
//!
//! Depends on the forward's kernels and row helpers (`crate::forward`), not on any other
//! file of the backward.

use ndarray::{s, Array2, Array3, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis};

use crate::config::{Kind, Nonlinearity, RnnConfig};
use crate::element::Float;
use crate::forward::{matmul_acc, matmul_bias, row_slice, row_slice_mut};
use crate::params::{DirectionParams, Packed};

/// Time steps in the order a direction scans them.
pub(super) fn time_order(seq_len: usize, reverse: bool) -> Vec<usize> {
    if reverse {
        (0..seq_len).rev().collect()
    } else {
        (0..seq_len).collect()
    }
}

/// What the forward of one direction kept for its backward, indexed by time step `t`:
/// owned arrays (`Saved<Array3<T>>`), or views of them, for a range of the batch.
pub(super) struct Saved<A> {
    /// The state each step started from, `(L, N, H_out)`.
    pub(super) h_prev: A,
    /// LSTM: the cell state each step started from, `(L, N, H)`; otherwise `(L, N, 0)`.
    pub(super) c_prev: A,
    /// LSTM: activated gates `[i, f, g, o]`; GRU: `[r, z, n]`; RNN: `(L, N, 0)`.
    pub(super) gates: A,
    /// RNN: the new state; LSTM: the new cell state; GRU: `h W_hnᵀ + b_hn`.
    pub(super) extra: A,
    /// LSTM with projections: `o tanh(c)` before `W_hr`; otherwise `(L, N, 0)`.
    pub(super) h_full: A,
}

impl<A> Saved<A> {
    /// The same function of each array.
    pub(super) fn map<B>(self, mut f: impl FnMut(A) -> B) -> Saved<B> {
        Saved {
            h_prev: f(self.h_prev),
            c_prev: f(self.c_prev),
            gates: f(self.gates),
            extra: f(self.extra),
            h_full: f(self.h_full),
        }
    }

    pub(super) fn as_ref(&self) -> Saved<&A> {
        Saved {
            h_prev: &self.h_prev,
            c_prev: &self.c_prev,
            gates: &self.gates,
            extra: &self.extra,
            h_full: &self.h_full,
        }
    }

    fn as_mut(&mut self) -> Saved<&mut A> {
        Saved {
            h_prev: &mut self.h_prev,
            c_prev: &mut self.c_prev,
            gates: &mut self.gates,
            extra: &mut self.extra,
            h_full: &mut self.h_full,
        }
    }
}

impl<A, B> Saved<(A, B)> {
    pub(super) fn unzip(self) -> (Saved<A>, Saved<B>) {
        (
            Saved {
                h_prev: self.h_prev.0,
                c_prev: self.c_prev.0,
                gates: self.gates.0,
                extra: self.extra.0,
                h_full: self.h_full.0,
            },
            Saved {
                h_prev: self.h_prev.1,
                c_prev: self.c_prev.1,
                gates: self.gates.1,
                extra: self.extra.1,
                h_full: self.h_full.1,
            },
        )
    }
}

/// Views of a range of the batch of what one direction kept.
pub(super) type SavedView<'a, T> = Saved<ArrayView3<'a, T>>;
/// Mutable views of a range of the batch of what one direction kept.
type SavedMut<'a, T> = Saved<ArrayViewMut3<'a, T>>;

/// The forward of one direction of one layer over `x` `(L, N, F)` from `(h, c)`, writing
/// its output into `out` `(L, N, H_out)` and returning what its backward needs. Every
/// sequence's step is computed; a sequence past its length keeps its state and its
/// output stays zero. The products go through the fast path's kernels, on the weights
/// packed in torch's gate order.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_direction<T: Float>(
    config: &RnnConfig,
    p: &DirectionParams<T>,
    x: &Array3<T>,
    mut h: Array2<T>,
    mut c: Array2<T>,
    lengths: &[usize],
    reverse: bool,
    mut out: ArrayViewMut3<'_, T>,
    threads: usize,
) -> Saved<Array3<T>> {
    let (seq_len, batch, features) = x.dim();
    let hidden = config.hidden_size;
    let h_out = h.ncols();
    let gates = p.w_ih.nrows();
    let packed = p.pack();
    let lstm = config.kind == Kind::Lstm;
    let proj = p.w_hr.is_some();
    let width = |on: bool, w: usize| if on { w } else { 0 };
    let mut saved = Saved {
        h_prev: Array3::zeros((seq_len, batch, h_out)),
        c_prev: Array3::zeros((seq_len, batch, width(lstm, hidden))),
        gates: Array3::zeros((seq_len, batch, width(config.kind != Kind::Rnn, gates))),
        extra: Array3::zeros((seq_len, batch, hidden)),
        h_full: Array3::zeros((seq_len, batch, width(proj, hidden))),
    };
    // The input projection of every step at once: x W_ihᵀ + b_ih.
    let mut gi = Array3::<T>::zeros((seq_len, batch, gates));
    {
        let rows = seq_len * batch;
        let mut gi2 = gi
            .view_mut()
            .into_shape_with_order((rows, gates))
            .expect("owned standard array"); // ok: allocated above
        let x2 = x
            .view()
            .into_shape_with_order((rows, features))
            .expect("owned standard array"); // ok: every layer input is owned, standard
        match &p.b_ih {
            Some(b) => {
                let b = b.as_standard_layout();
                let b = b.as_slice().expect("standard layout"); // ok: made so just above
                matmul_bias(&x2, &packed.w_ih_t, b, &mut gi2, threads)
            }
            None => matmul_acc(&x2, &packed.w_ih_t, T::zero(), &mut gi2, threads),
        }
    }
    let packed = &packed;
    let run = |gi: ArrayView3<'_, T>,
               saved: SavedMut<'_, T>,
               h: ArrayViewMut2<'_, T>,
               c: ArrayViewMut2<'_, T>,
               lengths: &[usize],
               out: ArrayViewMut3<'_, T>,
               threads: usize| {
        forward_steps(
            config, p, packed, gi, saved, h, c, lengths, reverse, out, threads,
        )
    };
    let views = saved.as_mut().map(|a| a.view_mut());
    if threads >= 2 && batch >= 16 {
        // Sequences recur independently: each thread takes half of the batch for the
        // whole sequence, with no synchronisation between steps.
        let half = batch / 2;
        let (gi0, gi1) = gi.view().split_at(Axis(1), half);
        let (s0, s1) = views.map(|a| a.split_at(Axis(1), half)).unzip();
        let (h0, h1) = h.view_mut().split_at(Axis(0), half);
        let (c0, c1) = c.view_mut().split_at(Axis(0), half);
        let (l0, l1) = lengths.split_at(half);
        let (o0, o1) = out.view_mut().split_at(Axis(1), half);
        rayon::join(
            || run(gi0, s0, h0, c0, l0, o0, 1),
            || run(gi1, s1, h1, c1, l1, o1, 1),
        );
    } else {
        run(
            gi.view(),
            views,
            h.view_mut(),
            c.view_mut(),
            lengths,
            out,
            threads,
        );
    }
    saved
}

/// The step loop of [`forward_direction`] for a range of the batch: `gi` `(L, n, G*H)`
/// holds the input projections, `h` and `c` the states (updated), `saved` and `out` the
/// same rows of what is kept and of the output.
#[allow(clippy::too_many_arguments)]
fn forward_steps<T: Float>(
    config: &RnnConfig,
    p: &DirectionParams<T>,
    packed: &Packed<T>,
    gi: ArrayView3<'_, T>,
    mut saved: SavedMut<'_, T>,
    mut h: ArrayViewMut2<'_, T>,
    mut c: ArrayViewMut2<'_, T>,
    lengths: &[usize],
    reverse: bool,
    mut out: ArrayViewMut3<'_, T>,
    threads: usize,
) {
    let hidden = config.hidden_size;
    let h_out = h.ncols();
    let lstm = config.kind == Kind::Lstm;
    let proj = packed.w_hr_t.is_some();
    let width = |on: bool, w: usize| if on { w } else { 0 };
    let seq_len = gi.len_of(Axis(0));
    let half = T::of(0.5);
    let (batch, gates) = (h.nrows(), gi.len_of(Axis(2)));
    let mut gh = Array2::<T>::zeros((batch, gates));
    let mut h_new = Array2::<T>::zeros((batch, h_out));
    let mut h_full = Array2::<T>::zeros((batch, width(proj, hidden)));
    let mut tanh_c = vec![T::zero(); hidden];
    for t in time_order(seq_len, reverse) {
        saved.h_prev.index_axis_mut(Axis(0), t).assign(&h);
        // The steps past a sequence's length are kept as zeros: the weight gradients'
        // products run over every row, and a finite 0 there keeps them out.
        for (n, &length) in lengths.iter().enumerate() {
            if t >= length {
                saved.h_prev.slice_mut(s![t, n, ..]).fill(T::zero());
            }
        }
        if lstm {
            saved.c_prev.index_axis_mut(Axis(0), t).assign(&c);
        }
        // h W_hhᵀ + b_hh.
        let beta = match &p.b_hh {
            Some(b) => {
                gh.rows_mut().into_iter().for_each(|mut r| r.assign(b));
                T::one()
            }
            None => T::zero(),
        };
        matmul_acc(&h.view(), &packed.w_hh_t, beta, &mut gh.view_mut(), threads);
        let gi_t = gi.index_axis(Axis(0), t);
        let mut gates_t = saved.gates.index_axis_mut(Axis(0), t);
        let mut extra_t = saved.extra.index_axis_mut(Axis(0), t);
        for n in 0..batch {
            let a = row_slice(gi_t.row(n));
            let mut gh_row = gh.row_mut(n);
            let b = row_slice_mut(&mut gh_row);
            let mut e_row = extra_t.row_mut(n);
            let e = row_slice_mut(&mut e_row);
            match config.kind {
                Kind::Rnn => {
                    for ((v, &x), &y) in e.iter_mut().zip(a).zip(b.iter()) {
                        *v = x + y;
                    }
                    match config.nonlinearity {
                        Nonlinearity::Tanh => T::tanh_slice(e),
                        Nonlinearity::Relu => e.iter_mut().for_each(|v| *v = v.relu()),
                    }
                    h_new.row_mut(n).assign(&extra_t.row(n));
                }
                Kind::Lstm => {
                    let mut g_row = gates_t.row_mut(n);
                    let g = row_slice_mut(&mut g_row);
                    // sigmoid(v) = 0.5 + 0.5 tanh(v / 2) for i, f, o; tanh for g.
                    for ((v, &x), &y) in g.iter_mut().zip(a).zip(b.iter()) {
                        *v = x + y;
                    }
                    let (ifg, o) = g.split_at_mut(3 * hidden);
                    let (i_f, _) = ifg.split_at_mut(2 * hidden);
                    i_f.iter_mut().chain(o.iter_mut()).for_each(|v| *v *= half);
                    T::tanh_slice(g);
                    let (ifg, o) = g.split_at_mut(3 * hidden);
                    let (i_f, _) = ifg.split_at_mut(2 * hidden);
                    i_f.iter_mut()
                        .chain(o.iter_mut())
                        .for_each(|v| *v = *v * half + half);
                    let (i, rest) = g.split_at(hidden);
                    let (f, rest) = rest.split_at(hidden);
                    let (cand, o) = rest.split_at(hidden);
                    let c_row = row_slice(c.row(n));
                    for j in 0..hidden {
                        e[j] = f[j] * c_row[j] + i[j] * cand[j];
                        tanh_c[j] = e[j];
                    }
                    T::tanh_slice(&mut tanh_c);
                    let mut target = if proj {
                        h_full.row_mut(n)
                    } else {
                        h_new.row_mut(n)
                    };
                    for ((v, &o), &tc) in row_slice_mut(&mut target).iter_mut().zip(o).zip(&tanh_c)
                    {
                        *v = o * tc;
                    }
                }
                Kind::Gru => {
                    let mut g_row = gates_t.row_mut(n);
                    let g = row_slice_mut(&mut g_row);
                    // r, z = sigmoid(a + b); n = tanh(a_n + r (h W_hnᵀ + b_hn)).
                    e.copy_from_slice(&b[2 * hidden..]);
                    for ((v, &x), &y) in g[..2 * hidden].iter_mut().zip(a).zip(b.iter()) {
                        *v = (x + y) * half;
                    }
                    T::tanh_slice(&mut g[..2 * hidden]);
                    for v in &mut g[..2 * hidden] {
                        *v = *v * half + half;
                    }
                    for j in 0..hidden {
                        g[2 * hidden + j] = a[2 * hidden + j] + g[j] * e[j];
                    }
                    T::tanh_slice(&mut g[2 * hidden..]);
                    let h_row = row_slice(h.row(n));
                    let mut hn_row = h_new.row_mut(n);
                    for (j, v) in row_slice_mut(&mut hn_row).iter_mut().enumerate() {
                        let (z, cand) = (g[hidden + j], g[2 * hidden + j]);
                        *v = (h_row[j] - cand) * z + cand;
                    }
                }
            }
        }
        if let Some(w_hr_t) = &packed.w_hr_t {
            saved.h_full.index_axis_mut(Axis(0), t).assign(&h_full);
            for (n, &length) in lengths.iter().enumerate() {
                if t >= length {
                    saved.h_full.slice_mut(s![t, n, ..]).fill(T::zero());
                }
            }
            matmul_acc(
                &h_full.view(),
                w_hr_t,
                T::zero(),
                &mut h_new.view_mut(),
                threads,
            );
        }
        // Sequences past their length keep their state; their output stays 0.
        let mut out_t = out.index_axis_mut(Axis(0), t);
        for (n, &length) in lengths.iter().enumerate() {
            if t < length {
                h.row_mut(n).assign(&h_new.row(n));
                if lstm {
                    c.row_mut(n).assign(&extra_t.row(n));
                }
                out_t.row_mut(n).assign(&h_new.row(n));
            }
        }
    }
}
