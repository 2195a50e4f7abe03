"""Fault injection for tests: one environment variable names one fault at one point.

With ``KERAS_SKIPAE_FAULT`` unset (as in production) every point is a no-op. Set, its
value is ``<point>[:<argument>]...`` and names one of these points:

* ``write_fail:<n_bytes>[:<glob>]``: every atomic write (:mod:`keras_skipae.io_utils`)
  whose final name matches ``<glob>`` (``fnmatch``; all writes without it) behaves as if
  the disk had ``n_bytes`` free: it is cut there and raises ``OSError(errno.ENOSPC)``;
* ``batch-end[:epoch=E][:batch=B]``: training waits after step B of epoch E (both from 0);
* ``backup-write[:epoch=N]``: the backup weights of N finished epochs are written to their
  temporary file and nothing is renamed yet (:func:`keras_skipae.runs.write_backup`);
* ``model-write[:file=NAME]``: ``model.keras`` / ``best.keras`` is complete under its
  temporary name, not renamed yet.

The last three are *waiting* points (:func:`wait_point`): the process writes the value
to the file named by ``KERAS_SKIPAE_FAULT_READY`` (if set) and then sleeps until the test
kills it. A ``key=value`` condition left out matches any value. The variable is read at
each point; a value that names no point above, or whose arguments do not fit it, raises
a ``ValueError`` naming the variable at the first point reached.
"""

from __future__ import annotations

import os
import time

__all__ = ["ENV", "READY_ENV", "requested", "wait_point"]

ENV = "KERAS_SKIPAE_FAULT"
READY_ENV = "KERAS_SKIPAE_FAULT_READY"

#: The waiting points and the ``key=value`` conditions each accepts.
_WAIT_POINTS = {
    "batch-end": ("epoch", "batch"),
    "backup-write": ("epoch",),
    "model-write": ("file",),
}
_FORMS = (
    "write_fail:<n_bytes>[:<glob>]",
    "batch-end[:epoch=E][:batch=B]",
    "backup-write[:epoch=N]",
    "model-write[:file=NAME]",
)


def requested(point: str) -> list[str] | None:
    """The arguments of the fault ``KERAS_SKIPAE_FAULT`` asks for at ``point``.

    Returns:
        None when the variable is unset or names another point; else the value's
        arguments after the point name (``"write_fail:4:*.keras"`` -> ``["4", "*.keras"]``).

    Raises:
        ValueError: the value names no known point or its arguments do not fit it.
    """
    spec = os.environ.get(ENV, "")
    if not spec:
        return None
    name, _, rest = spec.partition(":")
    if name == "write_fail":
        size, _, pattern = rest.partition(":")
        args = [size, pattern] if pattern else [size]
        ok = size.isdigit()
    else:
        args = rest.split(":") if rest else []
        keys = _WAIT_POINTS.get(name)
        ok = keys is not None and all("=" in arg and arg.partition("=")[0] in keys for arg in args)
    if not ok:
        raise ValueError(
            f"Expected {ENV} to be one of {', '.join(_FORMS)}. Received: {ENV}={spec!r}"
        )
    return args if name == point else None


def wait_point(point: str, **where) -> None:
    """Waits forever at ``point`` when ``KERAS_SKIPAE_FAULT`` names it and its ``key=value``
    conditions match ``where``, after writing the file ``KERAS_SKIPAE_FAULT_READY`` names.

    Args:
        point: ``"batch-end"``, ``"backup-write"`` or ``"model-write"``.
        **where: the values the conditions compare with (as strings).
    """
    args = requested(point)
    if args is None:
        return
    for arg in args:
        key, _, value = arg.partition("=")
        if key in where and str(where[key]) != value:
            return
    ready = os.environ.get(READY_ENV)
    if ready:
        with open(ready, "w", encoding="utf-8") as f:
            f.write(os.environ[ENV])
    while True:  # the test kills the process here
        time.sleep(1)
