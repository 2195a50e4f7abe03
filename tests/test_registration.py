"""`import keras_skipae` alone registers the custom objects; ks.load_model errors."""

import subprocess
import sys

import pytest

import keras_skipae as ks


@pytest.mark.slow
def test_plain_keras_load_after_package_import(tmp_path):
    model = ks.build_aesc(input_shape=(None, None, 1), depth=3, filters=4)
    model.compile(optimizer="adam", loss=ks.losses.get_loss("mse"))
    path = tmp_path / "m.keras"
    model.save(path)
    code = (
        "import keras_skipae, keras; "
        f"m = keras.models.load_model({str(path)!r}, safe_mode=True); "
        "print(m.get_layer('input_check').multiple)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("8")


def test_load_model_round_trip_and_errors(tmp_path):
    model = ks.build_ae(input_shape=(32, 32, 1), depth=3, filters=4)
    path = tmp_path / "ae.keras"
    model.save(path)
    assert ks.load_model(path).name == "ae"
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        ks.load_model(tmp_path / "nope.keras")
    with pytest.raises(ValueError, match="is a folder"):
        ks.load_model(tmp_path)
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="Expected a `.keras` file"):
        ks.load_model(other)
