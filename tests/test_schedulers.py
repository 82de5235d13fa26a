"""The schedulers' decisions, fed fake trial results directly (no Ray cluster, no training).

ASHA reads only ``trial.trial_id`` from a trial and ``training_iteration`` and the metric from a
result (ray/tune/schedulers/async_hyperband.py), so a namespace with a ``trial_id`` stands in for
a Trial, and ``None`` for the tune controller, as in Ray's own scheduler tests.
"""

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tune_mnist.schedulers import METRIC, MODE, WorkerLimits, make_scheduler

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def scheduler_with_trials(name: str, n: int, controller=None, **options):
    scheduler = make_scheduler(name, **options)
    assert scheduler.set_search_properties(METRIC, MODE)  # what the Tuner does
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(n)]
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    return scheduler, trials


def report(scheduler, trial, epoch: int, val_acc: float) -> str:
    return scheduler.on_trial_result(
        None, trial, {"training_iteration": epoch, "epoch": epoch, METRIC: val_acc}
    )


def test_asha_stops_poor_trials_at_a_rung_and_continues_good_ones():
    """Rule: at a rung (epochs grace_period * rf^k) ASHA stops a trial whose val_acc is below the
    best 1/rf of the trials recorded there, and lets the better ones go on."""
    scheduler, trials = scheduler_with_trials(
        "asha", 7, max_epochs=8, grace_period=1, reduction_factor=2
    )
    # Rung at epoch 1: the first four arrive in rising order, each at least the median so far.
    good = zip(trials[:4], (0.90, 0.91, 0.92, 0.93), strict=True)
    assert [report(scheduler, t, 1, acc) for t, acc in good] == [CONTINUE] * 4
    # Below the median of what the rung has recorded (0.915, then 0.91): stopped. Above: continues.
    assert report(scheduler, trials[4], 1, 0.50) == STOP
    assert report(scheduler, trials[5], 1, 0.60) == STOP
    assert report(scheduler, trials[6], 1, 0.97) == CONTINUE
    # Rung at epoch 2: the same rule among the trials that reached it.
    assert report(scheduler, trials[6], 2, 0.98) == CONTINUE
    assert report(scheduler, trials[3], 2, 0.99) == CONTINUE
    assert report(scheduler, trials[2], 2, 0.40) == STOP
    # Between rungs (epoch 3; the next rung is 4) nothing is decided, however poor the trial.
    assert report(scheduler, trials[6], 3, 0.01) == CONTINUE


def test_asha_lets_nothing_run_past_max_epochs():
    """Rule: a trial that reaches --max-epochs is stopped, even the best one."""
    scheduler, (trial,) = scheduler_with_trials(
        "asha", 1, max_epochs=3, grace_period=1, reduction_factor=2
    )
    assert [report(scheduler, trial, epoch, 0.99) for epoch in (1, 2)] == [CONTINUE, CONTINUE]
    assert report(scheduler, trial, 3, 0.99) == STOP


def test_asha_grace_period_protects_the_first_epochs():
    """Rule: no trial is stopped before grace_period epochs, however poor it is."""
    scheduler, trials = scheduler_with_trials(
        "asha", 3, max_epochs=9, grace_period=3, reduction_factor=3
    )
    for epoch in (1, 2):
        assert report(scheduler, trials[0], epoch, 0.95) == CONTINUE
        assert report(scheduler, trials[1], epoch, 0.96) == CONTINUE
        assert report(scheduler, trials[2], epoch, 0.05) == CONTINUE
    assert report(scheduler, trials[0], 3, 0.95) == CONTINUE
    assert report(scheduler, trials[1], 3, 0.96) == CONTINUE
    assert report(scheduler, trials[2], 3, 0.05) == STOP


@pytest.mark.parametrize("epoch, val_acc", [(1, 0.99), (1, 0.01), (2, 0.01), (4, 0.01)])
def test_fifo_never_stops_a_trial(epoch, val_acc):
    """Rule: the fifo scheduler decides nothing: every trial runs until it ends by itself."""
    scheduler, trials = scheduler_with_trials(
        "fifo", 2, max_epochs=4, grace_period=1, reduction_factor=2
    )
    assert isinstance(scheduler, FIFOScheduler)
    report(scheduler, trials[0], epoch, 0.99)
    assert report(scheduler, trials[1], epoch, val_acc) == CONTINUE


def test_an_unknown_scheduler_name_is_refused():
    with pytest.raises(ValueError, match="'grid'.*fifo, asha"):
        make_scheduler("grid", max_epochs=2, grace_period=1, reduction_factor=3)


@pytest.mark.parametrize("name", ["fifo", "asha"])
def test_a_reused_worker_retires_after_its_trials_or_past_its_memory(name):
    """Rule: when a trial ends, its worker (host, pid) is kept for reuse until it has finished
    max_trials trials or reported an RSS at or above max_rss_mib; then the scheduler takes its actor
    out of the controller's started actors, which Tune then stops instead of caching."""
    limits = WorkerLimits(max_trials=2, max_rss_mib=1000)
    actors = {f"t{i}": f"actor of t{i}" for i in range(4)}
    controller = SimpleNamespace(_started_actors=set(actors.values()))
    controller._trial_to_actor = SimpleNamespace(get=lambda trial: actors[trial.trial_id])
    scheduler, trials = scheduler_with_trials(
        name, 4, controller, max_epochs=1, grace_period=1, reduction_factor=2, worker_limits=limits
    )

    def complete(trial, pid, rss):
        result = {"training_iteration": 1, METRIC: 0.5, "pid": pid, "hostname": "h"}
        scheduler.on_trial_complete(controller, trial, {**result, "worker_rss_mib": rss})
        return actors[trial.trial_id] not in controller._started_actors  # retired

    assert not complete(trials[0], pid=1, rss=500)
    assert complete(trials[1], pid=1, rss=500)  # its second trial
    assert complete(trials[2], pid=2, rss=1000)  # its first, at the memory limit
    assert not complete(trials[3], pid=1, rss=500)  # a new process that got pid 1 again


def test_without_the_actor_cache_reused_workers_fail_at_the_first_trial_naming_ray():
    """A Ray whose controller lacks the private actor cache cannot retire workers: the search
    stops before any trial runs, saying which Ray and what to do, instead of growing silently."""
    import ray

    from tune_mnist.ray_internals import RayInternalsChanged

    limits = WorkerLimits(max_trials=2, max_rss_mib=1000)
    renamed = SimpleNamespace(_running_actors=set(), _trial_to_actor={})
    with pytest.raises(RayInternalsChanged, match=rf"Ray {ray.__version__} .*--no-reuse-workers"):
        scheduler_with_trials("fifo", 1, renamed, max_epochs=1, grace_period=1,
                              reduction_factor=2, worker_limits=limits)  # fmt: skip
    scheduler_with_trials("fifo", 1, renamed, max_epochs=1, grace_period=1, reduction_factor=2)
