"""TPE keeps the paired design: each proposal runs at every seed, and TPE learns what pairs share.

The first tests drive `GridRepeater` around a real `OptunaSearch` the way Tune's controller does
(suggest, results, completion), with no Ray cluster; the last runs a real search.
"""

import json
import pickle
import signal
import time

import optuna
import pandas as pd
import pytest
from conftest import run_search, search_failed
from ray.tune.search.optuna import OptunaSearch

from tune_mnist.replicates import SAMPLE_KEY, pair_seed
from tune_mnist.searchers import GridRepeater, make_search_alg
from tune_mnist.space import load_space, parse_space

SPACE = parse_space({"dropout": {"uniform": [0.0, 0.5]}, "num_conv": {"grid": [1, 2]}, "seeds": 2})


def repeater(max_epochs: int = 3) -> tuple[GridRepeater, OptunaSearch]:
    tpe = OptunaSearch(
        space=SPACE.optuna_space(),
        metric="pair_val_acc",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    return GridRepeater(tpe, SPACE.grid_points(), max_epochs), tpe


def run_group(searcher: GridRepeater, first: int, scores: list[list[float]], *, stopped=()):
    """Suggest a group of trials; trial i reports scores[i] epoch by epoch, then completes.

    A trial in ``stopped`` ends as Tune ends a trial its scheduler stops: the last epoch's result
    goes to on_trial_complete only.
    """
    ids = [f"t{first + i}" for i in range(len(scores))]
    configs = [searcher.suggest(trial_id) for trial_id in ids]
    for i, (trial_id, trial_scores) in enumerate(zip(ids, scores, strict=True)):
        results = [{"epoch": e, "pair_val_acc": v} for e, v in enumerate(trial_scores, start=1)]
        for result in results[:-1] if i in stopped else results:
            searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, results[-1])
    return configs


def test_a_proposal_runs_at_every_grid_point_sharing_every_other_key():
    searcher, _ = repeater()
    configs = run_group(searcher, 0, [[0.5, 0.6, 0.7]] * 4) + run_group(
        searcher, 4, [[0.5, 0.6, 0.7]] * 4
    )
    points = [(c["num_conv"], c["seed"]) for c in configs]
    assert points == [(1, 0), (1, 1), (2, 0), (2, 1)] * 2
    assert len({c["dropout"] for c in configs[:4]}) == 1
    assert len({c["dropout"] for c in configs[4:]}) == 1
    assert configs[0]["dropout"] != configs[4]["dropout"]


def test_tpe_learns_the_mean_pair_score_of_the_grid_points():
    searcher, tpe = repeater()
    run_group(searcher, 0, [[0.1, 0.2, 0.4], [0.1, 0.2, 0.6], [0.1, 0.3, 0.5], [0.1, 0.3, 0.7]])
    (trial,) = tpe._ot_study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == pytest.approx(0.55)
    assert trial.intermediate_values == pytest.approx({1: 0.1, 2: 0.25, 3: 0.55})


def test_a_proposal_the_scheduler_stopped_early_is_pruned_not_complete():
    """ASHA stopped one seed of the proposal at epoch 1: TPE must rank the proposal below every
    completed one (pruned, at the epochs all its grid points reached), not as an epoch-1 COMPLETE
    value compared with full runs."""
    searcher, tpe = repeater()
    run_group(searcher, 0, [[0.3, 0.4, 0.5], [0.2], [0.3, 0.4, 0.5], [0.3, 0.4, 0.5]], stopped={1})
    (trial,) = tpe._ot_study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values == pytest.approx({1: 0.275})


def test_a_pair_that_stopped_itself_early_is_complete():
    """--patience (or both arms diverging) ends the pair by its own rule: its score counts."""
    searcher, tpe = repeater()
    run_group(searcher, 0, [[0.3, 0.4], [0.3, 0.4], [0.3, 0.4], [0.3, 0.4]])
    (trial,) = tpe._ot_study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == pytest.approx(0.4)


def test_a_proposal_whose_every_grid_point_failed_is_failed():
    searcher, tpe = repeater()
    for i in range(4):
        searcher.suggest(f"t{i}")
    for i in range(4):
        searcher.on_trial_complete(f"t{i}", None, error=True)
    (trial,) = tpe._ot_study.trials
    assert trial.state == optuna.trial.TrialState.FAIL


def test_equal_tpe_proposals_are_numbered_into_different_replicates():
    """Rule: every proposal gets the next `sample` number, so when TPE proposes the same values
    twice (here it can propose nothing else) their pairs still have different seeds."""
    space = parse_space({"dropout": {"choice": [0.25]}, "seeds": 2})
    tpe = OptunaSearch(space=space.optuna_space(), metric="pair_val_acc", mode="max")
    searcher = GridRepeater(tpe, space.grid_points(), max_epochs=1)
    configs = run_group(searcher, 0, [[0.5]] * 2) + run_group(searcher, 2, [[0.5]] * 2)
    assert [(c[SAMPLE_KEY], c["seed"], c["dropout"]) for c in configs] == [
        (0, 0, 0.25), (0, 1, 0.25), (1, 0, 0.25), (1, 1, 0.25),
    ]  # fmt: skip
    assert len({pair_seed({**space.constants, **c}, run_seed=0) for c in configs}) == 4


def test_random_search_draws_a_sample_number_only_for_random_keys():
    """Rule: the random searcher draws `sample` once per sample of a space with random keys; a
    space without them gets its samples as replicate numbers instead (Space.replicated)."""
    options = dict(metric="pair_val_acc", mode="max", seed=0, max_epochs=1, max_concurrent=None)
    _, params, _ = make_search_alg("random", load_space("asha_wide"), **options)
    assert (params[SAMPLE_KEY].lower, params[SAMPLE_KEY].upper) == (0, 2**31 - 1)
    _, params, _ = make_search_alg("random", load_space("quickstart"), **options)
    assert SAMPLE_KEY not in params


RANDOM_SPACE = """
num_conv: 0
num_dense: 0
batch_size: 64
learning_rate: {loguniform: [0.0003, 0.03]}
dropout: {uniform: [0.0, 0.5]}
seeds: 2
"""


@pytest.mark.slow
def test_a_tpe_search_with_asha_runs_every_proposal_as_pairs_at_every_seed(tmp_path):
    (tmp_path / "space.yaml").write_text(RANDOM_SPACE)
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), "--search-alg", "tpe", "--scheduler", "asha",
        "--num-samples", "2", "--dataset", "mnist_sample", "--train-subset", "200",
        "--max-epochs", "2", "--storage-path", str(tmp_path / "runs"), "--name", "tpe",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    run_dir = tmp_path / "runs" / "tpe"
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 8 and set(trials["status"]) == {"TERMINATED"}
    assert all(sorted(arms) == ["mixup", "plain"] for _, arms in trials.groupby("pair_id")["arm"])
    configurations = trials.groupby(["config/learning_rate", "config/dropout"])
    assert configurations.ngroups == 2
    for _, configuration in configurations:  # every seed, sharing every other key
        assert sorted(configuration["config/seed"]) == [0, 0, 1, 1]
        shared = configuration.filter(like="config/").drop(columns=["config/seed", "config/mixup"])
        assert len(shared.drop_duplicates()) == 1
    assert json.loads((run_dir / "run_manifest.json").read_text())["args"]["search_alg"] == "tpe"
    dependence = pd.read_parquet(run_dir / "dependence.parquet")
    assert set(dependence["key"]) == {"learning_rate", "dropout"}
    assert dependence["n_pairs"].groupby(dependence["key"]).sum().eq(4).all()
    importance = pd.read_parquet(run_dir / "importance.parquet")
    assert {"learning_rate", "dropout", "mixup", "seed"} == set(importance["key"])
    # Two configurations, one per bin: the summary says so rather than compare bins.
    assert "MixUp − plain by key: too few configurations per bin" in result.stdout
    assert "keys that matter for val_acc (PED-ANOVA importance)" in result.stdout


@pytest.mark.slow
def test_an_interrupted_tpe_search_resumes_with_its_searcher(tmp_path, drivers):
    """Ctrl-C after the first pair: TPE had not yet proposed the others, so they count as
    unfinished (exit 130, not 0); --resume restores the searcher, which runs the second seed of
    the half-run proposal with that proposal's keys and then proposes the rest."""
    (tmp_path / "space.yaml").write_text(RANDOM_SPACE)
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "r"
    first = drivers(
        [
            "--space",
            str(tmp_path / "space.yaml"),
            "--search-alg",
            "tpe",
            "--num-samples",
            "2",
            "--train-subset",
            "200",
            "--max-epochs",
            "2",
            "--max-concurrent",
            "1",
            "--storage-path",
            str(storage),
            "--name",
            "r",
        ],  # fmt: skip
        tmp_path / "log1.txt",
    )
    deadline = time.monotonic() + 300
    while "pair 1/4 done" not in first.output():
        assert first.proc.poll() is None and time.monotonic() < deadline, first.output()[-3000:]
        time.sleep(0.2)
    first.proc.send_signal(signal.SIGINT)
    assert first.wait(120) == 130, first.output()[-3000:]
    assert "Interrupted: 3 pairs unfinished" in first.output(), first.output()[-3000:]
    first.kill_all()
    second = run_search("--resume", "--storage-path", str(storage), "--name", "r")
    assert second.returncode == 0, search_failed(second)
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 8 and set(trials["status"]) == {"TERMINATED"}
    for _, configuration in trials.groupby(["config/learning_rate", "config/dropout"]):
        assert sorted(configuration["config/seed"]) == [0, 0, 1, 1]
    (state,) = sorted(run_dir.glob("searcher-state-*.pkl"))[-1:]
    study = pickle.loads(state.read_bytes())["_ot_study"]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
