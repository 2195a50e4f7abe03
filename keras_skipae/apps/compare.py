"""``keras-skipae discrepancy RUN_A RUN_B``: compare the layer discrepancy of two runs
(:func:`compare_runs`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from keras_skipae import data, io_utils, ownership, plotting
from keras_skipae.analysis import LayerDiscrepancy, make_probe_pairs, paper_trend
from keras_skipae.data.corruptions import Stains
from keras_skipae.models.taps import base_model, tap_names
from keras_skipae.runs import RunConfig, RunFolder


def _run_inputs(run: RunFolder, best: bool) -> list:
    """The files of a run a workflow reads (its outputs may go inside the run folder)."""
    return [run.config_path, run.model_path(best)]


def _probe_images(config: RunConfig, *, data_root, category, n, seed, image_shape):
    """Good images for probes: ``data_root``/the run's data, else synthetic ones."""

    root = data_root if data_root is not None else config.data.root
    category = category if category is not None else config.data.category
    h, w, c = image_shape
    color_mode = io_utils.color_mode_for(c)
    if root is not None and category is not None:
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


def _probe_shape(model, config: RunConfig) -> tuple:
    """``(H, W, C)`` of the probes: the model's input, else the run's image size (256)."""
    shape = tuple(model.input_shape[1:])
    if None in shape:
        size = config.data.image_size or 256
        shape = (int(size), int(size), shape[-1])
    return shape


def _labels(path_a: Path, path_b: Path) -> tuple[str, str]:
    """The runs' folder names, prefixed ``A:`` / ``B:`` when they are the same."""
    label_a, label_b = path_a.name or str(path_a), path_b.name or str(path_b)
    if label_a == label_b:
        label_a, label_b = f"A: {label_a}", f"B: {label_b}"
    return label_a, label_b


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
    images, source = _probe_images(
        ca,
        data_root=data_root,
        category=category,
        n=int(n_probes),
        seed=seed,
        image_shape=_probe_shape(ma, ca),
    )
    if corruption is None:
        corruption = Stains()
    clean, corrupted = make_probe_pairs(images, corruption, seed=seed)
    label_a, label_b = _labels(pa, pb)
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
