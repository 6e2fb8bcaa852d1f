//! Parity with torch.nn.RNN on PyTorch-generated fixtures: every constructor option and
//! input form, float32 and float64, through both the reference loop and the fast path.

use crate::common;

use std::path::Path;

use common::{assert_close, fixtures};
use ndarray::ArrayD;
use recurrent::io::safetensors::StateDict;
use recurrent::{reference, Float, Nonlinearity, Rnn, RnnConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct CaseConfig {
    input_size: usize,
    hidden_size: usize,
    num_layers: usize,
    nonlinearity: String,
    bias: bool,
    batch_first: bool,
    bidirectional: bool,
    dropout: f64,
    dtype: String,
    unbatched: bool,
    has_h0: bool,
}

impl CaseConfig {
    fn to_config(&self) -> RnnConfig {
        RnnConfig::new(self.input_size, self.hidden_size)
            .num_layers(self.num_layers)
            .nonlinearity(self.nonlinearity.parse::<Nonlinearity>().unwrap())
            .bias(self.bias)
            .batch_first(self.batch_first)
            .bidirectional(self.bidirectional)
            .dropout(self.dropout)
    }
}

fn check_case<T: Float>(path: &Path, dict: &StateDict, case: &CaseConfig) {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    // The fixture file is a state dict with extra tensors (input, output, ...) beside the
    // parameters: loading it also exercises "unrelated tensors are ignored".
    let prefix = dict.resolve_prefix(None).unwrap();
    assert_eq!(prefix, "");
    let mut config = dict.infer_config(&prefix).unwrap();
    // dropout is not in the tensors or (for these files) the metadata.
    config.dropout = case.dropout;
    assert_eq!(config, case.to_config(), "{name}: inferred configuration");
    let rnn: Rnn<T> = dict.load_rnn(&prefix, config).unwrap();

    let input: ArrayD<T> = dict.tensor("input").unwrap();
    let h0: Option<ArrayD<T>> = case.has_h0.then(|| dict.tensor("h0").unwrap());
    assert_eq!(input.ndim(), if case.unbatched { 2 } else { 3 }, "{name}");
    let want_out: ArrayD<T> = dict.tensor("output").unwrap();
    let want_hn: ArrayD<T> = dict.tensor("h_n").unwrap();

    let h0_before = h0.clone();
    let (out, hn) = rnn
        .forward(input.view(), h0.as_ref().map(|h| h.view()))
        .unwrap();
    assert_close(&out, &want_out, &format!("{name}: fast output"));
    assert_close(&hn, &want_hn, &format!("{name}: fast h_n"));
    assert_eq!(h0, h0_before, "{name}: h_0 must not be modified");

    let (out, hn) = reference::forward(&rnn, input.view(), h0.as_ref().map(|h| h.view())).unwrap();
    assert_close(&out, &want_out, &format!("{name}: reference output"));
    assert_close(&hn, &want_hn, &format!("{name}: reference h_n"));
}

#[test]
fn every_fixture_matches_torch() {
    let dir = fixtures().join("forward");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 50,
        "expected the generated fixtures in {dir:?}"
    );
    let (mut f32s, mut f64s) = (0, 0);
    for path in &paths {
        let dict = StateDict::read(path).unwrap();
        let case: CaseConfig = serde_json::from_str(&dict.metadata()["config"]).unwrap();
        match case.dtype.as_str() {
            "float32" => {
                check_case::<f32>(path, &dict, &case);
                f32s += 1;
            }
            "float64" => {
                check_case::<f64>(path, &dict, &case);
                f64s += 1;
            }
            other => panic!("{path:?}: dtype {other}"),
        }
    }
    assert!(f32s >= 25 && f64s >= 25, "{f32s} f32 and {f64s} f64 cases");
}

/// Every option of the constructor appears in some fixture (guards the generator).
#[test]
fn fixtures_cover_every_option() {
    let dir = fixtures().join("forward");
    let mut seen = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let dict = StateDict::read(entry.unwrap().path()).unwrap();
        let c: CaseConfig = serde_json::from_str(&dict.metadata()["config"]).unwrap();
        let input = dict.shape("input").unwrap().to_vec();
        for (flag, label) in [
            (c.num_layers == 1, "1 layer"),
            (c.num_layers == 2, "2 layers"),
            (c.num_layers == 3, "3 layers"),
            (c.nonlinearity == "tanh", "tanh"),
            (c.nonlinearity == "relu", "relu"),
            (!c.bias, "no bias"),
            (c.batch_first && !c.unbatched, "batch_first"),
            (c.bidirectional && c.num_layers > 1, "deep bidirectional"),
            (c.unbatched, "unbatched"),
            (c.unbatched && c.has_h0, "unbatched with h0"),
            (c.has_h0 && !c.unbatched, "batched with h0"),
            (!c.has_h0, "no h0"),
            (c.dropout > 0.0, "dropout (eval)"),
            (!c.unbatched && input.contains(&0), "empty batch"),
            (
                input[if c.batch_first && !c.unbatched { 1 } else { 0 }] == 1,
                "L=1",
            ),
        ] {
            if flag {
                seen.insert(format!("{}:{label}", c.dtype));
            }
        }
    }
    let labels = [
        "1 layer",
        "2 layers",
        "3 layers",
        "tanh",
        "relu",
        "no bias",
        "batch_first",
        "deep bidirectional",
        "unbatched",
        "unbatched with h0",
        "batched with h0",
        "no h0",
        "dropout (eval)",
        "empty batch",
        "L=1",
    ];
    for dtype in ["float32", "float64"] {
        for label in labels {
            assert!(
                seen.contains(&format!("{dtype}:{label}")),
                "no fixture for {dtype} {label}"
            );
        }
    }
}
