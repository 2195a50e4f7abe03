"""``train(task="segmentation")``, the labelled synthetic split and what refuses such runs."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_skipae as ks
from keras_skipae import training
from keras_skipae.apps import workflows
from keras_skipae.data import synthetic
from keras_skipae.runs import RunFolder
from keras_skipae.training.callbacks.preview import SegmentationPreview, _mask_image
from keras_skipae.training.pairs import _is_pairs
from keras_skipae.training.segmentation import _mask_to_float, check_output_matches_target

UNET = {"input_shape": (32, 32, 1), "filters": 4, "depth": 2, "num_outputs": 1}


# --------------------------------------------------------------------------- labelled split


def test_labelled_arrays_are_seeded_prefixes_with_exact_masks():
    d = synthetic.labelled_arrays("mesh", 8, image_size=32, seed=0)
    assert d["image"].shape == (8, 32, 32, 1) and d["image"].dtype == np.float32
    assert d["mask"].shape == (8, 32, 32, 1) and d["mask"].dtype == np.float32
    assert 0.0 <= d["image"].min() and d["image"].max() <= 1.0
    assert set(np.unique(d["mask"])) <= {0.0, 1.0}
    # 3 of 4 defective, spread evenly; the defect types in turn; good ones have no mask
    assert d["label"].tolist() == [0, 1, 1, 1, 0, 1, 1, 1]
    defects = list(synthetic.DEFECTS["mesh"])
    assert [t for t in d["defect_type"] if t != "good"] == defects + defects[:2]
    area = d["mask"].reshape(8, -1).sum(-1)
    assert np.all(area[d["label"] == 1] >= 3) and np.all(area[d["label"] == 0] == 0)

    cid = synthetic.CATEGORIES.index("mesh")
    for i in range(8):
        seed = [0, cid, synthetic.LABELLED_SPLIT_ID, i]
        clean, _ = synthetic.generate_sample("mesh", image_size=32, seed=seed)
        changed = np.any(np.round(d["image"][i] * 255).astype(np.uint8) != clean, axis=-1)
        np.testing.assert_array_equal(d["mask"][i, ..., 0].astype(bool), changed)
        # never one of make_dataset's images (seed word 0 for train, 1 for good test ones)
        for split_id in (0, 1):
            other, _ = synthetic.generate_sample("mesh", image_size=32, seed=[0, cid, split_id, i])
            assert not np.array_equal(clean, other)

    again = synthetic.labelled_arrays("mesh", 8, image_size=32, seed=0)
    for key in d:
        np.testing.assert_array_equal(again[key], d[key])
    prefix = synthetic.labelled_arrays("mesh", 3, image_size=32, seed=0)
    np.testing.assert_array_equal(prefix["image"], d["image"][:3])
    other = synthetic.labelled_arrays("mesh", 8, image_size=32, seed=1)
    assert not np.array_equal(other["image"], d["image"])

    ds = ks.data.labelled_dataset("mesh", 8, image_size=32, seed=0)
    images, masks = next(iter(ds.batch(8)))
    np.testing.assert_array_equal(images.numpy(), d["image"])
    np.testing.assert_array_equal(masks.numpy(), d["mask"])

    rgb = synthetic.labelled_arrays("woven", 2, image_size=16, seed=0, defect_fraction=0.0)
    assert rgb["image"].shape == (2, 16, 16, 3) and rgb["mask"].sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"category": "carpet"}, "category='carpet'"),
        ({"n": 0}, "n=0"),
        ({"n": 2.5}, "n=2.5"),
        ({"image_size": 8}, "image_size=8"),
        ({"defect_fraction": 1.5}, "defect_fraction=1.5"),
    ],
)
def test_labelled_arrays_errors(kwargs, match):
    args = {"category": "mesh", "n": 2, "image_size": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        synthetic.labelled_arrays(args.pop("category"), args.pop("n"), **args)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    keras.backend.clear_session(free_memory=False)
    run_dir = tmp_path_factory.mktemp("seg") / "run"
    data = synthetic.labelled_dataset("mesh", 16, image_size=32, seed=0)
    run = training.train(
        "unet",
        data,
        model_kwargs=UNET,
        task="segmentation",
        epochs=3,
        batch_size=4,
        learning_rate=1e-2,
        run_dir=run_dir,
        verbose=0,
    )
    return run, data


def test_segmentation_training_learns_masks_and_records_the_task(seg_run):
    run, data = seg_run
    h = run.history
    assert np.all(np.isfinite(h["loss"])) and np.all(np.isfinite(h["val_loss"]))
    assert h["loss"][-1] < h["loss"][0]
    for split in ("", "val_"):
        iou, dice = np.asarray(h[f"{split}iou"]), np.asarray(h[f"{split}dice"])
        assert np.all((0 <= iou) & (iou <= 1)) and np.all((0 <= dice) & (dice <= 1))
        assert np.all(dice >= iou - 1e-7)
        np.testing.assert_allclose(dice, 2 * iou / (1 + iou), atol=1e-5)  # pooled: D = 2J/(1+J)
    assert "psnr" not in h and "ssim" not in h

    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["training"]["task"] == "segmentation"
    assert config["training"]["loss"]["config"]["kind"] == "bce+dice"
    assert config["corruption"] is None
    assert config["data"]["n_train"] == 14 and config["data"]["n_val"] == 2
    assert RunFolder(run.run_dir).task() == "segmentation"
    # Grids at most every PREVIEW_MIN_SECONDS: the first and the last of these 3 short epochs.
    assert sorted(p.name for p in (run.run_dir / "previews").iterdir()) == [
        "epoch_001.png",
        "epoch_003.png",
    ]

    # The last val_iou is the pooled IoU of the saved model on the held-out images.
    model = ks.load_model(run.run_dir / "model.keras")
    _, val = training.split_validation(data, 0.1, seed=0)
    x = np.stack([e[0].numpy() for e in val])
    y = np.stack([e[1].numpy() for e in val]) >= 0.5
    p = keras.ops.convert_to_numpy(model(x, training=False)) >= 0.5
    tp, fp, fn = np.sum(y & p), np.sum(~y & p), np.sum(y & ~p)
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    assert h["val_iou"][-1] == pytest.approx(iou, abs=1e-6)


def test_a_segmentation_run_is_refused_by_evaluation_export_and_prediction(seg_run, tmp_path):
    run_dir = seg_run[0].run_dir
    with pytest.raises(ValueError, match="segmentation model .*evaluation"):
        workflows.evaluate_run(run_dir, progress=False)
    with pytest.raises(ValueError, match="SavedModel export"):
        workflows.export_run(run_dir, tmp_path / "sm")
    assert not (tmp_path / "sm").exists()
    with pytest.raises(ValueError, match="prediction"):
        ks.Detector.load(run_dir)
    info = workflows.export_run(run_dir, tmp_path / "seg.keras", format="keras")
    assert info["path"].is_file()


def test_a_config_without_task_is_a_reconstruction_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"training": {"epochs": 1}}))
    run = RunFolder(tmp_path)
    assert run.task() == "reconstruction"
    run.check_reconstruction("evaluation")  # no error


@pytest.mark.slow
def test_batched_pairs_may_differ_in_channels():
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3)).astype("float32")
    masks = (x.mean(-1, keepdims=True) > 0.5).astype("float32")
    pairs = tf.data.Dataset.from_tensor_slices((x, masks)).batch(4)
    run = training.train(
        "unet",
        pairs,
        val_data=pairs.take(1),
        model_kwargs={**UNET, "input_shape": (32, 32, 3)},
        task="segmentation",
        epochs=1,
        steps_per_epoch=1,
        verbose=0,
    )
    assert np.isfinite(run.history["loss"][0]) and 0 <= run.history["val_dice"][0] <= 1
    assert run.config["data"]["pairs_given"] is True

    # reconstruction: a grey input with a colour target is a pair too; the model must
    # output colour
    grey = tf.data.Dataset.from_tensor_slices((x[..., :1], x)).batch(4)
    assert _is_pairs(grey)
    colour = ks.get_model("unet", **{**UNET, "num_outputs": 3})
    check_output_matches_target(colour, grey, "reconstruction")  # no error
    with pytest.raises(ValueError, match=r"output shape \(None, 32, 32, 1\).*targets'"):
        training.train("unet", grey, val_data=grey, model_kwargs=UNET, epochs=1, verbose=0)


def _items(n=8):
    d = synthetic.labelled_arrays("mesh", n, image_size=32, seed=0)
    return tf.data.Dataset.from_tensor_slices((d["image"], d["mask"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "detection"}, "task='detection'"),
        ({"corruption": "stains"}, r"`corruption`.*corruption='stains', task='segmentation'"),
        ({"loss": "mse"}, r"mask loss.*loss='mse', task='segmentation'"),
        ({"loss": "ssim"}, "loss='ssim'"),
        ({"stain_weight": 1.0}, "stain_weight=1.0, task='segmentation'"),
        ({"tile_size": 16}, "tile_size=16, task='segmentation'"),
        ({"model_kwargs": {**UNET, "num_outputs": 2}}, r"\(None, 32, 32, 2\).*num_outputs"),
    ],
)
def test_segmentation_argument_errors(kwargs, match):
    args = {"model_kwargs": UNET, "task": "segmentation", "epochs": 1, "verbose": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        training.train("unet", _items(), **args)


def test_segmentation_data_and_model_errors():
    x = np.zeros((4, 32, 32, 1), "float32")
    with pytest.raises(ValueError, match="mask loss.*task='reconstruction'"):
        training.train("unet", tf.data.Dataset.from_tensor_slices(x), loss="bce", epochs=1)
    with pytest.raises(ValueError, match="task='segmentation'.*unbatched dicts"):
        training.train("unet", tf.data.Dataset.from_tensor_slices(x), task="segmentation", epochs=1)
    images_only = tf.data.Dataset.from_tensor_slices({"image": x})
    with pytest.raises(ValueError, match="'image' and a 'mask' key"):
        training.train("unet", images_only, task="segmentation", epochs=1)
    with pytest.raises(ValueError, match="Cannot split batched"):
        training.train("unet", _items().batch(4), task="segmentation", epochs=1)
    with pytest.raises(ValueError, match="anomaly head"):
        training.train("aesc_head", _items(), task="segmentation", epochs=1)


def test_masks_are_converted_to_float_zero_one():
    as_u8 = tf.constant([[0, 255], [255, 0]], tf.uint8)
    np.testing.assert_array_equal(_mask_to_float(as_u8).numpy()[..., 0], [[0, 1], [1, 0]])
    as_bool = tf.constant([[[True], [False]]])
    np.testing.assert_array_equal(_mask_to_float(as_bool).numpy(), [[[1.0], [0.0]]])


def test_output_check_skips_unknown_and_multi_output_shapes():
    inputs = keras.Input((None, None, 1))
    net = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    pairs = tf.data.Dataset.from_tensor_slices((np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1))))
    check_output_matches_target(net, pairs.batch(2), "segmentation")  # None dims: no error
    wrong = tf.data.Dataset.from_tensor_slices((np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 2))))
    with pytest.raises(ValueError, match="num_outputs"):
        check_output_matches_target(net, wrong.batch(2), "segmentation")


def test_segmentation_preview_shows_input_prediction_and_mask(tmp_path):
    inputs = keras.Input((16, 16, 3))
    net = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    masks = np.zeros((2, 16, 16, 1), "float32")
    masks[:, 4:8, 4:8] = 1
    cb = SegmentationPreview(x, masks, log_dir=tmp_path / "logs", image_dir=tmp_path / "png")
    cb.set_model(net)
    logs = {"loss": 1.0, "val_loss": 2.0}
    cb.on_epoch_end(0, logs)
    cb.on_train_end()
    import cv2

    png = cv2.imread(str(tmp_path / "png" / "epoch_001.png"))
    assert png.shape == (16 + 2 * 16, 3 * 16, 3)  # title strip, 2 rows, 3 columns
    grid = png[16:, :, ::-1]
    np.testing.assert_array_equal(grid[4:8, 32 + 4 : 32 + 8], 255)  # the true mask, white
    assert grid[:4, 32:].max() == 0
    assert "probe_good_mse" not in logs
    assert any((tmp_path / "logs" / "validation").iterdir())
    # K classes: argmax / (K - 1)
    onehot = np.eye(3, dtype="float32")[np.array([[0, 1, 2]])][None]  # [N, H, W, K] = [1, 1, 3, 3]
    np.testing.assert_allclose(_mask_image(onehot, 1)[0, 0, :, 0], [0, 0.5, 1])
