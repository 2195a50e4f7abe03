"""The corruptions' random numbers, all stateless (a ``[2]`` integer seed in, the same
numbers out), in two families:

* :func:`sub_seed`, :func:`uniform`, :func:`randint`: TF's stateless ops as they are
  (the stains', lines' and noise's streams; the golden file records them). Under XLA
  ``stateless_uniform`` draws other floats than the TF kernels, so these corruptions
  give other (equally distributed) samples when compiled.
* :func:`xla_sub_seed`, :func:`xla_uniform`: seeds kept to 32-bit words and floats
  built from random integers, so that XLA and the TF kernels draw the same numbers
  (the Perlin noise and the anomalies, whose masks must match between the two).

Which family a corruption uses is part of its output: changing it changes every
sample of that corruption.
"""

from __future__ import annotations

import tensorflow as tf


def check_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    if seed.shape.rank != 1 or seed.shape[0] not in (None, 2):
        raise ValueError(
            f"`seed` must be an integer tensor of shape [2]. Received shape {seed.shape}"
        )
    return seed


def sub_seed(seed, i):
    return tf.random.experimental.stateless_fold_in(seed, i)


def uniform(shape, seed, lo, hi, dtype=tf.float32):
    if lo == hi:
        return tf.fill(shape, tf.constant(lo, dtype))
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi, dtype=dtype)


def randint(shape, seed, lo, hi):
    """Uniform integers in [lo, hi] (inclusive)."""
    if lo == hi:
        return tf.fill(shape, tf.constant(lo, tf.int32))
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi + 1, dtype=tf.int32)


def word_seed(seed):
    """``seed`` as int64 with both words in [0, 2**32).

    XLA and the TF kernels turn a seed into the same random stream only when
    both words are in that range (negative or wider words are converted
    differently, and ``stateless_fold_in`` returns negative words).
    """
    return tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), 0xFFFFFFFF)


def xla_sub_seed(seed, i):
    """A seed derived from ``seed`` and the int ``i``, drawn alike by XLA and TF kernels."""
    return word_seed(tf.random.experimental.stateless_fold_in(word_seed(seed), i))


def xla_uniform(shape, seed, lo=0.0, hi=1.0):
    """float32 uniform in [lo, hi), made from stateless random integers.

    ``tf.random.stateless_uniform`` draws different float streams under XLA and
    with the TF kernels, but the same integers: building floats from 24 random
    bits keeps compiled and eager results equal.
    """
    bits = tf.random.stateless_uniform(shape, seed, minval=0, maxval=1 << 24, dtype=tf.int32)
    u = tf.cast(bits, tf.float32) * (1.0 / (1 << 24))
    if lo == 0.0 and hi == 1.0:
        return u
    return lo + (hi - lo) * u
