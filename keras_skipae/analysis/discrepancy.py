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
:class:`keras_skipae.training.callbacks.DiscrepancyMonitor`). It returns a
:class:`DiscrepancyResult` (ordered dicts of NumPy arrays, one entry per tap)
that turns into JSON (:meth:`DiscrepancyResult.to_dict`) or CSV rows
(:meth:`DiscrepancyResult.to_rows`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_skipae import data
from keras_skipae.models.taps import base_model, select_layers, tap_model
from keras_skipae.ops.stats import channel_mean, cosine_similarity


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
        corruption = data.get(corruption)
    corrupted, target, _ = corruption(images, tf.constant([int(seed), 0], tf.int64))
    return np.asarray(target, dtype="float32"), np.asarray(corrupted, dtype="float32")


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
