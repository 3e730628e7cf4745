"""Shared test set-up: TensorFlow threads and seeds are fixed here, once, for every test."""

from __future__ import annotations

import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _configure_tensorflow() -> None:
    import tensorflow as tf

    # Under pytest-xdist each worker gets one core; alone, the test run uses both.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = max(1, (os.cpu_count() or 2) // workers)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # already initialised by an earlier import; keep its setting


_configure_tensorflow()


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same seeds, so no test depends on the order it runs in."""
    import keras

    random.seed(1234)
    np.random.seed(1234)
    keras.utils.set_random_seed(1234)
    yield
