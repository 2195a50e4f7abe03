"""Mixed precision in train(precision=...): the "auto" rule, float32 outputs, training, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY
from harness import run_model_saving_test

from keras_skipae import scoring, training
from keras_skipae.ops import device
from keras_skipae.training import runtime

MIXED = ("mixed_bfloat16", "mixed_float16")


@pytest.mark.parametrize(
    "gpus, flags, want",
    [
        ([], {"avx2", "fma"}, "float32"),  # this project's CPU: bfloat16 is emulated
        ([], {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
        ([], {"avx2", "amx_bf16", "amx_tile"}, "mixed_bfloat16"),
        ([], {"avx512f", "avx512_vnni"}, "float32"),  # AVX-512 without BF16
        ([(8, 0)], {"avx2"}, "mixed_bfloat16"),  # Ampere
        ([(9, 0), (8, 6)], set(), "mixed_bfloat16"),
        ([(7, 5)], {"avx512_bf16"}, "mixed_float16"),  # Turing: the GPU decides
        ([(8, 0), (7, 0)], set(), "mixed_float16"),  # the weakest GPU decides
        ([(6, 1)], {"avx512_bf16"}, "float32"),  # Pascal: no tensor cores
        ([None], set(), "float32"),  # a GPU without a known capability
    ],
)
def test_auto_precision_rule(gpus, flags, want):
    assert runtime.resolve_precision("auto", gpu_capabilities=gpus, cpu_flags=flags) == want


@pytest.mark.parametrize("precision", ["float32", *MIXED])
def test_explicit_precision_passes_through(precision):
    got = runtime.resolve_precision(precision, gpu_capabilities=[(9, 0)], cpu_flags={"amx_bf16"})
    assert got == precision


def test_auto_precision_on_this_machine():
    # Computed here from the raw /proc/cpuinfo text and TF's GPU list.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            words = set(f.read().split())
    except OSError:
        words = set()
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the GPU rule is tested with stubs above")
    want = "mixed_bfloat16" if words & {"avx512_bf16", "amx_bf16"} else "float32"
    assert runtime.resolve_precision("auto") == want


def test_cpu_flags_parse_proc_cpuinfo():
    text = (
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 amx_bf16\n"
    )
    assert device.cpu_flags(text) == {"fpu", "avx2", "fma", "avx512_bf16", "amx_bf16"}
    assert device.cpu_flags("") == frozenset()


@pytest.mark.parametrize("bad", ["fp16", "bfloat16", "", None, 16, True])
def test_bad_precision_is_refused(bad):
    with pytest.raises(ValueError, match=r"`precision` must be one of .*Received: precision="):
        runtime.resolve_precision(bad)


def test_train_refuses_a_bad_precision_before_building():
    data = tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 1), "float32"))
    with pytest.raises(ValueError, match="precision='half'"):
        training.train("aesc", data, model_kwargs=TINY["aesc"], precision="half")


def test_precision_scope_restores_the_global_policy():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with runtime.precision_scope("mixed_float16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


@pytest.mark.parametrize("precision", MIXED)
@pytest.mark.parametrize("name, first_conv", [("aesc", "enc0_conv"), ("unet", "enc0_conv1")])
def test_builders_keep_float32_outputs_under_mixed_policies(
    precision, name, first_conv, tiny_model, images
):
    with runtime.precision_scope(precision):
        model = tiny_model(name)
    half = precision.removeprefix("mixed_")
    conv = model.get_layer(first_conv)
    assert (conv.compute_dtype, conv.variable_dtype) == (half, "float32")
    assert model.get_layer("out").compute_dtype == "float32"
    assert model(images(2), training=False).dtype == "float32"
    assert runtime.model_precision(model) == precision
    # The float32 build is untouched: float32 everywhere.
    plain = tiny_model(name)
    assert runtime.model_precision(plain) == "float32"
    assert {layer.compute_dtype for layer in plain.layers} == {"float32"}


def _pairs(seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((1, 32, 32, 1)).astype("float32")
    x = np.clip(base + 0.05 * rng.standard_normal((8, 32, 32, 1)), 0, 1).astype("float32")
    return tf.data.Dataset.from_tensor_slices(x)


class _Start(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.get_weights()]


@pytest.mark.slow
@pytest.mark.parametrize("precision", MIXED)
def test_mixed_precision_trains_saves_and_scores_in_float32(precision, tmp_path, images):
    start = _Start()
    run = training.train(
        "aesc",
        _pairs(),
        model_kwargs=TINY["aesc"],
        corruption=None,
        metrics=(),
        epochs=2,
        steps_per_epoch=1,
        batch_size=4,
        validation_split=0,
        precision=precision,
        callbacks=[start],
        run_dir=tmp_path / "run",
        tensorboard=False,
        verbose=0,
    )
    model = run.model
    assert run.config["runtime"]["precision"] == precision
    assert model.get_layer("enc0_conv").compute_dtype == precision.removeprefix("mixed_")
    losses = run.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert any(
        not np.array_equal(a, np.asarray(b)) for a, b in zip(start.weights, model.get_weights())
    )
    wrapped = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (precision == "mixed_float16")
    x = images(2)
    assert model(x, training=False).dtype == "float32"
    out = scoring.compute(model, x)
    assert {k: v.dtype.name for k, v in out.items()} == {
        "reconstruction": "float32",
        "anomaly_map": "float32",
        "score": "float32",
    }
    # The reconstruction is a half-precision computation of the float32 one.
    ref = training.make_builder("aesc", **TINY["aesc"])()
    ref.set_weights(model.get_weights())
    assert runtime.model_precision(ref) == "float32"
    got, want = np.asarray(model(x, training=False)), np.asarray(ref(x, training=False))
    assert 0 < np.max(np.abs(got - want)) < 0.05
    loaded = run_model_saving_test(model, x, tmp_path)
    assert runtime.model_precision(loaded) == precision
    assert loaded(x, training=False).dtype == "float32"
    # The run folder's model is the same model.
    saved = keras.models.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(saved(x, training=False)), got, atol=1e-6)


def test_a_built_model_keeps_its_own_precision(tiny_model):
    from keras_skipae.training.train import _resolve_model_precision

    model = tiny_model("aesc")
    with pytest.raises(ValueError, match="was built in 'float32'.*precision='mixed_bfloat16'"):
        training.train(model, _pairs(), precision="mixed_bfloat16", corruption=None)
    with runtime.precision_scope("mixed_bfloat16"):
        mixed = tiny_model("aesc")
    assert _resolve_model_precision(mixed, "auto") == "mixed_bfloat16"
    assert _resolve_model_precision(mixed, "mixed_bfloat16") == "mixed_bfloat16"
    assert _resolve_model_precision(model, "auto") == "float32"
    with pytest.raises(ValueError, match="precision='float32'"):
        _resolve_model_precision(mixed, "float32")


def test_mixed_precision_needs_float32_outputs():
    def half_output():
        inputs = keras.Input((32, 32, 1))
        outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
        return keras.Model(inputs, outputs)

    with pytest.raises(ValueError, match="outputs must be float32.*bfloat16"):
        training.train(half_output, _pairs(), precision="mixed_bfloat16", corruption=None)
