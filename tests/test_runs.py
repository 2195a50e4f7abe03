"""Tests for keras_skipae.runs.RunFolder: layout, loading, thresholds, resume checks."""

import json

import numpy as np
import pytest

from keras_skipae.ownership import owner
from keras_skipae.runs import RUN_FILES, RunFolder, load_run
from keras_skipae.scoring import ScoringConfig


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
