"""Each trial's result.json and params.json, written by the driver without keeping trials.

`tune_mnist.results` (and the scripts) read a trial's reports from result.json and its
configuration from params.json: the files of Ray Tune's JsonLoggerCallback. Tune adds that logger
with a CSV and a TensorBoard one unless TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1, and together they
keep something of every trial ever started in the driver (ray-project/ray#64231: about 0.3 MB per
trial). The search turns them off and adds this logger: the same files, written the same way
(restored from remote storage before appending on a resumed run), minus the configuration the
JSON logger holds for every trial until the search ends.

It also drops what Tune keeps of a finished trial only to update it with later results: the
running means over each metric's last 5 and 10 results (`metric_n_steps`, two deques per metric:
about 55 KB of driver memory per pair trial of 33 numeric metrics, measured with
scripts/scale.py). The trial's last result and its min/max/mean per metric stay.

Tune offers no public way to drop either: both go through `tune_mnist.ray_internals`, which warns
(naming the Ray version) where a release has renamed them.
"""

from __future__ import annotations

from typing import Any

from ray.tune.logger import JsonLoggerCallback

from tune_mnist import ray_internals


class TrialLog(JsonLoggerCallback):
    """Tune's JSON logger that forgets a trial once it has ended."""

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        super().log_trial_end(trial, failed=failed)
        ray_internals.forget_trial_config(self, trial)
        if not failed:  # a failed trial may be retried or resumed: it reports again
            ray_internals.forget_running_means(trial)
