//! `recurrent export`: a model (safetensors, torch.save or ONNX) written as an ONNX
//! model that ONNX Runtime and other runtimes run.

use recurrent::io::onnx::{self, ExportOptions};
use recurrent::io::safetensors::{META_BATCH_FIRST, META_NONLINEARITY};
use recurrent::io::{OutputSet, StateDict};
use recurrent::{Dtype, Float, Kind, RnnConfig};

use crate::{DtypeArg, ExportArgs};

/// `recurrent export`: reads the model, applies the flags, writes the ONNX model all or
/// nothing, and prints one summary line (on stderr when the model goes to stdout).
pub fn export(args: ExportArgs) -> Result<(), String> {
    let model = &args.model;
    if recurrent::io::same_file(&args.output, model) {
        return Err(format!(
            "{}: --output names the same file as --model; write the ONNX model to another path",
            args.output.display()
        ));
    }
    let in_file = |e: recurrent::Error| format!("{}: {e}", model.display());
    let dict = StateDict::read(model).map_err(|e| e.to_string())?;
    let prefix = dict
        .resolve_prefix(args.prefix.as_deref())
        .map_err(in_file)?;
    let mut config = dict.infer_config(&prefix).map_err(in_file)?;
    let mut assumed = Vec::new();
    match args.batch_first {
        Some(batch_first) => config.batch_first = batch_first,
        None if !dict.records(META_BATCH_FIRST) => assumed.push("batch_first=false"),
        None => {}
    }
    match args.nonlinearity {
        Some(_) if config.kind != Kind::Rnn => {
            return Err(format!(
                "--nonlinearity applies to RNN models only; {} holds {} {}",
                model.display(),
                if config.kind == Kind::Gru { "a" } else { "an" },
                config.kind.name()
            ))
        }
        Some(nonlinearity) => config.nonlinearity = nonlinearity.into(),
        None if config.kind == Kind::Rnn && !dict.records(META_NONLINEARITY) => {
            assumed.push("nonlinearity=tanh")
        }
        None => {}
    }
    let dtype = match args.dtype {
        Some(DtypeArg::F32) => Dtype::F32,
        Some(DtypeArg::F64) => Dtype::F64,
        None => dict.dtype(&prefix).map_err(in_file)?,
    };
    let options = ExportOptions::default().initial_state(args.initial_state);
    let mut set = OutputSet::new();
    match dtype {
        Dtype::F32 => stage::<f32>(&mut set, &dict, &prefix, &config, &args, options)?,
        Dtype::F64 => stage::<f64>(&mut set, &dict, &prefix, &config, &args, options)?,
    }
    let to_stdout = set.writes_stdout();
    set.commit().map_err(|e| e.to_string())?;
    let d = config.num_directions();
    let state = if config.kind == Kind::Lstm {
        "h_n, c_n"
    } else {
        "h_n"
    };
    let inputs = match (args.initial_state, config.kind) {
        (false, _) => "input",
        (true, Kind::Lstm) => "input, h0, c0",
        (true, _) => "input, h0",
    };
    let summary = format!(
        "wrote {}: {config} as ONNX opset {} ({dtype}; {} {} node(s); inputs {inputs}; outputs output {}, {state} ({}, N, {}))",
        args.output.display(),
        onnx::OPSET,
        config.num_layers,
        config.kind.name(),
        if config.batch_first { format!("(N, L, {})", d * config.hidden_size) } else { format!("(L, N, {})", d * config.hidden_size) },
        d * config.num_layers,
        config.hidden_size,
    );
    if to_stdout {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    if !assumed.is_empty() {
        eprintln!(
            "warning: {} does not record {}; exported with torch's default{}. If the model was built otherwise, pass {}",
            model.display(),
            assumed.iter().map(|a| a.split('=').next().unwrap_or(a)).collect::<Vec<_>>().join(" or "),
            assumed.iter().map(|a| format!(" {a}")).collect::<String>(),
            assumed
                .iter()
                .map(|a| if a.starts_with("batch") { "--batch-first" } else { "--nonlinearity relu" })
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    Ok(())
}

/// Loads the layer in `T` and stages its ONNX model.
fn stage<T: Float>(
    set: &mut OutputSet,
    dict: &StateDict,
    prefix: &str,
    config: &RnnConfig,
    args: &ExportArgs,
    options: ExportOptions,
) -> Result<(), String> {
    let layers = dict
        .load_layers::<T>(prefix, config.clone())
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    onnx::stage(set, &layers, &args.output, options).map_err(|e| e.to_string())
}
