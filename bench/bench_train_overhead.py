"""Where ``ks.train`` spends the time that a bare ``fit`` does not: one piece at a time.

Trains the same model (``ks.build_<model>``, depth 5 at 128x128, 6 at 256x256), batch
16, ``--steps`` steps per epoch on synthetic ``woven`` images, in these configurations,
interleaved (repetition i runs every configuration once, the order reversed every
repetition, so a drift in the load of a shared machine hits them all):

* ``fit``: ``model.fit`` on clean ``(x, x)`` batches of the same images (tf.data, repeated);
* ``train-bare``: ``ks.train`` with no corruption, MSE, no metrics, no validation, no
  run folder, no schedule, no previews;
* ``+stains``: stains drawn in tf.data (``corruption="auto"``), ``stain_weight=1``;
* ``+weight``: and the stain weight (``stain_weight=None``: 10, as a sample weight);
* ``+metrics``: and PSNR/SSIM in the step (``metrics="auto"``);
* ``+val``: and the validation split (0.1, evaluated every epoch);
* ``+run``: and a run folder (CSVLogger, RunBackup, ReduceLROnPlateau);
* ``default``: ``ks.train``'s default recipe (the above and previews/TensorBoard);
* ``default-preview0``: the same with the preview's grid drawn every epoch
  (``PREVIEW_MIN_SECONDS = 0``, as before the 30 s interval).

Each run trains ``--warmup`` untimed epochs then ``--epochs`` timed ones. A row prints the
median ms/epoch (epoch start to the next epoch's start), the step span (first batch to
last batch), the validation span (``on_test_begin`` to ``on_test_end``), the paired ratio
epoch(config)/epoch(fit), the same for the process CPU time per epoch (which
time-slicing on a shared machine barely changes), and the cores other processes used
(``other``, as in ``bench_train.py``). In the ``default`` configuration every built-in callback's
``on_epoch_end`` is timed (ms/epoch per callback class).

Example::

    python bench/bench_train_overhead.py --models aesc --sizes 128,256 --repeats 3 \\
        --json bench/results/train_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train as bt  # noqa: E402

CONFIGS = (
    "fit",
    "train-bare",
    "+stains",
    "+weight",
    "+metrics",
    "+val",
    "+run",
    "default",
    "default-preview0",
)
#: The configurations running ks.train's default recipe (their callbacks are timed).
DEFAULTS = ("default", "default-preview0")


def _recipe(config: str) -> dict | None:
    """``ks.train`` keyword arguments of ``config`` (None: a bare ``fit``)."""
    if config == "fit":
        return None
    if config in DEFAULTS:
        return {}
    steps = CONFIGS.index(config)  # train-bare = 1, +stains = 2, ...
    kw = dict(
        corruption=None,
        loss="mse",
        metrics=(),
        validation_split=0.0,
        reduce_lr=False,
        schedule=None,
        tensorboard=False,
        run=False,
    )
    if steps >= 2:
        kw.update(corruption="auto", stain_weight=1.0)
    if steps >= 3:
        kw.update(stain_weight=None)
    if steps >= 4:
        kw.update(metrics="auto")
    if steps >= 5:
        kw.update(validation_split=0.1)
    if steps >= 6:
        kw.update(run=True, reduce_lr=True, schedule="auto")
    return kw


def _callback_timers(keras):
    """Wraps the ``on_epoch_end`` of the built-in callback classes to accumulate seconds."""
    from keras_skipae.training.callbacks.atomic_best_model import _AtomicBestModel
    from keras_skipae.training.callbacks.backup import RunBackup
    from keras_skipae.training.callbacks.log_learning_rate import _LogLearningRate
    from keras_skipae.training.callbacks.preview import ReconstructionPreview
    from keras_skipae.training.callbacks.stop_on_non_finite import StopOnNonFinite

    spent = defaultdict(list)
    classes = (
        StopOnNonFinite,
        _LogLearningRate,
        ReconstructionPreview,
        _AtomicBestModel,
        RunBackup,
        keras.callbacks.CSVLogger,
        keras.callbacks.ReduceLROnPlateau,
    )
    for cls in classes:
        original = cls.__dict__.get("on_epoch_end")
        if original is None:
            continue

        def timed(self, epoch, logs=None, _f=original, _name=cls.__name__):
            t = time.perf_counter()
            try:
                return _f(self, epoch, logs)
            finally:
                spent[_name].append(time.perf_counter() - t)

        cls.on_epoch_end = timed
    return spent


def _timer(keras, skip):
    base = bt.make_epoch_timer(skip)

    class Timer(type(base)):
        def __init__(self):
            super().__init__()
            self.val, self._v0, self._epoch = [], None, 0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch
            super().on_epoch_begin(epoch, logs)

        def on_test_begin(self, logs=None):
            self._v0 = time.perf_counter()

        def on_test_end(self, logs=None):
            if self._epoch >= skip and self._v0 is not None:
                self.val.append(time.perf_counter() - self._v0)

    return Timer()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="aesc")
    p.add_argument("--sizes", default="128")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--precision", default="float32")
    p.add_argument("--steps", type=int, default=13, help="steps per epoch")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = set(configs) - set(CONFIGS)
    if bad:
        raise SystemExit(f"unknown --configs {sorted(bad)}; choose from {list(CONFIGS)}")
    if "fit" in configs:
        configs.remove("fit")
    configs.insert(0, "fit")  # the reference of the ratios

    bt.setup_tf(args.threads)
    import keras
    import tensorflow as tf

    import keras_skipae as ks
    from keras_skipae.training import fit_callbacks, precision_scope

    spent = _callback_timers(keras)
    tmp = tempfile.TemporaryDirectory(prefix="ks_overhead_")
    roots = {}

    def images_for(size):
        if size not in roots:
            roots[size] = ks.data.synthetic.make_dataset(
                Path(tmp.name) / f"synth{size}",
                categories=["woven"],
                image_size=size,
                n_train=64,
                n_test_good=0,
                n_test_defect=0,
            )
        return ks.data.mvtec_dataset(roots[size], "woven", split="train", image_size=size)

    env = {"cpu": bt.cpu_info(), "machine": bt.cpu_flags(), "tensorflow": tf.__version__}
    print(f"machine: {env['machine']}", flush=True)
    results = []
    epochs = args.warmup + args.epochs
    for model_name in [m.strip() for m in args.models.split(",")]:
        for size in [int(s) for s in args.sizes.split(",")]:
            depth = bt.default_depth(model_name, size)
            kwargs = {"input_shape": (size, size, 1)}
            if depth is not None:
                kwargs["depth"] = depth
            per = {c: [] for c in configs}
            cb_ms = {c: defaultdict(list) for c in DEFAULTS}
            preview_seconds = fit_callbacks.PREVIEW_MIN_SECONDS
            for r in range(args.repeats):
                for config in configs if r % 2 == 0 else configs[::-1]:
                    keras.utils.set_random_seed(0)
                    timer = _timer(keras, args.warmup)
                    recipe = _recipe(config)
                    for v in spent.values():
                        v.clear()
                    fit_callbacks.PREVIEW_MIN_SECONDS = (
                        0.0 if config == "default-preview0" else preview_seconds
                    )
                    with tempfile.TemporaryDirectory(prefix="ks_bench_run_") as run_tmp:
                        if recipe is None:
                            with precision_scope(args.precision):
                                model = getattr(ks, f"build_{model_name}")(**kwargs)
                            model.compile(optimizer=keras.optimizers.Adam(bt.LR), loss="mse")
                            ds = (
                                images_for(size)
                                .map(lambda e: (e["image"], e["image"]))
                                .repeat()
                                .batch(bt.BATCH, drop_remainder=True)
                                .prefetch(2)
                            )
                            model.fit(
                                ds,
                                epochs=epochs,
                                steps_per_epoch=args.steps,
                                callbacks=[timer],
                                verbose=0,
                            )
                            del model
                        else:
                            recipe = dict(recipe)
                            run_dir = Path(run_tmp) / "r" if recipe.pop("run", True) else None
                            ks.train(
                                model_name,
                                images_for(size),
                                model_kwargs=kwargs,
                                epochs=epochs,
                                steps_per_epoch=args.steps,
                                batch_size=bt.BATCH,
                                precision=args.precision,
                                run_dir=run_dir,
                                callbacks=[timer],
                                verbose=0,
                                **recipe,
                            )
                    if config in DEFAULTS:
                        for name, v in spent.items():
                            if v:
                                cb_ms[config][name].append(
                                    1e3 * statistics.median(v[args.warmup :] or v)
                                )
                    per[config].append(timer)
                    print(
                        f"  rep {r} {model_name} {size} {config:10s} epoch "
                        + " ".join(f"{1e3 * w:.0f}" for w in timer.epoch_wall)
                        + " ms; other cores "
                        + " ".join(f"{c:.1f}" for c in timer.foreign),
                        flush=True,
                    )
                    keras.backend.clear_session()
            base = per["fit"]
            for config in configs:
                timers = per[config]
                row = {
                    "model": model_name,
                    "size": size,
                    "depth": depth,
                    "precision": args.precision,
                    "config": config,
                    "steps": args.steps,
                    "epoch_ms": 1e3 * statistics.median(w for t in timers for w in t.epoch_wall),
                    "step_span_ms": 1e3 * statistics.median(w for t in timers for w in t.step_wall),
                    "epoch_cpu_ms": 1e3 * statistics.median(c for t in timers for c in t.epoch_cpu),
                    "step_span_cpu_ms": 1e3
                    * statistics.median(c for t in timers for c in t.step_cpu),
                    "cpu_ratio_to_fit": statistics.median(
                        statistics.median(t.epoch_cpu) / statistics.median(b.epoch_cpu)
                        for t, b in zip(timers, base)
                    ),
                    "val_ms": 1e3 * statistics.median([w for t in timers for w in t.val] or [0]),
                    "ratio_to_fit": statistics.median(
                        statistics.median(t.epoch_wall) / statistics.median(b.epoch_wall)
                        for t, b in zip(timers, base)
                    ),
                    "max_other_cores": max(c for t in timers for c in t.foreign),
                }
                if config in DEFAULTS:
                    row["callback_ms_per_epoch"] = {
                        k: statistics.median(v) for k, v in cb_ms[config].items()
                    }
                results.append(row)
                print(
                    f"{model_name} {size} {config:10s} epoch {row['epoch_ms']:7.0f} ms, steps "
                    f"{row['step_span_ms']:7.0f} ms, val {row['val_ms']:5.0f} ms, "
                    f"x{row['ratio_to_fit']:.2f} of fit; CPU {row['epoch_cpu_ms']:7.0f} ms/epoch, "
                    f"x{row['cpu_ratio_to_fit']:.2f} of fit; other <= {row['max_other_cores']:.1f}",
                    flush=True,
                )
                if "callback_ms_per_epoch" in row:
                    print(
                        "    callbacks (ms/epoch): "
                        + ", ".join(
                            f"{k} {v:.1f}" for k, v in row["callback_ms_per_epoch"].items()
                        ),
                        flush=True,
                    )
    tmp.cleanup()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"env": env, "results": results, "argv": sys.argv[1:]}, indent=1),
            encoding="utf-8",
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
