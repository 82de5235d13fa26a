"""The CNN of a configuration: conv blocks, dense layers, a softmax over 10 classes.

`num_conv: 0` gives an MLP, and with `num_dense: 0` a multinomial logistic regression. Conv layer i
has `filters + i * filters_step` filters (24, 36, 48 ... as in the original study), 'same' padding,
then batch norm (optional), ReLU, optional 2x2 max pooling and dropout.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tune_mnist.data import IMAGE_SHAPE, NUM_CLASSES

# Keras' default (0.99) needs hundreds of steps before the moving statistics used at evaluation
# match the data; short searches on small subsets then validate a model that is not the one trained.
BN_MOMENTUM = 0.9


def conv_filters(config: dict[str, Any]) -> list[int]:
    return [config["filters"] + i * config["filters_step"] for i in range(config["num_conv"])]


def build_model(config: dict[str, Any]) -> keras.Model:
    """An uncompiled Keras model for one configuration (input: float images in [0, 1])."""
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
    for filters in conv_filters(config):
        model.add(
            layers.Conv2D(
                filters,
                config["kernel_size"],
                padding="same",
                use_bias=not config["batch_norm"],  # batch norm's offset makes a bias redundant
                kernel_regularizer=regularizer,
            )
        )
        if config["batch_norm"]:
            model.add(layers.BatchNormalization(momentum=BN_MOMENTUM))
        model.add(layers.ReLU())
        if config["pooling"] == "max":
            model.add(layers.MaxPooling2D(2, padding="same"))
        if config["dropout"] > 0:
            model.add(layers.Dropout(config["dropout"]))
    model.add(layers.Flatten())
    for _ in range(config["num_dense"]):
        model.add(
            layers.Dense(
                config["dense_units"],
                use_bias=not config["batch_norm"],
                kernel_regularizer=regularizer,
            )
        )
        if config["batch_norm"]:
            model.add(layers.BatchNormalization(momentum=BN_MOMENTUM))
        model.add(layers.ReLU())
        if config["dropout"] > 0:
            model.add(layers.Dropout(config["dropout"]))
    model.add(layers.Dense(NUM_CLASSES, activation="softmax", kernel_regularizer=regularizer))
    return model


def make_optimizer(config: dict[str, Any]) -> keras.optimizers.Optimizer:
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(config["learning_rate"], momentum=0.9)
    return keras.optimizers.Adam(config["learning_rate"])


def compile_model(config: dict[str, Any]) -> keras.Model:
    """Build and compile: cross-entropy on one-hot (or MixUp soft) labels, argmax accuracy."""
    model = build_model(config)
    model.compile(
        optimizer=make_optimizer(config),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="acc")],
    )
    return model
