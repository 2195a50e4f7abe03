"""keras.applications bodies as encoders, with named multi-resolution features.

Nothing is ever downloaded: the bodies are built with ``weights=None``; pass
``encoder_weights="/path/to/file.h5"`` (or ``.weights.h5``) to load weights from
a local file, for example the ``*_notop.h5`` files of keras.applications copied
onto an air-gapped machine.
"""

from __future__ import annotations

import os

import keras

from keras_skipae.layers import EncoderPreprocess

# name -> (constructor, feature layer names at strides 2, 4, 8, 16, 32)
_SPECS = {
    "mobilenet_v2": (
        "MobileNetV2",
        (
            "block_1_expand_relu",
            "block_3_expand_relu",
            "block_6_expand_relu",
            "block_13_expand_relu",
            "out_relu",
        ),
    ),
    "resnet50": (
        "ResNet50",
        (
            "conv1_relu",
            "conv2_block3_out",
            "conv3_block4_out",
            "conv4_block6_out",
            "conv5_block3_out",
        ),
    ),
}

#: Number of halvings of every supported encoder (features at strides 2 ... 32).
ENCODER_DEPTH = 5


def list_encoders() -> list[str]:
    """Names accepted by the builders' ``encoder=`` argument."""
    return sorted(_SPECS)


def check_encoder(encoder: str, encoder_weights) -> None:
    """Validates ``encoder`` and ``encoder_weights`` (a local file or None)."""
    if encoder not in _SPECS:
        raise ValueError(
            f"Unknown encoder. Expected one of {list_encoders()} or None. Received: encoder={encoder!r}"
        )
    if encoder_weights is None:
        return
    if not isinstance(encoder_weights, (str, os.PathLike)):
        raise ValueError(
            "`encoder_weights` must be None or the path of a local weights file "
            f"(nothing is downloaded). Received: encoder_weights={encoder_weights!r}"
        )
    if not os.path.isfile(encoder_weights):
        raise ValueError(
            f"`encoder_weights` file not found: {os.fspath(encoder_weights)!r}. Expected a local "
            ".h5 / .weights.h5 file for the encoder body (nothing is downloaded)."
        )


def build_encoder(encoder: str, *, input_shape, encoder_weights=None, name: str = "encoder"):
    """Builds a feature extractor with outputs at strides 2, 4, 8, 16 and 32.

    Args:
        encoder: ``"mobilenet_v2"`` or ``"resnet50"``.
        input_shape: ``(H, W, 3)``; H and W may be None.
        encoder_weights: None (random initialisation) or a local weights file for the
            application body (``include_top=False``).
        name: the name of the returned model (one layer of the outer model).

    Returns:
        A ``keras.Model`` mapping a preprocessed RGB image to a list of 5 feature maps.
    """
    check_encoder(encoder, encoder_weights)
    constructor, layer_names = _SPECS[encoder]
    body = getattr(keras.applications, constructor)(
        include_top=False, weights=None, input_shape=tuple(input_shape)
    )
    if encoder_weights is not None:
        try:
            body.load_weights(os.fspath(encoder_weights))
        except Exception as exc:
            raise ValueError(
                f"Could not load `encoder_weights` {os.fspath(encoder_weights)!r} into a {constructor} "
                f"body (include_top=False): {exc}"
            ) from exc
    outputs = [body.get_layer(n).output for n in layer_names]
    return keras.Model(body.inputs, outputs, name=name)


def preprocess(x, encoder: str, channels: int):
    """Maps a ``[0, 1]`` image to what the application body expects, with named layers.

    Grayscale input is repeated to three channels by a ``Concatenate`` layer named
    ``gray_to_rgb`` (no Lambda). MobileNetV2 expects ``[-1, 1]``; ResNet50 expects
    caffe-style BGR with the ImageNet mean subtracted. Both are done by the weightless
    layer ``encoder_preprocess`` (:class:`EncoderPreprocess`).

    Args:
        x: image tensor in ``[0, 1]`` with 1 or 3 channels.
        encoder: encoder name.
        channels: 1 or 3.

    Returns:
        The preprocessed 3-channel tensor.
    """
    if channels == 1:
        x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    elif channels != 3:
        raise ValueError(
            f"Encoders need 1 or 3 input channels. Received: input_shape with {channels} channels"
        )
    mode = "tf" if encoder == "mobilenet_v2" else "caffe"
    return EncoderPreprocess(mode, name="encoder_preprocess")(x)
