//! Tests of the threaded paths that change process-wide settings (the wait for a helper
//! thread, `recurrent::__bench::set_helper_wait`; the kernel path,
//! `recurrent::__bench::with_isa`) or keep a pool's workers busy on purpose. They share one binary and run one at a time ([`serial`]), so that no test
//! sees another's settings or load.

use std::sync::{Mutex, MutexGuard};

#[path = "../common/mod.rs"]
mod common;

mod busy_pool;
mod concurrency;
mod determinism;
mod isa;
mod threads;

/// Held for the whole of each test in this binary: the tests run one after another.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the next test still runs.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
