"""Command line: `python -m tune_mnist.run` runs a search and writes its Parquet results.

Also `tune-mnist run` (tune_mnist/cli.py), and `python run.py` on a copy of this file, as
`ray submit` runs it on a cluster's head: the imports are absolute and the default space is
package data, so the installed package is all it needs.

The command line is a thin layer over `tune_mnist.search`: its options are the fields of
`tune_mnist.config.SearchConfig`, and the outcome of the search becomes the exit status.

Exit status: 0 when every trial finished, 2 for bad input (before any training, or no trial could
start within --pending-timeout), 3 when the search ran but some trials failed, 4 when
--storage-path stopped taking writes during the search, 5 when --time-budget stopped it, 130 when
it was interrupted (Ctrl-C); after 4, 5 and 130 it can be resumed.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import tune_mnist
from tune_mnist.config import (
    FRESH_TRIAL_MIB,
    PENDING_TIMEOUT_S,
    RETRY_DELAY_S,
    SCHEDULER_ALIASES,
    SCHEDULERS,
    SEARCH_ALGS,
    WORKER_MAX_RSS_MIB,
    WORKER_MAX_TRIALS,
    SearchConfig,
    UsageError,
)
from tune_mnist.data import DATASETS, DataError
from tune_mnist.results import ExperimentError, HelpFormatter
from tune_mnist.space import DEFAULT_SPACE, SpaceError, builtin_spaces
from tune_mnist.storage import DEFAULT_STORAGE_PATH
from tune_mnist.tuning import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    EXIT_STORAGE,
    EXIT_TIME_BUDGET,
    SearchInterrupted,
    StorageError,
    has_failed_pairs,
)

PROG = "python -m tune_mnist.run"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line (UsageError), not usage plus a message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description=(
            "Tune small Keras CNNs on MNIST-family images with Ray Tune, every configuration with "
            "and without MixUp, and write Parquet results (trials.parquet, epochs.parquet) to "
            "STORAGE_PATH/NAME. With no arguments: a quick real search on the embedded MNIST "
            "sample."
        ),
        formatter_class=HelpFormatter,
        epilog=(
            "Exit status: 0 every pair finished; "
            f"{EXIT_BAD_INPUT} bad input (one line on stderr, before any training), or no trial "
            "could start within --pending-timeout; "
            f"{EXIT_PARTIAL} the search ran but some pairs failed (ERROR, listed with their "
            "error) or their files cannot be read (UNREADABLE, one line each on stderr); "
            f"{EXIT_STORAGE} --storage-path stopped taking writes during the search; "
            f"{EXIT_TIME_BUDGET} --time-budget ran out (a time stop, never a decision); "
            f"{EXIT_INTERRUPTED} interrupted (Ctrl-C). After {EXIT_STORAGE}, {EXIT_TIME_BUDGET}, "
            f"and {EXIT_INTERRUPTED} during the search, the last line is the command that resumes "
            "it."
        ),
        allow_abbrev=False,  # `--num-sample 3` is a typo, not --num-samples
    )
    what = parser.add_argument_group("what to search")
    what.add_argument(
        "--space",
        help=(
            f"a built-in search space ({', '.join(builtin_spaces())}) or a search-space YAML "
            f"file (default: {DEFAULT_SPACE}, or the resumed run's)"
        ),
    )
    what.add_argument(
        "--seeds",
        type=_positive_int,
        help=(
            "run every configuration as N independent replicates, numbered 0..N-1 (default: the "
            "space's 'seeds', else 1); --num-samples K on a space without random keys makes "
            "that N*K"
        ),
    )
    what.add_argument(
        "--max-trials",
        type=_positive_int,
        default=1000,
        help="refuse a search of more trials than this, unless --yes",
    )
    what.add_argument("--yes", action="store_true", help="run a search larger than --max-trials")
    what.add_argument(
        "--num-samples",
        type=_positive_int,
        default=1,
        help=(
            "a space with random keys: K draws of them, each crossed with every grid value and "
            "replicate; a space without: K times as many replicates (as --seeds N*K), never "
            "copies of a pair"
        ),
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=DATASETS,
        default="mnist_sample",
        help="mnist_sample: 5,000 real MNIST digits shipped inside tune_mnist (offline)",
    )
    data.add_argument(
        "--data-dir",
        help=(
            "folder with the dataset's .npz or four IDX .gz files "
            "(default: $TUNE_MNIST_DATA_DIR, then the Keras cache)"
        ),
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training images held out, seeded, for validation",
    )
    data.add_argument(
        "--train-subset",
        type=_positive_int,
        help="train on the first N training images of the split (quick runs) (default: all)",
    )
    what.add_argument(
        "--search-alg",
        choices=SEARCH_ALGS,
        default="random",
        help=(
            "random: draw the space's random keys independently for every sample; tpe: Optuna's "
            "TPE proposes each sample from the pairs finished so far (learning from pair_val_acc, "
            "the mean of both arms, never the MixUp difference); every proposal runs at every "
            "grid value (seeds) as pairs, like a random draw"
        ),
    )
    sched = parser.add_argument_group("scheduling")
    sched.add_argument(
        "--scheduler",
        choices=(*SCHEDULERS, *SCHEDULER_ALIASES),
        metavar="{" + ",".join(SCHEDULERS) + "}",  # the old names are accepted, not offered
        default="fifo",
        help=(
            "fifo: no early stopping, every pair runs all its epochs (Ray Tune's FIFOScheduler); "
            "asha: asynchronous successive halving stops poor pairs early (ASHAScheduler), "
            "judged by pair_val_acc"
        ),
    )
    sched.add_argument("--max-epochs", type=_positive_int, default=2, help="epochs per trial")
    sched.add_argument(
        "--grace-period",
        type=_positive_int,
        default=1,
        help="ASHA: epochs before a trial can be stopped",
    )
    sched.add_argument(
        "--reduction-factor", type=float, default=3.0, help="ASHA: keep 1/RF of trials at each rung"
    )
    sched.add_argument(
        "--patience",
        type=_positive_int,
        help=(
            "stop a pair (both arms) after N epochs without a better pair_val_acc, the mean of "
            "the two arms' val_acc (a diverged arm counts at chance, 0.1) (default: off)"
        ),
    )
    until = parser.add_argument_group(
        "until decided",
        "replicates in rounds (one more replicate of every cell per round; in a space with random "
        "keys, one more draw of them) until an anytime-valid 95%% confidence sequence for "
        "MixUp − plain excludes 0 or lies within ±PRECISION; no early stopping, --search-alg "
        "random",
    )
    until.add_argument(
        "--until-decided",
        action="store_true",
        help="run rounds of replicates until the answer is decided (see the group above)",
    )
    until.add_argument(
        "--precision",
        type=_positive_float,
        default=0.005,
        help="'no difference larger than PRECISION' once the whole interval lies within it",
    )
    until.add_argument(
        "--max-replicates",
        type=_positive_int,
        default=20,
        help=(
            "the most rounds before 'budget spent, undecided': replicates per cell, or draws of a "
            "random space"
        ),
    )
    res = parser.add_argument_group("resources")
    res.add_argument(
        "--cpus-per-trial",
        type=float,
        default=1.0,
        help="CPUs each trial holds (TensorFlow uses as many threads)",
    )
    res.add_argument(
        "--gpus-per-trial",
        type=_non_negative_float,
        default=0.0,
        help="GPUs each trial holds; fractions (0.5) share a GPU",
    )
    res.add_argument(
        "--memory-per-trial",
        type=_positive_float,
        metavar="MIB",
        help=(
            "memory each trial holds in Ray's books, so that no more trials run at once than the "
            "nodes' memory allows (default: --worker-max-rss-mib with reused workers, what a "
            f"worker may grow to; {FRESH_TRIAL_MIB:g} with --no-reuse-workers)"
        ),
    )
    res.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help=(
            "retries of a failed trial from its last checkpoint before it ends as ERROR; -1 "
            "(unlimited) is refused: a trial that always fails would retry forever"
        ),
    )
    res.add_argument(
        "--retry-delay",
        type=_non_negative_float,
        default=RETRY_DELAY_S,
        metavar="S",
        help=(
            "a failed trial's first retry starts S seconds later, each further one twice as late, "
            "at most 300 s: a storage outage of a minute does not use up the retries (0: at once)"
        ),
    )
    res.add_argument(
        "--trial-timeout",
        type=_positive_float,
        metavar="S",
        help=(
            "a trial that reports no epoch for S seconds (a hung process) is stopped, counted as "
            "failed and retried like any failure (default: no limit)"
        ),
    )
    res.add_argument(
        "--pending-timeout",
        type=_positive_float,
        default=PENDING_TIMEOUT_S,
        metavar="S",
        help=(
            "with --address: stop (exit 2) when no trial could start for S seconds, as none fits "
            "a node and the cluster added none (a local Ray refuses such a request at once)"
        ),
    )
    res.add_argument(
        "--time-budget",
        type=_positive_float,
        metavar="S",
        help=(
            "stop the search cleanly after S seconds (of this command: a resumed run gets its "
            "own) and write what finished; --resume continues it (default: no limit)"
        ),
    )
    res.add_argument(
        "--reuse-workers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "train trials one after another in the same worker processes: saves starting a "
            "worker and importing TensorFlow for every trial (about 4 s each on 2 cores); "
            "--no-reuse-workers starts a new process for every trial"
        ),
    )
    res.add_argument(
        "--worker-max-trials",
        type=_positive_int,
        default=WORKER_MAX_TRIALS,
        help=(
            "a reused worker is replaced after N trials: its memory grows with every pair it "
            "trains (about 120 MiB per num_conv=2 pair, scripts/worker_memory.py)"
        ),
    )
    res.add_argument(
        "--worker-max-rss-mib",
        type=_positive_float,
        default=WORKER_MAX_RSS_MIB,
        help="a reused worker is replaced after a trial that left it above this resident memory",
    )
    res.add_argument(
        "--max-concurrent",
        type=_positive_int,
        help="at most N trials at once (default: as many as resources allow)",
    )
    res.add_argument(
        "--address",
        help=(
            "join an existing Ray cluster (auto, or HOST:PORT; also $RAY_ADDRESS) "
            "(default: start a local Ray)"
        ),
    )
    res.add_argument(
        "--dashboard",
        action="store_true",
        help=(
            "start the local Ray with its dashboard on 127.0.0.1 and print its URL "
            "(no effect with --address: a cluster has its own)"
        ),
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--storage-path",
        default=DEFAULT_STORAGE_PATH,
        help=(
            "where run folders are written: a local path (on a cluster, one every node shares) "
            "or a URI such as s3://BUCKET/PREFIX, gs://..., abfs://..."
        ),
    )
    out.add_argument(
        "--name",
        help="run folder name, new unless resumed (default: SPACE-DATASET-TIME-RANDOM)",
    )
    # One driver per run: a local run folder is locked while a search runs in it; a run at a
    # URI is not (object stores have no exclusive create), so never start two drivers on one.
    resume = out.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue the unfinished run STORAGE_PATH/NAME (without it, an existing NAME is "
            "refused; a run at a URI is not locked against a second driver: start only one)"
        ),
    )
    resume.add_argument(
        "--resume-if-exists",
        action="store_true",
        help=(
            "continue STORAGE_PATH/NAME if that run exists, else start it: for jobs that are "
            "retried or applied again (KubeRay)"
        ),
    )
    out.add_argument(
        "--report",
        action="store_true",
        help="also write report.html, one self-contained page of the run (opens offline)",
    )
    out.add_argument(
        "--mlflow",
        metavar="URI",
        help=(
            "after the search, log it to this MLflow tracking URI (http://HOST:PORT of an "
            "mlflow server, or sqlite:///mlflow.db): a parent run with the comparison and best "
            "models, one child run per arm with its per-epoch metrics; needs "
            "pip install 'tune_mnist[mlflow]'"
        ),
    )
    out.add_argument(
        "--verbose",
        action="store_true",
        help=(
            "show Ray Tune's own output (status table, a box per finished trial) and "
            "TensorFlow's start-up lines instead of one line per finished pair with the time left"
        ),
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the validation split, mixed validation set, random draws and TPE sampler",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None, prog: str = PROG) -> SearchConfig:
    """The SearchConfig of a command line; bad input raises UsageError (or DataError)."""
    args = build_parser(prog).parse_args(argv)
    if args.scheduler in SCHEDULER_ALIASES:
        name = SCHEDULER_ALIASES[args.scheduler]
        print(f"note: --scheduler {args.scheduler} is the old name of --scheduler {name}",
              file=sys.stderr)  # fmt: skip
        args.scheduler = name
    return SearchConfig(**vars(args))


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    command = list(sys.argv if argv is None else ["tune_mnist.run", *argv])
    try:
        tables = tune_mnist.search(parse_config(argv, prog), command=command)
    except (UsageError, SpaceError, DataError, ExperimentError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # always one line
        return EXIT_BAD_INPUT
    except StorageError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # always one line
        return EXIT_STORAGE
    except SearchInterrupted as e:
        what = f"Stopped at {e.stopped_by}" if e.stopped_by else "Interrupted"
        print(
            f"{what}: {e.unfinished} pairs unfinished. Resume with: {e.resume_command}", flush=True
        )
        return EXIT_TIME_BUDGET if e.stopped_by else EXIT_INTERRUPTED
    except KeyboardInterrupt:
        # Ctrl-C before the search started (Tune handles it once trials run): nothing to resume.
        print("interrupted before the search started", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if has_failed_pairs(tables) else 0


if __name__ == "__main__":
    sys.exit(main())
