"""The device a computation runs on, and the per-path XLA choice it implies.

Three paths compile their own ``tf.function`` and choose ``jit_compile`` (XLA)
separately, because XLA pays on some and not on others:

============  =========================================  ======  ==========
path          what                                        GPU     CPU
============  =========================================  ======  ==========
``train``     the training step (``ks.train``)            on      off
``scoring``   ``scoring.make_scorer`` (what ``evaluate``   on      measured
              and ``Detector`` run)
``serving``   the SavedModel's ``score`` / ``reconstruct``  on      measured
              functions (``export_saved_model``)                  at export
============  =========================================  ======  ==========

On CPU XLA is faster for some shapes and much slower for others (single images
of a model with a bottleneck of at least 4x4: about 0.7x the time; batches of 16,
or a 2x2 bottleneck: 1.2-12x), so no fixed choice is right there. ``"measured"``
times both on the device itself: :class:`MeasuredJit` per input shape for
scoring, and a batch-size dispatch decided at export for serving
(``docs/decisions.md#xla-auto``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

#: The paths that choose ``jit_compile`` separately.
JIT_PATHS = ("train", "scoring", "serving")

#: The value of :data:`CPU_JIT` / :data:`GPU_JIT` that means "time both on this device".
MEASURED = "measured"

#: ``jit_compile="auto"`` on a CPU-only machine, per path (``docs/decisions.md#xla-auto``).
CPU_JIT = {"train": False, "scoring": MEASURED, "serving": MEASURED}

#: ``jit_compile="auto"`` when a GPU is visible, per path.
GPU_JIT = {"train": True, "scoring": True, "serving": True}


def gpu_devices() -> list:
    """The visible GPUs (``tf.config.list_physical_devices("GPU")``)."""
    return list(tf.config.list_physical_devices("GPU"))


def resolve_jit_compile(jit_compile="auto", *, path: str = "train", gpus=None) -> bool:
    """Resolves ``jit_compile`` for one path; passes booleans through.

    Args:
        jit_compile: ``"auto"``, True or False.
        path: ``"train"``, ``"scoring"`` or ``"serving"`` (:data:`JIT_PATHS`).
        gpus: the visible GPUs (a list); None asks TensorFlow. Tests pass a stub.

    Returns:
        ``"auto"``: :data:`GPU_JIT` ``[path]`` when there is a GPU, else
        :data:`CPU_JIT` ``[path]`` (a boolean, or :data:`MEASURED`: the caller
        times both, see :class:`MeasuredJit`); a boolean as it is.

    Raises:
        ValueError: for a ``jit_compile`` other than ``"auto"``, True or False, or
            an unknown ``path``.
    """
    if path not in JIT_PATHS:
        raise ValueError(f"`path` must be one of {list(JIT_PATHS)}. Received: path={path!r}")
    if isinstance(jit_compile, str) and jit_compile == "auto":
        on_gpu = bool(gpu_devices() if gpus is None else gpus)
        return (GPU_JIT if on_gpu else CPU_JIT)[path]
    if isinstance(jit_compile, bool | np.bool_):
        return bool(jit_compile)
    raise ValueError(
        f"`jit_compile` must be 'auto', True or False. Received: jit_compile={jit_compile!r}"
    )


class MeasuredJit:
    """Calls a computation compiled with XLA off or on, whichever measured faster per input shape.

    The first ``warm_calls`` calls with a given input shape run XLA off, so that a
    few one-off calls never pay XLA's compilation (seconds). The next call with
    that shape measures: it compiles the XLA variant (that call is not timed),
    then times ``trials`` calls of each variant, alternated (off, on, on, off,
    ...), by ``clock`` (wall) and ``cpu_clock`` (the process's CPU time). XLA
    serves that shape from then on only if its median is smaller by both clocks
    (on a shared machine the wall clock alone can pick the slower variant);
    else XLA off does. If XLA's first timed call takes more than ``give_up``
    times the median so far of XLA off, or XLA fails to compile, the shape stays
    off. Both
    variants compute the same function (their results differ by float rounding,
    about 1e-6). Why: ``docs/decisions.md#xla-auto``.

    Calls inside a ``tf.function`` trace use the shape's choice once it is made,
    else XLA off.

    Args:
        fn_off: the computation as a ``tf.function`` with ``jit_compile=False``.
        fn_on: the same with ``jit_compile=True``.
        warm_calls: calls per shape before it is measured.
        trials: timed calls of each variant.
        give_up: the early-stop factor for a clearly slower XLA.
        clock: a wall-clock seconds timer (``time.perf_counter``; tests pass a fake one).
        cpu_clock: a CPU seconds timer (``time.process_time``).

    Attributes:
        choices: ``{input shape: {"jit": bool, "ms_off": float, "ms_on": float
            or None, "cpu_ms_off": float, "cpu_ms_on": float or None, "note": str}}``
            (medians; ms per call) for every measured shape.
        jit_compile: :data:`MEASURED`.

    Example:
        >>> fn = MeasuredJit(tf.function(f, jit_compile=False), tf.function(f, jit_compile=True))
        >>> out = fn(images)  # the same as f(images)
        >>> fn.choices        # filled after warm_calls + 1 calls with one shape
    """

    jit_compile = MEASURED

    def __init__(
        self,
        fn_off: Callable,
        fn_on: Callable,
        *,
        warm_calls: int = 8,
        trials: int = 3,
        give_up: float = 1.5,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
    ):
        if int(warm_calls) < 0 or int(trials) < 1 or not float(give_up) > 1.0:
            raise ValueError(
                "Expected warm_calls >= 0, trials >= 1 and give_up > 1. Received: "
                f"warm_calls={warm_calls!r}, trials={trials!r}, give_up={give_up!r}"
            )
        self.fn_off, self.fn_on = fn_off, fn_on
        self.warm_calls, self.trials, self.give_up = int(warm_calls), int(trials), float(give_up)
        self.clock, self.cpu_clock = clock, cpu_clock
        self.choices: dict = {}
        self._calls: dict = {}

    def __call__(self, images, *args, **kwargs):
        key = tuple(getattr(images, "shape", ()))
        choice = self.choices.get(key)
        if choice is not None:
            return (self.fn_on if choice["jit"] else self.fn_off)(images, *args, **kwargs)
        if not key or None in key or not tf.executing_eagerly():
            return self.fn_off(images, *args, **kwargs)
        self._calls[key] = self._calls.get(key, 0) + 1
        if self._calls[key] <= self.warm_calls:
            return self.fn_off(images, *args, **kwargs)
        return self._measure(key, images, args, kwargs)

    def _timed(self, fn, images, args, kwargs):
        start, cpu_start = self.clock(), self.cpu_clock()
        out = fn(images, *args, **kwargs)
        tensors = [t for t in tf.nest.flatten(out) if hasattr(t, "numpy")]
        if tensors:  # wait for the result (asynchronous devices)
            min(tensors, key=lambda t: int(np.prod(t.shape))).numpy()
        return out, ((self.clock() - start) * 1e3, (self.cpu_clock() - cpu_start) * 1e3)

    def _measure(self, key, images, args, kwargs):
        call = (images, args, kwargs)
        out, t = self._timed(self.fn_off, *call)
        off, on = [t], []
        try:
            self.fn_on(images, *args, **kwargs)  # compiles: not timed
        except tf.errors.OpError as exc:
            note = f"XLA failed to compile ({type(exc).__name__}): off"
            self.choices[key] = _choice(False, off, [], note)
            return out
        note = "measured"
        order = [self.fn_on, self.fn_off] * self.trials
        for i, fn in enumerate(order):
            out, t = self._timed(fn, *call)
            (on if fn is self.fn_on else off).append(t)
            if i == 0 and t[0] > self.give_up * statistics.median(w for w, _ in off):
                note = f"XLA's first call took over {self.give_up:g}x XLA off's: stopped early"
                break
        wall_off, cpu_off = (statistics.median(v) for v in zip(*off))
        wall_on, cpu_on = (statistics.median(v) for v in zip(*on))
        self.choices[key] = _choice(wall_on < wall_off and cpu_on < cpu_off, off, on, note)
        return out


def _choice(jit: bool, off: list, on: list, note: str) -> dict:
    """A :attr:`MeasuredJit.choices` entry from ``(wall ms, CPU ms)`` timings."""

    def median(times, i):
        return statistics.median(t[i] for t in times) if times else None

    return {
        "jit": jit,
        "ms_off": median(off, 0),
        "ms_on": median(on, 0),
        "cpu_ms_off": median(off, 1),
        "cpu_ms_on": median(on, 1),
        "note": note,
    }


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (``avx2``, ``avx512_bf16``, ``amx_bf16``, ...).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo``; None reads it (an empty set where
            there is none, e.g. not Linux).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def gpu_compute_capability(gpu) -> tuple[int, int] | None:
    """A GPU's CUDA compute capability ``(major, minor)``, None where TF does not report one."""
    try:
        details = tf.config.experimental.get_device_details(gpu)
    except (ValueError, TypeError, AttributeError):
        return None
    cc = details.get("compute_capability") if isinstance(details, dict) else None
    return tuple(int(v) for v in cc) if cc else None
