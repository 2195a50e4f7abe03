"""Training data: the validation split and the corrupted ``(input, target)`` pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from keras_skipae import data, io_utils
from keras_skipae import losses as losses_lib


def _is_pairs(dataset, name: str = "train_data") -> bool:
    """True for batched (input, target[, weight]) image pairs; tuples of anything else
    (e.g. the (images, labels) of ``keras.utils.image_dataset_from_directory``) are refused.

    Input and target may differ in size and channels (e.g. grey to colour, or 2x
    super-resolution): ``train`` checks that the model's output has the target's shape.
    """
    spec = dataset.element_spec
    if not isinstance(spec, tuple):
        return False
    images = [s for s in spec[:2] if isinstance(s, tf.TensorSpec)]
    if (
        len(spec) in (2, 3)
        and len(images) == 2
        and images[0].shape.rank == 4
        and images[1].shape.rank == 4
        and images[0].shape[:1].is_compatible_with(images[1].shape[:1])
    ):
        return True
    raise ValueError(
        f"`{name}` yields tuples that are not batched (input, target) image pairs "
        "[B, H, W, C]. Pass unbatched images instead (for (image, label) tuples: "
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


def _describe_corruption(corruption) -> dict | None:
    if corruption is None:
        return None

    if isinstance(corruption, data.Corruption):
        return io_utils.jsonable(data.serialize(corruption))
    get_config = getattr(corruption, "get_config", None)
    config = get_config() if callable(get_config) else {}
    return {"class_name": type(corruption).__name__, "config": io_utils.jsonable(config)}


def _identity_pairs(dataset, batch_size, *, shuffle, seed, repeat, cache=True):
    # uint8 / uint16 to [0, 1] as data.corrupt does; not AUTOTUNE: see data.corrupt
    ds = dataset.map(
        lambda e: tf.image.convert_image_dtype(_image_of(e), tf.float32), num_parallel_calls=2
    )
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(512, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=repeat).map(lambda x: (x, x)).prefetch(2)


def _make_pairs(
    dataset,
    corruption,
    *,
    batch_size,
    seed,
    shuffle,
    repeat,
    stain_weight=1.0,
    masks=False,
    cache=True,
):
    """Batched ``(input, target[, weight])``; with ``masks``, ``(input, (target, mask)[, weight])``.

    ``cache=False`` for random crops, which must be drawn again on every pass.
    """
    if corruption is None:
        if masks:
            raise ValueError(
                "A model with an anomaly head learns from the masks of a corruption: "
                "pass one (e.g. corruption='anomalies'). Received: corruption=None"
            )
        return _identity_pairs(
            dataset, batch_size, shuffle=shuffle, seed=seed, repeat=repeat, cache=cache
        )
    extra = float(stain_weight) - 1.0
    pairs = data.corrupt(
        dataset,
        corruption,
        seed=seed,
        batch_size=batch_size,
        shuffle=shuffle,
        cache=cache,
        repeat=repeat,
        with_mask=masks or extra != 0.0,
    )
    # Weights: (input, target, per-pixel sample weight [B, H, W]), as the losses give
    # per-pixel values; masks: the target is (target, mask) for a model with a head.
    if masks and extra == 0.0:
        return pairs.map(lambda x, y, mask: (x, (y, mask)))
    if masks:
        return pairs.map(lambda x, y, mask: (x, (y, mask), 1.0 + extra * mask[..., 0]))
    if extra == 0.0:
        return pairs
    return pairs.map(lambda x, y, mask: (x, y, 1.0 + extra * mask[..., 0]))


def _probe_batch(pairs, n: int):
    if n <= 0:
        return None, None
    batch = next(iter(pairs.unbatch().take(n).batch(n)))
    target = batch[1][0] if isinstance(batch[1], tuple | list) else batch[1]
    return np.asarray(batch[0]), np.asarray(target)


#: ``train``'s loss weight of the corrupted pixels when ``stain_weight=None``.
DEFAULT_STAIN_WEIGHT = 10.0


_PER_PIXEL = (losses_lib.MeanSquaredError, losses_lib.MeanAbsoluteError, losses_lib.MixedLoss)


def _check_stain_weight(stain_weight, loss_obj, loss) -> None:
    if stain_weight is not None and not float(stain_weight) >= 0:
        raise ValueError(f"`stain_weight` must be >= 0. Received: stain_weight={stain_weight!r}")
    weighted = stain_weight is not None and float(stain_weight) != 1.0
    if weighted and isinstance(loss_obj, losses_lib.SSIMLoss):
        raise ValueError(
            "`stain_weight` weights pixels, so it needs a per-pixel loss ('mse', 'l1', "
            f"'mse+ssim', 'l1+ssim'). Received: loss={loss!r}, stain_weight={stain_weight!r}"
        )


@dataclass
class _Data:
    """The training and validation pipelines ``fit`` consumes, and what they hold."""

    train_pairs: tf.data.Dataset
    val_pairs: tf.data.Dataset | None
    corruption: Any
    stain_weight: float
    steps_per_epoch: int | None
    n_train: int | None = None
    n_val: int | None = None
    pairs_given: bool = False


def _resolve_corruption(train_data, val_data, corruption, validation_split, masks=False):
    """``(pairs_given, corruption object or None)``: whether ``train_data`` already yields
    pairs, else the corruption to make them with (names and configs through
    :func:`keras_skipae.data.get`)."""
    if not _is_pairs(train_data):
        if isinstance(corruption, str) and corruption == "auto":
            # stains for a reconstruction model; Anomalies (stains among other kinds)
            # for a model with an anomaly head (docs/decisions.md#anomaly-head)
            return False, data.Anomalies() if masks else data.Stains()
        if isinstance(corruption, str | dict):
            return False, data.get(corruption)
        return False, corruption
    if corruption not in ("auto", None):
        raise ValueError(
            "`train_data` already yields (input, target) pairs, so `corruption` cannot be "
            f"applied. Pass corruption=None or unbatched images. Received: corruption={corruption!r}"
        )
    if val_data is None and validation_split:
        raise ValueError(
            "Cannot split batched (input, target) pairs for validation: pass `val_data` "
            "or validation_split=0."
        )
    return True, None


def _resolve_data(
    train_data,
    val_data,
    *,
    corruption,
    loss_obj,
    stain_weight,
    batch_size,
    validation_split,
    steps_per_epoch,
    seed,
    masks=False,
    tile_size=None,
) -> _Data:
    """Validation split, corruption and stain weight, as the pipelines ``fit`` reads.

    With ``masks`` (a model with an anomaly head) the targets are ``(target, mask)``.
    With ``tile_size`` the models learn from random crops of the (full-resolution)
    images: new crops on every pass for training, fixed ones for validation.
    """
    pairs_given, corruption_obj = _resolve_corruption(
        train_data, val_data, corruption, validation_split, masks
    )
    if stain_weight is not None and float(stain_weight) != 1.0 and corruption_obj is None:
        raise ValueError(
            "`stain_weight` weights the corrupted pixels, so it needs a corruption (and "
            f"unbatched training images). Received: corruption={corruption!r}, "
            f"stain_weight={stain_weight!r}"
        )
    if stain_weight is None:
        default = corruption_obj is not None and isinstance(loss_obj, _PER_PIXEL)
        stain_weight = DEFAULT_STAIN_WEIGHT if default else 1.0
    if pairs_given and tile_size is not None:
        raise ValueError(
            "`tile_size` crops unbatched images; `train_data` already yields batched "
            f"(input, target) pairs. Received: tile_size={tile_size!r}"
        )
    if pairs_given:
        data = _Data(train_data, val_data, None, stain_weight, steps_per_epoch, pairs_given=True)
    else:
        data = _image_pipelines(
            train_data,
            val_data,
            corruption_obj,
            masks=masks,
            stain_weight=stain_weight,
            batch_size=batch_size,
            validation_split=validation_split,
            steps_per_epoch=steps_per_epoch,
            seed=seed,
            tile_size=tile_size,
        )
    data.val_pairs = _with_known_length(data.val_pairs)
    return data


def _with_known_length(val_pairs):
    """``val_pairs`` with a known cardinality (counted once when unknown)."""
    if val_pairs is not None and int(val_pairs.cardinality()) < 0:
        # A known length keeps Keras from warning that the input "ran out of data".
        n_batches = int(val_pairs.reduce(np.int64(0), lambda c, *_: c + 1))
        val_pairs = val_pairs.apply(tf.data.experimental.assert_cardinality(n_batches))
    return val_pairs


def split_counted(train_data, val_data, validation_split, seed, batch_size, steps_per_epoch):
    """The seeded validation split of unbatched items, with counts and the default steps.

    Returns:
        ``(train items, val items or None, n_train, n_val, steps_per_epoch)``; the split
        only when ``val_data`` is None and ``validation_split`` > 0; ``steps_per_epoch``
        None becomes one pass over the training items.

    Raises:
        ValueError: no training item is left.
    """
    train_items, val_items = train_data, val_data
    n_all = _count(train_data)
    if val_data is None and validation_split:
        train_items, val_items, n_train, n_val = _split(train_data, n_all, validation_split, seed)
    else:
        n_train = n_all
        n_val = _count(val_data) if val_data is not None else 0
    if n_train < 1:
        raise ValueError("`train_data` is empty.")
    if steps_per_epoch is None:
        steps_per_epoch = max(1, n_train // batch_size)
    return train_items, val_items, n_train, n_val, steps_per_epoch


def _image_pipelines(
    train_data,
    val_data,
    corruption_obj,
    *,
    masks,
    stain_weight,
    batch_size,
    validation_split,
    steps_per_epoch,
    seed,
    tile_size=None,
) -> _Data:
    """Corrupted (input, target[, weight]) pipelines from unbatched clean images."""
    train_images, val_images, n_train, n_val, steps_per_epoch = split_counted(
        train_data, val_data, validation_split, seed, batch_size, steps_per_epoch
    )
    common = {"batch_size": batch_size, "stain_weight": stain_weight, "masks": masks}
    if tile_size is not None:
        # Every image holds a tile (checked before training, naming the smallest one).
        for images in (train_data, val_data):
            if images is not None and not _is_pairs(images, "val_data"):
                data.check_tile_size(images, tile_size)
        # Crops after the split (so no validation image is seen in training); the crop
        # pipeline caches the full-resolution images, corrupt() must not cache the crops.
        train_images = data.random_crops(train_images, tile_size, seed=seed)
        if val_images is not None and not _is_pairs(val_images, "val_data"):
            val_images = data.random_crops(val_images, tile_size, seed=seed + 1)
    train_pairs = _make_pairs(
        train_images,
        corruption_obj,
        seed=seed,
        shuffle=True,
        repeat=True,
        cache=tile_size is None,
        **common,
    )
    val_pairs = None
    if val_images is not None:
        if _is_pairs(val_images, "val_data"):
            val_pairs = val_images
        else:
            # Cached after corruption: the same validation pairs every epoch, so
            # val_loss moves with the model only (ReduceLROnPlateau, best.keras).
            val_pairs = _make_pairs(
                val_images, corruption_obj, seed=seed + 1, shuffle=False, repeat=False, **common
            ).cache()
    return _Data(
        train_pairs, val_pairs, corruption_obj, stain_weight, steps_per_epoch, n_train, n_val
    )
