//! Long sequences and streaming: the chunked multi-layer path and `Rnn::stream` give the
//! numbers of one plain call and of the reference loop.

mod common;

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
        assert_close(stream.state().unwrap(), &h_n, &format!("{pieces:?}: state"));
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
