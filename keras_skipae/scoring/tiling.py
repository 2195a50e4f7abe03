"""Tiled scoring of large frames: :func:`compute_tiled`, and :func:`make_tiled_scorer` around it.

A frame larger than the model's input is not resized (a defect of a few pixels would
vanish) but covered with overlapping tiles (:mod:`keras_skipae.ops.tiling`). Each batch
of tiles is scored by :func:`keras_skipae.scoring.compute` (the one implementation of
the maps), the tile maps and reconstructions are blended into full-resolution ones
with a Hann window, and then, once, on the blended map:

1. the config's **smoothing** (Gaussian sigma and border mode), and
2. the config's **image score** (max, mean, top-k, Lp).

Why smoothing on the blended map, not per tile: smoothing is a property of the frame,
not of the tiles. Per tile, the border mode would act at every tile edge (``"equalized"``
scales an edge pixel by ~0.7), printing a grid of seams into the map and damping a defect
that sits on a seam; the blended map has one border, the frame's, handled as in
untiled scoring. The maps of the tiles are therefore computed with ``smoothing=0``
and, for a model whose map at a pixel depends on that pixel only, the tiled result
equals the untiled one exactly.

TF ops only, with dynamic shapes: the loop over tile batches is a ``tf.while_loop``
(one batch of tiles in flight at a time), so the same function runs eagerly, in
``tf.function`` and in the SavedModel's ``serving_tiled`` signature.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from keras_skipae.ops.tiling import (
    WINDOW_FLOOR,
    accumulate_tiles,
    check_frame_size,
    check_tiling,
    extract_tiles,
    tile_grid,
    tile_window,
    window_sum,
)
from keras_skipae.scoring.common import _check_rank, to_float_images
from keras_skipae.scoring.config import ScoringConfig
from keras_skipae.scoring.maps import mc_dropout_model
from keras_skipae.scoring.scorer import compute
from keras_skipae.scoring.scores import image_score
from keras_skipae.scoring.smoothing import gaussian_smooth

#: Tiles per model call when ``batch_size`` is not given.
DEFAULT_TILE_BATCH = 32


def _check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            f"Expected `batch_size` to be an int >= 1. Received: batch_size={batch_size!r}"
        )
    return batch_size


def _frame_size(frames):
    """``(height, width)`` of ``[B, H, W, C]`` frames: Python ints where static, else tensors."""
    dynamic = tf.shape(frames)
    h = frames.shape[1] if frames.shape[1] is not None else dynamic[1]
    w = frames.shape[2] if frames.shape[2] is not None else dynamic[2]
    return h, w


def compute_tiled(
    model: keras.Model,
    frames,
    tile_size: int,
    tile_overlap: int = 0,
    scoring: ScoringConfig | dict | None = None,
    *,
    batch_size: int = DEFAULT_TILE_BATCH,
) -> dict[str, tf.Tensor]:
    """Scores full-resolution frames tile by tile: maps, reconstructions and scores.

    Args:
        model: an autoencoder that takes ``tile_size x tile_size`` images.
        frames: ``[B, H, W, C]`` float32 in [0, 1] (uint8 is divided by 255), with
            ``H, W >= tile_size`` (smaller frames are refused: resize them or score
            them without tiling).
        tile_size: the side of the square tiles, in pixels.
        tile_overlap: the least overlap of neighbouring tiles, ``0 <= overlap < tile_size``.
        scoring: a :class:`ScoringConfig` (or its dict); None: the defaults. The map is
            computed per tile; the smoothing and the score on the blended map.
        batch_size: tiles per model call (memory grows with it, not with the frame).

    Returns:
        A dict like :func:`~keras_skipae.scoring.compute`'s, at the frames' resolution:
        ``reconstruction`` ``[B, H, W, C]`` and ``anomaly_map`` ``[B, H, W]`` (blended;
        the map smoothed afterwards) and ``score`` ``[B]``, all float32.

    Raises:
        ValueError: bad tiling arguments, or frames smaller than a tile (static sizes;
            ``InvalidArgumentError`` at run time for dynamic ones).

    Example:
        >>> out = compute_tiled(model, frames_1024, tile_size=128, tile_overlap=32)
        >>> out["anomaly_map"].shape                       # [B, 1024, 1024]
    """
    cfg = ScoringConfig.resolve(scoring, caller="compute_tiled")
    tile, overlap = check_tiling(tile_size, tile_overlap, required=True)
    batch_size = _check_batch_size(batch_size)
    frames = to_float_images(frames)
    _check_rank(frames, 4, "frames")
    h, w = _frame_size(frames)
    checks = check_frame_size(h, w, tile)
    if checks:  # dynamic sizes: every op below reads frames only after the checks passed
        with tf.control_dependencies(checks):
            frames = tf.identity(frames)
        h, w = _frame_size(frames)
    dynamic = tf.shape(frames)
    b, c = dynamic[0], dynamic[3]
    ys, xs = tile_grid(h, w, tile, overlap)
    n = tf.size(ys)
    total = b * n
    frame_ids = tf.repeat(tf.range(b), n)
    ys, xs = tf.tile(ys, [b]), tf.tile(xs, [b])
    window = tile_window(tile, WINDOW_FLOOR)
    tile_cfg = cfg.replace(smoothing=0.0)

    def body(i, acc_map, acc_rec):
        lo = i * batch_size
        hi = tf.minimum(lo + batch_size, total)
        ids, y, x = frame_ids[lo:hi], ys[lo:hi], xs[lo:hi]
        tiles = extract_tiles(frames, ids, y, x, tile)
        tiles = tf.ensure_shape(tiles, [None, tile, tile, frames.shape[-1]])
        out = compute(model, tiles, tile_cfg)
        acc_map = accumulate_tiles(acc_map, out["anomaly_map"], ids, y, x, window)
        acc_rec = accumulate_tiles(acc_rec, out["reconstruction"], ids, y, x, window)
        return i + 1, acc_map, acc_rec

    acc_map = tf.zeros(tf.stack([b, h, w]), tf.float32)
    acc_rec = tf.zeros(tf.stack([b, h, w, c]), tf.float32)
    n_batches = (total + batch_size - 1) // batch_size
    _, acc_map, acc_rec = tf.while_loop(
        lambda i, *_: i < n_batches,
        body,
        (tf.constant(0), acc_map, acc_rec),
        parallel_iterations=1,  # one batch of tiles in memory at a time
    )
    weights = window_sum(h, w, tile, overlap, WINDOW_FLOOR)
    raw = acc_map / weights[None]
    reconstruction = acc_rec / weights[None, :, :, None]
    anomaly_map = gaussian_smooth(raw, cfg.smoothing, cfg.smoothing_border)
    scores = image_score(anomaly_map, cfg.score, topk=cfg.topk, p=cfg.p)
    return {"reconstruction": reconstruction, "anomaly_map": anomaly_map, "score": scores}


def make_tiled_scorer(
    model: keras.Model,
    scoring: ScoringConfig | dict | None = None,
    *,
    tile_size: int,
    tile_overlap: int = 0,
    batch_size: int = DEFAULT_TILE_BATCH,
    channels: int | None = None,
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """:func:`compute_tiled` bound to a model, a config and a tiling, compiled once.

    Args:
        model: the autoencoder.
        scoring: a :class:`ScoringConfig` (or its dict); None: the defaults.
        tile_size, tile_overlap, batch_size: as :func:`compute_tiled`.
        channels: the frames' channel count; None: the model's.

    Returns:
        ``fn(frames) -> dict(reconstruction, anomaly_map, score)``, one trace for any
        batch size and frame size (input float32 ``[None, None, None, channels]``).
    """
    cfg = ScoringConfig.resolve(scoring, caller="make_tiled_scorer")
    tile, overlap = check_tiling(tile_size, tile_overlap, required=True)
    batch_size = _check_batch_size(batch_size)
    if channels is None:
        channels = model.input_shape[-1]
    if cfg.map == "mc_dropout":
        mc_dropout_model(model)  # build the clone (its variables) eagerly

    def scorer(frames):
        return compute_tiled(model, frames, tile, overlap, cfg, batch_size=batch_size)

    spec = tf.TensorSpec([None, None, None, channels], tf.float32)
    return tf.function(scorer, input_signature=[spec], autograph=False)
