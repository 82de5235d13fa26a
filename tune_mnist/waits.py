"""Bounded waits: no search waits forever for resources, a hung trial, a failing store or the clock.

- A trial request no node can meet is refused before training (`unmet_request`); on a cluster
  that may still add nodes, `PendingTimeout` ends a search in which no trial could start for
  `--pending-timeout` seconds.
- `Watchdog` ends a trial's process when it reported no epoch for `--trial-timeout` seconds, so
  Tune counts a failure and retries it like any other.
- `retry_delay` spaces the retries of a failed trial out (`--retry-delay`), so a storage outage of
  a minute does not burn every retry in seconds.
- `TimeBudget` stops the search after `--time-budget` seconds the way Ctrl-C does: what finished
  is written, the rest continues with `--resume`.

`PendingTimeout` and `TimeBudget` stop Tune by raising SIGUSR1 in the driver: Tune 2.60 treats it
as it treats Ctrl-C (tune.py `_setup_signal_catching`): the experiment state is saved with the
running trials still RUNNING, so `--resume` continues them from their last checkpoint. A Tune
`Stopper`'s `stop_all` would instead end every unfinished trial as TERMINATED, with fewer epochs
than asked and nothing for `--resume` to continue.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

# Retries wait `--retry-delay` seconds, doubling with each further retry, never more than this.
MAX_RETRY_DELAY_S = 300.0
# The file in a trial's working directory that counts its attempts (`attempt_number`).
ATTEMPTS_FILE = ".tune_mnist_attempts"
# Why a run's search was stopped in this driver, by run folder ("time" or "pending"); the run's
# exit status and last line depend on it (tuning._run_locked).
_STOPPED: dict[str, str] = {}


# ---- resources -----------------------------------------------------------------------------------


NODE_RESOURCES = ("CPU", "GPU", "memory")  # what a trial asks of a node, in Ray's names


def unmet_request(request: Mapping[str, float], nodes: Iterable[Mapping[str, Any]]) -> str | None:
    """None when some alive node has every resource of ``request`` ({"CPU": 1, "GPU": 1}); else
    one line: what one trial asks and what the largest nodes have.

    A trial is one bundle (one placement group of one bundle), so it must fit on one node.

    >>> node = {"Alive": True, "Resources": {"CPU": 2.0, "memory": 2**31}}
    >>> unmet_request({"CPU": 1.0, "GPU": 0.0, "memory": 2**30}, [node]) is None
    True
    >>> print(unmet_request({"CPU": 1.0, "GPU": 1.0}, [node]))  # doctest: +NORMALIZE_WHITESPACE
    each trial asks for 1 CPU and 1 GPU; no node has that
    (the cluster has 1 node: 2 CPU, 0 GPU, 2048 MiB memory)
    """
    alive = [dict(node.get("Resources", {})) for node in nodes if node.get("Alive", True)]
    if any(all(have.get(k, 0.0) >= v for k, v in request.items() if v > 0) for have in alive):
        return None
    asked = " and ".join(_amount(k, v) for k, v in request.items() if v > 0)
    kinds = sorted({tuple(have.get(k, 0.0) for k in NODE_RESOURCES) for have in alive})
    shapes = "; ".join(
        shown_resources(dict(zip(NODE_RESOURCES, kind, strict=True))) for kind in kinds[::-1]
    )
    shapes = shapes or "none alive"
    count = f"{len(alive)} node{'s' if len(alive) != 1 else ''}"
    return f"each trial asks for {asked}; no node has that (the cluster has {count}: {shapes})"


def shown_resources(resources: Mapping[str, float]) -> str:
    """'4 CPU, 1 GPU, 3072 MiB memory': what a trial can ask of a node (Ray counts bytes)."""
    return ", ".join(_amount(k, resources.get(k, 0.0)) for k in NODE_RESOURCES)


def _amount(resource: str, value: float) -> str:
    return f"{value / 2**20:.0f} MiB memory" if resource == "memory" else f"{value:g} {resource}"


# ---- retries -------------------------------------------------------------------------------------


def retry_delay(attempt: int, first_s: float) -> float:
    """Seconds attempt ``attempt`` (1: the trial's first) waits before it starts.

    >>> [retry_delay(n, 30.0) for n in (1, 2, 3, 4, 5, 6)]
    [0.0, 30.0, 60.0, 120.0, 240.0, 300.0]
    """
    if attempt <= 1 or first_s <= 0:
        return 0.0
    return min(MAX_RETRY_DELAY_S, first_s * 2.0 ** (attempt - 2))


def attempt_number(trial_dir: str | Path) -> int:
    """Count this attempt of the trial whose working directory is ``trial_dir``; 1 for its first.

    The count lives in a file: a retried trial runs in a new process (its old one may have died),
    and Tune 2.60 tells a function trainable neither its failures nor its attempt. The working
    directory is the node's own (/tmp/ray/session_*/artifacts/...): a retry on another node, or in
    a new driver (--resume), counts from 1 again, so its wait is shorter, never longer.
    """
    path = Path(trial_dir, ATTEMPTS_FILE)
    try:
        before = int(path.read_text())
    except (OSError, ValueError):
        before = 0
    try:
        path.write_text(str(before + 1))
    except OSError:
        pass  # no count, no wait: never fail a trial over its bookkeeping
    return before + 1


# ---- hung trials ---------------------------------------------------------------------------------


RELAY_S = 2.0  # what Ray's log monitor (a 0.1 s poll) needs, with a margin for a busy node


class Watchdog:
    """Ends this process when `beat` was not called for ``timeout_s`` seconds.

    Tune 2.60 has no per-trial wall-clock limit, and a trial stuck inside TensorFlow, a collective
    or a storage call cannot be interrupted from Python (an exception raised into its thread waits
    for the stuck call to return). Ending the whole worker process is what a crashed node does:
    Tune sees the actor die, counts a failure and retries the trial from its last checkpoint
    (`--max-failures`). The line printed first reaches the driver's terminal (Ray's log_to_driver).
    """

    def __init__(self, timeout_s: float, what: str) -> None:
        self.timeout_s, self.what = timeout_s, what
        self._last = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tune_mnist-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()  # a reused worker trains the next trial: this trial's watch ends here

    def beat(self) -> None:
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout_s / 4)):
            if time.monotonic() - self._last >= self.timeout_s:
                print(
                    f"tune_mnist: {self.what}: no epoch reported for {self.timeout_s:g} s "
                    f"(--trial-timeout); ending its process (pid {os.getpid()}) so that it is "
                    "retried",
                    file=sys.stderr,
                    flush=True,
                )
                # Ray relays the line from the worker's log file a moment later. When this death
                # ends the search (a trial's last attempt), the driver shuts down soon after;
                # ending at once once lost the line on a busy machine.
                time.sleep(RELAY_S)
                os._exit(1)


# ---- stopping the search -------------------------------------------------------------------------


def stop_reason(run_dir: str) -> str | None:
    """'time' or 'pending' when this driver stopped the search of ``run_dir``; None otherwise."""
    return _STOPPED.get(run_dir)


def forget_stop(run_dir: str) -> None:
    """A new search of ``run_dir`` in this process (a resume from Python) starts unstopped."""
    _STOPPED.pop(run_dir, None)


def _stop_tune(run_dir: str, reason: str) -> None:
    """Stop the search as Ctrl-C would (see the module's docstring)."""
    if run_dir in _STOPPED:
        return
    _STOPPED[run_dir] = reason
    # Tune installs its handler only when it runs in the main thread; without it, SIGUSR1 would
    # end the driver at once, so the search is then left to run on.
    if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        signal.raise_signal(signal.SIGUSR1)


class TimeBudget(Callback):
    """Stops the search ``budget_s`` seconds after its loop started in this driver."""

    def __init__(self, budget_s: float, run_dir: str) -> None:
        self.budget_s, self.run_dir = budget_s, run_dir
        self._started: float | None = None

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        self._started = now if self._started is None else self._started
        if now - self._started >= self.budget_s:
            _stop_tune(self.run_dir, "time")


class PendingTimeout(Callback):
    """Stops the search once trials have waited ``timeout_s`` seconds with none running: no node
    had room for one, and the cluster did not add one."""

    def __init__(self, timeout_s: float, run_dir: str) -> None:
        self.timeout_s, self.run_dir = timeout_s, run_dir
        self._waiting_since: float | None = None

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        statuses = {trial.status for trial in trials}
        if "PENDING" not in statuses or statuses & {"RUNNING", "PAUSED"}:
            self._waiting_since = None
            return
        now = time.monotonic()
        self._waiting_since = self._waiting_since or now
        if now - self._waiting_since >= self.timeout_s:
            _stop_tune(self.run_dir, "pending")
