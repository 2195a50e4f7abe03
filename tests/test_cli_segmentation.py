"""``keras-skipae train --task segmentation --encoder --freeze-encoder --encoder-weights``.

In-process (``keras_skipae_cli.main``), on the shared 32-px synthetic tree; the launcher's
refusals are checked without TensorFlow in a subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_skipae as ks
from keras_skipae.models.encoders import list_encoders
from keras_skipae.runs import DataConfig
from keras_skipae.training.segmentation import TASKS
from keras_skipae_cli import main
from keras_skipae_cli.parser import CLI_ENCODERS, CLI_TASKS, build_parser

REPO = Path(__file__).resolve().parents[1]


def _train_args(root, out, *extra):
    return [
        "train",
        "--data",
        str(root),
        "--category",
        "mesh",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--image-size",
        "32",
        "--depth",
        "2",
        "--filters",
        "4",
        "--quiet",
        *extra,
    ]


def test_the_parser_lists_the_library_s_encoders_and_tasks():
    assert CLI_ENCODERS == tuple(list_encoders())
    assert CLI_TASKS == TASKS
    args = build_parser().parse_args(["train", "--data", "d", "--category", "c", "--out", "o"])
    assert (args.task, args.model, args.loss, args.encoder) == (
        "reconstruction",
        None,
        "auto",
        None,
    )
    assert args.freeze_encoder is False and args.encoder_weights is None


def test_freeze_encoder_without_encoder_exits_2_before_tensorflow(synthetic_root, tmp_path):
    code = (
        "import sys, keras_skipae_cli\n"
        "rc = keras_skipae_cli.main(sys.argv[1:])\n"
        "sys.stdout.write(f'{rc} {\"tensorflow\" in sys.modules}')"
    )
    argv = _train_args(synthetic_root, tmp_path / "run", "--freeze-encoder")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.stdout == "2 False"
    assert proc.stderr.splitlines() == [
        "keras-skipae train: error: --freeze-encoder needs --encoder. Received: --freeze-encoder"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--encoder-weights", "imagenet"], "--encoder-weights needs --encoder"),
        (["--encoder", "resnet50", "--encoder-weights", "no.h5"], "an existing weights file"),
        (["--encoder", "vgg16"], "invalid choice: 'vgg16'"),
        (["--task", "segmentation", "--corruption", "stains"], "--corruption must be auto"),
        (["--task", "segmentation", "--stain-weight", "5"], "--stain-weight 5.0"),
        (["--task", "segmentation", "--tile-size", "16"], "--tile-size 16"),
        (["--task", "detection"], "invalid choice: 'detection'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(synthetic_root, tmp_path, capsys, extra, message):
    try:
        code = main(_train_args(synthetic_root, tmp_path / "run", *extra))
    except SystemExit as exc:  # argparse's own errors (choices)
        code = exc.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith(("keras-skipae train: error:", "usage"))
    assert not (tmp_path / "run").exists()


def test_segmentation_needs_ground_truth_masks(tmp_path, capsys):
    (tmp_path / "data" / "mesh" / "train" / "good").mkdir(parents=True)
    code = main(_train_args(tmp_path / "data", tmp_path / "run", "--task", "segmentation"))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ground_truth" in err[0] and "does not exist" in err[0]


def test_encoder_flags_and_task_reach_train(synthetic_root, tmp_path, monkeypatch, capsys):
    """The flags as train() receives them (no fitting: train is replaced)."""
    from keras_skipae import training

    seen = {}

    def fake_train(model, data, **kwargs):
        seen.update(model=model, n=int(data.reduce(0, lambda c, _: c + 1)), **kwargs)
        return training.TrainingRun(model=None, history={"loss": [1.0]}, run_dir=tmp_path)

    monkeypatch.setattr(training, "train", fake_train)
    weights = tmp_path / "body.weights.h5"
    weights.write_bytes(b"")
    extra = ["--task", "segmentation", "--encoder", "mobilenet_v2", "--freeze-encoder"]
    assert (
        main(
            _train_args(synthetic_root, tmp_path / "run", *extra, "--encoder-weights", str(weights))
        )
        == 0
    )
    assert seen["model"] == "unet" and seen["task"] == "segmentation" and seen["loss"] == "auto"
    kwargs = seen["model_kwargs"]
    assert kwargs["encoder"] == "mobilenet_v2" and kwargs["freeze_encoder"] is True
    assert kwargs["encoder_weights"] == str(weights) and kwargs["num_outputs"] == 1
    assert seen["n"] == 4 + 4  # the test split: 4 good, 1 per mesh defect type
    assert seen["data_config"]["split"] == "test"
    assert "evaluate does not apply" in capsys.readouterr().out

    seen.clear()  # reconstruction: the train split, no encoder, AESc, nothing added
    assert main(_train_args(synthetic_root, tmp_path / "run2")) == 0
    assert seen["model"] == "aesc" and seen["task"] == "reconstruction" and seen["n"] == 12
    assert not {"encoder", "num_outputs", "freeze_encoder"} & set(seen["model_kwargs"])
    assert seen["data_config"]["split"] == "train"
    # ... which config.json leaves out, as runs written before "split" existed have none.
    assert "split" not in DataConfig.describe(seen["data_config"]).to_dict()


@pytest.mark.slow
def test_train_segmentation_end_to_end(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(_train_args(synthetic_root, run, "--task", "segmentation", "--val-split", "0.25")) == 0
    )
    out = capsys.readouterr().out
    assert "trained unet for 2 epochs" in out and "val_iou" in out and "val_dice" in out
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["task"] == "segmentation"
    assert config["training"]["loss"]["config"]["kind"] == "bce+dice"
    assert config["model"]["kwargs"]["num_outputs"] == 1
    assert config["data"]["split"] == "test"
    assert config["data"]["n_train"] + config["data"]["n_val"] == 8
    history = (run / "history.csv").read_text().splitlines()
    assert "val_iou" in history[0] and len(history) == 3
    model = ks.load_model(run / "model.keras")
    assert model.output_shape == (None, 32, 32, 1)

    assert main(["evaluate", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "segmentation model" in err[0] and "evaluation" in err[0]
    assert main(["export", str(run), str(tmp_path / "sm")]) == 1
    assert "SavedModel export" in capsys.readouterr().err
    assert main(["export", str(run), str(tmp_path / "seg.keras"), "--format", "keras"]) == 0
    assert (tmp_path / "seg.keras").is_file()
