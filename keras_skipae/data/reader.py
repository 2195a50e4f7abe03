"""Image files read in parallel, in order, the way :func:`~keras_skipae.data.load_image` reads them.

:func:`read_images` decodes (and optionally resizes) files in a pool of threads while the
caller works on the images read so far, and yields them in the order of the input, a bounded
number of files ahead. Every file gets the checks of :func:`~keras_skipae.data.image_info`
(the extension, the header, truncation and ``max_pixels``, before anything is decoded), and a
bad file is an item with ``error`` set, in its place, with the message
:func:`~keras_skipae.data.load_image` would raise.

The arrays equal those of :func:`~keras_skipae.data.load_image` (and, with ``size``,
:func:`~keras_skipae.data.resize_image` of them) exactly:

* 8- and 16-bit grayscale, RGB and RGBA PNGs are decoded by OpenCV (``cv2.imdecode``, which
  releases the GIL; PNG is lossless, so the pixels are TensorFlow's), then divided by 255 or
  65535 in float32 as TensorFlow does; an RGB file read as grayscale goes through
  ``tf.image.rgb_to_grayscale``, as in :func:`~keras_skipae.data.load_image`;
* every other file (JPEG, whose decoders differ between libraries; BMP; palette, grey+alpha
  and 1/2/4-bit PNGs; a PNG that OpenCV cannot decode or decodes to another shape than its
  header declares) is read by :func:`~keras_skipae.data.load_image` itself;
* the resize is :func:`~keras_skipae.data.resize_image` (TensorFlow's bilinear, antialiased
  resize), run in the worker thread.
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae.data.datasets import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    DatasetError,
    check_max_pixels,
    image_info,
    load_image,
    resize_image,
)
from keras_skipae.data.images import _check_color_mode

__all__ = ["ReadImage", "check_workers", "default_workers", "read_image", "read_images"]

#: The most threads :func:`default_workers` picks.
MAX_DEFAULT_WORKERS = 4

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types OpenCV decodes to TensorFlow's pixels: grey, RGB, RGBA (-> channels).
_PNG_COLOR_TYPES = {0: 1, 2: 3, 6: 4}


@dataclasses.dataclass
class ReadImage:
    """One file of :func:`read_images`.

    Attributes:
        index: its position in the input (bad files counted).
        path: the file, as a string.
        image: float32 ``[H, W, C]`` in [0, 1] at the file's resolution; None for a bad file.
        resized: the image at ``size`` (the same array where the file is that size, or
            where no ``size`` was asked); None for a bad file.
        error: for a bad file, the message (the one :func:`load_image` raises); else None.
    """

    index: int
    path: str
    image: np.ndarray | None = None
    resized: np.ndarray | None = None
    error: str | None = None


def default_workers() -> int:
    """The threads :func:`read_images` uses by default: the CPU cores, at most 4."""
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def check_workers(workers) -> int:
    """``workers`` as an int >= 0 (None: :func:`default_workers`); 0 reads in the caller's thread."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 0:
        raise ValueError(
            "Expected `workers` to be an int >= 0 (0: no threads) or None (automatic). "
            f"Received: workers={workers!r}"
        )
    return int(workers)


def read_image(path, *, color_mode="grayscale", max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads one file as :func:`~keras_skipae.data.load_image` does, as a NumPy array.

    The same checks, errors and values (float32 ``[H, W, C]`` in [0, 1]); 8- and 16-bit
    grey, RGB and RGBA PNGs are decoded by OpenCV, the rest by TensorFlow.

    Raises:
        DatasetError: the file is unreadable, not an image, truncated or too large.
        tf.errors.OpError: the file passed the checks but TensorFlow cannot decode it.
    """
    channels = _check_color_mode(color_mode)
    max_pixels = check_max_pixels(max_pixels)
    info = image_info(path, max_pixels=max_pixels)
    image = _decode_png(path, info, channels) if info["format"] == "png" else None
    if image is None:
        image = load_image(path, color_mode=color_mode, max_pixels=max_pixels).numpy()
    return image


def _decode_png(path, info, channels: int) -> np.ndarray | None:
    """A PNG decoded by OpenCV as :func:`load_image` decodes it, or None where OpenCV is
    not used for it (another colour type or bit depth, or OpenCV did not decode it to the
    header's shape)."""
    if info["bit_depth"] not in (8, 16):
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if data[:8] != _PNG_SIGNATURE or len(data) < 26:
        return None
    expected = _PNG_COLOR_TYPES.get(data[25])
    if expected is None:
        return None
    try:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # e.g. over OpenCV's own size limit: TensorFlow decodes it
        raw = None
    if raw is None:
        return None
    if raw.ndim == 2:
        raw = raw[..., None]
    dtype = np.uint16 if info["bit_depth"] == 16 else np.uint8
    if raw.shape != (info["height"], info["width"], expected) or raw.dtype != dtype:
        return None
    if expected >= 3:  # OpenCV's BGR(A) -> RGB; the alpha is dropped, as TensorFlow does
        raw = raw[..., 2::-1]
    scale = np.float32(65535.0 if dtype == np.uint16 else 255.0)
    image = raw.astype(np.float32) / scale  # TensorFlow's cast, then division, in float32
    if channels == 1 and image.shape[-1] == 3:
        return tf.image.rgb_to_grayscale(image).numpy()
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image)


def _read_one(index, path, channels, size, max_pixels) -> ReadImage:
    """One file, checked, decoded and resized, or its error (the messages of the Detector)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:  # the datasets' rule
        return ReadImage(
            index,
            str(path),
            error=f"{str(path)!r} is not an image file (expected one of "
            f"{', '.join(IMAGE_EXTENSIONS)}).",
        )
    color_mode = "grayscale" if channels == 1 else "rgb"
    try:  # the datasets' checks (header, truncation, size), then the decoder
        image = read_image(path, color_mode=color_mode, max_pixels=max_pixels)
    except DatasetError as exc:
        return ReadImage(index, str(path), error=str(exc))
    except tf.errors.OpError as exc:  # passed the header checks, failed to decode
        return ReadImage(index, str(path), error=f"Cannot decode {str(path)!r}: {exc.message}")
    resized = image
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        resized = resize_image(image, size).numpy()
    return ReadImage(index, str(path), image, resized)


def read_images(
    paths: Iterable,
    *,
    color_mode: str = "grayscale",
    size=None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    prefetch: int | None = None,
) -> Iterator[ReadImage]:
    """Reads image files in parallel and yields them in order, as :class:`ReadImage` items.

    Files are decoded (and resized) in ``workers`` threads up to ``prefetch`` files ahead
    of the one the caller is at, so the next images are read while the caller works on the
    current ones, and memory stays bounded. Closing the iterator (or dropping it) cancels
    what is not yet read.

    Args:
        paths: the files, in order (any extension: a file that is not an image is an item
            with ``error``).
        color_mode: ``"grayscale"`` or ``"rgb"``: the channels of the images.
        size: an int or ``(height, width)``: ``resized`` holds the image at that size
            (:func:`~keras_skipae.data.resize_image`); None: ``resized`` is the image.
        max_pixels: a file whose header declares more pixels is a bad file, refused before
            it is decoded; None: any size.
        workers: threads (None: :func:`default_workers`; 0: each file is read in the
            caller's thread when it is reached, nothing ahead).
        prefetch: how many files may be read ahead (None: 4 per worker); at least 1.

    Returns:
        An iterator of :class:`ReadImage`, one per path, in order.

    Raises:
        ValueError: a bad ``color_mode``, ``size``, ``max_pixels``, ``workers`` or
            ``prefetch`` (checked when called, before anything is read).
    """
    channels = _check_color_mode(color_mode)
    size = io_utils.parse_image_size(size)
    max_pixels = check_max_pixels(max_pixels)
    workers = check_workers(workers)
    if prefetch is None:
        prefetch = 4 * max(workers, 1)
    if isinstance(prefetch, bool) or not isinstance(prefetch, numbers.Integral) or prefetch < 1:
        raise ValueError(f"Expected `prefetch` to be an int >= 1. Received: prefetch={prefetch!r}")
    args = (channels, size, max_pixels)
    if workers == 0:
        return (_read_one(i, p, *args) for i, p in enumerate(paths))
    return _parallel(enumerate(paths), args, workers, int(prefetch))


def _parallel(items, args, workers: int, prefetch: int) -> Iterator[ReadImage]:
    """Yields the items in order while the ``prefetch`` files after the one yielded are read."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="keras_skipae_reader")
    items = iter(items)
    pending = deque()
    try:
        for index, path in itertools.islice(items, prefetch):
            pending.append(pool.submit(_read_one, index, path, *args))
        while pending:
            future = pending.popleft()
            for index, path in itertools.islice(items, 1):  # keep `prefetch` in flight
                pending.append(pool.submit(_read_one, index, path, *args))
            yield future.result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
