"""Tests for the synthetic anomalies: Perlin regions, fills and their mixture."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_skipae import data as C
from keras_skipae.data.corruptions import anomalies as A
from keras_skipae.data.corruptions import fills as F
from keras_skipae.data.corruptions import perlin as P
from keras_skipae.data.corruptions import rng

SEED = tf.constant([3, 4], tf.int64)
OTHER_SEED = tf.constant([3, 5], tf.int64)


def _images(b=4, h=32, w=32, c=1, seed=0):
    return tf.random.stateless_uniform([b, h, w, c], [seed, 1])


def _changed(a, b):
    return np.any(np.asarray(a) != np.asarray(b), axis=-1, keepdims=True).astype(np.float32)


FILLS = [A.SelfPaste, A.TextureBlend, A.IntensityShift]
FILLS_ONLY = {"self_paste": 1.0, "texture_blend": 1.0, "intensity_shift": 1.0}

ALL = [
    A.SelfPaste(),
    A.SelfPaste(p_other=0.0, jitter=0.0),
    A.TextureBlend(),
    A.TextureBlend(beta=(0.0, 0.0), color=False, octaves=2),
    A.IntensityShift(),
    A.Anomalies(),
    A.Anomalies(weights=FILLS_ONLY, p_clean=0.0),
]
IDS = [
    "self_paste",
    "self_paste_copy",
    "texture_blend",
    "texture_blend_opaque",
    "intensity_shift",
    "anomalies",
    "anomalies_fills",
]
SHAPES = [(4, 32, 32, 1), (4, 48, 40, 3)]  # grayscale square, RGB non-square


# --------------------------------------------------------------------------- masks and values


@pytest.mark.parametrize("corruption", ALL, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=["gray", "rgb"])
def test_mask_is_exactly_the_changed_pixels(corruption, shape):
    x = _images(*shape, seed=5)
    out, target, mask = corruption(x, SEED)
    assert out.dtype == target.dtype == mask.dtype == tf.float32
    assert out.shape == shape and mask.shape == shape[:3] + (1,)
    np.testing.assert_array_equal(target.numpy(), x.numpy())  # clean target
    np.testing.assert_array_equal(mask.numpy(), _changed(out, x))
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    assert out.numpy().min() >= 0.0 and out.numpy().max() <= 1.0
    assert np.all(np.isfinite(out.numpy()))
    assert mask.numpy().sum() > 0


@pytest.mark.parametrize("cls", FILLS, ids=lambda c: c.__name__)
def test_fill_mask_is_the_region_where_pixels_changed(cls):
    """The mask is the Perlin region AND the changed pixels, nothing outside the region."""
    x = _images(4, 40, 40, 3, seed=1)
    c = cls()
    out, _, mask = c(x, SEED)
    region = c.region(x, rng.xla_sub_seed(SEED, 101)).numpy()
    m = mask.numpy() > 0
    assert region.sum() > 0
    assert not np.any(m & ~region)  # nothing outside the region
    np.testing.assert_array_equal(out.numpy()[~region[..., 0]], x.numpy()[~region[..., 0]])
    # random images: (almost) every region pixel changes
    assert m.sum() >= 0.95 * region.sum()


def test_pixels_whose_fill_equals_the_original_are_not_in_the_mask():
    """Flat images pasted into themselves change nothing: empty mask, non-empty region."""
    x = tf.fill([4, 32, 32, 3], 0.5)
    c = A.SelfPaste(p_other=0.0, jitter=0.0)
    out, _, mask = c(x, SEED)
    region = c.region(x, rng.xla_sub_seed(SEED, 101)).numpy()
    assert region.sum(axis=(1, 2, 3)).min() > 0
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    assert mask.numpy().sum() == 0
    # Flat images of different levels pasted into each other: the mask is the region.
    x = tf.constant(np.linspace(0.2, 0.8, 4, dtype=np.float32)[:, None, None, None])
    x = tf.tile(x, [1, 32, 32, 3])
    out, _, mask = A.SelfPaste(p_other=1.0, jitter=0.0)(x, SEED)
    np.testing.assert_array_equal(mask.numpy() > 0, region)


def test_intensity_shift_over_saturated_pixels_marks_only_changed_ones():
    x = np.full((4, 32, 32, 1), 1.0, np.float32)
    x[:, :, :16] = 0.5
    c = A.IntensityShift(brightness=(0.2, 0.2), contrast=(1.0, 1.0))
    out, _, mask = c(tf.constant(x), SEED)
    np.testing.assert_array_equal(mask.numpy(), _changed(out, x))
    region = c.region(tf.constant(x), rng.xla_sub_seed(SEED, 101)).numpy()
    # brightened white pixels stay 1 (clipped): in the region, not in the mask
    sign = np.sign((out.numpy() - x)[:, :, :16].sum(axis=(1, 2, 3)))
    lighter = sign > 0
    assert lighter.any() and (~lighter).any()  # both signs drawn with this seed
    assert mask.numpy()[lighter][:, :, 16:].sum() == 0
    assert region[lighter][:, :, 16:].sum() > 0


# --------------------------------------------------------------------------- the fills


def _banded(b=4, h=32, w=32, c=1):
    """Image i has values in [i / b, (i + 1) / b): the source image of a value is known."""
    u = np.random.default_rng(2).uniform(0.01, 0.99, size=(b, h, w, c))
    return tf.constant(((np.arange(b)[:, None, None, None] + u) / b).astype(np.float32))


def _source_images(out, mask, b):
    band = np.floor(out * b).astype(int)
    return [set(np.unique(band[i][mask[i, ..., 0] > 0])) for i in range(len(out))]


def test_self_paste_from_another_image_of_the_batch():
    x = _banded()
    out, _, mask = A.SelfPaste(p_other=1.0, jitter=0.0)(x, SEED)
    src = _source_images(out.numpy(), mask.numpy(), 4)
    for i, s in enumerate(src):
        assert len(s) == 1 and i not in s  # one other image
    # its pixels, moved: values of that image, mostly not those at the same place
    for i in range(4):
        (j,) = src[i]
        m = mask.numpy()[i, ..., 0] > 0
        assert np.isin(out.numpy()[i][m], x.numpy()[j]).all()
        assert (out.numpy()[i][m] != x.numpy()[j][m]).mean() > 0.9


def test_self_paste_copy_is_a_transformed_copy_of_the_same_image():
    x = _banded(4, 32, 32, 1)
    out, _, mask = A.SelfPaste(p_other=0.0, jitter=0.0)(x, SEED)
    src = _source_images(out.numpy(), mask.numpy(), 4)
    assert all(s == {i} for i, s in enumerate(src))
    # Every pasted value exists in the image (a shift, flip or rotation, not new values).
    for i in range(4):
        m = mask.numpy()[i, ..., 0] > 0
        assert np.isin(out.numpy()[i][m], x.numpy()[i]).all()
    # a batch of one image cannot paste from another one: the copy is used
    out1, _, mask1 = A.SelfPaste(p_other=1.0, jitter=0.0)(x[:1], SEED)
    assert mask1.numpy().sum() > 0
    assert np.isin(out1.numpy()[0][mask1.numpy()[0, ..., 0] > 0], x.numpy()[0]).all()


def test_texture_blend_follows_draems_formula():
    """beta fixed: inside the mask, (out - beta x) / (1 - beta) is a texture in [0, 1]."""
    x = _images(4, 32, 32, 3, seed=3)
    beta = 0.25
    out, _, mask = A.TextureBlend(beta=(beta, beta))(x, SEED)
    m = mask.numpy()[..., 0] > 0
    tex = (out.numpy() - beta * x.numpy()) / (1 - beta)
    assert tex[m].min() > -1e-5 and tex[m].max() < 1 + 1e-5
    # opaque texture: not the image
    out0, _, mask0 = A.TextureBlend(beta=(0.0, 0.0))(x, SEED)
    m0 = mask0.numpy()[..., 0] > 0
    corr = np.corrcoef(out0.numpy()[m0].ravel(), x.numpy()[m0].ravel())[0, 1]
    assert abs(corr) < 0.3
    # grey textures with color=False: equal channels where the texture is opaque
    outg, _, maskg = A.TextureBlend(beta=(0.0, 0.0), color=False)(x, SEED)
    mg = maskg.numpy()[..., 0] > 0
    t = outg.numpy()[mg]
    np.testing.assert_allclose(t[:, 0], t[:, 1], atol=1e-6)
    assert np.abs(out0.numpy()[m0][:, 0] - out0.numpy()[m0][:, 1]).max() > 0.01


def test_texture_kinds_are_smooth_or_striped_not_white_noise():
    x = tf.fill([12, 64, 64, 1], 0.5)
    tex = F._texture_of(x, SEED, color=False).numpy()[..., 0]
    assert tex.min() >= 0.0 and tex.max() <= 1.0
    span = tex.max(axis=(1, 2)) - tex.min(axis=(1, 2))
    assert np.median(span) > 0.1
    # neighbour differences well below those of white noise of the same values
    rng = np.random.default_rng(0)
    dx = np.abs(np.diff(tex, axis=2)).mean(axis=(1, 2))
    white = np.array([np.abs(np.diff(rng.permutation(t.ravel()))).mean() for t in tex])
    assert np.all(dx < 0.75 * white)
    assert len({round(float(v), 4) for v in tex.mean(axis=(1, 2))}) == 12  # all differ


def test_intensity_shift_scales_contrast_around_the_region_mean():
    x = _images(4, 32, 32, 1, seed=6)
    c = A.IntensityShift(brightness=(0.0, 0.0), contrast=(0.5, 0.5), area=(0.1, 0.1))
    out, _, mask = c(x, SEED)
    region = c.region(x, rng.xla_sub_seed(SEED, 101)).numpy()
    for i in range(4):
        r = region[i, ..., 0]
        xi, oi = x.numpy()[i, ..., 0][r], out.numpy()[i, ..., 0][r]
        np.testing.assert_allclose(oi - xi.mean(), 0.5 * (xi - xi.mean()), atol=1e-5)


def test_intensity_shift_keeps_the_texture():
    x = _images(4, 32, 32, 1, seed=4) * 0.5 + 0.25  # no clipping for a shift of 0.1
    out, _, mask = A.IntensityShift(brightness=(0.1, 0.1), contrast=(1.0, 1.0))(x, SEED)
    d = out.numpy() - x.numpy()
    m = mask.numpy() > 0
    for i in range(4):
        np.testing.assert_allclose(np.abs(d[i][m[i]]), 0.1, atol=1e-6)
        assert len(np.unique(np.sign(d[i][m[i]]))) == 1  # one sign per image


# --------------------------------------------------------------------------- the mixture


def test_anomalies_probabilities_and_clean_images():
    a = A.Anomalies()
    probs = a.probs
    assert set(probs) == {"stains", "self_paste", "texture_blend", "intensity_shift", "scratches"}
    np.testing.assert_allclose(list(probs.values()), [0.18] * 5)
    a = A.Anomalies(weights={"stains": 3, "scratches": 1}, p_clean=0.2)
    assert a.probs["stains"] == pytest.approx(0.6) and a.probs["scratches"] == pytest.approx(0.2)
    assert a.probs["self_paste"] == 0.0
    x = _images(4, 32, 32, 3)
    out, _, mask = A.Anomalies(p_clean=1.0)(x, SEED)
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    assert mask.numpy().sum() == 0
    # about p_clean of the images are left clean, the others are not
    x = _images(96, 16, 16, 1)
    _, _, mask = A.Anomalies(p_clean=0.5)(x, SEED)
    clean = (mask.numpy().sum(axis=(1, 2, 3)) == 0).sum()
    assert 30 <= clean <= 66
    _, _, mask = A.Anomalies(p_clean=0.0)(x, SEED)
    assert (mask.numpy().sum(axis=(1, 2, 3)) == 0).sum() <= 3


def test_anomalies_uses_each_kind():
    """With one kind, the mixture's changes look like that kind's."""
    x = tf.fill([16, 32, 32, 1], 0.5)
    for kind, check in [
        ("scratches", lambda o, m: m.mean() < 0.1),
        ("stains", lambda o, m: m.mean() < 0.2),
        ("intensity_shift", lambda o, m: np.ptp(o[m > 0]) < 1e-6),  # flat shift of a flat image
        ("texture_blend", lambda o, m: np.ptp(o[m > 0]) > 1e-3),
    ]:
        out, _, mask = A.Anomalies(weights={kind: 1.0}, p_clean=0.0)(x, SEED)
        o, m = out.numpy(), mask.numpy()
        hit = [i for i in range(16) if m[i].sum() > 0]
        assert len(hit) >= 12, kind
        assert all(check(o[i], m[i]) for i in hit), kind


def test_anomalies_components_and_validation():
    a = A.Anomalies(stains={"count": (1, 2)}, scratches=C.Scratches(width=1.0))
    assert a.components["stains"].count == (1, 2)
    assert a.components["scratches"].width == (1.0, 1.0)
    with pytest.raises(ValueError, match="`stains`"):
        A.Anomalies(stains=C.Scratches())
    with pytest.raises(ValueError, match="`self_paste`"):
        A.Anomalies(self_paste="self_paste")


# --------------------------------------------------------------------------- determinism, XLA


@pytest.mark.parametrize("corruption", ALL, ids=IDS)
def test_same_seed_same_output_different_seed_differs(corruption):
    x = _images(4, 32, 32, 3)
    a = corruption(x, SEED)
    b = corruption(x, SEED)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    d = corruption(x, OTHER_SEED)
    assert not np.array_equal(a[0].numpy(), d[0].numpy())
    assert not np.array_equal(a[2].numpy(), d[2].numpy())


def test_perlin_functions_are_deterministic():
    for fn in (P.perlin_noise, P.perlin_mask):
        a = fn((32, 32), 4, SEED).numpy()
        np.testing.assert_array_equal(a, fn((32, 32), 4, SEED).numpy())
        assert not np.array_equal(a, fn((32, 32), 4, OTHER_SEED).numpy())
    # int32 seeds, and seeds beyond 32 bits, work
    P.perlin_noise((8, 8), 2, tf.constant([1, 2], tf.int32))
    P.perlin_noise((8, 8), 2, tf.constant([-5, 1 << 40], tf.int64))


def _xla(fn):
    return tf.function(fn, jit_compile=True)


@pytest.mark.slow
def test_perlin_under_xla_matches_eager():
    def fn(s):
        return (
            P.perlin_noise((32, 40), 4, s, octaves=2),
            P.perlin_noise((32, 40), 4, s, rotate=True),
            P.perlin_mask((32, 40), 4, s),
        )

    compiled = _xla(fn)
    # also seed words outside 32 bits (which TF kernels and XLA expand differently)
    for seed in (SEED, tf.constant([-7, 1 << 40], tf.int64)):
        for u, v in zip(fn(seed), compiled(seed)):
            np.testing.assert_allclose(u.numpy(), v.numpy(), atol=1e-6, rtol=0)


XLA_CASES = [A.SelfPaste(), A.TextureBlend(), A.IntensityShift(), ALL[-1]]


@pytest.mark.parametrize("corruption", XLA_CASES, ids=lambda c: type(c).__name__)
@pytest.mark.slow
def test_fills_under_xla_match_eager(corruption):
    x = _images(4, 32, 32, 3)
    eager = corruption(x, SEED)
    compiled = _xla(lambda im, s: corruption(im, s))(x, SEED)
    for u, v in zip(eager, compiled):
        np.testing.assert_allclose(u.numpy(), v.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(eager[2].numpy(), compiled[2].numpy())


@pytest.mark.slow
def test_full_mixture_under_xla():
    """Stains and Scratches draw XLA-specific floats: compare XLA with itself."""
    corruption = A.Anomalies(p_clean=0.0)
    x = _images(4, 32, 32, 1)
    fn = _xla(lambda im, s: corruption(im, s))
    out, target, mask = fn(x, SEED)
    again = fn(x, SEED)
    for u, v in zip((out, target, mask), again):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    np.testing.assert_array_equal(mask.numpy(), _changed(out, x))
    np.testing.assert_array_equal(target.numpy(), x.numpy())
    assert mask.numpy().sum() > 0


@pytest.mark.slow
def test_runs_in_the_corrupt_pipeline():
    ds = tf.data.Dataset.from_tensor_slices(_images(6, 32, 32, 3).numpy())
    pairs = C.corrupt(ds, A.Anomalies(p_clean=0.0), batch_size=4, with_mask=True, seed=1)
    batches = list(pairs)
    assert [b[0].shape[0] for b in batches] == [4, 2]
    for corrupted, target, mask in batches:
        np.testing.assert_array_equal(mask.numpy(), _changed(corrupted, target))
        assert mask.numpy().sum() > 0


# --------------------------------------------------------------------------- Perlin noise


def test_perlin_noise_range_smoothness_and_variety():
    n = P.perlin_noise((64, 64), 8, SEED, scale_range=(0, 3)).numpy()
    assert n.shape == (8, 64, 64) and n.dtype == np.float32
    assert n.min() >= -1.0 and n.max() <= 1.0
    assert np.abs(n).max(axis=(1, 2)).min() > 0.2  # not flat
    assert abs(n.mean()) < 0.2
    # smooth: cells of >= 8 px, neighbour steps small against the value spread
    step = np.abs(np.diff(n, axis=1)).max()
    assert step < 0.35
    assert np.abs(np.diff(n, axis=2)).mean() < 0.05 * (n.max() - n.min())
    # every image differs
    flat = n.reshape(8, -1)
    corr = np.corrcoef(flat)[np.triu_indices(8, 1)]
    assert np.abs(corr).max() < 0.95


def test_perlin_resolution_follows_scale_range():
    def roughness(e, **kw):
        n = P.perlin_noise((64, 64), 8, SEED, scale_range=(e, e), **kw).numpy()
        return np.abs(np.diff(n, axis=2)).mean(), n

    r1, _ = roughness(1)
    r4, _ = roughness(4)
    assert r4 > 3 * r1
    # The noise is zero at lattice points; random sub-cell offsets move them, so no
    # pixel is near zero in every image (two cells per side: a fixed lattice would
    # put a zero next to the image centre in every image).
    n = P.perlin_noise((64, 64), 32, SEED, scale_range=(1, 1)).numpy()
    assert np.abs(n).max(axis=0).min() > 0.1

    # anisotropic lattices (max_stretch=None): rows and columns differ in roughness
    def anisotropy(**kw):
        n = P.perlin_noise((64, 64), 64, SEED, scale_range=(2, 5), **kw).numpy()
        ry = np.abs(np.diff(n, axis=1)).mean(axis=(1, 2))
        rx = np.abs(np.diff(n, axis=2)).mean(axis=(1, 2))
        return np.maximum(ry, rx) / np.minimum(ry, rx)

    free, equal = anisotropy(), anisotropy(max_stretch=0)
    assert np.percentile(free, 90) > 4 and free.max() > 6
    assert equal.max() < 1.6


def _orientation(n):
    """Per image: anisotropy ratio and |sin 2 theta| of the structure tensor's main axis."""
    gy, gx = np.gradient(n, axis=(1, 2))
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    ratio = np.maximum(jxx, jyy) / np.minimum(jxx, jyy)
    two_theta = np.arctan2(2 * jxy, jxx - jyy)
    return ratio, np.abs(np.sin(two_theta))


def test_perlin_rotation_turns_stretched_noise():
    kw = {"scale_range": (1, 5), "max_stretch": None}
    ratio, tilt = _orientation(P.perlin_noise((64, 64), 64, SEED, **kw).numpy())
    stretched = ratio > 4
    assert stretched.sum() >= 10
    assert tilt[stretched].max() < 0.35  # axis-aligned without rotation
    ratio, tilt = _orientation(P.perlin_noise((64, 64), 64, SEED, rotate=True, **kw).numpy())
    stretched = ratio > 1.5  # the structure tensor mixes axes once rotated
    assert (tilt[stretched] > 0.5).mean() > 0.3


def test_perlin_noise_octaves_and_rotation_stay_in_range():
    for kw in ({"octaves": 4}, {"rotate": True}, {"octaves": 3, "rotate": True}):
        n = P.perlin_noise((40, 24), 4, SEED, scale_range=(1, 5), **kw).numpy()
        assert n.shape == (4, 40, 24)
        assert n.min() >= -1.0 and n.max() <= 1.0 and n.std() > 0.05


@pytest.mark.parametrize("area", [(0.005, 0.15), (0.1, 0.1), (0.3, 0.6), 0.02])
@pytest.mark.parametrize("hw", [(64, 64), (48, 32)])
def test_perlin_mask_area_in_range(area, hw):
    lo, hi = (area, area) if isinstance(area, float) else area
    m = P.perlin_mask(hw, 32, SEED, area=area).numpy()
    assert m.shape == (32, *hw, 1)
    assert set(np.unique(m)) <= {0.0, 1.0}
    n = hw[0] * hw[1]
    count = m.sum(axis=(1, 2, 3))
    assert count.min() >= max(1, round(lo * n)) and count.max() <= round(hi * n)
    if hi == lo:  # exactly round(area * H * W) pixels, even with ties in the rotated noise
        np.testing.assert_array_equal(count, round(lo * n))
    else:  # the area varies over the range, log-uniformly
        frac = count / n
        assert frac.max() - frac.min() > 0.5 * (hi - lo)
        log_mid = np.exp((np.log(lo) + np.log(hi)) / 2)
        assert 0.2 < (frac < log_mid).mean() < 0.8


def test_perlin_mask_tiny_area_still_marks_a_pixel():
    m = P.perlin_mask((16, 16), 8, SEED, area=(1e-4, 1e-4)).numpy()
    np.testing.assert_array_equal(m.sum(axis=(1, 2, 3)), np.ones(8))


def test_perlin_mask_regions_are_blobs_at_low_resolution():
    from scipy import ndimage

    def pieces(scale_range):
        m = P.perlin_mask((64, 64), 16, SEED, scale_range=scale_range, area=0.05).numpy()
        return np.array([ndimage.label(m[i, ..., 0])[1] for i in range(16)])

    coarse, fine = pieces((0, 1)), pieces((4, 4))
    assert np.median(coarse) <= 2 and coarse.max() <= 6
    assert np.median(fine) > 20  # many specks


# --------------------------------------------------------------------------- config, errors, edge cases


def _state(obj):
    """An object's attributes, recursively (not via get_config, which is under test)."""
    if isinstance(obj, C.Corruption):
        return {"class": type(obj).__name__, **{k: _state(v) for k, v in vars(obj).items()}}
    if isinstance(obj, dict):
        return {k: _state(v) for k, v in obj.items()}
    return obj


CUSTOM = [
    A.SelfPaste(
        area=(0.01, 0.05), scale_range=2, max_stretch=None, octaves=2, p_other=0.3, jitter=0.0
    ),
    A.TextureBlend(area=0.03, scale_range=(1, 3), max_stretch=0, beta=0.5, color=False),
    A.IntensityShift(brightness=0.2, contrast=(0.9, 1.1), color=0.0, octaves=3),
    A.Anomalies(
        weights={"stains": 1, "scratches": 2, "texture_blend": 1},
        p_clean=0.3,
        stains={"count": (1, 3)},
        texture_blend=A.TextureBlend(beta=0.5, area=(0.01, 0.02), max_stretch=None),
        intensity_shift={"brightness": (0.1, 0.2)},
    ),
]


@pytest.mark.parametrize(
    "corruption",
    ALL + CUSTOM,
    ids=[*IDS, "self_paste_custom", "texture_custom", "intensity_custom", "anomalies_custom"],
)
def test_config_round_trip_json(corruption):
    config = json.loads(json.dumps(corruption.get_config()))
    again = type(corruption).from_config(config)
    assert _state(again) == _state(corruption)
    assert again == corruption
    x = _images(2, 24, 24, 1)
    for u, v in zip(corruption(x, SEED), again(x, SEED)):
        np.testing.assert_array_equal(u.numpy(), v.numpy())


def test_configs_differ_when_arguments_differ():
    assert A.SelfPaste() != A.SelfPaste(max_stretch=None)
    assert A.TextureBlend() != A.TextureBlend(octaves=2)
    assert A.Anomalies() != A.Anomalies(intensity_shift={"color": 0.0})
    assert A.Anomalies() == A.Anomalies(weights=None, p_clean=0.1)


BAD = [
    (lambda: P.perlin_noise((8, 8), 1, SEED, scale_range=(3, 1)), "scale_range"),
    (lambda: P.perlin_noise((8, 8), 1, SEED, scale_range=(-1, 2)), "scale_range"),
    (lambda: P.perlin_noise((8, 8), 1, SEED, scale_range=(0, 11)), "scale_range"),
    (lambda: P.perlin_noise((8, 8), 1, SEED, octaves=0), "octaves"),
    (lambda: P.perlin_noise((8, 8), 1, SEED, persistence=0.0), "persistence"),
    (lambda: P.perlin_noise((8, 8), 1, SEED, max_stretch=-1), "max_stretch"),
    (lambda: P.perlin_noise((0, 8), 1, SEED), "shape_hw"),
    (lambda: P.perlin_noise("ab", 1, SEED), "shape_hw"),
    (lambda: P.perlin_noise((8, 8), 1, tf.constant([1, 2, 3])), "seed"),
    (lambda: P.perlin_mask((8, 8), 1, SEED, area=(0.0, 0.1)), "area"),
    (lambda: P.perlin_mask((8, 8), 1, SEED, area=(0.2, 0.1)), "area"),
    (lambda: P.perlin_mask((8, 8), 1, SEED, area=(0.1, 1.5)), "area"),
    (lambda: A.SelfPaste(p_other=1.5), "p_other"),
    (lambda: A.SelfPaste(jitter=-0.1), "jitter"),
    (lambda: A.SelfPaste(area=(0.1, 0.05)), "area"),
    (lambda: A.SelfPaste(max_stretch=1.5), "max_stretch"),
    (lambda: A.TextureBlend(beta=(0.5, 1.0)), "beta"),
    (lambda: A.TextureBlend(beta=(-0.1, 0.5)), "beta"),
    (lambda: A.TextureBlend(octaves=0), "octaves"),
    (lambda: A.IntensityShift(brightness=(0.3, 0.1)), "brightness"),
    (lambda: A.IntensityShift(contrast=(-1.0, 1.0)), "contrast"),
    (lambda: A.IntensityShift(color=2.0), "color"),
    (lambda: A.IntensityShift(scale_range=(0, "x")), "scale_range"),
    (lambda: A.Anomalies(weights={"foo": 1.0}), "weights"),
    (lambda: A.Anomalies(weights={"stains": -1.0}), "weights"),
    (lambda: A.Anomalies(weights={"stains": "x"}), "weights"),
    (lambda: A.Anomalies(weights={"stains": 0.0}), "weights"),
    (lambda: A.Anomalies(p_clean=1.5), "p_clean"),
    (lambda: A.Anomalies(scratches=3), "scratches"),
]


@pytest.mark.parametrize("make, name", BAD, ids=[f"{i}-{n}" for i, (_, n) in enumerate(BAD)])
def test_bad_arguments_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()


def test_zero_weights_allowed_when_always_clean():
    x = _images(2, 16, 16, 1)
    out, _, mask = A.Anomalies(weights={"stains": 0.0}, p_clean=1.0)(x, SEED)
    np.testing.assert_array_equal(out.numpy(), x.numpy())


def test_bad_images_raise():
    with pytest.raises(ValueError, match="batch of images"):
        A.SelfPaste()(tf.zeros([8, 8, 1]), SEED)


@pytest.mark.parametrize("corruption", ALL, ids=IDS)
def test_empty_batch(corruption):
    out, target, mask = corruption(tf.zeros([0, 16, 16, 3]), SEED)
    assert out.shape == (0, 16, 16, 3) and mask.shape == (0, 16, 16, 1)


def test_empty_batch_perlin():
    assert P.perlin_noise((16, 16), 0, SEED).shape == (0, 16, 16)
    assert P.perlin_mask((16, 16), 0, SEED).shape == (0, 16, 16, 1)


@pytest.mark.slow
def test_unknown_batch_size_in_graph():
    c = A.Anomalies()
    fn = tf.function(
        lambda im, s: c(im, s),
        input_signature=[tf.TensorSpec([None, 24, 24, 1]), tf.TensorSpec([2], tf.int64)],
    )
    out, _, mask = fn(_images(3, 24, 24, 1), SEED)
    assert out.shape == (3, 24, 24, 1)
    np.testing.assert_array_equal(mask.numpy(), _changed(out, _images(3, 24, 24, 1)))
