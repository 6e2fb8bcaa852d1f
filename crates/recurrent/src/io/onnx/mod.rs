//! ONNX models: the weights of their RNN / LSTM / GRU nodes, read as a torch state dict.
//! (Being written: until then an ONNX file is refused.)

use std::path::Path;

use super::safetensors::StateDict;
use crate::error::{Error, Result};

/// Whether `bytes` look like an ONNX `ModelProto`. Not yet: always `false`.
pub(crate) fn looks_like_onnx(_bytes: &[u8]) -> bool {
    false
}

/// Reads the recurrent nodes of an ONNX model as a state dict.
pub(crate) fn read(path: &Path, _bytes: &[u8]) -> Result<StateDict> {
    Err(Error::Format {
        path: path.to_path_buf(),
        message: "ONNX models are not read yet".to_string(),
    })
}
