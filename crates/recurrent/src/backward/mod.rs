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

use ndarray::{
    s, Array1, Array2, Array3, ArrayD, ArrayView2, ArrayView3, ArrayViewD, ArrayViewMut2,
    ArrayViewMut3, Axis, Ix3,
};

use crate::config::{Kind, Nonlinearity, RnnConfig};
use crate::dropout::DropoutMasks;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::forward::{matmul_acc, row_slice, row_slice_mut};
use crate::kernels::gemm;
use crate::module::{Gru, Lstm, Rnn};
use crate::params::{padded, param_names, DirectionParams, Layers, Packed, ParamKind};
use crate::shape::{check_lengths, prepare_with_cell};
use crate::state::{IntoHidden, IntoLstmState};

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
            // Row-major copies: the caller's state may have any layout.
            Some(h0) => h0
                .index_axis(Axis(0), index)
                .as_standard_layout()
                .into_owned(),
            None => Array2::zeros((batch, h_out)),
        };
        let c = match &prepared.c0 {
            Some(c0) => c0
                .index_axis(Axis(0), index)
                .as_standard_layout()
                .into_owned(),
            None => Array2::zeros((batch, hidden)),
        };
        (h, c)
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
    let threads = rayon::current_num_threads();
    // The two directions of a layer are independent: with two threads and a batch too
    // small to split, one per thread.
    let parallel = directions == 2 && threads >= 2 && batch < 16;

    // Forward, keeping every layer's output and, per direction, every step's values.
    let mut saved: Vec<Vec<Saved<Array3<T>>>> = Vec::with_capacity(num_layers);
    // What each layer read: the input, then the previous layer's output through dropout.
    let mut layer_inputs: Vec<Array3<T>> = vec![x0];
    for layer in 0..num_layers {
        let x = &layer_inputs[layer];
        let mut out = Array3::zeros((seq_len, batch, directions * h_out));
        let run = |direction: usize, out: ArrayViewMut3<'_, T>, threads: usize| {
            let index = layer * directions + direction;
            let (h, c) = initial(index);
            forward_direction(
                config,
                &layers.all_direction_params()[index],
                x,
                h,
                c,
                &lengths,
                direction == 1,
                out,
                threads,
            )
        };
        // Each direction writes its own column half of the layer's output.
        let (forward_half, reverse_half) = out.view_mut().split_at(Axis(2), h_out);
        let layer_saved: Vec<Saved<Array3<T>>> = if parallel {
            let (a, b) = rayon::join(|| run(0, forward_half, 1), || run(1, reverse_half, 1));
            vec![a, b]
        } else {
            let mut all = vec![run(0, forward_half, threads)];
            if directions == 2 {
                all.push(run(1, reverse_half, threads));
            }
            all
        };
        if layer + 1 < num_layers {
            let mut next = out;
            if let Some(masks) = masks {
                next.zip_mut_with(&masks.masks()[layer], |v, &m| *v *= m);
            }
            layer_inputs.push(next);
        }
        saved.push(layer_saved);
    }

    // Backward, from the last layer down.
    let mut param_grads: Vec<(String, ArrayD<T>)> = Vec::new();
    let mut grad_h0 = Array3::<T>::zeros((states, batch, h_out));
    let mut grad_c0 = Array3::<T>::zeros((states, batch, hidden));
    for layer in (0..num_layers).rev() {
        let x = &layer_inputs[layer];
        let run = |direction: usize, threads: usize| {
            let index = layer * directions + direction;
            let cols = direction * h_out..(direction + 1) * h_out;
            direction_backward(
                config,
                &layers.all_direction_params()[index],
                &saved[layer][direction],
                x,
                grad.slice(s![.., .., cols]),
                grad_hn.index_axis(Axis(0), index).to_owned(),
                grad_cn.index_axis(Axis(0), index).to_owned(),
                &lengths,
                direction == 1,
                threads,
            )
        };
        let results = if parallel {
            let (a, b) = rayon::join(|| run(0, 1), || run(1, 1));
            [Some(a), Some(b)]
        } else {
            let first = run(0, threads);
            [Some(first), (directions == 2).then(|| run(1, threads))]
        };
        let mut grad_x: Option<Array3<T>> = None;
        for (direction, r) in results.into_iter().flatten().enumerate() {
            let index = layer * directions + direction;
            match grad_x.as_mut() {
                Some(g) => *g += &r.grad_x,
                None => grad_x = Some(r.grad_x),
            }
            let acc = r.acc;
            grad_h0.index_axis_mut(Axis(0), index).assign(&r.dh);
            grad_c0.index_axis_mut(Axis(0), index).assign(&r.dc);
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
        let Some(mut grad_x) = grad_x else {
            unreachable!("a layer has at least one direction")
        };
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

/// Sets the rows of `(L, N, F)` `a` past each sequence's length to zero.
fn clear_padding<T: Float>(a: &mut ArrayViewMut3<'_, T>, lengths: &[usize]) {
    for (n, &length) in lengths.iter().enumerate() {
        a.slice_mut(s![length.., n, ..]).fill(T::zero());
    }
}

/// Time steps in the order a direction scans them.
fn time_order(seq_len: usize, reverse: bool) -> Vec<usize> {
    if reverse {
        (0..seq_len).rev().collect()
    } else {
        (0..seq_len).collect()
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
    w_ih: Array2<T>,
    w_hh: Array2<T>,
    /// `W_hr` `(P, H)`, or empty.
    w_hr: Array2<T>,
}

impl<T: Float> RowWeights<T> {
    fn new(p: &DirectionParams<T>) -> Self {
        RowWeights {
            w_ih: padded(p.w_ih.view()),
            w_hh: padded(p.w_hh.view()),
            w_hr: p
                .w_hr
                .as_ref()
                .map_or_else(|| Array2::zeros((0, 0)), |w| padded(w.view())),
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

/// What the forward of one direction kept for its backward, indexed by time step `t`:
/// owned arrays (`Saved<Array3<T>>`), or views of them, for a range of the batch.
struct Saved<A> {
    /// The state each step started from, `(L, N, H_out)`.
    h_prev: A,
    /// LSTM: the cell state each step started from, `(L, N, H)`; otherwise `(L, N, 0)`.
    c_prev: A,
    /// LSTM: activated gates `[i, f, g, o]`; GRU: `[r, z, n]`; RNN: `(L, N, 0)`.
    gates: A,
    /// RNN: the new state; LSTM: the new cell state; GRU: `h W_hnᵀ + b_hn`.
    extra: A,
    /// LSTM with projections: `o tanh(c)` before `W_hr`; otherwise `(L, N, 0)`.
    h_full: A,
}

impl<A> Saved<A> {
    /// The same function of each array.
    fn map<B>(self, mut f: impl FnMut(A) -> B) -> Saved<B> {
        Saved {
            h_prev: f(self.h_prev),
            c_prev: f(self.c_prev),
            gates: f(self.gates),
            extra: f(self.extra),
            h_full: f(self.h_full),
        }
    }

    fn as_ref(&self) -> Saved<&A> {
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
    fn unzip(self) -> (Saved<A>, Saved<B>) {
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
type SavedView<'a, T> = Saved<ArrayView3<'a, T>>;
/// Mutable views of a range of the batch of what one direction kept.
type SavedMut<'a, T> = Saved<ArrayViewMut3<'a, T>>;

/// The forward of one direction of one layer over `x` `(L, N, F)` from `(h, c)`, writing
/// its output into `out` `(L, N, H_out)` and returning what its backward needs. Every
/// sequence's step is computed; a sequence past its length keeps its state and its
/// output stays zero. The products go through the fast path's kernels, on the weights
/// packed in torch's gate order.
#[allow(clippy::too_many_arguments)]
fn forward_direction<T: Float>(
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
        let beta = match &p.b_ih {
            Some(b) => {
                gi2.assign(b);
                T::one()
            }
            None => T::zero(),
        };
        let x2 = x
            .view()
            .into_shape_with_order((rows, features))
            .expect("owned standard array"); // ok: every layer input is owned, standard
        matmul_acc(&x2, &packed.w_ih_t, beta, &mut gi2, threads);
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

/// What one direction's backward gives: its parameter gradients, the gradients of its
/// initial states, and its share of the gradient of the layer's input.
struct DirectionGrads<T> {
    acc: Accumulated<T>,
    dh: Array2<T>,
    dc: Array2<T>,
    grad_x: Array3<T>,
}

/// The backward of one direction of one layer: `s` what its forward kept, `x` the
/// layer's input, `grad` the gradient of this direction's output columns, `dh`/`dc` the
/// gradients of its h_n/c_n.
#[allow(clippy::too_many_arguments)]
fn direction_backward<T: Float>(
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

/// One LSTM cell's backward for one sequence: from the gradients `dh` of `o tanh(c)`
/// and `dc` of `c`, the pre-activation gradients `da` `[i, f, g, o]` and the gradient
/// of the previous cell state.
fn lstm_cell_backward<T: Float>(
    gates: &[T],
    tanh_c: &[T],
    c_prev: &[T],
    dh: &[T],
    dc: &[T],
    da: &mut [T],
    dc_prev: &mut [T],
) {
    let hidden = tanh_c.len();
    let one = T::one();
    let (i, rest) = gates.split_at(hidden);
    let (f, rest) = rest.split_at(hidden);
    let (g, o) = rest.split_at(hidden);
    let (da_i, rest) = da.split_at_mut(hidden);
    let (da_f, rest) = rest.split_at_mut(hidden);
    let (da_g, da_o) = rest.split_at_mut(hidden);
    for j in 0..hidden {
        let tc = tanh_c[j];
        let d_o = dh[j] * tc;
        let d_c = dc[j] + dh[j] * o[j] * (one - tc * tc);
        dc_prev[j] = d_c * f[j];
        da_i[j] = d_c * g[j] * i[j] * (one - i[j]);
        da_f[j] = d_c * c_prev[j] * f[j] * (one - f[j]);
        da_g[j] = d_c * i[j] * (one - g[j] * g[j]);
        da_o[j] = d_o * o[j] * (one - o[j]);
    }
}

/// One GRU cell's backward for one sequence: from `dh`, the pre-activation gradients on
/// the input side `da_in` and on the hidden side `da_h` (`[r, z, n]`; they differ in
/// `n`, which `r` scales on the hidden side), and the direct gradient `z dh` of the
/// previous state. `hn` is `h W_hnᵀ + b_hn`.
fn gru_cell_backward<T: Float>(
    gates: &[T],
    hn: &[T],
    h_prev: &[T],
    dh: &[T],
    da_in: &mut [T],
    da_h: &mut [T],
    dh_direct: &mut [T],
) {
    let hidden = hn.len();
    let one = T::one();
    for j in 0..hidden {
        let (r, z, cand) = (gates[j], gates[hidden + j], gates[2 * hidden + j]);
        let g = dh[j];
        let d_cand = g * (one - z);
        let d_z = g * (h_prev[j] - cand);
        dh_direct[j] = g * z;
        let da_n = d_cand * (one - cand * cand);
        let da_r = da_n * hn[j] * r * (one - r);
        let da_z = d_z * z * (one - z);
        da_in[j] = da_r;
        da_in[hidden + j] = da_z;
        da_in[2 * hidden + j] = da_n;
        da_h[j] = da_r;
        da_h[hidden + j] = da_z;
        da_h[2 * hidden + j] = da_n * r;
    }
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
