"""Reconstruction losses and image-quality metrics.

Losses compare a reconstruction ``y_pred`` with its target ``y_true`` (both
``[B, H, W, C]`` float images in ``[0, 1]``):

* :class:`MeanSquaredError` (``"mse"``), :class:`MeanAbsoluteError` (``"l1"``),
* :class:`SSIMLoss` (``"ssim"``): ``1 - SSIM``, the structural-similarity index
  of Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), computed on
  the valid part of the image as in ``tf.image.ssim`` and scikit-image,
* :class:`MixedLoss` (``"mse+ssim"``, ``"l1+ssim"``):
  ``pixel_weight * pixel_loss + ssim_weight * (1 - SSIM)``.

Metrics: :class:`PSNR` and :class:`SSIM` (means over the images seen).

Every class is registered with
``keras.saving.register_keras_serializable(package="keras_skipae")`` and stores
its arguments in ``get_config()``, so a model compiled with them saves to
``.keras`` and loads with ``keras.models.load_model(path, safe_mode=True)``.

Example:
    >>> import keras_skipae as ks
    >>> model.compile(optimizer="adam", loss=ks.losses.get_loss("mse+ssim"),
    ...               metrics=[ks.losses.PSNR(), ks.losses.SSIM()])
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = [
    "LOSSES",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "MixedLoss",
    "PSNR",
    "SSIM",
    "SSIMLoss",
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


def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """A normalised, sampled 1-D Gaussian of ``size`` taps (float64)."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(ax**2) / (2.0 * sigma**2))
    return g / g.sum()


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
    g = _gaussian_taps(size, filter_sigma).astype("float32")
    rows = ops.convert_to_tensor(np.tile(g[:, None, None, None], (1, 1, 5 * c, 1)), y_pred.dtype)
    cols = ops.convert_to_tensor(np.tile(g[None, :, None, None], (1, 1, 5 * c, 1)), y_pred.dtype)
    stacked = ops.concatenate(
        [y_true, y_pred, y_true * y_true, y_pred * y_pred, y_true * y_pred], axis=-1
    )
    moments = ops.depthwise_conv(stacked, rows, strides=1, padding="valid")
    moments = ops.depthwise_conv(moments, cols, strides=1, padding="valid")
    mu_x, mu_y, mu_xx, mu_yy, mu_xy = ops.split(moments, 5, axis=-1)
    return ssim_from_moments(
        mu_x, mu_y, mu_xx, mu_yy, mu_xy, c1=(k1 * max_val) ** 2, c2=(k2 * max_val) ** 2
    )


def ssim_from_moments(mu_x, mu_y, mu_xx, mu_yy, mu_xy, *, c1, c2):
    """Local SSIM from the windowed moments ``E[x], E[y], E[x^2], E[y^2], E[xy]``.

    Population (co)variances: ``sigma_xy = E[xy] - E[x] E[y]`` (Wang et al., 2004).
    Shared by :func:`ssim_map` (valid window, the loss) and
    :func:`keras_skipae.scoring.ssim_map` (normalised convolution, full-size maps).
    """
    mx2 = mu_x * mu_x
    my2 = mu_y * mu_y
    mxy = mu_x * mu_y
    num = (2.0 * mxy + c1) * (2.0 * (mu_xy - mxy) + c2)
    den = (mx2 + my2 + c1) * ((mu_xx - mx2) + (mu_yy - my2) + c2)
    return num / den


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


LOSSES = ("mse", "l1", "ssim", "mse+ssim", "l1+ssim")
_ALIASES = {"mae": "l1", "mse_ssim": "mse+ssim", "l1_ssim": "l1+ssim", "mae+ssim": "l1+ssim"}


def get_loss(name, **kwargs) -> keras.losses.Loss:
    """Returns a loss object by name.

    Args:
        name: one of ``LOSSES`` (``"mse"``, ``"l1"``, ``"ssim"``, ``"mse+ssim"``,
            ``"l1+ssim"``; aliases ``"mae"``, ``"mse_ssim"``, ``"l1_ssim"``), or a
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
    raise ValueError(f"Unknown loss. Expected one of {list(LOSSES)}. Received: loss={name!r}")


# --------------------------------------------------------------------------- #
# Metrics
# --------------------------------------------------------------------------- #


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
