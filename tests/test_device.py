"""ops/device.py: the per-path jit_compile choice (train step, scoring, serving)."""

import numpy as np
import pytest

from keras_skipae import scoring, training
from keras_skipae.ops import device


def test_measured_cpu_choice():
    # docs/decisions.md#xla-auto: on the CPU, XLA trained 1.6-2.1x slower (off), and for
    # inference it saved 30 % for single images but cost up to 12x at batch 16 or at a 2x2
    # bottleneck: timed on the device itself (MeasuredJit, serving_xla).
    assert device.CPU_JIT == {"train": False, "scoring": "measured", "serving": "measured"}
    assert device.GPU_JIT == {"train": True, "scoring": True, "serving": True}


@pytest.mark.parametrize("path", device.JIT_PATHS)
def test_auto_follows_the_device(path):
    assert device.resolve_jit_compile("auto", path=path, gpus=[]) is device.CPU_JIT[path]
    gpu = ["PhysicalDevice(name='/physical_device:GPU:0', device_type='GPU')"]
    assert device.resolve_jit_compile("auto", path=path, gpus=gpu) is device.GPU_JIT[path]


@pytest.mark.parametrize("path", device.JIT_PATHS)
@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_booleans_pass_through(path, value):
    for gpus in ([], ["gpu"]):
        got = device.resolve_jit_compile(value, path=path, gpus=gpus)
        assert got is bool(value)


def test_auto_on_this_machine_matches_the_visible_devices():
    import tensorflow as tf

    table = device.GPU_JIT if tf.config.list_physical_devices("GPU") else device.CPU_JIT
    for path in device.JIT_PATHS:
        assert device.resolve_jit_compile("auto", path=path) is table[path]
    # train's own resolver is the same function (path "train" by default).
    assert training.resolve_jit_compile("auto") is table["train"]


@pytest.mark.parametrize("bad", ["yes", "Auto", 1, None, "on"])
def test_bad_jit_compile(bad):
    with pytest.raises(ValueError, match=f"Received: jit_compile={bad!r}"):
        device.resolve_jit_compile(bad, path="scoring")


def test_bad_path():
    with pytest.raises(ValueError, match="Received: path='predict'"):
        device.resolve_jit_compile(True, path="predict")


def test_make_scorer_compiles_as_asked(tiny_model, monkeypatch):
    model = tiny_model("aesc")
    assert scoring.make_scorer(model, jit_compile=True)._jit_compile is True
    assert scoring.make_scorer(model, jit_compile=False)._jit_compile is False
    # "auto" resolves for the scoring path (stubbed: pretend XLA pays there).
    monkeypatch.setitem(device.CPU_JIT, "scoring", True)
    monkeypatch.setitem(device.GPU_JIT, "scoring", True)
    assert scoring.make_scorer(model, image_shape=(32, 32, 1))._jit_compile is True
    # "measured": two compiled variants behind a MeasuredJit.
    monkeypatch.setitem(device.CPU_JIT, "scoring", "measured")
    monkeypatch.setitem(device.GPU_JIT, "scoring", "measured")
    both = scoring.make_scorer(model, image_shape=(32, 32, 1))
    assert isinstance(both, device.MeasuredJit)
    assert (both.fn_off._jit_compile, both.fn_on._jit_compile) == (False, True)
    with pytest.raises(ValueError, match="jit_compile='fast'"):
        scoring.make_scorer(model, jit_compile="fast")


@pytest.mark.slow
def test_xla_scorer_matches_the_plain_one(tiny_model, images):
    model = tiny_model("aesc")
    x = images(2)
    plain = scoring.make_scorer(model, jit_compile=False)(x)
    xla = scoring.make_scorer(model, jit_compile=True)(x)
    for key in plain:
        np.testing.assert_allclose(xla[key].numpy(), plain[key].numpy(), atol=1e-5, err_msg=key)


class _FakeClock:
    """A clock that the fake compiled functions advance by their own cost."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _fake_pair(clock, off_ms, on_ms, *, on_fails=False, cpu_clock=None, cpu_factor=None):
    """Two fake compiled functions (costs in ms per call, by shape) and their call logs.

    Each call advances ``clock`` by its cost, and ``cpu_clock`` (if given) by its cost
    times ``cpu_factor[name]``."""
    import tensorflow as tf

    calls = {"off": [], "on": []}

    def make(name, cost):
        def fn(images):
            calls[name].append(tuple(images.shape))
            if name == "on" and on_fails:
                raise tf.errors.InvalidArgumentError(None, None, "cannot compile")
            clock.now += cost(tuple(images.shape)) / 1e3
            if cpu_clock is not None:
                cpu_clock.now += cpu_factor[name] * cost(tuple(images.shape)) / 1e3
            return {"score": tf.reduce_sum(images, axis=(1, 2, 3)) + (1.0 if name == "on" else 0.0)}

        return fn

    return make("off", off_ms), make("on", on_ms), calls


def test_measured_jit_keeps_the_faster_per_shape():
    import tensorflow as tf

    clock = _FakeClock()
    # XLA faster for single images (5 vs 8 ms), slower for batches of 4 (30 vs 20 ms).
    off, on, calls = _fake_pair(
        clock, lambda s: 8.0 if s[0] == 1 else 20.0, lambda s: 5.0 if s[0] == 1 else 30.0
    )
    fn = device.MeasuredJit(
        off, on, warm_calls=2, trials=3, give_up=2.0, clock=clock, cpu_clock=clock
    )
    one, four = tf.ones((1, 4, 4, 1)), tf.ones((4, 4, 4, 1))
    for _ in range(2):  # warm calls: XLA off only, nothing measured
        assert float(fn(one)["score"][0]) == 16.0
    assert calls["on"] == [] and fn.choices == {}
    fn(one)  # measures: 1 off, 1 untimed compile, then 3 x (on, off)
    assert len(calls["on"]) == 4 and len(calls["off"]) == 2 + 4
    choice = fn.choices[(1, 4, 4, 1)]
    assert choice["jit"] is True and choice["note"] == "measured"
    assert (choice["ms_off"], choice["ms_on"]) == (pytest.approx(8.0), pytest.approx(5.0))
    n_off = len(calls["off"])
    assert float(fn(one)["score"][0]) == 17.0  # the XLA variant serves this shape now
    assert len(calls["off"]) == n_off
    for _ in range(3):
        fn(four)
    assert fn.choices[(4, 4, 4, 1)]["jit"] is False
    assert fn.choices[(4, 4, 4, 1)]["ms_off"] == pytest.approx(20.0)
    assert fn.choices[(4, 4, 4, 1)]["ms_on"] == pytest.approx(30.0)
    assert float(fn(four)["score"][0]) == 16.0


def test_measured_jit_gives_up_early_on_a_clearly_slower_xla():
    import tensorflow as tf

    clock = _FakeClock()
    off, on, calls = _fake_pair(clock, lambda s: 10.0, lambda s: 100.0)
    fn = device.MeasuredJit(
        off, on, warm_calls=0, trials=3, give_up=1.5, clock=clock, cpu_clock=clock
    )
    fn(tf.ones((2, 4, 4, 1)))
    choice = fn.choices[(2, 4, 4, 1)]
    assert choice["jit"] is False and choice["ms_on"] == pytest.approx(100.0)
    assert "stopped early" in choice["note"]
    assert len(calls["on"]) == 2  # the compile and one timed call


def test_measured_jit_needs_both_clocks_to_agree():
    import tensorflow as tf

    # XLA a little faster by the wall clock (as on a busy machine) but slower in CPU time.
    clock, cpu_clock = _FakeClock(), _FakeClock()
    off, on, _ = _fake_pair(
        clock,
        lambda s: 100.0,
        lambda s: 95.0,
        cpu_clock=cpu_clock,
        cpu_factor={"off": 0.5, "on": 1.0},
    )
    fn = device.MeasuredJit(off, on, warm_calls=0, clock=clock, cpu_clock=cpu_clock)
    fn(tf.ones((16, 4, 4, 1)))
    choice = fn.choices[(16, 4, 4, 1)]
    assert choice["ms_on"] < choice["ms_off"] and choice["cpu_ms_on"] > choice["cpu_ms_off"]
    assert choice["jit"] is False
    assert choice["cpu_ms_off"] == pytest.approx(50.0) and choice["cpu_ms_on"] == pytest.approx(
        95.0
    )
    # Faster by both: XLA.
    clock, cpu_clock = _FakeClock(), _FakeClock()
    off, on, _ = _fake_pair(
        clock,
        lambda s: 100.0,
        lambda s: 95.0,
        cpu_clock=cpu_clock,
        cpu_factor={"off": 1.0, "on": 0.9},
    )
    fn = device.MeasuredJit(off, on, warm_calls=0, clock=clock, cpu_clock=cpu_clock)
    fn(tf.ones((16, 4, 4, 1)))
    assert fn.choices[(16, 4, 4, 1)]["jit"] is True


def test_measured_jit_falls_back_when_xla_fails():
    import tensorflow as tf

    clock = _FakeClock()
    off, on, calls = _fake_pair(clock, lambda s: 10.0, lambda s: 1.0, on_fails=True)
    fn = device.MeasuredJit(off, on, warm_calls=0, clock=clock, cpu_clock=clock)
    x = tf.ones((1, 4, 4, 1))
    assert float(fn(x)["score"][0]) == 16.0
    assert fn.choices[(1, 4, 4, 1)]["jit"] is False
    assert "failed to compile" in fn.choices[(1, 4, 4, 1)]["note"]
    fn(x)
    assert len(calls["on"]) == 1  # never tried again


def test_measured_jit_inside_a_trace_uses_xla_off():
    import tensorflow as tf

    clock = _FakeClock()
    off, on, calls = _fake_pair(clock, lambda s: 10.0, lambda s: 1.0)
    fn = device.MeasuredJit(off, on, warm_calls=0, clock=clock, cpu_clock=clock)
    traced = tf.function(lambda x: fn(x)["score"])
    assert float(traced(tf.ones((1, 4, 4, 1)))[0]) == 16.0
    assert calls["on"] == [] and fn.choices == {}


@pytest.mark.parametrize("kwargs", [{"warm_calls": -1}, {"trials": 0}, {"give_up": 1.0}])
def test_measured_jit_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received: warm_calls="):
        device.MeasuredJit(abs, abs, **kwargs)


def test_measured_scorer_matches_the_plain_one(tiny_model, images):
    model = tiny_model("aesc")
    x = images(2)
    fn = scoring.make_scorer(model, image_shape=x.shape[1:], jit_compile=False)
    both = device.MeasuredJit(
        fn, scoring.make_scorer(model, image_shape=x.shape[1:], jit_compile=True), warm_calls=0
    )
    measured = both(x)  # a real measurement on this machine
    (choice,) = both.choices.values()
    assert choice["ms_off"] > 0 and choice["ms_on"] > 0 and isinstance(choice["jit"], bool)
    plain = fn(x)
    for key in plain:
        np.testing.assert_allclose(measured[key].numpy(), plain[key].numpy(), atol=1e-5)
