"""Tiling benchmark: speed and peak memory of tiled scoring of large frames.

Measures :func:`keras_skipae.scoring.make_tiled_scorer` (what ``evaluate`` and the
SavedModel's ``serving_tiled`` run: tiles through the model, residual maps blended with
the Hann window, Gaussian smoothing sigma 4 on the full-resolution map, max score) for the
AESc in its default configuration (depth 6, filters 16) on ``--tile`` x ``--tile``
grayscale tiles (random weights: the cost does not depend on their values), for every
frame size of ``--sizes``, overlap of ``--overlaps`` and tile batch size of ``--batches``:

* milliseconds per frame and frames per second (each repeat is one call on ``--frames``
  frames, after one warm-up call that traces the function; every repeat is printed, the
  table gives the median);
* peak memory: the process's peak resident set size (``VmHWM``, reset through
  ``/proc/self/clear_refs`` before the timed calls, so each configuration gets its own
  peak) and its increase over the resident size before the calls; TensorFlow's CPU
  allocator statistics where ``tf.config.experimental.get_memory_info`` supports the
  CPU (it does not in TensorFlow 2.21: printed as n/a).

For reference, one row per frame size scores the frame resized to the tile size (what
``image_size=tile`` does without tiling). Run it under the shared lock::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_tiling.py \\
        --sizes 1024,2048 --overlaps 0,32,64 --batches 8,32 --repeats 3

Numbers are printed (a Markdown table) and optionally written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _tf_allocator_peak(tf):
    try:
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    except (ValueError, KeyError, RuntimeError):
        return None


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _measure(fn, frames, *, repeats: int, tf) -> dict:
    out = fn(frames)  # warm-up: traces the function
    out["score"].numpy()
    rss_before = _status_kib("VmRSS")
    reset = _reset_peak()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(frames)
        for v in out.values():
            v.numpy()
        times.append(time.perf_counter() - start)
    peak = _status_kib("VmHWM") if reset else None
    n = int(frames.shape[0])
    ms = [1000 * t / n for t in times]
    return {
        "ms_per_frame_runs": ms,
        "ms_per_frame": statistics.median(ms),
        "frames_per_s": 1000 / statistics.median(ms),
        "peak_rss_mib": None if peak is None else peak / 1024,
        "peak_over_start_mib": None if peak is None else (peak - rss_before) / 1024,
        "tf_allocator_peak_mib": _tf_allocator_peak(tf),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1024,2048", help="frame sides, comma-separated")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlaps", default="0,32,64")
    p.add_argument("--batches", default="8,32", help="tiles per model call")
    p.add_argument("--frames", type=int, default=1, help="frames per call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_skipae as ks
    from keras_skipae.ops.tiling import tiles_per_axis

    sizes = [int(s) for s in args.sizes.split(",")]
    overlaps = [int(s) for s in args.overlaps.split(",")]
    batches = [int(s) for s in args.batches.split(",")]
    tile = args.tile
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, keras_skipae {ks.__version__}; "
        f"load average at start {_load()}"
    )
    model = ks.build_aesc(input_shape=(tile, tile, 1))
    print(
        f"model: AESc default (depth 6, filters 16), {model.count_params():,} parameters, "
        f"{tile}x{tile}x1 tiles; scoring: ScoringConfig() defaults"
    )
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        frames = tf.constant(rng.random((args.frames, size, size, 1), dtype=np.float32))
        scorer = ks.scoring.make_scorer(model, image_shape=(tile, tile, 1))

        def resized(x, scorer=scorer):
            small = tf.clip_by_value(tf.image.resize(x, (tile, tile), antialias=True), 0, 1)
            return scorer(small)

        r = _measure(resized, frames, repeats=args.repeats, tf=tf)
        rows.append(dict(r, size=size, overlap=None, batch=None, tiles=1, mode="resized"))
        print(
            f"  {size} resized to {tile}: runs (ms/frame) "
            f"{[round(v, 1) for v in r['ms_per_frame_runs']]}",
            flush=True,
        )
        for overlap in overlaps:
            n = tiles_per_axis(size, tile, overlap) ** 2
            for batch in batches:
                fn = ks.scoring.make_tiled_scorer(
                    model, tile_size=tile, tile_overlap=overlap, batch_size=batch
                )
                r = _measure(fn, frames, repeats=args.repeats, tf=tf)
                rows.append(dict(r, size=size, overlap=overlap, batch=batch, tiles=n, mode="tiled"))
                print(
                    f"  {size} tiled, overlap {overlap}, batch {batch} ({n} tiles): runs "
                    f"(ms/frame) {[round(v, 1) for v in r['ms_per_frame_runs']]}, peak RSS "
                    f"{r['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    print(f"load average at end {_load()}\n")

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    print(
        "| frame | mode | overlap | tile batch | tiles/frame | ms/frame (median) | frames/s "
        "| peak RSS MiB | peak - start MiB | TF allocator peak MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mode = f"resized to {tile}" if r["mode"] == "resized" else "tiled"
        print(
            f"| {r['size']}x{r['size']} | {mode} | {fmt(r['overlap'], 'd')} | {fmt(r['batch'], 'd')} "
            f"| {r['tiles']} | {r['ms_per_frame']:.0f} | {r['frames_per_s']:.2f} "
            f"| {fmt(r['peak_rss_mib'], '.0f')} | {fmt(r['peak_over_start_mib'], '.0f')} "
            f"| {fmt(r['tf_allocator_peak_mib'], '.0f')} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
