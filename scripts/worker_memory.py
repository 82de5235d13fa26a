"""A reused worker's memory over many trials: what --worker-max-trials and --worker-max-rss-mib
bound.

    python scripts/worker_memory.py                  # 20 tiny pairs, one at a time, in one worker

Runs `python -m tune_mnist.run` with one pair at a time (`--max-concurrent 1`) in one reused worker
(no retirement within the run), then prints the worker's RSS after each pair (the `worker_rss_mib`
every trial reports) and its growth per pair: a least-squares slope from the third pair on (the
first pairs trace the model's functions and fill TensorFlow's one-off caches).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SPACE = "num_conv: 2\nnum_dense: 1\nbatch_size: 50\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--train-subset", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tune_mnist_worker_memory_") as scratch:
        space = Path(scratch, "space.yaml")
        space.write_text(SPACE)
        command = [
            sys.executable, "-m", "tune_mnist.run", "--space", str(space),
            "--seeds", str(args.trials), "--dataset", "mnist_sample",
            "--train-subset", str(args.train_subset), "--max-epochs", "1",
            "--max-concurrent", "1", "--worker-max-trials", str(10 * args.trials),
            "--storage-path", scratch, "--name", "memory",
        ]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        files = Path(scratch, "memory").glob("train_pair_*/result.json")
        # One pair at a time: trial ids (numbered in order) are the order pairs ran in.
        reports = sorted((json.loads(f.read_text().splitlines()[-1]) for f in files),
                         key=lambda r: r["trial_id"])  # fmt: skip
    rss = np.array([r["worker_rss_mib"] for r in reports])
    print("pair  worker pid  worker RSS (MiB)")
    for i, r in enumerate(reports, 1):
        print(f"{i:4d}  {r['pid']:10d}  {r['worker_rss_mib']:16.1f}")
    slope = np.polyfit(np.arange(2, len(rss)), rss[2:], 1)[0]
    print(f"growth: {slope:.2f} MiB per pair (two models) in one reused worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
