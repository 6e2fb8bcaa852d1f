//! Train a small LSTM to predict the next value of noisy sine waves, and watch it learn.
//!
//! `cargo run --release --example train_sine --features examples [-- OUT_DIR]` (OUT_DIR defaults to `.`).
//!
//! The model is what this PyTorch module would be:
//!
//! ```python
//! class Model(nn.Module):
//!     def __init__(self):
//!         super().__init__()
//!         self.rnn = nn.LSTM(1, 32)
//!         self.head = nn.Linear(32, 1)
//!     def forward(self, x):          # x: (L, N, 1)
//!         return self.head(self.rnn(x)[0])
//! ```
//!
//! trained with Adam on the mean squared error of next-step predictions, gradients
//! clipped to norm 1. A progress bar shows the loss; at the end it writes
//! `train_sine.png` (the loss curve and predictions against targets on held-out waves)
//! and `train_sine.safetensors`, a state dict that
//! `Model().load_state_dict(safetensors.torch.load_file(path))` loads, with a held-out
//! batch and this model's predictions beside the weights (`check.*`) so that torch can
//! confirm it computes the same (`scripts/check_train_sine.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{s, Array1, Array2, Array3, ArrayD, Axis};
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::optim::{clip_grad_norm_, Adam, AdamConfig};
use recurrent::{Lstm, RnnConfig};

const HIDDEN: usize = 32;
const SEQ_LEN: usize = 40;
const BATCH: usize = 32;
const STEPS: usize = 400;

/// A batch of noisy sine waves: inputs (L, N, 1) and next-step targets (L, N).
fn batch(rng: &mut ChaCha8Rng, n: usize) -> (Array3<f32>, Array2<f32>) {
    let mut x = Array3::zeros((SEQ_LEN, n, 1));
    let mut y = Array2::zeros((SEQ_LEN, n));
    for b in 0..n {
        let freq = rng.random_range(0.15..0.35f32);
        let phase = rng.random_range(0.0..std::f32::consts::TAU);
        let wave = |t: usize| (freq * t as f32 + phase).sin();
        for t in 0..SEQ_LEN {
            x[[t, b, 0]] = wave(t) + rng.random_range(-0.05..0.05f32);
            y[[t, b]] = wave(t + 1);
        }
    }
    (x, y)
}

/// The linear head: `y = h w^T + b` on (L, N, H) -> (L, N).
fn head(h: &ArrayD<f32>, w: &ArrayD<f32>, b: &ArrayD<f32>) -> Array2<f32> {
    let (l, n) = (h.shape()[0], h.shape()[1]);
    let w = w
        .view()
        .into_shape_with_order(HIDDEN)
        .expect("head weight is (1, H)");
    let rows = h
        .view()
        .into_shape_with_order((l * n, HIDDEN))
        .expect("output rows");
    (rows.dot(&w) + b[[0]])
        .into_shape_with_order((l, n))
        .expect("(L, N)")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::fs::create_dir_all(&out_dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    let mut lstm = Lstm::<f32>::seeded(RnnConfig::lstm(1, HIDDEN), 1)?;
    // nn.Linear(32, 1)'s default init: U(-1/sqrt(32), 1/sqrt(32)).
    let bound = 1.0 / (HIDDEN as f32).sqrt();
    let mut head_params: Vec<(String, ArrayD<f32>)> = vec![
        (
            "head.weight".into(),
            Array2::from_shape_fn((1, HIDDEN), |_| rng.random_range(-bound..bound)).into_dyn(),
        ),
        (
            "head.bias".into(),
            Array1::from_elem(1, rng.random_range(-bound..bound)).into_dyn(),
        ),
    ];
    let mut opt_rnn = Adam::<f32>::new(AdamConfig::new(1e-2))?;
    let mut opt_head = Adam::<f32>::new(AdamConfig::new(1e-2))?;

    let bar = ProgressBar::new(STEPS as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} loss {msg} [{elapsed}]",
    )?);
    let mut losses = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        let (x, y) = batch(&mut rng, BATCH);
        let (out, _) = lstm.forward(x.view().into_dyn(), None)?;
        let pred = head(&out, &head_params[0].1, &head_params[1].1);
        let diff = &pred - &y;
        let count = diff.len() as f32;
        let loss = diff.mapv(|d| d * d).sum() / count;
        losses.push(loss);
        // d loss / d pred, then through the head to d loss / d (LSTM output).
        let d_pred = diff.mapv(|d| 2.0 * d / count);
        let rows = out
            .view()
            .into_shape_with_order((SEQ_LEN * BATCH, HIDDEN))?;
        let d_flat = d_pred.view().into_shape_with_order(SEQ_LEN * BATCH)?;
        let mut head_grads = vec![
            (
                "head.weight".to_string(),
                d_flat.dot(&rows).insert_axis(Axis(0)).into_dyn(),
            ),
            (
                "head.bias".to_string(),
                Array1::from_elem(1, d_flat.sum()).into_dyn(),
            ),
        ];
        let w = head_params[0]
            .1
            .view()
            .into_shape_with_order(HIDDEN)?
            .to_owned();
        let d_out =
            Array3::from_shape_fn((SEQ_LEN, BATCH, HIDDEN), |(t, n, j)| d_pred[[t, n]] * w[j]);
        let mut grads = lstm.backward(
            x.view().into_dyn(),
            None,
            d_out.view().into_dyn(),
            (None, None),
        )?;
        // Clip the norm of all gradients together, as clip_grad_norm_(model.parameters()).
        let mut all: Vec<(String, ArrayD<f32>)> = grads
            .parameters
            .drain(..)
            .chain(head_grads.drain(..))
            .collect();
        clip_grad_norm_(&mut all, 1.0, 2.0, false)?;
        let (rnn_grads, head_grads): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(n, _)| !n.starts_with("head."));
        opt_rnn.step(&mut lstm, &rnn_grads)?;
        opt_head.step(&mut head_params, &head_grads)?;
        bar.set_message(format!("{loss:.5}"));
        bar.inc(1);
    }
    bar.finish();

    // Held-out waves.
    let (x, y) = batch(&mut ChaCha8Rng::seed_from_u64(99), 4);
    let (out, _) = lstm.forward(x.view().into_dyn(), None)?;
    let pred = head(&out, &head_params[0].1, &head_params[1].1);
    let test_loss = (&pred - &y).mapv(|d| d * d).mean().unwrap_or(f32::NAN);
    let first = losses.iter().take(10).sum::<f32>() / 10.0;
    let last = losses.iter().rev().take(10).sum::<f32>() / 10.0;
    println!("loss: first 10 steps {first:.4}, last 10 steps {last:.5}; held-out {test_loss:.5}");

    // The state dict torch loads, plus the held-out check.
    let mut tensors: Vec<(String, ndarray::ArrayViewD<'_, f32>)> = lstm
        .named_parameters()
        .map(|(n, t)| (format!("rnn.{n}"), t))
        .collect();
    for (n, t) in &head_params {
        tensors.push((n.clone(), t.view()));
    }
    let pred_dyn = pred.clone().into_dyn();
    let x_dyn = x.clone().into_dyn();
    tensors.push(("check.input".into(), x_dyn.view()));
    tensors.push(("check.prediction".into(), pred_dyn.view()));
    let weights = out_dir.join("train_sine.safetensors");
    recurrent::io::safetensors::save_tensors(
        &weights,
        &tensors,
        HashMap::from([("format".into(), "pt".into())]),
    )?;

    // The picture: loss curve and predictions on held-out waves.
    let png = out_dir.join("train_sine.png");
    let root = BitMapBackend::new(&png, (1100, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let max_loss = losses.iter().cloned().fold(f32::MIN, f32::max).max(1e-6);
    let min_loss = losses.iter().cloned().fold(f32::MAX, f32::min).max(1e-6);
    let mut chart = ChartBuilder::on(&left)
        .caption("training loss (MSE, log scale)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0..STEPS, (min_loss..max_loss).log_scale())?;
    chart.configure_mesh().x_desc("step").draw()?;
    chart.draw_series(LineSeries::new(
        losses.iter().enumerate().map(|(i, &l)| (i, l.max(1e-6))),
        &BLUE,
    ))?;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            format!("held-out waves: prediction vs target (MSE {test_loss:.4})"),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0..SEQ_LEN, -1.3f32..1.3f32)?;
    chart.configure_mesh().x_desc("t").draw()?;
    for (wave, color) in [(0usize, &RED), (1, &BLUE)] {
        let target = y.slice(s![.., wave]);
        let prediction = pred.slice(s![.., wave]);
        chart
            .draw_series(LineSeries::new(
                target.iter().enumerate().map(|(t, &v)| (t, v)),
                color.stroke_width(1),
            ))?
            .label(format!("target {wave}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(1))
            });
        chart
            .draw_series(PointSeries::of_element(
                prediction.iter().enumerate().map(|(t, &v)| (t, v)),
                3,
                color.filled(),
                &|c, s, st| Circle::new(c, s, st),
            ))?
            .label(format!("prediction {wave}"))
            .legend(move |(x, y)| Circle::new((x + 7, y), 3, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    println!("wrote {} and {}", png.display(), weights.display());
    Ok(())
}
