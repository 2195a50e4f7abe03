"""How much a model copies through its skips: the repair ratio and the skip contributions.

* :func:`repair_ratio`: the mean residual ``|x - x_hat|`` inside the defect pixels of
  defective images over the mean residual of the pixels of good images. A model that
  repairs a defect leaves a large residual there (ratio well above 1); a model that
  copies the defect through its skips leaves none (ratio near 1 or below).
* :func:`skip_contributions`: at every skip merge ``dec{i}_skip``, the root-mean-square
  of the (scaled) skip tensor over that of the decoder branch it joins. Comparing a
  model trained with ``skip_scale=0.5`` with one trained with ``skip_scale=1`` shows
  whether training undid the fixed factor.

Example:
    >>> ratio = ks.analysis.repair_ratio(images, model.predict(images), masks, labels)
    >>> ks.analysis.skip_contributions(model, good_images)["dec0_skip"]["ratio"]
"""

from __future__ import annotations

import re

import keras
import numpy as np

from keras_skipae.models.taps import base_model

_MERGE = re.compile(r"^dec(\d+)_skip$")


def _residual(images, reconstructions) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    y = np.asarray(reconstructions, dtype=np.float64)
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            "`images` and `reconstructions` must be arrays of the same shape [N, H, W, C]. "
            f"Received: images.shape={x.shape}, reconstructions.shape={y.shape}"
        )
    return np.abs(x - y).mean(axis=-1)


def repair_ratio(images, reconstructions, masks, labels) -> float:
    """Mean residual inside defects over the mean residual of good images.

    Args:
        images: test images ``[N, H, W, C]`` in [0, 1].
        reconstructions: the model's outputs for them, same shape.
        masks: ground truth ``[N, H, W]`` or ``[N, H, W, 1]``, nonzero inside defects.
        labels: ``[N]``, 0 for good images, 1 for defective ones.

    Returns:
        ``mean(|x - x_hat| over defect pixels of defective images) /
        mean(|x - x_hat| over all pixels of good images)``, the residual averaged over
        channels first and pooled over pixels. Higher means defects are repaired
        rather than copied.

    Raises:
        ValueError: mismatched shapes, no defect pixel, no good image, or a zero good
            residual.
    """
    residual = _residual(images, reconstructions)
    m = np.asarray(masks)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != residual.shape:
        raise ValueError(
            f"`masks` must have the images' shape [N, H, W] (or [N, H, W, 1]). Received: "
            f"masks.shape={np.shape(masks)}, images.shape={np.shape(images)}"
        )
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != residual.shape[0]:
        raise ValueError(
            f"`labels` must have one entry per image. Received: {y.shape[0]} labels for "
            f"{residual.shape[0]} images"
        )
    defect = (m > 0.5) & (y != 0)[:, None, None]
    if not defect.any():
        raise ValueError("repair_ratio needs defective images with nonzero mask pixels.")
    good = y == 0
    if not good.any():
        raise ValueError("repair_ratio needs good images (label 0).")
    good_mean = residual[good].mean()
    if good_mean <= 0:
        raise ValueError("The residual of the good images is zero: the ratio is undefined.")
    return float(residual[defect].mean() / good_mean)


def _producer(tensor) -> str:
    return tensor._keras_history.operation.name


def _merge_branches(model: keras.Model) -> dict:
    """``{merge name: (mode, decoder tensor, skip tensor, source tensor)}``, by layer names."""
    out = {}
    for layer in model.layers:
        match = _MERGE.match(layer.name)
        if not match:
            continue
        level = match.group(1)
        inputs = layer.input
        skip_names = (f"enc{level}_out", f"dec{level}_skip_scale", f"dec{level}_skip_proj")
        skip_names += (f"dec{level}_skip_drop",)
        skips = [t for t in inputs if _producer(t) in skip_names]
        decoder = [t for t in inputs if _producer(t) not in skip_names]
        if len(skips) != 1 or len(decoder) != 1:  # pragma: no cover  (builders' graphs)
            raise ValueError(f"Cannot tell the skip from the decoder branch at {layer.name!r}.")
        mode = "add" if isinstance(layer, keras.layers.Add) else "concat"
        out[layer.name] = (mode, decoder[0], skips[0], model.get_layer(f"enc{level}_out").output)
    return out


def skip_contributions(model, images, *, batch_size: int = 16) -> dict:
    """The size of each skip relative to the decoder branch it merges into.

    At every merge layer ``dec{i}_skip`` (found by name), in inference mode over
    ``images``: the root-mean-square of the skip tensor as merged (after
    ``dec{i}_skip_scale``, ``_skip_proj`` and ``_skip_drop``, when present), of the
    decoder branch, and of the skip's source ``enc{i}_out``.

    Args:
        model: a keras_skipae model with skips (or a wrapper with ``.base``).
        images: ``[N, H, W, C]`` images in [0, 1].
        batch_size: images per forward pass.

    Returns:
        ``{"dec{i}_skip": {"mode", "skip_rms", "decoder_rms", "source_rms", "ratio"}}``
        ordered coarse to fine, ``ratio = skip_rms / decoder_rms``.

    Raises:
        ValueError: the model has no skip merges.
    """
    net = base_model(model)
    branches = _merge_branches(net)
    if not branches:
        raise ValueError(f"Model {net.name!r} has no skip merges (layers named dec{{i}}_skip).")
    outputs = {
        f"{name}/{part}": tensor
        for name, (_, dec, skip, src) in branches.items()
        for part, tensor in (("decoder", dec), ("skip", skip), ("source", src))
    }
    probe = keras.Model(net.input, outputs, name=f"{net.name}_skip_branches")
    sums = dict.fromkeys(outputs, 0.0)
    counts = dict.fromkeys(outputs, 0)
    x = np.asarray(images, dtype="float32")
    for start in range(0, len(x), int(batch_size)):
        acts = probe(x[start : start + int(batch_size)], training=False)
        for key, value in acts.items():
            v = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)
            sums[key] += float(np.square(v).sum())
            counts[key] += v.size
    result = {}
    for name, (mode, *_) in branches.items():
        rms = {
            p: np.sqrt(sums[f"{name}/{p}"] / counts[f"{name}/{p}"])
            for p in ("decoder", "skip", "source")
        }
        result[name] = {
            "mode": mode,
            "skip_rms": float(rms["skip"]),
            "decoder_rms": float(rms["decoder"]),
            "source_rms": float(rms["source"]),
            "ratio": float(rms["skip"] / rms["decoder"]) if rms["decoder"] > 0 else float("inf"),
        }
    return result
