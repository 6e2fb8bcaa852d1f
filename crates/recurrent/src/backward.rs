//! Backpropagation through time for `torch.nn.RNN` (tanh and relu): the gradients torch
//! autograd gives for `loss = sum(output * grad_output) + sum(h_n * grad_h_n)`.
//!
//! It mirrors the forward: the stack runs from the last layer down, each (layer,
//! direction) walks time in the opposite order of its forward scan, and every step is
//! the chain rule through one cell:
//!
//! ```text
//! forward:  h_t = act(a_t),  a_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
//! backward: dh_t  = grad_out_t + dh_{t+1}→t      (what later steps send back)
//!           da_t  = dh_t ⊙ act'(a_t)             (tanh: 1 - h_t², relu: h_t > 0)
//!           dW_ih += da_tᵀ x_t,  dW_hh += da_tᵀ h_{t-1},  db_ih = db_hh += Σ_n da_t
//!           dx_t  += da_t W_ih,  dh_{t-1} = da_t W_hh
//! ```
//!
//! What the forward keeps for this: every layer's output sequence, `(L, N, D·H)` per
//! layer, i.e. `num_layers · D · H` values per time step and sequence (the derivative of
//! tanh and relu is recovered from the output itself). The forward is recomputed here in
//! evaluation mode (no dropout); layer k's input is layer k-1's saved output.

use ndarray::{s, Array1, Array2, Array3, ArrayD, ArrayView2, ArrayViewD, Axis, Ix3};

use crate::config::Nonlinearity;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::module::Rnn;
use crate::params::{param_names, ParamKind};
use crate::shape::prepare;

/// Gradients of a scalar loss with respect to everything the forward read.
#[derive(Debug, Clone)]
pub struct Gradients<T> {
    /// `(name, gradient)` for every parameter, torch's names, `named_parameters()` order.
    pub parameters: Vec<(String, ArrayD<T>)>,
    /// The gradient of the input, in the input's shape.
    pub input: ArrayD<T>,
    /// The gradient of h_0, in h_0's shape (that of the zero state when none was given).
    pub h0: ArrayD<T>,
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

impl<T: Float> Rnn<T> {
    /// The gradients of `sum(output * grad_output) + sum(h_n * grad_h_n)` with respect to
    /// every parameter, the input and h_0 — what `loss.backward()` gives in torch, in
    /// evaluation mode (no dropout).
    ///
    /// `grad_output` has the output's shape and `grad_h_n` (zeros when `None`) h_n's.
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
    pub fn backward(
        &self,
        input: ArrayViewD<'_, T>,
        h0: Option<ArrayViewD<'_, T>>,
        grad_output: ArrayViewD<'_, T>,
        grad_h_n: Option<ArrayViewD<'_, T>>,
    ) -> Result<Gradients<T>> {
        let config = self.config();
        let prepared = prepare(config, input, h0)?;
        let (hidden, directions, layers) = (
            config.hidden_size,
            config.num_directions(),
            config.num_layers,
        );
        // The forward results' shapes in the caller's form; the gradients must match.
        let (seq_len, batch) = (prepared.seq_len(), prepared.batch());
        let width = directions * hidden;
        let states = directions * layers;
        let (out_shape, hn_shape) = if prepared.unbatched {
            (vec![seq_len, width], vec![states, hidden])
        } else if prepared.batch_first {
            (vec![batch, seq_len, width], vec![states, batch, hidden])
        } else {
            (vec![seq_len, batch, width], vec![states, batch, hidden])
        };
        let to_time_major = |a: ArrayViewD<'_, T>,
                             what: &'static str,
                             what_of: &'static str,
                             expected: &[usize]|
         -> Result<Array3<T>> {
            if a.shape() != expected {
                return Err(Error::GradientShape {
                    what,
                    what_of,
                    expected: expected.to_vec(),
                    got: a.shape().to_vec(),
                });
            }
            let a3 = if prepared.unbatched {
                a.insert_axis(Axis(1))
            } else {
                a
            };
            let a3 = a3
                .into_dimensionality::<Ix3>()
                .map_err(|_| Error::GradientShape {
                    what,
                    what_of,
                    expected: expected.to_vec(),
                    got: expected.to_vec(),
                })?;
            Ok(a3.as_standard_layout().into_owned())
        };
        let x0: Array3<T> = {
            let v = prepared.input.view();
            if prepared.batch_first {
                v.permuted_axes([1, 0, 2])
            } else {
                v
            }
            .as_standard_layout()
            .into_owned()
        };
        let grad = to_time_major(grad_output, "grad_output", "output", &out_shape)?;
        let mut grad = if prepared.batch_first {
            grad.permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
        } else {
            grad
        };
        let grad_hn: Array3<T> = match grad_h_n {
            None => Array3::zeros((states, batch, hidden)),
            Some(g) => {
                // h_n never has batch_first; only the unbatched form drops an axis.
                if g.shape() != hn_shape.as_slice() {
                    return Err(Error::GradientShape {
                        what: "grad_h_n",
                        what_of: "h_n",
                        expected: hn_shape.clone(),
                        got: g.shape().to_vec(),
                    });
                }
                let g = if prepared.unbatched {
                    g.insert_axis(Axis(1))
                } else {
                    g
                };
                g.into_dimensionality::<Ix3>()
                    .map_err(|_| Error::Config("internal error: grad_h_n rank".to_string()))?
                    .to_owned()
            }
        };

        // Forward, keeping every layer's output sequence.
        let mut outputs: Vec<Array3<T>> = Vec::with_capacity(layers);
        for layer in 0..layers {
            let x = if layer == 0 { &x0 } else { &outputs[layer - 1] };
            let mut out = Array3::zeros((seq_len, batch, directions * hidden));
            for direction in 0..directions {
                let index = layer * directions + direction;
                let p = &self.layers().all_direction_params()[index];
                let mut h: Array2<T> = match &prepared.h0 {
                    Some(h0) => h0.index_axis(Axis(0), index).to_owned(),
                    None => Array2::zeros((batch, hidden)),
                };
                for t in time_order(seq_len, direction == 1) {
                    let mut a = x.index_axis(Axis(0), t).dot(&p.w_ih.t()) + h.dot(&p.w_hh.t());
                    if let (Some(b_ih), Some(b_hh)) = (&p.b_ih, &p.b_hh) {
                        a += &(b_ih + b_hh);
                    }
                    h = a.mapv(|v| match config.nonlinearity {
                        Nonlinearity::Tanh => v.tanh(),
                        Nonlinearity::Relu => v.relu(),
                    });
                    out.slice_mut(s![t, .., direction * hidden..(direction + 1) * hidden])
                        .assign(&h);
                }
            }
            outputs.push(out);
        }

        // Backward, from the last layer down.
        let mut param_grads: Vec<(String, ArrayD<T>)> = Vec::new();
        let mut grad_h0 = Array3::<T>::zeros((states, batch, hidden));
        for layer in (0..layers).rev() {
            let x = if layer == 0 { &x0 } else { &outputs[layer - 1] };
            let out = &outputs[layer];
            let mut grad_x = Array3::<T>::zeros(x.raw_dim());
            let mut layer_grads = Vec::new();
            for direction in 0..directions {
                let index = layer * directions + direction;
                let p = &self.layers().all_direction_params()[index];
                let cols = direction * hidden..(direction + 1) * hidden;
                let mut g_w_ih = Array2::<T>::zeros(p.w_ih.raw_dim());
                let mut g_w_hh = Array2::<T>::zeros(p.w_hh.raw_dim());
                let mut g_b = Array1::<T>::zeros(hidden);
                let mut dh_next: Array2<T> = grad_hn.index_axis(Axis(0), index).to_owned();
                let order: Vec<usize> = time_order(seq_len, direction == 1).collect();
                for (i, &t) in order.iter().enumerate().rev() {
                    let h_t = out.slice(s![t, .., cols.clone()]);
                    let h_prev: Array2<T> = if i == 0 {
                        match &prepared.h0 {
                            Some(h0) => h0.index_axis(Axis(0), index).to_owned(),
                            None => Array2::zeros((batch, hidden)),
                        }
                    } else {
                        out.slice(s![order[i - 1], .., cols.clone()]).to_owned()
                    };
                    let dh = &grad.slice(s![t, .., cols.clone()]) + &dh_next;
                    let da = derivative(config.nonlinearity, dh, h_t);
                    g_w_ih += &da.t().dot(&x.index_axis(Axis(0), t));
                    g_w_hh += &da.t().dot(&h_prev);
                    g_b += &da.sum_axis(Axis(0));
                    let gx = da.dot(&p.w_ih);
                    let mut gx_t = grad_x.index_axis_mut(Axis(0), t);
                    gx_t += &gx;
                    dh_next = da.dot(&p.w_hh);
                }
                grad_h0.index_axis_mut(Axis(0), index).assign(&dh_next);
                layer_grads.push((index, g_w_ih, g_w_hh, g_b));
            }
            for (index, g_w_ih, g_w_hh, g_b) in layer_grads {
                let reverse = index % directions == 1;
                for name in param_names(config)
                    .into_iter()
                    .filter(|n| n.layer == layer && n.reverse == reverse)
                {
                    let g = match name.kind {
                        ParamKind::WeightIh => g_w_ih.clone().into_dyn(),
                        ParamKind::WeightHh => g_w_hh.clone().into_dyn(),
                        ParamKind::BiasIh | ParamKind::BiasHh => g_b.clone().into_dyn(),
                        ParamKind::WeightHr => continue,
                    };
                    param_grads.push((name.to_string(), g));
                }
            }
            grad = grad_x;
        }
        // torch's order: by layer, direction, kind.
        let order: Vec<String> = self.parameter_names();
        param_grads.sort_by_key(|(n, _)| order.iter().position(|o| o == n));

        let input_grad = if prepared.batch_first {
            grad.permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
        } else {
            grad
        }
        .into_dyn();
        let (input_grad, h0_grad) = if prepared.unbatched {
            (
                input_grad.remove_axis(Axis(1)),
                grad_h0.into_dyn().remove_axis(Axis(1)),
            )
        } else {
            (input_grad, grad_h0.into_dyn())
        };
        Ok(Gradients {
            parameters: param_grads,
            input: input_grad,
            h0: h0_grad,
        })
    }
}

/// Time steps in the order a direction scans them.
fn time_order(seq_len: usize, reverse: bool) -> Box<dyn Iterator<Item = usize>> {
    if reverse {
        Box::new((0..seq_len).rev())
    } else {
        Box::new(0..seq_len)
    }
}

/// `dh ⊙ act'(a)`, with the derivative read off the activation's output `h`.
fn derivative<T: Float>(
    nonlinearity: Nonlinearity,
    mut dh: Array2<T>,
    h: ArrayView2<'_, T>,
) -> Array2<T> {
    dh.zip_mut_with(&h, |g, &h| {
        *g = match nonlinearity {
            Nonlinearity::Tanh => *g * (T::one() - h * h),
            Nonlinearity::Relu => {
                if h > T::zero() {
                    *g
                } else {
                    T::zero()
                }
            }
        }
    });
    dh
}
