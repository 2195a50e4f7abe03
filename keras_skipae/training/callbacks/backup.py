"""Kill-safe backups of a training run, restored when it starts again.

:class:`RunBackup` replaces Keras' ``BackupAndRestore`` in :func:`keras_skipae.train`:

* it writes each checkpoint kill-safe and double (:func:`keras_skipae.runs.write_backup`):
  a SIGKILL at any instant leaves the previous finished epoch's state loadable;
* it keeps what Keras' callback loses, so that a resumed run reproduces an
  uninterrupted one bit for bit (with ``deterministic=True``): the state of the
  stateful built-in callbacks (``ReduceLROnPlateau``'s best value, wait and
  cool-down counters, the best ``val_loss`` of ``best.keras``) and of the model's
  random generators (dropout), which ``save_weights`` leaves out. The weights file
  holds the model's variables (BatchNorm statistics included) and the
  optimizer's (iteration count, learning rate, Adam moments); :func:`train`
  restarts the training stream after the batches already used and the cosine
  schedule at the step reached;
* it refuses to back up non-finite weights, and it does not delete the backup
  when ``fit`` ends: :func:`train` writes ``model.keras`` first and removes the
  backup after, so that a kill between the two still resumes.

The test hook ``KERAS_SKIPAE_FAULT`` (:mod:`keras_skipae.faults`) stops the process at
the end of a step (``batch-end``) and between a backup's write and its rename
(``backup-write``).
"""

from __future__ import annotations

import math
import os
import shutil
import time

import keras
import numpy as np

from keras_skipae import faults
from keras_skipae.runs import read_backup, write_backup
from keras_skipae.training.callbacks.stop_on_non_finite import (
    NonFiniteLossError,
    resume_hint,
    weights_finite,
)


def _stateful(callback) -> tuple[str, ...]:
    """Attributes of a callback that a bit-identical resume needs: ``ReduceLROnPlateau``'s,
    or those a callback lists in its ``backup_attrs``."""
    if isinstance(callback, keras.callbacks.ReduceLROnPlateau):
        return ("best", "wait", "cooldown_counter")
    return tuple(getattr(callback, "backup_attrs", ()))


def _seed_states(model) -> list:
    """The states of the model's random generators (Dropout, SkipDropout, ...), in order:
    ``save_weights`` leaves them out, and a resumed run must continue their streams."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class RunBackup(keras.callbacks.Callback):
    """Backs up the training state at epoch ends and restores it when ``fit`` starts.

    A backup is written after an epoch when ``every_epochs`` epochs have ended since the
    last one *and* ``min_seconds`` seconds of wall time have passed since it was written,
    after the last epoch of ``fit``, and when ``fit`` ends early (a :class:`TimeLimit`,
    an ``EarlyStopping``) after an epoch that was not backed up. A kill therefore loses at
    most the epochs since the last backup: at most ``every_epochs`` epochs, or the epochs
    that ended within ``min_seconds`` of it, plus the epoch in progress.

    Args:
        backup_dir: the backup folder (``run_dir/backup``).
        callbacks: the other callbacks of the run; the state of the stateful built-in
            ones (``ReduceLROnPlateau``, and those with a ``backup_attrs`` tuple of
            attribute names) is saved and restored with the weights.
            They must come before this callback in ``fit``'s list (their
            ``on_train_begin`` resets what this one restores).
        delete_on_end: remove the backup when ``fit`` ends normally (as Keras'
            callback does). :func:`keras_skipae.train`'s chief keeps it until
            ``model.keras`` is written.
        every_epochs: back up at most every this many epochs (an int >= 1; 1: every
            epoch).
        min_seconds: and at most once per this many seconds of wall time (>= 0; 0: no
            time condition).
    """

    def __init__(
        self,
        backup_dir,
        callbacks=(),
        delete_on_end: bool = False,
        every_epochs: int = 1,
        min_seconds: float = 0.0,
    ):
        super().__init__()
        if isinstance(every_epochs, bool) or not isinstance(every_epochs, int) or every_epochs < 1:
            raise ValueError(
                f"`every_epochs` must be an int >= 1. Received: every_epochs={every_epochs!r}"
            )
        if (
            isinstance(min_seconds, bool)
            or not isinstance(min_seconds, (int, float))
            or not math.isfinite(min_seconds)
            or min_seconds < 0
        ):
            raise ValueError(
                f"`min_seconds` must be a finite number >= 0. Received: min_seconds={min_seconds!r}"
            )
        self.backup_dir = backup_dir
        self.delete_on_end = bool(delete_on_end)
        self.every_epochs = every_epochs
        self.min_seconds = float(min_seconds)
        self.callbacks = [c for c in callbacks if _stateful(c)]
        self._epoch = 0
        self._backed_up = 0  # epochs finished when the last backup was written
        self._finished = 0  # epochs finished in this fit
        self._last_time = 0.0

    def _states(self) -> dict:
        out = {}
        for i, cb in enumerate(self.callbacks):
            out[f"{i}:{type(cb).__name__}"] = {
                a: float(getattr(cb, a)) for a in _stateful(cb) if hasattr(cb, a)
            }
        return out

    def on_train_begin(self, logs=None):
        self._last_time = time.monotonic()
        self._backed_up = self._finished = 0
        state = read_backup(self.backup_dir)
        if state is None:
            return
        if state.get("weights_path") is not None:
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(str(state["weights_path"]))
        seeds = _seed_states(self.model)
        for var, value in zip(seeds, state.get("seed_generators") or [], strict=False):
            var.assign(np.asarray(value, dtype=var.dtype))
        saved = state.get("callbacks") or {}
        for i, cb in enumerate(self.callbacks):
            for attr, value in (saved.get(f"{i}:{type(cb).__name__}") or {}).items():
                setattr(cb, attr, int(value) if attr != "best" else float(value))
        self.model._initial_epoch = self._backed_up = self._finished = int(state["epoch"])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_end(self, logs=None):
        if self._finished > self._backed_up:  # stopped early after an epoch not backed up
            self._write(self._finished)
        if self.delete_on_end and os.path.isdir(self.backup_dir):
            gone = f"{os.fspath(self.backup_dir)}.old-{os.getpid()}"
            os.replace(self.backup_dir, gone)
            shutil.rmtree(gone, ignore_errors=True)

    def on_train_batch_end(self, batch, logs=None):
        faults.wait_point("batch-end", epoch=self._epoch, batch=batch)

    def on_epoch_end(self, epoch, logs=None):
        self._finished = epoch + 1
        last = self._finished >= int((self.params or {}).get("epochs") or 0)
        due = self._finished - self._backed_up >= self.every_epochs and (
            time.monotonic() - self._last_time >= self.min_seconds
        )
        if last or due:
            self._write(self._finished)

    def _write(self, finished: int):
        epoch = finished - 1
        if not weights_finite(self.model):
            raise NonFiniteLossError(
                f"The weights became non-finite during epoch {epoch + 1} (history.csv epoch "
                f"{epoch}); its backup and model.keras were not written. "
                + resume_hint(self.backup_dir)
            )
        write_backup(
            self.backup_dir,
            self.model,
            finished,
            {
                "callbacks": self._states(),
                "seed_generators": [np.asarray(v).tolist() for v in _seed_states(self.model)],
            },
        )
        self._backed_up, self._last_time = finished, time.monotonic()
