"""Tests for the parallel image reading of prediction (keras_skipae.data.reader) and its use by
``ks.Detector.predict`` and ``predict_to_folder``.

References are the sequential path the Detector used before: ``load_image`` (TensorFlow's
decoders) and ``resize_image`` on each file, scored as arrays.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from conftest import make_tiny_model
from PIL import Image

import keras_skipae as ks
from keras_skipae.apps.predict import predict_to_folder
from keras_skipae.data import DatasetError, image_info, load_image, reader
from keras_skipae.data.datasets import resize_image

SHAPE = (37, 29)  # odd sizes: the resize is not a plain 2:1


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_chunk(png: bytes, kind: bytes, body: bytes) -> bytes:
    """``png`` with a chunk inserted right after IHDR (8-byte signature + 25-byte IHDR)."""
    return png[:33] + _chunk(kind, body) + png[33:]


def _write(path, kind, rng):
    """Writes a file of ``kind``; returns whether the reader decodes it with OpenCV."""
    h, w = SHAPE
    gray8 = (rng.random((h, w)) * 255).astype(np.uint8)
    bgr8 = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    if kind == "png8_gray":
        cv2.imwrite(str(path), gray8)
    elif kind == "png8_rgb":
        cv2.imwrite(str(path), bgr8)
    elif kind == "png8_rgba":
        alpha = (rng.random((h, w, 1)) * 255).astype(np.uint8)
        cv2.imwrite(str(path), np.concatenate([bgr8, alpha], axis=-1))
    elif kind == "png16_gray":
        cv2.imwrite(str(path), (rng.random((h, w)) * 65535).astype(np.uint16))
    elif kind == "png16_rgb":
        cv2.imwrite(str(path), (rng.random((h, w, 3)) * 65535).astype(np.uint16))
    elif kind == "png8_gamma":  # a gAMA chunk (1/2.2): neither decoder applies it
        png = cv2.imencode(".png", bgr8)[1].tobytes()
        path.write_bytes(_with_chunk(png, b"gAMA", struct.pack(">I", 45455)))
    elif kind == "png8_gray_trns":  # a transparent grey level
        png = cv2.imencode(".png", gray8)[1].tobytes()
        path.write_bytes(_with_chunk(png, b"tRNS", struct.pack(">H", int(gray8[0, 0]))))
    elif kind == "png_palette":
        Image.fromarray(bgr8).convert("P").save(path)
    elif kind == "png_gray_alpha":
        Image.fromarray(np.stack([gray8, gray8[::-1]], axis=-1), "LA").save(path)
    elif kind == "png_1bit":
        Image.fromarray(gray8 > 127).save(path)
    elif kind in ("jpeg_gray", "jpeg_rgb"):
        cv2.imwrite(str(path), gray8 if kind == "jpeg_gray" else bgr8)
    elif kind == "bmp_rgb":
        cv2.imwrite(str(path), bgr8)
    return kind.startswith(("png8", "png16"))


KINDS = {
    "png8_gray": ".png",
    "png8_rgb": ".png",
    "png8_rgba": ".png",
    "png16_gray": ".png",
    "png16_rgb": ".png",
    "png8_gamma": ".png",
    "png8_gray_trns": ".png",
    "png_palette": ".png",
    "png_gray_alpha": ".png",
    "png_1bit": ".png",
    "jpeg_gray": ".jpg",
    "jpeg_rgb": ".jpg",
    "bmp_rgb": ".bmp",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_the_arrays_equal_those_of_load_image_and_resize_image(kind, color_mode, tmp_path):
    rng = np.random.default_rng(len(kind))
    path = tmp_path / f"image{KINDS[kind]}"
    by_opencv = _write(path, kind, rng)
    channels = 1 if color_mode == "grayscale" else 3
    assert (reader._decode_png(path, image_info(path), channels) is not None) == by_opencv
    old = load_image(path, color_mode=color_mode).numpy()  # the Detector's path before
    assert old.shape == (*SHAPE, channels) and old.dtype == np.float32
    np.testing.assert_array_equal(reader.read_image(path, color_mode=color_mode), old)
    for size in ((16, 20), (48, 48), SHAPE):
        (item,) = reader.read_images([path], color_mode=color_mode, size=size, workers=2)
        assert item.error is None and item.path == str(path) and item.index == 0
        assert item.image.dtype == item.resized.dtype == np.float32
        np.testing.assert_array_equal(item.image, old)
        want = old if size == SHAPE else resize_image(old, size).numpy()
        assert item.resized.shape == (*size, channels)
        np.testing.assert_array_equal(item.resized, want)


def _png_bytes(rng, shape=SHAPE) -> bytes:
    return cv2.imencode(".png", (rng.random(shape) * 255).astype(np.uint8))[1].tobytes()


def _corrupt_idat(png: bytes) -> bytes:
    """A PNG whose header and end chunk are fine but whose image data is damaged (the CRC
    fixed), so it passes ``image_info`` and fails to decode."""
    i = png.index(b"IDAT")
    n = struct.unpack(">I", png[i - 4 : i])[0]
    body = png[i + 4 : i + 10] + bytes(n - 6)
    return png[: i + 4] + body + struct.pack(">I", zlib.crc32(b"IDAT" + body)) + png[i + 8 + n :]


@pytest.fixture
def folder(tmp_path):
    """A folder of 12 files; bad ones in the middle: a damaged PNG, a truncated PNG, a
    text file and a PNG over the pixel limit used by the tests (2000 pixels)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    for i in range(12):
        (root / f"{i:02d}.png").write_bytes(_png_bytes(rng))
    (root / "03.png").write_bytes(_corrupt_idat(_png_bytes(rng)))
    (root / "05.png").write_bytes(_png_bytes(rng)[:-20])  # no IEND
    (root / "07.png").unlink()
    (root / "07.txt").write_text("not an image")
    (root / "09.png").write_bytes(_png_bytes(rng, (50, 50)))  # 2500 pixels > 2000
    return root


def _old_error(path, max_pixels):
    """The message the Detector gave for a bad file before (load_image's errors)."""
    if path.suffix != ".png":
        return f"{str(path)!r} is not an image file (expected one of .png, .jpg, .jpeg, .bmp)."
    try:
        load_image(path, max_pixels=max_pixels)
    except DatasetError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - TensorFlow's decoding error
        return f"Cannot decode {str(path)!r}: {exc.message}"
    return None


def test_order_and_bad_files_are_kept_in_parallel(folder):
    files = sorted(folder.iterdir())
    errors = [_old_error(p, 2000) for p in files]
    assert [e is not None for e in errors] == [i in (3, 5, 7, 9) for i in range(12)]
    assert "Cannot decode" in errors[3] and "truncated" in errors[5] and "2,000" in errors[9]
    for workers, prefetch in ((0, None), (1, 1), (3, 2), (4, None)):
        items = list(
            reader.read_images(
                files, size=(16, 16), max_pixels=2000, workers=workers, prefetch=prefetch
            )
        )
        assert [r.index for r in items] == list(range(12))
        assert [r.path for r in items] == [str(p) for p in files]
        assert [r.error for r in items] == errors
        for r, path in zip(items, files):
            if r.error is None:
                old = load_image(path).numpy()
                np.testing.assert_array_equal(r.image, old)
                np.testing.assert_array_equal(r.resized, resize_image(old, 16).numpy())
            else:
                assert r.image is None and r.resized is None


def test_reading_ahead_is_bounded_and_stops_when_closed(folder, monkeypatch):
    files = sorted(folder.glob("*.png")) * 5  # 55 files
    read = []
    real = reader._read_one

    def counting(index, path, *args):
        read.append(index)
        return real(index, path, *args)

    monkeypatch.setattr(reader, "_read_one", counting)
    stream = reader.read_images(files, workers=2, prefetch=3)
    assert read == []  # nothing is read before the first item is asked for
    first = [next(stream) for _ in range(4)]
    assert [r.index for r in first] == [0, 1, 2, 3]
    assert len(read) <= 4 + 3  # at most `prefetch` files ahead
    stream.close()
    assert len(read) <= 4 + 3 and sorted(read) == list(range(len(read)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"workers": -1}, r"`workers` to be an int >= 0 .* Received: workers=-1"),
        ({"workers": 1.5}, r"Received: workers=1\.5"),
        ({"workers": True}, r"Received: workers=True"),
        ({"workers": "2"}, r"Received: workers='2'"),
        ({"prefetch": 0}, r"`prefetch` to be an int >= 1\. Received: prefetch=0"),
        ({"prefetch": False}, r"Received: prefetch=False"),
        ({"color_mode": "cmyk"}, r"color_mode='cmyk'"),
        ({"max_pixels": 0}, r"max_pixels=0"),
    ],
)
def test_bad_reader_arguments_are_refused_when_called(kwargs, match, folder):
    with pytest.raises(ValueError, match=match):
        reader.read_images(sorted(folder.iterdir()), **kwargs)


def test_check_workers():
    assert reader.check_workers(0) == 0 and reader.check_workers(np.int64(3)) == 3
    assert reader.check_workers(None) == reader.default_workers()
    assert 1 <= reader.default_workers() <= reader.MAX_DEFAULT_WORKERS
    with pytest.raises(ValueError, match=r"Received: workers=-2"):
        reader.check_workers(-2)


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("aesc", input_shape=(32, 32, 1))


def _same_size_folder(root, rng, n=7, shape=(40, 48)):
    root.mkdir()
    for i in range(n):
        (root / f"{i}.png").write_bytes(_png_bytes(rng, shape))
    return sorted(root.iterdir())


@pytest.mark.parametrize("tiled", [False, True])
def test_detector_scores_equal_the_sequential_path(model, tiled, tmp_path):
    rng = np.random.default_rng(1)
    shape = (64, 48) if tiled else (40, 48)
    files = _same_size_folder(tmp_path / "images", rng, shape=shape)
    tiles = {"tile_size": 32, "tile_overlap": 8} if tiled else {}
    det = ks.Detector(model, threshold=0.01, **tiles)
    # The path before: TensorFlow's decoding of every file, then the arrays scored.
    arrays = np.stack([load_image(p).numpy() for p in files])
    want = list(det.predict(arrays, batch_size=3))
    for workers in (0, 1, 3):
        got = list(det.predict(files[0].parent, batch_size=3, workers=workers))
        assert [p.path for p in got] == [str(p) for p in files]
        for g, w in zip(got, want):
            assert g.index == w.index
            np.testing.assert_allclose(g.score, w.score, rtol=0, atol=1e-6)
            assert g.is_anomalous == w.is_anomalous
            np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, rtol=0, atol=1e-6)
            np.testing.assert_allclose(g.reconstruction, w.reconstruction, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(g.image, w.image)


def test_detector_reads_at_most_the_next_batch_ahead(model, folder, monkeypatch):
    det = ks.Detector(model, threshold=0.01)
    read = []
    real = reader._read_one

    def counting(index, path, *args):
        read.append(index)
        return real(index, path, *args)

    monkeypatch.setattr(reader, "_read_one", counting)
    stream = det.predict(sorted(folder.glob("0[0-2].png")) * 4, batch_size=2, workers=2)
    first = next(stream)  # the first batch (files 0, 1) is scored
    assert first.index == 0 and len(read) <= 2 + 2  # and at most the next batch read
    assert [p.index for p in stream] == list(range(1, 12)) and sorted(read) == list(range(12))


def test_detector_reports_a_bad_file_in_the_middle_as_before(model, folder):
    det = ks.Detector(model, threshold=0.01)
    files = sorted(folder.iterdir())
    sequential = list(det.predict(folder, batch_size=4, on_error="report", workers=0))
    parallel = list(det.predict(folder, batch_size=4, on_error="report", workers=3))
    assert [p.error for p in parallel] == [_old_error(p, 2**26) for p in files]
    assert [p.ok for p in parallel] == [i not in (3, 5, 7) for i in range(12)]
    assert [p.score for p in parallel] == [p.score for p in sequential]
    with pytest.raises(DatasetError, match=r"Cannot decode .*03\.png.*Invalid PNG data"):
        list(det.predict(folder, batch_size=4, workers=2))
    with pytest.warns(UserWarning, match=r"Skipped \(on_error='skip'\)") as caught:
        kept = list(det.predict(folder, batch_size=4, on_error="skip", workers=2))
    skipped = [str(w.message) for w in caught]
    assert skipped == [
        _old_error(files[i], 2**26) + " Skipped (on_error='skip')." for i in (3, 5, 7)
    ]
    assert [p.path for p in kept] == [str(files[i]) for i in range(12) if i not in (3, 5, 7)]
    with pytest.raises(ValueError, match=r"Received: workers=-1"):
        det.predict(folder, workers=-1)


def test_predict_to_folder_writes_the_same_rows_with_any_workers(model, folder, tmp_path):
    keras_file = tmp_path / "model.keras"
    ks.export_keras(model, keras_file)
    rows = {}
    for workers in (0, 3):
        out = tmp_path / f"out{workers}"
        info = predict_to_folder(
            keras_file,
            [folder],
            out,
            threshold=0.01,
            batch_size=4,
            progress=False,
            max_pixels=2000,
            workers=workers,
        )
        assert info["n"] == 12 and info["n_errors"] == 4
        rows[workers] = (out / "predictions.csv").read_text(encoding="utf-8")
    assert rows[0] == rows[3]
    with pytest.raises(ValueError, match=r"Received: workers=-1"):
        predict_to_folder(keras_file, [folder], tmp_path / "never", progress=False, workers=-1)
    assert not (tmp_path / "never").exists()
