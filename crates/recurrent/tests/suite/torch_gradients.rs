//! Gradients against torch autograd on PyTorch fixtures (fixtures/grads/): every RNN,
//! LSTM (with and without proj_size) and GRU case, with and without variable lengths,
//! float64 at rtol 1e-7 / atol 1e-7 and float32 at rtol 1e-4 / atol 1e-5.

use crate::common;

use common::{assert_close_tol, fixtures};
use ndarray::ArrayD;
use recurrent::io::safetensors::StateDict;
use recurrent::{Float, Gru, Kind, Lstm, Nonlinearity, Rnn};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    nonlinearity: Option<String>,
    batch_first: bool,
    dtype: String,
    has_h0: bool,
    has_c0: bool,
    has_grad_h_n: bool,
    has_grad_c_n: bool,
    lengths: bool,
}

fn check<T: Float>(name: &str, dict: &StateDict, case: &Case, rtol: f64, atol: f64) {
    let mut config = dict.infer_config("").unwrap();
    config.batch_first = case.batch_first;
    if let Some(nl) = &case.nonlinearity {
        config.nonlinearity = nl.parse::<Nonlinearity>().unwrap();
    }
    let layers = dict.load_layers::<T>("", config.clone()).unwrap();
    let get = |n: &str| -> ArrayD<T> { dict.tensor(n).unwrap() };
    let input = get("input");
    let h0 = case.has_h0.then(|| get("h0"));
    let c0 = case.has_c0.then(|| get("c0"));
    let go = get("grad_output");
    let ghn = case.has_grad_h_n.then(|| get("grad_h_n"));
    let gcn = case.has_grad_c_n.then(|| get("grad_c_n"));
    let lengths = case.lengths.then(|| dict.tensor_usize("lengths").unwrap());
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
    let grads = match config.kind {
        Kind::Rnn => {
            let m = Rnn::from_layers(layers).unwrap();
            match &lengths {
                Some(l) => m.backward_padded(x, l, h, g, gh),
                None => m.backward(x, h, g, gh),
            }
        }
        Kind::Gru => {
            let m = Gru::from_layers(layers).unwrap();
            match &lengths {
                Some(l) => m.backward_padded(x, l, h, g, gh),
                None => m.backward(x, h, g, gh),
            }
        }
        Kind::Lstm => {
            let m = Lstm::from_layers(layers).unwrap();
            let state = h.zip(c);
            match &lengths {
                Some(l) => m.backward_padded(x, l, state, g, (gh, gc)),
                None => m.backward(x, state, g, (gh, gc)),
            }
        }
    }
    .unwrap();
    let names: Vec<String> = grads.parameters.iter().map(|(n, _)| n.clone()).collect();
    assert!(!names.is_empty(), "{name}");
    for param in &names {
        let want: ArrayD<T> = get(&format!("grad.{param}"));
        assert_close_tol(
            grads.parameter(param).unwrap(),
            &want,
            rtol,
            atol,
            &format!("{name}: grad {param}"),
        );
    }
    assert_close_tol(
        &grads.input,
        &get("grad.input"),
        rtol,
        atol,
        &format!("{name}: grad input"),
    );
    if case.has_h0 {
        assert_close_tol(
            &grads.h0,
            &get("grad.h0"),
            rtol,
            atol,
            &format!("{name}: grad h0"),
        );
    }
    if case.has_c0 {
        assert_close_tol(
            grads.c0.as_ref().unwrap(),
            &get("grad.c0"),
            rtol,
            atol,
            &format!("{name}: grad c0"),
        );
    }
}

#[test]
fn gradients_match_torch_autograd() {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join("grads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut checked = 0;
    for path in &paths {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let dict = StateDict::read(path).unwrap();
        let case: Case = serde_json::from_str(&dict.metadata()["config"]).unwrap();
        match case.dtype.as_str() {
            "float64" => check::<f64>(&name, &dict, &case, 1e-7, 1e-7),
            _ => check::<f32>(&name, &dict, &case, 1e-4, 1e-5),
        }
        checked += 1;
    }
    assert!(checked >= 70, "{checked} cases checked");
}
