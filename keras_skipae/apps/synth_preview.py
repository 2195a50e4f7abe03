"""The preview figures of ``keras-skipae synth --preview``: stain corruption examples and
every synthetic defect, drawn on :mod:`keras_skipae.data.synthetic` images."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from keras_skipae import data, plotting
from keras_skipae.data.synthetic import CATEGORIES, DEFECTS, generate_sample

__all__ = ["preview"]


def preview(
    out_dir,
    *,
    categories=None,
    image_size=128,
    corruption=None,
    n_examples=8,
    seed=0,
    overwrite=True,
):
    """Saves preview figures: stain corruption examples and the synthetic defects.

    Writes ``<out_dir>/corruption_preview.png`` (clean / corrupted / mask rows, on
    clean synthetic images) and ``<out_dir>/defects_preview.png`` (every defect
    type of every category, with its mask outlined in red).

    Args:
        out_dir: folder for the PNG files (created if needed).
        categories: synthetic categories to show (default: all).
        image_size: image side in pixels.
        corruption: the corruption to show (default: ``Stains()``), or a
            name / config for :func:`keras_skipae.data.get`.
        n_examples: corruption examples.
        seed: random seed.
        overwrite: replace existing preview files.

    Returns:
        A list of the two written paths.

    Example:
        >>> preview("runs/preview", categories=["wood", "nut"])
    """

    cats = list(CATEGORIES) if categories is None else list(categories)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "corruption_preview.png", out_dir / "defects_preview.png"]
    if not overwrite:
        for p in paths:
            if p.exists():
                raise FileExistsError(
                    f"The preview {str(p)!r} already exists. Refusing to "
                    "overwrite it; pass overwrite=True (CLI: --overwrite)."
                )
    corruption = data.Stains() if corruption is None else data.get(corruption)
    clean = []
    for i in range(int(n_examples)):
        img, _ = generate_sample(cats[i % len(cats)], image_size=image_size, seed=[seed, 99, i])
        img = img.astype(np.float32) / 255.0
        clean.append(img.mean(axis=-1, keepdims=True))  # grayscale, as AESc trains
    batch = tf.constant(np.stack(clean))
    corrupted, _, masks = corruption(batch, tf.constant([int(seed), 7], tf.int64))
    plotting.plot_corruption_examples(
        batch.numpy(),
        corrupted.numpy(),
        masks.numpy(),
        title=f"{type(corruption).__name__}: clean / corrupted / mask",
        path=paths[0],
    )
    plt.close("all")
    images, masks_list, labels = [], [], []
    for ci, cat in enumerate(cats):
        for di, defect in enumerate(DEFECTS[cat]):
            img, mask = generate_sample(
                cat, image_size=image_size, defect=defect, seed=[seed, 98, ci, di]
            )
            images.append(img)
            masks_list.append(mask)
            labels.append(f"{cat} / {defect}")
    plotting.plot_defect_examples(
        images,
        masks_list,
        labels,
        title="Synthetic defects (mask outlined in red)",
        path=paths[1],
        columns=5,
    )
    plt.close("all")
    return paths
