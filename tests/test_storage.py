"""Runs whose --storage-path is not a plain local folder, all real: an S3 bucket on moto's S3
server (started here on 127.0.0.1, a random port, reached through AWS_ENDPOINT_URL as a user's
S3-compatible store would be), a read-only mount and a full disk (small tmpfs mounts: these
tests need root, and fail without it rather than pass untested).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import nbformat
import pandas as pd
import psutil
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_SPACE, run_search, search_command, search_failed
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
from test_notebook import FIXTURE, NOTEBOOK, execute, figures, texts

from tune_mnist import results
from tune_mnist.files import (
    COMPARISON_FILE,
    EPOCHS_FILE,
    MANIFEST_FILE,
    TEST_EVAL_FILE,
    TRIALS_FILE,
    VAL_PREDICTIONS_FILE,
    best_model_file,
    best_savedmodel_dir,
    read_manifest,
)
from tune_mnist.plots import FIGURE_FILES
from tune_mnist.storage import read_bytes
from tune_mnist.tensorboard_events import TENSORBOARD_DIR, write_live_epoch

BUCKET = "tune-mnist-test"
SPACE = SMALL_SPACE + "seeds: 1\n"
TINY = ["--dataset", "mnist_sample", "--train-subset", "300", "--max-epochs", "2"]


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server on 127.0.0.1 with one bucket; the environment points S3 clients at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # read by this process and the searches it starts (and their Ray)
    # pyarrow cannot create a bucket through a URI; an administrator would, once.
    admin = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True)
    admin.create_dir(BUCKET)
    yield f"s3://{BUCKET}"
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def objects(uri: str) -> dict[str, int]:
    """Every object under ``uri``: its name below ``uri`` and its size."""
    fs, path = pafs.FileSystem.from_uri(uri)
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return {
        info.path.removeprefix(path + "/"): info.size
        for info in found
        if info.type == pafs.FileType.File
    }


@pytest.fixture(scope="module")
def s3_run(s3, tmp_path_factory):
    """A search whose only storage is the bucket, started from an empty folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "space.yaml").write_text(SPACE)
    result = run_search(
        "--space", "space.yaml", *TINY, "--storage-path", f"{s3}/runs", "--name", "search",
        "--report", cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    return result, cwd, f"{s3}/runs/search"


@pytest.mark.storage
def test_a_search_writes_every_file_to_the_bucket_and_nothing_locally(s3_run):
    result, cwd, uri = s3_run
    assert f"results in {uri}" in result.stdout and f"Results: {uri}" in result.stdout
    assert "Pairs: 2 TERMINATED" in result.stdout and f"Report: {uri}/report.html" in result.stdout
    stored = objects(uri)
    expected = [
        TRIALS_FILE, EPOCHS_FILE, VAL_PREDICTIONS_FILE, COMPARISON_FILE, TEST_EVAL_FILE,
        MANIFEST_FILE, "report.html", best_model_file("plain"), best_model_file("mixup"),
        f"{best_savedmodel_dir('mixup')}/saved_model.pb",
    ]  # fmt: skip
    assert all(stored.get(name) for name in expected), sorted(stored)
    assert any(name.endswith("/result.json") for name in stored)  # Tune's own files too
    assert ".write_test" not in stored  # the write probe is removed
    assert read_manifest(uri)["ended"] is not None
    assert sorted(p.name for p in cwd.iterdir()) == ["space.yaml"]  # no ./s3:/... folder
    assert not Path("s3:").exists()
    # The results step rewrote the TensorBoard files: the live ones of each epoch are gone.
    tensorboard = [name for name in stored if name.startswith(f"{TENSORBOARD_DIR}/")]
    assert len([name for name in tensorboard if "tfevents" in name]) == 5, tensorboard  # 4 arms
    assert not [name for name in tensorboard if ".epoch0" in name], tensorboard


@pytest.mark.storage
def test_live_tensorboard_scalars_go_to_the_bucket(s3, tmp_path):
    """While a search runs at a URI, each epoch's scalars are objects in the bucket."""
    uri = f"{s3}/live"
    report = {"epoch": 1, "plain": {"val_acc": 0.5}, "mixup": {"val_acc": 0.25}}
    written = write_live_epoch(uri, "p", report, restart=True)
    assert [w.rsplit("/", 2)[-2] for w in written] == ["plain", "mixup"]
    for location in written:
        local = tmp_path / location.rsplit("/", 2)[-2] / location.rsplit("/", 1)[-1]
        local.parent.mkdir()
        local.write_bytes(read_bytes(location))
    events = EventAccumulator(str(tmp_path / "mixup"))
    events.Reload()
    assert [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors("val_acc")] == [
        0.25
    ]


@pytest.mark.storage
def test_pandas_and_duckdb_read_the_tables_from_the_bucket(s3_run):
    """The same environment serves a notebook: pandas and DuckDB read the Parquet files in place.

    DuckDB scans them through a pyarrow dataset: its own S3 reader (the httpfs extension) is a
    download, which these tests (on 127.0.0.1 only) do not make."""
    _, _, uri = s3_run
    trials = pd.read_parquet(f"{uri}/{TRIALS_FILE}")
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    epochs = pads.dataset(f"{uri}/{EPOCHS_FILE}", format="parquet")
    per_arm = (
        duckdb.connect()
        .register("epochs", epochs)
        .sql("SELECT split_part(trial_id, '-', 2) AS arm, count(*) AS n FROM epochs GROUP BY arm")
        .fetchall()
    )
    assert sorted(per_arm) == [("mixup", 4), ("plain", 4)]


@pytest.mark.storage
def test_results_cli_and_load_read_the_run_from_the_bucket(s3_run):
    _, _, uri = s3_run
    before = objects(uri)
    cli = subprocess.run(
        [sys.executable, "-m", "tune_mnist.cli", "results", uri, "--plot"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    assert "Pairs: 2 TERMINATED" in cli.stdout
    assert f"{uri}/{FIGURE_FILES['forest']}" in cli.stdout  # where the figure is, not a temp folder
    after = objects(uri)
    assert all(after.get(name) for name in FIGURE_FILES.values()), sorted(after)
    # Nothing of the run was lost (the TensorBoard files are written anew, under new names).
    assert {n for n in before if not n.startswith("tensorboard/")} <= set(after)
    tables = results.load(uri)
    pd.testing.assert_frame_equal(tables.trials, pq.read_table(f"{uri}/{TRIALS_FILE}").to_pandas())
    assert tables.test_eval is not None and len(tables.test_eval) == 2
    missing = subprocess.run(
        [sys.executable, "-m", "tune_mnist.results", f"{uri}-nothing-here"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no trials found" in missing.stderr, missing.stderr


@pytest.mark.storage
def test_the_analysis_notebook_reads_a_run_in_the_bucket(s3):
    """Rule: scripts/analysis.ipynb, given an s3:// run, shows what it shows for the same run in
    a folder (its saved outputs, made against tests/fixtures/run) and writes nothing there."""
    uri = f"{s3}/notebook/run"
    fs, path = pafs.FileSystem.from_uri(uri)
    for file in FIXTURE.iterdir():
        with fs.open_output_stream(f"{path}/{file.name}") as stream:
            stream.write(file.read_bytes())
    before = objects(uri)
    fresh = execute(uri)
    assert objects(uri) == before
    saved, shown = texts(nbformat.read(NOTEBOOK, as_version=4)), texts(fresh)
    assert shown[0][0].split("\n", 1) == [uri, saved[0][0].split("\n", 1)[1]]
    assert shown[1:] == saved[1:] and figures(fresh) == figures(nbformat.read(NOTEBOOK, 4))


def test_a_missing_bucket_is_refused_before_training(s3, tmp_path):
    result = run_search(
        "--space", "quickstart", "--storage-path", "s3://no-such-bucket/runs", cwd=tmp_path
    )
    assert result.returncode == 2, search_failed(result)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --storage-path s3://no-such-bucket/runs: cannot write there")
    assert "Started a local Ray" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def _statuses(uri: str) -> dict[str, str]:
    """Trial statuses in Tune's newest experiment state in the bucket."""
    newest = max(name for name in objects(uri) if name.startswith("experiment_state-"))
    state = json.loads(read_bytes(f"{uri}/{newest}"))
    return {t["trial_id"]: t["status"] for t in (json.loads(e[0]) for e in state["trial_data"])}


def _kill_session(session: int) -> None:
    """SIGKILL every process of a session: a driver's Ray (GCS, raylet, workers)."""
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == session:
                proc.kill()
        except (OSError, psutil.Error):
            continue


def _poll(condition, driver: subprocess.Popen, log: Path, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if driver.poll() is not None:
            pytest.fail(f"search ended ({driver.returncode}) too early:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out:\n{log.read_text()[-3000:]}")


@pytest.mark.storage
def test_a_killed_driver_resumes_from_the_bucket(s3, tmp_path):
    """SIGKILL the driver after its first checkpoint reached the bucket; `--resume` with only
    the URI and the name finishes every pair, each epoch reported once."""
    (tmp_path / "space.yaml").write_text(SPACE.replace("seeds: 1", "seeds: 2"))
    uri = f"{s3}/runs/killed"
    where = ["--storage-path", f"{s3}/runs", "--name", "killed"]
    log = tmp_path / "first.txt"
    with open(log, "w") as out:
        driver = subprocess.Popen(
            search_command("--space", "space.yaml", *TINY, "--max-concurrent", "1", *where),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:

        def checkpointed() -> bool:
            stored = objects(uri)
            return any("/checkpoint_" in name for name in stored) and any(
                name.startswith("experiment_state-") for name in stored
            )

        _poll(checkpointed, driver, log)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        _kill_session(driver.pid)
    when_killed = _statuses(uri)
    # --max-concurrent 1: Tune creates the next trial when one ends, so fewer than 4 are known.
    assert set(when_killed.values()) - {"TERMINATED"}, when_killed
    resumed = run_search("--resume", *where, cwd=tmp_path)
    assert resumed.returncode == 0, search_failed(resumed)
    trials = pd.read_parquet(f"{uri}/{TRIALS_FILE}")
    assert set(when_killed) <= set(trials["pair_id"])  # the same trials, continued
    epochs = pd.read_parquet(f"{uri}/{EPOCHS_FILE}")
    assert len(trials) == 8 and set(trials["status"]) == {"TERMINATED"}, trials
    assert (trials["epochs_run"] == 2).all()
    assert len(epochs) == 16 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.txt", "space.yaml"]


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(options)``: a new tmpfs folder (unmounted at the end); fails where mounting fails."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True,
            text=True,
        ) if shutil.which("mount") else None  # fmt: skip
        if done is None or done.returncode:
            why = done.stderr if done else "no mount command"
            pytest.fail(f"cannot mount a tmpfs here (run `pytest -m storage` as root): {why}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_read_only_storage_path_is_refused_before_training(tmpfs, tmp_path):
    read_only = tmpfs("ro,size=1m")
    result = run_search("--space", "quickstart", "--storage-path", str(read_only / "runs"))
    assert result.returncode == 2, search_failed(result)
    (line,) = result.stderr.strip().splitlines()
    assert "cannot write there (Read-only file system)" in line, line
    assert "Started a local Ray" not in result.stdout + result.stderr


@pytest.mark.storage
def test_a_full_disk_ends_with_one_line_and_no_partial_file(tmpfs, tmp_path):
    """1.2 MiB: the write probe (1 MiB) passes, the checkpoints of two pairs do not fit."""
    (tmp_path / "space.yaml").write_text(SPACE)
    full = tmpfs("size=1200k")
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), *TINY, "--storage-path", str(full / "runs"),
        "--name", "full",
    )  # fmt: skip
    assert result.returncode == 4, search_failed(result)
    # Ray's log monitor may print a worker's last lines after it: find the one line of ours.
    (last,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert last.startswith(f"error: --storage-path {full / 'runs'}: cannot write there"), last
    assert "No space left on device" in last and f"--resume --storage-path {full / 'runs'}" in last
    run_dir = full / "runs" / "full"
    assert read_manifest(run_dir)["args"]["name"] == "full"  # written before the search: whole
    for table in run_dir.glob("*.parquet"):
        pq.read_table(table)  # any Parquet file there is complete
    assert not list(run_dir.glob(".*.parquet.*")), "a temporary file was left behind"
