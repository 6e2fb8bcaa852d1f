//! The numerical building blocks of the fast path: matrix products and activations.

mod activation;
mod gemm;
#[cfg(target_arch = "x86_64")]
mod isa;
mod matvec;
mod packed_gemm;
mod tanh;

pub(crate) use activation::{Activation, Relu, Tanh};
pub(crate) use gemm::gemm;
pub(crate) use matvec::gemv_rows;
pub(crate) use tanh::tanh_slice_f32;
