//! The files torch users have besides safetensors: `torch.save` checkpoints (zip and
//! legacy containers, nested dicts, half precision, views into a shared storage, weight
//! norm), cells' state dicts, and files that must be refused. Fixtures are real torch's,
//! from scripts/fixtures_formats.py; outputs are compared at assert_close's defaults.

use std::path::PathBuf;

use ndarray::ArrayD;
use recurrent::io::safetensors::{save_as, StoredDtype};
use recurrent::io::{FileFormat, StateDict};
use recurrent::{Error, Float, Layer};

use crate::common::assert_close;

fn path(name: &str) -> PathBuf {
    crate::common::fixtures().join("formats").join(name)
}

fn npy<T: Float + ndarray_npy::ReadableElement>(name: &str) -> ArrayD<T> {
    ndarray_npy::read_npy(path(name)).expect("fixture")
}

/// Output, h_n and (for an LSTM) c_n of `layer` on `x` from a zero state.
fn run<T: Float>(layer: &Layer<T>, x: &ArrayD<T>) -> (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>) {
    match layer {
        Layer::Rnn(m) => {
            let (y, h) = m.forward(x.view(), None).unwrap();
            (y, h, None)
        }
        Layer::Lstm(m) => {
            let (y, (h, c)) = m.forward(x.view(), None).unwrap();
            (y, h, Some(c))
        }
        Layer::Gru(m) => {
            let (y, h) = m.forward(x.view(), None).unwrap();
            (y, h, None)
        }
    }
}

/// Loads `file`, runs it on `<case>_input.npy` and compares with torch's outputs.
fn check_case<T: Float + ndarray_npy::ReadableElement>(file: &str, case: &str, kind: &str) {
    let layer = recurrent::load::<T>(path(file), None).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(layer.kind().name(), kind, "{file}: {}", layer.config());
    let x = npy::<T>(&format!("{case}_input.npy"));
    let (y, h, c) = run(&layer, &x);
    assert_close(
        &y,
        &npy(&format!("{case}_output.npy")),
        &format!("{file} output"),
    );
    assert_close(&h, &npy(&format!("{case}_hn.npy")), &format!("{file} h_n"));
    if let Some(c) = c {
        assert_close(&c, &npy(&format!("{case}_cn.npy")), &format!("{file} c_n"));
    }
}

#[test]
fn torch_save_files_of_every_kind_give_torchs_numbers() {
    for (file, kind) in [
        ("pt_lstm_zip.pt", "LSTM"),
        ("pt_gru_legacy.pt", "GRU"),
        ("pt_rnn_relu_prefix.pt", "RNN"),
        ("pt_nested_ckpt.pt", "LSTM"),
        ("pt_lstm_f16.pt", "LSTM"),
        ("pt_gru_bf16_legacy.pt", "GRU"),
        ("pt_views.pt", "LSTM"),
        ("pt_wn_lstm.pt", "LSTM"),
    ] {
        let case = file.trim_end_matches(".pt");
        if file == "pt_rnn_relu_prefix.pt" {
            // torch.save records no nonlinearity: the library takes torch's default
            // (tanh), and the caller sets what the model was built with.
            let Layer::Rnn(mut rnn) = recurrent::load::<f32>(path(file), None).unwrap() else {
                panic!("{file}: not an RNN");
            };
            rnn.set_nonlinearity(recurrent::Nonlinearity::Relu);
            let x = npy::<f32>(&format!("{case}_input.npy"));
            let (y, h) = rnn.forward(x.view(), None).unwrap();
            assert_close(&y, &npy(&format!("{case}_output.npy")), file);
            assert_close(&h, &npy(&format!("{case}_hn.npy")), file);
            continue;
        }
        check_case::<f32>(file, case, kind);
    }
    check_case::<f64>("pt_rnn_f64.pt", "pt_rnn_f64", "RNN");
    // The legacy container of the shared-storage views: the same tensors.
    check_case::<f32>("pt_views_legacy.pt", "pt_views", "LSTM");
}

#[test]
fn a_torch_save_file_says_its_container_dtype_and_prefix() {
    for (file, format, stored, prefix) in [
        ("pt_lstm_zip.pt", FileFormat::TorchZip, StoredDtype::F32, ""),
        (
            "pt_gru_legacy.pt",
            FileFormat::TorchLegacy,
            StoredDtype::F32,
            "",
        ),
        ("pt_lstm_f16.pt", FileFormat::TorchZip, StoredDtype::F16, ""),
        (
            "pt_gru_bf16_legacy.pt",
            FileFormat::TorchLegacy,
            StoredDtype::BF16,
            "",
        ),
        ("pt_rnn_f64.pt", FileFormat::TorchZip, StoredDtype::F64, ""),
        (
            "pt_nested_ckpt.pt",
            FileFormat::TorchZip,
            StoredDtype::F32,
            "model.",
        ),
        (
            "pt_rnn_relu_prefix.pt",
            FileFormat::TorchZip,
            StoredDtype::F32,
            "rnn.",
        ),
    ] {
        let dict = StateDict::read(path(file)).unwrap();
        assert_eq!(dict.format(), format, "{file}");
        let found = dict.resolve_prefix(None).unwrap();
        assert_eq!(found, prefix, "{file}");
        assert_eq!(dict.stored_dtype(&found).unwrap(), stored, "{file}");
        assert!(!dict.is_cell(&found), "{file}");
    }
    // The format comes from the bytes, not the name: a safetensors file is one whatever
    // it is called.
    let renamed = tempfile::Builder::new().suffix(".pt").tempfile().unwrap();
    std::fs::copy(path("cell_lstm.safetensors"), renamed.path()).unwrap();
    let dict = StateDict::read(renamed.path()).unwrap();
    assert_eq!(dict.format(), FileFormat::Safetensors);
}

#[test]
fn a_cells_state_dict_runs_as_the_one_layer_layer_it_equals() {
    for (file, case, kind) in [
        ("cell_lstm.safetensors", "cell_lstm", "LSTM"),
        ("cell_lstm.pt", "cell_lstm", "LSTM"),
        ("cell_gru.safetensors", "cell_gru", "GRU"),
        ("cell_gru.pt", "cell_gru", "GRU"),
        ("cell_rnn_relu.safetensors", "cell_rnn_relu", "RNN"),
        ("cell_rnn_nobias.pt", "cell_rnn_nobias", "RNN"),
        ("cell_lstm_prefix.safetensors", "cell_lstm_prefix", "LSTM"),
    ] {
        let dict = StateDict::read(path(file)).unwrap();
        let prefix = dict.resolve_prefix(None).unwrap();
        assert!(dict.is_cell(&prefix), "{file}");
        let config = dict.infer_config(&prefix).unwrap();
        assert_eq!(
            (config.num_layers, config.bidirectional),
            (1, false),
            "{file}"
        );
        check_case::<f32>(file, case, kind);
    }
    let dict = StateDict::read(path("cell_lstm_prefix.safetensors")).unwrap();
    assert_eq!(dict.resolve_prefix(None).unwrap(), "cell.");
    assert!(!dict.is_cell("head."));
}

#[test]
fn files_that_are_not_state_dicts_are_refused_with_one_clear_line() {
    let marker = std::path::Path::new("/tmp/recurrent_pwned");
    let _ = std::fs::remove_file(marker);
    for (file, needles) in [
        ("bad_truncated.pt", &["bad_truncated.pt", "torch.save"][..]),
        ("bad_no_data_pkl.pt", &["bad_no_data_pkl.pt", "data.pkl"]),
        (
            "bad_evil_global.pt",
            &["bad_evil_global.pt", "posix.system", "never runs"],
        ),
        (
            "bad_evil_global_legacy.pt",
            &["bad_evil_global_legacy.pt", "posix.system"],
        ),
        (
            "bad_evil_proto4.pt",
            &["bad_evil_proto4.pt", "posix.system"],
        ),
        (
            "bad_full_module.pt",
            &["torch.nn.modules.rnn.GRU", "model.state_dict()"],
        ),
        (
            "bad_short_storage.pt",
            &["bad_short_storage.pt", "weight_hh_l0"],
        ),
        ("bad_not_a_checkpoint.pt", &["bad_not_a_checkpoint.pt"]),
    ] {
        let err = recurrent::load::<f32>(path(file), None).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains('\n'), "{file}: {message}");
        for needle in needles {
            assert!(
                message.contains(needle),
                "{file}: {needle:?} not in: {message}"
            );
        }
        if file.contains("evil") || file.contains("module") {
            assert!(matches!(err, Error::PickleGlobal { .. }), "{file}: {err:?}");
        }
    }
    assert!(!marker.exists(), "a refused file ran code");
}

#[test]
fn half_precision_saved_back_in_its_dtype_is_the_same_bytes() {
    use safetensors::SafeTensors;
    let dir = tempfile::tempdir().unwrap();
    for (file, stored) in [
        ("cell_lstm.safetensors", StoredDtype::F32),
        ("pt_lstm_f16.pt", StoredDtype::F16),
        ("pt_gru_bf16_legacy.pt", StoredDtype::BF16),
    ] {
        let original = StateDict::read(path(file)).unwrap();
        let prefix = original.resolve_prefix(None).unwrap();
        assert_eq!(original.stored_dtype(&prefix).unwrap(), stored);
        let layer = recurrent::load::<f32>(path(file), None).unwrap();
        let out = dir.path().join(format!("{file}.safetensors"));
        save_as(&layer, &out, stored, &Default::default()).unwrap();
        let saved = std::fs::read(&out).unwrap();
        let saved = SafeTensors::deserialize(&saved).unwrap();
        let back = StateDict::read(&out).unwrap();
        assert_eq!(back.stored_dtype("").unwrap(), stored, "{file}");
        for (name, _) in layer.named_parameters() {
            let view = saved.tensor(&name).unwrap();
            // Widening is exact and narrowing rounds to nearest, so every value comes
            // back as the same bits: compare as f64 (exact for all four dtypes).
            let a = original.tensor::<f64>(&format!("{prefix}{name}")).unwrap();
            let b = back.tensor::<f64>(&name).unwrap();
            assert_eq!(a, b, "{file}: {name}");
            assert_eq!(view.dtype().bitsize() / 8 * a.len(), view.data().len());
        }
    }
}

#[test]
fn cells_load_as_cells_and_step_as_torch_loops_them() {
    use ndarray::Axis;
    use recurrent::{GruCell, LstmCell};
    // LSTMCell(10, 20): output[t] is h after step t, from zeros.
    let cell = LstmCell::<f32>::load(path("cell_lstm.pt"), None).unwrap();
    assert_eq!(cell.to_string(), "LSTMCell(10, 20)");
    let x = npy::<f32>("cell_lstm_input.npy");
    let want = npy::<f32>("cell_lstm_output.npy");
    let mut state: Option<(ArrayD<f32>, ArrayD<f32>)> = None;
    for (t, x_t) in x.axis_iter(Axis(0)).enumerate() {
        let (h, c) = match &state {
            None => cell.forward(x_t, None).unwrap(),
            Some((h, c)) => cell.forward(x_t, (h.view(), c.view())).unwrap(),
        };
        let want_t = want.index_axis(Axis(0), t).to_owned();
        assert_close(&h, &want_t, &format!("LSTMCell step {t}"));
        state = Some((h, c));
    }
    let gru = GruCell::<f32>::load(path("cell_gru.safetensors"), None).unwrap();
    assert_eq!(gru.to_string(), "GRUCell(4, 6)");
    // A layer that is one cell loads as one; one that is not is refused, saying why.
    let err = LstmCell::<f32>::load(path("pt_lstm_zip.pt"), None).unwrap_err();
    assert!(err.to_string().contains("num_layers=2"), "{err}");
    let err = GruCell::<f32>::load(path("cell_lstm.pt"), None).unwrap_err();
    assert!(matches!(err, Error::WrongKind { .. }), "{err:?}");
}
