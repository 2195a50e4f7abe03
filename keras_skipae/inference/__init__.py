"""Prediction on new images: :class:`Detector` (``ks.Detector``).

``Detector.load(path)`` takes a run folder, an exported SavedModel, a ``.keras``
file or an edge export (``.tflite``, ``.onnx``, OpenVINO ``.xml``);
``Detector.predict(x)`` scores files, folders, arrays or a ``tf.data`` dataset one batch
at a time. The modules: :mod:`~keras_skipae.inference.detector` (the facade,
:class:`Prediction`, :class:`Predictions`), :mod:`~keras_skipae.inference.loader` (opening
run folders and exports), :mod:`~keras_skipae.inference.scorers` (one scorer per backend:
Keras, SavedModel, LiteRT / ONNX / OpenVINO) and :mod:`~keras_skipae.inference.inputs`
(reading, checking and batching images). The command line's ``keras-skipae predict``
writes its results to a folder (``keras_skipae.apps.predict``).
"""

from keras_skipae.inference.detector import (
    ON_ERROR,
    Detector,
    Prediction,
    Predictions,
    list_image_files,
    resize_map,
)
from keras_skipae.inference.scorers import EdgeScorer, KerasScorer, SavedModelScorer, Scorer

__all__ = [
    "ON_ERROR",
    "Detector",
    "EdgeScorer",
    "KerasScorer",
    "Prediction",
    "Predictions",
    "SavedModelScorer",
    "Scorer",
    "list_image_files",
    "resize_map",
]
