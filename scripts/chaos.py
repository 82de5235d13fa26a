"""Chaos: a search on a 3-node cluster while its trial workers are killed, a node's raylet dies and
the S3 server goes away for a while; nothing may be lost and nothing may change.

    python scripts/chaos.py                      # ~100 pairs, a worker killed every ~30 s (~20 min)
    python scripts/chaos.py --pairs 12 --kills 2 --kill-every 20 --outage 20  # the short one
    python scripts/chaos.py --json chaos.json    # the figures and checks, also as JSON

Starts moto's S3 server on 127.0.0.1 (its objects live in this process, so they outlive a stop)
and a token-auth cluster with cluster/local.sh (head + 2 workers, one CPU each). Runs the search
once quietly (local storage), then again with `--storage-path s3://...` while, from its start:
every `--kill-every` seconds (jittered) a random trial worker of the cluster is SIGKILLed
(`--kills` times), once worker-1's raylet is SIGKILLed (the node is lost), and from half a period
in the S3 server is stopped for `--outage` seconds. A search that ends early (the store stopped
taking writes) is resumed with `--resume` once the server is back, at most `--resumes` times.

Checks: every pair ends exactly once, TERMINATED, with epochs 1..N exactly once per arm, and every
epoch's metrics equal the quiet run's (relative 1e-5: an epoch's random draws depend on the pair's
seed and the epoch only). Prints the checks and figures; exits 1 if a check fails or a fault could
not be injected. Only processes of the cluster it started are killed (found by local.sh's marker).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_loss import LOCAL_SH, REPO, free_port, verdict  # noqa: E402

BUCKET = "chaos"
METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "val_mixed_loss", "val_mixed_acc"]
TRIAL_WORKER = re.compile(r"^ray::ImplicitFunc")  # the process title of a Tune trial's actor


@dataclass
class Settings:
    pairs: int = 100
    max_epochs: int = 3
    train_subset: int = 500
    kills: int = 0  # trial workers killed, one per period; 0: every period until the search ends
    kill_every: float = 30.0
    outage: float = 60.0
    resumes: int = 3
    seed: int = 0

    @property
    def space(self) -> str:
        seeds = ", ".join(str(s) for s in range(self.pairs))
        return f"num_conv: 0\nnum_dense: 0\nbatch_size: 50\nseed: {{grid: [{seeds}]}}\n"


@dataclass
class Faults:
    """What the chaos thread did, with the seconds since the search started."""

    worker_kills: list[tuple[float, int]] = field(default_factory=list)
    raylet_kill: float | None = None
    outage: tuple[float, float] | None = None


def _marked(proc: psutil.Process, state: Path) -> bool:
    try:
        return proc.environ().get("TUNE_MNIST_CLUSTER_DIR_MARKER") == str(state)
    except psutil.Error:
        return False


def trial_workers(state: Path) -> list[psutil.Process]:
    workers = []
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        if TRIAL_WORKER.match(title) and _marked(proc, state):
            workers.append(proc)
    return workers


def raylet_of(node_dir: Path, state: Path) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if (
            cmdline
            and cmdline[0].endswith("/raylet")
            and any(str(node_dir) in arg for arg in cmdline)
            and _marked(proc, state)
        ):
            return proc
    return None


def has_checkpoint(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    try:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError:
        return False
    return any("/checkpoint_" in f.path for f in found)


def chaos(
    settings: Settings, state: Path, server, uri: str, done: threading.Event, faults: Faults
) -> None:
    """Inject the faults on a schedule from now until `done` (the search's first attempt ended)."""
    rng = random.Random(settings.seed)
    started = time.monotonic()
    next_kill = settings.kill_every * rng.uniform(0.8, 1.2)
    raylet_at = settings.kill_every * 1.5
    # The outage begins once the run is on the bucket (a checkpoint there): before, the search
    # refuses a storage it cannot write to, which is a different test (tests/test_storage.py).
    outage_at, looked = None, 0.0
    server_down = False
    while not done.wait(0.5):
        now = time.monotonic() - started
        if outage_at is None and now >= looked + 2:
            looked = now
            if has_checkpoint(uri):
                outage_at = now + settings.kill_every * 0.25
        if faults.outage is None and not server_down and outage_at and now >= outage_at:
            server.stop()
            server_down, down_at = True, now
            print(f"{now:6.1f} s  S3 server stopped", flush=True)
        if server_down and now >= down_at + settings.outage:
            server.start()
            server_down, faults.outage = False, (down_at, now)
            print(f"{now:6.1f} s  S3 server started again", flush=True)
        if faults.raylet_kill is None and now >= raylet_at:
            raylet = raylet_of(state / "worker-1", state)
            if raylet is not None:
                raylet.send_signal(signal.SIGKILL)
                faults.raylet_kill = now
                print(f"{now:6.1f} s  killed worker-1's raylet (pid {raylet.pid})", flush=True)
        wanted = not settings.kills or len(faults.worker_kills) < settings.kills
        if wanted and now >= next_kill:
            workers = trial_workers(state)
            if workers:
                victim = rng.choice(workers)
                try:
                    victim.send_signal(signal.SIGKILL)
                except psutil.Error:
                    continue  # it ended meanwhile: try another one next time round
                next_kill = now + settings.kill_every * rng.uniform(0.8, 1.2)
                faults.worker_kills.append((now, victim.pid))
                print(f"{now:6.1f} s  killed trial worker pid {victim.pid}", flush=True)
    if server_down:
        server.start()
        faults.outage = (down_at, time.monotonic() - started)


def submit(env: dict[str, str], dashboard: int, args: list[str], log: Path) -> int:
    """One `ray job submit` of a search; its exit status (0 when the search succeeded)."""
    command = ["ray", "job", "submit", "--address", f"http://127.0.0.1:{dashboard}"]
    command += ["--working-dir", str(REPO), "--", "python", "-m", "tune_mnist.run", *args]
    with log.open("a") as out:
        return subprocess.run(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode


def tables(location: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from tune_mnist.storage import join, read_bytes

    read = {
        name: pd.read_parquet(io.BytesIO(read_bytes(join(location, f"{name}.parquet"))))
        for name in ("trials", "epochs")
    }
    return read["trials"], read["epochs"]


def by_seed(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Epoch rows indexed by (seed, arm, epoch): trial ids differ between runs, seeds do not."""
    indexed = trials.set_index("trial_id")
    epochs = epochs.assign(
        seed=epochs["trial_id"].map(indexed["config/seed"]),
        arm=epochs["trial_id"].map(indexed["arm"]),
    )
    return epochs.set_index(["seed", "arm", "epoch"]).sort_index()


def check(
    settings: Settings,
    quiet: tuple[pd.DataFrame, pd.DataFrame],
    chaotic: tuple[pd.DataFrame, pd.DataFrame],
) -> dict[str, bool]:
    trials, epochs = chaotic
    expected = set(range(1, settings.max_epochs + 1))
    checks = {
        "every pair once (2 arms each), all TERMINATED": (
            len(trials) == 2 * settings.pairs
            and trials["pair_id"].nunique() == settings.pairs
            and sorted(trials["config/seed"].unique()) == list(range(settings.pairs))
            and trials["trial_id"].is_unique
            and set(trials["status"]) == {"TERMINATED"}
        ),
        "every arm has epochs 1..N exactly once": (
            not epochs.duplicated(["trial_id", "epoch"]).any()
            and set(epochs["trial_id"]) == set(trials["trial_id"])
            and all(set(g["epoch"]) == expected for _, g in epochs.groupby("trial_id"))
        ),
    }
    calm, wild = by_seed(*quiet), by_seed(trials, epochs)
    same_rows = list(calm.index) == list(wild.index)
    checks["every epoch's metrics equal the quiet run's (rel 1e-5)"] = same_rows and bool(
        np.allclose(wild[METRICS], calm[METRICS], rtol=1e-5, atol=0, equal_nan=True)
    )
    return checks


def run(settings: Settings) -> tuple[dict[str, bool], dict]:
    """Start the server and the cluster, run both searches, check; always stops what it started."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    state = Path(tempfile.mkdtemp(prefix="tmch-", dir="/tmp"))  # short: Ray's socket paths
    port, gcs, dashboard = free_port(), free_port(), free_port()
    aws = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(aws)  # this process reads the bucket too
    env = {
        **os.environ,
        "TUNE_MNIST_CLUSTER_DIR": str(state),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    figures: dict = {"pairs": settings.pairs, "machine_cores": os.cpu_count()}
    try:
        fs = pafs.S3FileSystem(
            endpoint_override=aws["AWS_ENDPOINT_URL"], allow_bucket_creation=True
        )
        fs.create_dir(BUCKET)
        ports = ["--port", str(gcs), "--dashboard-port", str(dashboard)]
        up = subprocess.run(
            [str(LOCAL_SH), "up", "--workers", "2", "--cpus-per-node", "1", *ports,
             "--client-port", str(free_port())],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        if up.returncode:
            raise RuntimeError(f"cluster/local.sh up failed:\n{up.stdout}\n{up.stderr}")
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(state / "auth_token"))
        (state / "space.yaml").write_text(settings.space)
        search = [
            "--address", "auto", "--dataset", "mnist_sample", "--space", str(state / "space.yaml"),
            "--train-subset", str(settings.train_subset), "--max-epochs", str(settings.max_epochs),
            # Every kill costs the pair one attempt; 2 s doubling rides out the S3 outage in 5.
            "--max-failures", "20", "--retry-delay", "2",
        ]  # fmt: skip
        started = time.monotonic()
        quiet = ["--storage-path", str(state / "runs"), "--name", "quiet"]
        if submit(env, dashboard, [*search, *quiet], state / "quiet.log"):
            raise RuntimeError(f"the quiet search failed; see {state / 'quiet.log'}")
        figures["quiet_seconds"] = round(time.monotonic() - started, 1)
        print(f"quiet search done in {figures['quiet_seconds']} s; now the chaotic one", flush=True)

        where = ["--storage-path", f"s3://{BUCKET}/runs", "--name", "chaos"]
        faults, done = Faults(), threading.Event()
        thread = threading.Thread(
            target=chaos, args=(settings, state, server, f"s3://{BUCKET}/runs/chaos", done, faults)
        )
        started = time.monotonic()
        thread.start()
        try:
            status = submit(env, dashboard, [*search, *where], state / "chaos.log")
        finally:
            done.set()
            thread.join()
        resumed = 0
        while status and resumed < settings.resumes:
            resumed += 1
            print(f"search ended with status {status}: --resume ({resumed})", flush=True)
            status = submit(env, dashboard, ["--resume", *where], state / "chaos.log")
        figures.update(
            chaos_seconds=round(time.monotonic() - started, 1),
            resumes=resumed,
            worker_kills=len(faults.worker_kills),
            raylet_killed_at_s=faults.raylet_kill,
            s3_outage_s=faults.outage,
        )
        checks = {"the search finished": status == 0}
        checks["every fault was injected"] = (
            len(faults.worker_kills) >= max(settings.kills, 1)
            and faults.raylet_kill is not None
            and faults.outage is not None
        )
        quiet_tables = tables(str(state / "runs" / "quiet"))
        if status == 0:
            checks.update(check(settings, quiet_tables, tables(f"s3://{BUCKET}/runs/chaos")))
        figures["logs"] = str(state)
        return checks, figures
    finally:
        subprocess.run(
            [str(LOCAL_SH), "down", "--port", str(gcs)], env=env, capture_output=True, timeout=120
        )
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Settings()
    parser.add_argument("--pairs", type=int, default=defaults.pairs)
    parser.add_argument("--max-epochs", type=int, default=defaults.max_epochs)
    parser.add_argument("--train-subset", type=int, default=defaults.train_subset)
    parser.add_argument(
        "--kills", type=int, default=defaults.kills, help="trial workers killed (0: every period)"
    )
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every, help="seconds")
    parser.add_argument("--outage", type=float, default=defaults.outage, help="S3 down, seconds")
    parser.add_argument("--resumes", type=int, default=defaults.resumes)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="of the fault schedule")
    parser.add_argument("--json", help="write the checks and figures here")
    args = parser.parse_args()
    settings = Settings(**{k: v for k, v in vars(args).items() if k != "json"})
    checks, figures = run(settings)
    return verdict(checks, figures, args.json)


if __name__ == "__main__":
    sys.exit(main())
