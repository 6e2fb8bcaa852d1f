//! `C = A B + beta C` on ndarray views of any strides, through the chosen GEMM crate.
//!
//! The crate is `matrixmultiply` (ndarray's own backend). It takes arbitrary row and
//! column strides, which the backward's weight gradients need (`dGᵀ X` over all steps,
//! both operands computed on the call, nothing to pack ahead); every product with a
//! weight known in advance goes through the panel GEMM instead (`kernels/panel.rs`,
//! docs/DESIGN.md).

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::element::Float;

/// `c = a · b + beta · c`. With `beta == 0`, `c` is only written.
///
/// Shapes are internal invariants of the fast path (user input is checked before it gets
/// here), so a mismatch is a bug and panics.
pub(crate) fn gemm<T: Float>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    beta: T,
    c: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm shape mismatch: {:?} x {:?} -> {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == T::zero() {
            c.fill(T::zero());
        } else {
            c.mapv_inplace(|v| v * beta);
        }
        return;
    }
    let sa = a.strides();
    let sb = b.strides();
    let sc = c.strides().to_vec();
    // SAFETY: the pointers come from live views whose shapes were just checked; the
    // strides are theirs, and `c` is a unique mutable view, so it overlaps neither input.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            T::one(),
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            beta,
            c.as_mut_ptr(),
            sc[0],
            sc[1],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    fn naive(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        let (m, k) = a.dim();
        let n = b.dim().1;
        Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
    }

    #[test]
    fn matches_naive_on_awkward_sizes_and_strides() {
        for &(m, k, n) in &[(1, 1, 1), (1, 17, 33), (15, 16, 17), (3, 0, 4), (0, 3, 4)] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| (i * 7 + j * 3) as f64 * 0.1 - 1.0);
            let b = Array2::from_shape_fn((n, k), |(i, j)| (i * 5 + j) as f64 * 0.05 - 0.5);
            let bt = b.t();
            // C is a column slice of a wider matrix, as in the fast path.
            let mut wide = Array2::from_elem((m, n + 5), 1.0);
            let mut c = wide.slice_mut(s![.., 2..2 + n]);
            gemm(&a.view(), &bt, 1.0, &mut c);
            let want = naive(&a, &bt.to_owned()) + 1.0;
            let err = (&c - &want).iter().fold(0.0f64, |e, d| e.max(d.abs()));
            assert!(err < 1e-12, "{m}x{k}x{n}: {err}");
            assert!(wide.slice(s![.., ..2]).iter().all(|&v| v == 1.0));
        }
    }
}
