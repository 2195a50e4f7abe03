"""What a training task is: :class:`Task`, the part of :func:`keras_skipae.train` that
differs between reconstruction and segmentation.

A task gives the default loss and metrics (and refuses a loss of the other task), checks
the arguments that only it accepts, builds the ``(input, target)`` pipelines ``fit``
reads, checks the model's output against the targets, and draws the previews. The tasks
are :class:`~keras_skipae.training.reconstruction.ReconstructionTask` and
:class:`~keras_skipae.training.segmentation.SegmentationTask`
(:func:`keras_skipae.training.tasks.get_task`).
"""

from __future__ import annotations

from typing import ClassVar

import keras

from keras_skipae import losses as losses_lib
from keras_skipae.models import AnomalyHeadModel
from keras_skipae.models.registry import MASKED
from keras_skipae.training.pairs import _probe_batch


def learns_masks(model) -> bool:
    """Whether ``model`` (a name or a model) trains on the corruption's masks too."""
    if isinstance(model, str):
        return model in MASKED
    return isinstance(model, AnomalyHeadModel)


class Task:
    """A training task (one instance per task; subclasses set the class attributes).

    Attributes:
        name: the ``task`` argument of :func:`keras_skipae.train` (``config.json``'s
            ``training.task``).
        loss: the loss ``loss="auto"`` stands for.
        metrics: the metrics ``metrics="auto"`` stand for.
        reported: the history columns the CLI prints after training.
        preview: the callback class drawing a few fixed validation images every epoch.
    """

    name: ClassVar[str] = ""
    loss: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ()
    reported: ClassVar[tuple[str, ...]] = ("loss", "val_loss")
    preview: ClassVar[type] = keras.callbacks.Callback

    def __repr__(self):
        return f"{type(self).__name__}()"

    def resolve_loss(self, loss) -> keras.losses.Loss:
        """The loss object; ``"auto"`` / None: :attr:`loss`.

        Raises:
            ValueError: a package loss of the other task.
        """
        if loss is None or (isinstance(loss, str) and loss == "auto"):
            loss = self.loss
        loss_obj = losses_lib.get_loss(loss)
        self.check_loss(loss_obj, loss)
        return loss_obj

    def check_loss(self, loss_obj, loss) -> None:
        """Raises a ``ValueError`` for a loss this task cannot learn from."""

    def resolve_metrics(self, metrics):
        """``metrics``, or :attr:`metrics` for ``"auto"``."""
        if isinstance(metrics, str) and metrics == "auto":
            return self.metrics
        return metrics

    def check_arguments(self, model, corruption, stain_weight, tile_size, loss_obj, loss):
        """Raises a ``ValueError`` naming an argument of :func:`keras_skipae.train` this
        task refuses (``loss_obj``: the resolved ``loss``)."""

    def data(self, train_data, val_data, **options):
        """The pipelines ``fit`` reads (:class:`~keras_skipae.training.pairs._Data`).

        Args:
            train_data, val_data: as :func:`keras_skipae.train` takes them.
            **options: ``model``, ``corruption``, ``loss_obj``, ``stain_weight``,
                ``batch_size``, ``validation_split``, ``steps_per_epoch``, ``seed``,
                ``tile_size`` (each task reads those it uses).
        """
        raise NotImplementedError

    def check_output(self, net, pairs) -> None:
        """Raises a ``ValueError`` when the model's output cannot match the targets."""

    def preview_callback(self, pairs, n: int, *, log_dir, image_dir, min_seconds=0.0):
        """The preview of ``n`` fixed images of ``pairs``, or None (``n`` <= 0); its grids
        at most every ``min_seconds``."""
        probe_x, probe_y = _probe_batch(pairs, int(n))
        if probe_x is None:
            return None
        return self.preview(
            probe_x, probe_y, log_dir=log_dir, image_dir=image_dir, min_seconds=min_seconds
        )
