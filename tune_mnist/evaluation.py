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

The confirmation of the comparison: both arms of every compared pair (``comparison``'s pairs, at
their compared epoch, the last epoch both arms ran) are scored once on the test set, and MixUp −
plain in test accuracy, with its interval, becomes the ``confirmatory`` row of
``comparison.parquet`` (``confirmatory_row``):

- ``test_pairs.parquet``: one row per pair, arm and test image: ``pair_id, arm, trial_id,
  architecture, stratum, seed, compared_epoch, test_acc, test_index, predicted, true`` (the
  classes int8; ``test_acc`` repeats on every image of an arm).
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

from tune_mnist import comparison as comparisons
from tune_mnist import data as datasets
from tune_mnist.checkpoint import (
    CheckpointMissing,
    CheckpointUnreadable,
    compared_models,
    latest_checkpoint,
    load_model,
    model_file,
)
from tune_mnist.files import (
    CONFUSION_FILE,
    TEST_EVAL_FILE,
    TEST_PAIRS_FILE,
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
        try:
            model = load_model(directory, arm)
        except CheckpointUnreadable as e:  # damage results.collect's quick look cannot see
            missing.append(f"{arm}: {e}")
            continue
        probs = _predict(model, test_images)
        mixed_probs = _predict(model, mixed_images)
        rows.append(
            _test_row(arm, chosen[arm], epoch, probs, mixed_probs, arrays.y_test, mixed_labels)
        )
        confusions.append(_confusion(arm, arrays.y_test, probs.argmax(axis=1)))
        predictions.append(_predictions(arm, probs, arrays.y_test))
        _save_portable(model, run_dir / best_model_file(arm))
        atomic_write_dir(run_dir / best_savedmodel_dir(arm), partial(model.export, verbose=False))
    if not rows:
        raise EvaluationUnavailable("no test evaluation: " + "; ".join(missing))
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
    from tune_mnist.model import predict

    return np.asarray(predict(model, images), dtype=np.float64)


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


# ---- confirmation: both arms of every compared pair, scored once on the test set ----------------

CONFIRMATORY = "confirmatory"
CONFIRMATORY_METRIC = "test_acc"
CONFIRMATORY_METHOD = "two-level t (pairs, test images)"
ALL_PAIRS = "all"
PAIR_COLUMNS = {
    "pair_id": "string", "arm": "string", "trial_id": "string", "architecture": "string",
    "stratum": "string", "seed": "int64", "compared_epoch": "int64", "test_acc": "float64",
    "test_index": "int32", "predicted": "int8", "true": "int8",
}  # fmt: skip


@dataclass
class PairedScores:
    """Both arms of the compared pairs on the test set (``table``: see ``TEST_PAIRS_FILE`` in the
    module docstring; None when no pair could be scored), and the pairs that could not be."""

    table: pd.DataFrame | None
    missing: list[str]


def compared_pairs(trials: pd.DataFrame, epochs: pd.DataFrame, *, stratify: bool) -> pd.DataFrame:
    """The pairs the comparison uses, one row each (index ``pair_id``): ``trial_dir``,
    ``architecture``, ``seed``, ``compared_epoch``, and the ``stratum`` of the interval: the
    architecture with ``stratify`` (a grid: the mean over its cells), else one for every pair
    (configurations drawn at random: the mean over pairs)."""
    pairs = comparisons._pairs(trials, epochs)
    used = pairs[pairs["used"]].sort_index()
    folders = trials.drop_duplicates("pair_id").set_index("pair_id")["trial_dir"]
    return pd.DataFrame(
        {
            "trial_dir": folders.reindex(used.index).astype(str),
            "architecture": used["architecture"],
            "seed": used["seed"].astype(np.int64),
            "compared_epoch": used["compared_epoch"].astype(np.int64),
            "stratum": used["architecture"] if stratify else ALL_PAIRS,
        },
        index=used.index,
    )


def score_compared_pairs(run_dir: str | Path, pairs: pd.DataFrame) -> PairedScores:
    """Load both arms of each pair at its compared epoch and predict every test image once.

    A pair whose checkpoint no longer holds those models is named in ``missing``, not scored.
    """
    run_dir = Path(run_dir)
    found, missing = {}, []
    for pair_id, pair in pairs.iterrows():
        try:
            found[pair_id] = compared_models(run_dir / pair["trial_dir"], pair["compared_epoch"])
        except CheckpointMissing as e:
            missing.append(f"pair {pair_id}: {e}")
    if not found:
        return PairedScores(None, missing)
    arrays, _ = load_test_arrays(run_dir)
    test_images = datasets.scale_images(arrays.x_test)
    frames = []
    for pair_id, (directory, compared) in found.items():
        try:
            models = {arm: load_model(directory, arm, compared=compared) for arm in ARMS}
        except CheckpointUnreadable as e:  # damage results.collect's quick look cannot see
            missing.append(f"pair {pair_id}: {e}")
            continue
        for arm, model in models.items():
            predicted = _predict(model, test_images).argmax(axis=1)
            frames.append(_pair_rows(pair_id, arm, pairs.loc[pair_id], predicted, arrays.y_test))
    if not frames:
        return PairedScores(None, missing)
    table = pd.concat(frames, ignore_index=True).astype(PAIR_COLUMNS)
    return PairedScores(table, missing)


def _pair_rows(
    pair_id: str, arm: str, pair: pd.Series, predicted: np.ndarray, true: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pair_id": pair_id,
            "arm": arm,
            "trial_id": f"{pair_id}-{arm}",
            "architecture": pair["architecture"],
            "stratum": pair["stratum"],
            "seed": pair["seed"],
            "compared_epoch": pair["compared_epoch"],
            "test_acc": float(np.mean(predicted == true)),
            "test_index": np.arange(len(true)),
            "predicted": predicted,
            "true": true,
        }
    )


def save_paired_scores(run_dir: str | Path, scores: PairedScores) -> None:
    if scores.table is not None:
        write_parquet(Path(run_dir) / TEST_PAIRS_FILE, scores.table)


def load_paired_scores(run_dir: str | Path) -> pd.DataFrame | None:
    """The saved test scores of the compared pairs, or None when they were never made."""
    path = Path(run_dir) / TEST_PAIRS_FILE
    return pd.read_parquet(path) if path.is_file() else None


def pairs_current(table: pd.DataFrame | None, pairs: pd.DataFrame) -> bool:
    """Whether saved paired scores are of today's compared pairs, at the same epochs."""
    if table is None:
        return False
    saved = table.drop_duplicates("pair_id").set_index("pair_id")["compared_epoch"]
    return saved.sort_index().astype(np.int64).to_dict() == pairs["compared_epoch"].to_dict()


def confirmatory_row(
    table: pd.DataFrame | None, n_compared: int, primary: pd.Series, *, confidence: float = 0.95
) -> dict[str, Any]:
    """The ``confirmatory`` row of the comparison: MixUp − plain in ``test_acc`` over the scored
    pairs (``table``, see ``score_compared_pairs``) with its interval; ``n_compared`` pairs were
    compared on validation; ``primary`` (the primary row) gives the failure counts."""
    deltas, strata, accuracy = _test_deltas(table)
    if len(deltas):
        estimate = comparisons.paired_estimate(deltas, strata, confidence=confidence)
    else:
        estimate = dict.fromkeys(("diff", "ci_low", "ci_high", "df", "p_value"), np.nan)
        estimate["n_strata"] = 0
    # Each stratum weighs as the estimate weighs it, so that mixup − plain == diff.
    arms = accuracy[list(ARMS)].groupby(strata).mean().mean() if len(accuracy) else {}
    failures = {c: primary[c] for c in primary.index if c.startswith(("n_error", "n_diverged"))}
    return {
        "metric": CONFIRMATORY_METRIC, "role": CONFIRMATORY, "architecture": ALL_PAIRS,
        "n_pairs": len(deltas), "n_seeds": accuracy["seed"].nunique() if len(accuracy) else 0,
        "plain": arms.get("plain", np.nan), "mixup": arms.get("mixup", np.nan),
        "diff": estimate["diff"], "ci_low": estimate["ci_low"], "ci_high": estimate["ci_high"],
        "ci_method": CONFIRMATORY_METHOD, "replicate_ci_low": np.nan, "replicate_ci_high": np.nan,
        "ci_note": _confirmation_note(len(deltas), n_compared, estimate),
        "p_value": estimate["p_value"], "p_holm": estimate["p_value"],
        "arm_correlation": _arm_correlation(accuracy), **failures,
        "n_unfinished": primary.get("n_unfinished", 0),
        "best_plain": np.nan, "best_mixup": np.nan, "best_diff": np.nan,
        "df": estimate["df"], "n_strata": estimate["n_strata"],
    }  # fmt: skip


def _test_deltas(table: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """correct_mixup − correct_plain per (pair, test image), each pair's stratum, and per pair
    its seed and both arms' test accuracy; pairs lacking an arm are left out."""
    if table is None or not len(table):
        return np.zeros((0, 0)), np.array([], dtype=object), pd.DataFrame()
    correct = table.assign(correct=(table["predicted"] == table["true"]).astype(np.float64))
    by_arm = correct.pivot_table(
        index="pair_id", columns=["arm", "test_index"], values="correct", observed=True
    ).dropna()
    deltas = (by_arm["mixup"] - by_arm["plain"]).to_numpy(dtype=np.float64)
    pairs = table.drop_duplicates(["pair_id", "arm"]).pivot(
        index="pair_id", columns="arm", values="test_acc"
    )
    about = table.drop_duplicates("pair_id").set_index("pair_id")[["stratum", "seed"]]
    accuracy = pairs.join(about).loc[by_arm.index]
    return deltas, accuracy["stratum"].to_numpy(dtype=object), accuracy


def _arm_correlation(accuracy: pd.DataFrame) -> float:
    """Pearson correlation of the arms' test accuracy across pairs (NaN below 3 or no spread)."""
    if len(accuracy) < 3 or accuracy["plain"].nunique() < 2 or accuracy["mixup"].nunique() < 2:
        return np.nan
    return float(np.corrcoef(accuracy["plain"], accuracy["mixup"])[0, 1])


def _confirmation_note(scored: int, compared: int, estimate: dict[str, Any]) -> str:
    """Why the confirmatory interval is missing or covers fewer pairs than were compared."""
    notes = []
    if scored < compared:
        notes.append(
            f"{compared - scored} of {compared} compared pairs have no models of their compared "
            "epoch left (checkpoints missing) and are not scored on the test set"
        )
    if not np.isfinite(estimate["ci_low"]):
        notes.append("no test interval: fewer than 2 scored pairs, or no spread")
    return "; ".join(notes)


def with_confirmation(comparison: pd.DataFrame, row: dict[str, Any]) -> pd.DataFrame:
    """The comparison with ``row`` as its one confirmatory row (replacing an older one)."""
    kept = comparison[comparison["role"] != CONFIRMATORY]
    columns = [*comparison.columns, *(c for c in ("df", "n_strata") if c not in comparison)]
    added = pd.DataFrame([row]).reindex(columns=columns)
    shared = {c: t for c, t in comparison.dtypes.items() if c in added}
    table = pd.concat([kept, added.astype(shared)], ignore_index=True)
    table.attrs = dict(comparison.attrs)
    return table


def format_confirmation(comparison: pd.DataFrame) -> str | None:
    """The confirmatory row as one line for a terminal or the report; None when there is none."""
    rows = comparison[comparison["role"] == CONFIRMATORY]
    if not len(rows):
        return None
    row = rows.iloc[0]
    level = comparison.attrs.get("confidence", 0.95)
    if np.isfinite(row["ci_low"]):
        interval = f"[{level:.0%} {row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    else:
        interval = f"[no {level:.0%} interval]"
    p_value = f", p = {row['p_value']:.3g}" if np.isfinite(row["p_value"]) else ""
    diff = f"{row['diff']:+.4f}" if np.isfinite(row["diff"]) else "-"
    line = (
        f"Confirmation on the test set (both arms of {row['n_pairs']} compared pairs, scored "
        f"once): MixUp − plain {diff} {interval}{p_value}"
    )
    if (comparison["role"] == "descriptive").any():  # an until-decided run: the test set's
        # interval is fixed-n over however many rounds ran, like the validation's descriptive row.
        line += " (descriptive only: fixed-n over the rounds run)"
    return line + (f" ({row['ci_note']})" if row["ci_note"] else "")
