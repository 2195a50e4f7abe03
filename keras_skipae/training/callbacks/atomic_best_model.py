"""The callback that saves the best model so far, and the atomic model write it uses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras

from keras_skipae import faults, io_utils
from keras_skipae.training.callbacks.stop_on_non_finite import NonFiniteLossError, weights_finite


class _AtomicBestModel(keras.callbacks.Callback):
    """Saves ``path`` (``.keras``, atomically) whenever ``monitor`` improves."""

    backup_attrs = ("best",)  # restored on resume (RunBackup)

    def __init__(self, path, monitor="val_loss"):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best = float(value)
            _save_model_atomic(self.model, self.path)


def _save_model_atomic(model, path):
    """Writes ``model`` to ``path`` (temporary name, then rename); never non-finite weights."""
    if not weights_finite(model):
        raise NonFiniteLossError(
            f"The model's weights are not finite; {str(path)!r} was not written (the previous "
            "file, if any, is kept)."
        )
    with io_utils.atomic_path(path, overwrite=True) as tmp:
        os.unlink(tmp)  # Keras refuses some existing targets; let it create the file
        model.save(tmp)
        faults.wait_point("model-write", file=Path(path).name)
