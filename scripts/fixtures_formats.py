"""PyTorch fixtures for the readers of ``torch.save`` files (zip and legacy formats)
and of cell state dicts: small models saved by real torch the ways torch users save
them, torch's outputs for each, and files the readers must refuse.

Run from the repository root (it needs torch, numpy and safetensors)::

    python3 -m venv .venv && .venv/bin/pip install torch numpy safetensors
    .venv/bin/python scripts/fixtures_formats.py

Deterministic (``torch.manual_seed`` per case) and idempotent: it deletes and rewrites
``crates/recurrent/tests/fixtures/formats/`` only, and every file comes out the same
bytes on every run.  torch's zip format is already byte-stable; the legacy format names
each storage by a memory address (``str(storage._cdata)``), and writes the storages in
the sorted order of those keys, so after torch writes a legacy file the script renames
the keys to fixed address-like ones (``94000000000000``, ``94000000004096``, ... in the
order the pickle first names them), writes the sorted key list again and puts the
storages in its order (see ``stabilize_legacy_keys``).  Nothing else in the file
changes, and the script checks that ``torch.load`` gives the same tensors afterwards.

"zip" is ``torch.save``'s default format; "legacy" is
``torch.save(obj, path, _use_new_zipfile_serialization=False)`` (pickle protocol 2, then
the storages one after the other, each an 8-byte element count and its bytes).

Expected outputs.  For each case ``<case>``: ``<case>_input.npy`` and torch's
``<case>_output.npy``, ``<case>_hn.npy`` (and ``<case>_cn.npy`` for an LSTM): the
layer run on that input with the default zero initial state.  Inputs are batched
``(L, N, H_in)`` (batch_first=False) except where a case says "unbatched" ``(L, H_in)``.
float32 throughout, except ``pt_rnn_f64`` (float64).

Layers (``<case>.pt``, the state dict as torch.save writes it):

- ``pt_lstm_zip``: ``LSTM(5, 7, num_layers=2)``, zip.
- ``pt_gru_legacy``: ``GRU(4, 6, bidirectional=True)``, legacy; unbatched input.
- ``pt_rnn_relu_prefix``: the state dict of a module with ``embed = Linear(3, 4)`` and
  ``rnn = RNN(4, 5, nonlinearity="relu", num_layers=2)`` (keys ``embed.weight``,
  ``embed.bias``, ``rnn.weight_ih_l0``, ...), zip.  The expected files are the RNN's
  alone (input size 4), not the embedding's.
- ``pt_nested_ckpt``: ``{"model": lstm.state_dict(), "optimizer": adam.state_dict(),
  "epoch": 3, "loss": 0.25}`` with ``lstm = LSTM(4, 6, proj_size=3)`` after one Adam
  step (the optimizer state holds ``exp_avg``/``exp_avg_sq`` tensors and 0-dim ``step``
  tensors; its param_groups hold floats, tuples, bools and None), zip.  The expected
  files are those of the model after the step, i.e. of the saved weights.
- ``pt_lstm_f16``: ``LSTM(6, 9, proj_size=4)`` after ``.half()``, zip; outputs are
  torch's float32 computation with those weights widened (``.float()``), which is
  what ``recurrent`` computes for a float32 input.
- ``pt_gru_bf16_legacy``: ``GRU(5, 7, num_layers=2)`` after ``.to(torch.bfloat16)``,
  legacy (storage type ``torch.BFloat16Storage``); outputs from ``.float()``.
- ``pt_rnn_f64``: ``RNN(3, 4)`` after ``.double()``, zip; float64 input and outputs;
  unbatched input.
- ``pt_views`` / ``pt_views_legacy``: an ``LSTM(3, 4)`` state dict (an OrderedDict)
  whose four tensors are views into ONE float32 storage of 150 elements, with offsets
  and gaps: ``weight_ih_l0 = flat[5:53].view(16, 3)``, ``weight_hh_l0 =
  flat[53:117].view(4, 16).t()`` (shape (16, 4), strides (1, 16): not contiguous),
  ``bias_ih_l0 = flat[117:133]``, ``bias_hh_l0 = flat[134:150]`` (``flat[0:5]`` and
  ``flat[133]`` belong to no tensor).  Saved zip and legacy; each file holds the one
  storage once.  The script asserts that torch.load of each gives tensors sharing one
  storage, one of them with non-contiguous strides.  Expected files: an
  ``nn.LSTM(3, 4)`` given those values by ``load_state_dict``.
- ``pt_wn_lstm``: ``LSTM(4, 5, num_layers=2, bidirectional=True)`` with
  ``torch.nn.utils.parametrizations.weight_norm`` on ``weight_hh_l0`` (dim 0) and
  ``weight_ih_l1_reverse`` (dim 0), g multiplied away from ||v|| (x1.7, x0.6) so that a
  missing g would show; the state dict holds ``parametrizations.weight_hh_l0.original0``
  (g), ``...original1`` (v), and the same for ``weight_ih_l1_reverse``, zip.

Cells (expected files: the CELL looped over time in Python, ``h = cell(x_t, h)`` from
a zero state; ``output`` stacks the L h's, ``(L, N, H)`` (``(L, H)`` unbatched);
``h_n`` is the last h with a leading 1, ``(1, N, H)``; ``c_n`` likewise for an LSTM
cell.  The script asserts that the equivalent one-layer ``nn.LSTM``/``GRU``/``RNN``
loaded with the renamed weights (``weight_ih`` -> ``weight_ih_l0``, ...) gives the same
three arrays to 1e-6, so they are also that layer's outputs):

- ``cell_lstm``: ``LSTMCell(10, 20)``, as ``cell_lstm.safetensors`` (``save_file``) and
  ``cell_lstm.pt`` (zip).
- ``cell_gru``: ``GRUCell(4, 6)``, as ``cell_gru.safetensors`` and ``cell_gru.pt``;
  unbatched input.
- ``cell_rnn_relu``: ``RNNCell(3, 5, nonlinearity="relu")``, as
  ``cell_rnn_relu.safetensors`` with ``metadata={"nonlinearity": "relu"}``.
- ``cell_rnn_nobias``: ``RNNCell(3, 5, bias=False)``, as ``cell_rnn_nobias.pt`` (zip;
  only ``weight_ih`` and ``weight_hh``).
- ``cell_lstm_prefix``: the state dict of a module with ``cell = LSTMCell(3, 4)`` and
  ``head = Linear(4, 2)`` (keys ``cell.weight_ih``, ..., ``head.weight``,
  ``head.bias``), as ``cell_lstm_prefix.safetensors``; expected files for the cell.

Files to refuse (no expected outputs):

- ``bad_truncated.pt``: the first half of ``pt_lstm_zip.pt``'s bytes.
- ``bad_no_data_pkl.pt``: a valid zip (Python's zipfile, ZIP_STORED) with every entry
  of ``pt_lstm_zip.pt`` (names unchanged, ``pt_lstm_zip/...``) except ``data.pkl``.
- ``bad_evil_global.pt`` (zip, protocol 2: ``GLOBAL 'posix system'``),
  ``bad_evil_global_legacy.pt`` (legacy) and ``bad_evil_proto4.pt`` (zip,
  ``pickle_protocol=4``: ``STACK_GLOBAL``): ``{"weight_ih_l0": zeros(4, 3), "x": Evil()}``
  where ``Evil.__reduce__`` returns ``(os.system, ("echo pwned >
  /tmp/recurrent_pwned",))``.  Writing them runs nothing; loading them must not either.
  The script asserts that ``torch.load(..., weights_only=True)`` refuses all three.
- ``bad_full_module.pt``: ``torch.save(torch.nn.GRU(3, 4), path)``, a whole module
  (unpickling needs the class ``torch.nn.modules.rnn.GRU``), zip; weights_only refuses it.
- ``bad_short_storage.pt``: ``pt_lstm_zip.pt`` rewritten (zipfile, ZIP_STORED, entry
  names and order kept) with the storage entry behind ``weight_hh_l0`` (``data/1``, found
  from the pickle) cut to half its bytes; the pickle still says the full size.  The
  script asserts that torch.load fails on it.
- ``bad_not_a_checkpoint.pt``: 64 bytes of ``"this is not a checkpoint\\n"`` repeated.

At the end the script reloads every good file (``torch.load(path, weights_only=True)``,
or safetensors' ``load_file``) into a fresh module and checks that it reproduces the
saved outputs to 1e-6.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "crates/recurrent/tests/fixtures/formats"
LEGACY_KEY_BASE = 94_000_000_000_000  # what a heap address looks like on x86-64 Linux
PWNED = Path("/tmp/recurrent_pwned")
# Bytes per element of the storage types this script writes in the legacy format.
LEGACY_ELEMENT_SIZE = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2}

# For the final check: (file, extract(obj) -> state dict of the layer or cell, fresh
# module factory, case name).
CHECKS = []


class EmbedRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.rnn = nn.RNN(4, 5, nonlinearity="relu", num_layers=2)


class CellHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(3, 4)
        self.head = nn.Linear(4, 2)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/recurrent_pwned",))


# --------------------------------------------------------------------------- helpers


def save_expected(name, x, output, state):
    np.save(OUT / f"{name}_input.npy", x.numpy())
    np.save(OUT / f"{name}_output.npy", output.numpy())
    if isinstance(state, tuple):
        np.save(OUT / f"{name}_hn.npy", state[0].numpy())
        np.save(OUT / f"{name}_cn.npy", state[1].numpy())
    else:
        np.save(OUT / f"{name}_hn.npy", state.numpy())


def run_layer(module, x):
    module.eval()
    with torch.no_grad():
        return module(x)


def run_cell(cell, x):
    """The cell looped over time from a zero state: (output, h_n) or (output, (h_n, c_n))."""
    cell.eval()
    shape = (x.shape[1], cell.hidden_size) if x.dim() == 3 else (cell.hidden_size,)
    h = torch.zeros(shape, dtype=x.dtype)
    c = torch.zeros(shape, dtype=x.dtype)
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            if isinstance(cell, nn.LSTMCell):
                h, c = cell(x[t], (h, c))
            else:
                h = cell(x[t], h)
            outs.append(h)
    output = torch.stack(outs)
    if isinstance(cell, nn.LSTMCell):
        return output, (h.unsqueeze(0), c.unsqueeze(0))
    return output, h.unsqueeze(0)


def layer_for_cell(cell):
    """The one-layer layer a cell equals, with the cell's weights renamed into it."""
    if isinstance(cell, nn.LSTMCell):
        layer = nn.LSTM(cell.input_size, cell.hidden_size, bias=cell.bias)
    elif isinstance(cell, nn.GRUCell):
        layer = nn.GRU(cell.input_size, cell.hidden_size, bias=cell.bias)
    else:
        layer = nn.RNN(cell.input_size, cell.hidden_size, bias=cell.bias, nonlinearity=cell.nonlinearity)
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    return layer


def assert_same(a, b, what, atol=1e-6):
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            assert_same(x, y, what, atol)
        return
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    assert torch.allclose(a, b, rtol=0, atol=atol), (what, (a - b).abs().max().item())


def save_legacy(obj, path):
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    stabilize_legacy_keys(path)


def stabilize_legacy_keys(path):
    """Rename a legacy file's storage keys (memory addresses) to fixed ones.

    The legacy format is five pickles (magic number, protocol version, sys info, the
    object, the sorted list of storage keys) and then the storages in that list's
    order, each an 8-byte element count and its bytes.  Because the keys are
    addresses, both their text and their order (hence the order of the storages) vary
    from run to run.  The storages are renamed in the order the object pickle first
    names them, to equal-length increasing decimal strings; the key list is written
    again (as torch writes it: ``pickle.dump(sorted_keys, f, protocol=2)``) and the
    storages are put in its order.  The object pickle is edited in place (its
    BINUNICODE key strings only) and read with a loader whose every global is an inert
    stand-in, so nothing in it (not even the evil files' ``os.system``) runs.
    """
    data = path.read_bytes()
    f = io.BytesIO(data)
    bounds = []
    for _ in range(5):
        start = f.tell()
        for _op in pickletools.genops(f):
            pass
        bounds.append((start, f.tell()))
    old_keys = pickle.loads(data[bounds[4][0] : bounds[4][1]])
    assert old_keys == sorted(old_keys), old_keys

    class Inert:
        def __init__(self, *args, **kwargs):
            pass

        def __setitem__(self, key, value):
            pass

        def __setstate__(self, state):
            pass

        def append(self, item):
            pass

        def extend(self, items):
            pass

    seen = {}  # key -> (storage type name, numel), in order of first appearance

    class Scan(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name.endswith("Storage"):
                return name
            return Inert

        def persistent_load(self, pid):
            if pid[0] == "storage":
                seen.setdefault(pid[2], (pid[1], pid[4]))
            return None

    Scan(io.BytesIO(data[bounds[3][0] : bounds[3][1]])).load()
    assert sorted(seen) == old_keys, (list(seen), old_keys)
    new = {k: str(LEGACY_KEY_BASE + 4096 * i) for i, k in enumerate(seen)}
    new_keys = list(new.values())
    assert new_keys == sorted(new_keys)

    records = {}
    pos = bounds[4][1]
    for key in old_keys:
        type_name, numel = seen[key]
        (count,) = struct.unpack("<q", data[pos : pos + 8])
        assert count == numel, (key, count, numel)
        size = 8 + numel * LEGACY_ELEMENT_SIZE[type_name]
        records[key] = data[pos : pos + size]
        pos += size
    assert pos == len(data), (pos, len(data))

    out = bytearray(data[: bounds[3][0]])
    at_out = bounds[3][0]
    for op, arg, at in pickletools.genops(data[bounds[3][0] : bounds[3][1]]):
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE") and arg in new:
            assert op.name == "BINUNICODE", "legacy torch.save writes protocol 2"
            at += bounds[3][0]
            out += data[at_out:at]
            enc = new[arg].encode()
            out += b"X" + struct.pack("<I", len(enc)) + enc
            at_out = at + 1 + 4 + len(arg.encode())
    out += data[at_out : bounds[3][1]]
    out += pickle.dumps(new_keys, protocol=2)
    for key in seen:
        out += records[key]
    path.write_bytes(bytes(out))


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(info.filename, z.read(info.filename)) for info in z.infolist()]


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, payload in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            z.writestr(info, payload)


def storage_keys_of(pkl_bytes):
    """{tensor name: storage key} from a zip file's data.pkl, without torch's unpickler
    (only for a flat dict of tensors)."""

    class Keys(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, *rest: storage
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch" and name.endswith("Storage"):
                return name
            raise pickle.UnpicklingError(f"{module}.{name}")

        def persistent_load(self, pid):
            return pid[2]

    return dict(Keys(io.BytesIO(pkl_bytes)).load())


# ----------------------------------------------------------------------------- cases


def layer_cases():
    # 1. LSTM, zip.
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, num_layers=2)
    x = torch.randn(4, 3, 5)
    torch.save(lstm.state_dict(), OUT / "pt_lstm_zip.pt")
    save_expected("pt_lstm_zip", x, *run_layer(lstm, x))
    CHECKS.append(("pt_lstm_zip.pt", None, lambda: nn.LSTM(5, 7, num_layers=2), "pt_lstm_zip"))

    # 2. bidirectional GRU, legacy, unbatched.
    torch.manual_seed(1)
    gru = nn.GRU(4, 6, bidirectional=True)
    x = torch.randn(5, 4)
    save_legacy(gru.state_dict(), OUT / "pt_gru_legacy.pt")
    save_expected("pt_gru_legacy", x, *run_layer(gru, x))
    CHECKS.append(("pt_gru_legacy.pt", None, lambda: nn.GRU(4, 6, bidirectional=True), "pt_gru_legacy"))

    # 3. the RNN inside a bigger module: prefixed keys.
    torch.manual_seed(2)
    model = EmbedRNN()
    x = torch.randn(4, 2, 4)
    torch.save(model.state_dict(), OUT / "pt_rnn_relu_prefix.pt")
    save_expected("pt_rnn_relu_prefix", x, *run_layer(model.rnn, x))
    CHECKS.append(
        (
            "pt_rnn_relu_prefix.pt",
            lambda sd: {k[len("rnn.") :]: v for k, v in sd.items() if k.startswith("rnn.")},
            lambda: nn.RNN(4, 5, nonlinearity="relu", num_layers=2),
            "pt_rnn_relu_prefix",
        )
    )

    # 4. a training checkpoint: model + Adam state after one step + plain numbers.
    torch.manual_seed(3)
    lstm = nn.LSTM(4, 6, proj_size=3)
    adam = torch.optim.Adam(lstm.parameters(), lr=0.01)
    x = torch.randn(5, 2, 4)
    out, _ = lstm(torch.randn(5, 2, 4))
    out.pow(2).sum().backward()
    adam.step()
    adam.zero_grad()
    ckpt = {"model": lstm.state_dict(), "optimizer": adam.state_dict(), "epoch": 3, "loss": 0.25}
    torch.save(ckpt, OUT / "pt_nested_ckpt.pt")
    save_expected("pt_nested_ckpt", x, *run_layer(lstm, x))
    CHECKS.append(("pt_nested_ckpt.pt", lambda o: o["model"], lambda: nn.LSTM(4, 6, proj_size=3), "pt_nested_ckpt"))

    # 5./6. half and bfloat16 weights, widened for the expected outputs.
    for name, factory, dtype, legacy, shape in [
        ("pt_lstm_f16", lambda: nn.LSTM(6, 9, proj_size=4), torch.float16, False, (5, 2, 6)),
        ("pt_gru_bf16_legacy", lambda: nn.GRU(5, 7, num_layers=2), torch.bfloat16, True, (4, 3, 5)),
    ]:
        torch.manual_seed(4)
        low = factory().to(dtype)
        low.eval()
        if legacy:
            save_legacy(low.state_dict(), OUT / f"{name}.pt")
        else:
            torch.save(low.state_dict(), OUT / f"{name}.pt")
        wide = low.float()
        x = torch.randn(*shape)
        save_expected(name, x, *run_layer(wide, x))
        CHECKS.append((f"{name}.pt", None, factory, name))

    # 7. float64, unbatched.
    torch.manual_seed(5)
    rnn = nn.RNN(3, 4).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.save(rnn.state_dict(), OUT / "pt_rnn_f64.pt")
    save_expected("pt_rnn_f64", x, *run_layer(rnn, x))
    CHECKS.append(("pt_rnn_f64.pt", None, lambda: nn.RNN(3, 4).double(), "pt_rnn_f64"))

    # 8. views into one storage, with offsets, a gap and a transposed tensor.
    torch.manual_seed(6)
    flat = torch.randn(150) * 0.5
    views = collections.OrderedDict(
        [
            ("weight_ih_l0", flat[5:53].view(16, 3)),
            ("weight_hh_l0", flat[53:117].view(4, 16).t()),
            ("bias_ih_l0", flat[117:133]),
            ("bias_hh_l0", flat[134:150]),
        ]
    )
    assert not views["weight_hh_l0"].is_contiguous()
    torch.save(views, OUT / "pt_views.pt")
    save_legacy(views, OUT / "pt_views_legacy.pt")
    lstm = nn.LSTM(3, 4)
    lstm.load_state_dict(views)
    x = torch.randn(4, 2, 3)
    save_expected("pt_views", x, *run_layer(lstm, x))
    for file in ("pt_views.pt", "pt_views_legacy.pt"):
        loaded = torch.load(OUT / file, weights_only=True)
        ptrs = {t.untyped_storage().data_ptr() for t in loaded.values()}
        assert len(ptrs) == 1, (file, ptrs)
        assert loaded["weight_hh_l0"].stride() == (1, 16), loaded["weight_hh_l0"].stride()
        assert [t.storage_offset() for t in loaded.values()] == [5, 53, 117, 134]
        assert loaded["weight_ih_l0"].untyped_storage().nbytes() == 150 * 4
        for k in views:
            assert torch.equal(loaded[k], views[k]), (file, k)
        CHECKS.append((file, None, lambda: nn.LSTM(3, 4), "pt_views"))

    # 9. weight norm (parametrizations) on a bidirectional two-layer LSTM.
    from torch.nn.utils import parametrizations

    torch.manual_seed(7)
    lstm = nn.LSTM(4, 5, num_layers=2, bidirectional=True)

    def wn_lstm(module):
        parametrizations.weight_norm(module, "weight_hh_l0", dim=0)
        parametrizations.weight_norm(module, "weight_ih_l1_reverse", dim=0)
        return module

    wn_lstm(lstm)
    with torch.no_grad():  # g away from ||v||, so that a missing g would show
        lstm.parametrizations.weight_hh_l0.original0.mul_(1.7)
        lstm.parametrizations.weight_ih_l1_reverse.original0.mul_(0.6)
    sd = lstm.state_dict()
    assert "parametrizations.weight_hh_l0.original0" in sd and "weight_hh_l0" not in sd, list(sd)
    torch.save(sd, OUT / "pt_wn_lstm.pt")
    x = torch.randn(5, 2, 4)
    expected = run_layer(lstm, x)
    # The same weights folded into a plain LSTM give the same outputs.
    plain = nn.LSTM(4, 5, num_layers=2, bidirectional=True)
    with torch.no_grad():
        plain.load_state_dict({k: getattr(lstm, k).detach().clone() for k in plain.state_dict()})
    assert_same(run_layer(plain, x), expected, "pt_wn_lstm folded")
    save_expected("pt_wn_lstm", x, *expected)
    CHECKS.append(("pt_wn_lstm.pt", None, lambda: wn_lstm(nn.LSTM(4, 5, num_layers=2, bidirectional=True)), "pt_wn_lstm"))


def cell_cases():
    cells = [
        # name, factory, input shape, safetensors metadata or None (no .safetensors), write .pt
        ("cell_lstm", lambda: nn.LSTMCell(10, 20), (4, 3, 10), {}, True),
        ("cell_gru", lambda: nn.GRUCell(4, 6), (5, 4), {}, True),
        ("cell_rnn_relu", lambda: nn.RNNCell(3, 5, nonlinearity="relu"), (4, 2, 3), {"nonlinearity": "relu"}, False),
        ("cell_rnn_nobias", lambda: nn.RNNCell(3, 5, bias=False), (4, 2, 3), None, True),
    ]
    for seed, (name, factory, shape, metadata, pt) in enumerate(cells, start=10):
        torch.manual_seed(seed)
        cell = factory()
        x = torch.randn(*shape)
        expected = run_cell(cell, x)
        assert_same(run_layer(layer_for_cell(cell), x), expected, f"{name} as a layer")
        save_expected(name, x, *expected)
        if metadata is not None:
            save_file(cell.state_dict(), OUT / f"{name}.safetensors", metadata=metadata or None)
            CHECKS.append((f"{name}.safetensors", None, factory, name))
        if pt:
            torch.save(cell.state_dict(), OUT / f"{name}.pt")
            CHECKS.append((f"{name}.pt", None, factory, name))

    torch.manual_seed(20)
    model = CellHead()
    x = torch.randn(3, 2, 3)
    expected = run_cell(model.cell, x)
    assert_same(run_layer(layer_for_cell(model.cell), x), expected, "cell_lstm_prefix as a layer")
    save_expected("cell_lstm_prefix", x, *expected)
    save_file(model.state_dict(), OUT / "cell_lstm_prefix.safetensors")
    CHECKS.append(
        (
            "cell_lstm_prefix.safetensors",
            lambda sd: {k[len("cell.") :]: v for k, v in sd.items() if k.startswith("cell.")},
            lambda: nn.LSTMCell(3, 4),
            "cell_lstm_prefix",
        )
    )


def weights_only_error(path):
    """torch.load(weights_only=True)'s error (its first line, and the line that names
    the cause when there is one), or None if it loads."""
    try:
        torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001  (whatever torch raises is the answer)
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        cause = [line for line in lines[1:] if "GLOBAL" in line or "Unsupported" in line]
        return " / ".join([f"{type(e).__name__}: {lines[0]}"] + cause[:1])
    return None


def bad_files():
    good = (OUT / "pt_lstm_zip.pt").read_bytes()
    (OUT / "bad_truncated.pt").write_bytes(good[: len(good) // 2])

    entries = zip_entries(OUT / "pt_lstm_zip.pt")
    assert entries[0][0] == "pt_lstm_zip/data.pkl", [n for n, _ in entries]
    write_zip(OUT / "bad_no_data_pkl.pt", [(n, p) for n, p in entries if not n.endswith("/data.pkl")])

    evil = {"weight_ih_l0": torch.zeros(4, 3), "x": Evil()}
    torch.save(evil, OUT / "bad_evil_global.pt")
    save_legacy(evil, OUT / "bad_evil_global_legacy.pt")
    torch.save(evil, OUT / "bad_evil_proto4.pt", pickle_protocol=4)

    torch.manual_seed(30)
    torch.save(nn.GRU(3, 4), OUT / "bad_full_module.pt")

    keys = storage_keys_of(entries[0][1])
    victim = f"pt_lstm_zip/data/{keys['weight_hh_l0']}"
    short = [(n, p[: len(p) // 2] if n == victim else p) for n, p in entries]
    assert any(n == victim for n, _ in short), victim
    write_zip(OUT / "bad_short_storage.pt", short)

    text = b"this is not a checkpoint\n"
    (OUT / "bad_not_a_checkpoint.pt").write_bytes((text * 3)[:64])

    errors = {}
    for name in (
        "bad_evil_global.pt",
        "bad_evil_global_legacy.pt",
        "bad_evil_proto4.pt",
        "bad_full_module.pt",
        "bad_truncated.pt",
        "bad_no_data_pkl.pt",
        "bad_short_storage.pt",
        "bad_not_a_checkpoint.pt",
    ):
        errors[name] = weights_only_error(OUT / name)
        assert errors[name] is not None, f"torch.load(weights_only=True) accepted {name}"
    # The short storage must fail even for the unrestricted loader: the file disagrees
    # with itself, not with a policy.
    try:
        torch.load(OUT / "bad_short_storage.pt", weights_only=False)
    except Exception as e:  # noqa: BLE001
        errors["bad_short_storage.pt (weights_only=False)"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    else:
        raise AssertionError("torch.load accepted bad_short_storage.pt")
    assert not PWNED.exists(), f"{PWNED} exists: something ran a pickled global"
    return victim, errors


def check_all():
    """Reload every good file as a user would and reproduce the saved outputs."""
    for file, extract, factory, name in CHECKS:
        path = OUT / file
        obj = load_file(path) if file.endswith(".safetensors") else torch.load(path, weights_only=True)
        sd = extract(obj) if extract else obj
        module = factory()
        module.load_state_dict(sd)
        dtype = torch.float64 if name == "pt_rnn_f64" else torch.float32
        x = torch.from_numpy(np.load(OUT / f"{name}_input.npy"))
        assert x.dtype == dtype, (name, x.dtype)
        got = run_cell(module, x) if isinstance(module, nn.RNNCellBase) else run_layer(module, x)
        output, state = got
        assert_same(output, torch.from_numpy(np.load(OUT / f"{name}_output.npy")), f"{file} output")
        h, c = state if isinstance(state, tuple) else (state, None)
        assert_same(h, torch.from_numpy(np.load(OUT / f"{name}_hn.npy")), f"{file} h_n")
        if c is not None:
            assert_same(c, torch.from_numpy(np.load(OUT / f"{name}_cn.npy")), f"{file} c_n")
        else:
            assert not (OUT / f"{name}_cn.npy").exists(), name


def main():
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
    warnings.filterwarnings("ignore", message="Detected pickle protocol 4")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    PWNED.unlink(missing_ok=True)
    layer_cases()
    cell_cases()
    victim, errors = bad_files()
    check_all()
    for name, error in errors.items():
        print(f"  {name}: {error}")
    files = sorted(OUT.iterdir())
    size = sum(p.stat().st_size for p in files)
    print(
        f"wrote {len(files)} files ({size} bytes) to {OUT}; checked {len(CHECKS)} good files; "
        f"short storage: {victim} (torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
