"""Tests for the learned anomaly head (models.AnomalyHeadModel, registry "aesc_head")."""

import keras
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
    assert {"loss", "head_loss", "val_good_alarm", "val_head_signal"} <= set(hist.history)
    assert "good_alarm" not in hist.history  # a validation measure only
    assert "head_signal" not in hist.history
    # The early-stopping signal is the sum of the two validation measures.
    np.testing.assert_allclose(
        hist.history["val_head_signal"][0],
        hist.history["val_head_loss"][0] + hist.history["val_good_alarm"][0],
        rtol=1e-5,
    )
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
    assert {"head_loss", "val_head_loss", "val_good_alarm", "val_head_signal"} <= set(run.history)
    # The run ends with the weights of its best val_head_signal, kept in best.keras.
    best = keras.saving.load_model(tmp_path / "run" / "best.keras", compile=False)
    for w_best, w_run in zip(best.get_weights(), run.model.get_weights()):
        np.testing.assert_array_equal(w_best, w_run)
    model, _ = ks.training.load_run(tmp_path / "run")
    assert isinstance(model, AnomalyHeadModel)
    x = np.stack([e["image"].numpy() for e in train.take(2)])
    np.testing.assert_allclose(model.anomaly_map(x), run.model.anomaly_map(x), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [{}, {"head_input": "taps+residual", "head_taps": "dec0_out", "freeze_base": True}],
    ids=["default", "taps_residual_frozen"],
)
def test_head_export_agrees_with_in_process(images, tmp_path, variant):
    model = ks.get_model("aesc_head", **TINY_HEAD, **variant)
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


# --------------------------------------------------------------------------- cheaper heads


def pool(a, s):
    """NumPy average pooling of ``[B, H, W, C]`` by ``s``."""
    b, h, w, c = a.shape
    return a.reshape(b, h // s, s, w // s, s, c).mean(axis=(2, 4))


def upsample(a, s):
    """NumPy bilinear upsampling of ``[B, h, w, C]`` by ``s`` (half-pixel centres, edges clamped)."""

    def axis_weights(n):
        src = np.clip((np.arange(n * s) + 0.5) / s - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n - 1), src - lo

    r0, r1, fr = axis_weights(a.shape[1])
    c0, c1, fc = axis_weights(a.shape[2])
    rows = a[:, r0] * (1 - fr)[None, :, None, None] + a[:, r1] * fr[None, :, None, None]
    return rows[:, :, c0] * (1 - fc)[None, None, :, None] + rows[:, :, c1] * fc[None, None, :, None]


def test_numpy_helpers_match_their_definition():
    a = np.arange(8, dtype="float64").reshape(1, 2, 4, 1)
    np.testing.assert_allclose(pool(a, 2)[0, :, :, 0], [[2.5, 4.5]])
    up = upsample(np.array([0.0, 4.0]).reshape(1, 1, 2, 1), 2)[0, 0, :, 0]
    np.testing.assert_allclose(up, [0.0, 1.0, 3.0, 4.0])


@pytest.mark.parametrize("scale", [2, 4])
def test_head_scale_map_is_the_head_on_pooled_inputs_upsampled(images, scale):
    model = ks.get_model("aesc_head", head_scale=scale, **TINY_HEAD)
    assert model.head_scale == scale and model.head.input_shape == (
        None,
        32 // scale,
        32 // scale,
        2,
    )
    x = images(2)
    x_hat = model.base(x, training=False).numpy()
    probs = model.head(pool(np.concatenate([x, x_hat], -1), scale)).numpy()
    want = upsample(probs, scale)[..., 0]
    got = model.anomaly_map(x).numpy()
    assert got.shape == (2, 32, 32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - probs[..., 0].repeat(scale, 1).repeat(scale, 2)).max() > 1e-6


@pytest.mark.parametrize(
    ("taps", "scale"), [("dec1_out", None), (["dec0_out", "dec1_out"], 2), ("decoder", 4)]
)
def test_taps_plus_residual_head_reads_taps_and_pooled_residual(images, taps, scale):
    model = ks.get_model(
        "aesc_head", head_input="taps+residual", head_taps=taps, head_scale=scale, **TINY_HEAD
    )
    s = 4 if scale is None else scale  # default: the finest tap's resolution (dec1_out: 1/4)
    assert model.head_scale == s
    x = images(2)
    acts = ks.tap_model(model.base, ["dec0_out", "dec1_out", "out"])(x)
    acts = {k: v.numpy() for k, v in acts.items()}
    # dec0_out is 1/2 of the image, dec1_out 1/4: pool the finer, upsample the coarser.
    fit = {"dec0_out": lambda a: pool(a, s // 2), "dec1_out": lambda a: upsample(a, 4 // s)}
    names = ["dec1_out"] if taps == "dec1_out" else ["dec1_out", "dec0_out"]  # data-flow order
    inputs = [fit[n](acts[n]) for n in names] + [pool(np.abs(x - acts["out"]), s)]
    head_in = np.concatenate(inputs, -1)
    assert model.head.input_shape[1:] == head_in.shape[1:]
    want = upsample(model.head(head_in).numpy(), s)[..., 0]
    np.testing.assert_allclose(model.anomaly_map(x).numpy(), want, atol=1e-5)


@pytest.mark.parametrize("scale", [1, 2])
def test_freeze_base_trains_the_head_alone(images, scale):
    model = ks.get_model("aesc_head", freeze_base=True, head_scale=scale, **TINY_HEAD)
    assert model.base.trainable is False
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in model.head.trainable_weights}
    model.compile(optimizer="adam", loss="mse")
    x = images(4)
    mask = np.zeros((4, 32, 32, 1), "float32")
    mask[:, 8:16, 8:16] = 1.0
    base_before = [w.numpy().copy() for w in model.base.weights]  # BN statistics included
    head_before = [w.numpy().copy() for w in model.head.trainable_weights]
    hist = model.fit(x, (x, mask), batch_size=2, epochs=2, verbose=0)
    for b, w in zip(base_before, model.base.weights):
        np.testing.assert_array_equal(b, w.numpy(), err_msg=w.path)
    assert all(
        not np.array_equal(b, w.numpy()) for b, w in zip(head_before, model.head.trainable_weights)
    )
    # The loss is the head's loss alone (no reconstruction term).
    np.testing.assert_allclose(hist.history["loss"], hist.history["head_loss"], rtol=1e-6)


def test_frozen_step_takes_no_gradient_of_the_base(images):
    model = ks.get_model("aesc_head", freeze_base=True, **TINY_HEAD)
    x = tf.constant(images(2))
    weights = [w.value for w in model.base.weights]
    with tf.GradientTape() as tape:
        tape.watch(weights)
        loss = tf.reduce_mean(model.anomaly_map(x, training=True))
    assert all(g is None for g in tape.gradient(loss, weights))
    head = [w.value for w in model.head.trainable_weights]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.anomaly_map(x, training=True))
    assert all(g is not None for g in tape.gradient(loss, head))


@pytest.mark.parametrize(("depth", "filters"), [(2, 8), (3, 8)])
def test_small_heads_build_and_train(images, depth, filters):
    kwargs = {**TINY_HEAD, "head_depth": depth, "head_filters": filters}
    model = ks.get_model("aesc_head", **kwargs)
    default = ks.get_model("aesc_head", **{**TINY_HEAD, "head_depth": 4, "head_filters": 16})
    assert model.head.count_params() < default.head.count_params()
    assert ks.models.select_layers(model.head, "decoder")[0] == f"dec{depth - 1}_out"
    model.compile(optimizer="adam", loss="mse")
    x = images(2)
    mask = np.zeros((2, 32, 32, 1), "float32")
    mask[:, :8, :8] = 1.0
    hist = model.fit(x, (x, mask), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(hist.history["head_loss"][-1])
    prob = model.anomaly_map(x).numpy()
    assert prob.shape == (2, 32, 32) and 0 <= prob.min() and prob.max() <= 1


@pytest.mark.parametrize(
    "variant",
    [
        {"head_scale": 2},
        {"head_scale": 4, "head_depth": 2, "head_filters": 8},
        {"head_input": "taps+residual", "head_taps": "dec1_out"},
        {"freeze_base": True, "head_scale": 2},
    ],
    ids=["scale2", "scale4_small", "taps_residual", "frozen"],
)
def test_cheap_heads_round_trip_through_keras_safe_mode(images, tmp_path, variant):
    model = ks.get_model("aesc_head", **{**TINY_HEAD, **variant})
    x = images(2)
    loaded = run_model_saving_test(model, x, tmp_path)
    config = loaded.get_config()
    for key in set(variant) & set(config):
        assert config[key] == variant[key]
    assert loaded.head.count_params() == model.head.count_params()
    assert loaded.base.trainable is not bool(variant.get("freeze_base"))
    np.testing.assert_allclose(loaded.anomaly_map(x), model.anomaly_map(x), atol=1e-6)


def test_a_file_without_the_new_keys_loads_as_todays_head(images, tmp_path):
    import json
    import zipfile

    import keras

    model = ks.get_model("aesc_head", head_taps="decoder", **TINY_HEAD)
    model.save(tmp_path / "new.keras")
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(tmp_path / "new.keras") as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for key in ("head_scale", "head_input", "freeze_base"):
                    del config["config"][key]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = keras.models.load_model(old, safe_mode=True)
    assert (loaded.head_scale, loaded.head_input, loaded.freeze_base) == (1, "concat", False)
    x = images(2)
    np.testing.assert_allclose(loaded.anomaly_map(x), model.anomaly_map(x), atol=1e-6)


def test_head_on_puts_a_frozen_head_on_a_trained_model(images):
    from keras_skipae.models.anomaly_head import head_on

    base = ks.get_model("aesc", input_shape=(32, 32, 1), depth=3, filters=4)
    model = head_on(base, head_scale=2, head_depth=2, head_filters=4)
    assert isinstance(model, AnomalyHeadModel) and model.base is base and model.name == "aesc_head"
    assert model.freeze_base and base.trainable is False
    assert model.head.input_shape == (None, 16, 16, 2)
    x = images(2)
    np.testing.assert_allclose(model(x), base(x), atol=1e-6)
    again = head_on(model, head_depth=2, head_filters=4)  # a head model: its base is reused
    assert again.base is base and again.head_scale == 1


def test_head_on_bad_arguments():
    from keras_skipae.models.anomaly_head import head_on

    with pytest.raises(ValueError, match="Received: base_model=str"):
        head_on("aesc")
    base = ks.get_model("aesc", input_shape=(32, 32, 1), depth=3, filters=4)
    with pytest.raises(ValueError, match=r"head_on accepts the head's arguments .* \['depth'\]"):
        head_on(base, depth=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"head_scale": 3}, r"Expected `head_scale` in \(1, 2, 4\). Received: head_scale=3"),
        ({"head_input": "taps"}, r"Expected `head_input` in .*Received: head_input='taps'"),
        ({"head_input": "taps+residual"}, "name them with `head_taps`.*Received: head_taps=None"),
        (
            {"head_input": "taps+residual", "head_taps": "bottleneck_out"},
            "Received: head_scale=8",
        ),
    ],
)
def test_cheap_head_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ks.get_model("aesc_head", **{**TINY_HEAD, **kwargs})


def test_head_scale_must_divide_the_image():
    import keras

    inputs = keras.Input((6, 6, 1))
    base = keras.Model(inputs, keras.layers.Conv2D(1, 1, name="out")(inputs), name="tiny")
    with pytest.raises(ValueError, match=r"multiple of `head_scale`.*head_scale=4"):
        ks.get_model("aesc_head", base=base, head_scale=4, head_depth=1)


@pytest.mark.slow
def test_two_phase_training_from_a_run(synthetic_root, tmp_path):
    from keras_skipae.models.anomaly_head import head_on

    train = ks.data.mvtec_dataset(synthetic_root, "mesh", split="train", image_size=32)
    common = {"epochs": 1, "batch_size": 4, "verbose": 0, "tensorboard": False}
    model_kwargs = {k: TINY_HEAD[k] for k in ("input_shape", "depth", "filters")}
    ks.train("aesc", train, model_kwargs=model_kwargs, run_dir=tmp_path / "aesc", **common)
    base, _ = ks.training.load_run(tmp_path / "aesc")
    trained = [w.numpy().copy() for w in base.weights]
    run = ks.train(
        head_on(base, head_scale=2, head_depth=2, head_filters=4),
        train,
        run_dir=tmp_path / "head",
        **common,
    )
    assert run.config["corruption"]["class_name"] == "Anomalies"
    np.testing.assert_allclose(run.history["loss"], run.history["head_loss"], rtol=1e-6)
    model, _ = ks.training.load_run(tmp_path / "head")
    assert isinstance(model, AnomalyHeadModel) and model.freeze_base and model.head_scale == 2
    for b, w in zip(trained, model.base.weights):
        np.testing.assert_array_equal(b, w.numpy(), err_msg=w.path)
