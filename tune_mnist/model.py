"""The CNN of a configuration: conv blocks, hidden dense layers, a softmax over 10 classes.

`num_conv: 0` gives an MLP, and with `num_dense: 0` a multinomial logistic regression. Conv layer i
has `filters + i * filters_step` filters (24, 36, 48 ... as in the original study), 'same' padding,
optional 2x2 max pooling after each conv block. Two block styles, chosen by search-space keys:

- the project's (the defaults: `block_order: bn_relu`, `dropout_at: blocks`,
  `dense_batch_norm: true`, `final_batch_norm: false`):
  Conv2D (no bias) -> BatchNorm -> ReLU -> Dropout per conv block; Flatten;
  Dense (no bias) -> BatchNorm -> ReLU -> Dropout per hidden dense layer; Dense softmax.
- the original notebook's `create_model(num_conv, num_dense)` (`block_order: relu_bn`,
  `dropout_at: flatten`, `dense_batch_norm: false`, `final_batch_norm: true`; see
  search_spaces/seed_grid.yaml):
  Conv2D (with bias) -> ReLU -> BatchNorm per conv block; Flatten -> Dropout;
  Dense(activation='relu') -> Dropout per hidden dense layer; BatchNorm -> Dense softmax.

The keys combine freely; `batch_norm: false` removes every batch norm layer whatever the others say.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tune_mnist.data import IMAGE_SHAPE, NUM_CLASSES
from tune_mnist.space import KEYS

# Keras' default (0.99) needs hundreds of steps before the moving statistics used at evaluation
# match the data; short searches on small subsets then validate a model that is not the one trained.
# The original notebook used Keras' default; the momentum changes no shape or parameter count.
BN_MOMENTUM = 0.9


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
            and not self.renorm
            and not self.synchronized
        )


def conv_filters(config: dict[str, Any]) -> list[int]:
    return [config["filters"] + i * config["filters_step"] for i in range(config["num_conv"])]


# The batch norm computation `build_model` uses: TensorFlow's fused kernel (the default: faster,
# scripts/benchmark.py lever "batch norm") or Keras' own layer (the benchmark's comparison).
BATCH_NORM_LAYERS: dict[str, type[layers.BatchNormalization]] = {
    "fused": FusedBatchNormalization,
    "keras": layers.BatchNormalization,
}


def _batch_norm(on: bool, kernel: str) -> list[layers.Layer]:
    return [BATCH_NORM_LAYERS[kernel](momentum=BN_MOMENTUM)] if on else []


def _dropout(config: dict[str, Any]) -> list[layers.Layer]:
    return [layers.Dropout(config["dropout"])] if config["dropout"] > 0 else []


def _use_bias(config: dict[str, Any], norm: bool) -> bool:
    # A batch norm right after the layer makes its bias redundant (its offset replaces it); a batch
    # norm after the ReLU does not, so `relu_bn` layers keep their bias, as in the notebook.
    return not (norm and config["block_order"] == "bn_relu")


def conv_block(
    config: dict[str, Any], filters: int, regularizer: Any, bn_kernel: str = "fused"
) -> list[layers.Layer]:
    """Conv2D, batch norm and ReLU in `block_order`; pooling; dropout if `dropout_at: blocks`."""
    norm = config["batch_norm"]
    conv = layers.Conv2D(
        filters,
        config["kernel_size"],
        padding="same",
        use_bias=_use_bias(config, norm),
        kernel_regularizer=regularizer,
    )
    if config["block_order"] == "bn_relu":
        block = [conv, *_batch_norm(norm, bn_kernel), layers.ReLU()]
    else:
        block = [conv, layers.ReLU(), *_batch_norm(norm, bn_kernel)]
    if config["pooling"] == "max":
        block.append(layers.MaxPooling2D(2, padding="same"))
    if config["dropout_at"] == "blocks":
        block += _dropout(config)
    return block


def dense_block(
    config: dict[str, Any], regularizer: Any, bn_kernel: str = "fused"
) -> list[layers.Layer]:
    """A hidden dense layer, batch norm (`dense_batch_norm`) and ReLU in `block_order`, dropout."""
    norm = config["batch_norm"] and config["dense_batch_norm"]
    units = config["dense_units"]
    if config["block_order"] == "bn_relu":
        dense = layers.Dense(
            units, use_bias=_use_bias(config, norm), kernel_regularizer=regularizer
        )
        block = [dense, *_batch_norm(norm, bn_kernel), layers.ReLU()]
    else:
        # Written as the notebook writes it: the ReLU is the Dense layer's activation.
        dense = layers.Dense(units, activation="relu", kernel_regularizer=regularizer)
        block = [dense, *_batch_norm(norm, bn_kernel)]
    return block + _dropout(config)  # after every hidden dense layer, whatever `dropout_at` says


def build_model(config: dict[str, Any], *, bn_kernel: str = "fused") -> keras.Model:
    """An uncompiled Keras model for one configuration (input: float images in [0, 1]).

    `bn_kernel` picks the batch norm computation (BATCH_NORM_LAYERS); both give the same function.
    """
    # A trial recorded before a key existed (an old run resumed) was built with the key's default.
    config = {key: spec.default for key, spec in KEYS.items()} | config
    regularizer = keras.regularizers.L2(config["l2"]) if config["l2"] > 0 else None
    model = keras.Sequential(name="cnn")
    model.add(keras.Input(shape=(*IMAGE_SHAPE, 1)))
    if config["augment"]:
        # Preprocessing layers are active only in training, so evaluation sees clean images.
        model.add(layers.RandomTranslation(0.1, 0.1, fill_mode="constant"))
        model.add(layers.RandomRotation(0.05, fill_mode="constant"))
        model.add(layers.RandomZoom(0.1, fill_mode="constant"))
    if config["input_noise"] > 0:
        model.add(layers.GaussianNoise(config["input_noise"]))
    body = [
        layer
        for f in conv_filters(config)
        for layer in conv_block(config, f, regularizer, bn_kernel)
    ]
    body.append(layers.Flatten())
    if config["dropout_at"] == "flatten":
        body += _dropout(config)
    for _ in range(config["num_dense"]):
        body += dense_block(config, regularizer, bn_kernel)
    # As the notebook's description says, literally: the batch norm before the softmax normalizes
    # whatever precedes it, the flattened feature maps (28*28*36 = 28,224 features for 2 conv
    # layers) without hidden dense layers, else the last hidden dense layer's `dense_units` outputs.
    body += _batch_norm(config["batch_norm"] and config["final_batch_norm"], bn_kernel)
    body.append(layers.Dense(NUM_CLASSES, activation="softmax", kernel_regularizer=regularizer))
    for layer in body:
        model.add(layer)
    return model


def make_optimizer(config: dict[str, Any]) -> keras.optimizers.Optimizer:
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(config["learning_rate"], momentum=0.9)
    return keras.optimizers.Adam(config["learning_rate"])


def compile_model(config: dict[str, Any], *, bn_kernel: str = "fused") -> keras.Model:
    """Build and compile: cross-entropy on one-hot (or MixUp soft) labels, argmax accuracy."""
    model = build_model(config, bn_kernel=bn_kernel)
    model.compile(
        optimizer=make_optimizer(config),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="acc")],
    )
    return model
