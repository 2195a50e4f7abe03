"""Synthetic corruptions for corrupt-and-repair training, in pure TF ops.

Every corruption is a plain Python object with

* ``__call__(images, seed) -> (corrupted, target, mask)``: ``images`` a float32
  batch ``[B, H, W, C]`` in [0, 1], ``seed`` an int32/int64 tensor of shape ``[2]``
  (stateless RNG seed, as ``tf.random.stateless_*`` takes it). ``target`` is the
  image the model must reconstruct (the clean image, except for
  :class:`NoiseOnTop`, which changes the target too). ``mask`` is float32
  ``[B, H, W, 1]`` in {0, 1} and marks the pixels where ``corrupted`` differs
  from ``target`` because of the corruption (the pixels the model must repair).
* ``get_config()`` -> a plain dict of constructor arguments (JSON-serialisable),
  and ``from_config(config)``; :func:`serialize` / :func:`deserialize` handle
  nested corruptions, so a training config can be saved as JSON.

Everything is vectorised over the batch (no per-image Python loop, no
``tf.py_function``, no NumPy at call time), so the corruptions run inside
``Dataset.map``, inside a train step on a GPU, and under
``tf.function(jit_compile=True)``. Image height and width must be static.

The stain model is the one of Collin & De Vleeschouwer, *Improved anomaly
detection by training an autoencoder with skip connections on images corrupted
with stain-shaped noise*, ICPR 2020 (arXiv 2008.12977). :class:`NoiseOnTop` is the
identity-anchoring regulariser of Bauer & Müller (arXiv 2511.07233).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "Corruption",
    "Stains",
    "GaussianNoise",
    "Scratches",
    "Drops",
    "NoiseOnTop",
    "Compose",
    "OneOf",
    "serialize",
    "deserialize",
    "get",
    "corrupt",
]


# --------------------------------------------------------------------------- helpers


def _as_range(value, name, *, integer=False, low=None, high=None):
    """Validates a number or a (min, max) pair; returns a (min, max) tuple."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        lo = hi = value
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        lo, hi = value
    else:
        raise ValueError(
            f"`{name}` must be a number or a (min, max) pair. Received: {name}={value!r}"
        )
    try:
        lo, hi = (int(lo), int(hi)) if integer else (float(lo), float(hi))
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must hold numbers. Received: {name}={value!r}") from None
    if lo > hi or (low is not None and lo < low) or (high is not None and hi > high):
        bounds = f" within [{low}, {high}]" if low is not None or high is not None else ""
        raise ValueError(
            f"`{name}` must be a (min, max) pair with min <= max{bounds}. "
            f"Received: {name}={value!r}"
        )
    return (lo, hi)


def _config_value(rng):
    """A (min, max) range as JSON: a single number when min == max."""
    lo, hi = rng
    return lo if lo == hi else [lo, hi]


def _check_images(images):
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    if images.shape.rank != 4:
        raise ValueError(
            "Corruptions take a batch of images [B, H, W, C]. "
            f"Received a tensor of shape {images.shape}"
        )
    if images.shape[1] is None or images.shape[2] is None or images.shape[3] is None:
        raise ValueError(
            "Corruptions need a static image height, width and channel count. "
            f"Received a tensor of shape {images.shape}"
        )
    return images


def _check_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    if seed.shape.rank != 1 or seed.shape[0] not in (None, 2):
        raise ValueError(
            f"`seed` must be an integer tensor of shape [2]. Received shape {seed.shape}"
        )
    return seed


def _sub_seed(seed, i):
    return tf.random.experimental.stateless_fold_in(seed, i)


def _uniform(shape, seed, lo, hi, dtype=tf.float32):
    if lo == hi:
        return tf.fill(shape, tf.constant(lo, dtype))
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi, dtype=dtype)


def _randint(shape, seed, lo, hi):
    """Uniform integers in [lo, hi] (inclusive)."""
    if lo == hi:
        return tf.fill(shape, tf.constant(lo, tf.int32))
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi + 1, dtype=tf.int32)


def _changed_mask(a, b):
    """float32 [B, H, W, 1]: 1 where any channel of a and b differ."""
    return tf.cast(tf.reduce_any(tf.not_equal(a, b), axis=-1, keepdims=True), tf.float32)


@functools.lru_cache(maxsize=16)
def _periodic_spline_matrix(n_points: int, samples_per_segment: int) -> np.ndarray:
    """Matrix [M, N] evaluating the periodic (closed) interpolating cubic spline.

    The spline through ``N`` control values with uniform knots is linear in the
    values, so sampling it ``samples_per_segment`` times per segment is a
    constant matrix product. Row ``m`` gives the curve at parameter
    ``m / samples_per_segment`` (in units of the control-point spacing).
    """
    n, s = n_points, samples_per_segment
    # Second derivatives M solve  M[i-1] + 4 M[i] + M[i+1] = 6 (y[i-1] - 2 y[i] + y[i+1]).
    eye = np.eye(n)
    a = 4 * eye + np.roll(eye, 1, axis=1) + np.roll(eye, -1, axis=1)
    d2 = 6 * (np.roll(eye, 1, axis=1) - 2 * eye + np.roll(eye, -1, axis=1))
    second = np.linalg.solve(a, d2)  # [N, N]: second derivatives from values
    rows = []
    for i in range(n):
        j = (i + 1) % n
        for k in range(s):
            u = k / s
            row = np.zeros(n)
            row[i] += 1 - u
            row[j] += u
            row += ((1 - u) ** 3 - (1 - u)) / 6 * second[i] + (u**3 - u) / 6 * second[j]
            rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def _fill_closed_curves(ys, xs, height, width, max_rows=None):
    """Even-odd fill of closed polygons, one per row of ``ys``/``xs``.

    Args:
        ys, xs: float32 ``[N, M]`` vertex coordinates (pixel centres are the
            integers ``0..height-1`` / ``0..width-1``); polygon ``n`` is closed.
        height, width: static size of the output grid.
        max_rows: static bound on the pixel rows one edge crosses (None: any).
            With a bound, only ``N * M * max_rows`` (edge, row) pairs are
            examined instead of ``N * M * height``.

    Returns:
        float32 ``[N, height, width]`` in {0, 1}: 1 where the pixel centre is
        inside the polygon (even-odd rule, as a scanline fill).

    Edge (a, b) crosses the rows r with min(ya, yb) <= r < max(ya, yb) (the
    half-open rule counts shared vertices once). Crossings are histogrammed per
    row and column (a segment sum), and a cumulative sum along x gives, for every
    pixel, the number of edges to its left.
    """
    ya, xa = ys, xs
    yb, xb = tf.roll(ys, -1, axis=-1), tf.roll(xs, -1, axis=-1)
    lo, hi = tf.minimum(ya, yb), tf.maximum(ya, yb)
    dy = yb - ya
    slope = (xb - xa) / tf.where(tf.equal(dy, 0.0), tf.ones_like(dy), dy)
    if max_rows is None:
        rows = tf.range(height, dtype=tf.float32)[None, None, :]  # [1, 1, R]
    else:
        rows = tf.math.ceil(lo)[..., None] + tf.range(max_rows, dtype=tf.float32)  # [N, M, R]
    crosses = (rows >= lo[..., None]) & (rows < hi[..., None]) & (rows < height) & (rows >= 0)
    x_cross = xa[..., None] + (rows - ya[..., None]) * slope[..., None]
    # A crossing at x counts for every pixel centre c > x, i.e. c >= floor(x) + 1.
    col = tf.cast(tf.clip_by_value(tf.math.floor(x_cross) + 1.0, 0.0, float(width)), tf.int32)
    row = tf.cast(tf.clip_by_value(rows, 0.0, height - 1.0), tf.int32)
    n = tf.shape(ys)[0]
    bins = n * height * (width + 1)
    base = tf.reshape(tf.range(n, dtype=tf.int32) * (height * (width + 1)), [-1, 1, 1])
    seg = tf.where(crosses, base + row * (width + 1) + col, bins)  # non-crossings: dump bin
    hist = tf.math.unsorted_segment_sum(tf.cast(crosses, tf.float32), seg, num_segments=bins + 1)
    hist = tf.reshape(hist[:bins], [n, height, width + 1])[:, :, :width]
    count = tf.cumsum(hist, axis=-1)
    return tf.math.floormod(count, 2.0)


def _gaussian_matrix(sigma, size):
    """[..., size, size] 'same' Gaussian filtering matrices with zero padding.

    ``sigma`` has any batch shape; the kernel is truncated at 3 sigma and
    normalised to sum 1 over its full support (so weight leaks out at borders,
    as with zero padding).
    """
    sigma = tf.maximum(sigma, 1e-3)[..., None, None]
    idx = tf.range(size, dtype=tf.float32)
    d = idx[:, None] - idx[None, :]
    g = tf.exp(-0.5 * tf.square(d) / tf.square(sigma))
    g = tf.where(tf.abs(d) <= 3.0 * sigma, g, 0.0)
    full = tf.range(-size, size + 1, dtype=tf.float32)
    z = tf.reduce_sum(
        tf.where(
            tf.abs(full) <= 3.0 * sigma, tf.exp(-0.5 * tf.square(full) / tf.square(sigma)), 0.0
        ),
        axis=-1,
        keepdims=True,
    )
    return g / z


def _patch_rows_cols(y0, x0, ph, pw, height, width):
    """Row / column indices of the patches at (y0, x0), and their validity in the image."""
    ry = tf.range(height)[None, :] - y0[:, None]  # [B, H]: patch row of each image row
    rx = tf.range(width)[None, :] - x0[:, None]
    in_y = (ry >= 0) & (ry < ph)
    in_x = (rx >= 0) & (rx < pw)
    return tf.where(in_y, ry, 0), tf.where(in_x, rx, 0), in_y, in_x


def _extract_patches(images, y0, x0, ph, pw):
    """[B, ph, pw, C] patches of ``images`` at (y0, x0) (inside the image), by two gathers."""
    rows = tf.gather(images, y0[:, None] + tf.range(ph)[None, :], axis=1, batch_dims=1)
    return tf.gather(rows, x0[:, None] + tf.range(pw)[None, :], axis=2, batch_dims=1)


def _paste_patches(images, patches, y0, x0):
    """``images`` with ``patches`` [B, ph, pw, C] written at (y0, x0) (inside the image).

    Two batched gathers (image rows from patch rows, then columns after a
    transpose) and one select, instead of a scatter: TF's CPU scatter kernels
    cost several times more, and gathers are XLA- and GPU-friendly.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    ph, pw = patches.shape[1], patches.shape[2]
    ry, rx, in_y, in_x = _patch_rows_cols(y0, x0, ph, pw, height, width)
    b = tf.shape(patches)[0]
    if channels == 1:
        p = patches[..., 0]
    else:  # channels next to the batch: [B * C, ph, pw]
        p = tf.reshape(tf.transpose(patches, [0, 3, 1, 2]), [-1, ph, pw])
        ry, rx = tf.repeat(ry, channels, axis=0), tf.repeat(rx, channels, axis=0)
    rows = tf.gather(p, ry, axis=1, batch_dims=1)  # [B', H, pw]
    cols = tf.gather(tf.transpose(rows, [0, 2, 1]), rx, axis=1, batch_dims=1)  # [B', W, H]
    full = tf.transpose(cols, [0, 2, 1])
    if channels == 1:
        full = full[..., None]
    else:
        full = tf.transpose(tf.reshape(full, tf.stack([b, channels, height, width])), [0, 2, 3, 1])
    region = (in_y[:, :, None] & in_x[:, None, :])[..., None]
    return tf.where(region, full, images)


def _stamp_ids(shape, py, px, radius, active, footprint):
    """Rasterises discs into an object-id map, vectorised over batch and objects.

    Args:
        shape: static (H, W).
        py, px: float32 ``[B, K, S]`` disc centres (K objects of S discs each).
        radius: float32 ``[B, K, S]`` or broadcastable: disc radii in pixels.
        active: bool ``[B, K]``: objects to draw.
        footprint: static int F: each disc covers at most the (2F+1)^2 pixels
            around its nearest pixel.

    Returns:
        int32 ``[B, H, W]``: 0 for background, else 1 + the index of the last
        object (highest k) covering the pixel. A disc always covers its nearest
        pixel, so radii below 0.5 px still draw 1-px-wide lines.
    """
    height, width = shape
    b = tf.shape(py)[0]
    k, s = py.shape[1], py.shape[2]
    off = tf.range(-footprint, footprint + 1, dtype=tf.float32)
    oy = tf.reshape(off, [1, 1, 1, -1, 1])
    ox = tf.reshape(off, [1, 1, 1, 1, -1])
    cy = tf.round(py)[..., None, None]
    cx = tf.round(px)[..., None, None]
    yy, xx = cy + oy, cx + ox  # [B, K, S, F', F']
    dist2 = tf.square(yy - py[..., None, None]) + tf.square(xx - px[..., None, None])
    radius = tf.broadcast_to(radius, tf.shape(py))[..., None, None]
    inside = (dist2 <= tf.square(radius)) | ((tf.equal(oy, 0.0)) & (tf.equal(ox, 0.0)))
    inside &= (yy >= 0) & (yy <= height - 1) & (xx >= 0) & (xx <= width - 1)
    inside &= active[:, :, None, None, None]
    ids = tf.reshape(tf.range(1, k + 1, dtype=tf.int32), [1, k, 1, 1, 1])
    updates = tf.where(inside, ids, 0)
    yi = tf.cast(tf.clip_by_value(yy, 0, height - 1), tf.int32)
    xi = tf.cast(tf.clip_by_value(xx, 0, width - 1), tf.int32)
    full = tf.shape(updates)
    bi = tf.broadcast_to(tf.reshape(tf.range(b), [-1, 1, 1, 1, 1]), full)
    yi = tf.broadcast_to(yi, full)
    xi = tf.broadcast_to(xi, full)
    idx = tf.reshape(tf.stack([bi, yi, xi], axis=-1), [-1, 3])
    del s
    return tf.tensor_scatter_nd_max(
        tf.zeros([b, height, width], tf.int32), idx, tf.reshape(updates, [-1])
    )


def _paint_ids(images, ids, values):
    """Paints object values over ``images`` where ``ids`` > 0.

    Args:
        images: float32 [B, H, W, C].
        ids: int32 [B, H, W] from :func:`_stamp_ids`.
        values: float32 [B, K, C'] with C' in (1, C): the colour of each object.

    Returns:
        (painted images, float32 mask [B, H, W, 1]).
    """
    sel = tf.maximum(ids - 1, 0)
    colour = tf.gather(values, sel, batch_dims=1)  # [B, H, W, C']
    on = (ids > 0)[..., None]
    painted = tf.where(on, colour, images)
    return painted, tf.cast(on, tf.float32)


# --------------------------------------------------------------------------- base class


class Corruption:
    """Base class: ``__call__(images, seed) -> (corrupted, target, mask)``.

    Subclasses implement ``apply(images, target, seed)``, which corrupts
    ``images`` (and, for corruptions that change it, ``target``), so that
    corruptions chain in :class:`Compose`. ``mask`` marks the pixels this
    corruption made differ from the target.
    """

    def __call__(self, images, seed):
        """Corrupts a batch.

        Args:
            images: float32 ``[B, H, W, C]`` in [0, 1] (H, W, C static).
            seed: int32/int64 tensor of shape ``[2]``.

        Returns:
            ``(corrupted, target, mask)``: two float32 ``[B, H, W, C]`` tensors and
            a float32 ``[B, H, W, 1]`` mask in {0, 1}.
        """
        images = _check_images(images)
        seed = _check_seed(seed)
        return self.apply(images, images, seed)

    def apply(self, images, target, seed):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


# --------------------------------------------------------------------------- stains


class Stains(Corruption):
    """Irregular grey stains: the corruption of AESc (Collin & De Vleeschouwer, ICPR 2020).

    For each stain:

    * semi-axes ``a, b`` uniform in ``size`` (fractions of the image side,
      ``min(H, W)``); rotation uniform in [0, 2 pi); centre uniform among the
      positions at least ``max(a, b)`` from every border;
    * ``n_points`` points on the ellipse, each moved by up to
      ``±jitter * (a + b) / 2`` in x and y, joined by the closed interpolating
      cubic spline (periodic, uniform knots; ``samples_per_segment`` samples per
      segment), filled with the even-odd rule (a scanline fill, like
      ``cv2.fillPoly``);
    * fill value: a grey level uniform in ``grey`` plus Gaussian noise of std
      ``noise_std``, clipped to [0, 1]. The same value in every channel unless
      ``color=True`` (then one grey level and one noise field per channel);
    * optional edge blur: the mask is filtered with a Gaussian of
      ``sigma = blur * max(a, b)``;
    * blend ``x * (1 - m) + stain * m``.

    The returned mask is exactly the set of pixels whose value changed (any
    channel). Without blur that is the filled outline (a pixel inside keeps its
    value only if the stain value equals it to float precision). With blur,
    blend weights below ``min_weight`` (default 1/255) are set to 0 first, so
    the mask ends where the stain becomes invisible.

    The outline is filled on a patch of static size around each stain (about
    ``2.7 * size[1]`` of the side), taken from and written back into the batch
    with gathers, so most of the work does not grow with the image size.

    Args:
        count: stains per image: an int, or an inclusive (min, max) range drawn
            per image. Default 1, as in the paper.
        size: (min, max) semi-axis length as a fraction of the image side.
        grey: (min, max) fill grey level in [0, 1]. Default [10, 220] / 255.
        noise_std: std of the Gaussian noise added to the fill.
        n_points: number of outline points on the ellipse.
        jitter: maximum displacement of each point, in units of (a + b) / 2.
        blur: edge blur, sigma = blur * max(a, b). 0 disables it.
        color: draw one random grey level per channel (a colour) instead of
            the same grey in every channel.
        samples_per_segment: spline samples between two outline points.
        min_weight: blend weights below this are set to 0 (only with blur).

    Example:
        >>> stains = Stains(count=(1, 3))
        >>> corrupted, target, mask = stains(images, seed=tf.constant([0, 1]))
    """

    def __init__(
        self,
        count=1,
        size=(0.01, 0.12),
        grey=(10 / 255, 220 / 255),
        noise_std=0.014,
        n_points=20,
        jitter=0.1,
        blur=0.0,
        color=False,
        samples_per_segment=4,
        min_weight=1 / 255,
    ):
        self.count = _as_range(count, "count", integer=True, low=0)
        self.size = _as_range(size, "size", low=0.0, high=0.5)
        self.grey = _as_range(grey, "grey", low=0.0, high=1.0)
        if noise_std < 0:
            raise ValueError(f"`noise_std` must be >= 0. Received: noise_std={noise_std!r}")
        if int(n_points) < 3:
            raise ValueError(f"`n_points` must be >= 3. Received: n_points={n_points!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"`jitter` must be in [0, 1]. Received: jitter={jitter!r}")
        if blur < 0:
            raise ValueError(f"`blur` must be >= 0. Received: blur={blur!r}")
        if int(samples_per_segment) < 1:
            raise ValueError(
                "`samples_per_segment` must be >= 1. "
                f"Received: samples_per_segment={samples_per_segment!r}"
            )
        self.noise_std = float(noise_std)
        self.n_points = int(n_points)
        self.jitter = float(jitter)
        self.blur = float(blur)
        self.color = bool(color)
        self.samples_per_segment = int(samples_per_segment)
        self.min_weight = float(min_weight)

    def get_config(self):
        return {
            "count": _config_value(self.count),
            "size": list(self.size),
            "grey": list(self.grey),
            "noise_std": self.noise_std,
            "n_points": self.n_points,
            "jitter": self.jitter,
            "blur": self.blur,
            "color": self.color,
            "samples_per_segment": self.samples_per_segment,
            "min_weight": self.min_weight,
        }

    def patch_size(self, height: int, width: int) -> tuple[int, int]:
        """Static (ph, pw) of the patch that holds one stain of an H x W image."""
        side = min(height, width)
        r = self.size[1] * side
        # ellipse + point jitter + spline overshoot + blur support, plus a pixel.
        # (measured over 80,000 stains: the outline stays within 1.16 max(a, b))
        extent = r * (1.0 + self.jitter * math.sqrt(2.0)) * 1.1 + 3.0 * self.blur * r + 2.0
        p = 2 * int(math.ceil(extent)) + 1
        return min(p, height), min(p, width)

    def sample_parameters(self, batch_size, image_shape, seed):
        """Draws the stain parameters of a batch (what ``__call__`` uses).

        Args:
            batch_size: B (int or scalar tensor).
            image_shape: static (H, W) or (H, W, C).
            seed: int tensor of shape [2] (the seed given to ``__call__``).

        Returns:
            A dict of float32 ``[B, K]`` tensors (K = the maximum count): ``a``,
            ``b`` (semi-axes, pixels), ``theta``, ``cy``, ``cx`` (centre, pixels),
            ``grey`` (``[B, K, C']``), ``active`` (bool: stain k is drawn), and
            ``count`` (int32 ``[B]``).
        """
        seed = _check_seed(seed)
        height, width = int(image_shape[0]), int(image_shape[1])
        channels = int(image_shape[2]) if len(image_shape) > 2 else 1
        side = float(min(height, width))
        k = max(self.count[1], 1)
        shape = tf.stack([tf.cast(batch_size, tf.int32), k])
        a = _uniform(shape, _sub_seed(seed, 1), self.size[0] * side, self.size[1] * side)
        b = _uniform(shape, _sub_seed(seed, 2), self.size[0] * side, self.size[1] * side)
        theta = _uniform(shape, _sub_seed(seed, 3), 0.0, 2.0 * math.pi)
        r = tf.maximum(a, b)
        u = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), _sub_seed(seed, 4))
        lo_y = tf.minimum(r, (height - 1) / 2.0)
        lo_x = tf.minimum(r, (width - 1) / 2.0)
        cy = lo_y + u[..., 0] * (height - 1 - 2.0 * lo_y)
        cx = lo_x + u[..., 1] * (width - 1 - 2.0 * lo_x)
        cgrey = channels if self.color else 1
        grey = _uniform(tf.concat([shape, [cgrey]], 0), _sub_seed(seed, 5), *self.grey)
        count = _randint(shape[:1], _sub_seed(seed, 6), *self.count)
        active = tf.range(k)[None, :] < count[:, None]
        return {
            "a": a,
            "b": b,
            "theta": theta,
            "cy": cy,
            "cx": cx,
            "grey": grey,
            "active": active,
            "count": count,
        }

    def outline(self, params, seed):
        """Dense outline [B, K, M] (y, x) of the stains described by ``params``."""
        a, b, theta = params["a"], params["b"], params["theta"]
        n = self.n_points
        t = tf.constant(np.linspace(0.0, 2.0 * np.pi, n, endpoint=False), tf.float32)
        ex = a[..., None] * tf.cos(t)
        ey = b[..., None] * tf.sin(t)
        cos, sin = tf.cos(theta)[..., None], tf.sin(theta)[..., None]
        j = (self.jitter * (a + b) / 2.0)[..., None]
        d = tf.random.stateless_uniform(
            tf.concat([tf.shape(a), [n, 2]], 0), _sub_seed(seed, 7), -1.0, 1.0
        )
        px = ex * cos - ey * sin + j * d[..., 0]
        py = ex * sin + ey * cos + j * d[..., 1]
        mat = tf.constant(_periodic_spline_matrix(n, self.samples_per_segment))  # [M, N]
        dense_x = tf.einsum("mn,bkn->bkm", mat, px) + params["cx"][..., None]
        dense_y = tf.einsum("mn,bkn->bkm", mat, py) + params["cy"][..., None]
        return dense_y, dense_x

    def apply(self, images, target, seed):
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        bsz = tf.shape(images)[0]
        k = max(self.count[1], 1)
        ph, pw = self.patch_size(height, width)
        params = self.sample_parameters(bsz, (height, width, channels), seed)
        dense_y, dense_x = self.outline(params, seed)
        # Patch origins: centred on the stain, clamped inside the image.
        y0 = tf.clip_by_value(tf.cast(tf.round(params["cy"]), tf.int32) - ph // 2, 0, height - ph)
        x0 = tf.clip_by_value(tf.cast(tf.round(params["cx"]), tf.int32) - pw // 2, 0, width - pw)
        qy = tf.reshape(dense_y - tf.cast(y0, tf.float32)[..., None], [bsz * k, -1])
        qx = tf.reshape(dense_x - tf.cast(x0, tf.float32)[..., None], [bsz * k, -1])
        # Filled in transposed layout [x, y], the layout the patches are written in.
        m = _fill_closed_curves(qx, qy, pw, ph, max_rows=self._max_rows(height, width))
        if self.blur > 0:
            sigma = tf.reshape(self.blur * tf.maximum(params["a"], params["b"]), [-1])
            gx = _gaussian_matrix(sigma, pw)
            gy = _gaussian_matrix(sigma, ph)
            m = tf.matmul(tf.matmul(gx, m), gy, transpose_b=True)
            m = tf.where(m >= self.min_weight, tf.minimum(m, 1.0), 0.0)
        m = (
            tf.reshape(m, [bsz, k, pw, ph, 1])
            * tf.cast(params["active"], tf.float32)[:, :, None, None, None]
        )
        cnoise = channels if self.color else 1
        noise = self.noise_std * tf.random.stateless_normal(
            tf.stack([bsz, k, pw, ph, cnoise]), _sub_seed(seed, 8)
        )
        stain = tf.clip_by_value(params["grey"][:, :, None, None, :] + noise, 0.0, 1.0)
        out, mask = images, None
        bidx = tf.range(bsz)[:, None]
        for i in range(k):  # static loop over the (small) maximum stain count
            # The rows holding the patch, transposed, then the patch columns in them:
            # slice gathers and slice scatters only (cheap on CPU, XLA- and GPU-friendly).
            yi = y0[:, i, None] + tf.range(ph)[None, :]  # [B, ph]
            xi = x0[:, i, None] + tf.range(pw)[None, :]  # [B, pw]
            idx_y = tf.stack([tf.broadcast_to(bidx, tf.shape(yi)), yi], axis=-1)
            idx_x = tf.stack([tf.broadcast_to(bidx, tf.shape(xi)), xi], axis=-1)
            rows_t = tf.transpose(tf.gather(out, yi, axis=1, batch_dims=1), [0, 2, 1, 3])
            old = tf.gather(rows_t, xi, axis=1, batch_dims=1)  # [B, pw, ph, C]
            mi = m[:, i]
            new = old * (1.0 - mi) + stain[:, i] * mi
            rows_t = tf.tensor_scatter_nd_update(rows_t, idx_x, new)
            out = tf.tensor_scatter_nd_update(out, idx_y, tf.transpose(rows_t, [0, 2, 1, 3]))
            if k == 1:  # the changed pixels, computed on the patch and placed likewise
                changed = _changed_mask(new, old)
                mrows = tf.scatter_nd(idx_x, changed, tf.stack([bsz, width, ph, 1]))
                mask = tf.scatter_nd(
                    idx_y, tf.transpose(mrows, [0, 2, 1, 3]), tf.stack([bsz, height, width, 1])
                )
        if mask is None:
            mask = _changed_mask(out, images)
        return out, target, mask

    def _max_rows(self, height, width):
        """Static bound on the pixel rows one outline segment crosses (see ``outline``)."""
        r = self.size[1] * min(height, width)
        # Measured: segments span at most 0.15 r (4 samples per segment, jitter 0.1).
        per_segment = r * (1.0 + 2.0 * self.jitter) * 0.2 * 4.0 / self.samples_per_segment
        return int(math.ceil(per_segment)) + 2


# --------------------------------------------------------------------------- other corruptions


class GaussianNoise(Corruption):
    """Additive Gaussian noise on the input only (the target stays clean).

    Args:
        std: noise std, a number or a (min, max) range drawn per image.
        clip: clip the result to [0, 1].

    The mask marks the pixels that changed (almost all of them).

    Example:
        >>> corrupted, target, mask = GaussianNoise(0.1)(images, tf.constant([0, 0]))
    """

    def __init__(self, std=0.1, clip=True):
        self.std = _as_range(std, "std", low=0.0)
        self.clip = bool(clip)

    def get_config(self):
        return {"std": _config_value(self.std), "clip": self.clip}

    def _noise(self, images, seed):
        """Gaussian noise shaped like ``images``, with a std drawn per image."""
        bsz = tf.shape(images)[0]
        std = _uniform(tf.stack([bsz]), _sub_seed(seed, 1), *self.std)[:, None, None, None]
        return std * tf.random.stateless_normal(tf.shape(images), _sub_seed(seed, 2))

    def apply(self, images, target, seed):
        out = images + self._noise(images, seed)
        if self.clip:
            out = tf.clip_by_value(out, 0.0, 1.0)
        return out, target, _changed_mask(out, images)


class NoiseOnTop(GaussianNoise):
    """Gaussian noise added to both the input and the target ("noise kept on top").

    The identity-anchoring regulariser of Bauer & Müller (arXiv 2511.07233): the
    network must reproduce the noise rather than remove it, which keeps it close
    to the identity on normal content. The same noise is added to input and
    target, so this corruption alone gives an all-zero mask. Combine it with
    :class:`Stains` in :class:`Compose` (stains first).

    Args:
        std: noise std, a number or a (min, max) range drawn per image.
        clip: clip both results to [0, 1].

    Example:
        >>> c = Compose([Stains(), NoiseOnTop(0.02)])
    """

    def __init__(self, std=0.02, clip=True):
        super().__init__(std=std, clip=clip)

    def apply(self, images, target, seed):
        noise = self._noise(images, seed)
        out, tgt = images + noise, target + noise
        if self.clip:
            out = tf.clip_by_value(out, 0.0, 1.0)
            tgt = tf.clip_by_value(tgt, 0.0, 1.0)
        return out, tgt, tf.zeros_like(images[..., :1])


class Scratches(Corruption):
    """Thin curved lines (quadratic Bézier curves) of a random grey level.

    Args:
        count: scratches per image, an int or an inclusive (min, max) range.
        length: (min, max) chord length as a fraction of the image side.
        width: (min, max) line width in pixels (at most 7).
        curvature: maximum sideways offset of the control point, in units of the length.
        grey: (min, max) grey level of each scratch.
        color: one grey level per channel instead of the same in every channel.

    The mask is exactly the painted pixels (a painted pixel keeps its value
    only if the grey level equals it to float precision).

    Example:
        >>> corrupted, target, mask = Scratches(count=(1, 3))(images, tf.constant([0, 0]))
    """

    def __init__(
        self,
        count=(1, 3),
        length=(0.1, 0.5),
        width=(1.0, 3.0),
        curvature=0.3,
        grey=(0.0, 1.0),
        color=False,
    ):
        self.count = _as_range(count, "count", integer=True, low=0)
        self.length = _as_range(length, "length", low=0.0, high=2.0)
        self.width = _as_range(width, "width", low=0.0, high=7.0)
        self.curvature = float(curvature)
        self.grey = _as_range(grey, "grey", low=0.0, high=1.0)
        self.color = bool(color)

    def get_config(self):
        return {
            "count": _config_value(self.count),
            "length": list(self.length),
            "width": list(self.width),
            "curvature": self.curvature,
            "grey": list(self.grey),
            "color": self.color,
        }

    def apply(self, images, target, seed):
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        side = float(min(height, width))
        bsz = tf.shape(images)[0]
        k = max(self.count[1], 1)
        shape = tf.stack([bsz, k])
        n_samples = int(math.ceil(self.length[1] * side * 1.5 * 2)) + 2  # <= 0.5 px apart
        u = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), _sub_seed(seed, 1))
        p0y, p0x = u[..., 0] * (height - 1), u[..., 1] * (width - 1)
        angle = _uniform(shape, _sub_seed(seed, 2), 0.0, 2 * math.pi)
        length = _uniform(shape, _sub_seed(seed, 3), self.length[0] * side, self.length[1] * side)
        bend = _uniform(shape, _sub_seed(seed, 4), -self.curvature, self.curvature) * length
        p2y, p2x = p0y + length * tf.sin(angle), p0x + length * tf.cos(angle)
        p1y = (p0y + p2y) / 2 + bend * tf.cos(angle)
        p1x = (p0x + p2x) / 2 - bend * tf.sin(angle)
        t = tf.linspace(0.0, 1.0, n_samples)[None, None, :]
        w0, w1, w2 = (1 - t) ** 2, 2 * t * (1 - t), t**2
        py = w0 * p0y[..., None] + w1 * p1y[..., None] + w2 * p2y[..., None]
        px = w0 * p0x[..., None] + w1 * p1x[..., None] + w2 * p2x[..., None]
        lw = _uniform(shape, _sub_seed(seed, 5), *self.width)
        count = _randint(shape[:1], _sub_seed(seed, 6), *self.count)
        active = tf.range(k)[None, :] < count[:, None]
        footprint = int(math.ceil(self.width[1] / 2))
        ids = _stamp_ids((height, width), py, px, (lw / 2)[..., None], active, footprint)
        cg = channels if self.color else 1
        grey = _uniform(tf.concat([shape, [cg]], 0), _sub_seed(seed, 7), *self.grey)
        out, mask = _paint_ids(images, ids, grey)
        return out, target, mask


class Drops(Corruption):
    """Several small filled discs ("drops") of random grey levels.

    Args:
        count: drops per image, an int or an inclusive (min, max) range.
        radius: (min, max) radius as a fraction of the image side.
        grey: (min, max) grey level of each drop.
        noise_std: Gaussian noise added to the drop fill.
        color: one grey level per channel instead of the same in every channel.

    Example:
        >>> corrupted, target, mask = Drops(count=(3, 8))(images, tf.constant([0, 0]))
    """

    def __init__(
        self, count=(3, 8), radius=(0.005, 0.03), grey=(0.0, 1.0), noise_std=0.014, color=False
    ):
        self.count = _as_range(count, "count", integer=True, low=0)
        self.radius = _as_range(radius, "radius", low=0.0, high=0.5)
        self.grey = _as_range(grey, "grey", low=0.0, high=1.0)
        self.noise_std = float(noise_std)
        self.color = bool(color)

    def get_config(self):
        return {
            "count": _config_value(self.count),
            "radius": list(self.radius),
            "grey": list(self.grey),
            "noise_std": self.noise_std,
            "color": self.color,
        }

    def apply(self, images, target, seed):
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        side = float(min(height, width))
        bsz = tf.shape(images)[0]
        k = max(self.count[1], 1)
        shape = tf.stack([bsz, k])
        rad = _uniform(shape, _sub_seed(seed, 1), self.radius[0] * side, self.radius[1] * side)
        u = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), _sub_seed(seed, 2))
        cy, cx = u[..., 0] * (height - 1), u[..., 1] * (width - 1)
        count = _randint(shape[:1], _sub_seed(seed, 3), *self.count)
        active = tf.range(k)[None, :] < count[:, None]
        footprint = int(math.ceil(self.radius[1] * side)) + 1
        ids = _stamp_ids(
            (height, width), cy[..., None], cx[..., None], rad[..., None], active, footprint
        )
        cg = channels if self.color else 1
        grey = _uniform(tf.concat([shape, [cg]], 0), _sub_seed(seed, 4), *self.grey)
        painted, mask = _paint_ids(images, ids, grey)
        if self.noise_std > 0:
            noise = self.noise_std * tf.random.stateless_normal(
                tf.stack([bsz, height, width, cg]), _sub_seed(seed, 5)
            )
            painted = tf.where(mask > 0, tf.clip_by_value(painted + noise, 0.0, 1.0), images)
        return painted, target, mask


# --------------------------------------------------------------------------- combinators


class Compose(Corruption):
    """Applies corruptions in sequence, each with a per-image probability.

    Args:
        corruptions: a list of corruptions (objects or configs for :func:`get`).
        probs: probability that each one is applied to an image (default all 1).

    The mask is the union of the masks of the corruptions applied.

    Example:
        >>> c = Compose([Stains(), Scratches()], probs=[1.0, 0.3])
    """

    def __init__(self, corruptions, probs=None):
        self.corruptions = [get(c) for c in corruptions]
        if not self.corruptions:
            raise ValueError("`corruptions` must not be empty. Received: corruptions=[]")
        probs = [1.0] * len(self.corruptions) if probs is None else [float(p) for p in probs]
        if len(probs) != len(self.corruptions) or any(not 0 <= p <= 1 for p in probs):
            raise ValueError(
                "`probs` must hold one probability in [0, 1] per corruption. "
                f"Received: probs={probs!r}"
            )
        self.probs = probs

    def get_config(self):
        return {"corruptions": [serialize(c) for c in self.corruptions], "probs": list(self.probs)}

    def apply(self, images, target, seed):
        bsz = tf.shape(images)[0]
        out, tgt = images, target
        mask = tf.zeros_like(images[..., :1])
        for i, (c, p) in enumerate(zip(self.corruptions, self.probs)):
            new_out, new_tgt, new_mask = c.apply(out, tgt, _sub_seed(seed, 2 * i + 1))
            if p < 1.0:
                on = tf.random.stateless_uniform(tf.stack([bsz]), _sub_seed(seed, 2 * i + 2)) < p
                on = on[:, None, None, None]
                new_out = tf.where(on, new_out, out)
                new_tgt = tf.where(on, new_tgt, tgt)
                new_mask = tf.where(on, new_mask, 0.0)
            out, tgt, mask = new_out, new_tgt, tf.maximum(mask, new_mask)
        return out, tgt, mask


class OneOf(Corruption):
    """Applies one corruption per image, chosen at random with the given probabilities.

    All corruptions are computed on the whole batch and each image takes the
    result of its choice (vectorised; the cost is the sum of the costs).

    Args:
        corruptions: a list of corruptions (objects or configs for :func:`get`).
        probs: selection probabilities (default uniform); normalised to sum 1.

    Example:
        >>> c = OneOf([Stains(), Scratches(), Drops()], probs=[0.6, 0.2, 0.2])
    """

    def __init__(self, corruptions, probs=None):
        self.corruptions = [get(c) for c in corruptions]
        if not self.corruptions:
            raise ValueError("`corruptions` must not be empty. Received: corruptions=[]")
        n = len(self.corruptions)
        probs = [1.0 / n] * n if probs is None else [float(p) for p in probs]
        if len(probs) != n or any(p < 0 for p in probs) or sum(probs) <= 0:
            raise ValueError(
                "`probs` must hold one non-negative weight per corruption. "
                f"Received: probs={probs!r}"
            )
        total = sum(probs)
        self.probs = [p / total for p in probs]

    def get_config(self):
        return {"corruptions": [serialize(c) for c in self.corruptions], "probs": list(self.probs)}

    def apply(self, images, target, seed):
        bsz = tf.shape(images)[0]
        edges = tf.constant(np.cumsum(self.probs)[:-1], tf.float32)
        u = tf.random.stateless_uniform(tf.stack([bsz]), _sub_seed(seed, 0))
        choice = tf.reduce_sum(tf.cast(u[:, None] >= edges[None, :], tf.int32), axis=1)
        out, tgt, mask = images, target, tf.zeros_like(images[..., :1])
        for i, c in enumerate(self.corruptions):
            o, t, m = c.apply(images, target, _sub_seed(seed, i + 1))
            on = tf.equal(choice, i)[:, None, None, None]
            out, tgt, mask = tf.where(on, o, out), tf.where(on, t, tgt), tf.where(on, m, mask)
        return out, tgt, mask


# --------------------------------------------------------------------------- (de)serialisation

_REGISTRY = {
    cls.__name__: cls
    for cls in (Stains, GaussianNoise, Scratches, Drops, NoiseOnTop, Compose, OneOf)
}
_ALIASES = {
    "stains": "Stains",
    "gaussian_noise": "GaussianNoise",
    "noise": "GaussianNoise",
    "scratches": "Scratches",
    "drops": "Drops",
    "noise_on_top": "NoiseOnTop",
}


def serialize(corruption: Corruption) -> dict:
    """``{"class_name": ..., "config": {...}}``, JSON-serialisable."""
    if not isinstance(corruption, Corruption):
        raise TypeError(f"Expected a Corruption. Received: {corruption!r}")
    return {"class_name": type(corruption).__name__, "config": corruption.get_config()}


def deserialize(config: dict) -> Corruption:
    """Inverse of :func:`serialize`."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"Expected a dict {{'class_name': ..., 'config': {{...}}}}. Received: {config!r}"
        )
    name = config["class_name"]
    if name not in _REGISTRY:
        raise ValueError(f"Unknown corruption {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_config(dict(config.get("config", {})))


def get(identifier) -> Corruption:
    """A corruption from an object, a serialized dict, or a name ("stains", "Stains", ...).

    Example:
        >>> get("stains")
        Stains(count=1, ...)
    """
    if isinstance(identifier, Corruption):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier.lower(), identifier)
        if name in _REGISTRY and name not in ("Compose", "OneOf"):
            return _REGISTRY[name]()
        raise ValueError(
            f"Unknown corruption {identifier!r}; expected one of "
            f"{sorted(set(_ALIASES) | set(_REGISTRY) - {'Compose', 'OneOf'})}"
        )
    raise TypeError(f"Cannot interpret {identifier!r} as a corruption.")


# --------------------------------------------------------------------------- the pipeline


def _images_only(dataset):
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if "image" not in spec:
            raise ValueError(
                "`dataset` elements are dicts without an 'image' key. "
                f"Received element_spec keys: {sorted(spec)}"
            )
        return dataset.map(lambda e: e["image"])
    if isinstance(spec, tuple):
        return dataset.map(lambda *e: e[0])
    if isinstance(spec, tf.TensorSpec):
        return dataset
    raise ValueError(
        f"`dataset` must yield image tensors or dicts with an 'image' key. "
        f"Received element_spec={spec!r}"
    )


def corrupt(
    dataset,
    corruption,
    *,
    seed=0,
    batch_size=16,
    shuffle=True,
    shuffle_buffer=1024,
    cache=True,
    with_mask=False,
    repeat=False,
    drop_remainder=False,
    prefetch=2,
    num_parallel_calls=2,
):
    """Batched ``(corrupted, target)`` pairs for corrupt-and-repair training.

    Pipeline: images -> cache (decoded, before corruption) -> shuffle -> repeat ->
    batch -> corrupt (vectorised over the batch) -> prefetch.

    Reproducibility: the shuffle uses ``seed`` (reshuffled every iteration) and
    each batch gets a stateless seed drawn from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``. So the same ``seed`` gives the same
    batches in a fresh pipeline; every new pass over the dataset (each epoch of
    ``fit``, or each cycle of ``repeat``) gets new orders and new corruptions,
    and that sequence is itself reproducible. (As with every TF op seed, the
    values also depend on the global seed, e.g. ``keras.utils.set_random_seed``.)

    Args:
        dataset: an unbatched dataset of dicts with an ``image`` key (as
            :func:`mvtec_dataset` gives), of ``(image, ...)`` tuples, or of image
            tensors ``[H, W, C]`` with static H, W, C: float in [0, 1], or
            integers (uint8 / uint16), rescaled to [0, 1].
        corruption: a :class:`Corruption` (or a name / config for :func:`get`).
        seed: integer seed.
        batch_size: images per batch.
        shuffle: shuffle the images.
        shuffle_buffer: shuffle buffer size.
        cache: cache the decoded images in memory (``True``), in a file (a path
            string), or not at all (``False``).
        with_mask: also yield the corruption mask ``[B, H, W, 1]``.
        repeat: repeat forever (``True``), a number of times (an int), or not (``False``).
        drop_remainder: drop the last, smaller batch.
        prefetch: batches to prefetch (``tf.data.AUTOTUNE`` allowed; 0 disables).
            A small fixed number is the default: on short epochs AUTOTUNE was
            seen to stall the end of ``fit`` for 0.6-20 s on this project's CPUs.
        num_parallel_calls: parallel corruption calls (``tf.data.AUTOTUNE`` allowed).

    Returns:
        A ``tf.data.Dataset`` of ``(corrupted, target)`` or
        ``(corrupted, target, mask)`` float32 batches.

    Example:
        >>> train = mvtec_dataset("/data/mvtec", "carpet", image_size=256)
        >>> pairs = corrupt(train, Stains(), seed=0, batch_size=16)
        >>> model.fit(pairs, epochs=10)
    """
    corruption = get(corruption)
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size!r}")
    ds = _images_only(dataset)
    shape = ds.element_spec.shape
    if shape.rank != 3 or None in shape.as_list():
        raise ValueError(
            "corrupt() needs images of a static shape [H, W, C] (give the dataset "
            f"an image_size). Received element shape {shape}"
        )
    if ds.element_spec.dtype.is_integer:  # e.g. uint8 in [0, 255] -> float32 in [0, 1]
        ds = ds.map(lambda x: tf.image.convert_image_dtype(x, tf.float32))
    else:
        ds = ds.map(lambda x: tf.cast(x, tf.float32))
    if cache:
        ds = ds.cache(cache) if isinstance(cache, str) else ds.cache()
    if shuffle:
        ds = ds.shuffle(int(shuffle_buffer), seed=int(seed), reshuffle_each_iteration=True)
    if repeat is True:
        ds = ds.repeat()
    elif repeat:
        ds = ds.repeat(int(repeat))
    ds = ds.batch(int(batch_size), drop_remainder=bool(drop_remainder))
    seeds = tf.data.Dataset.random(seed=int(seed) + 1, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )
    ds = tf.data.Dataset.zip((ds, seeds))

    def apply(images, s):
        corrupted, target, mask = corruption(images, s)
        return (corrupted, target, mask) if with_mask else (corrupted, target)

    ds = ds.map(apply, num_parallel_calls=num_parallel_calls, deterministic=True)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds
