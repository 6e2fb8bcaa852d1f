"""Ray Data and Spark local mode: the examples' jobs on a small set, equal to one process
(run with ``pytest -m engines``; skipped when the engine is not installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"

pytestmark = pytest.mark.engines


def _example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ray_data_map_batches_equals_one_process():
    pytest.importorskip("ray")
    r = _example("ray_batch_inference").run(rows=3000, batch_size=256, actors=2, model_path=None, address=None)
    assert r["scores"].shape == (3000, 32) and r["scores"].dtype == np.float32
    np.testing.assert_array_equal(r["scores"], r["reference"])
    assert np.abs(r["scores"]).max() > 0.01


def test_spark_predict_batch_udf_equals_one_process():
    pytest.importorskip("pyspark")
    r = _example("spark_batch_inference").run(rows=3000, batch_size=256, master="local[2]", model_path=None)
    assert r["scores"].shape == (3000, 32) and r["scores"].dtype == np.float32
    np.testing.assert_array_equal(r["scores"], r["reference"])
    assert np.abs(r["scores"]).max() > 0.01
