"""The Ray Tune trainable: thin glue that trains one configuration an epoch at a time.

Every epoch it reports the public metrics (see METRICS) and a checkpoint of the model, so ASHA can
stop it, a failed trial can be retried from its last epoch and `--resume` can continue it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from tune_mnist.checkpoint import load_checkpoint, save_checkpoint
from tune_mnist.data import SearchData, apply_mix
from tune_mnist.metrics import score
from tune_mnist.resources import ResourcePlan, configure_tensorflow_gpus, configure_tensorflow_threads

# Testing hook, never set in normal use: a comma-separated list of faults. "error:KEY=VALUE" makes every attempt of the trials whose
# config has KEY == VALUE raise; "nan:KEY=VALUE" gives their model NaN weights, so training really
# produces a NaN loss. Used by tests/test_reliability.py to exercise ERROR and DIVERGED end to end.
FAULT_ENV = "TUNE_MNIST_TESTING_FAULT"


class InjectedFault(RuntimeError):
    """Raised by the testing hook FAULT_ENV."""


def injected_fault(config: dict[str, Any]) -> str | None:
    """The fault FAULT_ENV asks for this trial ('error' or 'nan'), or None."""
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        kind, _, selector = spec.strip().partition(":")
        key, _, value = selector.partition("=")
        if kind in ("error", "nan") and key in config and str(config[key]).lower() == value.lower():
            return kind
    return None


@dataclass(frozen=True)
class TrialSettings:
    """Run-wide settings every trial shares (not searched over)."""

    max_epochs: int
    patience: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0


def set_threads(cpus: float) -> None:
    """Give TensorFlow as many threads as the trial holds CPUs.

    Without this each trial starts one thread per core of the machine and concurrent trials fight
    over the cores. Must run before TensorFlow executes its first op in this process.
    """
    try:
        configure_tensorflow_threads(ResourcePlan(cpus_per_trial=cpus))
    except RuntimeError:
        pass  # this worker already ran TensorFlow (a reused actor): keep its thread pools


def import_tensorflow() -> None:
    """Ray's worker setup hook: import TensorFlow and Keras as soon as a worker process starts.

    Ray starts workers while the driver is still setting up Tune, so the import (about 6 s on a
    2-core machine) no longer delays the first epoch. Runs no TensorFlow op, so set_threads still works.
    """
    import keras  # noqa: F401

    import tune_mnist.model  # noqa: F401
    import tune_mnist.pipeline  # noqa: F401


def _report(metrics: dict[str, Any], model: Any, state: dict[str, Any], *, checkpoint: bool) -> None:
    """Report one epoch; tune.report copies the checkpoint to storage before it returns."""
    from ray import tune

    if not checkpoint:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="tune_mnist_ckpt_") as directory:
        save_checkpoint(Path(directory), model, state)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def train_trial(config: dict[str, Any], data: SearchData, settings: TrialSettings) -> None:
    """Train one configuration, reporting metrics and a checkpoint after every epoch."""
    set_threads(settings.cpus_per_trial)
    configure_tensorflow_gpus(ResourcePlan(settings.cpus_per_trial, settings.gpus_per_trial))
    import keras

    # A reused worker must not keep the previous trial's graphs and models alive.
    keras.backend.clear_session()
    try:
        _train(config, data, settings)
    finally:
        keras.backend.clear_session()


def _train(config: dict[str, Any], data: SearchData, settings: TrialSettings) -> None:
    import keras
    import ray
    from ray import tune

    from tune_mnist.model import compile_model
    from tune_mnist.pipeline import training_dataset, with_label_noise

    keras.utils.set_random_seed(config["seed"])
    y_train = with_label_noise(data.y_train, config["label_noise"], seed=config["seed"])
    train = training_dataset(
        data.x_train, y_train, batch_size=config["batch_size"], seed=config["seed"],
        mixup=config["mixup"], mixup_alpha=config["mixup_alpha"],
    )
    val_images = data.x_val.astype(np.float32)[..., None] / 255.0
    val_labels = np.eye(10, dtype=np.float32)[data.y_val]
    mixed_images, mixed_labels = apply_mix(data.x_val, data.y_val, data.val_mix)
    mixed_images = mixed_images[..., None]

    state = {"epoch": 0, "best_val_acc": -1.0, "epochs_since_best": 0}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            model, state = load_checkpoint(directory)
    else:
        model = compile_model(config)
    fault = injected_fault(config)
    if fault == "error":
        raise InjectedFault(f"{FAULT_ENV} asked this trial to fail")
    if fault == "nan":
        model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    node_id = ray.get_runtime_context().get_node_id()

    for epoch in range(state["epoch"] + 1, settings.max_epochs + 1):
        started = time.perf_counter()
        history = model.fit(train, epochs=epoch, initial_epoch=epoch - 1, verbose=0).history
        seconds = time.perf_counter() - started
        clean = score(model.predict(val_images, batch_size=500, verbose=0), val_labels)
        mixed = score(model.predict(mixed_images, batch_size=500, verbose=0), mixed_labels)
        train_loss = float(history["loss"][-1])
        diverged = not math.isfinite(train_loss)
        if clean["acc"] > state["best_val_acc"]:
            state.update(best_val_acc=clean["acc"], epochs_since_best=0)
        else:
            state["epochs_since_best"] += 1
        state["epoch"] = epoch
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": float(history["acc"][-1]),
            "val_loss": clean["loss"],
            "val_acc": clean["acc"],
            "val_mixed_loss": mixed["loss"],
            "val_mixed_acc": mixed["acc"],
            "val_ece": clean["ece"],
            "val_mixed_ece": mixed["ece"],
            "epoch_seconds": seconds,
            "images_per_second": len(data.x_train) / seconds,
            "diverged": diverged,
            "node_id": node_id,
        }
        # A diverged model's weights are NaN: nothing worth restoring, so no checkpoint.
        _report(metrics, model, state, checkpoint=not diverged)
        if diverged:
            return
        if settings.patience is not None and state["epochs_since_best"] >= settings.patience:
            return
