"""Every matplotlib figure of keras_skipae.

Functions take NumPy arrays (or plain results), return a ``matplotlib.figure.Figure``
and, when given ``path``, save it atomically (temporary name + rename). They use
the non-interactive Agg backend, so they work on headless servers.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

from keras_skipae.io_utils import atomic_path  # noqa: E402


def save_figure(fig, path: str | os.PathLike | None, *, dpi: int = 110, close: bool = False):
    """Saves ``fig`` to ``path`` atomically (format from the suffix; PNG by default).

    Args:
        fig: a matplotlib Figure.
        path: where to save it, or None to skip saving.
        dpi: resolution.
        close: close the figure after saving (frees memory in loops).

    Returns:
        The figure.
    """
    if path is not None:
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".png")
        with atomic_path(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip("."))
    if close:
        plt.close(fig)
    return fig


# ----------------------------------------------------------------------------
# Evaluation figures (keras_skipae.evaluation)
# ----------------------------------------------------------------------------


def plot_roc_curves(curves, *, title: str = "ROC", path: str | os.PathLike | None = None):
    """ROC curves on one axis, with their AUCs in the legend.

    Args:
        curves: ``{name: (fpr, tpr, auc)}``; entries whose ``fpr`` is None
            (one class only) are skipped. The first entry is drawn thicker
            (put the overall curve first).
        title: the axis title.
        path: save the figure there (atomically), or None.

    Returns:
        The matplotlib Figure.

    Example:
        >>> plot_roc_curves({"all": (fpr, tpr, 0.93)}, title="Image ROC", path="roc.png")
    """
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        if fpr is None:
            continue
        label = f"{name} (AUC {auc:.3f})" if auc is not None and auc == auc else name
        ax.plot(fpr, tpr, lw=2.2 if i == 0 else 1.2, label=label)
    if not ax.lines:
        ax.text(0.5, 0.5, "undefined: only one class present", ha="center", va="center")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _as_display(image):
    import numpy as np

    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype("float32") / 255.0
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(image, 0.0, 1.0)


def plot_anomaly_cases(
    images,
    reconstructions,
    maps,
    masks,
    *,
    titles=None,
    map_range=None,
    path: str | os.PathLike | None = None,
):
    """A grid: input | reconstruction | anomaly map | ground truth | overlay, one row per case.

    Args:
        images: ``[N, H, W, C]`` inputs, float in [0, 1] or uint8.
        reconstructions: same shape and type.
        maps: ``[N, H, W]`` anomaly maps.
        masks: ``[N, H, W]`` (or ``[N, H, W, 1]``) ground truth, or None.
        titles: one string per row (drawn left of the row), or None.
        map_range: ``(vmin, vmax)`` shared by all maps (so rows compare), or
            None for the min/max of ``maps``.
        path: save the figure there (atomically), or None.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    maps = np.asarray(maps, dtype="float32")
    n = maps.shape[0]
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim == 4:
            masks = masks[..., 0]
    vmin, vmax = map_range if map_range is not None else (float(maps.min()), float(maps.max()))
    if not vmax > vmin:
        vmax = vmin + 1e-6
    cols = ["input", "reconstruction", "anomaly map", "ground truth", "overlay"]
    fig, axes = plt.subplots(max(n, 1), 5, figsize=(11, 2.3 * max(n, 1)), squeeze=False)
    for i in range(n):
        image = _as_display(images[i])
        gray = image.ndim == 2
        row = axes[i]
        row[0].imshow(image, cmap="gray" if gray else None, vmin=0, vmax=1)
        row[1].imshow(
            _as_display(reconstructions[i]), cmap="gray" if gray else None, vmin=0, vmax=1
        )
        im = row[2].imshow(maps[i], cmap="jet", vmin=vmin, vmax=vmax)
        mask = masks[i] > 0.5 if masks is not None else np.zeros(maps[i].shape, bool)
        row[3].imshow(mask, cmap="gray", vmin=0, vmax=1)
        row[4].imshow(image, cmap="gray" if gray else None, vmin=0, vmax=1)
        row[4].imshow(maps[i], cmap="jet", vmin=vmin, vmax=vmax, alpha=0.45)
        if mask.any():
            row[4].contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
        if titles is not None:
            row[0].set_ylabel(
                titles[i], fontsize=7, rotation=0, ha="right", va="center", labelpad=4
            )
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for j, name in enumerate(cols):
        axes[0, j].set_title(name, fontsize=9)
    if n:
        # A colourbar of its own, right of the grid, shared by every map.
        fig.subplots_adjust(right=0.9)
        cax = fig.add_axes([0.92, 0.35, 0.012, 0.3])
        fig.colorbar(im, cax=cax, label="anomaly map")
    return save_figure(fig, path)


def plot_score_histogram(
    scores,
    labels,
    *,
    threshold=None,
    threshold_label="threshold",
    extra_thresholds=None,
    title: str = "Image scores",
    path: str | os.PathLike | None = None,
):
    """Histograms of image scores, good versus defective, with threshold lines.

    Args:
        scores: ``[N]`` image scores.
        labels: ``[N]`` 0 good / 1 defective.
        threshold: the production threshold (a solid line), or None.
        threshold_label: its legend label.
        extra_thresholds: ``{label: value}`` drawn dashed (e.g. the F1-max
            threshold), or None.
        title: the axis title.
        path: save the figure there (atomically), or None.

    Returns:
        The matplotlib Figure.
    """
    import numpy as np

    scores = np.asarray(scores, dtype="float64").reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    bins = np.histogram_bin_edges(scores, bins=min(40, max(5, scores.size // 3)))
    if (~labels).any():
        ax.hist(
            scores[~labels],
            bins=bins,
            alpha=0.6,
            color="tab:green",
            label=f"good (n={int((~labels).sum())})",
        )
    if labels.any():
        ax.hist(
            scores[labels],
            bins=bins,
            alpha=0.6,
            color="tab:red",
            label=f"defective (n={int(labels.sum())})",
        )
    if threshold is not None:
        ax.axvline(threshold, color="k", lw=1.5, label=f"{threshold_label} = {threshold:.4g}")
    for name, value in (extra_thresholds or {}).items():
        if value is not None and value == value:
            ax.axvline(value, color="0.4", lw=1.2, ls="--", label=f"{name} = {value:.4g}")
    ax.set(xlabel="anomaly score", ylabel="images", title=title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
