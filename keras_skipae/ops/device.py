"""The device a computation runs on, and the per-path XLA choice it implies.

Three paths compile their own ``tf.function`` and choose ``jit_compile`` (XLA)
separately, because XLA pays on some and not on others:

============  =========================================  ======  ======
path          what                                        GPU     CPU
============  =========================================  ======  ======
``train``     the training step (``ks.train``)            on      off
``scoring``   ``scoring.make_scorer`` (what ``evaluate``   on      see
              runs)                                               below
``serving``   the SavedModel's ``score`` / ``reconstruct``  on      see
              functions (``export_saved_model``)                  below
============  =========================================  ======  ======

On CPU the choice is :data:`CPU_JIT`, measured with ``bench/bench_inference.py
--compare-jit`` and ``bench/bench_train.py --interleave`` (numbers and
reasons: ``docs/decisions.md#xla-auto``). On GPU XLA is on for every path.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

#: The paths that choose ``jit_compile`` separately.
JIT_PATHS = ("train", "scoring", "serving")

#: ``jit_compile="auto"`` on a CPU-only machine, per path (``docs/decisions.md#xla-auto``).
CPU_JIT = {"train": False, "scoring": False, "serving": False}

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
        :data:`CPU_JIT` ``[path]``; a boolean as it is.

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
