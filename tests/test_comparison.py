"""The comparison protocol on synthetic pair tables with known answers, and the coverage of its
intervals by simulation. Each test states the one rule it checks; "old code" is the module this
one replaced (per-trial pairs at the best epoch, BCa bootstrap from 10 pairs, Wilcoxon p)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tune_mnist.comparison import (
    COLUMNS,
    SENSITIVITY,
    TWO_LEVEL,
    _seed_interval,
    _sign_flip_p_value,
    _two_level_interval,
    compare,
    format_comparison,
    holm,
)
from tune_mnist.space import ARMS

# ---- builders ------------------------------------------------------------------------------------


@dataclass
class Pair:
    """One pair: each arm's val_acc per epoch (epoch 1 first), statuses, architecture and seed."""

    plain: Sequence[float]
    mixup: Sequence[float]
    seed: int = 0
    architecture: str = "base"
    status: tuple[str, str] = ("TERMINATED", "TERMINATED")


def make_tables(*pairs: Pair) -> tuple[pd.DataFrame, pd.DataFrame]:
    """trials and epochs of the pairs: pair k is ``p<k>``, its arms ``p<k>-plain``, ``p<k>-mixup``.

    val_mixed_acc is val_acc - 0.2; val_ece is 0.05 (plain) or 0.03 (mixup); losses are finite;
    best_* come from the epoch with the best finite val_acc, as results.py makes them.
    """
    trial_rows, epoch_rows = [], []
    for k, pair in enumerate(pairs):
        arms = zip(ARMS.items(), (pair.plain, pair.mixup), pair.status, strict=True)
        for (arm, mixup), accuracies, status in arms:
            trial_id = f"p{k}-{arm}"
            ece = 0.03 if mixup else 0.05
            for epoch, acc in enumerate(accuracies, start=1):
                epoch_rows.append(
                    {
                        "trial_id": trial_id,
                        "epoch": epoch,
                        "val_acc": acc,
                        "val_mixed_acc": acc - 0.2,
                        "val_ece": ece,
                        "val_mixed_ece": ece,
                        "train_loss": 0.3,
                        "val_loss": 0.3,
                    }
                )
            best = np.nanmax(accuracies) if np.isfinite(accuracies).any() else np.nan
            trial_rows.append(
                {
                    "trial_id": trial_id,
                    "pair_id": f"p{k}",
                    "arm": arm,
                    "config/mixup": mixup,
                    "status": status,
                    "architecture": pair.architecture,
                    "config/seed": pair.seed,
                    "config/learning_rate": 1e-3,
                    "epochs_run": len(accuracies),
                    "best_val_acc": best,
                    "best_val_mixed_acc": best - 0.2,
                    "best_val_ece": ece,
                }
            )
    return pd.DataFrame(trial_rows), pd.DataFrame(epoch_rows)


def from_correct(
    *arms: tuple[np.ndarray, np.ndarray], seeds: Sequence[int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """trials, epochs and val_predictions of one-epoch pairs given each arm's correct images.

    Each item is (correct_plain, correct_mixup), boolean arrays over the same validation images;
    val_acc is their mean, so the predictions and the epochs agree. Pair k has seed k by default.
    """
    seeds = range(len(arms)) if seeds is None else seeds
    trials, epochs = make_tables(
        *(
            Pair([plain.mean()], [mixup.mean()], seed=s)
            for (plain, mixup), s in zip(arms, seeds, strict=True)
        )
    )
    rows = []
    for k, correct in enumerate(arms):
        for arm, is_correct in zip(ARMS, correct, strict=True):
            true = np.arange(len(is_correct)) % 10
            rows.append(
                pd.DataFrame(
                    {
                        "trial_id": f"p{k}-{arm}",
                        "epoch": 1,
                        "image": np.arange(len(true)),
                        "predicted": np.where(is_correct, true, (true + 1) % 10).astype(np.int8),
                        "true": true.astype(np.int8),
                    }
                )
            )
    return trials, epochs, pd.concat(rows, ignore_index=True)


def row_of(table: pd.DataFrame, role: str, metric: str = "val_acc", architecture: str = "all"):
    """The one row of the table with this role, metric and (for exploratory rows) architecture."""
    match = (table["role"] == role) & (table["metric"] == metric)
    if role == "exploratory":
        match &= table["architecture"] == architecture
    (index,) = np.flatnonzero(match)
    return table.iloc[index]


def seeds_with_diffs(diffs: Sequence[float], architecture: str = "base", start: int = 0):
    """Pairs of one epoch with these mixup - plain differences, seeds start, start + 1, ..."""
    return [
        Pair([0.9], [0.9 + d], seed=start + s, architecture=architecture)
        for s, d in enumerate(diffs)
    ]


# ---- coverage by simulation ----------------------------------------------------------------------

TRUE_DIFFERENCE = 0.01


def seed_only_coverage(noise: str, n: int, sims: int, rng: np.random.Generator) -> float:
    """Share of simulated studies of n cluster values whose seed-only interval covers the mean."""
    draws = rng.standard_normal((sims, n)) if noise == "normal" else rng.standard_t(3, (sims, n))
    low, high = _seed_interval(TRUE_DIFFERENCE + 0.01 * draws, 0.95)
    return float(np.mean((low <= TRUE_DIFFERENCE) & (TRUE_DIFFERENCE <= high)))


def two_level_coverage(
    coupling: str, image_spread: float, n: int, sims: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Coverage of the two-level and of the seed-only interval, of E[δ] over seeds and images.

    Image i is correct with probability q_i + s_p (plain) and q_i + s_p + 0.01 + a_p + c_i
    (MixUp): a seed effect s_p on both arms, a MixUp effect a_p per seed and c_i per image (up to
    ± image_spread), all zero-mean and bounded so that no probability leaves [0, 1]; E[δ] is then
    exactly 0.01. The arms draw correctness from one uniform per image ("shared", like two
    similar models) or from two. 450 validation images.
    """
    images = 450
    q = rng.uniform(0.4, 0.7, (sims, 1, images))
    image_effect = rng.uniform(-image_spread, image_spread, (sims, 1, images))
    p_plain = q + rng.uniform(-0.05, 0.05, (sims, n, 1))
    p_mixup = p_plain + TRUE_DIFFERENCE + rng.uniform(-0.03, 0.03, (sims, n, 1)) + image_effect
    uniform = rng.random((sims, n, images))
    other = uniform if coupling == "shared" else rng.random((sims, n, images))
    delta = (other < p_mixup).astype(np.int8) - (uniform < p_plain)
    values = delta.mean(axis=-1)
    covered = []
    for low, high in (
        _two_level_interval(values, delta.mean(axis=-2), 0.95),
        _seed_interval(values, 0.95),
    ):
        covered.append(float(np.mean((low <= TRUE_DIFFERENCE) & (TRUE_DIFFERENCE <= high))))
    return covered[0], covered[1]


@pytest.mark.parametrize("noise", ["normal", "t3"])
def test_the_seed_only_interval_covers_the_true_difference_at_least_93_percent(noise):
    """Rule: nominal 95% seed-only intervals cover the true mean in >= 93% of studies, n = 3-30.

    A z interval (81% at n = 3) or a percentile bootstrap over 3 seeds would fail this; the old
    BCa bootstrap under-covered at 10-15 pairs.
    """
    rng = np.random.default_rng(20240611)
    coverage = {n: seed_only_coverage(noise, n, 4000, rng) for n in (3, 5, 10, 15, 30)}
    assert min(coverage.values()) >= 0.93, coverage


@pytest.mark.parametrize(
    "coupling, image_spread", [("shared", 0.2), ("independent", 0.2), ("shared", 0.0)]
)
def test_the_two_level_interval_covers_the_expectation_over_seeds_and_images(
    coupling, image_spread
):
    """Rule: with seed and image noise, the two-level interval covers E[δ] in >= 93% at n = 3, 10.

    The images are shared by every pair, so the seed-only interval misses their noise (89% at
    n = 10 with shared draws); dropping the seed term instead fails the image_spread=0 case.
    """
    rng = np.random.default_rng(7)
    coverage = {n: two_level_coverage(coupling, image_spread, n, 1000, rng)[0] for n in (3, 10)}
    assert min(coverage.values()) >= 0.93, coverage


# ---- ties, epochs, failures ----------------------------------------------------------------------


def moved_one_image(images: int = 450) -> tuple[np.ndarray, np.ndarray]:
    """Plain gets the first 400 images right; MixUp the same ones and image 400 as well."""
    plain = np.arange(images) < 400
    return plain, np.arange(images) <= 400


def test_pairs_that_moved_by_the_same_amount_get_no_zero_width_interval():
    """Rule: no spread between seeds gives a NaN seed-only interval and a note, never zero width.

    Two pairs that each moved the same 1 of 450 images: the old code returned ci_low == ci_high.
    The exact sign-flip p over n = 2 is 0.5 (flips +,+ and -,- are as extreme as observed).
    """
    trials, epochs, predictions = from_correct(moved_one_image(), moved_one_image())
    seeds_only = row_of(compare(trials, epochs), "primary")
    assert np.isnan(seeds_only["ci_low"]) and np.isnan(seeds_only["ci_high"])
    assert "no spread between seeds" in seeds_only["ci_note"]
    assert seeds_only["p_value"] == 0.5 and seeds_only["diff"] == pytest.approx(1 / 450)

    # With predictions the image noise gives a real width: the interval holds 0, as p = 0.5 says.
    two_level = row_of(compare(trials, epochs, predictions), "primary")
    assert two_level["ci_method"] == TWO_LEVEL
    assert two_level["ci_low"] < 0 < two_level["ci_high"] and two_level["p_value"] == 0.5
    assert np.isnan(two_level["seed_ci_low"]) and "validation images" in two_level["ci_note"]


def test_pairs_that_changed_the_same_images_the_same_way_get_no_interval_at_all():
    """Rule: with no spread between seeds nor images, even the two-level interval is NaN."""
    plain = np.zeros(450, dtype=bool)
    trials, epochs, predictions = from_correct((plain, plain), (plain, plain))
    row = row_of(compare(trials, epochs, predictions), "primary")
    assert np.isnan(row["ci_low"]) and row["ci_note"].startswith("no spread")
    assert row["diff"] == 0 and row["p_value"] == 1.0


def test_a_pair_stopped_early_is_compared_at_the_last_epoch_both_arms_ran():
    """Rule: unequal lengths (ASHA, patience) compare at the smaller epoch; no pair is dropped.

    The old code dropped every pair whose arms ran different numbers of epochs.
    """
    trials, epochs = make_tables(
        Pair([0.80, 0.85, 0.90], [0.80, 0.86, 0.93, 0.95, 0.97], seed=0),
        Pair([0.80, 0.90, 0.91, 0.92, 0.93], [0.85, 0.91, 0.94], seed=1),
    )
    row = row_of(compare(trials, epochs), "primary")
    assert row["n_pairs"] == 2
    assert row["plain"] == pytest.approx((0.90 + 0.91) / 2)
    assert row["mixup"] == pytest.approx((0.93 + 0.94) / 2)
    assert row["diff"] == pytest.approx(0.03)
    assert row["best_mixup"] == pytest.approx((0.97 + 0.94) / 2)


def failure_study(drop_losses: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seed 0 clean (+0.02); seed 1 MixUp ERROR; seed 2 plain DIVERGED at epoch 3 (finite garbage
    val_acc 0.098 there, NaN train loss); seed 3 plain still RUNNING."""
    trials, epochs = make_tables(
        Pair([0.90] * 4, [0.92] * 4, seed=0),
        Pair([0.91] * 4, [0.50], seed=1, status=("TERMINATED", "ERROR")),
        Pair(
            [0.88, 0.89, 0.098], [0.90, 0.93, 0.94, 0.95], seed=2, status=("DIVERGED", "TERMINATED")
        ),
        Pair([0.90], [0.90], seed=3, status=("RUNNING", "TERMINATED")),
    )
    epochs.loc[(epochs["trial_id"] == "p2-plain") & (epochs["epoch"] == 3), "train_loss"] = np.nan
    return trials, epochs.drop(columns=["train_loss", "val_loss"]) if drop_losses else epochs


@pytest.mark.parametrize("drop_losses", [False, True])
def test_failed_arms_are_counted_per_arm_and_a_diverged_arm_is_compared_before_it_diverged(
    drop_losses,
):
    """Rule: ERROR and DIVERGED arms are counted per arm, unfinished pairs counted, none silently
    removed; a DIVERGED arm counts up to its last epoch before diverging (first non-finite loss,
    or without loss columns its last epoch), never at the garbage epoch."""
    table = compare(*failure_study(drop_losses))
    row = row_of(table, "primary")
    counts = row[["n_error_plain", "n_error_mixup", "n_diverged_plain", "n_diverged_mixup"]]
    assert counts.tolist() == [0, 1, 1, 0] and row["n_unfinished"] == 1
    assert row["n_pairs"] == 2  # seeds 0 and 2; seed 2 at epoch 2: 0.93 - 0.89
    assert row["diff"] == pytest.approx((0.02 + 0.04) / 2)
    exploratory = row_of(table, "exploratory", architecture="base")
    assert exploratory[counts.index].tolist() == counts.tolist()


def test_the_sensitivity_row_scores_each_failed_arm_at_chance_against_the_other_arms_last_epoch():
    """Rule: the sensitivity row adds the pairs with one failed arm, that arm at 0.1 accuracy."""
    row = row_of(compare(*failure_study()), "sensitivity")
    assert row["architecture"] == SENSITIVITY
    # Seed 0: +0.02; seed 1: 0.1 - 0.91 (plain's last epoch); seed 2: 0.95 (epoch 4) - 0.1.
    assert row["n_pairs"] == 3 and row["n_seeds"] == 3
    assert row["diff"] == pytest.approx((0.02 - 0.81 + 0.85) / 3)
    assert np.isfinite(row["ci_low"]) and row["ci_low"] == row["seed_ci_low"]


# ---- multiplicity, clustering, repeats -----------------------------------------------------------


def test_holm_matches_a_hand_computed_example():
    """Rule: Holm multiplies the i-th smallest of k p-values by k - i + 1, keeps them monotone,
    caps at 1, and ignores NaN (k counts finite p-values only)."""
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> max(0.04, 0.06).
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02, np.nan])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    assert holm([]).shape == (0,)


def test_exploratory_rows_carry_holm_p_across_architectures_and_pooled_rows_their_own_p():
    """Rule: p_holm is Holm over the exploratory rows of one metric; pooled rows copy p_value."""
    pairs = (
        seeds_with_diffs([0.01, 0.02, 0.03, 0.01, 0.02], "a")
        + seeds_with_diffs([0.01, -0.02, 0.03, 0.01, 0.02], "b")
        + seeds_with_diffs([-0.01, 0.02, 0.0, -0.03, 0.01], "c")
    )
    table = compare(*make_tables(*pairs))
    for metric in ("val_acc", "val_mixed_acc"):
        rows = table[(table["role"] == "exploratory") & (table["metric"] == metric)]
        np.testing.assert_allclose(rows["p_holm"], holm(rows["p_value"]))
    shared = table[table["role"] != "exploratory"]
    np.testing.assert_array_equal(shared["p_holm"], shared["p_value"])


def test_pooled_rows_use_one_cluster_per_seed():
    """Rule: pairs sharing a seed across architectures are one cluster: n is the number of seeds.

    The old code counted 6 independent pairs here.
    """
    pairs = (
        seeds_with_diffs([0.01, 0.03], "a")
        + seeds_with_diffs([0.02, 0.02], "b")
        + seeds_with_diffs([0.03, 0.04], "c")
    )
    table = compare(*make_tables(*pairs))
    row = row_of(table, "primary")
    assert row["n_pairs"] == 6 and row["n_seeds"] == 2
    clusters = np.array([0.02, 0.03])  # per seed, the mean over the three architectures
    half_width = stats.t.ppf(0.975, df=1) * clusters.std(ddof=1) / np.sqrt(2)
    assert row["diff"] == pytest.approx(0.025)
    assert row["seed_ci_high"] == pytest.approx(0.025 + half_width)
    assert row_of(table, "exploratory", architecture="b")["n_seeds"] == 2


def test_repeated_configurations_are_separate_pairs_averaged_within_their_seed():
    """Rule: each pair_id is its own pair even when architecture and seed repeat (no crash).

    The old code raised "several trials share (architecture, config/seed, config/mixup)".
    """
    pairs = seeds_with_diffs([0.01]) + seeds_with_diffs([0.03]) + seeds_with_diffs([0.05], start=1)
    row = row_of(compare(*make_tables(*pairs)), "exploratory", architecture="base")
    assert row["n_pairs"] == 3 and row["n_seeds"] == 2
    assert row["diff"] == pytest.approx((0.02 + 0.05) / 2)


def test_a_pair_needs_exactly_one_plain_and_one_mixup_arm():
    """Rule: a pair_id with other than two arms, or two arms of one kind, is a ValueError."""
    trials, epochs = make_tables(*seeds_with_diffs([0.01, 0.02]))
    with pytest.raises(ValueError, match="pair_id 'p0' has arms"):
        compare(pd.concat([trials, trials.iloc[[0]].assign(trial_id="extra")]), epochs)
    with pytest.raises(ValueError, match=r"pair_id 'p0' has arms \['plain', 'plain'\]"):
        compare(trials.assign(arm="plain", **{"config/mixup": False}), epochs)


# ---- p-value -------------------------------------------------------------------------------------


def test_the_sign_flip_p_value_is_exact_for_a_few_seeds():
    """Rule: for n <= 16 p is the share of all 2**n sign flips with |sum| >= |observed sum|."""
    # 1, 2, 3, -1 (sum 5): |7 - 2F| >= 5 for flipped subsets of sum F <= 1 or F >= 6: 6 of 16.
    assert _sign_flip_p_value(np.array([1, 2, 3, -1]) / 1000, seed=0) == 6 / 16
    assert _sign_flip_p_value(np.array([1, 2, 3, 4]) / 1000, seed=0) == 2 / 16
    assert _sign_flip_p_value(np.array([0.0, 0.01]), seed=0) == 1.0  # a zero stays in
    assert _sign_flip_p_value(np.array([0.02]), seed=0) == 1.0
    assert np.isnan(_sign_flip_p_value(np.array([]), seed=0))


def test_the_exact_sign_flip_p_value_agrees_with_scipy_permutation_test():
    """Rule: the exact path equals scipy.stats.permutation_test's sign flips (no ties here)."""
    values = np.random.default_rng(5).normal(0.3, 1.0, size=9)
    expected = stats.permutation_test(
        (values,),
        lambda x, axis: x.mean(axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    ).pvalue
    assert _sign_flip_p_value(values, seed=0) == pytest.approx(expected)


def test_the_monte_carlo_p_value_is_reproducible_and_close_to_the_exact_one():
    """Rule: above 16 seeds p is (hits + 1) / (draws + 1) from a seeded generator: the same for
    the same seed, and within Monte Carlo error of the exact p (here by convolution)."""
    units = np.arange(1, 21) * np.where(np.isin(np.arange(20), [2, 6, 9, 13, 17]), -1, 1)
    null = np.zeros(2 * np.abs(units).sum() + 1)
    null[np.abs(units).sum()] = 1.0
    for unit in np.abs(units):  # the distribution of sum(± unit), one seed at a time
        null = (np.roll(null, unit) + np.roll(null, -unit)) / 2
    sums = np.arange(len(null)) - np.abs(units).sum()
    exact = null[np.abs(sums) >= abs(units.sum())].sum()
    p = _sign_flip_p_value(units / 1000, seed=3)
    assert p == _sign_flip_p_value(units / 1000, seed=3)
    assert 0.01 < exact < 0.5 and abs(p - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000)


# ---- table, two-level interval, correlation ------------------------------------------------------


def test_the_two_level_interval_is_mean_plus_minus_t_times_both_variances():
    """Rule: ci = mean ± t(n-1) sqrt(s²_seeds / n + s²_images / m), from the predictions."""
    rng = np.random.default_rng(11)
    arms = [(rng.random(60) < 0.7, rng.random(60) < 0.75) for _ in range(3)]
    trials, epochs, predictions = from_correct(*arms)
    row = row_of(compare(trials, epochs, predictions, confidence=0.9), "primary")
    delta = np.array([mixup.astype(float) - plain for plain, mixup in arms])
    values = delta.mean(axis=1)
    variance = values.var(ddof=1) / 3 + delta.mean(axis=0).var(ddof=1) / 60
    half_width = stats.t.ppf(0.95, df=2) * np.sqrt(variance)
    assert row["ci_method"] == TWO_LEVEL and row["diff"] == pytest.approx(values.mean())
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(
        [values.mean() - half_width, values.mean() + half_width]
    )
    mixed = row_of(compare(trials, epochs, predictions), "pooled", "val_mixed_acc")
    assert (
        mixed["ci_method"].startswith("paired t over seeds")
        and mixed["ci_low"] == mixed["seed_ci_low"]
    )


def test_arm_correlation_is_pearson_across_pairs_and_nan_below_three_pairs():
    """Rule: arm_correlation is the Pearson correlation of the arms at the compared epoch."""
    plain, mixup = [0.90, 0.92, 0.93, 0.97], [0.91, 0.94, 0.935, 0.975]
    pairs = [Pair([p], [m], seed=s) for s, (p, m) in enumerate(zip(plain, mixup, strict=True))]
    row = row_of(compare(*make_tables(*pairs)), "primary")
    assert row["arm_correlation"] == pytest.approx(np.corrcoef(plain, mixup)[0, 1])
    two = row_of(compare(*make_tables(*pairs[:2])), "primary")
    assert np.isnan(two["arm_correlation"])


def test_rows_come_in_protocol_order_with_the_documented_columns():
    """Rule: primary row, other pooled rows, sensitivity, then exploratory rows metric by metric."""
    pairs = seeds_with_diffs([0.01, 0.02], "b") + seeds_with_diffs([0.01, 0.03], "a")
    table = compare(*make_tables(*pairs))
    assert list(table.columns) == list(COLUMNS) and table.attrs["confidence"] == 0.95
    assert list(zip(table["metric"], table["role"], table["architecture"], strict=True)) == [
        ("val_acc", "primary", "all"),
        ("val_mixed_acc", "pooled", "all"),
        ("val_ece", "pooled", "all"),
        ("val_acc", "sensitivity", SENSITIVITY),
        ("val_acc", "exploratory", "a"),
        ("val_acc", "exploratory", "b"),
        ("val_mixed_acc", "exploratory", "a"),
        ("val_mixed_acc", "exploratory", "b"),
        ("val_ece", "exploratory", "a"),
        ("val_ece", "exploratory", "b"),
    ]
    assert row_of(table, "pooled", "val_ece")["diff"] == pytest.approx(-0.02)


def assert_stable_dtypes(table: pd.DataFrame) -> None:
    for column, dtype in COLUMNS.items():
        if dtype is str:
            assert pd.api.types.is_string_dtype(table[column]), column
        else:
            assert table[column].dtype == dtype, column


def test_dtypes_are_stable_and_a_parquet_round_trip_keeps_the_table(tmp_path):
    """Rule: int64 counts, str labels, float64 numbers, kept by Parquet with the confidence."""
    trials, epochs = failure_study()
    table = compare(trials, epochs, confidence=0.9)
    assert_stable_dtypes(table)
    table.to_parquet(tmp_path / "comparison.parquet")
    read = pd.read_parquet(tmp_path / "comparison.parquet")
    pd.testing.assert_frame_equal(read, table)
    assert read.attrs["confidence"] == 0.9


def test_no_usable_pair_still_gives_every_row_with_nan_numbers_and_the_counts():
    """Rule: with no usable pair the rows are there (NaN numbers, counts), nothing raises."""
    trials, epochs = make_tables(*seeds_with_diffs([0.01, 0.02], "a"))
    trials["status"] = ["RUNNING", "RUNNING", "ERROR", "TERMINATED"]
    table = compare(trials, epochs)
    assert_stable_dtypes(table)
    compared = table[table["role"] != "sensitivity"]  # which scores the ERROR arm at chance
    assert len(table) == 7 and (compared["n_pairs"] == 0).all() and compared["diff"].isna().all()
    assert row_of(table, "primary")[["n_unfinished", "n_error_plain"]].tolist() == [1, 1]
    assert "no pair compared" in format_comparison(table)


# ---- text ----------------------------------------------------------------------------------------


def test_the_text_starts_with_the_primary_result_and_its_interval():
    """Rule: the first line is the primary result, with its two-level interval and p-value."""
    rng = np.random.default_rng(2)
    arms = [(rng.random(450) < 0.9, rng.random(450) < 0.92) for _ in range(3)]
    table = compare(*from_correct(*arms))
    text = format_comparison(table)
    first = text.splitlines()[0]
    primary = row_of(table, "primary")
    assert first.startswith("Primary result (fixed in advance): val_acc, MixUp − plain")
    assert f"[95% {primary['ci_low']:+.4f}, {primary['ci_high']:+.4f}]" in first
    assert "seeds and validation images" in first and f"p = {primary['p_value']:.3g}" in first
    assert "Exploratory" in text and "selected on the same validation images" in text


def test_the_text_asks_for_more_seeds_when_there_is_one_and_shows_failures():
    """Rule: one seed gives no interval and a message to run --seeds 3; failures are listed."""
    trials, epochs = make_tables(
        Pair([0.9], [0.91]),
        Pair([0.9], [0.5], seed=0, architecture="b", status=("TERMINATED", "ERROR")),
    )
    text = format_comparison(compare(trials, epochs))
    assert "[no 95% interval: one seed: run --seeds 3 or more]" in text.splitlines()[0]
    assert "mixup 1 ERROR, 0 DIVERGED" in text


def test_a_run_whose_every_arm_failed_before_an_epoch_compares_no_pair():
    """Rule: no epoch at all (every attempt raised at once) is an answer, not a crash: the primary
    row counts no pair. results.collect types the empty epochs' ids as strings."""
    trials, _ = make_tables(Pair([0.5], [0.5], status=("ERROR", "ERROR")))
    columns = {"trial_id": "string", "epoch": "int64", "val_acc": "float64"}
    epochs = pd.DataFrame(columns=list(columns)).astype(columns)
    assert row_of(compare(trials, epochs), "primary")["n_pairs"] == 0
