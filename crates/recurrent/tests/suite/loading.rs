//! One-line loading (`Rnn::load`, `Lstm::load`, `Gru::load`, `recurrent::load`) of state
//! dicts saved the way torch users save them (fixtures/first_hour, from
//! scripts/fixtures_first_hour.py), the options a file does not record, and states
//! passed back as they were returned.

use std::path::PathBuf;

use ndarray::{s, ArrayD, Axis};
use recurrent::io::safetensors::{StateDict, META_BATCH_FIRST, META_NONLINEARITY};
use recurrent::{Error, Gru, Layer, Lstm, Nonlinearity, Rnn};

use crate::common::{assert_close, fixtures};

fn path(name: &str) -> PathBuf {
    fixtures().join("first_hour").join(name)
}

fn npy(name: &str) -> ArrayD<f32> {
    ndarray_npy::read_npy(path(name)).expect("fixture")
}

#[test]
fn each_kind_loads_in_one_line_and_gives_torchs_numbers() {
    // LSTM(10, 20, num_layers=2, batch_first=True), saved with the metadata recording it.
    let lstm = Lstm::<f32>::load(path("lstm_bf_meta.safetensors"), None).unwrap();
    assert!(lstm.config().batch_first);
    let x = npy("lstm_bf_meta_input.npy");
    let (output, (h_n, c_n)) = lstm.forward(x.view(), None).unwrap();
    assert_close(&output, &npy("lstm_bf_meta_output.npy"), "LSTM output");
    assert_close(&h_n, &npy("lstm_bf_meta_hn.npy"), "LSTM h_n");
    assert_close(&c_n, &npy("lstm_bf_meta_cn.npy"), "LSTM c_n");

    // GRU(5, 7, num_layers=2) on an unbatched input, in float64.
    let gru = Gru::<f64>::load(path("gru_meta.safetensors"), None).unwrap();
    let x = npy("gru_meta_input.npy").mapv(f64::from);
    let (output, h_n) = gru.forward(x.view(), None).unwrap();
    assert_close(
        &output.mapv(|v| v as f32),
        &npy("gru_meta_output.npy"),
        "GRU output",
    );
    assert_close(&h_n.mapv(|v| v as f32), &npy("gru_meta_hn.npy"), "GRU h_n");

    // recurrent::load tells the kinds apart by the tensors.
    for (file, kind) in [
        ("lstm_bf_meta.safetensors", "LSTM"),
        ("gru_meta.safetensors", "GRU"),
        ("rnn_relu_nometa.safetensors", "RNN"),
    ] {
        let layer = recurrent::load::<f32>(path(file), None).unwrap();
        assert_eq!(layer.kind().name(), kind, "{file}");
        let matches = matches!(
            (&layer, kind),
            (Layer::Lstm(_), "LSTM") | (Layer::Gru(_), "GRU") | (Layer::Rnn(_), "RNN")
        );
        assert!(matches, "{file}: {}", layer.config());
        assert_eq!(
            layer.named_parameters().count(),
            layer.layers().parameter_names().len()
        );
    }
}

#[test]
fn loading_the_wrong_kind_names_the_call_that_loads_it() {
    let lstm_file = path("lstm_bf_meta.safetensors");
    let err = Rnn::<f32>::load(&lstm_file, None).unwrap_err();
    assert!(matches!(err, Error::WrongKind { .. }), "{err:?}");
    let message = err.to_string();
    // Debug shows the message too (what `main` returning the error prints).
    assert_eq!(format!("{err:?}"), message);
    for needle in [
        "lstm_bf_meta.safetensors",
        "an LSTM",
        "not an RNN",
        "Lstm::load",
        "recurrent::load",
    ] {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
    let message = Lstm::<f32>::load(path("gru_meta.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("a GRU") && message.contains("Gru::load"),
        "{message}"
    );
    let message = Gru::<f64>::load(path("rnn_relu_nometa.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("an RNN") && message.contains("Rnn::load"),
        "{message}"
    );
}

#[test]
fn options_a_file_does_not_record_are_torchs_defaults_and_say_so() {
    // Saved with save_file(model.state_dict(), path): batch_first=True is not recorded.
    let file = path("lstm_bf_nometa.safetensors");
    let dict = StateDict::read(&file).unwrap();
    assert!(!dict.records(META_BATCH_FIRST));
    assert!(StateDict::read(path("lstm_bf_meta.safetensors"))
        .unwrap()
        .records(META_BATCH_FIRST));
    let mut lstm = Lstm::<f32>::load(&file, None).unwrap();
    assert!(!lstm.config().batch_first, "torch's default");
    let x = npy("lstm_bf_nometa_input.npy");
    let want = npy("lstm_bf_nometa_output.npy");
    // The trap: the same shape, other numbers.
    let (wrong, _) = lstm.forward(x.view(), None).unwrap();
    assert_eq!(wrong.shape(), want.shape());
    let worst = (&wrong - &want).iter().fold(0f32, |m, d| m.max(d.abs()));
    assert!(worst > 1e-2, "batch_first should matter here ({worst})");
    lstm.set_batch_first(true);
    let (output, _) = lstm.forward(x.view(), None).unwrap();
    assert_close(&output, &want, "LSTM output once batch_first is set");

    // An RNN with relu saved by torch: nonlinearity is not recorded either.
    let file = path("rnn_relu_nometa.safetensors");
    assert!(!StateDict::read(&file).unwrap().records(META_NONLINEARITY));
    let mut rnn = Rnn::<f32>::load(&file, None).unwrap();
    assert_eq!(rnn.config().nonlinearity, Nonlinearity::Tanh);
    rnn.set_nonlinearity(Nonlinearity::Relu);
    let (output, h_n) = rnn
        .forward(npy("rnn_relu_nometa_input.npy").view(), None)
        .unwrap();
    assert_close(&output, &npy("rnn_relu_nometa_output.npy"), "RNN output");
    assert_close(&h_n, &npy("rnn_relu_nometa_hn.npy"), "RNN h_n");
}

/// Running a sequence in two calls, the second starting from the state the first
/// returned (passed back as it came), gives what one call gives.
#[test]
fn a_returned_state_is_the_next_calls_initial_state_as_it_is() {
    let lstm = Lstm::<f32>::load(path("lstm_bf_meta.safetensors"), None).unwrap();
    let x = npy("lstm_bf_meta_input.npy"); // (N, L, H_in), batch_first
    let (first, second) = (x.slice(s![.., ..3, ..]), x.slice(s![.., 3.., ..]));
    let (out1, state) = lstm.forward(first.into_dyn(), None).unwrap();
    let (out2, (h_n, c_n)) = lstm.forward(second.into_dyn(), &state).unwrap();
    let joined = ndarray::concatenate(Axis(1), &[out1.view(), out2.view()]).unwrap();
    assert_close(
        &joined,
        &npy("lstm_bf_meta_output.npy"),
        "LSTM in two calls",
    );
    assert_close(&h_n, &npy("lstm_bf_meta_hn.npy"), "LSTM h_n in two calls");
    assert_close(&c_n, &npy("lstm_bf_meta_cn.npy"), "LSTM c_n in two calls");
    // The other accepted forms give the same bits.
    let (a, _) = lstm
        .forward(second.into_dyn(), (&state.0, &state.1))
        .unwrap();
    let (b, _) = lstm
        .forward(second.into_dyn(), Some((state.0.view(), state.1.view())))
        .unwrap();
    let (c, _) = lstm
        .forward(second.into_dyn(), (state.0.view(), state.1.view()))
        .unwrap();
    assert_eq!(a, out2);
    assert_eq!(b, out2);
    assert_eq!(c, out2);

    let gru = Gru::<f64>::load(path("gru_meta.safetensors"), None).unwrap();
    let x = npy("gru_meta_input.npy").mapv(f64::from); // unbatched (L, H_in)
    let (out1, h) = gru.forward(x.slice(s![..1, ..]).into_dyn(), None).unwrap();
    let (out2, h_n) = gru.forward(x.slice(s![1.., ..]).into_dyn(), &h).unwrap();
    let joined = ndarray::concatenate(Axis(0), &[out1.view(), out2.view()]).unwrap();
    assert_close(
        &joined.mapv(|v| v as f32),
        &npy("gru_meta_output.npy"),
        "GRU in two calls",
    );
    assert_close(&h_n.mapv(|v| v as f32), &npy("gru_meta_hn.npy"), "GRU h_n");
    let (again, _) = gru
        .forward(x.slice(s![1.., ..]).into_dyn(), h.view())
        .unwrap();
    assert_eq!(again, out2);

    let mut rnn = Rnn::<f32>::load(path("rnn_relu_nometa.safetensors"), None).unwrap();
    rnn.set_nonlinearity(Nonlinearity::Relu);
    let x = npy("rnn_relu_nometa_input.npy");
    let (out1, h) = rnn
        .forward(x.slice(s![..2, .., ..]).into_dyn(), None)
        .unwrap();
    let (out2, h_n) = rnn
        .forward(x.slice(s![2.., .., ..]).into_dyn(), &h)
        .unwrap();
    let joined = ndarray::concatenate(Axis(0), &[out1.view(), out2.view()]).unwrap();
    assert_close(
        &joined,
        &npy("rnn_relu_nometa_output.npy"),
        "RNN in two calls",
    );
    assert_close(&h_n, &npy("rnn_relu_nometa_hn.npy"), "RNN h_n");
    // Streams take the same forms.
    let mut stream = rnn.stream(&h).unwrap();
    let y = stream.feed(x.slice(s![2.., .., ..]).into_dyn()).unwrap();
    assert_close(&y, &out2, "stream from a returned state");
}

/// `recurrent::ndarray` is the ndarray the crate's types come from.
#[test]
fn the_reexported_ndarray_is_the_crates_own() {
    let x: recurrent::ndarray::Array3<f32> = recurrent::ndarray::Array3::zeros((2, 1, 10));
    let lstm = Lstm::<f32>::load(path("lstm_bf_meta.safetensors"), None).unwrap();
    let (output, _) = lstm.forward(x.view().into_dyn(), None).unwrap();
    assert_eq!(output.shape(), [2, 1, 20]);
}

/// `model.half()` and `model.to(torch.bfloat16)` state dicts: every value is widened
/// exactly, so the layer computes what torch computes in float32 with the weights
/// widened (`.float()`), and in float64 what that computes to f32's rounding.
#[test]
fn half_precision_state_dicts_are_widened_exactly() {
    use recurrent::io::safetensors::StoredDtype;
    for (name, stored) in [
        ("lstm_f16", StoredDtype::F16),
        ("gru_bf16", StoredDtype::BF16),
    ] {
        let file = path(&format!("{name}.safetensors"));
        let dict = StateDict::read(&file).unwrap();
        assert_eq!(dict.stored_dtype("").unwrap(), stored);
        assert_eq!(dict.dtype("").unwrap(), recurrent::Dtype::F32);
        let x = npy(&format!("{name}_input.npy"));
        let want = npy(&format!("{name}_output.npy"));
        let want_hn = npy(&format!("{name}_hn.npy"));
        let (output, h_n) = match recurrent::load::<f32>(&file, None).unwrap() {
            Layer::Lstm(lstm) => {
                assert_eq!(lstm.config().proj_size, 4);
                let (o, (h, _)) = lstm.forward(x.view(), None).unwrap();
                (o, h)
            }
            Layer::Gru(gru) => gru.forward(x.view(), None).unwrap(),
            other => panic!("{name}: {}", other.config()),
        };
        assert_close(&output, &want, name);
        assert_close(&h_n, &want_hn, name);
        // In float64 the widened weights are the same numbers.
        let wide = recurrent::load::<f64>(&file, None).unwrap();
        let narrow = recurrent::load::<f32>(&file, None).unwrap();
        for ((n64, t64), (_, t32)) in wide.named_parameters().zip(narrow.named_parameters()) {
            assert_eq!(
                t64,
                t32.mapv(f64::from),
                "{name}: {n64} widened differently"
            );
        }
    }
}

/// Weight-normed parameters, in both of torch's spellings (g and v in the state dict,
/// not the weight), give torch's numbers: `w = g * v / ||v||` over torch's dim.
#[test]
fn weight_normed_parameters_are_reconstructed_as_torch_does() {
    for name in ["gru_wn", "lstm_wn_old"] {
        let file = path(&format!("{name}.safetensors"));
        let names = StateDict::read(&file).unwrap();
        let names = names.names();
        assert!(names.contains(&"weight_hh_l0"), "{name}: {names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with("_g") || n.contains("original")),
            "{names:?}"
        );
        let x = npy(&format!("{name}_input.npy"));
        let (output, h_n) = match recurrent::load::<f32>(&file, None).unwrap() {
            Layer::Lstm(lstm) => {
                let (o, (h, _)) = lstm.forward(x.view(), None).unwrap();
                (o, h)
            }
            Layer::Gru(gru) => gru.forward(x.view(), None).unwrap(),
            other => panic!("{name}: {}", other.config()),
        };
        assert_close(&output, &npy(&format!("{name}_output.npy")), name);
        assert_close(&h_n, &npy(&format!("{name}_hn.npy")), name);
    }
}

/// Odd weight-norm pairs are errors or torch's arithmetic, never a panic: a g that
/// keeps no single dimension of v, a weight present beside its g and v, a g of one
/// value (torch's dim=None: one norm over all of v), a v of zeros (0/0 is NaN, as in
/// torch).
#[test]
fn odd_weight_norm_pairs_are_errors_or_torchs_arithmetic() {
    use ndarray::{arr1, arr2, ArrayD, IxDyn};
    use recurrent::io::safetensors::save_tensors;
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, tensors: Vec<(&str, ArrayD<f32>)>| {
        let path = dir.path().join(name);
        let views: Vec<(String, ndarray::ArrayViewD<'_, f32>)> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.view()))
            .collect();
        save_tensors(&path, &views, HashMap::new()).unwrap();
        path
    };
    let v = arr2(&[[3.0f32, 4.0], [0.0, 2.0], [1.0, 0.0]]).into_dyn();
    // g of shape (2, 2) keeps no dimension of v's (3, 2): an error for a recurrent
    // parameter, and another module's odd pair is left alone.
    let bad_g = || ArrayD::<f32>::ones(IxDyn(&[2, 2]));
    let path = write(
        "bad_g.safetensors",
        vec![("weight_hh_l0_g", bad_g()), ("weight_hh_l0_v", v.clone())],
    );
    let message = StateDict::read(&path).unwrap_err().to_string();
    assert!(
        message.contains("weight norm of 'weight_hh_l0'") && message.contains("(2, 2)"),
        "{message}"
    );
    let path = write(
        "other.safetensors",
        vec![("fc.weight_g", bad_g()), ("fc.weight_v", v.clone())],
    );
    let dict = StateDict::read(&path).unwrap();
    assert!(dict.names().contains(&"fc.weight_g"), "{:?}", dict.names());
    // The weight itself beside its g and v: which one is meant is not clear.
    let path = write(
        "both.safetensors",
        vec![
            ("rnn.weight_ih_l0", v.clone()),
            ("rnn.weight_ih_l0_g", ArrayD::ones(IxDyn(&[3, 1]))),
            ("rnn.weight_ih_l0_v", v.clone()),
        ],
    );
    let message = StateDict::read(&path).unwrap_err().to_string();
    assert!(
        message.contains("'rnn.weight_ih_l0' is in the file as well"),
        "{message}"
    );
    // dim=None: g holds one value, the norm is over all of v (sqrt(30) here).
    let path = write(
        "none.safetensors",
        vec![("w_g", arr1(&[2.0f32]).into_dyn()), ("w_v", v.clone())],
    );
    let w = StateDict::read(&path).unwrap().tensor::<f64>("w").unwrap();
    let want = v.mapv(|x| 2.0 * f64::from(x) / 30f64.sqrt());
    assert!((&w - &want).iter().all(|d| d.abs() < 1e-6), "{w} vs {want}");
    // A row of zeros in v with dim=0: that row is 0/0 = NaN, the others are finite.
    let z = arr2(&[[0.0f32, 0.0], [1.0, 1.0]]).into_dyn();
    let path = write(
        "zero.safetensors",
        vec![("w_g", ArrayD::ones(IxDyn(&[2, 1]))), ("w_v", z)],
    );
    let w = StateDict::read(&path).unwrap().tensor::<f32>("w").unwrap();
    assert!(w[[0, 0]].is_nan() && w[[0, 1]].is_nan(), "{w}");
    assert!(
        (w[[1, 0]] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6,
        "{w}"
    );
}
