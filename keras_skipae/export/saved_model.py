"""Export: a TF SavedModel with a scoring signature, and a safe ``.keras`` file.

:func:`export_saved_model` writes a SavedModel that scores images on its own:
whoever loads it (``tf.saved_model.load``, TF Serving) needs TensorFlow only,
not keras_skipae. The scoring graph is :func:`keras_skipae.scoring.compute`
itself, traced with the export's settings, so served results equal the
in-process ones (``evaluate`` calls the same function) to float32 rounding.

Signatures (``saved_model_cli show --dir EXPORT --all`` lists them):

=====================  ==========================  ==========================================
signature              input ``images``            outputs
=====================  ==========================  ==========================================
``serving_default``    float32 ``[B, H, W, C]``,   ``reconstruction`` float32 ``[B, H, W, C]``,
                       values in [0, 1]            ``anomaly_map`` float32 ``[B, H, W]``
                                                   (smoothed), ``score`` float32 ``[B]``, and
                                                   ``is_anomalous`` bool ``[B]`` when the export
                                                   has a threshold (``score >= threshold``)
``serving_uint8``      uint8 ``[B, H, W, C]``,     the same; the images are divided by 255
                       values in [0, 255]          first (as ``scoring.to_float_images``)
``reconstruct``        float32, as above           ``reconstruction``
``reconstruct_uint8``  uint8, as above             ``reconstruction``
``serving_tiled``      float32 ``[B, H, W, C]``,   the outputs of ``serving_default`` at the
                       any ``H, W >= tile_size``   frames' full resolution: tiles scored and
                       (only in exports made       blended by
                       with ``tile_size=``)        :func:`keras_skipae.scoring.compute_tiled`
``serving_xla``        as ``serving_default``      as ``serving_default``, compiled with XLA
                       (CPU exports with           (``Detector`` times the two per input
                       ``jit_compile="auto"``)     shape and uses the faster)
=====================  ==========================  ==========================================

Why float32 for ``serving_default``: the model itself takes float32 in
[0, 1] (the package's image convention), Keras' own ``model.export`` makes a
float32 ``serving_default``, and TF Hub's image signatures take float32 in
[0, 1] too, so that is what TF Serving users expect to find there. A
signature has one dtype, so raw 8-bit pixels get their own, ``serving_uint8``
(a quarter of the bytes on the wire). Beware the TF Serving REST API: it
casts JSON numbers to the signature's dtype, so 0-255 integers sent to
``serving_default`` would be scored as if they were in [0, 1]; send them to
``serving_uint8`` (``"signature_name": "serving_uint8"``). In Python, the
loaded object's ``score`` and ``reconstruct`` functions take either dtype::

    loaded = tf.saved_model.load("saved_models/aesc_mesh_demo")
    out = loaded.score(images_uint8_or_float32)      # dict of tensors
    out = loaded.signatures["serving_uint8"](images=images_uint8)

An export made with ``tile_size=`` (a model trained on tiles) adds ``serving_tiled``
(``loaded.score_tiled`` in Python): it covers each frame with overlapping tiles of the
model's input size, scores them and blends the maps; its settings are recorded under
``"tiling"``.

``B`` is any batch size; ``H`` and ``W`` are the export's image size, or any
multiple of ``2**depth`` for a model built with ``input_shape=(None, None,
C)``; ``C`` is the model's channel count (1 grayscale, 3 RGB). A wrong rank
or channel count fails with ``Shape of tensor images [...] is not compatible
with expected shape [...]``; a size the model cannot take fails with ``Input
height and width must be multiples of ...`` (``InvalidArgumentError``). Float
images with NaN or infinite values fail with ``InvalidArgumentError``
(:data:`NON_FINITE_MESSAGE`) instead of returning NaN scores.

The export carries its settings in readable form, ``assets/keras_skipae.json``
(:data:`SETTINGS_FILE`; :func:`read_settings` reads it without TensorFlow):
the scoring settings (map, smoothing, score, topk, p), the threshold and the
decision rule, the input size, channels, colour mode and dtype conventions,
the model's name and training precision, the keras_skipae / Keras / TensorFlow
versions and the signatures with their outputs.

The export computes in float32: a model trained in mixed precision is exported as its
float32 twin (:func:`keras_skipae.models.precision.float32_model`, the same weights),
which is also what ``evaluate`` and ``Detector`` score with.

:func:`export_keras` writes a ``.keras`` file that loads with
``keras.models.load_model(path, safe_mode=True)`` after ``import
keras_skipae.models`` (or this module), which registers the package's layers;
``import keras_skipae`` alone is lazy and registers nothing.

Both are written to a temporary name and renamed, and refuse to replace an
existing path unless ``overwrite=True``; even then they replace only an export that
keras_skipae made (:mod:`keras_skipae.ownership`): a SavedModel folder carries the
marker file ``.keras_skipae.json``, a ``.keras`` file carries it as a zip entry.

Example:
    >>> import keras_skipae as ks
    >>> ks.export_saved_model(model, "exports/aesc_carpet", threshold=0.31)
    >>> ks.export_keras(model, "exports/aesc_carpet.keras")
"""

from __future__ import annotations

import datetime
import json
import math
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_skipae import __version__, io_utils, ownership
from keras_skipae.layers import InputSizeCheck
from keras_skipae.models.precision import float32_model, model_precision
from keras_skipae.models.taps import base_model
from keras_skipae.ops.device import MEASURED, resolve_jit_compile
from keras_skipae.ops.tiling import WINDOW_FLOOR, check_tiling
from keras_skipae.runs import COLOR_MODES
from keras_skipae.scoring import (
    DEFAULT_TILE_BATCH,
    ScoringConfig,
    compute,
    compute_tiled,
    is_anomalous,
    mc_dropout_model,
    to_float_images,
)

#: Name of the settings JSON in the SavedModel's ``assets/`` folder.
SETTINGS_FILE = "keras_skipae.json"
#: The entries of an export folder besides the marker: what ``tf.saved_model.save`` writes.
EXPORT_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra")


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


_OUTPUTS_DOC = {
    "reconstruction": "float32 [B, H, W, C] in [0, 1]: the model's inference-mode reconstruction",
    "anomaly_map": "float32 [B, H, W]: the anomaly map after smoothing",
    "score": "float32 [B]: the image score reduced from anomaly_map",
    "is_anomalous": "bool [B]: score >= threshold (only when the export has a threshold)",
}


def _size_multiple(model) -> int | None:
    """The ``InputSizeCheck`` multiple of a keras_skipae model (None if it has none)."""

    multiples = [
        int(layer.multiple) for layer in _all_layers(model) if isinstance(layer, InputSizeCheck)
    ]
    return math.lcm(*multiples) if multiples else None


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _input_shape(model) -> tuple:
    shape = base_model(model).input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            "Expected a model with one image input [batch, height, width, channels] and a "
            f"known channel count. Received: model {model.name!r} with input_shape={shape!r}"
        )
    return tuple(shape[1:])


def _resolve_image_size(image_size, model_hw, multiple):
    """(H, W) for the signature: the model's, or the requested one (validated)."""
    size = io_utils.parse_image_size(image_size)
    if size is None:
        return tuple(model_hw)
    for got, fixed in zip(size, model_hw):
        if fixed is not None and got != fixed:
            raise ValueError(
                f"The model takes {model_hw[0]}x{model_hw[1]} images only. "
                f"Received: image_size={image_size!r}"
            )
    if multiple and (size[0] % multiple or size[1] % multiple):
        raise ValueError(
            f"Expected `image_size` with height and width multiples of {multiple} (2**depth) "
            f"for this model. Received: image_size={image_size!r}"
        )
    return size


def _resolve_color_mode(color_mode, channels):
    if color_mode is None:
        return {1: "grayscale", 3: "rgb"}.get(channels)
    if color_mode not in COLOR_MODES:
        raise ValueError(
            f"Expected `color_mode` to be 'grayscale', 'rgb' or None. Received: "
            f"color_mode={color_mode!r}"
        )
    if COLOR_MODES[color_mode] != channels:
        raise ValueError(
            f"`color_mode` {color_mode!r} needs {COLOR_MODES[color_mode]} channel(s), but the "
            f"model takes {channels}. Received: color_mode={color_mode!r}"
        )
    return color_mode


def check_threshold(threshold):
    """``threshold`` as a float (None stays None); anything not finite is a ``ValueError``."""
    if threshold is None:
        return None
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(
            f"Expected a finite `threshold` or None. Received: threshold={threshold!r}"
        )
    return value


def _settings_document(
    *, model, settings, threshold, image_size, channels, color_mode, multiple, metadata, jit
) -> dict:

    signatures = {}
    for name, (dtype, outputs) in SIGNATURES.items():
        outs = [o for o in outputs if o != "is_anomalous" or threshold is not None]
        signatures[name] = {
            "input": {"images": f"{dtype} [B, H, W, {channels}]"},
            "outputs": {o: _OUTPUTS_DOC[o] for o in outs},
        }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "keras_skipae": __version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
        "model": {
            "name": model.name,
            "params": int(model.count_params()),
            "input_shape": list(_input_shape(model)),
        },
        "input": {
            "layout": "NHWC: [batch, height, width, channels]",
            "image_size": None if image_size[0] is None else list(image_size),
            "size_multiple": multiple,
            "channels": channels,
            "color_mode": color_mode,
            "dtypes": {
                "float32": "values in [0, 1] (serving_default, reconstruct)",
                "uint8": "values in [0, 255], divided by 255 in the graph "
                "(serving_uint8, reconstruct_uint8)",
            },
        },
        "scoring": settings,
        "threshold": threshold,
        "decision": "is_anomalous = score >= threshold (compared in float32)",
        "signatures": signatures,
        "jit_compile": jit,
        "metadata": metadata or {},
    }


def _add_xla_settings(document, channels, threshold) -> None:
    """Records the ``serving_xla`` signature (see :data:`XLA_SIGNATURE`) in the settings."""
    name, dtype, outputs = XLA_SIGNATURE
    outs = [o for o in outputs if o != "is_anomalous" or threshold is not None]
    document["signatures"][name] = {
        "input": {"images": f"{dtype} [B, H, W, {channels}]"},
        "outputs": {o: _OUTPUTS_DOC[o] for o in outs},
        "note": "serving_default compiled with XLA (faster for single images on some CPUs)",
    }


#: The message of the ``InvalidArgumentError`` a served call with NaN / Inf pixels raises.
NON_FINITE_MESSAGE = "keras_skipae: the images hold NaN or infinite values; expected [0, 1]"


def _check_finite_images(images):
    """``images`` unchanged, or an ``InvalidArgumentError`` at run time if a float image
    holds NaN / Inf. Outside XLA only: a jit-compiled graph drops ``CheckNumerics``."""
    if images.dtype.is_floating:
        images = tf.debugging.check_numerics(images, NON_FINITE_MESSAGE)
    return images


def _checked(fn, expected):
    """A ``tf.function`` that checks the images' shape against ``expected`` and their
    values (:func:`_check_finite_images`), then calls ``fn`` (which may be jit-compiled)."""

    def checked(images):
        return fn(_check_finite_images(tf.ensure_shape(images, expected)))

    return tf.function(checked, autograph=False)


def _build_module(
    model, *, settings, threshold, image_size, channels, asset_path, jit=False, xla_variant=False
):
    """A ``tf.Module`` with ``score`` / ``reconstruct`` tf.functions and their signatures;
    with ``xla_variant`` also ``score_xla`` and its :data:`XLA_SIGNATURE`."""

    expected = [None, image_size[0], image_size[1], channels]

    def prepare(images):
        # EnsureShape checks at run time (signature callers and TF Serving feed
        # tensors without checking them against the input spec).
        images = tf.ensure_shape(images, expected)
        return to_float_images(images)

    def score_fn(images):
        out = compute(model, prepare(images), settings)
        if threshold is not None:
            out["is_anomalous"] = is_anomalous(out["score"], threshold)
        return out

    def reconstruct_fn(images):
        x = prepare(images)
        return {"reconstruction": tf.cast(model(x, training=False), tf.float32)}

    module = tf.Module(name="keras_skipae_export")
    module.score = _checked(tf.function(score_fn, jit_compile=jit), expected)
    module.reconstruct = _checked(tf.function(reconstruct_fn, jit_compile=jit), expected)
    concrete = {}
    for name, (dtype, _) in SIGNATURES.items():
        fn = module.reconstruct if name.startswith("reconstruct") else module.score
        spec = tf.TensorSpec(expected, tf.as_dtype(dtype), name="images")
        concrete[name] = fn.get_concrete_function(spec)
    if xla_variant:
        name, dtype, _ = XLA_SIGNATURE
        module.score_xla = _checked(tf.function(score_fn, jit_compile=True), expected)
        spec = tf.TensorSpec(expected, tf.as_dtype(dtype), name="images")
        concrete[name] = module.score_xla.get_concrete_function(spec)
    # Every variable the graphs read must be reachable from the module.
    variables = {}
    for cf in concrete.values():
        for v in cf.variables:
            variables[id(v)] = v
    module.model_variables = list(variables.values())
    module.settings_file = tf.saved_model.Asset(str(asset_path))
    return module, concrete


def _resolve_tiling(tile_size, tile_overlap, batch_size, model_hw, multiple) -> dict | None:
    """The export's tiling settings (None without ``tile_size``), checked against the model."""
    if tile_size is None:
        if tile_overlap:
            raise ValueError(
                f"`tile_overlap` needs a `tile_size`. Received: tile_overlap={tile_overlap!r}"
            )
        return None
    tile, overlap = check_tiling(tile_size, tile_overlap)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            f"Expected `tile_batch_size` >= 1. Received: tile_batch_size={batch_size!r}"
        )
    if any(s is not None and s != tile for s in model_hw) or (multiple and tile % multiple):
        raise ValueError(
            f"The model takes {model_hw[0]}x{model_hw[1]} images (multiples of {multiple}), "
            f"so it cannot score {tile}x{tile} tiles. Received: tile_size={tile_size!r}"
        )
    return {
        "tile_size": tile,
        "tile_overlap": overlap,
        "batch_size": batch_size,
        "window_floor": WINDOW_FLOOR,
    }


def _add_tiling_settings(document, tiling, channels, threshold) -> None:
    """Records the tiling and the ``serving_tiled`` signature in the settings document."""
    name, dtype, outputs = TILED_SIGNATURE
    outs = [o for o in outputs if o != "is_anomalous" or threshold is not None]
    document["tiling"] = dict(
        tiling,
        signature=name,
        blending="Hann window with a floor; the map is smoothed and scored once, blended",
    )
    document["signatures"][name] = {
        "input": {"images": f"{dtype} [B, H, W, {channels}], H and W >= {tiling['tile_size']}"},
        "outputs": {o: _OUTPUTS_DOC[o] for o in outs},
    }


def _add_tiled_signature(module, concrete, model, settings, threshold, channels, tiling):
    """``module.score_tiled`` (any frame size >= the tile) and its ``serving_tiled`` signature."""

    def score_tiled_fn(images):
        images = _check_finite_images(tf.ensure_shape(images, [None, None, None, channels]))
        out = compute_tiled(
            model,
            images,
            tiling["tile_size"],
            tiling["tile_overlap"],
            settings,
            batch_size=tiling["batch_size"],
        )
        if threshold is not None:
            out["is_anomalous"] = is_anomalous(out["score"], threshold)
        return out

    name, dtype, _ = TILED_SIGNATURE
    module.score_tiled = tf.function(score_tiled_fn, autograph=False)
    spec = tf.TensorSpec([None, None, None, channels], tf.as_dtype(dtype), name="images")
    concrete[name] = module.score_tiled.get_concrete_function(spec)
    variables = {id(v): v for v in module.model_variables}
    for v in concrete[name].variables:
        variables[id(v)] = v
    module.model_variables = list(variables.values())


def _verify_tiled(loaded, model, settings, threshold, channels, tiling):
    """Checks ``serving_tiled`` against the in-process :func:`compute_tiled` on a frame of
    1.5 x 2 tiles (so that the last tiles overlap more than the others)."""
    tile = tiling["tile_size"]
    rng = np.random.default_rng(1)
    frames = rng.random((2, tile + tile // 2 + 1, 2 * tile, channels), dtype=np.float32)
    served = loaded.signatures[TILED_SIGNATURE[0]](images=tf.constant(frames))
    expected = compute_tiled(
        model,
        frames,
        tile,
        tiling["tile_overlap"],
        settings,
        batch_size=tiling["batch_size"],
    )
    keys = ["reconstruction"] if settings.map == "mc_dropout" else list(expected)
    for key in keys:
        diff = float(np.max(np.abs(served[key].numpy() - expected[key].numpy())))
        if not diff <= 1e-5:
            raise RuntimeError(
                f"The exported tiled {key!r} differs from the in-process result by {diff:.3g} "
                "(> 1e-5); the export was not written."
            )
    if threshold is not None and settings.map != "mc_dropout":
        want = expected["score"].numpy() >= np.float32(threshold)
        if not np.array_equal(served["is_anomalous"].numpy(), want):
            raise RuntimeError(
                "The exported tiled `is_anomalous` disagrees with score >= threshold."
            )


def _verify(path, model, settings, threshold, image_size, channels, multiple, tiling=None):
    """Loads the export and checks it against the in-process computation."""

    h, w = image_size
    if h is None:
        side = max(multiple or 1, 32)
        side = -(-side // (multiple or 1)) * (multiple or 1)
        h = w = side
    rng = np.random.default_rng(0)
    images = rng.random((2, h, w, channels), dtype=np.float32)
    loaded = tf.saved_model.load(str(path))
    expected = compute(model, images, settings)
    keys = ["reconstruction"] if settings.map == "mc_dropout" else list(expected)
    names = [n for n in ("serving_default", XLA_SIGNATURE[0]) if n in loaded.signatures]
    for name in names:
        served = loaded.signatures[name](images=tf.constant(images))
        for key in keys:
            diff = float(np.max(np.abs(served[key].numpy() - expected[key].numpy())))
            if not diff <= 1e-5:
                raise RuntimeError(
                    f"The exported {key!r} ({name}) differs from the in-process result by "
                    f"{diff:.3g} (> 1e-5); the export was not written."
                )
        if threshold is not None and settings.map != "mc_dropout":
            score = served["score"].numpy()
            if not np.array_equal(served["is_anomalous"].numpy(), score >= np.float32(threshold)):
                raise RuntimeError(
                    f"The exported `is_anomalous` ({name}) disagrees with score >= threshold."
                )
    if tiling is not None:
        _verify_tiled(loaded, model, settings, threshold, channels, tiling)


def export_saved_model(
    model,
    path,
    *,
    scoring: ScoringConfig | dict | None = None,
    threshold: float | None = None,
    image_size=None,
    color_mode: str | None = None,
    tile_size: int | None = None,
    tile_overlap: int = 0,
    tile_batch_size: int = DEFAULT_TILE_BATCH,
    metadata: dict | None = None,
    overwrite: bool = False,
    verify: bool = True,
    jit_compile="auto",
    **legacy,
) -> Path:
    """Writes a TF SavedModel that reconstructs and scores images.

    The signatures (``serving_default``: float32 in [0, 1]; ``serving_uint8``;
    ``reconstruct``; ``reconstruct_uint8``) and their outputs are described in
    :mod:`keras_skipae.export`. The scoring is :func:`keras_skipae.scoring.compute`
    with the given settings, the computation ``evaluate`` runs, so with the
    same settings an exported score equals ``evaluate``'s. The defaults are
    ``keras_skipae.scoring``'s (``DEFAULT_MAP``, ``DEFAULT_SMOOTHING``,
    ``DEFAULT_SCORE``, ...), as ``evaluate``'s.

    Args:
        model: a trained keras_skipae autoencoder (one image input). A model trained in
            mixed precision is exported (and verified) as its float32 twin
            (:func:`keras_skipae.models.precision.float32_model`).
        path: the export folder to create.
        scoring: a :class:`~keras_skipae.scoring.ScoringConfig` (or its dict): the
            map, smoothing and score the signatures compute; None: the defaults
            (those of ``evaluate``). ``mc_dropout`` draws new dropout masks
            between calls, in process and served alike.
        threshold: a production threshold: adds the ``is_anomalous`` output
            (``score >= threshold``). It must come from the same scoring
            settings (e.g. ``evaluate(...).threshold``).
        image_size: None (the model's input size; any multiple of ``2**depth``
            when the model was built with ``(None, None, C)``), an int or
            ``(height, width)`` to fix the signature's size.
        color_mode: ``"grayscale"`` or ``"rgb"``, recorded in the settings;
            None infers it from the channel count. Must match the model.
        tile_size: the side of the tiles the model was trained on: adds the
            ``serving_tiled`` signature, which scores frames of any size >= the tile
            at full resolution (:func:`keras_skipae.scoring.compute_tiled`). The
            model must take ``tile_size x tile_size`` images. None: no tiling.
        tile_overlap: the least overlap of neighbouring tiles in ``serving_tiled``.
        tile_batch_size: tiles per model call in ``serving_tiled`` (bounds memory).
        metadata: a JSON-able dict recorded under ``"metadata"`` in the
            settings (e.g. the training run).
        overwrite: replace an existing ``path``, only an export folder keras_skipae made
            (:func:`keras_skipae.ownership.check_replaceable`).
        verify: reload the export and check that it reproduces the in-process
            results (atol 1e-5) on two random images before renaming it into
            place.
        jit_compile: compile the ``score`` and ``reconstruct`` functions with XLA
            (the graphs then need a TensorFlow runtime with XLA, as the pip
            packages have). ``"auto"``: the choice for the serving path
            (:func:`keras_skipae.ops.device.resolve_jit_compile`,
            ``docs/decisions.md#xla-auto``): with a GPU, on; on a CPU the
            signatures run without XLA and the export adds ``serving_xla``, the
            same scoring compiled with XLA, which
            :class:`~keras_skipae.inference.Detector` times against
            ``serving_default`` per input shape on the machine that serves
            (:class:`~keras_skipae.ops.device.MeasuredJit`). True or False force
            it (no ``serving_xla``). Recorded as ``jit_compile`` in the settings
            (True, False or ``"measured"``).
        **legacy: the deprecated scoring keywords (``map=``, ``smoothing=``, ...).

    Returns:
        The export folder, a ``Path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: unknown settings, a threshold that is not finite, an
            image size or colour mode the model cannot take.
        RuntimeError: ``verify`` found a disagreement (nothing is written).

    Example:
        >>> export_saved_model(model, "exports/aesc", threshold=result.threshold)
        >>> loaded = tf.saved_model.load("exports/aesc")
        >>> loaded.signatures["serving_uint8"](images=batch_uint8)["score"]
    """
    cfg = ScoringConfig.resolve(scoring, caller="export_saved_model", **legacy)
    threshold = check_threshold(threshold)
    trained_in = model_precision(model)
    model = float32_model(model)  # scoring runs in float32 (docs/export.md)
    jit = resolve_jit_compile(jit_compile, path="serving")
    xla_variant = jit == MEASURED
    h, w, channels = _input_shape(model)
    multiple = _size_multiple(model)
    size = _resolve_image_size(image_size, (h, w), multiple)
    color_mode = _resolve_color_mode(color_mode, channels)
    tiling = _resolve_tiling(tile_size, tile_overlap, tile_batch_size, (h, w), multiple)
    if metadata is not None:
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Expected a JSON-able `metadata` dict. ({exc})") from None
    path = io_utils.check_writable(path, overwrite=overwrite, what="export folder")
    ownership.check_replaceable(path, "export", allowed=EXPORT_ENTRIES, what="export folder")
    if cfg.map == "mc_dropout":
        mc_dropout_model(model)  # builds the clone's variables eagerly

    document = _settings_document(
        model=model,
        settings=cfg.to_dict(),
        threshold=threshold,
        image_size=size,
        channels=channels,
        color_mode=color_mode,
        multiple=multiple,
        metadata=metadata,
        jit=jit,
    )
    document["model"]["trained_precision"] = trained_in
    if tiling is not None:
        _add_tiling_settings(document, tiling, channels, threshold)
    if xla_variant:
        _add_xla_settings(document, channels, threshold)
    with tempfile.TemporaryDirectory(prefix="keras_skipae_export_") as scratch:
        asset = Path(scratch) / SETTINGS_FILE
        asset.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        module, concrete = _build_module(
            model,
            settings=cfg,
            threshold=threshold,
            image_size=size,
            channels=channels,
            asset_path=asset,
            jit=False if xla_variant else jit,
            xla_variant=xla_variant,
        )
        if tiling is not None:
            _add_tiled_signature(module, concrete, model, cfg, threshold, channels, tiling)
        with io_utils.atomic_path(
            path, overwrite=overwrite, is_dir=True, what="export folder"
        ) as tmp:
            tf.saved_model.save(module, str(tmp), signatures=concrete)
            ownership.mark_owned(tmp, "export")
            if verify:
                _verify(tmp, model, cfg, threshold, size, channels, multiple, tiling)
    return path


def load_saved_model(path):
    """``tf.saved_model.load`` with an error that names the export and what is wrong.

    Checks first that the folder holds ``saved_model.pb``, ``variables/variables.index``
    and every ``variables.data-*`` shard the index's name promises, so that an
    incompletely copied export says which file is missing.

    Raises:
        FileNotFoundError: a file of the export is missing.
        ValueError: a file is there but TensorFlow cannot read it (corrupted).
    """
    path = Path(path)
    variables = path / "variables"
    missing = [
        name
        for name in ("saved_model.pb", "variables/variables.index")
        if not (path / name).is_file()
    ]
    shards = sorted(variables.glob("variables.data-*-of-*")) if variables.is_dir() else []
    if not missing:
        total = int(shards[0].name.rsplit("-of-", 1)[1]) if shards else 1
        for i in range(total):
            name = f"variables/variables.data-{i:05d}-of-{total:05d}"
            if not (path / name).is_file():
                missing.append(name)
    if missing:
        raise FileNotFoundError(
            f"The SavedModel {str(path)!r} is incomplete: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing (copy the whole export folder)."
        )
    try:
        return tf.saved_model.load(str(path))
    except (OSError, ValueError, KeyError, tf.errors.OpError) as exc:
        message = exc.message if isinstance(exc, tf.errors.OpError) else str(exc)
        first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        raise ValueError(
            f"Could not load the SavedModel {str(path)!r} (corrupted?): {first}"
        ) from exc


def read_settings(path) -> dict:
    """Reads an export's settings JSON (no TensorFlow needed).

    Args:
        path: a folder written by :func:`export_saved_model`.

    Returns:
        The settings dict (see :mod:`keras_skipae.export`).

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
