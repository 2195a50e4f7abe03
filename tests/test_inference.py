"""Tests for keras_skipae.inference (ks.Detector) and ``keras-skipae predict``.

One tiny run (32 px, two training steps) is made per module, with a threshold written
the way ``keras-skipae evaluate`` stores it, then exported as a SavedModel and a
``.keras`` file. References are :func:`keras_skipae.scoring.compute` on the same
images and OpenCV's bilinear resize.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY

import keras_skipae as ks
import keras_skipae_cli as cli
from keras_skipae import scoring
from keras_skipae.apps.predict import predict_to_folder
from keras_skipae.data import DatasetError, folder_dataset, load_image
from keras_skipae.runs import RunFolder

ATOL = 1e-5
SIZE = 32

pytestmark = pytest.mark.slow  # the module's fixture trains a run (two steps)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    run_dir = root / "run"
    run = ks.train(
        "aesc",
        tf.data.Dataset.from_tensor_slices(rng.random((8, SIZE, SIZE, 1), dtype=np.float32)),
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
        data_config={"image_size": SIZE, "color_mode": "grayscale"},
    )
    images = root / "images"
    # Original sizes: larger (48x40), equal (32x32, RGB read as grayscale), mixed (24x36).
    _png(images / "a.png", (rng.random((48, 40)) * 255).astype(np.uint8))
    _png(images / "sub" / "b.png", (rng.random((32, 32, 3)) * 255).astype(np.uint8))
    _png(images / "sub" / "deeper" / "c.png", (rng.random((24, 36)) * 255).astype(np.uint8))
    _png(images / ".hidden" / "h.png", np.zeros((8, 8), np.uint8))  # skipped
    (images / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 40)
    (images / "notes.txt").write_text("not an image")
    good = [images / "a.png", images / "sub" / "b.png", images / "sub" / "deeper" / "c.png"]
    at_size = np.stack([load_image(p, image_size=SIZE).numpy() for p in good])
    ref = {k: v.numpy() for k, v in scoring.compute(run.model, at_size).items()}
    scores = np.sort(ref["score"])
    threshold = float((scores[0] + scores[1]) / 2)  # one normal, two anomalous
    metrics = RunFolder(run_dir).metrics_path
    metrics.parent.mkdir(parents=True)
    metrics.write_text(
        json.dumps({"threshold": threshold, "settings": ks.ScoringConfig().to_dict()})
    )
    saved = root / "saved"
    ks.export_saved_model(run.model, saved, threshold=threshold, verify=False)
    keras_file = root / "model.keras"
    ks.export_keras(run.model, keras_file)
    return {
        "root": root,
        "run": run_dir,
        "saved": saved,
        "keras": keras_file,
        "model": run.model,
        "images": images,
        "good": [str(p) for p in good],
        "ref": ref,
        "threshold": threshold,
    }


# Sorted recursive listing: a.png, bad.png, notes.txt, sub/b.png, sub/deeper/c.png.
ORDER = ["a.png", "bad.png", "notes.txt", "sub/b.png", "sub/deeper/c.png"]


def _paths(made):
    return [str(made["images"] / name) for name in ORDER]


def test_run_folder_and_its_saved_model_agree(made):
    run = ks.Detector.load(made["run"])
    saved = ks.Detector.load(made["saved"])
    assert (run.kind, saved.kind) == ("run", "saved_model")
    assert run.threshold == pytest.approx(made["threshold"]) == saved.threshold
    assert run.threshold_source.endswith("metrics.json")
    a = list(run.predict(made["images"], batch_size=2, on_error="report"))
    b = list(saved.predict(made["images"], batch_size=2, on_error="report"))
    assert [p.path for p in a] == [p.path for p in b] == _paths(made)
    assert [p.index for p in a] == list(range(5))
    for p, q in zip(a, b):
        assert p.error == q.error
        if not p.ok:
            assert p.score is None and p.anomaly_map is None
            continue
        np.testing.assert_allclose(p.score, q.score, atol=ATOL)
        np.testing.assert_allclose(p.anomaly_map, q.anomaly_map, atol=ATOL)
        np.testing.assert_allclose(p.reconstruction, q.reconstruction, atol=ATOL)
        assert p.is_anomalous == q.is_anomalous == (np.float32(p.score) >= run.threshold)
    assert [p.is_anomalous for p in a if p.ok].count(True) == 2
    assert "not a valid PNG" in a[1].error and "not an image file" in a[2].error


def test_predictions_equal_compute_with_maps_at_the_original_resolution(made):
    det = ks.Detector.load(made["run"])
    got = {p.path: p for p in det.predict(made["good"])}
    ref = made["ref"]
    for i, path in enumerate(made["good"]):
        p = got[path]
        original = load_image(path).numpy()
        assert p.anomaly_map.shape == original.shape[:2]
        np.testing.assert_array_equal(p.image, original)
        np.testing.assert_allclose(p.score, ref["score"][i], atol=ATOL)
        np.testing.assert_allclose(p.reconstruction, ref["reconstruction"][i], atol=ATOL)
        h, w = original.shape[:2]
        if h >= SIZE and w >= SIZE:  # enlarging: OpenCV's bilinear is the reference
            want = cv2.resize(ref["anomaly_map"][i], (w, h), interpolation=cv2.INTER_LINEAR)
        else:  # shrinking one side: antialiased bilinear, as the datasets resize images
            want = tf.image.resize(
                ref["anomaly_map"][i][..., None], (h, w), "bilinear", antialias=True
            ).numpy()[..., 0]
        np.testing.assert_allclose(p.anomaly_map, want, atol=ATOL)
    assert got[made["good"][0]].anomaly_map.shape == (48, 40)
    assert not np.allclose(  # the map was really resized, not cropped or padded
        got[made["good"][0]].anomaly_map[:SIZE, :SIZE], ref["anomaly_map"][0], atol=1e-3
    )


def test_every_input_kind(made, images):
    det = ks.Detector.load(made["keras"], threshold=made["threshold"])
    x = images(3, (SIZE, SIZE, 1), seed=5)
    want = scoring.compute(made["model"], x)["score"].numpy()

    def scores(source, **kw):
        return np.array([p.score for p in det.predict(source, **kw)])

    np.testing.assert_allclose(scores(x), want, atol=ATOL)
    np.testing.assert_allclose(scores(x[1]), want[1:2], atol=ATOL)  # one [H, W, C] image
    uint8 = np.round(x * 255).astype(np.uint8)
    want_u8 = scoring.compute(made["model"], uint8)["score"].numpy()
    np.testing.assert_allclose(scores(uint8), want_u8, atol=ATOL)
    ds = tf.data.Dataset.from_tensor_slices(x)
    np.testing.assert_allclose(scores(ds), want, atol=ATOL)
    np.testing.assert_allclose(scores(ds.batch(2), batch_size=2), want, atol=ATOL)
    # One file, as str and Path; a list of files; a folder (recursively).
    ref = made["ref"]["score"]
    np.testing.assert_allclose(scores(made["good"][1]), ref[1:2], atol=ATOL)
    np.testing.assert_allclose(scores(made["images"] / "sub"), ref[[1, 2]], atol=ATOL)
    np.testing.assert_allclose(scores(made["good"][::-1]), ref[::-1], atol=ATOL)
    # The datasets' dicts keep their paths.
    folder = folder_dataset(made["images"] / "sub", image_size=None)
    got = list(det.predict(folder.batch(2)))
    assert [p.path for p in got] == [made["good"][1]]
    np.testing.assert_allclose(got[0].score, ref[1], atol=ATOL)


def test_streams_one_batch_at_a_time(made, images, monkeypatch):
    det = ks.Detector.load(made["keras"], threshold=made["threshold"])
    calls = []
    score_batch = det.scorer.score

    def spy(batch):
        calls.append(len(batch))
        return score_batch(batch)

    monkeypatch.setattr(det.scorer, "score", spy)
    stream = det.predict(images(5, (SIZE, SIZE, 1)), batch_size=2)
    assert stream.total == len(stream) == 5 and calls == []
    first = next(stream)
    assert first.index == 0 and calls == [2]
    assert [p.index for p in stream] == [1, 2, 3, 4] and calls == [2, 2, 1]
    # Bad files do not count towards a batch, and keep their place in the order.
    calls.clear()
    results = list(det.predict(made["images"], batch_size=2, on_error="report"))
    assert calls == [2, 1] and [p.ok for p in results] == [True, False, False, True, True]


def test_bad_inputs_are_refused_clearly(made, images):
    det = ks.Detector.load(made["keras"], threshold=made["threshold"])
    x = images(2, (SIZE, SIZE, 1))
    x[1, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match=r"finite .* image\(s\) \[1\]"):
        det.predict(x)
    with pytest.raises(ValueError, match=r"in \[0, 1\].*\[0, 255\]"):
        det.predict(images(1, (SIZE, SIZE, 1)) * 0 + np.float32(255))
    with pytest.raises(ValueError, match="1 channel"):
        det.predict(images(1, (SIZE, SIZE, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        det.predict(x[:1], batch_size=0)
    with pytest.raises(ValueError, match="on_error"):
        det.predict(x[:1], on_error="ignore")
    with pytest.raises(TypeError, match="x of type int"):
        det.predict(3)
    with pytest.raises(FileNotFoundError, match="no_such.png"):
        det.predict([made["good"][0], made["root"] / "no_such.png"])
    with pytest.raises(DatasetError, match="bad.png"):
        list(det.predict(made["images"]))  # on_error="raise" by default
    with pytest.warns(UserWarning, match="Skipped"):
        kept = list(det.predict(made["images"], on_error="skip"))
    assert [p.path for p in kept] == [_paths(made)[i] for i in (0, 3, 4)]
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        ks.Detector.load(made["images"])
    with pytest.raises(ValueError, match="exported with"):
        ks.Detector.load(made["saved"], scoring=ks.ScoringConfig(map="ssim"))
    with pytest.raises(ValueError, match="finite `threshold`"):
        ks.Detector.load(made["keras"], threshold=float("nan"))


@pytest.mark.parametrize(
    "mode, problem",
    [
        ("cmyk", r"is damaged: data\.color_mode must be 'grayscale' or 'rgb'"),
        ("rgb", r"records color_mode='rgb' \(3 channel\(s\)\), but the run's model takes 1"),
    ],
)
def test_a_run_config_with_a_bad_color_mode_is_refused_like_evaluate_does(
    made, tmp_path, mode, problem
):
    from keras_skipae.apps import workflows

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    (run.path / "model.keras").write_bytes(RunFolder(made["run"]).model_path().read_bytes())
    config = RunFolder(made["run"]).config()
    config["data"]["color_mode"] = mode
    run.config_path.write_text(json.dumps(config))
    named = rf"The run config '.*run/config\.json' {problem}.*Received: color_mode='{mode}'"
    with pytest.raises(ValueError, match=named):
        ks.Detector.load(run.path)
    with pytest.raises(ValueError, match=named):
        workflows.evaluate_run(run.path, data_root=tmp_path, category="mesh")
    with pytest.raises(ValueError, match=named):
        workflows.export_run(run.path, tmp_path / "export")


def test_a_keras_file_has_no_threshold_unless_given(made):
    with pytest.warns(UserWarning, match="no threshold.*a .keras file holds the model only"):
        det = ks.Detector.load(made["keras"])
    assert det.threshold is None and det.scoring == ks.ScoringConfig()
    assert "threshold=None (no decision" in repr(det)
    assert all(p.is_anomalous is None for p in det.predict(made["good"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a threshold: no warning
        det = ks.Detector.load(made["keras"], threshold=made["threshold"])
    assert f"threshold={made['threshold']:.6g} (explicit)" in repr(det)
    decisions = [p.is_anomalous for p in det.predict(made["good"])]
    assert decisions == list(made["ref"]["score"] >= np.float32(made["threshold"]))


# --------------------------------------------------------------------------- CLI


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_predict_writes_csv_maps_and_fails_on_anomaly(made, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", str(made["saved"]), str(made["images"]), "--out", str(out), "--quiet"]
    rc = cli.main([*argv, "--save-maps", "--overlay", "--fail-on-anomaly", "--batch-size", "2"])
    assert rc == 3
    printed = capsys.readouterr().out
    assert "scored 3 of 5 images" in printed and "2 anomalous, 1 normal, 2 unreadable" in printed
    assert "top 3 by score:" in printed
    rows = _rows(out / "predictions.csv")
    assert [r["path"] for r in rows] == _paths(made)
    assert [r["decision"] for r in rows].count("anomalous") == 2
    assert rows[1]["decision"] == "error" and "not a valid PNG" in rows[1]["error"]
    by_path = {r["path"]: r for r in rows}
    for i, path in enumerate(made["good"]):
        row = by_path[path]
        assert float(row["score"]) == pytest.approx(made["ref"]["score"][i], abs=ATOL)
        assert float(row["threshold"]) == pytest.approx(made["threshold"])
        original = cv2.imread(path, cv2.IMREAD_UNCHANGED).shape[:2]
        heat = cv2.imread(str(out / row["map_file"]))
        overlay = cv2.imread(str(out / row["overlay_file"]))
        assert heat.shape[:2] == original == overlay.shape[:2]
        assert float(row["map_min"]) <= float(row["score"]) + ATOL
    # No clobbering without --overwrite (answered before TensorFlow: exit code 2).
    before = (out / "predictions.csv").read_bytes()
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "predictions.csv").read_bytes() == before
    # --overwrite replaces the CSV and removes the maps it listed; no anomaly: exit 0.
    rc = cli.main([*argv, "--overwrite", "--threshold", "1e9", "--fail-on-anomaly"])
    assert rc == 0
    rows = _rows(out / "predictions.csv")
    assert {r["decision"] for r in rows} == {"normal", "error"}
    assert not any((out / "maps").iterdir()) and not any((out / "overlays").iterdir())


def test_cli_predict_refuses_fail_on_anomaly_without_a_threshold(made, tmp_path, capsys):
    argv = ["predict", str(made["keras"]), made["good"][0], "--out", str(tmp_path / "o")]
    assert cli.main([*argv, "--fail-on-anomaly"]) == 2
    assert "needs a threshold" in capsys.readouterr().err
    assert cli.main([*argv, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "note: Detector(keras" in out and "no threshold: no decisions" in out
    assert _rows(tmp_path / "o" / "predictions.csv")[0]["decision"] == ""


# --------------------------------------------------------------------------- limits, CSV, resume


def test_an_image_over_max_pixels_is_a_bad_file_found_from_its_header(made, tmp_path):
    from harness import png_declaring

    bomb = png_declaring(tmp_path / "bomb.png", 100000, 100000)
    det = ks.Detector.load(made["keras"], threshold=made["threshold"])
    with pytest.raises(DatasetError, match=r"bomb\.png' declares 100000x100000 .*max_pixels"):
        list(det.predict([made["good"][0], bomb]))
    results = list(det.predict([bomb, made["good"][0]], on_error="report"))
    assert [p.ok for p in results] == [False, True]
    assert "more than max_pixels=67,108,864" in results[0].error
    # A lower limit refuses the 48x40 image; None reads any size.
    [small] = det.predict(made["good"][0], on_error="report", max_pixels=48 * 40 - 1)
    assert not small.ok and "declares 40x48 pixels" in small.error
    assert next(iter(det.predict(made["good"][0], max_pixels=None))).ok
    with pytest.raises(ValueError, match="max_pixels"):
        det.predict(made["good"][0], max_pixels=0)


def test_cli_predict_writes_an_error_row_for_a_png_bomb_and_goes_on(made, tmp_path, capsys):
    from harness import png_declaring

    bomb = png_declaring(tmp_path / "in" / "bomb.png", 100000, 100000)
    out = tmp_path / "out"
    argv = ["predict", str(made["keras"]), str(bomb), made["good"][0], "--out", str(out)]
    assert cli.main([*argv, "--threshold", "0.5", "--quiet"]) == 0
    rows = _rows(out / "predictions.csv")
    assert rows[0]["decision"] == "error" and "declares 100000x100000" in rows[0]["error"]
    assert rows[1]["decision"] == "normal"
    assert "scored 1 of 2 images" in capsys.readouterr().out
    # --max-pixels raises (or lowers) the limit; it must be at least 1.
    argv = [*argv, "--threshold", "0.5", "--quiet", "--overwrite"]
    assert cli.main([*argv, "--max-pixels", str(48 * 40 - 1)]) == 0
    assert "declares 40x48 pixels" in _rows(out / "predictions.csv")[1]["error"]
    assert cli.main([*argv, "--max-pixels", "0"]) == 2
    assert "--max-pixels must be at least 1" in capsys.readouterr().err


FORMULAS = ["=cmd.png", "+1+1.png", "@SUM(A1).png", "-x.png", "plain.png"]


def test_cli_predict_escapes_formula_cells_and_keeps_raw_paths(made, tmp_path, monkeypatch):
    from keras_skipae.apps import predict

    folder = tmp_path / "in"
    image = cv2.imread(made["good"][0], cv2.IMREAD_UNCHANGED)
    for name in FORMULAS:
        _png(folder / name, image)
    (folder / "=bad.png").write_bytes(b"not a png at all, but named like one" * 2)
    monkeypatch.chdir(folder)
    out = tmp_path / "out"
    argv = ["predict", str(made["keras"]), ".", "--out", str(out), "--threshold", "0.5"]
    assert cli.main([*argv, "--quiet", "--save-maps"]) == 0
    raw = sorted(["=bad.png", *FORMULAS])  # the paths as read: "./=cmd.png" is "=cmd.png"
    rows = _rows(out / "predictions.csv")
    assert [r["path"] for r in rows] == [
        ("'" + name if name[0] in "=+-@" else name) for name in raw
    ]
    bad = rows[raw.index("=bad.png")]
    assert bad["decision"] == "error" and bad["error"].startswith("'=bad.png'")
    assert all(r["map_file"].startswith("maps/") for r in rows if r["decision"] != "error")
    sidecar = json.loads((out / "predictions.paths.json").read_text(encoding="utf-8"))
    assert sidecar == {"csv": "predictions.csv", "paths": raw}
    # The rule, cell by cell: text starting like a formula, tabs and carriage returns.
    assert [predict.safe_cell(t) for t in ("=1", "+1", "-1", "@a", "\tx", "\rx", "a=b", "")] == [
        "'=1",
        "'+1",
        "'-1",
        "'@a",
        "'\tx",
        "'\rx",
        "a=b",
        "",
    ]


def _interrupt_after(monkeypatch, n):
    """Detector.predict streams that raise KeyboardInterrupt before their ``n``-th result."""
    from keras_skipae.inference.detector import Detector, Predictions

    real = Detector.predict

    def predict(self, *args, **kwargs):
        stream = real(self, *args, **kwargs)

        def interrupted():
            for i, p in enumerate(stream):
                if i == n:
                    raise KeyboardInterrupt
                yield p

        return Predictions(interrupted(), stream.total)

    monkeypatch.setattr(Detector, "predict", predict)


def _tree(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_cli_predict_resumes_an_interrupted_run(made, tmp_path, monkeypatch, capsys):
    ref, out = tmp_path / "ref", tmp_path / "out"
    argv = [
        "predict",
        str(made["keras"]),
        str(made["images"]),
        "--threshold",
        str(made["threshold"]),
    ]
    argv += ["--save-maps", "--overlay", "--batch-size", "2", "--quiet"]
    assert cli.main([*argv, "--out", str(ref)]) == 0
    with monkeypatch.context() as m:
        _interrupt_after(m, 4)  # a, bad, notes, b (2 scored: one batch) kept; c not scored
        assert cli.main([*argv, "--out", str(out)]) == 130
    assert not (out / "predictions.csv").exists()
    assert (out / ".predictions.resume.json").is_file()
    capsys.readouterr()
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)  # the rerun scores only c: it is not interrupted
        assert cli.main([*argv, "--out", str(out)]) == 0
    assert "resumed an interrupted run after 4 of 5 rows" in capsys.readouterr().out
    assert _tree(out) == _tree(ref)  # the same CSV, sidecar, maps and overlays; nothing else
    # Interrupted within the first batch: nothing is kept, and the rerun starts over.
    shutil.rmtree(out)
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        assert cli.main([*argv, "--out", str(out)]) == 130
    assert (out / ".predictions.partial.jsonl").read_bytes() == b""
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert _tree(out) == _tree(ref)


def test_cli_predict_refuses_to_resume_with_other_settings(made, tmp_path, monkeypatch, capsys):
    images, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(made["images"], images)
    argv = ["predict", str(made["keras"]), str(images), "--out", str(out), "--quiet"]
    argv += ["--threshold", str(made["threshold"]), "--save-maps", "--batch-size", "1"]
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)  # a (its own batch) kept
        assert cli.main(argv) == 130
    kept = sorted(p.name for p in (out / "maps").iterdir())
    assert kept == ["00000_a.png"]
    capsys.readouterr()
    # Other settings: refused before TensorFlow (exit 2), the interrupted run left as it was.
    assert cli.main([*argv, "--overlay"]) == 2
    err = capsys.readouterr().err
    assert "holds an interrupted prediction with other settings (overlay)" in err
    assert "--overwrite" in err
    with pytest.raises(FileExistsError, match=r"other settings \(threshold\)"):
        predict_to_folder(made["keras"], [str(images)], out, threshold=0.5, save_maps=True)
    # Other input files (one added before a.png): refused after listing them.
    _png(images / "0.png", cv2.imread(made["good"][0], cv2.IMREAD_UNCHANGED))
    with pytest.raises(FileExistsError, match=r"other settings \(the input files\)"):
        predict_to_folder(
            made["keras"], [str(images)], out, threshold=made["threshold"], save_maps=True
        )
    assert sorted(p.name for p in (out / "maps").iterdir()) == kept
    # --overwrite starts again: the interrupted run's files go, stale temporaries too.
    stale = [out / ".predictions.csv.tmp-x1.csv", out / "maps" / ".00003_b.png.tmp-x2.png"]
    for path in stale:
        path.write_bytes(b"left by a SIGKILL")
    assert cli.main([*argv, "--overlay", "--overwrite"]) == 0
    assert not any(path.exists() for path in stale)
    assert not (out / ".predictions.resume.json").exists()
    assert not (out / ".predictions.partial.jsonl").exists()
    assert [r["path"] for r in _rows(out / "predictions.csv")][:2] == [
        str(images / "0.png"),
        str(images / "a.png"),
    ]
    assert sorted(p.name for p in (out / "maps").iterdir()) == [
        "00000_0.png",
        "00001_a.png",
        "00004_b.png",
        "00005_c.png",
    ]


KILL_IN_FINALISE = """
import os, signal, sys
from keras_skipae.apps import predict
real, calls = predict.safe_cell, []
def killing(text):
    calls.append(text)
    if len(calls) == 3:  # the CSV's temporary file is open: SIGKILL leaves it behind
        os.kill(os.getpid(), signal.SIGKILL)
    return real(text)
predict.safe_cell = killing
import keras_skipae_cli
sys.exit(keras_skipae_cli.main(sys.argv[1:]))
"""


def test_cli_predict_after_a_sigkill_removes_the_temporaries_and_finishes(made, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    argv = [
        "predict",
        str(made["keras"]),
        str(made["images"]),
        "--threshold",
        str(made["threshold"]),
    ]
    argv += ["--save-maps", "--quiet"]
    assert cli.main([*argv, "--out", str(ref)]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_FINALISE, *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert list(out.glob(".predictions.csv.tmp-*.csv")), sorted(p.name for p in out.iterdir())
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert _tree(out) == _tree(ref)  # no temporary file, no partial rows: the same outputs


def test_cli_predict_fail_on_anomaly_needs_min_scored_images(made, tmp_path, capsys):
    empty, unreadable = tmp_path / "empty", tmp_path / "unreadable"
    empty.mkdir()
    unreadable.mkdir()
    (unreadable / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 40)
    (unreadable / "y.txt").write_text("not an image")
    base = ["predict", str(made["keras"]), "--threshold", "1e9", "--quiet", "--fail-on-anomaly"]
    for i, folder in enumerate((empty, unreadable)):
        assert cli.main([*base, str(folder), "--out", str(tmp_path / f"o{i}")]) == 4
        assert "scored 0 image(s), fewer than --min-scored 1" in capsys.readouterr().err
    argv = [*base, made["good"][0], str(unreadable), "--out", str(tmp_path / "o2")]
    assert cli.main([*argv, "--min-scored", "2"]) == 4
    assert cli.main([*argv, "--min-scored", "1", "--overwrite"]) == 0
    assert cli.main([*base, str(empty), "--out", str(tmp_path / "o3"), "--min-scored", "0"]) == 0
    capsys.readouterr()
    assert cli.main(["predict", str(made["keras"]), str(empty), "--min-scored", "2"]) == 2
    assert "--min-scored needs --fail-on-anomaly" in capsys.readouterr().err
    assert cli.main([*base, str(empty), "--min-scored", "-1"]) == 2
    assert "--min-scored must be at least 0" in capsys.readouterr().err


def test_the_launcher_builds_the_settings_predict_resumes_with():
    from keras_skipae.apps import predict
    from keras_skipae_cli import checks
    from keras_skipae_cli.parser import MAX_PIXELS

    assert MAX_PIXELS == ks.data.DEFAULT_MAX_PIXELS
    argv = ["predict", "m.keras", "in/", "b.png", "--threshold", "0.25", "--overlay"]
    argv += ["--tile-size", "32", "--tile-overlap", "8", "--best", "--max-pixels", "99"]
    args = cli.build_parser().parse_args(argv)
    args.threshold = checks.parse_threshold(args.threshold, allow_eval=False)
    expected = predict.resume_settings(
        "m.keras",
        ["in/", "b.png"],
        threshold=0.25,
        overlay=True,
        best=True,
        tile_size=32,
        tile_overlap=8,
        max_pixels=99,
    )
    assert checks.predict_resume_settings(args) == expected
    args = cli.build_parser().parse_args(["predict", "m.keras", "x.png"])
    assert checks.predict_resume_settings(args) == predict.resume_settings("m.keras", ["x.png"])


def test_evaluate_run_refuses_images_over_max_pixels(made, synthetic_root, tmp_path):
    from keras_skipae.apps import workflows

    with pytest.raises(DatasetError, match=r"declares 32x32 pixels \(1,024\), more than max_pi"):
        workflows.evaluate_run(
            made["run"],
            data_root=synthetic_root,
            category="mesh",
            out_dir=tmp_path / "evaluation",
            max_pixels=1000,
        )
    assert not (tmp_path / "evaluation").exists()


def _spy(monkeypatch, func):
    """Replaces ``func`` by a recording wrapper in every keras_skipae module that holds it
    (its own module and every module that imported it by name); returns the calls."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        return func(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("keras_skipae") and getattr(module, func.__name__, None) is func:
            monkeypatch.setattr(module, func.__name__, wrapper)
    return calls


def test_the_threshold_and_tiling_checks():
    from keras_skipae.ops.tiling import check_tiling
    from keras_skipae.scoring import check_threshold

    assert check_tiling(None) is None and check_tiling(None, 0) is None
    assert check_tiling(None, None) is None and check_tiling(16, None) == (16, 0)
    assert check_tiling(np.int64(16), 4) == (16, 4)
    with pytest.raises(ValueError, match="needs a `tile_size`. Received: tile_overlap=3"):
        check_tiling(None, 3)
    with pytest.raises(ValueError, match="int >= 1. Received: tile_size=None"):
        check_tiling(None, required=True)
    assert check_threshold(None) is None and check_threshold("0.5") == 0.5
    assert type(check_threshold(np.float32(0.25))) is float
    with pytest.raises(ValueError, match=r"finite `threshold`\. Received: threshold=None"):
        check_threshold(None, required=True)
    with pytest.raises(ValueError, match="finite `threshold` or None. Received: threshold='x'"):
        check_threshold("x")


def test_every_caller_checks_threshold_and_tiling_through_the_one_function(
    made, tmp_path, monkeypatch
):
    """evaluate, the metrics, Detector, the exports, export_run and ``keras-skipae predict``
    check ``threshold`` with scoring.check_threshold and the tiling with ops.tiling.check_tiling:
    a caller that kept its own copy would not reach the spies."""
    from keras_skipae.apps import workflows
    from keras_skipae.evaluation import metrics
    from keras_skipae.export import edge
    from keras_skipae.ops.tiling import check_tiling
    from keras_skipae.scoring.threshold import check_threshold

    thresholds = _spy(monkeypatch, check_threshold)
    tilings = _spy(monkeypatch, check_tiling)
    model, dummy = made["model"], tf.data.Dataset.from_tensors({"image": 0})

    def refuses(call, spied, bad, match):
        spied.clear()
        with pytest.raises(ValueError, match=match):
            call()
        assert any(bad in args or (args and args[0] is bad) for args in spied), call

    nan, inf = float("nan"), float("inf")
    finite = "finite `threshold`"
    refuses(lambda: ks.evaluate(model, dummy, threshold=nan), thresholds, nan, finite)
    refuses(lambda: metrics.precision_recall_at([0, 1], [0.1, 0.2], inf), thresholds, inf, finite)
    refuses(lambda: ks.Detector(model, threshold=inf), thresholds, inf, finite)
    refuses(
        lambda: ks.export_saved_model(model, tmp_path / "a", threshold=inf), thresholds, inf, finite
    )
    refuses(
        lambda: edge.export_edge(model, tmp_path / "a.tflite", format="litert", threshold=nan),
        thresholds,
        nan,
        finite,
    )
    refuses(
        lambda: workflows.export_run(made["run"], tmp_path / "b", threshold=inf),
        thresholds,
        inf,
        finite,
    )
    overlap = "needs a `tile_size`"
    refuses(lambda: ks.evaluate(model, dummy, tile_overlap=3), tilings, 3, overlap)
    refuses(lambda: ks.Detector(model, tile_overlap=3, threshold=1.0), tilings, 3, overlap)
    refuses(lambda: ks.export_saved_model(model, tmp_path / "c", tile_size=0), tilings, 0, "=0")
    refuses(lambda: ks.Detector.load(made["saved"], tile_overlap=3), tilings, 3, overlap)
    # keras-skipae predict with valid values: the Detector's checks see them.
    thresholds.clear(), tilings.clear()
    argv = ["predict", str(made["run"]), made["good"][0], "--out", str(tmp_path / "p")]
    assert cli.main([*argv, "--threshold", "0.25", "--tile-size", str(SIZE), "--quiet"]) == 0
    assert (0.25,) in thresholds
    assert any(args[:2] == (SIZE, None) for args in tilings)


def test_a_detector_wraps_any_scorer(made):
    """Detector(scorer=...) scores with the scorer it is given (here the SavedModel's, as
    Detector.load opens it); a model and a scorer, or a scorer with a size, are refused."""
    from keras_skipae.inference import SavedModelScorer

    scorer = SavedModelScorer.open(made["saved"], image_size=SIZE, channels=1)
    det = ks.Detector(scorer=scorer, threshold=made["threshold"], kind="saved_model")
    assert det.scorer is scorer and det.model is None
    assert (det.image_size, det.channels, det.tiling) == ((SIZE, SIZE), 1, None)
    loaded = ks.Detector.load(made["saved"])
    images = made["images"] / "a.png"
    want = [p.score for p in loaded.predict(images)]
    np.testing.assert_allclose([p.score for p in det.predict(images)], want, atol=ATOL)
    with pytest.raises(ValueError, match="a Keras `model` or a `scorer`. Received: both"):
        ks.Detector(made["model"], scorer=scorer, threshold=1.0)
    with pytest.raises(ValueError, match="Received: model=None"):
        ks.Detector(threshold=1.0)
    with pytest.raises(ValueError, match="A scorer fixes its image size and tiling"):
        ks.Detector(scorer=scorer, threshold=1.0, image_size=SIZE)
    with pytest.raises(ValueError, match="A scorer fixes its image size and tiling"):
        ks.Detector(scorer=scorer, threshold=1.0, tile_size=SIZE)
