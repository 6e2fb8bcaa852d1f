//! The bodies of the fuzz targets, one module per target, each with `pub fn run(data: &[u8])`.
//!
//! They are shared, not copied: the targets in `fuzz/fuzz_targets/*.rs` load this folder
//! as `mod common;`, and the stable tests `crates/recurrent/tests/bytes/fuzz_replay.rs` and
//! `readers_bytes.rs` (in `tests/bytes/`) load it with `#[path = ".../fuzz/fuzz_targets/common/mod.rs"]`, so a
//! regression file replays through exactly the code the fuzzer ran. Only `recurrent`,
//! `ndarray`, `safetensors` and `arbitrary` may be used here (the test crate has those).
//!
//! A body panics when it finds a fault: a panic inside the library, or a broken
//! invariant it asserts (the readers agree with each other, a loaded model runs, the fast
//! path matches the reference). Everything else an input can cause is an `Err`, which is
//! fine.
#![allow(dead_code)]

pub mod bounded_alloc;
pub mod differential;
pub mod npy_reader;
pub mod safetensors_reader;
pub mod state_dict_loader;
pub mod torch_reader;
