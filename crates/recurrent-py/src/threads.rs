//! `set_num_threads` / `get_num_threads`: the threads a computation may use.
//!
//! The library splits work over the rayon pool it runs in. Set before the first
//! computation, the count becomes rayon's global pool (no cost per call); set later, a
//! pool of that size is kept and each call runs inside it (`install`, a few
//! microseconds per call).

use std::sync::{Arc, RwLock};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The pool calls run in when it is not rayon's global one.
static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

/// Runs `f` in the pool `set_num_threads` chose (the global one by default).
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = POOL.read().ok().and_then(|p| p.clone());
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Sets the number of threads computations use (as `torch.set_num_threads`).
#[pyfunction]
pub fn set_num_threads(n: i64) -> PyResult<()> {
    let n = usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
        PyValueError::new_err(format!(
            "set_num_threads expects a positive integer, got {n}"
        ))
    })?;
    let mut slot = POOL
        .write()
        .map_err(|_| PyRuntimeError::new_err("the thread pool setting is poisoned"))?;
    if rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .is_ok()
        || rayon::current_num_threads() == n
    {
        *slot = None;
        return Ok(());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start {n} threads: {e}")))?;
    *slot = Some(Arc::new(pool));
    Ok(())
}

/// The number of threads computations use.
#[pyfunction]
pub fn get_num_threads() -> usize {
    match POOL.read().ok().and_then(|p| p.clone()) {
        Some(pool) => pool.current_num_threads(),
        None => rayon::current_num_threads(),
    }
}
