"""Where and how a run trains: the XLA choice and the ``tf.distribute`` strategy."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_skipae.models import get_model


def resolve_jit_compile(jit_compile="auto") -> bool:
    """Resolves ``"auto"`` to XLA on GPU, off on CPU; passes booleans through.

    Raises:
        ValueError: for anything other than ``"auto"``, True or False.
    """
    if jit_compile == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    if isinstance(jit_compile, bool | np.bool_):
        return bool(jit_compile)
    raise ValueError(
        f"`jit_compile` must be 'auto', True or False. Received: jit_compile={jit_compile!r}"
    )


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
