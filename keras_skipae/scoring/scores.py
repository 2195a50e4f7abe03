"""Image scores from anomaly maps: max, mean, top-k mean, Lp norm."""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from keras_skipae.scoring.common import _check_rank

DEFAULT_SCORE = "max"


DEFAULT_TOPK = 0.01


DEFAULT_P = 2.0


def _score_max(flat, **_):
    return tf.reduce_max(flat, axis=-1)


def _score_mean(flat, **_):
    return tf.reduce_mean(flat, axis=-1)


def _score_topk(flat, *, topk=DEFAULT_TOPK, **_):
    n = tf.shape(flat)[-1]
    if topk < 1:
        k = tf.cast(tf.math.ceil(float(topk) * tf.cast(n, tf.float32)), tf.int32)
    else:
        k = tf.constant(int(topk), tf.int32)
    k = tf.clip_by_value(k, 1, n)
    return tf.reduce_mean(tf.math.top_k(flat, k=k, sorted=False).values, axis=-1)


def _score_lp(flat, *, p=DEFAULT_P, **_):
    p = float(p)
    if math.isinf(p):
        return tf.reduce_max(tf.abs(flat), axis=-1)
    return tf.pow(tf.reduce_sum(tf.pow(tf.abs(flat), p), axis=-1), 1.0 / p)


# name -> fn(flat_maps [B, N], *, topk, p) -> [B]
SCORES: dict[str, Callable] = {
    "max": _score_max,
    "mean": _score_mean,
    "topk": _score_topk,
    "lp": _score_lp,
}


def _check_topk(topk):
    try:
        value = float(topk)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value > 0 and math.isfinite(value)) or (value >= 1 and value != int(value)):
        raise ValueError(
            "Expected `topk` to be a fraction of the pixels in (0, 1) or a count >= 1. "
            f"Received: topk={topk!r}"
        )
    return value if value < 1 else int(value)


def _check_p(p):
    try:
        value = float(p)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0:
        raise ValueError(f"Expected `p` > 0 for the Lp-norm score. Received: p={p!r}")
    return value


def image_score(
    maps, score: str = DEFAULT_SCORE, *, topk: float = DEFAULT_TOPK, p: float = DEFAULT_P
) -> tf.Tensor:
    """Reduces anomaly maps ``[B, H, W]`` to image scores ``[B]``.

    Args:
        maps: ``[B, H, W]`` float (usually smoothed).
        score: ``"max"``, ``"mean"``, ``"topk"`` (the mean of the ``topk``
            largest values) or ``"lp"`` (``(sum |m|^p)^(1/p)`` over the pixels;
            ``p=inf`` is the max of ``|m|``).
        topk: for ``"topk"``: a fraction of the pixels if in (0, 1) (rounded
            up, at least one pixel), or a pixel count if >= 1.
        p: for ``"lp"``: the exponent, > 0.

    Returns:
        ``[B]`` float32.

    Example:
        >>> image_score(tf.ones([2, 4, 4]), "lp", p=2.0)   # [4., 4.]
    """
    if score not in SCORES:
        raise ValueError(
            f"Expected `score` to be one of {sorted(SCORES)}. Received: score={score!r}"
        )
    topk = _check_topk(topk)
    p = _check_p(p)
    maps = tf.cast(maps, tf.float32)
    _check_rank(maps, 3, "maps")
    flat = tf.reshape(maps, tf.stack([tf.shape(maps)[0], -1]))
    return SCORES[score](flat, topk=topk, p=p)


def is_anomalous(scores, threshold) -> tf.Tensor:
    """``scores >= threshold`` (the package's convention for a decision)."""
    return tf.greater_equal(tf.cast(scores, tf.float32), tf.cast(threshold, tf.float32))
