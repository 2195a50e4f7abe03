"""Model zoo: shapes, names, skips, taps, gradients, round trips, seeds, bad arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import run_model_saving_test

import keras_skipae as ks
from keras_skipae.models import autoencoder

TINY = {
    "ae": {"input_shape": (32, 32, 1), "depth": 3, "filters": 4},
    "aesc": {"input_shape": (32, 32, 1), "depth": 3, "filters": 4},
    "unet": {"input_shape": (32, 32, 1), "depth": 2, "filters": 4},
}


def tiny(name, **overrides):
    return ks.get_model(name, **{**TINY[name], **overrides})


def images(n=2, size=32, channels=1, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


def test_registry_lists_the_builders():
    assert ks.list_models() == ["ae", "aesc", "aesc_head", "unet"]
    # The reconstruction models; the head model has tests of its own (test_anomaly_head.py).
    assert TINY.keys() == set(ks.list_models()) - {"aesc_head"}


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape_equals_input_shape(name, channels):
    model = tiny(name, input_shape=(32, 32, channels))
    assert model.name == name
    out = model(images(channels=channels), training=False)
    assert tuple(out.shape) == (2, 32, 32, channels)
    out = np.asarray(out)
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", sorted(TINY))
def test_dynamic_spatial_size(name):
    model = tiny(name, input_shape=(None, None, 1))
    for size in (32, 64):
        assert tuple(model(images(size=size)).shape) == (2, size, size, 1)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="multiples of"):
        model(images(size=34))


def _expected_aesc_params(input_channels=1, depth=6, filters=16, k=5):
    """Analytic parameter count of the AESc (documented in the README)."""
    f = [filters * 2**i for i in range(depth)]
    enc = k * k * (input_channels * f[0] + sum(f[i - 1] * f[i] for i in range(1, depth)))
    enc_bn = 4 * sum(f)  # gamma, beta, moving mean, moving variance
    dec = k * k * sum(f[i + 1] * f[i] for i in range(depth - 1))
    dec_bn = 4 * sum(f[: depth - 1])
    out = k * k * f[0] * input_channels + input_channels
    return enc + enc_bn + dec + dec_bn + out


def test_aesc_default_parameter_count_is_analytic():
    model = ks.build_aesc(input_shape=(256, 256, 1))
    assert model.count_params() == _expected_aesc_params() == 8_736_417
    assert model.get_layer("bottleneck_out").output.shape[1:] == (4, 4, 512)
    assert model.get_layer("enc0_conv").output.shape[-1] == 16
    # Five additive skips: every level except the bottleneck.
    adds = [lay.name for lay in model.layers if isinstance(lay, keras.layers.Add)]
    assert adds == [f"dec{i}_skip" for i in (4, 3, 2, 1, 0)]


def _structure(model):
    return [(lay.name, type(lay).__name__) for lay in model.layers]


def test_ae_has_no_skips_and_shares_names_with_aesc():
    ae, aesc = tiny("ae"), tiny("aesc")
    assert not any(
        isinstance(lay, (keras.layers.Add, keras.layers.Concatenate)) for lay in ae.layers
    )
    ae_names = {lay.name for lay in ae.layers}
    aesc_names = {lay.name for lay in aesc.layers}
    assert ae_names <= aesc_names
    assert aesc_names - ae_names == {"dec0_skip", "dec1_skip"}
    assert _structure(tiny("aesc", skips=())) == _structure(ae)
    assert _structure(tiny("aesc", skip_mode=None)) == _structure(ae)
    # Shared names mean AE weights load into the AESc by name.
    for lay in ae.layers:
        if lay.weights:
            assert [w.shape for w in lay.weights] == [
                w.shape for w in aesc.get_layer(lay.name).weights
            ]


def test_taps_are_ordered_and_line_up_between_ae_and_aesc():
    ae, aesc = tiny("ae"), tiny("aesc")
    expected = ["enc0_out", "enc1_out", "bottleneck_out", "dec1_out", "dec0_out"]
    assert ks.tap_names(ae) == ks.tap_names(aesc) == expected
    x = images()
    acts_ae = ks.tap_model(ae)(x)
    acts_aesc = ks.tap_model(aesc)(x)
    assert list(acts_ae) == expected
    for name in expected:
        assert acts_ae[name].shape == acts_aesc[name].shape
    assert tuple(acts_ae["enc0_out"].shape) == (2, 16, 16, 4)
    assert tuple(acts_ae["bottleneck_out"].shape) == (2, 4, 4, 16)
    assert tuple(acts_ae["dec0_out"].shape) == (2, 16, 16, 4)
    # The decoder tap comes after the skip merge: it is fed by the Add of level 0.
    tap_input = aesc.get_layer("dec0_out").input
    assert tap_input._keras_history.operation.name == "dec0_skip"
    assert isinstance(aesc.get_layer("dec0_skip"), keras.layers.Add)
    sub = ks.tap_model(aesc, ["dec0_out", "out"])
    outs = sub(x)
    np.testing.assert_allclose(outs["out"], aesc(x), atol=1e-6)


def test_unet_taps_and_classic_layers():
    unet = tiny("unet")
    assert ks.tap_names(unet) == ["enc0_out", "enc1_out", "bottleneck_out", "dec1_out", "dec0_out"]
    types = {type(lay).__name__ for lay in unet.layers}
    assert {"MaxPooling2D", "Conv2DTranspose", "Concatenate", "Dropout"} <= types
    assert unet.get_layer("enc0_conv1").kernel_size == (3, 3)
    assert unet.get_layer("out").kernel_size == (1, 1)
    seg = tiny("unet", num_outputs=4)
    assert seg.output_shape == (None, 32, 32, 4)


def test_skip_scale_and_skip_levels():
    keras.utils.set_random_seed(1)
    full = tiny("aesc")
    half = tiny("aesc", skip_scale=0.5)
    half.set_weights(full.get_weights())  # Rescaling has no weights: same weights, other graph
    x = images()
    assert not np.allclose(full(x), half(x), atol=1e-5)
    assert isinstance(half.get_layer("dec0_skip_scale"), keras.layers.Rescaling)
    some = tiny("aesc", skips=(1,), skip_scale=(1.0, 0.25))
    assert [lay.name for lay in some.layers if lay.name.endswith("_skip")] == ["dec1_skip"]
    assert some.get_layer("dec1_skip_scale").scale == 0.25
    cat = tiny("aesc", skip_mode="concat")
    assert isinstance(cat.get_layer("dec0_skip"), keras.layers.Concatenate)
    add_unet = tiny("unet", skip_mode="add")
    assert isinstance(add_unet.get_layer("dec0_skip"), keras.layers.Add)


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_reach_every_trainable_weight(name):
    keras.utils.set_random_seed(0)
    model = tiny(name, **({"dropout": 0.0} if name == "unet" else {}))
    x = tf.constant(images())
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - x))
    grads = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(float(loss))
    for w, g in zip(model.trainable_weights, grads, strict=True):
        assert g is not None, w.path
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), w.path
        assert np.any(g != 0), w.path


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_json_and_keras_round_trips(name, tmp_path):
    model = tiny(name, skip_scale=0.5) if name != "ae" else tiny(name)
    x = images()
    expected = np.asarray(model(x, training=False))

    clone = keras.Model.from_config(model.get_config())
    assert _structure(clone) == _structure(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False), expected, atol=1e-6)

    from_json = keras.models.model_from_json(model.to_json())
    assert _structure(from_json) == _structure(model)

    loaded = run_model_saving_test(model, x, tmp_path, name=f"{name}.keras")
    assert _structure(loaded) == _structure(model)
    assert ks.tap_names(loaded) == ks.tap_names(model)
    np.testing.assert_allclose(loaded(x, training=False), expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_seed_same_model(name):
    keras.utils.set_random_seed(123)
    a = tiny(name).get_weights()
    keras.backend.clear_session()
    keras.utils.set_random_seed(123)
    b = tiny(name).get_weights()
    keras.utils.set_random_seed(124)
    c = tiny(name).get_weights()
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c, strict=True))


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("jit", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_one_fit_step(name, jit):
    keras.utils.set_random_seed(0)
    model = tiny(name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit)
    x = images()
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, x, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = model.get_weights()
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


@pytest.mark.parametrize("builder", ["unet", "aesc"])
@pytest.mark.slow
def test_mobilenet_encoder_frozen(builder):
    model = ks.get_model(
        builder, input_shape=(32, 32, 1), filters=4, encoder="mobilenet_v2", freeze_encoder=True
    )
    assert model.output_shape == (None, 32, 32, 1)
    body = model.get_layer("encoder")
    assert body.trainable_weights == []
    assert body.weights, "the body has weights, they are just frozen"
    body_ids = {id(w) for w in body.weights}
    assert not any(id(w) in body_ids for w in model.trainable_weights)
    assert model.trainable_weights  # the decoder still trains
    assert isinstance(model.get_layer("gray_to_rgb"), keras.layers.Concatenate)
    assert ks.tap_names(model)[:5] == [
        "enc0_out",
        "enc1_out",
        "enc2_out",
        "enc3_out",
        "bottleneck_out",
    ]
    x = images()
    before = [w.copy() for w in body.get_weights()]
    model.compile(optimizer="adam", loss="mse", jit_compile=False)
    model.fit(x, x, epochs=1, verbose=0)
    for b, a in zip(before, body.get_weights(), strict=True):
        np.testing.assert_array_equal(b, a)


@pytest.mark.slow
def test_resnet50_encoder_rgb_and_local_weights(tmp_path):
    keras.utils.set_random_seed(3)
    model = ks.build_unet(input_shape=(32, 32, 3), filters=4, encoder="resnet50")
    assert model.output_shape == (None, 32, 32, 3)
    assert model.get_layer("encoder").get_layer("conv5_block3_out").output.shape[-1] == 2048
    out = model(images(channels=3))
    assert np.all(np.isfinite(out))
    # Weights come from a local file, never from the network.
    body = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "mnv2.weights.h5"
    body.save_weights(path)
    loaded = ks.build_aesc(
        input_shape=(32, 32, 1), filters=4, encoder="mobilenet_v2", encoder_weights=str(path)
    )
    enc = loaded.get_layer("encoder")
    np.testing.assert_array_equal(
        enc.get_layer("Conv1").get_weights()[0], body.get_layer("Conv1").get_weights()[0]
    )


def _stub_download(monkeypatch, result):
    """Replaces the download keras.applications calls; records its calls, never touches the network."""
    from keras.src.utils import file_utils

    calls = []

    def get_file(fname=None, origin=None, **kwargs):
        calls.append({"fname": fname, "origin": origin, **kwargs})
        if isinstance(result, BaseException):
            raise result
        return str(result)

    monkeypatch.setattr(file_utils, "get_file", get_file)
    return calls


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
@pytest.mark.slow
def test_imagenet_weights_pass_through_to_keras_applications(tmp_path, monkeypatch):
    keras.utils.set_random_seed(4)
    body = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    cached = tmp_path / "mobilenet_v2_no_top.weights.h5"
    body.save_weights(cached)
    calls = _stub_download(monkeypatch, cached)
    keras.utils.set_random_seed(5)  # a different initialisation: equality below comes from the file
    model = ks.build_aesc(
        input_shape=(32, 32, 1), filters=4, encoder="mobilenet_v2", encoder_weights="imagenet"
    )
    assert len(calls) == 1
    assert calls[0]["cache_subdir"] == "models"
    assert calls[0]["fname"].endswith("_no_top.h5")
    enc = model.get_layer("encoder")
    for name in ("Conv1", "block_6_expand", "out_relu"):
        for a, b in zip(enc.get_layer(name).get_weights(), body.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
def test_imagenet_download_failure_names_the_cache_and_the_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    # What keras.utils.get_file raises offline (a plain Exception wrapping the URLError).
    offline = Exception(
        "URL fetch failure on https://storage.googleapis.com/x_no_top.h5: None -- "
        "[Errno -3] Temporary failure in name resolution"
    )
    _stub_download(monkeypatch, offline)
    with pytest.raises(RuntimeError, match="encoder_weights='/path/to/file.h5'") as info:
        ks.build_unet(
            input_shape=(32, 32, 3), filters=4, encoder="mobilenet_v2", encoder_weights="imagenet"
        )
    message = str(info.value)
    assert str(tmp_path / "models") in message
    assert "encoder_weights='/path/to/file.h5'" in message
    assert "Temporary failure in name resolution" in message
    assert info.value.__cause__ is offline
    # Anything that is not a download failure propagates unchanged.
    other = ValueError("not a download problem")
    _stub_download(monkeypatch, other)
    with pytest.raises(ValueError, match="not a download problem"):
        ks.build_unet(
            input_shape=(32, 32, 3), filters=4, encoder="mobilenet_v2", encoder_weights="imagenet"
        )


def test_keras_models_cache_follows_keras_rules(tmp_path, monkeypatch):
    from keras_skipae.models.encoders import keras_models_cache

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert keras_models_cache() == "/tmp/.keras/models"  # get_file's fallback: not there yet
    (tmp_path / "kh").mkdir()
    assert keras_models_cache() == str(tmp_path / "kh" / "models")
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".keras").mkdir()
    assert keras_models_cache() == str(tmp_path / ".keras" / "models")


def test_mc_dropout_levels():
    model = ks.build_aesc(input_shape=(64, 64, 1), filters=2, dropout=autoencoder.AESC_MC_DROPOUT)
    drops = {lay.name: lay.rate for lay in model.layers if isinstance(lay, keras.layers.Dropout)}
    assert drops == {"enc2_drop": 0.1, "enc3_drop": 0.2, "enc4_drop": 0.4, "bottleneck_drop": 0.5}


BAD_ARGS = [
    ("aesc", {"skip_mode": "x"}, "skip_mode='x'"),
    ("unet", {"skip_mode": "mul"}, "skip_mode='mul'"),
    ("aesc", {"skips": (5,)}, r"skips=\(5,\)"),
    ("aesc", {"skips": (-1,)}, r"skips=\(-1,\)"),
    ("aesc", {"skips": (0, 0)}, "repeated"),
    ("aesc", {"skips": "some"}, "skips='some'"),
    ("aesc", {"skips": 1.5}, "skips=1.5"),
    ("aesc", {"skip_mode": None, "skips": (0,)}, "skip_mode` is None"),
    ("aesc", {"skip_scale": 0.0}, "skip_scale=0.0"),
    ("aesc", {"skip_scale": 1.5}, "skip_scale=1.5"),
    ("aesc", {"skip_scale": (0.5,)}, r"skip_scale=\(0.5,\)"),
    ("aesc", {"dropout": 1.0}, "dropout"),
    ("aesc", {"dropout": -0.1}, "dropout=-0.1"),
    ("aesc", {"dropout": (0.1, 0.2)}, "dropout"),
    ("aesc", {"depth": 0}, "depth=0"),
    ("aesc", {"depth": 1}, "depth=1"),
    ("aesc", {"filters": 0}, "filters=0"),
    ("aesc", {"kernel_size": "3"}, "kernel_size='3'"),
    ("aesc", {"bn_momentum": 1.0}, "bn_momentum=1.0"),
    ("aesc", {"batchnorm": "yes"}, "batchnorm='yes'"),
    ("aesc", {"input_shape": (32, 32)}, "input_shape"),
    ("aesc", {"input_shape": (32, 32, None)}, "channel"),
    ("aesc", {"input_shape": (30, 32, 1)}, "multiples of 2\\*\\*depth = 8"),
    ("aesc", {"input_shape": (32, 0, 1)}, "positive"),
    ("unet", {"input_shape": (34, 34, 1)}, "multiples of 2\\*\\*depth = 4"),
    ("unet", {"num_outputs": 0}, "num_outputs=0"),
    ("aesc", {"encoder": "vgg99", "depth": None}, "encoder='vgg99'"),
    ("aesc", {"encoder": "mobilenet_v2", "depth": 3}, "depth=3"),
    (
        "aesc",
        {"encoder": "mobilenet_v2", "depth": None, "encoder_weights": "/no/such/file.h5"},
        "/no/such/file.h5",
    ),
    ("aesc", {"encoder": "mobilenet_v2", "depth": None, "encoder_weights": 3}, "encoder_weights=3"),
    ("aesc", {"freeze_encoder": True}, "need an `encoder`"),
    (
        "aesc",
        {"encoder": "mobilenet_v2", "depth": None, "input_shape": (48, 48, 1)},
        "multiples of 2\\*\\*depth = 32",
    ),
    (
        "aesc",
        {"encoder": "mobilenet_v2", "depth": None, "input_shape": (32, 32, 2)},
        "1 or 3 input channels",
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "match"), BAD_ARGS)
def test_bad_arguments_raise_clear_value_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(name, **kwargs)


def test_registry_and_taps_errors():
    with pytest.raises(
        ValueError, match="Available: ae, aesc, aesc_head, unet. Received: name='vae'"
    ):
        ks.get_model("vae")
    with pytest.raises(ValueError, match="build_aesc accepts"):
        ks.get_model("aesc", input_shape=(32, 32, 1), depth=3, num_outputs=2)
    model = tiny("aesc")
    with pytest.raises(ValueError, match="Unknown tap name"):
        ks.tap_model(model, ["enc9_out"])
    foreign = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no keras_skipae taps"):
        ks.tap_names(foreign)
