//! ONNX models: the weights of their RNN / LSTM / GRU nodes read as a torch state dict,
//! and a layer written as the ONNX graph `torch.onnx.export` would write.
//!
//! # Reading
//!
//! [`crate::io::StateDict::read`] (and so [`crate::load`], `Lstm::load`, the CLI) reads an
//! ONNX model when the file's bytes are one: the recurrent nodes (`RNN`, `LSTM`, `GRU`
//! of the default domain; the opset is not checked) are found in graph order, each node one layer of a stack whose later
//! layers read the earlier's output (directly, or through the `Transpose` / `Reshape` /
//! `Squeeze` nodes torch's exporter puts between layers), and their `W`, `R`, `B`
//! (initializers or `Constant` nodes) are converted to torch's names, layout and gate
//! order, in the dtype the file stores (float32, float64, float16, bfloat16):
//!
//! | ONNX | torch |
//! |---|---|
//! | `W` `[D, G*H, I]` | `weight_ih_l{k}` (direction 1: `weight_ih_l{k}_reverse`) |
//! | `R` `[D, G*H, H]` | `weight_hh_l{k}` |
//! | `B` `[D, 2*G*H]` | `bias_ih_l{k}` (first half), `bias_hh_l{k}` (second half) |
//! | no `B` on any node | `bias=False` (zeros where only some nodes lack one) |
//! | LSTM gates i, o, f, c | i, f, g, o |
//! | GRU gates z, r, h | r, z, n |
//!
//! The options the tensors cannot show go to the state dict's metadata: an RNN's
//! `activations` (`Tanh` / `Relu`) as `nonlinearity`; `layout=1`, or torch's
//! `Transpose(perm=[1, 0, 2])` between the graph input and the first node, as
//! `batch_first=true`; a first node that reads the graph's input without them records
//! `batch_first=false`, since the graph fixes the layout (a first node fed by some other
//! operator leaves it unrecorded).
//!
//! What torch's layers cannot compute is refused with one message naming the node: a GRU
//! with `linear_before_reset=0` (ONNX's default, a different GRU: the reset gate applied
//! before the recurrent product), peepholes (an LSTM's input `P`), `clip`,
//! `input_forget=1`, `direction="reverse"` alone, activations other than torch's,
//! `hidden_size` disagreeing with the weights, nodes of different kinds, several
//! recurrent stacks that do not feed each other, and a graph without a recurrent node.
//!
//! # Writing
//!
//! [`save`] writes a layer as one ONNX node per layer (opset 14), with the graph
//! inputs, outputs and reshapes of `torch.onnx.export`; see its documentation.

#[cfg(feature = "onnx")]
mod export;
#[cfg(feature = "onnx")]
mod proto;
#[cfg(feature = "onnx")]
mod read;

#[cfg(feature = "onnx")]
pub use export::{save, stage, ExportOptions, OPSET};

use std::path::Path;

use std::collections::HashMap;

use super::raw::RawTensor;
use crate::error::Result;

/// Whether `bytes` open like an ONNX `ModelProto`: field 1 (`ir_version`, a varint, tag
/// byte `0x08`) with a one-byte value from 1 to 63, followed by the tag of another
/// `ModelProto` field (`producer_name`, `graph`, `opset_import`, ...). Safetensors and
/// torch files are told apart before this is asked; a file that starts otherwise (a
/// `ModelProto` written without `ir_version` first) is not taken for ONNX.
pub(crate) fn looks_like_onnx(bytes: &[u8]) -> bool {
    // Tags (field << 3 | wire type) of ModelProto's fields 2..=8 and 14, 20, 25: strings
    // and messages are length-delimited (2), model_version is a varint (0).
    const NEXT: [u8; 9] = [0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72, 0xa2];
    matches!(bytes, [0x08, v, next, ..] if (1..64).contains(v) && NEXT.contains(next))
}

/// Reads the recurrent nodes of an ONNX model as a state dict under torch's names (see
/// the module's documentation).
///
/// # Errors
/// [`crate::Error::Format`] naming `path`: not a valid ONNX model, no recurrent node, or
/// a node torch's layers cannot compute (the message says which and why).
#[cfg(feature = "onnx")]
pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<(Vec<RawTensor>, HashMap<String, String>)> {
    read::read(path, bytes)
}

/// Without the `onnx` feature an ONNX model is refused.
///
/// # Errors
/// Always [`crate::Error::Format`] naming `path`, saying that the feature is off.
#[cfg(not(feature = "onnx"))]
pub(crate) fn read(
    path: &Path,
    _bytes: &[u8],
) -> Result<(Vec<RawTensor>, HashMap<String, String>)> {
    Err(crate::error::Error::Format {
        path: path.to_path_buf(),
        message: "this is an ONNX model, but this build of recurrent reads none: its cargo \
                  feature `onnx` is off (build with the default features, or `--features onnx`)"
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::looks_like_onnx;

    /// Built without the `onnx` feature, an ONNX model is refused, saying so.
    #[cfg(not(feature = "onnx"))]
    #[test]
    fn without_the_feature_an_onnx_model_is_refused_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, [0x08, 0x07, 0x3a, 0x00]).unwrap();
        let err = crate::io::StateDict::read(&path).unwrap_err().to_string();
        assert!(err.contains("feature `onnx` is off"), "{err}");
    }

    #[test]
    fn onnx_start_is_told_apart_from_other_files() {
        // ir_version 8, then producer_name.
        assert!(looks_like_onnx(&[0x08, 0x08, 0x12, 0x07]));
        // ir_version 7, then graph.
        assert!(looks_like_onnx(&[0x08, 0x07, 0x3a, 0x00]));
        // A safetensors header length of 0x108 bytes: 0x08 0x01 0x00 ...
        assert!(!looks_like_onnx(&[
            0x08, 0x01, 0x00, 0x00, 0, 0, 0, 0, b'{'
        ]));
        assert!(!looks_like_onnx(b"PK\x03\x04"));
        assert!(!looks_like_onnx(&[0x08]));
        assert!(!looks_like_onnx(&[]));
        assert!(!looks_like_onnx(&[0x08, 0x00, 0x12]));
    }
}
