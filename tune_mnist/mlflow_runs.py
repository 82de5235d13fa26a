"""MLflow runs of a search, logged from its tables: ``--mlflow URI`` on a search, or
``python -m tune_mnist.results RUN_DIR --mlflow URI`` for a run already made.

In the MLflow experiment ``$MLFLOW_EXPERIMENT_NAME`` (default ``tune_mnist``), one parent run per
run folder, named after it, and under it one run per arm (the plain and the MixUp model of every
pair), named by its trial id:

- an arm: params = its configuration keys, ``mixup``, ``architecture`` and ``pair_id``; metrics =
  every per-epoch metric of the public schema with step = epoch; tags = trial id, pair, arm and
  status; MLflow status FINISHED, FAILED (ERROR, DIVERGED, UNREADABLE) or KILLED (unfinished).
- the parent: params = the search's arguments (from run_manifest.json); metrics = the primary
  result (both arms, the difference and its interval, the p-value) and the test accuracy of the
  final model of each arm; artifacts = comparison.csv, run_manifest.json and best_<arm>.keras.

Ray Tune's ``MLflowLoggerCallback`` is not used: it logs one MLflow run per Tune trial, which here
is a pair, so both arms would share one run with ``plain/val_acc``-style metrics and one set of
params (no ``mixup`` param to split or compare by); it logs only while Tune runs (not an old or an
interrupted run); and it makes mlflow an import of every search. The tables have the rows per arm.

Logging again (a resumed search, or the same command twice) adds nothing twice: the parent is
found by a tag that identifies the run folder, an arm by its trial id; an arm's metrics are logged
only for the epochs after those already logged (tag ``tune_mnist.epochs_logged``), params only
when a run is created, the parent's metrics only when they changed; artifacts are replaced.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from tune_mnist.files import MANIFEST_FILE, ManifestError, best_model_file, read_manifest
from tune_mnist.metrics import METRICS
from tune_mnist.space import ARMS, KEYS

DEFAULT_EXPERIMENT = "tune_mnist"
INSTALL_HINT = "pip install 'tune_mnist[mlflow]'"
RUN_KEY_TAG = "tune_mnist.run_key"
TRIAL_TAG = "tune_mnist.trial_id"
EPOCHS_LOGGED_TAG = "tune_mnist.epochs_logged"
EPOCH_METRICS = tuple(m for m in METRICS if m != "epoch")  # the epoch is the step
PRIMARY_COLUMNS = ("plain", "mixup", "diff", "ci_low", "ci_high", "p_value")
TEST_METRICS = ("test_acc", "test_mixed_acc", "test_ece")
BATCH = 1000  # MLflow's limit of metrics in one log_batch call
STATUSES = {  # else KILLED
    "TERMINATED": "FINISHED",
    "ERROR": "FAILED",
    "DIVERGED": "FAILED",
    "UNREADABLE": "FAILED",
}


class TrackingError(Exception):
    """MLflow is missing or cannot be reached; the message says what to do."""


def _client(uri: str) -> Any:
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise TrackingError(f"--mlflow needs MLflow: {INSTALL_HINT}") from None
    try:
        return MlflowClient(tracking_uri=uri)
    except MlflowException as e:  # e.g. a file: store, which MLflow 3 refuses unless opted in
        raise TrackingError(f"--mlflow {uri}: {' '.join(e.message.split())}") from None


def check_reachable(uri: str) -> None:
    """Fail in seconds, before a search trains anything, when the tracking server cannot answer.

    MLflow's own client retries a dead server for minutes; a server's /health answers at once.
    A password in the URI is refused: the URI is recorded in run_manifest.json.
    """
    if urlsplit(uri).password:
        raise TrackingError(
            "--mlflow: give the password in MLFLOW_TRACKING_PASSWORD (and the user in "
            "MLFLOW_TRACKING_USERNAME), not in the URI, which run_manifest.json records"
        )
    _client(uri)
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=10).raise_for_status()
    except requests.RequestException as e:
        raise TrackingError(
            f"--mlflow {uri}: no MLflow server answers there ({type(e).__name__}); "
            "start one (mlflow server) or fix the address"
        ) from None


def run_key(run_dir: str | Path) -> str:
    """What identifies a run folder in MLflow: a hash of its absolute path (a plain tag value)."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:32]


def log_search(
    uri: str,
    run_dir: str | Path,
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    comparison: pd.DataFrame,
    test_eval: pd.DataFrame | None = None,
) -> str:
    """Log a run folder's tables to MLflow, again without duplicates; returns the parent's id.

    Raises TrackingError (one line) when MLflow is missing or refuses or fails a request.
    """
    client = _client(uri)
    from mlflow.exceptions import MlflowException

    try:
        with _no_run_links():
            return _log(client, Path(run_dir), trials, epochs, comparison, test_eval)
    except MlflowException as e:
        raise TrackingError(f"--mlflow {uri}: {' '.join(e.message.split())[:300]}") from None


@contextmanager
def _no_run_links() -> Iterator[None]:
    """Without MLflow's two lines per ended run ("View run ... at"): 64 lines for 16 pairs."""
    name = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    saved = os.environ.get(name)
    os.environ[name] = saved or "true"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]


def _log(
    client: Any,
    run_dir: Path,
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    comparison: pd.DataFrame,
    test_eval: pd.DataFrame | None,
) -> str:
    experiment_id = _experiment_id(client)
    parent = _parent(client, experiment_id, run_dir)
    children = _children(client, experiment_id, parent.info.run_id)
    for _, trial in trials.iterrows():
        rows = epochs[epochs["trial_id"] == trial["trial_id"]]
        child = children.get(trial["trial_id"]) or _new_arm_run(
            client, experiment_id, parent.info.run_id, trial
        )
        _log_arm(client, child, trial, rows)
    _log_parent_metrics(client, parent, comparison, test_eval)
    _log_artifacts(client, parent.info.run_id, run_dir, comparison)
    unfinished = (~trials["status"].isin(list(STATUSES))).any()
    client.set_terminated(parent.info.run_id, "KILLED" if unfinished else "FINISHED")
    return parent.info.run_id


def experiment_name() -> str:
    """MLflow's own variable names the experiment, as for any MLflow run."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)


def _experiment_id(client: Any) -> str:
    name = experiment_name()
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _parent(client: Any, experiment_id: str, run_dir: Path) -> Any:
    key = run_key(run_dir)
    found = client.search_runs([experiment_id], f"tags.`{RUN_KEY_TAG}` = '{key}'", max_results=1)
    if found:
        return found[0]
    parent = client.create_run(
        experiment_id,
        run_name=run_dir.name,
        tags={RUN_KEY_TAG: key, "tune_mnist.run_dir": str(run_dir.resolve())},
    )
    try:
        args = read_manifest(run_dir)["args"]
    except ManifestError:
        args = {}  # a run made before manifests: its arguments are unknown
    _log_batch(client, parent.info.run_id, params=_params(args))
    return parent


def _children(client: Any, experiment_id: str, parent_id: str) -> dict[str, Any]:
    """The arm runs already under the parent, by trial id."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    found, token = {}, None
    while True:
        page = client.search_runs(
            [experiment_id],
            f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'",
            max_results=1000,
            page_token=token,
        )
        found.update({run.data.tags[TRIAL_TAG]: run for run in page if TRIAL_TAG in run.data.tags})
        token = page.token
        if not token:
            return found


def _new_arm_run(client: Any, experiment_id: str, parent_id: str, trial: pd.Series) -> Any:
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    run = client.create_run(
        experiment_id,
        run_name=str(trial["trial_id"]),
        tags={
            MLFLOW_PARENT_RUN_ID: parent_id,
            TRIAL_TAG: str(trial["trial_id"]),
            "tune_mnist.pair_id": str(trial["pair_id"]),
            "tune_mnist.arm": str(trial["arm"]),
        },
    )
    _log_batch(client, run.info.run_id, params=_params(arm_params(trial)))
    return run


def arm_params(trial: pd.Series) -> dict[str, Any]:
    """An arm's MLflow params (a row of trials.parquet): its keys, mixup, architecture, pair."""
    values = {key: trial[f"config/{key}"] for key in KEYS}
    values.update(
        mixup=bool(trial["config/mixup"]),
        architecture=trial["architecture"],
        pair_id=trial["pair_id"],
    )
    return values


def _log_arm(client: Any, run: Any, trial: pd.Series, rows: pd.DataFrame) -> None:
    """The epochs not logged yet, then the arm's status (it changes when a run is resumed)."""
    logged = int(run.data.tags.get(EPOCHS_LOGGED_TAG, 0))
    new = rows[rows["epoch"] > logged]
    now = int(time.time() * 1000)
    metrics = [
        (metric, float(getattr(row, metric)), now, int(row.epoch))
        for row in new.itertuples(index=False)
        for metric in EPOCH_METRICS
        if pd.notna(getattr(row, metric))
    ]
    _log_batch(client, run.info.run_id, metrics=metrics)
    run_id = run.info.run_id
    last = int(rows["epoch"].max()) if len(rows) else 0
    client.set_tag(run_id, EPOCHS_LOGGED_TAG, str(max(logged, last)))
    client.set_tag(run_id, "tune_mnist.status", str(trial["status"]))
    client.set_terminated(run_id, STATUSES.get(str(trial["status"]), "KILLED"))


def _log_parent_metrics(
    client: Any, parent: Any, comparison: pd.DataFrame, test_eval: pd.DataFrame | None
) -> None:
    values = {}
    for _, row in comparison[comparison["role"] == "primary"].iterrows():
        values.update({f"primary_{row['metric']}_{c}": row[c] for c in PRIMARY_COLUMNS})
    for _, row in (test_eval if test_eval is not None else pd.DataFrame()).iterrows():
        values.update({f"{m}_{row['arm']}": row[m] for m in TEST_METRICS})
    now, logged = int(time.time() * 1000), parent.data.metrics
    changed = [
        (name, float(value), now, 0)
        for name, value in values.items()
        if pd.notna(value) and not _same(logged.get(name), float(value))
    ]
    _log_batch(client, parent.info.run_id, metrics=changed)


def _same(logged: float | None, value: float) -> bool:
    return logged is not None and (logged == value or (math.isnan(logged) and math.isnan(value)))


def _log_artifacts(client: Any, run_id: str, run_dir: Path, comparison: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "comparison.csv"
        comparison.to_csv(table, index=False)
        client.log_artifact(run_id, str(table))
    for name in (MANIFEST_FILE, *(best_model_file(arm) for arm in ARMS)):
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))


def _log_batch(
    client: Any,
    run_id: str,
    *,
    params: list[tuple[str, str]] | None = None,
    metrics: list[tuple[str, float, int, int]] | None = None,
) -> None:
    from mlflow.entities import Metric, Param

    for start in range(0, len(params or []), 100):  # MLflow's limit of params in one call
        client.log_batch(run_id, params=[Param(*p) for p in params[start : start + 100]])
    for start in range(0, len(metrics or []), BATCH):
        client.log_batch(run_id, metrics=[Metric(*m) for m in metrics[start : start + BATCH]])


def _params(values: dict[str, Any]) -> list[tuple[str, str]]:
    """MLflow params are strings; None (an option not given) is left out."""
    return [
        (name, value if isinstance(value, str) else json.dumps(_plain(value), default=str))
        for name, value in values.items()
        if value is not None and not (isinstance(value, float) and math.isnan(value))
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
