import keras
import numpy as np
import pytest
from keras import layers

from tune_mnist.layers import FusedBatchNormalization
from tune_mnist.model import build_model, compile_model, conv_filters
from tune_mnist.space import KEYS, load_space

DEFAULTS = {k: spec.default for k, spec in KEYS.items()}
NOTEBOOK_PARAMS = {
    (2, 0): 403_438, (2, 1): 290_692, (2, 2): 290_802,
    (3, 0): 550_942, (3, 1): 400_564, (3, 2): 400_674,
    (4, 0): 708_874, (4, 1): 520_864, (4, 2): 520_974,
}  # fmt: skip


def notebook_model(num_conv: int, num_dense: int) -> keras.Sequential:
    """The original notebook's create_model(num_conv, num_dense), rebuilt in Keras 3."""
    model = keras.Sequential()
    model.add(keras.Input(shape=(28, 28, 1)))
    for i in range(num_conv):
        model.add(layers.Conv2D(24 + 12 * i, kernel_size=3, padding="same"))
        model.add(layers.ReLU())
        model.add(layers.BatchNormalization())
    model.add(layers.Flatten())
    model.add(layers.Dropout(0.4))
    for _ in range(num_dense):
        model.add(layers.Dense(10, activation="relu"))
        model.add(layers.Dropout(0.4))
    model.add(layers.BatchNormalization())
    model.add(layers.Dense(10, activation="softmax"))
    return model


def describe(model: keras.Model) -> list[tuple]:
    """Each layer's type, shape-defining settings and weight shapes (InputLayer ignored)."""
    settings = ("filters", "kernel_size", "padding", "strides", "use_bias", "units", "activation",
                "rate", "axis", "center", "scale", "epsilon")  # fmt: skip
    return [
        (
            # The fused batch norm is Keras' layer computed by another kernel (tested below).
            "BatchNormalization"
            if isinstance(layer, layers.BatchNormalization)
            else type(layer).__name__,
            {k: v for k, v in layer.get_config().items() if k in settings},
            [tuple(w.shape) for w in layer.weights],
        )
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]


@pytest.fixture(scope="module")
def seed_grid_models() -> dict[tuple[int, int], dict]:
    configs = load_space("seed_grid").grid_configs()
    return {(c["num_conv"], c["num_dense"]): c for c in configs}


def test_seed_grid_builds_the_notebooks_nine_models(seed_grid_models):
    assert sorted(seed_grid_models) == sorted(NOTEBOOK_PARAMS)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    for (num_conv, num_dense), config in seed_grid_models.items():
        # Keras' batch norm: the same computation as the notebook's, so round-off cannot hide a
        # difference (the fused kernel's equivalence is tested on its own below).
        ours = build_model(config, bn_kernel="keras")
        theirs = notebook_model(num_conv, num_dense)
        assert describe(ours) == describe(theirs), (num_conv, num_dense)
        assert ours.count_params() == theirs.count_params() == NOTEBOOK_PARAMS[num_conv, num_dense]
        # Same weights, same function (inference mode: dropout off, batch norm's moving statistics).
        weights = [w + np.float32(0.1) for w in theirs.get_weights()]  # non-trivial BN statistics
        theirs.set_weights(weights)
        ours.set_weights(weights)
        np.testing.assert_allclose(
            ours(images, training=False), theirs(images, training=False), rtol=1e-5, atol=1e-6
        )
    assert build_model(seed_grid_models[2, 0]).count_params() == 403_438


def test_notebook_parameter_count_by_hand():
    conv = (3 * 3 * 1 * 24 + 24) + 4 * 24 + (3 * 3 * 24 * 36 + 36) + 4 * 36
    assert conv + 4 * 28 * 28 * 36 + (28 * 28 * 36 * 10 + 10) == 403_438
    assert notebook_model(2, 0).count_params() == 403_438


def names(model: keras.Model) -> list[str]:
    return [
        "BatchNormalization" if isinstance(layer, FusedBatchNormalization) else type(layer).__name__
        for layer in model.layers
    ]


def test_default_block_style_is_unchanged():
    conv = ["Conv2D", "BatchNormalization", "ReLU", "Dropout"]
    assert names(build_model(DEFAULTS)) == [*conv, *conv, "Flatten", "Dense"]
    config = DEFAULTS | {"num_conv": 1, "num_dense": 2, "pooling": "max"}
    dense = ["Dense", "BatchNormalization", "ReLU", "Dropout"]
    assert names(build_model(config)) == [
        "Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D", "Dropout", "Flatten",
        *dense, *dense, "Dense",
    ]  # fmt: skip
    model = build_model(config)
    assert not model.layers[0].use_bias and not model.layers[6].use_bias  # batch norm's offset
    no_bn = build_model(config | {"batch_norm": False, "dropout": 0.0})
    assert names(no_bn) == [
        "Conv2D",
        "ReLU",
        "MaxPooling2D",
        "Flatten",
        *["Dense", "ReLU"] * 2,
        "Dense",
    ]


def test_config_without_the_block_style_keys_builds_the_default_style():
    new_keys = ("block_order", "dropout_at", "dense_batch_norm", "final_batch_norm")
    old_config = {k: v for k, v in DEFAULTS.items() if k not in new_keys} | {"num_dense": 1}
    assert describe(build_model(old_config)) == describe(build_model(DEFAULTS | {"num_dense": 1}))


def test_batch_norm_false_removes_every_batch_norm(seed_grid_models):
    config = seed_grid_models[2, 1] | {"batch_norm": False}
    model = build_model(config)
    assert not any(isinstance(layer, layers.BatchNormalization) for layer in model.layers)
    assert all(layer.use_bias for layer in model.layers if isinstance(layer, layers.Conv2D))


def project_style(num_conv: int) -> dict:
    """The default block style at the original study's sizes, with the default 5x5 kernels."""
    return DEFAULTS | {"num_conv": num_conv, "num_dense": 0, "dense_units": 10, "dropout": 0.4}


def expected_params(num_conv: int) -> int:
    filters, count, channels = conv_filters(project_style(num_conv)), 0, 1
    for f in filters:
        count += 5 * 5 * channels * f + 4 * f  # conv kernel (no bias) + batch norm (4 per channel)
        channels = f
    return count + (28 * 28 * channels + 1) * 10  # softmax layer on the flattened maps


def test_default_style_parameter_counts():
    assert conv_filters(project_style(4)) == [24, 36, 48, 60]
    counts = {n: build_model(project_style(n)).count_params() for n in (2, 3, 4)}
    assert counts == {n: expected_params(n) for n in (2, 3, 4)}
    assert counts[2] == 304_690


def test_zero_conv_zero_dense_is_logistic_regression():
    model = build_model(DEFAULTS | {"num_conv": 0, "num_dense": 0})
    assert model.count_params() == 28 * 28 * 10 + 10


def test_model_outputs_probabilities_for_every_option():
    config = DEFAULTS | {
        "num_conv": 2, "pooling": "max", "num_dense": 2, "dense_units": 16, "augment": True,
        "input_noise": 0.1, "l2": 1e-4, "optimizer": "sgd", "batch_norm": False,
    }  # fmt: skip
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    for style in ({}, {"block_order": "relu_bn", "dropout_at": "flatten", "batch_norm": True,
                       "dense_batch_norm": True, "final_batch_norm": True}):  # fmt: skip
        probs = compile_model(config | style).predict(images, verbose=0)
        assert probs.shape == (4, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


# Float32 round-off of two summation orders: within 1e-4 of each quantity's largest magnitude
# (a gradient with respect to gamma is a sum with cancellations, so not relative per element).
RTOL = 1e-4


def assert_close(have: np.ndarray, want: np.ndarray, name: str = "") -> None:
    np.testing.assert_allclose(have, want, rtol=RTOL, atol=RTOL * np.abs(want).max(), err_msg=name)


def bn_pair(shape: tuple[int, ...]) -> tuple[layers.Layer, layers.Layer]:
    """Keras' batch norm and the fused one, built with the same non-trivial weights."""
    rng = np.random.default_rng(1)
    channels = shape[-1]
    weights = [
        rng.normal(1, 0.2, channels), rng.normal(0, 0.2, channels),  # gamma, beta
        rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels),  # moving mean, variance
    ]  # fmt: skip
    keras_bn, fused_bn = (
        cls(momentum=0.9) for cls in (layers.BatchNormalization, FusedBatchNormalization)
    )
    for layer in (keras_bn, fused_bn):
        layer.build(shape)
        layer.set_weights([w.astype(np.float32) for w in weights])
    return keras_bn, fused_bn


def outputs_and_gradients(layer: layers.Layer, x: np.ndarray, training: bool) -> list[np.ndarray]:
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.sin(y))  # a gradient that differs per element
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [np.asarray(y), *(np.asarray(g) for g in grads), *layer.get_weights()[2:]]


@pytest.mark.parametrize("shape", [(16, 6, 6, 5), (32, 7)])  # conv maps; a dense layer's output
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_equals_keras_batch_norm(shape, training):
    """Outputs, gradients (input, gamma, beta) and the moving statistics after the step."""
    x = np.random.default_rng(2).normal(3, 2, shape).astype(np.float32)
    keras_bn, fused_bn = bn_pair(shape)
    expected = outputs_and_gradients(keras_bn, x, training)
    got = outputs_and_gradients(fused_bn, x, training)
    names = ["output", "d/dx", "d/dgamma", "d/dbeta", "moving_mean", "moving_variance"]
    for name, want, have in zip(names, expected, got, strict=True):
        assert_close(have, want, name)
    if training:  # the step moved the statistics (so their equality above means something)
        assert not np.allclose(got[4], bn_pair(shape)[0].get_weights()[2])


def test_models_with_either_batch_norm_train_alike(seed_grid_models):
    """One SGD step of the notebook's model (dropout off): every weight moves alike, within 5% of
    its largest update (one run of the minimum versions, TensorFlow 2.16.1, had one weight of 7,776
    at 2.1%: oneDNN's reductions round differently from run to run). Looser than one layer:
    oneDNN's fused kernel (TensorFlow's default on x86) rounds more than Keras' float32 layer, and
    three batch norms in training mode compound it: measured against a float64 model, ~1% of the
    largest conv kernel update against ~1e-5 for Keras' layer (TensorFlow's own fused kernel,
    TF_ENABLE_ONEDNN_OPTS=0, ~1e-5 too). Both arms of a pair use the same kernel. (Not Adam: its
    first step moves every weight by about +-learning_rate, the sign of a gradient that may be
    round-off.)"""
    config = seed_grid_models[2, 1] | {"dropout": 0.0, "optimizer": "sgd", "learning_rate": 0.1}
    images = np.random.default_rng(3).random((32, 28, 28, 1), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[np.arange(32) % 10]
    keras_model = compile_model(config, bn_kernel="keras")
    fused_model = compile_model(config)
    assert any(isinstance(layer, FusedBatchNormalization) for layer in fused_model.layers)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in keras_model.layers)
    before = keras_model.get_weights()
    fused_model.set_weights(before)
    for model in (keras_model, fused_model):
        model.train_on_batch(images, labels)
    after = zip(before, keras_model.get_weights(), fused_model.get_weights(), strict=True)
    for start, want, have in after:
        largest_update = np.abs(want - start).max()
        np.testing.assert_allclose(have, want, rtol=0, atol=5e-2 * largest_update + 1e-6)


def test_fused_batch_norm_saves_and_loads_in_safe_mode(tmp_path, seed_grid_models):
    """A .keras file (a checkpoint) keeps the fused layer; one saved with Keras' layer (before the
    fused one was the default) loads as Keras' layer, which computes the same function."""
    images = np.random.default_rng(4).random((4, 28, 28, 1), dtype=np.float32)
    for kernel, cls in (("fused", FusedBatchNormalization), ("keras", layers.BatchNormalization)):
        model = build_model(seed_grid_models[2, 0], bn_kernel=kernel)
        model.save(tmp_path / f"{kernel}.keras")
        loaded = keras.models.load_model(tmp_path / f"{kernel}.keras", safe_mode=True)
        assert {type(layer) for layer in loaded.layers if "batch_norm" in layer.name} == {cls}
        np.testing.assert_allclose(loaded(images), model(images), rtol=1e-6)


def keras_io_mixup_model() -> keras.Sequential:
    """keras.io's MixUp example's get_training_model() (examples/vision/mixup), in Keras 3."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(16, (5, 5), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(32, (5, 5), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Dropout(0.2),
            layers.GlobalAvgPool2D(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def test_keras_io_mixup_space_builds_the_examples_model():
    """Rule: the built-in keras_io_mixup space is the example's model: its layers in its order
    (each ReLU a layer of its own here), 18,762 parameters, and the same function with the same
    weights; trained as the example is (Adam 1e-3, batch 64, MixUp alpha 0.2)."""
    space = load_space("keras_io_mixup")
    config = space.grid_configs()[0]
    ours, theirs = build_model(config), keras_io_mixup_model()
    assert names(ours) == [
        "Conv2D", "ReLU", "MaxPooling2D", "Conv2D", "ReLU", "MaxPooling2D", "Dropout",
        "GlobalAveragePooling2D", "Dense", "ReLU", "Dense",
    ]  # fmt: skip
    assert [layer.output.shape for layer in ours.layers if not isinstance(layer, layers.ReLU)] == [
        layer.output.shape for layer in theirs.layers
    ]
    by_hand = (5 * 5 * 1 * 16 + 16) + (5 * 5 * 16 * 32 + 32) + (32 * 128 + 128) + (128 * 10 + 10)
    assert ours.count_params() == theirs.count_params() == by_hand == 18_762
    theirs.set_weights(ours.get_weights())
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(
        ours(images, training=False), theirs(images, training=False), rtol=1e-5, atol=1e-6
    )
    training = ("optimizer", "learning_rate", "batch_size", "mixup_alpha")
    assert [config[k] for k in training] == ["adam", 1e-3, 64, 0.2] and space.replicates == 3
