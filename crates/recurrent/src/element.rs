//! The floating-point element types a layer computes in: `f32` and `f64`.

use std::fmt::{Debug, Display};

use ndarray::LinalgScalar;

/// A data type tag, as torch and safetensors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// 32-bit IEEE float (`torch.float32`, safetensors `F32`).
    F32,
    /// 64-bit IEEE float (`torch.float64`, safetensors `F64`).
    F64,
}

impl Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        })
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type the layers compute in. Implemented for `f32` and `f64` only.
///
/// Input, hidden state and parameters of one layer always share the element type, so
/// torch's "input and parameter tensors are not the same dtype" error is a compile-time
/// error here.
pub trait Float:
    sealed::Sealed
    + LinalgScalar
    + num_traits::Float
    + ndarray_npy::ReadableElement
    + ndarray_npy::WritableElement
    + ndarray::ScalarOperand
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// The dtype tag of this type.
    const DTYPE: Dtype;

    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn as_f64(self) -> f64;
    /// `max(self, 0)`, with NaN propagated as torch's relu does.
    fn relu(self) -> Self;
    /// `tanh` of every element in place: for `f32` a vectorised approximation within
    /// ~1e-7 of the exact value (`kernels/tanh.rs`), for `f64` libm's `tanh`.
    fn tanh_slice(xs: &mut [Self]);
    /// `tanh` of one value, as [`Float::tanh_slice`] computes it, for inlining into a
    /// fused loop (`FMA`: in a function compiled with FMA, as the slice version is
    /// where the CPU has it).
    fn tanh_inline<const FMA: bool>(self) -> Self;
    /// The logistic function `1 / (1 + exp(-self))`, for inlining into a fused loop: for
    /// `f32` a vectorisable version within a few ulps (`kernels/tanh.rs`), for `f64`
    /// libm's `exp` and a division.
    fn sigmoid_inline<const FMA: bool>(self) -> Self;
    /// Reads one value from little-endian bytes (`bytes.len() == size_of::<Self>()`).
    fn from_le_slice(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes of `self` to `out`.
    fn extend_le_bytes(self, out: &mut Vec<u8>);

    /// `C = alpha * A B + beta * C` on raw strided storage (row and column strides in
    /// elements). `beta == 0` means C is only written, never read.
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping (for C) matrices of
    /// the given sizes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Float for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn tanh_slice(xs: &mut [Self]) {
        crate::kernels::tanh::tanh_slice_f32(xs)
    }
    #[inline(always)]
    fn tanh_inline<const FMA: bool>(self) -> Self {
        crate::kernels::tanh::tanh_f32_with::<FMA>(self)
    }
    #[inline(always)]
    fn sigmoid_inline<const FMA: bool>(self) -> Self {
        crate::kernels::tanh::sigmoid_f32_with::<FMA>(self)
    }
    fn of(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn relu(self) -> Self {
        if self < 0.0 {
            0.0
        } else {
            self
        }
    }
    fn from_le_slice(bytes: &[u8]) -> Self {
        let mut b = [0u8; 4];
        b.copy_from_slice(bytes);
        f32::from_le_bytes(b)
    }
    fn extend_le_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Float for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn tanh_slice(xs: &mut [Self]) {
        for x in xs {
            *x = x.tanh();
        }
    }
    #[inline(always)]
    fn tanh_inline<const FMA: bool>(self) -> Self {
        self.tanh()
    }
    #[inline(always)]
    fn sigmoid_inline<const FMA: bool>(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn of(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn relu(self) -> Self {
        if self < 0.0 {
            0.0
        } else {
            self
        }
    }
    fn from_le_slice(bytes: &[u8]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        f64::from_le_bytes(b)
    }
    fn extend_le_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}
