"""Trial schedulers: small factories over Ray Tune's own, judging each pair by `pair_val_acc`.

A trial is a pair (both arms train in it), so a rung decision stops or continues the pair as a
whole, on the mean of its arms' `val_acc`: both arms always run the same number of epochs.

With reused workers (the default) the scheduler also retires a worker process after
`WorkerLimits.max_trials` trials, or once its RSS reported with a trial's last result passes
`max_rss_mib`: `model.fit` in a loop leaks 50-120 MiB per pair even after clear_session and gc
(keras-team/keras#17458, tensorflow/tensorflow#61791), so a worker reused without a bound grows
for the whole search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from tune_mnist import ray_internals
from tune_mnist.resources import WORKER_RSS

METRIC, MODE = "pair_val_acc", "max"


@dataclass(frozen=True)
class WorkerLimits:
    """When a reused worker process is replaced by a new one.

    >>> limits = WorkerLimits(max_trials=3, max_rss_mib=4096)
    >>> limits.retire(trials_done=2, rss_mib=1000), limits.retire(trials_done=3, rss_mib=1000)
    (False, True)
    >>> limits.retire(trials_done=1, rss_mib=5000), limits.retire(trials_done=1, rss_mib=None)
    (True, False)
    """

    max_trials: int
    max_rss_mib: float

    def retire(self, *, trials_done: int, rss_mib: float | None) -> bool:
        return trials_done >= self.max_trials or (rss_mib or 0.0) >= self.max_rss_mib


class _RetiresWorkers(TrialScheduler):
    """Counts the trials each worker process finished and retires it at its limits.

    Ray Tune has no public way to retire a cached actor; the scheduler is the one plug-in that Tune
    hands its controller, and `ray_internals.retire_actor` says how it is done through the
    controller's private actor cache. Where a Ray release lacks that cache, the search fails when
    its first trial is added (`ray_internals.check_actor_cache`) rather than letting reused
    workers grow until the out-of-memory killer takes them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_limits: WorkerLimits | None = None
        self._worker_trials: dict[tuple[Any, int], int] = {}  # (host, pid) -> trials finished
        self._cache_checked = False

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        if self.worker_limits is not None and not self._cache_checked:
            ray_internals.check_actor_cache(tune_controller)
            self._cache_checked = True

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        if self.worker_limits is None or "pid" not in result:
            return
        worker = (result.get("hostname"), result["pid"])
        done = self._worker_trials[worker] = self._worker_trials.get(worker, 0) + 1
        if self.worker_limits.retire(trials_done=done, rss_mib=result.get(WORKER_RSS)):
            del self._worker_trials[worker]
            ray_internals.retire_actor(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """Have the experiment state record the failure of a trial whose process died
        (ray_internals.save_failed_trial says why this needs Tune's internals)."""
        super().on_trial_error(tune_controller, trial)
        ray_internals.save_failed_trial(tune_controller, trial)


class PairFIFO(_RetiresWorkers, FIFOScheduler):
    """Tune's FIFO scheduler: every trial runs to its end."""


class PairASHA(_RetiresWorkers, ASHAScheduler):
    """Tune's asynchronous successive halving, on the pair's score."""


def fifo() -> TrialScheduler:
    """Every trial runs to `--max-epochs` (or its own early stop): no early stopping."""
    return PairFIFO()


def asha(*, max_epochs: int, grace_period: int = 1, reduction_factor: float = 3) -> TrialScheduler:
    """Asynchronous successive halving: stop the worse trials at epochs grace_period * rf^k.

    >>> scheduler = asha(max_epochs=20, grace_period=2)
    """
    # No metric or mode here: the Tuner passes its own (METRIC, MODE) and refuses a scheduler that
    # has them too.
    return PairASHA(
        time_attr="training_iteration",
        max_t=max_epochs,
        grace_period=min(grace_period, max_epochs),
        reduction_factor=reduction_factor,
    )


def make_scheduler(
    name: str,
    *,
    max_epochs: int,
    grace_period: int,
    reduction_factor: float,
    worker_limits: WorkerLimits | None = None,
) -> TrialScheduler:
    """``name``: fifo or asha (`config.SCHEDULERS`). ``worker_limits``: retire reused workers at
    these limits (None: workers are not reused)."""
    if name not in ("fifo", "asha"):
        raise ValueError(f"scheduler {name!r}: use one of fifo, asha")
    if name == "asha":
        scheduler = asha(
            max_epochs=max_epochs, grace_period=grace_period, reduction_factor=reduction_factor
        )
    else:
        scheduler = fifo()
    scheduler.worker_limits = worker_limits
    return scheduler
