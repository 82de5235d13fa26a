"""Does MixUp help? Paired comparison of MixUp and plain trials, with confidence intervals.

Every configuration is trained twice, with and without MixUp, under the same seed. The two
trials of an (architecture, seed) pair differ only in MixUp, so the test is on the paired
differences ``mixup - plain`` of each trial's metrics at its best validation epoch.

>>> import pandas as pd
>>> trials = pd.DataFrame({
...     "trial_id": ["a", "b"], "status": ["TERMINATED", "TERMINATED"],
...     "architecture": ["num_conv=2", "num_conv=2"], "config/mixup": [False, True],
...     "config/seed": [0, 0], "epochs_run": [5, 5],
...     "best_val_acc": [0.97, 0.98], "best_val_mixed_acc": [0.80, 0.85]})
>>> print(format_comparison(paired_comparison(trials, metrics=["val_acc"])))
val_acc:
architecture  n   plain   mixup  mixup - plain [interval]  p
num_conv=2    1  0.9700  0.9800                   +0.0100  -
all           1  0.9700  0.9800                   +0.0100  -
<BLANKLINE>
No confidence intervals: an interval needs at least 2 seeds per architecture. Run with --seeds 3 or more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["paired_comparison", "format_comparison"]

POOLED = "all"
MIN_PAIRS_FOR_INTERVAL = 2
MIN_PAIRS_FOR_BOOTSTRAP = 10
_PAIR_KEY = ["architecture", "config/seed"]


def _pairs(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Finished MixUp/plain pairs that ran the same number of epochs, and dropped pairs per architecture.

    Returns one row per compared pair (columns suffixed ``_plain`` / ``_mixup``) and, per
    architecture, how many (architecture, seed) pairs of the search were not compared: an arm
    did not finish (error, divergence, still running) or, under ASHA, the two arms were stopped
    at different epochs, which would compare a longer-trained model against a shorter one.
    """
    duplicated = trials.duplicated(_PAIR_KEY + ["config/mixup"], keep=False)
    if duplicated.any():
        keys = trials.loc[duplicated, _PAIR_KEY + ["config/mixup"]].drop_duplicates()
        raise ValueError(f"several trials share (architecture, config/seed, config/mixup):\n{keys}")
    finished = trials[trials["status"] == "TERMINATED"]
    is_mixup = finished["config/mixup"].astype(bool)
    pairs = finished[~is_mixup].merge(finished[is_mixup], on=_PAIR_KEY, suffixes=("_plain", "_mixup"))
    pairs = pairs[pairs["epochs_run_plain"] == pairs["epochs_run_mixup"]]
    planned = trials.drop_duplicates(_PAIR_KEY).groupby("architecture").size()
    compared = pairs.groupby("architecture").size().reindex(planned.index, fill_value=0)
    return pairs, (planned - compared).astype(np.int64)


def _ci_method(n_pairs: int) -> str:
    """How the interval is made for this many pairs: the bootstrap needs enough pairs to resample."""
    if n_pairs >= MIN_PAIRS_FOR_BOOTSTRAP:
        return "bootstrap BCa"
    if n_pairs >= MIN_PAIRS_FOR_INTERVAL:
        return "paired t"
    return "none"


def _interval(
    differences: np.ndarray, *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """Confidence interval for the mean paired difference, by the method ``_ci_method`` names."""
    method = _ci_method(len(differences))
    if method == "none" or not np.isfinite(differences).all():
        return np.nan, np.nan
    if np.ptp(differences) == 0:
        # Every resample of a constant sample has the same mean, and its standard error is 0,
        # so both methods' limit is the point itself; BCa would divide by zero getting there.
        return float(differences[0]), float(differences[0])
    if method == "bootstrap BCa":
        result = stats.bootstrap(
            (differences,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
        return float(result.confidence_interval.low), float(result.confidence_interval.high)
    half_width = stats.t.ppf((1 + confidence) / 2, df=len(differences) - 1) * stats.sem(differences)
    mean = float(differences.mean())
    return mean - half_width, mean + half_width


def _p_value(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when the arms never differ (no evidence)."""
    if len(differences) < MIN_PAIRS_FOR_INTERVAL or not np.isfinite(differences).all():
        return np.nan
    if not differences.any():
        # scipy has no non-zero difference to rank; identical arms are the null hypothesis itself.
        return 1.0
    return float(stats.wilcoxon(differences).pvalue)


def _mean(values: np.ndarray) -> float:
    """Mean that is NaN, without a warning, for no values."""
    return float(np.mean(values)) if len(values) else np.nan


def _summary_row(
    architecture: str,
    pairs: pd.DataFrame,
    n_dropped: int,
    *,
    metrics: Sequence[str],
    confidence: float,
    n_resamples: int,
    seed: int,
) -> dict[str, object]:
    """One row of the comparison table for the given pairs."""
    row: dict[str, object] = {
        "architecture": architecture,
        "n_pairs": len(pairs),
        "n_dropped": n_dropped,
        "ci_method": _ci_method(len(pairs)),
    }
    for metric in metrics:
        plain = pairs[f"best_{metric}_plain"].to_numpy(dtype=np.float64)
        mixup = pairs[f"best_{metric}_mixup"].to_numpy(dtype=np.float64)
        differences = mixup - plain
        low, high = _interval(differences, confidence=confidence, n_resamples=n_resamples, seed=seed)
        row[f"{metric}_plain"] = _mean(plain)
        row[f"{metric}_mixup"] = _mean(mixup)
        row[f"diff_{metric}"] = _mean(differences)
        row[f"ci_low_{metric}"] = low
        row[f"ci_high_{metric}"] = high
        row[f"p_value_{metric}"] = _p_value(differences)
    for arm in ("plain", "mixup"):
        column = f"best_val_ece_{arm}"
        row[f"val_ece_{arm}"] = _mean(pairs[column].to_numpy(dtype=np.float64)) if column in pairs else np.nan
    return row


def paired_comparison(
    trials: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("val_acc", "val_mixed_acc"),
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """MixUp minus plain, per architecture and pooled, from the per-trial table.

    Pairs are the two finished (``TERMINATED``) trials of an (architecture, seed) that ran the
    same ``epochs_run``; ``best_<metric>`` (each trial's best validation epoch) is compared.
    One row per architecture, then a pooled row ``architecture="all"`` over every pair.

    Per metric ``m``: ``m_plain``, ``m_mixup`` (means), ``diff_m`` (mean of mixup - plain),
    ``ci_low_m``, ``ci_high_m`` and ``p_value_m`` (two-sided Wilcoxon signed-rank; 1.0 when every
    difference is 0; NaN below 2 pairs). ``ci_method`` says how the interval was made: a BCa
    bootstrap over pairs from 10 pairs, a paired t interval from 2, ``"none"`` (NaN interval)
    below 2. The first metric is the primary one, also given as ``ci_low``, ``ci_high``,
    ``p_value``. ``n_dropped`` counts pairs not compared (an arm unfinished, or different
    epochs under ASHA); ``val_ece_plain`` / ``val_ece_mixup`` are mean ``best_val_ece`` (NaN
    when not recorded).
    """
    if not metrics:
        raise ValueError("metrics must name at least one metric")
    missing = [f"best_{m}" for m in metrics if f"best_{m}" not in trials.columns]
    if missing:
        raise KeyError(f"trials has no column {', '.join(missing)}")
    pairs, dropped = _pairs(trials)
    options = dict(metrics=metrics, confidence=confidence, n_resamples=n_resamples, seed=seed)
    rows = [
        _summary_row(str(architecture), pairs[pairs["architecture"] == architecture], int(n_dropped), **options)
        for architecture, n_dropped in dropped.items()
    ]
    rows.append(_summary_row(POOLED, pairs, int(dropped.sum()), **options))
    table = pd.DataFrame(rows)
    primary = metrics[0]
    for alias in ("ci_low", "ci_high", "p_value"):
        table[alias] = table[f"{alias}_{primary}"]
    table = _with_stable_dtypes(table)
    table.attrs["confidence"] = confidence
    return table


def _with_stable_dtypes(table: pd.DataFrame) -> pd.DataFrame:
    """int64 counts, str labels, float64 for everything else, whatever the rows held."""
    dtypes = {column: np.float64 for column in table.columns}
    dtypes.update({"n_pairs": np.int64, "n_dropped": np.int64, "architecture": str, "ci_method": str})
    return table.astype(dtypes)


def _signed(value: float) -> str:
    return "nan" if np.isnan(value) else f"{value:+.4f}"


def _format_metric(table: pd.DataFrame, metric: str) -> list[str]:
    """Lines of the text table for one metric."""
    header = ("architecture", "n", "plain", "mixup", "mixup - plain [interval]", "p")
    rows = [header]
    for _, row in table.iterrows():
        difference = _signed(row[f"diff_{metric}"])
        low, high = row[f"ci_low_{metric}"], row[f"ci_high_{metric}"]
        if np.isfinite(low) and np.isfinite(high):
            difference += f" [{_signed(low)}, {_signed(high)}]"
        p_value = row[f"p_value_{metric}"]
        rows.append(
            (
                row["architecture"],
                str(row["n_pairs"]),
                f"{row[f'{metric}_plain']:.4f}",
                f"{row[f'{metric}_mixup']:.4f}",
                difference,
                "-" if np.isnan(p_value) else f"{p_value:.3g}",
            )
        )
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(header))]
    # Left-align the label, right-align the numbers so decimal points line up.
    return [f"{metric}:"] + [
        "  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()
        for cells in rows
    ]


def format_comparison(table: pd.DataFrame) -> str:
    """The output of ``paired_comparison`` as a text table, one block per metric, for a terminal.

    Says when pairs were dropped, and when no row has an interval, that more seeds are needed.
    """
    metrics = [column.removeprefix("diff_") for column in table.columns if column.startswith("diff_")]
    lines: list[str] = []
    for metric in metrics:
        lines += _format_metric(table, metric) + [""]
    methods = sorted(set(table["ci_method"]) - {"none"})
    if methods:
        # The level travels in attrs (kept by Parquet), not as a column of identical values.
        level = f"{table.attrs['confidence']:.0%} " if "confidence" in table.attrs else ""
        lines.append(f"Intervals: {level}{', '.join(methods)} over paired seeds; p: Wilcoxon signed-rank.")
    else:
        lines.append(
            "No confidence intervals: an interval needs at least 2 seeds per architecture. "
            "Run with --seeds 3 or more."
        )
    pooled = table[table["architecture"] == POOLED]
    n_dropped = int(pooled["n_dropped"].iloc[0]) if len(pooled) else int(table["n_dropped"].sum())
    if n_dropped:
        lines.append(
            f"{n_dropped} pair(s) not compared: an arm did not finish, or ASHA stopped the two arms at different epochs."
        )
    return "\n".join(lines)


def compare(trials, epochs, val_predictions=None, **kwargs):  # temporary shim until the protocol lands
    return paired_comparison(trials)
