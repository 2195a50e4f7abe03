"""Shared fixtures. All tests run in one process (TensorFlow's import costs ~5 s)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clear_session():
    """Fresh Keras state (layer-name counters, global seed) before every test.

    ``free_memory=False`` skips the full garbage collection (0.3 s a call), which
    tiny test models don't need.
    """
    keras.backend.clear_session(free_memory=False)
    yield
