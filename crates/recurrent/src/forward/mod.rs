//! The fast forward path: layers stacked over directions scanned over time.
//!
//! Per layer and direction: one GEMM projects every time step's input at once (biases
//! folded in), writing straight into that direction's column half of the layer's
//! preallocated output; then each step adds `h_{t-1} W_hh^T` into its own rows and
//! applies the activation in place. Nothing is allocated per step.

mod direction;
mod gated;
mod pair;
mod stack;

pub(crate) use direction::matmul_acc;
pub(crate) use gated::forward_gated;
pub(crate) use pair::set_helper_wait;
pub(crate) use stack::{forward, Dropout};
