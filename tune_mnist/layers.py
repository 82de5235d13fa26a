"""Keras layers of our own, registered for .keras files (import this module before loading one).

`keras.models.load_model` finds a registered class only once the module defining it was imported:
`tune_mnist.checkpoint.load_model` does that; elsewhere, `import tune_mnist.layers` first.
"""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="tune_mnist")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization computed by TensorFlow's fused kernel (FusedBatchNormV3).

    Keras 3 normalizes with `moments` and `tf.nn.batch_normalization`: several passes over the
    activations forward and backward. The fused kernel (oneDNN on CPU) makes one each way. Same
    weights, configuration and function: the moving statistics are updated as Keras does (the
    biased batch variance, `momentum`), and `tests/test_model.py` holds outputs, statistics and
    gradients to Keras' layer within float32 round-off. A 2-D input is normalized as [N, 1, 1, C].
    What the kernel does not cover (other axes or ranks, masks, renorm, synchronized, another
    backend) falls back to Keras' own computation.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        # As Keras' layer: float32 arithmetic whatever the input's dtype.
        x = tf.reshape(tf.cast(inputs, tf.float32), [-1, 1, 1, channels])
        gamma = self.gamma.value if self.scale else tf.ones([channels])
        beta = self.beta.value if self.center else tf.zeros([channels])
        if training and self.trainable:
            y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=[], variance=[], epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=True,
            )  # fmt: skip
            # The kernel returns the unbiased variance; Keras averages the biased one.
            count = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * tf.maximum(count - 1.0, 0.0) / count
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1 - self.momentum)
            )
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=self.moving_mean.value,
                variance=self.moving_variance.value, epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=False,
            )  # fmt: skip
        return tf.cast(tf.reshape(y, tf.shape(inputs)), self.compute_dtype)

    def _fusable(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        return (
            keras.backend.backend() == "tensorflow"
            and rank in (2, 4)
            and self.axis in (-1, rank - 1)
            and inputs.shape[-1] is not None
            and mask is None
            # Keras 3.8 to 3.10 have neither option (getattr): they compute as without it.
            and not getattr(self, "renorm", False)
            and not getattr(self, "synchronized", False)
        )


def with_keras_layers(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with Keras' own BatchNormalization in place of ours, same weights.

    For the exported best models: a ``.keras`` file anyone can load without tune_mnist installed.
    The copy is compiled with the same loss, metrics and optimizer settings (a fresh optimizer:
    its slots are not carried over).
    """

    def clone(layer: keras.Layer) -> keras.Layer:
        kind = layers.BatchNormalization if type(layer) is FusedBatchNormalization else type(layer)
        return kind.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    if model.optimizer is not None:
        copy.compile(
            optimizer=type(model.optimizer).from_config(model.optimizer.get_config()),
            loss=model.loss,
            metrics=[keras.metrics.CategoricalAccuracy(name="acc")],
        )
    return copy
