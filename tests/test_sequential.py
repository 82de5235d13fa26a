"""Until decided: the confidence sequence's error under continuous monitoring, by simulation.

Round values are drawn as the comparison makes them: the effect on these validation images (the
true difference plus an image part, drawn once per study) plus a round's replicate noise. The
image part's variance is estimated with the noise of m = 3,000 images. A decision is a function of
the rounds completed so far, so a run that is resumed continues the very same sequence.
"""

from __future__ import annotations

import numpy as np
import pytest

from tune_mnist.sequential import decide, replicate_sequence, threshold

ROUND_SD = 0.0019  # 9 cells of pairs with sd 0.57 points (replicate 0.5, images 0.28)
IMAGE_SD = 0.00017  # a per-image MixUp effect of sd 1.7 points over 10,000 images
PRECISION = 0.005


def first_decisions(truth: float, studies: int, rounds: int, seed: int) -> np.ndarray:
    """Per study, (state code, round) of the first decision: 0 differs, 1 within, 2 budget."""
    rng = np.random.default_rng(seed)
    on_images = truth + rng.normal(0, IMAGE_SD, studies)
    values = on_images[:, None] + rng.normal(0, ROUND_SD, (studies, rounds))
    estimated = IMAGE_SD**2 * rng.chisquare(2999, studies) / 2999
    ended = np.full((studies, 2), (2, rounds))
    for study in range(studies):
        for n in range(2, rounds + 1):
            decision = decide(
                values[study, :n],
                image_variance=estimated[study],
                precision=PRECISION,
                max_rounds=rounds,
            )
            if decision.state in ("differs", "within"):
                ended[study] = (0 if decision.state == "differs" else 1, n)
                break
    return ended


def test_no_effect_is_declared_a_difference_in_at_most_5_percent_of_studies_however_long():
    """Rule: at a true difference of 0, looking after every round for up to 200 rounds, the
    share of studies ever decided "differs" stays at or below 5% (beyond 2 Monte Carlo SE).
    A fixed-n t interval looked at after every round would exceed it within a few rounds."""
    rng = np.random.default_rng(0)
    studies, rounds = 4000, 200
    values = rng.normal(0, IMAGE_SD, (studies, 1)) + rng.normal(0, ROUND_SD, (studies, rounds))
    image_half = 2.576 * IMAGE_SD
    ever = np.zeros(studies, dtype=bool)
    for n in range(2, rounds + 1):
        t = threshold(n)
        if not np.isfinite(t):
            continue
        mean = values[:, :n].mean(axis=1)
        half = t * values[:, :n].std(axis=1, ddof=1) / np.sqrt(n) + image_half
        ever |= (mean - half > 0) | (mean + half < 0)
    rate = ever.mean()
    print(f"\nat a true difference of 0: decided 'differs' in {rate:.4f} of studies")
    assert rate + 2 * np.sqrt(rate * (1 - rate) / studies) <= 0.05


def test_median_replicates_to_a_decision_for_true_differences_0_half_and_one_point():
    """Rule: the sequence decides: most studies end decided within 30 rounds, larger effects
    sooner; prints the median number of rounds (replicates per cell) to a decision."""
    medians = {}
    for truth in (0.0, 0.005, 0.01):
        ended = first_decisions(truth, studies=300, rounds=30, seed=1)
        medians[truth] = float(np.median(ended[:, 1]))
        decided = np.mean(ended[:, 0] < 2)
        wrong = np.mean(ended[:, 0] == 0) if truth == 0 else np.mean(ended[:, 0] == 1)
        print(
            f"\ntrue difference {truth:+.3f}: median {medians[truth]} rounds, decided {decided:.2f}"
        )
        assert decided >= 0.5 and wrong <= 0.05
    assert medians[0.01] <= medians[0.005]


def test_the_replicate_sequence_is_unbounded_until_the_bayes_factor_can_reach_1_over_alpha():
    """Rule: with too few rounds no value can reject, so the sequence is the whole line; it is
    never narrower than the fixed-n t interval of the same rounds."""
    assert replicate_sequence([0.01, 0.02, 0.03]) == (-np.inf, np.inf)
    values = np.random.default_rng(2).normal(0.01, 0.002, 12)
    low, high = replicate_sequence(values)
    fixed = 2.2 * values.std(ddof=1) / np.sqrt(12)  # t(0.975, 11) = 2.20
    assert high - low > 2 * fixed


@pytest.mark.parametrize("precision", [0.0, -0.1])
def test_a_precision_of_zero_or_less_never_decides_within(precision):
    """Rule: "within" needs the whole interval inside [−δ, +δ]; δ <= 0 can never be met."""
    values = np.random.default_rng(3).normal(0, 1e-4, 30)
    decision = decide(values, image_variance=0, precision=precision, max_rounds=30)
    assert decision.state == "budget"
