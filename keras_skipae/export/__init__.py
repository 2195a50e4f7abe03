"""Export: a TF SavedModel with scoring signatures, or a ``.keras`` file.

See :mod:`keras_skipae.export.saved_model` for the signatures and their outputs.
"""

from keras_skipae.export.keras import export_keras
from keras_skipae.export.saved_model import (
    FORMAT,
    FORMAT_VERSION,
    SETTINGS_FILE,
    SIGNATURES,
    XLA_SIGNATURE,
    export_saved_model,
    read_settings,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SETTINGS_FILE",
    "SIGNATURES",
    "XLA_SIGNATURE",
    "export_keras",
    "export_saved_model",
    "read_settings",
]
