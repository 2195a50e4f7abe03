"""train(strategy="multiworker") with two real CPU worker processes on localhost.

The test starts this file twice as a script (``python tests/test_multiworker.py
--worker I ...``), each process with its own ``TF_CONFIG`` (a two-worker cluster on
free 127.0.0.1 ports; worker 0 is the chief), and trains a tiny AESc for three steps
of a global batch of 4. Each worker has its own run folder, as on two machines. It
checks that both workers end with identical weights, that only the chief wrote the
run's files (``config.json``, ``model.keras``, ``history.csv``, TensorBoard logs and
previews; the other worker writes its ``BackupAndRestore`` folder only), and that
the loss is within 5 % of a single-worker run on the same global batch (not equal:
BatchNorm's batch statistics are computed per replica, over 2 images instead of 4).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

#: The tiny model and the run every process trains (the same seed everywhere).
MODEL_KWARGS = {"input_shape": (16, 16, 1), "depth": 2, "filters": 4}
TRAIN_KWARGS = {
    "corruption": None,
    "epochs": 1,
    "batch_size": 4,  # the global batch: 2 images per worker
    "validation_split": 0.0,
    "seed": 0,
    "verbose": 0,
}
N_IMAGES = 12  # three steps
TIMEOUT_S = 240


def _images():
    rng = np.random.default_rng(0)
    base = rng.random((1, 16, 16, 1)).astype("float32")
    noise = 0.1 * rng.standard_normal((N_IMAGES, 16, 16, 1))
    return np.clip(base + noise, 0, 1).astype("float32")


def _train(run_dir, strategy):
    import tensorflow as tf

    import keras_skipae as ks

    data = tf.data.Dataset.from_tensor_slices(_images())
    return ks.train(
        "aesc",
        data,
        model_kwargs=MODEL_KWARGS,
        run_dir=run_dir,
        strategy=strategy,
        **TRAIN_KWARGS,
    )


def _free_ports(n):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(output: str) -> str:
    """The end of a worker's output, from its last traceback if it has one."""
    start = output.rfind("Traceback (most recent call last)")
    return output[start:][:3000] + "\n...\n" + output[-1500:] if start >= 0 else output[-4000:]


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_two_workers_train_like_one(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for index in range(2):
            env = dict(
                os.environ,
                TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
                CUDA_VISIBLE_DEVICES="-1",
                TF_CPP_MIN_LOG_LEVEL="2",
            )
            cmd = [sys.executable, __file__, "--run-dir", str(tmp_path / f"run{index}")]
            cmd += ["--out", str(tmp_path / f"worker{index}.npz")]
            procs.append(
                subprocess.Popen(
                    cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        outputs = []
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"a worker did not finish within {TIMEOUT_S} s")
            outputs.append(out)
            assert proc.returncode == 0, f"worker failed:\n{_tail(out)}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert int(chief["chief"]) == 1 and int(other["chief"]) == 0
    assert int(chief["replicas"]) == 2
    n = int(chief["n_weights"])
    assert n == int(other["n_weights"]) > 0
    for i in range(n):
        np.testing.assert_array_equal(chief[f"w{i}"], other[f"w{i}"], err_msg=f"weight {i}")
    run0, run1 = tmp_path / "run0", tmp_path / "run1"
    files0 = _files(run0)
    assert {"config.json", "model.keras", "history.csv"} <= files0
    assert any(f.startswith("logs/") for f in files0)
    # The other worker wrote nothing but its own BackupAndRestore folder.
    assert all(f.startswith("backup/worker-1/") for f in _files(run1)), _files(run1)
    assert not (run1 / "config.json").exists()
    config = json.loads((run0 / "config.json").read_text(encoding="utf-8"))
    assert config["runtime"]["strategy"] == "multiworker"
    assert config["runtime"]["replicas"] == 2

    single = _train(None, None)
    want = float(single.history["loss"][-1])
    got = float(chief["loss"])
    assert got == float(other["loss"])
    assert abs(got - want) <= 0.05 * want, (got, want)
    # Training moved the weights, and towards the single-worker run's.
    import keras

    import keras_skipae as ks

    keras.utils.set_random_seed(0)
    init = ks.get_model("aesc", **MODEL_KWARGS).get_weights()
    ref = single.model.get_weights()
    assert len(ref) == len(init) == n
    moved = sum(float(np.sum((ref[i] - init[i]) ** 2)) for i in range(n))
    apart = sum(float(np.sum((chief[f"w{i}"] - ref[i]) ** 2)) for i in range(n))
    assert moved > 0
    assert apart < moved, (apart, moved)


def _worker(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from keras_skipae import training
    from keras_skipae.training.runtime import _is_chief

    # First, before any TensorFlow operation (the dataset runs some), as documented.
    strategy = training.get_strategy("multiworker")
    run = _train(args.run_dir, "multiworker")
    assert run.model.distribute_strategy is strategy
    weights = {f"w{i}": np.asarray(w) for i, w in enumerate(run.model.get_weights())}
    np.savez(
        args.out,
        chief=int(_is_chief(strategy)),
        replicas=int(strategy.num_replicas_in_sync),
        n_weights=len(weights),
        loss=float(run.history["loss"][-1]),
        **weights,
    )


if __name__ == "__main__":
    _worker()
