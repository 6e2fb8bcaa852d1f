//! The numerical building blocks of the fast path: matrix products and activations.

mod activation;
mod gemm;

pub(crate) use activation::{Activation, Relu, Tanh};
pub(crate) use gemm::gemm;
