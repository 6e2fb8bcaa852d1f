//! NumPy arrays in and out: the element types, dtype names, and arrays of either dtype.

use ndarray::{ArrayD, ArrayViewD};
use numpy::{Element, PyArray, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use recurrent::Float;

/// An element type the layers compute in and NumPy holds: `f32` or `f64`.
pub trait Elem: Float + Element {
    /// NumPy's name for it.
    const NAME: &'static str;
    /// safetensors' tag for it.
    const SAFETENSORS: safetensors::Dtype;
    /// Appends the little-endian bytes of `self`.
    fn push_le(self, out: &mut Vec<u8>);
}

impl Elem for f32 {
    const NAME: &'static str = "float32";
    const SAFETENSORS: safetensors::Dtype = safetensors::Dtype::F32;
    fn push_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Elem for f64 {
    const NAME: &'static str = "float64";
    const SAFETENSORS: safetensors::Dtype = safetensors::Dtype::F64;
    fn push_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// `"float32"` or `"float64"` → whether it is float64.
pub fn is_f64(dtype: &str) -> PyResult<bool> {
    match dtype {
        "float32" => Ok(false),
        "float64" => Ok(true),
        other => Err(PyValueError::new_err(format!(
            "dtype must be 'float32' or 'float64', got '{other}'"
        ))),
    }
}

/// `obj` as a read-only NumPy array of `T` (any strides), or a `TypeError` naming
/// `what` and the dtype wanted.
pub fn extract<'py, T: Elem>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    obj.extract::<PyReadonlyArrayDyn<'py, T>>().map_err(|_| {
        let got = obj
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| obj.get_type().to_string());
        PyTypeError::new_err(format!(
            "{what} must be a numpy.ndarray of dtype {} (the layer's), got {got}",
            T::NAME
        ))
    })
}

/// An optional argument as an array of `T`.
pub fn extract_opt<'py, T: Elem>(
    obj: Option<&Bound<'py, PyAny>>,
    what: &str,
) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    obj.filter(|o| !o.is_none())
        .map(|o| extract::<T>(o, what))
        .transpose()
}

/// An owned array handed to NumPy without a copy (NumPy takes ownership of the buffer).
pub fn to_py<T: Elem>(py: Python<'_>, array: ArrayD<T>) -> Py<PyAny> {
    PyArray::from_owned_array(py, array).into_any().unbind()
}

/// A view copied into a new NumPy array.
pub fn copy_to_py<T: Elem>(py: Python<'_>, view: ArrayViewD<'_, T>) -> Py<PyAny> {
    PyArray::from_array(py, &view).into_any().unbind()
}

/// An array of either dtype, borrowed from Python (for dispatch after the GIL is released).
pub enum AnyView<'a> {
    /// float32.
    F32(ArrayViewD<'a, f32>),
    /// float64.
    F64(ArrayViewD<'a, f64>),
}

/// An owned array of either dtype.
pub enum AnyArray {
    /// float32.
    F32(ArrayD<f32>),
    /// float64.
    F64(ArrayD<f64>),
}

impl AnyArray {
    /// To NumPy without a copy.
    pub fn into_py(self, py: Python<'_>) -> Py<PyAny> {
        match self {
            AnyArray::F32(a) => to_py(py, a),
            AnyArray::F64(a) => to_py(py, a),
        }
    }
}

/// A read-only array of either dtype held while the GIL is released.
pub enum AnyReadonly<'py> {
    /// float32.
    F32(PyReadonlyArrayDyn<'py, f32>),
    /// float64.
    F64(PyReadonlyArrayDyn<'py, f64>),
}

impl<'py> AnyReadonly<'py> {
    /// Extracts `obj` in the dtype given.
    pub fn extract(obj: &Bound<'py, PyAny>, f64: bool, what: &str) -> PyResult<Self> {
        Ok(if f64 {
            AnyReadonly::F64(extract(obj, what)?)
        } else {
            AnyReadonly::F32(extract(obj, what)?)
        })
    }

    /// A view of it.
    pub fn view(&self) -> AnyView<'_> {
        match self {
            AnyReadonly::F32(a) => AnyView::F32(a.as_array()),
            AnyReadonly::F64(a) => AnyView::F64(a.as_array()),
        }
    }
}
