"""One core encoder-decoder builder; ``build_ae``, ``build_aesc`` and ``build_unet`` set its options.

Layer naming (deterministic, shared by all builders)
----------------------------------------------------
Levels are indexed from 0 at the finest resolution. A model with ``L`` skip
levels has encoder stages ``enc0 ... enc{L-1}``, a ``bottleneck`` stage and
decoder stages ``dec{L-1} ... dec0`` (decoder level ``i`` works at the
resolution of encoder level ``i``, so a skip joins ``enc{i}`` to ``dec{i}``).

* ``image``: the Input; ``input_check``: :class:`InputSizeCheck`.
* ``enc{i}_conv``, ``enc{i}_bn``, ``enc{i}_act``, ``enc{i}_drop`` (AESc style) or
  ``enc{i}_conv1/_bn1/_act1/_conv2/_bn2/_act2``, ``enc{i}_pool``, ``enc{i}_drop`` (U-Net).
* ``bottleneck_conv`` ... as an encoder stage; ``bottleneck_up`` (AESc style).
* ``dec{i}_conv/_bn/_act``, ``dec{i}_skip_scale`` (Rescaling, when ``skip_scale < 1``),
  ``dec{i}_skip_proj`` (1x1 Conv2D, when an added skip's channels differ),
  ``dec{i}_skip_drop`` (:class:`~keras_skipae.layers.SkipDropout`, when ``skip_dropout > 0``),
  ``dec{i}_skip`` (Add or Concatenate), ``dec{i}_up`` (UpSampling2D in AESc style,
  Conv2DTranspose in U-Net style, where it comes *before* the merge), ``dec{i}_drop``.
* ``out_up`` (only with a keras.applications encoder in U-Net style), then
  ``sr_up0``, ``sr_up1`` (only with ``upscale`` 2 or 4: Conv2DTranspose, stride 2,
  ``filters`` channels and the blocks' activation, one per doubling of the size), and
  ``out``, the output convolution with ``output_activation`` (a sigmoid by default).
  Under a mixed-precision policy: ``out_conv``, the convolution in 16 bits, then ``out``,
  an ``Activation`` in float32 (:func:`~keras_skipae.models.paths.output_conv`).
* The input of ``out`` is the decoder's last tensor, what
  :func:`~keras_skipae.models.transfer.replace_head` keeps: ``dec0_up``'s output in
  AESc style, ``dec0_out``'s in U-Net style, else ``out_up``'s, or the last ``sr_up{k}``'s.
* With ``encoder=``: ``gray_to_rgb`` (Concatenate, grayscale input only),
  ``encoder_preprocess`` and the nested body ``encoder``.
* Taps: ``enc{i}_out``, ``bottleneck_out``, ``dec{i}_out`` are Identity layers at the
  end of every level (after the skip merge in the decoder). They are the public way
  to reach intermediate activations: see :mod:`keras_skipae.models.taps`.

AE and AESc differ only by their ``dec{i}_skip`` (and projection / scale) layers,
so every other layer, and every tap, has the same name in both.

References:
    Collin & De Vleeschouwer, "Improved anomaly detection by training an autoencoder
    with skip connections on images corrupted with stain-shaped noise", ICPR 2020
    (arXiv 2008.12977). Ronneberger et al., "U-Net", 2015 (arXiv 1505.04597).
"""

from __future__ import annotations

import keras

from keras_skipae.layers import InputSizeCheck
from keras_skipae.models.paths import decoder_path, encoder_path
from keras_skipae.models.spec import (
    _resolve_spec,
)

#: The per-level dropout rates of the authors' MC-dropout AESc (levels 0..4 and bottleneck).
AESC_MC_DROPOUT = (0.0, 0.0, 0.1, 0.2, 0.4, 0.5)


def build_encoder_decoder(
    *,
    input_shape,
    style: str,
    depth: int | None,
    filters: int,
    kernel_size: int,
    skip_mode: str | None,
    skips="all",
    skip_scale=1.0,
    skip_dropout=0.0,
    dropout=None,
    batchnorm: bool = True,
    bn_momentum: float = 0.99,
    activation: str | None = None,
    num_outputs: int | None = None,
    output_activation: str | None = "sigmoid",
    upscale: int = 1,
    encoder: str | None = None,
    encoder_weights=None,
    freeze_encoder: bool = False,
    name: str,
) -> keras.Model:
    """The one core builder behind every model. Prefer the public builders.

    Args:
        input_shape: ``(H, W, C)``; H and W may be None and must otherwise be
            multiples of ``2**depth``.
        style: ``"aesc"`` (strided conv encoder, nearest-neighbour upsampling decoder,
            Conv-BN-LeakyReLU stages) or ``"unet"`` (double 3x3 conv blocks, max-pooling,
            Conv2DTranspose, Dropout).
        depth: number of halvings. AESc style: ``depth - 1`` skip levels plus the
            bottleneck; U-Net style: ``depth`` skip levels plus the bottleneck. With an
            ``encoder`` it is fixed to 5. None selects the style's default
            (:data:`DEFAULT_DEPTH`) or the encoder's.
        filters: channels of level 0; doubled at every level.
        kernel_size: AESc-style kernel size (U-Net blocks use 3).
        skip_mode: ``"add"``, ``"concat"`` or None.
        skips: ``"all"``, None / ``()`` / ``"none"``, or a tuple of level indices.
        skip_scale: multiplier on every skip (or one per level), ``0 < s <= 1``.
        skip_dropout: probability ``0 <= p < 1`` of dropping a whole skip per sample in
            training (or one rate per level); :class:`~keras_skipae.layers.SkipDropout`.
        dropout: None, a rate, or one rate per level plus one for the bottleneck.
        batchnorm: use BatchNormalization.
        bn_momentum: BatchNormalization momentum (0.99 is Keras' default; lower values
            make the moving statistics catch up in short training runs).
        activation: ``"leaky_relu"`` (AESc default) or ``"relu"`` (U-Net default).
        num_outputs: output channels (default: the input's channels).
        output_activation: the ``out`` layer's activation: ``"sigmoid"`` (images in
            [0, 1]), ``"softmax"`` (over the output channels; needs ``num_outputs >= 2``)
            or None / ``"linear"`` (targets outside [0, 1]).
        upscale: 1, 2 or 4: the output is ``upscale`` times the input's height and width
            (``sr_up{k}`` stages before ``out``, for super-resolution).
        encoder: None, ``"mobilenet_v2"`` or ``"resnet50"``.
        encoder_weights: None, ``"imagenet"`` (downloaded once into Keras' cache) or a local
            weights file for the encoder body.
        freeze_encoder: make the encoder body non-trainable.
        name: model name.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: a bad argument; the message names it (``Received: upscale=3``).
    """
    spec = _resolve_spec(
        input_shape=input_shape,
        style=style,
        depth=depth,
        filters=filters,
        kernel_size=kernel_size,
        skip_mode=skip_mode,
        skips=skips,
        skip_scale=skip_scale,
        dropout=dropout,
        batchnorm=batchnorm,
        bn_momentum=bn_momentum,
        activation=activation,
        num_outputs=num_outputs,
        encoder=encoder,
        encoder_weights=encoder_weights,
        freeze_encoder=freeze_encoder,
        skip_dropout=skip_dropout,
        output_activation=output_activation,
        upscale=upscale,
    )
    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = InputSizeCheck(2**spec.depth, name="input_check")(inputs)
    x, features = encoder_path(x, spec)
    outputs = decoder_path(x, features, spec)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------- public builders


def build_aesc(
    *,
    input_shape=(256, 256, 1),
    depth: int | None = None,
    filters: int = 16,
    kernel_size: int = 5,
    skip_mode: str | None = "add",
    skips="all",
    skip_scale=1.0,
    skip_dropout=0.0,
    dropout=None,
    batchnorm: bool = True,
    bn_momentum: float = 0.99,
    output_activation: str | None = "sigmoid",
    upscale: int = 1,
    encoder: str | None = None,
    encoder_weights=None,
    freeze_encoder: bool = False,
    name: str = "aesc",
) -> keras.Model:
    """The AESc: an autoencoder with additive long skip connections.

    Collin & De Vleeschouwer (ICPR 2020, arXiv 2008.12977). Encoder: ``depth`` stages of
    Conv2D (stride 2, 'same') -> BatchNorm -> LeakyReLU with ``filters * 2**i`` channels
    (16, 32, ..., 512 at depth 6: 256x256 becomes a 4x4x512 latent). Decoder: a
    nearest-neighbour UpSampling2D of the bottleneck, then per level Conv2D -> BN ->
    LeakyReLU -> Add(encoder output at the same resolution) -> UpSampling2D. Output:
    Conv2D to the input's channels with a sigmoid. Additive skips join every level
    except the bottleneck. Train it on stain-corrupted inputs with clean targets
    (:class:`keras_skipae.data.Stains`), otherwise the skips copy defects through.

    The layer names are listed in :mod:`keras_skipae.models.autoencoder`; the taps are
    ``enc{i}_out``, ``bottleneck_out``, ``dec{i}_out``.

    Args:
        input_shape: ``(H, W, C)``; H, W multiples of ``2**depth`` or None.
        depth: number of stride-2 stages (the last is the bottleneck). None means 6,
            or 5 with an ``encoder`` (which fixes it).
        filters: channels of the first stage, doubled per stage.
        kernel_size: convolution kernel size.
        skip_mode: ``"add"`` (the paper), ``"concat"`` or None (= :func:`build_ae`).
        skips: ``"all"`` (levels ``0 .. depth-2``), None / ``()``, or a tuple of levels
            (0 is the finest, 128x128 for a 256x256 input).
        skip_scale: fixed multiplier ``0 < s <= 1`` on each skip (or one per level).
            Not a constraint on what the model can represent: the encoder's BatchNorm
            and LeakyReLU can cancel it exactly (notebook 06). In
            ``bench/bench_skips.py`` training kept it (each skip's share at its Add
            stayed about ``s`` times that with ``s = 1``), but ``s = 0.5`` did not make
            the AESc repair defects more (``bench/README.md#skip-benchmark``). For a
            constraint training cannot undo, use ``skip_dropout``.
        skip_dropout: probability ``0 <= p < 1`` of dropping a whole skip per sample in
            training (a :class:`~keras_skipae.layers.SkipDropout` layer
            ``dec{i}_skip_drop``; kept skips are rescaled by ``1 / (1 - p)``, the identity
            at inference: ``docs/decisions.md#skip-dropout``), or one rate per level; 0
            adds no layer.
        dropout: None, a rate, or ``depth`` rates (levels then bottleneck) for
            MC-dropout, e.g. :data:`AESC_MC_DROPOUT` = (0, 0, .1, .2, .4, .5).
        batchnorm: use BatchNormalization.
        bn_momentum: BatchNormalization momentum; 0.9 suits short runs.
        output_activation: ``"sigmoid"`` (default: images in [0, 1]), None / ``"linear"``
            for targets outside [0, 1], or ``"softmax"`` (over channels, 2 or more).
        upscale: 1 (default), 2 or 4: the output is ``upscale`` times the input's size
            (stride-2 Conv2DTranspose stages ``sr_up{k}`` before ``out``).
        encoder: None or a keras.applications body (``"mobilenet_v2"``, ``"resnet50"``).
        encoder_weights: None, ``"imagenet"`` (downloaded once into Keras' cache) or a local
            weights file for that body.
        freeze_encoder: make the encoder body non-trainable.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``[B, H, W, C]`` images in [0, 1] to reconstructions.

    Example:
        >>> model = build_aesc(input_shape=(64, 64, 1), depth=4, filters=8)
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    return build_encoder_decoder(
        input_shape=input_shape,
        style="aesc",
        depth=depth,
        filters=filters,
        kernel_size=kernel_size,
        skip_mode=skip_mode,
        skips=skips,
        skip_scale=skip_scale,
        skip_dropout=skip_dropout,
        dropout=dropout,
        batchnorm=batchnorm,
        bn_momentum=bn_momentum,
        output_activation=output_activation,
        upscale=upscale,
        encoder=encoder,
        encoder_weights=encoder_weights,
        freeze_encoder=freeze_encoder,
        name=name,
    )


def build_ae(
    *,
    input_shape=(256, 256, 1),
    depth: int | None = None,
    filters: int = 16,
    kernel_size: int = 5,
    dropout=None,
    batchnorm: bool = True,
    bn_momentum: float = 0.99,
    encoder: str | None = None,
    encoder_weights=None,
    freeze_encoder: bool = False,
    skip_dropout=0.0,
    output_activation: str | None = "sigmoid",
    upscale: int = 1,
    name: str = "ae",
) -> keras.Model:
    """The plain autoencoder: the AESc graph without skips.

    Every layer has the same name as in :func:`build_aesc`, so weights and taps line
    up between the two; only the ``dec{i}_skip`` layers are missing.

    Args:
        input_shape, depth, filters, kernel_size, dropout, batchnorm, bn_momentum,
        encoder, encoder_weights, freeze_encoder, output_activation, upscale: as in
        :func:`build_aesc`.
        skip_dropout: accepted so that code looping over builders can pass it; the AE
            has no skips, so anything but 0 raises a ``ValueError``.
        name: model name.

    Returns:
        A ``keras.Model``.

    Example:
        >>> ae = build_ae(input_shape=(64, 64, 1), depth=4, filters=8)
    """
    return build_encoder_decoder(
        input_shape=input_shape,
        style="aesc",
        depth=depth,
        filters=filters,
        kernel_size=kernel_size,
        skip_mode=None,
        skips=None,
        skip_dropout=skip_dropout,
        dropout=dropout,
        batchnorm=batchnorm,
        bn_momentum=bn_momentum,
        output_activation=output_activation,
        upscale=upscale,
        encoder=encoder,
        encoder_weights=encoder_weights,
        freeze_encoder=freeze_encoder,
        name=name,
    )


def build_unet(
    *,
    input_shape=(256, 256, 1),
    filters: int = 16,
    depth: int | None = None,
    dropout=0.1,
    batchnorm: bool = True,
    bn_momentum: float = 0.99,
    num_outputs: int | None = None,
    output_activation: str | None = "sigmoid",
    upscale: int = 1,
    skip_mode: str | None = "concat",
    skips="all",
    skip_scale=1.0,
    skip_dropout=0.0,
    encoder: str | None = None,
    encoder_weights=None,
    freeze_encoder: bool = False,
    name: str = "unet",
) -> keras.Model:
    """The classic U-Net (Ronneberger et al., 2015) with Conv2dBlocks.

    Conv2dBlock: two 3x3 convolutions, each -> BatchNorm -> ReLU. Down path: block,
    MaxPool, Dropout (``depth`` times), then the bottleneck block. Up path per level:
    Conv2DTranspose (stride 2), Concatenate with the encoder block at that
    resolution, Dropout, block. Head: a 1x1 convolution with a sigmoid and
    ``num_outputs`` channels (default: the input's channels, for reconstruction; the
    number of classes for segmentation).

    Args:
        input_shape: ``(H, W, C)``; H, W multiples of ``2**depth`` or None.
        filters: channels of level 0, doubled per level (``16 * 2**depth`` at the bottleneck).
        depth: number of max-poolings (skip levels ``0 .. depth-1``). None means 4, or
            5 with an ``encoder`` (which fixes it).
        dropout: a rate for every Dropout, or ``depth + 1`` rates (levels, bottleneck).
        batchnorm: use BatchNormalization.
        bn_momentum: BatchNormalization momentum.
        num_outputs: output channels; defaults to the input's channels.
        output_activation: ``"sigmoid"`` (default: images or binary masks), ``"softmax"``
            (K >= 2 classes over the output channels) or None / ``"linear"`` (targets
            outside [0, 1]).
        upscale: 1 (default), 2 or 4: the output is ``upscale`` times the input's height
            and width, e.g. 2 for 2x super-resolution: stride-2 Conv2DTranspose stages
            ``sr_up{k}`` (``filters`` channels, ReLU) after the last decoder block.
        skip_mode: ``"concat"`` (classic), ``"add"`` or None.
        skips: ``"all"``, None / ``()`` or a tuple of levels (0 is the full resolution).
        skip_scale: fixed multiplier ``0 < s <= 1`` on each skip (or one per level);
            a reparametrisation that BatchNorm can cancel, see :func:`build_aesc`.
        skip_dropout: probability ``0 <= p < 1`` of dropping a whole skip per sample in
            training (or one rate per level), as in :func:`build_aesc`.
        encoder: None or a keras.applications body (``"mobilenet_v2"``, ``"resnet50"``):
            its features at strides 2..16 are the skips, stride 32 the bottleneck.
        encoder_weights: None, ``"imagenet"`` (downloaded once into Keras' cache) or a local
            weights file for that body.
        freeze_encoder: make the encoder body non-trainable.
        name: model name.

    Returns:
        A ``keras.Model``.

    Example:
        >>> unet = build_unet(input_shape=(64, 64, 1), depth=3, filters=8)
        >>> sr = build_unet(input_shape=(32, 32, 1), depth=3, upscale=2, output_activation=None)
        >>> sr.output_shape
        (None, 64, 64, 1)
    """
    return build_encoder_decoder(
        input_shape=input_shape,
        style="unet",
        depth=depth,
        filters=filters,
        kernel_size=3,
        skip_mode=skip_mode,
        skips=skips,
        skip_scale=skip_scale,
        skip_dropout=skip_dropout,
        dropout=dropout,
        batchnorm=batchnorm,
        bn_momentum=bn_momentum,
        num_outputs=num_outputs,
        output_activation=output_activation,
        upscale=upscale,
        encoder=encoder,
        encoder_weights=encoder_weights,
        freeze_encoder=freeze_encoder,
        name=name,
    )
