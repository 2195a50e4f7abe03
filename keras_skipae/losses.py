"""Reconstruction losses and image-quality metrics.

Losses compare a reconstruction ``y_pred`` with its target ``y_true`` (both
``[B, H, W, C]`` float images in ``[0, 1]``):

* :class:`MeanSquaredError` (``"mse"``), :class:`MeanAbsoluteError` (``"l1"``),
* :class:`SSIMLoss` (``"ssim"``): ``1 - SSIM``, the structural-similarity index
  of Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), computed on
  the valid part of the image as in ``tf.image.ssim`` and scikit-image,
* :class:`MixedLoss` (``"mse+ssim"``, ``"l1+ssim"``):
  ``pixel_weight * pixel_loss + ssim_weight * (1 - SSIM)``.

The Keras metrics PSNR and SSIM are in :mod:`keras_skipae.keras_metrics`.

Every class is registered with
``keras.saving.register_keras_serializable(package="keras_skipae")`` and stores
its arguments in ``get_config()``, so a model compiled with them saves to
``.keras`` and loads with ``keras.models.load_model(path, safe_mode=True)``.

Example:
    >>> import keras_skipae as ks
    >>> model.compile(optimizer="adam", loss=ks.losses.get_loss("mse+ssim"),
    ...               metrics=[ks.keras_metrics.PSNR(), ks.keras_metrics.SSIM()])
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_skipae.ops import image as image_ops

__all__ = [
    "LOSSES",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "MixedLoss",
    "RECONSTRUCTION_LOSSES",
    "SEGMENTATION_LOSSES",
    "SSIMLoss",
    "SegmentationLoss",
    "dice_loss",
    "focal_map",
    "get_loss",
    "l1",
    "mse",
    "psnr",
    "ssim",
]

_PACKAGE = "keras_skipae"


# --------------------------------------------------------------------------- #
# Functions (per image: shape [B])
# --------------------------------------------------------------------------- #


def _pixel_loss(y_true, y_pred, kind):
    """Per-pixel ``[B, H, W]`` squared (``"mse"``) or absolute (``"l1"``) error, mean over channels."""
    err = y_pred - ops.cast(y_true, y_pred.dtype)
    return ops.mean(ops.square(err) if kind == "mse" else ops.abs(err), axis=-1)


def _per_image_mean(x):
    return ops.mean(ops.reshape(x, (ops.shape(x)[0], -1)), axis=-1)


def mse(y_true, y_pred):
    """Mean squared error per image.

    Args:
        y_true: target images ``[B, H, W, C]``.
        y_pred: reconstructions, same shape.

    Returns:
        A ``[B]`` tensor.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    return _per_image_mean(ops.square(y_pred - y_true))


def l1(y_true, y_pred):
    """Mean absolute error per image (``[B]``)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return _per_image_mean(ops.abs(y_pred - y_true))


def ssim_map(y_true, y_pred, *, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03):
    """Local SSIM ``[B, H', W', C]`` on the valid part of the image.

    ``H' = H - filter_size + 1``. The window shrinks to the image size for images
    smaller than ``filter_size``. Population (not sample) covariances, as in
    ``tf.image.ssim`` and ``skimage.metrics.structural_similarity`` with
    ``gaussian_weights=True, use_sample_covariance=False``.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    h, w, c = y_pred.shape[1], y_pred.shape[2], y_pred.shape[3]
    if c is None:
        raise ValueError(f"SSIM needs a known channel count. Received: shape={y_pred.shape}")
    size = filter_size
    if h is not None and w is not None:
        size = max(1, min(filter_size, h, w))
    # The 2-D Gaussian window is separable: one depthwise pass over rows, one over
    # columns, on the five moment images stacked along channels (the same numbers as
    # an 11x11 window up to float rounding, ~13x less CPU than five 2-D passes).
    g = ops.cast(image_ops.gaussian_kernel(filter_sigma, (size - 1) / 2), y_pred.dtype)
    rows = ops.tile(g[:, None, None, None], (1, 1, 5 * c, 1))
    cols = ops.tile(g[None, :, None, None], (1, 1, 5 * c, 1))

    def window(t):
        t = ops.depthwise_conv(t, rows, strides=1, padding="valid")
        return ops.depthwise_conv(t, cols, strides=1, padding="valid")

    mu_x, mu_y, mu_xx, mu_yy, mu_xy = image_ops.ssim_moments(y_true, y_pred, window)
    return image_ops.ssim_from_moments(
        mu_x, mu_y, mu_xx, mu_yy, mu_xy, c1=(k1 * max_val) ** 2, c2=(k2 * max_val) ** 2
    )


def ssim(y_true, y_pred, *, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03):
    """Mean SSIM per image (``[B]``), averaged over the valid window positions and channels."""
    return _per_image_mean(
        ssim_map(
            y_true,
            y_pred,
            max_val=max_val,
            filter_size=filter_size,
            filter_sigma=filter_sigma,
            k1=k1,
            k2=k2,
        )
    )


def psnr(y_true, y_pred, *, max_val=1.0):
    """Peak signal-to-noise ratio per image in dB (``[B]``); capped at 100 dB for exact copies."""
    err = mse(y_true, y_pred)
    err = ops.maximum(err, ops.cast(max_val**2 * 1e-10, err.dtype))
    return 10.0 * ops.log(ops.cast(max_val**2, err.dtype) / err) / np.log(10.0)


# --------------------------------------------------------------------------- #
# Losses
# --------------------------------------------------------------------------- #


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanSquaredError(keras.losses.Loss):
    """Mean squared error over pixels and channels (``"mse"``).

    ``call`` gives the per-pixel values ``[B, H, W]`` (mean over channels), so a
    per-pixel ``sample_weight`` ``[B, H, W]`` weights pixels (``train``'s
    ``stain_weight``); with the default reduction the loss is the plain mean.
    """

    def __init__(self, name="mse", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return _pixel_loss(y_true, y_pred, "mse")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanAbsoluteError(keras.losses.Loss):
    """Mean absolute error over pixels and channels (``"l1"``); per-pixel values as ``"mse"``."""

    def __init__(self, name="l1", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return _pixel_loss(y_true, y_pred, "l1")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SSIMLoss(keras.losses.Loss):
    """``1 - SSIM`` per image (``"ssim"``).

    Args:
        max_val: the dynamic range of the images (1.0 for ``[0, 1]``).
        filter_size: Gaussian window size (shrunk to the image for tiny images).
        filter_sigma: Gaussian window standard deviation.
        name: loss name.
        reduction: Keras loss reduction.
        dtype: loss dtype.
    """

    def __init__(
        self,
        max_val=1.0,
        filter_size=11,
        filter_sigma=1.5,
        name="ssim",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.max_val = float(max_val)
        self.filter_size = int(filter_size)
        self.filter_sigma = float(filter_sigma)

    def call(self, y_true, y_pred):
        return 1.0 - ssim(
            y_true,
            y_pred,
            max_val=self.max_val,
            filter_size=self.filter_size,
            filter_sigma=self.filter_sigma,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            max_val=self.max_val, filter_size=self.filter_size, filter_sigma=self.filter_sigma
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MixedLoss(keras.losses.Loss):
    """``pixel_weight * pixel_loss + ssim_weight * (1 - SSIM)`` (``"mse+ssim"``, ``"l1+ssim"``).

    Args:
        pixel: ``"mse"`` or ``"l1"``.
        pixel_weight: weight of the pixel loss.
        ssim_weight: weight of ``1 - SSIM``.
        max_val: dynamic range of the images.
        filter_size: SSIM Gaussian window size.
        filter_sigma: SSIM Gaussian window standard deviation.
        name: loss name (defaults to ``"<pixel>_ssim"``).
        reduction: Keras loss reduction.
        dtype: loss dtype.
    """

    def __init__(
        self,
        pixel="mse",
        pixel_weight=1.0,
        ssim_weight=1.0,
        max_val=1.0,
        filter_size=11,
        filter_sigma=1.5,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        if pixel not in ("mse", "l1"):
            raise ValueError(f"`pixel` must be 'mse' or 'l1'. Received: pixel={pixel!r}")
        super().__init__(name=name or f"{pixel}_ssim", reduction=reduction, dtype=dtype)
        self.pixel = pixel
        self.pixel_weight = float(pixel_weight)
        self.ssim_weight = float(ssim_weight)
        self.max_val = float(max_val)
        self.filter_size = int(filter_size)
        self.filter_sigma = float(filter_sigma)

    def call(self, y_true, y_pred):
        pixel = _pixel_loss(y_true, y_pred, self.pixel)
        structural = 1.0 - ssim(
            y_true,
            y_pred,
            max_val=self.max_val,
            filter_size=self.filter_size,
            filter_sigma=self.filter_sigma,
        )
        # [B, H, W]: per-pixel pixel loss plus each image's 1 - SSIM at every pixel.
        return self.pixel_weight * pixel + self.ssim_weight * structural[:, None, None]

    def get_config(self):
        config = super().get_config()
        config.update(
            pixel=self.pixel,
            pixel_weight=self.pixel_weight,
            ssim_weight=self.ssim_weight,
            max_val=self.max_val,
            filter_size=self.filter_size,
            filter_sigma=self.filter_sigma,
        )
        return config


# --------------------------------------------------------------------------- #
# Segmentation losses (masks in {0, 1}, predictions probabilities in [0, 1])
# --------------------------------------------------------------------------- #


def dice_loss(y_true, y_pred, *, smooth=1.0):
    """``1 - (2 sum(y p) + s) / (sum(y) + sum(p) + s)`` per image (``[B]``).

    Empty masks are fine: a prediction of all zeros scores 0 on them.
    """
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    axes = tuple(range(1, len(y_pred.shape)))
    inter = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - (2.0 * inter + smooth) / (total + smooth)


def _bce_map(y_true, y_pred):
    """Per-pixel binary cross-entropy ``[B, H, W]`` of probabilities (clipped)."""
    p = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
    y = ops.cast(y_true, "float32")
    return ops.mean(-(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p)), axis=-1)


def focal_map(y_true, y_pred, *, gamma=2.0, alpha=None):
    """Per-pixel focal loss ``[B, H, W]`` (Lin et al., 2017): BCE down-weighted by ``(1-p_t)^g``."""
    p = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
    y = ops.cast(y_true, "float32")
    p_t = y * p + (1.0 - y) * (1.0 - p)
    weight = ops.power(1.0 - p_t, gamma)
    if alpha is not None:
        weight = weight * (y * alpha + (1.0 - y) * (1.0 - alpha))
    return ops.mean(-weight * ops.log(p_t), axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SegmentationLoss(keras.losses.Loss):
    """Losses for masks: ``"bce"``, ``"dice"``, ``"bce+dice"`` and ``"focal"``.

    ``bce`` and ``focal`` are per pixel (so ``sample_weight`` may be ``[B, H, W]``);
    ``dice`` is per image; ``bce+dice`` is ``mean(bce) + dice`` per image.

    Args:
        kind: ``"bce"``, ``"dice"``, ``"bce+dice"`` or ``"focal"``.
        gamma: the focal exponent.
        smooth: the Dice smoothing term.
    """

    KINDS = ("bce", "dice", "bce+dice", "focal")

    def __init__(
        self,
        kind="bce+dice",
        gamma=2.0,
        smooth=1.0,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        if kind not in self.KINDS:
            raise ValueError(f"Expected `kind` in {list(self.KINDS)}. Received: kind={kind!r}")
        super().__init__(name=name or kind.replace("+", "_"), reduction=reduction, dtype=dtype)
        self.kind, self.gamma, self.smooth = kind, float(gamma), float(smooth)

    def call(self, y_true, y_pred):
        if self.kind == "bce":
            return _bce_map(y_true, y_pred)
        if self.kind == "focal":
            return focal_map(y_true, y_pred, gamma=self.gamma)
        dice = dice_loss(y_true, y_pred, smooth=self.smooth)
        if self.kind == "dice":
            return dice
        return _per_image_mean(_bce_map(y_true, y_pred)) + dice

    def get_config(self):
        return {
            **super().get_config(),
            "kind": self.kind,
            "gamma": self.gamma,
            "smooth": self.smooth,
        }


RECONSTRUCTION_LOSSES = ("mse", "l1", "ssim", "mse+ssim", "l1+ssim")
SEGMENTATION_LOSSES = SegmentationLoss.KINDS
LOSSES = RECONSTRUCTION_LOSSES + SEGMENTATION_LOSSES
_ALIASES = {"mae": "l1", "mse_ssim": "mse+ssim", "l1_ssim": "l1+ssim", "mae+ssim": "l1+ssim"}


def get_loss(name, **kwargs) -> keras.losses.Loss:
    """Returns a loss object by name.

    Args:
        name: one of ``LOSSES`` (reconstruction: ``"mse"``, ``"l1"``, ``"ssim"``,
            ``"mse+ssim"``, ``"l1+ssim"``; masks: ``"bce"``, ``"dice"``, ``"bce+dice"``,
            ``"focal"``; aliases ``"mae"``, ``"mse_ssim"``, ``"l1_ssim"``), or a
            ``keras.losses.Loss`` instance, returned unchanged.
        **kwargs: passed to the loss class (e.g. ``ssim_weight=0.5`` for a mix).

    Returns:
        A serializable ``keras.losses.Loss``.

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> loss = get_loss("mse+ssim", ssim_weight=0.5)
    """
    if isinstance(name, keras.losses.Loss):
        return name
    key = str(name).lower().replace(" ", "") if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key == "mse":
        return MeanSquaredError(**kwargs)
    if key == "l1":
        return MeanAbsoluteError(**kwargs)
    if key == "ssim":
        return SSIMLoss(**kwargs)
    if key in ("mse+ssim", "l1+ssim"):
        return MixedLoss(pixel=key.split("+")[0], **kwargs)
    if key in SegmentationLoss.KINDS:
        return SegmentationLoss(key, **kwargs)
    raise ValueError(f"Unknown loss. Expected one of {list(LOSSES)}. Received: loss={name!r}")
