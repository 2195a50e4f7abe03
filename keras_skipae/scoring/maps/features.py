"""Feature maps from the model's named taps: discrepancy, combined, deviation.

* :func:`discrepancy_map`: ``mean_i up(|mu_i(x) - mu_i(x_hat)|)``, the channel means
  of the tapped activations for the input and for its reconstruction passed
  through the model again ("Don't skip the skips");
* :func:`combined_map`: ``sqrt(residual * discrepancy)``;
* :func:`deviation_map`: the deviation of the channel means from statistics of good
  images (:class:`LayerStatistics`, PaDiM-like).
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_skipae.models.taps import base_model, select_layers, tap_model, tap_names
from keras_skipae.ops.stats import channel_mean
from keras_skipae.scoring.maps.pixel import residual_map

_MAP_TAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


NORMALIZE = ("none", "relative")


def _map_taps(model, names):
    cache = _MAP_TAPS.setdefault(model, {})
    key = tuple(names)
    if key not in cache:
        cache[key] = tap_model(model, list(key))
    return cache[key]


def discrepancy_map(
    model: keras.Model,
    images,
    reconstruction=None,
    *,
    layers="decoder",
    normalize: str = "none",
    **ignored,
) -> tf.Tensor:
    """Activation-discrepancy anomaly map: ``mean_i up(|mu_i(x) - mu_i(x_hat)|)``.

    The input ``x`` and its reconstruction ``x_hat`` (passed through the model
    again) go through the taps in one inference-mode forward pass; for each
    selected layer the absolute difference of their channel means is upsampled
    (bilinear) to the image size; the maps are averaged over the layers. This
    is the anomaly score the ESANN paper suggests: where the model "saw"
    something it then repaired, its representations of ``x`` and ``x_hat``
    differ. TF ops only (exportable).

    Which layers: ``"decoder"`` is the paper's reading (the discrepancy grows
    through an AESc's decoder); ``"encoder"`` compares the encoder's features of
    the input and of the repaired image, which is closer to a feature-space
    residual. ``bench/bench_discrepancy.py`` compares them.

    Args:
        model: a keras_skipae model (or a :class:`DiscrepancyLossModel`).
        images: ``[B, H, W, C]`` float in [0, 1].
        reconstruction: ``model(images)``; computed when None.
        layers: see :func:`select_layers` (default ``"decoder"``).
        normalize: ``"none"`` (raw differences: the layers' scales add up as
            they are), or ``"relative"`` (each layer's difference divided by the
            mean ``|mu_i(x)|`` of the same image, so every layer counts alike).
        **ignored: other scoring options (accepted and ignored).

    Returns:
        ``[B, H, W]`` float32, >= 0.
    """
    if normalize not in NORMALIZE:
        raise ValueError(
            f"`normalize` must be one of {NORMALIZE}. Received: normalize={normalize!r}"
        )
    model = base_model(model)
    names = select_layers(model, layers)
    images = tf.cast(images, tf.float32)
    if reconstruction is None:
        reconstruction = model(images, training=False)
    reconstruction = tf.cast(reconstruction, tf.float32)
    taps = _map_taps(model, names)
    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    acts = taps(tf.concat([images, reconstruction], axis=0), training=False)
    total = None
    for name in names:
        mu = tf.reduce_mean(tf.cast(acts[name], tf.float32), axis=-1, keepdims=True)
        diff = tf.abs(mu[:n] - mu[n:])
        if normalize == "relative":
            scale = tf.reduce_mean(tf.abs(mu[:n]), axis=[1, 2, 3], keepdims=True)
            diff = diff / (scale + 1e-6)
        up = tf.image.resize(diff, size, method="bilinear")[..., 0]
        total = up if total is None else total + up
    return total / float(len(names))


def combined_map(
    model: keras.Model,
    images,
    reconstruction=None,
    *,
    layers="decoder",
    normalize: str = "none",
    **ignored,
) -> tf.Tensor:
    """The geometric mean of the residual and discrepancy maps: ``sqrt(r * d)``.

    ``r = |x - x_hat|`` (mean over channels) is sharp but noisy on texture;
    ``d`` (:func:`discrepancy_map`) is smooth and coarse. Their product is high
    only where both are, and, unlike a weighted sum, needs no scale between the
    two: multiplying either map by a constant multiplies the product by a
    constant, which leaves every AUROC unchanged. No weight is tuned.

    Args:
        model, images, reconstruction, layers, normalize: as in :func:`discrepancy_map`.
        **ignored: other scoring options.

    Returns:
        ``[B, H, W]`` float32, >= 0.
    """

    images = tf.cast(images, tf.float32)
    if reconstruction is None:
        reconstruction = base_model(model)(images, training=False)
    residual = residual_map(images, reconstruction)
    disc = discrepancy_map(model, images, reconstruction, layers=layers, normalize=normalize)
    return tf.sqrt(tf.maximum(residual * disc, 0.0))


class LayerStatistics(dict):
    """Statistics of the channel means ``mu_i`` over good images, per tapped layer.

    A plain ``dict`` ``{layer: {"mean": [h, w], "std": [h, w]}}`` of nested lists
    of floats, so it can travel in ``scoring``'s ``map_options`` and be written to
    JSON as it is. Used by :func:`deviation_map`.
    """

    @classmethod
    def fit(
        cls, model: keras.Model, images, *, layers="all", pooled: bool = False, batch_size=32
    ) -> LayerStatistics:
        """Gathers the statistics on good images.

        Args:
            model: a keras_skipae model.
            images: ``[N, H, W, C]`` good images in [0, 1] (N >= 2).
            layers: the taps (see :func:`select_layers`).
            pooled: one mean / std per layer (pooled over positions, for
                stationary textures) instead of one per position (aligned objects).
            batch_size: images per forward pass.

        Returns:
            A :class:`LayerStatistics`.
        """
        images = np.asarray(images, dtype="float32")
        if images.ndim != 4 or len(images) < 2:
            raise ValueError(
                "`images` must be at least 2 good images [N, H, W, C]. "
                f"Received: images with shape {images.shape}"
            )
        model = base_model(model)
        names = select_layers(model, layers)
        taps = _map_taps(model, names)
        sums = {n: [] for n in names}
        for start in range(0, len(images), int(batch_size)):
            acts = taps(tf.constant(images[start : start + int(batch_size)]), training=False)
            for n in names:
                sums[n].append(np.asarray(channel_mean(acts[n])))
        out = cls()
        for n in names:
            mu = np.concatenate(sums[n], axis=0).astype("float64")
            if pooled:
                mean = np.full(mu.shape[1:], mu.mean())
                std = np.full(mu.shape[1:], mu.std())
            else:
                mean, std = mu.mean(axis=0), mu.std(axis=0)
            # Lists, not arrays: plain JSON wherever the scoring settings are written.
            out[n] = {
                "mean": mean.astype("float32").tolist(),
                "std": std.astype("float32").tolist(),
            }
        return out


def deviation_map(
    model: keras.Model,
    images,
    reconstruction=None,
    *,
    statistics,
    layers=None,
    **ignored,
) -> tf.Tensor:
    """Deviation of the channel means from good-image statistics: ``mean_i up(z_i)``.

    ``z_i = |mu_i(x) - m_i| / max(s_i, 0.1 * mean(s_i))`` with ``m_i, s_i`` from
    :meth:`LayerStatistics.fit` (the floor keeps near-constant positions from
    dominating), upsampled (bilinear) to the image size and averaged over the
    layers. The reconstruction is not used. TF ops only; the statistics become
    constants of the graph.

    Args:
        model: a keras_skipae model.
        images: ``[B, H, W, C]`` float in [0, 1].
        reconstruction: ignored (the map's signature in ``scoring``).
        statistics: a :class:`LayerStatistics` (or the same dict, e.g. read from JSON).
        layers: a subset of the statistics' layers (see :func:`select_layers`);
            default all of them.
        **ignored: other scoring options.

    Returns:
        ``[B, H, W]`` float32, >= 0.
    """
    if not isinstance(statistics, dict) or not statistics:
        raise ValueError(
            "`statistics` must be the LayerStatistics of good images "
            "(LayerStatistics.fit(model, good_images)). Received: "
            f"statistics={type(statistics).__name__}"
        )
    model = base_model(model)
    names = [n for n in tap_names(model) if n in statistics]
    if layers is not None:
        wanted = set(select_layers(model, layers))
        names = [n for n in names if n in wanted]
    if not names:
        raise ValueError(
            f"No layer of `statistics` ({list(statistics)}) is selected. Received: layers={layers!r}"
        )
    images = tf.cast(images, tf.float32)
    taps = _map_taps(model, names)
    size = tf.shape(images)[1:3]
    acts = taps(images, training=False)
    total = None
    for name in names:
        mean = np.asarray(statistics[name]["mean"], "float32")
        std = np.asarray(statistics[name]["std"], "float32")
        std = np.maximum(std, 0.1 * float(std.mean()) + 1e-6)
        mu = tf.reduce_mean(tf.cast(acts[name], tf.float32), axis=-1)
        z = tf.abs(mu - mean[None]) / std[None]
        up = tf.image.resize(z[..., None], size, method="bilinear")[..., 0]
        total = up if total is None else total + up
    return total / float(len(names))
