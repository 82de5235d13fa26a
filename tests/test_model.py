import numpy as np

from tune_mnist.model import build_model, compile_model, conv_filters
from tune_mnist.space import KEYS

DEFAULTS = {k: spec.default for k, spec in KEYS.items()}


def original(num_conv: int) -> dict:
    """The original study's setting: 5x5 convs of 24, 36, 48 ... filters, batch norm, no pooling."""
    return DEFAULTS | {"num_conv": num_conv, "num_dense": 0, "dense_units": 10, "dropout": 0.4}


def expected_params(num_conv: int) -> int:
    filters, count, channels = conv_filters(original(num_conv)), 0, 1
    for f in filters:
        count += 5 * 5 * channels * f + 4 * f  # conv kernel (no bias) + batch norm (4 per channel)
        channels = f
    return count + (28 * 28 * channels + 1) * 10  # softmax layer on the flattened maps


def test_original_study_parameter_counts():
    assert conv_filters(original(4)) == [24, 36, 48, 60]
    counts = {n: build_model(original(n)).count_params() for n in (2, 3, 4)}
    assert counts == {n: expected_params(n) for n in (2, 3, 4)}
    assert counts[2] == 304_690


def test_zero_conv_zero_dense_is_logistic_regression():
    model = build_model(DEFAULTS | {"num_conv": 0, "num_dense": 0})
    assert model.count_params() == 28 * 28 * 10 + 10


def test_model_outputs_probabilities_for_every_option():
    config = DEFAULTS | {
        "num_conv": 2, "pooling": "max", "num_dense": 2, "dense_units": 16, "augment": True,
        "input_noise": 0.1, "l2": 1e-4, "optimizer": "sgd", "batch_norm": False,
    }
    model = compile_model(config)
    probs = model.predict(np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32), verbose=0)
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
