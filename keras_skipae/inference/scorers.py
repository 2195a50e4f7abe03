"""The scorer interface: one class per backend that the :class:`~keras_skipae.inference.Detector`
scores with.

Every scorer has ``score(images)``: float32 images ``[B, H, W, C]`` in [0, 1] at the
scorer's ``image_size`` -> a dict of NumPy arrays ``reconstruction`` ``[B, H, W, C]``,
``anomaly_map`` ``[B, H, W]`` and ``score`` ``[B]``; and ``kind``, the name the Detector
reports. The Detector checks and resizes the input first (finite values in [0, 1], the
channel count) and holds the threshold; a scorer only runs its model.

* :class:`KerasScorer`: a Keras model, :func:`~keras_skipae.scoring.make_scorer`
  (``compute`` in a ``tf.function``);
* :class:`SavedModelScorer`: a SavedModel's ``serving_default`` (or the faster of it and
  ``serving_xla``);
* :class:`EdgeScorer`: a LiteRT ``.tflite``, ONNX ``.onnx`` or OpenVINO ``.xml`` file in its
  runtime (:mod:`keras_skipae.export.runtimes`), which is imported only then.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_skipae.export import runtimes

OUTPUTS = ("reconstruction", "anomaly_map", "score")


class Scorer:
    """The interface: ``score(images float32 [B, H, W, C]) -> dict of NumPy arrays``."""

    kind = "scorer"

    def score(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class KerasScorer(Scorer):
    """A Keras model's scoring function (:func:`~keras_skipae.scoring.make_scorer`)."""

    kind = "keras"

    def __init__(self, fn):
        self.fn = fn

    def score(self, images):
        out = self.fn(tf.constant(images))
        return {k: out[k].numpy() for k in OUTPUTS}


class SavedModelScorer(Scorer):
    """A SavedModel signature (called with ``images=``)."""

    kind = "saved_model"

    def __init__(self, signature):
        self.signature = signature

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

    @property
    def input_shape(self) -> tuple:
        """The file's ``(H, W, C)``."""
        return self.runner.input_shape

    def score(self, images):
        out = self.runner.run(np.asarray(images, np.float32))
        return {k: out[k] for k in OUTPUTS}
