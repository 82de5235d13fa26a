"""Performance benchmark of tune_mnist on this machine: one run, ratios measured side by side.

    python scripts/benchmark.py --quick --json out.json   # < 5 minutes
    python scripts/benchmark.py --json full.json          # longer windows, adds ASHA vs grid
    python scripts/benchmark.py --sections race --race-minutes 30 --json race.json  # 90+ minutes

Measures the float32 matmul peak, training FLOPs per image, the service's pipeline (plain and
MixUp) against two baselines (plain `model.fit` on NumPy arrays, the original study's NumPy MixUp
loader), levers (batch size, steps_per_execution, tf.data's autotuner, bfloat16, oneDNN),
concurrency (1 trial on all cores vs 1 trial per core), Tune's overhead and time to the first
epoch, peak memory on full Fashion-MNIST, in full mode what ASHA saves on the original grid, and
the original grid end to end against the notebook's way (bench/notebook.py).
The race (time to test accuracy 0.92 on Fashion-MNIST: our random and TPE searches with ASHA
against Keras Tuner's Hyperband, bench/race.py) runs only when named in --sections.
Prints a table and writes every figure, with the machine description, to --json (docs/performance.md
says how to read them). The helpers are in scripts/bench/.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

HERE = Path(__file__).resolve().parent
# The checkout's own tune_mnist comes first, whatever the cwd or an installed copy: it is what gets
# measured. `bench` sits beside this file; Python puts a script's folder on sys.path only when it
# runs the file as a script without -P / PYTHONSAFEPATH, so add it when it is missing (and when
# this file is imported as a module, e.g. by a test).
sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:
    sys.path.insert(1, str(HERE))

from bench.context import Context, RaceOptions  # noqa: E402
from bench.flops import flops_by_config  # noqa: E402
from bench.machine import machine  # noqa: E402
from bench.notebook import notebook_section  # noqa: E402
from bench.race import race_section  # noqa: E402
from bench.report import table, targets  # noqa: E402
from bench.search_costs import (  # noqa: E402
    asha_section,
    concurrency_section,
    memory_section,
    tune_section,
)
from bench.throughput import (  # noqa: E402
    baselines_section,
    levers_section,
    peak_section,
    pipeline_section,
)
from bench.workers import worker  # noqa: E402

Section = Callable[[Context], dict[str, Any] | None]  # None: nothing to measure in this mode

# In the order they run (and their figures appear in the JSON).
SECTIONS: dict[str, Section] = {
    "peak": peak_section,
    "pipeline": pipeline_section,
    "baselines": baselines_section,
    "levers": levers_section,
    "concurrency": concurrency_section,
    "tune": tune_section,
    "memory": memory_section,
    "asha": asha_section,
    "notebook": notebook_section,
    "race": race_section,
}
# Run only when named in --sections: the race takes three times --race-minutes and more.
OPT_IN = ("race",)

Save = Callable[[dict[str, Any]], None]


def run_sections(
    quick: bool,
    sections: list[str],
    scratch: Path,
    save: Save,
    race: RaceOptions | None = None,
) -> dict[str, Any]:
    """Every selected measurement; `save` gets the figures so far after each section (a partial
    run keeps them)."""
    out: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": machine()}
    ctx = Context(
        quick=quick,
        sections=frozenset(sections),
        scratch=scratch,
        figures=out,
        race=race or RaceOptions(),
    )
    save(out)
    for name, section in SECTIONS.items():
        if name in ctx.sections and (found := section(ctx)) is not None:
            out[name] = found
        if name == "peak":
            # Not a section: every run records it (the table prints it, % of peak needs it),
            # after the peak as it always was in the JSON.
            out["flops"] = flops_by_config()
        save(out)
    out["machine"]["load_average_at_end"] = os.getloadavg()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short measurements on subsets (< 5 minutes)"
    )
    parser.add_argument("--json", help="write every figure and the machine description here")
    names = ",".join(SECTIONS)
    default = ",".join(name for name in SECTIONS if name not in OPT_IN)
    parser.add_argument(
        "--sections",
        default=default,
        help=f"comma-separated subset of {names} (default: all but {', '.join(OPT_IN)})",
    )
    race = parser.add_argument_group("race (section race)")
    race.add_argument(
        "--race-minutes", type=float, default=30.0, help="wall-clock budget of each path"
    )
    race.add_argument(
        "--race-figure",
        help="the race's PNG (default: beside --json, NAME.race.png; else ./race.png)",
    )
    race.add_argument(
        "--race-max-epochs", type=int, default=9, help="largest rung of ASHA and Hyperband"
    )
    race.add_argument(
        "--race-train-subset", type=int, help="train on the first N images (a quick try only)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # see bench/workers.py
    args = parser.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if not args.race_minutes > 0:
        parser.error(f"--race-minutes must be > 0, got {args.race_minutes}")
    return args


def race_options(args: argparse.Namespace) -> RaceOptions:
    """The race's settings; its figure goes beside --json unless --race-figure says where."""
    figure = args.race_figure or (
        str(Path(args.json).with_suffix(".race.png")) if args.json else "race.png"
    )
    return RaceOptions(
        minutes=args.race_minutes,
        figure=Path(figure).resolve(),
        max_epochs=args.race_max_epochs,
        train_subset=args.race_train_subset,
    )


def save_json(path: str | None, figures: dict[str, Any]) -> None:
    """Write `figures` to --json, if given (atomically: a kill leaves the previous save)."""
    if path:
        from tune_mnist.files import write_json

        write_json(Path(path), figures)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tune_mnist_bench_") as scratch:
        save = functools.partial(save_json, args.json)
        result = run_sections(args.quick, args.sections, Path(scratch), save, race_options(args))
    result["benchmark_seconds"] = time.time() - started
    result["targets"] = targets(result)
    print(table(result))
    print(f"\n({result['benchmark_seconds']:.0f} s)")
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
