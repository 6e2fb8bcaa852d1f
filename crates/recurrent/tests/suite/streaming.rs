//! Long sequences and streaming: the chunked multi-layer path and `Rnn::stream` give the
//! numbers of one plain call and of the reference loop.

use crate::common;

use common::{assert_close, random_array};
use ndarray::{s, Axis};
use recurrent::{reference, Error, Nonlinearity, Rnn, RnnConfig};

#[test]
fn long_multilayer_sequences_run_in_chunks_like_the_reference() {
    // L > CHUNK_STEPS (512) with 2-3 unidirectional layers takes the chunked path.
    for (config, shape, with_h0) in [
        (RnnConfig::new(3, 8).num_layers(2), vec![1100, 2, 3], true),
        (
            RnnConfig::new(3, 5)
                .num_layers(3)
                .batch_first(true)
                .nonlinearity(Nonlinearity::Relu),
            vec![2, 1030, 3],
            false,
        ),
        (RnnConfig::new(4, 6).num_layers(2), vec![700, 4], true),
    ] {
        let rnn = Rnn::<f64>::seeded(config.clone(), 5).unwrap();
        let x = random_array::<f64>(&shape, 1, 1.0);
        let layers = config.num_layers;
        let h0_shape = if shape.len() == 2 {
            vec![layers, config.hidden_size]
        } else {
            vec![
                layers,
                shape[usize::from(!config.batch_first)],
                config.hidden_size,
            ]
        };
        let h0 = with_h0.then(|| random_array::<f64>(&h0_shape, 2, 0.5));
        let (out, hn) = rnn
            .forward(x.view(), h0.as_ref().map(|h| h.view()))
            .unwrap();
        let (want_out, want_hn) =
            reference::forward(&rnn, x.view(), h0.as_ref().map(|h| h.view())).unwrap();
        assert_close(&out, &want_out, &format!("{config}: output"));
        assert_close(&hn, &want_hn, &format!("{config}: h_n"));
    }
}

#[test]
fn streaming_in_pieces_equals_one_call() {
    let config = RnnConfig::new(3, 7).num_layers(2);
    let rnn = Rnn::<f32>::seeded(config, 9).unwrap();
    let x = random_array::<f32>(&[23, 2, 3], 4, 1.0);
    let h0 = random_array::<f32>(&[2, 2, 7], 6, 0.5);
    let (whole, h_n) = rnn.forward(x.view(), Some(h0.view())).unwrap();
    for pieces in [vec![23], vec![1; 23], vec![5, 1, 10, 7], vec![22, 1]] {
        let mut stream = rnn.stream(Some(h0.view())).unwrap();
        let mut start = 0;
        for len in pieces.iter().copied() {
            let out = stream
                .feed(x.slice(s![start..start + len, .., ..]).into_dyn())
                .unwrap();
            let want = whole
                .slice_axis(Axis(0), (start..start + len).into())
                .to_owned();
            assert_close(&out, &want, &format!("{pieces:?} at {start}"));
            start += len;
        }
        assert_close(
            &stream.state().unwrap().to_owned(),
            &h_n,
            &format!("{pieces:?}: state"),
        );
    }
}

#[test]
fn streaming_refuses_bidirectional_and_changed_batches() {
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, 4).bidirectional(true), 0).unwrap();
    assert!(matches!(rnn.stream(None), Err(Error::Config(_))));

    let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, 4), 0).unwrap();
    let mut stream = rnn.stream(None).unwrap();
    stream
        .feed(random_array::<f32>(&[2, 5, 3], 1, 1.0).view())
        .unwrap();
    let err = stream
        .feed(random_array::<f32>(&[2, 4, 3], 1, 1.0).view())
        .unwrap_err();
    assert!(matches!(err, Error::HiddenShape { .. }), "{err:?}");
}

#[test]
fn steps_equal_one_call_and_mix_with_chunks() {
    for config in [
        RnnConfig::new(3, 7).num_layers(2),
        RnnConfig::new(4, 20)
            .num_layers(3)
            .batch_first(true)
            .nonlinearity(Nonlinearity::Relu),
        RnnConfig::new(2, 5).bias(false),
    ] {
        let rnn = Rnn::<f64>::seeded(config.clone(), 3).unwrap();
        let batch = 3;
        let (steps, features) = (9, config.input_size);
        let shape = if config.batch_first {
            [batch, steps, features]
        } else {
            [steps, batch, features]
        };
        let x = random_array::<f64>(&shape, 8, 1.0);
        let h0 = random_array::<f64>(&[config.num_layers, batch, config.hidden_size], 9, 0.5);
        let (whole, h_n) = rnn.forward(x.view(), Some(h0.view())).unwrap();
        let time = Axis(usize::from(config.batch_first));
        let x3 = x.view().into_dimensionality::<ndarray::Ix3>().unwrap();
        let mut stream = rnn.stream(Some(h0.view())).unwrap();
        for t in 0..steps {
            let want = whole.index_axis(time, t).to_owned();
            if t % 3 == 2 {
                // Every third step as a one-step chunk through feed.
                let out = stream
                    .feed(x.slice_axis(time, (t..t + 1).into()).into_dyn())
                    .unwrap();
                assert_close(
                    &out.index_axis(time, 0).to_owned(),
                    &want,
                    &format!("{config}: feed {t}"),
                );
            } else {
                let out = stream.step(x3.index_axis(time, t)).unwrap().to_owned();
                assert_close(&out.into_dyn(), &want, &format!("{config}: step {t}"));
            }
        }
        assert_close(
            &stream.state().unwrap().to_owned(),
            &h_n,
            &format!("{config}: state"),
        );
    }
}

#[test]
fn unbatched_streams_step_with_one_row() {
    let config = RnnConfig::new(3, 4).num_layers(2);
    let rnn = Rnn::<f32>::seeded(config, 1).unwrap();
    let x = random_array::<f32>(&[6, 3], 2, 1.0);
    let h0 = random_array::<f32>(&[2, 4], 3, 0.5);
    let (whole, h_n) = rnn.forward(x.view(), Some(h0.view())).unwrap();
    let x2 = x.view().into_dimensionality::<ndarray::Ix2>().unwrap();
    let mut stream = rnn.stream(Some(h0.view())).unwrap();
    for t in 0..6 {
        let out = stream.step(x2.slice(s![t..t + 1, ..])).unwrap().to_owned();
        assert_close(
            &out.into_dyn(),
            &whole.slice(s![t..t + 1, ..]).to_owned().into_dyn(),
            &format!("step {t}"),
        );
    }
    // The state keeps the caller's unbatched form.
    assert_close(&stream.state().unwrap().to_owned(), &h_n, "state");
    let err = stream.step(
        random_array::<f32>(&[2, 3], 4, 1.0)
            .view()
            .into_dimensionality()
            .unwrap(),
    );
    assert!(matches!(err, Err(Error::HiddenShape { .. })), "{err:?}");
}

#[test]
fn step_refuses_wrong_widths_and_batches() {
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, 4).num_layers(2), 0).unwrap();
    let wide = random_array::<f32>(&[2, 5], 1, 1.0);
    let mut stream = rnn.stream(None).unwrap();
    let err = stream.step(wide.view().into_dimensionality().unwrap());
    assert!(
        matches!(
            err,
            Err(Error::InputSize {
                expected: 3,
                got: 5
            })
        ),
        "{err:?}"
    );
    let x = random_array::<f32>(&[2, 3], 1, 1.0);
    stream
        .step(x.view().into_dimensionality().unwrap())
        .unwrap();
    let x = random_array::<f32>(&[4, 3], 1, 1.0);
    let err = stream.step(x.view().into_dimensionality().unwrap());
    assert!(matches!(err, Err(Error::HiddenShape { .. })), "{err:?}");
    // h0 of the wrong size or rank is refused when the stream starts.
    let h0 = random_array::<f32>(&[1, 2, 4], 1, 1.0);
    assert!(matches!(
        rnn.stream(Some(h0.view())),
        Err(Error::HiddenShape { .. })
    ));
    let h0 = random_array::<f32>(&[2, 1, 2, 4], 1, 1.0);
    assert!(matches!(
        rnn.stream(Some(h0.view())),
        Err(Error::HiddenRank { .. })
    ));
}

mod every_kind {
    //! Streams of every kind against one `forward`: random chunkings (lengths 0..L),
    //! batched and unbatched, with and without an initial state, 1-3 layers, LSTM
    //! projections, f32 and f64, on 1 and 2 threads.

    use ndarray::{concatenate, s, ArrayD, Axis};
    use proptest::prelude::*;
    use recurrent::{Float, Gru, Kind, Lstm, Nonlinearity, Rnn, RnnConfig};

    use crate::common::random_array;

    /// How close a streamed result must be to one `forward`'s: a chunk's input projection
    /// and a step's products may be summed in another order than the whole sequence's, a
    /// few units in the last place per step (see `recurrent::stream`).
    /// The bound: one unit in the last place (at 1.0) per step of the sequence, each
    /// step's rounding difference carried through the recurrence.
    fn assert_near<T: Float>(got: &ArrayD<T>, want: &ArrayD<T>, steps: usize, what: &str) {
        assert_eq!(got.shape(), want.shape(), "{what}");
        let ulp = match T::DTYPE {
            recurrent::Dtype::F32 => f64::from(f32::EPSILON),
            recurrent::Dtype::F64 => f64::EPSILON,
        };
        let eps = ulp * steps.max(1) as f64;
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.as_f64(), w.as_f64());
            assert!(
                (g - w).abs() <= eps * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()),
                "{what}: {g} vs {w}"
            );
        }
    }

    /// `(config, L, batch (None: unbatched), with state, chunk lengths, seed)`.
    fn case() -> impl Strategy<Value = (RnnConfig, usize, Option<usize>, bool, Vec<usize>, u64)> {
        (
            0usize..5,
            1usize..4,
            1usize..5,
            1usize..6,
            proptest::option::of(1usize..4),
            any::<bool>(),
            1usize..9,
            proptest::collection::vec(0usize..9, 1..12),
            any::<u64>(),
        )
            .prop_map(
                |(which, layers, input, hidden, batch, with_state, len, chunks, seed)| {
                    let config = match which {
                        0 => RnnConfig::new(input, hidden),
                        1 => RnnConfig::new(input, hidden).nonlinearity(Nonlinearity::Relu),
                        2 => RnnConfig::lstm(input, hidden),
                        3 => RnnConfig::lstm(input, hidden + 1).proj_size(hidden),
                        _ => RnnConfig::gru(input, hidden),
                    }
                    .num_layers(layers);
                    // Chunk lengths cut at L; a tail is fed last.
                    let mut cut = Vec::new();
                    let mut left = len;
                    for c in chunks {
                        let c = c.min(left);
                        cut.push(c);
                        left -= c;
                    }
                    cut.push(left);
                    (config, len, batch, with_state, cut, seed)
                },
            )
    }

    /// Streams `x` in `chunks` (and again one step at a time) and compares with `forward`.
    fn check<T: Float>(
        config: &RnnConfig,
        len: usize,
        batch: Option<usize>,
        with_state: bool,
        chunks: &[usize],
        seed: u64,
    ) {
        let mut x_shape = vec![len];
        x_shape.extend(batch);
        x_shape.push(config.input_size);
        let x = random_array::<T>(&x_shape, seed, 1.0);
        let state_shape = |width: usize| {
            let mut shape = vec![config.num_layers];
            shape.extend(batch);
            shape.push(width);
            shape
        };
        let h0 = with_state
            .then(|| random_array::<T>(&state_shape(config.output_hidden_size()), seed + 1, 0.5));
        let c0 =
            with_state.then(|| random_array::<T>(&state_shape(config.hidden_size), seed + 2, 0.5));
        let what = format!("{config}, L={len}, N={batch:?}, state={with_state}, chunks={chunks:?}");
        // Feeds every chunk, then compares outputs and the final state(s).
        macro_rules! run {
            ($layer:expr, $stream:expr, $want_out:expr, $want_state:expr, $state_of:expr) => {{
                let mut stream = $stream;
                let mut outs = Vec::new();
                let mut start = 0;
                for &c in chunks {
                    outs.push(
                        stream
                            .feed(x.slice_axis(Axis(0), (start..start + c).into()))
                            .unwrap(),
                    );
                    start += c;
                }
                let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
                let out = concatenate(Axis(0), &views).unwrap();
                assert_near(&out, &$want_out, len, &format!("{what}: output"));
                for (got, want) in $state_of(&stream).into_iter().zip($want_state) {
                    assert_near(&got, &want, len, &format!("{what}: state"));
                }
            }};
        }
        match config.kind {
            Kind::Lstm => {
                let lstm = Lstm::<T>::seeded(config.clone(), seed).unwrap();
                let state = h0.clone().zip(c0.clone());
                let (want, (h_n, c_n)) = lstm.forward(x.view(), &state).unwrap();
                let of = |s: &recurrent::LstmStream<'_, T>| {
                    let (h, c) = s.state().unwrap();
                    vec![h.to_owned(), c.to_owned()]
                };
                run!(
                    lstm,
                    lstm.stream(&state).unwrap(),
                    want,
                    vec![h_n.clone(), c_n.clone()],
                    of
                );
                // One step at a time through `step`, each output a view.
                let mut live = lstm.stream(&state).unwrap();
                for t in 0..len {
                    let x_t = x.index_axis(Axis(0), t);
                    let x_t = x_t
                        .into_shape_with_order((batch.unwrap_or(1), config.input_size))
                        .unwrap();
                    let y = live.step(x_t).unwrap().to_owned().into_dyn();
                    let want_t = want.index_axis(Axis(0), t).to_owned();
                    let want_t = want_t.into_shape_with_order(y.shape()).unwrap();
                    assert_near(&y, &want_t, t + 1, &format!("{what}: step {t}"));
                }
            }
            Kind::Gru => {
                let gru = Gru::<T>::seeded(config.clone(), seed).unwrap();
                let (want, h_n) = gru.forward(x.view(), &h0).unwrap();
                let of = |s: &recurrent::GruStream<'_, T>| vec![s.state().unwrap().to_owned()];
                run!(gru, gru.stream(&h0).unwrap(), want, vec![h_n], of);
            }
            Kind::Rnn => {
                let rnn = Rnn::<T>::seeded(config.clone(), seed).unwrap();
                let (want, h_n) = rnn.forward(x.view(), &h0).unwrap();
                let of = |s: &recurrent::RnnStream<'_, T>| vec![s.state().unwrap().to_owned()];
                run!(rnn, rnn.stream(&h0).unwrap(), want, vec![h_n], of);
            }
        }
        let _ = s![..];
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn streams_of_every_kind_equal_one_forward(
            (config, len, batch, with_state, chunks, seed) in case(),
            f64s in any::<bool>(),
            two_threads in any::<bool>(),
        ) {
            let threads = if two_threads { 2 } else { 1 };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                if f64s {
                    check::<f64>(&config, len, batch, with_state, &chunks, seed);
                } else {
                    check::<f32>(&config, len, batch, with_state, &chunks, seed);
                }
            });
        }
    }
}

/// Streams go to other threads (a server keeps one per connection), refuse a
/// bidirectional layer of any kind, and `reset` starts over (or, refused, changes
/// nothing).
#[test]
fn streams_are_send_refuse_bidirectional_and_reset() {
    fn is_send<S: Send>(_: &S) {}
    let lstm = recurrent::Lstm::<f32>::seeded(RnnConfig::lstm(3, 4).proj_size(2), 1).unwrap();
    let gru = recurrent::Gru::<f32>::seeded(RnnConfig::gru(3, 4).num_layers(2), 1).unwrap();
    let x = random_array::<f32>(&[6, 2, 3], 3, 1.0);
    let (want, _) = lstm.forward(x.view(), None).unwrap();
    let mut stream = lstm.stream(None).unwrap();
    is_send(&stream);
    let first = std::thread::scope(|s| s.spawn(|| stream.feed(x.view()).unwrap()).join().unwrap());
    assert_close(&first, &want, "LSTM stream fed on another thread");
    // reset(None): the same sequence again gives the same output.
    stream.reset(None).unwrap();
    assert!(stream.state().is_none());
    assert_close(&stream.feed(x.view()).unwrap(), &want, "after reset");
    // A state of the wrong shape is refused and the stream keeps its own.
    let before = stream.state_owned().unwrap();
    let bad = (
        ndarray::Array3::<f32>::zeros((1, 2, 3)),
        ndarray::Array3::<f32>::zeros((1, 2, 4)),
    );
    assert!(matches!(stream.reset(&bad), Err(Error::HiddenShape { .. })));
    assert_eq!(stream.state_owned().unwrap(), before);

    let mut gru_stream = gru.stream(None).unwrap();
    is_send(&gru_stream);
    let (want, h_n) = gru.forward(x.view(), None).unwrap();
    let y = gru_stream.feed(x.view()).unwrap();
    assert_close(&y, &want, "GRU stream");
    assert_close(&gru_stream.state().unwrap().to_owned(), &h_n, "GRU state");
    for config in [RnnConfig::lstm(3, 4), RnnConfig::gru(3, 4)] {
        let config = config.bidirectional(true);
        let message = match config.kind {
            recurrent::Kind::Lstm => recurrent::Lstm::<f32>::seeded(config, 0)
                .unwrap()
                .stream(None)
                .err()
                .map(|e| e.to_string()),
            _ => recurrent::Gru::<f32>::seeded(config, 0)
                .unwrap()
                .stream(None)
                .err()
                .map(|e| e.to_string()),
        };
        assert!(message.is_some_and(|m| m.contains("bidirectional")));
    }
}
