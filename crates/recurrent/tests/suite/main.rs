//! The library's tests, as one test binary: one link instead of one per file, which
//! is most of `cargo test`'s time on a small machine. Each module is one subject; tests
//! that change process-wide settings (the helper-thread wait, busy thread pools) live
//! in `tests/serial/`, and the tests that install a bounded global allocator
//! (`fuzz_replay.rs`, `readers_bytes.rs`) in binaries of their own.

#[path = "../common/mod.rs"]
mod common;

mod cells;
mod dropout;
mod errors;
mod errors_family;
mod gradients;
mod loading;
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
