//! Loading torch state dicts (safetensors) and saving them back: prefixes, inferred
//! configuration, metadata, dtypes, and every way a file can be wrong.
//!
//! The fixtures in tests/fixtures/cli were saved by PyTorch (scripts/make_fixtures.py):
//! - encoder.safetensors: `Seq2Vec().state_dict()` via `safetensors.torch.save_file`, no
//!   metadata; the RNN (6 -> 8, 2 layers, bidirectional, tanh, float32) sits under
//!   `encoder.rnn.` beside `encoder.embedding.*` and `decoder.*`.
//! - relu_bf.safetensors: a bare `nn.RNN(5, 4, nonlinearity='relu', batch_first=True)`
//!   in float64, with metadata `nonlinearity=relu`, `batch_first=true`.
//! - ambiguous.safetensors: two RNNs, under `a.rnn.` (3 -> 4) and `b.rnn.` (5 -> 6, 2
//!   layers).

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{assert_close, assert_same_parameters, cli_fixture, npy};
use ndarray::ArrayD;
use recurrent::io::safetensors::{save, StateDict};
use recurrent::{Error, Float, Nonlinearity, Rnn, RnnConfig};
use safetensors::tensor::{Dtype as StDtype, TensorView};

fn encoder_config() -> RnnConfig {
    RnnConfig::new(6, 8).num_layers(2).bidirectional(true)
}

// ---------------------------------------------------------------------------------
// PyTorch checkpoints
// ---------------------------------------------------------------------------------

#[test]
fn encoder_prefix_is_found_and_forward_matches_torch() {
    let path = cli_fixture("encoder.safetensors");
    let auto = Rnn::<f32>::load(&path, None).unwrap();
    assert_eq!(auto.config(), &encoder_config());
    for prefix in ["encoder.rnn.", "encoder.rnn"] {
        let explicit = Rnn::<f32>::load(&path, Some(prefix)).unwrap();
        assert_same_parameters(&explicit, &auto, prefix);
    }
    // Parameters are the file's tensors, unchanged.
    let dict = StateDict::read(&path).unwrap();
    for (name, value) in auto.named_parameters() {
        let stored: ArrayD<f32> = dict.tensor(&format!("encoder.rnn.{name}")).unwrap();
        assert_eq!(value, stored.view(), "{name}");
    }
    // The unrelated tensors are there, and ignored.
    for other in ["encoder.embedding.weight", "decoder.weight", "decoder.bias"] {
        assert!(dict.shape(other).is_some(), "fixture lacks {other}");
    }
    assert_eq!(dict.rnn_prefixes(), ["encoder.rnn."]);
    assert_eq!(
        auto.num_parameters(),
        2 * (8 * 6 + 64 + 16) + 2 * (8 * 16 + 64 + 16)
    );

    let x = npy::<f32>("encoder_input.npy");
    let h0 = npy::<f32>("encoder_h0.npy");
    let (out, hn) = auto.forward(x.view(), Some(h0.view())).unwrap();
    assert_close(&out, &npy("encoder_output.npy"), "encoder output (h0)");
    assert_close(&hn, &npy("encoder_hn.npy"), "encoder h_n (h0)");
    let (out, hn) = auto.forward(x.view(), None).unwrap();
    assert_close(
        &out,
        &npy("encoder_output_noh0.npy"),
        "encoder output (no h0)",
    );
    assert_close(&hn, &npy("encoder_hn_noh0.npy"), "encoder h_n (no h0)");
    let xu = npy::<f32>("unbatched_input.npy");
    let (out, hn) = auto.forward(xu.view(), None).unwrap();
    assert_eq!((out.shape(), hn.shape()), (&[5, 16][..], &[4, 8][..]));
    assert_close(&out, &npy("unbatched_output.npy"), "unbatched output");
    assert_close(&hn, &npy("unbatched_hn.npy"), "unbatched h_n");
}

#[test]
fn float32_checkpoint_loads_as_float64_exactly() {
    let path = cli_fixture("encoder.safetensors");
    let r32 = Rnn::<f32>::load(&path, None).unwrap();
    let r64 = Rnn::<f64>::load(&path, None).unwrap();
    assert_eq!(r64.config(), r32.config());
    for ((n32, t32), (n64, t64)) in r32.named_parameters().zip(r64.named_parameters()) {
        assert_eq!(n32, n64);
        assert_eq!(t32.mapv(f64::from), t64, "{n32}: widening is exact");
    }
    // The float64 run of torch's float32 weights agrees with torch's float32 result to
    // float32 precision.
    let x = npy::<f32>("encoder_input.npy").mapv(f64::from);
    let h0 = npy::<f32>("encoder_h0.npy").mapv(f64::from);
    let (out, hn) = r64.forward(x.view(), Some(h0.view())).unwrap();
    let want_out = npy::<f32>("encoder_output.npy").mapv(f64::from);
    let want_hn = npy::<f32>("encoder_hn.npy").mapv(f64::from);
    let (rtol, atol) = common::default_tolerances(recurrent::Dtype::F32);
    common::assert_close_tol(&out, &want_out, rtol, atol, "f64 output");
    common::assert_close_tol(&hn, &want_hn, rtol, atol, "f64 h_n");
}

#[test]
fn relu_batch_first_float64_reads_its_metadata() {
    let path = cli_fixture("relu_bf.safetensors");
    let dict = StateDict::read(&path).unwrap();
    assert_eq!(
        dict.metadata().get("nonlinearity").map(String::as_str),
        Some("relu")
    );
    assert_eq!(dict.dtype("").unwrap(), recurrent::Dtype::F64);
    let rnn = Rnn::<f64>::load(&path, None).unwrap();
    let want = RnnConfig::new(5, 4)
        .nonlinearity(Nonlinearity::Relu)
        .batch_first(true);
    assert_eq!(rnn.config(), &want);
    let x = npy::<f64>("relu_bf_input.npy");
    assert_eq!(x.shape(), [2, 6, 5]);
    let (out, hn) = rnn.forward(x.view(), None).unwrap();
    assert_close(&out, &npy("relu_bf_output.npy"), "relu_bf output");
    assert_close(&hn, &npy("relu_bf_hn.npy"), "relu_bf h_n");
    // relu really is in use: some outputs are exactly zero, none negative.
    assert!(out.iter().any(|&v| v == 0.0) && out.iter().all(|&v| v >= 0.0));
    // Without the metadata the same tensors would be tanh, sequence-first: different.
    let mut plain = rnn.clone();
    plain.set_nonlinearity(Nonlinearity::Tanh);
    let (out_tanh, _) = plain.forward(x.view(), None).unwrap();
    assert!(out_tanh
        .iter()
        .zip(out.iter())
        .any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn ambiguous_prefix_lists_candidates_and_each_loads() {
    let path = cli_fixture("ambiguous.safetensors");
    let err = Rnn::<f32>::load(&path, None).unwrap_err();
    let Error::AmbiguousPrefix { candidates } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(candidates, &["a.rnn.", "b.rnn."]);
    let msg = err.to_string();
    assert!(
        msg.contains("'a.rnn.'") && msg.contains("'b.rnn.'"),
        "{msg}"
    );

    let dict = StateDict::read(&path).unwrap();
    for (prefix, config) in [
        ("a.rnn.", RnnConfig::new(3, 4)),
        ("a.rnn", RnnConfig::new(3, 4)),
        ("b.rnn.", RnnConfig::new(5, 6).num_layers(2)),
        ("b.rnn", RnnConfig::new(5, 6).num_layers(2)),
    ] {
        let rnn = Rnn::<f32>::load(&path, Some(prefix)).unwrap();
        assert_eq!(rnn.config(), &config, "{prefix}");
        let full = if prefix.ends_with('.') {
            prefix.to_string()
        } else {
            format!("{prefix}.")
        };
        for (name, value) in rnn.named_parameters() {
            let stored: ArrayD<f32> = dict.tensor(&format!("{full}{name}")).unwrap();
            assert_eq!(value, stored.view(), "{prefix}{name}");
        }
    }
}

#[test]
fn wrong_prefix_is_no_rnn_found() {
    for (file, prefix) in [
        ("encoder.safetensors", "decoder."),
        ("encoder.safetensors", "encoder."),
        ("encoder.safetensors", "rnn."),
        ("ambiguous.safetensors", "c.rnn."),
        ("relu_bf.safetensors", "rnn."),
    ] {
        let err = Rnn::<f32>::load(cli_fixture(file), Some(prefix)).unwrap_err();
        let Error::NoRnnFound {
            prefix: p, names, ..
        } = &err
        else {
            panic!("{file} {prefix}: {err:?}")
        };
        assert_eq!(p.as_deref(), Some(prefix), "{file}");
        assert!(
            !names.is_empty(),
            "{file} {prefix}: the message should show what is there"
        );
        assert!(err.to_string().contains(prefix), "{err}");
    }
    // A file with no RNN at all (only unrelated tensors).
    let dir = tempfile::tempdir().unwrap();
    let path = write_st(
        dir.path(),
        "linear.safetensors",
        &[t32("decoder.weight", &[3, 16]), t32("decoder.bias", &[3])],
        None,
    );
    let err = Rnn::<f32>::load(&path, None).unwrap_err();
    let Error::NoRnnFound {
        prefix: None,
        names,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(names, &["decoder.bias", "decoder.weight"]);
}

// ---------------------------------------------------------------------------------
// save / load round trips
// ---------------------------------------------------------------------------------

fn round_trip<T: Float>(config: RnnConfig, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let rnn = Rnn::<T>::seeded(config.clone(), seed).unwrap();
    let extra: HashMap<String, String> = [("author".to_string(), "tests".to_string())].into();
    save(&rnn, &path, &extra).unwrap();
    let back = Rnn::<T>::load(&path, None).unwrap();
    assert_same_parameters(&back, &rnn, &format!("{config} as {:?}", T::DTYPE));
    let dict = StateDict::read(&path).unwrap();
    assert_eq!(dict.dtype("").unwrap(), T::DTYPE);
    let meta = dict.metadata();
    assert_eq!(meta.get("author").map(String::as_str), Some("tests"));
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    // Only the parameters are stored, under torch's names.
    let names: Vec<String> = dict.names().iter().map(|s| s.to_string()).collect();
    let mut want = rnn.parameter_names();
    want.sort();
    assert_eq!(names, want);
    // Nothing but the file is left in the folder.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["model.safetensors"], "temporary files left behind");
}

#[test]
fn save_then_load_round_trips_parameters_and_config() {
    let configs = [
        RnnConfig::new(3, 4),
        RnnConfig::new(5, 7)
            .num_layers(3)
            .bidirectional(true)
            .dropout(0.25),
        RnnConfig::new(2, 3)
            .nonlinearity(Nonlinearity::Relu)
            .batch_first(true)
            .bias(false),
        RnnConfig::new(4, 1)
            .num_layers(2)
            .nonlinearity(Nonlinearity::Relu)
            .dropout(0.1)
            .bidirectional(true),
        RnnConfig::new(1, 2)
            .num_layers(2)
            .dropout(1.0)
            .batch_first(true),
    ];
    for (i, config) in configs.into_iter().enumerate() {
        round_trip::<f32>(config.clone(), i as u64);
        round_trip::<f64>(config, 100 + i as u64);
    }
}

#[test]
fn saved_float32_loads_as_float64_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = RnnConfig::new(3, 5).num_layers(2).bidirectional(true);
    let r32 = Rnn::<f32>::seeded(config.clone(), 9).unwrap();
    let p32 = dir.path().join("f32.safetensors");
    save(&r32, &p32, &HashMap::new()).unwrap();
    let r64 = Rnn::<f64>::load(&p32, None).unwrap();
    for ((n, a), (_, b)) in r32.named_parameters().zip(r64.named_parameters()) {
        assert_eq!(a.mapv(f64::from), b, "{n}");
    }
    // Saved again as float64 and narrowed back: the original float32 values.
    let p64 = dir.path().join("f64.safetensors");
    save(&r64, &p64, &HashMap::new()).unwrap();
    assert_eq!(
        StateDict::read(&p64).unwrap().dtype("").unwrap(),
        recurrent::Dtype::F64
    );
    assert_same_parameters(
        &Rnn::<f32>::load(&p64, None).unwrap(),
        &r32,
        "f32 -> f64 -> f32",
    );
}

#[test]
fn save_replaces_an_existing_file_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, b"an old file that is not safetensors").unwrap();
    let a = Rnn::<f32>::seeded(RnnConfig::new(3, 4).num_layers(2), 1).unwrap();
    save(&a, &path, &HashMap::new()).unwrap();
    assert_same_parameters(&Rnn::<f32>::load(&path, None).unwrap(), &a, "first save");
    // A different (smaller) model over it: the file holds exactly the new one.
    let b = Rnn::<f32>::seeded(RnnConfig::new(2, 2).nonlinearity(Nonlinearity::Relu), 2).unwrap();
    save(&b, &path, &HashMap::new()).unwrap();
    assert_same_parameters(&Rnn::<f32>::load(&path, None).unwrap(), &b, "second save");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["model.safetensors"]);

    // Saving into a folder that does not exist is an Io error naming the path, and
    // creates nothing.
    let nowhere = dir.path().join("no/such/dir/model.safetensors");
    let err = save(&b, &nowhere, &HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path == &nowhere),
        "{err:?}"
    );
    assert!(!dir.path().join("no").exists());
}

/// The metadata written by `save` wins over what a caller passes in extra_metadata for
/// the keys the loader reads, so the file always describes the layer.
#[test]
fn save_metadata_describes_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let rnn = Rnn::<f64>::seeded(
        RnnConfig::new(2, 3)
            .nonlinearity(Nonlinearity::Relu)
            .dropout(0.3),
        4,
    )
    .unwrap();
    let lying: HashMap<String, String> = [
        ("nonlinearity".to_string(), "tanh".to_string()),
        ("batch_first".to_string(), "true".to_string()),
        ("dropout".to_string(), "0.9".to_string()),
    ]
    .into();
    save(&rnn, &path, &lying).unwrap();
    assert_eq!(
        Rnn::<f64>::load(&path, None).unwrap().config(),
        rnn.config()
    );
}

// ---------------------------------------------------------------------------------
// Malformed state dicts
// ---------------------------------------------------------------------------------

/// A tensor to write: name, safetensors dtype, shape, raw little-endian bytes.
#[derive(Clone)]
struct Raw {
    name: String,
    dtype: StDtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn t32(name: &str, shape: &[usize]) -> Raw {
    let n: usize = shape.iter().product();
    let bytes = (0..n)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect();
    Raw {
        name: name.to_string(),
        dtype: StDtype::F32,
        shape: shape.to_vec(),
        bytes,
    }
}

fn write_st(
    dir: &Path,
    file: &str,
    tensors: &[Raw],
    metadata: Option<HashMap<String, String>>,
) -> PathBuf {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, metadata).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The tensors of a valid layer, as float32, under `prefix`.
fn valid(config: &RnnConfig, prefix: &str) -> Vec<Raw> {
    let rnn = Rnn::<f32>::seeded(config.clone(), 3).unwrap();
    rnn.named_parameters()
        .map(|(name, t)| Raw {
            name: format!("{prefix}{name}"),
            dtype: StDtype::F32,
            shape: t.shape().to_vec(),
            bytes: t.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect()
}

fn without(tensors: &[Raw], name: &str) -> Vec<Raw> {
    let out: Vec<Raw> = tensors.iter().filter(|t| t.name != name).cloned().collect();
    assert_eq!(out.len() + 1, tensors.len(), "{name} not in the list");
    out
}

fn replaced(tensors: &[Raw], replacement: Raw) -> Vec<Raw> {
    let mut out = without(tensors, &replacement.name);
    out.push(replacement);
    out
}

fn load_err(dir: &Path, tensors: &[Raw], metadata: Option<HashMap<String, String>>) -> Error {
    let path = write_st(dir, "bad.safetensors", tensors, metadata);
    let e32 = Rnn::<f32>::load(&path, None).unwrap_err();
    // The element type asked for does not change the verdict.
    let e64 = Rnn::<f64>::load(&path, None).unwrap_err();
    assert_eq!(e32.to_string(), e64.to_string());
    e32
}

#[test]
fn valid_synthetic_dicts_load() {
    // Guards the builders below: unmodified, the tensors load, with or without prefix.
    let dir = tempfile::tempdir().unwrap();
    let config = RnnConfig::new(3, 4).num_layers(2).bidirectional(true);
    for prefix in ["", "model.rnn."] {
        let mut tensors = valid(&config, prefix);
        tensors.push(t32("model.head.weight", &[2, 8]));
        let path = write_st(dir.path(), "ok.safetensors", &tensors, None);
        let rnn = Rnn::<f32>::load(&path, None).unwrap();
        assert_same_parameters(
            &rnn,
            &Rnn::<f32>::seeded(config.clone(), 3).unwrap(),
            prefix,
        );
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = RnnConfig::new(3, 4).num_layers(2).bidirectional(true);
    for prefix in ["", "enc.rnn."] {
        for missing in [
            "bias_hh_l1",
            "weight_hh_l1_reverse",
            "bias_ih_l0_reverse",
            "weight_hh_l0",
        ] {
            let full = format!("{prefix}{missing}");
            let err = load_err(dir.path(), &without(&valid(&config, prefix), &full), None);
            let Error::MissingParameter {
                name,
                expected,
                found,
                ..
            } = &err
            else {
                panic!("{full}: {err:?}")
            };
            assert_eq!(name, &full);
            assert!(expected.contains(&full), "{err}");
            assert!(!found.contains(&full), "{err}");
            assert!(err.to_string().contains(&full), "{err}");
        }
    }
}

#[test]
fn wrong_shapes_are_parameter_shape_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = RnnConfig::new(3, 4).num_layers(2).bidirectional(true);
    let tensors = valid(&config, "");
    for (name, bad, want) in [
        ("weight_ih_l1", vec![4, 4], vec![4, 8]), // layer 1 reads D*H = 8 features
        ("weight_ih_l0_reverse", vec![4, 2], vec![4, 3]),
        ("weight_hh_l1_reverse", vec![4, 5], vec![4, 4]),
        ("bias_ih_l1", vec![5], vec![4]),
        ("bias_hh_l0", vec![1, 4], vec![4]),
        ("weight_ih_l0_reverse", vec![5, 3], vec![4, 3]),
    ] {
        let err = load_err(dir.path(), &replaced(&tensors, t32(name, &bad)), None);
        let Error::ParameterShape {
            name: n,
            expected,
            got,
        } = &err
        else {
            panic!("{name}: {err:?}")
        };
        assert_eq!((n.as_str(), expected, got), (name, &want, &bad), "{err}");
    }
}

#[test]
fn extra_layers_or_directions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // An extra parameter of a layer the file does not otherwise have.
    for (config, extra) in [
        (
            RnnConfig::new(3, 4).num_layers(2).bidirectional(true),
            t32("weight_ih_l5_reverse", &[4, 8]),
        ),
        (RnnConfig::new(3, 4), t32("weight_ih_l5_reverse", &[4, 8])),
        (RnnConfig::new(3, 4), t32("bias_ih_l0_reverse", &[4])),
        (RnnConfig::new(3, 4).bias(false), t32("bias_hh_l0", &[4])),
    ] {
        let mut tensors = valid(&config, "");
        tensors.push(extra.clone());
        let err = load_err(dir.path(), &tensors, None);
        let Error::UnexpectedParameter { name, expected, .. } = &err else {
            panic!("{}: {err:?}", extra.name)
        };
        assert_eq!(name, &extra.name);
        assert_eq!(expected.len(), tensors.len() - 1);
        assert!(err.to_string().contains(&extra.name), "{err}");
    }
    // A weight of layer 1 makes the file a 2-layer one (a stray weight and a missing one
    // cannot be told apart); layer 1's other tensors are then missing.
    let mut tensors = valid(&RnnConfig::new(3, 4), "");
    tensors.push(t32("weight_hh_l1", &[4, 4]));
    let err = load_err(dir.path(), &tensors, None);
    assert!(
        matches!(&err, Error::MissingParameter { name, .. } if name == "weight_ih_l1"),
        "{err:?}"
    );
    // A reverse direction for layer 0 makes the layer bidirectional; its other tensors
    // are then missing.
    let mut tensors = valid(&RnnConfig::new(3, 4), "");
    tensors.push(t32("weight_ih_l0_reverse", &[4, 3]));
    let err = load_err(dir.path(), &tensors, None);
    assert!(
        matches!(&err, Error::MissingParameter { name, .. } if name == "weight_hh_l0_reverse"),
        "{err:?}"
    );
}

#[test]
fn lstm_and_gru_checkpoints_are_recognised_and_other_gate_counts_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (h, i) = (4, 3);
    for (gates, kind) in [
        (4, recurrent::Kind::Lstm),
        (3, recurrent::Kind::Gru),
        (2, recurrent::Kind::Rnn),
    ] {
        let tensors = [
            t32("lstm.weight_ih_l0", &[gates * h, i]),
            t32("lstm.weight_hh_l0", &[gates * h, h]),
            t32("lstm.bias_ih_l0", &[gates * h]),
            t32("lstm.bias_hh_l0", &[gates * h]),
        ];
        let path = write_st(dir.path(), "m.safetensors", &tensors, None);
        let dict = StateDict::read(&path).unwrap();
        let inferred = dict.infer_config("lstm.");
        if gates == 2 {
            // Neither RNN (1), GRU (3) nor LSTM (4).
            let err = inferred.unwrap_err();
            let Error::UnsupportedModel(msg) = &err else {
                panic!("{err:?}")
            };
            assert!(msg.contains("lstm.weight_hh_l0"), "{msg}");
            continue;
        }
        let config = inferred.unwrap();
        assert_eq!(
            (config.kind, config.hidden_size, config.input_size),
            (kind, h, i)
        );
        // The RNN loader refuses another kind, naming it and the call that loads it.
        let err = Rnn::<f32>::load(&path, None).unwrap_err();
        let Error::WrongKind { found, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*found, kind.name());
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}::load", kind.type_name())),
            "{msg}"
        );
    }
}

#[test]
fn non_float_parameters_are_unsupported_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let config = RnnConfig::new(3, 4).num_layers(2);
    let tensors = valid(&config, "");
    // (float16 and bfloat16 are read: tests/suite/loading.rs.)
    for (name, dtype, width) in [
        ("weight_hh_l1", StDtype::U8, 1),
        ("weight_ih_l0", StDtype::I64, 8),
        ("bias_ih_l1", StDtype::I16, 2),
        ("bias_hh_l0", StDtype::I32, 4),
    ] {
        let shape = tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .shape
            .clone();
        let n: usize = shape.iter().product();
        let bad = Raw {
            name: name.to_string(),
            dtype,
            shape,
            bytes: vec![0; n * width],
        };
        let err = load_err(dir.path(), &replaced(&tensors, bad), None);
        let Error::UnsupportedDtype { name: n, got } = &err else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(n, name);
        assert_eq!(got, &format!("{dtype:?}"));
        assert!(err.to_string().contains(name), "{err}");
    }
    // A float64 tensor among float32 ones is fine: every tensor is converted.
    let mixed = {
        let w = tensors.iter().find(|t| t.name == "weight_hh_l1").unwrap();
        let values: Vec<f32> = w
            .bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let bytes = values
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect();
        replaced(
            &tensors,
            Raw {
                name: w.name.clone(),
                dtype: StDtype::F64,
                shape: w.shape.clone(),
                bytes,
            },
        )
    };
    let path = write_st(dir.path(), "mixed.safetensors", &mixed, None);
    assert_same_parameters(
        &Rnn::<f32>::load(&path, None).unwrap(),
        &Rnn::<f32>::seeded(config, 3).unwrap(),
        "mixed",
    );
}

#[test]
fn unreadable_files_are_format_or_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"this is not a safetensors file at all").unwrap();
    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    // A valid file cut short.
    let good = write_st(
        dir.path(),
        "good.safetensors",
        &valid(&RnnConfig::new(3, 4), ""),
        None,
    );
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    for path in [&junk, &empty, &cut] {
        let err = Rnn::<f32>::load(path, None).unwrap_err();
        assert!(
            matches!(&err, Error::Format { path: p, .. } if p == path),
            "{path:?}: {err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
    let missing = dir.path().join("missing.safetensors");
    let err = Rnn::<f32>::load(&missing, None).unwrap_err();
    let Error::Io { path, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, &missing);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn bad_metadata_values_are_metadata_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = valid(&RnnConfig::new(3, 4), "");
    for (key, value) in [
        ("nonlinearity", "sigmoid"),
        ("nonlinearity", "Tanh"),
        ("batch_first", "maybe"),
        ("dropout", "1.5"),
        ("dropout", "-0.1"),
        ("dropout", "lots"),
        ("dropout", "NaN"),
        ("dropout", "inf"),
    ] {
        let meta: HashMap<String, String> = [(key.to_string(), value.to_string())].into();
        let err = load_err(dir.path(), &tensors, Some(meta));
        let Error::Metadata {
            key: k, value: v, ..
        } = &err
        else {
            panic!("{key}={value}: {err:?}")
        };
        assert_eq!((k.as_str(), v.as_str()), (key, value));
        assert!(err.to_string().contains(value), "{err}");
    }
    // Accepted spellings.
    for (key, value, check) in [
        (
            "nonlinearity",
            "relu",
            (|c: &RnnConfig| c.nonlinearity == Nonlinearity::Relu) as fn(&RnnConfig) -> bool,
        ),
        ("batch_first", "True", |c| c.batch_first),
        ("batch_first", "1", |c| c.batch_first),
        ("batch_first", "false", |c| !c.batch_first),
        ("dropout", "0.5", |c| c.dropout == 0.5),
    ] {
        let meta: HashMap<String, String> = [(key.to_string(), value.to_string())].into();
        let path = write_st(dir.path(), "meta.safetensors", &tensors, Some(meta));
        let rnn = Rnn::<f32>::load(&path, None).unwrap();
        assert!(check(rnn.config()), "{key}={value}: {}", rnn.config());
    }
}

/// A state dict that lacks `weight_ih_l1` while layer 1's other tensors are there is
/// missing `weight_ih_l1`; the error should say so, and the same file should always give
/// the same message.
#[test]
fn missing_first_tensor_of_a_layer_is_named_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let config = RnnConfig::new(3, 4).num_layers(2).bidirectional(true);
    let path = write_st(
        dir.path(),
        "gap.safetensors",
        &without(&valid(&config, ""), "weight_ih_l1"),
        None,
    );
    let messages: std::collections::BTreeSet<String> = (0..16)
        .map(|_| Rnn::<f32>::load(&path, None).unwrap_err().to_string())
        .collect();
    assert_eq!(
        messages.len(),
        1,
        "one file, several messages: {messages:#?}"
    );
    let err = Rnn::<f32>::load(&path, None).unwrap_err();
    assert!(
        matches!(&err, Error::MissingParameter { name, .. } if name == "weight_ih_l1"),
        "{err}"
    );
}

/// Whatever the error, a layer whose first tensor is 1-D is refused by naming it.
#[test]
fn a_one_dimensional_weight_is_a_shape_error() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = replaced(
        &valid(&RnnConfig::new(3, 4), ""),
        t32("weight_ih_l0", &[12]),
    );
    let err = load_err(dir.path(), &tensors, None);
    let Error::ParameterShape { name, got, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((name.as_str(), got.as_slice()), ("weight_ih_l0", &[12][..]));
}

/// Files written by `save` (and `npy::write`) get the permissions any new file gets
/// (0o666 less the umask), like `torch.save` / `safetensors` in Python, not the
/// owner-only 0o600 of a temporary file; saving over a file does not narrow them.
#[cfg(unix)]
#[test]
fn saved_files_get_ordinary_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let ordinary = mode(&plain);
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(2, 3), 0).unwrap();
    let st = dir.path().join("m.safetensors");
    save(&rnn, &st, &HashMap::new()).unwrap();
    assert_eq!(
        mode(&st),
        ordinary,
        "safetensors: {:o} vs {:o}",
        mode(&st),
        ordinary
    );
    let arr = dir.path().join("a.npy");
    recurrent::io::npy::write(&arr, &ArrayD::<f32>::zeros(vec![2, 2])).unwrap();
    assert_eq!(
        mode(&arr),
        ordinary,
        "npy: {:o} vs {:o}",
        mode(&arr),
        ordinary
    );
}
