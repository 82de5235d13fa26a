"""Each private part of Ray Tune the package uses (tune_mnist.ray_internals), on a real Tune.

Real Ray, real Tuner, a function trainable that trains nothing (the internals concern Tune's
bookkeeping, not the model). .ci/run also runs this file at the oldest supported Ray (its
minimum-versions step), so a release that moved an internal fails here, by name, rather than in a
search: and where one is gone, each function fails loudly (the second half of the file).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from ray import tune
from ray.tune import Callback

from tune_mnist import ray_internals
from tune_mnist.ray_internals import RayInternalsChanged, RayInternalsWarning
from tune_mnist.schedulers import METRIC, MODE, WorkerLimits, make_scheduler
from tune_mnist.trial_log import TrialLog


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # The workers cannot import this test module: its trainables travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # address="local": a Ray of this test's own, whatever RAY_ADDRESS says.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def report_pid(config):
    """Two results, so that Tune has running means to keep; the pid is in every result."""
    for step in range(2):
        tune.report({METRIC: config["x"] + step, "worker": os.getpid()})


def run_config(tmp_path: Path, name: str, **options) -> tune.RunConfig:
    return tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0, **options)


def worker_pids(tmp_path: Path, limits: WorkerLimits | None) -> list[int]:
    tuner = tune.Tuner(
        report_pid,
        param_space={"x": tune.grid_search([1, 2, 3, 4])},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            scheduler=make_scheduler(
                "fifo", max_epochs=2, grace_period=1, reduction_factor=2, worker_limits=limits
            ),
            max_concurrent_trials=1,  # one worker at a time: reuse, when on, is certain
            reuse_actors=True,
        ),
        run_config=run_config(tmp_path, f"retire-{limits and limits.max_trials}"),
    )
    results = tuner.fit()
    assert not results.errors
    frame = results.get_dataframe().sort_values("config/x")
    return list(frame["worker"])


def test_reused_workers_are_retired_after_their_trials(tmp_path):
    """Without limits one worker runs all four trials; with max_trials=2, two workers run two."""
    unbounded = worker_pids(tmp_path, None)
    assert len(set(unbounded)) == 1, unbounded  # Tune reuses the worker: the premise
    retired = worker_pids(tmp_path, WorkerLimits(max_trials=2, max_rss_mib=1e9))
    assert sorted(retired.count(pid) for pid in set(retired)) == [2, 2], retired


class Ended(Callback):
    """Keeps the Trial objects Tune passes to callbacks, to look at what Tune keeps of them."""

    def __init__(self) -> None:
        self.trials = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trials.append(trial)


def test_the_trial_log_forgets_ended_trials(tmp_path):
    log, ended = TrialLog(), Ended()
    tuner = tune.Tuner(
        report_pid,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(metric=METRIC, mode=MODE),
        run_config=run_config(tmp_path, "log", callbacks=[log, ended]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RayInternalsWarning)
        assert not tuner.fit().errors
    assert len(ended.trials) == 2
    assert log._trial_configs == {}
    assert all(trial.run_metadata.metric_n_steps == {} for trial in ended.trials)
    # What the results read is still written: params.json and result.json of each trial.
    assert len(list((tmp_path / "log").glob("*/params.json"))) == 2
    assert len(list((tmp_path / "log").glob("*/result.json"))) == 2


class Seen(Callback):
    def __init__(self) -> None:
        self.results = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results += 1


def fails_once(config):
    marker = Path(config["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("the first attempt fails")
    tune.report({METRIC: 1.0})


def test_a_restored_tuner_runs_with_the_callbacks_put_in_its_run_config(tmp_path):
    """A resumed search replaces the restored RunConfig's callbacks with its own (TrialLog)."""
    tune.Tuner(
        fails_once,
        param_space={"marker": str(tmp_path / "marker")},
        run_config=run_config(tmp_path, "resume"),
    ).fit()
    restored = tune.Tuner.restore(str(tmp_path / "resume"), fails_once, resume_errored=True)
    config = ray_internals.restored_run_config(restored)
    assert config.name == "resume"
    seen = Seen()
    config.callbacks = [seen]
    assert not restored.fit().errors
    assert seen.results == 1


# Where an internal is gone: loud, and naming the Ray version.


def test_a_tuner_without_its_local_tuner_is_an_error_naming_ray():
    with pytest.raises(RayInternalsChanged, match=rf"^Ray {ray.__version__} has no Tuner\."):
        ray_internals.restored_run_config(SimpleNamespace())
    assert ray_internals.restored_run_config(SimpleNamespace(_local_tuner=None)) is None  # Client


def test_a_controller_without_its_actor_cache_is_an_error_naming_ray():
    with pytest.raises(RayInternalsChanged, match=rf"^Ray {ray.__version__} .*--no-reuse-workers"):
        ray_internals.retire_actor(SimpleNamespace(_trial_to_actor={}), trial=None)


def test_the_handler_of_a_worker_killed_for_memory_is_wrapped_once(monkeypatch):
    """Its behaviour, a trial killed by Ray's memory monitor failing alone, is checked end to end
    by tests/test_waits.py (slow); here: the internal exists at this Ray, and is wrapped once."""
    from ray.air.execution._internal.actor_manager import RayActorManager

    monkeypatch.setattr(RayActorManager, "_actor_task_failed", RayActorManager._actor_task_failed)
    ray_internals.survive_memory_kills()
    wrapped = RayActorManager._actor_task_failed
    ray_internals.survive_memory_kills()
    assert RayActorManager._actor_task_failed is wrapped and wrapped.tune_mnist_wrapped
    monkeypatch.delattr(RayActorManager, "_actor_task_failed")
    with pytest.raises(RayInternalsChanged, match=rf"^Ray {ray.__version__} .*whole search"):
        ray_internals.survive_memory_kills()


def test_forgetting_what_is_gone_warns_once_naming_ray(monkeypatch):
    monkeypatch.setattr(ray_internals, "_warned", set())
    with pytest.warns(RayInternalsWarning, match=rf"Ray {ray.__version__} has no Json") as caught:
        ray_internals.forget_trial_config(SimpleNamespace(), trial=None)
        ray_internals.forget_trial_config(SimpleNamespace(), trial=None)
    with pytest.warns(RayInternalsWarning, match="metric_n_steps"):
        ray_internals.forget_running_means(SimpleNamespace())
    assert len(caught) == 1
    with pytest.warns(RayInternalsWarning, match="_mark_trial_to_checkpoint.*exit 130"):
        ray_internals.save_failed_trial(SimpleNamespace(), trial=None)
