//! Fuzz target `torch_reader`: see `common/torch_reader.rs`, whose body the stable test
//! crates/recurrent/tests/bytes/fuzz_replay.rs replays on every seed and regression file.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

/// Any single allocation above 2 GiB (the -malloc_limit_mb scripts/fuzz.sh passes) is a
/// crash, with or without a sanitizer's malloc hooks.
#[global_allocator]
static ALLOC: common::bounded_alloc::BoundedAlloc =
    common::bounded_alloc::BoundedAlloc::new(2 << 30);

fuzz_target!(|data: &[u8]| common::torch_reader::run(data));
