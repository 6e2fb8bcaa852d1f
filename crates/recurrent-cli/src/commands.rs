//! The subcommands. Each returns `Err(one-line message)` on failure.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, Axis};
use recurrent::io::npy::{self, NpyArray};
use recurrent::io::safetensors::{self as st, StateDict};
use recurrent::io::OutputSet;
use recurrent::{Error, Float, Gru, Kind, Lstm, Recurrent, RecurrentStream, Rnn, RnnConfig};

use crate::{BackwardArgs, DtypeArg, ForwardArgs, InitArgs, InspectArgs, RunArgs};

type CliResult = Result<(), String>;

/// `println!` that stops quietly when stdout is closed (e.g. piped into `head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            return Err(format!("cannot write to stdout: {e}"));
        }
    }};
}

fn load_dict(path: &Path, prefix: Option<&str>) -> Result<(StateDict, String, RnnConfig), String> {
    let dict = StateDict::read(path).map_err(|e| e.to_string())?;
    let prefix = dict
        .resolve_prefix(prefix)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let config = dict
        .infer_config(&prefix)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((dict, prefix, config))
}

/// Refuses an output that is also one of the command's input files: replacing it would
/// lose the input (and a failure must leave every input as it was).
fn check_outputs(inputs: &[(&str, Option<&Path>)], outputs: &[(&str, Option<&Path>)]) -> CliResult {
    for (out_flag, out) in outputs {
        let Some(out) = out else { continue };
        for (in_flag, input) in inputs {
            if let Some(input) = input {
                if recurrent::io::same_file(out, input) {
                    return Err(format!(
                        "{}: {out_flag} names the same file as {in_flag}; write the results to another path",
                        out.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The input files of `run` and `backward`, with their flags.
fn forward_inputs(args: &ForwardArgs) -> Vec<(&'static str, Option<&Path>)> {
    vec![
        ("--model", Some(args.model.as_path())),
        ("--input", Some(args.input.as_path())),
        ("--h0", args.h0.as_deref()),
        ("--c0", args.c0.as_deref()),
        ("--lengths", args.lengths.as_deref()),
    ]
}

/// `recurrent run`.
pub fn run(args: RunArgs) -> CliResult {
    check_outputs(
        &forward_inputs(&args.forward),
        &[
            ("--output", Some(args.output.as_path())),
            ("--hn", args.hn.as_deref()),
            ("--cn", args.cn.as_deref()),
        ],
    )?;
    let loaded = load_forward(&args.forward, ("--cn", args.cn.is_some()))?;
    match &loaded.input {
        NpyArray::F32(x) => run_typed::<f32>(&args, &loaded, x),
        NpyArray::F64(x) => run_typed::<f64>(&args, &loaded, x),
    }
}

/// What `run` and `backward` read before computing.
struct Loaded {
    input: NpyArray,
    dict: StateDict,
    /// The layer's key prefix in the state dict.
    prefix: String,
    /// The configuration with the flags applied.
    config: RnnConfig,
    lengths: Option<Vec<usize>>,
    /// Where `batch_first`, `nonlinearity` and `dropout` came from.
    sources: Sources,
}

/// Reads the input and the model and applies the flags; `output_flag` is the command's
/// own LSTM-only flag (`--cn`, `--grad-cn`) and whether it was given.
fn load_forward(args: &ForwardArgs, output_flag: (&str, bool)) -> Result<Loaded, String> {
    let input = npy::read_float(&args.input).map_err(|e| e.to_string())?;
    let (dict, prefix, mut config) = load_dict(&args.model, args.prefix.as_deref())?;
    let lengths = apply_flags(&mut config, args, output_flag)?;
    let sources = Sources::of(&dict, &prefix, Some(args));
    Ok(Loaded {
        input,
        dict,
        prefix,
        config,
        lengths,
        sources,
    })
}

/// Where an option's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A command-line flag.
    Flag,
    /// The state dict's metadata (`recurrent init`, `recurrent::io::safetensors::save`
    /// and `save_file(..., metadata=...)` record it).
    Metadata,
    /// Not recorded anywhere: torch's default.
    Default,
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Metadata => "file metadata",
            Source::Default => "torch default — not recorded in the file",
        }
    }
}

/// How to give the unrecorded options `names` (`batch_first`, `nonlinearity`) their
/// non-default values: the flags (`--batch-first / --nonlinearity relu`) and the
/// metadata entries (`"batch_first": "true", ...`).
fn remedy(names: &[&str]) -> (String, String) {
    let (flags, meta): (Vec<&str>, Vec<&str>) = names
        .iter()
        .map(|n| match *n {
            "batch_first" => ("--batch-first", "\"batch_first\": \"true\""),
            _ => ("--nonlinearity relu", "\"nonlinearity\": \"relu\""),
        })
        .unzip();
    (flags.join(" / "), meta.join(", "))
}

/// The sources of the options the tensors cannot show.
struct Sources {
    /// How to record the options: `save it with` for a safetensors file, `re-save the
    /// state dict as safetensors with` for a torch.save or ONNX one.
    resave: &'static str,
    /// The file holds a cell, which has no `batch_first` or `dropout`: `run` feeds it
    /// the sequence in the command's layout ((L, N, H_in), or --batch-first).
    cell: bool,
    batch_first: Source,
    nonlinearity: Source,
    dropout: Source,
}

impl Sources {
    /// From the file's metadata and, for `run` and `backward`, the flags.
    fn of(dict: &StateDict, prefix: &str, args: Option<&ForwardArgs>) -> Sources {
        let source = |flag: bool, key: &str| {
            if flag {
                Source::Flag
            } else if dict.records(key) {
                Source::Metadata
            } else {
                Source::Default
            }
        };
        Sources {
            resave: if dict.format() == recurrent::io::FileFormat::Safetensors {
                "save it with"
            } else {
                "re-save its state dict as safetensors with"
            },
            cell: dict.is_cell(prefix),
            batch_first: source(
                args.is_some_and(|a| a.batch_first.is_some()),
                st::META_BATCH_FIRST,
            ),
            nonlinearity: source(
                args.is_some_and(|a| a.nonlinearity.is_some()),
                st::META_NONLINEARITY,
            ),
            dropout: source(false, st::META_DROPOUT),
        }
    }

    /// `(option, value, source)` for each option that applies to the kind.
    fn listing(&self, config: &RnnConfig) -> Vec<(&'static str, String, Source)> {
        let mut rows = Vec::new();
        if !self.cell || self.batch_first == Source::Flag {
            rows.push((
                "batch_first",
                config.batch_first.to_string(),
                self.batch_first,
            ));
        }
        if config.kind == Kind::Rnn {
            rows.push((
                "nonlinearity",
                config.nonlinearity.to_string(),
                self.nonlinearity,
            ));
        }
        if !self.cell {
            rows.push(("dropout", config.dropout.to_string(), self.dropout));
        }
        rows
    }

    /// One line: `options: batch_first=true (flag), dropout=0 (file metadata)`.
    fn line(&self, config: &RnnConfig) -> String {
        let parts: Vec<String> = self
            .listing(config)
            .into_iter()
            .map(|(name, value, source)| format!("{name}={value} ({})", source.describe()))
            .collect();
        if parts.is_empty() {
            return "options: none (a cell: run feeds it the sequence one step at a time)"
                .to_string();
        }
        format!("options: {}", parts.join(", "))
    }

    /// The options whose torch default was assumed although they change the result:
    /// `batch_first` for a batched (3-D) input, `nonlinearity` for an RNN.
    fn assumed(&self, config: &RnnConfig, input_ndim: usize) -> Vec<(&'static str, String)> {
        let mut assumed = Vec::new();
        if self.batch_first == Source::Default && input_ndim == 3 && !self.cell {
            assumed.push(("batch_first", config.batch_first.to_string()));
        }
        if self.nonlinearity == Source::Default && config.kind == Kind::Rnn {
            assumed.push(("nonlinearity", config.nonlinearity.to_string()));
        }
        assumed
    }

    /// The warning `run` and `backward` print when [`Sources::assumed`] is not empty.
    fn warning(&self, model: &Path, config: &RnnConfig, input_ndim: usize) -> Option<String> {
        let assumed = self.assumed(config, input_ndim);
        if assumed.is_empty() {
            return None;
        }
        let names: Vec<&str> = assumed.iter().map(|(n, _)| *n).collect();
        let values: Vec<String> = assumed.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let (flags, meta) = remedy(&names);
        Some(format!(
            "warning: {} does not record {}; using torch's default{} {}. If the model was built otherwise, pass {flags} (or {} save_file(sd, path, metadata={{{meta}}}))",
            model.display(),
            names.join(" or "),
            if names.len() > 1 { "s" } else { "" },
            values.join(", "),
            self.resave,
        ))
    }

    /// A short note for an error line, when a default was assumed.
    fn note(&self, model: &Path, config: &RnnConfig, input_ndim: usize) -> String {
        let assumed = self.assumed(config, input_ndim);
        if assumed.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = assumed.iter().map(|(n, _)| *n).collect();
        let values: Vec<String> = assumed.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!(
            " (assumed torch's default {}: {} does not record {})",
            values.join(", "),
            model.display(),
            names.join(" or ")
        )
    }
}

/// Applies `--batch-first` and `--nonlinearity` to the inferred configuration, refuses
/// flags that do not fit the model's kind, and reads `--lengths`.
fn apply_flags(
    config: &mut RnnConfig,
    args: &ForwardArgs,
    output_flag: (&str, bool),
) -> Result<Option<Vec<usize>>, String> {
    let lstm_only = [("--c0", args.c0.is_some()), output_flag];
    let holds = |config: &RnnConfig| {
        let article = if config.kind == Kind::Gru { "a" } else { "an" };
        format!(
            "{} holds {article} {}",
            args.model.display(),
            config.kind.name()
        )
    };
    if let Some(batch_first) = args.batch_first {
        config.batch_first = batch_first;
    }
    if let Some(nonlinearity) = args.nonlinearity {
        if config.kind != Kind::Rnn {
            return Err(format!(
                "--nonlinearity applies to RNN models only; {}",
                holds(config)
            ));
        }
        config.nonlinearity = nonlinearity.into();
    }
    if config.kind != Kind::Lstm {
        if let Some((flag, _)) = lstm_only.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag} applies to LSTM models only; {}",
                holds(config)
            ));
        }
    } else if args.h0.is_some() != args.c0.is_some() {
        return Err("--h0 and --c0: an LSTM takes both initial states or neither".to_string());
    }
    args.lengths
        .as_ref()
        .map(|path| npy::read_lengths(path).map_err(|e| e.to_string()))
        .transpose()
}

/// Reads a state file that must have the input's dtype.
fn read_state<T: Float>(
    path: &Option<std::path::PathBuf>,
    what: &str,
) -> Result<Option<ArrayD<T>>, String> {
    match path {
        Some(path) => Some(npy::read::<T>(path).map_err(|e| match e {
            Error::DtypeMismatch { got, .. } => format!(
                "{}: {what} must have the input's dtype {}, got {got}",
                path.display(),
                T::DTYPE
            ),
            e => e.to_string(),
        }))
        .transpose(),
        None => Ok(None),
    }
}

/// A file's path for an error line (empty when absent).
fn path_of(path: &Option<std::path::PathBuf>) -> String {
    path.as_ref()
        .map_or(String::new(), |p| p.display().to_string())
}

/// A forward's error as one line that names the file it is about: the state or lengths
/// file it concerns, or else the input, with the model's description.
fn forward_error(e: &Error, args: &ForwardArgs, description: &str) -> String {
    match e {
        Error::HiddenRank { .. } | Error::HiddenShape { .. } if args.h0.is_some() => {
            format!("{}: {e}", path_of(&args.h0))
        }
        Error::CellShape { .. } | Error::CellRank { .. } if args.c0.is_some() => {
            format!("{}: {e}", path_of(&args.c0))
        }
        Error::LengthsCount { .. }
        | Error::ZeroLength { .. }
        | Error::LengthExceedsInput { .. } => format!("{}: {e}", path_of(&args.lengths)),
        _ => format!("{}: {e} (model: {description})", args.input.display()),
    }
}

/// Computes in the input's dtype `T` (the model's tensors are converted to it).
fn run_typed<T: Float>(args: &RunArgs, loaded: &Loaded, input: &ArrayD<T>) -> CliResult {
    let (dict, prefix, config) = (&loaded.dict, loaded.prefix.as_str(), loaded.config.clone());
    let lengths = loaded.lengths.as_deref();
    let model = args.forward.model.as_path();
    let note = loaded.sources.note(model, &config, input.ndim());
    let model_err = |e: Error| format!("{}: {e}", model.display());
    let h0 = read_state::<T>(&args.forward.h0, "h0")?;
    let c0 = read_state::<T>(&args.forward.c0, "c0")?;
    let (x, h, c) = (
        input.view(),
        h0.as_ref().map(|a| a.view()),
        c0.as_ref().map(|a| a.view()),
    );
    let description = config.to_string();
    let chunk = args.chunk_size;
    if chunk.is_some() && lengths.is_some() {
        return Err(
            "--chunk-size: cannot be combined with --lengths (a padded batch runs whole)"
                .to_string(),
        );
    }
    let result = match config.kind {
        Kind::Rnn => {
            let rnn: Rnn<T> = dict.load_rnn(prefix, config).map_err(model_err)?;
            match (lengths, chunk) {
                (Some(l), _) => rnn.forward_padded(x, l, h),
                (None, Some(k)) => chunked(&rnn, x, h0.as_ref(), k),
                (None, None) => rnn.forward(x, h),
            }
            .map(|(o, h)| (o, h, None))
        }
        Kind::Lstm => {
            let lstm: Lstm<T> = dict.load_lstm(prefix, config).map_err(model_err)?;
            let state = h.zip(c);
            match (lengths, chunk) {
                (Some(l), _) => lstm.forward_padded(x, l, state),
                (None, Some(k)) => {
                    let owned = state.map(|(h, c)| (h.to_owned(), c.to_owned()));
                    chunked(&lstm, x, owned.as_ref(), k)
                }
                (None, None) => lstm.forward(x, state),
            }
            .map(|(o, (h, c))| (o, h, Some(c)))
        }
        Kind::Gru => {
            let gru: Gru<T> = dict.load_gru(prefix, config).map_err(model_err)?;
            match (lengths, chunk) {
                (Some(l), _) => gru.forward_padded(x, l, h),
                (None, Some(k)) => chunked(&gru, x, h0.as_ref(), k),
                (None, None) => gru.forward(x, h),
            }
            .map(|(o, h)| (o, h, None))
        }
    };
    let (output, h_n, c_n) =
        result.map_err(|e| forward_error(&e, &args.forward, &description) + &note)?;
    // Write everything, or nothing (see recurrent::io::OutputSet).
    let mut set = OutputSet::new();
    let outputs: [(Option<&std::path::PathBuf>, Option<&ArrayD<T>>); 3] = [
        (Some(&args.output), Some(&output)),
        (args.hn.as_ref(), Some(&h_n)),
        (args.cn.as_ref(), c_n.as_ref()),
    ];
    for (path, array) in outputs {
        if let (Some(path), Some(array)) = (path, array) {
            npy::stage(&mut set, path, array).map_err(|e| e.to_string())?;
        }
    }
    let to_stderr = set.writes_stdout();
    set.commit().map_err(|e| e.to_string())?;
    warn(loaded.sources.warning(model, &loaded.config, input.ndim()));
    summary(
        &format!(
            "{description}: output {:?}{}{}",
            output.shape(),
            args.hn
                .as_ref()
                .map(|_| format!(", h_n {:?}", h_n.shape()))
                .unwrap_or_default(),
            match (&args.cn, &c_n) {
                (Some(_), Some(c)) => format!(", c_n {:?}", c.shape()),
                _ => String::new(),
            }
        ),
        to_stderr,
    );
    summary(&loaded.sources.line(&loaded.config), to_stderr);
    Ok(())
}

/// `--chunk-size K`: the input through the layer's stream, `K` steps at a time (the last
/// chunk shorter), so that the working memory is that of `K` steps whatever `L`; the
/// output and final state are one `forward`'s (to rounding: see `recurrent::stream`).
fn chunked<T: Float, L: Recurrent<T>>(
    layer: &L,
    x: ndarray::ArrayViewD<'_, T>,
    state: Option<&L::State>,
    k: usize,
) -> Result<(ArrayD<T>, L::State), Error> {
    let time = Axis(usize::from(x.ndim() == 3 && layer.config().batch_first));
    if x.ndim() < 2 || x.len_of(time) == 0 {
        // What forward says of such an input (torch's message).
        return layer.forward(x, state);
    }
    let mut stream = layer.stream(state)?;
    let mut outputs = Vec::with_capacity(x.len_of(time).div_ceil(k));
    for piece in x.axis_chunks_iter(time, k) {
        outputs.push(stream.feed(piece)?);
    }
    let views: Vec<_> = outputs.iter().map(|o| o.view()).collect();
    let output = ndarray::concatenate(time, &views)
        .map_err(|e| Error::Config(format!("internal error: chunk outputs ({e})")))?;
    let state = stream.state_owned().ok_or_else(|| {
        Error::Config("internal error: a stream that ran has a state".to_string())
    })?;
    Ok((output, state))
}

/// Prints a warning line on stderr.
fn warn(warning: Option<String>) {
    use std::io::Write;
    if let Some(line) = warning {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// Whether an output path names standard output (`-` or `/dev/stdout`).
fn is_stdout(path: &Path) -> bool {
    path == Path::new("-") || path == Path::new("/dev/stdout")
}

/// Prints a command's closing line once its outputs are in place: on stderr when an
/// output went to stdout. A closed or full stdout no longer changes the outcome: the
/// outputs are written, so the command succeeded.
fn summary(line: &str, to_stderr: bool) {
    use std::io::Write;
    let _ = if to_stderr {
        writeln!(std::io::stderr(), "{line}")
    } else {
        writeln!(std::io::stdout(), "{line}")
    };
}

/// `recurrent inspect`.
pub fn inspect(args: InspectArgs) -> CliResult {
    let (dict, prefix, config) = load_dict(&args.model, args.prefix.as_deref())?;
    let dtype = dict
        .dtype(&prefix)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let stored = dict
        .stored_dtype(&prefix)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let rnn = dict
        .load_layers::<f64>(&prefix, config)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let config = rnn.config();
    let cell = dict.is_cell(&prefix);
    if cell {
        out!("{}", cell_repr(config));
        out!("runs as: {config} (the one-layer layer a cell looped over time computes)");
    } else {
        out!("{config}");
    }
    out!("file: {}", args.model.display());
    out!("format: {}", dict.format());
    out!("prefix: {:?}", prefix);
    if stored.to_string() == dtype.to_string() {
        out!("dtype: {dtype}");
    } else {
        out!("dtype: {stored} (widened exactly to {dtype}, or to the input's dtype by run)");
    }
    if cell {
        out!(
            "kind={}Cell input_size={} hidden_size={}{} bias={}",
            config.kind.name(),
            config.input_size,
            config.hidden_size,
            if config.kind == Kind::Rnn {
                format!(" nonlinearity={}", config.nonlinearity)
            } else {
                String::new()
            },
            config.bias
        );
    } else {
        out!(
        "kind={} input_size={} hidden_size={} num_layers={}{} bias={} batch_first={} dropout={} bidirectional={}{}",
        config.kind.name(),
        config.input_size,
        config.hidden_size,
        config.num_layers,
        if config.kind == Kind::Rnn {
            format!(" nonlinearity={}", config.nonlinearity)
        } else {
            String::new()
        },
        config.bias,
        config.batch_first,
        config.dropout,
        config.bidirectional,
        if config.kind == Kind::Lstm {
            format!(" proj_size={}", config.proj_size)
        } else {
            String::new()
        }
    );
    }
    let sources = Sources::of(&dict, &prefix, None);
    out!("options the tensors cannot show:");
    let rows = sources.listing(config);
    if rows.is_empty() {
        out!("  none (a cell: run feeds it the sequence (L, N, H_in) one step at a time)");
    }
    let width = rows
        .iter()
        .map(|(n, v, _)| n.len() + v.len() + 1)
        .max()
        .unwrap_or(0);
    let mut unrecorded = Vec::new();
    for (name, value, source) in rows {
        let setting = format!("{name}={value}");
        out!("  {setting:<width$}  ({})", source.describe());
        if source == Source::Default && name != "dropout" {
            unrecorded.push(name);
        }
    }
    if !unrecorded.is_empty() {
        let (flags, meta) = remedy(&unrecorded);
        out!(
            "  if the model was built otherwise: pass {flags} to run and backward, or {} save_file(sd, path, metadata={{{meta}}})",
            sources.resave
        );
    }
    let others = dict.names().len() - rnn.parameter_names().len();
    if others > 0 {
        out!("other tensors in the file (ignored): {others}");
    }
    out!("parameters ({} values):", rnn.num_parameters());
    // A cell's parameters under the cell's own names (weight_ih, not weight_ih_l0).
    let shown = |name: String| {
        if cell {
            name.strip_suffix("_l0").unwrap_or(&name).to_string()
        } else {
            name
        }
    };
    let width = rnn
        .parameter_names()
        .into_iter()
        .map(|n| shown(n).len())
        .max()
        .unwrap_or(0);
    for (name, tensor) in rnn.named_parameters() {
        let name = shown(name);
        out!("  {name:<width$}  {}", tuple(tensor.shape()));
        if args.values {
            let text = match dtype {
                recurrent::Dtype::F32 => format!("{:.8}", tensor.mapv(|v| v as f32)),
                recurrent::Dtype::F64 => format!("{:.17}", tensor),
            };
            for line in text.lines() {
                out!("    {line}");
            }
        }
    }
    Ok(())
}

/// How torch prints the cell a one-layer configuration stands for: `LSTMCell(10, 20)`,
/// `RNNCell(3, 5, bias=False, nonlinearity=relu)` (torch's `RNNCellBase.extra_repr`).
fn cell_repr(config: &RnnConfig) -> String {
    let mut s = format!(
        "{}Cell({}, {}",
        config.kind.name(),
        config.input_size,
        config.hidden_size
    );
    if !config.bias {
        s.push_str(", bias=False");
    }
    if config.kind == Kind::Rnn && config.nonlinearity != recurrent::Nonlinearity::Tanh {
        s.push_str(&format!(", nonlinearity={}", config.nonlinearity));
    }
    s.push(')');
    s
}

/// A shape as Python prints a tuple: `(8,)`, `(8, 6)`.
fn tuple(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

/// `recurrent init`.
pub fn init(args: InitArgs) -> CliResult {
    let base = match args.mode {
        crate::ModeArg::Rnn => RnnConfig::new(args.input_size, args.hidden_size),
        crate::ModeArg::Lstm => RnnConfig::lstm(args.input_size, args.hidden_size),
        crate::ModeArg::Gru => RnnConfig::gru(args.input_size, args.hidden_size),
    };
    if args.mode != crate::ModeArg::Rnn && args.nonlinearity != crate::NonlinearityArg::Tanh {
        return Err("--nonlinearity applies to --mode rnn only".to_string());
    }
    let config = base
        .proj_size(args.proj_size)
        .num_layers(args.num_layers)
        .nonlinearity(args.nonlinearity.into())
        .bias(!args.no_bias)
        .batch_first(args.batch_first)
        .dropout(args.dropout)
        .bidirectional(args.bidirectional);
    let mut meta = HashMap::new();
    meta.insert("seed".to_string(), args.seed.to_string());
    meta.insert(
        "created_by".to_string(),
        format!("recurrent {}", env!("CARGO_PKG_VERSION")),
    );
    let saved = match args.dtype {
        DtypeArg::F32 => init_typed::<f32>(config, args.seed, &args.output, &meta),
        DtypeArg::F64 => init_typed::<f64>(config, args.seed, &args.output, &meta),
    };
    let rnn_desc = saved?;
    summary(
        &format!("{rnn_desc} -> {}", args.output.display()),
        is_stdout(&args.output),
    );
    Ok(())
}

fn init_typed<T: Float>(
    config: RnnConfig,
    seed: u64,
    path: &Path,
    meta: &HashMap<String, String>,
) -> Result<String, String> {
    let rnn = recurrent::params::Layers::<T>::seeded(config, seed).map_err(|e| {
        // Name the flags, not the Python parameter names.
        let mut message = e.to_string();
        for (field, flag) in [
            ("input_size", "--input-size"),
            ("hidden_size", "--hidden-size"),
            ("num_layers", "--num-layers"),
            ("dropout", "--dropout"),
            ("proj_size", "--proj-size"),
        ] {
            message = message.replace(field, flag);
        }
        message
    })?;
    st::save(&rnn, path, meta).map_err(|e| e.to_string())?;
    Ok(format!(
        "{} ({} parameters, {})",
        rnn.config(),
        rnn.num_parameters(),
        T::DTYPE
    ))
}

/// `recurrent backward`.
pub fn backward(args: BackwardArgs) -> CliResult {
    let mut inputs = forward_inputs(&args.forward);
    inputs.extend([
        ("--grad-output", Some(args.grad_output.as_path())),
        ("--grad-hn", args.grad_hn.as_deref()),
        ("--grad-cn", args.grad_cn.as_deref()),
    ]);
    check_outputs(&inputs, &[("--output", Some(args.output.as_path()))])?;
    let loaded = load_forward(&args.forward, ("--grad-cn", args.grad_cn.is_some()))?;
    match &loaded.input {
        NpyArray::F32(x) => backward_typed::<f32>(&args, &loaded, x),
        NpyArray::F64(x) => backward_typed::<f64>(&args, &loaded, x),
    }
}

fn backward_typed<T: Float>(args: &BackwardArgs, loaded: &Loaded, input: &ArrayD<T>) -> CliResult {
    let (dict, prefix, config) = (&loaded.dict, loaded.prefix.as_str(), loaded.config.clone());
    let lengths = loaded.lengths.as_deref();
    let model = args.forward.model.as_path();
    let note = loaded.sources.note(model, &config, input.ndim());
    let model_err = |e: Error| format!("{}: {e}", model.display());
    let h0 = read_state::<T>(&args.forward.h0, "h0")?;
    let c0 = read_state::<T>(&args.forward.c0, "c0")?;
    let go = read_state::<T>(&Some(args.grad_output.clone()), "grad-output")?;
    let ghn = read_state::<T>(&args.grad_hn, "grad-hn")?;
    let gcn = read_state::<T>(&args.grad_cn, "grad-cn")?;
    let Some(go) = go else {
        return Err("--grad-output: missing".to_string());
    };
    let (x, h, c, g) = (
        input.view(),
        h0.as_ref().map(|a| a.view()),
        c0.as_ref().map(|a| a.view()),
        go.view(),
    );
    let (gh, gc) = (
        ghn.as_ref().map(|a| a.view()),
        gcn.as_ref().map(|a| a.view()),
    );
    let description = config.to_string();
    let result = match config.kind {
        Kind::Rnn => {
            let m: Rnn<T> = dict.load_rnn(prefix, config).map_err(model_err)?;
            match lengths {
                Some(l) => m.backward_padded(x, l, h, g, gh),
                None => m.backward(x, h, g, gh),
            }
        }
        Kind::Gru => {
            let m: Gru<T> = dict.load_gru(prefix, config).map_err(model_err)?;
            match lengths {
                Some(l) => m.backward_padded(x, l, h, g, gh),
                None => m.backward(x, h, g, gh),
            }
        }
        Kind::Lstm => {
            let m: Lstm<T> = dict.load_lstm(prefix, config).map_err(model_err)?;
            let state = h.zip(c);
            match lengths {
                Some(l) => m.backward_padded(x, l, state, g, (gh, gc)),
                None => m.backward(x, state, g, (gh, gc)),
            }
        }
    };
    let grads = result.map_err(|e| match &e {
        Error::GradientShape {
            what: "grad_output",
            ..
        } => format!("{}: {e}", args.grad_output.display()),
        Error::GradientShape {
            what: "grad_h_n", ..
        } => format!("{}: {e}", path_of(&args.grad_hn)),
        Error::GradientShape { .. } => format!("{}: {e}", path_of(&args.grad_cn)),
        _ => forward_error(&e, &args.forward, &description) + &note,
    })?;
    let mut tensors: Vec<(String, ndarray::ArrayViewD<'_, T>)> = grads
        .parameters
        .iter()
        .map(|(name, g)| (name.clone(), g.view()))
        .collect();
    tensors.push(("input".to_string(), grads.input.view()));
    tensors.push(("h0".to_string(), grads.h0.view()));
    if let Some(c0) = &grads.c0 {
        tensors.push(("c0".to_string(), c0.view()));
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(
        "loss".to_string(),
        "sum(output * grad_output) + sum(h_n * grad_h_n) [+ sum(c_n * grad_c_n)]".to_string(),
    );
    st::save_tensors(&args.output, &tensors, meta).map_err(|e| e.to_string())?;
    warn(loaded.sources.warning(model, &loaded.config, input.ndim()));
    summary(
        &format!(
            "{description}: gradients of {} parameters, input {:?}, h0 {:?}{} -> {}",
            grads.parameters.len(),
            grads.input.shape(),
            grads.h0.shape(),
            grads
                .c0
                .as_ref()
                .map_or(String::new(), |c| format!(", c0 {:?}", c.shape())),
            args.output.display()
        ),
        is_stdout(&args.output),
    );
    Ok(())
}
