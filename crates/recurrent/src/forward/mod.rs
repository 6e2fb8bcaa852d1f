//! The fast forward path: layers stacked over directions scanned over time.
//!
//! Per layer and direction: one GEMM projects every time step's input at once (biases
//! folded in), writing straight into that direction's column half of the layer's
//! preallocated output; then each step adds `h_{t-1} W_hh^T` into its own rows and
//! applies the activation in place. Nothing is allocated per step.
//!
//! # Guarantees
//!
//! - Determinism: the same layer, input and number of threads of the rayon pool the call
//!   runs in give bit-identical results on every call, whatever the timing (a recurrence
//!   split between two threads computes the same sums in the same order whether or not
//!   its second thread came, see `pair.rs`) and whatever the memory layout of the
//!   caller's input and states (copied into row-major buffers before any product).
//! - IEEE special values: NaN and ±∞ in the input, the states or any parameter propagate
//!   as in torch. Work is skipped for a state of zeros only when the result is identical
//!   (`0 · W_hhᵀ` is skipped only when `W_hh` is finite: `0 · ∞ = NaN`).

mod cell;
mod direction;
mod gated;
mod pair;
mod stack;

pub(crate) use cell::{StepScratch, StepWeights};
pub(crate) use direction::{matmul_acc, matmul_bias};
pub(crate) use gated::forward_gated;
pub(crate) use pair::set_helper_wait;
pub(crate) use stack::{forward, Dropout};

use crate::element::Float;

/// A row with unit stride as a slice: rows of the owned standard-layout arrays the fast
/// path and the backward allocate, and column ranges of them.
pub(crate) fn row_slice<'a, T: Float>(row: ndarray::ArrayView1<'a, T>) -> &'a [T] {
    match row.to_slice() {
        Some(s) => s,
        None => unreachable!("rows with unit stride are contiguous"), // ok: see callers
    }
}

/// A mutable row with unit stride as a slice.
pub(crate) fn row_slice_mut<'a, T: Float>(
    row: &'a mut ndarray::ArrayViewMut1<'_, T>,
) -> &'a mut [T] {
    match row.as_slice_mut() {
        Some(s) => s,
        None => unreachable!("rows with unit stride are contiguous"), // ok: see callers
    }
}
