"""Where and how a run trains: XLA, precision and the ``tf.distribute`` strategy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import keras
import tensorflow as tf

from keras_skipae.models import get_model
from keras_skipae.models.precision import model_precision
from keras_skipae.ops import device
from keras_skipae.ops.device import resolve_jit_compile

__all__ = [
    "PRECISIONS",
    "get_strategy",
    "make_builder",
    "model_precision",
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
    * CPU only: ``"float32"``, with or without bfloat16 instructions: without them
      bfloat16 is emulated and slower; with them (AVX512-BF16, AMX) ``train`` was
      measured no faster in bfloat16 than in float32.

    Args:
        precision: ``"auto"``, ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``.
        gpu_capabilities: one ``(major, minor)`` (or None) per visible GPU; None
            asks TensorFlow. Tests pass stubs.
        cpu_flags: the CPU's feature flags. Without a GPU the rule is float32 whatever
            they are; the argument is kept for callers that pass it.

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
    return "float32"


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

    ``"multiworker"`` returns one instance per process: with a ``TF_CONFIG``
    cluster, TensorFlow accepts a ``MultiWorkerMirroredStrategy`` only before it
    runs its first operation, and loading a dataset runs some. So call
    ``get_strategy("multiworker")`` at the start of the program; a later
    ``train(..., strategy="multiworker")`` then reuses that instance (the CLI does this).

    Raises:
        ValueError: for an unknown name.
        RuntimeError: ``"multiworker"`` asked for the first time after TensorFlow
            started (the message says what to do).
    """
    if strategy is None or strategy == "default":
        return tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy in ("multiworker", "multi_worker"):
        return _multiworker()
    raise ValueError(
        "`strategy` must be None, 'default', 'mirrored', 'multiworker' or a "
        f"tf.distribute.Strategy. Received: strategy={strategy!r}"
    )


_MULTIWORKER: list = []


def _multiworker() -> tf.distribute.Strategy:
    """The process's one ``MultiWorkerMirroredStrategy``, created on first use."""
    if not _MULTIWORKER:
        try:
            _MULTIWORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
        except RuntimeError as exc:
            if "program startup" not in str(exc):
                raise
            raise RuntimeError(
                "MultiWorkerMirroredStrategy must be created before TensorFlow runs its first "
                "operation (loading a dataset runs some). Call "
                "keras_skipae.training.get_strategy('multiworker') at the start of the "
                "program, before loading data; train(..., strategy='multiworker') then reuses "
                f"it. ({exc})"
            ) from None
    return _MULTIWORKER[0]


def _multi_worker(strategy) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` over more than one task."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return sum(len(tasks) for tasks in spec.values()) > 1


def _prepare_multi_worker(net, strategy) -> None:
    """Synchronizes BatchNorm and works around two Keras 3 bugs on a multi-worker cluster.

    BatchNormalization layers are switched to ``synchronized=True``: their batch
    statistics are computed over the global batch (an all-reduce of the
    per-channel sums), so every worker updates the same moving statistics and
    the workers' weights stay identical (with per-worker statistics each worker's
    moving mean and variance drift apart), and the run computes what a
    single-worker run on the same global batch computes.

    Keras' TensorFlow trainer (3.15, and its main branch) fails under a
    ``MultiWorkerMirroredStrategy`` with more than one worker (keras-team/keras#20585,
    tensorflow/tensorflow#72388):

    * before training, ``_maybe_symbolic_build`` reduces the first distributed
      batch with one ``strategy.reduce`` on the whole ``(x, y, ...)`` structure,
      which the strategy cannot do ("Attempt to convert a value (PerReplica: ...)");
      here it is reduced leaf by leaf, then handed to Keras' own build;
    * after every step it reduces the logs with ``strategy.reduce("MEAN", v,
      axis=0)``, and the logs are scalars ("Invalid reduction dimension 0 for
      input with 0 dimensions"); here ``train_step`` and ``test_step`` return
      them as ``[1]`` vectors, which that reduction averages over the replicas
      back into scalars.

    Only ``net`` is changed (layer attributes and instance attributes), and only
    on such a cluster.
    """
    if not _multi_worker(strategy):
        return
    for layer in _layers(net):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    keras_build = net._maybe_symbolic_build

    def build(iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        strategy.reduce("MEAN", v, axis=None)
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(it),
                )
                break
        return keras_build(iterator=None, data_batch=data_batch)

    def as_vectors(step):
        def wrapped(data):
            return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))

        return wrapped

    net._maybe_symbolic_build = build
    net.train_step = as_vectors(net.train_step)
    net.test_step = as_vectors(net.test_step)


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
