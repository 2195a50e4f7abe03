"""The ``tf.Module`` a SavedModel export saves: its ``score`` / ``reconstruct`` functions
and their signatures (:data:`~keras_skipae.export.settings.SIGNATURES`), ``score_xla``
and ``score_tiled`` where the export has them."""

from __future__ import annotations

import tensorflow as tf

from keras_skipae.export.settings import SIGNATURES, TILED_SIGNATURE, XLA_SIGNATURE
from keras_skipae.scoring import compute, compute_tiled, is_anomalous, to_float_images

#: The message of the ``InvalidArgumentError`` a served call with NaN / Inf pixels raises.
NON_FINITE_MESSAGE = "keras_skipae: the images hold NaN or infinite values; expected [0, 1]"


def check_finite_images(images):
    """``images`` unchanged, or an ``InvalidArgumentError`` at run time if a float image
    holds NaN / Inf. Outside XLA only: a jit-compiled graph drops ``CheckNumerics``."""
    if images.dtype.is_floating:
        images = tf.debugging.check_numerics(images, NON_FINITE_MESSAGE)
    return images


def _checked(fn, expected):
    """A ``tf.function`` that checks the images' shape against ``expected`` and their
    values (:func:`check_finite_images`), then calls ``fn`` (which may be jit-compiled)."""

    def checked(images):
        return fn(check_finite_images(tf.ensure_shape(images, expected)))

    return tf.function(checked, autograph=False)


def build_module(
    model, *, settings, threshold, image_size, channels, asset_path, jit=False, xla_variant=False
):
    """A ``tf.Module`` with ``score`` / ``reconstruct`` tf.functions and their signatures;
    with ``xla_variant`` also ``score_xla`` and its :data:`XLA_SIGNATURE`.

    Returns:
        ``(module, concrete)``: the module, and signature name -> concrete function.
    """
    expected = [None, image_size[0], image_size[1], channels]

    def prepare(images):
        # EnsureShape checks at run time (signature callers and TF Serving feed
        # tensors without checking them against the input spec).
        images = tf.ensure_shape(images, expected)
        return to_float_images(images)

    def score_fn(images):
        out = compute(model, prepare(images), settings)
        if threshold is not None:
            out["is_anomalous"] = is_anomalous(out["score"], threshold)
        return out

    def reconstruct_fn(images):
        x = prepare(images)
        return {"reconstruction": tf.cast(model(x, training=False), tf.float32)}

    module = tf.Module(name="keras_skipae_export")
    module.score = _checked(tf.function(score_fn, jit_compile=jit), expected)
    module.reconstruct = _checked(tf.function(reconstruct_fn, jit_compile=jit), expected)
    concrete = {}
    for name, (dtype, _) in SIGNATURES.items():
        fn = module.reconstruct if name.startswith("reconstruct") else module.score
        spec = tf.TensorSpec(expected, tf.as_dtype(dtype), name="images")
        concrete[name] = fn.get_concrete_function(spec)
    if xla_variant:
        name, dtype, _ = XLA_SIGNATURE
        module.score_xla = _checked(tf.function(score_fn, jit_compile=True), expected)
        spec = tf.TensorSpec(expected, tf.as_dtype(dtype), name="images")
        concrete[name] = module.score_xla.get_concrete_function(spec)
    # Every variable the graphs read must be reachable from the module.
    variables = {}
    for cf in concrete.values():
        for v in cf.variables:
            variables[id(v)] = v
    module.model_variables = list(variables.values())
    module.settings_file = tf.saved_model.Asset(str(asset_path))
    return module, concrete


def add_tiled_signature(module, concrete, model, settings, threshold, channels, tiling):
    """``module.score_tiled`` (any frame size >= the tile) and its ``serving_tiled`` signature.

    ``tiling``: the dict of :func:`~keras_skipae.export.arguments.resolve_tiling`.
    """

    def score_tiled_fn(images):
        images = check_finite_images(tf.ensure_shape(images, [None, None, None, channels]))
        out = compute_tiled(
            model,
            images,
            tiling["tile_size"],
            tiling["tile_overlap"],
            settings,
            batch_size=tiling["batch_size"],
        )
        if threshold is not None:
            out["is_anomalous"] = is_anomalous(out["score"], threshold)
        return out

    name, dtype, _ = TILED_SIGNATURE
    module.score_tiled = tf.function(score_tiled_fn, autograph=False)
    spec = tf.TensorSpec([None, None, None, channels], tf.as_dtype(dtype), name="images")
    concrete[name] = module.score_tiled.get_concrete_function(spec)
    variables = {id(v): v for v in module.model_variables}
    for v in concrete[name].variables:
        variables[id(v)] = v
    module.model_variables = list(variables.values())
