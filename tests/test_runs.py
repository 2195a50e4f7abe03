"""Tests for keras_skipae.runs: RunFolder (layout, loading, thresholds, resume checks) and
RunConfig (round trip, migration of older documents, damaged ones)."""

import dataclasses
import json
import types

import numpy as np
import pytest

from keras_skipae.ownership import owner
from keras_skipae.runs import (
    RUN_FILES,
    DataConfig,
    RunConfig,
    RunFolder,
    RuntimeConfig,
    TrainingConfig,
    load_run,
)
from keras_skipae.scoring import ScoringConfig
from keras_skipae.scoring.compat import stored_threshold


def _metrics(run: RunFolder, threshold=0.25, **settings):
    run.metrics_path.parent.mkdir(parents=True, exist_ok=True)
    run.metrics_path.write_text(json.dumps({"threshold": threshold, "settings": settings}))


def test_layout_names(tmp_path):
    run = RunFolder(tmp_path / "r")
    assert run.config_path == tmp_path / "r" / "config.json"
    assert run.model_path() == tmp_path / "r" / "model.keras"
    assert run.model_path(best=True) == tmp_path / "r" / "best.keras"
    assert run.metrics_path == tmp_path / "r" / "evaluation" / "metrics.json"
    named = {
        run.config_path,
        run.history_path,
        run.backup_dir,
        run.logs_dir,
        run.previews_dir,
        run.evaluation_dir,
        run.discrepancy_dir,
        run.model_path(),
        run.model_path(True),
    }
    assert {p.name for p in named} == set(RUN_FILES)


def test_not_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunFolder(tmp_path / "nope").config()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_run(tmp_path / "empty")
    (tmp_path / "model.keras").write_bytes(b"a file")
    with pytest.raises(FileNotFoundError, match="model.keras' is a file; expected a folder"):
        RunFolder(tmp_path / "model.keras").config()


def test_a_damaged_config_is_named(tmp_path):
    run = RunFolder(tmp_path / "r")
    run.path.mkdir()
    run.config_path.write_text('{"model": {"name": "aesc"', encoding="utf-8")  # cut short
    with pytest.raises(ValueError, match=r"config\.json.*not valid JSON"):
        run.config()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", r"must hold a JSON object.*Received: a JSON array"),
        ('"aesc"', r"must hold a JSON object.*Received: a JSON string"),
        (
            '{"training": [1]}',
            r"is damaged: 'training' must be a JSON object.*Received: a JSON array",
        ),
        ("\n", r"is not valid JSON \(Expecting value: line 2 column 1"),
    ],
)
def test_a_config_that_is_not_a_json_object_is_named(tmp_path, text, problem):
    run = RunFolder(tmp_path / "r")
    run.path.mkdir()
    run.config_path.write_text(text, encoding="utf-8")
    for read in (run.config, run.tiling, run.task):
        with pytest.raises(ValueError, match=r"run config '.*config\.json' " + problem):
            read()


def test_metrics_that_are_not_a_json_object_give_no_threshold_and_name_the_file(tmp_path):
    run = RunFolder(tmp_path)
    run.metrics_path.parent.mkdir(parents=True)
    run.metrics_path.write_text("[0.25]", encoding="utf-8")
    threshold, path, problem = run.threshold(ScoringConfig())
    assert threshold is None and path == run.metrics_path
    assert "metrics.json' must hold a JSON object" in problem


def test_threshold_is_returned_only_for_the_same_settings(tmp_path):
    run = RunFolder(tmp_path)
    cfg = ScoringConfig()
    assert run.threshold(cfg) == (None, None, None)
    _metrics(run, **cfg.to_dict())
    assert run.threshold(cfg)[::2] == (0.25, None)
    threshold, path, problem = run.threshold(cfg.replace(map="ssim"))
    assert threshold is None and path == run.metrics_path
    assert "map='residual' (other: 'ssim')" in problem
    # A document without smoothing_border was written with "normalized" in force.
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "smoothing_border"}
    _metrics(run, **legacy)
    assert run.threshold(cfg)[0] is None
    assert run.threshold(cfg.replace(smoothing_border="normalized"))[0] == 0.25
    # Without smoothing on either side the border does not matter.
    _metrics(run, **dict(legacy, smoothing=0.0))
    assert run.threshold(cfg.replace(smoothing=0.0))[0] == 0.25
    _metrics(run, threshold=None, **cfg.to_dict())
    assert "no production threshold" in run.threshold(cfg)[2]


def test_clear_or_resume_refuses_a_different_or_finished_run(tmp_path):
    run = RunFolder(tmp_path / "r")
    config = {"model": {"name": "aesc"}, "data": {}, "corruption": None, "training": {"seed": 0}}
    assert run.clear_or_resume(config, overwrite=False, resume=True) == (0, False)
    assert owner(run.path) == "run"
    run.config_path.write_text(json.dumps(config))
    other = dict(config, training={"seed": 1})
    with pytest.raises(FileExistsError, match="training.seed: 0 -> 1"):
        run.clear_or_resume(other, overwrite=False, resume=True)
    run.model_path().write_text("x")
    with pytest.raises(FileExistsError, match="already finished"):
        run.clear_or_resume(config, overwrite=False, resume=True)
    # A user's file in the folder: --overwrite refuses, and deletes nothing.
    (run.path / "mine.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match=r"does not write there \('mine.txt'\)"):
        run.clear_or_resume(other, overwrite=True, resume=True)
    assert run.model_path().exists() and (run.path / "mine.txt").exists()
    (run.path / "mine.txt").unlink()
    assert run.clear_or_resume(other, overwrite=True, resume=True) == (0, False)
    assert not run.model_path().exists() and owner(run.path) == "run"


def test_truncate_history_drops_rows_after_the_backup(tmp_path):
    run = RunFolder(tmp_path)
    run.history_path.write_text("epoch,loss\n0,1.0\n1,0.5\n2,0.25\n")
    run.truncate_history(2)
    assert run.history() == {"epoch": [0, 1], "loss": [1.0, 0.5]}
    (run.backup_dir).mkdir()
    (run.backup_dir / "training_metadata.json").write_text('{"epoch": 3}')
    assert run.backup_epoch() == 3
    np.testing.assert_equal(run.history()["loss"], [1.0, 0.5])


# --------------------------------------------------------------------------- RunConfig
#: A config.json as `ks.train` wrote it (a run on tiles, with the CLI's data_config).
TODAY = {
    "model": {
        "name": "aesc",
        "kwargs": {"input_shape": [8, 8, 1], "filters": 4, "depth": 2},
        "params": 1865,
    },
    "data": {
        "root": "/x",
        "category": "c",
        "image_size": None,
        "color_mode": "grayscale",
        "n_train": 5,
        "n_val": 1,
        "pairs_given": False,
    },
    "corruption": {"class_name": "Stains", "config": {"count": 1, "size": [0.01, 0.12]}},
    "training": {
        "epochs": 1,
        "learning_rate": 0.001,
        "loss": {
            "module": "keras_skipae.losses",
            "class_name": "MeanSquaredError",
            "config": {"name": "mse", "reduction": "sum_over_batch_size"},
            "registered_name": "keras_skipae>MeanSquaredError",
        },
        "stain_weight": 10.0,
        "batch_size": 2,
        "validation_split": 0.1,
        "steps_per_epoch": 2,
        "seed": 3,
        "reduce_lr": True,
        "schedule": "plateau",
        "save_best": False,
        "time_limit": None,
        "time_clock": "wall",
        "tile_size": 8,
        "tile_overlap": 2,
    },
    "runtime": {
        "jit_compile": False,
        "precision": "float32",
        "strategy": "default",
        "replicas": 1,
        "tensorflow": "2.21.0",
        "keras": "3.15.1",
        "deterministic": False,
    },
}


def _without(doc: dict, *paths: str) -> dict:
    """A deep copy of ``doc`` without the keys ``"section.key"`` (or ``"section"``)."""
    doc = json.loads(json.dumps(doc))
    for path in paths:
        section, _, key = path.partition(".")
        if key:
            del doc[section][key]
        else:
            del doc[section]
    return doc


def test_run_config_round_trips_a_document_train_writes():
    cfg = RunConfig.from_dict(TODAY)
    assert cfg.to_dict() == TODAY
    # ... in the same key order, so the rewritten file reads the same.
    assert json.dumps(cfg.to_dict()) == json.dumps(TODAY)
    assert cfg.model.name == "aesc" and cfg.model.params == 1865
    assert cfg.data.root == "/x" and cfg.data.category == "c"
    assert cfg.data.n_train == 5 and cfg.data.n_val == 1
    assert cfg.training.seed == 3 and cfg.training.validation_split == 0.1
    assert cfg.tiling == (8, 2) and cfg.task == "reconstruction"
    assert cfg.image_size() is None  # on tiles: full resolution
    assert cfg.color_mode(1) == "grayscale"
    assert cfg.compared() == {k: TODAY[k] for k in ("model", "data", "corruption", "training")}


def test_run_config_keeps_keys_it_does_not_know():
    doc = json.loads(json.dumps(TODAY))
    doc["data"]["camera"] = "line-3"
    doc["notes"] = {"by": "someone"}
    cfg = RunConfig.from_dict(doc)
    assert cfg.data.extra == {"camera": "line-3"} and cfg.extra == {"notes": {"by": "someone"}}
    assert cfg.to_dict() == doc


def test_older_run_documents_migrate_to_the_fields():
    # Written before tiles, segmentation, color_mode, split and runtime.deterministic
    # existed: a reconstruction run of images of its model's channels, not on tiles.
    old = _without(
        TODAY,
        "training.tile_size",
        "training.tile_overlap",
        "data.color_mode",
        "runtime.deterministic",
        "training.seed",
    )
    old["data"]["image_size"] = 64
    cfg = RunConfig.from_dict(old)
    assert cfg.task == "reconstruction" and cfg.tiling is None
    assert cfg.data.split is None and cfg.data.color_mode is None
    assert cfg.color_mode(3) == "rgb" and cfg.color_mode(1) == "grayscale"
    assert cfg.runtime.deterministic is False and cfg.training.seed == 0
    assert cfg.image_size() == 64
    assert cfg.to_dict() == old  # nothing is added to an older document
    # A run on tiles recorded without its overlap: no overlap.
    cfg = RunConfig.from_dict(_without(TODAY, "training.tile_overlap"))
    assert cfg.tiling == (8, 0)
    # A run folder of the Python API without data_config: the model's input size.
    bare = _without(TODAY, "data.root", "data.category", "data.image_size", "data.color_mode")
    bare["training"] = _without(TODAY, "training.tile_size", "training.tile_overlap")["training"]
    model = types.SimpleNamespace(input_shape=(None, 32, 32, 1))
    assert RunConfig.from_dict(bare).image_size(model) == 32
    # No runtime section, null sections.
    cfg = RunConfig.from_dict({"model": None, "training": None, "corruption": None})
    assert cfg.task == "reconstruction" and cfg.tiling is None and cfg.data.root is None
    assert cfg.to_dict() == {"model": {}, "training": {}, "corruption": None}


def test_a_new_run_config_writes_optional_keys_only_when_set():
    plain = TrainingConfig(epochs=1, seed=0)
    assert "tile_size" not in plain.to_dict() and "task" not in plain.to_dict()
    tiled = TrainingConfig(epochs=1, tile_size=16, tile_overlap=4).to_dict()
    assert (tiled["tile_size"], tiled["tile_overlap"]) == (16, 4) and "task" not in tiled
    seg = TrainingConfig(epochs=1, task="segmentation").to_dict()
    assert seg["task"] == "segmentation" and "tile_size" not in seg
    described = {"root": "r", "category": "c", "image_size": 32, "color_mode": "rgb"}
    data = DataConfig.describe(dict(described, split="train"), n_train=4, n_val=1)
    assert data.to_dict() == dict(described, n_train=4, n_val=1)
    data = DataConfig.describe(dict(described, split="test"), n_train=4)
    assert data.to_dict() == dict(described, split="test", n_train=4)
    assert DataConfig.describe(None, n_train=2).to_dict() == {"n_train": 2}


@pytest.mark.parametrize(
    "change, problem",
    [
        (("data", "color_mode", "cmyk"), r"data\.color_mode must be 'grayscale' or 'rgb'.*"),
        (("data", "image_size", "big"), r"data\.image_size must be .*image_size='big'"),
        (("data", "image_size", [32]), r"data\.image_size must be .*image_size=\[32\]"),
        (("data", "image_size", 0), r"data\.image_size must be .*image_size=0"),
        (("training", "task", "detection"), r"training\.task must be one of .*task='detection'"),
        (("training", "tile_size", 0), r"training\.tile_size must be .*tile_size=0"),
        (("training", "tile_size", "8"), r"training\.tile_size must be .*tile_size='8'"),
        (
            ("training", "tile_overlap", 8),
            r"training\.tile_overlap must be an integer in .*overlap=8",
        ),
        (
            ("training", "tile_overlap", -1),
            r"training\.tile_overlap must be an integer in .*overlap=-1",
        ),
        (
            ("training", "validation_split", 1.5),
            r"training\.validation_split must be in .*split=1\.5",
        ),
        (("training", "seed", "0"), r"training\.seed must be an integer.*seed='0'"),
    ],
)
def test_a_bad_value_in_a_run_config_is_named(change, problem):
    section, key, value = change
    doc = json.loads(json.dumps(TODAY))
    doc[section][key] = value
    with pytest.raises(ValueError, match=r"The run config 'r/config\.json' is damaged: " + problem):
        RunConfig.from_dict(doc, source="r/config.json")


@pytest.mark.parametrize(
    "doc, problem",
    [
        ([1], r"must hold a JSON object .*Received: a JSON array"),
        ({"model": [1]}, r"is damaged: 'model' must be a JSON object.*a JSON array"),
        ({"data": "x"}, r"is damaged: 'data' must be a JSON object.*a JSON string"),
        ({"training": 3}, r"is damaged: 'training' must be a JSON object.*a JSON number"),
        ({"runtime": True}, r"is damaged: 'runtime' must be a JSON object.*a JSON boolean"),
        ({"corruption": "stains"}, r"is damaged: 'corruption' must be a JSON object.*string"),
    ],
)
def test_a_run_config_that_is_not_made_of_objects_is_named(doc, problem):
    with pytest.raises(ValueError, match=r"The run config 'c\.json' " + problem):
        RunConfig.from_dict(doc, source="c.json")


def test_a_color_mode_of_other_channels_than_the_model_is_refused(tmp_path):
    run = RunFolder(tmp_path)
    run.config_path.write_text(json.dumps(TODAY))
    cfg = run.run_config()
    assert cfg.source == str(run.config_path)
    with pytest.raises(
        ValueError,
        match=r"'.*config\.json' records color_mode='grayscale' \(1 channel\(s\)\), but the "
        r"run's model takes 3",
    ):
        cfg.color_mode(3)
    assert run.tiling() == (8, 2) and run.task() == "reconstruction"


def test_clear_or_resume_compares_a_run_config_with_the_stored_document(tmp_path):
    run = RunFolder(tmp_path / "r")
    run.path.mkdir()
    run.config_path.write_text(json.dumps(TODAY))
    run.model_path().write_text("x")
    cfg = RunConfig.from_dict(TODAY)
    # The runtime section is not compared: the same run, finished.
    other_runtime = dataclasses.replace(cfg, runtime=RuntimeConfig(jit_compile=True))
    with pytest.raises(FileExistsError, match="already finished"):
        run.clear_or_resume(other_runtime, overwrite=False, resume=True)
    seed = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=4))
    with pytest.raises(FileExistsError, match="different run .*training.seed: 3 -> 4"):
        run.clear_or_resume(seed, overwrite=False, resume=True)


def test_stored_threshold_applies_to_the_tiling_it_was_set_on():
    cfg = ScoringConfig()
    metrics = {"threshold": 0.5, "settings": dict(cfg.to_dict(), tile_size=8)}
    assert stored_threshold(metrics, cfg, (8, 0)) == (0.5, None)
    threshold, problem = stored_threshold(metrics, cfg, None, where="m.json")
    assert threshold is None
    assert problem == (
        "the threshold in 'm.json' was computed with tile_size=8, tile_overlap=0, not no tiling"
    )
    threshold, problem = stored_threshold(metrics, cfg.to_dict(), (8, 2))
    assert threshold is None and "not tile_size=8, tile_overlap=2" in problem
    threshold, problem = stored_threshold({"settings": cfg.to_dict()}, cfg, None)
    assert threshold is None and problem == "'metrics.json' holds no production threshold"
