"""Does MixUp help? The paired comparison, by a protocol fixed before any number is seen.

One Ray Tune trial trains both arms of a pair, plain and MixUp, from the same initial weights on
the same batches. Each pair is compared at its *compared epoch*, the last epoch both arms ran.
Every pair is an independent replicate (its seed comes from the run's seed, its configuration and
its replicate number), so the pair is the statistical unit. The primary result is MixUp − plain
in ``val_acc`` there: for a grid, the mean over the grid's cells of each cell's mean over its
replicates; for configurations drawn at random, the mean over pairs. Its interval carries the
replicates' noise and the shared validation images' noise once each (`tune_mnist.estimates`), and
its p-value comes from the same t statistic. Per-architecture rows are exploratory (Holm); failed
arms are counted, and scored at chance in a sensitivity row. Runs made before pairs were
independent (one seed shared by every cell) are analysed with each seed as one cluster.

>>> import pandas as pd
>>> trials = pd.DataFrame({
...     "trial_id": ["t0-plain", "t0-mixup", "t1-plain", "t1-mixup"],
...     "pair_id": ["t0", "t0", "t1", "t1"], "arm": ["plain", "mixup"] * 2,
...     "status": "TERMINATED", "architecture": "base", "config/seed": [0, 0, 1, 1]})
>>> epochs = pd.DataFrame({"trial_id": trials["trial_id"], "epoch": 5,
...                        "val_acc": [0.90, 0.92, 0.91, 0.92]})
>>> row = compare(trials, epochs).iloc[0]  # the primary row: val_acc, pooled
>>> print(row["n_pairs"], row["plain"], row["mixup"], row["diff"], row["df"])
2 0.905 0.92 0.015 1.0
>>> print(round(row["p_value"], 3))  # t with 1 df: the statistic of the interval
0.205
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tune_mnist import estimates
from tune_mnist.metrics import CHANCE_ACCURACY
from tune_mnist.space import ARMS, POOLED

__all__ = [
    "DESIGNS",
    "compare",
    "format_comparison",
    "holm",
    "pair_values",
    "paired_estimate",
    "with_sequence",
]

METRICS = ("val_acc", "val_mixed_acc", "val_ece")
PRIMARY_METRIC = "val_acc"
SENSITIVITY = f"{POOLED} (failed arms at chance)"
FAILED = ("ERROR", "DIVERGED")
UNFINISHED = ("PENDING", "RUNNING", "PAUSED")
# A pair whose files cannot be read (tune_mnist.results): never compared, whatever it reported.
UNREADABLE = "UNREADABLE"
STATUSES = ("TERMINATED", *FAILED, *UNFINISHED, UNREADABLE)
# Differences are rounded to 1e-9, far below an accuracy step (1 / n_val), so that float noise
# cannot make equal differences unequal (no spread where every pair moved the same).
DECIMALS = 9
# How the pairs are pooled: "grid" stratifies by the grid's cells (the architecture label),
# "random" takes the plain mean over pairs whose configurations were drawn at random, "clusters"
# is for runs whose cells shared each seed (made before pairs were independent replicates).
DESIGNS = ("grid", "random", "clusters")
TWO_LEVEL = "t (replicates and validation images, Welch-Satterthwaite df)"
REPLICATES_ONLY = "t over replicates"
CLUSTERS = "seed clusters (cells shared each seed in this run): t"
SEQUENCE = "anytime-valid confidence sequence over rounds (replicates 0.04, images 0.01 of alpha)"

COLUMNS: dict[str, type] = {
    "metric": str, "role": str, "architecture": str,
    "n_pairs": np.int64, "n_seeds": np.int64, "n_strata": np.int64,
    "plain": np.float64, "mixup": np.float64, "diff": np.float64,
    "ci_low": np.float64, "ci_high": np.float64, "df": np.float64, "ci_method": str,
    "replicate_ci_low": np.float64, "replicate_ci_high": np.float64, "ci_note": str,
    "p_value": np.float64, "p_holm": np.float64, "arm_correlation": np.float64,
    "n_error_plain": np.int64, "n_error_mixup": np.int64,
    "n_diverged_plain": np.int64, "n_diverged_mixup": np.int64, "n_unfinished": np.int64,
    "best_plain": np.float64, "best_mixup": np.float64, "best_diff": np.float64,
}  # fmt: skip


def compare(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    val_predictions: pd.DataFrame | None = None,
    *,
    design: str = "grid",
    confidence: float = 0.95,
    estimand: str = "",
    top_epoch: int | None = None,
) -> pd.DataFrame:
    """MixUp minus plain at each pair's compared epoch: one row per (metric, row), long format.

    ``trials`` has one row per arm (``trial_id``, ``pair_id``, ``arm``, ``status``,
    ``architecture``, ``config/seed``, optional ``best_<metric>``); ``epochs`` one row per arm
    per epoch (``trial_id``, ``epoch``, ``val_acc``, ...); ``val_predictions`` (optional) the
    predicted and true class of every validation image per arm and epoch, which the image part
    of the ``val_acc`` intervals needs. ``design`` is one of `DESIGNS`; ``estimand`` (shown in
    the text) says what the primary result estimates under the run's scheduler and searcher.
    Rows: the primary row (``val_acc``, pooled), the pooled rows of the other metrics, the
    sensitivity row, with ``top_epoch`` (ASHA's top rung) the primary over the pairs compared
    there (role ``top rung``), then the exploratory per-architecture rows, metric by metric
    (none for random configurations: their exploratory table is per key, `tune_mnist.dependence`).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    _check_input(trials, epochs)
    pairs = _pairs(trials, epochs)
    pairs["stratum"] = POOLED if design == "random" else pairs["architecture"]
    deltas, no_images = _image_deltas(pairs, val_predictions)
    options = dict(deltas=deltas, no_images=no_images, confidence=confidence, design=design)
    roles = {metric: "pooled" for metric in METRICS} | {PRIMARY_METRIC: "primary"}
    rows = [
        _row(metric, roles[metric], POOLED, pairs, _sample(pairs, metric), **options)
        for metric in METRICS
    ]
    sensitivity = _sensitivity_sample(pairs)
    rows.append(_row(PRIMARY_METRIC, "sensitivity", SENSITIVITY, pairs, sensitivity, **options))
    if top_epoch is not None:
        top = pairs[pairs["compared_epoch"] == top_epoch]
        label = f"{POOLED} (pairs compared at epoch {top_epoch})"
        rows.append(
            _row(PRIMARY_METRIC, "top rung", label, top, _sample(top, PRIMARY_METRIC), **options)
        )
    for metric in METRICS if design != "random" else ():
        exploratory = [
            _row(metric, "exploratory", label, group, _sample(group, metric), **options)
            for label, group in pairs.groupby("architecture", sort=True)
        ]
        for row, adjusted in zip(
            exploratory, holm([r["p_value"] for r in exploratory]), strict=True
        ):
            row["p_holm"] = adjusted
        rows += exploratory
    table = pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMNS)
    table.attrs.update(confidence=confidence, design=design, estimand=estimand)
    return table


def with_sequence(table: pd.DataFrame, state: dict[str, object]) -> pd.DataFrame:
    """The table of an until-decided run: the primary row's interval and p-value are the
    confidence sequence's (``until_decided/sequential.json``, `tune_mnist.rounds`); the fixed-n
    primary numbers follow as a "descriptive" row, valid only had the number of rounds been
    fixed."""
    from tune_mnist.sequential import Decision

    primary = table.index[table["role"] == "primary"][0]
    descriptive = table.loc[[primary]].assign(role="descriptive")
    fields = {name: state[name] for name in Decision.__dataclass_fields__}
    decision = Decision(**fields)  # type: ignore[arg-type]
    sequence = {
        "ci_low": decision.low,
        "ci_high": decision.high,
        "df": np.nan,
        "p_value": state["p_value"],
        "p_holm": state["p_value"],
        "ci_method": SEQUENCE,
        "ci_note": "until decided: " + decision.describe(),
    }
    for column, value in sequence.items():
        table.loc[primary, column] = value
    head, tail = table.loc[:primary], table.loc[primary + 1 :]
    combined = pd.concat([head, descriptive, tail], ignore_index=True).astype(COLUMNS)
    combined.attrs = {**table.attrs, "decision": decision.describe()}
    return combined


def paired_estimate(
    deltas: np.ndarray, strata: Sequence[object] | np.ndarray, *, confidence: float = 0.95
) -> dict[str, float]:
    """MixUp − plain from per-image differences (pairs, images) of one image set (the test set's
    confirmation): the estimate of the primary row, as a dict (``diff``, ``ci_low``, ``ci_high``,
    ``df``, ``p_value``, ``se``, ``n_pairs``, ``n_strata``, ``note``)."""
    deltas = np.asarray(deltas, dtype=np.float64)
    estimate = estimates.paired_estimate(deltas.mean(axis=1), strata, deltas, confidence=confidence)
    keys = ("diff", "ci_low", "ci_high", "df", "p_value", "se", "n_pairs", "n_strata", "note")
    return {key: getattr(estimate, key) for key in keys}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order; NaN stays NaN and is not counted.

    Hand-written because scipy has no Holm (its `false_discovery_control` is Benjamini-Hochberg,
    which controls another error rate) and statsmodels is not worth a dependency for 6 lines.

    >>> holm([0.01, 0.04, 0.03, float("nan")]).round(4).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = (len(order) - np.arange(len(order))) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


# ---- input and pairs -----------------------------------------------------------------------------


def pair_values(
    trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = PRIMARY_METRIC
) -> pd.DataFrame:
    """The pairs ``compare`` compares, one row each (index ``pair_id``): ``seed``, each arm's
    ``metric`` at the compared epoch (``plain``, ``mixup``) and ``diff`` = mixup − plain.

    For analyses beyond the protocol's rows (`tune_mnist.dependence`): the same pairs, the same
    epochs, the same exclusions.
    """
    _check_input(trials, epochs)
    sample = _sample(_pairs(trials, epochs), metric)[["seed", "plain", "mixup"]]
    return sample.assign(diff=sample["mixup"] - sample["plain"])


def _check_input(trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Columns, arm names, statuses and the two-arm structure of every pair, checked up front."""
    required = {
        "trials": (trials, ["trial_id", "pair_id", "arm", "status", "architecture", "config/seed"]),
        "epochs": (epochs, ["trial_id", "epoch", PRIMARY_METRIC]),
    }
    for name, (table, columns) in required.items():
        missing = [column for column in columns if column not in table.columns]
        if missing:
            raise ValueError(f"{name} has no column {', '.join(missing)}")
    if trials["trial_id"].duplicated().any():
        duplicates = sorted(trials.loc[trials["trial_id"].duplicated(), "trial_id"].unique())
        raise ValueError(f"trial_id must be unique per arm, repeated: {duplicates[:5]}")
    for column, allowed in (("arm", tuple(ARMS)), ("status", STATUSES)):
        unknown = sorted(set(trials[column]) - set(allowed))
        if unknown:
            raise ValueError(f"{column} must be one of {allowed}, got {unknown}")
    if "config/mixup" in trials and (trials["config/mixup"] != trials["arm"].map(ARMS)).any():
        raise ValueError("config/mixup disagrees with arm: a 'mixup' arm has config/mixup True")
    for pair_id, arms in trials.groupby("pair_id")["arm"]:
        if sorted(arms) != sorted(ARMS):
            raise ValueError(
                f"pair_id {pair_id!r} has arms {sorted(arms)}: a pair is one 'plain' and one "
                "'mixup' arm"
            )
    if (trials.groupby("pair_id")[["architecture", "config/seed"]].nunique() > 1).any(axis=None):
        raise ValueError("the two arms of a pair must share architecture and config/seed")


def _pairs(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per pair (index ``pair_id``): arms, statuses, compared epoch and metrics there.

    ``used`` marks the pairs the comparison rows use: both arms can be compared at some epoch,
    and neither arm failed with an ERROR or is unfinished (a DIVERGED arm counts up to its last
    epoch before diverging).
    """
    epochs = epochs.drop_duplicates(["trial_id", "epoch"], keep="last").astype({"epoch": np.int64})
    usable = _usable_epochs(epochs, trials.set_index("trial_id")["status"])
    indexed = epochs.set_index(["trial_id", "epoch"])
    arms = {arm: trials[trials["arm"] == arm].set_index("pair_id") for arm in ARMS}
    pairs = arms["plain"][["architecture", "config/seed"]].rename(columns={"config/seed": "seed"})
    pairs["architecture"] = pairs["architecture"].astype(str)
    pairs["stratum"] = pairs["architecture"]
    for arm, table in arms.items():
        pairs[f"trial_{arm}"] = table["trial_id"]
        pairs[f"status_{arm}"] = table["status"]
        last = table["trial_id"].map(usable.groupby("trial_id")["epoch"].max())
        pairs[f"last_epoch_{arm}"] = last.fillna(0).astype(np.int64)
        last_epoch = pairs[f"last_epoch_{arm}"]
        pairs[f"last_val_acc_{arm}"] = _at(indexed, pairs[f"trial_{arm}"], last_epoch)
        for metric in METRICS:
            best = table[f"best_{metric}"] if f"best_{metric}" in table else np.nan
            pairs[f"best_{metric}_{arm}"] = pd.Series(best, index=table.index, dtype=np.float64)
    pairs["compared_epoch"] = _compared_epochs(pairs, usable)
    for arm in ARMS:
        for metric in METRICS:
            epoch = pairs["compared_epoch"]
            pairs[f"{metric}_{arm}"] = _at(indexed, pairs[f"trial_{arm}"], epoch, metric)
    excluded = ("ERROR", UNREADABLE, *UNFINISHED)
    finished = ~pairs["status_plain"].isin(excluded) & ~pairs["status_mixup"].isin(excluded)
    pairs["used"] = finished & (pairs["compared_epoch"] > 0)
    return pairs


def _usable_epochs(epochs: pd.DataFrame, status: pd.Series) -> pd.DataFrame:
    """Epochs an arm can be compared at: finite val_acc and, if DIVERGED, before it diverged.

    A DIVERGED arm diverged at its first epoch with a non-finite loss, else at its last epoch: the
    trainable reports the epoch it diverged at, scored with NaN weights (garbage, if finite).
    """
    losses = [column for column in ("train_loss", "val_loss") if column in epochs]
    diverged = epochs[epochs["trial_id"].map(status).eq("DIVERGED")]
    broken = ~np.isfinite(diverged[losses].to_numpy(dtype=np.float64)).all(axis=1)
    first_broken = diverged[broken].groupby("trial_id")["epoch"].min()
    diverged_at = first_broken.combine_first(diverged.groupby("trial_id")["epoch"].max())
    # float64: on no epochs at all (every arm failed at once) map keeps the ids' string dtype.
    before = epochs["epoch"] < epochs["trial_id"].map(diverged_at).astype("float64").fillna(np.inf)
    return epochs[np.isfinite(epochs[PRIMARY_METRIC].to_numpy(dtype=np.float64)) & before]


def _compared_epochs(pairs: pd.DataFrame, usable: pd.DataFrame) -> pd.Series:
    """The last epoch both arms of each pair can be compared at; 0 when there is none."""
    by_arm = [
        usable.merge(pairs[f"trial_{arm}"].rename("trial_id").reset_index(), on="trial_id")
        for arm in ARMS
    ]
    common = by_arm[0][["pair_id", "epoch"]].merge(by_arm[1][["pair_id", "epoch"]])
    compared = common.groupby("pair_id")["epoch"].max()
    return compared.reindex(pairs.index, fill_value=0).astype(np.int64)


def _at(
    indexed: pd.DataFrame, trial_ids: pd.Series, epoch: pd.Series, metric: str = PRIMARY_METRIC
) -> np.ndarray:
    """``metric`` of each arm at the given epoch (NaN for epoch 0, or a metric not recorded)."""
    if metric not in indexed:
        return np.full(len(trial_ids), np.nan)
    where = pd.MultiIndex.from_arrays([trial_ids.to_numpy(), epoch.to_numpy()])
    return indexed[metric].reindex(where).to_numpy(dtype=np.float64)


def _image_deltas(
    pairs: pd.DataFrame, val_predictions: pd.DataFrame | None
) -> tuple[pd.DataFrame | None, str]:
    """δ[pair, image] = correct_mixup − correct_plain at the compared epoch, for used pairs.

    Pairs whose predictions miss an image (or are absent) are left out, and a row that needs
    them falls back to the replicate-only interval. The second value says why there is no table.
    """
    if val_predictions is None:
        return None, "no val_predictions"
    used = pairs[pairs["used"]]
    correct = {}
    for arm in ARMS:
        keys = used[[f"trial_{arm}", "compared_epoch"]].reset_index()
        keys.columns = ["pair_id", "trial_id", "epoch"]
        rows = val_predictions.merge(keys, on=["trial_id", "epoch"])
        rows["correct"] = (rows["predicted"] == rows["true"]).astype(np.float64)
        correct[arm] = rows.pivot(index="pair_id", columns="image", values="correct")
    return correct["mixup"].sub(correct["plain"]).dropna(), "val_predictions miss compared pairs"


# ---- rows ----------------------------------------------------------------------------------------


def _sample(pairs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The used pairs with a finite ``metric`` in both arms, as one row per pair."""
    used = pairs[pairs["used"]]
    sample = pd.DataFrame(
        {
            "seed": used["seed"],
            "stratum": used["stratum"],
            "plain": used[f"{metric}_plain"],
            "mixup": used[f"{metric}_mixup"],
            "best_plain": used[f"best_{metric}_plain"],
            "best_mixup": used[f"best_{metric}_mixup"],
        }
    )
    return sample[np.isfinite(sample["plain"]) & np.isfinite(sample["mixup"])]


def _sensitivity_sample(pairs: pd.DataFrame) -> pd.DataFrame:
    """val_acc pairs with each failed arm (ERROR, DIVERGED) scored at chance against a finished one.

    The finished arm counts at its own last epoch. Pairs where both arms failed have no finished
    arm to score and are left out, like unfinished pairs; the failure counts still show them.
    """
    failed = {arm: pairs[f"status_{arm}"].isin(FAILED) for arm in ARMS}
    parts = [_sample(pairs[~failed["plain"] & ~failed["mixup"]], PRIMARY_METRIC)]
    for arm, other in (("plain", "mixup"), ("mixup", "plain")):
        finished = pairs[f"status_{other}"].eq("TERMINATED") & (pairs[f"last_epoch_{other}"] > 0)
        scored = pairs[failed[arm] & finished]
        part = pd.DataFrame(index=scored.index)
        part["seed"] = scored["seed"]
        part["stratum"] = scored["stratum"]
        part[arm] = part[f"best_{arm}"] = CHANCE_ACCURACY
        part[other] = scored[f"last_val_acc_{other}"]
        part[f"best_{other}"] = scored[f"best_val_acc_{other}"]
        parts.append(part)
    sample = pd.concat(parts)[parts[0].columns]
    numbers = ["plain", "mixup", "best_plain", "best_mixup"]
    return sample.astype({c: np.float64 for c in numbers} | {"seed": np.int64})


def _row(
    metric: str,
    role: str,
    architecture: str,
    pairs: pd.DataFrame,
    sample: pd.DataFrame,
    *,
    deltas: pd.DataFrame | None,
    no_images: str,
    confidence: float,
    design: str,
) -> dict[str, object]:
    """One row of the table: ``sample`` holds the compared pairs, ``pairs`` the pairs to count."""
    images = None
    if metric != PRIMARY_METRIC:
        method = f"{REPLICATES_ONLY}: validation images are kept for val_acc only"
    elif role == "sensitivity":
        method = f"{REPLICATES_ONLY}: failed arms have no predictions"
    elif deltas is None or not sample.index.isin(deltas.index).all():
        method = f"{REPLICATES_ONLY}: {no_images}"
    else:
        method, images = TWO_LEVEL, deltas.loc[sample.index]
    if design == "clusters":
        method = f"{CLUSTERS} ({method})"
    row: dict[str, object] = {"metric": metric, "role": role, "architecture": architecture}
    row.update(_summary(sample, images, confidence=confidence, clusters=design == "clusters"))
    row.update(ci_method=method, p_holm=row["p_value"], **_failures(pairs))
    return row


def _summary(
    sample: pd.DataFrame, images: pd.DataFrame | None, *, confidence: float, clusters: bool
) -> dict[str, object]:
    """The numbers of a row. Units are pairs, or seed clusters (the mean of a seed's pairs) in a
    run whose cells shared each seed; arm means are unit means stratified the same way, so
    ``mixup - plain == diff``."""
    units = sample.assign(diff=sample["mixup"] - sample["plain"])
    if clusters:
        units = units.groupby("seed").mean(numeric_only=True).assign(stratum=POOLED)
        if images is not None:
            images = images.groupby(sample["seed"]).mean().loc[units.index]
    values = units["diff"].round(DECIMALS).to_numpy(dtype=np.float64)
    strata = units["stratum"].to_numpy(dtype=str)
    full = estimates.paired_estimate(values, strata, _rounded(images), confidence=confidence)
    replicate = full
    if images is not None:
        replicate = estimates.paired_estimate(values, strata, confidence=confidence)
    means = _stratified_means(units, strata if full.n_strata > 1 else None)
    return {
        "n_pairs": len(sample),
        "n_seeds": sample["seed"].nunique(),
        "n_strata": full.n_strata,
        "plain": means["plain"],
        "mixup": means["mixup"],
        "diff": round(full.diff, DECIMALS) if np.isfinite(full.diff) else np.nan,
        "ci_low": full.ci_low,
        "ci_high": full.ci_high,
        "df": full.df,
        "replicate_ci_low": replicate.ci_low,
        "replicate_ci_high": replicate.ci_high,
        "ci_note": full.note,
        "p_value": full.p_value,
        "arm_correlation": _correlation(units["plain"], units["mixup"]),
        "best_plain": means["best_plain"],
        "best_mixup": means["best_mixup"],
        "best_diff": means["best_mixup"] - means["best_plain"],
    }


def _rounded(images: pd.DataFrame | None) -> np.ndarray | None:
    return None if images is None else images.to_numpy(dtype=np.float64).round(DECIMALS)


def _stratified_means(units: pd.DataFrame, strata: np.ndarray | None) -> pd.Series:
    """Column means over units, as the estimate pools them: the mean of the strata's means."""
    columns = ["plain", "mixup", "best_plain", "best_mixup"]
    if not len(units):
        return pd.Series(np.nan, index=columns)
    if strata is None:
        return units[columns].mean()
    return units[columns].groupby(strata).mean().mean()


def _failures(pairs: pd.DataFrame) -> dict[str, int]:
    """Failed arms per arm, and pairs with an unfinished arm, among ``pairs``."""
    unfinished = pairs["status_plain"].isin(UNFINISHED) | pairs["status_mixup"].isin(UNFINISHED)
    counts = {"n_unfinished": int(unfinished.sum())}
    for arm in ARMS:
        counts[f"n_error_{arm}"] = int((pairs[f"status_{arm}"] == "ERROR").sum())
        counts[f"n_diverged_{arm}"] = int((pairs[f"status_{arm}"] == "DIVERGED").sum())
    return counts


def _correlation(plain: pd.Series, mixup: pd.Series) -> float:
    """Pearson correlation of the arms across pairs: how much of their variation pairing removes."""
    if len(plain) < 3 or np.ptp(plain) == 0 or np.ptp(mixup) == 0:
        return np.nan
    return float(np.corrcoef(plain, mixup)[0, 1])


# ---- text ----------------------------------------------------------------------------------------


def format_comparison(table: pd.DataFrame) -> str:
    """The table of ``compare`` as a short text for a terminal, the primary result first."""
    level = table.attrs.get("confidence", 0.95)
    primary = table[table["role"] == "primary"].iloc[0]
    lines = [_primary_line(primary, level)]
    if table.attrs.get("decision"):
        lines.append(f"  Until decided, {table.attrs['decision']}.")
        descriptive = table[table["role"] == "descriptive"]
        lines += ["  Fixed-n numbers (descriptive only: the number of rounds was not fixed):"]
        lines += _aligned(descriptive.assign(row="val_acc all"), "row", level)
    if table.attrs.get("estimand"):
        lines.append(f"  It estimates {table.attrs['estimand']}.")
    exploratory = table[(table["role"] == "exploratory") & (table["metric"] == PRIMARY_METRIC)]
    if len(exploratory):
        lines += ["", f"Exploratory, per architecture ({PRIMARY_METRIC}; p Holm-adjusted):"]
        lines += _aligned(exploratory, "architecture", level)
    elif table.attrs.get("design") == "random":
        lines += ["", "Exploratory, per key: the dependence table (dependence.parquet)."]
    secondary = table[table["role"].isin(["pooled", "sensitivity", "top rung"])]
    lines += [
        "",
        "Secondary, pooled (replicate-only intervals; sensitivity: failed arms at chance):",
    ]
    labelled = secondary.assign(row=secondary["metric"] + " " + secondary["architecture"])
    lines += _aligned(labelled, "row", level)
    lines += _failure_lines(primary)
    pooled = table[table["role"].isin(["primary", "pooled"])]
    best = [
        f"  {row.metric}: plain {_number(row.best_plain)}, mixup {_number(row.best_mixup)}, "
        f"mixup − plain {_signed(row.best_diff)}"
        for row in pooled.itertuples()
        if np.isfinite(row.best_diff)
    ]
    if best:
        title = (
            "Best epoch per arm (secondary; selected on the same validation images, optimistic):"
        )
        lines += ["", title, *best]
    lines += _note_lines(table)
    return "\n".join(lines)


def _primary_line(row: pd.Series, level: float) -> str:
    if row["ci_method"] == SEQUENCE:
        low, high = (f"{x:+.4f}" if np.isfinite(x) else f"{x:+}" for x in (row.ci_low, row.ci_high))
        interval = f"[{level:.0%} {low}, {high}] ({SEQUENCE})"
    elif np.isfinite(row["ci_low"]):
        sources = "replicates and validation images"
        if row["ci_method"] != TWO_LEVEL:
            sources = row["ci_method"]
        interval = (
            f"[{level:.0%} {_signed(row['ci_low'])}, {_signed(row['ci_high'])}] ({sources}; "
            f"t, {row['df']:.1f} df)"
        )
    else:
        interval = f"[no {level:.0%} interval: {row['ci_note']}]"
    cells = f", {row['n_strata']} cells" if row["n_strata"] > 1 else ""
    return (
        f"Primary result (fixed in advance): {row['metric']}, MixUp − plain at the compared epoch, "
        f"{row['n_pairs']} pairs{cells}: {_signed(row['diff'])} {interval}, "
        f"p = {_p(row['p_value'])}"
    )


def _aligned(rows: pd.DataFrame, label: str, level: float) -> list[str]:
    """An aligned text table: the label left (cut to 40 characters), the numbers right."""
    holm_column = int((rows["role"] == "exploratory").any())
    header = ["", "pairs", "df", "plain", "mixup", "mixup − plain", f"{level:.0%} interval", "p"]
    cells = [header + ["p Holm"] * holm_column]
    for row in rows.itertuples():
        interval = "-"
        if np.isfinite(row.ci_low):
            interval = f"[{_signed(row.ci_low)}, {_signed(row.ci_high)}]"
        numbers = [_number(row.plain), _number(row.mixup), _signed(row.diff), interval]
        degrees = f"{row.df:.1f}" if np.isfinite(row.df) else "-"
        name = _short_label(str(getattr(row, label)))
        line = [name, str(row.n_pairs), degrees, *numbers, _p(row.p_value)]
        cells.append(line + [_p(row.p_holm)] * holm_column)
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return ["  " + "  ".join(_justified(line, widths)) for line in cells]


def _short_label(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _justified(line: list[str], widths: list[int]) -> list[str]:
    """The label left, the numbers right, so that decimal points line up."""
    return [line[0].ljust(widths[0])] + [
        c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
    ]


def _failure_lines(primary: pd.Series) -> list[str]:
    counts = {arm: (primary[f"n_error_{arm}"], primary[f"n_diverged_{arm}"]) for arm in ARMS}
    if not any(sum(c) for c in counts.values()) and not primary["n_unfinished"]:
        return []
    arms = "; ".join(f"{arm} {e} ERROR, {d} DIVERGED" for arm, (e, d) in counts.items())
    return [
        "",
        f"Failed arms (counted, not removed): {arms}; {primary['n_unfinished']} pair(s) "
        "unfinished, not compared.",
        "  A DIVERGED arm is compared at its last epoch before diverging; the sensitivity row "
        f"scores failed arms at chance ({CHANCE_ACCURACY}).",
    ]


def _note_lines(table: pd.DataFrame) -> list[str]:
    """Each distinct interval note once, with the rows it applies to."""
    noted = table[table["ci_note"] != ""]
    lines = []
    for note, rows in noted.groupby("ci_note", sort=False):
        labels = [f"{row.metric} {row.architecture}" for row in rows.itertuples()]
        more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
        lines.append(f"  {note} ({', '.join(labels[:3])}{more})")
    return ["", "Interval notes:"] + lines if lines else []


def _number(value: float) -> str:
    return f"{value:.4f}" if np.isfinite(value) else "-"


def _signed(value: float) -> str:
    return f"{value:+.4f}" if np.isfinite(value) else "-"


def _p(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "-"
