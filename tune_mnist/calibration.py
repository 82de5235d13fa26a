"""Calibration of softmax outputs: expected calibration error and reliability tables.

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

__all__ = ["expected_calibration_error", "reliability_table"]


def _confidence_and_correct(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidence and whether the top class is the true class, per example."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (n, classes), got {probs.shape}")
    if probs.shape[0] == 0:
        raise ValueError("probs is empty: calibration needs at least one prediction")
    # Soft (MixUp) or one-hot label rows: the true class is the heaviest one.
    true_class = labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(np.int64)
    if true_class.shape != (probs.shape[0],):
        raise ValueError(
            f"labels must have shape ({probs.shape[0]},) or ({probs.shape[0]}, classes), got {labels.shape}"
        )
    return probs.max(axis=1), probs.argmax(axis=1) == true_class


def _bin_statistics(
    probs: np.ndarray, labels: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges, and per bin: example count, summed confidence, number correct."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    confidence, correct = _confidence_and_correct(probs, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are right-closed, (low, high], so confidence 1.0 lands in the last bin and 0 in the first.
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    return edges, count, confidence_sum, correct_sum


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = 15) -> float:
    """Expected calibration error over equal-width confidence bins on [0, 1].

    The sum over bins of (fraction of examples in the bin) * |accuracy - mean confidence|.
    ``labels`` are integer class ids, shape (n,), or label rows, shape (n, classes), whose
    argmax is taken as the true class.
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
