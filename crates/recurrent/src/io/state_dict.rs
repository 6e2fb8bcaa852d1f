//! A torch `state_dict` read into memory, whatever file it came from ([`FileFormat`]:
//! safetensors, `torch.save` zip or legacy, ONNX), indexed under torch's names.
//!
//! A file may hold a bare `nn.RNN`'s parameters (`weight_ih_l0`, ...) or a whole model's,
//! where the RNN's sit under a prefix such as `encoder.rnn.` beside unrelated tensors.
//! [`StateDict::resolve_prefix`] finds the prefix, [`StateDict::infer_config`] reads
//! `num_layers`, `bidirectional`, `bias` and the sizes off the names and shapes, and
//! [`StateDict::load_layers`] builds the layer, converting to the element type asked for.
//! Every reader goes through the same index: weight norm is folded
//! (`g * v / ||v||`) and a cell's tensors (`weight_ih`, ...) are indexed as the one-layer
//! layer they equal, whatever the format.
//!
//! `nonlinearity` and `batch_first` leave no trace in the tensors; they are read from the
//! file's metadata when present (keys `"nonlinearity"`, `"batch_first"`, `"dropout"`, as
//! [`super::safetensors::save`] writes them) and otherwise take torch's defaults.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use safetensors::tensor::Dtype as StDtype;
use safetensors::SafeTensors;

use super::raw::RawTensor;
pub use super::raw::{FileFormat, META_BATCH_FIRST, META_DROPOUT, META_NONLINEARITY};
use crate::config::{Kind, Nonlinearity, RnnConfig};
use crate::element::{Dtype, Float};
use crate::error::{Error, Result};
use crate::module::{Gru, Lstm, Rnn};
use crate::params::{param_names, Layers, ParamName};

/// The floating-point dtypes a state dict's tensors may be stored in. Every one is read;
/// float16 and bfloat16 are widened exactly to the computation dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredDtype {
    /// `torch.float16` (safetensors `F16`), as `model.half()` saves.
    F16,
    /// `torch.bfloat16` (safetensors `BF16`).
    BF16,
    /// `torch.float32`.
    F32,
    /// `torch.float64`.
    F64,
}

impl StoredDtype {
    fn of(dtype: StDtype) -> Option<Self> {
        match dtype {
            StDtype::F16 => Some(StoredDtype::F16),
            StDtype::BF16 => Some(StoredDtype::BF16),
            StDtype::F32 => Some(StoredDtype::F32),
            StDtype::F64 => Some(StoredDtype::F64),
            _ => None,
        }
    }
}

impl std::fmt::Display for StoredDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoredDtype::F16 => "float16",
            StoredDtype::BF16 => "bfloat16",
            StoredDtype::F32 => "float32",
            StoredDtype::F64 => "float64",
        })
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone)]
struct Entry {
    dtype: StDtype,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

/// The values of little-endian float `bytes` of `dtype`, converted to `T` (float16 and
/// bfloat16 widen exactly; float64 into `f32` rounds to nearest), or `None` for a dtype
/// that is not a float one.
fn decode_floats<T: Float>(dtype: StDtype, bytes: &[u8]) -> Option<Vec<T>> {
    let half = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    Some(match dtype {
        StDtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| T::of(half::f16::from_bits(half(c)).to_f64()))
            .collect(),
        StDtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| T::of(half::bf16::from_bits(half(c)).to_f64()))
            .collect(),
        StDtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| T::of(f64::from(f32::from_le_slice(c))))
            .collect(),
        StDtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| T::of(f64::from_le_slice(c)))
            .collect(),
        _ => return None,
    })
}

/// Replaces every weight-normed parameter by the tensor it stands for, as torch's
/// forward computes it: `w = g * v / ||v||`, the norm taken over every dimension but
/// the one `g` keeps (torch's `dim`, 0 by default; `dim=None` keeps none). Both of
/// torch's spellings are read: `torch.nn.utils.parametrizations.weight_norm`
/// (`parametrizations.NAME.original0` = g, `.original1` = v) and the older
/// `torch.nn.utils.weight_norm` (`NAME_g`, `NAME_v`). The product is computed in f64
/// and stored in v's dtype (float32 for half types; float64 stays float64), appended to
/// `data` and indexed under `NAME`.
fn fold_weight_norm(
    path: &Path,
    data: &mut Vec<u8>,
    entries: &mut HashMap<String, Entry>,
) -> Result<()> {
    let mut pairs: Vec<(String, String, String)> = Vec::new(); // (name, g, v)
    for key in entries.keys() {
        if let Some(rest) = key.strip_suffix(".original0") {
            if let Some((before, name)) = rest.rsplit_once("parametrizations.") {
                let v = format!("{rest}.original1");
                if entries.contains_key(&v) {
                    pairs.push((format!("{before}{name}"), key.clone(), v));
                }
            }
        } else if let Some(name) = key.strip_suffix("_g") {
            let v = format!("{name}_v");
            if entries.contains_key(&v) {
                pairs.push((name.to_string(), key.clone(), v));
            }
        }
    }
    pairs.sort();
    for (name, g_name, v_name) in pairs {
        let bad = |message: String| Error::Format {
            path: path.to_path_buf(),
            message: format!("weight norm of '{name}' ('{g_name}', '{v_name}'): {message}"),
        };
        // A pair that cannot be folded is an error when it stands for a recurrent
        // parameter; any other (another module's tensors) is left as it is, unused.
        let bare = name.rsplit('.').next().unwrap_or(&name);
        let relevant = crate::params::looks_like_param_name(bare)
            || ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"].contains(&bare);
        macro_rules! fail {
            ($message:expr) => {{
                if relevant {
                    return Err(bad($message));
                }
                continue;
            }};
        }
        if entries.contains_key(&name) {
            fail!(format!("'{name}' is in the file as well"));
        }
        let (Some(g), Some(v)) = (entries.get(&g_name), entries.get(&v_name)) else {
            fail!("g or v is named by another weight norm too".to_string());
        };
        let values = |e: &Entry, what: &str| {
            decode_floats::<f64>(e.dtype, &data[e.bytes.clone()])
                .ok_or_else(|| format!("{what} has dtype {:?}, expected a float dtype", e.dtype))
        };
        let (gv, vv) = match (values(g, "g"), values(v, "v")) {
            (Ok(gv), Ok(vv)) => (gv, vv),
            (Err(message), _) | (_, Err(message)) => fail!(message),
        };
        let shape = v.shape.clone();
        // The dimension g keeps: g has v's size there and 1 everywhere else (torch's
        // `dim`); a g of ones everywhere is one norm over all of v (`dim=None`).
        let all_ones = g.shape.iter().all(|&n| n == 1);
        let keeps = |d: usize| {
            g.shape.len() == shape.len()
                && g.shape
                    .iter()
                    .enumerate()
                    .all(|(k, &n)| if k == d { n == shape[d] } else { n == 1 })
        };
        let dim = if all_ones && g.shape.len() <= shape.len() {
            None
        } else if let Some(d) = (0..shape.len()).find(|&d| keeps(d)) {
            Some(d)
        } else {
            fail!(format!(
                "g has shape {}, which keeps no single dimension of v's {}",
                crate::error::fmt_shape(&g.shape),
                crate::error::fmt_shape(&shape)
            ));
        };
        // How many norms: one per index of the kept dimension, or one in all.
        let outer = dim.map_or(1, |d| shape[d]);
        // Index of g (and of the norm) for each element of v.
        let stride_after: usize = dim.map_or(1, |d| shape[d + 1..].iter().product());
        let group = |i: usize| dim.map_or(0, |d| (i / stride_after) % shape[d]);
        let mut norms = vec![0f64; outer];
        for (i, x) in vv.iter().enumerate() {
            norms[group(i)] += x * x;
        }
        let norms: Vec<f64> = norms.into_iter().map(f64::sqrt).collect();
        if gv.len() != outer {
            fail!(format!("g holds {} values, expected {outer}", gv.len()));
        }
        let w: Vec<f64> = vv
            .iter()
            .enumerate()
            .map(|(i, x)| gv[group(i)] * x / norms[group(i)])
            .collect();
        let (dtype, bytes): (StDtype, Vec<u8>) = match v.dtype {
            StDtype::F64 => (
                StDtype::F64,
                w.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            _ => (
                StDtype::F32,
                w.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
            ),
        };
        let start = data.len();
        data.extend_from_slice(&bytes);
        entries.remove(&g_name);
        entries.remove(&v_name);
        entries.insert(
            name,
            Entry {
                dtype,
                shape,
                bytes: start..data.len(),
            },
        );
    }
    Ok(())
}

/// Renames each cell's tensors (`P.weight_ih`, `P.weight_hh`, `P.bias_ih`, `P.bias_hh`,
/// as `torch.nn.LSTMCell` and friends name them) to the one-layer layer's
/// (`P.weight_ih_l0`, ...), where nothing under `P` already has a layer name, and returns
/// the prefixes renamed, sorted, and each renamed tensor's file name with its index name.
fn index_cells(entries: &mut HashMap<String, Entry>) -> (Vec<String>, HashMap<String, String>) {
    const CELL: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];
    let mut prefixes: Vec<String> = entries
        .keys()
        .filter_map(|k| k.strip_suffix("weight_ih"))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .filter(|p| entries.contains_key(&format!("{p}weight_hh")))
        .map(str::to_string)
        .collect();
    prefixes.retain(|p| {
        !CELL
            .iter()
            .any(|n| entries.contains_key(&format!("{p}{n}_l0")))
    });
    prefixes.sort();
    let mut renamed = HashMap::new();
    for p in &prefixes {
        for n in CELL {
            let file_name = format!("{p}{n}");
            if let Some(e) = entries.remove(&file_name) {
                let index_name = format!("{p}{n}_l0");
                entries.insert(index_name.clone(), e);
                renamed.insert(file_name, index_name);
            }
        }
    }
    (prefixes, renamed)
}

/// Whether `bytes` open like a safetensors file: a little-endian `u64` header length
/// that fits the file, then the `{` the JSON header starts with.
pub(crate) fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some(n) = bytes.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) else {
        return false;
    };
    n <= bytes.len() as u64 && bytes.get(8) == Some(&b'{')
}

/// A state dict read into memory, with its tensor index and metadata: from safetensors,
/// `torch.save` files or ONNX models ([`FileFormat`]).
#[derive(Debug)]
pub struct StateDict {
    path: PathBuf,
    format: FileFormat,
    data: Vec<u8>,
    entries: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
    /// Prefixes whose tensors were a cell's (`weight_ih`, ...), indexed as layer 0.
    cells: Vec<String>,
    /// A cell's tensors: the file's name (`weight_ih`) and the index's (`weight_ih_l0`).
    /// Both resolve; [`StateDict::names`] lists the file's.
    cell_names: HashMap<String, String>,
}

impl StateDict {
    /// Reads and indexes a state dict: a safetensors file, a `torch.save` file (zip or
    /// legacy, with the `torch` feature) or an ONNX model (with the `onnx` feature), told
    /// apart by the file's bytes ([`FileFormat`]).
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` when it cannot be read; [`Error::Format`] when it is
    /// none of those formats or not a valid file of its format.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let data = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::read_any(path, data)
    }

    /// Indexes safetensors bytes; `path` is used in messages only.
    pub fn from_bytes(path: PathBuf, data: Vec<u8>) -> Result<Self> {
        let bad = |e: safetensors::SafeTensorError| Error::Format {
            path: path.clone(),
            message: format!("not a valid safetensors file ({e})"),
        };
        // serde_json keeps one of two equal keys silently; safetensors' own Python
        // reader refuses them, and so does this one (checked first, so that the message
        // says what is wrong rather than what follows from it).
        let header = data
            .get(..8)
            .and_then(|n| usize::try_from(u64::from_le_bytes(n.try_into().ok()?)).ok())
            .and_then(|n| data.get(8..8usize.checked_add(n)?));
        if let Some(repeated) = header.and_then(|h| duplicate_key(h).ok().flatten()) {
            return Err(Error::Format {
                path: path.clone(),
                message: format!(
                    "not a valid safetensors file (the header names '{repeated}' more than once)"
                ),
            });
        }
        let (_, meta) = SafeTensors::read_metadata(&data).map_err(bad)?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let tensors = SafeTensors::deserialize(&data).map_err(bad)?;
        let base = data.as_ptr() as usize;
        let entries: HashMap<String, Entry> = tensors
            .iter()
            .map(|(name, view)| {
                let start = view.data().as_ptr() as usize - base;
                let entry = Entry {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: start..start + view.data().len(),
                };
                (name.to_string(), entry)
            })
            .collect();
        Self::index(path, FileFormat::Safetensors, data, entries, metadata)
    }

    /// Reads a state dict from any [`FileFormat`], detected from the file's bytes.
    fn read_any(path: PathBuf, data: Vec<u8>) -> Result<Self> {
        if looks_like_safetensors(&data) {
            return Self::from_bytes(path, data);
        }
        if super::torch::looks_like_torch(&data) {
            let (format, tensors) = super::torch::read(&path, &data)?;
            return Self::from_raw(path, format, tensors, HashMap::new());
        }
        if super::onnx::looks_like_onnx(&data) {
            let (tensors, metadata) = super::onnx::read(&path, &data)?;
            return Self::from_raw(path, FileFormat::Onnx, tensors, metadata);
        }
        Self::from_bytes(path, data)
    }

    /// Indexes tensors read from another format: each tensor's bytes are checked against
    /// its dtype and shape, a name given twice is refused.
    pub(crate) fn from_raw(
        path: PathBuf,
        format: FileFormat,
        tensors: Vec<RawTensor>,
        metadata: HashMap<String, String>,
    ) -> Result<Self> {
        let mut data = Vec::new();
        let mut entries = HashMap::with_capacity(tensors.len());
        for t in tensors {
            let want = t
                .shape
                .iter()
                .try_fold(t.dtype.bitsize() / 8, |n, &d| n.checked_mul(d));
            if want != Some(t.bytes.len()) {
                return Err(Error::Format {
                    path,
                    message: format!(
                        "tensor '{}' of shape {} and dtype {:?} holds {} bytes",
                        t.name,
                        crate::error::fmt_shape(&t.shape),
                        t.dtype,
                        t.bytes.len()
                    ),
                });
            }
            let start = data.len();
            data.extend_from_slice(&t.bytes);
            let entry = Entry {
                dtype: t.dtype,
                shape: t.shape,
                bytes: start..data.len(),
            };
            if entries.insert(t.name.clone(), entry).is_some() {
                return Err(Error::Format {
                    path,
                    message: format!("the file names tensor '{}' more than once", t.name),
                });
            }
        }
        Self::index(path, format, data, entries, metadata)
    }

    /// The common tail of every reader: weight norm folded, cells' tensors renamed.
    fn index(
        path: PathBuf,
        format: FileFormat,
        mut data: Vec<u8>,
        mut entries: HashMap<String, Entry>,
        metadata: HashMap<String, String>,
    ) -> Result<Self> {
        fold_weight_norm(&path, &mut data, &mut entries)?;
        let (cells, cell_names) = index_cells(&mut entries);
        Ok(StateDict {
            path,
            format,
            data,
            entries,
            metadata,
            cells,
            cell_names,
        })
    }

    /// The format the file was read from.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Whether the layer under `prefix` was stored as a cell (`torch.nn.LSTMCell` and
    /// friends: `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`), which this state dict
    /// indexes as the one-layer, one-direction layer it is equivalent to
    /// (`weight_ih_l0`, ...).
    pub fn is_cell(&self, prefix: &str) -> bool {
        self.cells.iter().any(|p| p == prefix)
    }

    /// The file's `__metadata__` map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Every tensor name, sorted.
    ///
    /// These are the file's names: a cell's `weight_ih` is listed as such, though the
    /// layer it is indexed as names it `weight_ih_l0` (both resolve).
    pub fn names(&self) -> Vec<&str> {
        let renamed: HashMap<&str, &str> = self
            .cell_names
            .iter()
            .map(|(file, index)| (index.as_str(), file.as_str()))
            .collect();
        let mut names: Vec<&str> = self
            .entries
            .keys()
            .map(|k| renamed.get(k.as_str()).copied().unwrap_or(k))
            .collect();
        names.sort_unstable();
        names
    }

    /// The entry of tensor `name`, under the file's name or the index's.
    fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name).or_else(|| {
            self.cell_names
                .get(name)
                .and_then(|index| self.entries.get(index))
        })
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.get(name).map(|e| e.shape.as_slice())
    }

    /// Every prefix under which a recurrent layer's `weight_ih_l0` sits, sorted
    /// (`""` for a bare `nn.RNN` state dict).
    pub fn rnn_prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .entries
            .keys()
            .filter_map(|k| k.strip_suffix("weight_ih_l0"))
            .filter(|p| p.is_empty() || p.ends_with('.'))
            .map(str::to_string)
            .collect();
        prefixes.sort();
        prefixes
    }

    /// The prefix to load: `given` if it holds a layer (a missing trailing `.` is added),
    /// else the only candidate; an error lists the candidates when there are several.
    pub fn resolve_prefix(&self, given: Option<&str>) -> Result<String> {
        let candidates = self.rnn_prefixes();
        match given {
            Some(p) => {
                let with_dot = if p.is_empty() || p.ends_with('.') {
                    p.to_string()
                } else {
                    format!("{p}.")
                };
                [with_dot, p.to_string()]
                    .into_iter()
                    .find(|c| candidates.contains(c))
                    .ok_or_else(|| self.no_rnn(Some(p), candidates))
            }
            None => match candidates.len() {
                0 => Err(self.no_rnn(None, candidates)),
                1 => Ok(candidates[0].clone()),
                _ => Err(Error::AmbiguousPrefix { candidates }),
            },
        }
    }

    fn no_rnn(&self, prefix: Option<&str>, candidates: Vec<String>) -> Error {
        let mut names: Vec<String> = self.names().iter().take(8).map(|s| s.to_string()).collect();
        if self.entries.len() > 8 {
            names.push(format!("... {} more", self.entries.len() - 8));
        }
        Error::NoRnnFound {
            prefix: prefix.map(str::to_string),
            candidates,
            names,
        }
    }

    /// The dtype a layer under `prefix` computes in by default: that of `weight_ih_l0`,
    /// with float16 and bfloat16 widened to float32. [`StateDict::stored_dtype`] gives
    /// the stored one.
    ///
    /// # Errors
    /// [`Error::MissingTensor`]; [`Error::UnsupportedDtype`] for a tensor that is not a
    /// float16, bfloat16, float32 or float64 one.
    pub fn dtype(&self, prefix: &str) -> Result<Dtype> {
        Ok(match self.stored_dtype(prefix)? {
            StoredDtype::F64 => Dtype::F64,
            _ => Dtype::F32,
        })
    }

    /// The dtype `weight_ih_l0` under `prefix` is stored in.
    ///
    /// # Errors
    /// As [`StateDict::dtype`].
    pub fn stored_dtype(&self, prefix: &str) -> Result<StoredDtype> {
        let name = format!("{prefix}weight_ih_l0");
        let entry = self.entry(&name)?;
        StoredDtype::of(entry.dtype).ok_or_else(|| Error::UnsupportedDtype {
            name,
            got: format!("{:?}", entry.dtype),
        })
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })
    }

    /// Whether the file's metadata records the option `key` ([`META_BATCH_FIRST`],
    /// [`META_NONLINEARITY`], [`META_DROPOUT`]). A state dict saved by torch records none
    /// of them (the tensors cannot show them), so [`StateDict::infer_config`] gives
    /// torch's defaults; one saved by [`super::safetensors::save`] records all three.
    pub fn records(&self, key: &str) -> bool {
        self.metadata.contains_key(key)
    }

    /// The configuration of the layer under `prefix`: sizes, `num_layers`,
    /// `bidirectional` and `bias` from the tensors; `nonlinearity`, `batch_first` and
    /// `dropout` from the metadata, else torch's defaults. Checks that every parameter the
    /// configuration needs is present with torch's shape and that no other parameter
    /// name sits under the prefix.
    pub fn infer_config(&self, prefix: &str) -> Result<RnnConfig> {
        // The RNN parameter names under the prefix, in torch's order (deterministic
        // messages whatever the file's order).
        let mut found: Vec<(String, ParamName)> = self
            .entries
            .keys()
            .filter_map(|k| {
                let bare = k.strip_prefix(prefix)?;
                Some((k.clone(), bare.parse::<ParamName>().ok()?))
            })
            .collect();
        found.sort_by_key(|(_, n)| (n.layer, n.reverse, n.kind));
        // A torch parameter name whose layer index does not fit (`weight_ih_l184467...`)
        // would otherwise be taken for an unrelated tensor and ignored.
        if let Some(name) = self.entries.keys().find(|k| {
            k.strip_prefix(prefix).is_some_and(|bare| {
                crate::params::looks_like_param_name(bare) && bare.parse::<ParamName>().is_err()
            })
        }) {
            return Err(Error::Format {
                path: self.path.clone(),
                message: format!(
                    "tensor '{name}': its layer index is not a layer number this library can hold (at most {})",
                    usize::MAX
                ),
            });
        }
        let found_names = || found.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let w_ih_name = format!("{prefix}weight_ih_l0");
        let w_hh_name = format!("{prefix}weight_hh_l0");
        let w_ih0 = self.entry(&w_ih_name)?;
        let w_hh0 = self
            .entries
            .get(&w_hh_name)
            .ok_or_else(|| Error::MissingParameter {
                name: w_hh_name.clone(),
                config: "recurrent layer".to_string(),
                expected: vec![w_ih_name.clone(), w_hh_name.clone()],
                found: found_names(),
            })?;
        for (name, entry) in [(&w_ih_name, w_ih0), (&w_hh_name, w_hh0)] {
            if entry.shape.len() != 2 {
                return Err(Error::ParameterShape {
                    name: name.clone(),
                    expected: Vec::new(),
                    got: entry.shape.clone(),
                });
            }
        }
        // H from weight_hr (P, H) when the LSTM projects, else from weight_hh (G*H, H);
        // the gate count G = rows / H gives the kind: 1 RNN, 3 GRU, 4 LSTM.
        let (rows, cols) = (w_hh0.shape[0], w_hh0.shape[1]);
        let w_hr_name = format!("{prefix}weight_hr_l0");
        let (hidden, proj_size) = match self.entries.get(&w_hr_name) {
            Some(w_hr) if w_hr.shape.len() == 2 => (w_hr.shape[1], w_hr.shape[0]),
            Some(w_hr) => {
                return Err(Error::ParameterShape {
                    name: w_hr_name,
                    expected: Vec::new(),
                    got: w_hr.shape.clone(),
                })
            }
            None => (cols, 0),
        };
        let kind = (hidden > 0 && rows % hidden == 0)
            .then(|| rows / hidden)
            .and_then(Kind::from_gate_count)
            .ok_or_else(|| {
                Error::UnsupportedModel(format!(
                    "{}: '{w_hh_name}' has shape ({rows}, {cols}): its rows are not 1, 3 or 4 times the hidden size {hidden} (RNN, GRU, LSTM)",
                    self.path.display()
                ))
            })?;
        // Layers: the contiguous run 0, 1, ... of layers that have a weight. A layer with
        // one of its weights missing still counts (so the gap is reported as missing); a
        // tensor past the run is reported as unexpected.
        let has = |name: String| self.entries.contains_key(&name);
        let num_layers = (0..)
            .take_while(|k| {
                has(format!("{prefix}weight_ih_l{k}")) || has(format!("{prefix}weight_hh_l{k}"))
            })
            .count();
        let mut config = RnnConfig {
            kind,
            ..RnnConfig::new(w_ih0.shape[1], hidden)
        }
        .proj_size(proj_size)
        .num_layers(num_layers)
        .bidirectional(
            self.entries
                .contains_key(&format!("{prefix}weight_ih_l0_reverse")),
        )
        .bias(self.entries.contains_key(&format!("{prefix}bias_ih_l0")));
        self.apply_metadata(&mut config)?;
        config.validate().map_err(|e| Error::Format {
            path: self.path.clone(),
            message: e.to_string(),
        })?;

        let expected = param_names(&config);
        let expected_full: Vec<String> = expected.iter().map(|n| format!("{prefix}{n}")).collect();
        for (full, name) in &found {
            if !name.exists_in(&config) {
                return Err(Error::UnexpectedParameter {
                    name: full.clone(),
                    config: config.to_string(),
                    expected: expected_full,
                });
            }
        }
        for (name, full) in expected.iter().zip(&expected_full) {
            let entry = self
                .entries
                .get(full)
                .ok_or_else(|| Error::MissingParameter {
                    name: full.clone(),
                    config: config.to_string(),
                    expected: expected_full.clone(),
                    found: found_names(),
                })?;
            let want = name.shape(&config);
            if entry.shape != want {
                return Err(Error::ParameterShape {
                    name: full.clone(),
                    expected: want,
                    got: entry.shape.clone(),
                });
            }
        }
        Ok(config)
    }

    fn apply_metadata(&self, config: &mut RnnConfig) -> Result<()> {
        if let Some(v) = self.metadata.get(META_NONLINEARITY) {
            config.nonlinearity = v.parse::<Nonlinearity>().map_err(|_| Error::Metadata {
                key: META_NONLINEARITY.to_string(),
                value: v.clone(),
                expected: "'tanh' or 'relu'".to_string(),
            })?;
        }
        if let Some(v) = self.metadata.get(META_BATCH_FIRST) {
            config.batch_first = parse_bool(v).ok_or_else(|| Error::Metadata {
                key: META_BATCH_FIRST.to_string(),
                value: v.clone(),
                expected: "'true' or 'false'".to_string(),
            })?;
        }
        if let Some(v) = self.metadata.get(META_DROPOUT) {
            config.dropout = v
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| Error::Metadata {
                    key: META_DROPOUT.to_string(),
                    value: v.clone(),
                    expected: "a number in [0, 1]".to_string(),
                })?;
        }
        Ok(())
    }

    /// Tensor `name` converted to `T`: float16, bfloat16, float32 and float64 tensors,
    /// each value widened exactly (every float16 and bfloat16 value is a float32 one)
    /// or, for float64 into `f32`, rounded to nearest as torch's `.float()` does.
    ///
    /// # Errors
    /// [`Error::MissingTensor`]; [`Error::UnsupportedDtype`] for other dtypes.
    pub fn tensor<T: Float>(&self, name: &str) -> Result<ArrayD<T>> {
        let entry = self.entry(name)?;
        let bytes = &self.data[entry.bytes.clone()];
        let values: Vec<T> =
            decode_floats(entry.dtype, bytes).ok_or_else(|| Error::UnsupportedDtype {
                name: name.to_string(),
                got: format!("{:?}", entry.dtype),
            })?;
        ArrayD::from_shape_vec(entry.shape.clone(), values).map_err(|e| Error::Format {
            path: self.path.clone(),
            message: format!("tensor '{name}': {e}"),
        })
    }

    /// The parameters under `prefix` with `config` (from [`StateDict::infer_config`],
    /// possibly adjusted), converted to `T`.
    pub fn load_layers<T: Float>(&self, prefix: &str, config: RnnConfig) -> Result<Layers<T>> {
        let names = param_names(&config);
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let full = format!("{prefix}{name}");
            if !self.entries.contains_key(&full) {
                return Err(Error::MissingParameter {
                    name: full,
                    config: config.to_string(),
                    expected: param_names(&config)
                        .iter()
                        .map(|n| format!("{prefix}{n}"))
                        .collect(),
                    found: Vec::new(),
                });
            }
            tensors.push((name.to_string(), self.tensor::<T>(&full)?));
        }
        Layers::from_named(config, tensors)
    }

    /// Builds the `torch.nn.RNN` under `prefix` with `config`, converting to `T`.
    pub fn load_rnn<T: Float>(&self, prefix: &str, config: RnnConfig) -> Result<Rnn<T>> {
        Rnn::from_layers(self.load_layers(prefix, config)?)
    }

    /// Builds the `torch.nn.LSTM` under `prefix` with `config`, converting to `T`.
    pub fn load_lstm<T: Float>(&self, prefix: &str, config: RnnConfig) -> Result<Lstm<T>> {
        Lstm::from_layers(self.load_layers(prefix, config)?)
    }

    /// Builds the `torch.nn.GRU` under `prefix` with `config`, converting to `T`.
    pub fn load_gru<T: Float>(&self, prefix: &str, config: RnnConfig) -> Result<Gru<T>> {
        Gru::from_layers(self.load_layers(prefix, config)?)
    }

    /// An integer tensor (I64 or I32) as `usize`, e.g. sequence lengths; negative values
    /// are an error.
    pub fn tensor_usize(&self, name: &str) -> Result<Vec<usize>> {
        let entry = self.entry(name)?;
        let bytes = &self.data[entry.bytes.clone()];
        let values: Vec<i64> = match entry.dtype {
            StDtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            StDtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_string(),
                    got: format!("{other:?}"),
                })
            }
        };
        values
            .into_iter()
            .map(|v| {
                usize::try_from(v).map_err(|_| Error::Format {
                    path: self.path.clone(),
                    message: format!("tensor '{name}': negative value {v}"),
                })
            })
            .collect()
    }
}

/// The first key that occurs twice in the safetensors header's top-level JSON object (or
/// in its `__metadata__`), if any.
fn duplicate_key(header: &[u8]) -> std::result::Result<Option<String>, serde_json::Error> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::collections::HashSet;

    /// Visits a JSON object, noting the first repeated key; nested objects are checked
    /// too when `nested` (the metadata map).
    struct Keys {
        nested: bool,
    }
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut seen = HashSet::new();
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if self.nested && key == "__metadata__" {
                    let inner = map.next_value_seed(KeysSeed)?;
                    found = found.or(inner);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                if !seen.insert(key.clone()) && found.is_none() {
                    found = Some(key);
                }
            }
            Ok(found)
        }
    }
    /// The metadata: a map whose own keys must be unique too, or `null` (which the
    /// safetensors crate accepts as no metadata).
    struct KeysSeed;
    impl<'de> serde::de::DeserializeSeed<'de> for KeysSeed {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_option(MaybeKeys)
        }
    }
    struct MaybeKeys;
    impl<'de> Visitor<'de> for MaybeKeys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_map(Keys { nested: false })
        }
    }
    let mut d = serde_json::Deserializer::from_slice(header);
    d.deserialize_map(Keys { nested: true })
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}
