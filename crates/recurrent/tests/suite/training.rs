//! Training-time behaviour: torch's default initialisation (`Rnn::init` / `Rnn::seeded`)
//! and dropout between layers (`Rnn::forward_train`).
//!
//! Statistical checks use tolerances of 6 standard deviations of the statistic under the
//! claimed distribution (a false alarm about once in 500 million runs); every random
//! stream is seeded, so a run is reproducible anyway.

use crate::common;

use common::{assert_close_tol, random_array};
use ndarray::{s, Array1, Array2, ArrayD, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::{Float, Nonlinearity, Rnn, RnnConfig};

// ---------------------------------------------------------------------------------
// Default initialisation
// ---------------------------------------------------------------------------------

fn all_values<T: Float>(rnn: &Rnn<T>) -> Vec<f64> {
    rnn.named_parameters()
        .flat_map(|(_, t)| t.iter().map(|v| v.as_f64()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn every_parameter_is_within_torch_bounds() {
    for config in [
        RnnConfig::new(3, 1),
        RnnConfig::new(5, 7).num_layers(3).bidirectional(true),
        RnnConfig::new(2, 16)
            .nonlinearity(Nonlinearity::Relu)
            .bias(false),
        RnnConfig::new(9, 33).num_layers(2),
    ] {
        let bound = 1.0 / (config.hidden_size as f64).sqrt();
        let r64 = Rnn::<f64>::seeded(config.clone(), 11).unwrap();
        let r32 = Rnn::<f32>::seeded(config.clone(), 11).unwrap();
        for (name, t) in r64.named_parameters() {
            assert!(
                t.iter().all(|v| v.abs() <= bound),
                "{config}: {name} outside [-{bound}, {bound}]"
            );
            // Not a constant fill.
            if t.len() > 1 {
                assert!(
                    t.iter().any(|&v| v != t.iter().next().copied().unwrap()),
                    "{config}: {name} is constant"
                );
            }
        }
        // In float32 the bound itself is rounded; rounding is monotone, so values stay
        // within the rounded bound.
        let b32 = bound as f32;
        for (name, t) in r32.named_parameters() {
            assert!(
                t.iter().all(|v| v.abs() <= b32),
                "{config}: f32 {name} outside bound"
            );
        }
    }
}

/// `init` draws every element from `rng` as `(2u - 1) / sqrt(H)`, `u` uniform in [0, 1),
/// parameter by parameter in `named_parameters()` order, row-major within each; and
/// `seeded(seed)` is `init` with `ChaCha8Rng::seed_from_u64(seed)` (both documented).
#[test]
fn init_consumes_the_rng_in_named_parameter_order() {
    let config = RnnConfig::new(3, 5).num_layers(2).bidirectional(true);
    let bound = 1.0 / 5f64.sqrt();
    let rnn = Rnn::<f64>::init(config.clone(), &mut ChaCha8Rng::seed_from_u64(77)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for (name, t) in rnn.named_parameters() {
        for (i, &v) in t.iter().enumerate() {
            let u: f64 = rng.random();
            assert_eq!(v, (2.0 * u - 1.0) * bound, "{name}[{i}]");
        }
    }
    common::assert_same_parameters(
        &Rnn::<f64>::seeded(config, 77).unwrap(),
        &rnn,
        "seeded vs init",
    );
}

#[test]
fn a_large_layer_is_uniform_on_the_bound() {
    let h = 200;
    let rnn = Rnn::<f64>::seeded(RnnConfig::new(200, h), 2024).unwrap();
    let b = 1.0 / (h as f64).sqrt();
    let xs = all_values(&rnn);
    let n = xs.len() as f64;
    assert_eq!(xs.len(), 200 * 200 + 200 * 200 + 2 * 200);

    // Mean 0, standard error b / sqrt(3n).
    let mean = xs.iter().sum::<f64>() / n;
    let se_mean = b / (3.0 * n).sqrt();
    assert!(
        mean.abs() < 6.0 * se_mean,
        "mean {mean}, 6 sigma {}",
        6.0 * se_mean
    );

    // E[x^2] = b^2/3; Var[x^2] = E[x^4] - E[x^2]^2 = b^4/5 - b^4/9 = 4 b^4 / 45.
    let m2 = xs.iter().map(|x| x * x).sum::<f64>() / n;
    let se_m2 = b * b * (4.0 / 45.0 / n).sqrt();
    assert!(
        (m2 - b * b / 3.0).abs() < 6.0 * se_m2,
        "E[x^2] {m2}, want {}",
        b * b / 3.0
    );

    // Ten equal bins, each binomial(n, 1/10).
    let mut bins = [0usize; 10];
    for &x in &xs {
        let k = (((x + b) / (2.0 * b)) * 10.0).floor() as usize;
        bins[k.min(9)] += 1;
    }
    let sd = (n * 0.1 * 0.9).sqrt();
    for (k, &count) in bins.iter().enumerate() {
        assert!(
            (count as f64 - n / 10.0).abs() < 6.0 * sd,
            "bin {k}: {count} of {n}"
        );
    }

    // The whole interval is used: P(max < b (1 - 40/n)) = (1 - 20/n)^n ~ e^-20.
    let (lo, hi) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    assert!(
        hi > b * (1.0 - 40.0 / n) && lo < -b * (1.0 - 40.0 / n),
        "range [{lo}, {hi}] for bound {b}"
    );

    // Consecutive draws are uncorrelated: the lag-1 correlation has standard error
    // about 1/sqrt(n).
    let var = m2 - mean * mean;
    let lag1 = xs
        .windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum::<f64>()
        / (n - 1.0)
        / var;
    assert!(lag1.abs() < 6.0 / n.sqrt(), "lag-1 correlation {lag1}");
}

#[test]
fn seeds_decide_the_weights() {
    let config = RnnConfig::new(4, 8).num_layers(2).bidirectional(true);
    let a = Rnn::<f64>::seeded(config.clone(), 5).unwrap();
    let b = Rnn::<f64>::seeded(config.clone(), 5).unwrap();
    common::assert_same_parameters(&a, &b, "same seed");
    let c = Rnn::<f64>::seeded(config.clone(), 6).unwrap();
    let (va, vc) = (all_values(&a), all_values(&c));
    let same = va.iter().zip(&vc).filter(|(x, y)| x == y).count();
    assert!(
        same * 1000 < va.len(),
        "{same} of {} values equal across seeds",
        va.len()
    );

    // float32 and float64 from one seed: the float32 weights are the float64 ones rounded.
    let s = Rnn::<f32>::seeded(config, 5).unwrap();
    for ((name, t32), (_, t64)) in s.named_parameters().zip(a.named_parameters()) {
        assert_eq!(t32, t64.mapv(|v| v as f32), "{name}");
    }
}

// ---------------------------------------------------------------------------------
// Dropout (training mode)
// ---------------------------------------------------------------------------------

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Inputs and h_0 of every form for `config`: (input, h0) pairs.
fn forms(config: &RnnConfig, seed: u64) -> Vec<(ArrayD<f64>, Option<ArrayD<f64>>)> {
    let layers = config.num_directions() * config.num_layers;
    let (l, n, f, h) = (5, 3, config.input_size, config.hidden_size);
    let batched = if config.batch_first {
        vec![n, l, f]
    } else {
        vec![l, n, f]
    };
    vec![
        (random_array(&batched, seed, 1.0), None),
        (
            random_array(&batched, seed + 1, 1.0),
            Some(random_array(&[layers, n, h], seed + 2, 1.0)),
        ),
        (
            random_array(&[l, f], seed + 3, 1.0),
            Some(random_array(&[layers, h], seed + 4, 1.0)),
        ),
    ]
}

#[test]
fn dropout_zero_is_eval() {
    for config in [
        RnnConfig::new(3, 4).num_layers(3).bidirectional(true),
        RnnConfig::new(2, 5)
            .num_layers(2)
            .nonlinearity(Nonlinearity::Relu)
            .batch_first(true),
    ] {
        let rnn = Rnn::<f64>::seeded(config.clone(), 1).unwrap();
        assert_eq!(rnn.config().dropout, 0.0);
        for (x, h0) in forms(&config, 10) {
            let eval = rnn
                .forward(x.view(), h0.as_ref().map(|h| h.view()))
                .unwrap();
            let train = rnn
                .forward_train(x.view(), h0.as_ref().map(|h| h.view()), &mut rng(3))
                .unwrap();
            assert_eq!(train, eval, "{config}");
        }
    }
}

#[test]
fn dropout_never_applies_after_the_last_layer() {
    for p in [0.2, 0.5, 1.0] {
        for config in [
            RnnConfig::new(3, 4).dropout(p),
            RnnConfig::new(3, 4)
                .dropout(p)
                .bidirectional(true)
                .batch_first(true),
        ] {
            let rnn = Rnn::<f32>::seeded(config.clone(), 2).unwrap();
            let x = random_array::<f32>(&[6, 2, 3], 5, 1.0);
            let eval = rnn.forward(x.view(), None).unwrap();
            let train = rnn.forward_train(x.view(), None, &mut rng(8)).unwrap();
            assert_eq!(train, eval, "{config}");
        }
    }
}

/// A one-layer layer holding the parameters of layer `layer` of `rnn` (renamed to l0).
fn single_layer(rnn: &Rnn<f64>, layer: usize) -> Rnn<f64> {
    let c = rnn.config();
    let config = RnnConfig::new(c.layer_input_size(layer), c.hidden_size)
        .nonlinearity(c.nonlinearity)
        .bias(c.bias)
        .bidirectional(c.bidirectional);
    let suffix = format!("_l{layer}");
    let tensors: Vec<(String, ArrayD<f64>)> = rnn
        .named_parameters()
        .filter(|(name, _)| name.ends_with(&suffix) || name.contains(&format!("{suffix}_")))
        .map(|(name, t)| (name.replace(&suffix, "_l0"), t.to_owned()))
        .collect();
    Rnn::from_named(config, tensors).unwrap()
}

/// With p = 1 every layer after the first reads all zeros: its output is that of a
/// one-layer RNN with its parameters fed a zero input of width D*H. h_n of every layer is
/// its own final state (dropout is not applied to h_n).
#[test]
fn dropout_one_zeroes_the_input_of_every_later_layer() {
    for bidirectional in [false, true] {
        for num_layers in [2, 3] {
            for with_h0 in [false, true] {
                let config = RnnConfig::new(3, 4)
                    .num_layers(num_layers)
                    .bidirectional(bidirectional)
                    .dropout(1.0);
                let d = config.num_directions();
                let rnn = Rnn::<f64>::seeded(config.clone(), 13).unwrap();
                let (l, n) = (6, 2);
                let x = random_array::<f64>(&[l, n, 3], 21, 1.0);
                let h0 = with_h0.then(|| random_array::<f64>(&[d * num_layers, n, 4], 22, 1.0));
                let (out, hn) = rnn
                    .forward_train(x.view(), h0.as_ref().map(|h| h.view()), &mut rng(1))
                    .unwrap();
                let (_, eval_hn) = rnn
                    .forward(x.view(), h0.as_ref().map(|h| h.view()))
                    .unwrap();
                let what = format!("{config}, h0 {with_h0}");
                // Layer 0 sees the real input; its final state is as in evaluation.
                assert_close_tol(
                    &hn.slice(s![..d, .., ..]).to_owned().into_dyn(),
                    &eval_hn.slice(s![..d, .., ..]).to_owned().into_dyn(),
                    0.0,
                    0.0,
                    &format!("{what}: layer 0 h_n"),
                );
                let zeros = ArrayD::<f64>::zeros(vec![l, n, d * 4]);
                for layer in 1..num_layers {
                    let single = single_layer(&rnn, layer);
                    let h0_layer = h0.as_ref().map(|h| {
                        h.slice(s![layer * d..(layer + 1) * d, .., ..])
                            .to_owned()
                            .into_dyn()
                    });
                    let (want_out, want_hn) = single
                        .forward(zeros.view(), h0_layer.as_ref().map(|h| h.view()))
                        .unwrap();
                    let got_hn = hn
                        .slice(s![layer * d..(layer + 1) * d, .., ..])
                        .to_owned()
                        .into_dyn();
                    assert_close_tol(
                        &got_hn,
                        &want_hn,
                        1e-14,
                        1e-14,
                        &format!("{what}: layer {layer} h_n"),
                    );
                    if layer + 1 == num_layers {
                        assert_close_tol(&out, &want_out, 1e-14, 1e-14, &format!("{what}: output"));
                    }
                }
                // And the input really did not matter past layer 0.
                let other = random_array::<f64>(&[l, n, 3], 99, 1.0);
                let (out2, _) = rnn
                    .forward_train(other.view(), h0.as_ref().map(|h| h.view()), &mut rng(2))
                    .unwrap();
                assert_eq!(out2, out, "{what}: output depends on the input");
            }
        }
    }
}

#[test]
fn dropout_is_random_but_reproducible() {
    let config = RnnConfig::new(3, 8)
        .num_layers(2)
        .bidirectional(true)
        .dropout(0.5);
    let rnn = Rnn::<f32>::seeded(config, 4).unwrap();
    let x = random_array::<f32>(&[7, 3, 3], 6, 1.0);
    let (eval_out, eval_hn) = rnn.forward(x.view(), None).unwrap();
    let (a_out, a_hn) = rnn.forward_train(x.view(), None, &mut rng(42)).unwrap();
    let (b_out, b_hn) = rnn.forward_train(x.view(), None, &mut rng(42)).unwrap();
    assert_eq!(
        (&a_out, &a_hn),
        (&b_out, &b_hn),
        "same rng seed, same result"
    );
    let max_diff = a_out
        .iter()
        .zip(eval_out.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        max_diff > 0.05,
        "training output equals evaluation ({max_diff})"
    );
    // Layer 0's final states are not dropped.
    assert_eq!(a_hn.slice(s![..2, .., ..]), eval_hn.slice(s![..2, .., ..]));
    // Another seed, or the same generator used again, draws new masks.
    let (c_out, _) = rnn.forward_train(x.view(), None, &mut rng(43)).unwrap();
    assert_ne!(c_out, a_out);
    let mut shared = rng(42);
    let (first, _) = rnn.forward_train(x.view(), None, &mut shared).unwrap();
    let (second, _) = rnn.forward_train(x.view(), None, &mut shared).unwrap();
    assert_eq!(first, a_out);
    assert_ne!(second, first, "masks repeat across calls");
}

/// A 2-layer relu net where layer 0 outputs the constant c_j > 0 at every step (zero
/// weights, bias c) and layer 1 is the identity (weight_ih = I, no recurrence, no bias):
/// the output is exactly dropout(c), so each element is 0 with probability p and
/// c_j / (1 - p) otherwise.
fn probe_net(hidden: usize, p: f64) -> (Rnn<f64>, Array1<f64>) {
    let config = RnnConfig::new(1, hidden)
        .num_layers(2)
        .nonlinearity(Nonlinearity::Relu)
        .dropout(p);
    let mut rnn = Rnn::<f64>::zeros(config).unwrap();
    let c = Array1::from_shape_fn(hidden, |j| 0.5 + j as f64 / hidden as f64);
    rnn.set_parameter("bias_ih_l0", c.view().into_dyn())
        .unwrap();
    rnn.set_parameter("weight_ih_l1", Array2::<f64>::eye(hidden).view().into_dyn())
        .unwrap();
    (rnn, c)
}

#[test]
fn dropout_keeps_one_minus_p_and_scales_by_its_inverse() {
    let (hidden, l, n) = (64, 40, 10);
    for (p, seed) in [(0.1, 1), (0.5, 2), (0.9, 3), (1.0 / 3.0, 4)] {
        let (rnn, c) = probe_net(hidden, p);
        let x = random_array::<f64>(&[l, n, 1], seed, 1.0);
        // Evaluation: the identity of c everywhere.
        let (eval_out, _) = rnn.forward(x.view(), None).unwrap();
        assert!(
            eval_out
                .lanes(Axis(2))
                .into_iter()
                .all(|lane| lane.iter().eq(c.iter())),
            "p {p}: probe net is not the identity"
        );

        let (out, hn) = rnn.forward_train(x.view(), None, &mut rng(seed)).unwrap();
        let scale = 1.0 / (1.0 - p);
        let mut zeros = 0usize;
        for ((t, b, j), &v) in out
            .view()
            .into_dimensionality::<ndarray::Ix3>()
            .unwrap()
            .indexed_iter()
        {
            if v == 0.0 {
                zeros += 1;
            } else {
                let want = c[j] * scale;
                assert!(
                    (v - want).abs() <= 1e-12 * want,
                    "p {p}: out[{t},{b},{j}] = {v}, want 0 or {want}"
                );
            }
        }
        let total = (l * n * hidden) as f64;
        let sd = (total * p * (1.0 - p)).sqrt();
        assert!(
            (zeros as f64 - p * total).abs() < 6.0 * sd,
            "p {p}: {zeros} zeros of {total}, expected {} +- {}",
            p * total,
            6.0 * sd
        );

        // Masks are drawn afresh for every element: consecutive time steps agree as often
        // as two independent masks would (p^2 + (1-p)^2).
        let zero = out.mapv(|v| v == 0.0);
        let mut agree = 0usize;
        let pairs = (l - 1) * n * hidden;
        for t in 0..l - 1 {
            let (a, b) = (zero.index_axis(Axis(0), t), zero.index_axis(Axis(0), t + 1));
            agree += a.iter().zip(b.iter()).filter(|(x, y)| x == y).count();
        }
        let q = p * p + (1.0 - p) * (1.0 - p);
        let sd = (pairs as f64 * q * (1.0 - q)).sqrt();
        assert!(
            (agree as f64 - q * pairs as f64).abs() < 6.0 * sd,
            "p {p}: {agree} of {pairs} agree"
        );

        // h_n: layer 0 holds c (not dropped), layer 1 its output at the last step.
        assert!(hn
            .slice(s![0, .., ..])
            .rows()
            .into_iter()
            .all(|row| row.iter().eq(c.iter())));
        assert_eq!(hn.index_axis(Axis(0), 1), out.index_axis(Axis(0), l - 1));
    }
}

#[test]
fn dropout_in_float32_scales_the_same_way() {
    let config = RnnConfig::new(1, 16)
        .num_layers(2)
        .nonlinearity(Nonlinearity::Relu)
        .dropout(0.25);
    let (r64, c) = probe_net(16, 0.25);
    let tensors: Vec<(String, ArrayD<f32>)> = r64
        .named_parameters()
        .map(|(n, t)| (n, t.mapv(|v| v as f32)))
        .collect();
    let rnn = Rnn::<f32>::from_named(config, tensors).unwrap();
    let x = ArrayD::<f32>::zeros(vec![30, 4, 1]);
    let (out, _) = rnn.forward_train(x.view(), None, &mut rng(9)).unwrap();
    let mut kept = 0;
    for ((_, _, j), &v) in out
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap()
        .indexed_iter()
    {
        if v != 0.0 {
            kept += 1;
            let want = (c[j] / 0.75) as f32;
            assert!(
                (v - want).abs() <= 2.0 * f32::EPSILON * want,
                "{v} vs {want}"
            );
        }
    }
    assert!(kept > 0 && kept < out.len());
}
