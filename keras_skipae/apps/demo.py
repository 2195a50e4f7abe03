"""``keras-skipae demo`` and ``keras-skipae evaluate``: the end-to-end glue.

:func:`run_demo` generates a synthetic texture category (MVTec AD layout,
:mod:`keras_skipae.data.synthetic`), trains an AE and an AESc on stain-corrupted
good images (Collin & De Vleeschouwer, ICPR 2020), evaluates both with
:func:`keras_skipae.evaluate` next to two non-learned baselines
(:mod:`keras_skipae.apps.baselines`), and writes a report folder::

    <out>/data/<category>/...          the generated images
    <out>/runs/{ae,aesc}/              run folders (config.json, model.keras, history.csv, logs/)
    <out>/report/report.md             the summary, embedding the plots (also report.html)
    <out>/report/comparison.json       every number of the report
    <out>/report/{ae,aesc}/            metrics.json, roc_image.png, roc_pixel.png, cases.png,
                                       score_histogram.png, training_preview.png

The output folder defaults to ``./keras_skipae_demo``. An existing demo is never
overwritten silently: pass ``overwrite=True`` (``--overwrite``), which replaces
the demo's ``data/``, ``runs/`` and ``report/`` sub-folders, and only in a demo folder
that holds nothing else (:func:`keras_skipae.ownership.check_replaceable`).

Training is bounded by wall time (``minutes_per_model``), so the demo finishes
in a predictable time (under 10 minutes on a 2-core CPU; ``quick=True``: about a
minute). The numbers therefore depend on the machine's speed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from keras_skipae import data, io_utils, ownership, training
from keras_skipae.apps import baselines
from keras_skipae.apps.demo_report import fmt, headline_table, render_report
from keras_skipae.apps.workflows import evaluate_run
from keras_skipae.data import image_info
from keras_skipae.runs import RunFolder

__all__ = ["DEMO_SETTINGS", "run_demo"]

#: The demo's recipe: full and quick.
DEMO_SETTINGS = {
    "full": {
        "image_size": 128,
        "n_train": 100,
        "n_test_good": 16,
        "n_test_defect": 6,
        "batch_size": 16,
        "minutes_per_model": 3.0,
        "steps_per_epoch": 25,
        "max_epochs": 200,
        "depth": None,
    },
    "quick": {
        "image_size": 64,
        "n_train": 40,
        "n_test_good": 8,
        "n_test_defect": 3,
        "batch_size": 8,
        "minutes_per_model": 0.25,
        "steps_per_epoch": 5,
        "max_epochs": 50,
        "depth": 4,
    },
}
DEFAULT_CATEGORY = "wood"
_DEMO_PARTS = ("data", "runs", "report")
DEMO_MARKER = ".keras_skipae_demo"
"""The marker file the demo left in its output folder before
:data:`keras_skipae.ownership.MARKER` existed (still accepted by ``overwrite``)."""
_DEMO_RUNS = ("runs/ae", "runs/aesc")  # the run folders the demo writes


def _log(verbose, *parts):
    if verbose:
        print(*parts, flush=True)


# --------------------------------------------------------------------------- the demo


def _prepare_out(out: Path, overwrite: bool):
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"The demo output {str(out)!r} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"The demo folder {str(out)!r} already exists and is not empty. Pass "
                "--overwrite (overwrite=True) to replace its data/, runs/ and report/, "
                "or choose another --out."
            )
        ownership.check_replaceable(out, "demo", allowed=_DEMO_PARTS, own=_DEMO_RUNS)
        for part in _DEMO_PARTS:
            p = out / part
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).unlink(missing_ok=True)  # superseded by the marker
    ownership.mark_owned(out, "demo")


def _channels_of(root: Path, category: str) -> int:

    first = sorted((root / category / "train" / "good").iterdir())[0]
    info = image_info(first)
    return 3 if int(info.get("channels", 1)) >= 3 else 1


def _train_one(name, i, good, out, settings, channels, seed, data_config, verbose) -> dict:
    """Trains one demo model; returns its training summary."""
    _log(
        verbose,
        f"[2/4] training {name} with stains for up to "
        f"{settings['minutes_per_model']:g} min ({i + 1}/2)",
    )
    size = settings["image_size"]
    kwargs = {"input_shape": [size, size, channels], "bn_momentum": 0.9}
    if settings["depth"]:
        kwargs["depth"] = settings["depth"]
    run = training.train(
        name,
        good,
        model_kwargs=kwargs,
        epochs=settings["max_epochs"],
        steps_per_epoch=settings["steps_per_epoch"],
        batch_size=settings["batch_size"],
        seed=seed,
        run_dir=out / "runs" / name,
        time_limit=60.0 * settings["minutes_per_model"],
        verbose="auto" if verbose >= 2 else 0,
        data_config=data_config,
    )
    h = run.history
    summary = {
        "epochs": len(h.get("epoch", [])),
        "steps": int(run.model.optimizer.iterations.numpy()),
        "train_seconds": round(run.seconds, 1),
        "final_loss": h["loss"][-1],
        "final_val_loss": h.get("val_loss", [None])[-1],
    }
    _log(
        verbose,
        f"      {summary['epochs']} epochs in {run.seconds:.0f} s, "
        f"val_loss {fmt(summary['final_val_loss'], 5)}",
    )
    return summary


def _make_data(out: Path, category, settings, seed, verbose):
    """Writes the synthetic data set; ``(good, test, channels, data_config)``."""
    size = settings["image_size"]
    _log(verbose, f"[1/4] generating synthetic '{category}' images ({size} px) in {out / 'data'}")
    root = data.make_dataset(
        out / "data",
        categories=[category],
        image_size=size,
        n_train=settings["n_train"],
        n_test_good=settings["n_test_good"],
        n_test_defect=settings["n_test_defect"],
        seed=seed,
    )
    channels = _channels_of(root, category)
    color_mode = io_utils.color_mode_for(channels)
    good = data.mvtec_dataset(root, category, split="train", image_size=size, color_mode=color_mode)
    test = data.mvtec_dataset(root, category, split="test", image_size=size, color_mode=color_mode)
    data_config = {
        "root": str(Path(root).resolve()),
        "category": category,
        "image_size": size,
        "color_mode": color_mode,
    }
    return good, test, channels, data_config


def _evaluate_one(name, out: Path, report: Path, verbose):
    """Evaluates the run ``name`` into ``report/<name>`` (with its last training preview)."""
    _log(verbose, f"[3/4] evaluating {name}")
    run_dir = out / "runs" / name
    result, _ = evaluate_run(run_dir, out_dir=report / name, overwrite=True, progress=verbose >= 1)
    previews = sorted(RunFolder(run_dir).previews_dir.glob("epoch_*.png"))
    if previews:
        shutil.copyfile(previews[-1], report / name / "training_preview.png")
    return result


def _model_entry(trained: dict, result) -> dict:
    """A model's entry of the comparison: its training summary and its metrics."""
    keys = ("image_auroc", "pixel_auroc", "aupro", "threshold", "precision", "recall")
    return {**trained, **{k: getattr(result, k) for k in keys}, "per_defect": result.per_defect}


def run_demo(
    out_dir="keras_skipae_demo",
    *,
    quick: bool = False,
    category: str | None = None,
    minutes_per_model: float | None = None,
    overwrite: bool = False,
    seed: int = 0,
    verbose: int = 1,
) -> dict:
    """Generates data, trains AE and AESc with stains, evaluates both, writes a report.

    Args:
        out_dir: the demo folder (default ``./keras_skipae_demo``).
        quick: a ~1-minute smoke run (64 px, a few seconds of training per model).
        category: a synthetic category (default ``"wood"``, a texture).
        minutes_per_model: training wall-time budget per model (default 3, quick 0.25).
        overwrite: replace the demo's data/, runs/ and report/ in ``out_dir``.
        seed: data, split, corruption and weight seed.
        verbose: 0 quiet, 1 progress lines, 2 also Keras' progress bars.

    Returns:
        The comparison dict also written to ``report/comparison.json``.

    Raises:
        FileExistsError: ``out_dir`` is a non-empty folder and ``overwrite`` is False.
    """

    t_start = time.monotonic()
    settings = dict(DEMO_SETTINGS["quick" if quick else "full"])
    if minutes_per_model is not None:
        settings["minutes_per_model"] = float(minutes_per_model)
    category = category or DEFAULT_CATEGORY
    if category not in data.list_categories():
        raise ValueError(
            f"Unknown synthetic category. Expected one of {data.list_categories()}. "
            f"Received: category={category!r}"
        )
    out = Path(out_dir)
    _prepare_out(out, overwrite)
    report = out / "report"
    report.mkdir()

    size = settings["image_size"]
    good, test, channels, data_config = _make_data(out, category, settings, seed, verbose)
    color_mode = data_config["color_mode"]
    models = {
        name: _train_one(name, i, good, out, settings, channels, seed, data_config, verbose)
        for i, name in enumerate(("ae", "aesc"))
    }
    results = {name: _evaluate_one(name, out, report, verbose) for name in models}

    _log(verbose, "[4/4] baselines and report")
    train_arrays = baselines.load_arrays(good)
    test_arrays = baselines.load_arrays(test)
    base = {}
    for bname in ("gaussian", "patch_nn"):
        base[bname] = baselines.evaluate_baseline(bname, train_arrays["image"], test_arrays)

    comparison = {
        "category": category,
        "image_size": size,
        "color_mode": color_mode,
        "quick": quick,
        "settings": settings,
        "seed": seed,
        "models": {name: _model_entry(models[name], results[name]) for name in models},
        "baselines": base,
        "seconds_total": round(time.monotonic() - t_start, 1),
    }
    comparison = json.loads(json.dumps(comparison, default=_json_default))

    io_utils.write_json(report / "comparison.json", comparison)
    md, page = render_report(comparison, results)
    io_utils.write_text(report / "report.md", md)
    io_utils.write_text(report / "report.html", page)

    if verbose:
        print()
        print(headline_table(comparison))
        print(f"\nreport: {(report / 'report.md').resolve()}  (also report.html)")
        print(f"total time: {time.monotonic() - t_start:.0f} s")
    return comparison


def _json_default(value):
    try:
        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, float) and value != value:
        return None
    return str(value)


if __name__ == "__main__":  # pragma: no cover
    run_demo(sys.argv[1] if len(sys.argv) > 1 else "keras_skipae_demo")
