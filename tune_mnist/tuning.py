"""One search, end to end: validate, load data once, run Ray Tune, then `results.finish`.

Every configuration of the space is one Tune trial that trains a pair: the plain and the MixUp arm.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tune_mnist import data as datasets
from tune_mnist import results, run_lock
from tune_mnist.comparison import UNFINISHED
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

EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_STORAGE, EXIT_INTERRUPTED = 2, 3, 4, 130
# A reused worker's bounds (--worker-max-trials, --worker-max-rss-mib). A worker's RSS grows with
# every pair it trains, even after clear_session and gc (model.fit's leak in a loop,
# keras-team/keras#17458): 120 MiB per pair of num_conv=2 models on mnist_sample
# (scripts/worker_memory.py: 1.1 GiB after the first pair, 3.4 GiB after 20). 10
# pairs bound that to about 1.2 GiB per worker while a worker start (about 4 s) is paid once per
# 10 trials; 3072 MiB (about three times a fresh trial's peak on full Fashion-MNIST) catches larger
# models sooner.
WORKER_MAX_TRIALS = 10
WORKER_MAX_RSS_MIB = 3072.0
# Options added after the first manifests were written: a resumed old run gets these values.
# reuse_workers: runs made before workers were reused by default resume as they started, each
# trial in a new process (they had no bound on a worker's memory).
RESUME_DEFAULTS = {
    "max_failures": 2,
    "max_trials": 1000,
    "yes": False,
    "reuse_workers": False,
    "worker_max_trials": WORKER_MAX_TRIALS,
    "worker_max_rss_mib": WORKER_MAX_RSS_MIB,
    "search_alg": "random",
    "until_decided": False,
    "precision": 0.005,
    "max_replicates": 20,
}
# --scheduler: Ray Tune's names. An old name still works, and a resumed run that recorded one
# gets the new name.
SCHEDULERS = ("fifo", "asha")
SCHEDULER_ALIASES = {"grid": "fifo"}
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


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


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


def _resume_args(run_dir: str, args: argparse.Namespace) -> argparse.Namespace:
    """The original run's arguments from its manifest: `--resume` needs no other flags.

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
    if args.space is not None:
        given = _searched_space(args.space, args.seeds, original.get("num_samples", 1), independent)
        given = given.to_dict()
        if json.loads(json.dumps(given, default=str)) != recorded_space:
            raise UsageError(
                f"--resume: run {split(run_dir)[1]} was made with a different search space "
                f"than {args.space}"
            )
    # Where the run is, whether to show a dashboard, write a report, and where to log it (a
    # tracking server may be gone) come from this command, not the manifest.
    where = {
        "storage_path": args.storage_path,
        "name": args.name,
        "resume_if_exists": getattr(args, "resume_if_exists", False),
        "dashboard": args.dashboard,
        "verbose": args.verbose,
        "report": args.report,
        "mlflow": args.mlflow,
    }
    resumed = {
        **RESUME_DEFAULTS,
        **original,
        "resume": True,
        **where,
        "independent_replicates": independent,
    }
    if resumed.get("scheduler") in SCHEDULER_ALIASES:  # a run made before the rename
        resumed["scheduler"] = SCHEDULER_ALIASES[resumed["scheduler"]]
    return argparse.Namespace(**resumed)


def _searched_space(
    space: str, seeds: int | None, num_samples: int, independent_replicates: bool
) -> Space:
    """The space a search runs: `--num-samples` on a space without random keys adds replicate
    numbers (`Space.replicated`) in a run of independent replicates; an older run ran copies."""
    loaded = load_space(space, seeds=seeds)
    return loaded.replicated(num_samples) if independent_replicates else loaded


def samples_to_draw(args: argparse.Namespace, space: Space) -> int:
    """Tune's num_samples: 1 where `--num-samples` became replicate numbers (`_searched_space`)."""
    folded = args.independent_replicates and not space.randoms
    return 1 if folded else args.num_samples


def prepare(args: argparse.Namespace) -> tuple[argparse.Namespace, Space, str]:
    """Every check that needs no data and no Ray: the arguments to use, the space, the run folder
    (an absolute local path, or a URI: see `tune_mnist.storage`).

    Raises UsageError or SpaceError (one line, exit 2) before anything is trained.
    """
    storage = resolve(args.storage_path)
    if getattr(args, "resume_if_exists", False):  # scripts build their own arguments
        args.resume = run_exists(join(storage, args.name))
        if not args.resume and args.space is None:
            args.space = DEFAULT_SPACE
    if args.resume:
        args = _resume_args(join(storage, args.name), args)
    else:
        args = argparse.Namespace(**{**vars(args), "independent_replicates": True})
    seeds = args.max_replicates if args.until_decided else args.seeds  # rounds are replicates
    space = _searched_space(args.space, seeds, args.num_samples, args.independent_replicates)
    if args.until_decided:
        _check_until_decided(args, space)
    if args.search_alg == "tpe" and not space.randoms:
        raise UsageError(
            f"--search-alg tpe: {args.space} has no random key for it to propose "
            "(choice, uniform, loguniform, randint); use --search-alg random"
        )
    trials = space.num_trials(samples_to_draw(args, space))
    if not args.resume and trials > args.max_trials and not args.yes:
        raise UsageError(
            f"{trials} trials (pairs) from {args.space} exceed --max-trials {args.max_trials}; "
            f"pass --yes to run them anyway"
        )
    if args.mlflow:
        try:
            check_reachable(args.mlflow)
        except TrackingError as e:
            raise UsageError(str(e)) from None
    run_dir = join(storage, args.name or default_name(args.space, args.dataset))
    _check_unused(run_dir, args.resume)
    _check_writable(run_dir)
    return args, space, run_dir


def _check_until_decided(args: argparse.Namespace, space: Space) -> None:
    """Rounds need pairs that do not depend on each other: no early stopping, no proposals."""
    refusals = {
        "--scheduler asha (its rungs make pairs depend on each other)": args.scheduler == "asha",
        "--patience": args.patience is not None,
        "--search-alg tpe (its proposals depend on the pairs before)": args.search_alg != "random",
        f"random keys in {args.space} (use a space of grids and constants)": bool(space.randoms),
        "--num-samples (rounds add the replicates)": args.num_samples != 1,
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


def run_search(args: argparse.Namespace, *, argv: list[str]) -> int:
    started = time.time()
    args, space, run_dir = prepare(args)
    try:
        with run_lock.hold(run_dir):
            return _run_locked(args, space, run_dir, argv=argv, started=started)
    except run_lock.RunLockedError as e:  # a driver started between prepare's check and here
        raise UsageError(str(e)) from None


def _run_locked(
    args: argparse.Namespace, space: Space, run_dir: str, *, argv: list[str], started: float
) -> int:
    search_data = _load_data(args)
    print(
        f"tune_mnist: {space.num_trials(samples_to_draw(args, space))} pairs from {args.space} "
        f"({_replicates_said(args, space)}; each trains a plain and a MixUp model), up to "
        f"{args.max_epochs} epochs each; results in {run_dir}",
        flush=True,
    )
    manifest = _manifest(args, space, search_data, argv, started)
    write_json(join(run_dir, MANIFEST_FILE), manifest)
    search_started = time.time()
    with _storage_failures(run_dir):
        _tune(args, space, search_data, *split(run_dir))
    search_ended = time.time()
    if not args.verbose:
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
        if args.report:  # after the manifest's end time and seconds, which the report shows
            results.write_run_report(local, tables, shown=run_dir)
        if args.mlflow:  # after the manifest: it is logged too
            results.log_mlflow(args.mlflow, local, tables)
    print(f"\nResults: {run_dir}", flush=True)
    pairs = space.num_trials(samples_to_draw(args, space))
    needed, pairs = results.needed_pairs(tables.trials, run_dir, pairs)
    return _exit_status(needed, run_dir, pairs)


def _replicates_said(args: argparse.Namespace, space: Space) -> str:
    """How many replicates of what: '3 replicates of each configuration'."""
    replicates = f"{space.replicates} replicate{'s' if space.replicates > 1 else ''}"
    if space.randoms:
        draws = samples_to_draw(args, space)
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


def _load_data(args: argparse.Namespace) -> datasets.SearchData:
    arrays = datasets.load_arrays(args.dataset, args.data_dir, seed=args.seed)
    search_data = datasets.split(
        arrays,
        args.dataset,
        val_fraction=args.val_fraction,
        train_subset=args.train_subset,
        seed=args.seed,
    )
    print(f"tune_mnist: {search_data.summary}", flush=True)
    return search_data


def _manifest(
    args: argparse.Namespace,
    space: Space,
    search_data: datasets.SearchData,
    argv: list[str],
    started: float,
) -> dict[str, Any]:
    """What the run was made from: command, arguments, space, data, environment, versions."""
    # A resumed older run stays without the mark: its pairs are still seeded the old way.
    mark = MANIFEST_MARK if args.independent_replicates else {}
    return {
        **mark,
        "command": argv,
        "args": vars(args),
        "space": space.to_dict(),
        # The name of a built-in space (its YAML is the installed tune_mnist version's), or the
        # absolute path of the file.
        "space_source": (
            f"built-in:{args.space}" if is_builtin(args.space) else str(Path(args.space).resolve())
        ),
        "dataset": {
            "name": args.dataset,
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


def _exit_status(trials: Any, run_dir: str, pairs: int) -> int:
    """130 with the resume command when trials are unfinished, 3 when some failed, else 0.

    A model-based searcher proposes a pair only when there is room to run it, so an interrupted
    search has pairs that were never created: they count as unfinished too.
    """
    created = trials.drop_duplicates("pair_id")
    unfinished = created["status"].isin(UNFINISHED).sum() + max(0, pairs - len(created))
    if unfinished:
        storage, name = split(run_dir)
        print(
            f"Interrupted: {unfinished} pairs unfinished. Resume with: python -m tune_mnist.run "
            f"--resume --storage-path {storage} --name {name}",
            flush=True,
        )
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if trials["status"].eq("ERROR").any() else 0


def _tune(
    args: argparse.Namespace,
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
    _init_ray(args.address, dashboard=args.dashboard, verbose=args.verbose)
    settings = TrialSettings(
        max_epochs=args.max_epochs,
        patience=args.patience,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        run_seed=args.seed,
        independent_replicates=args.independent_replicates,
        run_location=join(storage, name),  # live TensorBoard scalars
    )
    trainable = tune.with_resources(
        tune.with_parameters(trainable_function or train_pair, data=search_data, settings=settings),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    verbose, callbacks = _console_output(args, space)
    callbacks += [TrialLog(), *extra_callbacks]
    rounds = _until_decided(args, space, join(storage, name))
    callbacks += [rounds] if rounds else []
    stopper = DecisionStopper(join(storage, name)) if rounds else None
    local = not (args.address or os.environ.get("RAY_ADDRESS"))
    if args.search_alg != "random" or local:
        # As many trials pending (each with a placement group requested) as can run at once.
        # Tune keeps one pending at a time for any searcher but its own random/grid one: with room
        # for N pairs at once, the other N - 1 would start one after another. For random/grid it
        # keeps at least 200, so that an autoscaling cluster grows fast (ray-project/ray#43455,
        # which notes that many pending placement groups slow actor scheduling): a local Ray never
        # grows, and with 200 the driver polls 200 placement groups in every step of its loop.
        concurrency = args.max_concurrent or int(
            ray.cluster_resources().get("CPU", 1) // args.cpus_per_trial
        )
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(1, concurrency)))
    if args.resume and tune.Tuner.can_restore(join(storage, name)):
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
        with _tune_output(args.verbose):
            tuner.fit()
        return
    search_alg, param_space, per_sample = make_search_alg(
        args.search_alg,
        space,
        metric=METRIC,
        mode=MODE,
        seed=args.seed,
        max_epochs=args.max_epochs,
        max_concurrent=args.max_concurrent,
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            scheduler=make_scheduler(
                args.scheduler,
                max_epochs=args.max_epochs,
                grace_period=args.grace_period,
                reduction_factor=args.reduction_factor,
                worker_limits=(
                    WorkerLimits(args.worker_max_trials, args.worker_max_rss_mib)
                    if args.reuse_workers
                    else None
                ),
            ),
            search_alg=search_alg,
            num_samples=samples_to_draw(args, space) * per_sample,
            # On by default: a reused worker saves ~4 s per trial; the scheduler's WorkerLimits
            # replace it before what model.fit leaks per trained model adds up.
            reuse_actors=args.reuse_workers,
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
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            stop=stopper,
            verbose=verbose,
            callbacks=callbacks,
        ),
    )
    with _tune_output(args.verbose):
        tuner.fit()


def _until_decided(args: argparse.Namespace, space: Space, run_dir: str) -> Any:
    """The rounds' callback and stopper of an until-decided search; None for any other."""
    if not args.until_decided:
        return None
    from tune_mnist.rounds import RoundSettings, UntilDecided

    cell_keys = tuple(key for key in space.grids if key != "seed")
    settings = RoundSettings(
        precision=args.precision,
        max_rounds=args.max_replicates,
        cells=space.grid_size // args.max_replicates,
        cell_keys=cell_keys,
    )
    print(
        f"tune_mnist: until decided: rounds of {settings.cells} pairs (one replicate of every "
        f"cell), at most {settings.max_rounds}; stops when the anytime-valid 95% interval of "
        f"MixUp − plain excludes 0 or lies within ±{args.precision:g}",
        flush=True,
    )
    return UntilDecided(settings, run_dir)


def _console_output(args: argparse.Namespace, space: Space) -> tuple[int, list[Any]]:
    """Tune's `verbose` and callbacks: our one line per pair, or Tune's own output (--verbose).

    --verbose: Tune's status table and a box per finished trial (1: not every epoch's result).
    """
    if args.verbose:
        return 1, []
    from tune_mnist.progress import PairProgress

    progress = PairProgress(
        pairs_total=space.num_trials(samples_to_draw(args, space)),
        max_epochs=args.max_epochs,
        varying=[*space.grids, *space.randoms],
        upper_bound=args.scheduler == "asha" or args.patience is not None,
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
