"""Input conversion and checks shared by the scoring modules."""

from __future__ import annotations

import tensorflow as tf


def to_float_images(images) -> tf.Tensor:
    """Converts an image batch to float32 in [0, 1].

    ``uint8`` is divided by 255; ``uint16`` by 65535; floats are cast to
    float32 and kept as they are (they are expected in [0, 1]).

    Args:
        images: a ``[B, H, W, C]`` tensor or array.

    Returns:
        A float32 ``tf.Tensor``.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    if images.dtype == tf.uint16:
        return tf.cast(images, tf.float32) / 65535.0
    if not images.dtype.is_floating:
        raise ValueError(
            "Expected `images` as float32 in [0, 1] or uint8. "
            f"Received: images with dtype={images.dtype.name}"
        )
    return tf.cast(images, tf.float32)


def _check_rank(x: tf.Tensor, rank: int, name: str) -> None:
    if x.shape.rank is not None and x.shape.rank != rank:
        raise ValueError(
            f"Expected `{name}` of rank {rank}. Received: {name} with shape {tuple(x.shape)}"
        )
