//! `y += x · Wᵀ` against `Wᵀ` packed once into column panels: the GEMM of every
//! product with at least a few rows (each step's `h_{t-1} W_hhᵀ`, the input projection
//! of all steps, an LSTM's projection, and the backward's recomputed forward).
//!
//! The design is Goto and van de Geijn's ("Anatomy of High-Performance Matrix
//! Multiplication", 2008), as BLIS implements it, with the right-hand side packed once
//! when the weights are set rather than on every call:
//!
//! - [`Panels`]: `Wᵀ` `(K, N)` as column panels of [`panel_width`] elements (64 bytes, one
//!   cache line): panel `q` holds columns `q·NR..q·NR + NR` for every `k`, contiguous, so
//!   a register tile streams its weights as one sequential run whatever `N` is. Columns
//!   past `N` are zeros.
//! - A register tile of `MR` rows × `NV` vectors of columns lives in registers for a
//!   block of [`KC`] steps of `k`: each step loads `NV` weight vectors and broadcasts
//!   `MR` inputs (AVX-512: 8 × 32 f32, 16 of the 32 zmm; AVX2: 6 × 16 f32, 12 of the 16
//!   ymm; f64 the same registers at half the columns). A product of one to three rows (a
//!   batch of a few; AVX2: one or two) takes wider tiles instead (AVX-512 4 zmm per row;
//!   AVX2 8 ymm for one row, 4 for two: enough independent sums to cover the
//!   multiply-add latency; see [`drive_row`]). (AVX2 with three rows of 4 ymm needs 17
//!   registers and measured 0.67-0.8x the 2-vector tile.)
//! - Loops, outermost first, for a product of at most [`MC`] rows (a step's): tiles of
//!   columns, blocks of `KC` steps of `k` (one tile's weights for the block, `KC × NV`
//!   vectors, stay in L1 while every row tile uses them), row tiles. For a taller one
//!   (an input projection over all steps): blocks of columns whose weights fill half of
//!   L2, blocks of `KC`, row tiles, column tiles, so that `C` streams out a row strip at
//!   a time (see [`drive_tall`]).
//!
//! Every output element is one chain of multiply-adds over `k` in increasing order,
//! starting from its value in `y`, whichever tile, block or thread computes it: the
//! result does not depend on how rows or columns are split (between threads, or by the
//! edges of the tiles). With FMA each step is one fused multiply-add; on the portable
//! path a multiply then an add. [`gemm_panels_plain`] is the oracle.

use std::any::TypeId;

use ndarray::{ArrayView2, ArrayViewMut2};

use super::isa::{self, Isa};
use crate::element::Float;

/// Elements per panel row: one 64-byte cache line (16 f32, 8 f64).
pub(crate) const fn panel_width<T>() -> usize {
    64 / std::mem::size_of::<T>()
}

/// The most rows a product takes in the short order (its `MC × KC` inputs stay in L2
/// while every column tile uses them); a taller one takes the tall order.
const MC: usize = 240;

/// Steps of `k` per block: one tile's weights for a block (`KC × NV` vectors, 64 KiB for
/// the AVX-512 f32 tile) stay in L2, next to L1, while every row tile of the block reads
/// them. (128, 256, 512 and 1024 measured within the noise of each other on the
/// per-step shapes; 512 was ahead by a little on the large ones.)
const KC: usize = 512;

/// `Wᵀ` `(K, N)` packed in column panels of [`panel_width`] elements (see the module
/// docs), 64-byte aligned, with zero panels past the last so that a tile reading up to
/// four panels from any panel boundary stays inside the buffer.
pub(crate) struct Panels<T> {
    buf: Vec<T>,
    /// Index of the first element, at a 64-byte boundary.
    start: usize,
    k: usize,
    n: usize,
}

/// Panels allocated past the last real one (a tile reads at most this many).
const SPARE_PANELS: usize = 4;

impl<T: Float> Panels<T> {
    /// Packs `wt` `(K, N)` (any strides).
    pub(crate) fn new(wt: ArrayView2<'_, T>) -> Self {
        let (k, n) = wt.dim();
        let mut panels = Panels::zeros(k, n);
        let nr = panel_width::<T>();
        let data = panels.data_mut();
        if wt.is_standard_layout() || wt.t().is_standard_layout() {
            // Read by contiguous rows: of `Wᵀ` itself (each row one panel row of every
            // panel), or of `W` as torch stores it (each row one lane of a panel).
            // Measured with a 4096 x 1024 `W` (an LSTM's W_hh at H = 1024): 23 ms
            // element by element, 3.3 ms so.
            if wt.is_standard_layout() {
                for (p, row) in wt.rows().into_iter().enumerate() {
                    let row = row.as_slice().unwrap_or_default(); // standard: contiguous
                    for (q, chunk) in row.chunks(nr).enumerate() {
                        let at = q * k * nr + p * nr;
                        data[at..at + chunk.len()].copy_from_slice(chunk);
                    }
                }
            } else {
                // One panel's `nr` rows of `W` at a time, in blocks of `P_BLOCK` steps of
                // `k`, so that the lines written (one per step) stay in L1 while each of
                // the rows fills its lane of them.
                const P_BLOCK: usize = 64;
                let w = wt.t();
                for (q, panel_rows) in w.axis_chunks_iter(ndarray::Axis(0), nr).enumerate() {
                    let panel = &mut data[q * k * nr..(q + 1) * k * nr];
                    for p0 in (0..k).step_by(P_BLOCK) {
                        let p1 = k.min(p0 + P_BLOCK);
                        for (lane, row) in panel_rows.rows().into_iter().enumerate() {
                            let row = row.as_slice().unwrap_or_default(); // standard
                            for (p, &v) in row[p0..p1].iter().enumerate() {
                                panel[(p0 + p) * nr + lane] = v;
                            }
                        }
                    }
                }
            }
        } else {
            for (p, row) in wt.rows().into_iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    data[(j / nr) * k * nr + p * nr + j % nr] = v;
                }
            }
        }
        panels
    }

    fn zeros(k: usize, n: usize) -> Self {
        let nr = panel_width::<T>();
        let len = (n.div_ceil(nr) + SPARE_PANELS) * k * nr;
        let buf = vec![T::zero(); len + nr];
        let start = buf.as_ptr().align_offset(64).min(nr);
        Panels { buf, start, k, n }
    }

    fn data(&self) -> &[T] {
        &self.buf[self.start..]
    }

    fn data_mut(&mut self) -> &mut [T] {
        let start = self.start;
        &mut self.buf[start..]
    }

    /// `K`, the rows of `Wᵀ`.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Element `(p, j)` of `Wᵀ`.
    #[cfg(test)]
    pub(crate) fn get(&self, p: usize, j: usize) -> T {
        let nr = panel_width::<T>();
        self.data()[(j / nr) * self.k * nr + p * nr + j % nr]
    }
}

impl<T: Clone> Clone for Panels<T> {
    /// A copy with its own 64-byte alignment (a plain `Vec` clone could lose it: the
    /// data is rotated to the new buffer's boundary).
    fn clone(&self) -> Self {
        let mut buf = self.buf.clone();
        let start = buf.as_ptr().align_offset(64).min(panel_width::<T>());
        buf.rotate_left(self.start);
        buf.rotate_right(start);
        Panels {
            buf,
            start,
            k: self.k,
            n: self.n,
        }
    }
}

impl<T: PartialEq> PartialEq for Panels<T> {
    fn eq(&self, other: &Self) -> bool {
        let len = self.n.div_ceil(panel_width::<T>()) * self.k * panel_width::<T>();
        self.k == other.k
            && self.n == other.n
            && self.buf[self.start..self.start + len] == other.buf[other.start..other.start + len]
    }
}

impl<T> std::fmt::Debug for Panels<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Panels({} x {})", self.k, self.n)
    }
}

/// `y = x · Wᵀ[:, c0..c0 + y.ncols()] (+ y when accumulate)`, `x` `(M, K)`, `y`
/// `(M, width)`; `c0` is a multiple of [`panel_width`] and `c0 + width <= N`. Without
/// `accumulate`, `y` is only written (each sum starts from +0, as it would from a `y`
/// filled with zeros). Operands without unit column stride or with a negative row
/// stride are copied into row-major buffers first (the values do not depend on the
/// layout).
pub(crate) fn gemm_panels<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &Panels<T>,
    c0: usize,
    y: &mut ArrayViewMut2<'_, T>,
    accumulate: bool,
) {
    gemm_panels_ordered(x, w, c0, y, accumulate, ColumnOrder::Ascending)
}

/// [`gemm_panels`] visiting the column tiles in `order` (a product of more than [`MC`]
/// rows ignores it): the same sums, the same bits, in whichever order.
pub(crate) fn gemm_panels_ordered<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &Panels<T>,
    c0: usize,
    y: &mut ArrayViewMut2<'_, T>,
    accumulate: bool,
    order: ColumnOrder,
) {
    let start = if accumulate { Start::Y } else { Start::Zero };
    gemm_panels_on(isa::active(), x, w, c0, y, start, order)
}

/// The order in which a product of at most [`MC`] rows (a step's) visits its tiles of
/// columns. Each output column is its own chain of multiply-adds, so the order changes
/// no value, only which weights the caches hold when the product starts.
///
/// A scan alternates ([`ColumnOrder::for_step`]): a step then starts on the weights the
/// step before touched last, which are still in L2, where in one order every step would
/// start on those evicted longest ago. It matters where a core's share of `W_hhᵀ`
/// exceeds its L2 but not by much: measured (paired `recurrent bench`, AVX-512, Zen 5
/// with 1 MiB of L2 per core, 2 threads, 500 x 1 x 256 -> 512, 2 MiB of `W_hhᵀ` per
/// core) LSTM 1.14x, GRU 1.11x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColumnOrder {
    Ascending,
    Descending,
}

impl ColumnOrder {
    /// Ascending on even steps, descending on odd ones (`t` the step's position in
    /// time, which alternates parity in either direction of a scan).
    pub(crate) fn for_step(t: usize) -> Self {
        if t.is_multiple_of(2) {
            ColumnOrder::Ascending
        } else {
            ColumnOrder::Descending
        }
    }
}

/// `y = bias + x · Wᵀ[:, c0..c0 + y.ncols()]` with `bias` `(width,)` broadcast over the
/// rows: each sum starts from its column's bias (the same values as filling `y` with
/// the bias rows and accumulating, without the pass that writes them and the one that
/// reads them back). `y` is only written.
pub(crate) fn gemm_panels_bias<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &Panels<T>,
    c0: usize,
    bias: &[T],
    y: &mut ArrayViewMut2<'_, T>,
) {
    gemm_panels_on(
        isa::active(),
        x,
        w,
        c0,
        y,
        Start::Bias(bias),
        ColumnOrder::Ascending,
    )
}

/// What each of a product's sums starts from.
#[derive(Clone, Copy)]
enum Start<'a, T> {
    /// +0: `y` is only written.
    Zero,
    /// `y`'s own value: the product accumulates into it.
    Y,
    /// Its column's entry of this row `(width,)`: `y` is only written.
    Bias(&'a [T]),
}

/// [`gemm_panels`] on the path `isa`, which this CPU must support.
fn gemm_panels_on<T: Float>(
    isa: Isa,
    x: &ArrayView2<'_, T>,
    w: &Panels<T>,
    c0: usize,
    y: &mut ArrayViewMut2<'_, T>,
    start: Start<'_, T>,
    order: ColumnOrder,
) {
    assert!(isa.is_supported(), "gemm_panels on a path this CPU lacks");
    let (m, k) = x.dim();
    let width = y.ncols();
    let nr = panel_width::<T>();
    assert!(
        k == w.k && y.nrows() == m && c0.is_multiple_of(nr) && c0 + width <= w.n,
        "gemm_panels shape mismatch"
    );
    if let Start::Bias(bias) = start {
        assert_eq!(bias.len(), width, "gemm_panels_bias: one bias per column");
    }
    if m == 0 || width == 0 {
        return;
    }
    if k == 0 {
        match start {
            Start::Zero => y.fill(T::zero()),
            Start::Y => {}
            Start::Bias(bias) => {
                for mut row in y.rows_mut() {
                    row.iter_mut().zip(bias).for_each(|(v, &b)| *v = b);
                }
            }
        }
        return;
    }
    if (x.strides()[1] != 1 && k > 1) || x.strides()[0] < 0 {
        return gemm_panels_on(isa, &x.as_standard_layout().view(), w, c0, y, start, order);
    }
    if (y.strides()[1] != 1 && width > 1) || y.strides()[0] < 0 {
        let mut rows = y.as_standard_layout().into_owned();
        gemm_panels_on(isa, x, w, c0, &mut rows.view_mut(), start, order);
        return y.assign(&rows);
    }
    let operands = Operands {
        m,
        k,
        width,
        a: x.as_ptr(),
        lda: x.strides()[0] as usize,
        b: w.data()[(c0 / nr) * k * nr..].as_ptr(),
        c: y.as_mut_ptr(),
        ldc: y.strides()[0] as usize,
        accumulate: matches!(start, Start::Y),
        bias: match start {
            Start::Bias(bias) => bias.as_ptr(),
            _ => std::ptr::null(),
        },
        descending: order == ColumnOrder::Descending,
    };
    // SAFETY: the operands describe `x`, `y`, `bias` (one per column of `y`) and the
    // panels of `w` from column c0 on, as just checked; `drive` reads at most
    // SPARE_PANELS panels past the last column, which `Panels` allocates, and no bias
    // past `width`. `isa` is a path this CPU supports (checked above), and each driver
    // is compiled for its path's features.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512(operands),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2(operands),
            _ => portable(operands),
        }
    }
}

/// One product's raw operands: `C (m, width) += A (m, k) · B`, with `A`'s and `C`'s rows
/// `lda` and `ldc` elements apart (unit column stride), and `B` the panels from the
/// first column on (panel `q` at `b + q·k·NR`).
#[derive(Clone, Copy)]
struct Operands<T> {
    m: usize,
    k: usize,
    width: usize,
    a: *const T,
    lda: usize,
    b: *const T,
    c: *mut T,
    ldc: usize,
    /// Whether the sums start from `C` (else from `bias`, or zero; `C` only written).
    accumulate: bool,
    /// Where the sums start without `accumulate`: one value per column of `C`, or null
    /// for zero.
    bias: *const T,
    /// Whether a short product visits its column tiles last to first.
    descending: bool,
}

/// A vector of `LANES` elements of `T` and the operations a tile needs. Implementations
/// are only called from functions compiled for their instruction set.
trait Vector<T>: Copy {
    const LANES: usize;
    /// Loads `LANES` elements (unaligned).
    unsafe fn load(p: *const T) -> Self;
    /// Stores `LANES` elements (unaligned).
    unsafe fn store(self, p: *mut T);
    /// Every lane `*p`.
    unsafe fn splat(p: *const T) -> Self;
    /// `a · b + c`, fused where the path has FMA.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
}

/// The portable path's "vector": one panel row in plain arrays, which the compiler
/// vectorises with the target's baseline; multiply and add are not fused.
#[derive(Clone, Copy)]
struct Plain<T, const W: usize>([T; W]);

impl<T: Float, const W: usize> Vector<T> for Plain<T, W> {
    const LANES: usize = W;
    #[inline(always)]
    unsafe fn load(p: *const T) -> Self {
        Plain(std::ptr::read_unaligned(p as *const [T; W]))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut T) {
        std::ptr::write_unaligned(p as *mut [T; W], self.0)
    }
    #[inline(always)]
    unsafe fn splat(p: *const T) -> Self {
        Plain([*p; W])
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        let mut out = c.0;
        for ((o, x), y) in out.iter_mut().zip(a.0).zip(b.0) {
            *o = x * y + *o;
        }
        Plain(out)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vector;
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(super) struct F32x16(__m512);
    #[derive(Clone, Copy)]
    pub(super) struct F64x8(__m512d);
    #[derive(Clone, Copy)]
    pub(super) struct F32x8(__m256);
    #[derive(Clone, Copy)]
    pub(super) struct F64x4(__m256d);

    macro_rules! vector {
        ($ty:ident, $t:ty, $lanes:expr, $load:ident, $store:ident, $splat:ident, $fma:ident) => {
            impl Vector<$t> for $ty {
                const LANES: usize = $lanes;
                #[inline(always)]
                unsafe fn load(p: *const $t) -> Self {
                    $ty($load(p))
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut $t) {
                    $store(p, self.0)
                }
                #[inline(always)]
                unsafe fn splat(p: *const $t) -> Self {
                    $ty($splat(*p))
                }
                #[inline(always)]
                unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
                    $ty($fma(a.0, b.0, c.0))
                }
            }
        };
    }
    vector!(
        F32x16,
        f32,
        16,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps
    );
    vector!(
        F64x8,
        f64,
        8,
        _mm512_loadu_pd,
        _mm512_storeu_pd,
        _mm512_set1_pd,
        _mm512_fmadd_pd
    );
    vector!(
        F32x8,
        f32,
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps
    );
    vector!(
        F64x4,
        f64,
        4,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_set1_pd,
        _mm256_fmadd_pd
    );
}

/// `ops` as operands of `U` when `T` is `U`.
fn cast<T: 'static, U: 'static>(ops: Operands<T>) -> Option<Operands<U>> {
    (TypeId::of::<T>() == TypeId::of::<U>()).then_some(Operands {
        m: ops.m,
        k: ops.k,
        width: ops.width,
        a: ops.a as *const U,
        lda: ops.lda,
        b: ops.b as *const U,
        c: ops.c as *mut U,
        ldc: ops.ldc,
        accumulate: ops.accumulate,
        bias: ops.bias as *const U,
        descending: ops.descending,
    })
}

#[cfg(target_arch = "x86_64")]
unsafe fn avx512<T: Float>(ops: Operands<T>) {
    use x86::{F32x16, F64x8};
    if let Some(ops) = cast::<T, f32>(ops) {
        match ops.m {
            1 => avx512_few::<f32, F32x16, 1, 4, 2>(ops),
            2 => avx512_few::<f32, F32x16, 2, 4, 2>(ops),
            3 => avx512_few::<f32, F32x16, 3, 4, 2>(ops),
            m if m > MC => avx512_tall::<f32, F32x16, 8, 2>(ops),
            _ => avx512_short::<f32, F32x16, 8, 2>(ops),
        }
    } else if let Some(ops) = cast::<T, f64>(ops) {
        match ops.m {
            1 => avx512_few::<f64, F64x8, 1, 4, 2>(ops),
            2 => avx512_few::<f64, F64x8, 2, 4, 2>(ops),
            3 => avx512_few::<f64, F64x8, 3, 4, 2>(ops),
            m if m > MC => avx512_tall::<f64, F64x8, 8, 2>(ops),
            _ => avx512_short::<f64, F64x8, 8, 2>(ops),
        }
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn avx2<T: Float>(ops: Operands<T>) {
    use x86::{F32x8, F64x4};
    if let Some(ops) = cast::<T, f32>(ops) {
        match ops.m {
            1 => avx2_few::<f32, F32x8, 1, 8, 2>(ops),
            2 => avx2_few::<f32, F32x8, 2, 4, 2>(ops),
            m if m > MC => avx2_tall::<f32, F32x8, 6, 2>(ops),
            _ => avx2_short::<f32, F32x8, 6, 2>(ops),
        }
    } else if let Some(ops) = cast::<T, f64>(ops) {
        match ops.m {
            1 => avx2_few::<f64, F64x4, 1, 8, 2>(ops),
            2 => avx2_few::<f64, F64x4, 2, 4, 2>(ops),
            m if m > MC => avx2_tall::<f64, F64x4, 6, 2>(ops),
            _ => avx2_short::<f64, F64x4, 6, 2>(ops),
        }
    }
}

unsafe fn portable<T: Float>(ops: Operands<T>) {
    if let Some(ops) = cast::<T, f32>(ops) {
        if ops.m > MC {
            portable_tall::<f32, Plain<f32, 16>, 4, 1>(ops)
        } else {
            portable_short::<f32, Plain<f32, 16>, 4, 1>(ops)
        }
    } else if let Some(ops) = cast::<T, f64>(ops) {
        if ops.m > MC {
            portable_tall::<f64, Plain<f64, 8>, 4, 1>(ops)
        } else {
            portable_short::<f64, Plain<f64, 8>, 4, 1>(ops)
        }
    }
}

/// Each driver of each path in a function of its own (the drivers and the tiles inline
/// into it, compiled for the path's features), rather than all of a path's drivers
/// inlined into one function: without optimisation (a dependent crate's debug build)
/// every inlined tile keeps its own stack slots, and one function holding them all took
/// 1.2 MiB of stack (2.7 MiB with the few-row tiles), past the 2 MiB of a spawned
/// thread; each of these takes a fraction of it.
macro_rules! drivers {
    ($(#[$attr:meta])*; $tall:ident, $short:ident, $few:ident) => {
        $(#[$attr])*
        #[inline(never)]
        unsafe fn $tall<T: Float, V: Vector<T>, const MR: usize, const NV: usize>(
            ops: Operands<T>,
        ) {
            drive_tall::<T, V, MR, NV>(ops)
        }
        $(#[$attr])*
        #[inline(never)]
        unsafe fn $short<T: Float, V: Vector<T>, const MR: usize, const NV: usize>(
            ops: Operands<T>,
        ) {
            drive_short::<T, V, MR, NV, false>(ops)
        }
        $(#[$attr])*
        #[inline(never)]
        #[allow(dead_code)] // the portable path has no few-row tiles
        unsafe fn $few<
            T: Float,
            V: Vector<T>,
            const MR: usize,
            const NVW: usize,
            const NV: usize,
        >(
            ops: Operands<T>,
        ) {
            drive_row::<T, V, MR, NVW, NV>(ops)
        }
    };
}
drivers!(#[cfg(target_arch = "x86_64")] #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]; avx512_tall, avx512_short, avx512_few);
drivers!(#[cfg(target_arch = "x86_64")] #[target_feature(enable = "avx2,fma")]; avx2_tall, avx2_short, avx2_few);
drivers!(; portable_tall, portable_short, portable_few);

/// Bytes of weights per column block of a tall product: the block (`KC × NC` at most)
/// stays in L2, half of it, while every row tile sweeps across it.
const TALL_BLOCK_BYTES: usize = 1 << 20;

/// A tall product (an input projection over all steps, thousands of rows): for each
/// block of columns whose weights fit in half of L2 and each block of `KC` steps of `k`,
/// every row tile in turn sweeps the block's column tiles, its `MR × KC` inputs in L1.
/// `C` is then written a row strip at a time, each line once per `k` block, where the
/// short order below would keep `MC` rows of every column strip live in L2 beside the
/// weights. Measured with the `gflops` example (one thread, AVX-512, best of each run,
/// three runs alternating with the short order): 3200 x 128 x 1024 from 82-97 to
/// 141-158 GFLOP/s, 3200 x 256 x 1024 from 88-93 to 135-150, 12800 x 512 x 4096 from
/// 110-140 to 133-153; a 240-row product ran at 155-160 in the same runs.
#[inline(always)]
unsafe fn drive_tall<T: Float, V: Vector<T>, const MR: usize, const NV: usize>(ops: Operands<T>) {
    let tile_cols = NV * V::LANES;
    let kc_max = KC.min(ops.k);
    let nc =
        (TALL_BLOCK_BYTES / (kc_max * std::mem::size_of::<T>()) / tile_cols).max(1) * tile_cols;
    let mut jc = 0;
    while jc < ops.width {
        let block_cols = nc.min(ops.width - jc);
        let mut k0 = 0;
        while k0 < ops.k {
            let kc = KC.min(ops.k - k0);
            let mut i0 = 0;
            while i0 < ops.m {
                let rows = MR.min(ops.m - i0);
                let mut j0 = jc;
                while j0 < jc + block_cols {
                    let cols = tile_cols.min(jc + block_cols - j0);
                    tile_at::<T, V, MR, NV, false>(&ops, i0, rows, j0, cols, k0, kc);
                    j0 += cols;
                }
                i0 += rows;
            }
            k0 += kc;
        }
        jc += block_cols;
    }
}

/// A product of `MR` = 1 to 3 rows (a batch of a few, a stream's step): tiles of `NVW`
/// vectors of columns, whose `MR · NVW` independent sums per step of `k` keep both FMA
/// units busy where the `NV` of a many-row tile would leave a few rows' `MR · NV` chains
/// waiting on the multiply-add latency; the columns past the last whole wide tile take
/// `NV`-vector tiles (so that a narrow product does not run most of a wide tile on
/// padding). The sums are the same chains as in any other tile.
#[inline(always)]
unsafe fn drive_row<T: Float, V: Vector<T>, const MR: usize, const NVW: usize, const NV: usize>(
    ops: Operands<T>,
) {
    let nr = panel_width::<T>();
    let wide_cols = NVW * V::LANES;
    let wide = ops.width / wide_cols * wide_cols;
    let head = Operands { width: wide, ..ops };
    let tail = Operands {
        width: ops.width - wide,
        b: ops.b.add(wide / nr * ops.k * nr),
        c: ops.c.add(wide),
        bias: if ops.bias.is_null() {
            ops.bias
        } else {
            ops.bias.add(wide)
        },
        ..ops
    };
    if ops.descending && tail.width > 0 {
        drive_short::<T, V, MR, NV, true>(tail);
    }
    if head.width > 0 {
        drive_short::<T, V, MR, NVW, true>(head);
    }
    if !ops.descending && tail.width > 0 {
        drive_short::<T, V, MR, NV, true>(tail);
    }
}

/// The loops of a product of at most [`MC`] rows (a step's): tiles of columns, blocks of
/// `KC` steps of `k` (the tile's weights for the block in L1), row tiles.
#[inline(always)]
unsafe fn drive_short<
    T: Float,
    V: Vector<T>,
    const MR: usize,
    const NV: usize,
    const EXACT: bool,
>(
    ops: Operands<T>,
) {
    let tile_cols = NV * V::LANES;
    let tiles = ops.width.div_ceil(tile_cols);
    for tile in 0..tiles {
        let tile = if ops.descending {
            tiles - 1 - tile
        } else {
            tile
        };
        let j0 = tile * tile_cols;
        let cols = tile_cols.min(ops.width - j0);
        let mut k0 = 0;
        while k0 < ops.k {
            let kc = KC.min(ops.k - k0);
            let mut i0 = 0;
            while i0 < ops.m {
                let rows = MR.min(ops.m - i0);
                tile_at::<T, V, MR, NV, EXACT>(&ops, i0, rows, j0, cols, k0, kc);
                i0 += rows;
            }
            k0 += kc;
        }
    }
}

/// The register tile of `ops` at rows `i0..i0 + rows`, columns `j0..j0 + cols` and steps
/// `k0..k0 + kc` of `k`: the sums start from `C` after the first `k` block (and from
/// `C`, the bias or zero in it, as `ops` says).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_at<T: Float, V: Vector<T>, const MR: usize, const NV: usize, const EXACT: bool>(
    ops: &Operands<T>,
    i0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    k0: usize,
    kc: usize,
) {
    let nr = panel_width::<T>();
    let panel_stride = ops.k * nr;
    let tile = Tile {
        kc,
        a: ops.a.add(i0 * ops.lda + k0),
        lda: ops.lda,
        b: ops.b.add((j0 / nr) * panel_stride + k0 * nr),
        panel_stride,
        c: ops.c.add(i0 * ops.ldc + j0),
        ldc: ops.ldc,
        cols,
        accumulate: ops.accumulate || k0 > 0,
        bias: if ops.bias.is_null() {
            ops.bias
        } else {
            ops.bias.add(j0)
        },
    };
    // EXACT: every row tile has MR rows (a product of exactly MR rows), so the tiles of
    // fewer rows are not compiled in.
    if EXACT || rows == MR {
        debug_assert_eq!(rows, MR);
        tile.run::<V, MR, NV>();
    } else {
        tile.run_rows::<V, NV>(rows);
    }
}

/// One register tile's operands: `C (rows, cols) += A (rows, kc) · B (kc, cols)`, `B`
/// in panels `panel_stride` apart.
#[derive(Clone, Copy)]
struct Tile<T> {
    kc: usize,
    a: *const T,
    lda: usize,
    b: *const T,
    panel_stride: usize,
    c: *mut T,
    ldc: usize,
    /// Columns of `C` to keep: the full `NV · LANES` except at the right edge.
    cols: usize,
    /// Whether the sums start from `C` (else from `bias`, or zero).
    accumulate: bool,
    /// Without `accumulate`, the sums of column `j` of the tile start from `bias[j]`
    /// (null: from zero).
    bias: *const T,
}

impl<T: Float> Tile<T> {
    /// A tile of fewer than the full `MR` rows (the last rows of a block).
    #[inline(always)]
    unsafe fn run_rows<V: Vector<T>, const NV: usize>(&self, rows: usize) {
        match rows {
            1 => self.run::<V, 1, NV>(),
            2 => self.run::<V, 2, NV>(),
            3 => self.run::<V, 3, NV>(),
            4 => self.run::<V, 4, NV>(),
            5 => self.run::<V, 5, NV>(),
            6 => self.run::<V, 6, NV>(),
            7 => self.run::<V, 7, NV>(),
            _ => unreachable!("a tile has at most 8 rows"), // ok: MR <= 8 everywhere
        }
    }

    /// The register tile: `MR × NV` accumulators loaded from `C` (or +0), `kc` steps
    /// of multiply-adds, stored back. At the right edge (`cols` short of a full tile)
    /// through a buffer: see [`Tile::run_edge`].
    #[inline(always)]
    unsafe fn run<V: Vector<T>, const MR: usize, const NV: usize>(&self) {
        if self.cols == NV * V::LANES {
            self.run_full::<V, MR, NV>()
        } else {
            self.run_edge::<V, MR, NV>()
        }
    }

    /// The right edge: the tile runs in full on a buffer holding the kept columns of `C`
    /// (the others are computed from the panels' zero padding and dropped), and only the
    /// kept columns are copied back. The buffer exists only here, so that the full tiles
    /// touch no scratch at all.
    #[inline(always)]
    unsafe fn run_edge<V: Vector<T>, const MR: usize, const NV: usize>(&self) {
        let mut edge = [[T::zero(); 64]; MR];
        if self.accumulate {
            for (i, row) in edge.iter_mut().enumerate() {
                std::ptr::copy_nonoverlapping(
                    self.c.add(i * self.ldc),
                    row.as_mut_ptr(),
                    self.cols,
                );
            }
        }
        // The kept columns' biases, zero past them.
        let mut bias = [T::zero(); 64];
        if !self.bias.is_null() {
            std::ptr::copy_nonoverlapping(self.bias, bias.as_mut_ptr(), self.cols);
        }
        let inner = Tile {
            c: edge.as_mut_ptr() as *mut T,
            ldc: 64,
            cols: NV * V::LANES,
            bias: if self.bias.is_null() {
                self.bias
            } else {
                bias.as_ptr()
            },
            ..*self
        };
        inner.run_full::<V, MR, NV>();
        for (i, row) in edge.iter().enumerate() {
            std::ptr::copy_nonoverlapping(row.as_ptr(), self.c.add(i * self.ldc), self.cols);
        }
    }

    /// A full tile (`cols == NV · LANES`), straight from and into `C`.
    #[inline(always)]
    unsafe fn run_full<V: Vector<T>, const MR: usize, const NV: usize>(&self) {
        let nr = panel_width::<T>();
        let per_panel = nr / V::LANES;
        // Vector v of B's row p: panel v / per_panel, lanes (v % per_panel) · LANES.
        let b_at = |v: usize, p: usize| {
            self.b
                .add((v / per_panel) * self.panel_stride + p * nr + (v % per_panel) * V::LANES)
        };
        let c_at = |i: usize, v: usize| self.c.add(i * self.ldc + v * V::LANES);
        // Plain loops over fixed-size arrays, no `std::array::from_fn`: a closure handed
        // to a generic function is compiled without this function's target features, and
        // where LLVM declines to inline it the loads become calls (measured: a tenth of
        // the kernel's time).
        let zero = V::splat(&T::zero()); // +0 in every lane
        let mut acc = [[zero; NV]; MR];
        if self.accumulate {
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = V::load(c_at(i, v));
                }
            }
        } else if !self.bias.is_null() {
            let mut first = [zero; NV];
            for (v, x) in first.iter_mut().enumerate() {
                *x = V::load(self.bias.add(v * V::LANES));
            }
            acc = [first; MR];
        }
        let mut b = [zero; NV];
        for p in 0..self.kc {
            for (v, bv) in b.iter_mut().enumerate() {
                *bv = V::load(b_at(v, p));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let a = V::splat(self.a.add(i * self.lda + p));
                for (x, bv) in row.iter_mut().zip(b) {
                    *x = V::mul_add(a, bv, *x);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                x.store(self.c.add(i * self.ldc + v * V::LANES));
            }
        }
    }
}

/// The plain triple loop: the oracle for [`gemm_panels`], with the same order of sums.
#[cfg(test)]
pub(crate) fn gemm_panels_plain<T: Float>(
    x: &ArrayView2<'_, T>,
    w: &Panels<T>,
    c0: usize,
    y: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = x.dim();
    for i in 0..m {
        for j in 0..y.ncols() {
            let mut acc = y[[i, j]];
            for p in 0..k {
                acc += x[[i, p]] * w.get(p, c0 + j);
            }
            y[[i, j]] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2};

    fn case<T: Float>(isa: Isa, m: usize, k: usize, n: usize, c0: usize, tol: f64) {
        let x = Array2::from_shape_fn((m, k), |(i, p)| {
            T::of(((i * 31 + p * 7) % 23) as f64 * 0.05 - 0.5)
        });
        let wt = Array2::from_shape_fn((k, n), |(p, j)| {
            T::of(((p * 13 + j * 5) % 29) as f64 * 0.03 - 0.4)
        });
        let w = Panels::new(wt.view());
        let width = n - c0;
        // y is a column slice of a wider buffer, as in a layer's output.
        let mut wide = Array2::from_shape_fn((m, width + 3), |(i, j)| T::of((i + j) as f64 * 0.01));
        let mut want = wide.clone();
        let mut descending = wide.clone();
        gemm_panels_on(
            isa,
            &x.view(),
            &w,
            c0,
            &mut wide.slice_mut(s![.., 1..1 + width]),
            Start::Y,
            ColumnOrder::Ascending,
        );
        // The other order of the column tiles: the same bits, whatever the start.
        gemm_panels_on(
            isa,
            &x.view(),
            &w,
            c0,
            &mut descending.slice_mut(s![.., 1..1 + width]),
            Start::Y,
            ColumnOrder::Descending,
        );
        assert!(
            wide.iter()
                .zip(&descending)
                .all(|(a, b)| a.as_f64().to_bits() == b.as_f64().to_bits()),
            "{isa}: {m}x{k}x{n} from {c0}: descending order changed a value"
        );
        gemm_panels_plain(&x.view(), &w, c0, &mut want.slice_mut(s![.., 1..1 + width]));
        // Written, not accumulated: what was there (NaN) is not read.
        let mut fresh = Array2::from_elem((m, width), T::nan());
        gemm_panels_on(
            isa,
            &x.view(),
            &w,
            c0,
            &mut fresh.view_mut(),
            Start::Zero,
            ColumnOrder::Ascending,
        );
        let mut fresh_want = Array2::zeros((m, width));
        gemm_panels_plain(&x.view(), &w, c0, &mut fresh_want.view_mut());
        for (a, b) in fresh.iter().zip(fresh_want.iter()) {
            let (a, b) = (a.as_f64(), b.as_f64());
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{isa}: {m}x{k}x{n} from {c0}, written: {a} vs {b}"
            );
        }
        // Started from a bias row: as if y held the bias in every row and accumulated.
        let bias: Vec<T> = (0..width).map(|j| T::of(j as f64 * 0.125 - 1.0)).collect();
        let mut biased = Array2::from_elem((m, width), T::nan());
        gemm_panels_on(
            isa,
            &x.view(),
            &w,
            c0,
            &mut biased.view_mut(),
            Start::Bias(&bias),
            ColumnOrder::Ascending,
        );
        let mut biased_descending = Array2::from_elem((m, width), T::nan());
        gemm_panels_on(
            isa,
            &x.view(),
            &w,
            c0,
            &mut biased_descending.view_mut(),
            Start::Bias(&bias),
            ColumnOrder::Descending,
        );
        assert!(
            biased
                .iter()
                .zip(&biased_descending)
                .all(|(a, b)| a.as_f64().to_bits() == b.as_f64().to_bits()),
            "{isa}: {m}x{k}x{n} from {c0}: descending order changed a value from the bias"
        );
        let mut biased_want = Array2::from_shape_fn((m, width), |(_, j)| bias[j]);
        gemm_panels_plain(&x.view(), &w, c0, &mut biased_want.view_mut());
        for (a, b) in biased.iter().zip(biased_want.iter()) {
            let (a, b) = (a.as_f64(), b.as_f64());
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{isa}: {m}x{k}x{n} from {c0}, from the bias: {a} vs {b}"
            );
        }
        for (a, b) in wide.iter().zip(want.iter()) {
            let (a, b) = (a.as_f64(), b.as_f64());
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{isa}: {m}x{k}x{n} from {c0}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn packs_every_element_from_any_layout() {
        for &(k, n) in &[
            (1, 1),
            (1, 20),
            (20, 1),
            (3, 17),
            (17, 16),
            (5, 33),
            (40, 129),
        ] {
            let wt = Array2::from_shape_fn((k, n), |(p, j)| (p * 1000 + j) as f32);
            // Wᵀ row-major, W row-major (as torch stores it), and a column slice of a
            // wider array (neither).
            let w = wt.t().as_standard_layout().into_owned();
            let wide = Array2::from_shape_fn((k, n + 5), |(p, j)| {
                if (2..2 + n).contains(&j) {
                    (p * 1000 + j - 2) as f32
                } else {
                    f32::NAN
                }
            });
            let wide_t = wide.t().as_standard_layout().into_owned();
            for (layout, packed) in [
                ("Wt", Panels::new(wt.view())),
                ("W", Panels::new(w.t())),
                ("slice", Panels::new(wide.slice(s![.., 2..2 + n]))),
                (
                    "slice of W",
                    Panels::new(wide_t.t().slice(s![.., 2..2 + n])),
                ),
            ] {
                for p in 0..k {
                    for j in 0..n {
                        assert_eq!(packed.get(p, j), wt[[p, j]], "{layout} {k}x{n} ({p}, {j})");
                    }
                    // The padding columns of the last panel are zeros.
                    for j in n..n.div_ceil(16) * 16 {
                        assert_eq!(packed.get(p, j), 0.0, "{layout} {k}x{n} pad ({p}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn matches_the_plain_loop_on_awkward_sizes_on_every_path() {
        let sizes = [1, 7, 8, 9, 15, 16, 17, 31, 33];
        for isa in Isa::supported() {
            for &m in &sizes {
                for &k in &sizes {
                    for &n in &sizes {
                        case::<f32>(isa, m, k, n, 0, 1e-5);
                        case::<f64>(isa, m, k, n, 0, 1e-12);
                        if n > 16 {
                            case::<f32>(isa, m, k, n, 16, 1e-5);
                            case::<f64>(isa, m, k, n, 8, 1e-12);
                        }
                    }
                }
            }
            for &(m, k, n) in &[
                (127, 129, 129),
                (129, 300, 127),
                (250, 17, 65),
                (3, 513, 40),
                // Taller than MC, two k blocks, two column blocks of a tall product
                // (f32: 512 columns per block at KC = 512; f64: 256).
                (245, 513, 530),
            ] {
                case::<f32>(isa, m, k, n, 0, 1e-4);
                case::<f64>(isa, m, k, n, 0, 1e-12);
            }
            // One to three rows: wide tiles (up to 64 f32 or 32 f64 columns on the x86
            // paths), then the usual ones for the rest, from a panel boundary past 0 as
            // well.
            let shapes = [
                (17, 64),
                (9, 65),
                (33, 127),
                (16, 128),
                (300, 129),
                (513, 530),
            ];
            for m in 1..=3 {
                for &(k, n) in &shapes {
                    case::<f32>(isa, m, k, n, 0, 1e-4);
                    case::<f64>(isa, m, k, n, 0, 1e-12);
                    case::<f32>(isa, m, k, n, 16, 1e-4);
                    case::<f64>(isa, m, k, n, 8, 1e-12);
                }
            }
        }
    }
}
