"""ops/device.py: the per-path jit_compile choice (train step, scoring, serving)."""

import numpy as np
import pytest

from keras_skipae import scoring, training
from keras_skipae.ops import device


def test_measured_cpu_choice():
    # docs/decisions.md#xla-auto: on the CPU, XLA cost up to 12x at batch 16 and at a 2x2
    # bottleneck, and saved at most 30 % for single images: off on every path.
    assert device.CPU_JIT == {"train": False, "scoring": False, "serving": False}
    assert device.GPU_JIT == {"train": True, "scoring": True, "serving": True}


@pytest.mark.parametrize("path", device.JIT_PATHS)
def test_auto_follows_the_device(path):
    assert device.resolve_jit_compile("auto", path=path, gpus=[]) is device.CPU_JIT[path]
    gpu = ["PhysicalDevice(name='/physical_device:GPU:0', device_type='GPU')"]
    assert device.resolve_jit_compile("auto", path=path, gpus=gpu) is device.GPU_JIT[path]


@pytest.mark.parametrize("path", device.JIT_PATHS)
@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_booleans_pass_through(path, value):
    for gpus in ([], ["gpu"]):
        got = device.resolve_jit_compile(value, path=path, gpus=gpus)
        assert got is bool(value)


def test_auto_on_this_machine_matches_the_visible_devices():
    import tensorflow as tf

    table = device.GPU_JIT if tf.config.list_physical_devices("GPU") else device.CPU_JIT
    for path in device.JIT_PATHS:
        assert device.resolve_jit_compile("auto", path=path) is table[path]
    # train's own resolver is the same function (path "train" by default).
    assert training.resolve_jit_compile("auto") is table["train"]


@pytest.mark.parametrize("bad", ["yes", "Auto", 1, None, "on"])
def test_bad_jit_compile(bad):
    with pytest.raises(ValueError, match=f"Received: jit_compile={bad!r}"):
        device.resolve_jit_compile(bad, path="scoring")


def test_bad_path():
    with pytest.raises(ValueError, match="Received: path='predict'"):
        device.resolve_jit_compile(True, path="predict")


def test_make_scorer_compiles_as_asked(tiny_model, monkeypatch):
    model = tiny_model("aesc")
    assert scoring.make_scorer(model, jit_compile=True)._jit_compile is True
    assert scoring.make_scorer(model, jit_compile=False)._jit_compile is False
    # "auto" resolves for the scoring path (stubbed: pretend XLA pays there).
    monkeypatch.setitem(device.CPU_JIT, "scoring", True)
    monkeypatch.setitem(device.GPU_JIT, "scoring", True)
    assert scoring.make_scorer(model, image_shape=(32, 32, 1))._jit_compile is True
    with pytest.raises(ValueError, match="jit_compile='fast'"):
        scoring.make_scorer(model, jit_compile="fast")


def test_xla_scorer_matches_the_plain_one(tiny_model, images):
    model = tiny_model("aesc")
    x = images(2)
    plain = scoring.make_scorer(model, jit_compile=False)(x)
    xla = scoring.make_scorer(model, jit_compile=True)(x)
    for key in plain:
        np.testing.assert_allclose(xla[key].numpy(), plain[key].numpy(), atol=1e-5, err_msg=key)
