"""Tests for keras_skipae.analysis (layer discrepancy, maps, discrepancy loss)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_images, make_tiny_model  # noqa: E402
from harness import run_model_saving_test  # noqa: E402

from keras_skipae import analysis, scoring
from keras_skipae.models import build_ae, build_aesc, tap_names

SHAPE = (32, 32, 1)


def _tiny(builder, **kw):
    return make_tiny_model(builder.__name__.removeprefix("build_"), **kw)


def _images(n=3, seed=0):
    return make_images(n, SHAPE, seed)


def _np_cos(a, b):
    a = a.reshape(len(a), -1).astype("float64")
    b = b.reshape(len(b), -1).astype("float64")
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_cosine_similarity_matches_numpy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 5, 3)).astype("float32")
    b = rng.normal(size=(4, 5, 3)).astype("float32")
    b[0] = 2.5 * a[0]  # parallel: 1
    b[1] = -a[1]  # opposite: -1
    got = np.asarray(analysis.cosine_similarity(a, b))
    np.testing.assert_allclose(got, _np_cos(a, b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:2], [1.0, -1.0], atol=1e-6)
    # A zero map gives 0, not NaN.
    assert float(analysis.cosine_similarity(np.zeros((1, 2, 2)), np.ones((1, 2, 2)))[0]) == 0.0


def test_channel_mean_is_mean_over_last_axis():
    x = np.random.default_rng(2).random((2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(analysis.channel_mean(x), x.mean(-1), rtol=1e-6)


def test_ae_and_aesc_taps_line_up():
    ae, aesc = _tiny(build_ae), _tiny(build_aesc)
    assert tap_names(ae) == tap_names(aesc)
    c, k = analysis.make_probe_pairs(_images(2), "stains", seed=0)
    ra = analysis.layer_discrepancy(ae, c, k)
    rs = analysis.layer_discrepancy(aesc, c, k)
    assert ra.layers == rs.layers == tap_names(ae)
    assert ra.shapes == rs.shapes
    assert [ra.shapes[n][:2] for n in ra.layers] == [(16, 16), (8, 8), (4, 4), (8, 8), (16, 16)]


def test_layer_discrepancy_matches_numpy_reference():
    model = _tiny(build_aesc)
    c, k = analysis.make_probe_pairs(_images(5), "stains", seed=3)
    assert np.abs(c - k).max() > 0.05  # the stains changed something
    result = analysis.layer_discrepancy(model, c, k, batch_size=2, return_means=True)
    taps = keras.Model(model.input, {n: model.get_layer(n).output for n in result.layers})
    ac, ak = taps(c, training=False), taps(k, training=False)
    for name in result.layers:
        mc = np.asarray(ac[name]).mean(-1)
        mk = np.asarray(ak[name]).mean(-1)
        np.testing.assert_allclose(result.means_clean[name], mc, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.cosine[name], _np_cos(mc, mk), rtol=1e-4, atol=1e-5)
        l2 = np.linalg.norm((mc - mk).reshape(len(mc), -1), axis=1)
        np.testing.assert_allclose(result.l2[name], l2, rtol=1e-4, atol=1e-5)
    # Identical pairs: similarity 1, distance 0.
    same = analysis.layer_discrepancy(model, c, c)
    for name in same.layers:
        np.testing.assert_allclose(same.cosine[name], 1.0, atol=1e-5)
        np.testing.assert_allclose(same.l2[name], 0.0, atol=1e-5)


def test_free_size_model():
    model = build_aesc(input_shape=(None, None, 1), depth=3, filters=4)
    x = _images(2)
    result = analysis.layer_discrepancy(model, x, x[::-1].copy())
    assert result.shapes["enc0_out"] == (16, 16, 4)
    assert result.shapes["bottleneck_out"] == (4, 4, 16)
    assert analysis.discrepancy_map(model, x, layers="all").shape == (2, 32, 32)


def test_result_serialises():
    model = _tiny(build_ae)
    c, k = analysis.make_probe_pairs(_images(3), "stains", seed=0)
    result = analysis.layer_discrepancy(model, c, k)
    d = result.to_dict()
    assert d["layers"] == result.layers and d["n_pairs"] == 3
    assert len(d["cosine"]["dec0_out"]) == 3
    rows = result.to_rows(model="ae")
    assert len(rows) == 3 * len(result.layers) and rows[0]["model"] == "ae"
    import json

    json.dumps(d)


def test_make_probe_pairs_is_deterministic_and_stateless():
    x = _images(2)
    keras.utils.set_random_seed(0)
    before = keras.random.uniform((3,))
    keras.utils.set_random_seed(0)
    a = analysis.make_probe_pairs(x, "stains", seed=7)
    after = keras.random.uniform((3,))
    b = analysis.make_probe_pairs(x, "stains", seed=7)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(np.asarray(before), np.asarray(after))


def test_select_layers_and_errors():
    model = _tiny(build_aesc)
    assert analysis.select_layers(model, "encoder") == ["enc0_out", "enc1_out"]
    assert analysis.select_layers(model, "decoder") == ["dec1_out", "dec0_out"]
    assert analysis.select_layers(model, ["dec0_out", "enc0_out"]) == ["enc0_out", "dec0_out"]
    with pytest.raises(ValueError, match="layers="):
        analysis.select_layers(model, "middle")
    with pytest.raises(ValueError, match="Unknown tap"):
        analysis.select_layers(model, ["nope"])


def test_paper_trend():
    def fake(values):
        layers = ["enc0_out", "bottleneck_out", "dec1_out", "dec0_out"]
        return analysis.DiscrepancyResult(
            layers=layers,
            shapes={k: (1, 1, 1) for k in layers},
            cosine={k: np.array([v]) for k, v in zip(layers, values)},
            l2={k: np.array([0.0]) for k in layers},
        )

    ok = analysis.paper_trend(fake([1, 1, 0.99, 0.99]), fake([1, 0.9, 0.8, 0.6]))
    assert ok["reproduced"] and ok["aesc_monotone"]
    bad = analysis.paper_trend(fake([1, 1, 0.9, 0.5]), fake([1, 0.9, 0.8, 0.6]))
    assert not bad["reproduced"] and bad["aesc_falls"] and not bad["aesc_ends_below_ae"]


# --------------------------------------------------------------------------- maps


@pytest.mark.parametrize("layers", ["decoder", "encoder", "all"])
def test_discrepancy_map_shapes_and_finite(layers):
    model = _tiny(build_aesc)
    x = _images(2)
    m = analysis.discrepancy_map(model, x, layers=layers)
    assert m.shape == (2, 32, 32)
    assert np.all(np.isfinite(m)) and float(tf.reduce_min(m)) >= 0.0
    c = analysis.combined_map(model, x, layers=layers, normalize="relative")
    assert c.shape == (2, 32, 32) and np.all(np.isfinite(c))


def test_discrepancy_map_hand_checked():
    model = _tiny(build_aesc)
    x = _images(2, seed=4)
    recon = model(x, training=False)
    taps = keras.Model(model.input, model.get_layer("dec0_out").output)
    mu_x = np.asarray(taps(x, training=False)).mean(-1, keepdims=True)
    mu_r = np.asarray(taps(recon, training=False)).mean(-1, keepdims=True)
    expected = np.asarray(tf.image.resize(np.abs(mu_x - mu_r), (32, 32)))[..., 0]
    got = analysis.discrepancy_map(model, x, recon, layers=["dec0_out"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # The input equal to its "reconstruction": no discrepancy.
    zero = analysis.discrepancy_map(model, x, x, layers="all")
    np.testing.assert_allclose(zero, 0.0, atol=1e-6)
    # combined = sqrt(residual * discrepancy)
    comb = analysis.combined_map(model, x, recon, layers=["dec0_out"])
    res = np.abs(x - np.asarray(recon)).mean(-1)
    np.testing.assert_allclose(comb, np.sqrt(res * expected), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pooled", [False, True])
def test_deviation_map_hand_checked(pooled):
    model = _tiny(build_aesc)
    good = _images(6, seed=6)
    stats = analysis.LayerStatistics.fit(model, good, layers=["enc0_out"], pooled=pooled)
    taps = keras.Model(model.input, model.get_layer("enc0_out").output)
    mu = np.asarray(taps(good, training=False)).mean(-1)
    mean = np.full((16, 16), mu.mean()) if pooled else mu.mean(0)
    std = np.full((16, 16), mu.std()) if pooled else mu.std(0)
    np.testing.assert_allclose(stats["enc0_out"]["mean"], mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["enc0_out"]["std"], std, rtol=1e-3, atol=1e-6)
    x = _images(2, seed=7)
    mx = np.asarray(taps(x, training=False)).mean(-1)
    floor = np.maximum(std, 0.1 * std.mean() + 1e-6)
    z = np.abs(mx - mean) / floor
    expected = np.asarray(tf.image.resize(z[..., None], (32, 32)))[..., 0]
    got = analysis.deviation_map(model, x, statistics=stats)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="statistics"):
        analysis.deviation_map(model, x, statistics=None)


def test_scoring_registry_has_discrepancy_maps():
    model = _tiny(build_aesc)
    x = _images(2)
    for name in ("discrepancy", "combined"):
        cfg = scoring.ScoringConfig(map=name, map_options={"layers": "encoder"})
        out = scoring.compute(model, x, cfg)
        assert out["anomaly_map"].shape == (2, 32, 32)
        assert out["score"].shape == (2,)
        assert np.all(np.isfinite(out["score"]))
    scorer = scoring.make_scorer(
        model, scoring.ScoringConfig(map="discrepancy")
    )  # inside a tf.function
    assert scorer(tf.constant(x))["anomaly_map"].shape == (2, 32, 32)


# --------------------------------------------------------------------------- loss


@pytest.mark.slow
def test_discrepancy_loss_trains_a_step_and_is_off_by_default():
    base = _tiny(build_aesc)
    x = _images(4)
    c, k = analysis.make_probe_pairs(x, "stains", seed=0)
    before = [np.asarray(w) for w in base.trainable_weights]
    model = analysis.DiscrepancyLossModel(base, weight=0.5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    hist = model.fit(k, c, batch_size=4, epochs=1, verbose=0)
    assert "discrepancy_cosine" in hist.history
    assert np.isfinite(hist.history["loss"][0])
    # The wrapper's logged loss includes the weighted term.
    changed = [not np.array_equal(b, np.asarray(w)) for b, w in zip(before, base.trainable_weights)]
    assert all(changed)
    # Scoring and analysis see through the wrapper.
    assert analysis.discrepancy_map(model, x).shape == (4, 32, 32)
    # Off by default: a plain model trains with the plain loss (no discrepancy term).
    plain = _tiny(build_aesc)
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    assert "discrepancy_cosine" not in plain.fit(k, c, batch_size=4, epochs=1, verbose=0).history
    with pytest.raises(ValueError, match="weight"):
        analysis.DiscrepancyLossModel(_tiny(build_aesc), weight=-1)


def test_discrepancy_loss_term_changes_the_gradient():
    x = _images(4)
    c, k = analysis.make_probe_pairs(x, "stains", seed=0)
    final = []
    for weight in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        model = analysis.DiscrepancyLossModel(_tiny(build_aesc), weight=weight)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(k, c, batch_size=4, epochs=1, verbose=0, shuffle=False)
        final.append([np.asarray(w) for w in model.base.trainable_weights])
    assert any(not np.allclose(a, b) for a, b in zip(*final))


def test_discrepancy_loss_model_round_trips(tmp_path):
    model = analysis.DiscrepancyLossModel(_tiny(build_aesc), weight=0.2, layers="all")
    loaded = run_model_saving_test(model, _images(2), tmp_path)
    assert isinstance(loaded, analysis.DiscrepancyLossModel)
    assert loaded.weight == 0.2 and loaded.tap_layers == model.tap_layers


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_discrepancy_compares_two_runs(tmp_path, capsys):
    import keras_skipae_cli as cli
    from keras_skipae.training import train

    x = tf.data.Dataset.from_tensor_slices(_images(8))
    kwargs = {"input_shape": SHAPE, "depth": 3, "filters": 4}
    for name in ("ae", "aesc"):
        train(
            name,
            x,
            model_kwargs=kwargs,
            epochs=1,
            batch_size=4,
            run_dir=tmp_path / name,
            tensorboard=False,
            reduce_lr=False,
            verbose=0,
        )
    out = tmp_path / "cmp"
    argv = ["discrepancy", str(tmp_path / "ae"), str(tmp_path / "aesc"), "--out", str(out)]
    assert cli.main([*argv, "--n-probes", "3"]) == 0
    printed = capsys.readouterr().out
    assert "dec0_out" in printed and "synthetic" in printed
    for name in ("channel_means.png", "cosine_per_layer.png", "discrepancy.csv"):
        assert (out / name).stat().st_size > 100
    import json

    saved = json.loads((out / "discrepancy.json").read_text())
    assert saved["probes"]["n"] == 3
    assert list(saved["results"]) == ["ae", "aesc"]
    assert saved["results"]["ae"]["layers"] == tap_names(build_ae(input_shape=SHAPE, depth=3))
    # An existing output is refused without --overwrite.
    assert cli.main(argv) == 1
    assert cli.main([*argv, "--overwrite", "--n-probes", "2"]) == 0
    assert json.loads((out / ".keras_skipae.json").read_text())["kind"] == "discrepancy"


@pytest.mark.slow
def test_evaluate_offers_discrepancy_methods(tmp_path):
    from keras_skipae.evaluation import evaluate

    model = _tiny(build_aesc)
    x = _images(4, seed=5)
    masks = np.zeros((4, 32, 32, 1), "float32")
    masks[2:, 8:16, 8:16] = 1.0
    x[2:, 8:16, 8:16] = 0.0  # the "defects"
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": x,
            "mask": masks,
            "label": np.array([0, 0, 1, 1], "int32"),
            "defect_type": np.array(["good", "good", "hole", "hole"]),
            "path": np.array(["a", "b", "c", "d"]),
        }
    )
    for method in ("residual", "discrepancy", "combined"):
        r = evaluate(model, ds, scoring=scoring.ScoringConfig(map=method), progress=False)
        assert 0.0 <= r.image_auroc <= 1.0 and 0.0 <= r.pixel_auroc <= 1.0
    cfg = scoring.ScoringConfig(map="discrepancy", map_options={"layers": "encoder"})
    r = evaluate(model, ds, scoring=cfg, progress=False)
    assert np.isfinite(r.aupro)
    stats = analysis.LayerStatistics.fit(model, _images(4, seed=8))
    r = evaluate(
        model,
        ds,
        scoring=scoring.ScoringConfig(map="deviation", map_options={"statistics": stats}),
        out_dir=tmp_path / "eval",
        progress=False,
    )
    assert 0.0 <= r.image_auroc <= 1.0
    assert (tmp_path / "eval" / "metrics.json").exists()
    with pytest.raises(ValueError, match="'deviation' map needs good-image layer statistics"):
        evaluate(model, ds, scoring=scoring.ScoringConfig(map="deviation"), progress=False)


def test_cli_offers_every_map_it_can_compute():
    import keras_skipae_cli as cli
    from keras_skipae import scoring

    # (the maps that need good-image statistics cannot be chosen from the CLI)
    assert set(cli.CLI_MAPS) == set(scoring.ANOMALY_MAPS) - {"deviation", "learned+residual"}


@pytest.mark.slow
def test_discrepancy_map_exports_to_saved_model(tmp_path):
    from keras_skipae.export import export_saved_model

    model = _tiny(build_aesc)
    x = _images(2, seed=9)
    options = {"layers": "encoder"}
    cfg = scoring.ScoringConfig(map="discrepancy", map_options=options)
    path = export_saved_model(model, tmp_path / "sm", scoring=cfg)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](tf.constant(x))
    ref = scoring.compute(model, x, cfg)
    np.testing.assert_allclose(served["score"], ref["score"], rtol=1e-5, atol=1e-6)
