"""The per-region overlap (PRO) curve and its area, AUPRO (MVTec AD's localisation metric).

:mod:`keras_skipae.evaluation.metrics` exports :func:`pro_curve`, :func:`aupro` and
:func:`trapezoid`; the pixel helpers here (:func:`masks_maps`, :func:`sort_pixels`) are
shared with its pixel AUROC, which sorts the pixels once for both.
"""

from __future__ import annotations

import numpy as np

#: The FPR limit of AUPRO (the MVTec AD evaluation's).
DEFAULT_MAX_FPR = 0.3

_NAN = float("nan")


def masks_maps(masks, maps):
    masks = np.asarray(masks)
    maps = np.asarray(maps, dtype=np.float32)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if masks.ndim == 2:
        masks = masks[None]
    if maps.ndim == 2:
        maps = maps[None]
    if masks.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            "Expected `masks` and `maps` of the same shape [N, H, W] (or [N, H, W, 1]). "
            f"Received: masks {masks.shape}, maps {maps.shape}"
        )
    if masks.size == 0:
        raise ValueError("Expected non-empty `masks` and `maps`. Received: 0 pixels")
    if not np.all(np.isfinite(maps)):
        raise ValueError("Expected finite anomaly `maps`. Received non-finite values")
    return masks > 0.5, maps


def sort_pixels(maps):
    """Descending order of the pixels, the sorted values and the tie-run ends."""
    flat = maps.reshape(-1)
    order = np.argsort(flat)[::-1]
    sorted_scores = flat[order]
    # One point per distinct value: the last index of each run of ties.
    keep = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    return order, sorted_scores, keep


def _components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean mask; 0 is background."""
    import cv2

    _, labeled = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labeled


def pro_curve(masks, maps):
    """The exact PRO curve: per-region overlap against pixel FPR.

    For a threshold ``t``, pixels with ``map >= t`` are predicted anomalous.
    FPR is the fraction of all ground-truth-negative pixels (of all images)
    predicted anomalous; PRO is the mean, over every 8-connected ground-truth
    region of every image, of the fraction of the region predicted anomalous.
    The curve has one point per distinct map value (descending thresholds),
    plus ``(0, 0)`` and ``(1, 1)``; computed with one sort of the pixels, as
    the official MVTec AD evaluation script does.

    Args:
        masks: ``[N, H, W]`` (or ``[N, H, W, 1]``) ground truth.
        maps: anomaly maps of the same shape.

    Returns:
        ``(fpr, pro, thresholds)``, with ``thresholds`` ``inf`` at the (0, 0)
        point and ``-inf`` at the (1, 1) point; ``(None, None, None)`` when
        there is no ground-truth region or no negative pixel.
    """
    masks, maps = masks_maps(masks, maps)
    return pro_curve_sorted(masks, sort_pixels(maps))


def pro_curve_sorted(masks, sorted_pixels):
    n_ok = int(np.count_nonzero(~masks))
    pro_changes = np.zeros(masks.size, dtype=np.float64)
    per_image = masks.shape[1] * masks.shape[2]
    n_regions = 0
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        labeled = _components(mask)
        sizes = np.bincount(labeled.reshape(-1))
        n_regions += sizes.size - 1
        inv = np.zeros(sizes.size, dtype=np.float64)
        inv[1:] = 1.0 / sizes[1:]
        pro_changes[i * per_image : (i + 1) * per_image] = inv[labeled.reshape(-1)]
    if n_regions == 0 or n_ok == 0:
        return None, None, None
    order, sorted_scores, keep = sorted_pixels
    fpr = np.cumsum(~masks.reshape(-1)[order], dtype=np.int64)[keep] / n_ok
    pro = np.cumsum(pro_changes[order])[keep] / n_regions
    fpr = np.clip(fpr, 0.0, 1.0)
    pro = np.clip(pro, 0.0, 1.0)
    thresholds = sorted_scores[keep].astype(np.float64)
    return (
        np.concatenate([[0.0], fpr, [1.0]]),
        np.concatenate([[0.0], pro, [1.0]]),
        np.concatenate([[np.inf], thresholds, [-np.inf]]),
    )


def trapezoid(x, y, x_max: float | None = None) -> float:
    """Trapezoidal area under ``y(x)`` for ``x <= x_max``, interpolating at ``x_max``.

    ``x`` must be non-decreasing (repeated values are vertical steps).

    Args:
        x: abscissae, non-decreasing.
        y: ordinates.
        x_max: upper integration limit; None integrates over all of ``x``.

    Returns:
        The area (not normalised).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x_max is not None:
        ins = int(np.searchsorted(x, x_max, side="right"))  # first x > x_max
        if ins == 0:
            return 0.0
        if ins < x.size:
            x0, x1, y0, y1 = x[ins - 1], x[ins], y[ins - 1], y[ins]
            y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
            x = np.append(x[:ins], x_max)
            y = np.append(y[:ins], y_at)
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def aupro(masks, maps, *, max_fpr: float = DEFAULT_MAX_FPR) -> float:
    """Area under the PRO curve up to ``max_fpr``, normalised by ``max_fpr``.

    As in the MVTec AD evaluation: a perfect localisation scores 1, a random
    one about ``max_fpr / 2``.

    Args:
        masks: ``[N, H, W]`` (or ``[N, H, W, 1]``) ground truth; good images
            (all-zero masks) contribute false positives only.
        maps: anomaly maps of the same shape.
        max_fpr: the FPR integration limit, in (0, 1].

    Returns:
        The normalised AUPRO, or nan when there is no ground-truth region or
        no negative pixel.

    Example:
        >>> aupro(masks, maps)            # masks [N, H, W] in {0, 1}
    """
    check_max_fpr(max_fpr)
    masks, maps = masks_maps(masks, maps)
    return aupro_sorted(masks, sort_pixels(maps), max_fpr)


def check_max_fpr(max_fpr):
    if not 0 < max_fpr <= 1:
        raise ValueError(f"Expected `max_fpr` in (0, 1]. Received: max_fpr={max_fpr!r}")


def aupro_sorted(masks, sorted_pixels, max_fpr):
    fpr, pro, _ = pro_curve_sorted(masks, sorted_pixels)
    if fpr is None:
        return _NAN
    return trapezoid(fpr, pro, x_max=max_fpr) / max_fpr
