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
