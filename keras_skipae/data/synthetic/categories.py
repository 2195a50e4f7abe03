"""The synthetic categories: each one's channel count and defect types."""

from __future__ import annotations

#: category -> (channels, defect types)
_SPEC = {
    "woven": (3, ("hole", "contamination", "color", "misplaced", "cut")),
    "mesh": (1, ("broken", "bent", "contamination", "scratch")),
    "wood": (3, ("scratch", "crack", "hole", "color", "contamination")),
    "gravel": (1, ("crack", "contamination", "color", "misplaced", "hole")),
    "nut": (1, ("scratch", "chip", "contamination", "color")),
}
CATEGORIES = tuple(_SPEC)
DEFECTS = {k: v[1] for k, v in _SPEC.items()}


def list_categories() -> list[str]:
    """The synthetic categories, e.g. ``["woven", "mesh", "wood", "gravel", "nut"]``."""
    return list(CATEGORIES)


#: category -> channel count (3 for the RGB textures, 1 for the grayscale ones)
CHANNELS = {k: v[0] for k, v in _SPEC.items()}
