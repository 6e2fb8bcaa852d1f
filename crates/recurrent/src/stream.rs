//! Streams: one sequence fed to a layer in pieces, as it arrives, for every kind:
//! [`RnnStream`] ([`Rnn::stream`]), [`LstmStream`] ([`Lstm::stream`], with `proj_size`)
//! and [`GruStream`] ([`Gru::stream`]).
//!
//! A stream owns every layer's state, batched `(num_layers, N, H_out)` (and an LSTM's
//! cell state `(num_layers, N, H)`), and the scratch of one step, so that a step after
//! the first allocates nothing (given row-major inputs): `step` takes one time step `(N, H_in)` and hands back a
//! view of that step's output, for a caller with a live input (a microphone, a sensor);
//! `feed` takes chunks of any length, in any of the layer's input forms, and returns
//! owned outputs. Each step goes through the kind's one cell (`forward/cell.rs`), the
//! same code the layers' scan runs.
//!
//! The outputs of any chunking, concatenated, equal one `forward` over the whole
//! sequence, and the final state its `h_n` (`c_n`): a chunk of several steps runs as
//! `forward` on that chunk from the stream's state; a single step runs the same cell.
//! Only the input projection is computed per chunk instead of once for the whole
//! sequence, and a product of a few rows may be summed in another order than one of many
//! (the kernels pick their blocking by the number of rows): the results then differ by
//! rounding, a few units in the last place per step, never more (the tests bound it).
//!
//! Streams are `Send`: a server keeps one per connection. Only a unidirectional layer
//! can stream (the reverse direction of a bidirectional one starts from the end of the
//! sequence).

use ndarray::{Array2, Array3, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, Ix3};

use crate::config::RnnConfig;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::forward::{StepScratch, StepWeights};
use crate::module::{Gru, Lstm, LstmState, Rnn};
use crate::params::Layers;
use crate::shape::prepare_with_cell;
use crate::state::{IntoHidden, IntoLstmState};

/// What a stream holds whatever its kind: the layers' step weights, the states and one
/// step's scratch.
#[derive(Debug)]
struct StreamCore<'a, T> {
    layers: &'a Layers<T>,
    /// One per layer, built once.
    weights: Vec<StepWeights<'a, T>>,
    /// Every layer's state `(num_layers, N, H_out)`; `None` for zeros, before the batch
    /// size is known.
    h: Option<Array3<T>>,
    /// Every layer's cell state `(num_layers, N, H)` (an LSTM's; zeros for the other
    /// kinds, which the step does not read); `None` with `h`.
    c: Option<Array3<T>>,
    /// Whether the caller's chunks and states are unbatched; `None` until the initial
    /// state or the first chunk says.
    unbatched: Option<bool>,
    /// The state is zeros because none was given, and nothing has run since: the first
    /// step may skip its products with `W_hhᵀ` (when they are exactly zero).
    fresh: bool,
    /// One step's scratch, sized for the batch on the first step.
    scratch: Option<StepScratch<T>>,
    /// One step's input projection `(N, G*H)`.
    gx: Array2<T>,
    /// `lengths` of a step that every sequence runs: all ones.
    ones: Vec<usize>,
}

/// `(h, c, unbatched)`: a checked initial state, batched and owned.
type CheckedState<T> = (Option<Array3<T>>, Option<Array3<T>>, Option<bool>);

impl<'a, T: Float> StreamCore<'a, T> {
    fn new(
        layers: &'a Layers<T>,
        h0: Option<ArrayViewD<'_, T>>,
        c0: Option<ArrayViewD<'_, T>>,
    ) -> Result<Self> {
        // A bad RECURRENT_ISA fails here, so the stream's steps need not ask again (the
        // variable is read once per process).
        crate::isa::check()?;
        let config = layers.config();
        if config.bidirectional {
            return Err(Error::Config(
                "a bidirectional layer cannot stream: its reverse direction starts from the end of the sequence".to_string(),
            ));
        }
        let (h, c, unbatched) = check_state(config, h0, c0)?;
        let weights = (0..config.num_layers)
            .map(|layer| {
                StepWeights::new(
                    config.kind,
                    config.nonlinearity,
                    layers.packed(layer),
                    config.hidden_size,
                    false,
                    true,
                )
            })
            .collect();
        Ok(StreamCore {
            layers,
            weights,
            fresh: h.is_none(),
            h,
            c,
            unbatched,
            scratch: None,
            gx: Array2::zeros((0, 0)),
            ones: Vec::new(),
        })
    }

    fn config(&self) -> &RnnConfig {
        self.layers.config()
    }

    /// Replaces the state (checked first: on an error the stream is unchanged).
    fn reset(
        &mut self,
        h0: Option<ArrayViewD<'_, T>>,
        c0: Option<ArrayViewD<'_, T>>,
    ) -> Result<()> {
        let (h, c, unbatched) = check_state(self.config(), h0, c0)?;
        self.fresh = h.is_none();
        self.h = h;
        self.c = c;
        self.unbatched = unbatched;
        Ok(())
    }

    /// A state array in the caller's form (the batch axis removed when unbatched).
    fn caller_form<'s>(&self, state: Option<&'s Array3<T>>) -> Option<ArrayViewD<'s, T>> {
        let state = state?.view();
        Some(if self.unbatched == Some(true) {
            state.remove_axis(Axis(1)).into_dyn()
        } else {
            state.into_dyn()
        })
    }

    fn h(&self) -> Option<ArrayViewD<'_, T>> {
        self.caller_form(self.h.as_ref())
    }

    fn c(&self) -> Option<ArrayViewD<'_, T>> {
        self.caller_form(self.c.as_ref())
    }

    /// One step for a batch, checked: `x` is `(N, H_in)`, `N = 1` for an unbatched stream.
    fn step(&mut self, x: ArrayView2<'_, T>) -> Result<ArrayView2<'_, T>> {
        let config = self.config();
        let (batch, features) = x.dim();
        if features != config.input_size {
            return Err(Error::InputSize {
                expected: config.input_size,
                got: features,
            });
        }
        let unbatched = self.unbatched.unwrap_or(false);
        let state_batch = self.h.as_ref().map(|s| s.len_of(Axis(1)));
        if state_batch.is_some_and(|n| n != batch) || (unbatched && batch != 1) {
            let expected = vec![config.num_layers, batch, config.output_hidden_size()];
            let got = self.h().map_or_else(Vec::new, |s| s.shape().to_vec());
            return Err(Error::HiddenShape { expected, got });
        }
        if self
            .scratch
            .as_ref()
            .is_none_or(|_| self.ones.len() != batch)
        {
            // The first step (for this batch) allocates the state and the scratch.
            let gates = config.kind.gate_count() * config.hidden_size;
            crate::memory::forward_budget(config, 1, batch, std::mem::size_of::<T>())
                .add(std::mem::size_of::<T>(), &[batch, features + 2 * gates])
                .check(|| format!("a stream of {config} for {batch} sequences"))?;
        }
        self.unbatched = Some(unbatched);
        Ok(self.advance(x))
    }

    /// One step through every layer; `x` `(N, H_in)` has been checked against the state.
    fn advance(&mut self, x: ArrayView2<'_, T>) -> ArrayView2<'_, T> {
        let config = self.layers.config();
        let batch = x.nrows();
        let (layers, hidden, h_out) = (
            config.num_layers,
            config.hidden_size,
            config.output_hidden_size(),
        );
        let gates = config.kind.gate_count() * hidden;
        let h = self
            .h
            .get_or_insert_with(|| Array3::zeros((layers, batch, h_out)));
        let c = self
            .c
            .get_or_insert_with(|| Array3::zeros((layers, batch, hidden)));
        if self.ones.len() != batch || self.scratch.is_none() {
            self.scratch = None;
            self.gx = Array2::zeros((batch, gates));
            self.ones = vec![1; batch];
        }
        let weights = &self.weights;
        let scratch = self
            .scratch
            .get_or_insert_with(|| StepScratch::new(&weights[0], batch));
        let threads = rayon::current_num_threads();
        for (layer, w) in weights.iter().enumerate() {
            // Layers below this one already hold this step's state: the input of this one.
            let (below, mut rest) = h.view_mut().split_at(Axis(0), layer);
            let h_layer = rest.index_axis_mut(Axis(0), 0);
            let previous;
            let input = if layer == 0 {
                x.view()
            } else {
                previous = below.index_axis_move(Axis(0), layer - 1);
                previous.view()
            };
            w.project_input(&input, &mut self.gx.view_mut(), threads);
            w.step(
                scratch,
                self.gx.view(),
                h_layer,
                c.index_axis_mut(Axis(0), layer),
                self.fresh,
                0,
                &self.ones,
                threads,
            );
        }
        self.fresh = false;
        h.index_axis(Axis(0), layers - 1)
    }

    /// The next chunk: several steps through `run` (the layer's `forward` from the
    /// stream's state, returning output, h_n and c_n), one step through [`Self::step`].
    fn feed(
        &mut self,
        chunk: ArrayViewD<'_, T>,
        run: impl FnOnce(
            ArrayViewD<'_, T>,
            Option<ArrayViewD<'_, T>>,
            Option<ArrayViewD<'_, T>>,
        ) -> Result<(ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>)>,
    ) -> Result<ArrayD<T>> {
        let lstm = self.config().kind == crate::Kind::Lstm;
        if let Some(empty) = self.empty_chunk(&chunk)? {
            return Ok(empty);
        }
        let c_state = if lstm { self.c() } else { None };
        // The checks one forward call would make, against the state in the caller's form.
        let prepared = prepare_with_cell(self.config(), chunk.view(), self.h(), c_state)?;
        let (unbatched, batch_first, steps) =
            (prepared.unbatched, prepared.batch_first, prepared.seq_len());
        drop(prepared); // it borrows the state, which is about to change
        if steps != 1 {
            let c_state = if lstm { self.c() } else { None };
            let (output, h_n, c_n) = run(chunk, self.h(), c_state)?;
            let batched = |a: ArrayD<T>| -> Result<Array3<T>> {
                let a = if unbatched { a.insert_axis(Axis(1)) } else { a };
                a.into_dimensionality::<Ix3>().map_err(internal)
            };
            let h_n = batched(h_n)?;
            let c_n = match c_n {
                Some(c_n) => batched(c_n)?,
                None => Array3::zeros((
                    h_n.len_of(Axis(0)),
                    h_n.len_of(Axis(1)),
                    self.config().hidden_size,
                )),
            };
            if steps > 0 || self.h.is_some() {
                self.h = Some(h_n);
                self.c = Some(c_n);
                self.fresh = false;
            }
            self.unbatched = Some(unbatched);
            return Ok(output);
        }
        // One step: straight through the layers (a live stream's cost is per call).
        let x: ArrayView2<'_, T> = if unbatched {
            // (1, H_in): the one step of an unbatched chunk is a batch of one.
            chunk.into_dimensionality::<Ix2>().map_err(internal)?
        } else {
            chunk
                .into_dimensionality::<Ix3>()
                .map_err(internal)?
                .index_axis_move(Axis(usize::from(batch_first)), 0)
        };
        self.unbatched = Some(unbatched);
        let y = self.advance(x).to_owned();
        // The output in the chunk's form: (1, H) unbatched, (N, 1, H) or (1, N, H).
        Ok(if unbatched {
            y.into_dyn()
        } else {
            y.insert_axis(Axis(usize::from(batch_first))).into_dyn()
        })
    }
}

impl<T: Float> StreamCore<'_, T> {
    /// A chunk of no time steps (which `forward`, like torch, refuses) is checked as a
    /// chunk of one would be (rank, width, batch against the state) and gives an output
    /// of no steps; the state is unchanged. `None` for any other chunk.
    fn empty_chunk(&self, chunk: &ArrayViewD<'_, T>) -> Result<Option<ArrayD<T>>> {
        let config = self.config();
        let shape = chunk.shape();
        let time_axis = usize::from(shape.len() == 3 && config.batch_first);
        if shape.get(time_axis) != Some(&0) || !(2..=3).contains(&shape.len()) {
            return Ok(None);
        }
        let features = shape[shape.len() - 1];
        if features != config.input_size {
            return Err(Error::InputSize {
                expected: config.input_size,
                got: features,
            });
        }
        let unbatched = shape.len() == 2;
        let batch = if unbatched { 1 } else { shape[1 - time_axis] };
        let state_batch = self.h.as_ref().map(|s| s.len_of(Axis(1)));
        if self.unbatched.is_some_and(|u| u != unbatched) || state_batch.is_some_and(|n| n != batch)
        {
            let mut expected = vec![config.num_layers, batch, config.output_hidden_size()];
            if unbatched {
                expected.remove(1);
            }
            let got = self.h().map_or_else(Vec::new, |s| s.shape().to_vec());
            return Err(Error::HiddenShape { expected, got });
        }
        let mut out_shape = shape.to_vec();
        out_shape[shape.len() - 1] = config.output_hidden_size();
        Ok(Some(ArrayD::zeros(out_shape)))
    }
}

/// Checks an initial state against the configuration: `h0` `(num_layers, N, H_out)` or,
/// unbatched, `(num_layers, H_out)`; an LSTM's `c0` likewise with `H`. Returns them
/// batched and owned.
fn check_state<T: Float>(
    config: &RnnConfig,
    h0: Option<ArrayViewD<'_, T>>,
    c0: Option<ArrayViewD<'_, T>>,
) -> Result<CheckedState<T>> {
    let Some(h) = h0 else {
        return Ok((None, None, None));
    };
    let rank = h.ndim();
    let unbatched = rank == 2;
    let batched = |s: ArrayViewD<'_, T>, width: usize| -> Result<Array3<T>> {
        let got = s.shape().to_vec();
        let rank = s.ndim();
        let s = if unbatched && rank == 2 {
            s.insert_axis(Axis(1))
        } else {
            s
        };
        let s = s
            .into_dimensionality::<Ix3>()
            .map_err(|_| Error::HiddenRank {
                input_rank: if unbatched { 2 } else { 3 },
                hidden_rank: rank,
            })?;
        let (layers, batch, features) = s.dim();
        if (layers, features) != (config.num_layers, width) {
            let mut expected = vec![config.num_layers, batch, width];
            if unbatched {
                expected.remove(1);
            }
            return Err(Error::HiddenShape { expected, got });
        }
        Ok(s.as_standard_layout().into_owned())
    };
    let batch = if unbatched {
        1
    } else {
        h.shape().get(1).copied().unwrap_or(0)
    };
    crate::memory::forward_budget(config, 1, batch, std::mem::size_of::<T>())
        .check(|| format!("a stream of {config} for {batch} sequences"))?;
    let h = batched(h, config.output_hidden_size())?;
    let c = match c0 {
        Some(c) => {
            let c = batched(c, config.hidden_size)?;
            if c.len_of(Axis(1)) != h.len_of(Axis(1)) {
                return Err(Error::HiddenShape {
                    expected: vec![config.num_layers, h.len_of(Axis(1)), config.hidden_size],
                    got: c.shape().to_vec(),
                });
            }
            c
        }
        None => Array3::zeros((h.len_of(Axis(0)), h.len_of(Axis(1)), config.hidden_size)),
    };
    Ok((Some(h), Some(c), Some(unbatched)))
}

/// Unreachable: ranks were checked by `prepare` just before each conversion.
fn internal(_: ndarray::ShapeError) -> Error {
    Error::Config("internal error: stream chunk rank".to_string())
}

/// Defines a stream type for a kind whose state is `h` alone (RNN, GRU).
macro_rules! hidden_stream {
    ($stream:ident, $layer:ident, $ctor:literal) => {
        #[doc = concat!(
            "A sequence fed to a unidirectional [`", stringify!($layer), "`] in pieces; see [`",
            stringify!($layer), "::stream`]."
        )]
        #[derive(Debug)]
        pub struct $stream<'a, T> {
            layer: &'a $layer<T>,
            core: StreamCore<'a, T>,
        }

        impl<T: Float> $layer<T> {
            #[doc = concat!(
                "Starts feeding one sequence in pieces: each [`", stringify!($stream), "::feed`] ",
                "runs a chunk of time steps from the state the previous chunk ended in, so the ",
                "concatenated outputs and the final state equal one [`", stringify!($layer),
                "::forward`] over the whole sequence (to rounding; see [`crate::stream`]). [`",
                stringify!($stream), "::step`] is the one-step form for a live input, with no ",
                "allocation after the first step.\n\n",
                "Only a unidirectional layer can stream. `h0` is `(num_layers, N, H)`, or ",
                "`(num_layers, H)` for an unbatched stream; zeros when `None`.\n\n",
                "```\n",
                "use ndarray::{s, Array2};\n",
                "use recurrent::{", stringify!($layer), ", RnnConfig};\n",
                "let layer = ", stringify!($layer), "::<f64>::seeded(RnnConfig::", $ctor, "(2, 4).num_layers(2), 0)?;\n",
                "let x = Array2::from_shape_fn((10, 2), |(t, i)| (t as f64 + i as f64).sin()); // (L, H_in)\n",
                "let (whole, h_n) = layer.forward(x.view().into_dyn(), None)?;\n",
                "let mut stream = layer.stream(None)?;\n",
                "let first = stream.feed(x.slice(s![..3, ..]).into_dyn())?;\n",
                "let rest = stream.feed(x.slice(s![3.., ..]).into_dyn())?;\n",
                "assert!((&first - &whole.slice(s![..3, ..])).iter().all(|d| d.abs() < 1e-12));\n",
                "assert!((&rest - &whole.slice(s![3.., ..])).iter().all(|d| d.abs() < 1e-12));\n",
                "assert!((&stream.state().unwrap() - &h_n).iter().all(|d| d.abs() < 1e-12));\n\n",
                "// One step at a time: x_t is (N, H_in), the view returned is that step's output.\n",
                "let mut live = layer.stream(None)?;\n",
                "for t in 0..10 {\n",
                "    let y = live.step(x.slice(s![t..t + 1, ..]))?; // N = 1\n",
                "    assert!((&y.row(0) - &whole.slice(s![t, ..])).iter().all(|d| d.abs() < 1e-12));\n",
                "}\n",
                "# Ok::<(), recurrent::Error>(())\n",
                "```\n\n",
                "# Errors\n",
                "[`Error::Config`] for a bidirectional layer; [`Error::HiddenRank`] / ",
                "[`Error::HiddenShape`] for an `h0` that is not `(num_layers, [N,] H)`; ",
                "[`Error::OutOfMemory`] when the state cannot be allocated; [`Error::Isa`] for a ",
                "`RECURRENT_ISA` this CPU lacks.",
            )]
            pub fn stream<'s>(&self, h0: impl IntoHidden<'s, T>) -> Result<$stream<'_, T>> {
                Ok($stream {
                    layer: self,
                    core: StreamCore::new(self.layers(), h0.into_hidden(), None)?,
                })
            }
        }

        impl<T: Float> $stream<'_, T> {
            #[doc = concat!(
                "Runs the next chunk of time steps (same forms as [`", stringify!($layer),
                "::forward`]'s input, with the same batch size and batchedness every time; any ",
                "length, 0 included) and returns its output.\n\n",
                "# Errors\nAs [`", stringify!($layer), "::forward`]'s, for the chunk against the ",
                "stream's state; the stream is unchanged on an error."
            )]
            pub fn feed(&mut self, chunk: ArrayViewD<'_, T>) -> Result<ArrayD<T>> {
                let layer = self.layer;
                self.core.feed(chunk, |x, h, _| {
                    let (output, h_n) = layer.forward(x, h)?;
                    Ok((output, h_n, None))
                })
            }

            /// Runs one time step for a batch: `x` is `(N, H_in)` (`N = 1` for an
            /// unbatched stream), and the result is that step's output `(N, H)`, the last
            /// layer's new state, as a view into the stream. After the first step nothing
            /// is allocated when `x` is row-major (any other layout is copied first).
            ///
            /// # Errors
            /// [`Error::InputSize`] for a width other than `H_in`; [`Error::HiddenShape`]
            /// for a batch other than the stream's.
            pub fn step(&mut self, x: ArrayView2<'_, T>) -> Result<ArrayView2<'_, T>> {
                self.core.step(x)
            }

            /// The state after the last chunk or step (h_n so far) in the caller's form
            /// `(num_layers, [N,] H)`, or the initial state if nothing was fed yet (`None`
            /// for zeros).
            pub fn state(&self) -> Option<ArrayViewD<'_, T>> {
                self.core.h()
            }

            /// Starts over from `h0` (zeros when `None`), as a new stream would.
            ///
            /// # Errors
            /// As [`Self::step`]'s layer's `stream`; the stream is unchanged on an error.
            pub fn reset<'s>(&mut self, h0: impl IntoHidden<'s, T>) -> Result<()> {
                self.core.reset(h0.into_hidden(), None)
            }
        }
    };
}

hidden_stream!(RnnStream, Rnn, "new");
hidden_stream!(GruStream, Gru, "gru");

/// A sequence fed to a unidirectional [`Lstm`] in pieces; see [`Lstm::stream`].
#[derive(Debug)]
pub struct LstmStream<'a, T> {
    layer: &'a Lstm<T>,
    core: StreamCore<'a, T>,
}

impl<T: Float> Lstm<T> {
    /// Starts feeding one sequence in pieces: each [`LstmStream::feed`] runs a chunk of
    /// time steps from the `(h, c)` the previous chunk ended in, so the concatenated
    /// outputs and the final state equal one [`Lstm::forward`] over the whole sequence
    /// (to rounding; see [`crate::stream`]). [`LstmStream::step`] is the one-step form
    /// for a live input, with no allocation after the first step. With `proj_size`, the
    /// output and `h` are `P` wide.
    ///
    /// Only a unidirectional layer can stream. `state` is `(h0, c0)`, h0 `(num_layers, N,
    /// H_out)` and c0 `(num_layers, N, H)` (without `N` for an unbatched stream); zeros
    /// when `None`.
    ///
    /// ```
    /// use ndarray::{s, Array2};
    /// use recurrent::{Lstm, RnnConfig};
    /// let lstm = Lstm::<f64>::seeded(RnnConfig::lstm(2, 4).proj_size(3), 0)?;
    /// let x = Array2::from_shape_fn((10, 2), |(t, i)| (t as f64 + i as f64).sin()); // (L, H_in)
    /// let (whole, (h_n, c_n)) = lstm.forward(x.view().into_dyn(), None)?;
    /// let mut live = lstm.stream(None)?;
    /// for t in 0..10 {
    ///     let y = live.step(x.slice(s![t..t + 1, ..]))?; // (N, P) = (1, 3)
    ///     assert!((&y.row(0) - &whole.slice(s![t, ..])).iter().all(|d| d.abs() < 1e-12));
    /// }
    /// let (h, c) = live.state().unwrap();
    /// assert!((&h - &h_n).iter().chain((&c - &c_n).iter()).all(|d| d.abs() < 1e-12));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Rnn::stream`]'s, for both states.
    pub fn stream<'s>(&self, state: impl IntoLstmState<'s, T>) -> Result<LstmStream<'_, T>> {
        let (h0, c0) = state.into_lstm_state().unzip();
        Ok(LstmStream {
            layer: self,
            core: StreamCore::new(self.layers(), h0, c0)?,
        })
    }
}

impl<T: Float> LstmStream<'_, T> {
    /// Runs the next chunk of time steps (same forms as [`Lstm::forward`]'s input, any
    /// length, 0 included) and returns its output.
    ///
    /// # Errors
    /// As [`Lstm::forward`]'s; the stream is unchanged on an error.
    pub fn feed(&mut self, chunk: ArrayViewD<'_, T>) -> Result<ArrayD<T>> {
        let layer = self.layer;
        self.core.feed(chunk, |x, h, c| {
            let state = h.zip(c);
            let (output, (h_n, c_n)) = layer.forward(x, state)?;
            Ok((output, h_n, Some(c_n)))
        })
    }

    /// One time step for a batch: `x` `(N, H_in)`, returns that step's output `(N,
    /// H_out)` as a view into the stream; nothing is allocated after the first step.
    ///
    /// # Errors
    /// As [`RnnStream::step`]'s.
    pub fn step(&mut self, x: ArrayView2<'_, T>) -> Result<ArrayView2<'_, T>> {
        self.core.step(x)
    }

    /// `(h_n, c_n)` so far in the caller's form, or the initial state (`None` for zeros).
    pub fn state(&self) -> Option<(ArrayViewD<'_, T>, ArrayViewD<'_, T>)> {
        self.core.h().zip(self.core.c())
    }

    /// Starts over from `state` (zeros when `None`).
    ///
    /// # Errors
    /// As [`Lstm::stream`]'s; the stream is unchanged on an error.
    pub fn reset<'s>(&mut self, state: impl IntoLstmState<'s, T>) -> Result<()> {
        let (h0, c0) = state.into_lstm_state().unzip();
        self.core.reset(h0, c0)
    }

    /// The state as owned arrays, to pass to [`Lstm::forward`] or another stream.
    pub fn state_owned(&self) -> Option<LstmState<T>> {
        self.state().map(|(h, c)| (h.to_owned(), c.to_owned()))
    }
}
