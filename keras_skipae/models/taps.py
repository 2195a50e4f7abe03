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


#: Names accepted by ``layers=`` (besides an explicit list of tap names).
#: Names accepted by ``layers=`` (besides an explicit list of tap names).
LAYER_GROUPS = ("all", "encoder", "decoder", "encoder+bottleneck", "bottleneck+decoder")


def base_model(model: keras.Model) -> keras.Model:
    """The tapped model inside ``model`` (unwraps a wrapper such as ``DiscrepancyLossModel``)."""
    while isinstance(getattr(model, "base", None), keras.Model):
        model = model.base
    return model


def select_layers(model: keras.Model, layers="all") -> list[str]:
    """Resolves a layer selection to ordered tap names.

    Args:
        model: a keras_skipae model (or a :class:`DiscrepancyLossModel`).
        layers: ``"all"``, ``"encoder"`` (``enc{i}_out``), ``"decoder"``
            (``dec{i}_out``), ``"encoder+bottleneck"``, ``"bottleneck+decoder"``,
            or a sequence of tap names.

    Returns:
        Tap names in data-flow order (as :func:`keras_skipae.models.tap_names`).

    Raises:
        ValueError: an unknown group or tap name, or an empty selection.
    """
    names = tap_names(base_model(model))
    enc = [n for n in names if n.startswith("enc")]
    dec = [n for n in names if n.startswith("dec")]
    bott = [n for n in names if n == "bottleneck_out"]
    if isinstance(layers, str):
        groups = {
            "all": names,
            "encoder": enc,
            "decoder": dec,
            "encoder+bottleneck": enc + bott,
            "bottleneck+decoder": bott + dec,
        }
        if layers not in groups:
            raise ValueError(
                f"`layers` must be one of {list(LAYER_GROUPS)} or a list of tap names "
                f"{names}. Received: layers={layers!r}"
            )
        selected = groups[layers]
    else:
        selected = list(layers)
        unknown = [n for n in selected if n not in names]
        if unknown:
            raise ValueError(
                f"Unknown tap name(s) {unknown}; available: {names}. Received: layers={layers!r}"
            )
        selected = [n for n in names if n in selected]
    if not selected:
        raise ValueError(f"`layers` selects no tap of model {model.name!r}. Received: {layers!r}")
    return selected
