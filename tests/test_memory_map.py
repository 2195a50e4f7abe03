"""The position-free feature memory (``map="memory"``): bank, coreset, map, export, CLI."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_skipae as ks
from keras_skipae import scoring
from keras_skipae.scoring.maps import memory as memory_module
from keras_skipae.scoring.maps.memory import (
    FeatureMemory,
    greedy_coreset,
    memory_distances,
    memory_features,
    memory_layers,
)


def _fit(tiny_model, images, **kwargs):
    model = tiny_model("aesc")
    return model, FeatureMemory.fit(model, images(4, seed=0), **kwargs)


# ----------------------------------------------------------------------------- features


def test_default_layers_are_the_middle_encoder_taps(tiny_model):
    assert memory_layers(tiny_model("aesc")) == ["enc0_out", "enc1_out"]  # depth 3
    assert memory_layers(tiny_model("aesc", depth=5)) == ["enc1_out", "enc2_out"]
    assert memory_layers(tiny_model("unet", depth=4)) == ["enc1_out", "enc2_out"]
    assert memory_layers(tiny_model("aesc"), "decoder") == ["dec1_out", "dec0_out"]


def test_features_are_3x3_means_resized_and_concatenated(tiny_model, images):
    model = tiny_model("aesc")
    x = images(2, seed=3)
    acts = ks.models.tap_model(model, ["enc0_out", "enc1_out"])(x)
    a = np.asarray(acts["enc0_out"], "float64")
    h, w = a.shape[1:3]
    want = np.zeros_like(a)  # mean of the 3x3 neighbours inside the map, by loops
    for i in range(h):
        for j in range(w):
            block = a[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            want[:, i, j] = block.mean(axis=(1, 2))
    feats = memory_features(model, x, ["enc0_out", "enc1_out"]).numpy()
    c0 = a.shape[-1]
    assert feats.shape == (2, h, w, c0 + acts["enc1_out"].shape[-1])
    np.testing.assert_allclose(feats[..., :c0], want, rtol=1e-5, atol=1e-6)
    coarse = tf.nn.avg_pool2d(acts["enc1_out"], 3, 1, "SAME")
    np.testing.assert_allclose(
        feats[..., c0:], tf.image.resize(coarse, (h, w), "bilinear"), rtol=1e-5, atol=1e-6
    )


# ----------------------------------------------------------------------------- coreset


def _brute_force_coreset(x, size, first):
    chosen = [first]
    while len(chosen) < size:
        best, best_d = None, -1.0
        for i in range(len(x)):
            d = min(float(np.sqrt(np.sum((x[i] - x[c]) ** 2))) for c in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", [0, 3])
def test_greedy_coreset_equals_brute_force_k_center(seed):
    x = np.random.default_rng(seed + 10).normal(size=(40, 5))
    first = int(np.random.default_rng(seed).integers(len(x)))
    got = greedy_coreset(x, 9, seed=seed)
    assert got.tolist() == _brute_force_coreset(x, 9, first)
    assert len(set(got.tolist())) == 9


def test_greedy_coreset_refuses_a_bad_size():
    with pytest.raises(ValueError, match=r"`size` must be in \[1, 4\]"):
        greedy_coreset(np.zeros((4, 2)), 5)


def test_bank_is_a_coreset_of_the_features(tiny_model, images):
    model = tiny_model("aesc")
    x = images(3, seed=0)
    feats = memory_features(model, x, "mid").numpy().reshape(-1, 12)
    memory = FeatureMemory.fit(model, x, bank=0.05, seed=2)
    idx = greedy_coreset(feats, int(np.ceil(0.05 * len(feats))), seed=2)
    np.testing.assert_array_equal(memory.vectors(), feats[idx])
    assert memory["n_features"] == len(feats) == 3 * 16 * 16 and memory["n_images"] == 3
    assert FeatureMemory.fit(model, x, bank=7)["size"] == 7
    assert FeatureMemory.fit(model, x, bank=10**9)["size"] == len(feats)  # at most all


# ----------------------------------------------------------------------------- the map


@pytest.mark.parametrize("chunk", [1024, 7])  # one block, and blocks of 7 bank vectors
def test_map_equals_brute_force_nearest_neighbour(tiny_model, images, monkeypatch, chunk):
    monkeypatch.setattr(memory_module, "_CHUNK", chunk)
    model, memory = _fit(tiny_model, images, bank=40)
    x = images(2, seed=5)
    feats = memory_features(model, x, memory["layers"]).numpy().astype("float64")
    bank = memory.vectors().astype("float64")
    b, h, w, _ = feats.shape
    want = np.zeros((b, h, w))
    for n in range(b):  # every location against every bank vector
        for i in range(h):
            for j in range(w):
                want[n, i, j] = min(np.sqrt(np.sum((feats[n, i, j] - v) ** 2)) for v in bank)
    got = memory_distances(model, x, memory).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    cfg = scoring.ScoringConfig(map="memory", smoothing=0, map_options={"bank": memory})
    out = scoring.compute(model, x, cfg)
    up = tf.image.resize(want[..., None], (32, 32), "bilinear")[..., 0]
    np.testing.assert_allclose(out["anomaly_map"], up, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["score"], np.max(up, axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_a_bank_image_scores_zero_and_other_images_more(tiny_model, images):
    model = tiny_model("aesc")
    good = images(2, seed=0)
    memory = FeatureMemory.fit(model, good, bank=1.0 - 1e-9)  # every vector
    cfg = scoring.ScoringConfig(map="memory", smoothing=0, map_options={"bank": memory})
    own = scoring.compute(model, good, cfg)["score"].numpy()
    other = scoring.compute(model, images(2, seed=9), cfg)["score"].numpy()
    assert own.max() < 1e-2 < other.min()


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("ae", {}),
        ("unet", {}),
        ("aesc", {"input_shape": (32, 32, 3), "encoder": "mobilenet_v2", "depth": None}),
        ("unet", {"input_shape": (32, 32, 3), "encoder": "mobilenet_v2", "depth": None}),
        ("aesc_head", {}),
    ],
)
def test_every_zoo_model(tiny_model, images, name, kwargs):
    if name == "aesc_head":
        model = ks.get_model(name, input_shape=(32, 32, 1), depth=3, filters=4)
    else:
        model = tiny_model(name, **kwargs)
    shape = kwargs.get("input_shape", (32, 32, 1))
    memory = FeatureMemory.fit(model, images(2, shape, seed=1), bank=16)
    assert memory["size"] == 16 and memory["layers"] == memory_layers(model)
    cfg = scoring.ScoringConfig(map="memory", map_options={"bank": memory})
    out = scoring.compute(model, images(1, shape, seed=2), cfg)
    assert out["anomaly_map"].shape == (1, 32, 32)
    assert np.all(np.isfinite(out["anomaly_map"])) and float(out["score"][0]) > 0


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((0, 32, 32, 1), {}, "at least 1 good image"),
        ((32, 32, 1), {}, "at least 1 good image"),
        ((2, 16, 16, 1), {}, r"input shape \(32, 32, 1\)"),
        ((2, 32, 32, 3), {}, r"input shape \(32, 32, 1\)"),
        ((2, 32, 32, 1), {"layers": ["enc7_out"]}, r"Unknown tap name\(s\) \['enc7_out'\]"),
        ((2, 32, 32, 1), {"layers": "middle"}, "`layers` must be one of"),
        ((2, 32, 32, 1), {"bank": 0}, "`bank` must be a fraction"),
        ((2, 32, 32, 1), {"bank": 2.5}, "`bank` must be a fraction"),
        ((2, 32, 32, 1), {"bank": "10%"}, "`bank` must be a fraction"),
        ((2, 32, 32, 1), {"bank": True}, "`bank` must be a fraction"),
    ],
)
def test_fit_refuses_bad_input(tiny_model, shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureMemory.fit(tiny_model("aesc"), np.zeros(shape, "float32"), **kwargs)


def test_fit_refuses_a_model_without_taps(images):
    inputs = keras.Input((32, 32, 1))
    plain = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs), name="plain")
    with pytest.raises(ValueError, match="'plain' has no keras_skipae taps"):
        FeatureMemory.fit(plain, images(2))


def test_map_refuses_a_missing_or_wrong_bank(tiny_model, images):
    model, memory = _fit(tiny_model, images, bank=8)
    x = images(1)
    with pytest.raises(ValueError, match="'memory' map needs a bank"):
        scoring.compute(model, x, scoring.ScoringConfig(map="memory"))
    with pytest.raises(ValueError, match="`bank` must be a FeatureMemory"):
        scoring.ScoringConfig(map="memory", map_options={"bank": {"vectors": "AAAA"}})
    with pytest.raises(ValueError, match="`bank` must be a FeatureMemory"):
        scoring.ScoringConfig(map="memory", map_options={"bank": np.zeros((3, 12))})
    tampered = dict(memory, sha256="0" * 64)
    with pytest.raises(ValueError, match="`bank` must be a FeatureMemory"):
        scoring.ScoringConfig(map="memory", map_options={"bank": tampered})
    wider = tiny_model("aesc", filters=8)  # same taps, other widths
    cfg = scoring.ScoringConfig(map="memory", map_options={"bank": memory})
    with pytest.raises(ValueError, match="holds 12-dim features, .* give 24: fit the bank"):
        scoring.compute(wider, x, cfg)
    shallow = tiny_model("unet", depth=1)  # no enc1_out
    with pytest.raises(ValueError, match=r"Unknown tap name\(s\) \['enc1_out'\]"):
        scoring.compute(shallow, x, cfg)
    cfg = cfg.replace(map_options={"bank": memory, "layers": "decoder"})
    with pytest.raises(ValueError, match="fitted on the taps \\['enc0_out', 'enc1_out'\\]"):
        scoring.compute(model, x, cfg)


# ----------------------------------------------------------------------------- round trips


def test_bank_json_round_trip(tiny_model, images):
    model, memory = _fit(tiny_model, images, bank=0.1)
    cfg = scoring.ScoringConfig(map="memory", map_options={"bank": memory, "layers": "mid"})
    text = json.dumps(cfg.to_dict())
    assert len(text) < 4 * 12 * memory["size"] * 2  # base64, not a list of floats
    back = scoring.ScoringConfig.from_dict(json.loads(text))
    assert back == cfg and back.same_scores_as(cfg)
    assert isinstance(back.map_options["bank"], FeatureMemory)
    np.testing.assert_array_equal(back.map_options["bank"].vectors(), memory.vectors())
    x = images(2, seed=4)
    np.testing.assert_array_equal(
        scoring.compute(model, x, back)["score"], scoring.compute(model, x, cfg)["score"]
    )
    assert repr(memory).startswith(f"FeatureMemory(size={memory['size']}, dim=12")


@pytest.mark.slow
def test_saved_model_round_trip(tiny_model, images, tmp_path):
    from keras_skipae.export.saved_model import export_saved_model, read_settings

    model, memory = _fit(tiny_model, images, bank=0.05)
    cfg = scoring.ScoringConfig(map="memory", map_options={"bank": memory})
    path = export_saved_model(model, tmp_path / "sm", scoring=cfg, threshold=0.5)
    assert read_settings(path)["scoring"]["map_options"]["bank"] == memory
    loaded = tf.saved_model.load(str(path))
    x = images(3, seed=6)
    expected = scoring.compute(model, x, cfg)
    for name in {"serving_default", "serving_xla"} & set(loaded.signatures):
        served = loaded.signatures[name](images=tf.constant(x))
        for key in ("anomaly_map", "score"):
            np.testing.assert_allclose(served[key], expected[key], atol=1e-5, err_msg=name)
    assert float(np.max(expected["score"])) > 0


# ----------------------------------------------------------------------------- run folders


@pytest.mark.slow
def test_evaluate_run_fits_the_bank_on_the_training_images(tiny_model, synthetic_root, tmp_path):
    """``evaluate RUN --map memory``: the bank comes from the run's good training images
    without its validation images (nor the test split), and ``export --threshold eval``
    finds the same bank and threshold."""
    from keras_skipae import data, io_utils, training
    from keras_skipae.apps import workflows
    from keras_skipae.export.saved_model import read_settings
    from keras_skipae.runs import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    model = tiny_model("aesc")
    model.save(run.model_path())
    io_utils.write_json(
        run.config_path,
        {
            "model": {"name": "aesc"},
            "data": {"root": str(synthetic_root), "category": "mesh", "color_mode": "grayscale"},
            "training": {"validation_split": 0.25, "seed": 0},
        },
    )
    cfg = scoring.ScoringConfig(map="memory", map_options={"bank_size": 0.05})
    result, _ = workflows.evaluate_run(run.path, scoring=cfg, progress=False)
    good = data.mvtec_dataset(synthetic_root, "mesh", split="train", image_size=32)
    train_part, _ = training.split_validation(good, 0.25, 0)
    train_x = np.stack([e["image"].numpy() for e in train_part])
    assert len(train_x) == 9  # 12 good images, 3 held out for the threshold
    want = FeatureMemory.fit(model, train_x, bank=0.05)
    bank = result.settings["map_options"]["bank"]
    assert bank == want and bank["n_images"] == 9
    assert np.isfinite(result.threshold) and 0 <= result.image_auroc <= 1

    out = workflows.export_run(run.path, tmp_path / "sm", threshold="eval", scoring=cfg)
    settings = read_settings(out["path"])
    assert settings["threshold"] == result.threshold
    assert settings["scoring"]["map_options"]["bank"] == want


def test_a_tiled_run_fits_the_bank_on_tiles(tiny_model, synthetic_root, tmp_path):
    from keras_skipae import io_utils
    from keras_skipae.apps import workflows
    from keras_skipae.runs import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    model = tiny_model("aesc", input_shape=(16, 16, 1))
    model.save(run.model_path())
    io_utils.write_json(
        run.config_path,
        {
            "model": {"name": "aesc"},
            "data": {"root": str(synthetic_root), "category": "mesh", "color_mode": "grayscale"},
            "training": {"validation_split": 0.25, "seed": 0, "tile_size": 16, "tile_overlap": 4},
        },
    )
    cfg = workflows.with_memory_bank(scoring.ScoringConfig(map="memory"), model, run.path)
    bank = cfg.map_options["bank"]
    assert bank["n_images"] == 9 * 4  # 9 training frames of 32 px, 2 x 2 tiles of 16 each
    assert bank["n_features"] == 9 * 4 * 8 * 8
    frames = np.random.default_rng(0).random((1, 40, 27, 1)).astype("float32")
    out = scoring.compute_tiled(model, frames, 16, 4, scoring=cfg)
    assert out["anomaly_map"].shape == (1, 40, 27) and np.all(np.isfinite(out["anomaly_map"]))
    assert workflows.with_memory_bank(None, model, run.path) is None
    residual = scoring.ScoringConfig()
    assert workflows.with_memory_bank(residual, model, run.path) is residual


def test_with_memory_bank_needs_the_runs_data(tiny_model, tmp_path):
    from keras_skipae import io_utils
    from keras_skipae.apps import workflows
    from keras_skipae.runs import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    model = tiny_model("aesc")
    model.save(run.model_path())
    io_utils.write_json(run.config_path, {"model": {"name": "aesc"}, "data": {}})
    cfg = scoring.ScoringConfig(map="memory")
    with pytest.raises(ValueError, match="does not record its data folder and category"):
        workflows.with_memory_bank(cfg, model, run.path)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"bank_size": 0}, r"map_options \{'bank_size': 0\}: `bank` must be a fraction"),
        ({"layers": ["enc9_out"]}, r"map_options \{'layers': \['enc9_out'\]\}: Unknown tap"),
    ],
)
def test_with_memory_bank_names_bad_fit_options(
    tiny_model, synthetic_root, tmp_path, options, match
):
    from keras_skipae import io_utils
    from keras_skipae.apps import workflows
    from keras_skipae.runs import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    model = tiny_model("aesc")
    model.save(run.model_path())
    data = {"root": str(synthetic_root), "category": "mesh", "color_mode": "grayscale"}
    io_utils.write_json(run.config_path, {"model": {"name": "aesc"}, "data": data})
    cfg = scoring.ScoringConfig(map="memory", map_options=options)
    with pytest.raises(ValueError, match=match):
        workflows.with_memory_bank(cfg, model, run.path)


def test_cli_accepts_map_memory():
    from keras_skipae_cli.parser import build_parser

    args = build_parser().parse_args(["evaluate", "RUN", "--map", "memory"])
    assert args.map == "memory"
    args = build_parser().parse_args(["export", "RUN", "out", "--map", "memory"])
    assert args.map == "memory"
