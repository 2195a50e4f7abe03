"""Keras metrics: PSNR and SSIM of reconstructions, IoU and Dice of masks; registered for ``.keras`` loading."""

from __future__ import annotations

import keras
from keras import ops

from keras_skipae.losses import psnr, ssim

_PACKAGE = "keras_skipae"


def _psnr_fn(y_true, y_pred, max_val=1.0):
    return psnr(y_true, y_pred, max_val=max_val)


def _ssim_fn(y_true, y_pred, max_val=1.0):
    return ssim(y_true, y_pred, max_val=max_val)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PSNR(keras.metrics.MeanMetricWrapper):
    """Mean peak signal-to-noise ratio (dB) of the reconstructions.

    Args:
        max_val: dynamic range of the images.
        name: metric name.
        dtype: metric dtype.
    """

    def __init__(self, max_val=1.0, name="psnr", dtype=None):
        super().__init__(fn=_psnr_fn, name=name, dtype=dtype, max_val=float(max_val))
        self.max_val = float(max_val)
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "max_val": self.max_val}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SSIM(keras.metrics.MeanMetricWrapper):
    """Mean SSIM of the reconstructions (1 is a perfect copy).

    Args:
        max_val: dynamic range of the images.
        name: metric name.
        dtype: metric dtype.
    """

    def __init__(self, max_val=1.0, name="ssim", dtype=None):
        super().__init__(fn=_ssim_fn, name=name, dtype=dtype, max_val=float(max_val))
        self.max_val = float(max_val)
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "max_val": self.max_val}


class _Overlap(keras.metrics.Metric):
    """Accumulates true / false positives and false negatives of thresholded masks."""

    def __init__(self, threshold=0.5, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y = ops.cast(ops.cast(y_true, "float32") >= 0.5, "float32")
        p = ops.cast(ops.cast(y_pred, "float32") >= self.threshold, "float32")
        self.tp.assign_add(ops.sum(y * p))
        self.fp.assign_add(ops.sum((1.0 - y) * p))
        self.fn.assign_add(ops.sum(y * (1.0 - p)))

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)

    def get_config(self):
        return {"threshold": self.threshold, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IoU(_Overlap):
    """Intersection over union of the positive class, pooled over all pixels seen.

    ``tp / (tp + fp + fn)`` with predictions thresholded at ``threshold``; 1 when
    neither masks nor predictions have a positive pixel.
    """

    def __init__(self, threshold=0.5, name="iou", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)

    def result(self):
        den = self.tp + self.fp + self.fn
        return ops.where(den > 0, self.tp / ops.maximum(den, 1.0), 1.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Dice(_Overlap):
    """The Dice coefficient (F1) of the positive class, pooled over all pixels seen.

    ``2 tp / (2 tp + fp + fn)``; always >= :class:`IoU` on the same pixels.
    """

    def __init__(self, threshold=0.5, name="dice", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)

    def result(self):
        den = 2.0 * self.tp + self.fp + self.fn
        return ops.where(den > 0, 2.0 * self.tp / ops.maximum(den, 1.0), 1.0)
