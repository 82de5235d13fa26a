"""The private parts of Ray Tune this package uses: all of them, and only here.

Each use below says why Tune has no public way to do it. A Ray release may rename or drop any of
them without notice, so each fails loudly when its internal is gone: an error naming the Ray
version where going on would be wrong (a resumed run without its callbacks, reused workers that
grow until the out-of-memory killer takes them), a warning naming it where only the driver's
memory is at stake. tests/test_ray_internals.py runs each against a real Tune (also at the oldest
supported Ray, in the minimum-versions step of .ci/run), and tests/test_private_names.py fails on
a private name of another package used anywhere else in the package.

No Ray import at module level: the scheduler and the logger call in with Tune's own objects.
"""

from __future__ import annotations

import warnings
from typing import Any

TESTED_ON = "Ray 2.59 and 2.60"


class RayInternalsChanged(RuntimeError):
    """A Ray Tune internal this package relies on is gone; the message names the Ray version."""


class RayInternalsWarning(RuntimeWarning):
    """A Ray Tune internal that only saves driver memory is gone: the search goes on without it."""


def _ray_version() -> str:
    import ray

    return ray.__version__


def _changed(what: str, consequence: str) -> str:
    return (
        f"Ray {_ray_version()} has no {what} (tune_mnist uses it, tested on {TESTED_ON}): "
        f"{consequence}"
    )


_warned: set[str] = set()


def _warn_once(what: str, consequence: str) -> None:
    if what not in _warned:
        _warned.add(what)
        warnings.warn(_changed(what, consequence), RayInternalsWarning, stacklevel=3)


# --- A resumed run's RunConfig (tune_mnist.tuning) -----------------------------------------------


def restored_run_config(tuner: Any) -> Any | None:
    """The RunConfig that ``tuner.fit()`` will use, of a Tuner made by ``Tuner.restore``.

    Tune restores the original run's RunConfig and has no public way to change it: Tuner.restore
    takes no run_config, and Tuner has no setter. A resumed search must still replace its output
    choice, callbacks (the TrialLog that writes what the results read) and stopper with this
    command's, so it edits the copy that fit() uses. None through Ray Client, where the Tuner is
    remote (`_local_tuner` is None) and the original's stay.
    """
    if not hasattr(tuner, "_local_tuner"):
        raise RayInternalsChanged(
            _changed(
                "Tuner._local_tuner",
                "a resumed search cannot use this command's callbacks; start a new run instead "
                "of --resume, or install a tested Ray",
            )
        )
    local = tuner._local_tuner
    if local is None:
        return None
    return local.get_run_config()


# --- A worker killed for memory (tune_mnist.tuning) ----------------------------------------------

_OOM_HANDLER = "RayActorManager._actor_task_failed"


def survive_memory_kills() -> None:
    """Make a trial whose worker Ray's memory monitor killed fail as any trial whose worker died:
    retried per --max-failures, then ERROR, with Ray's message (node, GB used) in its error file.

    Ray reports such a kill as OutOfMemoryError, not as an actor's death (ray-project/ray#28937),
    and Tune's actor manager (ray.air.execution._internal.actor_manager) handles only
    RayActorError and RayTaskError in ``_actor_task_failed``: anything else raises "Caught
    unexpected exception" in the driver, and the whole search ends with it (seen with Ray 2.60).
    Tune has no hook for it, so the method is wrapped to pass the kill on as a RayActorError.
    Installed once per driver; idempotent.
    """
    from ray.air.execution._internal import actor_manager
    from ray.exceptions import OutOfMemoryError, RayActorError

    manager = getattr(actor_manager, "RayActorManager", None)
    original = getattr(manager, "_actor_task_failed", None)
    if original is None:
        raise RayInternalsChanged(
            _changed(_OOM_HANDLER, "a trial killed for memory would end the whole search")
        )
    if getattr(original, "tune_mnist_wrapped", False):
        return

    def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
        if isinstance(exception, OutOfMemoryError):
            # Its first lines say what was killed and why; the rest (object store counters, a
            # process table, advice about Ray's settings) would fill the terminal, so it points
            # to where Ray keeps it.
            lines = str(exception).splitlines()
            more = [line for line in lines if "ray logs raylet.out" in line]
            exception = RayActorError(error_msg="\n".join(lines[:2] + more))
        original(self, tracked_actor_task=tracked_actor_task, exception=exception)

    _actor_task_failed.tune_mnist_wrapped = True  # type: ignore[attr-defined]
    manager._actor_task_failed = _actor_task_failed  # type: ignore[union-attr]


# --- Worker retirement (tune_mnist.schedulers) ---------------------------------------------------

_ACTOR_CACHE = "TuneController._started_actors and ._trial_to_actor"
_RETIREMENT_GONE = (
    "reused workers cannot be retired, and each grows by what model.fit leaks (50-120 MiB a pair) "
    "until the out-of-memory killer takes it; run with --no-reuse-workers, or install a tested Ray"
)


def check_actor_cache(tune_controller: Any) -> None:
    """Raise RayInternalsChanged unless ``retire_actor`` can work on this controller.

    The scheduler calls it when the first trial is added, before any trial runs, so a search
    whose workers could not be retired fails at its start, not hours later by memory.
    """
    if not (
        isinstance(getattr(tune_controller, "_started_actors", None), set)
        and hasattr(getattr(tune_controller, "_trial_to_actor", None), "get")
    ):
        raise RayInternalsChanged(_changed(_ACTOR_CACHE, _RETIREMENT_GONE))


def retire_actor(tune_controller: Any, trial: Any) -> bool:
    """Make Tune stop the worker of a just-completed trial instead of caching it for reuse.

    Ray Tune has no public way to retire a cached actor: a trainable's reset_config returning
    False fails the *next* trial (tune_controller._on_trial_reset), and a worker that exits itself
    fails the reset that is sent to it. The scheduler's on_trial_complete runs before the
    controller decides whether to cache the finished trial's actor (stop_trial, then
    _maybe_cache_trial_actor), which caches only actors it has seen start: taking the actor out
    of that set makes Tune stop it as it would without reuse, and start a new one for the next
    trial. No trial fails or restarts. Returns whether the trial had an actor to retire.
    """
    check_actor_cache(tune_controller)
    actor = tune_controller._trial_to_actor.get(trial)
    if actor is None:
        return False
    tune_controller._started_actors.discard(actor)
    return True


# --- What Tune keeps of ended trials (tune_mnist.trial_log) --------------------------------------


def forget_trial_config(json_logger: Any, trial: Any) -> None:
    """Drop the configuration Tune's JsonLoggerCallback keeps of an ended trial.

    JsonLoggerCallback keeps every trial's configuration until the search ends, only to rewrite
    params.json on a later result (ray-project/ray#64231); it has no public way to forget one.
    """
    configs = getattr(json_logger, "_trial_configs", None)
    if not isinstance(configs, dict):
        _warn_once(
            "JsonLoggerCallback._trial_configs",
            "the driver keeps each trial's configuration until the search ends",
        )
        return
    configs.pop(trial, None)


def forget_running_means(trial: Any) -> None:
    """Drop the running means Tune keeps of a finished trial's metrics over its last 5 and 10
    results (two deques per metric, about 55 KB of driver memory per pair trial); its last result
    and min/max/mean per metric stay. Tune updates them only with later results, and offers no
    public way to turn them off.
    """
    steps = getattr(getattr(trial, "run_metadata", None), "metric_n_steps", None)
    if not isinstance(steps, dict):
        _warn_once(
            "Trial.run_metadata.metric_n_steps",
            "the driver keeps each finished trial's running means until the search ends",
        )
        return
    steps.clear()


def save_failed_trial(tune_controller: Any, trial: Any) -> None:
    """Have the experiment state record the failure of a trial whose process died.

    Tune 2.60 sets such a trial ERROR (or PENDING for its retry) but snapshots it only when its
    actor is still tracked (TuneController._schedule_trial_stop), and the actor of a process that
    died (--trial-timeout's watchdog, an out-of-memory kill) is not: the saved state keeps it
    RUNNING, the run ends "interrupted" instead of "failed", and --resume reruns it. Called from a
    scheduler's on_trial_error, just before Tune sets the new status, so the trial is saved with
    it. No public call marks a trial for the next snapshot.
    """
    mark = getattr(tune_controller, "_mark_trial_to_checkpoint", None)
    if not callable(mark):
        _warn_once(
            "TuneController._mark_trial_to_checkpoint",
            "a trial whose process died on its last attempt may be saved as RUNNING: its run "
            "ends 'interrupted' (exit 130) rather than 'failed' (exit 3)",
        )
        return
    mark(trial)
