"""The region fills of the synthetic anomalies: a :func:`~keras_skipae.data.corruptions.perlin_mask`
region filled with foreign content.

* :class:`SelfPaste`: content of another image of the batch, or a shifted / flipped /
  rotated copy of the same image (misplaced texture, CutPaste-like);
* :class:`TextureBlend`: a procedural texture (:func:`_texture_of`) blended in as DRAEM
  (Zavrtanik et al., ICCV 2021) does: contamination, misprints;
* :class:`IntensityShift`: a brightness / contrast / colour change that keeps the
  texture: discolouration.

:class:`~keras_skipae.data.corruptions.Anomalies` mixes them with stains and scratches.
All random floats are made from stateless random integers
(:func:`~keras_skipae.data.corruptions.rng.xla_uniform`), so compiled and eager calls agree.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_skipae.data.corruptions import rng
from keras_skipae.data.corruptions.base import Corruption, _as_range, _changed_mask, _config_value
from keras_skipae.data.corruptions.perlin import (
    _check_area,
    _check_octaves,
    _check_scale_range,
    _check_stretch,
    _fractal,
    _random_rotation,
    perlin_mask,
)

__all__ = ["IntensityShift", "SelfPaste", "TextureBlend"]


def _texture_of(images, seed, color):
    """Procedural textures ``[B, H, W, C']`` in [0, 1] (C' = 1 or C), one random kind per image.

    Kinds (equally likely): clouds (fractal Perlin noise of a coarse lattice),
    grain (Perlin noise of 4-8 px cells), and stripes of random frequency,
    angle, sharpness and Perlin warp (wood grain, print lines). The grey pattern
    is mapped between two random levels per image: grey for single-channel
    images (or ``color=False``), colours of random saturation otherwise.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    batch = tf.shape(images)[0]
    side = min(height, width)
    kind = rng.randint(tf.stack([batch]), rng.xla_sub_seed(seed, 1), 0, 2)  # clouds, grain, stripes
    fine = max(1, int(math.floor(math.log2(max(side / 4.0, 1.0)))))  # 2**fine: ~4 px cells
    coarse = rng.randint(tf.stack([batch, 2]), rng.xla_sub_seed(seed, 2), 0, min(3, fine))
    noise = _fractal(
        height,
        width,
        batch,
        rng.xla_sub_seed(seed, 3),
        coarse[:, 0],
        coarse[:, 1],
        min(3, fine),
        2,
        0.5,
        None,
    )
    fine_e = rng.randint(tf.stack([batch, 2]), rng.xla_sub_seed(seed, 4), max(fine - 1, 0), fine)
    grain = _fractal(
        height,
        width,
        batch,
        rng.xla_sub_seed(seed, 5),
        fine_e[:, 0],
        fine_e[:, 1],
        fine,
        1,
        0.5,
        None,
    )
    # Stripes: f cycles per image side, log-uniform in [2, side / 6], in 1/16 steps.
    # The phase is computed in integers (exact), so it rounds alike in compiled
    # and eager code; only the warp adds rounding.
    f_hi = max(side / 6.0, 2.0)
    freq16 = np.unique(np.round(16.0 * np.geomspace(2.0, f_hi, 256))).astype(np.int64)
    kf = rng.randint(tf.stack([batch]), rng.xla_sub_seed(seed, 6), 0, len(freq16) - 1)
    f = tf.gather(tf.constant(freq16), kf)[:, None, None]  # int64 [B, 1, 1]: 16 x cycles
    rot = _random_rotation(batch, rng.xla_sub_seed(seed, 11))  # multiples of 2**-12
    yy = tf.range(height, dtype=tf.float32)[None, :, None]
    xx = tf.range(width, dtype=tf.float32)[None, None, :]
    d = rot[:, 1, None, None] * xx + rot[:, 0, None, None] * yy  # exact
    modulus = 16 * 4096 * side
    num = tf.math.floormod(f * tf.cast(d * 4096.0, tf.int64), modulus)
    u = rng.xla_uniform(tf.stack([batch, 3]), rng.xla_sub_seed(seed, 12))
    phi, warp, sharp = u[:, 0], 0.5 * u[:, 1], 1.0 + 7.0 * u[:, 2]
    cycles = (
        tf.cast(num, tf.float32) * (1.0 / modulus)
        + phi[:, None, None]
        + warp[:, None, None] * noise
    )
    wave = tf.sin(2.0 * math.pi * (cycles - tf.math.floor(cycles)))  # (floormod is slow on CPU)
    stripes = tf.math.sigmoid(sharp[:, None, None] * wave)
    gain = rng.xla_uniform(tf.stack([batch]), rng.xla_sub_seed(seed, 7), 0.5, 1.5)[:, None, None]
    cloud = tf.clip_by_value(
        0.5 + gain * tf.where(tf.equal(kind, 1)[:, None, None], grain, noise), 0.0, 1.0
    )
    pattern = tf.where(tf.equal(kind, 2)[:, None, None], stripes, cloud)[..., None]
    cl = channels if (color and channels > 1) else 1
    levels = rng.xla_uniform(tf.stack([batch, 2, 1]), rng.xla_sub_seed(seed, 8))
    if cl > 1:
        hue = rng.xla_uniform(tf.stack([batch, 2, cl]), rng.xla_sub_seed(seed, 9))
        sat = rng.xla_uniform(tf.stack([batch, 1, 1]), rng.xla_sub_seed(seed, 10))
        levels = levels + sat * (hue - levels)
    c0, c1 = levels[:, 0, None, None, :], levels[:, 1, None, None, :]  # [B, 1, 1, C']
    return c0 + (c1 - c0) * pattern


class _RegionFill(Corruption):
    """Base class: fills a :func:`perlin_mask` region with content from :meth:`fill`.

    The mask returned is the region AND the pixels that actually changed.
    """

    def __init__(self, area=(0.005, 0.15), scale_range=(0, 4), max_stretch=2, octaves=1):
        self.area = _check_area(area)
        self.scale_range = _check_scale_range(scale_range)
        self.max_stretch = _check_stretch(max_stretch)
        self.octaves = _check_octaves(octaves)

    def _region_config(self):
        return {
            "area": list(self.area),
            "scale_range": _config_value(self.scale_range),
            "max_stretch": self.max_stretch,
            "octaves": self.octaves,
        }

    def region(self, images, seed):
        """bool ``[B, H, W, 1]``: the region to fill (a :func:`perlin_mask`)."""
        return (
            perlin_mask(
                (images.shape[1], images.shape[2]),
                tf.shape(images)[0],
                seed,
                area=self.area,
                scale_range=self.scale_range,
                max_stretch=self.max_stretch,
                octaves=self.octaves,
            )
            > 0.5
        )

    def fill(self, images, region, seed):  # pragma: no cover - abstract
        """The content ``[B, H, W, C]`` in [0, 1] to show inside the bool ``region``."""
        raise NotImplementedError

    def apply_in_region(self, images, target, region, seed):
        """Like :meth:`apply`, with a given bool region ``[B, H, W, 1]``."""
        content = self.fill(images, region, seed)
        out = tf.where(region, content, images)
        mask = tf.cast(region, tf.float32) * _changed_mask(out, images)
        return out, target, mask

    def apply(self, images, target, seed):
        region = self.region(images, rng.xla_sub_seed(seed, 101))
        return self.apply_in_region(images, target, region, rng.xla_sub_seed(seed, 102))


class SelfPaste(_RegionFill):
    """Region filled with other content of the batch: misplaced texture (CutPaste-like).

    Per image, the source is, with probability ``p_other``, another image of the
    batch (a random different one), else the same image; either way it is
    transformed: a random cyclic shift of at least 1/8 of the side on each
    axis, random flips and, for square images, a random transpose (so all
    eight 90-degree rotations and flips occur). Pasting from another image
    without moving it would give almost invisible anomalies on aligned objects.
    With a batch of one image the same image is used. The pasted content gets a
    small random brightness / contrast jitter (CutPaste applies a colour jitter
    of 0.1). The whole fill is one gather.

    Args:
        area: inclusive ``(min, max)`` area fraction of the region (see
            :func:`perlin_mask`).
        scale_range: inclusive ``(min, max)`` Perlin lattice exponent.
        max_stretch: largest difference between the axes' lattice exponents
            (None: independent, as DRAEM).
        octaves: octaves of the region noise.
        p_other: probability of pasting from another image of the batch.
        jitter: maximum brightness shift (and contrast change ``1 +- jitter``)
            of the pasted content; 0 disables it.

    Example:
        >>> corrupted, target, mask = SelfPaste()(images, tf.constant([0, 1]))
    """

    aliases = ("self_paste",)

    def __init__(
        self,
        area=(0.005, 0.15),
        scale_range=(0, 4),
        max_stretch=2,
        octaves=1,
        p_other=0.5,
        jitter=0.1,
    ):
        super().__init__(
            area=area, scale_range=scale_range, max_stretch=max_stretch, octaves=octaves
        )
        if not 0.0 <= p_other <= 1.0:
            raise ValueError(f"Expected `p_other` in [0, 1]. Received: p_other={p_other!r}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"Expected `jitter` in [0, 1]. Received: jitter={jitter!r}")
        self.p_other = float(p_other)
        self.jitter = float(jitter)

    def get_config(self):
        return {**self._region_config(), "p_other": self.p_other, "jitter": self.jitter}

    def fill(self, images, region, seed):
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        batch = tf.shape(images)[0]
        u = rng.xla_uniform(tf.stack([batch, 4]), rng.xla_sub_seed(seed, 1))
        # Another image: index (i + s) mod B with s in [1, B - 1].
        safe_b = tf.maximum(batch, 1)
        step = 1 + tf.cast(
            tf.math.floor(u[:, 0] * tf.cast(tf.maximum(safe_b - 1, 1), tf.float32)), tf.int32
        )
        partner = tf.math.floormod(tf.range(batch) + step, safe_b)
        use_other = (
            rng.xla_uniform(tf.stack([batch]), rng.xla_sub_seed(seed, 4)) < self.p_other
        ) & (batch > 1)
        source = tf.where(use_other, partner, tf.range(batch))
        # The source transformed: flips and a cyclic shift per axis, an optional transpose.
        flips = u[:, 2:4] < 0.5
        lo_y, lo_x = max(1, height // 8), max(1, width // 8)
        dy = rng.randint(
            tf.stack([batch]), rng.xla_sub_seed(seed, 2), lo_y, max(lo_y, height - lo_y)
        )
        dx = rng.randint(
            tf.stack([batch]), rng.xla_sub_seed(seed, 3), lo_x, max(lo_x, width - lo_x)
        )
        ry = tf.range(height)[None, :]
        rx = tf.range(width)[None, :]
        ry = tf.math.floormod(tf.where(flips[:, :1], height - 1 - ry, ry) + dy[:, None], height)
        rx = tf.math.floormod(tf.where(flips[:, 1:], width - 1 - rx, rx) + dx[:, None], width)
        pixel = ry[:, :, None] * width + rx[:, None, :]  # [B, H, W]
        if height == width:
            transposed = rx[:, None, :] * width + ry[:, :, None]
            pixel = tf.where((u[:, 1] < 0.5)[:, None, None], transposed, pixel)
        pixel = tf.reshape(pixel, tf.stack([batch, height * width]))
        flat = tf.reshape(images, [-1, channels])
        index = source[:, None] * (height * width) + pixel
        content = tf.reshape(tf.gather(flat, index), tf.shape(images))
        if self.jitter > 0:
            # The copy is a permutation of the source's pixels: the same mean.
            mean = tf.gather(tf.reduce_mean(images, axis=[1, 2, 3]), source)
            jit = rng.xla_uniform(
                tf.stack([batch, 2]), rng.xla_sub_seed(seed, 5), -self.jitter, self.jitter
            )
            gain = 1.0 + jit[:, 0]
            offset = (1.0 - gain) * mean + jit[:, 1]
            content = content * gain[:, None, None, None] + offset[:, None, None, None]
            content = tf.clip_by_value(content, 0.0, 1.0)
        return content


class TextureBlend(_RegionFill):
    """Region blended with a procedural texture, as DRAEM does: contamination, misprints.

    ``corrupted = image`` outside the region and ``beta * image + (1 - beta) *
    texture`` inside (DRAEM's formula, ``beta`` drawn per image). DRAEM blends
    textures from the DTD data set; here they are procedural (see
    :func:`_texture_of`): clouds (fractal Perlin noise), grain (fine Perlin
    noise) or warped stripes, mapped between two random grey levels (colours
    of random saturation for RGB images with ``color=True``).

    Args:
        area: inclusive ``(min, max)`` area fraction of the region.
        scale_range: inclusive ``(min, max)`` Perlin lattice exponent.
        max_stretch: largest difference between the axes' lattice exponents
            (None: independent, as DRAEM).
        octaves: octaves of the region noise.
        beta: inclusive ``(min, max)`` weight of the original image in the blend,
            within [0, 1). DRAEM: ``beta = rand() * 0.8``.
        color: coloured textures for images of more than one channel.

    Example:
        >>> corrupted, target, mask = TextureBlend(beta=(0.0, 0.5))(images, tf.constant([0, 1]))
    """

    aliases = ("texture_blend",)

    def __init__(
        self,
        area=(0.005, 0.15),
        scale_range=(0, 4),
        max_stretch=2,
        octaves=1,
        beta=(0.0, 0.8),
        color=True,
    ):
        super().__init__(
            area=area, scale_range=scale_range, max_stretch=max_stretch, octaves=octaves
        )
        self.beta = _as_range(beta, "beta", low=0.0, high=1.0)
        if self.beta[1] >= 1.0:
            raise ValueError(
                f"Expected `beta` within [0, 1) (beta=1 keeps the image). Received: beta={beta!r}"
            )
        self.color = bool(color)

    def get_config(self):
        return {**self._region_config(), "beta": _config_value(self.beta), "color": self.color}

    def fill(self, images, region, seed):
        batch = tf.shape(images)[0]
        tex = _texture_of(images, rng.xla_sub_seed(seed, 1), self.color)
        beta = rng.xla_uniform(tf.stack([batch]), rng.xla_sub_seed(seed, 2), *self.beta)[
            :, None, None, None
        ]
        return tf.clip_by_value(beta * images + (1.0 - beta) * tex, 0.0, 1.0)


class IntensityShift(_RegionFill):
    """Brightness / contrast / colour change inside the region: discolouration.

    Inside the region, ``x -> m + contrast * (x - m) + sign * brightness + shift``,
    clipped to [0, 1], with ``m`` the region's mean (per channel), ``contrast``
    and ``brightness`` drawn per image, a random sign (darker or lighter), and
    ``shift`` a per-channel offset in ``+-color`` (RGB only). The texture stays.

    Args:
        area: inclusive ``(min, max)`` area fraction of the region.
        scale_range: inclusive ``(min, max)`` Perlin lattice exponent.
        max_stretch: largest difference between the axes' lattice exponents
            (None: independent, as DRAEM).
        octaves: octaves of the region noise.
        brightness: inclusive ``(min, max)`` magnitude of the brightness shift.
        contrast: inclusive ``(min, max)`` contrast factor.
        color: maximum per-channel shift added for images of more than one channel.

    Example:
        >>> corrupted, target, mask = IntensityShift()(images, tf.constant([0, 1]))
    """

    aliases = ("intensity_shift",)

    def __init__(
        self,
        area=(0.005, 0.15),
        scale_range=(0, 4),
        max_stretch=2,
        octaves=1,
        brightness=(0.05, 0.3),
        contrast=(0.6, 1.4),
        color=0.1,
    ):
        super().__init__(
            area=area, scale_range=scale_range, max_stretch=max_stretch, octaves=octaves
        )
        self.brightness = _as_range(brightness, "brightness", low=0.0, high=1.0)
        self.contrast = _as_range(contrast, "contrast", low=0.0)
        if not 0.0 <= color <= 1.0:
            raise ValueError(f"Expected `color` in [0, 1]. Received: color={color!r}")
        self.color = float(color)

    def get_config(self):
        return {
            **self._region_config(),
            "brightness": _config_value(self.brightness),
            "contrast": _config_value(self.contrast),
            "color": self.color,
        }

    def fill(self, images, region, seed):
        batch = tf.shape(images)[0]
        channels = images.shape[3]
        r = tf.cast(region, tf.float32)
        count = tf.maximum(tf.reduce_sum(r, axis=[1, 2], keepdims=True), 1.0)
        mean = tf.reduce_sum(images * r, axis=[1, 2], keepdims=True) / count  # [B, 1, 1, C]
        u = rng.xla_uniform(tf.stack([batch, 3]), rng.xla_sub_seed(seed, 1))
        b_lo, b_hi = self.brightness
        c_lo, c_hi = self.contrast
        bright = (b_lo + (b_hi - b_lo) * u[:, 0]) * tf.where(u[:, 1] < 0.5, -1.0, 1.0)
        contrast = c_lo + (c_hi - c_lo) * u[:, 2]
        contrast = contrast[:, None, None, None]
        offset = (1.0 - contrast) * mean + bright[:, None, None, None]  # [B, 1, 1, C]
        if channels > 1 and self.color > 0:
            shift = rng.xla_uniform(
                tf.stack([batch, 1, 1, channels]),
                rng.xla_sub_seed(seed, 2),
                -self.color,
                self.color,
            )
            offset = offset + shift
        return tf.clip_by_value(images * contrast + offset, 0.0, 1.0)
