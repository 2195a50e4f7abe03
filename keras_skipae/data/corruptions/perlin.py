"""Perlin noise and the anomaly regions cut from it (pure TF, batched, seeded).

* :func:`perlin_noise`: batched 2-D gradient (Perlin) noise, a random
  power-of-two lattice resolution per image and per axis, optionally rotated, as
  DRAEM (Zavrtanik et al., ICCV 2021) draws its anomaly shapes;
* :func:`perlin_mask`: the region: the top ``a`` fraction of rotated Perlin
  noise, with ``a`` drawn per image in a configured range (a quantile threshold,
  so every mask has a controlled, non-zero area; no retries).

Random numbers: all random floats here are made from stateless random *integers*
(which XLA and the TF kernels draw identically; their float streams differ), so a
compiled call gives the same noise as an eager one, up to float rounding.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_skipae.data.corruptions import rng
from keras_skipae.data.corruptions.base import _as_range

__all__ = ["perlin_mask", "perlin_noise"]

#: Largest accepted lattice exponent: 2**10 cells per image side.
_MAX_EXPONENT = 10


# --------------------------------------------------------------------------- helpers


def _check_hw(shape_hw):
    """Validates a static (H, W) pair; returns it as ints."""
    try:
        height, width = (int(v) for v in shape_hw)
    except (TypeError, ValueError):
        raise ValueError(
            f"`shape_hw` must be a (height, width) pair of ints. Received: shape_hw={shape_hw!r}"
        ) from None
    if height < 1 or width < 1:
        raise ValueError(f"`shape_hw` must hold positive sizes. Received: shape_hw={shape_hw!r}")
    return height, width


def _check_scale_range(scale_range):
    return _as_range(scale_range, "scale_range", integer=True, low=0, high=_MAX_EXPONENT)


def _check_octaves(octaves):
    if isinstance(octaves, bool) or not isinstance(octaves, (int, np.integer)) or octaves < 1:
        raise ValueError(f"`octaves` must be an int >= 1. Received: octaves={octaves!r}")
    return int(octaves)


def _check_area(area):
    lo, hi = _as_range(area, "area", low=0.0, high=1.0)
    if lo <= 0.0:
        raise ValueError(
            f"`area` must be a (min, max) pair of fractions in (0, 1]. Received: area={area!r}"
        )
    return (lo, hi)


def _fade(t):
    """Perlin's quintic fade ``6t^5 - 15t^4 + 10t^3``, for t in [0, 1]."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _fade_weight(d):
    """``1 - fade(|d|)`` for ``|d| < 1``, else 0: the weight of a lattice point at offset d.

    Uses ``1 - fade(a) = fade(1 - a)`` for ``a > 1/2`` (exact ``1 - a`` there),
    which avoids the cancellation of the polynomial near 1: the weights then
    round alike with and without fused multiply-adds (XLA).
    """
    a = tf.minimum(tf.abs(d), 1.0)
    return tf.where(a <= 0.5, 1.0 - _fade(a), _fade(1.0 - a))


def _angle_table(n, bits):
    """float32 ``[n, 2]``: (sin, cos) of ``k * pi / n``, k < n, rounded to multiples of 2**-bits.

    Rotations and directions come from constant tables indexed by random
    integers (no ``sin`` / ``cos`` of random angles at call time), and values
    with few significant bits multiply pixel coordinates exactly, so compiled
    and eager code get the same coordinates.
    """
    a = np.arange(n) * np.pi / n
    table = np.stack([np.sin(a), np.cos(a)], axis=1)
    return np.round(table * 2.0**bits) / 2.0**bits


_N_DIRECTIONS = 1024  # gradient directions (over the full circle)
_DIRECTIONS = np.concatenate([_angle_table(512, 20), -_angle_table(512, 20)]).astype(np.float32)
_N_ROTATIONS = 4096  # rotation angles in [0, pi)
_ROTATIONS = _angle_table(_N_ROTATIONS, 12).astype(np.float32)
_PHASE_STEPS = 64  # sub-cell lattice offsets, in 1/64 of a cell


def _lattice_offsets(rows, height, exponent, cells, phase):
    """float32 ``[B, rows, cells + 1]``: offsets of each pixel from each lattice point, in cells.

    Pixel ``y`` (centre ``y + 1/2``, relative to the canvas centre) is at lattice
    coordinate ``(y + 1/2 - rows/2) * 2**e / height + cells // 2 + phase``. The
    offset is computed as a numerator that is exact (for canvases and lattices
    of up to a few thousand pixels / cells) times ``1 / height``, so it rounds
    once, and alike in compiled and eager code.
    """
    p = np.arange(rows, dtype=np.float64) + 0.5 - rows / 2.0  # multiples of 1/2
    lattice = (cells // 2 - np.arange(cells + 1, dtype=np.float64)) * height  # integers
    scale = tf.cast(tf.bitwise.left_shift(1, exponent), tf.float32)  # 2**e, exact
    num = (
        tf.constant(p, tf.float32)[None, :, None] * scale[:, None, None]
        + tf.constant(lattice, tf.float32)[None, None, :]
        + (phase * height)[:, None, None]
    )
    return num * (1.0 / height)


def _perlin_canvas(rows, cols, height, width, batch, seed, exp_y, exp_x, max_exponent):
    """One octave of gradient noise on a ``rows x cols`` canvas centred on the image.

    Args:
        rows, cols: static canvas size (the image size, or larger to rotate it).
        height, width: static image size; the image spans ``2**exp`` lattice
            cells along each axis.
        batch: B (scalar int32 tensor).
        seed: int tensor [2].
        exp_y, exp_x: int32 ``[B]`` lattice exponents.
        max_exponent: static upper bound of ``exp_y`` / ``exp_x``.

    Returns:
        float32 ``[B, rows, cols]`` in [-1, 1] (the classic noise times sqrt(2)).

    Perlin noise is a sum over lattice points of separable weights times the
    gradient's dot product with the offset, so with the gradients' y and x
    components as matrices ``GY``, ``GX`` it is
    ``(Wy * Dy) GY Wx^T + Wy GX (Wx * Dx)^T`` (``W`` the fade weights, ``D`` the
    offsets): four small batched matrix products, whatever the per-image
    resolution (each image uses the centre part of one static lattice).
    """
    res_max = float(2**max_exponent)
    cells_y = 2 * int(math.ceil(res_max * rows / height / 2.0)) + 2
    cells_x = 2 * int(math.ceil(res_max * cols / width / 2.0)) + 2
    shape = tf.stack([batch, cells_y + 1, cells_x + 1])
    k = rng.randint(shape, rng.xla_sub_seed(seed, 1), 0, _N_DIRECTIONS - 1)
    g = tf.gather(tf.constant(_DIRECTIONS), k)  # random unit gradients [B, Gy+1, Gx+1, 2]
    phase = (
        tf.cast(
            rng.randint(tf.stack([batch, 2]), rng.xla_sub_seed(seed, 2), 0, _PHASE_STEPS - 1),
            tf.float32,
        )
        / _PHASE_STEPS
    )
    dy = _lattice_offsets(rows, height, exp_y, cells_y, phase[:, 0])  # [B, rows, Gy+1]
    dx = _lattice_offsets(cols, width, exp_x, cells_x, phase[:, 1])  # [B, cols, Gx+1]
    wy, wx = _fade_weight(dy), _fade_weight(dx)
    n = tf.matmul(tf.matmul(wy * dy, g[..., 0]), wx, transpose_b=True)
    n += tf.matmul(tf.matmul(wy, g[..., 1]), wx * dx, transpose_b=True)
    return math.sqrt(2.0) * n


def _random_rotation(batch, seed):
    """float32 ``[B, 2]``: (sin, cos) of a random angle in [0, pi) per image (see :func:`_angle_table`)."""
    k = rng.randint(tf.stack([batch]), seed, 0, _N_ROTATIONS - 1)
    return tf.gather(tf.constant(_ROTATIONS), k)


def _rotate_nearest(canvas, rotation, height, width):
    """The centre ``height x width`` of ``canvas`` [B, R, C], rotated.

    Args:
        canvas: float32 ``[B, R, C]``, large enough to hold the rotated image.
        rotation: float32 ``[B, 2]`` (sin, cos) from :func:`_random_rotation`.
        height, width: static output size.

    Nearest-neighbour sampling (one gather per pixel; the coordinates are
    exact, so compiled and eager code pick the same pixels): the noise is
    smooth at the pixel scale, so this only matters for lattices of 1-2 px
    cells. Neighbouring pixels can sample the same canvas pixel (ties).
    """
    rows, cols = canvas.shape[1], canvas.shape[2]
    batch = tf.shape(canvas)[0]
    sin, cos = rotation[:, 0, None, None], rotation[:, 1, None, None]
    py = tf.range(height, dtype=tf.float32)[None, :, None] + (0.5 - height / 2.0)
    px = tf.range(width, dtype=tf.float32)[None, None, :] + (0.5 - width / 2.0)
    sy = tf.round(cos * py - sin * px + (rows / 2.0 - 0.5))
    sx = tf.round(sin * py + cos * px + (cols / 2.0 - 0.5))
    iy = tf.clip_by_value(tf.cast(sy, tf.int32), 0, rows - 1)
    ix = tf.clip_by_value(tf.cast(sx, tf.int32), 0, cols - 1)
    flat = tf.reshape(canvas, tf.stack([batch, rows * cols]))
    idx = tf.reshape(iy * cols + ix, tf.stack([batch, height * width]))
    return tf.reshape(tf.gather(flat, idx, batch_dims=1), tf.stack([batch, height, width]))


def _fractal(
    height, width, batch, seed, exp_y, exp_x, max_exponent, octaves, persistence, rotation
):
    """Sum of ``octaves`` octaves (resolution x2, amplitude x persistence), in [-1, 1].

    With a ``rotation`` ([B, 2] from :func:`_random_rotation`), the noise is
    drawn on a square canvas the size of the image diagonal and rotated into
    the image.
    """
    if rotation is None:
        rows, cols = height, width
    else:
        rows = cols = int(math.ceil(math.hypot(height, width))) + 2
    total, norm = None, 0.0
    cap = max(0, int(math.floor(math.log2(max(min(height, width), 1)))))
    for o in range(octaves):
        amp = persistence**o
        # Octaves finer than 1 px are clamped to the pixel scale (the lattice stays small).
        top = min(max_exponent + o, max(cap, max_exponent))
        ey = tf.minimum(exp_y + o, top)
        ex = tf.minimum(exp_x + o, top)
        n = _perlin_canvas(
            rows, cols, height, width, batch, rng.xla_sub_seed(seed, 10 + o), ey, ex, top
        )
        total = amp * n if total is None else total + amp * n
        norm += amp
    total = total / norm
    if rotation is not None:
        total = _rotate_nearest(total, rotation, height, width)
    return total


# --------------------------------------------------------------------------- noise and regions


def _lattice_exponents(batch, seed, lo, hi, max_stretch):
    """int32 ``[B, 2]``: per-axis exponents in [lo, hi], at most ``max_stretch`` apart."""
    if max_stretch is None or max_stretch >= hi - lo:
        return rng.randint(tf.stack([batch, 2]), seed, lo, hi)
    ey = rng.randint(tf.stack([batch]), rng.xla_sub_seed(seed, 1), lo, hi)
    x_lo = tf.maximum(ey - max_stretch, lo)
    x_hi = tf.minimum(ey + max_stretch, hi)
    u = rng.xla_uniform(tf.stack([batch]), rng.xla_sub_seed(seed, 2))
    ex = x_lo + tf.minimum(tf.cast(u * tf.cast(x_hi - x_lo + 1, tf.float32), tf.int32), x_hi - x_lo)
    return tf.stack([ey, ex], axis=1)


def _check_stretch(max_stretch):
    if max_stretch is None:
        return None
    if (
        isinstance(max_stretch, bool)
        or not isinstance(max_stretch, (int, np.integer))
        or (max_stretch < 0)
    ):
        raise ValueError(
            f"`max_stretch` must be None or an int >= 0. Received: max_stretch={max_stretch!r}"
        )
    return int(max_stretch)


def perlin_noise(
    shape_hw,
    batch,
    seed,
    *,
    scale_range=(0, 5),
    max_stretch=None,
    octaves=1,
    persistence=0.5,
    rotate=False,
):
    """Batched 2-D gradient (Perlin) noise, as DRAEM uses for its anomaly regions.

    For each image, the lattice resolution is ``2**u`` cells per image side, with
    ``u`` an integer drawn uniformly in ``scale_range`` separately for each axis
    (so the noise can be stretched along one axis), random unit gradients at the
    lattice points, a random sub-cell offset, and Perlin's quintic fade
    ``6t^5 - 15t^4 + 10t^3``. DRAEM's ``2 ** randint(0, 6)`` (exclusive upper
    bound, resolutions 1 to 32) is the default ``scale_range=(0, 5)``.
    Resolutions are relative to the image size, so the noise looks the same at
    any image size.

    All images are computed together, as batched matrix products over one
    shared lattice, so per-image resolutions cost no more than a single one.
    Rotated noise is drawn on a canvas the size of the image diagonal and
    sampled (nearest neighbour) along the rotated pixel grid.

    Args:
        shape_hw: static ``(H, W)``.
        batch: number of images B (an int or a scalar int tensor; 0 allowed).
        seed: int32/int64 tensor of shape ``[2]`` (stateless RNG seed).
        scale_range: inclusive ``(min, max)`` lattice exponent, or one int.
        max_stretch: None (DRAEM: independent exponents per axis, so up to
            32:1 stretched noise), or the largest difference between the two
            exponents (e.g. 2: at most 4:1).
        octaves: number of octaves summed (each doubles the resolution; finer
            than a pixel is clamped to the pixel scale). DRAEM uses 1.
        persistence: amplitude factor from one octave to the next.
        rotate: rotate each image's lattice by a random angle (what DRAEM does
            to the noise before thresholding it).

    Returns:
        float32 ``[B, H, W]`` in [-1, 1] (zero mean; most values within +-0.7).

    Example:
        >>> noise = perlin_noise((128, 128), 16, tf.constant([0, 1]))
    """
    height, width = _check_hw(shape_hw)
    lo, hi = _check_scale_range(scale_range)
    max_stretch = _check_stretch(max_stretch)
    octaves = _check_octaves(octaves)
    persistence = float(persistence)
    if not 0.0 < persistence <= 1.0:
        raise ValueError(f"Expected `persistence` in (0, 1]. Received: persistence={persistence!r}")
    seed = rng.check_seed(seed)
    batch = tf.cast(tf.convert_to_tensor(batch), tf.int32)
    exps = _lattice_exponents(batch, rng.xla_sub_seed(seed, 1), lo, hi, max_stretch)
    rotation = _random_rotation(batch, rng.xla_sub_seed(seed, 2)) if rotate else None
    return _fractal(
        height,
        width,
        batch,
        rng.xla_sub_seed(seed, 3),
        exps[:, 0],
        exps[:, 1],
        hi,
        octaves,
        persistence,
        rotation,
    )


def _top_fraction(noise, area, seed, iterations=14):
    """bool ``[B, H, W]``: the ``k`` largest values of each noise image, ``k / (H W)`` in ``area``.

    The fraction is log-uniform in ``area`` and ``k = max(1, round(fraction * H * W))``.
    The threshold is found by bisection (``iterations`` halvings of the value
    range; several times faster than ``top_k`` on a CPU). The values left in
    the last interval (within about 2e-4 of the threshold, a sub-pixel band of
    smooth noise; also the ties of rotated noise, which repeats pixels) are
    taken in raster order until exactly ``k`` pixels are marked.
    """
    height, width = noise.shape[1], noise.shape[2]
    n = height * width
    batch = tf.shape(noise)[0]
    lo_a, hi_a = area
    u = rng.xla_uniform(tf.stack([batch]), seed)
    frac = tf.exp(math.log(lo_a) + u * (math.log(hi_a) - math.log(lo_a)))
    k = tf.clip_by_value(tf.round(frac * n), 1.0, float(max(1, math.ceil(hi_a * n))))
    flat = tf.reshape(noise, tf.stack([batch, n]))
    lo = tf.reduce_min(flat, axis=1)  # count(x >= lo) >= k
    hi = tf.reduce_max(flat, axis=1) + 1.0  # count(x >= hi) < k

    def halve(i, lo, hi):
        mid = 0.5 * (lo + hi)
        enough = tf.reduce_sum(tf.cast(flat >= mid[:, None], tf.float32), axis=1) >= k
        return i + 1, tf.where(enough, mid, lo), tf.where(enough, hi, mid)

    _, lo, hi = tf.while_loop(
        lambda i, lo, hi: i < iterations,
        halve,
        (tf.constant(0), lo, hi),
        maximum_iterations=iterations,
    )
    above = flat >= hi[:, None]
    tied = (flat >= lo[:, None]) & ~above
    rank = tf.cumsum(tf.cast(tied, tf.float32), axis=1)
    room = k - tf.reduce_sum(tf.cast(above, tf.float32), axis=1)
    top = above | (tied & (rank <= room[:, None]))
    return tf.reshape(top, tf.shape(noise))


def perlin_mask(
    shape_hw,
    batch,
    seed,
    *,
    area=(0.005, 0.15),
    scale_range=(0, 4),
    max_stretch=2,
    octaves=1,
    rotate=True,
):
    """Binary anomaly regions: thresholded, randomly rotated Perlin noise.

    DRAEM thresholds rotated Perlin noise at a fixed level, so the area is
    uncontrolled (often empty). Here the threshold is a per-image quantile
    instead: the region is the top ``a`` fraction of the noise, with ``a`` drawn
    log-uniformly in ``area`` (as many small as large regions per decade), so
    every mask has an area in the range, with no retries. Low resolutions give
    one or a few blobs, high resolutions many scattered specks, stretched
    resolutions streaks.

    Args:
        shape_hw: static ``(H, W)``.
        batch: number of images B (an int or a scalar int tensor; 0 allowed).
        seed: int32/int64 tensor of shape ``[2]``.
        area: inclusive ``(min, max)`` fraction of the image covered, in (0, 1].
            Exactly ``max(1, round(a * H * W))`` pixels are marked.
        scale_range: inclusive ``(min, max)`` lattice exponent (see
            :func:`perlin_noise`).
        max_stretch: largest difference between the two axes' exponents
            (None: independent, as DRAEM). The default 2 (at most 4:1
            stretched noise) keeps long thin streaks, which in DRAEM make up a
            third of the regions, to a minority (thin lines are
            :class:`~keras_skipae.data.corruptions.Scratches`' job).
        octaves: octaves of the noise (DRAEM: 1).
        rotate: rotate the noise by a random angle per image (DRAEM: yes).

    Returns:
        float32 ``[B, H, W, 1]`` in {0, 1}.

    Example:
        >>> m = perlin_mask((256, 256), 8, tf.constant([0, 1]), area=(0.01, 0.1))
    """
    height, width = _check_hw(shape_hw)
    area = _check_area(area)
    seed = rng.check_seed(seed)
    noise = perlin_noise(
        (height, width),
        batch,
        rng.xla_sub_seed(seed, 1),
        scale_range=scale_range,
        max_stretch=max_stretch,
        octaves=octaves,
        rotate=rotate,
    )
    region = _top_fraction(noise, area, rng.xla_sub_seed(seed, 2))
    return tf.cast(region, tf.float32)[..., None]
