"""TensorBoard event files of a run, written from its tables: `tensorboard --logdir RUN_DIR`.

``RUN_DIR/tensorboard/<pair_id>/<arm>/`` is one TensorBoard run per arm: every per-epoch metric
of the public schema as a scalar (step = epoch; wall time = the pair's training time) and an
HParams session with the arm's configuration, ``mixup`` true or false, and its architecture label.
``RUN_DIR/tensorboard/`` holds the HParams experiment: its columns are ``mixup``, ``seed``,
``architecture`` and the keys that vary in the run; its metrics are the model metrics.

While the search runs, each pair writes its arms' scalars there as it reports an epoch
(`write_live_epoch`, called by the trainable: one small event file per arm and epoch, through
`tune_mnist.storage`, so a run at a URI gets them too); Tune's own loggers stay off (they keep
every trial in the driver). After the search, `results.finish` rewrites the folder from the
tables (`write_event_files`), HParams included: so it works the same for a finished, an
interrupted, a resumed or an old run, and the rewrite replaces the whole folder (atomically)
instead of appending duplicate points. The first epoch a pair writes in each attempt (a new
pair, or one retried or resumed from its checkpoint) carries a restart mark (TensorBoard's
SessionLog START): TensorBoard then drops the points an earlier attempt wrote from that epoch on.

The events are built with TensorBoard's own summary functions (``scalar_pb``, ``hparams_pb``,
``hparams_config_pb``) and written with tensorboardX's ``FileWriter`` (TensorBoard's record format,
its header event and checksums): neither ``tf.summary`` nor ``tensorboard.summary.Writer`` (whose
file writer goes through ``tf.io.gfile``) is used, because they import TensorFlow, seconds of
start-up for a folder of small files.
"""

from __future__ import annotations

import socket
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from tune_mnist.files import atomic_write_dir
from tune_mnist.metrics import METRICS, MODEL_METRICS
from tune_mnist.space import ARMS, KEYS
from tune_mnist.storage import is_uri, join, write_object

TENSORBOARD_DIR = "tensorboard"
SCALARS = tuple(m for m in METRICS if m != "epoch")  # the epoch is the step
EVENT_FILE_SUFFIX = ".tune_mnist"  # events.out.tfevents.<time>.<host>.tune_mnist
# A live epoch's file, named as tensorboardX names its files (so that later epochs sort later,
# which is the order TensorBoard reads a folder's files in), and with the epoch for a reader.
LIVE_FILE = "events.out.tfevents.{time:.6f}.{host}.epoch{epoch:04d}.tune_mnist"
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


def write_live_epoch(
    run_location: str, pair_id: str, report: dict[str, Any], *, restart: bool = False
) -> list[str]:
    """Write the scalars of one epoch's report (`PairTrainer.train_epoch`) of pair ``pair_id``:
    a new event file in ``RUN/tensorboard/<pair_id>/<arm>/`` for each arm in the report, at a
    local path or a URI. ``restart``: the first epoch of this attempt of the pair (TensorBoard
    forgets what an earlier attempt wrote from this epoch on). Returns where each was written."""
    epoch, now = int(report["epoch"]), time.time()
    written = []
    for arm in (arm for arm in ARMS if arm in report):  # a diverged arm reports no more
        row = SimpleNamespace(**{m: report[arm].get(m) for m in SCALARS})
        with tempfile.TemporaryDirectory(prefix="tune_mnist_tensorboard_") as tmp:
            _write_events(Path(tmp), now, [(epoch, _scalars(row))], restart_step=restart and epoch)
            (data,) = [file.read_bytes() for file in Path(tmp).iterdir()]
        name = LIVE_FILE.format(time=now, host=socket.gethostname(), epoch=epoch)
        location = join(run_location, TENSORBOARD_DIR, pair_id, arm, name)
        if is_uri(location):
            write_object(location, data)  # one upload: the object appears whole
        else:  # one small write; TensorBoard waits for the rest of a record it finds cut
            Path(location).parent.mkdir(parents=True, exist_ok=True)
            Path(location).write_bytes(data)
        written.append(location)
    return written


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
    folder: Path,
    now: float,
    summaries: list[tuple[int, Any]],
    offsets: dict | None = None,
    restart_step: int | None = None,
) -> None:
    """One event file: tensorboardX's header event, a restart at ``restart_step`` if given, then
    one event per (step, summary).

    TensorBoard's summary functions build TensorBoard's Summary message and tensorboardX writes
    its own copy of the same message: each summary goes across as its serialized bytes.
    """
    from tensorboardX import FileWriter
    from tensorboardX.proto.event_pb2 import Event, SessionLog
    from tensorboardX.proto.summary_pb2 import Summary

    offsets = offsets or {}
    writer = FileWriter(str(folder), filename_suffix=EVENT_FILE_SUFFIX)
    try:
        if restart_step:
            start = Event(session_log=SessionLog(status=SessionLog.START))
            writer.add_event(start, step=restart_step, walltime=now)
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
