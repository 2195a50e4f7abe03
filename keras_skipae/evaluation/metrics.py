"""Detection and localisation metrics on NumPy arrays.

* ``image_auroc``: ROC AUC of image scores against image labels.
* ``pixel_auroc``: ROC AUC of anomaly-map values against ground-truth pixels,
  all test images pooled.
* ``aupro``: the area under the per-region-overlap (PRO) curve up to a
  false-positive rate of 0.3, divided by 0.3, as in the MVTec AD evaluation
  (Bergmann et al., IJCV 2021). The PRO curve is computed exactly over *every*
  distinct anomaly-map value (one sort of all pixels, as the official MVTec
  script does), not on a grid of thresholds.
* ``f1_max``: the best F1 over all thresholds on the image scores, and that
  threshold.
* ``precision_recall_at``: precision and recall of ``score >= threshold``.
* ``threshold_from_good``: a threshold from *good* validation images only
  (a percentile of their scores), which is all a production line has.
* ``compute_metrics``: all of the above, overall and per defect type (each
  defect type against the good images).

Conventions: label 1 / mask 1 is anomalous; an image or pixel is predicted
anomalous when its score is ``>= threshold`` (as ``keras_skipae.scoring.
is_anomalous``). A metric that is undefined on its input (only one class
present, no ground-truth region, no predicted positive for precision) is
returned as ``nan``, never silently as 0 or 1; malformed input (shape
mismatch, empty arrays, non-finite scores) raises ``ValueError``.

Example:
    >>> from keras_skipae.evaluation import metrics
    >>> metrics.image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
"""

from __future__ import annotations

import numpy as np

from keras_skipae.evaluation.pro import (
    DEFAULT_MAX_FPR,
    aupro,
    aupro_sorted,
    check_max_fpr,
    masks_maps,
    pro_curve,
    sort_pixels,
    trapezoid,
)
from keras_skipae.io_utils import as_text
from keras_skipae.scoring.threshold import check_threshold

__all__ = [
    "DEFAULT_MAX_FPR",
    "DEFAULT_PERCENTILE",
    "aupro",
    "compute_metrics",
    "f1_max",
    "image_auroc",
    "pixel_auroc",
    "pixel_roc_curve",
    "precision_recall_at",
    "pro_curve",
    "roc_curve",
    "threshold_from_good",
    "trapezoid",
]

DEFAULT_PERCENTILE = 99.0

_NAN = float("nan")


# ----------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------


def _labels_scores(labels, scores, what="scores"):
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(
            f"Expected `labels` and `{what}` with the same number of elements. "
            f"Received: {labels.size} labels and {scores.size} {what}"
        )
    if labels.size == 0:
        raise ValueError(f"Expected non-empty `labels` and `{what}`. Received: 0 elements")
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Expected finite `{what}`. Received: {int(np.sum(~np.isfinite(scores)))} "
            "non-finite values"
        )
    uniq = np.unique(labels)
    if not np.all(np.isin(uniq, [0, 1])):
        raise ValueError(
            f"Expected binary `labels` in {{0, 1}}. Received values {uniq[:5].tolist()}"
        )
    return labels.astype(bool), scores


def _one_class(labels) -> bool:
    return bool(labels.all() or not labels.any())


# ----------------------------------------------------------------------------
# ROC
# ----------------------------------------------------------------------------


def image_auroc(labels, scores) -> float:
    """Image-level ROC AUC.

    Args:
        labels: ``[N]`` 0 good / 1 defective.
        scores: ``[N]`` anomaly scores (higher = more anomalous).

    Returns:
        The AUROC, or nan if only one class is present.

    Example:
        >>> image_auroc([0, 1], [0.2, 0.9])
        1.0
    """
    from sklearn.metrics import roc_auc_score

    labels, scores = _labels_scores(labels, scores)
    if _one_class(labels):
        return _NAN
    return float(roc_auc_score(labels, scores))


def pixel_auroc(masks, maps) -> float:
    """Pixel-level ROC AUC, all images' pixels pooled.

    Computed from one sort of the pixels (ties grouped, trapezoidal rule),
    which equals ``sklearn.metrics.roc_auc_score`` on the flattened arrays
    and is a few times faster on millions of pixels.

    Args:
        masks: ``[N, H, W]`` (or ``[N, H, W, 1]``) ground truth, > 0.5 is anomalous.
        maps: anomaly maps of the same shape.

    Returns:
        The AUROC, or nan if all pixels are of one class.
    """
    masks, maps = masks_maps(masks, maps)
    return _pixel_auroc_sorted(masks, sort_pixels(maps))


def _pixel_auroc_sorted(masks, sorted_pixels):
    order, _, keep = sorted_pixels
    pos = masks.reshape(-1)[order]
    n_pos = int(np.count_nonzero(pos))
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return _NAN
    tpr = np.concatenate([[0.0], np.cumsum(pos, dtype=np.int64)[keep] / n_pos])
    fpr = np.concatenate([[0.0], np.cumsum(~pos, dtype=np.int64)[keep] / n_neg])
    return trapezoid(fpr, tpr)


def roc_curve(labels, scores, *, max_points: int | None = 2000):
    """The ROC curve ``(fpr, tpr)``, thinned for plotting.

    Args:
        labels: ``[N]`` binary labels (or pooled pixel labels).
        scores: ``[N]`` scores.
        max_points: keep at most this many points (the curve is resampled on
            an even FPR grid, keeping its end points); None keeps them all.

    Returns:
        ``(fpr, tpr)`` as float arrays, or ``(None, None)`` with one class.
    """
    from sklearn.metrics import roc_curve as _roc

    labels, scores = _labels_scores(labels, scores)
    if _one_class(labels):
        return None, None
    fpr, tpr, _ = _roc(labels, scores)
    return _thin(fpr, tpr, max_points)


def pixel_roc_curve(masks, maps, *, max_points: int | None = 2000):
    """The pixel-level ROC curve ``(fpr, tpr)``, pooled and thinned for plotting.

    Args:
        masks: ``[N, H, W]`` (or ``[N, H, W, 1]``) ground truth.
        maps: anomaly maps of the same shape.
        max_points: as in ``roc_curve``.

    Returns:
        ``(fpr, tpr)``, or ``(None, None)`` when all pixels are of one class.
    """
    masks, maps = masks_maps(masks, maps)
    order, _, keep = sort_pixels(maps)
    pos = masks.reshape(-1)[order]
    n_pos = int(np.count_nonzero(pos))
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None, None
    tpr = np.concatenate([[0.0], np.cumsum(pos, dtype=np.int64)[keep] / n_pos])
    fpr = np.concatenate([[0.0], np.cumsum(~pos, dtype=np.int64)[keep] / n_neg])
    return _thin(fpr, tpr, max_points)


def _thin(fpr, tpr, max_points):
    if max_points is not None and fpr.size > max_points:
        grid = np.linspace(0.0, 1.0, max_points)
        # tpr is the upper envelope at repeated fpr values: take the last one.
        last = np.searchsorted(fpr, grid, side="right") - 1
        fpr, tpr = grid, tpr[np.clip(last, 0, tpr.size - 1)]
    return fpr, tpr


# ----------------------------------------------------------------------------
# Thresholds
# ----------------------------------------------------------------------------


def f1_max(labels, scores) -> tuple[float, float]:
    """The best F1 score over all thresholds, and the threshold reaching it.

    Args:
        labels: ``[N]`` 0/1.
        scores: ``[N]``.

    Returns:
        ``(f1, threshold)`` with images ``score >= threshold`` predicted
        defective; ``(nan, nan)`` if there is no defective image.
    """
    from sklearn.metrics import precision_recall_curve

    labels, scores = _labels_scores(labels, scores)
    if not labels.any():
        return _NAN, _NAN
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def precision_recall_at(labels, scores, threshold: float) -> tuple[float, float]:
    """Precision and recall of the decision ``score >= threshold``.

    Args:
        labels: ``[N]`` 0/1.
        scores: ``[N]``.
        threshold: the decision threshold.

    Returns:
        ``(precision, recall)``; precision is nan when nothing is predicted
        defective, recall is nan when there is no defective image.
    """
    labels, scores = _labels_scores(labels, scores)
    pred = scores >= check_threshold(threshold, required=True)
    tp = int(np.count_nonzero(pred & labels))
    n_pred = int(np.count_nonzero(pred))
    n_pos = int(np.count_nonzero(labels))
    precision = tp / n_pred if n_pred else _NAN
    recall = tp / n_pos if n_pos else _NAN
    return precision, recall


def threshold_from_good(scores, percentile: float = DEFAULT_PERCENTILE) -> float:
    """A decision threshold from the scores of good images only.

    The ``percentile``-th percentile (linear interpolation, ``np.percentile``)
    of good validation scores: about ``100 - percentile`` % of good images at
    or above it are flagged (a false-alarm budget). No defective image is
    needed, as on a production line.

    Args:
        scores: ``[N]`` scores of good images (never test images).
        percentile: in [0, 100].

    Returns:
        The threshold (a float).

    Raises:
        ValueError: no scores, non-finite scores, or a percentile outside [0, 100].

    Example:
        >>> threshold_from_good(val_scores, percentile=99.0)
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("Expected at least one good-image score. Received: 0 scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError("Expected finite good-image `scores`. Received non-finite values")
    try:
        pct = float(percentile)
    except (TypeError, ValueError):
        pct = _NAN
    if not 0 <= pct <= 100:
        raise ValueError(f"Expected `percentile` in [0, 100]. Received: percentile={percentile!r}")
    return float(np.percentile(scores, pct))


# ----------------------------------------------------------------------------
# Everything, per defect type
# ----------------------------------------------------------------------------


def _subset_metrics(labels, scores, masks, maps, threshold, max_fpr):
    out = {
        "n_images": int(labels.size),
        "n_good": int(np.count_nonzero(~labels)),
        "n_defective": int(np.count_nonzero(labels)),
        "image_auroc": image_auroc(labels, scores),
    }
    out["f1_max"], out["f1_threshold"] = f1_max(labels, scores)
    if threshold is not None:
        out["precision"], out["recall"] = precision_recall_at(labels, scores, threshold)
    else:
        out["precision"] = out["recall"] = None
    if masks is not None:
        sorted_pixels = sort_pixels(maps)  # one sort for both pixel metrics
        out["pixel_auroc"] = _pixel_auroc_sorted(masks, sorted_pixels)
        out["aupro"] = aupro_sorted(masks, sorted_pixels, max_fpr)
    else:
        out["pixel_auroc"] = out["aupro"] = _NAN
    return out


def compute_metrics(
    labels,
    scores,
    *,
    masks=None,
    maps=None,
    defect_types=None,
    threshold: float | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
) -> dict:
    """All metrics, overall and per defect type.

    Each defect type is scored against the good images (label 0) alone, as
    in the MVTec AD per-category tables.

    Args:
        labels: ``[N]`` 0 good / 1 defective.
        scores: ``[N]`` image scores.
        masks: ``[N, H, W]`` ground truth, or None for no pixel metrics.
        maps: ``[N, H, W]`` anomaly maps (required with ``masks``).
        defect_types: ``[N]`` strings (``"good"`` for good images), or None.
        threshold: a production threshold for precision/recall, or None.
        max_fpr: the AUPRO integration limit.

    Returns:
        A dict with ``n_images``, ``n_good``, ``n_defective``,
        ``image_auroc``, ``pixel_auroc``, ``aupro``, ``f1_max``,
        ``f1_threshold``, ``precision``, ``recall`` (None without a
        threshold) and ``per_defect``: ``{defect_type: same keys}``.
    """
    labels, scores = _labels_scores(labels, scores)
    check_max_fpr(max_fpr)
    if (masks is None) != (maps is None):
        raise ValueError("Expected both `masks` and `maps`, or neither.")
    if masks is not None:
        masks, maps = masks_maps(masks, maps)
        if masks.shape[0] != labels.size:
            raise ValueError(
                f"Expected one mask per image. Received: {masks.shape[0]} masks, "
                f"{labels.size} labels"
            )
    result = _subset_metrics(labels, scores, masks, maps, threshold, max_fpr)
    per_defect = {}
    if defect_types is not None:
        defect_types = np.asarray([as_text(d) for d in np.asarray(defect_types).reshape(-1)])
        if defect_types.size != labels.size:
            raise ValueError(
                f"Expected one defect type per image. Received: {defect_types.size} defect "
                f"types, {labels.size} labels"
            )
        good = ~labels
        for name in sorted(set(defect_types[labels].tolist())):
            sel = good | (labels & (defect_types == name))
            per_defect[name] = _subset_metrics(
                labels[sel],
                scores[sel],
                None if masks is None else masks[sel],
                None if maps is None else maps[sel],
                threshold,
                max_fpr,
            )
    result["per_defect"] = per_defect
    return result
