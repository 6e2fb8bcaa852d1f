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

use crate::config::Nonlinearity;
use crate::element::Float;
use crate::error::Result;
use crate::module::{finish, Rnn};
use crate::params::DirectionParams;
use crate::shape::prepare;

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
                from_input = from_input + x[[n, k]] * params.w_ih[[j, k]];
            }
            let mut from_hidden = params.b_hh.as_ref().map_or(T::zero(), |b| b[j]);
            for k in 0..hidden {
                from_hidden = from_hidden + h[[n, k]] * params.w_hh[[j, k]];
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
