"""Tests for keras_skipae.layers: each registered layer round-trips through .keras."""

import keras
import numpy as np
import pytest
from harness import run_model_saving_test

from keras_skipae.layers import EncoderPreprocess, InputSizeCheck, MCDropout


def _wrap(layer, shape=(8, 8, 3)):
    inputs = keras.Input(shape)
    return keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize(
    "layer",
    [InputSizeCheck(4, name="check"), EncoderPreprocess("tf", name="pre")],
    ids=["InputSizeCheck", "EncoderPreprocess"],
)
def test_weightless_layers_round_trip(layer, images, tmp_path):
    model = _wrap(layer)
    loaded = run_model_saving_test(model, images(2, (8, 8, 3)), tmp_path)
    assert loaded.layers[1].get_config() == model.layers[1].get_config()
    assert not model.layers[1].weights


def test_input_size_check_refuses_other_sizes():
    with pytest.raises(Exception, match="multiples of 4"):
        _wrap(InputSizeCheck(4), shape=(None, None, 1))(np.zeros((1, 6, 8, 1), "float32"))


def test_mc_dropout_is_active_at_inference_and_round_trips(tmp_path):
    inputs = keras.Input((64,))
    model = keras.Model(inputs, MCDropout(0.5, name="mc")(inputs))
    x = np.ones((4, 64), "float32")
    a, b = model(x, training=False).numpy(), model(x, training=False).numpy()
    assert not np.array_equal(a, b) and (a == 0).any()
    path = tmp_path / "mc.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("mc"), MCDropout)
    assert loaded.get_layer("mc").rate == 0.5
