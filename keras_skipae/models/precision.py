"""Float32 scoring for models trained in mixed precision.

A model trained under a ``mixed_bfloat16`` or ``mixed_float16`` dtype policy keeps its
variables in float32 and computes in 16 bits. Scoring (``evaluate``, ``Detector``,
``export_saved_model``) runs in float32 on every model: :func:`float32_model` gives the
float32 twin of such a model, the same architecture with every layer's dtype policy
float32 and the same weights, so that evaluation, prediction and an export compute the
same numbers (``docs/decisions.md#mixed-precision-auto``).
"""

from __future__ import annotations

import keras

__all__ = ["float32_model", "model_precision"]

#: Dtype policies whose computation is not float32; the twin replaces them by float32.
_HALF_POLICIES = ("mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


def model_precision(model: keras.Model) -> str:
    """The policy a built model computes in: a ``mixed_*`` name of its layers, else ``"float32"``."""
    for layer in _layers(model):
        name = getattr(getattr(layer, "dtype_policy", None), "name", "float32")
        if name.startswith("mixed_"):
            return name
    return "float32"


def _layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _layers(layer)


def _to_float32(node, replaced: list):
    """``node`` (a serialized Keras config) with every 16-bit dtype policy made float32.

    Policies are ``{"class_name": "DTypePolicy", "config": {"name": ...}}`` dicts or plain
    names under a ``"dtype"`` key; the symbolic tensors of a functional config record their
    dtype the same way. ``replaced`` collects the names replaced.
    """
    if isinstance(node, list):
        return [_to_float32(v, replaced) for v in node]
    if not isinstance(node, dict):
        return node
    if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        name = (node.get("config") or {}).get("name")
        if name in _HALF_POLICIES:
            replaced.append(name)
            return dict(node, config=dict(node["config"], name="float32"))
        return node
    out = {}
    for key, value in node.items():
        if key == "dtype" and isinstance(value, str) and value in _HALF_POLICIES:
            replaced.append(value)
            out[key] = "float32"
        else:
            out[key] = _to_float32(value, replaced)
    return out


def float32_model(model: keras.Model) -> keras.Model:
    """The float32 twin of ``model``: the model itself when it already computes in float32.

    The twin is rebuilt from ``model``'s serialized config with every layer's dtype policy
    (``mixed_bfloat16``, ``mixed_float16``, ``bfloat16``, ``float16``) replaced by float32,
    nested models included (a ``keras.applications`` encoder, the anomaly head's ``base``
    and ``head``), and gets a copy of ``model``'s weights, which a mixed policy keeps in
    float32, so they are equal bit for bit. It is a new model: training ``model`` further
    does not change it. The package's registered layers and models rebuild from their
    config; a model that does not (an unregistered custom layer, a ``Lambda``) is refused.

    Args:
        model: a built Keras model.

    Returns:
        ``model`` if no layer computes in 16 bits, else its float32 twin.

    Raises:
        ValueError: ``model`` trains in 16 bits but cannot be rebuilt from its config, or
            the rebuilt model's weights do not line up with ``model``'s.

    Example:
        >>> with ks.training.precision_scope("mixed_bfloat16"):
        ...     model = ks.build_aesc(input_shape=(32, 32, 1), depth=3, filters=4)
        >>> twin = float32_model(model)
        >>> twin.get_layer("enc0_conv").compute_dtype
        'float32'
    """
    if not isinstance(model, keras.layers.Layer):
        return model  # a plain callable is scored as it is
    name = getattr(model, "name", type(model).__name__)
    try:
        config = keras.saving.serialize_keras_object(model)
    except (NotImplementedError, TypeError, ValueError) as exc:
        if model_precision(model) == "float32":
            return model
        raise ValueError(
            f"Cannot score model {name!r} in float32: its config cannot be serialized ({exc}). "
            "Build it from registered layers, or score a float32 build of it."
        ) from None
    replaced: list = []
    config = _to_float32(config, replaced)
    if not replaced:
        return model
    try:
        twin = keras.saving.deserialize_keras_object(config)
    except (TypeError, ValueError) as exc:
        cause = str(exc).rsplit("Exception encountered:", 1)[-1].strip().splitlines()
        cause = (cause[0] if cause else type(exc).__name__).split(". ")[0][:200]
        raise ValueError(
            f"Cannot score model {name!r} (trained in {model_precision(model)}) in float32: "
            f"it does not rebuild from its config ({cause}). Register its custom layers with "
            "@keras.saving.register_keras_serializable, or score a float32 build of it."
        ) from None
    want, got = model.weights, twin.weights
    if len(want) != len(got) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(want, got)):
        raise ValueError(
            f"Cannot score model {name!r} in float32: the weights of its float32 rebuild do not "
            f"line up with its own ({len(got)} against {len(want)}; a subclassed model that "
            "creates weights outside its config?)."
        )
    for target, source in zip(got, want):
        target.assign(keras.ops.cast(source, target.dtype))
    return twin
