"""Model zoo: AE, AESc and U-Net from one core builder, plus named taps.

See :mod:`keras_skipae.models.autoencoder` for the layer-naming scheme.
"""

from keras_skipae.models.autoencoder import (
    AESC_MC_DROPOUT,
    build_ae,
    build_aesc,
    build_encoder_decoder,
    build_unet,
)
from keras_skipae.models.blocks import (
    InputSizeCheck,
    conv_block,
    double_conv_block,
    level_output,
    skip_merge,
)
from keras_skipae.models.encoders import EncoderPreprocess, list_encoders
from keras_skipae.models.registry import get_model, list_models
from keras_skipae.models.taps import tap_model, tap_names

__all__ = [
    "AESC_MC_DROPOUT",
    "EncoderPreprocess",
    "InputSizeCheck",
    "build_ae",
    "build_aesc",
    "build_encoder_decoder",
    "build_unet",
    "conv_block",
    "double_conv_block",
    "get_model",
    "level_output",
    "list_encoders",
    "list_models",
    "skip_merge",
    "tap_model",
    "tap_names",
]
