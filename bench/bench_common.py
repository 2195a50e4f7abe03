"""Helpers shared by the benchmark scripts: the synthetic data, one category's splits.

The scripts run from the repository (``python bench/bench_x.py``), so this folder is
on ``sys.path`` and they import it as ``bench_common``.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path


def fmt(v, d=3):
    """A number with ``d`` decimals, or ``n/a`` for None / NaN."""
    return "  n/a" if v is None or v != v else f"{v:.{d}f}"


def default_data_root(image_size: int, data_seed: int) -> Path:
    """Where the benchmarks keep their generated synthetic data."""
    suffix = f"_data{data_seed}" if data_seed else ""
    return Path(f"/tmp/keras_skipae_bench_synthetic_{image_size}{suffix}")


def ensure_synthetic(root, categories, *, image_size: int, seed: int) -> Path:
    """Generates the ``categories`` missing under ``root`` (a complete folder each).

    Categories are built under ``<root>.part`` and moved in when complete, so an
    interrupted generation never leaves a half-written category behind.
    """
    from keras_skipae import data

    root = Path(root)
    missing = [c for c in categories if not (root / c).is_dir()]
    if missing:
        tmp = Path(str(root) + ".part")
        t = time.monotonic()
        data.make_dataset(tmp, categories=missing, image_size=image_size, seed=seed, overwrite=True)
        root.mkdir(parents=True, exist_ok=True)
        for c in missing:
            os.replace(tmp / c, root / c)
        print(f"generated {missing} in {time.monotonic() - t:.0f} s", flush=True)
    return root


def load_category(root, category, *, image_size: int, seed: int) -> dict:
    """One category's datasets: ``good`` (train), ``test``, ``val`` (the held-out
    10 % of ``good`` that ``train`` validates on), ``train`` (``good`` without ``val``),
    ``channels``, ``color_mode``."""
    from keras_skipae import data, training

    root = Path(root)
    first = sorted((root / category / "train" / "good").iterdir())[0]
    channels = 3 if data.image_info(first)["channels"] >= 3 else 1
    color_mode = "rgb" if channels == 3 else "grayscale"
    good = data.mvtec_dataset(
        root, category, split="train", image_size=image_size, color_mode=color_mode
    )
    test = data.mvtec_dataset(
        root, category, split="test", image_size=image_size, color_mode=color_mode
    )
    train, val = training.split_validation(good, 0.1, seed)
    return {
        "good": good,
        "train": train,
        "test": test,
        "val": val,
        "channels": channels,
        "color_mode": color_mode,
    }


def machine_line() -> str:
    """The machine, TensorFlow, Keras, GPU and oneDNN, in one line."""
    import keras
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"TF {tf.__version__}, Keras {keras.__version__}, "
        f"GPU: {bool(tf.config.list_physical_devices('GPU'))}, "
        f"oneDNN: {_pywrap_util_port.IsMklEnabled()}"
    )


def busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        machine = (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except OSError:
        machine = float("nan")
    return machine, r.ru_utime + r.ru_stime
