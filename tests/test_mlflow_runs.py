"""A search logged to a real MLflow server reads back as one run per arm under a parent run.

The tests that start the server are marked `tracking` (plain `pytest` leaves them out).
"""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import requests
from conftest import SMALL_SPACE, run_search, search_failed, synthetic_tables

from tune_mnist.config import SearchConfig
from tune_mnist.mlflow_runs import (
    DEFAULT_EXPERIMENT,
    EPOCH_METRICS,
    TrackingError,
    check_reachable,
    log_search,
)
from tune_mnist.results import main as results_main
from tune_mnist.tuning import _resume_config


def mlflow_client(uri: str):
    """MLflow is imported when a test runs: plain `pytest` collects this file but skips it."""
    from mlflow import MlflowClient

    return MlflowClient(uri)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1: SQLite runs, artifacts uploaded through the server."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its gunicorn/uvicorn workers end with it
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting (a busy machine)
                pass
            assert process.poll() is None and time.monotonic() < deadline, "mlflow server died"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def experiment(monkeypatch, request) -> str:
    """A fresh MLflow experiment per test, so tests do not see each other's runs."""
    name = f"{DEFAULT_EXPERIMENT}-{request.node.name}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    return name


def synthetic_run(tmp_path):
    """A run folder with a manifest and (stand-in) best models, and its tables."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run_manifest.json").write_text(json.dumps({"args": {"dataset": "mnist_sample"}}))
    for arm in ("plain", "mixup"):
        (run_dir / f"best_{arm}.keras").write_bytes(f"model {arm}".encode())
    trials, epochs = synthetic_tables()
    comparison = pd.DataFrame(
        {"metric": ["val_acc"], "role": ["primary"], "architecture": ["all"], "plain": [0.9],
         "mixup": [0.92], "diff": [0.02], "ci_low": [0.01], "ci_high": [0.03], "p_value": [0.04]}
    )  # fmt: skip
    return run_dir, trials, epochs, comparison


def runs_of(uri: str, name: str) -> tuple[object, dict[str, object]]:
    """The parent run and the arm runs (by trial id) of the experiment."""
    client = mlflow_client(uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = {r.data.tags["tune_mnist.trial_id"]: r for r in runs if r not in parents}
    assert all(
        r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children.values()
    )
    return parents[0], children


def assert_arm_metrics(uri: str, children: dict, epochs: pd.DataFrame) -> None:
    client = mlflow_client(uri)
    assert set(children) == set(epochs["trial_id"])
    for trial_id, run in children.items():
        rows = epochs[epochs["trial_id"] == trial_id].set_index("epoch")
        for metric in EPOCH_METRICS:
            history = client.get_metric_history(run.info.run_id, metric)
            logged = sorted((m.step, m.value) for m in history)  # a list: an epoch twice shows
            expected = [(e, v) for e, v in rows[metric].items() if not math.isnan(v)]
            assert [s for s, _ in logged] == [e for e, _ in expected], (trial_id, metric)
            assert [v for _, v in logged] == pytest.approx([v for _, v in expected])


@pytest.mark.tracking
def test_every_arm_is_a_child_run_with_its_params_and_each_epochs_metrics(
    server, experiment, tmp_path
):
    run_dir, trials, epochs, comparison = synthetic_run(tmp_path)
    parent_id = log_search(server, run_dir, trials, epochs, comparison)
    parent, children = runs_of(server, experiment)
    assert parent.info.run_id == parent_id and parent.info.run_name == "run"
    assert_arm_metrics(server, children, epochs)
    mixup = children["aaaaa_00001-mixup"]
    assert mixup.data.params["mixup"] == "true" and mixup.data.params["num_conv"] == "2"
    assert mixup.data.params["architecture"] == "num_conv=2"
    assert mixup.info.status == "FAILED"  # it diverged
    assert children["aaaaa_00000-plain"].info.status == "FINISHED"
    assert children["aaaaa_00000-plain"].data.params["mixup"] == "false"


@pytest.mark.tracking
def test_the_parent_has_the_primary_result_the_comparison_manifest_and_best_models(
    server, experiment, tmp_path
):
    run_dir, trials, epochs, comparison = synthetic_run(tmp_path)
    log_search(server, run_dir, trials, epochs, comparison)
    parent, _ = runs_of(server, experiment)
    assert parent.data.params["dataset"] == "mnist_sample"
    assert parent.data.metrics["primary_val_acc_diff"] == pytest.approx(0.02)
    client = mlflow_client(server)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "comparison.csv", "run_manifest.json", "best_plain.keras", "best_mixup.keras"
    }  # fmt: skip
    copy = client.download_artifacts(parent.info.run_id, "best_mixup.keras", str(tmp_path))
    assert open(copy, "rb").read() == b"model mixup"


@pytest.mark.tracking
def test_logging_again_adds_only_the_new_epochs(server, experiment, tmp_path):
    """A resumed search logs its later epochs into the same runs, never an epoch twice."""
    run_dir, trials, epochs, comparison = synthetic_run(tmp_path)
    first_epochs = epochs[epochs["epoch"] < 3]
    unfinished = trials.assign(status=trials["status"].replace("TERMINATED", "PAUSED"))
    first = log_search(server, run_dir, unfinished, first_epochs, comparison)
    assert runs_of(server, experiment)[0].info.status == "KILLED"
    assert log_search(server, run_dir, trials, epochs, comparison) == first
    assert log_search(server, run_dir, trials, epochs, comparison) == first
    parent, children = runs_of(server, experiment)
    assert len(children) == 4 and parent.info.status == "FINISHED"
    assert_arm_metrics(server, children, epochs)


def test_a_file_store_works_when_mlflow_allows_it_and_otherwise_is_one_line(
    tmp_path, experiment, monkeypatch
):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingError, match="MLFLOW_ALLOW_FILE_STORE") as refused:
        check_reachable(uri)
    assert "\n" not in str(refused.value)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run_dir, trials, epochs, comparison = synthetic_run(tmp_path)
    log_search(uri, run_dir, trials, epochs, comparison)
    assert_arm_metrics(uri, runs_of(uri, experiment)[1], epochs)


def test_a_dead_server_is_refused_before_any_training(tmp_path):
    started = time.monotonic()
    result = run_search(
        "--mlflow", f"http://127.0.0.1:{free_port()}", "--storage-path", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2, search_failed(result)
    assert result.stderr.startswith("error: --mlflow http://127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 60
    assert not list(tmp_path.glob("*/train_pair_*"))


def test_a_resume_logs_where_its_own_command_says(tmp_path):
    """Not the recorded URI: a resume must not depend on a tracking server that is gone."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    original = {"space": "quickstart", "dataset": "mnist_sample", "mlflow": "http://gone:5000"}
    (run_dir / "run_manifest.json").write_text(json.dumps({"args": original, "space": {}}))
    for given in (None, "sqlite:///mlflow.db"):
        config = SearchConfig(storage_path=str(tmp_path), name="run", resume=True, mlflow=given)
        assert _resume_config(str(run_dir), config).mlflow == given


def test_a_password_in_the_uri_is_refused_since_the_manifest_records_the_uri():
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_PASSWORD"):
        check_reachable("http://me:secret@127.0.0.1:5000")


@pytest.mark.tracking
def test_results_cli_logs_a_real_run(server, experiment, small_run, capsys):
    assert results_main([str(small_run), "--mlflow", server]) == 0
    assert "MLflow: 8 arm runs" in capsys.readouterr().out
    parent, children = runs_of(server, experiment)
    assert_arm_metrics(server, children, pd.read_parquet(small_run / "epochs.parquet"))
    artifacts = {a.path for a in mlflow_client(server).list_artifacts(parent.info.run_id)}
    assert {"best_plain.keras", "best_mixup.keras", "comparison.csv"} <= artifacts


@pytest.mark.tracking
def test_a_search_with_mlflow_records_it_and_logs_at_its_end(server, experiment, tmp_path):
    (tmp_path / "space.yaml").write_text(SMALL_SPACE.replace("{grid: [0, 1]}", "1"))
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), "--train-subset", "200", "--max-epochs", "1",
        "--storage-path", str(tmp_path / "runs"), "--name", "tracked", "--mlflow", server,
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    run_dir = tmp_path / "runs" / "tracked"
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["args"]["mlflow"] == server
    parent, children = runs_of(server, experiment)
    assert set(children) == set(pd.read_parquet(run_dir / "trials.parquet")["trial_id"])
    logged = mlflow_client(server).download_artifacts(
        parent.info.run_id, "run_manifest.json", str(tmp_path)
    )
    assert json.loads(open(logged).read())["ended"] is not None  # the final manifest
