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
