//! torch's recurrent cells: one time step of `nn.RNNCell`, `nn.LSTMCell` and
//! `nn.GRUCell`.
//!
//! A cell holds one (layer, direction)'s worth of parameters under torch's cell names
//! (`weight_ih` `(G*H, H_in)`, `weight_hh` `(G*H, H)`, `bias_ih`, `bias_hh` `(G*H,)`, G
//! the gate count) and maps `(input, state)` to the next state. Input is `(N, H_in)`, or
//! `(H_in,)` unbatched; the state is `(N, H)`, or `(H,)`, and zeros when not given.
//!
//! The fast path is the layers' per-step work for one step: the products go through the
//! packed-weight kernels (`forward::matmul_acc`), the biases are broadcast into the
//! output before the product accumulates onto them, and the gate epilogue runs as passes
//! over contiguous gate slices (vectorised `tanh`, and the logistic function as
//! `(1 + tanh(x / 2)) / 2`). The plain loops [`crate::reference::cell`],
//! [`crate::reference::lstm_cell`] and [`crate::reference::gru_cell`] are the oracle;
//! [`RnnCell::params`] (and the same on the other cells) hands them the parameters.
//!
//! ```
//! use ndarray::Array2;
//! use recurrent::{reference, GruCell};
//!
//! // torch.nn.GRUCell(4, 3), with torch's default init (seeded)
//! let cell = GruCell::<f64>::seeded(4, 3, true, 0)?;
//! let x = Array2::from_shape_fn((2, 4), |(n, i)| (n + i) as f64 * 0.1); // (N, H_in)
//! let h1 = cell.forward(x.view().into_dyn(), None)?; // hx = zeros
//! let h2 = cell.forward(x.view().into_dyn(), Some(h1.view()))?;
//! assert_eq!(h2.shape(), [2, 3]);
//!
//! // The plain loop agrees.
//! let want = reference::gru_cell(cell.params(), x.view(), h1.view().into_dimensionality()?);
//! assert!((&h2 - &want.into_dyn()).iter().all(|d| d.abs() < 1e-12));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, ArrayViewMutD, Axis, CowArray, Ix2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Kind, Nonlinearity};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::forward::{StepScratch, StepWeights};
use crate::params::{uniform_init, DirectionParams, Packed};
use crate::state::LstmState;
use crate::state::{IntoHidden, IntoLstmState};

/// torch's parameter names of a cell, in `named_parameters()` order.
const NAMES: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];

/// What the three cells share: sizes, parameters, and their packed layouts.
#[derive(Debug, Clone)]
struct Core<T> {
    kind: Kind,
    input_size: usize,
    hidden_size: usize,
    params: DirectionParams<T>,
    /// The kernels' layouts, recomputed whenever a parameter is set.
    packed: Packed<T>,
}

impl<T: Float> Core<T> {
    /// # Errors
    /// [`Error::OutOfMemory`] when the parameters cannot be allocated (torch: "not
    /// enough memory"), checked before anything is allocated.
    fn zeros(kind: Kind, input_size: usize, hidden_size: usize, bias: bool) -> Result<Self> {
        let gates = kind.gate_count() * hidden_size;
        // Each weight twice (torch's layout and the packed one), rows padded.
        crate::memory::Budget::new()
            .add(
                std::mem::size_of::<T>(),
                &[2, gates, input_size + hidden_size + 34],
            )
            .check(|| {
                format!(
                    "the parameters of a {} cell of hidden size {hidden_size}",
                    kind.name()
                )
            })?;
        let params = DirectionParams {
            w_ih: Array2::zeros((gates, input_size)),
            w_hh: Array2::zeros((gates, hidden_size)),
            b_ih: bias.then(|| Array1::zeros(gates)),
            b_hh: bias.then(|| Array1::zeros(gates)),
            w_hr: None,
        };
        let packed = params.pack();
        Ok(Core {
            kind,
            input_size,
            hidden_size,
            params,
            packed,
        })
    }

    /// torch's `RNNCellBase.reset_parameters`: every parameter, in `named_parameters()`
    /// order, from U(-1/sqrt(H), 1/sqrt(H)). (With H = 0 there is nothing to draw.)
    fn init<R: Rng + ?Sized>(
        kind: Kind,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
        let mut core = Self::zeros(kind, input_size, hidden_size, bias)?;
        for name in core.names() {
            if let Some(value) = core.view_mut(name) {
                uniform_init(value, hidden_size, rng);
            }
        }
        core.packed = core.params.pack();
        Ok(core)
    }

    fn fill_from_named<I, S>(mut self, describe: String, tensors: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, ArrayD<T>)>,
        S: AsRef<str>,
    {
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in tensors {
            let name = name.as_ref();
            self.set_parameter(name, value.view())?;
            if !seen.iter().any(|s| s == name) {
                seen.push(name.to_string());
            }
        }
        let given = |name: &str| seen.iter().any(|s| s == name);
        if let Some(missing) = self.names().iter().find(|n| !given(n)) {
            // Every name given is one of the cell's (others failed above): list them in
            // torch's order.
            return Err(Error::MissingParameter {
                name: missing.to_string(),
                config: describe,
                expected: self.names().iter().map(ToString::to_string).collect(),
                found: self
                    .names()
                    .iter()
                    .filter(|n| given(n))
                    .map(ToString::to_string)
                    .collect(),
            });
        }
        Ok(self)
    }

    fn cell_name(&self) -> &'static str {
        match self.kind {
            Kind::Rnn => "RNNCell",
            Kind::Lstm => "LSTMCell",
            Kind::Gru => "GRUCell",
        }
    }

    fn bias(&self) -> bool {
        self.params.b_ih.is_some()
    }

    fn names(&self) -> &'static [&'static str] {
        if self.bias() {
            &NAMES
        } else {
            &NAMES[..2]
        }
    }

    fn view(&self, name: &str) -> Option<ArrayViewD<'_, T>> {
        let p = &self.params;
        Some(match name {
            "weight_ih" => p.w_ih.view().into_dyn(),
            "weight_hh" => p.w_hh.view().into_dyn(),
            "bias_ih" => p.b_ih.as_ref()?.view().into_dyn(),
            "bias_hh" => p.b_hh.as_ref()?.view().into_dyn(),
            _ => return None,
        })
    }

    fn view_mut(&mut self, name: &str) -> Option<ArrayViewMutD<'_, T>> {
        let p = &mut self.params;
        Some(match name {
            "weight_ih" => p.w_ih.view_mut().into_dyn(),
            "weight_hh" => p.w_hh.view_mut().into_dyn(),
            "bias_ih" => p.b_ih.as_mut()?.view_mut().into_dyn(),
            "bias_hh" => p.b_hh.as_mut()?.view_mut().into_dyn(),
            _ => return None,
        })
    }

    fn unknown(&self, name: &str) -> Error {
        Error::UnknownParameter {
            name: name.to_string(),
            known: self.names().iter().map(ToString::to_string).collect(),
        }
    }

    fn named_parameters(&self) -> impl Iterator<Item = (&'static str, ArrayViewD<'_, T>)> + '_ {
        self.names()
            .iter()
            .filter_map(move |&name| Some((name, self.view(name)?)))
    }

    fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>> {
        self.view(name).ok_or_else(|| self.unknown(name))
    }

    fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()> {
        let expected = match self.view(name) {
            Some(slot) => slot.shape().to_vec(),
            None => return Err(self.unknown(name)),
        };
        if value.shape() != expected.as_slice() {
            return Err(Error::ParameterShape {
                name: name.to_string(),
                expected,
                got: value.shape().to_vec(),
            });
        }
        if let Some(mut slot) = self.view_mut(name) {
            slot.assign(&value);
        }
        self.packed = self.params.pack();
        Ok(())
    }

    /// A valid `RECURRENT_ISA` (see [`crate::isa()`]), then torch's checks, in torch's
    /// order (`torch/nn/modules/rnn.py`, then ATen's
    /// `check_rnn_cell_forward_input` / `_hidden`): input rank, state ranks, input width,
    /// then per state its rank against the input's, its batch size and its width.
    /// Returns the input and states in batched form, and whether the input was unbatched.
    fn check<'a>(
        &self,
        input: ArrayViewD<'a, T>,
        states: &[ArrayViewD<'a, T>],
    ) -> Result<Checked<'a, T>> {
        // A bad RECURRENT_ISA fails every call that computes, before anything else.
        crate::isa::check()?;
        let cell = self.cell_name();
        let rank = input.ndim();
        if rank != 1 && rank != 2 {
            return Err(Error::CellInputRank {
                cell,
                got: rank,
                shape: input.shape().to_vec(),
            });
        }
        let state_rank = |hidden: usize, state: &ArrayViewD<'a, T>| Error::CellStateRank {
            cell,
            hidden,
            input_rank: rank,
            got: state.ndim(),
            shape: state.shape().to_vec(),
        };
        for (hidden, state) in states.iter().enumerate() {
            if state.ndim() != 1 && state.ndim() != 2 {
                return Err(state_rank(hidden, state));
            }
        }
        let unbatched = rank == 1;
        // What a step allocates follows from the batch: the copies below, the gates
        // (G * H per row) and the new states, checked before any of it.
        let batch = if unbatched { 1 } else { input.shape()[0] };
        let gates = self.kind.gate_count() * self.hidden_size;
        let elem = std::mem::size_of::<T>();
        crate::memory::Budget::new()
            .add(elem, &[batch, self.input_size.max(input.shape()[rank - 1])])
            .add(elem, &[batch, 2 * gates + 4 * self.hidden_size])
            .check(|| format!("a step of {cell} for {batch} rows"))?;
        // Batched, in standard layout (borrowed when it already is), so that rows are
        // slices.
        let batched = |a: ArrayViewD<'a, T>| -> Result<CowArray<'a, T, Ix2>> {
            let a = if unbatched { a.insert_axis(Axis(0)) } else { a };
            let a = a.into_dimensionality::<Ix2>().map_err(|_| {
                Error::Config("internal error: rank changed during shape checks".to_string())
            })?;
            Ok(if a.is_standard_layout() {
                CowArray::from(a)
            } else {
                CowArray::from(a.as_standard_layout().into_owned())
            })
        };
        let x = batched(input)?;
        if x.ncols() != self.input_size {
            return Err(Error::InputSize {
                expected: self.input_size,
                got: x.ncols(),
            });
        }
        let mut checked = Vec::with_capacity(states.len());
        for (hidden, state) in states.iter().enumerate() {
            if state.ndim() != rank {
                return Err(state_rank(hidden, state));
            }
            let state = batched(state.clone())?;
            if state.nrows() != x.nrows() {
                return Err(Error::CellBatchSize {
                    hidden,
                    input_batch: x.nrows(),
                    got: state.nrows(),
                });
            }
            if state.ncols() != self.hidden_size {
                return Err(Error::CellHiddenSize {
                    hidden,
                    expected: self.hidden_size,
                    got: state.ncols(),
                });
            }
            checked.push(state);
        }
        Ok((x, checked, unbatched))
    }

    /// One step through the kind's cell (`forward::StepWeights::step`, the one home of
    /// each kind's gate math, which the layers and the streams run too): returns `(h',
    /// c')`, each `(N, H)` (`c'` zeros but for an LSTM). A state not given is zeros; its
    /// product with `W_hhᵀ` is then skipped when that is exactly zero (`W_hh` finite:
    /// `0 · NaN` and `0 · ∞` are NaN, as in torch).
    fn step(
        &self,
        nonlinearity: Nonlinearity,
        x: &CowArray<'_, T, Ix2>,
        h: Option<&CowArray<'_, T, Ix2>>,
        c: Option<&CowArray<'_, T, Ix2>>,
    ) -> (Array2<T>, Array2<T>) {
        let (batch, hidden) = (x.nrows(), self.hidden_size);
        let owned = |s: Option<&CowArray<'_, T, Ix2>>| {
            s.map_or_else(|| Array2::zeros((batch, hidden)), |s| s.to_owned())
        };
        let (mut h_new, mut c_new) = (owned(h), owned(c));
        if batch == 0 || hidden == 0 {
            return (h_new, c_new);
        }
        let threads = rayon::current_num_threads();
        let w = StepWeights::new(
            self.kind,
            nonlinearity,
            &self.packed,
            hidden,
            false,
            h.is_none(),
        );
        let gx = w.projected_input(&x.view(), threads);
        let mut scratch = StepScratch::new(&w, batch);
        let running = vec![1; batch];
        w.step(
            &mut scratch,
            gx.view(),
            h_new.view_mut(),
            c_new.view_mut(),
            true,
            0,
            &running,
            threads,
        );
        (h_new, c_new)
    }

    /// Removes the batch axis again for an unbatched input.
    fn finish(a: Array2<T>, unbatched: bool) -> ArrayD<T> {
        let a = a.into_dyn();
        if unbatched {
            a.remove_axis(Axis(0))
        } else {
            a
        }
    }

    fn write_repr(&self, f: &mut fmt::Formatter<'_>, nonlinearity: Nonlinearity) -> fmt::Result {
        // torch's repr: `RNNCell(4, 3, bias=False, nonlinearity=relu)`, defaults left out.
        write!(
            f,
            "{}({}, {}",
            self.cell_name(),
            self.input_size,
            self.hidden_size
        )?;
        if !self.bias() {
            write!(f, ", bias=False")?;
        }
        if nonlinearity != Nonlinearity::Tanh {
            write!(f, ", nonlinearity={nonlinearity}")?;
        }
        write!(f, ")")
    }
}

/// A cell's checked input and states: batched `(N, W)`, standard layout; and whether the
/// input was unbatched.
type Checked<'a, T> = (CowArray<'a, T, Ix2>, Vec<CowArray<'a, T, Ix2>>, bool);

/// Defines the parameter access every cell shares. `$ctor` is the argument list of the
/// type's `seeded` constructor in the examples, before the seed.
macro_rules! cell_common {
    ($ty:ident, $ctor:literal) => {
        impl<T: Float> $ty<T> {
            /// `input_size` (`H_in`).
            pub fn input_size(&self) -> usize {
                self.core.input_size
            }

            /// `hidden_size` (`H`).
            pub fn hidden_size(&self) -> usize {
                self.core.hidden_size
            }

            /// Whether the cell has `bias_ih` and `bias_hh`.
            pub fn bias(&self) -> bool {
                self.core.bias()
            }

            /// The parameter names in torch's `named_parameters()` order: `weight_ih`,
            /// `weight_hh`, then `bias_ih`, `bias_hh` when the cell has biases.
            pub fn parameter_names(&self) -> &'static [&'static str] {
                self.core.names()
            }

            /// `(name, tensor)` in torch's `named_parameters()` order.
            ///
            /// ```
            #[doc = concat!("let cell = recurrent::", stringify!($ty), "::<f32>::seeded(", $ctor, ", 0)?;")]
            /// let listing: Vec<(&str, Vec<usize>)> = cell
            ///     .named_parameters()
            ///     .map(|(name, t)| (name, t.shape().to_vec()))
            ///     .collect();
            /// let rows = listing[0].1[0]; // G * H, G the gate count
            /// assert_eq!(listing[0], ("weight_ih", vec![rows, 4]));
            /// assert_eq!(listing[1], ("weight_hh", vec![rows, 3]));
            /// assert_eq!(listing[2], ("bias_ih", vec![rows]));
            /// assert_eq!(listing[3], ("bias_hh", vec![rows]));
            /// assert_eq!(cell.num_parameters(), rows * (4 + 3 + 2));
            /// # Ok::<(), recurrent::Error>(())
            /// ```
            pub fn named_parameters(
                &self,
            ) -> impl Iterator<Item = (&'static str, ArrayViewD<'_, T>)> + '_ {
                self.core.named_parameters()
            }

            /// The tensor named `name`; [`Error::UnknownParameter`] for any other name
            /// (the bias names too, in a cell without biases).
            pub fn parameter(&self, name: &str) -> Result<ArrayViewD<'_, T>> {
                self.core.parameter(name)
            }

            /// Replaces the tensor named `name` with `value`, which must have torch's
            /// shape ([`Error::ParameterShape`] otherwise). The packed layouts the fast
            /// path uses are rebuilt.
            ///
            /// ```
            /// use ndarray::ArrayD;
            /// use recurrent::Error;
            #[doc = concat!("let mut cell = recurrent::", stringify!($ty), "::<f64>::seeded(", $ctor, ", 0)?;")]
            /// let rows = cell.parameter("weight_ih")?.shape()[0];
            /// cell.set_parameter("bias_ih", ArrayD::zeros(vec![rows]).view())?;
            /// assert!(cell.parameter("bias_ih")?.iter().all(|&b| b == 0.0));
            /// let wrong = cell.set_parameter("bias_ih", ArrayD::zeros(vec![rows + 1]).view());
            /// assert!(matches!(wrong, Err(Error::ParameterShape { .. })));
            /// assert!(matches!(cell.parameter("weight_ih_l0"), Err(Error::UnknownParameter { .. })));
            /// # Ok::<(), recurrent::Error>(())
            /// ```
            pub fn set_parameter(&mut self, name: &str, value: ArrayViewD<'_, T>) -> Result<()> {
                self.core.set_parameter(name, value)
            }

            /// Total number of scalars in the parameters.
            pub fn num_parameters(&self) -> usize {
                self.core.named_parameters().map(|(_, t)| t.len()).sum()
            }

            /// The parameters as one (layer, direction) of a layer holds them (`w_hr` is
            /// `None`): what [`crate::reference`]'s cell functions take.
            pub fn params(&self) -> &DirectionParams<T> {
                &self.core.params
            }
        }
    };
}

/// `torch.nn.RNNCell`: `h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`, `act` `tanh` or
/// `relu`.
///
/// ```
/// use ndarray::Array1;
/// use recurrent::{reference, Nonlinearity, RnnCell};
///
/// // torch.nn.RNNCell(4, 3, nonlinearity="relu"), torch's default init (seeded)
/// let cell = RnnCell::<f32>::seeded(4, 3, true, Nonlinearity::Relu, 1)?;
/// assert_eq!(cell.to_string(), "RNNCell(4, 3, nonlinearity=relu)");
/// let x = Array1::from(vec![0.5f32, -1.0, 0.25, 2.0]); // unbatched (H_in,)
/// let h = cell.forward(x.view().into_dyn(), None)?; // hx = zeros
/// assert_eq!(h.shape(), [3]);
/// assert!(h.iter().all(|&v| v >= 0.0));
///
/// let x2 = x.view().insert_axis(ndarray::Axis(0)); // (1, H_in)
/// let h0 = ndarray::Array2::zeros((1, 3));
/// let want = reference::cell(cell.params(), cell.nonlinearity(), x2, h0.view());
/// assert!((&h - &want.row(0).into_dyn()).iter().all(|d| d.abs() < 1e-6));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RnnCell<T> {
    core: Core<T>,
    nonlinearity: Nonlinearity,
}

cell_common!(RnnCell, "4, 3, true, recurrent::Nonlinearity::Tanh");

impl<T: Float> RnnCell<T> {
    /// `torch.nn.RNNCell(input_size, hidden_size, bias, nonlinearity)` with torch's
    /// default initialisation: every parameter, in `named_parameters()` order, drawn from
    /// U(-1/sqrt(H), 1/sqrt(H)) by `rng`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when the parameters cannot be allocated (the same for every
    /// constructor of the three cells).
    pub fn init<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        nonlinearity: Nonlinearity,
        rng: &mut R,
    ) -> Result<Self> {
        Ok(RnnCell {
            core: Core::init(Kind::Rnn, input_size, hidden_size, bias, rng)?,
            nonlinearity,
        })
    }

    /// [`RnnCell::init`] with a ChaCha8 generator seeded by `seed`. The draws are those
    /// of [`crate::Rnn::seeded`] for a one-layer RNN of the same sizes, so both get the
    /// same parameters.
    ///
    /// ```
    /// use recurrent::{Nonlinearity, Rnn, RnnCell, RnnConfig};
    /// let cell = RnnCell::<f32>::seeded(4, 3, true, Nonlinearity::Tanh, 7)?;
    /// let rnn = Rnn::<f32>::seeded(RnnConfig::new(4, 3), 7)?;
    /// assert_eq!(cell.parameter("weight_hh")?, rnn.parameter("weight_hh_l0")?);
    /// let bound = 1.0 / 3f32.sqrt();
    /// assert!(cell.named_parameters().all(|(_, t)| t.iter().all(|v| v.abs() <= bound)));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn seeded(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        nonlinearity: Nonlinearity,
        seed: u64,
    ) -> Result<Self> {
        Self::init(
            input_size,
            hidden_size,
            bias,
            nonlinearity,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
    }

    /// All parameters zero; fill them with [`RnnCell::set_parameter`].
    pub fn zeros(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        nonlinearity: Nonlinearity,
    ) -> Result<Self> {
        Ok(RnnCell {
            core: Core::zeros(Kind::Rnn, input_size, hidden_size, bias)?,
            nonlinearity,
        })
    }

    /// Builds the cell from `(name, tensor)` pairs with torch's cell names (`weight_ih`,
    /// `weight_hh`, `bias_ih`, `bias_hh`), e.g. from `cell.state_dict()`. Every
    /// parameter must be given, with torch's shape; a name the cell does not have is an
    /// error.
    ///
    /// ```
    /// use ndarray::ArrayD;
    /// use recurrent::{Error, Nonlinearity, RnnCell};
    /// let tensors = vec![
    ///     ("weight_ih", ArrayD::<f64>::zeros(vec![3, 4])),
    ///     ("weight_hh", ArrayD::zeros(vec![3, 3])),
    /// ];
    /// let cell = RnnCell::from_named(4, 3, false, Nonlinearity::Tanh, tensors.clone())?;
    /// assert_eq!(cell.to_string(), "RNNCell(4, 3, bias=False)");
    ///
    /// // With bias=True, bias_ih and bias_hh are missing.
    /// let err = RnnCell::from_named(4, 3, true, Nonlinearity::Tanh, tensors).unwrap_err();
    /// assert!(matches!(err, Error::MissingParameter { ref name, .. } if name == "bias_ih"));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn from_named<I, S>(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        nonlinearity: Nonlinearity,
        tensors: I,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = (S, ArrayD<T>)>,
        S: AsRef<str>,
    {
        let zeros = Self::zeros(input_size, hidden_size, bias, nonlinearity)?;
        let describe = zeros.to_string();
        Ok(RnnCell {
            core: zeros.core.fill_from_named(describe, tensors)?,
            nonlinearity,
        })
    }

    /// `tanh` or `relu`.
    pub fn nonlinearity(&self) -> Nonlinearity {
        self.nonlinearity
    }

    /// Sets the nonlinearity.
    pub fn set_nonlinearity(&mut self, nonlinearity: Nonlinearity) {
        self.nonlinearity = nonlinearity;
    }

    /// One step, as `cell(input, hx)`.
    ///
    /// - `input`: `(N, H_in)`, or `(H_in,)` unbatched.
    /// - `hx`: `(N, H)`, or `(H,)` with an unbatched input; zeros when `None`. Only read.
    ///
    /// Returns h' shaped like `hx`. Errors as torch's: [`Error::CellInputRank`],
    /// [`Error::CellStateRank`], [`Error::InputSize`], [`Error::CellBatchSize`],
    /// [`Error::CellHiddenSize`].
    pub fn forward<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        hx: impl IntoHidden<'s, T>,
    ) -> Result<ArrayD<T>> {
        let hx = hx.into_hidden();
        let states: Vec<ArrayViewD<'_, T>> = hx.into_iter().collect();
        let (x, states, unbatched) = self.core.check(input, &states)?;
        let (h, _) = self.core.step(self.nonlinearity, &x, states.first(), None);
        Ok(Core::finish(h, unbatched))
    }
}

impl<T: Float> fmt::Display for RnnCell<T> {
    /// torch's repr: `RNNCell(4, 3)`, `RNNCell(4, 3, bias=False, nonlinearity=relu)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.write_repr(f, self.nonlinearity)
    }
}

/// `torch.nn.LSTMCell`: gates `i, f, g, o` (in that order in the weights) from
/// `x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`; `c' = f c + i g`, `h' = o tanh(c')`.
///
/// ```
/// use ndarray::Array2;
/// use recurrent::LstmCell;
///
/// let cell = LstmCell::<f32>::seeded(4, 3, true, 0)?; // torch.nn.LSTMCell(4, 3)
/// let x = Array2::<f32>::ones((5, 4)); // (N, H_in)
/// let (h, c) = cell.forward(x.view().into_dyn(), None)?; // (hx, cx) = zeros
/// let (h, c) = cell.forward(x.view().into_dyn(), Some((h.view(), c.view())))?;
/// assert_eq!((h.shape(), c.shape()), (&[5, 3][..], &[5, 3][..]));
/// assert!(h.iter().all(|v| v.abs() < 1.0));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LstmCell<T> {
    core: Core<T>,
}

cell_common!(LstmCell, "4, 3, true");

impl<T: Float> LstmCell<T> {
    /// `torch.nn.LSTMCell(input_size, hidden_size, bias)` with torch's default
    /// initialisation, drawn from `rng` (see [`RnnCell::init`]).
    pub fn init<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
        Ok(LstmCell {
            core: Core::init(Kind::Lstm, input_size, hidden_size, bias, rng)?,
        })
    }

    /// [`LstmCell::init`] with a ChaCha8 generator seeded by `seed` (the parameters
    /// [`crate::Lstm::seeded`] gives a one-layer LSTM of the same sizes).
    pub fn seeded(input_size: usize, hidden_size: usize, bias: bool, seed: u64) -> Result<Self> {
        Self::init(
            input_size,
            hidden_size,
            bias,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
    }

    /// All parameters zero; fill them with [`LstmCell::set_parameter`].
    pub fn zeros(input_size: usize, hidden_size: usize, bias: bool) -> Result<Self> {
        Ok(LstmCell {
            core: Core::zeros(Kind::Lstm, input_size, hidden_size, bias)?,
        })
    }

    /// Builds the cell from torch's named tensors; see [`RnnCell::from_named`].
    pub fn from_named<I, S>(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        tensors: I,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = (S, ArrayD<T>)>,
        S: AsRef<str>,
    {
        let zeros = Self::zeros(input_size, hidden_size, bias)?;
        let describe = zeros.to_string();
        Ok(LstmCell {
            core: zeros.core.fill_from_named(describe, tensors)?,
        })
    }

    /// One step, as `cell(input, (hx, cx))`.
    ///
    /// - `input`: `(N, H_in)`, or `(H_in,)` unbatched.
    /// - `state`: `(hx, cx)`, each `(N, H)` (or `(H,)` with an unbatched input); zeros
    ///   when `None`. Only read.
    ///
    /// Returns `(h', c')`, shaped like `hx`. Errors as [`RnnCell::forward`]'s, with
    /// `hidden: 1` for `cx`.
    pub fn forward<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        state: impl IntoLstmState<'s, T>,
    ) -> Result<LstmState<T>> {
        let state = state.into_lstm_state();
        let states: Vec<ArrayViewD<'_, T>> = match state {
            Some((hx, cx)) => vec![hx, cx],
            None => Vec::new(),
        };
        let (x, states, unbatched) = self.core.check(input, &states)?;
        let (h, c) = self
            .core
            .step(Nonlinearity::Tanh, &x, states.first(), states.get(1));
        Ok((Core::finish(h, unbatched), Core::finish(c, unbatched)))
    }
}

impl<T: Float> fmt::Display for LstmCell<T> {
    /// torch's repr: `LSTMCell(4, 3)`, `LSTMCell(4, 3, bias=False)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.write_repr(f, Nonlinearity::Tanh)
    }
}

/// `torch.nn.GRUCell`: gates `r, z, n` (in that order in the weights);
/// `r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)`, `z` likewise,
/// `n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn))`, `h' = (1 - z) n + z h`, computed as
/// ATen does: `(h - n) z + n`.
///
/// ```
/// use ndarray::Array1;
/// use recurrent::GruCell;
///
/// let cell = GruCell::<f64>::seeded(2, 3, true, 0)?; // torch.nn.GRUCell(2, 3)
/// let x = Array1::from(vec![1.0, -1.0]); // unbatched (H_in,)
/// let hx = Array1::from(vec![0.5, 0.0, -0.5]); // (H,)
/// let h = cell.forward(x.view().into_dyn(), Some(hx.view().into_dyn()))?;
/// assert_eq!(h.shape(), [3]);
/// // h' lies between hx and the candidate n, which is in (-1, 1).
/// assert!(h.iter().all(|v| v.abs() < 1.0));
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GruCell<T> {
    core: Core<T>,
}

cell_common!(GruCell, "4, 3, true");

impl<T: Float> GruCell<T> {
    /// `torch.nn.GRUCell(input_size, hidden_size, bias)` with torch's default
    /// initialisation, drawn from `rng` (see [`RnnCell::init`]).
    pub fn init<R: Rng + ?Sized>(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
        Ok(GruCell {
            core: Core::init(Kind::Gru, input_size, hidden_size, bias, rng)?,
        })
    }

    /// [`GruCell::init`] with a ChaCha8 generator seeded by `seed` (the parameters
    /// [`crate::Gru::seeded`] gives a one-layer GRU of the same sizes).
    pub fn seeded(input_size: usize, hidden_size: usize, bias: bool, seed: u64) -> Result<Self> {
        Self::init(
            input_size,
            hidden_size,
            bias,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
    }

    /// All parameters zero; fill them with [`GruCell::set_parameter`].
    pub fn zeros(input_size: usize, hidden_size: usize, bias: bool) -> Result<Self> {
        Ok(GruCell {
            core: Core::zeros(Kind::Gru, input_size, hidden_size, bias)?,
        })
    }

    /// Builds the cell from torch's named tensors; see [`RnnCell::from_named`].
    pub fn from_named<I, S>(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        tensors: I,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = (S, ArrayD<T>)>,
        S: AsRef<str>,
    {
        let zeros = Self::zeros(input_size, hidden_size, bias)?;
        let describe = zeros.to_string();
        Ok(GruCell {
            core: zeros.core.fill_from_named(describe, tensors)?,
        })
    }

    /// One step, as `cell(input, hx)`; same contract as [`RnnCell::forward`].
    pub fn forward<'s>(
        &self,
        input: ArrayViewD<'_, T>,
        hx: impl IntoHidden<'s, T>,
    ) -> Result<ArrayD<T>> {
        let hx = hx.into_hidden();
        let states: Vec<ArrayViewD<'_, T>> = hx.into_iter().collect();
        let (x, states, unbatched) = self.core.check(input, &states)?;
        let (h, _) = self.core.step(Nonlinearity::Tanh, &x, states.first(), None);
        Ok(Core::finish(h, unbatched))
    }
}

impl<T: Float> fmt::Display for GruCell<T> {
    /// torch's repr: `GRUCell(4, 3)`, `GRUCell(4, 3, bias=False)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.write_repr(f, Nonlinearity::Tanh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;

    #[test]
    fn cells_packed_layouts_follow_set_parameter() {
        let mut cell = LstmCell::<f32>::seeded(3, 5, true, 4).unwrap();
        assert_eq!(cell.core.packed, cell.core.params.pack());
        for name in NAMES {
            let shape = cell.parameter(name).unwrap().shape().to_vec();
            let mut k = 0.0f32;
            let value = ArrayD::from_shape_simple_fn(shape, || {
                k += 0.01;
                k
            });
            cell.set_parameter(name, value.view()).unwrap();
            assert_eq!(cell.core.packed, cell.core.params.pack(), "after {name}");
        }
    }

    /// torch allows zero sizes in a cell (only `RNNBase` refuses them); so does this.
    #[test]
    fn cells_zero_sizes() {
        let x = Array2::<f64>::ones((2, 0));
        let rnn = RnnCell::<f64>::seeded(0, 3, true, Nonlinearity::Tanh, 0).unwrap();
        let h = rnn.forward(x.view().into_dyn(), None).unwrap();
        let bias = rnn.params().folded_bias().unwrap().mapv(f64::tanh);
        assert_eq!(h, bias.broadcast((2, 3)).unwrap().into_dyn());

        let x = Array2::<f64>::ones((2, 4));
        let lstm = LstmCell::<f64>::seeded(4, 0, true, 0).unwrap();
        assert_eq!(lstm.num_parameters(), 0);
        let (h, c) = lstm.forward(x.view().into_dyn(), None).unwrap();
        assert_eq!((h.shape(), c.shape()), (&[2, 0][..], &[2, 0][..]));
        let gru = GruCell::<f32>::zeros(4, 0, false).unwrap();
        let h = gru
            .forward(Array1::<f32>::ones(4).view().into_dyn(), None)
            .unwrap();
        assert_eq!(h.shape(), [0]);
    }

    #[test]
    fn cells_display_like_torch() {
        assert_eq!(
            RnnCell::<f32>::zeros(4, 3, true, Nonlinearity::Tanh)
                .unwrap()
                .to_string(),
            "RNNCell(4, 3)"
        );
        assert_eq!(
            RnnCell::<f32>::zeros(4, 3, false, Nonlinearity::Relu)
                .unwrap()
                .to_string(),
            "RNNCell(4, 3, bias=False, nonlinearity=relu)"
        );
        assert_eq!(
            LstmCell::<f64>::zeros(2, 5, true).unwrap().to_string(),
            "LSTMCell(2, 5)"
        );
        assert_eq!(
            GruCell::<f64>::zeros(2, 5, false).unwrap().to_string(),
            "GRUCell(2, 5, bias=False)"
        );
    }
}
