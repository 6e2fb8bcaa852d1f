//! Layers and directions: layer k+1 reads layer k's whole output sequence.

use ndarray::{s, Array3, ArrayViewMut3, Axis, CowArray, Ix3};
use rand::Rng;

use super::direction::scan;
use crate::config::Nonlinearity;
use crate::element::Float;
use crate::kernels::{Relu, Tanh};
use crate::module::Rnn;
use crate::shape::Prepared;

/// Runs the stack; returns `(output, h_n)` in batched form (output in the input's axis
/// order, `h_n` as `(D * num_layers, N, H)`). With `dropout_rng`, the outputs of every
/// layer but the last go through dropout (training mode).
pub(crate) fn forward<T: Float>(
    rnn: &Rnn<T>,
    prepared: &Prepared<'_, T>,
    mut dropout_rng: Option<&mut dyn rand::RngCore>,
) -> (Array3<T>, Array3<T>) {
    let config = rnn.config();
    let hidden = config.hidden_size;
    let directions = config.num_directions();
    let batch = prepared.batch();
    let batch_first = prepared.batch_first;
    let (d0, d1, _) = prepared.input.dim();

    let mut h_n = Array3::zeros((directions * config.num_layers, batch, hidden));
    // The mode is dispatched once per call; the per-step loop is monomorphised.
    let threads = rayon::current_num_threads();
    let scan_direction = match config.nonlinearity {
        Nonlinearity::Tanh => scan::<T, Tanh>,
        Nonlinearity::Relu => scan::<T, Relu>,
    };
    let mut layer_input: CowArray<'_, T, Ix3> = prepared.input.view().into();
    for layer in 0..config.num_layers {
        let mut output = Array3::zeros((d0, d1, directions * hidden));
        {
            // Each direction owns its column half of the output.
            let (forward_half, reverse_half) = output.view_mut().split_at(Axis(2), hidden);
            let run = |direction: usize, out: ArrayViewMut3<'_, T>| {
                let index = layer * directions + direction;
                let h0 = prepared.h0.as_ref().map(|h| h.index_axis(Axis(0), index));
                scan_direction(
                    &rnn.all_direction_params()[index],
                    rnn.packed(index),
                    layer_input.view(),
                    out,
                    batch_first,
                    h0,
                    direction == 1,
                    threads,
                );
            };
            if directions == 2 && threads > 1 {
                // The two directions are independent: one per core.
                rayon::join(|| run(0, forward_half), || run(1, reverse_half));
            } else {
                run(0, forward_half);
                if directions == 2 {
                    run(1, reverse_half);
                }
            }
        }
        for direction in 0..directions {
            // The final state: the last step each direction scanned.
            let time_axis = prepared.time_axis();
            let seq_len = output.len_of(time_axis);
            let last = if direction == 1 { 0 } else { seq_len - 1 };
            let cols = s![.., direction * hidden..(direction + 1) * hidden];
            h_n.index_axis_mut(Axis(0), layer * directions + direction)
                .assign(&output.index_axis(time_axis, last).slice(cols));
        }
        let is_last = layer + 1 == config.num_layers;
        if !is_last && config.dropout > 0.0 {
            if let Some(rng) = dropout_rng.as_deref_mut() {
                apply_dropout(&mut output, config.dropout, rng);
            }
        }
        layer_input = output.into();
    }
    (layer_input.into_owned(), h_n)
}

/// Inverted dropout: each element is kept with probability `1 - p` and scaled by
/// `1 / (1 - p)`; `p == 1` zeroes everything, as torch does.
fn apply_dropout<T: Float>(values: &mut Array3<T>, p: f64, rng: &mut dyn rand::RngCore) {
    let scale = if p < 1.0 {
        T::of(1.0 / (1.0 - p))
    } else {
        T::zero()
    };
    for v in values.iter_mut() {
        let u: f64 = rng.random();
        *v = if u < p { T::zero() } else { *v * scale };
    }
}
