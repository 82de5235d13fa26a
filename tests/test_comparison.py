"""Paired MixUp-vs-plain comparison on synthetic trial tables with known differences."""

import numpy as np
import pandas as pd
import pytest

from tune_mnist.comparison import format_comparison, paired_comparison

METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "val_mixed_loss", "val_mixed_acc", "val_ece", "val_mixed_ece"]


def make_trials(
    plain_acc: dict[str, list[float]],
    mixup_acc: dict[str, list[float]],
    *,
    epochs: int = 10,
) -> pd.DataFrame:
    """A trials table: per architecture, one plain and one MixUp trial per seed, all finished.

    ``best_val_acc`` comes from the arguments; ``best_val_mixed_acc`` is val_acc - 0.1 and the
    other metrics are fixed, so tests can reason about val_acc alone.
    """
    rows = []
    for mixup, accuracies in ((False, plain_acc), (True, mixup_acc)):
        for architecture, values in accuracies.items():
            for seed, value in enumerate(values):
                row = {
                    "trial_id": f"{architecture}-{seed}-{mixup}",
                    "status": "TERMINATED",
                    "architecture": architecture,
                    "config/mixup": mixup,
                    "config/seed": seed,
                    "config/learning_rate": 1e-3,
                    "best_epoch": epochs - 1,
                    "epochs_run": epochs,
                }
                for prefix in ("best_", "last_"):
                    row.update({f"{prefix}{metric}": 0.5 for metric in METRICS})
                    row[f"{prefix}val_acc"] = value
                    row[f"{prefix}val_mixed_acc"] = value - 0.1
                    row[f"{prefix}val_ece"] = 0.02 if mixup else 0.05
                rows.append(row)
    return pd.DataFrame(rows)


def row_of(table: pd.DataFrame, architecture: str) -> pd.Series:
    (index,) = np.flatnonzero(table["architecture"] == architecture)
    return table.iloc[index]


def test_a_constant_true_difference_lies_inside_the_bootstrap_interval():
    rng = np.random.default_rng(1)
    plain = list(0.95 + rng.uniform(-0.01, 0.01, size=12))
    mixup = [x + 0.02 + rng.normal(0, 0.001) for x in plain]
    table = paired_comparison(make_trials({"small": plain}, {"small": mixup}))
    row = row_of(table, "small")

    assert row["n_pairs"] == 12 and row["ci_method"] == "bootstrap BCa"
    assert row["diff_val_acc"] == pytest.approx(0.02, abs=0.001)
    assert row["ci_low"] < 0.02 < row["ci_high"]
    assert row["ci_high"] - row["ci_low"] < 0.005
    assert row["p_value"] < 0.01
    assert row["diff_val_mixed_acc"] == pytest.approx(row["diff_val_acc"])


def test_a_few_seeds_get_a_paired_t_interval_around_the_difference():
    plain = [0.90, 0.91, 0.92]
    mixup = [0.93, 0.935, 0.955]
    row = row_of(paired_comparison(make_trials({"a": plain}, {"a": mixup})), "a")
    assert row["ci_method"] == "paired t"
    assert row["ci_low"] < row["diff_val_acc"] < row["ci_high"]
    assert row["diff_val_acc"] == pytest.approx(np.mean(np.subtract(mixup, plain)))


def test_identical_arms_give_zero_difference_and_a_large_p_value():
    accuracies = {"a": [0.9, 0.92, 0.95, 0.97]}
    row = row_of(paired_comparison(make_trials(accuracies, accuracies)), "a")
    assert row["diff_val_acc"] == 0.0
    assert row["ci_low"] == row["ci_high"] == 0.0
    assert row["p_value"] >= 0.5


def test_one_seed_gives_no_interval_and_asks_for_more_seeds():
    table = paired_comparison(make_trials({"a": [0.9]}, {"a": [0.91]}))
    assert table["n_pairs"].tolist() == [1, 1]
    for _, row in table.iterrows():
        assert row["ci_method"] == "none"
        assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and np.isnan(row["p_value"])
        assert row["diff_val_acc"] == pytest.approx(0.01)
    text = format_comparison(table)
    assert "--seeds 3" in text
    assert "[+" not in text and "[-" not in text


def test_one_seed_over_several_architectures_gives_a_pooled_interval_only():
    table = paired_comparison(make_trials({"a": [0.9], "b": [0.8]}, {"a": [0.91], "b": [0.82]}))
    assert row_of(table, "a")["ci_method"] == "none"
    pooled = row_of(table, "all")
    # The pooled interval treats architectures as the sampled units: it is about the average effect.
    assert pooled["n_pairs"] == 2 and pooled["ci_method"] == "paired t"
    assert pooled["ci_low"] < pooled["diff_val_acc"] < pooled["ci_high"]


def test_the_more_seeds_message_is_absent_when_an_interval_exists():
    table = paired_comparison(make_trials({"a": [0.9, 0.91, 0.93]}, {"a": [0.91, 0.93, 0.94]}))
    text = format_comparison(table)
    assert "--seeds" not in text
    assert f"[{table['ci_low'].iloc[0]:+.4f}, {table['ci_high'].iloc[0]:+.4f}]" in text


def test_asha_pairs_stopped_at_different_epochs_are_dropped_and_counted():
    trials = make_trials({"a": [0.9, 0.91, 0.92, 0.93]}, {"a": [0.95, 0.96, 0.97, 0.98]})
    # ASHA stopped seed 1's plain trial early: comparing it to a 10-epoch MixUp trial is unfair.
    trials.loc[(trials["config/seed"] == 1) & ~trials["config/mixup"], "epochs_run"] = 3
    row = row_of(paired_comparison(trials), "a")
    assert row["n_pairs"] == 3 and row["n_dropped"] == 1
    assert row["val_acc_plain"] == pytest.approx(np.mean([0.9, 0.92, 0.93]))
    assert "1 pair(s) not compared" in format_comparison(paired_comparison(trials))


def test_trials_that_did_not_finish_are_excluded():
    trials = make_trials({"a": [0.9, 0.91, 0.92]}, {"a": [0.95, 0.96, 0.97]})
    failed = (trials["config/seed"] == 0) & trials["config/mixup"]
    trials.loc[failed, "status"] = "ERROR"
    trials.loc[(trials["config/seed"] == 2) & trials["config/mixup"], "status"] = "DIVERGED"
    row = row_of(paired_comparison(trials), "a")
    assert row["n_pairs"] == 1 and row["n_dropped"] == 2
    assert row["val_acc_mixup"] == pytest.approx(0.96)


def test_the_pooled_row_pairs_across_architectures_by_architecture_and_seed():
    plain = {"a": [0.90, 0.91], "b": [0.80, 0.81, 0.82]}
    mixup = {"a": [0.92, 0.93], "b": [0.81, 0.82, 0.83]}
    table = paired_comparison(make_trials(plain, mixup))
    assert table["architecture"].tolist() == ["a", "b", "all"]
    pooled = row_of(table, "all")
    assert pooled["n_pairs"] == 5 and pooled["ci_method"] == "paired t"
    # Seed 0 of "a" is paired with seed 0 of "a", never with seed 0 of "b".
    assert pooled["diff_val_acc"] == pytest.approx((0.02 * 2 + 0.01 * 3) / 5)
    assert pooled["val_acc_plain"] == pytest.approx(np.mean([0.90, 0.91, 0.80, 0.81, 0.82]))


def test_columns_aliases_and_dtypes_are_stable():
    table = paired_comparison(make_trials({"a": [0.9, 0.91]}, {"a": [0.92, 0.95]}))
    for metric in ("val_acc", "val_mixed_acc"):
        for column in (f"{metric}_plain", f"{metric}_mixup", f"diff_{metric}", f"ci_low_{metric}",
                       f"ci_high_{metric}", f"p_value_{metric}"):
            assert table[column].dtype == np.float64, column
    assert table["n_pairs"].dtype == np.int64 and table["n_dropped"].dtype == np.int64
    assert pd.api.types.is_string_dtype(table["architecture"]) and pd.api.types.is_string_dtype(table["ci_method"])
    pd.testing.assert_series_equal(table["ci_low"], table["ci_low_val_acc"], check_names=False)
    pd.testing.assert_series_equal(table["p_value"], table["p_value_val_acc"], check_names=False)
    assert table["val_ece_plain"].tolist() == pytest.approx([0.05, 0.05])
    assert table["val_ece_mixup"].tolist() == pytest.approx([0.02, 0.02])


def test_missing_ece_column_gives_nan_and_a_parquet_round_trip_keeps_dtypes(tmp_path):
    trials = make_trials({"a": [0.9, 0.91]}, {"a": [0.92, 0.95]}).drop(columns=["best_val_ece"])
    table = paired_comparison(trials)
    assert table["val_ece_plain"].isna().all()
    table.to_parquet(tmp_path / "comparison.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "comparison.parquet"), table)


def test_no_finished_trials_gives_empty_pooled_row():
    trials = make_trials({"a": [0.9]}, {"a": [0.92]})
    trials["status"] = "RUNNING"
    table = paired_comparison(trials)
    assert table["n_pairs"].tolist() == [0, 0] and table["n_dropped"].tolist() == [1, 1]
    assert table["diff_val_acc"].isna().all()
    assert "--seeds 3" in format_comparison(table)


def test_duplicate_trials_for_one_pair_arm_are_an_error():
    trials = make_trials({"a": [0.9]}, {"a": [0.92]})
    with pytest.raises(ValueError, match="share"):
        paired_comparison(pd.concat([trials, trials.iloc[[0]]]))


def test_results_are_reproducible_for_a_seed():
    rng = np.random.default_rng(3)
    plain = list(rng.uniform(0.9, 0.95, size=15))
    mixup = list(np.add(plain, rng.normal(0.01, 0.01, size=15)))
    trials = make_trials({"a": plain}, {"a": mixup})
    pd.testing.assert_frame_equal(paired_comparison(trials, seed=7), paired_comparison(trials, seed=7))
