"""Search algorithms: random draws, or TPE (Optuna) proposing configurations that run as pairs.

A Tune trial is a pair (both MixUp arms in one process), so a searcher never sees an arm: it
proposes the random keys of a configuration, and `GridRepeater` runs that proposal at every grid
point (the replicate numbers among them), sharing every other key, as a random draw does. Each
sample, drawn or proposed, also gets a `sample` number that enters its pairs' seeds
(tune_mnist.replicates): two samples whose keys happen to be equal are still distinct replicates.
The searcher learns from `pair_val_acc`, the mean of the two arms' `val_acc`, averaged over the
grid points: what both arms share. Feeding it the MixUp difference instead would steer the
search toward configurations where the difference happened to be large, and the difference reported
on those same configurations would then overstate it (a winner's curse on the compared quantity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import BasicVariantGenerator, Searcher

from tune_mnist.replicates import SAMPLE_KEY, SEED_MODULUS
from tune_mnist.space import Space

EPOCH = "epoch"  # the trainable's own epoch count: the same after a retry from a checkpoint


@dataclass(frozen=True)
class _Ending:
    """How a member ended: its last epoch, and whether the scheduler stopped it there early."""

    epoch: int | None
    stopped: bool
    error: bool


@dataclass
class _Group:
    """One proposal and the trials (one per grid point) that run it."""

    proposal: dict[str, Any]
    members: list[str] = field(default_factory=list)
    scores: dict[str, dict[int, float]] = field(default_factory=dict)  # member: epoch: score
    ended: dict[str, _Ending] = field(default_factory=dict)


class GridRepeater(Searcher):
    """Runs every proposal of ``searcher`` at each of ``grid`` and tells it the mean score.

    Unlike Ray's `Repeater` (an averaged result, no intermediate values, a warning against early
    stopping), a proposal that a scheduler such as ASHA stopped before ``max_epochs`` is told
    as pruned, with the mean score of each epoch every grid point reached: Optuna's TPE then
    ranks it below every proposal that ran to the end (ordered by how far it got, then by score),
    as ASHA judged it, instead of comparing an epoch-1 score with full runs as a COMPLETE value.
    Grid points that failed without a score are left out of the mean; a proposal none of whose
    grid points has a score is told as failed. Proposals are numbered 0, 1, ... in the `sample`
    key of their configurations, so TPE proposing the same values twice gives new replicates.
    """

    def __init__(self, searcher: Searcher, grid: list[dict[str, Any]], max_epochs: int) -> None:
        self.searcher = searcher
        self.grid, self.max_epochs = grid, max_epochs
        self._groups: dict[str, _Group] = {}  # by the first member's trial id
        self._group_of: dict[str, str] = {}
        self._filling: str | None = None
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        group = self._groups.get(self._filling or "")
        if group is None or len(group.members) == len(self.grid):
            proposal = self.searcher.suggest(trial_id)
            if proposal is None or proposal == Searcher.FINISHED:
                return proposal
            numbered = {**proposal, SAMPLE_KEY: len(self._groups)}
            self._filling, group = trial_id, _Group(numbered)
            self._groups[trial_id] = group
        self._group_of[trial_id] = self._filling
        group.members.append(trial_id)
        group.scores[trial_id] = {}
        return {**group.proposal, **self.grid[len(group.members) - 1]}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        group = self._groups[self._group_of[trial_id]]
        group.scores[trial_id][int(result[EPOCH])] = float(result[self.metric])

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        group = self._groups[self._group_of[trial_id]]
        epoch = int(result[EPOCH]) if result and EPOCH in result else None
        # Tune hands a result to on_trial_result only when the scheduler lets the trial go on: a
        # last epoch first seen here is one the scheduler stopped the pair at.
        stopped = epoch is not None and epoch < self.max_epochs
        stopped = stopped and epoch not in group.scores[trial_id]
        if epoch is not None and result.get(self.metric) is not None:
            group.scores[trial_id][epoch] = float(result[self.metric])
        else:
            epoch = None
        group.ended[trial_id] = _Ending(epoch, stopped, error)
        if len(group.ended) == len(self.grid):
            self._tell(self._group_of[trial_id], group)

    def _tell(self, group_id: str, group: _Group) -> None:
        ended = group.ended
        scored = [m for m in group.members if not ended[m].error and ended[m].epoch is not None]
        if not scored:
            errors = any(e.error for e in ended.values())
            self.searcher.on_trial_complete(group_id, None, error=errors)
            return
        common = set.intersection(*(set(group.scores[m]) for m in scored))
        for epoch in sorted(common):
            mean = _mean([group.scores[m][epoch] for m in scored])
            result = {self.metric: mean, TRAINING_ITERATION: epoch}
            self.searcher.on_trial_result(group_id, result)
        if any(ended[m].stopped for m in scored):
            self.searcher.on_trial_complete(group_id, None)  # pruned at its last common epoch
            return
        final = _mean([group.scores[m][ended[m].epoch] for m in scored])
        self.searcher.on_trial_complete(group_id, {self.metric: final})

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    # Tune saves the wrapped searcher itself and a wrapper's state apart (SearchGenerator).
    def get_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "searcher"}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def make_search_alg(
    name: str,
    space: Space,
    *,
    metric: str,
    mode: str,
    seed: int,
    max_epochs: int,
    max_concurrent: int | None,
) -> tuple[Any, dict[str, Any], int]:
    """The search algorithm, the Tuner's param_space and its num_samples per proposal.

    random: Tune draws the random keys once per sample and crosses them with the grid. tpe: Optuna's
    TPE sampler (seeded with ``seed``) proposes the random keys; the grid points and constants come
    from `GridRepeater` and the param_space.
    """
    if name == "random":
        # Random keys are drawn once per sample and kept across the grid (seeds). The limit goes
        # to the generator itself: Tune ignores `max_concurrent_trials` (with a warning only) when
        # it is given a generator instance.
        generator = BasicVariantGenerator(
            constant_grid_search=True, random_state=seed, max_concurrent=max_concurrent or 0
        )
        param_space = space.param_space()
        if space.randoms:
            # Drawn once per sample like the random keys; two samples share one only with
            # probability 2**-31 (and all their random keys besides).
            param_space[SAMPLE_KEY] = tune.randint(0, SEED_MODULUS - 1)
        return generator, param_space, 1
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    # Optuna's INFO lines ("A new study created in memory") are not for this tool's users.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe = OptunaSearch(
        space=space.optuna_space(),
        metric=metric,
        mode=mode,
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    searcher: Searcher = GridRepeater(tpe, space.grid_points(), max_epochs)
    if max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return searcher, dict(space.constants), space.grid_size
