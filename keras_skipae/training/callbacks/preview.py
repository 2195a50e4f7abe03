"""Training previews: TensorBoard images and PNG grids of reconstructions or masks.

Re-exported as :class:`keras_skipae.callbacks.ReconstructionPreview` and
:class:`keras_skipae.callbacks.SegmentationPreview`.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from keras_skipae.io_utils import to_uint8, write_png_atomic


def _summary_write(tag, tensor, step, plugin):
    """Writes one summary with the public ``tf.summary.write`` (no ``tensorboard`` package).

    ``plugin`` (``"scalars"``, ``"images"``) tells TensorBoard how to show it.
    """
    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    tf.summary.write(tag, tensor, step=step, metadata=metadata)


def reconstruction_grid(inputs, reconstructions, targets, clean_reconstructions=None):
    """Stacks rows ``input | reconstruction | target | [recon. of target | |target - it|]``.

    Args:
        inputs: ``[N, H, W, C]`` model inputs (e.g. stain-corrupted images) in [0, 1].
        reconstructions: the model's outputs for ``inputs``.
        targets: the clean targets.
        clean_reconstructions: optional outputs for ``targets`` (what the model
            does to good images); adds those and their absolute residual (x4).

    Returns:
        A ``uint8`` array ``[N * H, k * W]`` (grey) or ``[N * H, k * W, 3]`` (RGB).
    """
    cols = [inputs, reconstructions, targets]
    if clean_reconstructions is not None:
        residual = np.abs(np.asarray(targets) - np.asarray(clean_reconstructions)) * 4.0
        cols += [clean_reconstructions, residual]
    rows = []
    for i in range(len(inputs)):
        rows.append(np.concatenate([to_uint8(np.asarray(c[i], "float32")) for c in cols], axis=1))
    grid = np.concatenate(rows, axis=0)
    return grid[..., 0] if grid.ndim == 3 and grid.shape[-1] == 1 else grid


#: Column titles of :func:`reconstruction_grid` (with and without the clean columns).
GRID_TITLES = ("input", "reconstruction", "target", "recon. of target", "residual x4")


def titled(grid: np.ndarray, n_columns: int, titles=GRID_TITLES) -> np.ndarray:
    """``grid`` with a strip of column titles on top (white on black, for the PNG).

    Args:
        grid: a ``uint8`` grid from :func:`reconstruction_grid`.
        n_columns: how many image columns the grid has.
        titles: one title per column (the first ``n_columns`` are used).

    Returns:
        A ``uint8`` array with 16 more rows than ``grid``.
    """
    width = grid.shape[1] // n_columns
    strip = np.zeros((16, grid.shape[1]) + grid.shape[2:], np.uint8)
    for i, title in enumerate(titles[:n_columns]):
        scale = min(0.4, 0.9 * width / max(1, 9 * len(title)))
        colour = (255,) * (3 if grid.ndim == 3 else 1)
        cv2.putText(strip, title, (i * width + 2, 11), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1)
    return np.concatenate([strip, grid], axis=0)


def _predict(model, x):
    """``model(x, training=False)`` as float32 NumPy, through the model's compiled predict
    function when it has one (traced once, then reused every epoch) and runs on one
    replica (under several, the chief would run a distributed call alone)."""
    strategy = getattr(model, "distribute_strategy", None)
    replicas = getattr(strategy, "num_replicas_in_sync", 1)
    if getattr(model, "compiled", False) and replicas == 1:
        return np.asarray(model.predict_on_batch(x), dtype="float32")
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype="float32")


class ReconstructionPreview(keras.callbacks.Callback):
    """Logs reconstructions of a few fixed images after every epoch.

    Each row shows the model input (e.g. a stain-corrupted image), its
    reconstruction, the clean target, the reconstruction of the clean target
    and the absolute residual of that one (times 4). The grid goes to
    TensorBoard (``log_dir/validation``, tag ``reconstructions``) and to
    ``image_dir/epoch_XXX.png``. Epoch scalars (``loss``, ``val_loss``,
    metrics, learning rate) are written to ``log_dir/train`` and
    ``log_dir/validation`` as ``epoch_<name>``, like Keras' TensorBoard
    callback, but with TensorFlow's core summary ops, so the ``tensorboard``
    package is not needed to write them (only to view them).

    It also adds ``probe_good_mse`` to the epoch logs: the inference-mode mean
    squared reconstruction error of the clean probe images (what a good part
    costs in false positives; it exposes lagging BatchNorm statistics).

    With ``min_seconds > 0`` a grid is drawn at most every ``min_seconds``: the
    first epoch's always, then the first epoch at least ``min_seconds`` after the
    last grid, and the last epoch's when training ends; ``probe_good_mse`` and the
    scalars are still logged every epoch (``ks.train`` uses this for short epochs:
    ``docs/decisions.md#per-epoch-work-in-kstrain``).

    Args:
        inputs: ``[N, H, W, C]`` probe inputs in [0, 1].
        targets: ``[N, H, W, C]`` clean targets (defaults to ``inputs``).
        log_dir: TensorBoard folder, or None.
        image_dir: PNG folder, or None.
        every: log every ``every`` epochs.
        scalars: also write the epoch scalars.
        min_seconds: the least time between two grids (0: every logged epoch).
    """

    #: The TensorBoard tag of the image grid.
    tag = "reconstructions"
    #: Column titles of the PNG grid, one per column of :meth:`_grid`.
    titles = GRID_TITLES

    def __init__(
        self,
        inputs,
        targets=None,
        *,
        log_dir=None,
        image_dir=None,
        every=1,
        scalars=True,
        min_seconds=0.0,
    ):
        super().__init__()
        self.inputs = np.asarray(inputs, dtype="float32")
        self.targets = self.inputs if targets is None else np.asarray(targets, dtype="float32")
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.every = max(1, int(every))
        self.scalars = scalars
        self.min_seconds = float(min_seconds)
        if not self.min_seconds >= 0:
            raise ValueError(
                f"`min_seconds` must be a number >= 0. Received: min_seconds={min_seconds!r}"
            )
        self._writers = {}
        self._pending = None  # (epoch, grid arrays) not drawn yet
        self._last_grid = None  # time.monotonic() of the last grid drawn

    def _writer(self, name):

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def _observe(self, epoch, logs):
        """The arrays the grid of this epoch is drawn from (every epoch: the probe error)."""
        # One compiled inference call for both halves (an eager call per epoch costs more
        # than the step of a small model; inference mode, so the halves do not interact).
        both = _predict(self.model, np.concatenate([self.inputs, self.targets]))
        recon, clean = both[: len(self.inputs)], both[len(self.inputs) :]
        logs["probe_good_mse"] = float(np.mean((clean - self.targets) ** 2))
        return recon, clean

    def _grid(self, arrays):
        recon, clean = arrays
        return reconstruction_grid(self.inputs, recon, self.targets, clean)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        arrays = self._observe(epoch, logs)
        if epoch % self.every:
            return
        if self.log_dir is not None and self.scalars:
            self._log_scalars(epoch, logs)
        self._pending = (epoch, arrays)
        last = self._last_grid
        if last is None or time.monotonic() - last >= self.min_seconds:
            self._draw_pending()

    def _draw_pending(self):
        if self._pending is None:
            return
        epoch, arrays = self._pending
        self._pending = None
        grid = self._grid(arrays)
        if self.image_dir is not None:
            self.image_dir.mkdir(parents=True, exist_ok=True)
            path = self.image_dir / f"epoch_{epoch + 1:03d}.png"
            png_grid = titled(grid, len(self.titles), self.titles)
            write_png_atomic(path, png_grid, what="preview image")
        if self.log_dir is not None:
            image = grid[..., None] if grid.ndim == 2 else grid
            png = tf.image.encode_png(tf.constant(image))
            h, w = image.shape[:2]
            with self._writer("validation").as_default():
                _summary_write(
                    self.tag,
                    tf.stack([tf.constant(str(w)), tf.constant(str(h)), png]),
                    int(epoch),
                    "images",
                )
            self._writer("validation").flush()
        self._last_grid = time.monotonic()

    def _log_scalars(self, epoch, logs):
        step = int(epoch)
        by_writer = {"validation": {}, "train": {}}
        for key, value in logs.items():
            if key.startswith("val_"):
                by_writer["validation"][f"epoch_{key[4:]}"] = value
            else:
                by_writer["train"][f"epoch_{key}"] = value
        for name, values in by_writer.items():
            if not values:
                continue
            with self._writer(name).as_default():
                for tag, value in values.items():
                    _summary_write(tag, tf.constant(float(value)), step, "scalars")
            self._writer(name).flush()

    def on_train_end(self, logs=None):
        self._draw_pending()  # the last epoch's grid, when the interval skipped it
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _mask_image(masks, channels: int) -> np.ndarray:
    """Masks ``[N, H, W, K]`` as images with ``channels`` channels: one class as its
    probability, K classes as ``argmax / (K - 1)``."""
    masks = np.asarray(masks, dtype="float32")
    if masks.ndim == 3:
        masks = masks[..., None]
    if masks.shape[-1] > 1:
        masks = np.argmax(masks, axis=-1)[..., None] / float(masks.shape[-1] - 1)
    return np.repeat(masks, channels, axis=-1) if channels > 1 else masks


#: Column titles of the :class:`SegmentationPreview` grid.
MASK_TITLES = ("input", "predicted mask", "true mask")


class SegmentationPreview(ReconstructionPreview):
    """Logs the predicted masks of a few fixed images after every epoch.

    For ``train(task="segmentation")``: each row shows the input image, the
    predicted mask (the probability of the positive class; with K classes the
    argmax, scaled to [0, 1]) and the true mask. The grid goes to TensorBoard
    (``log_dir/validation``, tag ``masks``) and to ``image_dir/epoch_XXX.png``;
    epoch scalars and ``min_seconds`` as in :class:`ReconstructionPreview`.

    Args:
        inputs: ``[N, H, W, C]`` probe images in [0, 1].
        targets: ``[N, H, W, K]`` their true masks.
        log_dir: TensorBoard folder, or None.
        image_dir: PNG folder, or None.
        every: log every ``every`` epochs.
        scalars: also write the epoch scalars.
        min_seconds: the least time between two grids (0: every logged epoch).
    """

    tag = "masks"
    titles = MASK_TITLES

    def _observe(self, epoch, logs):
        return None if epoch % self.every else _predict(self.model, self.inputs)

    def _grid(self, arrays):
        channels = self.inputs.shape[-1]
        return reconstruction_grid(
            self.inputs, _mask_image(arrays, channels), _mask_image(self.targets, channels)
        )
