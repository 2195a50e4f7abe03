"""keras.applications bodies as encoders, with named multi-resolution features.

By default nothing is downloaded: the bodies are built with ``weights=None``.
``encoder_weights="imagenet"`` is passed through to keras.applications, which downloads
the ImageNet weights once into Keras' cache (``$KERAS_HOME/models``, by default
``~/.keras/models``). ``encoder_weights="/path/to/file.h5"`` (or ``.weights.h5``) loads
weights from a local file, for example the ``*_no_top.h5`` files of keras.applications
copied onto an air-gapped machine.
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


def keras_models_cache() -> str:
    """The folder where keras.applications caches downloaded weights.

    ``$KERAS_HOME/models`` if ``KERAS_HOME`` is set, else ``~/.keras/models``; like
    ``keras.utils.get_file(cache_subdir="models")``, ``/tmp/.keras/models`` when that Keras home
    folder is not writable (or does not exist yet).
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return os.path.join(home, "models")


def check_encoder(encoder: str, encoder_weights) -> None:
    """Validates ``encoder`` and ``encoder_weights`` (None, ``"imagenet"`` or a local file)."""
    if encoder not in _SPECS:
        raise ValueError(
            f"Unknown encoder. Expected one of {list_encoders()} or None. Received: encoder={encoder!r}"
        )
    if encoder_weights is None or encoder_weights == "imagenet":
        return
    if not isinstance(encoder_weights, (str, os.PathLike)):
        raise ValueError(
            "`encoder_weights` must be None, 'imagenet' or the path of a local weights file. "
            f"Received: encoder_weights={encoder_weights!r}"
        )
    if not os.path.isfile(encoder_weights):
        raise ValueError(
            f"`encoder_weights` file not found: {os.fspath(encoder_weights)!r}. Expected None, "
            "'imagenet' (downloaded once into Keras' cache) or a local .h5 / .weights.h5 file "
            "for the encoder body."
        )


def _is_download_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is how ``keras.utils.get_file`` reports a failed download.

    Offline, ``get_file`` raises a plain ``Exception("URL fetch failure on <url>: ...")``; a
    truncated download fails its hash check with a ``ValueError``; other I/O errors are ``OSError``.
    """
    text = str(exc)
    return isinstance(exc, OSError) or "URL fetch failure" in text or "hash does not match" in text


def build_encoder(encoder: str, *, input_shape, encoder_weights=None, name: str = "encoder"):
    """Builds a feature extractor with outputs at strides 2, 4, 8, 16 and 32.

    Args:
        encoder: ``"mobilenet_v2"`` or ``"resnet50"``.
        input_shape: ``(H, W, 3)``; H and W may be None.
        encoder_weights: None (random initialisation), ``"imagenet"`` (passed to
            keras.applications, which downloads the weights once into
            :func:`keras_models_cache`) or a local weights file for the application body
            (``include_top=False``).
        name: the name of the returned model (one layer of the outer model).

    Returns:
        A ``keras.Model`` mapping a preprocessed RGB image to a list of 5 feature maps.

    Raises:
        RuntimeError: ``encoder_weights="imagenet"`` and the download failed (offline); the
            message names the cache folder and the local-file alternative.
    """
    check_encoder(encoder, encoder_weights)
    constructor, layer_names = _SPECS[encoder]
    if encoder_weights == "imagenet":
        body = _imagenet_body(constructor, input_shape)
    else:
        body = getattr(keras.applications, constructor)(
            include_top=False, weights=None, input_shape=tuple(input_shape)
        )
    if encoder_weights is not None and encoder_weights != "imagenet":
        try:
            body.load_weights(os.fspath(encoder_weights))
        except Exception as exc:
            raise ValueError(
                f"Could not load `encoder_weights` {os.fspath(encoder_weights)!r} into a {constructor} "
                f"body (include_top=False): {exc}"
            ) from exc
    outputs = [body.get_layer(n).output for n in layer_names]
    return keras.Model(body.inputs, outputs, name=name)


def _imagenet_body(constructor: str, input_shape):
    """``keras.applications.<constructor>(weights="imagenet")``, with a clear error offline."""
    try:
        return getattr(keras.applications, constructor)(
            include_top=False, weights="imagenet", input_shape=tuple(input_shape)
        )
    except Exception as exc:
        if not _is_download_failure(exc):
            raise
        cache = keras_models_cache()
        raise RuntimeError(
            f"Could not download the ImageNet weights of {constructor} (include_top=False) into "
            f"Keras' cache {cache!r}: {exc}. Offline alternative: copy the keras.applications "
            f"'*_no_top' weights file into {cache!r} (it is then used without downloading), or "
            "pass its local path as encoder_weights='/path/to/file.h5'. "
            "Received: encoder_weights='imagenet'"
        ) from exc


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
