//! Backpropagation through time for RNN, LSTM (with `proj_size`) and GRU: the gradients
//! torch autograd gives for
//! `loss = sum(output * grad_output) + sum(h_n * grad_h_n) [+ sum(c_n * grad_c_n)]`.
//!
//! It mirrors the forward: the stack runs from the last layer down, each (layer,
//! direction) walks time in the opposite order of its forward scan, and every step is
//! the chain rule through one cell (`da` the gradient of the gates' pre-activations):
//!
//! ```text
//! RNN   h = act(a)                         da = dh ⊙ act'(a)   (from h: 1 - h², h > 0)
//! LSTM  c = f c' + i g, h = o tanh(c) [W_hrᵀ]
//!       do = dh ⊙ tanh c, dc += dh ⊙ o (1 - tanh² c), di = dc g, df = dc c', dg = dc i
//! GRU   n = tanh(a_n + r (W_hn h' + b_hn)), h = (1 - z) n + z h'
//! then  dW_ih += da_inᵀ x, dW_hh += da_hiddenᵀ h', db += Σ da,
//!       dx += da_in W_ih, dh' = da_hidden W_hh (+ the direct paths: LSTM's c, GRU's z h')
//! ```
//!
//! What the forward keeps for this, per time step and sequence, for every layer and
//! direction: the state h (RNN: `H` values), the gate activations and the cell state
//! (LSTM: `4H + H` values, plus `H` for the unprojected output with `proj_size`), the
//! gates and `W_hn h + b_hn` (GRU: `3H + H`). The forward is recomputed here in
//! evaluation mode (no dropout). With lengths, a sequence's steps past its length carry
//! its state unchanged, so their gradient passes straight through to its last valid step.
//!
//! Speed: the products go through the forward's kernels (the per-step ones on weights
//! packed in torch's gate order, the weight gradients as matrixmultiply products over
//! all steps at once), and with two threads and a batch of 16 or more each thread runs
//! the step loops of half of the batch, with no synchronisation between steps.
//!
//! The files, each importing only those below it: this one (the public methods, and the
//! driver that checks what the caller gave, lays it out time-major and lays the
//! gradients back out in the caller's shapes), `stack.rs` (the layers, the last first,
//! and the dropout between them), `direction.rs` (one direction's recurrence backwards
//! over time), `saved.rs` (one direction's forward again, keeping what its backward
//! reads) and `cell.rs` (the LSTM and GRU cells' derivatives).

mod cell;
mod direction;
mod saved;
mod stack;

use ndarray::{Array3, ArrayD, ArrayViewD, Axis, Ix3};

use crate::config::Kind;
use crate::dropout::DropoutMasks;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::module::{Gru, Lstm, Rnn};
use crate::params::Layers;
use crate::shape::{check_lengths, prepare_with_cell};
use crate::state::{IntoHidden, IntoLstmState};
use direction::clear_padding;
use stack::{backward_stack, StackGrads};

/// Gradients of a scalar loss with respect to everything the forward read.
#[derive(Debug, Clone)]
pub struct Gradients<T> {
    /// `(name, gradient)` for every parameter, torch's names, `named_parameters()` order.
    pub parameters: Vec<(String, ArrayD<T>)>,
    /// The gradient of the input, in the input's shape.
    pub input: ArrayD<T>,
    /// The gradient of h_0, in h_0's shape (that of the zero state when none was given).
    pub h0: ArrayD<T>,
    /// LSTM: the gradient of c_0, in c_0's shape.
    pub c0: Option<ArrayD<T>>,
}

impl<T> Gradients<T> {
    /// The gradient of the parameter named `name`.
    pub fn parameter(&self, name: &str) -> Option<&ArrayD<T>> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, g)| g)
    }
}

/// The backward methods of the layers whose only state is h (RNN, GRU).
macro_rules! h_state_backward {
    ($ty:ident) => {
        impl<T: Float> $ty<T> {
            /// The gradients of `sum(output * grad_output) + sum(h_n * grad_h_n)` with
            /// respect to every parameter, the input and h_0 — what `loss.backward()`
            /// gives in torch, in evaluation mode. `grad_output` has the output's shape
            /// and `grad_h_n` (zeros when `None`) h_n's.
            ///
            /// ```
            /// use ndarray::Array3;
            /// use recurrent::{Rnn, RnnConfig};
            /// let rnn = Rnn::<f64>::seeded(RnnConfig::new(3, 4).num_layers(2), 0)?;
            /// let x = Array3::<f64>::from_elem((5, 2, 3), 0.1);
            /// let go = Array3::<f64>::ones((5, 2, 4)); // loss = sum(output)
            /// let grads = rnn.backward(x.view().into_dyn(), None, go.view().into_dyn(), None)?;
            /// assert_eq!(grads.parameter("weight_hh_l1").unwrap().shape(), [4, 4]);
            /// assert_eq!(grads.input.shape(), [5, 2, 3]);
            /// # Ok::<(), recurrent::Error>(())
            /// ```
            pub fn backward<'s>(
                &self,
                input: ArrayViewD<'_, T>,
                h0: impl IntoHidden<'s, T>,
                grad_output: ArrayViewD<'_, T>,
                grad_h_n: Option<ArrayViewD<'_, T>>,
            ) -> Result<Gradients<T>> {
                let h0 = h0.into_hidden();
                backward_layers(
                    self.layers(),
                    input,
                    h0,
                    None,
                    grad_output,
                    grad_h_n,
                    None,
                    None,
                    None,
                )
            }

            /// `backward` for the training forward `forward_with_masks`: the same
            /// dropout factors between layers.
            pub fn backward_with_masks<'s>(
                &self,
                input: ArrayViewD<'_, T>,
                h0: impl IntoHidden<'s, T>,
                masks: &DropoutMasks<T>,
                grad_output: ArrayViewD<'_, T>,
                grad_h_n: Option<ArrayViewD<'_, T>>,
            ) -> Result<Gradients<T>> {
                let h0 = h0.into_hidden();
                backward_layers(
                    self.layers(),
                    input,
                    h0,
                    None,
                    grad_output,
                    grad_h_n,
                    None,
                    None,
                    Some(masks),
                )
            }

            /// `backward` for the variable-length forward `forward_padded`.
            pub fn backward_padded<'s>(
                &self,
                input: ArrayViewD<'_, T>,
                lengths: &[usize],
                h0: impl IntoHidden<'s, T>,
                grad_output: ArrayViewD<'_, T>,
                grad_h_n: Option<ArrayViewD<'_, T>>,
            ) -> Result<Gradients<T>> {
                let h0 = h0.into_hidden();
                backward_layers(
                    self.layers(),
                    input,
                    h0,
                    None,
                    grad_output,
                    grad_h_n,
                    None,
                    Some(lengths),
                    None,
                )
            }
        }
    };
}

h_state_backward!(Rnn);
h_state_backward!(Gru);

/// The gradients with respect to `h_n` and `c_n` given to [`Lstm::backward`] (zeros
/// where `None`).
pub type LstmStateGrad<'a, T> = (Option<ArrayViewD<'a, T>>, Option<ArrayViewD<'a, T>>);

impl<T: Float> Lstm<T> {
    /// The gradients of `sum(output * grad_output) + sum(h_n * grad_h_n) + sum(c_n *
    /// grad_c_n)` with respect to every parameter, the input, h_0 and c_0 (in
    /// [`Gradients::c0`]); see [`Rnn::backward`].
    pub fn backward<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        state: impl IntoLstmState<'s, T>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: LstmStateGrad<'_, T>,
    ) -> Result<Gradients<T>> {
        let (h0, c0) = state.into_lstm_state().unzip();
        backward_layers(
            self.layers(),
            input,
            h0,
            c0,
            grad_output,
            grad_state.0,
            grad_state.1,
            None,
            None,
        )
    }

    /// [`Lstm::backward`] for [`Lstm::forward_with_masks`].
    pub fn backward_with_masks<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        state: impl IntoLstmState<'s, T>,
        masks: &DropoutMasks<T>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: LstmStateGrad<'_, T>,
    ) -> Result<Gradients<T>> {
        let (h0, c0) = state.into_lstm_state().unzip();
        backward_layers(
            self.layers(),
            input,
            h0,
            c0,
            grad_output,
            grad_state.0,
            grad_state.1,
            None,
            Some(masks),
        )
    }

    /// [`Lstm::backward`] for [`Lstm::forward_padded`].
    pub fn backward_padded<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        lengths: &[usize],
        state: impl IntoLstmState<'s, T>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: LstmStateGrad<'_, T>,
    ) -> Result<Gradients<T>> {
        let (h0, c0) = state.into_lstm_state().unzip();
        backward_layers(
            self.layers(),
            input,
            h0,
            c0,
            grad_output,
            grad_state.0,
            grad_state.1,
            Some(lengths),
            None,
        )
    }
}

/// The general backward: any kind, optional c_0 (LSTM) and lengths.
#[allow(clippy::too_many_arguments)]
fn backward_layers<T: Float>(
    layers: &Layers<T>,
    input: ArrayViewD<'_, T>,
    h0: Option<ArrayViewD<'_, T>>,
    c0: Option<ArrayViewD<'_, T>>,
    grad_output: ArrayViewD<'_, T>,
    grad_h_n: Option<ArrayViewD<'_, T>>,
    grad_c_n: Option<ArrayViewD<'_, T>>,
    lengths: Option<&[usize]>,
    masks: Option<&DropoutMasks<T>>,
) -> Result<Gradients<T>> {
    let config = layers.config();
    let prepared = prepare_with_cell(config, input, h0, c0)?;
    let (hidden, h_out) = (config.hidden_size, config.output_hidden_size());
    let (directions, num_layers) = (config.num_directions(), config.num_layers);
    let (seq_len, batch) = (prepared.seq_len(), prepared.batch());
    let lengths: Vec<usize> = match lengths {
        Some(l) => {
            check_lengths(l, &prepared)?;
            l.to_vec()
        }
        None => vec![seq_len; batch],
    };
    if let Some(masks) = masks {
        masks.check(config, seq_len, batch)?;
    }
    crate::memory::backward_budget(config, seq_len, batch, std::mem::size_of::<T>()).check(
        || format!("the backward pass of {config} over {seq_len} steps of {batch} sequences"),
    )?;
    let states = directions * num_layers;
    let (out_shape, hn_shape, cn_shape) = if prepared.unbatched {
        (
            vec![seq_len, directions * h_out],
            vec![states, h_out],
            vec![states, hidden],
        )
    } else if prepared.batch_first {
        (
            vec![batch, seq_len, directions * h_out],
            vec![states, batch, h_out],
            vec![states, batch, hidden],
        )
    } else {
        (
            vec![seq_len, batch, directions * h_out],
            vec![states, batch, h_out],
            vec![states, batch, hidden],
        )
    };
    let check =
        |a: &ArrayViewD<'_, T>, what: &'static str, what_of: &'static str, expected: &[usize]| {
            if a.shape() == expected {
                Ok(())
            } else {
                Err(Error::GradientShape {
                    what,
                    what_of,
                    expected: expected.to_vec(),
                    got: a.shape().to_vec(),
                })
            }
        };
    check(&grad_output, "grad_output", "output", &out_shape)?;
    // (L, N, F)-ordered, standard-layout copies of everything the steps read.
    let time_major = |a: ArrayViewD<'_, T>, batch_first: bool| -> Result<Array3<T>> {
        let a = if prepared.unbatched {
            a.insert_axis(Axis(1))
        } else {
            a
        };
        let a = a
            .into_dimensionality::<Ix3>()
            .map_err(|_| Error::Config("internal error: gradient rank".to_string()))?;
        let a = if batch_first {
            a.permuted_axes([1, 0, 2])
        } else {
            a
        };
        Ok(a.as_standard_layout().into_owned())
    };
    let mut x0: Array3<T> = {
        let v = prepared.input.view();
        if prepared.batch_first {
            v.permuted_axes([1, 0, 2])
        } else {
            v
        }
        .as_standard_layout()
        .into_owned()
    };
    // Nothing past a sequence's length may reach a result: torch's packed pass never
    // reads the padding, so it is cleared here (0 * NaN would be NaN in the products
    // over all rows).
    clear_padding(&mut x0.view_mut(), &lengths);
    let grad = time_major(grad_output, prepared.batch_first)?;
    let grad_hn = match grad_h_n {
        Some(g) => {
            check(&g, "grad_h_n", "h_n", &hn_shape)?;
            time_major(g, false)?
        }
        None => Array3::zeros((states, batch, h_out)),
    };
    let grad_cn = match grad_c_n {
        Some(g) if config.kind == Kind::Lstm => {
            check(&g, "grad_c_n", "c_n", &cn_shape)?;
            time_major(g, false)?
        }
        Some(_) => {
            return Err(Error::Config(
                "grad_c_n: only an LSTM has a cell state".to_string(),
            ))
        }
        None => Array3::zeros((states, batch, hidden)),
    };

    if batch == 0 {
        // No sequence, no step: every gradient is zero (and the input's is empty).
        let zeros = |shape: Vec<usize>| ArrayD::<T>::zeros(shape);
        let mut in_shape = out_shape.clone();
        if let Some(last) = in_shape.last_mut() {
            *last = config.input_size;
        }
        return Ok(Gradients {
            parameters: layers
                .named_parameters()
                .map(|(name, p)| (name, zeros(p.shape().to_vec())))
                .collect(),
            input: zeros(in_shape),
            h0: zeros(hn_shape),
            c0: (config.kind == Kind::Lstm).then(|| zeros(cn_shape)),
        });
    }

    let StackGrads {
        parameters: param_grads,
        input: grad,
        h0: grad_h0,
        c0: grad_c0,
    } = backward_stack(
        layers, &prepared, x0, &lengths, masks, grad, &grad_hn, &grad_cn,
    );
    let input_grad = if prepared.batch_first {
        grad.permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned()
    } else {
        grad
    }
    .into_dyn();
    let unbatch = |a: ArrayD<T>| {
        if prepared.unbatched {
            a.remove_axis(Axis(1))
        } else {
            a
        }
    };
    Ok(Gradients {
        parameters: param_grads,
        input: unbatch(input_grad),
        h0: unbatch(grad_h0.into_dyn()),
        c0: (config.kind == Kind::Lstm).then(|| unbatch(grad_c0.into_dyn())),
    })
}
