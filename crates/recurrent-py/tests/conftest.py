"""Shared helpers: the committed torch fixtures, read with NumPy alone."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "recurrent" / "tests" / "fixtures"

_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "F16": "<f2", "I32": "<i4", "U8": "u1", "BOOL": "?"}


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A safetensors file's tensors and metadata, with NumPy only (no safetensors package)."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        if info["dtype"] not in _DTYPES:
            continue  # bfloat16 inputs: not needed by the tests
        raw = np.frombuffer(data[base + start : base + end], dtype=_DTYPES[info["dtype"]])
        tensors[name] = raw.reshape(info["shape"]).copy()
    return tensors, metadata


def tolerance(dtype) -> dict:
    """torch.testing.assert_close's defaults for the dtype."""
    return {"rtol": 1.3e-6, "atol": 1e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-7, "atol": 1e-7}


def assert_close(actual, expected, **kw):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, **(kw or tolerance(expected.dtype)))


@pytest.fixture
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"no fixtures at {FIXTURES}")
    return FIXTURES
