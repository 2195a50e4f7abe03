"""The files ``evaluate(out_dir=...)`` writes: metrics, ROC curves, cases, histogram."""

from __future__ import annotations

import numpy as np

from keras_skipae import plotting
from keras_skipae.evaluation import metrics as _metrics
from keras_skipae.io_utils import check_writable
from keras_skipae.ownership import mark_owned

#: The files ``evaluate(..., out_dir=...)`` writes, by role.
OUTPUT_FILES = {
    "metrics": "metrics.json",
    "roc_image": "roc_image.png",
    "roc_pixel": "roc_pixel.png",
    "cases": "cases.png",
    "histogram": "score_histogram.png",
}
#: Every entry an evaluation folder may hold (the demo adds ``training_preview.png``):
#: ``overwrite=True`` replaces the outputs of a folder that holds nothing else.
EVALUATION_ENTRIES = (*OUTPUT_FILES.values(), "training_preview.png")


# Rows per group in the cases grid (worst / best, defective / good).
_CASES_PER_GROUP = 2


def _write_outputs(result, test, paths, *, overwrite):
    import matplotlib.pyplot as plt

    for path in paths.values():
        check_writable(path, overwrite=overwrite, what="evaluation output")
    folder = paths["metrics"].parent
    created = not folder.is_dir() or not any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    if created:
        mark_owned(folder, "evaluation")
    labels, scores = result.labels, result.scores
    types = np.asarray(result.defect_types)
    written = {}

    # ROC curves: overall first, then each defect type against the good images.
    curves = _roc_curves(
        _metrics.roc_curve, (labels, scores), result.image_auroc, result, types, "image_auroc"
    )
    fig = plotting.plot_roc_curves(curves, title="Image-level ROC", path=paths["roc_image"])
    plt.close(fig)
    written["roc_image"] = str(paths["roc_image"])

    masks, maps = test["masks"], test["maps"]
    if masks is not None:
        curves = _roc_curves(
            _metrics.pixel_roc_curve,
            (masks, maps),
            result.pixel_auroc,
            result,
            types,
            "pixel_auroc",
        )
        fig = plotting.plot_roc_curves(curves, title="Pixel-level ROC", path=paths["roc_pixel"])
        plt.close(fig)
        written["roc_pixel"] = str(paths["roc_pixel"])

    # Worst and best cases.
    rows, titles = _select_cases(labels, scores, types)
    vmax = float(np.percentile(maps, 99.9))
    fig = plotting.plot_anomaly_cases(
        test["images"][rows],
        test["recons"][rows],
        maps[rows],
        None if masks is None else masks[rows],
        titles=titles,
        map_range=(float(maps.min()), max(vmax, float(maps.min()) + 1e-6)),
        path=paths["cases"],
    )
    plt.close(fig)
    written["cases"] = str(paths["cases"])

    thr_label = (
        "threshold"
        if result.threshold_source is None
        else (f"threshold ({result.threshold_source})")
    )
    fig = plotting.plot_score_histogram(
        scores,
        labels,
        threshold=result.threshold,
        threshold_label=thr_label,
        extra_thresholds={"F1-max threshold (on test, oracle)": result.f1_threshold},
        title=f"Image scores ({result.settings['map']}, {result.settings['score']})",
        path=paths["histogram"],
    )
    plt.close(fig)
    written["histogram"] = str(paths["histogram"])

    written["metrics"] = str(paths["metrics"])
    result.files = dict(written)
    result.to_json(paths["metrics"], overwrite=True)  # checked above


def _select_cases(labels, scores, types, per_group=_CASES_PER_GROUP):
    """Row indices and titles: worst (missed defects, false alarms), then best."""
    defective = np.flatnonzero(labels == 1)
    good = np.flatnonzero(labels == 0)
    d_sorted = defective[np.argsort(scores[defective], kind="stable")]
    g_sorted = good[np.argsort(scores[good], kind="stable")]
    groups = [
        ("worst defective", d_sorted[:per_group]),
        ("worst good", g_sorted[::-1][:per_group]),
        ("best defective", d_sorted[::-1][:per_group]),
        ("best good", g_sorted[:per_group]),
    ]
    rows, titles, seen = [], [], set()
    for name, idx in groups:
        for i in idx:
            if int(i) in seen:
                continue
            seen.add(int(i))
            rows.append(int(i))
            titles.append(f"{name}\n{types[i]}\nscore {scores[i]:.4g}")
    return np.asarray(rows, dtype=int), titles


def _roc_curves(curve_fn, arrays, overall_auroc, result, types, key):
    """ROC curves overall, then of each defect type against the good images."""
    labels = result.labels
    curves = {"all": (*curve_fn(*arrays), overall_auroc)}
    for name, sub in result.per_defect.items():
        sel = (labels == 0) | (types == name)
        curves[name] = (*curve_fn(*(a[sel] for a in arrays)), sub[key])
    return curves
