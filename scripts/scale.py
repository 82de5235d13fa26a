"""The driver at scale: an N-trial search of trials that do almost nothing, behind our Tuner.

    python scripts/scale.py --trials 2000 --json scale.json
    python scripts/scale.py --trials 10000            # about 15-30 minutes on 2 cores

Every trial is a pair trial that reports one epoch in train_pair's shape (both arms' metrics under
`plain` and `mixup`, `pair_val_acc`) with a checkpoint in our format (state and validation
predictions, no models), through `tune_mnist.tuning._tune`: the same TuneConfig, RunConfig,
checkpoint settings, callbacks (PairProgress) and result files as `python -m tune_mnist.run`, on a
local Ray with more logical CPUs than cores (--cpus) so that Tune, not the trials, is what runs.
Reports the driver's RSS against the number of finished trials (a row every --sample-every
trials), trials started per second, and how long `results.collect` takes to read all N trials
back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from ray.tune import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's tune_mnist

from tune_mnist import results, tuning  # noqa: E402
from tune_mnist.config import SearchConfig  # noqa: E402
from tune_mnist.run import parse_config  # noqa: E402
from tune_mnist.storage import split  # noqa: E402

VALIDATION_IMAGES = 100  # per arm and trial in the checkpoint's predictions (a real run: thousands)


def noop_pair(config: dict[str, Any], data: Any, settings: Any) -> None:
    """One epoch's report of a pair in train_pair's shape, and a checkpoint in its format."""
    import numpy as np
    from ray import tune

    from tune_mnist.checkpoint import save_checkpoint
    from tune_mnist.metrics import METRICS
    from tune_mnist.trainable import PAIR_METRIC, PairState

    arm = {**dict.fromkeys(METRICS, 0.5), "epoch": 1, "diverged": False}
    state = PairState(epoch=1, best_pair_val_acc=0.5)
    predictions = {a: np.zeros((1, VALIDATION_IMAGES), np.int8) for a in ("plain", "mixup")}
    with tempfile.TemporaryDirectory(prefix="tune_mnist_scale_") as directory:
        save_checkpoint(Path(directory), {}, vars(state), predictions, np.zeros(VALIDATION_IMAGES))
        report = {"epoch": 1, PAIR_METRIC: 0.5, "plain": arm, "mixup": dict(arm), "node_id": "n"}
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(directory))


def driver_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


class DriverMeter(Callback):
    """When each trial started, and the driver's RSS every `every` finished trials."""

    def __init__(self, every: int) -> None:
        self.every, self.started, self.finished = every, [], 0
        self.samples = [{"trials_finished": 0, "driver_rss_mib": driver_mib(), "s": 0.0}]
        self.t0 = time.perf_counter()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.append(time.perf_counter() - self.t0)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        if self.finished % self.every == 0:
            seconds = round(time.perf_counter() - self.t0, 1)
            sample = {
                "trials_finished": self.finished,
                "driver_rss_mib": driver_mib(),
                "s": seconds,
            }
            self.samples.append(sample)
            print(f"scale: {sample}", file=sys.stderr, flush=True)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this driver and of the processes it started (Ray's)."""

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:  # a worker that exited meanwhile
            return 0.0
        return times.user + times.system

    driver = psutil.Process()
    return {"driver": used(driver), "ray": sum(map(used, driver.children(recursive=True)))}


def growth_mib_per_trial(samples: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of RSS against trials finished, from the first sample after start-up
    (the first --sample-every trials fill Tune's and Ray's one-off caches)."""
    import numpy as np

    points = samples[1:]
    if len(points) < 2:
        return None
    x = np.array([p["trials_finished"] for p in points], float)
    y = np.array([p["driver_rss_mib"] for p in points], float)
    return float(np.polyfit(x, y, 1)[0])


ARCHITECTURES = 10  # the space's grid: num_conv 0-4 x num_dense 0-1, repeated over seeds


NOOP_TRIALS_PER_WORKER = 1000


def search_config(trials: int, storage: Path, reuse: bool) -> SearchConfig:
    """`python -m tune_mnist.run`'s arguments for N one-epoch pairs (N/10 seeds of 10 models), as a
    large study has them: many seeds of a few architectures, compared per architecture."""
    storage.mkdir(parents=True, exist_ok=True)  # --storage-path may name a new folder
    space = storage / "scale.yaml"
    space.write_text("num_conv: {grid: [0, 1, 2, 3, 4]}\nnum_dense: {grid: [0, 1]}\n")
    argv = [
        "--space", str(space), "--seeds", str(trials // ARCHITECTURES), "--yes",
        "--max-epochs", "1",
        "--storage-path", str(storage), "--name", "scale", "--train-subset", "100",
        "--cpus-per-trial", "1",
    ]  # fmt: skip
    # The retirement rule stays on (a worker past --worker-max-rss-mib is replaced), but not the
    # default of 10 trials a worker: that bounds model.fit's leak, and these trials train no model;
    # a worker start every 10 no-op trials would measure process starts, not the driver.
    if reuse:
        argv += ["--worker-max-trials", str(NOOP_TRIALS_PER_WORKER)]
    else:
        argv.append("--no-reuse-workers")
    return parse_config(argv)


def run(trials: int, cpus: int, every: int, storage: Path, reuse: bool) -> dict[str, Any]:
    import ray

    config, space, run_dir = tuning.prepare(search_config(trials, storage, reuse))
    data = tuning._load_data(config)
    ray.init(num_cpus=cpus, include_dashboard=False)
    meter = DriverMeter(every)
    started = time.perf_counter()
    tuning._tune(
        config, space, data, *split(run_dir), trainable_function=noop_pair, extra_callbacks=[meter]
    )
    search_s = time.perf_counter() - started
    cpu = cpu_seconds()
    ray.shutdown()
    collect_started = time.perf_counter()
    tables = results.collect(run_dir)
    collect_s = time.perf_counter() - collect_started
    starts = meter.started
    return {
        "trials": trials,
        "logical_cpus": cpus,
        "reuse_workers": reuse,
        "search_seconds": search_s,
        "trials_started": len(starts),
        # From the first start to the last: Ray's start-up is not Tune's per-trial cost.
        "trials_started_per_second": (len(starts) - 1) / (starts[-1] - starts[0]),
        "driver_rss": meter.samples,
        "driver_growth_mib_per_trial": growth_mib_per_trial(meter.samples),
        "collect_seconds": collect_s,
        # What limits the rate: the driver's CPU share of the search's wall time, the CPU the
        # local Ray's processes (GCS, raylet, trial workers still alive) used, and the machine's
        # load (other processes on the same cores slow every round trip of a trial).
        "driver_cpu_seconds": cpu["driver"],
        "ray_processes_cpu_seconds": cpu["ray"],
        "load_average_1min_at_end": os.getloadavg()[0],
        "collected_pairs": int(tables.trials["pair_id"].nunique()),
    }


def table(figures: dict[str, Any]) -> str:
    lines = ["trials finished  driver RSS (MiB)  seconds"]
    for s in figures["driver_rss"]:
        lines.append(f"{s['trials_finished']:15d}  {s['driver_rss_mib']:16.1f}  {s['s']:7.1f}")
    growth = figures["driver_growth_mib_per_trial"]
    lines += [
        f"driver growth: {growth:.4f} MiB per trial" if growth is not None else "driver growth: -",
        f"trials started per second: {figures['trials_started_per_second']:.1f}",
        f"results.collect of {figures['collected_pairs']} pairs: "
        f"{figures['collect_seconds']:.1f} s",
        f"driver CPU: {figures['driver_cpu_seconds']:.0f} s of {figures['search_seconds']:.0f} s; "
        f"Ray's processes: {figures['ray_processes_cpu_seconds']:.0f} s; "
        f"load average at the end: {figures['load_average_1min_at_end']:.1f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10000)
    # 8, not more, on 2 cores: with reused workers Tune requests a new worker for every free
    # logical CPU and discards it once a finished trial's worker is reused instead; with 32 the
    # cores spent their time starting discarded workers (500 trials: 2.7 trials/s, with 8: 7.4).
    parser.add_argument("--cpus", type=int, default=8, help="Ray's logical CPUs (trials at once)")
    parser.add_argument("--sample-every", type=int, default=500, help="trials between samples")
    parser.add_argument(
        "--fresh-workers", action="store_true", help="a new worker per trial (--no-reuse-workers)"
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--storage-path", help="keep the run here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.trials % ARCHITECTURES or not 0 < args.trials <= 1000 * ARCHITECTURES:
        parser.error(f"--trials: a multiple of {ARCHITECTURES} up to {1000 * ARCHITECTURES}")
    with tempfile.TemporaryDirectory(prefix="tune_mnist_scale_") as scratch:
        storage = Path(args.storage_path or scratch).resolve()
        figures = run(args.trials, args.cpus, args.sample_every, storage, not args.fresh_workers)
    print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
