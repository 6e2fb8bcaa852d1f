//! Every LSTM/GRU/RNN error case torch raised in fixtures/errors_family.json maps to a
//! typed error with the same meaning: the same variant for every case of a kind, and
//! the same expected/got shapes where torch gives them. (The pack/pad cases are covered
//! by tests/packed.rs, the cell cases by tests/cells.rs.)

use crate::common;

use common::fixtures;
use ndarray::{ArrayD, IxDyn};
use recurrent::params::Layers;
use recurrent::{Error, Gru, Kind, Lstm, RnnConfig};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
struct Case {
    name: String,
    config: Config,
    input_shape: Option<Vec<usize>>,
    h0_shape: Option<Vec<usize>>,
    c0_shape: Option<Vec<usize>>,
    stage: String,
    torch_error: Option<String>,
}

#[derive(Deserialize, Debug)]
struct Config {
    mode: String,
    input_size: usize,
    hidden_size: usize,
    num_layers: usize,
    bias: bool,
    batch_first: bool,
    bidirectional: bool,
    proj_size: i64,
}

/// The integer tuples in a torch message, e.g. "(1, 2, 3), got [1, 2, 4]".
fn tuples(message: &str) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for ch in message.chars() {
        match (ch, &mut current) {
            ('(' | '[', _) => current = Some(String::new()),
            (')' | ']', Some(text)) => {
                let parsed: Option<Vec<usize>> =
                    text.split(',').map(|p| p.trim().parse().ok()).collect();
                if let Some(v) = parsed {
                    out.push(v);
                }
                current = None;
            }
            (c, Some(text)) => text.push(c),
            _ => {}
        }
    }
    out
}

/// torch adds a batch axis of 1 to unbatched states before checking them.
fn with_batch_axis(shape: &[usize], unbatched: bool) -> Vec<usize> {
    if unbatched {
        vec![shape[0], 1, shape[1]]
    } else {
        shape.to_vec()
    }
}

#[test]
fn every_layer_error_torch_raises_is_a_typed_error() {
    let text = std::fs::read_to_string(fixtures().join("errors_family.json")).unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let cases: Vec<Case> = all
        .into_iter()
        .filter(|c| {
            matches!(
                c["kind"].as_str(),
                Some("lstm" | "gru" | "rnn_tanh" | "rnn_relu")
            )
        })
        .map(|c| serde_json::from_value(c).unwrap())
        .collect();
    let mut checked = 0;
    for case in &cases {
        let torch = case
            .torch_error
            .clone()
            .unwrap_or_else(|| panic!("{}: torch accepted it", case.name));
        let report = |ours: &Error| {
            format!(
                "{}\n  torch: {torch}\n  ours:  {ours}\n  ({ours:?})",
                case.name
            )
        };
        if case.config.proj_size < 0 {
            // proj_size is a usize here: a negative one cannot be written down.
            checked += 1;
            continue;
        }
        let kind = match case.config.mode.as_str() {
            "lstm" => Kind::Lstm,
            "gru" => Kind::Gru,
            _ => Kind::Rnn,
        };
        let config = RnnConfig {
            kind,
            ..RnnConfig::new(case.config.input_size, case.config.hidden_size)
        }
        .num_layers(case.config.num_layers)
        .bias(case.config.bias)
        .batch_first(case.config.batch_first)
        .bidirectional(case.config.bidirectional)
        .proj_size(case.config.proj_size as usize);
        if case.stage == "constructor" {
            let err = Layers::<f32>::zeros(config).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{}", report(&err));
            assert!(
                err.to_string().contains(torch.trim_end_matches('.')),
                "{}",
                report(&err)
            );
            checked += 1;
            continue;
        }
        let shape = case.input_shape.clone().unwrap();
        let unbatched = shape.len() == 2;
        let x = ArrayD::<f32>::zeros(IxDyn(&shape));
        let h0 = case
            .h0_shape
            .as_ref()
            .map(|s| ArrayD::<f32>::zeros(IxDyn(s)));
        let c0 = case
            .c0_shape
            .as_ref()
            .map(|s| ArrayD::<f32>::zeros(IxDyn(s)));
        let err = match kind {
            Kind::Lstm => {
                let lstm = Lstm::<f32>::zeros(config).unwrap();
                let state = h0
                    .as_ref()
                    .map(|h| h.view())
                    .zip(c0.as_ref().map(|c| c.view()));
                lstm.forward(x.view(), state).unwrap_err()
            }
            _ => {
                let gru = Gru::<f32>::zeros(config).unwrap();
                gru.forward(x.view(), h0.as_ref().map(|h| h.view()))
                    .unwrap_err()
            }
        };
        // The shapes follow "size" ("hidden[1]" before it is not a shape).
        let torch_tuples = tuples(&torch[torch.find("size").unwrap_or(0)..]);
        match &err {
            Error::InputSize { expected, got } => {
                assert!(torch.starts_with("input.size(-1)"), "{}", report(&err));
                assert_eq!(torch_tuples.len(), 0);
                assert!(
                    torch.contains(&format!("Expected {expected}, got {got}")),
                    "{}",
                    report(&err)
                );
            }
            Error::HiddenShape { expected, got } | Error::CellShape { expected, got } => {
                let which = if matches!(err, Error::CellShape { .. }) {
                    "hidden[1]"
                } else {
                    "hidden"
                };
                assert!(
                    torch.contains(which) && (which == "hidden[1]" || !torch.contains("hidden[1]")),
                    "{}",
                    report(&err)
                );
                assert_eq!(
                    torch_tuples,
                    vec![
                        with_batch_axis(expected, unbatched),
                        with_batch_axis(got, unbatched)
                    ],
                    "{}",
                    report(&err)
                );
            }
            Error::HiddenRank {
                input_rank,
                hidden_rank,
            } => {
                assert!(
                    torch.contains(&format!("{input_rank}-D input")),
                    "{}",
                    report(&err)
                );
                assert!(
                    torch.contains(&format!("{hidden_rank}-D")),
                    "{}",
                    report(&err)
                );
            }
            Error::CellRank {
                input_rank,
                cell_rank,
            } => {
                assert!(
                    torch.contains(&format!("{input_rank}-D input")),
                    "{}",
                    report(&err)
                );
                assert!(
                    torch.contains(&format!(", {cell_rank}-D)")),
                    "{}",
                    report(&err)
                );
            }
            Error::EmptySequence { .. } => {
                assert!(torch.contains("sequence length"), "{}", report(&err));
            }
            _ => panic!("unexpected variant: {}", report(&err)),
        }
        checked += 1;
    }
    assert!(checked >= 25, "{checked} cases");
}
