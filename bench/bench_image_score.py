"""Benchmark: image scores that keep thin defects, on trained run folders (issue #27, item 3).

The default image score is the maximum of the residual smoothed with a Gaussian of
sigma 4. A 1-2 px scratch is found at pixel level, but its smoothed peak is no higher
than the maxima of good images, so it is lost at image level. This script scores the
same trained models with candidate image scores and prints image AUROC (per category
and per defect type) and pixel AUROC for each:

* ``gauss<s>``: the residual smoothed with sigma ``s``, max (``gauss4`` is the default);
* ``line<L>``: the residual averaged along line segments of ``L`` px in 8 orientations
  (an oriented matched filter: a thin line keeps its value, pixel noise is averaged),
  the maximum over the orientations, then max;
* ``gauss4|line<L>``: per image the larger of the two scores, each as a z-score
  against the good validation images' scores (the validation split that ``train`` held
  out, never the test split);
* ``topk<k>``: the mean of the ``k`` largest pixels of the sigma-1 map;
* with ``--memory``, ``memory``: the feature-memory map (``map="memory"``, a coreset of
  the AESc's own mid-level tap features from the good TRAINING images, without the
  validation images), smoothed with sigma 4, max.

Candidates are chosen on the dev set (``--data-seed 1`` data, as bench_detection.py);
the runs come from ``bench_detection.py --out DIR``::

    python bench/bench_detection.py --data-seed 1 --categories mesh woven gravel \\
        --models aesc --minutes-per-model 8 --out /tmp/devruns/aesc8 ...
    python bench/bench_image_score.py --runs /tmp/devruns/aesc8 --data-seed 1 \\
        --categories mesh woven gravel --json bench/results/image_score_dev.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import default_data_root, load_category, machine_line  # noqa: E402
from bench_common import fmt as _f  # noqa: E402


def line_kernels(length: int, n_angles: int = 8):
    """``[L, L, 1, n_angles]`` kernels: unit-sum line segments of ``length`` px through
    the centre at ``n_angles`` orientations (supersampled, so every angle has the same
    length)."""
    import numpy as np

    size = length if length % 2 else length + 1
    c = (size - 1) / 2
    kernels = np.zeros((size, size, 1, n_angles), "float32")
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 8 * length)
    for a in range(n_angles):
        theta = np.pi * a / n_angles
        ys = np.rint(c + t * np.sin(theta)).astype(int)
        xs = np.rint(c + t * np.cos(theta)).astype(int)
        np.add.at(kernels[:, :, 0, a], (ys, xs), 1.0)
        kernels[:, :, 0, a] /= kernels[:, :, 0, a].sum()
    return kernels


def line_filter(maps, length: int):
    """``[B, H, W]`` -> the maximum over orientations of the line means."""
    import tensorflow as tf

    k = tf.constant(line_kernels(length))
    out = tf.nn.conv2d(maps[..., None], k, strides=1, padding="SAME")
    return tf.reduce_max(out, axis=-1)


def raw_maps(model, ds):
    """Unsmoothed residual maps, masks, labels and defect types of a dataset."""
    import numpy as np

    from keras_skipae import scoring

    cfg = scoring.ScoringConfig(smoothing=0)
    maps, masks, labels, types = [], [], [], []
    for batch in ds.batch(16):
        maps.append(scoring.compute(model, batch["image"], scoring=cfg)["anomaly_map"].numpy())
        masks.append(batch["mask"].numpy()[..., 0])
        labels.append(batch["label"].numpy())
        types += [t.decode() for t in batch["defect_type"].numpy()]
    return np.concatenate(maps), np.concatenate(masks), np.concatenate(labels), types


def candidates(lengths):
    """name -> fn(raw maps [B, H, W] tf) -> (maps [B, H, W], scores [B])."""
    import tensorflow as tf

    from keras_skipae import scoring

    def gauss(s):
        def fn(raw):
            m = scoring.gaussian_smooth(raw, s)
            return m, tf.reduce_max(m, axis=[1, 2])

        return fn

    def line(length):
        def fn(raw):
            m = line_filter(raw, length)
            return m, tf.reduce_max(m, axis=[1, 2])

        return fn

    def topk(k):
        def fn(raw):
            m = scoring.gaussian_smooth(raw, 1.0)
            flat = tf.reshape(m, [tf.shape(m)[0], -1])
            return m, tf.reduce_mean(tf.math.top_k(flat, k).values, axis=-1)

        return fn

    out = {f"gauss{s:g}": gauss(s) for s in (4.0, 2.0, 1.0)}
    out.update({f"line{n}": line(n) for n in lengths})
    out.update({f"topk{k}": topk(k) for k in (10, 30)})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="bench_detection.py --out folder")
    parser.add_argument("--model", default="aesc")
    parser.add_argument("--data", default=None)
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="the runs' training seed (val split)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--categories", nargs="+", default=["mesh", "woven", "gravel"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[9, 15, 21])
    parser.add_argument("--memory", action="store_true", help="also score the 'memory' map")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import keras_skipae  # noqa: F401, I001  (first: it picks TensorFlow's CPU kernels)
    import numpy as np
    import tensorflow as tf

    from keras_skipae.evaluation import metrics
    from keras_skipae.runs import RunFolder

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(machine_line(), flush=True)
    root = Path(args.data or default_data_root(args.image_size, args.data_seed))
    fns = candidates(args.lengths)
    results = {}
    for cat in args.categories:
        d = load_category(root, cat, image_size=args.image_size, seed=args.seed)
        model = RunFolder(Path(args.runs) / cat / args.model).load(compile=False)
        val_raw = raw_maps(model, d["val"])[0]
        test_raw, masks, labels, types = raw_maps(model, d["test"])
        per = {}
        for name, fn in fns.items():
            _, val_s = fn(tf.constant(val_raw))
            m, s = fn(tf.constant(test_raw))
            per[name] = {
                "val_scores": val_s.numpy(),
                "scores": s.numpy(),
                "maps": m.numpy(),
            }
        if args.memory:
            from keras_skipae import scoring

            train = np.stack([e["image"].numpy() for e in d["train"]])
            bank = scoring.FeatureMemory.fit(model, train, seed=args.seed)
            cfg = scoring.ScoringConfig(map="memory", map_options={"bank": bank})
            out = [scoring.compute(model, b["image"], scoring=cfg) for b in d["test"].batch(16)]
            per["memory"] = {
                "scores": np.concatenate([o["score"].numpy() for o in out]),
                "maps": np.concatenate([o["anomaly_map"].numpy() for o in out]),
            }
        for n in args.lengths:  # score-level fusion, z-scores against the good val images
            z = []
            for name in ("gauss4", f"line{n}"):
                v = per[name]["val_scores"]
                z.append((per[name]["scores"] - v.mean()) / (v.std() + 1e-12))
            per[f"gauss4|line{n}"] = {"scores": np.maximum(*z), "maps": None}
        rows = {}
        defects = sorted({t for t, lab in zip(types, labels, strict=True) if lab == 1})
        for name, r in per.items():
            row = {
                "image_auroc": metrics.image_auroc(labels, r["scores"]),
                "pixel_auroc": None if r["maps"] is None else metrics.pixel_auroc(masks, r["maps"]),
                "per_defect": {},
            }
            for t in defects:
                sel = np.array(
                    [(lab == 0) or (ty == t) for ty, lab in zip(types, labels, strict=True)]
                )
                row["per_defect"][t] = metrics.image_auroc(labels[sel], r["scores"][sel])
            rows[name] = row
            cells = " ".join(f"{t} {_f(v)}" for t, v in row["per_defect"].items())
            print(
                f"{cat:<7} {name:<14} img {_f(row['image_auroc'])} "
                f"pix {_f(row['pixel_auroc'])} | {cells}",
                flush=True,
            )
        results[cat] = rows
        print(flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
