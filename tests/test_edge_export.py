"""Tests for the edge exports (LiteRT, ONNX, OpenVINO): keras_skipae.export.edge, ks.export,
``keras-skipae export --format litert|onnx|openvino`` and ``ks.Detector.load`` on each file.

One tiny run (32 px, two training steps, on the session's synthetic mesh tree) is made per
module and each file is exported once (module-scoped fixtures). References are
:func:`keras_skipae.scoring.compute` on the same images, in process.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY
from scipy.stats import spearmanr

import keras_skipae as ks
import keras_skipae_cli as cli
from keras_skipae import scoring
from keras_skipae.export import edge, runtimes
from keras_skipae.inference.scorers import EdgeScorer
from keras_skipae.scoring import float32_model

SIZE = 32
RTOL = edge.FLOAT_RTOL

pytestmark = pytest.mark.slow  # the module's fixture trains a run and converts six files

# The runtimes are pip packages with wheels for Linux, macOS and Windows on x86-64 and
# arm64; a platform without a wheel (or an install without the extras) skips their tests.
_SKIP = {
    "litert": "ai_edge_litert has no wheel for this platform or is not installed "
    '(pip install "keras-skipae[litert]")',
    "onnx": 'onnxruntime / tf2onnx not installed (pip install "keras-skipae[onnx]")',
    "openvino": 'openvino has no wheel for this platform or is not installed (pip install "keras-skipae[openvino]")',
}


def _need(fmt):
    modules = {"litert": ["ai_edge_litert"], "onnx": ["onnxruntime", "tf2onnx"]}
    for module in modules.get(fmt, [fmt]):
        pytest.importorskip(module, reason=_SKIP[fmt])


def _stained(n=6, seed=0):
    """Images with a bright square of growing size on a textured background: scores that
    are far apart, so that their order survives quantisation."""
    rng = np.random.default_rng(seed)
    images = (0.3 + 0.1 * rng.random((n, SIZE, SIZE, 1))).astype(np.float32)
    for i in range(1, n):
        side = 2 + 3 * i
        images[i, 4 : 4 + side, 6 : 6 + side] = 1.0
    return images


@pytest.fixture(scope="module")
def made(tmp_path_factory, synthetic_root):
    root = tmp_path_factory.mktemp("edge")
    run_dir = root / "run"
    good = ks.export.calibration_images(synthetic_root / "mesh" / "train" / "good", (32, 32, 1))
    run = ks.train(
        "aesc",
        tf.data.Dataset.from_tensor_slices(good),
        model_kwargs=TINY["aesc"],
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        run_dir=run_dir,
        tensorboard=False,
        validation_split=0.0,
        metrics=(),
        preview_images=0,
        verbose=0,
        precision="float32",  # a bf16 run is exported as its float32 twin: see test below
        data_config={
            "root": str(synthetic_root),
            "category": "mesh",
            "image_size": SIZE,
            "color_mode": "grayscale",
        },
    )
    images = _stained()
    ref = {k: v.numpy() for k, v in scoring.compute(run.model, images).items()}
    scores = np.sort(ref["score"])
    threshold = float((scores[2] + scores[3]) / 2)  # three normal, three anomalous
    return {
        "root": root,
        "run": run_dir,
        "model": run.model,
        "images": images,
        "good": good,
        "ref": ref,
        "threshold": threshold,
    }


@pytest.fixture(scope="module")
def files(made):
    """Every export, made once: name -> path (None where the runtime is missing)."""
    model, root, t = made["model"], made["root"], made["threshold"]
    out = {}
    jobs = {
        "litert": ("litert", {}, "f32.tflite"),
        "litert_dynamic": ("litert", {"quantization": "dynamic_range"}, "dyn.tflite"),
        "onnx": ("onnx", {}, "m.onnx"),
        "onnx_fixed": ("onnx", {"batch_size": 2}, "fixed.onnx"),
        "openvino": ("openvino", {}, "m.xml"),
    }
    for name, (fmt, kwargs, file) in jobs.items():
        try:
            out[name] = ks.export(model, root / file, format=fmt, threshold=t, **kwargs)
        except ImportError:
            out[name] = None
    return out


def _file(files, name):
    _need(name.split("_")[0])
    return files[name]


FLOAT = ["litert", "onnx", "onnx_fixed", "openvino"]


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", FLOAT)
def test_float_export_agrees_with_in_process(files, made, name):
    path = _file(files, name)
    out = EdgeScorer(name.split("_")[0], path).runner.run(made["images"])
    for key in ("anomaly_map", "reconstruction", "score"):
        assert out[key].shape == made["ref"][key].shape, key
        assert _rel(out[key], made["ref"][key]) <= RTOL, key
    want = made["ref"]["score"] >= np.float32(made["threshold"])
    assert want.any() and not want.all()
    np.testing.assert_array_equal(out["is_anomalous"], want)


def test_rgb_model_with_ssim_map_and_topk_score(tmp_path):
    _need("litert")
    model = ks.build_aesc(input_shape=(SIZE, SIZE, 3), depth=3, filters=4)
    cfg = ks.ScoringConfig(map="ssim", score="topk", smoothing=2.0)
    images = np.random.default_rng(3).random((3, SIZE, SIZE, 3), dtype=np.float32)
    path = ks.export(model, tmp_path / "rgb.tflite", format="litert", scoring=cfg)
    assert edge.read_edge_settings(path)["input"]["color_mode"] == "rgb"
    out = EdgeScorer("litert", path).score(images)
    ref = scoring.compute(model, images, cfg)
    for key in ("anomaly_map", "score"):
        assert _rel(out[key], ref[key].numpy()) <= RTOL, key


@pytest.mark.parametrize("name", FLOAT)
def test_settings_document_describes_the_file(files, made, name):
    path = _file(files, name)
    doc = edge.read_edge_settings(path)
    fmt = name.split("_")[0]
    assert doc["format"] == f"keras_skipae.{fmt}"
    assert doc["threshold"] == pytest.approx(made["threshold"])
    assert doc["scoring"] == ks.ScoringConfig().to_dict()
    assert doc["input"]["image_size"] == [SIZE, SIZE] and doc["input"]["channels"] == 1
    assert doc["runtime"]["batch_size"] == {"litert": 1, "onnx_fixed": 2}.get(name)
    assert doc["runtime"]["onnx_opset"] == (edge.ONNX_OPSET if fmt == "onnx" else None)
    assert doc["verification"]["process"] == "fresh, without keras_skipae"
    for key, diff in doc["verification"]["max_difference"].items():
        assert diff["rel"] <= RTOL, key


def test_onnx_and_openvino_carry_the_document_inside(files):
    onnx = pytest.importorskip("onnx", reason=_SKIP["onnx"])
    path = _file(files, "onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["keras_skipae"])["format"] == "keras_skipae.onnx"
    ov = pytest.importorskip("openvino", reason=_SKIP["openvino"])
    xml = _file(files, "openvino")
    info = ov.Core().read_model(str(xml)).get_rt_info(["keras_skipae"]).astype(str)
    assert json.loads(info)["format"] == "keras_skipae.openvino"
    assert xml.with_suffix(".bin").is_file()


def test_dynamic_range_litert_keeps_the_order_of_the_scores(files, made):
    path = _file(files, "litert_dynamic")
    out = EdgeScorer("litert", path).score(made["images"])
    assert np.isfinite(out["anomaly_map"]).all()
    # The order of the scores, up to a swap of two near-equal ones (rank correlation).
    assert spearmanr(out["score"], made["ref"]["score"]).statistic >= 0.9
    assert _rel(out["score"], made["ref"]["score"]) < 0.05


def test_verify_runs_the_file_without_keras_skipae(files, made, tmp_path):
    path = _file(files, "onnx")
    np.savez(tmp_path / "x.npz", images=made["images"][:2])
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['runtimes', 'onnx', {str(path)!r}, {str(tmp_path / 'x.npz')!r}, "
        f"{str(tmp_path / 'o.npz')!r}]\n"
        f"runpy.run_path({runtimes.__file__!r}, run_name='__main__')\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('keras_skipae', 'keras', 'tensorflow')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=120)
    with np.load(tmp_path / "o.npz") as out:
        assert _rel(out["score"], made["ref"]["score"][:2]) <= RTOL


# --------------------------------------------------------------------------- Detector


@pytest.mark.parametrize("name", FLOAT)
def test_detector_loads_each_format(files, made, name):
    det = ks.Detector.load(_file(files, name))
    assert det.kind == name.split("_")[0] and det.model is None
    assert det.threshold == pytest.approx(made["threshold"])
    assert det.image_size == (SIZE, SIZE) and det.channels == 1
    preds = list(det.predict(made["images"], batch_size=4))
    scores = np.array([p.score for p in preds], np.float32)
    assert _rel(scores, made["ref"]["score"]) <= RTOL
    assert [p.is_anomalous for p in preds] == list(
        made["ref"]["score"] >= np.float32(made["threshold"])
    )
    assert preds[0].anomaly_map.shape == (SIZE, SIZE)


def test_detector_refuses_bad_input_to_an_edge_file(files, made):
    det = ks.Detector.load(_file(files, "litert"))
    rgb = np.repeat(made["images"][:1], 3, axis=-1)
    with pytest.raises(ValueError, match=r"takes 1 channel\(s\)"):
        det.predict(rgb)
    nan = made["images"][:2].copy()
    nan[1, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"finite pixel values.*image\(s\) \[1\]"):
        det.predict(nan)
    with pytest.raises(ValueError, match=r"takes images \[B, 32, 32, 1\].*\(1, 40, 32, 1\)"):
        det.scorer.score(np.zeros((1, 40, 32, 1), np.float32))
    with pytest.raises(ValueError, match="tiling is for run folders"):
        ks.Detector.load(files["litert"], tile_size=16)
    with pytest.raises(ValueError, match="scoring differing in score"):
        ks.Detector.load(files["litert"], scoring={"score": "mean"})


def test_a_missing_runtime_names_the_extra(files, monkeypatch):
    path = _file(files, "onnx")
    real = runtimes.importlib.import_module

    def no_onnxruntime(name, *args):
        if name.split(".")[0] == "onnxruntime":
            raise ModuleNotFoundError("No module named 'onnxruntime'")
        return real(name, *args)

    monkeypatch.setattr(runtimes.importlib, "import_module", no_onnxruntime)
    with pytest.raises(ImportError, match=r'pip install "keras-skipae\[onnx\]"') as info:
        ks.Detector.load(path)
    assert "\n" not in str(info.value)


def test_a_missing_or_damaged_settings_document_is_named(files, tmp_path):
    path = _file(files, "litert")
    copy = tmp_path / "copy.tflite"
    copy.write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no settings document 'copy.tflite.json'"):
        ks.Detector.load(copy)
    edge.settings_path(copy).write_text("{not json")
    with pytest.raises(ValueError, match=r"copy.tflite.json' is damaged"):
        ks.Detector.load(copy)


# --------------------------------------------------------------------------- export errors


def test_export_refuses_bad_arguments(made, tmp_path):
    model = made["model"]
    with pytest.raises(ValueError, match=r"a \.onnx file. Received: path="):
        edge.export_edge(model, tmp_path / "m.tflite", format="onnx")
    with pytest.raises(ValueError, match="Quantisation is for format='litert'"):
        edge.export_edge(model, tmp_path / "m.onnx", format="onnx", quantization="int8")
    with pytest.raises(ValueError, match="calibration=None"):
        edge.export_edge(model, tmp_path / "m.tflite", format="litert", quantization="int8")
    with pytest.raises(ValueError, match="Received: map='mc_dropout'"):
        edge.export_edge(
            model, tmp_path / "m.tflite", format="litert", scoring={"map": "mc_dropout"}
        )
    with pytest.raises(ValueError, match=r"`calibration` images \[N, 32, 32, 1\]"):
        edge.export_edge(
            model, tmp_path / "m.tflite", format="litert", calibration=np.zeros((2, 8, 8, 1))
        )
    with pytest.raises(ValueError, match="Expected `format` to be one of"):
        ks.export(model, tmp_path / "m.x", format="tflite")
    with pytest.raises(ValueError, match="batch_size=0"):
        ks.export(model, tmp_path / "m.onnx", format="onnx", batch_size=0)
    assert not list(tmp_path.iterdir())


def test_export_refuses_to_overwrite_and_a_failed_verify_writes_nothing(
    made, files, monkeypatch, tmp_path
):
    path = _file(files, "litert")
    with pytest.raises(FileExistsError, match="already exists"):
        ks.export(made["model"], path, format="litert")
    real = edge.run_isolated

    def off(*args, **kwargs):
        out = real(*args, **kwargs)
        out["score"] = out["score"] * 1.01
        return out

    monkeypatch.setattr(edge, "run_isolated", off)
    target = tmp_path / "bad.tflite"
    with pytest.raises(RuntimeError, match="'score' differs from the in-process result"):
        ks.export(made["model"], target, format="litert")
    assert not list(tmp_path.iterdir())


def test_a_mixed_precision_model_is_exported_as_its_float32_twin(made):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        bf16 = ks.build_aesc(**TINY["aesc"])
    finally:
        keras.config.set_dtype_policy(previous)
    bf16.set_weights(made["model"].get_weights())
    twin = float32_model(bf16)
    assert twin is not bf16 and {layer.compute_dtype for layer in twin.layers} == {"float32"}
    for a, b in zip(twin.get_weights(), made["model"].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert float32_model(made["model"]) is made["model"]


def test_ks_export_takes_a_run_folder(made, tmp_path):
    _need("litert")
    run = made["run"]
    with pytest.raises(ValueError, match="has no evaluated threshold"):
        ks.export(run, tmp_path / "a.tflite", format="litert", threshold="eval")
    saved = ks.export(run, tmp_path / "sm", format="saved_model", verify=False, jit_compile=False)
    assert ks.export.read_settings(saved)["input"]["image_size"] == [SIZE, SIZE]
    assert ks.export(run, tmp_path / "m.keras", format="keras").is_file()
    # int8 without calibration images: the run's training split (its config's data root)
    path = ks.export(run, tmp_path / "i8.tflite", format="litert", quantization="int8")
    doc = edge.read_edge_settings(path)
    assert doc["verification"]["images"] == 8 and doc["metadata"]["run_dir"] == str(run)
    det = ks.Detector.load(saved, threshold=1.0)
    assert type(det.scorer).__name__ == "SavedModelScorer"
    keras_det = ks.Detector(made["model"], threshold=1.0)
    assert type(keras_det.scorer).__name__ == "KerasScorer"
    a = [p.score for p in det.predict(made["images"])]
    b = [p.score for p in keras_det.predict(made["images"])]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_ks_export_is_the_module_and_the_entry_point():
    assert callable(ks.export)
    assert ks.export.export_saved_model is ks.export_saved_model
    assert set(edge.EDGE_FORMATS) <= set(ks.export.FORMATS)


# --------------------------------------------------------------------------- CLI


def test_cli_exports_int8_litert_from_the_run_and_predicts_with_it(
    made, synthetic_root, tmp_path, capsys
):
    _need("litert")
    out = tmp_path / "int8.tflite"
    rc = cli.main(
        [
            "export",
            str(made["run"]),
            str(out),
            "--format",
            "litert",
            "--quantization",
            "int8",
            "--threshold",
            str(made["threshold"]),
        ]
    )
    assert rc == 0 and "wrote" in capsys.readouterr().out
    doc = edge.read_edge_settings(out)
    assert doc["runtime"]["input_dtype"] == "uint8" and doc["runtime"]["quantization"] == "int8"
    assert doc["verification"]["images"] == 8  # the run's training split, first 8
    scorer = EdgeScorer("litert", out)
    assert scorer.runner.input_dtype == np.uint8
    scale, zero = scorer.runner._quant
    assert zero == 0 and scale == pytest.approx(1 / 255, rel=1e-6)
    got = scorer.score(made["images"])["score"]
    # int8 keeps the order of the scores up to swaps of near-equal ones (rank correlation).
    assert spearmanr(got, made["ref"]["score"]).statistic >= 0.85

    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(made["images"]):
        tf.io.write_file(
            str(folder / f"{i}.png"), tf.io.encode_png((image * 255).round().astype(np.uint8))
        )
    rc = cli.main(["predict", str(out), str(folder), "--out", str(tmp_path / "pred"), "--quiet"])
    assert rc == 0
    with open(tmp_path / "pred" / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(made["images"])
    assert all(float(r["score"]) >= 0 for r in rows)


def test_cli_export_refuses_quantising_onnx(made, tmp_path, capsys):
    rc = cli.main(
        [
            "export",
            str(made["run"]),
            str(tmp_path / "m.onnx"),
            "--format",
            "onnx",
            "--quantization",
            "int8",
        ]
    )
    assert rc == 2
    assert "--quantization int8 is for --format litert" in capsys.readouterr().err
