//! The general fast path: any kind (RNN, LSTM, GRU), an LSTM's cell state and
//! projection, and per-sequence lengths.
//!
//! Per layer and direction: the input is projected onto all gates (biases folded in:
//! `b_ih + b_hh`, except a GRU's `b_hn`, which `r` multiplies), all steps at once for a
//! batch of a few rows or for weights too large for the last-level cache, else step by
//! step just before each step (see [`STEP_PROJECTION_MIN_ROWS`]); each step multiplies
//! the state by `W_hhᵀ` into a scratch row of gates and runs the kind's epilogue row by
//! row, writing the new state and the output. The state lives in its own buffer (not in
//! the output), so a sequence that has ended keeps its last state while its output rows
//! stay zero.

use ndarray::{s, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis};

use ndarray::ShapeBuilder;

use super::cell::{StepScratch, StepWeights};
use super::direction::product_cols;
use super::pair::{run_parts, SharedPtr};
use super::{row_slice, row_slice_mut};
use crate::config::{Kind, Nonlinearity};
use crate::element::Float;
use crate::kernels::panel::ColumnOrder;
use crate::params::{DirectionParams, Layers, Packed};
use crate::shape::Prepared;

/// Runs the stack; returns `(output, h_n, c_n)` in batched form (output in the input's
/// axis order; `c_n` `(D*num_layers, N, 0)` unless LSTM). `lengths` has one entry per sequence, each in
/// `1..=L` (checked by the caller).
pub(crate) fn forward_gated<T: Float>(
    layers: &Layers<T>,
    prepared: &Prepared<'_, T>,
    lengths: &[usize],
    dropout: super::stack::Dropout<'_, T>,
) -> (Array3<T>, Array3<T>, Array3<T>) {
    let mut dropout = dropout;
    let config = layers.config();
    let directions = config.num_directions();
    let h_out = config.output_hidden_size();
    let input = prepared.input.view();
    let batch_first = prepared.batch_first;
    let (d0, d1, _) = input.dim();
    let batch = prepared.batch();
    let threads = rayon::current_num_threads();
    let threads_per_direction = if directions == 2 {
        (threads / 2).max(1)
    } else {
        threads
    };

    let mut output = Array3::zeros((d0, d1, directions * h_out));
    let mut h_n = Array3::zeros((directions * config.num_layers, batch, h_out));
    let mut c_n = Array3::zeros((
        directions * config.num_layers,
        batch,
        cell_width(config.kind, config.hidden_size),
    ));
    let mut intermediate: Option<Array3<T>> = None;
    for layer in 0..config.num_layers {
        let is_last = layer + 1 == config.num_layers;
        let mut own = (!is_last).then(|| Array3::zeros((d0, d1, directions * h_out)));
        let layer_input: ArrayView3<'_, T> = match &intermediate {
            Some(previous) => previous.view(),
            None => input.view(),
        };
        let out = match own.as_mut() {
            Some(buffer) => buffer.view_mut(),
            None => output.view_mut(),
        };
        let (forward_half, reverse_half) = out.split_at(Axis(2), h_out);
        let run = |direction: usize, half: ArrayViewMut3<'_, T>| {
            let index = layer * directions + direction;
            scan(
                config.kind,
                config.nonlinearity,
                &layers.all_direction_params()[index],
                layers.packed(index),
                layer_input.view(),
                half,
                batch_first,
                prepared.h0.as_ref().map(|h| h.index_axis(Axis(0), index)),
                prepared.c0.as_ref().map(|c| c.index_axis(Axis(0), index)),
                direction == 1,
                lengths,
                threads_per_direction,
            )
        };
        let states = if directions == 2 && threads > 1 {
            let (a, b) = rayon::join(|| run(0, forward_half), || run(1, reverse_half));
            vec![a, b]
        } else {
            let mut states = vec![run(0, forward_half)];
            if directions == 2 {
                states.push(run(1, reverse_half));
            }
            states
        };
        for (direction, (h, c)) in states.into_iter().enumerate() {
            let index = layer * directions + direction;
            h_n.index_axis_mut(Axis(0), index).assign(&h);
            c_n.index_axis_mut(Axis(0), index).assign(&c);
        }
        if let Some(buffer) = own.as_mut() {
            let steps = prepared.seq_len();
            dropout.apply(layer, config.dropout, buffer, batch_first, 0..steps);
        }
        if own.is_some() {
            intermediate = own;
        }
    }
    (output, h_n, c_n)
}

/// Columns of a cell state: `hidden` for an LSTM; none for the kinds without one, whose
/// `c_n` (and each scan's `c`) is then `(.., N, 0)`.
fn cell_width(kind: Kind, hidden: usize) -> usize {
    if kind == Kind::Lstm {
        hidden
    } else {
        0
    }
}

/// One direction of one layer; returns its final `(h, c)` (`c` `(N, 0)` unless LSTM).
#[allow(clippy::too_many_arguments)]
fn scan<T: Float>(
    kind: Kind,
    nonlinearity: Nonlinearity,
    params: &DirectionParams<T>,
    packed: &Packed<T>,
    input: ArrayView3<'_, T>,
    output: ArrayViewMut3<'_, T>,
    batch_first: bool,
    h0: Option<ArrayView2<'_, T>>,
    c0: Option<ArrayView2<'_, T>>,
    reverse: bool,
    lengths: &[usize],
    threads: usize,
) -> (Array2<T>, Array2<T>) {
    let (d0, d1, features) = input.dim();
    let batch = if batch_first { d0 } else { d1 };
    let h_out = output.len_of(Axis(2));
    let gates = params.w_ih.nrows();
    let hidden = gates / kind.gate_count();
    // Private row-major copies of the initial states (the caller's may have any layout).
    let mut h = h0.map_or_else(
        || Array2::zeros((batch, h_out)),
        |h| h.as_standard_layout().into_owned(),
    );
    let mut c = c0.map_or_else(
        || Array2::zeros((batch, cell_width(kind, hidden))),
        |c| c.as_standard_layout().into_owned(),
    );
    let rows = d0 * d1;
    if rows == 0 {
        return (h, c);
    }

    let step = StepWeights::new(kind, nonlinearity, packed, hidden, reverse, h0.is_none());
    let seq_len = if batch_first { d1 } else { d0 };
    // The path depends on the shapes and `threads` only (see `forward/pair.rs`).
    let lockstep = threads >= 2
        && (batch < 16 || gates * h_out * std::mem::size_of::<T>() >= LOCKSTEP_MIN_WEIGHT_BYTES)
        && step.parts.len() == 2
        && batch * gates * h_out >= SPLIT_STEP_MIN_MACS
        && seq_len * batch * gates * h_out >= SPLIT_SCAN_MIN_MACS;
    let split_batch = threads >= 2 && batch >= 16 && seq_len * batch * gates * h_out >= 1 << 18;
    // Rows of each scan's step product: half of the batch when it is split.
    let half = batch / 2 / 8 * 8;
    let scan_rows = if split_batch { half } else { batch };
    let output = if batch_first {
        output.permuted_axes([1, 0, 2])
    } else {
        output
    };
    // 1. The input projections onto the gates, biases folded in: all steps' at once
    // into one array, or each step's in turn inside the scan (see `Inputs`).
    let step_weight_bytes = gates * (features + h_out) * std::mem::size_of::<T>();
    let per_step = scan_rows >= STEP_PROJECTION_MIN_ROWS
        && step_weight_bytes <= crate::kernels::cache::last_level_cache_bytes() / 2;
    let projected = (!per_step).then(|| {
        let x2 = input
            .into_shape_with_order((rows, features))
            .expect("standard-layout input reshapes to rows"); // ok: invariant of prepare()
        step.projected_input(&x2.view(), threads)
            .into_shape_with_order((d0, d1, gates))
            .expect("rows split back into the input's two leading axes") // ok: rows = d0 * d1
    });
    // 2. The steps, in time-major views.
    fn time_major<T>(a: ArrayView3<'_, T>, batch_first: bool) -> ArrayView3<'_, T> {
        if batch_first {
            a.permuted_axes([1, 0, 2])
        } else {
            a
        }
    }
    let inputs = match &projected {
        Some(gx) => Inputs::Projected(time_major(gx.view(), batch_first)),
        None => Inputs::Raw(time_major(input, batch_first)),
    };
    let mut output = output;
    if lockstep && recur_split(&step, inputs, output.view_mut(), &mut h, &mut c, lengths) {
        return (h, c);
    }
    if split_batch {
        // Sequences recur independently: each thread takes half of the batch for the
        // whole sequence, with no synchronisation between steps.
        let (in0, in1) = inputs.split_batch(half);
        let (out0, out1) = output.view_mut().split_at(Axis(1), half);
        let (h0_, h1_) = h.view_mut().split_at(Axis(0), half);
        let (c0_, c1_) = c.view_mut().split_at(Axis(0), half);
        let (l0, l1) = lengths.split_at(half);
        rayon::join(
            || recur(&step, in0, out0, h0_, c0_, l0, 1),
            || recur(&step, in1, out1, h1_, c1_, l1, 1),
        );
    } else {
        recur(
            &step,
            inputs,
            output.view_mut(),
            h.view_mut(),
            c.view_mut(),
            lengths,
            threads,
        );
    }
    (h, c)
}

/// A scan whose step product has at least this many rows projects each step's input
/// just before the step (into a scratch block that stays in cache for the epilogue)
/// rather than all steps' at once into an `(L, N, G*H)` array written out to memory and
/// read back. Either way each sum is the same chain of multiply-adds from the bias, so
/// the bits do not depend on the choice. Measured (paired runs of `recurrent bench`, 2
/// threads, AVX-512, 100 x 32 x 128 -> 256, 2 layers, 16 rows per thread): LSTM 1.10x,
/// GRU 1.21x, the bidirectional ones 1.15x and 1.05x; with one row (50 x 1 x 32 -> 64)
/// a product per step cost 1.5x the whole scan, hence the threshold: one full register
/// tile of rows. In the two-thread lockstep each part projects its own columns: LSTM and
/// GRU 200 x 64 x 512 -> 1024 1.07x and 1.06x (no 210 MB array) on a Sapphire Rapids
/// reporting 300 MiB of L3. Per step, though, a step reads `W_ih` as well as `W_hh`: on
/// a Zen 5 with 32 MiB of L3 (shared with its neighbours) that shape's 24 MiB (LSTM)
/// and 18 MiB (GRU) no longer stayed in L3 from step to step, and projecting all steps
/// first was 1.12x and 1.06x faster there, where 200 x 64 x 256 -> 512 (6 MiB) still
/// gained from per step (1.03x). Hence the second condition: both weights together take
/// at most half of the last-level cache ([`crate::kernels::cache`]). The RNN's scan
/// (`direction.rs`) keeps the all-steps projection, which it writes into the output it
/// has to write anyway: per step measured 0.93x on its large shape.
const STEP_PROJECTION_MIN_ROWS: usize = 8;

/// A small batch's recurrence runs on two threads in lockstep (see [`recur_split`]) when
/// its units are packed in two parts, each step's product has at least this many
/// multiply-adds (the two cores meet once per step, which costs about a microsecond
/// here: below this the meeting costs more than the halved step saves)...
const SPLIT_STEP_MIN_MACS: usize = 1 << 17;
/// ...and the whole recurrence at least this many (enough to pay for waking a thread).
const SPLIT_SCAN_MIN_MACS: usize = 1 << 22;
/// A larger batch splits the batch between the threads instead (no meeting per step),
/// unless `W_hh` is at least this large: then each thread streaming half of it beats
/// both streaming all of it.
const LOCKSTEP_MIN_WEIGHT_BYTES: usize = 4 << 20;

/// What a scan's steps read, in time-major views: the input projections of all steps,
/// computed before the scan, or the input itself, projected a step at a time.
#[derive(Clone, Copy)]
enum Inputs<'a, T> {
    /// `(L, N, G*H)`: each step's input projection onto the gates, biases folded in.
    Projected(ArrayView3<'a, T>),
    /// `(L, N, H_in)`: the layer's input.
    Raw(ArrayView3<'a, T>),
}

impl<'a, T> Inputs<'a, T> {
    /// The sequences `..n` and `n..`.
    fn split_batch(self, n: usize) -> (Self, Self) {
        match self {
            Inputs::Projected(a) => {
                let (a0, a1) = a.split_at(Axis(1), n);
                (Inputs::Projected(a0), Inputs::Projected(a1))
            }
            Inputs::Raw(a) => {
                let (a0, a1) = a.split_at(Axis(1), n);
                (Inputs::Raw(a0), Inputs::Raw(a1))
            }
        }
    }

    /// `(L, N)`.
    fn steps_and_batch(&self) -> (usize, usize) {
        let (Inputs::Projected(a) | Inputs::Raw(a)) = self;
        (a.len_of(Axis(0)), a.len_of(Axis(1)))
    }
}

/// The step loop over time-major views: `inputs` (projected or not), `output`
/// (L, N, H_out), states `h` (N, H_out) and `c` (N, H) updated in place. Each step
/// (after projecting its input, for [`Inputs::Raw`]) multiplies the whole state by
/// `W_hhᵀ` (split between `threads`, as is the projection), then runs each part's
/// epilogue over the batch.
fn recur<T: Float>(
    w: &StepWeights<'_, T>,
    inputs: Inputs<'_, T>,
    mut output: ArrayViewMut3<'_, T>,
    mut h: ArrayViewMut2<'_, T>,
    mut c: ArrayViewMut2<'_, T>,
    lengths: &[usize],
    threads: usize,
) {
    let (seq_len, batch) = inputs.steps_and_batch();
    let mut scratch = StepScratch::new(w, batch);
    // A step's projection, for raw inputs (only written by each projection).
    let mut projected = match inputs {
        Inputs::Raw(_) => Array2::zeros((batch, w.kind.gate_count() * w.hidden)),
        Inputs::Projected(_) => Array2::zeros((0, 0)),
    };
    for step in 0..seq_len {
        let t = if w.reverse { seq_len - 1 - step } else { step };
        let gxt = match inputs {
            Inputs::Projected(gx) => gx.index_axis_move(Axis(0), t),
            Inputs::Raw(x) => {
                w.project_input(
                    &x.index_axis(Axis(0), t),
                    &mut projected.view_mut(),
                    threads,
                );
                projected.view()
            }
        };
        w.step(
            &mut scratch,
            gxt,
            h.view_mut(),
            c.view_mut(),
            step == 0,
            t,
            lengths,
            threads,
        );
        let mut out_t = output.index_axis_mut(Axis(0), t);
        for (n, &length) in lengths.iter().enumerate() {
            if t < length {
                let mut out_row = out_t.row_mut(n);
                row_slice_mut(&mut out_row).copy_from_slice(row_slice(h.row(n)));
            }
        }
    }
}

/// [`recur`] with the units packed in two parts (no projections) run as two parts of
/// every step (`forward/pair.rs`): on two threads in lockstep when a second one comes in
/// time, each owning one part (its units' columns of `W_hhᵀ`, of the gates, of `c`, of
/// the state and of the output) for the whole sequence; otherwise on this thread, part
/// 0 then part 1 of each step, with the same kernel calls and so the same bits. Returns
/// `false`, having touched nothing, when the operands are not in that form (which does
/// not depend on timing).
///
/// The state alternates between `h` (even steps read it) and a second buffer (odd
/// steps): at step s both parts read all of buffer `s % 2` and each writes its own
/// columns of buffer `(s + 1) % 2`. A part starts step s only when the other has
/// finished s - 1, so no buffer is written while the other part reads it.
fn recur_split<T: Float>(
    w: &StepWeights<'_, T>,
    inputs: Inputs<'_, T>,
    mut output: ArrayViewMut3<'_, T>,
    h: &mut Array2<T>,
    c: &mut Array2<T>,
    lengths: &[usize],
) -> bool {
    let (seq_len, batch) = inputs.steps_and_batch();
    let (h_out, g_count, reverse) = (h.ncols(), w.kind.gate_count(), w.reverse);
    let (true, true) = (
        w.parts.len() == 2 && w.packed.w_hr_t.is_none(),
        h.is_standard_layout() && output.strides()[2] == 1,
    ) else {
        return false;
    };
    let wt = &w.packed.w_hh_t;
    let mut other = Array2::<T>::zeros((batch, h_out));
    let buffers = [SharedPtr(h.as_mut_ptr()), SharedPtr(other.as_mut_ptr())];
    let out_strides = [output.strides()[0], output.strides()[1]];
    let out_base = SharedPtr(output.as_mut_ptr());
    // (A GRU's `c` has no columns.)
    let c_split = w.parts[0].end.min(c.ncols());
    let (c0, c1) = c.view_mut().split_at(Axis(1), c_split);
    // Each part's own scratch: its cell columns, its gates and (for raw inputs) its
    // columns of the step's input projection.
    let gates = |units: &std::ops::Range<usize>, keep: bool| {
        Array2::<T>::zeros((if keep { batch } else { 0 }, g_count * units.len()))
    };
    let raw = matches!(inputs, Inputs::Raw(_));
    let states = [
        (c0, gates(&w.parts[0], true), gates(&w.parts[0], raw)),
        (c1, gates(&w.parts[1], true), gates(&w.parts[1], raw)),
    ];

    let step = |part: usize, step: usize, state: &mut PartScratch<'_, T>| {
        // Capture the Send/Sync wrappers whole (a closure would otherwise capture the
        // bare pointer fields, which are neither).
        #[allow(clippy::redundant_locals)]
        let (buffers, out_base) = (buffers, out_base);
        let (c, gh, projected) = state;
        let units = w.parts[part].clone();
        let cols = g_count * units.start..g_count * units.end;
        let t = if reverse { seq_len - 1 - step } else { step };
        // SAFETY: buffers are (N, H_out) standard-layout arrays that outlive the scope;
        // this step reads all of `prev` and writes only this part's columns of `next`,
        // which the other part does not touch during this step (see above).
        let prev =
            unsafe { ArrayView2::from_shape_ptr((batch, h_out), buffers[step % 2].0 as *const T) };
        let next = buffers[(step + 1) % 2].0.wrapping_add(units.start);
        let shape = ndarray::Ix2(batch, units.len()).strides(ndarray::Ix2(h_out, 1));
        // SAFETY: as above.
        let mut next = unsafe { ArrayViewMut2::from_shape_ptr(shape, next) };
        // This part's columns of the step's input projection: computed now, or on their
        // way from memory while the product runs.
        let gxt = match inputs {
            Inputs::Projected(gx) => {
                let gxt = gx
                    .index_axis_move(Axis(0), t)
                    .slice_move(s![.., cols.clone()]);
                crate::kernels::prefetch_rows(&gxt);
                gxt
            }
            Inputs::Raw(x) => {
                w.project_input_cols(
                    &x.index_axis(Axis(0), t),
                    cols.start,
                    &mut projected.view_mut(),
                );
                projected.view()
            }
        };
        if step > 0 || !w.zero_start {
            let order = ColumnOrder::for_step(t);
            product_cols(&prev, wt, cols.start, &mut gh.view_mut(), false, order);
        } else {
            gh.fill(T::zero());
        }
        let out_t = out_base.0.wrapping_offset(t as isize * out_strides[0]);
        // Rows of sequences that have ended carry their state over; the others are
        // overwritten by the step.
        next.assign(&prev.slice(s![.., units.clone()]));
        w.block_step(
            &units,
            gh.view_mut(),
            gxt,
            next.view_mut(),
            c.view_mut(),
            t,
            lengths,
        );
        for (n, &length) in lengths.iter().enumerate() {
            if t >= length {
                continue;
            }
            // SAFETY: row n of step t's output, this part's columns only: nothing else
            // reads or writes them.
            let out = unsafe {
                std::slice::from_raw_parts_mut(
                    out_t
                        .wrapping_offset(n as isize * out_strides[1])
                        .wrapping_add(units.start),
                    units.len(),
                )
            };
            out.copy_from_slice(row_slice(next.row(n)));
        }
    };
    run_parts(states, seq_len, &step);
    if seq_len % 2 == 1 {
        h.assign(&other);
    }
    true
}

/// One part's scratch in [`recur_split`]: its columns of the cell state, its gates and
/// (raw inputs only) its columns of each step's input projection.
type PartScratch<'a, T> = (ArrayViewMut2<'a, T>, Array2<T>, Array2<T>);
