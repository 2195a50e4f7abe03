"""Behaviour did not change: the golden outputs recorded by tests/golden/make_golden.py.

The recipe runs in a fresh process: seeded training is bit-reproducible across
processes, but not after other tests have used the same process's RNG state.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"

_RUN = """
import os, sys, tempfile
from pathlib import Path
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, {golden!r})
import numpy as np
from recipe import compute
with tempfile.TemporaryDirectory() as tmp:
    values = compute(Path(tmp))
np.savez({out!r}, **values)
"""


@pytest.mark.slow
def test_golden_outputs_are_unchanged(tmp_path):
    out = tmp_path / "now.npz"
    code = _RUN.format(golden=str(GOLDEN), out=str(out))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = np.load(GOLDEN / "golden.npz")
    got = np.load(out)
    assert sorted(got.files) == sorted(want.files)
    for key in want.files:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_golden_generator_refuses_to_overwrite():
    proc = subprocess.run(
        [sys.executable, str(GOLDEN / "make_golden.py")], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "exists" in proc.stdout
