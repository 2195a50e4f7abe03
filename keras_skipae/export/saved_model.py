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
(:data:`SETTINGS_FILE`; :func:`read_settings` reads it without TensorFlow,
:class:`~keras_skipae.export.settings.ExportSettings` types it):
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

This module writes and loads; the settings document is
:mod:`keras_skipae.export.settings`, the ``tf.Module`` :mod:`keras_skipae.export.module`,
the self-check :mod:`keras_skipae.export.verify`, the argument checks
:mod:`keras_skipae.export.arguments`.

Example:
    >>> import keras_skipae as ks
    >>> ks.export_saved_model(model, "exports/aesc_carpet", threshold=0.31)
    >>> ks.export_keras(model, "exports/aesc_carpet.keras")
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import tensorflow as tf

from keras_skipae import io_utils, ownership
from keras_skipae.export.arguments import (
    check_metadata,
    model_input_shape,
    resolve_color_mode,
    resolve_image_size,
    resolve_tiling,
    size_multiple,
)
from keras_skipae.export.module import NON_FINITE_MESSAGE, add_tiled_signature, build_module
from keras_skipae.export.settings import (
    FORMAT,
    FORMAT_VERSION,
    SETTINGS_FILE,
    SETTINGS_SECTIONS,
    SIGNATURES,
    TILED_SIGNATURE,
    XLA_SIGNATURE,
    ExportSettings,
    now,
    read_settings,
    saved_model_signatures,
    signature_doc,
    versions,
)
from keras_skipae.export.verify import verify_saved_model
from keras_skipae.models.precision import float32_model, model_precision
from keras_skipae.ops.device import MEASURED, resolve_jit_compile
from keras_skipae.scoring import (
    DEFAULT_TILE_BATCH,
    ScoringConfig,
    check_threshold,
    mc_dropout_model,
)

__all__ = [
    "EXPORT_ENTRIES",
    "FORMAT",
    "FORMAT_VERSION",
    "NON_FINITE_MESSAGE",
    "SETTINGS_FILE",
    "SETTINGS_SECTIONS",
    "SIGNATURES",
    "TILED_SIGNATURE",
    "XLA_SIGNATURE",
    "export_saved_model",
    "load_saved_model",
    "read_settings",
    "saved_model_settings",
]

#: The entries of an export folder besides the marker: what ``tf.saved_model.save`` writes.
EXPORT_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra")


def saved_model_settings(
    model,
    cfg,
    *,
    threshold,
    image_size,
    color_mode,
    tiling,
    metadata,
    jit,
    trained_precision=None,
) -> ExportSettings:
    """The settings document of a SavedModel export of ``model`` (the float32 one), its
    arguments checked against the model (``tiling``: ``(tile_size, tile_overlap,
    tile_batch_size)``; ``jit``: resolved, True, False or ``"measured"``)."""
    threshold = check_threshold(threshold)
    h, w, channels = model_input_shape(model)
    multiple = size_multiple(model)
    image_size = resolve_image_size(image_size, (h, w), multiple)
    color_mode = resolve_color_mode(color_mode, channels)
    tiles = resolve_tiling(*tiling, (h, w), multiple) or {}
    metadata = check_metadata(metadata)
    signatures = saved_model_signatures(channels, threshold)
    if tiles:
        name, dtype, outputs = TILED_SIGNATURE
        shape = f"[B, H, W, {channels}], H and W >= {tiles['tile_size']}"
        signatures[name] = signature_doc(dtype, outputs, channels, threshold, shape=shape)
    if jit == MEASURED:
        name, dtype, outputs = XLA_SIGNATURE
        signatures[name] = dict(
            signature_doc(dtype, outputs, channels, threshold),
            note="serving_default compiled with XLA (faster for single images on some CPUs)",
        )
    return ExportSettings(
        scoring=cfg,
        channels=channels,
        image_size=None if image_size[0] is None else tuple(image_size),
        color_mode=color_mode,
        threshold=threshold,
        size_multiple=multiple,
        tile_size=tiles.get("tile_size"),
        tile_overlap=tiles.get("tile_overlap", 0),
        tile_batch_size=tiles.get("batch_size"),
        window_floor=tiles.get("window_floor"),
        jit_compile=jit,
        model_name=model.name,
        model_params=int(model.count_params()),
        model_input_shape=model_input_shape(model),
        trained_precision=trained_precision,
        signatures=signatures,
        metadata=metadata,
        versions=versions(),
        created=now(),
    )


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
) -> Path:
    """Writes a TF SavedModel that reconstructs and scores images.

    The signatures and their outputs are described in :mod:`keras_skipae.export`. The
    scoring is :func:`keras_skipae.scoring.compute` with the given settings, the
    computation ``evaluate`` runs, so with the same settings an exported score equals
    ``evaluate``'s (the defaults are ``keras_skipae.scoring``'s, as ``evaluate``'s).

    Args:
        model: a trained keras_skipae autoencoder (one image input). A model trained in
            mixed precision is exported (and verified) as its float32 twin
            (:func:`keras_skipae.models.precision.float32_model`).
        path: the export folder to create.
        scoring: a :class:`~keras_skipae.scoring.ScoringConfig` (or dict); None: the defaults.
        threshold: a production threshold from the same scoring settings (e.g.
            ``evaluate(...).threshold``): adds ``is_anomalous`` (``score >= threshold``).
        image_size: None (the model's input size; any multiple of ``2**depth`` when the
            model was built with ``(None, None, C)``), an int or ``(height, width)``.
        color_mode: ``"grayscale"`` or ``"rgb"``, recorded; None: from the channels.
        tile_size: the side of the tiles the model was trained on: adds
            ``serving_tiled``, which scores frames of any size >= the tile at full
            resolution (:func:`keras_skipae.scoring.compute_tiled`). None: no tiling.
        tile_overlap: the least overlap of neighbouring tiles in ``serving_tiled``.
        tile_batch_size: tiles per model call in ``serving_tiled`` (bounds memory).
        metadata: a JSON-able dict recorded under ``"metadata"`` (e.g. the run).
        overwrite: replace an existing export folder keras_skipae made (only that).
        verify: check the reloaded export against the in-process results first (1e-5).
        jit_compile: XLA for the signatures: ``"auto"`` (``docs/decisions.md#xla-auto``)
            is on with a GPU, off on a CPU plus ``serving_xla``, which ``Detector`` times
            against ``serving_default``; True / False force it (recorded as ``jit_compile``).

    Returns:
        The export folder, a ``Path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: unknown settings, a threshold that is not finite, an image size,
            colour mode or tiling the model cannot take.
        RuntimeError: ``verify`` found a disagreement (nothing is written).

    Example:
        >>> export_saved_model(model, "exports/aesc", threshold=result.threshold)
    """
    cfg = ScoringConfig.resolve(scoring, caller="export_saved_model")
    trained_in = model_precision(model)
    model = float32_model(model)  # scoring runs in float32 (docs/export.md)
    settings = saved_model_settings(
        model,
        cfg,
        threshold=threshold,
        image_size=image_size,
        color_mode=color_mode,
        tiling=(tile_size, tile_overlap, tile_batch_size),
        metadata=metadata,
        jit=resolve_jit_compile(jit_compile, path="serving"),
        trained_precision=trained_in,
    )
    path = io_utils.check_writable(path, overwrite=overwrite, what="export folder")
    ownership.check_replaceable(path, "export", allowed=EXPORT_ENTRIES, what="export folder")
    if cfg.map == "mc_dropout":
        mc_dropout_model(model)  # builds the clone's variables eagerly
    _write(path, model, cfg, settings, overwrite=overwrite, verify=verify)
    return path


def _write(path, model, cfg, settings: ExportSettings, *, overwrite, verify) -> None:
    """Builds the module, saves it to a temporary folder, verifies it, renames it."""
    threshold, size, channels = settings.threshold, settings.image_size, settings.channels
    size = size or (None, None)
    multiple, jit = settings.size_multiple, settings.jit_compile
    xla_variant = jit == MEASURED
    tiling = None
    if settings.tiling is not None:
        tiling = {
            "tile_size": settings.tile_size,
            "tile_overlap": settings.tile_overlap,
            "batch_size": settings.tile_batch_size,
        }
    with tempfile.TemporaryDirectory(prefix="keras_skipae_export_") as scratch:
        asset = Path(scratch) / SETTINGS_FILE
        asset.write_text(json.dumps(settings.to_dict(), indent=2) + "\n", encoding="utf-8")
        module, concrete = build_module(
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
            add_tiled_signature(module, concrete, model, cfg, threshold, channels, tiling)
        with io_utils.atomic_path(
            path, overwrite=overwrite, is_dir=True, what="export folder"
        ) as tmp:
            tf.saved_model.save(module, str(tmp), signatures=concrete)
            ownership.mark_owned(tmp, "export")
            if verify:
                verify_saved_model(tmp, model, cfg, threshold, size, channels, multiple, tiling)


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
