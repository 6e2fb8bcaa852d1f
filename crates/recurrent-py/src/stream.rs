//! `_native.Stream`: one sequence fed to a unidirectional layer in pieces, carrying its
//! state; the library's `RnnStream` / `LstmStream` / `GruStream`, kept beside the layer
//! they borrow (a self-referential cell owning an `Arc` of the layer).

use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, Ix2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use recurrent::{GruStream, Layer, LstmStream, RecurrentStream, RnnStream};

use crate::arrays::{extract_opt, AnyArray, AnyReadonly, AnyView, Elem};
use crate::errors::IntoPy;
use crate::layer::AnyLayer;
use crate::threads;

/// A stream of any kind and dtype, borrowing its layer.
pub enum AnyStream<'a> {
    /// RNN, float32.
    R32(RnnStream<'a, f32>),
    /// LSTM, float32.
    L32(LstmStream<'a, f32>),
    /// GRU, float32.
    G32(GruStream<'a, f32>),
    /// RNN, float64.
    R64(RnnStream<'a, f64>),
    /// LSTM, float64.
    L64(LstmStream<'a, f64>),
    /// GRU, float64.
    G64(GruStream<'a, f64>),
}

self_cell::self_cell!(
    /// A stream and the layer it borrows.
    pub struct StreamCell {
        owner: Arc<AnyLayer>,
        #[not_covariant]
        dependent: AnyStream,
    }
);

/// Runs `$body` with `$s` bound to the stream of whatever kind, `$v` to the view of the
/// same dtype (`$other` when the dtypes differ, which the caller rules out).
macro_rules! dispatch {
    ($stream:expr, $view:expr, |$s:ident, $v:ident, $wrap:ident| $body:expr) => {
        match ($stream, $view) {
            (AnyStream::R32($s), AnyView::F32($v)) => {
                let $wrap = AnyArray::F32;
                $body
            }
            (AnyStream::L32($s), AnyView::F32($v)) => {
                let $wrap = AnyArray::F32;
                $body
            }
            (AnyStream::G32($s), AnyView::F32($v)) => {
                let $wrap = AnyArray::F32;
                $body
            }
            (AnyStream::R64($s), AnyView::F64($v)) => {
                let $wrap = AnyArray::F64;
                $body
            }
            (AnyStream::L64($s), AnyView::F64($v)) => {
                let $wrap = AnyArray::F64;
                $body
            }
            (AnyStream::G64($s), AnyView::F64($v)) => {
                let $wrap = AnyArray::F64;
                $body
            }
            _ => Err(PyValueError::new_err(
                "the array's dtype is not the stream's",
            )),
        }
    };
}

/// The state of a stream in Python's form: `h`, `(h, c)`, or None for zeros.
enum State {
    Hidden(Option<AnyArray>),
    Pair(Option<(AnyArray, AnyArray)>),
}

fn hidden<T: Elem>(s: Option<ArrayD<T>>, wrap: fn(ArrayD<T>) -> AnyArray) -> State {
    State::Hidden(s.map(wrap))
}

/// A stream over one sequence: `step` one time step, `feed` chunks of any length; the
/// state carries over. The GIL is released while it computes.
#[pyclass(frozen, name = "Stream", module = "recurrent._native")]
pub struct Stream {
    cell: Mutex<StreamCell>,
    f64: bool,
}

impl Stream {
    pub fn new(
        layer: Arc<AnyLayer>,
        h0: Option<&Bound<'_, PyAny>>,
        c0: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let f64 = matches!(&*layer, AnyLayer::F64(_));
        let cell = StreamCell::try_new(layer, |owner| -> PyResult<AnyStream<'_>> {
            fn pair<'a, T: Elem>(
                h: Option<&'a numpy::PyReadonlyArrayDyn<'_, T>>,
                c: Option<&'a numpy::PyReadonlyArrayDyn<'_, T>>,
            ) -> PyResult<Option<(ndarray::ArrayViewD<'a, T>, ndarray::ArrayViewD<'a, T>)>>
            {
                match (h, c) {
                    (Some(h), Some(c)) => Ok(Some((h.as_array(), c.as_array()))),
                    (None, None) => Ok(None),
                    _ => Err(PyValueError::new_err(
                        "an LSTM's initial state is (h_0, c_0): give both or neither",
                    )),
                }
            }
            fn no_cell(c0: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
                match c0 {
                    Some(c) if !c.is_none() => {
                        Err(PyValueError::new_err("only an LSTM has a cell state"))
                    }
                    _ => Ok(()),
                }
            }
            Ok(match &**owner {
                AnyLayer::F32(layer) => {
                    let h = extract_opt::<f32>(h0, "h_0")?;
                    let c = extract_opt::<f32>(c0, "c_0")?;
                    match layer {
                        Layer::Rnn(l) => {
                            no_cell(c0)?;
                            AnyStream::R32(l.stream(h.as_ref().map(|a| a.as_array())).py()?)
                        }
                        Layer::Gru(l) => {
                            no_cell(c0)?;
                            AnyStream::G32(l.stream(h.as_ref().map(|a| a.as_array())).py()?)
                        }
                        Layer::Lstm(l) => {
                            AnyStream::L32(l.stream(pair(h.as_ref(), c.as_ref())?).py()?)
                        }
                    }
                }
                AnyLayer::F64(layer) => {
                    let h = extract_opt::<f64>(h0, "h_0")?;
                    let c = extract_opt::<f64>(c0, "c_0")?;
                    match layer {
                        Layer::Rnn(l) => {
                            no_cell(c0)?;
                            AnyStream::R64(l.stream(h.as_ref().map(|a| a.as_array())).py()?)
                        }
                        Layer::Gru(l) => {
                            no_cell(c0)?;
                            AnyStream::G64(l.stream(h.as_ref().map(|a| a.as_array())).py()?)
                        }
                        Layer::Lstm(l) => {
                            AnyStream::L64(l.stream(pair(h.as_ref(), c.as_ref())?).py()?)
                        }
                    }
                }
            })
        })?;
        Ok(Stream {
            cell: Mutex::new(cell),
            f64,
        })
    }

    /// Runs `f` on the stream with the lock held and the GIL released.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut AnyStream<'_>) -> PyResult<R> + Send,
    ) -> PyResult<R> {
        py.detach(|| {
            let mut guard = self.cell.lock().map_err(|_| {
                PyRuntimeError::new_err("the stream is poisoned by an earlier panic")
            })?;
            guard.with_dependent_mut(|_, stream| threads::run(|| f(stream)))
        })
    }
}

fn step_one<T: Elem, S: RecurrentStream<T>>(
    s: &mut S,
    x: ndarray::ArrayViewD<'_, T>,
) -> PyResult<ArrayD<T>> {
    let x = x.into_dimensionality::<Ix2>().map_err(|_| {
        PyValueError::new_err("step expects one time step (N, H_in); use feed for a chunk of steps")
    })?;
    Ok(s.step(x).py()?.to_owned().into_dyn())
}

#[pymethods]
impl Stream {
    /// One time step `(N, H_in)` → that step's output `(N, H_out)` (a new array).
    fn step(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let x = AnyReadonly::extract(x, self.f64, "x")?;
        let view = x.view();
        let out = self.with(py, |s| {
            dispatch!(s, view, |s, v, wrap| step_one(s, v).map(wrap))
        })?;
        Ok(out.into_py(py))
    }

    /// The next chunk of time steps (any of the layer's input forms) → its output.
    fn feed(&self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let x = AnyReadonly::extract(chunk, self.f64, "chunk")?;
        let view = x.view();
        let out = self.with(py, |s| {
            dispatch!(s, view, |s, v, wrap| s.feed(v).py().map(wrap))
        })?;
        Ok(out.into_py(py))
    }

    /// The state so far (copies): `h`, or `(h, c)` for an LSTM; None before anything ran
    /// from zeros.
    fn state(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let state = self.with(py, |s| {
            Ok(match s {
                AnyStream::R32(s) => hidden(s.state_owned(), AnyArray::F32),
                AnyStream::G32(s) => hidden(RecurrentStream::state_owned(s), AnyArray::F32),
                AnyStream::R64(s) => hidden(s.state_owned(), AnyArray::F64),
                AnyStream::G64(s) => hidden(RecurrentStream::state_owned(s), AnyArray::F64),
                AnyStream::L32(s) => State::Pair(
                    s.state_owned()
                        .map(|(h, c)| (AnyArray::F32(h), AnyArray::F32(c))),
                ),
                AnyStream::L64(s) => State::Pair(
                    s.state_owned()
                        .map(|(h, c)| (AnyArray::F64(h), AnyArray::F64(c))),
                ),
            })
        })?;
        Ok(match state {
            State::Hidden(None) | State::Pair(None) => py.None(),
            State::Hidden(Some(h)) => h.into_py(py),
            State::Pair(Some((h, c))) => (h.into_py(py), c.into_py(py))
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        })
    }

    /// Starts over from `(h0, c0)` (zeros when None); unchanged on an error.
    #[pyo3(signature = (h0=None, c0=None))]
    fn reset(
        &self,
        py: Python<'_>,
        h0: Option<&Bound<'_, PyAny>>,
        c0: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let h = h0
            .filter(|o| !o.is_none())
            .map(|o| AnyReadonly::extract(o, self.f64, "h_0"))
            .transpose()?;
        let c = c0
            .filter(|o| !o.is_none())
            .map(|o| AnyReadonly::extract(o, self.f64, "c_0"))
            .transpose()?;
        let (hv, cv) = (h.as_ref().map(|a| a.view()), c.as_ref().map(|a| a.view()));
        self.with(py, move |s| {
            let both = "an LSTM's initial state is (h_0, c_0): give both or neither";
            match (s, hv, cv) {
                (AnyStream::R32(s), None, None) => s.reset(None).py(),
                (AnyStream::R32(s), Some(AnyView::F32(h)), None) => s.reset(Some(h)).py(),
                (AnyStream::G32(s), None, None) => s.reset(None).py(),
                (AnyStream::G32(s), Some(AnyView::F32(h)), None) => s.reset(Some(h)).py(),
                (AnyStream::R64(s), None, None) => s.reset(None).py(),
                (AnyStream::R64(s), Some(AnyView::F64(h)), None) => s.reset(Some(h)).py(),
                (AnyStream::G64(s), None, None) => s.reset(None).py(),
                (AnyStream::G64(s), Some(AnyView::F64(h)), None) => s.reset(Some(h)).py(),
                (AnyStream::L32(s), None, None) => s.reset(None).py(),
                (AnyStream::L32(s), Some(AnyView::F32(h)), Some(AnyView::F32(c))) => {
                    s.reset(Some((h, c))).py()
                }
                (AnyStream::L64(s), None, None) => s.reset(None).py(),
                (AnyStream::L64(s), Some(AnyView::F64(h)), Some(AnyView::F64(c))) => {
                    s.reset(Some((h, c))).py()
                }
                (AnyStream::L32(_) | AnyStream::L64(_), _, _) => Err(PyValueError::new_err(both)),
                _ => Err(PyValueError::new_err("only an LSTM has a cell state")),
            }
        })
    }
}
