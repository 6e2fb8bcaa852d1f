//! The RNN activations, as types so the per-step loop is monomorphised per mode.

use crate::element::Float;

/// An elementwise activation. Chosen once per direction; never dispatched per element.
pub(crate) trait Activation {
    /// Applies the activation.
    fn apply<T: Float>(x: T) -> T;
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
}

impl Activation for Relu {
    #[inline]
    fn apply<T: Float>(x: T) -> T {
        x.relu()
    }
}
