"""PyTorch fixtures for the README's "From PyTorch in 3 steps": state dicts saved the
way a torch user saves them, with and without the metadata that records the options
the tensors cannot show.

Run from the repository root (it needs torch, numpy and safetensors)::

    python3 -m venv .venv && .venv/bin/pip install torch numpy safetensors
    .venv/bin/python scripts/fixtures_first_hour.py

Deterministic (``torch.manual_seed(0)`` per case) and idempotent: it rewrites
``crates/recurrent/tests/fixtures/first_hour/``, and copies two cases to
``examples/data/`` for the README and the crate's front page: ``lstm_bf_meta`` as
``lstm.safetensors``, ``lstm_input.npy``, ``lstm_expected_output.npy``, and
``gru_meta`` as ``gru.safetensors``, ``gru_input.npy``, ``gru_expected_output.npy``.

Cases, each ``<case>.safetensors`` (the state dict, as ``save_file`` writes it) plus
``<case>_input.npy`` and torch's ``<case>_output.npy``, ``<case>_hn.npy`` (and
``<case>_cn.npy``):

- ``lstm_bf_nometa``: ``LSTM(10, 20, num_layers=2, batch_first=True)`` saved with
  ``save_file(model.state_dict(), path)``: nothing records ``batch_first``.
- ``lstm_bf_meta``: the same model saved with ``metadata={"batch_first": "true"}``.
- ``rnn_relu_nometa``: ``RNN(6, 8, nonlinearity="relu")`` saved without metadata.
- ``gru_meta``: ``GRU(5, 7, num_layers=2)`` saved with ``metadata={"batch_first":
  "false"}`` (unbatched input).
- ``lstm_f16`` / ``gru_bf16``: ``LSTM(6, 9, proj_size=4)`` after ``.half()`` and
  ``GRU(6, 9, bidirectional=True)`` after ``.to(torch.bfloat16)``, saved as they are.
  Their outputs are torch's float32 computation with those weights widened
  (``.float()``), which is what ``recurrent`` computes for a float32 input.
- ``gru_wn`` / ``lstm_wn_old``: ``GRU(4, 6, num_layers=2)`` with
  ``torch.nn.utils.parametrizations.weight_norm`` on ``weight_hh_l0`` (dim 0) and
  ``weight_ih_l1`` (dim 1), and ``LSTM(4, 5)`` with the older
  ``torch.nn.utils.weight_norm`` on ``weight_hh_l0``; their state dicts hold g and v,
  not the weights. Outputs are torch's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "crates/recurrent/tests/fixtures/first_hour"


def case(name, module, x, metadata):
    torch.manual_seed(0)
    module.eval()
    with torch.no_grad():
        output, state = module(x)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, OUT / f"{name}.safetensors", metadata=metadata)
    np.save(OUT / f"{name}_input.npy", x.numpy())
    np.save(OUT / f"{name}_output.npy", output.numpy())
    if isinstance(state, tuple):
        np.save(OUT / f"{name}_hn.npy", state[0].numpy())
        np.save(OUT / f"{name}_cn.npy", state[1].numpy())
    else:
        np.save(OUT / f"{name}_hn.npy", state.numpy())


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(10, 20, num_layers=2, batch_first=True)
    x = torch.randn(3, 7, 10)  # (N, L, H_in)
    case("lstm_bf_nometa", lstm, x, None)
    case("lstm_bf_meta", lstm, x, {"batch_first": "true"})
    torch.manual_seed(1)
    rnn = torch.nn.RNN(6, 8, nonlinearity="relu")
    case("rnn_relu_nometa", rnn, torch.randn(5, 2, 6), None)
    torch.manual_seed(2)
    gru = torch.nn.GRU(5, 7, num_layers=2)
    case("gru_meta", gru, torch.randn(4, 5), {"batch_first": "false"})
    data = OUT.parent.parent.parent.parent.parent / "examples/data"
    for case_name, short in [("lstm_bf_meta", "lstm"), ("gru_meta", "gru")]:
        shutil.copy(OUT / f"{case_name}.safetensors", data / f"{short}.safetensors")
        shutil.copy(OUT / f"{case_name}_input.npy", data / f"{short}_input.npy")
        shutil.copy(OUT / f"{case_name}_output.npy", data / f"{short}_expected_output.npy")
    for name, module, dtype in [
        ("lstm_f16", torch.nn.LSTM(6, 9, proj_size=4), torch.float16),
        ("gru_bf16", torch.nn.GRU(6, 9, bidirectional=True), torch.bfloat16),
    ]:
        torch.manual_seed(3)
        module.eval()
        low = module.to(dtype)
        save_file({k: v.contiguous() for k, v in low.state_dict().items()}, OUT / f"{name}.safetensors")
        wide = low.float()
        x = torch.randn(5, 2, 6)
        with torch.no_grad():
            output, state = wide(x)
        np.save(OUT / f"{name}_input.npy", x.numpy())
        np.save(OUT / f"{name}_output.npy", output.numpy())
        h = state[0] if isinstance(state, tuple) else state
        np.save(OUT / f"{name}_hn.npy", h.numpy())
    import warnings

    torch.manual_seed(4)
    gru = torch.nn.GRU(4, 6, num_layers=2)
    from torch.nn.utils import parametrizations

    parametrizations.weight_norm(gru, "weight_hh_l0", dim=0)
    parametrizations.weight_norm(gru, "weight_ih_l1", dim=1)
    with torch.no_grad():  # g away from ||v||, so that a missing g would show
        gru.parametrizations.weight_hh_l0.original0.mul_(1.7)
        gru.parametrizations.weight_ih_l1.original0.mul_(0.6)
    torch.manual_seed(5)
    lstm = torch.nn.LSTM(4, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the old API is deprecated
        torch.nn.utils.weight_norm(lstm, "weight_hh_l0")
    with torch.no_grad():
        lstm.weight_hh_l0_g.mul_(1.3)
    for name, module in [("gru_wn", gru), ("lstm_wn_old", lstm)]:
        module.eval()
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, OUT / f"{name}.safetensors")
        x = torch.randn(6, 3, 4)
        with torch.no_grad():
            output, state = module(x)
        np.save(OUT / f"{name}_input.npy", x.numpy())
        np.save(OUT / f"{name}_output.npy", output.numpy())
        h = state[0] if isinstance(state, tuple) else state
        np.save(OUT / f"{name}_hn.npy", h.numpy())
    print(f"wrote {len(list(OUT.iterdir()))} files to {OUT} and 6 to {data} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
