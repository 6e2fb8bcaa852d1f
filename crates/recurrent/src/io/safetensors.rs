//! Writing torch `state_dict`s as safetensors files, which torch loads with
//! `model.load_state_dict(safetensors.torch.load_file(path))`. Reading any format is
//! [`StateDict`]'s (re-exported here, where it was first defined).

use std::collections::HashMap;
use std::path::Path;

use ndarray::ArrayViewD;
use safetensors::tensor::{Dtype as StDtype, TensorView};

pub use super::state_dict::{
    StateDict, StoredDtype, META_BATCH_FIRST, META_DROPOUT, META_NONLINEARITY,
};
use crate::element::{Dtype, Float};
use crate::error::{Error, Result};
use crate::params::Layers;

/// Saves `rnn`'s parameters as a state dict torch loads with
/// `model.load_state_dict(safetensors.torch.load_file(path))`, with metadata recording
/// the options the tensors cannot show (`nonlinearity`, `batch_first`, `dropout`) plus
/// `extra_metadata`. Written atomically.
pub fn save<T: Float>(
    model: &impl AsRef<Layers<T>>,
    path: impl AsRef<Path>,
    extra_metadata: &HashMap<String, String>,
) -> Result<()> {
    let dtype = match T::DTYPE {
        Dtype::F32 => StoredDtype::F32,
        Dtype::F64 => StoredDtype::F64,
    };
    save_as(model, path, dtype, extra_metadata)
}

/// [`save`] in another dtype: the state dict as torch would hold it after
/// `model.half()` ([`StoredDtype::F16`]), `model.to(torch.bfloat16)` ([`StoredDtype::BF16`]),
/// `.float()` or `.double()`; what a layer loaded from a half-precision file is saved back
/// in ([`StateDict::stored_dtype`] tells which). Each value is rounded to nearest, ties to
/// even, as torch's conversions do, so a float16 or bfloat16 file loaded (widened exactly)
/// and saved back this way is the same bytes.
///
/// # Errors
/// As [`save`].
pub fn save_as<T: Float>(
    model: &impl AsRef<Layers<T>>,
    path: impl AsRef<Path>,
    dtype: StoredDtype,
    extra_metadata: &HashMap<String, String>,
) -> Result<()> {
    let rnn = model.as_ref();
    let path = path.as_ref();
    let config = rnn.config();
    let mut metadata = extra_metadata.clone();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        META_NONLINEARITY.to_string(),
        config.nonlinearity.to_string(),
    );
    metadata.insert(META_BATCH_FIRST.to_string(), config.batch_first.to_string());
    metadata.insert(META_DROPOUT.to_string(), config.dropout.to_string());
    let (st_dtype, encode): (StDtype, fn(f64, &mut Vec<u8>)) = match dtype {
        StoredDtype::F16 => (StDtype::F16, |x, out| {
            out.extend_from_slice(&half::f16::from_f64(x).to_le_bytes())
        }),
        StoredDtype::BF16 => (StDtype::BF16, |x, out| {
            out.extend_from_slice(&half::bf16::from_f64(x).to_le_bytes())
        }),
        StoredDtype::F32 => (StDtype::F32, |x, out| {
            out.extend_from_slice(&(x as f32).to_le_bytes())
        }),
        StoredDtype::F64 => (StDtype::F64, |x, out| {
            out.extend_from_slice(&x.to_le_bytes())
        }),
    };
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = rnn
        .named_parameters()
        .map(|(name, t)| {
            let mut bytes = Vec::with_capacity(t.len() * st_dtype.bitsize() / 8);
            for &v in t.iter() {
                encode(v.as_f64(), &mut bytes);
            }
            (name, t.shape().to_vec(), bytes)
        })
        .collect();
    let mut set = super::OutputSet::new();
    stage_buffers(&mut set, path, st_dtype, &buffers, metadata)?;
    set.commit()
}

/// Writes named tensors (in the given order) as a safetensors file with `metadata`,
/// all or nothing (see [`super::OutputSet`]): what `recurrent backward` writes its
/// gradients with.
///
/// # Errors
/// [`Error::Io`] naming `path` when it cannot be written; [`Error::Format`] when the
/// tensors cannot be serialised (a repeated name).
pub fn save_tensors<T: Float>(
    path: impl AsRef<Path>,
    tensors: &[(String, ArrayViewD<'_, T>)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut set = super::OutputSet::new();
    stage_tensors(&mut set, path, tensors, metadata)?;
    set.commit()
}

/// [`save_tensors`] as one output of a set written together.
///
/// # Errors
/// As [`save_tensors`].
pub fn stage_tensors<T: Float>(
    set: &mut super::OutputSet,
    path: impl AsRef<Path>,
    tensors: &[(String, ArrayViewD<'_, T>)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let dtype = match T::DTYPE {
        Dtype::F32 => StDtype::F32,
        Dtype::F64 => StDtype::F64,
    };
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let mut bytes = Vec::with_capacity(t.len() * std::mem::size_of::<T>());
            for &v in t.iter() {
                v.extend_le_bytes(&mut bytes);
            }
            (name.clone(), t.shape().to_vec(), bytes)
        })
        .collect();
    stage_buffers(set, path.as_ref(), dtype, &buffers, metadata)
}

/// Serialises `buffers` (name, shape, little-endian bytes of `dtype`) with `metadata` as
/// one output of `set`.
fn stage_buffers(
    set: &mut super::OutputSet,
    path: &Path,
    dtype: StDtype,
    buffers: &[(String, Vec<usize>, Vec<u8>)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let format_err = |e: safetensors::SafeTensorError| Error::Format {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    };
    let mut views = Vec::with_capacity(buffers.len());
    for (name, shape, bytes) in buffers {
        views.push((
            name.as_str(),
            TensorView::new(dtype, shape.clone(), bytes).map_err(format_err)?,
        ));
    }
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(format_err)?;
    set.stage(path, |w| {
        w.write_all(&bytes).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}
