//! Parity with torch.nn.LSTM (with and without proj_size), torch.nn.GRU, and variable-
//! length batches of all three kinds (pack_padded_sequence -> layer ->
//! pad_packed_sequence), on PyTorch fixtures: the fast path and the reference loop, both
//! dtypes, at torch.testing.assert_close's default tolerances.

use crate::common;

use std::path::PathBuf;

use common::{assert_close, fixtures};
use ndarray::ArrayD;
use recurrent::io::safetensors::StateDict;
use recurrent::{reference, Float, Gru, Kind, Lstm, Nonlinearity, Rnn};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
struct Case {
    mode: String,
    input_size: usize,
    hidden_size: usize,
    num_layers: usize,
    nonlinearity: Option<String>,
    bias: bool,
    batch_first: bool,
    bidirectional: bool,
    dropout: f64,
    proj_size: usize,
    dtype: String,
    unbatched: bool,
    has_h0: bool,
    has_c0: bool,
    #[serde(default)]
    lengths: bool,
}

fn files(folder: &str) -> Vec<PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    paths
}

fn check<T: Float>(path: &std::path::Path, dict: &StateDict, case: &Case) {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let mut config = dict.infer_config("").unwrap();
    config.dropout = case.dropout;
    config.batch_first = case.batch_first;
    if let Some(nl) = &case.nonlinearity {
        config.nonlinearity = nl.parse::<Nonlinearity>().unwrap();
    }
    let want_kind = match case.mode.as_str() {
        "lstm" => Kind::Lstm,
        "gru" => Kind::Gru,
        _ => Kind::Rnn,
    };
    assert_eq!(
        (
            config.kind,
            config.input_size,
            config.hidden_size,
            config.num_layers
        ),
        (
            want_kind,
            case.input_size,
            case.hidden_size,
            case.num_layers
        ),
        "{name}"
    );
    assert_eq!(
        (config.bias, config.bidirectional, config.proj_size),
        (case.bias, case.bidirectional, case.proj_size),
        "{name}"
    );
    let layers = dict.load_layers::<T>("", config.clone()).unwrap();
    let input: ArrayD<T> = dict.tensor("input").unwrap();
    assert_eq!(input.ndim(), if case.unbatched { 2 } else { 3 }, "{name}");
    let h0: Option<ArrayD<T>> = case.has_h0.then(|| dict.tensor("h0").unwrap());
    let c0: Option<ArrayD<T>> = case.has_c0.then(|| dict.tensor("c0").unwrap());
    let lengths: Option<Vec<usize>> = case.lengths.then(|| dict.tensor_usize("lengths").unwrap());
    let want_out: ArrayD<T> = dict.tensor("output").unwrap();
    let want_hn: ArrayD<T> = dict.tensor("h_n").unwrap();
    let want_cn: Option<ArrayD<T>> = (want_kind == Kind::Lstm).then(|| dict.tensor("c_n").unwrap());
    let (x, h, c, l) = (
        input.view(),
        h0.as_ref().map(|a| a.view()),
        c0.as_ref().map(|a| a.view()),
        lengths.as_deref(),
    );

    // Fast path, through the typed layer.
    let (out, hn, cn) = match want_kind {
        Kind::Rnn => {
            let rnn = Rnn::from_layers(layers.clone()).unwrap();
            let (o, h) = match l {
                Some(l) => rnn.forward_padded(x, l, h).unwrap(),
                None => rnn.forward(x, h).unwrap(),
            };
            (o, h, None)
        }
        Kind::Lstm => {
            let lstm = Lstm::from_layers(layers.clone()).unwrap();
            let state = h.zip(c);
            let (o, (h, c)) = match l {
                Some(l) => lstm.forward_padded(x, l, state).unwrap(),
                None => lstm.forward(x, state).unwrap(),
            };
            (o, h, Some(c))
        }
        Kind::Gru => {
            let gru = Gru::from_layers(layers.clone()).unwrap();
            let (o, h) = match l {
                Some(l) => gru.forward_padded(x, l, h).unwrap(),
                None => gru.forward(x, h).unwrap(),
            };
            (o, h, None)
        }
    };
    assert_close(&out, &want_out, &format!("{name}: fast output"));
    assert_close(&hn, &want_hn, &format!("{name}: fast h_n"));
    if let (Some(cn), Some(want)) = (&cn, &want_cn) {
        assert_close(cn, want, &format!("{name}: fast c_n"));
    }

    // The reference loop.
    let (out, hn, cn) = reference::forward_layers(
        &layers,
        input.view(),
        h0.as_ref().map(|a| a.view()),
        c0.as_ref().map(|a| a.view()),
        l,
    )
    .unwrap();
    assert_close(&out, &want_out, &format!("{name}: reference output"));
    assert_close(&hn, &want_hn, &format!("{name}: reference h_n"));
    if let (Some(cn), Some(want)) = (&cn, &want_cn) {
        assert_close(cn, want, &format!("{name}: reference c_n"));
    }
}

fn run_folder(folder: &str, at_least: usize) {
    let paths = files(folder);
    assert!(
        paths.len() >= at_least,
        "{folder}: {} fixtures",
        paths.len()
    );
    for path in &paths {
        let dict = StateDict::read(path).unwrap();
        let case: Case = serde_json::from_str(&dict.metadata()["config"]).unwrap();
        match case.dtype.as_str() {
            "float32" => check::<f32>(path, &dict, &case),
            "float64" => check::<f64>(path, &dict, &case),
            other => panic!("{path:?}: {other}"),
        }
    }
}

#[test]
fn lstm_matches_torch() {
    run_folder("lstm", 40);
}

#[test]
fn gru_matches_torch() {
    run_folder("gru", 30);
}

#[test]
fn variable_lengths_match_torch_for_every_kind() {
    run_folder("lengths", 20);
}
