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
  tapped activations, resized to the input resolution (``head_taps``);
  :meth:`AnomalyHeadModel.anomaly_map` gives its per-pixel anomaly probability:
  the ``"learned"`` map of :mod:`keras_skipae.scoring`.

Cheaper heads (``docs/models.md#cheaper-heads``):

* ``head_scale`` 2 or 4: the head reads its input average-pooled by that factor and
  its output is resized (bilinear) to the image;
* ``head_input="taps+residual"``: the head reads the base's tapped activations (all
  channels, at a coarse level) with the residual ``|x - x_hat|`` average-pooled to
  the same resolution, instead of ``concat(x, x_hat)``;
* ``freeze_base=True``: the base is a trained model that the head does not change;
  a training step runs the base in inference mode, outside the gradient tape, and
  trains the head alone (:func:`head_on` starts from a trained model).

Training (``fit`` on ``(x, (target, mask))`` pairs, what :func:`keras_skipae.train`
feeds it) minimises the compiled reconstruction loss plus ``head_weight`` times
the head's segmentation loss against the exact masks of the synthetic
anomalies. With ``joint=False`` the head does not back-propagate into the base
(two phases in one run: the base learns to repair, the head to segment). With
``freeze_base=True`` the loss is the head's segmentation loss alone.
Validation also reports ``good_alarm``: the head's mean top-1 % probability on the
*clean* targets, the false alarms the head would raise on good parts, and
``head_signal`` = ``head_loss + good_alarm``, the head's early-stopping signal:
:func:`keras_skipae.train` ends a head model's training with the weights of its best
``val_head_signal`` (``docs/decisions.md#head-early-stopping``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_skipae import losses as losses_lib
from keras_skipae.models.autoencoder import build_ae, build_aesc, build_unet
from keras_skipae.models.taps import LAYER_GROUPS, select_layers, tap_model
from keras_skipae.ops.stats import channel_mean

#: The head's defaults: a small U-Net (``docs/decisions.md#anomaly-head``).
HEAD_DEPTH = 4
HEAD_FILTERS = 16

#: The head's input resolutions: the image's divided by one of these.
HEAD_SCALES = (1, 2, 4)

#: The arguments of :func:`build_aesc_head` that shape the head (what :func:`head_on` takes).
HEAD_ARGUMENTS = (
    "head_depth",
    "head_filters",
    "head_taps",
    "head_weight",
    "head_loss",
    "joint",
    "head_scale",
    "head_input",
)

#: The head's validation measures (not reported by training steps).
VALIDATION_ONLY = ("good_alarm", "head_signal")

#: The head's early-stopping signal, as ``fit`` logs it on validation data.
HEAD_SIGNAL = "val_head_signal"

#: What the head reads: ``concat(x, x_hat[, tap means])``, or taps with the residual.
HEAD_INPUTS = ("concat", "taps+residual")

_BASES = {"aesc": build_aesc, "ae": build_ae, "unet": build_unet}


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"Expected `{name}` in {choices}. Received: {name}={value!r}")


def _select_taps(base, head_taps) -> list[str]:
    """``head_taps`` as tap names: a group (``"decoder"``), one tap name, or a list."""
    if isinstance(head_taps, str) and head_taps not in LAYER_GROUPS:
        head_taps = [head_taps]
    return select_layers(base, head_taps)


def _tap_factors(base, names) -> list[int]:
    """The factor by which each tap is smaller than the base's input (static shapes)."""
    size = base.input_shape[1]
    factors = []
    for name in names:
        tap = base.get_layer(name).output.shape[1]
        if size is None or tap is None or size % tap:
            raise ValueError(
                "head_input='taps+residual' needs a base with a fixed input size that its taps "
                f"divide. Received: input size {size}, tap {name!r} of size {tap}"
            )
        factors.append(size // tap)
    return factors


def _pool(x, factor: int):
    """Average pooling by ``factor`` (identity for 1)."""
    return x if factor == 1 else tf.nn.avg_pool2d(x, factor, factor, "VALID")


@keras.saving.register_keras_serializable(package="keras_skipae")
class AnomalyHeadModel(keras.Model):
    """A reconstruction model with a learned anomaly head.

    Args:
        base: the reconstruction model (one image input, one image output).
        head: a model mapping the head's input (see ``head_input``) at the image size
            divided by ``head_scale`` to ``[B, H / s, W / s, 1]`` probabilities.
        head_taps: None, or the base's taps the head also reads (a group such as
            ``"decoder"`` or a list of tap names): their channel means with
            ``head_input="concat"``, all their channels with ``"taps+residual"``.
        head_weight: weight of the head's loss in the total (> 0).
        head_loss: a segmentation loss name of :func:`keras_skipae.losses.get_loss`.
        joint: let the head's loss train the base too (else it is stopped at the
            reconstruction).
        head_scale: 1, 2 or 4: the head reads its input average-pooled by this factor
            and its output is resized (bilinear) to the image. None: 1 with
            ``head_input="concat"``, the finest tap's factor with ``"taps+residual"``.
        head_input: ``"concat"``: ``concat(x, x_hat[, tap means])``;
            ``"taps+residual"``: the taps (each average-pooled or resized bilinearly to
            the head's resolution) and ``|x - x_hat|`` average-pooled to it.
        freeze_base: the base is a trained model kept as it is: it is made
            non-trainable, runs in inference mode, and a training step trains the head
            alone on its own loss (no gradient through the base; ``joint`` and
            ``head_weight`` then do not apply).

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
        head_scale: int | None = None,
        head_input: str = "concat",
        freeze_base: bool = False,
        **kwargs,
    ):
        super().__init__(**{"name": f"{base.name}_head", **kwargs})
        if not float(head_weight) > 0:
            raise ValueError(f"Expected `head_weight` > 0. Received: head_weight={head_weight!r}")
        _check_choice("head_input", head_input, HEAD_INPUTS)
        if head_input == "taps+residual" and head_taps is None:
            raise ValueError(
                "head_input='taps+residual' reads the base's taps: name them with `head_taps` "
                "(e.g. 'dec1_out'). Received: head_taps=None"
            )
        self.base = base
        self.head = head
        self.head_taps = (
            head_taps if head_taps is None or isinstance(head_taps, str) else list(head_taps)
        )
        self.head_weight = float(head_weight)
        self.head_loss_name = head_loss
        self._seg_loss = losses_lib.get_loss(head_loss)
        self.joint = bool(joint)
        self.head_input = head_input
        self.freeze_base = bool(freeze_base)
        self._tap_names = [] if head_taps is None else _select_taps(base, head_taps)
        self._tap_factors = (
            _tap_factors(base, self._tap_names) if head_input == "taps+residual" else []
        )
        if head_scale is None:
            head_scale = min(self._tap_factors) if self._tap_factors else 1
        _check_choice("head_scale", head_scale, HEAD_SCALES)
        self.head_scale = int(head_scale)
        self._taps = tap_model(base, self._tap_names + ["out"]) if self._tap_names else None
        if self.freeze_base:
            base.trainable = False
        self.head_loss_tracker = keras.metrics.Mean(name="head_loss")
        self.good_alarm_tracker = keras.metrics.Mean(name="good_alarm")
        self.head_signal_tracker = keras.metrics.Mean(name="head_signal")
        self.built = bool(base.built and head.built)

    # ----------------------------------------------------------------- forward
    def call(self, inputs, training=None):
        return self.base(inputs, training=training)

    def _reconstruct(self, x, training):
        """``(x_hat, [tapped activations])``; the base in inference mode when frozen."""
        training = False if self.freeze_base else training
        if self._taps is None:
            return self.base(x, training=training), []
        acts = self._taps(x, training=training)
        return acts["out"], [acts[n] for n in self._tap_names]

    def _head_input(self, x, x_hat, taps):
        """The head's input at the image size divided by ``head_scale``."""
        x_hat = tf.cast(x_hat, x.dtype)
        if self.freeze_base or not self.joint:
            x_hat = tf.stop_gradient(x_hat)
            taps = [tf.stop_gradient(t) for t in taps]
        if self.head_input == "concat":
            size = tf.shape(x)[1:3]
            extra = [tf.image.resize(channel_mean(t)[..., None], size) for t in taps]
            return _pool(tf.concat([x, x_hat, *extra], axis=-1), self.head_scale)
        residual = _pool(tf.abs(x - x_hat), self.head_scale)
        feats = []
        for t, factor in zip(taps, self._tap_factors):
            t = tf.cast(t, x.dtype)
            if factor < self.head_scale:
                t = _pool(t, self.head_scale // factor)
            elif factor > self.head_scale:
                t = tf.image.resize(t, tf.shape(residual)[1:3], method="bilinear")
            feats.append(t)
        return tf.concat([*feats, residual], axis=-1)

    def _head(self, x, x_hat, taps, training):
        prob = self.head(self._head_input(x, x_hat, taps), training=training)
        if self.head_scale == 1:
            return prob
        return tf.image.resize(tf.cast(prob, tf.float32), tf.shape(x)[1:3], method="bilinear")

    def anomaly_map(self, inputs, training=False) -> tf.Tensor:
        """The head's per-pixel anomaly probability ``[B, H, W]`` (float32)."""
        x = tf.cast(inputs, tf.float32)
        x_hat, taps = self._reconstruct(x, training)
        return tf.cast(self._head(x, x_hat, taps, training), tf.float32)[..., 0]

    # ----------------------------------------------------------------- training
    @property
    def metrics(self):
        return super().metrics + [
            self.head_loss_tracker,
            self.good_alarm_tracker,
            self.head_signal_tracker,
        ]

    @staticmethod
    def _unpack(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(y, tuple | list) or len(y) != 2:
            raise ValueError(
                "AnomalyHeadModel trains on (input, (target, mask)) batches: "
                "keras_skipae.train feeds them for models with a head."
            )
        return x, y[0], y[1], sample_weight

    def _step_losses(self, x, target, mask, sample_weight, x_hat, taps, training):
        """``(total, seg)``: the head's loss alone when the base is frozen."""
        if self.freeze_base:
            seg = self._seg_loss(mask, self._head(x, x_hat, taps, training))
            return seg, seg
        rec = self.compute_loss(x=x, y=target, y_pred=x_hat, sample_weight=sample_weight)
        seg = self._seg_loss(mask, self._head(x, x_hat, taps, training))
        return rec + self.head_weight * seg, seg

    def train_step(self, data):
        x, target, mask, sample_weight = self._unpack(data)
        if self.freeze_base:  # the base's forward pass stays off the tape
            x_hat, taps = self._reconstruct(x, False)
        with tf.GradientTape() as tape:
            if not self.freeze_base:
                x_hat, taps = self._reconstruct(x, True)
            total, seg = self._step_losses(x, target, mask, sample_weight, x_hat, taps, True)
            self._loss_tracker.update_state(total, sample_weight=tf.shape(x)[0])
            scaled = self.optimizer.scale_loss(total) if self.optimizer is not None else total
        weights = self.trainable_weights
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        self.head_loss_tracker.update_state(seg)
        logs = self.compute_metrics(x, target, x_hat, sample_weight=sample_weight)
        for name in VALIDATION_ONLY:  # measured on clean validation images only
            logs.pop(name, None)
        return logs

    def test_step(self, data):
        x, target, mask, sample_weight = self._unpack(data)
        x_hat, taps = self._reconstruct(x, False)
        total, seg = self._step_losses(x, target, mask, sample_weight, x_hat, taps, False)
        self._loss_tracker.update_state(total, sample_weight=tf.shape(x)[0])
        self.head_loss_tracker.update_state(seg)
        good = tf.reshape(self.anomaly_map(target), [tf.shape(x)[0], -1])
        k = tf.maximum(1, tf.shape(good)[1] // 100)
        alarm = tf.reduce_mean(tf.math.top_k(good, k).values)
        self.good_alarm_tracker.update_state(alarm)
        # Both trackers average unweighted batch values: the mean of the sums is the sum
        # of the means, so val_head_signal == val_head_loss + val_good_alarm.
        self.head_signal_tracker.update_state(tf.cast(seg, tf.float32) + alarm)
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
            "head_scale": self.head_scale,
            "head_input": self.head_input,
            "freeze_base": self.freeze_base,
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


def build_head(
    input_shape,
    extra_channels: int = 0,
    *,
    depth=HEAD_DEPTH,
    filters=HEAD_FILTERS,
    channels: int | None = None,
):
    """The head: a U-Net with one sigmoid output.

    Args:
        input_shape: ``(h, w, C)``: the head's resolution and the image's channels.
        extra_channels: channels read besides ``concat(x, x_hat)`` (tap means).
        depth, filters: the U-Net's size.
        channels: the head's input channels, when not ``2 * C + extra_channels``.
    """
    h, w, c = input_shape
    return build_unet(
        input_shape=(h, w, 2 * c + extra_channels if channels is None else channels),
        depth=depth,
        filters=filters,
        dropout=0.0,
        num_outputs=1,
        name="head",
    )


def _head_shape(base_model, input_shape, taps, head_scale, head_input):
    """``(input size of the head, its channels)``, checking the arguments first."""
    _check_choice("head_input", head_input, HEAD_INPUTS)
    h, w, c = input_shape
    factors = _tap_factors(base_model, taps) if head_input == "taps+residual" else []
    if head_scale is None:
        head_scale = min(factors) if factors else 1
    _check_choice("head_scale", head_scale, HEAD_SCALES)
    for side in (h, w):
        if side is not None and side % head_scale:
            raise ValueError(
                f"The image size must be a multiple of `head_scale`. Received: "
                f"input_shape={tuple(input_shape)!r}, head_scale={head_scale!r}"
            )
    size = tuple(None if s is None else s // head_scale for s in (h, w))
    if head_input == "concat":
        return size, 2 * c + len(taps)
    widths = [base_model.get_layer(n).output.shape[-1] for n in taps]
    return size, sum(widths) + c


def build_aesc_head(
    *,
    input_shape=None,
    head_depth: int = HEAD_DEPTH,
    head_filters: int = HEAD_FILTERS,
    head_taps=None,
    head_weight: float = 1.0,
    head_loss: str = "focal",
    joint: bool = True,
    head_scale: int | None = None,
    head_input: str = "concat",
    freeze_base: bool = False,
    base: str | keras.Model = "aesc",
    **base_kwargs,
) -> AnomalyHeadModel:
    """An AESc (or another base) with a learned anomaly head.

    Args:
        input_shape: ``(H, W, C)`` with H, W multiples of ``2**depth`` of the base and of
            ``head_scale * 2**head_depth``. Default: the base's when ``base`` is a
            model, else ``(256, 256, 1)``.
        head_depth, head_filters: the head U-Net's size.
        head_taps: None, or the base's taps the head also reads (``"decoder"``,
            ``"dec1_out"``, ...).
        head_weight, head_loss, joint, head_scale, head_input, freeze_base: see
            :class:`AnomalyHeadModel`.
        base: ``"aesc"`` (default), another builder's name, or a built model (for a
            trained one see :func:`head_on`).
        **base_kwargs: the base builder's arguments (``depth``, ``filters``, ...;
            ``upscale`` must stay 1).

    Returns:
        An :class:`AnomalyHeadModel` named ``"aesc_head"`` for the default base.

    Raises:
        ValueError: a bad argument, e.g. ``upscale`` other than 1 or ``head_scale=3``.
    """
    if base_kwargs.get("upscale", 1) != 1:
        raise ValueError(
            "The anomaly head compares the input with its reconstruction, so the base must "
            f"keep the input's size (upscale=1). Received: upscale={base_kwargs['upscale']!r}"
        )
    if isinstance(base, str):
        if base not in _BASES:
            raise ValueError(f"Expected `base` in {sorted(_BASES)}. Received: base={base!r}")
        input_shape = (256, 256, 1) if input_shape is None else tuple(input_shape)
        base_model = _BASES[base](input_shape=input_shape, **base_kwargs)
    else:
        base_model = base
        input_shape = (
            tuple(base_model.input_shape[1:]) if input_shape is None else tuple(input_shape)
        )
    taps = [] if head_taps is None else _select_taps(base_model, head_taps)
    size, channels = _head_shape(base_model, input_shape, taps, head_scale, head_input)
    head = build_head(
        (*size, input_shape[-1]), depth=head_depth, filters=head_filters, channels=channels
    )
    return AnomalyHeadModel(
        base_model,
        head,
        head_taps=head_taps,
        head_weight=head_weight,
        head_loss=head_loss,
        joint=joint,
        head_scale=head_scale,
        head_input=head_input,
        freeze_base=freeze_base,
        name=f"{base_model.name}_head",
    )


def head_on(base_model: keras.Model, *, freeze_base: bool = True, **head_kwargs):
    """A head on a trained reconstruction model: the second phase of two-phase training.

    Args:
        base_model: the trained model (e.g. ``keras_skipae.training.load_run(run)[0]``);
            a model that already has a head is replaced by its base. It is made
            non-trainable when ``freeze_base``.
        freeze_base: keep the base as it is (default): the head alone trains.
        **head_kwargs: :func:`build_aesc_head`'s head arguments (``head_scale``,
            ``head_depth``, ``head_filters``, ``head_input``, ``head_taps``, ...).

    Returns:
        An :class:`AnomalyHeadModel` on ``base_model`` (to train with
        :func:`keras_skipae.train`, which feeds it the synthetic anomalies' masks).

    Raises:
        ValueError: ``base_model`` is not a keras model, or a bad head argument.

    Example:
        >>> base, _ = ks.training.load_run("runs/aesc")
        >>> model = head_on(base, head_scale=2)
        >>> ks.train(model, images, epochs=5)
    """
    if isinstance(base_model, AnomalyHeadModel):
        base_model = base_model.base
    if not isinstance(base_model, keras.Model):
        raise ValueError(
            "`base_model` must be a built keras model (a trained reconstruction model). "
            f"Received: base_model={type(base_model).__name__}"
        )
    bad = sorted(set(head_kwargs) - set(HEAD_ARGUMENTS))
    if bad:
        raise ValueError(
            f"head_on accepts the head's arguments {list(HEAD_ARGUMENTS)}. Received: {bad}"
        )
    return build_aesc_head(base=base_model, freeze_base=freeze_base, **head_kwargs)
