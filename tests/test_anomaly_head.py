"""Tests for the learned anomaly head (models.AnomalyHeadModel, registry "aesc_head")."""

import numpy as np
import pytest
import tensorflow as tf
from harness import run_model_saving_test

import keras_skipae as ks
from keras_skipae.models import AnomalyHeadModel

TINY_HEAD = {
    "input_shape": (32, 32, 1),
    "depth": 3,
    "filters": 4,
    "head_depth": 2,
    "head_filters": 4,
}


def test_head_model_reconstructs_and_maps(images):
    model = ks.get_model("aesc_head", **TINY_HEAD)
    assert isinstance(model, AnomalyHeadModel) and model.name == "aesc_head"
    x = images(2)
    np.testing.assert_allclose(model(x), model.base(x), atol=1e-6)
    prob = model.anomaly_map(x).numpy()
    assert prob.shape == (2, 32, 32) and prob.min() >= 0 and prob.max() <= 1
    # Taps and tap-based maps see through the wrapper to the base.
    assert ks.tap_names(ks.models.base_model(model)) == ks.tap_names(model.base)


def test_head_with_taps_reads_more_channels(images):
    model = ks.get_model("aesc_head", head_taps="decoder", **TINY_HEAD)
    assert model.head.input_shape[-1] == 2 + len(ks.models.select_layers(model.base, "decoder"))
    assert model.anomaly_map(images(1)).shape == (1, 32, 32)


def test_head_round_trips_through_keras_safe_mode(images, tmp_path):
    model = ks.get_model("aesc_head", head_taps="decoder", joint=False, **TINY_HEAD)
    x = images(2)
    loaded = run_model_saving_test(model, x, tmp_path)
    assert isinstance(loaded, AnomalyHeadModel) and loaded.joint is False
    np.testing.assert_allclose(loaded.anomaly_map(x), model.anomaly_map(x), atol=1e-6)


def test_learned_map_needs_a_head(images, tiny_model):
    with pytest.raises(ValueError, match="'learned' map needs a model with an anomaly head"):
        ks.scoring.compute(tiny_model("aesc"), images(1), ks.ScoringConfig(map="learned"))


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.slow
def test_head_training_step_updates_the_right_weights(images, joint):
    model = ks.get_model("aesc_head", joint=joint, **TINY_HEAD)
    model.compile(optimizer="adam", loss="mse")
    x = images(4)
    mask = np.zeros((4, 32, 32, 1), "float32")
    mask[:, 8:16, 8:16] = 1.0
    base_before = [w.numpy().copy() for w in model.base.trainable_weights]
    head_before = [w.numpy().copy() for w in model.head.trainable_weights]
    hist = model.fit(
        x, (x, mask), batch_size=4, epochs=1, verbose=0, validation_data=(x, (x, mask))
    )
    assert {"loss", "head_loss", "val_good_alarm"} <= set(hist.history)
    assert "good_alarm" not in hist.history  # a validation measure only
    assert all(
        not np.array_equal(b, w.numpy()) for b, w in zip(head_before, model.head.trainable_weights)
    )
    assert any(
        not np.array_equal(b, w.numpy()) for b, w in zip(base_before, model.base.trainable_weights)
    )


def test_head_refuses_batches_without_masks(images):
    model = ks.get_model("aesc_head", **TINY_HEAD)
    model.compile(optimizer="adam", loss="mse")
    x = images(2)
    with pytest.raises(ValueError, match=r"\(input, \(target, mask\)\)"):
        model.fit(x, x, epochs=1, verbose=0)


def test_head_stop_gradient_when_not_joint(images):
    model = ks.get_model("aesc_head", joint=False, **TINY_HEAD)
    x = tf.constant(images(2))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.anomaly_map(x, training=True))
    grads = tape.gradient(loss, model.base.trainable_weights)
    assert all(g is None for g in grads)
    joint = ks.get_model("aesc_head", joint=True, **TINY_HEAD)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(joint.anomaly_map(x, training=True))
    assert any(g is not None for g in tape.gradient(loss, joint.base.trainable_weights))


def test_learned_plus_residual_is_the_max_of_two_z_scores(images):
    model = ks.get_model("aesc_head", **TINY_HEAD)
    good, x = images(3, seed=1), images(2, seed=2)
    stats = ks.scoring.fit_map_statistics(model, good)
    recon = model(good)
    learned = model.anomaly_map(good).numpy()
    residual = np.abs(good - recon.numpy()).mean(-1)
    np.testing.assert_allclose(stats["learned"], [learned.mean(), learned.std()], rtol=1e-4)
    np.testing.assert_allclose(stats["residual"], [residual.mean(), residual.std()], rtol=1e-4)
    cfg = ks.ScoringConfig(map="learned+residual", smoothing=0, map_options={"statistics": stats})
    got = ks.scoring.compute(model, x, cfg)["anomaly_map"].numpy()
    zl = (model.anomaly_map(x).numpy() - stats["learned"][0]) / stats["learned"][1]
    zr = (np.abs(x - model(x).numpy()).mean(-1) - stats["residual"][0]) / stats["residual"][1]
    np.testing.assert_allclose(got, np.maximum(zl, zr), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs good-image statistics"):
        ks.scoring.compute(model, x, ks.ScoringConfig(map="learned+residual"))


@pytest.mark.slow
def test_train_aesc_head_on_the_train_split_only(synthetic_root, tmp_path):
    import shutil

    # The head learns from synthetic anomalies on good training images: with the test
    # split gone, training must still work (nothing reads it), and the run records
    # the anomaly mixture as its corruption.
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    shutil.rmtree(root / "mesh" / "test")
    shutil.rmtree(root / "mesh" / "ground_truth", ignore_errors=True)
    train = ks.data.mvtec_dataset(root, "mesh", split="train", image_size=32)
    run = ks.train(
        "aesc_head",
        train,
        model_kwargs=TINY_HEAD,
        epochs=2,
        batch_size=4,
        run_dir=tmp_path / "run",
        verbose=0,
        tensorboard=False,
    )
    assert run.config["corruption"]["class_name"] == "Anomalies"
    assert {"head_loss", "val_head_loss", "val_good_alarm"} <= set(run.history)
    model, _ = ks.training.load_run(tmp_path / "run")
    assert isinstance(model, AnomalyHeadModel)
    x = np.stack([e["image"].numpy() for e in train.take(2)])
    np.testing.assert_allclose(model.anomaly_map(x), run.model.anomaly_map(x), atol=1e-6)


@pytest.mark.slow
def test_head_export_agrees_with_in_process(images, tmp_path):
    model = ks.get_model("aesc_head", **TINY_HEAD)
    cfg = ks.ScoringConfig(map="learned")
    path = ks.export_saved_model(model, tmp_path / "exp", scoring=cfg, threshold=0.5)
    x = images(3)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](images=tf.constant(x))
    want = ks.scoring.compute(model, x, cfg)
    for key in ("score", "anomaly_map", "reconstruction"):
        np.testing.assert_allclose(served[key].numpy(), want[key].numpy(), atol=1e-5)


@pytest.mark.slow
def test_head_trains_under_xla(images):
    model = ks.get_model("aesc_head", **TINY_HEAD)
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    x = images(4)
    mask = np.zeros((4, 32, 32, 1), "float32")
    mask[:, :8, :8] = 1.0
    hist = model.fit(x, (x, mask), batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"])) and np.isfinite(hist.history["head_loss"][-1])
