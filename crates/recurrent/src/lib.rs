//! # recurrent
//!
//! PyTorch's recurrent layers, computed exactly, in Rust, on the CPU: `torch.nn.RNN`
//! ([`Rnn`], `tanh` or `relu`), `torch.nn.LSTM` ([`Lstm`], with `proj_size`) and
//! `torch.nn.GRU` ([`Gru`]), the cells ([`RnnCell`], [`LstmCell`], [`GruCell`]), with every
//! constructor option and input form torch has: multi-layer, bidirectional,
//! `batch_first`, unbatched input, optional initial states, no-bias, dropout between
//! layers in training, variable-length batches (`forward_padded`, [`PackedSequence`]),
//! float32 and float64. Gradients too: backpropagation through time ([`backward`]) and
//! torch.optim's optimizers ([`optim`]).
//!
//! ## A tour
//!
//! Build a layer as you would in torch, run it, and check it against the reference loop
//! that serves as this crate's specification:
//!
//! ```
//! use ndarray::Array3;
//! use recurrent::{reference, Nonlinearity, Rnn, RnnConfig};
//!
//! // torch.nn.RNN(input_size=4, hidden_size=8, num_layers=2, bidirectional=True)
//! let config = RnnConfig::new(4, 8).num_layers(2).bidirectional(true);
//! let rnn = Rnn::<f32>::seeded(config, 42)?; // torch's default init, seeded
//!
//! // Input (L, N, H_in) = (5, 3, 4); h_0 defaults to zeros.
//! let x = Array3::from_shape_fn((5, 3, 4), |(t, n, i)| ((t + n + i) as f32 * 0.3).sin());
//! let (output, h_n) = rnn.forward(x.view().into_dyn(), None)?;
//! assert_eq!(output.shape(), [5, 3, 16]); // (L, N, D*H)
//! assert_eq!(h_n.shape(), [4, 3, 8]); // (D*num_layers, N, H), index layer*D + direction
//!
//! // The last layer's forward-direction state at the last step is h_n[2].
//! let last = output.index_axis(ndarray::Axis(0), 4);
//! assert_eq!(last.slice(ndarray::s![.., ..8]).into_dyn(), h_n.index_axis(ndarray::Axis(0), 2));
//!
//! // The fast path and the plain loop agree.
//! let (ref_out, ref_hn) = reference::forward(&rnn, x.view().into_dyn(), None)?;
//! assert!((&output - &ref_out).iter().all(|d| d.abs() < 1e-5));
//! assert!((&h_n - &ref_hn).iter().all(|d| d.abs() < 1e-5));
//!
//! // Parameters carry torch's names, in named_parameters() order.
//! let names: Vec<String> = rnn.named_parameters().map(|(n, _)| n).take(5).collect();
//! assert_eq!(names, ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse"]);
//! # let _ = Nonlinearity::Relu;
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! ## From PyTorch
//!
//! Load a model trained in PyTorch (any kind, in one line), run it, and carry its state
//! from one call to the next. Save it from Python with
//! `safetensors.torch.save_file(model.state_dict(), path, metadata={"batch_first": "true"})`:
//! the tensors record the kind and sizes, the metadata what they cannot show
//! (`batch_first`, and an RNN's `nonlinearity`; torch's defaults where absent).
//!
//! ```
//! use recurrent::io::npy;
//! use recurrent::{Gru, Lstm};
//!
//! // torch.nn.LSTM(10, 20, num_layers=2, batch_first=True), from examples/data
//! let lstm = Lstm::<f32>::load("../../examples/data/lstm.safetensors", None)?;
//! let x = npy::read::<f32>("../../examples/data/lstm_input.npy")?; // (N, L, H_in) = (3, 7, 10)
//! let (y, state) = lstm.forward(x.view(), None)?; // y (3, 7, 20); state = (h_n, c_n)
//! let torch_y = npy::read::<f32>("../../examples/data/lstm_expected_output.npy")?;
//! assert!((&y - &torch_y).iter().all(|d| d.abs() < 1e-5));
//! let (_y_next, _state) = lstm.forward(x.view(), &state)?; // carries on from (h_n, c_n)
//!
//! // torch.nn.GRU(5, 7, num_layers=2) on an unbatched (L, H_in) input
//! let gru = Gru::<f32>::load("../../examples/data/gru.safetensors", None)?;
//! let x = npy::read::<f32>("../../examples/data/gru_input.npy")?;
//! let (y, h_n) = gru.forward(x.view(), None)?;
//! assert_eq!((y.shape(), h_n.shape()), (&[4, 7][..], &[2, 7][..]));
//! # Ok::<(), recurrent::Error>(())
//! ```
//!
//! [`load`] returns a [`Layer`] for a file whose kind is not known in advance;
//! `Rnn::load` on an LSTM's file is an error naming `Lstm::load`. `cargo run --example
//! tour` walks through every kind and option (RNN, LSTM with `proj_size`, GRU, lengths,
//! cells, streaming), checking each against the reference loop.
//!
//! ## Layout
//!
//! - [`config`]: the constructor options ([`RnnConfig`]) and torch's checks.
//! - [`params`]: torch's parameter names and shapes, storage, default init.
//! - [`module`]: the layers [`Rnn`], [`Lstm`], [`Gru`]: `forward`, `forward_padded`,
//!   `forward_train`, `forward_with_masks`, named parameters.
//! - [`layer`]: [`Recurrent`], what the three layer types share, for code written once.
//! - [`stream`]: [`RnnStream`], [`LstmStream`], [`GruStream`]: one sequence fed in chunks
//!   or one step at a time, allocation-free per step.
//! - [`cells`]: the single-step cells (the one step of each kind lives in `forward/cell.rs`,
//!   which the layers, cells and streams share); [`packed`]: `PackedSequence` and torch's pack/pad.
//! - [`backward`], [`dropout`], [`optim`]: gradients, shared dropout masks, optimizers.
//! - [`reference`](mod@reference): the plain per-step loops; the readable spec and the test oracle.
//! - `forward` (private): the fast path. Per layer and direction, one GEMM projects all
//!   time steps (biases folded in) straight into that direction's part of the output;
//!   each step then adds `h_{t-1} W_hh^T` and applies the activation in place. Layers
//!   narrower than one vector run as one fused loop; small batches of wide layers run
//!   on two threads in lockstep (`kernels/`, `forward/pair.rs`).
//! - [`io`]: state dicts from safetensors, `torch.save` and ONNX files ([`load`],
//!   `Rnn::load`, `LstmCell::load`, ...), safetensors writing, `.npy` arrays;
//!   [`state`]: the initial-state forms the layers accept.
//! - [`Error`]: every failure as a value; nothing a user supplies makes the crate panic.

#![warn(missing_docs)]

pub mod backward;
pub mod cells;
pub mod config;
pub mod dropout;
pub mod element;
pub mod error;
mod forward;
pub mod io;
mod isa;
mod kernels;
pub mod layer;
pub mod memory;
pub mod module;
pub mod optim;
pub mod packed;
pub mod params;
pub mod reference;
mod shape;
pub mod state;
pub mod stream;

/// Kernel entry points for `benches/kernels.rs`; not a stable API.
#[doc(hidden)]
pub mod __bench {
    use ndarray::{ArrayView2, ArrayViewMut2};

    /// `y += x · wt` with `wt` = Wᵀ `(K, N)` packed into column panels once, outside the
    /// call (see `kernels/panel.rs`).
    pub fn panel_matmul_acc<T: crate::Float>(
        x: &ArrayView2<'_, T>,
        panels: &PanelWeight<T>,
        y: &mut ArrayViewMut2<'_, T>,
    ) {
        crate::kernels::panel::gemm_panels(x, &panels.0, 0, y, true)
    }

    /// A weight packed for [`panel_matmul_acc`].
    pub struct PanelWeight<T>(crate::kernels::panel::Panels<T>);

    impl<T: crate::Float> PanelWeight<T> {
        /// Packs `wt` = Wᵀ `(K, N)`.
        pub fn new(wt: ArrayView2<'_, T>) -> Self {
            PanelWeight(crate::kernels::panel::Panels::new(wt))
        }
    }

    /// The vectorised f32 `tanh` the layers apply.
    pub fn tanh_slice_f32(xs: &mut [f32]) {
        crate::kernels::tanh::tanh_slice_f32(xs)
    }

    /// How long a recurrence split between two threads waits for the second one before
    /// running alone (default 200 µs); process-wide.
    pub fn set_helper_wait(wait: std::time::Duration) {
        crate::forward::set_helper_wait(wait)
    }

    /// Runs `f` with the kernels forced onto `isa` and returns its result; afterwards the
    /// path is what it was before (also when `f` panics). The setting is process-wide
    /// (rayon's workers see it), so tests that force a path must not run concurrently
    /// with others that compute; [`crate::isa()`] reports `isa` meanwhile, even if
    /// `RECURRENT_ISA` is invalid.
    ///
    /// # Errors
    /// [`crate::Error::Isa`] (and `f` does not run) when this CPU lacks `isa`.
    pub fn with_isa<R>(isa: crate::Isa, f: impl FnOnce() -> R) -> crate::Result<R> {
        crate::isa::with_isa(isa, f)
    }
}

pub use cells::{GruCell, LstmCell, RnnCell};
pub use config::{Kind, Nonlinearity, RnnConfig};
pub use element::{Dtype, Float};
pub use error::{Error, Result};
pub use io::load;
pub use isa::isa;
pub use kernels::isa::Isa;
pub use layer::{Recurrent, RecurrentStream};
pub use module::{Gru, Layer, Lstm, LstmState, Rnn};
/// The `ndarray` this crate's types come from (version 0.17): use it, or depend on the
/// same version, so that arrays passed in and returned are one type.
pub use ndarray;
pub use packed::PackedSequence;
pub use state::{IntoHidden, IntoLstmState};
pub use stream::{GruStream, LstmStream, RnnStream};
