"""The MC-dropout uncertainty map (Collin & De Vleeschouwer, ICPR 2020)."""

from __future__ import annotations

import warnings
import weakref

import keras
import tensorflow as tf

from keras_skipae.layers import MCDropout

DEFAULT_MC_SAMPLES = 10


_MC_CLONES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _mc_clone_layer(layer):
    if isinstance(layer, keras.layers.Dropout) and not isinstance(layer, MCDropout):
        return MCDropout.from_config(layer.get_config())
    return layer.__class__.from_config(layer.get_config())


def mc_dropout_model(model: keras.Model) -> keras.Model:
    """A clone of ``model`` whose Dropout layers are always active.

    The clone (``keras.models.clone_model`` with every ``Dropout`` replaced by
    ``MCDropout``, nested models included) is built once and cached per model.
    Its weights are *not* shared: ``mc_dropout_map`` copies the current
    weights into it on every call (variable assignments, graph-compatible).
    Call this once eagerly before using ``mc_dropout_map`` inside a
    ``tf.function`` (``make_scorer`` does).

    Args:
        model: a functional or sequential Keras model.

    Returns:
        The cached clone.
    """
    clone = _MC_CLONES.get(model)
    if clone is None:
        clone = keras.models.clone_model(model, clone_function=_mc_clone_layer, recursive=True)
        if len(clone.weights) != len(model.weights) or any(
            tuple(a.shape) != tuple(b.shape) for a, b in zip(clone.weights, model.weights)
        ):
            raise ValueError(
                f"Could not clone model {model.name!r} for MC dropout: its weights do not "
                "line up with the clone's (a subclassed model? use a functional model)."
            )
        if not any(isinstance(layer, MCDropout) for layer in _all_layers(clone)):
            warnings.warn(
                f"Model {model.name!r} has no Dropout layers: the MC-dropout map is all zeros.",
                stacklevel=2,
            )
        _MC_CLONES[model] = clone
    return clone


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def mc_dropout_map(
    model: keras.Model, images, *, mc_samples: int = DEFAULT_MC_SAMPLES
) -> tf.Tensor:
    """The MC-dropout uncertainty map: per-pixel variance over stochastic passes.

    Runs ``mc_samples`` passes of ``model`` with its Dropout layers active and
    every other layer in inference mode (BatchNorm uses its moving statistics;
    the model is *not* called with ``training=True``, which would switch BN to
    batch statistics), and returns the per-pixel variance of the
    reconstructions, averaged over channels. With no Dropout layers (or rate
    0) the map is zero.

    Args:
        model: the trained autoencoder.
        images: ``[B, H, W, C]`` float in [0, 1].
        mc_samples: number of stochastic passes (>= 2).

    Returns:
        ``[B, H, W]`` float32.
    """
    if int(mc_samples) < 2:
        raise ValueError(f"Expected `mc_samples` >= 2. Received: mc_samples={mc_samples!r}")
    clone = mc_dropout_model(model)
    for target, source in zip(clone.weights, model.weights):
        target.assign(source)
    images = tf.cast(images, tf.float32)
    passes = tf.stack(
        [tf.cast(clone(images, training=False), tf.float32) for _ in range(int(mc_samples))],
        axis=0,
    )
    mean = tf.reduce_mean(passes, axis=0)
    var = tf.reduce_mean(tf.square(passes - mean), axis=0)
    return tf.reduce_mean(var, axis=-1)
