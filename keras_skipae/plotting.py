"""Every matplotlib figure of keras_skipae.

Functions take NumPy arrays (or plain results), return a ``matplotlib.figure.Figure``
and, when given ``path``, save it atomically (temporary name + rename). They use
the non-interactive Agg backend, so they work on headless servers.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

from keras_skipae.io_utils import atomic_path  # noqa: E402


def save_figure(fig, path: str | os.PathLike | None, *, dpi: int = 110, close: bool = False):
    """Saves ``fig`` to ``path`` atomically (format from the suffix; PNG by default).

    Args:
        fig: a matplotlib Figure.
        path: where to save it, or None to skip saving.
        dpi: resolution.
        close: close the figure after saving (frees memory in loops).

    Returns:
        The figure.
    """
    if path is not None:
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".png")
        with atomic_path(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip("."))
    if close:
        plt.close(fig)
    return fig
