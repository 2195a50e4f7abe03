"""The stop at the first non-finite loss, and the error it and the run's writers raise.

:class:`StopOnNonFinite` stops training at the first step whose loss is NaN or
infinite with a :class:`NonFiniteLossError` naming the epoch and the step (the block of
steps with ``steps_per_execution``) and saying whether the run can resume.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_skipae.runs import read_backup


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss or the weights became NaN or infinite."""


def weights_finite(model) -> bool:
    """Whether every weight of ``model`` is finite."""
    return all(np.isfinite(np.asarray(w)).all() for w in model.get_weights())


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises :class:`NonFiniteLossError` at the first non-finite training loss.

    The loss in the logs is the epoch's running mean, so it turns non-finite at
    the first bad step. With ``steps_per_execution=k`` Keras reports once per
    block of k steps, and the message names the block.

    Args:
        epochs: the run's number of epochs (for the message).
        backup_dir: the run's backup folder: the message says whether it holds a finished
            epoch to resume from (None: training without a run folder).
    """

    def __init__(self, epochs: int | None = None, backup_dir=None):
        super().__init__()
        self.epochs = epochs
        self.backup_dir = backup_dir
        self._epoch = 0
        self._begin = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = batch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        of = f"/{self.epochs}" if self.epochs else ""
        steps = (
            f"step {batch + 1}"
            if self._begin >= batch
            else f"steps {self._begin + 1}-{batch + 1} (one block of steps_per_execution)"
        )
        raise NonFiniteLossError(
            f"The training loss is {float(loss)} at epoch {self._epoch + 1}{of} (history.csv "
            f"epoch {self._epoch}), {steps}. Training stopped; model.keras was not written. "
            + resume_hint(self.backup_dir)
        )


def resume_hint(backup_dir) -> str:
    """What a run stopped by non-finite values can do: resume from the newest checkpoint
    in ``backup_dir`` if there is one, else start over (the same command would fail again)."""
    if backup_dir is None:
        return (
            "Training without a run folder keeps no backup: lower the learning rate (or fix "
            "the data) and train again."
        )
    state = read_backup(backup_dir)
    if state is None:
        return (
            "The run folder holds no backup of a finished epoch to resume from, so the same "
            "command would fail again: lower the learning rate (or fix the data) and pass "
            "--overwrite (overwrite=True) to start over."
        )
    return (
        f"The run folder keeps the backup of epoch {state['epoch']}, the last finished one: "
        "start the same command again to resume from it (after fixing the data), or lower "
        "the learning rate and pass --overwrite (overwrite=True) to start over."
    )
