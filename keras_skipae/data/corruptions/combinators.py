"""Combinators: :class:`Compose` (each step with its probability) and :class:`OneOf`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_skipae.data.corruptions import rng
from keras_skipae.data.corruptions.base import Corruption, get, serialize


class Compose(Corruption):
    """Applies corruptions in sequence, each with a per-image probability.

    Args:
        corruptions: a list of corruptions (objects or configs for :func:`get`).
        probs: probability that each one is applied to an image (default all 1).

    The mask is the union of the masks of the corruptions applied.

    Example:
        >>> c = Compose([Stains(), Scratches()], probs=[1.0, 0.3])
    """

    by_name = False

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
            new_out, new_tgt, new_mask = c.apply(out, tgt, rng.sub_seed(seed, 2 * i + 1))
            if p < 1.0:
                on = tf.random.stateless_uniform(tf.stack([bsz]), rng.sub_seed(seed, 2 * i + 2)) < p
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

    by_name = False

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
        u = tf.random.stateless_uniform(tf.stack([bsz]), rng.sub_seed(seed, 0))
        choice = tf.reduce_sum(tf.cast(u[:, None] >= edges[None, :], tf.int32), axis=1)
        out, tgt, mask = images, target, tf.zeros_like(images[..., :1])
        for i, c in enumerate(self.corruptions):
            o, t, m = c.apply(images, target, rng.sub_seed(seed, i + 1))
            on = tf.equal(choice, i)[:, None, None, None]
            out, tgt, mask = tf.where(on, o, out), tf.where(on, t, tgt), tf.where(on, m, mask)
        return out, tgt, mask
