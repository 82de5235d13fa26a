"""Metric functions (loss, accuracy, calibration) on predictions whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from tune_mnist.metrics import expected_calibration_error, reliability_table


def test_perfectly_calibrated_predictions_have_zero_error():
    # Confidence 0.8 and 4 of 5 right; confidence 1.0 and always right.
    probs = np.array([[0.8, 0.2]] * 5 + [[0.0, 1.0]] * 3)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_confident_and_always_wrong_has_error_near_one():
    probs = np.array([[0.999, 0.001, 0.0]] * 10)
    labels = np.full(10, 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.999)


def test_hand_computed_two_bin_case():
    # Bin (0.8, 0.9]: confidence 0.9, accuracy 1/2, gap 0.4, weight 1/2.
    # Bin (0.5, 0.6]: confidence 0.6, accuracy 2/2, gap 0.4, weight 1/2.  ECE = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.4)


def test_one_hot_labels_give_the_same_error_as_class_ids():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    int_labels = np.array([0, 1, 1, 1])
    expected = expected_calibration_error(probs, int_labels)
    assert expected_calibration_error(probs, np.eye(2)[int_labels]) == pytest.approx(expected)


def test_predicting_the_soft_label_itself_is_calibrated():
    # A mixed image 70/30: predicting exactly 0.7/0.3 is right 70% of the time under the soft label.
    soft = np.array([[0.7, 0.3], [0.3, 0.7], [0.9, 0.1]])
    assert expected_calibration_error(soft, soft) == pytest.approx(0.0, abs=1e-12)
    # Read by argmax alone, the same predictions would look 10-30 points under-confident.
    assert expected_calibration_error(soft, soft.argmax(axis=1)) > 0.1


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin_and_one_to_the_last():
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    table = reliability_table(probs, np.array([0, 0]), bins=2)
    assert table["count"].tolist() == [1, 1]


def test_reliability_table_has_one_row_per_bin_and_agrees_with_ece():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, size=500)
    table = reliability_table(probs, labels, bins=15)

    assert list(table.columns) == ["bin_low", "bin_high", "count", "confidence", "accuracy"]
    assert len(table) == 15 and table["count"].sum() == 500
    assert table["bin_low"].iloc[0] == 0.0 and table["bin_high"].iloc[-1] == 1.0
    assert table["count"].dtype == np.int64
    filled = table[table["count"] > 0]
    assert ((filled["confidence"] > filled["bin_low"]) | (filled["bin_low"] == 0)).all()
    assert (filled["confidence"] <= filled["bin_high"]).all()
    from_table = (filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / 500
    assert expected_calibration_error(probs, labels, bins=15) == pytest.approx(from_table)


def test_empty_bins_have_nan_confidence_and_accuracy():
    table = reliability_table(np.array([[0.95, 0.05]]), np.array([0]), bins=10)
    assert table["count"].tolist() == [0] * 9 + [1]
    assert table["accuracy"].iloc[:9].isna().all()
    pd.testing.assert_series_equal(
        table.iloc[-1][["confidence", "accuracy"]],
        pd.Series({"confidence": 0.95, "accuracy": 1.0}),
        check_names=False,
    )


@pytest.mark.parametrize(
    ("probs", "labels"),
    [
        (np.array([0.9, 0.1]), np.array([0])),
        (np.zeros((0, 3)), np.zeros(0, dtype=int)),
        (np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1, 1])),
    ],
    ids=["1-d probs", "empty", "label count mismatch"],
)
def test_bad_shapes_are_rejected_with_a_clear_error(probs, labels):
    with pytest.raises(ValueError):
        expected_calibration_error(probs, labels)
