"""Building and compiling :func:`keras_skipae.train`'s model: registry name, builder or
model; the precision policy; Adam at the requested learning rate; the tiles' input size."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_skipae.keras_metrics import PSNR, SSIM, Dice, IoU
from keras_skipae.models import get_model
from keras_skipae.training.runtime import (
    _prepare_multi_worker,
    model_precision,
    precision_scope,
    resolve_precision,
)

_NAMED_METRICS = {"psnr": PSNR, "ssim": SSIM, "iou": IoU, "dice": Dice}


def build_model(model, model_kwargs):
    """``model`` itself, or the model its registry name or builder makes."""
    if isinstance(model, keras.Model):
        if model_kwargs:
            raise ValueError(
                "`model_kwargs` only apply when `model` is a registry name or a builder. "
                f"Received: model={model.name!r}, model_kwargs={model_kwargs!r}"
            )
        return model
    if isinstance(model, str):
        return get_model(model, **(model_kwargs or {}))
    if callable(model):
        built = model(**(model_kwargs or {}))
        if not isinstance(built, keras.Model):
            raise ValueError(
                f"The model builder must return a keras.Model. Received: {type(built).__name__}"
            )
        return built
    raise ValueError(
        "`model` must be a keras.Model, a registry name ('ae', 'aesc', 'unet') or a "
        f"callable returning a keras.Model. Received: model={model!r}"
    )


def metric_objects(metrics) -> list:
    """``metrics`` with the names ``"psnr"``, ``"ssim"``, ``"iou"``, ``"dice"`` built."""
    out = []
    for m in metrics or ():
        if isinstance(m, str) and m in _NAMED_METRICS:
            out.append(_NAMED_METRICS[m]())
        else:
            out.append(m)
    return out


def check_strategy_model(strategy, model) -> None:
    """With a strategy, the model must be built inside its scope (a name or builder)."""
    if strategy not in (None, "default") and isinstance(model, keras.Model):
        raise ValueError(
            "With a distribution strategy the model must be built inside its scope: pass a "
            "registry name (with `model_kwargs`) or a builder callable, not a built model."
        )


def resolve_model_precision(model, precision) -> str:
    """The dtype policy to build in; a built model keeps its own (``"auto"``) or must match."""
    if not isinstance(model, keras.Model):
        return resolve_precision(precision)
    built = model_precision(model)
    if precision != "auto" and resolve_precision(precision) != built:
        raise ValueError(
            f"`precision` applies when train builds the model; {model.name!r} was built in "
            f"{built!r}. Pass a registry name or a builder, or precision='auto'. "
            f"Received: precision={precision!r}"
        )
    return built


def _check_float32_outputs(net, precision):
    """Under a mixed policy the outputs must stay float32 (the loss and scoring read them)."""
    outputs = getattr(net, "outputs", None) if precision != "float32" else None
    for out in tf.nest.flatten(outputs or []):
        if str(getattr(out, "dtype", "float32")) != "float32":
            raise ValueError(
                f"Under precision={precision!r} the model's outputs must be float32: build its "
                "last layer with dtype='float32' (the package's builders do). "
                f"Received: an output of dtype {out.dtype}"
            )


def build_and_compile(
    model, model_kwargs, strat, loss_obj, metrics, learning_rate, jit, seed, precision
):
    """The model, built under ``precision`` in ``strat``'s scope and compiled with Adam."""
    keras.utils.set_random_seed(int(seed))
    with strat.scope():
        with precision_scope(precision):
            net = build_model(model, model_kwargs)
        _check_float32_outputs(net, precision)
        _prepare_multi_worker(net, strat)
        optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
        if precision == "mixed_float16":
            # Explicit: Keras wraps it only when the model's own policy says so,
            # which a reloaded functional model's does not.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        net.compile(
            optimizer=optimizer, loss=loss_obj, metrics=metric_objects(metrics), jit_compile=jit
        )
    applied = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
    if not math.isclose(applied, float(learning_rate), rel_tol=1e-6):  # pragma: no cover
        raise RuntimeError(
            f"The optimizer's learning rate is {applied}, not the requested {learning_rate}."
        )
    return net


def check_tile_input(net, tiling) -> None:
    """A model trained on tiles must take ``tile_size x tile_size`` images."""
    if tiling is None:
        return
    shape = getattr(net, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4:
        if any(s is not None and s != tiling[0] for s in shape[1:3]):
            raise ValueError(
                f"A model trained on {tiling[0]}x{tiling[0]} tiles must take images of that "
                f"size (build it with input_shape=({tiling[0]}, {tiling[0]}, C)). Received: "
                f"a model with input_shape={shape}, tile_size={tiling[0]}"
            )
