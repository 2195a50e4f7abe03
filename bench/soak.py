"""Soak: long training with the full pipeline, recording memory, open files and threads.

Trains an AESc with everything a real run uses: stain corruption, a validation split,
TensorBoard scalars and reconstruction previews (``run_dir/logs``, ``run_dir/previews``),
``DiscrepancyMonitor`` (CSV, JSON, TensorBoard, figures) and the per-epoch backup. Every
``--every`` training steps it records the process's resident memory (``VmRSS``), its open
file descriptors (``/proc/self/fd``) and its threads. Step-based (``--steps``), so it needs
no lock; run it with ``nice``.

    nice .venv/bin/python bench/soak.py --steps 2000 --image-size 64 \\
        --json bench/results/soak.json --png bench/results/soak.png

Goals (issue 19): RSS at the end within 10 % of RSS at step 200; no growth in open file
descriptors or threads. ``tests/test_training_faults.py`` runs a 300-step version
(:func:`soak` with a tiny model) and checks RSS growth < 25 % between steps 100 and 300 and
no growth in open file descriptors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np


def resources() -> dict:
    """This process's resident memory (MiB), open file descriptors and threads."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": int(fields["Threads"]),
    }


class ResourceSampler(keras.callbacks.Callback):
    """Records :func:`resources` every ``every`` training steps (``samples``)."""

    def __init__(self, every: int = 100):
        super().__init__()
        self.every = int(every)
        self.step = 0
        self.samples: list[dict] = []
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            sample = dict(resources(), step=self.step, seconds=time.monotonic() - self.start)
            self.samples.append(sample)
            print(
                f"step {self.step:5d}  rss {sample['rss_mib']:7.1f} MiB  fds {sample['fds']:3d}"
                f"  threads {sample['threads']:3d}  {sample['seconds']:6.0f} s",
                flush=True,
            )


def soak(
    data_root,
    category: str,
    run_dir,
    *,
    steps: int,
    steps_per_epoch: int = 100,
    image_size: int = 64,
    batch_size: int = 16,
    model_kwargs: dict | None = None,
    every: int = 100,
    probes: int = 8,
    verbose=0,
) -> list[dict]:
    """Trains ``steps`` steps with the full pipeline; returns the resource samples."""
    import keras_skipae as ks
    from keras_skipae.training.callbacks import DiscrepancyMonitor

    if steps % steps_per_epoch:
        raise ValueError(
            f"`steps` must be a multiple of `steps_per_epoch`. Received: steps={steps}, "
            f"steps_per_epoch={steps_per_epoch}"
        )
    good = ks.data.mvtec_dataset(data_root, category, split="train", image_size=image_size)
    clean = np.stack(
        [np.asarray(e["image"], "float32") / 255.0 for e in good.take(probes).as_numpy_iterator()]
    )
    sampler = ResourceSampler(every)
    monitor = DiscrepancyMonitor(
        clean, corruption=ks.data.Stains(), seed=0, out_dir=Path(run_dir) / "discrepancy"
    )
    kwargs = {"input_shape": (image_size, image_size, clean.shape[-1]), "bn_momentum": 0.9}
    ks.train(
        "aesc",
        good,
        model_kwargs={**kwargs, **(model_kwargs or {})},
        epochs=steps // steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        run_dir=run_dir,
        callbacks=[monitor, sampler],
        verbose=verbose,
    )
    return sampler.samples


def summary(samples: list[dict], early_step: int = 200) -> dict:
    """Growth of RSS from ``early_step`` to the end; first and last fds and threads."""
    by_step = {s["step"]: s for s in samples}
    early = by_step.get(early_step, samples[0])
    last = samples[-1]
    return {
        "rss_early_mib": early["rss_mib"],
        "rss_end_mib": last["rss_mib"],
        "rss_growth": last["rss_mib"] / early["rss_mib"] - 1.0,
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "fds": [early["fds"], last["fds"], max(s["fds"] for s in samples)],
        "threads": [early["threads"], last["threads"], max(s["threads"] for s in samples)],
        "early_step": early["step"],
        "last_step": last["step"],
    }


def _plot(samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s["step"] for s in samples]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(steps, [s["rss_mib"] for s in samples], marker="o", ms=3)
    axes[0].set(xlabel="training step", ylabel="RSS (MiB)", title="resident memory")
    axes[1].plot(steps, [s["fds"] for s in samples], label="open fds")
    axes[1].plot(steps, [s["threads"] for s in samples], label="threads")
    axes[1].set(xlabel="training step", title="file descriptors, threads")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--data", default=None, help="MVTec-layout root (default: generated)")
    p.add_argument("--category", default="mesh")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    from keras_skipae.data import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "data"
            synthetic.make_dataset(
                root, categories=[args.category], image_size=args.image_size, n_train=100
            )
        samples = soak(
            root,
            args.category,
            Path(tmp) / "run",
            steps=args.steps,
            steps_per_epoch=args.steps_per_epoch,
            image_size=args.image_size,
            batch_size=args.batch_size,
            every=args.every,
        )
    result = summary(samples)
    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", platform.platform(), os.cpu_count(), "cores")
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "summary": result, "samples": samples}, indent=1)
        )
    if args.png:
        _plot(samples, args.png)


if __name__ == "__main__":
    main()
