"""The SavedModel export's self-check: the written folder, loaded again, against the
in-process computation (:func:`keras_skipae.scoring.compute`, ``compute_tiled``), before
it is renamed into place."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_skipae.export.settings import TILED_SIGNATURE, XLA_SIGNATURE
from keras_skipae.scoring import compute, compute_tiled

#: The largest absolute difference a SavedModel's outputs may show in verification.
ATOL = 1e-5


def _check_outputs(served, expected, keys, what) -> None:
    for key in keys:
        diff = float(np.max(np.abs(served[key].numpy() - expected[key].numpy())))
        if not diff <= ATOL:
            raise RuntimeError(
                f"The exported {what.format(key=repr(key))} differs from the in-process result "
                f"by {diff:.3g} (> 1e-5); the export was not written."
            )


def _verify_tiled(loaded, model, settings, threshold, channels, tiling):
    """Checks ``serving_tiled`` against the in-process :func:`compute_tiled` on a frame of
    1.5 x 2 tiles (so that the last tiles overlap more than the others)."""
    tile = tiling["tile_size"]
    rng = np.random.default_rng(1)
    frames = rng.random((2, tile + tile // 2 + 1, 2 * tile, channels), dtype=np.float32)
    served = loaded.signatures[TILED_SIGNATURE[0]](images=tf.constant(frames))
    expected = compute_tiled(
        model,
        frames,
        tile,
        tiling["tile_overlap"],
        settings,
        batch_size=tiling["batch_size"],
    )
    keys = ["reconstruction"] if settings.map == "mc_dropout" else list(expected)
    _check_outputs(served, expected, keys, "tiled {key}")
    if threshold is not None and settings.map != "mc_dropout":
        want = expected["score"].numpy() >= np.float32(threshold)
        if not np.array_equal(served["is_anomalous"].numpy(), want):
            raise RuntimeError(
                "The exported tiled `is_anomalous` disagrees with score >= threshold."
            )


def verify_saved_model(
    path, model, settings, threshold, image_size, channels, multiple, tiling=None
) -> None:
    """Loads the export at ``path`` and checks it against the in-process computation
    (to 1e-5 on two random images; ``is_anomalous`` equal to ``score >= threshold``).

    Raises:
        RuntimeError: a disagreement (naming the output and the signature).
    """
    h, w = image_size
    if h is None:
        side = max(multiple or 1, 32)
        side = -(-side // (multiple or 1)) * (multiple or 1)
        h = w = side
    rng = np.random.default_rng(0)
    images = rng.random((2, h, w, channels), dtype=np.float32)
    loaded = tf.saved_model.load(str(path))
    expected = compute(model, images, settings)
    keys = ["reconstruction"] if settings.map == "mc_dropout" else list(expected)
    names = [n for n in ("serving_default", XLA_SIGNATURE[0]) if n in loaded.signatures]
    for name in names:
        served = loaded.signatures[name](images=tf.constant(images))
        _check_outputs(served, expected, keys, "{key} (" + name + ")")
        if threshold is not None and settings.map != "mc_dropout":
            score = served["score"].numpy()
            if not np.array_equal(served["is_anomalous"].numpy(), score >= np.float32(threshold)):
                raise RuntimeError(
                    f"The exported `is_anomalous` ({name}) disagrees with score >= threshold."
                )
    if tiling is not None:
        _verify_tiled(loaded, model, settings, threshold, channels, tiling)
