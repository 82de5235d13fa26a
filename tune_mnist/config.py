"""What a search is asked to do: `SearchConfig`, one typed field per option of the command line.

The command line (`python -m tune_mnist.run`) parses its options into a `SearchConfig`; a notebook
or a Ray job script builds one directly, or passes the same names to `tune_mnist.search`. A run's
`run_manifest.json` records the configuration under ``args`` (`dataclasses.asdict`), and
`SearchConfig.from_manifest` reads it back for ``--resume``, from manifests of any age.

>>> config = SearchConfig(space="seed_grid", max_epochs=3)
>>> config.command_line()
['python', '-m', 'tune_mnist.run', '--space', 'seed_grid', '--max-epochs', '3']
>>> SearchConfig(max_epochs=0)
Traceback (most recent call last):
...
tune_mnist.config.UsageError: max_epochs (--max-epochs) must be a positive integer, got 0

This module imports neither Ray nor TensorFlow: a configuration is checked before either starts.
"""

from __future__ import annotations

import math
import os
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tune_mnist.data import DATASETS, check_split
from tune_mnist.resources import ResourcePlan
from tune_mnist.storage import DEFAULT_STORAGE_PATH

# --scheduler: Ray Tune's names. An old name still works on the command line, and a resumed run
# that recorded one gets the new name.
SCHEDULERS = ("fifo", "asha")
SCHEDULER_ALIASES = {"grid": "fifo"}
SEARCH_ALGS = ("random", "tpe")
# A reused worker's bounds (--worker-max-trials, --worker-max-rss-mib). A worker's RSS grows with
# every pair it trains, even after clear_session and gc (model.fit's leak in a loop,
# keras-team/keras#17458): 120 MiB per pair of num_conv=2 models on mnist_sample
# (scripts/worker_memory.py: 1.1 GiB after the first pair, 3.4 GiB after 20). 10
# pairs bound that to about 1.2 GiB per worker while a worker start (about 4 s) is paid once per
# 10 trials; 3072 MiB (about three times a fresh trial's peak on full Fashion-MNIST) catches larger
# models sooner.
WORKER_MAX_TRIALS = 10
WORKER_MAX_RSS_MIB = 3072.0
# --memory-per-trial's default without reused workers: a fresh worker's RSS after its first pair
# (1,147 MiB, scripts/worker_memory.py) and a third more for larger models and data. With reused
# workers a trial asks for what --worker-max-rss-mib lets its worker grow to.
FRESH_TRIAL_MIB = 1536.0
# --retry-delay, --pending-timeout: the defaults. 30 s doubling waits 30 + 60 s before the third
# attempt (--max-failures 2): longer than a one-minute storage outage. 600 s is about what a cloud
# autoscaler takes to start a GPU node.
RETRY_DELAY_S = 30.0
PENDING_TIMEOUT_S = 600.0
# --max-failures -1 ("unlimited") is refused; a run that recorded it resumes with this many.
RESUMED_UNLIMITED_FAILURES = 10
# A manifest written before an option existed gets the option's default when resumed: a new option
# must default to what runs did before it. Where the default changed later, the old behaviour is
# here. reuse_workers: runs made before workers were reused by default resume as they started,
# each trial in a new process (they had no bound on a worker's memory).
RESUME_DEFAULTS: dict[str, Any] = {"reuse_workers": False}
# Recorded values that were renamed since: a resumed run gets the new name.
RENAMED_VALUES: dict[str, dict[Any, Any]] = {"scheduler": SCHEDULER_ALIASES}
# Options whose values, when given, must be positive: integers, then numbers.
POSITIVE_INTEGERS = (
    "seeds",
    "max_trials",
    "num_samples",
    "train_subset",
    "max_epochs",
    "grace_period",
    "patience",
    "max_replicates",
    "worker_max_trials",
    "max_concurrent",
)
POSITIVE_NUMBERS = ("precision", "worker_max_rss_mib", "pending_timeout")
# Options whose values, when given, must be positive numbers (None: no limit).
OPTIONAL_POSITIVE_NUMBERS = ("trial_timeout", "time_budget", "memory_per_trial")
# Fields that are not options: what a resumed run's manifest says about how its pairs are seeded.
NOT_OPTIONS = ("independent_replicates",)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class UsageError(Exception):
    """Bad input (an option of the command line, the same field of a SearchConfig): reported as
    one line, exit status 2 on the command line."""


@dataclass(frozen=True)
class SearchConfig:
    """Every option of `python -m tune_mnist.run`, by its name with underscores, with the same
    default. Paths (``space``, ``data_dir``, ``storage_path``) may be `pathlib.Path` objects.

    Checked when made: a bad value raises UsageError (or `tune_mnist.data.DataError` for the
    split) naming the field and its command-line option, before Ray or TensorFlow start.
    """

    # What to search
    # A built-in name or a YAML file; None: quickstart, or the resumed run's.
    space: str | None = None
    seeds: int | None = None
    max_trials: int = 1000
    yes: bool = False
    num_samples: int = 1
    search_alg: str = "random"
    # Data
    dataset: str = "mnist_sample"
    data_dir: str | None = None
    val_fraction: float = 0.1
    train_subset: int | None = None
    # Scheduling
    scheduler: str = "fifo"
    max_epochs: int = 2
    grace_period: int = 1
    reduction_factor: float = 3.0
    patience: int | None = None
    # Until decided
    until_decided: bool = False
    precision: float = 0.005
    max_replicates: int = 20
    # Resources
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    memory_per_trial: float | None = None  # MiB; None: see resource_plan
    max_failures: int = 2
    retry_delay: float = RETRY_DELAY_S
    trial_timeout: float | None = None
    pending_timeout: float = PENDING_TIMEOUT_S
    time_budget: float | None = None
    reuse_workers: bool = True
    worker_max_trials: int = WORKER_MAX_TRIALS
    worker_max_rss_mib: float = WORKER_MAX_RSS_MIB
    max_concurrent: int | None = None
    address: str | None = None
    dashboard: bool = False
    # Output
    storage_path: str = DEFAULT_STORAGE_PATH
    name: str | None = None
    resume: bool = False
    resume_if_exists: bool = False
    report: bool = False
    mlflow: str | None = None
    verbose: bool = False
    seed: int = 0
    # Not an option: False only for a resumed run made before pairs were independent replicates
    # (its manifest lacks the mark), whose pairs are seeded as they began.
    independent_replicates: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        for name in ("space", "data_dir", "storage_path"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        _check_types(self)
        _check_values(self)

    @classmethod
    def from_manifest(cls, args: dict[str, Any], **given: Any) -> SearchConfig:
        """The configuration a run recorded (its manifest's ``args``), with ``given`` replacing
        what it says: an old manifest lacks newer options (their defaults apply, or
        RESUME_DEFAULTS where the default changed), may carry renamed values (scheduler 'grid'),
        and options since removed (ignored)."""
        known = {f.name for f in fields(cls)}
        recorded = {k: v for k, v in {**RESUME_DEFAULTS, **args}.items() if k in known}
        if recorded.get("max_failures", 0) < 0:  # a run made while -1 meant unlimited
            recorded["max_failures"] = RESUMED_UNLIMITED_FAILURES
        for name, renamed in RENAMED_VALUES.items():
            if recorded.get(name) in renamed:
                recorded[name] = renamed[recorded[name]]
        return cls(**{**recorded, **given})

    def resource_plan(self) -> ResourcePlan:
        """What each trial asks Ray for. Memory: --memory-per-trial, or by default what a worker
        may grow to: --worker-max-rss-mib with reused workers, a fresh trial's peak without."""
        memory = self.memory_per_trial or (
            self.worker_max_rss_mib if self.reuse_workers else FRESH_TRIAL_MIB
        )
        return ResourcePlan(self.cpus_per_trial, self.gpus_per_trial, memory)

    def to_manifest(self) -> dict[str, Any]:
        """What a manifest records under ``args`` (read back by `from_manifest`)."""
        return asdict(self)

    def command_line(self) -> list[str]:
        """The `python -m tune_mnist.run` command of this configuration (options that differ
        from their default), as a run started from Python records it in its manifest."""
        argv = ["python", "-m", "tune_mnist.run"]
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in NOT_OPTIONS or value == item.default:
                continue
            option = option_name(item.name)
            if isinstance(value, bool):  # the store_true flags, and --no-reuse-workers
                argv.append(option if value else f"--no-{option[2:]}")
            else:
                argv += [option, str(value)]
        return argv


def option_name(field_name: str) -> str:
    """The command-line option of a SearchConfig field: ``max_epochs`` -> ``--max-epochs``."""
    return "--" + field_name.replace("_", "-")


def option_fields() -> list[str]:
    """The fields of SearchConfig that are command-line options."""
    return [item.name for item in fields(SearchConfig) if item.name not in NOT_OPTIONS]


def _said(name: str) -> str:
    return f"{name} ({option_name(name)})"


def _check_types(config: SearchConfig) -> None:
    """Each field holds its annotated type: a float field takes an int, an int field no bool."""
    hints = typing.get_type_hints(SearchConfig)
    for item in fields(config):
        value = getattr(config, item.name)
        allowed = typing.get_args(hints[item.name]) or (hints[item.name],)
        if value is None and type(None) in allowed:
            continue
        if isinstance(value, bool):
            ok = bool in allowed
        elif isinstance(value, int):
            ok = int in allowed or float in allowed
        else:
            ok = isinstance(value, tuple(t for t in allowed if t is not type(None)))
        if not ok:
            wanted = " or ".join(t.__name__ for t in allowed)
            raise UsageError(f"{_said(item.name)} must be {wanted}, got {value!r}")


def _check_values(config: SearchConfig) -> None:
    """The rules of each value; the command line's parser already applies some of them."""
    for name in POSITIVE_INTEGERS:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise UsageError(f"{_said(name)} must be a positive integer, got {value}")
    for name in POSITIVE_NUMBERS:
        value = getattr(config, name)
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{_said(name)} must be a number > 0, got {value}")
    for name in OPTIONAL_POSITIVE_NUMBERS:
        value = getattr(config, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{_said(name)} must be a number > 0, got {value}")
    if not (config.retry_delay >= 0 and math.isfinite(config.retry_delay)):
        raise UsageError(f"{_said('retry_delay')} must be a number >= 0, got {config.retry_delay}")
    choices = {"dataset": DATASETS, "search_alg": SEARCH_ALGS, "scheduler": SCHEDULERS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise UsageError(
                f"{_said(name)} must be one of {', '.join(allowed)}, got {getattr(config, name)!r}"
            )
    for name, value in asdict(config).items():
        if isinstance(value, str) and "\0" in value:
            raise UsageError(f"{option_name(name)} must not contain NUL characters")
    _check_rules(config)


def _check_rules(config: SearchConfig) -> None:
    """The rules that span fields, or that live with their domain (the split, resources)."""
    if config.name is not None and (not NAME.fullmatch(config.name) or ".." in config.name):
        raise UsageError(
            f"--name {config.name!r}: use letters, digits, '.', '_' and '-' only "
            "(no path separators or '..')"
        )
    check_split(config.val_fraction, config.train_subset)  # the one home of these rules
    try:
        ResourcePlan(config.cpus_per_trial, config.gpus_per_trial)  # the one home of these rules
    except ValueError as e:
        raise UsageError(f"--cpus-per-trial / --gpus-per-trial: {e}") from None
    if not (config.reduction_factor > 1 and math.isfinite(config.reduction_factor)):
        raise UsageError(f"--reduction-factor must be a number > 1, got {config.reduction_factor}")
    if config.max_failures == -1:
        raise UsageError(
            "--max-failures -1 (unlimited) is refused: a trial that always fails would retry "
            "forever; give a number of retries (default 2)"
        )
    if config.max_failures < 0:
        raise UsageError(f"--max-failures must be >= 0, got {config.max_failures}")
    if not 0 <= config.seed < 2**32:
        raise UsageError(f"--seed must be from 0 to 2**32 - 1, got {config.seed}")
    if config.resume and not config.name:
        raise UsageError("--resume needs --name (and --storage-path) of the run to continue")
    if config.resume_if_exists and not config.name:
        raise UsageError("--resume-if-exists needs --name (and --storage-path) of the run")
