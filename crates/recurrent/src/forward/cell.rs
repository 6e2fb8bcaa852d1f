//! One time step of each kind, the single home of its gate math: the RNN's
//! `act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`, the LSTM's four gates, cell state and
//! projection, and the GRU's reset-after form (`n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ +
//! b_hn))`, torch's and cuDNN's), each in the operation order that matches torch's
//! rounding. The layers' scan (`gated.rs`), the public cells (`cells.rs`) and the
//! streams (`stream.rs`) all step through [`StepWeights::step`] (or, for the two-thread
//! lockstep scan, its epilogue [`StepWeights::block_step`]); `reference.rs` stays the
//! independent oracle.

use ndarray::{s, Array2, ArrayView2, ArrayViewMut2};

use super::direction::{matmul_acc, matmul_bias, matmul_ordered};
use super::{row_slice, row_slice_mut};
use crate::config::{Kind, Nonlinearity};
use crate::element::Float;
use crate::kernels::panel::{gemm_panels, gemm_panels_bias, ColumnOrder};
use crate::params::Packed;

/// What every step of one direction needs besides the data.
#[derive(Debug)]
pub(crate) struct StepWeights<'a, T> {
    pub(crate) kind: Kind,
    pub(crate) nonlinearity: Nonlinearity,
    pub(crate) packed: &'a Packed<T>,
    /// The hidden size H (the packed weights' columns are padded past `G*H`).
    pub(crate) hidden: usize,
    /// A GRU's `b_hn`, in unit order.
    pub(crate) b_hn: Option<&'a [T]>,
    /// The ranges of hidden units whose gate columns lie together in the packed layout
    /// (`Packed::split`); part `a..b` has columns `G·a..G·b`.
    pub(crate) parts: Vec<std::ops::Range<usize>>,
    /// Whether the direction runs from the last step to the first.
    pub(crate) reverse: bool,
    /// Whether the initial state is zeros (no h_0 given) and `W_hh` finite: the first
    /// step's product with `W_hhᵀ` is then exactly zero and skipped. (With a NaN or an
    /// infinity in `W_hh` it is NaN, as in torch, and computed.)
    pub(crate) zero_start: bool,
}

impl<T: Float> StepWeights<'_, T> {
    /// One step of one part of the units for every sequence of the batch: `g` holds the
    /// part's gate columns of `h_{t-1} W_hhᵀ` (overwritten), `x` those of the input
    /// projection; `h` holds the part's units of `h_{t-1}` and receives `h_t` (for an
    /// LSTM with projections, the cell output `o · tanh(c_t)` instead), `c` the LSTM's
    /// cell state. Only the rows of sequences still running at `t` are written: an RNN's
    /// computed as one block (one vectorised `tanh` call over all rows), an LSTM's and a
    /// GRU's a row at a time in one fused pass over the units (`lstm_row`, `gru_row`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_step(
        &self,
        units: &std::ops::Range<usize>,
        mut g: ArrayViewMut2<'_, T>,
        x: ArrayView2<'_, T>,
        mut h: ArrayViewMut2<'_, T>,
        mut c: ArrayViewMut2<'_, T>,
        t: usize,
        lengths: &[usize],
    ) {
        let running = |n: usize| t < lengths[n];
        match self.kind {
            Kind::Rnn => {
                g.zip_mut_with(&x, |v, &xv| *v += xv);
                match self.nonlinearity {
                    Nonlinearity::Tanh => tanh_block(&mut g),
                    Nonlinearity::Relu => g.mapv_inplace(|v| v.relu()),
                }
                for n in (0..lengths.len()).filter(|&n| running(n)) {
                    h.row_mut(n).assign(&g.row(n));
                }
            }
            Kind::Lstm if units.len() < NARROW_UNITS => {
                narrow_rows::<T, LstmLanes>(&g.view(), &x, None, &mut h, &mut c, running);
            }
            Kind::Gru if units.len() < NARROW_UNITS => {
                let b_hn = self.b_hn.map(|b| &b[units.clone()]);
                narrow_rows::<T, GruLanes>(&g.view(), &x, b_hn, &mut h, &mut c, running);
            }
            Kind::Lstm => {
                // Only the sequences still running: nothing of the others is kept.
                for n in (0..lengths.len()).filter(|&n| running(n)) {
                    let (mut hr, mut cr) = (h.row_mut(n), c.row_mut(n));
                    lstm_row(
                        row_slice(g.row(n)),
                        row_slice(x.row(n)),
                        row_slice_mut(&mut cr),
                        row_slice_mut(&mut hr),
                    );
                }
            }
            Kind::Gru => {
                // Only the sequences still running: nothing of the others is kept.
                let b_hn = self.b_hn.map(|b| &b[units.clone()]);
                for n in (0..lengths.len()).filter(|&n| running(n)) {
                    let mut hr = h.row_mut(n);
                    gru_row(
                        row_slice(g.row(n)),
                        row_slice(x.row(n)),
                        b_hn,
                        row_slice_mut(&mut hr),
                    );
                }
            }
        }
    }
}

impl<'a, T: Float> StepWeights<'a, T> {
    /// The step weights of one direction: its packed parameters, the kind's
    /// activations, the direction, and whether it starts from a state of zeros.
    pub(crate) fn new(
        kind: Kind,
        nonlinearity: Nonlinearity,
        packed: &'a Packed<T>,
        hidden: usize,
        reverse: bool,
        zero_start: bool,
    ) -> Self {
        let b_hn = match kind {
            Kind::Gru => packed
                .gru_bias
                .as_ref()
                .and_then(|(_, b_hn)| b_hn.as_slice()),
            _ => None,
        };
        StepWeights {
            kind,
            nonlinearity,
            packed,
            hidden,
            b_hn,
            parts: match packed.split {
                Some(split) => vec![0..split, split..hidden],
                None => std::iter::once(0..hidden).collect(),
            },
            reverse,
            zero_start: zero_start && packed.w_hh_finite,
        }
    }

    /// The biases folded into the input projection: `b_ih + b_hh`, or a GRU's with only
    /// `b_in` in its n part (`r` multiplies `b_hn`); `None` for a layer without biases.
    fn input_bias(&self) -> Option<&ndarray::Array1<T>> {
        match self.kind {
            Kind::Gru => self
                .packed
                .gru_bias
                .as_ref()
                .map(|(projection, _)| projection),
            _ => self.packed.bias.as_ref(),
        }
    }

    /// [`StepWeights::projected_input`] into `gx` `(rows, G*H)`, only written (a
    /// stream's scratch, allocated once): the sums start from the biases in the kernel.
    pub(crate) fn project_input(
        &self,
        x: &ArrayView2<'_, T>,
        gx: &mut ArrayViewMut2<'_, T>,
        threads: usize,
    ) {
        match self.input_bias() {
            Some(b) => match b.as_slice() {
                Some(b) => matmul_bias(x, &self.packed.w_ih_t, b, gx, threads),
                None => matmul_bias(x, &self.packed.w_ih_t, &b.to_vec(), gx, threads),
            },
            None => matmul_acc(x, &self.packed.w_ih_t, T::zero(), gx, threads),
        }
    }

    /// [`StepWeights::project_input`]'s columns `c0..c0 + y.ncols()` on this thread only
    /// (one part of a step, `c0` a panel boundary as the parts are): the same sums.
    pub(crate) fn project_input_cols(
        &self,
        x: &ArrayView2<'_, T>,
        c0: usize,
        y: &mut ArrayViewMut2<'_, T>,
    ) {
        let panels = &self.packed.w_ih_t.panels;
        match self.input_bias() {
            Some(b) => match b.as_slice() {
                Some(b) => gemm_panels_bias(x, panels, c0, &b[c0..c0 + y.ncols()], y),
                None => {
                    let b = b.slice(s![c0..c0 + y.ncols()]).to_vec();
                    gemm_panels_bias(x, panels, c0, &b, y)
                }
            },
            None => gemm_panels(x, panels, c0, y, false),
        }
    }

    /// The input's projection onto the gates, `x W_ihᵀ` plus the biases the kind folds
    /// in (`b_ih + b_hh`; a GRU's n part only `b_in`, since `r` multiplies `b_hn`), as a
    /// new `(rows, G*H)` array. Each sum starts from its column's bias inside the
    /// product (`matmul_bias`), so the array is written once, not filled with the bias
    /// rows first and read back.
    pub(crate) fn projected_input(&self, x: &ArrayView2<'_, T>, threads: usize) -> Array2<T> {
        let mut gx = Array2::zeros((x.nrows(), self.kind.gate_count() * self.hidden));
        self.project_input(x, &mut gx.view_mut(), threads);
        gx
    }

    /// One whole step for every sequence of the batch: `gh = h W_hhᵀ` (skipped when
    /// `first` and the direction starts from zeros), each part's epilogue with the input
    /// projection `gxt` `(N, G*H)`, and an LSTM's projection `h = (o · tanh(c)) W_hrᵀ`.
    /// `h` `(N, H_out)` and `c` `(N, H)` are updated in place for the sequences still
    /// running at `t` (`t < lengths[n]`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &self,
        scratch: &mut StepScratch<T>,
        gxt: ArrayView2<'_, T>,
        mut h: ArrayViewMut2<'_, T>,
        mut c: ArrayViewMut2<'_, T>,
        first: bool,
        t: usize,
        lengths: &[usize],
        threads: usize,
    ) {
        let g_count = self.kind.gate_count();
        let StepScratch {
            gh,
            cell_out,
            h_proj,
        } = scratch;
        // This step's input projection, on its way while the product runs.
        crate::kernels::prefetch_rows(&gxt);
        if first && self.zero_start {
            gh.fill(T::zero());
        } else {
            matmul_ordered(
                &h.view(),
                &self.packed.w_hh_t,
                T::zero(),
                &mut gh.view_mut(),
                threads,
                ColumnOrder::for_step(t),
            );
        }
        let proj = self.packed.w_hr_t.as_ref();
        // One part covers the whole arrays and takes them unsliced (a slice costs about
        // as much as a small step's product).
        let whole = self.parts.len() == 1;
        for units in &self.parts {
            let target = match proj {
                Some(_) => cell_out.view_mut(),
                None => h.view_mut(),
            };
            let (g, x, target, c) = if whole {
                (gh.view_mut(), gxt.view(), target, c.view_mut())
            } else {
                let cols = s![.., g_count * units.start..g_count * units.end];
                let part = s![.., units.clone()];
                (
                    gh.slice_mut(cols),
                    gxt.slice(cols),
                    target.slice_move(part),
                    // (Only an LSTM's `c` has columns.)
                    if c.ncols() == 0 {
                        c.view_mut()
                    } else {
                        c.slice_mut(part)
                    },
                )
            };
            self.block_step(units, g, x, target, c, t, lengths);
        }
        if let Some(w_hr_t) = proj {
            matmul_acc(
                &cell_out.view(),
                w_hr_t,
                T::zero(),
                &mut h_proj.view_mut(),
                threads,
            );
            commit_rows(h_proj, &mut h, t, lengths);
        }
    }
}

/// What [`StepWeights::step`] computes in, sized for a batch once and reused every step:
/// the gates of the whole batch, and an LSTM with projections' cell outputs and their
/// projection.
#[derive(Debug, Clone)]
pub(crate) struct StepScratch<T> {
    gh: Array2<T>,
    cell_out: Array2<T>,
    h_proj: Array2<T>,
}

impl<T: Float> StepScratch<T> {
    /// Scratch for `batch` rows of `w`'s steps.
    pub(crate) fn new(w: &StepWeights<'_, T>, batch: usize) -> Self {
        let hidden = w.hidden;
        let gates = w.kind.gate_count() * hidden;
        let h_out = w.packed.w_hh_t.panels.k();
        let projects = w.packed.w_hr_t.is_some();
        StepScratch {
            gh: Array2::zeros((batch, gates)),
            cell_out: Array2::zeros((if projects { batch } else { 0 }, hidden)),
            h_proj: Array2::zeros((if projects { batch } else { 0 }, h_out)),
        }
    }
}

/// Lanes of the gathered epilogue for parts of under [`NARROW_UNITS`] units: the units
/// of all running rows of a step are gathered into blocks of this many lanes, each
/// computed by a loop of this fixed length, which LLVM vectorises whole and without
/// branches. Row by row, `lstm_row`/`gru_row` leave units past their last whole vector
/// chunk to scalar code, whose `tanh` and `σ` run as long dependent chains: a GRU of
/// `H` = 3 spent half its time there. Each unit sees the same operations either way,
/// so the bits do not change; a block's unused lanes hold earlier values and are dropped.
const LANES: usize = 16;

/// Parts of fewer units than this take the gathered epilogue ([`narrow_rows`]). Paired
/// `recurrent bench` on a Zen 4, AVX-512, 2 threads, against the row epilogue: seed
/// (4 x 5 x 2 -> 3) GRU 1.44x, LSTM 1.39x; 30 x 32 x 8 -> 7 GRU 1.39x, LSTM 1.52x;
/// 30 x 64 x 8 -> 1 1.6-1.7x; but at 8 and 12 units 0.88-0.99x (the gather, a few
/// scalar moves per unit, costs more than the vector loop saves once a row fills half a
/// vector), and gathering up to 64 units 0.6-0.86x.
const NARROW_UNITS: usize = 8;

/// A kind's epilogue over [`LANES`] gathered units (see [`narrow_rows`]).
trait NarrowLanes {
    /// Whether the kind has a cell state (read and written).
    const CELL: bool;
    /// Gathers unit `j` of `p` of a row into lane `k` of `lanes`: `g` and `x` are the
    /// row's `G·p` gate columns, `b_hn` a GRU's for these units, `c` and `h` the unit's
    /// states.
    #[allow(clippy::too_many_arguments)]
    fn gather<T: Float>(
        lanes: &mut [[T; LANES]],
        k: usize,
        g: &[T],
        x: &[T],
        b_hn: Option<&[T]>,
        c: T,
        h: T,
        j: usize,
        p: usize,
    );
    /// The new `(c, h)` of each lane (`c` unused for a GRU).
    fn compute<T: Float, const FMA: bool>(lanes: &[[T; LANES]]) -> ([T; LANES], [T; LANES]);
}

/// [`lstm_row`]'s operations, a lane per unit.
struct LstmLanes;
impl NarrowLanes for LstmLanes {
    const CELL: bool = true;
    #[inline(always)]
    fn gather<T: Float>(
        lanes: &mut [[T; LANES]],
        k: usize,
        g: &[T],
        x: &[T],
        _b_hn: Option<&[T]>,
        c: T,
        _h: T,
        j: usize,
        p: usize,
    ) {
        for gate in 0..4 {
            lanes[gate][k] = g[gate * p + j] + x[gate * p + j];
        }
        lanes[4][k] = c;
    }
    #[inline(always)]
    fn compute<T: Float, const FMA: bool>(lanes: &[[T; LANES]]) -> ([T; LANES], [T; LANES]) {
        let (mut c, mut h) = ([T::zero(); LANES], [T::zero(); LANES]);
        for k in 0..LANES {
            let i = lanes[0][k].sigmoid_inline::<FMA>();
            let f = lanes[1][k].sigmoid_inline::<FMA>();
            let cand = lanes[2][k].tanh_inline::<FMA>();
            let o = lanes[3][k].sigmoid_inline::<FMA>();
            let next = f * lanes[4][k] + i * cand;
            c[k] = next;
            h[k] = o * next.tanh_inline::<FMA>();
        }
        (c, h)
    }
}

/// [`gru_row`]'s operations, a lane per unit.
struct GruLanes;
impl NarrowLanes for GruLanes {
    const CELL: bool = false;
    #[inline(always)]
    fn gather<T: Float>(
        lanes: &mut [[T; LANES]],
        k: usize,
        g: &[T],
        x: &[T],
        b_hn: Option<&[T]>,
        _c: T,
        h: T,
        j: usize,
        p: usize,
    ) {
        lanes[0][k] = g[j] + x[j];
        lanes[1][k] = g[p + j] + x[p + j];
        lanes[2][k] = x[2 * p + j];
        lanes[3][k] = match b_hn {
            Some(b) => g[2 * p + j] + b[j],
            None => g[2 * p + j],
        };
        lanes[4][k] = h;
    }
    #[inline(always)]
    fn compute<T: Float, const FMA: bool>(lanes: &[[T; LANES]]) -> ([T; LANES], [T; LANES]) {
        let mut h = [T::zero(); LANES];
        for k in 0..LANES {
            h[k] = gru_unit::<T, FMA>(
                lanes[0][k],
                lanes[1][k],
                lanes[2][k],
                lanes[3][k],
                lanes[4][k],
            );
        }
        (h, h)
    }
}

/// The LSTM or GRU epilogue of the running rows of a step whose part is narrower than
/// [`LANES`] units, their units gathered into blocks of lanes (see [`LANES`]): `g` and
/// `x` `(N, G·P)`, `h` and `c` `(N, P)` (`c` untouched by a GRU).
fn narrow_rows<T: Float, K: NarrowLanes>(
    g: &ArrayView2<'_, T>,
    x: &ArrayView2<'_, T>,
    b_hn: Option<&[T]>,
    h: &mut ArrayViewMut2<'_, T>,
    c: &mut ArrayViewMut2<'_, T>,
    running: impl Fn(usize) -> bool,
) {
    let units = h.ncols();
    let has_c = K::CELL;
    // Per lane: the gate inputs, then the cell state (LSTM) or `h_{t-1}` (GRU).
    let mut lanes = [[T::zero(); LANES]; 5];
    // Where each lane's results go: (row, unit).
    let mut dest = [(0usize, 0usize); LANES];
    let mut used = 0;
    let flush = |lanes: &[[T; LANES]],
                 dest: &[(usize, usize)],
                 h: &mut ArrayViewMut2<'_, T>,
                 c: &mut ArrayViewMut2<'_, T>| {
        let (cn, hn) = compute_lanes::<T, K>(lanes);
        for (k, &(n, j)) in dest.iter().enumerate() {
            h[(n, j)] = hn[k];
            if has_c {
                c[(n, j)] = cn[k];
            }
        }
    };
    for n in (0..g.nrows()).filter(|&n| running(n)) {
        let (gr, xr) = (row_slice(g.row(n)), row_slice(x.row(n)));
        for j in 0..units {
            let cj = if has_c { c[(n, j)] } else { T::zero() };
            K::gather(&mut lanes, used, gr, xr, b_hn, cj, h[(n, j)], j, units);
            dest[used] = (n, j);
            used += 1;
            if used == LANES {
                flush(&lanes, &dest, h, c);
                used = 0;
            }
        }
    }
    if used > 0 {
        flush(&lanes, &dest[..used], h, c);
    }
}

/// [`NarrowLanes::compute`] on the kernel path that runs.
fn compute_lanes<T: Float, K: NarrowLanes>(lanes: &[[T; LANES]]) -> ([T; LANES], [T; LANES]) {
    match crate::kernels::isa::active() {
        // SAFETY: `active` only answers a path this CPU supports, and each version is
        // compiled for its path's features.
        #[cfg(target_arch = "x86_64")]
        crate::kernels::isa::Isa::Avx512 => unsafe { compute_lanes_avx512::<T, K>(lanes) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        crate::kernels::isa::Isa::Avx2 => unsafe { compute_lanes_avx2::<T, K>(lanes) },
        _ => K::compute::<T, false>(lanes),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn compute_lanes_avx512<T: Float, K: NarrowLanes>(
    lanes: &[[T; LANES]],
) -> ([T; LANES], [T; LANES]) {
    K::compute::<T, true>(lanes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn compute_lanes_avx2<T: Float, K: NarrowLanes>(
    lanes: &[[T; LANES]],
) -> ([T; LANES], [T; LANES]) {
    K::compute::<T, true>(lanes)
}

/// One LSTM row's epilogue, fused into one pass over its units: with `v = g + x` (the
/// recurrent and input products of each gate, `g` and `x` each `4H` in torch's gate
/// order i, f, g, o), `c = σ(v_f) c + σ(v_i) tanh(v_g)` and `h = σ(v_o) tanh(c)`, where
/// `σ(v) = 1 / (1 + exp(-v))` as torch's `sigmoid` defines it, in that operation order.
/// The `tanh` is the vectorised one of `tanh_slice` inlined, `σ` its companion
/// ([`Float::sigmoid_inline`]), on the kernel path that runs.
fn lstm_row<T: Float>(g: &[T], x: &[T], c: &mut [T], h: &mut [T]) {
    match crate::kernels::isa::active() {
        // SAFETY: `active` only answers a path this CPU supports, and each version is
        // compiled for its path's features.
        #[cfg(target_arch = "x86_64")]
        crate::kernels::isa::Isa::Avx512 => unsafe { lstm_row_avx512(g, x, c, h) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        crate::kernels::isa::Isa::Avx2 => unsafe { lstm_row_avx2(g, x, c, h) },
        _ => lstm_row_body::<T, false>(g, x, c, h),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn lstm_row_avx512<T: Float>(g: &[T], x: &[T], c: &mut [T], h: &mut [T]) {
    lstm_row_body::<T, true>(g, x, c, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn lstm_row_avx2<T: Float>(g: &[T], x: &[T], c: &mut [T], h: &mut [T]) {
    lstm_row_body::<T, true>(g, x, c, h)
}

#[inline(always)]
fn lstm_row_body<T: Float, const FMA: bool>(g: &[T], x: &[T], c: &mut [T], h: &mut [T]) {
    let hidden = c.len();
    let (gi, rest) = g[..4 * hidden].split_at(hidden);
    let (gf, rest) = rest.split_at(hidden);
    let (gg, go) = rest.split_at(hidden);
    let (xi, rest) = x[..4 * hidden].split_at(hidden);
    let (xf, rest) = rest.split_at(hidden);
    let (xg, xo) = rest.split_at(hidden);
    let h = &mut h[..hidden];
    // Direct calls, no closure (see `gru_row_body`).
    for j in 0..hidden {
        let i = (gi[j] + xi[j]).sigmoid_inline::<FMA>();
        let f = (gf[j] + xf[j]).sigmoid_inline::<FMA>();
        let cand = (gg[j] + xg[j]).tanh_inline::<FMA>();
        let o = (go[j] + xo[j]).sigmoid_inline::<FMA>();
        let next = f * c[j] + i * cand;
        c[j] = next;
        h[j] = o * next.tanh_inline::<FMA>();
    }
}

/// One GRU row's epilogue (torch's reset-after form), fused into one pass over its
/// units: with the recurrent products `g` and the input projections `x` (each `3H`, gate
/// order r, z, n; the r and z biases folded into `x`, `b_hn` apart since `r` multiplies
/// it), `r = σ(g_r + x_r)`, `z = σ(g_z + x_z)`, `n = tanh(x_n + r (g_n + b_hn))` and
/// `h = (h - n) z + n` (ATen's order), `h` updated in place.
fn gru_row<T: Float>(g: &[T], x: &[T], b_hn: Option<&[T]>, h: &mut [T]) {
    match crate::kernels::isa::active() {
        // SAFETY: `active` only answers a path this CPU supports, and each version is
        // compiled for its path's features.
        #[cfg(target_arch = "x86_64")]
        crate::kernels::isa::Isa::Avx512 => unsafe { gru_row_avx512(g, x, b_hn, h) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        crate::kernels::isa::Isa::Avx2 => unsafe { gru_row_avx2(g, x, b_hn, h) },
        _ => gru_row_body::<T, false>(g, x, b_hn, h),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn gru_row_avx512<T: Float>(g: &[T], x: &[T], b_hn: Option<&[T]>, h: &mut [T]) {
    gru_row_body::<T, true>(g, x, b_hn, h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gru_row_avx2<T: Float>(g: &[T], x: &[T], b_hn: Option<&[T]>, h: &mut [T]) {
    gru_row_body::<T, true>(g, x, b_hn, h)
}

#[inline(always)]
fn gru_row_body<T: Float, const FMA: bool>(g: &[T], x: &[T], b_hn: Option<&[T]>, h: &mut [T]) {
    let hidden = h.len();
    let (gr, rest) = g[..3 * hidden].split_at(hidden);
    let (gz, gn) = rest.split_at(hidden);
    let (xr, rest) = x[..3 * hidden].split_at(hidden);
    let (xz, xn) = rest.split_at(hidden);
    // Two loops rather than a closure over `j`: a closure is compiled without this
    // function's target features, and where LLVM declines to inline it its `mul_add`s
    // become libm calls (measured: three times slower).
    match b_hn {
        Some(b) => {
            let b = &b[..hidden];
            for j in 0..hidden {
                h[j] = gru_unit::<T, FMA>(gr[j] + xr[j], gz[j] + xz[j], xn[j], gn[j] + b[j], h[j]);
            }
        }
        None => {
            for j in 0..hidden {
                h[j] = gru_unit::<T, FMA>(gr[j] + xr[j], gz[j] + xz[j], xn[j], gn[j], h[j]);
            }
        }
    }
}

/// One GRU unit: `r = σ(vr)`, `z = σ(vz)`, `n = tanh(xn + r hn)`, `(h - n) z + n`.
#[inline(always)]
fn gru_unit<T: Float, const FMA: bool>(vr: T, vz: T, xn: T, hn: T, h: T) -> T {
    let r = vr.sigmoid_inline::<FMA>();
    let z = vz.sigmoid_inline::<FMA>();
    let n = (xn + r * hn).tanh_inline::<FMA>();
    (h - n) * z + n
}

/// `tanh` of every element, in one vectorised call when the block is contiguous, else
/// one per row.
pub(crate) fn tanh_block<T: Float>(a: &mut ArrayViewMut2<'_, T>) {
    if let Some(all) = a.as_slice_mut() {
        return T::tanh_slice(all);
    }
    for mut row in a.rows_mut() {
        T::tanh_slice(row_slice_mut(&mut row));
    }
}

/// `to[n] = from[n]` for the sequences still running at step `t`.
pub(crate) fn commit_rows<T: Float>(
    from: &Array2<T>,
    to: &mut ArrayViewMut2<'_, T>,
    t: usize,
    lengths: &[usize],
) {
    for (n, &length) in lengths.iter().enumerate() {
        if t < length {
            to.row_mut(n).assign(&from.row(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Values that exercise every branch of `σ` and `tanh`: both signs, tiny, large
    /// (saturating) and plain, and `NaN` and the infinities.
    fn awkward(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        const SPECIAL: [f32; 8] = [0.0, -0.0, 1e-7, -30.0, 30.0, f32::NAN, f32::INFINITY, -9.5];
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            let i = r * 131 + c * 17 + seed * 7;
            if i.is_multiple_of(11) {
                SPECIAL[(i / 11) % SPECIAL.len()]
            } else {
                ((i * 2654435761) % 2000) as f32 / 250.0 - 4.0
            }
        })
    }

    /// The gathered narrow epilogue gives each unit the bits the row-by-row epilogue
    /// gives it, for parts of 1 to 15 units, blocks that fill exactly and ones that do
    /// not, and rows that have ended (left as they were).
    #[test]
    fn narrow_epilogue_matches_the_row_epilogue_bit_for_bit() {
        let bits = |a: &Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for units in [1, 2, 3, 7, 8, 15] {
            for batch in [1, 5, 16, 17] {
                let lengths: Vec<usize> = (0..batch).map(|n| 1 + n % 3).collect();
                let t = 1; // rows with length 1 have ended
                let running = |n: usize| t < lengths[n];
                // LSTM.
                let g = awkward(batch, 4 * units, 1);
                let x = awkward(batch, 4 * units, 2);
                let (h0, c0) = (awkward(batch, units, 3), awkward(batch, units, 4));
                let (mut h_rows, mut c_rows) = (h0.clone(), c0.clone());
                for n in (0..batch).filter(|&n| running(n)) {
                    let (mut hr, mut cr) = (h_rows.row_mut(n), c_rows.row_mut(n));
                    lstm_row(
                        row_slice(g.row(n)),
                        row_slice(x.row(n)),
                        row_slice_mut(&mut cr),
                        row_slice_mut(&mut hr),
                    );
                }
                let (mut h, mut c) = (h0.clone(), c0.clone());
                narrow_rows::<f32, LstmLanes>(
                    &g.view(),
                    &x.view(),
                    None,
                    &mut h.view_mut(),
                    &mut c.view_mut(),
                    running,
                );
                assert_eq!(
                    bits(&h),
                    bits(&h_rows),
                    "LSTM h, {units} units, {batch} rows"
                );
                assert_eq!(
                    bits(&c),
                    bits(&c_rows),
                    "LSTM c, {units} units, {batch} rows"
                );
                // GRU, with and without b_hn.
                let g = awkward(batch, 3 * units, 5);
                let x = awkward(batch, 3 * units, 6);
                let b: Vec<f32> = (0..units).map(|j| j as f32 * 0.25 - 1.0).collect();
                for b_hn in [None, Some(&b[..])] {
                    let mut h_rows = h0.clone();
                    for n in (0..batch).filter(|&n| running(n)) {
                        let mut hr = h_rows.row_mut(n);
                        gru_row(
                            row_slice(g.row(n)),
                            row_slice(x.row(n)),
                            b_hn,
                            row_slice_mut(&mut hr),
                        );
                    }
                    let (mut h, mut c) = (h0.clone(), c0.clone());
                    narrow_rows::<f32, GruLanes>(
                        &g.view(),
                        &x.view(),
                        b_hn,
                        &mut h.view_mut(),
                        &mut c.view_mut(),
                        running,
                    );
                    assert_eq!(
                        bits(&h),
                        bits(&h_rows),
                        "GRU h, {units} units, {batch} rows"
                    );
                    assert_eq!(bits(&c), bits(&c0), "GRU leaves c alone");
                }
            }
        }
    }
}
