"""The checked configuration of the core builder: argument checks and :class:`_Spec`."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence

from keras_skipae.models import encoders as _encoders

SKIP_MODES = ("add", "concat", None)


STYLES = ("aesc", "unet")

#: Accepted ``output_activation`` values (None means ``"linear"``).
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "linear", None)

#: Accepted ``upscale`` factors (output size / input size).
UPSCALES = (1, 2, 4)


#: Depth used when ``depth=None`` and no ``encoder`` is given (an encoder fixes it to 5).
DEFAULT_DEPTH = {"aesc": 6, "unet": 4}


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def _check_input_shape(input_shape, multiple: int, encoder) -> tuple:
    if (
        not isinstance(input_shape, Sequence)
        or isinstance(input_shape, str)
        or len(input_shape) != 3
    ):
        raise ValueError(
            "`input_shape` must be a tuple (height, width, channels); height and width may be "
            f"None. Received: input_shape={input_shape!r}"
        )
    h, w, c = input_shape
    if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1:
        raise ValueError(
            "`input_shape` must have a known, positive channel count (1 for grayscale, 3 for "
            f"RGB). Received: input_shape={input_shape!r}"
        )
    for dim in (h, w):
        if dim is None:
            continue
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(
                f"`input_shape` height and width must be positive integers or None. "
                f"Received: input_shape={input_shape!r}"
            )
        if dim % multiple:
            raise ValueError(
                f"`input_shape` height and width must be multiples of 2**depth = {multiple} "
                f"{'for this encoder ' if encoder else ''}(or None). Received: "
                f"input_shape={tuple(input_shape)!r}"
            )
    return (h, w, int(c))


def _check_skips(skips, skip_mode, n_levels: int) -> tuple[int, ...]:
    if skip_mode not in SKIP_MODES:
        raise ValueError(
            f"`skip_mode` must be one of 'add', 'concat' or None. Received: skip_mode={skip_mode!r}"
        )
    if skips is None or (isinstance(skips, str) and skips == "none"):
        return ()
    if isinstance(skips, str):
        if skips != "all":
            raise ValueError(
                "`skips` must be 'all', 'none', None or a tuple of level indices in "
                f"[0, {n_levels - 1}]. Received: skips={skips!r}"
            )
        return tuple(range(n_levels)) if skip_mode is not None else ()
    try:
        levels = tuple(skips)
    except TypeError:
        raise ValueError(
            "`skips` must be 'all', 'none', None or a tuple of level indices in "
            f"[0, {n_levels - 1}]. Received: skips={skips!r}"
        ) from None
    for level in levels:
        if (
            isinstance(level, bool)
            or not isinstance(level, numbers.Integral)
            or not 0 <= level < n_levels
        ):
            raise ValueError(
                f"`skips` entries must be level indices in [0, {n_levels - 1}] "
                f"(0 is the finest resolution). Received: skips={skips!r}"
            )
    if len(set(levels)) != len(levels):
        raise ValueError(f"`skips` has repeated levels. Received: skips={skips!r}")
    if levels and skip_mode is None:
        raise ValueError(
            "`skips` selects levels but `skip_mode` is None (no skips). Set skip_mode='add' or "
            f"'concat', or skips=(). Received: skip_mode=None, skips={skips!r}"
        )
    return tuple(sorted(int(level) for level in levels))


def _per_level(name, value, n: int, *, low, high, low_inclusive) -> tuple[float, ...]:
    """Expands a float or a sequence of ``n`` floats, each within (low|[low, high]."""
    values = (
        [value] * n
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
        else list(value)
        if isinstance(value, Sequence) and not isinstance(value, str)
        else None
    )
    bad = values is None or len(values) != n
    if not bad:
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                bad = True
            elif not ((low <= v if low_inclusive else low < v) and v <= high):
                bad = True
    if bad:
        bracket = "[" if low_inclusive else "("
        raise ValueError(
            f"`{name}` must be a number in {bracket}{low}, {high}] or a sequence of {n} such "
            f"numbers (one per level). Received: {name}={value!r}"
        )
    return tuple(float(v) for v in values)


def _check_skip_dropout(skip_dropout, skips: tuple, n_levels: int) -> tuple[float, ...]:
    """Per-level skip-dropout rates in [0, 1); a rate above 0 needs a skip at its level."""
    if skip_dropout is None:
        skip_dropout = 0.0
    scalar = isinstance(skip_dropout, numbers.Real) and not isinstance(skip_dropout, bool)
    drops = _per_level(
        "skip_dropout", skip_dropout, n_levels, low=0.0, high=1.0, low_inclusive=True
    )
    if any(p >= 1.0 for p in drops):
        raise ValueError(
            "`skip_dropout` rates must be below 1 (1 would remove the skip: use `skips`). "
            f"Received: skip_dropout={skip_dropout!r}"
        )
    if any(drops) and not skips:
        raise ValueError(
            "`skip_dropout` needs skip connections, and this model has none (an AE, "
            f"skip_mode=None or skips=()). Received: skip_dropout={skip_dropout!r}"
        )
    if scalar:  # one rate: applies to the levels that have a skip
        return tuple(p if i in skips else 0.0 for i, p in enumerate(drops))
    missing = [i for i, p in enumerate(drops) if p and i not in skips]
    if missing:
        raise ValueError(
            f"`skip_dropout` is above 0 at level(s) {missing}, which have no skip (skips="
            f"{tuple(skips)}). Received: skip_dropout={skip_dropout!r}"
        )
    return drops


def _check_output_activation(output_activation, num_outputs: int) -> str:
    """``"sigmoid"``, ``"softmax"`` or ``"linear"`` (None); softmax needs 2+ channels."""
    if not (
        output_activation is None
        or (isinstance(output_activation, str) and output_activation in OUTPUT_ACTIVATIONS)
    ):
        raise ValueError(
            "`output_activation` must be 'sigmoid' (images in [0, 1]), 'softmax' (classes over "
            "the output channels), or None / 'linear' (unbounded targets). "
            f"Received: output_activation={output_activation!r}"
        )
    if output_activation == "softmax" and num_outputs < 2:
        raise ValueError(
            "`output_activation='softmax'` normalises over the output channels and needs "
            "num_outputs >= 2 (use 'sigmoid' for one channel). "
            f"Received: output_activation='softmax', num_outputs={num_outputs}"
        )
    return output_activation or "linear"


def _check_upscale(upscale) -> int:
    if (
        isinstance(upscale, bool)
        or not isinstance(upscale, numbers.Integral)
        or upscale not in UPSCALES
    ):
        raise ValueError(
            f"`upscale` must be one of {UPSCALES} (the output is `upscale` times the input's "
            f"height and width). Received: upscale={upscale!r}"
        )
    return int(upscale)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """The checked, resolved configuration of :func:`build_encoder_decoder`."""

    input_shape: tuple
    style: str
    depth: int
    n_levels: int
    filters: int
    kernel_size: int
    skip_mode: str | None
    skips: tuple
    scales: tuple
    rates: tuple
    block: dict
    num_outputs: int
    encoder: str | None
    encoder_weights: object
    freeze_encoder: bool
    drops: tuple = ()
    output_activation: str = "sigmoid"
    upscale: int = 1


def _resolve_depth(style, depth, encoder, encoder_weights, freeze_encoder) -> int:
    """The depth: fixed by a keras.applications ``encoder``, else ``depth`` or the style's
    default; refuses encoder options without an encoder."""
    if encoder is not None:
        _encoders.check_encoder(encoder, encoder_weights)
        if depth not in (None, _encoders.ENCODER_DEPTH):
            raise ValueError(
                f"With encoder={encoder!r} the depth is fixed to {_encoders.ENCODER_DEPTH} "
                f"(features at strides 2..32). Received: depth={depth!r}"
            )
        depth = _encoders.ENCODER_DEPTH
    else:
        if depth is None:
            depth = DEFAULT_DEPTH[style]
        if freeze_encoder or encoder_weights is not None:
            raise ValueError(
                "`freeze_encoder` and `encoder_weights` need an `encoder`. Received: "
                f"encoder=None, freeze_encoder={freeze_encoder!r}, "
                f"encoder_weights={encoder_weights!r}"
            )
    return depth


def _check_batchnorm(batchnorm, bn_momentum) -> None:
    if not isinstance(batchnorm, bool):
        raise ValueError(f"`batchnorm` must be True or False. Received: batchnorm={batchnorm!r}")
    if (
        isinstance(bn_momentum, bool)
        or not isinstance(bn_momentum, numbers.Real)
        or not (0.0 <= bn_momentum < 1.0)
    ):
        raise ValueError(f"`bn_momentum` must be in [0, 1). Received: bn_momentum={bn_momentum!r}")


def _resolve_spec(
    *,
    input_shape,
    style,
    depth,
    filters,
    kernel_size,
    skip_mode,
    skips,
    skip_scale,
    dropout,
    batchnorm,
    bn_momentum,
    activation,
    num_outputs,
    encoder,
    encoder_weights,
    freeze_encoder,
    skip_dropout=0.0,
    output_activation="sigmoid",
    upscale=1,
) -> _Spec:
    if style not in STYLES:
        raise ValueError(f"`style` must be one of {STYLES}. Received: style={style!r}")
    depth = _resolve_depth(style, depth, encoder, encoder_weights, freeze_encoder)
    min_depth = 2 if style == "aesc" else 1
    depth = _check_int("depth", depth, minimum=min_depth)
    filters = _check_int("filters", filters)
    kernel_size = _check_int("kernel_size", kernel_size)
    _check_batchnorm(batchnorm, bn_momentum)
    activation = activation or ("leaky_relu" if style == "aesc" else "relu")
    input_shape = _check_input_shape(input_shape, 2**depth, encoder)
    channels = input_shape[-1]
    if num_outputs is None:
        num_outputs = channels
    num_outputs = _check_int("num_outputs", num_outputs)
    output_activation = _check_output_activation(output_activation, num_outputs)
    upscale = _check_upscale(upscale)

    # Skip levels: encoder features at strides 2**(i+1) (AESc style / encoders) or 2**i (U-Net).
    n_levels = depth if (style == "unet" and encoder is None) else depth - 1
    skips = _check_skips(skips, skip_mode, n_levels)
    scales = _per_level("skip_scale", skip_scale, n_levels, low=0.0, high=1.0, low_inclusive=False)
    rates = _per_level(
        "dropout",
        0.0 if dropout is None else dropout,
        n_levels + 1,
        low=0.0,
        high=1.0,
        low_inclusive=True,
    )
    drops = _check_skip_dropout(skip_dropout, skips, n_levels)
    if any(r >= 1.0 for r in rates):
        raise ValueError(f"`dropout` rates must be below 1. Received: dropout={dropout!r}")
    block = {"batchnorm": batchnorm, "activation": activation, "bn_momentum": bn_momentum}

    return _Spec(
        input_shape=input_shape,
        style=style,
        depth=depth,
        n_levels=n_levels,
        filters=filters,
        kernel_size=kernel_size,
        skip_mode=skip_mode,
        skips=tuple(skips),
        scales=tuple(scales),
        rates=tuple(rates),
        block=block,
        num_outputs=num_outputs,
        encoder=encoder,
        encoder_weights=encoder_weights,
        freeze_encoder=bool(freeze_encoder),
        drops=drops,
        output_activation=output_activation,
        upscale=upscale,
    )
