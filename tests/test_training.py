"""training.train: learning rate, run folder, refusal, resume, XLA, strategies."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_skipae import data as ks_data
from keras_skipae import training
from keras_skipae.runs import RunFolder


def _tiny(name="tiny"):
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = keras.layers.ReLU(name="act")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="out")(x)
    return keras.Model(inputs, outputs, name=name)


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((1, 32, 32, 1)).astype("float32")
    return np.clip(base + 0.05 * rng.standard_normal((n, 32, 32, 1)), 0, 1).astype("float32")


def _dataset(n=12, seed=0):
    return tf.data.Dataset.from_tensor_slices(_images(n, seed))


def _history_epochs(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.lrs, self.epochs, self.start_weights = [], [], None

    def on_train_begin(self, logs=None):
        self.start_weights = [w.copy() for w in self.model.get_weights()]

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def test_resolve_jit_compile():
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert training.resolve_jit_compile("auto") is has_gpu
    assert training.resolve_jit_compile(True) is True
    assert training.resolve_jit_compile(False) is False
    with pytest.raises(ValueError, match="jit_compile='yes'"):
        training.resolve_jit_compile("yes")


def test_get_strategy_names():
    assert training.get_strategy(None) is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="strategy='tpu-pod'"):
        training.get_strategy("tpu-pod")


@pytest.mark.parametrize("lr", [0.0123, 3e-4])
def test_learning_rate_is_applied(lr):
    rec = _Recorder()
    run = training.train(
        _tiny(),
        _dataset(),
        corruption=None,
        epochs=1,
        batch_size=4,
        learning_rate=lr,
        reduce_lr=False,
        callbacks=[rec],
        verbose=0,
    )
    assert float(keras.ops.convert_to_numpy(run.model.optimizer.learning_rate)) == pytest.approx(lr)
    assert rec.lrs and all(v == pytest.approx(lr) for v in rec.lrs)
    assert run.history["learning_rate"][0] == pytest.approx(lr)


@pytest.mark.parametrize("lr", [float("inf"), float("nan")])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused(tmp_path, lr):
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number > 0"):
        training.train(_tiny(), _dataset(), learning_rate=lr, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_tile_larger_than_the_images_is_refused_before_training(tmp_path, synthetic_root):
    from keras_skipae import data

    full = data.mvtec_dataset(synthetic_root, "mesh", image_size=None)
    kwargs = dict(epochs=1, batch_size=4, run_dir=tmp_path / "run", verbose=0, tile_size=48)
    model = {"input_shape": (48, 48, 1), "depth": 2, "filters": 4}
    with pytest.raises(
        ValueError,
        match=r"at least tile_size=48 pixels a side, but the image '.*mesh/train/good/\d+\.png' "
        r"is 32x32: .*Received: tile_size=48",
    ):
        training.train("aesc", full, model_kwargs=model, **kwargs)
    assert not (tmp_path / "run").exists()
    # Arrays of one static size: the same message, without a file.
    with pytest.raises(ValueError, match=r"but the image is 32x32: .*Received: tile_size=48"):
        training.train("aesc", _dataset(), model_kwargs=model, **kwargs)


def test_one_epoch_writes_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    run = training.train(
        _tiny(),
        _dataset(),
        corruption=None,
        epochs=1,
        batch_size=4,
        run_dir=run_dir,
        data_config={"root": "somewhere", "category": "grid"},
        save_best=True,
        verbose=0,
    )
    for name in ("config.json", "model.keras", "best.keras", "history.csv"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "backup").exists()  # removed when the run finishes
    assert list((run_dir / "logs" / "validation").glob("events.out.tfevents.*"))
    assert list((run_dir / "previews").glob("epoch_001.png"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["name"] == "tiny"
    assert config["data"]["category"] == "grid"
    assert config["data"]["n_train"] + config["data"]["n_val"] == 12
    assert config["training"]["epochs"] == 1
    assert run.config == config
    # RunConfig reads it and writes it back unchanged, key order included.
    typed = RunFolder(run_dir).run_config()
    assert json.dumps(typed.to_dict()) == json.dumps(config)
    assert (typed.data.category, typed.training.epochs, typed.tiling) == ("grid", 1, None)
    assert "task" not in config["training"] and "tile_size" not in config["training"]
    assert _history_epochs(run_dir) == [0]
    assert {"loss", "val_loss", "psnr", "val_ssim", "probe_good_mse"} <= set(run.history)
    model, cfg = training.load_run(run_dir)
    x = _images(2)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), run.model.predict(x, verbose=0), atol=1e-6
    )
    assert cfg == config
    (run_dir / "best.keras").unlink()  # as if trained without save_best
    with pytest.raises(FileNotFoundError, match="without --save-best"):
        training.load_run(run_dir, best=True)


def test_tensorboard_event_file_holds_images_and_scalars(tmp_path):
    run_dir = tmp_path / "run"
    training.train(
        _tiny(),
        _dataset(),
        corruption=None,
        epochs=2,
        batch_size=4,
        run_dir=run_dir,
        preview_images=3,
        verbose=0,
    )
    tags = {}
    for path in (run_dir / "logs").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, set()).add(event.step)
    assert tags["reconstructions"] == {0, 1}
    assert tags["epoch_loss"] == {0, 1}


@pytest.mark.slow
def test_refuses_a_different_run_and_a_finished_one(tmp_path):
    run_dir = tmp_path / "run"
    kwargs = dict(
        corruption=None, epochs=1, batch_size=4, run_dir=run_dir, verbose=0, tensorboard=False
    )
    training.train(_tiny(), _dataset(), learning_rate=1e-3, **kwargs)
    with pytest.raises(FileExistsError, match="different run"):
        training.train(_tiny(), _dataset(), learning_rate=2e-3, **kwargs)
    with pytest.raises(FileExistsError, match="already finished"):
        training.train(_tiny(), _dataset(), learning_rate=1e-3, **kwargs)
    (run_dir / "evaluation").mkdir()  # the old model's metrics must go with it
    (run_dir / "evaluation" / "metrics.json").write_text("{}")
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"does not write there \('notes.txt'\)"):
        training.train(_tiny(), _dataset(), learning_rate=2e-3, overwrite=True, **kwargs)
    assert (run_dir / "model.keras").is_file() and (run_dir / "notes.txt").read_text() == "mine"
    (run_dir / "notes.txt").unlink()  # only a run folder that holds nothing else is replaced
    run = training.train(_tiny(), _dataset(), learning_rate=2e-3, overwrite=True, **kwargs)
    assert json.loads((run_dir / "config.json").read_text())["training"]["learning_rate"] == 2e-3
    assert run.history["epoch"] == [0]
    assert not (run_dir / "evaluation").exists()
    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no keras_skipae run config"):
        training.train(_tiny(), _dataset(), run_dir=other, corruption=None, epochs=1, verbose=0)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            self.weights = [w.copy() for w in self.model.get_weights()]
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_resume_continues_after_the_interrupted_epoch(tmp_path):
    run_dir = tmp_path / "run"
    kwargs = dict(corruption=None, epochs=4, batch_size=4, run_dir=run_dir, verbose=0, seed=3)
    crash = _Interrupt(at_epoch=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.train(_tiny, _dataset(), callbacks=[crash], **kwargs)
    assert (run_dir / "backup").is_dir()
    assert not (run_dir / "model.keras").exists()
    assert _history_epochs(run_dir) == [0, 1]

    rec = _Recorder()
    fresh = _tiny()
    fresh_weights = [w.copy() for w in fresh.get_weights()]
    run = training.train(lambda: fresh, _dataset(), callbacks=[rec], **kwargs)
    assert run.initial_epoch == 2
    assert rec.epochs == [2, 3]
    # The resumed run starts from the weights saved after epoch 1, not from fresh ones.
    assert len(rec.start_weights) == len(crash.weights)
    for got, saved in zip(rec.start_weights, crash.weights):
        np.testing.assert_array_equal(got, saved)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh_weights, crash.weights))
    # The optimizer state came back too (its step counter continues).
    # 11 training images, batch 4: 2 steps per epoch, 4 epochs in all.
    assert int(run.model.optimizer.iterations.numpy()) == 4 * 2
    assert _history_epochs(run_dir) == [0, 1, 2, 3]
    assert (run_dir / "model.keras").is_file()
    assert not (run_dir / "backup").exists()


@pytest.mark.slow
def test_resume_false_starts_over(tmp_path):
    run_dir = tmp_path / "run"
    kwargs = dict(
        corruption=None, epochs=3, batch_size=4, run_dir=run_dir, verbose=0, tensorboard=False
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.train(_tiny, _dataset(), callbacks=[_Interrupt(0)], **kwargs)
    rec = _Recorder()
    training.train(_tiny, _dataset(), callbacks=[rec], resume=False, **kwargs)
    assert rec.epochs == [0, 1, 2]
    assert _history_epochs(run_dir) == [0, 1, 2]


@pytest.mark.parametrize("jit", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_trains_with_and_without_xla(jit):
    run = training.train(
        _tiny(),
        _dataset(8),
        corruption=None,
        epochs=1,
        batch_size=4,
        jit_compile=jit,
        validation_split=0,
        verbose=0,
    )
    assert run.config["runtime"]["jit_compile"] is jit
    assert np.isfinite(run.history["loss"][0])


def test_pairs_input_and_argument_errors():
    x = _images(8)
    pairs = tf.data.Dataset.from_tensor_slices((x, x)).batch(4)
    run = training.train(_tiny(), pairs, val_data=pairs, epochs=1, verbose=0)
    assert "val_loss" in run.history
    with pytest.raises(ValueError, match="Cannot split"):
        training.train(_tiny(), pairs, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="corruption"):
        training.train(_tiny(), pairs, val_data=pairs, corruption=object(), epochs=1, verbose=0)
    labelled = tf.data.Dataset.from_tensor_slices((x, np.zeros(8, "int32")))  # (image, label)
    with pytest.raises(ValueError, match="`train_data` yields tuples that are not batched"):
        training.train(_tiny(), labelled, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="`val_data` yields tuples"):
        training.train(_tiny(), _dataset(), val_data=labelled.batch(4), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        training.train(_tiny(), _dataset(), epochs=0)
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        training.train(_tiny(), x)
    with pytest.raises(ValueError, match="built inside its scope"):
        training.train(_tiny(), _dataset(), strategy="mirrored", corruption=None)


def test_time_limit_stops_early():
    rec = _Recorder()
    run = training.train(
        _tiny(),
        _dataset(),
        corruption=None,
        epochs=50,
        batch_size=4,
        time_limit=0.0,
        callbacks=[rec],
        validation_split=0,
        verbose=0,
    )
    assert rec.epochs == [0]
    assert len(run.history["loss"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["mirrored", "multiworker"])
def test_strategies(tmp_path, strategy):
    # "multiworker" without TF_CONFIG runs MultiWorkerMirroredStrategy as a single worker.
    run = training.train(
        _tiny,
        _dataset(),
        corruption=None,
        epochs=1,
        batch_size=4,
        strategy=strategy,
        run_dir=tmp_path / "run",
        verbose=0,
    )
    assert run.config["runtime"]["strategy"] == strategy
    assert run.config["runtime"]["replicas"] >= 1
    assert (tmp_path / "run" / "model.keras").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True])
def test_registry_model_trains_one_step(jit):
    # Every registry model under XLA: tests/test_models.py::test_one_fit_step. Here: the
    # default recipe's model through train(), with its PSNR/SSIM metrics, both ways.
    name = "aesc"
    kwargs = {"input_shape": (32, 32, 1), "depth": 2, "filters": 2}
    run = training.train(
        name,
        _dataset(4),
        model_kwargs=kwargs,
        corruption=None,
        epochs=1,
        batch_size=4,
        jit_compile=jit,
        validation_split=0,
        verbose=0,
    )
    assert run.config["model"] == {
        "name": name,
        "kwargs": {**kwargs, "input_shape": [32, 32, 1]},
        "params": run.model.count_params(),
    }
    assert run.model.optimizer.iterations.numpy() == 1
    assert np.isfinite(run.history["loss"][0])


def test_default_corruption_is_stains_and_recorded(tmp_path):
    from keras_skipae import data

    dicts = _dataset(10).map(lambda x: {"image": x, "label": 0})
    run = training.train(
        _tiny(),
        dicts,
        epochs=1,
        batch_size=4,
        run_dir=tmp_path / "run",
        tensorboard=False,
        verbose=0,
    )
    assert run.config["corruption"]["class_name"] == "Stains"
    assert isinstance(data.deserialize(run.config["corruption"]), data.Stains)


@pytest.mark.slow
def test_stain_weight_weights_the_corrupted_pixels():
    from keras_skipae import data

    stains = data.Stains(count=2, size=(0.2, 0.4))
    kwargs = {"batch_size": 4, "seed": 3, "shuffle": False, "repeat": False}
    x, y, w = next(
        iter(training.pairs._make_pairs(_dataset(4), stains, stain_weight=5.0, **kwargs))
    )
    ref_x, ref_y, mask = next(iter(data.corrupt(_dataset(4), stains, with_mask=True, **kwargs)))
    np.testing.assert_array_equal(x, ref_x)
    np.testing.assert_array_equal(y, ref_y)
    assert w.shape == (4, 32, 32)
    np.testing.assert_array_equal(w, 1.0 + 4.0 * mask.numpy()[..., 0])
    assert 0 < float(tf.reduce_mean(tf.cast(w == 5.0, tf.float32))) < 0.9
    # the weight reaches the loss: the weighted run's loss differs from the plain one's
    runs = [
        training.train(_tiny(), _dataset(8), epochs=1, batch_size=4, stain_weight=sw, verbose=0)
        for sw in (1.0, 20.0)
    ]
    assert runs[1].history["loss"][0] > runs[0].history["loss"][0]
    assert runs[1].config["training"]["stain_weight"] == 20.0
    # default: DEFAULT_STAIN_WEIGHT with a corruption and a pixel loss, else 1
    default = training.train(_tiny(), _dataset(8), epochs=1, batch_size=4, verbose=0)
    assert default.config["training"]["stain_weight"] == training.DEFAULT_STAIN_WEIGHT == 10.0
    # a Loss of the user's (its values may be per image): the plain loss unless asked
    custom = {"loss": keras.losses.MeanSquaredError()}
    for kwargs in ({"corruption": None}, {"loss": "ssim"}, custom):
        run = training.train(_tiny(), _dataset(8), epochs=1, batch_size=4, verbose=0, **kwargs)
        assert run.config["training"]["stain_weight"] == 1.0


def test_stain_weight_errors():
    with pytest.raises(ValueError, match="per-pixel loss.*loss='ssim'"):
        training.train(_tiny(), _dataset(), loss="ssim", stain_weight=3.0, epochs=1)
    with pytest.raises(ValueError, match="needs a corruption.*corruption=None"):
        training.train(_tiny(), _dataset(), corruption=None, stain_weight=3.0, epochs=1)
    with pytest.raises(ValueError, match="stain_weight=-1"):
        training.train(_tiny(), _dataset(), stain_weight=-1, epochs=1)


@pytest.mark.parametrize("corruption", [None, "stains"])
def test_integer_images_are_rescaled_with_or_without_corruption(corruption):
    images = np.full((4, 16, 16, 1), 200, np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(images)
    x, y = next(
        iter(
            training.pairs._make_pairs(
                ds,
                ks_data.get(corruption) if corruption else None,
                batch_size=4,
                seed=0,
                shuffle=False,
                repeat=False,
            )
        )
    )
    assert x.dtype == tf.float32 and y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), 200 / 255, rtol=1e-6)


# ---------------------------------------------------------------- schedule and split


def test_cosine_rate_values():
    from keras_skipae.training.callbacks import cosine_rate

    kw = {"warmup": 0.1, "floor": 0.01}
    assert cosine_rate(0.0, 1.0, **kw) == pytest.approx(0.01)
    assert cosine_rate(0.05, 1.0, **kw) == pytest.approx(0.505)
    assert cosine_rate(0.1, 1.0, **kw) == pytest.approx(1.0)
    assert cosine_rate(0.55, 1.0, **kw) == pytest.approx(0.505)  # half-way down the cosine
    assert cosine_rate(1.0, 1.0, **kw) == pytest.approx(0.01)
    assert cosine_rate(2.0, 1.0, **kw) == pytest.approx(0.01)  # past the budget: the floor


def test_cosine_schedule_sets_the_rate_before_every_step():
    from keras_skipae.training.callbacks import CosineSchedule, cosine_rate

    model = _tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rec = _Recorder()
    x = _images(8)
    model.fit(
        x,
        x,
        batch_size=4,
        epochs=5,
        verbose=0,
        callbacks=[CosineSchedule(1e-3, steps=10, warmup=0.2), rec],
    )
    want = [cosine_rate(i / 10, 1e-3, warmup=0.2, floor=0.01) for i in range(10)]
    np.testing.assert_allclose(rec.lrs, want, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one budget"),
        ({"steps": 10, "seconds": 5}, "exactly one budget"),
        ({"steps": 0}, "budget > 0"),
        ({"steps": 10, "warmup": 1.0}, "warmup"),
        ({"steps": 10, "floor": 2.0}, "floor"),
        ({"seconds": 10, "clock": "sun"}, "clock"),
    ],
)
def test_cosine_schedule_bad_arguments(kwargs, match):
    from keras_skipae.training.callbacks import CosineSchedule

    with pytest.raises(ValueError, match=match):
        CosineSchedule(1e-3, **kwargs)


class _FakeClock:
    """Advances ``step`` seconds per reading: wall-clock budgets without the machine's load."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def monotonic(self):
        self.now += self.step
        return self.now

    process_time = monotonic


def test_time_limited_training_decays_over_the_budget(monkeypatch):
    from keras_skipae.training.callbacks import schedule as schedule_module
    from keras_skipae.training.callbacks import time_limit as time_limit_module

    clock = _FakeClock(0.25)  # two readings a batch (schedule, time limit): 0.5 s a batch
    monkeypatch.setattr(schedule_module, "time", clock)
    monkeypatch.setattr(time_limit_module, "time", clock)
    run = training.train(
        _tiny(),
        _dataset(),
        epochs=1000,
        time_limit=3.0,
        validation_split=0.0,
        steps_per_epoch=2,
        batch_size=4,
        tensorboard=False,
        verbose=0,
    )
    lrs = run.history["learning_rate"]
    assert run.config["training"]["schedule"] == "cosine"
    assert len(lrs) == 3  # 6 batches of 0.5 s fill the 3 s budget: 3 epochs of 2 steps
    assert max(lrs) <= 1e-3 * (1 + 1e-6)
    assert lrs[-1] < 0.5e-3  # well into the decay when the budget ran out
    with pytest.raises(ValueError, match="schedule"):
        training.train(_tiny(), _dataset(), schedule="step", verbose=0)


def test_split_validation_returns_the_images_train_held_out():
    # Distinct images, identity targets: val_loss is the final model's error on the
    # held-out images, so a different split gives a different number.
    rng = np.random.default_rng(5)
    images = rng.random((10, 32, 32, 1)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(images)
    run = training.train(
        _tiny(),
        data,
        epochs=1,
        corruption=None,
        validation_split=0.3,
        seed=3,
        batch_size=4,
        tensorboard=False,
        verbose=0,
        reduce_lr=False,
    )
    _, val = training.split_validation(data, 0.3, seed=3)
    held_out = np.stack(list(val.as_numpy_iterator()))
    assert len(held_out) == run.config["data"]["n_val"] == 3
    loss = float(np.mean((run.model.predict(held_out, verbose=0) - held_out) ** 2))
    assert run.history["val_loss"][-1] == pytest.approx(loss, rel=1e-4)
    _, other = training.split_validation(data, 0.3, seed=4)
    other = np.stack(list(other.as_numpy_iterator()))
    assert not np.array_equal(np.sort(other.reshape(3, -1), 0), np.sort(held_out.reshape(3, -1), 0))


def test_tasks_hold_their_defaults_and_refuse_the_other_tasks_losses():
    from keras_skipae import losses
    from keras_skipae.training.tasks import get_task

    rec, seg = get_task("reconstruction"), get_task("segmentation")
    assert get_task(seg) is seg
    assert rec.resolve_metrics("auto") == ("psnr", "ssim")
    assert seg.resolve_metrics("auto") == ("iou", "dice")
    assert seg.resolve_metrics(["mae"]) == ["mae"]
    assert isinstance(rec.resolve_loss("auto"), losses.MeanSquaredError)
    assert seg.resolve_loss(None).kind == "bce+dice"
    assert rec.reported == ("loss", "val_loss")
    assert seg.reported == ("loss", "val_loss", "val_iou", "val_dice")
    with pytest.raises(ValueError, match=r"'dice' is a mask loss.*task='reconstruction'"):
        rec.resolve_loss("dice")
    with pytest.raises(ValueError, match=r"use a mask loss.*loss='mse', task='segmentation'"):
        seg.resolve_loss("mse")
    with pytest.raises(ValueError, match=r"`task` must be one of \['reconstruction', 'segm"):
        get_task(3)
