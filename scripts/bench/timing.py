"""Timing training epochs: the service's own path per epoch, best of several turns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

EpochTimer = Callable[[], float]  # trains one epoch, returns its training images/s
DatasetMaker = Callable[..., "tf.data.Dataset"]  # service_dataset's signature


def timed(fit: Callable[[], Any], images: int) -> EpochTimer:
    """A timer that runs `fit` once per call and returns `images` per second of it."""

    def timer() -> float:
        started = time.perf_counter()
        fit()
        return images / (time.perf_counter() - started)

    return timer


def interleaved(timers: dict[str, EpochTimer], rounds: int) -> dict[str, float]:
    """Best images/s of each timer, timed in turns (a, b, a, b ...) so that a change of machine
    load hits all of them alike and their ratios stay meaningful."""
    best = dict.fromkeys(timers, 0.0)
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = max(best[name], timer())
    return best


def service_timer(
    cfg: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    mixup: bool,
    compiled: keras.Model | None = None,
    dataset: DatasetMaker | None = None,
    epochs: int = 1,
) -> EpochTimer:
    """The trainable's own path: compile_model + an epoch's batches + one model.fit per epoch
    (`epochs` such calls back to back per timing, as a trial makes them)."""
    from tune_mnist.model import compile_model

    model = compiled or compile_model(cfg)
    make = dataset or service_dataset
    train = make(
        x, y, batch_size=cfg["batch_size"], seed=0, mixup=mixup, mixup_alpha=cfg["mixup_alpha"]
    )
    model.fit(train.take(2), verbose=0)  # trace outside the timed epochs

    def fit() -> None:
        for _ in range(epochs):
            model.fit(train, epochs=1, verbose=0)

    return timed(fit, epochs * len(x))


def step_timer(model: keras.Model, x: np.ndarray, y: np.ndarray, seconds: float) -> EpochTimer:
    """Images/s of the compiled model's training step alone, on one fixed batch (x, y one-hot):
    Keras' own `train_step` in a tf.function, no tf.data and no `model.fit`, so the figure is the
    model's arithmetic and nothing around it. Each timing runs about `seconds`."""
    import tensorflow as tf

    step = tf.function(model.train_step)
    batch = (tf.constant(x), tf.constant(y))
    started = time.perf_counter()
    step(batch)  # trace outside the timed steps
    step(batch)
    steps = max(5, int(seconds / max(time.perf_counter() - started, 1e-3) * 2))

    def timer() -> float:
        began = time.perf_counter()
        for _ in range(steps):
            logs = step(batch)
        float(logs["loss"])  # wait for the last step
        return steps * len(x) / (time.perf_counter() - began)

    return timer


def epoch_images(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray, seconds: float) -> int:
    """How many images one epoch of `cfg` needs to last about `seconds` (from one short epoch)."""
    bs = cfg["batch_size"]
    small = min(len(x), 4 * bs)
    rate = service_timer(cfg, x[:small], y[:small], mixup=False)()  # service_timer traced already
    return min(len(x), max(small, int(rate * seconds) // bs * bs))


def service_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    mixup: bool,
    mixup_alpha: float = 0.2,
) -> tf.data.Dataset:
    """The batches of one epoch as a trial makes them (`tune_mnist.pipeline.TrainingSet`)."""
    from tune_mnist.pipeline import TrainingSet

    alpha = mixup_alpha if mixup else None
    return TrainingSet.from_arrays(x, y).epoch(
        epoch=1, seed=seed, batch_size=batch_size, mixup_alpha=alpha
    )


def autotuned_dataset(x: np.ndarray, y: np.ndarray, **kwargs: Any) -> tf.data.Dataset:
    """The service's pipeline with tf.data's autotuner turned back on (as it was before)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = True
    return service_dataset(x, y, **kwargs).with_options(options)
