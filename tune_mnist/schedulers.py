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

    Ray Tune 2.60 has no public way to retire a cached actor: a trainable's reset_config returning
    False fails the *next* trial (tune_controller._on_trial_reset), and a worker that exits itself
    fails the reset that is sent to it. The scheduler is the one plug-in that Tune hands its
    controller, and its on_trial_complete runs before the controller decides whether to cache the
    finished trial's actor (stop_trial, then _maybe_cache_trial_actor), which caches only actors
    it has seen start: taking the actor out of that set makes Tune stop it as it would without
    reuse, and start a new one for the next trial. No trial fails or restarts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_limits: WorkerLimits | None = None
        self._worker_trials: dict[tuple[Any, int], int] = {}  # (host, pid) -> trials finished

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        if self.worker_limits is None or "pid" not in result:
            return
        worker = (result.get("hostname"), result["pid"])
        done = self._worker_trials[worker] = self._worker_trials.get(worker, 0) + 1
        if self.worker_limits.retire(trials_done=done, rss_mib=result.get(WORKER_RSS)):
            del self._worker_trials[worker]
            # Private attributes of Ray Tune's controller (checked on 2.60): where they are
            # missing the worker stays (it keeps growing) rather than the search failing.
            started = getattr(tune_controller, "_started_actors", None)
            actor = getattr(tune_controller, "_trial_to_actor", {}).get(trial)
            if started is not None and actor is not None:
                started.discard(actor)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """Have the experiment state record the failure of a trial whose process died.

        Tune 2.60 sets such a trial ERROR (or PENDING for its retry) but snapshots it only when its
        actor is still tracked (tune_controller._schedule_trial_stop), and the actor of a process
        that died (--trial-timeout's watchdog, an out-of-memory kill) is not: the saved state keeps
        it RUNNING, the run ends "interrupted" instead of "failed", and --resume reruns it. Tune
        calls this just before it sets the new status; the trial is then saved with it.
        """
        super().on_trial_error(tune_controller, trial)
        mark = getattr(tune_controller, "_mark_trial_to_checkpoint", None)  # private: see above
        if mark is not None:
            mark(trial)


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
