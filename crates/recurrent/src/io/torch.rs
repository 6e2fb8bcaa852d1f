//! `torch.save` files: a state dict (or a dict holding one) read without Python.
//! (Being written: until then a torch.save file is refused.)

use std::path::Path;

use super::safetensors::StateDict;
use crate::error::{Error, Result};

/// Whether `bytes` open like a `torch.save` file: a zip archive (torch >= 1.6), a tar
/// archive (torch < 0.1.10), or the legacy pickle stream with torch's magic number.
pub(crate) fn looks_like_torch(bytes: &[u8]) -> bool {
    const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(b"PK\x05\x06")
        || bytes.get(257..262) == Some(b"ustar")
        || bytes[..bytes.len().min(64)]
            .windows(LEGACY_MAGIC.len())
            .any(|w| w == LEGACY_MAGIC)
}

/// Reads a `torch.save` file's tensors as a state dict.
pub(crate) fn read(path: &Path, _bytes: &[u8]) -> Result<StateDict> {
    Err(Error::Format {
        path: path.to_path_buf(),
        message: "torch.save files are not read yet".to_string(),
    })
}
