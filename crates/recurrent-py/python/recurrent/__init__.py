"""torch.nn's recurrent layers on NumPy arrays, computed exactly, faster than torch on the CPU.

The API mirrors ``torch.nn``::

    import numpy as np, recurrent
    lstm = recurrent.LSTM(10, 20, num_layers=2, batch_first=True)   # torch's defaults and init
    x = np.random.rand(3, 7, 10).astype(np.float32)                 # (N, L, H_in)
    output, (h_n, c_n) = lstm(x)                                    # (3, 7, 20), (2, 3, 20) x 2

    m = recurrent.LSTM.from_torch(torch_lstm)        # a torch module (torch is not imported here)
    m = recurrent.GRU.from_state_dict(state_dict)    # numpy arrays (or tensors) by torch's names
    m = recurrent.load("model.safetensors")          # safetensors, torch.save files, ...

Layers: :class:`RNN`, :class:`LSTM`, :class:`GRU`; cells: :class:`RNNCell`,
:class:`LSTMCell`, :class:`GRUCell`; ``layer.stream()`` feeds one sequence in pieces;
``layer.backward(...)`` gives the gradients torch's autograd gives. Every computation
releases the GIL; layers may be shared between threads. float32 and float64.
"""

from ._native import get_num_threads, set_num_threads
from ._layers import GRU, LSTM, RNN, Stream, from_torch, load
from ._cells import GRUCell, LSTMCell, RNNCell

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Stream",
    "load",
    "from_torch",
    "set_num_threads",
    "get_num_threads",
]
