"""Smoke tests: each plot writes a non-empty PNG from the DataFrames the pipeline produces."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_mnist.metrics import reliability_table
from tune_mnist.comparison import paired_comparison
from tune_mnist.plots import plot_confusion, plot_forest, plot_learning_curves, plot_misclassified, plot_reliability

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.fixture
def trials_and_epochs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two architectures x three seeds x two arms; MixUp learns a little better."""
    rng = np.random.default_rng(0)
    trials, epochs = [], []
    for architecture, ceiling in (("num_conv=1 num_dense=0", 0.95), ("num_conv=2 num_dense=1", 0.98)):
        for seed in range(3):
            for mixup in (False, True):
                trial_id = f"{architecture}-{seed}-{mixup}"
                curve = ceiling + 0.005 * mixup - 0.3 * np.exp(-np.arange(1, 9) / 2) + rng.normal(0, 0.003, 8)
                epochs += [{"trial_id": trial_id, "epoch": e, "val_acc": a} for e, a in enumerate(curve, start=1)]
                trials.append({
                    "trial_id": trial_id, "status": "TERMINATED", "architecture": architecture,
                    "config/mixup": mixup, "config/seed": seed, "epochs_run": 8,
                    "best_epoch": int(curve.argmax()) + 1, "best_val_acc": curve.max(),
                    "best_val_mixed_acc": curve.max() - 0.1,
                })
    return pd.DataFrame(trials), pd.DataFrame(epochs)


def test_learning_curves(tmp_path, trials_and_epochs):
    trials, epochs = trials_and_epochs
    assert_png(plot_learning_curves(epochs, trials, tmp_path / "curves.png"))


def test_forest(tmp_path, trials_and_epochs):
    trials, _ = trials_and_epochs
    assert_png(plot_forest(paired_comparison(trials), tmp_path / "nested" / "forest.png"))


def test_forest_without_intervals(tmp_path, trials_and_epochs):
    trials, _ = trials_and_epochs
    one_seed = trials[(trials["config/seed"] == 0) & (trials["architecture"] == "num_conv=1 num_dense=0")]
    assert_png(plot_forest(paired_comparison(one_seed), tmp_path / "forest.png"))


def test_reliability(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    tables = {}
    for name, sharpness in (("plain", 6.0), ("MixUp", 2.0)):
        logits = rng.normal(size=(2000, 10)) + sharpness * np.eye(10)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        tables[name] = reliability_table(probs, labels)
    assert_png(plot_reliability(tables, tmp_path / "reliability.png"))


def test_confusion(tmp_path):
    rng = np.random.default_rng(0)
    true = rng.integers(0, 10, 500)
    predicted = np.where(rng.random(500) < 0.9, true, rng.integers(0, 10, 500))
    long = pd.DataFrame({"true": true, "predicted": predicted}).value_counts().rename("count").reset_index()
    assert_png(plot_confusion(long, tmp_path / "confusion.png"))


@pytest.mark.parametrize("shape", [(30, 28, 28), (7, 28, 28, 1), (4, 32, 32, 3)])
def test_misclassified(tmp_path, shape):
    rng = np.random.default_rng(0)
    images = rng.random(shape)
    true, predicted = rng.integers(0, 10, shape[0]), rng.integers(0, 10, shape[0])
    names = [f"class {i}" for i in range(10)]
    assert_png(plot_misclassified(images, true, predicted, tmp_path / "misclassified.png", names))
