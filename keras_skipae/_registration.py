"""Imports the modules that register custom Keras objects, and ``load_model``.

Only these: the layers, the losses and Keras metrics, and ``DiscrepancyLossModel``
(and ``io_utils``, which loads the file).
"""

from __future__ import annotations

import os

from keras_skipae import io_utils, keras_metrics, layers, losses  # noqa: F401  (registration)
from keras_skipae.models import discrepancy_loss  # noqa: F401  (registration)


def load_model(path: str | os.PathLike, *, safe_mode: bool = True, compile: bool = True):
    """Loads a ``.keras`` model saved by keras_skipae (or any Keras 3 model).

    The custom layers, losses and metrics are registered by importing
    keras_skipae, so this is ``keras.models.load_model`` with a clear error for a
    missing or non-``.keras`` path, and for a truncated, corrupted or tampered file
    (:func:`keras_skipae.io_utils.load_keras_file`: a ``ValueError`` naming the
    file). A SavedModel folder is not a ``.keras`` file: load it with
    ``tf.saved_model.load``.

    Args:
        path: a ``.keras`` file.
        safe_mode: refuse to deserialize Lambda layers / arbitrary code (default True).
        compile: restore the training configuration when the file has one.

    Returns:
        The ``keras.Model``.

    Example:
        >>> model = load_model("runs/carpet/model.keras")
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(
            f"{path!r} is a folder (a SavedModel?). load_model reads `.keras` files; load a "
            "SavedModel with tf.saved_model.load."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at {path!r}. Expected a `.keras` file.")
    if not path.endswith(".keras"):
        raise ValueError(f"Expected a `.keras` file. Received: path={path!r}")
    return io_utils.load_keras_file(path, safe_mode=safe_mode, compile=compile)
