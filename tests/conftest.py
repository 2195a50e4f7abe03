"""Shared fixtures. The suite runs in two worker processes (`pytest -n 2 --dist loadfile`:
one file per worker at a time), so that TensorFlow's import (~5 s) is paid twice, not per test.

* ``images(n, shape, seed)``: seeded float32 images in [0, 1];
* ``tiny_model(name, **overrides)``: a registry model small enough for a unit test;
* ``synthetic_root``: a 32-px synthetic MVTec-layout tree (mesh), made once a session;
* ``tree_digest(root)``: a SHA-256 of a whole folder tree (paths and contents), to check
  that a refused command changed nothing;
* ``run_model_saving_test`` (in ``tests/harness.py``): the ``.keras`` round trip every
  model and layer test calls.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# As `import keras_skipae` does, before Keras loads TensorFlow (docs/decisions.md#onednn).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: The builder arguments of the tiny models the tests use (32 px, a few filters).
TINY = {
    "ae": {"input_shape": (32, 32, 1), "depth": 3, "filters": 4},
    "aesc": {"input_shape": (32, 32, 1), "depth": 3, "filters": 4},
    "unet": {"input_shape": (32, 32, 1), "depth": 2, "filters": 4},
}


@pytest.fixture(autouse=True)
def _clear_session():
    """Fresh Keras state (layer-name counters, global seed) before every test.

    ``free_memory=False`` skips the full garbage collection (0.3 s a call), which
    tiny test models don't need.
    """
    keras.backend.clear_session(free_memory=False)
    yield


def make_images(n=3, shape=(32, 32, 1), seed=0):
    """``n`` seeded float32 images in [0, 1]."""
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


@pytest.fixture
def images():
    return make_images


def make_tiny_model(name="aesc", **overrides):
    """A registry model with the tiny defaults of :data:`TINY` (overridable)."""
    import keras_skipae as ks

    return ks.get_model(name, **{**TINY[name], **overrides})


@pytest.fixture
def tiny_model():
    return make_tiny_model


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic MVTec-layout tree (mesh, 32 px); tests must not modify it."""
    from keras_skipae.data import synthetic

    root = tmp_path_factory.mktemp("synthetic") / "data"
    synthetic.make_dataset(
        root, categories=["mesh"], image_size=32, n_train=12, n_test_good=4, n_test_defect=1
    )
    return root


def tree_digest(root) -> str:
    """SHA-256 over every path below ``root`` (relative, sorted) and every file's bytes."""
    import hashlib
    from pathlib import Path

    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file() and not path.is_symlink():
            h.update(path.read_bytes())
        h.update(b"\1")
    return h.hexdigest()
