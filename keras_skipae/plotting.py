"""Every matplotlib figure of keras_skipae.

Functions take NumPy arrays (or plain results), return a ``matplotlib.figure.Figure``
and, when given ``path``, save it atomically (temporary name + rename). The module
does not choose a matplotlib backend: Jupyter keeps its inline backend, and on a
headless server matplotlib falls back to Agg by itself (set ``MPLBACKEND=Agg`` to
be explicit). Nothing here calls ``plt.show()``.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from keras_skipae.io_utils import atomic_path


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
# Layer-discrepancy figures (keras_skipae.analysis, callbacks.DiscrepancyMonitor)
# Collin, de Bodt, Mulders & De Vleeschouwer, "Don't skip the skips" (ESANN).
# ----------------------------------------------------------------------------


def _layer_label(name, shape=None):
    short = name.replace("_out", "")
    if shape is None:
        return short
    return f"{short}\n{shape[0]}x{shape[1]}"


def plot_channel_means(
    means,
    *,
    layers,
    title: str | None = None,
    cmap: str = "viridis",
    path: str | os.PathLike | None = None,
    close: bool = False,
):
    """The paper's Fig. 2: channel-mean maps mu_1 ... mu_L, clean versus corrupted.

    Rows: for each model, its maps of the clean image then of the corrupted one;
    columns: the layers in data-flow order, titled with their spatial size. A
    clean map and its corrupted twin share one colour scale.

    Args:
        means: ``{model_label: (clean_maps, corrupted_maps)}``, each a list of
            2-D arrays ``[h_i, w_i]`` in the order of ``layers``.
        layers: tap names (column titles).
        title: figure title, or None.
        cmap: matplotlib colour map.
        path: save the figure there (atomically), or None.
        close: close the figure after saving.

    Returns:
        The matplotlib Figure.

    Example:
        >>> r = ks.analysis.layer_discrepancy(aesc, clean, corrupted, return_means=True)
        >>> plot_channel_means({"AESc": ([r.means_clean[k][0] for k in r.layers],
        ...                              [r.means_corrupted[k][0] for k in r.layers])},
        ...                    layers=r.layers)
    """
    labels = list(means)
    n_rows, n_cols = 2 * len(labels), len(layers)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.45 * n_cols + 1.2, 1.5 * n_rows + 0.6), squeeze=False
    )
    for m, label in enumerate(labels):
        clean, corrupted = means[label]
        for j in range(n_cols):
            a, b = np.asarray(clean[j], "float32"), np.asarray(corrupted[j], "float32")
            lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
            for r, (img, kind) in enumerate(((a, "clean"), (b, "corrupted"))):
                ax = axes[2 * m + r, j]
                ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(f"{label}\n{kind}", fontsize=8)
                if m == 0 and r == 0:
                    ax.set_title(_layer_label(layers[j], a.shape), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, close=close)


def plot_similarity_distribution(
    cosines,
    *,
    layers,
    kind: str = "box",
    scale: str = "cosine",
    title: str | None = None,
    path: str | os.PathLike | None = None,
    close: bool = False,
):
    """The paper's Fig. 3: the distribution of cosine similarity per layer, models side by side.

    Args:
        cosines: ``{model_label: {layer: [N] similarities}}``.
        layers: the layers (x axis), in data-flow order.
        kind: ``"box"`` or ``"violin"``.
        scale: ``"cosine"`` (the paper's axis) or ``"1-cos"`` (the dissimilarity
            ``1 - cos`` on a log axis, which separates values all close to 1).
        title: axis title, or None.
        path: save the figure there (atomically), or None.
        close: close the figure after saving.

    Returns:
        The matplotlib Figure.
    """
    if kind not in ("box", "violin"):
        raise ValueError(f"`kind` must be 'box' or 'violin'. Received: kind={kind!r}")
    if scale not in ("cosine", "1-cos"):
        raise ValueError(f"`scale` must be 'cosine' or '1-cos'. Received: scale={scale!r}")
    labels = list(cosines)
    k = max(len(labels), 1)
    width = 0.8 / k
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.3 * len(layers) * k + 2.5)), 3.8))
    x = np.arange(len(layers), dtype="float64")
    for m, label in enumerate(labels):
        pos = x - 0.4 + width * (m + 0.5)
        data = [np.asarray(cosines[label][name], "float64") for name in layers]
        if scale == "1-cos":
            data = [np.maximum(1.0 - d, 1e-7) for d in data]
        color = colors[m % len(colors)]
        if kind == "box":
            parts = ax.boxplot(
                data,
                positions=pos,
                widths=width * 0.85,
                patch_artist=True,
                showfliers=True,
                flierprops={"markersize": 2},
                medianprops={"color": "k"},
            )
            for box in parts["boxes"]:
                box.set_facecolor(color)
                box.set_alpha(0.75)
        else:
            parts = ax.violinplot(data, positions=pos, widths=width * 0.9, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(color)
                body.set_alpha(0.6)
        ax.plot([], [], color=color, lw=6, alpha=0.75, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels([_layer_label(n) for n in layers], fontsize=8)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    if scale == "1-cos":
        ax.set_yscale("log")
        ax.set_ylabel("1 - cosine similarity (clean vs corrupted)")
    else:
        ax.set_ylabel("cosine similarity (clean vs corrupted)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left" if scale == "1-cos" else "lower left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, close=close)


def plot_similarity_over_epochs(
    epochs,
    medians,
    *,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    close: bool = False,
):
    """Median cosine similarity per layer over training epochs (one line per layer).

    Args:
        epochs: ``[E]`` epoch numbers.
        medians: ``{layer: [E] values}`` in data-flow order (encoder lines are
            dashed, the bottleneck dotted, the decoder solid).
        title: axis title, or None.
        path: save the figure there (atomically), or None.
        close: close the figure after saving.

    Returns:
        The matplotlib Figure.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    cmap = plt.get_cmap("viridis")
    names = list(medians)
    for i, name in enumerate(names):
        style = "--" if name.startswith("enc") else ":" if name.startswith("bottleneck") else "-"
        ax.plot(
            list(epochs),
            list(medians[name]),
            style,
            marker="o",
            markersize=2.5,
            color=cmap(i / max(len(names) - 1, 1)),
            label=_layer_label(name),
        )
    ax.set(xlabel="epoch", ylabel="median cosine similarity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, close=close)


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


def _mask_outline(mask):
    """Boolean [H, W] border pixels of a {0, 1} mask (for drawing outlines)."""
    m = np.asarray(mask).astype(bool)
    if m.ndim == 3:
        m = m[..., 0]
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def _overlay_outline(image, mask, color=(1.0, 0.1, 0.1)):
    """``image`` in RGB with the outline of ``mask`` drawn in ``color``."""
    img = _as_display(image)
    img = np.stack([img] * 3, axis=-1) if img.ndim == 2 else img.copy()
    img[_mask_outline(mask)] = color
    return img


def plot_corruption_examples(
    clean, corrupted, masks, *, title="Corruption examples", path=None, max_columns=8
):
    """Clean / corrupted / mask rows for a batch of corruption examples.

    Args:
        clean: [N, H, W, C] float images in [0, 1] (or uint8).
        corrupted: the corrupted images, same shape.
        masks: [N, H, W, 1] corruption masks in {0, 1}.
        title: figure title.
        path: save the figure there (atomically), or None.
        max_columns: at most this many examples.

    Returns:
        The matplotlib Figure.
    """
    n = min(len(clean), max_columns)
    fig, axes = plt.subplots(3, n, figsize=(1.9 * n, 6.0), squeeze=False)
    for i in range(n):
        cmap = "gray" if np.asarray(clean[i]).shape[-1] == 1 else None
        for row, (img, label) in enumerate(
            ((clean[i], "clean"), (corrupted[i], "corrupted"), (masks[i], "mask"))
        ):
            ax = axes[row, i]
            ax.imshow(
                _as_display(img),
                cmap="gray" if row == 2 else cmap,
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            ax.set(xticks=[], yticks=[])
            if i == 0:
                ax.set_ylabel(label)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path)


def plot_defect_examples(images, masks, labels, *, title="Synthetic defects", path=None, columns=6):
    """A grid of defect images, each above the same image with its mask outlined in red.

    Args:
        images: a list of [H, W, C] images (float in [0, 1] or uint8).
        masks: a list of [H, W] or [H, W, 1] ground-truth masks.
        labels: a list of captions (e.g. "wood / crack").
        title: figure title.
        path: save the figure there (atomically), or None.
        columns: examples per row.

    Returns:
        The matplotlib Figure.
    """
    n = len(images)
    cols = max(1, min(columns, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.0 * cols, 4.1 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = 2 * (i // cols), i % cols
        img = _as_display(images[i])
        axes[r, c].imshow(
            img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
        )
        axes[r, c].set_title(labels[i], fontsize=8)
        axes[r + 1, c].imshow(_overlay_outline(images[i], masks[i]), interpolation="nearest")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path)
