//! What the layers accept as an initial state, so that the state one call returns is
//! the next call's initial state as it is:
//!
//! ```
//! use ndarray::Array3;
//! use recurrent::{Lstm, RnnConfig};
//!
//! let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(3, 5).num_layers(2), 0)?;
//! let chunk = Array3::<f32>::ones((4, 2, 3)); // (L, N, H_in)
//! let (_, state) = lstm.forward(chunk.view().into_dyn(), None)?; // (h_n, c_n)
//! let (_, state) = lstm.forward(chunk.view().into_dyn(), &state)?; // carried on
//! assert_eq!(state.0.shape(), [2, 2, 5]);
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! [`Rnn`](crate::Rnn) and [`Gru`](crate::Gru) take any [`IntoHidden`]: `None` (zeros),
//! `Some(view)`, a view, or a reference to an array (e.g. the `h_n` a call returned).
//! [`Lstm`](crate::Lstm) takes any [`IntoLstmState`]: `None`, `Some((h_view, c_view))`,
//! a pair of views or of array references, or a reference to the
//! [`LstmState`] a call returned. The arrays are only read.

use ndarray::{ArrayBase, ArrayView, ArrayViewD, Data, Dimension};

/// An initial hidden state `h_0` for [`Rnn`](crate::Rnn) and [`Gru`](crate::Gru):
/// `(D * num_layers, N, H)`, or `(D * num_layers, H)` for unbatched input. `None` means
/// zeros. Implemented for `Option<ArrayViewD>`, any `ArrayView`, any `&ArrayBase`
/// (owned arrays, views, of any dimension type) and `&Option<ArrayBase>` (a state kept
/// as `Option<ArrayD>`, passed as `&state`).
pub trait IntoHidden<'a, T> {
    /// The state as a view, or `None` for zeros.
    fn into_hidden(self) -> Option<ArrayViewD<'a, T>>;
}

impl<'a, T> IntoHidden<'a, T> for Option<ArrayViewD<'a, T>> {
    fn into_hidden(self) -> Option<ArrayViewD<'a, T>> {
        self
    }
}

impl<'a, T, D: Dimension> IntoHidden<'a, T> for ArrayView<'a, T, D> {
    fn into_hidden(self) -> Option<ArrayViewD<'a, T>> {
        Some(self.into_dyn())
    }
}

impl<'a, T, S: Data<Elem = T>, D: Dimension> IntoHidden<'a, T> for &'a ArrayBase<S, D> {
    fn into_hidden(self) -> Option<ArrayViewD<'a, T>> {
        Some(self.view().into_dyn())
    }
}

impl<'a, T, S: Data<Elem = T>, D: Dimension> IntoHidden<'a, T> for &'a Option<ArrayBase<S, D>> {
    fn into_hidden(self) -> Option<ArrayViewD<'a, T>> {
        self.as_ref().and_then(IntoHidden::into_hidden)
    }
}

/// An LSTM's initial state `(h_0, c_0)`: h_0 `(D * num_layers, N, H_out)` and c_0
/// `(D * num_layers, N, H)` (without the N axis for unbatched input). `None` means
/// zeros. Implemented for `Option<(ArrayViewD, ArrayViewD)>`, pairs of views, pairs of
/// array references, and a reference to a pair of arrays (the
/// [`LstmState`] that `forward` returns), also as a `&Option` of one.
pub trait IntoLstmState<'a, T> {
    /// The state as views, or `None` for zeros.
    fn into_lstm_state(self) -> Option<(ArrayViewD<'a, T>, ArrayViewD<'a, T>)>;
}

impl<'a, T> IntoLstmState<'a, T> for Option<(ArrayViewD<'a, T>, ArrayViewD<'a, T>)> {
    fn into_lstm_state(self) -> Option<(ArrayViewD<'a, T>, ArrayViewD<'a, T>)> {
        self
    }
}

impl<'a, T, D1: Dimension, D2: Dimension> IntoLstmState<'a, T>
    for (ArrayView<'a, T, D1>, ArrayView<'a, T, D2>)
{
    fn into_lstm_state(self) -> Option<(ArrayViewD<'a, T>, ArrayViewD<'a, T>)> {
        Some((self.0.into_dyn(), self.1.into_dyn()))
    }
}

impl<'a, T, S1, S2, D1, D2> IntoLstmState<'a, T> for (&'a ArrayBase<S1, D1>, &'a ArrayBase<S2, D2>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    D1: Dimension,
    D2: Dimension,
{
    fn into_lstm_state(self) -> Option<(ArrayViewD<'a, T>, ArrayViewD<'a, T>)> {
        Some((self.0.view().into_dyn(), self.1.view().into_dyn()))
    }
}

impl<'a, T, S1, S2, D1, D2> IntoLstmState<'a, T> for &'a (ArrayBase<S1, D1>, ArrayBase<S2, D2>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    D1: Dimension,
    D2: Dimension,
{
    fn into_lstm_state(self) -> Option<(ArrayViewD<'a, T>, ArrayViewD<'a, T>)> {
        (&self.0, &self.1).into_lstm_state()
    }
}

impl<'a, T, S1, S2, D1, D2> IntoLstmState<'a, T>
    for &'a Option<(ArrayBase<S1, D1>, ArrayBase<S2, D2>)>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    D1: Dimension,
    D2: Dimension,
{
    fn into_lstm_state(self) -> Option<(ArrayViewD<'a, T>, ArrayViewD<'a, T>)> {
        self.as_ref().and_then(IntoLstmState::into_lstm_state)
    }
}

/// An LSTM's state `(h, c)`: h `(D * num_layers, [N,] H_out)` and c `(D * num_layers,
/// [N,] H)`, what `Lstm::forward` returns and takes back (defined here, below the layer
/// and cell types that both use it).
pub type LstmState<T> = (ndarray::ArrayD<T>, ndarray::ArrayD<T>);
