"""Results: turn an experiment directory into Parquet tables a notebook can read.

    from tune_mnist.results import load
    r = load("tune_results/<run>")      # r.trials, r.epochs, r.comparison, r.test_eval
    r = load("s3://bucket/prefix/<run>")  # a run at a storage URI (see tune_mnist.storage)

`finish(run_dir)` is the one step after a search, shared by the end of `python -m tune_mnist.run`
and by `python -m tune_mnist.results RUN_DIR [--plot] [--report]`: collect the tables, write them,
compare the arms (protocol in `tune_mnist.comparison`), evaluate the final models on the test set
(once: a saved evaluation of the same models is reused), score both arms of every compared pair on
the test set (once; the comparison's confirmatory row), print the summary and write the
TensorBoard files (`tune_mnist.tensorboard_events`). Every file is written atomically (see
`tune_mnist.files`). A run at a storage URI is worked on in a local mirror whose new files are
uploaded (`tune_mnist.storage.local_mirror`).
`--mlflow URI` also logs the run to MLflow (`tune_mnist.mlflow_runs`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tune_mnist import evaluation as test_evaluation
from tune_mnist.checkpoint import (
    CheckpointMissing,
    CheckpointUnreadable,
    check_models,
    latest_checkpoint,
    load_predictions,
)
from tune_mnist.comparison import UNREADABLE, compare, format_comparison, with_sequence
from tune_mnist.dependence import analyse, format_dependence
from tune_mnist.files import (
    COMPARISON_FILE,
    DEPENDENCE_FILE,
    EPOCHS_FILE,
    IMPORTANCE_FILE,
    SEQUENTIAL_FILE,
    TRIALS_FILE,
    VAL_PREDICTIONS_FILE,
    ManifestError,
    read_manifest,
    write_parquet,
)
from tune_mnist.metrics import METRICS, MODEL_METRICS
from tune_mnist.mlflow_runs import TrackingError, check_reachable, experiment_name, log_search
from tune_mnist.replicates import marked_independent
from tune_mnist.resources import describe_error
from tune_mnist.space import ARMS, KEYS, Space, SpaceError, architecture_label, parse_space
from tune_mnist.storage import DEFAULT_STORAGE_PATH, is_uri, join, local_mirror, read_bytes

EPOCH_COLUMNS = ["trial_id", *METRICS, "time_total_s", "node_id", "hostname"]
PREDICTION_COLUMNS = ["trial_id", "epoch", "image", "predicted", "true"]
MISSING_SHOWN = 5  # pairs named when compared pairs cannot be scored on the test set
PLOT_METRICS = ("val_acc", "val_mixed_acc")  # the metrics the learning curves and forest can show
# Exit statuses of `python -m tune_mnist.results`, besides 0; 3 is the search's EXIT_PARTIAL too.
EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_INTERRUPTED = 2, 3, 130
TABLE_FILES = {
    "trials": TRIALS_FILE,
    "epochs": EPOCHS_FILE,
    "val_predictions": VAL_PREDICTIONS_FILE,
    "comparison": COMPARISON_FILE,
    "dependence": DEPENDENCE_FILE,
    "importance": IMPORTANCE_FILE,
}


class ExperimentError(Exception):
    """Tune's files of a run cannot be read; the message names the file and what is wrong."""


@dataclass
class Tables:
    """The tables of a run. The test tables are None until the test evaluation was made."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    val_predictions: pd.DataFrame
    comparison: pd.DataFrame
    # A random or TPE search's exploratory tables (tune_mnist.dependence); empty for other spaces.
    dependence: pd.DataFrame
    importance: pd.DataFrame
    test_eval: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None
    test_predictions: pd.DataFrame | None = None
    # Both arms of every compared pair on the test set (evaluation.score_compared_pairs).
    test_pairs: pd.DataFrame | None = None
    # Where the run is (a folder or a URI), as `load` or `tune_mnist.search` were given it.
    run_dir: str | None = None


@dataclass
class PairRecord:
    """What Tune left of one pair trial: its configuration, reports, status and predictions."""

    pair_id: str
    trial_dir: Path
    config: dict[str, Any]
    reports: list[tuple[int, dict[str, Any]]]  # (epoch, report), in epoch order
    status: str
    error: str | None
    predictions: dict[str, np.ndarray]


def _read_reports(result_file: Path) -> list[dict[str, Any]]:
    """The JSON lines of a trial's result.json; only a truncated last line (a kill) is skipped."""
    if not result_file.is_file():
        return []
    try:
        lines = result_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ExperimentError(f"{result_file}: unreadable ({type(e).__name__})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ExperimentError(f"{result_file}: line {number} is not JSON") from None
    return rows


def _trial_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("*/params.json"))


@dataclass(frozen=True)
class TuneTrial:
    """What Tune's experiment state says of one trial."""

    trial_id: str
    status: str


def _tune_trials(run_dir: Path) -> dict[str, TuneTrial]:
    """Each trial Tune knows of, by its folder's name, from Tune's newest experiment state (saved
    during the run: kept on a kill), read with Tune's public ExperimentAnalysis.

    Only the trial list is taken from it: the reports are read from result.json by
    `_read_reports`, because ExperimentAnalysis drops every report of a trial whose last line a
    kill cut (a JSON error for the whole file). A trial started after the last state was saved
    is not in it: its folder is read all the same, as PENDING.
    """
    # No experiment state yet (a run killed in its first seconds): every trial is PENDING. The
    # names are Tune's, experiment_state-<start time>.json, one per start of a resumed run.
    states = sorted(run_dir.glob("experiment_state-*.json"))
    if not states:
        return {}
    from ray.tune import ExperimentAnalysis

    # It warns of each trial whose result.json it cannot parse: `_read_reports` says it better.
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_log.level
    analysis_log.setLevel(logging.ERROR)
    try:
        # An absolute path: Tune reads a relative one as a URI without a scheme, and fails.
        trials = ExperimentAnalysis(str(run_dir.resolve())).trials
        return {Path(t.path).name: TuneTrial(t.trial_id, t.status) for t in trials}
    except Exception:  # a JSON, pickle or file error: Tune's loader raises any of them
        raise ExperimentError(
            f"{states[-1]}: Tune's experiment state is unreadable; the trial statuses are unknown"
        ) from None
    finally:
        analysis_log.setLevel(level)


def _error_text(trial_dir: Path) -> str | None:
    error_file = trial_dir / "error.txt"
    if not error_file.is_file():
        return None
    return describe_error(error_file.read_text(errors="replace"))[:500]


def _read_pair(trial_dir: Path, tune_trials: dict[str, TuneTrial]) -> PairRecord:
    """What is left of one pair; a file that cannot be read makes it UNREADABLE (with the reason),
    keeping whatever else could be read: the other pairs do not depend on it."""
    unreadable = []
    try:
        reports = _read_reports(trial_dir / "result.json")
    except ExperimentError as e:
        reports = []
        unreadable.append(str(e))
    try:
        config = json.loads((trial_dir / "params.json").read_text())
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8
        config = {}
        unreadable.append(f"{trial_dir / 'params.json'}: unreadable ({type(e).__name__})")
    try:
        directory = latest_checkpoint(trial_dir)[0]
        predictions = load_predictions(directory)
        check_models(directory)  # the test evaluation loads them later
    except CheckpointUnreadable as e:
        predictions = {}
        unreadable.append(str(e))
    except CheckpointMissing:
        predictions = {}
    known = tune_trials.get(trial_dir.name)
    if known is not None:
        pair_id = known.trial_id
    else:  # started after Tune last saved its state; one that never reported keeps its folder name
        pair_id = reports[-1]["trial_id"] if reports else trial_dir.name
    status = known.status if known is not None else "PENDING"
    return PairRecord(
        pair_id=pair_id,
        trial_dir=trial_dir,
        config=config,
        # A trial retried from a checkpoint reports its later epochs again: keep the last report.
        reports=sorted({int(r["epoch"]): r for r in reports if "epoch" in r}.items()),
        status=UNREADABLE if unreadable else status,
        error="; ".join(unreadable) if unreadable else _error_text(trial_dir),
        predictions=predictions,
    )


def _arm_epochs(pair: PairRecord, arm: str) -> list[dict[str, Any]]:
    """One arm's per-epoch rows (an arm that diverged has none after that epoch)."""
    rows = []
    for _, report in pair.reports:
        if arm in report:
            shared = {c: report.get(c) for c in ("time_total_s", "node_id", "hostname")}
            rows.append({**report[arm], **shared, "trial_id": f"{pair.pair_id}-{arm}"})
    return rows


def _arm_status(pair: PairRecord, epochs: list[dict[str, Any]]) -> str:
    if pair.status not in ("ERROR", UNREADABLE) and epochs and epochs[-1].get("diverged"):
        return "DIVERGED"
    return pair.status


def _trial_row(pair: PairRecord, arm: str, epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """One arm's row of trials.parquet: its configuration, best and last epoch, where it ran."""
    finite = [r for r in epochs if r.get("val_acc") is not None and math.isfinite(r["val_acc"])]
    best = max(finite, key=lambda r: r["val_acc"]) if finite else {}  # earliest on ties
    last = epochs[-1] if epochs else {}
    return {
        "trial_id": f"{pair.pair_id}-{arm}",
        "pair_id": pair.pair_id,
        "arm": arm,
        "status": _arm_status(pair, epochs),
        **{f"config/{k}": pair.config.get(k, spec.default) for k, spec in KEYS.items()},
        "config/mixup": ARMS[arm],
        "best_epoch": best.get("epoch"),
        **{f"best_{m}": best.get(m) for m in MODEL_METRICS},
        **{f"last_{m}": last.get(m) for m in MODEL_METRICS},
        "epochs_run": len(epochs),
        "wall_seconds": last.get("time_total_s"),
        "node_id": last.get("node_id"),
        "hostname": last.get("hostname"),
        "error": pair.error,
        "trial_dir": pair.trial_dir.name,
    }


def _prediction_rows(pair: PairRecord, arm: str) -> dict[str, Any] | None:
    """One arm's validation predictions as columns (`_typed_predictions` makes the table)."""
    if arm not in pair.predictions or not len(pair.predictions[arm]):
        return None
    predicted = pair.predictions[arm]
    epochs, images = predicted.shape
    return {
        "trial_id": f"{pair.pair_id}-{arm}",
        "epoch": np.repeat(np.arange(1, epochs + 1, dtype=np.int16), images),
        "image": np.tile(np.arange(images, dtype=np.int32), epochs),
        "predicted": predicted.reshape(-1).astype(np.int8),
        "true": np.tile(pair.predictions["true"].astype(np.int8), epochs),
    }


def collect(run_dir: str | Path) -> Tables:
    """Rebuild the tables from the experiment directory (works on interrupted runs too).

    One row per arm: a pair trial gives a `plain` and a `mixup` row sharing `pair_id`. An arm's
    status is TERMINATED (finished, or stopped with its pair by ASHA or `--patience`), DIVERGED
    (NaN or infinite training loss), ERROR (the pair failed after its retries), PENDING /
    RUNNING / PAUSED when the run was interrupted, or UNREADABLE: a file of the pair cannot be
    read (``error`` names it), so the pair is left out of the comparison; the epochs it reported
    are kept when they can be read. Raises ExperimentError when the run's own files cannot be read.
    """
    run_dir = Path(run_dir)
    tune_trials = _tune_trials(run_dir)
    pairs = [_read_pair(trial_dir, tune_trials) for trial_dir in _trial_dirs(run_dir)]
    configs = [p.config for p in pairs if p.config]  # an unreadable params.json tells nothing
    varying = [k for k in KEYS if len({json.dumps(c.get(k)) for c in configs}) > 1]
    trial_rows, epoch_rows, predictions = [], [], []
    for pair in pairs:
        for arm in ARMS:
            epochs = _arm_epochs(pair, arm)
            row = _trial_row(pair, arm, epochs)
            # A pair without its params.json: its configuration is unknown.
            label = architecture_label(pair.config, varying) if pair.config else "unknown"
            row["architecture"] = label
            trial_rows.append(row)
            epoch_rows += [{c: r.get(c) for c in EPOCH_COLUMNS} for r in epochs]
            predictions.append(_prediction_rows(pair, arm))
    trials = _typed_trials(pd.DataFrame(trial_rows, columns=_trial_columns()))
    epochs = _typed_epochs(pd.DataFrame(epoch_rows, columns=EPOCH_COLUMNS))
    val_predictions = _typed_predictions(predictions)
    space = _recorded_space(run_dir)
    state = sequential_state(run_dir)
    compared = trials if state is None else _decided_on(trials, state)
    predictions = val_predictions if len(val_predictions) else None
    comparison = compare(
        compared,
        epochs[epochs["trial_id"].isin(compared["trial_id"])],
        predictions,
        design=_design(run_dir, space),
        **_estimand(run_dir),
    )
    if state is not None:
        comparison = with_sequence(comparison, state)
    dependence, importance = analyse(trials, epochs, space)
    return Tables(trials, epochs, val_predictions, comparison, dependence, importance)


def _estimand(run_dir: Path) -> dict[str, Any]:
    """What the primary result estimates under the run's scheduler and searcher (its manifest),
    and ASHA's top rung, for `compare`; nothing for a run without a readable manifest."""
    try:
        manifest = read_manifest(run_dir)
        args, space = manifest["args"], parse_space(manifest["space"])
    except (ManifestError, SpaceError, KeyError, TypeError):
        return {}
    epochs = int(args.get("max_epochs", 0))
    if args.get("search_alg") == "tpe":
        what = "the mean over the configurations TPE chose (not over the space)"
    elif space.randoms:
        what = "the mean over pairs of configurations drawn at random from the space"
    else:
        what = "the mean over the grid's cells"
    if args.get("scheduler") == "asha":
        where = (
            "at each pair's compared epoch: an epoch mixture set by ASHA's stopping rule (the "
            f"'top rung' row: the pairs compared at epoch {epochs})"
        )
        return {"estimand": f"{what}, {where}", "top_epoch": epochs}
    if args.get("patience") is not None:
        return {"estimand": f"{what}, at each pair's compared epoch (set by --patience)"}
    return {"estimand": f"{what} at the last epoch ({epochs})"}


def sequential_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The confidence sequence of an until-decided run where it ended
    (``until_decided/sequential.json``); None for other runs, and before a first round ended."""
    try:
        return json.loads(read_bytes(join(run_dir, SEQUENTIAL_FILE)).decode())
    except FileNotFoundError:
        return None


def needed_pairs(trials: pd.DataFrame, run_dir: str | Path, pairs: int) -> tuple[pd.DataFrame, int]:
    """The trials and number of pairs a run needed: in a decided until-decided run, those of the
    rounds up to the decision (later rounds' pairs were stopped or never started, by design)."""
    state = sequential_state(run_dir)
    if state is None or state["state"] == "undecided":
        return trials, pairs
    rounds = int(state["rounds"])
    return _decided_on(trials, state), rounds * int(state["pairs_per_round"])


def _decided_on(trials: pd.DataFrame, state: dict[str, Any]) -> pd.DataFrame:
    """The trials of the rounds an until-decided run's sequence counted: not a later round's pairs
    that ended while the search was stopping."""
    if "pair_ids" in state:
        return trials[trials["pair_id"].isin(state["pair_ids"])]
    return trials[trials["config/seed"] < int(state["rounds"])]  # written before pair_ids


def _recorded_space(run_dir: Path) -> Space | None:
    """The run's search space from its manifest; None for a run without a readable one."""
    try:
        return parse_space(read_manifest(run_dir)["space"])
    except (ManifestError, SpaceError, KeyError):
        return None


def _design(run_dir: Path, space: Space | None) -> str:
    """How the run's pairs relate, for `compare`: 'grid' or 'random' (independent replicates of a
    space without or with random keys), or 'clusters' (a run whose manifest lacks the mark of
    independent replicates: pairs sharing a replicate number share their seed across cells)."""
    try:
        independent = marked_independent(read_manifest(run_dir))
    except ManifestError:
        independent = False
    if not independent:
        return "clusters"
    return "random" if space is not None and space.randoms else "grid"


def _trial_columns() -> list[str]:
    return [
        "trial_id", "pair_id", "arm", "status", "architecture",
        *(f"config/{k}" for k in KEYS), "config/mixup", "best_epoch",
        *(f"best_{m}" for m in MODEL_METRICS), *(f"last_{m}" for m in MODEL_METRICS),
        "epochs_run", "wall_seconds", "node_id", "hostname", "error", "trial_dir",
    ]  # fmt: skip


def _typed_trials(trials: pd.DataFrame) -> pd.DataFrame:
    kinds = {int: "int64", float: "float64", bool: "bool", str: "string"}
    for key, spec in KEYS.items():
        trials[f"config/{key}"] = trials[f"config/{key}"].astype(kinds[spec.kind])
    trials["config/mixup"] = trials["config/mixup"].astype("bool")
    labels = ["trial_id", "pair_id", "arm", "status", "architecture", "node_id", "hostname"]
    for column in [*labels, "error", "trial_dir"]:
        trials[column] = trials[column].astype("string")
    trials["best_epoch"] = trials["best_epoch"].astype("Int64")
    trials["epochs_run"] = trials["epochs_run"].astype("int64")
    numeric = [c for c in trials.columns if c.startswith(("best_", "last_")) and c != "best_epoch"]
    trials[numeric + ["wall_seconds"]] = trials[numeric + ["wall_seconds"]].astype("float64")
    return trials.sort_values(["pair_id", "arm"], ascending=[True, False], ignore_index=True)


def _typed_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    epochs["epoch"] = epochs["epoch"].astype("int64")
    for column in ("trial_id", "node_id", "hostname"):
        epochs[column] = epochs[column].astype("string")
    numeric = [c for c in EPOCH_COLUMNS if c not in ("trial_id", "epoch", "node_id", "hostname")]
    epochs[numeric] = epochs[numeric].astype("float64")
    return epochs.sort_values(["trial_id", "epoch"], ignore_index=True)


def _typed_predictions(arms: list[dict[str, Any] | None]) -> pd.DataFrame:
    """One table of every arm's predictions. Its columns are joined as arrays and the trial ids
    as categories: one small DataFrame per arm, concatenated, took 11 s of 36 for 10,000 pairs."""
    present = [a for a in arms if a is not None]
    if not present:
        empty = {"trial_id": "string", "epoch": "int16", "image": "int32"}
        return pd.DataFrame(columns=PREDICTION_COLUMNS).astype(
            {**empty, "predicted": "int8", "true": "int8"}
        )
    codes, names = pd.factorize(np.array([a["trial_id"] for a in present], dtype=object))
    lengths = [len(a["epoch"]) for a in present]
    ids = pd.Categorical.from_codes(np.repeat(codes, lengths), categories=names)
    columns = {c: np.concatenate([a[c] for a in present]) for c in PREDICTION_COLUMNS[1:]}
    table = pd.DataFrame({"trial_id": ids, **columns})
    return table.astype({"trial_id": "string"})


def save(run_dir: str | Path, tables: Tables) -> None:
    for name, file in TABLE_FILES.items():
        write_parquet(Path(run_dir) / file, getattr(tables, name))


def load(run_dir: str | Path) -> Tables:
    """The tables of a run (a folder or a storage URI): read from its Parquet files, or rebuilt
    if the run was interrupted.

    ``test_eval``, ``confusion`` and ``test_predictions`` are None (with a warning saying how to
    make them) when the run has no test evaluation yet; ``test_pairs`` is None until both arms of
    the compared pairs were scored on the test set. Nothing is written.
    """
    # At a URI, the top-level files (the Parquet tables) first: the trial folders, with a
    # checkpoint each, are downloaded only when the tables must be rebuilt from them.
    with local_mirror(run_dir, recursive=False, upload=False) as local:
        if _has_tables(local) or not is_uri(run_dir):
            tables = _load(local, shown=str(run_dir))
            tables.run_dir = str(run_dir)
            return tables
    with local_mirror(run_dir, upload=False) as local:
        tables = _load(local, shown=str(run_dir))
    tables.run_dir = str(run_dir)
    return tables


def _has_tables(run_dir: Path) -> bool:
    return all((run_dir / file).is_file() for file in TABLE_FILES.values())


def _load(run_dir: Path, *, shown: str) -> Tables:
    if _has_tables(run_dir):
        tables = Tables(**{name: pd.read_parquet(run_dir / f) for name, f in TABLE_FILES.items()})
    elif not _trial_dirs(run_dir):
        raise FileNotFoundError(f"{shown}: no trials found (is this a tune_mnist run directory?)")
    else:
        tables = collect(run_dir)
    tables.test_pairs = test_evaluation.load_paired_scores(run_dir)
    if tables.test_pairs is not None and not _has_tables(run_dir):  # rebuilt: no confirmatory row
        _confirm(tables, _compared_pairs(run_dir, tables))
    evaluation = test_evaluation.load_evaluation(run_dir)
    if evaluation is None:
        warnings.warn(
            f"{shown}: no test evaluation yet (r.test_eval is None); make it with "
            f"`python -m tune_mnist.results {shown}` (needs a finished pair with a checkpoint)",
            stacklevel=3,
        )
        return tables
    _attach(tables, evaluation)
    return tables


def _attach(tables: Tables, evaluation: test_evaluation.Evaluation | None) -> None:
    if evaluation is not None:
        tables.test_eval = evaluation.test_eval
        tables.confusion = evaluation.confusion
        tables.test_predictions = evaluation.predictions


def summary(tables: Tables) -> str:
    """The primary result first, then the counts of trials and what failed."""
    trials = tables.trials
    counts = trials.drop_duplicates("pair_id")["status"].value_counts().to_dict()
    lines = ["", "Pairs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    if trials["status"].eq("TERMINATED").any():
        lines += ["", format_comparison(tables.comparison)]
        confirmation = test_evaluation.format_confirmation(tables.comparison)
        lines += ["", confirmation] if confirmation else []
        searched = format_dependence(tables.dependence, tables.importance)
        lines += ["", searched] if searched else []
    else:
        lines.append("No pair finished.")
    for _, row in trials[trials["status"].isin(["ERROR", "DIVERGED", UNREADABLE])].iterrows():
        reason = row["error"] if pd.notna(row["error"]) else "loss became NaN"
        lines.append(f"{row['status']}: {row['trial_id']} ({row['architecture']}): {reason}")
    return "\n".join(lines)


def _test_evaluation(run_dir: Path, tables: Tables) -> test_evaluation.Evaluation | None:
    """The saved test evaluation if it scored today's final models, else a new one (saved).

    The test set is scored once per set of models: a resumed run whose chosen models did not
    change reuses the saved evaluation. Says on stdout why there is none when it cannot be made.
    """
    saved = test_evaluation.load_evaluation(run_dir)
    if saved is not None and test_evaluation.is_current(saved, tables.trials):
        return saved
    try:
        evaluation = test_evaluation.evaluate_final_models(run_dir, tables.trials)
    except test_evaluation.EvaluationUnavailable as e:
        print(str(e), flush=True)
        return None
    test_evaluation.save_evaluation(run_dir, evaluation)
    return evaluation


def _compared_pairs(run_dir: Path, tables: Tables) -> pd.DataFrame:
    """The compared pairs, stratified by architecture unless the space draws configurations at
    random (then every pair is its own configuration: one stratum)."""
    space = _recorded_space(run_dir)
    stratify = space is None or not space.randoms
    return test_evaluation.compared_pairs(tables.trials, tables.epochs, stratify=stratify)


def _paired_test_scores(run_dir: Path, tables: Tables, pairs: pd.DataFrame) -> None:
    """Both arms of every compared pair on the test set: the saved scores if they are of today's
    compared pairs, else new ones (saved); says on stdout which pairs could not be scored."""
    saved = test_evaluation.load_paired_scores(run_dir)
    if test_evaluation.pairs_current(saved, pairs):
        tables.test_pairs = saved
        return
    scores = test_evaluation.score_compared_pairs(run_dir, pairs)
    for line in scores.missing[:MISSING_SHOWN]:
        print(f"Not scored on the test set: {line}", flush=True)
    if len(scores.missing) > MISSING_SHOWN:
        print(f"Not scored on the test set: {len(scores.missing) - MISSING_SHOWN} more pairs")
    test_evaluation.save_paired_scores(run_dir, scores)
    tables.test_pairs = scores.table


def _confirm(tables: Tables, pairs: pd.DataFrame) -> None:
    """Put the confirmatory row (MixUp − plain on the test set) into the comparison."""
    comparison = tables.comparison
    primary = comparison[comparison["role"] == "primary"].iloc[0]
    confidence = comparison.attrs.get("confidence", 0.95)
    row = test_evaluation.confirmatory_row(
        tables.test_pairs, len(pairs), primary, confidence=confidence
    )
    tables.comparison = test_evaluation.with_confirmation(comparison, row)


def finish(
    run_dir: str | Path,
    *,
    plot: bool = False,
    report: bool = False,
    metric: str = "val_acc",
    shown: str | None = None,
) -> tuple[Tables, Any]:
    """After a search (finished or interrupted): tables, comparison, test evaluation, summary;
    with ``plot`` the PNG figures, with ``report`` ``report.html``. ``run_dir`` is a folder or a
    storage URI; ``shown`` names it in what is printed (default: ``run_dir``).

    Returns the tables (test tables attached) and the evaluation, or None when none could be made.
    """
    with local_mirror(run_dir) as local:
        shown = shown or str(run_dir)
        return _finish(local, plot=plot, report=report, metric=metric, shown=shown)


def _finish(
    run_dir: Path, *, plot: bool, report: bool, metric: str, shown: str
) -> tuple[Tables, Any]:
    """`finish` on a local folder; ``shown`` names the run in what is printed (its URI)."""
    tables = collect(run_dir)
    save(run_dir, tables)
    report_unreadable(tables.trials)
    evaluation = _test_evaluation(run_dir, tables)
    _attach(tables, evaluation)
    pairs = _compared_pairs(run_dir, tables)
    _paired_test_scores(run_dir, tables, pairs)
    _confirm(tables, pairs)
    write_parquet(run_dir / COMPARISON_FILE, tables.comparison)
    print(summary(tables), flush=True)
    print("\n" + test_evaluation.format_evaluation(evaluation), flush=True)
    _tensorboard(run_dir, tables, shown)
    if plot:
        _plot(run_dir, tables, metric, shown)
    if report:
        write_run_report(run_dir, tables, metric, shown=shown)
    return tables, evaluation


def report_unreadable(trials: pd.DataFrame) -> None:
    """One line on stderr per pair whose files cannot be read (status UNREADABLE)."""
    unreadable = trials[trials["status"] == UNREADABLE].drop_duplicates("pair_id")
    for row in unreadable.itertuples():
        print(
            f"error: pair {row.pair_id} ({row.trial_dir}) left out, a file cannot be read: "
            + " ".join(str(row.error).split()),
            file=sys.stderr,
            flush=True,
        )


def _test_images(run_dir: Path, tables: Tables) -> tuple[np.ndarray | None, list[str] | None]:
    """The run's test images and class names, for the misclassified images; None before a test
    evaluation."""
    if tables.test_eval is None:
        return None, None
    arrays, class_names = test_evaluation.load_test_arrays(run_dir)
    return arrays.x_test, class_names


def _tensorboard(run_dir: Path, tables: Tables, shown: str) -> None:
    from tune_mnist.tensorboard_events import TensorBoardMissing, write_event_files

    try:
        folder = write_event_files(run_dir, tables.trials, tables.epochs)
    except TensorBoardMissing as e:
        print(f"\n{e}, then run python -m tune_mnist.results {shown}", flush=True)
        return
    where = str(folder).replace(str(run_dir), shown)
    print(f"\nTensorBoard: tensorboard --logdir {where}", flush=True)


def log_mlflow(uri: str, run_dir: Path, tables: Tables) -> bool:
    """Log the run to MLflow (`tune_mnist.mlflow_runs`); False, said on stderr, when it failed."""
    try:
        parent = log_search(
            uri, run_dir, tables.trials, tables.epochs, tables.comparison, tables.test_eval
        )
    except TrackingError as e:
        print(
            f"error: {e} (the results are saved; log them with: "
            f"python -m tune_mnist.results {run_dir} --mlflow URI)",
            file=sys.stderr,
        )
        return False
    print(
        f"MLflow: {len(tables.trials)} arm runs under parent run {parent} "
        f"(experiment {experiment_name()}) at {uri}",
        flush=True,
    )
    return True


def _plot(run_dir: Path, tables: Tables, metric: str, shown: str) -> None:
    from tune_mnist.plots import write_figures

    test_images, class_names = _test_images(run_dir, tables)
    lines = write_figures(
        run_dir, tables.trials, tables.epochs, tables.comparison, tables.test_eval,
        tables.confusion, tables.test_predictions,
        test_images=test_images, class_names=class_names, metric=metric,
        dependence=tables.dependence, importance=tables.importance,
    )  # fmt: skip
    print("\n" + "\n".join(line.replace(str(run_dir), shown) for line in lines), flush=True)


def write_run_report(
    run_dir: str | Path, tables: Tables, metric: str = "val_acc", *, shown: str | None = None
) -> Path:
    """Write ``RUN_DIR/report.html`` (see ``tune_mnist.report``) of a local run folder and say
    where it is (``shown``: where the folder is a copy of, a storage URI)."""
    from tune_mnist.report import write_report

    test_images, class_names = _test_images(Path(run_dir), tables)
    path = write_report(
        run_dir, tables, metric=metric, test_images=test_images, class_names=class_names
    )
    print(f"\nReport: {str(path).replace(str(run_dir), shown or str(run_dir))}", flush=True)
    return path


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults in --help, each shown once; the --help of both commands uses it.

    A help text that states its own default ("(default: quickstart, or the resumed run's)") keeps
    it alone, and a default that is no value (None, an unset flag) is not shown as one.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default:" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def build_parser(prog: str = "python -m tune_mnist.results") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Summarize a tune_mnist run (finished or interrupted): rewrite its Parquet files, "
            "print the MixUp vs plain comparison (primary result first) and the test evaluation "
            "of the final model of each arm."
        ),
        formatter_class=HelpFormatter,
        epilog=(
            "Exit status: 0 the run's tables were written (and the figures, report and MLflow "
            f"runs asked for); {EXIT_PARTIAL} they were, but some pairs' files cannot be read "
            "(each pair one line on stderr, UNREADABLE in trials.parquet); "
            f"{EXIT_BAD_INPUT} bad input: an option, a folder without a run, a "
            "store that cannot be read or written, an MLflow server that cannot be reached or "
            f"did not log the run (said on stderr); {EXIT_INTERRUPTED} interrupted (Ctrl-C): "
            "every file is whole, the same command finishes the rest."
        ),
        allow_abbrev=False,  # `--plo` is a typo, not --plot
    )
    parser.add_argument(
        "run_dir",
        nargs="?",
        help=(
            "a run folder: STORAGE_PATH/NAME (a local path or a URI such as s3://...); or "
            "--storage-path and --name, as given to the search"
        ),
    )
    parser.add_argument(
        "--storage-path",
        help="with --name, instead of RUN_DIR: where the search wrote its runs (default: "
        f"{DEFAULT_STORAGE_PATH})",
    )
    parser.add_argument("--name", help="the run's name under --storage-path")
    parser.add_argument(
        "--plot", action="store_true", help="also write PNG figures next to the Parquet files"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also write report.html: one self-contained page of the run (opens offline)",
    )
    parser.add_argument(
        "--metric",
        choices=PLOT_METRICS,
        default="val_acc",
        help="metric of the learning curves, forest plot and report",
    )
    parser.add_argument(
        "--mlflow",
        metavar="URI",
        help=(
            "also log the run to this MLflow tracking URI (http://HOST:PORT of an mlflow server, "
            "or sqlite:///mlflow.db): a parent run with the comparison and best models, "
            "one child run per arm; logging again adds nothing twice"
        ),
    )
    return parser


def main(argv: list[str] | None = None, *, prog: str = "python -m tune_mnist.results") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.run_dir and (args.storage_path or args.name):
        parser.error("give the run as RUN_DIR or as --storage-path/--name, not both")
    if not args.run_dir:
        if not args.name:
            parser.error("which run? give RUN_DIR (STORAGE_PATH/NAME) or --name NAME")
        args.run_dir = join(args.storage_path or DEFAULT_STORAGE_PATH, args.name)
    try:
        if args.mlflow:
            check_reachable(args.mlflow)
        with local_mirror(args.run_dir) as run_dir:
            if not _trial_dirs(run_dir):
                raise ExperimentError(
                    f"{args.run_dir}: no trials found (is this a tune_mnist run directory?)"
                )
            tables, _ = _finish(
                run_dir, plot=args.plot, report=args.report, metric=args.metric, shown=args.run_dir
            )
            logged = not args.mlflow or log_mlflow(args.mlflow, run_dir, tables)
    except (ExperimentError, TrackingError, OSError, pa.ArrowInvalid) as e:  # the last two: a URI
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "interrupted: every file written so far is whole; run the command again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not logged:
        return EXIT_BAD_INPUT
    return EXIT_PARTIAL if tables.trials["status"].eq(UNREADABLE).any() else 0


if __name__ == "__main__":
    sys.exit(main())
