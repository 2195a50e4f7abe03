"""The one scoring entry point: :func:`compute`, and :func:`make_scorer` around it.

``evaluate`` and the SavedModel export both call :func:`compute`, so they agree.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from keras_skipae.ops.device import MEASURED, MeasuredJit, resolve_jit_compile
from keras_skipae.scoring.common import _check_rank, to_float_images
from keras_skipae.scoring.config import ScoringConfig
from keras_skipae.scoring.maps import ANOMALY_MAPS, mc_dropout_model
from keras_skipae.scoring.scores import image_score
from keras_skipae.scoring.smoothing import gaussian_smooth


def compute(
    model: keras.Model, images, scoring: ScoringConfig | dict | None = None
) -> dict[str, tf.Tensor]:
    """Reconstructs a batch and scores it: the one entry point for scoring.

    TF ops only: it can be wrapped in ``tf.function`` or used in a ``tf.Module``
    (with ``map="mc_dropout"``, build the clone eagerly first with
    ``mc_dropout_model(model)``; :func:`make_scorer` does).

    Args:
        model: an autoencoder mapping ``[B, H, W, C]`` images to reconstructions.
        images: ``[B, H, W, C]`` float32 in [0, 1] (uint8 is divided by 255).
        scoring: a :class:`ScoringConfig` (or its dict); None: the defaults.

    Returns:
        A dict: ``reconstruction`` ``[B, H, W, C]`` (the deterministic,
        inference-mode reconstruction, also for ``"mc_dropout"``),
        ``anomaly_map`` ``[B, H, W]`` (smoothed) and ``score`` ``[B]``, all float32.

    Example:
        >>> out = compute(model, images, ScoringConfig(map="ssim", smoothing=2.0))
    """
    cfg = ScoringConfig.resolve(scoring, caller="compute")
    images = to_float_images(images)
    _check_rank(images, 4, "images")
    reconstruction = tf.cast(model(images, training=False), tf.float32)
    raw = ANOMALY_MAPS[cfg.map](
        model, images, reconstruction, mc_samples=cfg.mc_samples, **cfg.map_options
    )
    anomaly_map = gaussian_smooth(raw, cfg.smoothing, cfg.smoothing_border)
    scores = image_score(anomaly_map, cfg.score, topk=cfg.topk, p=cfg.p)
    return {"reconstruction": reconstruction, "anomaly_map": anomaly_map, "score": scores}


def make_scorer(
    model: keras.Model,
    scoring: ScoringConfig | dict | None = None,
    *,
    image_shape=None,
    jit_compile="auto",
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """:func:`compute` bound to a model and a config, compiled with ``tf.function``.

    Args:
        model: the autoencoder.
        scoring: a :class:`ScoringConfig` (or its dict); None: the defaults.
        image_shape: ``(H, W, C)`` (entries may be None) to trace once with a
            free batch size (input float32 ``[None, H, W, C]``); None traces per
            input shape, relaxing shapes after a retrace.
        jit_compile: compile the scorer with XLA. ``"auto"``: the choice for the
            scoring path on this device
            (:func:`keras_skipae.ops.device.resolve_jit_compile`,
            ``docs/decisions.md#xla-auto``): on with a GPU; on a CPU a
            :class:`~keras_skipae.ops.device.MeasuredJit`, which times XLA off and
            on per input shape after a few calls and keeps the faster. True or
            False force it.

    Returns:
        ``fn(images) -> dict(reconstruction, anomaly_map, score)``: a ``tf.function``,
        or a :class:`~keras_skipae.ops.device.MeasuredJit` holding two.

    Example:
        >>> scorer = make_scorer(model, ScoringConfig(map="ssim"), image_shape=(128, 128, 1))
        >>> scorer(images)["score"]
    """
    cfg = ScoringConfig.resolve(scoring, caller="make_scorer")
    jit = resolve_jit_compile(jit_compile, path="scoring")
    if cfg.map == "mc_dropout":
        mc_dropout_model(model)  # build the clone (its variables) eagerly

    def scorer(images):
        return compute(model, images, cfg)

    # No AutoGraph: every branch in the scoring code is on Python values, so the
    # graph is traced as written (AutoGraph would re-read and convert the source).
    def compiled(jit_compile):
        if image_shape is not None:
            spec = tf.TensorSpec([None, *image_shape], tf.float32)
            return tf.function(
                scorer, input_signature=[spec], autograph=False, jit_compile=jit_compile
            )
        return tf.function(scorer, reduce_retracing=True, autograph=False, jit_compile=jit_compile)

    if jit == MEASURED:
        return MeasuredJit(compiled(False), compiled(True))
    return compiled(jit)
