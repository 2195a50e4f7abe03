"""Running an edge export (``.tflite``, ``.onnx``, OpenVINO ``.xml``) in its own runtime.

This module imports NumPy only; each runtime (``ai_edge_litert``, ``onnxruntime``,
``openvino``) is imported when a file of its format is opened, and a missing one raises
an ``ImportError`` of one line that names the extra to install (:func:`import_runtime`).
Of keras_skipae it imports only the NumPy-only :mod:`keras_skipae.ops.image_checks` (the one
image-array check), by its file path when run as a script, so the export's verify step runs
it (``python runtimes.py FORMAT FILE IMAGES.npz OUT.npz``) in a fresh process in which
keras_skipae, Keras and TensorFlow are never imported.

Every runner has the same interface: ``runner.run(images)`` with float32 images
``[B, H, W, C]`` in [0, 1] (any ``B``) returns a dict of NumPy arrays
(``anomaly_map``, ``reconstruction``, ``score`` and, with a threshold,
``is_anomalous``), and ``runner.input_shape`` is the file's ``(H, W, C)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

if __package__:
    from keras_skipae.ops.image_checks import check_images
else:  # run as a script (the verify step): the same file, without importing keras_skipae
    _spec = importlib.util.spec_from_file_location(
        "image_checks", Path(__file__).resolve().parents[1] / "ops" / "image_checks.py"
    )
    _image_checks = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_image_checks)
    check_images = _image_checks.check_images

#: format -> (module imported to run it, the pip extra that installs it)
RUNTIMES = {
    "litert": ("ai_edge_litert.interpreter", "litert"),
    "onnx": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
}


def import_runtime(module: str, extra: str):
    """Imports ``module``, or raises a one-line ``ImportError`` naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"This needs the `{module.split('.')[0]}` package, which is not installed: "
            f'pip install "keras-skipae[{extra}]" (or "keras-skipae[edge]" for every '
            f"edge runtime). ({exc})"
        ) from None


def _float_images(images):
    """uint8 images scaled to [0, 1], anything else as float32 (the float files' input)."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32, copy=False)


def _check_images(images, shape, path):
    return check_images(images, shape=shape, owner=f"The export {str(path)!r}")


def _chunks(images, batch):
    """``images`` in chunks of ``batch`` (the last padded by repeating its last image)."""
    if batch is None:
        yield images, len(images)
        return
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        yield chunk, n


def _concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class LiteRTRunner:
    """A ``.tflite`` file in the LiteRT interpreter (``ai_edge_litert``).

    A full-integer file takes uint8 input: float images are quantised with the
    input's scale and zero point (``round(x / scale) + zero_point``, in [0, 255]).
    """

    def __init__(self, path, *, threads: int | None = None):
        interpreter = import_runtime(*RUNTIMES["litert"])
        self.path = str(path)
        self._interpreter = interpreter.Interpreter(model_path=self.path, num_threads=threads)
        self._runner = self._interpreter.get_signature_runner("serving_default")
        detail = self._runner.get_input_details()["images"]
        self.input_dtype = np.dtype(detail["dtype"])
        self._quant = detail["quantization"]
        shape = [int(s) for s in detail["shape"]]
        self.batch = shape[0]
        self.input_shape = tuple(shape[1:])

    def _prepare(self, images):
        if self.input_dtype == np.uint8 and images.dtype != np.uint8:
            scale, zero = self._quant
            q = np.round(images.astype(np.float32) / scale) + zero
            return np.clip(q, 0, 255).astype(np.uint8)
        if self.input_dtype != np.uint8 and images.dtype == np.uint8:
            return images.astype(np.float32) / 255.0
        return images.astype(self.input_dtype, copy=False)

    def run(self, images) -> dict:
        images = self._prepare(_check_images(images, self.input_shape, self.path))
        parts = []
        for chunk, n in _chunks(images, self.batch):
            out = self._runner(images=chunk)
            parts.append({k: np.asarray(v)[:n] for k, v in out.items()})
        return _concat(parts)


class OnnxRunner:
    """An ``.onnx`` file in ONNX Runtime (CPU)."""

    def __init__(self, path, *, threads: int | None = None):
        ort = import_runtime(*RUNTIMES["onnx"])
        self.path = str(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            self.path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        shape = self._session.get_inputs()[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None
        self.input_shape = tuple(int(s) for s in shape[1:])
        self._names = [o.name for o in self._session.get_outputs()]

    def run(self, images) -> dict:
        images = _float_images(_check_images(images, self.input_shape, self.path))
        parts = []
        for chunk, n in _chunks(images, self.batch):
            out = self._session.run(self._names, {"images": chunk})
            parts.append({k: v[:n] for k, v in zip(self._names, out)})
        return _concat(parts)


class OpenVINORunner:
    """An OpenVINO IR (``.xml`` with its ``.bin``) on the CPU, in float32 precision
    (``INFERENCE_PRECISION_HINT=f32``: OpenVINO would otherwise run bf16 on CPUs that
    have it, which moves the scores by about 1e-3)."""

    def __init__(self, path, *, threads: int | None = None):
        ov = import_runtime(*RUNTIMES["openvino"])
        self.path = str(path)
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self._compiled = core.compile_model(core.read_model(self.path), "CPU", config)
        shape = self._compiled.inputs[0].get_partial_shape()
        self.batch = shape[0].get_length() if shape[0].is_static else None
        self.input_shape = tuple(shape[i].get_length() for i in (1, 2, 3))
        self._outputs = [(o.get_any_name(), o) for o in self._compiled.outputs]

    def run(self, images) -> dict:
        images = _float_images(_check_images(images, self.input_shape, self.path))
        parts = []
        for chunk, n in _chunks(images, self.batch):
            out = self._compiled(chunk)
            parts.append({name: np.asarray(out[o])[:n] for name, o in self._outputs})
        return _concat(parts)


#: format -> runner class
RUNNERS = {"litert": LiteRTRunner, "onnx": OnnxRunner, "openvino": OpenVINORunner}


def open_runner(format: str, path, *, threads: int | None = None):
    """The runner for an export file of ``format`` (``"litert"``, ``"onnx"``, ``"openvino"``)."""
    if format not in RUNNERS:
        raise ValueError(f"Expected one of {sorted(RUNNERS)}. Received: format={format!r}")
    return RUNNERS[format](path, threads=threads)


def main(argv=None) -> int:
    """``FORMAT FILE IMAGES.npz OUT.npz``: runs the file on ``images`` and saves its outputs."""
    fmt, path, images_file, out_file = (argv if argv is not None else sys.argv[1:])[:4]
    images = np.load(images_file)["images"]
    out = open_runner(fmt, path).run(images)
    np.savez(out_file, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
