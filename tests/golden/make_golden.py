"""Records the golden outputs that ``tests/test_golden.py`` compares against.

The golden file pins the package's numerical behaviour, so that a change that
should not change behaviour (a restructuring, a refactor) is proved not to. A
change that alters behaviour on purpose re-records it in a commit of its own
that says why. This script refuses to overwrite an existing file: delete it
first, in that commit.

    python tests/golden/make_golden.py            # writes tests/golden/golden.npz

Everything is computed by :func:`compute` in ``tests/golden/recipe.py``, which
the test calls too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from recipe import GOLDEN_FILE, compute  # noqa: E402


def main() -> int:
    out = HERE / GOLDEN_FILE
    if out.exists():
        print(f"{out} exists: delete it first (in a commit that says why the behaviour changed).")
        return 1
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        values = compute(Path(tmp))
    tmp_out = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp_out, **values)
    os.replace(tmp_out, out)
    print(f"wrote {out}: {len(values)} arrays")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
