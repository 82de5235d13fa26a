"""Results: turn an experiment directory into Parquet tables a notebook can read.

    from tune_mnist.results import load
    r = load("tune_results/<run>")      # r.trials, r.epochs, r.comparison, r.test_eval

`python -m tune_mnist.results RUN_DIR [--plot]` prints the summary of a run, finished or
interrupted, with its test evaluation, and with --plot writes the figures next to the tables.
Every file is written atomically (temporary file, then rename): a kill leaves the old file or the
new one, never half of one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tune_mnist import evaluation as test_evaluation
from tune_mnist.comparison import format_comparison, paired_comparison
from tune_mnist.space import KEYS, architecture_label
from tune_mnist.metrics import METRICS

TRIALS_FILE, EPOCHS_FILE, COMPARISON_FILE = "trials.parquet", "epochs.parquet", "comparison.parquet"
SUMMARY_METRICS = [m for m in METRICS if m.startswith(("train_", "val_"))]
EPOCH_COLUMNS = ["trial_id", *METRICS, "time_total_s", "node_id", "hostname"]
PLOT_METRICS = ("val_acc", "val_mixed_acc")  # the metrics the comparison table carries


@dataclass
class Tables:
    """The tables of a run. The test tables are None until the test evaluation was made."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    comparison: pd.DataFrame
    test_eval: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None
    test_predictions: pd.DataFrame | None = None


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, document: dict[str, Any]) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(document, indent=2, default=str))

    _atomic_write(path, write)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _read_rows(result_file: Path) -> list[dict[str, Any]]:
    rows = []
    if result_file.is_file():
        for line in result_file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the last line of a trial killed mid-write
    return rows


def _trial_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("*/params.json"))


def _dir_trial_id(trial_dir: Path) -> str:
    """The trial id in Tune's folder name `<trainable>_<id>_<index>_<config>_<time>` (id: 'a2bb8_00001')."""
    found = re.search(r"_([0-9a-f]{5}_\d{5})_", trial_dir.name)
    return found.group(1) if found else trial_dir.name


def _statuses(run_dir: Path) -> dict[str, str]:
    """Trial statuses from Tune's newest experiment state (saved during the run, so also after a kill)."""
    # Named by start time (experiment_state-YYYY-MM-DD_HH-MM-SS.json), one per start of a resumed run;
    # not by mtime: Tune re-syncs the older files too, so their mtimes are equal.
    states = sorted(run_dir.glob("experiment_state-*.json"), key=lambda p: p.name)
    if not states:
        return {}
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
        return {t["trial_id"]: t["status"] for t in (json.loads(entry[0]) for entry in trial_data)}
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return {}


def _error_text(trial_dir: Path) -> str | None:
    error_file = trial_dir / "error.txt"
    if not error_file.is_file():
        return None
    lines = [line for line in error_file.read_text().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "unknown error"


def collect(run_dir: str | Path) -> Tables:
    """Rebuild both tables from the experiment directory (works on interrupted runs too).

    A trial's status is TERMINATED (finished or stopped by the scheduler), DIVERGED (NaN or
    infinite training loss), ERROR (failed after its retries), or PENDING / RUNNING / PAUSED when
    the run was interrupted before the trial finished.
    """
    run_dir = Path(run_dir)
    known_status = _statuses(run_dir)
    trial_rows, epoch_rows = [], []
    configs: list[dict[str, Any]] = []
    for trial_dir in _trial_dirs(run_dir):
        config = json.loads((trial_dir / "params.json").read_text())
        rows = _read_rows(trial_dir / "result.json")
        trial_id = rows[-1]["trial_id"] if rows else _dir_trial_id(trial_dir)
        # A trial retried from a checkpoint reports its later epochs again: keep the last report.
        by_epoch = {int(r["epoch"]): r for r in rows if "epoch" in r}
        epochs = [by_epoch[e] for e in sorted(by_epoch)]
        for r in epochs:
            epoch_rows.append({c: r.get(c) for c in EPOCH_COLUMNS} | {"trial_id": trial_id})
        error = _error_text(trial_dir)
        last = epochs[-1] if epochs else {}
        status = "DIVERGED" if last.get("diverged") else known_status.get(trial_id, "PENDING")
        finite = [r for r in epochs if r.get("val_acc") is not None and math.isfinite(r["val_acc"])]
        best = max(finite, key=lambda r: r["val_acc"]) if finite else {}
        row: dict[str, Any] = {"trial_id": trial_id, "status": status}
        row.update({f"config/{k}": config.get(k) for k in KEYS})
        row["best_epoch"] = best.get("epoch")
        row.update({f"best_{m}": best.get(m) for m in SUMMARY_METRICS})
        row.update({f"last_{m}": last.get(m) for m in SUMMARY_METRICS})
        row.update(
            epochs_run=len(epochs),
            wall_seconds=last.get("time_total_s"),
            node_id=last.get("node_id"),
            hostname=last.get("hostname"),
            error=error,
            trial_dir=trial_dir.name,
        )
        trial_rows.append(row)
        configs.append(config)
    varying = [k for k in KEYS if len({json.dumps(c.get(k)) for c in configs}) > 1]
    for row, config in zip(trial_rows, configs):
        row["architecture"] = architecture_label(config, varying)
    trials = pd.DataFrame(trial_rows, columns=_trial_columns())
    epochs = pd.DataFrame(epoch_rows, columns=EPOCH_COLUMNS)
    trials = _typed_trials(trials)
    return Tables(trials=trials, epochs=_typed_epochs(epochs), comparison=paired_comparison(trials))


def _trial_columns() -> list[str]:
    return [
        "trial_id", "status", "architecture", *(f"config/{k}" for k in KEYS), "best_epoch",
        *(f"best_{m}" for m in SUMMARY_METRICS), *(f"last_{m}" for m in SUMMARY_METRICS),
        "epochs_run", "wall_seconds", "node_id", "hostname", "error", "trial_dir",
    ]


def _typed_trials(trials: pd.DataFrame) -> pd.DataFrame:
    for key, spec in KEYS.items():
        column = f"config/{key}"
        trials[column] = trials[column].astype({int: "int64", float: "float64", bool: "bool", str: "string"}[spec.kind])
    for column in ("trial_id", "status", "architecture", "node_id", "hostname", "error", "trial_dir"):
        trials[column] = trials[column].astype("string")
    trials["best_epoch"] = trials["best_epoch"].astype("Int64")
    trials["epochs_run"] = trials["epochs_run"].astype("int64")
    numeric = [c for c in trials.columns if c.startswith(("best_", "last_")) and c != "best_epoch"]
    trials[numeric + ["wall_seconds"]] = trials[numeric + ["wall_seconds"]].astype("float64")
    return trials.sort_values("trial_id", ignore_index=True)


def _typed_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    epochs["epoch"] = epochs["epoch"].astype("int64")
    for column in ("trial_id", "node_id", "hostname"):
        epochs[column] = epochs[column].astype("string")
    numeric = [c for c in EPOCH_COLUMNS if c not in ("trial_id", "epoch", "node_id", "hostname")]
    epochs[numeric] = epochs[numeric].astype("float64")
    return epochs.sort_values(["trial_id", "epoch"], ignore_index=True)


def save(run_dir: str | Path, tables: Tables) -> None:
    run_dir = Path(run_dir)
    write_parquet(run_dir / TRIALS_FILE, tables.trials)
    write_parquet(run_dir / EPOCHS_FILE, tables.epochs)
    write_parquet(run_dir / COMPARISON_FILE, tables.comparison)


def load(run_dir: str | Path) -> Tables:
    """The tables of a run: read from its Parquet files, or rebuilt if the run was interrupted.

    ``test_eval``, ``confusion`` and ``test_predictions`` are None (with a warning saying how to
    make them) when the run has no test evaluation yet.
    """
    run_dir = Path(run_dir)
    files = [run_dir / f for f in (TRIALS_FILE, EPOCHS_FILE, COMPARISON_FILE)]
    if all(f.is_file() for f in files):
        tables = Tables(*(pd.read_parquet(f) for f in files))
    elif not _trial_dirs(run_dir):
        raise FileNotFoundError(f"{run_dir}: no trials found (is this a tune_mnist run directory?)")
    else:
        tables = collect(run_dir)
    evaluation = test_evaluation.load_evaluation(run_dir)
    if evaluation is None:
        warnings.warn(
            f"{run_dir}: no test evaluation yet (r.test_eval is None); make it with "
            f"`python -m tune_mnist.results {run_dir}` (needs a finished trial with a checkpoint)",
            stacklevel=2,
        )
        return tables
    tables.test_eval, tables.confusion, tables.test_predictions = (
        evaluation.test_eval, evaluation.confusion, evaluation.predictions,
    )
    return tables


def arm_table(trials: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Mean best-epoch metric per architecture, without and with MixUp."""
    done = trials[trials["status"] == "TERMINATED"]
    table = done.pivot_table(
        index="architecture", columns="config/mixup", values=f"best_{metric}", aggfunc="mean"
    )
    return table.rename(columns={False: "plain", True: "mixup"}).rename_axis(columns=None)


def summary(tables: Tables) -> str:
    trials = tables.trials
    counts = trials["status"].value_counts().to_dict()
    lines = ["", "Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    done = trials[trials["status"] == "TERMINATED"].dropna(subset=["best_val_acc"])
    if done.empty:
        lines.append("No trial finished.")
    else:
        best = done.loc[done["best_val_acc"].idxmax()]
        config = {k: best[f"config/{k}"] for k in KEYS}
        lines += [
            f"Best trial {best['trial_id']} ({best['architecture']}, mixup={config['mixup']}, "
            f"seed={config['seed']}): val_acc {best['best_val_acc']:.4f}, "
            f"val_mixed_acc {best['best_val_mixed_acc']:.4f} at epoch {best['best_epoch']}",
            "",
            "Mean val_acc (best epoch) per architecture:",
            arm_table(trials).to_string(float_format=lambda v: f"{v:.4f}"),
            "",
            "MixUp minus plain, paired by architecture and seed (best epoch):",
            format_comparison(tables.comparison),
        ]
    failed = trials[trials["status"].isin(["ERROR", "DIVERGED"])]
    for _, row in failed.iterrows():
        lines.append(f"{row['status']}: trial {row['trial_id']} ({row['architecture']}): {row['error'] if pd.notna(row['error']) else 'loss became NaN'}")
    return "\n".join(lines)


def current_evaluation(run_dir: Path, tables: Tables) -> test_evaluation.Evaluation | None:
    """The saved test evaluation if it scored today's best trials, else a new one (made once)."""
    saved = test_evaluation.load_evaluation(run_dir)
    if saved is not None and test_evaluation.is_current(saved, tables.trials):
        return saved
    return test_evaluation.run_evaluation(run_dir, tables.trials, tables.epochs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tune_mnist.results",
        description=(
            "Summarize a tune_mnist run (finished or interrupted): rewrite its Parquet files, print "
            "the MixUp vs plain comparison and the test evaluation of the best model of each arm."
        ),
    )
    parser.add_argument("run_dir", help="a run folder: STORAGE_PATH/NAME")
    parser.add_argument("--plot", action="store_true", help="also write PNG figures next to the Parquet files")
    parser.add_argument(
        "--metric", choices=PLOT_METRICS, default="val_acc", help="metric of the learning curves and forest plot"
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not _trial_dirs(run_dir):
        print(f"error: {run_dir}: no trials found (is this a tune_mnist run directory?)", file=sys.stderr)
        return 2
    tables = collect(run_dir)
    save(run_dir, tables)
    evaluation = current_evaluation(run_dir, tables)
    print(summary(tables))
    print()
    print(test_evaluation.format_evaluation(evaluation))
    if args.plot:
        from tune_mnist.plots import write_figures

        print()
        test_images, class_names = None, None
        if evaluation is not None:
            arrays, _, class_names = test_evaluation.load_test_arrays(run_dir)
            test_images = arrays.x_test
        test_tables = (
            (evaluation.test_eval, evaluation.confusion, evaluation.predictions)
            if evaluation is not None
            else (None, None, None)
        )
        lines = write_figures(
            run_dir, tables.trials, tables.epochs, tables.comparison, *test_tables,
            test_images=test_images, class_names=class_names, metric=args.metric,
        )
        for line in lines:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
