"""The race: time to accuracy on Fashion-MNIST, our search against Keras Tuner's Hyperband.

Three paths, one after the other, each with the same wall-clock budget, on the same split (the
service's: seed 0, 10% of the training images held out for validation, the official test set):

- `random+asha`: `python -m tune_mnist.run --space search_spaces/asha_wide.yaml --search-alg random
  --scheduler asha`, stopped with Ctrl-C (SIGINT) at the budget, as a user would stop it;
- `tpe+asha`: the same with `--search-alg tpe`;
- `keras_tuner`: Keras Tuner's `Hyperband` (same max epochs, factor = our reduction factor 3) on the
  same space, its models built by `tune_mnist.model.compile_model`, in a worker process killed at
  the budget.

MixUp: our search trains every configuration twice, the plain and the MixUp arm of a pair (the
design the comparison needs); Keras Tuner gets `mixup` as one more boolean hyperparameter, so each
of its trials trains one model. For the race that costs us: about half our compute goes to the arm
the comparison needs, not to finding new configurations, and ASHA judges a pair by the mean of its
arms, so a configuration good in one arm only can be stopped. Both arms count as models found.

The clock starts when a path's process starts (Ray or TensorFlow start-up and loading the data
count). The curve of a path is the best validation accuracy of any model reported so far. At each
improvement the model that holds the best validation accuracy (the one a user would pick) is
scored on the test set after the race; the test set never chooses. Time to target: the first
improvement whose model's test accuracy reaches the target. To score those models afterwards,
our checkpoints are hard-linked as Tune writes them (Tune keeps only the last two per trial), and
Keras Tuner's path saves a model at each improvement (a few tenths of a second, on its clock).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import REPO, SCRIPT
from bench.context import Context, RaceOptions, log
from bench.service import service_env
from tune_mnist.tuning import EXIT_INTERRUPTED

SPACE = REPO / "search_spaces" / "asha_wide.yaml"
REDUCTION_FACTOR = 3
OURS = {"random+asha": "random", "tpe+asha": "tpe"}
KERAS_TUNER = "keras_tuner"
PATHS = (*OURS, KERAS_TUNER)
RULE = (
    "minutes from the path's start to the first new best validation accuracy whose model "
    "scores >= target on the test set"
)


@dataclass(frozen=True)
class Found:
    """One model reported during the race: when, its validation accuracy, where it was saved."""

    seconds: float
    val_acc: float
    model: Path | None  # None: no saved model (a lost checkpoint)
    label: str


def race_section(ctx: Context) -> dict[str, Any]:
    """The three paths, one after the other, then every improvement's model on the test set."""
    options = ctx.race
    folder = ctx.scratch / "race"
    paths: dict[str, Any] = {}
    for name in PATHS:
        log(f"race: {name} for {options.minutes:g} minutes")
        runner = _run_keras_tuner if name == KERAS_TUNER else _run_ours
        found, counts = runner(name, folder / name, options)
        paths[name] = {**summary(found, options.target, test_accuracy), **counts}
    figure = _figure(paths, options)
    return {
        "minutes": options.minutes,
        "target_test_acc": options.target,
        "max_epochs": options.max_epochs,
        "train_subset": options.train_subset,
        "time_to_target": RULE,
        "figure": str(figure),
        "paths": paths,
    }


def _run_ours(name: str, folder: Path, options: RaceOptions) -> tuple[list[Found], dict[str, int]]:
    """Our search for the budget, then Ctrl-C; the models of every epoch kept by hard links."""
    storage, models, run_name = folder / "runs", folder / "models", name.replace("+", "-")
    command = [
        sys.executable, "-m", "tune_mnist.run", "--space", str(SPACE), "--search-alg", OURS[name],
        "--scheduler", "asha", "--num-samples", "500", "--dataset", "fashion_mnist",
        "--max-epochs", str(options.max_epochs), "--grace-period", "1",
        "--reduction-factor", str(REDUCTION_FACTOR), "--storage-path", str(storage),
        "--name", run_name, *_subset_args(options),
    ]  # fmt: skip
    started = time.time()
    proc = _start(command, folder / "output.txt", env=service_env())
    keeper = CheckpointKeeper(storage / run_name, models)
    _wait_budget(proc, started, options)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # Tune stops its trials and the service writes its tables
    _finish(proc, grace_s=600)
    keeper.stop()
    if proc.returncode not in (0, EXIT_INTERRUPTED):
        tail = (folder / "output.txt").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"race {name}: tune_mnist.run failed ({proc.returncode}):\n{tail}")
    reports = _our_reports(storage / run_name, models, started)
    found = [f for f in reports if f.seconds <= _budget(options)]
    configs = len(list((storage / run_name).glob("*/params.json")))
    return found, {"configurations": configs, "models_trained": 2 * configs}


def _subset_args(options: RaceOptions) -> list[str]:
    return ["--train-subset", str(options.train_subset)] if options.train_subset else []


def _budget(options: RaceOptions) -> float:
    return 60 * options.minutes


def _start(command: list[str], output: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A path's process in its own session (so whatever it starts can be ended with it)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )


def _wait_budget(proc: subprocess.Popen[bytes], started: float, options: RaceOptions) -> None:
    try:
        proc.wait(timeout=max(0.0, started + _budget(options) - time.time()))
    except subprocess.TimeoutExpired:
        pass


def _finish(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait for the process to end, then end what is left of its session (Ray's processes)."""
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        if grace_s:  # with none, the kill is the plan
            log(f"race: process {proc.pid} still running after {grace_s:.0f} s, killed")
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the session is already empty
    proc.wait()


class CheckpointKeeper:
    """Hard-links every checkpoint's models as Tune writes them (Tune deletes all but the last
    two of a trial), as models/<trial folder>/<epoch>/<arm>.keras; no copy, no cost to training."""

    def __init__(self, run_dir: Path, models: Path, interval: float = 0.5) -> None:
        self.run_dir, self.models, self.interval = run_dir, models, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.keep()

    def keep(self) -> None:
        for checkpoint in self.run_dir.glob("*/checkpoint_*"):
            try:
                epoch = json.loads((checkpoint / "state.json").read_text())["epoch"]
                for model in checkpoint.glob("*.keras"):
                    target = self.models / checkpoint.parent.name / str(epoch) / model.name
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.link(model, target)
            except (OSError, ValueError, KeyError):
                continue  # being written or already deleted: the next round sees it

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.keep()


def _our_reports(run_dir: Path, models: Path, started: float) -> list[Found]:
    """Every arm's every epoch from the trials' result.json (Tune's timestamps: whole seconds)."""
    found = []
    for result in run_dir.glob("*/result.json"):
        for line in result.read_text().splitlines():
            try:
                report = json.loads(line)
            except ValueError:
                continue  # a line cut by the stop
            for arm in ("plain", "mixup"):
                val_acc = report.get(arm, {}).get("val_acc")
                if val_acc is None or not math.isfinite(val_acc):
                    continue  # a diverged arm
                model = models / result.parent.name / str(report["epoch"]) / f"{arm}.keras"
                found.append(
                    Found(
                        seconds=report["timestamp"] - started,
                        val_acc=val_acc,
                        model=model if model.is_file() else None,
                        label=f"{result.parent.name[:22]} {arm} epoch {report['epoch']}",
                    )
                )
    return found


def _run_keras_tuner(
    name: str, folder: Path, options: RaceOptions
) -> tuple[list[Found], dict[str, int]]:
    """Keras Tuner's Hyperband in a worker process, killed at the budget."""
    spec = {
        "kind": "keras_tuner",
        "folder": str(folder),
        "max_epochs": options.max_epochs,
        "train_subset": options.train_subset,
        "threads": os.cpu_count() or 1,  # one process: all cores, as Keras Tuner runs it
    }
    started = time.time()
    command = [sys.executable, str(SCRIPT), "--worker", json.dumps(spec)]
    proc = _start(command, folder / "output.txt", env=dict(os.environ))
    _wait_budget(proc, started, options)
    _finish(proc, grace_s=0)
    rows = []
    log_file = folder / "log.jsonl"
    for line in log_file.read_text().splitlines() if log_file.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by the kill
    found = [
        Found(
            seconds=row["time"] - started,
            val_acc=row["val_acc"],
            model=Path(row["model"]) if row.get("model") else None,
            label=f"trial {row['trial']} epoch {row['epoch']}",
        )
        for row in rows
        if row["time"] - started <= _budget(options)
    ]
    configs = len({json.dumps(row["config"], sort_keys=True) for row in rows})
    return found, {"configurations": configs, "models_trained": len({r["trial"] for r in rows})}


def summary(
    found: list[Found], target: float, score: Callable[[Path | None], float | None]
) -> dict[str, Any]:
    """The curve (each improvement: minutes, validation accuracy, `score` of its model, the test
    accuracy) and the time to target: the first improvement whose model scores >= `target`."""
    curve, best = [], -1.0
    # Tune's timestamps are whole seconds: of the models of one second, the best counts.
    for f in sorted(found, key=lambda f: (f.seconds, -f.val_acc)):
        if f.val_acc > best:
            best = f.val_acc
            curve.append(
                {
                    "minutes": f.seconds / 60,
                    "val_acc": f.val_acc,
                    "test_acc": score(f.model),
                    "model": f.label,
                }
            )
    reached = [p["minutes"] for p in curve if (p["test_acc"] or 0) >= target]
    last = curve[-1] if curve else {}
    return {
        "time_to_target_minutes": reached[0] if reached else None,
        "best_val_acc": last.get("val_acc"),
        "chosen_test_acc": last.get("test_acc"),
        "chosen_model": last.get("model"),
        "models_reported": len(found),
        "curve": curve,
    }


_TEST: dict[str, Any] = {}


def test_accuracy(model_file: Path | None) -> float | None:
    """Accuracy of a saved model on the Fashion-MNIST test set (None: the model was not kept)."""
    if model_file is None or not model_file.is_file():
        return None
    import keras
    import numpy as np

    import tune_mnist.layers  # noqa: F401  (registers the fused batch norm the models hold)
    from tune_mnist.data import load_arrays, scale_images

    if not _TEST:
        arrays = load_arrays("fashion_mnist")
        _TEST.update(images=scale_images(arrays.x_test), labels=arrays.y_test)
    model = keras.models.load_model(model_file, safe_mode=True)
    probs = model.predict(_TEST["images"], batch_size=500, verbose=0)
    keras.backend.clear_session()
    return float(np.mean(probs.argmax(axis=1) == _TEST["labels"]))


def _figure(paths: dict[str, Any], options: RaceOptions) -> Path:
    """Best validation accuracy (solid) and the chosen model's test accuracy (dotted) against
    minutes, one colour per path, the target as a grey line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (name, path), colour in zip(paths.items(), ("C0", "C1", "C2"), strict=False):
        curve = path["curve"]
        if not curve:
            continue
        minutes = [p["minutes"] for p in curve] + [options.minutes]
        val = [p["val_acc"] for p in curve]
        ax.step(minutes, [*val, val[-1]], where="post", color=colour, label=f"{name} (validation)")
        test = [p["test_acc"] if p["test_acc"] is not None else math.nan for p in curve]
        ax.step(minutes, [*test, test[-1]], where="post", color=colour, linestyle=":",
                label=f"{name} (test, chosen model)")  # fmt: skip
    ax.axhline(options.target, color="grey", linewidth=1, label=f"target {options.target}")
    ax.set(xlabel="minutes", ylabel="accuracy", xlim=(0, options.minutes))
    ax.set_title(f"Fashion-MNIST: best model found, {options.minutes:g} minutes per path")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    options.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(options.figure, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return options.figure
