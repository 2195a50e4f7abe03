"""The synthetic defects, and :func:`generate_sample`, which draws one on a clean image.

Each defect's mask marks exactly the pixels that differ from the clean image it
was drawn on: the defect is drawn, the 8-bit result is compared with the clean
8-bit image, pixels outside the intended region are reset, and the few pixels
inside the region that happen to keep their value are nudged by 3 grey levels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from keras_skipae.data.synthetic.categories import CATEGORIES, DEFECTS
from keras_skipae.data.synthetic.textures import _clean, _grid, _smooth_noise
from keras_skipae.io_utils import to_uint8

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


def _finalize(clean_u8, defective, region):
    """8-bit defective image and mask == exactly the changed pixels (inside ``region``)."""
    out = to_uint8(defective)
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
    if category not in CATEGORIES:
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
    clean_u8 = to_uint8(img)
    if defect is None:
        return clean_u8, np.zeros(img.shape[:2], bool)
    ctx = {"allowed": allowed, "background": background, "body": body}
    for _ in range(5):  # a defect that changes no pixel (very unlikely) is redrawn
        out, region = _DEFECTS[defect](rng, img, ctx)
        out_u8, mask = _finalize(clean_u8, out, region)
        if mask.sum() >= 3:
            return out_u8, mask
    return out_u8, mask
