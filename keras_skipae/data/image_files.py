"""Image files checked before anything is decoded: headers, listing, the dataset errors.

:func:`image_info` reads a PNG, JPEG or BMP header (format, size, channels, bit depth),
checks that the file is not truncated and that it declares at most ``max_pixels``
pixels, so a bad or huge file raises a :class:`DatasetError` naming it before
TensorFlow sees it.
"""

from __future__ import annotations

import numbers
import struct
import warnings
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DatasetError",
    "DatasetNotFoundError",
    "IMAGE_EXTENSIONS",
    "check_max_pixels",
    "image_info",
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


def _valid(paths: list[Path], on_error: str, max_pixels) -> list[tuple[Path, dict]]:
    out = []
    for p in paths:
        try:
            out.append((p, image_info(p, max_pixels=max_pixels)))
        except DatasetError as exc:
            _bad(on_error, str(exc))
    return out
