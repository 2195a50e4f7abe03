"""Scoring an evaluation's data set batch by batch: :func:`score_dataset`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae import scoring as _scoring
from keras_skipae.io_utils import as_text, to_uint8
from keras_skipae.ops.image_checks import check_images


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


def _image_labels(batch, n: int) -> list[str]:
    """How errors name a batch's images: their paths, else ``batch image i``."""
    paths = [as_text(p) for p in np.asarray(batch["path"])] if "path" in batch else []
    return paths if any(paths) else [f"batch image {i}" for i in range(n)]


def _masks_of(batch, maps):
    """The batch's ground-truth masks ``[B, H, W]`` (bool), None without any."""
    if "mask" not in batch:
        return None
    mask = np.asarray(batch["mask"])
    mask = mask[..., 0] if mask.ndim == 4 else mask
    if mask.shape != maps.shape:
        raise ValueError(
            f"Expected ground-truth masks of the images' size {maps.shape[1:]}. "
            f"Received: masks of shape {mask.shape[1:]}"
        )
    return mask > 0.5


def _score_batch(scorer, batch, channels, out, keep) -> bool:
    """Scores one batch into ``out``; returns whether it had labels."""
    images = check_images(
        batch["image"],
        channels=channels,
        color_mode=io_utils.color_mode_for(channels),
        labels=_image_labels(batch, len(batch["image"])),
        check_dtype=True,
    )
    result = scorer(_scoring.to_float_images(images))  # uint8 / uint16 -> [0, 1]
    scores = result["score"].numpy()
    n = scores.shape[0]
    out["scores"].append(scores)
    labels = _labels_of(batch, n)
    out["labels"].append(np.zeros(n, int) if labels is None else labels)
    if "defect_type" in batch:
        out["defect_types"] += [as_text(d) for d in batch["defect_type"]]
    else:
        out["defect_types"] += ["good" if lab == 0 else "defective" for lab in out["labels"][-1]]
    out["paths"] += [as_text(p) for p in batch["path"]] if "path" in batch else [""] * n
    if keep:
        maps = result["anomaly_map"].numpy()
        out["masks"].append(_masks_of(batch, maps))
        out["maps"].append(maps.astype(np.float32))
        out["images"].append(to_uint8(images))
        out["recons"].append(to_uint8(result["reconstruction"].numpy()))
    return labels is not None


def score_dataset(scorer, data, batch_size, *, keep, progress, desc, channels=None):
    """Runs the scorer over ``data``; returns per-image arrays (and the cases data).

    Every batch is checked by :func:`keras_skipae.ops.image_checks.check_images` (the
    model's channel count, finite pixels, naming the images).
    """
    keys = ("scores", "labels", "defect_types", "paths", "masks", "maps", "images", "recons")
    out = {k: [] for k in keys}
    has_labels = True
    total = _n_batches(data, batch_size)
    batches = _progress(_iter_batches(data, batch_size), total=total, desc=desc, enabled=progress)
    for batch in batches:
        has_labels &= _score_batch(scorer, batch, channels, out, keep)
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
        has_masks = all(m is not None for m in out["masks"])
        arrays["maps"] = np.concatenate(out["maps"])
        arrays["masks"] = np.concatenate(out["masks"]) if has_masks else None
        arrays["images"] = np.concatenate(out["images"])
        arrays["recons"] = np.concatenate(out["recons"])
    return arrays
