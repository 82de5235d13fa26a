"""Bounded waits: an impossible resource request, a hung trial, a failing trial's retries, the
search's time budget and a cluster where no trial can start. The end-to-end tests are real
`python -m tune_mnist.run` searches with real Ray on a few hundred embedded digits."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import run_search, search_failed

from tune_mnist import waits
from tune_mnist.trainable import FAULT_ENV

TINY_SPACE = """
num_conv: 0
num_dense: 0
batch_size: 50
seed: {grid: [0, 1]}
"""
TINY = ["--train-subset", "200", "--max-epochs", "2"]


def _tiny(tmp_path: Path, name: str) -> list[str]:
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    storage = ["--storage-path", str(tmp_path / "runs"), "--name", name]
    return ["--space", str(tmp_path / "space.yaml"), *TINY, *storage]


# ---- without Ray ---------------------------------------------------------------------------------


def test_a_request_is_met_only_by_one_node_that_has_all_of_it():
    """Rule: a trial is one bundle: 2 CPUs on one node and 1 GPU on another do not make a trial."""
    nodes = [
        {"Alive": True, "Resources": {"CPU": 2.0, "memory": 2.0 * 2**30}},
        {"Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0, "memory": 4.0 * 2**30}},
        {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0, "memory": 64.0 * 2**30}},
    ]
    assert waits.unmet_request({"CPU": 1.0, "GPU": 1.0}, nodes) is None
    assert waits.unmet_request({"CPU": 1.0, "GPU": 0.5, "memory": 4.0 * 2**30}, nodes) is None
    unmet = waits.unmet_request({"CPU": 2.0, "GPU": 1.0}, nodes)
    assert unmet == (
        "each trial asks for 2 CPU and 1 GPU; no node has that "
        "(the cluster has 2 nodes: 2 CPU, 0 GPU, 2048 MiB memory; 1 CPU, 1 GPU, 4096 MiB memory)"
    )
    unmet = waits.unmet_request({"CPU": 2.0, "memory": 3.0 * 2**30}, nodes)
    assert unmet is not None and unmet.startswith("each trial asks for 2 CPU and 3072 MiB memory")


def test_retries_wait_long_enough_for_a_one_minute_outage_and_never_unboundedly():
    """Rule: at the default --retry-delay, the third attempt (the last at --max-failures 2) starts
    over a minute after the first failed; no single wait exceeds 5 minutes."""
    from tune_mnist.config import RETRY_DELAY_S

    assert waits.retry_delay(1, RETRY_DELAY_S) == 0
    assert waits.retry_delay(2, RETRY_DELAY_S) + waits.retry_delay(3, RETRY_DELAY_S) >= 60
    assert max(waits.retry_delay(n, RETRY_DELAY_S) for n in range(1, 100)) == 300
    assert waits.retry_delay(5, 0.0) == 0


def test_attempts_are_counted_across_processes(tmp_path):
    """Rule: each attempt of a trial, in whatever process, gets the next number."""
    code = "import sys; from tune_mnist import waits; print(waits.attempt_number(sys.argv[1]))"
    numbers = [
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        for _ in range(3)
    ]
    assert [n.stdout.strip() for n in numbers] == ["1", "2", "3"], numbers[-1].stderr


WATCHED = """
import sys, time
from tune_mnist.waits import Watchdog
with Watchdog(1.0, "trial_x") as watchdog:
    for _ in range(int(sys.argv[1])):
        time.sleep(0.5)
        watchdog.beat()
    time.sleep(float(sys.argv[2]))
print("survived", flush=True)
"""


def test_the_watchdog_ends_a_silent_process_and_spares_one_that_reports():
    """Rule: 1 s without a beat ends the process with one line; beats every 0.5 s keep it alive,
    and leaving the watch (a trial that ended) stops it."""
    started = time.monotonic()
    hung = subprocess.run(
        [sys.executable, "-c", WATCHED, "2", "60"], capture_output=True, text=True, timeout=60
    )
    assert hung.returncode == 1 and time.monotonic() - started < 30
    assert "trial_x: no epoch reported for 1 s (--trial-timeout)" in hung.stderr, hung.stderr
    alive = subprocess.run(
        [sys.executable, "-c", WATCHED, "6", "0"], capture_output=True, text=True, timeout=60
    )
    assert alive.returncode == 0 and alive.stdout.strip() == "survived", alive.stderr


def test_the_search_stops_after_pending_timeout_seconds_with_trials_waiting_and_none_running():
    """Rule: the clock runs only while some trial is PENDING and none RUNNING."""
    run_dir = f"/runs/pending-{os.getpid()}"
    callback = waits.PendingTimeout(0.3, run_dir)
    trials = [SimpleNamespace(status="PENDING"), SimpleNamespace(status="RUNNING")]
    for _ in range(3):
        callback.on_step_begin(0, trials)
        time.sleep(0.2)
    assert waits.stop_reason(run_dir) is None  # one was running: the others wait their turn
    trials[1].status = "TERMINATED"
    callback.on_step_begin(0, trials)
    assert waits.stop_reason(run_dir) is None
    time.sleep(0.4)
    callback.on_step_begin(0, trials)
    assert waits.stop_reason(run_dir) == "pending"


# ---- real searches -------------------------------------------------------------------------------


def test_a_request_no_node_can_meet_is_refused_in_seconds_before_training(tmp_path):
    """Rule: on a local Ray (a fixed cluster) a trial request larger than any node exits 2 with
    one line that says what was asked and what the cluster has, and writes no run."""
    started = time.monotonic()
    result = run_search(*_tiny(tmp_path, "too-big"), "--cpus-per-trial", "4096", timeout=180)
    seconds = time.monotonic() - started
    assert result.returncode == 2, search_failed(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        r"error: --cpus-per-trial / --gpus-per-trial / --memory-per-trial: each trial asks for "
        r"4096 CPU and 3072 MiB memory; no node has that \(the cluster has 1 node: \d+ CPU, \d+ "
        r"GPU, \d+ MiB memory\)",
        lines[0],
    ), lines[0]
    assert not (tmp_path / "runs" / "too-big" / "run_manifest.json").exists()
    assert seconds < 90, seconds  # Ray's start on a busy 2-core machine; never a wait for nodes


def test_trials_ask_ray_for_memory_and_more_than_a_node_has_is_refused(tmp_path):
    """Rule: each trial holds --memory-per-trial MiB in Ray's books: more than the local node has
    is refused at once (exit 2, one line), as a CPU request is."""
    result = run_search(*_tiny(tmp_path, "too-much"), "--memory-per-trial", "1e9", timeout=180)
    assert result.returncode == 2, search_failed(result)
    line = result.stderr.strip()
    assert re.fullmatch(
        r"error: --cpus-per-trial / --gpus-per-trial / --memory-per-trial: each trial asks for "
        r"1 CPU and 1000000000 MiB memory; no node has that \(the cluster has 1 node: \d+ CPU, "
        r"\d+ GPU, \d+ MiB memory\)",
        line,
    ), line
    assert not (tmp_path / "runs" / "too-much" / "run_manifest.json").exists()


@pytest.mark.slow
def test_a_default_memory_request_larger_than_this_machine_still_runs_one_at_a_time(tmp_path):
    """Rule: on a local Ray whose memory is less than the default request (here made so by a huge
    --worker-max-rss-mib, which the default follows), trials ask for what there is, one line says
    so, and the search runs; the manifest records what the trials asked for."""
    result = run_search(*_tiny(tmp_path, "small"), "--worker-max-rss-mib", "1e9")
    assert result.returncode == 0, search_failed(result)
    said = [line for line in result.stdout.splitlines() if "MiB of memory for tasks" in line]
    assert len(said) == 1 and "less than the 1e+09 MiB a trial asks for by default" in said[0]
    manifest = json.loads((tmp_path / "runs" / "small" / "run_manifest.json").read_text())
    assert 0 < manifest["args"]["memory_per_trial"] < 1e9


@pytest.mark.slow
def test_a_trial_killed_for_memory_says_it_ran_out_of_memory(tmp_path):
    """Rule: when Ray's memory monitor kills a trial's worker, the progress line and the pair's
    error in trials.parquet say it ran out of memory and what to change, not a bare actor death.
    Ray's kill threshold is set 3 GiB above what this machine uses now; the testing hook makes
    seed 1 grow 256 MiB every 0.2 s until it is killed."""
    meminfo = dict(line.split(":") for line in Path("/proc/meminfo").read_text().splitlines())
    total, available = (int(meminfo[k].split()[0]) * 1024 for k in ("MemTotal", "MemAvailable"))
    threshold = (total - available + 3 * 2**30) / total
    assert threshold < 0.9, f"this machine has too little free memory for the test ({threshold})"
    result = subprocess.run(
        [sys.executable, "-m", "tune_mnist.run", *_tiny(tmp_path, "oom"), "--max-failures", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            FAULT_ENV: "oom:seed=1",
            "RAY_memory_usage_threshold": f"{threshold:.3f}",
            "RAY_memory_monitor_refresh_ms": "100",
        },
    )
    assert result.returncode == 3, search_failed(result)
    failed = [line for line in result.stdout.splitlines() if "failed (" in line]
    assert len(failed) == 1 and "seed 1" in failed[0], result.stdout[-3000:]
    assert "out of memory: Ray's memory monitor killed the trial's worker (node " in failed[0]
    trials = pd.read_parquet(tmp_path / "runs" / "oom" / "trials.parquet")
    status = {seed: set(group) for seed, group in trials.groupby("config/seed")["status"]}
    assert status == {0: {"TERMINATED"}, 1: {"ERROR"}}, status
    errors = set(trials.loc[trials["config/seed"] == 1, "error"])
    assert len(errors) == 1 and errors.pop().startswith("out of memory: "), errors


@pytest.mark.slow
def test_a_hung_trial_is_stopped_by_trial_timeout_retried_after_a_delay_and_ends_as_error(
    tmp_path,
):
    """Rule: seed 1 sleeps forever before its epoch 2 in every attempt; --trial-timeout ends each
    attempt, the retry waits --retry-delay and continues from epoch 1's checkpoint, and after
    --max-failures 1 the pair ends as ERROR while seed 0 finishes."""
    timeout = 25
    argv = [*_tiny(tmp_path, "hung"), "--trial-timeout", str(timeout), "--max-failures", "1"]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tune_mnist.run", *argv, "--retry-delay", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, FAULT_ENV: "hang@2:seed=1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 3, search_failed(result)
    assert time.monotonic() - started < 400
    trials = pd.read_parquet(tmp_path / "runs" / "hung" / "trials.parquet")
    status = {seed: set(group) for seed, group in trials.groupby("config/seed")["status"]}
    assert status == {0: {"TERMINATED"}, 1: {"ERROR"}}, status
    assert set(trials.loc[trials["config/seed"] == 1, "epochs_run"]) == {1}
    stopped = re.findall(rf"no epoch reported for {timeout} s \(--trial-timeout\); ending its "
                         r"process \(pid (\d+)\)", output)  # fmt: skip
    assert len(set(stopped)) == 2, output[-3000:]  # both attempts, each in its own process
    assert "attempt 2 starts in 2 s (--retry-delay)" in output, output[-3000:]


@pytest.mark.slow
def test_time_budget_stops_cleanly_and_resume_finishes(tmp_path):
    """Rule: --time-budget ends the search with the pairs that finished written, exit 5 and the
    command that continues it; --resume then finishes the rest from their checkpoints, and a
    finished pair is not trained again."""
    argv = _tiny(tmp_path, "budget")
    run_dir = tmp_path / "runs" / "budget"
    # Seed 1 hangs (alive) before its epoch 2 in the first command only: the budget, not the end
    # of the work, stops that command.
    first = subprocess.run(
        [sys.executable, "-m", "tune_mnist.run", *argv, "--time-budget", "75"],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, FAULT_ENV: "hang@2:seed=1"},
    )
    assert first.returncode == 5, search_failed(first)
    last = first.stdout.strip().splitlines()[-1]
    assert last == (
        "Stopped at --time-budget 75 s: 1 pairs unfinished. Resume with: python -m "
        f"tune_mnist.run --resume --storage-path {tmp_path / 'runs'} --name budget"
    ), last
    stopped = pd.read_parquet(run_dir / "trials.parquet")
    status = {seed: set(group) for seed, group in stopped.groupby("config/seed")["status"]}
    assert status[0] == {"TERMINATED"} and status[1] <= {"RUNNING", "PENDING"}, status
    epochs_of_seed_0 = pd.read_parquet(run_dir / "epochs.parquet")
    epochs_of_seed_0 = epochs_of_seed_0[epochs_of_seed_0["trial_id"].str.startswith(
        tuple(stopped.loc[stopped["config/seed"] == 0, "pair_id"]))]  # fmt: skip

    resumed = run_search("--resume", "--storage-path", str(tmp_path / "runs"), "--name", "budget")
    assert resumed.returncode == 0, search_failed(resumed)
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert set(trials["status"]) == {"TERMINATED"} and (trials["epochs_run"] == 2).all()
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    again = epochs[epochs["trial_id"].isin(epochs_of_seed_0["trial_id"])]
    pd.testing.assert_frame_equal(
        again[["trial_id", "epoch", "val_acc"]].reset_index(drop=True),
        epochs_of_seed_0[["trial_id", "epoch", "val_acc"]].reset_index(drop=True),
    )


@pytest.mark.slow
def test_on_a_cluster_no_trial_fits_the_search_ends_after_pending_timeout(tmp_path, drivers):
    """Rule: with --address, a request the cluster's nodes cannot meet (it may add nodes) waits
    --pending-timeout seconds with no trial running, then exits 2 with one line that names the
    request, what the cluster has, and the command that continues the run."""
    import socket

    import psutil

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp_dir = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # short: Ray's socket paths are limited
    head_log = open(tmp_path / "head.txt", "w")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
         "--num-cpus=1", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp_dir}", "--block"],
        stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (tmp_path / "head.txt").read_text():
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        argv = [*_tiny(tmp_path, "pending"), "--address", f"127.0.0.1:{port}"]
        started = time.monotonic()
        # The head turned token authentication on; a driver that joins must say it uses it.
        driver = drivers(
            [*argv, "--cpus-per-trial", "2", "--pending-timeout", "15"],
            tmp_path / "log.txt",
            env={"RAY_AUTH_MODE": "token"},
        )
        status = driver.wait(300)
        output = driver.output()
        assert status == 2, output[-3000:]
        assert time.monotonic() - started < 200
        assert (
            "each trial asks for 2 CPU and 3072 MiB memory; no node has that (the cluster has 1 "
            "node: 1 CPU, "
        ) in output
        assert "waiting up to 15 s (--pending-timeout)" in output, output[-3000:]
        (last,) = [line for line in output.splitlines() if line.startswith("error: ")]
        assert last.startswith(
            "error: --pending-timeout 15: no trial could start for that long: each trial asks "
            "for 2 CPU and 3072 MiB memory; no node has that"
        ) and last.endswith(f"--resume --storage-path {tmp_path / 'runs'} --name pending"), last
    finally:
        for proc in psutil.process_iter():  # the head's session: its GCS, raylet and workers
            try:
                if os.getsid(proc.pid) == head.pid:
                    proc.kill()
            except (OSError, psutil.Error):
                continue
        head.wait(timeout=30)
        head_log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_new_search_of_a_run_in_the_same_process_starts_unstopped():
    """Rule: a search stopped by its time budget, resumed from Python in the same process, can be
    stopped again (and is not taken for stopped before it begins)."""
    waits._STOPPED["/runs/r"] = "time"
    waits.forget_stop("/runs/r")
    assert waits.stop_reason("/runs/r") is None
