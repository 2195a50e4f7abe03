"""The settings document of an export: :class:`ExportSettings`, and where it is stored.

Every export carries one JSON document: a SavedModel in ``assets/keras_skipae.json``
(:data:`SETTINGS_FILE`), an edge file in ``<file>.json`` beside it (:func:`settings_path`).
It holds the scoring settings, the threshold and decision rule, the input size, channels
and colour mode, the model's name and training precision, the versions, the signatures
with their outputs, the tiling (SavedModels made with ``tile_size=``) and, for edge files,
the runtime and the verification's result.

:class:`ExportSettings` is the one typed view of it: :meth:`ExportSettings.from_dict` reads
a document of any version (and migrates an older one in one place), :meth:`~ExportSettings.to_dict`
writes the current one. Every reader (the Detector's loader, the edge export, the
verification) goes through it; :func:`read_settings` and :func:`read_edge_settings` return
the raw documents as stored (no TensorFlow needed).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import keras
import tensorflow as tf

from keras_skipae import __version__, io_utils
from keras_skipae.scoring import ScoringConfig, check_threshold

#: Name of the settings JSON in the SavedModel's ``assets/`` folder.
SETTINGS_FILE = "keras_skipae.json"

#: ``format`` and ``format_version`` written to the settings JSON.
FORMAT = "keras_skipae.saved_model"
FORMAT_VERSION = 1

#: The settings JSON's entries that are objects (:func:`read_settings` checks them).
SETTINGS_SECTIONS = ("scoring", "input", "model", "tiling")

#: signature name -> (input dtype, outputs); ``is_anomalous`` only with a threshold.
SIGNATURES = {
    "serving_default": ("float32", ("reconstruction", "anomaly_map", "score", "is_anomalous")),
    "serving_uint8": ("uint8", ("reconstruction", "anomaly_map", "score", "is_anomalous")),
    "reconstruct": ("float32", ("reconstruction",)),
    "reconstruct_uint8": ("uint8", ("reconstruction",)),
}

#: The signature an export made with ``tile_size=`` adds (input dtype, outputs).
TILED_SIGNATURE = ("serving_tiled", "float32", SIGNATURES["serving_default"][1])

#: The signature an export with ``jit_compile="auto"`` adds on a CPU: ``serving_default``
#: compiled with XLA (name, input dtype, outputs). ``Detector`` times both per input shape
#: and keeps the faster (``docs/decisions.md#xla-auto``).
XLA_SIGNATURE = ("serving_xla", "float32", SIGNATURES["serving_default"][1])

#: Edge format -> the file suffix it writes.
EDGE_FORMATS = {"litert": ".tflite", "onnx": ".onnx", "openvino": ".xml"}

#: The name of the settings document beside an edge export file: ``<file>.json``.
SETTINGS_SUFFIX = ".json"

#: ``format`` in an edge export's settings document: ``keras_skipae.<format>``.
FORMAT_PREFIX = "keras_skipae."

#: What each output holds (the signatures' documentation in the settings).
OUTPUTS_DOC = {
    "reconstruction": "float32 [B, H, W, C] in [0, 1]: the model's inference-mode reconstruction",
    "anomaly_map": "float32 [B, H, W]: the anomaly map after smoothing",
    "score": "float32 [B]: the image score reduced from anomaly_map",
    "is_anomalous": "bool [B]: score >= threshold (only when the export has a threshold)",
}

LAYOUT = "NHWC: [batch, height, width, channels]"
DECISION = "is_anomalous = score >= threshold (compared in float32)"
SAVED_MODEL_DTYPES = {
    "float32": "values in [0, 1] (serving_default, reconstruct)",
    "uint8": "values in [0, 255], divided by 255 in the graph (serving_uint8, reconstruct_uint8)",
}
TILING_BLENDING = "Hann window with a floor; the map is smoothed and scored once, blended"

# The document's entries, in the order they are written; the others are kept as read.
_KNOWN = (
    "format",
    "format_version",
    "created",
    "versions",
    "model",
    "input",
    "scoring",
    "threshold",
    "decision",
    "signatures",
    "jit_compile",
    "metadata",
    "tiling",
    "runtime",
    "verification",
)


def signature_doc(dtype: str, outputs, channels: int, threshold, *, shape=None) -> dict:
    """One signature's entry in ``signatures``: its input and the outputs it returns."""
    outs = [o for o in outputs if o != "is_anomalous" or threshold is not None]
    shape = shape or f"[B, H, W, {channels}]"
    return {"input": {"images": f"{dtype} {shape}"}, "outputs": {o: OUTPUTS_DOC[o] for o in outs}}


def saved_model_signatures(channels: int, threshold) -> dict:
    """The ``signatures`` entry of a SavedModel's settings (:data:`SIGNATURES`)."""
    return {
        name: signature_doc(dtype, outputs, channels, threshold)
        for name, (dtype, outputs) in SIGNATURES.items()
    }


def versions() -> dict:
    """The ``versions`` entry: the keras_skipae, Keras and TensorFlow versions writing it."""
    return {"keras_skipae": __version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def now() -> str:
    """The ``created`` time stamp: UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class ExportSettings:
    """The settings document of an export, typed.

    Attributes:
        scoring: the :class:`~keras_skipae.scoring.ScoringConfig` the export computes.
        channels: the input's channel count (1 or 3).
        image_size: ``(height, width)``, or None for a SavedModel that takes any
            multiple of :attr:`size_multiple`.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        threshold: the production threshold (``is_anomalous``), or None.
        size_multiple: the model's ``2**depth`` size multiple, or None.
        tile_size, tile_overlap, tile_batch_size, window_floor: the tiling of
            ``serving_tiled`` (``tile_size`` None: no tiling).
        jit_compile: True, False or ``"measured"`` (a SavedModel with ``serving_xla``).
        model_name, model_params, model_input_shape, trained_precision: the model's.
        signatures: the signatures and their outputs (documentation).
        input_dtypes: the input dtypes' conventions (documentation).
        metadata: what the exporter recorded (e.g. the training run).
        versions: the keras_skipae / Keras / TensorFlow versions that wrote it.
        created: when (ISO 8601, UTC).
        format: ``"keras_skipae.saved_model"`` or ``"keras_skipae.<edge format>"``.
        format_version: the document's version.
        runtime, verification: an edge export's converter details and check result.
        extra: entries this version does not know, kept as read.
    """

    scoring: ScoringConfig
    channels: int
    image_size: tuple[int, int] | None = None
    color_mode: str | None = None
    threshold: float | None = None
    size_multiple: int | None = None
    tile_size: int | None = None
    tile_overlap: int = 0
    tile_batch_size: int | None = None
    window_floor: float | None = None
    jit_compile: bool | str = False
    model_name: str | None = None
    model_params: int | None = None
    model_input_shape: tuple | None = None
    trained_precision: str | None = None
    signatures: dict = dataclasses.field(default_factory=dict)
    input_dtypes: dict = dataclasses.field(default_factory=lambda: dict(SAVED_MODEL_DTYPES))
    metadata: dict = dataclasses.field(default_factory=dict)
    versions: dict = dataclasses.field(default_factory=dict)
    created: str | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    runtime: dict | None = None
    verification: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def tiling(self) -> tuple[int, int] | None:
        """``(tile_size, tile_overlap)`` for an export with ``serving_tiled``, else None."""
        return None if self.tile_size is None else (self.tile_size, self.tile_overlap)

    @property
    def edge_format(self) -> str | None:
        """``"litert"``, ``"onnx"`` or ``"openvino"`` for an edge export, else None."""
        fmt = self.format.removeprefix(FORMAT_PREFIX)
        return fmt if fmt in EDGE_FORMATS else None

    @classmethod
    def from_dict(cls, document: dict) -> ExportSettings:
        """The settings of a document of any version; the one place that migrates.

        Migrations: a document without ``input.channels`` takes the model's input shape's
        last entry, one without ``color_mode`` the colour mode of its channels; a missing
        ``format_version`` is 1, a missing ``jit_compile`` False (no ``serving_xla``), a
        tiling without ``tile_overlap`` 0; the scoring settings migrate as
        :meth:`ScoringConfig.from_dict <keras_skipae.scoring.ScoringConfig.from_dict>`.
        """
        model = dict(document.get("model") or {})
        inp = dict(document.get("input") or {})
        tiling = dict(document.get("tiling") or {})
        shape = model.get("input_shape")
        channels = inp.get("channels") or (shape[-1] if shape else None)
        if channels is None:
            raise ValueError(
                "Expected export settings that give the input's channels. Received: a "
                f"document with input={document.get('input')!r}"
            )
        color_mode = inp.get("color_mode") or io_utils.color_mode_for(int(channels))
        size = inp.get("image_size")
        threshold = document.get("threshold")
        return cls(
            scoring=ScoringConfig.from_dict(document.get("scoring") or {}),
            channels=int(channels),
            image_size=None if not size else (int(size[0]), int(size[1])),
            color_mode=color_mode,
            threshold=check_threshold(threshold),
            size_multiple=inp.get("size_multiple"),
            tile_size=None if not tiling else int(tiling["tile_size"]),
            tile_overlap=int(tiling.get("tile_overlap") or 0),
            tile_batch_size=tiling.get("batch_size"),
            window_floor=tiling.get("window_floor"),
            jit_compile=document.get("jit_compile", False),
            model_name=model.get("name"),
            model_params=model.get("params"),
            model_input_shape=None if shape is None else tuple(shape),
            trained_precision=model.get("trained_precision"),
            signatures=dict(document.get("signatures") or {}),
            input_dtypes=dict(inp.get("dtypes") or SAVED_MODEL_DTYPES),
            metadata=dict(document.get("metadata") or {}),
            versions=dict(document.get("versions") or {}),
            created=document.get("created"),
            format=document.get("format") or FORMAT,
            format_version=int(document.get("format_version") or 1),
            runtime=document.get("runtime"),
            verification=document.get("verification"),
            extra={k: v for k, v in document.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict:
        """The document as written to disk (JSON-able), in the current format."""
        model = {
            "name": self.model_name,
            "params": self.model_params,
            "input_shape": None if self.model_input_shape is None else list(self.model_input_shape),
        }
        if self.trained_precision is not None:
            model["trained_precision"] = self.trained_precision
        document = {
            "format": self.format,
            "format_version": self.format_version,
            "created": self.created,
            "versions": dict(self.versions),
            "model": model,
            "input": {
                "layout": LAYOUT,
                "image_size": None if self.image_size is None else list(self.image_size),
                "size_multiple": self.size_multiple,
                "channels": self.channels,
                "color_mode": self.color_mode,
                "dtypes": dict(self.input_dtypes),
            },
            "scoring": self.scoring.to_dict(),
            "threshold": self.threshold,
            "decision": DECISION,
            "signatures": dict(self.signatures),
            "jit_compile": self.jit_compile,
            "metadata": dict(self.metadata),
        }
        if self.tile_size is not None:
            document["tiling"] = {
                "tile_size": self.tile_size,
                "tile_overlap": self.tile_overlap,
                "batch_size": self.tile_batch_size,
                "window_floor": self.window_floor,
                "signature": TILED_SIGNATURE[0],
                "blending": TILING_BLENDING,
            }
        if self.runtime is not None:
            document["runtime"] = dict(self.runtime)
        if self.verification is not None:
            document["verification"] = dict(self.verification)
        document.update(self.extra)
        return document

    def replace(self, **changes) -> ExportSettings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def read(cls, path) -> ExportSettings:
        """The settings of a SavedModel folder or an edge export file (no TensorFlow).

        Raises:
            FileNotFoundError: ``path`` is no keras_skipae export, or its document is missing.
            ValueError: the document is damaged, or of another format.
        """
        if edge_format(path) is not None and not Path(path).is_dir():
            return cls.from_dict(read_edge_settings(path))
        return cls.from_dict(read_settings(path))


def settings_path(path) -> Path:
    """The settings document of an edge export: ``<file>.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SETTINGS_SUFFIX)


def edge_format(path) -> str | None:
    """``"litert"``, ``"onnx"`` or ``"openvino"`` from a file's suffix (None otherwise)."""
    suffix = Path(path).suffix.lower()
    return next((f for f, s in EDGE_FORMATS.items() if s == suffix), None)


def is_saved_model(path) -> bool:
    """Whether ``path`` is a folder with a keras_skipae SavedModel's settings document."""
    return (Path(path) / "assets" / SETTINGS_FILE).is_file()


def read_settings(path) -> dict:
    """Reads a SavedModel export's settings JSON as stored (no TensorFlow needed).

    Args:
        path: a folder written by :func:`~keras_skipae.export.export_saved_model`.

    Returns:
        The settings dict (see :mod:`keras_skipae.export`);
        :meth:`ExportSettings.from_dict` types it.

    Raises:
        FileNotFoundError: ``path`` is not such an export.
        ValueError: the settings file is damaged (not a JSON object; the error names it).
    """
    file = Path(path) / "assets" / SETTINGS_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a keras_skipae SavedModel export: it has no "
            f"assets/{SETTINGS_FILE}."
        )
    return io_utils.read_json(file, what="export settings", sections=SETTINGS_SECTIONS)


def read_edge_settings(path) -> dict:
    """Reads the settings document of an edge export as stored (no runtime or TensorFlow).

    Raises:
        FileNotFoundError: there is no ``<file>.json`` beside ``path``.
        ValueError: it is not valid JSON, or not a keras_skipae edge export's document.
    """
    file = settings_path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} has no settings document {file.name!r} beside it: it was not "
            "written by keras_skipae's export, or the document was not copied with it."
        )
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"The settings document {str(file)!r} is damaged: {exc}") from None
    fmt = document.get("format") if isinstance(document, dict) else None
    if fmt != FORMAT_PREFIX + str(edge_format(path)):
        raise ValueError(
            f"The settings document {str(file)!r} is not that of a keras_skipae "
            f"{edge_format(path)} export. Received: format={fmt!r}"
        )
    return document
