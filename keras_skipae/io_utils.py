"""Safe file output (temporary name + rename, no silent clobbering), and the small
conversions every layer shares: :func:`read_json` / :func:`write_json`,
:func:`write_png_atomic`, :func:`to_uint8`, :func:`as_text` and :func:`parse_image_size`.

Every file or folder keras_skipae writes for a user goes through these helpers,
so an interrupted write never leaves a half-written file under the final name,
and an existing output is refused unless the caller passes ``overwrite=True``.
A write that fails (a full disk, a read-only folder) raises an ``OSError`` whose
message names the final path; the temporary file is removed and a previous file
under the final name is left as it was.

Fault injection (for tests only, :mod:`keras_skipae.faults`): with
``KERAS_SKIPAE_FAULT=write_fail:<n_bytes>[:<glob>]`` set, every atomic write whose
final name matches ``<glob>`` (``fnmatch`` on the file or folder name; all writes
without it) behaves as if the disk had ``n_bytes`` free: once the temporary file
(or folder, counting all its files) holds more than ``n_bytes``, it is cut to
``n_bytes`` and the write raises ``OSError(errno.ENOSPC)``. Do not set it in production.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import math
import numbers
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keras_skipae import faults


def check_writable(
    path: str | os.PathLike, *, overwrite: bool = False, what: str = "output"
) -> Path:
    """Refuses to clobber ``path`` unless ``overwrite``.

    Args:
        path: the final output path (file or folder).
        overwrite: allow replacing an existing path.
        what: how the error names the path ("output", "export folder", ...).

    Returns:
        The path as a ``Path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"The {what} {str(path)!r} already exists. Refusing to overwrite it; "
            "pass overwrite=True (CLI: --overwrite) to replace it."
        )
    return path


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, overwrite: bool = False, is_dir: bool = False, what: str = "output"
) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it to ``path`` on success.

    Args:
        path: the final file or folder.
        overwrite: replace an existing ``path`` (only after the new one is complete).
        is_dir: yield a (created) temporary folder instead of a file name.
        what: how errors name the path.

    Example:
        >>> with atomic_path("report.json") as tmp:
        ...     tmp.write_text("{}")
    """
    path = check_writable(path, overwrite=overwrite, what=what)
    parent = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}.tmp-"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            os.chmod(tmp, 0o777 & ~_umask())
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=parent)
            os.close(fd)
            tmp = Path(name)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
    except OSError as exc:
        raise _write_error(exc, path, what, parent / prefix) from exc
    try:
        try:
            yield tmp
            _inject_fault(tmp, path)
        except OSError as exc:
            raise _write_error(exc, path, what, tmp) from exc
        if path.exists():
            # Only reached with overwrite=True (checked above): move the old one
            # aside first so the replacement is a rename, then delete it.
            old = parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _write_error(exc: OSError, path: Path, what: str, tmp: Path | None = None) -> OSError:
    """``exc`` again, as the same ``OSError`` subclass, with a message naming ``path`` (and
    the file the error was about, when it is not the temporary one)."""
    if getattr(exc, "_keras_skipae_path", None):  # a nested atomic write already named its file
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    other = os.fsdecode(exc.filename) if exc.strerror and exc.filename is not None else None
    if other and not (tmp is not None and other.startswith(str(tmp))) and other != str(path):
        reason = f"{reason}: {other!r}"
    error = OSError(exc.errno, f"Could not write the {what} {str(path)!r}: {reason}")
    if exc.errno is None:
        error = type(exc)(f"Could not write the {what} {str(path)!r}: {reason}")
    error._keras_skipae_path = str(path)
    return error


def _inject_fault(tmp: Path, path: Path) -> None:
    """The test-only ``KERAS_SKIPAE_FAULT=write_fail:<n>[:<glob>]`` hook (module docstring)."""
    args = faults.requested("write_fail")
    if args is None or (len(args) > 1 and not fnmatch.fnmatch(path.name, args[1])):
        return
    budget = int(args[0])
    files = sorted(p for p in tmp.rglob("*") if p.is_file()) if tmp.is_dir() else [tmp]
    for file in files:
        length = file.stat().st_size
        if length > budget:
            with open(file, "r+b") as f:
                f.truncate(budget)
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected)", str(file))
        budget -= length


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Writes ``text`` atomically. Overwrites by default (for files a run owns)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj, *, overwrite: bool = True) -> Path:
    """Writes ``obj`` as indented JSON, atomically."""
    return write_text(
        path,
        json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n",
        overwrite=overwrite,
    )


def _json_default(value):
    try:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def jsonable(obj, *, allow_nan: bool = True):
    """``obj`` as plain JSON types (a JSON round trip with the package's encoder: NumPy
    scalars and arrays, paths); with ``allow_nan=False``, NaN and infinite floats become
    None (strict JSON)."""
    value = json.loads(json.dumps(obj, default=_json_default))
    return value if allow_nan else _finite(value)


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_json(path: str | os.PathLike, *, what: str = "JSON file", sections=()) -> dict:
    """The JSON object in ``path``; anything else raises an error that names the file.

    Args:
        path: the file.
        what: how the error names the file (``"run config"``, ``"export settings"``).
        sections: keys whose value, when present and not null, must be a JSON object too.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not valid UTF-8 JSON (damaged or cut short), holds
            something other than an object, or a listed section is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} {str(path)!r} does not exist.")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(
            f"The {what} {str(path)!r} is not valid JSON ({exc}); the file is damaged or was "
            "cut short."
        ) from exc
    if not isinstance(value, dict):
        raise ValueError(
            f"The {what} {str(path)!r} must hold a JSON object ({{...}}); the file is damaged. "
            f"Received: a JSON {_json_type(value)}"
        )
    for key in sections:
        if value.get(key) is not None and not isinstance(value[key], dict):
            raise ValueError(
                f"The {what} {str(path)!r} is damaged: {key!r} must be a JSON object. "
                f"Received: a JSON {_json_type(value[key])}"
            )
    return value


def _json_type(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_keras_file(
    path: str | os.PathLike,
    *,
    safe_mode: bool = True,
    compile: bool = True,
    what: str = "model file",
):
    """``keras.models.load_model`` with an error that names the file.

    A truncated or corrupted ``.keras`` file, a tampered configuration (broken
    JSON, an unknown class, a ``Lambda`` layer under ``safe_mode``) or missing or
    damaged weights raise a ``ValueError`` that starts with the file's path and
    keeps Keras' reason on the same line.

    Args:
        path: a ``.keras`` file.
        safe_mode: refuse to deserialize ``Lambda`` layers / arbitrary code.
        compile: restore the training configuration when the file has one.
        what: how the error names the file.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not a complete, loadable ``.keras`` archive.
    """
    import keras  # heavy: only the loaders need it

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} {str(path)!r} does not exist.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"The {what} {str(path)!r} is not a valid .keras file: it is not a complete zip "
            f"archive ({path.stat().st_size} bytes; truncated or corrupted?)."
        )
    try:
        return keras.models.load_model(path, safe_mode=safe_mode, compile=compile)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OSError) as exc:
        raise ValueError(
            f"Could not load the {what} {str(path)!r} (corrupted or tampered?): {one_line(exc)}"
        ) from exc
    except zipfile.BadZipFile as exc:
        raise ValueError(
            f"Could not load the {what} {str(path)!r}: a damaged zip archive ({one_line(exc)})"
        ) from exc


def as_text(value) -> str:
    """``value`` as ``str``: bytes (e.g. a ``tf.string`` element, also as a 0-d array)
    decoded as UTF-8, with undecodable bytes replaced; anything else through ``str``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bytes | bytearray | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def to_uint8(image) -> np.ndarray:
    """Float pixel values in [0, 1] as uint8: clipped to [0, 1], times 255, rounded to the
    nearest integer (halves to even, as ``np.round``). A uint8 array is returned as is."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_png(image, *, bgr: bool = False) -> bytes:
    """The PNG file of an 8- or 16-bit image ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``
    (RGB, or already OpenCV's BGR with ``bgr=True``; ``[H, W, 4]`` is taken as is).

    Raises:
        ValueError: the array is not an image OpenCV can write as PNG.
    """
    import cv2  # heavy: only the image writers need it

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[-1] == 3 and not bgr:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image.ndim not in (2, 3) or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            "Expected a uint8 or uint16 image [H, W] or [H, W, C] to write as PNG. "
            f"Received: an array of shape {image.shape} and dtype {image.dtype}"
        )
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image.shape} as PNG.")
    return encoded.tobytes()


def write_png_atomic(
    path: str | os.PathLike,
    image,
    *,
    overwrite: bool = True,
    bgr: bool = False,
    what: str = "image",
) -> Path:
    """Writes ``image`` (see :func:`encode_png`) as a PNG file, atomically.

    Args:
        path: the PNG file.
        image: uint8 / uint16 ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``.
        overwrite: replace an existing file (refused otherwise).
        bgr: the channels are already in OpenCV's BGR order.
        what: how errors name the file.

    Returns:
        ``path`` as a ``Path``.
    """
    data = encode_png(image, bgr=bgr)
    with atomic_path(path, overwrite=overwrite, what=what) as tmp:
        tmp.write_bytes(data)
    return Path(path)


#: The colour modes images are read in, with their channel counts (the one mapping).
COLOR_MODES = {"grayscale": 1, "rgb": 3}


def color_mode_for(channels) -> str | None:
    """The colour mode of images with ``channels`` channels (None for another count)."""
    for mode, count in COLOR_MODES.items():
        if count == channels:
            return mode
    return None


def channels_for(color_mode) -> int:
    """The channel count of ``color_mode`` (``"grayscale"`` 1, ``"rgb"`` 3).

    Raises:
        ValueError: another colour mode.
    """
    if color_mode not in COLOR_MODES:
        raise ValueError(
            f"`color_mode` must be 'grayscale' or 'rgb'. Received: color_mode={color_mode!r}"
        )
    return COLOR_MODES[color_mode]


def parse_image_size(image_size, *, allow_none: bool = True) -> tuple[int, int] | None:
    """``image_size`` as a ``(height, width)`` pair of positive ints.

    Args:
        image_size: an int (a square side), a ``(height, width)`` pair of ints, or None.
        allow_none: whether None is accepted (and returned as None).

    Raises:
        ValueError: anything else, or a side below 1.
    """
    if image_size is None and allow_none:
        return None
    if _is_int(image_size):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(image_size)
        except TypeError:
            size = ()
        if len(size) != 2 or not all(_is_int(v) for v in size):
            none = "None, " if allow_none else ""
            raise ValueError(
                f"Expected `image_size` to be {none}an int or a (height, width) pair of ints. "
                f"Received: image_size={image_size!r}"
            )
        size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"Expected a positive `image_size`. Received: image_size={image_size!r}")
    return size


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
