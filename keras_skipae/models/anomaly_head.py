"""A learned anomaly head on a reconstruction model (DRAEM-like), as one registered model.

Zavrtanik et al. (DRAEM, ICCV 2021) pair a reconstruction network that repairs
synthetic anomalies with a discriminative network that reads the input and the
reconstruction side by side and segments what differs in a meaningful way.
:class:`AnomalyHeadModel` does that with the package's own builders:

* ``base``: the reconstruction model (AESc, AE or U-Net, unchanged); calling the
  wrapper returns its reconstruction, so every workflow that reconstructs keeps
  working (scoring, previews, export, taps through :func:`base_model`);
* ``head``: a small U-Net (:func:`build_unet`, sigmoid, one output channel) whose
  input is ``concat(x, x_hat)``, optionally with the channel means of the base's
  tapped activations, resized to the input resolution (``head_taps``).
  :meth:`AnomalyHeadModel.anomaly_map` gives its per-pixel anomaly probability:
  the ``"learned"`` map of :mod:`keras_skipae.scoring`.

Training (``fit`` on ``(x, (target, mask))`` pairs, what :func:`keras_skipae.train`
feeds it) minimises the compiled reconstruction loss plus ``head_weight`` times
the head's segmentation loss against the exact masks of the synthetic
anomalies. With ``joint=False`` the head does not back-propagate into the base
(two phases in one run: the base learns to repair, the head to segment).
Validation also reports ``good_alarm``: the head's mean top-1 % probability on the
*clean* targets, the false alarms the head would raise on good parts.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_skipae import losses as losses_lib
from keras_skipae.models.autoencoder import build_ae, build_aesc, build_unet
from keras_skipae.models.taps import select_layers, tap_model
from keras_skipae.ops.stats import channel_mean

#: The head's defaults: a small U-Net (``docs/decisions.md#anomaly-head``).
HEAD_DEPTH = 4
HEAD_FILTERS = 16

_BASES = {"aesc": build_aesc, "ae": build_ae, "unet": build_unet}


@keras.saving.register_keras_serializable(package="keras_skipae")
class AnomalyHeadModel(keras.Model):
    """A reconstruction model with a learned anomaly head.

    Args:
        base: the reconstruction model (one image input, one image output).
        head: a model mapping ``[B, H, W, 2C + n_taps]`` to ``[B, H, W, 1]`` probabilities.
        head_taps: None, or the base's taps whose channel means the head also reads
            (a group such as ``"decoder"`` or a list of tap names).
        head_weight: weight of the head's loss in the total (> 0).
        head_loss: a segmentation loss name of :func:`keras_skipae.losses.get_loss`.
        joint: let the head's loss train the base too (else it is stopped at the
            reconstruction).

    Example:
        >>> model = ks.get_model("aesc_head", input_shape=(128, 128, 1))
        >>> model(x)                 # the reconstruction
        >>> model.anomaly_map(x)     # [B, H, W] anomaly probabilities
    """

    def __init__(
        self,
        base,
        head,
        *,
        head_taps=None,
        head_weight: float = 1.0,
        head_loss: str = "focal",
        joint: bool = True,
        **kwargs,
    ):
        super().__init__(**{"name": f"{base.name}_head", **kwargs})
        if not float(head_weight) > 0:
            raise ValueError(f"Expected `head_weight` > 0. Received: head_weight={head_weight!r}")
        self.base = base
        self.head = head
        self.head_taps = (
            head_taps if head_taps is None or isinstance(head_taps, str) else list(head_taps)
        )
        self.head_weight = float(head_weight)
        self.head_loss_name = head_loss
        self._seg_loss = losses_lib.get_loss(head_loss)
        self.joint = bool(joint)
        self._tap_names = [] if head_taps is None else select_layers(base, head_taps)
        self._taps = tap_model(base, self._tap_names + ["out"]) if self._tap_names else None
        self.head_loss_tracker = keras.metrics.Mean(name="head_loss")
        self.good_alarm_tracker = keras.metrics.Mean(name="good_alarm")
        self.built = bool(base.built and head.built)

    # ----------------------------------------------------------------- forward
    def call(self, inputs, training=None):
        return self.base(inputs, training=training)

    def _reconstruct(self, x, training):
        """``(x_hat, extra head channels)``."""
        if self._taps is None:
            return self.base(x, training=training), []
        acts = self._taps(x, training=training)
        size = tf.shape(x)[1:3]
        extra = [tf.image.resize(channel_mean(acts[n])[..., None], size) for n in self._tap_names]
        return acts["out"], extra

    def _head(self, x, x_hat, extra, training):
        x_hat = tf.cast(x_hat, x.dtype)
        if not self.joint:
            x_hat = tf.stop_gradient(x_hat)
            extra = [tf.stop_gradient(e) for e in extra]
        return self.head(tf.concat([x, x_hat, *extra], axis=-1), training=training)

    def anomaly_map(self, inputs, training=False) -> tf.Tensor:
        """The head's per-pixel anomaly probability ``[B, H, W]`` (float32)."""
        x = tf.cast(inputs, tf.float32)
        x_hat, extra = self._reconstruct(x, training)
        return tf.cast(self._head(x, x_hat, extra, training), tf.float32)[..., 0]

    # ----------------------------------------------------------------- training
    @property
    def metrics(self):
        return super().metrics + [self.head_loss_tracker, self.good_alarm_tracker]

    @staticmethod
    def _unpack(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(y, tuple | list) or len(y) != 2:
            raise ValueError(
                "AnomalyHeadModel trains on (input, (target, mask)) batches: "
                "keras_skipae.train feeds them for models with a head."
            )
        return x, y[0], y[1], sample_weight

    def _step_losses(self, x, target, mask, sample_weight, training):
        x_hat, extra = self._reconstruct(x, training)
        rec = self.compute_loss(x=x, y=target, y_pred=x_hat, sample_weight=sample_weight)
        prob = self._head(x, x_hat, extra, training)
        seg = self._seg_loss(mask, prob)
        return x_hat, rec + self.head_weight * seg, seg

    def train_step(self, data):
        x, target, mask, sample_weight = self._unpack(data)
        with tf.GradientTape() as tape:
            x_hat, total, seg = self._step_losses(x, target, mask, sample_weight, True)
            self._loss_tracker.update_state(total, sample_weight=tf.shape(x)[0])
            scaled = self.optimizer.scale_loss(total) if self.optimizer is not None else total
        weights = self.trainable_weights
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        self.head_loss_tracker.update_state(seg)
        logs = self.compute_metrics(x, target, x_hat, sample_weight=sample_weight)
        logs.pop("good_alarm", None)  # measured on clean validation images only
        return logs

    def test_step(self, data):
        x, target, mask, sample_weight = self._unpack(data)
        x_hat, total, seg = self._step_losses(x, target, mask, sample_weight, False)
        self._loss_tracker.update_state(total, sample_weight=tf.shape(x)[0])
        self.head_loss_tracker.update_state(seg)
        good = tf.reshape(self.anomaly_map(target), [tf.shape(x)[0], -1])
        k = tf.maximum(1, tf.shape(good)[1] // 100)
        self.good_alarm_tracker.update_state(tf.reduce_mean(tf.math.top_k(good, k).values))
        return self.compute_metrics(x, target, x_hat, sample_weight=sample_weight)

    # ----------------------------------------------------------------- config
    def get_config(self):
        return {
            "base": keras.saving.serialize_keras_object(self.base),
            "head": keras.saving.serialize_keras_object(self.head),
            "head_taps": self.head_taps,
            "head_weight": self.head_weight,
            "head_loss": self.head_loss_name,
            "joint": self.joint,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        base = keras.saving.deserialize_keras_object(
            config.pop("base"), custom_objects=custom_objects
        )
        head = keras.saving.deserialize_keras_object(
            config.pop("head"), custom_objects=custom_objects
        )
        return cls(base, head, **config)


def build_head(input_shape, extra_channels: int = 0, *, depth=HEAD_DEPTH, filters=HEAD_FILTERS):
    """The head: a U-Net on ``concat(x, x_hat[, tap means])`` with one sigmoid output."""
    h, w, c = input_shape
    return build_unet(
        input_shape=(h, w, 2 * c + extra_channels),
        depth=depth,
        filters=filters,
        dropout=0.0,
        num_outputs=1,
        name="head",
    )


def build_aesc_head(
    *,
    input_shape=(256, 256, 1),
    head_depth: int = HEAD_DEPTH,
    head_filters: int = HEAD_FILTERS,
    head_taps=None,
    head_weight: float = 1.0,
    head_loss: str = "focal",
    joint: bool = True,
    base: str | keras.Model = "aesc",
    **base_kwargs,
) -> AnomalyHeadModel:
    """An AESc (or another base) with a learned anomaly head.

    Args:
        input_shape: ``(H, W, C)`` with H, W multiples of ``2**depth`` of both nets.
        head_depth, head_filters: the head U-Net's size.
        head_taps: None, or the base's taps the head also reads (``"decoder"``, ...).
        head_weight, head_loss, joint: see :class:`AnomalyHeadModel`.
        base: ``"aesc"`` (default), another builder's name, or a built model.
        **base_kwargs: the base builder's arguments (``depth``, ``filters``, ...;
            ``upscale`` must stay 1).

    Returns:
        An :class:`AnomalyHeadModel` named ``"aesc_head"`` for the default base.

    Raises:
        ValueError: a bad argument, e.g. ``upscale`` other than 1.
    """
    if base_kwargs.get("upscale", 1) != 1:
        raise ValueError(
            "The anomaly head compares the input with its reconstruction, so the base must "
            f"keep the input's size (upscale=1). Received: upscale={base_kwargs['upscale']!r}"
        )
    if isinstance(base, str):
        if base not in _BASES:
            raise ValueError(f"Expected `base` in {sorted(_BASES)}. Received: base={base!r}")
        base_model = _BASES[base](input_shape=input_shape, **base_kwargs)
    else:
        base_model = base
    taps = [] if head_taps is None else select_layers(base_model, head_taps)
    head = build_head(tuple(input_shape), len(taps), depth=head_depth, filters=head_filters)
    return AnomalyHeadModel(
        base_model,
        head,
        head_taps=head_taps,
        head_weight=head_weight,
        head_loss=head_loss,
        joint=joint,
        name=f"{base_model.name}_head",
    )
