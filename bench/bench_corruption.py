"""Stain-corruption throughput: the TF pipeline vs a NumPy + OpenCV per-image version.

Both draw the same stain model (Collin & De Vleeschouwer, ICPR 2020): an ellipse
with semi-axes 1-12 % of the side, 20 jittered outline points joined by a closed
cubic spline, filled, grey uniform in [10, 220] / 255 plus N(0, 0.014) noise,
blended into the image. 256 x 256 grayscale images, batches of 32.

* ``tf op``: ``Stains()`` on a batch inside a ``tf.function`` (vectorised over the batch);
* ``tf.data``: the full ``keras_skipae.data.corrupt`` pipeline (cached images, shuffle,
  batch, corrupt, prefetch), consumed batch by batch;
* ``tf op XLA``: the same op under ``tf.function(jit_compile=True)`` (for GPUs; shown for
  completeness on CPU);
* ``numpy+cv2``: a straightforward per-image Python version, the way reference code does
  it: full-image noise, ``cv2.fillPoly`` of the interpolated outline, full-image blend;
* ``Anomalies()``: the anomaly head's training mixture (``keras_skipae.data.Anomalies``),
  as a TF op and in the ``corrupt`` pipeline.

Each configuration runs in a fresh subprocess, with TensorFlow (intra/inter-op
and tf.data) and OpenCV limited to N threads (``--threads 1 2``): the 1-thread
numbers are the per-core comparison. The NumPy version is single-process Python;
with 2 threads only OpenCV may use the second core.

It also times short epochs of the tf.data pipeline with a fixed small prefetch /
parallelism vs ``tf.data.AUTOTUNE`` (the end-of-epoch iterator teardown), and,
with ``--aesc``, the rate at which AESc training consumes 256 x 256 images here.

Usage (from the repository root)::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_corruption.py --aesc
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SIZE, BATCH = 256, 32


def _rate(fn, n_images, min_seconds):
    """Best of several timed rounds, in images per second (after one warm-up call)."""
    fn()
    rates = []
    t_end = time.perf_counter() + min_seconds
    while time.perf_counter() < t_end or len(rates) < 3:
        t0 = time.perf_counter()
        fn()
        rates.append(n_images / (time.perf_counter() - t0))
    return max(rates), sorted(rates)[len(rates) // 2]


def _numpy_stain(img, rng, spline):
    """One stain, drawn per image with NumPy + OpenCV (full-image noise and blend)."""
    import cv2
    import numpy as np

    h, w = img.shape[:2]
    side = min(h, w)
    a, b = rng.uniform(0.01 * side, 0.12 * side, size=2)
    theta = rng.uniform(0, 2 * np.pi)
    r = max(a, b)
    cy, cx = rng.uniform(r, h - 1 - r), rng.uniform(r, w - 1 - r)
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    ex, ey = a * np.cos(t), b * np.sin(t)
    j = 0.1 * (a + b) / 2
    px = ex * np.cos(theta) - ey * np.sin(theta) + rng.uniform(-j, j, 20) + cx
    py = ex * np.sin(theta) + ey * np.cos(theta) + rng.uniform(-j, j, 20) + cy
    outline = np.stack([spline @ px, spline @ py], axis=-1)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    grey = rng.uniform(10, 220) / 255.0
    stain = np.clip(grey + rng.normal(0.0, 0.014, size=(h, w)), 0, 1).astype(np.float32)
    m = mask.astype(np.float32)[..., None]
    return img * (1 - m) + stain[..., None] * m, m


def worker(threads: int, seconds: float, aesc: bool) -> dict:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import cv2
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    cv2.setNumThreads(threads)

    from keras_skipae.data import corrupt
    from keras_skipae.data.corruptions import Anomalies, Stains
    from keras_skipae.data.corruptions.raster import _periodic_spline_matrix

    out = {"threads": threads}
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.8, size=(8 * BATCH, SIZE, SIZE, 1)).astype(np.float32)
    batch = tf.constant(images[:BATCH])
    stains = Stains()

    op = tf.function(lambda x, s: stains(x, s))
    counter = iter(range(10**9))
    out["tf_op"] = _rate(
        lambda: op(batch, tf.constant([0, next(counter)], tf.int64))[0].numpy(), BATCH, seconds
    )

    ds = tf.data.Dataset.from_tensor_slices(images)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = threads
    opts.threading.max_intra_op_parallelism = 1

    def pipeline_rate(corruption):
        """Images/s of the full corrupt() pipeline with ``corruption``, 8 batches a round."""
        it = iter(
            corrupt(
                ds,
                corruption,
                seed=0,
                batch_size=BATCH,
                repeat=True,
                drop_remainder=True,
                num_parallel_calls=threads,
                prefetch=2,
            ).with_options(opts)
        )
        return _rate(lambda: [next(it)[0].numpy() for _ in range(8)], 8 * BATCH, seconds)

    out["tf_data"] = pipeline_rate(stains)

    xla = tf.function(lambda x, s: stains(x, s), jit_compile=True)
    out["tf_op_xla"] = _rate(
        lambda: xla(batch, tf.constant([0, next(counter)], tf.int64))[0].numpy(), BATCH, seconds
    )

    # The learned head's training anomalies: the mixture (stains, scratches, Perlin
    # regions filled with the batch's texture, a procedural texture or a colour shift).
    anomalies = Anomalies()
    mix = tf.function(lambda x, s: anomalies(x, s))
    out["anomalies_op"] = _rate(
        lambda: mix(batch, tf.constant([0, next(counter)], tf.int64))[0].numpy(), BATCH, seconds
    )
    out["anomalies_tf_data"] = pipeline_rate(anomalies)

    spline = _periodic_spline_matrix(20, 4).astype(np.float64)
    nrng = np.random.default_rng(1)

    def numpy_batch():
        res = [_numpy_stain(images[i], nrng, spline) for i in range(BATCH)]
        return np.stack([r[0] for r in res]), np.stack([r[1] for r in res])

    out["numpy_cv2"] = _rate(numpy_batch, BATCH, seconds)

    # Short epochs (4 batches of 32) through fit-like iteration: fixed vs AUTOTUNE.
    small = tf.data.Dataset.from_tensor_slices(images[: 4 * BATCH])
    for name, par, pre in (
        ("fixed_2", threads, 2),
        ("autotune", tf.data.AUTOTUNE, tf.data.AUTOTUNE),
    ):
        p = corrupt(
            small, stains, seed=0, batch_size=BATCH, num_parallel_calls=par, prefetch=pre
        ).with_options(opts)
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            for x, _y in p:
                x.numpy()
            times.append(time.perf_counter() - t0)
        out[f"epoch_{name}"] = times[1:]

    if aesc:
        import keras

        from keras_skipae.models import build_aesc

        model = build_aesc(input_shape=(SIZE, SIZE, 1))
        model.compile(optimizer="adam", loss="mse")
        xb = images[:8]
        model.train_on_batch(xb, xb)
        t0 = time.perf_counter()
        steps = 3
        for _ in range(steps):
            model.train_on_batch(xb, xb)
        out["aesc_train"] = steps * 8 / (time.perf_counter() - t0)
        out["aesc_params"] = int(model.count_params())
        del keras
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per measurement")
    parser.add_argument(
        "--aesc", action="store_true", help="also time AESc training (1 thread run)"
    )
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print("RESULT " + json.dumps(worker(args.worker, args.seconds, args.aesc)))
        return 0

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(
        f"stain throughput, {SIZE}x{SIZE} grayscale, batch {BATCH}, {os.cpu_count()} CPUs; "
        "best (median) of timed rounds, images/s"
    )
    results = []
    for i, n in enumerate(args.threads):
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(n),
            OPENBLAS_NUM_THREADS=str(n),
            MKL_NUM_THREADS=str(n),
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        cmd = [sys.executable, __file__, "--worker", str(n), "--seconds", str(args.seconds)]
        if args.aesc and i == len(args.threads) - 1:
            cmd.append("--aesc")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        results.append(json.loads(line[0][7:]))

    rows = (
        ("tf_op", "TF op (tf.function, vectorised)"),
        ("tf_data", "TF tf.data corrupt() pipeline"),
        ("tf_op_xla", "TF op, XLA (jit_compile=True)"),
        ("numpy_cv2", "NumPy+OpenCV per image"),
        ("anomalies_op", "Anomalies() mixture, TF op"),
        ("anomalies_tf_data", "Anomalies() in corrupt() pipeline"),
    )
    print(f"{'':34s}" + "".join(f"{str(r['threads']) + ' thread(s)':>22s}" for r in results))
    for key, label in rows:
        print(f"{label:34s}" + "".join(f"{r[key][0]:>12.0f} ({r[key][1]:>6.0f})" for r in results))
    for r in results:
        t = r["threads"]
        print(
            f"[{t} thread(s)] TF op / NumPy+OpenCV: {r['tf_op'][0] / r['numpy_cv2'][0]:.2f}x; "
            f"tf.data / NumPy+OpenCV: {r['tf_data'][0] / r['numpy_cv2'][0]:.2f}x"
        )
        for name in ("fixed_2", "autotune"):
            ts = r[f"epoch_{name}"]
            print(
                f"[{t} thread(s)] 4-batch epochs, {name:8s}: mean {1000 * sum(ts) / len(ts):.0f} ms, "
                f"max {1000 * max(ts):.0f} ms"
            )
        if "aesc_train" in r:
            print(
                f"[{t} thread(s)] AESc ({r['aesc_params']:,} params) training consumes "
                f"{r['aesc_train']:.1f} img/s at {SIZE}x{SIZE}; tf.data stains / that = "
                f"{r['tf_data'][0] / r['aesc_train']:.0f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
