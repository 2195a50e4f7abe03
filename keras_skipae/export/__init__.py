"""Export: a TF SavedModel with scoring signatures, a ``.keras`` file, or an edge file.

``ks.export(model_or_run, path, format=...)`` (:func:`keras_skipae.export.api.export`) is the
one entry point: ``"saved_model"``, ``"keras"``, and the edge formats ``"litert"``,
``"onnx"`` and ``"openvino"`` (:mod:`keras_skipae.export.edge`). This module is callable:
``ks.export(...)`` calls :func:`export`, and ``ks.export.export_saved_model`` etc. stay
reachable. See :mod:`keras_skipae.export.saved_model` for the SavedModel's signatures.
"""

import sys
import types

from keras_skipae.export.api import FORMATS, calibration_images, export
from keras_skipae.export.edge import (
    EDGE_FORMATS,
    ONNX_OPSET,
    QUANTIZATIONS,
    export_edge,
    read_edge_settings,
)
from keras_skipae.export.keras import export_keras
from keras_skipae.export.saved_model import export_saved_model, load_saved_model
from keras_skipae.export.settings import (
    FORMAT,
    FORMAT_VERSION,
    SETTINGS_FILE,
    SIGNATURES,
    XLA_SIGNATURE,
    ExportSettings,
    read_settings,
)

__all__ = [
    "EDGE_FORMATS",
    "ExportSettings",
    "FORMAT",
    "FORMATS",
    "FORMAT_VERSION",
    "ONNX_OPSET",
    "QUANTIZATIONS",
    "SETTINGS_FILE",
    "SIGNATURES",
    "XLA_SIGNATURE",
    "calibration_images",
    "export",
    "export_edge",
    "export_keras",
    "export_saved_model",
    "load_saved_model",
    "read_edge_settings",
    "read_settings",
]


class _CallableModule(types.ModuleType):
    """The package's module type: calling it calls :func:`export`, because ``ks.export`` is
    both this package (``ks.export.export_saved_model``) and the entry point
    (``ks.export(model, path, format=...)``); importing the package makes ``ks.export`` the
    module, so the module itself must be callable."""

    def __call__(self, model_or_run, path, **kwargs):
        return export(model_or_run, path, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
