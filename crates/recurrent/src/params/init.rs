//! torch's default initialisation for recurrent layers.

use ndarray::{ArrayViewMut, Dimension};
use rand::Rng;

use crate::element::Float;

/// Fills `array` with draws from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), the
/// distribution `torch.nn.RNN.reset_parameters` gives every parameter.
///
/// Values are drawn in f64 and rounded to `T`, so one seed gives the same f32 and f64
/// models up to rounding.
pub fn uniform_init<T: Float, D: Dimension, R: Rng + ?Sized>(
    mut array: ArrayViewMut<'_, T, D>,
    hidden_size: usize,
    rng: &mut R,
) {
    let bound = 1.0 / (hidden_size as f64).sqrt();
    for v in array.iter_mut() {
        let u: f64 = rng.random();
        *v = T::of((2.0 * u - 1.0) * bound);
    }
}
