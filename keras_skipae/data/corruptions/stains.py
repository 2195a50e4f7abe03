"""The AESc stain model (Collin & De Vleeschouwer, ICPR 2020)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_skipae.data.corruptions import rng
from keras_skipae.data.corruptions.base import (
    Corruption,
    _as_range,
    _changed_mask,
    _config_value,
)
from keras_skipae.data.corruptions.raster import (
    _fill_closed_curves,
    _gaussian_matrix,
    _periodic_spline_matrix,
)


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

    aliases = ("stains",)

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
        seed = rng.check_seed(seed)
        height, width = int(image_shape[0]), int(image_shape[1])
        channels = int(image_shape[2]) if len(image_shape) > 2 else 1
        side = float(min(height, width))
        k = max(self.count[1], 1)
        shape = tf.stack([tf.cast(batch_size, tf.int32), k])
        a = rng.uniform(shape, rng.sub_seed(seed, 1), self.size[0] * side, self.size[1] * side)
        b = rng.uniform(shape, rng.sub_seed(seed, 2), self.size[0] * side, self.size[1] * side)
        theta = rng.uniform(shape, rng.sub_seed(seed, 3), 0.0, 2.0 * math.pi)
        r = tf.maximum(a, b)
        u = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), rng.sub_seed(seed, 4))
        lo_y = tf.minimum(r, (height - 1) / 2.0)
        lo_x = tf.minimum(r, (width - 1) / 2.0)
        cy = lo_y + u[..., 0] * (height - 1 - 2.0 * lo_y)
        cx = lo_x + u[..., 1] * (width - 1 - 2.0 * lo_x)
        cgrey = channels if self.color else 1
        grey = rng.uniform(tf.concat([shape, [cgrey]], 0), rng.sub_seed(seed, 5), *self.grey)
        count = rng.randint(shape[:1], rng.sub_seed(seed, 6), *self.count)
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
            tf.concat([tf.shape(a), [n, 2]], 0), rng.sub_seed(seed, 7), -1.0, 1.0
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
            tf.stack([bsz, k, pw, ph, cnoise]), rng.sub_seed(seed, 8)
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
