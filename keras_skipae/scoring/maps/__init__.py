"""Anomaly maps by name: ``ANOMALY_MAPS`` and :func:`register_map`.

Each entry is ``fn(model, images, reconstruction, **options) -> [B, H, W]`` (before
smoothing): ``"residual"``, ``"ssim"``, ``"mc_dropout"``, ``"discrepancy"``,
``"combined"``, ``"deviation"``, ``"learned"``, ``"learned+residual"``, ``"memory"``.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from keras_skipae.ops.stats import channel_mean
from keras_skipae.scoring.maps.features import (
    LayerStatistics,
    combined_map,
    deviation_map,
    discrepancy_map,
)
from keras_skipae.scoring.maps.mc_dropout import (
    DEFAULT_MC_SAMPLES,
    mc_dropout_map,
    mc_dropout_model,
)
from keras_skipae.scoring.maps.memory import (
    DEFAULT_BANK,
    DEFAULT_MEMORY_LAYERS,
    FeatureMemory,
    memory_map,
)
from keras_skipae.scoring.maps.pixel import (
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    residual_map,
    ssim_map,
)

DEFAULT_MAP = "residual"


def _residual_entry(model, images, reconstruction, **options):
    return residual_map(images, reconstruction)


def _ssim_entry(model, images, reconstruction, **options):
    return ssim_map(images, reconstruction)


def _mc_dropout_entry(model, images, reconstruction, *, mc_samples=DEFAULT_MC_SAMPLES, **options):
    return mc_dropout_map(model, images, mc_samples=mc_samples)


def _discrepancy_entry(model, images, reconstruction, **options):
    # Activation discrepancy |mu_i(x) - mu_i(x_hat)| (ESANN "Don't skip the skips");
    # map_options: layers ("decoder" | "encoder" | "all" | names), normalize.
    return discrepancy_map(model, images, reconstruction, **options)


def _combined_entry(model, images, reconstruction, **options):
    # sqrt(residual * discrepancy); same map_options as "discrepancy".
    return combined_map(model, images, reconstruction, **options)


def _deviation_entry(model, images, reconstruction, **options):
    # |mu_i(x) - m_i| / s_i against good-image statistics; map_options: statistics
    # (keras_skipae.scoring.LayerStatistics.fit(model, good_images)), layers.
    if options.get("statistics") is None:
        raise ValueError(
            "The 'deviation' map needs good-image layer statistics: pass "
            "map_options={'statistics': keras_skipae.scoring.LayerStatistics.fit(model, "
            "good_images)} (not available from the CLI). Received: map_options without "
            "'statistics'"
        )
    return deviation_map(model, images, reconstruction, **options)


def _learned_entry(model, images, reconstruction, **options):
    # The anomaly head's probability map (models.AnomalyHeadModel, registry "aesc_head").
    if not callable(getattr(model, "anomaly_map", None)):
        raise ValueError(
            "The 'learned' map needs a model with an anomaly head (e.g. "
            f"get_model('aesc_head')). Received: model {getattr(model, 'name', model)!r} "
            "without anomaly_map()"
        )
    return model.anomaly_map(images)


def _zscore(maps, stats):
    mean, std = stats
    return (maps - float(mean)) / max(float(std), 1e-12)


def _learned_residual_entry(model, images, reconstruction, *, statistics=None, **options):
    # max(z(learned), z(residual)), each map standardised by the mean and standard
    # deviation of its pixels on good images (fit_map_statistics): the head's map, but
    # never below what the residual shows.
    if not statistics or not {"learned", "residual"} <= set(statistics):
        raise ValueError(
            "The 'learned+residual' map needs good-image statistics of both maps: pass "
            "map_options={'statistics': scoring.fit_map_statistics(model, good_images)}. "
            f"Received: statistics={statistics!r}"
        )
    learned = _zscore(_learned_entry(model, images, reconstruction), statistics["learned"])
    residual = _zscore(residual_map(images, reconstruction), statistics["residual"])
    return tf.maximum(learned, residual)


def _memory_entry(model, images, reconstruction, **options):
    # Distance to the nearest good feature vector (PatchCore-like); map_options: bank
    # (keras_skipae.scoring.FeatureMemory.fit(model, good_train_images)), layers.
    if options.get("bank") is None:
        raise ValueError(
            "The 'memory' map needs a bank of good-image features: pass "
            "map_options={'bank': keras_skipae.scoring.FeatureMemory.fit(model, "
            "good_train_images)} (`keras-skipae evaluate RUN --map memory` fits it on the "
            "run's training images). Received: map_options without 'bank'"
        )
    return memory_map(model, images, reconstruction, **options)


# name -> fn(model, images, reconstruction, **options) -> [B, H, W] (before smoothing).
ANOMALY_MAPS: dict[str, Callable] = {
    "residual": _residual_entry,
    "ssim": _ssim_entry,
    "mc_dropout": _mc_dropout_entry,
    "discrepancy": _discrepancy_entry,
    "combined": _combined_entry,
    "deviation": _deviation_entry,
    "learned": _learned_entry,
    "learned+residual": _learned_residual_entry,
    "memory": _memory_entry,
}


def register_map(name: str, fn: Callable, *, overwrite: bool = False) -> None:
    """Adds an anomaly map to ``ANOMALY_MAPS`` (and so to ``ScoringConfig``'s ``map=``).

    Args:
        name: the name ``ScoringConfig(map=...)`` uses.
        fn: ``fn(model, images, reconstruction, **options) -> [B, H, W]`` in TF
            ops; ``options`` are ``compute``'s ``mc_samples`` and
            ``map_options``; it must accept and ignore options it does not use.
        overwrite: allow replacing an existing name.
    """
    if name in ANOMALY_MAPS and not overwrite:
        raise ValueError(f"An anomaly map named {name!r} already exists. Received: name={name!r}")
    ANOMALY_MAPS[name] = fn


__all__ = [
    "ANOMALY_MAPS",
    "DEFAULT_BANK",
    "DEFAULT_MAP",
    "DEFAULT_MC_SAMPLES",
    "DEFAULT_MEMORY_LAYERS",
    "FeatureMemory",
    "LayerStatistics",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "channel_mean",
    "combined_map",
    "deviation_map",
    "discrepancy_map",
    "fit_map_statistics",
    "mc_dropout_map",
    "mc_dropout_model",
    "memory_map",
    "register_map",
    "residual_map",
    "ssim_map",
]


def fit_map_statistics(model, good_images, maps=("learned", "residual"), *, batch_size=16) -> dict:
    """Mean and standard deviation of each map's pixels on good images.

    Args:
        model: the model the maps are computed with.
        good_images: ``[N, H, W, C]`` good images in [0, 1] (e.g. held-out validation images).
        maps: names of :data:`ANOMALY_MAPS` that need no options.
        batch_size: images per forward pass.

    Returns:
        ``{map: [mean, std]}`` (plain floats, JSON-able: it can travel in a
        ``ScoringConfig``'s ``map_options`` into an export).
    """
    images = tf.convert_to_tensor(good_images, tf.float32)
    sums = {m: [0.0, 0.0, 0] for m in maps}
    for start in range(0, int(images.shape[0]), batch_size):
        x = images[start : start + batch_size]
        x_hat = tf.cast(model(x, training=False), tf.float32)
        for m in maps:
            values = tf.cast(ANOMALY_MAPS[m](model, x, x_hat), tf.float64)
            sums[m][0] += float(tf.reduce_sum(values))
            sums[m][1] += float(tf.reduce_sum(tf.square(values)))
            sums[m][2] += int(tf.size(values))
    out = {}
    for m, (s1, s2, n) in sums.items():
        mean = s1 / n
        out[m] = [mean, max(s2 / n - mean * mean, 0.0) ** 0.5]
    return out
