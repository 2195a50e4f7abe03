"""Training: :func:`train` around ``model.fit`` with a run folder that resumes.

* :mod:`~keras_skipae.training.train`: the orchestration;
* :mod:`~keras_skipae.training.task`: what differs between the tasks (data, default loss
  and metrics, previews), one :class:`~keras_skipae.training.task.Task` per task
  (:mod:`~keras_skipae.training.reconstruction`, :mod:`~keras_skipae.training.segmentation`,
  looked up by :func:`keras_skipae.training.tasks.get_task`);
* :mod:`~keras_skipae.training.build`: building and compiling the model;
* :mod:`~keras_skipae.training.fit_callbacks`: the built-in callbacks and the schedule;
* :mod:`~keras_skipae.training.pairs`: the validation split and corrupted pairs;
* :mod:`~keras_skipae.training.segmentation`: ``task="segmentation"``'s (image, mask) pairs;
* :mod:`~keras_skipae.training.runtime`: XLA, precision and ``tf.distribute`` choices;
* :mod:`~keras_skipae.training.callbacks`: time limit, previews, discrepancy monitor.

The run folder's layout lives in :mod:`keras_skipae.runs`.
"""

from keras_skipae.runs import RUN_FILES, load_run, read_history
from keras_skipae.training.callbacks import NonFiniteLossError, TimeLimit
from keras_skipae.training.pairs import DEFAULT_STAIN_WEIGHT, split_validation
from keras_skipae.training.runtime import (
    PRECISIONS,
    get_strategy,
    make_builder,
    precision_scope,
    resolve_jit_compile,
    resolve_precision,
)
from keras_skipae.training.train import TrainingRun, train

__all__ = [
    "DEFAULT_STAIN_WEIGHT",
    "NonFiniteLossError",
    "PRECISIONS",
    "RUN_FILES",
    "TimeLimit",
    "TrainingRun",
    "get_strategy",
    "load_run",
    "make_builder",
    "precision_scope",
    "read_history",
    "resolve_jit_compile",
    "resolve_precision",
    "split_validation",
    "train",
]
