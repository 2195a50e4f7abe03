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

import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from keras_skipae import data, io_utils, ownership, training
from keras_skipae.apps import baselines
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


# --------------------------------------------------------------------------- number formatting


def _f(value, digits=3):
    if value is None:
        return "n/a"
    try:
        if value != value:  # nan
            return "n/a"
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


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
        f"val_loss {_f(summary['final_val_loss'], 5)}",
    )
    return summary


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
    color_mode = "rgb" if channels == 3 else "grayscale"
    good = data.mvtec_dataset(root, category, split="train", image_size=size, color_mode=color_mode)
    test = data.mvtec_dataset(root, category, split="test", image_size=size, color_mode=color_mode)

    data_config = {
        "root": str(Path(root).resolve()),
        "category": category,
        "image_size": size,
        "color_mode": color_mode,
    }
    models = {
        name: _train_one(name, i, good, out, settings, channels, seed, data_config, verbose)
        for i, name in enumerate(("ae", "aesc"))
    }
    results = {}
    for name in models:
        _log(verbose, f"[3/4] evaluating {name}")
        run_dir = out / "runs" / name
        results[name], _ = evaluate_run(
            run_dir, out_dir=report / name, overwrite=True, progress=verbose >= 1
        )
        previews = sorted(RunFolder(run_dir).previews_dir.glob("epoch_*.png"))
        if previews:
            shutil.copyfile(previews[-1], report / name / "training_preview.png")

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
        "models": {
            name: {
                **models[name],
                "image_auroc": results[name].image_auroc,
                "pixel_auroc": results[name].pixel_auroc,
                "aupro": results[name].aupro,
                "threshold": results[name].threshold,
                "precision": results[name].precision,
                "recall": results[name].recall,
                "per_defect": results[name].per_defect,
            }
            for name in models
        },
        "baselines": base,
        "seconds_total": round(time.monotonic() - t_start, 1),
    }
    comparison = json.loads(json.dumps(comparison, default=_json_default))

    io_utils.write_json(report / "comparison.json", comparison)
    md, page = _render_report(comparison, results)
    io_utils.write_text(report / "report.md", md)
    io_utils.write_text(report / "report.html", page)

    if verbose:
        print()
        print(_headline_table(comparison))
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


# How model names are written (registry keys are lower case).
_DISPLAY = {"ae": "AE", "aesc": "AESc", "unet": "U-Net"}


def _display(name: str) -> str:
    return _DISPLAY.get(name, name)


def _rows(comparison):
    rows = []
    for name, m in comparison["models"].items():
        rows.append((_display(name) + " + stains", m["image_auroc"], m["pixel_auroc"], m["aupro"]))
    labels = {
        "gaussian": "per-pixel Gaussian (baseline)",
        "patch_nn": "patch nearest neighbour (baseline)",
    }
    for name, m in comparison["baselines"].items():
        rows.append((labels.get(name, name), m["image_auroc"], m["pixel_auroc"], m["aupro"]))
    return rows


def _headline_table(comparison) -> str:
    lines = [f"{'method':<36}{'image AUROC':>12}{'pixel AUROC':>13}{'AUPRO':>8}"]
    for label, a, b, c in _rows(comparison):
        lines.append(f"{label:<36}{_f(a):>12}{_f(b):>13}{_f(c):>8}")
    return "\n".join(lines)


def _render_report(comparison, results):

    cat, size = comparison["category"], comparison["image_size"]
    cmd = "keras-skipae demo" + (" --quick" if comparison["quick"] else "")
    md = [
        "# keras_skipae demo report",
        "",
        f"Synthetic texture category **{cat}** at {size}x{size} px ({comparison['color_mode']}), "
        f"{comparison['settings']['n_train']} good training images (10 % held out for "
        "validation and the production threshold), "
        f"{comparison['settings']['n_test_good']} good and "
        f"{comparison['settings']['n_test_defect']} defective test images per defect type.",
        "",
        f"AE and AESc (Collin & De Vleeschouwer, ICPR 2020) were each trained on stain-corrupted "
        f"inputs with clean targets for at most {comparison['settings']['minutes_per_model']:g} "
        "minutes of wall time (MSE with the stained pixels weighted "
        f"{training.DEFAULT_STAIN_WEIGHT:g}x, `train`'s default). Anomaly map: the smoothed residual |x - x̂|; image score: its "
        "maximum (fixed in advance, see `keras_skipae.scoring`).",
        "",
        f"Produced by `{cmd}` in {comparison['seconds_total']:.0f} s. Training is bounded by "
        "wall time, so a busy or slow machine trains fewer steps (see the table below) and "
        "gets worse numbers.",
    ]
    if comparison["quick"]:
        md += [
            "",
            "**Quick mode**: a smoke test with seconds of training; the numbers are not "
            "meaningful.",
        ]
    md += [
        "",
        "## Results",
        "",
        "| method | image AUROC | pixel AUROC | AUPRO@0.3 |",
        "|---|---|---|---|",
    ]
    for label, a, b, c in _rows(comparison):
        md.append(f"| {label} | {_f(a)} | {_f(b)} | {_f(c)} |")
    md += [
        "",
        "| model | epochs | steps | training s | val loss | threshold | precision | recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in comparison["models"].items():
        md.append(
            f"| {name} | {m['epochs']} | {m['steps']} | {m['train_seconds']:.0f} | "
            f"{_f(m['final_val_loss'], 5)} | {_f(m['threshold'], 4)} | "
            f"{_f(m['precision'])} | {_f(m['recall'])} |"
        )
    md += ["", "## Per defect type (image AUROC / pixel AUROC / AUPRO)", ""]
    methods = list(comparison["models"]) + list(comparison["baselines"])
    md.append("| defect | " + " | ".join(methods) + " |")
    md.append("|---" * (len(methods) + 1) + "|")
    defects = sorted(next(iter(comparison["models"].values()))["per_defect"])
    for d in defects:
        cells = []
        for m in methods:
            src = comparison["models"].get(m) or comparison["baselines"].get(m)
            r = src["per_defect"].get(d, {})
            cells.append(
                f"{_f(r.get('image_auroc'), 2)} / {_f(r.get('pixel_auroc'), 2)} / "
                f"{_f(r.get('aupro'), 2)}"
            )
        md.append(f"| {d} | " + " | ".join(cells) + " |")
    images = []
    for name, result in results.items():
        md += ["", f"## {_display(name)}", ""]
        for role, caption in (
            (
                "training_preview",
                "training preview (last epoch): input, "
                "reconstruction, target, reconstruction "
                "of the target, residual x4",
            ),
            ("roc_image", "image-level ROC"),
            ("roc_pixel", "pixel-level ROC"),
            ("histogram", "scores of good and defective images"),
            ("cases", "worst and best cases"),
        ):
            rel = f"{name}/{role}.png"
            path = Path(result.files.get(role, "")) if role != "training_preview" else None
            if role == "training_preview" or (path and path.exists()):
                if role != "training_preview":
                    rel = f"{name}/{path.name}"
                md += [f"![{name} {caption}]({rel})", "", f"*{name}: {caption}*", ""]
                images.append((name, caption, rel))
    md += [
        "",
        "## Files",
        "",
        "* `comparison.json`: every number above.",
        "* `<model>/metrics.json`: the full evaluation of each model (per image scores too).",
        "* `../runs/<model>/`: the run folders (config.json, model.keras, history.csv, "
        "logs/ for TensorBoard). Evaluate one again with `keras-skipae evaluate <run>`.",
        "",
    ]
    md_text = "\n".join(md)
    return md_text, _markdown_to_html(md_text)


def _markdown_to_html(md_text: str) -> str:
    """A tiny converter for the report's own Markdown (headings, tables, images, lists)."""

    def inline(s):
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
        s = re.sub(r"\*(.+?)\*", r"<i>\1</i>", s)
        return s

    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>keras_skipae demo</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"
        "img{max-width:100%}</style></head><body>",
    ]
    table = []
    in_list = False
    for line in md_text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        if table:
            out.append("<table>")
            for i, cells in enumerate(table):
                tag = "th" if i == 0 else "td"
                out.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
            out.append("</table>")
            table = []
        if line.startswith("* "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        m = re.match(r"!\[(.*)\]\((.*)\)", line)
        if line.startswith("## "):
            out.append(f"<h2>{inline(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{inline(line[2:])}</h1>")
        elif m:
            out.append(f"<img src='{html.escape(m.group(2))}' alt='{html.escape(m.group(1))}'>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    run_demo(sys.argv[1] if len(sys.argv) > 1 else "keras_skipae_demo")
