"""The callbacks that keep the best model so far, and the atomic model write they use."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import keras

from keras_skipae import faults, io_utils
from keras_skipae.training.callbacks.stop_on_non_finite import NonFiniteLossError, weights_finite


class KeepBestWeights(keras.callbacks.Callback):
    """Keeps the model of the epoch of the lowest ``monitor``, and ends training with it.

    On every improvement the model is written to ``path`` (atomically; a resumed run
    finds it there) and, with ``restore``, its weights are copied in memory too; at the
    end of training (a time limit included) the model gets them back when a later epoch
    was worse. :func:`keras_skipae.train` uses it for ``best.keras`` by ``val_loss``
    (``save_best``, ``restore=False``) and, for a model with an anomaly head, by the
    head's ``val_head_signal`` (``docs/decisions.md#head-early-stopping``).

    Attributes:
        best, best_epoch: the lowest value so far and its epoch (``inf`` and -1 before
            one; numbers, as the run's backup stores them).
        restored_epoch: the epoch whose weights the model ended with, when they were
            restored (None otherwise).
    """

    backup_attrs = ("best", "best_epoch")  # restored on resume (RunBackup)

    def __init__(self, monitor, path=None, restore: bool = True):
        super().__init__()
        self.monitor = monitor
        self.path = None if path is None else Path(path)
        self.restore = bool(restore)
        self.best = math.inf
        self.best_epoch = -1
        self.restored_epoch = None
        self._weights = None
        self._last_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        value = (logs or {}).get(self.monitor)
        if value is None or not float(value) < self.best:
            return
        self.best, self.best_epoch = float(value), epoch
        if self.restore:
            self._weights = self.model.get_weights()
        if self.path is not None:
            _save_model_atomic(self.model, self.path)

    def on_train_end(self, logs=None):
        if not self.restore or self.best_epoch < 0 or self._last_epoch in (None, self.best_epoch):
            return
        weights = self._weights
        if weights is None and self.path is not None and self.path.is_file():
            # Resumed after the best epoch: its weights are in the file.
            weights = keras.saving.load_model(self.path, compile=False).get_weights()
        if weights is None:
            warnings.warn(
                f"{self.monitor} was lowest at epoch {self.best_epoch + 1}, but its weights "
                "were not kept: the model ends with the last epoch's.",
                stacklevel=2,
            )
            return
        self.model.set_weights(weights)
        self.restored_epoch = self.best_epoch


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


class _AtomicBestModel(KeepBestWeights):
    """Saves ``path`` (``.keras``, atomically) whenever ``monitor`` improves; restores
    nothing (its class name is the key of its state in run backups)."""

    def __init__(self, path, monitor="val_loss"):
        super().__init__(monitor, path, restore=False)
