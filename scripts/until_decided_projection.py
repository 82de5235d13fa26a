"""How many rounds, and hours, an until-decided run needs: projected from a run's own pairs.

    python scripts/until_decided_projection.py RUN_DIR [--precision 0.005]

Reads the run's pairs (a finished, decided or interrupted until-decided run, or any grid run with
two or more replicates per cell), estimates the sd of a round's value from each cell's spread of
pair differences (pooled over the cells), takes the validation images' part from the run's last
round (or from the comparison's image variance), the wall seconds per pair from its manifest, and
prints the rounds at which the anytime-valid sequence is expected to decide: "within ±PRECISION"
if the true difference were 0, and "differs" if it were the run's current estimate.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from tune_mnist.comparison import pair_values
from tune_mnist.files import SEQUENTIAL_FILE, read_manifest
from tune_mnist.results import load
from tune_mnist.sequential import rounds_needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--precision", type=float, default=0.005)
    parser.add_argument(
        "--seconds-per-pair",
        type=float,
        help="wall seconds of search per pair (default: from the run's manifest, which an "
        "interrupted driver that died before its results step does not have)",
    )
    args = parser.parse_args()
    tables = load(args.run_dir)
    pairs = pair_values(tables.trials, tables.epochs)
    cells = tables.trials.drop_duplicates("pair_id").set_index("pair_id")["architecture"]
    pairs = pairs.join(cells)
    per_cell = pairs.groupby("architecture")["diff"]
    variances = per_cell.var(ddof=1).dropna()
    count = pairs["architecture"].nunique()
    round_sd = math.sqrt(variances.mean() / count)
    state = json.loads((args.run_dir / SEQUENTIAL_FILE).read_text())
    image_half = float(state["image_half_width"])
    seconds_per_pair = args.seconds_per_pair
    if seconds_per_pair is None:
        seconds_per_pair = read_manifest(args.run_dir)["seconds"]["search"] / len(pairs)
    estimate = float(np.mean(per_cell.mean()))
    print(
        f"{len(pairs)} pairs in {count} cells ({state['rounds']} complete rounds); sd of a pair's "
        f"difference within a cell {math.sqrt(variances.mean()):.4f} ({len(variances)} cells, "
        f"pooled), of a round's value {round_sd:.4f}; images' part ±{image_half:.4f}; "
        f"estimate {estimate:+.4f}; {seconds_per_pair:.0f} s of search per pair"
    )
    for label, effect in (("if the true difference is 0", 0.0), ("if it is", estimate)):
        rounds = rounds_needed(round_sd, image_half, args.precision, effect)
        where = f" {effect:+.4f}" if effect else ""
        if rounds is None:
            print(f"{label}{where}: not within 100,000 rounds")
            continue
        hours = rounds * count * seconds_per_pair / 3600
        print(
            f"{label}{where}: decided after about {rounds} rounds ({rounds * count} pairs, "
            f"about {hours:.1f} h at this run's pace)"
        )


if __name__ == "__main__":
    main()
