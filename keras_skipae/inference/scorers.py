"""The scorer interface: one class per backend that the :class:`~keras_skipae.inference.Detector`
scores with.

Every scorer has ``score(images)``: float32 images ``[B, H, W, C]`` in [0, 1] at the
scorer's ``image_size`` -> a dict of NumPy arrays ``reconstruction`` ``[B, H, W, C]``,
``anomaly_map`` ``[B, H, W]`` and ``score`` ``[B]``; and ``kind``, the name the Detector
reports. It also says what it takes: ``image_size`` ``(H, W)``, ``channels``, and ``tiling``
``(tile_size, tile_overlap)`` when it scores full-resolution frames tile by tile (then
``score`` takes frames of any size >= the tile, and :meth:`Scorer.score_frames` scores a
list of frames of different sizes). The Detector checks and resizes the input first
(finite values in [0, 1], the channel count) and holds the threshold; a scorer only runs
its model.

* :class:`KerasScorer`: a Keras model, :func:`~keras_skipae.scoring.make_scorer` (or
  :func:`~keras_skipae.scoring.make_tiled_scorer`), built by :meth:`KerasScorer.build`;
* :class:`SavedModelScorer`: a SavedModel's ``serving_default`` (or the faster of it and
  ``serving_xla``; ``serving_tiled`` for a tiled export), opened by :meth:`SavedModelScorer.open`;
* :class:`EdgeScorer`: a LiteRT ``.tflite``, ONNX ``.onnx`` or OpenVINO ``.xml`` file in its
  runtime (:mod:`keras_skipae.export.runtimes`), which is imported only then.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae.export import runtimes
from keras_skipae.export.saved_model import load_saved_model
from keras_skipae.export.settings import XLA_SIGNATURE
from keras_skipae.ops.device import MeasuredJit
from keras_skipae.scoring import DEFAULT_TILE_BATCH, float32_model, make_scorer, make_tiled_scorer

__all__ = [
    "OUTPUTS",
    "EdgeScorer",
    "KerasScorer",
    "SavedModelScorer",
    "Scorer",
    "resolve_size",
    "served_scorer",
]

OUTPUTS = ("reconstruction", "anomaly_map", "score")


class Scorer:
    """The interface: ``score(images float32 [B, H, W, C]) -> dict of NumPy arrays``.

    Attributes:
        kind: the backend's name.
        image_size: ``(H, W)`` the scorer takes (with tiling: the tile's size).
        channels: the channel count it takes.
        tiling: ``(tile_size, tile_overlap)`` for a scorer of full-resolution frames, or None.
        model: the Keras model that scores (Keras scorers only), or None.
    """

    kind = "scorer"
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    tiling: tuple[int, int] | None = None
    model = None

    def score(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def score_frames(self, frames: list[np.ndarray]) -> dict[str, list]:
        """Scores frames of different sizes, one :meth:`score` call per run of equal sizes.

        Returns per-frame lists ``reconstruction`` and ``anomaly_map`` (each at its frame's
        size) and the ``score`` array, in the order of ``frames``.
        """
        out = {"reconstruction": [], "anomaly_map": [], "score": []}
        start = 0
        while start < len(frames):
            end = start + 1
            while end < len(frames) and frames[end].shape == frames[start].shape:
                end += 1
            result = self.score(np.stack(frames[start:end]))
            for key in out:
                out[key].extend(result[key])
            start = end
        out["score"] = np.asarray(out["score"], np.float32)
        return out


class KerasScorer(Scorer):
    """A Keras model's scoring function (:func:`~keras_skipae.scoring.make_scorer`, or
    :func:`~keras_skipae.scoring.make_tiled_scorer` with tiling)."""

    kind = "keras"

    def __init__(self, fn, *, model=None, image_size=None, channels=None, tiling=None):
        self.fn = fn
        self.model = model
        self.image_size = image_size
        self.channels = channels
        self.tiling = tiling

    @classmethod
    def build(
        cls,
        model,
        scoring,
        *,
        image_size=None,
        jit_compile="auto",
        tiling=None,
        tile_batch_size: int = DEFAULT_TILE_BATCH,
        source=None,
    ) -> KerasScorer:
        """The scorer of ``model`` (its float32 twin, as ``evaluate``'s) with ``scoring``.

        Args:
            image_size: for a model that takes any size, the size to score at; else it
                must be the model's (None: the model's).
            tiling: ``(tile_size, tile_overlap)`` (checked) to score full-resolution frames
                tile by tile; the model must take ``tile_size x tile_size`` images.
        """
        model = float32_model(model)  # scores in float32
        h, w, channels = tuple(model.input_shape[1:])
        size = resolve_size(image_size, (h, w), source)
        if tiling is None:
            fn = make_scorer(model, scoring, image_shape=(*size, channels), jit_compile=jit_compile)
        else:
            if tuple(size) != (tiling[0],) * 2:
                raise ValueError(
                    f"A model that scores {tiling[0]}x{tiling[0]} tiles must take images of "
                    f"that size. Received: a model taking {size[0]}x{size[1]} images, "
                    f"tile_size={tiling[0]}"
                )
            fn = make_tiled_scorer(
                model,
                scoring,
                tile_size=tiling[0],
                tile_overlap=tiling[1],
                batch_size=tile_batch_size,
                channels=int(channels),
            )
        return cls(fn, model=model, image_size=size, channels=int(channels), tiling=tiling)

    def score(self, images):
        out = self.fn(tf.constant(images))
        return {k: out[k].numpy() for k in OUTPUTS}


class SavedModelScorer(Scorer):
    """A SavedModel signature (called with ``images=``)."""

    kind = "saved_model"

    def __init__(self, signature, *, image_size=None, channels=None, tiling=None, loaded=None):
        self.signature = signature
        self.image_size = image_size
        self.channels = channels
        self.tiling = tiling
        self.loaded = loaded  # keeps the loaded object (and its variables) alive

    @classmethod
    def open(cls, path, *, image_size, channels: int, tiling=None) -> SavedModelScorer:
        """Loads the SavedModel at ``path`` (:func:`~keras_skipae.export.load_saved_model`)
        and scores with :func:`served_scorer`'s signature."""
        size = resolve_size(image_size, (None, None), path)
        loaded = load_saved_model(path)
        signature = served_scorer(loaded, tiling)
        return cls(signature, image_size=size, channels=channels, tiling=tiling, loaded=loaded)

    def score(self, images):
        out = self.signature(images=tf.constant(images))
        return {k: out[k].numpy() for k in OUTPUTS}


class EdgeScorer(Scorer):
    """An edge export file in its runtime (``format``: litert, onnx, openvino).

    Opening it imports the runtime; a missing one raises an ``ImportError`` of one line
    naming the extra (``pip install "keras-skipae[litert]"``, ...).
    """

    def __init__(self, format: str, path, *, threads: int | None = None):
        self.kind = format
        self.runner = runtimes.open_runner(format, path, threads=threads)
        h, w, channels = self.runner.input_shape
        self.image_size = (int(h), int(w))
        self.channels = int(channels)

    @property
    def input_shape(self) -> tuple:
        """The file's ``(H, W, C)``."""
        return self.runner.input_shape

    def score(self, images):
        out = self.runner.run(np.asarray(images, np.float32))
        return {k: out[k] for k in OUTPUTS}


def served_scorer(loaded, tiling):
    """The SavedModel signature the Detector scores with: ``serving_tiled`` for a tiled
    export; else ``serving_default``, or, where the export also holds ``serving_xla``
    (``jit_compile="auto"`` on a CPU), a :class:`~keras_skipae.ops.device.MeasuredJit`
    that times the two per input shape on this machine and keeps the faster."""
    sigs = loaded.signatures
    if tiling:
        return sigs["serving_tiled"]
    if XLA_SIGNATURE[0] not in sigs:
        return sigs["serving_default"]
    plain, xla = sigs["serving_default"], sigs[XLA_SIGNATURE[0]]
    return MeasuredJit(lambda images: plain(images=images), lambda images: xla(images=images))


def resolve_size(image_size, model_hw, source=None) -> tuple[int, int]:
    """The model's input size, or ``image_size`` where the model takes any size.

    Raises:
        ValueError: a malformed ``image_size``, one the model does not take, or none for a
            model that takes any size.
    """
    size = io_utils.parse_image_size(image_size)
    if size is not None:
        if any(m is not None and m != s for m, s in zip(model_hw, size)):
            raise ValueError(
                f"The model takes {model_hw[0]}x{model_hw[1]} images. Received: "
                f"image_size={image_size!r}"
            )
        return size
    if None in model_hw:
        raise ValueError(
            f"The model {source or ''} takes images of any size: pass image_size=(height, "
            "width), the size it was trained at."
        )
    return (int(model_hw[0]), int(model_hw[1]))
