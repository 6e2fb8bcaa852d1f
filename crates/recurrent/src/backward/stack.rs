//! Layers and directions: the forward of the whole stack again, keeping every layer's
//! input and, per direction, what its backward reads; then the backward from the last
//! layer down, each layer's input gradient flowing into the layer below it back through
//! the dropout factors between them, and the parameter gradients named and put in
//! `named_parameters()` order. The two directions of a layer run one per thread when
//! there are two threads and a batch too small to split.
//!
//! Depends on `direction.rs` (one direction's backward) and `saved.rs` (one direction's
//! forward that keeps what that backward reads).

use ndarray::{s, Array2, Array3, ArrayD, ArrayViewMut3, Axis};

use super::direction::direction_backward;
use super::saved::{forward_direction, Saved};
use crate::dropout::DropoutMasks;
use crate::element::Float;
use crate::params::{param_names, Layers, ParamKind};
use crate::shape::Prepared;

/// What the backward through the stack gives, time-major.
pub(super) struct StackGrads<T> {
    /// `(name, gradient)` for every parameter, torch's names, `named_parameters()` order.
    pub(super) parameters: Vec<(String, ArrayD<T>)>,
    /// The gradient of the first layer's input, `(L, N, F)`.
    pub(super) input: Array3<T>,
    /// The gradient of h_0, `(D * num_layers, N, H_out)`.
    pub(super) h0: Array3<T>,
    /// The gradient of c_0, `(D * num_layers, N, H)` (read for an LSTM only).
    pub(super) c0: Array3<T>,
}

/// The backward through every layer of `layers`: `x0` `(L, N, F)` the input (its padding
/// cleared), `prepared` the caller's states, `grad` `(L, N, D * H_out)` the gradient of
/// the last layer's output, `grad_hn`/`grad_cn` those of h_n/c_n, `(D * num_layers, N,
/// ·)`, and `masks` the dropout factors the training forward applied between layers.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_stack<T: Float>(
    layers: &Layers<T>,
    prepared: &Prepared<'_, T>,
    x0: Array3<T>,
    lengths: &[usize],
    masks: Option<&DropoutMasks<T>>,
    mut grad: Array3<T>,
    grad_hn: &Array3<T>,
    grad_cn: &Array3<T>,
) -> StackGrads<T> {
    let config = layers.config();
    let (hidden, h_out) = (config.hidden_size, config.output_hidden_size());
    let (directions, num_layers) = (config.num_directions(), config.num_layers);
    let (seq_len, batch) = (prepared.seq_len(), prepared.batch());
    let states = directions * num_layers;
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
                lengths,
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
                lengths,
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
    StackGrads {
        parameters: param_grads,
        input: grad,
        h0: grad_h0,
        c0: grad_c0,
    }
}
