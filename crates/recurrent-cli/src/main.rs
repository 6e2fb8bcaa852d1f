//! `recurrent`: run, differentiate, inspect, create and time torch.nn.RNN, LSTM and GRU
//! models from the command line.
//!
//! A thin shell over the `recurrent` library. Every failure prints one line on stderr,
//! naming the file or argument and what was expected, and exits non-zero; outputs are
//! written to temporary files and renamed into place only when everything succeeded.

/// mimalloc keeps freed pages for reuse: glibc returns large blocks to the kernel, and a
/// forward call that allocates its output then pays page faults on every call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod commands;
mod export;
mod stream;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(
    name = "recurrent",
    version,
    about = "PyTorch's recurrent layers (torch.nn.RNN, LSTM, GRU) computed exactly, without torch: run, backward, inspect, init and bench models saved as state dicts (safetensors, torch.save) or ONNX",
    after_help = "The kind (RNN, LSTM or GRU) comes from the model's tensors. Examples:\n  \
        recurrent init --mode lstm --input-size 10 --hidden-size 20 --batch-first --output m.safetensors\n  \
        recurrent inspect m.safetensors\n  \
        recurrent run --model m.safetensors --input x.npy --output y.npy --hn hn.npy --cn cn.npy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a model (RNN, LSTM or GRU, told apart by its tensors) on a .npy input; write
    /// the output (and h_n, c_n) as .npy.
    Run(RunArgs),
    /// Gradients of sum(output*GO) + sum(h_n*GHN) [+ sum(c_n*GCN)] for every parameter,
    /// the input and h0 (c0), written as safetensors with torch's names (eval mode).
    Backward(BackwardArgs),
    /// Show a model's kind and configuration (saying where each option the tensors cannot
    /// show came from) and its parameters, as named_parameters() lists them.
    Inspect(InspectArgs),
    /// Create a model (RNN, LSTM or GRU) with torch's default initialisation and save it
    /// as safetensors.
    Init(InitArgs),
    /// Time the forward call in-process and print one JSON line.
    Bench(BenchArgs),
    /// Write a model as ONNX (opset 14): one RNN/LSTM/GRU node per layer, laid out as
    /// torch.onnx.export writes it, for ONNX Runtime, tract and other runtimes.
    Export(ExportArgs),
    /// Run a model over frames read from stdin, one step at a time, writing each step's
    /// output to stdout as soon as it is computed (state carried over): for piping a
    /// live source through the model.
    Stream(StreamArgs),
}

/// `recurrent stream`.
#[derive(Args, Debug)]
struct StreamArgs {
    /// The model (any format `run` reads): an RNN, LSTM or GRU, unidirectional.
    #[arg(long, value_name = "M")]
    model: std::path::PathBuf,
    /// How frames arrive on stdin and leave on stdout: raw little-endian floats (N * H_in
    /// per frame in, N * H_out out), or a sequence of .npy arrays, each a step ((H_in,),
    /// or (N, H_in) with --batch) or a chunk ((K, H_in), or (K, N, H_in)).
    #[arg(long, value_enum, default_value = "raw")]
    format: StreamFormat,
    /// The floats' type, in and out.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// N sequences streamed side by side (each frame holds one step of each); unbatched
    /// when not given.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: Option<usize>,
    /// Initial hidden state (num_layers, [N,] H_out); zeros if absent.
    #[arg(long, value_name = "H0.npy")]
    h0: Option<std::path::PathBuf>,
    /// LSTM: initial cell state (num_layers, [N,] H); given with --h0.
    #[arg(long, value_name = "C0.npy")]
    c0: Option<std::path::PathBuf>,
    /// RNN only: the activation (overrides the file's metadata).
    #[arg(long, value_enum)]
    nonlinearity: Option<NonlinearityArg>,
    /// Key prefix of the layer's tensors; detected when unambiguous.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StreamFormat {
    /// Little-endian floats, frame after frame.
    Raw,
    /// .npy arrays, one after another.
    Npy,
}

/// What `run` and `backward` both read: the model, the forward's input and initial
/// states, and the flags that adjust the stored configuration.
#[derive(Args, Debug)]
struct ForwardArgs {
    /// The model: a state_dict saved with safetensors.torch.save_file(model.state_dict(),
    /// path) or torch.save (zip or legacy; a dict holding one is found by its prefix), a
    /// cell's (run as the one-layer layer), or an ONNX file; told apart by the bytes.
    #[arg(long, value_name = "M")]
    model: std::path::PathBuf,
    /// Input (L, H_in), (L, N, H_in) or, with batch_first, (N, L, H_in); float32 or float64.
    #[arg(long, value_name = "X.npy")]
    input: std::path::PathBuf,
    /// Initial hidden state (D*num_layers, N, H_out), or (D*num_layers, H_out) for
    /// unbatched input; zeros if absent. Same dtype as the input.
    #[arg(long, value_name = "H0.npy")]
    h0: Option<std::path::PathBuf>,
    /// LSTM: initial cell state (D*num_layers, N, H); given with --h0 or not at all.
    #[arg(long, value_name = "C0.npy")]
    c0: Option<std::path::PathBuf>,
    /// Per-sequence lengths (N,), any integer dtype or whole floats, each in 1..=L: as pack_padded_sequence ->
    /// model -> pad_packed_sequence(total_length=L); outputs past a length are zero.
    #[arg(long, value_name = "LENGTHS.npy")]
    lengths: Option<std::path::PathBuf>,
    /// Input and output are (N, L, F). Overrides the file's metadata; `--batch-first=false`
    /// turns it off. A state dict saved by torch does not record batch_first: without
    /// this flag or the metadata, torch's default (false) is used, with a warning.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    batch_first: Option<bool>,
    /// RNN only: the activation. Overrides the file's metadata; without either, torch's
    /// default (tanh) is used, with a warning.
    #[arg(long, value_enum)]
    nonlinearity: Option<NonlinearityArg>,
    /// Key prefix of the layer's tensors, e.g. `encoder.rnn.`; detected when unambiguous.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
}

/// `recurrent backward`.
#[derive(Args, Debug)]
struct BackwardArgs {
    #[command(flatten)]
    forward: ForwardArgs,
    /// The gradient of the loss with respect to the output (the output's shape).
    #[arg(long, value_name = "GO.npy")]
    grad_output: std::path::PathBuf,
    /// Where to write the gradients: torch's parameter names, plus `input` and `h0`.
    #[arg(long, value_name = "GRADS.safetensors")]
    output: std::path::PathBuf,
    /// The gradient with respect to h_n (zeros if absent).
    #[arg(long, value_name = "GHN.npy")]
    grad_hn: Option<std::path::PathBuf>,
    /// LSTM: the gradient with respect to c_n (zeros if absent).
    #[arg(long, value_name = "GCN.npy")]
    grad_cn: Option<std::path::PathBuf>,
}

/// `recurrent run`.
#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    forward: ForwardArgs,
    /// Where to write the output (L, N, D*H) (or the batch-first / unbatched form).
    #[arg(long, value_name = "OUT.npy")]
    output: std::path::PathBuf,
    /// Where to write h_n (D*num_layers, N, H).
    #[arg(long, value_name = "HN.npy")]
    hn: Option<std::path::PathBuf>,
    /// LSTM: where to write c_n (D*num_layers, N, H).
    #[arg(long, value_name = "CN.npy")]
    cn: Option<std::path::PathBuf>,
    /// Feed the input through a stream K steps at a time: the same output, with the
    /// layer's working memory that of K steps whatever L (unidirectional layers, no
    /// --lengths).
    #[arg(long, value_name = "K", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    chunk_size: Option<usize>,
}

/// `recurrent inspect`.
#[derive(Args, Debug)]
struct InspectArgs {
    /// The state_dict of an RNN, LSTM or GRU or of a cell (safetensors, torch.save or
    /// ONNX).
    #[arg(value_name = "M")]
    model: std::path::PathBuf,
    /// Key prefix of the layer's tensors, e.g. `encoder.rnn.`; detected when unambiguous.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// Print every parameter's values too.
    #[arg(long)]
    values: bool,
}

/// `recurrent init`.
#[derive(Args, Debug)]
struct InitArgs {
    /// The layer kind.
    #[arg(long, value_enum, default_value_t = ModeArg::Rnn)]
    mode: ModeArg,
    /// LSTM only: project h to this size (0: no projection).
    #[arg(long, value_name = "P", default_value_t = 0)]
    proj_size: usize,
    /// Features of each input step (H_in).
    #[arg(long, value_name = "I")]
    input_size: usize,
    /// Features of the hidden state (H).
    #[arg(long, value_name = "H")]
    hidden_size: usize,
    /// Number of stacked layers.
    #[arg(long, value_name = "K", default_value_t = 1)]
    num_layers: usize,
    /// The activation.
    #[arg(long, value_enum, default_value_t = NonlinearityArg::Tanh)]
    nonlinearity: NonlinearityArg,
    /// No bias_ih / bias_hh tensors.
    #[arg(long)]
    no_bias: bool,
    /// Two directions per layer.
    #[arg(long)]
    bidirectional: bool,
    /// Record batch_first=true in the metadata.
    #[arg(long)]
    batch_first: bool,
    /// Dropout between layers in training, recorded in the metadata.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    dropout: f64,
    /// Seed of the ChaCha8 generator behind the uniform init.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Parameter dtype.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Where to write the model.
    #[arg(long, value_name = "M.safetensors")]
    output: std::path::PathBuf,
}

/// `recurrent export`.
#[derive(Args, Debug)]
struct ExportArgs {
    /// The model: a state_dict (safetensors) or an ONNX model.
    #[arg(long, value_name = "M.safetensors")]
    model: std::path::PathBuf,
    /// Where to write the ONNX model.
    #[arg(long, value_name = "OUT.onnx")]
    output: std::path::PathBuf,
    /// Key prefix of the layer's tensors, e.g. `encoder.rnn.`; detected when unambiguous.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// The exported graph's input and output are (N, L, F). Overrides the file's
    /// metadata; without either, torch's default (false) is used, with a warning.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    batch_first: Option<bool>,
    /// RNN only: the activation. Overrides the file's metadata; without either, torch's
    /// default (tanh) is used, with a warning.
    #[arg(long, value_enum)]
    nonlinearity: Option<NonlinearityArg>,
    /// Add graph inputs h0 (and c0 for an LSTM), (D*num_layers, N, H), which must then be
    /// fed; without, the initial states are zeros.
    #[arg(long)]
    initial_state: bool,
    /// The weights' and graph's dtype; the model's own when absent (float16 and bfloat16
    /// weights are widened to float32).
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
}

/// `recurrent bench`.
#[derive(Args, Debug)]
struct BenchArgs {
    /// The layer kind.
    #[arg(long, value_enum, default_value_t = ModeArg::Rnn)]
    mode: ModeArg,
    /// Activation of an RNN.
    #[arg(long, value_enum, default_value_t = NonlinearityArg::Tanh)]
    nonlinearity: NonlinearityArg,
    /// H_in.
    #[arg(long, value_name = "I")]
    input_size: usize,
    /// H.
    #[arg(long, value_name = "H")]
    hidden_size: usize,
    /// Stacked layers.
    #[arg(long, value_name = "K", default_value_t = 1)]
    num_layers: usize,
    /// LSTM only: projection size (0: none).
    #[arg(long, value_name = "P", default_value_t = 0)]
    proj_size: usize,
    /// L.
    #[arg(long, value_name = "L")]
    seq_len: usize,
    /// N.
    #[arg(long, value_name = "N")]
    batch: usize,
    /// Two directions per layer.
    #[arg(long)]
    bidirectional: bool,
    /// Worker threads (1 = run on the calling thread only).
    #[arg(long, value_name = "T", default_value_t = 1)]
    threads: usize,
    /// Element type.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Time forward + backward (the gradients of sum(output)) instead of the forward.
    #[arg(long)]
    train: bool,
    /// Time streaming instead: the sequence fed one step at a time through the layer's
    /// stream (`step`; any kind, unidirectional only). `median_us` is for the whole
    /// sequence, `step_us` per step.
    #[arg(long)]
    stream: bool,
    /// Minimum total measuring time in seconds.
    #[arg(long, value_name = "S", default_value_t = 0.5)]
    min_time: f64,
}

/// Layer kinds `bench` knows by name.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ModeArg {
    Rnn,
    Lstm,
    Gru,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum NonlinearityArg {
    Tanh,
    Relu,
}

impl From<NonlinearityArg> for recurrent::Nonlinearity {
    fn from(n: NonlinearityArg) -> Self {
        match n {
            NonlinearityArg::Tanh => recurrent::Nonlinearity::Tanh,
            NonlinearityArg::Relu => recurrent::Nonlinearity::Relu,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DtypeArg {
    F32,
    F64,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                use clap::CommandFactory;
                let names: Vec<String> = Cli::command()
                    .get_subcommands()
                    .map(|c| c.get_name().to_string())
                    .filter(|n| n != "help")
                    .collect();
                eprintln!(
                    "error: missing subcommand: expected one of {} (for RNN, LSTM and GRU models; see recurrent --help)",
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Inspect(args) => commands::inspect(args),
        Command::Init(args) => commands::init(args),
        Command::Bench(args) => bench::bench(args),
        Command::Backward(args) => commands::backward(args),
        Command::Stream(args) => stream::stream(args),
        Command::Export(args) => export::export(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {}", one_line(&message));
            ExitCode::FAILURE
        }
    }
}

/// Joins a multi-line message (clap's usage errors) into one line, dropping the usage
/// and "--help" hints.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join(" ")
}
