"""The sections that run whole processes: concurrency, Tune's overhead, memory, ASHA's savings.

Each takes the run's Context and returns its figures.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from bench.configs import config
from bench.context import Context, log
from bench.service import run_service, write_space
from bench.workers import collect, spawn

OVERHEAD_TRIALS = 4  # models of the tune section's grid: num_conv 1, 2, each a pair (plain, MixUp)


def concurrency_section(ctx: Context) -> dict[str, Any]:
    """One trial on all cores against one single-threaded trial per core, started together."""
    spec = {
        "kind": "throughput",
        "config": {"num_conv": 2},
        "images": 300 if ctx.quick else 3000,
        "mixup": False,
        "seconds": ctx.measure_s * 1.5,
    }
    cores = ctx.cores
    log("concurrency: 1 trial x all cores")
    all_cores = collect(spawn({**spec, "threads": cores}))["images_per_second"]
    log("concurrency: 1 trial x 1 core, alone")
    one_core = collect(spawn({**spec, "threads": 1}))["images_per_second"]
    log(f"concurrency: {cores} trials x 1 core")
    barrier = tempfile.mkdtemp(dir=ctx.scratch)
    peers = {**spec, "threads": 1, "barrier": barrier, "peers": cores}
    procs = [spawn(peers) for _ in range(cores)]  # all started before any is collected
    per_core = sum(collect(p)["images_per_second"] for p in procs)
    return {
        "config": "num_conv=2 plain",
        "cores": cores,
        "one_trial_all_cores": all_cores,
        "one_trial_one_core_alone": one_core,
        "one_trial_per_core_aggregate": per_core,
        "aggregate_vs_n_x_one_core": per_core / (cores * one_core),
        "aggregate_vs_one_trial_all_cores": per_core / all_cores,
        "default_placement": "--cpus-per-trial 1: one trial per core, TensorFlow threads = 1",
    }


def tune_section(ctx: Context) -> dict[str, Any]:
    """The same small grid trained back to back in one process and through the service."""
    keys = {**config(num_conv=2), "num_conv": {"grid": [1, 2]}}
    space = write_space(ctx.scratch, "overhead", {**keys, "seed": 0})
    # Quick: small validation split, so validation does not dwarf the 1,000-image epochs.
    n, epochs, val_fraction = (1000, 1, 0.02) if ctx.quick else (10000, 2, 0.1)
    common = ["--space", str(space), "--dataset", "fashion_mnist", "--train-subset", str(n)]
    common += ["--max-epochs", str(epochs), "--val-fraction", str(val_fraction)]
    log("tune: same trials back to back in one process")
    spec = {"kind": "back_to_back", "space": str(space), "train_subset": n, "max_epochs": epochs}
    b2b = _worker_seconds(spec | {"val_fraction": val_fraction, "threads": ctx.cores})
    log("tune: the service, one trial at a time on all cores (defaults: reused workers)")
    sequential = [*common, "--cpus-per-trial", str(ctx.cores), "--max-concurrent", "1"]
    service = run_service(sequential, ctx.scratch / "runs", "overhead")
    log("tune: the service with --no-reuse-workers")
    fresh = run_service([*sequential, "--no-reuse-workers"], ctx.scratch / "runs", "overhead-fresh")
    log("tune: the quickstart (no options), to its first epoch")
    quickstart = run_service([], ctx.scratch / "runs", "quickstart")
    default = {} if ctx.quick else run_service(common, ctx.scratch / "runs", "default")
    return {
        "trials": OVERHEAD_TRIALS,
        "train_images": n,
        "epochs": epochs,
        "val_fraction": val_fraction,
        **_overhead_figures(b2b, service, fresh),
        "quickstart_first_epoch_seconds": quickstart["first_epoch_seconds"],
        "service_default_placement_seconds": default.get("wall_seconds"),
    }


def _worker_seconds(spec: dict[str, Any]) -> float:
    """Wall seconds of a worker process, from its start to its figures."""
    started = time.time()
    collect(spawn(spec))
    return time.time() - started


def _search_seconds(run: dict[str, Any]) -> float:
    """A service run's wall time less its results phase after the search.

    After the search the service builds the tables, scores the two best models on the test set and
    exports them, which the back-to-back loop does not: that phase's time (from the run's
    manifest) is reported, not counted.
    """
    return run["wall_seconds"] - run["seconds"]["results"]


def _fraction_if_trials_took_30s(overhead: float) -> float:
    """The overhead's share of a search whose trials each train for 30 s."""
    return overhead / (overhead + OVERHEAD_TRIALS * 30)


def _overhead_figures(b2b: float, service: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """Tune's overhead over the back-to-back loop, with the defaults (reused workers) and with a
    fresh worker per trial."""
    tuned, tuned_fresh = _search_seconds(service), _search_seconds(fresh)
    return {
        "back_to_back_one_process_seconds": b2b,
        "service_sequential_seconds": service["wall_seconds"],
        "service_seconds_by_phase": service["seconds"],
        "results_seconds": service["seconds"]["results"],
        "overhead_seconds": tuned - b2b,
        "overhead_fraction": 1 - b2b / tuned,
        "overhead_fraction_if_trials_took_30s": _fraction_if_trials_took_30s(tuned - b2b),
        "first_epoch_seconds": service["first_epoch_seconds"],
        "fresh_workers": {
            "service_sequential_seconds": fresh["wall_seconds"],
            "overhead_seconds": tuned_fresh - b2b,
            "overhead_fraction_if_trials_took_30s": _fraction_if_trials_took_30s(tuned_fresh - b2b),
        },
    }


def memory_section(ctx: Context) -> dict[str, Any]:
    """Peak RSS of the driver and of a trial on full Fashion-MNIST, through the service."""
    keys = {**config(num_conv=0), "batch_size": 500, "seed": 0}
    space = write_space(ctx.scratch, "memory", keys)
    log("memory: full Fashion-MNIST through the service")
    args = ["--space", str(space), "--dataset", "fashion_mnist", "--max-epochs", "1"]
    found = run_service(args, ctx.scratch / "runs", "memory", watch_memory=True)
    return {
        "dataset": "fashion_mnist full (54,000 train / 6,000 validation)",
        "model": "num_conv=0 num_dense=0 (the data and runtime dominate memory)",
        **found,
    }


def asha_section(ctx: Context) -> dict[str, Any] | None:
    """Trial-epochs and best accuracy of the original grid with and without ASHA (full mode)."""
    if ctx.quick:
        return None  # about 16 minutes: too long for a quick run
    found = {scheduler: _seed_grid_run(ctx, scheduler) for scheduler in ("grid", "asha")}
    return {
        "space": "seed_grid.yaml, 2,000 Fashion-MNIST training / 1,200 validation images, "
        "6 epochs, grace 1, rf 3",
        **found,
        "trial_epoch_fraction": found["asha"]["trial_epochs"] / found["grid"]["trial_epochs"],
        "best_val_acc_gap": found["grid"]["best_val_acc"] - found["asha"]["best_val_acc"],
    }


def _seed_grid_run(ctx: Context, scheduler: str) -> dict[str, Any]:
    """seed_grid.yaml through the service with `--scheduler scheduler`: its cost and best."""
    from tune_mnist import results

    args = ["--space", "seed_grid", "--dataset", "fashion_mnist"]
    args += ["--train-subset", "2000", "--val-fraction", "0.02", "--max-epochs", "6"]
    args += ["--grace-period", "1", "--reduction-factor", "3", "--scheduler", scheduler]
    log(f"asha: original grid with --scheduler {scheduler}")
    timing = run_service(args, ctx.scratch / "runs", f"seed-{scheduler}")
    trials = results.load(ctx.scratch / "runs" / f"seed-{scheduler}").trials
    return {
        "trial_epochs": int(trials["epochs_run"].sum()),
        "best_val_acc": float(trials["best_val_acc"].max()),
        **timing,
    }
