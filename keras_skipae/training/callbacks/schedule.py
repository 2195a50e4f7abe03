"""A learning-rate schedule that uses the whole budget: warm-up, then cosine decay.

``ReduceLROnPlateau`` halves the rate whenever the validation loss stalls; in a
time-limited run it reached its floor long before the budget ran out, so the
last minutes trained at nearly zero rate (``docs/decisions.md#learning-rate-schedule``).
:class:`CosineSchedule` instead decays over the *budget*: a number of steps, or
seconds of a clock when the run is time-limited.
"""

from __future__ import annotations

import math
import time

import keras

CLOCKS = ("wall", "cpu")


def cosine_rate(fraction: float, base: float, *, warmup: float, floor: float) -> float:
    """The learning rate at ``fraction`` (in [0, 1]) of the budget.

    Linear warm-up from ``base * floor`` to ``base`` over the first ``warmup`` of the
    budget, then half a cosine from ``base`` down to ``base * floor`` at the end.

    Example:
        >>> cosine_rate(1.0, 1e-3, warmup=0.05, floor=0.01)
        1e-05
    """
    fraction = min(max(float(fraction), 0.0), 1.0)
    low = base * floor
    if warmup > 0 and fraction < warmup:
        return low + (base - low) * fraction / warmup
    t = (fraction - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    return low + (base - low) * 0.5 * (1.0 + math.cos(math.pi * t))


class CosineSchedule(keras.callbacks.Callback):
    """Warm-up and cosine decay of the optimizer's learning rate over a budget.

    The budget is ``seconds`` of a clock (``"wall"`` or ``"cpu"``, as
    :class:`TimeLimit`) or ``steps`` optimizer steps; the rate is set before every
    batch from the fraction of the budget used by this call of ``fit``.

    Args:
        base_lr: the peak rate (the optimizer's initial one).
        seconds: a time budget (with ``clock``), or None.
        steps: a step budget, or None (exactly one of ``seconds`` and ``steps``).
        warmup: fraction of the budget spent warming up, in [0, 1).
        floor: the first and last rate, as a fraction of ``base_lr``, in [0, 1].
        initial_step: steps of the ``steps`` budget already done (a resumed run
            continues the schedule where the interrupted one stopped).
        clock: ``"wall"`` or ``"cpu"`` (for ``seconds``).

    Example:
        >>> model.fit(data, epochs=1000, callbacks=[CosineSchedule(1e-3, seconds=480),
        ...                                         TimeLimit(480)])
    """

    def __init__(
        self,
        base_lr: float,
        *,
        seconds: float | None = None,
        steps: int | None = None,
        warmup: float = 0.05,
        floor: float = 0.01,
        clock: str = "wall",
        initial_step: int = 0,
    ):
        super().__init__()
        if (seconds is None) == (steps is None):
            raise ValueError(
                "Expected exactly one budget, `seconds` or `steps`. "
                f"Received: seconds={seconds!r}, steps={steps!r}"
            )
        budget = seconds if seconds is not None else steps
        if not budget or float(budget) <= 0:
            raise ValueError(
                f"Expected a budget > 0. Received: seconds={seconds!r}, steps={steps!r}"
            )
        if not 0 <= float(warmup) < 1:
            raise ValueError(f"Expected `warmup` in [0, 1). Received: warmup={warmup!r}")
        if not 0 <= float(floor) <= 1:
            raise ValueError(f"Expected `floor` in [0, 1]. Received: floor={floor!r}")
        if clock not in CLOCKS:
            raise ValueError(f"Expected `clock` in {list(CLOCKS)}. Received: clock={clock!r}")
        self.base_lr = float(base_lr)
        self.seconds = None if seconds is None else float(seconds)
        self.steps = None if steps is None else int(steps)
        self.warmup = float(warmup)
        self.floor = float(floor)
        self.clock = clock
        self._start = 0.0
        self.initial_step = int(initial_step)
        self._step = self.initial_step

    def _now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.monotonic()

    def fraction(self) -> float:
        """The fraction of the budget used so far."""
        if self.seconds is not None:
            return (self._now() - self._start) / self.seconds
        return self._step / self.steps

    def on_train_begin(self, logs=None):
        self._start = self._now()
        self._step = self.initial_step

    def on_train_batch_begin(self, batch, logs=None):
        rate = cosine_rate(self.fraction(), self.base_lr, warmup=self.warmup, floor=self.floor)
        self.model.optimizer.learning_rate.assign(rate)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
