"""Named intermediate outputs ("taps"): the only way to reach inside a model.

Every builder ends each level with an Identity layer named ``enc{i}_out``,
``bottleneck_out`` or ``dec{i}_out``. These names survive ``.keras`` round trips
and are identical in AE and AESc, so analyses can compare the two layer by layer.
"""

from __future__ import annotations

import re

import keras

_TAP = re.compile(r"^(?:enc(\d+)|bottleneck|dec(\d+))_out$")


def tap_names(model: keras.Model) -> list[str]:
    """The ordered names of a model's per-level activations.

    Order: encoder levels from fine to coarse (``enc0_out``, ``enc1_out``, ...), the
    bottleneck (``bottleneck_out``), then decoder levels from coarse to fine
    (``..., dec1_out, dec0_out``): the order in which data flows.

    Args:
        model: a model built by keras_skipae (or loaded from its ``.keras`` file).

    Returns:
        A list of layer names.

    Raises:
        ValueError: the model has no keras_skipae taps.

    Example:
        >>> tap_names(build_aesc(input_shape=(32, 32, 1), depth=3, filters=4))
        ['enc0_out', 'enc1_out', 'bottleneck_out', 'dec1_out', 'dec0_out']
    """
    enc, dec, bottleneck = [], [], []
    for layer in model.layers:
        match = _TAP.match(layer.name)
        if not match:
            continue
        if match.group(1) is not None:
            enc.append((int(match.group(1)), layer.name))
        elif match.group(2) is not None:
            dec.append((int(match.group(2)), layer.name))
        else:
            bottleneck.append(layer.name)
    if not (enc or dec or bottleneck):
        raise ValueError(
            f"Model {model.name!r} has no keras_skipae taps (Identity layers named enc{{i}}_out, "
            "bottleneck_out, dec{i}_out). Build it with keras_skipae.models."
        )
    return [n for _, n in sorted(enc)] + bottleneck + [n for _, n in sorted(dec, reverse=True)]


def tap_model(model: keras.Model, names=None) -> keras.Model:
    """A model that returns the tapped activations as a dict ``{name: tensor}``.

    It shares its layers (and weights) with ``model``.

    Args:
        model: a keras_skipae model.
        names: tap names (default: all of :func:`tap_names`, in order). ``"out"`` may be
            added to include the reconstruction.

    Returns:
        A ``keras.Model`` with dict outputs, in the order of ``names``.

    Raises:
        ValueError: an unknown tap name.

    Example:
        >>> taps = tap_model(model, ["enc0_out", "dec0_out"])
        >>> acts = taps(images)  # {"enc0_out": ..., "dec0_out": ...}
    """
    available = tap_names(model)
    if names is None:
        names = available
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in available and n != "out"]
    if unknown or not names:
        raise ValueError(
            f"Unknown tap name(s) {unknown} for model {model.name!r}. Available: {available} "
            f"(and 'out'). Received: names={names!r}"
        )
    outputs = {n: (model.output if n == "out" else model.get_layer(n).output) for n in names}
    return keras.Model(model.input, outputs, name=f"{model.name}_taps")
