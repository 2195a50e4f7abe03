"""Image primitives shared by losses, scoring and corruptions.

One sampled Gaussian (:func:`gaussian`, :func:`gaussian_kernel`: each caller
passes its own radius), the separable blur of anomaly maps
(:func:`blur_channels`), and one set of SSIM moments (:func:`ssim_moments`,
:func:`ssim_from_moments`) used by the SSIM loss and the SSIM anomaly map.
"""

from __future__ import annotations

import tensorflow as tf


def gaussian(d, sigma) -> tf.Tensor:
    """The unnormalised Gaussian ``exp(-d^2 / (2 sigma^2))`` (float32), broadcasting.

    The one Gaussian of the package: :func:`gaussian_kernel` (smoothing, SSIM
    windows) and the stain edge blur sample it, each with its own support.
    """
    d = tf.cast(d, tf.float32)
    return tf.exp(-0.5 * tf.square(d / tf.cast(sigma, tf.float32)))


def gaussian_kernel(sigma: float, radius: float) -> tf.Tensor:
    """A normalised, sampled 1-D Gaussian of ``2 * radius + 1`` taps (float32).

    Args:
        sigma: the standard deviation in samples.
        radius: the half-width in samples; a half-integer gives an even number of
            taps, centred between two samples (an SSIM window shrunk to an even
            image side).
    """
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    g = gaussian(x, float(sigma))
    return g / tf.reduce_sum(g)


def band_matrix(g: tf.Tensor, n) -> tf.Tensor:
    """``[n, n]`` matrix ``B`` with ``B[i, j] = g[j - i + r]`` where ``|j - i| <= r``, else 0.

    ``B @ v`` is the zero-padded, same-size correlation of ``v`` with the
    ``2r + 1`` taps ``g`` (what ``tf.nn.conv2d(..., padding="SAME")`` computes).
    """
    r = (tf.shape(g)[0] - 1) // 2
    d = tf.range(n)[None, :] - tf.range(n)[:, None]
    taps = tf.gather(g, tf.clip_by_value(d + r, 0, 2 * r))
    return tf.where(tf.abs(d) <= r, taps, tf.zeros((), g.dtype))


def separable(t: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """Zero-padded separable filtering of ``t`` ``[N, H, W]``: ``rows @ t @ cols^T``.

    ``rows`` / ``cols`` are band matrices (:func:`band_matrix`). Two matrix
    products need no padding for any image size and beat ``conv2d`` on CPU at the
    package's sizes (``docs/decisions.md#banded-matrix-smoothing``); their cost grows
    as ``H * W * (H + W)``, so for maps of several thousand pixels a side a
    convolution would be cheaper.
    """
    return tf.einsum("nik,lk->nil", tf.einsum("ij,njk->nik", rows, t), cols)


def blur_channels(x: tf.Tensor, sigma: float, radius: int, border: str = "normalized") -> tf.Tensor:
    """Separable Gaussian blur of every channel of ``x`` ``[B, H, W, C]``.

    Zero padding, then a per-position factor that depends on ``border`` (see
    ``gaussian_smooth``; the interior is the plain Gaussian blur in every mode).
    Any image size works (no reflect-padding limit).
    """
    g = gaussian_kernel(sigma, radius)
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    rows, cols = band_matrix(g, h), band_matrix(g, w)
    # Channels into the batch: one single-channel filter for any C.
    t = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), tf.stack([b * c, h, w]))
    y = separable(t, rows, cols)
    if border == "normalized":
        # The blur of an all-ones image: the outer product of the row sums.
        y = y / (tf.reduce_sum(rows, 1)[:, None] * tf.reduce_sum(cols, 1)[None, :])
    elif border == "equalized":
        # Var of blurred i.i.d. noise at p is proportional to sum of the squared kernel
        # weights inside the image, (g^2 * 1)(p); scale it to the interior's value.
        inside = tf.reduce_sum(tf.square(rows), 1)[:, None] * tf.reduce_sum(tf.square(cols), 1)
        y = y * tf.sqrt(tf.reduce_sum(tf.square(g)) ** 2 / inside)
    return tf.transpose(tf.reshape(y, tf.stack([b, c, h, w])), [0, 2, 3, 1])


def ssim_from_moments(mu_x, mu_y, mu_xx, mu_yy, mu_xy, *, c1, c2):
    """Local SSIM from the windowed moments ``E[x], E[y], E[x^2], E[y^2], E[xy]``.

    Population (co)variances: ``sigma_xy = E[xy] - E[x] E[y]`` (Wang et al., 2004).
    Shared by :func:`keras_skipae.losses.ssim_map` (valid window, the loss) and
    :func:`keras_skipae.scoring.ssim_map` (normalised convolution, full-size maps),
    both through :func:`ssim_moments`.
    """
    mx2 = mu_x * mu_x
    my2 = mu_y * mu_y
    mxy = mu_x * mu_y
    num = (2.0 * mxy + c1) * (2.0 * (mu_xy - mxy) + c2)
    den = (mx2 + my2 + c1) * ((mu_xx - mx2) + (mu_yy - my2) + c2)
    return num / den


def ssim_moments(x, y, blur) -> list:
    """The windowed moments ``E[x], E[y], E[x^2], E[y^2], E[xy]`` of two image batches.

    Args:
        x, y: ``[B, H, W, C]`` float tensors.
        blur: ``fn(t) -> t'``, the window: it filters every channel of ``t``
            ``[B, H, W, 5C]`` (valid or same-size, as the caller needs).

    Returns:
        The five moments, each ``[B, H', W', C]``.
    """
    stacked = tf.concat([x, y, x * x, y * y, x * y], axis=-1)
    return tf.split(blur(stacked), 5, axis=-1)
