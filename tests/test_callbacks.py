"""Tests for keras_skipae.training.callbacks.DiscrepancyMonitor."""

import csv
import json

import keras
import numpy as np
import pytest
from conftest import make_tiny_model  # noqa: E402

from keras_skipae import plotting
from keras_skipae.analysis import make_probe_pairs
from keras_skipae.models import tap_names
from keras_skipae.training import callbacks

SHAPE = (32, 32, 1)


def _data(n=8, seed=0):
    x = np.random.default_rng(seed).random((n, *SHAPE)).astype("float32")
    clean, corrupted = make_probe_pairs(x, "stains", seed=1)
    return clean, corrupted


def _model(**kw):
    return make_tiny_model("aesc", **kw)


def test_monitor_writes_its_files(tmp_path):
    clean, corrupted = _data()
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    monitor = callbacks.DiscrepancyMonitor(
        clean[:4], corruption="stains", seed=0, every_n_epochs=2, out_dir=tmp_path
    )
    model.fit(corrupted, clean, batch_size=4, epochs=3, verbose=0, callbacks=[monitor])
    # Epochs 2 and 3 (the last is always recorded), 0-based 1 and 2.
    assert [h["epoch"] for h in monitor.history] == [1, 2]
    with open(tmp_path / "discrepancy.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    layers = tap_names(model)
    assert len(rows) == 2 * len(layers)
    assert [r["layer"] for r in rows[: len(layers)]] == layers
    assert all(-1.0 <= float(r["cosine_median"]) <= 1.0 for r in rows)
    saved = json.loads((tmp_path / "discrepancy.json").read_text())
    assert saved["layers"] == layers and len(saved["epochs"]) == 2
    assert len(saved["epochs"][0]["cosine"]["dec0_out"]) == 4
    for name in ("similarity_over_epochs.png", "cosine_per_layer.png", "channel_means.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    assert not list(tmp_path.glob(".*tmp-*"))  # atomic writes left nothing behind


@pytest.mark.slow
def test_monitor_resumes_and_replaces_later_epochs(tmp_path):
    clean, corrupted = _data(4)
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    kw = {"out_dir": tmp_path, "tensorboard": False, "save_figures": False}
    mon = callbacks.DiscrepancyMonitor(clean, corrupted, **kw)
    model.fit(corrupted, clean, batch_size=4, epochs=3, verbose=0, callbacks=[mon])
    mon2 = callbacks.DiscrepancyMonitor(clean, corrupted, **kw)
    model.fit(
        corrupted, clean, batch_size=4, epochs=3, initial_epoch=1, verbose=0, callbacks=[mon2]
    )
    saved = json.loads((tmp_path / "discrepancy.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [0, 1, 2]
    assert not (tmp_path / "figures").exists()


def _train(seed, with_monitor, tmp_path=None):
    keras.utils.set_random_seed(seed)
    # Dropout draws from Keras' global seed generator: any draw by the monitor
    # would change the masks, hence the weights.
    model = _model(dropout=0.2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    clean, corrupted = _data(8)
    cbs = []
    if with_monitor:
        cbs.append(
            callbacks.DiscrepancyMonitor(
                clean[:4], corruption="stains", seed=3, out_dir=tmp_path, tensorboard=True
            )
        )
    model.fit(corrupted, clean, batch_size=4, epochs=2, shuffle=True, verbose=0, callbacks=cbs)
    return [np.asarray(w) for w in model.weights]


@pytest.mark.slow
def test_monitor_does_not_change_training(tmp_path):
    without = _train(0, False)
    with_ = _train(0, True, tmp_path)
    assert len(without) == len(with_)
    for a, b in zip(without, with_):
        np.testing.assert_array_equal(a, b)
    # The comparison can fail: another seed gives other weights.
    other = _train(1, False)
    assert any(not np.array_equal(a, b) for a, b in zip(without, other))


def test_monitor_argument_errors():
    clean, corrupted = _data(2)
    with pytest.raises(ValueError, match="every_n_epochs"):
        callbacks.DiscrepancyMonitor(clean, corrupted, every_n_epochs=0)
    with pytest.raises(ValueError, match="probe_corrupted"):
        callbacks.DiscrepancyMonitor(clean, corrupted[:1])
    with pytest.raises(ValueError, match="not both"):
        callbacks.DiscrepancyMonitor(clean, corrupted, corruption="stains")
    with pytest.raises(ValueError, match="probe_clean"):
        callbacks.DiscrepancyMonitor(clean[0])


def test_channel_means_grid_and_figures(tmp_path):
    rng = np.random.default_rng(0)
    layers = ["enc0_out", "bottleneck_out", "dec0_out"]
    sizes = [8, 2, 8]
    mc = {k: rng.random((3, s, s)) for k, s in zip(layers, sizes)}
    mk = {k: rng.random((3, s, s)) for k, s in zip(layers, sizes)}
    grid = callbacks.channel_means_grid(mc, mk, layers, cell=16, pairs=2)
    assert grid.shape == (4 * 18, 3 * 18) and grid.dtype == np.uint8
    fig = plotting.plot_channel_means(
        {
            "AE": ([mc[k][0] for k in layers], [mk[k][0] for k in layers]),
            "AESc": ([mc[k][1] for k in layers], [mk[k][1] for k in layers]),
        },
        layers=layers,
        path=tmp_path / "a.png",
        close=True,
    )
    assert len(fig.axes) == 4 * 3
    assert "8x8" in fig.axes[0].get_title()
    plotting.plot_similarity_distribution(
        {"AE": {k: rng.random(5) for k in layers}, "AESc": {k: rng.random(5) for k in layers}},
        layers=layers,
        kind="violin",
        path=tmp_path / "b.png",
        close=True,
    )
    fig = plotting.plot_similarity_distribution(
        {"AE": {k: 1 - rng.random(5) / 100 for k in layers}},
        layers=layers,
        scale="1-cos",
        close=True,
    )
    assert fig.axes[0].get_yscale() == "log"
    plotting.plot_similarity_over_epochs(
        [1, 2, 3], {k: [0.9, 0.8, 0.7] for k in layers}, path=tmp_path / "c.png", close=True
    )
    for name in ("a.png", "b.png", "c.png"):
        assert (tmp_path / name).stat().st_size > 1000
    with pytest.raises(ValueError, match="kind"):
        plotting.plot_similarity_distribution({"AE": {}}, layers=[], kind="bar")
