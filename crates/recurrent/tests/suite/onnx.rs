//! ONNX models: real `torch.onnx.export` files (scripts/fixtures_onnx.py) load with
//! torch's parameters bit for bit and reproduce torch's outputs; models torch's layers
//! cannot compute are refused with one clear message; `io::onnx::save` round trips.
#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use recurrent::io::onnx::{self, ExportOptions};
use recurrent::io::{FileFormat, StateDict};
use recurrent::{Float, Gru, Kind, Layer, Lstm, Nonlinearity, Rnn, RnnConfig};

use crate::common::{assert_close, fixtures, random_array};

fn folder(case: &str) -> PathBuf {
    fixtures().join("onnx").join(case)
}

fn npy<T: Float>(case: &str, name: &str) -> Option<ArrayD<T>> {
    let path = folder(case).join(format!("{name}.npy"));
    path.exists().then(|| {
        recurrent::io::npy::read::<T>(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// Runs `layer` on the case's input (and h0, c0), as torch ran the module.
fn forward<T: Float>(layer: &Layer<T>, case: &str) -> (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>) {
    let x = npy::<T>(case, "input").unwrap();
    let h0 = npy::<T>(case, "h0");
    let c0 = npy::<T>(case, "c0");
    match layer {
        Layer::Rnn(rnn) => {
            let (y, h) = rnn
                .forward(x.view(), h0.as_ref().map(|a| a.view()))
                .unwrap();
            (y, h, None)
        }
        Layer::Gru(gru) => {
            let (y, h) = gru
                .forward(x.view(), h0.as_ref().map(|a| a.view()))
                .unwrap();
            (y, h, None)
        }
        Layer::Lstm(lstm) => {
            let state = h0
                .as_ref()
                .zip(c0.as_ref())
                .map(|(h, c)| (h.view(), c.view()));
            let (y, (h, c)) = lstm.forward(x.view(), state).unwrap();
            (y, h, Some(c))
        }
    }
}

/// Loads the case's ONNX model, checks its parameters against torch's state dict bit
/// for bit, and its outputs against torch's at assert_close's defaults.
/// `batch_first_recorded`: what the graph fixes (every fixture's first node reads the
/// graph's input, so each records it, `false` for a sequence-first graph).
fn check_case<T: Float>(case: &str, kind: Kind, batch_first_recorded: Option<bool>) {
    let model = folder(case).join("model.onnx");
    let dict = StateDict::read(&model).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(dict.format(), FileFormat::Onnx, "{case}");
    assert_eq!(
        dict.metadata().get("batch_first").map(String::as_str),
        batch_first_recorded.map(|b| if b { "true" } else { "false" }),
        "{case}: batch_first"
    );
    let layer = recurrent::load::<T>(&model, None).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(layer.kind(), kind, "{case}");
    let torch = recurrent::load::<T>(folder(case).join("torch.safetensors"), None).unwrap();
    assert_eq!(layer.config(), torch.config(), "{case}: configuration");
    let ours: Vec<_> = layer.named_parameters().collect();
    let theirs: Vec<_> = torch.named_parameters().collect();
    assert_eq!(ours.len(), theirs.len(), "{case}");
    for ((name, a), (want, b)) in ours.iter().zip(&theirs) {
        assert_eq!(name, want, "{case}");
        let same = a
            .iter()
            .zip(b.iter())
            .all(|(x, y)| x.as_f64().to_bits() == y.as_f64().to_bits());
        assert!(
            same && a.shape() == b.shape(),
            "{case}: {name} differs from torch's"
        );
    }
    let (y, h, c) = forward(&layer, case);
    assert_close(
        &y,
        &npy(case, "output").unwrap(),
        &format!("{case}: output"),
    );
    assert_close(&h, &npy(case, "h_n").unwrap(), &format!("{case}: h_n"));
    if let Some(c) = c {
        assert_close(&c, &npy(case, "c_n").unwrap(), &format!("{case}: c_n"));
    }
}

#[test]
fn legacy_exports_of_rnn_load_with_torch_parameters_and_outputs() {
    check_case::<f32>("rnn_tanh_2layers_bidirectional", Kind::Rnn, Some(false));
    check_case::<f32>("rnn_relu_batch_first_nobias", Kind::Rnn, Some(true));
    // Weights in float_data rather than raw_data.
    check_case::<f32>("rnn_relu_float_data", Kind::Rnn, Some(false));
    let relu = StateDict::read(folder("rnn_relu_float_data").join("model.onnx")).unwrap();
    assert_eq!(
        relu.metadata().get("nonlinearity").map(String::as_str),
        Some("relu")
    );
}

#[test]
fn legacy_exports_of_lstm_load_with_torch_parameters_and_outputs() {
    check_case::<f32>(
        "lstm_2layers_bidirectional_batch_first",
        Kind::Lstm,
        Some(true),
    );
    check_case::<f32>("lstm_nobias_h0_c0", Kind::Lstm, Some(false));
    check_case::<f32>("lstm_external_data", Kind::Lstm, Some(false));
}

#[test]
fn legacy_exports_of_gru_load_with_torch_parameters_and_outputs() {
    check_case::<f32>("gru_2layers_bidirectional", Kind::Gru, Some(false));
    check_case::<f32>("gru_batch_first_nobias_h0", Kind::Gru, Some(true));
    check_case::<f64>("gru_f64", Kind::Gru, Some(false));
}

#[test]
fn half_precision_weights_keep_their_stored_dtype_and_widen_exactly() {
    use recurrent::io::safetensors::StoredDtype;
    for (case, kind, stored) in [
        ("lstm_f16", Kind::Lstm, StoredDtype::F16),
        ("gru_bf16", Kind::Gru, StoredDtype::BF16),
    ] {
        let dict = StateDict::read(folder(case).join("model.onnx")).unwrap();
        assert_eq!(dict.stored_dtype("").unwrap(), stored, "{case}");
        check_case::<f32>(case, kind, Some(false));
    }
}

#[test]
fn dynamo_exports_of_lstm_and_gru_load() {
    check_case::<f32>("dynamo_lstm_2layers_batch_first", Kind::Lstm, Some(true));
    check_case::<f32>("dynamo_gru_bidirectional_nobias", Kind::Gru, Some(false));
}

#[test]
fn the_kind_specific_loaders_read_onnx_too() {
    let lstm = Lstm::<f32>::load(folder("lstm_nobias_h0_c0").join("model.onnx"), None).unwrap();
    assert_eq!(
        lstm.config().to_string(),
        "LSTM(3, 4, num_layers=2, bias=False)"
    );
    let err = Gru::<f32>::load(folder("lstm_nobias_h0_c0").join("model.onnx"), None).unwrap_err();
    assert!(err.to_string().contains("LSTM"), "{err}");
}

/// The message a bad model gives, which must name the file and hold every word of
/// `needles`.
fn refused(name: &str, needles: &[&str]) {
    let path = fixtures().join("onnx/bad").join(format!("{name}.onnx"));
    let err = recurrent::load::<f32>(&path, None).expect_err(name);
    let message = err.to_string();
    assert!(!message.contains('\n'), "{name}: one line: {message}");
    assert!(
        message.contains(&path.display().to_string()),
        "{name}: path in {message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "{name}: {needle:?} not in: {message}"
        );
    }
}

#[test]
fn models_torch_cannot_compute_are_refused_with_one_clear_message() {
    refused(
        "gemm_relu",
        &["no RNN, LSTM or GRU node", "it holds: Gemm, Relu"],
    );
    refused(
        "dynamo_rnn_unrolled",
        &["no RNN, LSTM or GRU node", "MatMul", "dynamo=False"],
    );
    refused("lstm_peepholes", &["LSTM node", "peepholes"]);
    refused(
        "gru_linear_before_reset_0",
        &[
            "linear_before_reset=0",
            "different GRU",
            "linear_before_reset=1",
        ],
    );
    refused("lstm_clip", &["clip"]);
    refused("lstm_input_forget", &["input_forget=1"]);
    refused(
        "rnn_reverse",
        &["direction='reverse'", "bidirectional=True"],
    );
    refused("rnn_sigmoid", &["activation 'sigmoid'", "tanh or relu"]);
    refused(
        "gru_hidden_size_mismatch",
        &["hidden_size=5", "R has shape (1, 12, 4)"],
    );
    refused("mixed_kinds", &["different kinds", "LSTM", "GRU"]);
    refused(
        "two_stacks",
        &[
            "2 recurrent stacks",
            "RNN node 'encoder'",
            "RNN node 'decoder'",
        ],
    );
    refused("truncated", &["not a valid ONNX model", "truncated"]);
}

fn layer_of<T: Float>(config: RnnConfig, seed: u64) -> Layer<T> {
    Layer::from_layers(recurrent::params::Layers::seeded(config, seed).unwrap())
}

/// Exports `layer`, reads it back, and checks the configuration, the parameters (bit
/// for bit) and the forward output.
fn round_trip<T: Float>(layer: &Layer<T>, dir: &Path, options: ExportOptions) {
    let path = dir.join("model.onnx");
    onnx::save(layer, &path, options).unwrap();
    let back = recurrent::load::<T>(&path, None).unwrap();
    let config = layer.config();
    // The reader records batch_first only when the graph shows it.
    let mut expected = config.clone();
    expected.dropout = 0.0;
    assert_eq!(back.config(), &expected, "{config}");
    for ((name, a), (_, b)) in layer.named_parameters().zip(back.named_parameters()) {
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(x, y)| x.as_f64().to_bits() == y.as_f64().to_bits()),
            "{config}: {name}"
        );
    }
    let shape = if config.batch_first {
        [2, 5, config.input_size]
    } else {
        [5, 2, config.input_size]
    };
    let x = random_array::<T>(&shape, 7, 1.0);
    let run = |l: &Layer<T>| match l {
        Layer::Rnn(m) => m.forward(x.view(), None).unwrap().0,
        Layer::Gru(m) => m.forward(x.view(), None).unwrap().0,
        Layer::Lstm(m) => m.forward(x.view(), None).unwrap().0,
    };
    assert_eq!(run(layer), run(&back), "{config}");
}

#[test]
fn export_round_trips_every_kind_and_option() {
    let dir = tempfile::tempdir().unwrap();
    let configs = [
        RnnConfig::new(3, 4),
        RnnConfig::new(3, 4)
            .nonlinearity(Nonlinearity::Relu)
            .num_layers(3)
            .bidirectional(true),
        RnnConfig::new(2, 5).bias(false).batch_first(true),
        RnnConfig::lstm(3, 4)
            .num_layers(2)
            .bidirectional(true)
            .batch_first(true),
        RnnConfig::lstm(3, 6).bias(false).dropout(0.5).num_layers(2),
        RnnConfig::gru(3, 4).num_layers(2),
        RnnConfig::gru(4, 3)
            .bidirectional(true)
            .bias(false)
            .batch_first(true),
    ];
    for (seed, config) in configs.into_iter().enumerate() {
        round_trip(
            &layer_of::<f32>(config.clone(), seed as u64),
            dir.path(),
            ExportOptions::default(),
        );
        round_trip(
            &layer_of::<f64>(config, seed as u64),
            dir.path(),
            ExportOptions::default().initial_state(true),
        );
    }
}

#[test]
fn export_refuses_proj_size_and_leaves_files_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(3, 4).proj_size(2), 0).unwrap();
    let fresh = dir.path().join("new.onnx");
    let err = onnx::save(&lstm, &fresh, ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("proj_size=2") && err.contains("new.onnx"),
        "{err}"
    );
    assert!(!fresh.exists());
    let existing = dir.path().join("old.onnx");
    std::fs::write(&existing, b"keep me").unwrap();
    assert!(onnx::save(&lstm, &existing, ExportOptions::default()).is_err());
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    // A folder that does not exist: nothing is created.
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, 4), 0).unwrap();
    let missing = dir.path().join("no/such/folder/m.onnx");
    let err = onnx::save(&rnn, &missing, ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["old.onnx"]);
}

#[test]
fn an_exported_torch_model_reexports_to_the_same_parameters() {
    // torch's ONNX -> recurrent -> ONNX -> recurrent: the parameters survive both trips.
    let dir = tempfile::tempdir().unwrap();
    let original = folder("lstm_2layers_bidirectional_batch_first").join("model.onnx");
    let first = recurrent::load::<f32>(&original, None).unwrap();
    let again = dir.path().join("again.onnx");
    onnx::save(&first, &again, ExportOptions::default()).unwrap();
    let second = recurrent::load::<f32>(&again, None).unwrap();
    assert_eq!(first.config(), second.config());
    for ((name, a), (_, b)) in first.named_parameters().zip(second.named_parameters()) {
        assert_eq!(a, b, "{name}");
    }
    let (y, _, _) = forward(&second, "lstm_2layers_bidirectional_batch_first");
    assert_close(
        &y,
        &npy("lstm_2layers_bidirectional_batch_first", "output").unwrap(),
        "re-exported output",
    );
}
