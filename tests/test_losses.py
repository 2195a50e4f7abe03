"""Losses and metrics against NumPy / scikit-image references."""

import keras
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from keras_skipae import keras_metrics, losses


def _pair(seed=0, shape=(2, 24, 20, 3)):
    rng = np.random.default_rng(seed)
    y_true = rng.random(shape).astype("float32")
    y_pred = np.clip(y_true + 0.2 * rng.standard_normal(shape), 0, 1).astype("float32")
    return y_true, y_pred


def _sk_ssim(a, b):
    return structural_similarity(
        a,
        b,
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


def test_mse_l1_match_numpy():
    y_true, y_pred = _pair()
    np.testing.assert_allclose(
        losses.get_loss("mse")(y_true, y_pred), np.mean((y_true - y_pred) ** 2), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.get_loss("l1")(y_true, y_pred), np.mean(np.abs(y_true - y_pred)), rtol=1e-5
    )
    per_image = keras.ops.convert_to_numpy(losses.mse(y_true, y_pred))
    np.testing.assert_allclose(per_image, ((y_true - y_pred) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("name", ["mse", "l1", "mse+ssim"])
def test_per_pixel_sample_weight(name):
    """The pixel losses give [B, H, W] values, so a per-pixel weight weights pixels."""
    y_true, y_pred = _pair(3, (2, 16, 16, 3))
    loss = losses.get_loss(name)
    values = keras.ops.convert_to_numpy(loss.call(y_true, y_pred))
    assert values.shape == (2, 16, 16)
    weight = np.ones((2, 16, 16), "float32")
    weight[0, 4:8, 2:9] = 10.0
    err = (y_true - y_pred) ** 2 if name != "l1" else np.abs(y_true - y_pred)
    pixel = err.mean(axis=-1)
    if name == "mse+ssim":
        ssim = np.array([_sk_ssim(t, p) for t, p in zip(y_true, y_pred)])
        pixel = pixel + (1 - ssim)[:, None, None]
    np.testing.assert_allclose(loss(y_true, y_pred), pixel.mean(), atol=2e-4)
    np.testing.assert_allclose(
        loss(y_true, y_pred, sample_weight=weight), (weight * pixel).mean(), atol=2e-4
    )


def test_ssim_matches_skimage():
    y_true, y_pred = _pair(1)
    ours = keras.ops.convert_to_numpy(losses.ssim(y_true, y_pred))
    ref = np.array([_sk_ssim(t, p) for t, p in zip(y_true, y_pred)])
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    np.testing.assert_allclose(losses.get_loss("ssim")(y_true, y_pred), 1 - ref.mean(), atol=2e-4)
    # identical images: SSIM 1, loss 0
    np.testing.assert_allclose(losses.SSIMLoss()(y_true, y_true), 0.0, atol=1e-5)


def test_mixed_loss_is_weighted_sum():
    y_true, y_pred = _pair(2, (2, 16, 16, 1))
    ref_ssim = np.mean([_sk_ssim(t, p) for t, p in zip(y_true, y_pred)])
    ref = 2.0 * np.mean(np.abs(y_true - y_pred)) + 0.5 * (1 - ref_ssim)
    loss = losses.get_loss("l1+ssim", pixel_weight=2.0, ssim_weight=0.5)
    np.testing.assert_allclose(loss(y_true, y_pred), ref, atol=2e-4)


def test_psnr_ssim_metrics():
    y_true, y_pred = _pair(3, (3, 16, 16, 1))
    mse_img = ((y_true - y_pred) ** 2).mean(axis=(1, 2, 3))
    m = keras_metrics.PSNR()
    m.update_state(y_true, y_pred)
    np.testing.assert_allclose(m.result(), np.mean(10 * np.log10(1.0 / mse_img)), rtol=1e-4)
    s = keras_metrics.SSIM()
    s.update_state(y_true, y_pred)
    ref = np.mean([_sk_ssim(t, p) for t, p in zip(y_true, y_pred)])
    np.testing.assert_allclose(s.result(), ref, atol=2e-4)


def test_unknown_loss_raises():
    with pytest.raises(ValueError, match="loss='nope'"):
        losses.get_loss("nope")
    with pytest.raises(ValueError, match="pixel="):
        losses.MixedLoss(pixel="huber")


def test_compiled_model_round_trips_safe_mode(tmp_path):
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer="adam",
        loss=losses.get_loss("mse+ssim", ssim_weight=0.3),
        metrics=[keras_metrics.PSNR(), keras_metrics.SSIM()],
    )
    x = np.random.default_rng(0).random((4, 16, 16, 1)).astype("float32")
    model.fit(x, x, epochs=1, batch_size=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.loss, losses.MixedLoss)
    assert loaded.loss.ssim_weight == pytest.approx(0.3)
    a = model.evaluate(x, x, verbose=0, return_dict=True)
    b = loaded.evaluate(x, x, verbose=0, return_dict=True)
    for key in ("loss", "psnr", "ssim"):
        assert a[key] == pytest.approx(b[key], rel=1e-5), key


@pytest.mark.parametrize("name", losses.LOSSES)
@pytest.mark.slow
def test_losses_train_under_xla(name):
    # (the segmentation losses take masks; an image in [0, 1] is a soft mask)
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=losses.get_loss(name), jit_compile=True)
    x = np.random.default_rng(0).random((4, 16, 16, 1)).astype("float32")
    history = model.fit(x, x, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ---------------------------------------------------------------- segmentation


def _mask_pair():
    y = np.zeros((2, 4, 4, 1), "float32")
    y[0, :2, :2] = 1.0  # 4 positive pixels in image 0, none in image 1
    p = np.full((2, 4, 4, 1), 0.2, "float32")
    p[0, :2, :2] = 0.9
    return y, p


def test_segmentation_losses_against_hand_computed_values():
    y, p = _mask_pair()
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(losses.get_loss("bce")(y, p), bce.mean(), rtol=1e-5)
    # Dice per image with smooth 1: image 0: inter 3.6, sums 4 + 0.9*4 + 0.2*12.
    d0 = 1 - (2 * 3.6 + 1) / (4 + 3.6 + 2.4 + 1)
    d1 = 1 - 1 / (0.2 * 16 + 1)
    np.testing.assert_allclose(losses.get_loss("dice")(y, p), (d0 + d1) / 2, rtol=1e-5)
    np.testing.assert_allclose(
        losses.get_loss("bce+dice")(y, p), bce.mean() + (d0 + d1) / 2, rtol=1e-5
    )
    p_t = np.where(y == 1, p, 1 - p)
    focal = -((1 - p_t) ** 2) * np.log(p_t)
    np.testing.assert_allclose(losses.get_loss("focal")(y, p), focal.mean(), rtol=1e-5)
    # A perfect prediction scores ~0 everywhere, an empty mask included.
    assert float(losses.get_loss("dice")(y, y)) < 1e-6
    with pytest.raises(ValueError, match="kind='hinge'"):
        losses.SegmentationLoss("hinge")


def test_iou_and_dice_metrics_against_hand_counts():
    y, p = _mask_pair()
    p[1, 0, 0] = 0.7  # one false positive in image 1
    p[0, 0, 0] = 0.3  # one false negative in image 0
    iou, dice = keras_metrics.IoU(), keras_metrics.Dice()
    iou.update_state(y, p)
    dice.update_state(y, p)
    tp, fp, fn = 3, 1, 1
    assert float(iou.result()) == pytest.approx(tp / (tp + fp + fn))
    assert float(dice.result()) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert float(dice.result()) >= float(iou.result())
    iou.reset_state()
    iou.update_state(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)))
    assert float(iou.result()) == 1.0  # nothing to find, nothing found
