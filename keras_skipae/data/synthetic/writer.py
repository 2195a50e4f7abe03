"""The synthetic datasets: the MVTec AD layout on disk, and seeded labelled splits in memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_skipae import ownership
from keras_skipae.data.synthetic.categories import CATEGORIES, DEFECTS
from keras_skipae.data.synthetic.defects import generate_sample
from keras_skipae.io_utils import atomic_path, encode_png

DATASET_MARKER = ".keras_skipae_synthetic"
"""The marker file ``make_dataset`` left in a dataset root before
:data:`keras_skipae.ownership.MARKER` existed (still accepted by ``overwrite``)."""
#: What a dataset root ``make_dataset`` made may hold (``synth --preview`` adds the figures).
DATASET_ENTRIES = (*CATEGORIES, "corruption_preview.png", "defects_preview.png")


def make_dataset(
    out_dir,
    categories=None,
    image_size=128,
    n_train=100,
    n_test_good=16,
    n_test_defect=6,
    seed=0,
    overwrite=False,
):
    """Writes a synthetic dataset in the MVTec AD layout.

    Layout (as MVTec AD, Bergmann et al., CVPR 2019)::

        <out_dir>/<category>/train/good/000.png
        <out_dir>/<category>/test/good/000.png
        <out_dir>/<category>/test/<defect>/000.png
        <out_dir>/<category>/ground_truth/<defect>/000_mask.png   (0 / 255)

    RGB categories are written as 3-channel PNGs, grayscale ones as 1-channel PNGs.
    The folder is built under a temporary name and renamed when complete.

    Args:
        out_dir: the dataset root to create.
        categories: names from :data:`CATEGORIES` (default: all).
        image_size: image side in pixels.
        n_train: good training images per category.
        n_test_good: good test images per category.
        n_test_defect: test images per defect type.
        seed: the same seed gives the same files.
        overwrite: replace an existing ``out_dir`` (refused otherwise), but only
            a folder ``make_dataset`` made that holds nothing else
            (:func:`keras_skipae.ownership.check_replaceable`), so a user's own data is
            never replaced.

    Returns:
        The root path (a ``Path``), to pass to ``mvtec_dataset``.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.

    Example:
        >>> root = make_dataset("data/synthetic", categories=["woven"], n_train=100)
        >>> train = mvtec_dataset(root, "woven", split="train", image_size=128)
    """
    cats = _check_dataset_args(categories, image_size, n_train, n_test_good, n_test_defect)
    out_dir = Path(out_dir)
    if overwrite:
        ownership.check_replaceable(out_dir, "dataset", allowed=DATASET_ENTRIES)
    counts = (int(n_train), int(n_test_good), int(n_test_defect))
    with atomic_path(out_dir, overwrite=overwrite, is_dir=True, what="dataset folder") as tmp:
        ownership.mark_owned(tmp, "dataset")
        for cat in cats:
            _write_category(tmp / cat, cat, int(image_size), counts, int(seed))
    return out_dir


def _check_dataset_args(categories, image_size, n_train, n_test_good, n_test_defect):
    """The category names :func:`make_dataset` writes; bad arguments raise ``ValueError``."""
    cats = list(CATEGORIES) if categories is None else list(categories)
    if isinstance(categories, str):
        cats = [categories]
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown or not cats:
        raise ValueError(
            f"Unknown synthetic categories {unknown or cats!r}; expected some of "
            f"{list(CATEGORIES)}. Received: categories={categories!r}"
        )
    for name, value in (
        ("image_size", image_size),
        ("n_train", n_train),
        ("n_test_good", n_test_good),
        ("n_test_defect", n_test_defect),
    ):
        if int(value) < (16 if name == "image_size" else 0):
            raise ValueError(f"`{name}` is too small. Received: {name}={value!r}")
    return cats


def _write_category(base: Path, cat: str, size: int, counts, seed: int) -> None:
    """One category's MVTec AD folders under ``base``; ``counts`` is
    ``(n_train, n_test_good, n_test_defect)``."""
    n_train, n_test_good, n_test_defect = counts
    cid = CATEGORIES.index(cat)
    jobs = [("train", "good", i, None) for i in range(n_train)]
    jobs += [("test", "good", i, None) for i in range(n_test_good)]
    for d in DEFECTS[cat]:
        jobs += [("test", d, i, d) for i in range(n_test_defect)]
    for split, folder, i, defect in jobs:
        split_id = 0 if split == "train" else 1 + (DEFECTS[cat].index(defect) + 1 if defect else 0)
        img, mask = generate_sample(
            cat, image_size=size, defect=defect, seed=[seed, cid, split_id, i]
        )
        _write_png(base / split / folder / f"{i:03d}.png", img)
        if defect is not None:
            _write_png(
                base / "ground_truth" / folder / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255
            )


def _write_png(path: Path, image) -> None:
    """A PNG inside the dataset's temporary folder (which is renamed when complete, so the
    files themselves need no atomic write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))


#: The third seed word of :func:`labelled_arrays`: ``make_dataset`` uses 0 (train) and
#: 1 ... 1 + len(DEFECTS[category]) (test), the ``synth --preview`` figures other seed
#: shapes, so the labelled images never repeat a benchmark image.
LABELLED_SPLIT_ID = 100


def _labelled_plan(category: str, n: int, defect_fraction: float):
    """``[defect or None] * n``: defects spread evenly (any prefix keeps the fraction),
    their types cycling through ``DEFECTS[category]``."""
    plan, n_defect = [], 0
    for i in range(n):
        if math.floor((i + 1) * defect_fraction) > math.floor(i * defect_fraction):
            plan.append(DEFECTS[category][n_defect % len(DEFECTS[category])])
            n_defect += 1
        else:
            plan.append(None)
    return plan


def labelled_arrays(
    category: str,
    n: int,
    *,
    image_size: int = 128,
    seed: int = 0,
    defect_fraction: float = 0.75,
):
    """A seeded labelled split: images with their exact masks, for supervised examples.

    Image ``i`` is :func:`generate_sample` with the seed
    ``[seed, CATEGORIES.index(category), LABELLED_SPLIT_ID, i]``; a fraction
    ``defect_fraction`` of them are defective (spread evenly over the indices, the
    defect types in turn), the others good with empty masks. The seed words differ
    from those of :func:`make_dataset` (``LABELLED_SPLIT_ID``), so these images are
    never the benchmark's train or test images. The same arguments give the same
    arrays, and a smaller ``n`` gives a prefix of a larger one (so training on the
    first N of them grows one labelled set).

    Args:
        category: one of :data:`CATEGORIES`.
        n: number of images (>= 1).
        image_size: side in pixels (>= 16).
        seed: integer seed.
        defect_fraction: fraction of defective images, in [0, 1].

    Returns:
        A dict of NumPy arrays: ``image`` float32 ``[n, H, W, C]`` in [0, 1] (C is 3
        for ``woven`` and ``wood``, else 1), ``mask`` float32 ``[n, H, W, 1]`` in
        {0, 1} (exactly the pixels the defect changed), ``label`` int32 ``[n]`` (0 good,
        1 defective) and ``defect_type`` (``"good"`` or the defect's name).

    Raises:
        ValueError: an unknown category or a bad ``n``, ``image_size`` or
            ``defect_fraction``.

    Example:
        >>> d = labelled_arrays("mesh", 32, image_size=64, seed=1)
        >>> d["image"].shape, d["mask"].shape
        ((32, 64, 64, 1), (32, 64, 64, 1))
    """
    if category not in CATEGORIES:
        raise ValueError(
            f"Unknown synthetic category. Expected one of {list(CATEGORIES)}. "
            f"Received: category={category!r}"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` must be an int >= 1. Received: n={n!r}")
    if int(image_size) < 16:
        raise ValueError(f"`image_size` must be at least 16. Received: image_size={image_size!r}")
    if not 0.0 <= float(defect_fraction) <= 1.0:
        raise ValueError(
            f"`defect_fraction` must be in [0, 1]. Received: defect_fraction={defect_fraction!r}"
        )
    cid = CATEGORIES.index(category)
    images, masks, labels, kinds = [], [], [], []
    for i, defect in enumerate(_labelled_plan(category, int(n), float(defect_fraction))):
        img, mask = generate_sample(
            category,
            image_size=int(image_size),
            defect=defect,
            seed=[int(seed), cid, LABELLED_SPLIT_ID, i],
        )
        images.append(img.astype(np.float32) / 255.0)
        masks.append(mask[..., None].astype(np.float32))
        labels.append(0 if defect is None else 1)
        kinds.append(defect or "good")
    return {
        "image": np.stack(images),
        "mask": np.stack(masks),
        "label": np.asarray(labels, np.int32),
        "defect_type": np.asarray(kinds),
    }


def labelled_dataset(
    category: str,
    n: int,
    *,
    image_size: int = 128,
    seed: int = 0,
    defect_fraction: float = 0.75,
) -> tf.data.Dataset:
    """:func:`labelled_arrays` as an unbatched ``tf.data.Dataset`` of ``(image, mask)``.

    The elements are float32 ``(image [H, W, C] in [0, 1], mask [H, W, 1] in {0, 1})``,
    what ``keras_skipae.train(..., task="segmentation")`` and ``model.fit`` (after
    ``.batch``) take. Arguments as in :func:`labelled_arrays`.

    Example:
        >>> ds = labelled_dataset("mesh", 32, image_size=64, seed=1)
        >>> run = ks.train("unet", ds, task="segmentation",
        ...                model_kwargs={"input_shape": (64, 64, 1), "num_outputs": 1})
    """
    arrays = labelled_arrays(
        category, n, image_size=image_size, seed=seed, defect_fraction=defect_fraction
    )
    return tf.data.Dataset.from_tensor_slices((arrays["image"], arrays["mask"]))
