"""Tests for keras_skipae.export: SavedModel signatures, settings, errors, .keras."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tree_digest

import keras_skipae as ks
import keras_skipae.models  # noqa: F401  (registers the custom layers for .keras loading)
from keras_skipae import export, scoring
from keras_skipae.evaluation import evaluate
from keras_skipae.ops.device import MeasuredJit
from keras_skipae.ownership import mark_owned
from keras_skipae.runs import RUN_METRICS, RunFolder

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "saved_models" / "aesc_mesh_demo"
DEMO_KERAS = REPO / "saved_models" / "aesc_mesh_demo.keras"
ATOL = 1e-5


def _tiny(input_shape, seed):
    """A tiny AESc with non-trivial BatchNorm statistics (so BN matters in the check)."""
    keras.utils.set_random_seed(seed)
    model = ks.build_aesc(input_shape=input_shape, depth=3, filters=4)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    return model


@pytest.fixture(scope="module")
def gray_export(tmp_path_factory):
    """Grayscale, any size (None, None, 1), default scoring, with a threshold."""
    model = _tiny((None, None, 1), seed=1)
    images = np.random.default_rng(11).random((3, 32, 32, 1), dtype=np.float32)
    # A threshold between the scores, so is_anomalous has both values.
    scores = np.sort(scoring.compute(model, images)["score"].numpy())
    threshold = float((scores[0] + scores[1]) / 2)
    path = tmp_path_factory.mktemp("export") / "gray"
    export.export_saved_model(model, path, threshold=threshold, metadata={"run": "test"})
    return {
        "model": model,
        "path": path,
        "loaded": tf.saved_model.load(str(path)),
        "threshold": threshold,
        "images": images,
        "settings": scoring.ScoringConfig().to_dict(),
    }


@pytest.fixture(scope="module")
def rgb_export(tmp_path_factory):
    """RGB, fixed 32x32, non-default scoring (SSIM map, sigma 2, top-k), no threshold."""
    model = _tiny((32, 32, 3), seed=2)
    settings = {"map": "ssim", "smoothing": 2.0, "score": "topk", "topk": 0.05}
    path = tmp_path_factory.mktemp("export") / "rgb"
    export.export_saved_model(model, path, scoring=settings, verify=False)  # the gray one verifies
    images = np.random.default_rng(12).random((2, 32, 32, 3), dtype=np.float32)
    return {
        "model": model,
        "path": path,
        "loaded": tf.saved_model.load(str(path)),
        "threshold": None,
        "images": images,
        "settings": scoring.ScoringConfig(**settings).to_dict(),
    }


@pytest.fixture(params=["gray", "rgb"])
def exported(request, gray_export, rgb_export):
    return gray_export if request.param == "gray" else rgb_export


def _as_uint8(images):
    return np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# Agreement with the in-process computation
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_signature_matches_in_process(exported, dtype):
    images = exported["images"] if dtype == "float32" else _as_uint8(exported["images"])
    name = "serving_default" if dtype == "float32" else "serving_uint8"
    served = exported["loaded"].signatures[name](images=tf.constant(images))
    # The in-process reference: evaluate's scoring path (make_scorer) with the
    # settings read back from the export's JSON.
    stored = export.read_settings(exported["path"])["scoring"]
    assert stored == exported["settings"]
    expected = scoring.make_scorer(exported["model"], stored)(tf.constant(images))
    for key in ("reconstruction", "anomaly_map", "score"):
        assert served[key].dtype == tf.float32
        assert served[key].shape == expected[key].shape
        np.testing.assert_allclose(served[key].numpy(), expected[key].numpy(), atol=ATOL)
    if exported["threshold"] is None:
        assert "is_anomalous" not in served
    else:
        want = expected["score"].numpy() >= np.float32(exported["threshold"])
        np.testing.assert_array_equal(served["is_anomalous"].numpy(), want)
        assert 0 < want.sum() < len(want)


def test_uint8_is_scaled_like_float(gray_export):
    u8 = _as_uint8(gray_export["images"])
    sigs = gray_export["loaded"].signatures
    a = sigs["serving_uint8"](images=tf.constant(u8))
    b = sigs["serving_default"](images=tf.constant(u8.astype(np.float32) / 255.0))
    np.testing.assert_allclose(a["score"].numpy(), b["score"].numpy(), atol=ATOL)


def test_loaded_functions_take_both_dtypes(exported):
    loaded, model = exported["loaded"], exported["model"]
    x = exported["images"]
    ref = scoring.compute(model, x, exported["settings"])
    for images in (x, _as_uint8(x)):
        out = loaded.score(tf.constant(images))
        want = scoring.compute(model, images, exported["settings"])["score"]
        np.testing.assert_allclose(out["score"].numpy(), want.numpy(), atol=ATOL)
        rec = loaded.reconstruct(tf.constant(images))["reconstruction"]
        np.testing.assert_allclose(
            rec.numpy(), model(scoring.to_float_images(images), training=False), atol=ATOL
        )
    for name in ("reconstruct", "reconstruct_uint8"):
        images = x if name == "reconstruct" else _as_uint8(x)
        out = loaded.signatures[name](images=tf.constant(images))
        assert set(out) == {"reconstruction"}
    np.testing.assert_allclose(
        loaded.signatures["reconstruct"](images=tf.constant(x))["reconstruction"].numpy(),
        ref["reconstruction"].numpy(),
        atol=ATOL,
    )


def test_scores_equal_evaluate(gray_export):
    model, images = gray_export["model"], gray_export["images"]
    n = len(images)
    data = tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "mask": np.zeros(images.shape, np.float32),
            "label": np.array([0, 1, 0], np.int32)[:n],
            "defect_type": np.array(["good", "hole", "good"])[:n],
            "path": np.array([f"{i}.png" for i in range(n)]),
        }
    )
    result = evaluate(model, data, batch_size=2, progress=False)
    served = gray_export["loaded"].signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["score"].numpy(), result.scores, atol=ATOL)


def test_any_size_the_model_accepts(gray_export):
    x = np.random.default_rng(5).random((1, 48, 24, 1), dtype=np.float32)
    out = gray_export["loaded"].signatures["serving_default"](images=tf.constant(x))
    assert out["anomaly_map"].shape == (1, 48, 24)
    want = scoring.compute(gray_export["model"], x)["score"].numpy()
    np.testing.assert_allclose(out["score"].numpy(), want, atol=ATOL)


# ----------------------------------------------------------------------------
# Settings JSON
# ----------------------------------------------------------------------------


def test_settings_json(gray_export, rgb_export):
    gray = export.read_settings(gray_export["path"])
    assert gray["format"] == export.FORMAT
    assert gray["scoring"]["map"] == scoring.DEFAULT_MAP
    assert gray["scoring"]["smoothing"] == scoring.DEFAULT_SMOOTHING
    assert gray["scoring"]["smoothing_border"] == scoring.DEFAULT_SMOOTHING_BORDER
    assert gray["scoring"]["score"] == scoring.DEFAULT_SCORE
    assert gray["threshold"] == pytest.approx(gray_export["threshold"])
    assert gray["input"]["image_size"] is None
    assert gray["input"]["size_multiple"] == 8
    assert gray["input"]["color_mode"] == "grayscale"
    assert gray["model"]["name"] == gray_export["model"].name
    assert gray["versions"]["keras_skipae"] == ks.__version__
    assert gray["metadata"] == {"run": "test"}
    assert "is_anomalous" in gray["signatures"]["serving_default"]["outputs"]
    assert set(gray["signatures"]) == set(gray_export["loaded"].signatures)

    rgb = export.read_settings(rgb_export["path"])
    assert rgb["scoring"]["map"] == "ssim" and rgb["scoring"]["score"] == "topk"
    assert rgb["threshold"] is None
    assert rgb["input"]["image_size"] == [32, 32]
    assert rgb["input"]["color_mode"] == "rgb"
    assert "is_anomalous" not in rgb["signatures"]["serving_uint8"]["outputs"]
    # The JSON is a tracked asset of the SavedModel.
    asset = Path(rgb_export["loaded"].settings_file.asset_path.numpy().decode())
    assert json.loads(asset.read_text()) == rgb


def test_read_settings_rejects_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="keras_skipae.json"):
        export.read_settings(tmp_path)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", r"must hold a JSON object \(\{\.\.\.\}\); the file is damaged"),
        ('{"format"\n', r"is not valid JSON \(Expecting ':' delimiter: line 2 column 1"),
        ('{"input": 3}', r"is damaged: 'input' must be a JSON object"),
    ],
)
def test_a_damaged_settings_file_is_named(tmp_path, gray_export, text, problem):
    copy = tmp_path / "export"
    shutil.copytree(gray_export["path"], copy)
    (copy / "assets" / export.SETTINGS_FILE).write_text(text, encoding="utf-8")
    named = r"The export settings '.*assets/keras_skipae\.json' " + problem
    with pytest.raises(ValueError, match=named):
        export.read_settings(copy)
    with pytest.raises(ValueError, match=named):
        ks.Detector.load(copy)


# ----------------------------------------------------------------------------
# Bad inputs to the signatures
# ----------------------------------------------------------------------------


def _call(loaded, name, images):
    return loaded.signatures[name](images=tf.constant(images))


@pytest.mark.parametrize("name", ["serving_default", "reconstruct"])
def test_wrong_channel_count_fails_clearly(gray_export, name):
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"images \[1,32,32,3\].*\[\?,\?,\?,1\]"
    ):
        _call(gray_export["loaded"], name, np.zeros((1, 32, 32, 3), np.float32))


def test_wrong_rank_fails_clearly(gray_export, rgb_export):
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"images \[32,32,1\] is not compatible"
    ):
        _call(gray_export["loaded"], "serving_default", np.zeros((32, 32, 1), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[\?,32,32,3\]"):
        _call(rgb_export["loaded"], "serving_uint8", np.zeros((1, 1, 32, 32, 3), np.uint8))


def test_size_the_model_cannot_take_fails_clearly(gray_export, rgb_export):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"multiples of 8.*\[36\] \[40\]"):
        _call(gray_export["loaded"], "serving_default", np.zeros((1, 36, 40, 1), np.float32))
    # A fixed-size export refuses any other size, even a multiple of 2**depth.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[1,64,64,3\].*\[\?,32,32,3\]"):
        _call(rgb_export["loaded"], "serving_default", np.zeros((1, 64, 64, 3), np.float32))


def test_wrong_dtype_fails_clearly(gray_export):
    with pytest.raises((TypeError, ValueError), match="images"):
        gray_export["loaded"].score(tf.zeros((1, 32, 32, 1), tf.float64))


# ----------------------------------------------------------------------------
# Arguments, overwrite protection, atomicity
# ----------------------------------------------------------------------------


def test_refuses_to_overwrite(gray_export, tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_saved_model(gray_export["model"], target)
    assert (target / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


@pytest.mark.slow
def test_overwrite_replaces(tmp_path):
    model = ks.build_aesc(input_shape=(16, 16, 1), depth=2, filters=2)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    # Only an export keras_skipae made is replaced (keras_skipae.ownership).
    with pytest.raises(FileExistsError, match=r"out': it holds files .*\('old.txt'\)"):
        export.export_saved_model(model, target, overwrite=True, verify=False)
    assert (target / "old.txt").read_text() == "old"
    (target / "old.txt").unlink()
    (target / "saved_model.pb").write_bytes(b"old")
    mark_owned(target, "export")
    export.export_saved_model(model, target, overwrite=True, verify=False)
    assert (target / "saved_model.pb").read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left


@pytest.mark.slow
def test_verify_refuses_a_disagreeing_export(tmp_path, monkeypatch):
    model = ks.build_aesc(input_shape=(None, None, 1), depth=2, filters=2)
    save = tf.saved_model.save

    def save_then_change_weights(*args, **kwargs):
        save(*args, **kwargs)
        out = model.get_layer("out")
        out.kernel.assign(out.kernel + 0.5)  # the in-process model now differs

    monkeypatch.setattr(tf.saved_model, "save", save_then_change_weights)
    with pytest.raises(RuntimeError, match="differs from the in-process result"):
        export.export_saved_model(model, tmp_path / "out")
    assert not any(tmp_path.iterdir())  # nothing written, no temporary left


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scoring": {"map": "nope"}}, "map"),
        ({"scoring": {"score": "median"}}, "score"),
        ({"scoring": {"smoothing": -1}}, "smoothing"),
        ({"threshold": float("nan")}, "threshold"),
        ({"color_mode": "rgb"}, "color_mode"),
        ({"color_mode": "cmyk"}, "color_mode"),
        ({"image_size": 36}, "multiples of 8"),
        ({"image_size": (32, 32, 1)}, "image_size"),
        ({"metadata": {"x": object()}}, "metadata"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    model = ks.build_aesc(input_shape=(None, None, 1), depth=3, filters=2)
    with pytest.raises(ValueError, match=match):
        export.export_saved_model(model, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_fixed_model_refuses_other_image_size(tmp_path):
    model = ks.build_aesc(input_shape=(32, 32, 1), depth=3, filters=2)
    with pytest.raises(ValueError, match="32x32"):
        export.export_saved_model(model, tmp_path / "out", image_size=64)


# ----------------------------------------------------------------------------
# .keras
# ----------------------------------------------------------------------------


def test_keras_round_trip_safe_mode(gray_export, tmp_path):
    model = gray_export["model"]
    path = export.export_keras(model, tmp_path / "m.keras")
    loaded = keras.models.load_model(path, safe_mode=True)
    x = gray_export["images"]
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_keras(model, path)
    export.export_keras(model, path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_keras_export_drops_optimizer_unless_asked(tmp_path):
    model = ks.build_aesc(input_shape=(16, 16, 1), depth=2, filters=2)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)  # the optimizer's state, as after fit
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    lean = keras.models.load_model(export.export_keras(model, tmp_path / "a.keras"), safe_mode=True)
    assert getattr(lean, "optimizer", None) is None
    np.testing.assert_allclose(lean(x), model(x, training=False), atol=1e-6)
    full = keras.models.load_model(
        export.export_keras(model, tmp_path / "b.keras", include_optimizer=True), safe_mode=True
    )
    assert full.optimizer is not None
    assert (tmp_path / "a.keras").stat().st_size < (tmp_path / "b.keras").stat().st_size


def test_keras_export_checks(tmp_path):
    model = ks.build_aesc(input_shape=(16, 16, 1), depth=2, filters=2)
    with pytest.raises(ValueError, match=r"\.keras"):
        export.export_keras(model, tmp_path / "m.h5")
    inputs = keras.Input((4,))
    lam = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    with pytest.raises(ValueError, match="Lambda"):
        export.export_keras(lam, tmp_path / "lam.keras")


# ----------------------------------------------------------------------------
# A fresh process without keras_skipae
# ----------------------------------------------------------------------------

_STANDALONE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, images_file, signature = sys.argv[1:4]
    loaded = tf.saved_model.load(path)
    images = np.load(images_file)
    out = loaded.signatures[signature](images=tf.constant(images))
    assert "keras_skipae" not in sys.modules, "keras_skipae was imported"
    print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))
    """
)


def _run_standalone(path, images, signature, tmp_path):
    images_file = tmp_path / "images.npy"
    np.save(images_file, images)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    proc = subprocess.run(
        [sys.executable, "-c", _STANDALONE, str(path), str(images_file), signature],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository root, so keras_skipae is not on sys.path
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_export_scores_in_fresh_process_without_package(gray_export, tmp_path):
    u8 = _as_uint8(gray_export["images"])
    out = _run_standalone(gray_export["path"], u8, "serving_uint8", tmp_path)
    expected = scoring.compute(gray_export["model"], u8)
    np.testing.assert_allclose(out["score"], expected["score"].numpy(), atol=ATOL)
    np.testing.assert_allclose(out["anomaly_map"], expected["anomaly_map"].numpy(), atol=ATOL)
    want = expected["score"].numpy() >= np.float32(gray_export["threshold"])
    np.testing.assert_array_equal(out["is_anomalous"], want)


@pytest.mark.slow
@pytest.mark.skipif(not DEMO.is_dir(), reason="saved_models/aesc_mesh_demo not built")
def test_demo_model_scores_in_fresh_process(tmp_path):
    from keras_skipae.data import synthetic

    settings = export.read_settings(DEMO)
    assert settings["input"]["image_size"] == [128, 128]
    assert settings["threshold"] is not None
    good, _ = synthetic.generate_sample("mesh", image_size=128, seed=[99, 0])
    bad, mask = synthetic.generate_sample("mesh", image_size=128, defect="broken", seed=[99, 1])
    assert mask.any()
    images = np.stack([good, bad]).reshape(2, 128, 128, 1)
    out = _run_standalone(DEMO, images, "serving_uint8", tmp_path)
    assert np.asarray(out["anomaly_map"]).shape == (2, 128, 128)
    # The same model in process (the .keras twin) with the export's settings.
    model = keras.models.load_model(DEMO_KERAS, safe_mode=True, compile=False)
    s = settings["scoring"]
    expected = scoring.compute(model, images, {k: s[k] for k in ("map", "smoothing", "score")})
    np.testing.assert_allclose(out["score"], expected["score"].numpy(), atol=ATOL)
    np.testing.assert_array_equal(
        out["is_anomalous"], np.asarray(out["score"]) >= np.float32(settings["threshold"])
    )


# ----------------------------------------------------------------------------
# Run folders and the CLI
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished (1-epoch) training run at 32 px with an evaluation threshold.

    The tests using it are marked slow: they train and evaluate.
    """
    rng = np.random.default_rng(0)
    images = rng.random((12, 32, 32, 1), dtype=np.float32)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    run = ks.train(
        "aesc",
        tf.data.Dataset.from_tensor_slices(images[:8]),
        model_kwargs={"input_shape": (32, 32, 1), "depth": 3, "filters": 4},
        epochs=1,
        batch_size=4,
        run_dir=run_dir,
        tensorboard=False,
        verbose=0,
        data_config={"image_size": 32, "color_mode": "grayscale"},
    )
    test = tf.data.Dataset.from_tensor_slices(
        {
            "image": images[8:],
            "mask": np.zeros((4, 32, 32, 1), np.float32),
            "label": np.array([0, 0, 1, 1], np.int32),
            "defect_type": np.array(["good", "good", "x", "x"]),
            "path": np.array(["a", "b", "c", "d"]),
        }
    )
    val = tf.data.Dataset.from_tensor_slices({"image": images[:4], "label": np.zeros(4, np.int32)})
    result = evaluate(run.model, test, val_data=val, out_dir=run_dir / "evaluation", progress=False)
    return {"dir": run_dir, "model": run.model, "threshold": result.threshold, "images": images}


@pytest.mark.slow
def test_cli_export_saved_model_with_eval_threshold(run_folder, tmp_path, capsys):
    import keras_skipae_cli as cli

    out = tmp_path / "sm"
    assert cli.main(["export", str(run_folder["dir"]), str(out), "--threshold", "eval"]) == 0
    assert "threshold=" in capsys.readouterr().out
    settings = export.read_settings(out)
    assert settings["threshold"] == pytest.approx(run_folder["threshold"])
    assert settings["input"]["image_size"] == [32, 32]
    assert settings["input"]["color_mode"] == "grayscale"
    assert settings["metadata"]["threshold_source"].endswith("metrics.json")
    loaded = tf.saved_model.load(str(out))
    x = run_folder["images"][8:]
    served = loaded.signatures["serving_default"](images=tf.constant(x))
    want = scoring.compute(run_folder["model"], x)["score"].numpy()
    np.testing.assert_allclose(served["score"].numpy(), want, atol=ATOL)
    np.testing.assert_array_equal(
        served["is_anomalous"].numpy(), want >= np.float32(run_folder["threshold"])
    )
    # Refuses to overwrite, says how, exits non-zero.
    assert cli.main(["export", str(run_folder["dir"]), str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_export_overwrite_never_replaces_the_run_or_its_parent(run_folder, tmp_path, capsys):
    """Issue #26: ``export RUN RUN --overwrite`` replaced the trained run with the export, and
    ``export RUN PARENT --overwrite`` deleted every run and the user's notes."""
    import keras_skipae_cli as cli

    parent = tmp_path / "runs"
    run = parent / "r1"
    shutil.copytree(run_folder["dir"], run)
    shutil.copytree(run_folder["dir"], parent / "r2")
    (parent / "NOTES.txt").write_text("the user's notes")
    for out, why in [(run, "it is .*r1'"), (parent, "it contains .*r1'")]:
        before = tree_digest(tmp_path)
        assert cli.main(["export", str(run), str(out), "--overwrite"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(f"Refusing to replace .*: {why}", err[0]), err
        assert tree_digest(tmp_path) == before
    # An export keras_skipae made, outside the run, is replaced.
    out = tmp_path / "m.keras"
    assert cli.main(["export", str(run), str(out), "--format", "keras"]) == 0
    first = out.stat().st_ino
    assert cli.main(["export", str(run), str(out), "--format", "keras", "--overwrite"]) == 0
    assert out.stat().st_ino != first  # a new file, renamed into place
    assert ks.load_model(out).count_params() == run_folder["model"].count_params()


@pytest.mark.slow
def test_cli_export_threshold_checks(run_folder, tmp_path, capsys):
    import keras_skipae_cli as cli

    run = str(run_folder["dir"])
    # The evaluated threshold belongs to the default settings, not to another map.
    assert (
        cli.main(["export", run, str(tmp_path / "a"), "--threshold", "eval", "--map", "ssim"]) == 1
    )
    assert "other scoring settings" in capsys.readouterr().err
    # A metrics file from before `smoothing_border` existed was scored with the
    # normalized border: its threshold does not belong to the equalized default.
    legacy = tmp_path.parent / f"{tmp_path.name}_legacy_run"
    shutil.copytree(run_folder["dir"], legacy)
    metrics_path = legacy.joinpath(*RUN_METRICS)
    metrics = json.loads(metrics_path.read_text())
    del metrics["settings"]["smoothing_border"]
    metrics_path.write_text(json.dumps(metrics))
    assert cli.main(["export", str(legacy), str(tmp_path / "l"), "--threshold", "eval"]) == 1
    assert "smoothing_border='normalized'" in capsys.readouterr().err
    assert cli.main(["export", run, str(tmp_path / "b"), "--threshold", "high"]) == 2  # usage
    assert "number or 'eval'" in capsys.readouterr().err
    assert (
        cli.main(
            ["export", run, str(tmp_path / "c.keras"), "--format", "keras", "--threshold", "1"]
        )
        == 1
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_export_keras(run_folder, tmp_path):
    import keras_skipae_cli as cli

    out = tmp_path / "m.keras"
    assert cli.main(["export", str(run_folder["dir"]), str(out), "--format", "keras"]) == 0
    loaded = keras.models.load_model(out, safe_mode=True)
    x = run_folder["images"][:2]
    np.testing.assert_allclose(loaded(x), run_folder["model"](x, training=False), atol=1e-6)


def _write_run_metrics(run_dir: Path, settings: dict, threshold=0.25) -> None:
    path = run_dir.joinpath(*RUN_METRICS)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"threshold": threshold, "settings": settings}))


def test_run_threshold_matches_recorded_settings(tmp_path):
    settings = scoring.ScoringConfig().to_dict()
    _write_run_metrics(tmp_path / "same", settings)
    assert RunFolder(tmp_path / "same").threshold(settings)[::2] == (0.25, None)
    # Older metrics files lack `smoothing_border`: they were smoothed with "normalized".
    legacy = {k: v for k, v in settings.items() if k != "smoothing_border"}
    _write_run_metrics(tmp_path / "legacy", legacy)
    threshold, _, problem = RunFolder(tmp_path / "legacy").threshold(settings)
    assert threshold is None and "smoothing_border='normalized'" in problem
    # Without smoothing on both sides the border mode is irrelevant.
    unsmoothed = scoring.ScoringConfig(smoothing=0).to_dict()
    legacy_unsmoothed = {k: v for k, v in unsmoothed.items() if k != "smoothing_border"}
    _write_run_metrics(tmp_path / "legacy0", legacy_unsmoothed)
    assert RunFolder(tmp_path / "legacy0").threshold(unsmoothed)[::2] == (0.25, None)
    assert RunFolder(tmp_path / "legacy0").threshold(settings)[0] is None
    assert RunFolder(tmp_path / "missing").threshold(settings) == (None, None, None)


@pytest.mark.slow
def test_cpu_export_adds_the_xla_signature(gray_export, rgb_export, tmp_path):
    # jit_compile="auto" on a CPU (docs/decisions.md#xla-auto): the signatures run without
    # XLA, and serving_xla is the same scoring compiled with XLA, for Detector to time.
    assert not tf.config.list_physical_devices("GPU")
    loaded, images = gray_export["loaded"], gray_export["images"]
    settings = export.read_settings(gray_export["path"])
    assert settings["jit_compile"] == "measured"
    assert export.XLA_SIGNATURE[0] in loaded.signatures
    assert "is_anomalous" in settings["signatures"]["serving_xla"]["outputs"]
    assert (
        "is_anomalous"
        not in export.read_settings(rgb_export["path"])["signatures"]["serving_xla"]["outputs"]
    )
    plain = loaded.signatures["serving_default"](images=tf.constant(images))
    xla = loaded.signatures["serving_xla"](images=tf.constant(images))
    for key in ("reconstruction", "anomaly_map", "score"):
        np.testing.assert_allclose(xla[key].numpy(), plain[key].numpy(), atol=ATOL, err_msg=key)
    np.testing.assert_array_equal(xla["is_anomalous"].numpy(), plain["is_anomalous"].numpy())
    # The Detector times the two per input shape and keeps the faster.
    det = ks.Detector.load(gray_export["path"], image_size=32)
    assert isinstance(det.scorer.signature, MeasuredJit)
    # Forced choices export no XLA variant.
    forced = export.export_saved_model(
        gray_export["model"], tmp_path / "off", jit_compile=False, verify=False
    )
    assert export.XLA_SIGNATURE[0] not in tf.saved_model.load(str(forced)).signatures
    assert export.read_settings(forced)["jit_compile"] is False


# ----------------------------------------------------------------------------
# ExportSettings: the one typed reader and writer of the settings document


def test_export_settings_round_trip_the_documents_as_written(gray_export, rgb_export):
    from keras_skipae.export.settings import ExportSettings

    for made in (gray_export, rgb_export):
        stored = export.read_settings(made["path"])
        settings = ExportSettings.from_dict(stored)
        assert settings.to_dict() == stored
        assert ExportSettings.read(made["path"]) == settings
    gray = ExportSettings.read(gray_export["path"])
    assert gray.threshold == pytest.approx(gray_export["threshold"])
    assert (gray.channels, gray.color_mode, gray.image_size) == (1, "grayscale", None)
    assert gray.metadata == {"run": "test"} and gray.tiling is None
    rgb = ExportSettings.read(rgb_export["path"])
    assert (rgb.channels, rgb.image_size, rgb.threshold) == (3, (32, 32), None)
    assert (rgb.scoring.map, rgb.scoring.score, rgb.scoring.topk) == ("ssim", "topk", 0.05)


def _old_document() -> dict:
    """A settings document of an earlier export: no channels, colour mode, format
    version, jit_compile or training precision; a tiling without overlap; scoring
    settings from before the smoothing border."""
    return {
        "format": "keras_skipae.saved_model",
        "model": {"name": "aesc", "params": 10, "input_shape": [16, 16, 3]},
        "input": {"image_size": [16, 16], "size_multiple": 8},
        "scoring": {"map": "residual", "smoothing": 4.0, "score": "max"},
        "threshold": 0.25,
        "tiling": {"tile_size": 16, "batch_size": 4, "window_floor": 0.01},
        "owner_note": "kept as read",
    }


def test_export_settings_migrate_an_old_document_in_one_place():
    from keras_skipae.export.settings import FORMAT_VERSION, ExportSettings

    old = ExportSettings.from_dict(_old_document())
    assert (old.channels, old.color_mode) == (3, "rgb")  # from the model's input shape
    assert (old.format_version, old.jit_compile, old.trained_precision) == (1, False, None)
    assert old.tiling == (16, 0) and old.tile_batch_size == 4
    assert old.scoring.smoothing_border == "normalized"  # the border of that time
    assert (old.image_size, old.threshold) == ((16, 16), 0.25)
    current = old.to_dict()  # written in the current format
    assert current["input"]["channels"] == 3 and current["input"]["color_mode"] == "rgb"
    assert current["format_version"] == FORMAT_VERSION and current["jit_compile"] is False
    assert current["tiling"]["tile_overlap"] == 0 and current["owner_note"] == "kept as read"
    assert current["scoring"]["smoothing_border"] == "normalized"
    assert ExportSettings.from_dict(current) == old
    with pytest.raises(ValueError, match="finite `threshold`.*threshold='high'"):
        ExportSettings.from_dict(dict(_old_document(), threshold="high"))
    with pytest.raises(ValueError, match="give the input's channels"):
        ExportSettings.from_dict({"model": {}, "input": {}})


def test_a_saved_model_with_an_old_settings_document_still_loads(tmp_path, gray_export):
    """The Detector reads the settings through ExportSettings: an export whose document
    lacks the entries later versions added loads, with the channels of its model."""
    copy = tmp_path / "old"
    shutil.copytree(gray_export["path"], copy)
    file = copy / "assets" / export.SETTINGS_FILE
    doc = json.loads(file.read_text())
    for key in ("format_version", "jit_compile"):
        del doc[key]
    for key in ("channels", "color_mode"):
        del doc["input"][key]
    del doc["scoring"]["smoothing_border"]
    file.write_text(json.dumps(doc))
    det = ks.Detector.load(copy, image_size=32)
    assert (det.channels, det.color_mode, det.kind) == (1, "grayscale", "saved_model")
    assert det.scoring.smoothing_border == "normalized"
    assert det.threshold == pytest.approx(gray_export["threshold"])
