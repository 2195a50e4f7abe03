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
from keras_skipae.training.callbacks.atomic_best_model import KeepBestWeights

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


# --------------------------------------------------------------------------- RunBackup intervals


class _Seen(keras.callbacks.Callback):
    """After RunBackup: the epoch of the backup on disk at each epoch end; raises
    ``KeyboardInterrupt`` (a kill: no on_train_end) at the end of epoch ``kill_after``."""

    def __init__(self, folder, kill_after=None, stop_after=None):
        super().__init__()
        self.folder, self.kill_after, self.stop_after = folder, kill_after, stop_after
        self.epochs, self.weights = [], {}

    def on_train_begin(self, logs=None):
        self.begin_weights = [np.array(w) for w in self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        from keras_skipae.runs import read_backup

        state = read_backup(self.folder)
        self.epochs.append(None if state is None else state["epoch"])
        self.weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]
        if self.stop_after == epoch + 1:
            self.model.stop_training = True
        if self.kill_after == epoch + 1:
            raise KeyboardInterrupt


def _fit_with_backup(folder, epochs, seen=None, **kw):
    keras.utils.set_random_seed(0)
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((8, *SHAPE)).astype("float32")
    backup = callbacks.RunBackup(folder, **kw)
    seen = seen or _Seen(folder)
    model.fit(x, x, batch_size=4, epochs=epochs, callbacks=[backup, seen], verbose=0)
    return model, seen


def test_backup_every_n_epochs_and_after_the_last(tmp_path):
    from keras_skipae.runs import read_backup

    _, seen = _fit_with_backup(tmp_path / "b", 5, every_epochs=3)
    assert seen.epochs == [None, None, 3, 3, 5]
    assert read_backup(tmp_path / "b")["epoch"] == 5


def test_backup_min_seconds_writes_only_the_last_epoch(tmp_path):
    _, seen = _fit_with_backup(tmp_path / "b", 4, min_seconds=1e9)
    assert seen.epochs == [None, None, None, 4]


def test_backup_every_epoch_by_default(tmp_path):
    _, seen = _fit_with_backup(tmp_path / "b", 3)
    assert seen.epochs == [1, 2, 3]


def test_backup_written_when_fit_stops_early_between_backups(tmp_path):
    from keras_skipae.runs import read_backup

    seen = _Seen(tmp_path / "b", stop_after=2)
    _fit_with_backup(tmp_path / "b", 6, seen=seen, every_epochs=5)
    assert seen.epochs == [None, None]  # not due at epoch 2 ...
    assert read_backup(tmp_path / "b")["epoch"] == 2  # ... written by on_train_end


def test_resume_after_a_kill_between_backups_starts_from_the_last_backup(tmp_path):
    folder = tmp_path / "b"
    killed = _Seen(folder, kill_after=3)
    with pytest.raises(KeyboardInterrupt):
        _fit_with_backup(folder, 5, seen=killed, every_epochs=2)
    assert killed.epochs == [None, 2, 2]  # killed after epoch 3: its state is lost
    resumed = _Seen(folder)
    _fit_with_backup(folder, 5, seen=resumed, every_epochs=2)
    # restored at epoch 2 (the weights of the first run then), trained epochs 3..5 again
    for got, want in zip(resumed.begin_weights, killed.weights[2]):
        np.testing.assert_array_equal(got, want)
    assert sorted(resumed.weights) == [3, 4, 5]
    assert resumed.epochs == [2, 4, 5]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"every_epochs": 0}, r"`every_epochs` must be an int >= 1\. Received: every_epochs=0"),
        ({"every_epochs": 1.5}, r"Received: every_epochs=1\.5"),
        ({"every_epochs": True}, r"Received: every_epochs=True"),
        ({"min_seconds": -1}, r"`min_seconds` must be a finite number >= 0\. .*=-1"),
        ({"min_seconds": float("nan")}, r"Received: min_seconds=nan"),
        ({"min_seconds": "60"}, r"Received: min_seconds='60'"),
    ],
)
def test_backup_interval_argument_errors(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        callbacks.RunBackup(tmp_path / "b", **kw)


@pytest.mark.parametrize("compiled", [False, True])
def test_preview_probe_mse_and_grid_match_the_eager_model(tmp_path, compiled):
    clean, corrupted = _data(n=3)
    model = _model()
    if compiled:
        model.compile(optimizer="adam", loss="mse")
    cb = callbacks.ReconstructionPreview(corrupted, clean, image_dir=tmp_path / "png")
    cb.set_model(model)
    logs = {}
    cb.on_epoch_end(0, logs)
    want = np.asarray(model(clean, training=False))
    np.testing.assert_allclose(logs["probe_good_mse"], np.mean((want - clean) ** 2), rtol=1e-4)
    assert (tmp_path / "png" / "epoch_001.png").is_file()


def _scalar_steps(log_dir, tag):
    """The steps at which ``tag`` was written to the event files under ``log_dir``."""
    import tensorflow as tf

    steps = []
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for v in event.summary.value if v.tag == tag]
    return sorted(steps)


@pytest.mark.parametrize("kind", ["reconstruction", "segmentation"])
def test_preview_draws_grids_at_most_every_min_seconds(kind, tmp_path, monkeypatch):
    from keras_skipae.training.callbacks import preview

    clean, corrupted = _data(n=2)
    model = _model()
    if kind == "reconstruction":
        cls, args = callbacks.ReconstructionPreview, (corrupted, clean)
    else:
        cls, args = callbacks.SegmentationPreview, (corrupted, (clean > 0.5).astype("float32"))
    cb = cls(*args, log_dir=tmp_path / "logs", image_dir=tmp_path / "png", min_seconds=30)
    cb.set_model(model)
    # time.monotonic() calls: draw e0, check e1, check + draw e2, check e3, check e4, draw at end
    clock = iter([0.0, 10.0, 31.0, 31.0, 40.0, 55.0, 100.0])
    monkeypatch.setattr(preview.time, "monotonic", lambda: next(clock))
    drawn = []
    for epoch, logs in enumerate({"loss": 1.0 / (e + 1)} for e in range(5)):
        cb.on_epoch_end(epoch, logs)
        drawn.append(sorted(p.name for p in (tmp_path / "png").iterdir()))
        if kind == "reconstruction":
            assert np.isfinite(logs["probe_good_mse"])  # every epoch
    # t=0 drawn (the first); t=10 not (10 s after it); t=31 drawn; t=40 and t=55 not
    # (9 and 24 s after the last grid); the last epoch's grid when training ends.
    assert drawn[-1] == ["epoch_001.png", "epoch_003.png"]
    assert [len(d) for d in drawn] == [1, 1, 2, 2, 2]
    cb.on_train_end()
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "epoch_001.png",
        "epoch_003.png",
        "epoch_005.png",
    ]
    assert _scalar_steps(tmp_path / "logs", "epoch_loss") == [0, 1, 2, 3, 4]
    assert _scalar_steps(tmp_path / "logs", cb.tag) == [0, 2, 4]


def test_preview_without_an_interval_draws_every_epoch_and_nothing_twice(tmp_path):
    clean, corrupted = _data(n=2)
    cb = callbacks.ReconstructionPreview(corrupted, clean, image_dir=tmp_path / "png")
    cb.set_model(_model())
    for epoch in range(3):
        cb.on_epoch_end(epoch, {})
    cb.on_train_end()
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
        "epoch_003.png",
    ]


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_preview_refuses_a_bad_interval(bad, tmp_path):
    clean, _ = _data(n=2)
    with pytest.raises(ValueError, match=r"`min_seconds` must be a number >= 0. Received"):
        callbacks.ReconstructionPreview(clean, min_seconds=bad)


# ------------------------------------------------------------------ KeepBestWeights
def _keep_best_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return model


def _drive(callback, model, signal):
    """Epoch ends with ``signal`` values, the weights set to ``epoch + 1`` before each;
    returns the weights the model ends with."""
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(signal):
        model.set_weights([np.full_like(w, epoch + 1.0) for w in model.get_weights()])
        callback.on_epoch_end(epoch, {"val_head_signal": value, "val_loss": 0.0})
    callback.on_train_end()
    return model.get_weights()


def test_keep_best_weights_restores_the_best_epoch():
    cb = KeepBestWeights("val_head_signal")
    weights = _drive(cb, _keep_best_model(), [0.5, 0.3, 0.4, 0.35])
    assert cb.best == pytest.approx(0.3) and cb.best_epoch == 1 and cb.restored_epoch == 1
    assert all(np.all(w == 2.0) for w in weights)  # epoch 1's weights


def test_keep_best_weights_keeps_the_last_epoch_when_it_is_best(tmp_path):
    cb = KeepBestWeights("val_head_signal", tmp_path / "best.keras")
    weights = _drive(cb, _keep_best_model(), [0.5, 0.4, 0.3])
    assert cb.restored_epoch is None and all(np.all(w == 3.0) for w in weights)
    saved = keras.saving.load_model(tmp_path / "best.keras", compile=False).get_weights()
    assert all(np.all(w == 3.0) for w in saved)


def test_keep_best_weights_after_a_resume_reads_the_file(tmp_path):
    path = tmp_path / "best.keras"
    model = _keep_best_model()
    first = KeepBestWeights("val_head_signal", path)
    first.set_model(model)
    model.set_weights([np.full_like(w, 7.0) for w in model.get_weights()])
    first.on_epoch_end(0, {"val_head_signal": 0.2})
    # A resumed run: a new callback with the backed-up attributes and no weights in memory.
    resumed = KeepBestWeights("val_head_signal", path)
    resumed.best, resumed.best_epoch = first.best, first.best_epoch
    resumed.set_model(model)
    model.set_weights([np.full_like(w, 9.0) for w in model.get_weights()])
    resumed.on_epoch_end(1, {"val_head_signal": 0.6})
    resumed.on_train_end()
    assert resumed.restored_epoch == 0
    assert all(np.all(w == 7.0) for w in model.get_weights())


def test_keep_best_weights_warns_when_the_best_weights_are_gone():
    cb = KeepBestWeights("val_head_signal")  # no file, nothing in memory (resumed)
    cb.best, cb.best_epoch = 0.1, 0
    model = _keep_best_model()
    cb.set_model(model)
    cb.on_epoch_end(1, {"val_head_signal": 0.5})
    with pytest.warns(UserWarning, match="lowest at epoch 1, but its weights were not kept"):
        cb.on_train_end()
    assert cb.restored_epoch is None


class _Signal(keras.callbacks.Callback):
    """Puts ``values[epoch]`` into the epoch's logs as ``signal`` (for the callbacks after
    it), and raises KeyboardInterrupt after epoch ``kill_after`` (0-based)."""

    def __init__(self, values, kill_after=None):
        super().__init__()
        self.values, self.kill_after = values, kill_after

    def on_epoch_end(self, epoch, logs=None):
        if self.values is not None:
            logs["signal"] = self.values[epoch]

    def on_epoch_begin(self, epoch, logs=None):
        if self.kill_after is not None and epoch == self.kill_after + 1:
            raise KeyboardInterrupt


@pytest.mark.parametrize("values", [[0.5, 0.2, 0.4, 0.3], None], ids=["best-before-kill", "none"])
def test_keep_best_weights_across_a_kill_and_resume(tmp_path, values):
    from keras_skipae.runs import read_backup

    x = np.random.default_rng(0).random((8, *SHAPE)).astype("float32")

    def fit(kill_after=None):
        keras.utils.set_random_seed(0)
        model = _model()
        model.compile(optimizer="adam", loss="mse")
        keep = KeepBestWeights("signal", tmp_path / "best.keras")
        backup = callbacks.RunBackup(tmp_path / "b", callbacks=[keep])
        signal = _Signal(values, kill_after)
        model.fit(x, x, batch_size=4, epochs=4, callbacks=[signal, keep, backup], verbose=0)
        return model, keep

    with pytest.raises(KeyboardInterrupt):
        fit(kill_after=1)
    assert read_backup(tmp_path / "b")["epoch"] == 2
    model, keep = fit()  # resumes after epoch 2; nothing of the first run is in memory
    if values is None:  # never logged: inf and -1 go through the backup and back
        assert keep.best == np.inf and keep.best_epoch == -1 and keep.restored_epoch is None
        assert not (tmp_path / "best.keras").exists()
        return
    # Epoch 1 (0.2) stays best after the resume; its weights come back from best.keras.
    assert keep.best == pytest.approx(0.2) and keep.best_epoch == 1 and keep.restored_epoch == 1
    saved = keras.saving.load_model(tmp_path / "best.keras", compile=False).get_weights()
    for got, want in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(got, want)
