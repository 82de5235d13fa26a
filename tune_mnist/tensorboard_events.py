"""TensorBoard event files of a run, written from its tables: `tensorboard --logdir RUN_DIR`.

``RUN_DIR/tensorboard/<pair_id>/<arm>/`` is one TensorBoard run per arm: every per-epoch metric
of the public schema as a scalar (step = epoch; wall time = the pair's training time) and an
HParams session with the arm's configuration, ``mixup`` true or false, and its architecture label.
``RUN_DIR/tensorboard/`` holds the HParams experiment: its columns are ``mixup``, ``seed``,
``architecture`` and the keys that vary in the run; its metrics are the model metrics.

Written from the tables after the search (by `results.finish`), not live from the trials: so it
works the same for a finished, an interrupted, a resumed or an old run, and a rewrite replaces the
whole folder (atomically) instead of appending duplicate points.

The events are built with TensorBoard's own summary functions (``scalar_pb``, ``hparams_pb``,
``hparams_config_pb``) and written with tensorboardX's ``FileWriter`` (TensorBoard's record format,
its header event and checksums): neither ``tf.summary`` nor ``tensorboard.summary.Writer`` (whose
file writer goes through ``tf.io.gfile``) is used, because they import TensorFlow, seconds of
start-up for a folder of small files.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from tune_mnist.files import atomic_write_dir
from tune_mnist.metrics import METRICS, MODEL_METRICS
from tune_mnist.space import KEYS

TENSORBOARD_DIR = "tensorboard"
SCALARS = tuple(m for m in METRICS if m != "epoch")  # the epoch is the step
EVENT_FILE_SUFFIX = ".tune_mnist"  # events.out.tfevents.<time>.<host>.tune_mnist
INSTALL_HINT = "pip install 'tune_mnist[tensorboard]'"
ALWAYS_SHOWN = ("mixup", "seed", "architecture")


class TensorBoardMissing(Exception):
    """The `tensorboard` package is not installed; the message says how to install it."""


def write_event_files(run_dir: str | Path, trials: pd.DataFrame, epochs: pd.DataFrame) -> Path:
    """Write (or replace) ``RUN_DIR/tensorboard`` from the trials and epochs tables.

    Raises TensorBoardMissing when the `tensorboard` package is not installed.
    """
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise TensorBoardMissing(f"TensorBoard is not installed: {INSTALL_HINT}") from None
    folder = Path(run_dir) / TENSORBOARD_DIR
    atomic_write_dir(folder, partial(_write_runs, trials, epochs))
    return folder


def arm_hparams(trial: pd.Series) -> dict[str, Any]:
    """The HParams of one arm (a row of trials.parquet): every key, mixup and its architecture."""
    values = {key: trial[f"config/{key}"] for key in KEYS}
    values.update(mixup=trial["config/mixup"], architecture=trial["architecture"])
    return {name: _python(value) for name, value in values.items()}


def _write_runs(trials: pd.DataFrame, epochs: pd.DataFrame, folder: str) -> None:
    from tensorboard.plugins.hparams import summary_v2 as hp

    now = time.time()
    root = Path(folder)
    _write_events(root, now, [(0, _experiment(trials, hp))])
    by_trial = dict(tuple(epochs.groupby("trial_id", sort=False)))
    for _, trial in trials.iterrows():
        session = hp.hparams_pb(arm_hparams(trial), trial_id=trial["trial_id"], start_time_secs=now)
        rows = by_trial.get(trial["trial_id"], epochs.iloc[:0])
        scalars = [(int(row.epoch), _scalars(row)) for row in rows.itertuples(index=False)]
        _write_events(
            root / trial["pair_id"] / trial["arm"],
            now,
            [(0, session), *scalars],
            offsets=dict(zip(rows["epoch"], rows["time_total_s"], strict=True)),
        )


def _experiment(trials: pd.DataFrame, hp: Any) -> Any:
    """The HParams view's columns: mixup, seed, architecture and the keys that vary."""
    varying = [k for k in KEYS if k != "seed" and trials[f"config/{k}"].nunique(dropna=False) > 1]
    hparams = [hp.HParam(name, _domain(trials, name, hp)) for name in (*ALWAYS_SHOWN, *varying)]
    metrics = [hp.Metric(m, display_name=m) for m in MODEL_METRICS]
    return hp.hparams_config_pb(hparams=hparams, metrics=metrics)


def _domain(trials: pd.DataFrame, name: str, hp: Any) -> Any:
    """Discrete values for labels, flags and integers (what the HParams view filters by)."""
    if name == "mixup":
        return hp.Discrete([False, True])
    column = trials["architecture" if name == "architecture" else f"config/{name}"]
    values = sorted({_python(v) for v in column.dropna()})
    if not values:
        return None
    if isinstance(values[0], float):
        return hp.RealInterval(float(values[0]), float(values[-1]))
    return hp.Discrete(values)


def _scalars(row: Any) -> Any:
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboardX.proto.summary_pb2 import Summary

    summary = Summary()
    for metric in SCALARS:
        value = getattr(row, metric)
        if pd.notna(value):  # a diverged arm's last epoch may lack a metric
            # Parsing a serialized Summary into this one appends its values (one per metric).
            summary.MergeFromString(scalar_pb(metric, float(value)).SerializeToString())
    return summary


def _write_events(
    folder: Path, now: float, summaries: list[tuple[int, Any]], offsets: dict | None = None
) -> None:
    """One event file: tensorboardX's header event, then one event per (step, summary).

    TensorBoard's summary functions build TensorBoard's Summary message and tensorboardX writes
    its own copy of the same message: each summary goes across as its serialized bytes.
    """
    from tensorboardX import FileWriter
    from tensorboardX.proto.summary_pb2 import Summary

    offsets = offsets or {}
    writer = FileWriter(str(folder), filename_suffix=EVENT_FILE_SUFFIX)
    try:
        for step, summary in summaries:
            offset = offsets.get(step)
            wall_time = now + (float(offset) if pd.notna(offset) else 0.0)
            message = Summary.FromString(summary.SerializeToString())
            writer.add_summary(message, global_step=step, walltime=wall_time)
    finally:
        writer.close()


def _python(value: Any) -> Any:
    """A plain bool, int, float or str (what the HParams protos accept) from a pandas cell."""
    return value.item() if hasattr(value, "item") else value
