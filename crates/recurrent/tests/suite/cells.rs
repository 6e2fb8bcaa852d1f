//! The cells, `RnnCell`, `LstmCell` and `GruCell`, against torch.nn.RNNCell, LSTMCell and
//! GRUCell:
//!
//! - every fixture in `tests/fixtures/cells/` (scripts/fixtures_family.py), through the
//!   fast forward and through the reference loops, at torch.testing.assert_close's
//!   default tolerances;
//! - every `kind: "cell"` case of `errors_family.json`, as a typed error that says the
//!   numbers torch says;
//! - property tests: the fast forward equals the reference on random sizes, and a cell
//!   equals a one-layer, one-step `Rnn`/`Lstm`/`Gru` built from its parameters.
//!
//! How torch's cell errors map onto this crate:
//!
//! | torch                                                          | here                 |
//! |----------------------------------------------------------------|----------------------|
//! | `XCell: Expected input to be 1D or 2D, got kD instead`         | `CellInputRank`      |
//! | `XCell: Expected hidden to be 1D or 2D` / `hx[i]` (python)     | `CellStateRank`      |
//! | `input has inconsistent input_size: got a expected b`          | `InputSize`          |
//! | `Expected 2D hiddenI (batch x hidden_size), but got kD tensor` | `CellStateRank`      |
//! | `Input batch size a doesn't match hiddenI batch size b`        | `CellBatchSize`      |
//! | `hiddenI has inconsistent hidden_size: got a, expected b`      | `CellHiddenSize`     |

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{assert_close, assert_close_tol, default_tolerances, fixtures, random_array};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2};
use proptest::prelude::*;
use recurrent::io::safetensors::StateDict;
use recurrent::{
    reference, Dtype, Error, Float, Gru, GruCell, Lstm, LstmCell, Nonlinearity, Rnn, RnnCell,
    RnnConfig,
};
use serde::Deserialize;

/// A cell's configuration as the fixtures and error cases record it.
#[derive(Debug, Clone, Deserialize)]
struct CellConfig {
    /// `"rnn_tanh"`, `"rnn_relu"`, `"lstm"` or `"gru"`.
    cell: String,
    input_size: usize,
    hidden_size: usize,
    bias: bool,
    dtype: String,
    #[serde(default)]
    unbatched: bool,
    #[serde(default)]
    has_hx: bool,
}

impl CellConfig {
    fn is_lstm(&self) -> bool {
        self.cell == "lstm"
    }
}

/// Any of the three cells, so that one test body covers them all.
enum AnyCell<T> {
    Rnn(RnnCell<T>),
    Lstm(LstmCell<T>),
    Gru(GruCell<T>),
}

fn nonlinearity(cell: &str) -> Nonlinearity {
    if cell == "rnn_relu" {
        Nonlinearity::Relu
    } else {
        Nonlinearity::Tanh
    }
}

/// `(h', c')`, `c'` for an LSTM only.
type Step<T> = (ArrayD<T>, Option<ArrayD<T>>);

impl<T: Float> AnyCell<T> {
    fn seeded(cfg: &CellConfig, seed: u64) -> Self {
        let (i, h, b) = (cfg.input_size, cfg.hidden_size, cfg.bias);
        match cfg.cell.as_str() {
            "lstm" => AnyCell::Lstm(LstmCell::seeded(i, h, b, seed).unwrap()),
            "gru" => AnyCell::Gru(GruCell::seeded(i, h, b, seed).unwrap()),
            other => AnyCell::Rnn(RnnCell::seeded(i, h, b, nonlinearity(other), seed).unwrap()),
        }
    }

    fn from_named(cfg: &CellConfig, tensors: Vec<(String, ArrayD<T>)>) -> recurrent::Result<Self> {
        let (i, h, b) = (cfg.input_size, cfg.hidden_size, cfg.bias);
        Ok(match cfg.cell.as_str() {
            "lstm" => AnyCell::Lstm(LstmCell::from_named(i, h, b, tensors)?),
            "gru" => AnyCell::Gru(GruCell::from_named(i, h, b, tensors)?),
            other => AnyCell::Rnn(RnnCell::from_named(i, h, b, nonlinearity(other), tensors)?),
        })
    }

    fn named_parameters(&self) -> Vec<(&'static str, ArrayD<T>)> {
        let owned = |(n, t): (&'static str, ArrayViewD<'_, T>)| (n, t.to_owned());
        match self {
            AnyCell::Rnn(c) => c.named_parameters().map(owned).collect(),
            AnyCell::Lstm(c) => c.named_parameters().map(owned).collect(),
            AnyCell::Gru(c) => c.named_parameters().map(owned).collect(),
        }
    }

    /// The fast forward. An LSTM takes `hx` and `cx` both or neither.
    fn forward(
        &self,
        x: &ArrayD<T>,
        hx: Option<&ArrayD<T>>,
        cx: Option<&ArrayD<T>>,
    ) -> recurrent::Result<Step<T>> {
        let (x, hx, cx) = (x.view(), hx.map(|h| h.view()), cx.map(|c| c.view()));
        match self {
            AnyCell::Rnn(c) => Ok((c.forward(x, hx)?, None)),
            AnyCell::Gru(c) => Ok((c.forward(x, hx)?, None)),
            AnyCell::Lstm(c) => {
                let state = match (hx, cx) {
                    (Some(h), Some(c)) => Some((h, c)),
                    (None, None) => None,
                    _ => panic!("an LSTM cell takes hx and cx both or neither"),
                };
                let (h, c) = c.forward(x, state)?;
                Ok((h, Some(c)))
            }
        }
    }

    /// The reference loops, on the batched forms (zeros for missing states).
    fn reference(&self, x: &ArrayD<T>, hx: Option<&ArrayD<T>>, cx: Option<&ArrayD<T>>) -> Step<T> {
        let unbatched = x.ndim() == 1;
        let batched = |a: &ArrayD<T>| -> Array2<T> {
            let v = if unbatched {
                a.view().insert_axis(Axis(0))
            } else {
                a.view()
            };
            v.into_dimensionality::<Ix2>().unwrap().to_owned()
        };
        let x2 = batched(x);
        let hidden = match self {
            AnyCell::Rnn(c) => c.hidden_size(),
            AnyCell::Lstm(c) => c.hidden_size(),
            AnyCell::Gru(c) => c.hidden_size(),
        };
        let zeros = Array2::zeros((x2.nrows(), hidden));
        let h2 = hx.map_or_else(|| zeros.clone(), batched);
        let c2 = cx.map_or_else(|| zeros.clone(), batched);
        let finish = |a: Array2<T>| {
            let a = a.into_dyn();
            if unbatched {
                a.remove_axis(Axis(0))
            } else {
                a
            }
        };
        let (xv, hv): (ArrayView2<'_, T>, ArrayView2<'_, T>) = (x2.view(), h2.view());
        match self {
            AnyCell::Rnn(c) => (
                finish(reference::cell(c.params(), c.nonlinearity(), xv, hv)),
                None,
            ),
            AnyCell::Gru(c) => (finish(reference::gru_cell(c.params(), xv, hv)), None),
            AnyCell::Lstm(c) => {
                let (h, c) = reference::lstm_cell(c.params(), xv, hv, c2.view());
                (finish(h), Some(finish(c)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// PyTorch fixtures
// ---------------------------------------------------------------------------------------

fn fixture_files() -> Vec<PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    paths
}

fn fixture_config(dict: &StateDict, path: &Path) -> CellConfig {
    let text = dict
        .metadata()
        .get("config")
        .unwrap_or_else(|| panic!("{}: no config metadata", path.display()));
    serde_json::from_str(text).unwrap()
}

fn check_fixture<T: Float>(path: &Path, dict: &StateDict, cfg: &CellConfig) {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let mut tensors = Vec::new();
    for param in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        let present = dict.shape(param).is_some();
        assert_eq!(
            present,
            cfg.bias || param.starts_with("weight"),
            "{name}: {param}"
        );
        if present {
            tensors.push((param.to_string(), dict.tensor::<T>(param).unwrap()));
        }
    }
    let cell = AnyCell::<T>::from_named(cfg, tensors).unwrap();
    let input: ArrayD<T> = dict.tensor("input").unwrap();
    assert_eq!(input.ndim() == 1, cfg.unbatched, "{name}: unbatched");
    let hx: Option<ArrayD<T>> = cfg.has_hx.then(|| dict.tensor("hx").unwrap());
    let cx: Option<ArrayD<T>> = (cfg.has_hx && cfg.is_lstm()).then(|| dict.tensor("cx").unwrap());
    let want_h: ArrayD<T> = dict.tensor("h").unwrap();
    let want_c: Option<ArrayD<T>> = cfg.is_lstm().then(|| dict.tensor("c").unwrap());

    let fast = cell.forward(&input, hx.as_ref(), cx.as_ref()).unwrap();
    let slow = cell.reference(&input, hx.as_ref(), cx.as_ref());
    for (what, (h, c)) in [("fast", fast), ("reference", slow)] {
        assert_close(&h, &want_h, &format!("{name} ({what}): h'"));
        assert_eq!(c.is_some(), want_c.is_some(), "{name}: c'");
        if let (Some(c), Some(want_c)) = (c, &want_c) {
            assert_close(&c, want_c, &format!("{name} ({what}): c'"));
        }
    }
}

/// Runs every fixture of dtype `T`; returns how many there were.
fn check_all_fixtures<T: Float>() -> usize {
    let mut checked = 0;
    for path in fixture_files() {
        let dict = StateDict::read(&path).unwrap();
        let cfg = fixture_config(&dict, &path);
        let dtype = match cfg.dtype.as_str() {
            "float32" => Dtype::F32,
            "float64" => Dtype::F64,
            other => panic!("{}: dtype {other}", path.display()),
        };
        if dtype == T::DTYPE {
            check_fixture::<T>(&path, &dict, &cfg);
            checked += 1;
        }
    }
    checked
}

#[test]
fn torch_fixtures_f32() {
    assert_eq!(check_all_fixtures::<f32>(), 20, "float32 cell fixtures");
}

#[test]
fn torch_fixtures_f64() {
    assert_eq!(check_all_fixtures::<f64>(), 32, "float64 cell fixtures");
}

// ---------------------------------------------------------------------------------------
// errors_family.json (kind "cell")
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ErrorCase {
    name: String,
    config: CellConfig,
    input_shape: Vec<usize>,
    hx_shape: Option<Vec<usize>>,
    cx_shape: Option<Vec<usize>>,
    stage: String,
    torch_error: String,
}

fn cell_error_cases() -> Vec<ErrorCase> {
    let text = std::fs::read_to_string(fixtures().join("errors_family.json")).unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .filter(|c| c["kind"] == "cell")
        .map(|c| serde_json::from_value(c).unwrap())
        .collect()
}

/// Every run of ASCII digits in `s`, as numbers, in order.
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect()
}

/// Asserts that every number in `torch` occurs in `ours` at least as often.
fn assert_numbers_included(name: &str, torch: &str, ours: &str) {
    let mut have: HashMap<u64, usize> = HashMap::new();
    for n in numbers(ours) {
        *have.entry(n).or_default() += 1;
    }
    for n in numbers(torch) {
        let slot = have.entry(n).or_default();
        assert!(
            *slot > 0,
            "{name}: torch's message has the number {n} that ours lacks\n  torch: {torch}\n  ours:  {ours}"
        );
        *slot -= 1;
    }
}

#[test]
fn cell_errors_match_torch() {
    let cases = cell_error_cases();
    assert_eq!(cases.len(), 17, "cell cases in errors_family.json");
    for case in &cases {
        let name = case.name.as_str();
        assert_eq!(case.stage, "forward", "{name}");
        let torch = case.torch_error.as_str();
        let cell = AnyCell::<f32>::seeded(&case.config, 0);
        let zeros = |shape: &Vec<usize>| ArrayD::<f32>::zeros(shape.clone());
        let input = zeros(&case.input_shape);
        let hx = case.hx_shape.as_ref().map(zeros);
        let cx = case.cx_shape.as_ref().map(zeros);
        let err = match cell.forward(&input, hx.as_ref(), cx.as_ref()) {
            Ok(_) => panic!("{name}: accepted; torch says: {torch}"),
            Err(e) => e,
        };
        let ours = err.to_string();
        assert_numbers_included(name, torch, &ours);
        // torch's class-name prefix, where it gives one, is ours too.
        let class = torch.split_once(": ").map(|(p, _)| p);
        if let Some(prefix) = class.filter(|p| p.ends_with("Cell")) {
            assert!(ours.starts_with(&format!("{prefix}: ")), "{name}: {ours}");
        }
        let label = |what: &str| -> usize {
            let at = torch.find(what).unwrap() + what.len();
            torch[at..at + 1].parse().unwrap()
        };
        let nums = numbers(torch);
        match &err {
            Error::CellInputRank { got, shape, .. } => {
                assert!(torch.contains("Expected input to be 1D or 2D"), "{name}");
                assert_eq!((*got, shape), (case.input_shape.len(), &case.input_shape));
            }
            Error::CellStateRank {
                hidden,
                input_rank,
                got,
                shape,
                ..
            } => {
                assert!(torch.contains("(batch x hidden_size)"), "{name}: {torch}");
                assert_eq!(*hidden, label("hidden"), "{name}");
                assert_eq!(*input_rank, case.input_shape.len(), "{name}");
                let state = if *hidden == 0 {
                    &case.hx_shape
                } else {
                    &case.cx_shape
                };
                assert_eq!(Some(shape), state.as_ref(), "{name}");
                assert_eq!(*got, shape.len(), "{name}");
                // torch counts the batch axis it added to an unbatched input's state.
                let torch_rank = if *input_rank == 1 { got + 1 } else { *got };
                assert_eq!(*nums.last().unwrap() as usize, torch_rank, "{name}");
            }
            Error::InputSize { expected, got } => {
                assert!(torch.contains("inconsistent input_size"), "{name}");
                assert_eq!(nums, [*got as u64, *expected as u64], "{name}");
            }
            Error::CellBatchSize {
                hidden,
                input_batch,
                got,
            } => {
                assert!(torch.contains("doesn't match hidden"), "{name}");
                assert_eq!(*hidden, label("hidden"), "{name}");
                assert_eq!(
                    nums,
                    [*input_batch as u64, *hidden as u64, *got as u64],
                    "{name}"
                );
            }
            Error::CellHiddenSize {
                hidden,
                expected,
                got,
            } => {
                assert!(torch.contains("inconsistent hidden_size"), "{name}");
                assert_eq!(
                    nums,
                    [*hidden as u64, *got as u64, *expected as u64],
                    "{name}"
                );
            }
            other => panic!("{name}: unexpected error {other:?}"),
        }
    }
}

/// The checks torch makes in Python (a state of rank other than 1 or 2) and those no
/// fixture reaches (cx's batch size).
#[test]
fn other_state_errors() {
    let x = ArrayD::<f64>::zeros(vec![2, 4]);
    let rnn = RnnCell::<f64>::seeded(4, 3, true, Nonlinearity::Tanh, 0).unwrap();
    let h3 = ArrayD::<f64>::zeros(vec![1, 2, 3]);
    let err = rnn.forward(x.view(), Some(h3.view())).unwrap_err();
    assert!(matches!(
        err,
        Error::CellStateRank {
            cell: "RNNCell",
            hidden: 0,
            input_rank: 2,
            got: 3,
            ..
        }
    ));
    // The state's rank is checked before the input's width, as torch's Python does.
    let wide = ArrayD::<f64>::zeros(vec![2, 5]);
    let err = rnn.forward(wide.view(), Some(h3.view())).unwrap_err();
    assert!(matches!(err, Error::CellStateRank { .. }), "{err}");

    let lstm = LstmCell::<f64>::seeded(4, 3, true, 0).unwrap();
    let (hx, cx) = (ArrayD::zeros(vec![2, 3]), ArrayD::zeros(vec![5, 3]));
    let err = lstm
        .forward(x.view(), Some((hx.view(), cx.view())))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::CellBatchSize {
            hidden: 1,
            input_batch: 2,
            got: 5
        }
    ));
    assert_eq!(
        err.to_string(),
        "Input batch size 2 doesn't match hidden1 (cx) batch size 5"
    );
    let cx0 = ArrayD::<f64>::zeros(vec![3]);
    let err = lstm
        .forward(x.view(), Some((hx.view(), cx0.view())))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "LSTMCell: Expected 2D hidden1 (cx: batch x hidden_size) for 2D (batched) input, but got 1D tensor of shape (3,)"
    );
}

#[test]
fn parameter_errors() {
    let mut gru = GruCell::<f32>::zeros(4, 3, false).unwrap();
    assert_eq!(gru.parameter_names(), ["weight_ih", "weight_hh"]);
    let err = gru.parameter("bias_ih").unwrap_err();
    assert!(
        matches!(err, Error::UnknownParameter { ref name, ref known }
        if name == "bias_ih" && known == &["weight_ih", "weight_hh"])
    );
    let err = gru
        .set_parameter("weight_hh", ArrayD::zeros(vec![9, 4]).view())
        .unwrap_err();
    assert!(
        matches!(err, Error::ParameterShape { ref expected, ref got, .. }
        if expected == &[9, 3] && got == &[9, 4])
    );
    assert_eq!(
        err.to_string(),
        "parameter 'weight_hh' must have shape (9, 3), got (9, 4)"
    );

    // from_named: an unknown name, a layer's name, a missing tensor.
    let good = || {
        vec![
            ("weight_ih".to_string(), ArrayD::<f32>::zeros(vec![12, 2])),
            ("weight_hh".to_string(), ArrayD::<f32>::zeros(vec![12, 3])),
        ]
    };
    assert!(LstmCell::from_named(2, 3, false, good()).is_ok());
    let mut layer_names = good();
    layer_names[0].0 = "weight_ih_l0".to_string();
    assert!(matches!(
        LstmCell::from_named(2, 3, false, layer_names),
        Err(Error::UnknownParameter { .. })
    ));
    let err = LstmCell::from_named(2, 3, true, good()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing parameter 'bias_ih' (a LSTMCell(2, 3) needs weight_ih, weight_hh, bias_ih, bias_hh; found weight_ih, weight_hh)"
    );
    let err = LstmCell::from_named(2, 4, false, good()).unwrap_err();
    assert!(matches!(err, Error::ParameterShape { .. }));
    gru.set_parameter("weight_ih", ArrayD::ones(vec![9, 4]).view())
        .unwrap();
    assert_eq!(gru.num_parameters(), 9 * 4 + 9 * 3);
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

const KINDS: [&str; 4] = ["rnn_tanh", "rnn_relu", "lstm", "gru"];

#[derive(Debug, Clone)]
struct Scenario {
    cfg: CellConfig,
    /// Ignored when unbatched.
    batch: usize,
    seed: u64,
}

impl Scenario {
    fn input<T: Float>(&self) -> ArrayD<T> {
        random_array(&self.shape(self.cfg.input_size), self.seed ^ 1, 1.0)
    }

    fn states<T: Float>(&self) -> (Option<ArrayD<T>>, Option<ArrayD<T>>) {
        if !self.cfg.has_hx {
            return (None, None);
        }
        let shape = self.shape(self.cfg.hidden_size);
        let hx = random_array(&shape, self.seed ^ 2, 1.0);
        let cx = self
            .cfg
            .is_lstm()
            .then(|| random_array(&shape, self.seed ^ 3, 2.0));
        (Some(hx), cx)
    }

    fn shape(&self, width: usize) -> Vec<usize> {
        if self.cfg.unbatched {
            vec![width]
        } else {
            vec![self.batch, width]
        }
    }
}

fn scenario(
    max_input: usize,
    max_hidden: usize,
    min_batch: usize,
) -> impl Strategy<Value = Scenario> {
    (
        0..KINDS.len(),
        1..=max_input,
        1..=max_hidden,
        min_batch..=5usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(kind, input_size, hidden_size, batch, unbatched, bias, has_hx, seed)| Scenario {
                cfg: CellConfig {
                    cell: KINDS[kind].to_string(),
                    input_size,
                    hidden_size,
                    bias,
                    dtype: String::new(),
                    unbatched,
                    has_hx,
                },
                batch,
                seed,
            },
        )
}

fn fast_equals_reference<T: Float>(sc: &Scenario, rtol: f64, atol: f64) {
    let cell = AnyCell::<T>::seeded(&sc.cfg, sc.seed);
    let x = sc.input::<T>();
    let (hx, cx) = sc.states::<T>();
    let (h, c) = cell.forward(&x, hx.as_ref(), cx.as_ref()).unwrap();
    let (want_h, want_c) = cell.reference(&x, hx.as_ref(), cx.as_ref());
    assert_eq!(h.shape(), sc.shape(sc.cfg.hidden_size).as_slice());
    assert_close_tol(&h, &want_h, rtol, atol, "h'");
    assert_eq!(c.is_some(), sc.cfg.is_lstm());
    if let (Some(c), Some(want_c)) = (c, want_c) {
        assert_close_tol(&c, &want_c, rtol, atol, "c'");
    }
}

/// A one-layer, one-step `Rnn`/`Lstm`/`Gru` built from the cell's parameters (renamed
/// `*_l0`) computes the cell: output[0] = h_n[0] = h', and c_n[0] = c'.
fn layer_equals_cell<T: Float>(sc: &Scenario, rtol: f64, atol: f64) {
    let cfg = &sc.cfg;
    let cell = AnyCell::<T>::seeded(cfg, sc.seed);
    let renamed: Vec<(String, ArrayD<T>)> = cell
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (format!("{n}_l0"), t))
        .collect();
    let x = sc.input::<T>();
    let (hx, cx) = sc.states::<T>();
    let (want_h, want_c) = cell.forward(&x, hx.as_ref(), cx.as_ref()).unwrap();

    // One time step: (1, N, H_in) / (1, H_in); states gain a layer axis.
    let x1 = x.clone().insert_axis(Axis(0));
    let hx1 = hx.map(|h| h.insert_axis(Axis(0)));
    let cx1 = cx.map(|c| c.insert_axis(Axis(0)));
    let h0 = hx1.as_ref().map(|h| h.view());
    let config = RnnConfig::new(cfg.input_size, cfg.hidden_size).bias(cfg.bias);
    let (output, h_n, c_n) = match cfg.cell.as_str() {
        "lstm" => {
            let lstm = Lstm::from_named(
                RnnConfig::lstm(cfg.input_size, cfg.hidden_size).bias(cfg.bias),
                renamed,
            )
            .unwrap();
            let state = h0.zip(cx1.as_ref().map(|c| c.view()));
            let (output, (h_n, c_n)) = lstm.forward(x1.view(), state).unwrap();
            (output, h_n, Some(c_n))
        }
        "gru" => {
            let gru = Gru::from_named(
                RnnConfig::gru(cfg.input_size, cfg.hidden_size).bias(cfg.bias),
                renamed,
            )
            .unwrap();
            let (output, h_n) = gru.forward(x1.view(), h0).unwrap();
            (output, h_n, None)
        }
        other => {
            let rnn = Rnn::from_named(config.nonlinearity(nonlinearity(other)), renamed).unwrap();
            let (output, h_n) = rnn.forward(x1.view(), h0).unwrap();
            (output, h_n, None)
        }
    };
    let first = |a: ArrayD<T>| a.index_axis_move(Axis(0), 0);
    assert_close_tol(&first(output), &want_h, rtol, atol, "output[0] vs h'");
    assert_close_tol(&first(h_n), &want_h, rtol, atol, "h_n[0] vs h'");
    assert_eq!(c_n.is_some(), want_c.is_some());
    if let (Some(c_n), Some(want_c)) = (c_n, want_c) {
        assert_close_tol(&first(c_n), &want_c, rtol, atol, "c_n[0] vs c'");
    }
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(proptest_config(96))]

    #[test]
    fn fast_equals_reference_f32(sc in scenario(24, 40, 0)) {
        let (rtol, atol) = default_tolerances(Dtype::F32);
        fast_equals_reference::<f32>(&sc, rtol, atol);
    }

    #[test]
    fn fast_equals_reference_f64(sc in scenario(24, 40, 0)) {
        fast_equals_reference::<f64>(&sc, 1e-12, 1e-12);
    }
}

proptest! {
    #![proptest_config(proptest_config(48))]

    #[test]
    fn one_step_layer_equals_cell_f32(sc in scenario(12, 24, 1)) {
        let (rtol, atol) = default_tolerances(Dtype::F32);
        layer_equals_cell::<f32>(&sc, rtol, atol);
    }

    #[test]
    fn one_step_layer_equals_cell_f64(sc in scenario(12, 24, 1)) {
        layer_equals_cell::<f64>(&sc, 1e-12, 1e-12);
    }
}

/// A seed gives a cell the parameters it gives a one-layer layer of the same sizes.
#[test]
fn seeded_cells_match_seeded_layers() {
    fn owned<'a>(
        it: impl Iterator<Item = (String, ArrayViewD<'a, f32>)>,
    ) -> Vec<(String, ArrayD<f32>)> {
        it.map(|(n, t)| (n, t.to_owned())).collect()
    }
    for bias in [true, false] {
        let rnn = Rnn::seeded(RnnConfig::new(5, 4).bias(bias), 9).unwrap();
        let lstm = Lstm::seeded(RnnConfig::lstm(5, 4).bias(bias), 9).unwrap();
        let gru = Gru::seeded(RnnConfig::gru(5, 4).bias(bias), 9).unwrap();
        let pairs = [
            (
                AnyCell::Rnn(RnnCell::<f32>::seeded(5, 4, bias, Nonlinearity::Relu, 9).unwrap()),
                owned(rnn.named_parameters()),
            ),
            (
                AnyCell::Lstm(LstmCell::seeded(5, 4, bias, 9).unwrap()),
                owned(lstm.named_parameters()),
            ),
            (
                AnyCell::Gru(GruCell::seeded(5, 4, bias, 9).unwrap()),
                owned(gru.named_parameters()),
            ),
        ];
        for (cell, layer) in pairs {
            let cell = cell.named_parameters();
            assert_eq!(cell.len(), if bias { 4 } else { 2 });
            assert_eq!(cell.len(), layer.len());
            for ((cn, ct), (ln, lt)) in cell.iter().zip(&layer) {
                assert_eq!(format!("{cn}_l0"), *ln);
                assert_eq!(ct, lt, "{cn}");
            }
        }
    }
}

/// Inputs and states in any memory layout (here transposed views) give what their
/// standard-layout copies give, bit for bit; the caller's arrays are only read.
#[test]
fn strided_inputs_and_states() {
    for kind in KINDS {
        let cfg = CellConfig {
            cell: kind.to_string(),
            input_size: 5,
            hidden_size: 7,
            bias: true,
            dtype: String::new(),
            unbatched: false,
            has_hx: true,
        };
        let cell = AnyCell::<f32>::seeded(&cfg, 3);
        let xt = random_array::<f32>(&[5, 4], 1, 1.0); // (H_in, N)
        let ht = random_array::<f32>(&[7, 4], 2, 1.0); // (H, N)
        let ct = random_array::<f32>(&[7, 4], 3, 1.0);
        let (x, h, c) = (
            xt.t().to_owned(), // standard-layout (N, ...) copies
            ht.t().to_owned(),
            ct.t().to_owned(),
        );
        let cx = cfg.is_lstm().then_some(&c);
        let want = cell.forward(&x, Some(&h), cx).unwrap();
        // The same values through transposed (column-major) views.
        let strided = match &cell {
            AnyCell::Rnn(r) => (r.forward(xt.t(), Some(ht.t())).unwrap(), None),
            AnyCell::Gru(g) => (g.forward(xt.t(), Some(ht.t())).unwrap(), None),
            AnyCell::Lstm(l) => {
                let (h, c) = l.forward(xt.t(), Some((ht.t(), ct.t()))).unwrap();
                (h, Some(c))
            }
        };
        assert_eq!(strided, want, "{kind}");
        assert_eq!(
            ht,
            random_array::<f32>(&[7, 4], 2, 1.0),
            "{kind}: hx unchanged"
        );
    }
}
