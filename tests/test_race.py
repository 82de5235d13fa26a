"""The benchmark's race (scripts/bench/race.py): how time to target is counted, and a real race."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import benchmark  # noqa: E402
from bench.race import PATHS, Found, summary  # noqa: E402
from bench.report import targets  # noqa: E402


def test_time_to_target_is_the_first_improvement_whose_model_reaches_the_target_on_test():
    found = [
        Found(seconds=60, val_acc=0.90, model=Path("a"), label="a"),
        Found(seconds=120, val_acc=0.89, model=Path("worse"), label="not an improvement"),
        Found(seconds=180, val_acc=0.91, model=Path("b"), label="b"),
        Found(seconds=240, val_acc=0.93, model=Path("c"), label="c"),
    ]
    # "worse" would reach the target, but validation never chose it.
    test_acc = {"a": 0.905, "worse": 0.95, "b": 0.921, "c": 0.919}
    result = summary(found, 0.92, lambda model: test_acc[str(model)])
    assert [p["model"] for p in result["curve"]] == ["a", "b", "c"]
    assert result["time_to_target_minutes"] == 3.0
    assert (result["best_val_acc"], result["chosen_test_acc"]) == (0.93, 0.919)


def test_the_race_runs_only_when_named():
    assert "race" not in benchmark.parse_args([]).sections
    assert benchmark.parse_args(["--sections", "race"]).sections == ["race"]


@pytest.mark.slow
@pytest.mark.fashion
def test_a_short_race_scores_every_path_and_draws_the_figure(tmp_path):
    """About 4 minutes: 45 s per path on 500 images (Ray's and TensorFlow's start count), then
    stopping the searches and scoring every improvement on the test set."""
    out = tmp_path / "race.json"
    command = [
        sys.executable, str(SCRIPTS / "benchmark.py"), "--sections", "race", "--race-minutes",
        "0.75", "--race-train-subset", "500", "--race-max-epochs", "2", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    race = result["race"]
    assert list(race["paths"]) == list(PATHS)
    for path in race["paths"].values():
        assert path["curve"] and path["best_val_acc"] > 0.1
        assert 0 <= path["curve"][0]["minutes"] <= 0.75
        assert path["chosen_test_acc"] is not None  # the chosen model was kept and scored
    figure = Path(race["figure"])
    assert figure == tmp_path / "race.race.png" and figure.stat().st_size > 0
    assert "race: our best path reaches test acc 0.92, faster than Keras Tuner" in targets(result)
    assert "keras_tuner" in done.stdout
