"""The train / evaluate / demo subcommands, through ``python -m keras_skipae`` subprocesses."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cli(*args, timeout=300, cwd=REPO):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "keras_skipae_cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def _error_line(proc):
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("keras-skipae")]
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from keras_skipae.data import synthetic

    root = tmp_path_factory.mktemp("cli") / "data"
    synthetic.make_dataset(
        root, categories=["mesh"], image_size=32, n_train=10, n_test_good=4, n_test_defect=2, seed=0
    )
    return root


@pytest.mark.parametrize("command", ["train", "evaluate", "demo"])
def test_help(command):
    proc = _cli(command, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"usage: keras-skipae {command}" in proc.stdout
    assert "--overwrite" in proc.stdout


@pytest.mark.slow
def test_train_errors_are_one_line(tmp_path, tiny_data):
    proc = _cli(
        "train", "--data", tmp_path / "missing", "--category", "mesh", "--out", tmp_path / "run"
    )
    line = _error_line(proc)
    assert "missing" in line and "does not exist" in line
    assert not (tmp_path / "run").exists()

    proc = _cli("train", "--data", tiny_data, "--category", "carpet", "--out", tmp_path / "run")
    line = _error_line(proc)
    assert "'carpet' not found" in line and "mesh" in line

    proc = _cli(
        "--debug",
        "train",
        "--data",
        tmp_path / "missing",
        "--category",
        "mesh",
        "--out",
        tmp_path / "run",
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = _cli("evaluate", tmp_path / "no_run", "--debug")  # after the subcommand too
    assert proc.returncode != 0 and "Traceback" in proc.stderr

    proc = _cli("evaluate", tmp_path / "no_run")
    assert "does not exist" in _error_line(proc)


def test_train_precision_flag():
    from keras_skipae_cli.parser import build_parser

    base = ["train", "--data", "d", "--category", "c", "--out", "o"]
    parser = build_parser()
    assert parser.parse_args(base).precision == "auto"
    args = parser.parse_args([*base, "--precision", "mixed_bfloat16"])
    assert args.precision == "mixed_bfloat16"
    with pytest.raises(SystemExit, match="^2$") as exc:  # argparse's usage-error status
        parser.parse_args([*base, "--precision", "fp8"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_train_then_evaluate(tmp_path, tiny_data):
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        Path(tiny_data).name,  # relative to the training's folder, not to evaluate's
        "--category",
        "mesh",
        "--model",
        "aesc",
        "--out",
        run,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--image-size",
        "32",
        "--depth",
        "3",
        "--filters",
        "4",
        "--quiet",
    ]
    proc = _cli(*args, cwd=Path(tiny_data).parent)
    assert proc.returncode == 0, proc.stderr
    assert f"run folder: {run}" in proc.stdout
    for name in ("config.json", "model.keras", "history.csv"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["category"] == "mesh" and config["data"]["image_size"] == 32
    assert config["model"]["kwargs"]["depth"] == 3
    assert config["data"]["root"] == str(Path(tiny_data).resolve())
    from keras_skipae.training import resolve_precision

    assert config["runtime"]["precision"] == resolve_precision("auto")  # --precision auto

    proc = _cli("evaluate", run, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "image AUROC" in proc.stdout and "pixel AUROC" in proc.stdout
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["n_images"] == 4 + 2 * 4  # mesh has 4 defect types
    assert (run / "evaluation" / "roc_image.png").is_file()

    proc = _cli("evaluate", run, "--quiet")
    assert "overwrite" in _error_line(proc)
    proc = _cli("evaluate", run, "--quiet", "--overwrite")  # its own report: replaced
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads((run / "evaluation" / ".keras_skipae.json").read_text())["kind"] == "evaluation"
    )
    proc = _cli("evaluate", run, "--quiet", "--category", "wood")
    assert "'wood' not found" in _error_line(proc)


@pytest.mark.slow
def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    proc = _cli("demo", "--quick", "--out", out, "--minutes-per-model", "0.05", "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = out / "report"
    for name in (
        "report.md",
        "report.html",
        "comparison.json",
        "ae/metrics.json",
        "aesc/metrics.json",
        "aesc/roc_image.png",
        "aesc/cases.png",
    ):
        assert (report / name).is_file(), name
    comparison = json.loads((report / "comparison.json").read_text())
    assert set(comparison["models"]) == {"ae", "aesc"}
    assert set(comparison["baselines"]) == {"gaussian", "patch_nn"}
    for m in comparison["models"].values():
        assert 0.0 <= m["image_auroc"] <= 1.0
    md = (report / "report.md").read_text()
    assert "](aesc/roc_image.png)" in md
    # Every image the report shows exists, the score histogram included.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "aesc/score_histogram.png" in links and "ae/training_preview.png" in links
    assert [link for link in links if not (report / link).is_file()] == []
    assert "## AESc" in md and "## AE" in md and "AESC" not in md
    # The training preview has a strip of column titles above the image rows.
    import cv2

    preview = cv2.imread(str(report / "aesc" / "training_preview.png"))
    assert preview.shape[0] % 32 == 16
    proc = _cli("demo", "--quick", "--out", out, "--quiet")
    assert "--overwrite" in _error_line(proc)


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    proc = _cli("evaluate", tmp_path / "x")
    assert "no config.json" in _error_line(proc)


def test_demo_overwrite_clears_only_demo_folders(tmp_path):
    from keras_skipae.apps import demo

    user = tmp_path / "project"
    (user / "data").mkdir(parents=True)
    (user / "data" / "mine.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        demo._prepare_out(user, overwrite=False)
    with pytest.raises(FileExistsError, match="no .keras_skipae.json marker"):
        demo._prepare_out(user, overwrite=True)
    assert (user / "data" / "mine.png").read_bytes() == b"mine"

    made = tmp_path / "demo"
    demo._prepare_out(made, overwrite=False)
    assert (made / ".keras_skipae.json").is_file()
    (made / "runs").mkdir()
    (made / "runs" / "old.keras").write_bytes(b"old")
    (made / "notes.txt").write_text("kept")
    with pytest.raises(FileExistsError, match=r"does not write there \('notes.txt'\)"):
        demo._prepare_out(made, overwrite=True)
    assert (made / "runs" / "old.keras").exists()
    (made / "notes.txt").unlink()
    demo._prepare_out(made, overwrite=True)
    assert not (made / "runs").exists()
    # A demo folder of version 0.1 (its own marker file) is replaced too.
    (made / ".keras_skipae.json").unlink()
    (made / demo.DEMO_MARKER).write_text("made")
    (made / "report").mkdir()
    demo._prepare_out(made, overwrite=True)
    assert sorted(p.name for p in made.iterdir()) == [".keras_skipae.json"]


@pytest.mark.slow
def test_train_refuses_an_image_over_max_pixels_in_one_line(tmp_path, tiny_data):
    import shutil

    from harness import png_declaring

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    png_declaring(data / "mesh" / "train" / "good" / "bomb.png", 100000, 100000)
    args = ("train", "--data", data, "--category", "mesh", "--out", tmp_path / "run", "--quiet")
    line = _error_line(_cli(*args))
    assert "bomb.png' declares 100000x100000 pixels" in line and "--max-pixels" in line
    assert not (tmp_path / "run").exists()
    (data / "mesh" / "train" / "good" / "bomb.png").unlink()
    line = _error_line(_cli(*args, "--max-pixels", "1000"))  # the 32x32 images: 1024 pixels
    assert "000.png' declares 32x32 pixels (1,024), more than max_pixels=1,000" in line
