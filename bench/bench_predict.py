"""Prediction benchmark: does reading files keep up with the model?

For the AESc in its default configuration (grayscale, random weights: the cost does not
depend on their values), two cases:

* **png**: ``--n-files`` PNGs of ``--file-size`` pixels (128x128 by default, the model's
  size) and a model taking ``--size`` images;
* **tiled**: ``--n-frames`` PNG frames of ``--frame-size`` pixels (1024x1024) scored tile
  by tile (``--size`` tiles, ``--tile-overlap``) at full resolution.

For each, in one run and interleaved (one pass of every measurement per round, ``--rounds``
rounds, so that load on a shared machine falls on all of them alike), the images/s of

* ``array``: the model's batch throughput: ``Detector.predict`` on the same images already
  decoded, in memory (``batch_size=--batch-size``);
* ``folder``: ``Detector.predict`` on the folder (``workers=--workers``: decoding and
  resizing in threads while the model scores, ``keras_skipae.data.reader``);
* ``folder, workers=0``: the same, each file read when it is reached (sequential);
* ``predict_to_folder``: what ``keras-skipae predict`` runs (``predictions.csv``, no maps),
  loading the ``.keras`` file each time: its load, tracing and XLA choice are included, as
  in the command.

and the ratio of each to ``array`` (median over the rounds). It also prints the CPU (``lscpu``
model name and its AVX-512 / AMX flags), TensorFlow's version and threads, and the cores other
processes used during each pass (``other``, from ``/proc/stat``). Each measurement is warmed up
first (tracing excluded). Time-based: run it under the shared lock::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_predict.py --json out.json

Tests never assert these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from bench_common import busy  # noqa: E402  (bench/ is on sys.path when a bench script runs)

#: The CPU flags reported: the vector and matrix extensions TensorFlow's oneDNN uses.
FLAG_PATTERN = re.compile(r"^(avx512\w*|amx\w*|avx2|avx_vnni|fma)$")


def cpu_description() -> dict:
    """``lscpu``'s model name, its AVX-512 / AMX (and AVX2, FMA, AVX-VNNI) flags, the cores."""
    info = {"model_name": platform.processor() or platform.machine(), "flags": []}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            info["model_name"] = value.strip()
        elif key.strip() == "Flags":
            info["flags"] = sorted(f for f in value.split() if FLAG_PATTERN.match(f))
    info["cores"] = os.cpu_count()
    info["avx512"] = any(f.startswith("avx512") for f in info["flags"])
    info["amx"] = any(f.startswith("amx") for f in info["flags"])
    return info


def _timed(fn) -> tuple[float, float]:
    """(wall seconds of one ``fn()``, cores other processes used meanwhile)."""
    s0, c0 = busy()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    s1, c1 = busy()
    return wall, max(0.0, (s1 - s0 - (c1 - c0)) / wall)


def _write_pngs(folder, n, size, seed) -> None:
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        # smooth content with noise, so a PNG costs what a real image's does to decode
        base = cv2.resize(rng.random((size // 16, size // 16)), (size, size))
        image = np.clip(base * 200 + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), image)


def _case(name, *, model, folder, model_file, n, batch_size, workers, tiling, threshold):
    """The measurements of one case: name -> a function of no arguments, and its image count."""
    import numpy as np

    import keras_skipae as ks
    from keras_skipae.apps.predict import predict_to_folder
    from keras_skipae.data import load_image

    tiles = {} if tiling is None else {"tile_size": tiling[0], "tile_overlap": tiling[1]}
    det = ks.Detector(model, threshold=threshold, **tiles)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    arrays = np.stack([load_image(f).numpy() for f in files])
    if tiling is None and arrays.shape[1:3] != tuple(det.image_size):
        raise SystemExit(f"{name}: the array case needs files of the model's size")
    out = folder + "_out"

    def cli_like():
        predict_to_folder(
            model_file,
            [folder],
            out,
            threshold=threshold,
            batch_size=batch_size,
            overwrite=True,
            progress=False,
            workers=workers,
            **tiles,
        )

    return {
        "array": lambda: sum(1 for _ in det.predict(arrays, batch_size=batch_size)),
        f"folder, workers={workers}": lambda: sum(
            1 for _ in det.predict(folder, batch_size=batch_size, workers=workers)
        ),
        "folder, workers=0": lambda: sum(
            1 for _ in det.predict(folder, batch_size=batch_size, workers=0)
        ),
        "predict_to_folder": cli_like,
    }, n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="model input / tile side (128)")
    parser.add_argument("--file-size", type=int, default=128, help="side of the PNGs (128)")
    parser.add_argument("--n-files", type=int, default=256, help="PNGs in the folder (256)")
    parser.add_argument("--frame-size", type=int, default=1024, help="side of the frames (1024)")
    parser.add_argument("--n-frames", type=int, default=8, help="frames in the folder (8)")
    parser.add_argument("--tile-overlap", type=int, default=0, help="tile overlap (0)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (32)")
    parser.add_argument("--workers", type=int, default=None, help="reader threads (automatic)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (3)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed rounds first (2: tracing, XLA's choice)"
    )
    parser.add_argument("--cases", default="png,tiled", help="png, tiled or both (default)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import numpy as np  # noqa: F401  (imported before TensorFlow, as users do)
    import tensorflow as tf

    import keras_skipae as ks
    from keras_skipae.data.reader import check_workers

    workers = check_workers(args.workers)
    cpu = cpu_description()
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    print(
        f"CPU: {cpu['model_name']}, {cpu['cores']} cores; flags: {' '.join(cpu['flags']) or '-'}"
        f" (AVX-512: {'yes' if cpu['avx512'] else 'no'}, AMX: {'yes' if cpu['amx'] else 'no'})\n"
        f"TensorFlow {tf.__version__}, intra-op threads {threads or 'default'}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}; AESc default "
        f"{args.size}x{args.size}x1, batch {args.batch_size}, reader workers {workers}; "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up rounds",
        flush=True,
    )
    scratch = tempfile.TemporaryDirectory(prefix="bench_predict_")
    model = ks.build_aesc(input_shape=(args.size, args.size, 1))
    model_file = os.path.join(scratch.name, "model.keras")
    ks.export_keras(model, model_file)
    threshold = 0.5  # any value: decisions cost the same
    cases = {}
    for name in [c.strip() for c in args.cases.split(",")]:
        folder = os.path.join(scratch.name, name)
        if name == "png":
            _write_pngs(folder, args.n_files, args.file_size, seed=0)
            n, tiling = args.n_files, None
            label = f"{args.n_files} PNGs {args.file_size}x{args.file_size}"
        elif name == "tiled":
            _write_pngs(folder, args.n_frames, args.frame_size, seed=1)
            n, tiling = args.n_frames, (args.size, args.tile_overlap)
            label = (
                f"{args.n_frames} frames {args.frame_size}x{args.frame_size}, "
                f"tiles {args.size} overlap {args.tile_overlap}"
            )
        else:
            parser.error(f"unknown case {name!r}")
        fns, n = _case(
            name,
            model=model,
            folder=folder,
            model_file=model_file,
            n=n,
            batch_size=args.batch_size,
            workers=workers,
            tiling=tiling,
            threshold=threshold,
        )
        cases[name] = {"label": label, "fns": fns, "n": n, "runs": {k: [] for k in fns}}

    # Warm-up: tracing, the file cache, and the Detector's XLA choice (``MeasuredJit`` times
    # XLA on and off after 8 calls of a shape, compiling then: kept out of the timed rounds).
    for _ in range(args.warmup):
        for case in cases.values():
            for fn in case["fns"].values():
                fn()
    for r in range(args.rounds):
        for name, case in cases.items():
            for what, fn in case["fns"].items():
                wall, other = _timed(fn)
                case["runs"][what].append((wall, other))
                print(
                    f"round {r + 1} {name:6s} {what:22s} {case['n'] / wall:8.3g} img/s "
                    f"({1000 * wall:8.1f} ms, other {other:.2f})",
                    flush=True,
                )

    rows = []
    for name, case in cases.items():
        array = statistics.median(w for w, _ in case["runs"]["array"])
        for what, runs in case["runs"].items():
            med = statistics.median(w for w, _ in runs)
            rows.append(
                {
                    "case": name,
                    "label": case["label"],
                    "what": what,
                    "images": case["n"],
                    "median_s": med,
                    "images_per_s": case["n"] / med,
                    "ratio_to_array": array / med,
                    "runs_s": [w for w, _ in runs],
                    "other_cores": [o for _, o in runs],
                }
            )
    print()
    print("| case | measurement | images / s | / array |")
    print("|---|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['label']} | {r['what']} | {r['images_per_s']:.3g} | {r['ratio_to_array']:.2f} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "command": sys.argv,
                    "args": vars(args),
                    "cpu": cpu,
                    "tensorflow": tf.__version__,
                    "intra_op_threads": threads,
                    "workers": workers,
                    "rows": rows,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
