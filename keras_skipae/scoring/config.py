"""One validated description of how images are scored: :class:`ScoringConfig`.

``evaluate``, ``export_saved_model``, the scorer and the CLI all take one
``scoring=`` argument, so the eight settings are never threaded by hand. The
defaults are fixed a priori (``docs/decisions.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from keras_skipae.scoring.maps import ANOMALY_MAPS, DEFAULT_MAP, DEFAULT_MC_SAMPLES, FeatureMemory
from keras_skipae.scoring.scores import (
    DEFAULT_P,
    DEFAULT_SCORE,
    DEFAULT_TOPK,
    SCORES,
    _check_p,
    _check_topk,
)
from keras_skipae.scoring.smoothing import (
    DEFAULT_SMOOTHING,
    DEFAULT_SMOOTHING_BORDER,
    _check_border,
    _check_smoothing,
)

#: The keyword names of the settings, in order (the pre-0.2 keywords of ``evaluate``,
#: ``compute`` and ``export_saved_model``).
FIELDS = ("map", "smoothing", "smoothing_border", "score", "topk", "p", "mc_samples", "map_options")

# Settings documents written before a key existed: the value that was then in force.
_LEGACY = {"smoothing_border": "normalized"}


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
    """How an image is scored: anomaly map, smoothing, image score.

    Args:
        map: the anomaly map, a key of ``scoring.ANOMALY_MAPS`` (``"residual"``,
            ``"ssim"``, ``"mc_dropout"``, ``"discrepancy"``, ``"combined"``,
            ``"deviation"``).
        smoothing: Gaussian sigma in pixels on the map; 0 or None: none.
        smoothing_border: ``"equalized"``, ``"normalized"`` or ``"zeros"``
            (:func:`keras_skipae.scoring.gaussian_smooth`).
        score: ``"max"``, ``"mean"``, ``"topk"`` or ``"lp"``.
        topk: for ``"topk"``: a fraction of the pixels in (0, 1) or a count >= 1.
        p: for ``"lp"``: the exponent, > 0.
        mc_samples: stochastic passes for ``"mc_dropout"`` (>= 2).
        map_options: extra keyword options for the map function.

    Example:
        >>> cfg = ScoringConfig(map="ssim", smoothing=2.0)
        >>> ScoringConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    map: str = DEFAULT_MAP
    smoothing: float = DEFAULT_SMOOTHING
    smoothing_border: str = DEFAULT_SMOOTHING_BORDER
    score: str = DEFAULT_SCORE
    topk: float = DEFAULT_TOPK
    p: float = DEFAULT_P
    mc_samples: int = DEFAULT_MC_SAMPLES
    map_options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.map not in ANOMALY_MAPS:
            raise ValueError(
                f"Expected `map` to be one of {sorted(ANOMALY_MAPS)}. Received: map={self.map!r}"
            )
        if self.score not in SCORES:
            raise ValueError(
                f"Expected `score` to be one of {sorted(SCORES)}. Received: score={self.score!r}"
            )
        _check_border(self.smoothing_border, "smoothing_border")
        mc = self.mc_samples
        if self.map == "mc_dropout" and (not isinstance(mc, int) or isinstance(mc, bool) or mc < 2):
            raise ValueError(f"Expected `mc_samples` >= 2. Received: mc_samples={mc!r}")
        if self.map_options is not None and not isinstance(self.map_options, Mapping):
            raise ValueError(
                f"Expected `map_options` to be a dict. Received: map_options={self.map_options!r}"
            )
        set_ = object.__setattr__  # frozen: normalise the values once, here
        set_(self, "smoothing", _check_smoothing(self.smoothing))
        set_(self, "topk", _check_topk(self.topk))
        set_(self, "p", _check_p(self.p))
        set_(self, "mc_samples", int(mc))
        set_(self, "map_options", dict(self.map_options or {}))
        if self.map == "memory" and self.map_options.get("bank") is not None:
            # checked once here; a bank read back from JSON compares equal to the fitted one
            self.map_options["bank"] = FeatureMemory.from_dict(self.map_options["bank"])

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (the keys of :data:`FIELDS`)."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_dict(cls, settings: Mapping) -> ScoringConfig:
        """A config from a settings dict, ignoring keys that are not settings.

        Keys missing from documents written by older versions take the value
        that was in force then (``smoothing_border="normalized"``), the others
        their defaults.
        """
        values = {k: settings[k] for k in FIELDS if k in settings}
        for key, legacy in _LEGACY.items():
            values.setdefault(key, legacy)
        return cls(**values)

    def replace(self, **changes) -> ScoringConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: ScoringConfig | Mapping, keys=FIELDS) -> list[str]:
        """The settings that differ from ``other``'s, as ``"key=ours (other: theirs)"``.

        A threshold measured with one config is only valid for scores of a config
        with no differences. Without smoothing on either side the border mode has
        nothing to act on and is not compared.

        Args:
            other: a config or a settings dict.
            keys: the settings to compare (default: all).
        """
        if not isinstance(other, ScoringConfig):
            other = ScoringConfig.from_dict(other)
        keys = [k for k in keys if getattr(self, k) != getattr(other, k)]
        if not self.smoothing and not other.smoothing:
            keys = [k for k in keys if k != "smoothing_border"]
        return [f"{k}={getattr(self, k)!r} (other: {getattr(other, k)!r})" for k in keys]

    def same_scores_as(self, other: ScoringConfig | Mapping) -> bool:
        """Whether ``other`` gives the same scores (so the same thresholds apply)."""
        return not self.differences(other)

    @classmethod
    def resolve(cls, scoring=None, *, caller: str = "scoring") -> ScoringConfig:
        """The config from ``scoring=``: a :class:`ScoringConfig`, its dict, or None.

        Args:
            scoring: a :class:`ScoringConfig`, a settings dict, or None (defaults).
            caller: the function's name, for the messages.

        Raises:
            ValueError: ``scoring`` is none of these, or a dict with bad settings.
        """
        if scoring is None:
            return cls()
        if isinstance(scoring, ScoringConfig):
            return scoring
        if isinstance(scoring, Mapping):
            return cls(**{k: v for k, v in scoring.items()})
        raise ValueError(
            f"{caller}: expected `scoring` to be a ScoringConfig, a dict or None. "
            f"Received: scoring={scoring!r}"
        )
