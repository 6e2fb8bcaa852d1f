//! Every kernel path this CPU has (`RECURRENT_ISA`'s `avx512`, `avx2`, `portable`),
//! forced in turn with `__bench::with_isa`, gives the reference loop's numbers: forward
//! passes of every kind on awkward sizes, the threaded paths, streams, cells, and the
//! backward (against finite differences). The paths also agree with each other to
//! float32 rounding, and `recurrent::isa()` reports the forced one. Forcing a path is
//! process-wide, hence this binary (one test at a time).
//!
//! (The rest of the suite runs on one path per process: `RECURRENT_ISA=avx2 cargo test
//! --workspace` runs all of it on the AVX2 path.)

use crate::common;

use common::{assert_close, assert_close_tol, random_array};
use ndarray::{ArrayD, Ix2};
use recurrent::params::Layers;
use recurrent::{
    reference, Error, Float, Gru, GruCell, Isa, Kind, Lstm, LstmCell, Nonlinearity, Rnn, RnnCell,
    RnnConfig,
};

/// Hidden and input sizes around the vector widths (8 and 16 lanes) and tile widths.
const SIZES: [usize; 9] = [1, 7, 8, 9, 15, 16, 17, 31, 33];
/// Batches: one row, fewer rows than a tile, more than two tiles with a remainder.
const BATCHES: [usize; 3] = [1, 3, 17];

/// Runs `f` with the kernels forced onto `isa`, after checking that `recurrent::isa()`
/// says so (on this thread and on a pool's workers).
fn on<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    recurrent::__bench::with_isa(isa, || {
        assert_eq!(recurrent::isa().ok(), Some(isa));
        f()
    })
    .unwrap_or_else(|e| panic!("{isa}: {e}"))
}

/// `(output, h_n, c_n)`.
type Outputs<T> = (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>);

/// The fast path's forward for any kind.
fn fast<T: Float>(
    layers: &Layers<T>,
    x: &ArrayD<T>,
    h0: Option<&ArrayD<T>>,
    c0: Option<&ArrayD<T>>,
) -> Outputs<T> {
    let (xv, hv, cv) = (x.view(), h0.map(|a| a.view()), c0.map(|a| a.view()));
    match layers.config().kind {
        Kind::Rnn => {
            let m = Rnn::from_layers(layers.clone()).unwrap();
            let (o, h) = m.forward(xv, hv).unwrap();
            (o, h, None)
        }
        Kind::Gru => {
            let m = Gru::from_layers(layers.clone()).unwrap();
            let (o, h) = m.forward(xv, hv).unwrap();
            (o, h, None)
        }
        Kind::Lstm => {
            let m = Lstm::from_layers(layers.clone()).unwrap();
            let (o, (h, c)) = m.forward(xv, hv.zip(cv)).unwrap();
            (o, h, Some(c))
        }
    }
}

/// Asserts `got` within `tol` (rtol, atol; `None`: torch's assert_close defaults) of
/// `want`, output, h_n and c_n.
fn assert_outputs<T: Float>(
    got: &Outputs<T>,
    want: &Outputs<T>,
    tol: Option<(f64, f64)>,
    what: &str,
) {
    let check = |a: &ArrayD<T>, b: &ArrayD<T>, part: &str| match tol {
        Some((rtol, atol)) => assert_close_tol(a, b, rtol, atol, &format!("{what}: {part}")),
        None => assert_close(a, b, &format!("{what}: {part}")),
    };
    check(&got.0, &want.0, "output");
    check(&got.1, &want.1, "h_n");
    if let (Some(a), Some(b)) = (&got.2, &want.2) {
        check(a, b, "c_n");
    }
}

/// One forward case: the reference once, then the fast path on every path this CPU
/// has, each against the reference and against the first (best) path.
fn forward_case<T: Float>(
    config: RnnConfig,
    seq_len: usize,
    batch: usize,
    with_state: bool,
    seed: u64,
) {
    let layers = Layers::<T>::seeded(config.clone(), seed).unwrap();
    let x_shape = if config.batch_first {
        [batch, seq_len, config.input_size]
    } else {
        [seq_len, batch, config.input_size]
    };
    let states = config.num_directions() * config.num_layers;
    let x = random_array::<T>(&x_shape, seed + 1, 1.0);
    let h0 = with_state
        .then(|| random_array::<T>(&[states, batch, config.output_hidden_size()], seed + 2, 0.5));
    let c0 = (with_state && config.kind == Kind::Lstm)
        .then(|| random_array::<T>(&[states, batch, config.hidden_size], seed + 3, 0.5));
    let want = reference::forward_layers(
        &layers,
        x.view(),
        h0.as_ref().map(|a| a.view()),
        c0.as_ref().map(|a| a.view()),
        None,
    )
    .unwrap();
    let what = format!("{config} L={seq_len} N={batch} h0={with_state}");
    let mut first: Option<(Isa, Outputs<T>)> = None;
    for isa in Isa::supported() {
        let got = on(isa, || fast(&layers, &x, h0.as_ref(), c0.as_ref()));
        assert_outputs(&got, &want, None, &format!("{isa} {what} vs reference"));
        match &first {
            None => first = Some((isa, got)),
            Some((best, theirs)) => {
                assert_outputs(&got, theirs, None, &format!("{isa} vs {best} {what}"))
            }
        }
    }
}

/// Every hidden size against every input size (batches, layer counts, directions and
/// options rotating), for the three kinds: RNN (tanh and relu), LSTM (with a
/// projection on every other case) and GRU.
fn forward_on_awkward_sizes<T: Float>() {
    let mut seed = 100;
    for (i, &hidden) in SIZES.iter().enumerate() {
        for (j, &input) in SIZES.iter().enumerate() {
            let batch = BATCHES[(i + j) % 3];
            let layers = 1 + (i + 2 * j) % 2;
            let seq_len = 3 + (i + j) % 3;
            let odd = (i + j) % 2 == 1;
            let nonlinearity = if odd {
                Nonlinearity::Relu
            } else {
                Nonlinearity::Tanh
            };
            let proj = if odd { 0 } else { hidden / 2 };
            for bidirectional in [false, true] {
                let configs = [
                    RnnConfig::new(input, hidden).nonlinearity(nonlinearity),
                    RnnConfig::lstm(input, hidden).proj_size(proj),
                    RnnConfig::gru(input, hidden),
                ];
                for config in configs {
                    let config = config
                        .num_layers(layers)
                        .bidirectional(bidirectional)
                        .batch_first(j % 3 == 1)
                        .bias(i % 4 != 3);
                    forward_case::<T>(config, seq_len, batch, (i + j + 1) % 3 != 0, seed);
                    seed += 10;
                }
            }
        }
    }
}

#[test]
fn forward_on_every_path_matches_the_reference_f32() {
    let _serial = crate::serial();
    forward_on_awkward_sizes::<f32>();
}

#[test]
fn forward_on_every_path_matches_the_reference_f64() {
    let _serial = crate::serial();
    forward_on_awkward_sizes::<f64>();
}

#[test]
fn threaded_paths_on_every_path_match_the_reference() {
    let _serial = crate::serial();
    // Let a split recurrence wait for its second thread (as tests/serial/threads.rs).
    recurrent::__bench::set_helper_wait(std::time::Duration::from_secs(10));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        // The workers see the forced path too.
        for isa in Isa::supported() {
            let (a, b) = on(isa, || rayon::join(recurrent::isa, recurrent::isa));
            assert_eq!((a.ok(), b.ok()), (Some(isa), Some(isa)));
        }
        // Products split by rows (>= 2^20 multiply-adds, a leftover that is no tile
        // multiple), by columns (batch one), two directions at once, a batch-one
        // recurrence split across two threads, and gated units in two parts.
        forward_case::<f32>(RnnConfig::new(37, 129), 8, 40, true, 1);
        forward_case::<f32>(RnnConfig::new(64, 1100), 3, 1, false, 2);
        forward_case::<f32>(RnnConfig::new(9, 65).bidirectional(true), 5, 33, true, 3);
        forward_case::<f32>(RnnConfig::new(5, 257), 260, 1, false, 4);
        forward_case::<f32>(RnnConfig::lstm(17, 256), 20, 1, true, 5);
        forward_case::<f32>(RnnConfig::lstm(17, 129).proj_size(33), 9, 2, true, 8);
        forward_case::<f32>(RnnConfig::gru(31, 130), 30, 3, true, 6);
        forward_case::<f32>(RnnConfig::lstm(15, 96).bidirectional(true), 6, 20, false, 7);
    });
    recurrent::__bench::set_helper_wait(std::time::Duration::from_micros(200));
}

#[test]
fn streams_and_cells_on_every_path_match_the_reference() {
    let _serial = crate::serial();
    for (i, &hidden) in SIZES.iter().enumerate() {
        let input = SIZES[(i * 4 + 3) % SIZES.len()];
        let batch = BATCHES[i % 3];
        let x = random_array::<f32>(&[6, batch, input], 40 + i as u64, 1.0);
        let h = random_array::<f32>(&[batch, hidden], 50 + i as u64, 0.5);
        let c = random_array::<f32>(&[batch, hidden], 60 + i as u64, 0.5);
        let x0 = x
            .index_axis(ndarray::Axis(0), 0)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let (hv, cv) = (
            h.view().into_dimensionality::<Ix2>().unwrap(),
            c.view().into_dimensionality::<Ix2>().unwrap(),
        );
        let rnn =
            Rnn::<f32>::seeded(RnnConfig::new(input, hidden).num_layers(2), i as u64).unwrap();
        let (whole, _) = reference::forward(&rnn, x.view(), None).unwrap();
        let rnn_cell =
            RnnCell::<f32>::seeded(input, hidden, true, Nonlinearity::Tanh, i as u64).unwrap();
        let lstm_cell = LstmCell::<f32>::seeded(input, hidden, true, i as u64).unwrap();
        let gru_cell = GruCell::<f32>::seeded(input, hidden, true, i as u64).unwrap();
        let want_rnn = reference::cell(rnn_cell.params(), Nonlinearity::Tanh, x0, hv).into_dyn();
        let (want_lh, want_lc) = reference::lstm_cell(lstm_cell.params(), x0, hv, cv);
        let want_gru = reference::gru_cell(gru_cell.params(), x0, hv).into_dyn();
        for isa in Isa::supported() {
            let what = format!("{isa} H_in={input} H={hidden} N={batch}");
            on(isa, || {
                let mut stream = rnn.stream(None).unwrap();
                for (t, x_t) in x.outer_iter().enumerate() {
                    let x_t = x_t.into_dimensionality::<Ix2>().unwrap();
                    let y = stream.step(x_t).unwrap().to_owned().into_dyn();
                    let want = whole.index_axis(ndarray::Axis(0), t).to_owned();
                    assert_close(&y, &want, &format!("{what}: stream step {t}"));
                }
                let got = rnn_cell.forward(x0.into_dyn(), Some(h.view())).unwrap();
                assert_close(&got, &want_rnn, &format!("{what}: RnnCell"));
                let (lh, lc) = lstm_cell
                    .forward(x0.into_dyn(), Some((h.view(), c.view())))
                    .unwrap();
                assert_close(
                    &lh,
                    &want_lh.clone().into_dyn(),
                    &format!("{what}: LstmCell h"),
                );
                assert_close(
                    &lc,
                    &want_lc.clone().into_dyn(),
                    &format!("{what}: LstmCell c"),
                );
                let got = gru_cell.forward(x0.into_dyn(), Some(h.view())).unwrap();
                assert_close(&got, &want_gru, &format!("{what}: GruCell"));
            });
        }
    }
}

/// `(name, gradient)` pairs.
type Named<T> = Vec<(String, ArrayD<T>)>;

/// The gradients of `loss = sum(output * go) + sum(h_n * ghn) [+ sum(c_n * gcn)]`:
/// `(name, gradient)` for every parameter, then `("input", gradient)`.
fn gradients<T: Float>(
    layers: &Layers<T>,
    x: &ArrayD<T>,
    go: &ArrayD<T>,
    ghn: &ArrayD<T>,
    gcn: &ArrayD<T>,
) -> Named<T> {
    let grads = match layers.config().kind {
        Kind::Rnn => Rnn::from_layers(layers.clone()).unwrap().backward(
            x.view(),
            None,
            go.view(),
            Some(ghn.view()),
        ),
        Kind::Gru => Gru::from_layers(layers.clone()).unwrap().backward(
            x.view(),
            None,
            go.view(),
            Some(ghn.view()),
        ),
        Kind::Lstm => Lstm::from_layers(layers.clone()).unwrap().backward(
            x.view(),
            None,
            go.view(),
            (Some(ghn.view()), Some(gcn.view())),
        ),
    }
    .unwrap();
    let mut all = grads.parameters;
    all.push(("input".to_string(), grads.input));
    all
}

/// The loss whose gradients [`gradients`] computes, in float64 on the fast path.
fn loss(
    layers: &Layers<f64>,
    x: &ArrayD<f64>,
    go: &ArrayD<f64>,
    ghn: &ArrayD<f64>,
    gcn: &ArrayD<f64>,
) -> f64 {
    let (out, hn, cn) = fast(layers, x, None, None);
    (&out * go).sum() + (&hn * ghn).sum() + cn.map_or(0.0, |c| (&c * gcn).sum())
}

/// A copy of `layers` (float64) as `T`.
fn cast_layers<T: Float>(layers: &Layers<f64>) -> Layers<T> {
    let named = layers
        .named_parameters()
        .map(|(name, p)| (name, p.mapv(T::of)))
        .collect::<Vec<_>>();
    Layers::from_named(layers.config().clone(), named).unwrap()
}

#[test]
fn backward_on_every_path_matches_finite_differences() {
    let _serial = crate::serial();
    let cases = [
        (
            RnnConfig::new(9, 17).num_layers(2).bidirectional(true),
            4,
            3,
        ),
        (
            RnnConfig::new(16, 33).nonlinearity(Nonlinearity::Tanh),
            3,
            17,
        ),
        (
            RnnConfig::lstm(7, 16)
                .proj_size(9)
                .num_layers(2)
                .bidirectional(true),
            3,
            17,
        ),
        (RnnConfig::lstm(33, 15), 4, 1),
        (RnnConfig::gru(31, 8).bidirectional(true), 5, 3),
        (RnnConfig::gru(1, 31).num_layers(2), 3, 17),
    ];
    for (n, (config, seq_len, batch)) in cases.into_iter().enumerate() {
        let seed = 500 + 10 * n as u64;
        let mut layers = Layers::<f64>::seeded(config.clone(), seed).unwrap();
        let (d, states) = (
            config.num_directions(),
            config.num_directions() * config.num_layers,
        );
        let x = random_array::<f64>(&[seq_len, batch, config.input_size], seed + 1, 1.0);
        let go = random_array::<f64>(
            &[seq_len, batch, d * config.output_hidden_size()],
            seed + 2,
            1.0,
        );
        let ghn = random_array::<f64>(&[states, batch, config.output_hidden_size()], seed + 3, 1.0);
        let gcn = random_array::<f64>(&[states, batch, config.hidden_size], seed + 4, 1.0);
        let (x32, go32, ghn32, gcn32) = (
            x.mapv(|v| v as f32),
            go.mapv(|v| v as f32),
            ghn.mapv(|v| v as f32),
            gcn.mapv(|v| v as f32),
        );
        let mut first: Option<(Isa, Named<f32>)> = None;
        for isa in Isa::supported() {
            let what = format!("{isa} {config} L={seq_len} N={batch}");
            on(isa, || {
                let analytic = gradients(&layers, &x, &go, &ghn, &gcn);
                // Float64 against central differences, a few entries of each.
                let eps = 1e-6;
                for (name, g) in &analytic {
                    let base = if name == "input" {
                        x.clone()
                    } else {
                        layers.parameter(name).unwrap().to_owned()
                    };
                    for flat in [0, base.len() / 2, base.len() - 1] {
                        let value = |delta: f64| {
                            let mut moved = base.clone();
                            moved.as_slice_mut().unwrap()[flat] += delta;
                            moved
                        };
                        let at = |delta: f64, layers: &mut Layers<f64>| {
                            if name == "input" {
                                loss(layers, &value(delta), &go, &ghn, &gcn)
                            } else {
                                layers.set_parameter(name, value(delta).view()).unwrap();
                                let l = loss(layers, &x, &go, &ghn, &gcn);
                                layers.set_parameter(name, base.view()).unwrap();
                                l
                            }
                        };
                        let numeric = (at(eps, &mut layers) - at(-eps, &mut layers)) / (2.0 * eps);
                        let got = g.as_slice().unwrap()[flat];
                        assert!(
                            (got - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                            "{what}: {name}[{flat}]: analytic {got}, finite difference {numeric}"
                        );
                    }
                }
                // Float32 against float64 on the same path (the accumulated rounding of
                // a few steps: torch_gradients.rs's float32 tolerances).
                let single = gradients(&cast_layers::<f32>(&layers), &x32, &go32, &ghn32, &gcn32);
                for ((name, g32), (_, g64)) in single.iter().zip(&analytic) {
                    let g64 = g64.mapv(|v| v as f32);
                    assert_close_tol(g32, &g64, 1e-4, 1e-5, &format!("{what}: f32 {name}"));
                }
                match &first {
                    None => first = Some((isa, single)),
                    Some((best, theirs)) => {
                        for ((name, a), (_, b)) in single.iter().zip(theirs) {
                            assert_close_tol(
                                a,
                                b,
                                1e-5,
                                1e-5,
                                &format!("{what} vs {best}: f32 {name}"),
                            );
                        }
                    }
                }
            });
        }
    }
}

#[test]
fn forcing_reports_the_path_and_restores_the_previous_one() {
    let _serial = crate::serial();
    let before = recurrent::isa().ok();
    for isa in Isa::supported() {
        on(isa, || {
            // Nested: the inner setting holds inside, the outer one again after.
            on(Isa::Portable, || ());
            assert_eq!(recurrent::isa().ok(), Some(isa));
        });
        assert_eq!(recurrent::isa().ok(), before);
    }
    // A panic inside still restores it.
    let caught = std::panic::catch_unwind(|| {
        recurrent::__bench::with_isa(Isa::Portable, || panic!("on purpose"))
    });
    assert!(caught.is_err());
    assert_eq!(recurrent::isa().ok(), before);
    // A path this CPU lacks is refused, and the closure does not run.
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_supported()) {
        let mut ran = false;
        match recurrent::__bench::with_isa(isa, || ran = true) {
            Err(Error::Isa {
                requested,
                available,
            }) => {
                assert_eq!(requested, isa.name());
                assert_eq!(available, Isa::supported());
            }
            other => panic!("{isa}: {other:?}"),
        }
        assert!(!ran);
    }
}

#[test]
fn unknown_and_missing_paths_are_typed_errors() {
    let _serial = crate::serial();
    for value in ["sse4", "avx-512", "avx2+fma", "neon"] {
        let error = Isa::select(Some(value)).err();
        match &error {
            Some(Error::Isa {
                requested,
                available,
            }) => {
                assert_eq!(requested, value);
                assert_eq!(available, &Isa::supported());
            }
            other => panic!("{value}: {other:?}"),
        }
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.starts_with(&format!("RECURRENT_ISA={value}: ")),
            "{message}"
        );
        assert!(message.contains("avx512, avx2 or portable"), "{message}");
        assert!(value.parse::<Isa>().is_err());
    }
    for isa in Isa::ALL {
        assert_eq!(isa.to_string(), isa.name());
        assert_eq!(isa.name().parse::<Isa>().ok(), Some(isa));
        assert_eq!(
            Isa::select(Some(&isa.name().to_uppercase())).ok(),
            isa.is_supported().then_some(isa)
        );
        if !isa.is_supported() {
            let message = Isa::select(Some(isa.name()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains("this CPU lacks it"), "{message}");
        }
    }
    assert_eq!(Isa::select(None).ok(), Some(Isa::best()));
    assert_eq!(
        ["avx512", "avx2", "portable"],
        Isa::ALL.map(|isa| isa.name())
    );
}

/// What [`a_bad_recurrent_isa_fails_every_call_that_computes`] runs in a child process
/// with `RECURRENT_ISA=sse4` (or run by hand with any invalid value, `avx512` on a CPU
/// without it, say): every call that computes returns [`Error::Isa`] (a forced path
/// still runs). With a valid `RECURRENT_ISA` there is nothing to check.
#[test]
#[ignore = "run in a child process with an invalid RECURRENT_ISA"]
fn child_every_call_fails_while_recurrent_isa_is_invalid() {
    if recurrent::isa().is_ok() {
        return;
    }
    let value = std::env::var("RECURRENT_ISA").unwrap_or_default();
    let is_isa = |what: &str, e: Error| match e {
        Error::Isa { requested, .. } => assert_eq!(requested, value, "{what}"),
        other => panic!("{what}: {other}"),
    };
    let x = random_array::<f32>(&[3, 2, 4], 1, 1.0);
    let go = random_array::<f32>(&[3, 2, 5], 2, 1.0);
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(4, 5), 0).unwrap();
    let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(4, 5), 0).unwrap();
    let gru = Gru::<f32>::seeded(RnnConfig::gru(4, 5), 0).unwrap();
    is_isa("isa()", recurrent::isa().unwrap_err());
    is_isa("Rnn::forward", rnn.forward(x.view(), None).unwrap_err());
    is_isa("Rnn::stream", rnn.stream(None).err().unwrap());
    is_isa(
        "Lstm::forward_padded",
        lstm.forward_padded(x.view(), &[3, 1], None).unwrap_err(),
    );
    is_isa(
        "Gru::backward",
        gru.backward(x.view(), None, go.view(), None).unwrap_err(),
    );
    is_isa(
        "reference::forward",
        reference::forward(&rnn, x.view(), None).unwrap_err(),
    );
    let x0 = random_array::<f32>(&[2, 4], 3, 1.0);
    let cell = RnnCell::<f32>::seeded(4, 5, true, Nonlinearity::Tanh, 0).unwrap();
    is_isa(
        "RnnCell::forward",
        cell.forward(x0.view(), None).unwrap_err(),
    );
    let cell = LstmCell::<f32>::seeded(4, 5, true, 0).unwrap();
    is_isa(
        "LstmCell::forward",
        cell.forward(x0.view(), None).unwrap_err(),
    );
    let cell = GruCell::<f32>::seeded(4, 5, true, 0).unwrap();
    is_isa(
        "GruCell::forward",
        cell.forward(x0.view(), None).unwrap_err(),
    );
    // A path forced by a test runs whatever the variable says.
    let forced = recurrent::__bench::with_isa(Isa::Portable, || rnn.forward(x.view(), None));
    assert!(matches!(forced, Ok(Ok(_))));
    println!("checked with RECURRENT_ISA={value}");
}

#[test]
fn a_bad_recurrent_isa_fails_every_call_that_computes() {
    let out = crate::common::runner::command_for(&std::env::current_exe().unwrap())
        .args([
            "--exact",
            "isa::child_every_call_fails_while_recurrent_isa_is_invalid",
            "--include-ignored",
            "--nocapture",
        ])
        .env("RECURRENT_ISA", "sse4")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("checked with RECURRENT_ISA=sse4"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
