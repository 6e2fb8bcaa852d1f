//! The library's tests, as one test binary: one link instead of one per file, which
//! is most of `cargo test`'s time on a small machine. Each module is one subject; tests
//! that change process-wide settings (the helper-thread wait, busy thread pools) live
//! in `tests/serial/`, and the tests that install a bounded global allocator (the fuzz
//! replays and arbitrary bytes through the readers) in `tests/bytes/`.
//!
//! The whole suite runs on the kernel path `RECURRENT_ISA` names (`avx512`, `avx2`,
//! `portable`; unset: the best this CPU has): `RECURRENT_ISA=avx2 cargo test
//! --workspace` and `RECURRENT_ISA=portable cargo test --workspace` check those paths
//! end to end ([`the_suite_runs_on_the_path_recurrent_isa_names`] fails if the variable
//! is not honoured). `tests/serial/isa.rs` runs every path the CPU has in one process.

#[path = "../common/mod.rs"]
mod common;

mod cells;
mod dropout;
mod errors;
mod errors_family;
// torch.save files need the `torch` feature (on by default); without it they are refused.
#[cfg(feature = "torch")]
mod formats;
mod gradients;
mod layering;
mod loading;
mod onnx;
mod optim;
mod packed;
mod properties;
mod properties_family;
mod readme;
mod reliability;
mod special_values;
mod state_dict;
mod streaming;
mod torch_family;
mod torch_forward;
mod torch_gradients;
mod training;

/// The kernel path of this process is the one `RECURRENT_ISA` selects (the best this CPU
/// has when the variable is not set).
#[test]
fn the_suite_runs_on_the_path_recurrent_isa_names() {
    let value = std::env::var("RECURRENT_ISA").ok();
    let want = recurrent::Isa::select(value.as_deref());
    assert_eq!(recurrent::isa().ok(), want.ok(), "RECURRENT_ISA={value:?}");
    eprintln!("kernel path: {:?}", recurrent::isa().ok());
}

/// Without the `torch` feature a torch.save file is refused, saying how to read it.
#[cfg(not(feature = "torch"))]
#[test]
fn without_the_torch_feature_a_torch_save_file_says_what_to_do() {
    let file = common::fixtures().join("formats/pt_lstm_zip.pt");
    let message = recurrent::load::<f32>(&file, None).unwrap_err().to_string();
    assert!(message.contains("`torch` feature"), "{message}");
    // The global scan runs all the same: a file that would run code says so.
    let file = common::fixtures().join("formats/bad_evil_global.pt");
    let message = recurrent::load::<f32>(&file, None).unwrap_err().to_string();
    assert!(message.contains("posix.system"), "{message}");
}
