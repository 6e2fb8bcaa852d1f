"""Live-torch tier: the same checks against torch itself, over kinds and options (skipped
when torch is not importable)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import recurrent  # noqa: E402
from conftest import assert_close  # noqa: E402

MODULES = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}

OPTIONS = [
    dict(num_layers=n, bidirectional=b, batch_first=bf, bias=bias)
    for n, b, bf, bias in itertools.product((1, 2), (False, True), (False, True), (True, False))
]
EXTRA = {
    "RNN": [dict(nonlinearity="relu"), dict(nonlinearity="relu", num_layers=3, bidirectional=True)],
    "LSTM": [dict(proj_size=3), dict(proj_size=2, num_layers=2, bidirectional=True, batch_first=True)],
    "GRU": [dict(num_layers=3, bias=False)],
}
CASES = [(kind, opts) for kind in MODULES for opts in OPTIONS + EXTRA[kind]]


def _ids(case):
    kind, opts = case
    return kind + "-" + "-".join(f"{k}={v}" for k, v in opts.items())


def _torch_state(kind, state):
    if state is None:
        return None
    return tuple(torch.from_numpy(s) for s in state) if kind == "LSTM" else torch.from_numpy(state)


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("form", ["batched", "unbatched", "h0", "lengths"])
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_forward_matches_live_torch(case, form, dtype):
    kind, opts = case
    torch.manual_seed(hash((kind, form)) % 1000)
    module = MODULES[kind](5, 6, **opts).to(dtype).eval()
    ours = getattr(recurrent, kind).from_torch(module)
    assert ours.dtype == np.dtype(str(dtype).replace("torch.", ""))
    d = 2 if opts.get("bidirectional") else 1
    layers = opts.get("num_layers", 1)
    h_out = opts.get("proj_size", 0) or 6
    seq, batch = 7, 4
    bf = opts.get("batch_first", False)
    shape = (seq, 5) if form == "unbatched" else ((batch, seq, 5) if bf else (seq, batch, 5))
    x = torch.randn(*shape, dtype=dtype)
    hx = None
    if form == "h0":
        h0 = torch.randn(d * layers, batch, h_out, dtype=dtype)
        hx = (h0, torch.randn(d * layers, batch, 6, dtype=dtype)) if kind == "LSTM" else h0
    with torch.no_grad():
        if form == "lengths":
            lengths = [7, 3, 5, 1]
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=bf,
                                                             enforce_sorted=False)
            out_p, state = module(packed)
            want, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=bf, total_length=seq)
        else:
            lengths = None
            want, state = module(x, hx)
    hx_np = None if hx is None else (tuple(_np(t) for t in hx) if kind == "LSTM" else _np(hx))
    got, got_state = ours(x.numpy(), hx_np, lengths=lengths)
    assert_close(got, _np(want))
    if kind == "LSTM":
        assert_close(got_state[0], _np(state[0]))
        assert_close(got_state[1], _np(state[1]))
    else:
        assert_close(got_state, _np(state))


@pytest.mark.parametrize("case", CASES[::3], ids=[_ids(c) for c in CASES[::3]])
def test_backward_matches_autograd(case):
    kind, opts = case
    torch.manual_seed(1)
    module = MODULES[kind](4, 5, **opts).double()
    ours = getattr(recurrent, kind).from_torch(module)
    bf = opts.get("batch_first", False)
    x = torch.randn(*((3, 6, 4) if bf else (6, 3, 4)), dtype=torch.float64, requires_grad=True)
    out, state = module(x)
    grad_out = torch.randn_like(out)
    if kind == "LSTM":
        g_state = (torch.randn_like(state[0]), torch.randn_like(state[1]))
        loss = (out * grad_out).sum() + (state[0] * g_state[0]).sum() + (state[1] * g_state[1]).sum()
        g_np = tuple(_np(g) for g in g_state)
    else:
        g_state = torch.randn_like(state)
        loss = (out * grad_out).sum() + (state * g_state).sum()
        g_np = _np(g_state)
    loss.backward()
    grads = ours.backward(_np(x), _np(grad_out), grad_hn=g_np)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], _np(p.grad), rtol=1e-9, atol=1e-11, err_msg=name)
    np.testing.assert_allclose(grads["input"], _np(x.grad), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", list(MODULES))
def test_from_torch_round_trip(kind):
    module = MODULES[kind](3, 8, num_layers=2, bidirectional=True, batch_first=True, dropout=0.25)
    ours = getattr(recurrent, kind).from_torch(module)
    assert (ours.batch_first, ours.dropout, ours.num_layers, ours.bidirectional) == (True, 0.25, 2, True)
    assert repr(ours) == repr(module).replace("(3, 8, ", "(3, 8, ")
    back = MODULES[kind](3, 8, num_layers=2, bidirectional=True, batch_first=True)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for (n1, p1), (n2, p2) in zip(module.named_parameters(), back.named_parameters()):
        assert n1 == n2
        assert torch.equal(p1, p2)
    assert recurrent.from_torch(module).__class__ is getattr(recurrent, kind)
    with pytest.raises(ValueError, match=f"load it with recurrent.{kind}"):
        (recurrent.GRU if kind != "GRU" else recurrent.RNN).from_torch(module)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cells_match_live_torch(kind, dtype):
    torch.manual_seed(2)
    cell = getattr(torch.nn, f"{kind}Cell")(4, 6).to(dtype)
    ours = recurrent.from_torch(cell)
    assert type(ours).__name__ == f"{kind}Cell"
    x = torch.randn(3, 4, dtype=dtype)
    h = torch.randn(3, 6, dtype=dtype)
    with torch.no_grad():
        if kind == "LSTM":
            c = torch.randn(3, 6, dtype=dtype)
            want = cell(x, (h, c))
            got = ours(x.numpy(), (h.numpy(), c.numpy()))
            assert_close(got[0], _np(want[0]))
            assert_close(got[1], _np(want[1]))
        else:
            assert_close(ours(x.numpy(), h.numpy()), _np(cell(x, h)))
            assert_close(ours(x[0].numpy()), _np(cell(x[0])))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_stream_matches_torch_cell_per_step(kind):
    torch.manual_seed(3)
    module = MODULES[kind](4, 6, num_layers=2)
    ours = getattr(recurrent, kind).from_torch(module)
    x = torch.randn(10, 2, 4)
    with torch.no_grad():
        want, _ = module(x)
    stream = ours.stream()
    got = np.stack([stream.step(x[t].numpy()) for t in range(10)])
    np.testing.assert_allclose(got, _np(want), rtol=1e-5, atol=1e-6)


def test_tensors_are_accepted_as_inputs():
    module = torch.nn.GRU(3, 4)
    ours = recurrent.GRU.from_torch(module)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        want, _ = module(x)
    got, _ = ours(x)  # a tensor: read through NumPy, no torch import in the package
    assert_close(got, _np(want))
    with pytest.raises(TypeError, match="float32"):
        ours(x.double())
