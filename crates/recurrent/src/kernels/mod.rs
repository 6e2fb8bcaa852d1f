//! The numerical building blocks of the fast path: matrix products and activations.

mod activation;
pub(crate) mod cache;
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

/// Asks the CPU to bring every row of `a` into its L2 cache ahead of use (x86_64
/// `prefetcht1`, one per 64-byte line; nothing elsewhere). A hint only: no value
/// changes, and nothing is read that `a` does not cover.
///
/// A step's input projection comes from an array of all steps' (tens of MiB for a long
/// sequence, past every private cache); requested before the step's product, the lines
/// arrive while it runs, where the epilogue would otherwise wait on them one load at a
/// time (measured: most of the LSTM epilogue's time on a medium layer).
pub(crate) fn prefetch_rows<T>(a: &ndarray::ArrayView2<'_, T>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let (rows, cols) = a.dim();
        let bytes = cols * std::mem::size_of::<T>();
        if a.strides()[1] != 1 || bytes == 0 {
            return;
        }
        for r in 0..rows {
            let row = a.row(r).as_ptr() as *const i8;
            let mut off = 0;
            while off < bytes {
                // SAFETY: a prefetch never faults, and the address lies in row r.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(off)) };
                off += 64;
            }
            // The last line, when the row does not start on a line boundary.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(bytes - 1)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = a;
}
