"""Layer discrepancy analysis: channel means, per-layer cosine similarity, maps, a loss.

Collin, de Bodt, Mulders & De Vleeschouwer, "Don't skip the skips: autoencoder
skip connections improve latent representation discrepancy for anomaly
detection" (ESANN): train an autoencoder with skips (AESc) on stain-corrupted
inputs with clean targets, and its internal activations for a clean image and
for the same image with a stain *differ*, more and more with depth through the
decoder; without skips (AE) they stay alike. This module measures that, through
the models' named taps only (:func:`keras_skipae.models.tap_names`):

* for every tap ``i`` the activation ``l_i`` ``[B, h, w, c]`` and its **channel
  mean** ``mu_i = mean_c l_i`` ``[B, h, w]``;
* per pair ``(x_clean, x_corrupted)`` and layer: the **cosine similarity**
  ``cos(mu_i(x_clean), mu_i(x_corrupted))`` of the flattened maps, and the
  **L2 distance** ``||mu_i(x_clean) - mu_i(x_corrupted)||_2``.

:class:`LayerDiscrepancy` does this with one inference-mode forward pass of the
tap model on the concatenated ``[clean; corrupted]`` batch, in a ``tf.function``
built once (cheap enough to run every epoch: see
:class:`keras_skipae.callbacks.DiscrepancyMonitor`). It returns a
:class:`DiscrepancyResult` (ordered dicts of NumPy arrays, one entry per tap)
that turns into JSON (:meth:`DiscrepancyResult.to_dict`) or CSV rows
(:meth:`DiscrepancyResult.to_rows`).

Also here:

* :func:`discrepancy_map` / :func:`combined_map`: anomaly maps from the
  discrepancy between the input and its reconstruction passed through the
  model again, registered in :mod:`keras_skipae.scoring` as ``"discrepancy"``
  and ``"combined"`` (TF ops, exportable);
* :func:`deviation_map`: the deviation of the channel means from statistics
  gathered on good images (:class:`LayerStatistics`), registered as
  ``"deviation"`` (``map_options={"statistics": stats}``);
* :class:`DiscrepancyLossModel`: the paper's proposed "explicit optimisation
  constraint", an optional training term that rewards discrepancy between the
  decoder representations of clean and corrupted inputs (off unless you wrap a
  model in it);
* :func:`paper_trend`: checks the paper's observation on two results.

Example:
    >>> import keras_skipae as ks
    >>> aesc = ks.build_aesc(input_shape=(64, 64, 1), depth=4, filters=8)
    >>> clean, corrupted = ks.analysis.make_probe_pairs(images, ks.data.Stains(), seed=0)
    >>> result = ks.analysis.layer_discrepancy(aesc, clean, corrupted)
    >>> result.median("cosine")          # {"enc0_out": 0.99, ..., "dec0_out": 0.7}
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_skipae.models import tap_model, tap_names

__all__ = [
    "DiscrepancyLossModel",
    "DiscrepancyResult",
    "LAYER_GROUPS",
    "LayerDiscrepancy",
    "LayerStatistics",
    "base_model",
    "channel_mean",
    "combined_map",
    "compare_runs",
    "cosine_similarity",
    "deviation_map",
    "discrepancy_map",
    "layer_discrepancy",
    "make_probe_pairs",
    "paper_trend",
    "select_layers",
]

#: Names accepted by ``layers=`` (besides an explicit list of tap names).
LAYER_GROUPS = ("all", "encoder", "decoder", "encoder+bottleneck", "bottleneck+decoder")

_EPS = 1e-12


# --------------------------------------------------------------------------- basics


def base_model(model: keras.Model) -> keras.Model:
    """The tapped model inside ``model`` (unwraps a :class:`DiscrepancyLossModel`)."""
    while isinstance(model, DiscrepancyLossModel):
        model = model.base
    return model


def select_layers(model: keras.Model, layers="all") -> list[str]:
    """Resolves a layer selection to ordered tap names.

    Args:
        model: a keras_skipae model (or a :class:`DiscrepancyLossModel`).
        layers: ``"all"``, ``"encoder"`` (``enc{i}_out``), ``"decoder"``
            (``dec{i}_out``), ``"encoder+bottleneck"``, ``"bottleneck+decoder"``,
            or a sequence of tap names.

    Returns:
        Tap names in data-flow order (as :func:`keras_skipae.models.tap_names`).

    Raises:
        ValueError: an unknown group or tap name, or an empty selection.
    """
    names = tap_names(base_model(model))
    enc = [n for n in names if n.startswith("enc")]
    dec = [n for n in names if n.startswith("dec")]
    bott = [n for n in names if n == "bottleneck_out"]
    if isinstance(layers, str):
        groups = {
            "all": names,
            "encoder": enc,
            "decoder": dec,
            "encoder+bottleneck": enc + bott,
            "bottleneck+decoder": bott + dec,
        }
        if layers not in groups:
            raise ValueError(
                f"`layers` must be one of {list(LAYER_GROUPS)} or a list of tap names "
                f"{names}. Received: layers={layers!r}"
            )
        selected = groups[layers]
    else:
        selected = list(layers)
        unknown = [n for n in selected if n not in names]
        if unknown:
            raise ValueError(
                f"Unknown tap name(s) {unknown}; available: {names}. Received: layers={layers!r}"
            )
        selected = [n for n in names if n in selected]
    if not selected:
        raise ValueError(f"`layers` selects no tap of model {model.name!r}. Received: {layers!r}")
    return selected


def channel_mean(activation) -> tf.Tensor:
    """``mu_i``: the mean of an activation ``[B, h, w, c]`` along channels -> ``[B, h, w]``."""
    return tf.reduce_mean(tf.cast(activation, tf.float32), axis=-1)


def cosine_similarity(a, b, *, eps: float = _EPS) -> tf.Tensor:
    """Cosine similarity of each pair of maps, flattened over all but the batch axis.

    ``sum(a * b) / max(||a|| * ||b||, eps)``; 0 when either map is all zeros.

    Args:
        a: ``[B, ...]`` float.
        b: same shape.
        eps: guards the division.

    Returns:
        ``[B]`` float32 in [-1, 1].

    Example:
        >>> cosine_similarity(np.ones([2, 3, 3]), np.ones([2, 3, 3]))   # [1., 1.]
    """
    a = tf.cast(a, tf.float32)
    b = tf.cast(b, tf.float32)
    n = tf.shape(a)[0]
    a = tf.reshape(a, tf.stack([n, -1]))
    b = tf.reshape(b, tf.stack([n, -1]))
    dot = tf.reduce_sum(a * b, axis=-1)
    norm = tf.norm(a, axis=-1) * tf.norm(b, axis=-1)
    return dot / tf.maximum(norm, eps)


def make_probe_pairs(images, corruption, *, seed: int = 0):
    """Deterministic (clean, corrupted) probe pairs from clean images.

    The corruption is called once on the whole batch with the stateless seed
    ``[seed, 0]``: no global random state is read or advanced, so drawing probes
    does not change a training run.

    Args:
        images: ``[N, H, W, C]`` float in [0, 1] (or uint8).
        corruption: a corruption object (``__call__(images, seed) ->
            (corrupted, target, mask)``, e.g. :class:`keras_skipae.data.Stains`),
            or a name / config accepted by :func:`keras_skipae.data.get`.
        seed: integer seed.

    Returns:
        ``(clean, corrupted)`` float32 NumPy arrays; ``clean`` is the corruption's
        target (the input itself for stains).
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype("float32") / 255.0
    images = tf.constant(images, tf.float32)
    if images.shape.rank != 4:
        raise ValueError(
            f"`images` must be a batch [N, H, W, C]. Received: images with shape {images.shape}"
        )
    if not callable(corruption):
        from keras_skipae import data

        corruption = data.get(corruption)
    corrupted, target, _ = corruption(images, tf.constant([int(seed), 0], tf.int64))
    return np.asarray(target, dtype="float32"), np.asarray(corrupted, dtype="float32")


# --------------------------------------------------------------------------- results


@dataclass
class DiscrepancyResult:
    """Per-layer similarities of probe pairs, ordered as the taps.

    Attributes:
        layers: tap names, in data-flow order.
        shapes: ``{layer: (h, w, c)}`` of each activation.
        cosine: ``{layer: [N]}`` cosine similarity of the channel means of each pair.
        l2: ``{layer: [N]}`` L2 distance of the channel means of each pair.
        means_clean: ``{layer: [N, h, w]}`` channel means of the clean images,
            or None (see ``return_means``).
        means_corrupted: the same for the corrupted images, or None.
    """

    layers: list
    shapes: dict
    cosine: dict
    l2: dict
    means_clean: dict | None = field(default=None, repr=False)
    means_corrupted: dict | None = field(default=None, repr=False)

    @property
    def n_pairs(self) -> int:
        return int(len(self.cosine[self.layers[0]])) if self.layers else 0

    def median(self, metric: str = "cosine") -> dict:
        """``{layer: median over pairs}`` of ``"cosine"`` or ``"l2"``."""
        values = self._metric(metric)
        return {k: float(np.median(values[k])) for k in self.layers}

    def summary(self) -> dict:
        """``{layer: {cosine_median, cosine_mean, cosine_q25, cosine_q75, l2_median, shape}}``."""
        out = {}
        for k in self.layers:
            c = np.asarray(self.cosine[k], dtype="float64")
            out[k] = {
                "shape": list(self.shapes[k]),
                "cosine_median": float(np.median(c)),
                "cosine_mean": float(np.mean(c)),
                "cosine_q25": float(np.quantile(c, 0.25)),
                "cosine_q75": float(np.quantile(c, 0.75)),
                "l2_median": float(np.median(self.l2[k])),
            }
        return out

    def to_dict(self, *, per_pair: bool = True) -> dict:
        """A JSON-ready dict (means are left out: they are images)."""
        out = {
            "layers": list(self.layers),
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "n_pairs": self.n_pairs,
            "summary": self.summary(),
        }
        if per_pair:
            out["cosine"] = {k: np.asarray(self.cosine[k]).tolist() for k in self.layers}
            out["l2"] = {k: np.asarray(self.l2[k]).tolist() for k in self.layers}
        return out

    def to_rows(self, **extra) -> list[dict]:
        """One CSV row per (layer, pair): ``extra..., layer, index, h, w, c, pair, cosine, l2``."""
        rows = []
        for i, k in enumerate(self.layers):
            h, w, c = self.shapes[k]
            for j, (cos, l2) in enumerate(zip(self.cosine[k], self.l2[k])):
                rows.append(
                    dict(
                        extra,
                        layer=k,
                        index=i,
                        h=h,
                        w=w,
                        c=c,
                        pair=j,
                        cosine=float(cos),
                        l2=float(l2),
                    )
                )
        return rows

    def _metric(self, metric):
        if metric not in ("cosine", "l2"):
            raise ValueError(f"`metric` must be 'cosine' or 'l2'. Received: metric={metric!r}")
        return self.cosine if metric == "cosine" else self.l2


# --------------------------------------------------------------------------- analyzer


class LayerDiscrepancy:
    """Computes per-layer cosine similarities and L2 distances of probe pairs.

    The tap model and the ``tf.function`` are built once, here; calls with the
    same batch size never retrace. Each call runs the model in inference mode
    (``training=False``: BatchNorm uses its moving statistics, Dropout is off)
    on ``concat([clean, corrupted])``, so it neither changes the model nor
    consumes random numbers: it is safe to call in the middle of training.

    Args:
        model: a keras_skipae model (or a :class:`DiscrepancyLossModel`).
        layers: the taps to analyse (see :func:`select_layers`); default all.

    Example:
        >>> analyzer = LayerDiscrepancy(model)
        >>> result = analyzer(clean, corrupted)
        >>> result.median()
    """

    def __init__(self, model: keras.Model, layers="all"):
        self.model = model
        self.layers = select_layers(model, layers)
        self._taps = tap_model(base_model(model), self.layers)
        # autograph=False: nothing to convert, and no re-reading of the source file.
        self._fn = tf.function(self._compute, reduce_retracing=True, autograph=False)

    def _compute(self, clean, corrupted, return_means: bool):
        n = tf.shape(clean)[0]
        acts = self._taps(tf.concat([clean, corrupted], axis=0), training=False)
        cos, l2, mc, mk, shapes = {}, {}, {}, {}, {}
        for name in self.layers:
            shapes[name] = tf.shape(acts[name])[1:]
            mu = channel_mean(acts[name])
            a, b = mu[:n], mu[n:]
            cos[name] = cosine_similarity(a, b)
            l2[name] = tf.norm(tf.reshape(a - b, tf.stack([n, -1])), axis=-1)
            if return_means:
                mc[name], mk[name] = a, b
        return cos, l2, mc, mk, shapes

    def __call__(
        self, clean, corrupted, *, batch_size: int = 64, return_means: bool = False
    ) -> DiscrepancyResult:
        """Analyses ``N`` pairs.

        Args:
            clean: ``[N, H, W, C]`` float in [0, 1].
            corrupted: the same images corrupted, same shape.
            batch_size: pairs per forward pass (2 * batch_size images).
            return_means: also return the channel-mean maps (for figure (a)).

        Returns:
            A :class:`DiscrepancyResult`.
        """
        clean = np.asarray(clean, dtype="float32")
        corrupted = np.asarray(corrupted, dtype="float32")
        if clean.shape != corrupted.shape or clean.ndim != 4 or not len(clean):
            raise ValueError(
                "`clean` and `corrupted` must be non-empty batches [N, H, W, C] of the same "
                f"shape. Received: clean.shape={clean.shape}, corrupted.shape={corrupted.shape}"
            )
        parts = []
        for start in range(0, len(clean), int(batch_size)):
            stop = start + int(batch_size)
            parts.append(
                self._fn(
                    tf.constant(clean[start:stop]),
                    tf.constant(corrupted[start:stop]),
                    bool(return_means),
                )
            )

        def cat(idx):
            return {
                k: np.concatenate([np.asarray(p[idx][k]) for p in parts], axis=0)
                for k in self.layers
            }

        shapes = {k: tuple(int(d) for d in np.asarray(parts[0][4][k])) for k in self.layers}
        return DiscrepancyResult(
            layers=list(self.layers),
            shapes=shapes,
            cosine=cat(0),
            l2=cat(1),
            means_clean=cat(2) if return_means else None,
            means_corrupted=cat(3) if return_means else None,
        )


_ANALYZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_discrepancy(
    model: keras.Model,
    clean,
    corrupted,
    *,
    layers="all",
    batch_size: int = 64,
    return_means: bool = False,
) -> DiscrepancyResult:
    """Per-layer cosine similarity and L2 distance of (clean, corrupted) pairs.

    A convenience around :class:`LayerDiscrepancy` that caches the analyzer per
    model (so repeated calls do not retrace).

    Args:
        model: a keras_skipae model.
        clean: ``[N, H, W, C]`` clean images in [0, 1].
        corrupted: the same images corrupted.
        layers: taps to analyse (see :func:`select_layers`).
        batch_size: pairs per forward pass.
        return_means: also return the channel-mean maps.

    Returns:
        A :class:`DiscrepancyResult`.
    """
    cache = _ANALYZERS.setdefault(model, {})
    key = tuple(select_layers(model, layers))
    if key not in cache:
        cache[key] = LayerDiscrepancy(model, list(key))
    return cache[key](clean, corrupted, batch_size=batch_size, return_means=return_means)


def paper_trend(ae: DiscrepancyResult, aesc: DiscrepancyResult, *, tol: float = 0.0) -> dict:
    """Checks the ESANN paper's observation on median cosine similarities.

    The paper: for the AESc the similarity between clean and corrupted channel
    means *falls with depth through the decoder* and ends *below* the AE's; the
    AE's stays high.

    Args:
        ae: the result of the model without skips.
        aesc: the result of the model with skips (same probe pairs).
        tol: slack for the monotonicity test.

    Returns:
        A dict: ``decoder_layers``, ``aesc_decoder`` / ``ae_decoder`` (medians),
        ``aesc_falls`` (last decoder layer below the first),
        ``aesc_monotone`` (no rise larger than ``tol`` between consecutive decoder
        layers), ``aesc_ends_below_ae`` (at the last decoder layer),
        ``reproduced`` (``aesc_falls and aesc_ends_below_ae``), and the sizes of
        the effect: ``aesc_drop`` (first minus last decoder median) and
        ``gap_to_ae`` (AE minus AESc at the last decoder layer). Judge
        ``reproduced`` with these: medians of 0.9998 and 0.9990 pass the test.
    """
    dec = [k for k in aesc.layers if k.startswith("dec") and k in ae.layers]
    if not dec:
        raise ValueError("The results share no decoder tap (dec{i}_out).")
    sc, ac = aesc.median("cosine"), ae.median("cosine")
    s = [sc[k] for k in dec]
    a = [ac[k] for k in dec]
    falls = len(s) > 1 and s[-1] < s[0]
    monotone = all(s[i + 1] <= s[i] + tol for i in range(len(s) - 1))
    below = s[-1] < a[-1]
    return {
        "decoder_layers": dec,
        "aesc_decoder": s,
        "ae_decoder": a,
        "aesc_falls": bool(falls),
        "aesc_monotone": bool(monotone),
        "aesc_ends_below_ae": bool(below),
        "reproduced": bool(falls and below),
        "aesc_drop": float(s[0] - s[-1]),
        "gap_to_ae": float(a[-1] - s[-1]),
    }


# --------------------------------------------------------------------------- anomaly maps

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
    from keras_skipae.scoring import residual_map

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


# --------------------------------------------------------------------------- loss


@keras.saving.register_keras_serializable(package="keras_skipae")
class DiscrepancyLossModel(keras.Model):
    """Trains a model with an extra term that rewards clean/corrupted discrepancy.

    The ESANN paper closes by proposing an "explicit optimisation constraint"
    that makes the decoder's representations of a clean image and of its
    corrupted version differ. This wrapper adds to the reconstruction loss

        ``weight * mean_{i in layers} mean_pairs cos(mu_i(x_clean), mu_i(x_corrupted))``

    (minimising a cosine similarity = rewarding discrepancy), where the
    training pairs are ``(x_corrupted, x_clean)`` as ``fit`` receives them
    (input, target). One training-mode forward pass of the taps on
    ``concat([x_corrupted, x_clean])`` gives both the reconstruction (of the
    corrupted half, which the compiled loss scores as usual) and the
    activations; BatchNorm therefore sees clean and corrupted images in the
    same batch. Validation and ``predict`` use the wrapped model alone; the
    epoch logs get ``discrepancy_cosine`` (the term before weighting).

    It is off by default: nothing in keras_skipae wraps a model unless asked.
    Use it like the model it wraps (``train`` compiles and fits it; its
    ``.base`` is the plain model for export). Scoring and analysis unwrap it.

    Args:
        base: a keras_skipae model with taps.
        weight: the term's weight (>= 0; 0 trains exactly the reconstruction loss,
            at the cost of the clean half's forward pass).
        layers: the taps the term uses (default the decoder's).

    Example:
        >>> model = DiscrepancyLossModel(ks.build_aesc(input_shape=(64, 64, 1), depth=4))
        >>> model.compile(optimizer="adam", loss="mse")
        >>> model.fit(pairs, epochs=5)       # pairs: (corrupted, clean) batches
        >>> model.base.save("aesc.keras")
    """

    def __init__(self, base, weight: float = 0.1, layers="decoder", **kwargs):
        super().__init__(**{"name": f"{base.name}_discrepancy_loss", **kwargs})
        weight = float(weight)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"`weight` must be a number >= 0. Received: weight={weight!r}")
        self.base = base
        self.weight = weight
        self.layer_selection = layers if isinstance(layers, str) else list(layers)
        self.tap_layers = select_layers(base, layers)
        self._taps = tap_model(base, self.tap_layers + ["out"])
        self.discrepancy_tracker = keras.metrics.Mean(name="discrepancy_cosine")
        self.built = bool(base.built)

    def call(self, inputs, training=None):
        return self.base(inputs, training=training)

    @property
    def metrics(self):
        return super().metrics + [self.discrepancy_tracker]

    def discrepancy_term(self, activations, n) -> tf.Tensor:
        """Mean cosine similarity over the selected taps and the pairs."""
        sims = []
        for name in self.tap_layers:
            mu = channel_mean(activations[name])
            sims.append(tf.reduce_mean(cosine_similarity(mu[:n], mu[n:])))
        return tf.add_n(sims) / float(len(sims))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        n = tf.shape(x)[0]
        with tf.GradientTape() as tape:
            acts = self._taps(tf.concat([x, y], axis=0), training=True)
            y_pred = acts["out"][:n]
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            term = self.discrepancy_term(acts, n)
            total = loss + self.weight * term
            self._loss_tracker.update_state(total, sample_weight=n)
            scaled = self.optimizer.scale_loss(total) if self.optimizer is not None else total
        weights = self.trainable_weights
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        self.discrepancy_tracker.update_state(term)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {
            "base": keras.saving.serialize_keras_object(self.base),
            "weight": self.weight,
            "layers": self.layer_selection,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        base = keras.saving.deserialize_keras_object(
            config.pop("base"), custom_objects=custom_objects
        )
        return cls(base, **config)


# --------------------------------------------------------------------------- two runs


def _probe_images(config, *, data_root, category, n, seed, image_shape):
    """Good images for probes: ``data_root``/the run's data, else synthetic ones."""
    from keras_skipae import data

    cfg = (config or {}).get("data") or {}
    root = data_root if data_root is not None else cfg.get("root")
    category = category if category is not None else cfg.get("category")
    h, w, c = image_shape
    color_mode = "rgb" if c == 3 else "grayscale"
    if root is not None and category is not None:
        from pathlib import Path

        if not Path(root).is_dir():
            raise FileNotFoundError(f"Data folder {str(root)!r} does not exist.")
        size = (h, w)
        images = []
        for split in ("test", "train"):  # good test images first: never trained on
            try:
                ds = data.mvtec_dataset(
                    root, category, split, image_size=size, color_mode=color_mode
                )
            except data.DatasetNotFoundError:
                continue
            for e in ds:
                if int(e["label"]) == 0:
                    images.append(e["image"].numpy())
                    if len(images) == n:
                        break
            if len(images) == n:
                break
        if not images:
            raise ValueError(f"No good image found in {str(root)!r}, category {category!r}.")
        return np.stack(images), {"root": str(root), "category": category, "source": "data"}
    synth = category if category in data.synthetic.CATEGORIES else ("woven" if c == 3 else "mesh")
    images = []
    for i in range(n):
        img, _ = data.synthetic.generate_sample(synth, image_size=h, seed=(int(seed), 1000 + i))
        img = img.astype("float32") / 255.0
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] != c:
            img = img.mean(-1, keepdims=True) if c == 1 else np.repeat(img[..., :1], c, -1)
        images.append(img)
    return np.stack(images), {"category": synth, "source": "synthetic"}


def compare_runs(
    run_a,
    run_b,
    *,
    data_root=None,
    category=None,
    n_probes: int = 16,
    seed: int = 0,
    corruption=None,
    out_dir=None,
    overwrite: bool = False,
    best: bool = False,
) -> dict:
    """Compares the layer discrepancy of two trained runs on the same probe pairs.

    The command ``keras-skipae discrepancy RUN_A RUN_B``. Loads each run's
    ``model.keras`` (:func:`keras_skipae.training.load_run`), draws ``n_probes``
    good images (from ``data_root``/``category``, else the data recorded in
    RUN_A's ``config.json``, else the built-in synthetic generator), stains them
    with ``Stains()`` and ``seed``, and writes to ``out_dir``:

    * ``channel_means.png``: figure (a), the paper's Fig. 2 for the median-sized stain;
    * ``cosine_per_layer.png``: figure (b), the paper's Fig. 3;
    * ``discrepancy.json`` (per-pair values, medians, :func:`paper_trend` with
      RUN_A as the model without skips) and ``discrepancy.csv`` (one row per
      model, layer and pair).

    Args:
        run_a, run_b: run folders written by ``keras-skipae train``. Put the
            model without skips (AE) first for the trend check.
        data_root, category: where the probes come from (default: the run's).
        n_probes: number of probe pairs.
        seed: stain seed (and synthetic image seed).
        corruption: the corruption (default ``Stains()``).
        out_dir: output folder (default ``<run_b>/discrepancy``); written
            atomically; refused if it exists unless ``overwrite``.
        overwrite: replace an existing ``out_dir``.
        best: load ``best.keras`` instead of ``model.keras``.

    Returns:
        A dict with ``out_dir``, ``labels``, ``layers``, ``medians`` and ``trend``.
    """
    import csv
    from pathlib import Path

    from keras_skipae import io_utils, plotting
    from keras_skipae.training import load_run

    out_dir = Path(out_dir) if out_dir is not None else Path(run_b) / "discrepancy"
    io_utils.check_writable(out_dir, overwrite=overwrite, what="output folder")
    if int(n_probes) < 1:
        raise ValueError(f"`n_probes` must be >= 1. Received: n_probes={n_probes!r}")
    loaded = []
    for run in (run_a, run_b):
        model, config = load_run(run, best=best, compile=False)
        loaded.append((Path(run), base_model(model), config))
    (pa, ma, ca), (pb, mb, cb) = loaded
    if tuple(ma.input_shape[1:]) != tuple(mb.input_shape[1:]):
        raise ValueError(
            f"The runs take different inputs: {ma.input_shape[1:]} and {mb.input_shape[1:]}."
        )
    if tap_names(ma) != tap_names(mb):
        raise ValueError(
            f"The runs' taps do not line up: {tap_names(ma)} vs {tap_names(mb)} "
            "(compare models of the same depth)."
        )
    shape = tuple(ma.input_shape[1:])
    if None in shape:
        size = ((ca.get("data") or {}).get("image_size")) or 256
        shape = (int(size), int(size), shape[-1])
    images, source = _probe_images(
        ca, data_root=data_root, category=category, n=int(n_probes), seed=seed, image_shape=shape
    )
    if corruption is None:
        from keras_skipae.data import Stains

        corruption = Stains()
    clean, corrupted = make_probe_pairs(images, corruption, seed=seed)
    label_a, label_b = pa.name or str(pa), pb.name or str(pb)
    if label_a == label_b:
        label_a, label_b = f"A: {label_a}", f"B: {label_b}"
    results = {
        label_a: LayerDiscrepancy(ma)(clean, corrupted, return_means=True),
        label_b: LayerDiscrepancy(mb)(clean, corrupted, return_means=True),
    }
    layers = results[label_a].layers
    trend = paper_trend(results[label_a], results[label_b])
    area = np.abs(clean - corrupted).max(-1).reshape(len(clean), -1).mean(-1)
    idx = int(np.argsort(area)[len(area) // 2])
    with io_utils.atomic_path(
        out_dir, overwrite=overwrite, is_dir=True, what="output folder"
    ) as tmp:
        plotting.plot_channel_means(
            {
                k: (
                    [r.means_clean[n][idx] for n in layers],
                    [r.means_corrupted[n][idx] for n in layers],
                )
                for k, r in results.items()
            },
            layers=layers,
            title=f"Channel means, clean vs stained (probe {idx})",
            path=tmp / "channel_means.png",
            close=True,
        )
        plotting.plot_similarity_distribution(
            {k: r.cosine for k, r in results.items()},
            layers=layers,
            title=f"cos(mu_i(clean), mu_i(stained)), {len(clean)} pairs",
            path=tmp / "cosine_per_layer.png",
            close=True,
        )
        io_utils.write_json(
            tmp / "discrepancy.json",
            {
                "runs": {label_a: str(pa), label_b: str(pb)},
                "probes": dict(source, n=len(clean), seed=int(seed), corruption=repr(corruption)),
                "trend": trend,
                "results": {k: r.to_dict() for k, r in results.items()},
            },
        )
        rows = [row for k, r in results.items() for row in r.to_rows(model=k)]
        with open(tmp / "discrepancy.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return {
        "out_dir": out_dir,
        "labels": [label_a, label_b],
        "layers": layers,
        "shapes": results[label_a].shapes,
        "medians": {k: r.median() for k, r in results.items()},
        "trend": trend,
        "probes": source,
    }
