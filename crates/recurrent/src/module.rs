//! [`Rnn`]: the layer a torch user builds with `torch.nn.RNN(...)`.

use ndarray::{ArrayD, ArrayViewD, Axis};
use rand::Rng;

use crate::config::{Kind, RnnConfig};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::forward::Dropout;
use crate::params::{DirectionParams, Layers};
use crate::shape::{prepare, prepare_with_cell};
use crate::state::{IntoHidden, IntoLstmState};

/// The methods every layer type shares: construction with torch's init, loading from
/// named tensors, and parameter access by torch's names.
macro_rules! layer_common {
    ($ty:ident, $kind:expr) => {
        impl<T: Float> $ty<T> {
            /// Parameters with torch's default initialisation, every one drawn from
            /// U(-1/sqrt(H), 1/sqrt(H)) by `rng`, in `named_parameters()` order.
            pub fn init<R: Rng + ?Sized>(config: RnnConfig, rng: &mut R) -> Result<Self> {
                check_kind(&config, $kind)?;
                Ok($ty {
                    layers: Layers::init(config, rng)?,
                })
            }

            /// `init` with a ChaCha8 generator seeded by `seed` (reproducible across
            /// platforms and versions of this crate).
            pub fn seeded(config: RnnConfig, seed: u64) -> Result<Self> {
                check_kind(&config, $kind)?;
                Ok($ty {
                    layers: Layers::seeded(config, seed)?,
                })
            }

            /// All parameters zero; fill them with `set_parameter`.
            pub fn zeros(config: RnnConfig) -> Result<Self> {
                check_kind(&config, $kind)?;
                Ok($ty {
                    layers: Layers::zeros(config)?,
                })
            }

            /// Builds the layer from `(name, tensor)` pairs with torch's names (no
            /// prefix). Every parameter of `config` must be given once, with torch's shape.
            pub fn from_named<I, S>(config: RnnConfig, tensors: I) -> Result<Self>
            where
                I: IntoIterator<Item = (S, ArrayD<T>)>,
                S: AsRef<str>,
            {
                check_kind(&config, $kind)?;
                Ok($ty {
                    layers: Layers::from_named(config, tensors)?,
                })
            }

            /// Wraps loaded parameters; their configuration must be of this kind.
            pub fn from_layers(layers: Layers<T>) -> Result<Self> {
                check_kind(layers.config(), $kind)?;
                Ok($ty { layers })
            }

            /// The constructor options.
            pub fn config(&self) -> &RnnConfig {
                self.layers.config()
            }

            /// Sets `dropout` (applied between layers in training mode only).
            pub fn set_dropout(&mut self, dropout: f64) -> Result<()> {
                self.layers.set_dropout(dropout)
            }

            /// Sets `batch_first`: how `forward` reads its input and lays out its output.
            pub fn set_batch_first(&mut self, batch_first: bool) {
                self.layers.set_batch_first(batch_first)
            }

            /// The parameter names in torch's `named_parameters()` order.
            pub fn parameter_names(&self) -> Vec<String> {
                self.layers.parameter_names()
            }

            /// `(name, tensor)` in torch's `named_parameters()` order.
            pub fn named_parameters(
                &self,
            ) -> impl Iterator<Item = (String, ArrayViewD<'_, T>)> + '_ {
                self.layers.named_parameters()
            }

            /// The tensor named `name` (torch's name, no prefix).
            pub fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>> {
                self.layers.parameter(name)
            }

            /// Replaces the tensor named `name` with `value`, which must have torch's shape.
            pub fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()> {
                self.layers.set_parameter(name, value)
            }

            /// Total number of scalars in the parameters.
            pub fn num_parameters(&self) -> usize {
                self.layers.num_parameters()
            }

            /// The parameters of (layer, direction) number `layer * D + direction`, or
            /// `None` past the last one.
            pub fn direction_params(&self, index: usize) -> Option<&DirectionParams<T>> {
                self.layers.direction_params(index)
            }

            /// All parameters, by (layer, direction) and by name.
            pub fn layers(&self) -> &Layers<T> {
                &self.layers
            }
        }

        impl<T> AsRef<Layers<T>> for $ty<T> {
            fn as_ref(&self) -> &Layers<T> {
                &self.layers
            }
        }
    };
}

/// `config.kind` must be the layer type's.
fn check_kind(config: &RnnConfig, kind: Kind) -> Result<()> {
    if config.kind == kind {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "this is a {} configuration ({config}); build it with the {} type",
            config.kind.name(),
            config.kind.type_name()
        )))
    }
}

/// A multi-layer Elman RNN with `tanh` or `relu`, computing what `torch.nn.RNN` computes.
///
/// `T` is `f32` or `f64`; input, states and parameters share it.
///
/// ```
/// use ndarray::Array3;
/// use recurrent::{Rnn, RnnConfig};
///
/// let rnn = Rnn::<f32>::seeded(RnnConfig::new(10, 20).num_layers(2), 0)?;
/// let input = Array3::<f32>::zeros((5, 3, 10)); // (L, N, H_in)
/// let h0 = Array3::<f32>::zeros((2, 3, 20)); // (num_layers, N, H)
/// let (output, h_n) = rnn.forward(input.view().into_dyn(), Some(h0.view().into_dyn()))?;
/// assert_eq!(output.shape(), [5, 3, 20]);
/// assert_eq!(h_n.shape(), [2, 3, 20]);
///
/// let listing: Vec<(String, Vec<usize>)> = rnn
///     .named_parameters()
///     .map(|(name, t)| (name, t.shape().to_vec()))
///     .collect();
/// assert_eq!(listing[0], ("weight_ih_l0".to_string(), vec![20, 10]));
/// assert_eq!(listing[3], ("bias_hh_l0".to_string(), vec![20]));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rnn<T> {
    layers: Layers<T>,
}

layer_common!(Rnn, Kind::Rnn);

impl<T: Float> Rnn<T> {
    /// Sets the nonlinearity (it has no parameters, so a state dict does not record it).
    pub fn set_nonlinearity(&mut self, nonlinearity: crate::Nonlinearity) {
        self.layers.set_nonlinearity(nonlinearity)
    }

    /// Runs the layer in evaluation mode (no dropout), as `module.eval()(input, h_0)`.
    ///
    /// - `input`: `(L, H_in)` unbatched, `(L, N, H_in)`, or `(N, L, H_in)` when
    ///   `batch_first`.
    /// - `h0`: `(D * num_layers, N, H)`, or `(D * num_layers, H)` for unbatched input;
    ///   zeros when `None`. It is only read.
    ///
    /// Returns `(output, h_n)`: output `(L, N, D * H)` (or the batch-first / unbatched
    /// form), h_n shaped like h_0, indexed `layer * D + direction`.
    pub fn forward<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        h0: impl IntoHidden<'s, T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let prepared = prepare(self.layers.config(), input, h0)?;
        if let Some((output, h_n, _)) = preflight(self.layers.config(), &prepared) {
            return Ok((output, h_n));
        }
        let (output, h_n) = crate::forward::forward(&self.layers, &prepared, Dropout::Off);
        Ok(finish(
            output.into_dyn(),
            h_n.into_dyn(),
            prepared.unbatched,
        ))
    }

    /// Runs the layer in training mode: as [`Rnn::forward`], but the output of every layer
    /// but the last goes through dropout with probability `config.dropout`, drawn from
    /// `rng`. (The random stream is not torch's, so the masks differ from torch's.)
    pub fn forward_train<'s, R: rand::RngCore>(
        &self,
        input: ArrayViewD<'_, T>,
        h0: impl IntoHidden<'s, T>,
        rng: &mut R,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let prepared = prepare(self.layers.config(), input, h0)?;
        if let Some((output, h_n, _)) = preflight(self.layers.config(), &prepared) {
            return Ok((output, h_n));
        }
        let (output, h_n) = crate::forward::forward(&self.layers, &prepared, Dropout::Sample(rng));
        Ok(finish(
            output.into_dyn(),
            h_n.into_dyn(),
            prepared.unbatched,
        ))
    }

    /// [`Rnn::forward_train`] with the dropout factors given (see [`crate::dropout`]), so
    /// that [`Rnn::backward_with_masks`] can use the same ones.
    pub fn forward_with_masks<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        h0: impl IntoHidden<'s, T>,
        masks: &crate::dropout::DropoutMasks<T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let prepared = prepare(self.layers.config(), input, h0)?;
        masks.check(self.config(), prepared.seq_len(), prepared.batch())?;
        if let Some((output, h_n, _)) = preflight(self.layers.config(), &prepared) {
            return Ok((output, h_n));
        }
        let (output, h_n) =
            crate::forward::forward(&self.layers, &prepared, Dropout::Masks(masks.masks()));
        Ok(finish(
            output.into_dyn(),
            h_n.into_dyn(),
            prepared.unbatched,
        ))
    }
}

impl<T: Float> Rnn<T> {
    /// Runs a batch of sequences of different lengths, padded to `L`: what torch computes
    /// for `pad_packed_sequence(rnn(pack_padded_sequence(input, lengths,
    /// enforce_sorted=False)), total_length=L)`. Sequence `n` stops after `lengths[n]`
    /// steps (each in `1..=L`): its outputs past that are zero, its h_n is its last valid
    /// state, and its reverse direction starts at its own last element. `lengths` and
    /// `h0` are in the caller's batch order, as are the results.
    pub fn forward_padded<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        lengths: &[usize],
        h0: impl IntoHidden<'s, T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let (output, h_n, _) =
            run_gated(&self.layers, input, h0, None, Some(lengths), Dropout::Off)?;
        Ok((output, h_n))
    }
}

/// A multi-layer LSTM, computing what `torch.nn.LSTM` computes, `proj_size` included.
///
/// ```
/// use ndarray::Array3;
/// use recurrent::{Lstm, RnnConfig};
///
/// // torch.nn.LSTM(10, 20, num_layers=2, proj_size=5)
/// let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(10, 20).num_layers(2).proj_size(5), 0)?;
/// let input = Array3::<f32>::zeros((7, 3, 10)); // (L, N, H_in)
/// let (output, (h_n, c_n)) = lstm.forward(input.view().into_dyn(), None)?;
/// assert_eq!(output.shape(), [7, 3, 5]); // (L, N, D*P)
/// assert_eq!(h_n.shape(), [2, 3, 5]); // (D*num_layers, N, P)
/// assert_eq!(c_n.shape(), [2, 3, 20]); // (D*num_layers, N, H)
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lstm<T> {
    layers: Layers<T>,
}

layer_common!(Lstm, Kind::Lstm);

/// An LSTM's `(h, c)` state pair.
pub use crate::state::LstmState;

impl<T: Float> Lstm<T> {
    /// Runs the layer in evaluation mode, as `lstm.eval()(input, (h_0, c_0))`.
    ///
    /// - `input`: `(L, H_in)` unbatched, `(L, N, H_in)`, or `(N, L, H_in)` when
    ///   `batch_first`.
    /// - `state`: `(h_0, c_0)` with h_0 `(D * num_layers, N, H_out)` and c_0
    ///   `(D * num_layers, N, H)` (without the N axis for unbatched input), or `None` for
    ///   zeros. `H_out` is `proj_size` if set, else `hidden_size`.
    ///
    /// Returns `(output, (h_n, c_n))`, output `(L, N, D * H_out)`.
    pub fn forward<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        state: impl IntoLstmState<'s, T>,
    ) -> Result<(ArrayD<T>, LstmState<T>)> {
        let (h0, c0) = state.into_lstm_state().unzip();
        let (output, h_n, c_n) = run_gated(&self.layers, input, h0, c0, None, Dropout::Off)?;
        Ok((output, (h_n, c_n)))
    }

    /// [`Lstm::forward`] in training mode: dropout between layers, drawn from `rng`.
    pub fn forward_train<'s, R: rand::RngCore>(
        &self,
        input: ArrayViewD<'_, T>,
        state: impl IntoLstmState<'s, T>,
        rng: &mut R,
    ) -> Result<(ArrayD<T>, LstmState<T>)> {
        let (h0, c0) = state.into_lstm_state().unzip();
        let (output, h_n, c_n) =
            run_gated(&self.layers, input, h0, c0, None, Dropout::Sample(rng))?;
        Ok((output, (h_n, c_n)))
    }

    /// [`Lstm::forward_train`] with the dropout factors given; see
    /// [`Rnn::forward_with_masks`].
    pub fn forward_with_masks<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        state: impl IntoLstmState<'s, T>,
        masks: &crate::dropout::DropoutMasks<T>,
    ) -> Result<(ArrayD<T>, LstmState<T>)> {
        let (h0, c0) = state.into_lstm_state().unzip();
        let (output, h_n, c_n) = run_gated(
            &self.layers,
            input,
            h0,
            c0,
            None,
            Dropout::Masks(masks.masks()),
        )?;
        Ok((output, (h_n, c_n)))
    }

    /// Variable-length batches; see [`Rnn::forward_padded`].
    pub fn forward_padded<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        lengths: &[usize],
        state: impl IntoLstmState<'s, T>,
    ) -> Result<(ArrayD<T>, LstmState<T>)> {
        let (h0, c0) = state.into_lstm_state().unzip();
        let (output, h_n, c_n) =
            run_gated(&self.layers, input, h0, c0, Some(lengths), Dropout::Off)?;
        Ok((output, (h_n, c_n)))
    }
}

/// A multi-layer GRU, computing what `torch.nn.GRU` computes: gates r, z, n, with
/// `n = tanh(W_in x + b_in + r (W_hn h + b_hn))` and `h' = (1 - z) n + z h`.
///
/// ```
/// use ndarray::Array2;
/// use recurrent::{Gru, RnnConfig};
/// let gru = Gru::<f64>::seeded(RnnConfig::gru(3, 4).bidirectional(true), 0)?;
/// let x = Array2::<f64>::zeros((6, 3)); // unbatched (L, H_in)
/// let (output, h_n) = gru.forward(x.view().into_dyn(), None)?;
/// assert_eq!((output.shape(), h_n.shape()), (&[6, 8][..], &[2, 4][..]));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gru<T> {
    layers: Layers<T>,
}

layer_common!(Gru, Kind::Gru);

impl<T: Float> Gru<T> {
    /// Runs the layer in evaluation mode; same contract as [`Rnn::forward`].
    pub fn forward<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        h0: impl IntoHidden<'s, T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let (output, h_n, _) = run_gated(&self.layers, input, h0, None, None, Dropout::Off)?;
        Ok((output, h_n))
    }

    /// [`Gru::forward`] in training mode: dropout between layers, drawn from `rng`.
    pub fn forward_train<'s, R: rand::RngCore>(
        &self,
        input: ArrayViewD<'_, T>,
        h0: impl IntoHidden<'s, T>,
        rng: &mut R,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let (output, h_n, _) =
            run_gated(&self.layers, input, h0, None, None, Dropout::Sample(rng))?;
        Ok((output, h_n))
    }

    /// [`Gru::forward_train`] with the dropout factors given; see
    /// [`Rnn::forward_with_masks`].
    pub fn forward_with_masks<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        h0: impl IntoHidden<'s, T>,
        masks: &crate::dropout::DropoutMasks<T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let (output, h_n, _) = run_gated(
            &self.layers,
            input,
            h0,
            None,
            None,
            Dropout::Masks(masks.masks()),
        )?;
        Ok((output, h_n))
    }

    /// Variable-length batches; see [`Rnn::forward_padded`].
    pub fn forward_padded<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        lengths: &[usize],
        h0: impl IntoHidden<'s, T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)> {
        let h0 = h0.into_hidden();
        let (output, h_n, _) =
            run_gated(&self.layers, input, h0, None, Some(lengths), Dropout::Off)?;
        Ok((output, h_n))
    }
}

/// A layer of any kind: what [`crate::load`] returns for a file whose kind is not known
/// in advance. Match on it to run it:
///
/// ```no_run
/// use recurrent::Layer;
/// match recurrent::load::<f32>("model.safetensors", None)? {
///     Layer::Rnn(rnn) => println!("an RNN: {}", rnn.config()),
///     Layer::Lstm(lstm) => println!("an LSTM: {}", lstm.config()),
///     Layer::Gru(gru) => println!("a GRU: {}", gru.config()),
/// }
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub enum Layer<T> {
    /// `torch.nn.RNN`.
    Rnn(Rnn<T>),
    /// `torch.nn.LSTM`.
    Lstm(Lstm<T>),
    /// `torch.nn.GRU`.
    Gru(Gru<T>),
}

impl<T: Float> Layer<T> {
    /// Wraps parameters as the layer type of their configuration's kind.
    pub fn from_layers(layers: Layers<T>) -> Self {
        match layers.config().kind {
            Kind::Rnn => Layer::Rnn(Rnn { layers }),
            Kind::Lstm => Layer::Lstm(Lstm { layers }),
            Kind::Gru => Layer::Gru(Gru { layers }),
        }
    }

    /// RNN, LSTM or GRU.
    pub fn kind(&self) -> Kind {
        self.config().kind
    }

    /// The constructor options.
    pub fn config(&self) -> &RnnConfig {
        self.layers().config()
    }

    /// All parameters, by (layer, direction) and by name.
    pub fn layers(&self) -> &Layers<T> {
        match self {
            Layer::Rnn(l) => l.layers(),
            Layer::Lstm(l) => l.layers(),
            Layer::Gru(l) => l.layers(),
        }
    }

    /// `(name, tensor)` in torch's `named_parameters()` order.
    pub fn named_parameters(&self) -> impl Iterator<Item = (String, ArrayViewD<'_, T>)> + '_ {
        self.layers().named_parameters()
    }
}

impl<T> AsRef<Layers<T>> for Layer<T> {
    fn as_ref(&self) -> &Layers<T> {
        match self {
            Layer::Rnn(l) => l.as_ref(),
            Layer::Lstm(l) => l.as_ref(),
            Layer::Gru(l) => l.as_ref(),
        }
    }
}

impl<T> From<Rnn<T>> for Layer<T> {
    fn from(layer: Rnn<T>) -> Self {
        Layer::Rnn(layer)
    }
}

impl<T> From<Lstm<T>> for Layer<T> {
    fn from(layer: Lstm<T>) -> Self {
        Layer::Lstm(layer)
    }
}

impl<T> From<Gru<T>> for Layer<T> {
    fn from(layer: Gru<T>) -> Self {
        Layer::Gru(layer)
    }
}

/// Checks the inputs and runs the general fast path; returns `(output, h_n, c_n)` in the
/// caller's form.
fn run_gated<T: Float>(
    layers: &Layers<T>,
    input: ArrayViewD<'_, T>,
    h0: Option<ArrayViewD<'_, T>>,
    c0: Option<ArrayViewD<'_, T>>,
    lengths: Option<&[usize]>,
    dropout: Dropout<'_, T>,
) -> Result<(ArrayD<T>, ArrayD<T>, ArrayD<T>)> {
    let prepared = prepare_with_cell(layers.config(), input, h0, c0)?;
    let (seq_len, batch) = (prepared.seq_len(), prepared.batch());
    if let Some(l) = lengths {
        crate::shape::check_lengths(l, &prepared)?;
    }
    if let Dropout::Masks(masks) = &dropout {
        crate::dropout::DropoutMasks::from_masks(layers.config(), seq_len, batch, masks.to_vec())?;
    }
    if let Some(empty) = preflight(layers.config(), &prepared) {
        return Ok(empty);
    }
    let lengths = lengths.map_or_else(|| vec![seq_len; batch], <[usize]>::to_vec);
    let (output, h_n, c_n) = crate::forward::forward_gated(layers, &prepared, &lengths, dropout);
    let (output, h_n) = finish(output.into_dyn(), h_n.into_dyn(), prepared.unbatched);
    let c_n = if prepared.unbatched {
        c_n.into_dyn().remove_axis(Axis(1))
    } else {
        c_n.into_dyn()
    };
    Ok((output, h_n, c_n))
}

/// `(output, h_n, c_n)` of a forward pass.
pub(crate) type Outputs<T> = (ArrayD<T>, ArrayD<T>, ArrayD<T>);

/// What every forward entry point checks once its inputs are valid (and `prepare` has
/// checked that the pass fits in memory): whether there is anything to compute. An
/// empty batch (`N = 0`) returns its empty results at once, in the caller's
/// form, whatever `L` is: no step loop runs over data that is not there.
pub(crate) fn preflight<T: Float>(
    config: &RnnConfig,
    prepared: &crate::shape::Prepared<'_, T>,
) -> Option<Outputs<T>> {
    let (seq_len, batch) = (prepared.seq_len(), prepared.batch());
    let states = config.num_directions() * config.num_layers;
    let width = config.num_directions() * config.output_hidden_size();
    if batch == 0 {
        let output = if prepared.batch_first {
            ArrayD::zeros(vec![0, seq_len, width])
        } else {
            ArrayD::zeros(vec![seq_len, 0, width])
        };
        return Some((
            output,
            ArrayD::zeros(vec![states, 0, config.output_hidden_size()]),
            ArrayD::zeros(vec![states, 0, config.hidden_size]),
        ));
    }
    None
}

/// Removes the batch axis again for unbatched input.
pub(crate) fn finish<T>(
    output: ArrayD<T>,
    h_n: ArrayD<T>,
    unbatched: bool,
) -> (ArrayD<T>, ArrayD<T>) {
    if unbatched {
        (output.remove_axis(Axis(1)), h_n.remove_axis(Axis(1)))
    } else {
        (output, h_n)
    }
}
