"""The demo's report: ``report.md`` and ``report.html`` from its comparison
(:func:`render_report`), and the table ``keras-skipae demo`` prints (:func:`headline_table`).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from keras_skipae import training


def fmt(value, digits=3) -> str:
    """``value`` with ``digits`` decimals; ``"n/a"`` for None and nan."""
    if value is None:
        return "n/a"
    try:
        if value != value:  # nan
            return "n/a"
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
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


def headline_table(comparison) -> str:
    lines = [f"{'method':<36}{'image AUROC':>12}{'pixel AUROC':>13}{'AUPRO':>8}"]
    for label, a, b, c in _rows(comparison):
        lines.append(f"{label:<36}{fmt(a):>12}{fmt(b):>13}{fmt(c):>8}")
    return "\n".join(lines)


def render_report(comparison, results):
    """The demo's report: ``(markdown, html)``."""
    md = _intro_lines(comparison) + _table_lines(comparison) + _figure_lines(results)
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


def _intro_lines(comparison) -> list[str]:
    """The report's title and what was run."""
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
    return md


def _table_lines(comparison) -> list[str]:
    """The report's result tables: overall, per model, per defect type."""
    md = [
        "",
        "## Results",
        "",
        "| method | image AUROC | pixel AUROC | AUPRO@0.3 |",
        "|---|---|---|---|",
    ]
    for label, a, b, c in _rows(comparison):
        md.append(f"| {label} | {fmt(a)} | {fmt(b)} | {fmt(c)} |")
    md += [
        "",
        "| model | epochs | steps | training s | val loss | threshold | precision | recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in comparison["models"].items():
        md.append(
            f"| {name} | {m['epochs']} | {m['steps']} | {m['train_seconds']:.0f} | "
            f"{fmt(m['final_val_loss'], 5)} | {fmt(m['threshold'], 4)} | "
            f"{fmt(m['precision'])} | {fmt(m['recall'])} |"
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
                f"{fmt(r.get('image_auroc'), 2)} / {fmt(r.get('pixel_auroc'), 2)} / "
                f"{fmt(r.get('aupro'), 2)}"
            )
        md.append(f"| {d} | " + " | ".join(cells) + " |")
    return md


def _figure_lines(results) -> list[str]:
    """One section per model with its figures."""
    md = []
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
    return md


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
