"""The computation behind the golden file: stains, a seeded training run, scoring.

Only public entry points are used (``ks.data``, ``ks.train``, ``ks.evaluate``,
``ks.export_saved_model``, the CLI's ``main``), so that the recipe survives a
restructuring of the modules behind them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN_FILE = "golden.npz"
SIZE = 32
TINY = {"input_shape": (SIZE, SIZE, 1), "depth": 2, "filters": 4, "bn_momentum": 0.9}


def _cli_main():
    import importlib

    for name in ("keras_skipae_cli", "keras_skipae.apps.cli", "keras_skipae.cli"):  # it moved
        try:
            return importlib.import_module(name).main
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError("keras_skipae's CLI module")


def _as_arrays(dataset):
    images, masks, labels = [], [], []
    for element in dataset:
        images.append(element["image"].numpy())
        masks.append(element["mask"].numpy())
        labels.append(int(element["label"].numpy()))
    return np.stack(images), np.stack(masks), np.asarray(labels)


def _saved_model_outputs(path, images, prefix):
    import tensorflow as tf

    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = served(images=tf.constant(images))
    return {f"{prefix}_{k}": v.numpy() for k, v in out.items()}


def _metrics_vector(d: dict) -> np.ndarray:
    keys = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "f1_threshold", "threshold")
    return np.asarray([np.nan if d.get(k) is None else d[k] for k in keys], np.float64)


def compute(tmp: Path) -> dict[str, np.ndarray]:
    import keras_skipae as ks  # noqa: I001  (first, as in a user script: it picks the CPU kernels)

    import keras
    import tensorflow as tf

    out: dict[str, np.ndarray] = {}

    # 1. Stains for a fixed seed.
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (3, SIZE, SIZE, 1)).astype("float32")
    corrupted, target, mask = ks.data.Stains()(tf.constant(images), tf.constant([1, 2]))
    out["stains_corrupted"] = corrupted.numpy()
    out["stains_mask"] = mask.numpy()
    rgb = rng.uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    out["stains_rgb"] = ks.data.Stains(color=True, count=(1, 3))(rgb, tf.constant([3, 4]))[
        0
    ].numpy()

    # 2. Synthetic data, a seeded 2-epoch training run.
    root = ks.data.synthetic.make_dataset(
        tmp / "data",
        categories=["mesh"],
        image_size=SIZE,
        n_train=12,
        n_test_good=4,
        n_test_defect=1,
        seed=0,
    )
    train = ks.data.mvtec_dataset(root, "mesh", split="train", image_size=SIZE)
    test = ks.data.mvtec_dataset(root, "mesh", split="test", image_size=SIZE)
    run = ks.train(
        "aesc",
        train,
        model_kwargs=TINY,
        epochs=2,
        batch_size=4,
        seed=0,
        run_dir=tmp / "run",
        verbose=0,
        preview_images=0,
    )
    for i, w in enumerate(run.model.get_weights()):
        out[f"train_weight_{i:02d}"] = w
    out["train_loss"] = np.asarray(run.history["loss"], np.float64)

    # 3. A fixed, seeded tiny model scored through evaluate and the SavedModel.
    keras.utils.set_random_seed(7)
    model = ks.build_aesc(**TINY)
    test_images, _, _ = _as_arrays(test)
    _, val = ks.training.split_validation(train, 0.1, seed=0)
    result = ks.evaluate(model, test, val_data=val, progress=False, batch_size=4)
    out["eval_scores"] = np.asarray(result.scores, np.float32)
    out["eval_metrics"] = _metrics_vector(result.to_dict())
    scored = ks.scoring.compute(model, test_images)
    out["eval_maps"] = scored["anomaly_map"].numpy()
    ssim_cfg = ks.ScoringConfig(map="ssim", smoothing=2.0, score="topk")
    ssim = ks.scoring.compute(model, test_images, ssim_cfg)
    out["eval_ssim_scores"] = ssim["score"].numpy()
    ks.export_saved_model(model, tmp / "export", threshold=result.threshold)
    out.update(_saved_model_outputs(tmp / "export", test_images, "saved"))

    # 4. The CLI: train, evaluate, export.
    main = _cli_main()
    run_dir = tmp / "cli_run"
    common = ["--image-size", str(SIZE), "--depth", "2", "--filters", "4"]
    rc = main(
        [
            "train",
            "--data",
            str(root),
            "--category",
            "mesh",
            "--out",
            str(run_dir),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--quiet",
            *common,
        ]
    )
    assert rc == 0, rc
    assert main(["evaluate", str(run_dir), "--quiet", "--batch-size", "4"]) == 0
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    out["cli_metrics"] = _metrics_vector(metrics)
    out["cli_scores"] = np.asarray([im["score"] for im in metrics["images"]], np.float32)
    assert main(["export", str(run_dir), str(tmp / "cli_export"), "--threshold", "eval"]) == 0
    out.update(_saved_model_outputs(tmp / "cli_export", test_images, "cli_saved"))
    return out
