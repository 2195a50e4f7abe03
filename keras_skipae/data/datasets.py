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

The MVTec AD layout (Bergmann et al., CVPR 2019)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<name>_mask.png
"""

from __future__ import annotations

import numbers
import random
import struct
import warnings
from pathlib import Path

import tensorflow as tf

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "mvtec_dataset",
    "folder_dataset",
    "list_mvtec_categories",
    "image_info",
    "load_image",
    "resize_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

#: The most pixels (height x width) an image file may declare in its header: 64 Mi
#: pixels (2**26 = 67,108,864, an 8192x8192 image). Larger files are refused before they
#: are decoded (``max_pixels=``; CLI ``--max-pixels``); None reads any size.
DEFAULT_MAX_PIXELS = 64 * 2**20


class DatasetError(ValueError):
    """Bad dataset input (unreadable file, missing mask, size mismatch, ...)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder, category or split does not exist or holds no images."""


# --------------------------------------------------------------------------- file checks


def image_info(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict:
    """Reads an image file's header: format, height, width, channels and bit depth.

    Checks the extension against the content (PNG, JPEG, BMP), that the file is
    not truncated (PNG ends with an IEND chunk, JPEG with an end-of-image marker,
    a BMP is as long as its header says) and that the size its header declares is
    at most ``max_pixels``. Nothing is decoded, so a small file that declares a huge
    image (a decompression bomb) costs no memory.

    Args:
        path: the image file.
        max_pixels: the most pixels (height x width) accepted; None: any size.

    Returns:
        ``{"format", "height", "width", "channels", "bit_depth"}``.

    Raises:
        DatasetError: the file is unreadable, not an image, truncated, or larger
            than ``max_pixels``.
    """
    max_pixels = check_max_pixels(max_pixels)
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4096)
            f.seek(max(0, size - 32))
            tail = f.read()
    except OSError as exc:
        raise DatasetError(f"Cannot read image file {str(path)!r}: {exc.strerror or exc}") from None
    if len(head) < 26:
        raise DatasetError(f"{str(path)!r} is not a valid image (the file is empty or too short).")
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        if head[12:16] != b"IHDR":
            raise DatasetError(f"{str(path)!r} is not a valid PNG (no IHDR chunk).")
        width, height = struct.unpack(">II", head[16:24])
        bit_depth, color_type = head[24], head[25]
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type)
        if channels is None or bit_depth not in (1, 2, 4, 8, 16):
            raise DatasetError(f"{str(path)!r} is not a valid PNG (bad header).")
        if b"IEND" not in tail:
            raise DatasetError(f"{str(path)!r} is truncated (no PNG end chunk).")
        info = ("png", height, width, channels, bit_depth)
    elif head[:3] == b"\xff\xd8\xff":
        info = _jpeg_info(head, path, size)
        if b"\xff\xd9" not in tail:
            raise DatasetError(f"{str(path)!r} is truncated (no JPEG end marker).")
    elif head[:2] == b"BM":
        file_size = struct.unpack("<I", head[2:6])[0]
        width, height = struct.unpack("<ii", head[18:26])
        bpp = struct.unpack("<H", head[28:30])[0] if len(head) >= 30 else 0
        if size < file_size:
            raise DatasetError(f"{str(path)!r} is truncated ({size} of {file_size} bytes).")
        info = ("bmp", abs(height), width, 4 if bpp == 32 else 3, 8)
    else:
        raise DatasetError(f"{str(path)!r} is not a PNG, JPEG or BMP image (unknown file header).")
    fmt, height, width, channels, bit_depth = info
    if height <= 0 or width <= 0:
        raise DatasetError(f"{str(path)!r} has an invalid size {height}x{width}.")
    if max_pixels is not None and height * width > max_pixels:
        raise DatasetError(
            f"{str(path)!r} declares {width}x{height} pixels ({height * width:,}), more than "
            f"max_pixels={max_pixels:,}: refused before decoding (raise the limit with "
            "max_pixels= or --max-pixels N to read it)."
        )
    return {
        "format": fmt,
        "height": height,
        "width": width,
        "channels": channels,
        "bit_depth": bit_depth,
    }


def check_max_pixels(max_pixels):
    """``max_pixels`` as an int >= 1, or None (no limit)."""
    if max_pixels is None:
        return None
    if (
        isinstance(max_pixels, bool)
        or not isinstance(max_pixels, numbers.Integral)
        or max_pixels < 1
    ):
        raise ValueError(
            f"Expected `max_pixels` to be an int >= 1 or None. Received: max_pixels={max_pixels!r}"
        )
    return int(max_pixels)


def _jpeg_info(head: bytes, path: Path, size: int):
    data = head
    i = 2
    with open(path, "rb") as f:
        while True:
            if i + 9 > len(data):
                if len(data) >= size or len(data) > 4 * 1024 * 1024:
                    break
                f.seek(len(data))
                more = f.read(65536)
                if not more:
                    break
                data += more
                continue
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (
                0xC0,
                0xC1,
                0xC2,
                0xC3,
                0xC5,
                0xC6,
                0xC7,
                0xC9,
                0xCA,
                0xCB,
                0xCD,
                0xCE,
                0xCF,
            ):
                precision = data[i + 4]
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                channels = data[i + 9] if i + 9 < len(data) else 3
                return ("jpeg", height, width, channels, precision)
            i += 2 + seg_len
    raise DatasetError(f"{str(path)!r} is not a valid JPEG (no frame header found).")


def _check_folder(folder: Path, what: str) -> None:
    """Raises a ``DatasetNotFoundError`` unless ``folder`` is a folder (a file is named so)."""
    if folder.is_file():
        raise DatasetNotFoundError(f"The {what} {str(folder)!r} is a file; expected a folder.")
    if not folder.is_dir():
        raise DatasetNotFoundError(f"The {what} {str(folder)!r} does not exist.")


def _list_images(folder: Path, on_error: str, *, what: str) -> list[Path]:
    """Image files in ``folder`` (sorted). Other files raise / warn."""
    _check_folder(folder, f"{what} folder")
    files = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            _bad(
                on_error,
                f"{str(p)!r} is not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)}).",
            )
            continue
        files.append(p)
    return files


def _bad(on_error: str, message: str):
    if on_error == "raise":
        raise DatasetError(message)
    warnings.warn(message + " Skipped (on_error='skip').", stacklevel=3)


def _check_on_error(on_error):
    if on_error not in ("raise", "skip"):
        raise ValueError(f"`on_error` must be 'raise' or 'skip'. Received: on_error={on_error!r}")


def _check_color_mode(color_mode):
    if color_mode not in ("grayscale", "rgb"):
        raise ValueError(
            f"`color_mode` must be 'grayscale' or 'rgb'. Received: color_mode={color_mode!r}"
        )
    return 1 if color_mode == "grayscale" else 3


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(
            "`image_size` must be an int, a (height, width) pair or None. "
            f"Received: image_size={image_size!r}"
        ) from None
    if h <= 0 or w <= 0:
        raise ValueError(f"`image_size` must be positive. Received: image_size={image_size!r}")
    return (h, w)


def _valid(paths: list[Path], on_error: str, max_pixels) -> list[tuple[Path, dict]]:
    out = []
    for p in paths:
        try:
            out.append((p, image_info(p, max_pixels=max_pixels)))
        except DatasetError as exc:
            _bad(on_error, str(exc))
    return out


# --------------------------------------------------------------------------- decoding


def _is_png16(contents):
    """True for the bytes of a 16-bit PNG (signature, then IHDR's bit depth at byte 24)."""
    return tf.logical_and(
        tf.equal(tf.strings.substr(contents, 0, 8), b"\x89PNG\r\n\x1a\n"),
        tf.equal(tf.strings.substr(contents, 24, 1), b"\x10"),
    )


def _to_channels(img, channels: int):
    """``[H, W, c]`` with c in 1-4 -> ``channels`` (1 or 3); alpha dropped, RGB -> luma."""
    c = tf.shape(img)[-1]
    if channels == 1:
        img = tf.cond(c >= 3, lambda: tf.image.rgb_to_grayscale(img[..., :3]), lambda: img[..., :1])
    else:
        img = tf.cond(c >= 3, lambda: img[..., :3], lambda: tf.tile(img[..., :1], [1, 1, 3]))
    img.set_shape([None, None, channels])
    return img


def _decode(contents, channels: int, size=None):
    """Decodes PNG/JPEG/BMP bytes to float32 ``[H, W, channels]`` in [0, 1], resized to
    ``size`` (bilinear, antialiased, clipped) when given.

    The file is decoded in its own bit depth (uint8, or uint16 for 16-bit PNGs) and
    resized before it becomes float32, so a large image is held once at full size, in
    1 or 2 bytes per value, not also as a 4-byte float copy. 16-bit values are divided
    by 65535, 8-bit ones by 255; an alpha channel is dropped.
    """

    def branch(dtype, scale):
        img = tf.io.decode_image(contents, channels=0, dtype=dtype, expand_animations=False)
        if size is not None:
            img = tf.image.resize(img, size, method="bilinear", antialias=True)
        return _to_channels(tf.cast(img, tf.float32) / scale, channels)

    img = tf.cond(
        _is_png16(contents),
        lambda: branch(tf.uint16, 65535.0),
        lambda: branch(tf.uint8, 255.0),
    )
    if size is not None:
        img = tf.clip_by_value(img, 0.0, 1.0)
    img.set_shape([None, None, channels])
    return img


def _decode_mask(contents, hw):
    """A ground-truth mask as float32 ``[h, w, 1]`` in {0, 1}: any non-zero colour channel
    (alpha ignored) is defective; resized to ``hw`` with nearest neighbour."""

    def branch(dtype):
        m = tf.io.decode_image(contents, channels=0, dtype=dtype, expand_animations=False)
        c = tf.shape(m)[-1]
        m = tf.cond(c >= 3, lambda: m[..., :3], lambda: m[..., :1])
        m = tf.image.resize(m, hw, method="nearest")
        return tf.reduce_max(tf.cast(m > 0, tf.float32), axis=-1, keepdims=True)

    m = tf.cond(_is_png16(contents), lambda: branch(tf.uint16), lambda: branch(tf.uint8))
    m.set_shape([None, None, 1])
    return m


def _warn_upscaled(paths, size) -> None:
    """One warning when files are smaller than ``size`` (they are upscaled: no detail is
    recovered, and the model sees blur it never saw in sharp images)."""
    if size is None:
        return
    small = []
    for p in paths:
        try:
            info = image_info(p)
        except DatasetError:
            continue
        if info["height"] < size[0] or info["width"] < size[1]:
            small.append(f"{str(p)!r} ({info['height']}x{info['width']})")
    if small:
        warnings.warn(
            f"{len(small)} image(s) smaller than image_size={size[0]}x{size[1]} are upscaled "
            f"(bilinear), e.g. {small[0]}.",
            UserWarning,
            stacklevel=3,
        )


def load_image(path, *, image_size=None, color_mode="grayscale", max_pixels=DEFAULT_MAX_PIXELS):
    """Loads one image as float32 ``[H, W, C]`` in [0, 1] (checked first, like the datasets).

    8-bit files are divided by 255, 16-bit PNGs by 65535; an alpha channel is dropped
    (not composited); RGB files read as ``"grayscale"`` become luma
    (``tf.image.rgb_to_grayscale``), grayscale files read as ``"rgb"`` repeat their
    channel. A file smaller than ``image_size`` is upscaled with a warning.

    Args:
        path: PNG, JPEG or BMP file.
        image_size: None (keep), an int or (H, W): resized bilinearly with antialiasing.
        color_mode: "grayscale" or "rgb".
        max_pixels: a file declaring more pixels is refused before decoding
            (:func:`image_info`); None: any size.

    Returns:
        A float32 tensor.

    Raises:
        DatasetError: the file is unreadable, not an image, truncated or too large.
    """
    channels = _check_color_mode(color_mode)
    size = _check_image_size(image_size)
    image_info(path, max_pixels=max_pixels)
    _warn_upscaled([path], size)
    return _decode(tf.io.read_file(str(path)), channels, size)


def _resize_image(img, size):
    img = tf.image.resize(img, size, method="bilinear", antialias=True)
    return tf.clip_by_value(img, 0.0, 1.0)


def resize_image(image, image_size):
    """Resizes as the datasets and :func:`load_image` do: bilinear, antialiased, clipped.

    Args:
        image: float ``[H, W, C]`` or ``[B, H, W, C]`` in [0, 1].
        image_size: an int or ``(height, width)``.

    Returns:
        A float32 tensor of the new size, in [0, 1].
    """
    return _resize_image(tf.cast(image, tf.float32), _check_image_size(image_size))


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
        mask_dir = gt_dir / defect
        mask_files = {}
        if mask_dir.is_dir():
            for m in _list_images(mask_dir, on_error, what=f"ground_truth/{defect}"):
                mask_files[m.name] = m
        used = set()
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
    if not records:
        raise DatasetNotFoundError(f"No images found in {str(split_dir)!r}.")
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
    size = _check_image_size(image_size)
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
    size = _check_image_size(image_size)
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
    folder = Path(path)
    images = _list_images(folder, on_error, what="image")
    files = [p for p, _ in _valid(images, on_error, check_max_pixels(max_pixels))]
    if not files:
        raise DatasetNotFoundError(
            f"No images found in {str(folder)!r} (expected {', '.join(IMAGE_EXTENSIONS)} files)."
        )
    if subset is not None:
        order = list(range(len(files)))
        random.Random(int(seed)).shuffle(order)
        n_val = int(round(len(files) * float(validation_split)))
        n_val = min(max(n_val, 1), len(files) - 1) if len(files) > 1 else 0
        chosen = (
            order[len(files) - n_val :] if subset == "validation" else order[: len(files) - n_val]
        )
        if not chosen:
            raise DatasetNotFoundError(
                f"The {subset} subset of {str(folder)!r} is empty "
                f"({len(files)} images, validation_split={validation_split})."
            )
        files = [files[i] for i in sorted(chosen)]
    records = [(p, None, 0, "good") for p in files]
    _warn_upscaled(files, size)
    return _make_dataset(records, size=size, channels=channels)
