"""Kill-safe backups and the non-finite-loss stop.

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

:class:`StopOnNonFinite` stops training at the first step whose loss is NaN or
infinite with a :class:`NonFiniteLossError` naming the epoch and the step (the block of
steps with ``steps_per_execution``).

Test hook: the environment variable ``KERAS_SKIPAE_TEST_FAULT`` makes the process
stop and wait (for the test to kill it) at a named point, after writing the file
named by ``KERAS_SKIPAE_TEST_FAULT_READY``. Points: ``batch-end:epoch=E:batch=B``
(after training step B of epoch E, both from 0), ``backup-write:epoch=N`` (backup
weights of N finished epochs written to their temporary file, nothing renamed yet),
``model-write:file=model.keras`` (``model.keras`` / ``best.keras`` complete under its
temporary name, not renamed yet). Conditions left out match any value.
"""

from __future__ import annotations

import math
import os
import shutil
import time

import keras
import numpy as np

from keras_skipae.runs import read_backup, write_backup

FAULT_ENV = "KERAS_SKIPAE_TEST_FAULT"
FAULT_READY_ENV = "KERAS_SKIPAE_TEST_FAULT_READY"


def fault_point(point_name: str, **where) -> None:
    """Waits forever at ``name`` when ``KERAS_SKIPAE_TEST_FAULT`` asks for it (tests only)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, *conditions = spec.split(":")
    if point != point_name:
        return
    for cond in conditions:
        key, _, value = cond.partition("=")
        if key in where and str(where[key]) != value:
            return
    ready = os.environ.get(FAULT_READY_ENV)
    if ready:
        with open(ready, "w", encoding="utf-8") as f:
            f.write(spec)
    while True:  # the test kills the process here
        time.sleep(1)


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
    """Backs up the training state after every epoch and restores it when ``fit`` starts.

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
    """

    def __init__(self, backup_dir, callbacks=(), delete_on_end: bool = False):
        super().__init__()
        self.backup_dir = backup_dir
        self.delete_on_end = bool(delete_on_end)
        self.callbacks = [c for c in callbacks if _stateful(c)]
        self._epoch = 0

    def _states(self) -> dict:
        out = {}
        for i, cb in enumerate(self.callbacks):
            out[f"{i}:{type(cb).__name__}"] = {
                a: float(getattr(cb, a)) for a in _stateful(cb) if hasattr(cb, a)
            }
        return out

    def on_train_begin(self, logs=None):
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
        self.model._initial_epoch = int(state["epoch"])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_end(self, logs=None):
        if self.delete_on_end and os.path.isdir(self.backup_dir):
            gone = f"{os.fspath(self.backup_dir)}.old-{os.getpid()}"
            os.replace(self.backup_dir, gone)
            shutil.rmtree(gone, ignore_errors=True)

    def on_train_batch_end(self, batch, logs=None):
        fault_point("batch-end", epoch=self._epoch, batch=batch)

    def on_epoch_end(self, epoch, logs=None):
        if not weights_finite(self.model):
            raise NonFiniteLossError(
                f"The weights became non-finite during epoch {epoch + 1} (history.csv epoch "
                f"{epoch}); its backup and model.keras were not written. "
                + resume_hint(self.backup_dir)
            )
        write_backup(
            self.backup_dir,
            self.model,
            epoch + 1,
            {
                "callbacks": self._states(),
                "seed_generators": [np.asarray(v).tolist() for v in _seed_states(self.model)],
            },
            before_commit=lambda: fault_point("backup-write", epoch=epoch + 1),
        )
