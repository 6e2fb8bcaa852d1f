//! Target `npy_reader`: arbitrary bytes as a `.npy` file, through every `.npy` reader,
//! and an array that reads as an input sequence through a layer, as `recurrent forward`
//! would run it.
//!
//! The readers take a path, so the bytes go to a scratch file first: one path per
//! process and thread, under /dev/shm when it exists, removed after each input.

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use recurrent::io::npy::{self, NpyArray};
use recurrent::{Float, Gru, Rnn, RnnConfig};

/// Arrays whose step has at most this many features are run through a layer.
const MAX_RUN_FEATURES: usize = 64;

pub fn run(data: &[u8]) {
    let path = scratch_path();
    if std::fs::write(&path, data).is_err() {
        return;
    }
    check_file(&path);
    let _ = std::fs::remove_file(&path);
}

/// Where the scratch files go: /dev/shm when it exists, else the temporary folder.
pub fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// How the scratch files of process `pid` start (a process killed mid-input leaves its
/// file behind; whoever started it can remove it).
pub fn scratch_prefix(pid: u32) -> String {
    format!("recurrent-fuzz-npy-{pid}-")
}

fn scratch_path() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    scratch_dir().join(format!(
        "{}{thread}.npy",
        scratch_prefix(std::process::id())
    ))
}

/// Every `.npy` reader on the file at `path`; they must agree with each other, and an
/// array they return must be usable.
pub fn check_file(path: &Path) {
    let any = npy::read_float(path);
    let f32s = npy::read::<f32>(path);
    let f64s = npy::read::<f64>(path);
    match &any {
        Ok(NpyArray::F32(a)) => {
            let b = f32s
                .as_ref()
                .expect("read_float gave float32 but read::<f32> failed");
            assert!(same_bits(a, b), "read_float and read::<f32> differ");
            assert!(f64s.is_err(), "read::<f64> accepted a float32 file");
        }
        Ok(NpyArray::F64(a)) => {
            let b = f64s
                .as_ref()
                .expect("read_float gave float64 but read::<f64> failed");
            assert!(same_bits(a, b), "read_float and read::<f64> differ");
            assert!(f32s.is_err(), "read::<f32> accepted a float64 file");
        }
        Err(_) => {}
    }
    if let Ok(a) = f32s {
        run_as_input(&a);
    }
    if let Ok(a) = f64s {
        run_as_input(&a);
    }
    if let Ok(lengths) = npy::read_lengths(path) {
        // A 1-D file of N integers holds at least N bytes.
        let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
        assert!(
            lengths.len() as u64 <= file_len,
            "read_lengths returned more values than bytes"
        );
    }
}

fn same_bits<T: Float>(a: &ArrayD<T>, b: &ArrayD<T>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.as_f64().to_bits() == y.as_f64().to_bits())
}

/// An array of rank 2 or 3 is an unbatched or batched input sequence: runs it through a
/// two-layer RNN (the plain path, in chunks of time steps when L is long) and a
/// bidirectional GRU (the gated path), sized to its last axis.
fn run_as_input<T: Float>(a: &ArrayD<T>) {
    let rank = a.ndim();
    let Some(&features) = a.shape().last() else {
        return;
    };
    if !(2..=3).contains(&rank) || features == 0 || features > MAX_RUN_FEATURES {
        return;
    }
    let seq_len = a.shape()[0];
    let batch = (rank == 3).then(|| a.shape()[1]);
    let shape = |first: usize, width: usize| match batch {
        Some(n) => vec![first, n, width],
        None => vec![first, width],
    };
    if let Ok(rnn) = Rnn::<T>::seeded(RnnConfig::new(features, 2).num_layers(2), 0) {
        match rnn.forward(a.view(), None) {
            Ok((output, h_n)) => {
                assert_eq!(output.shape(), shape(seq_len, 2), "RNN output shape");
                assert_eq!(h_n.shape(), shape(2, 2), "RNN h_n shape");
            }
            // An empty sequence (L = 0) is torch's error; every other shape runs.
            Err(e) => assert_eq!(
                seq_len,
                0,
                "an RNN refused an input of shape {:?}: {e}",
                a.shape()
            ),
        }
    }
    if let Ok(gru) = Gru::<T>::seeded(RnnConfig::gru(features, 2).bidirectional(true), 0) {
        match gru.forward(a.view(), None) {
            Ok((output, h_n)) => {
                assert_eq!(output.shape(), shape(seq_len, 4), "GRU output shape");
                assert_eq!(h_n.shape(), shape(2, 2), "GRU h_n shape");
            }
            Err(e) => assert_eq!(
                seq_len,
                0,
                "a GRU refused an input of shape {:?}: {e}",
                a.shape()
            ),
        }
    }
}
