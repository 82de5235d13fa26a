"""Test-set evaluation: the final model of each arm, scored once on the held-out test set.

The search chooses everything on the validation split. Afterwards, per arm (``plain`` and
``mixup``), the finished arm with the highest ``val_acc`` at its last epoch is restored from its
pair's last checkpoint (the model as trained, no epoch picked on validation) and scored once on the
test set, which never chose anything:

    from tune_mnist.results import load
    r = load("tune_results/<run>")
    r.test_eval[["arm", "test_acc", "test_mixed_acc", "test_ece"]]

Files written next to the other Parquet tables (atomically) and read by ``results.load``:

- ``test_eval.parquet``: one row per arm, see ``_test_row``.
- ``confusion.parquet``: long format ``arm, true, predicted, count`` (every cell, zeros included).
- ``test_predictions.parquet``: one row per arm per test image: ``arm, test_index, true,
  predicted, confidence, prob_0 .. prob_9``; the plots are drawn from it without TensorFlow.
- ``best_plain.keras``, ``best_mixup.keras``: the two evaluated models.
- ``best_plain_savedmodel/``, ``best_mixup_savedmodel/``: the same models as TensorFlow
  SavedModels (a ``serve`` signature: images of shape (N, 28, 28, 1), float32 in [0, 1] ->
  class probabilities), for TensorFlow Serving.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

from tune_mnist import data as datasets
from tune_mnist.checkpoint import CheckpointMissing, latest_checkpoint, load_model, model_file
from tune_mnist.files import (
    CONFUSION_FILE,
    TEST_EVAL_FILE,
    TEST_PREDICTIONS_FILE,
    ManifestError,
    atomic_write,
    atomic_write_dir,
    best_model_file,
    best_savedmodel_dir,
    read_manifest,
    write_parquet,
)
from tune_mnist.metrics import argmax_accuracy, expected_calibration_error
from tune_mnist.space import ARMS

# The same alpha as the mixed validation set, so test_mixed_acc reads like val_mixed_acc; a fixed
# seed, so the mixed test set is the same for every run of a dataset.
TEST_MIXUP_ALPHA, TEST_MIXUP_SEED = 0.2, 0


class EvaluationUnavailable(Exception):
    """The test evaluation cannot be made; the message says what is missing and what to do."""


@dataclass
class Evaluation:
    """The three tables of a test evaluation, and what could not be evaluated (one line per arm)."""

    test_eval: pd.DataFrame
    confusion: pd.DataFrame
    predictions: pd.DataFrame
    missing: list[str]


def final_models(trials: pd.DataFrame) -> dict[str, pd.Series]:
    """Per arm, the finished arm with the highest ``last_val_acc`` (first ``trial_id`` on ties).

    Only ``TERMINATED`` arms count: a diverged, failed or unfinished arm was not chosen by the
    search. An arm without such a trial is absent from the result.
    """
    done = trials[(trials["status"] == "TERMINATED") & trials["last_val_acc"].notna()]
    chosen = {}
    for arm in ARMS:
        candidates = done[done["arm"] == arm].sort_values("trial_id")
        if len(candidates):
            chosen[arm] = candidates.loc[candidates["last_val_acc"].idxmax()]
    return chosen


def load_test_arrays(run_dir: Path) -> tuple[datasets.Arrays, list[str]]:
    """The run's dataset (its test part is used) and class names, as its manifest recorded them."""
    try:
        args = read_manifest(run_dir)["args"]
    except ManifestError as e:
        raise EvaluationUnavailable(f"{e}: cannot tell which dataset the run used") from None
    arrays = datasets.load_arrays(
        args["dataset"], args.get("data_dir"), seed=int(args.get("seed", 0))
    )
    return arrays, datasets.CLASS_NAMES[args["dataset"]]


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
    return pd.DataFrame(
        {
            "arm": arm,
            "true": np.repeat(np.arange(k), k),
            "predicted": np.tile(np.arange(k), k),
            "count": counts.astype(np.int64),
        }
    )


def _test_row(
    arm: str, trial: pd.Series, checkpoint_epoch: int, probs: np.ndarray, mixed_probs: np.ndarray,
    y_test: np.ndarray, mixed_labels: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """One ``test_eval`` row: which model, then its test metrics.

    Columns: ``arm, trial_id, architecture, seed, checkpoint_epoch, val_acc, test_acc,
    test_mixed_acc, test_ece, precision_0..9, recall_0..9``.
    """
    predicted = probs.argmax(axis=1)
    return {
        "arm": arm,
        "trial_id": trial["trial_id"],
        "architecture": trial["architecture"],
        "seed": int(trial["config/seed"]),
        "checkpoint_epoch": checkpoint_epoch,
        "val_acc": float(trial["last_val_acc"]),
        "test_acc": float(np.mean(predicted == y_test)),
        "test_mixed_acc": argmax_accuracy(mixed_probs, mixed_labels),
        "test_ece": expected_calibration_error(probs, y_test),
        **_per_class(y_test, predicted),
    }


def _predictions(arm: str, probs: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "arm": arm,
            "test_index": np.arange(len(y_test), dtype=np.int64),
            "true": y_test.astype(np.int64),
            "predicted": probs.argmax(axis=1).astype(np.int64),
            "confidence": probs.max(axis=1),
        }
    )
    return frame.join(pd.DataFrame(probs, columns=[f"prob_{c}" for c in range(probs.shape[1])]))


def _checkpoints(
    run_dir: Path, chosen: dict[str, pd.Series]
) -> tuple[dict[str, tuple[Path, int]], list[str]]:
    """Each chosen arm's last checkpoint and its epoch; what is missing, one line per arm."""
    missing = [f"{arm}: no finished (TERMINATED) arm" for arm in ARMS if arm not in chosen]
    found = {}
    for arm, trial in chosen.items():
        try:
            directory, epoch = latest_checkpoint(run_dir / trial["trial_dir"])
        except CheckpointMissing as e:
            missing.append(f"{arm}: {e}")
            continue
        if not (directory / model_file(arm)).is_file():
            missing.append(f"{arm}: {directory} holds no {model_file(arm)}")
        elif epoch != trial["epochs_run"]:
            # Tune keeps the latest checkpoint: a gap means a report without one was lost.
            missing.append(f"{arm}: last checkpoint is of epoch {epoch}, not {trial['epochs_run']}")
        else:
            found[arm] = (directory, epoch)
    return found, missing


def evaluate_final_models(run_dir: str | Path, trials: pd.DataFrame) -> Evaluation:
    """Restore each arm's chosen model from its last checkpoint and score it once on the test set.

    Also saves each evaluated model to ``RUN_DIR/best_<arm>.keras`` (with Keras' own layers: it
    loads without tune_mnist) and exports it as the
    SavedModel ``RUN_DIR/best_<arm>_savedmodel/``. An arm that cannot be
    evaluated (no finished trial, no checkpoint) is named in ``missing``; raises
    ``EvaluationUnavailable`` when neither arm can be.
    """
    run_dir = Path(run_dir)
    chosen = final_models(trials)
    checkpoints, missing = _checkpoints(run_dir, chosen)
    if not checkpoints:
        raise EvaluationUnavailable("no test evaluation: " + "; ".join(missing))
    arrays, _ = load_test_arrays(run_dir)
    plan = datasets.mix_plan(len(arrays.x_test), alpha=TEST_MIXUP_ALPHA, seed=TEST_MIXUP_SEED)
    mixed_images, mixed_labels = datasets.apply_mix(arrays.x_test, arrays.y_test, plan)
    test_images = datasets.scale_images(arrays.x_test)
    rows, confusions, predictions = [], [], []
    for arm, (directory, epoch) in checkpoints.items():
        model = load_model(directory, arm)
        probs = _predict(model, test_images)
        mixed_probs = _predict(model, mixed_images)
        rows.append(
            _test_row(arm, chosen[arm], epoch, probs, mixed_probs, arrays.y_test, mixed_labels)
        )
        confusions.append(_confusion(arm, arrays.y_test, probs.argmax(axis=1)))
        predictions.append(_predictions(arm, probs, arrays.y_test))
        _save_portable(model, run_dir / best_model_file(arm))
        atomic_write_dir(run_dir / best_savedmodel_dir(arm), partial(model.export, verbose=False))
    labels = {"arm": "string", "trial_id": "string", "architecture": "string"}
    return Evaluation(
        test_eval=pd.DataFrame(rows).astype(labels),
        confusion=pd.concat(confusions, ignore_index=True).astype({"arm": "string"}),
        predictions=pd.concat(predictions, ignore_index=True).astype({"arm": "string"}),
        missing=missing,
    )


def _save_portable(model: Any, path: Path) -> None:
    """Save the model with Keras' own layers only (tune_mnist.layers.with_keras_layers)."""
    from tune_mnist.layers import with_keras_layers

    def write(tmp: str) -> None:
        # Keras saves only to a name ending in .keras; atomic_write's temporary name does not.
        with tempfile.TemporaryDirectory() as folder:
            saved = Path(folder) / path.name
            with_keras_layers(model).save(saved)
            shutil.copyfile(saved, tmp)

    atomic_write(path, write)


def _predict(model: Any, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=500, verbose=0), dtype=np.float64)


def save_evaluation(run_dir: str | Path, evaluation: Evaluation) -> None:
    run_dir = Path(run_dir)
    write_parquet(run_dir / TEST_EVAL_FILE, evaluation.test_eval)
    write_parquet(run_dir / CONFUSION_FILE, evaluation.confusion)
    write_parquet(run_dir / TEST_PREDICTIONS_FILE, evaluation.predictions)


def load_evaluation(run_dir: str | Path) -> Evaluation | None:
    """The saved test evaluation of a run, or None when it was never made."""
    run_dir = Path(run_dir)
    files = [run_dir / f for f in (TEST_EVAL_FILE, CONFUSION_FILE, TEST_PREDICTIONS_FILE)]
    if not all(f.is_file() for f in files):
        return None
    test_eval, confusion, predictions = (pd.read_parquet(f) for f in files)
    evaluated = set(test_eval["arm"])
    missing = [f"{arm}: not evaluated" for arm in ARMS if arm not in evaluated]
    return Evaluation(test_eval, confusion, predictions, missing)


def is_current(evaluation: Evaluation, trials: pd.DataFrame) -> bool:
    """Whether a saved evaluation scored today's final models (same arms, same last epochs)."""
    chosen = {
        arm: (trial["trial_id"], int(trial["epochs_run"]))
        for arm, trial in final_models(trials).items()
    }
    saved = evaluation.test_eval
    pairs = zip(saved["trial_id"], saved["checkpoint_epoch"], strict=True)
    return dict(zip(saved["arm"], pairs, strict=True)) == chosen


def format_evaluation(evaluation: Evaluation | None) -> str:
    """The test evaluation as text for a terminal: one line per arm, and what is missing."""
    if evaluation is None:
        return "No test evaluation (no finished pair with a checkpoint)."
    columns = [
        "arm", "trial_id", "architecture", "checkpoint_epoch", "val_acc", "test_acc",
        "test_mixed_acc", "test_ece",
    ]  # fmt: skip
    text = evaluation.test_eval[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}")
    lines = ["Test set, final model of each arm with the best val_acc (evaluated once):", text]
    lines += [f"Not evaluated: {line}" for line in evaluation.missing]
    return "\n".join(lines)
