import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_mnist.metrics import METRICS
from tune_mnist.space import ARMS, KEYS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL_SPACE = """
num_conv: {grid: [0, 1]}
filters: 8
kernel_size: 3
pooling: max
num_dense: 0
batch_size: 64
"""


def search_command(*args: str) -> list[str]:
    """A search as a user starts it: `python -m tune_mnist.run ARGS`."""
    return [sys.executable, "-m", "tune_mnist.run", *args]


def run_search(*args: str, timeout: float = 600, cwd: Path | None = None):
    """Run a search to its end; its output comes back as text."""
    return subprocess.run(
        search_command(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def search_failed(result: subprocess.CompletedProcess) -> str:
    """The end of a search's output, for an assertion message."""
    return result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """One real search shared by the results tests: 2 architectures x 2 seeds = 4 pairs, 2 epochs,
    with its report.html.

    Made once per session because a real Ray run costs most of these tests' time.
    """
    root = tmp_path_factory.mktemp("small_run")
    (root / "space.yaml").write_text(SMALL_SPACE)
    result = run_search(
        "--space", str(root / "space.yaml"), "--seeds", "2", "--dataset", "mnist_sample",
        "--train-subset", "300", "--max-epochs", "2", "--storage-path", str(root / "runs"),
        "--name", "small", "--report",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    return root / "runs" / "small"


def synthetic_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two pairs (num_conv 1 and 2) of 3 epochs; the MixUp arm of the second diverges at epoch 2."""
    rng = np.random.default_rng(0)
    trials, epochs = [], []
    for pair, num_conv in (("aaaaa_00000", 1), ("aaaaa_00001", 2)):
        for arm, mixup in ARMS.items():
            diverged = pair.endswith("1") and mixup
            config = {f"config/{k}": spec.default for k, spec in KEYS.items()}
            trials.append(
                {
                    "trial_id": f"{pair}-{arm}",
                    "pair_id": pair,
                    "arm": arm,
                    "status": "DIVERGED" if diverged else "TERMINATED",
                    "architecture": f"num_conv={num_conv}",
                    **config,
                    "config/num_conv": num_conv,
                    "config/mixup": mixup,
                }
            )
            for epoch in range(1, 3 if diverged else 4):
                row = {m: float(rng.uniform(0, 1)) for m in METRICS}
                row.update(trial_id=f"{pair}-{arm}", epoch=epoch, time_total_s=2.0 * epoch)
                if diverged and epoch == 2:
                    row["train_loss"] = math.nan
                epochs.append(row)
    return pd.DataFrame(trials), pd.DataFrame(epochs)


class Driver:
    """A `python -m tune_mnist.run` in its own session; `kill_all` ends it and its Ray processes."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.log = log
        self.handle = open(log, "w")
        self.proc = subprocess.Popen(
            search_command(*args),
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.session = self.proc.pid

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"search still running after {timeout}s:\n{self.output()[-3000:]}")

    def kill_all(self) -> None:
        """SIGKILL the driver and every process of its session (Ray's GCS, raylet, workers)."""
        import psutil  # a dev dependency; the minimum-versions CI step runs without it

        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == self.session:
                    proc.kill()
            except (OSError, psutil.Error):
                continue
        self.proc.wait(timeout=30)
        self.handle.close()


@pytest.fixture
def drivers():
    started: list[Driver] = []

    def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> Driver:
        started.append(Driver(args, log, env))
        return started[-1]

    yield start
    for driver in started:
        driver.kill_all()
