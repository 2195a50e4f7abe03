"""Building blocks: plain functions that take and return a tensor.

Every layer gets a deterministic name from the ``name`` prefix it is given
(see :mod:`keras_skipae.models.autoencoder` for the whole scheme):

====================  =========================================================
suffix                layer
====================  =========================================================
``_conv``             Conv2D (``_conv1`` / ``_conv2`` in a double block)
``_bn``               BatchNormalization (``_bn1`` / ``_bn2``)
``_act``              activation (``_act1`` / ``_act2``)
``_drop``             Dropout
``_pool``             MaxPooling2D
``_up``               UpSampling2D or Conv2DTranspose
``_skip``             the skip merge, an ``Add`` or ``Concatenate`` layer
``_skip_proj``        1x1 Conv2D projecting a skip whose channels do not match
``_skip_scale``       Rescaling that multiplies a skip by ``skip_scale``
``_skip_drop``        SkipDropout that drops a whole skip per sample in training
``_out``              Identity marking a level's output: the public tap
====================  =========================================================
"""

from __future__ import annotations

import keras

from keras_skipae.layers import SkipDropout

ACTIVATIONS = ("leaky_relu", "relu")


def _activation(name_act: str, activation: str):
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(name=name_act)
    if activation == "relu":
        return keras.layers.ReLU(name=name_act)
    raise ValueError(
        f"`activation` must be one of {ACTIVATIONS}. Received: activation={activation!r}"
    )


def conv_block(
    x,
    filters: int,
    *,
    kernel_size: int = 5,
    strides: int = 1,
    batchnorm: bool = True,
    dropout: float = 0.0,
    activation: str = "leaky_relu",
    bn_momentum: float = 0.99,
    name: str,
):
    """Conv2D -> BatchNorm -> activation [-> Dropout], the AESc stage.

    Args:
        x: input tensor ``[B, H, W, C]``.
        filters: output channels.
        kernel_size: square kernel size.
        strides: 2 halves the resolution (encoder), 1 keeps it (decoder).
        batchnorm: add BatchNormalization; the convolution then has no bias.
        dropout: dropout rate after the activation (0 adds no layer).
        activation: ``"leaky_relu"`` or ``"relu"``.
        bn_momentum: BatchNormalization momentum of the moving statistics.
        name: prefix of the layer names (``{name}_conv``, ``_bn``, ``_act``, ``_drop``).

    Returns:
        The output tensor.
    """
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=not batchnorm,
        name=f"{name}_conv",
    )(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    x = _activation(f"{name}_act", activation)(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def double_conv_block(
    x,
    filters: int,
    *,
    kernel_size: int = 3,
    batchnorm: bool = True,
    activation: str = "relu",
    bn_momentum: float = 0.99,
    name: str,
):
    """The U-Net's Conv2dBlock: (Conv2D 3x3 -> BatchNorm -> ReLU) twice.

    Args:
        x: input tensor.
        filters: output channels of both convolutions.
        kernel_size: kernel size of both convolutions.
        batchnorm: add BatchNormalization after each convolution.
        activation: ``"relu"`` (classic) or ``"leaky_relu"``.
        bn_momentum: BatchNormalization momentum.
        name: prefix (``{name}_conv1``, ``_bn1``, ``_act1``, ``_conv2``, ``_bn2``, ``_act2``).

    Returns:
        The output tensor.
    """
    for k in (1, 2):
        x = keras.layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            use_bias=not batchnorm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{k}",
        )(x)
        if batchnorm:
            x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn{k}")(x)
        x = _activation(f"{name}_act{k}", activation)(x)
    return x


def skip_merge(x, skip, *, mode: str, scale: float = 1.0, dropout: float = 0.0, name: str):
    """Merges an encoder feature ``skip`` into the decoder tensor ``x``.

    Args:
        x: decoder tensor.
        skip: encoder tensor at the same resolution.
        mode: ``"add"`` (AESc) or ``"concat"`` (U-Net).
        scale: fixed multiplier on the skip, ``0 < scale <= 1`` (a ``Rescaling`` layer
            ``{name}_skip_scale``); a reparametrisation that a BatchNorm before the skip
            can cancel (see ``build_aesc``).
        dropout: probability ``0 <= p < 1`` of dropping the whole skip of a sample in
            training (a :class:`~keras_skipae.layers.SkipDropout` layer ``{name}_skip_drop``,
            after the scale and the projection; 0 adds no layer).
        name: level prefix; the merge layer is ``{name}_skip``.

    Returns:
        The merged tensor. With ``"add"``, a skip whose channel count differs from
        ``x`` first goes through a 1x1 projection ``{name}_skip_proj``.
    """
    if scale != 1.0:
        skip = keras.layers.Rescaling(float(scale), name=f"{name}_skip_scale")(skip)
    if mode == "add":
        if skip.shape[-1] != x.shape[-1]:
            skip = keras.layers.Conv2D(x.shape[-1], 1, name=f"{name}_skip_proj")(skip)
        if dropout:
            skip = SkipDropout(float(dropout), name=f"{name}_skip_drop")(skip)
        return keras.layers.Add(name=f"{name}_skip")([x, skip])
    if mode == "concat":
        if dropout:
            skip = SkipDropout(float(dropout), name=f"{name}_skip_drop")(skip)
        return keras.layers.Concatenate(name=f"{name}_skip")([x, skip])
    raise ValueError(f"`mode` must be 'add' or 'concat'. Received: mode={mode!r}")


def level_output(x, name: str):
    """Marks ``x`` as the output of a level with an Identity layer ``{name}_out`` (a tap)."""
    return keras.layers.Identity(name=f"{name}_out")(x)
