"""The checkpoint format of a pair trial: both arms' Keras models, their state, their predictions.

One folder per checkpoint, written by the trainable after every epoch and read back to resume a
trial, to collect the validation predictions and to evaluate the final models on the test set:

- ``plain.keras``, ``mixup.keras``: each arm's model with its optimizer state (an arm that diverged
  has none: its weights are NaN);
- ``state.json``: the last epoch trained and each arm's early-stopping state;
- ``val_predictions.npz``: per arm, the predicted class of every validation image after every
  epoch so far, int8 of shape (epochs, validation images), and the true classes (``true``).

Loading uses Keras' safe mode: no code stored in a file is executed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "state.json"
PREDICTIONS_FILE = "val_predictions.npz"


class CheckpointMissing(Exception):
    """A trial folder holds no usable checkpoint; the message names the folder."""


def model_file(arm: str) -> str:
    return f"{arm}.keras"


def save_checkpoint(
    directory: Path,
    models: dict[str, Any],
    state: dict[str, Any],
    predictions: dict[str, np.ndarray],
    true_classes: np.ndarray,
) -> None:
    """Write a checkpoint folder; `models` maps an arm to its model, or None for a failed arm."""
    directory = Path(directory)
    for arm, model in models.items():
        if model is not None:
            model.save(directory / model_file(arm))
    (directory / STATE_FILE).write_text(json.dumps(state))
    arrays = {arm: p.astype(np.int8) for arm, p in predictions.items()}
    np.savez(directory / PREDICTIONS_FILE, true=true_classes.astype(np.int8), **arrays)


def load_model(directory: str | Path, arm: str) -> Any:
    """One arm's model of a checkpoint (safe mode), or None when the arm had failed."""
    import keras

    import tune_mnist.layers  # noqa: F401  (registers the fused batch norm the models hold)

    path = Path(directory) / model_file(arm)
    return keras.models.load_model(path, safe_mode=True) if path.is_file() else None


def load_state(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / STATE_FILE).read_text())


def load_predictions(directory: str | Path) -> dict[str, np.ndarray]:
    """Per arm, the predicted validation classes after each epoch: int8 (epochs, images);
    under ``true``, the true class of each validation image."""
    with np.load(Path(directory) / PREDICTIONS_FILE) as saved:
        return {arm: saved[arm] for arm in saved.files}


def latest_checkpoint(trial_dir: Path) -> tuple[Path, int]:
    """The complete checkpoint of the latest epoch in a trial folder, and that epoch."""
    found = {}
    for directory in Path(trial_dir).glob("checkpoint_*"):
        if (directory / STATE_FILE).is_file() and (directory / PREDICTIONS_FILE).is_file():
            found[int(load_state(directory)["epoch"])] = directory
    if not found:
        raise CheckpointMissing(
            f"{trial_dir}: no checkpoint with {STATE_FILE} and {PREDICTIONS_FILE}"
        )
    epoch = max(found)
    return found[epoch], epoch
