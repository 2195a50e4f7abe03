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
* Fills of such a region (:mod:`~keras_skipae.data.corruptions.fills`):
  :class:`SelfPaste` (content of another image of the batch, or a shifted /
  flipped / rotated copy of the same image: misplaced texture, CutPaste-like),
  :class:`TextureBlend` (a procedural texture blended in as DRAEM does:
  contamination, misprints), :class:`IntensityShift` (brightness / contrast /
  colour change that keeps the texture: discolouration).
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
from keras_skipae.data.corruptions.base import Corruption, _changed_mask, _select
from keras_skipae.data.corruptions.fills import IntensityShift, SelfPaste, TextureBlend, _RegionFill
from keras_skipae.data.corruptions.lines import Scratches
from keras_skipae.data.corruptions.stains import Stains

__all__ = ["Anomalies"]


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
