"""``keras-skipae train --budget MINUTES``: the recipe of docs/decisions.md#anomaly-head.

The rule and the launcher's checks run without TensorFlow; one slow test trains through
``main`` and reads the run's ``config.json``.
"""

import json
import os

import pytest

from keras_skipae_cli import budget, main
from keras_skipae_cli.budget import BUDGET_EPOCHS, HEAD_FROM_CPU_SECONDS, budget_recipe
from keras_skipae_cli.parser import build_parser


def _train_args(root, out, *extra):
    return ["train", "--data", str(root), "--category", "mesh", "--out", str(out), *extra]


def _checked(root, out, *extra):
    args = build_parser().parse_args(_train_args(root, out, *extra))
    args.check(args)
    return args


@pytest.mark.parametrize(
    ("minutes", "cores", "model", "head_scale", "scoring"),
    [
        (16, 2, "aesc_head", 4, "learned"),  # the measured switch: 1920 CPU-seconds
        (15.99, 2, "aesc", None, "residual"),
        (4, 2, "aesc", None, "residual"),
        (8, 4, "aesc_head", 4, "learned"),  # the same CPU-seconds on more cores
        (31.9, 1, "aesc", None, "residual"),
        (64, 2, "aesc_head", 4, "learned"),
    ],
)
def test_the_recipe_switches_at_1920_cpu_seconds(minutes, cores, model, head_scale, scoring):
    recipe = budget_recipe(minutes, cores)
    assert (recipe.model, recipe.head_scale, recipe.map) == (model, head_scale, scoring)
    assert recipe.cpu_seconds == pytest.approx(60 * minutes * cores)
    assert (recipe.cpu_seconds >= HEAD_FROM_CPU_SECONDS) == (model == "aesc_head")


def test_the_recipe_counts_the_cores_this_process_may_use(monkeypatch):
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert budget.usable_cores() == (expected or os.cpu_count())
    monkeypatch.setattr(budget, "usable_cores", lambda: 3)
    assert budget_recipe(10).cores == 3
    assert budget_recipe(10).model == "aesc"  # 1800 CPU-seconds
    assert budget_recipe(11).model == "aesc_head"  # 1980


def test_describe_names_the_budget_and_the_recipe():
    text = budget_recipe(20, 2).describe()
    assert text.startswith("--budget 20 min x 2 cores = 2400 CPU-seconds: ")
    assert "--model aesc_head --head-scale 4" in text
    assert "epochs until the time limit of 1200 s" in text and "--map learned" in text
    short = budget_recipe(2.5, 2).describe()
    assert "--model aesc," in short and "--head-scale" not in short and "--map residual" in short


def test_budget_sets_model_time_limit_and_epochs(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "usable_cores", lambda: 2)
    args = _checked(synthetic_root, tmp_path / "run", "--budget", "20")
    assert (args.model, args.head_scale) == ("aesc_head", 4)
    assert args.time_limit == 1200.0
    assert args.epochs == BUDGET_EPOCHS
    assert args.schedule == "auto"  # with a time limit: the cosine schedule
    assert args.recipe.map == "learned"
    args = _checked(synthetic_root, tmp_path / "run", "--budget", "5")
    assert (args.model, args.head_scale, args.time_limit) == ("aesc", None, 300.0)


def test_without_budget_the_defaults_stay(synthetic_root, tmp_path):
    args = _checked(synthetic_root, tmp_path / "run")
    assert (args.epochs, args.recipe, args.model, args.time_limit) == (30, None, None, None)
    assert _checked(synthetic_root, tmp_path / "run", "--epochs", "7").epochs == 7


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--model", "aesc"], "--model aesc"),
        (["--model", "aesc_head", "--head-scale", "2"], "--model aesc_head --head-scale 2"),
        (["--time-limit", "60"], "--time-limit 60.0"),
        (["--epochs", "5"], "--epochs 5"),
        (["--task", "segmentation"], "--task segmentation"),
    ],
)
def test_budget_refuses_what_it_sets(synthetic_root, tmp_path, capsys, extra, named):
    assert main(_train_args(synthetic_root, tmp_path / "run", "--budget", "20", *extra)) == 2
    err = capsys.readouterr().err
    assert "--budget picks the model, head scale, time limit and epochs itself" in err
    assert f"Received: --budget 20 {named}" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf"])
def test_bad_budget_exits_2(synthetic_root, tmp_path, capsys, value):
    assert main(_train_args(synthetic_root, tmp_path / "run", "--budget", value)) == 2
    assert "--budget must be a finite number > 0. Received: --budget" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_budget_trains_the_head_with_a_time_limit(synthetic_root, tmp_path, capsys, monkeypatch):
    # 0.02 minutes on 1600 "cores" = 1920 CPU-seconds: the head's recipe, in 1.2 s
    monkeypatch.setattr(budget, "usable_cores", lambda: 1600)
    run = tmp_path / "run"
    small = ["--steps-per-epoch", "1", "--batch-size", "2", "--image-size", "64", "--filters", "4"]
    with pytest.warns(UserWarning, match="upscaled"):  # the 32-px tree, trained at 64 px
        assert main(_train_args(synthetic_root, run, "--budget", "0.02", *small)) == 0
    out = capsys.readouterr().out
    assert "--budget 0.02 min x 1600 cores = 1920 CPU-seconds" in out
    assert f"next: keras-skipae evaluate {run} --map learned" in out
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["name"] == "aesc_head"
    assert config["model"]["kwargs"]["head_scale"] == 4
    assert config["training"]["time_limit"] == pytest.approx(1.2)
    assert config["training"]["epochs"] == BUDGET_EPOCHS
    assert config["training"]["schedule"] == "cosine"
