"""Keras callbacks used by :func:`keras_skipae.train`, and the layer-discrepancy monitor."""

from keras_skipae.training.callbacks.backup import RunBackup
from keras_skipae.training.callbacks.discrepancy import DiscrepancyMonitor, channel_means_grid
from keras_skipae.training.callbacks.preview import (
    ReconstructionPreview,
    SegmentationPreview,
    reconstruction_grid,
)
from keras_skipae.training.callbacks.schedule import CosineSchedule, cosine_rate
from keras_skipae.training.callbacks.stop_on_non_finite import NonFiniteLossError, StopOnNonFinite
from keras_skipae.training.callbacks.time_limit import TimeLimit

__all__ = [
    "CosineSchedule",
    "DiscrepancyMonitor",
    "NonFiniteLossError",
    "ReconstructionPreview",
    "RunBackup",
    "SegmentationPreview",
    "StopOnNonFinite",
    "TimeLimit",
    "channel_means_grid",
    "cosine_rate",
    "reconstruction_grid",
]
