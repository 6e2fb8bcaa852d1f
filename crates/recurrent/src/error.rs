//! The library's error type. Every message says what was expected and what came.

use std::path::PathBuf;

use crate::element::Dtype;
use crate::kernels::isa::Isa;

/// Formats a shape the way torch prints sizes: `(2, 3, 4)`.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if inner.len() == 1 {
        format!("({},)", inner[0])
    } else {
        format!("({})", inner.join(", "))
    }
}

/// `an RNN`, `an LSTM`, `a GRU`.
fn with_article(name: &str) -> String {
    match name {
        "GRU" => format!("a {name}"),
        _ => format!("an {name}"),
    }
}

/// This crate's type for torch's class name: `Rnn`, `Lstm`, `Gru`.
fn type_name(name: &str) -> &'static str {
    match name {
        "LSTM" => "Lstm",
        "GRU" => "Gru",
        _ => "Rnn",
    }
}

/// Python's `repr` of a float (`1e-05`, `-0.1`, `1.0`, `inf`, `nan`), so that messages
/// read exactly as torch's.
pub(crate) fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // Rust and Python both print the shortest digits that round-trip; only the layout
    // differs. Python uses scientific notation when the exponent is < -4 or >= 16.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if x == 0.0 || (-4..16).contains(&exponent) {
        let plain = format!("{x}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// [`Error::Isa`]'s message: the variable, the value, and what this CPU supports.
fn isa_message(requested: &str, available: &[Isa]) -> String {
    let names: Vec<&str> = available.iter().map(|isa| isa.name()).collect();
    let names = names.join(", ");
    let var = Isa::ENV_VAR;
    if Isa::from_name(requested).is_some() {
        format!(
            "{var}={requested}: this CPU lacks it (it supports {names}); unset {var} to run \
             the best path it has"
        )
    } else {
        format!("{var}={requested}: expected avx512, avx2 or portable (this CPU supports {names})")
    }
}

/// Everything that can go wrong when building, loading or running a layer.
///
/// Messages follow torch's wording where torch has one, so a PyTorch user recognises them.
///
/// `Debug` prints the message too (as `Display` does), so that a `main` returning
/// `Result<(), recurrent::Error>` or `Box<dyn Error>` shows torch's wording, not the
/// variant's fields. Match on the variants to handle a case.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A constructor option is out of range (zero sizes, dropout outside [0, 1], ...).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The nonlinearity is neither `tanh` nor `relu`.
    #[error("unknown nonlinearity '{0}': expected 'tanh' or 'relu'")]
    UnknownNonlinearity(String),

    /// The input is not 2-D (unbatched) or 3-D (batched).
    #[error(
        "expected input to be 2-D (L, H_in) or 3-D (L, N, H_in), got {got}-D tensor of shape {}",
        fmt_shape(shape)
    )]
    InputRank {
        /// Rank of the tensor that came.
        got: usize,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// The input's last dimension is not `input_size`.
    #[error("input.size(-1) must be equal to input_size: expected {expected}, got {got}")]
    InputSize {
        /// `input_size` of the layer.
        expected: usize,
        /// The input's last dimension.
        got: usize,
    },

    /// The input has no time steps.
    #[error(
        "expected sequence length to be larger than 0, got input of shape {}",
        fmt_shape(shape)
    )]
    EmptySequence {
        /// The input's shape.
        shape: Vec<usize>,
    },

    /// h_0 is 3-D for an unbatched input or 2-D for a batched one.
    #[error("for {} {input_rank}-D input, h_0 should also be {input_rank}-D but got {hidden_rank}-D tensor", if *input_rank == 2 { "unbatched" } else { "batched" })]
    HiddenRank {
        /// Rank of the input.
        input_rank: usize,
        /// Rank of h_0.
        hidden_rank: usize,
    },

    /// An LSTM's c_0 is 3-D for an unbatched input or 2-D for a batched one.
    #[error("for {} {input_rank}-D input, c_0 should also be {input_rank}-D but got {cell_rank}-D tensor", if *input_rank == 2 { "unbatched" } else { "batched" })]
    CellRank {
        /// Rank of the input.
        input_rank: usize,
        /// Rank of c_0.
        cell_rank: usize,
    },

    /// A gradient given to a backward pass does not have the shape of the forward result
    /// it belongs to.
    #[error(
        "{what}: expected shape {} (that of the forward's {what_of}), got {}",
        fmt_shape(expected),
        fmt_shape(got)
    )]
    GradientShape {
        /// Which gradient (`grad_output`, `grad_h_n`).
        what: &'static str,
        /// Which forward result it is the gradient of.
        what_of: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape that came.
        got: Vec<usize>,
    },

    /// h_0 has the wrong shape.
    #[error("expected hidden size {}, got {}", fmt_shape(expected), fmt_shape(got))]
    HiddenShape {
        /// `(D * num_layers, N, H)` or `(D * num_layers, H)` for unbatched input.
        expected: Vec<usize>,
        /// The shape that came.
        got: Vec<usize>,
    },

    /// An LSTM's c_0 has the wrong shape.
    #[error(
        "expected cell state (c_0) size {}, got {}",
        fmt_shape(expected),
        fmt_shape(got)
    )]
    CellShape {
        /// `(D * num_layers, N, H)`, or `(D * num_layers, H)` for unbatched input.
        expected: Vec<usize>,
        /// The shape that came.
        got: Vec<usize>,
    },

    /// Two tensors that must share a dtype do not (e.g. input and h_0 files).
    #[error("{what}: expected dtype {expected}, got {got}")]
    DtypeMismatch {
        /// Which tensor.
        what: String,
        /// The dtype it must have.
        expected: Dtype,
        /// The dtype it has.
        got: String,
    },

    /// A parameter name that this layer does not have.
    #[error("unknown parameter '{name}': this layer's parameters are {}", known.join(", "))]
    UnknownParameter {
        /// The name asked for.
        name: String,
        /// The layer's parameter names, in torch order.
        known: Vec<String>,
    },

    /// A parameter (given or loaded) has the wrong shape. An empty `expected` means "a
    /// 2-D matrix" (when the sizes themselves are inferred from that tensor).
    #[error(
        "parameter '{name}' must have shape {}, got {}",
        if expected.is_empty() { "(rows, columns), a 2-D matrix".to_string() } else { fmt_shape(expected) },
        fmt_shape(got)
    )]
    ParameterShape {
        /// Parameter name (with any prefix).
        name: String,
        /// Its expected shape.
        expected: Vec<usize>,
        /// The shape that came.
        got: Vec<usize>,
    },

    /// A parameter the configuration needs is missing from a state dict.
    #[error("missing parameter '{name}' (a {config} needs {}; found {})", expected.join(", "), if found.is_empty() { "none".to_string() } else { found.join(", ") })]
    MissingParameter {
        /// The missing name (with prefix).
        name: String,
        /// Description of the inferred configuration.
        config: String,
        /// Every name the configuration needs.
        expected: Vec<String>,
        /// The RNN parameter names that were found.
        found: Vec<String>,
    },

    /// A state dict holds a parameter that the inferred configuration does not use.
    #[error("unexpected parameter '{name}' for a {config} (expected only {})", expected.join(", "))]
    UnexpectedParameter {
        /// The name found.
        name: String,
        /// Description of the inferred configuration.
        config: String,
        /// Every name the configuration needs.
        expected: Vec<String>,
    },

    /// A tensor in a state dict has a dtype the layers cannot use.
    #[error("tensor '{name}' has dtype {got}, expected a float dtype (F16, BF16, F32 or F64)")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// Its dtype as safetensors names it.
        got: String,
    },

    /// No `weight_ih_l0` was found under the prefix asked for (or under any prefix).
    #[error("no recurrent layer found{}: expected a tensor named '{}weight_ih_l0'; {}", match prefix { Some(p) => format!(" under prefix '{p}'"), None => String::new() }, prefix.as_deref().unwrap_or("<prefix>"), if !candidates.is_empty() { format!("prefixes that hold one: {}", candidates.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")) } else if names.is_empty() { "the file holds no tensors".to_string() } else { format!("the file holds: {}", names.join(", ")) })]
    NoRnnFound {
        /// The prefix asked for, if any.
        prefix: Option<String>,
        /// Prefixes under which a layer was found (empty if none).
        candidates: Vec<String>,
        /// Tensor names in the file (the first few).
        names: Vec<String>,
    },

    /// A tensor asked for by name is not in the file.
    #[error("no tensor named '{name}' in {}", path.display())]
    MissingTensor {
        /// The name asked for.
        name: String,
        /// The file.
        path: PathBuf,
    },

    /// Several RNNs are in one state dict and no prefix was given.
    #[error("state dict holds several recurrent layers; pass a prefix, one of: {}", candidates.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", "))]
    AmbiguousPrefix {
        /// The candidate prefixes.
        candidates: Vec<String>,
    },

    /// The state dict is of a recurrent kind this version cannot run yet.
    #[error("{0}")]
    UnsupportedModel(String),

    /// A metadata entry has a value that cannot be used.
    #[error("metadata '{key}' = '{value}': expected {expected}")]
    Metadata {
        /// Key.
        key: String,
        /// Value found.
        value: String,
        /// What was expected.
        expected: String,
    },

    /// A file holds another kind of layer than the type asked to load it
    /// (`Rnn::load` on an LSTM's state dict, ...).
    #[error(
        "{}: holds {} ({config}), not {}; load it with {}::load, or with recurrent::load, which returns any kind",
        path.display(), with_article(found), with_article(wanted), type_name(found)
    )]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// torch's class name of the layer the file holds: `RNN`, `LSTM` or `GRU`.
        found: &'static str,
        /// torch's class name of the kind asked for.
        wanted: &'static str,
        /// The configuration the file holds, as torch prints it.
        config: String,
    },

    /// A `torch.save` file whose pickle names a Python global other than those torch
    /// needs to rebuild tensors and plain containers (what `torch.load(weights_only=True)`
    /// accepts): only running the file's code could build what it holds, and this
    /// library never runs it. A whole module saved with `torch.save(model)` is one such
    /// file; save `model.state_dict()` instead.
    #[error(
        "{}: refused: it holds a {global} object, which only running the file's code could build; recurrent reads tensors and plain containers only (what torch.load(weights_only=True) accepts) and never runs a file's code{}",
        path.display(),
        if global.starts_with("torch.nn.") {
            " (a whole module saved with torch.save(model): save model.state_dict() instead)"
        } else {
            ""
        }
    )]
    PickleGlobal {
        /// The file.
        path: PathBuf,
        /// The global, as `module.name` (`posix.system`, `torch.nn.modules.rnn.LSTM`).
        global: String,
    },

    /// A file could not be parsed.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    // --- packed sequences (`crate::packed`) -------------------------------------------
    /// `pack_padded_sequence` / `pack_sequence` got an input with no elements.
    #[error(
        "cannot pack empty tensors: expected an input with at least one element, got shape {}",
        fmt_shape(shape)
    )]
    EmptyPack {
        /// The input's shape, in the caller's axis order.
        shape: Vec<usize>,
    },

    /// There is not exactly one length per batch element.
    #[error("expected `lengths.len()` to be equal to batch_size, but got {lengths} (batch_size={batch_size})")]
    LengthsCount {
        /// How many lengths came.
        lengths: usize,
        /// The input's batch size.
        batch_size: usize,
    },

    /// A sequence length is 0.
    #[error("expected the length of all samples to be greater than 0, but lengths[{index}] = 0")]
    ZeroLength {
        /// Position of the zero in the caller's `lengths`.
        index: usize,
    },

    /// `enforce_sorted` is true but the lengths do not decrease.
    #[error(
        "expected `lengths` sorted in decreasing order when `enforce_sorted` is true, but \
         lengths[{index}] = {length} < lengths[{}] = {next}; pass `enforce_sorted = false` to \
         have them sorted for you",
        index + 1
    )]
    LengthsNotSorted {
        /// Position of the first length of the first increasing pair.
        index: usize,
        /// `lengths[index]`.
        length: usize,
        /// `lengths[index + 1]`, the larger one.
        next: usize,
    },

    /// A sequence length is greater than the padded input's sequence length (torch accepts
    /// this and fails later, when the packed sequence is used).
    #[error(
        "expected every length to be at most the input's sequence length {seq_len}, but \
         lengths[{index}] = {length}"
    )]
    LengthExceedsInput {
        /// Position of the length in the caller's `lengths`.
        index: usize,
        /// The length.
        length: usize,
        /// The input's sequence length `L`.
        seq_len: usize,
    },

    /// `pad_packed_sequence`'s `total_length` is shorter than the longest sequence.
    #[error(
        "expected total_length to be at least the length of the longest sequence in input, \
         but got total_length={total_length} and max sequence length being {max_length}"
    )]
    TotalLength {
        /// The `total_length` asked for.
        total_length: usize,
        /// The longest sequence's length.
        max_length: usize,
    },

    /// The parts given to `PackedSequence::new` do not describe a packed batch.
    #[error("invalid PackedSequence: {0}")]
    InvalidPackedSequence(String),

    /// `pad_sequence` / `pack_sequence` got no sequences.
    #[error("received an empty list of sequences: expected at least one")]
    NoSequences,

    /// The sequences given to `pad_sequence` / `pack_sequence` differ in feature size.
    #[error(
        "expected every sequence to have {expected} features (as sequence 0 has), but \
         sequence {index} has {got}"
    )]
    SequenceFeatures {
        /// Position of the sequence that differs.
        index: usize,
        /// Features of sequence 0.
        expected: usize,
        /// Features of sequence `index`.
        got: usize,
    },

    /// A computation or a layer needs more memory than can be allocated (the sizes a
    /// caller gives are checked before anything is computed or changed). torch says
    /// `DefaultCPUAllocator: not enough memory: you tried to allocate N bytes`.
    #[error("not enough memory: {what} needs {} bytes, which cannot be allocated", bytes.map_or_else(|| "more than 2^64".to_string(), |b| b.to_string()))]
    OutOfMemory {
        /// What the memory is for (`"the forward pass of RNN(4, 8)"`, ...).
        what: String,
        /// The bytes asked for; `None` when the count itself overflows 64 bits.
        bytes: Option<u64>,
    },

    /// The `RECURRENT_ISA` environment variable names no kernel path (`avx512`, `avx2`,
    /// `portable`), or one this CPU lacks. Every call that computes (forward passes,
    /// backward passes, streams, cells, the reference loops) returns it, as does
    /// [`crate::isa()`]; unset the variable to run the best path the CPU has.
    #[error("{}", isa_message(requested, available))]
    Isa {
        /// The value as given (non-UTF-8 bytes replaced).
        requested: String,
        /// The paths this CPU supports, best first.
        available: Vec<Isa>,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    // --- cells (`crate::cells`) ---------------------------------------------------------
    /// A cell's input is neither 1-D `(H_in,)` (unbatched) nor 2-D `(N, H_in)` (batched).
    /// (A cell's input of the wrong width is [`Error::InputSize`].)
    #[error(
        "{cell}: Expected input to be 1D or 2D, got {got}D instead (shape {})",
        fmt_shape(shape)
    )]
    CellInputRank {
        /// torch's class name: `"RNNCell"`, `"LSTMCell"` or `"GRUCell"`.
        cell: &'static str,
        /// Rank of the input that came.
        got: usize,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// A cell's state (`hx`, or an LSTM cell's `cx`) does not have its input's rank: 1-D
    /// `(H,)` with an unbatched input, 2-D `(N, H)` with a batched one. (torch reports a
    /// 2-D state of an unbatched input as 3-D, after adding the batch axis; this says
    /// what the caller passed.)
    #[error(
        "{cell}: Expected {input_rank}D hidden{hidden} ({}: {}) for {input_rank}D ({}) input, but got {got}D tensor of shape {}",
        if *hidden == 0 { "hx" } else { "cx" },
        if *input_rank == 1 { "hidden_size" } else { "batch x hidden_size" },
        if *input_rank == 1 { "unbatched" } else { "batched" },
        fmt_shape(shape)
    )]
    CellStateRank {
        /// torch's class name: `"RNNCell"`, `"LSTMCell"` or `"GRUCell"`.
        cell: &'static str,
        /// torch's label of the state: 0 for `hx`, 1 for an LSTM cell's `cx`.
        hidden: usize,
        /// Rank of the input (1 or 2).
        input_rank: usize,
        /// Rank of the state that came.
        got: usize,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// A cell's state has a different batch size from its input.
    #[error(
        "Input batch size {input_batch} doesn't match hidden{hidden} ({}) batch size {got}",
        if *hidden == 0 { "hx" } else { "cx" }
    )]
    CellBatchSize {
        /// torch's label of the state: 0 for `hx`, 1 for an LSTM cell's `cx`.
        hidden: usize,
        /// The input's batch size `N`.
        input_batch: usize,
        /// The state's batch size.
        got: usize,
    },

    /// A cell's state is not `hidden_size` wide.
    #[error(
        "hidden{hidden} ({}) has inconsistent hidden_size: got {got}, expected {expected}",
        if *hidden == 0 { "hx" } else { "cx" }
    )]
    CellHiddenSize {
        /// torch's label of the state: 0 for `hx`, 1 for an LSTM cell's `cx`.
        hidden: usize,
        /// The cell's `hidden_size`.
        expected: usize,
        /// The state's last dimension.
        got: usize,
    },

    // --- optimizers (`crate::optim`) ---------------------------------------------------
    /// An optimizer option is out of range; the message is torch's `ValueError`
    /// (`Invalid learning rate: -0.1`, ...).
    #[error("{optimizer}: {message}")]
    OptimizerOption {
        /// torch's class name: `"SGD"`, `"Adam"` or `"AdamW"`.
        optimizer: &'static str,
        /// torch's message.
        message: String,
    },

    /// A gradient given to an optimizer step does not have its parameter's shape.
    #[error(
        "gradient of parameter '{name}' has shape {}, expected the parameter's shape {}",
        fmt_shape(got),
        fmt_shape(expected)
    )]
    GradientParameterShape {
        /// The parameter's name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The gradient's shape.
        got: Vec<usize>,
    },

    /// An optimizer's stored state for a parameter (momentum buffer, Adam's moments) has
    /// another shape than the parameter now has: the state belongs to another model.
    #[error(
        "the optimizer's state for parameter '{name}' has shape {}, but the parameter has shape {}: the state was built for another model; call reset() or use a new optimizer",
        fmt_shape(got),
        fmt_shape(expected)
    )]
    OptimizerStateShape {
        /// The parameter's name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The stored state's shape.
        got: Vec<usize>,
    },

    /// An optimizer step got two gradients for one parameter.
    #[error("parameter '{name}' has more than one gradient in this step: expected at most one")]
    DuplicateGradient {
        /// The parameter's name.
        name: String,
    },

    /// `clip_grad_norm_` with `error_if_nonfinite` found a NaN or infinite total norm.
    #[error(
        "The total norm of order {} for gradients from `parameters` is non-finite, so it \
         cannot be clipped. To disable this error and scale the gradients by the non-finite \
         norm anyway, set `error_if_nonfinite=False`",
        py_repr(*norm_type)
    )]
    NonFiniteNorm {
        /// The norm's order `p`.
        norm_type: f64,
        /// The total norm found (NaN or infinite).
        total_norm: f64,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
