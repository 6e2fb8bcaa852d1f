//! `recurrent::packed` against PyTorch: every `tests/fixtures/packed/*.json` case
//! (`pack_padded_sequence` / `pad_packed_sequence` results written by
//! scripts/fixtures_family.py), every pack/pad error case in `errors_family.json`, and
//! round-trip properties on random shapes and lengths.
//!
//! How torch's pack/pad errors map onto this crate:
//!
//! | torch                                                        | here                         |
//! |--------------------------------------------------------------|------------------------------|
//! | `Cannot pack empty tensors.`                                 | `EmptyPack`                  |
//! | ``Expected `len(lengths)` to be equal to batch_size``         | `LengthsCount`               |
//! | `Length of all samples has to be greater than 0`             | `ZeroLength`                 |
//! | a negative length                                            | impossible: lengths are `&[usize]` |
//! | `` `lengths` array must be sorted in decreasing order``       | `LengthsNotSorted`           |
//! | a length > L: accepted, fails later in pad or a layer        | `LengthExceedsInput`, at pack time |
//! | `Expected total_length to be at least ...` (pad)             | `TotalLength`                |

use crate::common;

use std::collections::HashMap;

use common::fixtures;
use ndarray::{s, Array2, Array3, ArrayView2, Axis};
use proptest::prelude::*;
use recurrent::packed::{
    pack_padded_sequence, pack_sequence, pad_packed_sequence, pad_sequence, unpack_sequence,
    unpad_sequence,
};
use recurrent::{Error, Float, PackedSequence};
use serde::Deserialize;

// ---------------------------------------------------------------------------------------
// fixtures/packed/*.json
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct PackedRecord {
    data_shape: Vec<usize>,
    data: Vec<f64>,
    batch_sizes: Vec<usize>,
    batch_sizes_dtype: String,
    sorted_indices: Option<Vec<usize>>,
    unsorted_indices: Option<Vec<usize>>,
}

#[derive(Debug, Deserialize)]
struct PadRecord {
    total_length: Option<usize>,
    padding_value: f64,
    output_shape: Vec<usize>,
    output: Vec<f64>,
    lengths: Vec<usize>,
    lengths_dtype: String,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    name: String,
    batch_first: bool,
    enforce_sorted: bool,
    input_shape: Vec<usize>,
    input: Vec<f64>,
    lengths: Vec<usize>,
    packed: PackedRecord,
    sorted_indices_is_stable_sort: Option<bool>,
    pad: Vec<PadRecord>,
}

fn load_fixtures() -> Vec<Fixture> {
    let dir = fixtures().join("packed");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

fn array3<T: Float>(shape: &[usize], values: &[f64]) -> Array3<T> {
    let dim = (shape[0], shape[1], shape[2]);
    Array3::from_shape_vec(dim, values.iter().map(|&v| T::of(v)).collect()).unwrap()
}

fn array2<T: Float>(shape: &[usize], values: &[f64]) -> Array2<T> {
    Array2::from_shape_vec(
        (shape[0], shape[1]),
        values.iter().map(|&v| T::of(v)).collect(),
    )
    .unwrap()
}

/// The stable descending sort of `lengths` (what this crate's `sorted_indices` are).
fn stable_descending(lengths: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
}

/// Checks one fixture in element type `T`; returns whether the index comparison ran.
fn check_fixture<T: Float>(fx: &Fixture) -> bool {
    let name = &fx.name;
    let x = array3::<T>(&fx.input_shape, &fx.input);
    let p = pack_padded_sequence(x.view(), &fx.lengths, fx.batch_first, fx.enforce_sorted)
        .unwrap_or_else(|e| panic!("{name}: {e}"));

    // torch's own PackedSequence, rebuilt from the JSON (this also checks `new` accepts it).
    assert_eq!(fx.packed.batch_sizes_dtype, "int64", "{name}");
    let torch_p = PackedSequence::new(
        array2::<T>(&fx.packed.data_shape, &fx.packed.data),
        fx.packed.batch_sizes.clone(),
        fx.packed.sorted_indices.clone(),
        fx.packed.unsorted_indices.clone(),
    )
    .unwrap_or_else(|e| panic!("{name}: torch's parts rejected: {e}"));
    assert_eq!(
        torch_p.unsorted_indices(),
        fx.packed.unsorted_indices.as_deref(),
        "{name}"
    );

    assert_eq!(
        p.batch_sizes(),
        &fx.packed.batch_sizes[..],
        "{name}: batch_sizes"
    );
    assert_eq!(
        p.data().shape(),
        &fx.packed.data_shape[..],
        "{name}: data shape"
    );
    assert_eq!(p.lengths(), fx.lengths, "{name}: lengths()");
    assert_eq!(p.max_seq_len(), fx.packed.batch_sizes.len(), "{name}");
    assert_eq!(p.batch_size(), fx.lengths.len(), "{name}");
    assert_eq!(
        fx.packed.sorted_indices.is_none(),
        fx.enforce_sorted,
        "{name}: torch gives indices exactly when it sorted"
    );
    assert_eq!(
        fx.sorted_indices_is_stable_sort.is_none(),
        fx.packed.sorted_indices.is_none(),
        "{name}"
    );

    let compared_indices = fx.sorted_indices_is_stable_sort != Some(false);
    if compared_indices {
        assert_eq!(p, torch_p, "{name}: packed sequence");
        assert_eq!(
            p.sorted_indices(),
            fx.packed.sorted_indices.as_deref(),
            "{name}"
        );
        assert_eq!(
            p.unsorted_indices(),
            fx.packed.unsorted_indices.as_deref(),
            "{name}"
        );
    } else {
        // torch's unstable sort ordered ties differently: our indices are the stable sort,
        // and the rows inside a time step follow them. The sequences are the same.
        assert_eq!(
            p.sorted_indices(),
            Some(&stable_descending(&fx.lengths)[..]),
            "{name}: stable sort"
        );
        let torch_sorted = fx.packed.sorted_indices.as_deref().unwrap();
        assert_ne!(
            p.sorted_indices(),
            Some(torch_sorted),
            "{name}: fixture says unstable"
        );
        let sorted_lengths: Vec<usize> = torch_sorted.iter().map(|&i| fx.lengths[i]).collect();
        assert_eq!(
            p.sorted_lengths(),
            sorted_lengths,
            "{name}: same sorted lengths"
        );
        assert_eq!(
            unpack_sequence(&p),
            unpack_sequence(&torch_p),
            "{name}: sequences"
        );
    }

    for pad in &fx.pad {
        let what = format!(
            "{name}: pad(total_length={:?}, padding_value={})",
            pad.total_length, pad.padding_value
        );
        assert_eq!(pad.lengths_dtype, "int64", "{what}");
        let expected = array3::<T>(&pad.output_shape, &pad.output);
        for (packed, whose) in [(&p, "ours"), (&torch_p, "torch's")] {
            let (out, lengths) = pad_packed_sequence(
                packed,
                fx.batch_first,
                T::of(pad.padding_value),
                pad.total_length,
            )
            .unwrap_or_else(|e| panic!("{what} ({whose}): {e}"));
            assert_eq!(out, expected, "{what} ({whose}): output");
            assert_eq!(lengths, pad.lengths, "{what} ({whose}): lengths");
        }
    }
    compared_indices
}

fn check_all_fixtures<T: Float>() {
    let all = load_fixtures();
    assert!(
        all.len() >= 15,
        "expected the 15 packed fixtures, found {}",
        all.len()
    );
    let mut skipped = Vec::new();
    for fx in &all {
        if !check_fixture::<T>(fx) {
            skipped.push(fx.name.as_str());
        }
    }
    // Exactly the case generated to show torch's unstable sort (N = 20 with ties).
    assert_eq!(
        skipped,
        ["many_ties_n20"],
        "cases whose indices were not compared"
    );
}

#[test]
fn packed_fixtures_f32() {
    check_all_fixtures::<f32>();
}

#[test]
fn packed_fixtures_f64() {
    check_all_fixtures::<f64>();
}

// ---------------------------------------------------------------------------------------
// errors_family.json (kind "pack")
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct PackConfig {
    batch_first: bool,
    enforce_sorted: bool,
    total_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct PackErrorCase {
    name: String,
    config: PackConfig,
    input_shape: Vec<usize>,
    lengths: Vec<i64>,
    stage: String,
    torch_error: Option<String>,
    accepted: Option<serde_json::Value>,
}

fn pack_error_cases() -> Vec<PackErrorCase> {
    let text = std::fs::read_to_string(fixtures().join("errors_family.json")).unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .filter(|c| c["kind"] == "pack")
        .map(|c| serde_json::from_value(c).unwrap())
        .collect()
}

/// Every run of ASCII digits in `s`, as numbers, in order.
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect()
}

/// Asserts that every number in `torch` occurs in `ours` at least as often.
fn assert_numbers_included(name: &str, torch: &str, ours: &str) {
    let mut have: HashMap<u64, usize> = HashMap::new();
    for n in numbers(ours) {
        *have.entry(n).or_default() += 1;
    }
    for n in numbers(torch) {
        let slot = have.entry(n).or_default();
        assert!(
            *slot > 0,
            "{name}: torch's message has the number {n} that ours lacks\n  torch: {torch}\n  ours:  {ours}"
        );
        *slot -= 1;
    }
}

#[test]
fn pack_errors_match_torch() {
    let cases = pack_error_cases();
    assert_eq!(cases.len(), 9, "pack/pad cases in errors_family.json");
    let mut checked = 0;
    for case in &cases {
        let name = case.name.as_str();
        let cfg = &case.config;
        // Negative lengths cannot be expressed: the API takes &[usize].
        let Ok(lengths) = case
            .lengths
            .iter()
            .map(|&l| usize::try_from(l))
            .collect::<Result<Vec<usize>, _>>()
        else {
            assert_eq!(name, "pack_length_negative");
            assert!(case
                .torch_error
                .as_deref()
                .unwrap()
                .contains("greater than 0"));
            checked += 1;
            continue;
        };
        let x = Array3::<f32>::zeros((
            case.input_shape[0],
            case.input_shape[1],
            case.input_shape[2],
        ));
        let packed = pack_padded_sequence(x.view(), &lengths, cfg.batch_first, cfg.enforce_sorted);

        match (case.stage.as_str(), case.torch_error.as_deref()) {
            ("pack", Some(torch)) => {
                let err = packed.expect_err(name);
                let ours = err.to_string();
                let expected_variant = if torch.starts_with("Length of all samples") {
                    matches!(err, Error::ZeroLength { .. })
                } else if torch.contains("must be sorted in decreasing order") {
                    matches!(err, Error::LengthsNotSorted { .. })
                } else if torch.starts_with("Expected `len(lengths)`") {
                    matches!(err, Error::LengthsCount { .. })
                } else {
                    panic!("{name}: unknown torch message: {torch}");
                };
                assert!(expected_variant, "{name}: torch: {torch}\n  ours: {err:?}");
                assert_numbers_included(name, torch, &ours);
            }
            ("pack", None) => {
                // torch accepted a length > L and failed later; we refuse at pack time.
                assert!(
                    name.starts_with("pack_length_gt_L"),
                    "{name}: torch accepted"
                );
                let accepted = case.accepted.as_ref().unwrap();
                assert!(
                    accepted["pad_error"].is_string(),
                    "{name}: torch's pad failed later"
                );
                let seq_len = case.input_shape[usize::from(cfg.batch_first)];
                let index = lengths.iter().position(|&l| l > seq_len).unwrap();
                match packed.expect_err(name) {
                    Error::LengthExceedsInput {
                        index: i,
                        length,
                        seq_len: l,
                    } => {
                        assert_eq!((i, length, l), (index, lengths[index], seq_len), "{name}");
                        let ours = Error::LengthExceedsInput {
                            index: i,
                            length,
                            seq_len: l,
                        }
                        .to_string();
                        assert!(
                            ours.contains(&length.to_string()) && ours.contains(&l.to_string())
                        );
                    }
                    other => panic!("{name}: expected LengthExceedsInput, got {other:?}"),
                }
            }
            ("pad", Some(torch)) => {
                let packed = packed.unwrap_or_else(|e| panic!("{name}: pack: {e}"));
                let err = pad_packed_sequence(&packed, cfg.batch_first, 0.0, cfg.total_length)
                    .expect_err(name);
                assert!(
                    torch.starts_with("Expected total_length")
                        && matches!(err, Error::TotalLength { .. }),
                    "{name}: torch: {torch}\n  ours: {err:?}"
                );
                assert_numbers_included(name, torch, &err.to_string());
            }
            (stage, torch) => panic!("{name}: unexpected stage {stage} / {torch:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
}

#[test]
fn pack_error_fields() {
    let x = Array3::<f64>::zeros((4, 3, 2));
    let err = |lengths: &[usize], sorted: bool| {
        pack_padded_sequence(x.view(), lengths, false, sorted).unwrap_err()
    };
    assert!(matches!(
        err(&[2, 0, 1], false),
        Error::ZeroLength { index: 1 }
    ));
    assert!(matches!(
        err(&[3, 2, 0], true),
        Error::ZeroLength { index: 2 }
    ));
    // As in ATen: with enforce_sorted, only the last length is checked for 0 before the
    // order, so a 0 that is not last reports the order.
    assert!(matches!(
        err(&[2, 0, 1], true),
        Error::LengthsNotSorted {
            index: 1,
            length: 0,
            next: 1
        }
    ));
    assert!(matches!(
        err(&[2, 4, 1], true),
        Error::LengthsNotSorted {
            index: 0,
            length: 2,
            next: 4
        }
    ));
    assert!(matches!(
        err(&[4, 2], true),
        Error::LengthsCount {
            lengths: 2,
            batch_size: 3
        }
    ));
    assert!(matches!(
        err(&[2, 5, 1], false),
        Error::LengthExceedsInput {
            index: 1,
            length: 5,
            seq_len: 4
        }
    ));
    // The count is checked before the values.
    assert!(matches!(err(&[0, 9], false), Error::LengthsCount { .. }));
    // Empty inputs, in the caller's axis order.
    for shape in [(0, 3, 2), (4, 0, 2), (4, 3, 0)] {
        let empty = Array3::<f32>::zeros(shape);
        let e = pack_padded_sequence(empty.view(), &[1, 1, 1], true, false).unwrap_err();
        match e {
            Error::EmptyPack { shape: s } => assert_eq!(s, [shape.0, shape.1, shape.2]),
            other => panic!("{shape:?}: {other:?}"),
        }
    }
    let msg = err(&[2, 4, 1], true).to_string();
    assert!(msg.contains("lengths[0] = 2 < lengths[1] = 4"), "{msg}");
    assert!(msg.contains("enforce_sorted = false"), "{msg}");
}

#[test]
fn packed_sequence_new_checks_its_parts() {
    let rows = |n: usize| Array2::<f32>::zeros((n, 2));
    let invalid = |r: recurrent::Result<PackedSequence<f32>>| match r {
        Err(Error::InvalidPackedSequence(msg)) => msg,
        other => panic!("expected InvalidPackedSequence, got {other:?}"),
    };
    assert!(invalid(PackedSequence::new(rows(0), vec![], None, None)).contains("at least one"));
    assert!(
        invalid(PackedSequence::new(rows(3), vec![2, 0, 1], None, None))
            .contains("batch_sizes[1] = 0")
    );
    assert!(
        invalid(PackedSequence::new(rows(3), vec![1, 2], None, None)).contains("non-increasing")
    );
    assert!(
        invalid(PackedSequence::new(rows(4), vec![2, 1], None, None)).contains("= 3 rows, got 4")
    );
    assert!(invalid(PackedSequence::new(
        rows(3),
        vec![2, 1],
        Some(vec![0, 0]),
        None
    ))
    .contains("permutation"));
    assert!(invalid(PackedSequence::new(
        rows(3),
        vec![2, 1],
        Some(vec![0, 2]),
        None
    ))
    .contains("permutation"));
    assert!(invalid(PackedSequence::new(
        rows(3),
        vec![2, 1],
        Some(vec![0]),
        None
    ))
    .contains("permutation"));
    assert!(invalid(PackedSequence::new(
        rows(3),
        vec![2, 1],
        None,
        Some(vec![1, 0])
    ))
    .contains("sorted_indices"));
    assert!(invalid(PackedSequence::new(
        rows(3),
        vec![3],
        Some(vec![1, 2, 0]),
        Some(vec![1, 2, 0])
    ))
    .contains("inverse"));
    let p =
        PackedSequence::new(rows(3), vec![3], Some(vec![1, 2, 0]), Some(vec![2, 0, 1])).unwrap();
    assert_eq!(p.lengths(), [1, 1, 1]);
    assert!(matches!(
        p.with_data(rows(2)),
        Err(Error::InvalidPackedSequence(_))
    ));
}

#[test]
fn sequence_list_errors() {
    let a = Array2::<f32>::zeros((3, 2));
    let b = Array2::<f32>::zeros((2, 3));
    let empty = Array2::<f32>::zeros((0, 2));
    assert!(matches!(
        pad_sequence::<f32>(&[], false, 0.0),
        Err(Error::NoSequences)
    ));
    assert!(matches!(
        pack_sequence::<f32>(&[], true),
        Err(Error::NoSequences)
    ));
    for r in [
        pad_sequence(&[a.view(), b.view()], false, 0.0).map(|_| ()),
        pack_sequence(&[a.view(), b.view()], false).map(|_| ()),
    ] {
        match r {
            Err(
                e @ Error::SequenceFeatures {
                    index: 1,
                    expected: 2,
                    got: 3,
                },
            ) => {
                assert!(e.to_string().contains("sequence 1 has 3"), "{e}")
            }
            other => panic!("expected SequenceFeatures, got {other:?}"),
        }
    }
    // pad_sequence keeps empty sequences; packing them is torch's zero-length error.
    let padded = pad_sequence(&[a.view(), empty.view()], true, 7.0).unwrap();
    assert_eq!(padded.dim(), (2, 3, 2));
    assert!(padded.index_axis(Axis(0), 1).iter().all(|&v| v == 7.0));
    assert!(matches!(
        pack_sequence(&[a.view(), empty.view()], true),
        Err(Error::ZeroLength { index: 1 })
    ));
    assert!(matches!(
        pack_sequence(&[empty.view(), empty.view()], false),
        Err(Error::EmptyPack { .. })
    ));
    let x = Array3::<f32>::zeros((3, 2, 1));
    assert!(matches!(
        unpad_sequence(x.view(), &[1], false),
        Err(Error::LengthsCount {
            lengths: 1,
            batch_size: 2
        })
    ));
    assert!(matches!(
        unpad_sequence(x.view(), &[1, 4], false),
        Err(Error::LengthExceedsInput {
            index: 1,
            length: 4,
            seq_len: 3
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Batch {
    seq_len: usize,
    batch: usize,
    features: usize,
    lengths: Vec<usize>,
    values: Vec<i32>,
    batch_first: bool,
    enforce_sorted: bool,
    extra: usize,
}

impl Batch {
    fn input(&self) -> Array3<f64> {
        let dim = if self.batch_first {
            (self.batch, self.seq_len, self.features)
        } else {
            (self.seq_len, self.batch, self.features)
        };
        Array3::from_shape_vec(
            dim,
            self.values.iter().map(|&v| f64::from(v) / 8.0).collect(),
        )
        .unwrap()
    }

    /// `x[t, i, k]` whatever the axis order.
    fn at(&self, x: &Array3<f64>, t: usize, i: usize, k: usize) -> f64 {
        if self.batch_first {
            x[[i, t, k]]
        } else {
            x[[t, i, k]]
        }
    }
}

fn batch_strategy() -> impl Strategy<Value = Batch> {
    (
        1usize..7,
        1usize..7,
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        0usize..3,
    )
        .prop_flat_map(
            |(seq_len, batch, features, batch_first, enforce_sorted, extra)| {
                (
                    proptest::collection::vec(1..=seq_len, batch),
                    proptest::collection::vec(-100i32..100, seq_len * batch * features),
                )
                    .prop_map(move |(mut lengths, values)| {
                        if enforce_sorted {
                            lengths.sort_by(|a, b| b.cmp(a));
                        }
                        Batch {
                            seq_len,
                            batch,
                            features,
                            lengths,
                            values,
                            batch_first,
                            enforce_sorted,
                            extra,
                        }
                    })
            },
        )
}

fn round_trip(b: &Batch) {
    let x = b.input();
    let p = pack_padded_sequence(x.view(), &b.lengths, b.batch_first, b.enforce_sorted).unwrap();
    let total: usize = b.lengths.iter().sum();
    let max_len = *b.lengths.iter().max().unwrap();

    // Structure.
    assert_eq!(p.data().dim(), (total, b.features));
    assert_eq!(p.max_seq_len(), max_len);
    assert!(p.batch_sizes().windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(p.batch_sizes().iter().sum::<usize>(), total);
    assert_eq!(p.lengths(), b.lengths);
    assert!(p.sorted_lengths().windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(p.sorted_indices().is_none(), b.enforce_sorted);
    for t in 0..max_len {
        let step = p.step(t).unwrap();
        assert_eq!(step.nrows(), p.batch_sizes()[t]);
        for (j, row) in step.rows().into_iter().enumerate() {
            let i = p.sorted_indices().map_or(j, |s| s[j]);
            for (k, &v) in row.iter().enumerate() {
                assert_eq!(v, b.at(&x, t, i, k), "step {t}, packed position {j}");
            }
        }
    }
    assert!(p.step(max_len).is_none());

    // pad(pack(x)) == x masked past the lengths.
    let pad_value = -0.5;
    let total_length = b.seq_len + b.extra;
    let (out, lengths) =
        pad_packed_sequence(&p, b.batch_first, pad_value, Some(total_length)).unwrap();
    assert_eq!(lengths, b.lengths);
    let expected_dim = if b.batch_first {
        (b.batch, total_length, b.features)
    } else {
        (total_length, b.batch, b.features)
    };
    assert_eq!(out.dim(), expected_dim);
    for t in 0..total_length {
        for i in 0..b.batch {
            for k in 0..b.features {
                let want = if t < b.lengths[i] {
                    b.at(&x, t, i, k)
                } else {
                    pad_value
                };
                let got = if b.batch_first {
                    out[[i, t, k]]
                } else {
                    out[[t, i, k]]
                };
                assert_eq!(got, want, "t {t}, i {i}, k {k}");
            }
        }
    }
    // Without total_length, the longest length.
    let (short, _) = pad_packed_sequence(&p, b.batch_first, pad_value, None).unwrap();
    let time = Axis(usize::from(b.batch_first));
    assert_eq!(short.len_of(time), max_len);
    assert_eq!(short, out.slice_axis(time, (0..max_len).into()));
    assert!(matches!(
        pad_packed_sequence(&p, b.batch_first, pad_value, Some(max_len - 1)),
        Err(Error::TotalLength { .. })
    ));

    // The list forms agree with the padded ones.
    let seqs = unpad_sequence(x.view(), &b.lengths, b.batch_first).unwrap();
    let views: Vec<ArrayView2<f64>> = seqs.iter().map(|s| s.view()).collect();
    assert_eq!(pack_sequence(&views, b.enforce_sorted).unwrap(), p);
    assert_eq!(unpack_sequence(&p), seqs);
    assert_eq!(
        pad_sequence(&views, b.batch_first, pad_value).unwrap(),
        short
    );

    // The parts reassemble.
    let (data, batch_sizes, sorted, unsorted) = p.clone().into_parts();
    assert_eq!(
        PackedSequence::new(data, batch_sizes, sorted, unsorted).unwrap(),
        p
    );

    // f32 gives the same layout.
    let x32 = x.mapv(|v| v as f32);
    let p32 =
        pack_padded_sequence(x32.view(), &b.lengths, b.batch_first, b.enforce_sorted).unwrap();
    assert_eq!(p32.data(), &p.data().mapv(|v| v as f32));
    assert_eq!(p32.sorted_indices(), p.sorted_indices());
}

/// Arbitrary lengths (0, too long, wrong count): never a panic, and exactly torch's checks
/// in torch's order, then ours.
fn checks_in_order(seq_len: usize, batch: usize, lengths: &[usize], enforce_sorted: bool) {
    let x = Array3::<f32>::ones((seq_len, batch, 2));
    let r = pack_padded_sequence(x.view(), lengths, false, enforce_sorted);
    if lengths.len() != batch {
        assert!(matches!(r, Err(Error::LengthsCount { .. })), "{r:?}");
    } else if enforce_sorted && lengths.last() == Some(&0) {
        assert!(matches!(r, Err(Error::ZeroLength { .. })), "{r:?}");
    } else if enforce_sorted && lengths.windows(2).any(|w| w[0] < w[1]) {
        assert!(matches!(r, Err(Error::LengthsNotSorted { .. })), "{r:?}");
    } else if lengths.contains(&0) {
        assert!(matches!(r, Err(Error::ZeroLength { .. })), "{r:?}");
    } else if lengths.iter().any(|&l| l > seq_len) {
        assert!(matches!(r, Err(Error::LengthExceedsInput { .. })), "{r:?}");
    } else {
        let p = r.unwrap();
        assert_eq!(p.lengths(), lengths);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pad_of_pack_is_the_masked_input(b in batch_strategy()) {
        round_trip(&b);
    }

    #[test]
    fn arbitrary_lengths_give_typed_errors(
        seq_len in 1usize..5,
        batch in 1usize..5,
        lengths in proptest::collection::vec(0usize..6, 0..6),
        enforce_sorted in any::<bool>(),
    ) {
        checks_in_order(seq_len, batch, &lengths, enforce_sorted);
    }
}

#[test]
fn many_ties_sort_is_stable() {
    // 20 lengths with ties: torch's CPU sort is not stable past 16; ours is.
    let lengths = [2, 3, 1, 3, 3, 2, 1, 3, 2, 2, 3, 1, 1, 3, 2, 3, 3, 1, 2, 3];
    let x = Array3::from_shape_fn((3, 20, 1), |(t, i, _)| (100 * t + i) as f32);
    let p = pack_padded_sequence(x.view(), &lengths, false, false).unwrap();
    let sorted = p.sorted_indices().unwrap();
    assert_eq!(sorted, stable_descending(&lengths));
    // Equal lengths keep their input order.
    for w in sorted.windows(2) {
        if lengths[w[0]] == lengths[w[1]] {
            assert!(w[0] < w[1]);
        }
    }
    assert_eq!(p.data().slice(s![..3, 0]).to_vec(), [1.0, 3.0, 4.0]);
}
