"""Tests for keras_skipae.data.synthetic: the MVTec-layout generator and its defects."""

import cv2
import numpy as np
import pytest

import keras_skipae_cli as cli
from keras_skipae.data import synthetic as S
from keras_skipae.ownership import MARKER, owner


def test_categories():
    assert S.list_categories() == list(S.CATEGORIES)
    assert {"woven", "mesh", "wood", "gravel", "nut"} <= set(S.CATEGORIES)
    assert all(len(S.DEFECTS[c]) >= 4 for c in S.CATEGORIES)


def test_layout_and_counts(tmp_path):
    root = S.make_dataset(
        tmp_path / "d",
        categories=["nut", "woven"],
        image_size=32,
        n_train=3,
        n_test_good=2,
        n_test_defect=2,
        seed=0,
    )
    assert root == tmp_path / "d"
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "nut", "woven"]
    assert owner(root) == "dataset"
    for cat, channels in (("nut", 1), ("woven", 3)):
        base = root / cat
        assert len(list((base / "train" / "good").glob("*.png"))) == 3
        assert len(list((base / "test" / "good").glob("*.png"))) == 2
        assert sorted(p.name for p in (base / "test").iterdir()) == sorted(
            ("good",) + S.DEFECTS[cat]
        )
        for d in S.DEFECTS[cat]:
            imgs = sorted((base / "test" / d).glob("*.png"))
            masks = sorted((base / "ground_truth" / d).glob("*_mask.png"))
            assert [p.stem + "_mask" for p in imgs] == [m.stem for m in masks] and len(imgs) == 2
            for m in masks:
                mask = cv2.imread(str(m), cv2.IMREAD_UNCHANGED)
                assert mask.shape == (32, 32) and set(np.unique(mask)) == {0, 255}
        img = cv2.imread(str(base / "train" / "good" / "000.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == ((32, 32) if channels == 1 else (32, 32, 3))
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary folder was renamed


@pytest.mark.parametrize("category", S.CATEGORIES)
def test_masks_are_exactly_the_changed_pixels(category):
    for k, defect in enumerate(S.DEFECTS[category]):
        for i in range(2):
            seed = [4, k, i]
            clean, none = S.generate_sample(category, image_size=64, seed=seed)
            img, mask = S.generate_sample(category, image_size=64, defect=defect, seed=seed)
            assert not none.any()
            assert img.dtype == np.uint8 and mask.dtype == bool
            changed = np.any(img != clean, axis=-1)
            np.testing.assert_array_equal(mask, changed, err_msg=f"{category}/{defect}")
            frac = mask.mean()
            assert 0.0005 < frac < 0.15, (category, defect, frac)  # local, not stain-sized blobs


def test_thin_defects_are_thin():
    widths = []
    for i in range(6):
        _, mask = S.generate_sample("wood", image_size=128, defect="crack", seed=[1, i])
        # area / skeleton length ~ width: erode once -> most of a thin line disappears
        eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
        widths.append(eroded.sum() / max(mask.sum(), 1))
    assert np.mean(widths) < 0.25


def test_textures_vary_between_samples():
    for cat in S.CATEGORIES:
        a, _ = S.generate_sample(cat, image_size=64, seed=[0, 1])
        b, _ = S.generate_sample(cat, image_size=64, seed=[0, 2])
        diff = np.abs(a.astype(int) - b.astype(int)).mean()
        assert diff > 4, (cat, diff)


def test_deterministic_and_refuses_overwrite(tmp_path):
    kw = dict(categories=["gravel"], image_size=32, n_train=2, n_test_good=1, n_test_defect=1)
    a = S.make_dataset(tmp_path / "a", seed=7, **kw)
    b = S.make_dataset(tmp_path / "b", seed=7, **kw)
    c = S.make_dataset(tmp_path / "c", seed=8, **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)
    with pytest.raises(FileExistsError, match="overwrite"):
        S.make_dataset(a, seed=9, **kw)
    S.make_dataset(a, seed=8, overwrite=True, **kw)
    assert all((a / f).read_bytes() == (c / f).read_bytes() for f in files)


def test_overwrite_refuses_folders_it_did_not_make(tmp_path):
    kw = dict(categories=["gravel"], image_size=32, n_train=1, n_test_good=1, n_test_defect=1)
    user = tmp_path / "mvtec"
    (user / "carpet" / "train" / "good").mkdir(parents=True)
    (user / "carpet" / "train" / "good" / "000.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"does not write there \('carpet'\)"):
        S.make_dataset(user, overwrite=True, **kw)
    assert (user / "carpet" / "train" / "good" / "000.png").read_bytes() == b"mine"
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(FileExistsError, match="not a folder"):
        S.make_dataset(afile, overwrite=True, **kw)
    assert afile.read_text() == "mine"
    made = S.make_dataset(tmp_path / "made", **kw)
    assert owner(made) == "dataset"
    (made / MARKER).unlink()  # categories only, no marker: could be a user's MVTec wood/
    with pytest.raises(FileExistsError, match="no .keras_skipae.json marker"):
        S.make_dataset(made, overwrite=True, **kw)
    (made / S.DATASET_MARKER).write_text("made")  # the marker of version 0.1
    S.make_dataset(made, overwrite=True, **kw)
    assert owner(made) == "dataset" and not (made / S.DATASET_MARKER).exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="carpet"):
        S.make_dataset(tmp_path / "x", categories=["carpet"])
    with pytest.raises(ValueError, match="image_size"):
        S.make_dataset(tmp_path / "x", image_size=4)
    with pytest.raises(ValueError, match="defect"):
        S.generate_sample("nut", defect="misplaced")
    assert not (tmp_path / "x").exists()


def test_cli_synth_and_preview(tmp_path, capsys):
    out = tmp_path / "syn"
    rc = cli.main(
        [
            "synth",
            "--out",
            str(out),
            "--categories",
            "mesh",
            "nut",
            "--image-size",
            "32",
            "--n-train",
            "2",
            "--preview",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["mesh", "nut"]
    for name in ("corruption_preview.png", "defects_preview.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 100
    assert "wrote" in capsys.readouterr().out
    rc = cli.main(["synth", "--out", str(out)])  # exists: refused, one-line error
    assert rc == 1
    assert "already exists" in capsys.readouterr().err


def test_the_package_keeps_its_public_names():
    from keras_skipae import data

    assert sorted(S.__all__) == sorted(
        [
            "CATEGORIES",
            "CHANNELS",
            "DATASET_ENTRIES",
            "DATASET_MARKER",
            "DEFECTS",
            "LABELLED_SPLIT_ID",
            "generate_sample",
            "labelled_arrays",
            "labelled_dataset",
            "list_categories",
            "make_dataset",
        ]
    )
    for name in S.__all__:
        assert getattr(S, name) is not None, name
    assert data.make_dataset is S.make_dataset and data.CATEGORIES is S.CATEGORIES
    assert S.CHANNELS == {"woven": 3, "mesh": 1, "wood": 3, "gravel": 1, "nut": 1}
    for cat in S.CATEGORIES:  # the channel count is the one the images have
        img, _ = S.generate_sample(cat, image_size=16, seed=0)
        assert img.shape == (16, 16, S.CHANNELS[cat])
    assert not hasattr(S, "preview") and not hasattr(data, "preview")  # drawn by apps


def test_preview_figures(tmp_path):
    from keras_skipae.apps.synth_preview import preview

    paths = preview(tmp_path, categories=["nut"], image_size=32, n_examples=2, seed=1)
    assert [p.name for p in paths] == ["corruption_preview.png", "defects_preview.png"]
    for p in paths:
        assert cv2.imread(str(p)) is not None
    with pytest.raises(FileExistsError, match="corruption_preview.png.*overwrite=True"):
        preview(tmp_path, categories=["nut"], image_size=32, n_examples=2, overwrite=False)
