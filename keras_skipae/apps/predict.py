"""``keras-skipae predict``: a model's predictions on files and folders, written to a folder.

:func:`predict_to_folder` streams the images through a :class:`~keras_skipae.Detector`
and writes, in ``out_dir``:

* ``predictions.csv`` (atomically: a temporary file renamed at the end), one row per
  input file: ``path, score, decision, threshold, map_min, map_max, error, map_file,
  overlay_file``. ``decision`` is ``anomalous`` / ``normal``, empty without a
  threshold, ``error`` for a bad file (its message in ``error``; the run goes on).
  ``map_min`` / ``map_max`` are those of the map at the image's original resolution.
  A text cell that a spreadsheet would read as a formula (it starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return) gets a leading apostrophe (OWASP's CSV
  injection advice); numbers are written as they are;
* ``predictions.paths.json``: ``{"csv": "predictions.csv", "paths": [...]}``, the raw
  ``path`` of each CSV row (``paths[i]`` is data row ``i``, the header not counted),
  unescaped;
* with ``save_maps``: ``maps/<index>_<name>.png``, the anomaly map at the image's
  original resolution, colour-mapped (jet) from 0 to twice the threshold (the
  threshold is the middle of the scale), or from 0 to the map's maximum without one;
* with ``overlay``: ``overlays/<index>_<name>.png``, the image with that colour map
  blended on top and, with a threshold, the outline of the pixels at or above it.

Existing outputs are refused unless ``overwrite``, which replaces ``predictions.csv``
and deletes the map and overlay files the old CSV lists (nothing else), and only in a
predictions folder keras_skipae made (:func:`keras_skipae.ownership.check_replaceable`).

Resuming: rows are appended to ``.predictions.partial.jsonl`` as they are scored (after
each full batch, flushed to disk, its maps written first), next to
``.predictions.resume.json``, the settings that decide the rows (:func:`resume_settings`).
The CSV and the sidecar are written from the partial file at the end, and both hidden
files are then removed. A run that was interrupted (Ctrl-C, a kill, a crash) and is
started again with the same settings skips the images whose rows (and maps) are complete
and ends with the same CSV as an uninterrupted run; with other settings it is refused
(``overwrite`` starts again). Temporary files that a killed run left behind are removed
when the next run starts.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from keras_skipae import io_utils, ownership
from keras_skipae.data.datasets import DEFAULT_MAX_PIXELS
from keras_skipae.data.reader import check_workers
from keras_skipae.inference import Detector
from keras_skipae.inference.detector import list_image_files

#: The columns of ``predictions.csv``.
COLUMNS = (
    "path",
    "score",
    "decision",
    "threshold",
    "map_min",
    "map_max",
    "error",
    "map_file",
    "overlay_file",
)
CSV_NAME = "predictions.csv"
#: The sidecar with the raw (unescaped) path of each CSV row.
PATHS_NAME = "predictions.paths.json"
#: The settings of a run in progress, and its rows so far (removed when it completes).
STATE_NAME, PARTIAL_NAME = ".predictions.resume.json", ".predictions.partial.jsonl"
MAPS, OVERLAYS = "maps", "overlays"
#: What a predictions folder may hold (besides the marker): ``overwrite`` refuses others.
PREDICTION_ENTRIES = ("predictions*", STATE_NAME, PARTIAL_NAME, MAPS, OVERLAYS)
#: The text columns, escaped when a cell starts like a spreadsheet formula.
TEXT_COLUMNS = ("path", "error", "map_file", "overlay_file")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """``text`` with a leading apostrophe when it starts like a formula (OWASP)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def resume_settings(
    model,
    inputs,
    *,
    threshold=None,
    save_maps=False,
    overlay=False,
    best=False,
    tile_size=None,
    tile_overlap=None,
    max_pixels=DEFAULT_MAX_PIXELS,
) -> dict:
    """The settings an interrupted prediction must be run again with to resume.

    Plain JSON values; ``keras_skipae_cli.checks.predict`` builds the same dict from
    the command line to answer before TensorFlow is imported.
    """
    return {
        "version": 1,
        "model": os.path.abspath(os.fspath(model)),
        "inputs": [os.fspath(p) for p in inputs],
        "resolved": [os.path.abspath(os.fspath(p)) for p in inputs],
        "threshold": None if threshold is None else float(threshold),
        "save_maps": bool(save_maps),
        "overlay": bool(overlay),
        "best": bool(best),
        "tile_size": tile_size,
        "tile_overlap": tile_overlap,
        "max_pixels": max_pixels,
    }


def check_outputs(out_dir, *, overwrite: bool, inputs=()) -> Path:
    """Refuses an ``out_dir`` that holds a ``predictions.csv`` unless ``overwrite``, and with
    ``overwrite`` a non-empty folder that is not a predictions folder keras_skipae made, or
    that is, holds or lies in one of the ``inputs`` (the model and the images read)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"The output {str(out_dir)!r} exists and is not a folder.")
    io_utils.check_writable(out_dir / CSV_NAME, overwrite=overwrite, what="predictions file")
    if overwrite:
        ownership.check_replaceable(
            out_dir, "predictions", inputs=inputs, allowed=PREDICTION_ENTRIES
        )
    return out_dir


def _remove_previous(out_dir: Path) -> None:
    """Deletes the map and overlay files an existing ``predictions.csv`` lists, and an
    interrupted run's partial rows, their maps and its settings."""
    old = out_dir / CSV_NAME
    listed = []
    if old.is_file():
        with open(old, newline="", encoding="utf-8") as f:
            listed = [(row.get("map_file"), row.get("overlay_file")) for row in csv.DictReader(f)]
    partial, _ = _read_partial(out_dir / PARTIAL_NAME)
    listed += [(row[7], row[8]) for row in partial]
    for names in listed:
        for name in names:
            target = (out_dir / (name or "")).resolve()
            if name and target.parent.parent == out_dir.resolve():
                target.unlink(missing_ok=True)
    (out_dir / PARTIAL_NAME).unlink(missing_ok=True)
    (out_dir / STATE_NAME).unlink(missing_ok=True)


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Deletes the temporary files of atomic writes that a killed run left behind."""
    patterns = [
        f".{name}.{kind}-*"
        for name in (CSV_NAME, PATHS_NAME, STATE_NAME)
        for kind in ("tmp", "old")
    ]
    stale = [f for pattern in patterns for f in out_dir.glob(pattern)]
    for folder in (MAPS, OVERLAYS):
        for kind in ("tmp", "old"):
            stale.extend((out_dir / folder).glob(f".*.png.{kind}-*"))
    for f in stale:
        if f.is_file() and not f.is_symlink():
            f.unlink(missing_ok=True)


def _read_partial(path: Path) -> tuple[list[list[str]], list[int]]:
    """The complete rows of a partial file, and the byte offset where each one ends (a
    line cut by a kill, and anything after it, is not a row)."""
    rows, ends = [], []
    if not path.is_file():
        return rows, ends
    with open(path, "rb") as f:
        for line in f:
            try:
                row = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                row = None
            if not (isinstance(row, list) and len(row) == len(COLUMNS)):
                break
            rows.append([str(cell) for cell in row])
            ends.append((ends[-1] if ends else 0) + len(line))
    return rows, ends


def _resumable_rows(out_dir: Path, settings: dict, files: list) -> list[list[str]]:
    """The rows an interrupted run with the same ``settings`` completed (with their maps),
    its partial file cut after them; none without an interrupted run.

    Raises:
        FileExistsError: ``out_dir`` holds an interrupted run with other settings or
            other input files.
    """
    state_path, partial = out_dir / STATE_NAME, out_dir / PARTIAL_NAME
    if not state_path.is_file():
        return []
    try:
        stored = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = None
    differ = (
        sorted(k for k in settings if stored.get(k) != settings[k])
        if isinstance(stored, dict)
        else [f"{STATE_NAME} is unreadable"]
    )
    rows, ends = _read_partial(partial)
    done = 0
    for row in rows:  # complete: the row, and the maps it lists
        if any(name and not (out_dir / name).is_file() for name in row[7:9]):
            break
        done += 1
    if not differ and [r[0] for r in rows[:done]] != [str(f) for f in files[:done]]:
        differ = ["the input files"]
    if differ:
        raise FileExistsError(
            f"{str(out_dir)!r} holds an interrupted prediction with other settings "
            f"({', '.join(differ)}). Run it again with the same arguments to resume it, or "
            "pass overwrite=True (CLI: --overwrite) to start again."
        )
    if partial.is_file():
        with open(partial, "r+b") as f:
            f.truncate(ends[done - 1] if done else 0)
    return rows[:done]


def _output_name(index: int, path: str | None) -> str:
    stem = Path(path).stem if path else "image"
    return f"{index:05d}_{stem}.png"


def _colour_map(anomaly_map: np.ndarray, threshold: float | None) -> np.ndarray:
    """A BGR uint8 jet image of the map, on the scale the module docstring describes."""
    import cv2

    top = 2.0 * threshold if threshold is not None and threshold > 0 else float(anomaly_map.max())
    scaled = np.clip(anomaly_map / max(top, 1e-12), 0.0, 1.0)
    return cv2.applyColorMap(io_utils.to_uint8(scaled), cv2.COLORMAP_JET)


def _overlay(image: np.ndarray, heat: np.ndarray, anomaly_map, threshold) -> np.ndarray:
    import cv2

    base = io_utils.to_uint8(image)
    base = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR) if base.shape[-1] == 1 else base[..., ::-1]
    blended = cv2.addWeighted(np.ascontiguousarray(base), 0.6, heat, 0.4, 0.0)
    if threshold is not None:
        mask = (anomaly_map >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(blended, contours, -1, (255, 255, 255), 1)
    return blended


def predict_to_folder(
    model,
    inputs,
    out_dir,
    *,
    threshold: float | None = None,
    save_maps: bool = False,
    overlay: bool = False,
    batch_size: int = 16,
    best: bool = False,
    overwrite: bool = False,
    fail_on_anomaly: bool = False,
    progress: bool = True,
    top: int = 10,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> dict:
    """Scores files and folders with a model and writes the results to ``out_dir``.

    Args:
        model: a run folder, an exported SavedModel or a ``.keras`` file
            (:meth:`Detector.load`).
        inputs: image files and folders (folders are read recursively).
        out_dir: the output folder (created if needed).
        threshold: overrides the model's threshold.
        save_maps: write ``maps/<index>_<name>.png``.
        overlay: write ``overlays/<index>_<name>.png``.
        batch_size: images per model call.
        best: a run folder's ``best.keras``.
        overwrite: replace the outputs of an earlier prediction in ``out_dir`` (or
            start an interrupted one again).
        fail_on_anomaly: refuse (before scoring) a model without a threshold.
        progress: show a tqdm progress bar.
        top: how many of the highest scores the summary keeps.
        tile_size, tile_overlap: score full-resolution images tile by tile
            (:meth:`Detector.load`'s; None: the model's own tiling).
        max_pixels: a file whose header declares more pixels is an error row, refused
            before decoding (:meth:`Detector.predict`); None: any size.
        workers: threads that decode and resize the next images while the model scores
            (:meth:`Detector.predict`; None: the CPU cores, at most 4; 0: none). The
            results do not depend on it.

    Returns:
        A dict: ``csv`` (the file), ``paths`` (the sidecar), ``n`` (rows),
        ``n_anomalous``, ``n_normal``, ``n_errors``, ``resumed`` (the rows an
        interrupted run had completed, 0 for a fresh run), ``threshold``,
        ``threshold_source``, ``top`` (``(score, decision, path)``, highest first),
        ``notes`` (warnings for the user), ``seconds``, ``detector`` (its repr).

    Raises:
        FileExistsError: ``out_dir`` holds a ``predictions.csv``, or an interrupted
            prediction with other settings, and not ``overwrite``.
        ValueError: ``fail_on_anomaly`` for a model without a threshold, or a bad
            ``workers``.
    """
    check_workers(workers)  # before anything is written
    inputs = list(inputs)
    out_dir = check_outputs(out_dir, overwrite=overwrite, inputs=[model, *inputs])
    settings = resume_settings(
        model,
        inputs,
        threshold=threshold,
        save_maps=save_maps,
        overlay=overlay,
        best=best,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        max_pixels=max_pixels,
    )
    files = list_image_files(inputs)
    resuming = (out_dir / STATE_NAME).is_file() and not overwrite
    if not resuming and not overwrite:
        io_utils.check_writable(out_dir / PATHS_NAME, what="predictions file")
    done = _resumable_rows(out_dir, settings, files) if resuming else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = Detector.load(
            model, threshold=threshold, best=best, tile_size=tile_size, tile_overlap=tile_overlap
        )
    notes = [str(w.message) for w in caught]
    if fail_on_anomaly and detector.threshold is None:
        raise ValueError(
            f"--fail-on-anomaly needs a threshold, and {str(model)!r} has none: pass --threshold X."
        )
    stream = detector.predict(
        files[len(done) :],
        batch_size=batch_size,
        on_error="report",
        max_pixels=max_pixels,
        workers=workers,
    )
    _prepare_folder(out_dir, settings, overwrite=overwrite, resuming=resuming)
    start = time.perf_counter()
    thr = detector.threshold
    replace_maps = overwrite or resuming  # names of this run's own images
    _write_rows(
        stream, out_dir, len(done), thr, batch_size, save_maps, overlay, replace_maps, progress
    )
    info = _finalise(out_dir, top=top, replace=overwrite or resuming)
    (out_dir / PARTIAL_NAME).unlink(missing_ok=True)
    (out_dir / STATE_NAME).unlink(missing_ok=True)
    return {
        **info,
        "resumed": len(done),
        "threshold": thr,
        "threshold_source": detector.threshold_source,
        "notes": notes,
        "seconds": time.perf_counter() - start,
        "detector": repr(detector),
    }


def _prepare_folder(out_dir, settings, *, overwrite: bool, resuming: bool) -> None:
    """Clears an earlier prediction (``overwrite``), creates and marks the folder, and
    records the settings of a fresh start (a resumed one keeps its rows)."""
    if overwrite:
        _remove_previous(out_dir)
    fresh_folder = not out_dir.is_dir() or not any(out_dir.iterdir())
    out_dir.mkdir(parents=True, exist_ok=True)
    if fresh_folder:
        ownership.mark_owned(out_dir, "predictions")
    _remove_stale_temporaries(out_dir)
    if not resuming:  # a fresh start: no rows yet
        (out_dir / PARTIAL_NAME).unlink(missing_ok=True)
        io_utils.write_json(out_dir / STATE_NAME, settings)


def _write_rows(stream, out_dir, first, thr, batch_size, save_maps, overlay, replace, progress):
    """Appends the rows of ``stream``'s predictions (the first numbered ``first``) to the
    partial file, a complete batch at a time."""
    from tqdm.auto import tqdm

    with open(out_dir / PARTIAL_NAME, "ab") as partial:
        pending, n_good = [], 0
        bar = tqdm(stream, total=stream.total, unit="img", disable=not progress, leave=False)
        for p in bar:
            index = first + p.index
            row = _row(p, index, out_dir, thr, save_maps, overlay, replace)
            n_good += p.ok
            pending.append(json.dumps(["" if c is None else str(c) for c in row]) + "\n")
            # A batch is complete after its last scored image: rows are kept a batch at a
            # time, so that a resumed run batches the rest as an uninterrupted run does.
            if p.ok and n_good % batch_size == 0:
                _append(partial, pending)
                pending = []
        _append(partial, pending)


def _row(p, index, out_dir, thr, save_maps, overlay, replace) -> list[str]:
    """The CSV row of prediction ``p`` (the ``index``-th file), after writing its map and
    overlay PNGs when asked (``replace``: over the files of an earlier run)."""
    threshold_text = "" if thr is None else f"{thr:.9g}"
    if not p.ok:
        return [p.path, "", "error", threshold_text, "", "", p.error, "", ""]
    files_out = ["", ""]
    if save_maps or overlay:
        heat = _colour_map(p.anomaly_map, thr)
        name = _output_name(index, p.path)
        if save_maps:
            files_out[0] = f"{MAPS}/{name}"
            io_utils.write_png_atomic(
                out_dir / files_out[0], heat, overwrite=replace, bgr=True, what="output image"
            )
        if overlay:
            files_out[1] = f"{OVERLAYS}/{name}"
            image = _overlay(p.image, heat, p.anomaly_map, thr)
            io_utils.write_png_atomic(
                out_dir / files_out[1], image, overwrite=replace, bgr=True, what="output image"
            )
    decision = "" if p.is_anomalous is None else ("anomalous" if p.is_anomalous else "normal")
    return [
        p.path,
        f"{p.score:.9g}",
        decision,
        threshold_text,
        f"{float(p.anomaly_map.min()):.9g}",
        f"{float(p.anomaly_map.max()):.9g}",
        "",
        *files_out,
    ]


def _append(f, lines: list[str]) -> None:
    """Appends ``lines`` to the partial file and flushes them to disk."""
    if lines:
        f.write("".join(lines).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _finalise(out_dir: Path, *, top: int, replace: bool) -> dict:
    """Writes the sidecar and ``predictions.csv`` (escaped) from the partial file; the
    counts and the ``top`` highest scores."""
    rows, _ = _read_partial(out_dir / PARTIAL_NAME)
    counts = {"anomalous": 0, "normal": 0, "error": 0, "": 0}
    best_scores: list = []
    for index, row in enumerate(rows):
        counts[row[2]] = counts.get(row[2], 0) + 1
        if row[2] != "error":
            entry = (float(row[1]), -index, row[2], row[0])
            if len(best_scores) < top:
                heapq.heappush(best_scores, entry)
            else:
                heapq.heappushpop(best_scores, entry)
    paths = {"csv": CSV_NAME, "paths": [row[0] for row in rows]}
    sidecar = out_dir / PATHS_NAME
    with io_utils.atomic_path(sidecar, overwrite=replace, what="predictions file") as tmp:
        tmp.write_text(json.dumps(paths, indent=1) + "\n", encoding="utf-8")
    text = [COLUMNS.index(name) for name in TEXT_COLUMNS]
    with (
        io_utils.atomic_path(out_dir / CSV_NAME, overwrite=replace, what="predictions file") as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([safe_cell(c) if i in text else c for i, c in enumerate(row)])
    ranked = sorted(best_scores, reverse=True)
    return {
        "csv": out_dir / CSV_NAME,
        "paths": sidecar,
        "n": len(rows),
        "n_anomalous": counts["anomalous"],
        "n_normal": counts["normal"],
        "n_errors": counts["error"],
        "top": [(score, decision, path) for score, _, decision, path in ranked],
    }
