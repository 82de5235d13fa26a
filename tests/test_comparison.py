"""The comparison protocol on synthetic pair tables with known answers, and the coverage of its
intervals' arithmetic. Each test states the one rule it checks; "old code" is the module this one
replaced (per-trial pairs at the best epoch, BCa bootstrap from 10 pairs, Wilcoxon p). The
coverage and width of the intervals, by simulation, are in tests/test_estimates.py."""

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


# ---- ties, epochs, failures ----------------------------------------------------------------------


def moved_one_image(images: int = 450) -> tuple[np.ndarray, np.ndarray]:
    """Plain gets the first 400 images right; MixUp the same ones and image 400 as well."""
    plain = np.arange(images) < 400
    return plain, np.arange(images) <= 400


def test_pairs_that_moved_by_the_same_amount_get_no_zero_width_interval():
    """Rule: no spread between pairs gives a NaN interval and a note, never zero width.

    Two pairs that each moved the same 1 of 450 images: the old code returned ci_low == ci_high.
    """
    trials, epochs, predictions = from_correct(moved_one_image(), moved_one_image())
    replicates_only = row_of(compare(trials, epochs), "primary")
    assert np.isnan(replicates_only["ci_low"]) and np.isnan(replicates_only["ci_high"])
    assert replicates_only["ci_note"].startswith("no spread between pairs")
    assert np.isnan(replicates_only["p_value"])
    assert replicates_only["diff"] == pytest.approx(1 / 450)

    # With predictions the image noise gives a real width: these 450 images could have been
    # others, on which MixUp changes nothing. The interval holds 0, and so p > 0.05.
    two_level = row_of(compare(trials, epochs, predictions), "primary")
    assert two_level["ci_method"] == TWO_LEVEL
    assert two_level["ci_low"] < 0 < two_level["ci_high"] and two_level["p_value"] > 0.05
    assert np.isnan(two_level["replicate_ci_low"])


def test_pairs_that_changed_the_same_images_the_same_way_get_no_interval_at_all():
    """Rule: with no spread between pairs nor images, even the two-level interval is NaN."""
    plain = np.zeros(450, dtype=bool)
    trials, epochs, predictions = from_correct((plain, plain), (plain, plain))
    row = row_of(compare(trials, epochs, predictions), "primary")
    assert np.isnan(row["ci_low"]) and row["ci_note"].startswith("no spread")
    assert row["diff"] == 0 and np.isnan(row["p_value"])


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
    assert np.isfinite(row["ci_low"]) and row["ci_low"] == row["replicate_ci_low"]


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


def test_a_grid_is_stratified_by_cell_with_welch_satterthwaite_degrees_of_freedom():
    """Rule: on an equal-variance 9 x 3 grid the primary row's replicate part has 18 df, not the
    number of seeds minus one (the old code's 2), and its interval is the stratified t interval."""
    pairs = []
    for cell in range(9):
        centre = 0.001 * cell
        diffs = [centre - 0.004, centre, centre + 0.004]  # every cell's variance 1.6e-5
        pairs += seeds_with_diffs(diffs, architecture=f"cell{cell}")
    row = row_of(compare(*make_tables(*pairs)), "primary")
    assert row["n_pairs"] == 27 and row["n_strata"] == 9
    assert row["df"] == pytest.approx(18)
    half_width = stats.t.ppf(0.975, df=18) * np.sqrt(9 * 1.6e-5 / (81 * 3))
    assert row["diff"] == pytest.approx(0.004)
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(
        [0.004 - half_width, 0.004 + half_width]
    )


def test_random_configurations_are_pooled_as_one_sample_and_have_no_per_architecture_rows():
    """Rule: with design="random" the primary row is the plain mean over pairs (n - 1 df) and the
    exploratory rows are left to the per-key dependence table (no row per configuration)."""
    pairs = [
        Pair([0.9], [0.9 + d], seed=0, architecture=f"lr={lr}")
        for d, lr in zip([0.01, 0.03, -0.01, 0.02], [0.1, 0.2, 0.3, 0.4], strict=True)
    ]
    table = compare(*make_tables(*pairs), design="random")
    row = row_of(table, "primary")
    assert row["n_pairs"] == 4 and row["n_strata"] == 1 and row["df"] == pytest.approx(3)
    assert row["diff"] == pytest.approx(0.0125) and np.isfinite(row["ci_low"])
    assert not (table["role"] == "exploratory").any()
    assert "per key" in format_comparison(table)


def test_old_runs_whose_cells_shared_each_seed_are_analysed_as_seed_clusters():
    """Rule: design="clusters" (runs made before pairs were independent) makes each seed one
    cluster: n is the number of seeds, and ci_method says so."""
    pairs = (
        seeds_with_diffs([0.01, 0.03], "a")
        + seeds_with_diffs([0.02, 0.02], "b")
        + seeds_with_diffs([0.03, 0.04], "c")
    )
    table = compare(*make_tables(*pairs), design="clusters")
    row = row_of(table, "primary")
    assert row["n_pairs"] == 6 and row["n_seeds"] == 2 and row["df"] == pytest.approx(1)
    clusters = np.array([0.02, 0.03])  # per seed, the mean over the three architectures
    half_width = stats.t.ppf(0.975, df=1) * clusters.std(ddof=1) / np.sqrt(2)
    assert row["diff"] == pytest.approx(0.025)
    assert row["ci_high"] == pytest.approx(0.025 + half_width)
    assert row["ci_method"].startswith("seed clusters")


def test_repeated_configurations_are_separate_replicates():
    """Rule: each pair_id is its own pair even when architecture and seed repeat (no crash).

    The old code raised "several trials share (architecture, config/seed, config/mixup)".
    """
    pairs = seeds_with_diffs([0.01]) + seeds_with_diffs([0.03]) + seeds_with_diffs([0.05], start=1)
    row = row_of(compare(*make_tables(*pairs)), "exploratory", architecture="base")
    assert row["n_pairs"] == 3 and row["diff"] == pytest.approx(0.03)
    old = row_of(compare(*make_tables(*pairs), design="clusters"), "primary")
    assert old["diff"] == pytest.approx((0.02 + 0.05) / 2)


def test_a_pair_needs_exactly_one_plain_and_one_mixup_arm():
    """Rule: a pair_id with other than two arms, or two arms of one kind, is a ValueError."""
    trials, epochs = make_tables(*seeds_with_diffs([0.01, 0.02]))
    with pytest.raises(ValueError, match="pair_id 'p0' has arms"):
        compare(pd.concat([trials, trials.iloc[[0]].assign(trial_id="extra")]), epochs)
    with pytest.raises(ValueError, match=r"pair_id 'p0' has arms \['plain', 'plain'\]"):
        compare(trials.assign(arm="plain", **{"config/mixup": False}), epochs)


# ---- p-value ------------------------------------------------------------------------------------


def test_p_below_five_percent_exactly_when_the_95_percent_interval_excludes_zero():
    """Rule: the p-value tests what the interval estimates (the same t statistic and df), so the
    two never disagree; the old sign-flip p could be 0.25 beside an interval without 0."""
    rng = np.random.default_rng(3)
    agree = []
    for study in range(40):
        diffs = rng.normal(0.01 * (study % 4), 0.01, size=6)
        pairs = seeds_with_diffs(diffs[:3], "a") + seeds_with_diffs(diffs[3:], "b")
        row = row_of(compare(*make_tables(*pairs)), "primary")
        excludes = row["ci_low"] > 0 or row["ci_high"] < 0
        agree.append(excludes == (row["p_value"] < 0.05))
    assert all(agree)


# ---- table, two-level interval, correlation ------------------------------------------------------


def test_the_two_level_interval_counts_the_pair_by_image_residual_once():
    """Rule: ci = mean ± t(df) sqrt(s²_pairs / n + (s²_images − MS_residual / n) / m), with
    Welch-Satterthwaite df over both parts, the image part's own df Satterthwaite's for its
    difference of mean squares; the old interval added s²_images / m whole (the residual twice)."""
    rng = np.random.default_rng(11)
    arms = [(rng.random(60) < 0.7, rng.random(60) < 0.75) for _ in range(3)]
    trials, epochs, predictions = from_correct(*arms)
    row = row_of(compare(trials, epochs, predictions, confidence=0.9), "primary")
    delta = np.array([mixup.astype(float) - plain for plain, mixup in arms])
    values, columns = delta.mean(axis=1), delta.mean(axis=0)
    residual = delta - values[:, None] - columns[None, :] + delta.mean()
    mean_square = np.square(residual).sum() / (2 * 59)
    replicate = values.var(ddof=1) / 3
    spread, share = columns.var(ddof=1), mean_square / 3
    image = max(spread - share, 0) / 60
    image_df = (spread - share) ** 2 / (spread**2 / 59 + share**2 / (2 * 59))
    df = (replicate + image) ** 2 / (replicate**2 / 2 + image**2 / image_df)
    half_width = stats.t.ppf(0.95, df=df) * np.sqrt(replicate + image)
    assert row["ci_method"] == TWO_LEVEL and row["diff"] == pytest.approx(values.mean())
    assert row["df"] == pytest.approx(df)
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(
        [values.mean() - half_width, values.mean() + half_width]
    )
    mixed = row_of(compare(trials, epochs, predictions), "pooled", "val_mixed_acc")
    assert mixed["ci_method"].startswith("t over replicates")
    assert mixed["ci_low"] == mixed["replicate_ci_low"]


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
    assert "replicates and validation images" in first and f"p = {primary['p_value']:.3g}" in first
    assert "Exploratory" in text and "selected on the same validation images" in text


def test_the_text_asks_for_more_replicates_when_there_is_one_pair_and_shows_failures():
    """Rule: one pair gives no interval and a message to run more replicates; failures listed."""
    trials, epochs = make_tables(
        Pair([0.9], [0.91]),
        Pair([0.9], [0.5], seed=0, architecture="b", status=("TERMINATED", "ERROR")),
    )
    text = format_comparison(compare(trials, epochs))
    assert "[no 95% interval: one pair: no interval (run more replicates" in text.splitlines()[0]
    assert "mixup 1 ERROR, 0 DIVERGED" in text


def test_a_run_whose_every_arm_failed_before_an_epoch_compares_no_pair():
    """Rule: no epoch at all (every attempt raised at once) is an answer, not a crash: the primary
    row counts no pair. results.collect types the empty epochs' ids as strings."""
    trials, _ = make_tables(Pair([0.5], [0.5], status=("ERROR", "ERROR")))
    columns = {"trial_id": "string", "epoch": "int64", "val_acc": "float64"}
    epochs = pd.DataFrame(columns=list(columns)).astype(columns)
    assert row_of(compare(trials, epochs), "primary")["n_pairs"] == 0


def test_under_asha_a_top_rung_row_compares_only_the_pairs_that_reached_it():
    """Rule: with top_epoch the table adds the primary over the pairs compared at that epoch, and
    the text says what the primary estimates (an epoch mixture under ASHA)."""
    trials, epochs = make_tables(
        Pair([0.80], [0.82], seed=0),
        Pair([0.80, 0.85, 0.90], [0.80, 0.86, 0.93], seed=1),
        Pair([0.80, 0.85, 0.90], [0.80, 0.86, 0.95], seed=2),
    )
    estimand = "the mean over the grid's cells, at each pair's compared epoch"
    table = compare(trials, epochs, top_epoch=3, estimand=estimand)
    top = table[table["role"] == "top rung"].iloc[0]
    assert top["n_pairs"] == 2 and top["diff"] == pytest.approx(0.04)
    assert row_of(table, "primary")["n_pairs"] == 3
    assert f"It estimates {estimand}." in format_comparison(table)
