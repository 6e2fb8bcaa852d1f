//! Shared test helpers: torch.testing.assert_close and fixture loading.
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::ArrayD;
use recurrent::{Dtype, Float};

/// The folder of PyTorch-generated fixtures (scripts/make_fixtures.py).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// torch.testing.assert_close's default tolerances for a dtype: (rtol, atol).
pub fn default_tolerances(dtype: Dtype) -> (f64, f64) {
    match dtype {
        Dtype::F32 => (1.3e-6, 1e-5),
        Dtype::F64 => (1e-7, 1e-7),
    }
}

/// Checks `|actual - expected| <= atol + rtol * |expected|` elementwise, with equal shapes,
/// as torch.testing.assert_close does (NaN equal to NaN is not needed here).
pub fn assert_close<T: Float>(actual: &ArrayD<T>, expected: &ArrayD<T>, what: &str) {
    let (rtol, atol) = default_tolerances(T::DTYPE);
    assert_close_tol(actual, expected, rtol, atol, what);
}

/// [`assert_close`] with explicit tolerances.
pub fn assert_close_tol<T: Float>(
    actual: &ArrayD<T>,
    expected: &ArrayD<T>,
    rtol: f64,
    atol: f64,
    what: &str,
) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    let mut worst: Option<(usize, f64, f64)> = None;
    for (i, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
        let (a, e) = (a.as_f64(), e.as_f64());
        let allowed = atol + rtol * e.abs();
        let diff = (a - e).abs();
        if !(diff <= allowed) && worst.is_none_or(|(_, wa, we)| diff > (wa - we).abs()) {
            worst = Some((i, a, e));
        }
    }
    if let Some((i, a, e)) = worst {
        panic!("{what}: element {i} differs: got {a}, expected {e} (rtol {rtol}, atol {atol})");
    }
}
