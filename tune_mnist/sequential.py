"""Until decided: an anytime-valid confidence sequence for the primary difference, round by round.

Replicates run in rounds (each round one more replicate of every cell). A round's value is the
mean over the cells of that round's pair differences; given the validation images, round values
are independent draws around the effect *on these images*. Their part of the interval is a
confidence sequence: the set of effects that the one-sample t-test's Bayes factor (a normal
prior of scale ``g`` on the standardized effect, the right-Haar prior on the scale) has not
rejected at 1/α. That Bayes factor is a test martingale under each null, so by Ville's
inequality the sequence covers at every round at once, however often it is looked at
(Pérez-Ortiz, Lardy, de Heide, Grünwald, "E-statistics, group invariance and anytime-valid
testing", 2024). The shared validation images add a part that does not shrink with rounds; it is
combined by a split of α (0.04 for the replicates, 0.01 for the images), so the combined
interval's error is at most α at every round.

A run stops when the combined interval excludes 0 ("differs"), lies inside [−δ, +δ] for the
precision δ asked for ("within"), or the replicate budget is spent ("budget"). A time stop is
none of these: the run resumes where it was.

>>> rounds = [0.011, 0.008, 0.012, 0.009, 0.010, 0.013]
>>> decision = decide(rounds, image_variance=1e-7, precision=0.005, max_rounds=30)
>>> decision.state, decision.low > 0
('differs', True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

__all__ = ["Decision", "decide", "p_value", "replicate_sequence", "threshold"]

ALPHA = 0.05
REPLICATE_ALPHA = 0.04  # the rest, 0.01, goes to the validation images' part
PRIOR_SCALE = 1.0  # g: the standardized effect per round the sequence is tightest around
STATES = ("differs", "within", "budget", "undecided")


@dataclass(frozen=True)
class Decision:
    """Where the answer stands after ``rounds`` rounds."""

    state: str
    rounds: int
    estimate: float
    low: float
    high: float
    replicate_low: float
    replicate_high: float
    image_half_width: float
    precision: float

    def describe(self) -> str:
        """One line for the progress output and the text summary."""
        interval = f"[{self.low:+.4f}, {self.high:+.4f}]" if math.isfinite(self.low) else "[-∞, +∞]"
        what = {
            "differs": "decided: MixUp " + ("helps" if self.estimate > 0 else "hurts"),
            "within": f"decided: no difference larger than ±{self.precision:.4f}",
            "budget": "replicate budget spent, undecided",
            "undecided": "undecided",
        }[self.state]
        return (
            f"after {self.rounds} round(s): MixUp − plain {self.estimate:+.4f}, anytime-valid "
            f"95% {interval}: {what}"
        )


def threshold(rounds: int, alpha: float = REPLICATE_ALPHA, g: float = PRIOR_SCALE) -> float:
    """|t| at which the t-test's Bayes factor reaches 1/α after ``rounds`` values (inf before).

    BF(t) = (1 + n g)^(−1/2) · ((1 + t²/ν) / (1 + t²/((1 + n g) ν)))^((ν + 1)/2), ν = n − 1.

    >>> round(threshold(10), 2), threshold(3)
    (4.05, inf)
    """
    n, nu = rounds, rounds - 1
    if n < 2 or nu / 2 * math.log1p(n * g) <= math.log(1 / alpha):
        return math.inf

    def log_bayes_factor(t: float) -> float:
        ratio = math.log1p(t * t / nu) - math.log1p(t * t / ((1 + n * g) * nu))
        return -0.5 * math.log1p(n * g) + (nu + 1) / 2 * ratio - math.log(1 / alpha)

    high = 1.0
    while log_bayes_factor(high) < 0:
        high *= 2
    return float(optimize.brentq(log_bayes_factor, 0.0, high))


def replicate_sequence(
    values: Sequence[float] | np.ndarray, alpha: float = REPLICATE_ALPHA
) -> tuple[float, float]:
    """The confidence sequence for the round values' mean after len(values) rounds."""
    values = np.asarray(values, dtype=np.float64)
    t = threshold(len(values), alpha)
    if not math.isfinite(t):
        return -math.inf, math.inf
    half = t * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def decide(
    round_values: Sequence[float] | np.ndarray,
    *,
    image_variance: float,
    precision: float,
    max_rounds: int,
    alpha: float = ALPHA,
) -> Decision:
    """The state after the rounds so far; ``image_variance`` is the variance of the estimate from
    the validation images alone (`tune_mnist.estimates.Estimate.image_variance`)."""
    values = np.asarray(round_values, dtype=np.float64)
    replicate_low, replicate_high = replicate_sequence(values, REPLICATE_ALPHA * alpha / ALPHA)
    image_alpha = alpha * (1 - REPLICATE_ALPHA / ALPHA)
    image_half = float(stats.norm.ppf(1 - image_alpha / 2) * math.sqrt(max(image_variance, 0.0)))
    low, high = replicate_low - image_half, replicate_high + image_half
    if low > 0 or high < 0:
        state = "differs"
    elif -precision <= low and high <= precision:
        state = "within"
    elif len(values) >= max_rounds:
        state = "budget"
    else:
        state = "undecided"
    estimate = float(values.mean()) if len(values) else math.nan
    return Decision(
        state,
        len(values),
        estimate,
        low,
        high,
        replicate_low,
        replicate_high,
        image_half,
        precision,
    )


def p_value(
    round_values: Sequence[float] | np.ndarray, *, image_variance: float, steps: int = 40
) -> float:
    """The anytime-valid p-value of "no difference": the smallest α at which the combined
    interval excludes 0 after these rounds (1 when none does), so p < 0.05 exactly when the 95%
    sequence excludes 0. Found by bisection on log α."""

    def excludes(alpha: float) -> bool:
        decision = decide(
            round_values,
            image_variance=image_variance,
            precision=0.0,
            max_rounds=10**9,
            alpha=alpha,
        )
        return decision.state == "differs"

    if not excludes(1 - 1e-12):
        return 1.0
    low, high = math.log(1e-12), math.log(1 - 1e-12)
    if excludes(math.exp(low)):
        return 1e-12
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (low, middle) if excludes(math.exp(middle)) else (middle, high)
    return math.exp(high)


def rounds_needed(
    round_sd: float, image_half_width: float, precision: float, effect: float, limit: int = 10**5
) -> int | None:
    """The first round at which a run is expected to decide, if its round values had sd
    ``round_sd`` around ``effect``: the sequence's half-width (at that sd) plus the images' part
    falls below |effect| ("differs") or within PRECISION − |effect| ("within"). None past
    ``limit`` rounds. A projection for planning, not a guarantee: the sd is itself estimated.

    >>> rounds_needed(0.002, 0.0005, precision=0.005, effect=0.0)
    7
    """
    n = 2
    while n <= limit:
        half = threshold(n) * round_sd / math.sqrt(n) + image_half_width
        if half < abs(effect) or abs(effect) + half <= precision:
            return n
        n += 1 if n < 1000 else n // 100
    return None
