//! Property tests: the fast LSTM and GRU paths (and variable lengths for every kind)
//! equal the reference loops on random configurations, float32 and float64.

use crate::common;

use common::{assert_close, random_array};
use proptest::prelude::*;
use recurrent::params::Layers;
use recurrent::{reference, Float, Gru, Kind, Lstm, Nonlinearity, Rnn, RnnConfig};

#[allow(clippy::too_many_arguments)]
fn check<T: Float>(
    config: RnnConfig,
    seq_len: usize,
    batch: usize,
    unbatched: bool,
    with_state: bool,
    with_lengths: bool,
    seed: u64,
) {
    let layers = Layers::<T>::seeded(config.clone(), seed).unwrap();
    let (d, h_out, hidden) = (
        config.num_directions() * config.num_layers,
        config.output_hidden_size(),
        config.hidden_size,
    );
    let batch = if unbatched { 1 } else { batch };
    let x_shape = if unbatched {
        vec![seq_len, config.input_size]
    } else if config.batch_first {
        vec![batch, seq_len, config.input_size]
    } else {
        vec![seq_len, batch, config.input_size]
    };
    let state = |w: usize| {
        if unbatched {
            vec![d, w]
        } else {
            vec![d, batch, w]
        }
    };
    let x = random_array::<T>(&x_shape, seed + 1, 1.0);
    let h0 = with_state.then(|| random_array::<T>(&state(h_out), seed + 2, 0.5));
    let c0 = (with_state && config.kind == Kind::Lstm)
        .then(|| random_array::<T>(&state(hidden), seed + 3, 0.5));
    let lengths: Option<Vec<usize>> = (with_lengths && !unbatched).then(|| {
        (0..batch)
            .map(|n| 1 + (n * 3 + seed as usize) % seq_len)
            .collect()
    });
    let (xv, hv, cv) = (
        x.view(),
        h0.as_ref().map(|a| a.view()),
        c0.as_ref().map(|a| a.view()),
    );
    let l = lengths.as_deref();
    let (out, hn, cn) = match config.kind {
        Kind::Rnn => {
            let m = Rnn::from_layers(layers.clone()).unwrap();
            let (o, h) = match l {
                Some(l) => m.forward_padded(xv, l, hv),
                None => m.forward(xv, hv),
            }
            .unwrap();
            (o, h, None)
        }
        Kind::Gru => {
            let m = Gru::from_layers(layers.clone()).unwrap();
            let (o, h) = match l {
                Some(l) => m.forward_padded(xv, l, hv),
                None => m.forward(xv, hv),
            }
            .unwrap();
            (o, h, None)
        }
        Kind::Lstm => {
            let m = Lstm::from_layers(layers.clone()).unwrap();
            let (o, (h, c)) = match l {
                Some(l) => m.forward_padded(xv, l, hv.zip(cv)),
                None => m.forward(xv, hv.zip(cv)),
            }
            .unwrap();
            (o, h, Some(c))
        }
    };
    let (want_out, want_hn, want_cn) = reference::forward_layers(
        &layers,
        x.view(),
        h0.as_ref().map(|a| a.view()),
        c0.as_ref().map(|a| a.view()),
        l,
    )
    .unwrap();
    let what = format!("{config} L={seq_len} N={batch} unbatched={unbatched} lengths={lengths:?}");
    assert_close(&out, &want_out, &format!("{what}: output"));
    assert_close(&hn, &want_hn, &format!("{what}: h_n"));
    if let (Some(cn), Some(want)) = (&cn, &want_cn) {
        assert_close(cn, want, &format!("{what}: c_n"));
    }
}

fn config_strategy() -> impl Strategy<Value = RnnConfig> {
    (
        0usize..4,
        1usize..6,
        prop::sample::select(vec![1usize, 2, 3, 5, 16, 17, 33]),
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, input, hidden, layers, bias, batch_first, bidirectional, proj)| {
                let base = match kind {
                    0 => RnnConfig::lstm(input, hidden),
                    1 => RnnConfig::gru(input, hidden),
                    2 => RnnConfig::new(input, hidden),
                    _ => RnnConfig::new(input, hidden).nonlinearity(Nonlinearity::Relu),
                };
                let proj_size = if kind == 0 && proj && hidden > 1 {
                    hidden / 2
                } else {
                    0
                };
                base.num_layers(layers)
                    .bias(bias)
                    .batch_first(batch_first)
                    .bidirectional(bidirectional)
                    .proj_size(proj_size)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn fast_paths_equal_the_reference(
        config in config_strategy(),
        seq_len in 1usize..7,
        batch in 0usize..5,
        unbatched in any::<bool>(),
        with_state in any::<bool>(),
        with_lengths in any::<bool>(),
        f64s in any::<bool>(),
        seed in 0u64..10_000,
    ) {
        // Lengths need at least one sequence.
        let with_lengths = with_lengths && batch > 0;
        if f64s {
            check::<f64>(config, seq_len, batch, unbatched, with_state, with_lengths, seed);
        } else {
            check::<f32>(config, seq_len, batch, unbatched, with_state, with_lengths, seed);
        }
    }
}
