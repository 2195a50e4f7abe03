"""The Detector's input handling: listing files, decoding and checking images, fitting them
to the model's size, batching, and the error policy for bad files (:data:`ON_ERROR`).

:func:`read_items` turns what ``Detector.predict`` receives (files, folders, arrays, a
``tf.data`` dataset) into lazily read :class:`Item` objects; :func:`batches` groups them
into batches of good images, applying the error policy on the way.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae.data.datasets import (
    DEFAULT_MAX_PIXELS,
    DatasetError,
    resize_image,
)
from keras_skipae.data.reader import read_images
from keras_skipae.ops.image_checks import INTEGER_DTYPES, check_images
from keras_skipae.scoring import to_float_images

__all__ = [
    "ON_ERROR",
    "Item",
    "batches",
    "check_array",
    "check_predict_options",
    "fit_to_size",
    "list_image_files",
    "read_items",
    "resize_map",
]

#: How a bad file is handled: raise a DatasetError, skip it with a warning, or report
#: it as a Prediction whose ``error`` holds the message (and whose results are None).
ON_ERROR = ("raise", "skip", "report")


@dataclasses.dataclass
class Item:
    """One input image: its position, its path (or None), the image float32 ``[H, W, C]``
    at its original resolution, or the error that made it a bad file."""

    index: int
    path: str | None
    image: np.ndarray | None = None
    error: str | None = None
    resized: np.ndarray | None = None  # the image at the model's size, when read so


def check_predict_options(batch_size, on_error) -> int:
    """``batch_size`` (an int >= 1) as an int; ``on_error`` one of :data:`ON_ERROR`."""
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool):
        raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size!r}")
    if on_error not in ON_ERROR:
        raise ValueError(
            f"Expected `on_error` to be one of {ON_ERROR}. Received: on_error={on_error!r}"
        )
    return int(batch_size)


def read_items(
    x,
    *,
    channels: int,
    color_mode: str,
    max_pixels=DEFAULT_MAX_PIXELS,
    size=None,
    workers: int = 0,
    prefetch: int | None = None,
) -> tuple[Iterable[Item], int | None]:
    """The input as lazily read items, and their number when known (checked now).

    Files are read (checked, decoded and, with ``size``, resized) by ``workers`` threads
    up to ``prefetch`` files ahead of the consumer, in order
    (:func:`keras_skipae.data.reader.read_images`).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an array that :func:`check_array` refuses.
        TypeError: an input of another type.
    """
    if isinstance(x, (str, Path)):
        x = [x]
    if isinstance(x, (list, tuple)) and all(isinstance(v, (str, Path)) for v in x):
        files = list_image_files(x)
        return _read_files(files, color_mode, max_pixels, size, workers, prefetch), len(files)
    if isinstance(x, tf.data.Dataset):
        return _dataset_items(x, channels, color_mode), None
    if isinstance(x, (np.ndarray, tf.Tensor)):
        array = check_array(np.asarray(x), channels, color_mode)
        return (Item(i, None, image) for i, image in enumerate(array)), len(array)
    raise TypeError(
        "Expected `x` to be a path, a list of paths, a NumPy array or a tf.data.Dataset. "
        f"Received: x of type {type(x).__name__}"
    )


def _read_files(files, color_mode, max_pixels, size, workers, prefetch):
    for r in read_images(
        files,
        color_mode=color_mode,
        size=size,
        max_pixels=max_pixels,
        workers=workers,
        prefetch=prefetch,
    ):
        yield Item(r.index, r.path, r.image, r.error, r.resized)


def _dataset_items(dataset, channels, color_mode):
    index = 0
    for element in dataset:
        path = None
        if isinstance(element, dict):
            if "image" not in element:
                raise ValueError(
                    "Expected dataset elements with an 'image' key. Received: keys "
                    f"{sorted(element)}"
                )
            paths = element.get("path")
            element = element["image"]
            if paths is not None:
                path = np.atleast_1d(paths.numpy())
        images = np.asarray(element)
        batched = images.ndim == 4
        images = check_array(images, channels, color_mode, name="dataset element")
        for j, image in enumerate(images):
            p = None if path is None else path[j if batched else 0]
            yield Item(index, None if p is None else io_utils.as_text(p), image)
            index += 1


def check_array(array: np.ndarray, channels: int, color_mode: str, name: str = "x") -> np.ndarray:
    """``[N, H, W, C]`` float32 in [0, 1] from an array (``[H, W, C]`` is one image).

    uint8 and uint16 are divided by their largest value; floats must be finite and in [0, 1].

    Raises:
        ValueError: another rank, channel count or dtype; non-finite or out-of-range values.
    """
    if array.ndim == 3:
        array = array[None]
    check_images(
        array,
        channels=channels,
        color_mode=color_mode,
        name=name,
        check_dtype=True,
        unit_range=True,
    )
    if array.dtype in INTEGER_DTYPES:
        return to_float_images(array).numpy()
    return array.astype(np.float32, copy=False)


def batches(items, batch_size: int, on_error: str, tile_size=None) -> Iterator[list[Item]]:
    """Lists of items holding ``batch_size`` good images each (the last: the rest), with
    the bad files in their place; ``on_error`` decides what a bad file does. With a
    ``tile_size``, an image smaller than a tile is a bad file."""
    pending, n_good = [], 0
    for item in items:
        if item.error is None and tile_size is not None:
            height, width = item.image.shape[:2]
            if min(height, width) < tile_size:
                where = repr(item.path) if item.path else f"image {item.index}"
                item.error = (
                    f"{where} is {height}x{width} pixels, smaller than a "
                    f"{tile_size}x{tile_size} tile (resize it or score it without tiling)."
                )
        if item.error is not None:
            if on_error == "raise":
                raise DatasetError(item.error)
            if on_error == "skip":
                warnings.warn(item.error + " Skipped (on_error='skip').", stacklevel=3)
                continue
        else:
            n_good += 1
        pending.append(item)
        if n_good == batch_size:
            yield pending
            pending, n_good = [], 0
    if pending:
        yield pending


def fit_to_size(image: np.ndarray, image_size) -> np.ndarray:
    """``image`` resized to the model's ``image_size`` (unchanged when it has that size)."""
    if tuple(image.shape[:2]) == tuple(image_size):
        return image
    return resize_image(image, image_size).numpy()


def resize_map(anomaly_map, size) -> np.ndarray:
    """A ``[h, w]`` anomaly map resized to ``size`` (bilinear; antialiased when shrinking).

    The interpolation of :func:`keras_skipae.data.resize_image`, without clipping.
    """
    anomaly_map = np.asarray(anomaly_map, np.float32)
    if tuple(anomaly_map.shape) == tuple(size):
        return anomaly_map
    resized = tf.image.resize(anomaly_map[..., None], size, method="bilinear", antialias=True)
    return resized.numpy()[..., 0]


def list_image_files(paths) -> list[Path]:
    """Image files from files and folders (folders recursively, sorted; hidden skipped).

    A folder yields its files with an image extension (PNG, JPEG, BMP) and, as in the
    datasets, also every other non-hidden file, which is then reported as a bad file;
    a path given explicitly is kept whatever its extension (checked when read).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    files = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"Input {str(p)!r} does not exist.")
        if p.is_dir():
            files.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            files.append(p)
    return files
