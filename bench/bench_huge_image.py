"""Peak memory of reading huge images with the datasets' reader (``folder_dataset``).

Writes ``--n-images`` PNG files of ``--size`` x ``--size`` pixels (noise, ``--file-channels``
channels, 8 bit) into a temporary folder, then, in a fresh subprocess per pipeline, builds
``keras_skipae.data.folder_dataset(folder, image_size=--image-size, color_mode=...)`` and
iterates it once, measuring the process's peak RSS (``ru_maxrss``) before and after the
iteration. The difference is what decoding and resizing the huge files cost.

Pipelines:

* ``package``: the package's reader (decode in the file's bit depth, resize, then float32);
* ``float_first``: the reader before issue 19, for comparison (decode straight to float32 at
  full size, then resize), the same ``tf.data`` map with ``num_parallel_calls=2``.

The bound to compare with: the datasets decode with ``num_parallel_calls=2``; each call holds
its file's bytes and one decoded full-size image in uint8 (``size^2 x channels`` bytes), so
``2 x (file bytes + size^2 x channels)``. Noise hardly compresses: its file is as large as
the image, the worst case. A small image read first warms TensorFlow up; the peak RSS after
it is the baseline.

Example (the run in bench/README.md):
    .venv/bin/python bench/bench_huge_image.py --size 8000 --n-images 2 --file-channels 3 \
        --color-mode rgb --image-size 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024


def _make_files(folder: Path, n: int, size: int, channels: int) -> list[Path]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    # A small image first (sorted order): reading it warms TensorFlow's kernels and
    # thread pools, so the peak RSS after it is the baseline of the huge files.
    warm = (rng.random((300, 300, 3)) * 255).astype(np.uint8)
    if not cv2.imwrite(str(folder / "0_warmup.png"), warm):
        raise RuntimeError(f"cv2 could not write {folder / '0_warmup.png'}")
    files = []
    for i in range(n):
        shape = (size, size) if channels == 1 else (size, size, channels)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        path = folder / f"huge_{i}.png"
        if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 0]):
            raise RuntimeError(f"cv2 could not write {path}")
        files.append(path)
        del img
    return files


def _child(pipeline: str, folder: str, image_size: int, color_mode: str) -> dict:
    """Runs in the subprocess: builds the dataset, iterates it, reports peak RSS."""
    import resource

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from keras_skipae.data import datasets, images

    size = (image_size, image_size)
    ds = datasets.folder_dataset(folder, image_size=size, color_mode=color_mode)
    if pipeline == "float_first":
        channels = 1 if color_mode == "grayscale" else 3
        paths = sorted(str(p) for p in Path(folder).iterdir())
        files = tf.data.Dataset.from_tensor_slices(paths)

        def load(path):
            img = tf.io.decode_image(
                tf.io.read_file(path), channels=0, dtype=tf.float32, expand_animations=False
            )
            img = images._to_channels(img, channels)
            img = tf.image.resize(img, size, method="bilinear", antialias=True)
            return {"image": tf.clip_by_value(img, 0.0, 1.0)}

        ds = files.map(load, num_parallel_calls=2, deterministic=True)
    elif pipeline != "package":
        raise ValueError(f"Unknown pipeline {pipeline!r}")
    n, before = 0, None
    for element in ds:
        n += 1
        shape = tuple(element["image"].shape)
        if before is None:  # after the small warm-up image
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            start = time.perf_counter()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "pipeline": pipeline,
        "images": n - 1,
        "output_shape": list(shape),
        "peak_rss_before_mb": before / MB,
        "peak_rss_after_mb": after / MB,
        "peak_rss_added_mb": (after - before) / MB,
        "seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--n-images", type=int, default=2)
    parser.add_argument("--file-channels", type=int, default=3, choices=(1, 3, 4))
    parser.add_argument("--color-mode", default="rgb", choices=("grayscale", "rgb"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--pipelines", default="package,float_first")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.folder, args.image_size, args.color_mode)))
        return 0

    command = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"command: {command}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_huge_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        files = _make_files(folder, args.n_images, args.size, args.file_channels)
        full = args.size * args.size * args.file_channels
        on_disk = sum(f.stat().st_size for f in files)
        print(
            f"{len(files)} PNG files {args.size}x{args.size}x{args.file_channels} (8 bit, noise), "
            f"{on_disk / MB:.0f} MB on disk, written in "
            f"{time.perf_counter() - t0:.1f} s; one decoded full-size image = {full / MB:.0f} MB "
            f"uint8, {4 * full / MB:.0f} MB float32"
        )
        # Two parallel calls, each holding its file's bytes and one decoded uint8 image.
        bound = 2 * (full + on_disk / len(files)) / MB
        results = []
        for pipeline in args.pipelines.split(","):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    pipeline,
                    "--folder",
                    str(folder),
                    "--image-size",
                    str(args.image_size),
                    "--color-mode",
                    args.color_mode,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                print(out.stderr[-3000:])
                raise SystemExit(f"{pipeline}: the child failed (exit {out.returncode})")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"{pipeline:12s} -> {result['images']} x {result['output_shape']}: peak RSS "
                f"{result['peak_rss_before_mb']:.0f} MB before, "
                f"{result['peak_rss_after_mb']:.0f} MB after, "
                f"+{result['peak_rss_added_mb']:.0f} MB "
                f"({result['peak_rss_added_mb'] / bound:.2f} x the bound, 2 x (file bytes + "
                f"one uint8 image) = {bound:.0f} MB); {result['seconds']:.1f} s"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"command": command, "args": vars(args), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
