"""The checkpoint format of a pair trial: both arms' Keras models, their state, their predictions.

One folder per checkpoint, written by the trainable after every epoch and read back to resume a
trial, to collect the validation predictions and to evaluate the final models on the test set:

- ``plain.keras``, ``mixup.keras``: each arm's model with its optimizer state (an arm that diverged
  has none: its weights are NaN);
- ``compared_plain.keras``, ``compared_mixup.keras``: once an arm diverged, both arms' models at
  the pair's compared epoch (the last epoch both arms ran), which the test set scores; before
  that, the latest models are the compared ones and these files are absent;
- ``state.json``: the last epoch trained, each arm's early-stopping state and, once an arm
  diverged, ``compared_epoch``;
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


def model_file(arm: str, *, compared: bool = False) -> str:
    """``plain.keras``; with ``compared``, the compared-epoch model ``compared_plain.keras``."""
    return f"compared_{arm}.keras" if compared else f"{arm}.keras"


def save_checkpoint(
    directory: Path,
    models: dict[str, Any],
    state: dict[str, Any],
    predictions: dict[str, np.ndarray],
    true_classes: np.ndarray,
    compared: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint folder; `models` maps an arm to its model, or None for a failed arm;
    `compared` (once an arm diverged) each arm's model at the compared epoch."""
    directory = Path(directory)
    for arm, model in models.items():
        if model is not None:
            model.save(directory / model_file(arm))
    for arm, model in (compared or {}).items():
        model.save(directory / model_file(arm, compared=True))
    (directory / STATE_FILE).write_text(json.dumps(state))
    arrays = {arm: p.astype(np.int8) for arm, p in predictions.items()}
    np.savez(directory / PREDICTIONS_FILE, true=true_classes.astype(np.int8), **arrays)


def load_model(directory: str | Path, arm: str, *, compared: bool = False) -> Any:
    """One arm's model of a checkpoint (safe mode), or None when the arm had failed; with
    ``compared`` its compared-epoch model, or None when the checkpoint holds none."""
    import keras

    import tune_mnist.layers  # noqa: F401  (registers the fused batch norm the models hold)

    path = Path(directory) / model_file(arm, compared=compared)
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


def compared_models(trial_dir: Path, compared_epoch: int) -> tuple[Path, bool]:
    """Where a pair's models at ``compared_epoch`` are: the latest checkpoint, and whether they are
    its ``compared_<arm>.keras`` (an arm diverged) rather than its ``<arm>.keras`` (none did).

    Raises CheckpointMissing, saying what is there instead, when that checkpoint lacks them.
    """
    directory, epoch = latest_checkpoint(trial_dir)
    state = load_state(directory)
    compared = state.get("compared_epoch") is not None
    held = state["compared_epoch"] if compared else epoch
    files = [directory / model_file(arm, compared=compared) for arm in ("plain", "mixup")]
    if held != compared_epoch or not all(f.is_file() for f in files):
        raise CheckpointMissing(
            f"{directory}: holds no models of both arms at epoch {compared_epoch} "
            f"(its models are of epoch {held})"
        )
    return directory, compared
