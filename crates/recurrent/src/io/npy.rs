//! `.npy` arrays of float32 or float64 (and integer lengths), via `ndarray-npy`.

use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

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

/// Checks that the array a `.npy` header declares fits in the file, before anything is
/// allocated for it (a few bytes of header could otherwise ask for terabytes).
fn check_declared_size(path: &Path) -> Result<()> {
    use std::io::Read;
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file
        .metadata()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut prefix = [0u8; 12];
    if file.read_exact(&mut prefix[..10]).is_err() || &prefix[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no NUMPY magic header)".to_string()));
    }
    let (header_len, data_start) = if prefix[6] == 1 {
        (u64::from(u16::from_le_bytes([prefix[8], prefix[9]])), 10)
    } else {
        if file.read_exact(&mut prefix[10..12]).is_err() {
            return Err(bad("truncated .npy header".to_string()));
        }
        (
            u64::from(u32::from_le_bytes([
                prefix[8], prefix[9], prefix[10], prefix[11],
            ])),
            12,
        )
    };
    if header_len > 1 << 20 {
        return Err(bad(format!("implausible .npy header length {header_len}")));
    }
    let mut header = vec![0u8; header_len as usize];
    if file.read_exact(&mut header).is_err() {
        return Err(bad("truncated .npy header".to_string()));
    }
    let header = String::from_utf8_lossy(&header);
    let shape = header
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('('))
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(dims, _)| dims);
    let item = header
        .split_once("'descr'")
        .and_then(|(_, rest)| rest.split('\'').nth(1))
        .and_then(|descr| descr.trim_start_matches(['<', '>', '|', '=']).get(1..))
        .and_then(|size| size.parse::<u64>().ok());
    // Only what can be read is checked; anything else is left to the parser's errors.
    if let (Some(dims), Some(item)) = (shape, item) {
        let declared = dims
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .try_fold(item, |acc, d| acc.checked_mul(d.parse::<u64>().ok()?));
        let available = file_len.saturating_sub(data_start + header_len);
        match declared {
            Some(bytes) if bytes <= available => {}
            _ => {
                return Err(bad(format!(
                    "the header declares shape ({dims}) of {item}-byte elements, more than the {available} bytes of data in the file"
                )))
            }
        }
    }
    Ok(())
}

/// Opens `path` for a streaming read (the data is parsed straight into the array, never
/// held twice in memory).
fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn format_error(path: &Path, e: ReadNpyError) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: format!("not a readable .npy file ({e})"),
    }
}

/// Reads a float32 or float64 `.npy` file (C or Fortran order).
pub fn read_float(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    check_declared_size(path)?;
    // A wrong descriptor is detected from the header, before any data is read; the
    // file is then opened again for the other type.
    match ArrayD::<f32>::read_npy(open(path)?) {
        Ok(a) => return Ok(NpyArray::F32(a)),
        Err(ReadNpyError::WrongDescriptor(_)) => {}
        Err(e) => return Err(format_error(path, e)),
    }
    match ArrayD::<f64>::read_npy(open(path)?) {
        Ok(a) => Ok(NpyArray::F64(a)),
        Err(ReadNpyError::WrongDescriptor(desc)) => Err(Error::Format {
            path: path.to_path_buf(),
            message: format!(
                "expected a float32 or float64 array, got dtype {}",
                numpy_dtype_name(&desc.to_string())
            ),
        }),
        Err(e) => Err(format_error(path, e)),
    }
}

/// Reads a float `.npy` file that must have element type `T`.
pub fn read<T: Float>(path: impl AsRef<Path>) -> Result<ArrayD<T>> {
    let path = path.as_ref();
    check_declared_size(path)?;
    ArrayD::<T>::read_npy(open(path)?).map_err(|e| match e {
        ReadNpyError::WrongDescriptor(desc) => Error::DtypeMismatch {
            what: path.display().to_string(),
            expected: T::DTYPE,
            got: numpy_dtype_name(&desc.to_string()),
        },
        e => format_error(path, e),
    })
}

/// Writes `array` to `path` as `.npy` (C order, little endian), atomically.
pub fn write<T: Float>(path: impl AsRef<Path>, array: &ArrayD<T>) -> Result<()> {
    let path = path.as_ref();
    super::write_atomic(path, |w| {
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

/// Reads per-sequence lengths: a 1-D `.npy` of int64 or int32 (as torch and numpy write
/// them), every value at least 0 (the layers check `1..=L`).
pub fn read_lengths(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    let path = path.as_ref();
    check_declared_size(path)?;
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let values: Vec<i64> = match ndarray::Array1::<i64>::read_npy(open(path)?) {
        Ok(a) => a.to_vec(),
        Err(ReadNpyError::WrongDescriptor(_)) => {
            match ndarray::Array1::<i32>::read_npy(open(path)?) {
                Ok(a) => a.iter().map(|&v| i64::from(v)).collect(),
                Err(ReadNpyError::WrongDescriptor(desc)) => {
                    return Err(bad(format!(
                        "expected lengths as int64 or int32, got dtype {}",
                        numpy_dtype_name(&desc.to_string())
                    )))
                }
                Err(ReadNpyError::WrongNdim(_, got)) => {
                    return Err(bad(format!(
                        "expected a 1-D array of lengths (N,), got {got}-D"
                    )))
                }
                Err(e) => return Err(format_error(path, e)),
            }
        }
        Err(ReadNpyError::WrongNdim(_, got)) => {
            return Err(bad(format!(
                "expected a 1-D array of lengths (N,), got {got}-D"
            )))
        }
        Err(e) => return Err(format_error(path, e)),
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            usize::try_from(v)
                .map_err(|_| bad(format!("lengths[{i}] = {v}: lengths must be positive")))
        })
        .collect()
}
