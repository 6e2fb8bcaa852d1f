"""PyTorch reference GRADIENT fixtures for the backward pass of RNN / LSTM / GRU.

Imported and run at the end of ``make_fixtures.py`` (after the forward and
family fixtures, which it does not touch); it can also be run on its own
(``.venv/bin/python scripts/fixtures_grads.py``).  Deterministic
(``torch.manual_seed`` per case from a crc32 of ``"grads/<case>"``) and
idempotent: it deletes and rewrites only ``tests/fixtures/grads/``.

One safetensors file per case, ``grads/<case>.safetensors``, every tensor
contiguous and in the case's dtype (``lengths`` is int64):

* the module's ``state_dict`` under torch's unprefixed names
  (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``, ...);
* ``input``; optional ``h0`` (and ``c0`` for LSTM: both or neither);
* optional ``lengths``: the case runs
  ``pack_padded_sequence(input, lengths, batch_first, enforce_sorted=False)``
  -> module -> ``pad_packed_sequence(batch_first, total_length=L)``; the padded
  input holds large garbage past each length;
* ``grad_output`` (the shape of ``output``, random everywhere, including the
  padded positions of a lengths case, where ``output`` is a constant 0);
  optional ``grad_h_n`` (and ``grad_c_n`` for LSTM: both or neither);
* expected gradients of

      loss = sum(output * grad_output) + sum(h_n * grad_h_n) [+ sum(c_n * grad_c_n)]

  (the ``h_n`` / ``c_n`` terms only when ``grad_h_n`` / ``grad_c_n`` are
  stored), from torch autograd with the module in eval mode:
  ``grad.<param name>`` for every parameter, ``grad.input``, and
  ``grad.h0`` / ``grad.c0`` when ``h0`` / ``c0`` are stored;
* the forward results ``output``, ``h_n`` (and ``c_n``) for reference.

Metadata: ``"format": "pt"``, ``"mode"``, ``"batch_first"``,
``"nonlinearity"`` (RNN modes only), ``"torch_version"`` and ``"config"``, a
JSON object with ``mode``, ``input_size``, ``hidden_size``, ``num_layers``,
``nonlinearity``, ``bias``, ``batch_first``, ``bidirectional``, ``dropout``,
``proj_size``, ``dtype``, ``unbatched``, ``has_h0``, ``has_c0``,
``has_grad_h_n``, ``has_grad_c_n``, ``lengths`` (bool), ``enforce_sorted``
(always false; lengths cases only) and ``torch_version``.

ReLU cases are redrawn (seed ``"grads/<case>#<attempt>"``) until every
pre-activation is at least ``RELU_MARGIN`` away from 0, where the derivative
jumps, and no layer / direction is mostly dead (``RELU_MIN_ACTIVE``).  Verification reloads every file, recomputes with torch and requires
bit-identical results; float64 gradients are additionally checked against
central finite differences, and lengths cases against running each sequence
alone.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import (  # noqa: E402  (shared helpers, no side effects on import)
    DTYPES,
    FIXTURES,
    TORCH_VERSION,
    cast_module,
    save_safetensors,
    seed_for,
)
from fixtures_family import build_module, module_metadata, nonlinearity_of  # noqa: E402

GRADS_DIR = FIXTURES / "grads"
PREFIX = {"float32": "f32", "float64": "f64"}
IO_KEYS = ("input", "lengths", "h0", "c0", "grad_output", "grad_h_n", "grad_c_n", "output", "h_n", "c_n")
# Minimum |pre-activation| of a relu case (float32 cases are checked in float64 from the same
# values; torch's float32 rounding is ~1e-7 relative, far inside this margin).
RELU_MARGIN = {"float64": 1e-4, "float32": 1e-3}
# ...and at least this fraction of each layer / direction's pre-activations positive (no dead layer).
RELU_MIN_ACTIVE = 0.25
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class GCase:
    """One gradient fixture.  ``batch=None`` means unbatched 2-D input."""

    name: str
    mode: str  # rnn_tanh | rnn_relu | lstm | gru
    dtype: str
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
    has_grad_h_n: bool = False
    scale: float = 1.0
    lengths: tuple[int, ...] | None = None


def g(name, mode, dtype, input_size, hidden, seq_len, batch, *, h0=False, ghn=False, **kw) -> GCase:
    scale = kw.pop("scale", 0.5 if mode == "rnn_relu" else 1.0)
    if "lengths" in kw:
        kw["lengths"] = tuple(kw["lengths"])
        assert batch == len(kw["lengths"]) and max(kw["lengths"]) <= seq_len and min(kw["lengths"]) >= 1
    return GCase(f"{PREFIX[dtype]}_{name}", mode, dtype, input_size, hidden, seq_len, batch,
                 has_h0=h0, has_grad_h_n=ghn, scale=scale, **kw)


F64, F32 = "float64", "float32"
T, R, LS, GR = "rnn_tanh", "rnn_relu", "lstm", "gru"

CASES = [
    # --- RNN (tanh / relu) ---------------------------------------------------
    g("rnn_tanh_l1", T, F64, 3, 4, 5, 2),
    g("rnn_tanh_l1_h0", T, F64, 3, 4, 5, 2, h0=True),
    g("rnn_tanh_l1_ghn", T, F64, 3, 4, 5, 2, ghn=True),
    g("rnn_tanh_l1_h0_ghn", T, F64, 3, 4, 5, 2, h0=True, ghn=True),
    g("rnn_relu_l1_h0_ghn", R, F64, 3, 4, 5, 2, h0=True, ghn=True),
    g("rnn_relu_l1_nobias", R, F64, 3, 4, 5, 3, bias=False),
    g("rnn_tanh_l1_nobias_bf_h0_ghn", T, F64, 4, 3, 6, 3, bias=False, batch_first=True, h0=True, ghn=True),
    g("rnn_tanh_l2_h0_ghn", T, F64, 3, 4, 5, 2, num_layers=2, h0=True, ghn=True),
    g("rnn_relu_l2_bf_ghn", R, F64, 4, 5, 6, 3, num_layers=2, batch_first=True, ghn=True),
    g("rnn_tanh_l3_nobias_h0_ghn", T, F64, 3, 4, 5, 2, num_layers=3, bias=False, h0=True, ghn=True),
    g("rnn_tanh_bidir_h0_ghn", T, F64, 3, 4, 5, 2, bidirectional=True, h0=True, ghn=True),
    g("rnn_relu_bidir_bf_ghn", R, F64, 3, 4, 5, 2, batch_first=True, bidirectional=True, ghn=True),
    g("rnn_tanh_l2_bidir_h0_ghn", T, F64, 3, 4, 6, 3, num_layers=2, bidirectional=True, h0=True, ghn=True),
    g("rnn_relu_l2_bidir_nobias", R, F64, 3, 4, 5, 2, num_layers=2, bias=False, bidirectional=True),
    g("rnn_tanh_l3_bidir_bf_h0_ghn", T, F64, 2, 3, 5, 4, num_layers=3, batch_first=True, bidirectional=True,
      h0=True, ghn=True),
    g("rnn_relu_l3_bidir_h0_ghn", R, F64, 3, 4, 5, 2, num_layers=3, bidirectional=True, h0=True, ghn=True),
    g("rnn_tanh_unbatched", T, F64, 4, 5, 6, None),
    g("rnn_tanh_unbatched_h0_ghn", T, F64, 4, 5, 6, None, h0=True, ghn=True),
    g("rnn_tanh_unbatched_bidir_ghn", T, F64, 3, 4, 5, None, bidirectional=True, ghn=True),
    g("rnn_relu_unbatched_l2_bidir_h0_ghn", R, F64, 4, 5, 6, None, num_layers=2, bidirectional=True,
      h0=True, ghn=True),
    g("rnn_tanh_seq1_l2_h0_ghn", T, F64, 3, 4, 1, 3, num_layers=2, h0=True, ghn=True),
    g("rnn_relu_seq1_bidir_ghn", R, F64, 3, 4, 1, 2, bidirectional=True, ghn=True),
    g("rnn_tanh_batch1_bidir_h0_ghn", T, F64, 3, 4, 5, 1, bidirectional=True, h0=True, ghn=True),
    g("rnn_tanh_dropout_l2_eval_h0_ghn", T, F64, 3, 4, 5, 2, num_layers=2, dropout=0.3, h0=True, ghn=True),
    g("rnn_tanh_odd_sizes", T, F64, 7, 17, 8, 3, num_layers=2, batch_first=True, bidirectional=True,
      h0=True, ghn=True),
    g("rnn_relu_odd_sizes", R, F64, 7, 17, 7, 3, bidirectional=True, h0=True, ghn=True, scale=0.3),
    g("rnn_tanh_l2_bidir_h0_ghn", T, F32, 3, 4, 6, 3, num_layers=2, bidirectional=True, h0=True, ghn=True),
    g("rnn_relu_l1_bf_h0_ghn", R, F32, 3, 5, 6, 3, batch_first=True, h0=True, ghn=True),
    g("rnn_relu_l3_bidir_nobias_ghn", R, F32, 4, 5, 6, 2, num_layers=3, bias=False, bidirectional=True, ghn=True),
    g("rnn_tanh_unbatched_h0", T, F32, 4, 5, 6, None, h0=True),
    # --- LSTM -----------------------------------------------------------------
    g("lstm_l1", LS, F64, 3, 4, 5, 2),
    g("lstm_l1_h0_ghn", LS, F64, 3, 4, 5, 2, h0=True, ghn=True),
    g("lstm_l1_nobias_ghn", LS, F64, 3, 4, 5, 2, bias=False, ghn=True),
    g("lstm_l2_bf_h0", LS, F64, 3, 5, 6, 3, num_layers=2, batch_first=True, h0=True),
    g("lstm_l3_h0_ghn", LS, F64, 4, 5, 6, 2, num_layers=3, h0=True, ghn=True),
    g("lstm_bidir_h0_ghn", LS, F64, 3, 4, 5, 2, bidirectional=True, h0=True, ghn=True),
    g("lstm_l2_bidir_bf_ghn", LS, F64, 3, 4, 6, 3, num_layers=2, batch_first=True, bidirectional=True, ghn=True),
    g("lstm_l3_bidir_nobias_h0_ghn", LS, F64, 2, 3, 5, 2, num_layers=3, bias=False, bidirectional=True,
      h0=True, ghn=True),
    g("lstm_unbatched_h0_ghn", LS, F64, 4, 5, 6, None, h0=True, ghn=True),
    g("lstm_unbatched_l2_bidir", LS, F64, 3, 4, 5, None, num_layers=2, bidirectional=True),
    g("lstm_seq1_l2_bidir_h0_ghn", LS, F64, 3, 4, 1, 3, num_layers=2, bidirectional=True, h0=True, ghn=True),
    g("lstm_dropout_l2_eval_h0_ghn", LS, F64, 3, 4, 5, 2, num_layers=2, dropout=0.3, h0=True, ghn=True),
    g("lstm_proj_l1_h0_ghn", LS, F64, 3, 6, 5, 2, proj_size=2, h0=True, ghn=True),
    g("lstm_proj_l1_bidir", LS, F64, 3, 5, 4, 2, proj_size=3, bidirectional=True),
    g("lstm_proj_l2_bf_h0_ghn", LS, F64, 4, 5, 6, 2, num_layers=2, batch_first=True, proj_size=2,
      h0=True, ghn=True),
    g("lstm_proj_l2_bidir_h0_ghn", LS, F64, 3, 6, 5, 3, num_layers=2, bidirectional=True, proj_size=4,
      h0=True, ghn=True),
    g("lstm_proj_l3_bidir_nobias_bf_ghn", LS, F64, 4, 5, 5, 2, num_layers=3, bias=False, batch_first=True,
      bidirectional=True, proj_size=1, ghn=True),
    g("lstm_proj_unbatched_bidir_h0_ghn", LS, F64, 3, 4, 5, None, bidirectional=True, proj_size=2,
      h0=True, ghn=True),
    g("lstm_proj_seq1_unbatched_h0", LS, F64, 3, 4, 1, None, proj_size=3, h0=True),
    g("lstm_odd_sizes", LS, F64, 7, 17, 8, 3, batch_first=True, bidirectional=True, proj_size=5,
      h0=True, ghn=True, scale=0.5),
    g("lstm_l2_bidir_h0_ghn", LS, F32, 3, 4, 6, 3, num_layers=2, bidirectional=True, h0=True, ghn=True),
    g("lstm_proj_l2_bidir_bf_h0_ghn", LS, F32, 3, 6, 5, 2, num_layers=2, batch_first=True, bidirectional=True,
      proj_size=3, h0=True, ghn=True),
    g("lstm_unbatched_ghn", LS, F32, 4, 5, 6, None, ghn=True),
    # --- GRU ------------------------------------------------------------------
    g("gru_l1", GR, F64, 3, 4, 5, 2),
    g("gru_l1_h0_ghn", GR, F64, 3, 4, 5, 2, h0=True, ghn=True),
    g("gru_l1_nobias_h0_ghn", GR, F64, 3, 4, 5, 2, bias=False, h0=True, ghn=True),
    g("gru_l3_nobias_bf_ghn", GR, F64, 4, 5, 6, 2, num_layers=3, bias=False, batch_first=True, ghn=True),
    g("gru_bidir_h0_ghn", GR, F64, 3, 4, 5, 2, bidirectional=True, h0=True, ghn=True),
    g("gru_l2_bidir_bf_ghn", GR, F64, 3, 4, 6, 3, num_layers=2, batch_first=True, bidirectional=True, ghn=True),
    g("gru_l3_bidir_h0_ghn", GR, F64, 2, 3, 5, 2, num_layers=3, bidirectional=True, h0=True, ghn=True),
    g("gru_unbatched_h0_ghn", GR, F64, 4, 5, 6, None, h0=True, ghn=True),
    g("gru_unbatched_l2_bidir", GR, F64, 3, 4, 5, None, num_layers=2, bidirectional=True),
    g("gru_seq1_bidir_h0_ghn", GR, F64, 3, 4, 1, 3, bidirectional=True, h0=True, ghn=True),
    g("gru_odd_sizes", GR, F64, 7, 17, 8, 3, batch_first=True, bidirectional=True, h0=True, ghn=True,
      scale=0.5),
    g("gru_l2_bidir_h0_ghn", GR, F32, 3, 4, 6, 3, num_layers=2, bidirectional=True, h0=True, ghn=True),
    g("gru_unbatched_bidir_h0_ghn", GR, F32, 3, 4, 5, None, bidirectional=True, h0=True, ghn=True),
    # --- variable lengths (pack_padded_sequence(enforce_sorted=False) / pad_packed_sequence) ----------
    g("len_rnn_tanh_sorted_h0_ghn", T, F64, 3, 4, 6, 3, lengths=[6, 4, 2], h0=True, ghn=True),
    g("len_rnn_tanh_unsorted", T, F64, 3, 4, 5, 3, lengths=[2, 5, 3]),
    g("len_rnn_tanh_bidir_unsorted_h0_ghn", T, F64, 3, 4, 5, 4, lengths=[2, 5, 1, 4], bidirectional=True,
      h0=True, ghn=True),
    g("len_rnn_relu_l2_bidir_bf_unsorted_ghn", R, F64, 3, 4, 7, 4, lengths=[3, 7, 1, 5], num_layers=2,
      batch_first=True, bidirectional=True, ghn=True),
    g("len_lstm_sorted_h0_ghn", LS, F64, 3, 4, 5, 4, lengths=[5, 3, 3, 1], h0=True, ghn=True),
    g("len_lstm_unsorted", LS, F64, 3, 4, 6, 3, lengths=[2, 6, 4]),
    g("len_lstm_bidir_bf_unsorted_h0_ghn", LS, F64, 3, 4, 8, 4, lengths=[3, 7, 2, 5], batch_first=True,
      bidirectional=True, h0=True, ghn=True),
    g("len_lstm_proj_l2_bidir_unsorted_h0_ghn", LS, F64, 4, 5, 6, 4, lengths=[2, 4, 6, 1], num_layers=2,
      bidirectional=True, proj_size=2, h0=True, ghn=True),
    g("len_gru_sorted_bidir_ghn", GR, F64, 3, 4, 4, 3, lengths=[4, 2, 1], bidirectional=True, ghn=True),
    g("len_gru_l2_bidir_unsorted_h0_ghn", GR, F64, 3, 4, 5, 4, lengths=[1, 4, 3, 5], num_layers=2,
      bidirectional=True, h0=True, ghn=True),
    g("len_gru_bf_unsorted_h0", GR, F64, 3, 4, 6, 3, lengths=[3, 6, 2], batch_first=True, h0=True),
    g("len_rnn_relu_bidir_unsorted_h0_ghn", R, F32, 3, 4, 6, 3, lengths=[4, 6, 2], bidirectional=True,
      h0=True, ghn=True),
    g("len_lstm_bidir_unsorted_h0_ghn", LS, F32, 3, 4, 6, 4, lengths=[3, 6, 1, 4], bidirectional=True,
      h0=True, ghn=True),
    g("len_gru_sorted_bf_h0_ghn", GR, F32, 3, 4, 5, 3, lengths=[5, 3, 2], batch_first=True, h0=True, ghn=True),
]


# ---------------------------------------------------------------------------
# Forward / backward
# ---------------------------------------------------------------------------


def case_config(case: GCase) -> dict:
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
        "dtype": case.dtype,
        "unbatched": case.batch is None,
        "has_h0": case.has_h0,
        "has_c0": case.has_h0 and case.mode == "lstm",
        "has_grad_h_n": case.has_grad_h_n,
        "has_grad_c_n": case.has_grad_h_n and case.mode == "lstm",
        "lengths": case.lengths is not None,
        "torch_version": TORCH_VERSION,
    }
    if case.lengths is not None:
        config["enforce_sorted"] = False
    return config


def module_for(cfg: dict) -> nn.Module:
    m = build_module(cfg["mode"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], cfg["bias"],
                     cfg["batch_first"], cfg["dropout"], cfg["bidirectional"], cfg["proj_size"])
    return cast_module(m, cfg["dtype"]).eval()


def forward_backward(module: nn.Module, mode: str, t: dict[str, torch.Tensor], batch_first: bool):
    """Forward with autograd, then the vector-Jacobian product with the stored grad_* tensors.

    ``torch.autograd.grad(outs, leaves, grad_outputs)`` is exactly the gradient of
    ``sum(output*grad_output) + sum(h_n*grad_h_n) [+ sum(c_n*grad_c_n)]`` (terms without a
    stored grad_* tensor are left out).  Returns (output, h_n, c_n | None, {grad name: tensor}).
    """
    x = t["input"].detach().clone().requires_grad_(True)
    h0 = t["h0"].detach().clone().requires_grad_(True) if "h0" in t else None
    c0 = t["c0"].detach().clone().requires_grad_(True) if "c0" in t else None
    lengths = t.get("lengths")
    hx = ((h0, c0) if mode == "lstm" else h0) if h0 is not None else None
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        inp = x
        if lengths is not None:
            inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, state = module(inp, hx) if hx is not None else module(inp)
        if lengths is not None:
            total = x.shape[1 if batch_first else 0]
            out, out_lengths = pad_packed_sequence(out, batch_first=batch_first, total_length=total)
            assert torch.equal(out_lengths, lengths)
        h_n, c_n = state if mode == "lstm" else (state, None)

        outs, gouts = [out], [t["grad_output"]]
        if "grad_h_n" in t:
            outs.append(h_n)
            gouts.append(t["grad_h_n"])
        if "grad_c_n" in t:
            outs.append(c_n)
            gouts.append(t["grad_c_n"])
        names = [f"grad.{k}" for k, _ in module.named_parameters()] + ["grad.input"]
        leaves = [p for _, p in module.named_parameters()] + [x]
        if h0 is not None:
            names.append("grad.h0")
            leaves.append(h0)
        if c0 is not None:
            names.append("grad.c0")
            leaves.append(c0)
        grads = torch.autograd.grad(outs, leaves, gouts, allow_unused=True)
    result = {}
    for name, leaf, gr in zip(names, leaves, grads):
        assert gr is not None, f"{name} unused by the graph"
        assert gr.shape == leaf.shape and gr.dtype == leaf.dtype, name
        result[name] = gr.detach().contiguous()
    return out.detach(), h_n.detach(), (c_n.detach() if c_n is not None else None), result


def state_shapes(case: GCase) -> tuple[tuple[int, ...], tuple[int, ...]]:
    d = 2 if case.bidirectional else 1
    lead = (d * case.num_layers,) if case.batch is None else (d * case.num_layers, case.batch)
    return lead + ((case.proj_size or case.hidden_size),), lead + (case.hidden_size,)


def relu_preactivation_stats(module: nn.Module, cfg: dict, t: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(smallest |W_ih x + b_ih + W_hh h + b_hh|, smallest fraction of positive pre-activations
    of any layer / direction) over every step a relu RNN really computes, recomputed in
    float64 one sequence at a time (only the first ``lengths[b]`` steps)."""
    p = {k: v.detach().double() for k, v in module.state_dict().items()}
    x = t["input"].double()
    d = 2 if cfg["bidirectional"] else 1
    if cfg["unbatched"]:
        seqs = [(x, t["h0"].double() if "h0" in t else None)]
    else:
        xb = x if cfg["batch_first"] else x.transpose(0, 1)  # (N, L, I)
        lens = t["lengths"].tolist() if "lengths" in t else [xb.shape[1]] * xb.shape[0]
        seqs = [(xb[b, :n], t["h0"][:, b].double() if "h0" in t else None) for b, n in enumerate(lens)]
    smallest = float("inf")
    positive: dict[tuple[int, int], list[float]] = {}
    for seq, h0 in seqs:
        layer_in = seq
        for k in range(cfg["num_layers"]):
            dir_outs = []
            for r in range(d):
                sfx = f"l{k}" + ("_reverse" if r else "")
                h = h0[k * d + r] if h0 is not None else torch.zeros(cfg["hidden_size"], dtype=torch.float64)
                steps = range(layer_in.shape[0])
                outs = [None] * layer_in.shape[0]
                for s in (reversed(steps) if r else steps):
                    pre = p[f"weight_ih_{sfx}"] @ layer_in[s] + p[f"weight_hh_{sfx}"] @ h
                    if cfg["bias"]:
                        pre = pre + p[f"bias_ih_{sfx}"] + p[f"bias_hh_{sfx}"]
                    smallest = min(smallest, pre.abs().min().item())
                    positive.setdefault((k, r), []).extend((pre > 0).double().tolist())
                    h = torch.relu(pre)
                    outs[s] = h
                dir_outs.append(torch.stack(outs))
            layer_in = torch.cat(dir_outs, dim=-1)
    return smallest, min(sum(v) / len(v) for v in positive.values())


def draw_case(case: GCase, attempt: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    seed_name = f"grads/{case.name}" + (f"#{attempt}" if attempt else "")
    torch.manual_seed(seed_for(seed_name))
    tdtype = DTYPES[case.dtype]
    module = module_for(case_config(case))
    if case.batch is None:
        in_shape = (case.seq_len, case.input_size)
    elif case.batch_first:
        in_shape = (case.batch, case.seq_len, case.input_size)
    else:
        in_shape = (case.seq_len, case.batch, case.input_size)
    t: dict[str, torch.Tensor] = {"input": torch.randn(in_shape, dtype=tdtype) * case.scale}
    h_shape, c_shape = state_shapes(case)
    if case.has_h0:
        t["h0"] = torch.randn(h_shape, dtype=tdtype) * case.scale
        if case.mode == "lstm":
            t["c0"] = torch.randn(c_shape, dtype=tdtype) * case.scale
    if case.lengths is not None:
        lengths = torch.tensor(case.lengths, dtype=torch.int64)
        pad_mask = torch.arange(case.seq_len).view(-1, 1) >= lengths.view(1, -1)  # (L, N)
        if case.batch_first:
            pad_mask = pad_mask.t()
        garbage = 5.0 + torch.rand(in_shape, dtype=tdtype) * 5.0
        garbage = torch.where(torch.rand(in_shape) < 0.5, garbage, -garbage)
        t["input"] = torch.where(pad_mask.unsqueeze(-1), garbage, t["input"])
        t["lengths"] = lengths
    # Output shape: (L, N, D*H_out) / (N, L, D*H_out) / (L, D*H_out).
    d = 2 if case.bidirectional else 1
    t["grad_output"] = torch.randn(in_shape[:-1] + (d * (case.proj_size or case.hidden_size),), dtype=tdtype)
    if case.has_grad_h_n:
        t["grad_h_n"] = torch.randn(h_shape, dtype=tdtype)
        if case.mode == "lstm":
            t["grad_c_n"] = torch.randn(c_shape, dtype=tdtype)
    return module, t


def write_case(case: GCase) -> tuple[Path, int, float | None]:
    cfg = case_config(case)
    margin = None
    for attempt in range(MAX_ATTEMPTS):
        module, t = draw_case(case, attempt)
        if case.mode != "rnn_relu":
            break
        margin, active = relu_preactivation_stats(module, cfg, t)
        if margin >= RELU_MARGIN[case.dtype] and active >= RELU_MIN_ACTIVE:
            break
    else:
        raise RuntimeError(f"{case.name}: no relu draw with margin {RELU_MARGIN[case.dtype]}, "
                           f"active {RELU_MIN_ACTIVE}")

    out, h_n, c_n, grads = forward_backward(module, case.mode, t, case.batch_first)
    assert out.shape == t["grad_output"].shape, case.name
    if "grad_h_n" in t:
        assert h_n.shape == t["grad_h_n"].shape
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    tensors.update({k: v.contiguous() for k, v in t.items()})
    tensors["output"] = out.contiguous()
    tensors["h_n"] = h_n.contiguous()
    if c_n is not None:
        tensors["c_n"] = c_n.contiguous()
    tensors.update(grads)
    tdtype = DTYPES[case.dtype]
    assert all(v.dtype == (torch.int64 if k == "lengths" else tdtype) for k, v in tensors.items())
    assert all(v.is_contiguous() for v in tensors.values())
    path = GRADS_DIR / f"{case.name}.safetensors"
    save_safetensors(tensors, path, module_metadata(case.mode, case.batch_first, cfg))
    return path, attempt, margin


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


def _load(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    # Clones: aligned copies (see make_fixtures.verify on f32 ulp differences).
    return meta, {k: v.clone() for k, v in load_file(str(path)).items()}


def _params(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in t.items() if k not in IO_KEYS and not k.startswith("grad.")}


def _finite_difference_check(module: nn.Module, cfg: dict, t: dict[str, torch.Tensor]) -> float:
    """float64: directional derivative along 3 random directions (all leaves at once) by
    central differences vs the stored gradients.  Returns the worst relative error."""
    params = dict(module.named_parameters())
    leaf_names = list(params) + ["input"] + [k for k in ("h0", "c0") if k in t]
    base = {k: (params[k].detach().clone() if k in params else t[k].clone()) for k in leaf_names}

    def loss(vals: dict[str, torch.Tensor]) -> float:
        with torch.no_grad():
            for k in params:
                params[k].copy_(vals[k])
            tt = dict(t)
            tt.update({k: vals[k] for k in ("input", "h0", "c0") if k in vals})
            out, h_n, c_n, _ = forward_backward(module, cfg["mode"], tt, cfg["batch_first"])
        total = (out * t["grad_output"]).sum()
        if "grad_h_n" in t:
            total = total + (h_n * t["grad_h_n"]).sum()
        if "grad_c_n" in t:
            total = total + (c_n * t["grad_c_n"]).sum()
        return total.item()

    gen = torch.Generator().manual_seed(seed_for("grads/fd/" + json.dumps(cfg, sort_keys=True)))
    worst = 0.0
    eps = 1e-6
    for _ in range(3):
        v = {k: torch.randn(base[k].shape, generator=gen, dtype=torch.float64) for k in leaf_names}
        analytic = sum((t[f"grad.{k}"] * v[k]).sum().item() for k in leaf_names)
        plus = loss({k: base[k] + eps * v[k] for k in leaf_names})
        minus = loss({k: base[k] - eps * v[k] for k in leaf_names})
        numeric = (plus - minus) / (2 * eps)
        rel = abs(analytic - numeric) / (1.0 + abs(numeric))
        assert rel < 1e-6, (cfg, analytic, numeric)
        worst = max(worst, rel)
    with torch.no_grad():
        for k in params:
            params[k].copy_(base[k])
    return worst


def _per_sequence_check(cfg: dict, t: dict[str, torch.Tensor]) -> float:
    """A lengths case equals running each sequence alone (unbatched, first len steps, its own
    h0 / c0 / grad slices): grad.input / grad.h0 / grad.c0 slice by slice, parameter
    gradients summed over the sequences; grad.input is exactly 0 past each length."""
    bf = cfg["batch_first"]
    lengths = t["lengths"].tolist()
    acc: dict[str, torch.Tensor] = {}
    worst = 0.0
    tol = 1e-10 if cfg["dtype"] == "float64" else 1e-4

    def close(a, b, what):
        nonlocal worst
        diff = (a - b).abs().max().item() if a.numel() else 0.0
        assert diff <= tol * (1 + b.abs().max().item()), (what, diff)
        worst = max(worst, diff)

    for b, n in enumerate(lengths):
        sl = (b, slice(0, n)) if bf else (slice(0, n), b)
        ts = {"input": t["input"][sl].contiguous(), "grad_output": t["grad_output"][sl].contiguous()}
        for k in ("h0", "c0", "grad_h_n", "grad_c_n"):
            if k in t:
                ts[k] = t[k][:, b].contiguous()
        module = module_for({**cfg, "unbatched": True})
        module.load_state_dict(_params(t))
        out, h_n, c_n, grads = forward_backward(module, cfg["mode"], ts, bf)
        close(out, t["output"][sl], ("output", b))
        close(h_n, t["h_n"][:, b], ("h_n", b))
        close(grads["grad.input"], t["grad.input"][sl], ("grad.input", b))
        pad = (b, slice(n, None)) if bf else (slice(n, None), b)
        assert torch.all(t["grad.input"][pad] == 0), "grad.input not zero past length"
        assert torch.all(t["output"][pad] == 0), "output not zero past length"
        for k in ("h0", "c0"):
            if k in t:
                close(grads[f"grad.{k}"], t[f"grad.{k}"][:, b], (f"grad.{k}", b))
        for k, v in grads.items():
            if k not in ("grad.input", "grad.h0", "grad.c0"):
                acc[k] = acc[k] + v if k in acc else v
    for k, v in acc.items():
        close(v, t[k], k)
    return worst


def verify_grads() -> dict[str, float]:
    stats = {"fd_rel": 0.0, "per_seq_float32": 0.0, "per_seq_float64": 0.0}
    for path in sorted(GRADS_DIR.glob("*.safetensors")):
        meta, t = _load(path)
        cfg = json.loads(meta["config"])
        assert meta["mode"] == cfg["mode"] and meta["format"] == "pt"
        assert cfg["torch_version"] == meta["torch_version"] == TORCH_VERSION
        assert ("h0" in t) == cfg["has_h0"] and ("c0" in t) == cfg["has_c0"], path
        assert ("grad_h_n" in t) == cfg["has_grad_h_n"] and ("grad_c_n" in t) == cfg["has_grad_c_n"], path
        assert ("c_n" in t) == (cfg["mode"] == "lstm") and ("lengths" in t) == cfg["lengths"], path
        assert all(v.is_contiguous() for v in t.values())
        module = module_for(cfg)
        module.load_state_dict(_params(t))  # strict: exactly torch's parameter names
        expected = {f"grad.{k}" for k, _ in module.named_parameters()} | {"grad.input"}
        expected |= {f"grad.{k}" for k in ("h0", "c0") if k in t}
        assert {k for k in t if k.startswith("grad.")} == expected, path
        out, h_n, c_n, grads = forward_backward(module, cfg["mode"], t, cfg["batch_first"])
        assert torch.equal(out, t["output"]) and torch.equal(h_n, t["h_n"]), path
        if c_n is not None:
            assert torch.equal(c_n, t["c_n"]), path
        for k, v in grads.items():
            assert torch.equal(v, t[k]), (path, k, (v - t[k]).abs().max().item())
        if cfg["dtype"] == "float64":
            stats["fd_rel"] = max(stats["fd_rel"], _finite_difference_check(module, cfg, t))
        if cfg["lengths"]:
            key = f"per_seq_{cfg['dtype']}"
            stats[key] = max(stats[key], _per_sequence_check(cfg, t))
    return stats


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def write_all() -> list[Path]:
    shutil.rmtree(GRADS_DIR, ignore_errors=True)
    GRADS_DIR.mkdir(parents=True)
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    paths, redraws, margins = [], [], []
    for case in CASES:
        path, attempt, margin = write_case(case)
        paths.append(path)
        if attempt:
            redraws.append(f"{case.name}:{attempt}")
        if margin is not None:
            margins.append(margin)
    stats = verify_grads()
    size = sum(p.stat().st_size for p in paths)
    print(f"grads re-run: bit-identical; float64 finite differences max rel err {stats['fd_rel']:.3g}; "
          f"lengths vs one-sequence-at-a-time max |diff|: float32 {stats['per_seq_float32']:.3g}, "
          f"float64 {stats['per_seq_float64']:.3g}")
    if margins:
        print(f"grads relu min |pre-activation| {min(margins):.3g}; redrawn: {', '.join(redraws) or 'none'}")
    print(f"{'grads':<10} {len(paths):3d} files {size:9d} bytes")
    return paths


if __name__ == "__main__":
    write_all()
