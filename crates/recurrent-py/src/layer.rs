//! `_native.Layer`: an RNN, LSTM or GRU of either dtype, shared between Python threads.

use std::path::PathBuf;
use std::sync::Arc;

use ndarray::ArrayD;
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recurrent::io::StateDict;
use recurrent::{Gru, Kind, Layer, Lstm, Nonlinearity, Rnn, RnnConfig};

use crate::arrays::{copy_to_py, extract, extract_opt, is_f64, to_py, Elem};
use crate::errors::IntoPy;
use crate::stream::Stream;
use crate::threads;

/// A layer of either dtype.
#[derive(Debug, Clone)]
pub enum AnyLayer {
    /// Computes in float32.
    F32(Layer<f32>),
    /// Computes in float64.
    F64(Layer<f64>),
}

/// Runs `$body` with `$l` bound to the `Layer<T>` of either dtype.
macro_rules! with_layer {
    ($any:expr, $l:ident => $body:expr) => {
        match $any {
            AnyLayer::F32($l) => $body,
            AnyLayer::F64($l) => $body,
        }
    };
}

/// The layer's kind from torch's class name.
pub fn parse_kind(kind: &str) -> PyResult<Kind> {
    match kind {
        "RNN" => Ok(Kind::Rnn),
        "LSTM" => Ok(Kind::Lstm),
        "GRU" => Ok(Kind::Gru),
        other => Err(PyValueError::new_err(format!(
            "kind must be 'RNN', 'LSTM' or 'GRU', got '{other}'"
        ))),
    }
}

/// `tanh` or `relu`, else the library's error.
pub fn parse_nonlinearity(name: &str) -> PyResult<Nonlinearity> {
    name.parse::<Nonlinearity>().py()
}

/// Sets the options a state dict cannot show.
fn set_options<T: Elem>(
    layer: &mut Layer<T>,
    batch_first: Option<bool>,
    nonlinearity: Option<&str>,
    dropout: Option<f64>,
) -> PyResult<()> {
    let nonlinearity = nonlinearity.map(parse_nonlinearity).transpose()?;
    match layer {
        Layer::Rnn(l) => {
            if let Some(b) = batch_first {
                l.set_batch_first(b);
            }
            if let Some(n) = nonlinearity {
                l.set_nonlinearity(n);
            }
            if let Some(d) = dropout {
                l.set_dropout(d).py()?;
            }
        }
        Layer::Lstm(l) => {
            if let Some(b) = batch_first {
                l.set_batch_first(b);
            }
            if let Some(d) = dropout {
                l.set_dropout(d).py()?;
            }
        }
        Layer::Gru(l) => {
            if let Some(b) = batch_first {
                l.set_batch_first(b);
            }
            if let Some(d) = dropout {
                l.set_dropout(d).py()?;
            }
        }
    }
    Ok(())
}

/// The layer of `config`'s kind from `(name, tensor)` pairs.
fn from_named<T: Elem>(config: RnnConfig, tensors: Vec<(String, ArrayD<T>)>) -> PyResult<Layer<T>> {
    Ok(match config.kind {
        Kind::Rnn => Layer::Rnn(Rnn::from_named(config, tensors).py()?),
        Kind::Lstm => Layer::Lstm(Lstm::from_named(config, tensors).py()?),
        Kind::Gru => Layer::Gru(Gru::from_named(config, tensors).py()?),
    })
}

/// A state dict given as `(name, array)` pairs: written as safetensors bytes in memory
/// and read back by the library's reader, so that prefix detection, the kind and sizes
/// inferred from the shapes, and every check and message are the CLI's.
fn from_pairs<T: Elem>(
    tensors: &[(String, Bound<'_, PyAny>)],
    prefix: Option<&str>,
) -> PyResult<Layer<T>> {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, value) in tensors {
        let array: PyReadonlyArrayDyn<'_, T> =
            extract(value, &format!("state dict entry '{name}'"))?;
        let view = array.as_array();
        let mut bytes = Vec::with_capacity(view.len() * std::mem::size_of::<T>());
        view.iter().for_each(|&v| v.push_le(&mut bytes));
        buffers.push((name.clone(), view.shape().to_vec(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(T::SAFETENSORS, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PyValueError::new_err(format!("state dict: {e}")))?;
    let data = safetensors::tensor::serialize(views, None)
        .map_err(|e| PyValueError::new_err(format!("state dict: {e}")))?;
    let dict = StateDict::from_bytes(PathBuf::from("state dict"), data).py()?;
    let prefix = dict.resolve_prefix(prefix).py()?;
    let config = dict.infer_config(&prefix).py()?;
    Ok(Layer::from_layers(dict.load_layers(&prefix, config).py()?))
}

/// `(output, h_n, c_n)` as NumPy arrays (`c_n` for an LSTM only).
type ForwardPy = (Py<PyAny>, Py<PyAny>, Option<Py<PyAny>>);

/// The forward pass; `(output, h_n, c_n)`.
type Forward<T> = (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>);

fn forward<T: Elem>(
    py: Python<'_>,
    layer: &Layer<T>,
    x: &Bound<'_, PyAny>,
    h0: Option<&Bound<'_, PyAny>>,
    c0: Option<&Bound<'_, PyAny>>,
    lengths: Option<Vec<usize>>,
) -> PyResult<ForwardPy> {
    let x = extract::<T>(x, "input")?;
    let h0 = extract_opt::<T>(h0, "h_0")?;
    let c0 = extract_opt::<T>(c0, "c_0")?;
    let (xv, hv, cv) = (
        x.as_array(),
        h0.as_ref().map(|a| a.as_array()),
        c0.as_ref().map(|a| a.as_array()),
    );
    if matches!(layer, Layer::Lstm(_)) && hv.is_some() != cv.is_some() {
        return Err(PyValueError::new_err(
            "an LSTM's initial state is (h_0, c_0): give both or neither",
        ));
    }
    let lengths = lengths.as_deref();
    let result: recurrent::Result<Forward<T>> = py.detach(|| {
        threads::run(|| match layer {
            Layer::Rnn(l) => match lengths {
                Some(n) => l.forward_padded(xv, n, hv),
                None => l.forward(xv, hv),
            }
            .map(|(o, h)| (o, h, None)),
            Layer::Gru(l) => match lengths {
                Some(n) => l.forward_padded(xv, n, hv),
                None => l.forward(xv, hv),
            }
            .map(|(o, h)| (o, h, None)),
            Layer::Lstm(l) => {
                let state = hv.zip(cv);
                match lengths {
                    Some(n) => l.forward_padded(xv, n, state),
                    None => l.forward(xv, state),
                }
                .map(|(o, (h, c))| (o, h, Some(c)))
            }
        })
    });
    let (output, h_n, c_n) = result.py()?;
    Ok((to_py(py, output), to_py(py, h_n), c_n.map(|c| to_py(py, c))))
}

/// A view of an optional array.
fn view<'a, T: Elem>(
    a: &'a Option<PyReadonlyArrayDyn<'_, T>>,
) -> Option<ndarray::ArrayViewD<'a, T>> {
    a.as_ref().map(|a| a.as_array())
}

/// `(parameter gradients, grad input, grad h_0, grad c_0)`.
type Backward = (
    Vec<(String, Py<PyAny>)>,
    Py<PyAny>,
    Py<PyAny>,
    Option<Py<PyAny>>,
);

#[allow(clippy::too_many_arguments)]
fn backward<T: Elem>(
    py: Python<'_>,
    layer: &Layer<T>,
    x: &Bound<'_, PyAny>,
    h0: Option<&Bound<'_, PyAny>>,
    c0: Option<&Bound<'_, PyAny>>,
    grad_output: &Bound<'_, PyAny>,
    grad_h_n: Option<&Bound<'_, PyAny>>,
    grad_c_n: Option<&Bound<'_, PyAny>>,
    lengths: Option<Vec<usize>>,
) -> PyResult<Backward> {
    let x = extract::<T>(x, "input")?;
    let h0 = extract_opt::<T>(h0, "h_0")?;
    let c0 = extract_opt::<T>(c0, "c_0")?;
    let go = extract::<T>(grad_output, "grad_output")?;
    let gh = extract_opt::<T>(grad_h_n, "grad_h_n")?;
    let gc = extract_opt::<T>(grad_c_n, "grad_c_n")?;
    let (xv, hv, cv, gov, ghv, gcv) = (
        x.as_array(),
        view(&h0),
        view(&c0),
        go.as_array(),
        view(&gh),
        view(&gc),
    );
    if matches!(layer, Layer::Lstm(_)) && hv.is_some() != cv.is_some() {
        return Err(PyValueError::new_err(
            "an LSTM's initial state is (h_0, c_0): give both or neither",
        ));
    }
    if !matches!(layer, Layer::Lstm(_)) && (cv.is_some() || gcv.is_some()) {
        return Err(PyValueError::new_err("only an LSTM has a cell state"));
    }
    let lengths = lengths.as_deref();
    let grads = py
        .detach(|| {
            threads::run(|| match layer {
                Layer::Rnn(l) => match lengths {
                    Some(n) => l.backward_padded(xv, n, hv, gov, ghv),
                    None => l.backward(xv, hv, gov, ghv),
                },
                Layer::Gru(l) => match lengths {
                    Some(n) => l.backward_padded(xv, n, hv, gov, ghv),
                    None => l.backward(xv, hv, gov, ghv),
                },
                Layer::Lstm(l) => {
                    let state = hv.zip(cv);
                    match lengths {
                        Some(n) => l.backward_padded(xv, n, state, gov, (ghv, gcv)),
                        None => l.backward(xv, state, gov, (ghv, gcv)),
                    }
                }
            })
        })
        .py()?;
    let parameters = grads
        .parameters
        .into_iter()
        .map(|(name, g)| (name, to_py(py, g)))
        .collect();
    Ok((
        parameters,
        to_py(py, grads.input),
        to_py(py, grads.h0),
        grads.c0.map(|c| to_py(py, c)),
    ))
}

/// A copy of `layer` computing in `U`.
fn convert<T: Elem, U: Elem>(layer: &Layer<T>) -> PyResult<Layer<U>> {
    let tensors = layer
        .named_parameters()
        .map(|(name, t)| (name, t.mapv(|v| U::of(v.as_f64()))))
        .collect();
    from_named(layer.config().clone(), tensors)
}

/// An RNN, LSTM or GRU (torch's `nn.RNN`, `nn.LSTM`, `nn.GRU`) in float32 or float64.
/// Immutable: Python threads share it, and every computation releases the GIL.
#[pyclass(frozen, name = "Layer", module = "recurrent._native")]
pub struct PyLayer {
    pub(crate) inner: Arc<AnyLayer>,
}

impl PyLayer {
    fn wrap(layer: AnyLayer) -> Self {
        PyLayer {
            inner: Arc::new(layer),
        }
    }
}

#[pymethods]
impl PyLayer {
    /// torch's default initialisation, drawn from a ChaCha8 generator seeded by `seed`.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn seeded(
        kind: &str,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        nonlinearity: &str,
        bias: bool,
        batch_first: bool,
        dropout: f64,
        bidirectional: bool,
        proj_size: usize,
        dtype: &str,
        seed: u64,
    ) -> PyResult<Self> {
        let mut config = RnnConfig::new(input_size, hidden_size)
            .num_layers(num_layers)
            .nonlinearity(parse_nonlinearity(nonlinearity)?)
            .bias(bias)
            .batch_first(batch_first)
            .dropout(dropout)
            .bidirectional(bidirectional)
            .proj_size(proj_size);
        config.kind = parse_kind(kind)?;
        config.validate().py()?;
        fn build<T: Elem>(config: RnnConfig, seed: u64) -> PyResult<Layer<T>> {
            Ok(match config.kind {
                Kind::Rnn => Layer::Rnn(Rnn::seeded(config, seed).py()?),
                Kind::Lstm => Layer::Lstm(Lstm::seeded(config, seed).py()?),
                Kind::Gru => Layer::Gru(Gru::seeded(config, seed).py()?),
            })
        }
        Ok(Self::wrap(if is_f64(dtype)? {
            AnyLayer::F64(build(config, seed)?)
        } else {
            AnyLayer::F32(build(config, seed)?)
        }))
    }

    /// A layer from a state dict given as `(name, array)` pairs, all of `dtype`; the
    /// prefix found (or checked) and the configuration inferred as for a file.
    #[staticmethod]
    #[pyo3(signature = (tensors, dtype, prefix=None))]
    fn from_tensors(
        tensors: Vec<(String, Bound<'_, PyAny>)>,
        dtype: &str,
        prefix: Option<&str>,
    ) -> PyResult<Self> {
        Ok(Self::wrap(if is_f64(dtype)? {
            AnyLayer::F64(from_pairs(&tensors, prefix)?)
        } else {
            AnyLayer::F32(from_pairs(&tensors, prefix)?)
        }))
    }

    /// The layer a file holds (safetensors, torch.save, and the other formats the
    /// library reads), in `dtype` (None: float64 for a float64 file, else float32).
    #[staticmethod]
    #[pyo3(signature = (path, prefix=None, dtype=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        prefix: Option<&str>,
        dtype: Option<&str>,
    ) -> PyResult<Self> {
        let dict = py.detach(|| StateDict::read(&path)).py()?;
        let prefix = dict.resolve_prefix(prefix).py()?;
        let config = dict.infer_config(&prefix).py()?;
        let f64 = match dtype {
            Some(d) => is_f64(d)?,
            None => dict.dtype(&prefix).py()? == recurrent::Dtype::F64,
        };
        Ok(Self::wrap(if f64 {
            AnyLayer::F64(Layer::from_layers(dict.load_layers(&prefix, config).py()?))
        } else {
            AnyLayer::F32(Layer::from_layers(dict.load_layers(&prefix, config).py()?))
        }))
    }

    /// A copy with the options a state dict cannot show replaced (None: kept).
    #[pyo3(signature = (batch_first=None, nonlinearity=None, dropout=None))]
    fn with_options(
        &self,
        batch_first: Option<bool>,
        nonlinearity: Option<&str>,
        dropout: Option<f64>,
    ) -> PyResult<Self> {
        let mut layer = (*self.inner).clone();
        with_layer!(&mut layer, l => set_options(l, batch_first, nonlinearity, dropout))?;
        Ok(Self::wrap(layer))
    }

    /// A copy computing in `dtype`.
    fn to_dtype(&self, dtype: &str) -> PyResult<Self> {
        let f64 = is_f64(dtype)?;
        Ok(Self::wrap(match (&*self.inner, f64) {
            (AnyLayer::F32(l), true) => AnyLayer::F64(convert(l)?),
            (AnyLayer::F64(l), false) => AnyLayer::F32(convert(l)?),
            (same, _) => same.clone(),
        }))
    }

    /// The constructor options as a dict (`kind`, `input_size`, ..., `dtype`).
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (c, dtype) = match &*self.inner {
            AnyLayer::F32(l) => (l.config(), "float32"),
            AnyLayer::F64(l) => (l.config(), "float64"),
        };
        let d = PyDict::new(py);
        d.set_item("kind", c.kind.name())?;
        d.set_item("input_size", c.input_size)?;
        d.set_item("hidden_size", c.hidden_size)?;
        d.set_item("num_layers", c.num_layers)?;
        d.set_item("nonlinearity", c.nonlinearity.as_str())?;
        d.set_item("bias", c.bias)?;
        d.set_item("batch_first", c.batch_first)?;
        d.set_item("dropout", c.dropout)?;
        d.set_item("bidirectional", c.bidirectional)?;
        d.set_item("proj_size", c.proj_size)?;
        d.set_item("dtype", dtype)?;
        Ok(d)
    }

    /// torch's repr: `LSTM(10, 20, num_layers=2, batch_first=True)`.
    fn __repr__(&self) -> String {
        with_layer!(&*self.inner, l => l.config().to_string())
    }

    /// `(name, array copy)` in torch's `named_parameters()` order.
    fn named_parameters(&self, py: Python<'_>) -> Vec<(String, Py<PyAny>)> {
        with_layer!(&*self.inner, l => l
            .named_parameters()
            .map(|(name, t)| (name, copy_to_py(py, t)))
            .collect())
    }

    /// `(output, h_n, c_n)`; `c_n` is None but for an LSTM. The GIL is released.
    #[pyo3(signature = (x, h0=None, c0=None, lengths=None))]
    fn forward(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        h0: Option<&Bound<'_, PyAny>>,
        c0: Option<&Bound<'_, PyAny>>,
        lengths: Option<Vec<usize>>,
    ) -> PyResult<ForwardPy> {
        with_layer!(&*self.inner, l => forward(py, l, x, h0, c0, lengths))
    }

    /// The gradients of `sum(output * grad_output) + sum(h_n * grad_h_n) [+ sum(c_n *
    /// grad_c_n)]`: `(parameters, input, h_0, c_0)`. The GIL is released.
    #[pyo3(signature = (x, grad_output, h0=None, c0=None, grad_h_n=None, grad_c_n=None, lengths=None))]
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        grad_output: &Bound<'_, PyAny>,
        h0: Option<&Bound<'_, PyAny>>,
        c0: Option<&Bound<'_, PyAny>>,
        grad_h_n: Option<&Bound<'_, PyAny>>,
        grad_c_n: Option<&Bound<'_, PyAny>>,
        lengths: Option<Vec<usize>>,
    ) -> PyResult<Backward> {
        with_layer!(&*self.inner, l => backward(py, l, x, h0, c0, grad_output, grad_h_n, grad_c_n, lengths))
    }

    /// A stream over one sequence fed in pieces, from `(h0, c0)` (zeros when None).
    #[pyo3(signature = (h0=None, c0=None))]
    fn stream(
        &self,
        h0: Option<&Bound<'_, PyAny>>,
        c0: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Stream> {
        Stream::new(self.inner.clone(), h0, c0)
    }
}
