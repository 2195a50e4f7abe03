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

``--compare-jit`` measures instead, for each of ``--sizes`` and ``--batches``, each
inference path with XLA off and on, to choose the per-path ``jit_compile="auto"``
(``keras_skipae/ops/device.py``): ``forward`` (the Keras model in a
``tf.function``), ``scoring`` (``scoring.make_scorer(model, jit_compile=...)``) and
``serving`` (``export_saved_model(model, ..., jit_compile=...)``, the loaded
``serving_default`` signature). The off and on functions of one path are timed in
alternation (ABAB, the order swapped every repeat: off on, on off, ...), so a drift
in the load of a shared machine hits both; each repeat is the mean of ``--calls``
calls, and every repeat is printed with the CPU cores other processes used
meanwhile (``other``, from ``/proc/stat``). The summary gives the medians and
on / off (below 1: XLA faster)::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_inference.py \\
        --compare-jit --sizes 128,256 --batches 1,16 --repeats 7

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


from bench_common import busy  # noqa: E402  (bench/ is on sys.path when a bench script runs)


def _onednn_on() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels (fixed when TensorFlow is imported)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def _timed_block(fn, x, calls: int) -> tuple[float, float, float]:
    """Per call (mean over ``calls``): wall seconds, this process's CPU seconds; and the
    cores other processes used meanwhile."""
    s0, c0 = busy()
    start = time.perf_counter()
    for _ in range(calls):
        _sync(fn(x))
    wall = time.perf_counter() - start
    s1, c1 = busy()
    return wall / calls, (c1 - c0) / calls, max(0.0, (s1 - s0 - (c1 - c0)) / wall)


def compare_jit(args) -> int:
    """XLA off vs on for the forward, scoring and serving paths (ABAB), every repeat printed."""
    # The package first: it turns TF's oneDNN kernels on, before TensorFlow loads.
    import keras_skipae as ks  # isort: skip
    import numpy as np
    import tensorflow as tf

    from keras_skipae import export, scoring
    from keras_skipae.inference.scorers import served_scorer

    variants = [False, True] + (["auto"] if args.auto else [])
    names = {False: "off", True: "on", "auto": "auto"}

    sizes = [int(v) for v in args.sizes.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    paths = [v.strip() for v in args.paths.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    scratch = tempfile.TemporaryDirectory(prefix="bench_inference_jit_")
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')} (oneDNN kernels "
        f"{'ON' if _onednn_on() else 'OFF'}); "
        f"{args.repeats} repeats of {args.calls} calls after {args.warmup} warm-up calls, "
        "ABAB (off on, on off, ...)",
        flush=True,
    )
    for size in sizes:
        model = ks.build_aesc(input_shape=(size, size, 1), depth=args.depth)
        fns = {}
        for jit in variants:
            if jit == "auto":  # the package's default: MeasuredJit on a CPU
                if "scoring" in paths:
                    fns[("scoring", jit)] = scoring.make_scorer(model)
                if "serving" in paths:  # as Detector serves a CPU export
                    loaded = tf.saved_model.load(os.path.join(scratch.name, f"aesc{size}_auto"))
                    fns[("serving", jit)] = served_scorer(loaded, None)
                continue
            if "forward" in paths:
                fns[("forward", jit)] = tf.function(
                    lambda x, m=model: m(x, training=False), jit_compile=jit
                )
            if "scoring" in paths:
                fns[("scoring", jit)] = scoring.make_scorer(model, jit_compile=jit)
            if "serving" in paths:
                path = os.path.join(scratch.name, f"aesc{size}_jit{int(jit)}")
                start = time.perf_counter()
                export.export_saved_model(model, path, jit_compile=jit)
                print(
                    f"  export {size} jit {'on' if jit else 'off'}: "
                    f"{time.perf_counter() - start:.1f} s",
                    flush=True,
                )
                sig = tf.saved_model.load(path).signatures["serving_default"]
                fns[("serving", jit)] = lambda x, sig=sig: sig(images=x)
                if args.auto and jit:
                    export.export_saved_model(model, os.path.join(scratch.name, f"aesc{size}_auto"))
        for batch in batches:
            x = tf.constant(rng.random((batch, size, size, 1), dtype=np.float32))
            for path in paths:
                here = [v for v in variants if (path, v) in fns]
                first = {}
                for jit in here:
                    start = time.perf_counter()
                    _sync(fns[(path, jit)](x))
                    first[jit] = time.perf_counter() - start
                    # auto: enough calls for MeasuredJit to measure this shape and choose
                    extra = fns[(path, jit)].warm_calls + 1 if jit == "auto" else 0
                    for _ in range(args.warmup + extra):
                        _sync(fns[(path, jit)](x))
                times = {v: [] for v in here}
                cpu = {v: [] for v in here}
                other = {v: [] for v in here}
                for r in range(args.repeats):
                    for jit in here if r % 2 == 0 else here[::-1]:
                        sec, cpu_sec, load = _timed_block(fns[(path, jit)], x, args.calls)
                        times[jit].append(sec)
                        cpu[jit].append(cpu_sec)
                        other[jit].append(load)
                off, on = statistics.median(times[False]), statistics.median(times[True])
                cpu_off, cpu_on = statistics.median(cpu[False]), statistics.median(cpu[True])
                row = {
                    "size": size,
                    "batch": batch,
                    "path": path,
                    "off_ms_per_call": [1000 * t for t in times[False]],
                    "on_ms_per_call": [1000 * t for t in times[True]],
                    "off_other_cores": other[False],
                    "on_other_cores": other[True],
                    "off_cpu_ms_per_call": [1000 * t for t in cpu[False]],
                    "on_cpu_ms_per_call": [1000 * t for t in cpu[True]],
                    "off_median_ms": 1000 * off,
                    "on_median_ms": 1000 * on,
                    "on_over_off": on / off,
                    "off_median_cpu_ms": 1000 * cpu_off,
                    "on_median_cpu_ms": 1000 * cpu_on,
                    "on_over_off_cpu": cpu_on / cpu_off,
                    "first_call_s": {"off": first[False], "on": first[True]},
                }
                if "auto" in here:
                    auto = statistics.median(times["auto"])
                    cpu_auto = statistics.median(cpu["auto"])
                    choice = fns[(path, "auto")].choices[tuple(x.shape)]
                    row.update(
                        auto_ms_per_call=[1000 * t for t in times["auto"]],
                        auto_cpu_ms_per_call=[1000 * t for t in cpu["auto"]],
                        auto_other_cores=other["auto"],
                        auto_median_ms=1000 * auto,
                        auto_median_cpu_ms=1000 * cpu_auto,
                        auto_over_best=auto / min(off, on),
                        auto_over_best_cpu=cpu_auto / min(cpu_off, cpu_on),
                        auto_choice=choice,
                    )
                    print(
                        f"{size:4d} b{batch:<3d} {path:8s} auto {1000 * auto:8.1f} ms, CPU "
                        f"{1000 * cpu_auto:.1f} ms (chose XLA {'on' if choice['jit'] else 'off'}: "
                        f"measured wall/CPU ms off {choice['ms_off']:.1f}/{choice['cpu_ms_off']:.1f}, "
                        f"on {choice['ms_on'] or float('nan'):.1f}/"
                        f"{choice['cpu_ms_on'] or float('nan'):.1f}; {choice['note']})  auto/best "
                        f"{auto / min(off, on):5.2f}, CPU {cpu_auto / min(cpu_off, cpu_on):5.2f}",
                        flush=True,
                    )
                rows.append(row)
                print(
                    f"{size:4d} b{batch:<3d} {path:8s} off {1000 * off:8.1f} ms  on "
                    f"{1000 * on:8.1f} ms  on/off {on / off:5.2f}  | CPU ms off "
                    f"{1000 * cpu_off:8.1f} on {1000 * cpu_on:8.1f} on/off {cpu_on / cpu_off:5.2f}"
                    f"  (first call off {first[False]:.1f} s, on {first[True]:.1f} s)",
                    flush=True,
                )
                for jit in here:
                    name = names[jit]
                    reps = " ".join(
                        f"{1000 * t:.1f}/{1000 * c:.1f}({o:.1f})"
                        for t, c, o in zip(times[jit], cpu[jit], other[jit])
                    )
                    print(f"      {name:3s} wall/CPU ms (other cores): {reps}", flush=True)
    scratch.cleanup()
    command = " ".join(["python", "bench/bench_inference.py", *(args.argv or sys.argv[1:])])
    print()
    print(
        "| size | batch | path | XLA off (ms/call) | XLA on (ms/call) | on / off "
        "| CPU ms off | CPU ms on | on / off (CPU) |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} | {r['batch']} | {r['path']} | {r['off_median_ms']:.1f} | "
            f"{r['on_median_ms']:.1f} | {r['on_over_off']:.2f} | {r['off_median_cpu_ms']:.1f} "
            f"| {r['on_median_cpu_ms']:.1f} | {r['on_over_off_cpu']:.2f} |"
        )
    auto_rows = [r for r in rows if "auto_median_ms" in r]
    if auto_rows:
        print(
            "\n| size | batch | path | auto chose | ms off / on / auto | auto / best "
            "| CPU ms off / on / auto | auto / best (CPU) |"
        )
        print("|---:|---:|---|---|---|---:|---|---:|")
        for r in auto_rows:
            chose = "on" if r["auto_choice"]["jit"] else "off"
            print(
                f"| {r['size']} | {r['batch']} | {r['path']} | {chose} | "
                f"{r['off_median_ms']:.1f} / {r['on_median_ms']:.1f} / {r['auto_median_ms']:.1f} "
                f"| {r['auto_over_best']:.2f} | {r['off_median_cpu_ms']:.1f} / "
                f"{r['on_median_cpu_ms']:.1f} / {r['auto_median_cpu_ms']:.1f} | "
                f"{r['auto_over_best_cpu']:.2f} |"
            )
    print(f"\ncommand: {command}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": command, "tensorflow": tf.__version__, "rows": rows}, f, indent=1)
    return 0


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
    parser.add_argument(
        "--compare-jit", action="store_true", help="XLA off vs on per path (ABAB), see above"
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="--compare-jit: also time the default jit_compile='auto' (MeasuredJit on a CPU) "
        "on the scoring and serving paths, after it has measured and chosen",
    )
    parser.add_argument("--sizes", default="128,256", help="--compare-jit: image sides")
    parser.add_argument("--batches", default="1,16", help="--compare-jit: batch sizes")
    parser.add_argument(
        "--paths", default="forward,scoring,serving", help="--compare-jit: paths to time"
    )
    parser.add_argument("--repeats", type=int, default=7, help="--compare-jit: repeats per side")
    parser.add_argument(
        "--depth", type=int, default=None, help="--compare-jit: AESc depth (default: 6)"
    )
    parser.add_argument("--calls", type=int, default=3, help="--compare-jit: calls per repeat")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.compare_jit:
        return compare_jit(args)

    # The package first: it turns TF's oneDNN kernels on, before TensorFlow loads.
    import keras_skipae as ks  # isort: skip
    import numpy as np
    import tensorflow as tf

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
