"""The tf.data pipeline that turns clean images into batched ``(corrupted, target)`` pairs."""

from __future__ import annotations

import tensorflow as tf

from keras_skipae.data import corruptions
from keras_skipae.io_utils import as_text
from keras_skipae.ops.tiling import check_tiling


def _images_only(dataset):
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if "image" not in spec:
            raise ValueError(
                "`dataset` elements are dicts without an 'image' key. "
                f"Received element_spec keys: {sorted(spec)}"
            )
        return dataset.map(lambda e: e["image"])
    if isinstance(spec, tuple):
        return dataset.map(lambda *e: e[0])
    if isinstance(spec, tf.TensorSpec):
        return dataset
    raise ValueError(
        f"`dataset` must yield image tensors or dicts with an 'image' key. "
        f"Received element_spec={spec!r}"
    )


def check_tile_size(dataset, tile_size: int) -> None:
    """Refuses a finite dataset of images when one is smaller than ``tile_size`` a side.

    Images of a static size are checked from the element spec; images of varying size
    (loaded at full resolution) are each read once, so that a training run on
    :func:`random_crops` fails before it starts, naming the smallest image (and its file
    when the elements are dicts with a ``path``), rather than with TensorFlow's assertion
    in the middle of the pipeline.

    Raises:
        ValueError: an image is smaller than the tile (the message names ``tile_size``,
            the tile's and the image's sizes).
    """
    images = _images_only(dataset)
    shape = images.element_spec.shape
    if shape.rank == 3 and shape[0] is not None and shape[1] is not None:
        smallest, path = (int(shape[0]), int(shape[1])), ""
    else:
        spec = dataset.element_spec
        if isinstance(spec, dict):  # one pass over the source: the size and the file
            sizes = dataset.map(
                lambda e: (tf.shape(e["image"])[:2], e["path"] if "path" in spec else "")
            )
        else:
            sizes = images.map(lambda x: (tf.shape(x)[:2], tf.constant("")))

        def keep_smaller(state, element):
            smaller = tf.reduce_min(element[0]) < tf.reduce_min(state[0])
            return tuple(tf.where(smaller, new, old) for new, old in zip(element, state))

        big = tf.constant([2**31 - 1, 2**31 - 1], tf.int32)
        hw, path = sizes.reduce((big, tf.constant("")), keep_smaller)
        smallest, path = tuple(int(v) for v in hw.numpy()), as_text(path.numpy())
    if min(smallest) < tile_size:
        named = f" {path!r}" if path else ""
        raise ValueError(
            f"Every image must be at least tile_size={tile_size} pixels a side, but the "
            f"image{named} is {smallest[0]}x{smallest[1]}: pass a smaller tile_size (CLI: "
            f"--tile-size). Received: tile_size={tile_size}"
        )


def random_crops(dataset, tile_size: int, *, seed=0, cache=True):
    """Random ``tile_size x tile_size`` crops of full-resolution images, one per image and pass.

    For training on tiles of large frames: load the images without resizing
    (``image_size=None``), crop here, then corrupt the crops (``corrupt(...,
    cache=False)``, so that every pass draws new crops). Each crop's offset comes from
    a stateless seed drawn from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``: the same ``seed`` gives the same crops in a
    fresh pipeline, and every new pass over the dataset (each ``repeat`` cycle) new ones.

    Args:
        dataset: an unbatched dataset of images ``[H, W, C]`` (H and W may differ between
            images, C static), of dicts with an ``image`` key, or of ``(image, ...)``
            tuples; floats in [0, 1] or integers (rescaled to [0, 1]).
        tile_size: the side of the crops; every image must be at least that large.
        seed: integer seed.
        cache: cache the decoded full-resolution images in memory (``True``), in a file
            (a path string), or not (``False``: decode them on every pass).

    Returns:
        An unbatched dataset of float32 ``[tile_size, tile_size, C]`` crops. An image
        smaller than the tile fails with an ``InvalidArgumentError`` naming the sizes
        (:func:`check_tile_size` refuses such a dataset up front).

    Example:
        >>> full = mvtec_dataset("/data/mvtec", "carpet", image_size=None)
        >>> pairs = corrupt(random_crops(full, 128, seed=0), Stains(), cache=False)
    """
    tile_size, _ = check_tiling(tile_size, required=True)
    ds = _images_only(dataset)
    shape = ds.element_spec.shape
    if shape.rank != 3 or shape[-1] is None:
        raise ValueError(
            "random_crops() needs images [H, W, C] with a static channel count. "
            f"Received element shape {shape}"
        )
    channels = int(shape[-1])
    for side in shape[:2]:
        if side is not None and side < tile_size:
            raise ValueError(
                f"Expected images of at least tile_size={tile_size} pixels a side. "
                f"Received: images of shape {shape}"
            )
    if ds.element_spec.dtype.is_integer:
        ds = ds.map(lambda x: tf.image.convert_image_dtype(x, tf.float32))
    else:
        ds = ds.map(lambda x: tf.cast(x, tf.float32))
    if cache:
        ds = ds.cache(cache) if isinstance(cache, str) else ds.cache()
    seeds = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def crop(image, s):
        hw = tf.shape(image)[:2]
        check = tf.debugging.Assert(
            tf.reduce_min(hw) >= tile_size,
            [f"random_crops: an image is smaller than tile_size={tile_size}; its [H, W]:", hw],
        )
        with tf.control_dependencies([check]):
            return tf.image.stateless_random_crop(image, [tile_size, tile_size, channels], s)

    return tf.data.Dataset.zip((ds, seeds)).map(crop, num_parallel_calls=2, deterministic=True)


def _float_images(dataset):
    """The images of ``dataset`` as float32 ``[H, W, C]`` in [0, 1] (integers rescaled);
    a shape that is not static raises ``ValueError``."""
    ds = _images_only(dataset)
    shape = ds.element_spec.shape
    if shape.rank != 3 or None in shape.as_list():
        raise ValueError(
            "corrupt() needs images of a static shape [H, W, C] (give the dataset "
            f"an image_size). Received element shape {shape}"
        )
    if ds.element_spec.dtype.is_integer:  # e.g. uint8 in [0, 255] -> float32 in [0, 1]
        return ds.map(lambda x: tf.image.convert_image_dtype(x, tf.float32))
    return ds.map(lambda x: tf.cast(x, tf.float32))


def corrupt(
    dataset,
    corruption,
    *,
    seed=0,
    batch_size=16,
    shuffle=True,
    shuffle_buffer=1024,
    cache=True,
    with_mask=False,
    repeat=False,
    drop_remainder=False,
    prefetch=2,
    num_parallel_calls=2,
):
    """Batched ``(corrupted, target)`` pairs for corrupt-and-repair training.

    Pipeline: images -> cache (decoded, before corruption) -> shuffle -> repeat ->
    batch -> corrupt (vectorised over the batch) -> prefetch.

    Reproducibility: the shuffle uses ``seed`` (reshuffled every iteration) and
    each batch gets a stateless seed drawn from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``. So the same ``seed`` gives the same
    batches in a fresh pipeline; every new pass over the dataset (each epoch of
    ``fit``, or each cycle of ``repeat``) gets new orders and new corruptions,
    and that sequence is itself reproducible. (As with every TF op seed, the
    values also depend on the global seed, e.g. ``keras.utils.set_random_seed``.)

    Args:
        dataset: an unbatched dataset of dicts with an ``image`` key (as
            :func:`mvtec_dataset` gives), of ``(image, ...)`` tuples, or of image
            tensors ``[H, W, C]`` with static H, W, C: float in [0, 1], or
            integers (uint8 / uint16), rescaled to [0, 1].
        corruption: a :class:`Corruption` (or a name / config for :func:`get`).
        seed: integer seed.
        batch_size: images per batch.
        shuffle: shuffle the images.
        shuffle_buffer: shuffle buffer size.
        cache: cache the decoded images in memory (``True``), in a file (a path
            string), or not at all (``False``).
        with_mask: also yield the corruption mask ``[B, H, W, 1]``.
        repeat: repeat forever (``True``), a number of times (an int), or not (``False``).
        drop_remainder: drop the last, smaller batch.
        prefetch: batches to prefetch (``tf.data.AUTOTUNE`` allowed; 0 disables).
            A small fixed number is the default: on short epochs AUTOTUNE was
            seen to stall the end of ``fit`` for 0.6-20 s on this project's CPUs.
        num_parallel_calls: parallel corruption calls (``tf.data.AUTOTUNE`` allowed).

    Returns:
        A ``tf.data.Dataset`` of ``(corrupted, target)`` or
        ``(corrupted, target, mask)`` float32 batches.

    Example:
        >>> train = mvtec_dataset("/data/mvtec", "carpet", image_size=256)
        >>> pairs = corrupt(train, Stains(), seed=0, batch_size=16)
        >>> model.fit(pairs, epochs=10)
    """
    corruption = corruptions.get(corruption)
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size!r}")
    ds = _float_images(dataset)
    if cache:
        ds = ds.cache(cache) if isinstance(cache, str) else ds.cache()
    if shuffle:
        ds = ds.shuffle(int(shuffle_buffer), seed=int(seed), reshuffle_each_iteration=True)
    if repeat is True:
        ds = ds.repeat()
    elif repeat:
        ds = ds.repeat(int(repeat))
    ds = ds.batch(int(batch_size), drop_remainder=bool(drop_remainder))
    ds = _corrupt_batches(ds, corruption, int(seed), with_mask, num_parallel_calls)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


def _corrupt_batches(batches, corruption, seed: int, with_mask: bool, num_parallel_calls):
    """``batches`` corrupted, each with a stateless seed from ``Dataset.random(seed + 1)``
    (new seeds on every pass)."""
    seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def apply(images, s):
        corrupted, target, mask = corruption(images, s)
        return (corrupted, target, mask) if with_mask else (corrupted, target)

    return tf.data.Dataset.zip((batches, seeds)).map(
        apply, num_parallel_calls=num_parallel_calls, deterministic=True
    )
