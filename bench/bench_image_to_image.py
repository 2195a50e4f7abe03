"""Benchmark: U-Net, AESc and AE for denoising and 2x super-resolution, against simple baselines.

Data: the package's synthetic textures only (``keras_skipae.data.synthetic``, drawn in
memory with :func:`~keras_skipae.data.synthetic.generate_sample`, good images, converted
to grayscale; nothing is downloaded). Train, validation and test images are drawn
with different seeds, so the test images are never trained on.

Two tasks, each trained on the categories together (one model per task and
architecture, all for the same number of steps with the same seed, batch order and
optimiser):

* **denoising**: the input is the clean image plus Gaussian noise of std ``--sigma``
  (``keras_skipae.data.GaussianNoise``, clipped to [0, 1]; fresh noise every batch
  during training, one fixed seeded draw for the test images); the target is the
  clean image. Baselines: the noisy input itself, a Gaussian filter and a median
  filter (OpenCV), each with its parameter picked on the validation images.
* **2x super-resolution**: the input is the image downscaled 2x (OpenCV area
  interpolation), the target the full image. Every model is built with
  ``upscale=2`` (two ``sr_up`` Conv2DTranspose stages before the output convolution).
  Baseline: bicubic upsampling (OpenCV), clipped to [0, 1].

Metrics: PSNR and SSIM of ``skimage.metrics`` (``data_range=1``, SSIM with its default
7x7 window), per test image, on outputs clipped to [0, 1]; the tables give the mean
per category and over all test images.

Run (step-based, so it needs no lock; about 10-15 minutes on the shared 2-core CPU):

    nice -n 10 .venv/bin/python bench/bench_image_to_image.py \\
        > bench/results/image_to_image.txt 2>&1

A smoke run:

    .venv/bin/python bench/bench_image_to_image.py --steps 20 --steps-per-epoch 10 \\
        --n-train 16 --n-test 4 --json /tmp/image_to_image.json
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

from bench_common import machine_line  # noqa: E402

MODELS = ("unet", "aesc", "ae")
#: seed word of each split (the data seed and the category's index come first)
SPLITS = {"train": 501, "val": 502, "test": 503}
GAUSSIAN_SIGMAS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
MEDIAN_SIZES = (3, 5)


def clean_images(category, n, *, image_size, data_seed, split):
    """``n`` good grayscale images of ``category``, float32 ``[n, H, W, 1]`` in [0, 1]."""
    import cv2
    import numpy as np

    from keras_skipae.data import synthetic

    cid = synthetic.CATEGORIES.index(category)
    out = []
    for i in range(n):
        img, _ = synthetic.generate_sample(
            category, image_size=image_size, seed=[data_seed, cid, SPLITS[split], i]
        )
        if img.shape[-1] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
        out.append(img.astype(np.float32) / 255.0)
    return np.stack(out)


def downscale(images):
    """2x area downscaling of ``[n, H, W, 1]`` images."""
    import cv2
    import numpy as np

    h, w = images.shape[1:3]
    return np.stack(
        [cv2.resize(x[..., 0], (w // 2, h // 2), interpolation=cv2.INTER_AREA) for x in images]
    )[..., None]


def bicubic(images):
    """2x bicubic upsampling of ``[n, h, w, 1]`` images, clipped to [0, 1]."""
    import cv2
    import numpy as np

    h, w = images.shape[1:3]
    up = [cv2.resize(x[..., 0], (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC) for x in images]
    return np.clip(np.stack(up), 0.0, 1.0)[..., None]


def gaussian_filter(images, sigma):
    import cv2
    import numpy as np

    return np.stack([cv2.GaussianBlur(x[..., 0], (0, 0), sigma) for x in images])[..., None]


def median_filter(images, size):
    import cv2
    import numpy as np

    return np.stack([cv2.medianBlur(x[..., 0], size) for x in images])[..., None]


def add_noise(images, sigma, seed):
    """The package's Gaussian noise (clipped to [0, 1]) with a fixed seed."""
    import numpy as np
    import tensorflow as tf

    from keras_skipae import data

    noisy, _, _ = data.GaussianNoise(sigma)(tf.constant(images), tf.constant([seed, 7]))
    return np.asarray(noisy)


def scores(target, output):
    """Per-image PSNR and SSIM (skimage, data range 1) of ``output`` clipped to [0, 1]."""
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    output = np.clip(output, 0.0, 1.0)
    psnr = [
        peak_signal_noise_ratio(t[..., 0], o[..., 0], data_range=1.0)
        for t, o in zip(target, output)
    ]
    ssim = [
        structural_similarity(t[..., 0], o[..., 0], data_range=1.0) for t, o in zip(target, output)
    ]
    return np.asarray(psnr), np.asarray(ssim)


def summarize(target, output, categories, n_test):
    """Mean PSNR / SSIM per category and overall, and the per-image values."""
    psnr, ssim = scores(target, output)
    row = {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "per_category": {}}
    for k, cat in enumerate(categories):
        part = slice(k * n_test, (k + 1) * n_test)
        row["per_category"][cat] = {
            "psnr": float(psnr[part].mean()),
            "ssim": float(ssim[part].mean()),
        }
    row["per_image"] = {
        "psnr": [round(float(v), 4) for v in psnr],
        "ssim": [round(float(v), 5) for v in ssim],
    }
    return row


def model_kwargs(name, args, input_shape, upscale):
    kwargs = {
        "input_shape": list(input_shape),
        "filters": args.filters,
        "bn_momentum": args.bn_momentum,
        "upscale": upscale,
    }
    if name == "unet":  # the U-Net's depth counts poolings: the same resolutions as the AESc's
        kwargs.update(depth=args.depth - 1, dropout=0.0)
    else:
        kwargs.update(depth=args.depth)
    return kwargs


def _print_tables(out):
    for task, rows in out["results"].items():
        cats = out["args"]["categories"]
        print(f"\n{task}: mean PSNR (dB) / SSIM over {out['n_test_images']} test images")
        head = f"{'method':<20}{'PSNR':>8}{'SSIM':>8}"
        head += "".join(f"{c + ' PSNR':>13}{'SSIM':>7}" for c in cats)
        print(head)
        for method, r in rows.items():
            line = f"{method:<20}{r['psnr']:8.2f}{r['ssim']:8.3f}"
            line += "".join(
                f"{r['per_category'][c]['psnr']:13.2f}{r['per_category'][c]['ssim']:7.3f}"
                for c in cats
            )
            print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", nargs="+", default=["woven", "wood", "gravel"])
    parser.add_argument("--image-size", type=int, default=64, help="the full (target) size")
    parser.add_argument("--n-train", type=int, default=256, help="training images per category")
    parser.add_argument("--n-val", type=int, default=16, help="validation images per category")
    parser.add_argument("--n-test", type=int, default=32, help="test images per category")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=0.1, help="denoising: noise std")
    parser.add_argument("--steps", type=int, default=600, help="training steps of every model")
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--filters", type=int, default=16, help="first-stage filters, all models")
    parser.add_argument("--depth", type=int, default=4, help="AESc/AE depth (U-Net: depth - 1)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="training seed (same for all)")
    parser.add_argument("--tasks", nargs="+", default=["denoise", "sr"], choices=["denoise", "sr"])
    parser.add_argument("--json", default="bench/results/image_to_image.json")
    parser.add_argument("--tables-from", default=None, metavar="JSON", help="only print tables")
    args = parser.parse_args()
    if args.steps % args.steps_per_epoch:
        parser.error("--steps must be a multiple of --steps-per-epoch")
    if args.image_size % (2 ** (args.depth + 1)):
        parser.error("--image-size must be a multiple of 2**(depth + 1)")
    if args.tables_from:
        with open(args.tables_from, encoding="utf-8") as f:
            _print_tables(json.load(f))
        return

    import keras_skipae  # noqa: F401, I001  (first: it picks TensorFlow's CPU kernels)
    import numpy as np
    import tensorflow as tf

    from keras_skipae import data, io_utils, training

    command = " ".join([os.path.basename(sys.executable), *sys.argv])
    machine = machine_line()
    print("command:", command)
    print(machine)
    print(
        f"every model: {args.steps} steps ({args.steps // args.steps_per_epoch} epochs of "
        f"{args.steps_per_epoch}), batch {args.batch_size}, filters {args.filters}, depth "
        f"{args.depth} (U-Net {args.depth - 1}), Adam lr {args.lr:g} with the cosine schedule, "
        f"MSE loss, BatchNorm momentum {args.bn_momentum:g}, seed {args.seed}; "
        f"{len(args.categories)} categories x {args.n_train} training images, "
        f"{args.image_size}x{args.image_size} grayscale\n",
        flush=True,
    )
    t_all = time.monotonic()
    split = {
        s: np.concatenate(
            [
                clean_images(c, n, image_size=args.image_size, data_seed=args.data_seed, split=s)
                for c in args.categories
            ]
        )
        for s, n in (("train", args.n_train), ("val", args.n_val), ("test", args.n_test))
    }
    out = {
        "args": vars(args),
        "commands": [command],
        "machine": machine,
        "n_test_images": len(split["test"]),
        "metrics": "skimage.metrics peak_signal_noise_ratio / structural_similarity, data_range=1",
        "results": {},
        "baseline_parameters": {},
        "training": {},
    }
    epochs = args.steps // args.steps_per_epoch
    common = {
        "epochs": epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "metrics": (),
        "schedule": "cosine",
        "tensorboard": False,
        "verbose": 0,
    }
    size = args.image_size

    for task in args.tasks:
        rows, out["training"][task] = {}, {}
        if task == "denoise":
            val_in = add_noise(split["val"], args.sigma, seed=args.seed + 1)
            test_in = add_noise(split["test"], args.sigma, seed=args.seed + 2)
            rows["noisy input"] = summarize(split["test"], test_in, args.categories, args.n_test)
            best = max(
                GAUSSIAN_SIGMAS,
                key=lambda s: scores(split["val"], gaussian_filter(val_in, s))[0].mean(),
            )
            rows[f"gaussian sigma {best:g}"] = summarize(
                split["test"], gaussian_filter(test_in, best), args.categories, args.n_test
            )
            size_m = max(
                MEDIAN_SIZES, key=lambda k: scores(split["val"], median_filter(val_in, k))[0].mean()
            )
            rows[f"median {size_m}x{size_m}"] = summarize(
                split["test"], median_filter(test_in, size_m), args.categories, args.n_test
            )
            out["baseline_parameters"][task] = {"gaussian_sigma": best, "median_size": size_m}
            train_data = tf.data.Dataset.from_tensor_slices(split["train"])
            val_data = tf.data.Dataset.from_tensor_slices(split["val"])
            fit = {
                "corruption": data.GaussianNoise(args.sigma),
                "stain_weight": 1.0,
                "val_data": val_data,
            }
            shape, upscale = (size, size, 1), 1
        else:
            test_in = downscale(split["test"])
            rows["bicubic"] = summarize(
                split["test"], bicubic(test_in), args.categories, args.n_test
            )
            train_data = (
                tf.data.Dataset.from_tensor_slices((downscale(split["train"]), split["train"]))
                .shuffle(len(split["train"]), seed=args.seed)
                .repeat()
                .batch(args.batch_size, drop_remainder=True)
            )
            val_data = tf.data.Dataset.from_tensor_slices(
                (downscale(split["val"]), split["val"])
            ).batch(args.batch_size)
            fit = {"corruption": None, "val_data": val_data}
            shape, upscale = (size // 2, size // 2, 1), 2
        for name in MODELS:
            t, c = time.monotonic(), time.process_time()
            run = training.train(
                name,
                train_data,
                model_kwargs=model_kwargs(name, args, shape, upscale),
                **fit,
                **common,
            )
            t_train, c_train = time.monotonic() - t, time.process_time() - c
            output = np.asarray(run.model(test_in, training=False))
            rows[name] = summarize(split["test"], output, args.categories, args.n_test)
            out["training"][task][name] = {
                "steps": int(run.model.optimizer.iterations.numpy()),
                "params": int(run.model.count_params()),
                "train_seconds": t_train,
                "train_cpu_seconds": c_train,
                "val_loss": [float(v) for v in run.history.get("val_loss", [])],
                "model_kwargs": model_kwargs(name, args, shape, upscale),
            }
            print(
                f"{task:<8} {name:<5} PSNR {rows[name]['psnr']:.2f}  SSIM "
                f"{rows[name]['ssim']:.3f} | {out['training'][task][name]['steps']} steps in "
                f"{t_train:.0f} s ({c_train:.0f} CPU-s), "
                f"{out['training'][task][name]['params']:,} parameters",
                flush=True,
            )
            out["results"][task] = rows
            io_utils.write_json(args.json, {**out, "partial": True}, overwrite=True)
        out["results"][task] = rows
    out["total_seconds"] = time.monotonic() - t_all
    io_utils.write_json(args.json, {**out, "partial": False}, overwrite=True)
    _print_tables(out)
    print(f"\ntotal {out['total_seconds']:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
