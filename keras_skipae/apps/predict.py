"""``keras-skipae predict``: a model's predictions on files and folders, written to a folder.

:func:`predict_to_folder` streams the images through a :class:`~keras_skipae.Detector`
and writes, in ``out_dir``:

* ``predictions.csv`` (atomically: a temporary file renamed at the end), one row per
  input file: ``path, score, decision, threshold, map_min, map_max, error, map_file,
  overlay_file``. ``decision`` is ``anomalous`` / ``normal``, empty without a
  threshold, ``error`` for a bad file (its message in ``error``; the run goes on).
  ``map_min`` / ``map_max`` are those of the map at the image's original resolution.
* with ``save_maps``: ``maps/<index>_<name>.png``, the anomaly map at the image's
  original resolution, colour-mapped (jet) from 0 to twice the threshold (the
  threshold is the middle of the scale), or from 0 to the map's maximum without one;
* with ``overlay``: ``overlays/<index>_<name>.png``, the image with that colour map
  blended on top and, with a threshold, the outline of the pixels at or above it.

Existing outputs are refused unless ``overwrite``, which replaces ``predictions.csv``
and deletes the map and overlay files the old CSV lists (nothing else), and only in a
predictions folder keras_skipae made (:func:`keras_skipae.ownership.check_replaceable`).
"""

from __future__ import annotations

import csv
import heapq
import time
import warnings
from pathlib import Path

import numpy as np

from keras_skipae import io_utils, ownership
from keras_skipae.inference import Detector

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
MAPS, OVERLAYS = "maps", "overlays"
#: What a predictions folder may hold (besides the marker): ``overwrite`` refuses others.
PREDICTION_ENTRIES = ("predictions*", MAPS, OVERLAYS)


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
    """Deletes the map and overlay files an existing ``predictions.csv`` lists."""
    old = out_dir / CSV_NAME
    if not old.is_file():
        return
    with open(old, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key in ("map_file", "overlay_file"):
                name = row.get(key) or ""
                target = (out_dir / name).resolve()
                if name and target.parent.parent == out_dir.resolve():
                    target.unlink(missing_ok=True)


def _output_name(index: int, path: str | None) -> str:
    stem = Path(path).stem if path else "image"
    return f"{index:05d}_{stem}.png"


def _colour_map(anomaly_map: np.ndarray, threshold: float | None) -> np.ndarray:
    """A BGR uint8 jet image of the map, on the scale the module docstring describes."""
    import cv2

    top = 2.0 * threshold if threshold is not None and threshold > 0 else float(anomaly_map.max())
    scaled = np.clip(anomaly_map / max(top, 1e-12), 0.0, 1.0)
    return cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)


def _overlay(image: np.ndarray, heat: np.ndarray, anomaly_map, threshold) -> np.ndarray:
    import cv2

    base = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    base = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR) if base.shape[-1] == 1 else base[..., ::-1]
    blended = cv2.addWeighted(np.ascontiguousarray(base), 0.6, heat, 0.4, 0.0)
    if threshold is not None:
        mask = (anomaly_map >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(blended, contours, -1, (255, 255, 255), 1)
    return blended


def _write_png(path: Path, image: np.ndarray, overwrite: bool) -> None:
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"Cannot encode {str(path)!r} as PNG.")
    with io_utils.atomic_path(path, overwrite=overwrite, what="output image") as tmp:
        tmp.write_bytes(encoded.tobytes())


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
        overwrite: replace the outputs of an earlier prediction in ``out_dir``.
        fail_on_anomaly: refuse (before scoring) a model without a threshold.
        progress: show a tqdm progress bar.
        top: how many of the highest scores the summary keeps.
        tile_size, tile_overlap: score full-resolution images tile by tile
            (:meth:`Detector.load`'s; None: the model's own tiling).

    Returns:
        A dict: ``csv`` (the file), ``n`` (rows), ``n_anomalous``, ``n_normal``,
        ``n_errors``, ``threshold``, ``threshold_source``, ``top`` (``(score,
        decision, path)``, highest first), ``notes`` (warnings for the user),
        ``seconds``, ``detector`` (its repr).

    Raises:
        FileExistsError: ``out_dir`` holds a ``predictions.csv`` and not ``overwrite``.
        ValueError: ``fail_on_anomaly`` for a model without a threshold.
    """
    from tqdm.auto import tqdm

    inputs = list(inputs)
    out_dir = check_outputs(out_dir, overwrite=overwrite, inputs=[model, *inputs])
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
    stream = detector.predict(list(inputs), batch_size=batch_size, on_error="report")
    if overwrite:
        _remove_previous(out_dir)
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        out_dir.mkdir(parents=True, exist_ok=True)
        ownership.mark_owned(out_dir, "predictions")
    counts = {"anomalous": 0, "normal": 0, "error": 0, "": 0}
    best_scores: list = []
    start = time.perf_counter()
    thr = detector.threshold
    with (
        io_utils.atomic_path(
            out_dir / CSV_NAME, overwrite=overwrite, what="predictions file"
        ) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        bar = tqdm(stream, total=stream.total, unit="img", disable=not progress, leave=False)
        for p in bar:
            if not p.ok:
                counts["error"] += 1
                threshold_text = "" if thr is None else f"{thr:.9g}"
                writer.writerow([p.path, "", "error", threshold_text, "", "", p.error, "", ""])
                continue
            decision = (
                "" if p.is_anomalous is None else ("anomalous" if p.is_anomalous else "normal")
            )
            counts[decision] += 1
            files = ["", ""]
            if save_maps or overlay:
                heat = _colour_map(p.anomaly_map, thr)
                name = _output_name(p.index, p.path)
                if save_maps:
                    files[0] = f"{MAPS}/{name}"
                    _write_png(out_dir / files[0], heat, overwrite)
                if overlay:
                    files[1] = f"{OVERLAYS}/{name}"
                    _write_png(
                        out_dir / files[1], _overlay(p.image, heat, p.anomaly_map, thr), overwrite
                    )
            writer.writerow(
                [
                    p.path,
                    f"{p.score:.9g}",
                    decision,
                    "" if thr is None else f"{thr:.9g}",
                    f"{float(p.anomaly_map.min()):.9g}",
                    f"{float(p.anomaly_map.max()):.9g}",
                    "",
                    *files,
                ]
            )
            entry = (p.score, -p.index, decision, p.path)
            if len(best_scores) < top:
                heapq.heappush(best_scores, entry)
            else:
                heapq.heappushpop(best_scores, entry)
    ranked = sorted(best_scores, reverse=True)
    return {
        "csv": out_dir / CSV_NAME,
        "n": sum(counts.values()),
        "n_anomalous": counts["anomalous"],
        "n_normal": counts["normal"],
        "n_errors": counts["error"],
        "threshold": thr,
        "threshold_source": detector.threshold_source,
        "top": [(score, decision, path) for score, _, decision, path in ranked],
        "notes": notes,
        "seconds": time.perf_counter() - start,
        "detector": repr(detector),
    }
