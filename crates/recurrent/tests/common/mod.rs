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
        let out_of_tolerance = diff.is_nan() || diff > allowed;
        if out_of_tolerance && worst.is_none_or(|(_, wa, we)| diff > (wa - we).abs()) {
            worst = Some((i, a, e));
        }
    }
    if let Some((i, a, e)) = worst {
        panic!("{what}: element {i} differs: got {a}, expected {e} (rtol {rtol}, atol {atol})");
    }
}

/// A file in the CLI fixture folder (checkpoints and `.npy` arrays saved from PyTorch).
pub fn cli_fixture(name: &str) -> PathBuf {
    fixtures().join("cli").join(name)
}

/// Reads a `.npy` fixture that must hold element type `T`.
pub fn npy<T: Float>(name: &str) -> ArrayD<T> {
    let path = cli_fixture(name);
    recurrent::io::npy::read::<T>(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An array of `shape` with entries drawn uniformly from `[-scale, scale)` by a ChaCha8
/// generator seeded with `seed` (reproducible; independent of the library's own init).
pub fn random_array<T: Float>(shape: &[usize], seed: u64, scale: f64) -> ArrayD<T> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(shape.to_vec(), || {
        let u: f64 = rng.random();
        T::of((2.0 * u - 1.0) * scale)
    })
}

/// Asserts that two layers have the same configuration and bit-identical parameters,
/// listed under the same names in the same order.
pub fn assert_same_parameters<T: Float>(a: &recurrent::Rnn<T>, b: &recurrent::Rnn<T>, what: &str) {
    assert_eq!(a.config(), b.config(), "{what}: configuration");
    let pa: Vec<(String, ArrayD<T>)> = a
        .named_parameters()
        .map(|(n, t)| (n, t.to_owned()))
        .collect();
    let pb: Vec<(String, ArrayD<T>)> = b
        .named_parameters()
        .map(|(n, t)| (n, t.to_owned()))
        .collect();
    let na: Vec<&str> = pa.iter().map(|(n, _)| n.as_str()).collect();
    let nb: Vec<&str> = pb.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(na, nb, "{what}: parameter names");
    for ((name, ta), (_, tb)) in pa.iter().zip(&pb) {
        assert_eq!(ta.shape(), tb.shape(), "{what}: shape of {name}");
        let same = ta
            .iter()
            .zip(tb.iter())
            .all(|(x, y)| x.as_f64().to_bits() == y.as_f64().to_bits());
        assert!(same, "{what}: values of {name} differ");
    }
}

#[path = "runner.rs"]
pub mod runner;
