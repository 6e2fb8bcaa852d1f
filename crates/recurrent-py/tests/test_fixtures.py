"""NumPy-only tier: the committed fixtures made by real torch (crates/recurrent/tests/fixtures,
generators in scripts/), run through the Python package. No torch needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import recurrent
from conftest import FIXTURES, assert_close, read_safetensors

PARAM_PREFIXES = ("weight_", "bias_")


def _params(tensors):
    return {k: v for k, v in tensors.items() if k.startswith(PARAM_PREFIXES)}


def _files(folder, pattern="*.safetensors"):
    return sorted(p.name for p in (FIXTURES / folder).glob(pattern)) if (FIXTURES / folder).is_dir() else []


def _layer(tensors, meta, kind):
    config = json.loads(meta["config"])
    options = {"batch_first": config["batch_first"]}
    if kind == "RNN":
        options["nonlinearity"] = config["nonlinearity"]
    cls = getattr(recurrent, kind)
    layer = cls.from_state_dict(_params(tensors), **options)
    for key in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional"):
        assert getattr(layer, key) == config[key], key
    assert layer.dtype == np.dtype(config["dtype"])
    return layer, config


def _kind(folder, meta):
    if folder in ("forward",):
        return "RNN"
    mode = json.loads(meta["config"]).get("mode") or meta.get("mode")
    return {"rnn": "RNN", "rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}[mode]


LAYER_CASES = [(folder, name) for folder in ("forward", "lstm", "gru", "lengths") for name in _files(folder)]


@pytest.mark.parametrize("folder,name", LAYER_CASES, ids=[f"{f}/{n}" for f, n in LAYER_CASES])
def test_forward_matches_torch(folder, name):
    tensors, meta = read_safetensors(FIXTURES / folder / name)
    kind = _kind(folder, meta)
    layer, config = _layer(tensors, meta, kind)
    x = tensors["input"]
    hx = None
    if "h0" in tensors:
        hx = (tensors["h0"], tensors["c0"]) if kind == "LSTM" else tensors["h0"]
    lengths = tensors.get("lengths")
    output, state = layer(x, hx, lengths=lengths)
    assert_close(output, tensors["output"])
    if kind == "LSTM":
        assert_close(state[0], tensors["h_n"])
        assert_close(state[1], tensors["c_n"])
    else:
        assert_close(state, tensors["h_n"])


GRAD_CASES = _files("grads")


@pytest.mark.parametrize("name", GRAD_CASES)
def test_backward_matches_autograd(name):
    tensors, meta = read_safetensors(FIXTURES / "grads" / name)
    config = json.loads(meta["config"])
    mode = config.get("mode") or meta.get("mode")
    kind = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[mode]
    options = {"batch_first": config["batch_first"]}
    if kind == "RNN":
        options["nonlinearity"] = config.get("nonlinearity") or ("relu" if mode == "rnn_relu" else "tanh")
    layer = getattr(recurrent, kind).from_state_dict(_params(tensors), **options)
    hx = grad_hn = None
    if "h0" in tensors:
        hx = (tensors["h0"], tensors["c0"]) if kind == "LSTM" else tensors["h0"]
    if "grad_h_n" in tensors:
        grad_hn = (tensors["grad_h_n"], tensors.get("grad_c_n", np.zeros_like(tensors["c_n"]))) if kind == "LSTM" \
            else tensors["grad_h_n"]
    grads = layer.backward(tensors["input"], tensors["grad_output"], hx, grad_hn, lengths=tensors.get("lengths"))
    checked = 0
    for key, value in tensors.items():
        if not key.startswith("grad."):
            continue
        name_ = key[len("grad."):]
        ours = grads[{"h0": "h_0", "c0": "c_0"}.get(name_, name_)]
        tol = {"rtol": 1e-4, "atol": 1e-5} if value.dtype == np.float32 else {"rtol": 1e-7, "atol": 1e-9}
        assert_close(ours, value, **tol)
        checked += 1
    assert checked >= 3  # weight_ih, weight_hh and the input at least


CELL_CASES = _files("cells")


@pytest.mark.parametrize("name", CELL_CASES)
def test_cells_match_torch(name):
    tensors, meta = read_safetensors(FIXTURES / "cells" / name)
    config = json.loads(meta["config"])
    kind = config["cell"]
    cls = {"rnn": recurrent.RNNCell, "rnn_tanh": recurrent.RNNCell, "rnn_relu": recurrent.RNNCell,
           "lstm": recurrent.LSTMCell, "gru": recurrent.GRUCell}[kind]
    nonlinearity = config.get("nonlinearity") or ("relu" if kind == "rnn_relu" else None)
    cell = cls.from_state_dict(_params(tensors), nonlinearity=nonlinearity)
    assert (cell.input_size, cell.hidden_size, cell.bias) == (config["input_size"], config["hidden_size"], config["bias"])
    if cls is recurrent.LSTMCell:
        hx = (tensors["hx"], tensors["cx"]) if "hx" in tensors else None
        h, c = cell(tensors["input"], hx)
        assert_close(h, tensors["h"])
        assert_close(c, tensors["c"])
    else:
        h = cell(tensors["input"], tensors.get("hx"))
        assert_close(h, tensors["h"])


FIRST_HOUR = [p.name[: -len(".safetensors")] for p in sorted((FIXTURES / "first_hour").glob("*.safetensors"))]


@pytest.mark.parametrize("stem", FIRST_HOUR)
def test_load_file_as_torch_saved_it(stem):
    """Files saved from torch (safetensors with and without metadata, bf16/f16 weights,
    weight norm): recurrent.load finds the kind and options, and reproduces torch."""
    folder = FIXTURES / "first_hour"
    layer = recurrent.load(folder / f"{stem}.safetensors", **_nometa_options(stem))
    x = np.load(folder / f"{stem}_input.npy")
    output, state = layer(x.astype(layer.dtype))
    expected = np.load(folder / f"{stem}_output.npy")
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(output, expected, **tol)
    h_n = state[0] if isinstance(layer, recurrent.LSTM) else state
    np.testing.assert_allclose(h_n, np.load(folder / f"{stem}_hn.npy"), **tol)
    if (folder / f"{stem}_cn.npy").exists():
        np.testing.assert_allclose(state[1], np.load(folder / f"{stem}_cn.npy"), **tol)


FORMATS = sorted(p.stem for p in (FIXTURES / "formats").glob("pt_*.pt") if (p.parent / f"{p.stem}_output.npy").exists())


def _nometa_options(stem):
    """What the file cannot record, from its name (as the fixture generator made it)."""
    options = {}
    if "relu" in stem:
        options["nonlinearity"] = "relu"
    if "_bf_" in stem or stem.endswith("_bf"):
        options["batch_first"] = True
    return options


@pytest.mark.parametrize("stem", FORMATS)
def test_load_torch_save_files(stem):
    """torch.save files (zip and legacy, f16/bf16/f64, nested checkpoints, weight norm)."""
    folder = FIXTURES / "formats"
    layer = recurrent.load(folder / f"{stem}.pt", **_nometa_options(stem))
    x = np.load(folder / f"{stem}_input.npy").astype(layer.dtype)
    output, state = layer(x)
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(output, np.load(folder / f"{stem}_output.npy"), **tol)
    h_n = state[0] if isinstance(layer, recurrent.LSTM) else state
    np.testing.assert_allclose(h_n, np.load(folder / f"{stem}_hn.npy"), **tol)


def test_bad_torch_files_raise_value_error():
    folder = FIXTURES / "formats"
    bad = sorted(folder.glob("bad_*.pt"))
    assert bad
    for path in bad:
        with pytest.raises(ValueError):
            recurrent.load(path)
