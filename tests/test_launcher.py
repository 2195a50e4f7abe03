"""The launcher (``keras_skipae_cli``): answers without TensorFlow, and quietly with it.

The subprocesses run with ``TF_CPP_MIN_LOG_LEVEL`` removed from their environment
(conftest and ``.ci/run`` set it, which would hide what these tests look for).
"""

import json
import os
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
