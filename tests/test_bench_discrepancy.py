"""The discrepancy benchmark's in-stain measurement (``--in-mask``) against a brute-force
reference: activations from a plain sub-model, the mask block-averaged in NumPy, SciPy's cosine."""

import sys
from pathlib import Path

import keras
import numpy as np
from scipy.spatial.distance import cosine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_discrepancy as bdisc  # noqa: E402

from keras_skipae import models  # noqa: E402


def _reference(net, clean, corrupted, name):
    sub = keras.Model(net.input, net.get_layer(name).output)
    mu_a = np.asarray(sub(clean, training=False)).mean(axis=-1)
    mu_b = np.asarray(sub(corrupted, training=False)).mean(axis=-1)
    n, h, w = mu_a.shape
    f = clean.shape[1] // h
    stained = (np.abs(corrupted - clean).max(axis=-1) > 0).astype("float64")
    area = stained.reshape(n, h, f, w, f).mean(axis=(2, 4))
    sims = [
        1.0 - cosine(mu_a[i][area[i] >= 0.5], mu_b[i][area[i] >= 0.5])
        for i in range(n)
        if (area[i] >= 0.5).any()
    ]
    return (float(np.median(sims)) if sims else float("nan")), len(sims)


def test_in_mask_cosine_matches_a_brute_force_reference(images, tiny_model):
    net = tiny_model("aesc")
    clean = images(3, seed=1)
    corrupted = clean.copy()
    corrupted[0, 4:20, 8:24] = 0.5  # a 16x16 stain: present at every tap's resolution
    corrupted[1, 0:12, 0:12] = 1.0 - corrupted[1, 0:12, 0:12]
    corrupted[2, 5, 5] = 0.9  # one pixel: present at full resolution only
    layers = [n for n in models.tap_names(net) if n.startswith(("enc", "dec"))]
    got = bdisc.in_mask_cosine(net, clean, corrupted, layers)
    sizes = set()
    for name in layers:
        want = _reference(net, clean, corrupted, name)
        sizes.add(net.get_layer(name).output.shape[1])
        assert got[name][1] == want[1], name
        np.testing.assert_allclose(got[name][0], want[0], rtol=1e-5, atol=1e-6, err_msg=name)
    assert len(sizes) > 1  # taps at more than one resolution were compared
    # every tap is below full resolution, so the one-pixel stain (area 1/4 or less) is left out
    assert {got[n][1] for n in layers} == {2}
    assert all(got[n][0] < 0.99 for n in layers)  # the stains do change what the taps see


def test_in_mask_cosine_leaves_out_pairs_without_a_stain(images, tiny_model):
    net = tiny_model("aesc")
    clean = images(2, seed=2)
    layers = models.tap_names(net)[:1]
    got = bdisc.in_mask_cosine(net, clean, clean.copy(), layers)
    assert got[layers[0]][1] == 0 and np.isnan(got[layers[0]][0])  # no stain: no pair counted
