//! Replays every committed fuzz input through the fuzz targets' own bodies, on stable
//! Rust, in plain `cargo test`.
//!
//! - `replay_<target>`: every file under `fuzz/seeds/<target>/` and
//!   `fuzz/regressions/<target>/` goes through `fuzz/fuzz_targets/common/<target>.rs`, the
//!   code libFuzzer runs (loaded here with `#[path]`, not copied). Each file runs in a
//!   child process (this test binary again, filtered to the same test), so an abort or a
//!   hang fails that file alone and every other file still reports: a panic, an abort
//!   (an allocation above 512 MiB is refused, see `bounded_alloc.rs`) or 20 s without
//!   finishing is a failure, listed per file.
//! - `known_*`: the faults known before fuzzing, each with the typed error the library
//!   should return, not merely "no panic".
//!
//! Adding a regression: put the crashing input (small) in `fuzz/regressions/<target>/`;
//! `replay_<target>` picks it up.

use crate::fuzz_common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use recurrent::io::{npy, safetensors};
use recurrent::{Error, Gru, Rnn, RnnConfig};

/// Set in a child process: the one input file it runs.
const CHILD_FILE: &str = "RECURRENT_FUZZ_REPLAY_FILE";
/// A child still running after this long has hung.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);

fn fuzz_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    dir.canonicalize().unwrap_or(dir)
}

/// The seed and regression files of `target`, sorted (README files excepted).
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let readme = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("README"));
            if path.is_file() && !readme {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn regression(target: &str, name: &str) -> PathBuf {
    fuzz_dir().join("regressions").join(target).join(name)
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `check` on `file` in a child process and returns why it failed, if it did. In the
/// child itself (CHILD_FILE set), runs `check` when `file` is the child's file.
fn isolated(test: &str, file: &Path, check: fn(&Path)) -> Option<String> {
    if let Some(child_file) = std::env::var_os(CHILD_FILE) {
        if Path::new(&child_file) == file {
            check(file);
        }
        return None;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // Through RECURRENT_TEST_RUNNER when set (qemu-aarch64 in scripts/test_aarch64.sh).
    let mut command = crate::runner::command_for(&exe);
    // The test's name as the harness knows it in this binary (`fuzz_replay::...`).
    let name = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    };
    let mut child = command
        .args([
            name.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_FILE, file)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test binary");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // A child that aborted or was killed leaves its npy_reader scratch file behind.
    let prefix = fuzz_common::npy_reader::scratch_prefix(child.id());
    let dir = fuzz_common::npy_reader::scratch_dir();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    // The lines that say what happened, then the last few.
    let summary = |text: &str| {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut picked: Vec<&str> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("panicked at") {
                picked.extend(lines[i..].iter().take(3));
            } else if line.contains("bounded allocator") || line.contains("memory allocation of") {
                picked.push(line);
            }
        }
        if picked.is_empty() {
            picked = lines[lines.len().saturating_sub(6)..].to_vec();
        }
        picked.join("\n    ")
    };
    let tail = |text: &str| {
        format!(
            "{}\n    (rerun alone: {CHILD_FILE}={} RUST_BACKTRACE=1 cargo test -p recurrent --test bytes {name} -- --exact --nocapture)",
            summary(text),
            file.display()
        )
    };
    match status {
        None => Some(format!(
            "still running after {CHILD_TIMEOUT:?} (killed)\n    {}",
            tail(&format!("{stderr}\n{stdout}"))
        )),
        Some(s) if s.success() && stdout.contains("1 passed") => None,
        Some(s) => {
            #[cfg(unix)]
            let how = {
                use std::os::unix::process::ExitStatusExt;
                match s.signal() {
                    Some(6) => "aborted (SIGABRT)".to_string(),
                    Some(sig) => format!("killed by signal {sig}"),
                    None => format!("failed ({s})"),
                }
            };
            #[cfg(not(unix))]
            let how = format!("failed ({s})");
            Some(format!(
                "{how}\n    {}",
                tail(&format!("{stderr}\n{stdout}"))
            ))
        }
    }
}

/// Every input of `target` through `check`, each in its own process; one report.
fn replay(test: &str, target: &str, check: fn(&Path)) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no seeds or regressions for fuzz target {target} under {}",
        fuzz_dir().display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| isolated(test, f, check).map(|why| format!("{}: {why}", f.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} inputs of fuzz target {target} fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn replay_safetensors_reader() {
    replay("replay_safetensors_reader", "safetensors_reader", |p| {
        fuzz_common::safetensors_reader::run(&bytes(p))
    });
}

#[test]
fn replay_npy_reader() {
    replay("replay_npy_reader", "npy_reader", |p| {
        fuzz_common::npy_reader::run(&bytes(p))
    });
}

#[test]
fn replay_state_dict_loader() {
    replay("replay_state_dict_loader", "state_dict_loader", |p| {
        fuzz_common::state_dict_loader::run(&bytes(p))
    });
}

#[cfg(feature = "torch")]
#[test]
fn replay_torch_reader() {
    replay("replay_torch_reader", "torch_reader", |p| {
        fuzz_common::torch_reader::run(&bytes(p))
    });
}

#[test]
fn replay_differential() {
    replay("replay_differential", "differential", |p| {
        fuzz_common::differential::run(&bytes(p))
    });
}

/// Committed inputs stay small: a crash input is minimised (`cargo fuzz tmin`) first.
#[test]
fn fuzz_inputs_are_small() {
    for target in [
        "safetensors_reader",
        "npy_reader",
        "state_dict_loader",
        "differential",
    ] {
        for file in inputs(target) {
            let len = std::fs::metadata(&file).map_or(0, |m| m.len());
            assert!(
                len <= 64 << 10,
                "{} is {len} bytes; keep fuzz inputs under 64 KiB",
                file.display()
            );
        }
    }
}

/// (a) A header whose shape key the size check does not read (double quotes, an escape,
/// or a repeated key) declares 400e9 float32 values (1.6 TB) in a 164-byte file: every
/// reader must refuse it as a format error before allocating for it.
#[test]
fn known_npy_hidden_shape_key_declaring_terabytes_is_a_format_error() {
    let test = "known_npy_hidden_shape_key_declaring_terabytes_is_a_format_error";
    let check: fn(&Path) = |path| {
        let any = npy::read_float(path).map(|a| a.shape().to_vec());
        assert!(
            matches!(any, Err(Error::Format { .. })),
            "read_float: {any:?}"
        );
        let f32s = npy::read::<f32>(path).map(|a| a.shape().to_vec());
        assert!(
            matches!(f32s, Err(Error::Format { .. })),
            "read::<f32>: {f32s:?}"
        );
        let f64s = npy::read::<f64>(path).map(|a| a.shape().to_vec());
        assert!(f64s.is_err(), "read::<f64>: {f64s:?}");
        let lengths = npy::read_lengths(path).map(|l| l.len());
        assert!(lengths.is_err(), "read_lengths: {lengths:?}");
    };
    let failures: Vec<String> = [
        "known-shape-double-quoted-1p6tb.npy",
        "known-shape-escaped-key-1p6tb.npy",
        "known-shape-repeated-key-1p6tb.npy",
    ]
    .iter()
    .filter_map(|name| {
        let file = regression("npy_reader", name);
        isolated(test, &file, check).map(|why| format!("{name}: {why}"))
    })
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (b) Shape (10^12, 0, 3): no data, so reading it is fine (an empty array of that shape,
/// or a typed error). Run as the input of a two-layer RNN (like examples/data's model;
/// a long sequence runs in chunks of time steps) and of a bidirectional GRU, it must
/// finish promptly (the child is killed after 20 s) with torch's shapes or a typed error.
#[test]
fn known_npy_empty_batch_of_1e12_steps_reads_and_runs_promptly() {
    let test = "known_npy_empty_batch_of_1e12_steps_reads_and_runs_promptly";
    let check: fn(&Path) = |path| {
        let Ok(input) = npy::read::<f32>(path) else {
            return;
        };
        let steps = 1_000_000_000_000usize;
        assert_eq!(input.shape(), [steps, 0, 3]);
        let config = RnnConfig::new(3, 2).num_layers(2);
        let rnn = Rnn::<f32>::seeded(config, 0).expect("a valid config");
        if let Ok((output, h_n)) = rnn.forward(input.view(), None) {
            assert_eq!(output.shape(), [steps, 0, 2], "RNN output");
            assert_eq!(h_n.shape(), [2, 0, 2], "RNN h_n");
        }
        let config = RnnConfig::gru(3, 2).bidirectional(true);
        let gru = Gru::<f32>::seeded(config, 0).expect("a valid config");
        if let Ok((output, h_n)) = gru.forward(input.view(), None) {
            assert_eq!(output.shape(), [steps, 0, 4], "GRU output");
            assert_eq!(h_n.shape(), [2, 0, 2], "GRU h_n");
        }
    };
    let file = regression("npy_reader", "known-shape-1e12x0x3.npy");
    if let Some(why) = isolated(test, &file, check) {
        panic!("{}: {why}", file.display());
    }
}

/// (c) A header that declares `weight_hh_l0` twice (float64 (1, 2), then float32 (2, 2),
/// over the same bytes): which one a reader keeps is arbitrary, so the file is malformed
/// and reading it is a format error naming the key.
#[test]
fn known_safetensors_duplicate_key_is_a_format_error() {
    let path = regression("safetensors_reader", "known-duplicate-key.safetensors");
    let parsed = safetensors::StateDict::from_bytes(path.clone(), bytes(&path));
    match parsed {
        Err(Error::Format { message, .. }) => assert!(
            message.contains("weight_hh_l0"),
            "the error does not name the duplicated key: {message}"
        ),
        Err(e) => panic!("expected a format error, got {e:?}"),
        Ok(dict) => panic!(
            "a header with 'weight_hh_l0' twice was accepted, keeping shape {:?}",
            dict.shape("weight_hh_l0")
        ),
    }
    let loaded = recurrent::load::<f32>(&path, None).map(|r| r.config().to_string());
    assert!(loaded.is_err(), "load accepted it: {loaded:?}");
}

/// (d) An RNN's parameters plus `weight_ih_l18446744073709551616`, torch's name for a
/// layer no usize indexes: a parameter the configuration lacks, so loading fails (as
/// torch's strict load_state_dict does) with an error naming it, rather than ignoring it.
#[test]
fn known_safetensors_layer_index_past_usize_is_an_error() {
    let path = regression("safetensors_reader", "known-layer-index-2pow64.safetensors");
    let name = "weight_ih_l18446744073709551616";
    let dict = safetensors::StateDict::from_bytes(path.clone(), bytes(&path))
        .expect("the file itself is valid safetensors");
    let config = dict.infer_config("").map(|c| c.to_string());
    match config {
        Err(e) => assert!(
            e.to_string().contains(name),
            "the error does not name '{name}': {e}"
        ),
        Ok(c) => panic!("infer_config ignored '{name}' and inferred {c}"),
    }
    let loaded = recurrent::load::<f32>(&path, None).map(|r| r.config().to_string());
    assert!(loaded.is_err(), "load accepted it: {loaded:?}");
}
