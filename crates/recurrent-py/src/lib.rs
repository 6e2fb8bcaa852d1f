//! The native half of the `recurrent` Python package (`recurrent._native`): the library's
//! layers, cells and streams on NumPy arrays. The public API is the pure-Python package
//! around it (`python/recurrent`), which mirrors torch.nn; this module is private.
//!
//! Arrays come in as read-only NumPy views of any strides (never copied before the
//! library reads them) and go out as owned arrays handed to NumPy without a copy. Every
//! computation releases the GIL (`Python::detach`), and library errors become Python
//! exceptions with the library's message (`errors.rs`).

mod arrays;
mod cell;
mod errors;
mod layer;
mod stream;
mod threads;

use pyo3::prelude::*;

/// `recurrent._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<layer::PyLayer>()?;
    m.add_class::<cell::PyCell>()?;
    m.add_class::<stream::Stream>()?;
    m.add_function(wrap_pyfunction!(threads::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads::get_num_threads, m)?)?;
    m.add(
        "__isa__",
        recurrent::isa().map_or("invalid RECURRENT_ISA", |isa| isa.name()),
    )?;
    Ok(())
}
