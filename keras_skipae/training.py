"""Training: thin helpers around ``model.fit`` with a run folder that can resume.

:func:`train` compiles a model with Adam at the requested learning rate (really
applied: the reference code configured 0.01 and silently trained at Keras'
default), a reconstruction loss (:mod:`keras_skipae.losses`) and PSNR / SSIM
metrics, corrupts clean training images on the fly (stains by default, the
recipe of Collin & De Vleeschouwer, ICPR 2020) with the corrupted pixels
weighted 10x in the loss (``stain_weight``), holds out a validation split,
and trains with:

* ``ReduceLROnPlateau`` on the validation loss;
* ``BackupAndRestore`` every epoch in ``run_dir/backup``: a killed run, started
  again with the same arguments, resumes after its last finished epoch;
* ``history.csv`` (appended on resume), ``config.json`` (model, data,
  corruption, training arguments), ``model.keras`` (written atomically at the
  end; ``best.keras`` by validation loss with ``save_best=True``);
* TensorBoard event files in ``run_dir/logs`` (scalars and a grid of
  reconstructions of a few fixed validation images every epoch, written with
  TensorFlow's core summary ops, so they work without the ``tensorboard``
  package) and the same grids as PNG files in ``run_dir/previews``.

XLA: ``jit_compile="auto"`` turns XLA on when a GPU is present and off on CPU,
where TF 2.21's XLA convolutions are several times slower (AESc, 128x128, batch
16 on a 2-core CPU: ~6 img/s with XLA, ~47 img/s without). ``True`` / ``False``
force it. (Keras' own ``jit_compile="auto"`` would turn XLA on for the CPU too.)

Distribution: ``strategy=None`` / ``"default"``, ``"mirrored"``
(``tf.distribute.MirroredStrategy``, all local GPUs), ``"multiworker"``
(``tf.distribute.MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``) or a
``tf.distribute.Strategy``. The model is built and compiled inside
``strategy.scope()``, so with a strategy pass a registry name (+ ``model_kwargs``)
or a zero-argument builder instead of a built model. ``batch_size`` is the
global batch size. Only the chief worker writes the run folder.

BatchNorm: the moving statistics of BatchNormalization (momentum 0.99 by
default) lag behind the weights in short runs. Measured here: after ~150 steps
an AESc's inference-mode reconstruction error was 10x its training loss.
Validation metrics are computed in inference mode, so trust ``val_loss`` rather
than ``loss``, and build models with ``bn_momentum=0.9`` for runs of a few
hundred steps (the CLI, the demo and the benchmark do).

Example:
    >>> import keras_skipae as ks
    >>> good = ks.data.mvtec_dataset("data/synthetic", "grid", split="train", image_size=128)
    >>> run = ks.train("aesc", good, model_kwargs={"input_shape": (128, 128, 1)},
    ...                epochs=20, run_dir="runs/grid_aesc")
    >>> run.model, run.history["val_loss"][-1]
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae import losses as losses_lib

__all__ = [
    "DEFAULT_STAIN_WEIGHT",
    "RUN_FILES",
    "TimeLimit",
    "TrainingRun",
    "get_corruption",
    "get_strategy",
    "load_run",
    "resolve_jit_compile",
    "split_validation",
    "train",
]

# Files and folders a run folder may hold (the only entries overwrite=True removes).
# ``evaluation`` and ``discrepancy`` are the default output folders of ``evaluate`` and
# ``discrepancy``: results of the replaced model, which must not outlive it (``export
# --threshold eval`` would embed a threshold measured on the old model).
RUN_FILES = (
    "config.json",
    "model.keras",
    "best.keras",
    "history.csv",
    "logs",
    "backup",
    "previews",
    "evaluation",
    "discrepancy",
)
#: ``train``'s loss weight of the corrupted pixels when ``stain_weight=None``.
DEFAULT_STAIN_WEIGHT = 10.0

# Sections of config.json that must match for a run folder to be resumed.
_COMPARED = ("model", "data", "corruption", "training")


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


# --------------------------------------------------------------------------- #
# Small public helpers
# --------------------------------------------------------------------------- #


def resolve_jit_compile(jit_compile="auto") -> bool:
    """Resolves ``"auto"`` to XLA on GPU, off on CPU; passes booleans through.

    Raises:
        ValueError: for anything other than ``"auto"``, True or False.
    """
    if jit_compile == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    if isinstance(jit_compile, bool | np.bool_):
        return bool(jit_compile)
    raise ValueError(
        f"`jit_compile` must be 'auto', True or False. Received: jit_compile={jit_compile!r}"
    )


def get_strategy(strategy=None) -> tf.distribute.Strategy:
    """Returns a ``tf.distribute`` strategy from a name or an instance.

    Args:
        strategy: None or ``"default"`` (no distribution), ``"mirrored"``
            (``MirroredStrategy`` over the local GPUs, or the CPU),
            ``"multiworker"`` (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``)
            or a ``tf.distribute.Strategy``.

    Raises:
        ValueError: for an unknown name.
    """
    if strategy is None or strategy == "default":
        return tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy in ("multiworker", "multi_worker"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(
        "`strategy` must be None, 'default', 'mirrored', 'multiworker' or a "
        f"tf.distribute.Strategy. Received: strategy={strategy!r}"
    )


def _strategy_name(strategy) -> str:
    if strategy is None or isinstance(strategy, str):
        return strategy or "default"
    return type(strategy).__name__


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


class TimeLimit(keras.callbacks.Callback):
    """Stops training after ``seconds`` of wall or CPU time (checked after every batch).

    The epoch in progress ends early, its validation still runs, and the run is
    then complete (``model.keras`` is written).

    Args:
        seconds: the budget.
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time,
            all threads: a budget that other programs loading the machine do not
            eat into; on an idle 2-core machine 1 wall second is ~2 CPU seconds).
    """

    def __init__(self, seconds: float, clock: str = "wall"):
        super().__init__()
        if clock not in ("wall", "cpu"):
            raise ValueError(f"`clock` must be 'wall' or 'cpu'. Received: clock={clock!r}")
        self.seconds = float(seconds)
        self.clock = clock
        self._now = time.monotonic if clock == "wall" else time.process_time
        self._start = None
        self.stopped = False
        self.elapsed = 0.0

    def on_train_begin(self, logs=None):
        self._start = self._now()

    def on_train_batch_end(self, batch, logs=None):
        self.elapsed = self._now() - self._start
        if self.elapsed >= self.seconds:
            self.stopped = True
            self.model.stop_training = True


class _LogLearningRate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


class _AtomicBestModel(keras.callbacks.Callback):
    """Saves ``path`` (``.keras``, atomically) whenever ``monitor`` improves."""

    def __init__(self, path, monitor="val_loss"):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best = float(value)
            _save_model_atomic(self.model, self.path)


def _save_model_atomic(model, path):
    with io_utils.atomic_path(path, overwrite=True) as tmp:
        os.unlink(tmp)  # Keras refuses some existing targets; let it create the file
        model.save(tmp)


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #


def _is_pairs(dataset, name: str = "train_data") -> bool:
    """True for batched (input, target[, weight]) image pairs; tuples of anything else
    (e.g. the (images, labels) of ``keras.utils.image_dataset_from_directory``) are refused."""
    spec = dataset.element_spec
    if not isinstance(spec, tuple):
        return False
    images = [s for s in spec[:2] if isinstance(s, tf.TensorSpec)]
    if (
        len(spec) in (2, 3)
        and len(images) == 2
        and images[0].shape.rank == 4
        and images[0].shape.is_compatible_with(images[1].shape)
    ):
        return True
    raise ValueError(
        f"`{name}` yields tuples that are not batched (input, target) image pairs of the same "
        "shape [B, H, W, C]. Pass unbatched images instead (for (image, label) tuples: "
        f"`ds.map(lambda x, y: x)`, then `.unbatch()` if batched). Received: element_spec={spec}"
    )


def _image_of(element):
    return element["image"] if isinstance(element, dict) else element


def _count(dataset) -> int:
    n = int(dataset.cardinality())
    if n >= 0:
        return n
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("`train_data` is infinite; pass a finite dataset of images.")
    return int(dataset.reduce(np.int64(0), lambda c, _: c + 1))


def _split(dataset, n: int, fraction: float, seed: int):
    """Deterministic random split of an unbatched dataset into (train, val)."""
    n_val = max(1, round(n * fraction))
    if n - n_val < 1:
        raise ValueError(
            f"`validation_split={fraction}` leaves no training images out of {n}. "
            "Pass more images, a smaller split or `val_data`."
        )
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.choice(n, size=n_val, replace=False)] = True
    table = tf.constant(is_val)

    def pick(want):
        return dataset.enumerate().filter(lambda i, _: tf.equal(table[i], want)).map(lambda i, x: x)

    return pick(False), pick(True), n - n_val, n_val


def split_validation(dataset, fraction: float = 0.1, seed: int = 0):
    """The seeded random split :func:`train` uses when ``val_data`` is None.

    Lets evaluation code recover the held-out good images of a run (e.g. to set a
    production threshold on them) from its ``config.json`` (``validation_split``,
    ``seed``).

    Args:
        dataset: an unbatched, finite dataset (same order as given to ``train``).
        fraction: the validation fraction (``> 0``).
        seed: the run's seed.

    Returns:
        ``(train_part, val_part)`` datasets.
    """
    train_part, val_part, _, _ = _split(dataset, _count(dataset), float(fraction), int(seed))
    return train_part, val_part


def get_corruption(identifier):
    """A corruption from a name, a config or an object; ``"a+b"`` mixes them.

    ``"stains+scratches"`` is ``OneOf([Stains(), Scratches()])``: each batch gets
    stains or thin scratches (uniformly). Mixing in scratches is an option of the
    recipe for the AESc's known weak spot: trained on blob-shaped stains only, it
    learns to repair blobs, and passes thin scratches and cracks through its skips.

    Args:
        identifier: a :class:`keras_skipae.data.Corruption`, a serialized dict, a
            name for :func:`keras_skipae.data.get` or names joined by ``+``.
    """
    from keras_skipae import data

    if isinstance(identifier, str) and "+" in identifier:
        return data.OneOf([data.get(part.strip()) for part in identifier.split("+")])
    return data.get(identifier)


def _default_corruption():
    from keras_skipae import data

    return data.Stains()


def _describe_corruption(corruption) -> dict | None:
    if corruption is None:
        return None
    from keras_skipae import data

    if isinstance(corruption, data.Corruption):
        return _jsonable(data.serialize(corruption))
    get_config = getattr(corruption, "get_config", None)
    config = get_config() if callable(get_config) else {}
    return {"class_name": type(corruption).__name__, "config": _jsonable(config)}


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=io_utils._json_default))


def _identity_pairs(dataset, batch_size, *, shuffle, seed, repeat):
    # uint8 / uint16 to [0, 1] as data.corrupt does; not AUTOTUNE: see data.corrupt
    ds = dataset.map(
        lambda e: tf.image.convert_image_dtype(_image_of(e), tf.float32), num_parallel_calls=2
    )
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(512, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=repeat).map(lambda x: (x, x)).prefetch(2)


def _make_pairs(dataset, corruption, *, batch_size, seed, shuffle, repeat, stain_weight=1.0):
    if corruption is None:
        return _identity_pairs(dataset, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)
    from keras_skipae import data

    weighted = float(stain_weight) != 1.0
    pairs = data.corrupt(
        dataset,
        corruption,
        seed=seed,
        batch_size=batch_size,
        shuffle=shuffle,
        cache=True,
        repeat=repeat,
        with_mask=weighted,
    )
    if not weighted:
        return pairs
    extra = float(stain_weight) - 1.0
    # (input, target, per-pixel sample weight [B, H, W]): the losses give per-pixel values.
    return pairs.map(lambda x, y, mask: (x, y, 1.0 + extra * mask[..., 0]))


def _probe_batch(pairs, n: int):
    if n <= 0:
        return None, None
    batch = next(iter(pairs.unbatch().take(n).batch(n)))
    return np.asarray(batch[0]), np.asarray(batch[1])


# --------------------------------------------------------------------------- #
# Run folder
# --------------------------------------------------------------------------- #


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _same_run(old: dict, new: dict) -> bool:
    return all(_jsonable(old.get(k)) == _jsonable(new.get(k)) for k in _COMPARED)


def _config_diff(old: dict, new: dict) -> str:
    diffs = []
    for section in _COMPARED:
        a, b = old.get(section) or {}, new.get(section) or {}
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                diffs.append(section)
            continue
        for key in sorted(set(a) | set(b)):
            if _jsonable(a.get(key)) != _jsonable(b.get(key)):
                diffs.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return "; ".join(diffs[:3]) + (" ..." if len(diffs) > 3 else "")


def _clear_run_files(run_dir: Path):
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _backup_epoch(backup_dir: Path) -> int:
    meta = backup_dir / "training_metadata.json"
    if meta.exists():
        try:
            return int(_read_json(meta)["epoch"])
        except (ValueError, KeyError, json.JSONDecodeError):
            return 0
    return 0


def _truncate_history(path: Path, initial_epoch: int):
    """Drops rows of epochs >= initial_epoch (written after the last backup)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and int(float(r[0])) < initial_epoch]
    if len(kept) == len(body):
        return
    with io_utils.atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(kept)


def read_history(path) -> dict:
    """Reads a ``history.csv`` into ``{column: [values]}`` (numbers as floats, epoch as int)."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: dict = {}
    for row in rows:
        for key, value in row.items():
            try:
                v = int(value) if key == "epoch" else float(value)
            except (TypeError, ValueError):
                v = float("nan")
            out.setdefault(key, []).append(v)
    return out


def load_run(run_dir, *, best: bool = False, compile: bool = True):
    """Loads a finished run: ``(model, config)``.

    Args:
        run_dir: a folder written by :func:`train` (or ``keras-skipae train``).
        best: load ``best.keras`` (best validation loss) instead of ``model.keras``.
        compile: restore the compiled loss and metrics.

    Returns:
        ``(keras.Model, dict)``: the model (loaded with ``safe_mode=True``) and
        the run's ``config.json``.

    Raises:
        FileNotFoundError: the folder, its config or its model is missing.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run folder {str(run_dir)!r} does not exist.")
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{str(run_dir)!r} is not a run folder: it has no config.json "
            "(expected a folder written by `keras-skipae train`)."
        )
    model_path = run_dir / ("best.keras" if best else "model.keras")
    if best and not model_path.exists() and (run_dir / "model.keras").exists():
        raise FileNotFoundError(
            f"Run folder {str(run_dir)!r} has no best.keras: it was trained without "
            "--save-best (save_best=True). Use its model.keras (drop --best / best=True)."
        )
    if not model_path.exists():
        raise FileNotFoundError(
            f"Run folder {str(run_dir)!r} has no {model_path.name}: the run did not finish. "
            "Start the same training command again to resume it."
        )
    # Register the package's custom layers and losses before deserializing.
    import keras_skipae.losses  # noqa: F401
    import keras_skipae.models  # noqa: F401

    model = keras.models.load_model(model_path, safe_mode=True, compile=compile)
    return model, _read_json(config_path)


# --------------------------------------------------------------------------- #
# train
# --------------------------------------------------------------------------- #


def _build_model(model, model_kwargs):
    if isinstance(model, keras.Model):
        if model_kwargs:
            raise ValueError(
                "`model_kwargs` only apply when `model` is a registry name or a builder. "
                f"Received: model={model.name!r}, model_kwargs={model_kwargs!r}"
            )
        return model
    if isinstance(model, str):
        from keras_skipae.models import get_model

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
        "kwargs": _jsonable(dict(model_kwargs or {})),
        "params": int(net.count_params()),
    }


def _metric_objects(metrics):
    out = []
    for m in metrics or ():
        if m == "psnr":
            out.append(losses_lib.PSNR())
        elif m == "ssim":
            out.append(losses_lib.SSIM())
        else:
            out.append(m)
    return out


def train(
    model,
    train_data,
    *,
    val_data=None,
    model_kwargs: dict | None = None,
    epochs: int = 20,
    learning_rate: float = 1e-3,
    loss="mse",
    metrics: Sequence = ("psnr", "ssim"),
    corruption="auto",
    stain_weight: float | None = None,
    batch_size: int = 16,
    validation_split: float = 0.1,
    steps_per_epoch: int | None = None,
    seed: int = 0,
    run_dir=None,
    jit_compile="auto",
    strategy=None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    reduce_lr: bool | dict = True,
    tensorboard: bool = True,
    preview_images: int = 4,
    save_best: bool = False,
    time_limit: float | None = None,
    time_clock: str = "wall",
    overwrite: bool = False,
    resume: bool = True,
    verbose="auto",
    data_config: dict | None = None,
) -> TrainingRun:
    """Trains a reconstruction model on (corrupted input, clean target) pairs.

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
        loss: a name of :data:`keras_skipae.losses.LOSSES` or a ``keras.losses.Loss``.
        metrics: ``"psnr"``, ``"ssim"`` or Keras metrics.
        corruption: ``"auto"`` (:class:`keras_skipae.data.Stains` for image
            datasets), a corruption object, a name or serialized config for
            :func:`get_corruption` (``"stains"``, ``"scratches"``,
            ``"stains+scratches"``, ...), or
            None (learn the identity: a plain autoencoder recipe).
        stain_weight: loss weight of the corrupted pixels (the corruption's mask)
            relative to the clean ones, as a per-pixel ``sample_weight``; 1 weights
            all pixels alike (the paper's plain loss). Stains cover a few percent of
            an image, so the repair the model must learn is a small part of a plain
            loss; a larger weight puts it first. None: :data:`DEFAULT_STAIN_WEIGHT`
            (10) when training on corrupted images with one of the package's
            per-pixel losses (``"mse"``, ``"l1"``, ``"mse+ssim"``, ``"l1+ssim"``),
            else 1. An explicit weight other than 1 needs a corruption and a loss
            whose ``call`` gives per-pixel values ``[B, H, W]`` (not ``"ssim"``). On the synthetic ``mesh`` dev set (seed 1, 3 min of
            training) the weight 10 lifted the AESc's pixel AUROC from 0.61 to 0.96.
        batch_size: global batch size.
        validation_split: fraction held out when ``val_data`` is None (0: no validation).
        steps_per_epoch: batches per epoch; None: one pass over the training images.
        seed: seed of the split, the corruptions, the shuffling and the weights
            (``keras.utils.set_random_seed``).
        run_dir: the run folder, or None to write nothing (no resume then).
        jit_compile: ``"auto"`` (XLA on GPU only), True or False.
        strategy: None/``"default"``, ``"mirrored"``, ``"multiworker"`` or a strategy.
        callbacks: extra Keras callbacks (run after the built-in ones).
        reduce_lr: ``ReduceLROnPlateau`` (factor 0.5, patience 3, on ``val_loss``);
            a dict overrides its arguments; False turns it off.
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

    Returns:
        A :class:`TrainingRun`.

    Raises:
        FileExistsError: ``run_dir`` holds a different run, or a finished one,
            and ``overwrite`` is False.
        ValueError: bad arguments (named in the message).
    """
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
    if not float(learning_rate) > 0:
        raise ValueError(f"`learning_rate` must be > 0. Received: learning_rate={learning_rate!r}")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size!r}")
    if not 0 <= float(validation_split) < 1:
        raise ValueError(
            f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}"
        )
    loss_obj = losses_lib.get_loss(loss)
    per_pixel = (losses_lib.MeanSquaredError, losses_lib.MeanAbsoluteError, losses_lib.MixedLoss)
    if stain_weight is not None and not float(stain_weight) >= 0:
        raise ValueError(f"`stain_weight` must be >= 0. Received: stain_weight={stain_weight!r}")
    weighted = stain_weight is not None and float(stain_weight) != 1.0
    if weighted and isinstance(loss_obj, losses_lib.SSIMLoss):
        raise ValueError(
            "`stain_weight` weights pixels, so it needs a per-pixel loss ('mse', 'l1', "
            f"'mse+ssim', 'l1+ssim'). Received: loss={loss!r}, stain_weight={stain_weight!r}"
        )
    jit = resolve_jit_compile(jit_compile)
    strat = get_strategy(strategy)
    distributed = strategy not in (None, "default")
    if distributed and isinstance(model, keras.Model):
        raise ValueError(
            "With a distribution strategy the model must be built inside its scope: pass a "
            "registry name (with `model_kwargs`) or a builder callable, not a built model."
        )

    # ---- data ------------------------------------------------------------ #
    pairs_given = _is_pairs(train_data)
    if pairs_given:
        if corruption not in ("auto", None):
            raise ValueError(
                "`train_data` already yields (input, target) pairs, so `corruption` cannot be "
                f"applied. Pass corruption=None or unbatched images. Received: corruption={corruption!r}"
            )
        corruption_obj = None
        if val_data is None and validation_split:
            raise ValueError(
                "Cannot split batched (input, target) pairs for validation: pass `val_data` "
                "or validation_split=0."
            )
    else:
        if corruption == "auto":
            corruption_obj = _default_corruption()
        elif isinstance(corruption, str | dict):
            corruption_obj = get_corruption(corruption)
        else:
            corruption_obj = corruption
    if weighted and corruption_obj is None:
        raise ValueError(
            "`stain_weight` weights the corrupted pixels, so it needs a corruption (and "
            f"unbatched training images). Received: corruption={corruption!r}, "
            f"stain_weight={stain_weight!r}"
        )
    if stain_weight is None:
        default = corruption_obj is not None and isinstance(loss_obj, per_pixel)
        stain_weight = DEFAULT_STAIN_WEIGHT if default else 1.0

    n_train = n_val = None
    if pairs_given:
        train_pairs = train_data
        val_pairs = val_data
    else:
        train_images = train_data
        val_images = val_data
        n_all = _count(train_data)
        if val_data is None and validation_split:
            train_images, val_images, n_train, n_val = _split(
                train_data, n_all, float(validation_split), seed
            )
        else:
            n_train = n_all
            n_val = _count(val_data) if val_data is not None else 0
        if n_train < 1:
            raise ValueError("`train_data` is empty.")
        if steps_per_epoch is None:
            steps_per_epoch = max(1, n_train // batch_size)
        train_pairs = _make_pairs(
            train_images,
            corruption_obj,
            batch_size=batch_size,
            seed=seed,
            shuffle=True,
            repeat=True,
            stain_weight=stain_weight,
        )
        val_pairs = None
        if val_images is not None:
            if _is_pairs(val_images, "val_data"):
                val_pairs = val_images
            else:
                # Cached after corruption: the same validation pairs every epoch, so
                # val_loss moves with the model only (ReduceLROnPlateau, best.keras).
                val_pairs = _make_pairs(
                    val_images,
                    corruption_obj,
                    batch_size=batch_size,
                    seed=seed + 1,
                    shuffle=False,
                    repeat=False,
                    stain_weight=stain_weight,
                ).cache()

    if val_pairs is not None and int(val_pairs.cardinality()) < 0:
        # A known length keeps Keras from warning that the input "ran out of data".
        n_batches = int(val_pairs.reduce(np.int64(0), lambda c, _: c + 1))
        val_pairs = val_pairs.apply(tf.data.experimental.assert_cardinality(n_batches))

    # ---- model ------------------------------------------------------------- #
    keras.utils.set_random_seed(int(seed))
    with strat.scope():
        net = _build_model(model, model_kwargs)
        optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
        net.compile(
            optimizer=optimizer, loss=loss_obj, metrics=_metric_objects(metrics), jit_compile=jit
        )
    applied = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
    if not math.isclose(applied, float(learning_rate), rel_tol=1e-6):  # pragma: no cover
        raise RuntimeError(
            f"The optimizer's learning rate is {applied}, not the requested {learning_rate}."
        )

    # ---- configuration and run folder ------------------------------------ #
    training_args = {
        "epochs": int(epochs),
        "learning_rate": float(learning_rate),
        "loss": keras.saving.serialize_keras_object(loss_obj),
        "stain_weight": float(stain_weight),
        "batch_size": int(batch_size),
        "validation_split": float(validation_split) if val_data is None else None,
        "steps_per_epoch": steps_per_epoch,
        "seed": int(seed),
        "reduce_lr": reduce_lr,
        "save_best": bool(save_best),
        "time_limit": time_limit,
        "time_clock": time_clock,
    }
    config = {
        "model": _model_description(model, model_kwargs, net),
        "data": _jsonable(
            dict(data_config or {}, n_train=n_train, n_val=n_val, pairs_given=pairs_given)
        ),
        "corruption": _describe_corruption(corruption_obj),
        "training": _jsonable(training_args),
        "runtime": {
            "jit_compile": jit,
            "strategy": _strategy_name(strategy),
            "replicas": int(strat.num_replicas_in_sync),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }

    chief = _is_chief(strat)
    run_path = Path(run_dir) if run_dir is not None else None
    initial_epoch = 0
    resuming = False
    if run_path is not None and chief:
        initial_epoch, resuming = _prepare_run_dir(
            run_path, config, overwrite=overwrite, resume=resume
        )
        io_utils.write_json(run_path / "config.json", config)
    elif run_path is not None:
        initial_epoch = _backup_epoch(run_path / "backup") if resume else 0

    # ---- callbacks ----------------------------------------------------------- #
    monitor = "val_loss" if val_pairs is not None else "loss"
    cbs: list = []
    if reduce_lr:
        kwargs = {"monitor": monitor, "factor": 0.5, "patience": 3, "min_lr": 1e-6, "verbose": 0}
        if isinstance(reduce_lr, dict):
            kwargs.update(reduce_lr)
        cbs.append(keras.callbacks.ReduceLROnPlateau(**kwargs))
    cbs.append(_LogLearningRate())
    if run_path is not None:
        write_dir = run_path if chief else run_path / "backup" / f"worker-{_task_id(strat)}"
        if tensorboard and chief:
            from keras_skipae._preview import ReconstructionPreview

            probe_source = val_pairs if val_pairs is not None else train_pairs
            probe_x, probe_y = _probe_batch(probe_source, int(preview_images))
            if probe_x is not None:
                cbs.append(
                    ReconstructionPreview(
                        probe_x,
                        probe_y,
                        log_dir=run_path / "logs",
                        image_dir=run_path / "previews",
                    )
                )
        if save_best and val_pairs is not None and chief:
            cbs.append(_AtomicBestModel(run_path / "best.keras", monitor="val_loss"))
        if chief:
            cbs.append(keras.callbacks.CSVLogger(str(run_path / "history.csv"), append=resuming))
        backup = run_path / "backup" if chief else write_dir
        cbs.append(keras.callbacks.BackupAndRestore(str(backup), save_freq="epoch"))
    if time_limit is not None:
        cbs.append(TimeLimit(time_limit, clock=time_clock))
    cbs.extend(callbacks)

    # ---- fit ------------------------------------------------------------------ #
    start = time.monotonic()
    history = net.fit(
        train_pairs,
        validation_data=val_pairs,
        epochs=int(epochs),
        steps_per_epoch=steps_per_epoch,
        callbacks=cbs,
        shuffle=False,  # the pipelines shuffle
        verbose=verbose,
    )
    seconds = time.monotonic() - start

    if run_path is not None and chief:
        _save_model_atomic(net, run_path / "model.keras")
        full_history = read_history(run_path / "history.csv")
    else:
        full_history = dict(history.history)
        full_history["epoch"] = list(history.epoch)
    return TrainingRun(
        model=net,
        history=full_history,
        run_dir=run_path,
        config=config,
        initial_epoch=initial_epoch,
        seconds=seconds,
    )


def _task_id(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0)


def _prepare_run_dir(run_path: Path, config: dict, *, overwrite: bool, resume: bool):
    """Checks the run folder; returns ``(initial_epoch, resuming)``."""
    if run_path.exists() and not run_path.is_dir():
        raise FileExistsError(f"`run_dir` {str(run_path)!r} exists and is not a folder.")
    run_path.mkdir(parents=True, exist_ok=True)
    entries = [p for p in run_path.iterdir() if not p.name.startswith(".")]
    if not entries:
        return 0, False
    config_path = run_path / "config.json"
    old = None
    if config_path.exists():
        try:
            old = _read_json(config_path)
        except (OSError, json.JSONDecodeError):
            old = None
    if old is None or not _same_run(old, config):
        if not overwrite:
            if old is None:
                why = "is not empty and holds no keras_skipae run config"
            else:
                why = f"holds a different run ({_config_diff(old, config)})"
            raise FileExistsError(
                f"The run folder {str(run_path)!r} {why}. Refusing to reuse it; pass "
                "overwrite=True (CLI: --overwrite) to replace it, or choose another folder."
            )
        _clear_run_files(run_path)
        return 0, False
    backup = run_path / "backup"
    if resume and backup.exists():
        epoch = _backup_epoch(backup)
        _truncate_history(run_path / "history.csv", epoch)
        return epoch, True
    if (run_path / "model.keras").exists() and not overwrite:
        raise FileExistsError(
            f"The run in {str(run_path)!r} is already finished (model.keras exists). "
            "Pass overwrite=True (CLI: --overwrite) to train it again."
        )
    _clear_run_files(run_path)
    return 0, False


def make_builder(name: str, **kwargs) -> Callable[[], keras.Model]:
    """A zero-argument builder for ``get_model(name, **kwargs)`` (for strategies)."""

    def build():
        from keras_skipae.models import get_model

        return get_model(name, **kwargs)

    build.__name__ = name
    return build
