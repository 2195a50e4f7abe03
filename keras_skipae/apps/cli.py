"""The ``keras-skipae`` commands: one ``_run_<name>(args)`` per subcommand.

The launcher (the top-level package ``keras_skipae_cli``) parses and checks the
command line without TensorFlow, then imports this module and calls
``COMMANDS[<name>](args)``; each returns an exit code. Errors raised here print one line
and exit with code 1 (``--debug`` shows the traceback). The arguments of each command
are in ``keras_skipae_cli/parser.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _run_synth(args):
    from keras_skipae.apps import synth_preview
    from keras_skipae.data import synthetic

    root = synthetic.make_dataset(
        args.out,
        categories=args.categories,
        image_size=args.image_size,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect=args.n_test_defect,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"wrote {root} ({', '.join(args.categories or synthetic.list_categories())})")
    if args.preview:
        for path in synth_preview.preview(
            root, categories=args.categories, image_size=args.image_size, seed=args.seed
        ):
            print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- discrepancy
# (the logic lives in keras_skipae.apps.workflows.compare_runs)


def _run_discrepancy(args):
    from keras_skipae.apps import workflows

    info = workflows.compare_runs(
        args.run_a,
        args.run_b,
        data_root=args.data,
        category=args.category,
        n_probes=args.n_probes,
        seed=args.seed,
        out_dir=args.out,
        overwrite=args.overwrite,
        best=args.best,
    )
    a, b = info["labels"]
    print(
        f"median cosine similarity clean vs stained, {args.n_probes} probe pairs "
        f"({info['probes'].get('source')} {info['probes'].get('category')}):"
    )
    print(f"{'layer':16s}{'h x w':>10s}{a[:18]:>20s}{b[:18]:>20s}")
    for name in info["layers"]:
        h, w = info["shapes"][name][:2]
        print(
            f"{name:16s}{f'{h}x{w}':>10s}{info['medians'][a][name]:20.4f}"
            f"{info['medians'][b][name]:20.4f}"
        )
    t = info["trend"]
    print(
        f"paper's trend (B falls through the decoder and ends below A): "
        f"{'yes' if t['reproduced'] else 'no'}"
    )
    print(f"wrote {info['out_dir']}")
    return 0


# --------------------------------------------------------------------------- train / evaluate / demo
# (the logic lives in keras_skipae.training, keras_skipae.evaluation and apps.demo)


def _model_kwargs(args, model_name, input_shape, segmentation) -> dict:
    """The builder arguments of ``keras-skipae train``'s model options."""
    model_kwargs = {"input_shape": input_shape, "bn_momentum": args.bn_momentum}
    if segmentation and model_name == "unet":
        model_kwargs["num_outputs"] = 1  # a binary mask
    if args.encoder is not None:
        model_kwargs["encoder"] = args.encoder
        if args.encoder_weights is not None:
            model_kwargs["encoder_weights"] = args.encoder_weights
        if args.freeze_encoder:
            model_kwargs["freeze_encoder"] = True
    if args.filters is not None:
        model_kwargs["filters"] = args.filters
    if args.depth is not None:
        model_kwargs["depth"] = args.depth
    for key in ("skips", "skip_scale", "skip_dropout", "dropout", "head_scale"):  # launcher-parsed
        if getattr(args, key, None) is not None:
            model_kwargs[key] = getattr(args, key)
    return model_kwargs


def _run_train(args):
    from keras_skipae import data, io_utils, training
    from keras_skipae.training.task import learns_masks
    from keras_skipae.training.tasks import get_task

    task = get_task(args.task)
    if args.strategy == "multiworker":  # before any TF op (loading the data runs some)
        training.get_strategy("multiworker")
    # With --tile-size the model takes tiles, cropped from the images at full resolution.
    size = args.tile_size or args.image_size
    channels = io_utils.channels_for(args.color_mode)
    segmentation = task.name == "segmentation"
    model_name = args.model or ("unet" if segmentation else "aesc")
    model_kwargs = _model_kwargs(args, model_name, [size, size, channels], segmentation)
    # Segmentation learns from the test split: its defective images have masks.
    split = "test" if segmentation else "train"
    images = data.mvtec_dataset(
        args.data,
        args.category,
        split=split,
        image_size=None if args.tile_size else size,
        color_mode=args.color_mode,
        max_pixels=args.max_pixels,
    )
    corruption = None if args.corruption.lower() == "none" else args.corruption
    data_config = {
        "root": str(Path(args.data).resolve()),  # evaluate may run elsewhere
        "category": args.category,
        "image_size": None if args.tile_size else size,  # tiles: full resolution
        "color_mode": args.color_mode,
        "split": split,  # RunConfig leaves out "train", the default
    }
    run = training.train(
        model_name,
        images,
        model_kwargs=model_kwargs,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.lr,
        loss=args.loss,
        task=task.name,
        corruption=corruption,
        stain_weight=args.stain_weight,
        batch_size=args.batch_size,
        validation_split=args.val_split,
        seed=args.seed,
        run_dir=args.out,
        jit_compile="auto" if args.jit is None else args.jit,
        precision=args.precision,
        strategy=args.strategy,
        time_limit=args.time_limit,
        schedule=None if args.schedule == "none" else args.schedule,
        save_best=args.save_best,
        overwrite=args.overwrite,
        resume=not args.no_resume,
        verbose=0 if args.quiet else "auto",
        data_config=data_config,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap if args.tile_size else 0,
        deterministic=args.deterministic,
    )
    h = run.history
    last = {k: h[k][-1] for k in task.reported if h.get(k)}
    print(
        f"trained {model_name} for {len(h.get('epoch', []))} epochs in {run.seconds:.0f} s: "
        + ", ".join(f"{k} {v:.5f}" for k, v in last.items())
    )
    if segmentation:
        print(
            f"run folder: {run.run_dir}  (a segmentation model: load {run.run_dir}/model.keras "
            "with keras_skipae.load_model; evaluate does not apply)"
        )
    else:
        # a model with a head is scored with its learned map (docs/decisions.md#anomaly-head)
        learned = " --map learned" if learns_masks(run.model) else ""
        print(f"run folder: {run.run_dir}  (next: keras-skipae evaluate {run.run_dir}{learned})")
    return 0


def _scoring_config(**settings):
    """A ScoringConfig from the CLI's options (None where the user set none)."""
    from keras_skipae.scoring import ScoringConfig

    chosen = {k: v for k, v in settings.items() if v is not None}
    return ScoringConfig(**chosen) if chosen else None


def _run_evaluate(args):
    from keras_skipae.apps import workflows

    run = Path(args.run)
    result, out = workflows.evaluate_run(
        run,
        data_root=args.data,
        category=args.category,
        out_dir=args.out,
        scoring=_scoring_config(map=args.map),
        best=args.best,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        max_pixels=args.max_pixels,
    )
    print(f"{run}\n{result.summary()}")
    print(f"wrote {out}")
    return 0


def _run_demo(args):
    from keras_skipae.apps import demo

    demo.run_demo(
        args.out,
        quick=args.quick,
        category=args.category,
        minutes_per_model=args.minutes_per_model,
        overwrite=args.overwrite,
        verbose=0 if args.quiet else 1,
    )
    return 0


# --------------------------------------------------------------------------- export
# (the logic lives in keras_skipae.apps.workflows.export_run)


def _run_export(args):
    from keras_skipae.apps import workflows

    info = workflows.export_run(
        args.run,
        args.out,
        format=args.format,
        threshold=args.threshold,  # a float or 'eval' (keras_skipae_cli.checks)
        scoring=_scoring_config(map=args.map, smoothing=args.smoothing, score=args.score),
        best=args.best,
        overwrite=args.overwrite,
        quantization=args.quantization,
        calibration=args.calibration,
        batch_size=args.batch_size,
    )
    if info["format"] == "keras":
        print(
            f"wrote {info['path']} (load with keras.models.load_model(path, safe_mode=True) "
            "after `import keras_skipae.models`)"
        )
        return 0
    s = info["settings"]
    t = info["threshold"]
    print(
        f"wrote {info['path']}: map={s['map']}, smoothing={s['smoothing']:g}, "
        f"score={s['score']}, threshold="
        + (f"{t:.6g} ({info['threshold_source']})" if t is not None else "none")
    )
    if info["format"] == "saved_model":
        print(
            "signatures: serving_default (float32 in [0, 1]), serving_uint8, reconstruct, "
            "reconstruct_uint8; settings: assets/keras_skipae.json"
        )
    else:
        print(
            f"{info['format']} file, verified in its runtime in a fresh process; "
            f"settings: {info['path'].name}.json"
        )
    if info["hint"]:
        print(f"note: {info['hint']}")
    return 0


# --------------------------------------------------------------------------- predict
# (the logic lives in keras_skipae.apps.predict and keras_skipae.inference)


def _run_predict(args):
    from keras_skipae.apps import predict

    info = predict.predict_to_folder(
        args.model,
        args.inputs,
        args.out,
        threshold=args.threshold,  # a float or None (keras_skipae_cli.checks)
        save_maps=args.save_maps,
        overlay=args.overlay,
        batch_size=args.batch_size,
        best=args.best,
        overwrite=args.overwrite,
        fail_on_anomaly=args.fail_on_anomaly,
        progress=not args.quiet,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        max_pixels=args.max_pixels,
    )
    for note in info["notes"]:
        print(f"note: {note}")
    if info["resumed"]:
        print(f"resumed an interrupted run after {info['resumed']} of {info['n']} rows")
    t = info["threshold"]
    threshold = (
        f"threshold {t:.6g} ({info['threshold_source']})"
        if t is not None
        else ("no threshold: no decisions")
    )
    print(
        f"scored {info['n'] - info['n_errors']} of {info['n']} images in "
        f"{info['seconds']:.1f} s: {info['n_anomalous']} anomalous, {info['n_normal']} "
        f"normal, {info['n_errors']} unreadable; {threshold}"
    )
    if info["top"]:
        print(f"top {len(info['top'])} by score:")
        for score, decision, path in info["top"]:
            print(f"  {score:10.6g}  {decision or '-':9s}  {path}")
    print(f"wrote {info['csv']} (raw paths: {info['paths'].name})")
    if not args.fail_on_anomaly:
        return 0
    if info["n_anomalous"]:
        return 3
    scored, least = info["n"] - info["n_errors"], 1 if args.min_scored is None else args.min_scored
    if scored < least:
        print(
            f"keras-skipae predict: error: --fail-on-anomaly scored {scored} image(s), fewer "
            f"than --min-scored {least}: nothing to pass the gate on.",
            file=sys.stderr,
        )
        return 4
    return 0


#: subcommand name -> its function (called by the launcher with the parsed arguments)
COMMANDS = {
    "synth": _run_synth,
    "discrepancy": _run_discrepancy,
    "train": _run_train,
    "evaluate": _run_evaluate,
    "demo": _run_demo,
    "export": _run_export,
    "predict": _run_predict,
}
