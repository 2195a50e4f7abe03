"""Tests for keras_skipae.scoring: maps, smoothing, scores, MC dropout."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage
from skimage.metrics import structural_similarity

from keras_skipae import scoring
from keras_skipae.scoring import ScoringConfig


def _tiny_model(shape=(16, 16, 1), dropout=0.0, with_dropout=True, bn_stats=None):
    inp = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    if with_dropout:
        x = keras.layers.Dropout(dropout, name="drop")(x)
    x = keras.layers.Conv2D(shape[-1], 3, padding="same", activation="sigmoid", name="out")(x)
    model = keras.Model(inp, x, name="tiny")
    if bn_stats is not None:
        bn = model.get_layer("bn")
        bn.moving_mean.assign(np.full(4, bn_stats[0], "float32"))
        bn.moving_variance.assign(np.full(4, bn_stats[1], "float32"))
    return model


# ---------------------------------------------------------------- residual


def test_residual_map_hand_computed_rgb():
    x = np.zeros((1, 2, 2, 3), "float32")
    y = np.zeros((1, 2, 2, 3), "float32")
    x[0, 0, 0] = [0.3, 0.6, 0.9]
    y[0, 0, 0] = [0.0, 0.0, 0.0]
    x[0, 1, 1] = [0.1, 0.1, 0.1]
    y[0, 1, 1] = [0.4, 0.4, 0.7]
    expected = np.array([[[0.6, 0.0], [0.0, 0.4]]], "float32")
    np.testing.assert_allclose(scoring.residual_map(x, y).numpy(), expected, atol=1e-6)


def test_residual_map_grayscale_shape():
    x = np.random.default_rng(0).random((2, 5, 7, 1)).astype("float32")
    out = scoring.residual_map(x, 1 - x).numpy()
    assert out.shape == (2, 5, 7)
    np.testing.assert_allclose(out, np.abs(2 * x[..., 0] - 1), atol=1e-6)


# ---------------------------------------------------------------- SSIM


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_map_matches_skimage_interior(channels):
    rng = np.random.default_rng(1)
    x = rng.random((24, 28, channels))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    y[5:12, 6:15] = 0.1 * y[5:12, 6:15]  # a structured difference too
    ours = scoring.ssim_map(x[None].astype("float32"), y[None].astype("float32")).numpy()[0]
    ref = np.mean(
        [
            structural_similarity(
                x[..., c],
                y[..., c],
                full=True,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1,
            )[1]
            for c in range(channels)
        ],
        axis=0,
    )
    r = 5  # window radius: pixels further from the border see no padding
    assert ours.shape == (24, 28)
    np.testing.assert_allclose(ours[r:-r, r:-r], 1 - ref[r:-r, r:-r], atol=2e-4)


def test_ssim_map_zero_for_identical_images():
    x = np.random.default_rng(2).random((2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(scoring.ssim_map(x, x).numpy(), 0.0, atol=1e-4)


# ---------------------------------------------------------------- smoothing


def test_gaussian_smooth_interior_matches_scipy():
    rng = np.random.default_rng(3)
    maps = rng.random((2, 40, 44)).astype("float32")
    sigma = 2.0
    ours = scoring.gaussian_smooth(maps, sigma).numpy()
    ref = np.stack(
        [ndimage.gaussian_filter(m.astype("float64"), sigma, truncate=4.0) for m in maps]
    )
    r = int(4 * sigma + 0.5)
    np.testing.assert_allclose(ours[:, r:-r, r:-r], ref[:, r:-r, r:-r], atol=1e-5)


def test_gaussian_smooth_normalized_keeps_constants_and_mass_at_borders():
    maps = np.full((1, 12, 9), 0.7, "float32")
    out = scoring.gaussian_smooth(maps, 3.0, border="normalized").numpy()
    np.testing.assert_allclose(out, 0.7, atol=1e-6)
    # A delta in the interior comes out as the sampled 2-D kernel.
    delta = np.zeros((1, 31, 31), "float32")
    delta[0, 15, 15] = 1.0
    out = scoring.gaussian_smooth(delta, 1.0, border="normalized").numpy()[0]
    g = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    g /= g.sum()
    np.testing.assert_allclose(out[11:20, 11:20], np.outer(g, g), atol=1e-6)
    assert abs(out.sum() - 1.0) < 1e-5


@pytest.mark.parametrize("sigma", [1.5, 4.0])  # 4.0: the kernel is wider than the image
def test_gaussian_smooth_zeros_matches_scipy_constant_mode(sigma):
    maps = np.random.default_rng(5).random((2, 13, 10)).astype("float32")
    ours = scoring.gaussian_smooth(maps, sigma, border="zeros").numpy()
    ref = np.stack(
        [ndimage.gaussian_filter(m.astype("float64"), sigma, mode="constant") for m in maps]
    )
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("border", scoring.SMOOTHING_BORDERS)
def test_gaussian_smooth_same_under_xla_and_unknown_shapes(border):
    # The serving signature has unknown sizes; XLA needs static ones. Kernel
    # radius larger than the image (sigma 4 -> 16 taps each side on 9 columns).
    maps = np.random.default_rng(6).random((2, 17, 9)).astype("float32")
    want = scoring.gaussian_smooth(maps, 4.0, border=border).numpy()
    jit = tf.function(lambda m: scoring.gaussian_smooth(m, 4.0, border=border), jit_compile=True)
    dynamic = tf.function(
        lambda m: scoring.gaussian_smooth(m, 4.0, border=border),
        input_signature=[tf.TensorSpec([None, None, None], tf.float32)],
    )
    np.testing.assert_allclose(jit(maps).numpy(), want, atol=1e-6)
    np.testing.assert_allclose(dynamic(maps).numpy(), want, atol=1e-6)


def _smoothing_weights(h, w, sigma, border):
    """W[p, q]: the weight of input pixel q in output pixel p (from delta images)."""
    deltas = np.eye(h * w, dtype="float32").reshape(h * w, h, w)
    return scoring.gaussian_smooth(deltas, sigma, border=border).numpy().reshape(h * w, h * w).T


def test_gaussian_smooth_equalized_gives_uniform_noise_variance():
    # For i.i.d. unit-variance pixel noise, Var(out[p]) = sum_q W[p, q]^2: equal at
    # every position (the interior's sum of squared 2-D kernel weights), while the
    # normalized mean's variance grows towards the borders.
    sigma = 1.0
    g = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    g /= g.sum()
    interior = (g**2).sum() ** 2
    var_eq = (_smoothing_weights(9, 11, sigma, "equalized") ** 2).sum(axis=1)
    np.testing.assert_allclose(var_eq, interior, rtol=1e-4)
    var_norm = (_smoothing_weights(9, 11, sigma, "normalized") ** 2).sum(axis=1).reshape(9, 11)
    assert var_norm[0, 0] > 2 * interior  # a corner averages about a quarter of the kernel
    np.testing.assert_allclose(var_norm[4, 5], interior, rtol=1e-4)


def test_gaussian_smooth_default_border_is_equalized():
    maps = np.random.default_rng(6).random((1, 10, 12)).astype("float32")
    np.testing.assert_array_equal(
        scoring.gaussian_smooth(maps, 2.0).numpy(),
        scoring.gaussian_smooth(maps, 2.0, border="equalized").numpy(),
    )
    assert scoring.DEFAULT_SMOOTHING_BORDER == "equalized"


def test_gaussian_smooth_rejects_bad_border():
    with pytest.raises(ValueError, match="border='reflect'"):
        scoring.gaussian_smooth(np.zeros((1, 4, 4), "float32"), 1.0, border="reflect")


@pytest.mark.parametrize("sigma", [0, 0.0, None])
def test_gaussian_smooth_off(sigma):
    maps = np.random.default_rng(4).random((2, 6, 6)).astype("float32")
    np.testing.assert_array_equal(scoring.gaussian_smooth(maps, sigma).numpy(), maps)


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), "big"])
def test_gaussian_smooth_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="smoothing"):
        scoring.gaussian_smooth(np.zeros((1, 4, 4), "float32"), sigma)


# ---------------------------------------------------------------- scores


MAPS = np.array([[[1.0, 2.0], [3.0, 4.0]], [[0.0, -1.0], [0.5, 0.0]]], "float32")


@pytest.mark.parametrize(
    "score, kwargs, expected",
    [
        ("max", {}, [4.0, 0.5]),
        ("mean", {}, [2.5, -0.125]),
        ("topk", {"topk": 0.5}, [3.5, 0.25]),  # the 2 largest of 4 pixels
        ("topk", {"topk": 0.1}, [4.0, 0.5]),  # ceil(0.4) = 1 pixel
        ("topk", {"topk": 3}, [3.0, 1.0 / 6.0]),  # a count
        ("topk", {"topk": 100}, [2.5, -0.125]),  # clipped to all pixels
        ("lp", {"p": 2.0}, [np.sqrt(30.0), np.sqrt(1.25)]),
        ("lp", {"p": 1.0}, [10.0, 1.5]),
        ("lp", {"p": float("inf")}, [4.0, 1.0]),
    ],
)
def test_image_score_hand_computed(score, kwargs, expected):
    out = scoring.image_score(MAPS, score, **kwargs).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"score": "median"}, "score"),
        ({"score": "topk", "topk": 0}, "topk"),
        ({"score": "topk", "topk": 2.5}, "topk"),
        ({"score": "lp", "p": 0}, "p"),
    ],
)
def test_image_score_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scoring.image_score(MAPS, **kwargs)


def test_is_anomalous_uses_greater_equal():
    out = scoring.is_anomalous([0.1, 0.5, 0.9], 0.5).numpy()
    np.testing.assert_array_equal(out, [False, True, True])


# ---------------------------------------------------------------- compute


def test_compute_matches_manual_pipeline():
    model = _tiny_model()
    x = np.random.default_rng(5).random((3, 16, 16, 1)).astype("float32")
    out = scoring.compute(
        model, x, ScoringConfig(map="residual", smoothing=1.5, score="topk", topk=0.05)
    )
    assert set(out) == {"reconstruction", "anomaly_map", "score"}
    recon = model(x, training=False).numpy()
    np.testing.assert_allclose(out["reconstruction"].numpy(), recon, atol=1e-6)
    raw = np.abs(x - recon)[..., 0]
    ref_map = np.stack(
        [ndimage.gaussian_filter(m.astype("float64"), 1.5, truncate=4.0) for m in raw]
    )
    np.testing.assert_allclose(
        out["anomaly_map"].numpy()[:, 6:-6, 6:-6], ref_map[:, 6:-6, 6:-6], atol=1e-5
    )
    flat = out["anomaly_map"].numpy().reshape(3, -1)
    k = int(np.ceil(0.05 * flat.shape[1]))
    np.testing.assert_allclose(out["score"].numpy(), np.sort(flat, 1)[:, -k:].mean(1), rtol=1e-5)


def test_compute_defaults_are_documented_constants():
    model = _tiny_model()
    x = np.random.default_rng(6).random((2, 16, 16, 1)).astype("float32")
    out = scoring.compute(model, x)
    raw = np.abs(x - model(x, training=False).numpy())[..., 0]
    smooth = scoring.gaussian_smooth(raw, scoring.DEFAULT_SMOOTHING).numpy()
    assert scoring.DEFAULT_MAP == "residual" and scoring.DEFAULT_SCORE == "max"
    np.testing.assert_allclose(out["score"].numpy(), smooth.reshape(2, -1).max(1), rtol=1e-6)


def test_compute_uint8_equals_float():
    model = _tiny_model()
    u8 = np.random.default_rng(7).integers(0, 256, (2, 16, 16, 1)).astype("uint8")
    a = scoring.compute(model, u8)
    b = scoring.compute(model, u8.astype("float32") / 255.0)
    np.testing.assert_allclose(a["score"].numpy(), b["score"].numpy(), atol=1e-6)


def test_compute_in_tf_function_equals_eager():
    model = _tiny_model(shape=(16, 16, 3))
    x = np.random.default_rng(8).random((2, 16, 16, 3)).astype("float32")
    cfg = ScoringConfig(map="ssim", smoothing=2.0, score="lp", p=3.0)
    eager = scoring.compute(model, x, cfg)
    scorer = scoring.make_scorer(model, cfg)
    graph = scorer(tf.constant(x))
    for key in eager:
        np.testing.assert_allclose(graph[key].numpy(), eager[key].numpy(), atol=1e-5)
    # A different batch size through the same scorer.
    assert scorer(tf.constant(x[:1]))["score"].shape == (1,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"map": "nope"}, "map"),
        ({"score": "nope"}, "score"),
        ({"smoothing": -2}, "smoothing"),
        ({"smoothing_border": "reflect"}, "smoothing_border='reflect'"),
    ],
)
def test_compute_rejects_bad_settings(kwargs, match):
    model = _tiny_model()
    with pytest.raises(ValueError, match=match):
        scoring.compute(model, np.zeros((1, 16, 16, 1), "float32"), kwargs)  # a settings dict


def test_compute_smoothing_border_reaches_the_map():
    model = _tiny_model()
    x = np.random.default_rng(9).random((2, 16, 16, 1)).astype("float32")
    raw = scoring.compute(model, x, ScoringConfig(smoothing=0))["anomaly_map"].numpy()
    for border in scoring.SMOOTHING_BORDERS:
        out = scoring.compute(model, x, ScoringConfig(smoothing=2.0, smoothing_border=border))
        want = scoring.gaussian_smooth(raw, 2.0, border=border).numpy()
        np.testing.assert_allclose(out["anomaly_map"].numpy(), want, atol=1e-6)
    assert ScoringConfig().to_dict()["smoothing_border"] == "equalized"


def test_compute_rejects_wrong_rank_and_dtype():
    model = _tiny_model()
    with pytest.raises(ValueError, match="rank 4"):
        scoring.compute(model, np.zeros((16, 16, 1), "float32"))
    with pytest.raises(ValueError, match="dtype"):
        scoring.compute(model, np.zeros((1, 16, 16, 1), "int32"))


def test_register_map_dispatch():
    calls = {}

    def double_residual(model, images, reconstruction, *, factor=2.0, **options):
        calls["factor"] = factor
        return factor * scoring.residual_map(images, reconstruction)

    scoring.register_map("_test_double", double_residual)
    try:
        with pytest.raises(ValueError, match="already exists"):
            scoring.register_map("_test_double", double_residual)
        model = _tiny_model()
        x = np.random.default_rng(9).random((2, 16, 16, 1)).astype("float32")
        a = scoring.compute(model, x, ScoringConfig(smoothing=0, score="mean"))
        cfg = ScoringConfig(
            map="_test_double", smoothing=0, score="mean", map_options={"factor": 3.0}
        )
        b = scoring.compute(model, x, cfg)
        assert calls["factor"] == 3.0
        np.testing.assert_allclose(b["score"].numpy(), 3.0 * a["score"].numpy(), rtol=1e-5)
    finally:
        scoring.ANOMALY_MAPS.pop("_test_double", None)


# ---------------------------------------------------------------- MC dropout


def test_mc_dropout_zero_without_dropout_layers():
    model = _tiny_model(with_dropout=False, bn_stats=(0.3, 2.0))
    x = np.random.default_rng(10).random((2, 16, 16, 1)).astype("float32")
    with pytest.warns(UserWarning, match="no Dropout"):
        out = scoring.mc_dropout_map(model, x, mc_samples=4).numpy()
    np.testing.assert_allclose(out, 0.0, atol=1e-10)


def test_mc_dropout_zero_with_rate_zero_and_bn_in_inference_mode():
    model = _tiny_model(dropout=0.0, bn_stats=(0.5, 4.0))
    x = np.random.default_rng(11).random((4, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(
        scoring.mc_dropout_map(model, x, mc_samples=3).numpy(), 0.0, atol=1e-10
    )
    clone = scoring.mc_dropout_model(model)
    assert any(isinstance(layer, scoring.MCDropout) for layer in clone.layers)
    # BatchNorm uses its moving statistics, not the batch's:
    inference = model(x, training=False).numpy()
    batch_stats = model(x, training=True).numpy()
    assert np.abs(inference - batch_stats).max() > 1e-3  # the two modes differ here
    np.testing.assert_allclose(clone(x).numpy(), inference, atol=1e-6)


def test_mc_dropout_positive_with_dropout_and_leaves_model_untouched():
    model = _tiny_model(dropout=0.5, bn_stats=(0.2, 3.0))
    x = np.random.default_rng(12).random((2, 16, 16, 1)).astype("float32")
    before = [w.numpy().copy() for w in model.weights]
    var = scoring.mc_dropout_map(model, x, mc_samples=6).numpy()
    assert var.shape == (2, 16, 16)
    assert (var > 0).mean() > 0.9
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)  # BN moving stats not updated
    # The deterministic model is unchanged: dropout inactive without MC.
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x).numpy())
    out = scoring.compute(model, x, ScoringConfig(map="mc_dropout", mc_samples=4))
    np.testing.assert_allclose(
        out["reconstruction"].numpy(), model(x, training=False).numpy(), atol=1e-6
    )
    assert float(out["score"].numpy().min()) > 0


def test_mc_dropout_clone_is_cached_and_follows_new_weights():
    model = _tiny_model(dropout=0.0)
    x = np.random.default_rng(13).random((2, 16, 16, 1)).astype("float32")
    scoring.mc_dropout_map(model, x, mc_samples=2)
    clone = scoring.mc_dropout_model(model)
    assert scoring.mc_dropout_model(model) is clone
    model.get_layer("out").kernel.assign(np.ones_like(model.get_layer("out").kernel.numpy()))
    scoring.mc_dropout_map(model, x, mc_samples=2)
    np.testing.assert_allclose(clone(x).numpy(), model(x, training=False).numpy(), atol=1e-6)


def test_mc_dropout_rejects_one_sample():
    with pytest.raises(ValueError, match="mc_samples"):
        scoring.mc_dropout_map(
            _tiny_model(dropout=0.5), np.zeros((1, 16, 16, 1), "float32"), mc_samples=1
        )


def test_make_scorer_with_image_shape_traces_once_for_any_batch():
    model = _tiny_model()
    x = np.random.default_rng(14).random((5, 16, 16, 1)).astype("float32")
    for jit in (False, "auto"):  # "auto" on a CPU: a MeasuredJit; its plain variant is used
        scorer = scoring.make_scorer(
            model, ScoringConfig(score="mean"), image_shape=(16, 16, 1), jit_compile=jit
        )
        for n in (5, 2, 1):
            out = scorer(x[:n])
            np.testing.assert_allclose(
                out["score"].numpy(),
                scoring.compute(model, x[:n], ScoringConfig(score="mean"))["score"].numpy(),
                atol=1e-6,
            )
        fn = scorer if jit is False else scorer.fn_off
        assert fn.experimental_get_tracing_count() == 1


def test_mc_dropout_on_aesc_with_per_level_rates():
    from keras_skipae.models import build_aesc

    model = build_aesc(input_shape=(32, 32, 1), depth=3, filters=4, dropout=(0.0, 0.2, 0.5))
    x = np.random.default_rng(15).random((2, 32, 32, 1)).astype("float32")
    var = scoring.mc_dropout_map(model, x, mc_samples=4).numpy()
    assert var.shape == (2, 32, 32) and var.mean() > 0
    clone = scoring.mc_dropout_model(model)
    n_mc = sum(isinstance(layer, scoring.MCDropout) for layer in clone.layers)
    n_drop = sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert n_mc == n_drop > 0
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]


# ---------------------------------------------------------------- ScoringConfig


def test_scoring_config_round_trips_and_validates():
    from keras_skipae.scoring import ScoringConfig

    cfg = ScoringConfig(map="ssim", smoothing=2, score="topk", topk=0.05)
    assert ScoringConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["smoothing"] == 2.0 and isinstance(cfg.smoothing, float)
    assert ScoringConfig(smoothing=None).smoothing == 0.0
    assert ScoringConfig(topk=3).topk == 3
    with pytest.raises(AttributeError, match="cannot assign to field 'map'"):
        cfg.map = "residual"  # frozen
    for kwargs, match in [
        ({"map": "magic"}, "map='magic'"),
        ({"score": "median"}, "score='median'"),
        ({"smoothing": -1}, "smoothing=-1"),
        ({"smoothing_border": "wrap"}, "smoothing_border='wrap'"),
        ({"topk": 1.5}, "topk=1.5"),
        ({"p": 0}, "p=0"),
        ({"map": "mc_dropout", "mc_samples": 1}, "mc_samples=1"),
        ({"map_options": [1]}, "map_options"),
    ]:
        with pytest.raises(ValueError, match=re.escape(match)):
            ScoringConfig(**kwargs)


def test_scoring_config_resolve():
    from keras_skipae.scoring import ScoringConfig

    assert ScoringConfig.resolve(None) == ScoringConfig()
    assert ScoringConfig.resolve({"map": "ssim"}) == ScoringConfig(map="ssim")
    cfg = ScoringConfig(smoothing=2.0)
    assert ScoringConfig.resolve(cfg) is cfg
    with pytest.raises(ValueError, match=r"compute: expected `scoring`.*Received: scoring='ssim'"):
        ScoringConfig.resolve("ssim", caller="compute")


@pytest.mark.parametrize(
    "fn", ["compute", "make_scorer", "export_saved_model", "resolve"], ids=lambda f: f
)
def test_the_pre_0_2_scoring_keywords_are_gone(fn):
    # map=, smoothing=, ... (and evaluate's method=) were pre-0.2 spellings of scoring=.
    from keras_skipae.export import export_saved_model
    from keras_skipae.scoring import ScoringConfig

    call = {
        "compute": lambda: scoring.compute(None, np.zeros((1, 8, 8, 1), "float32"), map="ssim"),
        "make_scorer": lambda: scoring.make_scorer(None, map="ssim"),
        "export_saved_model": lambda: export_saved_model(None, "x", map="ssim"),
        "resolve": lambda: ScoringConfig.resolve(None, method="ssim"),
    }[fn]
    with pytest.raises(TypeError, match="unexpected keyword argument '(map|method)'"):
        call()


def test_differences_name_each_setting():
    from keras_skipae.scoring import ScoringConfig

    a, b = ScoringConfig(), ScoringConfig(map="ssim", smoothing=2.0)
    assert a.differences(b) == [
        "map='residual' (other: 'ssim')",
        "smoothing=4.0 (other: 2.0)",
    ]
    assert a.same_scores_as(a.to_dict()) and not a.same_scores_as(b)
    unsmoothed = ScoringConfig(smoothing=0)
    assert unsmoothed.same_scores_as(unsmoothed.replace(smoothing_border="zeros"))
