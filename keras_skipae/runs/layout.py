"""The names of a run folder's entries: :class:`RunLayout`."""

from __future__ import annotations

from pathlib import Path

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


class RunLayout:
    """The paths of a run folder's entries (:mod:`keras_skipae.runs`).

    Args:
        path: the folder (it need not exist yet).
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"{type(self).__name__}({str(self.path)!r})"

    def __fspath__(self):
        return str(self.path)

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
