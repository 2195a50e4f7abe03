"""The callback that stops training after a budget of wall or CPU time."""

from __future__ import annotations

import time

import keras


class TimeLimit(keras.callbacks.Callback):
    """Stops training after ``seconds`` of wall or CPU time (checked after every batch).

    The epoch in progress ends early, its validation still runs, and the run is
    then complete (``model.keras`` is written).

    Args:
        seconds: the budget.
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time,
            all threads: a budget that other programs loading the machine do not
            eat into; on an idle 2-core machine 1 wall second is ~2 CPU seconds).
    """

    def __init__(self, seconds: float, clock: str = "wall"):
        super().__init__()
        if clock not in ("wall", "cpu"):
            raise ValueError(f"`clock` must be 'wall' or 'cpu'. Received: clock={clock!r}")
        self.seconds = float(seconds)
        self.clock = clock
        self._now = time.monotonic if clock == "wall" else time.process_time
        self._start = None
        self.stopped = False
        self.elapsed = 0.0

    def on_train_begin(self, logs=None):
        self._start = self._now()

    def on_train_batch_end(self, batch, logs=None):
        self.elapsed = self._now() - self._start
        if self.elapsed >= self.seconds:
            self.stopped = True
            self.model.stop_training = True
