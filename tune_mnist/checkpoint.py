"""The checkpoint format of a trial: a Keras model file and a small JSON state, one folder each.

Written by the trainable after every epoch, read back to resume a trial and to evaluate the best
model on the test set. Loading uses Keras' safe mode: no code stored in the file is executed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"


class CheckpointMissing(Exception):
    """A trial folder holds no usable checkpoint; the message names the folder."""


def save_checkpoint(directory: Path, model: Any, state: dict[str, Any]) -> None:
    model.save(Path(directory) / MODEL_FILE)
    (Path(directory) / STATE_FILE).write_text(json.dumps(state))


def load_checkpoint(directory: str | Path) -> tuple[Any, dict[str, Any]]:
    """The model (safe mode: no code in the file is executed) and state of a checkpoint."""
    import keras

    directory = Path(directory)
    model = keras.models.load_model(directory / MODEL_FILE, safe_mode=True)
    return model, json.loads((directory / STATE_FILE).read_text())


def kept_checkpoints(trial_dir: Path) -> dict[int, Path]:
    """The complete checkpoints Tune kept in a trial folder, by the epoch they were taken after."""
    found = {}
    for directory in sorted(Path(trial_dir).glob("checkpoint_*")):
        state_file = directory / STATE_FILE
        if (directory / MODEL_FILE).is_file() and state_file.is_file():
            found[int(json.loads(state_file.read_text())["epoch"])] = directory
    return found
