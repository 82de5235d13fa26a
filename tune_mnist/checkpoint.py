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

Loading uses Keras' safe mode: no code stored in a file is executed. A file that cannot be read
(cut short, overwritten, not what its name says) raises CheckpointUnreadable naming it.

Tune keeps a trial's two latest checkpoints but hands a retried trial only the latest one; when
that cannot be read, `earlier_checkpoints` finds the one before in Tune's folder layout (the one
place that relies on it; see there why).
"""

from __future__ import annotations

import json
import posixpath
import re
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ray.tune import Checkpoint

STATE_FILE = "state.json"
PREDICTIONS_FILE = "val_predictions.npz"


# What reading a damaged file raises: OSError (cut short, missing), ValueError (not JSON, not
# UTF-8, not an array; Keras' "not a .keras file"), KeyError/TypeError (JSON of another shape),
# EOFError, BadZipFile and zlib.error (a .keras or .npz file that is not a whole zip archive, or
# whose compressed contents are damaged).
UNREADABLE_ERRORS = (
    OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error
)  # fmt: skip
# Tune's name of the folder of a trial's checkpoint number N (N counts up over the trial's life).
TUNE_CHECKPOINT_NAME = re.compile(r"checkpoint_(\d{6,})")


class CheckpointMissing(Exception):
    """A trial folder holds no usable checkpoint; the message names the folder."""


class CheckpointUnreadable(CheckpointMissing):
    """A checkpoint's file cannot be read (damaged or overwritten); the message names the file."""


class TuneLayoutChanged(RuntimeError):
    """Tune's checkpoint folders are not laid out as `earlier_checkpoints` expects (a Ray upgrade
    changed them): the fallback to an earlier checkpoint must be updated, not silently skipped."""


def _unreadable(path: Path, error: BaseException) -> CheckpointUnreadable:
    what = " ".join(str(error).split())[:200] or type(error).__name__
    return CheckpointUnreadable(f"{path}: unreadable ({type(error).__name__}: {what})")


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
    if not path.is_file():
        return None
    try:
        return keras.models.load_model(path, safe_mode=True)
    except UNREADABLE_ERRORS as e:
        raise _unreadable(path, e) from e


def load_state(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's state.json: a JSON object with at least the ``epoch`` it was saved after."""
    path = Path(directory) / STATE_FILE
    try:
        state = json.loads(path.read_text())
        int(state["epoch"])
    except UNREADABLE_ERRORS as e:
        raise _unreadable(path, e) from e
    return state


def load_predictions(directory: str | Path) -> dict[str, np.ndarray]:
    """Per arm, the predicted validation classes after each epoch: int8 (epochs, images);
    under ``true``, the true class of each validation image."""
    path = Path(directory) / PREDICTIONS_FILE
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {arm: saved[arm] for arm in saved.files}
    except UNREADABLE_ERRORS as e:
        raise _unreadable(path, e) from e


def check_models(directory: str | Path) -> None:
    """Raise CheckpointUnreadable unless every model file of the checkpoint is a zip archive with
    its table of contents: a file cut short or overwritten fails, without TensorFlow.

    Reads only each archive's table of contents (a checkpoint's models are megabytes, a run's
    thousands of them): damage inside an archive is found when the model is loaded.
    """
    for path in sorted(Path(directory).glob("*.keras")):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        except UNREADABLE_ERRORS as e:
            raise _unreadable(path, e) from e


def latest_checkpoint(trial_dir: Path) -> tuple[Path, int]:
    """The complete checkpoint of the latest epoch in a trial folder, and that epoch.

    A checkpoint whose state cannot be read is passed over when Tune wrote a readable one after it
    (the trial went on from an earlier checkpoint); raises CheckpointUnreadable when it is the
    newest, since the pair's latest state is then unknown.
    """
    found, unreadable = {}, []
    for directory in Path(trial_dir).glob("checkpoint_*"):
        if (directory / STATE_FILE).is_file() and (directory / PREDICTIONS_FILE).is_file():
            try:
                found[int(load_state(directory)["epoch"])] = directory
            except CheckpointUnreadable as e:
                unreadable.append((directory, e))
    if unreadable:
        newest_readable = max((_tune_index(d.name) for d in found.values()), default=-1)
        for directory, error in unreadable:
            if _tune_index(directory.name) > newest_readable:
                raise error
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


# ---- Tune's folder layout ------------------------------------------------------------------------
# Ray Tune (2.x) gives a trainable only the latest checkpoint (`tune.get_checkpoint()`); the
# checkpoints it keeps (CheckpointConfig.num_to_keep) are known to its driver-side checkpoint
# manager alone, with no public way to reach them from a trial, and `Result.best_checkpoints` is
# only there after the search. What is stable and visible is where Tune writes them: folders
# `checkpoint_NNNNNN`, numbered in the order they were saved, side by side in the trial's folder
# on the run's storage. The functions below rely on that and fail loudly (TuneLayoutChanged)
# when it is not so, rather than silently losing the fallback.


def _tune_index(name: str) -> int:
    """N of Tune's checkpoint folder `checkpoint_NNNNNN`: the order Tune saved them in."""
    found = TUNE_CHECKPOINT_NAME.fullmatch(name)
    if found is None:
        raise TuneLayoutChanged(
            f"{name}: not a checkpoint folder as Ray Tune names them (checkpoint_NNNNNN); "
            "tune_mnist.checkpoint must be updated for this Ray version"
        )
    return int(found.group(1))


def earlier_checkpoints(checkpoint: Checkpoint) -> list[Checkpoint]:
    """The checkpoints Tune kept beside `checkpoint` that it saved before it, newest first.

    `checkpoint` is the one Tune handed the trial (`tune.get_checkpoint()`), on any storage Tune
    writes to (its path and pyarrow filesystem). Raises TuneLayoutChanged when its folder is not
    laid out as Tune 2.x lays it out.
    """
    from pyarrow.fs import FileSelector, FileType
    from ray import tune

    trial_folder, name = posixpath.split(checkpoint.path.rstrip("/"))
    index = _tune_index(name)
    try:
        listed = checkpoint.filesystem.get_file_info(FileSelector(trial_folder))
    except FileNotFoundError as e:
        raise TuneLayoutChanged(
            f"{checkpoint.path}: its folder {trial_folder} does not exist; tune_mnist.checkpoint "
            "expects Tune's checkpoints side by side in the trial's folder"
        ) from e
    earlier = [
        (_tune_index(info.base_name), info.path)
        for info in listed
        if info.type == FileType.Directory and info.base_name.startswith("checkpoint_")
    ]
    return [
        tune.Checkpoint(path, filesystem=checkpoint.filesystem)
        for number, path in sorted(earlier, reverse=True)
        if number < index
    ]
