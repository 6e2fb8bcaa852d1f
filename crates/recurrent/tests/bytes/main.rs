//! Arbitrary and hostile bytes through the readers: the fuzz targets' seeds and every
//! crash input found, replayed one per child process (`fuzz_replay`), and proptest's
//! arbitrary and mutated files (`readers_bytes`). One binary, whose global allocator
//! refuses any single allocation over 512 MiB, so that a reader trusting a size it read
//! fails the test instead of exhausting the machine. The fuzz targets' bodies are shared
//! with `fuzz/` (loaded with `#[path]`, not copied).

#[path = "../../../../fuzz/fuzz_targets/common/mod.rs"]
mod fuzz_common;

use fuzz_common::bounded_alloc::BoundedAlloc;

#[global_allocator]
static ALLOC: BoundedAlloc = BoundedAlloc::new(512 << 20);

#[path = "../common/runner.rs"]
mod runner;

mod fuzz_replay;
mod readers_bytes;
