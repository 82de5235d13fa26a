import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL_SPACE = """
num_conv: {grid: [0, 1]}
filters: 8
kernel_size: 3
pooling: max
num_dense: 0
batch_size: 64
"""


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """One real search shared by the results tests: 2 architectures x 2 seeds = 4 pairs, 2 epochs.

    Made once per session because a real Ray run costs most of these tests' time.
    """
    root = tmp_path_factory.mktemp("small_run")
    (root / "space.yaml").write_text(SMALL_SPACE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tune_mnist.run",
            "--space",
            str(root / "space.yaml"),
            "--seeds",
            "2",
            "--dataset",
            "mnist_sample",
            "--train-subset",
            "300",
            "--max-epochs",
            "2",
            "--storage-path",
            str(root / "runs"),
            "--name",
            "small",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "runs" / "small"
