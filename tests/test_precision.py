"""Mixed precision in train(precision=...): the "auto" rule, float32 outputs, training, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY
from harness import run_model_saving_test

import keras_skipae as ks
from keras_skipae import export, scoring, training
from keras_skipae.evaluation import evaluate
from keras_skipae.inference import Detector
from keras_skipae.models.precision import float32_model
from keras_skipae.ops import device
from keras_skipae.training import runtime

MIXED = ("mixed_bfloat16", "mixed_float16")


@pytest.mark.parametrize(
    "gpus, flags, want",
    [
        ([], {"avx2", "fma"}, "float32"),  # bfloat16 would be emulated
        ([], {"avx512f", "avx512_bf16"}, "float32"),  # measured no faster in train
        ([], {"avx2", "amx_bf16", "amx_tile"}, "float32"),
        ([], {"avx512f", "avx512_vnni"}, "float32"),
        ([(8, 0)], {"avx2"}, "mixed_bfloat16"),  # Ampere
        ([(9, 0), (8, 6)], set(), "mixed_bfloat16"),
        ([(8, 0)], {"avx512_bf16", "amx_bf16"}, "mixed_bfloat16"),  # the GPU decides
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


@pytest.mark.parametrize(
    "gpus, want", [([], "float32"), ([(8, 0)], "mixed_bfloat16"), ([(7, 0)], "mixed_float16")]
)
def test_auto_precision_asks_tensorflow_for_the_gpus(gpus, want, monkeypatch):
    # Without arguments the rule reads TF's GPU list (stubbed here) on a bfloat16 CPU.
    monkeypatch.setattr(device, "gpu_devices", lambda: [f"GPU:{i}" for i in range(len(gpus))])
    monkeypatch.setattr(device, "gpu_compute_capability", lambda g: gpus[int(g[-1])])
    monkeypatch.setattr(device, "cpu_flags", lambda *a: frozenset({"avx512_bf16", "amx_bf16"}))
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
    with pytest.raises(RuntimeError, match="boom"):
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
    # The output convolution computes in 16 bits, its activation `out` in float32.
    out_conv, out = model.get_layer("out_conv"), model.get_layer("out")
    assert (out_conv.compute_dtype, type(out_conv)) == (half, keras.layers.Conv2D)
    assert (out.compute_dtype, type(out)) == ("float32", keras.layers.Activation)
    assert out.get_config()["activation"] == "sigmoid"
    assert model.layers[-1] is out and out.input is out_conv.output
    assert model(images(2), training=False).dtype == "float32"
    assert runtime.model_precision(model) == precision
    # The float32 build is untouched: float32 everywhere, one Conv2D `out` with the sigmoid.
    plain = tiny_model(name)
    assert runtime.model_precision(plain) == "float32"
    assert {layer.compute_dtype for layer in plain.layers} == {"float32"}
    assert "out_conv" not in [layer.name for layer in plain.layers]
    assert isinstance(plain.get_layer("out"), keras.layers.Conv2D)
    assert plain.get_layer("out").get_config()["activation"] == "sigmoid"


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


# ----------------------------------------------------------------------------
# Scoring in float32: the float32 twin of a mixed-precision model
# ----------------------------------------------------------------------------


def _tiny_build(kind):
    if kind == "aesc_head":
        return ks.get_model(
            "aesc_head", **TINY["aesc"], head_depth=2, head_filters=4, head_taps="decoder"
        )
    if kind == "mobilenet_v2":  # a keras.applications encoder: a nested functional model
        return ks.build_aesc(input_shape=(32, 32, 3), filters=4, encoder="mobilenet_v2")
    return ks.get_model(kind, **TINY[kind])


@pytest.mark.parametrize(
    "kind, precision",
    [
        ("aesc", "mixed_bfloat16"),
        ("aesc", "mixed_float16"),
        ("unet", "mixed_bfloat16"),
        ("aesc_head", "mixed_bfloat16"),
        pytest.param("mobilenet_v2", "mixed_bfloat16", marks=pytest.mark.slow),
    ],
)
def test_float32_model_is_a_float32_twin_with_the_same_weights(kind, precision, images):
    with runtime.precision_scope(precision):
        model = _tiny_build(kind)
    twin = float32_model(model)
    assert twin is not model and type(twin) is type(model) and twin.name == model.name
    assert runtime.model_precision(model) == precision
    assert runtime.model_precision(twin) == "float32"
    half = {layer.compute_dtype for layer in runtime._layers(model)}
    assert precision.removeprefix("mixed_") in half
    assert {layer.compute_dtype for layer in runtime._layers(twin)} == {"float32"}
    assert [w.path for w in twin.weights] == [w.path for w in model.weights]
    for a, b in zip(model.weights, twin.weights):
        assert b.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    x = images(2, (32, 32, 3 if kind == "mobilenet_v2" else 1))
    got, want = np.asarray(model(x, training=False)), np.asarray(twin(x, training=False))
    # The mixed model is a 16-bit computation of the twin's: equal to bf16/f16 resolution.
    assert 0 < np.max(np.abs(got - want)) < 0.05
    ref = _tiny_build(kind)  # a float32 build with the same weights computes what the twin does
    ref.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(ref(x, training=False)), want, atol=1e-6)
    if kind == "aesc_head":
        np.testing.assert_allclose(twin.anomaly_map(x), ref.anomaly_map(x), atol=1e-6)


def test_float32_model_returns_a_float32_model_unchanged(tiny_model):
    model = tiny_model("aesc")
    assert float32_model(model) is model
    plain = lambda x: x  # noqa: E731  (a plain callable: scored as it is)
    assert float32_model(plain) is plain


class _Unregistered(keras.layers.Layer):
    def call(self, x):
        return x


def test_float32_model_refuses_a_mixed_model_it_cannot_rebuild():
    with runtime.precision_scope("mixed_bfloat16"):
        inputs = keras.Input((32, 32, 1))
        hidden = _Unregistered()(keras.layers.Conv2D(2, 3, padding="same")(inputs))
        outputs = keras.layers.Conv2D(1, 3, padding="same", dtype="float32")(hidden)
        model = keras.Model(inputs, outputs, name="custom")
    with pytest.raises(
        ValueError, match=r"model 'custom' \(trained in mixed_bfloat16\).*rebuild"
    ) as info:
        float32_model(model)
    assert "_Unregistered" in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """A tiny AESc trained by ``ks.train`` in mixed_bfloat16 for two steps, in a run folder."""
    keras.utils.set_random_seed(0)
    run_dir = tmp_path_factory.mktemp("bf16") / "run"
    run = ks.train(
        "aesc",
        _pairs(),
        model_kwargs=TINY["aesc"],
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        validation_split=0,
        precision="mixed_bfloat16",
        run_dir=run_dir,
        tensorboard=False,
        verbose=0,
        data_config={"image_size": 32, "color_mode": "grayscale"},
    )
    assert run.config["runtime"]["precision"] == "mixed_bfloat16"
    x = np.random.default_rng(5).random((6, 32, 32, 1)).astype("float32")
    # A threshold in the middle of the float32 scores, so both decisions occur.
    scores = np.sort(scoring.compute(float32_model(run.model), x)["score"].numpy())
    return {"dir": run_dir, "model": run.model, "x": x, "threshold": float(scores[2:4].mean())}


@pytest.mark.slow
def test_a_bf16_run_exports_and_agrees_with_evaluate_and_predict(bf16_run, tmp_path):
    model, x, threshold = bf16_run["model"], bf16_run["x"], bf16_run["threshold"]
    assert runtime.model_precision(model) == "mixed_bfloat16"
    path = export.export_saved_model(
        model, tmp_path / "sm", threshold=threshold, tile_size=32, jit_compile="auto"
    )  # verifies serving_default, serving_xla (CPU) and serving_tiled at 1e-5 on its own
    settings = export.read_settings(path)
    assert settings["model"]["trained_precision"] == "mixed_bfloat16"
    loaded = tf.saved_model.load(str(path))
    assert {"serving_default", "serving_tiled"} <= set(loaded.signatures)
    detector = Detector.load(bf16_run["dir"], threshold=threshold)
    preds = list(detector.predict(x))
    det_scores = np.array([p.score for p in preds], np.float32)
    det_decisions = np.array([p.is_anomalous for p in preds])
    assert 0 < det_decisions.sum() < len(x)
    test = tf.data.Dataset.from_tensor_slices(
        {"image": x, "label": np.array([0, 0, 0, 1, 1, 1], np.int32)}
    )
    ev = evaluate(model, test, threshold=threshold, progress=False)
    np.testing.assert_allclose(ev.scores, det_scores, atol=1e-5)
    names = [n for n in ("serving_default", "serving_xla") if n in loaded.signatures]
    for name in names:
        served = loaded.signatures[name](images=tf.constant(x))
        np.testing.assert_allclose(served["score"].numpy(), det_scores, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(served["is_anomalous"].numpy(), det_decisions, name)
    tiled = loaded.signatures["serving_tiled"](images=tf.constant(x))
    np.testing.assert_allclose(tiled["score"].numpy(), det_scores, atol=1e-5)
    np.testing.assert_array_equal(tiled["is_anomalous"].numpy(), det_decisions)
    np.testing.assert_array_equal(det_scores >= np.float32(threshold), det_decisions)
    # The bf16 graph itself scores differently (at bf16 resolution): the twin is what agrees.
    half = scoring.compute(model, x)["score"].numpy()
    assert 1e-5 < np.max(np.abs(half - det_scores)) < 0.05


@pytest.mark.slow
def test_cli_exports_a_bf16_run(bf16_run, tmp_path, capsys):
    import keras_skipae_cli as cli

    out = tmp_path / "sm"
    code = cli.main(
        ["export", str(bf16_run["dir"]), str(out), "--threshold", str(bf16_run["threshold"])]
    )
    assert code == 0, capsys.readouterr().err
    assert export.read_settings(out)["model"]["trained_precision"] == "mixed_bfloat16"
    served = tf.saved_model.load(str(out)).signatures["serving_default"](
        images=tf.constant(bf16_run["x"])
    )
    want = scoring.compute(float32_model(bf16_run["model"]), bf16_run["x"])["score"].numpy()
    np.testing.assert_allclose(served["score"].numpy(), want, atol=1e-5)


def test_weights_of_a_mixed_model_with_a_float32_out_load_into_out_conv(tiny_model, tmp_path):
    # A bf16 run backed up before `out_conv` existed (its output a float32 Conv2D `out`,
    # which replace_head outside a mixed scope builds) resumes into today's structure.
    with runtime.precision_scope("mixed_bfloat16"):
        keras.utils.set_random_seed(3)
        trunk = tiny_model("aesc")
        keras.utils.set_random_seed(4)
        new = tiny_model("aesc")
    old = ks.replace_head(trunk, 1, "sigmoid")
    assert isinstance(old.get_layer("out"), keras.layers.Conv2D)
    assert not np.array_equal(new.get_layer("out_conv").kernel, old.get_layer("out").kernel)
    old.save_weights(tmp_path / "backup.weights.h5")
    new.load_weights(tmp_path / "backup.weights.h5")
    for a, b in zip(new.get_weights(), old.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(new.get_layer("out_conv").kernel, old.get_layer("out").kernel)
