"""Tests for keras_skipae.evaluation.metrics against scikit-learn and brute force."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import auc, f1_score, roc_auc_score

from keras_skipae.evaluation import metrics

# ---------------------------------------------------------------- AUROC


def _pairwise_auroc(labels, scores):
    """AUROC by brute force: P(defective scores higher than good) + P(tie) / 2, over all pairs."""
    labels, scores = np.asarray(labels), np.asarray(scores, "float64")
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_auroc_matches_the_pairwise_definition(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 50)
    labels[:2] = [0, 1]
    scores = rng.random(50) + 0.5 * labels
    scores[5:9] = scores[10]  # ties
    assert metrics.image_auroc(labels, scores) == pytest.approx(_pairwise_auroc(labels, scores))
    # Defective images ranked lowest: the AUROC is far below a half, not clipped or flipped.
    assert metrics.image_auroc(labels, -scores) == pytest.approx(
        1 - _pairwise_auroc(labels, scores)
    )


def test_pixel_auroc_matches_sklearn_on_pooled_pixels():
    rng = np.random.default_rng(3)
    masks = np.zeros((4, 9, 11, 1), "float32")
    masks[1, 2:5, 3:7] = 1
    masks[3, 6:9, 0:2] = 1
    maps = rng.random((4, 9, 11)).astype("float32") + 0.4 * masks[..., 0]
    ref = roc_auc_score(masks.reshape(-1) > 0.5, maps.reshape(-1))
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(ref)


def test_auroc_one_class_is_nan():
    assert np.isnan(metrics.image_auroc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert np.isnan(metrics.pixel_auroc(np.zeros((2, 3, 3)), np.ones((2, 3, 3))))


def test_auroc_bad_inputs_raise():
    with pytest.raises(ValueError, match="same number"):
        metrics.image_auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        metrics.image_auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="binary"):
        metrics.image_auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same shape"):
        metrics.pixel_auroc(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))


def test_roc_curve_thinning_keeps_shape():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 5000)
    scores = rng.random(5000) + 0.5 * labels
    fpr, tpr = metrics.roc_curve(labels, scores, max_points=100)
    assert fpr.shape == tpr.shape == (100,)
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(tpr) >= 0)
    # Area of the thinned curve is close to the AUROC.
    # (sklearn's auc is the trapezoidal rule; np.trapezoid needs NumPy 2, setup.py allows 1.26)
    assert auc(fpr, tpr) == pytest.approx(roc_auc_score(labels, scores), abs=0.02)
    assert metrics.roc_curve([1, 1], [0.1, 0.2]) == (None, None)


# ---------------------------------------------------------------- PRO / AUPRO


def _brute_force_pro_curve(masks, maps):
    """For every distinct value t, predicted = maps >= t: FPR and mean region overlap."""
    masks = masks > 0.5
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    neg = ~masks
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        fprs.append((pred & neg).sum() / neg.sum())
        pros.append(np.mean([(pred[i] & r).sum() / r.sum() for i, r in regions]))
    fprs.append(1.0)
    pros.append(1.0)
    return np.array(fprs), np.array(pros)


def _brute_force_aupro(masks, maps, max_fpr):
    fpr, pro = _brute_force_pro_curve(masks, maps)
    area = 0.0
    for k in range(1, len(fpr)):
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:  # cut the last segment at max_fpr
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / max_fpr


def _tiny_masks(seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 8, 8), "float32")
    masks[0, 1:3, 1:3] = 1  # two regions in one image, of different sizes
    masks[0, 5:8, 4:8] = 1
    masks[1, 3, 3:6] = 1  # a thin line
    masks[1, 4, 6] = 1  # diagonal neighbour: same 8-connected region
    # images 2 and 3 are good
    maps = rng.random(masks.shape).astype("float32") * 0.8 + 0.5 * masks
    maps = np.round(maps, 2)  # ties
    return masks, maps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pro_curve_matches_brute_force(seed):
    masks, maps = _tiny_masks(seed)
    fpr, pro, thr = metrics.pro_curve(masks, maps)
    bf_fpr, bf_pro = _brute_force_pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, bf_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, bf_pro, atol=1e-12)
    assert thr[0] == np.inf and thr[-1] == -np.inf
    np.testing.assert_array_equal(thr[1:-1], np.unique(maps)[::-1])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_fpr", [0.3, 0.05, 1.0])
def test_aupro_matches_brute_force(seed, max_fpr):
    masks, maps = _tiny_masks(seed)
    expected = _brute_force_aupro(masks, maps, max_fpr)
    assert metrics.aupro(masks, maps, max_fpr=max_fpr) == pytest.approx(expected, abs=1e-12)


def test_aupro_counts_regions_not_pixels():
    # One big region found, one small region missed: PRO is 0.5 per region at
    # any threshold between them, though 96 % of the defective pixels are found.
    masks = np.zeros((1, 10, 10), "float32")
    masks[0, 0:5, 0:5] = 1  # 25 px
    masks[0, 8, 8] = 1  # 1 px
    maps = np.zeros((1, 10, 10), "float32")
    maps[0, 0:5, 0:5] = 1.0
    fpr, pro, _ = metrics.pro_curve(masks, maps)
    assert fpr[1] == 0.0 and pro[1] == pytest.approx(0.5)
    # (0,0) -> (0, .5) -> (1, 1): area up to 0.3 is .3 * (.5 + .65) / 2, over .3.
    assert metrics.aupro(masks, maps) == pytest.approx((0.5 + 0.65) / 2)


def test_aupro_perfect_and_degenerate():
    masks, _ = _tiny_masks(0)
    assert metrics.aupro(masks, masks.copy()) == pytest.approx(1.0)
    assert np.isnan(metrics.aupro(np.zeros((2, 4, 4)), np.random.default_rng(0).random((2, 4, 4))))
    with pytest.raises(ValueError, match="max_fpr"):
        metrics.aupro(masks, masks, max_fpr=0)


def test_trapezoid_interpolates_at_limit():
    assert metrics.trapezoid([0, 1], [0, 1], x_max=0.5) == pytest.approx(0.125)
    assert metrics.trapezoid([0, 0.5, 0.5, 1], [0, 0, 1, 1], x_max=0.75) == pytest.approx(0.25)
    assert metrics.trapezoid([0, 1], [1, 1]) == pytest.approx(1.0)


# ---------------------------------------------------------------- thresholds


@pytest.mark.parametrize("seed", [0, 1])
def test_f1_max_is_best_over_all_thresholds(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 40)
    labels[0] = 1
    scores = np.round(rng.random(40) + 0.6 * labels, 2)
    f1, thr = metrics.f1_max(labels, scores)
    brute = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert f1 == pytest.approx(brute)
    assert f1_score(labels, scores >= thr) == pytest.approx(f1)


def test_f1_max_without_positives_is_nan():
    f1, thr = metrics.f1_max([0, 0], [0.1, 0.3])
    assert np.isnan(f1) and np.isnan(thr)


def test_precision_recall_at_hand_computed():
    labels = [0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.5, 0.7, 0.4, 0.5, 0.8, 0.9]
    p, r = metrics.precision_recall_at(labels, scores, 0.5)  # >=: 0.5,0.7 | 0.5,0.8,0.9
    assert p == pytest.approx(3 / 5) and r == pytest.approx(3 / 4)
    p, r = metrics.precision_recall_at(labels, scores, 5.0)
    assert np.isnan(p) and r == 0.0
    with pytest.raises(ValueError, match="threshold"):
        metrics.precision_recall_at(labels, scores, None)


def test_threshold_from_good():
    rng = np.random.default_rng(5)
    good = rng.random(1000)
    thr = metrics.threshold_from_good(good, percentile=99.0)
    assert thr == pytest.approx(np.percentile(good, 99.0))
    assert np.mean(good >= thr) == pytest.approx(0.01, abs=0.002)
    assert metrics.threshold_from_good(good, 100) == pytest.approx(good.max())
    assert metrics.threshold_from_good([0.3]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="percentile"):
        metrics.threshold_from_good(good, 101)
    with pytest.raises(ValueError, match="0 scores"):
        metrics.threshold_from_good([])
    with pytest.raises(ValueError, match="finite"):
        metrics.threshold_from_good([0.1, np.inf])


# ---------------------------------------------------------------- compute_metrics


def test_compute_metrics_overall_and_per_defect():
    rng = np.random.default_rng(6)
    n_good, n_a, n_b = 6, 4, 3
    labels = np.array([0] * n_good + [1] * (n_a + n_b))
    types = np.array(["good"] * n_good + ["scratch"] * n_a + [b"stain"] * n_b, dtype=object)
    masks = np.zeros((labels.size, 8, 8, 1), "float32")
    for i in range(n_good, labels.size):
        y, x = rng.integers(0, 5, 2)
        masks[i, y : y + 3, x : x + 3] = 1
    maps = rng.random((labels.size, 8, 8)).astype("float32") + 0.7 * masks[..., 0]
    scores = maps.reshape(labels.size, -1).max(1)
    out = metrics.compute_metrics(
        labels, scores, masks=masks, maps=maps, defect_types=types, threshold=0.9
    )
    assert out["n_images"] == 13 and out["n_good"] == 6 and out["n_defective"] == 7
    assert out["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert out["pixel_auroc"] == pytest.approx(metrics.pixel_auroc(masks, maps))
    assert out["aupro"] == pytest.approx(metrics.aupro(masks, maps))
    assert (out["precision"], out["recall"]) == metrics.precision_recall_at(labels, scores, 0.9)
    assert set(out["per_defect"]) == {"scratch", "stain"}
    sel = np.r_[0:n_good, n_good + n_a : labels.size]  # good + stain
    stain = out["per_defect"]["stain"]
    assert stain["n_images"] == n_good + n_b and stain["n_defective"] == n_b
    assert stain["image_auroc"] == pytest.approx(roc_auc_score(labels[sel], scores[sel]))
    assert stain["aupro"] == pytest.approx(metrics.aupro(masks[sel], maps[sel]))
    assert stain["recall"] == pytest.approx(np.mean(scores[n_good + n_a :] >= 0.9))


def test_compute_metrics_without_masks_or_threshold():
    out = metrics.compute_metrics([0, 1, 1], [0.1, 0.5, 0.2])
    assert np.isnan(out["pixel_auroc"]) and np.isnan(out["aupro"])
    assert out["precision"] is None and out["per_defect"] == {}
    with pytest.raises(ValueError, match="both"):
        metrics.compute_metrics([0, 1], [0.1, 0.5], masks=np.zeros((2, 3, 3)))


def test_pixel_roc_curve_matches_sklearn():
    from sklearn.metrics import roc_curve as sk_roc

    masks, maps = _tiny_masks(1)
    fpr, tpr = metrics.pixel_roc_curve(masks, maps, max_points=None)
    sk_fpr, sk_tpr, _ = sk_roc(masks.reshape(-1) > 0.5, maps.reshape(-1), drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    assert metrics.pixel_roc_curve(np.zeros((1, 3, 3)), np.ones((1, 3, 3))) == (None, None)
