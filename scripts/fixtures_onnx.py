#!/usr/bin/env python3
"""ONNX fixtures: real ``torch.onnx.export`` files of RNN / LSTM / GRU, and bad models.

    /path/to/venv/bin/python scripts/fixtures_onnx.py

Needs torch, numpy, safetensors, onnx (and onnxscript for the dynamo exporter).
Deterministic (``torch.manual_seed`` per case from a crc32 of its name) and
idempotent: it deletes and rewrites ``crates/recurrent/tests/fixtures/onnx/`` only.

Each good case is a folder ``onnx/<case>/`` holding

* ``model.onnx``: the module exported by ``torch.onnx.export`` (``dynamo=False``,
  the legacy TorchScript exporter, unless the case name starts with ``dynamo_``:
  the dynamo exporter writes LSTM and GRU nodes but unrolls ``nn.RNN`` into MatMul
  and Add nodes, so its RNN is a bad model here),
  then for some cases rewritten to store its weights otherwise (float16 raw data,
  bfloat16 ``int32_data``, ``float_data``, external data ``model.data``);
* ``torch.safetensors``: the module's ``state_dict`` (the weights the ONNX reader
  must give back bit for bit), metadata ``batch_first`` and ``nonlinearity``;
* ``input.npy``, optional ``h0.npy`` / ``c0.npy`` (exported as graph inputs too),
  and torch's ``output.npy``, ``h_n.npy`` (and ``c_n.npy``), in float32 (float64
  for ``*_f64`` cases).

Bad models (``onnx/bad/*.onnx``, built with ``onnx.helper``) each hold one thing
the reader must refuse (the tests name the words each error must hold).
"""

import json
import shutil
import warnings
import zlib
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent / "crates/recurrent/tests/fixtures/onnx"

L, N, I, H = 5, 2, 3, 4


def seed(name: str) -> None:
    torch.manual_seed(zlib.crc32(name.encode()))


def build(kind: str, **kw) -> torch.nn.Module:
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    return cls(I, H, **kw).eval()


def export(module, args, path: Path, dynamo: bool, kind: str, with_state: bool) -> None:
    names = ["input"] + (["h0", "c0"] if (with_state and kind == "lstm") else ["h0"] if with_state else [])
    outputs = ["output", "h_n"] + (["c_n"] if kind == "lstm" else [])
    if dynamo:
        torch.onnx.export(module, args, str(path), dynamo=True, input_names=names, output_names=outputs, verbose=False)
        data = Path(str(path) + ".data")
        if data.exists() and data.stat().st_size == 0:
            data.unlink()  # every weight is inline
    else:
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=names, output_names=outputs, opset_version=14)


def restore(model: onnx.ModelProto, how: str, folder: Path) -> None:
    """Stores the recurrent nodes' weights another way (values unchanged)."""
    weights = {n for node in model.graph.node if node.op_type in ("RNN", "LSTM", "GRU") for n in node.input[1:4] if n}
    for i, t in enumerate(model.graph.initializer):
        if t.name not in weights:
            continue
        a = numpy_helper.to_array(t)
        if how == "f16":
            new = numpy_helper.from_array(a.astype(np.float16), t.name)
        elif how == "bf16":
            bits = (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
            assert np.array_equal((bits.astype(np.uint32) << 16).view(np.float32), a), "not exact in bfloat16"
            # onnx.helper converts float values to bfloat16 bits in int32_data.
            new = helper.make_tensor(t.name, TensorProto.BFLOAT16, a.shape, a.astype(np.float32).flatten().tolist())
            assert len(new.int32_data) == a.size and not new.raw_data
            assert np.array_equal(np.array(new.int32_data, np.uint32) << 16, bits.astype(np.uint32).flatten() << 16)
        elif how == "float_data":
            new = helper.make_tensor(t.name, TensorProto.FLOAT, a.shape, a.astype(np.float32).flatten().tolist())
        else:
            raise ValueError(how)
        model.graph.initializer[i].CopyFrom(new)


def good(name: str, kind: str, dynamo=False, state=False, dtype=torch.float32, store=None, external=False, **kw) -> None:
    seed(name)
    folder = ROOT / name
    folder.mkdir(parents=True)
    module = build(kind, **kw).to(dtype)
    if store in ("f16", "bf16"):
        # Weights exactly representable in the stored half type; torch computes in float32.
        half = torch.float16 if store == "f16" else torch.bfloat16
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(p.to(half).to(dtype))
    batch_first = kw.get("batch_first", False)
    x = torch.randn((N, L, I) if batch_first else (L, N, I), dtype=dtype)
    args = (x,)
    h0 = c0 = None
    if state:
        d = 2 if kw.get("bidirectional") else 1
        h0 = torch.randn(d * kw.get("num_layers", 1), N, H, dtype=dtype)
        if kind == "lstm":
            c0 = torch.randn(d * kw.get("num_layers", 1), N, H, dtype=dtype)
            args = (x, (h0, c0))
        else:
            args = (x, h0)
    with torch.no_grad():
        out = module(*args)
    output, hidden = out
    h_n, c_n = hidden if kind == "lstm" else (hidden, None)
    path = folder / "model.onnx"
    export(module, args, path, dynamo, kind, state)
    if store or external:
        model = onnx.load(str(path))
        if store:
            restore(model, store, folder)
        if external:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location="model.data", size_threshold=0)
        else:
            onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path))
    meta = {"batch_first": str(batch_first).lower()}
    if kind == "rnn":
        meta["nonlinearity"] = kw.get("nonlinearity", "tanh")
    sd = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file(sd, str(folder / "torch.safetensors"), metadata=meta)
    arrays = {"input": x, "h0": h0, "c0": c0, "output": output, "h_n": h_n, "c_n": c_n}
    for key, value in arrays.items():
        if value is not None:
            np.save(folder / f"{key}.npy", value.contiguous().numpy())
    print(f"{name}: {module} ({'dynamo' if dynamo else 'legacy'} exporter)")


def value(name, elem=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def weights(prefix, gates, d=1, inp=I, h=H, bias=True):
    rng = np.random.default_rng(zlib.crc32(prefix.encode()))
    ts = [
        numpy_helper.from_array(rng.standard_normal((d, gates * h, inp)).astype(np.float32), f"{prefix}.W"),
        numpy_helper.from_array(rng.standard_normal((d, gates * h, h)).astype(np.float32), f"{prefix}.R"),
    ]
    if bias:
        ts.append(numpy_helper.from_array(rng.standard_normal((d, 2 * gates * h)).astype(np.float32), f"{prefix}.B"))
    return ts


def bad_model(name: str, nodes, inits, inputs=("x",), outputs=("y",)) -> None:
    graph = helper.make_graph(nodes, name, [value(i) for i in inputs], [value(o) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save_model(model, str(ROOT / "bad" / f"{name}.onnx"))


def bad() -> None:
    (ROOT / "bad").mkdir(parents=True)
    gemm = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    bad_model("gemm_relu", [helper.make_node("Gemm", ["x", "w"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["y"])], [gemm])
    # LSTM with peepholes P [1, 3*H].
    p = numpy_helper.from_array(np.ones((1, 3 * H), np.float32), "lstm.P")
    bad_model("lstm_peepholes", [helper.make_node("LSTM", ["x", "lstm.W", "lstm.R", "lstm.B", "", "", "", "lstm.P"], ["y"], hidden_size=H)],
              weights("lstm", 4) + [p])
    bad_model("gru_linear_before_reset_0", [helper.make_node("GRU", ["x", "gru.W", "gru.R", "gru.B"], ["y"], hidden_size=H, linear_before_reset=0)],
              weights("gru", 3))
    bad_model("lstm_clip", [helper.make_node("LSTM", ["x", "lstm.W", "lstm.R", "lstm.B"], ["y"], hidden_size=H, clip=3.0)], weights("lstm", 4))
    bad_model("lstm_input_forget", [helper.make_node("LSTM", ["x", "lstm.W", "lstm.R"], ["y"], hidden_size=H, input_forget=1)], weights("lstm", 4, bias=False))
    bad_model("rnn_reverse", [helper.make_node("RNN", ["x", "rnn.W", "rnn.R"], ["y"], hidden_size=H, direction="reverse")], weights("rnn", 1, bias=False))
    bad_model("rnn_sigmoid", [helper.make_node("RNN", ["x", "rnn.W", "rnn.R"], ["y"], hidden_size=H, activations=["Sigmoid"])], weights("rnn", 1, bias=False))
    bad_model("gru_hidden_size_mismatch", [helper.make_node("GRU", ["x", "gru.W", "gru.R"], ["y"], hidden_size=H + 1, linear_before_reset=1)],
              weights("gru", 3, bias=False))
    bad_model("mixed_kinds", [helper.make_node("LSTM", ["x", "lstm.W", "lstm.R"], ["y1"], hidden_size=H),
                              helper.make_node("Squeeze", ["y1", "axes"], ["s1"]),
                              helper.make_node("GRU", ["s1", "gru.W", "gru.R"], ["y"], hidden_size=H, linear_before_reset=1)],
              weights("lstm", 4, bias=False) + weights("gru", 3, inp=H, bias=False) + [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    bad_model("two_stacks", [helper.make_node("RNN", ["x", "a.W", "a.R"], ["y"], hidden_size=H, name="encoder"),
                             helper.make_node("RNN", ["x2", "b.W", "b.R"], ["y2"], hidden_size=H, name="decoder")],
              weights("a", 1, bias=False) + weights("b", 1, bias=False), inputs=("x", "x2"), outputs=("y", "y2"))
    # A valid LSTM model cut in the middle of its weights.
    bad_model("whole", [helper.make_node("LSTM", ["x", "lstm.W", "lstm.R", "lstm.B"], ["y"], hidden_size=H)], weights("lstm", 4))
    whole = (ROOT / "bad" / "whole.onnx").read_bytes()
    (ROOT / "bad" / "whole.onnx").unlink()
    (ROOT / "bad" / "truncated.onnx").write_bytes(whole[: len(whole) // 2])
    # torch.onnx.export(dynamo=True) unrolls nn.RNN into MatMul / Add / Tanh nodes: no
    # RNN node is left to read.
    seed("dynamo_rnn_unrolled")
    rnn = build("rnn")
    path = ROOT / "bad" / "dynamo_rnn_unrolled.onnx"
    export(rnn, (torch.randn(2, 1, I),), path, True, "rnn", False)
    onnx.save_model(onnx.load(str(path)), str(path))
    Path(str(path) + ".data").unlink(missing_ok=True)
    print("bad models:", sorted(p.name for p in (ROOT / "bad").iterdir()))


def main() -> None:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    good("rnn_tanh_2layers_bidirectional", "rnn", num_layers=2, bidirectional=True)
    good("rnn_relu_batch_first_nobias", "rnn", nonlinearity="relu", batch_first=True, bias=False)
    good("rnn_relu_float_data", "rnn", nonlinearity="relu", num_layers=2, store="float_data")
    good("lstm_2layers_bidirectional_batch_first", "lstm", num_layers=2, bidirectional=True, batch_first=True)
    good("lstm_nobias_h0_c0", "lstm", bias=False, num_layers=2, state=True)
    good("lstm_f16", "lstm", num_layers=2, store="f16")
    good("lstm_external_data", "lstm", bidirectional=True, external=True)
    good("gru_2layers_bidirectional", "gru", num_layers=2, bidirectional=True)
    good("gru_batch_first_nobias_h0", "gru", batch_first=True, bias=False, state=True)
    good("gru_bf16", "gru", store="bf16")
    good("gru_f64", "gru", num_layers=2, dtype=torch.float64)
    good("dynamo_lstm_2layers_batch_first", "lstm", dynamo=True, num_layers=2, batch_first=True)
    good("dynamo_gru_bidirectional_nobias", "gru", dynamo=True, bidirectional=True, bias=False)
    bad()
    (ROOT / "torch_version.json").write_text(json.dumps({"torch": torch.__version__, "onnx": onnx.__version__}) + "\n")


if __name__ == "__main__":
    main()
