"""Benchmark: defect detection of AE and AESc (both trained with stains) vs two baselines.

For each synthetic category (keras_skipae.data.synthetic, MVTec AD layout, 128x128):

1. trains an AE and an AESc on stain-corrupted good images (clean targets,
   Collin & De Vleeschouwer, ICPR 2020) for a fixed budget per model
   (``--minutes-per-model`` on ``--cores`` 2 cores, counted as the process's CPU
   time, minutes x 60 x cores CPU-seconds, so that other programs loading the
   machine do not shrink it; the issue allows at most 8 minutes on the 2-core
   CPU, the default is 2 so that all five categories fit in ~25 minutes);
2. evaluates each with ``keras_skipae.evaluate`` (the fixed default map and
   score: smoothed residual, max; threshold from the held-out good images);
3. computes two non-learned baselines on the same splits
   (``keras_skipae.baselines``): a per-pixel Gaussian of the good images and a
   nearest-neighbour patch distance to good patches (PatchCore-like, pixel space),
   their maps smoothed exactly as the learned ones (``scoring.gaussian_smooth``);
4. prints image AUROC, pixel AUROC and AUPRO per category and per defect type,
   and checks issue #14's targets (AESc image AUROC >= 0.95, gravel 0.85 image and
   0.90 pixel AUROC; level with patch-NN within 0.01 on all three metrics, ahead on
   at least four categories). ``--tables-from A.json B.json ...`` merges runs and,
   with several training seeds, prints their mean and checks the targets on it.

Run (benchmarks must not overlap):

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_detection.py \\
        > bench/results/detection.txt 2>&1

One category, a short budget (a smoke run):

    .venv/bin/python bench/bench_detection.py --categories mesh --minutes-per-model 0.5

Options of the recipe: ``--corruption`` (``stains``, the default, or
``stains+scratches``: stains or thin scratches per batch, to teach the
AESc not to pass thin defects through its skips), ``--loss``, ``--lr``.
The numbers depend on the CPU's speed (training is bounded by CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import default_data_root, ensure_synthetic, load_category, machine_line  # noqa: E402
from bench_common import fmt as _f  # noqa: E402


def _corruption(name):
    from keras_skipae import data

    if name == "none":
        return None
    if name == "auto":  # train's default: stains, or anomalies for a model with a head
        return "auto"
    if name.lstrip().startswith("{"):  # a serialized corruption, e.g. more stains per image
        name = json.loads(name)
    return data.get(name)


def _scoring_for(scoring, name, model, val, train=None):
    """The ScoringConfig of map ``name``; maps that need good-image statistics fit them
    on the held-out validation images, the ``memory`` map's bank on the training part of
    the good images (``train``: without the validation images the threshold is set on;
    never on the test split)."""
    import numpy as np

    options = {}
    if name == "memory":
        good = np.stack([e["image"].numpy() for e in train])
        options["bank"] = scoring.FeatureMemory.fit(model, good)
    if name in ("learned+residual", "deviation"):
        good = np.stack([e["image"].numpy() for e in val])
        if name == "deviation":
            options["statistics"] = scoring.LayerStatistics.fit(model, good)
        else:
            options["statistics"] = scoring.fit_map_statistics(model, good)
    return scoring.ScoringConfig(map=name, map_options=options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=None,
        help="synthetic dataset root (generated if missing; default "
        "/tmp/keras_skipae_bench_synthetic_<size>[_data<seed>])",
    )
    parser.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the generated data: 0 is the benchmark's test data, 1 the dev set "
        "(defaults are chosen on --data-seed 1 only)",
    )
    parser.add_argument(
        "--out", default="/tmp/keras_skipae_bench_detection", help="run folders go here (replaced)"
    )
    parser.add_argument(
        "--json", default="bench/results/detection.json", help="write all numbers here"
    )
    parser.add_argument(
        "--categories", nargs="+", default=None, help="default: all synthetic categories"
    )
    parser.add_argument("--models", nargs="+", default=["ae", "aesc"])
    parser.add_argument(
        "--minutes-per-model",
        type=float,
        default=2.0,
        help="training budget: minutes on --cores idle cores, counted as process CPU time "
        "(minutes x 60 x cores CPU-seconds), so that other load does not shrink it",
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=500)
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=25,
        help="batches per epoch (validation, LR schedule and checkpoints)",
    )
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--loss", default="mse")
    parser.add_argument(
        "--corruption", default="auto", help="auto (stains; anomalies for a head), or a name"
    )
    parser.add_argument(
        "--stain-weight",
        type=float,
        default=None,
        help="loss weight of the corrupted pixels (default: train's, 10)",
    )
    parser.add_argument("--filters", type=int, default=None)
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        metavar="JSON",
        help="more builder options for every model, e.g. '{\"skips\": [1, 2, 3, 4]}'",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed (split, weights)")
    parser.add_argument(
        "--precision",
        default="auto",
        help="train's precision: auto, float32, mixed_bfloat16 (recorded per model)",
    )
    parser.add_argument(
        "--maps",
        nargs="+",
        default=None,
        help="anomaly maps to score every learned model with (default: the default map, and "
        "'learned' too for a model with a head); the first one is the table's",
    )
    parser.add_argument(
        "--schedule", default="auto", help="learning-rate schedule for train (auto: cosine)"
    )
    parser.add_argument(
        "--baselines", nargs="*", default=["gaussian", "patch_nn"], help="non-learned baselines"
    )
    parser.add_argument(
        "--eval-at-minutes",
        type=float,
        nargs="+",
        default=None,
        metavar="MIN",
        help="a budget curve: one training of the last budget (which replaces "
        "--minutes-per-model; its schedule spans that budget), evaluated on the test split "
        "when it has used each earlier budget (same units; the evaluations' CPU time counts "
        "in the run's time limit but not in the marks) and at its end",
    )
    parser.add_argument(
        "--tables-from",
        nargs="+",
        default=None,
        metavar="JSON",
        help="only print the tables of (partial) JSONs written by this script; with runs of "
        "several training seeds (--seed), also their mean and the issue's targets on it",
    )
    args = parser.parse_args(argv)
    if args.eval_at_minutes:
        marks = sorted(args.eval_at_minutes)
        if marks[0] <= 0:
            parser.error(f"--eval-at-minutes must be positive. Received: {args.eval_at_minutes}")
        args.eval_at_minutes = marks
        args.minutes_per_model = marks[-1]
    if args.tables_from:
        saved = []
        for path in args.tables_from:
            with open(path, encoding="utf-8") as f:
                saved.append(json.load(f))
        by_seed = merge_runs(saved, args.tables_from)
        for seed, results in by_seed.items():
            print(f"training seed {seed}")
            _print_tables(results)
            _print_curves(results)
            print()
        if len(by_seed) > 1:
            _print_mean(mean_over_seeds(by_seed))
        return

    import keras_skipae  # noqa: F401, I001  (first: it picks TensorFlow's CPU kernels)

    from keras_skipae import data, evaluation, scoring, training
    from keras_skipae.apps import baselines
    from keras_skipae.models.registry import MASKED
    from keras_skipae.runs import RunConfig

    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(machine_line())
    print(
        f"budget: {args.minutes_per_model:g} min x {args.cores} cores = "
        f"{60 * args.minutes_per_model * args.cores:.0f} CPU-seconds of training per model "
        f"(batch {args.batch_size}, Adam lr {args.lr:g}, loss {args.loss}, "
        f"corruption {args.corruption}, stain weight {'default' if args.stain_weight is None else args.stain_weight}, BatchNorm momentum {args.bn_momentum:g}"
        + (f", {args.model_kwargs}" if args.model_kwargs else "")
        + ")",
        flush=True,
    )
    print(
        f"scoring (all methods): map smoothed with sigma {scoring.DEFAULT_SMOOTHING:g}, "
        f"{scoring.DEFAULT_SMOOTHING_BORDER} border; learned models: {scoring.DEFAULT_MAP} map, "
        f"{scoring.DEFAULT_SCORE} score\n",
        flush=True,
    )

    cats = args.categories or data.list_categories()
    if args.data is None:
        args.data = str(default_data_root(args.image_size, args.data_seed))
    root = ensure_synthetic(args.data, cats, image_size=args.image_size, seed=args.data_seed)

    results = {}
    t_all = time.monotonic()
    for cat in cats:
        size = args.image_size
        d = load_category(root, cat, image_size=size, seed=args.seed)
        good, test, val = d["good"], d["test"], d["val"]
        channels, color_mode = d["channels"], d["color_mode"]
        res = {"models": {}, "baselines": {}, "color_mode": color_mode}
        for name in args.models:
            kwargs = {"input_shape": [size, size, channels], "bn_momentum": args.bn_momentum}
            if args.filters:
                kwargs["filters"] = args.filters
            kwargs.update(args.model_kwargs)
            curve = []
            extra = []
            if args.eval_at_minutes:
                head = name in MASKED
                curve_maps = args.maps or (["learned", scoring.DEFAULT_MAP] if head else [])
                curve_maps = [m for m in curve_maps if head or not m.startswith("learned")]
                curve_maps = curve_maps or [scoring.DEFAULT_MAP]

                def _evaluate(model, test=test, val=val, train=d["train"], maps=curve_maps):
                    return {
                        m: evaluation.evaluate(
                            model,
                            test,
                            val_data=val,
                            progress=False,
                            scoring=_scoring_for(scoring, m, model, val, train),
                        )
                        for m in maps
                    }

                run_dir = Path(args.out) / cat / name
                callback, curve_point = _budget_curve(
                    args,
                    _evaluate,
                    curve,
                    f"{cat:<8} {name:<5}",
                    kept_path=run_dir / "best.keras" if head else None,
                )
                extra.append(callback)
            t = time.monotonic()
            run = training.train(
                name,
                good,
                model_kwargs=kwargs,
                epochs=args.max_epochs,
                steps_per_epoch=args.steps_per_epoch,
                learning_rate=args.lr,
                loss=args.loss,
                corruption=_corruption(args.corruption),
                stain_weight=args.stain_weight,
                batch_size=args.batch_size,
                seed=args.seed,
                run_dir=Path(args.out) / cat / name,
                overwrite=True,
                tensorboard=False,
                time_limit=60 * args.minutes_per_model * args.cores,
                time_clock="cpu",
                schedule=None if args.schedule == "none" else args.schedule,
                callbacks=extra,
                precision=args.precision,
                verbose=0,
            )
            t_train = time.monotonic() - t
            t = time.monotonic()
            has_head = hasattr(run.model, "anomaly_map")
            maps = args.maps or (
                ["learned", scoring.DEFAULT_MAP] if has_head else [scoring.DEFAULT_MAP]
            )
            maps = [m for m in maps if has_head or not m.startswith("learned")]
            by_map = {}
            for m in maps:
                by_map[m] = evaluation.evaluate(
                    run.model,
                    test,
                    val_data=val,
                    progress=False,
                    scoring=_scoring_for(scoring, m, run.model, val, d["train"]),
                )
            r = by_map[maps[0]]
            t_eval = time.monotonic() - t
            steps = int(run.model.optimizer.iterations.numpy())
            res["models"][name] = {
                "image_auroc": r.image_auroc,
                "pixel_auroc": r.pixel_auroc,
                "aupro": r.aupro,
                "precision": r.precision,
                "recall": r.recall,
                "train_precision": RunConfig.from_dict(run.config).runtime.precision,
                "per_defect": r.per_defect,
                "epochs": len(run.history["loss"]),
                "steps": steps,
                "train_seconds": t_train,
                "eval_seconds": t_eval,
                "val_loss": run.history.get("val_loss", [None])[-1],
                "map": maps[0],
                "maps": {
                    m: {k: getattr(v, k) for k in ("image_auroc", "pixel_auroc", "aupro")}
                    for m, v in by_map.items()
                },
            }
            if args.eval_at_minutes:  # the last point: the model the run ended with
                point = curve_point(by_map)
                point.update(minutes=args.minutes_per_model, steps=steps, final=True)
                curve.append(point)
                res["models"][name]["curve"] = curve
            print(
                f"{cat:<8} {name:<5} img {_f(r.image_auroc)} pix {_f(r.pixel_auroc)} "
                f"aupro {_f(r.aupro)}  | {steps} steps ({steps * args.batch_size / t_train:.1f}"
                f" img/s) in {t_train:.0f} s, eval {t_eval:.0f} s, "
                f"val_loss {_f(res['models'][name]['val_loss'], 5)}, "
                f"{res['models'][name]['train_precision']}",
                flush=True,
            )
            for m, v in list(by_map.items())[1:]:
                print(
                    f"{cat:<8} {name:<5} map {m}: img {_f(v.image_auroc)} "
                    f"pix {_f(v.pixel_auroc)} aupro {_f(v.aupro)}",
                    flush=True,
                )
        train_arr = baselines.load_arrays(good)["image"]
        test_arr = baselines.load_arrays(test)
        for bname in args.baselines:
            t = time.monotonic()
            b = baselines.evaluate_baseline(bname, train_arr, test_arr)
            b["seconds"] = time.monotonic() - t
            res["baselines"][bname] = b
            print(
                f"{cat:<8} {bname:<8} img {_f(b['image_auroc'])} pix {_f(b['pixel_auroc'])} "
                f"aupro {_f(b['aupro'])}  ({b['seconds']:.0f} s)",
                flush=True,
            )
        results[cat] = res
        print(flush=True)
        if args.json:  # after every category, so an interrupted run keeps what it measured
            from keras_skipae import io_utils

            io_utils.write_json(
                args.json, {"args": vars(args), "results": results, "partial": True}
            )

    _print_tables(results)
    _print_curves(results)
    print(f"\ntotal {time.monotonic() - t_all:.0f} s")
    if args.json:
        from keras_skipae import io_utils

        io_utils.write_json(args.json, {"args": vars(args), "results": results, "partial": False})
        print(f"wrote {args.json}")


def _budget_curve(args, evaluate, curve, label, kept_path=None):
    """A callback evaluating the model at the CPU-time marks before the last budget (the
    run's time limit, whose point is the evaluation after training).

    The marks count the training's CPU time only: the evaluations' own CPU time
    is subtracted, so each point has had the stated budget of training (the run's time
    limit counts it, so the last point trains that much less: about 1 %).
    ``evaluate(model)`` returns ``{map name: EvaluationResult}`` (the first is the
    point's headline). With ``kept_path`` (a head model's ``best.keras``, kept by
    ``val_head_signal``) the point also scores those weights: what the run would end
    with if it stopped there.
    """
    import keras

    marks = [60 * m * args.cores for m in args.eval_at_minutes[:-1]]

    def _kept(model):
        if kept_path is None or not Path(kept_path).is_file():
            return None
        current = model.get_weights()
        model.set_weights(keras.saving.load_model(kept_path, compile=False).get_weights())
        try:
            return evaluate(model)
        finally:
            model.set_weights(current)

    def _point(by_map):
        first = next(iter(by_map.values()))
        point = {k: getattr(first, k) for k in METRICS}
        point["per_defect"] = first.per_defect
        point["maps"] = {m: {k: getattr(r, k) for k in METRICS} for m, r in by_map.items()}
        return point

    class BudgetCurve(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.spent, self.next = time.process_time(), 0.0, 0

        def on_train_batch_end(self, batch, logs=None):
            used = time.process_time() - self.start - self.spent
            if self.next >= len(marks) or used < marks[self.next]:
                return
            t = time.process_time()
            point = _point(evaluate(self.model))
            kept = _kept(self.model)
            self.spent += time.process_time() - t
            steps = int(self.model.optimizer.iterations.numpy())
            minutes = args.eval_at_minutes[self.next]
            point.update(minutes=minutes, cpu_seconds=used, steps=steps)
            if kept is not None:
                point["kept"] = _point(kept)
            curve.append(point)
            for tag, p in [("", point), (" kept", point.get("kept"))]:
                for m, r in (p or {}).get("maps", {}).items():
                    print(
                        f"{label} at {minutes:g} min ({steps} steps){tag} {m}: "
                        f"img {_f(r['image_auroc'])} pix {_f(r['pixel_auroc'])} "
                        f"aupro {_f(r['aupro'])}",
                        flush=True,
                    )
            self.next += 1

    return BudgetCurve(), _point


def _print_curves(results):
    rows = [
        (cat, m, c)
        for cat, res in results.items()
        for m, r in res["models"].items()
        for c in r.get("curve", ())
    ]
    if not rows:
        return
    print("\nbudget curve: image AUROC / pixel AUROC / AUPRO after each training budget")
    for cat, m, c in rows:
        print(f"{cat:<8} {m:<5} {c['minutes']:>5g} min {c['steps']:>5} steps  {_triple(c, 3)}")
        for d in sorted(c["per_defect"]):
            print(f"{'':<21}{d:<16}{_triple(c['per_defect'][d], 2)}")
        for tag, p in [("", c), ("kept ", c.get("kept"))]:
            for name, r in (p or {}).get("maps", {}).items():
                print(f"{'':<21}{tag}map {name:<10}{_triple(r, 3)}")


def _methods(res):
    return list(res["models"]) + list(res["baselines"])


def _get(res, method):
    return res["models"].get(method) or res["baselines"].get(method)


METRICS = ("image_auroc", "pixel_auroc", "aupro")


def _triple(r, decimals):
    """``image AUROC / pixel AUROC / AUPRO`` of a result dict."""
    return " / ".join(_f(r.get(k), decimals) for k in METRICS)


def _print_tables(results):
    methods = _methods(next(iter(results.values())))
    head = "".join(f"{m:>22}" for m in methods)
    print("image AUROC / pixel AUROC / AUPRO per category")
    print(f"{'category':<22}{head}")
    for cat, res in results.items():
        cells = "".join(f"{_triple(_get(res, m), 2):>22}" for m in methods)
        print(f"{cat:<22}{cells}")
    print("\nper defect type")
    print(f"{'category/defect':<22}{head}")
    for cat, res in results.items():
        first = _get(res, methods[0])
        for d in sorted(first["per_defect"]):
            cells = "".join(
                f"{_triple(_get(res, m)['per_defect'].get(d, {}), 2):>22}" for m in methods
            )
            print(f"{cat + '/' + d:<22}{cells}")

    _print_targets(mean_over_seeds({0: results}))


#: Issue #14's targets for the default recipe (mean of two training seeds): image AUROC
#: per category, and gravel's pixel AUROC.
IMAGE_TARGETS = {"mesh": 0.95, "woven": 0.95, "wood": 0.95, "nut": 0.95, "gravel": 0.85}
PIXEL_TARGETS = {"gravel": 0.90}
LEVEL = 0.01  # "level with patch-NN": within this on every metric


def merge_runs(saved, names=None):
    """``{training seed: results}`` from the JSONs of several runs of this script.

    Runs of the same training seed (e.g. categories run separately) are merged;
    a (category, method) given twice for one seed, or runs on different data seeds,
    are refused.
    """
    names = names or [f"run {i}" for i in range(len(saved))]
    data_seeds = {s["args"].get("data_seed", 0) for s in saved}
    if len(data_seeds) > 1:
        raise ValueError(f"The runs were made on different data seeds: {sorted(data_seeds)}")
    by_seed = {}
    for name, run in zip(names, saved):
        seed = run["args"]["seed"]
        for cat, res in run["results"].items():
            slot = by_seed.setdefault(seed, {}).setdefault(cat, {"models": {}, "baselines": {}})
            for kind in ("models", "baselines"):
                for method, r in res.get(kind, {}).items():
                    if method in slot[kind]:
                        raise ValueError(
                            f"{name}: {cat}/{method} of training seed {seed} is in two files"
                        )
                    slot[kind][method] = r
    return dict(sorted(by_seed.items()))


def _mean(rows):
    """The mean of each metric over ``rows`` (dicts), ignoring None; and ``n``."""
    out = {}
    for k in METRICS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    out["n"] = len(rows)
    return out


def mean_over_seeds(by_seed):
    """Per category and method: the mean of the metrics over the seeds that ran it
    (``n`` of them), their per-seed values (``runs``) and per-defect means."""
    cats = {c: None for res in by_seed.values() for c in res}
    out = {}
    for cat in cats:
        out[cat] = {}
        for kind in ("models", "baselines"):
            methods = {m: None for res in by_seed.values() for m in res.get(cat, {}).get(kind, {})}
            for m in methods:
                rows = [
                    res[cat][kind][m]
                    for res in by_seed.values()
                    if m in res.get(cat, {}).get(kind, {})
                ]
                entry = _mean(rows)
                entry["kind"] = kind
                entry["runs"] = [{k: r.get(k) for k in METRICS} for r in rows]
                defects = {d: None for r in rows for d in r.get("per_defect", {})}
                entry["per_defect"] = {
                    d: _mean([r["per_defect"][d] for r in rows if d in r.get("per_defect", {})])
                    for d in defects
                }
                out[cat][m] = entry
    return out


def targets(mean, model="aesc", baseline="patch_nn"):
    """Issue #14's targets checked on ``mean`` (from :func:`mean_over_seeds`).

    Returns ``{category: {check: bool}}`` and the number of categories where
    ``model`` is ahead of ``baseline``: level (within ``LEVEL``) on every metric and
    more than ``LEVEL`` better on at least one.
    """
    checks, ahead = {}, 0
    for cat, res in mean.items():
        if model not in res:
            continue
        a, c = res[model], {}
        if cat in IMAGE_TARGETS:
            c[f"image AUROC >= {IMAGE_TARGETS[cat]}"] = a["image_auroc"] >= IMAGE_TARGETS[cat]
        if cat in PIXEL_TARGETS:
            c[f"pixel AUROC >= {PIXEL_TARGETS[cat]}"] = a["pixel_auroc"] >= PIXEL_TARGETS[cat]
        if baseline in res:
            b = res[baseline]
            level = all(a[k] >= b[k] - LEVEL for k in METRICS)
            c[f"level with {baseline}"] = level
            c[f"ahead of {baseline}"] = level and any(a[k] > b[k] + LEVEL for k in METRICS)
            ahead += c[f"ahead of {baseline}"]
        checks[cat] = c
    return checks, ahead


def _print_targets(mean):
    checks, ahead = targets(mean)
    if not checks:
        return
    print("\nissue #14's targets (AESc; with several seeds, on their mean):")
    for cat, c in checks.items():
        print(f"  {cat:<8} " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in c.items()))
    print(f"  ahead of patch_nn on {ahead} of {len(checks)} categories (target: at least 4 of 5)")


def _print_mean(mean):
    methods = list({m: None for res in mean.values() for m in res})
    head = "".join(f"{m:>28}" for m in methods)
    print("mean over the training seeds: image AUROC / pixel AUROC / AUPRO (seeds)")
    print(f"{'category':<16}{head}")
    for cat, res in mean.items():
        cells = ""
        for m in methods:
            r = res.get(m)
            txt = "" if r is None else f"{_triple(r, 3)} ({r['n']})"
            cells += f"{txt:>28}"
        print(f"{cat:<16}{cells}")
    print("\nper defect type, mean over the seeds")
    print(f"{'category/defect':<24}{head}")
    for cat, res in mean.items():
        defects = {d: None for r in res.values() for d in r["per_defect"]}
        for d in sorted(defects):
            cells = ""
            for m in methods:
                r = res.get(m, {}).get("per_defect", {}).get(d)
                txt = "" if r is None else _triple(r, 2)
                cells += f"{txt:>28}"
            print(f"{cat + '/' + d:<24}{cells}")
    _print_targets(mean)


if __name__ == "__main__":
    main()
