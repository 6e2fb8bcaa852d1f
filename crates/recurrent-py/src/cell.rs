//! `_native.Cell`: `torch.nn.RNNCell`, `LSTMCell`, `GRUCell` in either dtype.

use std::path::PathBuf;

use ndarray::ArrayD;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recurrent::io::StateDict;
use recurrent::{GruCell, Kind, LstmCell, RnnCell};

use crate::arrays::{copy_to_py, extract, extract_opt, is_f64, to_py, Elem};
use crate::errors::IntoPy;
use crate::layer::{parse_kind, parse_nonlinearity};

/// A cell of any kind and dtype.
#[derive(Debug, Clone)]
enum AnyCell {
    R32(RnnCell<f32>),
    L32(LstmCell<f32>),
    G32(GruCell<f32>),
    R64(RnnCell<f64>),
    L64(LstmCell<f64>),
    G64(GruCell<f64>),
}

/// Runs `$body` with `$c` bound to the cell, whatever its kind and dtype.
macro_rules! with_cell {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            AnyCell::R32($c) => $body,
            AnyCell::L32($c) => $body,
            AnyCell::G32($c) => $body,
            AnyCell::R64($c) => $body,
            AnyCell::L64($c) => $body,
            AnyCell::G64($c) => $body,
        }
    };
}

/// One step of a cell whose state is `h`.
fn step_h<T: Elem>(
    py: Python<'_>,
    f: impl Fn(
            ndarray::ArrayViewD<'_, T>,
            Option<ndarray::ArrayViewD<'_, T>>,
        ) -> recurrent::Result<ArrayD<T>>
        + Send
        + Sync,
    x: &Bound<'_, PyAny>,
    h: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let x = extract::<T>(x, "input")?;
    let h = extract_opt::<T>(h, "hx")?;
    let (xv, hv) = (x.as_array(), h.as_ref().map(|a| a.as_array()));
    let out = py.detach(|| f(xv, hv)).py()?;
    Ok(to_py(py, out))
}

/// One LSTM cell step: `(h', c')`.
fn step_lstm<T: Elem>(
    py: Python<'_>,
    cell: &LstmCell<T>,
    x: &Bound<'_, PyAny>,
    h: Option<&Bound<'_, PyAny>>,
    c: Option<&Bound<'_, PyAny>>,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let x = extract::<T>(x, "input")?;
    let h = extract_opt::<T>(h, "hx")?;
    let c = extract_opt::<T>(c, "cx")?;
    let state = match (&h, &c) {
        (Some(h), Some(c)) => Some((h.as_array(), c.as_array())),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "an LSTMCell's state is (hx, cx): give both or neither",
            ))
        }
    };
    let xv = x.as_array();
    let (h, c) = py.detach(|| cell.forward(xv, state)).py()?;
    Ok((to_py(py, h), to_py(py, c)))
}

/// `(name, array)` pairs converted to owned arrays of `T`.
fn owned<T: Elem>(tensors: &[(String, Bound<'_, PyAny>)]) -> PyResult<Vec<(String, ArrayD<T>)>> {
    tensors
        .iter()
        .map(|(name, t)| {
            Ok((
                name.clone(),
                extract::<T>(t, &format!("'{name}'"))?.as_array().to_owned(),
            ))
        })
        .collect()
}

/// A single recurrent cell (`torch.nn.RNNCell`, `LSTMCell`, `GRUCell`).
#[pyclass(frozen, name = "Cell", module = "recurrent._native")]
pub struct PyCell {
    inner: AnyCell,
}

#[pymethods]
impl PyCell {
    /// torch's default initialisation, seeded (the draws of a one-layer layer's).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn seeded(
        kind: &str,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        nonlinearity: &str,
        dtype: &str,
        seed: u64,
    ) -> PyResult<Self> {
        let n = parse_nonlinearity(nonlinearity)?;
        let f64 = is_f64(dtype)?;
        let (i, h) = (input_size, hidden_size);
        let inner = match (parse_kind(kind)?, f64) {
            (Kind::Rnn, false) => AnyCell::R32(RnnCell::seeded(i, h, bias, n, seed).py()?),
            (Kind::Lstm, false) => AnyCell::L32(LstmCell::seeded(i, h, bias, seed).py()?),
            (Kind::Gru, false) => AnyCell::G32(GruCell::seeded(i, h, bias, seed).py()?),
            (Kind::Rnn, true) => AnyCell::R64(RnnCell::seeded(i, h, bias, n, seed).py()?),
            (Kind::Lstm, true) => AnyCell::L64(LstmCell::seeded(i, h, bias, seed).py()?),
            (Kind::Gru, true) => AnyCell::G64(GruCell::seeded(i, h, bias, seed).py()?),
        };
        Ok(PyCell { inner })
    }

    /// A cell from its tensors (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`), all of
    /// `dtype`, with torch's shapes.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn from_tensors(
        kind: &str,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        nonlinearity: &str,
        dtype: &str,
        tensors: Vec<(String, Bound<'_, PyAny>)>,
    ) -> PyResult<Self> {
        let n = parse_nonlinearity(nonlinearity)?;
        let (i, h) = (input_size, hidden_size);
        let inner = match (parse_kind(kind)?, is_f64(dtype)?) {
            (Kind::Rnn, false) => {
                AnyCell::R32(RnnCell::from_named(i, h, bias, n, owned(&tensors)?).py()?)
            }
            (Kind::Lstm, false) => {
                AnyCell::L32(LstmCell::from_named(i, h, bias, owned(&tensors)?).py()?)
            }
            (Kind::Gru, false) => {
                AnyCell::G32(GruCell::from_named(i, h, bias, owned(&tensors)?).py()?)
            }
            (Kind::Rnn, true) => {
                AnyCell::R64(RnnCell::from_named(i, h, bias, n, owned(&tensors)?).py()?)
            }
            (Kind::Lstm, true) => {
                AnyCell::L64(LstmCell::from_named(i, h, bias, owned(&tensors)?).py()?)
            }
            (Kind::Gru, true) => {
                AnyCell::G64(GruCell::from_named(i, h, bias, owned(&tensors)?).py()?)
            }
        };
        Ok(PyCell { inner })
    }

    /// The cell of `kind` a file holds (a cell's tensors, or a one-layer layer's).
    #[staticmethod]
    #[pyo3(signature = (kind, path, prefix=None, dtype=None))]
    fn load(
        kind: &str,
        path: PathBuf,
        prefix: Option<&str>,
        dtype: Option<&str>,
    ) -> PyResult<Self> {
        let f64 = match dtype {
            Some(d) => is_f64(d)?,
            None => {
                let dict = StateDict::read(&path).py()?;
                let prefix = dict.resolve_prefix(prefix).py()?;
                dict.dtype(&prefix).py()? == recurrent::Dtype::F64
            }
        };
        let inner = match (parse_kind(kind)?, f64) {
            (Kind::Rnn, false) => AnyCell::R32(RnnCell::load(&path, prefix).py()?),
            (Kind::Lstm, false) => AnyCell::L32(LstmCell::load(&path, prefix).py()?),
            (Kind::Gru, false) => AnyCell::G32(GruCell::load(&path, prefix).py()?),
            (Kind::Rnn, true) => AnyCell::R64(RnnCell::load(&path, prefix).py()?),
            (Kind::Lstm, true) => AnyCell::L64(LstmCell::load(&path, prefix).py()?),
            (Kind::Gru, true) => AnyCell::G64(GruCell::load(&path, prefix).py()?),
        };
        Ok(PyCell { inner })
    }

    /// `kind`, `input_size`, `hidden_size`, `bias`, `nonlinearity`, `dtype`.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let (kind, dtype, nonlinearity) = match &self.inner {
            AnyCell::R32(c) => ("RNN", "float32", c.nonlinearity().as_str()),
            AnyCell::R64(c) => ("RNN", "float64", c.nonlinearity().as_str()),
            AnyCell::L32(_) => ("LSTM", "float32", "tanh"),
            AnyCell::L64(_) => ("LSTM", "float64", "tanh"),
            AnyCell::G32(_) => ("GRU", "float32", "tanh"),
            AnyCell::G64(_) => ("GRU", "float64", "tanh"),
        };
        d.set_item("kind", kind)?;
        with_cell!(&self.inner, c => {
            d.set_item("input_size", c.input_size())?;
            d.set_item("hidden_size", c.hidden_size())?;
            d.set_item("bias", c.bias())?;
        });
        d.set_item("nonlinearity", nonlinearity)?;
        d.set_item("dtype", dtype)?;
        Ok(d)
    }

    /// torch's repr: `LSTMCell(4, 3)`.
    fn __repr__(&self) -> String {
        with_cell!(&self.inner, c => c.to_string())
    }

    /// `(name, array copy)` in torch's order.
    fn named_parameters(&self, py: Python<'_>) -> Vec<(String, Py<PyAny>)> {
        with_cell!(&self.inner, c => c
            .named_parameters()
            .map(|(name, t)| (name.to_string(), copy_to_py(py, t)))
            .collect())
    }

    /// One step: `(h', c')` (`c'` None but for an LSTM cell). The GIL is released.
    #[pyo3(signature = (x, h=None, c=None))]
    fn forward(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        h: Option<&Bound<'_, PyAny>>,
        c: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
        let no_c = || match c {
            Some(c) if !c.is_none() => {
                Err(PyValueError::new_err("only an LSTMCell has a cell state"))
            }
            _ => Ok(()),
        };
        Ok(match &self.inner {
            AnyCell::R32(cell) => {
                no_c()?;
                (step_h(py, |x, h| cell.forward(x, h), x, h)?, None)
            }
            AnyCell::R64(cell) => {
                no_c()?;
                (step_h(py, |x, h| cell.forward(x, h), x, h)?, None)
            }
            AnyCell::G32(cell) => {
                no_c()?;
                (step_h(py, |x, h| cell.forward(x, h), x, h)?, None)
            }
            AnyCell::G64(cell) => {
                no_c()?;
                (step_h(py, |x, h| cell.forward(x, h), x, h)?, None)
            }
            AnyCell::L32(cell) => {
                let (h, c) = step_lstm(py, cell, x, h, c)?;
                (h, Some(c))
            }
            AnyCell::L64(cell) => {
                let (h, c) = step_lstm(py, cell, x, h, c)?;
                (h, Some(c))
            }
        })
    }
}
