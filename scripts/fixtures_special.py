"""PyTorch fixtures for IEEE special values: NaN and +-Inf in a weight, a bias, the
input or the initial state, and how torch propagates them.

Run on its own from the repository root (it needs torch, numpy and safetensors)::

    python3 -m venv .venv && .venv/bin/pip install torch numpy safetensors
    .venv/bin/python scripts/fixtures_special.py

Deterministic (``torch.manual_seed`` per case from a crc32 of its name) and idempotent:
it deletes and rewrites ``crates/recurrent/tests/fixtures/special/`` only.

Layout: the conventions of ``fixtures_family.py``.  ``<mode>_<case>.safetensors`` holds
the module's ``state_dict`` (torch's unprefixed names) with one special value placed,
``input``, optional ``h0`` (+ ``c0``), and torch's ``output``, ``h_n`` (+ ``c_n``);
``cell_<cell>_<case>.safetensors`` holds a cell's parameters, ``input``, optional ``hx``
(+ ``cx``) and torch's ``h`` (+ ``c``).  Metadata: ``"format": "pt"``, ``"config"``
(the JSON of ``fixtures_family``'s ``case_config`` / ``cell_config``, plus ``"special"``:
the tensor, index and value placed) and ``"torch_version"``.

The point of most cases is torch's ``0 * NaN = NaN`` and ``0 * Inf = NaN``: with no
initial state torch still multiplies its zero state by ``weight_hh`` (and an LSTM cell's
forget gate by its zero cell state), so one special value there reaches every output.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures_family import (  # noqa: E402  (shared helpers, no side effects on import)
    FCase,
    build_cell,
    case_config,
    module_for,
    module_metadata,
    run_cell,
    run_module,
    state_shapes,
)
from make_fixtures import FIXTURES, TORCH_VERSION, save_safetensors, seed_for  # noqa: E402

SPECIAL_DIR = FIXTURES / "special"
VALUES = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}

# (name, tensor, index, value, has_h0): one special value each, float32, L = 3, N = 2.
MODULE_PLACEMENTS = [
    ("whh_nan_no_h0", "weight_hh_l0", (1, 2), "nan", False),
    ("whh_inf_no_h0", "weight_hh_l0", (0, 1), "inf", False),
    ("input_inf", "input", (1, 0, 2), "inf", False),
    ("input_ninf_h0", "input", (0, 1, 1), "-inf", True),
    ("bias_ih_nan", "bias_ih_l0", (2,), "nan", False),
    ("h0_inf", "h0", (0, 1, 3), "inf", True),
]
MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def place(tensor: torch.Tensor, index: tuple[int, ...], value: str) -> None:
    with torch.no_grad():
        tensor[index] = VALUES[value]


def write_module(mode: str, name: str, tensor: str, index, value: str, has_h0: bool,
                 num_layers: int = 1, bidirectional: bool = False, proj_size: int = 0) -> Path:
    case = FCase(name=f"{mode}_{name}", mode=mode, input_size=3, hidden_size=4, seq_len=3, batch=2,
                 num_layers=num_layers, bidirectional=bidirectional, proj_size=proj_size,
                 has_h0=has_h0)
    torch.manual_seed(seed_for(f"special/{case.name}"))
    module = module_for(case, "float32")
    x = torch.randn(case.seq_len, case.batch, case.input_size)
    h_shape, c_shape = state_shapes(case)
    h0 = torch.randn(h_shape) if has_h0 else None
    c0 = torch.randn(c_shape) if has_h0 and mode == "lstm" else None
    named = {"input": x, "h0": h0, "c0": c0, **dict(module.named_parameters())}
    place(named[tensor], index, value)
    out, h_n, c_n = run_module(module, mode, x, h0, c0)

    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    tensors["input"] = x.contiguous()
    if h0 is not None:
        tensors["h0"] = h0.contiguous()
    if c0 is not None:
        tensors["c0"] = c0.contiguous()
    tensors["output"] = out.contiguous()
    tensors["h_n"] = h_n.contiguous()
    if c_n is not None:
        tensors["c_n"] = c_n.contiguous()
    config = case_config(case, "float32")
    config["special"] = {"tensor": tensor, "index": list(index), "value": value}
    path = SPECIAL_DIR / f"{case.name}.safetensors"
    save_safetensors(tensors, path, module_metadata(mode, False, config))
    return path


def write_cell(cell: str, name: str, tensor: str, index, value: str) -> Path:
    """A cell with no state given (torch multiplies its zero state all the same)."""
    full = f"cell_{cell}_{name}"
    torch.manual_seed(seed_for(f"special/{full}"))
    module = build_cell(cell, 3, 4).float().eval()
    x = torch.randn(2, 3)
    place(dict(module.named_parameters())[tensor], index, value)
    h, c = run_cell(module, cell, x, None, None)
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    tensors["input"] = x.contiguous()
    tensors["h"] = h.contiguous()
    if c is not None:
        tensors["c"] = c.contiguous()
    config = {"cell": cell, "input_size": 3, "hidden_size": 4,
              "nonlinearity": cell[4:] if cell.startswith("rnn_") else None, "bias": True,
              "dtype": "float32", "unbatched": False, "has_hx": False,
              "special": {"tensor": tensor, "index": list(index), "value": value}}
    meta = {"format": "pt", "cell": cell, "config": json.dumps(config), "torch_version": TORCH_VERSION}
    path = SPECIAL_DIR / f"{full}.safetensors"
    save_safetensors(tensors, path, meta)
    return path


def write_all() -> list[Path]:
    shutil.rmtree(SPECIAL_DIR, ignore_errors=True)
    SPECIAL_DIR.mkdir(parents=True)
    paths = []
    for mode in MODES:
        for placement in MODULE_PLACEMENTS:
            paths.append(write_module(mode, *placement))
    # Deeper layers and the reverse direction start from zeros too.
    for mode in ("rnn_tanh", "lstm", "gru"):
        paths.append(write_module(mode, "l2_bidir_whh_l1_reverse_nan", "weight_hh_l1_reverse", (0, 0),
                                  "nan", False, num_layers=2, bidirectional=True))
    paths.append(write_module("lstm", "proj_whh_inf_no_h0", "weight_hh_l0", (5, 1), "inf", False,
                              proj_size=2))
    for cell in ("rnn_tanh", "lstm", "gru"):
        paths.append(write_cell(cell, "whh_nan_no_hx", "weight_hh", (1, 2), "nan"))
    # The forget gate (rows H..2H) NaN: f * 0 for the zero cell state is NaN in torch.
    paths.append(write_cell("lstm", "forget_bias_nan_no_hx", "bias_ih", (5,), "nan"))
    size = sum(p.stat().st_size for p in paths)
    print(f"special: {len(paths)} files, {size} bytes, torch {TORCH_VERSION}")
    return paths


if __name__ == "__main__":
    write_all()
