"""Benchmark: do fewer, weaker or dropped skips stop a skip autoencoder from copying defects?

Every setting is trained for the same number of steps with the same seed (the same
images, split, stains and batch order) on the synthetic categories at 128x128:

* ``aesc``: the AESc with all skips (stains, stain weight 10, as ``train``'s default);
* ``aesc_skips1+``: without the finest skip (``skips`` from level 1);
* ``aesc_scale0.5``: ``skip_scale=0.5``;
* ``aesc_sd0.25``, ``aesc_sd0.5``: ``skip_dropout`` 0.25 and 0.5;
* ``ae``: the autoencoder without skips (stains);
* ``unet_copy``: a U-Net trained without corruption (``corruption=None``), the
  copying baseline.

Per setting it reports the **repair ratio** (``keras_skipae.analysis.repair_ratio``:
mean residual inside the defect pixels over the mean residual of good test images;
higher means repaired rather than copied), PSNR and SSIM of the reconstructions of
the good test images, and image / pixel AUROC with the default scoring
(``keras_skipae.evaluate``). Then it checks the ``skip_scale`` claim: at every Add
``dec{i}_skip`` of the AESc trained with ``skip_scale=0.5`` and of the one trained with
``skip_scale=1``, the RMS of the (scaled) skip tensor over the RMS of the decoder
branch (``keras_skipae.analysis.skip_contributions``, good test images).

Run (step-based, so it needs no lock; ~2 hours on the shared 2-core CPU):

    nice .venv/bin/python bench/bench_skips.py > bench/results/skips.txt 2>&1

A smoke run:

    .venv/bin/python bench/bench_skips.py --categories mesh --steps 20 --steps-per-epoch 10 \\
        --json /tmp/skips.json --examples ''
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

from bench_common import (  # noqa: E402
    default_data_root,
    ensure_synthetic,
    fmt,
    load_category,
    machine_line,
)

#: setting -> (registry name, builder arguments, corruption); the AESc has depth 6
#: (skip levels 0..4) at the builder's default.
SETTINGS = {
    "aesc": ("aesc", {}, "auto"),
    "aesc_skips1+": ("aesc", {"skips": [1, 2, 3, 4]}, "auto"),
    "aesc_scale0.5": ("aesc", {"skip_scale": 0.5}, "auto"),
    "aesc_sd0.25": ("aesc", {"skip_dropout": 0.25}, "auto"),
    "aesc_sd0.5": ("aesc", {"skip_dropout": 0.5}, "auto"),
    "ae": ("ae", {}, "auto"),
    "unet_copy": ("unet", {}, None),
}

#: Opt-in settings (not in the default run): skip dropout without the 1 / (1 - p) scaling
#: of the kept skips, the alternative ``docs/decisions.md#skip-dropout`` compared.
EXTRA_SETTINGS = {
    "aesc_sd0.25_norescale": ("aesc_norescale", {"skip_dropout": 0.25}, "auto"),
    "aesc_sd0.5_norescale": ("aesc_norescale", {"skip_dropout": 0.5}, "auto"),
}


def _aesc_norescale(**kwargs):
    """The AESc with ``skip_dropout`` whose kept skips are not rescaled."""
    import keras

    import keras_skipae as ks
    from keras_skipae.layers import SkipDropout

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, SkipDropout):
            config["rescale"] = False
        return layer.__class__.from_config(config)

    return keras.models.clone_model(ks.build_aesc(**kwargs), clone_function=clone)


#: The table's columns: (key, header, decimals).
COLUMNS = (
    ("repair_ratio", "repair", 2),
    ("psnr", "PSNR", 1),
    ("ssim", "SSIM", 3),
    ("image_auroc", "img AUROC", 3),
    ("pixel_auroc", "pix AUROC", 3),
)


def _arrays(dataset):
    import numpy as np

    items = list(dataset.as_numpy_iterator())
    return {
        "image": np.stack([e["image"] for e in items]),
        "mask": np.stack([e["mask"] for e in items]),
        "label": np.array([e["label"] for e in items]),
        "defect_type": [e["defect_type"].decode() for e in items],
    }


def _sharpness(good, recon):
    from keras_skipae.keras_metrics import PSNR, SSIM

    out = {}
    for key, metric in (("psnr", PSNR()), ("ssim", SSIM())):
        metric.update_state(good, recon)
        out[key] = float(metric.result())
    return out


def _measure(model, test, val, arrays):
    """Repair ratio (all defects and per type), PSNR / SSIM on good images, AUROCs."""
    import numpy as np

    from keras_skipae import analysis, evaluation

    recon = model.predict(arrays["image"], batch_size=16, verbose=0)
    labels, masks = arrays["label"], arrays["mask"]
    good = labels == 0
    per_defect = {}
    for d in sorted(set(arrays["defect_type"]) - {"good"}):
        keep = good | np.array([t == d for t in arrays["defect_type"]])
        per_defect[d] = analysis.repair_ratio(
            arrays["image"][keep], recon[keep], masks[keep], labels[keep]
        )
    r = evaluation.evaluate(model, test, val_data=val, progress=False)
    return {
        "repair_ratio": analysis.repair_ratio(arrays["image"], recon, masks, labels),
        "repair_ratio_per_defect": per_defect,
        **_sharpness(arrays["image"][good], recon[good]),
        "image_auroc": r.image_auroc,
        "pixel_auroc": r.pixel_auroc,
        "aupro": r.aupro,
    }, recon


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="synthetic dataset root (made if missing)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--categories", nargs="+", default=["mesh", "woven", "gravel"])
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=[*SETTINGS, *EXTRA_SETTINGS],
        help=f"default: all but {', '.join(EXTRA_SETTINGS)}",
    )
    parser.add_argument("--steps", type=int, default=600, help="training steps of every setting")
    parser.add_argument("--steps-per-epoch", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--filters", type=int, default=8, help="first-stage filters, all models")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="training seed (same for all)")
    parser.add_argument("--out", default="/tmp/keras_skipae_bench_skips", help="run folders")
    parser.add_argument("--json", default="bench/results/skips.json")
    parser.add_argument(
        "--examples",
        default="bench/results/skips_examples.npz",
        help="save two defective test images per category and every setting's "
        "reconstructions (uint8) for notebook 06; '' to skip",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="rerun --settings into the existing --json and --examples: their rows are "
        "replaced, the other rows kept; refused unless the training arguments match",
    )
    parser.add_argument("--tables-from", default=None, metavar="JSON", help="only print tables")
    args = parser.parse_args(argv)
    if args.steps % args.steps_per_epoch:
        parser.error("--steps must be a multiple of --steps-per-epoch")
    if args.tables_from:
        with open(args.tables_from, encoding="utf-8") as f:
            _print_tables(json.load(f))
        return

    import keras_skipae  # noqa: F401, I001  (first: it picks TensorFlow's CPU kernels)
    import numpy as np

    from keras_skipae import analysis, io_utils, training
    from keras_skipae.layers import SkipDropout

    command = " ".join([os.path.basename(sys.executable), *sys.argv])
    print("command:", command)
    print(machine_line())
    print(
        f"every setting: {args.steps} steps ({args.steps // args.steps_per_epoch} epochs of "
        f"{args.steps_per_epoch}), batch {args.batch_size}, filters {args.filters}, Adam lr "
        f"{args.lr:g} with the cosine schedule, BatchNorm momentum {args.bn_momentum:g}, "
        f"seed {args.seed}, {args.image_size}x{args.image_size}\n",
        flush=True,
    )
    root = Path(args.data) if args.data else default_data_root(args.image_size, args.data_seed)
    ensure_synthetic(root, args.categories, image_size=args.image_size, seed=args.data_seed)

    out = {"args": vars(args), "settings": {}, "results": {}, "skip_scale_check": {}}
    out["commands"] = [command]
    examples = {}
    if args.update:
        out, examples = _previous(args, parser)
        out["commands"].append(command)
    settings = {**SETTINGS, **EXTRA_SETTINGS}
    for s in args.settings:
        model_name, kwargs, corruption = settings[s]
        out["settings"][s] = {"model": model_name, "kwargs": kwargs, "corruption": corruption}
    t_all = time.monotonic()
    for cat in args.categories:
        d = load_category(root, cat, image_size=args.image_size, seed=args.seed)
        arrays = _arrays(d["test"])
        shown = np.flatnonzero(arrays["label"] != 0)[:: max(1, (arrays["label"] != 0).sum() // 2)][
            :2
        ]
        examples[f"{cat}/input"] = arrays["image"][shown]
        examples[f"{cat}/mask"] = arrays["mask"][shown]
        out["results"].setdefault(cat, {})
        trained = {}
        for s in args.settings:
            model_name, kwargs, corruption = settings[s]
            model_kwargs = {
                "input_shape": [args.image_size, args.image_size, d["channels"]],
                "bn_momentum": args.bn_momentum,
                "filters": args.filters,
                **kwargs,
            }
            t, c = time.monotonic(), time.process_time()
            run = training.train(
                _aesc_norescale if model_name == "aesc_norescale" else model_name,
                d["good"],
                model_kwargs=model_kwargs,
                epochs=args.steps // args.steps_per_epoch,
                steps_per_epoch=args.steps_per_epoch,
                learning_rate=args.lr,
                corruption=corruption,
                batch_size=args.batch_size,
                seed=args.seed,
                run_dir=Path(args.out) / cat / s,
                overwrite=True,
                resume=False,
                tensorboard=False,
                schedule="cosine",
                verbose=0,
            )
            t_train, c_train = time.monotonic() - t, time.process_time() - c
            steps = int(run.model.optimizer.iterations.numpy())
            res, recon = _measure(run.model, d["test"], d["val"], arrays)
            res.update(
                skip_dropout_rescale=sorted(
                    {lay.rescale for lay in run.model.layers if isinstance(lay, SkipDropout)}
                ),
                steps=steps,
                params=int(run.model.count_params()),
                train_seconds=t_train,
                train_cpu_seconds=c_train,
                val_loss=run.history.get("val_loss", [None])[-1],
            )
            out["results"][cat][s] = res
            examples[f"{cat}/{s}"] = recon[shown]
            if s in ("aesc", "aesc_scale0.5"):
                trained[s] = run.model
            print(
                f"{cat:<7} {s:<14} repair {fmt(res['repair_ratio'], 2)}  PSNR "
                f"{fmt(res['psnr'], 1)}  SSIM {fmt(res['ssim'])}  img {fmt(res['image_auroc'])}"
                f"  pix {fmt(res['pixel_auroc'])}  | {steps} steps in {t_train:.0f} s "
                f"({c_train:.0f} CPU-s)",
                flush=True,
            )
            io_utils.write_json(args.json, {**out, "partial": True}, overwrite=True)
        if len(trained) == 2:
            good = arrays["image"][arrays["label"] == 0]
            check = {s: analysis.skip_contributions(m, good) for s, m in trained.items()}
            out["skip_scale_check"][cat] = check
            for merge in check["aesc"]:
                a, h = check["aesc"][merge], check["aesc_scale0.5"][merge]
                print(
                    f"{cat:<7} {merge:<10} skip/decoder RMS: scale 1 {a['ratio']:.3f}, "
                    f"scale 0.5 {h['ratio']:.3f} (x{h['ratio'] / a['ratio']:.2f}); "
                    f"source enc RMS x{h['source_rms'] / a['source_rms']:.2f}",
                    flush=True,
                )
        print(flush=True)
    out["total_seconds"] = out.get("total_seconds", 0.0) + time.monotonic() - t_all
    io_utils.write_json(args.json, {**out, "partial": False}, overwrite=True)
    if args.examples:
        packed = {k: np.round(np.clip(v, 0, 1) * 255).astype("uint8") for k, v in examples.items()}
        tmp = Path(args.examples).with_suffix(".part.npz")
        np.savez_compressed(tmp, **packed)
        os.replace(tmp, args.examples)
    _print_tables(out)
    print(f"\ntotal {out['total_seconds']:.0f} s; wrote {args.json}")


#: Arguments that must match for --update (every setting: same steps, seed, data).
SAME = ("data_seed", "steps", "steps_per_epoch", "batch_size", "filters", "image_size", "lr")
SAME += ("bn_momentum", "seed")


def _previous(args, parser):
    """The existing results and examples that ``--update`` adds to."""
    import numpy as np

    with open(args.json, encoding="utf-8") as f:
        out = json.load(f)
    different = [k for k in SAME if out["args"][k] != getattr(args, k)]
    if different:
        parser.error(f"--update: {different} differ from those of {args.json}")
    out.setdefault("commands", [])
    out.setdefault("skip_scale_check", {})
    examples = {}
    if args.examples and Path(args.examples).is_file():
        with np.load(args.examples) as z:
            examples = {k: z[k].astype("float32") / 255 for k in z.files}
    return out, examples


def _print_tables(out):
    results = out["results"]
    settings = list(out["settings"])
    print("per category: " + ", ".join(h for _, h, _ in COLUMNS))
    for cat, res in results.items():
        for s in settings:
            if s in res:
                cells = "  ".join(f"{fmt(res[s][k], n):>9}" for k, _, n in COLUMNS)
                print(f"{cat:<7} {s:<14} {cells}")
    print("\nmean over categories")
    for s in settings:
        rows = [res[s] for res in results.values() if s in res]
        if rows:
            cells = "  ".join(
                f"{fmt(sum(r[k] for r in rows) / len(rows), n):>9}" for k, _, n in COLUMNS
            )
            print(f"{'mean':<7} {s:<14} {cells}")
    for cat, check in out.get("skip_scale_check", {}).items():
        ratios = ", ".join(
            f"{m}: {check['aesc'][m]['ratio']:.2f} -> {check['aesc_scale0.5'][m]['ratio']:.2f}"
            for m in check["aesc"]
        )
        print(f"skip/decoder RMS at each Add, skip_scale 1 -> 0.5, {cat}: {ratios}")


if __name__ == "__main__":
    main()
