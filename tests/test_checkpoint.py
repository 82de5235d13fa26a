"""Damaged checkpoint folders, laid out as Tune lays them out: which checkpoint is the latest,
which earlier ones a retry can fall back to, and a loud failure when the layout is not Tune's."""

import json
from pathlib import Path

import numpy as np
import pytest
from ray import tune

from tune_mnist.checkpoint import (
    CheckpointUnreadable,
    TuneLayoutChanged,
    check_models,
    earlier_checkpoints,
    latest_checkpoint,
    load_predictions,
    load_state,
)


def _checkpoint(trial_dir: Path, index: int, epoch: int) -> Path:
    folder = trial_dir / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"epoch": epoch}))
    np.savez(folder / "val_predictions.npz", true=np.zeros(3, np.int8))
    return folder


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 64, np.uint8).tobytes())


def test_an_unreadable_checkpoint_superseded_by_a_later_one_is_passed_over(tmp_path):
    """Tune's newest checkpoint is the retry's, made after falling back past a damaged one."""
    _checkpoint(tmp_path, 1, epoch=2)
    _garbage(_checkpoint(tmp_path, 2, epoch=3) / "state.json")
    later = _checkpoint(tmp_path, 3, epoch=3)
    assert latest_checkpoint(tmp_path) == (later, 3)


def test_an_unreadable_newest_checkpoint_is_an_error_naming_the_file(tmp_path):
    _checkpoint(tmp_path, 1, epoch=2)
    newest = _checkpoint(tmp_path, 2, epoch=3)
    _garbage(newest / "state.json")
    with pytest.raises(CheckpointUnreadable, match=f"{newest / 'state.json'}: unreadable"):
        latest_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"\x95garbage", b"[1, 2]", b'{"no_epoch": 1}', b""])
def test_a_damaged_state_is_unreadable(tmp_path, content):
    folder = _checkpoint(tmp_path, 0, epoch=1)
    (folder / "state.json").write_bytes(content)
    with pytest.raises(CheckpointUnreadable, match="state.json"):
        load_state(folder)


def test_damaged_predictions_and_models_are_unreadable(tmp_path):
    folder = _checkpoint(tmp_path, 0, epoch=1)
    _garbage(folder / "val_predictions.npz")
    with pytest.raises(CheckpointUnreadable, match="val_predictions.npz"):
        load_predictions(folder)
    _garbage(folder / "plain.keras")
    with pytest.raises(CheckpointUnreadable, match="plain.keras"):
        check_models(folder)


def test_earlier_checkpoints_are_the_ones_tune_saved_before_newest_first(tmp_path):
    for index in (3, 4, 5):
        _checkpoint(tmp_path, index, epoch=index + 1)
    (tmp_path / "result.json").write_text("")
    latest = tune.Checkpoint(str(tmp_path / "checkpoint_000004"))
    found = [Path(c.path).name for c in earlier_checkpoints(latest)]
    assert found == ["checkpoint_000003"]
    first = tune.Checkpoint(str(tmp_path / "checkpoint_000003"))
    assert earlier_checkpoints(first) == []


def test_a_layout_other_than_tunes_fails_loudly(tmp_path):
    _checkpoint(tmp_path, 0, epoch=1)
    with pytest.raises(TuneLayoutChanged, match="checkpoint_NNNNNN"):
        earlier_checkpoints(tune.Checkpoint(str(tmp_path / "epoch_2")))
    (tmp_path / "checkpoint_latest").mkdir()
    with pytest.raises(TuneLayoutChanged, match="checkpoint_latest"):
        earlier_checkpoints(tune.Checkpoint(str(tmp_path / "checkpoint_000001")))
