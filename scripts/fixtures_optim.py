"""PyTorch reference fixtures for ``recurrent::optim``: torch.optim.SGD / Adam / AdamW
steps and ``torch.nn.utils.clip_grad_norm_``.

Run by hand (``.venv/bin/python scripts/fixtures_optim.py``) or from the end of
``make_fixtures.py``.  Deterministic (``torch.manual_seed`` from a crc32 of the
model's name) and idempotent: it deletes and rewrites only ``tests/fixtures/optim/``.

Optimizer cases, ``optim/<f32|f64>_<model>_<case>.safetensors`` (every tensor in the
case's dtype, contiguous):

* the module's initial ``state_dict`` under torch's unprefixed names
  (``weight_ih_l0``, ...), so ``StateDict::infer_config("")`` rebuilds the layer;
* ``grad.<k>.<name>``: the gradient given to parameter ``<name>`` before step ``k``
  (k = 0 .. steps-1).  A missing ``grad.<k>.<name>`` means ``p.grad = None`` at that
  step: torch skips the parameter, leaving it and its state (step count included)
  untouched.  Every case skips ``SKIPPED[model]`` at the listed steps;
* ``param.<k>.<name>``: every parameter after ``optimizer.step()`` number ``k``;
* the final optimizer state: ``state.<key>.<name>`` for ``momentum_buffer`` (SGD with
  momentum), ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad) and ``step``
  (Adam / AdamW; a 0-d tensor, the per-parameter step count).

Metadata: ``optimizer`` (``SGD``, ``Adam``, ``AdamW``), ``options`` (a JSON object of
the keyword arguments given; absent ones are torch's defaults), ``steps``, ``model``,
``dtype``, ``torch_version``.  Every optimizer runs with ``foreach=False`` (the
single-tensor implementation, which is what torch picks for CPU tensors anyway).

Clipping cases, ``optim/<f32|f64>_clip_<case>.safetensors``: ``grad.<name>`` before,
``clipped.<name>`` after ``clip_grad_norm_`` and ``total_norm`` (0-d); metadata
``max_norm``, ``norm_type`` (Python ``repr``: ``2.0``, ``inf``, ...) and
``error_if_nonfinite``.

``optim/errors.json``: constructor arguments and, for each, torch's ``ValueError``
message or ``null`` when torch accepts them (hyper-parameter checks), plus the
``clip_grad_norm_(error_if_nonfinite=True)`` error.  Float arguments are written as
Python ``repr`` strings (``"nan"``, ``"-0.1"``) so that JSON can hold them.

Verification reloads every file, re-runs torch from the stored tensors and requires
bit-identical results; it also checks that the amsgrad cases differ from plain Adam
(the running maximum is really exercised) and that the clipping cases hit the
branches they are named for.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import DTYPES, FIXTURES, TORCH_VERSION, cast_module, save_safetensors, seed_for  # noqa: E402
from fixtures_family import build_module  # noqa: E402

OPTIM_DIR = FIXTURES / "optim"
PREFIX = {"float32": "f32", "float64": "f64"}
STEPS = 4
# Gradient scale per step: small and large steps, so that exp_avg_sq decreases with a
# small beta2 (amsgrad's running maximum matters) and momentum buffers change sign.
SCALES = (1.0, 0.5, 2.0, 0.05)
MODELS = {
    # torch.nn.RNN(3, 4, num_layers=2), tanh: 8 parameters.
    "rnn": dict(mode="rnn_tanh", input_size=3, hidden_size=4, num_layers=2),
    # torch.nn.LSTM(3, 3, proj_size=2, bidirectional=True): 10 parameters, weight_hr too.
    "lstm": dict(mode="lstm", input_size=3, hidden_size=3, bidirectional=True, proj_size=2),
}
# (step, parameter) pairs whose grad is None: a late first step and a gap.
SKIPPED = {
    "rnn": {(0, "weight_hh_l0"), (2, "bias_hh_l1")},
    "lstm": {(0, "weight_hr_l0_reverse"), (2, "bias_ih_l0")},
}

OPTIMIZERS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
# (model, case name, optimizer, keyword arguments)
CASES = [
    ("rnn", "sgd_default", "SGD", {}),
    ("rnn", "sgd", "SGD", {"lr": 0.1}),
    ("rnn", "sgd_momentum", "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("rnn", "sgd_nesterov", "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("rnn", "sgd_weight_decay", "SGD", {"lr": 0.1, "weight_decay": 0.05}),
    ("rnn", "sgd_momentum_weight_decay", "SGD", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.05}),
    ("rnn", "sgd_dampening", "SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("rnn", "adam_default", "Adam", {}),
    ("rnn", "adam", "Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("rnn", "adam_weight_decay", "Adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("rnn", "adam_amsgrad", "Adam", {"lr": 0.05, "betas": (0.9, 0.6), "amsgrad": True}),
    ("rnn", "adamw_default", "AdamW", {}),
    ("rnn", "adamw", "AdamW", {"lr": 0.05, "weight_decay": 0.1}),
    ("rnn", "adamw_amsgrad", "AdamW", {"lr": 0.05, "betas": (0.8, 0.6), "eps": 1e-6, "weight_decay": 0.1,
                                        "amsgrad": True}),
    ("lstm", "sgd_nesterov", "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("lstm", "adam_amsgrad", "Adam", {"lr": 0.05, "betas": (0.9, 0.6), "weight_decay": 0.01, "amsgrad": True}),
    ("lstm", "adamw", "AdamW", {"lr": 0.05}),
]

# (case name, max_norm, norm_type, gradient scale)
CLIP_CASES = [
    ("l2_active", 1.0, 2.0, 1.0),
    ("l2_inactive", 100.0, 2.0, 1.0),
    ("inf_active", 0.5, math.inf, 1.0),
    ("inf_inactive", 10.0, math.inf, 1.0),
    ("l1_active", 2.0, 1.0, 1.0),
    ("l3_active", 0.7, 3.0, 1.0),
    # max_norm equal to the total norm (None: computed from the gradients): torch still
    # scales, by max_norm / (total + 1e-6) < 1, a relative 1.3e-4 here.
    ("l2_at_max", None, 2.0, 1e-3),
    # A non-finite gradient with error_if_nonfinite=False: torch scales by 0 (inf * 0 = nan).
    ("l2_nonfinite", 1.0, 2.0, 1.0),
]


def case_path(dtype: str, model: str, name: str) -> Path:
    return OPTIM_DIR / f"{PREFIX[dtype]}_{model}_{name}.safetensors"


def clip_path(dtype: str, name: str) -> Path:
    return OPTIM_DIR / f"{PREFIX[dtype]}_clip_{name}.safetensors"


def make_module(model: str, dtype: str) -> torch.nn.Module:
    torch.manual_seed(seed_for(f"optim/{model}"))
    return cast_module(build_module(**MODELS[model]), dtype)


def make_grads(model: str, module: torch.nn.Module, dtype: str) -> list[dict[str, torch.Tensor]]:
    """The gradient sets, drawn in float64 (then cast) so both dtypes share them."""
    gen = torch.Generator().manual_seed(seed_for(f"optim/{model}/grads"))
    sets = []
    for k, scale in enumerate(SCALES):
        grads = {}
        for name, p in module.named_parameters():
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale
            if (k, name) not in SKIPPED[model]:
                grads[name] = g.to(DTYPES[dtype])
        sets.append(grads)
    return sets


def run_optimizer(module: torch.nn.Module, optimizer: str, kwargs: dict,
                  grad_sets: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], dict]:
    """Runs the steps; returns the parameters after each step and the final state."""
    params = dict(module.named_parameters())
    opt = OPTIMIZERS[optimizer](params.values(), foreach=False, **kwargs)
    out = {}
    for k, grads in enumerate(grad_sets):
        for name, p in params.items():
            p.grad = grads[name].clone() if name in grads else None
        opt.step()
        for name, p in params.items():
            out[f"param.{k}.{name}"] = p.detach().clone()
    for name, p in params.items():
        for key, value in opt.state[p].items():
            if value is None:
                continue
            if key == "step":
                value = value.to(p.dtype)
            out[f"state.{key}.{name}"] = value.detach().clone()
    return out, opt.state_dict()


def write_case(dtype: str, model: str, name: str, optimizer: str, kwargs: dict) -> Path:
    module = make_module(model, dtype)
    tensors = {n: t.detach().clone().contiguous() for n, t in module.state_dict().items()}
    grad_sets = make_grads(model, module, dtype)
    for k, grads in enumerate(grad_sets):
        for n, g in grads.items():
            tensors[f"grad.{k}.{n}"] = g
    results, _ = run_optimizer(module, optimizer, kwargs, grad_sets)
    tensors.update(results)
    metadata = {
        "format": "pt",
        "optimizer": optimizer,
        "options": json.dumps(kwargs, sort_keys=True),
        "steps": str(STEPS),
        "model": model,
        "dtype": dtype,
        "torch_version": TORCH_VERSION,
    }
    path = case_path(dtype, model, name)
    save_safetensors({k: v.contiguous() for k, v in tensors.items()}, path, metadata)
    return path


def clip_grads(name: str, scale: float, dtype: str) -> dict[str, torch.Tensor]:
    """Gradients shaped like the RNN's parameters."""
    module = make_module("rnn", dtype)
    gen = torch.Generator().manual_seed(seed_for(f"optim/clip/{name}"))
    grads = {}
    for pname, p in module.named_parameters():
        grads[pname] = (torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale).to(DTYPES[dtype])
    if name == "l2_nonfinite":
        grads["bias_ih_l1"][2] = math.inf
    return grads


def run_clip(grads: dict[str, torch.Tensor], max_norm: float, norm_type: float) -> tuple[dict, torch.Tensor]:
    params = []
    for g in grads.values():
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g.clone()
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type, error_if_nonfinite=False)
    return {n: p.grad.detach().clone() for n, p in zip(grads, params)}, total


def write_clip(dtype: str, name: str, max_norm: float | None, norm_type: float, scale: float) -> Path:
    grads = clip_grads(name, scale, dtype)
    if max_norm is None:
        max_norm = float(torch.nn.utils.get_total_norm(list(grads.values()), norm_type))
    clipped, total = run_clip(grads, max_norm, norm_type)
    tensors = {f"grad.{n}": g for n, g in grads.items()}
    tensors.update({f"clipped.{n}": g for n, g in clipped.items()})
    tensors["total_norm"] = total.detach().clone()
    metadata = {
        "format": "pt",
        "max_norm": repr(float(max_norm)),
        "norm_type": repr(float(norm_type)),
        "error_if_nonfinite": "false",
        "dtype": dtype,
        "torch_version": TORCH_VERSION,
    }
    path = clip_path(dtype, name)
    save_safetensors({k: v.contiguous() for k, v in tensors.items()}, path, metadata)
    return path


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
# (optimizer, keyword arguments)
ERROR_CASES = [
    ("SGD", {}),
    ("SGD", {"lr": -0.1}),
    ("SGD", {"lr": 0.0}),
    ("SGD", {"lr": NAN}),  # torch checks `lr < 0.0`, which NaN passes
    ("SGD", {"lr": INF}),
    ("SGD", {"lr": -INF}),
    ("SGD", {"lr": -1e-5}),
    ("SGD", {"momentum": -0.5}),
    ("SGD", {"weight_decay": -1e-4}),
    ("SGD", {"dampening": -0.5}),  # no check on dampening
    ("SGD", {"dampening": 1.5, "momentum": 0.9}),
    ("SGD", {"nesterov": True}),
    ("SGD", {"nesterov": True, "momentum": 0.9}),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("SGD", {"nesterov": True, "momentum": -0.9}),  # momentum's own check comes first
    ("SGD", {"lr": -1.0, "momentum": -1.0, "weight_decay": -1.0}),  # lr reported first
    ("SGD", {"momentum": -1.0, "weight_decay": -1.0}),
    ("Adam", {}),
    ("Adam", {"lr": -1e-3}),
    ("Adam", {"lr": NAN}),  # `not 0.0 <= lr` refuses NaN
    ("Adam", {"lr": 0.0, "eps": 0.0, "betas": (0.0, 0.0), "weight_decay": 0.0}),
    ("Adam", {"eps": -1e-8}),
    ("Adam", {"eps": NAN}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (-0.1, 0.999)}),
    ("Adam", {"betas": (0.9, 1.0)}),
    ("Adam", {"betas": (0.9, NAN)}),
    ("Adam", {"betas": (0.9, -1e-20)}),
    ("Adam", {"weight_decay": -0.01}),
    ("Adam", {"weight_decay": NAN}),
    ("Adam", {"eps": -1.0, "betas": (2.0, 2.0), "weight_decay": -1.0}),  # eps before betas
    ("Adam", {"betas": (2.0, 2.0), "weight_decay": -1.0}),
    ("Adam", {"amsgrad": True, "weight_decay": 1e9}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": -0.1}),
    ("AdamW", {"betas": (0.9, 1.5)}),
    ("AdamW", {"lr": -INF}),
    ("AdamW", {"lr": INF, "weight_decay": 0.0, "amsgrad": True}),
]


def encode_kwargs(kwargs: dict) -> dict:
    def enc(v):
        if isinstance(v, bool):
            return v
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, tuple):
            return [enc(x) for x in v]
        raise TypeError(v)

    return {k: enc(v) for k, v in kwargs.items()}


def write_errors() -> Path:
    cases = []
    p = torch.nn.Parameter(torch.zeros(2))
    for optimizer, kwargs in ERROR_CASES:
        try:
            OPTIMIZERS[optimizer]([p], **kwargs)
            error = None
        except ValueError as e:
            error = str(e)
        cases.append({"optimizer": optimizer, "options": encode_kwargs(kwargs), "torch_error": error})
    # clip_grad_norm_(error_if_nonfinite=True) on a non-finite norm.
    clip = []
    for norm_type, bad in ((2.0, math.inf), (math.inf, math.nan), (1.0, -math.inf)):
        q = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        q.grad = torch.tensor([1.0, bad, 2.0], dtype=torch.float64)
        try:
            torch.nn.utils.clip_grad_norm_([q], 1.0, norm_type=norm_type, error_if_nonfinite=True)
            error = None
        except RuntimeError as e:
            error = str(e)
        clip.append({"norm_type": repr(norm_type), "grad": [repr(1.0), repr(bad), repr(2.0)],
                     "max_norm": repr(1.0), "torch_error": error})
    path = OPTIM_DIR / "errors.json"
    path.write_text(json.dumps({"torch_version": TORCH_VERSION, "optimizers": cases, "clip": clip},
                               indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and bool(
        (a[~a.isnan()] == b[~b.isnan()]).all())


def verify(paths: list[Path]) -> None:
    for path in paths:
        tensors, meta = load(path)
        if "_clip_" in path.name:
            grads = {k[5:]: v for k, v in tensors.items() if k.startswith("grad.")}
            clipped, total = run_clip(grads, float(meta["max_norm"]), float(meta["norm_type"]))
            assert same(total, tensors["total_norm"]), path
            for n, g in clipped.items():
                assert same(g, tensors[f"clipped.{n}"]), (path, n)
            coef = float(meta["max_norm"]) / (float(total) + 1e-6)
            name = path.stem.split("_clip_")[1]
            assert ("inactive" in name) == (coef >= 1.0), (path, coef)
            if name == "l2_at_max":
                assert float(meta["max_norm"]) == float(total) and coef < 1.0, path
            if name == "l2_nonfinite":
                assert math.isinf(float(total)), path
            continue
        model = meta["model"]
        module = cast_module(build_module(**MODELS[model]), meta["dtype"])
        module.load_state_dict({n: tensors[n] for n, _ in module.named_parameters()})
        grad_sets = [
            {n: tensors[f"grad.{k}.{n}"] for n, _ in module.named_parameters() if f"grad.{k}.{n}" in tensors}
            for k in range(int(meta["steps"]))
        ]
        kwargs = json.loads(meta["options"])
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        results, _ = run_optimizer(module, meta["optimizer"], kwargs, grad_sets)
        stored = {k for k in tensors if k.startswith(("param.", "state."))}
        assert stored == set(results), path
        for k, v in results.items():
            assert same(v, tensors[k]), (path, k)
        if kwargs.get("amsgrad"):
            module.load_state_dict({n: tensors[n] for n, _ in module.named_parameters()})
            plain, _ = run_optimizer(module, meta["optimizer"], {**kwargs, "amsgrad": False}, grad_sets)
            last = f"param.{int(meta['steps']) - 1}."
            assert any(not torch.equal(plain[k], v) for k, v in results.items() if k.startswith(last)), (
                f"{path}: amsgrad makes no difference")


def write_all() -> list[Path]:
    shutil.rmtree(OPTIM_DIR, ignore_errors=True)
    OPTIM_DIR.mkdir(parents=True)
    paths = []
    for dtype in DTYPES:
        for model, name, optimizer, kwargs in CASES:
            paths.append(write_case(dtype, model, name, optimizer, kwargs))
        for name, max_norm, norm_type, scale in CLIP_CASES:
            paths.append(write_clip(dtype, name, max_norm, norm_type, scale))
    verify(paths)
    errors = write_errors()
    size = sum(p.stat().st_size for p in paths) + errors.stat().st_size
    print(f"optim re-run: bit-identical; {len(CASES)} optimizer and {len(CLIP_CASES)} clipping cases per dtype")
    print(f"{'optim':<10} {len(paths) + 1:3d} files {size:9d} bytes")
    return paths


if __name__ == "__main__":
    write_all()
