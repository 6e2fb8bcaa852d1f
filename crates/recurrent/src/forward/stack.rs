//! Layers and directions: layer k+1 reads layer k's whole output sequence.
//!
//! A unidirectional stack of several layers over a long sequence runs in chunks of
//! [`CHUNK_STEPS`] time steps, carrying each layer's state from chunk to chunk, so its
//! memory is the input, the output, the weights and a fixed workspace whatever L is. A
//! bidirectional layer needs its whole input before its reverse direction can start, so
//! bidirectional stacks keep one intermediate sequence per layer, as torch does.

use ndarray::{s, Array3, ArrayView3, ArrayViewMut3, Axis};
use rand::Rng;

use super::direction::scan;
use crate::config::Nonlinearity;
use crate::element::Float;
use crate::kernels::{Relu, Tanh};
use crate::params::Layers;
use crate::shape::Prepared;

/// Time steps per chunk when a unidirectional multi-layer stack runs in chunks.
pub(crate) const CHUNK_STEPS: usize = 512;

/// Dropout between layers: off (evaluation), drawn, or given.
pub(crate) enum Dropout<'a, T> {
    /// Evaluation mode.
    Off,
    /// Training mode, masks drawn from this generator.
    Sample(&'a mut dyn rand::RngCore),
    /// Training mode with these factors, `(L, N, D·H_out)` per layer boundary,
    /// sequence-first.
    Masks(&'a [Array3<T>]),
}

impl<T: Float> Dropout<'_, T> {
    /// Applies dropout to the output of `layer` (not the last), a buffer in the input's
    /// axis order covering time steps `time`.
    pub(crate) fn apply(
        &mut self,
        layer: usize,
        p: f64,
        buffer: &mut Array3<T>,
        batch_first: bool,
        time: std::ops::Range<usize>,
    ) {
        match self {
            Dropout::Off => {}
            Dropout::Sample(rng) => {
                if p > 0.0 {
                    apply_dropout(buffer, p, *rng);
                }
            }
            Dropout::Masks(masks) => {
                let mask = masks[layer].slice_axis(Axis(0), time.into());
                let mask = if batch_first {
                    mask.permuted_axes([1, 0, 2])
                } else {
                    mask
                };
                buffer.zip_mut_with(&mask, |v, &m| *v *= m);
            }
        }
    }
}

/// Runs the stack; returns `(output, h_n)` in batched form (output in the input's axis
/// order, `h_n` as `(D * num_layers, N, H)`). In training mode (`dropout` not `Off`),
/// the outputs of every layer but the last go through dropout.
pub(crate) fn forward<T: Float>(
    rnn: &Layers<T>,
    prepared: &Prepared<'_, T>,
    dropout: Dropout<'_, T>,
) -> (Array3<T>, Array3<T>) {
    let mut dropout = dropout;
    let config = rnn.config();
    let input = prepared.input.view();
    let batch_first = prepared.batch_first;
    let (d0, d1, _) = input.dim();
    let mut output = Array3::zeros((d0, d1, config.output_size()));
    let seq_len = prepared.seq_len();
    let chunked = config.num_directions() == 1 && config.num_layers > 1 && seq_len > CHUNK_STEPS;
    if !chunked {
        let h_n = forward_block(
            rnn,
            input,
            batch_first,
            prepared.h0,
            output.view_mut(),
            &mut dropout,
            0..seq_len,
        );
        return (output, h_n);
    }
    let time = Axis(usize::from(batch_first));
    let mut state: Option<Array3<T>> = prepared.h0.map(|h| h.to_owned());
    let mut start = 0;
    while start < seq_len {
        let end = (start + CHUNK_STEPS).min(seq_len);
        // A sequence-first, contiguous copy of this chunk of the input.
        let chunk_in = input.slice_axis(time, (start..end).into());
        let chunk_in = if batch_first {
            chunk_in
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
        } else {
            chunk_in.as_standard_layout().into_owned()
        };
        let mut chunk_out =
            Array3::zeros((end - start, chunk_in.len_of(Axis(1)), config.output_size()));
        let h_n = forward_block(
            rnn,
            chunk_in.view(),
            false,
            state.as_ref().map(|h| h.view()),
            chunk_out.view_mut(),
            &mut dropout,
            start..end,
        );
        let mut target = output.slice_axis_mut(time, (start..end).into());
        if batch_first {
            target.assign(&chunk_out.view().permuted_axes([1, 0, 2]));
        } else {
            target.assign(&chunk_out);
        }
        state = Some(h_n);
        start = end;
    }
    let h_n = state.unwrap_or_else(|| {
        Array3::zeros((config.num_layers, prepared.batch(), config.hidden_size))
    });
    (output, h_n)
}

/// Runs every layer over `input` (standard layout, `(L, N, F)` or `(N, L, F)`), writing
/// the last layer's output into `output` (same axis order) and returning h_n.
fn forward_block<T: Float>(
    rnn: &Layers<T>,
    input: ArrayView3<'_, T>,
    batch_first: bool,
    h0: Option<ArrayView3<'_, T>>,
    mut output: ArrayViewMut3<'_, T>,
    dropout: &mut Dropout<'_, T>,
    time: std::ops::Range<usize>,
) -> Array3<T> {
    let config = rnn.config();
    let hidden = config.hidden_size;
    let directions = config.num_directions();
    let time_axis = Axis(usize::from(batch_first));
    let batch = input.len_of(Axis(usize::from(!batch_first)));
    let (d0, d1, _) = input.dim();
    let threads = rayon::current_num_threads();
    // Two directions in parallel share the threads between them.
    let threads_per_direction = if directions == 2 {
        (threads / 2).max(1)
    } else {
        threads
    };
    // The mode is dispatched once per call; the per-step loop is monomorphised.
    let scan_direction = match config.nonlinearity {
        Nonlinearity::Tanh => scan::<T, Tanh>,
        Nonlinearity::Relu => scan::<T, Relu>,
    };

    let mut h_n = Array3::zeros((directions * config.num_layers, batch, hidden));
    // Layer k's output, read by layer k + 1 (the last layer writes into `output`).
    let mut intermediate: Option<Array3<T>> = None;
    for layer in 0..config.num_layers {
        let is_last = layer + 1 == config.num_layers;
        let mut own = if is_last {
            None
        } else {
            Some(Array3::zeros((d0, d1, directions * hidden)))
        };
        let layer_input: ArrayView3<'_, T> = match &intermediate {
            Some(previous) => previous.view(),
            None => input.view(),
        };
        let mut out: ArrayViewMut3<'_, T> = match own.as_mut() {
            Some(buffer) => buffer.view_mut(),
            None => output.view_mut(),
        };
        {
            // Each direction owns its column half of the output.
            let (forward_half, reverse_half) = out.view_mut().split_at(Axis(2), hidden);
            let run = |direction: usize, half: ArrayViewMut3<'_, T>| {
                let index = layer * directions + direction;
                let h0 = h0.as_ref().map(|h| h.index_axis(Axis(0), index));
                scan_direction(
                    rnn.packed(index),
                    layer_input.view(),
                    half,
                    batch_first,
                    h0,
                    direction == 1,
                    threads_per_direction,
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
            let seq_len = out.len_of(time_axis);
            let last = if direction == 1 { 0 } else { seq_len - 1 };
            let cols = s![.., direction * hidden..(direction + 1) * hidden];
            h_n.index_axis_mut(Axis(0), layer * directions + direction)
                .assign(&out.index_axis(time_axis, last).slice(cols));
        }
        if let Some(buffer) = own.as_mut() {
            dropout.apply(layer, config.dropout, buffer, batch_first, time.clone());
        }
        if own.is_some() {
            intermediate = own;
        }
    }
    h_n
}

/// Inverted dropout: each element is kept with probability `1 - p` and scaled by
/// `1 / (1 - p)`; `p == 1` zeroes everything, as torch does.
pub(super) fn apply_dropout<T: Float>(values: &mut Array3<T>, p: f64, rng: &mut dyn rand::RngCore) {
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
