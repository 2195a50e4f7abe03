"""Tests for keras_skipae.data.datasets: MVTec layout, plain folders, decoding, bad input."""

import shutil
import struct
import warnings

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_skipae.data import datasets as D
from keras_skipae.data import synthetic


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A small synthetic MVTec-layout tree (never modified by tests)."""
    root = tmp_path_factory.mktemp("mvtec") / "root"
    synthetic.make_dataset(
        root,
        categories=["wood", "mesh"],
        image_size=32,
        n_train=3,
        n_test_good=2,
        n_test_defect=2,
        seed=1,
    )
    return root


@pytest.fixture
def copy(tree, tmp_path):
    """A writable copy of the tree, for the bad-input tests."""
    dst = tmp_path / "root"
    shutil.copytree(tree, dst)
    return dst


def _items(ds):
    return [
        {k: (v.numpy().decode() if v.dtype == tf.string else v.numpy()) for k, v in e.items()}
        for e in ds
    ]


def _read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def test_mvtec_round_trip(tree):
    train = _items(D.mvtec_dataset(tree, "wood", split="train", image_size=32, color_mode="rgb"))
    assert len(train) == 3
    assert all(
        e["label"] == 0 and e["defect_type"] == "good" and e["mask"].sum() == 0 for e in train
    )
    test_ds = D.mvtec_dataset(tree, "wood", split="test", image_size=32, color_mode="rgb")
    spec = test_ds.element_spec
    assert spec["image"].shape == (32, 32, 3) and spec["mask"].shape == (32, 32, 1)
    assert spec["label"].dtype == tf.int32 and spec["defect_type"].dtype == tf.string
    assert set(spec) == set(D.mvtec_dataset(tree, "wood", image_size=32).element_spec)
    test = _items(test_ds)
    n_def = len(synthetic.DEFECTS["wood"])
    assert len(test) == 2 + 2 * n_def
    seen = set()
    for e in test:
        folder = e["path"].split("/")[-2]
        assert e["defect_type"] == folder
        assert e["label"] == (0 if folder == "good" else 1)
        # the image is the file, and the mask is its ground truth, aligned
        np.testing.assert_allclose(e["image"], _read(e["path"]) / 255.0, atol=1e-6)
        if folder == "good":
            assert e["mask"].sum() == 0
        else:
            stem = e["path"].split("/")[-1][:-4]
            gt = _read(tree / "wood" / "ground_truth" / folder / f"{stem}_mask.png")
            np.testing.assert_array_equal(e["mask"][..., 0], (gt > 0).astype(np.float32))
            assert e["mask"].sum() > 0
            seen.add(folder)
    assert seen == set(synthetic.DEFECTS["wood"])


def test_resize_and_color_modes(tree):
    e = next(
        iter(
            D.mvtec_dataset(tree, "mesh", split="test", image_size=(16, 24), color_mode="rgb").skip(
                4
            )
        )
    )
    assert e["image"].shape == (16, 24, 3) and e["mask"].shape == (16, 24, 1)
    img = e["image"].numpy()
    np.testing.assert_allclose(img[..., 0], img[..., 1])  # gray file -> equal channels
    assert set(np.unique(e["mask"].numpy())) <= {0.0, 1.0}  # nearest neighbour
    g = next(iter(D.mvtec_dataset(tree, "wood", image_size=None, color_mode="grayscale")))
    assert g["image"].shape == (32, 32, 1)
    assert 0.0 <= g["image"].numpy().min() and g["image"].numpy().max() <= 1.0


def test_decoding_formats(tmp_path):
    gray = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    cv2.imwrite(str(tmp_path / "a_gray8.png"), gray)
    cv2.imwrite(str(tmp_path / "b_gray16.png"), gray.astype(np.uint16) * 257)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([yy * 7, xx * 7, 255 - yy * 4 - xx * 3], axis=-1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "c_rgb.jpg"), smooth[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(str(tmp_path / "d_rgb.bmp"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "e_gray.bmp"), gray)
    cv2.imwrite(str(tmp_path / "f_rgb16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    items = _items(D.folder_dataset(tmp_path, image_size=None, color_mode="rgb"))
    assert [e["path"].split("/")[-1] for e in items] == sorted(p.name for p in tmp_path.iterdir())
    g = gray / 255.0
    np.testing.assert_allclose(items[0]["image"][..., 1], g, atol=1e-6)
    np.testing.assert_allclose(items[1]["image"][..., 0], g, atol=1e-4)  # 16 bit
    jpeg = _read(tmp_path / "c_rgb.jpg") / 255.0  # compare with OpenCV's decoding
    np.testing.assert_allclose(items[2]["image"], jpeg, atol=0.05)  # lossy, decoders differ
    np.testing.assert_allclose(items[2]["image"].mean(), smooth.mean() / 255.0, atol=0.01)
    np.testing.assert_allclose(items[3]["image"], rgb / 255.0, atol=1e-6)  # bmp
    np.testing.assert_allclose(items[4]["image"][..., 2], g, atol=1e-6)
    np.testing.assert_allclose(items[5]["image"], rgb / 255.0, atol=1e-4)
    grays = _items(D.folder_dataset(tmp_path, image_size=32, color_mode="grayscale"))
    assert all(e["image"].shape == (32, 32, 1) for e in grays)
    np.testing.assert_allclose(grays[1]["image"][..., 0], g, atol=1e-4)
    expect = (0.2989 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    np.testing.assert_allclose(grays[3]["image"][..., 0], expect, atol=0.01)


def test_folder_validation_split(tree):
    folder = tree / "wood" / "test" / "good"
    src = tree / "mesh" / "train" / "good"
    all_paths = {e["path"] for e in _items(D.folder_dataset(src, image_size=32))}
    tr = {
        e["path"]
        for e in _items(
            D.folder_dataset(src, image_size=32, validation_split=0.34, subset="training", seed=3)
        )
    }
    va = {
        e["path"]
        for e in _items(
            D.folder_dataset(src, image_size=32, validation_split=0.34, subset="validation", seed=3)
        )
    }
    assert tr | va == all_paths and not tr & va and len(va) == 1
    va2 = {
        e["path"]
        for e in _items(
            D.folder_dataset(src, image_size=32, validation_split=0.34, subset="validation", seed=3)
        )
    }
    assert va2 == va
    e = _items(D.folder_dataset(folder, image_size=32))[0]
    assert e["label"] == 0 and e["defect_type"] == "good" and e["mask"].sum() == 0
    with pytest.raises(ValueError, match="subset"):
        D.folder_dataset(src, validation_split=0.2)
    with pytest.raises(ValueError, match="color_mode"):
        D.folder_dataset(src, color_mode="bgr")
    with pytest.raises(ValueError, match="image_size"):
        D.folder_dataset(src, image_size="big")


# --------------------------------------------------------------------------- bad input


def test_missing_category_lists_available(tree):
    with pytest.raises(D.DatasetNotFoundError, match="carpet.*Available categories: mesh, wood"):
        D.mvtec_dataset(tree, "carpet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.mvtec_dataset(tree / "nowhere", "wood")


def test_a_file_where_a_folder_is_expected_is_named(tmp_path):
    file = tmp_path / "images.tar"
    file.write_bytes(b"not a folder")
    for call, what in [
        (lambda: D.mvtec_dataset(file, "wood"), "dataset root"),
        (lambda: D.list_mvtec_categories(file), "dataset root"),
        (lambda: D.folder_dataset(file), "image folder"),
    ]:
        with pytest.raises(D.DatasetNotFoundError, match=f"The {what} '.*images.tar' is a file; "):
            call()


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DatasetNotFoundError, match="No images found in .*empty"):
        D.folder_dataset(tmp_path / "empty")
    (tmp_path / "cat" / "train" / "good").mkdir(parents=True)
    with pytest.raises(D.DatasetNotFoundError, match="train.good"):
        D.mvtec_dataset(tmp_path, "cat")


def test_non_image_file(copy):
    bad = copy / "wood" / "train" / "good" / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(D.DatasetError, match="notes.txt"):
        D.mvtec_dataset(copy, "wood")
    with pytest.warns(UserWarning, match="notes.txt"):
        ds = D.mvtec_dataset(copy, "wood", on_error="skip")
    assert len(_items(ds)) == 3


def test_unreadable_image_file(copy):
    good = copy / "wood" / "train" / "good"
    (good / "garbage.png").write_bytes(b"this is not a png file at all, no header here")
    with pytest.raises(D.DatasetError, match="garbage.png.*not a PNG, JPEG or BMP"):
        D.mvtec_dataset(copy, "wood")
    (good / "garbage.png").unlink()
    data = (good / "000.png").read_bytes()
    (good / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(D.DatasetError, match="truncated.png.*truncated"):
        D.mvtec_dataset(copy, "wood")
    with pytest.warns(UserWarning, match="truncated.png"):
        assert len(_items(D.mvtec_dataset(copy, "wood", on_error="skip"))) == 3
    (good / "truncated.png").unlink()
    (good / "empty.jpg").write_bytes(b"")
    with pytest.raises(D.DatasetError, match="empty.jpg"):
        D.mvtec_dataset(copy, "wood")


def test_image_without_mask(copy):
    (copy / "wood" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(D.DatasetError, match=r"No ground-truth mask .*crack/001.png"):
        D.mvtec_dataset(copy, "wood", split="test")
    with pytest.warns(UserWarning, match="001.png"):
        items = _items(D.mvtec_dataset(copy, "wood", split="test", on_error="skip"))
    assert not any(e["path"].endswith("crack/001.png") for e in items)
    assert len(items) == 2 + 2 * len(synthetic.DEFECTS["wood"]) - 1


def test_mask_without_image(copy):
    (copy / "wood" / "test" / "crack" / "000.png").unlink()
    with pytest.raises(D.DatasetError, match=r"000_mask.png' has no image"):
        D.mvtec_dataset(copy, "wood", split="test")
    with pytest.warns(UserWarning, match="000_mask.png"):
        D.mvtec_dataset(copy, "wood", split="test", on_error="skip")


def test_mismatched_sizes(copy):
    mask = copy / "wood" / "ground_truth" / "hole" / "000_mask.png"
    cv2.imwrite(str(mask), np.zeros((20, 20), np.uint8))
    with pytest.raises(D.DatasetError, match=r"000_mask.png' is 20x20 but its image .* 32x32"):
        D.mvtec_dataset(copy, "wood", split="test")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        items = _items(D.mvtec_dataset(copy, "wood", split="test", on_error="skip"))
    assert any("000_mask.png" in str(x.message) for x in w)
    assert not any(e["path"].endswith("hole/000.png") for e in items)


def test_bad_arguments(tree):
    with pytest.raises(ValueError, match="split"):
        D.mvtec_dataset(tree, "wood", split="val")
    with pytest.raises(ValueError, match="on_error"):
        D.mvtec_dataset(tree, "wood", on_error="ignore")


def test_image_info(tree):
    info = D.image_info(tree / "wood" / "train" / "good" / "000.png")
    assert info == {"format": "png", "height": 32, "width": 32, "channels": 3, "bit_depth": 8}
    assert D.list_mvtec_categories(tree) == ["mesh", "wood"]
    img = D.load_image(tree / "mesh" / "train" / "good" / "000.png", color_mode="rgb")
    assert img.shape == (32, 32, 3)


def test_feeds_corrupt(tree):
    from keras_skipae.data import Stains, corrupt

    ds = D.mvtec_dataset(tree, "wood", split="test", image_size=32, color_mode="rgb")
    batches = list(corrupt(ds, Stains(), seed=0, batch_size=8, with_mask=True))
    n = 2 + 2 * len(synthetic.DEFECTS["wood"])
    assert sum(b[0].shape[0] for b in batches) == n
    assert batches[0][0].shape[1:] == (32, 32, 3) and batches[0][2].shape[1:] == (32, 32, 1)


def test_data_package_imports_no_model_code_and_draws_nothing():
    import ast
    from pathlib import Path

    import keras_skipae.data as data_pkg

    forbidden = ("keras_skipae.models", "keras_skipae.plotting", "matplotlib")
    paths = sorted(Path(data_pkg.__file__).parent.rglob("*.py"))
    assert any(p.parent.name == "synthetic" for p in paths)  # the sub-packages are read too
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            assert not any(n.startswith(forbidden) for n in names), path


def test_public_names_import_from_datasets_and_data():
    from keras_skipae import data
    from keras_skipae.data import image_files, images

    for name in D.__all__:
        assert getattr(D, name) is not None, name
    # one object under each name, wherever it is imported from
    assert D.load_image is images.load_image is data.load_image
    assert D.resize_image is images.resize_image
    assert D.image_info is image_files.image_info is data.image_info
    assert D.DatasetError is image_files.DatasetError is data.DatasetError
    assert issubclass(data.DatasetNotFoundError, data.DatasetError)
    assert D.DEFAULT_MAX_PIXELS == data.DEFAULT_MAX_PIXELS == 64 * 2**20
    assert not hasattr(data, "corruption")  # the pre-0.2 alias of data.corruptions is gone


def test_resize_image_needs_a_size():
    x = np.zeros((4, 4, 1), np.float32)
    np.testing.assert_array_equal(D.resize_image(x, (2, 3)).numpy(), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"Received: image_size=None"):
        D.resize_image(x, None)


def test_an_image_larger_than_max_pixels_is_refused_from_its_header(copy, tmp_path):
    from harness import png_declaring

    bomb = png_declaring(copy / "wood" / "train" / "good" / "bomb.png", 100000, 100000)
    declared = r"declares 100000x100000 pixels \(10,000,000,000\), more than max_pixels=67,108,864"
    assert D.DEFAULT_MAX_PIXELS == 64 * 2**20
    # Refused when the dataset is made, before TF's decoder ("PNG size too large for int").
    with pytest.raises(D.DatasetError, match=rf"bomb\.png' {declared}"):
        D.mvtec_dataset(copy, "wood", split="train", image_size=32)
    with pytest.raises(D.DatasetError, match="bomb.png"):
        D.folder_dataset(bomb.parent, image_size=32)
    with pytest.warns(UserWarning, match=r"bomb\.png.*max_pixels.*Skipped"):
        kept = _items(D.mvtec_dataset(copy, "wood", image_size=32, on_error="skip"))
    assert len(kept) == 3 and not any("bomb" in e["path"] for e in kept)
    with pytest.raises(D.DatasetError, match="bomb.png"):
        D.load_image(bomb)
    assert D.image_info(bomb, max_pixels=None)["width"] == 100000  # no limit: the header only
    # The limit is the product of the sides, for every format, and can be raised.
    good = copy / "wood" / "train" / "good" / "000.png"  # 32x32
    with pytest.raises(D.DatasetError, match=r"000\.png' declares 32x32 pixels \(1,024\)"):
        D.load_image(good, max_pixels=1023)
    assert D.load_image(good, max_pixels=1024).shape == (32, 32, 1)
    bmp = tmp_path / "wide.bmp"
    bmp.write_bytes(
        b"BM" + struct.pack("<I", 30) + bytes(12) + struct.pack("<ii", 70000, 1000) + bytes(8)
    )
    with pytest.raises(D.DatasetError, match=r"wide\.bmp' declares 70000x1000"):
        D.image_info(bmp)
    jpeg = tmp_path / "tall.jpg"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 65000, 2000, 1) + bytes(6)
    jpeg.write_bytes(b"\xff\xd8" + sof + bytes(16) + b"\xff\xd9")
    with pytest.raises(D.DatasetError, match=r"tall\.jpg' declares 2000x65000"):
        D.image_info(jpeg)
    for bad in (0, -5, 1.5, True, "64M"):
        with pytest.raises(ValueError, match="max_pixels"):
            D.folder_dataset(good.parent, max_pixels=bad)
