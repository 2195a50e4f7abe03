"""Procedural inspection data in the MVTec AD layout, for demos, tests and notebooks.

Nobody here can download MVTec AD, and many users are air-gapped, so this module
draws its own: textures and an object part, each with realistic defects (thin
scratches and cracks, holes, contamination with foreign material, subtle colour
changes, misplaced texture) and exact ground-truth masks.

Categories (:data:`CATEGORIES`):

* ``woven``: a woven carpet-like fabric (RGB), with per-thread colour and fibre noise;
* ``mesh``: a metal wire grid (grayscale), like MVTec's *grid*;
* ``wood``: wood grain (RGB): warped growth rings and fibres;
* ``gravel``: a stochastic natural texture (grayscale): pebbles on sand, where
  thin defects hide among similar structures;
* ``nut``: an object (grayscale): a centred hex nut with a small pose jitter.

:func:`make_dataset` writes them in the MVTec AD layout; :func:`labelled_arrays` and
:func:`labelled_dataset` give a seeded labelled split (defective images with their
masks, and good ones) in memory, for supervised examples.

Every sample draws new random phases, offsets, orientations and noise, so a model
must learn the texture, not memorise one image. Generation is deterministic for a
given seed and uses only NumPy and OpenCV (offline data generation).

Each defect's mask marks exactly the pixels that differ from the clean image it
was drawn on: the defect is drawn, the 8-bit result is compared with the clean
8-bit image, pixels outside the intended region are reset, and the few pixels
inside the region that happen to keep their value are nudged by 3 grey levels.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from keras_skipae import ownership, plotting
from keras_skipae.data.corruptions import Stains, get
from keras_skipae.io_utils import atomic_path

__all__ = [
    "CATEGORIES",
    "DEFECTS",
    "list_categories",
    "make_dataset",
    "generate_sample",
    "labelled_arrays",
    "labelled_dataset",
    "LABELLED_SPLIT_ID",
    "preview",
]

#: category -> (channels, defect types)
_SPEC = {
    "woven": (3, ("hole", "contamination", "color", "misplaced", "cut")),
    "mesh": (1, ("broken", "bent", "contamination", "scratch")),
    "wood": (3, ("scratch", "crack", "hole", "color", "contamination")),
    "gravel": (1, ("crack", "contamination", "color", "misplaced", "hole")),
    "nut": (1, ("scratch", "chip", "contamination", "color")),
}
CATEGORIES = tuple(_SPEC)
DEFECTS = {k: v[1] for k, v in _SPEC.items()}


def list_categories() -> list[str]:
    """The synthetic categories, e.g. ``["woven", "mesh", "wood", "gravel", "nut"]``."""
    return list(CATEGORIES)


# --------------------------------------------------------------------------- noise helpers


def _smooth_noise(rng, size, cell):
    """Smooth value noise ~N(0, 1)-ish with features of about ``cell`` pixels."""
    n = int(math.ceil(size / cell)) + 3
    grid = rng.standard_normal((n, n)).astype(np.float32)
    big = cv2.resize(grid, (n * cell, n * cell), interpolation=cv2.INTER_CUBIC)
    oy, ox = rng.integers(0, cell, size=2)
    return big[oy : oy + size, ox : ox + size]


def _fbm(rng, size, cells=(32, 16, 8), gains=(1.0, 0.5, 0.25)):
    out = np.zeros((size, size), np.float32)
    for c, g in zip(cells, gains):
        out += g * _smooth_noise(rng, size, max(2, int(c)))
    return out


def _grid(size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _tint(gray, dark, light):
    g = np.clip(gray, 0.0, 1.0)[..., None]
    return np.asarray(dark, np.float32) * (1 - g) + np.asarray(light, np.float32) * g


# --------------------------------------------------------------------------- textures


def _woven(rng, size):
    s = size / 128.0
    period = rng.uniform(9.0, 11.0) * s
    theta = rng.uniform(-0.04, 0.04)
    yy, xx = _grid(size)
    u = (xx * math.cos(theta) + yy * math.sin(theta)) / period + rng.uniform(0, 2)
    v = (-xx * math.sin(theta) + yy * math.cos(theta)) / period + rng.uniform(0, 2)
    i, j = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - i, v - j
    gains = 0.85 + 0.15 * rng.random(64)
    over = ((i + j) % 2) == 0
    warp = np.sin(np.pi * fu) ** 0.7 * (0.8 + 0.2 * np.cos(np.pi * (fv - 0.5))) * gains[i % 64]
    weft = (
        np.sin(np.pi * fv) ** 0.7 * (0.8 + 0.2 * np.cos(np.pi * (fu - 0.5))) * gains[(j + 17) % 64]
    )
    base = np.where(over, warp, weft)
    fib = rng.standard_normal((size, size)).astype(np.float32)
    fib_v = cv2.GaussianBlur(fib, (1, 7), 0, sigmaY=2.0)
    fib_h = cv2.GaussianBlur(fib, (7, 1), 2.0)
    fibres = np.where(over, fib_v, fib_h)
    light = 0.06 * _smooth_noise(rng, size, max(4, int(48 * s)))
    g = 0.18 + 0.62 * base + 0.10 * fibres + light
    hue = rng.uniform(-0.03, 0.03)
    return _tint(g, (0.10, 0.07 + hue, 0.06), (0.80, 0.62 + hue, 0.48))


def _mesh(rng, size):
    s = size / 128.0
    period = rng.uniform(13.0, 15.0) * s
    theta = rng.uniform(-0.03, 0.03)
    yy, xx = _grid(size)
    warp_y = 0.8 * s * _smooth_noise(rng, size, max(4, int(40 * s)))
    warp_x = 0.8 * s * _smooth_noise(rng, size, max(4, int(40 * s)))
    u = (xx + warp_x) * math.cos(theta) + (yy + warp_y) * math.sin(theta) + rng.uniform(0, period)
    v = -(xx + warp_x) * math.sin(theta) + (yy + warp_y) * math.cos(theta) + rng.uniform(0, period)
    half = rng.uniform(1.6, 2.0) * s
    du = np.abs(((u / period) % 1.0) - 0.5) * period  # distance to the wire axis ...
    dv = np.abs(((v / period) % 1.0) - 0.5) * period
    wire_u = np.sqrt(np.clip(1 - (du / half) ** 2, 0, 1))  # cylinder shading
    wire_v = np.sqrt(np.clip(1 - (dv / half) ** 2, 0, 1))
    cell = (np.floor(u / period + 0.5) + np.floor(v / period + 0.5)) % 2
    top_u = np.where(cell == 0, wire_u, wire_u * 0.8)
    top_v = np.where(cell == 1, wire_v, wire_v * 0.8)
    wires = np.maximum(top_u, top_v)
    bg = 0.10 + 0.04 * _smooth_noise(rng, size, max(4, int(24 * s)))
    g = bg + (0.55 + 0.10 * _smooth_noise(rng, size, max(4, int(32 * s)))) * wires
    g += 0.02 * rng.standard_normal((size, size)).astype(np.float32)
    return g[..., None]


def _wood(rng, size):
    s = size / 128.0
    yy, xx = _grid(size)
    theta = rng.uniform(-0.08, 0.08)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    warp = 6.0 * s * _fbm(rng, size, cells=(64 * s, 24 * s), gains=(1.0, 0.35))
    period = rng.uniform(9.0, 13.0) * s
    rings = (v + warp) / period + rng.uniform(0, 1)
    g = (0.5 + 0.5 * np.sin(2 * np.pi * rings)) ** 1.8
    fib = rng.standard_normal((size, size)).astype(np.float32)
    rot = cv2.getRotationMatrix2D((size / 2, size / 2), math.degrees(theta), 1.0)
    fibres = cv2.GaussianBlur(fib, (31, 1), 8.0 * s, sigmaY=0.6)
    fibres = cv2.warpAffine(fibres, rot, (size, size), borderMode=cv2.BORDER_REFLECT)
    val = 0.40 + 0.28 * g + 0.10 * fibres + 0.05 * _smooth_noise(rng, size, max(4, int(48 * s)))
    return _tint(val, (0.25, 0.13, 0.06), (0.92, 0.68, 0.42))


def _gravel(rng, size):
    s = size / 128.0
    sand = 0.42 + 0.05 * _smooth_noise(rng, size, max(2, int(6 * s)))
    sand += 0.05 * rng.standard_normal((size, size)).astype(np.float32)
    img = _to_u8(sand)
    cover = np.zeros((size, size), np.uint8)
    n = int(240 * s * s)
    centres = rng.uniform(-4, size + 4, size=(n, 2))
    axes = rng.uniform(2.0, 6.0, size=n) * s
    ratios = rng.uniform(0.5, 1.0, size=n)
    angles = rng.uniform(0, 180, size=n)
    greys = np.clip(rng.normal(0.5, 0.14, size=n), 0.15, 0.9)
    for (cx, cy), ax, ratio, ang, grey in zip(centres, axes, ratios, angles, greys):
        c, a = (int(cx * 16), int(cy * 16)), (int(ax * 16), int(ax * ratio * 16))
        cv2.ellipse(img, c, a, ang, 0, 360, int(grey * 255), -1, cv2.LINE_AA, 4)
        cv2.ellipse(cover, c, a, ang, 0, 360, 0, -1, cv2.LINE_AA, 4)  # pebble borders
        cv2.ellipse(
            cover, c, (max(a[0] - 24, 8), max(a[1] - 24, 8)), ang, 0, 360, 255, -1, cv2.LINE_AA, 4
        )
    h = cv2.GaussianBlur(cover.astype(np.float32) / 255.0, (0, 0), 1.0 * s)
    shade = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3)
    g = img.astype(np.float32) / 255.0 + 0.10 * shade + 0.15 * (h - 0.5)
    g += 0.03 * rng.standard_normal((size, size)).astype(np.float32)
    return g[..., None]


def _nut(rng, size):
    """A centred hex nut on a dark background; returns (image, object mask)."""
    s = size / 128.0
    yy, xx = _grid(size)
    cy = size / 2 + rng.uniform(-2, 2) * s
    cx = size / 2 + rng.uniform(-2, 2) * s
    ang = rng.uniform(-0.15, 0.15)
    radius = 0.36 * size * rng.uniform(0.98, 1.02)
    pts = [
        (
            cx + radius * math.cos(ang + k * math.pi / 3),
            cy + radius * math.sin(ang + k * math.pi / 3),
        )
        for k in range(6)
    ]
    poly = np.round(np.asarray(pts) * 16).astype(np.int32)
    body = np.zeros((size, size), np.uint8)
    cv2.fillPoly(body, [poly], 255, cv2.LINE_AA, 4)
    r = np.hypot(yy - cy, xx - cx)
    phi = np.arctan2(yy - cy, xx - cx)
    hole_r = 0.15 * size
    hole = np.clip(r - hole_r + 0.5, 0, 1)  # 0 inside the bore, antialiased edge
    alpha = body.astype(np.float32) / 255.0 * hole
    chamfer = np.clip(1 - np.abs(r - 0.26 * size) / (0.05 * size), 0, 1)
    metal = (
        0.55
        + 0.12 * np.cos(phi - 0.8)
        + 0.10 * chamfer * np.cos(phi + 2.0)
        + 0.03 * np.sin(r * 1.7 / s)
        + 0.03 * _smooth_noise(rng, size, max(2, int(8 * s)))
    )
    thread = np.clip(1 - np.abs(r - hole_r - 1.5 * s) / (1.5 * s), 0, 1)
    metal = metal - 0.25 * thread * (0.5 + 0.5 * np.sin(phi * 24))
    bg = 0.09 + 0.02 * _smooth_noise(rng, size, max(4, int(32 * s)))
    shadow = cv2.GaussianBlur(alpha, (0, 0), 3 * s)
    bg = bg * (1 - 0.5 * shadow)
    g = (
        bg * (1 - alpha)
        + metal * alpha
        + 0.015 * rng.standard_normal((size, size)).astype(np.float32)
    )
    return g[..., None], alpha > 0.5, bg[..., None]


_TEXTURES = {"woven": _woven, "mesh": _mesh, "wood": _wood, "gravel": _gravel}


def _clean(category, rng, size):
    """(image float32 [H, W, C], allowed-centre mask, background or None)."""
    if category == "nut":
        img, body, bg = _nut(rng, size)
        inner = cv2.erode(body.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        return np.clip(img, 0, 1), inner, np.clip(bg, 0, 1), body
    img = np.clip(_TEXTURES[category](rng, size), 0, 1).astype(np.float32)
    m = int(0.12 * size)
    allowed = np.zeros((size, size), bool)
    allowed[m : size - m, m : size - m] = True
    return img, allowed, None, None


# --------------------------------------------------------------------------- defect shapes


def _pick_centre(rng, allowed):
    ys, xs = np.nonzero(allowed)
    k = rng.integers(len(ys))
    return float(ys[k]), float(xs[k])


def _blob(rng, size, cy, cx, radius, wobble=0.3, smooth=True):
    """An irregular filled blob (float alpha in [0, 1], antialiased)."""
    n = 24
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    harmonics = sum(
        rng.normal(0, wobble / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in range(2, 5)
    )
    rr = radius * np.clip(1 + harmonics, 0.4, 1.8)
    pts = np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], -1)
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return canvas.astype(np.float32) / 255.0


def _curve(rng, cy, cx, length, bend=0.3, n=40):
    ang = rng.uniform(0, 2 * np.pi)
    p0 = np.array([cx, cy]) - 0.5 * length * np.array([np.cos(ang), np.sin(ang)])
    p2 = np.array([cx, cy]) + 0.5 * length * np.array([np.cos(ang), np.sin(ang)])
    normal = np.array([-np.sin(ang), np.cos(ang)])
    p1 = (p0 + p2) / 2 + normal * rng.uniform(-bend, bend) * length
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t**2 * p2  # [n, 2] (x, y)


def _draw_polyline(size, pts, thickness):
    canvas = np.zeros((size, size), np.uint8)
    cv2.polylines(
        canvas, [np.round(pts * 16).astype(np.int32)], False, 255, int(thickness), cv2.LINE_AA, 4
    )
    return canvas.astype(np.float32) / 255.0


def _crack_polyline(rng, cy, cx, length, step):
    n = max(4, int(length / step))
    ang = rng.uniform(0, 2 * np.pi)
    pts = [np.array([cx, cy])]
    for _ in range(n):
        ang += rng.normal(0, 0.45)
        pts.append(pts[-1] + step * np.array([np.cos(ang), np.sin(ang)]))
    return np.asarray(pts)


# --------------------------------------------------------------------------- defects


def _d_scratch(rng, img, ctx):
    size = img.shape[0]
    cy, cx = _pick_centre(rng, ctx["allowed"])
    pts = _curve(rng, cy, cx, rng.uniform(0.15, 0.4) * size, bend=0.25)
    a = _draw_polyline(size, pts, rng.choice([1, 2]))
    delta = rng.choice([-1, 1]) * rng.uniform(0.2, 0.35)
    if ctx["body"] is not None:
        a = a * ctx["body"]
    out = np.clip(img + delta * a[..., None], 0, 1)
    return out, a >= 0.35


def _d_cut(rng, img, ctx):  # a cut thread: a short dark straight-ish line, 1-2 px
    size = img.shape[0]
    cy, cx = _pick_centre(rng, ctx["allowed"])
    pts = _curve(rng, cy, cx, rng.uniform(0.15, 0.3) * size, bend=0.1)
    a = _draw_polyline(size, pts, rng.choice([1, 2]))
    out = img * (1 - 0.75 * a[..., None])
    return out, a >= 0.35


def _d_crack(rng, img, ctx):
    size = img.shape[0]
    cy, cx = _pick_centre(rng, ctx["allowed"])
    s = size / 128.0
    a = np.zeros((size, size), np.float32)
    main = _crack_polyline(rng, cy, cx, rng.uniform(0.2, 0.4) * size, 2.5 * s)
    a = np.maximum(a, _draw_polyline(size, main, rng.choice([1, 2])))
    for _ in range(rng.integers(1, 3)):  # branches
        k = rng.integers(len(main) // 4, len(main))
        br = _crack_polyline(rng, main[k][1], main[k][0], rng.uniform(0.05, 0.15) * size, 2.0 * s)
        a = np.maximum(a, _draw_polyline(size, br, 1))
    out = img * (1 - rng.uniform(0.55, 0.8) * a[..., None])
    return out, a >= 0.35


def _d_hole(rng, img, ctx, broken=False):
    size = img.shape[0]
    s = size / 128.0
    cy, cx = _pick_centre(rng, ctx["allowed"])
    radius = rng.uniform(0.03, 0.06) * size
    inner = _blob(rng, size, cy, cx, radius, wobble=0.35)
    rim = np.clip(cv2.GaussianBlur(inner, (0, 0), 1.0 * s) * 1.6, 0, 1)
    dark = 0.04 + 0.03 * rng.standard_normal(img.shape[:2]).astype(np.float32)
    frayed = img * (1 - 0.45 * (rim - inner)[..., None])  # darkened, torn edge
    if broken:  # mesh: the wires are gone, the dark background shows
        dark = 0.1 + 0.02 * rng.standard_normal(img.shape[:2]).astype(np.float32)
        out = img * (1 - inner[..., None]) + dark[..., None] * inner[..., None]
        return out, inner > 0.2
    out = frayed * (1 - inner[..., None]) + dark[..., None] * inner[..., None]
    return out, np.maximum(inner, rim - inner) > 0.2


def _d_broken(rng, img, ctx):
    return _d_hole(rng, img, ctx, broken=True)


def _d_contamination(rng, img, ctx):
    size = img.shape[0]
    s = size / 128.0
    cy, cx = _pick_centre(rng, ctx["allowed"])
    c = img.shape[2]
    if rng.random() < 0.5:  # a tuft of foreign fibres / hair
        a = np.zeros((size, size), np.float32)
        for _ in range(rng.integers(3, 7)):
            pts = _curve(
                rng,
                cy + rng.normal(0, 3 * s),
                cx + rng.normal(0, 3 * s),
                rng.uniform(0.08, 0.2) * size,
                bend=0.4,
            )
            a = np.maximum(a, _draw_polyline(size, pts, 1))
        colour = rng.uniform(0.0, 1.0, size=c).astype(np.float32)
        if c == 3 and rng.random() < 0.5:
            colour = np.array([0.15, 0.25, 0.65], np.float32)[rng.permutation(3)]
        out = img * (1 - a[..., None]) + colour * a[..., None]
        return out, a >= 0.35
    # a smear of foreign grainy material
    radius = rng.uniform(0.04, 0.08) * size
    a = _blob(rng, size, cy, cx, radius, wobble=0.4)
    a = np.clip(cv2.GaussianBlur(a, (0, 0), 0.8 * s), 0, 1) * rng.uniform(0.75, 0.95)
    grain = _smooth_noise(rng, size, max(2, int(2 * s)))[..., None]
    colour = rng.uniform(0.1, 0.6, size=c).astype(np.float32)
    stuff = np.clip(colour + 0.12 * grain, 0, 1)
    out = img * (1 - a[..., None]) + stuff * a[..., None]
    return out, a >= 0.2


def _d_color(rng, img, ctx):
    size = img.shape[0]
    cy, cx = _pick_centre(rng, ctx["allowed"])
    radius = rng.uniform(0.05, 0.1) * size
    a = _blob(rng, size, cy, cx, radius, wobble=0.3)
    a = cv2.GaussianBlur(a, (0, 0), 0.25 * radius)
    if ctx["body"] is not None:
        a = a * ctx["body"]
    c = img.shape[2]
    if c == 3:  # a subtle hue / saturation change
        gain = 1 + rng.choice([-1, 1]) * rng.uniform(0.08, 0.15) * np.array([1.0, -0.6, -1.0])
        gain = gain[rng.permutation(3)].astype(np.float32)
        out = img * (1 + (gain - 1) * a[..., None])
    else:  # a subtle grey-level change (discolouration)
        delta = rng.choice([-1, 1]) * rng.uniform(0.07, 0.12)
        out = img + delta * a[..., None]
    out = np.clip(out, 0, 1)
    region = np.any(np.abs(out - img) * 255 >= 1.5, axis=-1)
    return out, region


def _d_misplaced(rng, img, ctx):
    size = img.shape[0]
    cy, cx = _pick_centre(rng, ctx["allowed"])
    radius = rng.uniform(0.08, 0.12) * size
    a = _blob(rng, size, cy, cx, radius, wobble=0.15)
    angle = rng.choice([-1, 1]) * rng.uniform(25, 90)
    shift = rng.uniform(-0.5, 0.5, size=2) * radius
    rot = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    rot[:, 2] += shift
    moved = cv2.warpAffine(
        img, rot, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    if moved.ndim == 2:
        moved = moved[..., None]
    out = img * (1 - a[..., None]) + moved * a[..., None]
    return out, a >= 0.5


def _d_bent(rng, img, ctx):  # mesh: locally displaced wires
    size = img.shape[0]
    cy, cx = _pick_centre(rng, ctx["allowed"])
    radius = rng.uniform(0.08, 0.13) * size
    yy, xx = _grid(size)
    w = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (radius / 2) ** 2)).astype(np.float32)
    amp = rng.uniform(4.0, 6.0) * size / 128.0
    ang = rng.uniform(0, 2 * np.pi)
    map_x = (xx + amp * w * math.cos(ang)).astype(np.float32)
    map_y = (yy + amp * w * math.sin(ang)).astype(np.float32)
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if out.ndim == 2:
        out = out[..., None]
    return out, w > 0.3


def _d_chip(rng, img, ctx):  # nut: a chunk broken off the outer edge
    size = img.shape[0]
    body = ctx["body"]
    edge = body & ~cv2.erode(body.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    r = np.hypot(*(np.mgrid[0:size, 0:size] - size / 2))
    edge &= r > 0.3 * size
    cy, cx = _pick_centre(rng, edge)
    radius = rng.uniform(0.05, 0.09) * size
    a = _blob(rng, size, cy, cx, radius, wobble=0.25) * body
    out = img * (1 - a[..., None]) + ctx["background"] * a[..., None]
    return out, a >= 0.5


_DEFECTS = {
    "scratch": _d_scratch,
    "cut": _d_cut,
    "crack": _d_crack,
    "hole": _d_hole,
    "broken": _d_broken,
    "contamination": _d_contamination,
    "color": _d_color,
    "misplaced": _d_misplaced,
    "bent": _d_bent,
    "chip": _d_chip,
}


def _to_u8(img):
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _finalize(clean_u8, defective, region):
    """8-bit defective image and mask == exactly the changed pixels (inside ``region``)."""
    out = _to_u8(defective)
    out[~region] = clean_u8[~region]
    same = region & np.all(out == clean_u8, axis=-1)
    if same.any():
        c = clean_u8[same].astype(np.int16)
        out[same] = np.where(c < 128, c + 3, c - 3).astype(np.uint8)
    mask = np.any(out != clean_u8, axis=-1)
    return out, mask


def generate_sample(category: str, *, image_size: int = 128, defect: str | None = None, seed=0):
    """Draws one image (and its mask) of a synthetic category.

    Args:
        category: one of :data:`CATEGORIES`.
        image_size: side in pixels.
        defect: None for a good image, else one of ``DEFECTS[category]``.
        seed: an int or a sequence of ints (NumPy ``default_rng`` seed).

    Returns:
        ``(image uint8 [H, W, C], mask bool [H, W])``; the mask is exactly the
        pixels that differ from the clean image the defect was drawn on (all
        False for a good image).

    Example:
        >>> img, mask = generate_sample("wood", defect="crack", seed=3)
    """
    if category not in _SPEC:
        raise ValueError(
            f"Unknown synthetic category {category!r}; expected one of {list(CATEGORIES)}."
        )
    if defect is not None and defect not in DEFECTS[category]:
        raise ValueError(
            f"Unknown defect {defect!r} for {category!r}; expected one of "
            f"{list(DEFECTS[category])}."
        )
    rng = np.random.default_rng(seed)
    img, allowed, background, body = _clean(category, rng, int(image_size))
    clean_u8 = _to_u8(img)
    if defect is None:
        return clean_u8, np.zeros(img.shape[:2], bool)
    ctx = {"allowed": allowed, "background": background, "body": body}
    for _ in range(5):  # a defect that changes no pixel (very unlikely) is redrawn
        out, region = _DEFECTS[defect](rng, img, ctx)
        out_u8, mask = _finalize(clean_u8, out, region)
        if mask.sum() >= 3:
            return out_u8, mask
    return out_u8, mask


def _write_png(path: Path, img: np.ndarray):
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3:
        img = img[..., 0]
    if not cv2.imwrite(str(path), img):
        raise OSError(f"Could not write {str(path)!r}")


DATASET_MARKER = ".keras_skipae_synthetic"
"""The marker file ``make_dataset`` left in a dataset root before
:data:`keras_skipae.ownership.MARKER` existed (still accepted by ``overwrite``)."""
#: What a dataset root ``make_dataset`` made may hold (``synth --preview`` adds the figures).
DATASET_ENTRIES = (*CATEGORIES, "corruption_preview.png", "defects_preview.png")


def make_dataset(
    out_dir,
    categories=None,
    image_size=128,
    n_train=100,
    n_test_good=16,
    n_test_defect=6,
    seed=0,
    overwrite=False,
):
    """Writes a synthetic dataset in the MVTec AD layout.

    Layout (as MVTec AD, Bergmann et al., CVPR 2019)::

        <out_dir>/<category>/train/good/000.png
        <out_dir>/<category>/test/good/000.png
        <out_dir>/<category>/test/<defect>/000.png
        <out_dir>/<category>/ground_truth/<defect>/000_mask.png   (0 / 255)

    RGB categories are written as 3-channel PNGs, grayscale ones as 1-channel PNGs.
    The folder is built under a temporary name and renamed when complete.

    Args:
        out_dir: the dataset root to create.
        categories: names from :data:`CATEGORIES` (default: all).
        image_size: image side in pixels.
        n_train: good training images per category.
        n_test_good: good test images per category.
        n_test_defect: test images per defect type.
        seed: the same seed gives the same files.
        overwrite: replace an existing ``out_dir`` (refused otherwise), but only
            a folder ``make_dataset`` made that holds nothing else
            (:func:`keras_skipae.ownership.check_replaceable`), so a user's own data is
            never replaced.

    Returns:
        The root path (a ``Path``), to pass to ``mvtec_dataset``.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.

    Example:
        >>> root = make_dataset("data/synthetic", categories=["woven"], n_train=100)
        >>> train = mvtec_dataset(root, "woven", split="train", image_size=128)
    """
    cats = list(CATEGORIES) if categories is None else list(categories)
    if isinstance(categories, str):
        cats = [categories]
    unknown = [c for c in cats if c not in _SPEC]
    if unknown or not cats:
        raise ValueError(
            f"Unknown synthetic categories {unknown or cats!r}; expected some of "
            f"{list(CATEGORIES)}. Received: categories={categories!r}"
        )
    for name, value in (
        ("image_size", image_size),
        ("n_train", n_train),
        ("n_test_good", n_test_good),
        ("n_test_defect", n_test_defect),
    ):
        if int(value) < (16 if name == "image_size" else 0):
            raise ValueError(f"`{name}` is too small. Received: {name}={value!r}")
    size = int(image_size)
    out_dir = Path(out_dir)
    if overwrite:
        ownership.check_replaceable(out_dir, "dataset", allowed=DATASET_ENTRIES)
    with atomic_path(out_dir, overwrite=overwrite, is_dir=True, what="dataset folder") as tmp:
        ownership.mark_owned(tmp, "dataset")
        for cat in cats:
            cid = CATEGORIES.index(cat)
            base = tmp / cat
            jobs = [("train", "good", i, None) for i in range(int(n_train))]
            jobs += [("test", "good", i, None) for i in range(int(n_test_good))]
            for d in DEFECTS[cat]:
                jobs += [("test", d, i, d) for i in range(int(n_test_defect))]
            for split, folder, i, defect in jobs:
                split_id = (
                    0 if split == "train" else 1 + (DEFECTS[cat].index(defect) + 1 if defect else 0)
                )
                img, mask = generate_sample(
                    cat, image_size=size, defect=defect, seed=[int(seed), cid, split_id, i]
                )
                d = base / split / folder
                d.mkdir(parents=True, exist_ok=True)
                _write_png(d / f"{i:03d}.png", img)
                if defect is not None:
                    g = base / "ground_truth" / folder
                    g.mkdir(parents=True, exist_ok=True)
                    _write_png(g / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    return out_dir


#: The third seed word of :func:`labelled_arrays`: ``make_dataset`` uses 0 (train) and
#: 1 ... 1 + len(DEFECTS[category]) (test), :func:`preview` other seed shapes, so the
#: labelled images never repeat a benchmark image.
LABELLED_SPLIT_ID = 100


def _labelled_plan(category: str, n: int, defect_fraction: float):
    """``[defect or None] * n``: defects spread evenly (any prefix keeps the fraction),
    their types cycling through ``DEFECTS[category]``."""
    plan, n_defect = [], 0
    for i in range(n):
        if math.floor((i + 1) * defect_fraction) > math.floor(i * defect_fraction):
            plan.append(DEFECTS[category][n_defect % len(DEFECTS[category])])
            n_defect += 1
        else:
            plan.append(None)
    return plan


def labelled_arrays(
    category: str,
    n: int,
    *,
    image_size: int = 128,
    seed: int = 0,
    defect_fraction: float = 0.75,
):
    """A seeded labelled split: images with their exact masks, for supervised examples.

    Image ``i`` is :func:`generate_sample` with the seed
    ``[seed, CATEGORIES.index(category), LABELLED_SPLIT_ID, i]``; a fraction
    ``defect_fraction`` of them are defective (spread evenly over the indices, the
    defect types in turn), the others good with empty masks. The seed words differ
    from those of :func:`make_dataset` (``LABELLED_SPLIT_ID``), so these images are
    never the benchmark's train or test images. The same arguments give the same
    arrays, and a smaller ``n`` gives a prefix of a larger one (so training on the
    first N of them grows one labelled set).

    Args:
        category: one of :data:`CATEGORIES`.
        n: number of images (>= 1).
        image_size: side in pixels (>= 16).
        seed: integer seed.
        defect_fraction: fraction of defective images, in [0, 1].

    Returns:
        A dict of NumPy arrays: ``image`` float32 ``[n, H, W, C]`` in [0, 1] (C is 3
        for ``woven`` and ``wood``, else 1), ``mask`` float32 ``[n, H, W, 1]`` in
        {0, 1} (exactly the pixels the defect changed), ``label`` int32 ``[n]`` (0 good,
        1 defective) and ``defect_type`` (``"good"`` or the defect's name).

    Raises:
        ValueError: an unknown category or a bad ``n``, ``image_size`` or
            ``defect_fraction``.

    Example:
        >>> d = labelled_arrays("mesh", 32, image_size=64, seed=1)
        >>> d["image"].shape, d["mask"].shape
        ((32, 64, 64, 1), (32, 64, 64, 1))
    """
    if category not in _SPEC:
        raise ValueError(
            f"Unknown synthetic category. Expected one of {list(CATEGORIES)}. "
            f"Received: category={category!r}"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` must be an int >= 1. Received: n={n!r}")
    if int(image_size) < 16:
        raise ValueError(f"`image_size` must be at least 16. Received: image_size={image_size!r}")
    if not 0.0 <= float(defect_fraction) <= 1.0:
        raise ValueError(
            f"`defect_fraction` must be in [0, 1]. Received: defect_fraction={defect_fraction!r}"
        )
    cid = CATEGORIES.index(category)
    images, masks, labels, kinds = [], [], [], []
    for i, defect in enumerate(_labelled_plan(category, int(n), float(defect_fraction))):
        img, mask = generate_sample(
            category,
            image_size=int(image_size),
            defect=defect,
            seed=[int(seed), cid, LABELLED_SPLIT_ID, i],
        )
        images.append(img.astype(np.float32) / 255.0)
        masks.append(mask[..., None].astype(np.float32))
        labels.append(0 if defect is None else 1)
        kinds.append(defect or "good")
    return {
        "image": np.stack(images),
        "mask": np.stack(masks),
        "label": np.asarray(labels, np.int32),
        "defect_type": np.asarray(kinds),
    }


def labelled_dataset(
    category: str,
    n: int,
    *,
    image_size: int = 128,
    seed: int = 0,
    defect_fraction: float = 0.75,
) -> tf.data.Dataset:
    """:func:`labelled_arrays` as an unbatched ``tf.data.Dataset`` of ``(image, mask)``.

    The elements are float32 ``(image [H, W, C] in [0, 1], mask [H, W, 1] in {0, 1})``,
    what ``keras_skipae.train(..., task="segmentation")`` and ``model.fit`` (after
    ``.batch``) take. Arguments as in :func:`labelled_arrays`.

    Example:
        >>> ds = labelled_dataset("mesh", 32, image_size=64, seed=1)
        >>> run = ks.train("unet", ds, task="segmentation",
        ...                model_kwargs={"input_shape": (64, 64, 1), "num_outputs": 1})
    """
    arrays = labelled_arrays(
        category, n, image_size=image_size, seed=seed, defect_fraction=defect_fraction
    )
    return tf.data.Dataset.from_tensor_slices((arrays["image"], arrays["mask"]))


def preview(
    out_dir,
    *,
    categories=None,
    image_size=128,
    corruption=None,
    n_examples=8,
    seed=0,
    overwrite=True,
):
    """Saves preview figures: stain corruption examples and the synthetic defects.

    Writes ``<out_dir>/corruption_preview.png`` (clean / corrupted / mask rows, on
    clean synthetic images) and ``<out_dir>/defects_preview.png`` (every defect
    type of every category, with its mask outlined in red).

    Args:
        out_dir: folder for the PNG files (created if needed).
        categories: synthetic categories to show (default: all).
        image_size: image side in pixels.
        corruption: the corruption to show (default: ``Stains()``), or a
            name / config for ``corruption.get``.
        n_examples: corruption examples.
        seed: random seed.
        overwrite: replace existing preview files.

    Returns:
        A list of the two written paths.

    Example:
        >>> preview("runs/preview", categories=["wood", "nut"])
    """

    cats = list(CATEGORIES) if categories is None else list(categories)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "corruption_preview.png", out_dir / "defects_preview.png"]
    if not overwrite:
        for p in paths:
            if p.exists():
                raise FileExistsError(
                    f"The preview {str(p)!r} already exists. Refusing to "
                    "overwrite it; pass overwrite=True (CLI: --overwrite)."
                )
    corruption = Stains() if corruption is None else get(corruption)
    clean = []
    for i in range(int(n_examples)):
        img, _ = generate_sample(cats[i % len(cats)], image_size=image_size, seed=[seed, 99, i])
        img = img.astype(np.float32) / 255.0
        clean.append(img.mean(axis=-1, keepdims=True))  # grayscale, as AESc trains
    batch = tf.constant(np.stack(clean))
    corrupted, _, masks = corruption(batch, tf.constant([int(seed), 7], tf.int64))
    plotting.plot_corruption_examples(
        batch.numpy(),
        corrupted.numpy(),
        masks.numpy(),
        title=f"{type(corruption).__name__}: clean / corrupted / mask",
        path=paths[0],
    )
    import matplotlib.pyplot as plt

    plt.close("all")
    images, masks_list, labels = [], [], []
    for ci, cat in enumerate(cats):
        for di, defect in enumerate(DEFECTS[cat]):
            img, mask = generate_sample(
                cat, image_size=image_size, defect=defect, seed=[seed, 98, ci, di]
            )
            images.append(img)
            masks_list.append(mask)
            labels.append(f"{cat} / {defect}")
    plotting.plot_defect_examples(
        images,
        masks_list,
        labels,
        title="Synthetic defects (mask outlined in red)",
        path=paths[1],
        columns=5,
    )
    plt.close("all")
    return paths
