"""Opening what training and export wrote, for the :class:`~keras_skipae.inference.Detector`:
a run folder, a SavedModel export, a ``.keras`` file or an edge export -> a scorer
(:mod:`keras_skipae.inference.scorers`) and its settings (:class:`Loaded`).

This module is where the Detector reads run folders (through
:class:`~keras_skipae.runs.RunFolder`'s accessors) and export settings (through
:class:`~keras_skipae.export.settings.ExportSettings`); nothing else in
:mod:`keras_skipae.inference` reads a run's or an export's document.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from keras_skipae import io_utils
from keras_skipae.export.settings import SETTINGS_FILE, ExportSettings, edge_format, is_saved_model
from keras_skipae.inference.scorers import (
    EdgeScorer,
    KerasScorer,
    SavedModelScorer,
    Scorer,
    resolve_size,
)
from keras_skipae.ops.tiling import check_tiling
from keras_skipae.runs import RunFolder
from keras_skipae.scoring import DEFAULT_TILE_BATCH, ScoringConfig

__all__ = ["Loaded", "load", "merge_tiling"]


@dataclasses.dataclass
class Loaded:
    """A scorer and the settings it was loaded with (the Detector's keywords)."""

    scorer: Scorer
    scoring: ScoringConfig
    threshold: float | None
    source: str
    kind: str
    threshold_source: str | None
    threshold_note: str | None


def load(
    path,
    threshold=None,
    *,
    scoring=None,
    best: bool = False,
    image_size=None,
    jit_compile="auto",
    tile_size=None,
    tile_overlap=None,
) -> Loaded:
    """Opens a run folder, a SavedModel export, a ``.keras`` file or an edge export
    (see :meth:`Detector.load <keras_skipae.inference.Detector.load>`)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{str(p)!r} does not exist.")
    tiles = (tile_size, tile_overlap)
    if p.is_dir() and is_saved_model(p):
        return _load_saved_model(p, threshold, scoring, image_size, tiles)
    if p.is_dir() and RunFolder(p).config_path.is_file():
        return _load_run(p, threshold, scoring, best, image_size, jit_compile, tiles)
    if p.is_file() and edge_format(p) is not None:
        return _load_edge(p, threshold, scoring, image_size, tiles)
    if p.is_file() and p.suffix == ".keras":
        return _load_keras(p, threshold, scoring, image_size, jit_compile, tiles)
    raise FileNotFoundError(
        f"{str(p)!r} is not a run folder (no config.json), a keras_skipae SavedModel "
        f"export (no assets/{SETTINGS_FILE}), a .keras file or an edge export (.tflite, "
        ".onnx, .xml)."
    )


def _load_keras(path, threshold, scoring, image_size, jit_compile, tiles) -> Loaded:
    """A ``.keras`` file: the model only (default scoring, no stored threshold)."""
    model = io_utils.load_keras_file(path, compile=False)
    cfg = ScoringConfig.resolve(scoring, caller="Detector")
    tiling = check_tiling(tiles[0], tiles[1])
    scorer = KerasScorer.build(
        model, cfg, image_size=image_size, jit_compile=jit_compile, tiling=tiling, source=path
    )
    return Loaded(
        scorer,
        cfg,
        threshold,
        str(path),
        "keras",
        "explicit",
        "a .keras file holds the model only",
    )


def _load_run(path, threshold, scoring, best, image_size, jit_compile, tiles) -> Loaded:
    """A run folder: its model, image size, tiling and the threshold ``evaluate`` stored."""
    run = RunFolder(path)
    run.check_reconstruction("prediction")
    model = run.load(best=best, compile=False)
    run.color_mode(int(model.input_shape[-1]))  # refuses a damaged one, as evaluate does
    cfg = ScoringConfig.resolve(scoring, caller="Detector.load")
    config = run.run_config()
    tiling = merge_tiling(tiles, config.tiling)
    if image_size is None and config.data.image_size and tiling is None:
        image_size = config.data.image_size
    source, note = "explicit", None
    if threshold is None:
        threshold, metrics_path, problem = run.threshold(cfg, tiling=tiling)
        source = str(metrics_path) if metrics_path else None
        note = problem or (
            f"the run has not been evaluated: run `keras-skipae evaluate {path}`"
            if threshold is None
            else None
        )
    scorer = KerasScorer.build(
        model,
        cfg,
        image_size=image_size,
        jit_compile=jit_compile,
        tiling=tiling,
        tile_batch_size=DEFAULT_TILE_BATCH,
        source=path,
    )
    return Loaded(scorer, cfg, threshold, str(path), "run", source, note)


def _fixed_scoring(settings: ExportSettings, scoring, what: str) -> ScoringConfig:
    """The export's scoring; a ``scoring`` asked for must not differ from it."""
    cfg = settings.scoring
    if scoring is not None:
        differ = cfg.differences(ScoringConfig.resolve(scoring, caller="Detector.load"))
        if differ:
            raise ValueError(
                f"The {what} scores with the settings it was exported with; export again to "
                f"change them. Received: scoring differing in {', '.join(differ)}"
            )
    return cfg


def _load_saved_model(path, threshold, scoring, image_size, tiles) -> Loaded:
    """A SavedModel export: its signature, scoring, input size, tiling and threshold."""
    settings = ExportSettings.read(path)
    stored = settings.tiling
    tiling = merge_tiling(tiles, stored)
    if tiling != stored:
        raise ValueError(
            f"The SavedModel {str(path)!r} tiles as it was exported "
            f"({_describe_tiling(stored)}); "
            f"export again to change it. Received: tile_size={tiles[0]!r}, "
            f"tile_overlap={tiles[1]!r}"
        )
    cfg = _fixed_scoring(settings, scoring, f"SavedModel {str(path)!r}")
    if image_size is None and settings.image_size:
        image_size = settings.image_size
    source, note = "explicit", None
    if threshold is None:
        threshold = settings.threshold
        source = f"{path}/assets/{SETTINGS_FILE}"
        note = "the SavedModel was exported without a threshold"
    scorer = SavedModelScorer.open(
        path, image_size=image_size, channels=settings.channels, tiling=tiling
    )
    return Loaded(scorer, cfg, threshold, str(path), "saved_model", source, note)


def _load_edge(path, threshold, scoring, image_size, tiles) -> Loaded:
    """A LiteRT, ONNX or OpenVINO export, scored in its runtime (:class:`EdgeScorer`)."""
    fmt = edge_format(path)
    settings = ExportSettings.read(path)
    if tiles[0] is not None or tiles[1]:
        raise ValueError(
            f"The {fmt} export {str(path)!r} scores whole images at its fixed size; "
            f"tiling is for run folders and SavedModels. Received: tile_size={tiles[0]!r}"
        )
    cfg = _fixed_scoring(settings, scoring, f"{fmt} export {str(path)!r}")
    scorer = EdgeScorer(fmt, path)
    if image_size is not None:
        resolve_size(image_size, scorer.image_size, path)  # refuses another size
    source, note = "explicit", None
    if threshold is None:
        threshold = settings.threshold
        source = f"{path}.json"
        note = f"the {fmt} file was exported without a threshold"
    return Loaded(scorer, cfg, threshold, str(path), fmt, source, note)


def _describe_tiling(tiling) -> str:
    return "no tiling" if tiling is None else f"tile_size={tiling[0]}, tile_overlap={tiling[1]}"


def merge_tiling(asked, stored) -> tuple[int, int] | None:
    """The tiling in use: the ``(tile_size, tile_overlap)`` asked for, else the stored one
    (checked by :func:`~keras_skipae.ops.tiling.check_tiling`)."""
    tile_size, tile_overlap = asked
    if tile_size is None and stored is not None:
        tile_size = stored[0]
        if tile_overlap is None:
            tile_overlap = stored[1]
    return check_tiling(tile_size, tile_overlap)
