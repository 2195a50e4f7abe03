"""Skip dropout (``skip_dropout=``, :class:`SkipDropout`) and the skip analysis helpers."""

import keras
import numpy as np
import pytest
from conftest import TINY, make_images, make_tiny_model
from harness import run_model_saving_test

import keras_skipae as ks
from keras_skipae.layers import SkipDropout


def _drop_layers(model):
    return {lay.name: lay.rate for lay in model.layers if isinstance(lay, SkipDropout)}


# --------------------------------------------------------------------------- the layer


def test_layer_drops_whole_samples_at_rate_p_and_rescales_the_kept_ones():
    p, n = 0.3, 4000
    layer = SkipDropout(p, seed=7)
    x = np.random.default_rng(0).uniform(0.5, 1.5, (n, 3, 2, 2)).astype("float32")
    y = np.asarray(layer(x, training=True))
    kept = np.all(np.isclose(y, x / (1 - p), rtol=1e-6), axis=(1, 2, 3))
    dropped = np.all(y == 0, axis=(1, 2, 3))
    assert np.all(kept | dropped)  # whole tensors, kept ones scaled by 1/(1-p)
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(dropped.mean() - p) < 4 * sigma, dropped.mean()
    # a second call draws new samples
    again = np.all(np.asarray(layer(x, training=True)) == 0, axis=(1, 2, 3))
    assert not np.array_equal(again, dropped)


def test_layer_without_rescaling_keeps_tensors_unchanged():
    x = np.ones((400, 2, 2, 1), "float32")
    y = np.asarray(SkipDropout(0.5, seed=1, rescale=False)(x, training=True))
    assert set(np.unique(y)) == {0.0, 1.0}
    assert set(np.unique(np.asarray(SkipDropout(0.5, seed=1)(x, training=True)))) == {0.0, 2.0}
    layer = SkipDropout.from_config(SkipDropout(0.5, rescale=False).get_config())
    assert not layer.rescale and SkipDropout(0.5).rescale
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_layer_is_the_identity_at_inference():
    x = make_images(5, (4, 4, 2))
    layer = SkipDropout(0.9)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


@pytest.mark.parametrize("rate", [1.0, -0.1, "0.5", True, None])
def test_layer_refuses_bad_rates(rate):
    with pytest.raises(ValueError, match="rate"):
        SkipDropout(rate)


# --------------------------------------------------------------------------- in the builders


@pytest.mark.parametrize("name", ["aesc", "unet"])
def test_zero_adds_no_layer_and_keeps_the_graph(name):
    default = make_tiny_model(name)
    keras.backend.clear_session()
    zero = make_tiny_model(name, skip_dropout=0.0)
    assert not _drop_layers(zero)
    assert zero.get_config() == default.get_config()


def test_rates_per_level_and_layer_names():
    model = make_tiny_model("aesc", skip_dropout=0.25)
    assert _drop_layers(model) == {"dec1_skip_drop": 0.25, "dec0_skip_drop": 0.25}
    some = make_tiny_model("aesc", skip_dropout=(0.5, 0.0))
    assert _drop_layers(some) == {"dec0_skip_drop": 0.5}
    # a single rate applies to the levels that have a skip only
    coarse = make_tiny_model("aesc", skips=(1,), skip_dropout=0.5)
    assert _drop_layers(coarse) == {"dec1_skip_drop": 0.5}
    unet = make_tiny_model("unet", skip_dropout=(0.0, 0.2))
    assert _drop_layers(unet) == {"dec1_skip_drop": 0.2}
    assert isinstance(unet.get_layer("dec1_skip"), keras.layers.Concatenate)
    # the taps and the other layers keep their names
    plain = make_tiny_model("aesc")
    assert ks.tap_names(model) == ks.tap_names(plain)
    assert [n for n in (lay.name for lay in model.layers) if not n.endswith("_skip_drop")] == [
        lay.name for lay in plain.layers
    ]


@pytest.mark.parametrize("name", ["aesc", "unet"])
def test_identity_at_inference_in_a_model(name):
    keras.utils.set_random_seed(3)
    plain = make_tiny_model(name, dropout=0.0)
    dropped = make_tiny_model(name, dropout=0.0, skip_dropout=0.5)
    dropped.set_weights(plain.get_weights())  # SkipDropout has no weights
    x = make_images(4)
    np.testing.assert_array_equal(
        np.asarray(dropped(x, training=False)), np.asarray(plain(x, training=False))
    )


@pytest.mark.parametrize("skip_dropout", [0.0, 0.5])
def test_training_outputs_differ_between_identical_samples(skip_dropout):
    keras.utils.set_random_seed(0)
    model = make_tiny_model("aesc", skip_dropout=skip_dropout)
    x = np.repeat(make_images(1), 16, axis=0)  # 16 copies of one image
    y = np.asarray(model(x, training=True))
    spread = np.abs(y - y[:1]).max(axis=(1, 2, 3))
    if skip_dropout:
        assert spread.max() > 1e-4  # some samples lost a skip, others did not
    else:
        assert spread.max() < 1e-6  # without skip dropout identical inputs agree


def test_each_skip_is_dropped_independently_at_the_right_frequency():
    keras.utils.set_random_seed(1)
    p, n = 0.4, 512
    model = make_tiny_model("aesc", skip_dropout=p)
    names = ["dec1_skip_drop", "dec0_skip_drop"]
    probe = keras.Model(
        model.input,
        {
            **{f"{k}/in": model.get_layer(k).input for k in names},
            **{f"{k}/out": model.get_layer(k).output for k in names},
        },
    )
    acts = probe(make_images(n), training=True)
    drops = {}
    for k in names:
        src, out = np.asarray(acts[f"{k}/in"]), np.asarray(acts[f"{k}/out"])
        assert np.all(np.abs(src).max(axis=(1, 2, 3)) > 0)
        dropped = np.all(out == 0, axis=(1, 2, 3))
        np.testing.assert_allclose(out[~dropped], src[~dropped] / (1 - p), rtol=1e-5)
        drops[k] = dropped
        assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / n), (k, dropped.mean())
    both = (drops[names[0]] & drops[names[1]]).mean()
    assert abs(both - p * p) < 4 * np.sqrt(p * p * (1 - p * p) / n), both


@pytest.mark.parametrize("name", ["aesc", "unet"])
def test_round_trip_with_safe_mode(name, tmp_path):
    model = make_tiny_model(name, skip_dropout=0.5)
    loaded = run_model_saving_test(model, make_images(2), tmp_path, name=f"{name}.keras")
    assert _drop_layers(loaded) == _drop_layers(model)
    layer = loaded.get_layer("dec0_skip_drop")
    assert layer.get_config() == model.get_layer("dec0_skip_drop").get_config()
    x = np.repeat(make_images(1), 8, axis=0)
    y = np.asarray(loaded(x, training=True))
    assert np.abs(y - y[:1]).max() > 1e-4  # still drops in training after loading


BAD = [
    ("aesc", {"skip_dropout": 1.0}, "skip_dropout=1.0"),
    ("aesc", {"skip_dropout": -0.1}, "skip_dropout=-0.1"),
    ("aesc", {"skip_dropout": "0.5"}, "skip_dropout='0.5'"),
    ("aesc", {"skip_dropout": True}, "skip_dropout=True"),
    ("aesc", {"skip_dropout": (0.1, 0.2, 0.3)}, "one per level"),
    ("aesc", {"skips": (1,), "skip_dropout": (0.5, 0.0)}, "level\\(s\\) \\[0\\]"),
    ("aesc", {"skips": (), "skip_dropout": 0.5}, "needs skip connections"),
    ("aesc", {"skip_mode": None, "skip_dropout": 0.5}, "needs skip connections"),
    ("ae", {"skip_dropout": 0.25}, "Received: skip_dropout=0.25"),
]


@pytest.mark.parametrize(("name", "kwargs", "match"), BAD)
def test_bad_skip_dropout_raises(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_tiny_model(name, **kwargs)


def test_ae_accepts_zero():
    ae = ks.build_ae(**TINY["ae"], skip_dropout=0.0)
    assert not _drop_layers(ae)


# --------------------------------------------------------------------------- analysis helpers


def _repair_reference(images, recon, masks, labels):
    defect, good = [], []
    for x, y, m, label in zip(images, recon, masks, labels):
        r = np.abs(x.astype(np.float64) - y).mean(axis=-1)
        for i in range(r.shape[0]):
            for j in range(r.shape[1]):
                if label == 0:
                    good.append(r[i, j])
                elif m[i, j, 0] > 0.5:
                    defect.append(r[i, j])
    return np.mean(defect) / np.mean(good)


def test_repair_ratio_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    images = rng.random((5, 6, 7, 3)).astype("float32")
    recon = rng.random((5, 6, 7, 3)).astype("float32")
    masks = (rng.random((5, 6, 7, 1)) > 0.7).astype("float32")
    labels = np.array([0, 1, 0, 1, 1])
    masks[labels == 0] = 0
    got = ks.analysis.repair_ratio(images, recon, masks, labels)
    assert got == pytest.approx(_repair_reference(images, recon, masks, labels), rel=1e-12)
    # a perfect copy of the defect and some error elsewhere: ratio 0
    copy = images.copy()
    copy[labels == 0] += 0.1
    assert ks.analysis.repair_ratio(images, copy, masks, labels) == pytest.approx(0.0)


def test_repair_ratio_errors():
    x = make_images(2, (4, 4, 1))
    masks = np.zeros((2, 4, 4, 1), "float32")
    with pytest.raises(ValueError, match="defect"):
        ks.analysis.repair_ratio(x, x + 0.1, masks, [0, 1])
    masks[1, 0, 0] = 1
    with pytest.raises(ValueError, match="good images"):
        ks.analysis.repair_ratio(x, x + 0.1, masks, [1, 1])
    with pytest.raises(ValueError, match="same shape"):
        ks.analysis.repair_ratio(x, x[:1], masks, [0, 1])
    with pytest.raises(ValueError, match="masks"):
        ks.analysis.repair_ratio(x, x, masks[:, :2], [0, 1])
    with pytest.raises(ValueError, match="one entry per image"):
        ks.analysis.repair_ratio(x, x, masks, [0, 1, 1])
    with pytest.raises(ValueError, match="zero"):
        ks.analysis.repair_ratio(x, x, masks, [0, 1])


def test_skip_contributions_match_the_layers_outputs():
    keras.utils.set_random_seed(2)
    model = make_tiny_model("aesc", skip_scale=(0.5, 1.0), skip_dropout=0.3)
    x = make_images(6)
    got = ks.analysis.skip_contributions(model, x, batch_size=4)
    assert list(got) == ["dec1_skip", "dec0_skip"]
    names = ["dec0_act", "enc0_out", "dec1_act", "enc1_out"]
    ref = keras.Model(model.input, [model.get_layer(n).output for n in names])(x, training=False)
    acts = {n: np.asarray(a, dtype=np.float64) for n, a in zip(names, ref)}

    def rms(a):
        return np.sqrt(np.mean(np.square(a)))

    for level, scale in ((0, 0.5), (1, 1.0)):
        r = got[f"dec{level}_skip"]
        assert r["mode"] == "add"
        assert r["source_rms"] == pytest.approx(rms(acts[f"enc{level}_out"]), rel=1e-5)
        assert r["skip_rms"] == pytest.approx(scale * rms(acts[f"enc{level}_out"]), rel=1e-5)
        assert r["decoder_rms"] == pytest.approx(rms(acts[f"dec{level}_act"]), rel=1e-5)
        assert r["ratio"] == pytest.approx(r["skip_rms"] / r["decoder_rms"])
    with pytest.raises(ValueError, match="no skip merges"):
        ks.analysis.skip_contributions(make_tiny_model("ae"), x)
