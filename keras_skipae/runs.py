"""Run folders: the one place that knows their layout.

A run folder is written by :func:`keras_skipae.train` (``keras-skipae train``)
and read by evaluation, export and the apps::

    <run>/config.json      model, data, corruption and training settings
    <run>/model.keras      the final model (written atomically at the end)
    <run>/best.keras       the model of the best validation loss (save_best=True)
    <run>/history.csv      one row per epoch (appended on resume)
    <run>/backup/          the last two finished epochs' training state (resume after a
                           kill; :func:`read_backup`, :func:`write_backup`)
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
import hashlib
import json
import os
import shutil
from pathlib import Path

import keras

from keras_skipae import faults, io_utils, ownership
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

#: The colour modes a run's ``config.json`` may record, with their channel counts.
COLOR_MODES = {"grayscale": 1, "rgb": 3}

#: Where ``keras-skipae evaluate RUN`` writes its metrics, relative to the run folder.
RUN_METRICS = ("evaluation", "metrics.json")

# Sections of config.json that must match for a run folder to be resumed.
_COMPARED = ("model", "data", "corruption", "training")


def _describe_tiling(tiling) -> str:
    return "no tiling" if tiling is None else f"tile_size={tiling[0]}, tile_overlap={tiling[1]}"


def _read_json(path, what="JSON file"):
    """The JSON object in ``path`` (:func:`keras_skipae.io_utils.read_json`); a damaged
    file raises a ``ValueError`` that names it. A ``config.json``'s sections must be objects."""
    if Path(path).name == "config.json":
        return io_utils.read_json(path, what="run config", sections=_COMPARED)
    return io_utils.read_json(path, what=what)


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
        if self.path.is_file():
            raise FileNotFoundError(f"Run folder {str(self.path)!r} is a file; expected a folder.")
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

    def color_mode(self, channels: int) -> str:
        """How the run's images are read: ``data.color_mode`` of ``config.json`` (one shared
        check for evaluate, export and prediction), else the one of ``channels``.

        Args:
            channels: the model's input channels (1 grayscale, 3 RGB).

        Raises:
            ValueError: the config records a colour mode other than ``"grayscale"`` or
                ``"rgb"``, or one with another channel count than the model's (the message
                names ``config.json`` and the value).
        """
        mode = (self.config().get("data") or {}).get("color_mode")
        if mode is None:
            return "rgb" if channels == 3 else "grayscale"
        if mode not in COLOR_MODES:
            raise ValueError(
                f"The run config {str(self.config_path)!r} is damaged: data.color_mode must be "
                f"'grayscale' or 'rgb'. Received: color_mode={mode!r}"
            )
        if COLOR_MODES[mode] != channels:
            raise ValueError(
                f"The run config {str(self.config_path)!r} records color_mode={mode!r} "
                f"({COLOR_MODES[mode]} channel(s)), but the run's model takes {channels}. "
                f"Received: color_mode={mode!r}"
            )
        return mode

    def task(self) -> str:
        """``"reconstruction"`` or ``"segmentation"``: ``training.task`` of ``config.json``
        (absent in reconstruction runs, and in runs written before it existed)."""
        return str((self.config().get("training") or {}).get("task") or "reconstruction")

    def check_reconstruction(self, what: str) -> None:
        """Raises a ``ValueError`` for a segmentation run: ``what`` (evaluation, a
        SavedModel export, prediction) scores the anomaly maps of reconstructions."""
        task = self.task()
        if task != "reconstruction":
            raise ValueError(
                f"The run {str(self.path)!r} trained a {task} model (image -> mask); {what} "
                "scores the anomaly maps of a reconstruction model and does not apply to it. "
                "Load its model.keras with keras_skipae.load_model and call it on images "
                f"(or export it with format='keras'). Received: a run with task={task!r}"
            )

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
            data = io_utils.read_json(
                metrics_path, what="evaluation metrics", sections=("settings",)
            )
        except (OSError, ValueError) as exc:
            return None, metrics_path, io_utils.one_line(exc)
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
        """The number of epochs the backup holds (0 without one); see :func:`read_backup`."""
        state = read_backup(self.backup_dir)
        return int(state["epoch"]) if state else 0

    def discard_backup(self) -> None:
        """Removes ``backup/`` once ``model.keras`` is written (renamed away first, so that a
        kill during the removal leaves either the whole backup or none)."""
        if not self.backup_dir.exists():
            return
        gone = self.path / f".backup.old-{os.getpid()}"
        os.replace(self.backup_dir, gone)
        shutil.rmtree(gone, ignore_errors=True)

    def remove_stale_temporaries(self) -> None:
        """Removes what a killed write left behind: ``.<name>.tmp-*`` / ``.<name>.old-*``
        entries of :data:`RUN_FILES` and unfinished backup weights."""
        prefixes = tuple(f".{n}.{kind}-" for n in RUN_FILES for kind in ("tmp", "old"))
        stale = [p for p in self.path.iterdir() if p.name.startswith(prefixes)]
        if self.backup_dir.is_dir():
            stale += [p for p in self.backup_dir.iterdir() if p.name.startswith(".")]
        for p in stale:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

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

    def clear_or_resume(
        self, config: dict, *, overwrite: bool, resume: bool, inputs=()
    ) -> tuple[int, bool]:
        """Checks the folder before training, clears it when it is to be trained anew, and
        marks it as a run (:func:`keras_skipae.ownership.mark_owned`); returns
        ``(initial_epoch, resuming)``.

        Clearing deletes the entries of :data:`RUN_FILES` (nothing else); with
        ``overwrite``, only in a folder that :func:`keras_skipae.ownership.check_replaceable`
        accepts as a run keras_skipae made.

        Args:
            config: the new run's configuration (compared with ``config.json``).
            overwrite: replace a different or finished run.
            resume: continue from ``backup/`` when the configuration is the same.
            inputs: paths the training reads (its data folder): never replaced.

        Raises:
            FileExistsError: the folder holds a different run or a finished one
                (without ``overwrite``), is not a run keras_skipae made (with it),
                or is a file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"`run_dir` {str(self.path)!r} exists and is not a folder.")
        self.path.mkdir(parents=True, exist_ok=True)
        if not [p for p in self.path.iterdir() if not p.name.startswith(".")]:
            ownership.mark_owned(self.path, "run")
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
            self._clear_owned(inputs)
            return 0, False
        if resume and self.backup_dir.exists():
            self.remove_stale_temporaries()
            epoch = self.backup_epoch()
            self.truncate_history(epoch)
            ownership.mark_owned(self.path, "run")
            return epoch, True
        if self.model_path().exists() and not overwrite:
            raise FileExistsError(
                f"The run in {str(self.path)!r} is already finished (model.keras exists). "
                "Pass overwrite=True (CLI: --overwrite) to train it again."
            )
        if overwrite:
            self._clear_owned(inputs)
        else:  # the same run, stopped before its first backup: start it again
            self.clear()
            ownership.mark_owned(self.path, "run")
        return 0, False

    def _clear_owned(self, inputs) -> None:
        """:meth:`clear` after :func:`~keras_skipae.ownership.check_replaceable`; then marks."""
        ownership.check_replaceable(self.path, "run", inputs=inputs, allowed=RUN_FILES)
        self.clear()
        self.remove_stale_temporaries()
        ownership.mark_owned(self.path, "run")


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


# ------------------------------------------------------------------ backups
#: The backup's current and previous metadata (Keras' ``BackupAndRestore`` names, so
#: that backups it wrote still resume). Each names its weights file and its SHA-256.
BACKUP_METADATA = ("training_metadata.json", "training_metadata.json.bkp")
_LEGACY_WEIGHTS = "latest.weights.h5"


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_backup(folder) -> dict | None:
    """The newest complete checkpoint of a backup folder, or None.

    A checkpoint is ``training_metadata.json`` (or the previous one,
    ``training_metadata.json.bkp``) whose weights file exists and has the SHA-256 the
    metadata records; a backup written by Keras' ``BackupAndRestore`` (no checksum)
    counts as complete when its metadata reads.

    Returns:
        The metadata (``epoch``: finished epochs; ``callbacks``: callback states)
        with ``weights_path`` (a ``Path``, None when the weights are missing from a
        Keras-written backup), or None.
    """
    folder = Path(folder)
    best = None
    for name in BACKUP_METADATA:
        try:
            meta = _read_json(folder / name)
            epoch = int(meta["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        weights = folder / meta.get("weights", _LEGACY_WEIGHTS)
        if "sha256" in meta:
            if not weights.is_file() or _sha256(weights) != meta["sha256"]:
                continue
        elif not weights.is_file():
            weights = None
        if best is None or epoch > best["epoch"]:
            best = dict(meta, epoch=epoch, weights_path=weights)
    return best


def write_backup(folder, model, epoch: int, extra: dict | None = None) -> Path:
    """Saves a checkpoint of ``model`` (weights and optimizer state) after ``epoch`` epochs.

    Kill-safe and double: the weights go to a new file ``epoch-<N>.weights.h5``
    (temporary name, then rename), the current metadata becomes
    ``training_metadata.json.bkp``, the new metadata (epoch, weights file name,
    SHA-256, ``extra``) replaces ``training_metadata.json`` atomically, and only
    then are weights files that neither metadata names deleted. At every instant
    both metadata files name complete weights files.

    Args:
        folder: the backup folder (created).
        model: the model (its ``save_weights`` includes the optimizer's variables).
        epoch: the number of finished epochs.
        extra: more JSON-able metadata (callback states).

    Returns:
        The weights file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{int(epoch)}.weights.h5"
    tmp = folder / f".tmp-{os.getpid()}-{name}"
    model.save_weights(str(tmp), overwrite=True)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    digest = _sha256(tmp)
    faults.wait_point("backup-write", epoch=int(epoch))  # weights written, nothing renamed
    os.replace(tmp, folder / name)
    current, previous = (folder / n for n in BACKUP_METADATA)
    if current.is_file():
        io_utils.write_text(previous, current.read_text(encoding="utf-8"))
    meta = dict(extra or {}, epoch=int(epoch), batch=0, weights=name, sha256=digest)
    io_utils.write_json(current, meta)
    keep = set()
    for path in (current, previous):
        try:
            keep.add(_read_json(path).get("weights", _LEGACY_WEIGHTS))
        except (OSError, ValueError):
            pass
    for p in folder.glob("*.weights.h5*"):
        if p.name not in keep:
            p.unlink(missing_ok=True)
    return folder / name
