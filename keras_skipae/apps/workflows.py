"""Workflows over run folders: evaluate a run, export a run, compare two runs
(:func:`compare_runs`, in :mod:`keras_skipae.apps.compare`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_skipae import data, evaluation, io_utils, ownership, training
from keras_skipae.apps.compare import DISCREPANCY_ENTRIES, _run_inputs, compare_runs
from keras_skipae.evaluation.evaluate import check_output_folder
from keras_skipae.export.api import calibration_images
from keras_skipae.export.edge import EDGE_FORMATS, export_edge
from keras_skipae.export.keras import export_keras
from keras_skipae.export.saved_model import EXPORT_ENTRIES, export_saved_model
from keras_skipae.ops.tiling import tile_grid
from keras_skipae.runs import RunFolder
from keras_skipae.scoring import FeatureMemory, ScoringConfig, check_threshold

__all__ = ["DISCREPANCY_ENTRIES", "compare_runs", "evaluate_run", "export_run", "with_memory_bank"]

#: ``map_options`` of ``map="memory"`` that :func:`with_memory_bank` fits the bank with.
MEMORY_FIT_OPTIONS = {"layers": "layers", "bank_size": "bank", "seed": "seed"}


def with_memory_bank(scoring, model, run_dir, *, data_root=None, category=None):
    """``scoring`` with a bank fitted on the run's good training images, if it needs one.

    Only for ``map="memory"`` without a ``bank`` in its ``map_options``; any other
    config is returned as it is. The bank (:meth:`FeatureMemory.fit`) is fitted on the
    training part of ``<category>/train/good``: without the good images the run held
    out for validation (they set the production threshold, and their own features must
    not be in the bank) and never on the test split; for a run trained on tiles, on the
    tiles of its ``tile_size`` that cover those images. ``map_options`` ``layers``,
    ``bank_size`` (a fraction or a count) and ``seed`` are passed to the fit.

    Args:
        scoring: a :class:`ScoringConfig` (or its dict, or None).
        model: the run's model.
        run_dir: the run folder.
        data_root, category: the dataset (default: the run's).

    Returns:
        The :class:`ScoringConfig` (None stays None).
    """
    if scoring is None:
        return None
    cfg = ScoringConfig.resolve(scoring, caller="evaluate")
    if cfg.map != "memory" or cfg.map_options.get("bank") is not None:
        return cfg
    config = RunFolder(run_dir).run_config()
    tiling = config.tiling
    root, category = data_root or config.data.root, category or config.data.category
    if not root or not category:
        raise ValueError(
            f"The run {str(run_dir)!r} does not record its data folder and category, which "
            "the 'memory' map's bank is fitted on; pass --data and --category."
        )
    good = _run_images(config, model, root, category, "train")
    if config.training.validation_split:
        good, _ = _held_out(config, good)
    images = [e["image"].numpy() for e in good]
    if tiling:  # a run trained on tiles: the bank holds the features of tiles of its size
        images = [tile for frame in images for tile in _tiles(frame, tiling[0])]
    images = np.stack(images)
    options = cfg.map_options
    fit = {arg: options[key] for key, arg in MEMORY_FIT_OPTIONS.items() if key in options}
    try:
        bank = FeatureMemory.fit(model, images, **fit)
    except ValueError as exc:
        given = {key: options[key] for key in MEMORY_FIT_OPTIONS if key in options}
        raise ValueError(
            f"The 'memory' map's bank could not be fitted on the run's training images with "
            f"map_options {given}: {exc}"
        ) from None
    return cfg.replace(map_options={**options, "bank": bank})


def _run_images(config, model, root, category, split, max_pixels=data.DEFAULT_MAX_PIXELS):
    """The images of ``split``, read as the run read them: at its image size (full
    resolution for a run on tiles) and in its colour mode."""
    return data.mvtec_dataset(
        root,
        category,
        split=split,
        image_size=config.image_size(model),
        color_mode=config.color_mode(int(model.input_shape[-1])),
        max_pixels=max_pixels,
    )


def _held_out(config, good):
    """``(training part, validation part)`` of the good images: the run's seeded split."""
    return training.split_validation(good, config.training.validation_split, config.training.seed)


def _tiles(frame, tile_size: int) -> list:
    """The tiles of ``tile_size`` covering ``frame`` ``[H, W, C]`` with the least overlap."""
    ys, xs = tile_grid(frame.shape[0], frame.shape[1], tile_size, 0)
    return [frame[y : y + tile_size, x : x + tile_size] for y, x in zip(ys.numpy(), xs.numpy())]


def evaluate_run(
    run_dir,
    *,
    data_root=None,
    category=None,
    out_dir=None,
    scoring=None,
    best=False,
    batch_size=16,
    overwrite=False,
    progress=True,
    check_data=None,
    max_pixels=data.DEFAULT_MAX_PIXELS,
):
    """Evaluates a run folder on its category's test split.

    The data root, category, image size and color mode default to those in the
    run's ``config.json``. The production threshold is set on the good images the
    run held out for validation (the same seeded split as in training). A run trained
    on tiles (``tile_size`` in its config) is evaluated on full-resolution images,
    scored tile by tile with its ``tile_size`` and ``tile_overlap``. The ``"memory"``
    map's bank, unless given, is fitted on the run's good training images
    (:func:`with_memory_bank`).

    Args:
        run_dir: a run folder written by :func:`keras_skipae.train`.
        data_root: dataset root (default: the run's).
        category: category (default: the run's).
        out_dir: where to write metrics and plots (default: ``<run_dir>/evaluation``).
        scoring: a :class:`~keras_skipae.scoring.ScoringConfig` (default: the defaults).
        best: evaluate ``best.keras`` instead of ``model.keras``.
        batch_size: scoring batch size.
        overwrite: replace existing output files.
        progress: show a progress bar.
        check_data: optional ``(root, category) -> None`` validator raising clear errors.
        max_pixels: an image file declaring more pixels is refused before decoding
            (:func:`keras_skipae.data.mvtec_dataset`); None: any size.

    Returns:
        ``(EvaluationResult, out_dir)``.

    Raises:
        ValueError: the run trained a segmentation model (``task="segmentation"``).
    """
    run = RunFolder(run_dir)
    config = run.run_config()
    run.check_reconstruction("evaluation")
    root = data_root or config.data.root
    out_dir = Path(out_dir) if out_dir is not None else run.evaluation_dir
    if overwrite:
        check_output_folder(out_dir, inputs=[*_run_inputs(run, best), root])
    category = category or config.data.category
    if not root or not category:
        raise ValueError(
            f"The run {str(run_dir)!r} does not record its data folder and category; "
            "pass --data and --category."
        )
    if check_data is not None:
        check_data(root, category)

    model = run.load(best=best)
    tiling = config.tiling
    test = _run_images(config, model, root, category, "test", max_pixels)
    val = None
    if config.training.validation_split:
        good = _run_images(config, model, root, category, "train", max_pixels)
        _, val = _held_out(config, good)
    scoring = with_memory_bank(scoring, model, run_dir, data_root=root, category=category)
    result = evaluation.evaluate(
        model,
        test,
        val_data=val,
        out_dir=out_dir,
        overwrite=overwrite,
        batch_size=batch_size,
        progress=progress,
        scoring=scoring,
        tile_size=tiling[0] if tiling else None,
        tile_overlap=tiling[1] if tiling else 0,
    )
    return result, out_dir


def export_run(
    run_dir,
    out,
    *,
    format: str = "saved_model",
    threshold=None,
    scoring: ScoringConfig | dict | None = None,
    best: bool = False,
    overwrite: bool = False,
    quantization: str = "float32",
    calibration=None,
    batch_size: int | None = None,
) -> dict:
    """Exports the model of a run folder written by ``keras_skipae.train``.

    The run's ``config.json`` gives the image size and colour mode, and for a run
    trained on tiles the tiling (the export then has a ``serving_tiled`` signature);
    its ``model.keras`` (or ``best.keras``) is the model.

    Args:
        run_dir: the run folder.
        out: the SavedModel folder, or the ``.keras``, ``.tflite``, ``.onnx`` or ``.xml`` file.
        format: ``"saved_model"``, ``"keras"``, or an edge format (``"litert"``, ``"onnx"``,
            ``"openvino"``: :func:`keras_skipae.export.export_edge`).
        threshold: None, a number, or ``"eval"``: the production threshold
            ``keras-skipae evaluate RUN`` wrote to ``<run>/evaluation/metrics.json``
            (refused if it was computed with other scoring settings).
        scoring: a :class:`~keras_skipae.scoring.ScoringConfig` (or its dict); None
            takes the defaults.
        best: export ``best.keras`` instead of ``model.keras``.
        overwrite: replace an existing ``out``: only an export keras_skipae made, outside
            the run (:func:`keras_skipae.ownership.check_replaceable`).
        quantization: LiteRT's ``"float32"``, ``"dynamic_range"`` or ``"int8"``.
        calibration: a folder of good images (int8 calibration and verification); None:
            for int8, the run's training split.
        batch_size: the edge file's fixed batch size (None: LiteRT 1, else dynamic).

    Returns:
        A dict: ``path``, ``format``, ``threshold``, ``threshold_source``,
        ``settings`` and ``hint`` (a message about an unused evaluated
        threshold, or None).

    Raises:
        ValueError: ``format="saved_model"`` for a run that trained a segmentation
            model (its SavedModel would score anomaly maps); ``format="keras"`` exports it.
    """

    if format not in ("saved_model", "keras", *EDGE_FORMATS):
        raise ValueError(
            "Expected `format` to be 'saved_model', 'keras', 'litert', 'onnx' or 'openvino'. "
            f"Received: format={format!r}"
        )
    if format == "keras" and (threshold is not None or scoring is not None):
        raise ValueError(
            "A .keras file holds the model only: threshold and scoring apply to "
            "format='saved_model'."
        )
    io_utils.check_writable(out, overwrite=overwrite, what="export")
    ownership.check_replaceable(
        out, "export", inputs=[run_dir], allowed=EXPORT_ENTRIES, file=format == "keras"
    )
    run = RunFolder(run_dir)
    if format != "keras":
        run.check_reconstruction(
            "a SavedModel export" if format == "saved_model" else f"a {format} export"
        )
    model, config = run.load(best=best, compile=False), run.run_config()
    if format == "keras":
        path = export_keras(model, out, overwrite=overwrite)
        keys = ("threshold", "threshold_source", "settings", "hint")
        return {"path": path, "format": format, **dict.fromkeys(keys)}
    cfg = ScoringConfig.resolve(scoring, caller="export_run")
    cfg = with_memory_bank(cfg, model, run_dir)  # the same bank as evaluate_run's
    threshold, source, hint = _export_threshold(run, cfg, threshold)
    metadata = {
        "run_dir": str(Path(run_dir).resolve()),
        "model_file": "best.keras" if best else "model.keras",
        "threshold_source": source,
        "run_config": config.compared(),
    }
    common = {"scoring": cfg, "threshold": threshold, "metadata": metadata, "overwrite": overwrite}
    if format in EDGE_FORMATS:
        path = _export_run_edge(
            run_dir,
            model,
            out,
            format=format,
            config=config,
            quantization=quantization,
            calibration=calibration,
            batch_size=batch_size,
            **common,
        )
    else:
        tiling = config.tiling
        path = export_saved_model(
            model,
            out,
            image_size=config.image_size(),
            color_mode=config.color_mode(int(model.input_shape[-1])),
            tile_size=tiling[0] if tiling else None,
            tile_overlap=tiling[1] if tiling else 0,
            **common,
        )
    return {
        "path": path,
        "format": format,
        "threshold": threshold,
        "threshold_source": source,
        "settings": cfg.to_dict(),
        "hint": hint,
    }


def _export_threshold(run: RunFolder, cfg: ScoringConfig, threshold):
    """``(threshold, source, hint)`` of :func:`export_run`: ``"eval"`` reads the run's
    evaluated threshold (refused if it does not apply to ``cfg``), a number is checked,
    None embeds none (``hint`` then names an evaluated threshold it could embed)."""
    evaluated, metrics_path, problem = run.threshold(cfg)
    if isinstance(threshold, str) and threshold == "eval":
        if evaluated is None:
            raise ValueError(
                problem
                or f"The run {str(run.path)!r} has no evaluated threshold: run `keras-skipae "
                f"evaluate {run.path}` first, or pass a number."
            )
        return evaluated, str(metrics_path), None
    if threshold is not None:
        return check_threshold(threshold), "explicit", None
    if evaluated is not None:
        hint = (
            f"the run has a production threshold {evaluated:.6g} in {str(metrics_path)!r}; "
            "pass --threshold eval to embed it (adds the is_anomalous output)"
        )
        return None, None, hint
    return None, None, None


def _export_run_edge(run_dir, model, out, *, format, config, calibration, **kwargs):
    """:func:`export_run`'s edge formats: the run's image size and colour mode, and its
    training split as the int8 calibration set unless ``calibration`` names a folder."""
    if config.tiling:
        raise ValueError(
            f"The run {str(run_dir)!r} scores images tile by tile, which a {format} export "
            "does not do; export it as a SavedModel (--format saved_model)."
        )
    size = config.data.image_size
    hw = (size, size) if isinstance(size, int) else tuple(size or model.input_shape[1:3])
    shape = (*hw, model.input_shape[-1])
    source = calibration
    if source is None and kwargs["quantization"] == "int8":
        if not config.data.root:
            raise ValueError(
                f"The run {str(run_dir)!r} records no data folder to calibrate the int8 export "
                "on: pass a folder of good images (--calibration DIR)."
            )
        source = (config.data.root, config.data.category)
    images = None if source is None else calibration_images(source, shape)
    return export_edge(
        model,
        out,
        format=format,
        image_size=size,
        color_mode=config.data.color_mode,
        calibration=images,
        **kwargs,
    )
