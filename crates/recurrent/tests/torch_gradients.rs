//! Gradients against torch autograd on PyTorch fixtures (fixtures/grads/): every RNN case
//! without variable lengths, float64 at rtol 1e-7 / atol 1e-7 and float32 at rtol 1e-4 /
//! atol 1e-5. (The LSTM, GRU and variable-length cases in the folder wait for their
//! backward passes.)

mod common;

use common::{assert_close_tol, fixtures};
use ndarray::ArrayD;
use recurrent::io::safetensors::StateDict;
use recurrent::{Float, Kind, Nonlinearity, Rnn};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    mode: String,
    nonlinearity: Option<String>,
    batch_first: bool,
    dtype: String,
    has_h0: bool,
    has_grad_h_n: bool,
    lengths: bool,
}

fn check<T: Float>(name: &str, dict: &StateDict, case: &Case, rtol: f64, atol: f64) {
    let mut config = dict.infer_config("").unwrap();
    assert_eq!(config.kind, Kind::Rnn, "{name}");
    config.batch_first = case.batch_first;
    config.nonlinearity = case
        .nonlinearity
        .as_deref()
        .unwrap_or("tanh")
        .parse::<Nonlinearity>()
        .unwrap();
    let rnn: Rnn<T> = dict.load_rnn("", config).unwrap();
    let input: ArrayD<T> = dict.tensor("input").unwrap();
    let h0: Option<ArrayD<T>> = case.has_h0.then(|| dict.tensor("h0").unwrap());
    let go: ArrayD<T> = dict.tensor("grad_output").unwrap();
    let ghn: Option<ArrayD<T>> = case.has_grad_h_n.then(|| dict.tensor("grad_h_n").unwrap());
    let grads = rnn
        .backward(
            input.view(),
            h0.as_ref().map(|h| h.view()),
            go.view(),
            ghn.as_ref().map(|g| g.view()),
        )
        .unwrap();
    for param in rnn.parameter_names() {
        let want: ArrayD<T> = dict.tensor(&format!("grad.{param}")).unwrap();
        assert_close_tol(
            grads.parameter(&param).unwrap(),
            &want,
            rtol,
            atol,
            &format!("{name}: grad {param}"),
        );
    }
    let want: ArrayD<T> = dict.tensor("grad.input").unwrap();
    assert_close_tol(
        &grads.input,
        &want,
        rtol,
        atol,
        &format!("{name}: grad input"),
    );
    if case.has_h0 {
        let want: ArrayD<T> = dict.tensor("grad.h0").unwrap();
        assert_close_tol(&grads.h0, &want, rtol, atol, &format!("{name}: grad h0"));
    }
}

#[test]
fn rnn_gradients_match_torch_autograd() {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join("grads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let (mut checked, mut waiting) = (0, 0);
    for path in &paths {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let dict = StateDict::read(path).unwrap();
        let case: Case = serde_json::from_str(&dict.metadata()["config"]).unwrap();
        if !case.mode.starts_with("rnn") || case.lengths {
            waiting += 1;
            continue;
        }
        match case.dtype.as_str() {
            "float64" => check::<f64>(&name, &dict, &case, 1e-7, 1e-7),
            _ => check::<f32>(&name, &dict, &case, 1e-4, 1e-5),
        }
        checked += 1;
    }
    assert!(checked >= 28, "{checked} RNN cases checked");
    assert!(waiting > 0);
}
