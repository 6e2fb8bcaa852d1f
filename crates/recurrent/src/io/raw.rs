//! What every file reader hands the state dict index: tensors under torch's names, and
//! the format they came from. The bottom of `io`: it depends on nothing in it.

use safetensors::tensor::Dtype as StDtype;

/// Metadata key for the nonlinearity (`"tanh"` / `"relu"`).
pub const META_NONLINEARITY: &str = "nonlinearity";
/// Metadata key for `batch_first` (`"true"` / `"false"`).
pub const META_BATCH_FIRST: &str = "batch_first";
/// Metadata key for `dropout` (a decimal number).
pub const META_DROPOUT: &str = "dropout";

/// The file formats a [`crate::io::StateDict`] is read from, told apart by the file's bytes (never
/// by its extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFormat {
    /// `safetensors.torch.save_file(model.state_dict(), path)`.
    Safetensors,
    /// `torch.save(obj, path)`: the zip archive of torch >= 1.6 (the default).
    TorchZip,
    /// `torch.save(obj, path, _use_new_zipfile_serialization=False)`: the legacy pickle
    /// stream (and the tar archive of torch < 0.1.10).
    TorchLegacy,
    /// An ONNX model (`torch.onnx.export`): the weights of its RNN / LSTM / GRU nodes,
    /// under torch's names.
    Onnx,
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileFormat::Safetensors => "safetensors",
            FileFormat::TorchZip => "torch.save (zip)",
            FileFormat::TorchLegacy => "torch.save (legacy)",
            FileFormat::Onnx => "ONNX",
        })
    }
}

/// One tensor of a state dict read from a format other than safetensors (torch.save,
/// ONNX): its torch name, dtype, shape and little-endian row-major bytes.
#[derive(Debug, Clone)]
#[cfg_attr(not(any(feature = "torch", feature = "onnx")), allow(dead_code))] // built by the optional readers
pub(crate) struct RawTensor {
    pub name: String,
    pub dtype: StDtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}
