"""Soak test: many one-epoch trials in one search, tracking driver and Ray worker memory over time.

    python scripts/soak.py                      # 200 trials, 200 images, 2 at a time on 2 cores
    python scripts/soak.py --trials 40 --out soak.csv

Samples every second: trials finished so far, RSS of the driver (`python -m tune_mnist.run`), of the
trial workers (`ray::` processes) and of Ray's own daemons (GCS, raylet). At the end it checks that
every trial is in trials.parquet and that no RSS grew more than 10% from the 10% mark (trial 20 of
200) to the end, and exits 1 if not.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

GROUPS = ("driver", "workers", "ray_daemons")


def _rss_by_group(session: int, driver_pid: int) -> dict[str, float]:
    """Resident memory in MiB of the driver, the trial workers and Ray's daemons of one session."""
    totals = dict.fromkeys(GROUPS, 0.0)
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            if os.getsid(proc.pid) != session:
                continue
            rss = proc.memory_info().rss / 2**20
        except (OSError, psutil.Error):
            continue
        command = " ".join(proc.info["cmdline"] or [proc.info["name"] or ""])
        if proc.pid == driver_pid:
            totals["driver"] += rss
        elif "ray::" in command or "default_worker.py" in command:
            totals["workers"] += rss
        else:
            totals["ray_daemons"] += rss
    return totals


def _finished(run_dir: Path) -> int:
    return sum(1 for f in run_dir.glob("train_pair_*/result.json") if f.stat().st_size > 0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--train-subset", type=int, default=200)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--out", default="soak.csv", help="CSV of the samples")
    parser.add_argument("--storage-path", default=None, help="default: a temporary folder")
    args = parser.parse_args()

    storage = Path(args.storage_path or tempfile.mkdtemp(prefix="tune_mnist_soak_"))
    storage.mkdir(parents=True, exist_ok=True)
    space = storage / "soak.yaml"
    space.write_text(f"num_conv: 0\nnum_dense: 0\nbatch_size: 50\nseeds: {args.trials}\n")
    run_dir = storage / "soak"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tune_mnist.run",
            "--space",
            str(space),
            "--train-subset",
            str(args.train_subset),
            "--max-epochs",
            "1",
            "--max-concurrent",
            str(args.max_concurrent),
            "--yes",
            "--storage-path",
            str(storage),
            "--name",
            "soak",
        ],
        stdout=open(storage / "soak.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    samples = []
    started = time.monotonic()
    try:
        while driver.poll() is None:
            samples.append(
                {
                    "seconds": round(time.monotonic() - started, 1),
                    "trials_done": _finished(run_dir),
                    **_rss_by_group(driver.pid, driver.pid),
                }
            )
            time.sleep(1)
    finally:
        for proc in psutil.process_iter():  # whatever of this search's Ray is left
            try:
                if os.getsid(proc.pid) == driver.pid:
                    proc.kill()
            except (OSError, psutil.Error):
                continue
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)

    frame = pd.DataFrame(samples)
    mark = max(1, args.trials // 10)
    at_mark = frame[frame["trials_done"] >= mark]
    # The search's last stretch; after it the driver imports TensorFlow to score the test set, a
    # different phase, not growth.
    at_end = frame[
        (frame["trials_done"] >= args.trials - mark) & (frame["trials_done"] < args.trials)
    ]
    trials = (
        pd.read_parquet(run_dir / "trials.parquet")
        if (run_dir / "trials.parquet").is_file()
        else pd.DataFrame()
    )
    print(
        f"search exit status {driver.returncode}, "
        f"{len(trials)} of {args.trials} trials in trials.parquet, "
        f"{frame['seconds'].iloc[-1]:.0f} s; log {storage / 'soak.log'}; samples {args.out}"
    )
    ok = (
        driver.returncode == 0
        and trials["pair_id"].nunique() == args.trials
        and trials["trial_id"].is_unique
    )
    for group in GROUPS:
        # Workers come and go with trials: compare the peak of a window of samples, not one sample.
        first = at_mark[group].head(30).max()
        last = at_end[group].tail(30).max() if not at_end.empty else float("nan")
        growth = last / first - 1 if first else float("nan")
        print(
            f"{group:12s} RSS at trial {mark}: {first:7.0f} MiB, "
            f"at the end: {last:7.0f} MiB ({growth:+.1%})"
        )
        ok = ok and growth <= 0.10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
