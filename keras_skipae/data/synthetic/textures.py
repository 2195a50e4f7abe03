"""The clean images of the synthetic categories: procedural textures and the nut.

Every function takes a NumPy ``Generator`` and an image side and draws new random
phases, offsets, orientations and noise, so no two samples are the same image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from keras_skipae.io_utils import to_uint8

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
    img = to_uint8(sand)
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
