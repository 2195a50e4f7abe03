"""Export benchmark: every export format of one trained AESc, against the in-process model.

For each image size (``--sizes``, default 128 and 256) and each category (``--categories``,
default the demo category ``mesh`` and the synthetic texture ``gravel``), trains an AESc
(the default recipe, ``--minutes`` CPU minutes per model, or ``--steps`` steps for a smoke
run), takes the production threshold of ``ks.evaluate`` (from the held-out good images),
exports it as a SavedModel, LiteRT float32 / dynamic-range / int8 (calibrated on the first 64
good training images), ONNX and OpenVINO, and measures per format:

* ``size``: the file size (SavedModel: the folder; OpenVINO: ``.xml`` + ``.bin``), MB;
* ``b1 1t`` / ``b1 2t``: latency at batch 1 on 1 and on 2 threads (median of ``--repeats``
  calls after a warm-up, ms). The SavedModel's thread count is fixed when TensorFlow
  starts, so it is timed in a child process per thread count;
* ``b16``: throughput at batch 16 on 2 threads, images/s (LiteRT runs batch-1 files: 16
  calls);
* ``max |ds|``: the largest score difference from the in-process float32 scores on the test
  set (absolute, and relative to the largest score);
* ``img AUROC`` / ``px AUROC``: image and pixel AUROC on the test set;
* ``agree``: the share of test images whose decision (``score >= threshold``) equals the
  in-process one.

The in-process row is ``keras_skipae.scoring.compute`` (what ``evaluate`` runs). Run it under
the shared lock, with a JSON copy of the results::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_export.py \\
        --json bench/results/export.json

A smoke run (tiny training, 64 px, one category, nothing to read into the numbers)::

    .venv/bin/python bench/bench_export.py --sizes 64 --categories mesh --steps 20 --repeats 3

Numbers are printed (a Markdown table) and optionally written as JSON; tests never assert them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_common import default_data_root, ensure_synthetic, fmt, load_category  # noqa: E402

FORMATS = [
    ("SavedModel", "saved_model", {}),
    ("LiteRT float32", "litert", {}),
    ("LiteRT dynamic", "litert", {"quantization": "dynamic_range"}),
    ("LiteRT int8", "litert", {"quantization": "int8"}),
    ("ONNX", "onnx", {}),
    ("OpenVINO", "openvino", {}),
]
SUFFIX = {"saved_model": "", "litert": ".tflite", "onnx": ".onnx", "openvino": ".xml"}

_SAVED_MODEL_TIMER = r"""
import os, sys, json, time, statistics
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf
threads = int(sys.argv[2])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
shape = json.loads(sys.argv[3]); repeats = int(sys.argv[4])
out = {}
for batch in (1, 16):
    x = tf.constant(np.random.default_rng(0).random((batch, *shape), dtype=np.float32))
    for _ in range(2):
        fn(images=x)["score"].numpy()
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(images=x)["score"].numpy(); times.append(time.perf_counter() - t)
    out[batch] = statistics.median(times)
print(json.dumps(out))
"""


def _size_mb(path: Path, fmt_name: str) -> float:
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file()]
    else:
        files = [path] + ([path.with_suffix(".bin")] if fmt_name == "openvino" else [])
    return sum(f.stat().st_size for f in files) / 1e6


def _median_time(fn, x, repeats):
    for _ in range(2):
        fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _saved_model_timing(path, shape, repeats, threads):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _SAVED_MODEL_TIMER,
            str(path),
            str(threads),
            json.dumps(shape),
            str(repeats),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["1"], out["16"]


def _arrays(ds):
    images, labels, masks = [], [], []
    for e in ds:
        images.append(e["image"].numpy())
        labels.append(int(e["label"]))
        masks.append(e["mask"].numpy()[..., 0] > 0.5)
    import numpy as np

    return np.stack(images), np.array(labels), np.stack(masks)


def _measure_format(name, fmt_name, path, images, shape, args, runtimes, EdgeScorer, tf):
    """Latency (b1 on 1 and 2 threads), b16 throughput, and the test-set outputs."""
    import numpy as np

    row = {"format": name, "size_mb": _size_mb(path, fmt_name)}
    x1, x16 = images[:1], np.repeat(images[:1], 16, axis=0)
    if fmt_name == "saved_model":
        lat = {t: _saved_model_timing(path, shape, args.repeats, t) for t in (1, 2)}
        row["b1_ms"] = {t: lat[t][0] * 1e3 for t in (1, 2)}
        row["b16_ips"] = 16 / lat[2][1]
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        outs = [fn(images=tf.constant(images[i : i + 16])) for i in range(0, len(images), 16)]
        out = {k: np.concatenate([o[k].numpy() for o in outs]) for k in ("score", "anomaly_map")}
        return row, out
    row["b1_ms"] = {}
    for t in (1, 2):
        runner = runtimes.open_runner(fmt_name, path, threads=t)
        row["b1_ms"][t] = _median_time(runner.run, x1, args.repeats) * 1e3
    row["b16_ips"] = 16 / _median_time(runner.run, x16, args.repeats)
    out = EdgeScorer(fmt_name, path).score(images)
    return row, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="128,256", help="image sides (128,256)")
    parser.add_argument("--categories", default="mesh,gravel", help="synthetic categories")
    parser.add_argument("--minutes", type=float, default=8.0, help="CPU minutes per model (8)")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead")
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per latency (21)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="keep the runs and exports here")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from bench_common import machine_line

    import keras_skipae as ks
    from keras_skipae import evaluation, scoring, training
    from keras_skipae.evaluation import metrics
    from keras_skipae.export import runtimes
    from keras_skipae.inference.scorers import EdgeScorer

    print(machine_line(), flush=True)
    out_root = Path(args.out or tempfile.mkdtemp(prefix="keras_skipae_bench_export_"))
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        root = Path(args.data_root or default_data_root(size, args.data_seed))
        cats = args.categories.split(",")
        ensure_synthetic(root, cats, image_size=size, seed=args.data_seed)
        for cat in cats:
            d = load_category(root, cat, image_size=size, seed=args.seed)
            good = d["good"]
            steps = args.steps
            run = training.train(
                "aesc",
                good,
                model_kwargs={"input_shape": (size, size, d["channels"])},
                epochs=1 if steps else 1000,
                steps_per_epoch=steps,
                seed=args.seed,
                run_dir=out_root / f"{cat}_{size}" / "run",
                overwrite=True,
                tensorboard=False,
                time_limit=None if steps else 60 * args.minutes,
                time_clock="cpu",
                precision="float32",
                verbose=0,
            )
            model = run.model
            result = evaluation.evaluate(model, d["test"], val_data=d["val"], progress=False)
            threshold = float(result.threshold)
            images, labels, masks = _arrays(d["test"])
            ref = {k: v.numpy() for k, v in scoring.compute(model, images).items()}
            calibration = np.stack([e["image"].numpy() for _, e in zip(range(64), good)])
            shape = [size, size, d["channels"]]
            rows = []
            ref_row = {
                "format": "in-process (Keras)",
                "img_auroc": metrics.image_auroc(labels, ref["score"]),
                "px_auroc": metrics.pixel_auroc(masks, ref["anomaly_map"]),
            }
            rows.append(ref_row)
            for name, fmt_name, kwargs in FORMATS:
                path = out_root / f"{cat}_{size}" / (name.replace(" ", "_") + SUFFIX[fmt_name])
                try:
                    t = time.monotonic()
                    ks.export(
                        model,
                        path,
                        format=fmt_name,
                        threshold=threshold,
                        overwrite=True,
                        **({"calibration": calibration} if fmt_name != "saved_model" else {}),
                        **kwargs,
                    )
                    t_export = time.monotonic() - t
                    row, out = _measure_format(
                        name, fmt_name, path, images, shape, args, runtimes, EdgeScorer, tf
                    )
                except ImportError as exc:
                    rows.append({"format": name, "error": str(exc)})
                    continue
                diff = np.abs(out["score"].astype(np.float64) - ref["score"])
                row.update(
                    export_s=t_export,
                    max_score_diff=float(diff.max()),
                    max_score_rel=float(diff.max() / np.abs(ref["score"]).max()),
                    img_auroc=metrics.image_auroc(labels, out["score"]),
                    px_auroc=metrics.pixel_auroc(masks, out["anomaly_map"]),
                    agree=float(
                        np.mean((out["score"] >= threshold) == (ref["score"] >= threshold))
                    ),
                )
                rows.append(row)
            results.append({"size": size, "category": cat, "threshold": threshold, "rows": rows})
            _print_table(size, cat, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0


def _print_table(size, cat, rows):
    print(f"\n### AESc {size}x{size}, {cat}\n")
    print(
        "| format | size MB | b1 1t ms | b1 2t ms | b16 img/s | max abs ds | max rel ds "
        "| img AUROC | px AUROC | agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['format']} | {r['error']} |")
            continue
        b1 = r.get("b1_ms", {})
        print(
            f"| {r['format']} | {fmt(r.get('size_mb'), 2)} | {fmt(b1.get(1), 2)} | "
            f"{fmt(b1.get(2), 2)} | {fmt(r.get('b16_ips'), 1)} | "
            f"{fmt(r.get('max_score_diff'), 6)} | {fmt(r.get('max_score_rel'), 6)} | "
            f"{fmt(r['img_auroc'])} | {fmt(r['px_auroc'])} | {fmt(r.get('agree'), 3)} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
