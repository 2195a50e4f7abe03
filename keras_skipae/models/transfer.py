"""Transfer learning on the package's models: a new head, and freezing parts by name.

* :func:`replace_head` keeps every layer of a model up to the input of its ``out``
  convolution (the decoder's last tensor) and adds a new ``out`` convolution, e.g. to
  fine-tune an autoencoder pretrained on unlabelled images for segmentation.
* :func:`set_trainable` freezes or unfreezes the encoder and the decoder, found by the
  layer names of :mod:`keras_skipae.models.autoencoder`.

Both work on the builders' functional models and on them after a ``.keras`` round trip.
"""

from __future__ import annotations

import re

import keras

from keras_skipae.models.paths import output_conv
from keras_skipae.models.spec import _check_int

#: Accepted ``activation`` values of :func:`replace_head` (None means ``"linear"``).
HEAD_ACTIVATIONS = ("sigmoid", "softmax", "linear", None)

#: Layer names of the encoder: stages ``enc{i}_*``, the bottleneck (not ``bottleneck_up``)
#: and, with a keras.applications encoder, ``gray_to_rgb``, ``encoder_preprocess`` and the
#: nested body ``encoder``.
ENCODER_LAYERS = re.compile(
    r"^(?:enc\d+_.*|bottleneck(?!_up$)(?:_.*)?|encoder|encoder_preprocess|gray_to_rgb)$"
)

#: Layer names of the decoder: ``bottleneck_up`` (AESc style), stages ``dec{i}_*``,
#: ``out_up``, the super-resolution stages ``sr_up{k}`` and the output (``out_conv``, ``out``).
DECODER_LAYERS = re.compile(r"^(?:bottleneck_up|dec\d+_.*|out_up|sr_up\d+|out_conv|out)$")


def _out_layer(model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a functional keras.Model built by keras_skipae (or loaded from its "
            f".keras file). Received: model={model!r}"
        )
    names = {layer.name: layer for layer in getattr(model, "layers", ())}
    out = names.get("out")
    if isinstance(out, keras.layers.Activation):  # built under a mixed policy: see output_conv
        out = names.get("out_conv")
    if out is None or not isinstance(out, keras.layers.Conv2D) or not hasattr(model, "inputs"):
        raise ValueError(
            "`model` must be a functional keras_skipae model whose output convolution is a "
            "Conv2D layer named 'out' (or 'out_conv' before a float32 Activation 'out'; a "
            "wrapper such as an AnomalyHeadModel: pass its `.base`). "
            f"Received: model={getattr(model, 'name', model)!r}"
        )
    return out


def replace_head(
    model: keras.Model,
    num_outputs: int,
    activation: str | None = "sigmoid",
    name: str | None = None,
) -> keras.Model:
    """A new model sharing every layer of ``model`` but its output convolution.

    The new model keeps the graph from ``model``'s input to the input of its layer
    ``out`` (the decoder's last tensor: ``dec0_up``'s output in AESc style, ``dec0_out``'s
    in U-Net style, ``out_up``'s with a keras.applications encoder, the last
    ``sr_up{k}``'s with ``upscale``) and ends in a freshly initialised Conv2D named
    ``out`` with the old one's kernel size and padding. Its layers are the same objects
    as ``model``'s, so they share their weights: training one trains the other, and
    :func:`set_trainable` on one freezes both. Under a mixed-precision policy the new
    head is built like the builders' (``out_conv`` in 16 bits, then a float32
    ``out``), so it returns float32.

    Args:
        model: a functional model of :mod:`keras_skipae.models` (``build_ae``,
            ``build_aesc``, ``build_unet``, with or without ``encoder=``), built or loaded
            from ``.keras``.
        num_outputs: the new head's channels, e.g. 1 for a binary mask or K classes.
        activation: ``"sigmoid"`` (default: masks or images in [0, 1]), ``"softmax"``
            over the channels (needs ``num_outputs >= 2``), or None / ``"linear"``.
        name: the new model's name; default ``f"{model.name}_head{num_outputs}"``.

    Returns:
        A functional ``keras.Model`` with ``model``'s input and a new ``out`` layer.

    Raises:
        ValueError: ``model`` is not a functional keras_skipae model with a Conv2D layer
            ``out``; ``num_outputs`` is not an integer >= 1; an unknown ``activation``, or
            ``"softmax"`` with one output.

    Example:
        >>> pretrained = build_unet(input_shape=(64, 64, 1), depth=3, filters=8)
        >>> seg = replace_head(pretrained, 1, "sigmoid")          # a binary mask
        >>> seg.get_layer("dec0_out") is pretrained.get_layer("dec0_out")
        True
    """
    out = _out_layer(model)
    num_outputs = _check_int("num_outputs", num_outputs)
    if not (activation is None or (isinstance(activation, str) and activation in HEAD_ACTIVATIONS)):
        raise ValueError(
            "`activation` must be 'sigmoid', 'softmax', or None / 'linear'. "
            f"Received: activation={activation!r}"
        )
    if activation == "softmax" and num_outputs < 2:
        raise ValueError(
            "`activation='softmax'` normalises over the output channels and needs num_outputs "
            f">= 2 (use 'sigmoid' for one channel). Received: activation='softmax', "
            f"num_outputs={num_outputs}"
        )
    if name is None:
        name = f"{model.name}_head{num_outputs}"
    elif not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string or None. Received: name={name!r}")
    outputs = output_conv(out.input, num_outputs, out.kernel_size, activation, padding=out.padding)
    return keras.Model(model.input, outputs, name=name)


def _check_flag(name, value):
    if value is not None and not isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be True (trainable), False (frozen) or None (unchanged). "
            f"Received: {name}={value!r}"
        )


def set_trainable(model: keras.Model, encoder: bool | None = None, decoder: bool | None = None):
    """Freezes or unfreezes a model's encoder and decoder, by layer name.

    Parts (names of :mod:`keras_skipae.models.autoencoder`):

    * encoder: ``enc{i}_*``, ``bottleneck*`` (the bottleneck stage and its tap), and with
      a keras.applications encoder ``gray_to_rgb``, ``encoder_preprocess`` and the nested
      body ``encoder`` (all its layers);
    * decoder: ``bottleneck_up`` (AESc style), ``dec{i}_*``, ``out_up``, ``sr_up{k}`` and
      ``out``.

    Other layers (``image``, ``input_check``) have no weights and are left alone, and so
    is ``model.trainable`` itself: a model set ``trainable=False`` as a whole has no
    trainable weights whatever its layers say.

    With Keras 3, a frozen ``BatchNormalization`` also runs in inference mode (it uses and
    no longer updates its moving statistics), also inside ``fit``. Changing
    ``trainable`` takes effect at the next ``compile``: re-compile the model afterwards.
    Layers shared with another model (:func:`replace_head`) are frozen in both.

    Args:
        model: a model of :mod:`keras_skipae.models` (or :func:`replace_head`'s).
        encoder: True to train the encoder, False to freeze it, None to leave it.
        decoder: True to train the decoder and head, False to freeze them, None to leave
            them.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: ``encoder`` or ``decoder`` is not True, False or None; ``model`` has
            no layer of a part that is set.

    Example:
        >>> set_trainable(model, encoder=False, decoder=True)  # fine-tune the decoder only
        >>> model.compile(optimizer="adam", loss="binary_crossentropy")
    """
    _check_flag("encoder", encoder)
    _check_flag("decoder", decoder)
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model={model!r}")
    for part, flag, pattern in (
        ("encoder", encoder, ENCODER_LAYERS),
        ("decoder", decoder, DECODER_LAYERS),
    ):
        if flag is None:
            continue
        layers = [layer for layer in model.layers if pattern.match(layer.name)]
        if not layers:
            raise ValueError(
                f"`model` has no {part} layers (named as in keras_skipae.models.autoencoder), "
                f"so `{part}` cannot be set. Received: model={model.name!r}, {part}={flag!r}"
            )
        for layer in layers:
            layer.trainable = flag
    return model
