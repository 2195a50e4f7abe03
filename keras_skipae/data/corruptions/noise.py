"""Additive Gaussian noise: on the input only, or on input and target (:class:`NoiseOnTop`)."""

from __future__ import annotations

import tensorflow as tf

from keras_skipae.data.corruptions import rng
from keras_skipae.data.corruptions.base import (
    Corruption,
    _as_range,
    _changed_mask,
    _config_value,
)


class GaussianNoise(Corruption):
    """Additive Gaussian noise on the input only (the target stays clean).

    Args:
        std: noise std, a number or a (min, max) range drawn per image.
        clip: clip the result to [0, 1].

    The mask marks the pixels that changed (almost all of them).

    Example:
        >>> corrupted, target, mask = GaussianNoise(0.1)(images, tf.constant([0, 0]))
    """

    aliases = ("gaussian_noise", "noise")

    def __init__(self, std=0.1, clip=True):
        self.std = _as_range(std, "std", low=0.0)
        self.clip = bool(clip)

    def get_config(self):
        return {"std": _config_value(self.std), "clip": self.clip}

    def _noise(self, images, seed):
        """Gaussian noise shaped like ``images``, with a std drawn per image."""
        bsz = tf.shape(images)[0]
        std = rng.uniform(tf.stack([bsz]), rng.sub_seed(seed, 1), *self.std)[:, None, None, None]
        return std * tf.random.stateless_normal(tf.shape(images), rng.sub_seed(seed, 2))

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

    aliases = ("noise_on_top",)

    def __init__(self, std=0.02, clip=True):
        super().__init__(std=std, clip=clip)

    def apply(self, images, target, seed):
        noise = self._noise(images, seed)
        out, tgt = images + noise, target + noise
        if self.clip:
            out = tf.clip_by_value(out, 0.0, 1.0)
            tgt = tf.clip_by_value(tgt, 0.0, 1.0)
        return out, tgt, tf.zeros_like(images[..., :1])
