#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures used by the `recurrent` crate's tests and demo.

Every expected value in the Rust test-suite comes from running the real
``torch.nn.RNN`` on CPU (eval mode, ``torch.no_grad()``); this script is the
single source of those files.  To regenerate them from the repository root run::

    python3 -m venv .venv && .venv/bin/pip install torch numpy safetensors && .venv/bin/python scripts/make_fixtures.py

The script is deterministic (``torch.manual_seed`` is reset per case from a
stable hash of the case name) and idempotent: it deletes and rewrites
``crates/recurrent/tests/fixtures/forward/``, ``crates/recurrent/tests/fixtures/cli/``,
``crates/recurrent/tests/fixtures/errors.json`` and ``examples/data/``.
It then runs ``scripts/fixtures_family.py`` (LSTM, GRU, cells, variable-length
batches, PackedSequence semantics), which owns ``tests/fixtures/lstm/``,
``gru/``, ``lengths/``, ``cells/``, ``packed/``, ``cli_family/`` and
``errors_family.json``; see that module's docstring for their layout.

Outputs
-------
* ``tests/fixtures/forward/<case>.safetensors`` -- one file per forward case:
  the module's ``state_dict`` under torch's own unprefixed names
  (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), the ``input`` exactly as
  passed to torch, ``h0`` (only if the case passes one), and the expected
  ``output`` and ``h_n``.  The metadata records the configuration as JSON
  under ``"config"``, plus ``"format"``, ``"nonlinearity"``, ``"batch_first"``
  and ``"torch_version"``.
* ``tests/fixtures/errors.json`` -- configurations/inputs torch rejects, with
  the exact ``str(exception)`` torch raised (``null`` if torch accepted it).
* ``tests/fixtures/cli/`` -- checkpoints and ``.npy`` arrays saved the way a
  user would, for end-to-end CLI tests.
* ``examples/data/`` -- the README demo model, input and expected output.
"""

from __future__ import annotations

import json
import shutil
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "crates" / "recurrent" / "tests" / "fixtures"
FORWARD_DIR = FIXTURES / "forward"
CLI_DIR = FIXTURES / "cli"
ERRORS_JSON = FIXTURES / "errors.json"
EXAMPLE_DIR = REPO / "examples" / "data"

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TORCH_VERSION = torch.__version__


def seed_for(name: str) -> int:
    """A stable per-case seed (Python's ``hash`` is salted, crc32 is not)."""
    return zlib.crc32(name.encode("utf-8"))


def cast_module(module: nn.Module, dtype: str) -> nn.Module:
    """Modules are always created in float32 (the default dtype) then cast."""
    return module.double() if dtype == "float64" else module.float()


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` plus a byte-reproducible header.

    safetensors stores ``__metadata__`` from a Rust ``HashMap``, so the key
    order (and therefore the file bytes) changes from run to run.  We rewrite
    the JSON header in place with the metadata keys sorted; the header keeps
    its exact length (safetensors pads it with spaces), so tensor offsets and
    data are untouched and the file stays a valid safetensors file.
    """
    save_file(tensors, str(path), metadata=metadata)
    if not metadata:
        return
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    ordered = {"__metadata__": header.pop("__metadata__"), **header}
    text = json.dumps(ordered, separators=(",", ":")).encode("utf-8")
    assert len(text) <= n, "canonical header longer than the original"
    raw[8 : 8 + n] = text + b" " * (n - len(text))
    path.write_bytes(bytes(raw))


# ---------------------------------------------------------------------------
# Forward cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One forward fixture.  ``batch=None`` means unbatched 2-D input."""

    name: str
    input_size: int
    hidden_size: int
    seq_len: int
    batch: int | None
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    dropout: float = 0.0
    has_h0: bool = False
    # Inputs / h0 are randn * scale; relu cases use < 1 to keep values moderate.
    scale: float = 1.0


# Cases generated for BOTH float32 and float64; the dtype prefix is added later.
SHARED_CASES = [
    # The README-style reference configuration L=4, N=5, H_in=2, H=3.
    Case("l1_tanh", 2, 3, 4, 5),
    Case("l1_tanh_h0", 2, 3, 4, 5, has_h0=True),
    Case("l1_relu_h0", 2, 3, 4, 5, nonlinearity="relu", has_h0=True, scale=0.5),
    Case("l1_tanh_nobias", 3, 4, 5, 2, bias=False),
    Case("l1_relu_nobias_h0", 3, 4, 5, 2, nonlinearity="relu", bias=False, has_h0=True, scale=0.5),
    Case("l1_tanh_bf_h0", 3, 5, 6, 3, batch_first=True, has_h0=True),
    Case("l2_tanh_h0", 3, 4, 5, 2, num_layers=2, has_h0=True),
    Case("l2_relu_bf", 4, 6, 7, 3, num_layers=2, nonlinearity="relu", batch_first=True, scale=0.5),
    Case("l3_relu", 4, 5, 6, 2, num_layers=3, nonlinearity="relu", scale=0.5),
    Case("l3_tanh_nobias_h0", 3, 4, 5, 2, num_layers=3, bias=False, has_h0=True),
    Case("l1_bidir_tanh_h0", 3, 4, 5, 2, bidirectional=True, has_h0=True),
    Case("l1_bidir_relu_bf", 3, 4, 5, 2, nonlinearity="relu", batch_first=True, bidirectional=True, scale=0.5),
    # Multi-layer bidirectional: layer k>0 reads a 2H-wide input.
    Case("l2_bidir_tanh_h0", 3, 4, 6, 3, num_layers=2, bidirectional=True, has_h0=True),
    Case("l3_bidir_relu_nobias_bf", 4, 5, 6, 2, num_layers=3, nonlinearity="relu", bias=False,
         batch_first=True, bidirectional=True, scale=0.5),
    Case("l3_bidir_tanh_bf_h0", 2, 3, 5, 4, num_layers=3, batch_first=True, bidirectional=True, has_h0=True),
    # Unbatched (L, H_in) input; h0 is then (D*layers, H).
    Case("unbatched_tanh", 4, 5, 6, None),
    Case("unbatched_l2_tanh_h0", 4, 5, 6, None, num_layers=2, has_h0=True),
    Case("unbatched_bidir_relu_h0", 4, 5, 6, None, nonlinearity="relu", bidirectional=True, has_h0=True, scale=0.5),
    Case("unbatched_l2_bidir_tanh", 3, 4, 5, None, num_layers=2, bidirectional=True),
    # batch_first has no effect on unbatched input, but must be accepted.
    Case("unbatched_bf_relu", 3, 4, 5, None, nonlinearity="relu", batch_first=True, scale=0.5),
    # Degenerate lengths / batch sizes.
    Case("seq1_l2_tanh_h0", 3, 4, 1, 3, num_layers=2, has_h0=True),
    Case("seq1_unbatched_bidir", 3, 4, 1, None, bidirectional=True),
    Case("batch1_bidir_relu_h0", 3, 4, 5, 1, nonlinearity="relu", bidirectional=True, has_h0=True, scale=0.5),
    Case("batch1_bf_tanh", 3, 4, 5, 1, batch_first=True),
    Case("empty_batch", 4, 3, 3, 0),
    # Dropout is only active in training mode; in eval it must be a no-op.
    Case("dropout_l2_eval_h0", 3, 4, 5, 2, num_layers=2, dropout=0.3, has_h0=True),
    # Odd sizes exercising non-power-of-two shapes everywhere.
    Case("odd_sizes", 7, 17, 13, 3, num_layers=2, nonlinearity="relu", batch_first=True,
         bidirectional=True, has_h0=True, scale=0.3),
]

# A few extra cases only generated once, to keep the fixture folder small.
EXTRA_CASES = [
    ("float64", Case("empty_batch_h0_bf", 4, 3, 3, 0, batch_first=True, bidirectional=True, has_h0=True)),
    ("float64", Case("combo_a", 5, 9, 11, 4, num_layers=2, nonlinearity="tanh", bias=False,
                     batch_first=True, bidirectional=True, dropout=0.5, has_h0=True)),
    ("float32", Case("combo_b", 6, 33, 20, 5, num_layers=1, nonlinearity="tanh", has_h0=True)),
    ("float32", Case("combo_c", 1, 2, 9, 3, num_layers=3, nonlinearity="relu", bidirectional=True,
                     has_h0=True, scale=0.5)),
    ("float64", Case("combo_d", 11, 1, 8, 2, num_layers=2, nonlinearity="relu", batch_first=True, scale=0.5)),
    ("float32", Case("combo_e", 8, 13, 7, None, num_layers=3, nonlinearity="tanh", bias=False,
                     bidirectional=True, has_h0=True)),
]


def all_cases() -> list[tuple[str, Case]]:
    """(dtype, case) pairs with the ``f32_``/``f64_`` prefix added to each name."""
    pairs = [(dtype, case) for dtype in DTYPES for case in SHARED_CASES] + EXTRA_CASES
    out = []
    for dtype, case in pairs:
        prefix = "f32" if dtype == "float32" else "f64"
        out.append((dtype, Case(**{**case.__dict__, "name": f"{prefix}_{case.name}"})))
    names = [c.name for _, c in out]
    assert len(names) == len(set(names)), "duplicate case names"
    return out


def build_rnn(case: Case, dtype: str) -> nn.RNN:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout warnings are irrelevant here
        rnn = nn.RNN(
            input_size=case.input_size,
            hidden_size=case.hidden_size,
            num_layers=case.num_layers,
            nonlinearity=case.nonlinearity,
            bias=case.bias,
            batch_first=case.batch_first,
            dropout=case.dropout,
            bidirectional=case.bidirectional,
        )
    return cast_module(rnn, dtype).eval()


def write_forward_case(dtype: str, case: Case) -> Path:
    torch.manual_seed(seed_for(case.name))
    tdtype = DTYPES[dtype]
    rnn = build_rnn(case, dtype)
    d = 2 if case.bidirectional else 1

    if case.batch is None:
        in_shape = (case.seq_len, case.input_size)
        h0_shape = (d * case.num_layers, case.hidden_size)
    elif case.batch_first:
        in_shape = (case.batch, case.seq_len, case.input_size)
        h0_shape = (d * case.num_layers, case.batch, case.hidden_size)
    else:
        in_shape = (case.seq_len, case.batch, case.input_size)
        h0_shape = (d * case.num_layers, case.batch, case.hidden_size)

    x = torch.randn(in_shape, dtype=tdtype) * case.scale
    h0 = torch.randn(h0_shape, dtype=tdtype) * case.scale if case.has_h0 else None

    with torch.no_grad():
        output, h_n = rnn(x, h0) if h0 is not None else rnn(x)

    tensors = {k: v.detach().contiguous() for k, v in rnn.state_dict().items()}
    tensors["input"] = x.contiguous()
    if h0 is not None:
        tensors["h0"] = h0.contiguous()
    tensors["output"] = output.contiguous()
    tensors["h_n"] = h_n.contiguous()
    assert all(t.dtype == tdtype for t in tensors.values())

    config = {
        "input_size": case.input_size,
        "hidden_size": case.hidden_size,
        "num_layers": case.num_layers,
        "nonlinearity": case.nonlinearity,
        "bias": case.bias,
        "batch_first": case.batch_first,
        "bidirectional": case.bidirectional,
        "dropout": case.dropout,
        "dtype": dtype,
        "unbatched": case.batch is None,
        "has_h0": case.has_h0,
    }
    metadata = {
        "format": "pt",
        "nonlinearity": case.nonlinearity,
        "batch_first": "true" if case.batch_first else "false",
        "config": json.dumps(config),
        "torch_version": TORCH_VERSION,
    }
    path = FORWARD_DIR / f"{case.name}.safetensors"
    save_safetensors(tensors, path, metadata)
    return path


# ---------------------------------------------------------------------------
# Error cases
# ---------------------------------------------------------------------------

BASE_ERR_CONFIG = {
    "input_size": 4,
    "hidden_size": 3,
    "num_layers": 1,
    "nonlinearity": "tanh",
    "bias": True,
    "batch_first": False,
    "bidirectional": False,
    "dropout": 0.0,
}


def err_case(name, input_shape, h0_shape=None, input_dtype="float32", h0_dtype=None,
             param_dtype="float32", **config_overrides):
    config = {**BASE_ERR_CONFIG, **config_overrides, "dtype": param_dtype}
    return {
        "name": name,
        "config": config,
        "input_shape": list(input_shape),
        "input_dtype": input_dtype,
        "h0_shape": list(h0_shape) if h0_shape is not None else None,
        "h0_dtype": (h0_dtype or input_dtype) if h0_shape is not None else None,
        "param_dtype": param_dtype,
    }


ERROR_CASES = [
    err_case("input_1d", [4]),
    err_case("input_4d", [5, 2, 3, 4]),
    err_case("input_size_mismatch_batched", [5, 2, 3]),
    err_case("input_size_mismatch_unbatched", [5, 3]),
    err_case("input_size_mismatch_batch_first", [2, 5, 6], batch_first=True),
    err_case("h0_wrong_batch", [5, 2, 4], h0_shape=[1, 3, 3]),
    err_case("h0_wrong_first_dim", [5, 2, 4], h0_shape=[2, 2, 3], num_layers=2, bidirectional=True),
    err_case("h0_wrong_first_dim_unbatched", [5, 4], h0_shape=[1, 3], num_layers=2),
    err_case("h0_wrong_hidden", [5, 2, 4], h0_shape=[1, 2, 5]),
    err_case("h0_wrong_hidden_unbatched", [5, 4], h0_shape=[1, 5]),
    err_case("h0_2d_with_3d_input", [5, 2, 4], h0_shape=[1, 3]),
    err_case("h0_3d_with_2d_input", [5, 4], h0_shape=[1, 1, 3]),
    err_case("seq_len_0_batched", [0, 2, 4]),
    err_case("seq_len_0_unbatched", [0, 4]),
    err_case("seq_len_0_batch_first", [2, 0, 4], batch_first=True),
    err_case("nonlinearity_sigmoid", [5, 2, 4], nonlinearity="sigmoid"),
    err_case("input_size_0", [5, 2, 0], input_size=0),
    err_case("hidden_size_0", [5, 2, 4], hidden_size=0),
    err_case("num_layers_0", [5, 2, 4], num_layers=0),
    err_case("dropout_1_5", [5, 2, 4], num_layers=2, dropout=1.5),
    err_case("dropout_neg", [5, 2, 4], num_layers=2, dropout=-0.1),
    err_case("input_f64_params_f32", [5, 2, 4], input_dtype="float64"),
    err_case("input_f32_params_f64", [5, 2, 4], input_dtype="float32", param_dtype="float64"),
    err_case("h0_f64_input_f32", [5, 2, 4], h0_shape=[1, 2, 3], input_dtype="float32", h0_dtype="float64"),
    err_case("h0_f32_input_f64", [5, 2, 4], h0_shape=[1, 2, 3], input_dtype="float64", h0_dtype="float32",
             param_dtype="float64"),
]


def run_error_case(case: dict) -> dict:
    """Run torch on the case; record where and how it failed."""
    cfg = case["config"]
    torch.manual_seed(seed_for(case["name"]))
    result = dict(case)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rnn = nn.RNN(
                input_size=cfg["input_size"],
                hidden_size=cfg["hidden_size"],
                num_layers=cfg["num_layers"],
                nonlinearity=cfg["nonlinearity"],
                bias=cfg["bias"],
                batch_first=cfg["batch_first"],
                dropout=cfg["dropout"],
                bidirectional=cfg["bidirectional"],
            )
    except Exception as exc:  # noqa: BLE001 -- we want the exact message
        result.update(stage="constructor", torch_error=str(exc), torch_exception=type(exc).__name__)
        return result

    rnn = cast_module(rnn, case["param_dtype"]).eval()
    x = torch.randn(case["input_shape"], dtype=DTYPES[case["input_dtype"]])
    h0 = None
    if case["h0_shape"] is not None:
        h0 = torch.randn(case["h0_shape"], dtype=DTYPES[case["h0_dtype"]])
    try:
        with torch.no_grad():
            out, h_n = rnn(x, h0) if h0 is not None else rnn(x)
    except Exception as exc:  # noqa: BLE001
        result.update(stage="forward", torch_error=str(exc), torch_exception=type(exc).__name__)
        return result
    # torch accepted it: keep the case but make that explicit.
    result.update(stage="forward", torch_error=None, torch_exception=None,
                  accepted_output_shape=list(out.shape), accepted_h_n_shape=list(h_n.shape))
    return result


def write_errors() -> list[dict]:
    results = [run_error_case(c) for c in ERROR_CASES]
    ERRORS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    return results


# ---------------------------------------------------------------------------
# CLI fixtures
# ---------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 6)
        self.rnn = nn.RNN(input_size=6, hidden_size=8, num_layers=2, bidirectional=True, nonlinearity="tanh")


class Seq2Vec(nn.Module):
    """A typical user model: keys encoder.embedding.weight, encoder.rnn.*, decoder.*."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = nn.Linear(16, 3)


class Wrapped(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers=num_layers)


class TwoRnns(nn.Module):
    """Two RNNs under ``a.rnn.`` and ``b.rnn.``: prefix auto-detection must be ambiguous."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Wrapped(3, 4, 1)
        self.b = Wrapped(5, 6, 2)


def npsave(path: Path, array: torch.Tensor | np.ndarray) -> None:
    arr = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array
    arr = np.ascontiguousarray(arr)
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    np.save(path, arr, allow_pickle=False)


def write_cli() -> None:
    # --- encoder checkpoint (no metadata, prefixed keys) ------------------
    torch.manual_seed(seed_for("cli_encoder"))
    model = Seq2Vec().eval()
    save_file(model.state_dict(), str(CLI_DIR / "encoder.safetensors"))  # as a user would
    x = torch.randn(7, 3, 6)
    h0 = torch.randn(4, 3, 8)
    xu = torch.randn(5, 6)
    with torch.no_grad():
        out, hn = model.encoder.rnn(x, h0)
        out_n, hn_n = model.encoder.rnn(x)
        out_u, hn_u = model.encoder.rnn(xu)
    npsave(CLI_DIR / "encoder_input.npy", x)
    npsave(CLI_DIR / "encoder_h0.npy", h0)
    npsave(CLI_DIR / "encoder_output.npy", out)
    npsave(CLI_DIR / "encoder_hn.npy", hn)
    npsave(CLI_DIR / "encoder_output_noh0.npy", out_n)
    npsave(CLI_DIR / "encoder_hn_noh0.npy", hn_n)
    npsave(CLI_DIR / "unbatched_input.npy", xu)
    npsave(CLI_DIR / "unbatched_output.npy", out_u)
    npsave(CLI_DIR / "unbatched_hn.npy", hn_u)
    assert out_u.shape == (5, 16) and hn_u.shape == (4, 8)

    # --- plain relu batch_first float64 RNN, with metadata ---------------
    torch.manual_seed(seed_for("cli_relu_bf"))
    rnn = nn.RNN(5, 4, num_layers=1, nonlinearity="relu", batch_first=True).double().eval()
    save_safetensors(rnn.state_dict(), CLI_DIR / "relu_bf.safetensors",
                     metadata={"format": "pt", "nonlinearity": "relu", "batch_first": "true"})
    x = torch.randn(2, 6, 5, dtype=torch.float64) * 0.5
    with torch.no_grad():
        out, hn = rnn(x)
    npsave(CLI_DIR / "relu_bf_input.npy", x)
    npsave(CLI_DIR / "relu_bf_output.npy", out)
    npsave(CLI_DIR / "relu_bf_hn.npy", hn)

    # --- two candidate RNNs (ambiguous prefix) ---------------------------
    torch.manual_seed(seed_for("cli_ambiguous"))
    save_file(TwoRnns().state_dict(), str(CLI_DIR / "ambiguous.safetensors"))


# ---------------------------------------------------------------------------
# README demo data
# ---------------------------------------------------------------------------


def write_example() -> None:
    torch.manual_seed(seed_for("example"))
    rnn = nn.RNN(input_size=4, hidden_size=8, num_layers=2, nonlinearity="tanh").eval()
    save_safetensors(rnn.state_dict(), EXAMPLE_DIR / "model.safetensors",
                     metadata={"format": "pt", "nonlinearity": "tanh", "batch_first": "false"})
    # A few sine waves: x[t, n, f] = sin(0.4 * (t + 1) * (f + 1) / 2 + n * pi / 4)
    t = np.arange(10, dtype=np.float64)[:, None, None]
    n = np.arange(2, dtype=np.float64)[None, :, None]
    f = np.arange(4, dtype=np.float64)[None, None, :]
    x = np.sin(0.2 * (t + 1) * (f + 1) + n * np.pi / 4).astype(np.float32)
    with torch.no_grad():
        out, hn = rnn(torch.from_numpy(x))
    npsave(EXAMPLE_DIR / "input.npy", x)
    npsave(EXAMPLE_DIR / "expected_output.npy", out)
    npsave(EXAMPLE_DIR / "expected_hn.npy", hn)


# ---------------------------------------------------------------------------
# Verification and driver
# ---------------------------------------------------------------------------


def verify(paths: list[Path]) -> None:
    """Reload everything and re-run each forward case from the stored tensors.

    Note: torch's own float32 CPU result can differ by an ulp or two depending
    on the memory alignment of its inputs (e.g. an ``h0`` that safetensors
    hands back at an 8-byte-aligned address takes a different vectorised
    path).  The re-run therefore uses aligned copies and, should it still not
    be bit-identical, a tight tolerance; the maximum deviation is reported.
    """
    from safetensors import safe_open

    for path in paths:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            assert arr.flags["C_CONTIGUOUS"] and arr.dtype.byteorder in "<=|"
        elif path.suffix == ".safetensors":
            load_file(str(path))
    worst = {"float32": 0.0, "float64": 0.0}
    for path in sorted(FORWARD_DIR.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        cfg = json.loads(meta["config"])
        t = {k: v.clone() for k, v in load_file(str(path)).items()}
        assert ("h0" in t) == cfg["has_h0"], path
        rnn = nn.RNN(cfg["input_size"], cfg["hidden_size"], cfg["num_layers"],
                     nonlinearity=cfg["nonlinearity"], bias=cfg["bias"],
                     batch_first=cfg["batch_first"], dropout=cfg["dropout"],
                     bidirectional=cfg["bidirectional"])
        rnn = cast_module(rnn, cfg["dtype"]).eval()
        rnn.load_state_dict({k: v for k, v in t.items() if k not in ("input", "h0", "output", "h_n")})
        with torch.no_grad():
            out, hn = rnn(t["input"], t["h0"]) if cfg["has_h0"] else rnn(t["input"])
        assert out.shape == t["output"].shape and hn.shape == t["h_n"].shape, path
        if out.numel():
            diff = max((out - t["output"]).abs().max().item(), (hn - t["h_n"]).abs().max().item())
            worst[cfg["dtype"]] = max(worst[cfg["dtype"]], diff)
            tol = 1e-5 if cfg["dtype"] == "float32" else 1e-12
            assert diff <= tol, (path, diff)
    print(f"re-run max |diff|: float32 {worst['float32']:.3g}, float64 {worst['float64']:.3g}")


def main() -> None:
    for folder in (FORWARD_DIR, CLI_DIR, EXAMPLE_DIR):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    ERRORS_JSON.unlink(missing_ok=True)

    cases = all_cases()
    for dtype, case in cases:
        write_forward_case(dtype, case)
    errors = write_errors()
    write_cli()
    write_example()

    files = sorted(p for d in (FORWARD_DIR, CLI_DIR, EXAMPLE_DIR) for p in d.rglob("*") if p.is_file())
    files.append(ERRORS_JSON)
    verify(files)

    def summary(label: str, paths: list[Path]) -> None:
        print(f"{label:<10} {len(paths):3d} files {sum(p.stat().st_size for p in paths):9d} bytes")

    print(f"torch {TORCH_VERSION}")
    summary("forward", [p for p in files if p.parent == FORWARD_DIR])
    summary("cli", [p for p in files if p.parent == CLI_DIR])
    summary("example", [p for p in files if p.parent == EXAMPLE_DIR])
    summary("errors", [ERRORS_JSON])
    summary("total", files)
    accepted = [e["name"] for e in errors if e["torch_error"] is None]
    if accepted:
        print("error cases torch ACCEPTED:", ", ".join(accepted))

    # LSTM / GRU / cells / packed sequences (their own folders; the above are untouched).
    import fixtures_family  # scripts/ is sys.path[0] when this file is run as a script

    fixtures_family.write_all()
    __import__("fixtures_grads").write_all()  # gradient fixtures: tests/fixtures/grads/ only
    __import__("fixtures_optim").write_all()  # optimizer fixtures: tests/fixtures/optim/ only


if __name__ == "__main__":
    main()
