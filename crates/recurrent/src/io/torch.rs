//! `torch.save` files: a state dict, or a dict holding one (`{"model": sd, "optimizer":
//! ..., "epoch": 3}`), read without Python and without running any of the file's code.
//!
//! Both containers `torch.save` writes are read: the zip archive of torch >= 1.6 (the
//! default) and the legacy pickle stream (`_use_new_zipfile_serialization=False`), with
//! float16, bfloat16, float32 and float64 storages and tensors that are views into a
//! shared storage (offsets, strides). The tensors are read with the `pytorch-reader`
//! crate (the reader behind burn's PyTorch import); nested dictionaries give dotted names
//! (`model.weight_ih_l0`), which the prefix detection then finds.
//!
//! A pickle is a program: its `GLOBAL` opcodes name Python callables that `REDUCE` calls.
//! Before anything is read, every global the file names is checked against the ones
//! torch itself needs to rebuild tensors and plain containers (what
//! `torch.load(weights_only=True)` accepts); a file naming any other (`os.system`, a
//! whole `torch.nn.Module` saved with `torch.save(model)`, a class of the user's) is
//! refused with [`Error::PickleGlobal`], naming it. Nothing is ever executed either way:
//! the check makes the refusal explicit instead of silently skipping what the file held.

use std::path::Path;

use super::raw::{FileFormat, RawTensor};
use crate::error::{Error, Result};

/// The legacy format's magic number, 0x1950a86a20f9469cfc6c, as a pickle `LONG1` holds
/// it (little-endian).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The largest pickle read for the global scan (pytorch-reader's own limit): a state
/// dict's pickle is a few kilobytes per tensor.
const MAX_PICKLE_SIZE: u64 = 100 << 20;

/// Whether `bytes` open like a `torch.save` file: a zip archive (torch >= 1.6), a tar
/// archive (torch < 0.1.10), or the legacy pickle stream with torch's magic number.
pub(crate) fn looks_like_torch(bytes: &[u8]) -> bool {
    is_zip(bytes) || is_tar(bytes) || is_legacy(bytes)
}

fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

fn is_tar(bytes: &[u8]) -> bool {
    bytes.get(257..262) == Some(b"ustar")
}

fn is_legacy(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(64)]
        .windows(LEGACY_MAGIC.len())
        .any(|w| w == LEGACY_MAGIC)
}

/// The globals a `torch.save`d state dict (or checkpoint dict of plain values, optimizer
/// state included) may name: torch's tensor and storage rebuilders, its dtypes and
/// storage classes, and the containers pickle itself needs. The same set as
/// `torch.load(weights_only=True)`'s, less what a state dict never holds.
fn allowed_global(module: &str, name: &str) -> bool {
    const TORCH_UTILS: [&str; 5] = [
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    ];
    const TORCH_DTYPES: [&str; 22] = [
        "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long",
        "int32", "int", "int16", "short", "int8", "uint8", "uint16", "uint32", "uint64", "bool",
        "Size", "device", "Tensor",
    ];
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => TORCH_UTILS.contains(&name),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        "torch" => {
            TORCH_DTYPES.contains(&name)
                || (name.ends_with("Storage")
                    && name[..name.len() - "Storage".len()]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric()))
        }
        "torch.storage" => name == "UntypedStorage",
        "builtins" | "__builtin__" => {
            ["set", "frozenset", "bytearray", "slice", "complex"].contains(&name)
        }
        "_codecs" => name == "encode",
        _ => false,
    }
}

/// Reads a `torch.save` file's tensors (nested dictionaries' keys joined with `.`),
/// after checking that its pickle names no global beyond [`allowed_global`]'s.
#[cfg(feature = "torch")]
pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<(FileFormat, Vec<RawTensor>)> {
    use pytorch_reader::{DType, PytorchReader};
    use safetensors::tensor::Dtype as StDtype;

    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let format = if is_zip(bytes) {
        FileFormat::TorchZip
    } else {
        FileFormat::TorchLegacy
    };
    check_globals(path, bytes)?;
    let reader = PytorchReader::new(path)
        .map_err(|e| bad(format!("not a readable torch.save file ({e})")))?;
    let mut tensors = Vec::with_capacity(reader.len());
    for (name, tensor) in reader.tensors() {
        let dtype = match tensor.dtype() {
            DType::F64 => StDtype::F64,
            DType::F32 => StDtype::F32,
            DType::F16 => StDtype::F16,
            DType::BF16 => StDtype::BF16,
            DType::I64 => StDtype::I64,
            DType::I32 => StDtype::I32,
            DType::I16 => StDtype::I16,
            DType::I8 => StDtype::I8,
            DType::U64 => StDtype::U64,
            DType::U32 => StDtype::U32,
            DType::U16 => StDtype::U16,
            DType::U8 => StDtype::U8,
            DType::Bool => StDtype::BOOL,
        };
        let data = tensor
            .read()
            .map_err(|e| bad(format!("cannot read tensor '{name}' ({e})")))?;
        // pytorch-reader gives native-endian bytes; the index holds little-endian ones.
        let data = if cfg!(target_endian = "big") {
            let size = tensor.dtype().size();
            data.chunks_exact(size)
                .flat_map(|c| c.iter().rev().copied().collect::<Vec<u8>>())
                .collect()
        } else {
            data
        };
        tensors.push(RawTensor {
            name: name.clone(),
            dtype,
            shape: tensor.shape().to_vec(),
            bytes: data,
        });
    }
    Ok((format, tensors))
}

/// Without the `torch` feature a `torch.save` file is refused, saying so.
#[cfg(not(feature = "torch"))]
pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<(FileFormat, Vec<RawTensor>)> {
    check_globals(path, bytes)?;
    Err(Error::Format {
        path: path.to_path_buf(),
        message: "a torch.save file, which this build of recurrent does not read (it was built without the `torch` feature); build with it, or save the state dict with safetensors.torch.save_file".to_string(),
    })
}

/// Refuses a file whose pickle names a global [`allowed_global`] does not allow. The
/// zip container's pickle is `*/data.pkl`; the legacy container is five pickles in a row
/// (magic number, protocol version, system info, the object, the storage keys).
fn check_globals(path: &Path, bytes: &[u8]) -> Result<()> {
    let refuse = |global: String| Error::PickleGlobal {
        path: path.to_path_buf(),
        global,
    };
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    if is_zip(bytes) {
        let pickle = zip_data_pkl(bytes).map_err(bad)?;
        scan_pickle(&pickle, 0)
            .map_err(bad)?
            .0
            .into_iter()
            .find(|(m, n)| !allowed_global(m, n))
            .map_or(Ok(()), |(m, n)| Err(refuse(format!("{m}.{n}"))))
    } else if is_legacy(bytes) {
        let mut at = 0;
        for _ in 0..5 {
            let (globals, end) = scan_pickle(bytes, at).map_err(bad)?;
            if let Some((m, n)) = globals.into_iter().find(|(m, n)| !allowed_global(m, n)) {
                return Err(refuse(format!("{m}.{n}")));
            }
            at = end;
        }
        Ok(())
    } else {
        // The tar container of torch < 0.1.10: pytorch-reader keeps what it does not
        // interpret opaque, and nothing is run.
        Ok(())
    }
}

/// The bytes of the zip archive's `data.pkl` (torch writes `<name>/data.pkl`).
fn zip_data_pkl(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable torch.save file (zip archive: {e})"))?;
    let name = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(String::len)
        .ok_or_else(|| {
            "not a torch.save file: the zip archive holds no data.pkl (the pickle that says which tensors it holds)".to_string()
        })?;
    let mut entry = archive
        .by_name(&name)
        .map_err(|e| format!("cannot read {name} in the zip archive ({e})"))?;
    let mut out = Vec::new();
    entry
        .by_ref()
        .take(MAX_PICKLE_SIZE)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read {name} in the zip archive ({e})"))?;
    Ok(out)
}

/// Walks one pickle starting at `start` without running it, and returns every global it
/// names (`GLOBAL`, `INST`, `STACK_GLOBAL`, as `(module, name)`) and the offset just past
/// its `STOP`. Opcodes are those of pickle protocols 0 to 5; the extension registry
/// (`EXT1`/`EXT2`/`EXT4`) names globals indirectly and is refused, as is a `STACK_GLOBAL`
/// whose module and name are not strings pushed just before it.
fn scan_pickle(
    bytes: &[u8],
    start: usize,
) -> std::result::Result<(Vec<(String, String)>, usize), String> {
    use std::collections::HashMap;

    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
            let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
            let end =
                end.ok_or_else(|| "the pickle ends in the middle of an opcode".to_string())?;
            let out = &self.bytes[self.at..end];
            self.at = end;
            Ok(out)
        }
        fn line(&mut self) -> std::result::Result<&'a [u8], String> {
            let rest = self.bytes.get(self.at..).unwrap_or_default();
            let n = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| "the pickle ends in the middle of a line".to_string())?;
            let out = self.take(n)?;
            self.at += 1;
            Ok(out)
        }
        fn len(&mut self, width: usize) -> std::result::Result<usize, String> {
            let raw = self.take(width)?;
            let mut le = [0u8; 8];
            le[..width].copy_from_slice(raw);
            usize::try_from(u64::from_le_bytes(le))
                .map_err(|_| "the pickle holds a length this machine cannot address".to_string())
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let mut c = Cursor { bytes, at: start };
    let mut globals = Vec::new();
    // What each push put on the stack, as far as STACK_GLOBAL needs: the string, or
    // None for anything else. Memoised strings are kept for BINGET and friends.
    let mut recent: Vec<Option<String>> = Vec::new();
    let mut memo: HashMap<usize, Option<String>> = HashMap::new();
    let push = |recent: &mut Vec<Option<String>>, v: Option<String>| {
        recent.push(v);
        if recent.len() > 8 {
            recent.remove(0);
        }
    };
    loop {
        let op = c.take(1)?[0];
        match op {
            b'.' => return Ok((globals, c.at)),
            // No argument.
            b'(' | b'0' | b'1' | b'2' | b'N' | b'Q' | b'R' | b'a' | b'b' | b'd' | b'}'
            | b'e' | b'l' | b']' | b'o' | b's' | b't' | b')' | b'u' | 0x81 | 0x85 | 0x86
            | 0x87 | 0x88 | 0x89 | 0x8f | 0x90 | 0x91 | 0x92 | 0x97 | 0x98 => {
                push(&mut recent, None)
            }
            // One line of text.
            b'F' | b'I' | b'L' | b'P' | b'S' => {
                c.line()?;
                push(&mut recent, None);
            }
            b'V' => {
                let s = text(c.line()?);
                push(&mut recent, Some(s));
            }
            b'g' => {
                let i = text(c.line()?).parse::<usize>().ok();
                let v = i.and_then(|i| memo.get(&i).cloned().flatten());
                push(&mut recent, v);
            }
            b'p' => {
                if let Ok(i) = text(c.line()?).parse::<usize>() {
                    memo.insert(i, recent.last().cloned().flatten());
                }
            }
            b'c' | b'i' => {
                let module = text(c.line()?);
                let name = text(c.line()?);
                globals.push((module, name));
                push(&mut recent, None);
            }
            0x93 => {
                let n = recent.len();
                match (n >= 2).then(|| (recent[n - 2].clone(), recent[n - 1].clone())) {
                    Some((Some(module), Some(name))) => globals.push((module, name)),
                    _ => return Err("the pickle names a global this reader cannot read the name of (STACK_GLOBAL)".to_string()),
                }
                push(&mut recent, None);
            }
            0x82..=0x84 => {
                return Err("the pickle names a global through the extension registry (EXT opcodes), which torch.save never writes".to_string())
            }
            // Fixed-size arguments.
            b'K' | b'h' | b'q' | 0x80 => {
                let arg = c.take(1)?[0] as usize;
                match op {
                    b'h' => push(&mut recent, memo.get(&arg).cloned().flatten()),
                    b'q' => {
                        memo.insert(arg, recent.last().cloned().flatten());
                    }
                    b'K' => push(&mut recent, None),
                    _ => {}
                }
            }
            b'M' => {
                c.take(2)?;
                push(&mut recent, None);
            }
            b'J' | b'j' | b'r' => {
                let arg = c.len(4)?;
                match op {
                    b'j' => push(&mut recent, memo.get(&arg).cloned().flatten()),
                    b'r' => {
                        memo.insert(arg, recent.last().cloned().flatten());
                    }
                    _ => push(&mut recent, None),
                }
            }
            b'G' => {
                c.take(8)?;
                push(&mut recent, None);
            }
            0x95 => {
                c.take(8)?; // FRAME: a length only
            }
            0x94 => {
                memo.insert(memo.len(), recent.last().cloned().flatten());
            }
            // Length-prefixed data.
            b'T' | b'B' | b'X' | b'U' | b'C' | 0x8a | 0x8b | 0x8c | 0x8d | 0x8e | 0x96 => {
                let width = match op {
                    b'U' | b'C' | 0x8a | 0x8c => 1,
                    b'T' | b'B' | b'X' | 0x8b => 4,
                    _ => 8,
                };
                let n = c.len(width)?;
                let data = c.take(n)?;
                let is_str = matches!(op, b'X' | 0x8c | 0x8d);
                push(&mut recent, is_str.then(|| text(data)));
            }
            other => return Err(format!("the pickle holds byte 0x{other:02x}, which is no pickle opcode")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_reads_each_way_a_pickle_names_a_global() {
        // protocol 2: GLOBAL 'posix system', then REDUCE and STOP.
        let p2 = b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let (globals, end) = scan_pickle(p2, 0).unwrap();
        assert_eq!(globals, [("posix".to_string(), "system".to_string())]);
        assert_eq!(end, p2.len());
        // protocol 4: STACK_GLOBAL of two memoised short strings, one fetched back.
        let p4 = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94h\x00.";
        let (globals, _) = scan_pickle(p4, 0).unwrap();
        assert_eq!(globals, [("posix".to_string(), "system".to_string())]);
        // Truncated: an error, not a panic.
        assert!(scan_pickle(&p2[..5], 0).is_err());
        assert!(scan_pickle(b"\xff", 0).is_err());
        assert!(allowed_global("torch._utils", "_rebuild_tensor_v2"));
        assert!(allowed_global("torch", "BFloat16Storage"));
        assert!(!allowed_global("torch.nn.modules.rnn", "LSTM"));
        assert!(!allowed_global("posix", "system"));
        assert!(!allowed_global("torch", "load"));
    }
}
