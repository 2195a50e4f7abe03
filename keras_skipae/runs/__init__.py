"""Run folders: the one place that knows their layout and their config document.

A run folder is written by :func:`keras_skipae.train` (``keras-skipae train``)
and read by evaluation, export and the apps::

    <run>/config.json      model, data, corruption, training and runtime settings
                           (:class:`RunConfig`)
    <run>/model.keras      the final model (written atomically at the end)
    <run>/best.keras       the model of the best validation loss (save_best=True)
    <run>/history.csv      one row per epoch (appended on resume)
    <run>/backup/          the last two finished epochs' training state (resume after a
                           kill; :func:`read_backup`, :func:`write_backup`)
    <run>/logs/            TensorBoard event files
    <run>/previews/        reconstruction grids, one PNG per epoch
    <run>/evaluation/      ``keras-skipae evaluate RUN``'s outputs (metrics.json, plots)
    <run>/discrepancy/     ``keras-skipae discrepancy``'s outputs

* :mod:`~keras_skipae.runs.config`: :class:`RunConfig`, ``config.json`` as a typed
  document with the one migration of older documents;
* :mod:`~keras_skipae.runs.layout`: :class:`RunLayout`, the entries' names;
* :mod:`~keras_skipae.runs.resume`: :class:`ResumableRun`, clearing or resuming a folder
  before training;
* :mod:`~keras_skipae.runs.folder`: :class:`RunFolder`, reading a folder and loading its
  model;
* :mod:`~keras_skipae.runs.backup`: the kill-safe training backup.

It sits below the workflows (training writes through it, evaluation and export read
through it).
"""

from keras_skipae.runs.backup import BACKUP_METADATA, read_backup, write_backup
from keras_skipae.runs.config import (
    COLOR_MODES,
    COMPARED,
    TASKS,
    DataConfig,
    ModelConfig,
    RunConfig,
    RuntimeConfig,
    TrainingConfig,
)
from keras_skipae.runs.folder import RunFolder, load_run, read_history
from keras_skipae.runs.layout import RUN_FILES, RUN_METRICS, RunLayout
from keras_skipae.runs.resume import ResumableRun

__all__ = [
    "BACKUP_METADATA",
    "COLOR_MODES",
    "COMPARED",
    "DataConfig",
    "ModelConfig",
    "RUN_FILES",
    "RUN_METRICS",
    "ResumableRun",
    "RunConfig",
    "RunFolder",
    "RunLayout",
    "RuntimeConfig",
    "TASKS",
    "TrainingConfig",
    "load_run",
    "read_backup",
    "read_history",
    "write_backup",
]
