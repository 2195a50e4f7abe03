"""The callbacks :func:`keras_skipae.train` adds to ``fit``, in the order they run:
:func:`builtin_callbacks`, and the learning-rate schedule they follow."""

from __future__ import annotations

import keras

from keras_skipae.models.anomaly_head import HEAD_SIGNAL
from keras_skipae.runs import RunFolder
from keras_skipae.training.callbacks.atomic_best_model import KeepBestWeights, _AtomicBestModel
from keras_skipae.training.callbacks.backup import RunBackup
from keras_skipae.training.callbacks.log_learning_rate import _LogLearningRate
from keras_skipae.training.callbacks.schedule import CosineSchedule
from keras_skipae.training.callbacks.stop_on_non_finite import StopOnNonFinite
from keras_skipae.training.callbacks.time_limit import TimeLimit
from keras_skipae.training.pairs import _Data
from keras_skipae.training.task import Task

#: :class:`RunBackup`'s interval in :func:`keras_skipae.train`: a backup after every epoch
#: (docs/decisions.md, "Per-epoch work in ks.train").
BACKUP_EVERY_EPOCHS = 1
BACKUP_MIN_SECONDS = 0.0

#: The least time between two preview grids (PNG and TensorBoard image) in
#: :func:`keras_skipae.train`; the first and last epochs' are always drawn, the scalars
#: and ``probe_good_mse`` logged every epoch (docs/decisions.md, "Per-epoch work in
#: ks.train").
PREVIEW_MIN_SECONDS = 30.0

#: The ``schedule`` values :func:`keras_skipae.train` takes.
SCHEDULES = ("auto", "cosine", "plateau", None)


def resolve_schedule(schedule, time_limit):
    """``"cosine"``, ``"plateau"`` or None; ``"auto"``: cosine with a time limit."""
    if schedule not in SCHEDULES:
        raise ValueError(
            f"`schedule` must be one of {list(SCHEDULES)}. Received: schedule={schedule!r}"
        )
    if schedule == "auto":
        return "cosine" if time_limit is not None else "plateau"
    return schedule


def _schedule_callback(schedule, reduce_lr, monitor, learning_rate, budget):
    """The learning-rate callback of ``schedule`` (None: a constant rate)."""
    if schedule == "plateau" and reduce_lr:
        kwargs = {"monitor": monitor, "factor": 0.5, "patience": 3, "min_lr": 1e-6, "verbose": 0}
        if isinstance(reduce_lr, dict):
            kwargs.update(reduce_lr)
        return keras.callbacks.ReduceLROnPlateau(**kwargs)
    if schedule == "cosine":
        time_limit, time_clock, steps, initial_step = budget
        if not time_limit and not steps:
            raise ValueError(
                "schedule='cosine' decays over the budget: pass `time_limit` or "
                "`steps_per_epoch` (batched pairs have no known length)."
            )
        kind = {"seconds": time_limit, "clock": time_clock} if time_limit else {"steps": steps}
        return CosineSchedule(learning_rate, **kind, initial_step=initial_step)
    return None


def builtin_callbacks(
    run: RunFolder | None,
    data: _Data,
    task: Task,
    *,
    chief: bool,
    worker: int,
    reduce_lr,
    schedule: str | None,
    learning_rate: float,
    epochs: int,
    initial_epoch: int = 0,
    tensorboard: bool,
    preview_images: int,
    save_best: bool,
    head: bool = False,
    resuming: bool,
    time_limit,
    time_clock: str,
) -> list:
    """The built-in callbacks, in the order they run (``initial_epoch`` > 0: resumed).

    ``head``: the model has an anomaly head; with validation data, it ends with the
    weights of its best ``val_head_signal``, kept in ``best.keras`` by the chief.
    """
    monitor = "val_loss" if data.val_pairs is not None else "loss"
    cbs: list = [StopOnNonFinite(epochs, backup_dir=run.backup_dir if run is not None else None)]
    steps = data.steps_per_epoch or 0
    budget = (time_limit, time_clock, epochs * steps, initial_epoch * steps)
    lr_callback = _schedule_callback(schedule, reduce_lr, monitor, learning_rate, budget)
    if lr_callback is not None:
        cbs.append(lr_callback)
    cbs.append(_LogLearningRate())
    if run is not None:
        if tensorboard and chief:
            source = data.val_pairs if data.val_pairs is not None else data.train_pairs
            preview = task.preview_callback(
                source,
                preview_images,
                log_dir=run.logs_dir,
                image_dir=run.previews_dir,
                min_seconds=PREVIEW_MIN_SECONDS,
            )
            if preview is not None:
                cbs.append(preview)
        if save_best and data.val_pairs is not None and chief and not head:
            cbs.append(_AtomicBestModel(run.model_path(best=True), monitor="val_loss"))
    if head and data.val_pairs is not None:
        path = run.model_path(best=True) if run is not None and chief else None
        cbs.append(KeepBestWeights(HEAD_SIGNAL, path))
    if run is not None:
        if chief:
            cbs.append(keras.callbacks.CSVLogger(str(run.history_path), append=resuming))
        backup = run.backup_dir if chief else run.backup_dir / f"worker-{worker}"
        # After the stateful callbacks. The chief removes its backup after model.keras
        # is written (train's _fit); another worker when its fit ends.
        cbs.append(
            RunBackup(
                backup,
                callbacks=list(cbs),
                delete_on_end=not chief,
                every_epochs=BACKUP_EVERY_EPOCHS,
                min_seconds=BACKUP_MIN_SECONDS,
            )
        )
    if time_limit is not None:
        cbs.append(TimeLimit(time_limit, clock=time_clock))
    return cbs
