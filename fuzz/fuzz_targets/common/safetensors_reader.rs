//! Target `safetensors_reader`: arbitrary bytes as a safetensors state dict, then every
//! public way of reading it, as `recurrent forward`/`load` would.

use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};
use recurrent::io::safetensors::StateDict;
use recurrent::{Float, Kind, RnnConfig};

/// Models at most this big are run after loading (the inputs are a few hundred bytes, so
/// anything that loads is small anyway).
const MAX_RUN_PARAMETERS: usize = 1 << 16;
/// Features of an input step at most this wide are run.
const MAX_RUN_INPUT: usize = 1 << 10;

pub fn run(data: &[u8]) {
    check_bytes(data.to_vec());
}

/// Parses `bytes`; if they are a safetensors file, exercises it with [`exercise`].
pub fn check_bytes(bytes: Vec<u8>) {
    if let Ok(dict) = StateDict::from_bytes(PathBuf::from("fuzz-input.safetensors"), bytes) {
        exercise(&dict);
    }
}

/// The configurations (prefix, config) of the layers that loaded, for callers that check
/// more.
pub type Loaded = Vec<(String, RnnConfig)>;

/// Every reader of a parsed state dict: each tensor as f64, f32 and integers; prefix
/// resolution; configuration inference; loading as the inferred kind in f32 and f64;
/// and, for a model that loads, a forward pass. Returns what loaded.
pub fn exercise(dict: &StateDict) -> Loaded {
    let names: Vec<String> = dict.names().iter().map(|s| s.to_string()).collect();
    let _ = dict.metadata();
    for name in &names {
        let shape = dict.shape(name).map(<[usize]>::to_vec);
        assert!(
            shape.is_some(),
            "names() lists '{name}' but shape() has none"
        );
        if let Ok(t) = dict.tensor::<f64>(name) {
            assert_eq!(
                Some(t.shape().to_vec()),
                shape,
                "tensor::<f64>('{name}') shape"
            );
        }
        if let Ok(t) = dict.tensor::<f32>(name) {
            assert_eq!(
                Some(t.shape().to_vec()),
                shape,
                "tensor::<f32>('{name}') shape"
            );
        }
        if let (Ok(values), Some(shape)) = (dict.tensor_usize(name), &shape) {
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            assert_eq!(Some(values.len()), count, "tensor_usize('{name}') length");
        }
    }
    let _ = dict.tensor::<f32>("no such tensor");

    let mut loaded = Vec::new();
    let auto = dict.resolve_prefix(None);
    let prefixes = dict.rnn_prefixes();
    if let Ok(p) = &auto {
        assert!(
            prefixes.contains(p),
            "resolve_prefix(None) = {p:?} is not among {prefixes:?}"
        );
    }
    for prefix in prefixes.iter().take(4) {
        let resolved = dict.resolve_prefix(Some(prefix));
        assert_eq!(
            resolved.as_deref().ok(),
            Some(prefix.as_str()),
            "resolve_prefix({prefix:?})"
        );
        let _ = dict.dtype(prefix);
        let Ok(config) = dict.infer_config(prefix) else {
            continue;
        };
        assert!(
            config.validate().is_ok(),
            "infer_config({prefix:?}) returned an invalid configuration {config:?}"
        );
        let _ = dict.load_layers::<f32>(prefix, config.clone());
        let ran32 = load_and_run::<f32>(dict, prefix, &config);
        let ran64 = load_and_run::<f64>(dict, prefix, &config);
        if ran32 || ran64 {
            loaded.push((prefix.clone(), config));
        }
    }
    loaded
}

/// Loads the layer under `prefix` as its kind says and, when small, runs it on a small
/// input; a model that loads must run. Returns whether it loaded.
fn load_and_run<T: Float>(dict: &StateDict, prefix: &str, config: &RnnConfig) -> bool {
    let small = config.input_size <= MAX_RUN_INPUT;
    match config.kind {
        Kind::Rnn => match dict.load_rnn::<T>(prefix, config.clone()) {
            Ok(rnn) => {
                if small && rnn.num_parameters() <= MAX_RUN_PARAMETERS {
                    let x = small_input::<T>(config, 3, 2);
                    let result = rnn.forward(x.view(), None);
                    check_run(config, 3, 2, result.map(|(o, h)| (o, h, None)));
                }
                true
            }
            Err(_) => false,
        },
        Kind::Lstm => match dict.load_lstm::<T>(prefix, config.clone()) {
            Ok(lstm) => {
                if small && lstm.num_parameters() <= MAX_RUN_PARAMETERS {
                    let x = small_input::<T>(config, 3, 2);
                    let result = lstm.forward(x.view(), None);
                    check_run(config, 3, 2, result.map(|(o, (h, c))| (o, h, Some(c))));
                }
                true
            }
            Err(_) => false,
        },
        Kind::Gru => match dict.load_gru::<T>(prefix, config.clone()) {
            Ok(gru) => {
                if small && gru.num_parameters() <= MAX_RUN_PARAMETERS {
                    let x = small_input::<T>(config, 3, 2);
                    let result = gru.forward(x.view(), None);
                    check_run(config, 3, 2, result.map(|(o, h)| (o, h, None)));
                }
                true
            }
            Err(_) => false,
        },
    }
}

/// An `(L, N, H_in)` input (or `(N, L, H_in)` when batch-first) of small varied values.
pub fn small_input<T: Float>(config: &RnnConfig, seq_len: usize, batch: usize) -> ArrayD<T> {
    let shape = if config.batch_first {
        [batch, seq_len, config.input_size]
    } else {
        [seq_len, batch, config.input_size]
    };
    ArrayD::from_shape_fn(IxDyn(&shape), |i| {
        T::of(((i[0] * 7 + i[1] * 3 + i[2]) as f64 * 0.37).sin())
    })
}

/// `(output, h_n, c_n)`, `c_n` for an LSTM.
type RunOutput<T> = (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>);

/// A forward pass on a well-formed input must succeed with torch's output shapes.
fn check_run<T: Float>(
    config: &RnnConfig,
    seq_len: usize,
    batch: usize,
    result: recurrent::Result<RunOutput<T>>,
) {
    let (output, h_n, c_n) = match result {
        Ok(r) => r,
        Err(e) => panic!("a loaded {config} failed on a well-formed input: {e}"),
    };
    let out_shape = if config.batch_first {
        [batch, seq_len, config.output_size()]
    } else {
        [seq_len, batch, config.output_size()]
    };
    let states = config.num_directions() * config.num_layers;
    assert_eq!(output.shape(), out_shape, "{config}: output shape");
    assert_eq!(
        h_n.shape(),
        [states, batch, config.output_hidden_size()],
        "{config}: h_n shape"
    );
    if let Some(c_n) = c_n {
        assert_eq!(
            c_n.shape(),
            [states, batch, config.hidden_size],
            "{config}: c_n shape"
        );
    }
}
