"""Every registered, weightless custom layer of keras_skipae.

They are registered with ``keras.saving.register_keras_serializable(package="keras_skipae")``
under their class names, so ``.keras`` files saved by any version load with
``keras.models.load_model(path, safe_mode=True)`` after ``import keras_skipae``.

* :class:`InputSizeCheck`: refuses inputs whose size is not a multiple of ``2**depth``.
* :class:`EncoderPreprocess`: a keras.applications encoder's input scaling.
* :class:`MCDropout`: Dropout that is always active (Monte-Carlo dropout).
* :class:`SkipDropout`: drops a whole skip tensor per sample during training.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_skipae")
class InputSizeCheck(keras.layers.Layer):
    """Passes images through unchanged, checking that H and W divide by ``multiple``.

    An encoder-decoder with ``depth`` halvings needs ``H`` and ``W`` to be multiples
    of ``2**depth``; otherwise a skip merge fails deep inside TensorFlow. This layer
    turns that into a clear error: a ``ValueError`` when the size is known while
    tracing, an ``InvalidArgumentError`` with the same message at run time.

    Args:
        multiple: the required divisor of height and width.
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def _message(self, h, w) -> str:
        return (
            f"Input height and width must be multiples of {self.multiple} "
            f"(2**depth) for this model. Received: image size {h}x{w}"
        )

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        if (h is not None and h % self.multiple) or (w is not None and w % self.multiple):
            raise ValueError(self._message(h, w))
        if h is None or w is None:
            shape = tf.shape(x)
            ok = tf.logical_and(
                tf.equal(shape[1] % self.multiple, 0), tf.equal(shape[2] % self.multiple, 0)
            )
            check = tf.debugging.Assert(
                ok, [self._message("H", "W"), "Received H, W:", shape[1], shape[2]]
            )
            with tf.control_dependencies([check]):
                x = tf.identity(x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"multiple": self.multiple})
        return config


@keras.saving.register_keras_serializable(package="keras_skipae")
class EncoderPreprocess(keras.layers.Layer):
    """Maps ``[0, 1]`` RGB images to a keras.applications body's expected input.

    Args:
        mode: ``"tf"`` scales to ``[-1, 1]`` (MobileNetV2); ``"caffe"`` converts to
            BGR in ``[0, 255]`` and subtracts the ImageNet mean (ResNet50).
    """

    _MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "caffe"):
            raise ValueError(f"`mode` must be 'tf' or 'caffe'. Received: mode={mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "tf":
            return x * 2.0 - 1.0
        x = keras.ops.flip(x, axis=-1) * 255.0
        return x - keras.ops.convert_to_tensor(np.array(self._MEAN_BGR, dtype="float32"))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config


@keras.saving.register_keras_serializable(package="keras_skipae")
class MCDropout(keras.layers.Dropout):
    """Dropout that is always active (Monte-Carlo dropout).

    A drop-in replacement for ``keras.layers.Dropout`` that drops units whatever
    ``training`` says, so a model can be run stochastically while every other
    layer (BatchNormalization in particular) stays in inference mode.
    ``mc_dropout_model`` swaps it in for a model's Dropout layers.
    """

    def call(self, inputs, training=None):
        return super().call(inputs, training=True)


@keras.saving.register_keras_serializable(package="keras_skipae")
class SkipDropout(keras.layers.Layer):
    """Drops the whole input tensor of each sample with probability ``rate`` in training.

    During training every sample's tensor is either replaced by zeros, with
    probability ``rate``, or kept and multiplied by ``1 / (1 - rate)`` (inverted
    dropout: the expected tensor is unchanged), independently per sample. At
    inference the layer is the identity. Inverted scaling measured better than none
    on the dev set (``docs/decisions.md#skip-dropout``).

    Placed on a skip connection it forces the decoder to reconstruct without that
    skip on a fraction of the samples, a constraint that training cannot undo
    (unlike a fixed scale, which the encoder's BatchNorm can compensate).

    Args:
        rate: drop probability, ``0 <= rate < 1``.
        seed: optional integer seed of the layer's random generator.
        rescale: multiply kept tensors by ``1 / (1 - rate)`` in training (the
            default, as the builders use it); False keeps them unchanged (the
            alternative compared in ``docs/decisions.md#skip-dropout``).
    """

    def __init__(self, rate: float, seed: int | None = None, rescale: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"`rate` must be a number in [0, 1). Received: rate={rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.rescale = bool(rescale)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self.built = True

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        batch = keras.ops.shape(inputs)[0]
        keep_shape = (batch,) + (1,) * (len(inputs.shape) - 1)
        u = keras.random.uniform(keep_shape, seed=self.seed_generator)
        keep = keras.ops.cast(keras.ops.greater_equal(u, self.rate), inputs.dtype)
        if self.rescale:
            keep = keep / (1.0 - self.rate)
        return inputs * keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed, "rescale": self.rescale})
        return config
