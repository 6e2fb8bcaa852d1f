//! The constructor options of `torch.nn.RNN`, with torch's defaults and checks.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The activation of an Elman RNN: `torch.nn.RNN(nonlinearity=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Nonlinearity {
    /// `tanh` (torch's default).
    #[default]
    Tanh,
    /// `relu`.
    Relu,
}

impl Nonlinearity {
    /// The name torch uses: `"tanh"` or `"relu"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Nonlinearity::Tanh => "tanh",
            Nonlinearity::Relu => "relu",
        }
    }
}

impl fmt::Display for Nonlinearity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Nonlinearity {
    type Err = Error;

    /// Parses `"tanh"` or `"relu"` (exactly, as torch does).
    ///
    /// ```
    /// use recurrent::Nonlinearity;
    /// assert_eq!("relu".parse::<Nonlinearity>().unwrap(), Nonlinearity::Relu);
    /// assert!("sigmoid".parse::<Nonlinearity>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tanh" => Ok(Nonlinearity::Tanh),
            "relu" => Ok(Nonlinearity::Relu),
            other => Err(Error::UnknownNonlinearity(other.to_string())),
        }
    }
}

/// The most parameters a configuration may have (2^36, 256 GiB of f32): larger sizes are
/// a mistake, and their element counts could overflow.
pub const MAX_PARAMETERS: usize = 1 << 36;

/// Which recurrent layer: torch's `RNN` (Elman, with a [`Nonlinearity`]), `LSTM` or `GRU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    /// `torch.nn.RNN`: one gate, `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
    #[default]
    Rnn,
    /// `torch.nn.LSTM`: gates i, f, g, o stacked in that order; optional `proj_size`.
    Lstm,
    /// `torch.nn.GRU`: gates r, z, n stacked in that order.
    Gru,
}

impl Kind {
    /// How many gates are stacked in `weight_ih`/`weight_hh`: 1, 4 or 3.
    pub fn gate_count(self) -> usize {
        match self {
            Kind::Rnn => 1,
            Kind::Lstm => 4,
            Kind::Gru => 3,
        }
    }

    /// This crate's type for the kind: `"Rnn"`, `"Lstm"`, `"Gru"`.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Rnn => "Rnn",
            Kind::Lstm => "Lstm",
            Kind::Gru => "Gru",
        }
    }

    /// torch's class name: `"RNN"`, `"LSTM"`, `"GRU"`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rnn => "RNN",
            Kind::Lstm => "LSTM",
            Kind::Gru => "GRU",
        }
    }

    /// The kind whose `weight_hh` has `gates` times H rows, if any.
    pub fn from_gate_count(gates: usize) -> Option<Kind> {
        match gates {
            1 => Some(Kind::Rnn),
            4 => Some(Kind::Lstm),
            3 => Some(Kind::Gru),
            _ => None,
        }
    }
}

/// The options of torch's recurrent layers (`RNNBase`): `torch.nn.RNN(input_size,
/// hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
/// dropout=0.0, bidirectional=False)`, and the same for `LSTM` (plus `proj_size=0`) and
/// `GRU`, selected by [`Kind`].
///
/// Build one with [`RnnConfig::new`] (torch's defaults) and the chained setters:
///
/// ```
/// use recurrent::{Nonlinearity, RnnConfig};
/// let config = RnnConfig::new(10, 20)
///     .num_layers(2)
///     .nonlinearity(Nonlinearity::Relu)
///     .bidirectional(true);
/// config.validate().unwrap();
/// assert_eq!(config.num_directions(), 2);
/// assert_eq!(config.to_string(), "RNN(10, 20, num_layers=2, nonlinearity='relu', bidirectional=True)");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RnnConfig {
    /// RNN, LSTM or GRU.
    pub kind: Kind,
    /// Features of each input step (`H_in`).
    pub input_size: usize,
    /// Features of the hidden state (`H`).
    pub hidden_size: usize,
    /// Number of stacked layers; layer k>0 reads layer k-1's output sequence.
    pub num_layers: usize,
    /// `tanh` or `relu`.
    pub nonlinearity: Nonlinearity,
    /// Whether the layers have `bias_ih`/`bias_hh`.
    pub bias: bool,
    /// Input and output are `(N, L, F)` instead of `(L, N, F)`; never applies to h_0/h_n.
    pub batch_first: bool,
    /// Dropout probability on the outputs of every layer but the last, in training only.
    pub dropout: f64,
    /// Whether each layer also runs over the sequence backwards.
    pub bidirectional: bool,
    /// LSTM only: when > 0, `h` is projected to this size by `weight_hr` (0: none).
    pub proj_size: usize,
}

impl RnnConfig {
    /// torch's defaults for the given sizes: one layer, tanh, with bias, sequence-first,
    /// no dropout, one direction.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        RnnConfig {
            kind: Kind::Rnn,
            input_size,
            hidden_size,
            num_layers: 1,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
        }
    }

    /// `torch.nn.LSTM(input_size, hidden_size)` with torch's defaults.
    pub fn lstm(input_size: usize, hidden_size: usize) -> Self {
        RnnConfig {
            kind: Kind::Lstm,
            ..Self::new(input_size, hidden_size)
        }
    }

    /// `torch.nn.GRU(input_size, hidden_size)` with torch's defaults.
    pub fn gru(input_size: usize, hidden_size: usize) -> Self {
        RnnConfig {
            kind: Kind::Gru,
            ..Self::new(input_size, hidden_size)
        }
    }

    /// Sets `proj_size` (LSTM only).
    pub fn proj_size(mut self, proj_size: usize) -> Self {
        self.proj_size = proj_size;
        self
    }

    /// The size of `h` (and of each direction's output): `proj_size` if set, else
    /// `hidden_size`.
    pub fn output_hidden_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Rows of `weight_ih`/`weight_hh`: gates x `hidden_size`.
    pub fn gate_size(&self) -> usize {
        self.kind.gate_count() * self.hidden_size
    }

    /// Sets `num_layers`.
    pub fn num_layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// Sets `nonlinearity`.
    pub fn nonlinearity(mut self, nonlinearity: Nonlinearity) -> Self {
        self.nonlinearity = nonlinearity;
        self
    }

    /// Sets `bias`.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets `batch_first`.
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// Sets `dropout`.
    pub fn dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets `bidirectional`.
    pub fn bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }

    /// `D`: 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of the input of layer `layer`: `input_size` for layer 0, else `D * H_out`
    /// (`H_out` = [`RnnConfig::output_hidden_size`]).
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.num_directions() * self.output_hidden_size()
        }
    }

    /// Width of the output sequence: `D * H_out`.
    pub fn output_size(&self) -> usize {
        self.num_directions() * self.output_hidden_size()
    }

    /// Checks the options as torch's constructor does.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed, got {}",
                self.dropout
            )));
        }
        if self.input_size == 0 {
            return Err(Error::Config(
                "input_size must be greater than zero".to_string(),
            ));
        }
        if self.hidden_size == 0 {
            return Err(Error::Config(
                "hidden_size must be greater than zero".to_string(),
            ));
        }
        if self.num_layers == 0 {
            return Err(Error::Config(
                "num_layers must be greater than zero".to_string(),
            ));
        }
        // Every parameter must be allocatable: sizes whose element counts overflow are
        // refused here rather than failing later.
        let per_layer = |input: usize| -> Option<usize> {
            let gates = self.kind.gate_count().checked_mul(self.hidden_size)?;
            let h_out = if self.proj_size > 0 {
                self.proj_size
            } else {
                self.hidden_size
            };
            let weights = gates.checked_mul(input.checked_add(h_out)?.checked_add(2)?)?;
            weights.checked_add(self.proj_size.checked_mul(self.hidden_size)?)
        };
        let total = (|| -> Option<usize> {
            let h_out = if self.proj_size > 0 {
                self.proj_size
            } else {
                self.hidden_size
            };
            let deeper = self.num_directions().checked_mul(h_out)?;
            let first = per_layer(self.input_size)?;
            let rest = per_layer(deeper)?.checked_mul(self.num_layers - 1)?;
            first.checked_add(rest)?.checked_mul(self.num_directions())
        })();
        match total {
            Some(n) if n <= MAX_PARAMETERS => {}
            _ => {
                return Err(Error::Config(format!(
                    "input_size={}, hidden_size={}, num_layers={}, proj_size={} make more than {MAX_PARAMETERS} parameters",
                    self.input_size, self.hidden_size, self.num_layers, self.proj_size
                )))
            }
        }
        if self.proj_size > 0 && self.kind != Kind::Lstm {
            return Err(Error::Config(
                "proj_size argument is only supported for LSTM, not RNN or GRU".to_string(),
            ));
        }
        if self.proj_size >= self.hidden_size && self.proj_size > 0 {
            return Err(Error::Config(format!(
                "proj_size has to be smaller than hidden_size: got proj_size={} and hidden_size={}",
                self.proj_size, self.hidden_size
            )));
        }
        Ok(())
    }
}

/// Formats like torch's `repr(nn.RNN(...))`: only options that differ from the defaults.
impl fmt::Display for RnnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}({}, {}",
            self.kind.name(),
            self.input_size,
            self.hidden_size
        )?;
        if self.proj_size != 0 {
            write!(f, ", proj_size={}", self.proj_size)?;
        }
        if self.num_layers != 1 {
            write!(f, ", num_layers={}", self.num_layers)?;
        }
        if self.kind == Kind::Rnn && self.nonlinearity != Nonlinearity::Tanh {
            write!(f, ", nonlinearity='{}'", self.nonlinearity)?;
        }
        if !self.bias {
            write!(f, ", bias=False")?;
        }
        if self.batch_first {
            write!(f, ", batch_first=True")?;
        }
        if self.dropout != 0.0 {
            write!(f, ", dropout={}", self.dropout)?;
        }
        if self.bidirectional {
            write!(f, ", bidirectional=True")?;
        }
        write!(f, ")")
    }
}
