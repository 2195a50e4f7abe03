"""Pixel maps from an image and its reconstruction: the residual and ``1 - SSIM``."""

from __future__ import annotations

import tensorflow as tf

from keras_skipae.ops.image import blur_channels, ssim_from_moments, ssim_moments
from keras_skipae.scoring.common import _check_rank

SSIM_WINDOW = 11


SSIM_SIGMA = 1.5


SSIM_K1 = 0.01


SSIM_K2 = 0.03


def residual_map(images, reconstruction) -> tf.Tensor:
    """The residual map ``|x - x_hat|``, averaged over channels.

    Args:
        images: ``[B, H, W, C]`` float in [0, 1].
        reconstruction: the model's output, same shape.

    Returns:
        ``[B, H, W]`` float32.

    Example:
        >>> residual_map(x, model(x))
    """
    images = tf.cast(images, tf.float32)
    reconstruction = tf.cast(reconstruction, tf.float32)
    _check_rank(images, 4, "images")
    return tf.reduce_mean(tf.abs(images - reconstruction), axis=-1)


def ssim_map(images, reconstruction) -> tf.Tensor:
    """The structural dissimilarity map ``1 - SSIM``, averaged over channels.

    Local SSIM with a Gaussian window (11 taps, sigma 1.5), K1 = 0.01,
    K2 = 0.03, data range 1 and population (not sample) covariances, i.e.
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)`` (Wang et al.,
    2004). The local means use the normalised convolution of
    ``gaussian_smooth``, so the map has the image's size.

    Args:
        images: ``[B, H, W, C]`` float in [0, 1].
        reconstruction: the model's output, same shape.

    Returns:
        ``[B, H, W]`` float32; 0 where the images agree, up to 2.
    """
    x = tf.cast(images, tf.float32)
    y = tf.cast(reconstruction, tf.float32)
    _check_rank(x, 4, "images")
    radius = SSIM_WINDOW // 2
    moments = ssim_moments(x, y, lambda t: blur_channels(t, SSIM_SIGMA, radius))
    ssim = ssim_from_moments(*moments, c1=SSIM_K1**2, c2=SSIM_K2**2)
    return 1.0 - tf.reduce_mean(ssim, axis=-1)
