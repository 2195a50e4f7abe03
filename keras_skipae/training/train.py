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
  end; ``best.keras`` by validation loss with ``save_best=True``);
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
from keras_skipae.keras_metrics import PSNR, SSIM, Dice, IoU
from keras_skipae.models import AnomalyHeadModel, get_model
from keras_skipae.models.registry import MASKED
from keras_skipae.ops.tiling import check_tiling
from keras_skipae.runs import RunFolder, read_backup
from keras_skipae.training.callbacks.atomic_best_model import _AtomicBestModel, _save_model_atomic
from keras_skipae.training.callbacks.backup import RunBackup
from keras_skipae.training.callbacks.log_learning_rate import _LogLearningRate
from keras_skipae.training.callbacks.preview import ReconstructionPreview, SegmentationPreview
from keras_skipae.training.callbacks.schedule import CosineSchedule
from keras_skipae.training.callbacks.stop_on_non_finite import StopOnNonFinite
from keras_skipae.training.callbacks.time_limit import TimeLimit
from keras_skipae.training.pairs import (
    _check_stain_weight,
    _Data,
    _describe_corruption,
    _probe_batch,
    _resolve_data,
)
from keras_skipae.training.runtime import (
    _is_chief,
    _prepare_multi_worker,
    _strategy_name,
    _task_id,
    get_strategy,
    model_precision,
    precision_scope,
    resolve_jit_compile,
    resolve_precision,
)
from keras_skipae.training.segmentation import (
    check_output_matches_target,
    check_segmentation_arguments,
    check_task,
    resolve_loss,
    resolve_metrics,
    segmentation_data,
)


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


def _build_model(model, model_kwargs):
    if isinstance(model, keras.Model):
        if model_kwargs:
            raise ValueError(
                "`model_kwargs` only apply when `model` is a registry name or a builder. "
                f"Received: model={model.name!r}, model_kwargs={model_kwargs!r}"
            )
        return model
    if isinstance(model, str):
        return get_model(model, **(model_kwargs or {}))
    if callable(model):
        built = model(**(model_kwargs or {}))
        if not isinstance(built, keras.Model):
            raise ValueError(
                f"The model builder must return a keras.Model. Received: {type(built).__name__}"
            )
        return built
    raise ValueError(
        "`model` must be a keras.Model, a registry name ('ae', 'aesc', 'unet') or a "
        f"callable returning a keras.Model. Received: model={model!r}"
    )


def _model_description(model, model_kwargs, net) -> dict:
    name = model if isinstance(model, str) else net.name
    return {
        "name": name,
        "kwargs": io_utils.jsonable(dict(model_kwargs or {})),
        "params": int(net.count_params()),
    }


_NAMED_METRICS = {"psnr": PSNR, "ssim": SSIM, "iou": IoU, "dice": Dice}


def _metric_objects(metrics):
    out = []
    for m in metrics or ():
        if isinstance(m, str) and m in _NAMED_METRICS:
            out.append(_NAMED_METRICS[m]())
        else:
            out.append(m)
    return out


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


def _learns_masks(model) -> bool:
    """Whether ``model`` (a name or a model) trains on the corruption's masks too."""
    if isinstance(model, str):
        return model in MASKED
    return isinstance(model, AnomalyHeadModel)


SCHEDULES = ("auto", "cosine", "plateau", None)


def _resolve_schedule(schedule, time_limit):
    if schedule not in SCHEDULES:
        raise ValueError(
            f"`schedule` must be one of {list(SCHEDULES)}. Received: schedule={schedule!r}"
        )
    if schedule == "auto":
        return "cosine" if time_limit is not None else "plateau"
    return schedule


def _resolve_model_precision(model, precision) -> str:
    """The dtype policy to build in; a built model keeps its own (``"auto"``) or must match."""
    if not isinstance(model, keras.Model):
        return resolve_precision(precision)
    built = model_precision(model)
    if precision != "auto" and resolve_precision(precision) != built:
        raise ValueError(
            f"`precision` applies when train builds the model; {model.name!r} was built in "
            f"{built!r}. Pass a registry name or a builder, or precision='auto'. "
            f"Received: precision={precision!r}"
        )
    return built


def _check_float32_outputs(net, precision):
    """Under a mixed policy the outputs must stay float32 (the loss and scoring read them)."""
    outputs = getattr(net, "outputs", None) if precision != "float32" else None
    for out in tf.nest.flatten(outputs or []):
        if str(getattr(out, "dtype", "float32")) != "float32":
            raise ValueError(
                f"Under precision={precision!r} the model's outputs must be float32: build its "
                "last layer with dtype='float32' (the package's builders do). "
                f"Received: an output of dtype {out.dtype}"
            )


def _build_and_compile(
    model, model_kwargs, strat, loss_obj, metrics, learning_rate, jit, *, seed, precision
):
    keras.utils.set_random_seed(int(seed))
    with strat.scope():
        with precision_scope(precision):
            net = _build_model(model, model_kwargs)
        _check_float32_outputs(net, precision)
        _prepare_multi_worker(net, strat)
        optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
        if precision == "mixed_float16":
            # Explicit: Keras wraps it only when the model's own policy says so,
            # which a reloaded functional model's does not.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        net.compile(
            optimizer=optimizer, loss=loss_obj, metrics=_metric_objects(metrics), jit_compile=jit
        )
    applied = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
    if not math.isclose(applied, float(learning_rate), rel_tol=1e-6):  # pragma: no cover
        raise RuntimeError(
            f"The optimizer's learning rate is {applied}, not the requested {learning_rate}."
        )
    return net


def _run_config(
    model, model_kwargs, net, data, data_config, training_args, jit, strat, strategy, precision
):
    """The run's ``config.json``: what resuming compares and evaluation reads back."""
    data_desc = dict(
        data_config or {}, n_train=data.n_train, n_val=data.n_val, pairs_given=data.pairs_given
    )
    return {
        "model": _model_description(model, model_kwargs, net),
        "data": io_utils.jsonable(data_desc),
        "corruption": _describe_corruption(data.corruption),
        "training": io_utils.jsonable(training_args),
        "runtime": {
            "jit_compile": jit,
            "precision": precision,
            "strategy": _strategy_name(strategy),
            "replicas": int(strat.num_replicas_in_sync),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def _open_run(run_dir, config, chief, overwrite, resume, worker=0):
    """``(RunFolder or None, initial_epoch, resuming)``; the chief writes ``config.json``."""
    if run_dir is None:
        return None, 0, False
    run = RunFolder(run_dir)
    if not chief:
        state = read_backup(run.backup_dir / f"worker-{worker}") if resume else None
        return run, (int(state["epoch"]) if state else 0), False
    initial_epoch, resuming = run.clear_or_resume(config, overwrite=overwrite, resume=resume)
    io_utils.write_json(run.config_path, config)
    return run, initial_epoch, resuming


def _callbacks(
    run: RunFolder | None,
    data: _Data,
    *,
    chief: bool,
    worker: int,
    reduce_lr,
    schedule: str | None,
    learning_rate: float,
    steps: int | None,
    initial_step: int = 0,
    epochs: int | None = None,
    tensorboard: bool,
    preview_images: int,
    save_best: bool,
    resuming: bool,
    time_limit,
    time_clock: str,
    task: str = "reconstruction",
) -> list:
    """The built-in callbacks, in the order they run."""
    monitor = "val_loss" if data.val_pairs is not None else "loss"
    cbs: list = [StopOnNonFinite(epochs, backup_dir=run.backup_dir if run is not None else None)]
    if schedule == "plateau" and reduce_lr:
        kwargs = {"monitor": monitor, "factor": 0.5, "patience": 3, "min_lr": 1e-6, "verbose": 0}
        if isinstance(reduce_lr, dict):
            kwargs.update(reduce_lr)
        cbs.append(keras.callbacks.ReduceLROnPlateau(**kwargs))
    elif schedule == "cosine":
        if not time_limit and not steps:
            raise ValueError(
                "schedule='cosine' decays over the budget: pass `time_limit` or "
                "`steps_per_epoch` (batched pairs have no known length)."
            )
        budget = {"seconds": time_limit, "clock": time_clock} if time_limit else {"steps": steps}
        cbs.append(CosineSchedule(learning_rate, **budget, initial_step=initial_step))
    cbs.append(_LogLearningRate())
    if run is not None:
        if tensorboard and chief:
            probe_source = data.val_pairs if data.val_pairs is not None else data.train_pairs
            probe_x, probe_y = _probe_batch(probe_source, int(preview_images))
            if probe_x is not None:
                preview = SegmentationPreview if task == "segmentation" else ReconstructionPreview
                cbs.append(
                    preview(probe_x, probe_y, log_dir=run.logs_dir, image_dir=run.previews_dir)
                )
        if save_best and data.val_pairs is not None and chief:
            cbs.append(_AtomicBestModel(run.model_path(best=True), monitor="val_loss"))
        if chief:
            cbs.append(keras.callbacks.CSVLogger(str(run.history_path), append=resuming))
        backup = run.backup_dir if chief else run.backup_dir / f"worker-{worker}"
        # After the stateful callbacks. The chief removes its backup after model.keras
        # is written (_fit); another worker when its fit ends.
        cbs.append(RunBackup(backup, callbacks=list(cbs), delete_on_end=not chief))
    if time_limit is not None:
        cbs.append(TimeLimit(time_limit, clock=time_clock))
    return cbs


def _check_train_tiling(tile_size, tile_overlap) -> tuple[int, int] | None:
    if tile_size is None:
        if tile_overlap:
            raise ValueError(
                f"`tile_overlap` needs a `tile_size`. Received: tile_overlap={tile_overlap!r}"
            )
        return None
    return check_tiling(tile_size, tile_overlap)


def _check_tile_input(net, tiling) -> None:
    """A model trained on tiles must take ``tile_size x tile_size`` images."""
    if tiling is None:
        return
    shape = getattr(net, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4:
        if any(s is not None and s != tiling[0] for s in shape[1:3]):
            raise ValueError(
                f"A model trained on {tiling[0]}x{tiling[0]} tiles must take images of that "
                f"size (build it with input_shape=({tiling[0]}, {tiling[0]}, C)). Received: "
                f"a model with input_shape={shape}, tile_size={tiling[0]}"
            )


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
    segmentation model on (image, mask) pairs.

    With ``task="segmentation"`` the model learns masks: ``train_data`` yields the
    package's dicts with ``image`` and ``mask`` (as
    ``keras_skipae.data.mvtec_dataset(root, category, split="test")`` or
    :func:`keras_skipae.data.synthetic.labelled_dataset` give), unbatched
    ``(image [H, W, C], mask [H, W, K])`` tuples, or batched ``(image, mask)`` pairs
    used as they are. Nothing is corrupted; the loss defaults to ``"bce+dice"`` and
    the metrics to IoU and Dice; the model's output must have the masks' channels
    (``num_outputs=1`` for a binary mask, K with one-hot masks and a K-class loss).
    ``config.json`` records ``training.task`` (absent: reconstruction), and
    evaluation, export to a SavedModel and prediction refuse such a run folder: they
    score anomaly maps of reconstructions.

    Args:
        model: a ``keras.Model``, a registry name (``"ae"``, ``"aesc"``, ``"unet"``)
            built with ``model_kwargs``, or a callable returning a model. With a
            ``strategy`` it must be a name or a callable (built inside the scope).
        train_data: a ``tf.data.Dataset`` of **unbatched** clean images
            (``[H, W, C]`` tensors or the dicts of ``keras_skipae.data``), which
            are corrupted on the fly; or already **batched** ``(input, target)``
            pairs, used as they are (then ``corruption`` must be ``"auto"`` or None).
        val_data: the same kinds of dataset for validation (corrupted with a
            different seed). None: ``validation_split`` of the training images
            is held out (a seeded random split).
        model_kwargs: builder arguments when ``model`` is a name or a builder.
        epochs: total number of epochs (a resumed run continues up to it).
        learning_rate: Adam's initial learning rate (applied, and checked).
        loss: a name of :data:`keras_skipae.losses.LOSSES` or a ``keras.losses.Loss``;
            ``"auto"`` (or None): ``"mse"`` for reconstruction, ``"bce+dice"`` for
            segmentation. A package reconstruction loss with ``task="segmentation"``,
            or a mask loss (``"bce"``, ``"dice"``, ``"bce+dice"``, ``"focal"``) with
            ``task="reconstruction"``, raises a ``ValueError``.
        metrics: ``"psnr"``, ``"ssim"``, ``"iou"``, ``"dice"`` or Keras metrics;
            ``"auto"``: PSNR and SSIM for reconstruction, IoU and Dice
            (:mod:`keras_skipae.keras_metrics`) for segmentation.
        task: ``"reconstruction"`` (the default) or ``"segmentation"`` (see above).
        corruption: ``"auto"`` (:class:`keras_skipae.data.Stains` for image
            datasets), a corruption object, a name or serialized config for
            :func:`get_corruption` (``"stains"``, ``"scratches"``,
            ``"stains+scratches"``, ...), or
            None (learn the identity: a plain autoencoder recipe). With
            ``task="segmentation"``: ``"auto"`` or None (nothing is corrupted).
        stain_weight: loss weight of the corrupted pixels (the corruption's mask)
            relative to the clean ones, as a per-pixel ``sample_weight``; 1 weights
            all pixels alike (the paper's plain loss). Stains cover a few percent of
            an image, so the repair the model must learn is a small part of a plain
            loss; a larger weight puts it first. None: :data:`DEFAULT_STAIN_WEIGHT`
            (10) when training on corrupted images with one of the package's
            per-pixel losses (``"mse"``, ``"l1"``, ``"mse+ssim"``, ``"l1+ssim"``),
            else 1. An explicit weight other than 1 needs a corruption and a loss
            whose ``call`` gives per-pixel values ``[B, H, W]`` (not ``"ssim"``).
            Why 10: ``docs/decisions.md#stain-weight``. Must stay None with
            ``task="segmentation"``.
        batch_size: global batch size.
        validation_split: fraction held out when ``val_data`` is None (0: no validation).
        steps_per_epoch: batches per epoch; None: one pass over the training images.
        seed: seed of the split, the corruptions, the shuffling and the weights
            (``keras.utils.set_random_seed``).
        run_dir: the run folder, or None to write nothing (no resume then).
        jit_compile: ``"auto"`` (XLA on GPU only), True or False.
        precision: ``"auto"`` (mixed precision only on GPUs with tensor cores and
            CPUs with bfloat16 instructions, see
            :func:`~keras_skipae.training.resolve_precision`), ``"float32"``,
            ``"mixed_bfloat16"`` or ``"mixed_float16"``: the Keras dtype policy the
            model is built under. Outputs, losses, metrics and scoring stay
            float32. A built ``model`` keeps its own policy (then only
            ``"auto"`` or that policy is accepted). Stored in ``config.json``
            (``runtime.precision``).
        strategy: None/``"default"``, ``"mirrored"``, ``"multiworker"`` or a strategy.
        callbacks: extra Keras callbacks (run after the built-in ones).
        reduce_lr: ``ReduceLROnPlateau`` (factor 0.5, patience 3, on ``val_loss``)
            for the ``"plateau"`` schedule; a dict overrides its arguments; False
            turns it off.
        schedule: the learning-rate schedule. ``"auto"``: ``"cosine"`` with a
            ``time_limit``, else ``"plateau"``. ``"cosine"``: 5 % linear warm-up,
            then cosine decay to 1 % of ``learning_rate`` at the end of the budget
            (``time_limit`` seconds, else this call's epochs x steps), see
            :class:`~keras_skipae.training.callbacks.CosineSchedule`.
            ``"plateau"``: ``ReduceLROnPlateau`` (``reduce_lr``). None: constant.
            Why: ``docs/decisions.md#learning-rate-schedule``.
        tensorboard: write TensorBoard event files and preview PNGs to the run folder.
        preview_images: how many fixed validation images the previews show.
        save_best: also keep ``best.keras``, the model of the best ``val_loss``.
        time_limit: stop after this many seconds of training (see :class:`TimeLimit`).
        time_clock: ``"wall"`` or ``"cpu"``: the clock of ``time_limit``.
        overwrite: replace a run folder that holds a different run.
        resume: continue an interrupted run in ``run_dir`` (same configuration).
            False starts the run again from epoch 0.
        verbose: passed to ``fit`` (``"auto"``: a progress bar).
        data_config: JSON-able description of the data stored in ``config.json``
            (the CLI stores the data folder, category, image size, color mode).
        tile_size: train on random ``tile_size x tile_size`` crops of the training
            images (unbatched, full resolution, each at least that large) instead of
            the images themselves; the model must take images of that size. None:
            the images as they are. Stored in ``config.json`` (``training``).
        tile_overlap: the tiles' overlap when whole frames are scored later
            (evaluation, export, prediction); stored in ``config.json``, not used
            for training.
        deterministic: enable TensorFlow's op determinism
            (``tf.config.experimental.enable_op_determinism``) and seed Python,
            NumPy and TensorFlow: with a fixed ``epochs`` (no ``time_limit``) the
            same seed gives bit-identical weights, also after a resume. It is
            process-wide and cannot be switched off again, and it slows training
            (``docs/training.md#faults-resume-and-determinism``). Stored in ``config.json``
            (``runtime.deterministic``).

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
    schedule = _resolve_schedule(schedule, time_limit)
    task = check_task(task)
    loss_obj = resolve_loss(loss, task)
    metrics = resolve_metrics(metrics, task)
    tiling = _check_train_tiling(tile_size, tile_overlap)
    if task == "segmentation":
        check_segmentation_arguments(
            corruption=corruption,
            stain_weight=stain_weight,
            tile_size=tile_size,
            masked_model=_learns_masks(model),
        )
    else:
        _check_stain_weight(stain_weight, loss_obj, loss)
    jit = resolve_jit_compile(jit_compile, path="train")
    policy = _resolve_model_precision(model, precision)
    strat = get_strategy(strategy)
    if strategy not in (None, "default") and isinstance(model, keras.Model):
        raise ValueError(
            "With a distribution strategy the model must be built inside its scope: pass a "
            "registry name (with `model_kwargs`) or a builder callable, not a built model."
        )
    if task == "segmentation":
        data = segmentation_data(
            train_data,
            val_data,
            batch_size=int(batch_size),
            validation_split=float(validation_split),
            steps_per_epoch=steps_per_epoch,
            seed=int(seed),
        )
    else:
        data = _resolve_data(
            train_data,
            val_data,
            corruption=corruption,
            loss_obj=loss_obj,
            stain_weight=stain_weight,
            batch_size=int(batch_size),
            validation_split=float(validation_split),
            steps_per_epoch=steps_per_epoch,
            seed=int(seed),
            masks=_learns_masks(model),
            tile_size=tiling[0] if tiling else None,
        )
    net = _build_and_compile(
        model,
        model_kwargs,
        strat,
        loss_obj,
        metrics,
        learning_rate,
        jit,
        seed=int(seed),
        precision=policy,
    )
    _check_tile_input(net, tiling)
    check_output_matches_target(net, data.train_pairs, task)
    training_args = dict(
        epochs=int(epochs),
        learning_rate=float(learning_rate),
        loss=keras.saving.serialize_keras_object(loss_obj),
        stain_weight=float(data.stain_weight),
        batch_size=int(batch_size),
        validation_split=float(validation_split) if val_data is None else None,
        steps_per_epoch=data.steps_per_epoch,
        seed=int(seed),
        reduce_lr=reduce_lr,
        schedule=schedule,
        save_best=bool(save_best),
        time_limit=time_limit,
        time_clock=time_clock,
    )
    if tiling is not None:  # only then, so that older runs still resume
        training_args.update(tile_size=tiling[0], tile_overlap=tiling[1])
    if task != "reconstruction":  # likewise: no task recorded means reconstruction
        training_args.update(task=task)
    config = _run_config(
        model, model_kwargs, net, data, data_config, training_args, jit, strat, strategy, policy
    )
    config["runtime"]["deterministic"] = bool(deterministic)
    chief = _is_chief(strat)
    run, initial_epoch, resuming = _open_run(
        run_dir, config, chief, overwrite, resume, worker=_task_id(strat)
    )
    if initial_epoch and not data.pairs_given:
        # The training stream is one repeated, seeded sequence read across epochs: a
        # resumed run continues it after the batches the finished epochs used.
        data.train_pairs = data.train_pairs.skip(initial_epoch * data.steps_per_epoch)
    cbs = _callbacks(
        run,
        data,
        chief=chief,
        worker=_task_id(strat),
        reduce_lr=reduce_lr,
        schedule=schedule,
        learning_rate=float(learning_rate),
        steps=int(epochs) * (data.steps_per_epoch or 0),
        initial_step=initial_epoch * (data.steps_per_epoch or 0),
        epochs=int(epochs),
        tensorboard=tensorboard,
        preview_images=preview_images,
        save_best=save_best,
        resuming=resuming,
        time_limit=time_limit,
        time_clock=time_clock,
        task=task,
    )
    return _fit(
        net, data, run, cbs + list(callbacks), int(epochs), verbose, chief, config, initial_epoch
    )


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
