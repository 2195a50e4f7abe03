"""Reductions of activations shared by the models, scoring and analysis."""

from __future__ import annotations

import tensorflow as tf

_EPS = 1e-12


def channel_mean(activation) -> tf.Tensor:
    """``mu_i``: the mean of an activation ``[B, h, w, c]`` along channels -> ``[B, h, w]``."""
    return tf.reduce_mean(tf.cast(activation, tf.float32), axis=-1)


def cosine_similarity(a, b, *, eps: float = _EPS) -> tf.Tensor:
    """Cosine similarity of each pair of maps, flattened over all but the batch axis.

    ``sum(a * b) / max(||a|| * ||b||, eps)``; 0 when either map is all zeros.

    Args:
        a: ``[B, ...]`` float.
        b: same shape.
        eps: guards the division.

    Returns:
        ``[B]`` float32 in [-1, 1].

    Example:
        >>> cosine_similarity(np.ones([2, 3, 3]), np.ones([2, 3, 3]))   # [1., 1.]
    """
    a = tf.cast(a, tf.float32)
    b = tf.cast(b, tf.float32)
    n = tf.shape(a)[0]
    a = tf.reshape(a, tf.stack([n, -1]))
    b = tf.reshape(b, tf.stack([n, -1]))
    dot = tf.reduce_sum(a * b, axis=-1)
    norm = tf.norm(a, axis=-1) * tf.norm(b, axis=-1)
    return dot / tf.maximum(norm, eps)
