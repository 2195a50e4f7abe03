"""``keras-skipae train --budget MINUTES``: the recipe for a training-time budget.

The rule is the one of ``docs/decisions.md#anomaly-head``: under 16 minutes x 2 cores
(1920 CPU-seconds) the plain AESc, scored with the residual map; from there the AESc
with the cheap anomaly head (``aesc_head``, ``head_scale=4``), scored with the
``learned`` map. Both train with a time limit, which makes the schedule the cosine decay
over it. The CPU-seconds are the minutes times the cores this process may use: the
budget curve was measured on 2 CPU cores, where 1920 CPU-seconds trained about 3100
head steps at 128 px, batch 16; on a GPU the switch point was not measured (pass
``--model`` and ``--time-limit`` there). Standard library only: the launcher applies
the rule before TensorFlow is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: CPU-seconds from which the budget recipe trains the head (16 minutes x 2 cores).
HEAD_FROM_CPU_SECONDS = 1920.0

#: ``--epochs`` under ``--budget``: no cap that a time-limited run could reach first.
BUDGET_EPOCHS = 1_000_000


@dataclass(frozen=True)
class BudgetRecipe:
    """What ``--budget`` trains: the model, its head scale, the map to score it with."""

    minutes: float
    cores: int
    model: str
    head_scale: int | None
    map: str

    @property
    def cpu_seconds(self) -> float:
        return 60.0 * self.minutes * self.cores

    def describe(self) -> str:
        """One line for the user: the budget, the cores and the recipe it picked."""
        model = self.model + (f" --head-scale {self.head_scale}" if self.head_scale else "")
        return (
            f"--budget {self.minutes:g} min x {self.cores} cores = {self.cpu_seconds:.0f} "
            f"CPU-seconds: --model {model}, cosine schedule, epochs until the time limit of "
            f"{60 * self.minutes:.0f} s; score it with --map {self.map} "
            "(docs/decisions.md#anomaly-head)"
        )


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def budget_recipe(minutes: float, cores: int | None = None) -> BudgetRecipe:
    """The recipe for ``minutes`` of training on ``cores`` CPU cores (default: this
    process's, :func:`usable_cores`)."""
    cores = usable_cores() if cores is None else int(cores)
    if 60.0 * minutes * cores >= HEAD_FROM_CPU_SECONDS:
        return BudgetRecipe(minutes, cores, "aesc_head", 4, "learned")
    return BudgetRecipe(minutes, cores, "aesc", None, "residual")
