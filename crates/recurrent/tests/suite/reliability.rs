//! The reliability promises (docs/RELIABILITY.md), one kind of fault at a time: nothing
//! past a sequence's length reaches any result; readers validate the header they use;
//! sizes that cannot be allocated are errors; optimizers validate before they mutate;
//! what torch or the format refuses is refused.

use crate::common;

use std::path::PathBuf;

use ndarray::{s, Array1, Array3, ArrayD, Axis, IxDyn};
use recurrent::optim::{Adam, AdamConfig, AdamW, AdamWConfig, Sgd, SgdConfig};
use recurrent::{Error, Gru, Lstm, Nonlinearity, Rnn, RnnConfig};

use common::random_array;

/// One layer of any kind, run through the same calls.
enum Layer {
    Rnn(Rnn<f64>),
    Lstm(Lstm<f64>),
    Gru(Gru<f64>),
}

type Named = Vec<(String, ArrayD<f64>)>;

impl Layer {
    fn new(config: RnnConfig, seed: u64) -> Layer {
        match config.kind {
            recurrent::Kind::Rnn => Layer::Rnn(Rnn::seeded(config, seed).unwrap()),
            recurrent::Kind::Lstm => Layer::Lstm(Lstm::seeded(config, seed).unwrap()),
            recurrent::Kind::Gru => Layer::Gru(Gru::seeded(config, seed).unwrap()),
        }
    }

    fn set(&mut self, name: &str, value: &ArrayD<f64>) {
        match self {
            Layer::Rnn(l) => l.set_parameter(name, value.view()),
            Layer::Lstm(l) => l.set_parameter(name, value.view()),
            Layer::Gru(l) => l.set_parameter(name, value.view()),
        }
        .unwrap();
    }

    fn get(&self, name: &str) -> ArrayD<f64> {
        match self {
            Layer::Rnn(l) => l.parameter(name),
            Layer::Lstm(l) => l.parameter(name),
            Layer::Gru(l) => l.parameter(name),
        }
        .unwrap()
        .to_owned()
    }

    /// `output`, `h_n` (and `c_n`), by name.
    fn forward(&self, x: &ArrayD<f64>, lengths: Option<&[usize]>) -> Named {
        let x = x.view();
        let (o, h, c) = match (self, lengths) {
            (Layer::Rnn(l), Some(n)) => l.forward_padded(x, n, None).map(|(o, h)| (o, h, None)),
            (Layer::Rnn(l), None) => l.forward(x, None).map(|(o, h)| (o, h, None)),
            (Layer::Gru(l), Some(n)) => l.forward_padded(x, n, None).map(|(o, h)| (o, h, None)),
            (Layer::Gru(l), None) => l.forward(x, None).map(|(o, h)| (o, h, None)),
            (Layer::Lstm(l), Some(n)) => l
                .forward_padded(x, n, None)
                .map(|(o, (h, c))| (o, h, Some(c))),
            (Layer::Lstm(l), None) => l.forward(x, None).map(|(o, (h, c))| (o, h, Some(c))),
        }
        .unwrap();
        let mut all = vec![("output".to_string(), o), ("h_n".to_string(), h)];
        all.extend(c.map(|c| ("c_n".to_string(), c)));
        all
    }

    /// Every gradient of `sum(output * go)`, by name (parameters, then input, h0, c0).
    fn backward(&self, x: &ArrayD<f64>, lengths: Option<&[usize]>, go: &ArrayD<f64>) -> Named {
        let (x, go) = (x.view(), go.view());
        let grads = match (self, lengths) {
            (Layer::Rnn(l), Some(n)) => l.backward_padded(x, n, None, go, None),
            (Layer::Rnn(l), None) => l.backward(x, None, go, None),
            (Layer::Gru(l), Some(n)) => l.backward_padded(x, n, None, go, None),
            (Layer::Gru(l), None) => l.backward(x, None, go, None),
            (Layer::Lstm(l), Some(n)) => l.backward_padded(x, n, None, go, (None, None)),
            (Layer::Lstm(l), None) => l.backward(x, None, go, (None, None)),
        }
        .unwrap();
        let mut all = grads.parameters;
        all.push(("input".to_string(), grads.input));
        all.push(("h0".to_string(), grads.h0));
        all.extend(grads.c0.map(|c| ("c0".to_string(), c)));
        all
    }
}

/// Every kind and option that changes which code runs: narrow (H < 16) and wide
/// hidden sizes, projections, two layers, both directions, batch-first.
fn configs() -> Vec<RnnConfig> {
    let mut all = Vec::new();
    for hidden in [5, 20] {
        all.push(RnnConfig::new(3, hidden));
        all.push(RnnConfig::new(3, hidden).nonlinearity(Nonlinearity::Relu));
        all.push(RnnConfig::lstm(3, hidden));
        all.push(RnnConfig::lstm(3, hidden).proj_size(2));
        all.push(RnnConfig::gru(3, hidden));
    }
    all.into_iter()
        .flat_map(|c| {
            [
                c.clone().num_layers(2).bidirectional(true),
                c.bidirectional(true).batch_first(true),
            ]
        })
        .collect()
}

fn assert_bits_equal(a: &Named, b: &Named, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.shape(), y.shape(), "{what}: {name}");
        for (i, (u, v)) in x.iter().zip(y).enumerate() {
            assert!(
                u.to_bits() == v.to_bits(),
                "{what}: {name}[{i}] is {u} with one padding and {v} with another"
            );
        }
    }
}

/// Lengths for a batch of `n`: every value from 1 to `seq_len`, unsorted.
fn lengths_for(n: usize, seq_len: usize) -> Vec<usize> {
    (0..n).map(|i| 1 + (i * 7 + 3) % seq_len).collect()
}

/// `(L, N, F)` (or `(N, L, F)`) values whose entries past each length are `pad`.
fn padded(config: &RnnConfig, base: &ArrayD<f64>, lengths: &[usize], pad: f64) -> ArrayD<f64> {
    let mut x = base.clone();
    let time = if config.batch_first { 1 } else { 0 };
    for (n, &len) in lengths.iter().enumerate() {
        let mut seq = x.index_axis_mut(Axis(1 - time), n);
        seq.slice_axis_mut(Axis(0), (len..).into()).fill(pad);
    }
    x
}

#[test]
fn nothing_past_a_length_reaches_any_result_forward_or_backward() {
    let (seq_len, batch) = (6, 17); // 17: the backward splits batches of 16 or more
    let lengths = lengths_for(batch, seq_len);
    for (k, config) in configs().into_iter().enumerate() {
        for special_weight in [false, true] {
            let mut layer = Layer::new(config.clone(), k as u64);
            if special_weight {
                // 0 * Inf is NaN: an infinite weight must not turn padding into NaN.
                let mut w = layer.get("weight_ih_l0");
                w[[0, 1]] = f64::INFINITY;
                layer.set("weight_ih_l0", &w);
                let mut w = layer.get("weight_hh_l0_reverse");
                w[[1, 0]] = f64::NEG_INFINITY;
                layer.set("weight_hh_l0_reverse", &w);
            }
            let shape = |f: usize| {
                if config.batch_first {
                    vec![batch, seq_len, f]
                } else {
                    vec![seq_len, batch, f]
                }
            };
            let base = random_array::<f64>(&shape(3), 100 + k as u64, 1.0);
            let width = config.num_directions() * config.output_hidden_size();
            let go_base = random_array::<f64>(&shape(width), 200 + k as u64, 1.0);
            let clean = (
                padded(&config, &base, &lengths, 0.0),
                padded(&config, &go_base, &lengths, 0.0),
            );
            let fwd = layer.forward(&clean.0, Some(&lengths));
            let bwd = layer.backward(&clean.0, Some(&lengths), &clean.1);
            for pad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300] {
                let x = padded(&config, &base, &lengths, pad);
                let go = padded(&config, &go_base, &lengths, pad);
                let what = format!("{config} inf weight {special_weight}, padding {pad}");
                assert_bits_equal(&layer.forward(&x, Some(&lengths)), &fwd, &what);
                assert_bits_equal(&layer.backward(&x, Some(&lengths), &go), &bwd, &what);
            }
            // The input's gradient past each length is exactly zero.
            let grad_input = &bwd.iter().find(|(n, _)| n == "input").unwrap().1;
            let zero = padded(&config, grad_input, &lengths, 0.0);
            assert_eq!(
                grad_input.mapv(f64::to_bits),
                zero.mapv(f64::to_bits),
                "{config}: padding of the input gradient"
            );
            if !special_weight {
                let finite = bwd.iter().all(|(_, g)| g.iter().all(|v| v.is_finite()));
                assert!(finite, "{config}: finite weights, finite gradients");
            }
        }
    }
}

#[test]
fn a_padded_batch_computes_what_each_sequence_computes_alone() {
    let (seq_len, batch) = (5, 4);
    let lengths = [5, 2, 4, 1];
    for (k, config) in configs().into_iter().enumerate() {
        let config = config.batch_first(false);
        let layer = Layer::new(config.clone(), 50 + k as u64);
        let x = padded(
            &config,
            &random_array::<f64>(&[seq_len, batch, 3], k as u64, 1.0),
            &lengths,
            f64::NAN,
        );
        let width = config.num_directions() * config.output_hidden_size();
        let go = random_array::<f64>(&[seq_len, batch, width], 9 + k as u64, 1.0);
        let all = layer.forward(&x, Some(&lengths));
        let grads = layer.backward(&x, Some(&lengths), &go);
        let mut summed: Named = grads
            .iter()
            .filter(|(n, _)| n.contains("_l"))
            .map(|(n, g)| (n.clone(), ArrayD::zeros(g.raw_dim())))
            .collect();
        for (n, &len) in lengths.iter().enumerate() {
            let one = x.slice(s![..len, n..=n, ..]).to_owned().into_dyn();
            let alone = layer.forward(&one, None);
            let what = format!("{config}, sequence {n}");
            let out = all[0].1.slice(s![..len, n..=n, ..]).to_owned().into_dyn();
            common::assert_close(&out, &alone[0].1, &format!("{what}: output"));
            let rest = all[0].1.slice(s![len.., n, ..]);
            assert!(rest.iter().all(|&v| v == 0.0), "{what}: output past length");
            for (i, (name, state)) in all.iter().enumerate().skip(1) {
                let got = state.slice(s![.., n..=n, ..]).to_owned().into_dyn();
                common::assert_close(&got, &alone[i].1, &format!("{what}: {name}"));
            }
            let go_one = go.slice(s![..len, n..=n, ..]).to_owned().into_dyn();
            let g = layer.backward(&one, None, &go_one);
            for ((_, acc), (_, part)) in summed.iter_mut().zip(&g) {
                *acc += part;
            }
            let gi = &grads.iter().find(|(m, _)| m == "input").unwrap().1;
            let gi_one = &g.iter().find(|(m, _)| m == "input").unwrap().1;
            let got = gi.slice(s![..len, n..=n, ..]).to_owned().into_dyn();
            common::assert_close(&got, gi_one, &format!("{what}: input gradient"));
        }
        for (name, want) in &summed {
            let got = &grads.iter().find(|(m, _)| m == name).unwrap().1;
            common::assert_close_tol(got, want, 1e-7, 1e-9, &format!("{config}: {name}"));
        }
    }
}

#[test]
fn an_empty_batch_returns_at_once_whatever_its_length() {
    // 10^12 steps of no sequence: no step loop, no allocation by the length.
    let x = ArrayD::<f64>::zeros(IxDyn(&[1_000_000_000_000, 0, 3]));
    for config in configs() {
        let config = config.batch_first(false);
        let layer = Layer::new(config.clone(), 1);
        let width = config.num_directions() * config.output_hidden_size();
        let out = layer.forward(&x, None);
        assert_eq!(out[0].1.shape(), [1_000_000_000_000, 0, width]);
        assert_eq!(out[1].1.shape()[1], 0);
        let go = ArrayD::<f64>::zeros(IxDyn(&[1_000_000_000_000, 0, width]));
        let grads = layer.backward(&x, None, &go);
        for (name, g) in &grads {
            assert!(g.iter().all(|&v| v == 0.0), "{config}: {name}");
        }
    }
}

#[test]
fn packing_an_empty_batch_is_refused_as_torch_refuses_it() {
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, 4), 0).unwrap();
    let x = Array3::<f32>::zeros((4, 0, 3)).into_dyn();
    let err = rnn.forward_padded(x.view(), &[], None).unwrap_err();
    assert!(
        matches!(err, Error::EmptyPack { ref shape } if shape == &[4, 0, 3]),
        "{err}"
    );
    let go = Array3::<f32>::zeros((4, 0, 4)).into_dyn();
    let err = rnn
        .backward_padded(x.view(), &[], None, go.view(), None)
        .unwrap_err();
    assert!(matches!(err, Error::EmptyPack { .. }), "{err}");
    let err = recurrent::reference::forward_layers(rnn.layers(), x.view(), None, None, Some(&[]))
        .unwrap_err();
    assert!(matches!(err, Error::EmptyPack { .. }), "{err}");
}

#[test]
fn a_layer_too_large_for_memory_is_an_error_not_an_abort() {
    for config in [
        RnnConfig::new(4, 200_000),
        RnnConfig::lstm(4, 60_000),
        RnnConfig::gru(100_000, 50_000).bidirectional(true),
    ] {
        let err = recurrent::params::Layers::<f32>::zeros(config.clone()).unwrap_err();
        assert!(matches!(err, Error::OutOfMemory { .. }), "{config}: {err}");
        assert!(err.to_string().starts_with("not enough memory"), "{err}");
    }
    let err = Lstm::<f64>::seeded(RnnConfig::lstm(4, 60_000), 0).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
}

// --- readers ----------------------------------------------------------------------------

fn npy_file(dir: &std::path::Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let mut header = header.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn npy_headers_are_validated_as_they_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    // Every way of writing a header that declares 1.6 TB over 16 bytes of data.
    for (i, header) in [
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (400000000000,), }",
        "{'descr': '<f4', 'fortran_order': False, 'sh\\x61pe': (400000000000,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'shape': (400000000000,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (400000, 1000000), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
    ]
    .iter()
    .enumerate()
    {
        let path = npy_file(d, &format!("h{i}.npy"), header, &data);
        let err = recurrent::io::npy::read_float(&path).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{header}: {err}");
        assert!(recurrent::io::npy::read::<f32>(&path).is_err());
        assert!(recurrent::io::npy::read_lengths(&path).is_err());
    }
    // Fewer or more bytes than declared.
    for shape in ["(3,)", "(5,)", "(2, 3)"] {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let path = npy_file(d, "n.npy", &header, &data);
        assert!(recurrent::io::npy::read_float(&path).is_err(), "{shape}");
    }
    // A header length past the file's end.
    let path = d.join("long.npy");
    std::fs::write(&path, b"\x93NUMPY\x02\x00\xff\xff\xff\xff{").unwrap();
    assert!(recurrent::io::npy::read_float(&path).is_err());
    // Double-quoted keys, Fortran order and big-endian data are fine when they fit.
    let header = "{\"descr\": \">f4\", \"fortran_order\": True, \"shape\": (2, 2), }";
    let be: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let path = npy_file(d, "ok.npy", header, &be);
    let a = recurrent::io::npy::read::<f32>(&path).unwrap();
    assert_eq!(a, ndarray::arr2(&[[1.0f32, 3.0], [2.0, 4.0]]).into_dyn());
    // Lengths of any integer dtype.
    for (descr, bytes) in [
        ("|u1", vec![3u8, 1]),
        (
            "<i2",
            [3i16, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        (
            "<u4",
            [3u32, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    ] {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
        let path = npy_file(d, "len.npy", &header, &bytes);
        assert_eq!(
            recurrent::io::npy::read_lengths(&path).unwrap(),
            [3, 1],
            "{descr}"
        );
    }
    let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }";
    let path = npy_file(d, "neg.npy", header, &(-2i64).to_le_bytes());
    assert!(recurrent::io::npy::read_lengths(&path).is_err());
    // Float lengths that are whole numbers (torch accepts them); anything else is an
    // error naming the index and the value.
    let floats =
        |values: &[f64]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
    let path = npy_file(d, "f8.npy", header, &floats(&[3.0, 1.0]));
    assert_eq!(recurrent::io::npy::read_lengths(&path).unwrap(), [3, 1]);
    let f4: Vec<u8> = [4.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    let path = npy_file(d, "f4.npy", header, &f4);
    assert_eq!(recurrent::io::npy::read_lengths(&path).unwrap(), [4, 2]);
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
    for (bad, needle) in [
        (2.5, "lengths[1] = 2.5"),
        (-1.0, "lengths[1] = -1"),
        (f64::NAN, "lengths[1] = NaN"),
        (f64::INFINITY, "lengths[1] = inf"),
    ] {
        let path = npy_file(d, "bad.npy", header, &floats(&[3.0, bad]));
        let message = recurrent::io::npy::read_lengths(&path)
            .unwrap_err()
            .to_string();
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
}

/// A safetensors file from `(name, shape, f32 values)` with a hand-written header, so
/// that it can hold what `safetensors::serialize` would never write.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn safetensors_with_repeated_names_or_impossible_layers_are_refused() {
    use recurrent::io::safetensors::StateDict;
    let data = [0u8; 4 * 8];
    let w = |name: &str, start: usize| {
        format!(
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[{start},{}]}}",
            start + 4
        )
    };
    let rnn = [
        w("weight_ih_l0", 0),
        w("weight_hh_l0", 4),
        w("bias_ih_l0", 8),
        w("bias_hh_l0", 12),
    ];
    let ok = format!("{{{}}}", rnn.join(","));
    let dict = StateDict::from_bytes(PathBuf::from("ok"), safetensors_bytes(&ok, &data[..16]));
    assert!(dict.is_ok(), "{:?}", dict.err());
    // Two entries named weight_hh_l0: the first would silently win.
    let dup = format!("{{{},{}}}", rnn.join(","), w("weight_hh_l0", 16));
    let err = StateDict::from_bytes(PathBuf::from("dup"), safetensors_bytes(&dup, &data[..20]))
        .unwrap_err();
    assert!(
        err.to_string().contains("'weight_hh_l0' more than once"),
        "{err}"
    );
    let dup_meta = format!(
        "{{\"__metadata__\":{{\"batch_first\":\"true\",\"batch_first\":\"false\"}},{}}}",
        rnn.join(",")
    );
    let err = StateDict::from_bytes(
        PathBuf::from("m"),
        safetensors_bytes(&dup_meta, &data[..16]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("'batch_first' more than once"),
        "{err}"
    );
    // The same with `"__metadata__": null`, which safetensors accepts as no metadata.
    let dup_null = format!(
        "{{\"__metadata__\":null,{},{}}}",
        rnn.join(","),
        w("weight_hh_l0", 16)
    );
    let err = StateDict::from_bytes(
        PathBuf::from("n"),
        safetensors_bytes(&dup_null, &data[..20]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("'weight_hh_l0' more than once"),
        "{err}"
    );
    // A layer index past usize: not an unrelated tensor to ignore.
    let big = format!(
        "{{{},{}}}",
        rnn.join(","),
        w("weight_ih_l18446744073709551616", 16)
    );
    let dict =
        StateDict::from_bytes(PathBuf::from("big"), safetensors_bytes(&big, &data[..20])).unwrap();
    let prefix = dict.resolve_prefix(None).unwrap();
    let err = dict.infer_config(&prefix).unwrap_err();
    assert!(
        err.to_string().contains("weight_ih_l18446744073709551616"),
        "{err}"
    );
}

// --- optimizers ---------------------------------------------------------------------------

#[test]
fn optimizers_refuse_state_of_another_shape_and_change_nothing() {
    let params = |n: usize| -> Named {
        vec![
            ("a".to_string(), Array1::from_elem(2, 1.0).into_dyn()),
            ("b".to_string(), Array1::from_elem(n, 1.0).into_dyn()),
        ]
    };
    let grads = |n: usize| -> Named {
        vec![
            ("a".to_string(), Array1::from_elem(2, 0.5).into_dyn()),
            ("b".to_string(), Array1::from_elem(n, 0.5).into_dyn()),
        ]
    };
    let mut sgd = Sgd::<f64>::new(SgdConfig::new(0.1).momentum(0.9)).unwrap();
    let mut adam = Adam::<f64>::new(AdamConfig::default().amsgrad(true)).unwrap();
    let mut adamw = AdamW::<f64>::new(AdamWConfig::default()).unwrap();
    let mut p3 = params(3);
    sgd.step(&mut p3, &grads(3)).unwrap();
    adam.step(&mut p3, &grads(3)).unwrap();
    adamw.step(&mut p3, &grads(3)).unwrap();
    // The same names, but "b" is now of another shape: the state is another model's.
    let mut p4 = params(4);
    let before = p4.clone();
    let states = (
        sgd.momentum_buffer("a").cloned(),
        adam.state("a").map(|s| (s.step, s.exp_avg.clone())),
        adamw.state("a").map(|s| (s.step, s.exp_avg.clone())),
    );
    for result in [
        sgd.step(&mut p4, &grads(4)),
        adam.step(&mut p4, &grads(4)),
        adamw.step(&mut p4, &grads(4)),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::OptimizerStateShape { ref name, .. } if name == "b"),
            "{err}"
        );
    }
    assert_eq!(p4, before, "a failed step changed a parameter");
    assert_eq!(sgd.momentum_buffer("a").cloned(), states.0);
    assert_eq!(
        adam.state("a").map(|s| (s.step, s.exp_avg.clone())),
        states.1
    );
    assert_eq!(
        adamw.state("a").map(|s| (s.step, s.exp_avg.clone())),
        states.2
    );
    // After a reset the new model trains.
    sgd.reset();
    sgd.step(&mut p4, &grads(4)).unwrap();
    assert!(p4[1].1.iter().all(|&v| v < 1.0));
}

#[test]
fn padding_to_a_length_past_memory_is_an_error() {
    use recurrent::packed::{pack_padded_sequence, pad_packed_sequence};
    let x = Array3::<f32>::ones((3, 2, 4));
    let packed = pack_padded_sequence(x.view(), &[3, 1], false, false).unwrap();
    let err = pad_packed_sequence(&packed, false, 0.0, Some(1 << 50)).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let (padded, lengths) = pad_packed_sequence(&packed, false, 0.0, Some(5)).unwrap();
    // Packing a broadcast batch whose rows cannot all be copied.
    let row = Array1::<f32>::ones(4);
    let wide = row.broadcast((1usize << 40, 1, 4)).unwrap();
    let err = pack_padded_sequence(wide, &[1 << 40], false, true).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    assert_eq!((padded.dim(), lengths), ((5, 2, 4), vec![3, 1]));
}

#[test]
fn a_cell_too_large_for_memory_is_an_error_not_an_abort() {
    use recurrent::{GruCell, LstmCell, RnnCell};
    let err = RnnCell::<f32>::zeros(4, 200_000, true, Nonlinearity::Tanh).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let err = LstmCell::<f64>::seeded(4, 100_000, true, 0).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let err = GruCell::<f32>::zeros(1 << 40, 1 << 30, false).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    // A cell that fits is built as before.
    assert_eq!(
        GruCell::<f32>::zeros(4, 3, false).unwrap().to_string(),
        "GRUCell(4, 3, bias=False)"
    );
}

#[test]
fn broadcast_or_strided_inputs_past_memory_are_errors_before_any_copy() {
    use recurrent::LstmCell;
    // A (2^40, 1, 3) input that is one row broadcast: copying it to row-major (or
    // computing its output) cannot be done.
    let row = Array1::<f32>::ones(3);
    let x = row.broadcast((1usize << 40, 1, 3)).unwrap().into_dyn();
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(3, 4), 0).unwrap();
    let err = rnn.forward(x.view(), None).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let go = Array1::<f32>::ones(4);
    let go = go.broadcast((1usize << 40, 1, 4)).unwrap().into_dyn();
    let err = rnn.backward(x.view(), None, go.view(), None).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(3, 4), 0).unwrap();
    let lengths = vec![1usize; 1];
    let err = lstm.forward_padded(x.view(), &lengths, None).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    // A stream started on a broadcast state, or stepped with a broadcast batch.
    let h = Array1::<f32>::zeros(4);
    let h0 = h.broadcast((1, 1usize << 40, 4)).unwrap().into_dyn();
    let err = rnn.stream(Some(h0.view())).err().unwrap();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let mut stream = rnn.stream(None).unwrap();
    let rows = row.broadcast((1usize << 40, 3)).unwrap();
    let err = stream.step(rows).err().unwrap();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    // A cell of input width 0 given 2^40 rows of nothing: its output would be 2^40 rows.
    let cell = LstmCell::<f32>::zeros(0, 4, true).unwrap();
    let empty = ndarray::Array2::<f32>::zeros((1, 0));
    let rows = empty.broadcast((1usize << 40, 0)).unwrap().into_dyn();
    let err = cell.forward(rows.view(), None).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
}

#[test]
fn dropout_masks_past_memory_are_an_error() {
    use rand::SeedableRng;
    use recurrent::dropout::DropoutMasks;
    let config = RnnConfig::new(3, 4).num_layers(2).dropout(0.5);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let err = DropoutMasks::<f32>::sample(&config, 1 << 20, 1 << 20, &mut rng).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let err = DropoutMasks::<f32>::sample(&config, usize::MAX / 2, 4, &mut rng).unwrap_err();
    assert!(
        matches!(err, Error::OutOfMemory { bytes: None, .. }),
        "{err}"
    );
    let masks = DropoutMasks::<f32>::sample(&config, 5, 2, &mut rng).unwrap();
    assert_eq!(masks.masks()[0].dim(), (5, 2, 4));
}
