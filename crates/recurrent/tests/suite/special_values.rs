//! IEEE special values: NaN, +∞ and -∞ in the input, h_0, c_0 or any weight or bias
//! propagate through the fast path as they do through torch and the reference loop. In
//! particular torch multiplies a zero initial state by `W_hh` when none is given
//! (`0 · NaN = NaN`, `0 · ∞ = NaN`), so the fast path may skip that product only when it
//! is exactly zero.
//!
//! Every path: the narrow kernel (H < 16), wide layers, the two-thread splits, several
//! layers (and the chunked stack), both directions, variable lengths, projections, the
//! cells and streams. Each result has its NaNs and its infinities (with their signs)
//! where the expected one has them, and its finite values within assert_close's default
//! tolerances of the expected ones.

use crate::common;

use common::{default_tolerances, fixtures, random_array};
use ndarray::{Array2, ArrayD, Axis, Ix2, Ix3};
use recurrent::io::safetensors::StateDict;
use recurrent::params::Layers;
use recurrent::{
    reference, Float, Gru, GruCell, Kind, Lstm, LstmCell, Nonlinearity, Rnn, RnnCell, RnnConfig,
};

/// Asserts that `got` has NaN exactly where `want` has NaN, the same infinities where it
/// has infinities, and finite values within assert_close's default tolerances elsewhere.
fn assert_same_specials<T: Float>(got: &ArrayD<T>, want: &ArrayD<T>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (rtol, atol) = default_tolerances(T::DTYPE);
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let (g, w) = (g.as_f64(), w.as_f64());
        let same = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            g.is_finite() && (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(same, "{what}: element {i} is {g}, expected {w}");
    }
}

const SPECIALS: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

/// A copy of `a` with `value` at flat index `at` (in its logical order).
fn with_value<T: Float>(a: &ArrayD<T>, at: usize, value: f64) -> ArrayD<T> {
    let mut a = a.as_standard_layout().into_owned();
    if let Some(v) = a.iter_mut().nth(at) {
        *v = T::of(value);
    }
    a
}

/// The flat positions a special value is placed at: the first and last elements, one in
/// the middle, and one a quarter in (in an LSTM's gate-stacked rows, the forget gate's).
/// Without `spread`, the middle one only.
fn positions(len: usize, spread: bool) -> Vec<usize> {
    match (len, spread) {
        (0, _) => vec![],
        (_, false) => vec![len / 2],
        _ => {
            let mut p = vec![0, (len / 4 + 1).min(len - 1), len / 2, len - 1];
            p.sort_unstable();
            p.dedup();
            p
        }
    }
}

/// The layer's forward through the fast path and through the reference loop:
/// `(output, h_n, c_n)` each, `c_n` for an LSTM only.
type Outputs<T> = (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>);

/// What one layer computes from its inputs.
struct Inputs<'a, T> {
    x: &'a ArrayD<T>,
    h0: Option<&'a ArrayD<T>>,
    c0: Option<&'a ArrayD<T>>,
    lengths: Option<&'a [usize]>,
}

/// The fast path (on a two-thread pool, so the split paths run where the sizes call
/// for them).
fn fast<T: Float>(
    layers: &Layers<T>,
    inputs: &Inputs<'_, T>,
    pool: &rayon::ThreadPool,
) -> Outputs<T> {
    let (x, h, c) = (
        inputs.x.view(),
        inputs.h0.map(|a| a.view()),
        inputs.c0.map(|a| a.view()),
    );
    pool.install(|| match layers.config().kind {
        Kind::Rnn => {
            let rnn = Rnn::from_layers(layers.clone()).unwrap();
            let (o, h) = match inputs.lengths {
                Some(l) => rnn.forward_padded(x, l, h).unwrap(),
                None => rnn.forward(x, h).unwrap(),
            };
            (o, h, None)
        }
        Kind::Lstm => {
            let lstm = Lstm::from_layers(layers.clone()).unwrap();
            let state = h.zip(c);
            let (o, (h, c)) = match inputs.lengths {
                Some(l) => lstm.forward_padded(x, l, state).unwrap(),
                None => lstm.forward(x, state).unwrap(),
            };
            (o, h, Some(c))
        }
        Kind::Gru => {
            let gru = Gru::from_layers(layers.clone()).unwrap();
            let (o, h) = match inputs.lengths {
                Some(l) => gru.forward_padded(x, l, h).unwrap(),
                None => gru.forward(x, h).unwrap(),
            };
            (o, h, None)
        }
    })
}

fn slow<T: Float>(layers: &Layers<T>, inputs: &Inputs<'_, T>) -> Outputs<T> {
    reference::forward_layers(
        layers,
        inputs.x.view(),
        inputs.h0.map(|a| a.view()),
        inputs.c0.map(|a| a.view()),
        inputs.lengths,
    )
    .unwrap()
}

fn compare<T: Float>(got: &Outputs<T>, want: &Outputs<T>, what: &str) {
    assert_same_specials(&got.0, &want.0, &format!("{what}: output"));
    assert_same_specials(&got.1, &want.1, &format!("{what}: h_n"));
    if let (Some(g), Some(w)) = (&got.2, &want.2) {
        assert_same_specials(g, w, &format!("{what}: c_n"));
    }
}

/// One layer configuration and input shape, and how widely to place the values.
struct Sweep {
    config: RnnConfig,
    /// `(L, N, H_in)`, or `(N, L, H_in)` when batch-first.
    shape: [usize; 3],
    lengths: Option<Vec<usize>>,
    /// Every special value at three positions of every tensor (else a few placements
    /// that cover each tensor the first step reads: for sizes whose reference is slow).
    spread: bool,
}

/// Where a special value goes: a parameter's name, or `input`, `h0`, `c0`.
type Placement = (String, usize, f64);

/// The placements of [`Sweep`]: each of NaN, +∞ and -∞ at three positions of every
/// parameter, the input and the states; or (not `spread`) NaN and +∞ in `W_hh` of the
/// first layer, NaN in `b_hh`, +∞ in the input, NaN in h_0, -∞ in c_0.
fn placements<T: Float>(
    layers: &Layers<T>,
    lengths: &[(&str, usize)],
    spread: bool,
) -> Vec<Placement> {
    let len = |name: &str| match layers.parameter(name) {
        Ok(p) => p.len(),
        Err(_) => lengths
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, l)| *l),
    };
    if !spread {
        return [
            ("weight_hh_l0", f64::NAN),
            ("weight_hh_l0", f64::INFINITY),
            ("bias_hh_l0", f64::NAN),
            ("input", f64::INFINITY),
            ("h0", f64::NAN),
            ("c0", f64::NEG_INFINITY),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), len(name) / 2, value))
        .collect();
    }
    let mut all = Vec::new();
    let names = layers.parameter_names().into_iter();
    for name in names.chain(["input", "h0", "c0"].map(String::from)) {
        for at in positions(len(&name), true) {
            for special in SPECIALS {
                all.push((name.clone(), at, special));
            }
        }
    }
    all
}

/// Places special values (see [`placements`]) in the tensors the layer reads, one at a
/// time, and compares the fast path with the reference loop: with a value in a state,
/// from the states given; otherwise with no state given and with explicit zeros (the
/// same to the reference, which multiplies zeros as torch does).
fn sweep<T: Float>(sweep: &Sweep, pool: &rayon::ThreadPool) {
    let config = &sweep.config;
    let layers = Layers::<T>::seeded(config.clone(), 11).unwrap();
    let x = random_array::<T>(&sweep.shape, 12, 0.8);
    let batch = sweep.shape[usize::from(!config.batch_first)];
    let d = config.num_directions() * config.num_layers;
    let h0 = random_array::<T>(&[d, batch, config.output_hidden_size()], 13, 0.8);
    let lstm = config.kind == Kind::Lstm;
    let c0 = random_array::<T>(&[d, batch, config.hidden_size], 14, 0.8);
    let zeros_h = ArrayD::<T>::zeros(h0.shape());
    let zeros_c = ArrayD::<T>::zeros(c0.shape());
    let lengths = sweep.lengths.as_deref();
    // The states a run starts from (c_0 only for an LSTM).
    fn inputs<'a, T>(
        x: &'a ArrayD<T>,
        h0: Option<&'a ArrayD<T>>,
        c0: Option<&'a ArrayD<T>>,
        lengths: Option<&'a [usize]>,
        lstm: bool,
    ) -> Inputs<'a, T> {
        Inputs {
            x,
            h0,
            c0: c0.filter(|_| lstm),
            lengths,
        }
    }
    let sizes = [
        ("input", x.len()),
        ("h0", h0.len()),
        ("c0", if lstm { c0.len() } else { 0 }),
    ];
    for (name, at, special) in placements(&layers, &sizes, sweep.spread) {
        let what = format!("{config} {name}[{at}] = {special}");
        match name.as_str() {
            "h0" | "c0" => {
                if name == "c0" && !lstm {
                    continue;
                }
                let (h, c) = match name.as_str() {
                    "h0" => (with_value(&h0, at, special), c0.clone()),
                    _ => (h0.clone(), with_value(&c0, at, special)),
                };
                let given = inputs(&x, Some(&h), Some(&c), lengths, lstm);
                compare(&fast(&layers, &given, pool), &slow(&layers, &given), &what);
            }
            _ => {
                let (placed, x) = if name == "input" {
                    (layers.clone(), with_value(&x, at, special))
                } else {
                    let mut placed = layers.clone();
                    let value = layers.parameter(&name).unwrap().to_owned();
                    placed
                        .set_parameter(&name, with_value(&value, at, special).view())
                        .unwrap();
                    (placed, x.clone())
                };
                let want = slow(&placed, &inputs(&x, None, None, lengths, lstm));
                let got = fast(&placed, &inputs(&x, None, None, lengths, lstm), pool);
                compare(&got, &want, &format!("{what}, no h0"));
                let got = fast(
                    &placed,
                    &inputs(&x, Some(&zeros_h), Some(&zeros_c), lengths, lstm),
                    pool,
                );
                compare(&got, &want, &format!("{what}, zero h0"));
                if sweep.spread {
                    let given = inputs(&x, Some(&h0), Some(&c0), lengths, lstm);
                    let got = fast(&placed, &given, pool);
                    compare(&got, &slow(&placed, &given), &format!("{what}, random h0"));
                }
            }
        }
    }
}

fn two_threads() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

fn small(config: RnnConfig, shape: [usize; 3]) -> Sweep {
    Sweep {
        config,
        shape,
        lengths: None,
        spread: true,
    }
}

#[test]
fn rnn_special_values_propagate_as_in_the_reference() {
    let pool = two_threads();
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        // Narrow (the fused kernel), wide, two layers both ways, batch-first.
        sweep::<f32>(
            &small(RnnConfig::new(3, 5).nonlinearity(nl), [4, 2, 3]),
            &pool,
        );
        sweep::<f64>(
            &small(RnnConfig::new(3, 20).nonlinearity(nl), [4, 3, 3]),
            &pool,
        );
        let deep = RnnConfig::new(3, 6)
            .num_layers(2)
            .bidirectional(true)
            .nonlinearity(nl);
        sweep::<f32>(&small(deep, [3, 2, 3]), &pool);
        let deep = RnnConfig::new(3, 18)
            .num_layers(2)
            .batch_first(true)
            .nonlinearity(nl);
        sweep::<f32>(&small(deep, [2, 3, 3]), &pool);
    }
    // Variable lengths (through the gated scan).
    let mut padded = small(RnnConfig::new(3, 20), [4, 3, 3]);
    padded.lengths = Some(vec![4, 2, 3]);
    sweep::<f32>(&padded, &pool);
}

#[test]
fn rnn_special_values_on_the_split_and_chunked_paths() {
    let pool = two_threads();
    // N < 16, H >= 256, N * H * H * L >= 2^24: columns split between two threads.
    let split = Sweep {
        config: RnnConfig::new(3, 256),
        shape: [128, 2, 3],
        lengths: None,
        spread: false,
    };
    sweep::<f32>(&split, &pool);
    // Two layers over more than 512 steps: the stack runs in chunks of steps.
    let chunked = Sweep {
        config: RnnConfig::new(2, 4).num_layers(2),
        shape: [520, 1, 2],
        lengths: None,
        spread: false,
    };
    sweep::<f32>(&chunked, &pool);
}

#[test]
fn lstm_special_values_propagate_as_in_the_reference() {
    let pool = two_threads();
    sweep::<f32>(&small(RnnConfig::lstm(3, 5), [4, 2, 3]), &pool);
    sweep::<f64>(&small(RnnConfig::lstm(3, 20), [3, 3, 3]), &pool);
    sweep::<f32>(
        &small(RnnConfig::lstm(3, 20).proj_size(6), [3, 2, 3]),
        &pool,
    );
    let deep = RnnConfig::lstm(3, 6).num_layers(2).bidirectional(true);
    sweep::<f32>(&small(deep, [3, 2, 3]), &pool);
    let mut padded = small(RnnConfig::lstm(3, 7).batch_first(true), [3, 4, 3]);
    padded.lengths = Some(vec![4, 1, 3]);
    sweep::<f32>(&padded, &pool);
    // 128 units in two parts, N = 2 over 32 steps: the units split in lockstep.
    let split = Sweep {
        config: RnnConfig::lstm(3, 128),
        shape: [32, 2, 3],
        lengths: None,
        spread: false,
    };
    sweep::<f32>(&split, &pool);
}

#[test]
fn gru_special_values_propagate_as_in_the_reference() {
    let pool = two_threads();
    sweep::<f32>(&small(RnnConfig::gru(3, 5), [4, 2, 3]), &pool);
    sweep::<f64>(&small(RnnConfig::gru(3, 20), [3, 3, 3]), &pool);
    let deep = RnnConfig::gru(3, 6).num_layers(2).bidirectional(true);
    sweep::<f32>(&small(deep, [3, 2, 3]), &pool);
    let mut padded = small(RnnConfig::gru(3, 7), [4, 3, 3]);
    padded.lengths = Some(vec![2, 4, 3]);
    sweep::<f32>(&padded, &pool);
    // 160 units in two parts, N = 2 over 30 steps: the units split in lockstep.
    let split = Sweep {
        config: RnnConfig::gru(3, 160),
        shape: [30, 2, 3],
        lengths: None,
        spread: false,
    };
    sweep::<f32>(&split, &pool);
}

/// A cell of any kind, fast and reference.
enum Cell<T> {
    Rnn(RnnCell<T>),
    Lstm(LstmCell<T>),
    Gru(GruCell<T>),
}

impl<T: Float> Cell<T> {
    fn set(&mut self, name: &str, value: &ArrayD<T>) {
        match self {
            Cell::Rnn(c) => c.set_parameter(name, value.view()),
            Cell::Lstm(c) => c.set_parameter(name, value.view()),
            Cell::Gru(c) => c.set_parameter(name, value.view()),
        }
        .unwrap()
    }

    fn parameters(&self) -> Vec<(&'static str, ArrayD<T>)> {
        let owned = |(n, t): (&'static str, ndarray::ArrayViewD<'_, T>)| (n, t.to_owned());
        match self {
            Cell::Rnn(c) => c.named_parameters().map(owned).collect(),
            Cell::Lstm(c) => c.named_parameters().map(owned).collect(),
            Cell::Gru(c) => c.named_parameters().map(owned).collect(),
        }
    }

    /// `(h, c)`; `state` `None` for zeros.
    fn fast(&self, x: &ArrayD<T>, state: Option<(&ArrayD<T>, &ArrayD<T>)>) -> Vec<ArrayD<T>> {
        let h = state.map(|(h, _)| h.view());
        match self {
            Cell::Rnn(c) => vec![c.forward(x.view(), h).unwrap()],
            Cell::Gru(c) => vec![c.forward(x.view(), h).unwrap()],
            Cell::Lstm(c) => {
                let (h, c) = c
                    .forward(x.view(), state.map(|(h, c)| (h.view(), c.view())))
                    .unwrap();
                vec![h, c]
            }
        }
    }

    fn slow(&self, x: &ArrayD<T>, state: Option<(&ArrayD<T>, &ArrayD<T>)>) -> Vec<ArrayD<T>> {
        let x2 = x.view().into_dimensionality::<Ix2>().unwrap();
        let batch = x2.nrows();
        let zeros = |width: usize| Array2::<T>::zeros((batch, width)).into_dyn();
        let (h, c) = match state {
            Some((h, c)) => (h.clone(), c.clone()),
            None => {
                let width = self.parameters()[1].1.shape()[1];
                (zeros(width), zeros(width))
            }
        };
        let h = h.view().into_dimensionality::<Ix2>().unwrap();
        let c = c.view().into_dimensionality::<Ix2>().unwrap();
        match self {
            Cell::Rnn(cell) => {
                vec![reference::cell(cell.params(), cell.nonlinearity(), x2, h).into_dyn()]
            }
            Cell::Gru(cell) => vec![reference::gru_cell(cell.params(), x2, h).into_dyn()],
            Cell::Lstm(cell) => {
                let (h, c) = reference::lstm_cell(cell.params(), x2, h, c);
                vec![h.into_dyn(), c.into_dyn()]
            }
        }
    }
}

#[test]
fn cells_special_values_propagate_as_in_the_reference() {
    for (kind, hidden) in [
        ("rnn", 5),
        ("relu", 20),
        ("lstm", 5),
        ("lstm", 20),
        ("gru", 20),
    ] {
        let fresh = || match kind {
            "rnn" => {
                Cell::Rnn(RnnCell::<f32>::seeded(3, hidden, true, Nonlinearity::Tanh, 1).unwrap())
            }
            "relu" => Cell::Rnn(RnnCell::seeded(3, hidden, true, Nonlinearity::Relu, 1).unwrap()),
            "lstm" => Cell::Lstm(LstmCell::seeded(3, hidden, true, 1).unwrap()),
            _ => Cell::Gru(GruCell::seeded(3, hidden, true, 1).unwrap()),
        };
        let x = random_array::<f32>(&[2, 3], 2, 0.8);
        let h = random_array::<f32>(&[2, hidden], 3, 0.8);
        let c = random_array::<f32>(&[2, hidden], 4, 0.8);
        let zeros = ArrayD::<f32>::zeros(h.shape());
        let check = |cell: &Cell<f32>,
                     x: &ArrayD<f32>,
                     state: Option<(&ArrayD<f32>, &ArrayD<f32>)>,
                     what: &str| {
            let (got, want) = (cell.fast(x, state), cell.slow(x, state));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_same_specials(g, w, &format!("{kind} cell H={hidden} {what}: result {i}"));
            }
        };
        for (name, value) in fresh().parameters() {
            for at in positions(value.len(), true) {
                for special in SPECIALS {
                    let mut cell = fresh();
                    cell.set(name, &with_value(&value, at, special));
                    for (state, label) in [(None, "no hx"), (Some((&zeros, &zeros)), "zero hx")] {
                        check(
                            &cell,
                            &x,
                            state,
                            &format!("{name}[{at}] = {special}, {label}"),
                        );
                    }
                }
            }
        }
        let cell = fresh();
        for at in positions(x.len(), true) {
            for special in SPECIALS {
                let placed = with_value(&x, at, special);
                check(&cell, &placed, None, &format!("input[{at}] = {special}"));
                check(&cell, &x, Some((&with_value(&h, at, special), &c)), "hx");
                check(&cell, &x, Some((&h, &with_value(&c, at, special))), "cx");
            }
        }
    }
}

#[test]
fn streams_special_values_propagate_as_in_the_reference() {
    // A chunk of several steps (the layer's forward), then single steps (the stream's
    // own loop), from no state and from a given one.
    for hidden in [5, 20] {
        let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, hidden).num_layers(2), 5).unwrap();
        let x = random_array::<f32>(&[5, 2, 3], 6, 0.8);
        let h0 = random_array::<f32>(&[2, 2, hidden], 7, 0.8);
        let run = |rnn: &Rnn<f32>, x: &ArrayD<f32>, h0: Option<&ArrayD<f32>>| {
            let x3 = x.view().into_dimensionality::<Ix3>().unwrap();
            let mut stream = rnn.stream(h0.map(|h| h.view())).unwrap();
            let chunk = x3.slice_axis(Axis(0), (0..2).into()).into_dyn();
            let mut all = stream
                .feed(chunk)
                .unwrap()
                .into_dimensionality::<Ix3>()
                .unwrap();
            for t in 2..5 {
                let y = stream.step(x3.index_axis(Axis(0), t)).unwrap().to_owned();
                all.push(Axis(0), y.view()).unwrap();
            }
            (all.into_dyn(), stream.state().unwrap().to_owned())
        };
        let check = |rnn: &Rnn<f32>, x: &ArrayD<f32>, h0: Option<&ArrayD<f32>>, what: &str| {
            let (out, h_n) = run(rnn, x, h0);
            let (want, want_h) = reference::forward(rnn, x.view(), h0.map(|h| h.view())).unwrap();
            assert_same_specials(&out, &want, &format!("stream H={hidden} {what}: output"));
            assert_same_specials(&h_n, &want_h, &format!("stream H={hidden} {what}: state"));
        };
        for name in ["weight_hh_l0", "weight_hh_l1", "bias_ih_l1"] {
            let value = rnn.parameter(name).unwrap().to_owned();
            for special in SPECIALS {
                let mut placed = rnn.clone();
                placed
                    .set_parameter(name, with_value(&value, 1, special).view())
                    .unwrap();
                check(&placed, &x, None, &format!("{name}[1] = {special}, no h0"));
                check(&placed, &x, Some(&h0), &format!("{name}[1] = {special}"));
            }
        }
        for special in SPECIALS {
            check(&rnn, &with_value(&x, 4, special), None, "input");
            check(
                &rnn,
                &with_value(&x, 20, special),
                None,
                "input, a single step",
            );
            check(&rnn, &x, Some(&with_value(&h0, 3, special)), "h0");
        }
    }
}

/// The torch fixtures' configuration metadata (`scripts/fixtures_special.py`).
#[derive(serde::Deserialize)]
struct FixtureConfig {
    mode: Option<String>,
    cell: Option<String>,
    #[serde(default)]
    has_h0: bool,
}

fn fixture_files() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join("special"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn special_values_propagate_as_in_torch() {
    let paths = fixture_files();
    assert!(paths.len() >= 30, "{} special-value fixtures", paths.len());
    let pool = two_threads();
    for path in &paths {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let dict = StateDict::read(path).unwrap();
        let meta: FixtureConfig = serde_json::from_str(&dict.metadata()["config"]).unwrap();
        let t = |key: &str| dict.tensor::<f32>(key).unwrap();
        if let Some(cell) = &meta.cell {
            // Cells with no state given.
            let params: Vec<(String, ArrayD<f32>)> =
                ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
                    .iter()
                    .map(|n| (n.to_string(), t(n)))
                    .collect();
            let (inputs, hidden) = (params[0].1.shape()[1], params[1].1.shape()[1]);
            let x = t("input");
            let got = match cell.as_str() {
                "lstm" => {
                    let cell = LstmCell::from_named(inputs, hidden, true, params).unwrap();
                    let (h, c) = cell.forward(x.view(), None).unwrap();
                    vec![h, c]
                }
                "gru" => vec![GruCell::from_named(inputs, hidden, true, params)
                    .unwrap()
                    .forward(x.view(), None)
                    .unwrap()],
                _ => vec![
                    RnnCell::from_named(inputs, hidden, true, Nonlinearity::Tanh, params)
                        .unwrap()
                        .forward(x.view(), None)
                        .unwrap(),
                ],
            };
            for (g, key) in got.iter().zip(["h", "c"]) {
                assert_same_specials(g, &t(key), &format!("{name}: {key}"));
            }
            continue;
        }
        let mut config = dict.infer_config("").unwrap();
        if meta.mode.as_deref() == Some("rnn_relu") {
            config.nonlinearity = Nonlinearity::Relu;
        }
        let layers = dict.load_layers::<f32>("", config.clone()).unwrap();
        let x = t("input");
        let lstm = config.kind == Kind::Lstm;
        let want = (t("output"), t("h_n"), lstm.then(|| t("c_n")));
        let (h0, c0) = (
            meta.has_h0.then(|| t("h0")),
            (meta.has_h0 && lstm).then(|| t("c0")),
        );
        let inputs = Inputs {
            x: &x,
            h0: h0.as_ref(),
            c0: c0.as_ref(),
            lengths: None,
        };
        compare(
            &fast(&layers, &inputs, &pool),
            &want,
            &format!("{name}: fast"),
        );
        compare(
            &slow(&layers, &inputs),
            &want,
            &format!("{name}: reference"),
        );
        if config.kind == Kind::Rnn && !config.bidirectional {
            // As a stream, fed the whole input.
            let rnn = Rnn::from_layers(layers.clone()).unwrap();
            let mut stream = rnn.stream(h0.as_ref().map(|h| h.view())).unwrap();
            let out = stream.feed(x.view()).unwrap();
            assert_same_specials(&out, &want.0, &format!("{name}: stream"));
        }
        if h0.is_none() {
            // Explicit zeros are what torch multiplies.
            let d = config.num_directions() * config.num_layers;
            let batch = x.shape()[1];
            let zh = ArrayD::<f32>::zeros(vec![d, batch, config.output_hidden_size()]);
            let zc = ArrayD::<f32>::zeros(vec![d, batch, config.hidden_size]);
            let zeros = Inputs {
                x: &x,
                h0: Some(&zh),
                c0: lstm.then_some(&zc),
                lengths: None,
            };
            compare(
                &fast(&layers, &zeros, &pool),
                &want,
                &format!("{name}: zero h0"),
            );
        }
    }
}
