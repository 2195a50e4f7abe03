"""Decoding images with TF ops: PNG (8 and 16 bit), JPEG and BMP, grayscale and RGB
converted either way, resized bilinearly with antialiasing."""

from __future__ import annotations

import warnings

import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae.data.image_files import DEFAULT_MAX_PIXELS, DatasetError, image_info

__all__ = ["load_image", "resize_image"]


def _check_color_mode(color_mode):
    return io_utils.channels_for(color_mode)


# --------------------------------------------------------------------------- decoding


def _is_png16(contents):
    """True for the bytes of a 16-bit PNG (signature, then IHDR's bit depth at byte 24)."""
    return tf.logical_and(
        tf.equal(tf.strings.substr(contents, 0, 8), b"\x89PNG\r\n\x1a\n"),
        tf.equal(tf.strings.substr(contents, 24, 1), b"\x10"),
    )


def _to_channels(img, channels: int):
    """``[H, W, c]`` with c in 1-4 -> ``channels`` (1 or 3); alpha dropped, RGB -> luma."""
    c = tf.shape(img)[-1]
    if channels == 1:
        img = tf.cond(c >= 3, lambda: tf.image.rgb_to_grayscale(img[..., :3]), lambda: img[..., :1])
    else:
        img = tf.cond(c >= 3, lambda: img[..., :3], lambda: tf.tile(img[..., :1], [1, 1, 3]))
    img.set_shape([None, None, channels])
    return img


def _decode(contents, channels: int, size=None):
    """Decodes PNG/JPEG/BMP bytes to float32 ``[H, W, channels]`` in [0, 1], resized to
    ``size`` (bilinear, antialiased, clipped) when given.

    The file is decoded in its own bit depth (uint8, or uint16 for 16-bit PNGs) and
    resized before it becomes float32, so a large image is held once at full size, in
    1 or 2 bytes per value, not also as a 4-byte float copy. 16-bit values are divided
    by 65535, 8-bit ones by 255; an alpha channel is dropped.
    """

    def branch(dtype, scale):
        img = tf.io.decode_image(contents, channels=0, dtype=dtype, expand_animations=False)
        if size is not None:
            img = tf.image.resize(img, size, method="bilinear", antialias=True)
        return _to_channels(tf.cast(img, tf.float32) / scale, channels)

    img = tf.cond(
        _is_png16(contents),
        lambda: branch(tf.uint16, 65535.0),
        lambda: branch(tf.uint8, 255.0),
    )
    if size is not None:
        img = tf.clip_by_value(img, 0.0, 1.0)
    img.set_shape([None, None, channels])
    return img


def _decode_mask(contents, hw):
    """A ground-truth mask as float32 ``[h, w, 1]`` in {0, 1}: any non-zero colour channel
    (alpha ignored) is defective; resized to ``hw`` with nearest neighbour."""

    def branch(dtype):
        m = tf.io.decode_image(contents, channels=0, dtype=dtype, expand_animations=False)
        c = tf.shape(m)[-1]
        m = tf.cond(c >= 3, lambda: m[..., :3], lambda: m[..., :1])
        m = tf.image.resize(m, hw, method="nearest")
        return tf.reduce_max(tf.cast(m > 0, tf.float32), axis=-1, keepdims=True)

    m = tf.cond(_is_png16(contents), lambda: branch(tf.uint16), lambda: branch(tf.uint8))
    m.set_shape([None, None, 1])
    return m


def _warn_upscaled(paths, size) -> None:
    """One warning when files are smaller than ``size`` (they are upscaled: no detail is
    recovered, and the model sees blur it never saw in sharp images)."""
    if size is None:
        return
    small = []
    for p in paths:
        try:
            info = image_info(p)
        except DatasetError:
            continue
        if info["height"] < size[0] or info["width"] < size[1]:
            small.append(f"{str(p)!r} ({info['height']}x{info['width']})")
    if small:
        warnings.warn(
            f"{len(small)} image(s) smaller than image_size={size[0]}x{size[1]} are upscaled "
            f"(bilinear), e.g. {small[0]}.",
            UserWarning,
            stacklevel=3,
        )


def load_image(path, *, image_size=None, color_mode="grayscale", max_pixels=DEFAULT_MAX_PIXELS):
    """Loads one image as float32 ``[H, W, C]`` in [0, 1] (checked first, like the datasets).

    8-bit files are divided by 255, 16-bit PNGs by 65535; an alpha channel is dropped
    (not composited); RGB files read as ``"grayscale"`` become luma
    (``tf.image.rgb_to_grayscale``), grayscale files read as ``"rgb"`` repeat their
    channel. A file smaller than ``image_size`` is upscaled with a warning.

    Args:
        path: PNG, JPEG or BMP file.
        image_size: None (keep), an int or (H, W): resized bilinearly with antialiasing.
        color_mode: "grayscale" or "rgb".
        max_pixels: a file declaring more pixels is refused before decoding
            (:func:`image_info`); None: any size.

    Returns:
        A float32 tensor.

    Raises:
        DatasetError: the file is unreadable, not an image, truncated or too large.
    """
    channels = _check_color_mode(color_mode)
    size = io_utils.parse_image_size(image_size)
    image_info(path, max_pixels=max_pixels)
    _warn_upscaled([path], size)
    return _decode(tf.io.read_file(str(path)), channels, size)


def _resize_image(img, size):
    img = tf.image.resize(img, size, method="bilinear", antialias=True)
    return tf.clip_by_value(img, 0.0, 1.0)


def resize_image(image, image_size):
    """Resizes as the datasets and :func:`load_image` do: bilinear, antialiased, clipped.

    Args:
        image: float ``[H, W, C]`` or ``[B, H, W, C]`` in [0, 1].
        image_size: an int or ``(height, width)``.

    Returns:
        A float32 tensor of the new size, in [0, 1].
    """
    return _resize_image(
        tf.cast(image, tf.float32), io_utils.parse_image_size(image_size, allow_none=False)
    )
