"""Atomic writes and overwrite refusal, and the small rules io_utils holds for every layer."""

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from keras_skipae.io_utils import (
    as_text,
    atomic_path,
    check_writable,
    encode_png,
    jsonable,
    parse_image_size,
    to_uint8,
    write_json,
    write_png_atomic,
    write_text,
)


def test_write_refuses_to_clobber_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "report.txt"
    write_text(path, "first", overwrite=False)
    with pytest.raises(FileExistsError, match="report.txt.*overwrite=True"):
        write_text(path, "second", overwrite=False)
    assert path.read_text() == "first"
    write_text(path, "second", overwrite=True)
    assert path.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]  # no temp leftovers


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    path = tmp_path / "model.bin"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "export"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists()
    assert (target / "a").read_text() == "1"
    with pytest.raises(FileExistsError, match=r"The export folder '.*export' already exists"):
        check_writable(target, what="export folder")
    with atomic_path(target, is_dir=True, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "m.json", {"auroc": 0.5})
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"auroc": 0.5}


# --------------------------------------------------------------------------- small shared rules


@pytest.mark.parametrize(
    "value, want",
    [
        (16, (16, 16)),
        ((8, 12), (8, 12)),
        ([8, 12], (8, 12)),
        (np.int64(5), (5, 5)),
        ((np.int32(3), 4), (3, 4)),
        (None, None),
    ],
)
def test_parse_image_size_values(value, want):
    got = parse_image_size(value)
    assert got == want
    assert got is None or all(type(v) is int for v in got)


@pytest.mark.parametrize(
    "value, match",
    [
        ("big", r"an int or a \(height, width\) pair of ints. Received: image_size='big'"),
        ((1, 2, 3), r"Received: image_size=\(1, 2, 3\)"),
        ((1.5, 2), r"Received: image_size=\(1.5, 2\)"),
        (True, r"Received: image_size=True"),
        ((0, 4), r"Expected a positive `image_size`. Received: image_size=\(0, 4\)"),
        (-1, r"Expected a positive `image_size`. Received: image_size=-1"),
    ],
)
def test_parse_image_size_refuses_bad_values(value, match):
    with pytest.raises(ValueError, match=match):
        parse_image_size(value)


def test_parse_image_size_without_none():
    with pytest.raises(ValueError, match=r"to be an int or a .*Received: image_size=None"):
        parse_image_size(None, allow_none=False)
    assert parse_image_size(7, allow_none=False) == (7, 7)


def test_to_uint8_rounds_and_clips():
    x = np.array([-1.0, 0.0, 0.2, 0.5, 1.0 / 255 * 0.49, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 51, 128, 0, 255, 255])
    assert to_uint8(x).dtype == np.uint8
    already = np.array([[7, 250]], np.uint8)
    assert to_uint8(already) is already  # uint8 is kept as is, not rescaled


def test_as_text():
    assert as_text(b"defect") == "defect"
    assert as_text(np.bytes_(b"good")) == "good"
    assert as_text(np.array(b"scratch")) == "scratch"  # a 0-d array, as tf.data gives
    assert as_text(b"bad \xff byte") == "bad \ufffd byte"
    assert as_text(Path("a/b.png")) == str(Path("a/b.png"))
    assert as_text(3) == "3"


def test_jsonable_strict_json_without_nan():
    value = {"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": Path("x")}
    assert jsonable(value, allow_nan=False) == {"a": None, "b": [1.5, None], "c": "x"}
    kept = jsonable(value)
    assert math.isnan(kept["a"]) and kept["b"] == [1.5, math.inf]


def test_write_png_atomic_round_trips(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 7, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    write_png_atomic(tmp_path / "g.png", grey)
    write_png_atomic(tmp_path / "rgb.png", rgb)
    write_png_atomic(tmp_path / "bgr.png", rgb, bgr=True)
    write_png_atomic(tmp_path / "deep.png", deep)
    read = lambda name: cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)  # noqa: E731
    np.testing.assert_array_equal(read("g.png"), grey[..., 0])
    np.testing.assert_array_equal(read("rgb.png"), rgb[..., ::-1])  # OpenCV reads BGR
    np.testing.assert_array_equal(read("bgr.png"), rgb)
    np.testing.assert_array_equal(read("deep.png"), deep)
    assert (tmp_path / "g.png").read_bytes() == encode_png(grey)
    with pytest.raises(FileExistsError, match=r"g.png.*overwrite=True"):
        write_png_atomic(tmp_path / "g.png", rgb, overwrite=False)
    np.testing.assert_array_equal(read("g.png"), grey[..., 0])  # the old file is kept
    with pytest.raises(ValueError, match=r"Expected a uint8 or uint16 image.*float32"):
        write_png_atomic(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bgr.png",
        "deep.png",
        "g.png",
        "rgb.png",
    ]


class _Spied(Exception):
    pass


def test_every_image_size_parse_goes_through_parse_image_size(
    monkeypatch, tmp_path, synthetic_root, tiny_model
):
    """Datasets, image loading, resizing, the Detector and the SavedModel export all read
    ``image_size`` with :func:`io_utils.parse_image_size`."""
    from keras_skipae import data, io_utils
    from keras_skipae.export import export_saved_model
    from keras_skipae.inference import Detector

    real = io_utils.parse_image_size
    calls = []

    def spy(image_size, **kwargs):
        calls.append(image_size)
        if image_size == (31, 29):  # the marker of the callers stopped here
            raise _Spied("spy")
        return real(image_size, **kwargs)

    monkeypatch.setattr(io_utils, "parse_image_size", spy)
    png = synthetic_root / "mesh" / "train" / "good" / "000.png"
    assert data.load_image(png, image_size=(8, 9)).shape == (8, 9, 1)
    assert calls[-1] == (8, 9)
    assert data.datasets.resize_image(np.zeros((4, 4, 1), np.float32), 6).shape == (6, 6, 1)
    assert calls[-1] == 6
    data.folder_dataset(png.parent, image_size=(10, 11))
    assert calls[-1] == (10, 11)
    data.mvtec_dataset(synthetic_root, "mesh", split="test", image_size=12)
    assert calls[-1] == 12
    model = tiny_model("aesc")
    with pytest.raises(_Spied, match="spy"):
        Detector(model, image_size=(31, 29))
    with pytest.raises(_Spied, match="spy"):
        export_saved_model(model, tmp_path / "export", image_size=(31, 29))
    assert calls[-2:] == [(31, 29), (31, 29)]
    assert not (tmp_path / "export").exists()


def test_the_colour_mode_mapping_values():
    from keras_skipae import io_utils

    assert io_utils.COLOR_MODES == {"grayscale": 1, "rgb": 3}
    assert [io_utils.color_mode_for(c) for c in (1, 3, 4)] == ["grayscale", "rgb", None]
    assert [io_utils.channels_for(m) for m in ("grayscale", "rgb")] == [1, 3]
    with pytest.raises(ValueError, match="Received: color_mode='cmyk'"):
        io_utils.channels_for("cmyk")


def test_every_colour_mode_lookup_goes_through_io_utils(monkeypatch, synthetic_root, tiny_model):
    """Image loading, the run config, the export's arguments and settings, the Detector,
    evaluate's batches and the calibration images all map colour modes and channel counts
    with :func:`io_utils.color_mode_for` / :func:`io_utils.channels_for`."""
    from keras_skipae import io_utils
    from keras_skipae.data import load_image
    from keras_skipae.evaluation.batches import _score_batch
    from keras_skipae.export.api import calibration_images
    from keras_skipae.export.arguments import resolve_color_mode
    from keras_skipae.export.settings import ExportSettings
    from keras_skipae.inference import Detector
    from keras_skipae.runs import RunConfig

    calls = []
    real_mode, real_channels = io_utils.color_mode_for, io_utils.channels_for

    def mode_spy(channels):
        calls.append(("mode", channels))
        return real_mode(channels)

    def channels_spy(color_mode):
        calls.append(("channels", color_mode))
        return real_channels(color_mode)

    monkeypatch.setattr(io_utils, "color_mode_for", mode_spy)
    monkeypatch.setattr(io_utils, "channels_for", channels_spy)

    def used(step, expected):
        calls.clear()
        step()
        assert expected in calls, f"{step} did not map the colour mode through io_utils"

    png = synthetic_root / "mesh" / "train" / "good" / "000.png"
    used(lambda: load_image(png, color_mode="rgb"), ("channels", "rgb"))
    used(lambda: resolve_color_mode(None, 3), ("mode", 3))
    config = RunConfig.from_dict({"model": {"name": "aesc"}, "data": {}, "training": {}})
    used(lambda: config.color_mode(1), ("mode", 1))
    document = {"input": {"channels": 1, "image_size": [32, 32]}}
    used(lambda: ExportSettings.from_dict(document), ("mode", 1))
    model = tiny_model("aesc")
    used(lambda: Detector(model).color_mode, ("mode", 1))
    used(lambda: calibration_images(png.parent, (32, 32, 1), limit=1), ("mode", 1))
    used(lambda: _score_batch_call(_score_batch), ("mode", 1))


def _score_batch_call(score_batch):
    """Calls evaluate's per-batch scorer up to the model (a stub that stops it)."""

    def scorer(images):
        raise _Spied("scored")

    images = np.full((1, 8, 8, 1), 0.5, np.float32)
    with pytest.raises(_Spied, match="scored"):
        score_batch(scorer, {"image": images}, 1, {}, False)
