"""The launcher (``keras_skipae_cli``): answers without TensorFlow, and quietly with it.

The subprocesses run with ``TF_CPP_MIN_LOG_LEVEL`` removed from their environment
(conftest and ``.ci/run`` set it, which would hide what these tests look for).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import keras_skipae_cli
from keras_skipae_cli import quiet

REPO = Path(__file__).resolve().parents[1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=str(REPO), MPLBACKEND="Agg", **extra)
    return env


def _python(code, *args, timeout=120, **extra_env):
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(**extra_env),
        timeout=timeout,
    )


def _commands():
    parser = keras_skipae_cli.build_parser()
    return sorted(parser._subparsers._group_actions[0].choices)


HELP_LOOP = """
import sys
import keras_skipae_cli
for argv in [["--help"]] + [[name, "--help"] for name in sys.argv[1:]]:
    try:
        keras_skipae_cli.main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
print("LOADED", *sorted(m for m in ("tensorflow", "keras", "numpy") if m in sys.modules))
"""


def test_help_answers_without_tensorflow():
    commands = _commands()
    assert {"train", "evaluate", "export", "synth", "demo", "discrepancy"} <= set(commands)
    proc = _python(HELP_LOOP, *commands)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # nothing from TensorFlow (nor anything else)
    lines = proc.stdout.splitlines()
    assert lines[-1] == "LOADED"  # neither tensorflow nor keras nor numpy was imported
    assert lines[0].startswith("usage: keras-skipae [-h]")
    for name in commands:
        assert any(line.startswith(f"usage: keras-skipae {name} ") for line in lines), name


def test_a_missing_run_folder_is_one_line_and_exit_2():
    code = (
        "import sys, keras_skipae_cli\n"
        "rc = keras_skipae_cli.main(['evaluate', '/no/such/run'])\n"
        "sys.stdout.write(f'{rc} {\"tensorflow\" in sys.modules}')"
    )
    proc = _python(code)
    assert proc.stdout == "2 False"
    assert proc.stderr.splitlines() == [
        "keras-skipae evaluate: error: Run folder '/no/such/run' does not exist."
    ]


BEFORE_TF = """
import sys, keras_skipae_cli
rc = keras_skipae_cli.main(sys.argv[1:])
sys.stdout.write(f'{rc} {"tensorflow" in sys.modules}')
"""


def _refused_before_tf(*argv):
    """The one error line of ``keras-skipae ARGV``, checked to exit 2 without TensorFlow."""
    proc = _python(BEFORE_TF, *argv)
    assert proc.stdout == "2 False", proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"keras-skipae {argv[0]}: error: "), lines
    return lines[0]


def test_a_folder_that_is_not_a_run_is_refused_before_tensorflow(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    file = tmp_path / "model.h5"
    file.write_bytes(b"weights")
    not_a_run = r"'.*notes' is not a run folder: it has no config\.json"
    for argv, expected in [
        (["evaluate", folder], not_a_run),
        (["export", folder, tmp_path / "out"], not_a_run),
        (["discrepancy", folder, folder], not_a_run),
        (["evaluate", file], r"Run folder '.*model\.h5' is a file; expected a folder\."),
        (["predict", folder, folder], r"Model '.*notes' is neither a run folder .* nor a "),
        (
            ["predict", file, folder],
            r"Model '.*model\.h5' is not a model file; .* \.keras, \.tflite, \.onnx, \.xml",
        ),
    ]:
        assert re.search(expected, _refused_before_tf(*argv)), argv


def test_a_data_argument_that_is_a_file_is_named_as_such(tmp_path):
    file = tmp_path / "data.zip"
    file.write_bytes(b"zip")
    line = _refused_before_tf("train", "--data", file, "--category", "x", "--out", tmp_path / "r")
    assert line.endswith(f"Data folder {str(file)!r} is a file; expected a folder.")


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "inf", "--lr must be a finite number > 0. Received: --lr inf"),
        ("--lr", "nan", "--lr must be a finite number > 0. Received: --lr nan"),
        ("--lr", "0", "--lr must be a finite number > 0. Received: --lr 0.0"),
        ("--stain-weight", "inf", "--stain-weight must be a finite number >= 0."),
        ("--time-limit", "inf", "--time-limit must be a finite number > 0."),
        ("--bn-momentum", "nan", "--bn-momentum must be in [0, 1). Received: --bn-momentum nan"),
    ],
)
def test_train_refuses_non_finite_numbers_before_tensorflow(tmp_path, flag, value, message):
    (tmp_path / "data" / "cat" / "train").mkdir(parents=True)
    argv = ["train", "--data", tmp_path / "data", "--category", "cat", "--out", tmp_path / "r"]
    assert message in _refused_before_tf(*argv, flag, value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--minutes-per-model", "inf"], "--minutes-per-model must be a finite number > 0"),
        (
            ["export", "RUN", "OUT", "--smoothing", "nan"],
            "--smoothing must be a finite number >= 0",
        ),
    ],
)
def test_other_non_finite_numbers_are_refused_before_tensorflow(tmp_path, argv, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    argv = [str(run) if a == "RUN" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert message in _refused_before_tf(*argv)


SYNTH = [
    "synth",
    "--categories",
    "mesh",
    "--image-size",
    "16",
    "--n-train",
    "1",
    "--n-test-good",
    "1",
    "--n-test-defect",
    "0",
]


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_skipae_cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(TF_ENABLE_ONEDNN_OPTS="1"),  # oneDNN's start-up line prints at any log level
        timeout=300,
    )


@pytest.mark.slow
def test_tensorflow_start_up_lines_stay_out_unless_debug(tmp_path):
    proc = _run_cli(*SYNTH, "--out", tmp_path / "quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [f"wrote {tmp_path / 'quiet'} (mesh)"]
    # Positive control: --debug shows TensorFlow's logs, and they are what quiet drops.
    proc = _run_cli(*SYNTH, "--out", tmp_path / "debug", "--debug")
    assert proc.returncode == 0, proc.stderr
    assert quiet.ABSL_PREINIT in proc.stderr
    assert "port.cc" in proc.stderr and "oneDNN custom operations are on" in proc.stderr
    assert quiet.filter_tf_startup(proc.stderr, 2) == ""


def _has_avx512():
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.slow
def test_training_keeps_onednn_noise_out_unless_verbose(tmp_path):
    proc = _run_cli(*SYNTH, "--image-size", "32", "--out", tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    train = ["train", "--data", tmp_path / "data", "--category", "mesh", "--image-size", "32"]
    train += ["--epochs", "1", "--batch-size", "1", "--depth", "2", "--filters", "4"]
    train += ["--val-split", "0", "--quiet", "--precision", "float32"]
    proc = _run_cli(*train, "--out", tmp_path / "quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[0].startswith("trained aesc for 1 epochs")
    # Positive control: with -v the line is there (on CPUs with AVX-512, which print it).
    proc = _run_cli("-v", *train, "--out", tmp_path / "verbose")
    assert proc.returncode == 0, proc.stderr
    if _has_avx512():
        assert "] oneDNN supports DT_INT32 only on platforms with AVX-512" in proc.stderr


def test_filtered_fd2_drops_noise_as_it_comes_and_keeps_the_rest(capfd):
    noise = "E0000 00:00:1796522978.644753    5308 util.cc:131] " + quiet.NOISE[0] + ". Falling\n"
    error = "E0000 00:00:1796522978.7    5308 other.cc:9] a real error\n"
    with quiet.filtered_fd2(2):
        os.write(2, b"\r 50%|#####     | 1/2")  # a progress bar's update: no newline
        os.write(2, noise.encode())
        os.write(2, error[:20].encode())  # a line written in two parts
        os.write(2, error[20:].encode())
        os.write(2, b"/x.py:3: UserWarning: from Python\n")
        os.write(2, b"W0000 00:00:1.0   1 x.cc:1] a warning below level 2\nlast")
    assert capfd.readouterr().err == (
        "\r 50%|#####     | 1/2" + error + "/x.py:3: UserWarning: from Python\nlast"
    )
    with quiet.filtered_fd2(2, enabled=False):
        os.write(2, noise.encode())
    assert capfd.readouterr().err == noise
    assert quiet.filter_tf_startup(noise + error, 0) == error


LOG = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796132182.191106   25668 cpu_feature_guard.cc:227] This TensorFlow binary\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n"
    "W0000 00:00:1796132182.2   25668 some.cc:1] a warning\n"
    "E0512 10:11:12.345678   25668 other.cc:9] an error\n"
    "To enable the following instructions: (after an error line: kept)\n"
    "/x.py:3: UserWarning: from Python\n"
)


@pytest.mark.parametrize(
    "level, kept",
    [
        (0, [1, 2, 3, 4, 5, 6]),
        (1, [3, 4, 5, 6]),
        (2, [4, 5, 6]),
        (3, [6]),
    ],
)
def test_filter_keeps_what_the_log_level_lets_through(level, kept):
    lines = LOG.splitlines(keepends=True)
    assert quiet.filter_tf_startup(LOG, level) == "".join(lines[i] for i in kept)


def test_captured_fd2_takes_what_cpp_writes_and_restores_it(capfd):
    with quiet.captured_fd2() as captured:
        os.write(2, b"from C++\n")
    os.write(2, b"after\n")
    assert captured.text == "from C++\n"
    assert capfd.readouterr().err == "after\n"
    with quiet.captured_fd2(enabled=False) as captured:
        os.write(2, b"shown\n")
    assert captured.text == ""
    assert capfd.readouterr().err == "shown\n"


class _FailingCommands:
    """A meta-path finder whose ``keras_skipae.apps.cli`` prints to fd 2, then fails."""

    def find_spec(self, name, path=None, target=None):
        if name == "keras_skipae.apps.cli":
            os.write(2, b"I0000 00:00:1.0   1 x.cc:1] noise\nwhy it failed\n")
            raise ImportError("no commands")
        return None


def test_a_failed_import_writes_back_everything_it_printed(monkeypatch, capfd):
    import keras_skipae.apps

    monkeypatch.delitem(sys.modules, "keras_skipae.apps.cli", raising=False)
    monkeypatch.delattr(keras_skipae.apps, "cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_FailingCommands(), *sys.meta_path])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    with pytest.raises(ImportError, match="no commands"):
        keras_skipae_cli._commands(quiet=True)
    assert capfd.readouterr().err == "I0000 00:00:1.0   1 x.cc:1] noise\nwhy it failed\n"


def test_predict_refuses_to_resume_with_other_settings_before_tensorflow(tmp_path):
    model, image, out = tmp_path / "m.keras", tmp_path / "a.png", tmp_path / "out"
    model.write_bytes(b"")
    image.write_bytes(b"")
    out.mkdir()
    args = keras_skipae_cli.build_parser().parse_args(["predict", str(model), str(image)])
    args.threshold = 0.5  # what the interrupted run was given
    state = keras_skipae_cli.checks.predict_resume_settings(args)
    (out / ".predictions.resume.json").write_text(json.dumps(state))
    code = (
        "import sys, keras_skipae_cli\n"
        "rc = keras_skipae_cli.main(sys.argv[1:])\n"
        "sys.stdout.write(f'{rc} {\"tensorflow\" in sys.modules}')"
    )
    proc = _python(code, "predict", model, image, "--out", out, "--threshold", "0.25")
    assert proc.stdout == "2 False"
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"keras-skipae predict: error: {str(out)!r} holds an interrupted")
    assert "with other settings (threshold)" in line
    assert line.endswith("or pass --overwrite to start again.")
