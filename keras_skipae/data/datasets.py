"""Image datasets: the MVTec AD folder layout and plain folders of good images.

Both functions return an **unbatched** ``tf.data.Dataset`` of dicts with the same
keys on every split:

==============  ==============================  =====================================
key             dtype / shape                   meaning
==============  ==============================  =====================================
``image``       float32 ``[H, W, C]`` in [0, 1]  the image
``mask``        float32 ``[H, W, 1]`` in {0, 1}  ground truth; all zeros for good images
``label``       int32 ``[]``                     0 good, 1 defective
``defect_type`` string ``[]``                    ``"good"`` or the defect folder name
``path``        string ``[]``                    the source file
==============  ==============================  =====================================

Files are listed and checked in Python first (extension, file header, a
truncation check, image/mask pairing and sizes), so bad input raises a
:class:`DatasetError` (or :class:`DatasetNotFoundError`) naming the file, or is
skipped with a warning when ``on_error="skip"``, instead of failing deep inside
TensorFlow. Decoding then uses TF image ops: PNG (8 and 16 bit), JPEG and BMP,
grayscale and RGB converted either way.

The file checks live in :mod:`~keras_skipae.data.image_files`, the decoding in
:mod:`~keras_skipae.data.images`; this module lists the MVTec AD layout and plain folders
and assembles the ``tf.data`` pipelines.

The MVTec AD layout (Bergmann et al., CVPR 2019)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<name>_mask.png
"""

from __future__ import annotations

import random
from pathlib import Path

import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae.data.image_files import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    DatasetError,
    DatasetNotFoundError,
    _bad,
    _check_folder,
    _check_on_error,
    _list_images,
    _valid,
    check_max_pixels,
    image_info,
)
from keras_skipae.data.images import (
    _check_color_mode,
    _decode,
    _decode_mask,
    _warn_upscaled,
    load_image,
    resize_image,
)

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "check_max_pixels",
    "mvtec_dataset",
    "folder_dataset",
    "list_mvtec_categories",
    "mvtec_records",
    "image_info",
    "load_image",
    "resize_image",
]


def _make_dataset(records, *, size, channels):
    """records: list of (image path, mask path or "", label, defect type)."""
    paths = [str(r[0]) for r in records]
    masks = [str(r[1]) if r[1] else "" for r in records]
    labels = [int(r[2]) for r in records]
    types = [r[3] for r in records]
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "path": paths,
            "mask_path": masks,
            "label": tf.constant(labels, tf.int32),
            "defect_type": types,
        }
    )

    def load(item):
        img = _decode(tf.io.read_file(item["path"]), channels, size)
        hw = tf.shape(img)[:2]

        def read_mask():
            return _decode_mask(tf.io.read_file(item["mask_path"]), hw)

        mask = tf.cond(
            tf.strings.length(item["mask_path"]) > 0,
            read_mask,
            lambda: tf.zeros(tf.concat([hw, [1]], 0), tf.float32),
        )
        img = tf.ensure_shape(img, [size[0] if size else None, size[1] if size else None, channels])
        mask = tf.ensure_shape(mask, [size[0] if size else None, size[1] if size else None, 1])
        return {
            "image": img,
            "mask": mask,
            "label": item["label"],
            "defect_type": item["defect_type"],
            "path": item["path"],
        }

    return ds.map(load, num_parallel_calls=2, deterministic=True)


# --------------------------------------------------------------------------- MVTec AD


def list_mvtec_categories(root) -> list[str]:
    """The category folders of an MVTec AD root (those with a train/ or test/ folder)."""
    root = Path(root)
    _check_folder(root, "dataset root")
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir())
    )


def mvtec_records(
    root, category, split="train", *, on_error="raise", max_pixels=DEFAULT_MAX_PIXELS
):
    """The checked file list behind :func:`mvtec_dataset`.

    Returns:
        A list of ``(image_path, mask_path or None, label, defect_type)``.
    """
    _check_on_error(on_error)
    max_pixels = check_max_pixels(max_pixels)
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'. Received: split={split!r}")
    root = Path(root)
    _check_folder(root, "dataset root")
    cat_dir = root / str(category)
    if not cat_dir.is_dir():
        available = list_mvtec_categories(root)
        raise DatasetNotFoundError(
            f"Category {category!r} not found in {str(root)!r}. Available categories: "
            f"{', '.join(available) if available else '(none)'}."
        )
    split_dir = cat_dir / split
    if not split_dir.is_dir():
        raise DatasetNotFoundError(
            f"The {split} folder {str(split_dir)!r} does not exist "
            f"(expected the MVTec AD layout <root>/<category>/{split}/...)."
        )
    records = []
    if split == "train":
        good = _list_images(split_dir / "good", on_error, what="train/good")
        good = _valid(good, on_error, max_pixels)
        records = [(p, None, 0, "good") for p, _ in good]
        if not records:
            raise DatasetNotFoundError(f"No images found in {str(split_dir / 'good')!r}.")
        return records

    gt_dir = cat_dir / "ground_truth"
    defect_dirs = sorted(
        p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not defect_dirs:
        raise DatasetNotFoundError(f"No defect-type folders found in {str(split_dir)!r}.")
    for ddir in defect_dirs:
        defect = ddir.name
        images = _valid(_list_images(ddir, on_error, what=f"test/{defect}"), on_error, max_pixels)
        if defect == "good":
            records += [(p, None, 0, "good") for p, _ in images]
            continue
        records += _defect_records(ddir, images, gt_dir / defect, on_error, max_pixels)
    if not records:
        raise DatasetNotFoundError(f"No images found in {str(split_dir)!r}.")
    return records


def _defect_records(ddir: Path, images, mask_dir: Path, on_error: str, max_pixels) -> list:
    """The records of one ``test/<defect>`` folder's checked ``images``, each paired with
    its mask in ``mask_dir``; a missing, unreadable or differently sized mask, and a mask
    without its image, are bad input (``on_error``)."""
    defect = ddir.name
    mask_files = {}
    if mask_dir.is_dir():
        for m in _list_images(mask_dir, on_error, what=f"ground_truth/{defect}"):
            mask_files[m.name] = m
    records, used = [], set()
    for p, info in images:
        mask = None
        for cand in (f"{p.stem}_mask.png", f"{p.stem}_mask{p.suffix}", f"{p.stem}.png"):
            if cand in mask_files:
                mask = mask_files[cand]
                break
        if mask is None:
            _bad(
                on_error,
                f"No ground-truth mask for the test image {str(p)!r} "
                f"(expected {str(mask_dir / (p.stem + '_mask.png'))!r}).",
            )
            continue
        used.add(mask.name)
        try:
            minfo = image_info(mask, max_pixels=max_pixels)
        except DatasetError as exc:
            _bad(on_error, str(exc))
            continue
        if (minfo["height"], minfo["width"]) != (info["height"], info["width"]):
            _bad(
                on_error,
                f"The mask {str(mask)!r} is {minfo['height']}x{minfo['width']} but "
                f"its image {str(p)!r} is {info['height']}x{info['width']}.",
            )
            continue
        records.append((p, mask, 1, defect))
    for name in sorted(set(mask_files) - used):
        stems = {p.stem for p, _ in images}
        stem = name.rsplit("_mask", 1)[0] if "_mask" in name else Path(name).stem
        if stem not in stems:
            _bad(
                on_error,
                f"The mask {str(mask_files[name])!r} has no image in "
                f"{str(ddir)!r} (expected {stem}.png).",
            )
    return records


def mvtec_dataset(
    root,
    category,
    split="train",
    image_size=256,
    color_mode="grayscale",
    on_error="raise",
    max_pixels=DEFAULT_MAX_PIXELS,
):
    """A dataset in the MVTec AD layout (Bergmann et al., CVPR 2019).

    The train split is ``train/good``; the test split is every ``test/<defect>``
    folder, with label 0 for ``good`` and 1 otherwise, and masks from
    ``ground_truth/<defect>/<name>_mask.png`` (resized with nearest neighbour;
    all zeros for good images).

    Args:
        root: the dataset root (the folder holding the category folders).
        category: a category folder name, e.g. ``"carpet"``.
        split: ``"train"`` or ``"test"``.
        image_size: an int, ``(height, width)``, or None to keep the file sizes.
        color_mode: ``"grayscale"`` (1 channel) or ``"rgb"`` (3 channels).
        on_error: ``"raise"`` a :class:`DatasetError` naming the bad file, or
            ``"skip"`` it with a warning.
        max_pixels: an image or mask whose header declares more pixels (height x
            width) is a bad file, refused before decoding; None: any size.

    Returns:
        An unbatched ``tf.data.Dataset`` of dicts (``image``, ``mask``,
        ``label``, ``defect_type``, ``path``), in sorted file order.

    Raises:
        DatasetNotFoundError: missing root, category (the message lists the
            available ones), split, or no images.
        DatasetError: an unreadable, non-image or too large file, an image without
            its mask, a mask without its image, or a mask of a different size.

    Example:
        >>> train = mvtec_dataset("/data/mvtec", "carpet", split="train", image_size=256)
        >>> test = mvtec_dataset("/data/mvtec", "carpet", split="test", image_size=256)
    """
    channels = _check_color_mode(color_mode)
    size = io_utils.parse_image_size(image_size)
    records = mvtec_records(root, category, split, on_error=on_error, max_pixels=max_pixels)
    _warn_upscaled([r[0] for r in records], size)
    return _make_dataset(records, size=size, channels=channels)


# --------------------------------------------------------------------------- plain folders


def folder_dataset(
    path,
    *,
    image_size=256,
    color_mode="grayscale",
    validation_split=0.0,
    subset=None,
    seed=0,
    on_error="raise",
    max_pixels=DEFAULT_MAX_PIXELS,
):
    """A dataset from a plain folder of good images (no labels, masks all zero).

    Args:
        path: a folder of PNG / JPEG / BMP files (not recursive).
        image_size: an int, ``(height, width)``, or None to keep the file sizes.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        validation_split: fraction of the files held out for validation (0 to < 1).
        subset: ``"training"`` or ``"validation"`` (required when
            ``validation_split > 0``); None returns every file.
        seed: seed of the file shuffle that makes the split (the same seed gives
            the same split; the dataset itself is in sorted order).
        on_error: ``"raise"`` or ``"skip"`` bad files.
        max_pixels: a file whose header declares more pixels is a bad file, refused
            before decoding; None: any size.

    Returns:
        An unbatched ``tf.data.Dataset`` of dicts, as :func:`mvtec_dataset`
        (label 0, defect_type ``"good"``, zero masks).

    Example:
        >>> train = folder_dataset("good/", validation_split=0.2, subset="training")
        >>> val = folder_dataset("good/", validation_split=0.2, subset="validation")
    """
    _check_on_error(on_error)
    channels = _check_color_mode(color_mode)
    size = io_utils.parse_image_size(image_size)
    _check_subset(validation_split, subset)
    folder = Path(path)
    images = _list_images(folder, on_error, what="image")
    files = [p for p, _ in _valid(images, on_error, check_max_pixels(max_pixels))]
    if not files:
        raise DatasetNotFoundError(
            f"No images found in {str(folder)!r} (expected {', '.join(IMAGE_EXTENSIONS)} files)."
        )
    if subset is not None:
        files = _subset(files, folder, validation_split, subset, seed)
    records = [(p, None, 0, "good") for p in files]
    _warn_upscaled(files, size)
    return _make_dataset(records, size=size, channels=channels)


def _check_subset(validation_split, subset) -> None:
    if not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(
            f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}"
        )
    if subset not in (None, "training", "validation"):
        raise ValueError(
            f"`subset` must be None, 'training' or 'validation'. Received: subset={subset!r}"
        )
    if validation_split > 0 and subset is None:
        raise ValueError(
            "`subset` ('training' or 'validation') is required when "
            "validation_split > 0. Received: subset=None"
        )
    if subset is not None and validation_split == 0:
        raise ValueError(
            f"subset={subset!r} needs validation_split > 0. Received: validation_split=0"
        )


def _subset(files: list, folder: Path, validation_split, subset: str, seed) -> list:
    """The files of ``subset`` in a seeded shuffle split, in sorted order."""
    order = list(range(len(files)))
    random.Random(int(seed)).shuffle(order)
    n_val = int(round(len(files) * float(validation_split)))
    n_val = min(max(n_val, 1), len(files) - 1) if len(files) > 1 else 0
    chosen = order[len(files) - n_val :] if subset == "validation" else order[: len(files) - n_val]
    if not chosen:
        raise DatasetNotFoundError(
            f"The {subset} subset of {str(folder)!r} is empty "
            f"({len(files)} images, validation_split={validation_split})."
        )
    return [files[i] for i in sorted(chosen)]
