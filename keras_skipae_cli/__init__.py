"""The ``keras-skipae`` launcher: parse and check the command line, then import TensorFlow.

``keras-skipae --help``, every ``<command> --help`` and argument or path errors answer
without TensorFlow: this package imports only the standard library. :func:`main`

1. parses the command line (:mod:`keras_skipae_cli.parser`);
2. runs the subcommand's checks (:mod:`keras_skipae_cli.checks`; exit code 2, one line);
3. sets ``MPLBACKEND=Agg`` and, unless the user set it or asked for ``--debug`` /
   ``-v``, ``TF_CPP_MIN_LOG_LEVEL=2``;
4. imports ``keras_skipae.apps.cli`` (and with it Keras and TensorFlow) with TensorFlow's
   start-up lines kept out of the output (:mod:`keras_skipae_cli.quiet`): the one
   hand-off to the library;
5. runs ``keras_skipae.apps.cli.COMMANDS[<command>](args)``; a command that trains runs
   with the same lines, and oneDNN's harmless ``E0000`` line, filtered out of stderr
   (unless ``-v`` / ``--debug``).

It lives outside ``keras_skipae`` because importing that package registers the Keras
classes, which imports TensorFlow. Exit codes: 0 success, 1 an error while the command
ran, 2 a bad command line, 3 ``predict --fail-on-anomaly`` found an anomaly, 4 ``predict
--fail-on-anomaly`` scored fewer images than ``--min-scored`` (default 1), 130 Ctrl-C.
"""

from __future__ import annotations

import os
import sys

from keras_skipae_cli.checks import UsageError
from keras_skipae_cli.parser import CLI_MAPS, build_parser
from keras_skipae_cli.quiet import captured_fd2, filter_tf_startup, filtered_fd2, min_log_level

__all__ = ["CLI_MAPS", "build_parser", "main"]

#: Commands that train, and so print oneDNN's line on AVX-512 CPUs: their stderr is
#: filtered while they run (:func:`keras_skipae_cli.quiet.filtered_fd2`).
TRAINING_COMMANDS = ("train", "demo")


def _commands(*, quiet: bool):
    """The hand-off: imports ``keras_skipae.apps.cli`` (and TensorFlow) and returns it.

    With ``quiet``, TensorFlow's start-up lines are kept out of stderr; the rest of what
    the import printed is written back (all of it if the import fails).
    """
    captured = None
    try:
        with captured_fd2(enabled=quiet) as captured:
            from keras_skipae.apps import cli
    except BaseException:  # the import failed: everything it printed may explain why
        if captured is not None and captured.text:
            sys.stderr.write(captured.text)
            sys.stderr.flush()
        raise
    text = filter_tf_startup(captured.text, min_log_level())
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()
    return cli


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Runs ``keras-skipae`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    verbose = args.debug or args.verbose
    try:
        args.check(args)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"keras-skipae {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    # The CLI only writes figures to files: never open a GUI window.
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        cli = _commands(quiet=not verbose)
        quiet = not verbose and args.command in TRAINING_COMMANDS
        with filtered_fd2(min_log_level(), enabled=quiet):
            return int(cli.COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        print("keras-skipae: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for users, the traceback with --debug
        if args.debug:
            raise
        print(f"keras-skipae {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
