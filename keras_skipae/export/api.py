"""One entry point for every export format: :func:`export` (``ks.export(...)``).

``ks.export(model_or_run, path, format=...)`` writes a SavedModel folder
(:func:`~keras_skipae.export.export_saved_model`), a ``.keras`` file
(:func:`~keras_skipae.export.export_keras`), or a LiteRT / ONNX / OpenVINO file
(:func:`~keras_skipae.export.export_edge`). ``model_or_run`` is a Keras model or a run folder
written by ``keras-skipae train`` (its ``model.keras``, image size, colour mode and tiling;
``threshold="eval"`` takes the threshold ``keras-skipae evaluate`` stored).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_skipae import data, io_utils
from keras_skipae.data.datasets import IMAGE_EXTENSIONS
from keras_skipae.export.arguments import model_input_shape, resolve_image_size
from keras_skipae.export.edge import EDGE_FORMATS, export_edge
from keras_skipae.export.keras import export_keras
from keras_skipae.export.saved_model import export_saved_model
from keras_skipae.runs import RunFolder
from keras_skipae.scoring import ScoringConfig

#: Every format :func:`export` writes.
FORMATS = ("saved_model", "keras", *EDGE_FORMATS)

#: How many calibration images a folder or a run's training split gives at most.
CALIBRATION_IMAGES = 64


def calibration_images(source, image_shape, *, limit: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Good images for int8 calibration and verification, float32 ``[N, H, W, C]``.

    Args:
        source: a folder of images (read recursively, sorted; the first ``limit``), or a
            ``(root, category)`` pair: the ``train/good`` split of an MVTec-layout dataset.
        image_shape: ``(H, W, C)``: images are resized and read in that colour mode.

    Raises:
        FileNotFoundError: the folder does not exist, or holds no image.
    """
    h, w, c = image_shape
    mode = io_utils.color_mode_for(c)
    if isinstance(source, tuple):
        root, category = source
        ds = data.mvtec_dataset(root, category, "train", image_size=(h, w), color_mode=mode)
        images = [e["image"].numpy() for _, e in zip(range(limit), ds)]
        where = f"the training split of {str(root)!r}, category {category!r}"
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"Calibration folder {str(folder)!r} does not exist.")
        files = sorted(
            f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
        )[:limit]
        images = [data.load_image(f, image_size=(h, w), color_mode=mode).numpy() for f in files]
        where = repr(str(folder))
    if not images:
        raise FileNotFoundError(f"No calibration image found in {where}.")
    return np.stack(images).astype(np.float32)


def _from_run(run_dir, format, *, best, threshold, scoring, calibration, quantization):
    """The model and the export keywords a run folder gives."""
    run = RunFolder(run_dir)
    if format != "keras":
        run.check_reconstruction(f"a {format} export")
    model, config = run.load(best=best, compile=False), run.run_config()
    if format == "keras":
        return model, {}
    cfg = ScoringConfig.resolve(scoring, caller="export")
    if isinstance(threshold, str) and threshold == "eval":
        threshold, _, problem = run.threshold(cfg)
        if threshold is None:
            raise ValueError(
                problem
                or f"The run {str(run_dir)!r} has no evaluated threshold: run `keras-skipae "
                f"evaluate {run_dir}` first, or pass a number."
            )
    tiling = config.tiling
    kwargs = {
        "scoring": cfg,
        "threshold": threshold,
        "image_size": config.image_size(),
        "color_mode": config.data.color_mode,
        "metadata": {
            "run_dir": str(Path(run_dir).resolve()),
            "model_file": "best.keras" if best else "model.keras",
        },
    }
    if format == "saved_model":
        kwargs.update(
            tile_size=tiling[0] if tiling else None, tile_overlap=tiling[1] if tiling else 0
        )
        return model, kwargs
    if tiling:
        raise ValueError(
            f"The run {str(run_dir)!r} scores images tile by tile, which the {format} export "
            "does not do; export it as a SavedModel (format='saved_model')."
        )
    kwargs["calibration"] = calibration
    if quantization == "int8" and calibration is None and config.data.root:
        kwargs["calibration"] = (config.data.root, config.data.category)
    return model, kwargs


def _calibration(model, calibration, kwargs):
    """Calibration images from a folder or a ``(root, category)`` pair, at the export's
    size (left as they are where ``export_edge`` will refuse the size)."""
    if isinstance(calibration, (str, os.PathLike, tuple)):
        h, w, c = model_input_shape(model)
        size = resolve_image_size(kwargs.get("image_size"), (h, w), None)
        if None not in size:
            return calibration_images(calibration, (*size, c))
    return calibration


def export(
    model_or_run,
    path,
    *,
    format: str = "saved_model",
    threshold=None,
    scoring: ScoringConfig | dict | None = None,
    best: bool = False,
    calibration=None,
    quantization: str = "float32",
    overwrite: bool = False,
    **kwargs,
) -> Path:
    """Exports a model, or a run folder's model, in one of :data:`FORMATS`.

    Args:
        model_or_run: a Keras model, or a run folder (``keras-skipae train``'s).
        path: the SavedModel folder, or the ``.keras`` / ``.tflite`` / ``.onnx`` / ``.xml``
            file to write.
        format: ``"saved_model"`` (default), ``"keras"``, ``"litert"``, ``"onnx"`` or
            ``"openvino"``.
        threshold: a number, None, or (run folders) ``"eval"``: the threshold ``evaluate``
            stored for these scoring settings.
        scoring: the :class:`~keras_skipae.scoring.ScoringConfig` the export computes.
        best: a run folder's ``best.keras``.
        calibration: edge formats: good images ``[N, H, W, C]``, or a folder of images
            (the int8 calibration set and the verification images). For a run folder and
            ``quantization="int8"`` without it: the run's training split.
        quantization: LiteRT: ``"float32"``, ``"dynamic_range"`` or ``"int8"``.
        overwrite: replace what is there.
        **kwargs: the format's own keywords (``tile_size``, ``batch_size``, ``verify``, ...).

    Returns:
        The written path.

    Raises:
        ValueError: an unknown format, or keywords the format does not take.

    Example:
        >>> ks.export("runs/carpet", "exports/carpet_int8.tflite", format="litert",
        ...           quantization="int8", threshold="eval")
    """
    if format not in FORMATS:
        raise ValueError(
            f"Expected `format` to be one of {list(FORMATS)}. Received: format={format!r}"
        )
    if isinstance(model_or_run, (str, os.PathLike)):
        model, settings = _from_run(
            model_or_run,
            format,
            best=best,
            threshold=threshold,
            scoring=scoring,
            calibration=calibration,
            quantization=quantization,
        )
        kwargs = {**settings, **kwargs}
    else:
        model = model_or_run
        kwargs.update(scoring=scoring, threshold=threshold)
        if format in EDGE_FORMATS:
            kwargs["calibration"] = calibration
    if format == "keras":
        if kwargs.get("threshold") is not None or kwargs.get("scoring") is not None:
            raise ValueError(
                "A .keras file holds the model only: threshold and scoring apply to the "
                "other formats."
            )
        return export_keras(model, path, overwrite=overwrite)
    if format == "saved_model":
        if quantization != "float32" or calibration is not None:
            raise ValueError(
                "quantization and calibration are for the edge formats (litert, onnx, "
                f"openvino). Received: format='saved_model', quantization={quantization!r}"
            )
        return export_saved_model(model, path, overwrite=overwrite, **kwargs)
    kwargs["calibration"] = _calibration(model, kwargs.get("calibration"), kwargs)
    return export_edge(
        model, path, format=format, quantization=quantization, overwrite=overwrite, **kwargs
    )
