"""Segmentation training: the task's defaults and the ``(image, mask)`` pipelines.

:func:`keras_skipae.train` with ``task="segmentation"`` learns masks from images
instead of clean images from corrupted ones. This module holds what differs:

* :class:`SegmentationTask`: the defaults (loss ``"bce+dice"``, metrics IoU and Dice),
  the checks (no corruption, no ``stain_weight``, no tiles, a mask loss, a model with
  one output whose shape is the masks', :func:`check_output_matches_target`) and the
  previews of predicted masks;
* the pipelines: unbatched ``(image, mask)`` items (the package's dicts, as
  ``mvtec_dataset(..., split="test")`` yields, or ``(image, mask)`` tuples) are split
  for validation with the same seeded split as reconstruction, shuffled and batched;
  batched ``(image, mask)`` pairs are used as they are.
"""

from __future__ import annotations

import tensorflow as tf

from keras_skipae import losses as losses_lib
from keras_skipae.runs import TASKS as _TASKS
from keras_skipae.training.callbacks.preview import SegmentationPreview
from keras_skipae.training.pairs import _Data, _with_known_length, split_counted
from keras_skipae.training.task import Task, learns_masks

#: The tasks :func:`keras_skipae.train` knows (:data:`keras_skipae.runs.TASKS`).
TASKS = _TASKS

# The package's reconstruction losses (they compare images, not masks).
_RECONSTRUCTION = (
    losses_lib.MeanSquaredError,
    losses_lib.MeanAbsoluteError,
    losses_lib.SSIMLoss,
    losses_lib.MixedLoss,
)


class SegmentationTask(Task):
    """``task="segmentation"``: the model learns masks from ``(image, mask)`` pairs.

    Nothing is corrupted; loss ``"bce+dice"`` and metrics IoU / Dice by default;
    previews show the predicted masks. It refuses a corruption, a ``stain_weight``,
    tiles, a reconstruction loss and a model with an anomaly head.
    """

    name = "segmentation"
    loss = "bce+dice"
    metrics = ("iou", "dice")
    reported = ("loss", "val_loss", "val_iou", "val_dice")
    preview = SegmentationPreview

    def check_loss(self, loss_obj, loss) -> None:
        if isinstance(loss_obj, _RECONSTRUCTION):
            raise ValueError(
                "task='segmentation' compares predicted masks with true masks: use a mask "
                f"loss ({', '.join(losses_lib.SEGMENTATION_LOSSES)}) or a Keras loss. "
                f"Received: loss={loss!r}, task='segmentation'"
            )

    def check_arguments(self, model, corruption, stain_weight, tile_size, loss_obj, loss):
        if not (corruption is None or (isinstance(corruption, str) and corruption == "auto")):
            raise ValueError(
                "task='segmentation' trains on (image, mask) as given: `corruption` must be "
                f"'auto' or None. Received: corruption={corruption!r}, task='segmentation'"
            )
        if stain_weight is not None:
            raise ValueError(
                "`stain_weight` weights the pixels of a corruption, and task='segmentation' "
                f"applies none: leave it None. Received: stain_weight={stain_weight!r}, "
                "task='segmentation'"
            )
        if tile_size is not None:
            raise ValueError(
                "`tile_size` is not supported with task='segmentation' (the crops would lose "
                f"their masks). Received: tile_size={tile_size!r}, task='segmentation'"
            )
        if learns_masks(model):
            raise ValueError(
                "task='segmentation' needs a model with one output (the mask), not a model "
                "with an anomaly head; build e.g. 'unet' with num_outputs=1. "
                "Received: task='segmentation'"
            )

    def data(self, train_data, val_data, **options):
        return segmentation_data(
            train_data,
            val_data,
            batch_size=options["batch_size"],
            validation_split=options["validation_split"],
            steps_per_epoch=options["steps_per_epoch"],
            seed=options["seed"],
        )

    def check_output(self, net, pairs) -> None:
        check_output_matches_target(net, pairs, self.name)


# --------------------------------------------------------------------------- data


def _kind(dataset, name: str) -> str:
    """``"pairs"`` (batched ``(image, mask[, weight])``) or ``"items"`` (unbatched)."""
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if "image" in spec and "mask" in spec:
            return "items"
        raise ValueError(
            f"With task='segmentation', dicts in `{name}` need an 'image' and a 'mask' key. "
            f"Received: keys {sorted(spec)}"
        )
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        tensors = [s for s in spec[:2] if isinstance(s, tf.TensorSpec)]
        ranks = [s.shape.rank for s in tensors]
        if len(spec) == 2 and ranks in ([3, 3], [3, 2]):
            return "items"
        if ranks == [4, 4] and spec[0].shape[:3].is_compatible_with(spec[1].shape[:3]):
            return "pairs"
    raise ValueError(
        f"With task='segmentation', `{name}` must yield unbatched dicts with 'image' and "
        "'mask' (as keras_skipae.data.mvtec_dataset does), unbatched (image [H, W, C], mask "
        "[H, W, K]) tuples, or batched (image, mask) pairs [B, H, W, .] of the same size. "
        f"Received: element_spec={spec}"
    )


def _mask_to_float(mask):
    """float32 ``[H, W, K]``: bool as 0 / 1, integers rescaled to [0, 1] (0 / 255 -> 0 / 1)."""
    if mask.shape.rank == 2:
        mask = mask[..., None]
    if mask.dtype == tf.bool:
        return tf.cast(mask, tf.float32)
    return tf.image.convert_image_dtype(mask, tf.float32)


def _image_and_mask(element):
    if isinstance(element, dict):
        image, mask = element["image"], element["mask"]
    else:
        image, mask = element
    return tf.image.convert_image_dtype(image, tf.float32), _mask_to_float(mask)


def _batches(items, batch_size, *, shuffle, seed, repeat):
    # not AUTOTUNE: see data.corrupt
    ds = items.map(
        lambda *e: _image_and_mask(e[0] if len(e) == 1 else e), num_parallel_calls=2
    ).cache()
    if shuffle:
        ds = ds.shuffle(512, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=repeat).prefetch(2)


def segmentation_data(
    train_data,
    val_data,
    *,
    batch_size: int,
    validation_split: float,
    steps_per_epoch: int | None,
    seed: int,
) -> _Data:
    """Batched ``(image, mask)`` pipelines for ``fit``, as :class:`~keras_skipae.training.pairs._Data`.

    Unbatched items are split for validation like reconstruction's images (the same
    seeded split, :func:`keras_skipae.training.split_validation`), cached, shuffled
    with ``seed`` and repeated; validation batches are fixed. Batched pairs are used
    as they are (then ``val_data`` or ``validation_split=0``).
    """
    if _kind(train_data, "train_data") == "pairs":
        if val_data is None and validation_split:
            raise ValueError(
                "Cannot split batched (image, mask) pairs for validation: pass `val_data` "
                "or validation_split=0."
            )
        if val_data is not None:
            _kind(val_data, "val_data")
        val_pairs = _with_known_length(val_data)
        return _Data(train_data, val_pairs, None, 1.0, steps_per_epoch, pairs_given=True)
    train_items, val_items, n_train, n_val, steps_per_epoch = split_counted(
        train_data, val_data, validation_split, seed, batch_size, steps_per_epoch
    )
    train_pairs = _batches(train_items, batch_size, shuffle=True, seed=seed, repeat=True)
    val_pairs = None
    if val_items is not None:
        if _kind(val_items, "val_data") == "pairs":
            val_pairs = val_items
        else:
            val_pairs = _batches(val_items, batch_size, shuffle=False, seed=seed, repeat=False)
    val_pairs = _with_known_length(val_pairs)
    return _Data(train_pairs, val_pairs, None, 1.0, steps_per_epoch, n_train, n_val)


def check_output_matches_target(net, pairs, task: str) -> None:
    """The model's one output must have the targets' shape (``[B, H, W, K]``).

    Checked where both are known; models with several outputs, or targets that are
    not one tensor (an anomaly head's ``(target, mask)``), are left to Keras.

    Raises:
        ValueError: naming both shapes (for segmentation: build the model with
            ``num_outputs`` = the mask channels).
    """
    outputs = tf.nest.flatten(getattr(net, "outputs", None) or [])
    spec = pairs.element_spec
    target = spec[1] if isinstance(spec, tuple) and len(spec) > 1 else None
    if len(outputs) != 1 or not isinstance(target, tf.TensorSpec):
        return
    out_shape, target_shape = tuple(outputs[0].shape), tuple(target.shape)
    if len(out_shape) != len(target_shape):
        mismatch = True
    else:
        mismatch = any(
            a is not None and b is not None and int(a) != int(b)
            for a, b in zip(out_shape[1:], target_shape[1:])
        )
    if mismatch:
        hint = (
            "build the model with num_outputs equal to the mask channels (1 for a binary mask)"
            if task == "segmentation"
            else "build the model so that its output has the targets' shape"
        )
        raise ValueError(
            f"The model's output shape {out_shape} does not match the targets' "
            f"{target_shape}: {hint}. Received: task={task!r}"
        )
