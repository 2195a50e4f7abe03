"""Where and how a run trains: XLA, precision and the ``tf.distribute`` strategy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import keras
import tensorflow as tf

from keras_skipae.models import get_model
from keras_skipae.ops import device
from keras_skipae.ops.device import resolve_jit_compile

__all__ = [
    "PRECISIONS",
    "get_strategy",
    "make_builder",
    "precision_scope",
    "resolve_jit_compile",
    "resolve_precision",
]

#: The values of ``train(precision=...)``.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def resolve_precision(precision="auto", *, gpu_capabilities=None, cpu_flags=None) -> str:
    """Resolves ``precision`` to a Keras dtype policy name.

    ``"auto"`` turns mixed precision on only where it pays
    (``docs/decisions.md#mixed-precision-auto``):

    * with GPUs: ``"mixed_bfloat16"`` when every GPU has compute capability 8.0
      or more (Ampere and later: bfloat16 tensor cores, no loss scaling),
      ``"mixed_float16"`` when every GPU has 7.0 or more (Volta, Turing),
      otherwise (or when a GPU reports no capability) ``"float32"``;
    * CPU only: ``"mixed_bfloat16"`` on CPUs with bfloat16 instructions
      (``/proc/cpuinfo`` flags ``avx512_bf16`` or ``amx_bf16``), otherwise
      ``"float32"``: without them bfloat16 is emulated and slower than float32.

    Args:
        precision: ``"auto"``, ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``.
        gpu_capabilities: one ``(major, minor)`` (or None) per visible GPU; None
            asks TensorFlow. Tests pass stubs.
        cpu_flags: the CPU's feature flags; None reads ``/proc/cpuinfo``.

    Raises:
        ValueError: for any other ``precision``.
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {list(PRECISIONS)}. Received: precision={precision!r}"
        )
    if precision != "auto":
        return precision
    if gpu_capabilities is None:
        gpu_capabilities = [device.gpu_compute_capability(g) for g in device.gpu_devices()]
    if gpu_capabilities:
        if any(cc is None for cc in gpu_capabilities):
            return "float32"
        lowest = min(tuple(cc) for cc in gpu_capabilities)
        if lowest >= (8, 0):
            return "mixed_bfloat16"
        return "mixed_float16" if lowest >= (7, 0) else "float32"
    flags = device.cpu_flags() if cpu_flags is None else set(cpu_flags)
    return "mixed_bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Builds layers under the dtype policy ``precision``, then restores the previous one.

    Keras layers take the global dtype policy when they are created; this sets it
    for the ``with`` block only, so the process-wide default is left as it was.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def model_precision(model: keras.Model) -> str:
    """The policy a built model computes in: a ``mixed_*`` name of its layers, else ``"float32"``."""
    for layer in _layers(model):
        name = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
        if name.startswith("mixed_"):
            return name
    return "float32"


def _layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _layers(layer)


def get_strategy(strategy=None) -> tf.distribute.Strategy:
    """Returns a ``tf.distribute`` strategy from a name or an instance.

    Args:
        strategy: None or ``"default"`` (no distribution), ``"mirrored"``
            (``MirroredStrategy`` over the local GPUs, or the CPU),
            ``"multiworker"`` (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``)
            or a ``tf.distribute.Strategy``.

    Raises:
        ValueError: for an unknown name.
    """
    if strategy is None or strategy == "default":
        return tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy in ("multiworker", "multi_worker"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(
        "`strategy` must be None, 'default', 'mirrored', 'multiworker' or a "
        f"tf.distribute.Strategy. Received: strategy={strategy!r}"
    )


def _strategy_name(strategy) -> str:
    if strategy is None or isinstance(strategy, str):
        return strategy or "default"
    return type(strategy).__name__


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def _task_id(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0)


def make_builder(name: str, **kwargs) -> Callable[[], keras.Model]:
    """A zero-argument builder for ``get_model(name, **kwargs)`` (for strategies)."""

    def build():

        return get_model(name, **kwargs)

    build.__name__ = name
    return build
