"""Tiling primitives: the tile grid of a frame, the blending window, extraction and blending.

A frame of ``H x W`` pixels is covered by square tiles of ``tile_size`` pixels
(:func:`tile_grid`). Along each axis the tiles are spread evenly from the first
pixel to the last: the first tile starts at 0, the last one ends flush with the
border (no padding, so no padding artefacts), and neighbours overlap by at least
``overlap`` pixels (more when the length is not a whole number of steps). The
number of tiles per axis is the smallest that achieves this:
``n = ceil((L - overlap) / (tile_size - overlap))``.

Per-tile results (anomaly maps, reconstructions) are blended back into a frame by a
weighted mean: each tile's values are weighted by a separable Hann window with a
positive floor (:func:`tile_window`), accumulated (:func:`accumulate_tiles`) and
divided by the sum of the weights (:func:`window_sum`). Where one tile covers a pixel
its value is kept exactly; where tiles overlap, each tile's centre counts more than
its edges (where a convolutional model sees less context). A constant map blends
to the same constant.

Frames smaller than a tile are refused (:func:`check_frame_size`): reflecting a
frame up to the tile size would show the model a mirrored texture it never saw.

Everything is TF ops on dynamic shapes, so it runs eagerly, in ``tf.function`` and in
an exported SavedModel; no model knowledge (``keras_skipae.scoring.tiling`` uses it).
"""

from __future__ import annotations

import math
import numbers

import tensorflow as tf

#: The window's value at a tile's edge, relative to its centre (1).
WINDOW_FLOOR = 0.01


def check_tiling(tile_size, overlap=0, *, required: bool = False) -> tuple[int, int] | None:
    """The one check of the tiling arguments: ``tile_size`` (None, or an int >= 1) and
    ``overlap`` (None, or an int with ``0 <= overlap < tile_size``).

    Every caller (train, evaluate, export, Detector, the tiling ops) checks its
    ``tile_size`` / ``tile_overlap`` here.

    Args:
        tile_size: the tile's side; None: no tiling (then ``overlap`` must be 0 or None).
        overlap: the tiles' least overlap; None counts as 0.
        required: refuse ``tile_size=None`` (for functions that always tile).

    Returns:
        ``(tile_size, overlap)`` as Python ints, or None without tiling.
    """
    if tile_size is None and not required:
        if overlap:
            raise ValueError(
                f"`tile_overlap` needs a `tile_size`. Received: tile_overlap={overlap!r}"
            )
        return None
    if (
        not isinstance(tile_size, numbers.Integral)
        or isinstance(tile_size, bool)
        or int(tile_size) < 1
    ):
        raise ValueError(
            f"Expected `tile_size` to be an int >= 1. Received: tile_size={tile_size!r}"
        )
    if overlap is None:
        overlap = 0
    if (
        not isinstance(overlap, numbers.Integral)
        or isinstance(overlap, bool)
        or not 0 <= int(overlap) < int(tile_size)
    ):
        raise ValueError(
            f"Expected `tile_overlap` to be an int with 0 <= tile_overlap < tile_size "
            f"({tile_size}). Received: tile_overlap={overlap!r}"
        )
    return int(tile_size), int(overlap)


def tiles_per_axis(length: int, tile_size: int, overlap: int = 0) -> int:
    """The number of tiles along an axis of ``length`` pixels (Python ints; ``length >= tile``)."""
    tile_size, overlap = check_tiling(tile_size, overlap, required=True)
    if int(length) < tile_size:
        raise ValueError(f"Expected a length >= tile_size={tile_size}. Received: length={length!r}")
    return max(1, math.ceil((int(length) - overlap) / (tile_size - overlap)))


def tile_starts(length, tile_size: int, overlap: int = 0) -> tf.Tensor:
    """The start offsets of the tiles along one axis (int32 ``[n]``, increasing).

    ``start_i = (i * (length - tile_size)) // (n - 1)``: the first tile starts at 0,
    the last ends at ``length``, and consecutive starts differ by at most
    ``tile_size - overlap``.

    Args:
        length: the axis length (int or scalar int tensor, ``>= tile_size``).
        tile_size, overlap: as :func:`check_tiling`.
    """
    tile_size, overlap = check_tiling(tile_size, overlap, required=True)
    length = tf.cast(length, tf.int32)
    step = tile_size - overlap
    n = tf.maximum(1, (length - overlap + step - 1) // step)
    span = length - tile_size
    return (tf.range(n) * span) // tf.maximum(n - 1, 1)


def tile_grid(height, width, tile_size: int, overlap: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """The top-left corners of the tiles covering a ``height x width`` frame, row-major.

    Returns:
        ``(ys, xs)``: int32 ``[N]`` each, ``N = n_rows * n_cols``.
    """
    rows = tile_starts(height, tile_size, overlap)
    cols = tile_starts(width, tile_size, overlap)
    ys = tf.repeat(rows, tf.size(cols))
    xs = tf.tile(cols, [tf.size(rows)])
    return ys, xs


def window_1d(tile_size: int, floor: float = WINDOW_FLOOR) -> tf.Tensor:
    """``floor + (1 - floor) * sin(pi * (i + 0.5) / tile_size) ** 2`` for ``i < tile_size``."""
    tile_size, _ = check_tiling(tile_size, required=True)
    if not 0 < float(floor) <= 1:
        raise ValueError(f"Expected `floor` in (0, 1]. Received: floor={floor!r}")
    i = tf.range(tile_size, dtype=tf.float32)
    return floor + (1.0 - floor) * tf.square(tf.sin(math.pi * (i + 0.5) / tile_size))


def tile_window(tile_size: int, floor: float = WINDOW_FLOOR) -> tf.Tensor:
    """The blending weights of one tile: the outer product of :func:`window_1d` (``[T, T]``).

    A Hann (cosine-squared) window, symmetric, largest (1) at the centre and
    ``> floor`` everywhere, so every pixel of a tile has a positive weight.
    """
    w = window_1d(tile_size, floor)
    return w[:, None] * w[None, :]


def _axis_weight_sum(length, tile_size, overlap, floor):
    """``[length]``: the sum over the tiles of one axis of their 1-D windows."""
    starts = tile_starts(length, tile_size, overlap)
    w = window_1d(tile_size, floor)
    idx = (starts[:, None] + tf.range(tile_size)[None, :])[..., None]
    updates = tf.tile(w[None, :], [tf.size(starts), 1])
    return tf.scatter_nd(idx, updates, tf.reshape(tf.cast(length, tf.int32), [1]))


def window_sum(height, width, tile_size: int, overlap: int = 0, floor: float = WINDOW_FLOOR):
    """The sum of the tile windows at every pixel of a frame (``[H, W]``, > 0 everywhere).

    The window and the grid are separable, so this is the outer product of one sum per axis.
    """
    rows = _axis_weight_sum(height, tile_size, overlap, floor)
    cols = _axis_weight_sum(width, tile_size, overlap, floor)
    return rows[:, None] * cols[None, :]


def _pixel_indices(frame_ids, ys, xs, tile_size):
    """``[K, T, T, 3]`` int32 (frame, row, col) of every pixel of the K tiles."""
    r = tf.range(tile_size)
    k = tf.size(ys)
    rows = tf.broadcast_to((ys[:, None] + r[None, :])[:, :, None], [k, tile_size, tile_size])
    cols = tf.broadcast_to((xs[:, None] + r[None, :])[:, None, :], [k, tile_size, tile_size])
    frames = tf.broadcast_to(frame_ids[:, None, None], [k, tile_size, tile_size])
    return tf.stack([frames, rows, cols], axis=-1)


def extract_tiles(frames, frame_ids, ys, xs, tile_size: int) -> tf.Tensor:
    """Cuts tiles out of a batch of frames.

    Args:
        frames: ``[B, H, W, ...]``.
        frame_ids, ys, xs: int ``[K]``: the frame and top-left corner of each tile.
        tile_size: the side of the tiles.

    Returns:
        ``[K, T, T, ...]`` (exact copies of the frames' pixels).
    """
    tile_size, _ = check_tiling(tile_size, required=True)
    ids = [tf.cast(v, tf.int32) for v in (frame_ids, ys, xs)]
    return tf.gather_nd(frames, _pixel_indices(*ids, tile_size))


def accumulate_tiles(acc, tiles, frame_ids, ys, xs, window) -> tf.Tensor:
    """``acc`` plus each tile times ``window``, added at its place in its frame.

    Args:
        acc: ``[B, H, W, ...]`` float32 accumulator.
        tiles: ``[K, T, T, ...]`` (the same trailing axes as ``acc``).
        frame_ids, ys, xs: int ``[K]``.
        window: ``[T, T]`` weights (:func:`tile_window`).

    Returns:
        The new accumulator (``acc`` is not modified).
    """
    tiles = tf.cast(tiles, tf.float32)
    t = tf.shape(window)[0]
    extra = tf.ones([tf.rank(tiles) - 3], tf.int32)
    w = tf.reshape(window, tf.concat([[1, t, t], extra], 0))
    ids = [tf.cast(v, tf.int32) for v in (frame_ids, ys, xs)]
    idx = _pixel_indices(*ids, t)
    return tf.tensor_scatter_nd_add(acc, idx, tiles * w)


def check_frame_size(height, width, tile_size: int) -> list:
    """Checks that a frame is at least one tile in both directions.

    With static sizes it raises ``ValueError`` at once; with dynamic ones it returns
    the assertion ops (``InvalidArgumentError`` at run time) to depend on.
    """
    static = [tf.get_static_value(tf.convert_to_tensor(v)) for v in (height, width)]
    if all(v is not None for v in static):
        if min(static) < tile_size:
            raise ValueError(
                f"Expected frames of at least tile_size x tile_size = {tile_size}x{tile_size} "
                f"pixels. Received: frames of {static[0]}x{static[1]} pixels (resize them or "
                "score them without tiling)"
            )
        return []
    message = (
        f"Expected frames of at least tile_size x tile_size = {tile_size}x{tile_size} pixels "
        "(resize them or score them without tiling)"
    )
    return [
        tf.debugging.assert_greater_equal(tf.cast(height, tf.int32), tile_size, message=message),
        tf.debugging.assert_greater_equal(tf.cast(width, tf.int32), tile_size, message=message),
    ]


def blend_tiles(tiles, ys, xs, height, width, floor: float = WINDOW_FLOOR) -> tf.Tensor:
    """Blends the tiles of one frame into the frame (the window-weighted mean per pixel).

    Args:
        tiles: ``[N, T, T, ...]`` in the order of :func:`tile_grid`.
        ys, xs: int ``[N]``: the tiles' corners.
        height, width: the frame's size.
        floor: the window's floor (:func:`tile_window`).

    Returns:
        ``[H, W, ...]`` float32: ``sum_t w_t * tile_t / sum_t w_t``.
    """
    tiles = tf.cast(tiles, tf.float32)
    shape = tf.shape(tiles)
    t = int(tiles.shape[1]) if tiles.shape[1] is not None else None
    if t is None:
        raise ValueError("Expected tiles with a static tile size.")
    acc = tf.zeros(tf.concat([[1, height, width], shape[3:]], 0), tf.float32)
    ids = tf.zeros_like(tf.cast(ys, tf.int32))
    acc = accumulate_tiles(acc, tiles, ids, ys, xs, tile_window(t, floor))[0]
    # The overlap of the grid is not needed here: the weights are summed from the corners.
    weights = tf.zeros(tf.stack([height, width]), tf.float32)
    weights = tf.tensor_scatter_nd_add(
        weights[None],
        _pixel_indices(ids, tf.cast(ys, tf.int32), tf.cast(xs, tf.int32), t),
        tf.tile(tile_window(t, floor)[None], [tf.size(ys), 1, 1]),
    )[0]
    extra = tf.ones([tf.rank(acc) - 2], tf.int32)
    return acc / tf.reshape(weights, tf.concat([tf.shape(weights), extra], 0))
