"""Which outputs ``overwrite=True`` may replace: the one ownership rule of every output.

Every folder keras_skipae creates for a user carries a marker file, :data:`MARKER`
(``.keras_skipae.json``: ``{"kind": ..., "version": ...}``), written by :func:`mark_owned`;
a ``.keras`` file written by ``export_keras`` carries it as an entry of its zip archive
(:func:`mark_archive`). ``overwrite=True`` (CLI: ``--overwrite``) replaces an existing
output only when :func:`check_replaceable` accepts it, that is when it

* carries the marker of the kind being written (a run folder is replaced only by a run,
  an export only by an export, ...);
* holds nothing but the entries the package writes for that kind (``allowed``), the
  marker, the ``.<name>.tmp-*`` / ``.<name>.old-*`` leftovers of interrupted writes and
  the operating system's ``.DS_Store``, ``Thumbs.db`` and ``desktop.ini``;
* is not one of the command's inputs (the run, export, model or data it reads), does not
  contain one and does not lie inside one;
* is not an ancestor of a run folder (a folder below it with a run marker or a
  ``config.json``), other than the runs the kind itself holds (``own``).

Otherwise it raises ``FileExistsError`` with one line that names the output and why.

Folders written by version 0.1 have no marker. One of them counts as made by the
package (:data:`LEGACY`) only when every entry is one that kind writes and its main
file reads as that kind's document (a run's ``config.json`` with a ``model`` section,
an export's ``assets/keras_skipae.json``, ...), or, for a synthetic dataset or a demo
folder, when it holds the marker file those commands wrote before this one existed.
A ``.keras`` file without the marker entry is never replaced.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from keras_skipae import __version__, io_utils

#: The marker file of a folder the package made (and the entry of a ``.keras`` archive).
MARKER = ".keras_skipae.json"

#: The kinds of output, and how errors name them.
KINDS = {
    "run": "run folder",
    "export": "export",
    "evaluation": "evaluation folder",
    "predictions": "predictions folder",
    "discrepancy": "discrepancy folder",
    "demo": "demo folder",
    "dataset": "dataset folder",
}

#: Entries any owned folder may hold besides its kind's: the marker, leftovers of
#: interrupted atomic writes, and files the operating system's file browsers leave.
ALWAYS_ALLOWED = (MARKER, ".*.tmp-*", ".*.old-*", ".DS_Store", "Thumbs.db", "desktop.ini")


def _json_dict(path: Path, *keys: str) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and all(k in doc for k in keys)


def _csv_header(path: Path, *columns: str) -> bool:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, ValueError, csv.Error):
        return False
    return tuple(header[: len(columns)]) == columns


#: How a folder without the marker is recognised as written by version 0.1, by kind
#: (only when every entry is also one of the kind's): ``(file, test)``.
LEGACY = {
    "run": ("config.json", lambda p: _json_dict(p, "model", "training")),
    "evaluation": ("metrics.json", lambda p: _json_dict(p, "image_auroc", "settings")),
    "discrepancy": ("discrepancy.json", lambda p: _json_dict(p, "runs", "results")),
    "export": ("assets/keras_skipae.json", lambda p: _json_dict(p, "format", "scoring")),
    "predictions": ("predictions.csv", lambda p: _csv_header(p, "path", "score", "decision")),
    "dataset": (".keras_skipae_synthetic", Path.is_file),  # make_dataset's marker in 0.1
    "demo": (".keras_skipae_demo", Path.is_file),  # the demo's marker in 0.1
}


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"Expected `kind` to be one of {sorted(KINDS)}. Received: kind={kind!r}")
    return kind


def _document(kind: str) -> dict:
    return {"kind": _check_kind(kind), "version": __version__}


def mark_owned(folder: str | os.PathLike, kind: str) -> Path:
    """Writes the marker of ``kind`` into ``folder`` (atomically); returns the marker file.

    Call it on the folder (or the temporary folder of ``io_utils.atomic_path(...,
    is_dir=True)``, before the rename) that a writer has just created.
    """
    return io_utils.write_json(Path(folder) / MARKER, _document(kind))


def mark_archive(path: str | os.PathLike, kind: str) -> Path:
    """Adds the marker of ``kind`` as an entry to the zip archive ``path`` (a ``.keras`` file;
    Keras ignores the extra entry when it loads the file)."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(MARKER, json.dumps(_document(kind)) + "\n")
    return Path(path)


def owner(path: str | os.PathLike) -> str | None:
    """The kind in the marker of the folder or ``.keras`` archive ``path``; None without one.

    Raises:
        ValueError: the marker is there but is not a marker (damaged or hand-made).
    """
    path = Path(path)
    try:
        if path.is_dir():
            if not (path / MARKER).is_file():
                return None
            text = (path / MARKER).read_text(encoding="utf-8")
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if MARKER not in archive.namelist():
                    return None
                text = archive.read(MARKER).decode("utf-8")
        else:
            return None
        doc = json.loads(text)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"its marker {MARKER} is damaged ({io_utils.one_line(exc)})") from None
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
        raise ValueError(f"its marker {MARKER} names no kind of output")
    return doc["kind"]


def _resolved(path) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _input_problem(path: Path, inputs: Iterable) -> str | None:
    real = _resolved(path)
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            continue  # None, or an object (a model) rather than a path
        other = _resolved(item)
        if real == other:
            return f"it is {str(item)!r}, which this command reads"
        if _within(other, real):
            return f"it contains {str(item)!r}, which this command reads"
        if _within(real, other):
            return f"it lies inside {str(item)!r}, which this command reads"
    return None


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def _run_below(folder: Path, own: Iterable[str]) -> Path | None:
    """The first folder strictly below ``folder`` that looks like a run (a run marker or a
    ``config.json``), skipping the relative paths ``own``; symbolic links are not followed."""
    own = {Path(p) for p in own}
    for dirpath, dirnames, filenames in os.walk(folder):
        current = Path(dirpath)
        rel = current.relative_to(folder)
        if rel in own:
            dirnames[:] = []
            continue
        if rel != Path(".") and ("config.json" in filenames or MARKER in filenames):
            if "config.json" in filenames:
                return current
            try:
                if owner(current) == "run":
                    return current
            except ValueError:
                return current  # a damaged marker: it may be a run
        dirnames.sort()
    return None


def check_replaceable(
    path: str | os.PathLike,
    kind: str,
    *,
    inputs: Iterable = (),
    allowed: Iterable[str] | None = None,
    own: Iterable[str] = (),
    file: bool = False,
    what: str | None = None,
) -> None:
    """Raises ``FileExistsError`` unless ``overwrite=True`` may replace ``path`` (module docstring).

    Returns at once when ``path`` does not exist: there is nothing to replace. An empty
    folder holds nothing to lose and is accepted (unless it is, contains or lies inside
    an input).

    Args:
        path: the output about to be replaced.
        kind: the kind being written (one of :data:`KINDS`).
        inputs: the paths the command reads (run folders, model files, exports, data).
        allowed: names or ``fnmatch`` patterns of the top-level entries ``kind`` writes.
        own: relative paths of run folders that ``kind`` itself writes below ``path``
            (the demo's ``runs/ae``), which do not make it an ancestor of a run.
        file: ``path`` is a file (a ``.keras`` export), not a folder.
        what: how the error names ``path`` (default: the kind's name).

    Raises:
        FileExistsError: ``path`` may not be replaced; the message names it and says why.
    """
    _check_kind(kind)
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    what = what or KINDS[kind]
    name = KINDS[kind]
    reason = _reason(path, kind, inputs, allowed, own, file)
    if reason is not None:
        raise FileExistsError(
            f"Refusing to replace the {what} {str(path)!r}: {reason}. overwrite=True "
            f"(--overwrite) replaces only a {name} that keras_skipae made; choose another output."
        )


def _reason(path: Path, kind: str, inputs, allowed, own, file: bool) -> str | None:
    """Why ``path`` may not be replaced, or None."""
    if path.is_symlink():
        return "it is a symbolic link"
    if file and path.is_dir():
        return "it is a folder, not a file"
    if not file and not path.is_dir():
        return "it is a file, not a folder"
    problem = _input_problem(path, inputs)
    if problem:
        return problem
    try:
        found = owner(path)
    except ValueError as exc:
        return str(exc)
    if file:
        if found is None:
            return f"it is not a file keras_skipae wrote (no {MARKER} entry)"
        return (
            None if found == kind else f"it is a keras_skipae {KINDS[found]}, not a {KINDS[kind]}"
        )
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return None
    patterns = tuple(allowed or ()) + ALWAYS_ALLOWED
    legacy_file, legacy_test = LEGACY.get(kind, (None, None))
    if found is None and legacy_file is not None and "/" not in legacy_file:
        patterns += (legacy_file,)  # the old marker files are entries of their folders
    if found is not None and found != kind:
        return f"it is a keras_skipae {KINDS[found]}, not a {KINDS[kind]}"
    foreign = [n for n in entries if not _matches(n, patterns)]
    if foreign:
        shown = ", ".join(repr(n) for n in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        return f"it holds files keras_skipae does not write there ({shown})"
    if found is None and not (legacy_test is not None and legacy_test(path / legacy_file)):
        return f"it has no {MARKER} marker, so keras_skipae did not make it"
    run = _run_below(path, own)
    if run is not None:
        return f"it holds the run folder {str(run)!r}"
    return None
