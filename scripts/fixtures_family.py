"""PyTorch reference fixtures for the LSTM / GRU / cell / packed-sequence milestone.

Imported and run by ``make_fixtures.py`` (after the RNN fixtures, which it does
not touch); it can also be run on its own (``.venv/bin/python
scripts/fixtures_family.py``) to regenerate only the folders below.  Like the
RNN generator it is deterministic (``torch.manual_seed`` per case from a crc32
of the case name) and idempotent: it deletes and rewrites only

* ``tests/fixtures/lstm/``, ``gru/``, ``lengths/``, ``cells/``, ``packed/``,
  ``cli_family/`` and ``tests/fixtures/errors_family.json``.

Conventions (shared with ``forward/``): one safetensors file per case holding
the module's ``state_dict`` under torch's unprefixed names plus the named
inputs and expected outputs, all contiguous and in the case's dtype (except
``lengths``, always int64).  Metadata: ``"format": "pt"``, ``"mode"``
(``rnn_tanh`` / ``rnn_relu`` / ``lstm`` / ``gru``; ``"cell"`` for cells),
``"batch_first"``, ``"nonlinearity"`` (RNN modes only), ``"config"`` (JSON)
and ``"torch_version"``.

* ``lstm/<case>``: ``input``, optional ``h0`` and ``c0`` (both or neither),
  expected ``output``, ``h_n``, ``c_n``.  With ``proj_size = P > 0``:
  ``weight_hr_l{k}[_reverse]`` is ``(P, H)``, ``weight_hh`` is ``(4H, P)``,
  layer ``k > 0`` reads ``D*P`` features, ``h0``/``h_n`` are ``(D*layers, N, P)``
  while ``c0``/``c_n`` stay ``(D*layers, N, H)``, ``output`` is ``(L, N, D*P)``.
* ``gru/<case>``: ``input``, optional ``h0``, ``output``, ``h_n``.
* ``lengths/<case>``: padded ``input`` (garbage past each length), ``lengths``
  (int64), optional ``h0`` (+ ``c0``) in the caller's batch order, expected
  ``output`` (``pad_packed_sequence(..., total_length=L)``, zeros past each
  length), ``h_n`` (+ ``c_n``), in the caller's batch order.
* ``cells/<case>``: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``
  (no biases when ``bias=False``), ``input``, optional ``hx`` (+ ``cx``),
  expected ``h`` (+ ``c``).
* ``packed/<case>.json``: ``pack_padded_sequence`` / ``pad_packed_sequence``
  results on small integer-valued inputs.
* ``errors_family.json``: exact torch messages (``null`` if torch accepted).
* ``cli_family/``: a user-style ``seq2seq.safetensors`` checkpoint and ``.npy``
  inputs / expected outputs.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import (  # noqa: E402  (shared helpers, no side effects on import)
    DTYPES,
    FIXTURES,
    TORCH_VERSION,
    cast_module,
    npsave,
    save_safetensors,
    seed_for,
)

LSTM_DIR = FIXTURES / "lstm"
GRU_DIR = FIXTURES / "gru"
LENGTHS_DIR = FIXTURES / "lengths"
CELLS_DIR = FIXTURES / "cells"
PACKED_DIR = FIXTURES / "packed"
CLI_FAMILY_DIR = FIXTURES / "cli_family"
ERRORS_FAMILY_JSON = FIXTURES / "errors_family.json"
OUTPUT_DIRS = (LSTM_DIR, GRU_DIR, LENGTHS_DIR, CELLS_DIR, PACKED_DIR, CLI_FAMILY_DIR)

PREFIX = {"float32": "f32", "float64": "f64"}
IO_KEYS = ("input", "lengths", "h0", "c0", "output", "h_n", "c_n", "hx", "cx", "h", "c")


# ---------------------------------------------------------------------------
# Module construction
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FCase:
    """One sequence-module fixture.  ``batch=None`` means unbatched 2-D input.

    ``lengths`` (one per batch element) turns it into a packed / variable-length
    case; ``enforce_sorted`` is then passed to ``pack_padded_sequence``.
    """

    name: str
    mode: str  # rnn_tanh | rnn_relu | lstm | gru
    input_size: int
    hidden_size: int
    seq_len: int
    batch: int | None
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    dropout: float = 0.0
    proj_size: int = 0
    has_h0: bool = False
    scale: float = 1.0
    lengths: tuple[int, ...] | None = None
    enforce_sorted: bool = True


def build_module(mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0) -> nn.Module:
    """The torch module for ``mode``, in float32 (torch's default dtype), train mode."""
    kwargs = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias,
                  batch_first=batch_first, dropout=dropout, bidirectional=bidirectional)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with num_layers=1 warns; irrelevant here
        if mode == "lstm":
            return nn.LSTM(proj_size=proj_size, **kwargs)
        if proj_size:  # passed through only so torch can reject it (errors_family.json)
            kwargs["proj_size"] = proj_size
        if mode in ("rnn_tanh", "rnn_relu"):
            return nn.RNN(nonlinearity=mode[4:], **kwargs)
        if mode == "gru":
            return nn.GRU(**kwargs)
    raise ValueError(mode)


def module_for(case: FCase, dtype: str) -> nn.Module:
    m = build_module(case.mode, case.input_size, case.hidden_size, case.num_layers, case.bias,
                     case.batch_first, case.dropout, case.bidirectional, case.proj_size)
    return cast_module(m, dtype).eval()


def module_from_config(cfg: dict) -> nn.Module:
    m = build_module(cfg["mode"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], cfg["bias"],
                     cfg["batch_first"], cfg["dropout"], cfg["bidirectional"], cfg["proj_size"])
    return cast_module(m, cfg["dtype"]).eval()


def nonlinearity_of(mode: str) -> str | None:
    return mode[4:] if mode.startswith("rnn_") else None


def case_config(case: FCase, dtype: str) -> dict:
    config = {
        "mode": case.mode,
        "input_size": case.input_size,
        "hidden_size": case.hidden_size,
        "num_layers": case.num_layers,
        "nonlinearity": nonlinearity_of(case.mode),
        "bias": case.bias,
        "batch_first": case.batch_first,
        "bidirectional": case.bidirectional,
        "dropout": case.dropout,
        "proj_size": case.proj_size,
        "dtype": dtype,
        "unbatched": case.batch is None,
        "has_h0": case.has_h0,
        "has_c0": case.has_h0 and case.mode == "lstm",
    }
    if case.lengths is not None:
        config["lengths"] = True
        config["enforce_sorted"] = case.enforce_sorted
    return config


def module_metadata(mode: str, batch_first: bool, config: dict) -> dict[str, str]:
    meta = {
        "format": "pt",
        "mode": mode,
        "batch_first": "true" if batch_first else "false",
        "config": json.dumps(config),
        "torch_version": TORCH_VERSION,
    }
    if nonlinearity_of(mode):
        meta["nonlinearity"] = nonlinearity_of(mode)
    return meta


def state_shapes(case: FCase) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(h0 shape, c0 shape) torch expects for the case."""
    d = 2 if case.bidirectional else 1
    h_out = case.proj_size or case.hidden_size
    lead = (d * case.num_layers,) if case.batch is None else (d * case.num_layers, case.batch)
    return lead + (h_out,), lead + (case.hidden_size,)


def run_module(module: nn.Module, mode: str, x, h0, c0, lengths=None, batch_first=False,
               enforce_sorted=True, total_length=None):
    """Forward (optionally through pack/pad); returns (output, h_n, c_n or None)."""
    if mode == "lstm":
        hx = (h0, c0) if h0 is not None else None
    else:
        hx = h0
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    with torch.no_grad(), warnings.catch_warnings():
        # f32 LSTMs with proj_size skip oneDNN (torch says so once); without proj they use it.
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        out, state = module(inp, hx) if hx is not None else module(inp)
    if lengths is not None:
        out, out_lengths = pad_packed_sequence(out, batch_first=batch_first, total_length=total_length)
        assert torch.equal(out_lengths, lengths)
    if mode == "lstm":
        return out, state[0], state[1]
    return out, state, None


# ---------------------------------------------------------------------------
# LSTM / GRU / lengths cases
# ---------------------------------------------------------------------------

LSTM_SHARED = [
    FCase("l1", "lstm", 3, 4, 5, 2),
    FCase("l1_h0", "lstm", 3, 4, 5, 2, has_h0=True),
    FCase("l1_nobias_h0", "lstm", 3, 4, 5, 2, bias=False, has_h0=True),
    FCase("l1_bf_h0", "lstm", 3, 5, 6, 3, batch_first=True, has_h0=True),
    FCase("l2_h0", "lstm", 3, 4, 5, 2, num_layers=2, has_h0=True),
    FCase("l3_bf", "lstm", 4, 5, 6, 2, num_layers=3, batch_first=True),
    FCase("l3_nobias_h0", "lstm", 3, 4, 5, 2, num_layers=3, bias=False, has_h0=True),
    FCase("l1_bidir_h0", "lstm", 3, 4, 5, 2, bidirectional=True, has_h0=True),
    FCase("l2_bidir_bf", "lstm", 3, 4, 6, 3, num_layers=2, batch_first=True, bidirectional=True),
    FCase("l3_bidir_h0", "lstm", 2, 3, 5, 2, num_layers=3, bidirectional=True, has_h0=True),
    FCase("unbatched", "lstm", 4, 5, 6, None),
    FCase("unbatched_l2_bidir_h0", "lstm", 3, 4, 5, None, num_layers=2, bidirectional=True, has_h0=True),
    # proj_size: h is (.., P), c stays (.., H); layer k > 0 reads D*P features.
    FCase("proj_l1_h0", "lstm", 3, 6, 5, 2, proj_size=2, has_h0=True),
    FCase("proj_l1_bidir", "lstm", 3, 5, 4, 2, proj_size=3, bidirectional=True),
    FCase("proj_l3_bf_h0", "lstm", 4, 5, 6, 2, num_layers=3, proj_size=2, batch_first=True, has_h0=True),
    FCase("proj_l2_bidir_h0", "lstm", 3, 6, 5, 3, num_layers=2, bidirectional=True, proj_size=4, has_h0=True),
    FCase("proj_l2_bidir_nobias_bf", "lstm", 4, 5, 5, 2, num_layers=2, bias=False, batch_first=True,
          bidirectional=True, proj_size=1),
    FCase("proj_unbatched_bidir_h0", "lstm", 3, 4, 5, None, bidirectional=True, proj_size=2, has_h0=True),
    FCase("seq1_l2_h0", "lstm", 3, 4, 1, 3, num_layers=2, has_h0=True),
    FCase("batch1_bidir_bf", "lstm", 3, 4, 5, 1, batch_first=True, bidirectional=True),
    FCase("empty_batch", "lstm", 4, 3, 3, 0),
    FCase("dropout_l2_eval_h0", "lstm", 3, 4, 5, 2, num_layers=2, dropout=0.3, has_h0=True),
    FCase("odd_sizes", "lstm", 7, 17, 13, 3, num_layers=2, batch_first=True, bidirectional=True,
          proj_size=5, has_h0=True, scale=0.5),
]

LSTM_EXTRA = [
    ("float64", FCase("empty_batch_proj_bidir_bf_h0", "lstm", 4, 3, 3, 0, batch_first=True,
                      bidirectional=True, proj_size=2, has_h0=True)),
    ("float32", FCase("dropout_l3_proj_bidir_eval", "lstm", 5, 6, 7, 2, num_layers=3, bidirectional=True,
                      dropout=0.5, proj_size=3)),
    ("float64", FCase("dropout_l1_eval_warns", "lstm", 3, 4, 5, 2, dropout=0.2, has_h0=True)),
    ("float32", FCase("seq1_unbatched_proj", "lstm", 3, 4, 1, None, proj_size=3, has_h0=True)),
    ("float64", FCase("wide_h33", "lstm", 6, 33, 9, 4, has_h0=True)),
]

GRU_SHARED = [
    FCase("l1", "gru", 3, 4, 5, 2),
    FCase("l1_h0", "gru", 3, 4, 5, 2, has_h0=True),
    FCase("l1_nobias_h0", "gru", 3, 4, 5, 2, bias=False, has_h0=True),
    FCase("l1_bf_h0", "gru", 3, 5, 6, 3, batch_first=True, has_h0=True),
    FCase("l2_h0", "gru", 3, 4, 5, 2, num_layers=2, has_h0=True),
    FCase("l3_nobias_bf", "gru", 4, 5, 6, 2, num_layers=3, bias=False, batch_first=True),
    FCase("l1_bidir_h0", "gru", 3, 4, 5, 2, bidirectional=True, has_h0=True),
    FCase("l2_bidir_bf", "gru", 3, 4, 6, 3, num_layers=2, batch_first=True, bidirectional=True),
    FCase("l3_bidir_nobias_h0", "gru", 2, 3, 5, 2, num_layers=3, bias=False, bidirectional=True, has_h0=True),
    FCase("unbatched", "gru", 4, 5, 6, None),
    FCase("unbatched_l2_bidir_h0", "gru", 3, 4, 5, None, num_layers=2, bidirectional=True, has_h0=True),
    FCase("seq1_l2_h0", "gru", 3, 4, 1, 3, num_layers=2, has_h0=True),
    FCase("batch1_bidir_bf_h0", "gru", 3, 4, 5, 1, batch_first=True, bidirectional=True, has_h0=True),
    FCase("empty_batch", "gru", 4, 3, 3, 0),
    FCase("dropout_l2_eval_h0", "gru", 3, 4, 5, 2, num_layers=2, dropout=0.3, has_h0=True),
    FCase("odd_sizes", "gru", 7, 17, 13, 3, num_layers=2, batch_first=True, bidirectional=True,
          has_h0=True, scale=0.5),
]

GRU_EXTRA = [
    ("float64", FCase("empty_batch_bidir_bf_h0", "gru", 4, 3, 3, 0, batch_first=True, bidirectional=True,
                      has_h0=True)),
    ("float32", FCase("seq1_unbatched_bidir", "gru", 3, 4, 1, None, bidirectional=True)),
    ("float64", FCase("wide_h33", "gru", 6, 33, 9, 4, has_h0=True)),
]


def lcase(name, mode, dtype, in_size, hidden, seq_len, lengths, enforce_sorted=None, **kw):
    """A lengths case; ``enforce_sorted`` defaults to True exactly when lengths are sorted."""
    lengths = tuple(lengths)
    is_sorted = all(a >= b for a, b in zip(lengths, lengths[1:]))
    if enforce_sorted is None:
        enforce_sorted = is_sorted
    assert is_sorted or not enforce_sorted, name
    return dtype, FCase(name, mode, in_size, hidden, seq_len, len(lengths), lengths=lengths,
                        enforce_sorted=enforce_sorted, **kw)


LENGTHS_CASES = [
    # --- RNN ---------------------------------------------------------------
    lcase("rnn_tanh_sorted", "rnn_tanh", "float32", 3, 4, 6, [6, 4, 2]),
    lcase("rnn_tanh_unsorted_h0", "rnn_tanh", "float64", 3, 4, 5, [2, 5, 3], has_h0=True),
    lcase("rnn_tanh_sorted_enforce_false", "rnn_tanh", "float64", 2, 3, 4, [4, 3, 3, 1], enforce_sorted=False,
      has_h0=True),
    lcase("rnn_relu_bidir_bf_unsorted", "rnn_relu", "float32", 3, 4, 7, [3, 5, 1, 5], batch_first=True,
      bidirectional=True, scale=0.5),
    lcase("rnn_relu_l2_bidir_sorted_h0", "rnn_relu", "float64", 3, 4, 5, [5, 5, 2], num_layers=2,
      bidirectional=True, has_h0=True, scale=0.5),
    lcase("rnn_tanh_batch1_h0", "rnn_tanh", "float32", 3, 4, 6, [4], has_h0=True),
    # --- LSTM --------------------------------------------------------------
    lcase("lstm_sorted", "lstm", "float32", 3, 4, 5, [5, 3, 3, 1]),
    lcase("lstm_unsorted_h0", "lstm", "float64", 3, 4, 6, [2, 6, 4], has_h0=True),
    lcase("lstm_bidir_bf_unsorted_h0", "lstm", "float32", 3, 4, 8, [3, 7, 2, 5], batch_first=True,
      bidirectional=True, has_h0=True),
    lcase("lstm_l2_bidir_sorted_h0", "lstm", "float64", 3, 4, 6, [4, 4, 2], num_layers=2, bidirectional=True,
      has_h0=True),
    lcase("lstm_nobias_bidir_unsorted", "lstm", "float64", 2, 3, 5, [1, 5, 3], bias=False, bidirectional=True),
    lcase("lstm_proj_unsorted_h0", "lstm", "float32", 3, 6, 5, [3, 5, 1], proj_size=3, has_h0=True),
    lcase("lstm_proj_l2_bidir_bf_unsorted_h0", "lstm", "float64", 4, 5, 6, [2, 4, 4, 1], num_layers=2,
      batch_first=True, bidirectional=True, proj_size=2, has_h0=True),
    lcase("lstm_proj_l3_sorted", "lstm", "float32", 3, 5, 5, [4, 3, 1], num_layers=3, proj_size=2),
    lcase("lstm_batch1_h0", "lstm", "float64", 3, 4, 5, [3], has_h0=True),
    lcase("lstm_batch1_bidir_bf", "lstm", "float32", 3, 4, 4, [4], enforce_sorted=False, batch_first=True,
      bidirectional=True),
    # --- GRU ---------------------------------------------------------------
    lcase("gru_sorted", "gru", "float32", 3, 4, 4, [4, 2, 1]),
    lcase("gru_unsorted_h0", "gru", "float64", 3, 4, 5, [1, 4, 3, 4], has_h0=True),
    lcase("gru_bidir_bf_unsorted_h0", "gru", "float32", 3, 4, 7, [2, 6, 3], batch_first=True, bidirectional=True,
      has_h0=True),
    lcase("gru_l2_bidir_sorted", "gru", "float64", 3, 4, 5, [5, 3], num_layers=2, bidirectional=True),
    lcase("gru_l3_nobias_unsorted_bf", "gru", "float32", 3, 4, 4, [3, 1, 4], num_layers=3, bias=False,
      batch_first=True),
    lcase("gru_batch1_bidir_h0", "gru", "float64", 3, 4, 3, [2], bidirectional=True, has_h0=True),
    lcase("gru_ties_unsorted", "gru", "float32", 2, 3, 4, [3, 3, 1, 3], bidirectional=True, has_h0=True),
    lcase("gru_odd_sizes_bidir_unsorted_h0", "gru", "float64", 7, 17, 9, [5, 8, 1, 7, 8], num_layers=2,
      bidirectional=True, has_h0=True, scale=0.5),
]


def named(dtype: str, case: FCase) -> FCase:
    return replace(case, name=f"{PREFIX[dtype]}_{case.name}")


def family_cases(shared, extra) -> list[tuple[str, FCase]]:
    out = [(dtype, named(dtype, c)) for dtype in DTYPES for c in shared]
    out += [(dtype, named(dtype, c)) for dtype, c in extra]
    names = [c.name for _, c in out]
    assert len(names) == len(set(names)), "duplicate case names"
    return out


def write_module_case(dtype: str, case: FCase, folder: Path) -> Path:
    """Writes one lstm/, gru/ or lengths/ fixture."""
    torch.manual_seed(seed_for(f"{folder.name}/{case.name}"))
    tdtype = DTYPES[dtype]
    module = module_for(case, dtype)
    n = case.batch
    if n is None:
        in_shape = (case.seq_len, case.input_size)
    elif case.batch_first:
        in_shape = (n, case.seq_len, case.input_size)
    else:
        in_shape = (case.seq_len, n, case.input_size)
    x = torch.randn(in_shape, dtype=tdtype) * case.scale
    h_shape, c_shape = state_shapes(case)
    h0 = torch.randn(h_shape, dtype=tdtype) * case.scale if case.has_h0 else None
    c0 = torch.randn(c_shape, dtype=tdtype) * case.scale if case.has_h0 and case.mode == "lstm" else None

    lengths = None
    if case.lengths is not None:
        lengths = torch.tensor(case.lengths, dtype=torch.int64)
        # Garbage (large, non-zero) values past each length: leaking them would show.
        time_axis = 1 if case.batch_first else 0
        t = torch.arange(case.seq_len).view(-1, 1)  # (L, 1)
        pad_mask = (t >= lengths.view(1, -1))  # (L, N)
        if case.batch_first:
            pad_mask = pad_mask.t()
        garbage = 5.0 + torch.rand(in_shape, dtype=tdtype) * 5.0
        garbage = torch.where(torch.rand(in_shape) < 0.5, garbage, -garbage)
        x = torch.where(pad_mask.unsqueeze(-1), garbage, x)
        assert x.shape[time_axis] == case.seq_len

    out, h_n, c_n = run_module(module, case.mode, x, h0, c0, lengths, case.batch_first, case.enforce_sorted,
                               total_length=case.seq_len if lengths is not None else None)
    if lengths is not None:
        assert out.shape[1 if case.batch_first else 0] == case.seq_len

    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    tensors["input"] = x.contiguous()
    if lengths is not None:
        tensors["lengths"] = lengths.contiguous()
    if h0 is not None:
        tensors["h0"] = h0.contiguous()
    if c0 is not None:
        tensors["c0"] = c0.contiguous()
    tensors["output"] = out.contiguous()
    tensors["h_n"] = h_n.contiguous()
    if c_n is not None:
        tensors["c_n"] = c_n.contiguous()
    assert all(v.dtype == (torch.int64 if k == "lengths" else tdtype) for k, v in tensors.items())

    path = folder / f"{case.name}.safetensors"
    save_safetensors(tensors, path, module_metadata(case.mode, case.batch_first, case_config(case, dtype)))
    return path


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CellCase:
    name: str
    cell: str  # rnn_tanh | rnn_relu | lstm | gru
    input_size: int
    hidden_size: int
    batch: int | None
    bias: bool = True
    has_hx: bool = False
    scale: float = 1.0


def build_cell(cell: str, input_size: int, hidden_size: int, bias: bool = True) -> nn.Module:
    if cell in ("rnn_tanh", "rnn_relu"):
        return nn.RNNCell(input_size, hidden_size, bias=bias, nonlinearity=cell[4:])
    if cell == "lstm":
        return nn.LSTMCell(input_size, hidden_size, bias=bias)
    if cell == "gru":
        return nn.GRUCell(input_size, hidden_size, bias=bias)
    raise ValueError(cell)


def cell_cases() -> list[tuple[str, CellCase]]:
    out = []
    for dtype in DTYPES:
        for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
            scale = 0.5 if cell == "rnn_relu" else 1.0
            variants = [
                CellCase("batched_hx", cell, 3, 5, 4, has_hx=True, scale=scale),
                CellCase("batched", cell, 4, 3, 2, scale=scale),
                CellCase("unbatched_hx", cell, 3, 4, None, has_hx=True, scale=scale),
                CellCase("unbatched", cell, 5, 2, None, scale=scale),
                CellCase("nobias_hx", cell, 3, 4, 3, bias=False, has_hx=True, scale=scale),
            ]
            if dtype == "float64":
                variants += [
                    CellCase("odd_sizes_hx", cell, 7, 17, 5, has_hx=True, scale=0.5),
                    CellCase("nobias_unbatched", cell, 2, 3, None, bias=False, scale=scale),
                    CellCase("empty_batch_hx", cell, 3, 4, 0, has_hx=True),
                ]
            for v in variants:
                out.append((dtype, replace(v, name=f"{PREFIX[dtype]}_{cell}_{v.name}")))
    names = [c.name for _, c in out]
    assert len(names) == len(set(names))
    return out


def cell_config(case: CellCase, dtype: str) -> dict:
    return {
        "cell": case.cell,
        "input_size": case.input_size,
        "hidden_size": case.hidden_size,
        "nonlinearity": nonlinearity_of(case.cell),
        "bias": case.bias,
        "dtype": dtype,
        "unbatched": case.batch is None,
        "has_hx": case.has_hx,
    }


def run_cell(cell_module: nn.Module, cell: str, x, hx, cx):
    with torch.no_grad():
        if cell == "lstm":
            h, c = cell_module(x, (hx, cx)) if hx is not None else cell_module(x)
            return h, c
        return (cell_module(x, hx) if hx is not None else cell_module(x)), None


def write_cell_case(dtype: str, case: CellCase) -> Path:
    torch.manual_seed(seed_for(f"cells/{case.name}"))
    tdtype = DTYPES[dtype]
    cell = cast_module(build_cell(case.cell, case.input_size, case.hidden_size, case.bias), dtype).eval()
    lead = () if case.batch is None else (case.batch,)
    x = torch.randn(lead + (case.input_size,), dtype=tdtype) * case.scale
    hx = torch.randn(lead + (case.hidden_size,), dtype=tdtype) * case.scale if case.has_hx else None
    cx = torch.randn(lead + (case.hidden_size,), dtype=tdtype) * case.scale \
        if case.has_hx and case.cell == "lstm" else None
    h, c = run_cell(cell, case.cell, x, hx, cx)

    tensors = {k: v.detach().contiguous() for k, v in cell.state_dict().items()}
    tensors["input"] = x.contiguous()
    if hx is not None:
        tensors["hx"] = hx.contiguous()
    if cx is not None:
        tensors["cx"] = cx.contiguous()
    tensors["h"] = h.contiguous()
    if c is not None:
        tensors["c"] = c.contiguous()
    assert all(v.dtype == tdtype for v in tensors.values())
    meta = {
        "format": "pt",
        "cell": case.cell,
        "config": json.dumps(cell_config(case, dtype)),
        "torch_version": TORCH_VERSION,
    }
    if nonlinearity_of(case.cell):
        meta["nonlinearity"] = nonlinearity_of(case.cell)
    path = CELLS_DIR / f"{case.name}.safetensors"
    save_safetensors(tensors, path, meta)
    return path


# ---------------------------------------------------------------------------
# PackedSequence semantics (JSON)
# ---------------------------------------------------------------------------

PACKED_CASES = [
    # name, seq_len, lengths, features, batch_first, enforce_sorted
    ("sorted_ties_enforce", 4, [4, 2, 2], 2, False, True),
    ("sorted_ties_no_enforce", 4, [4, 2, 2], 2, False, False),
    ("sorted_ties_bf_enforce", 4, [4, 2, 2], 2, True, True),
    ("unsorted", 5, [2, 5, 3], 2, False, False),
    ("unsorted_bf", 5, [2, 5, 3], 2, True, False),
    ("unsorted_ties", 3, [3, 1, 3, 2], 1, False, False),
    ("unsorted_ties_bf", 3, [3, 1, 3, 2], 1, True, False),
    ("max_lt_L", 6, [3, 1, 2], 2, False, False),
    ("max_lt_L_sorted_bf", 6, [4, 4, 1], 1, True, True),
    ("all_equal_full", 3, [3, 3, 3], 2, False, True),
    ("all_equal_full_no_enforce", 3, [3, 3, 3], 2, True, False),
    ("all_ones", 3, [1, 1, 1, 1], 1, False, False),
    ("batch1", 5, [3], 3, False, True),
    ("batch1_bf_no_enforce", 4, [4], 2, True, False),
    # 17+ elements with ties: torch.sort(descending=True) is NOT stable there (it is
    # for N <= 16), so sorted_indices among ties follow torch's unstable sort.
    ("many_ties_n20", 3, [2, 3, 1, 3, 3, 2, 1, 3, 2, 2, 3, 1, 1, 3, 2, 3, 3, 1, 2, 3], 1, False, False),
]


def flat(t: torch.Tensor) -> list:
    return t.detach().reshape(-1).tolist()


def idx_or_none(t):
    return None if t is None else t.tolist()


def write_packed_case(name, seq_len, lengths, features, batch_first, enforce_sorted) -> Path:
    n = len(lengths)
    shape = (n, seq_len, features) if batch_first else (seq_len, n, features)
    x = torch.arange(1, 1 + int(np.prod(shape)), dtype=torch.float32).reshape(shape)
    lt = torch.tensor(lengths, dtype=torch.int64)
    packed = pack_padded_sequence(x, lt, batch_first=batch_first, enforce_sorted=enforce_sorted)
    stable = sorted(range(n), key=lambda i: -lengths[i])
    record = {
        "name": name,
        "batch_first": batch_first,
        "enforce_sorted": enforce_sorted,
        "input_shape": list(shape),
        "input": flat(x),
        "lengths": list(lengths),
        "packed": {
            "data_shape": list(packed.data.shape),
            "data": flat(packed.data),
            "batch_sizes": packed.batch_sizes.tolist(),
            "batch_sizes_dtype": str(packed.batch_sizes.dtype).replace("torch.", ""),
            "sorted_indices": idx_or_none(packed.sorted_indices),
            "unsorted_indices": idx_or_none(packed.unsorted_indices),
        },
        # True when sorted_indices equal a *stable* descending sort of lengths
        # (null when torch gives no sorted_indices).
        "sorted_indices_is_stable_sort": None if packed.sorted_indices is None
        else packed.sorted_indices.tolist() == stable,
        "pad": [],
    }
    for total_length, padding_value in ((None, 0.0), (seq_len + 2, 0.0), (None, -1.0)):
        out, out_lengths = pad_packed_sequence(packed, batch_first=batch_first, padding_value=padding_value,
                                               total_length=total_length)
        record["pad"].append({
            "total_length": total_length,
            "padding_value": padding_value,
            "output_shape": list(out.shape),
            "output": flat(out),
            "lengths": out_lengths.tolist(),
            "lengths_dtype": str(out_lengths.dtype).replace("torch.", ""),
        })
    path = PACKED_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def _seq_err(name, mode, input_shape, h0_shape=None, c0_shape=None, input_size=4, hidden_size=3,
             num_layers=1, bidirectional=False, batch_first=False, proj_size=0, bias=True):
    return {
        "name": name,
        "kind": mode,
        "config": {"mode": mode, "input_size": input_size, "hidden_size": hidden_size,
                   "num_layers": num_layers, "bias": bias, "batch_first": batch_first,
                   "bidirectional": bidirectional, "dropout": 0.0, "proj_size": proj_size, "dtype": "float32"},
        "input_shape": list(input_shape),
        "h0_shape": list(h0_shape) if h0_shape is not None else None,
        "c0_shape": list(c0_shape) if c0_shape is not None else None,
    }


def _cell_err(name, cell, input_shape, hx_shape=None, cx_shape=None, input_size=4, hidden_size=3):
    return {
        "name": name,
        "kind": "cell",
        "config": {"cell": cell, "input_size": input_size, "hidden_size": hidden_size, "bias": True,
                   "dtype": "float32"},
        "input_shape": list(input_shape),
        "hx_shape": list(hx_shape) if hx_shape is not None else None,
        "cx_shape": list(cx_shape) if cx_shape is not None else None,
    }


def _pack_err(name, input_shape, lengths, enforce_sorted, batch_first=False, total_length=None):
    return {
        "name": name,
        "kind": "pack",
        "config": {"batch_first": batch_first, "enforce_sorted": enforce_sorted, "total_length": total_length},
        "input_shape": list(input_shape),
        "lengths": list(lengths),
    }


ERROR_FAMILY_CASES = [
    # --- pack_padded_sequence / pad_packed_sequence ---------------------------
    _pack_err("pack_length_zero_unsorted", [4, 3, 2], [2, 0, 1], enforce_sorted=False),
    _pack_err("pack_length_zero_sorted", [4, 3, 2], [3, 2, 0], enforce_sorted=True),
    _pack_err("pack_length_negative", [4, 3, 2], [3, -1, 2], enforce_sorted=False),
    _pack_err("pack_unsorted_enforce_sorted", [4, 3, 2], [2, 4, 1], enforce_sorted=True),
    _pack_err("pack_unsorted_enforce_sorted_bf", [3, 4, 2], [2, 4, 1], enforce_sorted=True, batch_first=True),
    _pack_err("pack_length_gt_L", [4, 3, 2], [5, 4, 1], enforce_sorted=True),
    _pack_err("pack_length_gt_L_unsorted", [4, 3, 2], [2, 5, 1], enforce_sorted=False),
    _pack_err("pack_lengths_count_mismatch", [4, 3, 2], [4, 2], enforce_sorted=True),
    _pack_err("pad_total_length_too_short", [4, 3, 2], [4, 2, 1], enforce_sorted=True, total_length=3),
    # --- LSTM / GRU construction ---------------------------------------------
    _seq_err("lstm_proj_size_eq_hidden", "lstm", [5, 2, 4], proj_size=3),
    _seq_err("lstm_proj_size_gt_hidden", "lstm", [5, 2, 4], proj_size=4),
    _seq_err("lstm_proj_size_negative", "lstm", [5, 2, 4], proj_size=-1),
    _seq_err("gru_proj_size", "gru", [5, 2, 4], proj_size=2),
    _seq_err("rnn_proj_size", "rnn_tanh", [5, 2, 4], proj_size=2),
    # --- LSTM / GRU input width ----------------------------------------------
    _seq_err("lstm_input_wrong_width", "lstm", [5, 2, 3]),
    _seq_err("lstm_input_wrong_width_unbatched", "lstm", [5, 6]),
    _seq_err("lstm_proj_input_wrong_width_bf", "lstm", [2, 5, 5], batch_first=True, hidden_size=4, proj_size=2),
    _seq_err("gru_input_wrong_width", "gru", [5, 2, 3]),
    _seq_err("gru_input_wrong_width_unbatched", "gru", [5, 6]),
    _seq_err("gru_input_wrong_width_bf", "gru", [2, 5, 6], batch_first=True),
    # --- LSTM h0 / c0 shapes --------------------------------------------------
    _seq_err("lstm_c0_wrong_hidden", "lstm", [5, 2, 4], h0_shape=[1, 2, 3], c0_shape=[1, 2, 4]),
    _seq_err("lstm_c0_wrong_batch", "lstm", [5, 2, 4], h0_shape=[1, 2, 3], c0_shape=[1, 3, 3]),
    _seq_err("lstm_c0_wrong_first_dim", "lstm", [5, 2, 4], h0_shape=[2, 2, 3], c0_shape=[1, 2, 3],
             num_layers=2),
    _seq_err("lstm_h0_wrong_batch", "lstm", [5, 2, 4], h0_shape=[1, 3, 3], c0_shape=[1, 2, 3]),
    _seq_err("lstm_proj_h0_size_H", "lstm", [5, 2, 4], h0_shape=[1, 2, 5], c0_shape=[1, 2, 5],
             hidden_size=5, proj_size=2),
    _seq_err("lstm_proj_c0_size_P", "lstm", [5, 2, 4], h0_shape=[1, 2, 2], c0_shape=[1, 2, 2],
             hidden_size=5, proj_size=2),
    _seq_err("lstm_proj_h0_size_H_unbatched", "lstm", [5, 4], h0_shape=[2, 5], c0_shape=[2, 5],
             hidden_size=5, proj_size=2, bidirectional=True),
    _seq_err("lstm_h0_2d_with_3d_input", "lstm", [5, 2, 4], h0_shape=[1, 3], c0_shape=[1, 3]),
    _seq_err("lstm_c0_2d_with_3d_input", "lstm", [5, 2, 4], h0_shape=[1, 2, 3], c0_shape=[1, 3]),
    _seq_err("lstm_h0_3d_with_2d_input", "lstm", [5, 4], h0_shape=[1, 1, 3], c0_shape=[1, 1, 3]),
    _seq_err("gru_h0_wrong_hidden", "gru", [5, 2, 4], h0_shape=[1, 2, 4]),
    _seq_err("gru_h0_wrong_first_dim", "gru", [5, 2, 4], h0_shape=[2, 2, 3], num_layers=2, bidirectional=True),
    _seq_err("lstm_seq_len_0", "lstm", [0, 2, 4]),
    _seq_err("gru_seq_len_0", "gru", [0, 2, 4]),
    # --- cells ------------------------------------------------------------------
    _cell_err("rnn_cell_input_rank3", "rnn_tanh", [2, 3, 4]),
    _cell_err("lstm_cell_input_rank3", "lstm", [2, 3, 4]),
    _cell_err("gru_cell_input_rank3", "gru", [2, 3, 4]),
    _cell_err("rnn_cell_input_rank0", "rnn_tanh", []),
    _cell_err("rnn_cell_hx_wrong_hidden", "rnn_tanh", [2, 4], hx_shape=[2, 4]),
    _cell_err("rnn_cell_hx_wrong_batch", "rnn_relu", [2, 4], hx_shape=[3, 3]),
    _cell_err("lstm_cell_hx_wrong_hidden", "lstm", [2, 4], hx_shape=[2, 4], cx_shape=[2, 3]),
    _cell_err("lstm_cell_cx_wrong_hidden", "lstm", [2, 4], hx_shape=[2, 3], cx_shape=[2, 4]),
    _cell_err("lstm_cell_hx_wrong_batch", "lstm", [2, 4], hx_shape=[3, 3], cx_shape=[3, 3]),
    _cell_err("gru_cell_hx_wrong_hidden", "gru", [2, 4], hx_shape=[2, 5]),
    _cell_err("gru_cell_hx_wrong_batch", "gru", [2, 4], hx_shape=[1, 3]),
    _cell_err("rnn_cell_hx_1d_with_2d_input", "rnn_tanh", [2, 4], hx_shape=[3]),
    _cell_err("gru_cell_hx_2d_with_1d_input", "gru", [4], hx_shape=[1, 3]),
    _cell_err("lstm_cell_hx_2d_with_1d_input", "lstm", [4], hx_shape=[1, 3], cx_shape=[1, 3]),
    _cell_err("rnn_cell_input_wrong_width", "rnn_tanh", [2, 5]),
    _cell_err("lstm_cell_input_wrong_width", "lstm", [2, 5]),
    _cell_err("gru_cell_input_wrong_width_unbatched", "gru", [5]),
]


def _exc(result: dict, stage: str, exc: Exception) -> dict:
    result.update(stage=stage, torch_error=str(exc), torch_exception=type(exc).__name__)
    return result


def run_family_error(case: dict) -> dict:
    torch.manual_seed(seed_for(f"errors_family/{case['name']}"))
    result = dict(case)
    cfg = case["config"]
    kind = case["kind"]
    if kind == "pack":
        x = torch.randn(case["input_shape"])
        lengths = torch.tensor(case["lengths"], dtype=torch.int64)
        try:
            packed = pack_padded_sequence(x, lengths, batch_first=cfg["batch_first"],
                                          enforce_sorted=cfg["enforce_sorted"])
        except Exception as exc:  # noqa: BLE001
            return _exc(result, "pack", exc)
        accepted = {"data_shape": list(packed.data.shape), "batch_sizes": packed.batch_sizes.tolist(),
                    "sorted_indices": idx_or_none(packed.sorted_indices)}
        try:
            pad_packed_sequence(packed, batch_first=cfg["batch_first"], total_length=cfg["total_length"])
        except Exception as exc:  # noqa: BLE001
            if cfg["total_length"] is not None:
                return _exc(result, "pad", exc)
            accepted["pad_error"] = str(exc)
        result.update(stage="pack", torch_error=None, torch_exception=None, accepted=accepted)
        if case["name"].startswith("pack_length_gt_L"):
            # What happens when such a PackedSequence reaches a module.
            try:
                nn.LSTM(case["input_shape"][-1], 3)(packed)
                accepted["lstm_error"] = None
            except Exception as exc:  # noqa: BLE001
                accepted["lstm_error"] = str(exc)
        return result

    if kind == "cell":
        try:
            cell = build_cell(cfg["cell"], cfg["input_size"], cfg["hidden_size"], cfg["bias"]).eval()
        except Exception as exc:  # noqa: BLE001
            return _exc(result, "constructor", exc)
        x = torch.randn(case["input_shape"])
        hx = torch.randn(case["hx_shape"]) if case["hx_shape"] is not None else None
        cx = torch.randn(case["cx_shape"]) if case["cx_shape"] is not None else None
        try:
            h, _ = run_cell(cell, cfg["cell"], x, hx, cx)
        except Exception as exc:  # noqa: BLE001
            return _exc(result, "forward", exc)
        result.update(stage="forward", torch_error=None, torch_exception=None, accepted_h_shape=list(h.shape))
        return result

    try:
        module = build_module(cfg["mode"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], cfg["bias"],
                              cfg["batch_first"], cfg["dropout"], cfg["bidirectional"], cfg["proj_size"]).eval()
    except Exception as exc:  # noqa: BLE001
        return _exc(result, "constructor", exc)
    x = torch.randn(case["input_shape"])
    h0 = torch.randn(case["h0_shape"]) if case["h0_shape"] is not None else None
    c0 = torch.randn(case["c0_shape"]) if case["c0_shape"] is not None else None
    try:
        out, h_n, _ = run_module(module, cfg["mode"], x, h0, c0)
    except Exception as exc:  # noqa: BLE001
        return _exc(result, "forward", exc)
    result.update(stage="forward", torch_error=None, torch_exception=None,
                  accepted_output_shape=list(out.shape), accepted_h_n_shape=list(h_n.shape))
    return result


def write_errors_family() -> list[dict]:
    names = [c["name"] for c in ERROR_FAMILY_CASES]
    assert len(names) == len(set(names))
    results = [run_family_error(c) for c in ERROR_FAMILY_CASES]
    ERRORS_FAMILY_JSON.write_text(json.dumps(results, indent=2) + "\n")
    return results


# ---------------------------------------------------------------------------
# CLI fixtures
# ---------------------------------------------------------------------------


class _LstmEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=4)


class _GruDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 7)


class Seq2Seq(nn.Module):
    """Keys ``encoder.lstm.*``, ``decoder.gru.*`` and an unrelated ``head.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _LstmEncoder()
        self.decoder = _GruDecoder()
        self.head = nn.Linear(7, 3, bias=False)


def write_cli_family() -> None:
    torch.manual_seed(seed_for("cli_family_seq2seq"))
    model = Seq2Seq().eval()
    save_file(model.state_dict(), str(CLI_FAMILY_DIR / "seq2seq.safetensors"))  # as a user would
    lstm, gru = model.encoder.lstm, model.decoder.gru

    x = torch.randn(7, 3, 6)
    h0 = torch.randn(4, 3, 4)
    c0 = torch.randn(4, 3, 8)
    out, hn, cn = run_module(lstm, "lstm", x, h0, c0)
    assert out.shape == (7, 3, 8) and hn.shape == (4, 3, 4) and cn.shape == (4, 3, 8)
    for name, t in (("lstm_input", x), ("lstm_h0", h0), ("lstm_c0", c0), ("lstm_output", out),
                    ("lstm_hn", hn), ("lstm_cn", cn)):
        npsave(CLI_FAMILY_DIR / f"{name}.npy", t)

    gx = torch.randn(5, 2, 5)
    gout, ghn, _ = run_module(gru, "gru", gx, None, None)
    assert gout.shape == (5, 2, 7) and ghn.shape == (1, 2, 7)
    npsave(CLI_FAMILY_DIR / "gru_input.npy", gx)
    npsave(CLI_FAMILY_DIR / "gru_output.npy", gout)
    npsave(CLI_FAMILY_DIR / "gru_hn.npy", ghn)

    lengths = torch.tensor([7, 3, 5], dtype=torch.int64)
    lout, lhn, lcn = run_module(lstm, "lstm", x, h0, c0, lengths, batch_first=False, enforce_sorted=False,
                                total_length=7)
    npsave(CLI_FAMILY_DIR / "lengths.npy", lengths)
    npsave(CLI_FAMILY_DIR / "lengths_i32.npy", lengths.to(torch.int32))
    npsave(CLI_FAMILY_DIR / "lstm_len_output.npy", lout)
    npsave(CLI_FAMILY_DIR / "lstm_len_hn.npy", lhn)
    npsave(CLI_FAMILY_DIR / "lstm_len_cn.npy", lcn)


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


def _close(a: torch.Tensor, b: torch.Tensor, dtype: str, what, tol32=1e-5, tol64=1e-12) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    if a.numel() == 0:
        return 0.0
    diff = (a - b).abs().max().item()
    assert diff <= (tol32 if dtype == "float32" else tol64), (what, diff)
    return diff


def _load(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    # Clones: aligned copies (see make_fixtures.verify on f32 ulp differences).
    return meta, {k: v.clone() for k, v in load_file(str(path)).items()}


def _per_sequence_check(module, cfg, t, worst) -> None:
    """Independent semantics check of a lengths case: each batch element run alone,
    unbatched, on exactly its first ``len`` steps with its own initial state."""
    x, lengths = t["input"], t["lengths"]
    bf = cfg["batch_first"]
    for b, n in enumerate(lengths.tolist()):
        xb = x[b, :n] if bf else x[:n, b]
        h0 = t["h0"][:, b] if "h0" in t else None
        c0 = t["c0"][:, b] if "c0" in t else None
        # batch_first is irrelevant for unbatched input.
        out, hn, cn = run_module(module, cfg["mode"], xb.contiguous(), h0, c0)
        exp_out = t["output"][b] if bf else t["output"][:, b]
        worst[cfg["dtype"]] = max(worst[cfg["dtype"]],
                                  _close(out, exp_out[:n], cfg["dtype"], ("per-seq out", b), tol64=1e-10),
                                  _close(hn, t["h_n"][:, b], cfg["dtype"], ("per-seq h_n", b), tol64=1e-10))
        if cn is not None:
            _close(cn, t["c_n"][:, b], cfg["dtype"], ("per-seq c_n", b), tol64=1e-10)
        assert torch.all(exp_out[n:] == 0), "output not zero past length"


def verify_family() -> tuple[dict[str, float], dict[str, float]]:
    """Returns the max |diff| of (re-runs from the stored files, per-sequence checks)."""
    worst = {"float32": 0.0, "float64": 0.0}
    per_seq = {"float32": 0.0, "float64": 0.0}
    for folder in (LSTM_DIR, GRU_DIR, LENGTHS_DIR):
        for path in sorted(folder.glob("*.safetensors")):
            meta, t = _load(path)
            cfg = json.loads(meta["config"])
            assert meta["mode"] == cfg["mode"] and meta["format"] == "pt"
            assert ("h0" in t) == cfg["has_h0"] and ("c0" in t) == cfg["has_c0"], path
            assert ("c_n" in t) == (cfg["mode"] == "lstm"), path
            assert ("lengths" in t) == cfg.get("lengths", False), path
            assert all(v.is_contiguous() for v in t.values())
            module = module_from_config(cfg)
            module.load_state_dict({k: v for k, v in t.items() if k not in IO_KEYS})  # strict
            lengths = t.get("lengths")
            total = t["input"].shape[1 if cfg["batch_first"] else 0] if lengths is not None else None
            out, hn, cn = run_module(module, cfg["mode"], t["input"], t.get("h0"), t.get("c0"), lengths,
                                     cfg["batch_first"], cfg.get("enforce_sorted", True), total)
            d = cfg["dtype"]
            worst[d] = max(worst[d], _close(out, t["output"], d, (path, "output")),
                           _close(hn, t["h_n"], d, (path, "h_n")))
            if cn is not None:
                worst[d] = max(worst[d], _close(cn, t["c_n"], d, (path, "c_n")))
            if lengths is not None:
                _per_sequence_check(module, cfg, t, per_seq)

    for path in sorted(CELLS_DIR.glob("*.safetensors")):
        meta, t = _load(path)
        cfg = json.loads(meta["config"])
        assert meta["cell"] == cfg["cell"]
        assert ("hx" in t) == cfg["has_hx"] and ("cx" in t) == (cfg["has_hx"] and cfg["cell"] == "lstm")
        cell = cast_module(build_cell(cfg["cell"], cfg["input_size"], cfg["hidden_size"], cfg["bias"]),
                           cfg["dtype"]).eval()
        cell.load_state_dict({k: v for k, v in t.items() if k not in IO_KEYS})
        h, c = run_cell(cell, cfg["cell"], t["input"], t.get("hx"), t.get("cx"))
        d = cfg["dtype"]
        worst[d] = max(worst[d], _close(h, t["h"], d, (path, "h")))
        if c is not None:
            worst[d] = max(worst[d], _close(c, t["c"], d, (path, "c")))

    for path in sorted(PACKED_DIR.glob("*.json")):
        rec = json.loads(path.read_text())
        x = torch.tensor(rec["input"], dtype=torch.float32).reshape(rec["input_shape"])
        p = pack_padded_sequence(x, torch.tensor(rec["lengths"]), batch_first=rec["batch_first"],
                                 enforce_sorted=rec["enforce_sorted"])
        assert flat(p.data) == rec["packed"]["data"] and p.batch_sizes.tolist() == rec["packed"]["batch_sizes"]
        if p.unsorted_indices is not None:
            inv = torch.empty_like(p.sorted_indices)
            inv[p.sorted_indices] = torch.arange(len(inv))
            assert inv.tolist() == rec["packed"]["unsorted_indices"]

    # cli_family: reload the checkpoint as a user would and rerun.
    sd = load_file(str(CLI_FAMILY_DIR / "seq2seq.safetensors"))
    model = Seq2Seq().eval()
    model.load_state_dict(sd)
    ld = {p.stem: torch.from_numpy(np.load(p, allow_pickle=False)) for p in CLI_FAMILY_DIR.glob("*.npy")}
    out, hn, cn = run_module(model.encoder.lstm, "lstm", ld["lstm_input"], ld["lstm_h0"], ld["lstm_c0"])
    for a, k in ((out, "lstm_output"), (hn, "lstm_hn"), (cn, "lstm_cn")):
        _close(a, ld[k], "float32", k)
    out, hn, _ = run_module(model.decoder.gru, "gru", ld["gru_input"], None, None)
    _close(out, ld["gru_output"], "float32", "gru_output")
    _close(hn, ld["gru_hn"], "float32", "gru_hn")
    assert ld["lengths"].dtype == torch.int64 and ld["lengths_i32"].dtype == torch.int32
    assert torch.equal(ld["lengths"], ld["lengths_i32"].long())
    out, hn, cn = run_module(model.encoder.lstm, "lstm", ld["lstm_input"], ld["lstm_h0"], ld["lstm_c0"],
                             ld["lengths"], False, False, 7)
    for a, k in ((out, "lstm_len_output"), (hn, "lstm_len_hn"), (cn, "lstm_len_cn")):
        _close(a, ld[k], "float32", k)
    return worst, per_seq


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def write_all() -> list[Path]:
    for folder in OUTPUT_DIRS:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    ERRORS_FAMILY_JSON.unlink(missing_ok=True)

    for dtype, case in family_cases(LSTM_SHARED, LSTM_EXTRA):
        write_module_case(dtype, case, LSTM_DIR)
    for dtype, case in family_cases(GRU_SHARED, GRU_EXTRA):
        write_module_case(dtype, case, GRU_DIR)
    lengths_cases = LENGTHS_CASES
    assert len({c.name for _, c in lengths_cases}) == len(lengths_cases)
    for dtype, case in lengths_cases:
        write_module_case(dtype, named(dtype, case), LENGTHS_DIR)
    for dtype, case in cell_cases():
        write_cell_case(dtype, case)
    for spec in PACKED_CASES:
        write_packed_case(*spec)
    errors = write_errors_family()
    write_cli_family()

    files = sorted(p for d in OUTPUT_DIRS for p in d.rglob("*") if p.is_file())
    files.append(ERRORS_FAMILY_JSON)
    worst, per_seq = verify_family()
    print(f"family re-run max |diff|: float32 {worst['float32']:.3g}, float64 {worst['float64']:.3g}; "
          f"lengths vs one-sequence-at-a-time: float32 {per_seq['float32']:.3g}, float64 {per_seq['float64']:.3g}")
    for folder in OUTPUT_DIRS:
        paths = [p for p in files if p.parent == folder]
        print(f"{folder.name:<10} {len(paths):3d} files {sum(p.stat().st_size for p in paths):9d} bytes")
    print(f"{'errors_fam':<10} {1:3d} files {ERRORS_FAMILY_JSON.stat().st_size:9d} bytes")
    accepted = [e["name"] for e in errors if e["torch_error"] is None]
    if accepted:
        print("family error cases torch ACCEPTED:", ", ".join(accepted))
    return files


if __name__ == "__main__":
    write_all()
