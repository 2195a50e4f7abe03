"""Model registry: ``get_model(name, **kwargs)`` and ``list_models()``."""

from __future__ import annotations

import inspect

from keras_skipae.models.anomaly_head import build_aesc_head
from keras_skipae.models.autoencoder import build_ae, build_aesc, build_unet

_REGISTRY = {"ae": build_ae, "aesc": build_aesc, "aesc_head": build_aesc_head, "unet": build_unet}

#: Registry names whose models train on (input, (target, mask)) batches.
MASKED = ("aesc_head",)


def list_models() -> list[str]:
    """The registered model names (``"ae"``, ``"aesc"``, ``"aesc_head"``, ``"unet"``)."""
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs):
    """Builds a registered model by name.

    Args:
        name: one of :func:`list_models`.
        **kwargs: the builder's keyword arguments (e.g. ``skips=(0, 1), skip_scale=0.5``).

    Returns:
        A ``keras.Model`` named ``name`` unless ``name=`` is passed in kwargs.

    Raises:
        ValueError: unknown name, or a bad argument of the builder.

    Example:
        >>> m = get_model("aesc", input_shape=(64, 64, 1), depth=4, skips=(0, 1), skip_scale=0.5)
    """
    try:
        builder = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown model name. Available: {', '.join(list_models())}. Received: name={name!r}"
        ) from None
    try:
        return builder(**kwargs)
    except TypeError as exc:  # unexpected keyword: say which builder and what it takes
        params = [p for p in inspect.signature(builder).parameters]
        raise ValueError(
            f"{exc}. {builder.__name__} accepts: {', '.join(params)}. Received: {sorted(kwargs)}"
        ) from None
