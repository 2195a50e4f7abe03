"""Callbacks that bound and record a run: a time limit, the learning rate, the best model."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import keras

from keras_skipae import io_utils
from keras_skipae.training.callbacks.backup import NonFiniteLossError, fault_point, weights_finite


class TimeLimit(keras.callbacks.Callback):
    """Stops training after ``seconds`` of wall or CPU time (checked after every batch).

    The epoch in progress ends early, its validation still runs, and the run is
    then complete (``model.keras`` is written).

    Args:
        seconds: the budget.
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time,
            all threads: a budget that other programs loading the machine do not
            eat into; on an idle 2-core machine 1 wall second is ~2 CPU seconds).
    """

    def __init__(self, seconds: float, clock: str = "wall"):
        super().__init__()
        if clock not in ("wall", "cpu"):
            raise ValueError(f"`clock` must be 'wall' or 'cpu'. Received: clock={clock!r}")
        self.seconds = float(seconds)
        self.clock = clock
        self._now = time.monotonic if clock == "wall" else time.process_time
        self._start = None
        self.stopped = False
        self.elapsed = 0.0

    def on_train_begin(self, logs=None):
        self._start = self._now()

    def on_train_batch_end(self, batch, logs=None):
        self.elapsed = self._now() - self._start
        if self.elapsed >= self.seconds:
            self.stopped = True
            self.model.stop_training = True


class _LogLearningRate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


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
        fault_point("model-write", file=Path(path).name)
