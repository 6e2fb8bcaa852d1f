//! The RNN activations, as types so the per-step loop is monomorphised per mode.

use crate::element::Float;

/// An elementwise activation. Chosen once per direction; never dispatched per element.
pub(crate) trait Activation {
    /// Applies the activation.
    fn apply<T: Float>(x: T) -> T;

    /// Applies the activation as the fused kernels do, inlined into their loop: the same
    /// values as [`Activation::apply_slice`].
    fn apply_inline<T: Float, const FMA: bool>(x: T) -> T;

    /// Applies the activation to every element of a contiguous slice.
    fn apply_slice<T: Float>(xs: &mut [T]) {
        for x in xs {
            *x = Self::apply(*x);
        }
    }
}

/// `tanh`.
pub(crate) struct Tanh;

/// `relu`.
pub(crate) struct Relu;

impl Activation for Tanh {
    #[inline]
    fn apply<T: Float>(x: T) -> T {
        x.tanh()
    }

    fn apply_slice<T: Float>(xs: &mut [T]) {
        T::tanh_slice(xs)
    }

    #[inline(always)]
    fn apply_inline<T: Float, const FMA: bool>(x: T) -> T {
        x.tanh_inline::<FMA>()
    }
}

impl Activation for Relu {
    #[inline]
    fn apply<T: Float>(x: T) -> T {
        x.relu()
    }

    #[inline(always)]
    fn apply_inline<T: Float, const FMA: bool>(x: T) -> T {
        x.relu()
    }
}
