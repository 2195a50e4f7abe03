"""Two non-learned anomaly-detection baselines, for honest comparisons.

A learned reconstruction model has to beat these on the same splits:

* :class:`GaussianBaseline`: a per-pixel Gaussian of the good training images.
  The map is ``|x - mean| / std`` (mean over channels), Gaussian-smoothed; the
  image score is the map's maximum. Strong on aligned images, weak on textures
  whose pattern shifts from image to image.
* :class:`PatchNNBaseline`: nearest-neighbour distance of each test patch to a
  memory bank of good training patches, in pixel space (PatchCore-like, Roth et
  al., CVPR 2022, without a pretrained feature extractor). Patches of
  ``patch x patch`` pixels at ``stride``; the bank is a random subsample of the
  training patches; the patch distances are spread back over their pixels
  (mean over the patches covering a pixel), smoothed, and the image score is
  the maximum.

Both work on NumPy arrays ``[N, H, W, C]`` in [0, 1] and return maps
``[N, H, W]``; :func:`evaluate_baseline` computes the same metrics as
:func:`keras_skipae.evaluate`, with the same function
(:func:`keras_skipae.evaluation.metrics.compute_metrics`).
"""

from __future__ import annotations

import numpy as np

from keras_skipae import scoring
from keras_skipae.evaluation import metrics
from keras_skipae.io_utils import as_text

__all__ = [
    "GaussianBaseline",
    "PatchNNBaseline",
    "evaluate_baseline",
    "get_baseline",
    "load_arrays",
]


def _smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    # The learned models' smoothing (keras_skipae.scoring.gaussian_smooth, same border
    # handling), so that every method's map is smoothed the same way.
    if not sigma:
        return maps

    return np.concatenate(
        [scoring.gaussian_smooth(maps[i : i + 64], sigma).numpy() for i in range(0, len(maps), 64)]
    )


class GaussianBaseline:
    """Per-pixel Gaussian of the good images: ``|x - mean| / std``, smoothed, max.

    Args:
        smoothing: Gaussian sigma (pixels) applied to the map.
        eps: added to the standard deviation.
    """

    name = "gaussian"

    def __init__(self, smoothing: float = 4.0, eps: float = 1e-2):
        self.smoothing = smoothing
        self.eps = eps
        self.mean = self.std = None

    def fit(self, images: np.ndarray) -> GaussianBaseline:
        images = np.asarray(images, dtype="float32")
        self.mean = images.mean(axis=0)
        self.std = images.std(axis=0)
        return self

    def anomaly_maps(self, images: np.ndarray) -> np.ndarray:
        z = np.abs(np.asarray(images, "float32") - self.mean) / (self.std + self.eps)
        return _smooth(z.mean(axis=-1), self.smoothing)


def _patches(images: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """``[N, gh, gw, patch * patch * C]`` patches."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(images, (patch, patch), axis=(1, 2))  # N, H', W', C, p, p
    win = win[:, ::stride, ::stride]
    n, gh, gw = win.shape[:3]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n, gh, gw, -1)


class PatchNNBaseline:
    """Nearest-neighbour distance to good patches in pixel space (PatchCore-like).

    Args:
        patch: patch side in pixels.
        stride: patch stride.
        bank_size: at most this many training patches (a seeded random subsample).
        smoothing: Gaussian sigma (pixels) applied to the map.
        seed: subsampling seed.
    """

    name = "patch_nn"

    def __init__(
        self,
        patch: int = 8,
        stride: int = 4,
        bank_size: int = 20000,
        smoothing: float = 4.0,
        seed: int = 0,
    ):
        self.patch = int(patch)
        self.stride = int(stride)
        self.bank_size = int(bank_size)
        self.smoothing = smoothing
        self.seed = seed
        self.bank = None

    def fit(self, images: np.ndarray) -> PatchNNBaseline:
        p = _patches(np.asarray(images, "float32"), self.patch, self.stride)
        p = p.reshape(-1, p.shape[-1])
        if len(p) > self.bank_size:
            rng = np.random.default_rng(self.seed)
            p = p[rng.choice(len(p), self.bank_size, replace=False)]
        self.bank = p
        self._bank_sq = (p.astype("float64") ** 2).sum(axis=1).astype("float32")
        return self

    def _nn_distance(self, queries: np.ndarray) -> np.ndarray:
        out = np.empty(len(queries), dtype="float32")
        q_sq = (queries**2).sum(axis=1)
        for start in range(0, len(queries), 2048):
            q = queries[start : start + 2048]
            d2 = q_sq[start : start + 2048, None] - 2.0 * q @ self.bank.T + self._bank_sq[None]
            out[start : start + 2048] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
        return out

    def anomaly_maps(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, "float32")
        n, h, w = images.shape[:3]
        p = _patches(images, self.patch, self.stride)
        gh, gw = p.shape[1:3]
        dist = self._nn_distance(p.reshape(-1, p.shape[-1])).reshape(n, gh, gw)
        maps = np.zeros((n, h, w), "float32")
        count = np.zeros((h, w), "float32")
        for i in range(gh):
            for j in range(gw):
                y, x = i * self.stride, j * self.stride
                maps[:, y : y + self.patch, x : x + self.patch] += dist[:, i, j, None, None]
                count[y : y + self.patch, x : x + self.patch] += 1
        maps /= np.maximum(count, 1)
        return _smooth(maps, self.smoothing)


def get_baseline(name: str, **kwargs):
    """``"gaussian"`` or ``"patch_nn"`` -> a baseline object.

    Raises:
        ValueError: for an unknown name.
    """
    if name == "gaussian":
        return GaussianBaseline(**kwargs)
    if name == "patch_nn":
        return PatchNNBaseline(**kwargs)
    raise ValueError(
        f"Unknown baseline. Expected 'gaussian' or 'patch_nn'. Received: name={name!r}"
    )


def load_arrays(dataset) -> dict:
    """Stacks an unbatched dataset of dicts into NumPy arrays (``image``, ``mask``, ...)."""
    out: dict = {}
    for element in dataset.as_numpy_iterator():
        for key, value in element.items():
            out.setdefault(key, []).append(value)
    arrays = {k: np.stack(v) for k, v in out.items()}
    for key in ("defect_type", "path"):
        if key in arrays:
            arrays[key] = np.array([as_text(v) for v in arrays[key]])
    return arrays


def evaluate_baseline(baseline, train_images, test: dict, *, max_fpr: float = 0.3) -> dict:
    """Fits ``baseline`` on good images and computes image/pixel AUROC and AUPRO.

    Args:
        baseline: a baseline object or name.
        train_images: ``[N, H, W, C]`` good images.
        test: arrays from :func:`load_arrays` (``image``, ``mask``, ``label``,
            ``defect_type``).
        max_fpr: the AUPRO FPR limit.

    Returns:
        ``{"image_auroc", "pixel_auroc", "aupro", "per_defect": {type: {...}}}``.
    """

    if isinstance(baseline, str):
        baseline = get_baseline(baseline)
    baseline.fit(train_images)
    maps = baseline.anomaly_maps(test["image"])
    scores = maps.reshape(len(maps), -1).max(axis=1)
    everything = metrics.compute_metrics(
        test["label"],
        scores,
        masks=test["mask"],
        maps=maps,
        defect_types=test["defect_type"],
        max_fpr=max_fpr,
    )
    keys = ("image_auroc", "pixel_auroc", "aupro")
    result = {k: float(everything[k]) for k in keys}
    result["per_defect"] = {
        name: {k: float(m[k]) for k in keys} for name, m in everything["per_defect"].items()
    }
    return result
