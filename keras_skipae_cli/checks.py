"""Checks that run before TensorFlow is imported: paths that must exist, argument values.

One function per subcommand, ``<name>(args)``; each raises :class:`UsageError` with a
one-line message, which the launcher prints as ``keras-skipae <command>: error: ...``
and answers with exit code 2 (as argparse does for a malformed command line). Checks
that need the library (a run folder's contents, a model's input size) stay with the
command, whose errors exit with code 1. This module imports only the standard library.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

#: The settings file of a keras_skipae SavedModel export (export.saved_model.SETTINGS_FILE).
SAVED_MODEL_SETTINGS = "assets/keras_skipae.json"


class UsageError(Exception):
    """A command line that names a missing path or a bad value (exit code 2)."""


def _exists(path, what: str) -> None:
    if not Path(path).exists():
        raise UsageError(f"{what} {str(path)!r} does not exist.")


def _folder(path, what: str) -> None:
    path = Path(path)
    if path.is_file():
        raise UsageError(f"{what} {str(path)!r} is a file; expected a folder.")
    _exists(path, what)
    if not path.is_dir():
        raise UsageError(f"{what} {str(path)!r} is not a folder.")


def _run(path) -> None:
    """A run folder: a folder with a ``config.json`` (as ``RunFolder.check`` requires)."""
    _folder(path, "Run folder")
    if not (Path(path) / "config.json").is_file():
        raise UsageError(
            f"{str(path)!r} is not a run folder: it has no config.json "
            "(expected a folder written by `keras-skipae train`)."
        )


#: The model files ``predict`` takes: a Keras model and the edge exports (LiteRT, ONNX, OpenVINO).
MODEL_FILES = (".keras", ".tflite", ".onnx", ".xml")


def _model(path) -> None:
    """``predict``'s MODEL: a run folder, a SavedModel export or a model file
    (:data:`MODEL_FILES`)."""
    path = Path(path)
    _exists(path, "Model")
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / SAVED_MODEL_SETTINGS).is_file():
            raise UsageError(
                f"Model {str(path)!r} is neither a run folder (no config.json) nor a "
                f"keras_skipae SavedModel export (no {SAVED_MODEL_SETTINGS})."
            )
    elif path.suffix not in MODEL_FILES:
        raise UsageError(
            f"Model {str(path)!r} is not a model file; expected a run folder, a SavedModel "
            f"folder or a {', '.join(MODEL_FILES)} file."
        )


def _finite(args, name: str, *, positive: bool, optional: bool = False) -> None:
    """A finite number, > 0 with ``positive``, else >= 0 (None where ``optional``)."""
    value = getattr(args, name)
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or value < 0 or (positive and value == 0):
        flag = "--" + name.replace("_", "-")
        bound = "> 0" if positive else ">= 0"
        raise UsageError(f"{flag} must be a finite number {bound}. Received: {flag} {value}")


def _at_least(args, name: str, low, *, optional: bool = False) -> None:
    value = getattr(args, name)
    if value is None and optional:
        return
    if value is None or value < low:
        flag = "--" + name.replace("_", "-")
        raise UsageError(f"{flag} must be at least {low}. Received: {flag} {value}")


def _check_tiling(args) -> None:
    """``--tile-size`` >= 1 and ``0 <= --tile-overlap < --tile-size`` (when given)."""
    _at_least(args, "tile_size", 1, optional=True)
    overlap = args.tile_overlap
    if overlap is not None and overlap < 0:
        raise UsageError(f"--tile-overlap must be at least 0. Received: --tile-overlap {overlap}")
    if args.tile_size is not None and overlap is not None and overlap >= args.tile_size:
        raise UsageError(
            f"--tile-overlap must be smaller than --tile-size ({args.tile_size}). "
            f"Received: --tile-overlap {overlap}"
        )


def check_data(root, category) -> None:
    """A dataset root in the MVTec AD layout that holds ``category``."""
    root = Path(root)
    _folder(root, "Data folder")
    available = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir())
    )
    if category not in available:
        raise UsageError(
            f"Category {category!r} not found in {str(root)!r}. Available categories: "
            f"{', '.join(available) if available else '(none: expected <root>/<category>/train)'}."
        )


def parse_threshold(text, *, allow_eval: bool):
    """``--threshold``: a number (or ``'eval'`` where ``allow_eval``)."""
    if text is None or (allow_eval and text == "eval"):
        return text
    try:
        value = float(text)
    except ValueError:
        expected = "a number or 'eval'" if allow_eval else "a number"
        raise UsageError(f"--threshold expects {expected}. Received: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"--threshold must be a finite number. Received: {text!r}")
    return value


def synth(args) -> None:
    _at_least(args, "image_size", 1)
    for name in ("n_train", "n_test_good", "n_test_defect"):
        _at_least(args, name, 0)


def discrepancy(args) -> None:
    _run(args.run_a)
    _run(args.run_b)
    if args.data is not None:
        _folder(args.data, "Data folder")
    _at_least(args, "n_probes", 1)


def parse_skips(text):
    """``--skips``: ``"all"``, ``()`` for ``"none"``, a tuple of levels, or None (unset)."""
    if text is None:
        return None
    value = text.strip().lower()
    if value in ("all", "none"):
        return "all" if value == "all" else ()
    try:
        levels = tuple(int(part) for part in value.split(","))
    except ValueError:
        levels = None
    if not levels or any(level < 0 for level in levels):
        raise UsageError(
            "--skips must be all, none or comma-separated levels >= 0 such as 1,2,3. "
            f"Received: --skips {text!r}"
        )
    return levels


def parse_rates(flag: str, text, *, scale: bool = False):
    """A float or a list of floats ("0.1,0.2"): each in (0, 1] with ``scale``, else [0, 1)."""
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = None
    if scale:
        ok, span = (lambda v: 0.0 < v <= 1.0), "(0, 1]"
    else:
        ok, span = (lambda v: 0.0 <= v < 1.0), "[0, 1)"
    if values is None or not all(ok(v) for v in values):
        raise UsageError(
            f"{flag} must be a number in {span} or comma-separated numbers (one per level). "
            f"Received: {flag} {text!r}"
        )
    return values[0] if len(values) == 1 else values


def train(args) -> None:
    check_data(args.data, args.category)
    args.skips = parse_skips(args.skips)
    args.skip_scale = parse_rates("--skip-scale", args.skip_scale, scale=True)
    args.skip_dropout = parse_rates("--skip-dropout", args.skip_dropout)
    args.dropout = parse_rates("--dropout", args.dropout)
    _at_least(args, "epochs", 1)
    _at_least(args, "steps_per_epoch", 1, optional=True)
    _at_least(args, "batch_size", 1)
    _at_least(args, "image_size", 1)
    _finite(args, "lr", positive=True)
    _finite(args, "stain_weight", positive=False, optional=True)
    if not 0.0 <= args.bn_momentum < 1.0:
        raise UsageError(
            f"--bn-momentum must be in [0, 1). Received: --bn-momentum {args.bn_momentum}"
        )
    if args.head_scale is not None and args.model != "aesc_head":
        raise UsageError(
            "--head-scale applies to a model with a head: it needs --model aesc_head. "
            f"Received: --model {args.model or 'aesc'} --head-scale {args.head_scale}"
        )
    _check_tiling(args)
    _at_least(args, "max_pixels", 1)
    if args.tile_size is None and args.tile_overlap:
        raise UsageError(
            f"--tile-overlap needs --tile-size. Received: --tile-overlap {args.tile_overlap}"
        )
    if not 0.0 <= args.val_split < 1.0:
        raise UsageError(f"--val-split must be in [0, 1). Received: --val-split {args.val_split}")
    _finite(args, "time_limit", positive=True, optional=True)
    _check_encoder(args)
    if args.task == "segmentation":
        _check_segmentation(args)


def _check_encoder(args) -> None:
    """``--freeze-encoder`` and ``--encoder-weights`` need ``--encoder``; a weights file exists."""
    for flag, value in (
        ("--freeze-encoder", args.freeze_encoder),
        ("--encoder-weights", args.encoder_weights),
    ):
        if value and args.encoder is None:
            shown = "" if value is True else f" {value}"
            raise UsageError(f"{flag} needs --encoder. Received: {flag}{shown}")
    if args.encoder_weights not in (None, "imagenet"):
        path = Path(args.encoder_weights)
        if not path.is_file():
            raise UsageError(
                "--encoder-weights must be 'imagenet' or an existing weights file. "
                f"Received: --encoder-weights {args.encoder_weights}"
            )


def _check_segmentation(args) -> None:
    """What ``--task segmentation`` refuses: corruptions, --stain-weight, tiles."""
    if args.corruption.lower() not in ("auto", "none"):
        raise UsageError(
            "--task segmentation trains on the images and masks as they are: --corruption "
            f"must be auto or none. Received: --corruption {args.corruption}"
        )
    if args.stain_weight is not None:
        raise UsageError(
            "--stain-weight weights corrupted pixels; --task segmentation corrupts none. "
            f"Received: --stain-weight {args.stain_weight}"
        )
    if args.tile_size is not None:
        raise UsageError(
            f"--tile-size is not supported with --task segmentation. Received: --tile-size "
            f"{args.tile_size}"
        )
    masks = Path(args.data) / args.category / "ground_truth"
    if not masks.is_dir():
        raise UsageError(
            f"--task segmentation reads the masks in {str(masks)!r}, which does not exist."
        )


def evaluate(args) -> None:
    _run(args.run)
    if args.data is not None:
        if args.category is not None:
            check_data(args.data, args.category)
        else:
            _folder(args.data, "Data folder")
    _at_least(args, "batch_size", 1)
    _at_least(args, "max_pixels", 1)


def demo(args) -> None:
    _finite(args, "minutes_per_model", positive=True, optional=True)


def export(args) -> None:
    _run(args.run)
    _finite(args, "smoothing", positive=False, optional=True)
    args.threshold = parse_threshold(args.threshold, allow_eval=True)
    if args.calibration is not None:
        _folder(args.calibration, "Calibration folder")
    _at_least(args, "batch_size", 1, optional=True)
    if args.quantization != "float32" and args.format != "litert":
        raise UsageError(
            f"--quantization {args.quantization} is for --format litert (got --format "
            f"{args.format})."
        )


def predict(args) -> None:
    _model(args.model)
    for path in args.inputs:
        _exists(path, "Input")
    args.threshold = parse_threshold(args.threshold, allow_eval=False)
    _at_least(args, "batch_size", 1)
    _at_least(args, "max_pixels", 1)
    _check_tiling(args)
    if args.min_scored is not None and not args.fail_on_anomaly:
        raise UsageError(
            f"--min-scored needs --fail-on-anomaly. Received: --min-scored {args.min_scored}"
        )
    _at_least(args, "min_scored", 0, optional=True)
    if args.fail_on_anomaly and args.threshold is None and str(args.model).endswith(".keras"):
        raise UsageError(
            "--fail-on-anomaly needs a threshold, and a .keras file has none: pass --threshold X."
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"The output {str(out)!r} exists and is not a folder.")
    if (out / "predictions.csv").exists() and not args.overwrite:
        raise UsageError(
            f"{str(out / 'predictions.csv')!r} already exists. Refusing to overwrite it; "
            "pass --overwrite to replace it (and the maps and overlays it lists)."
        )
    if not args.overwrite:
        _check_resume(args, out)


def predict_resume_settings(args) -> dict:
    """``keras_skipae.apps.predict.resume_settings`` for the command line (a test keeps the
    two in step)."""
    return {
        "version": 1,
        "model": os.path.abspath(args.model),
        "inputs": list(args.inputs),
        "resolved": [os.path.abspath(p) for p in args.inputs],
        "threshold": args.threshold,
        "save_maps": bool(args.save_maps),
        "overlay": bool(args.overlay),
        "best": bool(args.best),
        "tile_size": args.tile_size,
        "tile_overlap": args.tile_overlap,
        "max_pixels": args.max_pixels,
    }


def _check_resume(args, out: Path) -> None:
    """An interrupted prediction in ``out`` resumes only with the same settings."""
    state = out / ".predictions.resume.json"
    if not state.is_file():
        return
    try:
        stored = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = None
    settings = predict_resume_settings(args)
    if not isinstance(stored, dict):
        differ = [f"{state.name} is unreadable"]
    else:
        differ = sorted(k for k in settings if stored.get(k) != settings[k])
    if differ:
        raise UsageError(
            f"{str(out)!r} holds an interrupted prediction with other settings "
            f"({', '.join(differ)}). Run the same command again to resume it, or pass "
            "--overwrite to start again."
        )
