//! `.npy` arrays of float32 or float64 (and integer lengths), via `ndarray-npy`.

use std::path::Path;

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadableElement, WriteNpyExt};
use py_literal::Value as PyValue;

use crate::element::{Dtype, Float};
use crate::error::{Error, Result};

/// A float array read from a `.npy` file, in the dtype the file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyArray {
    /// `<f4`.
    F32(ArrayD<f32>),
    /// `<f8`.
    F64(ArrayD<f64>),
}

impl NpyArray {
    /// The dtype.
    pub fn dtype(&self) -> Dtype {
        match self {
            NpyArray::F32(_) => Dtype::F32,
            NpyArray::F64(_) => Dtype::F64,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            NpyArray::F32(a) => a.shape(),
            NpyArray::F64(a) => a.shape(),
        }
    }
}

/// The most header bytes a `.npy` file may declare (numpy writes a few hundred).
const MAX_HEADER_LEN: u64 = 1 << 20;

/// A `.npy` file whose header has been parsed, once: the header that is checked against
/// the file's size is the one the data is then read with.
struct NpyFile {
    path: std::path::PathBuf,
    header: Header,
    reader: std::io::BufReader<std::fs::File>,
    /// Bytes after the header.
    data_len: u64,
}

/// The element kind and size of a simple numpy descriptor (`'<f4'` -> `('f', 4)`).
fn descr_kind(header: &Header) -> Option<(char, u64)> {
    let PyValue::String(descr) = &header.type_descriptor else {
        return None;
    };
    let code = descr.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = code.chars();
    let kind = chars.next()?;
    let size = chars.as_str().parse::<u64>().ok()?;
    Some((kind, size))
}

fn descr_text(header: &Header) -> String {
    match &header.type_descriptor {
        PyValue::String(d) => numpy_dtype_name(d),
        other => other.to_string(),
    }
}

impl NpyFile {
    /// Opens `path` and parses its header, reading at most the bytes the file holds.
    fn open(path: &Path) -> Result<Self> {
        use std::io::Read;
        let bad = |message: String| Error::Format {
            path: path.to_path_buf(),
            message,
        };
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut reader = std::io::BufReader::new(file);
        let mut prefix = vec![0u8; 10];
        if reader.read_exact(&mut prefix).is_err() || &prefix[..6] != b"\x93NUMPY" {
            return Err(bad("not a .npy file (no NUMPY magic header)".to_string()));
        }
        let header_len = match prefix[6] {
            1 => u64::from(u16::from_le_bytes([prefix[8], prefix[9]])),
            2 | 3 => {
                let mut more = [0u8; 2];
                if reader.read_exact(&mut more).is_err() {
                    return Err(bad("truncated .npy header".to_string()));
                }
                prefix.extend_from_slice(&more);
                u64::from(u32::from_le_bytes([prefix[8], prefix[9], more[0], more[1]]))
            }
            v => {
                return Err(bad(format!(
                    "unsupported .npy format version {v}.{} (expected 1, 2 or 3)",
                    prefix[7]
                )))
            }
        };
        let start = prefix.len() as u64;
        if header_len > MAX_HEADER_LEN || start + header_len > file_len {
            return Err(bad(format!(
                "the .npy header declares {header_len} bytes, but the file holds {file_len} bytes"
            )));
        }
        // `header_len` is at most 1 MiB and within the file.
        let mut bytes = prefix;
        let mut text = vec![0u8; header_len as usize];
        reader
            .read_exact(&mut text)
            .map_err(|_| bad("truncated .npy header".to_string()))?;
        bytes.extend_from_slice(&text);
        let header = Header::from_reader(&mut bytes.as_slice())
            .map_err(|e| bad(format!("not a readable .npy header ({e})")))?;
        Ok(NpyFile {
            path: path.to_path_buf(),
            header,
            reader,
            data_len: file_len - start - header_len,
        })
    }

    /// The declared shape, refused unless the data it declares (of `item`-byte elements)
    /// is exactly what the file holds after its header. Returns the element count.
    fn checked_len(&self, item: u64) -> Result<usize> {
        let shape = &self.header.shape;
        let declared = shape
            .iter()
            .try_fold(item, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?));
        match declared {
            Some(bytes) if bytes == self.data_len => {
                let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
                count.ok_or_else(|| self.bad("the shape's element count overflows".to_string()))
            }
            _ => Err(self.bad(format!(
                "the header declares shape {} of {} ({} bytes of data), but the file holds {} bytes after its header",
                crate::error::fmt_shape(shape),
                descr_text(&self.header),
                declared.map_or("more than 2^64".to_string(), |b| b.to_string()),
                self.data_len
            ))),
        }
    }

    fn bad(&self, message: String) -> Error {
        Error::Format {
            path: self.path.clone(),
            message,
        }
    }

    /// Reads the data as `E`, whose descriptor the header must have (checked by the
    /// caller through [`descr_kind`]).
    fn read_as<E: ReadableElement>(mut self) -> Result<ArrayD<E>> {
        let len = self.checked_len(std::mem::size_of::<E>() as u64)?;
        let data = E::read_to_end_exact_vec(&mut self.reader, &self.header.type_descriptor, len)
            .map_err(|e| self.bad(format!("not a readable .npy file ({e})")))?;
        let shape = IxDyn(&self.header.shape).set_f(self.header.layout.is_fortran());
        ArrayD::from_shape_vec(shape, data)
            .map_err(|e| self.bad(format!("not a readable .npy file ({e})")))
    }
}

/// Reads a float32 or float64 `.npy` file (C or Fortran order, either byte order).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] when it is not a
/// `.npy` file, holds another dtype, or its header declares more or less data than the
/// file holds (checked before anything is allocated for the data).
pub fn read_float(path: impl AsRef<Path>) -> Result<NpyArray> {
    let npy = NpyFile::open(path.as_ref())?;
    match descr_kind(&npy.header) {
        Some(('f', 4)) => npy.read_as::<f32>().map(NpyArray::F32),
        Some(('f', 8)) => npy.read_as::<f64>().map(NpyArray::F64),
        _ => Err(npy.bad(format!(
            "expected a float32 or float64 array, got dtype {}",
            descr_text(&npy.header)
        ))),
    }
}

/// Reads a float `.npy` file that must have element type `T`.
///
/// # Errors
/// As [`read_float`], and [`Error::DtypeMismatch`] when the file holds the other float
/// type or another dtype.
pub fn read<T: Float>(path: impl AsRef<Path>) -> Result<ArrayD<T>> {
    let path = path.as_ref();
    let npy = NpyFile::open(path)?;
    let wanted = match T::DTYPE {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
    };
    if descr_kind(&npy.header) != Some(('f', wanted)) {
        return Err(Error::DtypeMismatch {
            what: path.display().to_string(),
            expected: T::DTYPE,
            got: descr_text(&npy.header),
        });
    }
    let array = match T::DTYPE {
        Dtype::F32 => npy.read_as::<f32>()?.mapv(|v| T::of(f64::from(v))),
        Dtype::F64 => npy.read_as::<f64>()?.mapv(T::of),
    };
    Ok(array)
}

/// Writes `array` to `path` as `.npy` (C order, little endian), all or nothing (see
/// [`super::OutputSet`]).
///
/// # Errors
/// [`Error::Io`] naming `path` when it cannot be written.
pub fn write<T: Float>(path: impl AsRef<Path>, array: &ArrayD<T>) -> Result<()> {
    let mut set = super::OutputSet::new();
    stage(&mut set, path, array)?;
    set.commit()
}

/// Adds `array`, as `.npy` at `path`, to a set of outputs written together.
///
/// # Errors
/// As [`super::OutputSet::stage`].
pub fn stage<T: Float>(
    set: &mut super::OutputSet,
    path: impl AsRef<Path>,
    array: &ArrayD<T>,
) -> Result<()> {
    let path = path.as_ref();
    set.stage(path, |w| {
        array.write_npy(w).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            message: format!("cannot write .npy: {e}"),
        })
    })
}

/// numpy's type descriptor (`'<f8'`) as torch names dtypes (`float64`), when it is one
/// of the common ones.
fn numpy_dtype_name(desc: &str) -> String {
    let code = desc
        .trim_matches('\'')
        .trim_start_matches(['<', '>', '|', '=']);
    match code {
        "f2" => "float16".to_string(),
        "f4" => "float32".to_string(),
        "f8" => "float64".to_string(),
        "i1" => "int8".to_string(),
        "i2" => "int16".to_string(),
        "i4" => "int32".to_string(),
        "i8" => "int64".to_string(),
        "u1" => "uint8".to_string(),
        "b1" => "bool".to_string(),
        _ => desc.to_string(),
    }
}

/// Reads per-sequence lengths: a 1-D `.npy` of any integer dtype (int8 to int64, uint8
/// to uint64, as torch and numpy write them), or float32 / float64 holding whole
/// numbers; every value at least 0 (the layers check `1..=L`).
///
/// torch's `pack_padded_sequence` truncates float lengths toward zero (`2.7` runs 2
/// steps); a fractional length is more likely a mistake than a wish, so it is refused
/// here with the value and its index rather than truncated.
///
/// # Errors
/// [`Error::Format`] when the file is not a 1-D integer or float `.npy` array, a value
/// is negative, fractional, not finite or does not fit in `usize`, or the header
/// declares more or less data than the file holds.
pub fn read_lengths(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    /// Float lengths that are whole numbers, as integers; anything else an error naming
    /// the index and value.
    fn whole(path: &Path, values: impl Iterator<Item = f64>) -> Result<Vec<i128>> {
        values
            .enumerate()
            .map(|(i, v)| {
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e30 {
                    // ok: finite, whole and far inside i128's range
                    Ok(v as i128)
                } else {
                    Err(Error::Format {
                        path: path.to_path_buf(),
                        message: format!(
                            "lengths[{i}] = {v}: a float length must be a whole number (torch would truncate it to {}; give the length you mean)",
                            if v.is_finite() { format!("{}", v.trunc()) } else { "nothing usable".to_string() }
                        ),
                    })
                }
            })
            .collect()
    }
    let npy = NpyFile::open(path.as_ref())?;
    if npy.header.shape.len() != 1 {
        return Err(npy.bad(format!(
            "expected a 1-D array of lengths (N,), got {}-D",
            npy.header.shape.len()
        )));
    }
    fn widen<E: Copy + TryInto<i128>>(a: ArrayD<E>) -> Vec<i128> {
        a.iter()
            .map(|&v| v.try_into().unwrap_or(i128::MIN))
            .collect()
    }
    let kind = descr_kind(&npy.header);
    let bad_dtype = || {
        npy.bad(format!(
            "expected lengths as an integer array (int64, int32, ...) or whole numbers in a float array, got dtype {}",
            descr_text(&npy.header)
        ))
    };
    let values: Vec<i128> = match kind {
        Some(('i', 8)) => widen(npy.read_as::<i64>()?),
        Some(('i', 4)) => widen(npy.read_as::<i32>()?),
        Some(('i', 2)) => widen(npy.read_as::<i16>()?),
        Some(('i', 1)) => widen(npy.read_as::<i8>()?),
        Some(('u', 8)) => widen(npy.read_as::<u64>()?),
        Some(('u', 4)) => widen(npy.read_as::<u32>()?),
        Some(('u', 2)) => widen(npy.read_as::<u16>()?),
        Some(('u', 1)) => widen(npy.read_as::<u8>()?),
        Some(('f', 8)) => whole(path.as_ref(), npy.read_as::<f64>()?.iter().copied())?,
        Some(('f', 4)) => whole(
            path.as_ref(),
            npy.read_as::<f32>()?.iter().map(|&v| f64::from(v)),
        )?,
        _ => return Err(bad_dtype()),
    };
    let path = path.as_ref();
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            usize::try_from(v).map_err(|_| Error::Format {
                path: path.to_path_buf(),
                message: format!("lengths[{i}] = {v}: lengths must be positive"),
            })
        })
        .collect()
}
