"""The CNN of a configuration: conv blocks, hidden dense layers, a softmax over 10 classes.

`num_conv: 0` gives an MLP, and with `num_dense: 0` a multinomial logistic regression. Conv layer i
has `filters + i * filters_step` filters (24, 36, 48 ... as in the original study), `padding`
('same' by default; 'valid' for the pooling too), optional 2x2 max pooling after each conv block.
The feature maps are flattened, or averaged per map with `global_pooling: true`. Three block
styles, chosen by search-space keys:

- the project's (the defaults: `block_order: bn_relu`, `dropout_at: blocks`,
  `dense_batch_norm: true`, `final_batch_norm: false`):
  Conv2D (no bias) -> BatchNorm -> ReLU -> Dropout per conv block; Flatten;
  Dense (no bias) -> BatchNorm -> ReLU -> Dropout per hidden dense layer; Dense softmax.
- the original notebook's `create_model(num_conv, num_dense)` (`block_order: relu_bn`,
  `dropout_at: flatten`, `dense_batch_norm: false`, `final_batch_norm: true`; see
  search_spaces/seed_grid.yaml):
  Conv2D (with bias) -> ReLU -> BatchNorm per conv block; Flatten -> Dropout;
  Dense(activation='relu') -> Dropout per hidden dense layer; BatchNorm -> Dense softmax.
- keras.io's MixUp example (`batch_norm: false`, `padding: valid`, `dropout_at: features`,
  `global_pooling: true`; see search_spaces/keras_io_mixup.yaml): Conv2D -> ReLU -> MaxPool per
  conv block; Dropout once on the last block's maps; GlobalAveragePooling2D; Dense -> ReLU per
  hidden dense layer (no dropout); Dense softmax.

The keys combine freely; `batch_norm: false` removes every batch norm layer whatever the others say.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
from keras import layers

from tune_mnist.data import IMAGE_SHAPE, NUM_CLASSES
from tune_mnist.layers import FusedBatchNormalization
from tune_mnist.space import KEYS

# Keras' default (0.99) needs hundreds of steps before the moving statistics used at evaluation
# match the data; short searches on small subsets then validate a model that is not the one trained.
# The original notebook used Keras' default; the momentum changes no shape or parameter count.
BN_MOMENTUM = 0.9


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
        padding=config["padding"],
        use_bias=_use_bias(config, norm),
        kernel_regularizer=regularizer,
    )
    if config["block_order"] == "bn_relu":
        block = [conv, *_batch_norm(norm, bn_kernel), layers.ReLU()]
    else:
        block = [conv, layers.ReLU(), *_batch_norm(norm, bn_kernel)]
    if config["pooling"] == "max":
        block.append(layers.MaxPooling2D(2, padding=config["padding"]))
    if config["dropout_at"] == "blocks":
        block += _dropout(config)
    return block


def dense_block(
    config: dict[str, Any], regularizer: Any, bn_kernel: str = "fused"
) -> list[layers.Layer]:
    """A hidden dense layer, batch norm (`dense_batch_norm`) and ReLU in `block_order`, dropout
    (unless `dropout_at: features`)."""
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
    if config["dropout_at"] == "features":  # the one dropout is on the conv features
        return block
    return block + _dropout(config)  # after every hidden dense layer otherwise


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
    if config["dropout_at"] == "features":
        body += _dropout(config)
    body.append(layers.GlobalAveragePooling2D() if config["global_pooling"] else layers.Flatten())
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


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function> triggered tf.function
    retracing" warning. Each new model has its own train, test and predict functions, so a
    process that trains or scores one model after another (a reused worker's pairs, the models the
    test evaluation scores) retraces by design: expected, and nothing a user could act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing() -> None:
    """Keep TensorFlow's retracing warning (`_NoRetracingWarning`) out of this process's output;
    its other warnings stay. Idempotent."""
    tensorflow_log = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NoRetracingWarning) for f in tensorflow_log.filters):
        tensorflow_log.addFilter(_NoRetracingWarning())


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The model's class probabilities for ``images``, in batches of 500."""
    quiet_retracing()
    return model.predict(images, batch_size=500, verbose=0)
