"""The corruption contract (:class:`Corruption`) and its argument and RNG helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_skipae.data.corruptions import rng


def _as_range(value, name, *, integer=False, low=None, high=None):
    """Validates a number or a (min, max) pair; returns a (min, max) tuple."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        lo = hi = value
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        lo, hi = value
    else:
        raise ValueError(
            f"`{name}` must be a number or a (min, max) pair. Received: {name}={value!r}"
        )
    try:
        lo, hi = (int(lo), int(hi)) if integer else (float(lo), float(hi))
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must hold numbers. Received: {name}={value!r}") from None
    if lo > hi or (low is not None and lo < low) or (high is not None and hi > high):
        bounds = f" within [{low}, {high}]" if low is not None or high is not None else ""
        raise ValueError(
            f"`{name}` must be a (min, max) pair with min <= max{bounds}. "
            f"Received: {name}={value!r}"
        )
    return (lo, hi)


def _config_value(rng):
    """A (min, max) range as JSON: a single number when min == max."""
    lo, hi = rng
    return lo if lo == hi else [lo, hi]


def _check_images(images):
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    if images.shape.rank != 4:
        raise ValueError(
            "Corruptions take a batch of images [B, H, W, C]. "
            f"Received a tensor of shape {images.shape}"
        )
    if images.shape[1] is None or images.shape[2] is None or images.shape[3] is None:
        raise ValueError(
            "Corruptions need a static image height, width and channel count. "
            f"Received a tensor of shape {images.shape}"
        )
    return images


def _changed_mask(a, b):
    """float32 [B, H, W, 1]: 1 where any channel of a and b differ."""
    return tf.cast(tf.reduce_any(tf.not_equal(a, b), axis=-1, keepdims=True), tf.float32)


def _select(flags, a, b):
    """Per-image select: ``a`` where the bool ``[B]`` flag is set, else ``b``."""
    shape = [-1] + [1] * (a.shape.rank - 1)
    return tf.where(tf.reshape(flags, shape), a, b)


# Every Corruption subclass, by class name, and the lower-case names `get` accepts.
_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


class Corruption:
    """Base class: ``__call__(images, seed) -> (corrupted, target, mask)``.

    Subclasses implement ``apply(images, target, seed)``, which corrupts
    ``images`` (and, for corruptions that change it, ``target``), so that
    corruptions chain in :class:`Compose`. ``mask`` marks the pixels this
    corruption made differ from the target.
    """

    #: Lower-case names :func:`get` accepts for this class (not inherited).
    aliases: tuple = ()
    #: Whether :func:`get` builds it from a bare name (False for combinators).
    by_name: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("_"):  # private helpers are not corruptions by name
            return
        _REGISTRY[cls.__name__] = cls
        for alias in cls.__dict__.get("aliases", ()):
            _ALIASES[alias] = cls.__name__

    def __call__(self, images, seed):
        """Corrupts a batch.

        Args:
            images: float32 ``[B, H, W, C]`` in [0, 1] (H, W, C static).
            seed: int32/int64 tensor of shape ``[2]``.

        Returns:
            ``(corrupted, target, mask)``: two float32 ``[B, H, W, C]`` tensors and
            a float32 ``[B, H, W, 1]`` mask in {0, 1}.
        """
        images = _check_images(images)
        seed = rng.check_seed(seed)
        return self.apply(images, images, seed)

    def apply(self, images, target, seed):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


def serialize(corruption: Corruption) -> dict:
    """``{"class_name": ..., "config": {...}}``, JSON-serialisable."""
    if not isinstance(corruption, Corruption):
        raise TypeError(f"Expected a Corruption. Received: {corruption!r}")
    return {"class_name": type(corruption).__name__, "config": corruption.get_config()}


def deserialize(config: dict) -> Corruption:
    """Inverse of :func:`serialize`."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"Expected a dict {{'class_name': ..., 'config': {{...}}}}. Received: {config!r}"
        )
    name = config["class_name"]
    if name not in _REGISTRY:
        raise ValueError(f"Unknown corruption {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_config(dict(config.get("config", {})))


def get(identifier) -> Corruption:
    """The one corruption look-up: an object, a serialized dict, a name, or names joined by ``+``.

    A name is a class name or one of its lower-case aliases (``"stains"``, ``"Stains"``,
    ``"scratches"``, ...). ``"a+b"`` mixes them: ``"stains+scratches"`` is
    ``OneOf([Stains(), Scratches()])``, so each batch gets stains or thin scratches
    (uniformly). Mixing in scratches is an option of the recipe for the AESc's known weak
    spot: trained on blob-shaped stains only, it learns to repair blobs, and passes thin
    scratches and cracks through its skips.

    Raises:
        ValueError: an unknown name or class name (the message lists the known ones).
        TypeError: anything else.

    Example:
        >>> get("stains")
        Stains(count=1, ...)
        >>> get("stains+anomalies")
        OneOf(corruptions=[...], probs=None)
    """
    if isinstance(identifier, Corruption):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and "+" in identifier:
        # OneOf registers itself here (combinators.py imports this module, not the reverse)
        return _REGISTRY["OneOf"]([_get_one(part.strip()) for part in identifier.split("+")])
    if isinstance(identifier, str):
        return _get_one(identifier)
    raise TypeError(f"Cannot interpret {identifier!r} as a corruption.")


def _get_one(name: str) -> Corruption:
    """A corruption from one name (a class name or a lower-case alias)."""
    key = _ALIASES.get(name.lower(), name)
    if key in _REGISTRY and _REGISTRY[key].by_name:
        return _REGISTRY[key]()
    named = {n for n, cls in _REGISTRY.items() if cls.by_name}
    raise ValueError(
        f"Unknown corruption {name!r}; expected one of {sorted(set(_ALIASES) | named)}"
    )
