"""Training-step benchmark: what the compiled loss and metrics cost per step.

Trains the AESc in its default configuration (depth 6, filters 16) at 128x128
grayscale, batch 16, on one fixed batch (the data pipeline is not timed), and
prints per step the process CPU time and the wall time (medians over
``--repeats`` blocks of ``--steps`` steps, after a warm-up) for:

* ``mse``: the loss alone;
* ``mse + psnr``, ``mse + ssim``, ``mse + psnr + ssim`` (what ``train`` compiles
  by default);
* ``mse+ssim``: the mixed loss, and ``ssim``: the SSIM loss alone;
* ``mse + ssim (2-D window)``: the SSIM metric computed with a full 11x11 window
  per moment (five depthwise passes), the implementation before the separable one,
  kept here as the reference it was measured against.

XLA is off (the CPU default). Run it under the shared lock so that benchmarks do
not overlap::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_train_step.py

Numbers are printed; tests never assert them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _ssim_2d_window(y_true, y_pred):
    """Mean SSIM per image with an 11x11 window applied per moment (the old way)."""
    import numpy as np
    from keras import ops

    from keras_skipae import losses

    c = y_pred.shape[-1]
    g = losses._gaussian_taps(11, 1.5)
    kernel = np.tile(np.outer(g, g).astype("float32")[:, :, None, None], (1, 1, c, 1))

    def blur(x):
        return ops.depthwise_conv(x, kernel, strides=1, padding="valid")

    y_true = ops.cast(y_true, y_pred.dtype)
    m = losses.ssim_from_moments(
        blur(y_true),
        blur(y_pred),
        blur(y_true * y_true),
        blur(y_pred * y_pred),
        blur(y_true * y_pred),
        c1=1e-4,
        c2=9e-4,
    )
    return ops.mean(m, axis=(1, 2, 3))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per setting")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_skipae as ks
    from keras_skipae import keras_metrics, losses

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}, "
        f"Keras {keras.__version__}; AESc {args.image_size}x{args.image_size}x1, "
        f"batch {args.batch_size}, XLA off"
    )
    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.image_size, args.image_size, 1)
    x = rng.random(shape, dtype=np.float32)
    y = rng.random(shape, dtype=np.float32)
    settings = {
        "mse": ("mse", []),
        "mse + psnr": ("mse", ["psnr"]),
        "mse + ssim": ("mse", ["ssim"]),
        "mse + psnr + ssim (train's default)": ("mse", ["psnr", "ssim"]),
        "mse + ssim (2-D window, before)": ("mse", ["ssim_2d"]),
        "loss mse+ssim": ("mse+ssim", []),
        "loss ssim": ("ssim", []),
    }
    print(f"{'setting':40s} {'CPU s/step':>11s} {'wall s/step':>12s} {'img/s':>7s}")
    for label, (loss, metric_names) in settings.items():
        metrics = []
        for m in metric_names:
            if m == "psnr":
                metrics.append(keras_metrics.PSNR())
            elif m == "ssim":
                metrics.append(keras_metrics.SSIM())
            else:
                metrics.append(keras.metrics.MeanMetricWrapper(_ssim_2d_window, name="ssim2d"))
        keras.utils.set_random_seed(0)
        model = ks.build_aesc(input_shape=shape[1:])
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=losses.get_loss(loss),
            metrics=metrics,
            jit_compile=False,
        )
        for _ in range(3):
            model.train_on_batch(x, y)
        cpu, wall = [], []
        for _ in range(args.repeats):
            c, t = _cpu(), time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            cpu.append((_cpu() - c) / args.steps)
            wall.append((time.perf_counter() - t) / args.steps)
        c_med, w_med = statistics.median(cpu), statistics.median(wall)
        print(
            f"{label:40s} {c_med:11.2f} {w_med:12.2f} {args.batch_size / w_med:7.1f}",
            flush=True,
        )
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
