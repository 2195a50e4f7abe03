"""Tiling: the grid, the window and the blending (against brute force), tiled scoring."""

import numpy as np
import pytest
import tensorflow as tf

from keras_skipae.ops import tiling

# ----------------------------------------------------------------------------- references


def ref_window(t, floor=tiling.WINDOW_FLOOR):
    i = np.arange(t, dtype=np.float64)
    w = floor + (1 - floor) * np.sin(np.pi * (i + 0.5) / t) ** 2
    return np.outer(w, w)


def ref_blend(tiles, ys, xs, h, w, floor=tiling.WINDOW_FLOOR):
    """Brute force: loops over the tiles, sum of w * tile / sum of w."""
    t = tiles.shape[1]
    win = ref_window(t, floor)
    extra = tiles.shape[3:]
    num = np.zeros((h, w, *extra))
    den = np.zeros((h, w))
    for tile, y, x in zip(tiles, ys, xs):
        num[y : y + t, x : x + t] += win.reshape(t, t, *([1] * len(extra))) * tile
        den[y : y + t, x : x + t] += win
    return num / den.reshape(h, w, *([1] * len(extra)))


# ----------------------------------------------------------------------------- the grid


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(16, 16, 0), (17, 16, 0), (32, 16, 0), (33, 16, 4), (100, 16, 8), (64, 8, 7), (1024, 128, 32)],
)
def test_grid_covers_every_pixel_flush_with_the_borders(length, tile, overlap):
    starts = tiling.tile_starts(length, tile, overlap).numpy()
    n = len(starts)
    assert n == tiling.tiles_per_axis(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length  # flush with both borders
    cover = np.zeros(length, int)
    for s in starts:
        cover[s : s + tile] += 1
    assert cover.min() >= 1
    if n > 1:
        steps = np.diff(starts)
        assert steps.min() > 0 and steps.max() <= tile - overlap  # overlap >= the requested one
        # n is the fewest tiles that can: n - 1 tiles at the largest step fall short.
        assert (n - 2) * (tile - overlap) + tile < length
    else:
        assert length == tile


def test_grid_without_overlap_is_the_plain_partition():
    ys, xs = tiling.tile_grid(64, 96, 32, 0)
    assert list(zip(ys.numpy(), xs.numpy())) == [(y, x) for y in (0, 32) for x in (0, 32, 64)]


def test_grid_in_a_graph_with_dynamic_sizes():
    fn = tf.function(
        lambda h, w: tiling.tile_grid(h, w, 16, 4),
        input_signature=[tf.TensorSpec([], tf.int32)] * 2,
    )
    for h, w in [(16, 40), (57, 23)]:
        ys, xs = fn(tf.constant(h), tf.constant(w))
        ey, ex = tiling.tile_grid(h, w, 16, 4)
        np.testing.assert_array_equal(ys, ey)
        np.testing.assert_array_equal(xs, ex)


# ----------------------------------------------------------------------------- window, blending


def test_window_values_and_floor():
    np.testing.assert_allclose(tiling.tile_window(8).numpy(), ref_window(8), rtol=1e-6)
    w = tiling.window_1d(32, 0.2).numpy()
    assert w.min() > 0.2 and w.max() <= 1.0
    np.testing.assert_allclose(w, w[::-1], rtol=1e-6)


@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(40, 23, 16, 5), (32, 32, 16, 0)])
def test_blend_matches_brute_force(h, w, tile, overlap):
    ys, xs = (v.numpy() for v in tiling.tile_grid(h, w, tile, overlap))
    rng = np.random.default_rng(0)
    tiles = rng.random((len(ys), tile, tile, 2)).astype(np.float32)
    got = tiling.blend_tiles(tiles, ys, xs, h, w).numpy()
    np.testing.assert_allclose(got, ref_blend(tiles, ys, xs, h, w), rtol=1e-5, atol=1e-6)
    # The separable weight sum equals the brute-force one.
    den = np.zeros((h, w))
    for y, x in zip(ys, xs):
        den[y : y + tile, x : x + tile] += ref_window(tile)
    np.testing.assert_allclose(tiling.window_sum(h, w, tile, overlap).numpy(), den, rtol=1e-5)


def test_a_constant_blends_to_the_same_constant_and_tiles_round_trip():
    h, w, tile = 45, 37, 16
    ys, xs = tiling.tile_grid(h, w, tile, 6)
    const = np.full((int(tf.size(ys)), tile, tile), 0.37, np.float32)
    np.testing.assert_allclose(tiling.blend_tiles(const, ys, xs, h, w).numpy(), 0.37, rtol=1e-6)
    # Tiles cut from a frame blend back to the frame exactly (border pixels included).
    frame = np.random.default_rng(1).random((1, h, w, 3)).astype(np.float32)
    ids = tf.zeros_like(ys)
    tiles = tiling.extract_tiles(frame, ids, ys, xs, tile).numpy()
    assert tiles.shape == (len(ys), tile, tile, 3)
    np.testing.assert_array_equal(tiles[-1], frame[0, h - tile :, w - tile :])
    np.testing.assert_allclose(tiling.blend_tiles(tiles, ys, xs, h, w), frame[0], rtol=1e-6)


def test_accumulate_places_tiles_in_their_frames():
    win = tiling.tile_window(4)
    acc = tf.zeros([2, 8, 8], tf.float32)
    tiles = tf.ones([2, 4, 4])
    out = tiling.accumulate_tiles(acc, tiles, [1, 0], [4, 0], [0, 4], win).numpy()
    want = np.zeros((2, 8, 8))
    want[1, 4:, :4] = ref_window(4)
    want[0, :4, 4:] = ref_window(4)
    np.testing.assert_allclose(out, want, rtol=1e-5)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("tile", "overlap", "match"),
    [
        (0, 0, "tile_size=0"),
        (16.0, 0, "tile_size=16.0"),
        (True, 0, "tile_size=True"),
        (16, 16, "tile_overlap=16"),
        (16, -1, "tile_overlap=-1"),
        (16, 2.5, "tile_overlap=2.5"),
    ],
)
def test_bad_tiling_arguments(tile, overlap, match):
    with pytest.raises(ValueError, match=match):
        tiling.check_tiling(tile, overlap)


def test_frames_smaller_than_a_tile_are_refused():
    with pytest.raises(ValueError, match="Received: frames of 12x40 pixels"):
        tiling.check_frame_size(12, 40, 16)
    with pytest.raises(ValueError, match="length=8"):
        tiling.tiles_per_axis(8, 16)
    with pytest.raises(ValueError, match="floor=0"):
        tiling.window_1d(8, 0)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def dynamic(h):
        with tf.control_dependencies(tiling.check_frame_size(h, 32, 16)):
            return tf.identity(h)

    assert int(dynamic(tf.constant(16))) == 16
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least tile_size"):
        dynamic(tf.constant(15))


# ----------------------------------------------------------------------------- tiled scoring


def pointwise_model(channels=1):
    """A model whose output at a pixel depends on that pixel only (a 1x1 convolution)."""
    import keras

    inputs = keras.Input((None, None, channels))
    out = keras.layers.Conv2D(channels, 1, activation="sigmoid", name="out")(inputs)
    model = keras.Model(inputs, out)
    model.get_layer("out").set_weights(
        [np.full((1, 1, channels, channels), 0.8, np.float32), np.full(channels, -0.3, np.float32)]
    )
    return model


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"score": "topk", "topk": 0.01, "smoothing": 2.0, "smoothing_border": "zeros"},
        {"map": "ssim", "smoothing": 0},
    ],
)
def test_tiled_equals_untiled_for_a_pointwise_model(cfg, images):
    """With a pixel-local map the blend of the tile maps is the full map, so after one
    smoothing on the blended map the tiled result equals the untiled one."""
    from keras_skipae import scoring

    model = pointwise_model(3)
    frames = images(2, (45, 38, 3), seed=2)
    got = scoring.compute_tiled(model, frames, 16, 5, scoring.ScoringConfig(**cfg), batch_size=7)
    want = scoring.compute(model, frames, scoring.ScoringConfig(**cfg))
    np.testing.assert_allclose(got["reconstruction"], want["reconstruction"], atol=1e-6)
    if cfg.get("map") == "ssim":  # the SSIM window is not pixel-local: equal inside only
        return
    np.testing.assert_allclose(got["anomaly_map"], want["anomaly_map"], atol=1e-6)
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5)


def test_tiled_scoring_matches_a_brute_force_blend(tiny_model, images):
    """A real AESc (maps depend on context): the tile maps from ``compute`` with no
    smoothing, blended in NumPy, then smoothed and reduced once."""
    from keras_skipae import scoring

    model = tiny_model("aesc", input_shape=(None, None, 1))
    frames = images(2, (40, 56, 1), seed=3)
    cfg = scoring.ScoringConfig(smoothing=1.5)
    got = scoring.compute_tiled(model, frames, 16, 4, cfg, batch_size=5)
    ys, xs = (v.numpy() for v in tiling.tile_grid(40, 56, 16, 4))
    maps, recons = [], []
    for frame in frames:
        tiles = np.stack([frame[y : y + 16, x : x + 16] for y, x in zip(ys, xs)])
        out = scoring.compute(model, tiles, cfg.replace(smoothing=0))
        maps.append(ref_blend(out["anomaly_map"].numpy(), ys, xs, 40, 56))
        recons.append(ref_blend(out["reconstruction"].numpy(), ys, xs, 40, 56))
    smoothed = scoring.gaussian_smooth(np.stack(maps), 1.5, cfg.smoothing_border).numpy()
    np.testing.assert_allclose(got["reconstruction"], np.stack(recons), atol=1e-5)
    np.testing.assert_allclose(got["anomaly_map"], smoothed, atol=1e-5)
    np.testing.assert_allclose(got["score"], smoothed.reshape(2, -1).max(-1), rtol=1e-5)
    # One tile covering the frame is plain scoring.
    one = scoring.compute_tiled(model, frames[:, :16, :16], 16, 4, cfg)
    plain = scoring.compute(model, frames[:, :16, :16], cfg)
    for key in plain:
        np.testing.assert_allclose(one[key], plain[key], atol=1e-6)


def test_tiled_scorer_traces_once_for_any_frame_size(tiny_model, images):
    from keras_skipae import scoring

    model = tiny_model("aesc", input_shape=(16, 16, 1))
    scorer = scoring.make_tiled_scorer(model, tile_size=16, tile_overlap=8, batch_size=4)
    for shape in [(1, 16, 33, 1), (3, 24, 20, 1)]:
        frames = images(shape[0], shape[1:], seed=4)
        got = scorer(frames)
        want = scoring.compute_tiled(model, frames, 16, 8, batch_size=4)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-5)
    assert scorer.experimental_get_tracing_count() == 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least tile_size"):
        scorer(images(1, (16, 12, 1)))


def test_tiled_scoring_bad_input(tiny_model, images):
    from keras_skipae import scoring

    model = pointwise_model()
    with pytest.raises(ValueError, match="Received: frames of 12x40 pixels"):
        scoring.compute_tiled(model, images(1, (12, 40, 1)), 16)
    with pytest.raises(ValueError, match="batch_size=0"):
        scoring.compute_tiled(model, images(1, (16, 16, 1)), 16, batch_size=0)
    with pytest.raises(ValueError, match="tile_overlap=16"):
        scoring.make_tiled_scorer(model, tile_size=16, tile_overlap=16)
    with pytest.raises(ValueError, match="rank 4"):
        scoring.compute_tiled(model, images(1, (16, 16, 1))[0], 16)


# ----------------------------------------------------------------------------- SavedModel


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile_size": 24}, "cannot score 24x24 tiles"),
        ({"tile_overlap": 4}, "needs a `tile_size`"),
        ({"tile_size": 16, "tile_overlap": 16}, "tile_overlap=16"),
        ({"tile_size": 16, "tile_batch_size": 0}, "tile_batch_size=0"),
    ],
)
def test_saved_model_bad_tiling(tiny_model, tmp_path, kwargs, match):
    from keras_skipae.export import saved_model

    model = tiny_model("aesc", input_shape=(16, 16, 1))
    with pytest.raises(ValueError, match=match):
        saved_model.export_saved_model(model, tmp_path / "export", **kwargs)
    assert not (tmp_path / "export").exists()


# ----------------------------------------------------------------------------- training on tiles


def _frames_dataset(shapes, seed=0):
    """An unbatched dataset of images of different sizes, each pixel value unique."""
    rng = np.random.default_rng(seed)
    frames = [
        rng.permutation(h * w).reshape(h, w, 1).astype(np.float32) / (h * w) for h, w in shapes
    ]
    return frames, tf.data.Dataset.from_generator(
        lambda: iter(frames), output_signature=tf.TensorSpec([None, None, 1], tf.float32)
    )


def _find(crop, frame):
    """The (y, x) where ``crop`` sits in ``frame`` (brute force), or None."""
    t = crop.shape[0]
    for y in range(frame.shape[0] - t + 1):
        for x in range(frame.shape[1] - t + 1):
            if np.array_equal(frame[y : y + t, x : x + t], crop):
                return y, x
    return None


def test_random_crops_are_seeded_exact_crops_new_every_pass():
    from keras_skipae import data

    frames, ds = _frames_dataset([(20, 30), (25, 17)])
    crops = data.random_crops(ds, 12, seed=3)
    first = [c.numpy() for c in crops]
    again = [c.numpy() for c in data.random_crops(ds, 12, seed=3)]
    assert [c.shape for c in first] == [(12, 12, 1)] * 2
    places = [_find(c, f) for c, f in zip(first, frames)]
    assert None not in places
    for a, b in zip(first, again):  # the same seed in a fresh pipeline: the same crops
        np.testing.assert_array_equal(a, b)
    passes = [[c.numpy() for c in crops] for _ in range(4)]  # new crops on every pass
    assert len({tuple(_find(p[0], frames[0])) for p in passes} | {places[0]}) > 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than tile_size=18"):
        list(data.random_crops(ds, 18, seed=0))
    with pytest.raises(ValueError, match="tile_size=0"):
        data.random_crops(ds, 0)


@pytest.mark.parametrize("corruption", [None, "noise"])
def test_training_pairs_draw_new_crops_every_pass_and_fixed_validation_crops(corruption):
    from keras_skipae import data as data_lib
    from keras_skipae import losses
    from keras_skipae.training import pairs

    corruption = data_lib.GaussianNoise() if corruption else None  # corrupt() or identity

    frames, ds = _frames_dataset([(40, 48)] * 6, seed=1)
    data = pairs._resolve_data(
        ds,
        None,
        corruption=corruption,
        loss_obj=losses.get_loss("mse"),
        stain_weight=1.0,
        batch_size=5,
        validation_split=1 / 6,
        steps_per_epoch=None,
        seed=0,
        tile_size=16,
    )
    assert (data.n_train, data.n_val) == (5, 1)
    batches = [b[1].numpy() for b in data.train_pairs.take(2)]  # clean targets, 2 passes
    assert batches[0].shape == (5, 16, 16, 1)
    for crop in np.concatenate(batches):
        assert any(_find(crop, f) is not None for f in frames)
    key = [sorted(t.tobytes() for t in b) for b in batches]
    assert key[0] != key[1]  # the second pass crops elsewhere
    val = [[b[1].numpy() for b in data.val_pairs] for _ in range(2)]
    np.testing.assert_array_equal(val[0][0], val[1][0])  # the same validation crops


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile_size": 16, "model_kwargs": {"input_shape": (32, 32, 1)}}, "input_shape"),
        ({"tile_overlap": 4}, "needs a `tile_size`"),
        ({"tile_size": 16, "tile_overlap": 20}, "tile_overlap=20"),
    ],
)
def test_train_on_tiles_bad_arguments(kwargs, match):
    import keras_skipae as ks

    _, ds = _frames_dataset([(40, 48)] * 4)
    kwargs = {"model_kwargs": {"input_shape": (16, 16, 1), "depth": 3, "filters": 4}, **kwargs}
    with pytest.raises(ValueError, match=match):
        ks.train("aesc", ds, epochs=1, steps_per_epoch=1, batch_size=2, verbose=0, **kwargs)


def test_train_on_tiles_refuses_batched_pairs():
    import keras_skipae as ks

    x = np.zeros((2, 16, 16, 1), np.float32)
    pairs = tf.data.Dataset.from_tensors((x, x))
    with pytest.raises(ValueError, match="batched"):
        ks.train(
            "aesc",
            pairs,
            model_kwargs={"input_shape": (16, 16, 1), "depth": 3, "filters": 4},
            validation_split=0,
            tile_size=16,
            verbose=0,
        )


# ----------------------------------------------------------------------------- run folders


@pytest.mark.slow
def test_a_tiled_run_is_evaluated_and_exported_tile_by_tile(
    tiny_model, images, synthetic_root, tmp_path
):
    """A run folder whose config says tile_size=16: evaluate_run scores the 32-px test
    images tile by tile, its threshold is tied to that tiling, and the export has it."""
    from keras_skipae import data, io_utils, scoring
    from keras_skipae.apps import workflows
    from keras_skipae.export.saved_model import SIGNATURES, XLA_SIGNATURE, read_settings
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
    assert run.tiling() == (16, 4)
    result, _ = workflows.evaluate_run(run.path, progress=False)
    assert result.settings["tile_size"] == 16 and result.settings["tile_overlap"] == 4
    test = data.mvtec_dataset(synthetic_root, "mesh", split="test", image_size=None)
    frames = np.stack([e["image"].numpy() for e in test])
    assert frames.shape[1:3] == (32, 32)
    want = scoring.compute_tiled(model, frames, 16, 4)["score"].numpy()
    np.testing.assert_allclose(result.scores, want, rtol=1e-5)
    cfg = scoring.ScoringConfig()
    assert run.threshold(cfg)[0] == pytest.approx(result.threshold)
    threshold, _, problem = run.threshold(cfg, tiling=None)
    assert threshold is None and "tile_size=16, tile_overlap=4, not no tiling" in problem
    out = workflows.export_run(run.path, tmp_path / "export", threshold="eval")
    settings = read_settings(out["path"])
    assert settings["tiling"]["tile_size"] == 16 and settings["threshold"] == result.threshold
    assert settings["input"]["image_size"] == [16, 16]
    assert "serving_tiled" in settings["signatures"]

    # serving_tiled equals the in-process compute_tiled (any frame size >= the tile).
    loaded = tf.saved_model.load(str(out["path"]))
    assert set(loaded.signatures) == {*SIGNATURES, "serving_tiled", XLA_SIGNATURE[0]}  # CPU export
    odd = images(2, (40, 27, 1), seed=5)
    served = loaded.signatures["serving_tiled"](images=tf.constant(odd))
    expected = scoring.compute_tiled(model, odd, 16, 4)
    for key in expected:
        assert served[key].shape == expected[key].shape
        np.testing.assert_allclose(served[key], expected[key], atol=1e-5)
    np.testing.assert_array_equal(
        served["is_anomalous"], expected["score"].numpy() >= np.float32(result.threshold)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least tile_size"):
        loaded.score_tiled(tf.constant(images(1, (12, 40, 1))))

    # The Detector reads the tiling and the tiled threshold from the run and the export,
    # and both give evaluate's scores on the full-resolution test images.
    from keras_skipae.inference import Detector

    by_run = Detector.load(run.path)
    by_export = Detector.load(out["path"])
    for det in (by_run, by_export):
        assert det.tiling == (16, 4) and det.threshold == pytest.approx(result.threshold)
        preds = list(det.predict(frames, batch_size=3))
        np.testing.assert_allclose([q.score for q in preds], want, rtol=1e-5, atol=1e-6)
        assert preds[0].anomaly_map.shape == (32, 32)
        assert preds[0].reconstruction.shape == (32, 32, 1)
    with pytest.raises(ValueError, match="tiles as it was exported"):
        Detector.load(out["path"], tile_overlap=0)
    # Another overlap than the evaluated one: the stored threshold does not apply.
    with pytest.warns(UserWarning, match="tile_size=16, tile_overlap=4, not tile_size=16"):
        other = Detector.load(run.path, tile_overlap=8)
    assert other.tiling == (16, 8) and other.threshold is None


# ----------------------------------------------------------------------------- the decisive test


def range_model(lo, hi):
    """A stand-in for a model trained on good images: it reconstructs pixels inside the
    good texture's value range [lo, hi] exactly and cannot reproduce values outside it
    (``clip(x, lo, hi)``, from Conv2D 1x1 and ReLU layers). Deterministic, so the test
    measures the scoring path, not a training run."""
    import keras

    x = keras.Input((None, None, 1))
    above_lo = keras.layers.Conv2D(1, 1, activation="relu", name="above_lo")(x)
    above_hi = keras.layers.Conv2D(1, 1, activation="relu", name="above_hi")(x)
    both = keras.layers.Concatenate(name="both")([above_lo, above_hi])
    out = keras.layers.Conv2D(1, 1, name="out")(both)
    model = keras.Model(x, out)
    one = np.ones((1, 1, 1, 1), np.float32)
    model.get_layer("above_lo").set_weights([one, np.array([-lo], np.float32)])
    model.get_layer("above_hi").set_weights([one, np.array([-hi], np.float32)])
    model.get_layer("out").set_weights(
        [np.array([1.0, -1.0], np.float32).reshape(1, 1, 2, 1), np.array([lo], np.float32)]
    )
    return model


def test_a_tiny_defect_in_a_1024_frame_is_found_with_tiles_and_missed_after_resizing():
    from keras_skipae import scoring

    rng = np.random.default_rng(0)
    frames = np.clip(0.5 + 0.12 * rng.standard_normal((3, 1024, 1024, 1)), 0, 1).astype(np.float32)
    cy, cx = 613, 298  # a 4x4 bright defect in frame 0; frames 1 and 2 are good
    frames[0, cy - 2 : cy + 2, cx - 2 : cx + 2] = 0.98
    model = range_model(0.2, 0.8)
    cfg = scoring.ScoringConfig()  # the defaults: residual, smoothing 4, max

    def found(scores):  # the defective frame's score stands out from the good frames'
        return scores[0] > 1.5 * scores[1:].max()

    tiled = scoring.compute_tiled(model, frames, 128, 32, cfg, batch_size=32)
    assert found(tiled["score"].numpy())
    y, x = np.unravel_index(np.argmax(tiled["anomaly_map"][0]), (1024, 1024))
    assert abs(y - cy) <= 3 and abs(x - cx) <= 3  # where the defect is

    # The same model and scoring on the frames resized to 128 (bilinear, antialiased and
    # clipped, as the datasets resize with image_size=128).
    small = tf.clip_by_value(tf.image.resize(frames, (128, 128), antialias=True), 0, 1)
    assert not found(scoring.compute(model, small, cfg)["score"].numpy())


# ----------------------------------------------------------------------------- Detector


def test_detector_scores_full_resolution_files_tile_by_tile(tiny_model, images, tmp_path):
    from keras_skipae import scoring
    from keras_skipae.data import DatasetError
    from keras_skipae.inference import Detector

    model = tiny_model("aesc", input_shape=(16, 16, 1))
    shapes = [(40, 27), (40, 27), (16, 50), (12, 30)]  # two sizes, then one too small
    frames = [
        np.round(images(1, (h, w, 1), seed=i)[0] * 255) / 255 for i, (h, w) in enumerate(shapes)
    ]
    for i, frame in enumerate(frames):
        png = tf.io.encode_png(tf.constant(np.round(frame * 255).astype(np.uint8)))
        tf.io.write_file(str(tmp_path / f"{i}.png"), png)
    det = Detector(model, threshold=0.01, tile_size=16, tile_overlap=4, tile_batch_size=5)
    assert "tiles 16x16x1, overlap 4" in repr(det)
    preds = list(det.predict(tmp_path, batch_size=8, on_error="report"))
    assert [p.ok for p in preds] == [True, True, True, False]
    assert "12x30 pixels, smaller than a 16x16 tile" in preds[3].error
    for pred, frame in zip(preds[:3], frames):
        want = scoring.compute_tiled(model, frame[None].astype(np.float32), 16, 4)
        np.testing.assert_allclose(pred.anomaly_map, want["anomaly_map"][0], atol=1e-5)
        np.testing.assert_allclose(pred.reconstruction, want["reconstruction"][0], atol=1e-5)
        assert pred.score == pytest.approx(float(want["score"][0]), rel=1e-5)
        assert pred.is_anomalous == (pred.score >= 0.01)
    with pytest.raises(DatasetError, match="smaller than a 16x16 tile"):
        list(det.predict(tmp_path / "3.png"))
    with pytest.raises(ValueError, match="must take images of that size"):
        Detector(tiny_model("aesc", input_shape=(32, 32, 1)), threshold=0.1, tile_size=16)
    with pytest.raises(ValueError, match="needs a `tile_size`"):
        Detector(model, threshold=0.1, tile_overlap=4)


# ----------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--tile-overlap", "4"], "--tile-overlap needs --tile-size"),
        (["train", "--tile-size", "16", "--tile-overlap", "16"], "smaller than --tile-size (16)"),
        (["train", "--tile-size", "0"], "--tile-size must be at least 1"),
        (["predict", "--tile-overlap", "-1"], "--tile-overlap must be at least 0"),
    ],
)
def test_cli_tiling_usage_errors(synthetic_root, tmp_path, capsys, args, message):
    import keras_skipae_cli

    command, *flags = args
    if command == "train":
        argv = [
            "train",
            "--data",
            str(synthetic_root),
            "--category",
            "mesh",
            "--out",
            str(tmp_path / "run"),
        ]
    else:
        (tmp_path / "model.keras").write_bytes(b"")  # MODEL is checked before --tile-overlap
        argv = ["predict", str(tmp_path / "model.keras"), str(synthetic_root)]
    assert keras_skipae_cli.main(argv + flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_trains_on_tiles_and_predicts_at_full_resolution(synthetic_root, tmp_path, capsys):
    import csv

    import keras_skipae_cli
    from keras_skipae.runs import RunFolder

    run = tmp_path / "run"
    argv = ["train", "--data", str(synthetic_root), "--category", "mesh", "--out", str(run)]
    argv += ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--depth", "3"]
    argv += ["--filters", "4", "--tile-size", "16", "--tile-overlap", "4", "--quiet"]
    assert keras_skipae_cli.main(argv) == 0, capsys.readouterr().err
    config = RunFolder(run).config()
    assert config["training"]["tile_size"] == 16 and config["training"]["tile_overlap"] == 4
    assert config["data"]["image_size"] is None  # the images are read at full resolution
    assert RunFolder(run).load().input_shape == (None, 16, 16, 1)
    good = synthetic_root / "mesh" / "test" / "good"
    out = tmp_path / "pred"
    argv = ["predict", str(run), str(good), "--out", str(out), "--threshold", "0.1", "--save-maps"]
    assert keras_skipae_cli.main(argv + ["--quiet"]) == 0, capsys.readouterr().err
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["error"] == "" for r in rows)
    saved = tf.io.decode_png(tf.io.read_file(str(out / rows[0]["map_file"])))
    assert saved.shape[:2] == (32, 32)
