"""Vectorised raster helpers: closed-curve fills, patches, stamped strokes, painting."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from keras_skipae.ops import image as image_ops


@functools.lru_cache(maxsize=16)
def _periodic_spline_matrix(n_points: int, samples_per_segment: int) -> np.ndarray:
    """Matrix [M, N] evaluating the periodic (closed) interpolating cubic spline.

    The spline through ``N`` control values with uniform knots is linear in the
    values, so sampling it ``samples_per_segment`` times per segment is a
    constant matrix product. Row ``m`` gives the curve at parameter
    ``m / samples_per_segment`` (in units of the control-point spacing).
    """
    n, s = n_points, samples_per_segment
    # Second derivatives M solve  M[i-1] + 4 M[i] + M[i+1] = 6 (y[i-1] - 2 y[i] + y[i+1]).
    eye = np.eye(n)
    a = 4 * eye + np.roll(eye, 1, axis=1) + np.roll(eye, -1, axis=1)
    d2 = 6 * (np.roll(eye, 1, axis=1) - 2 * eye + np.roll(eye, -1, axis=1))
    second = np.linalg.solve(a, d2)  # [N, N]: second derivatives from values
    rows = []
    for i in range(n):
        j = (i + 1) % n
        for k in range(s):
            u = k / s
            row = np.zeros(n)
            row[i] += 1 - u
            row[j] += u
            row += ((1 - u) ** 3 - (1 - u)) / 6 * second[i] + (u**3 - u) / 6 * second[j]
            rows.append(row)
    return np.asarray(rows, dtype=np.float32)


def _fill_closed_curves(ys, xs, height, width, max_rows=None):
    """Even-odd fill of closed polygons, one per row of ``ys``/``xs``.

    Args:
        ys, xs: float32 ``[N, M]`` vertex coordinates (pixel centres are the
            integers ``0..height-1`` / ``0..width-1``); polygon ``n`` is closed.
        height, width: static size of the output grid.
        max_rows: static bound on the pixel rows one edge crosses (None: any).
            With a bound, only ``N * M * max_rows`` (edge, row) pairs are
            examined instead of ``N * M * height``.

    Returns:
        float32 ``[N, height, width]`` in {0, 1}: 1 where the pixel centre is
        inside the polygon (even-odd rule, as a scanline fill).

    Edge (a, b) crosses the rows r with min(ya, yb) <= r < max(ya, yb) (the
    half-open rule counts shared vertices once). Crossings are histogrammed per
    row and column (a segment sum), and a cumulative sum along x gives, for every
    pixel, the number of edges to its left.
    """
    ya, xa = ys, xs
    yb, xb = tf.roll(ys, -1, axis=-1), tf.roll(xs, -1, axis=-1)
    lo, hi = tf.minimum(ya, yb), tf.maximum(ya, yb)
    dy = yb - ya
    slope = (xb - xa) / tf.where(tf.equal(dy, 0.0), tf.ones_like(dy), dy)
    if max_rows is None:
        rows = tf.range(height, dtype=tf.float32)[None, None, :]  # [1, 1, R]
    else:
        rows = tf.math.ceil(lo)[..., None] + tf.range(max_rows, dtype=tf.float32)  # [N, M, R]
    crosses = (rows >= lo[..., None]) & (rows < hi[..., None]) & (rows < height) & (rows >= 0)
    x_cross = xa[..., None] + (rows - ya[..., None]) * slope[..., None]
    # A crossing at x counts for every pixel centre c > x, i.e. c >= floor(x) + 1.
    col = tf.cast(tf.clip_by_value(tf.math.floor(x_cross) + 1.0, 0.0, float(width)), tf.int32)
    row = tf.cast(tf.clip_by_value(rows, 0.0, height - 1.0), tf.int32)
    n = tf.shape(ys)[0]
    bins = n * height * (width + 1)
    base = tf.reshape(tf.range(n, dtype=tf.int32) * (height * (width + 1)), [-1, 1, 1])
    seg = tf.where(crosses, base + row * (width + 1) + col, bins)  # non-crossings: dump bin
    hist = tf.math.unsorted_segment_sum(tf.cast(crosses, tf.float32), seg, num_segments=bins + 1)
    hist = tf.reshape(hist[:bins], [n, height, width + 1])[:, :, :width]
    count = tf.cumsum(hist, axis=-1)
    return tf.math.floormod(count, 2.0)


def _gaussian_matrix(sigma, size):
    """[..., size, size] 'same' Gaussian filtering matrices with zero padding.

    ``sigma`` has any batch shape; the kernel is truncated at 3 sigma and
    normalised to sum 1 over its full support (so weight leaks out at borders,
    as with zero padding).
    """
    sigma = tf.maximum(sigma, 1e-3)[..., None, None]
    idx = tf.range(size, dtype=tf.float32)
    d = idx[:, None] - idx[None, :]
    g = image_ops.gaussian(d, sigma)
    g = tf.where(tf.abs(d) <= 3.0 * sigma, g, 0.0)
    full = tf.range(-size, size + 1, dtype=tf.float32)
    z = tf.reduce_sum(
        tf.where(tf.abs(full) <= 3.0 * sigma, image_ops.gaussian(full, sigma), 0.0),
        axis=-1,
        keepdims=True,
    )
    return g / z


def _patch_rows_cols(y0, x0, ph, pw, height, width):
    """Row / column indices of the patches at (y0, x0), and their validity in the image."""
    ry = tf.range(height)[None, :] - y0[:, None]  # [B, H]: patch row of each image row
    rx = tf.range(width)[None, :] - x0[:, None]
    in_y = (ry >= 0) & (ry < ph)
    in_x = (rx >= 0) & (rx < pw)
    return tf.where(in_y, ry, 0), tf.where(in_x, rx, 0), in_y, in_x


def _extract_patches(images, y0, x0, ph, pw):
    """[B, ph, pw, C] patches of ``images`` at (y0, x0) (inside the image), by two gathers."""
    rows = tf.gather(images, y0[:, None] + tf.range(ph)[None, :], axis=1, batch_dims=1)
    return tf.gather(rows, x0[:, None] + tf.range(pw)[None, :], axis=2, batch_dims=1)


def _paste_patches(images, patches, y0, x0):
    """``images`` with ``patches`` [B, ph, pw, C] written at (y0, x0) (inside the image).

    Two batched gathers (image rows from patch rows, then columns after a
    transpose) and one select, instead of a scatter: TF's CPU scatter kernels
    cost several times more, and gathers are XLA- and GPU-friendly.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    ph, pw = patches.shape[1], patches.shape[2]
    ry, rx, in_y, in_x = _patch_rows_cols(y0, x0, ph, pw, height, width)
    b = tf.shape(patches)[0]
    if channels == 1:
        p = patches[..., 0]
    else:  # channels next to the batch: [B * C, ph, pw]
        p = tf.reshape(tf.transpose(patches, [0, 3, 1, 2]), [-1, ph, pw])
        ry, rx = tf.repeat(ry, channels, axis=0), tf.repeat(rx, channels, axis=0)
    rows = tf.gather(p, ry, axis=1, batch_dims=1)  # [B', H, pw]
    cols = tf.gather(tf.transpose(rows, [0, 2, 1]), rx, axis=1, batch_dims=1)  # [B', W, H]
    full = tf.transpose(cols, [0, 2, 1])
    if channels == 1:
        full = full[..., None]
    else:
        full = tf.transpose(tf.reshape(full, tf.stack([b, channels, height, width])), [0, 2, 3, 1])
    region = (in_y[:, :, None] & in_x[:, None, :])[..., None]
    return tf.where(region, full, images)


def _stamp_ids(shape, py, px, radius, active, footprint):
    """Rasterises discs into an object-id map, vectorised over batch and objects.

    Args:
        shape: static (H, W).
        py, px: float32 ``[B, K, S]`` disc centres (K objects of S discs each).
        radius: float32 ``[B, K, S]`` or broadcastable: disc radii in pixels.
        active: bool ``[B, K]``: objects to draw.
        footprint: static int F: each disc covers at most the (2F+1)^2 pixels
            around its nearest pixel.

    Returns:
        int32 ``[B, H, W]``: 0 for background, else 1 + the index of the last
        object (highest k) covering the pixel. A disc always covers its nearest
        pixel, so radii below 0.5 px still draw 1-px-wide lines.
    """
    height, width = shape
    b = tf.shape(py)[0]
    k, s = py.shape[1], py.shape[2]
    off = tf.range(-footprint, footprint + 1, dtype=tf.float32)
    oy = tf.reshape(off, [1, 1, 1, -1, 1])
    ox = tf.reshape(off, [1, 1, 1, 1, -1])
    cy = tf.round(py)[..., None, None]
    cx = tf.round(px)[..., None, None]
    yy, xx = cy + oy, cx + ox  # [B, K, S, F', F']
    dist2 = tf.square(yy - py[..., None, None]) + tf.square(xx - px[..., None, None])
    radius = tf.broadcast_to(radius, tf.shape(py))[..., None, None]
    inside = (dist2 <= tf.square(radius)) | ((tf.equal(oy, 0.0)) & (tf.equal(ox, 0.0)))
    inside &= (yy >= 0) & (yy <= height - 1) & (xx >= 0) & (xx <= width - 1)
    inside &= active[:, :, None, None, None]
    ids = tf.reshape(tf.range(1, k + 1, dtype=tf.int32), [1, k, 1, 1, 1])
    updates = tf.where(inside, ids, 0)
    yi = tf.cast(tf.clip_by_value(yy, 0, height - 1), tf.int32)
    xi = tf.cast(tf.clip_by_value(xx, 0, width - 1), tf.int32)
    full = tf.shape(updates)
    bi = tf.broadcast_to(tf.reshape(tf.range(b), [-1, 1, 1, 1, 1]), full)
    yi = tf.broadcast_to(yi, full)
    xi = tf.broadcast_to(xi, full)
    idx = tf.reshape(tf.stack([bi, yi, xi], axis=-1), [-1, 3])
    del s
    return tf.tensor_scatter_nd_max(
        tf.zeros([b, height, width], tf.int32), idx, tf.reshape(updates, [-1])
    )


def _paint_ids(images, ids, values):
    """Paints object values over ``images`` where ``ids`` > 0.

    Args:
        images: float32 [B, H, W, C].
        ids: int32 [B, H, W] from :func:`_stamp_ids`.
        values: float32 [B, K, C'] with C' in (1, C): the colour of each object.

    Returns:
        (painted images, float32 mask [B, H, W, 1]).
    """
    sel = tf.maximum(ids - 1, 0)
    colour = tf.gather(values, sel, batch_dims=1)  # [B, H, W, C']
    on = (ids > 0)[..., None]
    painted = tf.where(on, colour, images)
    return painted, tf.cast(on, tf.float32)
