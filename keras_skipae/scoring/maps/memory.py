"""A position-free memory of good-image features: the ``"memory"`` map (PatchCore's idea).

:meth:`FeatureMemory.fit` gathers tap features of good training images, one vector per
location of the feature map, and keeps a greedy k-center coreset of them (the bank).
:func:`memory_map` scores a test image by the L2 distance of each of its feature
vectors to the nearest bank vector, wherever in the good images that vector came from,
upsampled (bilinear) to the image size. On a model built with a pretrained encoder
(``encoder="mobilenet_v2"``) this is PatchCore on that encoder's features.

The features of a location: the selected taps (default: the two middle encoder
levels), each averaged over its 3x3 neighbourhood, resized (bilinear) to the finest
selected tap's resolution and concatenated along the channels.
"""

from __future__ import annotations

import base64
import hashlib
import math
import numbers
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from keras_skipae.models.taps import base_model, select_layers
from keras_skipae.scoring.maps.features import _map_taps

#: Default bank size: a fraction in (0, 1) of all good feature vectors (PatchCore's 1 %).
DEFAULT_BANK = 0.01

#: Default layers: the two middle encoder taps (see :func:`memory_layers`).
DEFAULT_MEMORY_LAYERS = "mid"

#: Side of the local average applied to every tap before the features are compared.
POOL = 3

# Bank vectors per distance block: memory stays at (test locations x _CHUNK) floats.
_CHUNK = 1024

_FORMAT = "keras_skipae.FeatureMemory"


def memory_layers(model: keras.Model, layers=DEFAULT_MEMORY_LAYERS) -> list[str]:
    """The taps the memory reads.

    Args:
        model: a keras_skipae model.
        layers: ``"mid"``: of the ``n`` encoder taps (fine to coarse), levels
            ``max(n // 2 - 1, 0)`` and the next one (``enc1_out`` and ``enc2_out`` for
            depths 4 and 5: strides 4 and 8 on the AESc, near PatchCore's layer2 and
            layer3); otherwise any selection :func:`select_layers` accepts.

    Returns:
        Tap names in data-flow order.
    """
    if isinstance(layers, str) and layers == "mid":
        enc = select_layers(model, "encoder")
        first = max(len(enc) // 2 - 1, 0)
        return enc[first : first + 2]
    return select_layers(model, layers)


def _finest(model, names) -> str:
    """The selected tap with the most locations (the first one when sizes are unknown)."""

    def area(name):
        shape = model.get_layer(name).output.shape
        h, w = shape[1], shape[2]
        return -1 if h is None or w is None else int(h) * int(w)

    return max(names, key=lambda n: (area(n), -names.index(n)))


def memory_features(model: keras.Model, images, layers) -> tf.Tensor:
    """The memory's feature vectors of ``images``: ``[B, h, w, D]`` float32 (TF ops).

    Each tap in ``layers`` is averaged over its 3x3 neighbourhood (the mean of the
    neighbours inside the map), resized (bilinear) to the finest tap's ``h, w`` and
    concatenated in data-flow order.

    Args:
        model: a keras_skipae model.
        images: ``[B, H, W, C]`` float in [0, 1].
        layers: tap names (or any selection :func:`memory_layers` accepts).
    """
    model = base_model(model)
    names = memory_layers(model, layers)
    acts = _map_taps(model, names)(tf.cast(images, tf.float32), training=False)
    target = acts[_finest(model, names)]
    size = tf.shape(target)[1:3]
    feats = []
    for name in names:
        a = tf.nn.avg_pool2d(tf.cast(acts[name], tf.float32), POOL, 1, "SAME")
        if acts[name] is not target:
            a = tf.image.resize(a, size, method="bilinear")
        feats.append(a)
    return tf.concat(feats, axis=-1)


def greedy_coreset(features, size: int, *, seed: int = 0) -> np.ndarray:
    """Indices of a greedy k-center coreset of ``features`` (PatchCore's subsampling).

    Starts from one seeded random row; then repeatedly adds the row farthest (L2) from
    the rows chosen so far. Distances in float64.

    Args:
        features: ``[N, D]``.
        size: rows to choose, ``1 <= size <= N``.
        seed: seeds the first row.

    Returns:
        ``[size]`` int64 indices, in the order they were chosen.
    """
    x = np.asarray(features, dtype="float64")
    n = len(x)
    if not 1 <= int(size) <= n:
        raise ValueError(f"`size` must be in [1, {n}]. Received: size={size!r}")
    sq = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(int(size), dtype="int64")
    chosen[0] = np.random.default_rng(seed).integers(n)
    nearest = np.full(n, np.inf)
    for k in range(int(size)):
        if k:
            chosen[k] = int(np.argmax(nearest))
        c = x[chosen[k]]
        nearest = np.minimum(nearest, np.maximum(sq - 2.0 * (x @ c) + sq[chosen[k]], 0.0))
    return chosen


def _bank_count(bank, n: int) -> int:
    ok = isinstance(bank, numbers.Real) and not isinstance(bank, bool) and math.isfinite(bank)
    if ok and 0 < bank < 1:
        return max(1, math.ceil(float(bank) * n))
    if ok and bank >= 1 and float(bank) == int(bank):
        return min(int(bank), n)
    raise ValueError(
        "`bank` must be a fraction of the good feature vectors in (0, 1) or a count >= 1. "
        f"Received: bank={bank!r}"
    )


class FeatureMemory(dict):
    """A bank of good-image feature vectors for the ``"memory"`` map.

    A plain ``dict`` (JSON-able as it is, so it travels in a ``ScoringConfig``'s
    ``map_options`` into ``metrics.json`` and an export's settings): ``layers`` (the tap
    names), ``pool``, ``dim``, ``size`` (vectors), ``vectors`` (the ``[size, dim]``
    float32 bank, little-endian, base64), ``sha256`` (of those bytes), and how it was
    fitted (``bank``, ``seed``, ``n_images``, ``n_features``).

    Example:
        >>> memory = FeatureMemory.fit(model, good_train_images)
        >>> cfg = ScoringConfig(map="memory", map_options={"bank": memory})
    """

    @classmethod
    def fit(
        cls,
        model: keras.Model,
        images,
        *,
        layers=DEFAULT_MEMORY_LAYERS,
        bank=DEFAULT_BANK,
        seed: int = 0,
        batch_size: int = 16,
    ) -> FeatureMemory:
        """Gathers the features of good images and keeps a greedy k-center coreset.

        Args:
            model: a keras_skipae model.
            images: ``[N, H, W, C]`` good training images in [0, 1] (N >= 1), of the
                model's input size. Not the images a threshold is set on: their own
                features would be in the bank.
            layers: the taps (:func:`memory_layers`; default ``"mid"``).
            bank: the bank's size: a fraction in (0, 1) of the ``N * h * w`` feature
                vectors, or a count >= 1 (at most all of them).
            seed: seeds the coreset's first vector.
            batch_size: images per forward pass.

        Returns:
            A :class:`FeatureMemory`.
        """
        images = np.asarray(images, dtype="float32")
        if images.ndim != 4 or len(images) < 1:
            raise ValueError(
                "`images` must be at least 1 good image [N, H, W, C]. "
                f"Received: images with shape {images.shape}"
            )
        model = base_model(model)
        want = tuple(model.input_shape[1:])
        if any(w is not None and w != g for w, g in zip(want, images.shape[1:])):
            raise ValueError(
                f"`images` must have the model's input shape {want}. "
                f"Received: images with shape {images.shape}"
            )
        names = memory_layers(model, layers)
        step = int(batch_size)
        feats = []
        for start in range(0, len(images), step):
            f = memory_features(model, tf.constant(images[start : start + step]), names)
            feats.append(np.asarray(f).reshape(-1, int(f.shape[-1])))
        feats = np.concatenate(feats, axis=0)
        count = _bank_count(bank, len(feats))
        vectors = feats[greedy_coreset(feats, count, seed=int(seed))]
        return cls.from_vectors(
            vectors,
            layers=names,
            bank=bank,
            seed=int(seed),
            n_images=len(images),
            n_features=len(feats),
        )

    @classmethod
    def from_vectors(cls, vectors, *, layers, **fitted) -> FeatureMemory:
        """A memory holding ``vectors`` ``[M, D]`` (as fitted on ``layers``)."""
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or not vectors.size:
            raise ValueError(
                f"`vectors` must be a non-empty [M, D] array. Received: shape {vectors.shape}"
            )
        raw = vectors.tobytes()
        return cls(
            format=_FORMAT,
            layers=list(layers),
            pool=POOL,
            dim=int(vectors.shape[1]),
            size=int(vectors.shape[0]),
            vectors=base64.b64encode(raw).decode("ascii"),
            sha256=hashlib.sha256(raw).hexdigest(),
            **fitted,
        )

    @classmethod
    def from_dict(cls, value) -> FeatureMemory:
        """A checked :class:`FeatureMemory` from its dict (e.g. read back from JSON)."""
        if isinstance(value, FeatureMemory):
            return value
        try:
            memory = cls(value) if isinstance(value, Mapping) else None
            if memory is not None:
                memory.vectors()
        except (KeyError, TypeError, ValueError):
            memory = None
        if memory is None or memory.get("format") != _FORMAT:
            raise ValueError(
                "`bank` must be a FeatureMemory (FeatureMemory.fit(model, good_images)) or "
                f"its dict. Received: bank={_short(value)}"
            )
        return memory

    def vectors(self) -> np.ndarray:
        """The bank: ``[size, dim]`` float32."""
        raw = base64.b64decode(self["vectors"], validate=True)
        size, dim = int(self["size"]), int(self["dim"])
        if len(raw) != 4 * size * dim or hashlib.sha256(raw).hexdigest() != self["sha256"]:
            raise ValueError("the bank's vectors do not match its size, dim and sha256")
        return np.frombuffer(raw, dtype="<f4").reshape(size, dim).astype("float32")

    def __repr__(self) -> str:
        return (
            f"FeatureMemory(size={self.get('size')}, dim={self.get('dim')}, "
            f"layers={self.get('layers')}, sha256={str(self.get('sha256'))[:12]})"
        )


def _short(value) -> str:
    text = repr(value) if not isinstance(value, Mapping) else f"dict with keys {sorted(value)}"
    return text if len(text) < 120 else text[:117] + "..."


def memory_distances(model: keras.Model, images, bank) -> tf.Tensor:
    """Per feature location, the L2 distance to the nearest bank vector: ``[B, h, w]``.

    ``||q - b||^2 = ||q||^2 - 2 q.b + ||b||^2`` by matrix products, over blocks of
    bank vectors (the bank is a constant of the graph). TF ops only.
    """
    memory = FeatureMemory.from_dict(bank)
    vectors = memory.vectors()
    feats = memory_features(model, images, memory["layers"])
    if feats.shape[-1] != vectors.shape[1]:
        raise ValueError(
            f"The bank holds {vectors.shape[1]}-dim features, the model's taps "
            f"{memory['layers']} give {feats.shape[-1]}: fit the bank on this model. "
            f"Received: bank={memory!r}"
        )
    shape = tf.shape(feats)
    q = tf.reshape(feats, [-1, vectors.shape[1]])
    qq = tf.reduce_sum(q * q, axis=1)
    nearest = None
    for start in range(0, len(vectors), _CHUNK):
        v = vectors[start : start + _CHUNK]
        vv = np.sum(v.astype("float64") ** 2, axis=1).astype("float32")
        d = qq[:, None] - 2.0 * tf.matmul(q, tf.constant(v), transpose_b=True) + vv[None]
        block = tf.reduce_min(d, axis=1)
        nearest = block if nearest is None else tf.minimum(nearest, block)
    return tf.reshape(tf.sqrt(tf.maximum(nearest, 0.0)), shape[:3])


def memory_map(
    model: keras.Model, images, reconstruction=None, *, bank, layers=None, **ignored
) -> tf.Tensor:
    """The ``"memory"`` anomaly map: :func:`memory_distances` upsampled to the image.

    Args:
        model: the model the bank was fitted with.
        images: ``[B, H, W, C]`` float in [0, 1].
        reconstruction: ignored (the map's signature in ``scoring``).
        bank: a :class:`FeatureMemory` (or its dict).
        layers: if given, must select the bank's layers.
        **ignored: other scoring options.

    Returns:
        ``[B, H, W]`` float32, >= 0.
    """
    memory = FeatureMemory.from_dict(bank)
    model = base_model(model)
    names = select_layers(model, memory["layers"])
    if layers is not None and memory_layers(model, layers) != names:
        raise ValueError(
            f"The bank was fitted on the taps {memory['layers']}, not on "
            f"{memory_layers(model, layers)}. Received: layers={layers!r}"
        )
    images = tf.cast(images, tf.float32)
    dist = memory_distances(model, images, memory)
    return tf.image.resize(dist[..., None], tf.shape(images)[1:3], method="bilinear")[..., 0]
