"""The metrics of a trial, their names, and the functions that compute them from predictions.

Every epoch a trial reports ``METRICS``; the accuracy, loss and calibration numbers come from the
functions here, so the trainable, the test evaluation and the figures compute them one way.

A model is calibrated when, among the predictions it makes with confidence ``c``, a fraction
``c`` is correct. MixUp is known to change calibration as much as accuracy, so the search
reports both.

>>> import numpy as np
>>> probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
>>> labels = np.array([0, 1, 0, 0])
>>> round(expected_calibration_error(probs, labels, bins=10), 6)
0.4
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_mixed_loss",
    "val_mixed_acc",
    "val_ece",
    "val_mixed_ece",
    "epoch_seconds",
    "images_per_second",
)
# What a model that learned nothing scores: ten classes in every MNIST-family dataset.
CHANCE_ACCURACY = 0.1
# The per-epoch metrics that describe the model (not the clock), summarized per trial.
MODEL_METRICS = tuple(m for m in METRICS if m.startswith(("train_", "val_")))


def cross_entropy(probs: np.ndarray, soft_labels: np.ndarray) -> float:
    """Mean cross-entropy of predictions against (one-hot or MixUp soft) label rows."""
    return float(-np.mean(np.sum(soft_labels * np.log(np.clip(probs, 1e-7, 1.0)), axis=1)))


def argmax_accuracy(probs: np.ndarray, soft_labels: np.ndarray) -> float:
    """Share of predictions equal to the label with the largest weight.

    For a MixUp soft label this is the class with the larger mixing weight.
    """
    return float(np.mean(np.argmax(probs, axis=1) == np.argmax(soft_labels, axis=1)))


def score(probs: np.ndarray, soft_labels: np.ndarray) -> dict[str, float]:
    """Loss, accuracy and ECE of softmax outputs against label rows."""
    return {
        "loss": cross_entropy(probs, soft_labels),
        "acc": argmax_accuracy(probs, soft_labels),
        "ece": expected_calibration_error(probs, soft_labels),
    }


def _confidence_and_correct(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidence and how correct the top class is, per example.

    With class ids or one-hot rows, correctness is 0 or 1. With MixUp soft labels it is the weight
    the label gives the predicted class, the chance that the prediction is right when the label is
    read as a distribution: a model that predicts the soft label itself is then calibrated.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (n, classes), got {probs.shape}")
    if probs.shape[0] == 0:
        raise ValueError("probs is empty: calibration needs at least one prediction")
    expected = ((probs.shape[0],), probs.shape)
    if labels.shape not in expected:
        raise ValueError(
            f"labels must have shape ({probs.shape[0]},) or {probs.shape}, got {labels.shape}"
        )
    predicted = probs.argmax(axis=1)
    if labels.ndim == 1:
        return probs.max(axis=1), (predicted == labels.astype(np.int64)).astype(np.float64)
    rows = np.arange(len(predicted))
    return probs.max(axis=1), labels[rows, predicted].astype(np.float64)


def _bin_statistics(
    probs: np.ndarray, labels: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges, and per bin: example count, summed confidence, number correct."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    confidence, correct = _confidence_and_correct(probs, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are right-closed, (low, high], so confidence 1.0 lands in the last bin and 0 in the
    # first.
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    return edges, count, confidence_sum, correct_sum


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = 15) -> float:
    """Expected calibration error over equal-width confidence bins on [0, 1].

    The sum over bins of (fraction of examples in the bin) * |accuracy - mean confidence|.
    ``labels`` are integer class ids, shape (n,), or label rows, shape (n, classes): one-hot, or
    MixUp's soft labels, where a prediction counts as correct by the weight of its class.
    """
    _, count, confidence_sum, correct_sum = _bin_statistics(probs, labels, bins)
    # |correct_sum - confidence_sum| / n equals the count-weighted gap; empty bins add 0.
    return float(np.abs(correct_sum - confidence_sum).sum() / count.sum())


def reliability_table(probs: np.ndarray, labels: np.ndarray, *, bins: int = 15) -> pd.DataFrame:
    """One row per confidence bin, for reliability diagrams.

    Columns: ``bin_low``, ``bin_high``, ``count``, ``confidence`` (mean top-class probability in
    the bin) and ``accuracy`` (fraction correct in the bin); the last two are NaN for empty bins.
    """
    edges, count, confidence_sum, correct_sum = _bin_statistics(probs, labels, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, confidence_sum / count, np.nan)
        accuracy = np.where(count > 0, correct_sum / count, np.nan)
    return pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "count": count.astype(np.int64),
            "confidence": confidence,
            "accuracy": accuracy,
        }
    )
