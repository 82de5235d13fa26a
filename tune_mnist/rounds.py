"""Until decided, in the driver: replicates run in rounds and the search stops once decided.

The grid's replicate numbers (``config["seed"]``) are the rounds: Tune starts the grid in order,
so round r is replicate r of every cell. In a random space each round is a new draw of the random
keys (one sample: every grid point of it, one replicate each), and the rounds follow the order in
which Tune created the trials (the draws carry a random `sample` number, not a count).

When a round's last pair ends, `UntilDecided` reads the per-image differences of every pair of the
completed rounds from their checkpoints, asks `tune_mnist.sequential.decide` where the answer
stands, prints one line and writes ``until_decided/sequential.json``; once decided (or out of
rounds), `DecisionStopper` stops the search. A resumed run reads the finished pairs' checkpoints
again, so it continues the same sequence (and its history).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback, Stopper

from tune_mnist.checkpoint import load_predictions
from tune_mnist.estimates import paired_estimate
from tune_mnist.files import SEQUENTIAL_FILE, write_json
from tune_mnist.sequential import Decision, decide, p_value
from tune_mnist.space import architecture_label
from tune_mnist.storage import is_uri, join, read_bytes

DECIDED = ("differs", "within", "budget")
# The runs (by folder) decided in this driver. Tune saves its stopper with the experiment state and
# a resumed run gets that saved copy back, not the one passed in (ray.tune.execution.
# tune_controller.TuneController.__getstate__ keeps `_stopper`): so the stopper holds no state of
# its own and asks this registry, which the callback fills.
_DECIDED_RUNS: set[str] = set()


@dataclass(frozen=True)
class RoundSettings:
    """What the user asked of an until-decided search."""

    precision: float
    max_rounds: int
    cells: int
    cell_keys: tuple[str, ...]
    drawn: bool = False  # a random space: rounds are draws, and every pair pools as one stratum


def pair_deltas(directory: str | Path) -> np.ndarray | None:
    """correct_mixup − correct_plain per validation image at the pair's compared epoch (the last
    epoch both arms were scored); None when an arm was never scored."""
    predictions = load_predictions(directory)
    true = predictions.pop("true")
    compared = min(len(p) for p in predictions.values())
    if compared == 0:
        return None
    correct = {arm: predictions[arm][compared - 1] == true for arm in predictions}
    return correct["mixup"].astype(np.int8) - correct["plain"].astype(np.int8)


class DecisionStopper(Stopper):
    """Stops the search once `UntilDecided` has decided the run in ``run_dir``."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.run_dir in _DECIDED_RUNS


class UntilDecided(Callback):
    """Tune callback: a decision after every completed round."""

    def __init__(self, settings: RoundSettings, run_dir: str) -> None:
        self.settings, self.run_dir = settings, run_dir
        self.deltas: dict[tuple[int, str], np.ndarray | None] = {}
        self.pair_ids: dict[tuple[int, str], str] = {}  # Tune's trial ids, for the results step
        self.decision: Decision | None = None
        self.history: list[dict[str, Any]] = []
        self._scanned = False

    # ---- Tune's hooks ----------------------------------------------------------------------------

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self._scanned:  # a resumed run: the pairs that had ended before it was stopped
            return
        self._scanned = True
        self.history = self._earlier_history()
        for trial in trials:
            if trial.status in ("TERMINATED", "ERROR"):
                self._record(trial, trials, failed=trial.status == "ERROR")
        self._update()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._record(trial, trials, failed=False)
        self._update()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._record(trial, trials, failed=True)
        self._update()

    def _earlier_history(self) -> list[dict[str, Any]]:
        """The rounds an interrupted run had decided on before this driver resumed it."""
        try:
            state = json.loads(read_bytes(join(self.run_dir, SEQUENTIAL_FILE)).decode())
        except FileNotFoundError:
            return []
        return list(state.get("history", []))

    # ---- rounds ----------------------------------------------------------------------------------

    def _key(self, trial: Any, trials: list[Any]) -> tuple[int, str]:
        """(round, cell) of a pair. Tune's trial list keeps the order it created the trials in,
        also after a resume, and a random space's samples are created one after another."""
        if self.settings.drawn:
            index = trials.index(trial)
            return index // self.settings.cells, str(index % self.settings.cells)
        return int(trial.config["seed"]), architecture_label(trial.config, self.settings.cell_keys)

    def _record(self, trial: Any, trials: list[Any], *, failed: bool) -> None:
        key = self._key(trial, trials)
        deltas = None
        if not failed and trial.checkpoint is not None:
            with trial.checkpoint.as_directory() as directory:
                deltas = pair_deltas(directory)
        self.deltas[key] = deltas
        self.pair_ids[key] = trial.trial_id

    def _complete_rounds(self) -> int:
        ended = np.bincount([r for r, _ in self.deltas], minlength=self.settings.max_rounds)
        incomplete = np.flatnonzero(ended[: self.settings.max_rounds] < self.settings.cells)
        return int(incomplete[0]) if len(incomplete) else self.settings.max_rounds

    def _update(self) -> None:
        rounds = self._complete_rounds()
        if rounds == 0 or (self.decision is not None and rounds <= self.decision.rounds):
            return
        scored = {k: d for k, d in self.deltas.items() if k[0] < rounds and d is not None}
        round_values = [
            np.mean([d.mean() for (r, _), d in scored.items() if r == n]) for n in range(rounds)
        ]
        image_variance = 0.0
        if len(scored) >= 2:
            # A random space's primary is a plain mean over pairs: one stratum.
            cells = ["" if self.settings.drawn else cell for _, cell in scored]
            values = [d.mean() for d in scored.values()]
            image_variance = paired_estimate(values, cells, np.stack(list(scored.values())))
            image_variance = float(np.nan_to_num(image_variance.image_variance))
        options = dict(image_variance=image_variance, precision=self.settings.precision)
        self.decision = decide(round_values, max_rounds=self.settings.max_rounds, **options)
        if self.decision.state in DECIDED:
            _DECIDED_RUNS.add(self.run_dir)
        self.history = [h for h in self.history if h["rounds"] < rounds] + [asdict(self.decision)]
        document = {
            **asdict(self.decision),
            "p_value": p_value(round_values, image_variance=image_variance),
            "max_rounds": self.settings.max_rounds,
            "pairs_per_round": self.settings.cells,
            # With --max-concurrent above a round's size a later round's pairs can end before
            # the search stops; the results compare exactly the pairs the decision was made on.
            "pair_ids": sorted(i for (r, _), i in self.pair_ids.items() if r < rounds),
            "history": self.history,
        }
        path = join(self.run_dir, SEQUENTIAL_FILE)
        if not is_uri(path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json(path, document)
        print(f"Until decided: {self.decision.describe()}", flush=True)
        if len(self.history) == 1 and self.decision.image_half_width >= self.settings.precision:
            print(
                f"Until decided: the validation images alone give ±"
                f"{self.decision.image_half_width:.4f}, no narrower than --precision "
                f"{self.settings.precision:g}: 'no difference larger than it' cannot be reached; "
                "a larger --val-fraction narrows that part",
                flush=True,
            )
