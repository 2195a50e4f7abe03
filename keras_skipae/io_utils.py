"""Safe file output: temporary name + rename, and no silent clobbering.

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


def jsonable(obj):
    """``obj`` as plain JSON types (a JSON round trip with the package's encoder)."""
    return json.loads(json.dumps(obj, default=_json_default))


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
