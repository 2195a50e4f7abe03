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

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_skipae import scoring as _scoring
from keras_skipae.evaluation import metrics as _metrics
from keras_skipae.evaluation.report import (
    EVALUATION_ENTRIES,
    OUTPUT_FILES,
    _write_outputs,
)
from keras_skipae.io_utils import as_text, jsonable, to_uint8, write_text
from keras_skipae.ops.tiling import check_tiling
from keras_skipae.ownership import check_replaceable
from keras_skipae.scoring.threshold import check_threshold


@dataclasses.dataclass
class EvaluationResult:
    """Everything ``evaluate`` measured.

    Metrics that are undefined on the test set (e.g. AUROC with no good image,
    pixel metrics with no ground-truth mask) are ``nan``; ``to_dict`` turns
    them into ``None`` (JSON ``null``).

    Attributes:
        image_auroc: image-level ROC AUC.
        pixel_auroc: pixel-level ROC AUC (all test pixels pooled).
        aupro: area under the PRO curve up to FPR 0.3, normalised (MVTec AD).
        f1_max: best image-level F1 over thresholds (an oracle on the test set).
        f1_threshold: the threshold reaching ``f1_max``.
        threshold: the production threshold (``score >= threshold`` is
            defective): the explicit one, or a percentile of good validation
            scores; None if neither was given.
        threshold_source: ``"explicit"``, ``"val_data"`` or None.
        precision: image-level precision at ``threshold`` (None without one).
        recall: image-level recall at ``threshold`` (None without one).
        per_defect: ``{defect_type: {image_auroc, pixel_auroc, aupro, f1_max,
            f1_threshold, precision, recall, n_images, n_good, n_defective}}``,
            each defect type against the good test images.
        n_images, n_good, n_defective: test-set counts.
        settings: the scoring settings and evaluation options used.
        scores, labels, defect_types, paths: per test image, in input order.
        files: ``{role: path}`` of the files written (empty without ``out_dir``).
    """

    image_auroc: float
    pixel_auroc: float
    aupro: float
    f1_max: float
    f1_threshold: float
    threshold: float | None
    threshold_source: str | None
    precision: float | None
    recall: float | None
    per_defect: dict
    n_images: int
    n_good: int
    n_defective: int
    settings: dict
    scores: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0))
    labels: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0, int))
    defect_types: list = dataclasses.field(repr=False, default_factory=list)
    paths: list = dataclasses.field(repr=False, default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)

    def to_dict(self, *, include_images: bool = True) -> dict:
        """A JSON-ready dict (nan -> None).

        Args:
            include_images: add ``images``: one ``{path, defect_type, label,
                score}`` per test image.
        """
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("scores", "labels", "defect_types", "paths"):
                continue
            out[f.name] = jsonable(getattr(self, f.name), allow_nan=False)
        if include_images:
            out["images"] = [
                {"path": p, "defect_type": d, "label": int(lab), "score": float(s)}
                for p, d, lab, s in zip(self.paths, self.defect_types, self.labels, self.scores)
            ]
        return out

    def summary(self) -> str:
        """A short plain-text table: overall metrics, then one row per defect type."""

        def f(value):
            return "  n/a" if value is None or value != value else f"{value:5.3f}"

        s = self.settings
        lines = [
            f"{self.n_images} test images ({self.n_good} good, {self.n_defective} defective); "
            f"map={s.get('map')}, smoothing={s.get('smoothing')}, score={s.get('score')}",
            f"{'':16s} {'image AUROC':>11s} {'pixel AUROC':>11s} {'AUPRO':>9s} {'F1-max':>9s}"
            f" {'recall':>9s}",
            f"{'all':16s} {f(self.image_auroc):>11s} {f(self.pixel_auroc):>11s}"
            f" {f(self.aupro):>9s} {f(self.f1_max):>9s} {f(self.recall):>9s}",
        ]
        for name, m in self.per_defect.items():
            lines.append(
                f"{name[:16]:16s} {f(m['image_auroc']):>11s} {f(m['pixel_auroc']):>11s}"
                f" {f(m['aupro']):>9s} {f(m['f1_max']):>9s} {f(m['recall']):>9s}"
            )
        if self.threshold is not None:
            lines.append(
                f"threshold {self.threshold:.5g} ({self.threshold_source}): precision "
                f"{f(self.precision).strip()}, recall {f(self.recall).strip()}"
            )
        else:
            lines.append("no production threshold (pass val_data or threshold)")
        return "\n".join(lines)

    def to_json(
        self,
        path: str | os.PathLike | None = None,
        *,
        overwrite: bool = False,
        include_images: bool = True,
    ) -> str:
        """The result as JSON text; also written (atomically) to ``path`` if given."""
        text = json.dumps(self.to_dict(include_images=include_images), indent=2) + "\n"
        if path is not None:
            write_text(path, text, overwrite=overwrite)
        return text


def _iter_batches(data, batch_size: int) -> Iterator[dict]:
    """Yields batches as dicts of NumPy arrays (leading batch axis)."""
    try:
        is_dataset = isinstance(data, tf.data.Dataset)
    except ImportError:  # pragma: no cover
        is_dataset = False
    if is_dataset:
        spec = data.element_spec
        if not isinstance(spec, dict) or "image" not in spec:
            raise ValueError(
                "Expected a dataset of dicts with at least an 'image' key (see "
                f"docs/ARCHITECTURE.md). Received: element_spec={spec}"
            )
        if spec["image"].shape.rank != 4:
            data = data.batch(batch_size)
        yield from data.prefetch(2).as_numpy_iterator()
        return
    if isinstance(data, dict):
        raise ValueError(
            "Expected `test_data` as a tf.data.Dataset or an iterable of dicts. "
            "Received: a single dict"
        )
    buffer = []
    for element in data:
        if not isinstance(element, dict) or "image" not in element:
            raise ValueError(
                "Expected elements that are dicts with at least an 'image' key. "
                f"Received: {type(element).__name__}"
            )
        buffer.append(element)
        if len(buffer) == batch_size:
            yield _stack(buffer)
            buffer = []
    if buffer:
        yield _stack(buffer)


def _stack(elements):
    keys = set(elements[0])
    return {k: np.stack([np.asarray(e[k]) for e in elements]) for k in keys}


def _n_batches(data, batch_size):
    try:
        if isinstance(data, tf.data.Dataset):
            n = int(data.cardinality())
            if n < 0:
                return None
            if data.element_spec["image"].shape.rank == 4:
                return n
            return math.ceil(n / batch_size)
    except Exception:  # noqa: BLE001 - only a progress-bar total
        return None
    try:
        return math.ceil(len(data) / batch_size)
    except TypeError:
        return None


def _progress(iterable, *, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def _labels_of(batch, n):
    if "label" in batch:
        return np.asarray(batch["label"]).reshape(-1).astype(int)
    if "defect_type" in batch:
        return np.array([0 if as_text(d) == "good" else 1 for d in batch["defect_type"]])
    return None


def _score_dataset(scorer, data, batch_size, *, keep, progress, desc, channels=None):
    """Runs the scorer over ``data``; returns per-image arrays (and the cases data)."""
    out = {
        "scores": [],
        "labels": [],
        "defect_types": [],
        "paths": [],
        "masks": [],
        "maps": [],
        "images": [],
        "recons": [],
    }
    has_labels = has_masks = True
    total = _n_batches(data, batch_size)
    for batch in _progress(
        _iter_batches(data, batch_size), total=total, desc=desc, enabled=progress
    ):
        images = np.asarray(batch["image"])
        if images.ndim != 4:
            raise ValueError(
                f"Expected images of shape [H, W, C] per element. Received a batch of shape "
                f"{images.shape}"
            )
        _check_images(images, batch, channels)
        result = scorer(_scoring.to_float_images(images))  # uint8 / uint16 -> [0, 1]
        scores = result["score"].numpy()
        n = scores.shape[0]
        out["scores"].append(scores)
        labels = _labels_of(batch, n)
        if labels is None:
            has_labels = False
            labels = np.zeros(n, int)
        out["labels"].append(labels)
        if "defect_type" in batch:
            out["defect_types"] += [as_text(d) for d in batch["defect_type"]]
        else:
            out["defect_types"] += ["good" if lab == 0 else "defective" for lab in labels]
        out["paths"] += [as_text(p) for p in batch["path"]] if "path" in batch else [""] * n
        if not keep:
            continue
        maps = result["anomaly_map"].numpy()
        if "mask" in batch:
            mask = np.asarray(batch["mask"])
            mask = mask[..., 0] if mask.ndim == 4 else mask
            if mask.shape != maps.shape:
                raise ValueError(
                    f"Expected ground-truth masks of the images' size {maps.shape[1:]}. "
                    f"Received: masks of shape {mask.shape[1:]}"
                )
            out["masks"].append(mask > 0.5)
        else:
            has_masks = False
        out["maps"].append(maps.astype(np.float32))
        out["images"].append(to_uint8(images))
        out["recons"].append(to_uint8(result["reconstruction"].numpy()))
    if not out["scores"]:
        raise ValueError(f"Received an empty dataset ({desc}): no image to evaluate.")
    arrays = {
        "scores": np.concatenate(out["scores"]).astype(np.float64),
        "labels": np.concatenate(out["labels"]),
        "defect_types": out["defect_types"],
        "paths": out["paths"],
        "has_labels": has_labels,
    }
    if keep:
        arrays["maps"] = np.concatenate(out["maps"])
        arrays["masks"] = np.concatenate(out["masks"]) if has_masks else None
        arrays["images"] = np.concatenate(out["images"])
        arrays["recons"] = np.concatenate(out["recons"])
    return arrays


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


def _check_images(images, batch, channels) -> None:
    """Refuses a channel count the model does not take, and NaN / infinite pixels (their
    scores would be NaN), naming the images."""
    if channels is not None and images.shape[-1] != channels:
        mode = {1: "grayscale", 3: "rgb"}.get(channels, f"{channels} channels")
        raise ValueError(
            f"The model takes {channels} channel(s); load the images with "
            f"color_mode={mode!r}. Received: images of shape {images.shape[1:]}"
        )
    if not np.issubdtype(images.dtype, np.floating):
        return
    bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if bad.any():
        where = [as_text(p) for p in np.asarray(batch["path"])[bad]] if "path" in batch else []
        where = where if any(where) else [f"batch image {i}" for i in np.flatnonzero(bad)]
        raise ValueError(
            f"Expected finite pixel values. Received: NaN or infinite values in {len(where)} "
            f"image(s): {', '.join(where[:5])}"
        )


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
    if not 0 < max_fpr <= 1:
        raise ValueError(f"Expected `max_fpr` in (0, 1]. Received: max_fpr={max_fpr!r}")
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
    val = _score_dataset(
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
    **legacy,
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
        **legacy: the deprecated scoring keywords (``method=``/``map=``,
            ``smoothing=``, ``score=``, ...), for one release.

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
    cfg = _scoring.ScoringConfig.resolve(scoring, caller="evaluate", **legacy)
    threshold = _check_options(batch_size, threshold, threshold_percentile, max_fpr)
    paths = _output_paths(out_dir, overwrite)
    model = _scoring.float32_model(model)  # scoring runs in float32, as the export's
    if check_tiling(tile_size, tile_overlap) is None:
        scorer = _LazyScorer(model, cfg)
    else:
        scorer = _scoring.make_tiled_scorer(
            model,
            cfg,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            batch_size=tile_batch_size,
        )
    channels = _model_channels(model)
    threshold, threshold_source, n_val = _production_threshold(
        scorer, val_data, threshold, threshold_percentile, batch_size, progress, channels
    )
    test = _score_dataset(
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
    labels, scores, masks = test["labels"], test["scores"], test["masks"]
    m = _metrics.compute_metrics(
        labels,
        scores,
        masks=masks,
        maps=test["maps"] if masks is not None else None,
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
    if tile_size is not None:  # only then: thresholds compare the tiling of their scores
        settings.update(tile_size=int(tile_size), tile_overlap=int(tile_overlap))
    metric_fields = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "f1_threshold")
    result = EvaluationResult(
        **{k: m[k] for k in metric_fields},
        threshold=threshold,
        threshold_source=threshold_source,
        **{k: m[k] for k in ("precision", "recall", "per_defect", "n_images", "n_good")},
        n_defective=m["n_defective"],
        settings=settings,
        scores=scores,
        labels=labels,
        defect_types=list(test["defect_types"]),
        paths=list(test["paths"]),
    )
    if paths is not None:
        _write_outputs(result, test, paths, overwrite=overwrite)
    return result
