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

``B`` is any batch size; ``H`` and ``W`` are the export's image size, or any
multiple of ``2**depth`` for a model built with ``input_shape=(None, None,
C)``; ``C`` is the model's channel count (1 grayscale, 3 RGB). A wrong rank
or channel count fails with ``Shape of tensor images [...] is not compatible
with expected shape [...]``; a size the model cannot take fails with ``Input
height and width must be multiples of ...`` (``InvalidArgumentError``).

The export carries its settings in readable form, ``assets/keras_skipae.json``
(:data:`SETTINGS_FILE`; :func:`read_settings` reads it without TensorFlow):
the scoring settings (map, smoothing, score, topk, p), the threshold and the
decision rule, the input size, channels, colour mode and dtype conventions,
the model's name, the keras_skipae / Keras / TensorFlow versions and the
signatures with their outputs.

:func:`export_keras` writes a ``.keras`` file that loads with
``keras.models.load_model(path, safe_mode=True)`` after ``import
keras_skipae.models`` (or this module), which registers the package's layers;
``import keras_skipae`` alone is lazy and registers nothing.

Both are written to a temporary name and renamed, and refuse to replace an
existing path unless ``overwrite=True``.

Example:
    >>> import keras_skipae as ks
    >>> ks.export_saved_model(model, "exports/aesc_carpet", threshold=0.31)
    >>> ks.export_keras(model, "exports/aesc_carpet.keras")
"""

from __future__ import annotations

import datetime
import json
import numbers
import os
import tempfile
from pathlib import Path

import keras_skipae.models  # noqa: F401  (registers InputSizeCheck & co. for .keras loading)
from keras_skipae import io_utils, scoring

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SETTINGS_FILE",
    "SIGNATURES",
    "export_keras",
    "export_run",
    "export_saved_model",
    "read_settings",
    "run_threshold",
]

#: Name of the settings JSON in the SavedModel's ``assets/`` folder.
SETTINGS_FILE = "keras_skipae.json"
#: ``format`` and ``format_version`` written to the settings JSON.
FORMAT = "keras_skipae.saved_model"
FORMAT_VERSION = 1

#: signature name -> (input dtype, outputs); ``is_anomalous`` only with a threshold.
SIGNATURES = {
    "serving_default": ("float32", ("reconstruction", "anomaly_map", "score", "is_anomalous")),
    "serving_uint8": ("uint8", ("reconstruction", "anomaly_map", "score", "is_anomalous")),
    "reconstruct": ("float32", ("reconstruction",)),
    "reconstruct_uint8": ("uint8", ("reconstruction",)),
}

_COLOR_MODES = {"grayscale": 1, "rgb": 3}
_OUTPUTS_DOC = {
    "reconstruction": "float32 [B, H, W, C] in [0, 1]: the model's inference-mode reconstruction",
    "anomaly_map": "float32 [B, H, W]: the anomaly map after smoothing",
    "score": "float32 [B]: the image score reduced from anomaly_map",
    "is_anomalous": "bool [B]: score >= threshold (only when the export has a threshold)",
}


# ----------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------


def _size_multiple(model) -> int | None:
    """The ``InputSizeCheck`` multiple of a keras_skipae model (None if it has none)."""
    from keras_skipae.models import InputSizeCheck

    for layer in model.layers:
        if isinstance(layer, InputSizeCheck):
            return int(layer.multiple)
    return None


def _input_shape(model) -> tuple:
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            "Expected a model with one image input [batch, height, width, channels] and a "
            f"known channel count. Received: model {model.name!r} with input_shape={shape!r}"
        )
    return tuple(shape[1:])


def _resolve_image_size(image_size, model_hw, multiple):
    """(H, W) for the signature: the model's, or the requested one (validated)."""
    if image_size is None:
        return tuple(model_hw)
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(image_size)
        except TypeError:
            size = ()
        if len(size) != 2 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size
        ):
            raise ValueError(
                "Expected `image_size` to be None, an int or a (height, width) pair. "
                f"Received: image_size={image_size!r}"
            )
        size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"Expected a positive `image_size`. Received: image_size={image_size!r}")
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
    if color_mode not in _COLOR_MODES:
        raise ValueError(
            f"Expected `color_mode` to be 'grayscale', 'rgb' or None. Received: "
            f"color_mode={color_mode!r}"
        )
    if _COLOR_MODES[color_mode] != channels:
        raise ValueError(
            f"`color_mode` {color_mode!r} needs {_COLOR_MODES[color_mode]} channel(s), but the "
            f"model takes {channels}. Received: color_mode={color_mode!r}"
        )
    return color_mode


def _check_threshold(threshold):
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


def _check_no_lambda(model):
    import keras

    def walk(m):
        for layer in m.layers:
            yield layer
            if hasattr(layer, "layers"):
                yield from walk(layer)

    bad = [layer.name for layer in walk(model) if isinstance(layer, keras.layers.Lambda)]
    if bad:
        raise ValueError(
            f"Model {model.name!r} has Lambda layers {bad}, which "
            "`keras.models.load_model(..., safe_mode=True)` refuses to load. Replace them "
            "with registered custom layers."
        )


# ----------------------------------------------------------------------------
# SavedModel
# ----------------------------------------------------------------------------


def _settings_document(
    *, model, settings, threshold, image_size, channels, color_mode, multiple, metadata
) -> dict:
    import keras
    import tensorflow as tf

    from keras_skipae import __version__

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
        "metadata": metadata or {},
    }


def _build_module(model, *, settings, threshold, image_size, channels, asset_path):
    """A ``tf.Module`` with ``score`` / ``reconstruct`` tf.functions and their signatures."""
    import tensorflow as tf

    expected = [None, image_size[0], image_size[1], channels]

    def prepare(images):
        # EnsureShape checks at run time (signature callers and TF Serving feed
        # tensors without checking them against the input spec).
        images = tf.ensure_shape(images, expected)
        return scoring.to_float_images(images)

    def score_fn(images):
        out = scoring.compute(model, prepare(images), **settings)
        if threshold is not None:
            out["is_anomalous"] = scoring.is_anomalous(out["score"], threshold)
        return out

    def reconstruct_fn(images):
        x = prepare(images)
        return {"reconstruction": tf.cast(model(x, training=False), tf.float32)}

    module = tf.Module(name="keras_skipae_export")
    module.score = tf.function(score_fn)
    module.reconstruct = tf.function(reconstruct_fn)
    concrete = {}
    for name, (dtype, _) in SIGNATURES.items():
        fn = module.reconstruct if name.startswith("reconstruct") else module.score
        spec = tf.TensorSpec(expected, tf.as_dtype(dtype), name="images")
        concrete[name] = fn.get_concrete_function(spec)
    # Every variable the graphs read must be reachable from the module.
    variables = {}
    for cf in concrete.values():
        for v in cf.variables:
            variables[id(v)] = v
    module.model_variables = list(variables.values())
    module.settings_file = tf.saved_model.Asset(str(asset_path))
    return module, concrete


def _verify(path, model, settings, threshold, image_size, channels, multiple):
    """Loads the export and checks it against the in-process computation."""
    import numpy as np
    import tensorflow as tf

    h, w = image_size
    if h is None:
        side = max(multiple or 1, 32)
        side = -(-side // (multiple or 1)) * (multiple or 1)
        h = w = side
    rng = np.random.default_rng(0)
    images = rng.random((2, h, w, channels), dtype=np.float32)
    loaded = tf.saved_model.load(str(path))
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = scoring.compute(model, images, **settings)
    keys = ["reconstruction"] if settings["map"] == "mc_dropout" else list(expected)
    for key in keys:
        diff = float(np.max(np.abs(served[key].numpy() - expected[key].numpy())))
        if not diff <= 1e-5:
            raise RuntimeError(
                f"The exported {key!r} differs from the in-process result by {diff:.3g} "
                "(> 1e-5); the export was not written."
            )
    if threshold is not None:
        want = expected["score"].numpy() >= np.float32(threshold)
        if settings["map"] != "mc_dropout" and not np.array_equal(
            served["is_anomalous"].numpy(), want
        ):
            raise RuntimeError("The exported `is_anomalous` disagrees with score >= threshold.")


def export_saved_model(
    model,
    path,
    *,
    map: str = scoring.DEFAULT_MAP,
    smoothing: float | None = scoring.DEFAULT_SMOOTHING,
    smoothing_border: str = scoring.DEFAULT_SMOOTHING_BORDER,
    score: str = scoring.DEFAULT_SCORE,
    topk: float = scoring.DEFAULT_TOPK,
    p: float = scoring.DEFAULT_P,
    mc_samples: int = scoring.DEFAULT_MC_SAMPLES,
    map_options: dict | None = None,
    threshold: float | None = None,
    image_size=None,
    color_mode: str | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    verify: bool = True,
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
        model: a trained keras_skipae autoencoder (one image input).
        path: the export folder to create.
        map: the anomaly map (``"residual"``, ``"ssim"``, ``"mc_dropout"``, or a
            registered one). ``"mc_dropout"`` is stochastic: its scores vary
            between calls, in process and served alike.
        smoothing: Gaussian sigma in pixels on the map (0: none).
        smoothing_border: the smoothing's border handling
            (``scoring.gaussian_smooth``'s ``border``).
        score: the image score (``"max"``, ``"mean"``, ``"topk"``, ``"lp"``).
        topk: the ``"topk"`` fraction or count.
        p: the ``"lp"`` exponent.
        mc_samples: passes for ``"mc_dropout"``.
        map_options: extra options for the map function.
        threshold: a production threshold: adds the ``is_anomalous`` output
            (``score >= threshold``). It must come from the same scoring
            settings (e.g. ``evaluate(...).threshold``).
        image_size: None (the model's input size; any multiple of ``2**depth``
            when the model was built with ``(None, None, C)``), an int or
            ``(height, width)`` to fix the signature's size.
        color_mode: ``"grayscale"`` or ``"rgb"``, recorded in the settings;
            None infers it from the channel count. Must match the model.
        metadata: a JSON-able dict recorded under ``"metadata"`` in the
            settings (e.g. the training run).
        overwrite: replace an existing ``path``.
        verify: reload the export and check that it reproduces the in-process
            results (atol 1e-5) on two random images before renaming it into
            place.

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
    settings = scoring.scoring_settings(
        map=map,
        smoothing=smoothing,
        smoothing_border=smoothing_border,
        score=score,
        topk=topk,
        p=p,
        mc_samples=mc_samples,
        map_options=map_options,
    )
    threshold = _check_threshold(threshold)
    h, w, channels = _input_shape(model)
    multiple = _size_multiple(model)
    size = _resolve_image_size(image_size, (h, w), multiple)
    color_mode = _resolve_color_mode(color_mode, channels)
    if metadata is not None:
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Expected a JSON-able `metadata` dict. ({exc})") from None
    path = io_utils.check_writable(path, overwrite=overwrite, what="export folder")
    if settings["map"] == "mc_dropout":
        scoring.mc_dropout_model(model)  # builds the clone's variables eagerly

    document = _settings_document(
        model=model,
        settings=settings,
        threshold=threshold,
        image_size=size,
        channels=channels,
        color_mode=color_mode,
        multiple=multiple,
        metadata=metadata,
    )
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="keras_skipae_export_") as scratch:
        asset = Path(scratch) / SETTINGS_FILE
        asset.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        module, concrete = _build_module(
            model,
            settings=settings,
            threshold=threshold,
            image_size=size,
            channels=channels,
            asset_path=asset,
        )
        with io_utils.atomic_path(
            path, overwrite=overwrite, is_dir=True, what="export folder"
        ) as tmp:
            tf.saved_model.save(module, str(tmp), signatures=concrete)
            if verify:
                _verify(tmp, model, settings, threshold, size, channels, multiple)
    return path


def read_settings(path) -> dict:
    """Reads an export's settings JSON (no TensorFlow needed).

    Args:
        path: a folder written by :func:`export_saved_model`.

    Returns:
        The settings dict (see :mod:`keras_skipae.export`).

    Raises:
        FileNotFoundError: ``path`` is not such an export.
    """
    file = Path(path) / "assets" / SETTINGS_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a keras_skipae SavedModel export: it has no "
            f"assets/{SETTINGS_FILE}."
        )
    return json.loads(file.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------
# .keras
# ----------------------------------------------------------------------------


def export_keras(model, path, *, overwrite: bool = False, include_optimizer: bool = False) -> Path:
    """Writes ``model`` to a ``.keras`` file that loads with ``safe_mode=True``.

    Load it with ``import keras_skipae.models`` (registers the package's
    layers; ``import keras_skipae`` alone is lazy) and
    ``keras.models.load_model(path, safe_mode=True)``.

    Args:
        model: the model.
        path: the file to write; must end in ``.keras``.
        overwrite: replace an existing file.
        include_optimizer: keep the compiled optimizer's state (about twice
            the weights' size for Adam). False (default) writes the
            architecture and weights only, for inference and export.

    Returns:
        The file, a ``Path``.

    Raises:
        ValueError: ``path`` does not end in ``.keras``, or the model has
            ``Lambda`` layers (``safe_mode=True`` would refuse them).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Expected a `path` ending in '.keras'. Received: path={str(path)!r}")
    _check_no_lambda(model)
    io_utils.check_writable(path, overwrite=overwrite, what="model file")
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        # Keras 3 saves a compiled model's optimizer (and clone_model compiles
        # the clone); a copy rebuilt from the config is not compiled.
        copy = model.__class__.from_config(model.get_config())
        copy.set_weights(model.get_weights())
        model = copy
    with io_utils.atomic_path(path, overwrite=overwrite, what="model file") as tmp:
        os.unlink(tmp)  # let Keras create the file
        model.save(tmp)
    return path


# ----------------------------------------------------------------------------
# Run folders (the CLI's ``keras-skipae export``)
# ----------------------------------------------------------------------------

#: Where ``keras-skipae evaluate RUN`` writes its metrics, relative to the run folder.
RUN_METRICS = ("evaluation", "metrics.json")
_SETTING_KEYS = (
    "map",
    "smoothing",
    "smoothing_border",
    "score",
    "topk",
    "p",
    "mc_samples",
    "map_options",
)
# Settings files written before a key existed: the value that was then in force.
_LEGACY_SETTINGS = {"smoothing_border": "normalized"}


def run_threshold(run_dir, settings: dict) -> tuple[float | None, Path | None, str | None]:
    """The production threshold ``keras-skipae evaluate`` stored in a run folder.

    Args:
        run_dir: a run folder.
        settings: the export's scoring settings (``scoring.scoring_settings``).

    Returns:
        ``(threshold, metrics_path, problem)``: the threshold when
        ``<run>/evaluation/metrics.json`` has one computed with the same scoring
        settings; otherwise threshold None and ``problem`` says why (None
        when there is no metrics file at all).
    """
    metrics_path = Path(run_dir).joinpath(*RUN_METRICS)
    if not metrics_path.is_file():
        return None, None, None
    try:
        data = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, metrics_path, f"{str(metrics_path)!r} is not readable JSON ({exc})"
    threshold = data.get("threshold")
    if threshold is None:
        return None, metrics_path, f"{str(metrics_path)!r} holds no production threshold"
    recorded = data.get("settings") or {}
    used = {**_LEGACY_SETTINGS, **recorded}
    differ = [k for k in _SETTING_KEYS if k in used and used[k] != settings[k]]
    if not used.get("smoothing") and not settings.get("smoothing"):
        # No smoothing on either side: the border mode had nothing to act on.
        differ = [k for k in differ if k != "smoothing_border"]
    missing = [k for k in ("map", "smoothing", "score") if k not in recorded]
    if differ or missing:
        detail = ", ".join(f"{k}={used.get(k)!r} (export: {settings[k]!r})" for k in differ)
        return (
            None,
            metrics_path,
            f"the threshold in {str(metrics_path)!r} was computed with other scoring settings"
            + (f": {detail}" if detail else f" (it does not record {missing})"),
        )
    return float(threshold), metrics_path, None


def export_run(
    run_dir,
    out,
    *,
    format: str = "saved_model",
    threshold=None,
    map: str | None = None,
    smoothing: float | None = None,
    score: str | None = None,
    best: bool = False,
    overwrite: bool = False,
) -> dict:
    """Exports the model of a run folder written by ``keras_skipae.train``.

    The run's ``config.json`` gives the image size and colour mode; its
    ``model.keras`` (or ``best.keras``) is the model.

    Args:
        run_dir: the run folder.
        out: the SavedModel folder, or the ``.keras`` file.
        format: ``"saved_model"`` or ``"keras"``.
        threshold: None, a number, or ``"eval"``: the production threshold
            ``keras-skipae evaluate RUN`` wrote to ``<run>/evaluation/metrics.json``
            (refused if it was computed with other scoring settings).
        map, smoothing, score: scoring settings; None takes the defaults.
        best: export ``best.keras`` instead of ``model.keras``.
        overwrite: replace an existing ``out``.

    Returns:
        A dict: ``path``, ``format``, ``threshold``, ``threshold_source``,
        ``settings`` and ``hint`` (a message about an unused evaluated
        threshold, or None).
    """
    from keras_skipae import training

    if format not in ("saved_model", "keras"):
        raise ValueError(
            f"Expected `format` to be 'saved_model' or 'keras'. Received: format={format!r}"
        )
    if format == "keras" and (
        threshold is not None or map is not None or smoothing is not None or score is not None
    ):
        raise ValueError(
            "A .keras file holds the model only: threshold, map, smoothing and score apply "
            "to format='saved_model'."
        )
    io_utils.check_writable(out, overwrite=overwrite, what="export")
    model, config = training.load_run(run_dir, best=best, compile=False)
    if format == "keras":
        path = export_keras(model, out, overwrite=overwrite)
        return {
            "path": path,
            "format": format,
            "threshold": None,
            "threshold_source": None,
            "settings": None,
            "hint": None,
        }
    chosen = {"map": map, "smoothing": smoothing, "score": score}
    settings = scoring.scoring_settings(**{k: v for k, v in chosen.items() if v is not None})
    evaluated, metrics_path, problem = run_threshold(run_dir, settings)
    hint = None
    source = None
    if isinstance(threshold, str) and threshold == "eval":
        if evaluated is None:
            raise ValueError(
                problem
                or f"The run {str(run_dir)!r} has no evaluated threshold: run `keras-skipae "
                f"evaluate {run_dir}` first, or pass a number."
            )
        threshold = evaluated
        source = str(metrics_path)
    elif threshold is not None:
        threshold = _check_threshold(threshold)
        source = "explicit"
    elif evaluated is not None:
        hint = (
            f"the run has a production threshold {evaluated:.6g} in {str(metrics_path)!r}; "
            "pass --threshold eval to embed it (adds the is_anomalous output)"
        )
    data = config.get("data") or {}
    image_size = data.get("image_size")
    metadata = {
        "run_dir": str(Path(run_dir).resolve()),
        "model_file": "best.keras" if best else "model.keras",
        "threshold_source": source,
        "run_config": {k: config.get(k) for k in ("model", "data", "corruption", "training")},
    }
    path = export_saved_model(
        model,
        out,
        **settings,
        threshold=threshold,
        image_size=image_size,
        color_mode=data.get("color_mode"),
        metadata=metadata,
        overwrite=overwrite,
    )
    return {
        "path": path,
        "format": format,
        "threshold": threshold,
        "threshold_source": source,
        "settings": settings,
        "hint": hint,
    }
