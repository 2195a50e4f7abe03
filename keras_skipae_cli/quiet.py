"""Keeping TensorFlow's start-up lines out of the command line's output.

Importing TensorFlow 2.21 writes to file descriptor 2 from C++, before Python sees it:

* absl's ``WARNING: All log messages before absl::InitializeLog() is called are written
  to STDERR``, printed once per TensorFlow shared library by the first message logged
  before absl is initialised;
* ``cpu_feature_guard.cc`` (an INFO line and its ``To enable the following instructions``
  continuation), hidden by ``TF_CPP_MIN_LOG_LEVEL`` >= 1;
* with oneDNN turned on (``TF_ENABLE_ONEDNN_OPTS=1``, which ``import keras_skipae`` sets),
  ``port.cc``'s INFO line ``oneDNN custom operations are on``, printed before absl is
  initialised and so *not* hidden by ``TF_CPP_MIN_LOG_LEVEL``, not even at 3.

``TF_CPP_MIN_LOG_LEVEL`` alone therefore cannot silence the import. :func:`captured_fd2`
points descriptor 2 at a temporary file around the import, and :func:`filter_tf_startup`
drops from the captured text the absl line and the log lines below the level in force;
everything else (Python warnings, TensorFlow's errors) is written back to stderr. If the
import fails, the launcher writes back everything. This module imports only the
standard library.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

ABSL_PREINIT = "WARNING: All log messages before absl::InitializeLog() is called"
# absl / glog format: severity, MMDD hh:mm:ss.micro, thread id, file:line]
_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
# Lines that continue the log line before them (cpu_feature_guard's second line).
_CONTINUATIONS = ("To enable the following instructions:",)
_SEVERITY = "IWEF"


def min_log_level(default: int = 0) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as an int (``default`` when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", default))
    except ValueError:
        return default


def filter_tf_startup(text: str, min_level: int) -> str:
    """``text`` without absl's pre-init line and the log lines below ``min_level``.

    ``min_level`` is a ``TF_CPP_MIN_LOG_LEVEL``: 0 keeps INFO and above, 1 drops INFO,
    2 drops INFO and WARNING, 3 keeps only FATAL.
    """
    kept = []
    dropping = False
    for line in text.splitlines(keepends=True):
        if line.startswith(ABSL_PREINIT):
            continue
        match = _LOG_LINE.match(line)
        if match:
            dropping = _SEVERITY.index(match.group(1)) < min_level
        elif not (dropping and line.startswith(_CONTINUATIONS)):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


class _Captured:
    text = ""


@contextlib.contextmanager
def captured_fd2(enabled: bool = True):
    """Points file descriptor 2 at a temporary file; ``.text`` holds it afterwards.

    Yields an object whose ``text`` is set on exit. With ``enabled=False``, or where
    descriptor 2 cannot be duplicated (closed, an unusual platform), nothing is captured.
    """
    captured = _Captured()
    if not enabled:
        yield captured
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield captured
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode("utf-8", "replace")
