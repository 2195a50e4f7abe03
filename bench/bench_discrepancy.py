"""Benchmark: layer discrepancy of AE vs AESc, discrepancy anomaly maps, discrepancy loss.

Reproduces the analysis of Collin, de Bodt, Mulders & De Vleeschouwer, "Don't skip
the skips" (ESANN) on a synthetic texture (keras_skipae.data.synthetic):

1. trains an AE and an AESc (same graph, with / without additive skips) on
   stain-corrupted inputs with clean targets, and an AESc with the optional
   discrepancy loss (analysis.DiscrepancyLossModel), each with a
   DiscrepancyMonitor (every epoch, 16 probe pairs) whose cost is timed;
2. prints the median cosine similarity per layer between the channel means of
   16 clean test images and the same images with a stain, for each model, and
   whether the paper's trend reproduces (AESc's similarity falls with depth
   through the decoder and ends below the AE's);
3. prints image AUROC, pixel AUROC and AUPRO (keras_skipae.evaluate) of the
   residual, discrepancy (decoder / encoder / all layers), combined and
   deviation-from-good-statistics maps;
4. measures the DiscrepancyMonitor's overhead (its own time per epoch against
   the epoch time, and an A/B timing of short fits with and without it);
5. writes the figures to --figures (default docs/figures/discrepancy_*.png).

Run (benchmarks must not overlap):

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_discrepancy.py \
        2>&1 | tee bench/bench_discrepancy.log

CPU budget: about 3 x --time-limit seconds of training (default 3 x 240 s) plus
~2 min of evaluation and overhead timing on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_skipae import analysis, data, evaluation, models, plotting  # noqa: E402
from keras_skipae.scoring import ScoringConfig  # noqa: E402
from keras_skipae.training import callbacks, train  # noqa: E402

MAPS = [
    ("residual", "residual", None),
    ("disc-decoder", "discrepancy", {"layers": "decoder"}),
    ("disc-encoder", "discrepancy", {"layers": "encoder"}),
    ("disc-all", "discrepancy", {"layers": "all"}),
    ("disc-all-rel", "discrepancy", {"layers": "all", "normalize": "relative"}),
    ("comb-decoder", "combined", {"layers": "decoder"}),
    ("comb-encoder", "combined", {"layers": "encoder"}),
    # deviation of mu_i(x) from statistics of the good training images (per position / pooled)
    ("dev-encoder", "deviation", {"layers": "encoder"}),
    ("dev-all", "deviation", {"layers": "all"}),
    ("dev-all-pooled", "deviation", {"layers": "all", "pooled": True}),
]


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (from epoch begin to the end of the callbacks before it)."""

    def __init__(self):
        super().__init__()
        self.times = []
        self._t = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


class TimedMonitor(callbacks.DiscrepancyMonitor):
    """A DiscrepancyMonitor that times its own epoch-end work."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spent = []
        self.end_spent = 0.0

    def on_epoch_end(self, epoch, logs=None):
        t = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.spent.append(time.perf_counter() - t)

    def on_train_end(self, logs=None):
        t = time.perf_counter()
        super().on_train_end(logs)
        self.end_spent = time.perf_counter() - t


def in_mask_cosine(net, clean, corrupted, layers):
    """Median cosine similarity of channel means restricted to the stained region, per tap.

    The stain mask (pixels where the corrupted probe differs from the clean one) is
    resized to each tap's resolution (area average, kept where >= 0.5), and the cosine
    of ``mu_i(clean)`` and ``mu_i(stained)`` is taken over those positions only.
    Pairs whose stain vanishes at a tap's resolution are left out at that tap.
    """
    taps = models.tap_model(net, layers)
    mask = (np.abs(corrupted - clean).max(axis=-1, keepdims=True) > 0).astype("float32")
    a = taps(clean, training=False)
    b = taps(corrupted, training=False)
    out = {}
    for name in layers:
        mu_a = np.asarray(analysis.channel_mean(a[name]))
        mu_b = np.asarray(analysis.channel_mean(b[name]))
        h, w = mu_a.shape[1:]
        m = np.asarray(tf.image.resize(mask, (h, w), method="area"))[..., 0] >= 0.5
        sims = []
        for i in range(len(clean)):
            if m[i].sum() < 1:
                continue
            x, y = mu_a[i][m[i]], mu_b[i][m[i]]
            sims.append(float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-12)))
        out[name] = (float(np.median(sims)) if sims else float("nan"), len(sims))
    return out


def _numpy(ds, n=None):
    images, masks, labels = [], [], []
    for e in ds.take(n) if n else ds:
        images.append(e["image"].numpy())
        masks.append(e["mask"].numpy())
        labels.append(int(e["label"]))
    return np.stack(images), np.stack(masks), np.array(labels)


def _builder(name, kwargs, loss_weight):
    def build(**kw):
        net = models.get_model(name, **kwargs)
        if loss_weight:
            return analysis.DiscrepancyLossModel(net, weight=loss_weight)
        return net

    return build


def measure_overhead(args, train_ds, model_kwargs, clean, corrupted, tmp):
    """A/B: AESc epochs with and without a DiscrepancyMonitor (alternating runs)."""
    ab = {"without": [], "with": []}
    spent = []
    for rep in range(args.overhead_reps):
        for mode in ("without", "with"):
            timer = EpochTimer()
            cbs = [timer]
            if mode == "with":
                monitor = TimedMonitor(
                    clean, corrupted, out_dir=tmp / f"ab_{rep}", tensorboard=True
                )
                cbs.append(monitor)
            train(
                "aesc",
                train_ds,
                model_kwargs=model_kwargs,
                epochs=args.overhead_epochs,
                corruption=data.Stains(),
                seed=args.seed,
                callbacks=cbs,
                verbose=0,
                reduce_lr=False,
            )
            ab[mode].extend(timer.times[1:])
            if mode == "with":
                spent.extend(monitor.spent[1:])
    a, b = float(np.median(ab["without"])), float(np.median(ab["with"]))
    m = float(np.median(spent))
    n = args.overhead_reps * (args.overhead_epochs - 1)
    print(
        f"  A/B, AESc, {n} epochs each way (first epochs dropped): median epoch {a:.3f} s "
        f"without, {b:.3f} s with (epoch time excludes the monitor) -> "
        f"{100 * (b - a) / a:+.1f} % (noise of a shared CPU)"
    )
    print(
        f"  monitor's own time in those runs: {m * 1000:.0f} ms per epoch = "
        f"{100 * m / a:.1f} % of the epoch without it"
    )
    return {
        "without_s": a,
        "with_s": b,
        "monitor_s": m,
        "pct": 100 * m / a,
        "ab_pct": 100 * (b - a) / a,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--category", default="mesh")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument(
        "--time-limit",
        type=float,
        default=240.0,
        help="seconds per model; 0 trains exactly --epochs epochs (step-based, load-independent)",
    )
    ap.add_argument("--loss-weight", type=float, default=0.1)
    ap.add_argument("--n-probes", type=int, default=16)
    ap.add_argument(
        "--probe-stain-size",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="semi-axes of the probe stains as fractions of the side (default: Stains()'s)",
    )
    ap.add_argument("--no-loss", action="store_true", help="skip the discrepancy-loss model")
    ap.add_argument(
        "--in-mask",
        action="store_true",
        help="also measure the cosine similarity inside the stain only (mask resized per tap)",
    )
    ap.add_argument("--no-eval", action="store_true", help="skip the detection numbers")
    ap.add_argument("--no-overhead", action="store_true", help="skip the A/B overhead timing")
    ap.add_argument("--overhead-epochs", type=int, default=6)
    ap.add_argument("--overhead-reps", type=int, default=2)
    ap.add_argument(
        "--overhead-only", action="store_true", help="only the DiscrepancyMonitor overhead"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    args = ap.parse_args(argv)
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, cpus {os.cpu_count()}")
    t_start = time.perf_counter()

    tmp = Path(tempfile.mkdtemp(prefix="bench_discrepancy_"))
    root = data.synthetic.make_dataset(
        tmp / "data",
        categories=[args.category],
        image_size=args.image_size,
        n_train=args.n_train,
        n_test_good=16,
        n_test_defect=6,
        seed=args.seed,
    )
    channels = data.synthetic.CHANNELS[args.category]
    color_mode = "rgb" if channels == 3 else "grayscale"
    train_ds = data.mvtec_dataset(
        root, args.category, "train", image_size=args.image_size, color_mode=color_mode
    )
    test_ds = data.mvtec_dataset(
        root, args.category, "test", image_size=args.image_size, color_mode=color_mode
    )
    test_x, _, test_y = _numpy(test_ds)
    train_x = _numpy(train_ds)[0]
    good = test_x[test_y == 0][: args.n_probes]
    probe_stains = (
        data.Stains(size=tuple(args.probe_stain_size)) if args.probe_stain_size else data.Stains()
    )
    clean, corrupted = analysis.make_probe_pairs(good, probe_stains, seed=args.seed)
    print(
        f"data: synthetic {args.category!r} {args.image_size}px, {args.n_train} train images, "
        f"{len(test_x)} test ({int(test_y.sum())} defective); {len(clean)} probe pairs "
        f"(good test images + one {probe_stains!r} stain each, seed {args.seed})"
    )

    model_kwargs = {
        "input_shape": (args.image_size, args.image_size, channels),
        "depth": args.depth,
        "filters": args.filters,
        "bn_momentum": 0.9,
    }
    if args.overhead_only:
        print(f"\nDiscrepancyMonitor overhead (every epoch, {len(clean)} probe pairs):")
        overhead = measure_overhead(args, train_ds, model_kwargs, clean, corrupted, tmp)
        if args.json:
            Path(args.json).write_text(json.dumps(overhead, indent=2) + "\n")
        print(f"total wall time {time.perf_counter() - t_start:.0f} s")
        return 0
    variants = [
        ("AE", "ae", 0.0),
        ("AESc", "aesc", 0.0),
        (f"AESc+Ldisc({args.loss_weight:g})", "aesc", args.loss_weight),
    ]
    if args.no_loss:
        variants = variants[:2]
    results, trained, monitors, detections, timings = {}, {}, {}, {}, {}
    for label, name, weight in variants:
        monitor = TimedMonitor(
            clean,
            corrupted,
            every_n_epochs=1,
            out_dir=tmp / f"monitor_{name}_{weight:g}",
            tensorboard=True,
        )
        timer = EpochTimer()
        t0 = time.perf_counter()
        run = train(
            _builder(name, model_kwargs, weight),
            train_ds,
            epochs=args.epochs,
            corruption=data.Stains(),
            batch_size=16,
            seed=args.seed,
            time_limit=args.time_limit or None,  # 0: a fixed number of epochs
            callbacks=[timer, monitor],
            verbose=0,
        )
        net = analysis.base_model(run.model)
        trained[label] = net
        monitors[label] = monitor
        h = run.history
        epoch_t = float(np.median(timer.times[1:])) if len(timer.times) > 1 else float("nan")
        mon_t = float(np.median(monitor.spent[1:])) if len(monitor.spent) > 1 else float("nan")
        timings[label] = {
            "epochs": len(timer.times),
            "train_s": time.perf_counter() - t0,
            "epoch_s_median": epoch_t,
            "monitor_s_median": mon_t,
            "monitor_pct": 100.0 * mon_t / epoch_t,
            "monitor_end_s": monitor.end_spent,
        }
        print(
            f"\n[{label}] {len(timer.times)} epochs in {time.perf_counter() - t0:.0f} s; "
            f"val_loss {h['val_loss'][-1]:.5f}; epoch {epoch_t:.2f} s, monitor "
            f"{mon_t * 1000:.0f} ms/epoch ({timings[label]['monitor_pct']:.1f} %), "
            f"figures at train end {monitor.end_spent:.1f} s"
        )
        results[label] = analysis.layer_discrepancy(net, clean, corrupted, return_means=True)
        detections[label] = {}
        stats = {
            pooled: analysis.LayerStatistics.fit(net, train_x, pooled=pooled)
            for pooled in (False, True)
        }
        for map_label, method, options in [] if args.no_eval else MAPS:
            if method == "deviation":
                options = dict(options)
                options["statistics"] = stats[options.pop("pooled", False)]
            r = evaluation.evaluate(
                net, test_ds, scoring=ScoringConfig(map=method, map_options=options), progress=False
            )
            detections[label][map_label] = {
                "image_auroc": r.image_auroc,
                "pixel_auroc": r.pixel_auroc,
                "aupro": r.aupro,
            }

    # ---------------------------------------------------------------- similarities
    layers = results["AE"].layers
    print(
        "\nMedian cosine similarity cos(mu_i(clean), mu_i(stained)) per layer "
        f"({len(clean)} pairs):"
    )
    print(f"{'layer':16s}{'shape':>12s}" + "".join(f"{k:>22s}" for k in results))
    for name in layers:
        shape = "x".join(str(d) for d in results["AE"].shapes[name])
        row = "".join(f"{results[k].median()[name]:22.4f}" for k in results)
        print(f"{name:16s}{shape:>12s}{row}")
    in_mask = {}
    if args.in_mask:
        print(
            "\nInside the stain only: median cosine similarity of the channel means over "
            "the stained positions (mask resized to each tap; pairs used):"
        )
        print(f"{'layer':16s}{'shape':>12s}" + "".join(f"{k:>22s}" for k in ("AE", "AESc")))
        for label in ("AE", "AESc"):
            in_mask[label] = in_mask_cosine(trained[label], clean, corrupted, layers)
        for name in layers:
            shape = "x".join(str(d) for d in results["AE"].shapes[name])
            row = "".join(
                f"{in_mask[k][name][0]:16.4f} ({in_mask[k][name][1]:2d})" for k in ("AE", "AESc")
            )
            print(f"{name:16s}{shape:>12s}{row}")
    trend = analysis.paper_trend(results["AE"], results["AESc"])
    print(
        f"\nPaper's trend (AESc falls through the decoder and ends below AE): "
        f"{'REPRODUCED' if trend['reproduced'] else 'NOT reproduced'}  "
        f"[AESc falls: {trend['aesc_falls']}, monotone: {trend['aesc_monotone']}, "
        f"ends below AE: {trend['aesc_ends_below_ae']}; drop {trend['aesc_drop']:.2e}, "
        f"gap to AE {trend['gap_to_ae']:.2e}; decoder medians AESc "
        f"{[round(v, 4) for v in trend['aesc_decoder']]}, AE "
        f"{[round(v, 4) for v in trend['ae_decoder']]}]"
    )
    trend_loss = None
    if len(variants) > 2:
        loss_label = variants[2][0]
        trend_loss = analysis.paper_trend(results["AE"], results[loss_label])
        print(
            f"With the discrepancy loss ({loss_label}): reproduced {trend_loss['reproduced']}, "
            f"decoder medians {[round(v, 4) for v in trend_loss['aesc_decoder']]}"
        )

    # ---------------------------------------------------------------- detection
    print("\nDetection (image AUROC / pixel AUROC / AUPRO@0.3), default smoothing and max score:")
    print(f"{'map':16s}" + "".join(f"{k:>26s}" for k in detections))
    for map_label, _, _ in [] if args.no_eval else MAPS:
        cells = []
        for k in detections:
            d = detections[k][map_label]
            cells.append(f"{d['image_auroc']:.3f}/{d['pixel_auroc']:.3f}/{d['aupro']:.3f}")
        print(f"{map_label:16s}" + "".join(f"{c:>26s}" for c in cells))

    # ---------------------------------------------------------------- overhead A/B
    print(f"\nDiscrepancyMonitor overhead (every epoch, {len(clean)} probe pairs):")
    for k, t in timings.items():
        print(
            f"  {k}: monitor {t['monitor_s_median'] * 1000:.0f} ms per epoch of "
            f"{t['epoch_s_median']:.2f} s = {t['monitor_pct']:.1f} % (median over "
            f"{t['epochs'] - 1} epochs; + {t['monitor_end_s']:.1f} s once for the figures "
            "at train end)"
        )
    overhead = None
    if not args.no_overhead:
        overhead = measure_overhead(args, train_ds, model_kwargs, clean, corrupted, tmp)

    # ---------------------------------------------------------------- figures
    fig_dir = Path(args.figures)
    fig_dir.mkdir(parents=True, exist_ok=True)
    stain_area = np.abs(clean - corrupted).max(-1).reshape(len(clean), -1).mean(-1)
    idx = int(np.argmax(stain_area))  # the largest stain: the most visible change
    np.savez_compressed(
        tmp / "results.npz",
        clean=clean,
        corrupted=corrupted,
        **{
            f"{kind}/{k}/{n}": getattr(r, kind)[n]
            for k, r in results.items()
            for kind in ("cosine", "l2", "means_clean", "means_corrupted")
            for n in layers
        },
    )
    print(f"per-pair results and channel means: {tmp / 'results.npz'}")
    plotting.plot_channel_means(
        {
            k: (
                [results[k].means_clean[n][idx] for n in layers],
                [results[k].means_corrupted[n][idx] for n in layers],
            )
            for k in ("AE", "AESc")
        },
        layers=layers,
        title=f"Channel means mu_i, clean vs stained (synthetic {args.category}, largest stain)",
        path=fig_dir / "discrepancy_channel_means.png",
        close=True,
    )
    title = (
        f"cos(mu_i(clean), mu_i(stained)), {len(clean)} pairs, synthetic {args.category} "
        f"{args.image_size} px"
    )
    plotting.plot_similarity_distribution(
        {k: results[k].cosine for k in ("AE", "AESc")},
        layers=layers,
        title=title,
        path=fig_dir / "discrepancy_cosine_per_layer.png",
        close=True,
    )
    plotting.plot_similarity_distribution(
        {k: r.cosine for k, r in results.items()},
        layers=layers,
        scale="1-cos",
        title=title,
        path=fig_dir / "discrepancy_dissimilarity_per_layer.png",
        close=True,
    )
    for k, key in (("AE", "ae"), ("AESc", "aesc")):
        med = monitors[k].medians()
        plotting.plot_similarity_over_epochs(
            [e + 1 for e in med["epoch"]],
            {n: med[n] for n in layers},
            title=f"{k}: median cosine similarity per layer during training",
            path=fig_dir / f"discrepancy_over_epochs_{key}.png",
            close=True,
        )
    print(f"\nfigures: {sorted(str(p) for p in fig_dir.glob('discrepancy_*.png'))}")
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")

    if args.json:
        out = {
            "args": vars(args),
            "medians": {k: r.median() for k, r in results.items()},
            "trend": trend,
            "in_mask_cosine": in_mask,
            "trend_with_loss": trend_loss,
            "detection": detections,
            "timings": timings,
            "overhead_ab": overhead,
        }
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
