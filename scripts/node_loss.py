"""Lose a node mid-search: trials on it must be rescheduled on the others and nothing may be lost.

    python scripts/node_loss.py                # head + 2 workers (1 CPU each), 6 trials x 4 epochs
    python scripts/node_loss.py --json node_loss.json

Starts a token-auth cluster with cluster/local.sh, submits a search with `ray job submit`, waits
until a trial on worker-1 has reported an epoch, then SIGKILLs every process of worker-1 (raylet,
agents, trial workers), as a machine that loses power would. Then it checks, row by row:
the job succeeds; trials.parquet has every trial exactly once, TERMINATED; epochs.parquet has every
trial's epochs 1..N exactly once; the trials that were on the lost node finished their remaining
epochs on other nodes, resumed from their checkpoint (no epoch trained twice). Prints the figures,
writes them to --json, exits 1 if a check fails. Takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parent.parent
LOCAL_SH = REPO / "cluster" / "local.sh"
SPACE = "num_conv: {grid: [0, 1, 2]}\nnum_dense: 0\nbatch_size: 50\nseed: 0\n"  # 3 pairs, 6 models


def free_port() -> int:
    """A free port outside Ray's worker port range (10002-19999), which Ray refuses."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port


def node_id_of(node_dir: Path) -> str:
    """The Ray node id of a node started with --temp-dir node_dir, from its raylet's log."""
    text = (node_dir / "session_latest" / "logs" / "raylet.out").read_text(errors="replace")
    found = re.search(r"[Nn]ode[ _]?[Ii][Dd][:= ]+([0-9a-f]{56})", text)
    if not found:
        raise RuntimeError(f"no node id in {node_dir}/session_latest/logs/raylet.out")
    return found.group(1)


def node_processes(node_dir: Path) -> list[psutil.Process]:
    """The processes of one node: those naming its temp dir in their command line, and children."""
    marker = f"{node_dir}/"
    roots = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline or cmdline.endswith(str(node_dir)):
            roots.append(proc)
    found = {p.pid: p for p in roots}
    for proc in roots:
        try:
            found.update({c.pid: c for c in proc.children(recursive=True)})
        except psutil.Error:
            continue
    return list(found.values())


def reported(run_dir: Path) -> pd.DataFrame:
    """Every epoch reported so far, from Tune's result.json files."""
    rows = []
    for result in run_dir.glob("*/result.json"):
        for line in result.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # being written
            rows.append(
                {"trial_id": row["trial_id"], "epoch": row["epoch"], "node_id": row["node_id"]}
            )
    return pd.DataFrame(rows, columns=["trial_id", "epoch", "node_id"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--train-subset", type=int, default=1000)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    state = Path(
        tempfile.mkdtemp(prefix="tmnl-", dir="/tmp")
    )  # short: Ray's socket paths are limited
    gcs, dashboard = free_port(), free_port()
    env = {
        **os.environ,
        "TUNE_MNIST_CLUSTER_DIR": str(state),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)
    figures: dict = {"machine_cores": os.cpu_count()}
    checks: dict[str, bool] = {}
    try:
        started = time.time()
        up = subprocess.run(
            [
                str(LOCAL_SH),
                "up",
                "--workers",
                "2",
                "--cpus-per-node",
                "1",
                "--port",
                str(gcs),
                "--dashboard-port",
                str(dashboard),
                "--client-port",
                str(free_port()),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        if up.returncode:
            print(up.stdout, up.stderr, file=sys.stderr)
            return 1
        figures["cluster_up_seconds"] = round(time.time() - started, 1)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(state / "auth_token"))
        victim_dir = state / "worker-1"
        victim = node_id_of(victim_dir)
        (state / "space.yaml").write_text(SPACE)
        run_dir = state / "runs" / "node-loss"
        print(
            f"cluster up in {figures['cluster_up_seconds']} s; submitting the search; "
            f"will kill worker-1 (node {victim[:12]})",
            flush=True,
        )
        job_started = time.time()
        job = subprocess.Popen(
            [
                "ray",
                "job",
                "submit",
                "--address",
                f"http://127.0.0.1:{dashboard}",
                "--working-dir",
                str(REPO),
                "--",
                "python",
                "-m",
                "tune_mnist.run",
                "--address",
                "auto",
                "--dataset",
                "mnist_sample",
                "--train-subset",
                str(args.train_subset),
                "--max-epochs",
                str(args.max_epochs),
                "--space",
                str(state / "space.yaml"),
                "--storage-path",
                str(state / "runs"),
                "--name",
                "node-loss",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Kill once a trial on the victim has a checkpointed epoch and more to go.
        deadline = time.time() + 300
        while time.time() < deadline and job.poll() is None:
            so_far = reported(run_dir)
            on_victim = so_far[so_far["node_id"] == victim]
            if not on_victim.empty and on_victim["epoch"].max() < args.max_epochs:
                break
            time.sleep(0.5)
        else:
            print(
                "no trial ran on worker-1 before the search ended; nothing was tested",
                file=sys.stderr,
            )
            return 1
        before = reported(run_dir)
        hit = sorted(before.loc[before["node_id"] == victim, "trial_id"].unique())
        processes = node_processes(victim_dir)
        for proc in processes:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        killed_at = time.time()
        figures.update(
            killed_after_seconds=round(killed_at - job_started, 1),
            processes_killed=len(processes),
            trials_on_lost_node=len(hit),
            epochs_reported_before_kill=len(before),
        )
        print(
            f"killed worker-1 ({len(processes)} processes) "
            f"{figures['killed_after_seconds']} s into the search; trials on it: {', '.join(hit)}",
            flush=True,
        )

        output, _ = job.communicate(timeout=900)
        figures["search_seconds"] = round(time.time() - job_started, 1)
        (state / "job.log").write_text(output)
        checks["job succeeded"] = job.returncode == 0 and "succeeded" in output

        trials = pd.read_parquet(run_dir / "trials.parquet")
        epochs = pd.read_parquet(run_dir / "epochs.parquet")
        expected = set(range(1, args.max_epochs + 1))
        checks["3 pairs (6 arms), each once, all TERMINATED"] = (
            len(trials) == 6
            and trials["pair_id"].nunique() == 3
            and trials["trial_id"].is_unique
            and set(trials["status"]) == {"TERMINATED"}
        )
        checks["every trial has epochs 1..N exactly once"] = not epochs.duplicated(
            ["trial_id", "epoch"]
        ).any() and all(set(group["epoch"]) == expected for _, group in epochs.groupby("trial_id"))
        # `hit` holds pair (Tune trial) ids; epochs.parquet has a row per arm: "<pair id>-<arm>".
        moved = epochs[epochs["trial_id"].str.rsplit("-", n=1).str[0].isin(hit)]
        resumed = {}
        for trial_id in moved["trial_id"].unique():
            rows = moved[moved["trial_id"] == trial_id].sort_values("epoch")
            last_on_victim = int(rows.loc[rows["node_id"] == victim, "epoch"].max())
            after = rows[rows["epoch"] > last_on_victim]
            resumed[trial_id] = {
                "last_epoch_on_lost_node": last_on_victim,
                "epochs_after_on_other_nodes": int((after["node_id"] != victim).sum()),
            }
        checks["lost node's trials finished on other nodes"] = bool(hit) and all(
            r["epochs_after_on_other_nodes"] == args.max_epochs - r["last_epoch_on_lost_node"]
            for r in resumed.values()
        )
        figures["lost_trials"] = resumed
        after_kill = reported(run_dir)
        figures["nodes_used"] = int(after_kill["node_id"].nunique())
        figures["dead_node_epochs_after_kill"] = int(
            (after_kill["node_id"] == victim).sum() - (before["node_id"] == victim).sum()
        )
        checks["no epoch reported by the lost node after the kill"] = (
            figures["dead_node_epochs_after_kill"] == 0
        )
    finally:
        subprocess.run(
            [str(LOCAL_SH), "down", "--port", str(gcs)], env=env, capture_output=True, timeout=120
        )

    return verdict(checks, figures, args.json, f"(logs in {state})")


def verdict(checks: dict[str, bool], figures: dict, json_path: str | None, *after: str) -> int:
    """Print each check and figure, then PASS or FAIL (no checks: FAIL); write them as JSON to
    ``json_path`` when given. The exit status: 0 when every check passed."""
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    passed = bool(checks) and all(checks.values())
    print("PASS" if passed else "FAIL", *after)
    if json_path:
        Path(json_path).write_text(
            json.dumps({"figures": figures, "checks": checks, "passed": passed}, indent=2)
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
