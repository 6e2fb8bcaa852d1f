//! Target `state_dict_loader`: structured state dicts. The input bytes choose a torch
//! layer (kind, sizes, layers, directions, bias, proj_size), a prefix, a dtype and the
//! values; the entries are named by torch's grammar (`weight_ih_l{k}`, `weight_hh_l{k}`,
//! `bias_ih_l{k}`, `bias_hh_l{k}`, `weight_hr_l{k}`, `_reverse`) and then mutated: dropped,
//! reshaped (including huge dimensions beside a zero one), retyped, renamed, joined by
//! junk names, names past the last layer and huge layer indices, or by a second model
//! under another prefix. Optional metadata (`nonlinearity`, `batch_first`, `dropout`)
//! takes valid and invalid values. The dict is written with the `safetensors` crate and
//! read back as [`super::safetensors_reader::exercise`] reads a file.
//!
//! Oracles beyond "no panic": an unmutated dict with valid metadata loads, with exactly
//! the configuration it was written from and bit-identical parameters; a dict with an
//! extra tensor named like a parameter the configuration does not have is refused.

use std::collections::HashMap;
use std::path::PathBuf;

use arbitrary::Unstructured;
use recurrent::io::safetensors::StateDict;
use recurrent::{Kind, Nonlinearity, RnnConfig};
use safetensors::tensor::{Dtype, TensorView};

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let case = Case::generate(&mut u);
    let Some(bytes) = case.serialise() else {
        return;
    };
    let parsed = StateDict::from_bytes(PathBuf::from("fuzz-state-dict.safetensors"), bytes);
    let dict = match parsed {
        Ok(dict) => dict,
        // safetensors 0.8 serialises no tensors with a metadata map as the invalid
        // header `{},"__metadata__":{}}`: refusing that is right (this crate's writers
        // never write a file without tensors).
        Err(_) if case.entries.is_empty() && case.metadata.is_some() => return,
        Err(e) => panic!("the safetensors crate's own output was refused: {e}"),
    };
    let loaded = super::safetensors_reader::exercise(&dict);
    case.check(&dict, &loaded);
}

/// One tensor as written.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// The values (for float dtypes, what the bytes encode).
    values: Vec<f64>,
}

struct Case {
    prefix: String,
    config: RnnConfig,
    entries: Vec<Entry>,
    metadata: Option<HashMap<String, String>>,
    /// Nothing was mutated and the metadata is valid: this must load as `config`.
    canonical: bool,
    /// An extra entry named like a parameter `config` lacks: loading must fail.
    unexpected: Option<String>,
}

/// True with probability `per256`/256; false once the input is used up.
fn chance(u: &mut Unstructured<'_>, per256: u16) -> bool {
    u16::from(u.arbitrary::<u8>().unwrap_or(0)) >= 256 - per256
}

fn pick<T: Copy>(u: &mut Unstructured<'_>, choices: &[T]) -> T {
    u.choose(choices).copied().unwrap_or(choices[0])
}

fn int(u: &mut Unstructured<'_>, lo: usize, hi: usize) -> usize {
    u.int_in_range(lo..=hi).unwrap_or(lo)
}

const STEMS: [&str; 5] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"];
const PREFIXES: [&str; 6] = [
    "",
    "encoder.rnn.",
    "rnn.",
    "model.encoder.lstm.",
    "0.",
    "a.b",
];
const HUGE: [usize; 5] = [1 << 32, 1 << 40, 1 << 62, usize::MAX / 2, usize::MAX];
/// Layer indices that are not small: past usize, leading zeros, signs, empty.
const ODD_LAYERS: [&str; 8] = [
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "4294967296",
    "00",
    "01",
    "-1",
    "",
];

impl Case {
    fn generate(u: &mut Unstructured<'_>) -> Case {
        let kind = pick(u, &[Kind::Rnn, Kind::Lstm, Kind::Gru]);
        let input = int(u, 1, 6);
        let hidden = int(u, 1, 6);
        let mut config = RnnConfig::new(input, hidden)
            .num_layers(int(u, 1, 3))
            .bidirectional(chance(u, 96))
            .bias(!chance(u, 48));
        config.kind = kind;
        if kind == Kind::Lstm && hidden > 1 && chance(u, 96) {
            config = config.proj_size(int(u, 1, hidden - 1));
        }
        let prefix = if chance(u, 32) {
            let len = int(u, 0, 12);
            String::from_utf8_lossy(u.bytes(len).unwrap_or(&[])).into_owned()
        } else {
            pick(u, &PREFIXES).to_string()
        };
        let dtype = if chance(u, 16) {
            pick(
                u,
                &[
                    Dtype::F16,
                    Dtype::BF16,
                    Dtype::I64,
                    Dtype::I32,
                    Dtype::U8,
                    Dtype::BOOL,
                ],
            )
        } else {
            pick(u, &[Dtype::F32, Dtype::F64])
        };
        // Only a prefix ending in '.' (or none) is a module path a loader can find.
        let mut canonical = matches!(dtype, Dtype::F32 | Dtype::F64)
            && (prefix.is_empty() || prefix.ends_with('.'));

        let mut entries = canonical_entries(&config, &prefix, dtype, u);
        let (metadata, valid) = metadata(u, &mut config);
        canonical &= valid;

        let mut unexpected = None;
        let mut mutations = 0;
        while mutations < 4 && chance(u, 96) {
            mutations += 1;
            canonical = false;
            match int(u, 0, 7) {
                0 if !entries.is_empty() => {
                    let i = int(u, 0, entries.len() - 1);
                    entries.remove(i);
                }
                1 if !entries.is_empty() => {
                    let i = int(u, 0, entries.len() - 1);
                    reshape(u, &mut entries[i]);
                }
                2 if !entries.is_empty() => {
                    let i = int(u, 0, entries.len() - 1);
                    entries[i].dtype = pick(
                        u,
                        &[
                            Dtype::F16,
                            Dtype::BF16,
                            Dtype::I64,
                            Dtype::I32,
                            Dtype::U8,
                            Dtype::F32,
                            Dtype::F64,
                        ],
                    );
                }
                3 if !entries.is_empty() => {
                    let i = int(u, 0, entries.len() - 1);
                    let other = pick(u, &PREFIXES);
                    let bare = entries[i]
                        .name
                        .strip_prefix(&prefix)
                        .unwrap_or("")
                        .to_string();
                    entries[i].name = format!("{other}{bare}");
                }
                4 => {
                    // A second model under another prefix: ambiguous without a prefix.
                    let other = pick(u, &PREFIXES);
                    if other != prefix {
                        let copy = canonical_entries(&config, other, dtype, u);
                        entries.extend(copy);
                    }
                }
                5 => {
                    // A parameter the configuration does not have, by torch's grammar.
                    let (bare, shape) = extra_parameter(u, &config);
                    let name = format!("{prefix}{bare}");
                    if !entries.iter().any(|e| e.name == name) {
                        unexpected.get_or_insert(name.clone());
                        entries.push(entry(name, shape, dtype, u));
                    }
                }
                6 => {
                    // A layer index that is not a small number.
                    let stem = pick(u, &STEMS);
                    let layer = pick(u, &ODD_LAYERS);
                    let reverse = if chance(u, 96) { "_reverse" } else { "" };
                    let name = format!("{prefix}{stem}_l{layer}{reverse}");
                    let canonical_digits = !layer.is_empty()
                        && layer.bytes().all(|b| b.is_ascii_digit())
                        && !(layer.len() > 1 && layer.starts_with('0'));
                    if !entries.iter().any(|e| e.name == name) {
                        if canonical_digits {
                            // torch's name of a layer the configuration lacks.
                            unexpected.get_or_insert(name.clone());
                        }
                        entries.push(entry(name, vec![1, 1], dtype, u));
                    }
                }
                _ => {
                    // Junk names: arbitrary text, under the prefix or not.
                    let len = int(u, 0, 24);
                    let junk = String::from_utf8_lossy(u.bytes(len).unwrap_or(&[])).into_owned();
                    let name = if chance(u, 128) {
                        format!("{prefix}{junk}")
                    } else {
                        junk
                    };
                    let bare_is_param = name
                        .strip_prefix(&prefix)
                        .is_some_and(|b| b.parse::<recurrent::params::ParamName>().is_ok());
                    // "__metadata__" is the header's own key, not a tensor name.
                    if !bare_is_param
                        && name != "__metadata__"
                        && !entries.iter().any(|e| e.name == name)
                    {
                        entries.push(entry(name, vec![int(u, 0, 3)], dtype, u));
                    }
                }
            }
        }
        Case {
            prefix,
            config,
            entries,
            metadata,
            canonical,
            unexpected,
        }
    }

    /// The bytes `safetensors.torch.save_file` would write (None if the crate refuses).
    fn serialise(&self) -> Option<Vec<u8>> {
        let buffers: Vec<Vec<u8>> = self.entries.iter().map(encode).collect();
        let mut seen = std::collections::HashSet::new();
        let mut views = Vec::new();
        for (e, bytes) in self.entries.iter().zip(&buffers) {
            if !seen.insert(e.name.as_str()) {
                continue;
            }
            views.push((
                e.name.as_str(),
                TensorView::new(e.dtype, e.shape.clone(), bytes).ok()?,
            ));
        }
        safetensors::serialize(views, self.metadata.clone()).ok()
    }

    /// The oracles; see the module comment.
    fn check(&self, dict: &StateDict, loaded: &super::safetensors_reader::Loaded) {
        // (Later mutations may have dropped or renamed it.)
        if let Some(name) = self.unexpected.as_ref().filter(|n| dict.shape(n).is_some()) {
            let config = dict.infer_config(&self.prefix);
            assert!(
                config.is_err(),
                "infer_config({:?}) accepted the extra tensor '{name}' as {:?}",
                self.prefix,
                config.map(|c| c.to_string())
            );
        }
        if !self.canonical {
            return;
        }
        let found = loaded.iter().find(|(p, _)| *p == self.prefix);
        let Some((_, config)) = found else {
            let why = dict.infer_config(&self.prefix).err();
            panic!(
                "a well-formed state dict of {} under {:?} did not load: {why:?}",
                self.config, self.prefix
            );
        };
        assert_eq!(*config, self.config, "infer_config under {:?}", self.prefix);
        let float = self.entries.first().map(|e| e.dtype);
        let layers64 = dict.load_layers::<f64>(&self.prefix, config.clone());
        let layers32 = dict.load_layers::<f32>(&self.prefix, config.clone());
        for e in &self.entries {
            let bare = &e.name[self.prefix.len()..];
            let same = match float {
                Some(Dtype::F64) => layers64
                    .as_ref()
                    .ok()
                    .and_then(|l| l.parameter(bare).ok())
                    .is_some_and(|p| {
                        p.shape() == e.shape.as_slice()
                            && p.iter()
                                .zip(&e.values)
                                .all(|(a, b)| a.to_bits() == b.to_bits())
                    }),
                _ => layers32
                    .as_ref()
                    .ok()
                    .and_then(|l| l.parameter(bare).ok())
                    .is_some_and(|p| {
                        p.shape() == e.shape.as_slice()
                            && p.iter()
                                .zip(&e.values)
                                .all(|(a, b)| a.to_bits() == (*b as f32).to_bits())
                    }),
            };
            assert!(same, "parameter '{}' did not load as written", e.name);
        }
    }
}

/// The tensors torch's `state_dict()` holds for `config`, under `prefix`.
fn canonical_entries(
    config: &RnnConfig,
    prefix: &str,
    dtype: Dtype,
    u: &mut Unstructured<'_>,
) -> Vec<Entry> {
    let gates = match config.kind {
        Kind::Rnn => 1,
        Kind::Lstm => 4,
        Kind::Gru => 3,
    } * config.hidden_size;
    let h_out = if config.proj_size > 0 {
        config.proj_size
    } else {
        config.hidden_size
    };
    let directions = if config.bidirectional { 2 } else { 1 };
    let mut entries = Vec::new();
    for layer in 0..config.num_layers {
        let input = if layer == 0 {
            config.input_size
        } else {
            directions * h_out
        };
        for reverse in ["", "_reverse"].iter().take(directions) {
            let name = |stem: &str| format!("{prefix}{stem}_l{layer}{reverse}");
            entries.push(entry(name("weight_ih"), vec![gates, input], dtype, u));
            entries.push(entry(name("weight_hh"), vec![gates, h_out], dtype, u));
            if config.bias {
                entries.push(entry(name("bias_ih"), vec![gates], dtype, u));
                entries.push(entry(name("bias_hh"), vec![gates], dtype, u));
            }
            if config.proj_size > 0 {
                entries.push(entry(
                    name("weight_hr"),
                    vec![config.proj_size, config.hidden_size],
                    dtype,
                    u,
                ));
            }
        }
    }
    entries
}

/// A name and shape, by torch's grammar, of a parameter `config` does not have.
fn extra_parameter(u: &mut Unstructured<'_>, config: &RnnConfig) -> (String, Vec<usize>) {
    let h = config.hidden_size;
    match int(u, 0, 2) {
        // One layer past the last.
        0 => (
            format!("{}_l{}", pick(u, &STEMS), config.num_layers),
            vec![h, h],
        ),
        // A reverse direction on a one-directional layer, or a projection without one.
        1 if !config.bidirectional => (
            "weight_ih_l0_reverse".to_string(),
            vec![h, config.input_size],
        ),
        1 if config.proj_size == 0 => ("weight_hr_l0".to_string(), vec![1, h]),
        // Far past the last layer.
        _ => (format!("bias_hh_l{}", int(u, 3, usize::MAX)), vec![h]),
    }
}

/// Metadata with valid or invalid values; applies the valid ones to `config`. Returns the
/// map and whether every value in it is valid.
fn metadata(
    u: &mut Unstructured<'_>,
    config: &mut RnnConfig,
) -> (Option<HashMap<String, String>>, bool) {
    if !chance(u, 160) {
        return (None, true);
    }
    let mut map = HashMap::new();
    let mut valid = true;
    if chance(u, 128) {
        map.insert("format".to_string(), "pt".to_string());
    }
    // nonlinearity
    match int(u, 0, 3) {
        0 => {}
        1 if config.kind == Kind::Rnn => {
            config.nonlinearity = Nonlinearity::Relu;
            map.insert("nonlinearity".into(), "relu".into());
        }
        1 | 2 => {
            map.insert("nonlinearity".into(), "tanh".into());
        }
        _ => {
            valid = false;
            let junk = pick(u, &["", "TANH", "Relu", "sigmoid", "tanh ", "relu\0"]);
            map.insert("nonlinearity".into(), junk.into());
        }
    }
    // batch_first
    match int(u, 0, 3) {
        0 => {}
        1 | 2 => {
            let (text, value) = pick(
                u,
                &[
                    ("true", true),
                    ("false", false),
                    ("True", true),
                    ("FALSE", false),
                    ("1", true),
                    ("0", false),
                ],
            );
            config.batch_first = value;
            map.insert("batch_first".into(), text.into());
        }
        _ => {
            valid = false;
            let junk = pick(u, &["", "yes", "2", "truee", " true", "nan"]);
            map.insert("batch_first".into(), junk.into());
        }
    }
    // dropout
    match int(u, 0, 3) {
        0 => {}
        1 | 2 => {
            let (text, value) = pick(
                u,
                &[
                    ("0", 0.0),
                    ("0.0", 0.0),
                    ("0.25", 0.25),
                    ("0.5", 0.5),
                    ("1", 1.0),
                    ("1e-3", 1e-3),
                    ("-0.0", -0.0),
                ],
            );
            config.dropout = value;
            map.insert("dropout".into(), text.into());
        }
        _ => {
            valid = false;
            let junk = pick(
                u,
                &[
                    "", "-0.1", "1.5", "nan", "NaN", "inf", "0,5", "1e400", "half",
                ],
            );
            map.insert("dropout".into(), junk.into());
        }
    }
    if chance(u, 48) {
        let len = int(u, 0, 8);
        let key = String::from_utf8_lossy(u.bytes(len).unwrap_or(&[])).into_owned();
        if !["nonlinearity", "batch_first", "dropout"].contains(&key.as_str()) {
            map.insert(key, "x".into());
        }
    }
    (Some(map), valid)
}

/// An entry with values drawn from the input (zeros once it is used up).
fn entry(name: String, shape: Vec<usize>, dtype: Dtype, u: &mut Unstructured<'_>) -> Entry {
    let count: usize = shape.iter().product();
    let values = (0..count)
        .map(|_| {
            let raw = u.arbitrary::<i16>().unwrap_or(0);
            match raw {
                i16::MIN => f64::NAN,
                i16::MAX => f64::INFINITY,
                -32767 => f64::NEG_INFINITY,
                _ => f64::from(raw) / 8192.0,
            }
        })
        .collect();
    Entry {
        name,
        dtype,
        shape,
        values,
    }
}

/// Changes one dimension: off by one, doubled, zero, or huge beside a zero (no data).
/// A change that would need more than a few thousand values is not made.
fn reshape(u: &mut Unstructured<'_>, e: &mut Entry) {
    let mut shape = e.shape.clone();
    if shape.is_empty() {
        shape.push(1);
    }
    let i = int(u, 0, shape.len() - 1);
    match int(u, 0, 5) {
        0 => shape[i] = shape[i].saturating_add(1),
        1 => shape[i] = shape[i].saturating_sub(1),
        2 => shape[i] = shape[i].saturating_mul(2),
        3 => shape.push(1),
        4 => shape = vec![0, pick(u, &HUGE)],
        _ => shape[i] = 0,
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if let Some(count) = count.filter(|&c| c <= 1 << 12) {
        e.shape = shape;
        e.values.resize(count, 0.5);
    }
}

/// The little-endian bytes of an entry in its dtype.
fn encode(e: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in &e.values {
        match e.dtype {
            Dtype::F64 => out.extend_from_slice(&v.to_le_bytes()),
            Dtype::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            Dtype::I64 => out.extend_from_slice(&(v as i64).to_le_bytes()),
            Dtype::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => {
                out.extend_from_slice(&((v * 100.0) as i16).to_le_bytes())
            }
            _ => out.push(v as u8),
        }
    }
    out
}
