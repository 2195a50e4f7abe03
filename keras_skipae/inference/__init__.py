"""Prediction on new images: :class:`Detector` (``ks.Detector``).

``Detector.load(path)`` takes a run folder, an exported SavedModel, a ``.keras``
file or an edge export (``.tflite``, ``.onnx``, OpenVINO ``.xml``; scored through
:mod:`keras_skipae.inference.scorers`); ``Detector.predict(x)`` scores files, folders, arrays or a ``tf.data`` dataset
one batch at a time (:mod:`keras_skipae.inference.detector`). The command line's
``keras-skipae predict`` writes its results to a folder (``keras_skipae.apps.predict``).
"""

from keras_skipae.inference.detector import (
    ON_ERROR,
    Detector,
    Prediction,
    Predictions,
    list_image_files,
    resize_map,
)

__all__ = ["ON_ERROR", "Detector", "Prediction", "Predictions", "list_image_files", "resize_map"]
