"""Measurements that need a fresh process, and starting such processes.

A process's TensorFlow thread counts (and TF_ENABLE_ONEDNN_OPTS) are fixed before its first op, so
a figure for another setting needs another process: `benchmark.py --worker SPEC` runs `worker`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import SCRIPT
from bench.configs import config, fashion


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process (thread counts must be set before TensorFlow's first op)."""
    from tune_mnist.trainable import set_threads

    if spec.get("threads"):
        set_threads(spec["threads"])
    if spec["kind"] == "throughput":
        return throughput(spec)
    if spec["kind"] == "back_to_back":
        return back_to_back(spec)
    if spec["kind"] == "keras_tuner":
        from bench.keras_tuner_race import keras_tuner_worker  # the optional `race` extra

        return keras_tuner_worker(spec)
    raise ValueError(spec["kind"])


def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """Images/s of the service's path over about `seconds` of whole epochs."""
    from bench.timing import service_dataset
    from tune_mnist.model import compile_model

    search = fashion(spec["images"])
    cfg = config(**spec["config"])
    model = compile_model(cfg)
    train = service_dataset(
        search.x_train, search.y_train, batch_size=cfg["batch_size"], seed=0, mixup=spec["mixup"]
    )
    model.fit(train.take(3), verbose=0)  # trace outside the timed window
    if spec.get("barrier"):  # start together so the timed windows overlap
        wait_for_peers(Path(spec["barrier"]), spec["peers"])
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < spec["seconds"]:
        model.fit(train, epochs=1, verbose=0)
        images += len(search.x_train)
    return {"images_per_second": images / (time.perf_counter() - started)}


def wait_for_peers(barrier: Path, peers: int) -> None:
    """Mark this process ready in `barrier`, then wait until all `peers` are."""
    (barrier / f"ready-{os.getpid()}").touch()
    while len(list(barrier.glob("ready-*"))) < peers:
        time.sleep(0.05)


def back_to_back(spec: dict[str, Any]) -> dict[str, Any]:
    """The pairs of a space trained one after another in this process, as the trainable does
    (per arm: fit one epoch, evaluate clean and mixed validation), without Tune."""
    import keras

    from tune_mnist.metrics import score
    from tune_mnist.model import compile_model
    from tune_mnist.pipeline import TrainingSet
    from tune_mnist.space import load_space
    from tune_mnist.trainable import ValidationSets

    search = fashion(spec["train_subset"], val_fraction=spec["val_fraction"])
    validation = ValidationSets.of(search)
    n = len(validation.labels)
    training = TrainingSet.from_arrays(search.x_train, search.y_train)
    for cfg in load_space(spec["space"]).grid_configs():
        for alpha in (None, cfg["mixup_alpha"]):  # the plain arm, then the MixUp arm
            keras.utils.set_random_seed(cfg["seed"])
            model = compile_model(cfg)
            for epoch in range(1, spec["max_epochs"] + 1):
                batches = training.epoch(
                    epoch=epoch, seed=cfg["seed"], batch_size=cfg["batch_size"], mixup_alpha=alpha
                )
                model.fit(batches, epochs=epoch, initial_epoch=epoch - 1, verbose=0)
                # The trainable's per-epoch scoring: one predict call for both sets.
                both = model.predict(validation.images_then_mixed, batch_size=500, verbose=0)
                score(both[:n], validation.labels), score(both[n:], validation.mixed_labels)
    return {}


def spawn(spec: dict[str, Any], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `worker(spec)` in a fresh process, with `env` added to this one's environment."""
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The figures a spawned worker printed (its last stdout line); raises if it failed."""
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"worker failed with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])
