"""Anomaly maps and image scores, in TensorFlow ops.

Everything here is written with TF ops only, so the same code runs in-process
(eagerly or in a ``tf.function``) and inside an exported SavedModel
(:mod:`keras_skipae.export`): the served scores equal ``evaluate``'s.

A score is computed in three steps, all fixed by one :class:`ScoringConfig`:

1. an **anomaly map** ``[B, H, W]`` from the input ``x`` and its reconstruction
   ``x_hat`` (:data:`ANOMALY_MAPS`: ``"residual"``, ``"ssim"``, ``"mc_dropout"``,
   ``"discrepancy"``, ``"combined"``, ``"deviation"``, ``"memory"``, ...;
   :mod:`keras_skipae.scoring.maps`);
2. optional **Gaussian smoothing** (:func:`gaussian_smooth`);
3. an **image score** (:data:`SCORES`: ``"max"``, ``"mean"``, ``"topk"``, ``"lp"``).

Frames larger than the model's input are scored tile by tile at full resolution by
:func:`compute_tiled` (:mod:`keras_skipae.scoring.tiling`).

The defaults and the reasons for them: ``docs/decisions.md``. An image is called
anomalous when ``score >= threshold`` (:func:`is_anomalous`). Scoring runs in float32:
``evaluate``, ``Detector`` and the export score a model trained in mixed precision with
its float32 twin (:func:`float32_model`).

Example:
    >>> import keras_skipae as ks
    >>> out = ks.scoring.compute(model, images)           # images [B, H, W, C] in [0, 1]
    >>> out["anomaly_map"].shape, out["score"].shape      # ([B, H, W], [B])
"""

from keras_skipae.layers import MCDropout
from keras_skipae.models.precision import float32_model
from keras_skipae.ops.image import gaussian_kernel
from keras_skipae.scoring.common import to_float_images
from keras_skipae.scoring.config import ScoringConfig
from keras_skipae.scoring.maps import (
    ANOMALY_MAPS,
    DEFAULT_MAP,
    DEFAULT_MC_SAMPLES,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    FeatureMemory,
    LayerStatistics,
    combined_map,
    deviation_map,
    discrepancy_map,
    fit_map_statistics,
    mc_dropout_map,
    mc_dropout_model,
    memory_map,
    register_map,
    residual_map,
    ssim_map,
)
from keras_skipae.scoring.scorer import compute, make_scorer
from keras_skipae.scoring.scores import (
    DEFAULT_P,
    DEFAULT_SCORE,
    DEFAULT_TOPK,
    SCORES,
    image_score,
    is_anomalous,
)
from keras_skipae.scoring.smoothing import (
    DEFAULT_SMOOTHING,
    DEFAULT_SMOOTHING_BORDER,
    SMOOTHING_BORDERS,
    gaussian_smooth,
)
from keras_skipae.scoring.threshold import check_threshold
from keras_skipae.scoring.tiling import DEFAULT_TILE_BATCH, compute_tiled, make_tiled_scorer

__all__ = [
    "ANOMALY_MAPS",
    "DEFAULT_MAP",
    "DEFAULT_MC_SAMPLES",
    "DEFAULT_P",
    "DEFAULT_SCORE",
    "DEFAULT_SMOOTHING",
    "DEFAULT_SMOOTHING_BORDER",
    "DEFAULT_TILE_BATCH",
    "DEFAULT_TOPK",
    "FeatureMemory",
    "LayerStatistics",
    "MCDropout",
    "SCORES",
    "SMOOTHING_BORDERS",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "ScoringConfig",
    "check_threshold",
    "combined_map",
    "compute",
    "compute_tiled",
    "deviation_map",
    "discrepancy_map",
    "fit_map_statistics",
    "float32_model",
    "gaussian_kernel",
    "gaussian_smooth",
    "image_score",
    "is_anomalous",
    "make_scorer",
    "make_tiled_scorer",
    "mc_dropout_map",
    "mc_dropout_model",
    "memory_map",
    "register_map",
    "residual_map",
    "ssim_map",
    "to_float_images",
]
