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

/// The options of `torch.nn.RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh',
/// bias=True, batch_first=False, dropout=0.0, bidirectional=False)`.
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
}

impl RnnConfig {
    /// torch's defaults for the given sizes: one layer, tanh, with bias, sequence-first,
    /// no dropout, one direction.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        RnnConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
        }
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

    /// Width of the input of layer `layer`: `input_size` for layer 0, else `D * hidden_size`.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.num_directions() * self.hidden_size
        }
    }

    /// Width of the output sequence: `D * hidden_size`.
    pub fn output_size(&self) -> usize {
        self.num_directions() * self.hidden_size
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
        Ok(())
    }
}

/// Formats like torch's `repr(nn.RNN(...))`: only options that differ from the defaults.
impl fmt::Display for RnnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RNN({}, {}", self.input_size, self.hidden_size)?;
        if self.num_layers != 1 {
            write!(f, ", num_layers={}", self.num_layers)?;
        }
        if self.nonlinearity != Nonlinearity::Tanh {
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
