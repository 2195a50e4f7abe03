"""End-to-end tests of keras_skipae.evaluate on tiny synthetic sets."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_skipae import scoring
from keras_skipae.evaluation import OUTPUT_FILES, EvaluationResult, evaluate, metrics

SIZE = 32


def _constant_model(channels=1):
    """Reconstructs every image as flat grey 0.5: the residual is |x - 0.5|."""
    inp = keras.Input((SIZE, SIZE, channels))
    out = keras.layers.Rescaling(scale=0.0, offset=0.5, name="out")(inp)
    return keras.Model(inp, out, name="constant")


def _synthetic(n_good=6, n_blob=4, n_line=3, seed=0, channels=1):
    """Good images: 0.5 + small noise. Defects: a bright blob or a dark line, with masks."""
    rng = np.random.default_rng(seed)
    n = n_good + n_blob + n_line
    images = 0.5 + 0.03 * rng.standard_normal((n, SIZE, SIZE, channels))
    masks = np.zeros((n, SIZE, SIZE, 1), "float32")
    types = ["good"] * n_good + ["blob"] * n_blob + ["line"] * n_line
    for i in range(n_good, n):
        y, x = rng.integers(4, SIZE - 12, 2)
        if types[i] == "blob":
            masks[i, y : y + 7, x : x + 7] = 1
            images[i, y : y + 7, x : x + 7] = 0.95
        else:
            masks[i, y, x : x + 10] = 1
            images[i, y, x : x + 10] = 0.05
    images = np.clip(images, 0, 1).astype("float32")
    labels = np.array([0 if t == "good" else 1 for t in types], "int32")
    paths = [f"img_{i:03d}.png" for i in range(n)]
    return {"image": images, "mask": masks, "label": labels, "defect_type": types, "path": paths}


def _dataset(arrays):
    return tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in arrays.items()})


def _good_val(seed=1, n=8):
    arrays = _synthetic(n_good=n, n_blob=0, n_line=0, seed=seed)
    return _dataset(arrays), arrays


def test_evaluate_detects_known_defects_and_uses_good_val_threshold():
    model = _constant_model()
    test = _synthetic()
    val_ds, val = _good_val()
    result = evaluate(model, _dataset(test), val_data=val_ds, batch_size=4, progress=False)
    assert isinstance(result, EvaluationResult)
    assert (result.n_images, result.n_good, result.n_defective) == (13, 6, 7)
    assert result.image_auroc == pytest.approx(1.0)
    assert result.pixel_auroc > 0.9 and result.aupro > 0.5
    assert set(result.per_defect) == {"blob", "line"}
    assert result.per_defect["blob"]["n_images"] == 6 + 4
    # The threshold is the 99th percentile of the *validation* scores, same recipe.
    val_scores = scoring.compute(model, val["image"])["score"].numpy()
    assert result.threshold_source == "val_data"
    assert result.threshold == pytest.approx(np.percentile(val_scores, 99.0), rel=1e-6)
    p, r = metrics.precision_recall_at(result.labels, result.scores, result.threshold)
    assert (result.precision, result.recall) == (p, r)
    assert result.settings["map"] == "residual" and result.settings["n_val_good"] == 8
    assert result.settings["smoothing"] == scoring.DEFAULT_SMOOTHING
    lines = result.summary().splitlines()
    assert lines[0].startswith("13 test images (6 good, 7 defective); map=residual")
    assert lines[1].split() == ["image", "AUROC", "pixel", "AUROC", "AUPRO", "F1-max", "recall"]
    row = lambda m: [f"{m[k]:5.3f}" for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max")]  # noqa: E731
    assert lines[2].split() == ["all", *row(vars(result)), f"{result.recall:5.3f}"]
    assert lines[3].split()[:5] == ["blob", *row(result.per_defect["blob"])]
    assert lines[4].split()[:5] == ["line", *row(result.per_defect["line"])]
    assert lines[5].startswith(f"threshold {result.threshold:.5g} (val_data): precision")


def test_cli_evaluate_prints_the_result_summary(tmp_path, monkeypatch, capsys):
    import keras_skipae_cli
    from keras_skipae.apps import workflows

    result = evaluate(_constant_model(), _dataset(_synthetic()), batch_size=4, progress=False)
    monkeypatch.setattr(workflows, "evaluate_run", lambda run, **kwargs: (result, tmp_path / "e"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")  # what the argument check asks for
    assert keras_skipae_cli.main(["evaluate", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out == f"{tmp_path / 'run'}\n{result.summary()}\nwrote {tmp_path / 'e'}\n"


@pytest.mark.parametrize("dtype, scale", [("uint8", 255), ("uint16", 65535)])
def test_evaluate_rescales_integer_images(dtype, scale):
    model = _constant_model()
    test = _synthetic()
    ints = dict(test, image=np.round(test["image"] * scale).astype(dtype))
    expected = evaluate(model, _dataset(test), batch_size=4, progress=False)
    got = evaluate(model, _dataset(ints), batch_size=4, progress=False)
    np.testing.assert_allclose(got.scores, expected.scores, atol=2.0 / scale + 1e-6)
    assert got.image_auroc == pytest.approx(expected.image_auroc)


def test_evaluate_matches_scoring_and_metrics_on_aesc():
    from keras_skipae.models import build_aesc

    model = build_aesc(input_shape=(SIZE, SIZE, 1), depth=3, filters=4)
    test = _synthetic(seed=3)
    cfg = scoring.ScoringConfig(map="ssim", smoothing=2.0, score="topk", topk=0.05)
    result = evaluate(
        model,
        _dataset(test),
        scoring=cfg,
        batch_size=5,
        progress=False,
    )
    ref = scoring.compute(model, test["image"], cfg)
    np.testing.assert_allclose(result.scores, ref["score"].numpy(), atol=1e-5)
    maps = ref["anomaly_map"].numpy()
    assert result.image_auroc == pytest.approx(metrics.image_auroc(test["label"], result.scores))
    assert result.pixel_auroc == pytest.approx(metrics.pixel_auroc(test["mask"], maps), abs=1e-4)
    assert result.aupro == pytest.approx(metrics.aupro(test["mask"], maps), abs=1e-3)
    assert result.f1_max == pytest.approx(metrics.f1_max(test["label"], result.scores)[0])
    assert result.threshold is None and result.precision is None and result.recall is None
    assert result.paths == test["path"] and result.defect_types == test["defect_type"]
    # Any iterable of element dicts gives the same result as a dataset.
    elements = [{k: v[i] for k, v in test.items()} for i in range(len(test["label"]))]
    again = evaluate(
        model,
        elements,
        scoring=cfg,
        batch_size=5,
        progress=False,
    )
    np.testing.assert_allclose(again.scores, result.scores, atol=1e-5)
    assert again.aupro == pytest.approx(result.aupro)


def test_evaluate_writes_outputs_and_refuses_to_overwrite(tmp_path):
    model = _constant_model(channels=3)
    test = _synthetic(channels=3, seed=4)
    val_ds, _ = _good_val()
    val_ds = val_ds.map(lambda d: {**d, "image": tf.tile(d["image"], [1, 1, 3])})
    out = tmp_path / "eval"
    result = evaluate(model, _dataset(test), val_data=val_ds, out_dir=out, progress=True)
    for name in OUTPUT_FILES.values():
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert set(result.files) == set(OUTPUT_FILES)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["image_auroc"] == pytest.approx(result.image_auroc)
    assert saved["threshold"] == pytest.approx(result.threshold)
    assert len(saved["images"]) == 13 and saved["images"][0]["path"] == "img_000.png"
    assert set(saved["per_defect"]) == {"blob", "line"}
    assert not list(out.glob(".*tmp*"))  # no temporary leftovers
    before = (out / "metrics.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        evaluate(model, _dataset(test), out_dir=out, progress=False)
    assert (out / "metrics.json").read_text() == before
    again = evaluate(model, _dataset(test), out_dir=out, overwrite=True, progress=False)
    assert json.loads((out / "metrics.json").read_text())["threshold"] is None
    assert again.threshold is None


def test_evaluate_nan_metrics_become_null_in_json(tmp_path):
    model = _constant_model()
    test = _synthetic(n_good=0, n_blob=3, n_line=0)  # no good image: AUROC undefined
    test.pop("mask")
    result = evaluate(model, _dataset(test), out_dir=tmp_path, progress=False)
    assert np.isnan(result.image_auroc) and np.isnan(result.pixel_auroc)
    assert "roc_pixel" not in result.files
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["image_auroc"] is None and saved["aupro"] is None


def test_evaluate_explicit_threshold_wins():
    model = _constant_model()
    test = _synthetic()
    val_ds, _ = _good_val()
    with pytest.warns(UserWarning, match="explicit threshold"):
        result = evaluate(model, _dataset(test), val_data=val_ds, threshold=0.2, progress=False)
    assert result.threshold == 0.2 and result.threshold_source == "explicit"
    assert result.recall == pytest.approx(np.mean(result.scores[result.labels == 1] >= 0.2))


def test_evaluate_mc_dropout_method():
    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.3)(x)
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    model = keras.Model(inp, out)
    result = evaluate(
        model,
        _dataset(_synthetic(n_good=2, n_blob=2, n_line=0)),
        scoring=scoring.ScoringConfig(map="mc_dropout", mc_samples=3),
        progress=False,
    )
    assert result.settings["map"] == "mc_dropout" and result.settings["mc_samples"] == 3
    assert np.all(result.scores > 0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"scoring": {"map": "nope"}}, ValueError, "map"),
        ({"scoring": {"score": "median"}}, ValueError, "score"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"threshold_percentile": 120}, ValueError, "threshold_percentile"),
    ],
)
def test_evaluate_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate(_constant_model(), _dataset(_synthetic()), progress=False, **kwargs)


def test_evaluate_rejects_bad_data():
    model = _constant_model()
    test = _synthetic()
    bad_val = _synthetic(n_good=0, n_blob=2, n_line=0)
    with pytest.raises(ValueError, match="no good image"):
        evaluate(model, _dataset(test), val_data=_dataset(bad_val), progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, _dataset(test).take(0), progress=False)
    with pytest.raises(ValueError, match="image"):
        evaluate(model, tf.data.Dataset.from_tensor_slices(test["image"]), progress=False)
