"""Peak memory of ``keras-skipae predict`` on a PNG bomb, refused from its header.

Writes a PNG of ``--side`` x ``--side`` black 8-bit gray pixels (zlib at level 9: about
140 KB for 12000x12000, while decoding it takes ``side^2`` bytes and more), a small
256x256 PNG for reference and a ``.keras`` file of the default AESc at 128x128 (random
weights), then runs ``keras-skipae predict`` on each in a fresh subprocess and prints
what happened (exit code, the CSV row's decision or error) with the subprocess's peak
RSS (``ru_maxrss`` from ``os.wait4``) and wall time:

* ``small``: the 256x256 image (the baseline: TensorFlow, the model, one image);
* ``bomb``: the bomb with the default ``--max-pixels`` (refused from its header);
* ``bomb, --max-pixels raised``: the bomb with the limit above its size, so that it is
  decoded and scored as before the limit existed (skip with ``--no-raised``).

Example (the run in bench/README.md)::

    .venv/bin/python bench/bench_limits.py > bench/results/limits.txt
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def write_black_png(path: Path, width: int, height: int) -> int:
    """Writes a black 8-bit gray PNG row by row (never holding the image); its size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
    path.write_bytes(data + chunk(b"IEND", b""))
    return path.stat().st_size


def run_predict(model: Path, image: Path, out: Path, *extra: str) -> dict:
    """``keras-skipae predict`` in a subprocess: exit code, peak RSS, seconds, CSV row."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    argv = [sys.executable, "-m", "keras_skipae_cli", "predict", str(model), str(image)]
    argv += ["--out", str(out), "--threshold", "0.5", "--quiet", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives this child's own resource usage (its peak RSS in KiB on Linux).
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    row = {}
    if (out / "predictions.csv").is_file():
        with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
            row = next(csv.DictReader(f), {})
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "peak_mb": usage.ru_maxrss / 1024,
        "seconds": seconds,
        "row": row,
        "stderr": stderr.strip().splitlines()[-1:] if stderr.strip() else [],
        "stdout": stdout,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=12000, help="the bomb's side (12000)")
    parser.add_argument("--no-raised", action="store_true", help="skip the raised-limit run")
    args = parser.parse_args(argv)

    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras_skipae as ks

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        bomb_bytes = write_black_png(tmp / "bomb.png", args.side, args.side)
        made = time.perf_counter() - start
        small = tmp / "small.png"
        import cv2

        rng = np.random.default_rng(0)
        cv2.imwrite(str(small), (rng.random((256, 256)) * 255).astype(np.uint8))
        model = tmp / "aesc.keras"
        ks.export_keras(ks.get_model("aesc", input_shape=(128, 128, 1)), model)

        print("command:", " ".join(["python bench/bench_limits.py", *(argv or sys.argv[1:])]))
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
        )
        print(
            f"bomb: {args.side}x{args.side} black 8-bit gray PNG, {bomb_bytes / 1024:.0f} KB on "
            f"disk (written in {made:.1f} s); decoded: {args.side**2 / MB:.0f} MB uint8, "
            f"{4 * args.side**2 / MB:.0f} MB float32"
        )
        print(f"limit: --max-pixels default {ks.data.DEFAULT_MAX_PIXELS:,} pixels")
        print("model: default AESc 128x128x1 (.keras, random weights), --threshold 0.5")
        cases = [
            ("small 256x256", small, ()),
            ("bomb", tmp / "bomb.png", ()),
        ]
        if not args.no_raised:
            raised = str(args.side * args.side)
            cases.append(("bomb, --max-pixels raised", tmp / "bomb.png", ("--max-pixels", raised)))
        for i, (name, image, extra) in enumerate(cases):
            r = run_predict(model, image, tmp / f"out{i}", *extra)
            row = r["row"]
            what = (
                f"error row: {row.get('error')}"
                if row.get("decision") == "error"
                else f"scored: score {row.get('score')}, {row.get('decision')}"
                if row
                else f"no CSV; stderr: {' '.join(r['stderr'])}"
            )
            print(
                f"{name:28s} exit {r['rc']}, peak RSS {r['peak_mb']:7.0f} MB, "
                f"{r['seconds']:5.1f} s; {what}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
