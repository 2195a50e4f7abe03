"""Workflows over run folders: evaluate a run, export a run, compare two runs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from keras_skipae import data, evaluation, io_utils, ownership, plotting, training
from keras_skipae.analysis import LayerDiscrepancy, make_probe_pairs, paper_trend
from keras_skipae.data.corruptions import Stains
from keras_skipae.evaluation.evaluate import check_output_folder
from keras_skipae.export.api import calibration_images
from keras_skipae.export.edge import EDGE_FORMATS, export_edge
from keras_skipae.export.keras import export_keras
from keras_skipae.export.saved_model import EXPORT_ENTRIES, check_threshold, export_saved_model
from keras_skipae.models.taps import base_model, tap_names
from keras_skipae.ops.tiling import tile_grid
from keras_skipae.runs import RunConfig, RunFolder
from keras_skipae.scoring import FeatureMemory, ScoringConfig

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
    good = data.mvtec_dataset(
        root,
        category,
        split="train",
        image_size=config.image_size(model),
        color_mode=config.color_mode(int(model.input_shape[-1])),
    )
    if config.training.validation_split:
        good, _ = training.split_validation(
            good, config.training.validation_split, config.training.seed
        )
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


def _tiles(frame, tile_size: int) -> list:
    """The tiles of ``tile_size`` covering ``frame`` ``[H, W, C]`` with the least overlap."""
    ys, xs = tile_grid(frame.shape[0], frame.shape[1], tile_size, 0)
    return [frame[y : y + tile_size, x : x + tile_size] for y, x in zip(ys.numpy(), xs.numpy())]


def _run_inputs(run: RunFolder, best: bool) -> list:
    """The files of a run a workflow reads (its outputs may go inside the run folder)."""
    return [run.config_path, run.model_path(best)]


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
    size = config.image_size(model)
    color_mode = config.color_mode(int(model.input_shape[-1]))
    test = data.mvtec_dataset(
        root,
        category,
        split="test",
        image_size=size,
        color_mode=color_mode,
        max_pixels=max_pixels,
    )
    val = None
    fraction = config.training.validation_split
    if fraction:
        good = data.mvtec_dataset(
            root,
            category,
            split="train",
            image_size=size,
            color_mode=color_mode,
            max_pixels=max_pixels,
        )
        _, val = training.split_validation(good, fraction, config.training.seed)
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
        return {
            "path": path,
            "format": format,
            "threshold": None,
            "threshold_source": None,
            "settings": None,
            "hint": None,
        }
    cfg = ScoringConfig.resolve(scoring, caller="export_run")
    cfg = with_memory_bank(cfg, model, run_dir)  # the same bank as evaluate_run's
    evaluated, metrics_path, problem = run.threshold(cfg)
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
        threshold = check_threshold(threshold)
        source = "explicit"
    elif evaluated is not None:
        hint = (
            f"the run has a production threshold {evaluated:.6g} in {str(metrics_path)!r}; "
            "pass --threshold eval to embed it (adds the is_anomalous output)"
        )
    tiling = config.tiling
    image_size = config.image_size()
    metadata = {
        "run_dir": str(Path(run_dir).resolve()),
        "model_file": "best.keras" if best else "model.keras",
        "threshold_source": source,
        "run_config": config.compared(),
    }
    if format in EDGE_FORMATS:
        path = _export_run_edge(
            run_dir,
            model,
            out,
            format=format,
            config=config,
            tiling=tiling,
            scoring=cfg,
            threshold=threshold,
            metadata=metadata,
            quantization=quantization,
            calibration=calibration,
            batch_size=batch_size,
            overwrite=overwrite,
        )
    else:
        path = export_saved_model(
            model,
            out,
            scoring=cfg,
            threshold=threshold,
            image_size=image_size,
            color_mode=config.color_mode(int(model.input_shape[-1])),
            tile_size=tiling[0] if tiling else None,
            tile_overlap=tiling[1] if tiling else 0,
            metadata=metadata,
            overwrite=overwrite,
        )
    return {
        "path": path,
        "format": format,
        "threshold": threshold,
        "threshold_source": source,
        "settings": cfg.to_dict(),
        "hint": hint,
    }


def _export_run_edge(run_dir, model, out, *, format, config, tiling, calibration, **kwargs):
    """:func:`export_run`'s edge formats: the run's image size and colour mode, and its
    training split as the int8 calibration set unless ``calibration`` names a folder."""
    if tiling:
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


def _probe_images(config: RunConfig, *, data_root, category, n, seed, image_shape):
    """Good images for probes: ``data_root``/the run's data, else synthetic ones."""

    root = data_root if data_root is not None else config.data.root
    category = category if category is not None else config.data.category
    h, w, c = image_shape
    color_mode = "rgb" if c == 3 else "grayscale"
    if root is not None and category is not None:
        from pathlib import Path

        if not Path(root).is_dir():
            raise FileNotFoundError(f"Data folder {str(root)!r} does not exist.")
        size = (h, w)
        images = []
        for split in ("test", "train"):  # good test images first: never trained on
            try:
                ds = data.mvtec_dataset(
                    root, category, split, image_size=size, color_mode=color_mode
                )
            except data.DatasetNotFoundError:
                continue
            for e in ds:
                if int(e["label"]) == 0:
                    images.append(e["image"].numpy())
                    if len(images) == n:
                        break
            if len(images) == n:
                break
        if not images:
            raise ValueError(f"No good image found in {str(root)!r}, category {category!r}.")
        return np.stack(images), {"root": str(root), "category": category, "source": "data"}
    synth = category if category in data.synthetic.CATEGORIES else ("woven" if c == 3 else "mesh")
    images = []
    for i in range(n):
        img, _ = data.synthetic.generate_sample(synth, image_size=h, seed=(int(seed), 1000 + i))
        img = img.astype("float32") / 255.0
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] != c:
            img = img.mean(-1, keepdims=True) if c == 1 else np.repeat(img[..., :1], c, -1)
        images.append(img)
    return np.stack(images), {"category": synth, "source": "synthetic"}


def _load_comparable(run_a, run_b, best):
    """``[(path, tapped model, config)] * 2``, checked to take the same input and taps."""
    loaded = []
    for run in (run_a, run_b):
        folder = RunFolder(run)
        model = folder.load(best=best, compile=False)
        loaded.append((Path(run), base_model(model), folder.run_config()))
    (_, ma, _), (_, mb, _) = loaded
    if tuple(ma.input_shape[1:]) != tuple(mb.input_shape[1:]):
        raise ValueError(
            f"The runs take different inputs: {ma.input_shape[1:]} and {mb.input_shape[1:]}."
        )
    if tap_names(ma) != tap_names(mb):
        raise ValueError(
            f"The runs' taps do not line up: {tap_names(ma)} vs {tap_names(mb)} "
            "(compare models of the same depth)."
        )
    return loaded


#: What :func:`compare_runs` writes in its output folder (besides the marker).
DISCREPANCY_ENTRIES = (
    "channel_means.png",
    "cosine_per_layer.png",
    "discrepancy.json",
    "discrepancy.csv",
)


def _write_comparison(folder, results, layers, idx, document):
    """The figures, ``discrepancy.json`` and ``discrepancy.csv`` of :func:`compare_runs`."""
    plotting.plot_channel_means(
        {
            k: (
                [r.means_clean[n][idx] for n in layers],
                [r.means_corrupted[n][idx] for n in layers],
            )
            for k, r in results.items()
        },
        layers=layers,
        title=f"Channel means, clean vs stained (probe {idx})",
        path=folder / "channel_means.png",
        close=True,
    )
    n_pairs = len(next(iter(results.values())).cosine[layers[0]])
    plotting.plot_similarity_distribution(
        {k: r.cosine for k, r in results.items()},
        layers=layers,
        title=f"cos(mu_i(clean), mu_i(stained)), {n_pairs} pairs",
        path=folder / "cosine_per_layer.png",
        close=True,
    )
    io_utils.write_json(folder / "discrepancy.json", document)
    rows = [row for k, r in results.items() for row in r.to_rows(model=k)]
    with open(folder / "discrepancy.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def compare_runs(
    run_a,
    run_b,
    *,
    data_root=None,
    category=None,
    n_probes: int = 16,
    seed: int = 0,
    corruption=None,
    out_dir=None,
    overwrite: bool = False,
    best: bool = False,
) -> dict:
    """Compares the layer discrepancy of two trained runs on the same probe pairs.

    The command ``keras-skipae discrepancy RUN_A RUN_B``. Loads each run's
    ``model.keras`` (:func:`keras_skipae.training.load_run`), draws ``n_probes``
    good images (from ``data_root``/``category``, else the data recorded in
    RUN_A's ``config.json``, else the built-in synthetic generator), stains them
    with ``Stains()`` and ``seed``, and writes to ``out_dir``:

    * ``channel_means.png``: figure (a), the paper's Fig. 2 for the median-sized stain;
    * ``cosine_per_layer.png``: figure (b), the paper's Fig. 3;
    * ``discrepancy.json`` (per-pair values, medians, :func:`paper_trend` with
      RUN_A as the model without skips) and ``discrepancy.csv`` (one row per
      model, layer and pair).

    Args:
        run_a, run_b: run folders written by ``keras-skipae train``. Put the
            model without skips (AE) first for the trend check.
        data_root, category: where the probes come from (default: the run's).
        n_probes: number of probe pairs.
        seed: stain seed (and synthetic image seed).
        corruption: the corruption (default ``Stains()``).
        out_dir: output folder (default ``<run_b>/discrepancy``); written
            atomically; refused if it exists unless ``overwrite``.
        overwrite: replace an existing ``out_dir``: only a discrepancy folder keras_skipae
            made (:func:`keras_skipae.ownership.check_replaceable`).
        best: load ``best.keras`` instead of ``model.keras``.

    Returns:
        A dict with ``out_dir``, ``labels``, ``layers``, ``medians`` and ``trend``.
    """
    out_dir = Path(out_dir) if out_dir is not None else RunFolder(run_b).discrepancy_dir
    io_utils.check_writable(out_dir, overwrite=overwrite, what="output folder")
    reads = [f for r in (run_a, run_b) for f in _run_inputs(RunFolder(r), best)] + [data_root]
    ownership.check_replaceable(out_dir, "discrepancy", inputs=reads, allowed=DISCREPANCY_ENTRIES)
    if int(n_probes) < 1:
        raise ValueError(f"`n_probes` must be >= 1. Received: n_probes={n_probes!r}")
    (pa, ma, ca), (pb, mb, cb) = _load_comparable(run_a, run_b, best)
    shape = tuple(ma.input_shape[1:])
    if None in shape:
        size = ca.data.image_size or 256
        shape = (int(size), int(size), shape[-1])
    images, source = _probe_images(
        ca, data_root=data_root, category=category, n=int(n_probes), seed=seed, image_shape=shape
    )
    if corruption is None:
        corruption = Stains()
    clean, corrupted = make_probe_pairs(images, corruption, seed=seed)
    label_a, label_b = pa.name or str(pa), pb.name or str(pb)
    if label_a == label_b:
        label_a, label_b = f"A: {label_a}", f"B: {label_b}"
    results = {
        label_a: LayerDiscrepancy(ma)(clean, corrupted, return_means=True),
        label_b: LayerDiscrepancy(mb)(clean, corrupted, return_means=True),
    }
    layers = results[label_a].layers
    trend = paper_trend(results[label_a], results[label_b])
    area = np.abs(clean - corrupted).max(-1).reshape(len(clean), -1).mean(-1)
    idx = int(np.argsort(area)[len(area) // 2])
    with io_utils.atomic_path(
        out_dir, overwrite=overwrite, is_dir=True, what="output folder"
    ) as tmp:
        document = {
            "runs": {label_a: str(pa), label_b: str(pb)},
            "probes": dict(source, n=len(clean), seed=int(seed), corruption=repr(corruption)),
            "trend": trend,
            "results": {k: r.to_dict() for k, r in results.items()},
        }
        _write_comparison(tmp, results, layers, idx, document)
        ownership.mark_owned(tmp, "discrepancy")
    return {
        "out_dir": out_dir,
        "labels": [label_a, label_b],
        "layers": layers,
        "shapes": results[label_a].shapes,
        "medians": {k: r.median() for k, r in results.items()},
        "trend": trend,
        "probes": source,
    }
