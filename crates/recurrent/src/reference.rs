//! The reference implementation: torch.nn.RNN as a plain loop, written to be read.
//!
//! This is the specification the fast path is tested against. It favours clarity over
//! speed: one scalar multiply-add at a time, in the order of the formula
//!
//! ```text
//! h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
//! ```
//!
//! - Layer 0 reads the input; layer k > 0 reads the output sequence of layer k - 1 (both
//!   directions concatenated, `D * H` wide) — never the raw input.
//! - The reverse direction starts from its h_0 at the last time step and walks down; its
//!   output at `t` is its state after reading `x_{L-1} .. x_t`.
//! - h_0 is copied, never written: the caller's tensor is left as it was.
//! - `h_n[layer * D + direction]` is the direction's state after its last step.
//! - Evaluation mode: no dropout.

use ndarray::{s, Array2, Array3, ArrayD, ArrayView2, ArrayViewD, Axis};

use crate::config::{Kind, Nonlinearity};
use crate::element::Float;
use crate::error::Result;
use crate::module::{finish, Rnn};
use crate::params::{DirectionParams, Layers};
use crate::shape::{prepare, prepare_with_cell};

/// Runs `rnn` on `input` with the plain loop; same contract as [`Rnn::forward`].
///
/// ```
/// use ndarray::Array2;
/// use recurrent::{reference, Rnn, RnnConfig};
/// let rnn = Rnn::<f64>::seeded(RnnConfig::new(2, 3), 7)?;
/// let x = Array2::from_shape_fn((4, 2), |(t, i)| (t + i) as f64 * 0.1); // unbatched (L, H_in)
/// let (out_ref, _) = reference::forward(&rnn, x.view().into_dyn(), None)?;
/// let (out_fast, _) = rnn.forward(x.view().into_dyn(), None)?;
/// assert!((&out_ref - &out_fast).iter().all(|d| d.abs() < 1e-12));
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn forward<T: Float>(
    rnn: &Rnn<T>,
    input: ArrayViewD<'_, T>,
    h0: Option<ArrayViewD<'_, T>>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    let config = rnn.config();
    let prepared = prepare(config, input, h0)?;
    // An empty batch has nothing to loop over, whatever its length.
    if let Some((output, h_n, _)) = crate::module::preflight(config, &prepared) {
        return Ok(crate::module::finish(output, h_n, prepared.unbatched));
    }
    let hidden = config.hidden_size;
    let directions = config.num_directions();

    // Work sequence-first: x[t] is the (N, features) batch at step t.
    let mut x: Array3<T> = if prepared.batch_first {
        prepared.input.view().permuted_axes([1, 0, 2]).to_owned()
    } else {
        prepared.input.to_owned()
    };
    let (seq_len, batch, _) = x.dim();
    let mut h_n = Array3::zeros((directions * config.num_layers, batch, hidden));

    for layer in 0..config.num_layers {
        let mut layer_output = Array3::zeros((seq_len, batch, directions * hidden));
        for direction in 0..directions {
            let index = layer * directions + direction;
            let params = &rnn.layers().all_direction_params()[index];
            // A private copy of this direction's initial state.
            let mut h: Array2<T> = match &prepared.h0 {
                Some(h0) => h0.index_axis(Axis(0), index).to_owned(),
                None => Array2::zeros((batch, hidden)),
            };
            let times: Vec<usize> = if direction == 0 {
                (0..seq_len).collect()
            } else {
                (0..seq_len).rev().collect()
            };
            for t in times {
                h = cell(
                    params,
                    config.nonlinearity,
                    x.index_axis(Axis(0), t),
                    h.view(),
                );
                layer_output
                    .slice_mut(s![t, .., direction * hidden..(direction + 1) * hidden])
                    .assign(&h);
            }
            h_n.index_axis_mut(Axis(0), index).assign(&h);
        }
        x = layer_output;
    }

    let output = if prepared.batch_first {
        x.permuted_axes([1, 0, 2]).as_standard_layout().into_owned()
    } else {
        x
    };
    Ok(finish(
        output.into_dyn(),
        h_n.into_dyn(),
        prepared.unbatched,
    ))
}

/// One step of one direction: `act(x W_ih^T + b_ih + h W_hh^T + b_hh)` for a batch.
///
/// `x` is `(N, features)`, `h` is `(N, H)`; returns the new `(N, H)` state.
pub fn cell<T: Float>(
    params: &DirectionParams<T>,
    nonlinearity: Nonlinearity,
    x: ArrayView2<'_, T>,
    h: ArrayView2<'_, T>,
) -> Array2<T> {
    let (batch, features) = x.dim();
    let hidden = params.w_hh.nrows();
    let mut next = Array2::zeros((batch, hidden));
    for n in 0..batch {
        for j in 0..hidden {
            let mut from_input = params.b_ih.as_ref().map_or(T::zero(), |b| b[j]);
            for k in 0..features {
                from_input += x[[n, k]] * params.w_ih[[j, k]];
            }
            let mut from_hidden = params.b_hh.as_ref().map_or(T::zero(), |b| b[j]);
            for k in 0..hidden {
                from_hidden += h[[n, k]] * params.w_hh[[j, k]];
            }
            let pre_activation = from_input + from_hidden;
            next[[n, j]] = match nonlinearity {
                Nonlinearity::Tanh => pre_activation.tanh(),
                Nonlinearity::Relu => pre_activation.relu(),
            };
        }
    }
    next
}

/// `(output, h_n, c_n)`; `c_n` for an LSTM only.
pub type LayersOutput<T> = (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>);

/// The general reference: any [`crate::Kind`], optional c_0 (LSTM), optional per-sequence
/// lengths (as `pack_padded_sequence` -> layer -> `pad_packed_sequence(total_length=L)`).
///
/// Returns `(output, h_n, c_n)`, `c_n` for an LSTM only. With `lengths`, sequence `n`
/// stops after `lengths[n]` steps: its outputs past that are zero, its h_n/c_n are its
/// last valid states, and its reverse direction starts at its own last element.
pub fn forward_layers<T: Float>(
    layers: &Layers<T>,
    input: ArrayViewD<'_, T>,
    h0: Option<ArrayViewD<'_, T>>,
    c0: Option<ArrayViewD<'_, T>>,
    lengths: Option<&[usize]>,
) -> Result<LayersOutput<T>> {
    let config = layers.config();
    let prepared = prepare_with_cell(config, input, h0, c0)?;
    let hidden = config.hidden_size;
    let h_out = config.output_hidden_size();
    let directions = config.num_directions();
    let mut x: Array3<T> = if prepared.batch_first {
        prepared.input.view().permuted_axes([1, 0, 2]).to_owned()
    } else {
        prepared.input.to_owned()
    };
    let (seq_len, batch, _) = x.dim();
    let lengths: Vec<usize> = match lengths {
        Some(l) => {
            crate::shape::check_lengths(l, &prepared)?;
            l.to_vec()
        }
        None => vec![seq_len; batch],
    };
    if let Some((output, h_n, c_n)) = crate::module::preflight(config, &prepared) {
        let (output, h_n) = crate::module::finish(output, h_n, prepared.unbatched);
        return Ok((output, h_n, (config.kind == Kind::Lstm).then_some(c_n)));
    }
    let mut h_n = Array3::zeros((directions * config.num_layers, batch, h_out));
    let mut c_n = Array3::zeros((directions * config.num_layers, batch, hidden));

    for layer in 0..config.num_layers {
        let mut layer_output = Array3::zeros((seq_len, batch, directions * h_out));
        for direction in 0..directions {
            let index = layer * directions + direction;
            let params = &layers.all_direction_params()[index];
            // Private copies of this direction's initial states.
            let mut h: Array2<T> = match &prepared.h0 {
                Some(h0) => h0.index_axis(Axis(0), index).to_owned(),
                None => Array2::zeros((batch, h_out)),
            };
            let mut c: Array2<T> = match &prepared.c0 {
                Some(c0) => c0.index_axis(Axis(0), index).to_owned(),
                None => Array2::zeros((batch, hidden)),
            };
            for (n, &length) in lengths.iter().enumerate() {
                let steps: Vec<usize> = if direction == 0 {
                    (0..length).collect()
                } else {
                    (0..length).rev().collect()
                };
                for t in steps {
                    let xt = x.slice(s![t, n..n + 1, ..]);
                    let (hn, cn) = match config.kind {
                        Kind::Rnn => (
                            cell(params, config.nonlinearity, xt, h.slice(s![n..n + 1, ..])),
                            None,
                        ),
                        Kind::Lstm => {
                            let (hn, cn) = lstm_cell(
                                params,
                                xt,
                                h.slice(s![n..n + 1, ..]),
                                c.slice(s![n..n + 1, ..]),
                            );
                            (hn, Some(cn))
                        }
                        Kind::Gru => (gru_cell(params, xt, h.slice(s![n..n + 1, ..])), None),
                    };
                    h.slice_mut(s![n..n + 1, ..]).assign(&hn);
                    if let Some(cn) = cn {
                        c.slice_mut(s![n..n + 1, ..]).assign(&cn);
                    }
                    layer_output
                        .slice_mut(s![t, n, direction * h_out..(direction + 1) * h_out])
                        .assign(&hn.row(0));
                }
            }
            h_n.index_axis_mut(Axis(0), index).assign(&h);
            c_n.index_axis_mut(Axis(0), index).assign(&c);
        }
        x = layer_output;
    }
    let output = if prepared.batch_first {
        x.permuted_axes([1, 0, 2]).as_standard_layout().into_owned()
    } else {
        x
    };
    let (output, h_n) = finish(output.into_dyn(), h_n.into_dyn(), prepared.unbatched);
    let c_n = (config.kind == Kind::Lstm).then(|| {
        let c_n = c_n.into_dyn();
        if prepared.unbatched {
            c_n.remove_axis(Axis(1))
        } else {
            c_n
        }
    });
    Ok((output, h_n, c_n))
}

/// The logistic function `1 / (1 + exp(-x))`.
pub fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// One LSTM step for a batch: gates `i, f, g, o` (in that order in the weights) from
/// `x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`; `c' = f c + i g`; `h' = o tanh(c')`, then
/// `h' W_hrᵀ` when the layer has a projection. Returns `(h', c')`.
pub fn lstm_cell<T: Float>(
    params: &DirectionParams<T>,
    x: ArrayView2<'_, T>,
    h: ArrayView2<'_, T>,
    c: ArrayView2<'_, T>,
) -> (Array2<T>, Array2<T>) {
    let hidden = c.ncols();
    let gates = pre_activations(params, x, h);
    let mut c_next = Array2::zeros(c.raw_dim());
    let mut h_full = Array2::zeros(c.raw_dim());
    for n in 0..c.nrows() {
        for j in 0..hidden {
            let i = sigmoid(gates[[n, j]]);
            let f = sigmoid(gates[[n, hidden + j]]);
            let g = gates[[n, 2 * hidden + j]].tanh();
            let o = sigmoid(gates[[n, 3 * hidden + j]]);
            c_next[[n, j]] = f * c[[n, j]] + i * g;
            h_full[[n, j]] = o * c_next[[n, j]].tanh();
        }
    }
    let h_next = match &params.w_hr {
        Some(w_hr) => matmul_t(h_full.view(), w_hr.view()),
        None => h_full,
    };
    (h_next, c_next)
}

/// One GRU step for a batch: gates `r, z, n` (in that order); `r` multiplies the hidden
/// product *including* its bias: `n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn))`;
/// `h' = (1 - z) n + z h`, computed as ATen does, `(h - n) z + n`.
pub fn gru_cell<T: Float>(
    params: &DirectionParams<T>,
    x: ArrayView2<'_, T>,
    h: ArrayView2<'_, T>,
) -> Array2<T> {
    let hidden = h.ncols();
    let mut from_input = matmul_t(x, params.w_ih.view());
    let mut from_hidden = matmul_t(h, params.w_hh.view());
    if let (Some(b_ih), Some(b_hh)) = (&params.b_ih, &params.b_hh) {
        add_bias(&mut from_input, b_ih);
        add_bias(&mut from_hidden, b_hh);
    }
    let mut next = Array2::zeros(h.raw_dim());
    for n in 0..h.nrows() {
        for j in 0..hidden {
            let r = sigmoid(from_input[[n, j]] + from_hidden[[n, j]]);
            let z = sigmoid(from_input[[n, hidden + j]] + from_hidden[[n, hidden + j]]);
            let candidate =
                (from_input[[n, 2 * hidden + j]] + r * from_hidden[[n, 2 * hidden + j]]).tanh();
            next[[n, j]] = (h[[n, j]] - candidate) * z + candidate;
        }
    }
    next
}

/// `x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`, all gates.
fn pre_activations<T: Float>(
    params: &DirectionParams<T>,
    x: ArrayView2<'_, T>,
    h: ArrayView2<'_, T>,
) -> Array2<T> {
    let mut gates = matmul_t(x, params.w_ih.view());
    gates.zip_mut_with(&matmul_t(h, params.w_hh.view()), |a, &b| *a += b);
    if let (Some(b_ih), Some(b_hh)) = (&params.b_ih, &params.b_hh) {
        add_bias(&mut gates, b_ih);
        add_bias(&mut gates, b_hh);
    }
    gates
}

/// Adds `bias` to every row.
fn add_bias<T: Float>(a: &mut Array2<T>, bias: &ndarray::Array1<T>) {
    for mut row in a.rows_mut() {
        row.zip_mut_with(bias, |x, &b| *x += b);
    }
}

/// `a wᵀ` by plain loops.
fn matmul_t<T: Float>(a: ArrayView2<'_, T>, w: ArrayView2<'_, T>) -> Array2<T> {
    let (rows, inner) = a.dim();
    let cols = w.nrows();
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        let mut acc = T::zero();
        for k in 0..inner {
            acc += a[[r, k]] * w[[c, k]];
        }
        acc
    })
}
