"""RNN, LSTM, GRU: torch.nn's multi-layer recurrent modules on NumPy arrays."""

from __future__ import annotations

import numbers
import warnings
from collections import OrderedDict
from typing import Iterator

import numpy as np

from . import _native
from ._convert import (
    as_float_array,
    as_lengths,
    check_bool,
    check_device,
    check_int,
    dtype_name,
    find_prefixes,
    new_seed,
    tensor_to_numpy,
)

_UNSET = object()


class _RNNBase:
    """What RNN, LSTM and GRU share. Build one with the subclass's constructor (torch's
    signature and defaults), ``from_torch``, ``from_state_dict`` or ``load``.

    Shapes (torch's): input ``(L, N, H_in)``, ``(N, L, H_in)`` with ``batch_first``, or
    ``(L, H_in)`` unbatched; output ``(L, N, D * H_out)`` in the input's layout; ``h_n``
    ``(D * num_layers, N, H_out)`` (no N when unbatched), indexed ``layer * D + direction``;
    an LSTM's ``c_n`` ``(D * num_layers, N, H)``. ``D`` is 2 when bidirectional, ``H_out``
    is ``proj_size`` if set, else ``hidden_size``. Arrays are float32 or float64, the
    layer's dtype, of any strides; results are new arrays of that dtype.
    """

    _kind = ""

    # -- construction ---------------------------------------------------------------
    def _build(self, input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, dropout,
               bidirectional, proj_size, device, dtype, seed):
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
            )
        check_int("num_layers", num_layers)
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                stacklevel=3,
            )
        check_bool("bias", bias)
        check_bool("batch_first", batch_first)
        check_bool("bidirectional", bidirectional)
        check_int("input_size", input_size)
        check_int("hidden_size", hidden_size)
        check_int("proj_size", proj_size, 0, "proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        check_device(device)
        self._set(_native.Layer.seeded(
            self._kind, int(input_size), int(hidden_size), int(num_layers), nonlinearity, bias, batch_first,
            float(dropout), bidirectional, int(proj_size), dtype_name(dtype), new_seed(seed),
        ))

    def _set(self, native) -> None:
        self._native = native
        self._config = dict(native.config())

    @classmethod
    def _wrap(cls, native):
        kind = native.config()["kind"]
        target = _CLASSES[kind]
        if cls is not _RNNBase and target is not cls:
            raise ValueError(
                f"this state dict holds {native!r}, not a {cls._kind}: load it with recurrent.{kind}"
            )
        layer = target.__new__(target)
        layer._set(native)
        return layer

    @classmethod
    def from_state_dict(cls, state_dict, *, prefix: str | None = None, dtype=None, **options):
        """The layer a state dict holds: a mapping from torch's parameter names
        (``weight_ih_l0``, ...; under a prefix such as ``encoder.rnn.`` for a layer inside a
        bigger model, found automatically when only one holds a layer) to NumPy arrays,
        torch tensors, or anything with ``__array__``.

        The tensors give the kind, sizes, ``num_layers``, ``bias``, ``bidirectional`` and
        ``proj_size``; ``options`` may repeat those (checked) and set what tensors cannot
        show: ``batch_first``, ``dropout``, ``nonlinearity`` (RNN). ``dtype``: float32 or
        float64 (default: float64 for float64 tensors, else float32).
        """
        names = list(state_dict.keys())
        if dtype is None:
            dtype = "float32"
            for p in find_prefixes(names, "weight_ih_l0") + find_prefixes(names, "weight_ih"):
                key = p + ("weight_ih_l0" if p + "weight_ih_l0" in state_dict else "weight_ih")
                if tensor_to_numpy(state_dict[key]).dtype == np.float64:
                    dtype = "float64"
                break
        dtype = dtype_name(dtype)
        pairs = []
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"state dict keys must be str, got {type(name).__name__}")
            value = tensor_to_numpy(state_dict[name])
            if value.dtype.kind not in "fiub":
                raise TypeError(f"state dict entry '{name}' is not numeric (dtype {value.dtype})")
            pairs.append((name, np.asarray(value, dtype=dtype)))
        native = _native.Layer.from_tensors(pairs, dtype, prefix)
        return cls._with_options(cls._wrap(native), options)

    @classmethod
    def _with_options(cls, layer, options):
        settable = {"batch_first", "dropout", "nonlinearity"}
        shown = {"input_size", "hidden_size", "num_layers", "bias", "bidirectional", "proj_size"}
        for key, value in options.items():
            if key in shown:
                if layer._config[key] != value:
                    raise ValueError(
                        f"{key}={value!r} given, but the state dict holds {layer!r} ({key}={layer._config[key]!r})"
                    )
            elif key not in settable:
                raise TypeError(f"unexpected option '{key}'")
        if "nonlinearity" in options and layer._kind != "RNN":
            raise TypeError(f"unexpected option 'nonlinearity' for {layer._kind}")
        if "batch_first" in options:
            check_bool("batch_first", options["batch_first"])
        set_ = {k: options[k] for k in settable if k in options}
        if set_:
            if "dropout" in set_:
                set_["dropout"] = float(set_["dropout"])
            layer._set(layer._native.with_options(**set_))
        return layer

    @classmethod
    def from_torch(cls, module, dtype=None):
        """The layer computing what ``module`` (a ``torch.nn.RNN``/``LSTM``/``GRU``) computes:
        its ``state_dict()`` and its options (``batch_first``, ``dropout``,
        ``nonlinearity``). Duck-typed: torch is not imported. ``dtype`` defaults to the
        module's (float64 for a ``.double()`` module, else float32)."""
        options = {"batch_first": bool(module.batch_first), "dropout": float(module.dropout)}
        mode = getattr(module, "mode", type(module).__name__)
        kind = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
        if kind not in _CLASSES:
            raise TypeError(f"from_torch expects a torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
        if kind == "RNN":
            options["nonlinearity"] = module.nonlinearity
        for key in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional"):
            options[key] = getattr(module, key)
        if kind == "LSTM":
            options["proj_size"] = getattr(module, "proj_size", 0)
        target = _CLASSES[kind] if cls is _RNNBase else cls
        return target.from_state_dict(module.state_dict(), prefix="", dtype=dtype, **options)

    @classmethod
    def load(cls, path, prefix: str | None = None, dtype=None, **options):
        """The layer a file holds: safetensors (``safetensors.torch.save_file(m.state_dict(),
        path)``), ``torch.save`` files (zip or legacy) and the other formats the library
        reads, told apart by their bytes. ``prefix`` and ``options`` as in
        :meth:`from_state_dict`; the file's metadata gives ``batch_first``, ``dropout`` and
        ``nonlinearity`` where it records them. ``dtype``: default float64 for a float64
        file, else float32."""
        native = _native.Layer.load(str(path), prefix, None if dtype is None else dtype_name(dtype))
        return cls._with_options(cls._wrap(native), options)

    # -- options ----------------------------------------------------------------------
    def __getattr__(self, name):
        config = self.__dict__.get("_config")
        if config is not None and name in config and name not in ("kind", "dtype"):
            return config[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def dtype(self) -> np.dtype:
        """float32 or float64: what the layer computes in and takes."""
        return np.dtype(self._config["dtype"])

    @property
    def mode(self) -> str:
        """torch's ``mode``: 'RNN_TANH', 'RNN_RELU', 'LSTM' or 'GRU'."""
        if self._kind == "RNN":
            return "RNN_TANH" if self._config["nonlinearity"] == "tanh" else "RNN_RELU"
        return self._kind

    def __repr__(self) -> str:
        return repr(self._native)

    def to(self, dtype) -> "_RNNBase":
        """A copy computing in ``dtype`` (float32 or float64), as ``module.to(dtype)``."""
        out = type(self).__new__(type(self))
        out._set(self._native.to_dtype(dtype_name(dtype)))
        return out

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    def eval(self):
        """Returns the layer: it always computes in evaluation mode (no dropout)."""
        return self

    # -- parameters ---------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, array)`` in torch's ``named_parameters()`` order (copies)."""
        return iter(self._native.named_parameters())

    def parameters(self) -> Iterator[np.ndarray]:
        return (t for _, t in self._native.named_parameters())

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """torch's names → arrays (copies), as ``module.state_dict()``."""
        return OrderedDict(self._native.named_parameters())

    def __getstate__(self):
        return {"config": self._config, "parameters": self._native.named_parameters()}

    def __setstate__(self, state):
        config = state["config"]
        native = _native.Layer.from_tensors(state["parameters"], config["dtype"], "")
        options = {"batch_first": config["batch_first"], "dropout": config["dropout"]}
        if config["kind"] == "RNN":
            options["nonlinearity"] = config["nonlinearity"]
        self._set(native.with_options(**options))

    # -- computing ----------------------------------------------------------------------
    def _state(self, hx, what="hx"):
        if hx is None:
            return None, None
        if self._kind == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"an LSTM's {what} is a tuple (h_0, c_0), got {type(hx).__name__}")
            dtype = self._config["dtype"]
            return as_float_array(hx[0], dtype, "h_0"), as_float_array(hx[1], dtype, "c_0")
        return as_float_array(hx, self._config["dtype"], "h_0"), None

    def __call__(self, input, hx=None, lengths=None):
        """``module.eval()(input, hx)``: returns ``(output, h_n)``, for an LSTM ``(output,
        (h_n, c_n))``.

        - ``input``: ``(L, N, H_in)``, ``(N, L, H_in)`` with ``batch_first``, or unbatched
          ``(L, H_in)``; the layer's dtype, any strides.
        - ``hx``: ``h_0`` ``(D * num_layers, [N,] H_out)``, for an LSTM ``(h_0, c_0)`` with
          ``c_0`` ``(D * num_layers, [N,] H)``; zeros when None.
        - ``lengths``: each sequence's length (``N`` ints in ``1..=L``), for a padded batch:
          what ``pad_packed_sequence(module(pack_padded_sequence(input, lengths,
          enforce_sorted=False)), total_length=L)`` gives; outputs past a sequence's end are
          zero, its ``h_n`` is its last valid state.

        The GIL is released while it computes.
        """
        x = as_float_array(input, self._config["dtype"], "input")
        h0, c0 = self._state(hx)
        output, h_n, c_n = self._native.forward(x, h0, c0, as_lengths(lengths))
        if self._kind == "LSTM":
            return output, (h_n, c_n)
        return output, h_n

    forward = __call__

    def backward(self, input, grad_output, hx=None, grad_hn=None, lengths=None) -> dict:
        """The gradients torch's autograd gives (evaluation mode) for
        ``loss = sum(output * grad_output) + sum(h_n * grad_h_n) [+ sum(c_n * grad_c_n)]``.

        ``grad_output`` has the output's shape; ``grad_hn`` h_n's (for an LSTM a tuple
        ``(grad_h_n, grad_c_n)``; zeros when None). Returns a dict: every parameter's
        gradient under torch's name (``weight_ih_l0``, ...), then ``"input"`` and ``"h_0"``
        (and ``"c_0"`` for an LSTM), in the shapes of what they are the gradients of."""
        dtype = self._config["dtype"]
        x = as_float_array(input, dtype, "input")
        go = as_float_array(grad_output, dtype, "grad_output")
        h0, c0 = self._state(hx)
        gh, gc = self._state(grad_hn, "grad_hn")
        params, g_input, g_h0, g_c0 = self._native.backward(x, go, h0, c0, gh, gc, as_lengths(lengths))
        grads = OrderedDict(params)
        grads["input"] = g_input
        grads["h_0"] = g_h0
        if g_c0 is not None:
            grads["c_0"] = g_c0
        return grads

    def stream(self, hx=None) -> "Stream":
        """A :class:`Stream` over one sequence fed in pieces, starting from ``hx`` (zeros
        when None). Only a unidirectional layer streams."""
        h0, c0 = self._state(hx)
        return Stream(self, self._native.stream(h0, c0))


class Stream:
    """One sequence fed to a layer in pieces, carrying the state from piece to piece:
    ``step(x_t)`` for one time step ``(N, H_in)`` (or ``(H_in,)`` unbatched) returns that
    step's output ``(N, H_out)``; ``feed(chunk)`` takes any number of steps in the layer's
    input forms and returns their output. The outputs of any chunking, concatenated, equal
    one call on the whole sequence (to rounding), and ``state`` its final state."""

    def __init__(self, layer: _RNNBase, native):
        self._layer = layer
        self._native = native

    def step(self, x):
        array = as_float_array(x, self._layer._config["dtype"], "x")
        if array.ndim == 1:
            return self._native.step(array[None, :])[0]
        return self._native.step(array)

    def feed(self, chunk):
        return self._native.feed(as_float_array(chunk, self._layer._config["dtype"], "chunk"))

    @property
    def state(self):
        """``h`` so far (``(h, c)`` for an LSTM), in the caller's form; None before anything
        ran from zeros."""
        return self._native.state()

    def reset(self, hx=None) -> None:
        """Starts over from ``hx`` (zeros when None)."""
        h0, c0 = self._layer._state(hx)
        self._native.reset(h0, c0)


class RNN(_RNNBase):
    """``torch.nn.RNN``: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, ``act``
    tanh or relu. Same signature and defaults as torch (``device`` only 'cpu'), plus
    ``seed`` for torch's default initialisation drawn reproducibly. See :class:`_RNNBase`
    for shapes."""

    _kind = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, seed=None, proj_size=_UNSET):
        if proj_size is not _UNSET:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self._build(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, dropout,
                    bidirectional, 0, device, dtype, seed)


class LSTM(_RNNBase):
    """``torch.nn.LSTM`` (gates i, f, g, o; ``proj_size`` supported). Same signature and
    defaults as torch, plus ``seed``. Called with ``hx = (h_0, c_0)``; returns ``(output,
    (h_n, c_n))``."""

    _kind = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None, *, seed=None):
        self._build(input_size, hidden_size, num_layers, "tanh", bias, batch_first, dropout, bidirectional,
                    proj_size, device, dtype, seed)


class GRU(_RNNBase):
    """``torch.nn.GRU`` (gates r, z, n). Same signature and defaults as torch, plus ``seed``."""

    _kind = "GRU"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, *, seed=None, proj_size=_UNSET):
        if proj_size is not _UNSET:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self._build(input_size, hidden_size, num_layers, "tanh", bias, batch_first, dropout, bidirectional,
                    0, device, dtype, seed)


_CLASSES = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def load(path, prefix: str | None = None, dtype=None, **options) -> _RNNBase:
    """The layer a file holds, as the class of its kind (:class:`RNN`, :class:`LSTM` or
    :class:`GRU`); see :meth:`_RNNBase.load`."""
    return _RNNBase.load(path, prefix=prefix, dtype=dtype, **options)


def from_torch(module, dtype=None):
    """A torch module (``nn.RNN``/``LSTM``/``GRU`` or a cell) as this package's equivalent."""
    name = type(module).__name__
    if name.endswith("Cell"):
        from ._cells import _CELLS

        if name not in _CELLS:
            raise TypeError(f"from_torch expects a torch.nn.RNNCell, LSTMCell or GRUCell, got {name}")
        return _CELLS[name].from_torch(module, dtype=dtype)
    return _RNNBase.from_torch(module, dtype=dtype)
