//! ONNX models: the weights of their RNN / LSTM / GRU nodes, read as a torch state dict.
//! (Being written: until then an ONNX file is refused.)

use std::collections::HashMap;
use std::path::Path;

use super::raw::RawTensor;
use crate::error::{Error, Result};

/// Whether `bytes` look like an ONNX `ModelProto`. Not yet: always `false`.
pub(crate) fn looks_like_onnx(_bytes: &[u8]) -> bool {
    false
}

/// Reads the recurrent nodes of an ONNX model as torch-named tensors and metadata.
pub(crate) fn read(
    path: &Path,
    _bytes: &[u8],
) -> Result<(Vec<RawTensor>, HashMap<String, String>)> {
    Err(Error::Format {
        path: path.to_path_buf(),
        message: "ONNX models are not read yet".to_string(),
    })
}
