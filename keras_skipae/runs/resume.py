"""Preparing a run folder for training: :class:`ResumableRun` (clear it, or resume it)."""

from __future__ import annotations

import csv
import json
import os
import shutil

from keras_skipae import io_utils, ownership
from keras_skipae.runs.backup import read_backup
from keras_skipae.runs.config import COMPARED, RunConfig
from keras_skipae.runs.layout import RUN_FILES, RunLayout


def _compared(config) -> dict:
    """The sections of ``config`` (a :class:`RunConfig` or its dict) resuming compares."""
    if isinstance(config, RunConfig):
        return config.compared()
    return {k: config.get(k) for k in COMPARED}


def _config_diff(old: dict, new: dict) -> str:
    diffs = []
    for section in COMPARED:
        a, b = old.get(section) or {}, new.get(section) or {}
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                diffs.append(section)
            continue
        for key in sorted(set(a) | set(b)):
            if io_utils.jsonable(a.get(key)) != io_utils.jsonable(b.get(key)):
                diffs.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return "; ".join(diffs[:3]) + (" ..." if len(diffs) > 3 else "")


class ResumableRun(RunLayout):
    """What training does to a run folder before and after ``fit``: clear it, resume it
    after a kill (the backup, the history), remove what a killed write left."""

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

    def _stored_compared(self) -> dict | None:
        """The compared sections of the folder's ``config.json``, None if unreadable."""
        if not self.config_path.exists():
            return None
        try:
            old = io_utils.read_json(self.config_path, what="run config", sections=COMPARED)
        except (OSError, json.JSONDecodeError):
            return None
        return _compared(old)

    def clear_or_resume(
        self, config, *, overwrite: bool, resume: bool, inputs=()
    ) -> tuple[int, bool]:
        """Checks the folder before training, clears it when it is to be trained anew, and
        marks it as a run (:func:`keras_skipae.ownership.mark_owned`); returns
        ``(initial_epoch, resuming)``.

        Clearing deletes the entries of :data:`RUN_FILES` (nothing else); with
        ``overwrite``, only in a folder that :func:`keras_skipae.ownership.check_replaceable`
        accepts as a run keras_skipae made.

        Args:
            config: the new run's :class:`RunConfig` (or its dict), compared with
                ``config.json``.
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
        old, new = self._stored_compared(), _compared(config)
        if old is None or io_utils.jsonable(old) != io_utils.jsonable(new):
            if not overwrite:
                if old is None:
                    why = "is not empty and holds no keras_skipae run config"
                else:
                    why = f"holds a different run ({_config_diff(old, new)})"
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
