"""Training under faults: SIGKILL mid-epoch and during writes, NaN, determinism.

The SIGKILL and determinism tests run ``keras-skipae train --deterministic`` in
subprocesses (op determinism is process-wide and irreversible). The kills land at
points chosen with the test hook ``KERAS_SKIPAE_FAULT`` (:mod:`keras_skipae.faults`):
the process writes a "ready" file and waits there until the test kills it.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_skipae import faults, training
from keras_skipae.ownership import MARKER
from keras_skipae.runs import read_backup

EPOCHS = 4


def _train_cmd(root, out):
    return [
        sys.executable,
        "-m",
        "keras_skipae_cli",
        "train",
        "--data",
        str(root),
        "--category",
        "mesh",
        "--out",
        str(out),
        "--epochs",
        str(EPOCHS),
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "4",
        "--image-size",
        "32",
        "--filters",
        "4",
        "--depth",
        "2",
        "--seed",
        "7",
        "--save-best",
        "--deterministic",
        "--quiet",
    ]


def _env(fault=None, ready=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env.pop(faults.ENV, None)
    if fault:
        env[faults.ENV] = fault
        env[faults.READY_ENV] = str(ready)
    return env


def _start(cmd, env):
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc, timeout=240):
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


def _kill_at(cmd, fault, ready, timeout=240):
    """Runs ``cmd`` until it reaches the fault point ``fault``, then SIGKILLs it."""
    ready.unlink(missing_ok=True)
    proc = _start(cmd, _env(fault, ready))
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")
                pytest.fail(
                    f"the run ended before {fault!r} (rc {proc.returncode}):\n{out[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"the run did not reach {fault!r} in {timeout} s")
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _weights(path):
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    return model.get_weights()


def _epochs(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def _check_complete(run_dir):
    """Every file a run folder holds reads completely; no temporary is left over."""
    for path in run_dir.rglob("*"):
        if path.is_dir() or "logs" in path.relative_to(run_dir).parts:
            continue  # TensorBoard event files: records, read by TensorBoard as far as valid
        # The ownership marker is the one hidden file a run folder keeps.
        assert not path.name.startswith(".") or path.name == MARKER, f"left over: {path}"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
        elif path.suffix == ".keras":
            with zipfile.ZipFile(path) as z:
                assert z.testzip() is None, path
        elif path.name.endswith(".h5"):
            with h5py.File(path, "r") as f:
                assert len(f.keys()) > 0, path
        elif path.suffix == ".png":
            assert path.read_bytes()[-8:-4] == b"IEND", path


@pytest.fixture(scope="module")
def reference_runs(synthetic_root, tmp_path_factory):
    """Two uninterrupted runs with the same seed, in two processes at once."""
    base = tmp_path_factory.mktemp("reference")
    procs = [_start(_train_cmd(synthetic_root, base / name), _env()) for name in ("a", "b")]
    for proc in procs:
        _finish(proc)
    return base / "a", base / "b"


@pytest.mark.slow
def test_two_deterministic_processes_give_bit_identical_weights(reference_runs):
    a, b = reference_runs
    wa, wb = _weights(a / "model.keras"), _weights(b / "model.keras")
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    assert json.loads((a / "config.json").read_text())["runtime"]["deterministic"] is True
    # It trained: the weights moved from a fresh model's (same seed, same builder).
    assert _epochs(a) == list(range(EPOCHS))


@pytest.mark.slow
def test_sigkill_mid_epoch_and_during_writes_resumes_to_the_same_weights(
    reference_runs, synthetic_root, tmp_path
):
    run, ready = tmp_path / "run", tmp_path / "ready"
    cmd = _train_cmd(synthetic_root, run)

    # 1. Killed in the middle of epoch 2 (after its first step): epochs 0 and 1 finished.
    _kill_at(cmd, "batch-end:epoch=2:batch=0", ready)
    assert read_backup(run / "backup")["epoch"] == 2
    assert _epochs(run) == [0, 1]
    assert not (run / "model.keras").exists()

    # 2. Resumed, killed while the backup of epoch 2 is being written: the previous
    #    backup (2 epochs) is the one that counts, complete.
    _kill_at(cmd, "backup-write:epoch=3", ready)
    state = read_backup(run / "backup")
    assert state["epoch"] == 2
    assert any(p.name.startswith(".") for p in (run / "backup").iterdir())  # the killed write

    # 3. Resumed to the end.
    _finish(_start(cmd, _env()))
    assert _epochs(run) == list(range(EPOCHS))
    assert not (run / "backup").exists()
    _check_complete(run)
    ref = _weights(reference_runs[0] / "model.keras")
    got = _weights(run / "model.keras")
    for x, y in zip(ref, got, strict=True):
        np.testing.assert_array_equal(x, y)
    ref_hist = training.read_history(reference_runs[0] / "history.csv")
    got_hist = training.read_history(run / "history.csv")
    assert got_hist["loss"] == ref_hist["loss"]


_SAVE_SCRIPT = """
import sys, keras
from keras_skipae.training.callbacks.atomic_best_model import _save_model_atomic
inputs = keras.Input((4,))
model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
_save_model_atomic(model, sys.argv[1])
"""


def _dense(value):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    model.get_layer("d").kernel.assign(np.full((4, 2), value, "float32"))
    return model


@pytest.mark.slow
def test_sigkill_while_model_keras_is_replaced_keeps_the_previous_file(tmp_path):
    from keras_skipae.training.callbacks.atomic_best_model import _save_model_atomic

    path, ready = tmp_path / "model.keras", tmp_path / "ready"
    _save_model_atomic(_dense(1.5), path)
    good = path.read_bytes()
    _kill_at([sys.executable, "-c", _SAVE_SCRIPT, str(path)], "model-write:file=model.keras", ready)
    assert path.read_bytes() == good
    np.testing.assert_array_equal(_weights(path)[0], np.full((4, 2), 1.5, "float32"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.keras.tmp-")]


# ----------------------------------------------------------------- NaN / Inf
def _tiny():
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny")


def _pairs(bad_batch=None, value=np.nan, n_batches=8, batch=2):
    """A repeated stream of (x, x) batches; batch ``bad_batch`` of the stream holds ``value``."""
    x = np.random.default_rng(0).random((n_batches * batch, 16, 16, 1)).astype("float32")
    if bad_batch is not None:
        x[bad_batch * batch, 3, 3, 0] = value
    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch)
    return ds.map(lambda a: (a, a)).repeat()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_the_last_finite_epoch(
    tmp_path, value
):
    run_dir = tmp_path / "run"
    kwargs = dict(
        corruption=None, epochs=4, steps_per_epoch=3, run_dir=run_dir, verbose=0,
        tensorboard=False, schedule=None, validation_split=0.0,
    )  # fmt: skip
    # Stream batch 7 = epoch index 2 (third epoch), its second step.
    with pytest.raises(
        training.NonFiniteLossError,
        match=r"epoch 3/4 .*epoch 2\), step 2\b.* keeps the backup of epoch 2, the last finished",
    ):
        training.train(_tiny(), _pairs(bad_batch=7, value=value), **kwargs)
    assert not (run_dir / "model.keras").exists()
    state = read_backup(run_dir / "backup")
    assert state["epoch"] == 2
    probe = _tiny()
    probe.compile(keras.optimizers.Adam(), loss="mse")
    probe.optimizer.build(probe.trainable_variables)
    probe.load_weights(state["weights_path"])
    assert all(np.isfinite(w).all() for w in probe.get_weights())
    assert _epochs(run_dir) == [0, 1]

    # Started again on clean data, it resumes after the last finite epoch.
    run = training.train(_tiny(), _pairs(), **kwargs)
    assert run.initial_epoch == 2
    assert _epochs(run_dir) == [0, 1, 2, 3]
    assert all(np.isfinite(w).all() for w in _weights(run_dir / "model.keras"))


def test_non_finite_loss_in_the_first_epoch_claims_no_backup(tmp_path):
    run_dir = tmp_path / "run"
    kwargs = dict(
        corruption=None, epochs=2, steps_per_epoch=3, run_dir=run_dir, verbose=0,
        tensorboard=False, schedule=None, validation_split=0.0,
    )  # fmt: skip
    no_backup = r"step 2\b.*The run folder holds no backup of a finished epoch to resume from"
    with pytest.raises(training.NonFiniteLossError, match=no_backup):
        training.train(_tiny(), _pairs(bad_batch=1), **kwargs)
    assert read_backup(run_dir / "backup") is None
    # Without a run folder there is nothing to resume either.
    kwargs["run_dir"] = None
    with pytest.raises(training.NonFiniteLossError, match="without a run folder keeps no backup"):
        training.train(_tiny(), _pairs(bad_batch=1), **kwargs)


def test_weights_turning_non_finite_at_an_epoch_end_are_not_backed_up(tmp_path):
    class Poison(keras.callbacks.Callback):
        """After the (finite) loss of epoch 1's only step: as an update gone wrong."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1:
                layer = self.model.get_layer("out")
                layer.bias.assign(np.full(layer.bias.shape, np.nan, "float32"))

    run_dir = tmp_path / "run"
    with pytest.raises(
        training.NonFiniteLossError, match=r"non-finite.*epoch 2.*backup of epoch 1,"
    ):
        training.train(
            _tiny(), _pairs(), corruption=None, epochs=4, steps_per_epoch=1, run_dir=run_dir,
            verbose=0, tensorboard=False, schedule=None, validation_split=0.0,
            callbacks=[Poison()],
        )  # fmt: skip
    assert read_backup(run_dir / "backup")["epoch"] == 1
    assert not (run_dir / "model.keras").exists()


def test_save_model_atomic_refuses_non_finite_weights(tmp_path):
    from keras_skipae.training.callbacks.atomic_best_model import _save_model_atomic

    model = _tiny()
    path = tmp_path / "model.keras"
    _save_model_atomic(model, path)
    good = path.read_bytes()
    model.get_layer("out").bias.assign(np.full((1,), np.inf, "float32"))
    with pytest.raises(training.NonFiniteLossError, match="model.keras"):
        _save_model_atomic(model, path)
    assert path.read_bytes() == good


def test_a_run_stopped_after_its_last_epoch_writes_model_keras_when_started_again(tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_train_end(self, logs=None):  # after every epoch, before model.keras
            raise RuntimeError("simulated kill")

    run_dir = tmp_path / "run"
    kwargs = dict(
        corruption=None, epochs=2, steps_per_epoch=2, run_dir=run_dir, verbose=0,
        tensorboard=False, schedule=None, validation_split=0.0,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated kill"):
        first = _tiny()
        training.train(first, _pairs(), callbacks=[Crash()], **kwargs)
    assert not (run_dir / "model.keras").exists()
    assert read_backup(run_dir / "backup")["epoch"] == 2
    run = training.train(_tiny(), _pairs(), **kwargs)
    assert run.initial_epoch == 2
    assert _epochs(run_dir) == [0, 1]
    for x, y in zip(first.get_weights(), _weights(run_dir / "model.keras"), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not (run_dir / "backup").exists()


# ----------------------------------------------------------------- soak
@pytest.mark.slow
def test_soak_300_steps_memory_and_file_handles_stay_flat(synthetic_root, tmp_path):
    """bench/soak.py's pipeline (stains, validation, previews, TensorBoard, the
    discrepancy monitor, backups), shortened: a tiny AESc (4 filters, depth 2) at
    32 px, batch 2, 300 steps in epochs of 75 (every per-epoch writer runs before step 100;
    the scalars 4 times in all, the preview grids at the first and the last epoch)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", path)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    samples = soak.soak(
        synthetic_root, "mesh", tmp_path / "run", steps=300, steps_per_epoch=75,
        image_size=32, batch_size=2, model_kwargs={"filters": 4, "depth": 2}, probes=4,
    )  # fmt: skip
    assert [s["step"] for s in samples] == [100, 200, 300]
    first, last = samples[0], samples[-1]
    assert last["rss_mib"] < 1.25 * first["rss_mib"], samples
    assert last["fds"] <= first["fds"], samples
    run = tmp_path / "run"
    # preview grids at most every 30 s: the first and the last epoch's
    assert sorted(p.name for p in (run / "previews").glob("*.png")) == [
        "epoch_001.png",
        "epoch_004.png",
    ]
    assert (run / "discrepancy" / "discrepancy.csv").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*"))


def test_resume_continues_the_dropout_generator(tmp_path):
    """save_weights leaves seed-generator states out; the backup keeps them."""

    def dropout_model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16, 16, 1))
        x = keras.layers.Dropout(0.5, seed=3, name="drop")(inputs)
        outputs = keras.layers.Conv2D(1, 3, padding="same", name="out")(x)
        return keras.Model(inputs, outputs, name="dropnet")

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated kill")

    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    same_batch = tf.data.Dataset.from_tensors((x, x)).repeat()  # position-independent
    kwargs = dict(
        corruption=None, epochs=4, steps_per_epoch=2, verbose=0, tensorboard=False,
        schedule=None, validation_split=0.0,
    )  # fmt: skip
    ref = training.train(dropout_model(), same_batch, run_dir=tmp_path / "a", **kwargs)
    with pytest.raises(RuntimeError, match="simulated kill"):
        training.train(
            dropout_model(), same_batch, run_dir=tmp_path / "b", callbacks=[Crash()], **kwargs
        )
    run = training.train(dropout_model(), same_batch, run_dir=tmp_path / "b", **kwargs)
    assert run.initial_epoch == 2
    for a, b in zip(ref.model.get_weights(), run.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
