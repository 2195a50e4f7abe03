"""The decision threshold's one check: :func:`check_threshold`.

An image is anomalous when ``score >= threshold`` (:func:`~keras_skipae.scoring.is_anomalous`);
every function that takes a threshold (``evaluate``, the metrics, ``Detector``, the
exports, the apps) checks it here.
"""

from __future__ import annotations

import math


def check_threshold(threshold, *, required: bool = False) -> float | None:
    """``threshold`` as a float; None stays None unless ``required``.

    Args:
        threshold: a number (a NumPy scalar, a numeric string), or None.
        required: refuse None (for functions that always decide).

    Returns:
        The threshold as a Python float, or None.

    Raises:
        ValueError: a value that is not a finite number (NaN, infinite, not numeric), or
            None when ``required``.
    """
    if threshold is None and not required:
        return None
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        expected = "a finite `threshold`" if required else "a finite `threshold` or None"
        raise ValueError(f"Expected {expected}. Received: threshold={threshold!r}")
    return value
