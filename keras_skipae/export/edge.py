"""Edge and interchange exports: LiteRT (``.tflite``), ONNX (``.onnx``), OpenVINO IR (``.xml``).

:func:`export_edge` writes one file (OpenVINO: ``.xml`` and its ``.bin``) that holds the
whole scoring graph of :func:`keras_skipae.scoring.compute`: reconstruction, anomaly map,
smoothing and image score with the export's :class:`~keras_skipae.scoring.ScoringConfig`,
and ``is_anomalous`` (``score >= threshold``) when it has a threshold. Beside it,
``<file>.json`` (:func:`settings_path`) holds the settings document (input size, channels,
scoring, threshold, versions, the runtime's details and the verification's result); the
ONNX file and the OpenVINO IR carry the same document inside too (ONNX
``metadata_props["keras_skipae"]``, OpenVINO ``rt_info["keras_skipae"]``).

How it is built: the scoring function is traced at the export's fixed image size, its
variables frozen into constants, and the frozen graph converted (LiteRT:
``tf.lite.TFLiteConverter``; ONNX: ``tf2onnx`` at opset :data:`ONNX_OPSET`; OpenVINO:
``openvino.convert_model``). With a fixed size the banded smoothing matrices are constants,
so every format runs the package's own smoothing unchanged. What differs from the
SavedModel (``docs/export.md#edge-formats``): float32 input only (LiteRT int8: uint8),
a fixed image size, no ``CheckNumerics`` op (not a LiteRT builtin: the runners and the
Detector refuse NaN before the call), and ``map="mc_dropout"`` is refused (random ops).

Input: ``images`` float32 ``[B, H, W, C]`` in [0, 1] (the full-integer LiteRT file: uint8
in [0, 255] through its input quantisation, scale about 1/255). ``B`` is 1 for LiteRT
(``batch_size=`` fixes another), free for ONNX and OpenVINO unless ``batch_size=`` fixes it.
Outputs: ``anomaly_map`` float32 ``[B, H, W]``, ``reconstruction`` float32 ``[B, H, W, C]``,
``score`` float32 ``[B]`` and, with a threshold, ``is_anomalous`` bool ``[B]``.

Verification: the export runs the file with :mod:`keras_skipae.export.runtimes` in a fresh
Python process in which keras_skipae is never imported, and compares it with the in-process
:func:`~keras_skipae.scoring.compute` on the calibration images (or four random ones): float
exports must agree to :data:`FLOAT_RTOL` relative; quantised LiteRT files only record their
largest difference (their criteria are decisions and AUROC: ``bench/bench_export.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

# TF's graph freezing, the one its own converters use (there is no public name for it).
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from keras_skipae import io_utils
from keras_skipae.export import runtimes
from keras_skipae.export.arguments import (
    check_metadata,
    model_input_shape,
    resolve_color_mode,
    resolve_image_size,
    size_multiple,
)
from keras_skipae.export.settings import (
    EDGE_FORMATS,
    FORMAT_PREFIX,
    SETTINGS_SUFFIX,
    ExportSettings,
    edge_format,
    now,
    read_edge_settings,
    settings_path,
    versions,
)
from keras_skipae.scoring import (
    ScoringConfig,
    check_threshold,
    compute,
    float32_model,
    is_anomalous,
)

__all__ = [
    "EDGE_FORMATS",
    "FLOAT_RTOL",
    "FORMAT_PREFIX",
    "ONNX_OPSET",
    "QUANTIZATIONS",
    "SETTINGS_SUFFIX",
    "compare",
    "edge_format",
    "export_edge",
    "read_edge_settings",
    "run_isolated",
    "scoring_function",
    "settings_path",
]

#: LiteRT quantisations: float32, dynamic-range (int8 weights), full integer (uint8 input).
QUANTIZATIONS = ("float32", "dynamic_range", "int8")

#: The ONNX opset the export writes (ONNX Runtime >= 1.12 and OpenVINO read it).
ONNX_OPSET = 17

#: The largest relative difference a float export may show in verification (per output,
#: relative to the largest value of that output over the verification images).
FLOAT_RTOL = 1e-4

_CONVERTERS = {"onnx": ("tf2onnx", "onnx"), "openvino": ("openvino", "openvino")}


def _check_calibration(calibration, shape):
    if calibration is None:
        return None
    images = np.asarray(calibration)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape) or len(images) == 0:
        raise ValueError(
            f"Expected `calibration` images [N, {shape[0]}, {shape[1]}, {shape[2]}]. "
            f"Received: calibration with shape {images.shape}"
        )
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError(
            "Expected `calibration` images in [0, 1] (float) or uint8. Received: values in "
            f"[{np.nanmin(images):g}, {np.nanmax(images):g}] or non-finite values"
        )
    return images


def _check_options(format, quantization, batch_size, calibration):
    if format not in EDGE_FORMATS:
        raise ValueError(
            f"Expected `format` to be one of {sorted(EDGE_FORMATS)}. Received: format={format!r}"
        )
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Expected `quantization` to be one of {list(QUANTIZATIONS)}. Received: "
            f"quantization={quantization!r}"
        )
    if quantization != "float32" and format != "litert":
        raise ValueError(
            f"Quantisation is for format='litert'. Received: format={format!r}, "
            f"quantization={quantization!r}"
        )
    if quantization == "int8" and calibration is None:
        raise ValueError(
            "A full-integer (int8) export is calibrated on good training images: pass "
            "`calibration` (CLI: --calibration DIR, or the run's training split). Received: "
            "calibration=None"
        )
    if batch_size is not None and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(
            f"Expected `batch_size` None (dynamic) or >= 1. Received: batch_size={batch_size!r}"
        )
    return 1 if (format == "litert" and batch_size is None) else batch_size


def scoring_function(model, scoring, threshold, image_shape, batch_size):
    """The frozen scoring graph the edge formats convert: a ``tf.function`` of ``images``
    float32 ``[batch_size, H, W, C]`` (its input signature) returning the named outputs,
    with the model's variables folded into constants."""
    spec = tf.TensorSpec([batch_size, *image_shape], tf.float32, name="images")

    def score_fn(images):
        out = compute(model, images, scoring)
        if threshold is not None:
            out["is_anomalous"] = is_anomalous(out["score"], threshold)
        return out

    traced = tf.function(score_fn, autograph=False).get_concrete_function(spec)
    keys = sorted(traced.structured_outputs)
    frozen = convert_variables_to_constants_v2(traced)

    def named(images):
        out = frozen(images)
        return out if isinstance(out, dict) else dict(zip(keys, out))

    return tf.function(named, input_signature=[spec], autograph=False)


def _calibration_dataset(images, batch):
    """The representative dataset for int8: the images in the export's batch size, the
    first one with one pixel at 0 and one at 1, so that the uint8 input's scale is 1/255."""
    images = images.copy()
    images[0].flat[0], images[0].flat[-1] = 0.0, 1.0

    def gen():
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)])
            yield {"images": chunk}

    return gen


def _convert_litert(fn, out, quantization, calibration, batch):
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], tf.Module()
    )
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "int8":
        converter.representative_dataset = _calibration_dataset(calibration, batch)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    with warnings.catch_warnings():  # TF's calibrator uses its own deprecated interpreter
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        out.write_bytes(converter.convert())


def _convert_onnx(fn, out, document):
    tf2onnx = runtimes.import_runtime(*_CONVERTERS["onnx"])
    onnx = runtimes.import_runtime("onnx", "onnx")
    proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=fn.input_signature, opset=ONNX_OPSET
    )
    entry = proto.metadata_props.add()
    entry.key, entry.value = "keras_skipae", json.dumps(document)
    onnx.save(proto, str(out))


def _convert_openvino(fn, out, document):
    ov = runtimes.import_runtime(*_CONVERTERS["openvino"])
    converted = ov.convert_model(fn.get_concrete_function())
    converted.set_rt_info(json.dumps(document), ["keras_skipae"])
    # compress_to_fp16=False: the default would store the weights as float16.
    ov.save_model(converted, str(out), compress_to_fp16=False)


def run_isolated(format, path, images, *, timeout=300) -> dict:
    """Runs an export file on ``images`` in a fresh Python process that imports only
    NumPy and the runtime (:mod:`keras_skipae.export.runtimes` run as a script)."""
    with tempfile.TemporaryDirectory(prefix="keras_skipae_verify_") as scratch:
        data, result = Path(scratch) / "images.npz", Path(scratch) / "out.npz"
        np.savez(data, images=np.asarray(images))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.run(
            [sys.executable, runtimes.__file__, format, str(path), str(data), str(result)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=scratch,
        )
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(
                f"The {format} export {str(path)!r} did not run in its runtime: "
                + (lines[-1] if lines else f"exit code {proc.returncode}")
            )
        with np.load(result) as out:
            return {k: out[k] for k in out.files}


def compare(served: dict, expected: dict) -> dict:
    """The largest difference of each float output, absolute and relative to the largest
    value of that output (``{key: {"abs": ..., "rel": ...}}``)."""
    report = {}
    for key in ("anomaly_map", "reconstruction", "score"):
        want = np.asarray(expected[key], np.float64)
        diff = float(np.max(np.abs(np.asarray(served[key], np.float64) - want)))
        scale = max(float(np.max(np.abs(want))), 1e-12)
        report[key] = {"abs": diff, "rel": diff / scale}
    return report


def _verify(format, path, model, scoring, threshold, images, quantized) -> dict:
    served = run_isolated(format, path, images)
    expected = {k: v.numpy() for k, v in compute(model, images, scoring).items()}
    report = compare(served, expected)
    if not quantized:
        for key, d in report.items():
            if not d["rel"] <= FLOAT_RTOL:
                raise RuntimeError(
                    f"The {format} export's {key!r} differs from the in-process result by "
                    f"{d['rel']:.3g} relative (> {FLOAT_RTOL:g}); the export was not written."
                )
    if threshold is not None:
        want = served["score"] >= np.float32(threshold)
        if not np.array_equal(served["is_anomalous"], want):
            raise RuntimeError(
                f"The {format} export's `is_anomalous` disagrees with its score >= threshold."
            )
    return {
        "images": int(len(images)),
        "process": "fresh, without keras_skipae",
        "max_difference": report,
    }


def edge_settings(model, cfg, threshold, size, channels, color_mode, multiple, metadata, runtime):
    """The settings document of an edge export of ``model`` (the float32 one)."""
    dtype = "uint8" if runtime["quantization"] == "int8" else "float32"
    batch = runtime["batch_size"] or "B"
    outputs = {
        "anomaly_map": f"float32 [{batch}, H, W]: the anomaly map after smoothing",
        "reconstruction": f"float32 [{batch}, H, W, C]: the reconstruction",
        "score": f"float32 [{batch}]: the image score reduced from anomaly_map",
    }
    if threshold is not None:
        outputs["is_anomalous"] = f"bool [{batch}]: score >= threshold"
    return ExportSettings(
        scoring=cfg,
        channels=channels,
        image_size=tuple(size),
        color_mode=color_mode,
        threshold=threshold,
        size_multiple=multiple,
        jit_compile=False,
        model_name=model.name,
        model_params=int(model.count_params()),
        model_input_shape=model_input_shape(model),
        signatures={
            "serving_default": {
                "input": {"images": f"{dtype} [{batch}, {size[0]}, {size[1]}, {channels}]"},
                "outputs": outputs,
            }
        },
        input_dtypes={
            dtype: "values in [0, 255] (input quantisation of scale ~1/255)"
            if dtype == "uint8"
            else "values in [0, 1]"
        },
        metadata=metadata,
        versions=versions(),
        created=now(),
        format=FORMAT_PREFIX + runtime["format"],
        runtime=runtime,
    )


def export_edge(
    model,
    path,
    *,
    format: str,
    scoring: ScoringConfig | dict | None = None,
    threshold: float | None = None,
    image_size=None,
    color_mode: str | None = None,
    quantization: str = "float32",
    calibration=None,
    batch_size: int | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Writes a LiteRT, ONNX or OpenVINO file that reconstructs and scores images.

    Args:
        model: a trained keras_skipae autoencoder (one image input).
        path: the file to write: ``.tflite`` (LiteRT), ``.onnx`` or ``.xml`` (OpenVINO;
            its weights go to the ``.bin`` of the same name). ``<path>.json`` receives
            the settings document.
        format: ``"litert"``, ``"onnx"`` or ``"openvino"``.
        scoring: the :class:`~keras_skipae.scoring.ScoringConfig` (or dict) the graph
            computes; None: the defaults (``evaluate``'s).
        threshold: the production threshold: adds ``is_anomalous`` and is recorded.
        image_size: the fixed input size, for a model built with ``(None, None, C)``;
            None: the model's.
        color_mode: ``"grayscale"`` or ``"rgb"`` (recorded); None: from the channels.
        quantization: LiteRT only: ``"float32"``, ``"dynamic_range"`` (int8 weights,
            float activations) or ``"int8"`` (full integer, uint8 input; needs
            ``calibration``).
        calibration: good training images ``[N, H, W, C]`` (float in [0, 1] or uint8):
            the int8 calibration set, and the verification images of every format.
        batch_size: a fixed batch size; None: 1 for LiteRT, dynamic for ONNX and OpenVINO.
        metadata: a JSON-able dict recorded under ``"metadata"``.
        overwrite: replace existing files.
        verify: run the file in its runtime in a fresh process and compare it with the
            in-process scoring before moving it into place (:data:`FLOAT_RTOL` for float
            exports; quantised ones record their difference).

    Returns:
        The export file, a ``Path``.

    Raises:
        ImportError: the converter or runtime is not installed (names the extra).
        FileExistsError: a file exists and ``overwrite`` is False.
        ValueError: a bad format, quantisation, batch size, suffix, image size, colour
            mode, threshold, calibration set, or ``map="mc_dropout"``.
        RuntimeError: the verification found a disagreement (nothing is written).

    Example:
        >>> export_edge(model, "exports/aesc.tflite", format="litert", threshold=0.31)
    """
    batch = _check_options(format, quantization, batch_size, calibration)
    path = Path(path)
    if path.suffix.lower() != EDGE_FORMATS[format]:
        raise ValueError(
            f"A {format} export is a {EDGE_FORMATS[format]} file. Received: path={str(path)!r}"
        )
    cfg = ScoringConfig.resolve(scoring, caller="export_edge")
    model = float32_model(model)
    if cfg.map == "mc_dropout":
        raise ValueError(
            "map='mc_dropout' draws random dropout masks, which the edge formats do not "
            "export; use another map or the SavedModel. Received: map='mc_dropout'"
        )
    threshold = check_threshold(threshold)
    size, channels, multiple = _fixed_shape(model, image_size)
    color_mode = resolve_color_mode(color_mode, channels)
    calibration = _check_calibration(calibration, (*size, channels))
    metadata = check_metadata(metadata)
    files = _output_files(path, format, overwrite=overwrite, verify=verify)
    runtime = _runtime(format, path, quantization, batch)
    settings = edge_settings(
        model, cfg, threshold, size, channels, color_mode, multiple, metadata, runtime
    )
    _write(path, files, model, settings, calibration, quantization, batch, verify=verify)
    return path


def _fixed_shape(model, image_size) -> tuple:
    """``((H, W), C, size multiple)``: an edge export's fixed size and the model's channels."""
    h, w, channels = model_input_shape(model)
    multiple = size_multiple(model)
    size = resolve_image_size(image_size, (h, w), multiple)
    if size[0] is None or size[1] is None:
        raise ValueError(
            "An edge export has a fixed image size: pass image_size=(height, width) for a "
            f"model that takes any size. Received: image_size={image_size!r}"
        )
    return (int(size[0]), int(size[1])), int(channels), multiple


def _output_files(path, format, *, overwrite, verify) -> list[Path]:
    """The files the export writes (checked writable; the settings last, since nothing
    loads without them), once the converter and runtime it needs are known importable."""
    if format in _CONVERTERS:
        runtimes.import_runtime(*_CONVERTERS[format])
    if verify:
        runtimes.import_runtime(*runtimes.RUNTIMES[format])
    files = [path] + ([path.with_suffix(".bin")] if format == "openvino" else [])
    files.append(settings_path(path))
    for file in files:
        io_utils.check_writable(file, overwrite=overwrite, what=f"{format} export")
    return files


def _runtime(format, path, quantization, batch) -> dict:
    """The ``runtime`` entry of an edge export's settings."""
    return {
        "format": format,
        "file": path.name,
        "quantization": quantization,
        "batch_size": batch,
        "input_dtype": "uint8" if quantization == "int8" else "float32",
        "onnx_opset": ONNX_OPSET if format == "onnx" else None,
        "converter": {"litert": "tf.lite.TFLiteConverter", "onnx": "tf2onnx"}.get(
            format, "openvino.convert_model"
        ),
    }


def _write(path, files, model, settings, calibration, quantization, batch, *, verify) -> None:
    """Converts the scoring graph in a scratch folder, verifies it, moves ``files`` in place."""
    format, cfg, threshold = settings.edge_format, settings.scoring, settings.threshold
    shape = (*settings.image_size, settings.channels)
    document = settings.to_dict()
    fn = scoring_function(model, cfg, threshold, shape, batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp = scratch / path.name
        if format == "litert":
            _convert_litert(fn, tmp, quantization, calibration, batch)
        elif format == "onnx":
            _convert_onnx(fn, tmp, document)
        else:
            _convert_openvino(fn, tmp, document)
        if verify:
            images = calibration[:8] if calibration is not None else None
            if images is None:
                images = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
            settings = settings.replace(
                verification=_verify(
                    format, tmp, model, cfg, threshold, images, quantization != "float32"
                )
            )
        text = json.dumps(settings.to_dict(), indent=2) + "\n"
        settings_path(tmp).write_text(text, encoding="utf-8")
        for file in files:
            os.replace(scratch / file.name, file)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
