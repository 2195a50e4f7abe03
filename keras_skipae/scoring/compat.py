"""Whether a stored production threshold applies to a scoring: :func:`stored_threshold`.

A threshold is a score on one scale: it applies only to scores computed with the same
scoring settings (map, smoothing, image score, ...) and the same tiling as the ones it
was set on. ``keras-skipae evaluate`` stores it with those settings in
``<run>/evaluation/metrics.json``; export and prediction read it back
(:meth:`keras_skipae.runs.RunFolder.threshold`) through this rule.
"""

from __future__ import annotations

from keras_skipae.scoring.config import FIELDS, ScoringConfig

# The settings every metrics document records (older ones may lack smoothing_border).
_REQUIRED = ("map", "smoothing", "score")


def describe_tiling(tiling) -> str:
    """``"no tiling"`` or ``"tile_size=T, tile_overlap=O"``."""
    return "no tiling" if tiling is None else f"tile_size={tiling[0]}, tile_overlap={tiling[1]}"


def _recorded_tiling(settings: dict) -> tuple[int, int] | None:
    size = settings.get("tile_size")
    return None if size is None else (int(size), int(settings.get("tile_overlap") or 0))


def stored_threshold(metrics: dict, scoring, tiling, *, where: str = "metrics.json"):
    """The production threshold of an evaluation's ``metrics.json``, if it applies.

    Args:
        metrics: the document (``threshold`` and the ``settings`` it was computed with).
        scoring: the :class:`~keras_skipae.scoring.ScoringConfig` (or its dict) the
            threshold is meant for.
        tiling: the ``(tile_size, tile_overlap)`` of the scores it is meant for, or None
            for untiled scores. A threshold of tiled scores does not apply to untiled
            ones, or to another tiling.
        where: how the reason names the document (its path).

    Returns:
        ``(threshold, problem)``: the threshold when the document has one computed with
        the same scoring settings and tiling; otherwise threshold None and ``problem``
        says why.
    """
    if not isinstance(scoring, ScoringConfig):
        scoring = ScoringConfig.from_dict(scoring)
    threshold = metrics.get("threshold")
    if threshold is None:
        return None, f"{where!r} holds no production threshold"
    recorded = metrics.get("settings") or {}
    missing = [k for k in _REQUIRED if k not in recorded]
    differ = ScoringConfig.from_dict(recorded).differences(
        scoring, keys=[k for k in FIELDS if k in recorded or k == "smoothing_border"]
    )
    if differ or missing:
        detail = ", ".join(differ)
        return None, (
            f"the threshold in {where!r} was computed with other scoring "
            "settings" + (f": {detail}" if detail else f" (it does not record {missing})")
        )
    wanted = None if tiling is None else (int(tiling[0]), int(tiling[1] or 0))
    used = _recorded_tiling(recorded)
    if used != wanted:
        return None, (
            f"the threshold in {where!r} was computed with "
            f"{describe_tiling(used)}, not {describe_tiling(wanted)}"
        )
    return float(threshold), None
