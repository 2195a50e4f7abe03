"""What ``train(..., deterministic=True)`` costs in speed, and what is reproducible without it.

Each run is a fresh process (op determinism is process-wide and irreversible) that
trains the default AESc on generated 64-px images (stains, validation split, no
TensorBoard) for ``--epochs`` epochs of ``--steps`` steps with seed 0 and prints the time
per step after the first epoch (tracing excluded) and a SHA-256 of the final weights.
Runs with and without the flag alternate (on, off, off, on, ...) so that a change in
the machine's load hits both. Time-based, so run it under the benchmark lock:

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_determinism.py --reps 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(args):
    import keras
    import numpy as np

    import keras_skipae as ks

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    good = ks.data.mvtec_dataset(args.data, "mesh", split="train", image_size=args.image_size)
    clock = Clock()
    run = ks.train(
        "aesc",
        good,
        model_kwargs={"input_shape": (args.image_size, args.image_size, 1), "bn_momentum": 0.9},
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        batch_size=16,
        seed=0,
        tensorboard=False,
        callbacks=[clock],
        verbose=0,
        deterministic=args.child == "on",
    )
    digest = hashlib.sha256()
    for w in run.model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    per_step = sum(clock.times[1:]) / (args.steps * (args.epochs - 1))
    print(json.dumps({"mode": args.child, "s_per_step": per_step, "sha": digest.hexdigest()}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--data", default=None)
    p.add_argument("--child", choices=("on", "off"), default=None)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    from keras_skipae.data import synthetic

    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", platform.platform(), os.cpu_count(), "cores")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synthetic.make_dataset(data, categories=["mesh"], image_size=args.image_size, n_train=64)
        for rep in range(args.reps):
            for mode in ("on", "off") if rep % 2 == 0 else ("off", "on"):
                cmd = [sys.executable, __file__, "--child", mode, "--data", str(data)]
                cmd += ["--epochs", str(args.epochs), "--steps", str(args.steps)]
                cmd += ["--image-size", str(args.image_size)]
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results.append(result)
                print(
                    f"rep {rep} deterministic={mode:3s} {1000 * result['s_per_step']:7.1f} ms/step"
                    f"  weights {result['sha'][:12]}",
                    flush=True,
                )
    for mode in ("on", "off"):
        runs = [r for r in results if r["mode"] == mode]
        times = [1000 * r["s_per_step"] for r in runs]
        same = len({r["sha"] for r in runs}) == 1
        print(
            f"deterministic={mode:3s} median {statistics.median(times):7.1f} ms/step "
            f"(runs: {', '.join(f'{t:.1f}' for t in times)}); weights identical across "
            f"its {len(runs)} processes: {same}"
        )
    on = statistics.median(1000 * r["s_per_step"] for r in results if r["mode"] == "on")
    off = statistics.median(1000 * r["s_per_step"] for r in results if r["mode"] == "off")
    print(f"cost of determinism: {100 * (on / off - 1):+.1f} % time per step")


if __name__ == "__main__":
    main()
