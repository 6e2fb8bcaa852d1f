#!/usr/bin/env python3
"""Score a large set of sequences with a recurrent model on Ray Data.

Each sequence (L time steps of H_in features) goes through an LSTM; its score is the last
layer's final hidden state h_n[-1] (H values). Ray Data streams the data set through a pool
of actors with ``map_batches``: each actor is a callable class that loads the model once,
uses one thread (``recurrent.set_num_threads(1)``: Ray runs one actor per CPU), and scores
NumPy batches (``batch_format="numpy"``). The computation releases the GIL and needs no torch.

    pip install "ray[data]" numpy recurrent          # recurrent: the wheel this repo builds
    python examples/python/ray_batch_inference.py --rows 200000
    python examples/python/ray_batch_inference.py --model lstm.safetensors   # a model torch saved

On a real cluster, start Ray there (``ray start --head`` / workers, or a managed cluster)
and run this script with ``--address auto`` (or RAY_ADDRESS=ray://head:10001), and read
the data with ``ray.data.read_parquet("s3://...")`` instead of the synthetic set; the
model file must be readable from every node (shared storage), or pass the layer itself
(it pickles). The script checks the scores against one process computing the same batches.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import recurrent

SEQ_LEN, FEATURES, HIDDEN, LAYERS = 50, 16, 32, 2


def make_sequences(ids: np.ndarray) -> np.ndarray:
    """The synthetic data set: sequence ``i`` is a function of ``i`` alone, so any process
    (an actor, the checker) makes the same one. ``(len(ids), SEQ_LEN, FEATURES)`` float32."""
    t = np.arange(SEQ_LEN, dtype=np.float64)[None, :, None]
    f = np.arange(FEATURES, dtype=np.float64)[None, None, :]
    i = ids.astype(np.float64)[:, None, None]
    return np.sin(0.37 * i + 0.11 * t * (1 + f % 3) + 0.5 * f).astype(np.float32)


def load_model(path: str | None) -> recurrent.LSTM:
    """The model: a file torch saved, or (for the demo) an LSTM with torch's default init
    drawn from a fixed seed, the same in every process."""
    if path:
        return recurrent.load(path)
    return recurrent.LSTM(FEATURES, HIDDEN, num_layers=LAYERS, batch_first=True, seed=0)


class Scorer:
    """Ray Data's callable class: built once per actor, called once per batch."""

    def __init__(self, model_path: str | None = None):
        recurrent.set_num_threads(1)  # one thread per worker: Ray runs one actor per CPU
        self.model = load_model(model_path)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = make_sequences(batch["id"])  # (B, L, H_in); from storage in a real job
        _, (h_n, _) = self.model(x)
        # "batch": the batch's first id, so that the check can recompute the same batches.
        return {"id": batch["id"], "score": h_n[-1], "batch": np.full(len(x), batch["id"][0])}


def score_locally(model, ids: np.ndarray, batches: np.ndarray) -> np.ndarray:
    """The single-process reference: the same model on the same batches (rows labelled
    alike, in id order), in one process."""
    out = np.empty((len(ids), HIDDEN), np.float32)
    for label in np.unique(batches):
        rows = np.flatnonzero(batches == label)
        out[rows] = model(make_sequences(ids[rows]))[1][0][-1]
    return out


def run(rows: int, batch_size: int, actors: int, model_path: str | None, address: str | None) -> dict:
    import ray

    # Locally: one CPU per actor, and one for the tasks that read the data.
    ray.init(address=address, num_cpus=None if address else actors + 1, include_dashboard=False,
             log_to_driver=False, ignore_reinit_error=True)
    ds = ray.data.range(rows, override_num_blocks=max(actors * 4, 1))
    start = time.perf_counter()
    scored = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={"model_path": model_path},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    result = scored.to_numpy_refs()
    parts = ray.get(result)
    elapsed = time.perf_counter() - start
    ids = np.concatenate([p["id"] for p in parts])
    scores = np.concatenate([p["score"] for p in parts])
    batches = np.concatenate([p["batch"] for p in parts])
    order = np.argsort(ids)
    ids, scores, batches = ids[order], scores[order], batches[order]
    assert np.array_equal(ids, np.arange(rows)), "every row scored once"
    reference = score_locally(load_model(model_path), ids, batches)
    return {"rows": rows, "elapsed_s": elapsed, "scores": scores, "reference": reference}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--model", help="a model file (safetensors, torch.save); default: the seeded demo LSTM")
    p.add_argument("--address", help="a Ray cluster to join (e.g. 'auto'); default: a local one")
    args = p.parse_args()
    r = run(args.rows, args.batch_size, args.actors, args.model, args.address)
    diff = float(np.abs(r["scores"] - r["reference"]).max())
    equal = bool(np.array_equal(r["scores"], r["reference"]))
    print(f"ray: scored {r['rows']} sequences (L={SEQ_LEN}, H_in={FEATURES}) in {r['elapsed_s']:.2f} s "
          f"with {args.actors} actors; scores {r['scores'].shape} {r['scores'].dtype}")
    print(f"ray: equal to the single-process scores: {equal} (max abs difference {diff:.3g}); "
          f"checksum {float(r['scores'].astype(np.float64).sum()):.6f}")
    return 0 if diff <= 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
