"""The export's arguments, checked against the model: input shape, image size, colour
mode, tiling and metadata (shared by the SavedModel and the edge exports)."""

from __future__ import annotations

import json
import math

from keras_skipae import io_utils
from keras_skipae.layers import InputSizeCheck
from keras_skipae.models.taps import base_model
from keras_skipae.ops.tiling import WINDOW_FLOOR, check_tiling
from keras_skipae.runs import COLOR_MODES


def model_input_shape(model) -> tuple:
    """The model's ``(H, W, C)`` (``H``, ``W`` None for a model that takes any size).

    Raises:
        ValueError: a model without one image input of known channels.
    """
    shape = base_model(model).input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            "Expected a model with one image input [batch, height, width, channels] and a "
            f"known channel count. Received: model {model.name!r} with input_shape={shape!r}"
        )
    return tuple(shape[1:])


def size_multiple(model) -> int | None:
    """The ``InputSizeCheck`` multiple of a keras_skipae model (None if it has none)."""
    multiples = [
        int(layer.multiple) for layer in _all_layers(model) if isinstance(layer, InputSizeCheck)
    ]
    return math.lcm(*multiples) if multiples else None


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def resolve_image_size(image_size, model_hw, multiple) -> tuple:
    """(H, W) for the export: the model's, or the requested one (validated)."""
    size = io_utils.parse_image_size(image_size)
    if size is None:
        return tuple(model_hw)
    for got, fixed in zip(size, model_hw):
        if fixed is not None and got != fixed:
            raise ValueError(
                f"The model takes {model_hw[0]}x{model_hw[1]} images only. "
                f"Received: image_size={image_size!r}"
            )
    if multiple and (size[0] % multiple or size[1] % multiple):
        raise ValueError(
            f"Expected `image_size` with height and width multiples of {multiple} (2**depth) "
            f"for this model. Received: image_size={image_size!r}"
        )
    return size


def resolve_color_mode(color_mode, channels) -> str | None:
    """``color_mode``, or the one of ``channels`` when None; it must match the channels."""
    if color_mode is None:
        return io_utils.color_mode_for(channels)
    if color_mode not in COLOR_MODES:
        raise ValueError(
            f"Expected `color_mode` to be 'grayscale', 'rgb' or None. Received: "
            f"color_mode={color_mode!r}"
        )
    if COLOR_MODES[color_mode] != channels:
        raise ValueError(
            f"`color_mode` {color_mode!r} needs {COLOR_MODES[color_mode]} channel(s), but the "
            f"model takes {channels}. Received: color_mode={color_mode!r}"
        )
    return color_mode


def resolve_tiling(tile_size, tile_overlap, batch_size, model_hw, multiple) -> dict | None:
    """The export's tiling settings (None without ``tile_size``), checked against the model:
    ``tile_size``, ``tile_overlap``, ``batch_size`` and ``window_floor``."""
    tiling = check_tiling(tile_size, tile_overlap)
    if tiling is None:
        return None
    tile, overlap = tiling
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            f"Expected `tile_batch_size` >= 1. Received: tile_batch_size={batch_size!r}"
        )
    if any(s is not None and s != tile for s in model_hw) or (multiple and tile % multiple):
        raise ValueError(
            f"The model takes {model_hw[0]}x{model_hw[1]} images (multiples of {multiple}), "
            f"so it cannot score {tile}x{tile} tiles. Received: tile_size={tile_size!r}"
        )
    return {
        "tile_size": tile,
        "tile_overlap": overlap,
        "batch_size": batch_size,
        "window_floor": WINDOW_FLOOR,
    }


def check_metadata(metadata) -> dict:
    """``metadata`` as a dict (None: empty); it must be JSON-able."""
    if metadata is None:
        return {}
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Expected a JSON-able `metadata` dict. ({exc})") from None
    return metadata
