//! `recurrent::Error` → Python exceptions, with the library's message.
//!
//! The class follows torch where torch raises for the same mistake: `ValueError` for bad
//! constructor options, an input of the wrong rank and files or state dicts that are not
//! a layer; `RuntimeError` for shapes that do not fit the layer (torch's `check_input`,
//! `check_hidden_size`, `pack_padded_sequence`); `OSError` (`FileNotFoundError`) for files
//! that cannot be read; `MemoryError` for allocations that cannot be made.

use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::PyErr;
use recurrent::Error;

/// The Python exception for a library error.
pub fn to_py(err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(message),
        Error::DtypeMismatch { .. } => PyTypeError::new_err(message),
        Error::Config(_)
        | Error::UnknownNonlinearity(_)
        | Error::InputRank { .. }
        | Error::CellInputRank { .. }
        | Error::UnknownParameter { .. }
        | Error::ParameterShape { .. }
        | Error::MissingParameter { .. }
        | Error::UnexpectedParameter { .. }
        | Error::UnsupportedDtype { .. }
        | Error::NoRnnFound { .. }
        | Error::MissingTensor { .. }
        | Error::AmbiguousPrefix { .. }
        | Error::UnsupportedModel(_)
        | Error::Metadata { .. }
        | Error::WrongKind { .. }
        | Error::PickleGlobal { .. }
        | Error::Format { .. } => PyValueError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// `Result<T, recurrent::Error>` → `PyResult<T>`.
pub trait IntoPy<T> {
    /// Maps the error with [`to_py`].
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for recurrent::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}
