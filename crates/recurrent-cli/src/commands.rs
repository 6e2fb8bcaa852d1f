//! The subcommands. Each returns `Err(one-line message)` on failure.

use std::collections::HashMap;
use std::path::Path;

use ndarray::ArrayD;
use recurrent::io::npy::{self, NpyArray};
use recurrent::io::safetensors::{self as st, StateDict};
use recurrent::{Error, Float, Rnn, RnnConfig};

use crate::{DtypeArg, InitArgs, InspectArgs, RunArgs};

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

/// `recurrent run`.
pub fn run(args: RunArgs) -> CliResult {
    let input = npy::read_float(&args.input).map_err(|e| e.to_string())?;
    let (dict, prefix, mut config) = load_dict(&args.model, args.prefix.as_deref())?;
    if let Some(batch_first) = args.batch_first {
        config.batch_first = batch_first;
    }
    if let Some(nonlinearity) = args.nonlinearity {
        config.nonlinearity = nonlinearity.into();
    }
    match input {
        NpyArray::F32(x) => run_typed::<f32>(&args, &dict, &prefix, config, x),
        NpyArray::F64(x) => run_typed::<f64>(&args, &dict, &prefix, config, x),
    }
}

/// Computes in the input's dtype `T` (the model's tensors are converted to it).
fn run_typed<T: Float>(
    args: &RunArgs,
    dict: &StateDict,
    prefix: &str,
    config: RnnConfig,
    input: ArrayD<T>,
) -> CliResult {
    let rnn: Rnn<T> = dict
        .load_rnn(prefix, config)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let h0 = match &args.h0 {
        Some(path) => Some(npy::read::<T>(path).map_err(|e| match e {
            Error::DtypeMismatch { got, .. } => format!(
                "{}: h0 must have the input's dtype {}, got {got}",
                path.display(),
                T::DTYPE
            ),
            e => e.to_string(),
        })?),
        None => None,
    };
    let (output, h_n) = rnn
        .forward(input.view(), h0.as_ref().map(|h| h.view()))
        .map_err(|e| match (&e, &args.h0) {
            (Error::HiddenRank { .. } | Error::HiddenShape { .. }, Some(h0)) => {
                format!("{}: {e}", h0.display())
            }
            _ => format!("{}: {e} (model: {})", args.input.display(), rnn.config()),
        })?;
    npy::write(&args.output, &output).map_err(|e| e.to_string())?;
    if let Some(hn) = &args.hn {
        if let Err(e) = npy::write(hn, &h_n) {
            // Leave no partial result behind.
            let _ = std::fs::remove_file(&args.output);
            return Err(e.to_string());
        }
    }
    out!(
        "{}: output {:?}{}",
        rnn.config(),
        output.shape(),
        args.hn
            .as_ref()
            .map(|_| format!(", h_n {:?}", h_n.shape()))
            .unwrap_or_default()
    );
    Ok(())
}

/// `recurrent inspect`.
pub fn inspect(args: InspectArgs) -> CliResult {
    let (dict, prefix, config) = load_dict(&args.model, args.prefix.as_deref())?;
    let dtype = dict
        .dtype(&prefix)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let rnn: Rnn<f64> = dict
        .load_rnn(&prefix, config)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let config = rnn.config();
    out!("{config}");
    out!("file: {}", args.model.display());
    out!("prefix: {:?}", prefix);
    out!("dtype: {dtype}");
    out!(
        "input_size={} hidden_size={} num_layers={} nonlinearity={} bias={} batch_first={} dropout={} bidirectional={}",
        config.input_size,
        config.hidden_size,
        config.num_layers,
        config.nonlinearity,
        config.bias,
        config.batch_first,
        config.dropout,
        config.bidirectional
    );
    let others = dict.names().len() - rnn.parameter_names().len();
    if others > 0 {
        out!("other tensors in the file (ignored): {others}");
    }
    out!("parameters ({} values):", rnn.num_parameters());
    let width = rnn
        .parameter_names()
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0);
    for (name, tensor) in rnn.named_parameters() {
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
    let config = RnnConfig::new(args.input_size, args.hidden_size)
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
    out!("{rnn_desc} -> {}", args.output.display());
    Ok(())
}

fn init_typed<T: Float>(
    config: RnnConfig,
    seed: u64,
    path: &Path,
    meta: &HashMap<String, String>,
) -> Result<String, String> {
    let rnn = Rnn::<T>::seeded(config, seed).map_err(|e| {
        // Name the flags, not the Python parameter names.
        let mut message = e.to_string();
        for (field, flag) in [
            ("input_size", "--input-size"),
            ("hidden_size", "--hidden-size"),
            ("num_layers", "--num-layers"),
            ("dropout", "--dropout"),
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
