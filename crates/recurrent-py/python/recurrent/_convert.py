"""Arguments to NumPy arrays: dtypes, torch tensors (duck-typed), torch's type checks."""

from __future__ import annotations

import numbers
import random

import numpy as np

FLOATS = ("float32", "float64")


def dtype_name(dtype) -> str:
    """'float32' or 'float64' from a string, a NumPy dtype or a torch dtype (None: float32)."""
    if dtype is None:
        return "float32"
    text = str(dtype)
    if text.startswith("torch."):
        text = text[len("torch."):]
        text = {"float": "float32", "double": "float64"}.get(text, text)
        candidate = text
    else:
        candidate = dtype
    try:
        name = np.dtype(candidate).name
    except TypeError:
        name = None
    if name not in FLOATS:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def check_device(device) -> None:
    """Only the CPU (torch's ``device`` argument, for drop-in signatures)."""
    if device is not None and str(device) != "cpu":
        raise ValueError(f"recurrent computes on the CPU; got device={device!r}")


def new_seed(seed) -> int:
    """A 64-bit seed: the one given, or a random one."""
    if seed is None:
        return random.getrandbits(64)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed should be of type int, got: {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return int(seed)


def tensor_to_numpy(value):
    """A torch tensor (duck-typed: ``detach``/``cpu``/``numpy``) or array-like as an ndarray;
    bfloat16 tensors, which NumPy cannot hold, are widened to float32 first."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        if str(getattr(value, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def as_float_array(value, dtype: str, what: str) -> np.ndarray:
    """``value`` as an ndarray of ``dtype`` in native byte order, any strides.

    An ndarray (or tensor) of the other float dtype is refused, as torch refuses an input
    whose dtype is not the module's; integer and boolean arrays are refused too. Plain
    Python sequences are converted to ``dtype``.
    """
    if isinstance(value, np.ndarray) or hasattr(value, "__array__") or hasattr(value, "detach"):
        array = tensor_to_numpy(value) if not isinstance(value, np.ndarray) else value
        if array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8):
            raise TypeError(f"{what} must be a float32 or float64 array, got dtype {array.dtype}")
        if array.dtype.name != dtype:
            raise TypeError(
                f"{what} must have the layer's dtype {dtype}, got {array.dtype.name} "
                f"(convert the input, or the layer with .to('{array.dtype.name}'))"
            )
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        return array
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be an array of numbers, got {type(value).__name__}: {e}") from None


def as_lengths(lengths) -> list[int] | None:
    """``lengths`` (a sequence or 1-D integer array/tensor) as a list of ints >= 0."""
    if lengths is None:
        return None
    array = tensor_to_numpy(lengths)
    if array.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {array.dtype}")
    values = [int(v) for v in array]
    for i, v in enumerate(values):
        if v < 0:
            raise ValueError(f"expected the length of all samples to be greater than 0, but lengths[{i}] = {v}")
    return values


def check_int(name: str, value, minimum: int = 1, message: str | None = None) -> None:
    """torch's checks of an integer option: TypeError for another type, ValueError below
    ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(message or f"{name} must be greater than zero")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")


def find_prefixes(names, suffix: str) -> list[str]:
    """Every prefix ('' or ending in '.') under which ``suffix`` is a key, sorted."""
    found = []
    for name in names:
        if isinstance(name, str) and name.endswith(suffix):
            prefix = name[: -len(suffix)]
            if prefix == "" or prefix.endswith("."):
                found.append(prefix)
    return sorted(found)
