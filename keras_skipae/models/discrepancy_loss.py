"""The paper's optional discrepancy training term, as a registered ``keras.Model``."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_skipae.models.taps import select_layers, tap_model
from keras_skipae.ops.stats import channel_mean, cosine_similarity


@keras.saving.register_keras_serializable(package="keras_skipae")
class DiscrepancyLossModel(keras.Model):
    """Trains a model with an extra term that rewards clean/corrupted discrepancy.

    The ESANN paper closes by proposing an "explicit optimisation constraint"
    that makes the decoder's representations of a clean image and of its
    corrupted version differ. This wrapper adds to the reconstruction loss

        ``weight * mean_{i in layers} mean_pairs cos(mu_i(x_clean), mu_i(x_corrupted))``

    (minimising a cosine similarity = rewarding discrepancy), where the
    training pairs are ``(x_corrupted, x_clean)`` as ``fit`` receives them
    (input, target). One training-mode forward pass of the taps on
    ``concat([x_corrupted, x_clean])`` gives both the reconstruction (of the
    corrupted half, which the compiled loss scores as usual) and the
    activations; BatchNorm therefore sees clean and corrupted images in the
    same batch. Validation and ``predict`` use the wrapped model alone; the
    epoch logs get ``discrepancy_cosine`` (the term before weighting).

    It is off by default: nothing in keras_skipae wraps a model unless asked.
    Use it like the model it wraps (``train`` compiles and fits it; its
    ``.base`` is the plain model for export). Scoring and analysis unwrap it.

    Args:
        base: a keras_skipae model with taps.
        weight: the term's weight (>= 0; 0 trains exactly the reconstruction loss,
            at the cost of the clean half's forward pass).
        layers: the taps the term uses (default the decoder's).

    Example:
        >>> model = DiscrepancyLossModel(ks.build_aesc(input_shape=(64, 64, 1), depth=4))
        >>> model.compile(optimizer="adam", loss="mse")
        >>> model.fit(pairs, epochs=5)       # pairs: (corrupted, clean) batches
        >>> model.base.save("aesc.keras")
    """

    def __init__(self, base, weight: float = 0.1, layers="decoder", **kwargs):
        super().__init__(**{"name": f"{base.name}_discrepancy_loss", **kwargs})
        weight = float(weight)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"`weight` must be a number >= 0. Received: weight={weight!r}")
        self.base = base
        self.weight = weight
        self.layer_selection = layers if isinstance(layers, str) else list(layers)
        self.tap_layers = select_layers(base, layers)
        self._taps = tap_model(base, self.tap_layers + ["out"])
        self.discrepancy_tracker = keras.metrics.Mean(name="discrepancy_cosine")
        self.built = bool(base.built)

    def call(self, inputs, training=None):
        return self.base(inputs, training=training)

    @property
    def metrics(self):
        return super().metrics + [self.discrepancy_tracker]

    def discrepancy_term(self, activations, n) -> tf.Tensor:
        """Mean cosine similarity over the selected taps and the pairs."""
        sims = []
        for name in self.tap_layers:
            mu = channel_mean(activations[name])
            sims.append(tf.reduce_mean(cosine_similarity(mu[:n], mu[n:])))
        return tf.add_n(sims) / float(len(sims))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        n = tf.shape(x)[0]
        with tf.GradientTape() as tape:
            acts = self._taps(tf.concat([x, y], axis=0), training=True)
            y_pred = acts["out"][:n]
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            term = self.discrepancy_term(acts, n)
            total = loss + self.weight * term
            self._loss_tracker.update_state(total, sample_weight=n)
            scaled = self.optimizer.scale_loss(total) if self.optimizer is not None else total
        weights = self.trainable_weights
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        self.discrepancy_tracker.update_state(term)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {
            "base": keras.saving.serialize_keras_object(self.base),
            "weight": self.weight,
            "layers": self.layer_selection,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        base = keras.saving.deserialize_keras_object(
            config.pop("base"), custom_objects=custom_objects
        )
        return cls(base, **config)
