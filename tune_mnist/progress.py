"""A search's live progress for a person: one line per finished or failed pair, with the time left.

Replaces Tune's own console output (its status table and per-trial result boxes) unless the search
runs with ``--verbose``. Runs in the driver only: a Tune callback sees every report a trial sends.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback

from tune_mnist.resources import describe_error
from tune_mnist.space import ARMS, architecture_label

FINISHED = ("TERMINATED", "ERROR")


def format_duration(seconds: float) -> str:
    """'45 s', '2 min 10 s', '1 h 05 min': as precise as a person reading a progress line needs."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def seconds_left(
    *,
    pairs_total: int,
    pairs_finished: int,
    running_epochs: Sequence[int],
    max_epochs: int,
    seconds_per_pair_epoch: float,
    at_once: int,
) -> float:
    """The search's time left, in seconds: a deliberately simple estimate.

    It assumes every unfinished pair runs all ``max_epochs`` epochs (true for the fifo scheduler
    without --patience; an upper bound under ASHA or --patience, which may stop pairs early), that
    every pair-epoch takes the mean seconds seen so far (a worker's start-up spread over its
    epochs), and that ``at_once`` pairs keep running side by side until the end. Pairs still
    running (``running_epochs``: the epochs each has done) need only their remaining epochs.
    """
    running = len(running_epochs)
    not_started = max(0, pairs_total - pairs_finished - running)
    epochs_left = not_started * max_epochs + sum(max(0, max_epochs - e) for e in running_epochs)
    return epochs_left * seconds_per_pair_epoch / max(1, at_once)


def _time_part(elapsed: float, left: float | None, *, upper_bound: bool) -> str:
    text = f"{format_duration(elapsed)} elapsed"
    if left is not None:
        text += f", {'at most' if upper_bound else 'about'} {format_duration(left)} left"
    return text


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def pair_done_line(
    *,
    number: int,
    total: int,
    label: str,
    seed: Any,
    val_acc: dict[str, float | None],
    epochs: int,
    elapsed: float,
    left: float | None,
    upper_bound: bool = False,
) -> str:
    """'pair 3/9 done (num_conv=2, seed 0): plain val_acc 0.8573, mixup 0.8466 after 4 epochs; ...'

    ``val_acc`` per arm is the last epoch's; None for an arm that diverged (its loss became NaN).
    """

    def score(arm: str) -> str:
        value = val_acc.get(arm)
        return "diverged" if value is None else f"{value:.4f}"

    return (
        f"pair {number}/{total} done ({label}, seed {seed}): plain val_acc {score('plain')}, "
        f"mixup {score('mixup')} after {_epochs(epochs)}; "
        + _time_part(elapsed, left, upper_bound=upper_bound)
    )


def pair_failed_line(
    *,
    number: int,
    total: int,
    label: str,
    seed: Any,
    error: str,
    epochs: int,
    elapsed: float,
    left: float | None,
    upper_bound: bool = False,
) -> str:
    """'pair 4/9 failed (num_conv=2, seed 1) after 1 epoch: ValueError: ...; ...'"""
    return (
        f"pair {number}/{total} failed ({label}, seed {seed}) after {_epochs(epochs)}: {error}; "
        + _time_part(elapsed, left, upper_bound=upper_bound)
    )


def last_error_line(error_file: str | Path | None) -> str:
    """One line for a trial's error file: its last line (the exception and its message), or that
    the worker ran out of memory (`tune_mnist.resources.describe_error`)."""
    try:
        text = Path(error_file).read_text(errors="replace") if error_file else ""
    except OSError:
        text = ""
    return describe_error(text) if text.strip() else "unknown error (no error file)"


def _last_val_acc(report: dict[str, Any]) -> dict[str, float | None]:
    """Each arm's val_acc in a pair's last report; None for an arm that diverged (NaN, or absent
    after the epoch it diverged in)."""
    scores = {arm: (report.get(arm) or {}).get("val_acc") for arm in ARMS}
    return {arm: v if v is not None and math.isfinite(v) else None for arm, v in scores.items()}


class PairProgress(Callback):
    """Prints one line per finished pair and per failed pair to stdout.

    ``varying``: the space's grid and random keys (what tells pairs apart in the line);
    ``upper_bound``: pairs may stop before ``max_epochs`` (ASHA, --patience), so the time left is
    "at most".
    """

    def __init__(
        self, *, pairs_total: int, max_epochs: int, varying: Sequence[str], upper_bound: bool
    ) -> None:
        self.pairs_total = pairs_total
        self.max_epochs = max_epochs
        self.varying = list(varying)
        self.upper_bound = upper_bound
        self.started = time.time()
        self.at_once = 1
        # The latest report of running trials only: a 10,000-trial search keeps no report per
        # finished trial, just what the time left needs, and no hook walks the list of all trials
        # (that would cost the driver time in proportion to the trials so far, for every result:
        # scripts/scale.py measures the driver).
        self.reports: dict[str, dict[str, Any]] = {}  # trial id -> its latest report
        self.finished: set[str] = set()  # ids of trials that ended, in this invocation or before
        self.earlier_counted = False
        self.finished_seconds = 0.0  # time_total_s of the finished trials
        self.finished_epochs = 0

    def setup(self, **info: Any) -> None:
        self.started = time.time()  # this invocation's start (a resumed run counts from here)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        self.reports[trial.trial_id] = result
        self.at_once = max(self.at_once, len(self.reports))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._finished(trials, trial, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._finished(trials, trial, error=last_error_line(trial.error_file))

    def _finished(self, trials: list, trial: Any, error: str | None) -> None:
        if not self.earlier_counted:  # once: the trials a resumed run had already finished
            self.finished |= {t.trial_id for t in trials if t.status in FINISHED}
            self.earlier_counted = True
        self.finished.add(trial.trial_id)
        report = self.reports.pop(trial.trial_id, None) or trial.last_result or {}
        self.finished_seconds += report.get("time_total_s", 0.0)
        self.finished_epochs += report.get("training_iteration", 0)
        common = {
            "number": len(self.finished),
            "total": self.pairs_total,
            "label": architecture_label(trial.config, self.varying),
            "seed": trial.config.get("seed", "?"),
            "epochs": int(report.get("epoch") or report.get("training_iteration") or 0),
            "elapsed": time.time() - self.started,
            "left": self._left(),
            "upper_bound": self.upper_bound,
        }
        if error is None:
            line = pair_done_line(val_acc=_last_val_acc(report), **common)
        else:
            line = pair_failed_line(error=error, **common)
        print(line, file=sys.stdout, flush=True)

    def _left(self) -> float | None:
        if len(self.finished) >= self.pairs_total:
            return None
        running = [int(r.get("training_iteration", 0)) for r in self.reports.values()]
        seconds = self.finished_seconds + sum(
            r.get("time_total_s", 0.0) for r in self.reports.values()
        )
        epochs = self.finished_epochs + sum(running)
        if not epochs:
            return None
        # Running trials that have not reported yet count as not started: the same epochs left.
        return seconds_left(
            pairs_total=self.pairs_total,
            pairs_finished=len(self.finished),
            running_epochs=running,
            max_epochs=self.max_epochs,
            seconds_per_pair_epoch=seconds / epochs,
            at_once=self.at_once,
        )
