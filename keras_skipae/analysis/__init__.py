"""Layer discrepancy analysis ("Don't skip the skips"): channel means, cosine similarity.

The measurement is in :mod:`keras_skipae.analysis.discrepancy`; the anomaly maps
built on the same channel means live in :mod:`keras_skipae.scoring.maps.features`
(re-exported here), and the optional training term in
:class:`keras_skipae.models.DiscrepancyLossModel`.
How much a model copies through its skips (:func:`repair_ratio`,
:func:`skip_contributions`) is in :mod:`keras_skipae.analysis.skips`.

Example:
    >>> import keras_skipae as ks
    >>> aesc = ks.build_aesc(input_shape=(64, 64, 1), depth=4, filters=8)
    >>> clean, corrupted = ks.analysis.make_probe_pairs(images, ks.data.Stains(), seed=0)
    >>> result = ks.analysis.layer_discrepancy(aesc, clean, corrupted)
    >>> result.median("cosine")          # {"enc0_out": 0.99, ..., "dec0_out": 0.7}
"""

from keras_skipae.analysis.discrepancy import (
    DiscrepancyResult,
    LayerDiscrepancy,
    layer_discrepancy,
    make_probe_pairs,
    paper_trend,
)
from keras_skipae.analysis.skips import repair_ratio, skip_contributions
from keras_skipae.models.discrepancy_loss import DiscrepancyLossModel
from keras_skipae.models.taps import LAYER_GROUPS, base_model, select_layers
from keras_skipae.ops.stats import channel_mean, cosine_similarity
from keras_skipae.scoring.maps.features import (
    NORMALIZE,
    LayerStatistics,
    combined_map,
    deviation_map,
    discrepancy_map,
)

__all__ = [
    "DiscrepancyLossModel",
    "DiscrepancyResult",
    "LAYER_GROUPS",
    "LayerDiscrepancy",
    "LayerStatistics",
    "NORMALIZE",
    "base_model",
    "channel_mean",
    "combined_map",
    "cosine_similarity",
    "deviation_map",
    "discrepancy_map",
    "layer_discrepancy",
    "make_probe_pairs",
    "paper_trend",
    "repair_ratio",
    "select_layers",
    "skip_contributions",
]
