"""RNNCell, LSTMCell, GRUCell: torch.nn's single-step cells on NumPy arrays."""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from . import _native
from ._convert import as_float_array, check_bool, check_device, check_int, dtype_name, find_prefixes, new_seed, tensor_to_numpy


class _CellBase:
    """One step of a recurrent cell, as ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell``:
    input ``(N, H_in)`` or ``(H_in,)`` unbatched, state ``(N, H)`` or ``(H,)`` (zeros when
    None); returns ``h'`` (an LSTM cell: ``(h', c')``) shaped like the state. float32 or
    float64, the cell's dtype."""

    _kind = ""

    def _build(self, input_size, hidden_size, bias, nonlinearity, device, dtype, seed):
        check_int("input_size", input_size)
        check_int("hidden_size", hidden_size)
        check_bool("bias", bias)
        check_device(device)
        self._set(_native.Cell.seeded(self._kind, int(input_size), int(hidden_size), bias, nonlinearity,
                                      dtype_name(dtype), new_seed(seed)))

    def _set(self, native):
        self._native = native
        self._config = dict(native.config())

    @classmethod
    def _wrap(cls, native):
        cell = cls.__new__(cls)
        cell._set(native)
        return cell

    @classmethod
    def from_state_dict(cls, state_dict, *, prefix: str | None = None, dtype=None, nonlinearity=None):
        """The cell a state dict holds: a cell's tensors (``weight_ih``, ``weight_hh``,
        ``bias_ih``, ``bias_hh``) or a one-layer, one-direction layer's (``weight_ih_l0``,
        ...), under ``prefix`` (found when only one holds a cell)."""
        names = [n for n in state_dict.keys() if isinstance(n, str)]
        suffix = "weight_ih"
        candidates = find_prefixes(names, suffix)
        if not candidates:
            suffix = "weight_ih_l0"
            candidates = find_prefixes(names, suffix)
        if prefix is not None:
            given = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
            if given not in candidates:
                raise ValueError(f"no cell found under prefix '{prefix}': expected a tensor named '{given}weight_ih'")
            candidates = [given]
        if len(candidates) != 1:
            if not candidates:
                raise ValueError("no cell found: expected a tensor named 'weight_ih' (or 'weight_ih_l0')")
            raise ValueError("state dict holds several cells; pass a prefix, one of: "
                             + ", ".join(f"'{c}'" for c in candidates))
        p = candidates[0]
        tail = "" if suffix == "weight_ih" else "_l0"
        found = {}
        for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            key = f"{p}{base}{tail}"
            if key in state_dict:
                found[base] = tensor_to_numpy(state_dict[key])
        if "weight_hh" not in found:
            raise ValueError(f"missing parameter '{p}weight_hh{tail}'")
        allowed = {f"{p}{b}{tail}" for b in found}
        extra = [n for n in names if n.startswith(p) and "." not in n[len(p):] and n not in allowed]
        if extra:
            raise ValueError(f"unexpected parameter '{extra[0]}' for a {cls._kind}Cell")
        if dtype is None:
            dtype = "float64" if found["weight_ih"].dtype == np.float64 else "float32"
        dtype = dtype_name(dtype)
        w_ih, w_hh = found["weight_ih"], found["weight_hh"]
        if w_ih.ndim != 2 or w_hh.ndim != 2:
            raise ValueError(f"weight_ih and weight_hh must be 2-D, got shapes {w_ih.shape} and {w_hh.shape}")
        pairs = [(name, np.asarray(t, dtype=dtype)) for name, t in found.items()]
        native = _native.Cell.from_tensors(cls._kind, int(w_ih.shape[1]), int(w_hh.shape[1]), "bias_ih" in found,
                                           nonlinearity or "tanh", dtype, pairs)
        return cls._wrap(native)

    @classmethod
    def from_torch(cls, cell, dtype=None):
        """The cell computing what ``cell`` (a torch cell of this kind) computes; duck-typed."""
        if type(cell).__name__ != f"{cls._kind}Cell":
            raise TypeError(f"{cls.__name__}.from_torch expects a torch.nn.{cls._kind}Cell, got {type(cell).__name__}")
        return cls.from_state_dict(cell.state_dict(), prefix="", dtype=dtype,
                                   nonlinearity=getattr(cell, "nonlinearity", None))

    @classmethod
    def load(cls, path, prefix: str | None = None, dtype=None):
        """The cell a file holds (any format the library reads)."""
        return cls._wrap(_native.Cell.load(cls._kind, str(path), prefix,
                                           None if dtype is None else dtype_name(dtype)))

    def __getattr__(self, name):
        config = self.__dict__.get("_config")
        if config is not None and name in config and name not in ("kind", "dtype"):
            return config[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._config["dtype"])

    def __repr__(self) -> str:
        return repr(self._native)

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(self._native.named_parameters())

    def parameters(self) -> Iterator[np.ndarray]:
        return (t for _, t in self._native.named_parameters())

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict(self._native.named_parameters())

    def __call__(self, input, hx=None):
        dtype = self._config["dtype"]
        x = as_float_array(input, dtype, "input")
        if self._kind == "LSTM":
            if hx is None:
                h, c = None, None
            elif isinstance(hx, (tuple, list)) and len(hx) == 2:
                h, c = as_float_array(hx[0], dtype, "hx"), as_float_array(hx[1], dtype, "cx")
            else:
                raise TypeError(f"an LSTMCell's hx is a tuple (h, c), got {type(hx).__name__}")
            return self._native.forward(x, h, c)
        h = None if hx is None else as_float_array(hx, dtype, "hx")
        return self._native.forward(x, h, None)[0]

    forward = __call__


class RNNCell(_CellBase):
    """``torch.nn.RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh')``."""

    _kind = "RNN"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None, *, seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self._build(input_size, hidden_size, bias, nonlinearity, device, dtype, seed)


class LSTMCell(_CellBase):
    """``torch.nn.LSTMCell(input_size, hidden_size, bias=True)``; called with ``(h, c)``."""

    _kind = "LSTM"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, seed=None):
        self._build(input_size, hidden_size, bias, "tanh", device, dtype, seed)


class GRUCell(_CellBase):
    """``torch.nn.GRUCell(input_size, hidden_size, bias=True)``."""

    _kind = "GRU"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, seed=None):
        self._build(input_size, hidden_size, bias, "tanh", device, dtype, seed)


_CELLS = {"RNNCell": RNNCell, "LSTMCell": LSTMCell, "GRUCell": GRUCell}
