"""One search, end to end: validate, load data once, run Ray Tune, then `results.finish`.

Every configuration of the space is one Tune trial that trains a pair: the plain and the MixUp arm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from tune_mnist import data as datasets
from tune_mnist import results
from tune_mnist.comparison import UNFINISHED
from tune_mnist.files import MANIFEST_FILE, ManifestError, read_manifest, write_json
from tune_mnist.space import Space, is_builtin, load_space

EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_INTERRUPTED = 2, 3, 130
# Options added after the first manifests were written: a resumed old run gets these values.
RESUME_DEFAULTS = {"max_failures": 2, "max_trials": 1000, "yes": False, "reuse_workers": False}
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


def default_name(space: str, dataset: str) -> str:
    return f"{Path(space).stem}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


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


def _check_writable(run_dir: Path) -> None:
    """Fail before training when results could not be written (read-only, missing or full disk)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        with open(probe, "wb") as f:
            f.write(b"x" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        raise UsageError(
            f"--storage-path {run_dir.parent}: cannot write there ({e.strerror or e})"
        ) from None


def recorded_environment() -> dict[str, str]:
    """The environment variables that shape a run, for the manifest; never those holding secrets."""
    return {
        name: value
        for name, value in sorted(os.environ.items())
        if name.startswith(("TUNE_MNIST_", "RAY_", "TF_", "CUDA_VISIBLE_DEVICES"))
        and not any(word in name.upper() for word in SECRET_WORDS)
    }


def _init_ray(address: str | None, *, dashboard: bool = False) -> None:
    """Start a local Ray, or join the cluster at ``address`` (then ``dashboard`` does nothing).

    Whatever a trial's process writes reaches this terminal (Ray's log_to_driver), prefixed
    ``(train_pair pid=N)``: warnings, prints, and the last words of a process that crashes (a
    fatal TensorFlow check, an out-of-memory kill), which Tune's own report of a failed trial (its
    traceback, printed by the driver) does not show. Ray prints repeated lines once, with
    ``[repeated Nx across cluster]``. TensorFlow's C++ log level is set in every worker's
    environment, which silences its INFO and WARNING lines; TensorFlow 2.21 writes a few before
    reading it (oneDNN, CUDA probing), and those still show, once per run.
    """
    import ray

    if ray.is_initialized():  # scripts/scale.py's local Ray, with many logical CPUs
        return
    inherited = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    quiet_tensorflow = {"TF_CPP_MIN_LOG_LEVEL": os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # A job that already sets the variable (its runtime env reaches this process too) keeps
        # it: Ray refuses to merge the same variable from the job and from ray.init.
        ray.init(address=address, runtime_env=None if inherited else {"env_vars": quiet_tensorflow})
        return
    # A local instance is ours alone, so its workers may import TensorFlow up front (see
    # import_tensorflow). On a shared cluster only the log level joins the job's runtime env.
    context = ray.init(
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",  # never reachable from other machines
        runtime_env={
            "env_vars": quiet_tensorflow,
            "worker_process_setup_hook": "tune_mnist.trainable.import_tensorflow",
        },
    )
    if dashboard:
        print(f"tune_mnist: Ray dashboard at http://{context.dashboard_url}", flush=True)


def _resume_args(run_dir: Path, args: argparse.Namespace) -> argparse.Namespace:
    """The original run's arguments from its manifest: `--resume` needs no other flags.

    A `--space` given with `--resume` must resolve to the run's own space.
    """
    if not (run_dir / MANIFEST_FILE).is_file():
        raise UsageError(f"--resume: no run at {run_dir} (its {MANIFEST_FILE} is missing)")
    try:
        manifest = read_manifest(run_dir)
        original, recorded_space = dict(manifest["args"]), manifest["space"]
        str(original["space"]), str(original["dataset"])
    except (ManifestError, KeyError, TypeError, ValueError) as e:
        raise UsageError(f"--resume: {run_dir / MANIFEST_FILE} is unreadable ({e})") from None
    if args.space is not None:
        given = load_space(args.space, seeds=args.seeds).to_dict()
        if json.loads(json.dumps(given, default=str)) != recorded_space:
            raise UsageError(
                f"--resume: run {run_dir.name} was made with a different search space "
                f"than {args.space}"
            )
    # Where the run is and whether to show a dashboard come from this command, not the manifest.
    where = {
        "storage_path": args.storage_path,
        "name": args.name,
        "dashboard": args.dashboard,
        "verbose": args.verbose,
    }
    return argparse.Namespace(**{**RESUME_DEFAULTS, **original, "resume": True, **where})


def prepare(args: argparse.Namespace) -> tuple[argparse.Namespace, Space, Path]:
    """Every check that needs no data and no Ray: the arguments to use, the space, the run folder.

    Raises UsageError or SpaceError (one line, exit 2) before anything is trained.
    """
    storage = Path(args.storage_path).expanduser().resolve()
    if args.resume:
        args = _resume_args(storage / args.name, args)
    space: Space = load_space(args.space, seeds=args.seeds)
    trials = space.num_trials(args.num_samples)
    if not args.resume and trials > args.max_trials and not args.yes:
        raise UsageError(
            f"{trials} trials (pairs) from {args.space} exceed --max-trials {args.max_trials}; "
            f"pass --yes to run them anyway"
        )
    run_dir = storage / (args.name or default_name(args.space, args.dataset))
    _check_writable(run_dir)
    return args, space, run_dir


def run_search(args: argparse.Namespace, *, argv: list[str]) -> int:
    started = time.time()
    args, space, run_dir = prepare(args)
    search_data = _load_data(args)
    print(
        f"tune_mnist: {space.num_trials(args.num_samples)} pairs from {args.space} (each trains "
        f"a plain and a MixUp model), up to {args.max_epochs} epochs each; results in {run_dir}",
        flush=True,
    )
    manifest = _manifest(args, space, search_data, argv, started)
    write_json(run_dir / MANIFEST_FILE, manifest)
    search_started = time.time()
    _tune(args, space, search_data, run_dir.parent, run_dir.name)
    search_ended = time.time()
    if not args.verbose:
        _import_keras_quietly()
    tables, _ = results.finish(run_dir)
    manifest["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    # Where the wall time went (this invocation only; a resumed run records its own).
    manifest["seconds"] = {
        "setup": round(search_started - started, 2),
        "search": round(search_ended - search_started, 2),
        "results": round(time.time() - search_ended, 2),
    }
    write_json(run_dir / MANIFEST_FILE, manifest)
    print(f"\nResults: {run_dir}", flush=True)
    return _exit_status(tables.trials, run_dir)


def _import_keras_quietly() -> None:
    """Import Keras (and TensorFlow) for the test evaluation without their C++ start-up lines.

    TensorFlow 2.21 writes its oneDNN and CUDA-probe lines to fd 2 whatever TF_CPP_MIN_LOG_LEVEL
    says. Only the import is silenced: errors while evaluating still reach stderr.
    """
    with datasets.native_stderr_silenced():
        import keras  # noqa: F401


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
    return {
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


def _exit_status(trials: Any, run_dir: Path) -> int:
    """130 with the resume command when trials are unfinished, 3 when some failed, else 0."""
    unfinished = trials.drop_duplicates("pair_id")["status"].isin(UNFINISHED).sum()
    if unfinished:
        print(
            f"Interrupted: {unfinished} pairs unfinished. Resume with: python -m tune_mnist.run "
            f"--resume --storage-path {run_dir.parent} --name {run_dir.name}",
            flush=True,
        )
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if trials["status"].eq("ERROR").any() else 0


def _tune(
    args: argparse.Namespace,
    space: Space,
    search_data: datasets.SearchData,
    storage: Path,
    name: str,
    *,
    trainable_function: Callable[..., None] | None = None,
    extra_callbacks: Sequence[Any] = (),
) -> None:
    """The search through Ray Tune. scripts/scale.py passes a no-op `trainable_function` (same
    arguments as train_pair) and its meter in `extra_callbacks`: everything else is this run's."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from tune_mnist.schedulers import METRIC, MODE, make_scheduler
    from tune_mnist.trainable import TrialSettings, train_pair
    from tune_mnist.trial_log import TrialLog

    # Keeping one checkpoint per trial makes Tune snapshot its (small, local) experiment state after
    # every epoch, and it warns about that every few seconds; the snapshot takes milliseconds here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's automatic JSON, CSV and TensorBoard loggers keep every trial in the driver
    # (ray-project/ray#64231); TrialLog writes the files the results read, and forgets.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    _init_ray(args.address, dashboard=args.dashboard)
    settings = TrialSettings(
        max_epochs=args.max_epochs,
        patience=args.patience,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
    )
    trainable = tune.with_resources(
        tune.with_parameters(trainable_function or train_pair, data=search_data, settings=settings),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    verbose, callbacks = _console_output(args, space)
    callbacks += [TrialLog(), *extra_callbacks]
    if args.resume and tune.Tuner.can_restore(str(storage / name)):
        tuner = tune.Tuner.restore(
            str(storage / name), trainable, resume_unfinished=True, resume_errored=True
        )
        # The restored RunConfig is the original run's: this command's output choice replaces its
        # own. Tune has no public way to change it on restore; get_run_config returns the copy
        # that fit() uses (absent through Ray Client, where the original's output stays).
        if tuner._local_tuner is not None:
            run_config = tuner._local_tuner.get_run_config()
            run_config.verbose, run_config.callbacks = verbose, callbacks
        with _tune_output(args.verbose):
            tuner.fit()
        return
    tuner = tune.Tuner(
        trainable,
        param_space=space.param_space(),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            scheduler=make_scheduler(
                args.scheduler,
                max_epochs=args.max_epochs,
                grace_period=args.grace_period,
                reduction_factor=args.reduction_factor,
            ),
            # Random keys are drawn once per sample and kept across the grid (seeds). The limit
            # goes to the generator itself: Tune ignores `max_concurrent_trials` (with a warning
            # only) when it is given a generator instance.
            search_alg=BasicVariantGenerator(
                constant_grid_search=True,
                random_state=args.seed,
                max_concurrent=args.max_concurrent or 0,
            ),
            num_samples=args.num_samples,
            # Off by default: a reused worker saves ~4 s per trial, but TensorFlow keeps ~3 MiB of
            # every traced training function even after clear_session + gc, unbounded in long
            # searches.
            reuse_actors=args.reuse_workers,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            # The latest only: it resumes the pair, holds every epoch's validation predictions, and
            # its models are the ones the test evaluation scores (no epoch chosen on validation).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            verbose=verbose,
            callbacks=callbacks,
        ),
    )
    with _tune_output(args.verbose):
        tuner.fit()


def _console_output(args: argparse.Namespace, space: Space) -> tuple[int, list[Any]]:
    """Tune's `verbose` and callbacks: our one line per pair, or Tune's own output (--verbose).

    --verbose: Tune's status table and a box per finished trial (1: not every epoch's result).
    """
    if args.verbose:
        return 1, []
    from tune_mnist.progress import PairProgress

    progress = PairProgress(
        pairs_total=space.num_trials(args.num_samples),
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
