"""Faults and odd inputs: full disks, read-only folders, corrupted model files, huge and
odd images, non-finite input arrays. ``docs/reliability.md`` lists every row with its test."""

import errno
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import keras_skipae as ks
import keras_skipae_cli
from keras_skipae import faults, io_utils
from keras_skipae.data.datasets import resize_image
from keras_skipae.ownership import mark_owned

FAULT = "KERAS_SKIPAE_FAULT"


def _leftovers(folder):
    """Temporary names the atomic helpers would leave behind."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


# --- full disk / no permission: the atomic helpers ---------------------------------------


def test_fault_hook_fails_after_n_bytes_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    io_utils.write_text(path, "previous")
    monkeypatch.setenv(FAULT, "write_fail:4")
    with pytest.raises(OSError, match=r"report\.json.*No space left") as info:
        io_utils.write_text(path, "a longer replacement")
    assert info.value.errno == errno.ENOSPC
    assert "\n" not in str(info.value)
    assert path.read_text() == "previous"
    assert _leftovers(tmp_path) == []
    # A write that fits in the budget goes through; a glob limits the fault to some names.
    io_utils.write_text(path, "ok")
    assert path.read_text() == "ok"
    monkeypatch.setenv(FAULT, "write_fail:0:*.keras")
    io_utils.write_text(path, "not a .keras file")
    assert path.read_text() == "not a .keras file"


def test_fault_hook_on_a_folder_counts_all_its_files(tmp_path, monkeypatch):
    target = tmp_path / "export"
    monkeypatch.setenv(FAULT, "write_fail:5")
    with pytest.raises(OSError, match="export"), io_utils.atomic_path(target, is_dir=True) as tmp:
        (tmp / "a").write_text("123")
        (tmp / "b").write_text("456")  # 6 bytes in all > 5
    assert list(tmp_path.iterdir()) == []


def test_fault_hook_refuses_a_malformed_value(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT, "write_fail:lots")
    with pytest.raises(ValueError, match="KERAS_SKIPAE_FAULT"):
        io_utils.write_text(tmp_path / "x.txt", "x")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "value", ["write_fail", "write_fail:-1", "disk-full:4", "batch-end:step=3", "model-write:x"]
)
def test_fault_hook_names_the_variable_for_any_malformed_value(value, monkeypatch):
    monkeypatch.setenv(FAULT, value)
    with pytest.raises(
        ValueError, match=rf"Expected {FAULT} to be one of .*Received: {FAULT}='{value}'"
    ):
        faults.requested("write_fail")
    with pytest.raises(ValueError, match=rf"Received: {FAULT}='{value}'"):
        faults.wait_point("batch-end", epoch=0, batch=0)


class _Waited(Exception):
    """Raised by the patched ``time.sleep``: the process would now wait to be killed."""


def _no_wait(monkeypatch, tmp_path):
    """Makes a waiting point raise :class:`_Waited` instead of sleeping; returns the
    ready file it writes first."""

    def sleep(_):
        raise _Waited

    monkeypatch.setattr(faults.time, "sleep", sleep)
    monkeypatch.setenv(faults.READY_ENV, str(tmp_path / "ready"))
    return tmp_path / "ready"


def test_one_variable_drives_the_write_fault_and_the_waiting_points(tmp_path, monkeypatch):
    ready = _no_wait(monkeypatch, tmp_path)
    # A waiting point's value leaves the writes alone, and waits only where it matches.
    monkeypatch.setenv(FAULT, "batch-end:epoch=1:batch=2")
    io_utils.write_text(tmp_path / "a.txt", "written")
    assert (tmp_path / "a.txt").read_text() == "written"
    faults.wait_point("batch-end", epoch=1, batch=1)
    faults.wait_point("backup-write", epoch=1)
    assert not ready.exists()
    with pytest.raises(_Waited):
        faults.wait_point("batch-end", epoch=1, batch=2)
    assert ready.read_text() == "batch-end:epoch=1:batch=2"
    # Conditions left out match any value; the write fault leaves the waiting points alone.
    monkeypatch.setenv(FAULT, "model-write")
    with pytest.raises(_Waited):
        faults.wait_point("model-write", file="best.keras")
    monkeypatch.setenv(FAULT, "write_fail:0")
    faults.wait_point("model-write", file="model.keras")
    assert faults.requested("write_fail") == ["0"]


def test_backup_write_point_stops_between_the_weights_and_their_rename(tmp_path, monkeypatch):
    import keras

    from keras_skipae.runs import BACKUP_METADATA, read_backup, write_backup

    ready = _no_wait(monkeypatch, tmp_path)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    folder = tmp_path / "backup"
    monkeypatch.setenv(FAULT, "backup-write:epoch=2")
    write_backup(folder, model, 1)  # another epoch: no stop
    with pytest.raises(_Waited):
        write_backup(folder, model, 2)
    assert ready.read_text() == "backup-write:epoch=2"
    names = sorted(p.name for p in folder.iterdir())
    assert "epoch-2.weights.h5" not in names and any(".tmp-" in n for n in names)
    assert read_backup(folder)["epoch"] == 1  # the metadata still names epoch 1
    assert (folder / BACKUP_METADATA[0]).is_file()


def _run_as_nobody(fn):
    """Runs ``fn`` in a forked child whose user is ``nobody`` (65534), so that folder
    permissions bind also when the suite runs as root (as CI does); returns
    ``"ok"`` or ``"<ExceptionType>: <message>"``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, exit without cleanup
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, _outcome(fn).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def _outcome(fn):
    try:
        fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to drop privileges")
def test_read_only_folder_gives_a_permission_error_naming_the_file():
    # Not under tmp_path: pytest's base folder is private to its user, and the child
    # runs as another user when the suite runs as root.
    base = Path(tempfile.mkdtemp(prefix="keras_skipae_ro_"))
    base.chmod(0o755)
    folder = base / "ro"
    folder.mkdir()
    (folder / "metrics.json").write_text("previous")
    (folder / "metrics.json").chmod(0o644)
    if os.geteuid() == 0:  # hand the folder to nobody, who then may not write into it
        os.chown(folder, 65534, 65534)
    folder.chmod(0o555)
    try:
        write = lambda: io_utils.write_text(folder / "metrics.json", "new")  # noqa: E731
        outcome = _run_as_nobody(write) if os.geteuid() == 0 else _outcome(write)
        assert outcome.startswith("PermissionError: ") and "metrics.json" in outcome, outcome
        assert (folder / "metrics.json").read_text() == "previous"
        assert _leftovers(folder) == []
    finally:
        folder.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_cli_evaluate_on_a_full_disk_is_one_line_and_keeps_the_old_report(
    model_files, synthetic_root, tmp_path, capsys, monkeypatch
):
    run = _fake_run(tmp_path / "run", model_files["good"], synthetic_root)
    metrics = run / "evaluation" / "metrics.json"
    metrics.parent.mkdir()
    mark_owned(metrics.parent, "evaluation")
    metrics.write_text("previous")
    monkeypatch.setenv(FAULT, "write_fail:64:metrics.json")
    assert keras_skipae_cli.main(["evaluate", str(run), "--overwrite", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(metrics) in err[0] and "No space left on device" in err[0]
    assert metrics.read_text() == "previous"
    assert _leftovers(run) == []


@pytest.mark.slow
def test_export_saved_model_on_a_full_disk_keeps_the_previous_export(
    saved_model, tmp_path, monkeypatch
):
    previous = tmp_path / "export"
    shutil.copytree(saved_model, previous)
    before = sorted(str(p.relative_to(previous)) for p in previous.rglob("*"))
    model = ks.get_model("ae", input_shape=(16, 16, 1), depth=2, filters=2)
    monkeypatch.setenv(FAULT, "write_fail:2000")
    with pytest.raises(OSError, match="export folder .*export'.*No space left") as info:
        ks.export_saved_model(model, previous, overwrite=True, verify=False, jit_compile=False)
    assert info.value.errno == errno.ENOSPC
    assert sorted(str(p.relative_to(previous)) for p in previous.rglob("*")) == before
    monkeypatch.delenv(FAULT)
    ks.Detector.load(previous)  # still loads
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_train_on_a_full_disk_names_model_keras_and_leaves_no_part_file(tmp_path, monkeypatch):
    import tensorflow as tf

    run_dir = tmp_path / "run"
    images = np.random.default_rng(0).random((8, 16, 16, 1), dtype=np.float32)
    monkeypatch.setenv(FAULT, "write_fail:100:model.keras")
    with pytest.raises(OSError, match=r"model\.keras.*No space left"):
        ks.train(
            "ae",
            tf.data.Dataset.from_tensor_slices(images),
            model_kwargs={"input_shape": (16, 16, 1), "depth": 2, "filters": 2},
            epochs=1,
            steps_per_epoch=1,
            batch_size=4,
            run_dir=run_dir,
            tensorboard=False,
            validation_split=0.0,
            metrics=(),
            verbose=0,
        )
    assert not (run_dir / "model.keras").exists()
    assert (run_dir / "config.json").is_file()
    assert _leftovers(run_dir) == []


# --- corrupted model files ----------------------------------------------------------------


def _rezip(src, dst, *, config=None, drop=None):
    """A copy of the ``.keras`` archive ``src`` with its config replaced or a member dropped."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name == drop:
                continue
            data = zin.read(name)
            if name == "config.json" and config is not None:
                data = config(data.decode()).encode()
            zout.writestr(name, data)
    return dst


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A good tiny ``.keras`` file, five damaged copies, and a run folder to put them in."""
    import keras

    folder = tmp_path_factory.mktemp("models")
    model = ks.get_model("ae", input_shape=(16, 16, 1), depth=2, filters=2)
    good = folder / "good.keras"
    model.save(good)
    data = good.read_bytes()
    files = {"good": good}
    files["truncated"] = folder / "truncated.keras"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["unknown_class"] = _rezip(
        good,
        folder / "unknown_class.keras",
        config=lambda c: c.replace('"class_name": "BatchNormalization"', '"class_name": "Evil"', 1),
    )
    files["broken_json"] = _rezip(good, folder / "broken_json.keras", config=lambda c: c[:50])
    files["no_weights"] = _rezip(good, folder / "no_weights.keras", drop="model.weights.h5")
    inputs = keras.Input((4,))
    lam = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    files["lambda"] = folder / "lambda.keras"
    lam.save(files["lambda"])
    return files


CORRUPTED = {
    "truncated": "not a complete zip archive",
    "unknown_class": "Evil",
    "broken_json": "corrupted or tampered",
    "no_weights": "weights",
    "lambda": "Lambda",
}


@pytest.mark.parametrize("kind", sorted(CORRUPTED))
def test_load_model_names_a_corrupted_file(model_files, kind):
    with pytest.raises(ValueError, match=CORRUPTED[kind]) as info:
        ks.load_model(model_files[kind])
    assert str(model_files[kind]) in str(info.value)
    assert "\n" not in str(info.value)


def _fake_run(folder, model_file, data_root):
    folder.mkdir()
    config = {"data": {"root": str(data_root), "category": "mesh", "image_size": 16}}
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(model_file, folder / "model.keras")
    return folder


@pytest.mark.parametrize("kind", ["truncated", "unknown_class"])
def test_evaluate_export_and_detector_name_a_corrupted_run_model(
    model_files, synthetic_root, tmp_path, capsys, kind
):
    run = _fake_run(tmp_path / "run", model_files[kind], synthetic_root)
    model_path = str(run / "model.keras")
    for argv in (["evaluate", str(run)], ["export", str(run), str(tmp_path / "export")]):
        assert keras_skipae_cli.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and model_path in err[0] and CORRUPTED[kind] in err[0], err
    assert not (tmp_path / "export").exists()
    assert not (run / "evaluation").exists()
    with pytest.raises(ValueError, match=CORRUPTED[kind]) as info:
        ks.Detector.load(run)
    assert model_path in str(info.value)
    with pytest.raises(ValueError, match=CORRUPTED[kind]) as info:
        ks.Detector.load(model_files[kind])
    assert str(model_files[kind]) in str(info.value)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model = ks.get_model("ae", input_shape=(16, 16, 1), depth=2, filters=2)
    path = tmp_path_factory.mktemp("export") / "e"
    # jit_compile=True: the finiteness check must survive XLA (it sits outside the jit function).
    return ks.export_saved_model(model, path, threshold=0.5, verify=False, jit_compile=True)


@pytest.fixture(scope="module")
def served(saved_model):
    import tensorflow as tf

    return tf.saved_model.load(str(saved_model))


@pytest.mark.parametrize(
    "remove", ["variables/variables.data-00000-of-00001", "variables/variables.index", "variables"]
)
def test_detector_names_the_missing_file_of_a_saved_model(saved_model, tmp_path, remove):
    broken = tmp_path / "broken"
    shutil.copytree(saved_model, broken)
    target = broken / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match="is incomplete: variables/variables") as info:
        ks.Detector.load(broken)
    assert str(broken) in str(info.value)


def test_detector_names_a_corrupted_saved_model(saved_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(saved_model, broken)
    pb = broken / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])
    with pytest.raises(ValueError, match="Could not load the SavedModel") as info:
        ks.Detector.load(broken)
    assert str(broken) in str(info.value)


# --- non-finite input arrays ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_saved_model_refuses_non_finite_images(served, bad):
    import tensorflow as tf

    loaded = served
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    finite = loaded.signatures["serving_default"](images=tf.constant(x))
    assert np.isfinite(finite["score"].numpy()).all()
    x[1, 3, 4, 0] = bad
    for name in ("serving_default", "reconstruct"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
            loaded.signatures[name](images=tf.constant(x))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
        loaded.score(x)


def test_evaluate_refuses_non_finite_images_naming_them(images):
    import tensorflow as tf

    model = ks.get_model("ae", input_shape=(16, 16, 1), depth=2, filters=2)
    x = images(4, (16, 16, 1))
    x[2, 0, 0, 0] = np.nan
    data = tf.data.Dataset.from_tensor_slices(
        {
            "image": x,
            "label": np.array([0, 0, 1, 1], np.int32),
            "path": np.array([f"img{i}.png" for i in range(4)]),
        }
    )
    with pytest.raises(ValueError, match=r"finite pixel values.*1 image\(s\): img2\.png"):
        ks.evaluate(model, data, progress=False)
    x[2, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"batch image 2"):
        ks.evaluate(model, [{"image": im, "label": 0} for im in x], progress=False)


# --- odd images ------------------------------------------------------------------------------


def _write_png(path, array):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def test_16_bit_png_is_scaled_by_65535(tmp_path):
    values = np.array([[0, 128, 32768, 65535]], np.uint16).repeat(4, axis=0)
    path = _write_png(tmp_path / "deep.png", values)
    assert ks.data.image_info(path)["bit_depth"] == 16
    got = ks.data.load_image(path).numpy()[..., 0]
    np.testing.assert_allclose(got, values / 65535.0, atol=1e-7)
    assert got[0, 3] == 1.0 and got[0, 1] > 0  # 128 would be 0 in 8 bits
    # The same through a dataset, resized: bilinear of the [0, 1] values.
    ds = ks.data.folder_dataset(tmp_path, image_size=(2, 2))
    image = next(iter(ds))["image"].numpy()
    ref = resize_image(values[..., None] / 65535.0, (2, 2)).numpy()
    np.testing.assert_allclose(image, ref, atol=1e-6)


def test_rgba_png_drops_alpha(tmp_path):
    rng = np.random.default_rng(0)
    bgra = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    bgra[..., 3] = rng.integers(0, 256, (8, 8))  # alpha varies: it must not matter
    path = _write_png(tmp_path / "rgba.png", bgra)
    assert ks.data.image_info(path)["channels"] == 4
    rgb = ks.data.load_image(path, color_mode="rgb").numpy()
    np.testing.assert_allclose(rgb, bgra[..., 2::-1] / 255.0, atol=1e-7)  # cv2 writes BGRA
    gray = ks.data.load_image(path, color_mode="grayscale").numpy()[..., 0]
    luma = bgra[..., 2] * 0.2989 + bgra[..., 1] * 0.587 + bgra[..., 0] * 0.114
    np.testing.assert_allclose(gray, luma / 255.0, atol=1e-3)


def test_image_smaller_than_the_model_input_is_upscaled_with_a_warning(tmp_path):
    small = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    _write_png(tmp_path / "small.png", small)
    _write_png(tmp_path / "big.png", np.zeros((32, 32), np.uint8))
    with pytest.warns(UserWarning, match=r"1 image\(s\) smaller than image_size=16x16.*small\.png"):
        ds = ks.data.folder_dataset(tmp_path, image_size=16)
    images = {e["path"].numpy().decode(): e["image"].numpy() for e in ds}
    up = images[str(tmp_path / "small.png")]
    assert up.shape == (16, 16, 1)
    ref = resize_image(small[..., None] / 255.0, 16).numpy()
    np.testing.assert_allclose(up, ref, atol=1e-6)
    with pytest.warns(UserWarning, match="upscaled"):
        ks.data.load_image(tmp_path / "small.png", image_size=16)


def test_grayscale_rgb_mismatch(tmp_path, images):
    # Files are converted to the color mode asked for (the model's) ...
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = _write_png(tmp_path / "rgb.png", bgr)
    gray = ks.data.load_image(path, color_mode="grayscale").numpy()
    assert gray.shape == (8, 8, 1)
    luma = bgr[..., 2] * 0.2989 + bgr[..., 1] * 0.587 + bgr[..., 0] * 0.114
    np.testing.assert_allclose(gray[..., 0], luma / 255.0, atol=1e-3)
    g = _write_png(tmp_path / "g.png", bgr[..., 0])
    np.testing.assert_array_equal(
        ks.data.load_image(g, color_mode="rgb").numpy(),
        np.repeat(bgr[..., :1] / np.float32(255.0), 3, axis=-1),
    )
    # ... arrays of the wrong channel count are refused, naming the expected color mode.
    model = ks.get_model("ae", input_shape=(16, 16, 1), depth=2, filters=2)
    rgb = images(2, (16, 16, 3))
    with pytest.raises(ValueError, match=r"1 channel\(s\).*color_mode='grayscale'"):
        ks.evaluate(model, [{"image": im, "label": 0} for im in rgb], progress=False)
    with pytest.raises(ValueError, match=r"takes 1 channel\(s\)"):
        ks.Detector(model, threshold=0.5).predict(rgb)


@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
def test_large_images_are_resized_in_their_own_bit_depth(monkeypatch, depth):
    # The memory bound of the huge-image row (docs/reliability.md): the full-size image
    # reaches the resize as decoded integers, never as a 4-byte float copy.
    import cv2
    import tensorflow as tf

    from keras_skipae.data import datasets

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, np.iinfo(depth).max, (48, 64, 3), dtype=depth)
    ok, png = cv2.imencode(".png", pixels)
    assert ok
    seen = []
    original = tf.image.resize

    def spy(images, size, **kwargs):
        seen.append((images.dtype, tuple(images.shape)))
        return original(images, size, **kwargs)

    monkeypatch.setattr(tf.image, "resize", spy)
    out = datasets._decode(tf.constant(png.tobytes()), 3, (16, 16))
    assert seen == [(tf.as_dtype(depth), (48, 64, 3))]
    assert out.dtype == tf.float32 and tuple(out.shape) == (16, 16, 3)
    want = original(pixels[..., ::-1].astype("float32"), (16, 16), antialias=True)
    np.testing.assert_allclose(out, np.clip(want / np.iinfo(depth).max, 0, 1), atol=1e-6)
