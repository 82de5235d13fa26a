"""Until decided, end to end: a real search that runs rounds of replicates, stops on its own once
its confidence sequence decides, and continues the same rounds after an interruption."""

from __future__ import annotations

import json
import signal
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_search, search_failed
from tune_mnist.checkpoint import PREDICTIONS_FILE
from tune_mnist.rounds import pair_deltas


@pytest.mark.slow
def test_an_until_decided_search_is_interrupted_resumed_and_stops_once_decided(tmp_path, drivers):
    """Rule: rounds add one replicate of each cell; Ctrl-C after round 2 exits 130 with the
    rounds so far kept; --resume continues the same sequence (no round counted twice) and the
    search stops by itself when the whole interval lies within ±precision, well before the budget
    of 8 rounds, with the sequence as the primary interval and the fixed-n numbers descriptive."""
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "until"
    first = drivers(
        [
            "--until-decided",
            "--precision",
            "0.5",
            "--max-replicates",
            "8",
            "--train-subset",
            "300",
            "--max-epochs",
            "1",
            "--max-concurrent",
            "2",
            "--storage-path",
            str(storage),
            "--name",
            "until",
        ],  # fmt: skip
        tmp_path / "log1.txt",
    )
    deadline = time.monotonic() + 300
    while "Until decided: after 2 round(s)" not in first.output():
        assert first.proc.poll() is None and time.monotonic() < deadline, first.output()[-3000:]
        time.sleep(0.2)
    first.proc.send_signal(signal.SIGINT)
    assert first.wait(120) == 130, first.output()[-3000:]
    first.kill_all()
    state_file = run_dir / "until_decided" / "sequential.json"
    assert json.loads(state_file.read_text())["state"] == "undecided"

    second = run_search("--resume", "--storage-path", str(storage), "--name", "until")
    assert second.returncode == 0, search_failed(second)
    state = json.loads(state_file.read_text())
    assert state["state"] == "within" and 3 <= state["rounds"] < 8, state
    rounds = [entry["rounds"] for entry in state["history"]]
    assert rounds == list(range(1, state["rounds"] + 1)), rounds  # each round once, in order
    assert "decided: no difference larger than ±0.5000" in second.stdout

    comparison = pd.read_parquet(run_dir / "comparison.parquet")
    primary = comparison[comparison["role"] == "primary"].iloc[0]
    assert primary["ci_method"].startswith("anytime-valid confidence sequence")
    assert -0.5 <= primary["ci_low"] < primary["ci_high"] <= 0.5
    assert primary["n_pairs"] == 2 * state["rounds"]  # quickstart: 2 cells per round
    assert (comparison["role"] == "descriptive").sum() == 1
    assert "Fixed-n numbers (descriptive only" in second.stdout


def test_a_pairs_deltas_are_taken_at_the_last_epoch_both_arms_were_scored(tmp_path):
    """Rule: a diverged arm stops being scored; its pair's per-image differences come from the
    last epoch both arms have predictions for."""
    true = np.array([0, 1, 2, 3], dtype=np.int8)
    plain = np.array([[0, 1, 0, 0], [0, 1, 2, 0]], dtype=np.int8)  # epochs 1 and 2
    mixup = np.array([[0, 0, 2, 3]], dtype=np.int8)  # diverged in epoch 2
    np.savez(tmp_path / PREDICTIONS_FILE, plain=plain, mixup=mixup, true=true)
    assert pair_deltas(tmp_path).tolist() == [0, -1, 1, 1]


def test_the_results_compare_only_the_pairs_the_decision_was_made_on(tmp_path, monkeypatch):
    """Rule: with more pairs running than a round holds, a later round's pair can end while the
    search stops; the comparison keeps exactly the pairs of the rounds the sequence counted."""
    from ray.train import Checkpoint

    from tune_mnist.results import _decided_on
    from tune_mnist.rounds import RoundSettings, UntilDecided

    monkeypatch.chdir(tmp_path)  # UntilDecided prints and writes into the run folder only
    true = np.zeros(50, dtype=np.int8)
    trials = []
    for index in range(4):
        folder = tmp_path / f"pair{index}"
        folder.mkdir()
        correct = np.zeros((1, 50), dtype=np.int8)
        np.savez(folder / PREDICTIONS_FILE, plain=correct, mixup=correct + index % 2, true=true)
        checkpoint = Checkpoint.from_directory(str(folder))
        trials.append(SimpleNamespace(trial_id=f"t_{index:05d}", config={"seed": 0},
                                      status="RUNNING", checkpoint=checkpoint))  # fmt: skip
    settings = RoundSettings(precision=0.5, max_rounds=8, cells=1, cell_keys=(), drawn=True)
    callback = UntilDecided(settings, str(tmp_path / "run"))
    for trial in trials[:3]:  # the fourth pair ends after the last round the callback saw
        callback.on_trial_complete(0, trials, trial)
    state = json.loads((tmp_path / "run" / "until_decided" / "sequential.json").read_text())
    assert state["rounds"] == 3 and state["pair_ids"] == ["t_00000", "t_00001", "t_00002"]
    table = pd.DataFrame({"pair_id": [t.trial_id for t in trials], "config/seed": 0})
    assert _decided_on(table, state)["pair_id"].tolist() == ["t_00000", "t_00001", "t_00002"]


@pytest.mark.slow
def test_until_decided_on_a_random_space_draws_new_configurations_each_round(tmp_path):
    """Rule: on a space with random keys a round is one new draw (every grid point of it, one
    replicate each); the search stops by itself once decided, and every pair has its own draw."""
    space = tmp_path / "random.yaml"
    space.write_text(
        "num_conv: 1\nfilters: 8\nkernel_size: 3\npooling: max\nnum_dense: 0\nbatch_size: 64\n"
        "dropout: {uniform: [0.0, 0.3]}\nseeds: 3\n"
    )
    storage = tmp_path / "runs"
    result = run_search(
        "--space", str(space), "--until-decided", "--precision", "0.5", "--max-replicates", "8",
        "--train-subset", "300", "--max-epochs", "1", "--max-concurrent", "2",
        "--storage-path", str(storage), "--name", "drawn",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    assert "rounds of 1 pair(s) (a new draw of the random keys), at most 8" in result.stdout
    state = json.loads((storage / "drawn" / "until_decided" / "sequential.json").read_text())
    assert state["state"] == "within" and 3 <= state["rounds"] < 8, state
    trials = pd.read_parquet(storage / "drawn" / "trials.parquet")
    pairs = trials.drop_duplicates("pair_id")
    assert len(pairs) < 8  # stopped before the budget of 8 draws
    assert pairs["config/dropout"].nunique() == len(pairs) and set(pairs["config/seed"]) == {0}
    comparison = pd.read_parquet(storage / "drawn" / "comparison.parquet")
    primary = comparison[comparison["role"] == "primary"].iloc[0]
    assert primary["ci_method"].startswith("anytime-valid confidence sequence")
    assert primary["n_pairs"] == state["rounds"]
