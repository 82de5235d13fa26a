"""Files of a run are written whole or not at all: folders too (the SavedModel export)."""

from pathlib import Path

import pytest

from tune_mnist.files import atomic_write_dir


def _write_model(text: str):
    def write(folder: str) -> None:
        (Path(folder) / "variables").mkdir()
        (Path(folder) / "variables" / "data").write_text(text)

    return write


def test_a_folder_is_replaced_whole_and_no_temporary_folder_is_left(tmp_path):
    """Rule: writing a folder twice leaves only the second version, and nothing else."""
    target = tmp_path / "best_plain_savedmodel"
    atomic_write_dir(target, _write_model("first"))
    atomic_write_dir(target, _write_model("second"))
    assert (target / "variables" / "data").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_failed_write_keeps_the_old_folder(tmp_path):
    """Rule: when writing fails, the previous folder stays as it was and no half is left."""
    target = tmp_path / "best_plain_savedmodel"
    atomic_write_dir(target, _write_model("good"))

    def crash(folder: str) -> None:
        _write_model("half")(folder)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(target, crash)
    assert (target / "variables" / "data").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
