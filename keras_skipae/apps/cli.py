"""The ``keras-skipae`` command line.

Subcommands: ``demo``, ``train``, ``evaluate``, ``discrepancy``, ``export``, ``synth``.
Heavy modules (TensorFlow) are imported inside the subcommands, so ``--help`` is
instant. Errors print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class CLIError(Exception):
    """An error to report to the user as one line, without a traceback."""


# Each subcommand is a pair: _add_<name>(subparsers) registers its arguments and
# sets ``func``; the function receives the parsed ``args`` and returns an exit code.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-skipae",
        description="Reconstruction-based visual anomaly detection (AE, AESc, U-Net) in Keras 3.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    for p in sub.choices.values():  # also after the subcommand; SUPPRESS keeps a --debug before it
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show full tracebacks on error",
        )
    return parser


_SUBCOMMANDS: list = []

# scoring.ANOMALY_MAPS without "deviation", which needs statistics the CLI cannot pass
# (listed here so that the parser needs no TensorFlow; a test keeps them in step).
CLI_MAPS = ("residual", "ssim", "mc_dropout", "discrepancy", "combined", "learned")


def _add_synth(sub):
    p = sub.add_parser(
        "synth",
        help="write synthetic inspection data in the MVTec AD layout",
        description="Write procedural textures and an object part with realistic defects and "
        "exact ground-truth masks, in the MVTec AD folder layout.",
    )
    p.add_argument("--out", required=True, help="dataset root to create")
    p.add_argument(
        "--categories",
        nargs="+",
        default=None,
        help="categories to generate (default: all: woven mesh wood gravel nut)",
    )
    p.add_argument("--image-size", type=int, default=128, help="image side in pixels")
    p.add_argument("--n-train", type=int, default=100, help="good training images per category")
    p.add_argument("--n-test-good", type=int, default=16, help="good test images per category")
    p.add_argument("--n-test-defect", type=int, default=6, help="test images per defect type")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--preview",
        action="store_true",
        help="also save corruption_preview.png and defects_preview.png in --out",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=_run_synth)


def _run_synth(args):
    from keras_skipae.data import synthetic

    root = synthetic.make_dataset(
        args.out,
        categories=args.categories,
        image_size=args.image_size,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect=args.n_test_defect,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"wrote {root} ({', '.join(args.categories or synthetic.list_categories())})")
    if args.preview:
        for path in synthetic.preview(
            root, categories=args.categories, image_size=args.image_size, seed=args.seed
        ):
            print(f"wrote {path}")
    return 0


_SUBCOMMANDS.append(_add_synth)


# --------------------------------------------------------------------------- discrepancy
# (the logic lives in keras_skipae.apps.workflows.compare_runs)


def _add_discrepancy(sub):
    p = sub.add_parser(
        "discrepancy",
        help="compare the layer discrepancy of two trained runs (e.g. AE vs AESc)",
        description="Stain the same good images for both runs and compare, layer by layer, "
        "the cosine similarity between the channel means of each clean image and its stained "
        "version (Collin, de Bodt, Mulders & De Vleeschouwer, 'Don't skip the skips', ESANN). "
        "Writes channel_means.png (their Fig. 2), cosine_per_layer.png (Fig. 3), "
        "discrepancy.json and discrepancy.csv. Put the run without skips first.",
    )
    p.add_argument("run_a", help="run folder (e.g. the AE)")
    p.add_argument("run_b", help="run folder (e.g. the AESc)")
    p.add_argument(
        "--data",
        default=None,
        help="dataset root for the probe images (default: RUN_A's, else synthetic)",
    )
    p.add_argument("--category", default=None, help="category (default: RUN_A's)")
    p.add_argument("--n-probes", type=int, default=16, help="number of probe pairs (16)")
    p.add_argument("--seed", type=int, default=0, help="stain seed (0)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_B/discrepancy)")
    p.add_argument("--best", action="store_true", help="use best.keras instead of model.keras")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_run_discrepancy)


def _run_discrepancy(args):
    from keras_skipae.apps import workflows

    info = workflows.compare_runs(
        args.run_a,
        args.run_b,
        data_root=args.data,
        category=args.category,
        n_probes=args.n_probes,
        seed=args.seed,
        out_dir=args.out,
        overwrite=args.overwrite,
        best=args.best,
    )
    a, b = info["labels"]
    print(
        f"median cosine similarity clean vs stained, {args.n_probes} probe pairs "
        f"({info['probes'].get('source')} {info['probes'].get('category')}):"
    )
    print(f"{'layer':16s}{'h x w':>10s}{a[:18]:>20s}{b[:18]:>20s}")
    for name in info["layers"]:
        h, w = info["shapes"][name][:2]
        print(
            f"{name:16s}{f'{h}x{w}':>10s}{info['medians'][a][name]:20.4f}"
            f"{info['medians'][b][name]:20.4f}"
        )
    t = info["trend"]
    print(
        f"paper's trend (B falls through the decoder and ends below A): "
        f"{'yes' if t['reproduced'] else 'no'}"
    )
    print(f"wrote {info['out_dir']}")
    return 0


_SUBCOMMANDS.append(_add_discrepancy)


# --------------------------------------------------------------------------- train / evaluate / demo
# (the logic lives in keras_skipae.training, keras_skipae.evaluation and keras_skipae.demo)


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a model on the good images of an MVTec-layout category",
        description="Train AE / AESc / U-Net on stain-corrupted good images (target: the clean "
        "image) of <data>/<category>/train/good, in a run folder that resumes when started "
        "again with the same arguments.",
    )
    p.add_argument("--data", required=True, help="dataset root in the MVTec AD layout")
    p.add_argument("--category", required=True, help="category folder under --data")
    p.add_argument(
        "--model",
        default="aesc",
        help="registry name: ae, aesc, aesc_head (with a learned anomaly head), unet "
        "(default: aesc)",
    )
    p.add_argument("--out", required=True, help="run folder (config.json, model.keras, ...)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="batches per epoch (default: one pass over the training images)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=128, help="images are resized to this side")
    p.add_argument("--color-mode", choices=("grayscale", "rgb"), default="grayscale")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--loss", default="mse", help="mse, l1, ssim, mse+ssim, l1+ssim")
    p.add_argument(
        "--corruption",
        default="auto",
        help="auto (default: stains; anomalies for a model with a head such as aesc_head), "
        "stains, anomalies, scratches, drops, noise, a mix such as stains+scratches, or "
        "'none' (plain AE recipe)",
    )
    p.add_argument(
        "--stain-weight",
        type=float,
        default=None,
        help="loss weight of the corrupted pixels relative to the clean ones "
        "(default 10 with a corruption and a per-pixel loss, else 1)",
    )
    p.add_argument("--filters", type=int, default=None, help="first-stage filters (model default)")
    p.add_argument("--depth", type=int, default=None, help="number of stride-2 stages")
    p.add_argument(
        "--bn-momentum",
        type=float,
        default=0.9,
        help="BatchNorm momentum (default 0.9: the 0.99 of Keras lags in short runs)",
    )
    p.add_argument("--val-split", type=float, default=0.1, help="held-out good images (fraction)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force XLA on/off (default: on with a GPU, off on CPU)",
    )
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default")
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop training after this many seconds",
    )
    p.add_argument(
        "--schedule",
        choices=("auto", "cosine", "plateau", "none"),
        default="auto",
        help="learning-rate schedule (default auto: cosine decay over --time-limit when one "
        "is given, else ReduceLROnPlateau)",
    )
    p.add_argument("--save-best", action="store_true", help="also keep best.keras (val loss)")
    p.add_argument("--no-resume", action="store_true", help="start an interrupted run again")
    p.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _check_data(root, category):
    """Clear one-line errors for a missing data folder or category (without importing TF)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder {str(root)!r} does not exist.")
    available = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir())
    )
    if category not in available:
        raise FileNotFoundError(
            f"Category {category!r} not found in {str(root)!r}. Available categories: "
            f"{', '.join(available) if available else '(none: expected <root>/<category>/train)'}."
        )


def _run_train(args):
    _check_data(args.data, args.category)
    from keras_skipae import data, training

    size = args.image_size
    channels = 3 if args.color_mode == "rgb" else 1
    model_kwargs = {"input_shape": [size, size, channels], "bn_momentum": args.bn_momentum}
    if args.filters is not None:
        model_kwargs["filters"] = args.filters
    if args.depth is not None:
        model_kwargs["depth"] = args.depth
    good = data.mvtec_dataset(
        args.data, args.category, split="train", image_size=size, color_mode=args.color_mode
    )
    corruption = None if args.corruption.lower() == "none" else args.corruption
    run = training.train(
        args.model,
        good,
        model_kwargs=model_kwargs,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.lr,
        loss=args.loss,
        corruption=corruption,
        stain_weight=args.stain_weight,
        batch_size=args.batch_size,
        validation_split=args.val_split,
        seed=args.seed,
        run_dir=args.out,
        jit_compile="auto" if args.jit is None else args.jit,
        strategy=args.strategy,
        time_limit=args.time_limit,
        schedule=None if args.schedule == "none" else args.schedule,
        save_best=args.save_best,
        overwrite=args.overwrite,
        resume=not args.no_resume,
        verbose=0 if args.quiet else "auto",
        data_config={
            "root": str(Path(args.data).resolve()),  # evaluate may run elsewhere
            "category": args.category,
            "image_size": size,
            "color_mode": args.color_mode,
        },
    )
    h = run.history
    last = {k: h[k][-1] for k in ("loss", "val_loss") if h.get(k)}
    print(
        f"trained {args.model} for {len(h.get('epoch', []))} epochs in {run.seconds:.0f} s: "
        + ", ".join(f"{k} {v:.5f}" for k, v in last.items())
    )
    print(f"run folder: {run.run_dir}  (next: keras-skipae evaluate {run.run_dir})")
    return 0


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="score the test split with a trained run and write metrics and plots",
        description="Evaluate a run folder on <data>/<category>/test (the data, category and "
        "image size the run was trained with, unless overridden): image / pixel AUROC, "
        "AUPRO, per defect type, a production threshold from the run's held-out good images.",
    )
    p.add_argument("run", help="run folder written by `keras-skipae train`")
    p.add_argument("--data", default=None, help="dataset root (default: the run's)")
    p.add_argument("--category", default=None, help="category (default: the run's)")
    p.add_argument("--out", default=None, help="output folder (default: <run>/evaluation)")
    p.add_argument(
        "--map",
        "--method",
        dest="map",
        default=None,
        choices=CLI_MAPS,
        help="anomaly map (default: residual; --method is the old name)",
    )
    p.add_argument("--best", action="store_true", help="use best.keras instead of model.keras")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_evaluate)


def _scoring_config(**settings):
    """A ScoringConfig from the CLI's options (None where the user set none)."""
    from keras_skipae.scoring import ScoringConfig

    chosen = {k: v for k, v in settings.items() if v is not None}
    return ScoringConfig(**chosen) if chosen else None


def _run_evaluate(args):
    from keras_skipae.apps import demo, workflows

    run = Path(args.run)
    if not run.is_dir():
        raise FileNotFoundError(f"Run folder {str(run)!r} does not exist.")
    result, out = workflows.evaluate_run(
        run,
        data_root=args.data,
        category=args.category,
        out_dir=args.out,
        scoring=_scoring_config(map=args.map),
        best=args.best,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        check_data=_check_data,
    )
    print(demo.format_result(result, title=str(run)))
    print(f"wrote {out}")
    return 0


def _add_demo(sub):
    p = sub.add_parser(
        "demo",
        help="generate data, train AE and AESc, evaluate both, write a report",
        description="No arguments needed: generates a synthetic texture category (128 px), "
        "trains AE and AESc with stains, evaluates both next to two non-learned baselines and "
        "writes <out>/report/report.md (+ report.html, metrics, plots). About 7-9 minutes on "
        "a 2-core CPU; --quick takes about 1 minute (64 px, a few seconds of training: a "
        "smoke test, not meaningful numbers).",
    )
    p.add_argument(
        "--out", default="keras_skipae_demo", help="output folder (default: ./keras_skipae_demo)"
    )
    p.add_argument("--quick", action="store_true", help="a ~1-minute smoke run")
    p.add_argument("--category", default=None, help="synthetic category (default: wood)")
    p.add_argument(
        "--minutes-per-model",
        type=float,
        default=None,
        help="training budget per model (default 3; 0.25 with --quick)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the demo's data/, runs/ and report/ in --out",
    )
    p.add_argument("--quiet", action="store_true", help="less output")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    from keras_skipae.apps import demo

    demo.run_demo(
        args.out,
        quick=args.quick,
        category=args.category,
        minutes_per_model=args.minutes_per_model,
        overwrite=args.overwrite,
        verbose=0 if args.quiet else 1,
    )
    return 0


_SUBCOMMANDS.extend([_add_train, _add_evaluate, _add_demo])


# --------------------------------------------------------------------------- export
# (the logic lives in keras_skipae.apps.workflows.export_run)


def _add_export(sub):
    p = sub.add_parser(
        "export",
        help="export a trained run as a TF SavedModel (scoring signatures) or a .keras file",
        description="Export RUN's model.keras to OUT. The SavedModel scores images on its own "
        "(signatures serving_default: float32 in [0, 1]; serving_uint8; reconstruct; "
        "reconstruct_uint8) and records its settings in OUT/assets/keras_skipae.json. "
        "The image size and colour mode come from the run's config.json.",
    )
    p.add_argument("run", help="run folder written by `keras-skipae train`")
    p.add_argument("out", help="SavedModel folder to create (or a .keras file)")
    p.add_argument("--format", choices=("saved_model", "keras"), default="saved_model")
    p.add_argument(
        "--threshold",
        default=None,
        metavar="X|eval",
        help="production threshold (adds is_anomalous = score >= X); 'eval' takes "
        "the one `keras-skipae evaluate RUN` stored in RUN/evaluation/metrics.json",
    )
    p.add_argument("--map", default=None, choices=CLI_MAPS, help="anomaly map (default: residual)")
    p.add_argument(
        "--smoothing",
        type=float,
        default=None,
        help="Gaussian sigma in pixels on the map (default: 4; 0: none)",
    )
    p.add_argument("--score", default=None, help="image score: max (default), mean, topk, lp")
    p.add_argument("--best", action="store_true", help="export best.keras instead of model.keras")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_run_export)


def _run_export(args):
    from keras_skipae.apps import workflows

    threshold = args.threshold
    if threshold is not None and threshold != "eval":
        try:
            threshold = float(threshold)
        except ValueError:
            raise CLIError(
                f"--threshold expects a number or 'eval'. Received: {args.threshold!r}"
            ) from None
    info = workflows.export_run(
        args.run,
        args.out,
        format=args.format,
        threshold=threshold,
        scoring=_scoring_config(map=args.map, smoothing=args.smoothing, score=args.score),
        best=args.best,
        overwrite=args.overwrite,
    )
    if info["format"] == "keras":
        print(
            f"wrote {info['path']} (load with keras.models.load_model(path, safe_mode=True) "
            "after `import keras_skipae.models`)"
        )
        return 0
    s = info["settings"]
    t = info["threshold"]
    print(
        f"wrote {info['path']}: map={s['map']}, smoothing={s['smoothing']:g}, "
        f"score={s['score']}, threshold="
        + (f"{t:.6g} ({info['threshold_source']})" if t is not None else "none")
    )
    print(
        "signatures: serving_default (float32 in [0, 1]), serving_uint8, reconstruct, "
        "reconstruct_uint8; settings: assets/keras_skipae.json"
    )
    if info["hint"]:
        print(f"note: {info['hint']}")
    return 0


_SUBCOMMANDS.append(_add_export)


def main(argv: list[str] | None = None) -> int:
    # The CLI only writes figures to files: never open a GUI window.
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("keras-skipae: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for users, the traceback with --debug
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"keras-skipae {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
