"""Questions for random spaces: how the MixUp difference depends on each key, which keys matter.

In a random or TPE search every configuration is its own draw, so the comparison's
per-configuration rows hold one configuration each. These two tables pool the pairs along one
searched key at a time. Both are exploratory: chosen after seeing the search, no multiplicity
adjustment.

- ``dependence``: mixup − plain in ``val_acc`` at each pair's compared epoch (the pairs and epochs
  of `tune_mnist.comparison.pair_values`), by key: a numeric range (uniform, loguniform, randint)
  in quantile bins (thirds with 9 pairs or more; quantile bins are the same on a log scale), a
  choice or grid key per value. Per row a 95% t interval over the configurations in it (each
  configuration's seeds averaged first; configurations that share a seed also share its batch
  order, which this interval ignores).
- ``importance``: which keys matter for ``val_acc``, the arms as units and ``mixup`` (and the seed,
  as a yardstick for noise) among the keys: Optuna's PED-ANOVA
  (`optuna.importance.PedAnovaImportanceEvaluator`), how much a key's distribution among the
  best arms differs from its distribution among all of them. Not fANOVA, and no random-forest
  importance: Optuna computes both with scikit-learn, which this project does not need otherwise.

>>> import pandas as pd
>>> from tune_mnist.space import parse_space
>>> space = parse_space({"dropout": {"uniform": [0.0, 0.5]}})
>>> trials = pd.DataFrame({
...     "trial_id": [f"t{i}-{arm}" for i in range(4) for arm in ("plain", "mixup")],
...     "pair_id": [f"t{i}" for i in range(4) for _ in range(2)], "arm": ["plain", "mixup"] * 4,
...     "status": "TERMINATED", "architecture": [f"a{i}" for i in range(4) for _ in range(2)],
...     "config/seed": 0, "config/dropout": [d for d in (0.1, 0.2, 0.3, 0.4) for _ in range(2)]})
>>> epochs = pd.DataFrame({"trial_id": trials["trial_id"], "epoch": 2,
...                        "val_acc": [0.90, 0.91, 0.90, 0.92, 0.90, 0.93, 0.90, 0.94]})
>>> dependence(trials, epochs, space)[["key", "level", "n_pairs", "diff"]].round(3)
       key    level  n_pairs   diff
0  dropout  0.1–0.2        2  0.015
1  dropout  0.3–0.4        2  0.035
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tune_mnist.comparison import pair_values
from tune_mnist.space import ARMS, Space

__all__ = ["analyse", "dependence", "format_dependence", "importance"]

RANGES = ("uniform", "loguniform", "randint")
MAX_BINS = 3
# An integer range with this few values drawn (num_conv 1-4) is shown per value, not in bins.
MAX_INTEGER_VALUES = 6
# PED-ANOVA compares the best arms with all of them; Optuna advises 5 or more among the best.
MIN_TOP_ARMS = 5
DEPENDENCE_COLUMNS: dict[str, Any] = {
    "key": str, "kind": str, "scale": str, "bin": np.int64, "level": str,
    "low": np.float64, "high": np.float64,
    "n_pairs": np.int64, "n_configurations": np.int64, "n_seeds": np.int64,
    "plain": np.float64, "mixup": np.float64, "diff": np.float64,
    "ci_low": np.float64, "ci_high": np.float64, "ci_note": str, "role": str,
}  # fmt: skip
IMPORTANCE_COLUMNS: dict[str, Any] = {
    "key": str, "importance": np.float64, "rank": np.int64, "n_arms": np.int64,
    "top_quantile": np.float64, "method": str,
}  # fmt: skip
IMPORTANCE_METHOD = "PED-ANOVA (optuna.importance), arms as units, val_acc at the compared epoch"


def analyse(
    trials: pd.DataFrame, epochs: pd.DataFrame, space: Space | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables for a space with random keys; empty tables (same columns) for any other."""
    if space is None or not space.randoms:
        return _empty(DEPENDENCE_COLUMNS), _empty(IMPORTANCE_COLUMNS)
    return dependence(trials, epochs, space), importance(trials, epochs, space)


def searched_keys(space: Space) -> list[str]:
    """The keys a search varies, but the seed: random keys, then grid keys."""
    return [k for k in [*space.randoms, *space.grids] if k != "seed"]


def dependence(
    trials: pd.DataFrame, epochs: pd.DataFrame, space: Space, *, confidence: float = 0.95
) -> pd.DataFrame:
    """MixUp − plain per bin (numeric ranges) or value (choices, grids) of each searched key."""
    pairs = _pairs_with_config(trials, epochs, space)
    rows = []
    for key in searched_keys(space):
        values = pairs[key]
        if values.nunique() < 2:
            continue
        dist = space.randoms[key][0] if key in space.randoms else "grid"
        most = MAX_INTEGER_VALUES if dist == "randint" else MAX_BINS
        binned = dist in RANGES and values.nunique() > most
        groups = _bins(values, pairs["configuration"]) if binned else _levels(values)
        scale = {"loguniform": "log", "uniform": "linear", "randint": "linear"}.get(dist, "")
        for number, (level, low, high, members) in enumerate(groups):
            row = {"key": key, "kind": "bin" if binned else "value", "scale": scale}
            row |= {"bin": number, "level": level, "low": low, "high": high, "role": "exploratory"}
            rows.append(row | _summary(pairs.loc[members], confidence))
    return pd.DataFrame(rows, columns=list(DEPENDENCE_COLUMNS)).astype(DEPENDENCE_COLUMNS)


def _pairs_with_config(trials: pd.DataFrame, epochs: pd.DataFrame, space: Space) -> pd.DataFrame:
    """The compared pairs with their searched keys and a configuration number (seeds excluded)."""
    keys = searched_keys(space)
    config = trials[trials["arm"] == "plain"].set_index("pair_id")
    config = config[[f"config/{k}" for k in keys]].rename(columns=lambda c: c.split("/", 1)[1])
    pairs = pair_values(trials, epochs).join(config)
    pairs["configuration"] = pairs.groupby(keys, dropna=False).ngroup() if keys else 0
    return pairs


def _bins(values: pd.Series, configuration: pd.Series) -> list[tuple[str, float, float, pd.Index]]:
    """Quantile bins of the configurations' values: thirds with 9 configurations or more, else
    halves (4 or more), else one bin. A configuration's seeds share its value, so its bin."""
    per_configuration = values.groupby(configuration).first()
    count = 3 if len(per_configuration) >= 9 else 2 if len(per_configuration) >= 4 else 1
    bins = pd.qcut(per_configuration, count, labels=False, duplicates="drop")
    groups = []
    for _, members in values.groupby(configuration.map(bins), sort=True):
        low, high = float(members.min()), float(members.max())
        groups.append((f"{low:.3g}–{high:.3g}", low, high, members.index))
    return groups


def _levels(values: pd.Series) -> list[tuple[str, float, float, pd.Index]]:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    groups = []
    for value, members in values.groupby(values, sort=True):
        number = float(value) if numeric else math.nan
        label = f"{value:.3g}" if isinstance(value, float) else str(value)
        groups.append((label, number, number, members.index))
    return groups


def _summary(pairs: pd.DataFrame, confidence: float) -> dict[str, Any]:
    """Means over configurations (seeds averaged first) and a t interval over them."""
    configurations = pairs.groupby("configuration")[["plain", "mixup", "diff"]].mean()
    values = configurations["diff"].to_numpy(dtype=np.float64)
    low = high = math.nan
    note = ""
    if len(values) < 2:
        note = "one configuration: no interval"
    elif np.ptp(values) == 0:
        note = "no spread between configurations: no interval"
    else:
        sem = values.std(ddof=1) / math.sqrt(len(values))
        low, high = stats.t.interval(confidence, len(values) - 1, loc=values.mean(), scale=sem)
    means = configurations.mean()
    return {
        "n_pairs": len(pairs),
        "n_configurations": len(values),
        "n_seeds": pairs["seed"].nunique(),
        "plain": means["plain"],
        "mixup": means["mixup"],
        "diff": values.mean(),
        "ci_low": low,
        "ci_high": high,
        "ci_note": note,
    }


def importance(trials: pd.DataFrame, epochs: pd.DataFrame, space: Space) -> pd.DataFrame:
    """PED-ANOVA importance of each searched key, ``mixup`` and the seed for ``val_acc``."""
    import optuna

    pairs = _pairs_with_config(trials, epochs, space)
    distributions = _distributions(space, pairs)
    if len(pairs) < 2 or not distributions:
        return _empty(IMPORTANCE_COLUMNS)
    arms = [
        ({**_params(row, distributions), "mixup": is_mixup}, row[arm])
        for _, row in pairs.iterrows()
        for arm, is_mixup in ARMS.items()
    ]
    distributions["mixup"] = optuna.distributions.CategoricalDistribution(list(ARMS.values()))
    quantile = min(0.5, max(0.1, MIN_TOP_ARMS / len(arms)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        for params, value in arms
    )
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
    with warnings.catch_warnings():
        # Optuna warns when too few trials tell keys apart (the importances are then equal).
        warnings.simplefilter("ignore")
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    table = pd.DataFrame({"key": list(found), "importance": list(found.values())})
    table["rank"] = np.arange(1, len(table) + 1)
    table["n_arms"], table["top_quantile"], table["method"] = len(arms), quantile, IMPORTANCE_METHOD
    return table[list(IMPORTANCE_COLUMNS)].astype(IMPORTANCE_COLUMNS)


def _distributions(space: Space, pairs: pd.DataFrame) -> dict[str, Any]:
    """The Optuna distribution of every key that varies among the pairs (the seed included)."""
    import optuna

    found = space.optuna_space()
    for key, values in space.grids.items():
        found[key] = optuna.distributions.CategoricalDistribution(values)
    return {key: d for key, d in found.items() if pairs[key].nunique() > 1}


def _params(row: pd.Series, distributions: dict[str, Any]) -> dict[str, Any]:
    """A pair's values as plain Python values (Optuna checks them against the distributions)."""
    return {key: _plain(row[key]) for key in distributions}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def format_dependence(dependence_table: pd.DataFrame, importance_table: pd.DataFrame) -> str:
    """Two short lines for the summary: the key with the widest spread, the important keys."""
    if dependence_table.empty and importance_table.empty:
        return ""
    lines = ["Exploratory, for the searched keys (dependence.parquet, importance.parquet):"]
    # Rows of one configuration have no interval; the widest spread among them says little.
    rows = dependence_table[dependence_table["n_configurations"] >= 2]
    compared = rows.groupby("key", sort=False).filter(lambda key_rows: len(key_rows) >= 2)
    if not compared.empty:
        key = compared.groupby("key", sort=False)["diff"].agg(np.ptp).idxmax()
        rows = compared[compared["key"] == key]
        ends = [rows.loc[rows["diff"].idxmin()], rows.loc[rows["diff"].idxmax()]]
        text = " to ".join(f"{_with_interval(row)} at {key} {row['level']}" for row in ends)
        lines.append(f"  MixUp − plain varies most with {key}: from {text}")
    elif not dependence_table.empty:
        lines.append("  MixUp − plain by key: too few configurations per bin to compare bins")
    if not importance_table.empty:
        top = ", ".join(
            f"{row.key} {row.importance:.2f}" for row in importance_table.head(4).itertuples()
        )
        lines.append(f"  keys that matter for val_acc (PED-ANOVA importance): {top}")
    return "\n".join(lines)


def _with_interval(row: pd.Series) -> str:
    if not math.isfinite(row["ci_low"]):
        return f"{row['diff']:+.4f}"
    return f"{row['diff']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


def _empty(columns: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns)).astype(columns)
