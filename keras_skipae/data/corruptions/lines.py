"""Thin painted shapes: scratches (Bézier curves) and drops (small discs)."""

from __future__ import annotations

import math

import tensorflow as tf

from keras_skipae.data.corruptions import rng
from keras_skipae.data.corruptions.base import (
    Corruption,
    _as_range,
    _config_value,
)
from keras_skipae.data.corruptions.raster import _paint_ids, _stamp_ids


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

    aliases = ("scratches",)

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
        u = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), rng.sub_seed(seed, 1))
        p0y, p0x = u[..., 0] * (height - 1), u[..., 1] * (width - 1)
        angle = rng.uniform(shape, rng.sub_seed(seed, 2), 0.0, 2 * math.pi)
        length = rng.uniform(
            shape, rng.sub_seed(seed, 3), self.length[0] * side, self.length[1] * side
        )
        bend = rng.uniform(shape, rng.sub_seed(seed, 4), -self.curvature, self.curvature) * length
        p2y, p2x = p0y + length * tf.sin(angle), p0x + length * tf.cos(angle)
        p1y = (p0y + p2y) / 2 + bend * tf.cos(angle)
        p1x = (p0x + p2x) / 2 - bend * tf.sin(angle)
        t = tf.linspace(0.0, 1.0, n_samples)[None, None, :]
        w0, w1, w2 = (1 - t) ** 2, 2 * t * (1 - t), t**2
        py = w0 * p0y[..., None] + w1 * p1y[..., None] + w2 * p2y[..., None]
        px = w0 * p0x[..., None] + w1 * p1x[..., None] + w2 * p2x[..., None]
        lw = rng.uniform(shape, rng.sub_seed(seed, 5), *self.width)
        count = rng.randint(shape[:1], rng.sub_seed(seed, 6), *self.count)
        active = tf.range(k)[None, :] < count[:, None]
        footprint = int(math.ceil(self.width[1] / 2))
        ids = _stamp_ids((height, width), py, px, (lw / 2)[..., None], active, footprint)
        cg = channels if self.color else 1
        grey = rng.uniform(tf.concat([shape, [cg]], 0), rng.sub_seed(seed, 7), *self.grey)
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

    aliases = ("drops",)

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
        rad = rng.uniform(
            shape, rng.sub_seed(seed, 1), self.radius[0] * side, self.radius[1] * side
        )
        u = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), rng.sub_seed(seed, 2))
        cy, cx = u[..., 0] * (height - 1), u[..., 1] * (width - 1)
        count = rng.randint(shape[:1], rng.sub_seed(seed, 3), *self.count)
        active = tf.range(k)[None, :] < count[:, None]
        footprint = int(math.ceil(self.radius[1] * side)) + 1
        ids = _stamp_ids(
            (height, width), cy[..., None], cx[..., None], rad[..., None], active, footprint
        )
        cg = channels if self.color else 1
        grey = rng.uniform(tf.concat([shape, [cg]], 0), rng.sub_seed(seed, 4), *self.grey)
        painted, mask = _paint_ids(images, ids, grey)
        if self.noise_std > 0:
            noise = self.noise_std * tf.random.stateless_normal(
                tf.stack([bsz, height, width, cg]), rng.sub_seed(seed, 5)
            )
            painted = tf.where(mask > 0, tf.clip_by_value(painted + noise, 0.0, 1.0), images)
        return painted, target, mask
