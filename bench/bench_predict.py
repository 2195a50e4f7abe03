"""Prediction benchmark: ``ks.Detector`` latency and folder throughput on this machine.

For the AESc in its default configuration at ``--size`` (128x128 grayscale by default;
random weights: the cost does not depend on their values) it measures, through
``Detector.predict`` (the Python API users call; scoring by
``keras_skipae.scoring.make_scorer``, the in-process Keras model) and through a
Detector on the exported SavedModel (``serving_default``):

* **latency at batch 1**: one image array already at the model's size, the whole
  ``list(det.predict(x, batch_size=1))`` (milliseconds, median over ``--repeats``);
* **batch 32**: 32 such images, ``batch_size=32`` (milliseconds per image and images/s);
* **folder throughput**: ``--n-files`` PNG files of ``--file-size`` pixels (resized to
  the model's size, maps resized back) read from a folder, ``batch_size=32``
  (images/s), and the same through ``keras_skipae.apps.predict.predict_to_folder``
  (what ``keras-skipae predict`` runs: ``predictions.csv``, and with ``--save-maps
  --overlay`` a map PNG and an overlay per image).

Each measurement is warmed up first (tracing excluded). Every repeat is printed, with
the CPU cores other processes used meanwhile (``other``, from ``/proc/stat``), since
the numbers are only meaningful with that load in view. Time-based: run it under the
shared lock::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_predict.py

Tests never assert these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from bench_common import busy  # noqa: E402  (bench/ is on sys.path when a bench script runs)


def _measure(fn, *, warmup: int, repeats: int) -> list[tuple[float, float]]:
    """``repeats`` x (wall seconds of one ``fn()``, cores other processes used meanwhile)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        s0, c0 = busy()
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        s1, c1 = busy()
        out.append((wall, max(0.0, (s1 - s0 - (c1 - c0)) / wall)))
    return out


def _write_files(folder, n, size, seed=0):
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        image = (rng.random((size, size)) * 255).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), image)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="model input side (128)")
    parser.add_argument("--file-size", type=int, default=256, help="side of the PNG files (256)")
    parser.add_argument("--n-files", type=int, default=256, help="files in the folder (256)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (7)")
    parser.add_argument("--folder-repeats", type=int, default=3, help="timed folder passes (3)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--sources", default="keras,saved_model", help="keras, saved_model or both (default)"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    import keras_skipae as ks
    from keras_skipae.apps.predict import predict_to_folder

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), intra-op threads "
        f"{threads or 'default'}, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}"
        f"; AESc default, {args.size}x{args.size}x1; {args.repeats} repeats "
        f"({args.folder_repeats} for folders) after {args.warmup} warm-up calls",
        flush=True,
    )
    scratch = tempfile.TemporaryDirectory(prefix="bench_predict_")
    model = ks.build_aesc(input_shape=(args.size, args.size, 1))
    print(f"model: {model.count_params():,} parameters", flush=True)
    rng = np.random.default_rng(0)
    x1 = rng.random((1, args.size, args.size, 1), dtype=np.float32)
    x32 = rng.random((32, args.size, args.size, 1), dtype=np.float32)
    folder = os.path.join(scratch.name, "images")
    _write_files(folder, args.n_files, args.file_size)
    threshold = 0.5  # any value: decisions cost the same

    detectors = {}
    for source in [s.strip() for s in args.sources.split(",")]:
        if source == "keras":
            detectors[source] = ks.Detector(model, threshold=threshold)
        elif source == "saved_model":
            path = os.path.join(scratch.name, "export")
            ks.export_saved_model(model, path, threshold=threshold)
            detectors[source] = ks.Detector.load(path)
        else:
            parser.error(f"unknown source {source!r}")

    rows = []

    def report(source, what, runs, n_images):
        walls = [w for w, _ in runs]
        med = statistics.median(walls)
        row = {
            "source": source,
            "what": what,
            "images": n_images,
            "median_s": med,
            "ms_per_image": 1000 * med / n_images,
            "images_per_s": n_images / med,
            "runs_s": walls,
            "other_cores": [o for _, o in runs],
        }
        rows.append(row)
        every = ", ".join(f"{1000 * w:.1f} ms (other {o:.2f})" for w, o in runs)
        print(
            f"{source:12s} {what:34s} {row['ms_per_image']:9.2f} ms/img "
            f"{row['images_per_s']:8.1f} img/s | {every}",
            flush=True,
        )

    for source, det in detectors.items():
        runs = _measure(
            lambda d=det: list(d.predict(x1, batch_size=1)),
            warmup=args.warmup,
            repeats=args.repeats,
        )
        report(source, "latency, batch 1 (array)", runs, 1)
        runs = _measure(
            lambda d=det: list(d.predict(x32, batch_size=32)),
            warmup=args.warmup,
            repeats=args.repeats,
        )
        report(source, "batch 32 (array)", runs, 32)
        runs = _measure(
            lambda d=det: sum(1 for _ in d.predict(folder, batch_size=32)),
            warmup=1,
            repeats=args.folder_repeats,
        )
        report(source, f"folder, {args.file_size}px PNG, batch 32", runs, args.n_files)

    out = os.path.join(scratch.name, "out")
    model_path = os.path.join(scratch.name, "model.keras")
    ks.export_keras(model, model_path)
    for extra, label in (
        ({}, "predict_to_folder (CSV)"),
        ({"save_maps": True, "overlay": True}, "predict_to_folder (+maps, overlays)"),
    ):

        def cli_like(extra=extra):
            predict_to_folder(
                model_path,
                [folder],
                out,
                threshold=threshold,
                batch_size=32,
                overwrite=True,
                progress=False,
                **extra,
            )

        runs = _measure(cli_like, warmup=1, repeats=args.folder_repeats)
        report("keras file", label, runs, args.n_files)

    print()
    print("| source | measurement | ms / image | images / s |")
    print("|---|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['source']} | {r['what']} | {r['ms_per_image']:.2f} | {r['images_per_s']:.1f} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "command": sys.argv, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
