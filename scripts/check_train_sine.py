#!/usr/bin/env python3
"""Load the weights `cargo run --release --example train_sine --features examples` wrote into the PyTorch module
it describes, and check that torch predicts what recurrent predicted on the held-out batch.

    .venv/bin/python scripts/check_train_sine.py [train_sine.safetensors]
"""

import sys

import torch
from safetensors.torch import load_file
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(1, 32)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0]).squeeze(-1)


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "train_sine.safetensors"
    tensors = load_file(path)
    check = {k: tensors.pop(k) for k in list(tensors) if k.startswith("check.")}
    model = Model().eval()
    model.load_state_dict(tensors)  # strict: every key matches
    with torch.no_grad():
        prediction = model(check["check.input"])
    torch.testing.assert_close(prediction, check["check.prediction"])
    print(f"torch reproduces recurrent's predictions (max |diff| {(prediction - check['check.prediction']).abs().max():.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
