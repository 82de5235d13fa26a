"""The results CLI on a real run: comparison, test evaluation and figures."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_mnist.plots import FIGURE_FILES
from tune_mnist.results import EXIT_PARTIAL, collect, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKED = {"replicates": "independent", "args": {}}


def test_cli_prints_comparison_and_test_evaluation_without_scoring_the_test_set_again(
    small_run, capsys
):
    evaluated = (small_run / "test_eval.parquet").stat().st_mtime_ns
    paired = (small_run / "test_pairs.parquet").stat().st_mtime_ns
    assert main([str(small_run)]) == 0
    assert (small_run / "test_eval.parquet").stat().st_mtime_ns == evaluated
    assert (small_run / "test_pairs.parquet").stat().st_mtime_ns == paired
    out = capsys.readouterr().out
    assert "Primary result" in out
    assert re.search(
        r"Confirmation on the test set \(both arms of 4 compared pairs, scored once\): "
        r"MixUp − plain [+-]\d\.\d{4} \[95% [+-]\d\.\d{4}, [+-]\d\.\d{4}\]",
        out,
    ), out
    assert "Test set, final model of each arm" in out
    assert "plain" in out and "mixup" in out


def test_a_run_named_by_a_relative_path_is_read(small_run, monkeypatch, capsys):
    """Rule: `python -m tune_mnist.results runs/NAME` works from the folder above the run (Tune's
    ExperimentAnalysis takes a relative path for a URI without a scheme)."""
    monkeypatch.chdir(small_run.parent)
    assert main([small_run.name]) == 0, capsys.readouterr().err
    assert "Primary result" in capsys.readouterr().out


def test_plot_writes_five_png_figures(small_run, capsys):
    for file in FIGURE_FILES.values():
        (small_run / file).unlink(missing_ok=True)
    assert main([str(small_run), "--plot", "--metric", "val_mixed_acc"]) == 0
    assert "skipped" not in capsys.readouterr().out
    for file in FIGURE_FILES.values():
        content = (small_run / file).read_bytes()
        assert content[:8] == PNG_SIGNATURE and len(content) > 1000, file


def _copy_without_checkpoints(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("checkpoint_*", "*.parquet"))
    return to


def test_an_unreadable_experiment_state_is_one_line_and_exit_2(small_run, tmp_path, capsys):
    """Not 'every trial PENDING, interrupted': the statuses are unknown, and the user is told so."""
    copy = _copy_without_checkpoints(small_run, tmp_path / "broken")
    for state in copy.glob("experiment_state-*.json"):
        state.write_text('{"trial_data": [')
    assert main([str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "experiment state" in err[0]


def test_only_a_truncated_last_result_line_is_skipped(small_run, tmp_path):
    copy = _copy_without_checkpoints(small_run, tmp_path / "cut")
    result = sorted(copy.glob("train_pair_*/result.json"))[0]
    lines = result.read_text().splitlines()
    result.write_text("\n".join(lines) + '\n{"epoch": 3, "pair_val')  # killed mid-write
    epochs = collect(copy).epochs
    assert epochs.groupby("trial_id").size().tolist() == [2] * 8
    result.write_text("\n".join([lines[0], "not json", *lines[1:]]) + "\n")
    trials = collect(copy).trials
    broken = trials[trials["trial_dir"] == result.parent.name]
    assert set(broken["status"]) == {"UNREADABLE"}
    assert broken["error"].str.contains("line 2 is not JSON").all()


def _garbage(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.write_bytes(rng.integers(0, 256, max(path.stat().st_size, 16), np.uint8).tobytes())


def test_a_pair_with_a_corrupt_file_is_reported_and_the_others_are_written(
    small_run, tmp_path, capsys
):
    """One pair's latest checkpoint and another's result.json are overwritten with garbage: each is
    one line on stderr and UNREADABLE (with the reason) in trials.parquet, the other two pairs'
    results are written as before, and the exit status says the results are partial. A third
    pair's models, damaged inside their archives, are not scored on the test set, and said so."""
    copy = tmp_path / "corrupt"
    shutil.copytree(small_run, copy, ignore=shutil.ignore_patterns("*.parquet"))
    bad_checkpoint, bad_result, *good = sorted(copy.glob("train_pair_*"))
    newest = max(bad_checkpoint.glob("checkpoint_*"))
    for seed, path in enumerate(sorted(newest.iterdir())):
        _garbage(path, seed)
    _garbage(bad_result / "result.json", 99)
    for model in max(good[0].glob("checkpoint_*")).glob("*.keras"):
        content = bytearray(model.read_bytes())
        middle = len(content) // 2
        content[middle : middle + 64] = bytes(64)  # inside the weights: only a load finds it
        model.write_bytes(bytes(content))

    assert main([str(copy)]) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert "Not scored on the test set: pair " in out and good[0].name in out, out
    err = err.strip().splitlines()
    assert len(err) == 2, err
    assert any(bad_checkpoint.name in line and newest.name in line for line in err), err
    assert any(bad_result.name in line and "result.json" in line for line in err), err
    trials = pd.read_parquet(copy / "trials.parquet").set_index("trial_dir")
    before = pd.read_parquet(small_run / "trials.parquet").set_index("trial_dir")
    for folder in (bad_checkpoint, bad_result):
        assert set(trials.loc[folder.name, "status"]) == {"UNREADABLE"}
        assert trials.loc[folder.name, "error"].notna().all()
    assert trials.loc[bad_checkpoint.name, "error"].str.contains(newest.name).all()
    kept = [folder.name for folder in good]
    assert set(trials.loc[kept, "status"]) == {"TERMINATED"}
    pd.testing.assert_frame_equal(
        trials.loc[kept, ["trial_id", "best_val_acc", "last_val_acc", "epochs_run"]],
        before.loc[kept, ["trial_id", "best_val_acc", "last_val_acc", "epochs_run"]],
    )
    epochs = pd.read_parquet(copy / "epochs.parquet")
    # The pair whose checkpoint is lost keeps its reported epochs; the other has none to keep.
    assert set(epochs["trial_id"]) == set(before["trial_id"]) - set(
        before.loc[bad_result.name, "trial_id"]
    )
    comparison = pd.read_parquet(copy / "comparison.parquet")
    assert comparison.loc[comparison["role"] == "primary", "n_pairs"].item() == 2


@pytest.mark.parametrize(
    "manifest, design",
    [
        (None, "clusters"),  # no manifest: nothing says the pairs are independent
        ({"args": {}, "space": {"num_conv": {"grid": [1, 2]}, "seeds": 3}}, "clusters"),
        (MARKED | {"space": {"num_conv": {"grid": [1, 2]}, "seeds": 3}}, "grid"),
        (MARKED | {"space": {"dropout": {"uniform": [0.0, 0.5]}, "seeds": 1}}, "random"),
    ],
)
def test_the_comparison_design_follows_the_manifest(tmp_path, manifest, design):
    """Rule: a run marked as independent replicates is compared as a grid (no random keys) or as
    random draws; a run without the mark, whose pairs shared seeds across cells, as clusters."""
    from tune_mnist.files import MANIFEST_FILE, write_json
    from tune_mnist.results import _design, _recorded_space

    if manifest is not None:
        write_json(tmp_path / MANIFEST_FILE, manifest)
    assert _design(tmp_path, _recorded_space(tmp_path)) == design
