"""Tests for keras_skipae.ops: the one Gaussian, the one set of SSIM moments."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import gaussian_filter1d

from keras_skipae import losses, scoring
from keras_skipae.data import Stains
from keras_skipae.ops import image as image_ops
from keras_skipae.ops import stats

PACKAGE = Path(__file__).resolve().parent.parent / "keras_skipae"


@pytest.mark.parametrize("sigma, radius", [(1.5, 5), (4.0, 16), (1.5, 3.5)])
def test_gaussian_kernel_matches_a_float64_reference(sigma, radius):
    x = np.arange(-radius, radius + 1)
    ref = np.exp(-0.5 * (x / sigma) ** 2)
    ref /= ref.sum()
    got = image_ops.gaussian_kernel(sigma, radius).numpy()
    assert got.shape == (int(2 * radius + 1),)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_blur_interior_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.random((1, 40, 40, 1)).astype("float32")
    got = image_ops.blur_channels(tf.constant(x), 2.0, 8, "zeros").numpy()[0, ..., 0]
    ref = gaussian_filter1d(
        gaussian_filter1d(x[0, ..., 0], 2.0, 0, truncate=4.0), 2.0, 1, truncate=4.0
    )
    np.testing.assert_allclose(got[10:-10, 10:-10], ref[10:-10, 10:-10], atol=1e-5)


def test_losses_scoring_and_corruptions_all_sample_the_one_gaussian(monkeypatch):
    calls = []
    original = image_ops.gaussian

    def spy(d, sigma):
        calls.append(tf.get_current_name_scope())
        return original(d, sigma)

    monkeypatch.setattr(image_ops, "gaussian", spy)
    x = tf.random.stateless_uniform([2, 24, 24, 1], [0, 1])
    callers = {
        "losses.ssim": lambda: losses.ssim(x, x * 0.9),
        "scoring.gaussian_smooth": lambda: scoring.gaussian_smooth(x[..., 0], 2.0),
        "scoring.ssim_map": lambda: scoring.ssim_map(x, x * 0.9),
        "Stains(blur)": lambda: Stains(blur=0.3)(x, tf.constant([1, 2])),
    }
    for name, call in callers.items():
        before = len(calls)
        call()
        assert len(calls) > before, f"{name} does not use ops.image.gaussian"


def test_no_other_module_writes_a_gaussian():
    hits = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name in ("ops", "synthetic"):  # the synthetic painters draw blobs
            continue
        text = path.read_text(encoding="utf-8")
        if "exp(-0.5" in text or "np.exp(-(" in text:
            hits.append(path.name)
    assert hits == []


def test_ssim_moments_are_the_windowed_means():
    x = tf.random.stateless_uniform([1, 8, 8, 2], [1, 1])
    y = tf.random.stateless_uniform([1, 8, 8, 2], [1, 2])

    def mean_all(t):
        return tf.reduce_mean(t, axis=[1, 2], keepdims=True)

    mx, my, mxx, myy, mxy = image_ops.ssim_moments(x, y, mean_all)
    np.testing.assert_allclose(
        mxy.numpy()[0, 0, 0], np.mean((x * y).numpy(), axis=(0, 1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        mxx.numpy()[0, 0, 0], np.mean((x * x).numpy(), axis=(0, 1, 2)), rtol=1e-5
    )
    assert mx.shape == my.shape == myy.shape == (1, 1, 1, 2)


def test_cosine_similarity_against_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    want = [
        np.dot(p.ravel(), q.ravel()) / np.linalg.norm(p) / np.linalg.norm(q) for p, q in zip(a, b)
    ]
    np.testing.assert_allclose(stats.cosine_similarity(a, b).numpy(), want, rtol=1e-5)
    assert stats.cosine_similarity(np.zeros((1, 3)), np.ones((1, 3))).numpy()[0] == 0.0
