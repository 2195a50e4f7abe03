"""The training tasks by name: :func:`get_task`."""

from __future__ import annotations

from keras_skipae.runs import TASKS
from keras_skipae.training.reconstruction import ReconstructionTask
from keras_skipae.training.segmentation import SegmentationTask
from keras_skipae.training.task import Task

_BY_NAME = {t.name: t for t in (ReconstructionTask, SegmentationTask)}


def get_task(task) -> Task:
    """The :class:`~keras_skipae.training.task.Task` named ``task`` (one of
    :data:`keras_skipae.runs.TASKS`), or ``task`` itself when it is one.

    Raises:
        ValueError: an unknown task.
    """
    if isinstance(task, Task):
        return task
    if not isinstance(task, str) or task not in _BY_NAME:
        raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={task!r}")
    return _BY_NAME[task]()
