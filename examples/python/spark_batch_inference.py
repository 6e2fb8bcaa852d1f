#!/usr/bin/env python3
"""Score a large set of sequences with a recurrent model on Spark, with
``pyspark.ml.functions.predict_batch_udf``.

Each row is one sequence (L x H_in floats); the UDF's ``make_predict_fn``
loads the model once per Python worker, sets one thread per worker (Spark runs one task
per core), and scores NumPy batches: the last layer's final hidden state h_n[-1] (H values)
per sequence. The computation releases the GIL and needs no torch.

    pip install pyspark numpy pandas pyarrow recurrent   # Java 17 for Spark
    python examples/python/spark_batch_inference.py --rows 100000
    python examples/python/spark_batch_inference.py --model lstm.safetensors

On a real cluster, submit it with ``spark-submit --master spark://host:7077`` (or yarn,
k8s) and ``--master`` here set to that URL (or omitted under spark-submit), read the
sequences with ``spark.read.parquet(...)``, and install the recurrent wheel on every
executor (``pip install`` in the image, or ``--archives`` with a packed venv); a model file
must be on shared storage. The script checks the scores against one process computing the
same sequences.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import recurrent

SEQ_LEN, FEATURES, HIDDEN, LAYERS = 50, 16, 32, 2


def make_sequences(ids: np.ndarray) -> np.ndarray:
    """Sequence ``i`` as a function of ``i`` alone (the Ray example's data set):
    ``(len(ids), SEQ_LEN, FEATURES)`` float32."""
    t = np.arange(SEQ_LEN, dtype=np.float64)[None, :, None]
    f = np.arange(FEATURES, dtype=np.float64)[None, None, :]
    i = ids.astype(np.float64)[:, None, None]
    return np.sin(0.37 * i + 0.11 * t * (1 + f % 3) + 0.5 * f).astype(np.float32)


def load_model(path: str | None) -> recurrent.LSTM:
    if path:
        return recurrent.load(path)
    return recurrent.LSTM(FEATURES, HIDDEN, num_layers=LAYERS, batch_first=True, seed=0)


def make_predict_fn(model_path: str | None = None):
    """Called once per Python worker by predict_batch_udf: loads the model, returns the
    batch function: ids ``(B,)`` -> ``{"score": (B, H), "batch": (B,)}``."""

    def build():
        recurrent.set_num_threads(1)
        model = load_model(model_path)

        def predict(ids: np.ndarray) -> np.ndarray:
            x = make_sequences(ids)  # (B, L, H_in) float32
            _, (h_n, _) = model(x)
            # The batch's first id beside each score, so that the check can recompute the
            # same batches.
            return {"score": h_n[-1], "batch": np.full(len(ids), ids[0], dtype=np.int64)}

        return predict

    return build


def run(rows: int, batch_size: int, master: str, model_path: str | None) -> dict:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, FloatType, LongType, StructField, StructType

    # Local mode: the workers run this interpreter (the one with recurrent installed).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(master).appName("recurrent-batch-inference")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        # The ids; each sequence is made from its id in the worker (in a real job the
        # sequences come from storage: spark.read.parquet(...), one array column).
        df = spark.range(rows, numPartitions=4)
        out = StructType([StructField("score", ArrayType(FloatType())), StructField("batch", LongType())])
        score = predict_batch_udf(make_predict_fn(model_path), return_type=out, batch_size=batch_size)
        start = time.perf_counter()
        pdf = df.select("id", score("id").alias("r")).select("id", "r.score", "r.batch").toPandas()
        elapsed = time.perf_counter() - start
    finally:
        spark.stop()
    pdf = pdf.sort_values("id")
    ids = pdf["id"].to_numpy()
    assert np.array_equal(ids, np.arange(rows)), "every row scored once"
    scores = np.stack(pdf["score"].to_numpy()).astype(np.float32)
    batches = pdf["batch"].to_numpy()
    model = load_model(model_path)
    reference = np.empty_like(scores)
    for label in np.unique(batches):  # the same batches, in one process
        rows_ = np.flatnonzero(batches == label)
        reference[rows_] = model(make_sequences(ids[rows_]))[1][0][-1]
    return {"rows": rows, "elapsed_s": elapsed, "scores": scores, "reference": reference}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--model", help="a model file (safetensors, torch.save); default: the seeded demo LSTM")
    args = p.parse_args()
    r = run(args.rows, args.batch_size, args.master, args.model)
    diff = float(np.abs(r["scores"] - r["reference"]).max())
    equal = bool(np.array_equal(r["scores"], r["reference"]))
    print(f"spark: scored {r['rows']} sequences (L={SEQ_LEN}, H_in={FEATURES}) in {r['elapsed_s']:.2f} s "
          f"on {args.master}; scores {r['scores'].shape} {r['scores'].dtype}")
    print(f"spark: equal to the single-process scores: {equal} (max abs difference {diff:.3g}); "
          f"checksum {float(r['scores'].astype(np.float64).sum()):.6f}")
    return 0 if diff <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
