"""Synthetic anomalies with exact masks, for training a learned anomaly head.

DRAEM-style (Zavrtanik et al., *DRAEM - A discriminatively trained
reconstruction embedding for surface anomaly detection*, ICCV 2021) anomaly
synthesis in pure TF ops: a random region is cut from thresholded 2-D Perlin
noise and filled with foreign content. Every class here is a
:class:`~keras_skipae.data.corruptions.Corruption`, so it follows the same
contract: ``__call__(images, seed) -> (corrupted, target, mask)`` with ``images``
float32 ``[B, H, W, C]`` in [0, 1] (H, W, C static), ``seed`` an int tensor of
shape ``[2]``, ``target`` the clean images and ``mask`` float32 ``[B, H, W, 1]``
in {0, 1}, exactly the pixels where ``corrupted`` differs from the input (a
pixel whose fill happens to equal the original is not marked).

* :func:`perlin_noise`: batched 2-D gradient (Perlin) noise, a random
  power-of-two lattice resolution per image and per axis, optionally rotated.
* :func:`perlin_mask`: the region: the top ``a`` fraction of rotated Perlin
  noise, with ``a`` drawn per image in a configured range (a quantile threshold,
  so every mask has a controlled, non-zero area; no retries).
* Fills of such a region: :class:`SelfPaste` (content of another image of the
  batch, or a shifted / flipped / rotated copy of the same image: misplaced
  texture, CutPaste-like), :class:`TextureBlend` (a procedural texture blended
  in as DRAEM does: contamination, misprints), :class:`IntensityShift`
  (brightness / contrast / colour change that keeps the texture: discolouration).
* :class:`Anomalies`: a per-image mixture of the fills above with the existing
  :class:`~keras_skipae.data.corruptions.Stains` and
  :class:`~keras_skipae.data.corruptions.Scratches` (thin lines), plus a share of
  clean images (empty masks).

Sources are only the batch's own images and procedural generators; nothing is
downloaded. Everything is vectorised over the batch (no per-image Python loop),
and runs in graph mode and under ``tf.function(jit_compile=True)``.

Random numbers: all random floats of this module are made from stateless random
*integers* (which XLA and the TF kernels draw identically; their float streams
differ), so a compiled call gives the same anomalies as an eager one, up to
float rounding (about 1e-6). :class:`Anomalies` includes :class:`Stains` and
:class:`Scratches`, which draw floats directly: its compiled and eager results
are each deterministic but differ from each other.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_skipae.data.corruptions import rng
from keras_skipae.data.corruptions.base import (
    Corruption,
    _as_range,
    _changed_mask,
    _config_value,
)
from keras_skipae.data.corruptions.lines import Scratches
from keras_skipae.data.corruptions.perlin import (
    _check_area,
    _check_octaves,
    _check_scale_range,
    _check_stretch,
    _select,
    _texture_of,
    perlin_mask,
)
from keras_skipae.data.corruptions.stains import Stains

__all__ = ["Anomalies", "IntensityShift", "SelfPaste", "TextureBlend"]


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


# --------------------------------------------------------------------------- the mixture

_KINDS = ("stains", "self_paste", "texture_blend", "intensity_shift", "scratches")
_CLASSES = {
    "stains": Stains,
    "self_paste": SelfPaste,
    "texture_blend": TextureBlend,
    "intensity_shift": IntensityShift,
    "scratches": Scratches,
}
_DEFAULT_WEIGHTS = {kind: 0.2 for kind in _KINDS}


class Anomalies(Corruption):
    """A mixture of synthetic anomalies, one kind per image, with clean images mixed in.

    Each image is left unchanged with probability ``p_clean`` (empty mask: a
    head trained on masks needs clean examples), and otherwise gets one
    anomaly kind, drawn with probabilities proportional to ``weights``:

    * ``"stains"``: :class:`~keras_skipae.data.corruptions.Stains` (filled grey blobs);
    * ``"self_paste"``: :class:`SelfPaste` (misplaced texture);
    * ``"texture_blend"``: :class:`TextureBlend` (contamination, misprints);
    * ``"intensity_shift"``: :class:`IntensityShift` (discolouration);
    * ``"scratches"``: :class:`~keras_skipae.data.corruptions.Scratches` (thin lines).

    Default: weight 0.2 each, ``p_clean=0.1``, so each kind has probability 0.18.
    All kinds with a positive weight are computed for the whole batch and each
    image takes its own (vectorised, so the cost is the sum of the costs);
    fills with the same region settings share one Perlin region. The target is
    returned unchanged (no kind changes it) and the mask is exactly the changed
    pixels.

    Args:
        weights: dict from kind to a non-negative weight (missing kinds get 0),
            or None for the defaults. Normalised to sum ``1 - p_clean``.
        p_clean: probability of an unchanged image, in [0, 1].
        stains, self_paste, texture_blend, intensity_shift, scratches: the
            component of each kind: an instance of its class, a dict of its
            constructor arguments, or None for the default one.

    Example:
        >>> anomalies = Anomalies(weights={"texture_blend": 2, "scratches": 1}, p_clean=0.2)
        >>> corrupted, target, mask = anomalies(images, tf.constant([0, 1]))
    """

    aliases = ("anomalies",)

    def __init__(
        self,
        weights=None,
        p_clean=0.1,
        stains=None,
        self_paste=None,
        texture_blend=None,
        intensity_shift=None,
        scratches=None,
    ):
        if weights is None:
            weights = dict(_DEFAULT_WEIGHTS)
        if not isinstance(weights, dict) or set(weights) - set(_KINDS):
            raise ValueError(
                f"`weights` must be a dict with keys among {list(_KINDS)}. "
                f"Received: weights={weights!r}"
            )
        try:
            weights = {k: float(weights.get(k, 0.0)) for k in _KINDS}
        except (TypeError, ValueError):
            raise ValueError(
                f"`weights` must hold numbers. Received: weights={weights!r}"
            ) from None
        if any(not w >= 0.0 for w in weights.values()):
            raise ValueError(f"`weights` must be non-negative. Received: weights={weights!r}")
        p_clean = float(p_clean)
        if not 0.0 <= p_clean <= 1.0:
            raise ValueError(f"Expected `p_clean` in [0, 1]. Received: p_clean={p_clean!r}")
        if sum(weights.values()) <= 0.0 and p_clean < 1.0:
            raise ValueError(
                "`weights` must have a positive sum unless `p_clean` is 1. "
                f"Received: weights={weights!r}, p_clean={p_clean!r}"
            )
        self.weights = weights
        self.p_clean = p_clean
        given = {
            "stains": stains,
            "self_paste": self_paste,
            "texture_blend": texture_blend,
            "intensity_shift": intensity_shift,
            "scratches": scratches,
        }
        self.components = {k: self._component(k, given[k]) for k in _KINDS}

    @staticmethod
    def _component(kind, value):
        cls = _CLASSES[kind]
        if value is None:
            return cls()
        if isinstance(value, dict):
            return cls(**value)
        if type(value) is not cls:
            raise ValueError(
                f"`{kind}` must be a {cls.__name__}, a dict of its arguments, or None. "
                f"Received: {kind}={value!r}"
            )
        return value

    @property
    def probs(self):
        """Per-kind probabilities (dict), ``p_clean`` excluded; they sum to ``1 - p_clean``."""
        total = sum(self.weights.values())
        if total <= 0.0:
            return {k: 0.0 for k in _KINDS}
        return {k: (1.0 - self.p_clean) * w / total for k, w in self.weights.items()}

    def get_config(self):
        return {
            "weights": dict(self.weights),
            "p_clean": self.p_clean,
            **{k: self.components[k].get_config() for k in _KINDS},
        }

    def apply(self, images, target, seed):
        batch = tf.shape(images)[0]
        probs = self.probs
        edges = np.cumsum([self.p_clean] + [probs[k] for k in _KINDS])[:-1]
        u = rng.xla_uniform(tf.stack([batch]), rng.xla_sub_seed(seed, 0))
        choice = tf.reduce_sum(
            tf.cast(u[:, None] >= tf.constant(edges, tf.float32)[None, :], tf.int32), axis=1
        )  # 0: clean, i + 1: kind i
        # The fills: each image's content and region, pasted with one select at the end.
        content, region = images, tf.zeros_like(images[..., :1], tf.bool)
        regions = {}
        out = images
        for i, kind in enumerate(_KINDS):
            if probs[kind] <= 0.0:
                continue
            comp = self.components[kind]
            s = rng.xla_sub_seed(seed, i + 1)
            on = tf.equal(choice, i + 1)
            if isinstance(comp, _RegionFill):
                key = (comp.area, comp.scale_range, comp.max_stretch, comp.octaves)
                if key not in regions:  # one region per distinct setting, shared by the fills
                    regions[key] = comp.region(images, rng.xla_sub_seed(seed, 1000 + len(regions)))
                # same seeds as comp.apply_in_region(images, target, regions[key], s)
                content = _select(on, comp.fill(images, regions[key], s), content)
                region = _select(on, regions[key], region)
            else:  # Stains, Scratches: the target is unchanged
                o, _, _ = comp.apply(images, target, s)
                out = _select(on, o, out)
        if regions:
            out = tf.where(region, content, out)
        # Exactly the changed pixels (Scratches marks painted pixels, not changed ones).
        return out, target, _changed_mask(out, images)
