#!/usr/bin/env python3
"""Check `recurrent export` against torch through ONNX Runtime.

    /path/to/venv/bin/python scripts/check_onnx_export.py [--bin target/release/recurrent]

Needs torch, safetensors, onnx and onnxruntime. Without --bin it builds the CLI
(`cargo build --release -p recurrent-cli`). For each case: a seeded torch module ->
its state dict as safetensors (metadata batch_first, nonlinearity) -> `recurrent
export` -> `onnx.checker.check_model(full_check=True)` -> an onnxruntime
InferenceSession run on two input sizes (the sequence length and batch are dynamic;
where ONNX Runtime has no float64 kernel for the op, onnx's reference evaluator runs
the graph instead, and the line says so) -> output, h_n (c_n) compared with torch's by `torch.testing.assert_close` at its
defaults. Prints one line per case and "all N cases match"; exits 1 on the first
mismatch. Writes only into a temporary folder.
"""

import argparse
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx.reference import ReferenceEvaluator
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    # (name, kind, module options, dtype, export flags)
    ("rnn_tanh", "rnn", {}, torch.float32, []),
    ("rnn_relu_2layers_bidirectional", "rnn", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True}, torch.float32, []),
    ("rnn_tanh_batch_first_nobias_h0", "rnn", {"batch_first": True, "bias": False}, torch.float32, ["--initial-state"]),
    ("lstm", "lstm", {}, torch.float32, []),
    ("lstm_2layers_bidirectional_batch_first", "lstm", {"num_layers": 2, "bidirectional": True, "batch_first": True}, torch.float32, []),
    ("lstm_3layers_nobias_h0_c0", "lstm", {"num_layers": 3, "bias": False}, torch.float32, ["--initial-state"]),
    ("lstm_f64_bidirectional", "lstm", {"bidirectional": True}, torch.float64, []),
    ("gru", "gru", {}, torch.float32, []),
    ("gru_2layers_h0", "gru", {"num_layers": 2}, torch.float32, ["--initial-state"]),
    ("gru_bidirectional_batch_first_nobias", "gru", {"bidirectional": True, "batch_first": True, "bias": False}, torch.float32, []),
    ("gru_f64_2layers_bidirectional", "gru", {"num_layers": 2, "bidirectional": True}, torch.float64, []),
    # (onnx.reference's RNN knows Tanh only, and ONNX Runtime has no float64 RNN.)
    ("rnn_f64_tanh_batch_first_h0", "rnn", {"batch_first": True}, torch.float64, ["--initial-state"]),
]
INPUT, HIDDEN = 5, 7


def binary(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    subprocess.run(["cargo", "build", "--release", "-p", "recurrent-cli"], cwd=ROOT, check=True)
    return ROOT / "target/release/recurrent"


def check(name, kind, options, dtype, flags, exe: Path, folder: Path) -> float:
    torch.manual_seed(zlib.crc32(name.encode()))
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    module = cls(INPUT, HIDDEN, **options).to(dtype).eval()
    batch_first = options.get("batch_first", False)
    metadata = {"batch_first": str(batch_first).lower()}
    if kind == "rnn":
        metadata["nonlinearity"] = options.get("nonlinearity", "tanh")
    weights = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights), metadata=metadata)
    exported = folder / f"{name}.onnx"
    subprocess.run([str(exe), "export", "--model", str(weights), "--output", str(exported), *flags],
                   check=True, capture_output=True)
    onnx.checker.check_model(onnx.load(str(exported)), full_check=True)
    runner = "onnxruntime"
    try:
        session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        session, runner = None, "onnx.reference (onnxruntime: " + str(e).split(" : ")[-1].strip() + ")"
    worst = 0.0
    d = 2 if options.get("bidirectional") else 1
    states = d * options.get("num_layers", 1)
    for length, batch in [(6, 3), (2, 1)]:
        x = torch.randn((batch, length, INPUT) if batch_first else (length, batch, INPUT), dtype=dtype)
        feeds = {"input": x.numpy()}
        args = (x,)
        if "--initial-state" in flags:
            h0 = torch.randn(states, batch, HIDDEN, dtype=dtype)
            feeds["h0"] = h0.numpy()
            if kind == "lstm":
                c0 = torch.randn(states, batch, HIDDEN, dtype=dtype)
                feeds["c0"] = c0.numpy()
                args = (x, (h0, c0))
            else:
                args = (x, h0)
        with torch.no_grad():
            output, hidden = module(*args)
        expected = [output] + (list(hidden) if kind == "lstm" else [hidden])
        names = ["output", "h_n"] + (["c_n"] if kind == "lstm" else [])
        try:
            if session is None:
                raise RuntimeError("NOT_IMPLEMENTED")
            got = session.run(names, feeds)
        except Exception as e:  # noqa: BLE001
            # ONNX Runtime's CPU LSTM (and others) has no float64 kernel: run the graph
            # with onnx's reference evaluator instead, and say so.
            if "double" not in str(e) and "NOT_IMPLEMENTED" not in str(e):
                raise
            if session is not None:
                runner = "onnx.reference (onnxruntime: " + str(e).split("Status Message: ")[-1].strip() + ")"
            got = ReferenceEvaluator(str(exported)).run(names, feeds)
        for what, g, e in zip(names, got, expected):
            g = torch.from_numpy(np.asarray(g))
            torch.testing.assert_close(g, e, msg=lambda m: f"{name} {what} (L={length}, N={batch}): {m}")
            worst = max(worst, (g - e).abs().max().item())
    return worst, runner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", help="the recurrent binary (default: build target/release/recurrent)")
    args = parser.parse_args()
    exe = binary(args.bin)
    ort.set_default_logger_severity(4)  # the float64 fallbacks are reported per case
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, {exe}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, options, dtype, flags in CASES:
            diff, runner = check(name, kind, options, dtype, flags, exe, Path(tmp))
            print(f"{name:<42} {str(dtype).removeprefix('torch.'):<8} max |diff| {diff:.3e}  match  [{runner}]")
    print(f"all {len(CASES)} cases match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
