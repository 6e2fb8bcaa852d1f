//! Dropout masks: their statistics, the forward that uses them, and the backward through
//! them (finite differences with the masks held fixed).

use crate::common;

use common::{assert_close, random_array};
use ndarray::{Array3, ArrayD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use recurrent::dropout::DropoutMasks;
use recurrent::{Lstm, Rnn, RnnConfig};

#[test]
fn masks_keep_one_minus_p_and_scale_by_its_inverse() {
    for p in [0.1, 0.5, 0.9] {
        let config = RnnConfig::new(3, 50)
            .num_layers(3)
            .bidirectional(true)
            .dropout(p);
        let masks = DropoutMasks::<f64>::sample(&config, 40, 10, &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        assert_eq!(masks.masks().len(), 2);
        let all: Vec<f64> = masks
            .masks()
            .iter()
            .flat_map(|m| m.iter().copied())
            .collect();
        let n = all.len() as f64;
        let zeros = all.iter().filter(|&&v| v == 0.0).count() as f64;
        // Binomial: 6 sigma.
        let sigma = (n * p * (1.0 - p)).sqrt();
        assert!(
            (zeros - n * p).abs() < 6.0 * sigma,
            "p {p}: {zeros} zeros of {n}"
        );
        assert!(all
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / (1.0 - p)).abs() < 1e-12));
    }
    let config = RnnConfig::new(3, 4).num_layers(2).dropout(1.0);
    let masks =
        DropoutMasks::<f32>::sample(&config, 5, 2, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert!(masks.masks()[0].iter().all(|&v| v == 0.0));
}

#[test]
fn forward_with_unit_masks_is_evaluation_mode_and_shapes_are_checked() {
    let config = RnnConfig::new(3, 5).num_layers(3).batch_first(true);
    let rnn = Rnn::<f64>::seeded(config.clone(), 1).unwrap();
    let x = random_array::<f64>(&[2, 6, 3], 2, 1.0);
    let ones = DropoutMasks::from_masks(&config, 6, 2, vec![Array3::ones((6, 2, 5)); 2]).unwrap();
    let (want, want_h) = rnn.forward(x.view(), None).unwrap();
    let (got, got_h) = rnn.forward_with_masks(x.view(), None, &ones).unwrap();
    assert_close(&got, &want, "output");
    assert_close(&got_h, &want_h, "h_n");
    // Masks for another batch size are refused.
    let other = DropoutMasks::from_masks(&config, 6, 3, vec![Array3::ones((6, 3, 5)); 2]).unwrap();
    assert!(rnn.forward_with_masks(x.view(), None, &other).is_err());
    assert!(DropoutMasks::<f64>::from_masks(&config, 6, 2, vec![Array3::ones((6, 2, 5))]).is_err());
}

fn rnn_loss(rnn: &Rnn<f64>, x: &ArrayD<f64>, masks: &DropoutMasks<f64>, go: &ArrayD<f64>) -> f64 {
    let (out, _) = rnn.forward_with_masks(x.view(), None, masks).unwrap();
    (&out * go).sum()
}

fn lstm_loss(m: &Lstm<f64>, x: &ArrayD<f64>, masks: &DropoutMasks<f64>, go: &ArrayD<f64>) -> f64 {
    let (out, _) = m.forward_with_masks(x.view(), None, masks).unwrap();
    (&out * go).sum()
}

#[test]
fn backward_through_fixed_masks_matches_finite_differences() {
    let eps = 1e-6;
    // RNN, 3 layers, bidirectional.
    let config = RnnConfig::new(2, 4)
        .num_layers(3)
        .bidirectional(true)
        .dropout(0.4);
    let mut rnn = Rnn::<f64>::seeded(config.clone(), 4).unwrap();
    let x = random_array::<f64>(&[5, 2, 2], 5, 1.0);
    let go = random_array::<f64>(&[5, 2, 8], 6, 1.0);
    let masks = DropoutMasks::sample(&config, 5, 2, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
    let grads = rnn
        .backward_with_masks(x.view(), None, &masks, go.view(), None)
        .unwrap();
    for name in [
        "weight_ih_l0",
        "weight_hh_l1_reverse",
        "bias_ih_l2",
        "weight_ih_l2_reverse",
    ] {
        let base = rnn.parameter(name).unwrap().to_owned();
        for flat in [0, base.len() - 1] {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus.as_slice_mut().unwrap()[flat] += eps;
            minus.as_slice_mut().unwrap()[flat] -= eps;
            rnn.set_parameter(name, plus.view()).unwrap();
            let lp = rnn_loss(&rnn, &x, &masks, &go);
            rnn.set_parameter(name, minus.view()).unwrap();
            let lm = rnn_loss(&rnn, &x, &masks, &go);
            rnn.set_parameter(name, base.view()).unwrap();
            let numeric = (lp - lm) / (2.0 * eps);
            let analytic = grads.parameter(name).unwrap().as_slice().unwrap()[flat];
            assert!(
                (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{name}[{flat}]: {analytic} vs {numeric}"
            );
        }
    }
    // LSTM with projection, 2 layers.
    let config = RnnConfig::lstm(2, 5)
        .proj_size(3)
        .num_layers(2)
        .dropout(0.5);
    let mut lstm = Lstm::<f64>::seeded(config.clone(), 8).unwrap();
    let go = random_array::<f64>(&[5, 2, 3], 9, 1.0);
    let masks = DropoutMasks::sample(&config, 5, 2, &mut ChaCha8Rng::seed_from_u64(10)).unwrap();
    let grads = lstm
        .backward_with_masks(x.view(), None, &masks, go.view(), (None, None))
        .unwrap();
    for name in ["weight_ih_l0", "weight_hr_l0", "weight_hh_l1"] {
        let base = lstm.parameter(name).unwrap().to_owned();
        for flat in [0, base.len() - 1] {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus.as_slice_mut().unwrap()[flat] += eps;
            minus.as_slice_mut().unwrap()[flat] -= eps;
            lstm.set_parameter(name, plus.view()).unwrap();
            let lp = lstm_loss(&lstm, &x, &masks, &go);
            lstm.set_parameter(name, minus.view()).unwrap();
            let lm = lstm_loss(&lstm, &x, &masks, &go);
            lstm.set_parameter(name, base.view()).unwrap();
            let numeric = (lp - lm) / (2.0 * eps);
            let analytic = grads.parameter(name).unwrap().as_slice().unwrap()[flat];
            assert!(
                (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{name}[{flat}]: {analytic} vs {numeric}"
            );
        }
    }
}
