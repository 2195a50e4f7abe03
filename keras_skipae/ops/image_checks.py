"""The one check of an image batch given as an array: :func:`check_images`.

``ks.evaluate``, the :class:`~keras_skipae.inference.Detector` (arrays and datasets) and
the edge runtimes (:mod:`keras_skipae.export.runtimes`) check their images with it. It
imports NumPy only and nothing from keras_skipae, so the edge export's verify step,
which runs ``runtimes.py`` as a script in a fresh process, loads this file by its path.
"""

from __future__ import annotations

import numpy as np

#: Integer dtypes an image batch may have (divided by their largest value when scored).
INTEGER_DTYPES = (np.uint8, np.uint16)


def check_images(
    images,
    *,
    channels: int | None = None,
    color_mode: str | None = None,
    shape=None,
    owner: str = "The model",
    name: str = "images",
    labels=None,
    check_dtype: bool = False,
    unit_range: bool = False,
) -> np.ndarray:
    """Checks a batch of images ``[N, H, W, C]`` and returns it as an array.

    Args:
        images: the batch (an array or anything ``np.asarray`` takes).
        channels: the channel count the images must have (None: any).
        color_mode: how to load images of ``channels`` (named in the error).
        shape: ``(H, W, C)`` the images must have (None: any).
        owner: what takes the images, as the errors name it (``"The model"``,
            ``"The export 'x.onnx'"``).
        name: how the errors name the batch (``"images"``, ``"x"``).
        labels: one name per image (its path), used by the error on non-finite
            pixels; None: the images' indices.
        check_dtype: refuse dtypes other than floats, uint8 and uint16.
        unit_range: refuse float pixels outside [0, 1].

    Returns:
        ``images`` as a NumPy array (not converted).

    Raises:
        ValueError: another rank, shape or channel count, dtype (``check_dtype``),
            NaN or infinite float pixels (naming the images), or float pixels outside
            [0, 1] (``unit_range``).
    """
    images = np.asarray(images)
    if images.ndim != 4 or (shape is not None and tuple(images.shape[1:]) != tuple(shape)):
        expected = "[N, H, W, C]" if shape is None else "[B, {}, {}, {}]".format(*shape)
        raise ValueError(
            f"{owner} takes images {expected}. Received: {name} with shape {images.shape}"
        )
    if channels is not None and images.shape[-1] != channels:
        load = f"; load the images with color_mode={color_mode!r}" if color_mode else ""
        raise ValueError(
            f"{owner} takes {channels} channel(s){load}. Received: {name} with shape {images.shape}"
        )
    floating = np.issubdtype(images.dtype, np.floating)
    if check_dtype and not floating and images.dtype not in INTEGER_DTYPES:
        raise ValueError(
            f"Expected float images in [0, 1], uint8 or uint16. Received: {name} with "
            f"dtype={images.dtype}"
        )
    if not floating:
        return images
    bad = np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))
    if bad.size:
        if labels is None:
            where = f" {bad[:5].tolist()}"
        else:
            where = ": " + ", ".join(str(labels[i]) for i in bad[:5])
        raise ValueError(
            f"Expected finite pixel values. Received: {name} with NaN or infinite values "
            f"in {bad.size} image(s){where}"
        )
    if unit_range:
        low, high = float(images.min(initial=0.0)), float(images.max(initial=0.0))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"Expected float pixel values in [0, 1] (uint8 is divided by 255). "
                f"Received: {name} with values in [{low:g}, {high:g}]"
            )
    return images
