"""Gaussian smoothing of anomaly maps (separable, with a choice of border handling)."""

from __future__ import annotations

import math

import tensorflow as tf

from keras_skipae.ops.image import blur_channels
from keras_skipae.scoring.common import _check_rank

DEFAULT_SMOOTHING = 4.0


DEFAULT_SMOOTHING_BORDER = "equalized"


SMOOTHING_BORDERS = ("equalized", "normalized", "zeros")


# Truncation of the smoothing Gaussian, in sigmas (as scipy.ndimage's default).
_SMOOTHING_TRUNCATE = 4.0


def _check_smoothing(smoothing) -> float:
    if smoothing is None:
        return 0.0
    try:
        value = float(smoothing)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            "Expected `smoothing` to be a Gaussian sigma in pixels >= 0, or None for none. "
            f"Received: smoothing={smoothing!r}"
        )
    return value


def _check_border(border, name: str) -> None:
    if border not in SMOOTHING_BORDERS:
        raise ValueError(
            f"Expected `{name}` to be one of {list(SMOOTHING_BORDERS)}. Received: {name}={border!r}"
        )


def gaussian_smooth(
    maps, sigma: float | None = DEFAULT_SMOOTHING, border: str = DEFAULT_SMOOTHING_BORDER
) -> tf.Tensor:
    """Gaussian smoothing of anomaly maps (separable; borders per ``border``).

    The kernel is a sampled Gaussian truncated at 4 sigma (radius
    ``int(4 * sigma + 0.5)``, as ``scipy.ndimage.gaussian_filter``). Inside the
    image (farther than the radius from a border) every mode is the plain blur.
    Near a border, where part of the kernel falls outside the image:

    * ``"equalized"`` (the default): the zero-padded blur scaled so that
      uncorrelated pixel noise has the same variance at every position
      (divided by ``sqrt(sum of the squared weights inside / sum of all squared
      weights)``), so that the maximum of a good image does not land on the
      border. A constant map keeps its value inside and drops to ~0.71x on an
      edge and 0.5x in a corner. Why: ``docs/decisions.md#smoothing-border``.
    * ``"normalized"``: each output is the Gaussian-weighted mean of the pixels
      that exist (a constant map stays constant); the package's default before
      ``"equalized"``, and what SSIM's local moments use.
    * ``"zeros"``: zero padding (``scipy.ndimage`` ``mode="constant"``); a
      constant map drops to 0.5x on an edge and 0.25x in a corner.

    Args:
        maps: ``[B, H, W]`` float.
        sigma: standard deviation in pixels; 0 or None returns ``maps`` as is.
        border: ``"equalized"``, ``"normalized"`` or ``"zeros"``.

    Returns:
        ``[B, H, W]`` float32.
    """
    sigma = _check_smoothing(sigma)
    _check_border(border, "border")
    maps = tf.cast(maps, tf.float32)
    _check_rank(maps, 3, "maps")
    if sigma == 0.0:
        return maps
    radius = max(1, int(_SMOOTHING_TRUNCATE * sigma + 0.5))
    return blur_channels(maps[..., None], sigma, radius, border)[..., 0]
