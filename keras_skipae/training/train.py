"""Training: thin helpers around ``model.fit`` with a run folder that can resume.

:func:`train` compiles a model with Adam at the requested learning rate (really
applied: the reference code configured 0.01 and silently trained at Keras'
default), a reconstruction loss (:mod:`keras_skipae.losses`) and PSNR / SSIM
metrics, corrupts clean training images on the fly (stains by default, the
recipe of Collin & De Vleeschouwer, ICPR 2020) with the corrupted pixels
weighted 10x in the loss (``stain_weight``), holds out a validation split,
and trains with:

* ``ReduceLROnPlateau`` on the validation loss;
* a kill-safe backup every epoch in ``run_dir/backup``
  (:class:`~keras_skipae.training.callbacks.backup.RunBackup`): a killed run
  (even by SIGKILL, even during a write), started again with the same
  arguments, resumes after its last finished epoch, and with
  ``deterministic=True`` ends with the same weights as an uninterrupted run;
  ``model.keras`` is written before the backup is removed;
* a stop at the first non-finite loss (:class:`NonFiniteLossError`, naming the
  epoch and the step); non-finite weights are never saved, and the backup of
  the last finite epoch stays for a resume;
* ``history.csv`` (appended on resume), ``config.json`` (model, data,
  corruption, training arguments), ``model.keras`` (written atomically at the
  end; ``best.keras`` by validation loss with ``save_best=True``; a model with an
  anomaly head keeps ``best.keras`` by ``val_head_signal`` and ends with its weights,
  ``docs/decisions.md#head-early-stopping``);
* TensorBoard event files in ``run_dir/logs`` (scalars and a grid of
  reconstructions of a few fixed validation images every epoch, written with
  TensorFlow's core summary ops, so they work without the ``tensorboard``
  package) and the same grids as PNG files in ``run_dir/previews``.

XLA: ``jit_compile="auto"`` turns XLA on when a GPU is present and off on CPU,
where XLA convolutions train several times slower (``docs/decisions.md#xla-auto``).
``True`` / ``False`` force it.

Precision: ``precision="auto"`` builds the model under a mixed-precision dtype
policy only where it pays (GPUs with tensor cores, CPUs with bfloat16
instructions; ``docs/decisions.md#mixed-precision-auto``), else in float32;
``"float32"``, ``"mixed_bfloat16"`` and ``"mixed_float16"`` force one. The
model's outputs, the losses, the metrics and the scoring stay float32; with
``"mixed_float16"`` Adam is wrapped in a ``LossScaleOptimizer``.

Distribution: ``strategy=None`` / ``"default"``, ``"mirrored"``
(``tf.distribute.MirroredStrategy``, all local GPUs), ``"multiworker"``
(``tf.distribute.MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``) or a
``tf.distribute.Strategy``. The model is built and compiled inside
``strategy.scope()``, so with a strategy pass a registry name (+ ``model_kwargs``)
or a zero-argument builder instead of a built model. ``batch_size`` is the
global batch size. Only the chief worker writes the run folder.

Tiles: with ``tile_size=T`` the model learns from random ``T x T`` crops of the
full-resolution good images instead of resized images (load them with
``image_size=None``; :func:`keras_skipae.data.random_crops`, seeded, new crops every
epoch); the model's input is then ``T x T``, and ``tile_size`` / ``tile_overlap`` are
stored in ``config.json`` so that evaluation, export and prediction score whole frames
tile by tile (:func:`keras_skipae.scoring.compute_tiled`).

Segmentation: ``task="segmentation"`` trains on ``(image, mask)`` pairs instead (no
corruption; loss ``"bce+dice"``, metrics IoU and Dice by default; previews show the
predicted masks; :mod:`keras_skipae.training.segmentation`). ``config.json`` records
``training.task``; a config without it is a reconstruction run.

BatchNorm: the moving statistics of BatchNormalization (momentum 0.99 by
default) lag behind the weights in short runs; validation metrics are computed
in inference mode, so trust ``val_loss`` rather than ``loss``, and build models
with ``bn_momentum=0.9`` for runs of a few hundred steps, as the CLI, the demo
and the benchmark do (``docs/decisions.md#bn-momentum``).

Example:
    >>> import keras_skipae as ks
    >>> good = ks.data.mvtec_dataset("data/synthetic", "grid", split="train", image_size=128)
    >>> run = ks.train("aesc", good, model_kwargs={"input_shape": (128, 128, 1)},
    ...                epochs=20, run_dir="runs/grid_aesc")
    >>> run.model, run.history["val_loss"][-1]
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae.ops.tiling import check_tiling
from keras_skipae.runs import (
    DataConfig,
    ModelConfig,
    RunConfig,
    RunFolder,
    RuntimeConfig,
    TrainingConfig,
    read_backup,
)
from keras_skipae.training.build import (
    build_and_compile,
    check_strategy_model,
    check_tile_input,
)
from keras_skipae.training.build import resolve_model_precision as _resolve_model_precision
from keras_skipae.training.callbacks.atomic_best_model import _save_model_atomic
from keras_skipae.training.fit_callbacks import builtin_callbacks, resolve_schedule
from keras_skipae.training.pairs import _describe_corruption
from keras_skipae.training.runtime import (
    _is_chief,
    _strategy_name,
    _task_id,
    get_strategy,
    resolve_jit_compile,
)
from keras_skipae.training.task import learns_masks
from keras_skipae.training.tasks import get_task


@dataclass
class TrainingRun:
    """What :func:`train` returns.

    Attributes:
        model: the trained ``keras.Model`` (final weights).
        history: per-epoch logs of the whole run (resumed epochs included), as
            ``{"epoch": [...], "loss": [...], "val_loss": [...], ...}``.
        run_dir: the run folder, or None.
        config: the configuration written to ``config.json``.
        initial_epoch: the epoch this call started from (> 0 after a resume).
        seconds: wall time of this call's ``fit``.
    """

    model: Any
    history: dict = field(default_factory=dict)
    run_dir: Path | None = None
    config: dict = field(default_factory=dict)
    initial_epoch: int = 0
    seconds: float = 0.0


def _check_arguments(train_data, val_data, epochs, learning_rate, batch_size, validation_split):
    if not isinstance(train_data, tf.data.Dataset):
        raise ValueError(
            f"`train_data` must be a tf.data.Dataset. Received: {type(train_data).__name__}"
        )
    if val_data is not None and not isinstance(val_data, tf.data.Dataset):
        raise ValueError(
            f"`val_data` must be a tf.data.Dataset or None. Received: {type(val_data).__name__}"
        )
    if int(epochs) < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs!r}")
    if not 0 < float(learning_rate) < math.inf:
        raise ValueError(
            f"`learning_rate` must be a finite number > 0. Received: learning_rate={learning_rate!r}"
        )
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size!r}")
    if not 0 <= float(validation_split) < 1:
        raise ValueError(
            f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}"
        )


def _run_config(model, model_kwargs, net, data, data_config, training, runtime) -> RunConfig:
    """The run's ``config.json``: what resuming compares and evaluation reads back."""
    return RunConfig(
        model=ModelConfig(
            name=model if isinstance(model, str) else net.name,
            kwargs=io_utils.jsonable(dict(model_kwargs or {})),
            params=int(net.count_params()),
        ),
        data=DataConfig.describe(
            data_config, n_train=data.n_train, n_val=data.n_val, pairs_given=data.pairs_given
        ),
        corruption=_describe_corruption(data.corruption),
        training=TrainingConfig(**io_utils.jsonable(training)),
        runtime=RuntimeConfig(**runtime),
    )


def _training_section(data, *, loss, validation_split, tiling, **args) -> dict:
    """``config.json``'s ``training`` section: train's arguments as resolved."""
    return dict(
        epochs=int(args["epochs"]),
        learning_rate=float(args["learning_rate"]),
        loss=keras.saving.serialize_keras_object(loss),
        stain_weight=float(data.stain_weight),
        batch_size=int(args["batch_size"]),
        validation_split=None if validation_split is None else float(validation_split),
        steps_per_epoch=data.steps_per_epoch,
        seed=int(args["seed"]),
        reduce_lr=args["reduce_lr"],
        schedule=args["schedule"],
        save_best=bool(args["save_best"]),
        time_limit=args["time_limit"],
        time_clock=args["time_clock"],
        tile_size=tiling[0] if tiling else None,
        tile_overlap=tiling[1] if tiling else 0,
        task=args["task"],
    )


def _runtime(jit, strat, strategy, precision, deterministic) -> dict:
    """``config.json``'s ``runtime`` section."""
    return {
        "jit_compile": jit,
        "precision": precision,
        "strategy": _strategy_name(strategy),
        "replicas": int(strat.num_replicas_in_sync),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "deterministic": bool(deterministic),
    }


def _open_run(run_dir, config: RunConfig, chief, overwrite, resume, worker=0):
    """``(RunFolder or None, initial_epoch, resuming)``; the chief writes ``config.json``."""
    if run_dir is None:
        return None, 0, False
    run = RunFolder(run_dir)
    if not chief:
        state = read_backup(run.backup_dir / f"worker-{worker}") if resume else None
        return run, (int(state["epoch"]) if state else 0), False
    initial_epoch, resuming = run.clear_or_resume(config, overwrite=overwrite, resume=resume)
    io_utils.write_json(run.config_path, config.to_dict())
    return run, initial_epoch, resuming


def train(
    model,
    train_data,
    *,
    val_data=None,
    model_kwargs: dict | None = None,
    epochs: int = 20,
    learning_rate: float = 1e-3,
    loss="auto",
    metrics: Sequence | str = "auto",
    task: str = "reconstruction",
    corruption="auto",
    stain_weight: float | None = None,
    batch_size: int = 16,
    validation_split: float = 0.1,
    steps_per_epoch: int | None = None,
    seed: int = 0,
    run_dir=None,
    jit_compile="auto",
    precision: str = "auto",
    strategy=None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    reduce_lr: bool | dict = True,
    schedule: str | None = "auto",
    tensorboard: bool = True,
    preview_images: int = 4,
    save_best: bool = False,
    time_limit: float | None = None,
    time_clock: str = "wall",
    overwrite: bool = False,
    resume: bool = True,
    verbose="auto",
    data_config: dict | None = None,
    tile_size: int | None = None,
    tile_overlap: int = 0,
    deterministic: bool = False,
) -> TrainingRun:
    """Trains a reconstruction model on (corrupted input, clean target) pairs, or a
    segmentation model on (image, mask) pairs (``task="segmentation"``: nothing is
    corrupted, loss ``"bce+dice"``, metrics IoU and Dice; ``docs/training.md``).

    Args:
        model: a ``keras.Model``, a registry name (``"ae"``, ``"aesc"``, ``"unet"``)
            built with ``model_kwargs``, or a callable returning a model (with a
            ``strategy``: a name or a callable, built inside its scope).
        train_data: a ``tf.data.Dataset`` of **unbatched** clean images (``[H, W, C]``
            or the dicts of ``keras_skipae.data``), corrupted on the fly, or of
            **batched** ``(input, target)`` pairs used as they are. Segmentation:
            unbatched dicts with ``image`` and ``mask``, ``(image, mask)`` tuples, or
            batched ``(image, mask)`` pairs.
        val_data: the same kinds of dataset for validation; None: ``validation_split``
            of the training images is held out (a seeded split).
        model_kwargs: builder arguments when ``model`` is a name or a builder.
        epochs: total number of epochs (a resumed run continues up to it).
        learning_rate: Adam's initial learning rate (applied, and checked).
        loss: a name of :data:`keras_skipae.losses.LOSSES` or a ``keras.losses.Loss``;
            ``"auto"`` / None: the task's default. A package loss of the other task
            raises a ``ValueError``.
        metrics: ``"psnr"``, ``"ssim"``, ``"iou"``, ``"dice"`` or Keras metrics;
            ``"auto"``: the task's (PSNR and SSIM; IoU and Dice).
        task: ``"reconstruction"``, ``"segmentation"`` or a
            :class:`~keras_skipae.training.task.Task` (what differs between them: data,
            default loss and metrics, previews). Evaluation, SavedModel export and
            prediction refuse a segmentation run.
        corruption: ``"auto"`` (stains for image datasets), a corruption object, a name
            or serialized config (:func:`keras_skipae.data.get`, e.g. ``"stains+scratches"``), or None (learn the
            identity). Segmentation: ``"auto"`` or None.
        stain_weight: loss weight of the corrupted pixels relative to the clean ones
            (a per-pixel ``sample_weight``; needs a corruption and a per-pixel loss).
            None: :data:`DEFAULT_STAIN_WEIGHT` with a corruption and a per-pixel
            package loss, else 1 (``docs/decisions.md#stain-weight``). Segmentation: None.
        batch_size: global batch size.
        validation_split: fraction held out when ``val_data`` is None (0: no validation).
        steps_per_epoch: batches per epoch; None: one pass over the training images.
        seed: seed of the split, the corruptions, the shuffling and the weights.
        run_dir: the run folder, or None to write nothing (no resume then).
        jit_compile: ``"auto"`` (XLA on GPU only), True or False.
        precision: ``"auto"``, ``"float32"``, ``"mixed_bfloat16"`` or
            ``"mixed_float16"``: the dtype policy the model is built under
            (:func:`~keras_skipae.training.resolve_precision`); a built ``model`` keeps
            its own. Outputs, losses, metrics and scoring stay float32.
        strategy: None/``"default"``, ``"mirrored"``, ``"multiworker"`` or a strategy.
        callbacks: extra Keras callbacks (run after the built-in ones).
        reduce_lr: ``ReduceLROnPlateau``'s arguments for the ``"plateau"`` schedule
            (True: factor 0.5, patience 3; a dict overrides them; False: off).
        schedule: ``"auto"`` (``"cosine"`` with a ``time_limit``, else ``"plateau"``),
            ``"cosine"`` (warm-up, then cosine decay over the budget,
            :class:`~keras_skipae.training.callbacks.CosineSchedule`), ``"plateau"`` or
            None (constant); ``docs/decisions.md#learning-rate-schedule``.
        tensorboard: write TensorBoard event files and preview PNGs to the run folder.
        preview_images: how many fixed validation images the previews show.
        save_best: also keep ``best.keras``, the model of the best ``val_loss`` (a model
            with an anomaly head always keeps it, by ``val_head_signal``).
        time_limit: stop after this many seconds of training (see :class:`TimeLimit`).
        time_clock: ``"wall"`` or ``"cpu"``: the clock of ``time_limit``.
        overwrite: replace a run folder that holds a different run.
        resume: continue an interrupted run in ``run_dir`` (same configuration);
            False starts it again from epoch 0.
        verbose: passed to ``fit`` (``"auto"``: a progress bar).
        data_config: JSON-able description of the data stored in ``config.json``
            (the CLI stores the data folder, category, image size, colour mode, split).
        tile_size: train on random ``tile_size x tile_size`` crops of the (unbatched,
            full-resolution) training images; the model must take that size.
        tile_overlap: the tiles' overlap when whole frames are scored later (stored
            in ``config.json``, not used for training).
        deterministic: enable TensorFlow's op determinism and seed Python, NumPy and
            TensorFlow: the same seed gives bit-identical weights, also after a resume
            (process-wide, slower; ``docs/training.md#faults-resume-and-determinism``).

    Returns:
        A :class:`TrainingRun`.

    Raises:
        FileExistsError: ``run_dir`` holds a different run, or a finished one,
            and ``overwrite`` is False.
        NonFiniteLossError: the loss (or the weights) became NaN or infinite.
        ValueError: bad arguments (named in the message).
    """
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(int(seed))
    _check_arguments(train_data, val_data, epochs, learning_rate, batch_size, validation_split)
    schedule = resolve_schedule(schedule, time_limit)
    job = get_task(task)
    loss_obj, metrics = job.resolve_loss(loss), job.resolve_metrics(metrics)
    tiling = check_tiling(tile_size, tile_overlap)
    job.check_arguments(model, corruption, stain_weight, tile_size, loss_obj, loss)
    jit = resolve_jit_compile(jit_compile, path="train")
    policy = _resolve_model_precision(model, precision)
    strat = get_strategy(strategy)
    check_strategy_model(strategy, model)
    data = job.data(
        train_data,
        val_data,
        model=model,
        corruption=corruption,
        loss_obj=loss_obj,
        stain_weight=stain_weight,
        batch_size=int(batch_size),
        validation_split=float(validation_split),
        steps_per_epoch=steps_per_epoch,
        seed=int(seed),
        tile_size=tiling[0] if tiling else None,
    )
    net = build_and_compile(
        model, model_kwargs, strat, loss_obj, metrics, learning_rate, jit, int(seed), policy
    )
    check_tile_input(net, tiling)
    job.check_output(net, data.train_pairs)
    training = _training_section(
        data,
        epochs=epochs,
        learning_rate=learning_rate,
        loss=loss_obj,
        batch_size=batch_size,
        validation_split=validation_split if val_data is None else None,
        seed=seed,
        reduce_lr=reduce_lr,
        schedule=schedule,
        save_best=save_best,
        time_limit=time_limit,
        time_clock=time_clock,
        tiling=tiling,
        task=job.name,
    )
    runtime = _runtime(jit, strat, strategy, policy, deterministic)
    config = _run_config(model, model_kwargs, net, data, data_config, training, runtime)
    chief, worker = _is_chief(strat), _task_id(strat)
    run, initial_epoch, resuming = _open_run(run_dir, config, chief, overwrite, resume, worker)
    if initial_epoch and not data.pairs_given:
        # The training stream is one repeated, seeded sequence read across epochs: a
        # resumed run continues it after the batches the finished epochs used.
        data.train_pairs = data.train_pairs.skip(initial_epoch * data.steps_per_epoch)
    cbs = builtin_callbacks(
        run,
        data,
        job,
        chief=chief,
        worker=worker,
        reduce_lr=reduce_lr,
        schedule=schedule,
        learning_rate=float(learning_rate),
        epochs=int(epochs),
        initial_epoch=initial_epoch,
        tensorboard=tensorboard,
        preview_images=preview_images,
        save_best=save_best,
        head=learns_masks(net),
        resuming=resuming,
        time_limit=time_limit,
        time_clock=time_clock,
    )
    cbs += list(callbacks)
    return _fit(net, data, run, cbs, int(epochs), verbose, chief, config.to_dict(), initial_epoch)


def _fit(net, data, run, cbs, epochs, verbose, chief, config, initial_epoch) -> TrainingRun:
    """Runs ``fit``; the chief saves ``model.keras`` atomically and reads the whole history."""
    start = time.monotonic()
    history = net.fit(
        data.train_pairs,
        validation_data=data.val_pairs,
        epochs=epochs,
        steps_per_epoch=data.steps_per_epoch,
        callbacks=cbs,
        shuffle=False,  # the pipelines shuffle
        verbose=verbose,
    )
    seconds = time.monotonic() - start
    if run is not None and chief:
        _save_model_atomic(net, run.model_path())
        run.discard_backup()  # only now: a kill before this line resumes from it
        full_history = run.history()
    else:
        full_history = dict(history.history, epoch=list(history.epoch))
    return TrainingRun(
        model=net,
        history=full_history,
        run_dir=run.path if run is not None else None,
        config=config,
        initial_epoch=initial_epoch,
        seconds=seconds,
    )
