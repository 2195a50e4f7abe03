"""Tests for keras_skipae.data.corruption: the stain model, other corruptions, corrupt()."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from keras_skipae.data import corrupt
from keras_skipae.data import corruptions as C

SEED = tf.constant([3, 4], tf.int64)


def _images(b=2, h=32, w=32, c=1, seed=0):
    return tf.random.stateless_uniform([b, h, w, c], [seed, 1])


def _changed(a, b):
    return np.any(np.asarray(a) != np.asarray(b), axis=-1, keepdims=True).astype(np.float32)


ALL = [
    C.Stains(),
    C.Stains(count=(0, 3), blur=0.2, color=True),
    C.GaussianNoise(0.1),
    C.Scratches(),
    C.Drops(),
    C.NoiseOnTop(0.05),
    C.Compose([C.Stains(), C.Scratches(), C.NoiseOnTop(0.02)], probs=[1.0, 0.5, 1.0]),
    C.OneOf([C.Stains(), C.Drops(), C.Scratches()], probs=[2, 1, 1]),
]
IDS = [
    "stains",
    "stains_blur_color",
    "noise",
    "scratches",
    "drops",
    "noise_on_top",
    "compose",
    "one_of",
]

# Corruptions whose mask must equal the changed pixels exactly.
EXACT = [
    C.Stains(),
    C.Stains(count=(1, 4), color=True),
    C.GaussianNoise((0.01, 0.2)),
    C.Scratches(count=(0, 4)),
    C.Drops(),
    C.OneOf([C.Stains(), C.Drops(), C.Scratches()]),
]


@pytest.mark.parametrize("corruption", ALL, ids=IDS)
@pytest.mark.parametrize("shape", [(2, 32, 32, 1), (2, 40, 48, 3)])
def test_shapes_and_dtypes(corruption, shape):
    x = _images(*shape)
    out, target, mask = corruption(x, SEED)
    assert out.dtype == target.dtype == mask.dtype == tf.float32
    assert out.shape == target.shape == shape
    assert mask.shape == shape[:3] + (1,)
    for t in (out, target, mask):
        assert np.all(np.isfinite(t.numpy()))
        assert t.numpy().min() >= 0.0 and t.numpy().max() <= 1.0
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}


@pytest.mark.parametrize("corruption", EXACT, ids=lambda c: type(c).__name__)
def test_mask_is_exactly_the_changed_pixels(corruption):
    x = _images(8, 48, 48, 3, seed=5)
    out, target, mask = corruption(x, SEED)
    np.testing.assert_array_equal(target.numpy(), x.numpy())  # clean target
    np.testing.assert_array_equal(mask.numpy(), _changed(out, x))
    assert mask.numpy().sum() > 0


def test_blurred_stain_mask_covers_changed_pixels():
    x = _images(8, 64, 64, 1, seed=2)
    out, _, mask = C.Stains(blur=0.3)(x, SEED)
    changed = _changed(out, x)
    m = mask.numpy()
    assert np.all(m >= changed)  # nothing changes outside the mask
    assert (m - changed).sum() <= 0.01 * m.sum()  # and (almost) everything inside does
    # soft edge: some pixels are neither the stain grey nor the image
    assert m.sum() > 0


def test_noise_on_top_changes_input_and_target_alike():
    x = _images(2, 32, 32, 1)
    out, target, mask = C.NoiseOnTop(0.05, clip=False)(x, SEED)
    np.testing.assert_array_equal(out.numpy(), target.numpy())
    assert np.abs(out.numpy() - x.numpy()).mean() > 0.02
    assert mask.numpy().sum() == 0
    # composed after stains: stained pixels still differ from the (noisy) target
    out, target, mask = C.Compose([C.Stains(), C.NoiseOnTop(0.02)])(x, SEED)
    assert not np.array_equal(target.numpy(), x.numpy())
    diff = _changed(out, target)
    assert np.all(mask.numpy() >= diff) and diff.sum() > 0


def test_stain_statistics_over_1000_draws():
    """Sizes, grey levels, positions and counts stay in the specified ranges."""
    n, size = 1000, 64
    st = C.Stains(count=(1, 4))
    p = {k: v.numpy() for k, v in st.sample_parameters(n, (size, size, 1), SEED).items()}
    active = p["active"]
    a, b = p["a"][active], p["b"][active]
    lo, hi = 0.01 * size, 0.12 * size
    for axis in (a, b):
        assert axis.min() >= lo and axis.max() <= hi
        assert axis.min() < lo + 0.05 * (hi - lo) and axis.max() > hi - 0.05 * (hi - lo)
        assert abs(axis.mean() - (lo + hi) / 2) < 0.05 * (hi - lo)  # uniform
    theta = p["theta"][active]
    assert theta.min() >= 0 and theta.max() < 2 * math.pi and abs(theta.mean() - math.pi) < 0.2
    r = np.maximum(a, b)
    cy, cx = p["cy"][active], p["cx"][active]
    assert np.all(cy >= r - 1e-4) and np.all(cy <= size - 1 - r + 1e-4)
    assert np.all(cx >= r - 1e-4) and np.all(cx <= size - 1 - r + 1e-4)
    grey = p["grey"][active]
    assert grey.min() >= 10 / 255 and grey.max() <= 220 / 255
    assert abs(grey.mean() - 115 / 255) < 0.03
    counts = np.bincount(p["count"], minlength=5)
    assert counts[0] == 0 and counts[1:].sum() == n
    assert np.all(np.abs(counts[1:] / n - 0.25) < 0.06)
    np.testing.assert_array_equal(active.sum(axis=1), p["count"])


def test_rendered_stains_match_their_parameters():
    """One stain per image: area ~ pi a b, extent <= the jittered ellipse, grey and noise."""
    n, size = 1000, 64
    st = C.Stains()
    x = tf.fill([n, size, size, 1], 0.5)
    out, _, mask = st(x, SEED)
    p = {
        k: v.numpy()[:, 0]
        for k, v in st.sample_parameters(n, (size, size, 1), SEED).items()
        if k not in ("count", "active")
    }
    m = mask.numpy()[..., 0] > 0
    o = out.numpy()[..., 0]
    area = m.sum(axis=(1, 2))
    assert np.all(area >= 1)
    big = np.minimum(p["a"], p["b"]) >= 3
    ratio = area[big] / (np.pi * p["a"][big] * p["b"][big])
    assert 0.75 < np.median(ratio) < 1.25 and ratio.min() > 0.4 and ratio.max() < 1.8
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.maximum(p["a"], p["b"])
    reach = r * (1 + 0.1 * math.sqrt(2)) * 1.15 + 1.0
    for i in range(0, n, 7):
        d = np.hypot(yy[m[i]] - p["cy"][i], xx[m[i]] - p["cx"][i])
        assert d.max() <= reach[i]
    grey_meas = np.array([o[i][m[i]].mean() for i in range(n)])
    assert grey_meas.min() > 10 / 255 - 0.03 and grey_meas.max() < 220 / 255 + 0.03
    np.testing.assert_allclose(grey_meas[area > 50], p["grey"][area > 50, 0], atol=0.01)
    resid = np.concatenate([o[i][m[i]] - p["grey"][i, 0] for i in np.nonzero(area > 50)[0]])
    assert 0.011 < resid.std() < 0.017  # fill noise std 0.014


def test_stains_are_irregular_and_rotated():
    st = C.Stains(size=(0.1, 0.12), jitter=0.1)
    out, _, mask = st(tf.fill([64, 64, 64, 1], 0.5), SEED)
    plain = C.Stains(size=(0.1, 0.12), jitter=0.0)
    _, _, mask0 = plain(tf.fill([64, 64, 64, 1], 0.5), SEED)
    # same ellipses, but the jittered outlines differ from the smooth ones
    diff = np.abs(mask.numpy() - mask0.numpy()).sum(axis=(1, 2, 3))
    assert np.median(diff) > 3


def test_same_seed_same_output_different_seed_differs():
    x = _images(4, 32, 32, 1)
    for c in ALL:
        a = c(x, SEED)
        b = c(x, SEED)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u.numpy(), v.numpy())
        d = c(x, tf.constant([3, 5], tf.int64))
        assert not np.array_equal(a[0].numpy(), d[0].numpy()), type(c).__name__


# one_of covers Stains, Drops and Scratches; XLA compiles are slow on a 2-core CPU.
XLA_CASES = [0, 1, 2, 5, 7]


@pytest.mark.parametrize("corruption", [ALL[i] for i in XLA_CASES], ids=[IDS[i] for i in XLA_CASES])
@pytest.mark.slow
def test_xla(corruption):
    x = _images(3, 32, 32, 1)
    fn = tf.function(lambda im, s: corruption(im, s), jit_compile=True)
    out, target, mask = fn(x, SEED)
    assert out.shape == target.shape == x.shape and mask.shape == (3, 32, 32, 1)
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    # stateless RNG streams differ between XLA and the TF kernels, so compare XLA with itself
    again = fn(x, SEED)
    for u, v in zip((out, target, mask), again):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    if (
        not isinstance(corruption, (C.Compose, C.NoiseOnTop))
        and corruption.get_config().get("blur", 0.0) == 0.0
    ):
        np.testing.assert_array_equal(mask.numpy(), _changed(out, x))
        np.testing.assert_array_equal(target.numpy(), x.numpy())


def test_runs_in_dataset_map_with_unknown_batch_size():
    ds = tf.data.Dataset.from_tensor_slices(_images(5, 32, 32, 1)).batch(2)
    ds = ds.map(lambda im: C.Stains(count=(1, 2))(im, SEED))
    shapes = [t[0].shape[0] for t in ds]
    assert shapes == [2, 2, 1]


def test_config_round_trip_json():
    for c in ALL:
        cfg = json.loads(json.dumps(C.serialize(c)))
        c2 = C.deserialize(cfg)
        assert c2 == c and c2.get_config() == c.get_config()
        x = _images(2, 32, 32, 1)
        np.testing.assert_array_equal(c(x, SEED)[0].numpy(), c2(x, SEED)[0].numpy())
    assert isinstance(C.get("stains"), C.Stains)
    assert isinstance(C.get({"class_name": "Drops", "config": {}}), C.Drops)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: C.Stains(count=(3, 1)), r"`count` must be a \(min, max\) pair.*count=\(3, 1\)"),
        (
            lambda: C.Stains(size=(0.1, 0.9)),
            r"`size` must be .*within \[0.0, 0.5\].*size=\(0.1, 0.9\)",
        ),
        (
            lambda: C.Stains(grey=(0.5, 1.5)),
            r"`grey` must be .*within \[0.0, 1.0\].*grey=\(0.5, 1.5\)",
        ),
        (lambda: C.Stains(n_points=2), r"`n_points` must be >= 3. Received: n_points=2"),
        (lambda: C.Stains(blur=-1), r"`blur` must be >= 0. Received: blur=-1"),
        (lambda: C.Stains(count="many"), r"`count` must be a number .*count='many'"),
        (lambda: C.Compose([]), r"`corruptions` must not be empty"),
        (
            lambda: C.OneOf([C.Stains()], probs=[1, 2]),
            r"`probs` must hold one .*probs=\[1.0, 2.0\]",
        ),
        (lambda: C.get("nope"), r"Unknown corruption 'nope'; expected one of \[.*'Stains'"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_to_call():
    with pytest.raises(ValueError, match="B, H, W, C"):
        C.Stains()(tf.zeros([32, 32, 1]), SEED)
    with pytest.raises(ValueError, match="seed"):
        C.Stains()(tf.zeros([1, 32, 32, 1]), tf.constant([1, 2, 3]))


# --------------------------------------------------------------------------- corrupt()


def _dict_dataset(n=10, size=32):
    imgs = tf.random.stateless_uniform([n, size, size, 1], [7, 7])
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": imgs,
            "mask": tf.zeros([n, size, size, 1]),
            "label": tf.zeros([n], tf.int32),
            "defect_type": ["good"] * n,
            "path": [f"{i}.png" for i in range(n)],
        }
    )


def _epoch(ds):
    return [tuple(t.numpy() for t in batch) for batch in ds]


def _equal(e1, e2):
    return len(e1) == len(e2) and all(
        np.array_equal(u, v) for b1, b2 in zip(e1, e2) for u, v in zip(b1, b2)
    )


def test_corrupt_shapes_and_determinism():
    ds = corrupt(_dict_dataset(), C.Stains(), seed=1, batch_size=4, with_mask=True)
    e = _epoch(ds)
    assert [b[0].shape for b in e] == [(4, 32, 32, 1), (4, 32, 32, 1), (2, 32, 32, 1)]
    assert all(len(b) == 3 and b[2].shape[-1] == 1 for b in e)
    for corrupted, target, mask in e:
        np.testing.assert_array_equal(mask, _changed(corrupted, target))
    again = _epoch(corrupt(_dict_dataset(), C.Stains(), seed=1, batch_size=4, with_mask=True))
    assert _equal(e, again)
    other = _epoch(corrupt(_dict_dataset(), C.Stains(), seed=2, batch_size=4, with_mask=True))
    assert not _equal(e, other)
    # targets are the clean images, every image once per epoch
    targets = np.concatenate([b[1] for b in e])
    src = np.stack([d["image"].numpy() for d in _dict_dataset()])
    assert sorted(targets.sum(axis=(1, 2, 3)).round(4)) == sorted(src.sum(axis=(1, 2, 3)).round(4))


def test_corrupt_new_but_reproducible_draws_each_epoch():
    def make():
        return corrupt(_dict_dataset(), "stains", seed=5, batch_size=5, shuffle=False)

    ds = make()
    e1, e2 = _epoch(ds), _epoch(ds)
    assert not np.array_equal(e1[0][0], e2[0][0])  # new stains in epoch 2
    np.testing.assert_array_equal(e1[0][1], e2[0][1])  # same clean targets (no shuffle)
    ds2 = make()
    assert _equal(e1, _epoch(ds2)) and _equal(e2, _epoch(ds2))  # reproducible sequence


def test_corrupt_repeat_new_draws_reproducible():
    def make():
        return corrupt(
            _dict_dataset(4), C.Stains(), seed=3, batch_size=4, repeat=True, shuffle=False
        )

    first = _epoch(make().take(3))
    assert not np.array_equal(first[0][0], first[1][0])
    np.testing.assert_array_equal(first[0][1], first[1][1])
    assert _equal(first, _epoch(make().take(3)))


def test_corrupt_accepts_plain_tensors_and_checks_shapes():
    imgs = tf.data.Dataset.from_tensor_slices(_images(6, 32, 32, 3))
    e = _epoch(
        corrupt(
            imgs,
            C.Drops(),
            batch_size=3,
            drop_remainder=True,
            prefetch=0,
            cache=False,
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    )
    assert len(e) == 2 and e[0][0].shape == (3, 32, 32, 3)
    ragged = tf.data.Dataset.from_generator(
        lambda: iter([np.zeros((8, 8, 1), np.float32)]),
        output_signature=tf.TensorSpec([None, None, 1], tf.float32),
    )
    with pytest.raises(ValueError, match="static shape"):
        corrupt(ragged, C.Stains())


def test_row_bounded_fill_matches_full_scanline_and_stays_in_patch():
    st = C.Stains(count=(1, 2))
    size = 128
    p = st.sample_parameters(500, (size, size, 1), SEED)
    ys, xs = st.outline(p, SEED)
    ph, _ = st.patch_size(size, size)
    off = ph // 2
    qy = tf.reshape(ys - tf.round(p["cy"])[..., None] + off, [-1, ys.shape[-1]])
    qx = tf.reshape(xs - tf.round(p["cx"])[..., None] + off, [-1, xs.shape[-1]])
    full = C.raster._fill_closed_curves(qy, qx, ph, ph)
    bounded = C.raster._fill_closed_curves(qy, qx, ph, ph, max_rows=st._max_rows(size, size))
    np.testing.assert_array_equal(full.numpy(), bounded.numpy())
    # every stain lies inside its patch, clear of the border
    f = full.numpy()
    assert f[:, 0, :].sum() == f[:, -1, :].sum() == f[:, :, 0].sum() == f[:, :, -1].sum() == 0
    assert np.all(f.sum(axis=(1, 2)) > 0)


def test_corrupt_rescales_integer_images():
    imgs = tf.data.Dataset.from_tensor_slices(tf.fill([2, 32, 32, 1], tf.constant(255, tf.uint8)))
    ((_, target),) = _epoch(corrupt(imgs, C.Stains(), batch_size=2))
    np.testing.assert_array_equal(target, np.ones((2, 32, 32, 1), np.float32))


# --------------------------------------------------------------------------- the one look-up


def test_get_mixes_names_joined_by_plus():
    mix = C.get("stains+anomalies")
    assert isinstance(mix, C.OneOf)
    assert [type(c) for c in mix.corruptions] == [C.Stains, C.Anomalies]
    assert mix.corruptions == [C.Stains(), C.Anomalies()]
    spaced = C.get(" Stains + scratches ")
    assert [type(c) for c in spaced.corruptions] == [C.Stains, C.Scratches]
    assert isinstance(C.get("stains"), C.Stains)  # one name: no mixture
    stains = C.Stains(count=2)
    assert C.get(stains) is stains
    # a mixture round-trips through its config like any corruption
    assert C.deserialize(json.loads(json.dumps(C.serialize(mix)))) == mix


@pytest.mark.parametrize(
    "identifier, error, match",
    [
        ("stains+nope", ValueError, r"Unknown corruption 'nope'; expected one of \[.*'stains'"),
        ("stains+", ValueError, r"Unknown corruption ''"),
        ("oneof", ValueError, r"Unknown corruption 'oneof'"),  # combinators are not named
        (3, TypeError, r"Cannot interpret 3 as a corruption"),
    ],
)
def test_get_refuses_unknown_identifiers(identifier, error, match):
    with pytest.raises(error, match=match):
        C.get(identifier)


def test_every_corruption_look_up_goes_through_data_get(monkeypatch, tmp_path):
    from keras_skipae import data
    from keras_skipae.analysis.discrepancy import make_probe_pairs
    from keras_skipae.apps import synth_preview
    from keras_skipae.data.corruptions import base
    from keras_skipae.training import pairs

    real = base.get
    calls = []

    def spy(identifier):
        calls.append(identifier)
        return real(identifier)

    for module in (base, C, data):  # every name the one function is bound to
        monkeypatch.setattr(module, "get", spy)
    images = tf.data.Dataset.from_tensor_slices(_images(4, 16, 16, 1))

    next(iter(corrupt(images, "drops", seed=0, batch_size=2)))
    assert calls == ["drops"]
    _, mix = pairs._resolve_corruption(images, None, "stains+scratches", 0.0)
    assert calls[-1] == "stains+scratches" and isinstance(mix, C.OneOf)
    _, given = pairs._resolve_corruption(images, None, {"class_name": "Drops"}, 0.0)
    assert calls[-1] == {"class_name": "Drops"} and isinstance(given, C.Drops)
    make_probe_pairs(_images(2, 16, 16, 1), "scratches")
    assert calls[-1] == "scratches"
    synth_preview.preview(
        tmp_path, categories=["mesh"], image_size=32, corruption="noise", n_examples=2
    )
    assert calls[-1] == "noise"
    assert len(calls) == 5
