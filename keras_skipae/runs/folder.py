"""Reading a run folder: :class:`RunFolder`, :func:`load_run`, :func:`read_history`."""

from __future__ import annotations

import csv
from pathlib import Path

import keras

from keras_skipae import io_utils
from keras_skipae.runs.config import COMPARED, RunConfig
from keras_skipae.runs.resume import ResumableRun
from keras_skipae.scoring.compat import stored_threshold


class RunFolder(ResumableRun):
    """A run folder (see :mod:`keras_skipae.runs` for its layout).

    The names of its entries come from :class:`~keras_skipae.runs.layout.RunLayout`,
    clearing and resuming from :class:`~keras_skipae.runs.resume.ResumableRun`; this
    class reads the folder: its config (:meth:`run_config`), its model, its history.

    Args:
        path: the folder (it need not exist yet).

    Example:
        >>> run = RunFolder("runs/wood_aesc")
        >>> model = run.load()
        >>> run.run_config().data.category
        'wood'
    """

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
        """The run's ``config.json`` as a dict, as written (:meth:`run_config` reads it)."""
        self.check()
        return io_utils.read_json(self.config_path, what="run config", sections=COMPARED)

    def run_config(self) -> RunConfig:
        """The run's ``config.json`` as a :class:`~keras_skipae.runs.RunConfig`.

        Raises:
            FileNotFoundError: not a run folder.
            ValueError: the config is damaged (the message names it).
        """
        return RunConfig.from_dict(self.config(), source=self.config_path)

    def history(self) -> dict:
        """``history.csv`` as ``{column: [values]}`` (see :func:`read_history`)."""
        return read_history(self.history_path)

    def tiling(self) -> tuple[int, int] | None:
        """``(tile_size, tile_overlap)`` of a run trained on tiles (``config.json``), else None
        (also for a folder without a config)."""
        if not self.config_path.is_file():
            return None
        return self.run_config().tiling

    def color_mode(self, channels: int) -> str:
        """How the run's images are read (:meth:`RunConfig.color_mode`).

        Raises:
            ValueError: the config records a colour mode other than ``"grayscale"`` or
                ``"rgb"``, or one with another channel count than ``channels`` (the
                message names ``config.json`` and the value).
        """
        return self.run_config().color_mode(channels)

    def task(self) -> str:
        """``"reconstruction"`` or ``"segmentation"`` (:attr:`RunConfig.task`)."""
        return self.run_config().task

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
        """The production threshold ``keras-skipae evaluate`` stored in this run, if it
        applies (:func:`keras_skipae.scoring.compat.stored_threshold`).

        Args:
            scoring: the :class:`~keras_skipae.scoring.ScoringConfig` (or its dict)
                the threshold is meant for.
            tiling: the ``(tile_size, tile_overlap)`` of the scores it is meant for,
                None for untiled scores, or ``"run"``: the run's own (:meth:`tiling`).

        Returns:
            ``(threshold, metrics_path, problem)``: the threshold when
            ``<run>/evaluation/metrics.json`` has one that applies; otherwise threshold
            None and ``problem`` says why (all None without a metrics file).
        """
        path = self.metrics_path
        if not path.is_file():
            return None, None, None
        try:
            metrics = io_utils.read_json(path, what="evaluation metrics", sections=("settings",))
        except (OSError, ValueError) as exc:
            return None, path, io_utils.one_line(exc)
        wanted = self.tiling() if isinstance(tiling, str) and tiling == "run" else tiling
        threshold, problem = stored_threshold(metrics, scoring, wanted, where=str(path))
        return threshold, path, problem


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
        the run's ``config.json`` (:meth:`RunFolder.run_config` gives it typed).

    Raises:
        FileNotFoundError: the folder, its config or its model is missing.
    """
    run = RunFolder(run_dir)
    model = run.load(best=best, compile=compile)
    return model, run.config()
