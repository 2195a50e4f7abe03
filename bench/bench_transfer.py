"""Pretrain a U-Net on unlabelled images, then fine-tune it for segmentation with few labels.

Per seed, on one grayscale synthetic category (64x64 by default):

1. **Pretraining** on unlabelled good images, the encoder trained (not frozen), twice
   from the same random initialisation:

   * ``plain``: a plain autoencoder (input = target, ``corruption=None``);
   * ``denoiser``: stained inputs, clean targets (the package default, ``"auto"``).

   Each is measured on the held-out labelled test images: the repair ratio
   (``ks.analysis.repair_ratio``: residual inside the defects over the residual of good
   images; about 1 means the model copies the defects) and the PSNR of the output
   against the input on the defective images (high: it copies).
2. **Fine-tuning**: ``ks.models.replace_head(model, 1, activation="sigmoid")`` on a copy of
   each pretrained model, and the same U-Net from a random initialisation
   (``scratch``), each trained with ``train(task="segmentation", loss="bce+dice")`` on
   the first N labelled images for a fixed number of steps (same data order, learning
   rate and steps for the three), then IoU and Dice (threshold 0.5, pooled over all
   test pixels) on the held-out labelled test set.

Data (``ks.data.synthetic.labelled_arrays``, whose seeds never repeat a
``make_dataset`` image): unlabelled good images with seed ``20 + seed``, the labelled
training images with seed ``11 + seed`` (the first N of one set, so N grows one labelled
set), a validation set (seed 3, only for the loss curves: nothing is selected on it, the
learning rate is constant) and the test set (seed 2), the same for every run
(``--test-seed``, ``--val-seed``, ``--labelled-seed`` and ``--unlabelled-seed`` change
them, e.g. for a pilot on a dev split; ``--inits scratch`` skips the pretraining).

Usage (the committed table; about 25 minutes on a shared 2-core CPU)::

    nice -n 10 .venv/bin/python bench/bench_transfer.py --category gravel \
        --bn-momentum 0.9 --finetune-lr 5e-3 --finetune-epochs 5 --finetune-steps 40

Writes ``bench/results/transfer.json`` (command, machine, arguments, every run with
its loss curves, per-N means) and ``bench/results/transfer.txt`` (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_common import machine_line  # noqa: E402

import keras_skipae as ks  # noqa: E402
from keras_skipae.io_utils import write_json, write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
INITS = ("scratch", "plain", "denoiser")


def overlap_scores(masks, probabilities, threshold=0.5):
    """IoU and Dice of thresholded predictions, pooled over all pixels (as ks.keras_metrics)."""
    t = np.asarray(masks) > 0.5
    p = np.asarray(probabilities) >= threshold
    tp = float(np.sum(t & p))
    fp = float(np.sum(~t & p))
    fn = float(np.sum(t & ~p))
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    dice = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return iou, dice


def psnr(a, b):
    """Mean PSNR (max 1) over images ``[N, H, W, C]``."""
    mse = np.mean((np.asarray(a) - np.asarray(b)) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def build(args):
    return ks.build_unet(
        input_shape=(args.image_size, args.image_size, 1),
        filters=args.filters,
        depth=args.depth,
        bn_momentum=args.bn_momentum,
    )


def curves(history):
    keep = ("loss", "val_loss", "iou", "dice", "val_iou", "val_dice")
    return {k: [float(v) for v in history[k]] for k in keep if k in history}


def pretrain(args, seed, good, test):
    """Both pretrainings of one seed from one initialisation: {name: (weights, record)}."""
    keras.utils.set_random_seed(seed)
    init = build(args).get_weights()
    out = {}
    for name, corruption in (("plain", None), ("denoiser", "auto")):
        model = build(args)
        model.set_weights(init)
        run = ks.train(
            model,
            tf.data.Dataset.from_tensor_slices(good),
            corruption=corruption,
            epochs=args.pretrain_epochs,
            steps_per_epoch=args.pretrain_steps,
            batch_size=args.batch_size,
            learning_rate=args.pretrain_lr,
            validation_split=0.0,
            schedule=None,
            metrics=(),
            tensorboard=False,
            seed=seed,
            verbose=0,
        )
        recon = model.predict(test["image"], verbose=0)
        defective = test["label"] != 0
        record = {
            "repair_ratio": float(
                ks.analysis.repair_ratio(test["image"], recon, test["mask"], test["label"])
            ),
            "psnr_output_vs_input_defective": psnr(recon[defective], test["image"][defective]),
            "psnr_output_vs_input_good": psnr(recon[~defective], test["image"][~defective]),
            "loss": [float(v) for v in run.history["loss"]],
            "seconds": round(run.seconds, 1),
        }
        print(
            f"seed {seed} pretrain {name:8s} repair ratio {record['repair_ratio']:.3f}  "
            f"PSNR(out, in) defective {record['psnr_output_vs_input_defective']:.2f} dB  "
            f"({run.seconds:.0f} s)",
            flush=True,
        )
        out[name] = (model.get_weights(), record)
    return out


def finetune(args, seed, n, init, pretrained, labelled, val, test):
    keras.utils.set_random_seed(1000 * seed + n)
    base = build(args)
    if init != "scratch":
        base.set_weights(pretrained[init][0])
    model = ks.replace_head(base, 1, activation="sigmoid", name=f"seg_{init}")
    train_ds = tf.data.Dataset.from_tensor_slices((labelled["image"][:n], labelled["mask"][:n]))
    val_ds = tf.data.Dataset.from_tensor_slices((val["image"], val["mask"]))
    run = ks.train(
        model,
        train_ds,
        val_data=val_ds,
        task="segmentation",
        loss="bce+dice",
        epochs=args.finetune_epochs,
        steps_per_epoch=args.finetune_steps,
        batch_size=args.batch_size,
        learning_rate=args.finetune_lr,
        schedule=None,
        tensorboard=False,
        seed=seed,
        verbose=0,
    )
    prob = model.predict(test["image"], verbose=0)
    iou, dice = overlap_scores(test["mask"], prob)
    print(
        f"seed {seed} N={n:<4d} {init:8s} IoU {iou:.3f} Dice {dice:.3f}  ({run.seconds:.0f} s)",
        flush=True,
    )
    return {
        "seed": seed,
        "n_labels": n,
        "init": init,
        "iou": iou,
        "dice": dice,
        "curves": curves(run.history),
        "seconds": round(run.seconds, 1),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--category", default="mesh", help="a grayscale synthetic category")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--n-labels", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--n-unlabelled", type=int, default=128)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--n-val", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bn-momentum", type=float, default=0.99, help="the U-Net's bn_momentum")
    p.add_argument("--pretrain-epochs", type=int, default=8)
    p.add_argument("--pretrain-steps", type=int, default=20)
    p.add_argument("--pretrain-lr", type=float, default=3e-3)
    p.add_argument("--finetune-epochs", type=int, default=8)
    p.add_argument("--finetune-steps", type=int, default=15)
    p.add_argument("--finetune-lr", type=float, default=5e-3)
    p.add_argument("--json", type=Path, default=RESULTS / "transfer.json")
    p.add_argument("--txt", type=Path, default=RESULTS / "transfer.txt")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--inits", nargs="+", choices=INITS, default=list(INITS))
    p.add_argument("--test-seed", type=int, default=2, help="seed of the labelled test set")
    p.add_argument("--val-seed", type=int, default=3, help="seed of the validation set")
    p.add_argument(
        "--labelled-seed", type=int, default=11, help="labelled training set: this + seed"
    )
    p.add_argument(
        "--unlabelled-seed", type=int, default=20, help="unlabelled good images: this + seed"
    )
    args = p.parse_args(argv)
    for path in (args.json, args.txt):
        if path.exists() and not args.overwrite:
            p.error(f"{path} exists; pass --overwrite to replace it")

    command = "nice -n 10 .venv/bin/python bench/bench_transfer.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    machine = machine_line()
    print(command.strip())
    print(machine, flush=True)
    start = time.monotonic()
    size, cat = args.image_size, args.category
    test = ks.data.synthetic.labelled_arrays(cat, args.n_test, image_size=size, seed=args.test_seed)
    val = ks.data.synthetic.labelled_arrays(cat, args.n_val, image_size=size, seed=args.val_seed)
    if test["image"].shape[-1] != 1:
        p.error(f"--category must be a grayscale category. Received: {cat!r}")
    pretraining, runs = {}, []
    for seed in args.seeds:
        labelled = ks.data.synthetic.labelled_arrays(
            cat, max(args.n_labels), image_size=size, seed=args.labelled_seed + seed
        )
        pretrained = {}
        if set(args.inits) - {"scratch"}:
            good = ks.data.synthetic.labelled_arrays(
                cat,
                args.n_unlabelled,
                image_size=size,
                seed=args.unlabelled_seed + seed,
                defect_fraction=0.0,
            )["image"]
            pretrained = pretrain(args, seed, good, test)
            pretraining[str(seed)] = {k: v[1] for k, v in pretrained.items()}
        for n in args.n_labels:
            for init in args.inits:
                runs.append(finetune(args, seed, n, init, pretrained, labelled, val, test))

    means = {}
    for n in args.n_labels:
        means[str(n)] = {}
        for init in args.inits:
            rows = [r for r in runs if r["n_labels"] == n and r["init"] == init]
            means[str(n)][init] = {
                "iou": float(np.mean([r["iou"] for r in rows])),
                "dice": float(np.mean([r["dice"] for r in rows])),
                "iou_per_seed": [r["iou"] for r in rows],
                "dice_per_seed": [r["dice"] for r in rows],
            }
    pre_means = {
        name: {
            key: float(np.mean([pretraining[s][name][key] for s in pretraining]))
            for key in ("repair_ratio", "psnr_output_vs_input_defective")
        }
        for name in ("plain", "denoiser")
        if pretraining
    }
    minutes = (time.monotonic() - start) / 60

    lines = [command.strip(), machine, ""]
    lines.append(
        f"{cat}, {size}x{size} grayscale, U-Net filters {args.filters} depth {args.depth}; "
        f"pretraining {args.pretrain_epochs * args.pretrain_steps} steps on "
        f"{args.n_unlabelled} unlabelled good images; fine-tuning "
        f"{args.finetune_epochs * args.finetune_steps} steps (batch {args.batch_size}, "
        f"lr {args.finetune_lr:g}, bce+dice); test: {args.n_test} labelled images; "
        f"seeds {args.seeds}; {minutes:.1f} min"
    )
    lines += ["", "pretraining (means over seeds; per seed in the JSON)"]
    lines.append(f"{'':10s}{'repair ratio':>14s}{'PSNR(out, in) defective':>26s}")
    for name, m in pre_means.items():
        lines.append(
            f"{name:10s}{m['repair_ratio']:14.3f}{m['psnr_output_vs_input_defective']:23.2f} dB"
        )
    lines += ["", "segmentation on the test set (IoU / Dice, mean over seeds [per seed])"]
    lines.append(f"{'N':>5s}  " + "".join(f"{init:>34s}" for init in args.inits))
    for n in args.n_labels:
        cells = []
        for init in args.inits:
            m = means[str(n)][init]
            per = ",".join(f"{v:.2f}" for v in m["iou_per_seed"])
            cells.append(f"{m['iou']:.3f} / {m['dice']:.3f} [{per}]")
        lines.append(f"{n:5d}  " + "".join(f"{c:>34s}" for c in cells))
    text = "\n".join(lines) + "\n"
    print("\n" + text)

    result = {
        "command": command.strip(),
        "machine": machine,
        "minutes": round(minutes, 1),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {
            "category": cat,
            "unlabelled_seed": f"{args.unlabelled_seed} + seed",
            "labelled_seed": f"{args.labelled_seed} + seed",
            "val_seed": args.val_seed,
            "test_seed": args.test_seed,
            "source": "keras_skipae.data.synthetic.labelled_arrays",
        },
        "pretraining": pretraining,
        "pretraining_means": pre_means,
        "runs": runs,
        "means": means,
    }
    write_json(args.json, result, overwrite=True)
    write_text(args.txt, text, overwrite=True)
    print(f"wrote {args.json} and {args.txt}")
    return json.loads(json.dumps(result))


if __name__ == "__main__":
    main()
