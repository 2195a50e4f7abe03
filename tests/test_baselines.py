"""The non-learned baselines of bench/bench_detection.py and the demo."""

import numpy as np
import pytest

from keras_skipae.apps import baselines


def _train(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return (0.5 + 0.05 * rng.standard_normal((n, 24, 24, 1))).astype("float32")


def test_gaussian_map_matches_hand_computation():
    train = _train()
    x = train[:2] + 0.1
    b = baselines.GaussianBaseline(smoothing=0).fit(train)
    expected = np.abs(x - train.mean(0)) / (train.std(0) + 1e-2)
    np.testing.assert_allclose(b.anomaly_maps(x), expected[..., 0], rtol=1e-5)


@pytest.mark.parametrize("cls", [baselines.GaussianBaseline, baselines.PatchNNBaseline])
def test_baselines_smooth_like_the_learned_maps(cls):
    # Same smoothing (and border handling) as keras_skipae.scoring, for a fair comparison.
    from keras_skipae import scoring

    train = _train()
    x = train[:3] + 0.1
    raw = cls(smoothing=0).fit(train).anomaly_maps(x)
    smooth = cls(smoothing=2.0).fit(train).anomaly_maps(x)
    np.testing.assert_allclose(smooth, scoring.gaussian_smooth(raw, 2.0).numpy(), atol=1e-5)


def test_patch_nn_is_zero_on_training_images_and_peaks_on_a_defect():
    train = _train()
    b = baselines.PatchNNBaseline(patch=4, stride=2, smoothing=0).fit(train)
    np.testing.assert_allclose(b.anomaly_maps(train[:1]), 0.0, atol=1e-3)
    x = train[:1].copy()
    x[0, 10:14, 10:14] = 1.0
    m = b.anomaly_maps(x)[0]
    assert m[10:14, 10:14].mean() > 5 * m[:6, :6].mean()
    assert np.unravel_index(m.argmax(), m.shape)[0] in range(8, 16)


def _test_set(n_line=0):
    rng = np.random.default_rng(1)
    test_good = _train(4, seed=2)
    test_bad = _train(4 + n_line, seed=3)
    masks = np.zeros((8 + n_line, 24, 24, 1), "float32")
    for i in range(4):
        y, x = rng.integers(2, 16, size=2)
        test_bad[i, y : y + 6, x : x + 6] = 0.95
        masks[4 + i, y : y + 6, x : x + 6] = 1
    for i in range(4, 4 + n_line):
        test_bad[i, 12, 2:20] = 0.05
        masks[4 + i, 12, 2:20] = 1
    return {
        "image": np.concatenate([test_good, test_bad]),
        "mask": masks,
        "label": np.array([0] * 4 + [1] * (4 + n_line)),
        "defect_type": np.array(["good"] * 4 + ["blob"] * 4 + ["line"] * n_line),
    }


def test_evaluate_baseline_reports_compute_metrics_on_its_maps(monkeypatch):
    train, test = _train(8), _test_set(n_line=2)
    calls = []
    compute = baselines.metrics.compute_metrics

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return compute(*args, **kwargs)

    monkeypatch.setattr(baselines.metrics, "compute_metrics", spy)
    got = baselines.evaluate_baseline("gaussian", train, test, max_fpr=0.2)
    assert len(calls) == 1 and calls[0]["max_fpr"] == 0.2
    # The numbers are the metrics of the baseline's own maps and max scores, per defect type
    # against the good images.
    maps = baselines.GaussianBaseline().fit(train).anomaly_maps(test["image"])
    scores = maps.max(axis=(1, 2))
    m = baselines.metrics
    for name, sel in [("all", slice(None)), ("blob", slice(0, 8)), ("line", [0, 1, 2, 3, 8, 9])]:
        want = {
            "image_auroc": m.image_auroc(test["label"][sel], scores[sel]),
            "pixel_auroc": m.pixel_auroc(test["mask"][sel], maps[sel]),
            "aupro": m.aupro(test["mask"][sel], maps[sel], max_fpr=0.2),
        }
        row = got if name == "all" else got["per_defect"][name]
        assert {k: row[k] for k in want} == pytest.approx(want)
    assert set(got) == {"image_auroc", "pixel_auroc", "aupro", "per_defect"}
    assert set(got["per_defect"]) == {"blob", "line"}


def test_evaluate_baseline_separates_obvious_defects():
    train = _train(8)
    rng = np.random.default_rng(1)
    test_good = _train(4, seed=2)
    test_bad = _train(4, seed=3)
    masks = np.zeros((8, 24, 24, 1), "float32")
    for i in range(4):
        y, x = rng.integers(2, 16, size=2)
        test_bad[i, y : y + 6, x : x + 6] = 0.95
        masks[4 + i, y : y + 6, x : x + 6] = 1
    test = {
        "image": np.concatenate([test_good, test_bad]),
        "mask": masks,
        "label": np.array([0] * 4 + [1] * 4),
        "defect_type": np.array(["good"] * 4 + ["blob"] * 4),
    }
    for name in ("gaussian", "patch_nn"):
        r = baselines.evaluate_baseline(name, train, test)
        assert r["image_auroc"] == pytest.approx(1.0)
        assert r["pixel_auroc"] > 0.9
        assert set(r["per_defect"]) == {"blob"}
    with pytest.raises(ValueError, match="name='knn'"):
        baselines.get_baseline("knn")
