"""A real multi-node run on a token-auth Ray cluster.

cluster/local.sh starts the cluster (head + 2 workers, one CPU each), `ray job submit` runs the
search on it, and the results show every trial exactly once, spread over several nodes. Then
`local.sh down` must leave none of the cluster's processes behind.

Slow-ish (about a minute on 2 cores); skip with `pytest -m "not cluster"`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_SH = REPO_ROOT / "cluster" / "local.sh"
SMOKE_SPACE = "tests/spaces/cluster_smoke.yaml"  # relative to the job's working dir
SMOKE_TRIALS = 6  # arm rows: 3 pairs

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class LocalCluster:
    state_dir: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]  # what a client needs: PATH to ray, the token-auth variables

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def local_sh(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LOCAL_SH), *args, "--port", str(self.gcs_port)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _free_port() -> int:
    """A free TCP port outside Ray's worker port range (10002-19999), which Ray refuses."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port


def cluster_pids(state_dir: Path) -> list[int]:
    """Live processes started for the cluster in `state_dir` (they carry local.sh's marker)."""
    marker = f"TUNE_MNIST_CLUSTER_DIR_MARKER={state_dir}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except (OSError, IndexError):
            continue  # the process exited while we looked
    return pids


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # Short path: Ray puts Unix sockets under it, and those are limited to 107 characters.
    state_dir = Path(tempfile.mkdtemp(prefix="tmc-", dir="/tmp"))
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "TUNE_MNIST_CLUSTER_DIR": str(state_dir),
    }
    env.pop("RAY_ADDRESS", None)
    cluster = LocalCluster(state_dir, _free_port(), _free_port(), env)
    try:
        up = subprocess.run(
            [
                str(LOCAL_SH),
                "up",
                "--workers",
                "2",
                "--cpus-per-node",
                "1",
                "--port",
                str(cluster.gcs_port),
                "--dashboard-port",
                str(cluster.dashboard_port),
                "--client-port",
                str(_free_port()),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert up.returncode == 0, f"local.sh up failed:\n{up.stdout}\n{up.stderr}"
        cluster.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(state_dir / "auth_token"))
        yield cluster
    finally:
        cluster.local_sh("down")
        shutil.rmtree(state_dir, ignore_errors=True)


def submit(
    cluster: LocalCluster, *entrypoint: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ray",
            "job",
            "submit",
            "--address",
            cluster.dashboard_url,
            "--working-dir",
            str(REPO_ROOT),
            "--",
            *entrypoint,
        ],
        cwd=REPO_ROOT,
        env=env or cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_jobs_without_the_token_are_refused(cluster: LocalCluster):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    env.update(RAY_AUTH_MODE="disabled", HOME=str(cluster.state_dir))  # no ~/.ray/auth_token either
    job = submit(cluster, "python", "-c", "print('should not run')", env=env, timeout=60)
    assert job.returncode != 0
    assert "Unauthorized" in job.stdout + job.stderr
    assert "should not run" not in job.stdout


def test_status_shows_the_head_and_both_workers(cluster: LocalCluster):
    status = cluster.local_sh("status", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    alive = [line.split() for line in status.stdout.splitlines() if line.startswith("ALIVE")]
    assert sorted(fields[1] for fields in alive) == ["head", "worker", "worker"]


@pytest.mark.slow
def test_a_search_runs_every_trial_once_across_nodes(cluster: LocalCluster):
    storage = cluster.state_dir / "runs"  # one machine, so every node sees this path
    job = submit(
        cluster,
        "python",
        "-m",
        "tune_mnist.run",
        "--address",
        "auto",
        "--dataset",
        "mnist_sample",
        "--train-subset",
        "300",
        "--max-epochs",
        "1",
        "--space",
        SMOKE_SPACE,
        "--storage-path",
        str(storage),
        "--name",
        "t",
    )
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
    assert "succeeded" in job.stdout + job.stderr

    trials = pd.read_parquet(storage / "t" / "trials.parquet")
    assert len(trials) == SMOKE_TRIALS
    assert trials["trial_id"].is_unique
    assert set(trials["status"]) == {"TERMINATED"}
    assert trials[["config/num_conv", "config/mixup"]].drop_duplicates().shape[0] == SMOKE_TRIALS
    # One CPU per node and per trial: three pairs at a time can only run on three nodes.
    assert trials["node_id"].nunique() >= 2


def test_down_leaves_no_process_of_the_cluster(cluster: LocalCluster):
    assert cluster_pids(cluster.state_dir), "the cluster should be running before down"
    down = cluster.local_sh("down", timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert cluster_pids(cluster.state_dir) == []
