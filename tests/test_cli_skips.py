"""``keras-skipae train --skips --skip-scale --skip-dropout --dropout --head-scale`` reach the
builder.

In-process (``keras_skipae_cli.main``), on the shared 32-px synthetic tree.
"""

import json

import keras
import pytest

import keras_skipae as ks
from keras_skipae.layers import SkipDropout
from keras_skipae_cli import main
from keras_skipae_cli.checks import UsageError, parse_rates, parse_skips


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
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "2",
        "--image-size",
        "32",
        "--depth",
        "4",
        "--filters",
        "4",
        "--quiet",
        *extra,
    ]


@pytest.mark.slow
def test_skip_flags_reach_the_builder_and_the_run_files(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--skips", "1,2", "--skip-scale", "1,0.5,1", "--skip-dropout", "0.25"]
    flags += ["--dropout", "0.1"]
    assert main(_train_args(synthetic_root, run, *flags)) == 0
    assert f"next: keras-skipae evaluate {run})" in capsys.readouterr().out  # no head: residual
    kwargs = json.loads((run / "config.json").read_text())["model"]["kwargs"]
    assert kwargs["skips"] == [1, 2]
    assert kwargs["skip_scale"] == [1.0, 0.5, 1.0]
    assert kwargs["skip_dropout"] == 0.25
    assert kwargs["dropout"] == 0.1

    model = ks.load_model(run / "model.keras")
    merges = [lay.name for lay in model.layers if lay.name.endswith("_skip")]
    assert merges == ["dec2_skip", "dec1_skip"]
    drops = {lay.name: lay.rate for lay in model.layers if isinstance(lay, SkipDropout)}
    assert drops == {"dec2_skip_drop": 0.25, "dec1_skip_drop": 0.25}
    assert model.get_layer("dec1_skip_scale").scale == 0.5
    rates = {lay.name: lay.rate for lay in model.layers if type(lay) is keras.layers.Dropout}
    assert rates and set(rates.values()) == {0.1}
    # the builder, given the stored kwargs, builds the same graph (what evaluate/export load)
    rebuilt = ks.get_model("aesc", **kwargs)
    assert [lay.name for lay in rebuilt.layers] == [lay.name for lay in model.layers]

    keras_file = tmp_path / "exported.keras"
    assert main(["export", str(run), str(keras_file), "--format", "keras"]) == 0
    exported = ks.load_model(keras_file)
    assert {lay.name for lay in exported.layers if isinstance(lay, SkipDropout)} == set(drops)
    capsys.readouterr()


def test_without_the_flags_nothing_is_stored(synthetic_root, tmp_path):
    from keras_skipae_cli.parser import build_parser

    args = build_parser().parse_args(_train_args(synthetic_root, tmp_path / "r"))
    args.check(args)
    assert (args.skips, args.skip_scale, args.skip_dropout, args.dropout) == (None,) * 4
    assert args.head_scale is None


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--skips", "fine"),
        ("--skips", "1,-2"),
        ("--skips", ""),
        ("--skip-scale", "0"),
        ("--skip-scale", "1.5"),
        ("--skip-dropout", "1"),
        ("--skip-dropout", "0.2,x"),
        ("--dropout", "nan"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_flag(synthetic_root, tmp_path, capsys, flag, value):
    assert main(_train_args(synthetic_root, tmp_path / "run", flag, value)) == 2
    err = capsys.readouterr().err
    assert f"Received: {flag} {value!r}" in err
    assert not (tmp_path / "run").exists()


def test_model_errors_from_the_flags_exit_1(synthetic_root, tmp_path, capsys):
    code = main(
        _train_args(synthetic_root, tmp_path / "run", "--model", "ae", "--skip-dropout", "0.5")
    )
    assert code == 1
    assert "Received: skip_dropout=0.5" in capsys.readouterr().err


@pytest.mark.slow
def test_head_scale_reaches_the_head(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--model", "aesc_head", "--head-scale", "4", "--image-size", "64"]
    with pytest.warns(UserWarning, match="upscaled"):  # the 32-px tree, trained at 64 px
        assert main(_train_args(synthetic_root, run, *flags)) == 0
    kwargs = json.loads((run / "config.json").read_text())["model"]["kwargs"]
    assert kwargs["head_scale"] == 4
    model = ks.load_model(run / "model.keras")
    assert model.head_scale == 4
    assert tuple(model.head.input_shape[1:3]) == (16, 16)  # 64 px pooled by 4
    # a model with a head is evaluated with its learned map
    assert f"next: keras-skipae evaluate {run} --map learned)" in capsys.readouterr().out


def test_cli_head_scales_are_the_models():
    from keras_skipae.models.anomaly_head import HEAD_SCALES
    from keras_skipae_cli.parser import CLI_HEAD_SCALES

    assert CLI_HEAD_SCALES == HEAD_SCALES


def test_head_scale_needs_a_model_with_a_head(synthetic_root, tmp_path, capsys):
    args = _train_args(synthetic_root, tmp_path / "run", "--head-scale", "4")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "needs --model aesc_head. Received: --model aesc --head-scale 4" in err
    assert not (tmp_path / "run").exists()
    # a scale the head does not offer is refused by the parser
    with pytest.raises(SystemExit) as exit_info:
        main(
            _train_args(
                synthetic_root, tmp_path / "run", "--model", "aesc_head", "--head-scale", "3"
            )
        )
    assert exit_info.value.code == 2
    assert "--head-scale: invalid choice: 3" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_parsers():
    assert parse_skips("all") == "all"
    assert parse_skips("None") == ()
    assert parse_skips("3, 1") == (3, 1)
    assert parse_rates("--dropout", "0.1") == 0.1
    assert parse_rates("--skip-scale", "1,0.5", scale=True) == [1.0, 0.5]
    assert parse_rates("--skip-dropout", None) is None
    with pytest.raises(UsageError, match="--skip-scale"):
        parse_rates("--skip-scale", "0", scale=True)
