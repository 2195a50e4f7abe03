"""Inference benchmark: in-process Keras (XLA on / off) vs the exported SavedModel.

Measures, for the AESc in its default configuration (depth 6, filters 16) at
256x256 grayscale (random weights: the cost does not depend on their values):

* per-image latency at batch 1 (median over repeats, milliseconds);
* throughput at batch 32 (images per second from the median batch time);

for

* ``keras, jit off``: ``tf.function(lambda x: model(x, training=False), jit_compile=False)``;
* ``keras, jit on``: the same with ``jit_compile=True`` (XLA);
* ``keras + scoring``: ``keras_skipae.scoring.make_scorer`` (what ``evaluate`` runs:
  reconstruction, residual map, Gaussian smoothing sigma 4, max score);
* ``SavedModel reconstruct``: ``tf.saved_model.load(export).signatures["reconstruct"]``;
* ``SavedModel serving_default``: the scoring signature (the same work as
  ``keras + scoring``);
* ``SavedModel serving_uint8``: the same from uint8 pixels.

Every function is warmed up first (tracing / XLA compilation excluded). Run it
under the shared lock so benchmarks do not overlap::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_inference.py

Numbers are printed (a Markdown table) and optionally written as JSON
(``--json``); tests never assert them.
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


def _time_calls(fn, x, *, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        _sync(fn(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _sync(fn(x))
        times.append(time.perf_counter() - start)
    return times


def _sync(out):
    # Fetch every output to host memory, so asynchronous execution is timed too.
    values = out.values() if isinstance(out, dict) else [out]
    for v in values:
        v.numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32, help="batch size for throughput")
    parser.add_argument("--repeats-b1", type=int, default=30, help="timed calls at batch 1")
    parser.add_argument("--repeats-batch", type=int, default=5, help="timed calls at --batch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--skip-jit", action="store_true", help="leave out XLA (slow to compile on CPU)"
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    import keras_skipae as ks
    from keras_skipae import export, scoring

    size, channels = args.image_size, args.channels
    model = ks.build_aesc(input_shape=(size, size, channels))
    rng = np.random.default_rng(0)
    inputs = {b: rng.random((b, size, size, channels), dtype=np.float32) for b in (1, args.batch)}

    def keras_fn(jit):
        return tf.function(lambda x: model(x, training=False), jit_compile=jit)

    fns = {"keras, jit off": (keras_fn(False), "float32")}
    if not args.skip_jit:
        fns["keras, jit on (XLA)"] = (keras_fn(True), "float32")
    fns["keras + scoring, jit off"] = (scoring.make_scorer(model), "float32")

    with tempfile.TemporaryDirectory(prefix="bench_inference_") as scratch:
        path = os.path.join(scratch, "aesc")
        start = time.perf_counter()
        export.export_saved_model(model, path)
        export_seconds = time.perf_counter() - start
        loaded = tf.saved_model.load(path)
        sigs = loaded.signatures
        fns["SavedModel reconstruct"] = (lambda x: sigs["reconstruct"](images=x), "float32")
        fns["SavedModel serving_default"] = (
            lambda x: sigs["serving_default"](images=x),
            "float32",
        )
        fns["SavedModel serving_uint8"] = (lambda x: sigs["serving_uint8"](images=x), "uint8")

        rows = []
        for name, (fn, dtype) in fns.items():
            row = {"name": name}
            for b, repeats in ((1, args.repeats_b1), (args.batch, args.repeats_batch)):
                x = inputs[b]
                if dtype == "uint8":
                    x = np.rint(x * 255).astype(np.uint8)
                x = tf.constant(x)
                start = time.perf_counter()
                _sync(fn(x))
                first = time.perf_counter() - start
                times = _time_calls(fn, x, warmup=args.warmup, repeats=repeats)
                med = statistics.median(times)
                row[f"b{b}_first_call_s"] = first
                row[f"b{b}_median_s"] = med
                row[f"b{b}_min_s"] = min(times)
            row["latency_ms"] = 1000 * row["b1_median_s"]
            row["throughput_img_s"] = args.batch / row[f"b{args.batch}_median_s"]
            rows.append(row)
            print(
                f"{name:28s} batch 1: {row['latency_ms']:8.1f} ms/img   batch {args.batch}: "
                f"{row['throughput_img_s']:7.1f} img/s   (first call {row['b1_first_call_s']:.1f} s)",
                flush=True,
            )

    command = " ".join(["python", "bench/bench_inference.py", *(argv or sys.argv[1:])])
    print()
    print(
        f"AESc default (depth 6, filters 16, {model.count_params():,} parameters), "
        f"{size}x{size}x{channels}, TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}); SavedModel export took "
        f"{export_seconds:.1f} s"
    )
    print(
        f"medians over {args.repeats_b1} calls at batch 1 and {args.repeats_batch} calls at "
        f"batch {args.batch}, after {args.warmup} warm-up calls"
    )
    print()
    print(f"| path | latency, batch 1 (ms/img) | throughput, batch {args.batch} (img/s) |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['latency_ms']:.1f} | {row['throughput_img_s']:.1f} |")
    print()
    print(f"command: {command}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "command": command,
                    "image_size": size,
                    "channels": channels,
                    "batch": args.batch,
                    "tensorflow": tf.__version__,
                    "cpu_count": os.cpu_count(),
                    "export_seconds": export_seconds,
                    "rows": rows,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
