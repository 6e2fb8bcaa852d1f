//! The numerical building blocks of the fast path: matrix products and activations.

mod activation;
mod gemm;
pub(crate) mod isa;
mod narrow;
pub(crate) mod panel;
pub(crate) mod tanh;

pub(crate) use activation::{Activation, Relu, Tanh};
pub(crate) use gemm::gemm;
pub(crate) use narrow::narrow_scan;

use crate::element::Float;

/// `a * b + c`, fused into one instruction in the versions compiled with FMA (`FMA`), as
/// two operations in the portable one (where `mul_add` would be a libm call).
#[inline(always)]
pub(crate) fn madd<T: Float, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}
