"""The callback that logs the optimizer's learning rate with each epoch's metrics."""

from __future__ import annotations

import keras


class _LogLearningRate(keras.callbacks.Callback):
    """Adds ``learning_rate`` (the optimizer's current rate) to each epoch's logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
