"""The race's Keras Tuner path (bench/race.py), run in a worker process: `benchmark.py --worker`
with kind `keras_tuner`. keras_tuner is the `race` extra, imported only here.

Hyperband searches asha_wide.yaml's random keys (both ends included, as in the YAML) plus `mixup`
(a boolean: each Keras Tuner trial trains one model, where our search trains both arms of a
configuration), with the space's constants and every other key's default; the models are built by
`tune_mnist.model.compile_model`, so both searches draw from the same models.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import tensorflow as tf

from bench.configs import fashion
from bench.race import REDUCTION_FACTOR, SPACE
from tune_mnist.data import one_hot, scale_images
from tune_mnist.model import compile_model
from tune_mnist.space import KEYS, Space, load_space


def keras_tuner_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Hyperband until the parent kills this process; every epoch is logged to log.jsonl."""
    folder = Path(spec["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    data = fashion(spec["train_subset"])
    tuner = keras_tuner.Hyperband(
        RaceHyperModel(folder, load_space(SPACE)),
        objective=keras_tuner.Objective("val_acc", "max"),
        max_epochs=spec["max_epochs"],
        factor=REDUCTION_FACTOR,
        hyperband_iterations=1000,  # never the limit: the budget is
        seed=0,
        directory=str(folder / "tuner"),
        project_name="race",
        overwrite=True,
    )
    validation = (scale_images(data.x_val), one_hot(data.y_val))
    tuner.search(
        x=scale_images(data.x_train), y=one_hot(data.y_train), validation_data=validation, verbose=0
    )
    return {}


class RaceHyperModel(keras_tuner.HyperModel):
    """asha_wide.yaml as Keras Tuner choices; logs every epoch and keeps each new best model."""

    def __init__(self, folder: Path, space: Space) -> None:
        super().__init__()
        self.folder, self.space = folder, space
        self.trials, self.best = 0, -math.inf
        self.log = open(folder / "log.jsonl", "a")  # noqa: SIM115 (open for the process's life)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        return compile_model(space_config(self.space, hp))

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, x: Any, y: Any, **kwargs):
        config = space_config(self.space, hp)
        self.trials += 1
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), EpochLog(self, self.trials, hp.values)]
        kwargs["shuffle"] = False  # the batches are shuffled; Keras would warn every trial
        return model.fit(batches(x, y, config, mixup=hp.get("mixup"), seed=self.trials), **kwargs)

    def record(self, model: keras.Model, row: dict[str, Any]) -> None:
        """One epoch's line; a new best model is saved first (to be scored after the race: a
        few tenths of a second on this path's clock, as our checkpoints are on ours)."""
        if row["val_acc"] > self.best:
            self.best = row["val_acc"]
            path = self.folder / "models" / f"{row['trial']}-{row['epoch']}.keras"
            path.parent.mkdir(parents=True, exist_ok=True)
            model.save(path)
            row["model"] = str(path)
        self.log.write(json.dumps(row) + "\n")
        self.log.flush()


class EpochLog(keras.callbacks.Callback):
    def __init__(self, hyper: RaceHyperModel, trial: int, values: dict[str, Any]) -> None:
        super().__init__()
        self.hyper, self.trial = hyper, trial
        # Hyperband's own bookkeeping (tuner/epochs, tuner/trial_id ...) is not the configuration.
        self.config = {k: v for k, v in values.items() if not k.startswith("tuner/")}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        val_acc = float((logs or {}).get("val_acc", math.nan))
        if math.isfinite(val_acc):  # a diverged model is no candidate
            row = {"time": time.time(), "trial": self.trial, "epoch": epoch + 1}
            self.hyper.record(self.model, {**row, "val_acc": val_acc, "config": self.config})


def space_config(space: Space, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
    """A full configuration: the keys' defaults, the space's constants, hp's choices."""
    config = {k: key.default for k, key in KEYS.items()} | space.constants
    config |= space.grid_points()[0]  # asha_wide's `seeds: 1`: seed 0
    for key, (dist, args) in space.randoms.items():
        sampling = "log" if dist == "loguniform" else "linear"
        if dist == "choice" and KEYS[key].kind is bool:
            config[key] = hp.Boolean(key)  # hp.Choice would make true/false the integers 1/0
        elif dist == "choice":
            config[key] = hp.Choice(key, args)
        elif KEYS[key].kind is int:
            config[key] = hp.Int(key, args[0], args[1], sampling=sampling)
        else:
            config[key] = hp.Float(key, args[0], args[1], sampling=sampling)
    hp.Boolean("mixup")
    return config


def batches(x: Any, y: Any, config: dict[str, Any], *, mixup: bool, seed: int) -> tf.data.Dataset:
    """Shuffled batches (reshuffled every epoch), mixed by keras.layers.MixUp with the space's
    alpha in a MixUp trial, as the service's MixUp arm is."""
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    data = data.batch(config["batch_size"])
    if mixup:
        layer = keras.layers.MixUp(alpha=config["mixup_alpha"], seed=seed)

        def mix(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            mixed = layer({"images": images, "labels": labels}, training=True)
            return mixed["images"], mixed["labels"]

        data = data.map(mix)
    return data.prefetch(2)
