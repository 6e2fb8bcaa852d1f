//! [`Recurrent`]: what the three layer types share, so that generic code (the CLI, the
//! Python package, a user's serving loop) is written once for RNN, LSTM and GRU. The
//! kind's state is an associated type: `h` (an array) for [`Rnn`] and [`Gru`], `(h, c)`
//! ([`LstmState`]) for [`Lstm`]; so is its stream ([`RecurrentStream`]).
//!
//! ```
//! use ndarray::{Array3, ArrayD};
//! use recurrent::{Gru, Lstm, Recurrent, RecurrentStream, RnnConfig};
//!
//! /// Runs any layer over a sequence in chunks of `k` steps; the same as one forward.
//! fn in_chunks<L: Recurrent<f64>>(layer: &L, x: &Array3<f64>, k: usize) -> recurrent::Result<ArrayD<f64>> {
//!     let mut stream = layer.stream(None)?;
//!     let mut outputs = Vec::new();
//!     for chunk in x.axis_chunks_iter(ndarray::Axis(0), k) {
//!         outputs.push(stream.feed(chunk.into_dyn())?);
//!     }
//!     let views: Vec<_> = outputs.iter().map(|o| o.view()).collect();
//!     Ok(ndarray::concatenate(ndarray::Axis(0), &views).expect("same shapes"))
//! }
//!
//! let x = Array3::from_shape_fn((9, 2, 3), |(t, n, i)| ((t + n + i) as f64).sin());
//! let lstm = Lstm::<f64>::seeded(RnnConfig::lstm(3, 4), 0)?;
//! let gru = Gru::<f64>::seeded(RnnConfig::gru(3, 4).num_layers(2), 0)?;
//! let (whole, _) = lstm.forward(x.view().into_dyn(), None)?;
//! assert!((&in_chunks(&lstm, &x, 4)? - &whole).iter().all(|d| d.abs() < 1e-12));
//! let (whole, _) = gru.forward(x.view().into_dyn(), None)?;
//! assert!((&in_chunks(&gru, &x, 4)? - &whole).iter().all(|d| d.abs() < 1e-12));
//! # Ok::<(), recurrent::Error>(())
//! ```

use ndarray::{ArrayD, ArrayView2, ArrayViewD};

use crate::backward::Gradients;
use crate::config::RnnConfig;
use crate::element::Float;
use crate::error::Result;
use crate::module::{Gru, Lstm, LstmState, Rnn};
use crate::stream::{GruStream, LstmStream, RnnStream};

/// A recurrent layer of any kind: `torch.nn.RNN`, `LSTM` or `GRU`.
///
/// The methods take the state as `Option<&Self::State>` (zeros when `None`) and return
/// it owned, so that a state returned by one call is the next call's as it is. Each is
/// the layer type's own method of the same name (which takes more forms of state); see
/// those for shapes and errors ([`Rnn::forward`], [`Lstm::forward`], ...). On a concrete
/// type the inherent method is the one called; generic code calls these.
pub trait Recurrent<T: Float>: Send + Sync {
    /// The state: `h` `(D * num_layers, [N,] H_out)` for RNN and GRU, `(h, c)` for LSTM.
    type State: Clone + std::fmt::Debug + Send;
    /// The kind's stream ([`RnnStream`], [`LstmStream`], [`GruStream`]).
    type Stream<'a>: RecurrentStream<T, State = Self::State>
    where
        Self: 'a;

    /// The configuration (sizes and torch's options).
    fn config(&self) -> &RnnConfig;

    /// `module.eval()(input, state)`: the output and the final state.
    ///
    /// # Errors
    /// As the layer type's `forward`.
    fn forward(
        &self,
        input: ArrayViewD<'_, T>,
        state: Option<&Self::State>,
    ) -> Result<(ArrayD<T>, Self::State)>;

    /// Sequences of different lengths padded to `L` (`pack_padded_sequence` semantics).
    ///
    /// # Errors
    /// As the layer type's `forward_padded`.
    fn forward_padded(
        &self,
        input: ArrayViewD<'_, T>,
        lengths: &[usize],
        state: Option<&Self::State>,
    ) -> Result<(ArrayD<T>, Self::State)>;

    /// A stream over one sequence fed in pieces, from `state` (zeros when `None`).
    ///
    /// # Errors
    /// As the layer type's `stream`: a bidirectional layer cannot stream.
    fn stream(&self, state: Option<&Self::State>) -> Result<Self::Stream<'_>>;

    /// The gradients of `sum(output * grad_output) + sum(state_n * grad_state)` for every
    /// parameter, the input and the initial state (evaluation mode).
    ///
    /// # Errors
    /// As the layer type's `backward`.
    fn backward(
        &self,
        input: ArrayViewD<'_, T>,
        state: Option<&Self::State>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: Option<&Self::State>,
    ) -> Result<Gradients<T>>;

    /// Every parameter as `(torch's name, tensor)`, in `named_parameters()` order.
    fn named_parameters(&self) -> Vec<(String, ArrayViewD<'_, T>)>;
}

/// A stream of any kind; see [`Recurrent::stream`].
pub trait RecurrentStream<T: Float>: Send {
    /// The kind's state, as [`Recurrent::State`].
    type State;

    /// The next chunk of time steps, any length; returns its output.
    ///
    /// # Errors
    /// As the layer's `forward` for the chunk against the stream's state.
    fn feed(&mut self, chunk: ArrayViewD<'_, T>) -> Result<ArrayD<T>>;

    /// One time step `(N, H_in)`; returns a view of its output `(N, H_out)`.
    ///
    /// # Errors
    /// A width or batch other than the stream's.
    fn step(&mut self, x: ArrayView2<'_, T>) -> Result<ArrayView2<'_, T>>;

    /// The state so far, owned (`None` before anything ran from a state of zeros).
    fn state_owned(&self) -> Option<Self::State>;
}

/// The trait methods of a layer whose state is `h` alone.
macro_rules! hidden_recurrent {
    ($layer:ident, $stream:ident) => {
        impl<T: Float> Recurrent<T> for $layer<T> {
            type State = ArrayD<T>;
            type Stream<'a>
                = $stream<'a, T>
            where
                Self: 'a;

            fn config(&self) -> &RnnConfig {
                $layer::config(self)
            }

            fn forward(
                &self,
                input: ArrayViewD<'_, T>,
                state: Option<&ArrayD<T>>,
            ) -> Result<(ArrayD<T>, ArrayD<T>)> {
                self.forward(input, state.map(|h| h.view()))
            }

            fn forward_padded(
                &self,
                input: ArrayViewD<'_, T>,
                lengths: &[usize],
                state: Option<&ArrayD<T>>,
            ) -> Result<(ArrayD<T>, ArrayD<T>)> {
                self.forward_padded(input, lengths, state.map(|h| h.view()))
            }

            fn stream(&self, state: Option<&ArrayD<T>>) -> Result<$stream<'_, T>> {
                $layer::stream(self, state.map(|h| h.view()))
            }

            fn backward(
                &self,
                input: ArrayViewD<'_, T>,
                state: Option<&ArrayD<T>>,
                grad_output: ArrayViewD<'_, T>,
                grad_state: Option<&ArrayD<T>>,
            ) -> Result<Gradients<T>> {
                self.backward(
                    input,
                    state.map(|h| h.view()),
                    grad_output,
                    grad_state.map(|g| g.view()),
                )
            }

            fn named_parameters(&self) -> Vec<(String, ArrayViewD<'_, T>)> {
                self.named_parameters().collect()
            }
        }

        impl<T: Float> RecurrentStream<T> for $stream<'_, T> {
            type State = ArrayD<T>;

            fn feed(&mut self, chunk: ArrayViewD<'_, T>) -> Result<ArrayD<T>> {
                $stream::feed(self, chunk)
            }

            fn step(&mut self, x: ArrayView2<'_, T>) -> Result<ArrayView2<'_, T>> {
                $stream::step(self, x)
            }

            fn state_owned(&self) -> Option<ArrayD<T>> {
                self.state().map(|h| h.to_owned())
            }
        }
    };
}

hidden_recurrent!(Rnn, RnnStream);
hidden_recurrent!(Gru, GruStream);

impl<T: Float> Recurrent<T> for Lstm<T> {
    type State = LstmState<T>;
    type Stream<'a>
        = LstmStream<'a, T>
    where
        Self: 'a;

    fn config(&self) -> &RnnConfig {
        Lstm::config(self)
    }

    fn forward(
        &self,
        input: ArrayViewD<'_, T>,
        state: Option<&LstmState<T>>,
    ) -> Result<(ArrayD<T>, LstmState<T>)> {
        self.forward(input, state.map(|(h, c)| (h.view(), c.view())))
    }

    fn forward_padded(
        &self,
        input: ArrayViewD<'_, T>,
        lengths: &[usize],
        state: Option<&LstmState<T>>,
    ) -> Result<(ArrayD<T>, LstmState<T>)> {
        self.forward_padded(input, lengths, state.map(|(h, c)| (h.view(), c.view())))
    }

    fn stream(&self, state: Option<&LstmState<T>>) -> Result<LstmStream<'_, T>> {
        Lstm::stream(self, state.map(|(h, c)| (h.view(), c.view())))
    }

    fn backward(
        &self,
        input: ArrayViewD<'_, T>,
        state: Option<&LstmState<T>>,
        grad_output: ArrayViewD<'_, T>,
        grad_state: Option<&LstmState<T>>,
    ) -> Result<Gradients<T>> {
        let grad = grad_state.map_or((None, None), |(h, c)| (Some(h.view()), Some(c.view())));
        self.backward(
            input,
            state.map(|(h, c)| (h.view(), c.view())),
            grad_output,
            grad,
        )
    }

    fn named_parameters(&self) -> Vec<(String, ArrayViewD<'_, T>)> {
        self.named_parameters().collect()
    }
}

impl<T: Float> RecurrentStream<T> for LstmStream<'_, T> {
    type State = LstmState<T>;

    fn feed(&mut self, chunk: ArrayViewD<'_, T>) -> Result<ArrayD<T>> {
        LstmStream::feed(self, chunk)
    }

    fn step(&mut self, x: ArrayView2<'_, T>) -> Result<ArrayView2<'_, T>> {
        LstmStream::step(self, x)
    }

    fn state_owned(&self) -> Option<LstmState<T>> {
        LstmStream::state_owned(self)
    }
}
