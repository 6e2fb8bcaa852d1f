"""The Python API without torch: torch's constructor checks, input forms, streams, threads,
and every bad input raising a Python exception (never crashing, never a partial result)."""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest

import recurrent
from conftest import FIXTURES, assert_close, read_safetensors

KINDS = [recurrent.RNN, recurrent.LSTM, recurrent.GRU]


def _h(out):
    return out[1][0] if isinstance(out[1], tuple) else out[1]


def test_no_torch_import_at_load():
    import subprocess
    import sys

    code = "import sys, recurrent; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("cls", KINDS)
def test_defaults_and_shapes(cls):
    layer = cls(4, 6, seed=0)
    assert (layer.input_size, layer.hidden_size, layer.num_layers, layer.bias, layer.batch_first,
            layer.dropout, layer.bidirectional) == (4, 6, 1, True, False, 0.0, False)
    assert layer.dtype == np.float32
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[cls.__name__]
    assert layer.state_dict()["weight_ih_l0"].shape == (gates * 6, 4)
    bound = 1 / np.sqrt(6)  # torch's default init: U(-1/sqrt(H), 1/sqrt(H))
    assert all(np.abs(t).max() <= bound for t in layer.parameters())
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    out = layer(x)
    assert out[0].shape == (5, 3, 6) and _h(out).shape == (1, 3, 6)
    out_unbatched = layer(x[:, 0])
    assert out_unbatched[0].shape == (5, 6) and _h(out_unbatched).shape == (1, 6)
    assert_close(out_unbatched[0], out[0][:, 0])


def test_seed_is_reproducible_and_random_without_it():
    a, b, c = recurrent.GRU(3, 4, seed=7), recurrent.GRU(3, 4, seed=7), recurrent.GRU(3, 4)
    np.testing.assert_array_equal(a.state_dict()["weight_hh_l0"], b.state_dict()["weight_hh_l0"])
    assert not np.array_equal(a.state_dict()["weight_hh_l0"], c.state_dict()["weight_hh_l0"])


@pytest.mark.parametrize(
    "kwargs,exc,message",
    [
        ({"dropout": 1.5}, ValueError, "dropout should be a number in range [0, 1]"),
        ({"dropout": True}, ValueError, "dropout should be a number"),
        ({"dropout": "0.1"}, ValueError, "dropout should be a number"),
        ({"hidden_size": 0}, ValueError, "hidden_size must be greater than zero"),
        ({"hidden_size": 2.0}, TypeError, "hidden_size should be of type int, got: float"),
        ({"input_size": -1}, ValueError, "input_size must be greater than zero"),
        ({"input_size": "3"}, TypeError, "input_size should be of type int, got: str"),
        ({"num_layers": 0}, ValueError, "num_layers must be greater than zero"),
        ({"bias": 1}, TypeError, "bias should be of type bool, got: int"),
        ({"batch_first": None}, TypeError, "batch_first should be of type bool"),
        ({"dtype": "int32"}, TypeError, "dtype must be float32 or float64"),
        ({"device": "cuda"}, ValueError, "recurrent computes on the CPU"),
        ({"seed": -1}, ValueError, "seed must be in"),
    ],
)
@pytest.mark.parametrize("cls", KINDS)
def test_constructor_errors_are_torchs(cls, kwargs, exc, message):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(exc) as info:
        cls(**args)
    assert message in str(info.value)


def test_kind_specific_constructor_errors():
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
        recurrent.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        recurrent.RNN(3, 4, proj_size=0)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        recurrent.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size should be a positive integer or zero"):
        recurrent.LSTM(3, 4, proj_size=-1)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'. Select from 'tanh' or 'relu'."):
        recurrent.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        recurrent.LSTM(3, 4, dropout=0.5)


@pytest.mark.parametrize("cls", KINDS)
def test_any_strides_and_layouts_give_the_same_numbers(cls):
    """Equal to rounding: a copy in another layout may be summed in another order."""
    tol = {"rtol": 1e-6, "atol": 1e-7}
    layer = cls(4, 5, num_layers=2, bidirectional=True, seed=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    want = layer(x)
    forms = [
        np.asfortranarray(x),
        np.ascontiguousarray(np.transpose(np.transpose(x, (2, 1, 0)), (2, 1, 0))),
        rng.standard_normal((12, 3, 8)).astype(np.float32)[::2, :, ::2] * 0 + x,  # copy with values of x
        np.repeat(x, 2, axis=2)[:, :, ::2],  # strided view
        x.astype(">f4"),  # big-endian
        x[::-1][::-1],  # negative strides
    ]
    for form in forms:
        got = layer(form)
        assert_close(got[0], want[0], **tol)
        assert_close(_h(got), _h(want), **tol)
    # batch_first takes (N, L, H_in) and gives (N, L, D*H)
    bf = cls.from_state_dict(layer.state_dict(), batch_first=True)
    got = bf(np.transpose(x, (1, 0, 2)))  # a transposed view: non-contiguous
    assert_close(got[0], np.transpose(want[0], (1, 0, 2)), **tol)
    assert_close(_h(got), _h(want), **tol)


@pytest.mark.parametrize("cls", KINDS)
def test_float64_in_float64_out(cls):
    layer = cls(3, 4, seed=2)
    x = np.random.default_rng(2).standard_normal((5, 2, 3))
    with pytest.raises(TypeError, match="layer's dtype float32, got float64"):
        layer(x)
    double = layer.double()
    out = double(x)
    assert out[0].dtype == np.float64 and _h(out).dtype == np.float64
    single = layer(x.astype(np.float32))
    np.testing.assert_allclose(out[0], single[0], atol=1e-5)
    # lists become the layer's dtype
    assert layer(x.tolist())[0].dtype == np.float32


def test_outputs_are_owned_arrays_without_a_copy():
    out, h = recurrent.GRU(3, 4, seed=0)(np.ones((2, 1, 3), np.float32))
    assert out.flags.writeable and out.flags.c_contiguous
    out[...] = 0  # ours to change
    assert not out.flags.owndata  # NumPy wraps the library's buffer (no copy made)


def _fixture(folder, name):
    return read_safetensors(FIXTURES / folder / name)


def test_from_state_dict_with_prefix_and_nesting():
    tensors, _ = _fixture("lstm", "f32_l2_h0.safetensors")
    params = {k: v for k, v in tensors.items() if k.startswith(("weight", "bias"))}
    nested = {f"encoder.rnn.{k}": v for k, v in params.items()}
    nested["decoder.weight"] = np.zeros((2, 2), np.float32)
    a = recurrent.LSTM.from_state_dict(params)
    b = recurrent.LSTM.from_state_dict(nested)  # the one prefix holding a layer is found
    c = recurrent.LSTM.from_state_dict(nested, prefix="encoder.rnn")
    for other in (b, c):
        for (na, ta), (nb, tb) in zip(a.named_parameters(), other.named_parameters()):
            assert na == nb
            np.testing.assert_array_equal(ta, tb)
    two = {**nested, **{f"other.{k}": v for k, v in params.items()}}
    with pytest.raises(ValueError, match="several recurrent layers; pass a prefix, one of: 'encoder.rnn.', 'other.'"):
        recurrent.LSTM.from_state_dict(two)
    with pytest.raises(ValueError, match="not a GRU: load it with recurrent.LSTM"):
        recurrent.GRU.from_state_dict(params)
    with pytest.raises(ValueError, match="num_layers=3 given"):
        recurrent.LSTM.from_state_dict(params, num_layers=3)
    missing = dict(params)
    del missing["bias_hh_l1"]
    with pytest.raises(ValueError, match="bias_hh_l1"):
        recurrent.LSTM.from_state_dict(missing)
    wrong = dict(params, weight_hh_l0=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="must have shape"):
        recurrent.LSTM.from_state_dict(wrong)
    with pytest.raises(ValueError, match="no recurrent layer found"):
        recurrent.LSTM.from_state_dict({"fc.weight": np.zeros((2, 2))})


def test_state_dict_round_trip_and_pickle():
    layer = recurrent.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True, batch_first=True, seed=3)
    again = recurrent.LSTM.from_state_dict(layer.state_dict(), batch_first=True)
    x = np.random.default_rng(3).standard_normal((2, 4, 3)).astype(np.float32)
    assert_close(again(x)[0], layer(x)[0], rtol=0, atol=0)
    copy = pickle.loads(pickle.dumps(layer))
    assert repr(copy) == repr(layer) == "LSTM(3, 6, proj_size=2, num_layers=2, batch_first=True, bidirectional=True)"
    assert_close(copy(x)[1][1], layer(x)[1][1], rtol=0, atol=0)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        recurrent.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ValueError, match="junk.safetensors"):
        recurrent.load(junk)
    with pytest.raises(ValueError, match="holds .*GRU"):
        recurrent.LSTM.load(FIXTURES / "first_hour" / "gru_meta.safetensors")


@pytest.mark.parametrize("cls", KINDS)
def test_bad_inputs_raise(cls):
    layer = cls(3, 4, num_layers=2, seed=0)
    x = np.zeros((5, 2, 3), np.float32)
    state = (np.zeros((2, 2, 4), np.float32),) * 2 if cls is recurrent.LSTM else np.zeros((2, 2, 4), np.float32)
    bad_state = (np.zeros((2, 3, 4), np.float32),) * 2 if cls is recurrent.LSTM else np.zeros((2, 3, 4), np.float32)
    cases = [
        (lambda: layer(np.zeros((5, 2, 3, 1), np.float32)), ValueError, "expected input to be 2-D"),
        (lambda: layer(np.zeros((5, 2, 7), np.float32)), RuntimeError, "input.size(-1) must be equal to input_size: expected 3, got 7"),
        (lambda: layer(np.zeros((0, 2, 3), np.float32)), RuntimeError, "sequence length"),
        (lambda: layer(x, bad_state), RuntimeError, "expected hidden size"),
        (lambda: layer(np.zeros((5, 3), np.float32), state), RuntimeError, "h_0 should also be 2-D"),
        (lambda: layer(x.astype(np.int64)), TypeError, "float32 or float64"),
        (lambda: layer("abc"), TypeError, "input"),
        (lambda: layer(x, lengths=[5]), RuntimeError, "lengths"),
        (lambda: layer(x, lengths=[5, 0]), RuntimeError, "greater than 0"),
        (lambda: layer(x, lengths=[5, 6]), RuntimeError, ""),
        (lambda: layer(x, lengths=[5, -1]), ValueError, "greater than 0"),
        (lambda: layer(x, lengths=[[5, 5]]), ValueError, "1-D"),
        (lambda: layer.backward(x, np.zeros((5, 2, 5), np.float32)), RuntimeError, "grad_output"),
    ]
    if cls is recurrent.LSTM:
        cases.append((lambda: layer(x, np.zeros((2, 2, 4), np.float32)), TypeError, "tuple (h_0, c_0)"))
    for call, exc, message in cases:
        with pytest.raises(exc) as info:
            call()
        assert message in str(info.value)
    # the layer still works after every error
    assert layer(x)[0].shape == (5, 2, 4)


def test_empty_batch():
    out, (h, c) = recurrent.LSTM(3, 4, seed=0)(np.zeros((5, 0, 3), np.float32))
    assert out.shape == (5, 0, 4) and h.shape == (1, 0, 4) and c.shape == (1, 0, 4)


@pytest.mark.parametrize("cls", KINDS)
def test_stream_equals_one_call(cls):
    layer = cls(3, 5, num_layers=2, seed=4)
    x = np.random.default_rng(4).standard_normal((9, 2, 3)).astype(np.float32)
    whole, state = layer(x)
    stream = layer.stream()
    assert stream.state is None
    parts = [stream.feed(x[:4]), stream.feed(x[4:5]), stream.feed(x[5:])]
    tol = {"rtol": 1e-5, "atol": 1e-6}
    assert_close(np.concatenate(parts), whole, **tol)
    if cls is recurrent.LSTM:
        assert_close(stream.state[0], state[0], **tol)
        assert_close(stream.state[1], state[1], **tol)
    else:
        assert_close(stream.state, state, **tol)
    stream.reset()
    steps = [stream.step(x[t]) for t in range(9)]
    assert_close(np.stack(steps), whole, **tol)
    # unbatched stream, one step of shape (H_in,)
    unbatched = layer.stream()
    outs = [unbatched.step(x[t, 1]) for t in range(9)]
    assert_close(np.stack(outs), whole[:, 1], **tol)
    with pytest.raises(RuntimeError, match="input.size"):
        stream.step(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="bidirectional layer cannot stream"):
        cls(3, 5, bidirectional=True).stream()


def test_stream_starts_from_state():
    layer = recurrent.LSTM(3, 4, seed=5)
    x = np.random.default_rng(5).standard_normal((6, 1, 3)).astype(np.float32)
    h0 = (np.full((1, 1, 4), 0.5, np.float32), np.full((1, 1, 4), -0.5, np.float32))
    whole, _ = layer(x, h0)
    stream = layer.stream(h0)
    assert_close(stream.feed(x), whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="tuple"):
        stream.reset(h0[0])
    stream.reset(h0)
    assert_close(stream.feed(x), whole, rtol=1e-5, atol=1e-6)


def test_num_threads():
    with pytest.raises(ValueError, match="positive integer"):
        recurrent.set_num_threads(0)
    before = recurrent.get_num_threads()
    recurrent.set_num_threads(1)
    assert recurrent.get_num_threads() == 1
    layer = recurrent.GRU(8, 16, seed=0)
    x = np.ones((4, 2, 8), np.float32)
    one = layer(x)[0]
    recurrent.set_num_threads(max(before, 2))
    assert recurrent.get_num_threads() == max(before, 2)
    assert_close(layer(x)[0], one, rtol=0, atol=0)


def test_two_threads_overlap_gil_released():
    """Two threads calling one shared layer run at the same time: each call's interval
    overlaps the other thread's (with the GIL held, one would wait for the other)."""
    recurrent.set_num_threads(1)
    layer = recurrent.LSTM(64, 128, seed=0)
    x = np.ones((400, 4, 64), np.float32)
    start = time.perf_counter()
    layer(x)
    single = time.perf_counter() - start
    intervals = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        for _ in range(3):
            t0 = time.perf_counter()
            layer(x)
            intervals[i].append((t0, time.perf_counter()))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    overlap = sum(
        max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in intervals[0] for b0, b1 in intervals[1]
    )
    # Three calls per thread: with the GIL held the intervals could only touch.
    assert overlap > 0.5 * single, (overlap, single)


def test_a_python_thread_runs_while_a_layer_computes():
    recurrent.set_num_threads(1)
    layer = recurrent.GRU(64, 256, seed=0)
    x = np.ones((1500, 2, 64), np.float32)
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.01)
    t0 = time.perf_counter()
    layer(x)
    t1 = time.perf_counter()
    done.set()
    t.join()
    during = [s for s in ticks if t0 < s < t1]
    assert t1 - t0 > 0.02, "the call is too short to tell"
    assert len(during) >= 3, (len(during), t1 - t0)


def test_cells_api_and_errors():
    cell = recurrent.LSTMCell(3, 4, seed=0)
    x = np.ones((2, 3), np.float32)
    h, c = cell(x)
    assert h.shape == c.shape == (2, 4)
    layer = recurrent.LSTM.from_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    out, (hl, cl) = layer(x[None])
    assert_close(h, hl[0], rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D|1-D or 2-D"):
        cell(np.ones((1, 2, 3), np.float32))
    with pytest.raises(RuntimeError):
        cell(x, (np.ones((3, 4), np.float32), np.ones((3, 4), np.float32)))
    with pytest.raises(TypeError, match="tuple"):
        cell(x, np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        recurrent.RNNCell(3, 4, nonlinearity="gelu")
    assert repr(recurrent.RNNCell(3, 4, bias=False, nonlinearity="relu")) == "RNNCell(3, 4, bias=False, nonlinearity=relu)"
