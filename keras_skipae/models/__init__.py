"""Model zoo: AE, AESc and U-Net from one core builder, plus named taps.

See :mod:`keras_skipae.models.autoencoder` for the layer-naming scheme.
"""

from keras_skipae.layers import EncoderPreprocess, InputSizeCheck
from keras_skipae.models.anomaly_head import AnomalyHeadModel, build_aesc_head
from keras_skipae.models.autoencoder import (
    AESC_MC_DROPOUT,
    build_ae,
    build_aesc,
    build_encoder_decoder,
    build_unet,
)
from keras_skipae.models.blocks import (
    conv_block,
    double_conv_block,
    level_output,
    skip_merge,
)
from keras_skipae.models.discrepancy_loss import DiscrepancyLossModel
from keras_skipae.models.encoders import list_encoders
from keras_skipae.models.registry import get_model, list_models
from keras_skipae.models.taps import LAYER_GROUPS, base_model, select_layers, tap_model, tap_names
from keras_skipae.models.transfer import replace_head, set_trainable

__all__ = [
    "AESC_MC_DROPOUT",
    "AnomalyHeadModel",
    "DiscrepancyLossModel",
    "LAYER_GROUPS",
    "EncoderPreprocess",
    "InputSizeCheck",
    "base_model",
    "build_ae",
    "build_aesc",
    "build_aesc_head",
    "build_encoder_decoder",
    "build_unet",
    "conv_block",
    "double_conv_block",
    "get_model",
    "level_output",
    "list_encoders",
    "list_models",
    "replace_head",
    "select_layers",
    "set_trainable",
    "skip_merge",
    "tap_model",
    "tap_names",
]
