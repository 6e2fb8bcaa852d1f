//! Every file reader, through the public API, on arbitrary bytes and on mutated valid
//! files: no panic, and bounded memory.
//!
//! Memory: this test binary's global allocator refuses any single allocation above
//! 512 MiB (see fuzz/fuzz_targets/common/bounded_alloc.rs). A reader that sizes a buffer
//! from what a header claims then aborts the binary, printing the refused size: that is
//! a failure of this test, however much memory the machine has.
//!
//! The readers are driven by the fuzz targets' bodies (`npy_reader::run`,
//! `safetensors_reader::run`), which also check that the readers agree with each other
//! and that what they return is usable.

use crate::fuzz_common;

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use recurrent::io::npy;
use recurrent::io::safetensors::StateDict;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!seeds.is_empty(), "no seed files in {}", dir.display());
    seeds
}

/// One byte-level edit of a file.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: Index, bit: u8 },
    Set { at: Index, byte: u8 },
    Insert { at: Index, bytes: Vec<u8> },
    Delete { at: Index, len: usize },
    Truncate { at: Index },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (
            any::<Index>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<Index>(), 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<Index>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let len = bytes.len();
        match m {
            Mutation::Flip { at, bit } => bytes[at.index(len)] ^= 1 << bit,
            Mutation::Set { at, byte } => bytes[at.index(len)] = *byte,
            Mutation::Insert { at, bytes: new } => {
                let i = at.index(len + 1);
                bytes.splice(i..i, new.iter().copied());
            }
            Mutation::Delete { at, len: n } => {
                let i = at.index(len);
                bytes.drain(i..(i + n).min(len));
            }
            Mutation::Truncate { at } => bytes.truncate(at.index(len)),
        }
    }
    bytes
}

/// Factors a header's numbers are multiplied by: past any file, past u32, near u64.
const FACTORS: [u64; 4] = [1_000_000_000, 1_000_000_000_000, 1 << 32, 1 << 62];

/// A `.npy` file split into its header text and data.
fn npy_parts(file: &[u8]) -> Option<(u8, String, Vec<u8>)> {
    let version = *file.get(6)?;
    let (len, start) = if version == 1 {
        (usize::from(u16::from_le_bytes([file[8], file[9]])), 10)
    } else {
        (
            u32::from_le_bytes(file.get(8..12)?.try_into().ok()?) as usize,
            12,
        )
    };
    let header = String::from_utf8(file.get(start..start + len)?.to_vec()).ok()?;
    Some((version, header, file[start + len..].to_vec()))
}

/// A `.npy` file from a header text (re-padded as numpy pads it) and data.
fn npy_file(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let text = header.trim_end();
    let prefix = if version == 1 { 10 } else { 12 };
    let pad = (64 - (prefix + text.len() + 1) % 64) % 64;
    let text = format!("{text}{}\n", " ".repeat(pad));
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The header with the shape's numbers multiplied by `factor` (all of them, or only the
/// `which`-th); the new dimensions.
fn inflate_npy_shape(
    header: &str,
    factor: u64,
    which: Option<Index>,
) -> Option<(String, Vec<u64>)> {
    let start = header.find("'shape'")?;
    let open = start + header[start..].find('(')?;
    let close = open + header[open..].find(')')?;
    let dims: Vec<u64> = header[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    if dims.is_empty() {
        return None;
    }
    let chosen = which.map(|w| w.index(dims.len()));
    let dims: Vec<u64> = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if chosen.is_none_or(|c| c == i) {
                d.saturating_mul(factor)
            } else {
                d
            }
        })
        .collect();
    let text: Vec<String> = dims.iter().map(u64::to_string).collect();
    let tuple = if text.len() == 1 {
        format!("{},", text[0])
    } else {
        text.join(", ")
    };
    Some((
        format!("{}{tuple}{}", &header[..=open], &header[close..]),
        dims,
    ))
}

fn item_size(header: &str) -> u64 {
    if ["f8", "i8", "u8", "c8"].iter().any(|d| header.contains(d)) {
        8
    } else {
        4
    }
}

/// A safetensors file as its JSON header and data.
fn safetensors_parts(file: &[u8]) -> Option<(serde_json::Value, Vec<u8>)> {
    let n = u64::from_le_bytes(file.get(..8)?.try_into().ok()?) as usize;
    let header = serde_json::from_slice(file.get(8..8 + n)?).ok()?;
    Some((header, file[8 + n..].to_vec()))
}

fn safetensors_file(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// How a safetensors header entry is inflated.
#[derive(Debug, Clone)]
enum Inflate {
    /// One shape dimension (or all) times the factor.
    Shape(Option<Index>),
    /// The end offset times the factor.
    End,
    /// Both offsets times the factor.
    Offsets,
}

fn npy_path_of(name: &str) -> std::path::PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!(
        "recurrent-readers-bytes-{}-{thread}-{name}.npy",
        std::process::id()
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12000, ..ProptestConfig::default() })]

    #[test]
    fn npy_readers_take_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz_common::npy_reader::run(&bytes);
    }

    #[test]
    fn npy_readers_take_arbitrary_headers(
        version in 1u8..=3,
        header in "\\{[ -~]{0,120}\\}",
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        fuzz_common::npy_reader::run(&npy_file(version, &header, &data));
    }

    #[test]
    fn npy_readers_take_mutated_files(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let seeds = seeds("npy_reader");
        let file = mutate(seed.get(&seeds).clone(), &mutations);
        fuzz_common::npy_reader::run(&file);
    }

    /// Shape numbers multiplied by 10^9 and more, with the data left as it was: every reader
    /// must refuse a shape that needs more data than the file has, in bounded memory.
    #[test]
    fn npy_readers_refuse_inflated_shapes(
        seed in any::<Index>(),
        factor in proptest::sample::select(FACTORS.to_vec()),
        which in proptest::option::of(any::<Index>()),
    ) {
        let seeds = seeds("npy_reader");
        let Some((version, header, data)) = npy_parts(seed.get(&seeds).as_slice()) else {
            return Ok(());
        };
        let Some((header, dims)) = inflate_npy_shape(&header, factor, which) else {
            return Ok(());
        };
        let file = npy_file(version, &header, &data);
        fuzz_common::npy_reader::run(&file);
        let needed = dims.iter().try_fold(item_size(&header), |a, &d| a.checked_mul(d));
        if needed.is_none_or(|n| n > data.len() as u64) {
            let path = npy_path_of("inflated");
            std::fs::write(&path, &file).expect("write a temporary file");
            let any = npy::read_float(&path).map(|a| a.shape().to_vec());
            let f32s = npy::read::<f32>(&path).map(|a| a.shape().to_vec());
            let f64s = npy::read::<f64>(&path).map(|a| a.shape().to_vec());
            let _ = std::fs::remove_file(&path);
            prop_assert!(any.is_err(), "read_float accepted {header:?} with {} data bytes: {any:?}", data.len());
            prop_assert!(f32s.is_err(), "read::<f32> accepted {header:?}: {f32s:?}");
            prop_assert!(f64s.is_err(), "read::<f64> accepted {header:?}: {f64s:?}");
        }
    }

    /// Real torch.save files (zip and legacy), mutated. The zip container's checksums
    /// catch most edits of a zip file; the legacy one's pickles have none, so the global
    /// scan and the pickle reader see every edit.
    #[cfg(feature = "torch")]
    #[test]
    fn torch_reader_takes_mutated_files(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let seeds = seeds("torch_reader");
        let file = mutate(seed.get(&seeds).clone(), &mutations);
        fuzz_common::torch_reader::run(&file);
    }

    #[test]
    fn safetensors_reader_takes_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz_common::safetensors_reader::run(&bytes);
    }

    #[test]
    fn safetensors_reader_takes_mutated_files(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let seeds = seeds("safetensors_reader");
        let file = mutate(seed.get(&seeds).clone(), &mutations);
        fuzz_common::safetensors_reader::run(&file);
    }

    /// A tensor's shape or offsets multiplied by 10^9 and more: the header no longer
    /// matches the data, so the file must be refused, in bounded memory.
    #[test]
    fn safetensors_reader_refuses_inflated_headers(
        seed in any::<Index>(),
        tensor in any::<Index>(),
        how in prop_oneof![
            proptest::option::of(any::<Index>()).prop_map(Inflate::Shape),
            Just(Inflate::End),
            Just(Inflate::Offsets),
        ],
        factor in proptest::sample::select(FACTORS.to_vec()),
    ) {
        let seeds = seeds("safetensors_reader");
        let Some((mut header, data)) = safetensors_parts(seed.get(&seeds).as_slice()) else {
            return Ok(());
        };
        let names: Vec<String> = header
            .as_object()
            .map(|m| m.keys().filter(|k| *k != "__metadata__").cloned().collect())
            .unwrap_or_default();
        if names.is_empty() {
            return Ok(());
        }
        let name = tensor.get(&names).clone();
        let entry = &mut header[&name];
        let scale = |v: &mut serde_json::Value| {
            if let Some(n) = v.as_u64() {
                *v = n.saturating_mul(factor).into();
            }
        };
        // What validation sees: the element count and the offsets.
        let footprint = |entry: &serde_json::Value| {
            let count = entry["shape"].as_array().and_then(|dims| {
                dims.iter().try_fold(1u64, |a, d| a.checked_mul(d.as_u64()?))
            });
            (count, entry["data_offsets"].clone())
        };
        let before = footprint(entry);
        match &how {
            Inflate::Shape(which) => {
                if let Some(dims) = entry["shape"].as_array_mut() {
                    let chosen = which.as_ref().map(|w| w.index(dims.len().max(1)));
                    for (i, d) in dims.iter_mut().enumerate() {
                        if chosen.is_none_or(|c| c == i) {
                            scale(d);
                        }
                    }
                }
            }
            Inflate::End => scale(&mut entry["data_offsets"][1]),
            Inflate::Offsets => {
                scale(&mut entry["data_offsets"][0]);
                scale(&mut entry["data_offsets"][1]);
            }
        }
        let changed = footprint(entry) != before;
        let file = safetensors_file(&header, &data);
        fuzz_common::safetensors_reader::run(&file);
        if changed {
            let parsed = StateDict::from_bytes("inflated.safetensors".into(), file);
            prop_assert!(parsed.is_err(), "from_bytes accepted '{name}' inflated by {how:?} x{factor}");
        }
    }
}
