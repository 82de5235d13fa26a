"""One search, end to end: validate, load data once, run Ray Tune, then `results.finish`.

Every configuration of the space is one Tune trial that trains a pair: the plain and the MixUp arm.
`search` is the entry point of both the command line (`tune_mnist.run`) and Python
(`tune_mnist.search`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tune_mnist import data as datasets
from tune_mnist import results, run_lock
from tune_mnist.comparison import UNFINISHED, UNREADABLE
from tune_mnist.config import SearchConfig, UsageError
from tune_mnist.files import MANIFEST_FILE, ManifestError, read_manifest, write_json
from tune_mnist.mlflow_runs import TrackingError, check_reachable
from tune_mnist.replicates import MANIFEST_MARK, marked_independent
from tune_mnist.space import DEFAULT_SPACE, Space, is_builtin, load_space
from tune_mnist.storage import (
    delete_object,
    is_file,
    is_uri,
    join,
    local_mirror,
    resolve,
    split,
    write_object,
)

EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_STORAGE, EXIT_TIME_BUDGET, EXIT_INTERRUPTED = 2, 3, 4, 5, 130
REQUEST_OPTIONS = "--cpus-per-trial / --gpus-per-trial / --memory-per-trial"
# The environment variables the manifest records (and with it MLflow, which logs the manifest):
# those that change what a run computes or where it runs, by exact name. A prefix would let
# through what a platform adds under it: RAY_JOB_HEADERS (HTTP headers with bearer tokens),
# RAY_AUTH_TOKEN, AWS_* credentials.
RECORDED_ENVIRONMENT = (
    "TUNE_MNIST_DATA_DIR",
    "TUNE_MNIST_QUIET",
    "TUNE_MNIST_TESTING_FAULT",
    "RAY_ADDRESS",  # recorded without user, password, query or fragment
    "RAY_AUTH_MODE",
    "TUNE_MAX_PENDING_TRIALS_PG",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
    "TF_CPP_MIN_LOG_LEVEL",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "KERAS_BACKEND",
    "PYTHONHASHSEED",
    "MLFLOW_EXPERIMENT_NAME",
)


class StorageError(Exception):
    """The storage path stopped taking writes during the search (a full disk, an unreachable
    object store): reported as one line with the command that resumes, exit status 4."""


def default_name(space: str, dataset: str) -> str:
    """SPACE-DATASET-TIME and four random hex digits: the suffix keeps two runs started in the
    same second (a job array, two users on one storage path) apart."""
    return f"{Path(space).stem}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_exists(run_dir: str) -> bool:
    """Whether a run was started at ``run_dir`` (its manifest is there)."""
    try:
        return is_file(join(run_dir, MANIFEST_FILE))
    except (OSError, ValueError):  # an unreachable store: the write probe reports it
        return False


def free_name(storage: str, name: str) -> str:
    """The first of NAME-2, NAME-3, ... that no run uses yet."""
    for number in range(2, 100):
        candidate = f"{name}-{number}"
        if (
            not run_exists(join(storage, candidate))
            and run_lock.holder(join(storage, candidate)) is None
        ):
            return candidate
    return f"{name}-{secrets.token_hex(2)}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("tune_mnist", "ray", "tensorflow", "keras", "numpy", "pandas", "pyarrow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def _check_writable(run_dir: str) -> None:
    """Fail before training when results could not be written (read-only, missing or full disk;
    at a URI: a missing bucket, no credentials, access denied, no server)."""
    try:
        if is_uri(run_dir):
            write_object(join(run_dir, ".write_test"), b"x")
            delete_object(join(run_dir, ".write_test"))
            return
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(run_dir, ".write_test")
        with open(probe, "wb") as f:
            f.write(b"x" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except (OSError, ValueError) as e:  # pyarrow raises ValueError for a URI it cannot parse
        where = split(run_dir)[0]
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise UsageError(f"--storage-path {where}: cannot write there ({reason})") from None


def recorded_environment() -> dict[str, str]:
    """The environment variables that shape a run, for the manifest: `RECORDED_ENVIRONMENT` only."""
    found = {name: os.environ[name] for name in sorted(RECORDED_ENVIRONMENT) if name in os.environ}
    if "RAY_ADDRESS" in found:
        found["RAY_ADDRESS"] = _without_credentials(found["RAY_ADDRESS"])
    return found


def _without_credentials(address: str) -> str:
    """An address less what may authenticate: ``user:password@``, a query, a fragment.

    >>> _without_credentials("http://user:hunter2@head:8265/?token=hunter2")
    'http://head:8265/'
    >>> _without_credentials("user:hunter2@head:6379")
    'head:6379'
    """
    if "://" not in address:
        return address.rpartition("@")[2]
    parts = urlsplit(address)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _init_ray(address: str | None, *, dashboard: bool = False, verbose: bool = False) -> None:
    """Start a local Ray, or join the cluster at ``address`` (then ``dashboard`` does nothing).

    Whatever a trial's process writes reaches this terminal (Ray's log_to_driver), prefixed
    ``(train_pair pid=N)``: warnings, prints, and the last words of a process that crashes (a
    fatal TensorFlow check, an out-of-memory kill), which Tune's own report of a failed trial (its
    traceback, printed by the driver) does not show. Ray prints repeated lines once, with
    ``[repeated Nx across cluster]``. TensorFlow's C++ log level is set in every worker's
    environment, which silences its INFO and WARNING lines; TensorFlow 2.21 writes a few before
    reading it (oneDNN, CUDA probing): without ``verbose`` workers hide those (trainable.QUIET_ENV),
    and Ray's own INFO and WARNING lines (a local instance started, token authentication on) are
    not shown.
    """
    import ray

    if ray.is_initialized():  # scripts/scale.py's local Ray, with many logical CPUs
        return
    from tune_mnist.trainable import QUIET_ENV

    inherited = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    quiet_tensorflow = {
        "TF_CPP_MIN_LOG_LEVEL": os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2"),
        QUIET_ENV: "0" if verbose else "1",
    }
    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # A job that already sets the variable (its runtime env reaches this process too) keeps
        # it: Ray refuses to merge the same variable from the job and from ray.init.
        ray.init(
            address=address,
            runtime_env=None if inherited else {"env_vars": quiet_tensorflow},
            logging_level=logging.INFO if verbose else logging.ERROR,
        )
        return
    # A local instance is ours alone, so its workers may import TensorFlow up front (see
    # import_tensorflow). On a shared cluster only the log level joins the job's runtime env.
    # Token authentication: Ray >= 2.59 (the floor in pyproject.toml) turns it on for a new local
    # instance and makes the token (~/.ray/auth_token) unless RAY_AUTH_MODE says otherwise. Setting
    # RAY_AUTH_MODE=token here instead would not do on older Ray: Ray reads it once, at `import
    # ray`, so this process would still talk without a token to a GCS that requires one, and
    # ray.init fails (checked with Ray 2.60).
    context = ray.init(
        logging_level=logging.INFO if verbose else logging.ERROR,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",  # never reachable from other machines
        runtime_env={
            "env_vars": quiet_tensorflow,
            "worker_process_setup_hook": "tune_mnist.trainable.import_tensorflow",
        },
    )
    if dashboard:
        print(f"tune_mnist: Ray dashboard at http://{context.dashboard_url}", flush=True)


def _resume_config(run_dir: str, config: SearchConfig) -> SearchConfig:
    """The original run's configuration from its manifest: `--resume` needs no other options.

    A `--space` given with `--resume` must resolve to the run's own space.
    """
    manifest_file = join(run_dir, MANIFEST_FILE)
    try:
        if not is_file(manifest_file):
            raise UsageError(f"--resume: no run at {run_dir} (its {MANIFEST_FILE} is missing)")
        manifest = read_manifest(run_dir)
        original, recorded_space = dict(manifest["args"]), manifest["space"]
        str(original["space"]), str(original["dataset"])
    except (ManifestError, OSError, KeyError, TypeError, ValueError) as e:
        raise UsageError(f"--resume: {manifest_file} is unreadable ({e})") from None
    # A run made before pairs were independent replicates continues its pairs exactly as begun.
    independent = marked_independent(manifest)
    if config.space is not None:
        num_samples = original.get("num_samples", 1)
        given = _searched_space(config.space, config.seeds, num_samples, independent).to_dict()
        if json.loads(json.dumps(given, default=str)) != recorded_space:
            raise UsageError(
                f"--resume: run {split(run_dir)[1]} was made with a different search space "
                f"than {config.space}"
            )
    # Where the run is, whether to show a dashboard, write a report, and where to log it (a
    # tracking server may be gone) come from this command, not the manifest.
    where = {
        "storage_path": config.storage_path,
        "name": config.name,
        "resume_if_exists": config.resume_if_exists,
        "dashboard": config.dashboard,
        "verbose": config.verbose,
        "report": config.report,
        "mlflow": config.mlflow,
        # How long to wait for what, in this invocation: a resumed run gets its own budget.
        "time_budget": config.time_budget,
        "trial_timeout": config.trial_timeout,
        "pending_timeout": config.pending_timeout,
        "retry_delay": config.retry_delay,
        "memory_per_trial": config.memory_per_trial,
    }
    return SearchConfig.from_manifest(
        original, resume=True, **where, independent_replicates=independent
    )


def _searched_space(
    space: str, seeds: int | None, num_samples: int, independent_replicates: bool
) -> Space:
    """The space a search runs: `--num-samples` on a space without random keys adds replicate
    numbers (`Space.replicated`) in a run of independent replicates; an older run ran copies."""
    loaded = load_space(space, seeds=seeds)
    return loaded.replicated(num_samples) if independent_replicates else loaded


def samples_to_draw(config: SearchConfig, space: Space) -> int:
    """Tune's num_samples: 1 where `--num-samples` became replicate numbers (`_searched_space`);
    until decided on a random space, one sample (a draw of the random keys) per round."""
    if config.until_decided and space.randoms:
        return config.max_replicates
    folded = config.independent_replicates and not space.randoms
    return 1 if folded else config.num_samples


def _seeds(config: SearchConfig) -> int | None:
    """The replicate numbers to run: until decided, the rounds are replicate numbers in a grid,
    while a random space runs one replicate per draw and its rounds are new draws."""
    if not config.until_decided:
        return config.seeds
    return 1 if load_space(config.space).randoms else config.max_replicates


def prepare(config: SearchConfig) -> tuple[SearchConfig, Space, str]:
    """Every check that needs no data and no Ray: the configuration to run (a resumed run's own),
    the space, the run folder (an absolute local path, or a URI: see `tune_mnist.storage`).

    Raises UsageError or SpaceError (one line, exit 2) before anything is trained.
    """
    storage = resolve(config.storage_path)
    if config.resume_if_exists:
        config = replace(config, resume=run_exists(join(storage, config.name)))
    if config.resume:
        config = _resume_config(join(storage, config.name), config)
    else:
        # Without --space a new run searches the default space; a resumed one, its own.
        space = DEFAULT_SPACE if config.space is None else config.space
        config = replace(config, space=space, independent_replicates=True)
    space = _searched_space(
        config.space, _seeds(config), config.num_samples, config.independent_replicates
    )
    if config.until_decided:
        _check_until_decided(config, space)
    if config.search_alg == "tpe" and not space.randoms:
        raise UsageError(
            f"--search-alg tpe: {config.space} has no random key for it to propose "
            "(choice, uniform, loguniform, randint); use --search-alg random"
        )
    trials = space.num_trials(samples_to_draw(config, space))
    if not config.resume and trials > config.max_trials and not config.yes:
        raise UsageError(
            f"{trials} trials (pairs) from {config.space} exceed --max-trials {config.max_trials}; "
            f"pass --yes to run them anyway"
        )
    if config.mlflow:
        try:
            check_reachable(config.mlflow)
        except TrackingError as e:
            raise UsageError(str(e)) from None
    run_dir = join(storage, config.name or default_name(config.space, config.dataset))
    _check_unused(run_dir, config.resume)
    _check_writable(run_dir)
    return config, space, run_dir


def _check_until_decided(config: SearchConfig, space: Space) -> None:
    """Rounds need pairs that do not depend on each other: no early stopping, no proposals."""
    refusals = {
        "--scheduler asha (its rungs make pairs depend on each other)": config.scheduler == "asha",
        "--patience": config.patience is not None,
        "--search-alg tpe (its proposals depend on the pairs before)": config.search_alg
        != "random",
        "--num-samples (rounds add the replicates)": config.num_samples != 1,
    }
    for what, refused in refusals.items():
        if refused:
            raise UsageError(f"--until-decided cannot be combined with {what}")


def _check_unused(run_dir: str, resume: bool) -> None:
    """Refuse a run that another search started (unless resumed) or a driver runs now."""
    storage, name = split(run_dir)
    if not resume and run_exists(run_dir):
        raise UsageError(
            f"--name {name}: a run of that name already exists in {storage}; continue it with "
            f"--resume (or --resume-if-exists), or start a new one with --name "
            f"{free_name(storage, name)}"
        )
    found = run_lock.holder(run_dir)
    if found is not None:
        raise UsageError(
            f"--name {name}: another driver is running this run ({found.describe()}); wait for it "
            f"to end, or start a new one with --name {free_name(storage, name)}"
        )


class SearchInterrupted(Exception):
    """The search stopped with pairs unfinished (Ctrl-C, a time limit): the run can be resumed.

    Its results so far were written, and are in ``tables``; ``resume_command`` continues it.
    """

    def __init__(self, tables: results.Tables, unfinished: int, *, stopped_by: str = "") -> None:
        storage, name = split(tables.run_dir or "")
        self.tables, self.unfinished = tables, unfinished
        # What stopped it, when not an interruption: "--time-budget 600 s" (never a decision).
        self.stopped_by = stopped_by
        self.resume_command = (
            f"python -m tune_mnist.run --resume --storage-path {storage} --name {name}"
        )
        super().__init__(
            f"{unfinished} pairs unfinished; resume with: {self.resume_command} (in Python: "
            f"search(resume=True, storage_path={storage!r}, name={name!r}))"
        )


def search(
    config: SearchConfig | None = None, /, *, command: Sequence[str] | None = None, **options: Any
) -> results.Tables:
    """Run a search to its end and return its results, the tables `results.load` reads.

    ``config`` and ``options`` say what to run: a `SearchConfig`, its fields by name (the options
    of `python -m tune_mnist.run` with underscores), or both (``options`` replace the config's).
    ``command`` is what the run's manifest records as the command that made it; by default the
    `python -m tune_mnist.run` command of the same configuration.

    Raises, before anything is trained: UsageError, SpaceError, DataError or ExperimentError for
    bad input (TypeError for an unknown option). After the search started: StorageError when the
    storage path stopped taking writes, SearchInterrupted when pairs are left unfinished (both
    say how to resume). Pairs that failed are in the returned tables (status ERROR), as Ray Tune's
    ResultGrid keeps its errors.
    """
    started = time.time()
    config = replace(config or SearchConfig(), **options)
    recorded = list(command) if command is not None else config.command_line()
    config, space, run_dir = prepare(config)
    try:
        with run_lock.hold(run_dir):
            tables, unfinished = _run_locked(config, space, run_dir, argv=recorded, started=started)
    except run_lock.RunLockedError as e:  # a driver started between prepare's check and here
        raise UsageError(str(e)) from None
    if unfinished:
        from tune_mnist.waits import stop_reason

        stopped_by = ""
        if stop_reason(run_dir) == "time" and config.time_budget:
            stopped_by = f"--time-budget {config.time_budget:g} s"
            stopped_by += " (a time stop, not a decision)" if config.until_decided else ""
        raise SearchInterrupted(tables, unfinished, stopped_by=stopped_by)
    return tables


def has_failed_pairs(tables: results.Tables) -> bool:
    """Whether a pair the run needed ended as ERROR (the command line's exit status 3)."""
    needed, _ = results.needed_pairs(tables.trials, tables.run_dir or "", 0)
    return bool(needed["status"].isin(["ERROR", UNREADABLE]).any())


def _run_locked(
    config: SearchConfig, space: Space, run_dir: str, *, argv: list[str], started: float
) -> tuple[results.Tables, int]:
    """The search in its locked run folder: its tables, and how many pairs are unfinished."""
    search_data = _load_data(config)
    config = _start_ray(config)
    print(
        f"tune_mnist: {space.num_trials(samples_to_draw(config, space))} pairs from {config.space} "
        f"({_replicates_said(config, space)}; each trains a plain and a MixUp model), up to "
        f"{config.max_epochs} epochs each; results in {run_dir}",
        flush=True,
    )
    manifest = _manifest(config, space, search_data, argv, started)
    write_json(join(run_dir, MANIFEST_FILE), manifest)
    search_started = time.time()
    with _storage_failures(run_dir):
        _tune(config, space, search_data, *split(run_dir))
    search_ended = time.time()
    if not config.verbose:
        _import_keras_quietly()
    # One local copy of a run at a URI for the results, the report and MLflow; what they write
    # is uploaded at the end of the block (a local run folder is used as it is).
    with _storage_failures(run_dir), local_mirror(run_dir) as local:
        tables, _ = results.finish(local, shown=run_dir)
        manifest["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        # Where the wall time went (this invocation only; a resumed run records its own).
        manifest["seconds"] = {
            "setup": round(search_started - started, 2),
            "search": round(search_ended - search_started, 2),
            "results": round(time.time() - search_ended, 2),
        }
        write_json(local / MANIFEST_FILE, manifest)
        if config.report:  # after the manifest's end time and seconds, which the report shows
            results.write_run_report(local, tables, shown=run_dir)
        if config.mlflow:  # after the manifest: it is logged too
            results.log_mlflow(config.mlflow, local, tables)
    print(f"\nResults: {run_dir}", flush=True)
    tables.run_dir = run_dir
    pairs = space.num_trials(samples_to_draw(config, space))
    needed, pairs = results.needed_pairs(tables.trials, run_dir, pairs)
    return tables, _unfinished(needed, pairs)


def _replicates_said(config: SearchConfig, space: Space) -> str:
    """How many replicates of what: '3 replicates of each configuration'."""
    replicates = f"{space.replicates} replicate{'s' if space.replicates > 1 else ''}"
    if space.randoms:
        draws = samples_to_draw(config, space)
        return f"{draws} draw{'s' if draws > 1 else ''} of the random keys, {replicates} of each"
    return f"{replicates} of each configuration"


@contextmanager
def _storage_failures(run_dir: str) -> Iterator[None]:
    """An error raised while the storage path no longer takes writes becomes a StorageError.

    Tune and pyarrow fail in many ways on a full disk or a lost object store (OSError, a truncated
    pickle, a failed sync); rather than guess from the exception, the write probe is tried again.
    Each of our files is written whole or not at all, so what was written is complete.
    """
    try:
        yield
    except Exception:
        try:
            _check_writable(run_dir)
        except UsageError as e:
            storage, name = split(run_dir)
            raise StorageError(
                f"{e} during the search; once it can be written, continue with: python -m "
                f"tune_mnist.run --resume --storage-path {storage} --name {name}"
            ) from None
        raise


def _import_keras_quietly() -> None:
    """Import Keras (and TensorFlow) for the test evaluation without their C++ start-up lines.

    TensorFlow 2.21 writes its oneDNN and CUDA-probe lines to fd 2 whatever TF_CPP_MIN_LOG_LEVEL
    says, and probes CUDA (an error line on a machine without a GPU) when it first lists devices.
    Only the import and that probe are silenced: errors while evaluating still reach stderr.
    """
    with datasets.native_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()


def _load_data(config: SearchConfig) -> datasets.SearchData:
    arrays = datasets.load_arrays(config.dataset, config.data_dir, seed=config.seed)
    search_data = datasets.split(
        arrays,
        config.dataset,
        val_fraction=config.val_fraction,
        train_subset=config.train_subset,
        seed=config.seed,
    )
    print(f"tune_mnist: {search_data.summary}", flush=True)
    return search_data


def _manifest(
    config: SearchConfig,
    space: Space,
    search_data: datasets.SearchData,
    argv: list[str],
    started: float,
) -> dict[str, Any]:
    """What the run was made from: command, arguments, space, data, environment, versions."""
    # A resumed older run stays without the mark: its pairs are still seeded the old way.
    mark = MANIFEST_MARK if config.independent_replicates else {}
    return {
        **mark,
        "command": argv,
        "args": config.to_manifest(),
        "space": space.to_dict(),
        # The name of a built-in space (its YAML is the installed tune_mnist version's), or the
        # absolute path of the file.
        "space_source": (
            f"built-in:{config.space}"
            if is_builtin(config.space)
            else str(Path(config.space).resolve())
        ),
        "dataset": {
            "name": config.dataset,
            "source": search_data.source,
            "train": len(search_data.x_train),
            "validation": len(search_data.x_val),
        },
        "environment": recorded_environment(),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "ended": None,
    }


def _unfinished(trials: Any, pairs: int) -> int:
    """The pairs of ``pairs`` that did not end (TERMINATED, ERROR or stopped by design).

    A model-based searcher proposes a pair only when there is room to run it, so an interrupted
    search has pairs that were never created: they count as unfinished too.
    """
    created = trials.drop_duplicates("pair_id")
    return int(created["status"].isin(UNFINISHED).sum() + max(0, pairs - len(created)))


def _tune(
    config: SearchConfig,
    space: Space,
    search_data: datasets.SearchData,
    storage: str,
    name: str,
    *,
    trainable_function: Callable[..., None] | None = None,
    extra_callbacks: Sequence[Any] = (),
) -> None:
    """The search through Ray Tune. scripts/scale.py passes a no-op `trainable_function` (same
    arguments as train_pair) and its meter in `extra_callbacks`: everything else is this run's."""
    import ray
    from ray import tune

    from tune_mnist import ray_internals
    from tune_mnist.rounds import DecisionStopper
    from tune_mnist.schedulers import METRIC, MODE, WorkerLimits, make_scheduler
    from tune_mnist.searchers import make_search_alg
    from tune_mnist.trainable import TrialSettings, train_pair
    from tune_mnist.trial_log import TrialLog

    # Tune warns every few seconds when its experiment-state snapshots take long; on object storage
    # they do, and there is nothing a user could change about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's automatic JSON, CSV and TensorBoard loggers keep every trial in the driver
    # (ray-project/ray#64231); TrialLog writes the files the results read, and forgets.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    _init_ray(config.address, dashboard=config.dashboard, verbose=config.verbose)
    settings = TrialSettings(
        max_epochs=config.max_epochs,
        patience=config.patience,
        cpus_per_trial=config.cpus_per_trial,
        gpus_per_trial=config.gpus_per_trial,
        run_seed=config.seed,
        independent_replicates=config.independent_replicates,
        trial_timeout_s=config.trial_timeout,
        retry_delay_s=config.retry_delay,
        run_location=join(storage, name),  # live TensorBoard scalars
    )
    ray_internals.survive_memory_kills()
    trainable = tune.with_resources(
        tune.with_parameters(trainable_function or train_pair, data=search_data, settings=settings),
        config.resource_plan().tune_resources(),
    )
    verbose, callbacks = _console_output(config, space)
    callbacks += [TrialLog(), *extra_callbacks]
    rounds = _until_decided(config, space, join(storage, name))
    callbacks += [rounds] if rounds else []
    callbacks += _waits(config, join(storage, name))
    stopper = DecisionStopper(join(storage, name)) if rounds else None
    if config.search_alg != "random" or _local(config):
        # As many trials pending (each with a placement group requested) as can run at once.
        # Tune keeps one pending at a time for any searcher but its own random/grid one: with room
        # for N pairs at once, the other N - 1 would start one after another. For random/grid it
        # keeps at least 200, so that an autoscaling cluster grows fast (ray-project/ray#43455,
        # which notes that many pending placement groups slow actor scheduling): a local Ray never
        # grows, and with 200 the driver polls 200 placement groups in every step of its loop.
        have, plan = ray.cluster_resources(), config.resource_plan()
        fits = min(have.get(k, 0.0) // v for k, v in plan.ray_request().items() if v > 0)
        concurrency = config.max_concurrent or int(fits)
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(1, concurrency)))
    if config.resume and tune.Tuner.can_restore(join(storage, name)):
        tuner = tune.Tuner.restore(
            join(storage, name), trainable, resume_unfinished=True, resume_errored=True
        )
        # The restored RunConfig is the original run's: this command's output choice replaces its
        # own. Tune has no public way to change it on restore (see ray_internals); None through
        # Ray Client, where the original's output stays.
        run_config = ray_internals.restored_run_config(tuner)
        if run_config is not None:
            run_config.verbose, run_config.callbacks = verbose, callbacks
            run_config.stop = stopper or run_config.stop
        with _tune_output(config.verbose):
            tuner.fit()
        _check_started(config, join(storage, name))
        return
    search_alg, param_space, per_sample = make_search_alg(
        config.search_alg,
        space,
        metric=METRIC,
        mode=MODE,
        seed=config.seed,
        max_epochs=config.max_epochs,
        max_concurrent=config.max_concurrent,
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            scheduler=make_scheduler(
                config.scheduler,
                max_epochs=config.max_epochs,
                grace_period=config.grace_period,
                reduction_factor=config.reduction_factor,
                worker_limits=(
                    WorkerLimits(config.worker_max_trials, config.worker_max_rss_mib)
                    if config.reuse_workers
                    else None
                ),
            ),
            search_alg=search_alg,
            num_samples=samples_to_draw(config, space) * per_sample,
            # On by default: a reused worker saves ~4 s per trial; the scheduler's WorkerLimits
            # replace it before what model.fit leaks per trained model adds up.
            reuse_actors=config.reuse_workers,
        ),
        run_config=tune.RunConfig(
            name=name,
            # A local path or a URI: Tune opens it with pyarrow.fs.FileSystem.from_uri, as
            # tune_mnist.storage does, so both use the same credentials and endpoint.
            storage_path=str(storage),
            # The latest checkpoint resumes the pair, holds every epoch's validation predictions,
            # and its models are those the test evaluation scores (no epoch chosen on validation).
            # Two are kept, not one: with num_to_keep=1 Tune snapshots the whole experiment state
            # after every trial checkpoint, a cost that grows with the number of trials.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            stop=stopper,
            verbose=verbose,
            callbacks=callbacks,
        ),
    )
    with _tune_output(config.verbose):
        tuner.fit()
    _check_started(config, join(storage, name))


def _local(config: SearchConfig) -> bool:
    """Whether this search starts its own Ray (no --address, no $RAY_ADDRESS): a fixed cluster."""
    return not (config.address or os.environ.get("RAY_ADDRESS"))


def _start_ray(config: SearchConfig) -> SearchConfig:
    """Start or join Ray, and refuse (exit 2) a trial request no node can meet, before training.

    A local Ray is all the cluster there is. A cluster joined with --address may be one that adds
    nodes when asked (an autoscaler), so there the search waits, at most --pending-timeout
    seconds with no trial running (waits.PendingTimeout). On a local Ray with less memory than
    the default request, trials ask for what there is (a small machine still runs the search).
    """
    import ray

    from tune_mnist.waits import unmet_request

    _init_ray(config.address, dashboard=config.dashboard, verbose=config.verbose)
    unmet = unmet_request(config.resource_plan().ray_request(), ray.nodes())
    if unmet is None:
        return config
    local = _local(config)
    if local and config.memory_per_trial is None:
        have = max(node.get("Resources", {}).get("memory", 0.0) for node in ray.nodes()) / 2**20
        smaller = replace(config, memory_per_trial=math.floor(have))
        if have >= 1 and unmet_request(smaller.resource_plan().ray_request(), ray.nodes()) is None:
            print(
                f"tune_mnist: this machine's Ray has {have:.0f} MiB of memory for tasks, less "
                f"than the {config.resource_plan().memory_mib:g} MiB a trial asks for by "
                "default: trials ask for that, one at a time",
                flush=True,
            )
            return smaller
    if local:
        raise UsageError(f"{REQUEST_OPTIONS}: {unmet}")
    print(
        f"tune_mnist: {unmet} yet; waiting up to {config.pending_timeout:g} s "
        "(--pending-timeout) for the cluster to add one",
        flush=True,
    )
    return config


def _waits(config: SearchConfig, run_dir: str) -> list[Any]:
    """The callbacks that bound this search's waits: --time-budget, --pending-timeout."""
    from tune_mnist.waits import PendingTimeout, TimeBudget, forget_stop

    forget_stop(run_dir)
    pending = PendingTimeout(config.pending_timeout, run_dir)
    budget = config.time_budget
    return [pending, *([TimeBudget(budget, run_dir)] if budget else [])]


def _check_started(config: SearchConfig, run_dir: str) -> None:
    """A search stopped because no trial could start: one line, exit 2 (the request is the input
    the cluster cannot serve); the run continues with --resume once the cluster can."""
    from tune_mnist.waits import stop_reason

    if stop_reason(run_dir) != "pending":
        return
    import ray

    from tune_mnist.waits import shown_resources, unmet_request

    unmet = unmet_request(config.resource_plan().ray_request(), ray.nodes()) or (
        f"each trial asks for {shown_resources(config.resource_plan().ray_request())}, and none "
        f"were free (the cluster has {shown_resources(ray.cluster_resources())})"
    )
    storage, name = split(run_dir)
    raise UsageError(
        f"--pending-timeout {config.pending_timeout:g}: no trial could start for that long: "
        f"{unmet}; once the cluster can run one, continue with: python -m tune_mnist.run "
        f"--resume --storage-path {storage} --name {name}"
    )


def _until_decided(config: SearchConfig, space: Space, run_dir: str) -> Any:
    """The rounds' callback and stopper of an until-decided search; None for any other."""
    if not config.until_decided:
        return None
    from tune_mnist.rounds import RoundSettings, UntilDecided

    cell_keys = tuple(key for key in space.grids if key != "seed")
    drawn = bool(space.randoms)
    settings = RoundSettings(
        precision=config.precision,
        max_rounds=config.max_replicates,
        cells=space.grid_size // (1 if drawn else config.max_replicates),
        cell_keys=cell_keys,
        drawn=drawn,
    )
    what = "a new draw of the random keys" if drawn else "one replicate of every cell"
    print(
        f"tune_mnist: until decided: rounds of {settings.cells} pair(s) ({what}), at most "
        f"{settings.max_rounds}; stops when the anytime-valid 95% interval of MixUp − plain "
        f"excludes 0 or lies within ±{config.precision:g}",
        flush=True,
    )
    return UntilDecided(settings, run_dir)


def _console_output(config: SearchConfig, space: Space) -> tuple[int, list[Any]]:
    """Tune's `verbose` and callbacks: our one line per pair, or Tune's own output (--verbose).

    --verbose: Tune's status table and a box per finished trial (1: not every epoch's result).
    """
    if config.verbose:
        return 1, []
    from tune_mnist.progress import PairProgress

    progress = PairProgress(
        pairs_total=space.num_trials(samples_to_draw(config, space)),
        max_epochs=config.max_epochs,
        varying=[*space.grids, *space.randoms],
        upper_bound=config.scheduler == "asha" or config.patience is not None,
    )
    return 0, [progress]


@contextmanager
def _tune_output(verbose: bool) -> Iterator[None]:
    """Without --verbose, Tune's legacy output engine, which verbose=0 silences.

    Ray 2.60's new engine (RAY_AIR_NEW_OUTPUT, on by default) prints its experiment table and
    a result box for every failed trial even at verbose=0 (ray/tune/experimental/output.py); the
    legacy engine prints nothing at verbose 0. The variable is read when fit() starts, in this
    process only.
    """
    if verbose:
        yield
        return
    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["RAY_AIR_NEW_OUTPUT"]
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved
