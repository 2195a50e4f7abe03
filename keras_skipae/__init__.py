"""keras_skipae: reconstruction-based visual anomaly detection in Keras 3.

AE, AESc (Collin & De Vleeschouwer, ICPR 2020) and U-Net builders with
configurable skips, a tf.data stain-corruption pipeline, training helpers,
anomaly maps, metrics, layer-discrepancy analysis and SavedModel export.

Example:
    >>> import keras_skipae as ks
    >>> model = ks.build_aesc(input_shape=(64, 64, 1), depth=4)

Importing the package registers its custom Keras objects (the weightless layers
of :mod:`keras_skipae.layers`, the losses and Keras metrics, ``DiscrepancyLossModel``),
so ``keras.models.load_model(path, safe_mode=True)`` works right after
``import keras_skipae``; :func:`load_model` does the same in one call. Everything
else (scoring, analysis, training, evaluation, export, data, inference) loads on first
use. The public names (``__all__``), the package's layout and the direction of its
imports: ``docs/ARCHITECTURE.md``.

CPU kernels: unless ``TF_ENABLE_ONEDNN_OPTS`` is set, importing the package before
TensorFlow turns on TensorFlow's oneDNN CPU kernels, which TensorFlow itself enables
only on CPUs with AVX-512 VNNI/BF16 or AMX; on AVX2 CPUs they train about 1.9x faster
(``docs/decisions.md#onednn``). Set ``TF_ENABLE_ONEDNN_OPTS=0`` to keep TensorFlow's choice.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before TensorFlow loads

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself). The documented list
# is the table "Public API" of docs/ARCHITECTURE.md (tests/test_public_api.py compares).
# The programs (keras_skipae.apps: CLI, demo, workflows, baselines) are not part of it.
_LAZY = {
    # models
    "build_ae": ("keras_skipae.models", "build_ae"),
    "build_aesc": ("keras_skipae.models", "build_aesc"),
    "build_unet": ("keras_skipae.models", "build_unet"),
    "get_model": ("keras_skipae.models", "get_model"),
    "list_models": ("keras_skipae.models", "list_models"),
    "tap_names": ("keras_skipae.models", "tap_names"),
    "tap_model": ("keras_skipae.models", "tap_model"),
    "replace_head": ("keras_skipae.models", "replace_head"),
    "set_trainable": ("keras_skipae.models", "set_trainable"),
    # scoring, training, evaluation, export, run folders
    "ScoringConfig": ("keras_skipae.scoring", "ScoringConfig"),
    "train": ("keras_skipae.training", "train"),
    "evaluate": ("keras_skipae.evaluation", "evaluate"),
    "EvaluationResult": ("keras_skipae.evaluation", "EvaluationResult"),
    "export_saved_model": ("keras_skipae.export", "export_saved_model"),
    "export_keras": ("keras_skipae.export", "export_keras"),
    "load_model": ("keras_skipae._registration", "load_model"),
    "RunFolder": ("keras_skipae.runs", "RunFolder"),
    "Detector": ("keras_skipae.inference", "Detector"),
    # submodules
    "models": ("keras_skipae.models", None),
    "data": ("keras_skipae.data", None),
    "losses": ("keras_skipae.losses", None),
    "keras_metrics": ("keras_skipae.keras_metrics", None),
    "layers": ("keras_skipae.layers", None),
    "scoring": ("keras_skipae.scoring", None),
    "analysis": ("keras_skipae.analysis", None),
    "training": ("keras_skipae.training", None),
    "evaluation": ("keras_skipae.evaluation", None),
    "export": ("keras_skipae.export", None),
    "runs": ("keras_skipae.runs", None),
    "inference": ("keras_skipae.inference", None),
    "plotting": ("keras_skipae.plotting", None),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'keras_skipae' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return __all__


# Register the custom Keras objects now (imports Keras/TensorFlow): a `.keras` file
# saved by keras_skipae must load with plain keras.models.load_model after import.
from keras_skipae import _registration  # noqa: E402, F401
