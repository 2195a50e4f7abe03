"""The encoder and decoder paths of the core builder,
:func:`~keras_skipae.models.autoencoder.build_encoder_decoder` (see
:mod:`keras_skipae.models.autoencoder` for the layer names they give).
"""

from __future__ import annotations

import keras

from keras_skipae.models import encoders as _encoders
from keras_skipae.models.blocks import (
    conv_block,
    double_conv_block,
    level_output,
    skip_merge,
)
from keras_skipae.models.spec import _Spec


def output_dtype():
    """``"float32"`` under a mixed-precision policy, so the outputs stay float32; else None."""
    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None


def output_conv(x, num_outputs: int, kernel_size, activation, *, padding: str = "same"):
    """The output convolution, named ``out``, with float32 outputs.

    Under a float32 policy: one ``Conv2D`` ``out`` with ``activation``. Under a mixed
    policy: the convolution ``out_conv`` computes in the policy's 16-bit dtype, and an
    ``Activation`` layer ``out`` applies ``activation`` in float32, so the model's outputs
    (and the losses and metrics on them) are float32 while the full-resolution
    convolution is not (``docs/decisions.md#mixed-precision-output``).
    """
    activation = activation or "linear"
    if output_dtype() is None:
        return keras.layers.Conv2D(
            num_outputs, kernel_size, padding=padding, activation=activation, name="out"
        )(x)
    x = keras.layers.Conv2D(num_outputs, kernel_size, padding=padding, name="out_conv")(x)
    return keras.layers.Activation(activation, dtype="float32", name="out")(x)


def encoder_path(x, spec: _Spec):
    """The encoder: ``(bottleneck tap, [level taps fine -> coarse])``."""
    n_levels, filters, rates, block = spec.n_levels, spec.filters, spec.rates, spec.block
    kernel_size, channels, input_shape = spec.kernel_size, spec.input_shape[-1], spec.input_shape
    features = []
    if spec.encoder is not None:
        x = _encoders.preprocess(x, spec.encoder, channels)
        body = _encoders.build_encoder(
            spec.encoder,
            input_shape=(input_shape[0], input_shape[1], 3),
            encoder_weights=spec.encoder_weights,
            name="encoder",
        )
        if spec.freeze_encoder:
            body.trainable = False
        *levels, deepest = body(x)
        features = [level_output(f, f"enc{i}") for i, f in enumerate(levels)]
        x = level_output(deepest, "bottleneck")
    elif spec.style == "aesc":
        for i in range(n_levels):
            x = conv_block(
                x,
                filters * 2**i,
                kernel_size=kernel_size,
                strides=2,
                dropout=rates[i],
                name=f"enc{i}",
                **block,
            )
            x = level_output(x, f"enc{i}")
            features.append(x)
        x = conv_block(
            x,
            filters * 2**n_levels,
            kernel_size=kernel_size,
            strides=2,
            dropout=rates[-1],
            name="bottleneck",
            **block,
        )
        x = level_output(x, "bottleneck")
    else:
        for i in range(n_levels):
            c = double_conv_block(x, filters * 2**i, name=f"enc{i}", **block)
            features.append(level_output(c, f"enc{i}"))
            x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(features[-1])
            if rates[i]:
                x = keras.layers.Dropout(rates[i], name=f"enc{i}_drop")(x)
        x = double_conv_block(x, filters * 2**n_levels, name="bottleneck", **block)
        if rates[-1]:
            x = keras.layers.Dropout(rates[-1], name="bottleneck_drop")(x)
        x = level_output(x, "bottleneck")

    return x, features


def upscale(x, spec: _Spec):
    """``log2(upscale)`` stride-2 Conv2DTranspose stages ``sr_up{k}`` (none for ``upscale=1``)."""
    for k in range(spec.upscale.bit_length() - 1):
        x = keras.layers.Conv2DTranspose(
            spec.filters,
            3,
            strides=2,
            padding="same",
            activation=spec.block["activation"],
            name=f"sr_up{k}",
        )(x)
    return x


def decoder_path(x, features, spec: _Spec):
    """The decoder and output layer, merging ``features`` through the chosen skips."""
    n_levels, filters, rates, block = spec.n_levels, spec.filters, spec.rates, spec.block
    kernel_size, skips, scales, skip_mode = (
        spec.kernel_size,
        spec.skips,
        spec.scales,
        spec.skip_mode,
    )
    num_outputs = spec.num_outputs
    if spec.style == "aesc":
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name="bottleneck_up")(x)
        for i in reversed(range(n_levels)):
            x = conv_block(x, filters * 2**i, kernel_size=kernel_size, name=f"dec{i}", **block)
            if i in skips:
                x = skip_merge(
                    x,
                    features[i],
                    mode=skip_mode,
                    scale=scales[i],
                    dropout=spec.drops[i],
                    name=f"dec{i}",
                )
            x = level_output(x, f"dec{i}")
            x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"dec{i}_up")(x)
        x = upscale(x, spec)
        outputs = output_conv(x, num_outputs, kernel_size, spec.output_activation)
    else:
        for i in reversed(range(n_levels)):
            x = keras.layers.Conv2DTranspose(
                filters * 2**i, 3, strides=2, padding="same", name=f"dec{i}_up"
            )(x)
            if i in skips:
                x = skip_merge(
                    x,
                    features[i],
                    mode=skip_mode,
                    scale=scales[i],
                    dropout=spec.drops[i],
                    name=f"dec{i}",
                )
            if rates[i]:
                x = keras.layers.Dropout(rates[i], name=f"dec{i}_drop")(x)
            x = double_conv_block(x, filters * 2**i, name=f"dec{i}", **block)
            x = level_output(x, f"dec{i}")
        if spec.encoder is not None:  # encoder level 0 is at stride 2: one more upsampling
            x = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", name="out_up")(
                x
            )
        x = upscale(x, spec)
        outputs = output_conv(x, num_outputs, 1, spec.output_activation)

    return outputs
