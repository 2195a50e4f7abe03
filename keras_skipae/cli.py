"""The ``keras-skipae`` command line.

Subcommands: ``demo``, ``train``, ``evaluate``, ``discrepancy``, ``export``, ``synth``.
Heavy modules (TensorFlow) are imported inside the subcommands, so ``--help`` is
instant. Errors print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys


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
    return parser


_SUBCOMMANDS: list = []


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


def main(argv: list[str] | None = None) -> int:
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
