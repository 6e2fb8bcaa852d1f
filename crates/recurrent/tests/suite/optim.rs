//! `recurrent::optim` against torch.optim and torch.nn.utils.clip_grad_norm_, on
//! PyTorch fixtures (fixtures/optim/, scripts/fixtures_optim.py): every step of every
//! case, float32 and float64, at torch.testing.assert_close's default tolerances; the
//! final optimizer state too; and torch's hyper-parameter checks, message for message.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::{default_tolerances, fixtures};
use ndarray::{ArrayD, IxDyn};
use recurrent::io::safetensors::StateDict;
use recurrent::optim::{
    clip_grad_norm_, Adam, AdamConfig, AdamState, AdamW, AdamWConfig, Optimizer, Parameters, Sgd,
    SgdConfig,
};
use recurrent::{Error, Float, Gru, GruCell, Kind, RnnConfig};
use serde_json::Value;

fn optim_dir() -> PathBuf {
    fixtures().join("optim")
}

/// The fixture files whose name contains `part`, sorted.
fn files(part: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(optim_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && p.file_name().unwrap().to_string_lossy().contains(part)
        })
        .collect();
    paths.sort();
    paths
}

/// assert_close with torch's default tolerances for `T`, NaN equal to NaN.
fn assert_close<T: Float>(actual: &ArrayD<T>, expected: &ArrayD<T>, what: &str) {
    let (rtol, atol) = default_tolerances(T::DTYPE);
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    for (i, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
        let (a, e) = (a.as_f64(), e.as_f64());
        let ok = (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= atol + rtol * e.abs();
        assert!(
            ok,
            "{what}: element {i}: got {a}, expected {e} (rtol {rtol}, atol {atol})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Optimizer steps
// ---------------------------------------------------------------------------------------

enum Opt<T> {
    Sgd(Sgd<T>),
    Adam(Adam<T>),
    AdamW(AdamW<T>),
}

impl<T: Float> Opt<T> {
    /// The optimizer of a case, from torch's defaults plus the options it gave.
    fn from_meta(optimizer: &str, options: &Value) -> Self {
        let num = |key: &str| options.get(key).map(|v| v.as_f64().unwrap());
        let flag = |key: &str| options.get(key).map(|v| v.as_bool().unwrap());
        let betas = options.get("betas").map(|b| {
            let b = b.as_array().unwrap();
            (b[0].as_f64().unwrap(), b[1].as_f64().unwrap())
        });
        macro_rules! adam_like {
            ($config:ident, $ty:ident) => {{
                let mut c = $config::default();
                if let Some(lr) = num("lr") {
                    c = c.lr(lr);
                }
                if let Some((b1, b2)) = betas {
                    c = c.betas(b1, b2);
                }
                if let Some(eps) = num("eps") {
                    c = c.eps(eps);
                }
                if let Some(wd) = num("weight_decay") {
                    c = c.weight_decay(wd);
                }
                if let Some(a) = flag("amsgrad") {
                    c = c.amsgrad(a);
                }
                Opt::$ty($ty::new(c).unwrap())
            }};
        }
        match optimizer {
            "SGD" => {
                let mut c = SgdConfig::default();
                if let Some(lr) = num("lr") {
                    c = c.lr(lr);
                }
                if let Some(m) = num("momentum") {
                    c = c.momentum(m);
                }
                if let Some(d) = num("dampening") {
                    c = c.dampening(d);
                }
                if let Some(wd) = num("weight_decay") {
                    c = c.weight_decay(wd);
                }
                if let Some(n) = flag("nesterov") {
                    c = c.nesterov(n);
                }
                Opt::Sgd(Sgd::new(c).unwrap())
            }
            "Adam" => adam_like!(AdamConfig, Adam),
            "AdamW" => adam_like!(AdamWConfig, AdamW),
            other => panic!("unknown optimizer {other}"),
        }
    }

    fn as_dyn(&mut self) -> &mut dyn Optimizer<T> {
        match self {
            Opt::Sgd(o) => o,
            Opt::Adam(o) => o,
            Opt::AdamW(o) => o,
        }
    }

    fn adam_state(&self, name: &str) -> Option<&AdamState<T>> {
        match self {
            Opt::Sgd(_) => None,
            Opt::Adam(o) => o.state(name),
            Opt::AdamW(o) => o.state(name),
        }
    }
}

/// Runs one case on `layer` (loaded from the fixture's initial parameters): every step,
/// every parameter after it, and the final state. Returns the number of steps.
fn run_case<T: Float, P: Parameters<T>>(path: &Path, dict: &StateDict, layer: &mut P) -> usize {
    let meta = dict.metadata();
    let case = path.file_stem().unwrap().to_string_lossy().to_string();
    let options: Value = serde_json::from_str(&meta["options"]).unwrap();
    let steps: usize = meta["steps"].parse().unwrap();
    let mut opt = Opt::<T>::from_meta(&meta["optimizer"], &options);
    let names = layer.parameter_names();
    let stored: HashSet<&str> = dict.names().into_iter().collect();
    let mut skipped = 0;
    for k in 0..steps {
        let grads: Vec<(String, ArrayD<T>)> = names
            .iter()
            .filter(|n| stored.contains(format!("grad.{k}.{n}").as_str()))
            .map(|n| {
                (
                    n.clone(),
                    dict.tensor::<T>(&format!("grad.{k}.{n}")).unwrap(),
                )
            })
            .collect();
        skipped += names.len() - grads.len();
        // Half the cases through the trait object, half through the inherent methods.
        if k % 2 == 0 {
            opt.as_dyn().step(layer, &grads).unwrap();
        } else {
            match &mut opt {
                Opt::Sgd(o) => o.step(layer, &grads),
                Opt::Adam(o) => o.step(layer, &grads),
                Opt::AdamW(o) => o.step(layer, &grads),
            }
            .unwrap();
        }
        for n in &names {
            let want = dict.tensor::<T>(&format!("param.{k}.{n}")).unwrap();
            let got = layer.parameter(n).unwrap().to_owned();
            assert_close(&got, &want, &format!("{case}: {n} after step {k}"));
            // SGD is torch's arithmetic exactly, fused multiply-adds included (torch's
            // CPU kernels use them on x86-64 with AVX2 or AVX-512, where these fixtures
            // were made; regenerated on a CPU without FMA, this check would fail).
            if matches!(opt, Opt::Sgd(_)) {
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, e)| a.as_f64().to_bits() == e.as_f64().to_bits());
                assert!(
                    same,
                    "{case}: {n} after step {k} is not bit-identical to torch's"
                );
            }
        }
    }
    assert_eq!(skipped, 2, "{case}: every case skips two gradients");

    // The final state, as torch's optimizer.state holds it.
    for n in &names {
        let tensor = |key: &str| {
            let full = format!("state.{key}.{n}");
            stored
                .contains(full.as_str())
                .then(|| dict.tensor::<T>(&full).unwrap())
        };
        match &opt {
            Opt::Sgd(o) => match (o.momentum_buffer(n), tensor("momentum_buffer")) {
                (Some(got), Some(want)) => {
                    assert_close(got, &want, &format!("{case}: momentum_buffer {n}"))
                }
                (None, None) => {}
                (got, want) => panic!("{case}: momentum_buffer {n}: {got:?} vs {want:?}"),
            },
            _ => {
                let state = opt.adam_state(n).unwrap();
                let want_step = tensor("step").unwrap();
                assert_eq!(
                    state.step as f64,
                    want_step.first().unwrap().as_f64(),
                    "{case}: {n}"
                );
                let pairs = [
                    ("exp_avg", Some(&state.exp_avg)),
                    ("exp_avg_sq", Some(&state.exp_avg_sq)),
                    ("max_exp_avg_sq", state.max_exp_avg_sq.as_ref()),
                ];
                for (key, got) in pairs {
                    match (got, tensor(key)) {
                        (Some(got), Some(want)) => {
                            assert_close(got, &want, &format!("{case}: {key} {n}"))
                        }
                        (None, None) => {}
                        (got, want) => panic!("{case}: {key} {n}: {got:?} vs {want:?}"),
                    }
                }
            }
        }
    }
    steps
}

fn run_file(path: &Path) -> usize {
    let dict = StateDict::read(path).unwrap();
    let config = dict.infer_config("").unwrap();
    let dtype = dict.metadata()["dtype"].clone();
    macro_rules! with_type {
        ($t:ty) => {
            match config.kind {
                Kind::Rnn => {
                    run_case::<$t, _>(path, &dict, &mut dict.load_rnn("", config).unwrap())
                }
                Kind::Lstm => {
                    run_case::<$t, _>(path, &dict, &mut dict.load_lstm("", config).unwrap())
                }
                Kind::Gru => {
                    run_case::<$t, _>(path, &dict, &mut dict.load_gru("", config).unwrap())
                }
            }
        };
    }
    match dtype.as_str() {
        "float32" => with_type!(f32),
        "float64" => with_type!(f64),
        other => panic!("{}: dtype {other}", path.display()),
    }
}

/// Runs every fixture of `optimizer`; returns (cases, of them LSTM cases).
fn run_optimizer(optimizer: &str) -> (usize, usize) {
    let (mut cases, mut lstm) = (0, 0);
    for path in files("") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("_clip_") {
            continue;
        }
        let dict = StateDict::read(&path).unwrap();
        if dict.metadata()["optimizer"] != optimizer {
            continue;
        }
        assert_eq!(run_file(&path), 4, "{name}");
        cases += 1;
        lstm += usize::from(name.contains("_lstm_"));
    }
    (cases, lstm)
}

#[test]
fn sgd_matches_torch() {
    // plain (default lr and 0.1), momentum, nesterov, weight decay (with and without
    // momentum), dampening on the RNN; nesterov + weight decay on the LSTM; both dtypes.
    assert_eq!(run_optimizer("SGD"), (16, 2));
}

#[test]
fn adam_matches_torch() {
    // defaults, custom betas/eps, L2 weight decay, amsgrad; amsgrad + L2 on the LSTM.
    assert_eq!(run_optimizer("Adam"), (10, 2));
}

#[test]
fn adamw_matches_torch() {
    // defaults (weight_decay 1e-2), custom, amsgrad; one LSTM case.
    assert_eq!(run_optimizer("AdamW"), (8, 2));
}

// ---------------------------------------------------------------------------------------
// clip_grad_norm_
// ---------------------------------------------------------------------------------------

fn clip_case<T: Float>(path: &Path, dict: &StateDict) {
    let case = path.file_stem().unwrap().to_string_lossy().to_string();
    let meta = dict.metadata();
    let max_norm: f64 = meta["max_norm"].parse().unwrap();
    let norm_type: f64 = meta["norm_type"].parse().unwrap();
    let mut names: Vec<String> = dict
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("grad.").map(str::to_string))
        .collect();
    names.sort();
    let mut grads: Vec<(String, ArrayD<T>)> = names
        .iter()
        .map(|n| (n.clone(), dict.tensor::<T>(&format!("grad.{n}")).unwrap()))
        .collect();
    let total = clip_grad_norm_(&mut grads, max_norm, norm_type, false).unwrap();
    let want_total = dict.tensor::<T>("total_norm").unwrap();
    assert_eq!(want_total.shape(), &[] as &[usize]);
    assert_close(
        &ArrayD::from_elem(IxDyn(&[]), total),
        &want_total,
        &format!("{case}: total norm"),
    );
    for (n, g) in &grads {
        let want = dict.tensor::<T>(&format!("clipped.{n}")).unwrap();
        assert_close(g, &want, &format!("{case}: clipped {n}"));
    }
    // The cases do what they are named for.
    let unchanged = grads
        .iter()
        .all(|(n, g)| *g == dict.tensor::<T>(&format!("grad.{n}")).unwrap());
    assert_eq!(unchanged, case.ends_with("inactive"), "{case}");
}

#[test]
fn clip_grad_norm_matches_torch() {
    let paths = files("_clip_");
    let mut kinds = HashSet::new();
    for path in &paths {
        let dict = StateDict::read(path).unwrap();
        kinds.insert(dict.metadata()["norm_type"].clone());
        match dict.metadata()["dtype"].as_str() {
            "float32" => clip_case::<f32>(path, &dict),
            _ => clip_case::<f64>(path, &dict),
        }
    }
    // 2-norm active / inactive / at max_norm / non-finite, inf-norm active / inactive,
    // 1-norm, 3-norm; both dtypes.
    assert_eq!(paths.len(), 16);
    assert_eq!(
        kinds,
        HashSet::from(["2.0", "inf", "1.0", "3.0"].map(String::from))
    );
}

// ---------------------------------------------------------------------------------------
// torch's checks
// ---------------------------------------------------------------------------------------

fn errors_json() -> Value {
    let text = std::fs::read_to_string(optim_dir().join("errors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn float(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn hyperparameters_are_refused_like_torch() {
    let json = errors_json();
    let cases = json["optimizers"].as_array().unwrap();
    let (mut refused, mut accepted) = (0, 0);
    for case in cases {
        let optimizer = case["optimizer"].as_str().unwrap();
        let o = &case["options"];
        let num = |key: &str| o.get(key).map(float);
        let betas = o.get("betas").map(|b| (float(&b[0]), float(&b[1])));
        let amsgrad = o.get("amsgrad").and_then(Value::as_bool);
        macro_rules! adam_like {
            ($config:ident, $ty:ident) => {{
                let d = $config::default();
                let c = $config {
                    lr: num("lr").unwrap_or(d.lr),
                    betas: betas.unwrap_or(d.betas),
                    eps: num("eps").unwrap_or(d.eps),
                    weight_decay: num("weight_decay").unwrap_or(d.weight_decay),
                    amsgrad: amsgrad.unwrap_or(d.amsgrad),
                };
                assert_eq!(c.validate().is_ok(), $ty::<f64>::new(c).is_ok());
                $ty::<f32>::new(c).map(|_| ())
            }};
        }
        let result = match optimizer {
            "SGD" => {
                let d = SgdConfig::default();
                let c = SgdConfig {
                    lr: num("lr").unwrap_or(d.lr),
                    momentum: num("momentum").unwrap_or(d.momentum),
                    dampening: num("dampening").unwrap_or(d.dampening),
                    weight_decay: num("weight_decay").unwrap_or(d.weight_decay),
                    nesterov: o.get("nesterov").and_then(Value::as_bool).unwrap_or(false),
                };
                assert_eq!(c.validate().is_ok(), Sgd::<f64>::new(c).is_ok());
                Sgd::<f32>::new(c).map(|_| ())
            }
            "Adam" => adam_like!(AdamConfig, Adam),
            "AdamW" => adam_like!(AdamWConfig, AdamW),
            other => panic!("{other}"),
        };
        match (result, case["torch_error"].as_str()) {
            (Ok(()), None) => accepted += 1,
            (
                Err(Error::OptimizerOption {
                    optimizer: o,
                    message,
                }),
                Some(want),
            ) => {
                assert_eq!((o, message.as_str()), (optimizer, want), "{case}");
                refused += 1;
            }
            (got, want) => panic!("{case}: got {got:?}, torch: {want:?}"),
        }
    }
    assert_eq!((refused, accepted), (26, 12));
}

#[test]
fn nonfinite_norm_is_refused_like_torch() {
    let json = errors_json();
    let cases = json["clip"].as_array().unwrap();
    for case in cases {
        let values: Vec<f64> = case["grad"].as_array().unwrap().iter().map(float).collect();
        let grad = ArrayD::from_shape_vec(IxDyn(&[values.len()]), values).unwrap();
        let mut grads = vec![("w".to_string(), grad.clone())];
        let err = clip_grad_norm_(
            &mut grads,
            float(&case["max_norm"]),
            float(&case["norm_type"]),
            true,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NonFiniteNorm { .. }), "{err:?}");
        assert_eq!(err.to_string(), case["torch_error"].as_str().unwrap());
        // Nothing scaled (NaN compared as equal).
        assert_close(&grads[0].1, &grad, "unchanged");
    }
    assert_eq!(cases.len(), 3);
}

// ---------------------------------------------------------------------------------------
// Other layer types
// ---------------------------------------------------------------------------------------

#[test]
fn every_layer_type_is_optimizable_by_name() {
    // One SGD step is p - lr * g exactly; for a GRU, a GRU cell and a list of tensors.
    fn check<P: Parameters<f64>>(mut layer: P) {
        let names = layer.parameter_names();
        assert!(!names.is_empty());
        let before: Vec<ArrayD<f64>> = names
            .iter()
            .map(|n| layer.parameter(n).unwrap().to_owned())
            .collect();
        let grads: Vec<(String, ArrayD<f64>)> = names
            .iter()
            .zip(&before)
            .map(|(n, p)| (n.clone(), p.mapv(|x| x * 2.0 + 1.0)))
            .collect();
        let mut opt = Sgd::new(SgdConfig::new(0.25)).unwrap();
        opt.step(&mut layer, &grads).unwrap();
        for ((n, g), p) in grads.iter().zip(&before) {
            let want = p + &g.mapv(|x| x * -0.25);
            assert_eq!(layer.parameter(n).unwrap(), want.view(), "{n}");
        }
        // A gradient of the wrong shape is refused, and names the parameter.
        let bad = vec![(names[0].clone(), ArrayD::<f64>::zeros(IxDyn(&[1, 2, 3])))];
        match opt.step(&mut layer, &bad) {
            Err(Error::GradientParameterShape { name, got, .. }) => {
                assert_eq!((name, got), (names[0].clone(), vec![1, 2, 3]))
            }
            other => panic!("{other:?}"),
        }
    }
    let gru_config = RnnConfig::gru(3, 4).num_layers(2).bidirectional(true);
    check(Gru::<f64>::seeded(gru_config.clone(), 1).unwrap());
    check(GruCell::<f64>::seeded(3, 4, true, 2).unwrap());
    let gru = Gru::<f64>::seeded(gru_config, 3).unwrap();
    check(gru.layers().clone());
    let list: Vec<(String, ArrayD<f64>)> = gru
        .named_parameters()
        .map(|(n, t)| (n, t.to_owned()))
        .collect();
    check(list);
}
