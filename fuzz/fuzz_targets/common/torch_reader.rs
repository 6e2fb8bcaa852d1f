//! Target `torch_reader`: arbitrary bytes as a `torch.save` file (zip or legacy
//! container; the seeds are real torch's), read through `StateDict::read` as `recurrent
//! run` reads a model, then every public way of reading what loaded
//! ([`super::safetensors_reader::exercise`]). The pickle is scanned for the globals it
//! names before anything is read; no input may panic, allocate without bound, or run.
//!
//! `StateDict::read` takes a path, so the bytes go to a scratch file first (one path per
//! process and thread, beside the npy target's, so that the replay test's clean-up
//! finds a file a killed child left).

use std::path::PathBuf;

use recurrent::io::safetensors::StateDict;

pub fn run(data: &[u8]) {
    let path = scratch_path();
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(dict) = StateDict::read(&path) {
        super::safetensors_reader::exercise(&dict);
    }
    let _ = std::fs::remove_file(&path);
}

fn scratch_path() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    super::npy_reader::scratch_dir().join(format!(
        "{}{thread}-torch.pt",
        super::npy_reader::scratch_prefix(std::process::id())
    ))
}
