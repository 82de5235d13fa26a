"""Test-set evaluation: the best model of each arm, scored once on the held-out test set.

The search chooses everything on the validation split. Afterwards, the best finished trial of
each arm (highest ``best_val_acc``; ``plain`` and ``mixup``) is restored from the checkpoint of
its best validation epoch and scored once on the test set, which never chose anything:

    from tune_mnist.results import load
    r = load("tune_results/<run>")
    r.test_eval[["arm", "test_acc", "test_mixed_acc", "test_ece"]]

Files written next to the other Parquet tables (atomically) and read by ``results.load``:

- ``test_eval.parquet``: one row per arm, see ``_summary_row``.
- ``confusion.parquet``: long format ``arm, true, predicted, count`` (every cell, zeros included).
- ``test_predictions.parquet``: one row per arm per test image: ``arm, test_index, true,
  predicted, confidence, prob_0 .. prob_9``; the plots are drawn from it without TensorFlow.
- ``best_plain.keras``, ``best_mixup.keras``: the two evaluated models.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

from tune_mnist import data as datasets
from tune_mnist.files import write_parquet
from tune_mnist.checkpoint import MODEL_FILE, STATE_FILE, load_checkpoint
from tune_mnist.metrics import argmax_accuracy, expected_calibration_error

__all__ = [
    "ARMS", "Evaluation", "EvaluationUnavailable", "best_trials", "evaluate_run", "format_evaluation",
    "is_current", "load_evaluation", "run_evaluation", "save_evaluation",
]

ARMS = {"plain": False, "mixup": True}
TEST_EVAL_FILE = "test_eval.parquet"
CONFUSION_FILE = "confusion.parquet"
PREDICTIONS_FILE = "test_predictions.parquet"
MANIFEST_FILE = "run_manifest.json"
# The same alpha as the mixed validation set, so test_mixed_acc reads like val_mixed_acc.
TEST_MIXUP_ALPHA = 0.2


class EvaluationUnavailable(Exception):
    """The test evaluation cannot be made; the message says what is missing and what to do."""


@dataclass
class Evaluation:
    """The three tables of a test evaluation, and what could not be evaluated (one line per arm)."""

    test_eval: pd.DataFrame
    confusion: pd.DataFrame
    predictions: pd.DataFrame
    missing: list[str]


def best_trials(trials: pd.DataFrame) -> dict[str, pd.Series]:
    """The finished trial with the highest ``best_val_acc`` per arm (first ``trial_id`` on ties).

    Only ``TERMINATED`` trials count: a diverged, failed or unfinished trial was not chosen by
    the search. An arm without such a trial is absent from the result.
    """
    done = trials[(trials["status"] == "TERMINATED") & trials["best_val_acc"].notna()]
    chosen = {}
    for arm, mixup in ARMS.items():
        candidates = done[done["config/mixup"].astype(bool) == mixup].sort_values("trial_id")
        if len(candidates):
            chosen[arm] = candidates.loc[candidates["best_val_acc"].idxmax()]
    return chosen


def best_checkpoint(trial_dir: Path, val_acc_by_epoch: dict[int, float]) -> tuple[Path, int]:
    """The kept checkpoint with the highest ``val_acc`` (earliest epoch on ties), and its epoch.

    Tune keeps the best checkpoint by ``val_acc`` and the latest; runs made before that kept only
    the latest, so the evaluated epoch is reported (``checkpoint_epoch``) rather than assumed.
    """
    found: list[tuple[int, Path]] = []
    for directory in trial_dir.glob("checkpoint_*"):
        state_file = directory / STATE_FILE
        if (directory / MODEL_FILE).is_file() and state_file.is_file():
            found.append((int(json.loads(state_file.read_text())["epoch"]), directory))
    if not found:
        raise EvaluationUnavailable(f"{trial_dir}: no checkpoint with {MODEL_FILE} and {STATE_FILE}")
    epoch, directory = max(found, key=lambda item: (val_acc_by_epoch.get(item[0], -math.inf), -item[0]))
    return directory, epoch


def load_test_arrays(run_dir: Path) -> tuple[datasets.Arrays, int, list[str]]:
    """The run's dataset (test part), its seed and class names, as ``run_manifest.json`` recorded them."""
    manifest_file = run_dir / MANIFEST_FILE
    if not manifest_file.is_file():
        raise EvaluationUnavailable(f"{manifest_file} is missing: cannot tell which dataset the run used")
    args = json.loads(manifest_file.read_text())["args"]
    seed = int(args.get("seed", 0))
    arrays = datasets.load_arrays(args["dataset"], args.get("data_dir"), seed=seed)
    return arrays, seed, datasets.CLASS_NAMES[args["dataset"]]


def _predict(model: Any, images: np.ndarray) -> np.ndarray:
    """Softmax outputs for float32 images in [0, 1] of shape (n, 28, 28)."""
    return np.asarray(model.predict(images[..., None], batch_size=500, verbose=0), dtype=np.float64)


def _per_class(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Precision and recall of every class; NaN where a class is never predicted / never present."""
    row = {}
    for c in range(datasets.NUM_CLASSES):
        predicted_c, true_c = predicted == c, true == c
        hits = float(np.sum(predicted_c & true_c))
        row[f"precision_{c}"] = hits / predicted_c.sum() if predicted_c.any() else np.nan
        row[f"recall_{c}"] = hits / true_c.sum() if true_c.any() else np.nan
    return row


def _confusion(arm: str, true: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Every (true, predicted) cell with its count, zeros included, so sums need no reindexing."""
    k = datasets.NUM_CLASSES
    counts = np.bincount(true.astype(np.int64) * k + predicted, minlength=k * k)
    return pd.DataFrame({
        "arm": arm,
        "true": np.repeat(np.arange(k), k),
        "predicted": np.tile(np.arange(k), k),
        "count": counts.astype(np.int64),
    })


def _summary_row(
    arm: str, trial: pd.Series, checkpoint_epoch: int, probs: np.ndarray, mixed_probs: np.ndarray,
    y_test: np.ndarray, mixed_labels: np.ndarray,
) -> dict[str, Any]:
    """One ``test_eval`` row: which model, then its test metrics.

    Columns: ``arm, trial_id, architecture, seed, checkpoint_epoch, best_val_acc, test_acc,
    test_mixed_acc, test_ece, precision_0..9, recall_0..9``.
    """
    predicted = probs.argmax(axis=1)
    return {
        "arm": arm,
        "trial_id": trial["trial_id"],
        "architecture": trial["architecture"],
        "seed": int(trial["config/seed"]),
        "checkpoint_epoch": checkpoint_epoch,
        "best_val_acc": float(trial["best_val_acc"]),
        "test_acc": float(np.mean(predicted == y_test)),
        "test_mixed_acc": argmax_accuracy(mixed_probs, mixed_labels),
        "test_ece": expected_calibration_error(probs, y_test),
        **_per_class(y_test, predicted),
    }


def _predictions(arm: str, probs: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({
        "arm": arm,
        "test_index": np.arange(len(y_test), dtype=np.int64),
        "true": y_test.astype(np.int64),
        "predicted": probs.argmax(axis=1).astype(np.int64),
        "confidence": probs.max(axis=1),
    })
    return frame.join(pd.DataFrame(probs, columns=[f"prob_{c}" for c in range(probs.shape[1])]))


def evaluate_run(run_dir: str | Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> Evaluation:
    """Restore each arm's best trial at its best kept checkpoint and score it once on the test set.

    Also copies each evaluated model to ``RUN_DIR/best_<arm>.keras``. An arm that cannot be
    evaluated (no finished trial, no checkpoint) is named in ``missing``; raises
    ``EvaluationUnavailable`` when neither arm can be.
    """
    run_dir = Path(run_dir)
    chosen = best_trials(trials)
    missing = [f"{arm}: no finished (TERMINATED) trial" for arm in ARMS if arm not in chosen]
    checkpoints = {}
    for arm, trial in chosen.items():
        curve = epochs[epochs["trial_id"] == trial["trial_id"]]
        try:
            checkpoints[arm] = best_checkpoint(run_dir / trial["trial_dir"], dict(zip(curve["epoch"], curve["val_acc"])))
        except EvaluationUnavailable as e:
            missing.append(f"{arm}: {e}")
    if not checkpoints:
        raise EvaluationUnavailable("no test evaluation: " + "; ".join(missing))
    arrays, seed, _ = load_test_arrays(run_dir)
    test_images = arrays.x_test.astype(np.float32) / 255.0
    mixed_images, mixed_labels = datasets.apply_mix(
        arrays.x_test, arrays.y_test, datasets.mix_plan(len(arrays.x_test), alpha=TEST_MIXUP_ALPHA, seed=seed)
    )
    rows, confusions, predictions = [], [], []
    for arm, (directory, epoch) in checkpoints.items():
        model, _ = load_checkpoint(directory)
        probs = _predict(model, test_images)
        rows.append(_summary_row(arm, chosen[arm], epoch, probs, _predict(model, mixed_images), arrays.y_test, mixed_labels))
        confusions.append(_confusion(arm, arrays.y_test, probs.argmax(axis=1)))
        predictions.append(_predictions(arm, probs, arrays.y_test))
        shutil.copyfile(directory / MODEL_FILE, run_dir / f".best_{arm}.keras.tmp")
        os.replace(run_dir / f".best_{arm}.keras.tmp", run_dir / f"best_{arm}.keras")
    test_eval = pd.DataFrame(rows).astype({"arm": "string", "trial_id": "string", "architecture": "string"})
    return Evaluation(
        test_eval=test_eval,
        confusion=pd.concat(confusions, ignore_index=True).astype({"arm": "string"}),
        predictions=pd.concat(predictions, ignore_index=True).astype({"arm": "string"}),
        missing=missing,
    )


def save_evaluation(run_dir: str | Path, evaluation: Evaluation) -> None:
    run_dir = Path(run_dir)
    write_parquet(run_dir / TEST_EVAL_FILE, evaluation.test_eval)
    write_parquet(run_dir / CONFUSION_FILE, evaluation.confusion)
    write_parquet(run_dir / PREDICTIONS_FILE, evaluation.predictions)


def load_evaluation(run_dir: str | Path) -> Evaluation | None:
    """The saved test evaluation of a run, or None when it was never made."""
    run_dir = Path(run_dir)
    files = [run_dir / f for f in (TEST_EVAL_FILE, CONFUSION_FILE, PREDICTIONS_FILE)]
    if not all(f.is_file() for f in files):
        return None
    test_eval, confusion, predictions = (pd.read_parquet(f) for f in files)
    return Evaluation(test_eval, confusion, predictions, missing=[f"{a}: not evaluated" for a in ARMS if a not in set(test_eval["arm"])])


def is_current(evaluation: Evaluation, trials: pd.DataFrame) -> bool:
    """Whether a saved evaluation scored today's best trials (a resumed run may have new ones)."""
    chosen = {arm: trial["trial_id"] for arm, trial in best_trials(trials).items()}
    return dict(zip(evaluation.test_eval["arm"], evaluation.test_eval["trial_id"])) == chosen


def run_evaluation(run_dir: str | Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> Evaluation | None:
    """Evaluate and save, or say on stdout why there is no test evaluation (never raises for that)."""
    try:
        evaluation = evaluate_run(run_dir, trials, epochs)
    except EvaluationUnavailable as e:
        print(str(e), flush=True)
        return None
    save_evaluation(run_dir, evaluation)
    return evaluation


def format_evaluation(evaluation: Evaluation | None) -> str:
    """The test evaluation as text for a terminal: one line per arm, and what is missing."""
    if evaluation is None:
        return "No test evaluation (no finished trial with a checkpoint)."
    columns = ["arm", "trial_id", "architecture", "checkpoint_epoch", "best_val_acc", "test_acc", "test_mixed_acc", "test_ece"]
    text = evaluation.test_eval[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}")
    lines = ["Test set, best trial of each arm by val_acc (evaluated once):", text]
    lines += [f"Not evaluated: {line}" for line in evaluation.missing]
    return "\n".join(lines)
