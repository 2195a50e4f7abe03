"""``evaluate(model, test_data, ...)``: scores a test set and reports every metric.

The scoring settings (map, smoothing, score) are fixed by the caller, and by
default are ``keras_skipae.scoring``'s documented defaults; ``evaluate`` never
tries several and keeps the best on the test data (the reference code reported
the best of four norms chosen on the test set; we don't). The production
threshold comes from an explicit value or from *good validation images only*
(``metrics.threshold_from_good``), never from the test set. The F1-max
threshold is reported too, but it is an oracle on the test set: a diagnostic,
not something to deploy.

Example:
    >>> import keras_skipae as ks
    >>> result = ks.evaluate(model, test_ds, val_data=val_ds, out_dir="runs/x/eval")
    >>> result.image_auroc, result.pixel_auroc, result.aupro, result.threshold
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from keras_skipae import scoring as _scoring
from keras_skipae.evaluation import metrics as _metrics
from keras_skipae.evaluation.batches import score_dataset
from keras_skipae.evaluation.pro import check_max_fpr
from keras_skipae.evaluation.report import (
    EVALUATION_ENTRIES,
    OUTPUT_FILES,
    _write_outputs,
)
from keras_skipae.evaluation.result import EvaluationResult
from keras_skipae.ops.tiling import check_tiling
from keras_skipae.ownership import check_replaceable
from keras_skipae.scoring.threshold import check_threshold


def _model_channels(model) -> int | None:
    """The channel count of the model's image input (None when it is not known); a wrapper
    with a ``base`` model (the anomaly head) takes the base's images."""
    try:
        shape = getattr(model, "base", model).input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, tuple) and len(shape) == 4 and isinstance(shape[-1], int):
        return shape[-1]
    return None


class _LazyScorer:
    """One ``tf.function`` per image shape, with a free batch size (one trace each)."""

    def __init__(self, model, settings):
        self.model = model
        self.settings = settings
        self.fns = {}

    def __call__(self, images):
        key = tuple(images.shape[1:])
        if key not in self.fns:
            self.fns[key] = _scoring.make_scorer(self.model, self.settings, image_shape=key)
        return self.fns[key](images)


def _check_options(batch_size, threshold, threshold_percentile, max_fpr):
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size!r}")
    threshold = check_threshold(threshold)
    check_max_fpr(max_fpr)
    if not 0 <= float(threshold_percentile) <= 100:
        raise ValueError(
            "Expected `threshold_percentile` in [0, 100]. "
            f"Received: threshold_percentile={threshold_percentile!r}"
        )
    return threshold


def _output_paths(out_dir, overwrite):
    """The report's file paths under ``out_dir`` (refusing existing ones early), or None."""
    if out_dir is None:
        return None
    out_dir = Path(out_dir)
    paths = {role: out_dir / name for role, name in OUTPUT_FILES.items()}
    existing = [str(p_) for p_ in paths.values() if p_.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"Evaluation outputs already exist: {existing}. Refusing to overwrite them; "
            "pass overwrite=True (CLI: --overwrite) to replace them."
        )
    check_output_folder(out_dir)
    return paths


def check_output_folder(out_dir, inputs=()) -> None:
    """Raises ``FileExistsError`` when ``out_dir`` holds evaluation outputs that
    ``overwrite=True`` may not replace (:func:`keras_skipae.ownership.check_replaceable`);
    ``inputs``: the paths the evaluation reads."""
    out_dir = Path(out_dir)
    if any((out_dir / name).exists() for name in OUTPUT_FILES.values()):
        check_replaceable(out_dir, "evaluation", inputs=inputs, allowed=EVALUATION_ENTRIES)


def _production_threshold(
    scorer, val_data, threshold, percentile, batch_size, progress, channels=None
):
    """``(threshold, source, n_good_val)``: explicit, else from good validation images."""
    if threshold is not None:
        if val_data is not None:
            warnings.warn(
                "Both `threshold` and `val_data` given: using the explicit threshold.", stacklevel=3
            )
        return threshold, "explicit", None
    if val_data is None:
        return None, None, None
    val = score_dataset(
        scorer,
        val_data,
        batch_size,
        keep=False,
        progress=progress,
        desc="Scoring validation",
        channels=channels,
    )
    good = val["scores"][val["labels"] == 0]
    if good.size == 0:
        raise ValueError("`val_data` holds no good image (label 0): cannot set a threshold.")
    return _metrics.threshold_from_good(good, percentile), "val_data", int(good.size)


def evaluate(
    model,
    test_data,
    *,
    val_data=None,
    scoring: _scoring.ScoringConfig | dict | None = None,
    batch_size: int = 16,
    threshold: float | None = None,
    threshold_percentile: float = _metrics.DEFAULT_PERCENTILE,
    max_fpr: float = _metrics.DEFAULT_MAX_FPR,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    tile_size: int | None = None,
    tile_overlap: int = 0,
    tile_batch_size: int = _scoring.DEFAULT_TILE_BATCH,
) -> EvaluationResult:
    """Scores a test set with one fixed scoring recipe and reports every metric.

    Args:
        model: the trained autoencoder (images in [0, 1] -> reconstructions).
        test_data: an unbatched ``tf.data.Dataset`` of dicts with keys
            ``image``, ``mask``, ``label``, ``defect_type``, ``path`` (see
            docs/ARCHITECTURE.md), an already batched one, or any iterable of
            such dicts. ``mask`` is optional (no pixel metrics without it);
            ``label`` may be replaced by ``defect_type`` (``"good"`` = 0).
        val_data: good validation images (same format), used only to set the
            production threshold; images labelled defective are ignored.
        scoring: a :class:`keras_skipae.scoring.ScoringConfig` (or its dict):
            map, smoothing, score; None: the defaults.
        batch_size: images per scoring batch.
        threshold: an explicit production threshold (wins over ``val_data``).
        threshold_percentile: the percentile of good validation scores used
            as the threshold when ``val_data`` is given.
        max_fpr: the AUPRO FPR limit.
        out_dir: if given, writes ``metrics.json``, ``roc_image.png``,
            ``roc_pixel.png`` (with masks), ``cases.png`` (input /
            reconstruction / map / ground truth / overlay for the worst and
            best cases) and ``score_histogram.png`` there.
        overwrite: replace existing output files (otherwise
            ``FileExistsError``, raised before any scoring), only in a folder that
            ``evaluate`` made and that holds nothing else (``docs/cli.md``).
        progress: show a progress bar over batches.
        tile_size: score the images at full resolution, tile by tile, with tiles of
            this size (the model's input size, :func:`keras_skipae.scoring.compute_tiled`):
            the images, masks and validation images are then full-size frames. The
            threshold from ``val_data`` is then a threshold for tiled scores. None:
            the images go to the model as they are.
        tile_overlap: the least overlap of neighbouring tiles.
        tile_batch_size: tiles per model call.

    Returns:
        An ``EvaluationResult``.

    Raises:
        ValueError: bad settings, an empty test set, no good image in
            ``val_data``, or masks that do not match the images.
        FileExistsError: an output file exists and ``overwrite`` is False.

    Example:
        >>> result = evaluate(model, test_ds, val_data=val_ds)
        >>> print(result.image_auroc, result.threshold, result.recall)
    """
    cfg = _scoring.ScoringConfig.resolve(scoring, caller="evaluate")
    threshold = _check_options(batch_size, threshold, threshold_percentile, max_fpr)
    paths = _output_paths(out_dir, overwrite)
    model = _scoring.float32_model(model)  # scoring runs in float32, as the export's
    tiling = check_tiling(tile_size, tile_overlap)
    scorer = _make_scorer(model, cfg, tiling, tile_batch_size)
    channels = _model_channels(model)
    threshold, threshold_source, n_val = _production_threshold(
        scorer, val_data, threshold, threshold_percentile, batch_size, progress, channels
    )
    test = score_dataset(
        scorer,
        test_data,
        batch_size,
        keep=True,
        progress=progress,
        desc="Scoring test",
        channels=channels,
    )
    if not test["has_labels"]:
        raise ValueError("Expected test elements with a 'label' or 'defect_type' key.")
    m = _metrics.compute_metrics(
        test["labels"],
        test["scores"],
        masks=test["masks"],
        maps=test["maps"] if test["masks"] is not None else None,
        defect_types=test["defect_types"],
        threshold=threshold,
        max_fpr=max_fpr,
    )
    settings = dict(
        cfg.to_dict(),
        method=cfg.map,
        batch_size=batch_size,
        threshold_percentile=float(threshold_percentile),
        max_fpr=float(max_fpr),
        n_val_good=n_val,
        model=getattr(model, "name", None),
    )
    if tiling is not None:  # only then: thresholds compare the tiling of their scores
        settings.update(tile_size=int(tile_size), tile_overlap=int(tile_overlap))
    result = _result(m, test, threshold, threshold_source, settings)
    if paths is not None:
        _write_outputs(result, test, paths, overwrite=overwrite)
    return result


def _make_scorer(model, cfg, tiling, tile_batch_size):
    """A scorer of whole images (one trace per image shape), or of tiles."""
    if tiling is None:
        return _LazyScorer(model, cfg)
    return _scoring.make_tiled_scorer(
        model, cfg, tile_size=tiling[0], tile_overlap=tiling[1], batch_size=tile_batch_size
    )


def _result(m: dict, test: dict, threshold, threshold_source, settings) -> EvaluationResult:
    """The :class:`EvaluationResult` of ``compute_metrics``' ``m`` and the scored test set."""
    metric_fields = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "f1_threshold")
    return EvaluationResult(
        **{k: m[k] for k in metric_fields},
        threshold=threshold,
        threshold_source=threshold_source,
        **{k: m[k] for k in ("precision", "recall", "per_defect", "n_images", "n_good")},
        n_defective=m["n_defective"],
        settings=settings,
        scores=test["scores"],
        labels=test["labels"],
        defect_types=list(test["defect_types"]),
        paths=list(test["paths"]),
    )
