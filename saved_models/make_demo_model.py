"""Builds the demo export in ``saved_models/``: a small AESc trained on synthetic data.

Command (from the repository root; about 2-4 minutes on 2 CPU cores)::

    python saved_models/make_demo_model.py --overwrite

What it does, with the package's public API only:

1. draws the synthetic ``mesh`` category (grayscale wire grid, 128x128) with
   ``keras_skipae.data.synthetic.make_dataset`` into a temporary folder
   (120 good training images, seed 0);
2. trains an AESc with ``keras_skipae.train`` on the first 100 of them
   (stain corruption, MSE with the stained pixels weighted 10x, ``train``'s
   default, Adam 1e-3, batch 16) at a **reduced width**:
   ``filters=8, depth=5`` instead of the paper's 16 / 6, so the export stays
   a few MB; ``bn_momentum=0.9`` as the training docs advise for short runs;
3. sets the production threshold from the 20 held-out good images only
   (``evaluate(..., val_data=...)``: the 99th percentile of their scores, with
   the default scoring settings) and reports the test metrics;
4. writes ``saved_models/aesc_mesh_demo/`` (``export_saved_model`` with that
   threshold) and ``saved_models/aesc_mesh_demo.keras`` (``export_keras``),
   and ``saved_models/aesc_mesh_demo.eval.json`` (the evaluation summary).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "aesc_mesh_demo"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE), help="output folder (default: saved_models/)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing exports")
    args = parser.parse_args(argv)

    import keras_skipae as ks
    from keras_skipae.data import mvtec_dataset, synthetic

    out = Path(args.out)
    size, category, n_train, n_val = 128, "mesh", 100, 20
    model_kwargs = {"input_shape": (size, size, 1), "filters": 8, "depth": 5, "bn_momentum": 0.9}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="keras_skipae_demo_") as scratch:
        root = synthetic.make_dataset(
            Path(scratch) / "data",
            categories=[category],
            image_size=size,
            n_train=n_train + n_val,
            n_test_good=16,
            n_test_defect=4,
            seed=args.seed,
        )
        good = mvtec_dataset(root, category, split="train", image_size=size)
        test = mvtec_dataset(root, category, split="test", image_size=size)
        run = ks.train(
            "aesc",
            good.take(n_train),
            model_kwargs=model_kwargs,
            epochs=args.epochs,
            batch_size=16,
            learning_rate=1e-3,
            seed=args.seed,
            run_dir=Path(scratch) / "run",
            tensorboard=False,
            verbose=2,
            data_config={
                "source": "keras_skipae.data.synthetic",
                "category": category,
                "image_size": size,
                "color_mode": "grayscale",
                "seed": args.seed,
            },
        )
        result = ks.evaluate(run.model, test, val_data=good.skip(n_train), progress=False)
    summary = {
        "command": "python saved_models/make_demo_model.py --overwrite",
        "model_kwargs": {
            k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()
        },
        "epochs": args.epochs,
        "stain_weight": run.config["training"]["stain_weight"],
        "final_val_loss": float(run.history["val_loss"][-1]),
        "threshold": result.threshold,
        "threshold_source": result.threshold_source,
        "image_auroc": result.image_auroc,
        "pixel_auroc": result.pixel_auroc,
        "aupro": result.aupro,
        "precision": result.precision,
        "recall": result.recall,
        "n_test": result.n_images,
        "settings": result.settings,
        "seconds": round(time.monotonic() - start, 1),
    }
    metadata = {
        "description": "Demo AESc (reduced width) trained on synthetic 'mesh' data",
        "made_by": summary["command"],
        "training": {"epochs": args.epochs, "n_train": n_train, "seed": args.seed},
        "threshold_source": "99th percentile of 20 held-out good images (evaluate val_data)",
        "test_metrics": {k: summary[k] for k in ("image_auroc", "pixel_auroc", "aupro")},
    }
    ks.export_saved_model(
        run.model,
        out / NAME,
        threshold=result.threshold,
        color_mode="grayscale",
        metadata=metadata,
        overwrite=args.overwrite,
    )
    ks.export_keras(run.model, out / f"{NAME}.keras", overwrite=args.overwrite)
    from keras_skipae import io_utils

    io_utils.write_json(out / f"{NAME}.eval.json", summary, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
