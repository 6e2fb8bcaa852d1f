//! [`RnnStream`]: one sequence fed to an [`Rnn`] in pieces, as it arrives.
//!
//! The stream owns every layer's state, batched `(num_layers, N, H)`, and a scratch row
//! block, so a step after the first allocates nothing (below a batch of 1024, where
//! products go to matrixmultiply, which packs): [`RnnStream::step`] takes one
//! time step `(N, H_in)` and hands back a view of the new output, for a caller with a
//! live input; [`RnnStream::feed`] takes chunks in any of [`Rnn::forward`]'s input forms
//! and returns owned outputs.

use ndarray::{Array2, Array3, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, Ix3};

use crate::element::Float;
use crate::error::{Error, Result};
use crate::forward::matmul_acc;
use crate::module::Rnn;
use crate::shape::prepare;
use crate::state::IntoHidden;

/// A sequence fed to a unidirectional [`Rnn`] in pieces; see [`Rnn::stream`].
#[derive(Debug)]
pub struct RnnStream<'a, T> {
    rnn: &'a Rnn<T>,
    /// Every layer's state, `(num_layers, N, H)`; `None` for zeros, before the batch size
    /// is known.
    state: Option<Array3<T>>,
    /// Whether the caller's chunks and state are unbatched (`(L, H_in)` and
    /// `(num_layers, H)`); `None` until the initial state or the first chunk says.
    unbatched: Option<bool>,
    /// One step's pre-activations, `(N, H)`, reused from step to step.
    scratch: Array2<T>,
}

impl<T: Float> Rnn<T> {
    /// Starts feeding one sequence in pieces: each [`RnnStream::feed`] runs a chunk of
    /// time steps from the state the previous chunk ended in, so the concatenated outputs
    /// and the final state equal one [`Rnn::forward`] over the whole sequence.
    /// [`RnnStream::step`] is the one-step form for a live input, with no allocation
    /// after the first step.
    ///
    /// Only a unidirectional layer can stream: the reverse direction of a bidirectional
    /// one starts from the end of the sequence. `h0` is `(num_layers, N, H)`, or
    /// `(num_layers, H)` for an unbatched stream.
    ///
    /// ```
    /// use ndarray::{s, Array2};
    /// use recurrent::{Rnn, RnnConfig};
    /// let rnn = Rnn::<f64>::seeded(RnnConfig::new(2, 4).num_layers(2), 0)?;
    /// let x = Array2::from_shape_fn((10, 2), |(t, i)| (t as f64 + i as f64).sin()); // (L, H_in)
    /// let (whole, h_n) = rnn.forward(x.view().into_dyn(), None)?;
    /// let mut stream = rnn.stream(None)?;
    /// let first = stream.feed(x.slice(s![..3, ..]).into_dyn())?;
    /// let rest = stream.feed(x.slice(s![3.., ..]).into_dyn())?;
    /// assert!((&first - &whole.slice(s![..3, ..])).iter().all(|d| d.abs() < 1e-12));
    /// assert!((&rest - &whole.slice(s![3.., ..])).iter().all(|d| d.abs() < 1e-12));
    /// assert!((&stream.state().unwrap() - &h_n).iter().all(|d| d.abs() < 1e-12));
    ///
    /// // One step at a time: x_t is (N, H_in), the view returned is that step's output.
    /// let mut live = rnn.stream(None)?;
    /// for t in 0..10 {
    ///     let y = live.step(x.slice(s![t..t + 1, ..]))?; // N = 1
    ///     assert!((&y.row(0) - &whole.slice(s![t, ..])).iter().all(|d| d.abs() < 1e-12));
    /// }
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn stream<'s>(&self, h0: impl IntoHidden<'s, T>) -> Result<RnnStream<'_, T>> {
        let h0 = h0.into_hidden();
        // A bad RECURRENT_ISA fails here, so the stream's steps need not ask again (the
        // variable is read once per process).
        crate::isa::check()?;
        let config = self.config();
        if config.bidirectional {
            return Err(Error::Config(
                "a bidirectional layer cannot stream: its reverse direction starts from the end of the sequence".to_string(),
            ));
        }
        let (state, unbatched) = match h0 {
            None => (None, None),
            Some(h) => {
                let rank = h.ndim();
                let unbatched = rank == 2;
                let got = h.shape().to_vec();
                let h = if unbatched { h.insert_axis(Axis(1)) } else { h };
                let h = h
                    .into_dimensionality::<Ix3>()
                    .map_err(|_| Error::HiddenRank {
                        input_rank: 3,
                        hidden_rank: rank,
                    })?;
                let (layers, batch, hidden) = h.dim();
                if (layers, hidden) != (config.num_layers, config.hidden_size) {
                    let mut expected = vec![config.num_layers, batch, config.hidden_size];
                    if unbatched {
                        expected.remove(1);
                    }
                    return Err(Error::HiddenShape { expected, got });
                }
                crate::memory::forward_budget(config, 1, batch, std::mem::size_of::<T>())
                    .check(|| format!("a stream of {config} for {batch} sequences"))?;
                (Some(h.as_standard_layout().into_owned()), Some(unbatched))
            }
        };
        Ok(RnnStream {
            rnn: self,
            state,
            unbatched,
            scratch: Array2::zeros((0, 0)),
        })
    }
}

impl<T: Float> RnnStream<'_, T> {
    /// Runs the next chunk of time steps (same forms as [`Rnn::forward`]'s input, with the
    /// same batch size and batchedness every time) and returns its output.
    pub fn feed(&mut self, chunk: ArrayViewD<'_, T>) -> Result<ArrayD<T>> {
        let config = self.rnn.config();
        // The checks one forward call would make, against the state in the caller's form.
        let prepared = prepare(config, chunk.view(), self.state())?;
        let (unbatched, batch_first) = (prepared.unbatched, prepared.batch_first);
        if prepared.seq_len() != 1 {
            drop(prepared); // it borrows the state, which is about to change
            let (output, h_n) = self.rnn.forward(chunk, self.state())?;
            let h_n = if unbatched {
                h_n.insert_axis(Axis(1))
            } else {
                h_n
            };
            self.state = Some(h_n.into_dimensionality::<Ix3>().map_err(internal)?);
            self.unbatched = Some(unbatched);
            return Ok(output);
        }
        drop(prepared);
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

    /// Runs one time step for a batch: `x` is `(N, H_in)` (`N = 1` for an unbatched
    /// stream), and the result is that step's output `(N, H)`, the last layer's new state,
    /// as a view into the stream. After the first step nothing is allocated (for batches
    /// below 1024).
    pub fn step(&mut self, x: ArrayView2<'_, T>) -> Result<ArrayView2<'_, T>> {
        let config = self.rnn.config();
        let (batch, features) = x.dim();
        if features != config.input_size {
            return Err(Error::InputSize {
                expected: config.input_size,
                got: features,
            });
        }
        let unbatched = *self.unbatched.get_or_insert(false);
        let state_batch = self.state.as_ref().map(|s| s.len_of(Axis(1)));
        if state_batch.is_some_and(|n| n != batch) || (unbatched && batch != 1) {
            let expected = vec![config.num_layers, batch, config.hidden_size];
            let got = self.state().map_or_else(Vec::new, |s| s.shape().to_vec());
            return Err(Error::HiddenShape { expected, got });
        }
        if state_batch.is_none() {
            // The first step allocates the state and scratch for this batch.
            crate::memory::forward_budget(config, 1, batch, std::mem::size_of::<T>())
                .add(std::mem::size_of::<T>(), &[batch, features])
                .check(|| format!("a stream of {config} for {batch} sequences"))?;
        }
        Ok(self.advance(x))
    }

    /// The state after the last chunk or step (h_n so far) in the caller's form, or the
    /// initial state if nothing was fed yet (`None` for zeros).
    pub fn state(&self) -> Option<ArrayViewD<'_, T>> {
        let state = self.state.as_ref()?.view();
        Some(if self.unbatched == Some(true) {
            state.remove_axis(Axis(1)).into_dyn()
        } else {
            state.into_dyn()
        })
    }

    /// One step through every layer; `x` `(N, H_in)` is checked against the state.
    fn advance(&mut self, x: ArrayView2<'_, T>) -> ArrayView2<'_, T> {
        let config = self.rnn.config();
        let (batch, hidden, layers) = (x.nrows(), config.hidden_size, config.num_layers);
        let state = self
            .state
            .get_or_insert_with(|| Array3::zeros((layers, batch, hidden)));
        if self.scratch.dim() != (batch, hidden) {
            self.scratch = Array2::zeros((batch, hidden));
        }
        let y = &mut self.scratch;
        for layer in 0..layers {
            let packed = self.rnn.layers().packed(layer);
            // Layers below this one already hold this step's state: the input of this one.
            let (below, mut rest) = state.view_mut().split_at(Axis(0), layer);
            let mut h = rest.index_axis_mut(Axis(0), 0);
            let input = if layer == 0 {
                x.view()
            } else {
                below.index_axis(Axis(0), layer - 1)
            };
            let beta = match &packed.bias {
                Some(bias) => {
                    y.rows_mut().into_iter().for_each(|mut r| r.assign(bias));
                    T::one()
                }
                None => T::zero(),
            };
            let mut yv = y.view_mut();
            matmul_acc(&input, &packed.w_ih_t, beta, &mut yv, 1);
            matmul_acc(&h.view(), &packed.w_hh_t, T::one(), &mut yv, 1);
            match y.as_slice_mut() {
                Some(values) => match config.nonlinearity {
                    crate::Nonlinearity::Tanh => T::tanh_slice(values),
                    crate::Nonlinearity::Relu => values.iter_mut().for_each(|v| *v = v.relu()),
                },
                None => unreachable!("owned standard array"), // ok: allocated above
            }
            h.assign(y);
        }
        state.index_axis(Axis(0), layers - 1)
    }
}

/// Unreachable: ranks were checked by `prepare` just before each conversion.
fn internal(_: ndarray::ShapeError) -> Error {
    Error::Config("internal error: stream chunk rank".to_string())
}
