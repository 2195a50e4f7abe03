"""The ``keras-skipae`` argument parser: every subcommand's options, without TensorFlow.

Each subcommand is an ``_add_<name>(subparsers)`` function that registers its arguments
and sets ``check`` (its pre-TensorFlow checks in :mod:`keras_skipae_cli.checks`). The
command itself is ``keras_skipae.apps.cli.COMMANDS[<name>]``, imported after parsing.
This module imports only the standard library.
"""

from __future__ import annotations

import argparse

from keras_skipae_cli import checks

# scoring.ANOMALY_MAPS without "deviation", which needs statistics the CLI cannot pass
# (listed here so that the parser needs no TensorFlow; a test keeps them in step).
# "memory" fits its bank on the run's good training images (workflows.with_memory_bank).
CLI_MAPS = ("residual", "ssim", "mc_dropout", "discrepancy", "combined", "learned", "memory")
# models.encoders.list_encoders() and training.TASKS, for the same reason.
CLI_ENCODERS = ("mobilenet_v2", "resnet50")
CLI_TASKS = ("reconstruction", "segmentation")
# models.anomaly_head.HEAD_SCALES, for the same reason.
CLI_HEAD_SCALES = (1, 2, 4)
# keras_skipae.data.DEFAULT_MAX_PIXELS (64 Mi pixels, 8192x8192; a test keeps them in step).
MAX_PIXELS = 64 * 2**20

_GLOBAL_FLAGS = (
    (("--debug",), "show full tracebacks on error, and TensorFlow's logs"),
    (("-v", "--verbose"), "show TensorFlow's start-up and C++ logs"),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``keras-skipae`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="keras-skipae",
        description="Reconstruction-based visual anomaly detection (AE, AESc, U-Net) in Keras 3.",
    )
    for flags, text in _GLOBAL_FLAGS:
        parser.add_argument(*flags, action="store_true", help=text)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    for p in sub.choices.values():  # also after the subcommand; SUPPRESS keeps one given before it
        for flags, text in _GLOBAL_FLAGS:
            p.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=text)
    return parser


def _add_max_pixels(p):
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help="refuse an image file whose header declares more than N pixels (height x width), "
        f"before decoding it (default {MAX_PIXELS}: 64 Mi pixels, 8192x8192)",
    )


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
    p.set_defaults(check=checks.synth)


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
    p.set_defaults(check=checks.discrepancy)


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
        default=None,
        help="registry name: ae, aesc, aesc_head (with a learned anomaly head), unet "
        "(default: aesc; unet with one output channel for --task segmentation)",
    )
    p.add_argument(
        "--task",
        choices=CLI_TASKS,
        default="reconstruction",
        help="reconstruction (default: learn the good images) or segmentation: learn the "
        "masks of <category>/ground_truth from the test split's images (defective ones with "
        "their masks, good ones with empty masks), which then no longer make an unbiased "
        "test set; evaluate and export to a SavedModel refuse such a run",
    )
    p.add_argument(
        "--encoder",
        choices=CLI_ENCODERS,
        default=None,
        help="a keras.applications body as the encoder (default: none; the model's own "
        "convolutions); its weights are random unless --encoder-weights says otherwise",
    )
    p.add_argument(
        "--encoder-weights",
        default=None,
        metavar="PATH|imagenet",
        help="a local weights file for the --encoder body, or 'imagenet' (downloaded once "
        "into Keras' cache); default: none (random initialisation, nothing downloaded)",
    )
    p.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="keep the --encoder body's weights fixed during training (needs --encoder)",
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
    p.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="train on random crops of this side from the full-resolution good images instead "
        "of resizing them to --image-size; the model's input is the tile, and evaluate, export "
        "and predict then score whole images tile by tile",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=0,
        help="least overlap of neighbouring tiles when whole images are scored (stored in "
        "config.json for evaluate, export and predict; default 0)",
    )
    p.add_argument("--color-mode", choices=("grayscale", "rgb"), default="grayscale")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument(
        "--loss",
        default="auto",
        help="mse, l1, ssim, mse+ssim, l1+ssim; for --task segmentation bce, dice, bce+dice, "
        "focal (default auto: mse, or bce+dice for --task segmentation)",
    )
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
        "--skips",
        default=None,
        metavar="LEVELS",
        help="which levels keep a skip: all, none, or levels such as 1,2,3,4 (0 is the finest; "
        "default: the model's, all)",
    )
    p.add_argument(
        "--skip-scale",
        default=None,
        metavar="S",
        help="fixed factor 0 < s <= 1 on every skip, or one per level such as 1,1,0.5 (default 1)",
    )
    p.add_argument(
        "--skip-dropout",
        default=None,
        metavar="P",
        help="probability 0 <= p < 1 of dropping a sample's whole skip in training, or one per "
        "level (default 0; docs/models.md#skip-control)",
    )
    p.add_argument(
        "--dropout",
        default=None,
        metavar="RATE",
        help="Dropout rate of every level, or one per level plus the bottleneck "
        "(default: the model's)",
    )
    p.add_argument(
        "--head-scale",
        type=int,
        choices=CLI_HEAD_SCALES,
        default=None,
        help="with --model aesc_head: the head reads the image average-pooled by this factor "
        "(default 1: full resolution; 4: the recipe for textures from 16 minutes x 2 cores up, "
        "docs/decisions.md#anomaly-head)",
    )
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
    p.add_argument(
        "--precision",
        choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"),
        default="auto",
        help="Keras dtype policy of the model (default auto: mixed only on GPUs with tensor "
        "cores, else float32; scoring and export run in float32 either way)",
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
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="TensorFlow op determinism: the same --seed and --epochs give bit-identical "
        "weights, also after a resume (slower; docs/training.md#faults-resume-and-determinism)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(check=checks.train)


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
        dest="map",
        default=None,
        choices=CLI_MAPS,
        help="anomaly map (default: residual; memory: distance to "
        "the nearest feature of the run's good training images)",
    )
    p.add_argument("--best", action="store_true", help="use best.keras instead of model.keras")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(check=checks.evaluate)


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
    p.set_defaults(check=checks.demo)


def _add_export(sub):
    p = sub.add_parser(
        "export",
        help="export a trained run as a TF SavedModel (scoring signatures), a .keras file, "
        "or a LiteRT / ONNX / OpenVINO file (the whole scoring graph)",
        description="Export RUN's model.keras to OUT. The SavedModel scores images on its own "
        "(signatures serving_default: float32 in [0, 1]; serving_uint8; reconstruct; "
        "reconstruct_uint8) and records its settings in OUT/assets/keras_skipae.json. "
        "The image size and colour mode come from the run's config.json. --format litert, "
        "onnx or openvino writes OUT (.tflite, .onnx, .xml) with the scoring graph inside and "
        "its settings in OUT.json (docs/export.md#edge-formats).",
    )
    p.add_argument("run", help="run folder written by `keras-skipae train`")
    p.add_argument(
        "out", help="SavedModel folder to create (or a .keras, .tflite, .onnx or .xml file)"
    )
    p.add_argument(
        "--format",
        choices=("saved_model", "keras", "litert", "onnx", "openvino"),
        default="saved_model",
    )
    p.add_argument(
        "--quantization",
        choices=("float32", "dynamic_range", "int8"),
        default="float32",
        help="LiteRT only: float32 (default), dynamic_range (int8 weights) or int8 (full "
        "integer, uint8 input, calibrated on --calibration or the run's training split)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        metavar="DIR",
        help="folder of good images: the int8 calibration set and the verification images "
        "of an edge export (default for int8: the run's training split)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="fixed batch size of an edge export (default: 1 for LiteRT, dynamic otherwise)",
    )
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
    p.set_defaults(check=checks.export)


def _add_predict(sub):
    p = sub.add_parser(
        "predict",
        help="score new images with a run, a SavedModel or a .keras file",
        description="Score image files and folders (read recursively) with MODEL: a run "
        "folder, an exported SavedModel or a .keras file, with its scoring settings and "
        "threshold. Writes OUT/predictions.csv (path, score, decision, threshold, map min "
        "and max; bad files with their error), optionally anomaly-map PNGs and overlays at "
        "each image's resolution, and prints a summary. Exit code 3 with --fail-on-anomaly "
        "when an image is anomalous, 4 when fewer than --min-scored images were scored (1 and "
        "2 are errors). An interrupted run resumes when started again with the same arguments.",
    )
    p.add_argument("model", help="run folder, SavedModel folder or .keras file")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    p.add_argument(
        "--threshold",
        default=None,
        metavar="X",
        help="production threshold (default: the model's; a .keras file has none)",
    )
    p.add_argument("--save-maps", action="store_true", help="write OUT/maps/<index>_<name>.png")
    p.add_argument("--overlay", action="store_true", help="write OUT/overlays/<index>_<name>.png")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--best", action="store_true", help="a run folder's best.keras")
    p.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="score full-resolution images tile by tile with tiles of this side (default: the "
        "run's or the SavedModel's tiling; none for a .keras file)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        help="least overlap of neighbouring tiles (default: the run's or the SavedModel's)",
    )
    p.add_argument(
        "--fail-on-anomaly",
        action="store_true",
        help="exit with code 3 when any image is anomalous, and with code 4 when fewer than "
        "--min-scored images were scored",
    )
    p.add_argument(
        "--min-scored",
        type=int,
        default=None,
        metavar="N",
        help="with --fail-on-anomaly: the fewest images that must be scored (default 1: an "
        "empty folder or only unreadable files fail with exit code 4; 0: no minimum)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT's predictions.csv and the maps and overlays it lists (or start an "
        "interrupted prediction again)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_max_pixels(p)
    p.set_defaults(check=checks.predict)


_SUBCOMMANDS = [
    _add_synth,
    _add_discrepancy,
    _add_train,
    _add_evaluate,
    _add_demo,
    _add_export,
    _add_predict,
]
