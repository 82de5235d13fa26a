"""The questions for random spaces, on synthetic pairs whose answers are known by construction."""

import numpy as np
import pandas as pd

from tune_mnist.dependence import (
    DEPENDENCE_COLUMNS,
    IMPORTANCE_COLUMNS,
    analyse,
    dependence,
    format_dependence,
    importance,
)
from tune_mnist.space import parse_space

SPACE = parse_space(
    {
        "dropout": {"uniform": [0.0, 0.5]},
        "learning_rate": {"loguniform": [1e-4, 1e-1]},
        "optimizer": {"choice": ["adam", "sgd"]},
        "seeds": 2,
    }
)


def synthetic_run(configurations: int = 30, seed: int = 0):
    """Trials and epochs of a random search: each configuration at seeds 0 and 1.

    By construction: MixUp − plain = 0.2 · dropout − 0.03 (zero effect of the other keys), and
    val_acc rises with log10(learning_rate) by 0.1 per decade, the same in both arms.
    """
    rng = np.random.default_rng(seed)
    trials, epochs = [], []
    for c in range(configurations):
        config = {
            "config/dropout": rng.uniform(0, 0.5),
            "config/learning_rate": 10 ** rng.uniform(-4, -1),
            "config/optimizer": ["adam", "sgd"][c % 2],
        }
        for s in (0, 1):
            pair = f"c{c}s{s}"
            plain = 0.9 + 0.1 * np.log10(config["config/learning_rate"]) + rng.normal(0, 0.002)
            diff = 0.2 * config["config/dropout"] - 0.03 + rng.normal(0, 0.002)
            for arm, acc in (("plain", plain), ("mixup", plain + diff)):
                trials.append(
                    {
                        "trial_id": f"{pair}-{arm}", "pair_id": pair, "arm": arm,
                        "status": "TERMINATED", "architecture": f"c{c}", "config/seed": s,
                        **config,
                    }
                )  # fmt: skip
                epochs.append({"trial_id": f"{pair}-{arm}", "epoch": 3, "val_acc": acc})
    return pd.DataFrame(trials), pd.DataFrame(epochs)


def test_a_difference_that_depends_on_one_key_shows_in_that_keys_bins():
    trials, epochs = synthetic_run()
    table = dependence(trials, epochs, SPACE).set_index(["key", "bin"])
    dropout = table.loc["dropout"]
    assert list(dropout["kind"]) == ["bin"] * 3 and dropout["n_configurations"].sum() == 30
    assert dropout["diff"].is_monotonic_increasing
    # Lowest third clearly below the highest: their intervals do not even touch.
    assert dropout["ci_high"].iloc[0] < dropout["ci_low"].iloc[2]
    assert (dropout["low"].iloc[1:].to_numpy() > dropout["high"].iloc[:-1].to_numpy()).all()
    # The keys without an effect: every bin's interval holds the overall mean difference.
    overall = table["diff"].loc["dropout"].mean()
    for key in ("learning_rate", "optimizer"):
        rows = table.loc[key]
        assert ((rows["ci_low"] < overall) & (overall < rows["ci_high"])).all(), rows
    assert list(table.loc["optimizer", "level"]) == ["adam", "sgd"]
    assert table.loc["learning_rate", "scale"].eq("log").all()
    assert set(table["role"]) == {"exploratory"} and (table["n_seeds"] == 2).all()


def test_importance_ranks_the_key_that_drives_val_acc_first():
    trials, epochs = synthetic_run()
    table = importance(trials, epochs, SPACE)
    assert table["key"].iloc[0] == "learning_rate", table
    assert set(table["key"]) == {"learning_rate", "dropout", "optimizer", "mixup", "seed"}
    assert list(table["rank"]) == [1, 2, 3, 4, 5] and table["n_arms"].eq(120).all()
    assert np.isclose(table["importance"].sum(), 1.0)


def test_a_space_without_random_keys_gets_empty_tables_with_their_columns():
    trials, epochs = synthetic_run(configurations=2)
    grid_only = parse_space({"num_conv": {"grid": [1, 2]}})
    for table, columns in zip(
        analyse(trials, epochs, grid_only), (DEPENDENCE_COLUMNS, IMPORTANCE_COLUMNS), strict=True
    ):
        assert table.empty and list(table.columns) == list(columns)
    assert format_dependence(*analyse(trials, epochs, None)) == ""


def test_the_summary_names_the_key_the_difference_varies_most_with():
    trials, epochs = synthetic_run()
    text = format_dependence(*analyse(trials, epochs, SPACE))
    assert "MixUp − plain varies most with dropout" in text
    assert "keys that matter for val_acc (PED-ANOVA importance): learning_rate" in text
    # Two configurations: every bin holds one, without an interval; no spread is claimed.
    few = format_dependence(*analyse(*synthetic_run(configurations=2), SPACE))
    assert "too few configurations per bin to compare bins" in few and "varies most" not in few
