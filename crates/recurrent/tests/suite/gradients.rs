//! Backward through time for torch.nn.RNN: the analytic gradients against central finite
//! differences of the same loss in float64, on random configurations (proptest).

use crate::common;

use common::random_array;
use ndarray::ArrayD;
use proptest::prelude::*;
use recurrent::{Nonlinearity, Rnn, RnnConfig};

/// `sum(output * go) + sum(h_n * ghn)`.
fn loss(
    rnn: &Rnn<f64>,
    x: &ArrayD<f64>,
    h0: Option<&ArrayD<f64>>,
    go: &ArrayD<f64>,
    ghn: &ArrayD<f64>,
) -> f64 {
    let (out, hn) = rnn.forward(x.view(), h0.map(|h| h.view())).unwrap();
    (&out * go).sum() + (&hn * ghn).sum()
}

fn close(analytic: f64, numeric: f64, what: &str) {
    let tol = 1e-6 * (1.0 + numeric.abs());
    assert!(
        (analytic - numeric).abs() <= tol,
        "{what}: analytic {analytic}, finite difference {numeric}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn gradients_match_finite_differences(
        input_size in 1usize..4,
        hidden in 1usize..5,
        layers in 1usize..4,
        bidirectional in any::<bool>(),
        bias in any::<bool>(),
        batch_first in any::<bool>(),
        unbatched in any::<bool>(),
        with_h0 in any::<bool>(),
        seq_len in 1usize..5,
        batch in 1usize..3,
        seed in 0u64..1000,
    ) {
        // tanh only: relu's derivative jumps at 0, where differences are meaningless.
        let config = RnnConfig::new(input_size, hidden)
            .num_layers(layers)
            .bidirectional(bidirectional)
            .bias(bias)
            .batch_first(batch_first)
            .nonlinearity(Nonlinearity::Tanh);
        let mut rnn = Rnn::<f64>::seeded(config.clone(), seed).unwrap();
        let d = config.num_directions();
        let x_shape = if unbatched { vec![seq_len, input_size] }
            else if batch_first { vec![batch, seq_len, input_size] }
            else { vec![seq_len, batch, input_size] };
        let h_shape = if unbatched { vec![d * layers, hidden] } else { vec![d * layers, batch, hidden] };
        let out_shape: Vec<usize> = x_shape[..x_shape.len() - 1].iter().copied().chain([d * hidden]).collect();
        let x = random_array::<f64>(&x_shape, seed + 1, 1.0);
        let h0 = with_h0.then(|| random_array::<f64>(&h_shape, seed + 2, 0.5));
        let go = random_array::<f64>(&out_shape, seed + 3, 1.0);
        let ghn = random_array::<f64>(&h_shape, seed + 4, 1.0);
        let grads = rnn.backward(x.view(), h0.as_ref().map(|h| h.view()), go.view(), Some(ghn.view())).unwrap();
        let eps = 1e-6;

        // Every parameter, a few entries each.
        for name in rnn.parameter_names() {
            let base = rnn.parameter(&name).unwrap().to_owned();
            let g = grads.parameter(&name).unwrap();
            prop_assert_eq!(g.shape(), base.shape());
            for flat in [0, base.len() / 2, base.len() - 1] {
                let mut plus = base.clone();
                let mut minus = base.clone();
                let idx = plus.as_slice_mut().map(|s| { s[flat] += eps; }).is_some();
                prop_assert!(idx);
                minus.as_slice_mut().unwrap()[flat] -= eps;
                rnn.set_parameter(&name, plus.view()).unwrap();
                let lp = loss(&rnn, &x, h0.as_ref(), &go, &ghn);
                rnn.set_parameter(&name, minus.view()).unwrap();
                let lm = loss(&rnn, &x, h0.as_ref(), &go, &ghn);
                rnn.set_parameter(&name, base.view()).unwrap();
                close(g.as_slice().unwrap()[flat], (lp - lm) / (2.0 * eps), &format!("{config} {name}[{flat}]"));
            }
        }
        // The input and h0.
        for flat in [0, x.len() - 1] {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.as_slice_mut().unwrap()[flat] += eps;
            xm.as_slice_mut().unwrap()[flat] -= eps;
            let numeric = (loss(&rnn, &xp, h0.as_ref(), &go, &ghn) - loss(&rnn, &xm, h0.as_ref(), &go, &ghn)) / (2.0 * eps);
            close(grads.input.as_slice().unwrap()[flat], numeric, &format!("{config} input[{flat}]"));
        }
        if let Some(h0) = &h0 {
            for flat in [0, h0.len() - 1] {
                let (mut hp, mut hm) = (h0.clone(), h0.clone());
                hp.as_slice_mut().unwrap()[flat] += eps;
                hm.as_slice_mut().unwrap()[flat] -= eps;
                let numeric = (loss(&rnn, &x, Some(&hp), &go, &ghn) - loss(&rnn, &x, Some(&hm), &go, &ghn)) / (2.0 * eps);
                close(grads.h0.as_slice().unwrap()[flat], numeric, &format!("{config} h0[{flat}]"));
            }
        }
    }
}

/// `sum(output * go) + sum(h_n * ghn) [+ sum(c_n * gcn)]` for any kind, with lengths.
fn loss_any(
    layers: &recurrent::params::Layers<f64>,
    x: &ArrayD<f64>,
    lengths: Option<&[usize]>,
    go: &ArrayD<f64>,
    ghn: &ArrayD<f64>,
    gcn: &ArrayD<f64>,
) -> f64 {
    use recurrent::{Gru, Kind, Lstm};
    match layers.config().kind {
        Kind::Lstm => {
            let m = Lstm::from_layers(layers.clone()).unwrap();
            let (o, (h, c)) = match lengths {
                Some(l) => m.forward_padded(x.view(), l, None).unwrap(),
                None => m.forward(x.view(), None).unwrap(),
            };
            (&o * go).sum() + (&h * ghn).sum() + (&c * gcn).sum()
        }
        _ => {
            let m = Gru::from_layers(layers.clone()).unwrap();
            let (o, h) = match lengths {
                Some(l) => m.forward_padded(x.view(), l, None).unwrap(),
                None => m.forward(x.view(), None).unwrap(),
            };
            (&o * go).sum() + (&h * ghn).sum()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn lstm_and_gru_gradients_match_finite_differences(
        lstm in any::<bool>(),
        proj in any::<bool>(),
        input_size in 1usize..4,
        hidden in 2usize..5,
        layers in 1usize..3,
        bidirectional in any::<bool>(),
        with_lengths in any::<bool>(),
        seq_len in 1usize..5,
        batch in 1usize..4,
        seed in 0u64..1000,
    ) {
        use recurrent::{Gru, Lstm};
        let mut config = if lstm { RnnConfig::lstm(input_size, hidden) } else { RnnConfig::gru(input_size, hidden) }
            .num_layers(layers)
            .bidirectional(bidirectional);
        if lstm && proj {
            config = config.proj_size(hidden - 1);
        }
        let mut model = recurrent::params::Layers::<f64>::seeded(config.clone(), seed).unwrap();
        let d = config.num_directions();
        let h_out = config.output_hidden_size();
        let x = random_array::<f64>(&[seq_len, batch, input_size], seed + 1, 1.0);
        let lengths: Option<Vec<usize>> = with_lengths.then(|| (0..batch).map(|n| 1 + (n + seed as usize) % seq_len).collect());
        let go = random_array::<f64>(&[seq_len, batch, d * h_out], seed + 3, 1.0);
        let ghn = random_array::<f64>(&[d * layers, batch, h_out], seed + 4, 1.0);
        let gcn = random_array::<f64>(&[d * layers, batch, hidden], seed + 5, 1.0);
        let grads = if lstm {
            let m = Lstm::from_layers(model.clone()).unwrap();
            match &lengths {
                Some(l) => m.backward_padded(x.view(), l, None, go.view(), (Some(ghn.view()), Some(gcn.view()))),
                None => m.backward(x.view(), None, go.view(), (Some(ghn.view()), Some(gcn.view()))),
            }
        } else {
            let m = Gru::from_layers(model.clone()).unwrap();
            match &lengths {
                Some(l) => m.backward_padded(x.view(), l, None, go.view(), Some(ghn.view())),
                None => m.backward(x.view(), None, go.view(), Some(ghn.view())),
            }
        }
        .unwrap();
        let eps = 1e-6;
        for name in model.parameter_names() {
            let base = model.parameter(&name).unwrap().to_owned();
            let g = grads.parameter(&name).unwrap();
            for flat in [0, base.len() / 2, base.len() - 1] {
                let (mut plus, mut minus) = (base.clone(), base.clone());
                plus.as_slice_mut().unwrap()[flat] += eps;
                minus.as_slice_mut().unwrap()[flat] -= eps;
                model.set_parameter(&name, plus.view()).unwrap();
                let lp = loss_any(&model, &x, lengths.as_deref(), &go, &ghn, &gcn);
                model.set_parameter(&name, minus.view()).unwrap();
                let lm = loss_any(&model, &x, lengths.as_deref(), &go, &ghn, &gcn);
                model.set_parameter(&name, base.view()).unwrap();
                close(g.as_slice().unwrap()[flat], (lp - lm) / (2.0 * eps), &format!("{config} {name}[{flat}]"));
            }
        }
        for flat in [0, x.len() / 2, x.len() - 1] {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.as_slice_mut().unwrap()[flat] += eps;
            xm.as_slice_mut().unwrap()[flat] -= eps;
            let numeric = (loss_any(&model, &xp, lengths.as_deref(), &go, &ghn, &gcn)
                - loss_any(&model, &xm, lengths.as_deref(), &go, &ghn, &gcn)) / (2.0 * eps);
            close(grads.input.as_slice().unwrap()[flat], numeric, &format!("{config} input[{flat}]"));
        }
    }
}
