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

use ndarray::{s, Array1, Array2, Array3, ArrayD, ArrayView2, ArrayViewD, Axis, Ix3};

use crate::config::{Kind, Nonlinearity, RnnConfig};
use crate::dropout::DropoutMasks;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::module::{Gru, Lstm, Rnn};
use crate::params::{param_names, DirectionParams, Layers, ParamKind};
use crate::shape::{check_lengths, prepare_with_cell};

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
            pub fn backward(
                &self,
                input: ArrayViewD<'_, T>,
                h0: Option<ArrayViewD<'_, T>>,
                grad_output: ArrayViewD<'_, T>,
                grad_h_n: Option<ArrayViewD<'_, T>>,
            ) -> Result<Gradients<T>> {
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
            pub fn backward_with_masks(
                &self,
                input: ArrayViewD<'_, T>,
                h0: Option<ArrayViewD<'_, T>>,
                masks: &DropoutMasks<T>,
                grad_output: ArrayViewD<'_, T>,
                grad_h_n: Option<ArrayViewD<'_, T>>,
            ) -> Result<Gradients<T>> {
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
            pub fn backward_padded(
                &self,
                input: ArrayViewD<'_, T>,
                lengths: &[usize],
                h0: Option<ArrayViewD<'_, T>>,
                grad_output: ArrayViewD<'_, T>,
                grad_h_n: Option<ArrayViewD<'_, T>>,
            ) -> Result<Gradients<T>> {
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
    pub fn backward(
        &self,
        input: ArrayViewD<'_, T>,
        state: Option<(ArrayViewD<'_, T>, ArrayViewD<'_, T>)>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: LstmStateGrad<'_, T>,
    ) -> Result<Gradients<T>> {
        let (h0, c0) = state.unzip();
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
    pub fn backward_with_masks(
        &self,
        input: ArrayViewD<'_, T>,
        state: Option<(ArrayViewD<'_, T>, ArrayViewD<'_, T>)>,
        masks: &DropoutMasks<T>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: LstmStateGrad<'_, T>,
    ) -> Result<Gradients<T>> {
        let (h0, c0) = state.unzip();
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
    pub fn backward_padded(
        &self,
        input: ArrayViewD<'_, T>,
        lengths: &[usize],
        state: Option<(ArrayViewD<'_, T>, ArrayViewD<'_, T>)>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: LstmStateGrad<'_, T>,
    ) -> Result<Gradients<T>> {
        let (h0, c0) = state.unzip();
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

/// What one step of one direction saved for its backward.
struct Saved<T> {
    /// The new state h (after projection, for an LSTM).
    h: Array2<T>,
    /// LSTM: activated gates `[i, f, g, o]`; GRU: `[r, z, n]`; RNN: empty.
    gates: Array2<T>,
    /// LSTM: the new cell state; GRU: `h W_hnᵀ + b_hn`; RNN: empty.
    extra: Array2<T>,
    /// LSTM with a projection: `o tanh(c)` before `W_hr`; otherwise empty.
    h_full: Array2<T>,
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
            check_lengths(l, batch, seq_len)?;
            l.to_vec()
        }
        None => vec![seq_len; batch],
    };
    if let Some(masks) = masks {
        masks.check(config, seq_len, batch)?;
    }
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
    let mut grad = time_major(grad_output, prepared.batch_first)?;
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
    let initial = |index: usize| -> (Array2<T>, Array2<T>) {
        let h = match &prepared.h0 {
            Some(h0) => h0.index_axis(Axis(0), index).to_owned(),
            None => Array2::zeros((batch, h_out)),
        };
        let c = match &prepared.c0 {
            Some(c0) => c0.index_axis(Axis(0), index).to_owned(),
            None => Array2::zeros((batch, hidden)),
        };
        (h, c)
    };

    // Forward, keeping every layer's output and every step's saved values.
    let mut outputs: Vec<Array3<T>> = Vec::with_capacity(num_layers);
    // What each layer read: the input, then the previous layer's output through dropout.
    let mut layer_inputs: Vec<Array3<T>> = vec![x0.clone()];
    let mut saved: Vec<Vec<Vec<Saved<T>>>> = Vec::with_capacity(num_layers);
    for layer in 0..num_layers {
        let x = &layer_inputs[layer];
        let mut out = Array3::zeros((seq_len, batch, directions * h_out));
        let mut layer_saved = Vec::with_capacity(directions);
        for direction in 0..directions {
            let index = layer * directions + direction;
            let p = &layers.all_direction_params()[index];
            let (mut h, mut c) = initial(index);
            // The input projection of every step at once: x W_ihᵀ + b_ih.
            let gi = project(x, p);
            let mut steps = Vec::with_capacity(seq_len);
            for t in time_order(seq_len, direction == 1) {
                let step = forward_step(config, p, gi.index_axis(Axis(0), t), h.view(), c.view());
                // Sequences past their length keep their state; their output stays 0.
                for (n, &length) in lengths.iter().enumerate() {
                    if t < length {
                        h.row_mut(n).assign(&step.h.row(n));
                        if config.kind == Kind::Lstm {
                            c.row_mut(n).assign(&step.extra.row(n));
                        }
                        out.slice_mut(s![t, n, direction * h_out..(direction + 1) * h_out])
                            .assign(&step.h.row(n));
                    }
                }
                steps.push(step);
            }
            layer_saved.push(steps);
        }
        if layer + 1 < num_layers {
            let mut next = out.clone();
            if let Some(masks) = masks {
                next.zip_mut_with(&masks.masks()[layer], |v, &m| *v *= m);
            }
            layer_inputs.push(next);
        }
        outputs.push(out);
        saved.push(layer_saved);
    }

    // Backward, from the last layer down.
    let mut param_grads: Vec<(String, ArrayD<T>)> = Vec::new();
    let mut grad_h0 = Array3::<T>::zeros((states, batch, h_out));
    let mut grad_c0 = Array3::<T>::zeros((states, batch, hidden));
    for layer in (0..num_layers).rev() {
        let x = &layer_inputs[layer];
        let mut grad_x = Array3::<T>::zeros(x.raw_dim());
        #[allow(clippy::needless_range_loop)] // direction indexes params, saved and states alike
        for direction in 0..directions {
            let index = layer * directions + direction;
            let p = &layers.all_direction_params()[index];
            let mut acc = Accumulated::zeros(p);
            let order: Vec<usize> = time_order(seq_len, direction == 1).collect();
            let (h_init, c_init) = initial(index);
            let mut dh: Array2<T> = grad_hn.index_axis(Axis(0), index).to_owned();
            let mut dc: Array2<T> = grad_cn.index_axis(Axis(0), index).to_owned();
            // The state each step started from, for every sequence (rebuilt going back).
            let mut prev_h: Vec<Array2<T>> = Vec::with_capacity(seq_len);
            let mut prev_c: Vec<Array2<T>> = Vec::with_capacity(seq_len);
            {
                let (mut h, mut c) = (h_init.clone(), c_init.clone());
                for (i, &t) in order.iter().enumerate() {
                    prev_h.push(h.clone());
                    prev_c.push(c.clone());
                    let step = &saved[layer][direction][i];
                    for (n, &length) in lengths.iter().enumerate() {
                        if t < length {
                            h.row_mut(n).assign(&step.h.row(n));
                            if config.kind == Kind::Lstm {
                                c.row_mut(n).assign(&step.extra.row(n));
                            }
                        }
                    }
                }
            }
            // Per step (indexed by t): the pre-activation gradients on the input side and on
            // the hidden side, and the state the step started from; their products with the
            // inputs and the weights are taken once for all steps after the loop.
            let gates = p.w_ih.nrows();
            let mut all_da_in = Array3::<T>::zeros((seq_len, batch, gates));
            let mut all_da_hidden = Array3::<T>::zeros((seq_len, batch, gates));
            let mut all_h_prev = Array3::<T>::zeros((seq_len, batch, h_out));
            for (i, &t) in order.iter().enumerate().rev() {
                let step = &saved[layer][direction][i];
                let valid: Vec<bool> = lengths.iter().map(|&l| t < l).collect();
                // The output gradient reaches only the steps that produced an output.
                let mut dh_t = dh.clone();
                for (n, &ok) in valid.iter().enumerate() {
                    if ok {
                        let g = grad.slice(s![t, n, direction * h_out..(direction + 1) * h_out]);
                        dh_t.row_mut(n).zip_mut_with(&g, |a, &b| *a += b);
                    }
                }
                // The cell sees only the running sequences' gradients (the others pass
                // through below, and must not reach the weights).
                let (mut dh_cell, mut dc_cell) = (dh_t.clone(), dc.clone());
                for (n, &ok) in valid.iter().enumerate() {
                    if !ok {
                        dh_cell.row_mut(n).fill(T::zero());
                        dc_cell.row_mut(n).fill(T::zero());
                    }
                }
                let (da_in, da_hidden, dh_prev_direct, dc_prev) = backward_step(
                    config,
                    p,
                    step,
                    prev_h[i].view(),
                    prev_c[i].view(),
                    dh_cell,
                    dc_cell,
                    &mut acc,
                );
                // Sequences that had ended: identity step, gradients pass through.
                let mut da_in = da_in;
                let mut da_hidden = da_hidden;
                let mut dh_prev = dh_prev_direct;
                let mut dc_prev = dc_prev;
                for (n, &ok) in valid.iter().enumerate() {
                    if !ok {
                        da_in.row_mut(n).fill(T::zero());
                        da_hidden.row_mut(n).fill(T::zero());
                        dh_prev.row_mut(n).assign(&dh_t.row(n));
                        if config.kind == Kind::Lstm {
                            dc_prev.row_mut(n).assign(&dc.row(n));
                        }
                    }
                }
                dh_prev += &da_hidden.dot(&p.w_hh);
                all_da_in.index_axis_mut(Axis(0), t).assign(&da_in);
                all_da_hidden.index_axis_mut(Axis(0), t).assign(&da_hidden);
                all_h_prev.index_axis_mut(Axis(0), t).assign(&prev_h[i]);
                dh = dh_prev;
                dc = dc_prev;
            }
            {
                let rows = seq_len * batch;
                let (da_in, da_hidden) = (flat(&all_da_in, rows), flat(&all_da_hidden, rows));
                acc.w_ih += &da_in.t().dot(&flat(x, rows));
                acc.w_hh += &da_hidden.t().dot(&flat(&all_h_prev, rows));
                acc.b_ih += &da_in.sum_axis(Axis(0));
                acc.b_hh += &da_hidden.sum_axis(Axis(0));
                let mut gx = grad_x
                    .view_mut()
                    .into_shape_with_order((rows, x.len_of(Axis(2))))
                    .expect("owned standard array"); // ok: allocated above
                gx += &da_in.dot(&p.w_ih);
            }
            grad_h0.index_axis_mut(Axis(0), index).assign(&dh);
            grad_c0.index_axis_mut(Axis(0), index).assign(&dc);
            for name in param_names(config)
                .into_iter()
                .filter(|n| n.layer == layer && n.direction() == direction)
            {
                let g = match name.kind {
                    ParamKind::WeightIh => acc.w_ih.clone().into_dyn(),
                    ParamKind::WeightHh => acc.w_hh.clone().into_dyn(),
                    ParamKind::BiasIh => acc.b_ih.clone().into_dyn(),
                    ParamKind::BiasHh => acc.b_hh.clone().into_dyn(),
                    ParamKind::WeightHr => acc.w_hr.clone().into_dyn(),
                };
                param_grads.push((name.to_string(), g));
            }
        }
        // Into the previous layer's output, back through its dropout.
        if let (Some(masks), true) = (masks, layer > 0) {
            grad_x.zip_mut_with(&masks.masks()[layer - 1], |g, &m| *g *= m);
        }
        grad = grad_x;
    }
    let order: Vec<String> = layers.parameter_names();
    param_grads.sort_by_key(|(n, _)| order.iter().position(|o| o == n));

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

/// Time steps in the order a direction scans them.
fn time_order(seq_len: usize, reverse: bool) -> Box<dyn Iterator<Item = usize>> {
    if reverse {
        Box::new((0..seq_len).rev())
    } else {
        Box::new(0..seq_len)
    }
}

fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// An owned `(L, N, W)` array as `(L*N, W)` rows.
fn flat<T: Float>(a: &Array3<T>, rows: usize) -> ArrayView2<'_, T> {
    let width = a.len_of(Axis(2));
    a.view()
        .into_shape_with_order((rows, width))
        .expect("owned standard array") // ok: every caller's array is owned and standard
}

/// `x W_ihᵀ + b_ih` for every step at once: `(L, N, G*H)`.
fn project<T: Float>(x: &Array3<T>, p: &DirectionParams<T>) -> Array3<T> {
    let (l, n, f) = x.dim();
    let rows = x
        .view()
        .into_shape_with_order((l * n, f))
        .expect("owned standard array"); // ok: x is an owned standard-layout array
    affine(rows, &p.w_ih, p.b_ih.as_ref())
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((l, n, p.w_ih.nrows()))
        .expect("rows regroup by step") // ok: same element count, standard layout
}

/// `x wᵀ + b` with an optional bias.
fn affine<T: Float>(x: ArrayView2<'_, T>, w: &Array2<T>, b: Option<&Array1<T>>) -> Array2<T> {
    let mut y = x.dot(&w.t());
    if let Some(b) = b {
        y += b;
    }
    y
}

/// One forward step for every sequence of the batch, keeping what the backward needs.
fn forward_step<T: Float>(
    config: &RnnConfig,
    p: &DirectionParams<T>,
    gi: ArrayView2<'_, T>,
    h: ArrayView2<'_, T>,
    c: ArrayView2<'_, T>,
) -> Saved<T> {
    let hidden = config.hidden_size;
    let gh = affine(h, &p.w_hh, p.b_hh.as_ref());
    let empty = || Array2::zeros((0, 0));
    match config.kind {
        Kind::Rnn => {
            let h = (&gi + &gh).mapv(|v| match config.nonlinearity {
                Nonlinearity::Tanh => v.tanh(),
                Nonlinearity::Relu => v.relu(),
            });
            Saved {
                h,
                gates: empty(),
                extra: empty(),
                h_full: empty(),
            }
        }
        Kind::Lstm => {
            let mut gates = &gi + &gh;
            for mut row in gates.rows_mut() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if j / hidden == 2 {
                        v.tanh()
                    } else {
                        sigmoid(*v)
                    };
                }
            }
            let (i, f) = (
                gates.slice(s![.., ..hidden]),
                gates.slice(s![.., hidden..2 * hidden]),
            );
            let (g, o) = (
                gates.slice(s![.., 2 * hidden..3 * hidden]),
                gates.slice(s![.., 3 * hidden..]),
            );
            let c_new = &f * &c + &i * &g;
            let h_full = &o * &c_new.mapv(|v| v.tanh());
            match &p.w_hr {
                Some(w_hr) => Saved {
                    h: h_full.dot(&w_hr.t()),
                    gates,
                    extra: c_new,
                    h_full,
                },
                None => Saved {
                    h: h_full,
                    gates,
                    extra: c_new,
                    h_full: empty(),
                },
            }
        }
        Kind::Gru => {
            let mut gates = Array2::zeros(gi.raw_dim());
            let hn = gh.slice(s![.., 2 * hidden..]).to_owned();
            let (rows, _) = gi.dim();
            for n in 0..rows {
                for j in 0..hidden {
                    let r = sigmoid(gi[[n, j]] + gh[[n, j]]);
                    let z = sigmoid(gi[[n, hidden + j]] + gh[[n, hidden + j]]);
                    let cand = (gi[[n, 2 * hidden + j]] + r * hn[[n, j]]).tanh();
                    gates[[n, j]] = r;
                    gates[[n, hidden + j]] = z;
                    gates[[n, 2 * hidden + j]] = cand;
                }
            }
            let mut h_new = Array2::zeros(h.raw_dim());
            for n in 0..rows {
                for j in 0..hidden {
                    let (z, cand) = (gates[[n, hidden + j]], gates[[n, 2 * hidden + j]]);
                    h_new[[n, j]] = (h[[n, j]] - cand) * z + cand;
                }
            }
            Saved {
                h: h_new,
                gates,
                extra: hn,
                h_full: empty(),
            }
        }
    }
}

/// Parameter gradients of one direction, summed over its steps.
struct Accumulated<T> {
    w_ih: Array2<T>,
    w_hh: Array2<T>,
    b_ih: Array1<T>,
    b_hh: Array1<T>,
    w_hr: Array2<T>,
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

/// One backward step: from `dh` (gradient of the step's new h) and `dc` (LSTM: of its new
/// c), the pre-activation gradients on the input side and on the hidden side, the
/// direct gradient to the previous h (before adding `da_hidden W_hh`), and the gradient
/// to the previous c. Adds the projection's gradient to `acc.w_hr`.
#[allow(clippy::too_many_arguments)]
fn backward_step<T: Float>(
    config: &RnnConfig,
    p: &DirectionParams<T>,
    step: &Saved<T>,
    h_prev: ArrayView2<'_, T>,
    c_prev: ArrayView2<'_, T>,
    dh: Array2<T>,
    dc: Array2<T>,
    acc: &mut Accumulated<T>,
) -> (Array2<T>, Array2<T>, Array2<T>, Array2<T>) {
    let hidden = config.hidden_size;
    let one = T::one();
    match config.kind {
        Kind::Rnn => {
            let mut da = dh;
            da.zip_mut_with(&step.h, |g, &h| {
                *g = match config.nonlinearity {
                    Nonlinearity::Tanh => *g * (one - h * h),
                    Nonlinearity::Relu => {
                        if h > T::zero() {
                            *g
                        } else {
                            T::zero()
                        }
                    }
                }
            });
            let zeros = Array2::zeros(h_prev.raw_dim());
            (da.clone(), da, zeros, Array2::zeros(c_prev.raw_dim()))
        }
        Kind::Lstm => {
            let dh_full = match &p.w_hr {
                Some(w_hr) => {
                    acc.w_hr += &dh.t().dot(&step.h_full);
                    dh.dot(w_hr)
                }
                None => dh,
            };
            let (rows, _) = dh_full.dim();
            let mut da = Array2::zeros((rows, 4 * hidden));
            let mut dc_prev = Array2::zeros((rows, hidden));
            for n in 0..rows {
                for j in 0..hidden {
                    let (i, f) = (step.gates[[n, j]], step.gates[[n, hidden + j]]);
                    let (g, o) = (
                        step.gates[[n, 2 * hidden + j]],
                        step.gates[[n, 3 * hidden + j]],
                    );
                    let tc = step.extra[[n, j]].tanh();
                    let d_o = dh_full[[n, j]] * tc;
                    let d_c = dc[[n, j]] + dh_full[[n, j]] * o * (one - tc * tc);
                    let (d_i, d_f, d_g) = (d_c * g, d_c * c_prev[[n, j]], d_c * i);
                    dc_prev[[n, j]] = d_c * f;
                    da[[n, j]] = d_i * i * (one - i);
                    da[[n, hidden + j]] = d_f * f * (one - f);
                    da[[n, 2 * hidden + j]] = d_g * (one - g * g);
                    da[[n, 3 * hidden + j]] = d_o * o * (one - o);
                }
            }
            let zeros = Array2::zeros(h_prev.raw_dim());
            (da.clone(), da, zeros, dc_prev)
        }
        Kind::Gru => {
            let (rows, _) = dh.dim();
            let mut da_in = Array2::zeros((rows, 3 * hidden));
            let mut da_hidden = Array2::zeros((rows, 3 * hidden));
            let mut dh_direct = Array2::zeros(h_prev.raw_dim());
            for n in 0..rows {
                for j in 0..hidden {
                    let (r, z, cand) = (
                        step.gates[[n, j]],
                        step.gates[[n, hidden + j]],
                        step.gates[[n, 2 * hidden + j]],
                    );
                    let g = dh[[n, j]];
                    let d_cand = g * (one - z);
                    let d_z = g * (h_prev[[n, j]] - cand);
                    dh_direct[[n, j]] = g * z;
                    let da_n = d_cand * (one - cand * cand);
                    let d_r = da_n * step.extra[[n, j]];
                    let da_r = d_r * r * (one - r);
                    let da_z = d_z * z * (one - z);
                    da_in[[n, j]] = da_r;
                    da_in[[n, hidden + j]] = da_z;
                    da_in[[n, 2 * hidden + j]] = da_n;
                    da_hidden[[n, j]] = da_r;
                    da_hidden[[n, hidden + j]] = da_z;
                    da_hidden[[n, 2 * hidden + j]] = da_n * r;
                }
            }
            (da_in, da_hidden, dh_direct, Array2::zeros(c_prev.raw_dim()))
        }
    }
}
