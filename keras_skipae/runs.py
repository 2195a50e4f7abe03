"""Run folders: the one place that knows their layout.

A run folder is written by :func:`keras_skipae.train` (``keras-skipae train``)
and read by evaluation, export and the apps::

    <run>/config.json      model, data, corruption and training settings
    <run>/model.keras      the final model (written atomically at the end)
    <run>/best.keras       the model of the best validation loss (save_best=True)
    <run>/history.csv      one row per epoch (appended on resume)
    <run>/backup/          BackupAndRestore's state (resume after a kill)
    <run>/logs/            TensorBoard event files
    <run>/previews/        reconstruction grids, one PNG per epoch
    <run>/evaluation/      ``keras-skipae evaluate RUN``'s outputs (metrics.json, plots)
    <run>/discrepancy/     ``keras-skipae discrepancy``'s outputs

:class:`RunFolder` gives each a name, reads and checks the folder, loads its
model, and decides whether a run can be resumed. It sits below the workflows
(training writes through it, evaluation and export read through it).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras

from keras_skipae import io_utils
from keras_skipae.scoring.config import FIELDS, ScoringConfig

# Files and folders a run folder may hold (the only entries overwrite=True removes).
# ``evaluation`` and ``discrepancy`` are the default output folders of ``evaluate`` and
# ``discrepancy``: results of the replaced model, which must not outlive it (``export
# --threshold eval`` would embed a threshold measured on the old model).
RUN_FILES = (
    "config.json",
    "model.keras",
    "best.keras",
    "history.csv",
    "logs",
    "backup",
    "previews",
    "evaluation",
    "discrepancy",
)

#: Where ``keras-skipae evaluate RUN`` writes its metrics, relative to the run folder.
RUN_METRICS = ("evaluation", "metrics.json")

# Sections of config.json that must match for a run folder to be resumed.
_COMPARED = ("model", "data", "corruption", "training")


def _describe_tiling(tiling) -> str:
    return "no tiling" if tiling is None else f"tile_size={tiling[0]}, tile_overlap={tiling[1]}"


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _config_diff(old: dict, new: dict) -> str:
    diffs = []
    for section in _COMPARED:
        a, b = old.get(section) or {}, new.get(section) or {}
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                diffs.append(section)
            continue
        for key in sorted(set(a) | set(b)):
            if io_utils.jsonable(a.get(key)) != io_utils.jsonable(b.get(key)):
                diffs.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return "; ".join(diffs[:3]) + (" ..." if len(diffs) > 3 else "")


class RunFolder:
    """A run folder (see the module docstring for its layout).

    Args:
        path: the folder (it need not exist yet).

    Example:
        >>> run = RunFolder("runs/wood_aesc")
        >>> model = run.load()
        >>> run.config()["data"]["category"]
        'wood'
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self):
        return str(self.path)

    # --------------------------------------------------------------- names
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    @property
    def backup_dir(self) -> Path:
        return self.path / "backup"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def previews_dir(self) -> Path:
        return self.path / "previews"

    @property
    def evaluation_dir(self) -> Path:
        return self.path / "evaluation"

    @property
    def discrepancy_dir(self) -> Path:
        return self.path / "discrepancy"

    @property
    def metrics_path(self) -> Path:
        return self.path.joinpath(*RUN_METRICS)

    def model_path(self, best: bool = False) -> Path:
        """``model.keras``, or ``best.keras`` with ``best=True``."""
        return self.path / ("best.keras" if best else "model.keras")

    # --------------------------------------------------------------- reading
    def check(self) -> None:
        """Raises ``FileNotFoundError`` unless this is a run folder with a config."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"Run folder {str(self.path)!r} does not exist.")
        if not self.config_path.is_file():
            raise FileNotFoundError(
                f"{str(self.path)!r} is not a run folder: it has no config.json "
                "(expected a folder written by `keras-skipae train`)."
            )

    def config(self) -> dict:
        """The run's ``config.json``."""
        self.check()
        return _read_json(self.config_path)

    def history(self) -> dict:
        """``history.csv`` as ``{column: [values]}`` (see :func:`read_history`)."""
        return read_history(self.history_path)

    def tiling(self) -> tuple[int, int] | None:
        """``(tile_size, tile_overlap)`` of a run trained on tiles (``config.json``), else None
        (also for a folder without a config)."""
        if not self.config_path.is_file():
            return None
        training = _read_json(self.config_path).get("training") or {}
        if training.get("tile_size") is None:
            return None
        return int(training["tile_size"]), int(training.get("tile_overlap") or 0)

    def load(self, *, best: bool = False, compile: bool = True) -> keras.Model:
        """Loads the run's model (``safe_mode=True``).

        Raises:
            FileNotFoundError: the folder, its config or the model is missing.
            ValueError: the model file is truncated, corrupted or tampered (the error
                names it; :func:`keras_skipae.io_utils.load_keras_file`).
        """
        self.check()
        model_path = self.model_path(best)
        if best and not model_path.exists() and self.model_path().exists():
            raise FileNotFoundError(
                f"Run folder {str(self.path)!r} has no best.keras: it was trained without "
                "--save-best (save_best=True). Use its model.keras (drop --best / best=True)."
            )
        if not model_path.exists():
            raise FileNotFoundError(
                f"Run folder {str(self.path)!r} has no {model_path.name}: the run did not "
                "finish. Start the same training command again to resume it."
            )
        return io_utils.load_keras_file(model_path, compile=compile)

    def threshold(self, scoring, *, tiling="run") -> tuple[float | None, Path | None, str | None]:
        """The production threshold ``keras-skipae evaluate`` stored in this run.

        Args:
            scoring: the :class:`~keras_skipae.scoring.ScoringConfig` (or its dict)
                the threshold is meant for.
            tiling: the ``(tile_size, tile_overlap)`` of the scores it is meant for,
                None for untiled scores, or ``"run"``: the run's own (:meth:`tiling`).
                A threshold of tiled scores does not apply to untiled ones, or to
                another tiling.

        Returns:
            ``(threshold, metrics_path, problem)``: the threshold when
            ``<run>/evaluation/metrics.json`` has one computed with the same
            scoring settings; otherwise threshold None and ``problem`` says why
            (None when there is no metrics file at all).
        """
        if not isinstance(scoring, ScoringConfig):
            scoring = ScoringConfig.from_dict(scoring)
        metrics_path = self.metrics_path
        if not metrics_path.is_file():
            return None, None, None
        try:
            data = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return None, metrics_path, f"{str(metrics_path)!r} is not readable JSON ({exc})"
        threshold = data.get("threshold")
        if threshold is None:
            return None, metrics_path, f"{str(metrics_path)!r} holds no production threshold"
        recorded = data.get("settings") or {}
        missing = [k for k in ("map", "smoothing", "score") if k not in recorded]
        differ = ScoringConfig.from_dict(recorded).differences(
            scoring, keys=[k for k in FIELDS if k in recorded or k == "smoothing_border"]
        )
        if differ or missing:
            detail = ", ".join(differ)
            return (
                None,
                metrics_path,
                f"the threshold in {str(metrics_path)!r} was computed with other scoring "
                "settings" + (f": {detail}" if detail else f" (it does not record {missing})"),
            )
        wanted = self.tiling() if isinstance(tiling, str) and tiling == "run" else tiling
        wanted = None if wanted is None else (int(wanted[0]), int(wanted[1] or 0))
        used = recorded.get("tile_size")
        used = None if used is None else (int(used), int(recorded.get("tile_overlap") or 0))
        if used != wanted:
            return (
                None,
                metrics_path,
                f"the threshold in {str(metrics_path)!r} was computed with "
                f"{_describe_tiling(used)}, not {_describe_tiling(wanted)}",
            )
        return float(threshold), metrics_path, None

    # --------------------------------------------------------------- writing
    def clear(self) -> None:
        """Removes every entry of :data:`RUN_FILES` (nothing else)."""
        for name in RUN_FILES:
            p = self.path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def backup_epoch(self) -> int:
        """The number of epochs the backup holds (0 without one)."""
        meta = self.backup_dir / "training_metadata.json"
        if meta.exists():
            try:
                return int(_read_json(meta)["epoch"])
            except (ValueError, KeyError, json.JSONDecodeError):
                return 0
        return 0

    def truncate_history(self, initial_epoch: int) -> None:
        """Drops ``history.csv`` rows of epochs >= ``initial_epoch`` (after the last backup)."""
        path = self.history_path
        if not path.exists():
            return
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        kept = [r for r in body if r and int(float(r[0])) < initial_epoch]
        if len(kept) == len(body):
            return
        with io_utils.atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(kept)

    def prepare(self, config: dict, *, overwrite: bool, resume: bool) -> tuple[int, bool]:
        """Checks the folder before training; returns ``(initial_epoch, resuming)``.

        Raises:
            FileExistsError: the folder holds a different run or a finished one
                (without ``overwrite``), or is a file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"`run_dir` {str(self.path)!r} exists and is not a folder.")
        self.path.mkdir(parents=True, exist_ok=True)
        if not [p for p in self.path.iterdir() if not p.name.startswith(".")]:
            return 0, False
        old = None
        if self.config_path.exists():
            try:
                old = _read_json(self.config_path)
            except (OSError, json.JSONDecodeError):
                old = None
        same = old is not None and all(
            io_utils.jsonable(old.get(k)) == io_utils.jsonable(config.get(k)) for k in _COMPARED
        )
        if not same:
            if not overwrite:
                if old is None:
                    why = "is not empty and holds no keras_skipae run config"
                else:
                    why = f"holds a different run ({_config_diff(old, config)})"
                raise FileExistsError(
                    f"The run folder {str(self.path)!r} {why}. Refusing to reuse it; pass "
                    "overwrite=True (CLI: --overwrite) to replace it, or choose another folder."
                )
            self.clear()
            return 0, False
        if resume and self.backup_dir.exists():
            epoch = self.backup_epoch()
            self.truncate_history(epoch)
            return epoch, True
        if self.model_path().exists() and not overwrite:
            raise FileExistsError(
                f"The run in {str(self.path)!r} is already finished (model.keras exists). "
                "Pass overwrite=True (CLI: --overwrite) to train it again."
            )
        self.clear()
        return 0, False


def read_history(path) -> dict:
    """Reads a ``history.csv`` into ``{column: [values]}`` (numbers as floats, epoch as int)."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: dict = {}
    for row in rows:
        for key, value in row.items():
            try:
                v = int(value) if key == "epoch" else float(value)
            except (TypeError, ValueError):
                v = float("nan")
            out.setdefault(key, []).append(v)
    return out


def load_run(run_dir, *, best: bool = False, compile: bool = True):
    """Loads a finished run: ``(model, config)``.

    Args:
        run_dir: a folder written by :func:`keras_skipae.train` (or ``keras-skipae train``).
        best: load ``best.keras`` (best validation loss) instead of ``model.keras``.
        compile: restore the compiled loss and metrics.

    Returns:
        ``(keras.Model, dict)``: the model (loaded with ``safe_mode=True``) and
        the run's ``config.json``.

    Raises:
        FileNotFoundError: the folder, its config or its model is missing.
    """
    run = RunFolder(run_dir)
    model = run.load(best=best, compile=compile)
    return model, run.config()
