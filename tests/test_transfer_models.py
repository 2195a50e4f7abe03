"""Transfer and image-to-image options: replace_head, set_trainable, output_activation, upscale."""

import keras
import numpy as np
import pytest
from conftest import TINY
from harness import run_model_saving_test

import keras_skipae as ks
from keras_skipae.models import build_aesc_head, replace_head, set_trainable
from keras_skipae.training import runtime

#: The layer whose input is the decoder's last tensor, per builder (tiny models).
LAST = {"ae": "dec0_up", "aesc": "dec0_up", "unet": "dec0_out"}


def _paths(variables):
    """The layer names owning ``variables`` (``"dec0_conv/kernel"`` -> ``"dec0_conv"``)."""
    return {v.path.split("/")[0] for v in variables}


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _features(model, x):
    """The tensor that feeds ``model``'s ``out`` layer, as numpy."""
    return _numpy(keras.Model(model.input, model.get_layer("out").input)(x, training=False))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- replace_head


@pytest.mark.parametrize("name", ["ae", "aesc", "unet"])
def test_replace_head_shares_every_layer_but_out(name, tiny_model, images):
    model = tiny_model(name)
    new = replace_head(model, 3, "softmax")
    assert new.name == f"{name}_head3"
    assert new.output_shape == (None, 32, 32, 3)
    assert new.get_layer("out") is not model.get_layer("out")
    assert new.get_layer("out").kernel_size == model.get_layer("out").kernel_size
    assert new.get_layer("out").input is model.get_layer(LAST[name]).output
    assert new.get_layer("dec0_out") is model.get_layer("dec0_out")
    # Every other layer is the same object, hence the same variables.
    old = {layer.name: layer for layer in model.layers}
    assert [layer.name for layer in new.layers] == list(old)
    for layer in new.layers[:-1]:
        assert layer is old[layer.name], layer.name
    shared = {id(v) for v in model.weights} - {id(v) for v in model.get_layer("out").weights}
    assert shared <= {id(v) for v in new.weights}
    y = _numpy(new(images(2), training=False))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-6)


def test_training_the_new_head_trains_the_shared_layers(tiny_model, images):
    model = tiny_model("aesc")
    new = replace_head(model, 1)
    before = {n: np.array(model.get_layer(n).weights[0]) for n in ("enc0_conv", "dec0_conv", "out")}
    new.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    x = images(4)
    new.fit(x, (x > 0.5).astype("float32"), batch_size=4, epochs=1, verbose=0)
    for n in ("enc0_conv", "dec0_conv"):  # shared: changed in the old model too
        assert not np.allclose(np.array(model.get_layer(n).weights[0]), before[n]), n
    # The old head is not part of the new model: untouched.
    np.testing.assert_array_equal(np.array(model.get_layer("out").weights[0]), before["out"])


def test_replace_head_softmax_matches_numpy(tiny_model, images):
    model = tiny_model("unet")
    new = replace_head(model, 4, "softmax")
    kernel, bias = (np.array(w) for w in new.get_layer("out").weights)
    x = images(2)
    feats = _features(model, x)
    want = _softmax(feats @ kernel[0, 0] + bias)  # a 1x1 convolution
    got = _numpy(new(x, training=False))
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("activation", [None, "linear"])
def test_replace_head_linear_outputs_can_be_negative(activation, tiny_model, images):
    model = tiny_model("unet")
    new = replace_head(model, 2, activation)
    out = new.get_layer("out")
    kernel = np.random.default_rng(0).normal(size=out.kernel.shape).astype("float32")
    kernel[..., 0] = 0.0  # channel 0 is its bias, -3, everywhere
    out.set_weights([kernel, np.array([-3.0, 2.0], "float32")])
    x = images(2)
    got = _numpy(new(x, training=False))
    np.testing.assert_allclose(got, _features(model, x) @ kernel[0, 0] + [-3.0, 2.0], atol=1e-5)
    np.testing.assert_array_equal(got[..., 0], -3.0)


def test_replace_head_keeps_the_aesc_kernel_size_and_names_are_deterministic(tiny_model):
    names = []
    for _ in range(2):
        keras.backend.clear_session(free_memory=False)
        new = replace_head(tiny_model("aesc", kernel_size=3), 2, name="seg")
        names.append([layer.name for layer in new.layers])
        assert new.name == "seg"
        assert new.get_layer("out").kernel_size == (3, 3)
        assert new.get_layer("out").padding == "same"
    assert names[0] == names[1]
    assert names[0][-2:] == ["dec0_up", "out"]


def test_replace_head_round_trips_through_keras(tiny_model, images, tmp_path):
    model = tiny_model("unet")
    new = replace_head(model, 2, None)
    new.get_layer("out").set_weights([w + 0.5 for w in new.get_layer("out").get_weights()])
    run_model_saving_test(new, images(2), tmp_path, atol=1e-6)
    # A loaded model takes a new head too, found by name.
    model.save(tmp_path / "base.keras")
    loaded = keras.models.load_model(tmp_path / "base.keras", safe_mode=True)
    again = replace_head(loaded, 3, "sigmoid")
    assert again.get_layer("dec0_out") is loaded.get_layer("dec0_out")
    assert again.output_shape == (None, 32, 32, 3)


def test_replace_head_returns_float32_under_mixed_precision(tiny_model, images):
    with runtime.precision_scope("mixed_bfloat16"):
        model = tiny_model("aesc")
        new = replace_head(model, 2, "softmax")
    assert model.get_layer("dec0_conv").compute_dtype == "bfloat16"
    # Built like the builders' heads: a 16-bit out_conv, then a float32 softmax `out`.
    assert new.get_layer("out_conv").compute_dtype == "bfloat16"
    assert new.get_layer("out_conv") is not model.get_layer("out_conv")
    assert new.get_layer("out_conv").input is model.get_layer("dec0_up").output
    assert new.get_layer("out").compute_dtype == "float32"
    assert new.get_layer("out").get_config()["activation"] == "softmax"
    y = np.asarray(new(images(1), training=False))
    assert y.dtype == "float32"
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)
    set_trainable(model, decoder=False)  # out_conv is part of the decoder
    assert not model.get_layer("out_conv").trainable
    assert model.get_layer("enc0_conv").trainable


def test_replace_head_on_a_mixed_model_with_a_float32_conv_out(tiny_model, images):
    # Mixed models saved before `out_conv` existed end in a float32 Conv2D `out` (what
    # replace_head outside a mixed scope also builds): their head is found and replaced.
    with runtime.precision_scope("mixed_bfloat16"):
        model = tiny_model("aesc")
    old_style = replace_head(model, 1, "sigmoid")
    assert "out_conv" not in [layer.name for layer in old_style.layers]
    assert old_style.get_layer("out").compute_dtype == "float32"
    new = replace_head(old_style, 3, None)
    assert new.get_layer("out").input is model.get_layer("dec0_up").output
    assert new(images(1), training=False).shape == (1, 32, 32, 3)


@pytest.mark.parametrize("style", [pytest.param("unet", marks=pytest.mark.slow), "aesc"])
def test_encoder_models_replace_head_and_freeze_the_body(style, images):
    build = ks.build_unet if style == "unet" else ks.build_aesc
    model = build(input_shape=(32, 32, 3), filters=4, encoder="mobilenet_v2")
    new = replace_head(model, 2, "softmax")
    assert new.output_shape == (None, 32, 32, 2)
    if style == "unet":
        assert new.get_layer("out_up") is model.get_layer("out_up")
        assert new.get_layer("out").input is model.get_layer("out_up").output
    assert new.get_layer("encoder") is model.get_layer("encoder")
    set_trainable(new, encoder=False)
    assert not model.get_layer("encoder").trainable  # shared: frozen in both
    owners = _paths(new.trainable_weights)
    assert owners and all(n.startswith(("dec", "out", "bottleneck_up")) for n in owners), owners
    set_trainable(new, encoder=True, decoder=False)
    assert _paths(new.trainable_weights).isdisjoint(owners)
    # gray_to_rgb (absent for RGB), encoder_preprocess and the taps have no weights.
    assert len(new.trainable_weights) == len(model.get_layer("encoder").trainable_weights)
    y = _numpy(new(images(1, (32, 32, 3)), training=False))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_outputs": 0}, r"num_outputs.*Received: num_outputs=0"),
        ({"num_outputs": 1.5}, r"Received: num_outputs=1.5"),
        ({"num_outputs": True}, r"Received: num_outputs=True"),
        ({"num_outputs": 2, "activation": "relu"}, r"Received: activation='relu'"),
        ({"num_outputs": 1, "activation": "softmax"}, r"num_outputs >= 2.*num_outputs=1"),
        ({"num_outputs": 2, "name": ""}, r"Received: name=''"),
    ],
)
def test_replace_head_refuses_bad_arguments(kwargs, match, tiny_model):
    with pytest.raises(ValueError, match=match):
        replace_head(tiny_model("unet"), **kwargs)


def test_replace_head_refuses_models_without_an_out_conv(tiny_model):
    inputs = keras.Input((8,))
    plain = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="plain")
    with pytest.raises(ValueError, match=r"named 'out'.*Received: model='plain'"):
        replace_head(plain, 2)
    wrapped = build_aesc_head(**TINY["aesc"], head_depth=2, head_filters=4)
    with pytest.raises(ValueError, match=r"\.base.*Received: model='aesc_head'"):
        replace_head(wrapped, 2)
    with pytest.raises(ValueError, match=r"`model` must be a functional keras.Model"):
        replace_head("aesc", 2)
    # Its base is a plain functional model and works.
    assert replace_head(wrapped.base, 2).output_shape == (None, 32, 32, 2)


# --------------------------------------------------------------------------- set_trainable


ENCODER_AESC = {"enc0_conv", "enc0_bn", "enc1_conv", "enc1_bn", "bottleneck_conv", "bottleneck_bn"}
DECODER_AESC = {"dec1_conv", "dec1_bn", "dec0_conv", "dec0_bn", "out"}


def test_set_trainable_by_part(tiny_model):
    model = tiny_model("aesc")
    assert _paths(model.trainable_weights) == ENCODER_AESC | DECODER_AESC
    # conv kernels (no bias before BN), BN gamma and beta; out kernel and bias.
    assert len(model.trainable_weights) == 9 + 6 + 2
    assert set_trainable(model, encoder=False) is model
    assert _paths(model.trainable_weights) == DECODER_AESC
    assert len(model.trainable_weights) == 8
    set_trainable(model)  # None, None: unchanged
    assert _paths(model.trainable_weights) == DECODER_AESC
    set_trainable(model, encoder=True, decoder=False)
    assert _paths(model.trainable_weights) == ENCODER_AESC
    assert len(model.trainable_weights) == 9
    set_trainable(model, encoder=False)
    assert model.trainable_weights == []
    assert len(model.weights) == 17 + 10  # + the BN moving statistics
    set_trainable(model, encoder=True, decoder=True)
    assert len(model.trainable_weights) == 17


def test_set_trainable_unet_and_upscale_parts(tiny_model):
    model = tiny_model("unet", upscale=2)
    set_trainable(model, encoder=False)
    owners = _paths(model.trainable_weights)
    assert {"dec0_up", "dec0_conv1", "sr_up0", "out"} <= owners
    assert all(n.startswith(("dec", "sr_up", "out")) for n in owners), owners
    set_trainable(model, encoder=True, decoder=False)
    owners = _paths(model.trainable_weights)
    assert {"enc0_conv1", "bottleneck_conv2"} <= owners
    assert all(n.startswith(("enc", "bottleneck")) for n in owners), owners


def test_set_trainable_bottleneck_up_is_decoder(tiny_model):
    model = tiny_model("aesc")
    set_trainable(model, encoder=False, decoder=True)
    assert model.get_layer("bottleneck_up").trainable
    assert not model.get_layer("bottleneck_conv").trainable
    set_trainable(model, encoder=True, decoder=False)
    assert not model.get_layer("bottleneck_up").trainable
    assert model.get_layer("bottleneck_conv").trainable
    assert model.get_layer("bottleneck_out").trainable


def test_frozen_encoder_keeps_weights_and_batchnorm_statistics(tiny_model, images):
    model = tiny_model("aesc")
    set_trainable(model, encoder=False)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    watch = {
        "enc0_conv": model.get_layer("enc0_conv").kernel,
        "enc0_bn": model.get_layer("enc0_bn").moving_mean,
        "dec0_conv": model.get_layer("dec0_conv").kernel,
        "dec0_bn": model.get_layer("dec0_bn").moving_mean,
    }
    before = {n: np.array(v) for n, v in watch.items()}
    x = images(4)
    model.fit(x, x, batch_size=4, epochs=1, verbose=0)
    for n in ("enc0_conv", "enc0_bn"):  # frozen BN runs in inference mode in Keras 3
        np.testing.assert_array_equal(np.array(watch[n]), before[n], err_msg=n)
    for n in ("dec0_conv", "dec0_bn"):
        assert not np.allclose(np.array(watch[n]), before[n]), n


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoder": "yes"}, r"Received: encoder='yes'"),
        ({"decoder": 1}, r"Received: decoder=1"),
    ],
)
def test_set_trainable_refuses_bad_flags(kwargs, match, tiny_model):
    with pytest.raises(ValueError, match=match):
        set_trainable(tiny_model("aesc"), **kwargs)


def test_set_trainable_refuses_models_without_the_part():
    inputs = keras.Input((8,))
    plain = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs), name="plain")
    with pytest.raises(ValueError, match=r"no encoder layers.*Received: model='plain'"):
        set_trainable(plain, encoder=False)
    assert set_trainable(plain, decoder=False).trainable_weights == []
    with pytest.raises(ValueError, match=r"`model` must be a keras.Model"):
        set_trainable(None, encoder=False)


# --------------------------------------------------------------------------- builders


@pytest.mark.parametrize("name", ["ae", "aesc", "unet"])
def test_default_output_activation_is_unchanged(name, tiny_model):
    model = tiny_model(name)
    assert model.get_layer("out").get_config()["activation"] == "sigmoid"
    assert not any(layer.name.startswith("sr_up") for layer in model.layers)


@pytest.mark.parametrize(
    "name, output_activation", [("ae", None), ("aesc", None), ("unet", None), ("unet", "linear")]
)
def test_linear_output_leaves_zero_one(name, output_activation, tiny_model, images):
    model = tiny_model(name, output_activation=output_activation)
    out = model.get_layer("out")
    assert out.get_config()["activation"] == "linear"
    kernel, bias = out.get_weights()
    x = images(2)
    out.set_weights([np.zeros_like(kernel), np.full_like(bias, 5.0)])  # a sigmoid stays < 1
    np.testing.assert_array_equal(_numpy(model(x, training=False)), 5.0)
    out.set_weights([np.zeros_like(kernel), np.full_like(bias, -2.0)])
    np.testing.assert_array_equal(_numpy(model(x, training=False)), -2.0)
    # With a kernel, the output is the linear map of the features (numpy reference).
    kernel = np.random.default_rng(1).normal(size=kernel.shape).astype("float32")
    out.set_weights([kernel, bias])
    if kernel.shape[0] == 1:
        want = _features(model, x) @ kernel[0, 0] + bias
        np.testing.assert_allclose(_numpy(model(x, training=False)), want, atol=1e-5)


def test_softmax_builder_output(tiny_model, images):
    model = tiny_model("unet", num_outputs=3, output_activation="softmax")
    kernel, bias = (np.array(w) for w in model.get_layer("out").weights)
    x = images(2)
    want = _softmax(_features(model, x) @ kernel[0, 0] + bias)
    np.testing.assert_allclose(_numpy(model(x, training=False)), want, atol=1e-5)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("unet", {"output_activation": "relu"}, r"Received: output_activation='relu'"),
        ("aesc", {"output_activation": "softmax"}, r"num_outputs >= 2.*num_outputs=1"),
        ("unet", {"upscale": 3}, r"`upscale` must be one of \(1, 2, 4\).*Received: upscale=3"),
        ("unet", {"upscale": 0}, r"Received: upscale=0"),
        ("ae", {"upscale": 8}, r"Received: upscale=8"),
        ("aesc", {"upscale": True}, r"Received: upscale=True"),
        ("unet", {"upscale": 2.0}, r"Received: upscale=2.0"),
        ("unet", {"upscale": "2"}, r"Received: upscale='2'"),
    ],
)
def test_builders_refuse_bad_image_to_image_options(name, kwargs, match, tiny_model):
    with pytest.raises(ValueError, match=match):
        tiny_model(name, **kwargs)


@pytest.mark.parametrize("name", ["ae", "aesc", "unet"])
@pytest.mark.parametrize("upscale", [2, 4])
def test_upscale_multiplies_the_output_size(name, upscale, tiny_model, images):
    model = tiny_model(name, upscale=upscale)
    size = 32 * upscale
    assert model.output_shape == (None, size, size, 1)
    stages = [layer.name for layer in model.layers if layer.name.startswith("sr_up")]
    assert stages == [f"sr_up{k}" for k in range(upscale.bit_length() - 1)]
    assert model.get_layer("out").input is model.get_layer(stages[-1]).output
    assert model.get_layer(stages[0]).input is model.get_layer(LAST[name]).output
    assert _numpy(model(images(1), training=False)).shape == (1, size, size, 1)


def test_upscale_with_unknown_size_and_round_trip(images, tmp_path):
    model = ks.get_model(
        "unet", input_shape=(None, None, 1), depth=2, filters=4, upscale=2, output_activation=None
    )
    assert model.output_shape == (None, None, None, 1)
    x = images(2, (16, 24, 1))
    assert _numpy(model(x, training=False)).shape == (2, 32, 48, 1)
    run_model_saving_test(model, x, tmp_path)


def test_upscale_with_an_encoder(images):
    model = ks.build_unet(input_shape=(32, 32, 3), filters=4, encoder="mobilenet_v2", upscale=2)
    assert model.output_shape == (None, 64, 64, 3)
    assert model.get_layer("sr_up0").input is model.get_layer("out_up").output


def test_anomaly_head_refuses_upscale():
    with pytest.raises(ValueError, match=r"Received: upscale=2"):
        ks.get_model("aesc_head", **TINY["aesc"], upscale=2)
