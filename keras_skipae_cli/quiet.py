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
import fails, the launcher writes back everything.

Training prints one more line, later: on CPUs with AVX-512, the first training step logs
``E0000 ... util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512. Falling
back to the default Eigen-based implementation if present.``, an ERROR that
``TF_CPP_MIN_LOG_LEVEL=2`` lets through although nothing is wrong (:data:`NOISE`).
:func:`filtered_fd2` therefore filters descriptor 2 line by line while a training
command runs (a pipe and a thread that writes the kept lines on at once). ``-v`` and
``--debug`` turn both filters off. This module imports only the standard library.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

ABSL_PREINIT = "WARNING: All log messages before absl::InitializeLog() is called"
# absl / glog format: severity, MMDD hh:mm:ss.micro, thread id, file:line]
_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
# Lines that continue the log line before them (cpu_feature_guard's second line).
_CONTINUATIONS = ("To enable the following instructions:",)
_SEVERITY = "IWEF"
#: Log lines (of any severity) that report nothing wrong: dropped unless -v / --debug.
NOISE = ("oneDNN supports DT_INT32 only on platforms with AVX-512",)


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
    keep = _LineFilter(min_level)
    return "".join(line for line in text.splitlines(keepends=True) if keep(line))


class _LineFilter:
    """Called on each line in turn: False for the absl pre-init line, log lines below
    ``min_level`` or in :data:`NOISE`, and the continuation lines of dropped ones."""

    def __init__(self, min_level: int):
        self.min_level = min_level
        self.dropping = False

    def __call__(self, line: str) -> bool:
        if line.startswith(ABSL_PREINIT):
            return False
        match = _LOG_LINE.match(line)
        if match:
            below = _SEVERITY.index(match.group(1)) < self.min_level
            self.dropping = below or any(noise in line for noise in NOISE)
        elif not (self.dropping and line.startswith(_CONTINUATIONS)):
            self.dropping = False
        return not self.dropping


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


@contextlib.contextmanager
def filtered_fd2(min_level: int, enabled: bool = True):
    """Filters what is written to file descriptor 2 while the block runs, line by line.

    Descriptor 2 becomes a pipe; a thread writes each complete line that
    :func:`filter_tf_startup`'s rules keep to the original stderr as soon as it arrives,
    and a partial line (a progress bar's ``\\r`` update) at once unless it may begin a
    log line. On exit descriptor 2 is restored and the rest is written out. With
    ``enabled=False``, or where the pipe cannot be made, nothing is filtered.
    """
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        os.close(saved)
        yield
        return
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(
        target=_pump, args=(read_fd, saved, _LineFilter(min_level)), daemon=True
    )
    pump.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end (unless a child holds one)
        pump.join(timeout=5)
        if not pump.is_alive():
            os.close(saved)


def _pump(read_fd: int, out_fd: int, keep: _LineFilter) -> None:
    """Copies the pipe to ``out_fd`` without the lines ``keep`` drops, until end of file."""
    pending = b""
    try:
        while chunk := os.read(read_fd, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            out = []
            for line in lines:
                # A log line written after a partial line (a progress bar's) starts inside it.
                start = _LOG_START.search(line, 1)
                if start:
                    out.append(line[: start.start()])
                    line = line[start.start() :]
                if keep(line.decode("utf-8", "replace")):
                    out.append(line + b"\n")
            if pending and (pending[:1] not in _MAY_START_LOG or len(pending) > 65536):
                out.append(pending)  # not a log line: no need to wait for its end
                pending = b""
            _write_all(out_fd, b"".join(out))
        if pending and keep(pending.decode("utf-8", "replace")):
            _write_all(out_fd, pending)
    except OSError:
        pass
    finally:
        os.close(read_fd)


_LOG_START = re.compile(_LOG_LINE.pattern.replace("^", "", 1).encode())
# First bytes of the lines a filter may drop: log lines, absl's line, continuations.
_MAY_START_LOG = (*(c.encode() for c in _SEVERITY), b"T")


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
