"""Figures for a finished search.

Each ``plot_*`` function takes the DataFrames of a run and returns a matplotlib ``Figure``, so a
test or a notebook can look at what is drawn; ``save_figure`` writes one as PNG. Figures are made
with ``Figure()`` itself, not ``pyplot``: pyplot keeps every figure it made open until it is
closed, while these are freed as soon as nothing refers to them, and no GUI backend is ever
needed (figures are drawn on clusters and in CI, where there is no display).

The tables come in as arguments: this module imports nothing from ``results``, ``evaluation`` or
``comparison`` (they call it, not the other way round).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Collection, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tune_mnist.metrics import reliability_table
from tune_mnist.space import POOLED

__all__ = [
    "FIGURE_FILES",
    "FOREST_ROLES",
    "SEARCH_FIGURE_FILES",
    "plot_confusion",
    "plot_dependence",
    "plot_forest",
    "plot_importance",
    "plot_learning_curves",
    "plot_misclassified",
    "plot_pair_curves",
    "plot_parallel_coordinates",
    "plot_reliability",
    "run_figures",
    "save_figure",
    "write_figures",
]

ARM_COLORS = {False: "tab:blue", True: "tab:orange"}
ARM_LABELS = {False: "plain", True: "MixUp"}
# Rows of the comparison table the forest plot shows; "sensitivity" rows re-analyse the same
# pairs another way and would show each architecture twice.
FOREST_ROLES = ("primary", "exploratory", "pooled")

FIGURE_FILES = {
    "learning_curves": "learning_curves.png",
    "forest": "forest.png",
    "reliability": "reliability.png",
    "confusion": "confusion.png",
    "misclassified": "misclassified.png",
}
# A random or TPE search's figures, written after the others when it has their tables.
SEARCH_FIGURE_FILES = {"dependence": "dependence.png", "importance": "importance.png"}


def save_figure(figure: Figure, path: str | PathLike[str]) -> Path:
    """Write the figure as PNG, creating the folder; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return path


def _panel_grid(
    n_panels: int, *, max_columns: int = 3, size: float = 4.0
) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_panels`` axes in rows of at most ``max_columns``; spare axes are hidden."""
    columns = min(n_panels, max_columns)
    rows = math.ceil(n_panels / columns)
    figure = Figure(figsize=(size * columns, size * 0.8 * rows), layout="constrained")
    flat = list(figure.subplots(rows, columns, squeeze=False).flat)
    for spare in flat[n_panels:]:
        spare.set_visible(False)
    return figure, flat[:n_panels]


def plot_learning_curves(
    epochs_df: pd.DataFrame, trials_df: pd.DataFrame, *, metric: str = "val_acc"
) -> Figure:
    """``metric`` per epoch, one panel per architecture, plain and MixUp in two colours.

    The line is the mean over seeds and the band their min-max. Under ASHA fewer trials reach
    later epochs, so later points average fewer seeds.
    """
    arms = trials_df[["trial_id", "architecture", "config/mixup"]]
    curves = epochs_df[["trial_id", "epoch", metric]].merge(arms, on="trial_id")
    architectures = sorted(curves["architecture"].unique())
    if not architectures:
        raise ValueError("no epochs of any trial in trials_df to plot")
    figure, axes = _panel_grid(len(architectures))
    for ax, architecture in zip(axes, architectures, strict=True):
        for mixup, arm in curves[curves["architecture"] == architecture].groupby("config/mixup"):
            summary = arm.groupby("epoch")[metric].agg(["mean", "min", "max"])
            color = ARM_COLORS[bool(mixup)]
            label = ARM_LABELS[bool(mixup)]
            ax.plot(summary.index, summary["mean"], color=color, label=label, marker=".")
            ax.fill_between(
                summary.index, summary["min"], summary["max"], color=color, alpha=0.2, linewidth=0
            )
        ax.set_title(textwrap.fill(architecture, 50), fontsize=8)  # a random draw's label is long
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"{metric}: mean over seeds, band = min to max")
    return figure


def plot_pair_curves(
    epochs_df: pd.DataFrame, trials_df: pd.DataFrame, *, metric: str = "val_acc"
) -> Figure:
    """Every pair's curves in one panel, and each pair's difference MixUp - plain per epoch.

    For a random space, where every draw is its own architecture and a panel per architecture
    would show one pair each. The mean difference per epoch is over the pairs that ran that epoch
    (under ASHA, the survivors).
    """
    arms = trials_df[["trial_id", "pair_id", "config/mixup"]]
    curves = epochs_df[["trial_id", "epoch", metric]].merge(arms, on="trial_id")
    if curves.empty:
        raise ValueError("no epochs of any trial in trials_df to plot")
    figure = Figure(figsize=(11, 4), layout="constrained")
    both, difference = figure.subplots(1, 2)
    for (mixup, _), curve in curves.groupby(["config/mixup", "trial_id"]):
        color = ARM_COLORS[bool(mixup)]
        both.plot(curve["epoch"], curve[metric], color=color, alpha=0.5, linewidth=1, marker=".")
    for mixup in (False, True):  # one legend entry per arm, not per line
        both.plot([], [], color=ARM_COLORS[mixup], label=ARM_LABELS[mixup])
    by_arm = curves.pivot_table(
        index=["pair_id", "epoch"], columns="config/mixup", values=metric, aggfunc="first"
    )
    diffs = (by_arm[True] - by_arm[False]).dropna().rename("diff").reset_index()
    for _, pair in diffs.groupby("pair_id"):
        difference.plot(pair["epoch"], pair["diff"], color="grey", alpha=0.5, linewidth=1)
    mean = diffs.groupby("epoch")["diff"].mean()
    difference.plot(mean.index, mean, color="black", linewidth=2.5, marker="o", label="mean")
    difference.axhline(0.0, color="tab:red", linestyle="--", linewidth=1)
    for ax, ylabel in ((both, metric), (difference, f"{metric}: MixUp - plain")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    pairs = curves["pair_id"].nunique()
    figure.suptitle(f"{metric} of {pairs} pairs: one thin line per arm (left), per pair (right)")
    return figure


def forest_rows(comparison_df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of a long comparison table the forest plot draws, in order, pooled rows last."""
    rows = comparison_df[
        (comparison_df["metric"] == metric) & comparison_df["role"].isin(FOREST_ROLES)
    ]
    pooled = (rows["role"] == "pooled") | (rows["architecture"] == POOLED)
    return pd.concat([rows[~pooled], rows[pooled]]).reset_index(drop=True)


def plot_forest(comparison_df: pd.DataFrame, *, metric: str = "val_acc") -> Figure:
    """Paired difference MixUp - plain per architecture with its interval, and a line at 0.

    Reads the long comparison table (one row per metric and row; columns ``metric``, ``role``,
    ``architecture``, ``n_pairs``, ``diff``, ``ci_low``, ``ci_high``, ``ci_method``): the
    primary, exploratory and pooled rows of ``metric``. A row without an interval (NaN ends, e.g.
    one seed) shows its point only. The pooled row comes last, in black.
    """
    table = forest_rows(comparison_df, metric)
    if table.empty:
        raise ValueError(f"no {', '.join(FOREST_ROLES)} rows for metric {metric!r} to plot")
    positions = np.arange(len(table))[::-1]  # first row at the top
    labels = [_forest_label(row) for row in table.itertuples(index=False)]
    lines = max(label.count("\n") + 1 for label in labels)
    figure = Figure(figsize=(7, 1.0 + (0.3 + 0.15 * lines) * len(table)), layout="constrained")
    ax = figure.subplots()
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    for y, row in zip(positions, table.itertuples(index=False), strict=True):
        pooled = row.role == "pooled" or row.architecture == POOLED
        color, marker = ("black", "D") if pooled else ("tab:blue", "o")
        low, high = float(row.ci_low), float(row.ci_high)
        if math.isfinite(low) and math.isfinite(high):
            # The interval is its own line, so it is drawn as computed even when a (bootstrap)
            # interval does not contain the point; "|" marks both ends.
            ax.plot([low, high], [y, y], color=color, linewidth=1.5, marker="|", markersize=10)
        ax.plot([float(row.diff)], [y], color=color, marker=marker, linestyle="none")
    ax.set_yticks(positions, labels, fontsize=8)
    ax.set_xlabel(f"{metric}: MixUp - plain (paired by seed)")
    ax.grid(axis="x", alpha=0.3)
    has_interval = np.isfinite(table["ci_low"].to_numpy(np.float64)) & np.isfinite(
        table["ci_high"].to_numpy(np.float64)
    )
    methods = sorted({str(m) for m in table.loc[has_interval, "ci_method"]} - {"none", "nan"})
    title = "intervals: " + ", ".join(methods) if methods else "no intervals: run more seeds"
    ax.set_title(title, fontsize=9)
    return figure


def _forest_label(row: Any) -> str:
    """A row's label; a random draw's long architecture label is wrapped."""
    role = "" if row.role in ("primary", "pooled") else f", {row.role}"
    return textwrap.fill(f"{row.architecture}  (n={row.n_pairs}{role})", 60)


def plot_dependence(dependence_df: pd.DataFrame) -> Figure:
    """MixUp - plain per bin or value of each searched key, one panel per key, with intervals.

    Reads `tune_mnist.dependence.dependence`'s table (``key``, ``level``, ``diff``, ``ci_low``,
    ``ci_high``, ``n_pairs``): exploratory rows, a row without an interval shows its point only.
    """
    keys = list(dict.fromkeys(dependence_df["key"]))
    if not keys:
        raise ValueError("no dependence rows to plot (a space without random keys)")
    figure, axes = _panel_grid(len(keys), size=3.5)
    for ax, key in zip(axes, keys, strict=True):
        rows = dependence_df[dependence_df["key"] == key]
        x = np.arange(len(rows))
        low, high = rows["ci_low"].to_numpy(np.float64), rows["ci_high"].to_numpy(np.float64)
        diff = rows["diff"].to_numpy(np.float64)
        shown = np.isfinite(low) & np.isfinite(high)
        ax.vlines(x[shown], low[shown], high[shown], color="tab:blue", linewidth=1.5)
        ax.plot(x, diff, color="tab:blue", marker="o", linestyle="-")
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        labels = [f"{row.level}\n(n={row.n_pairs})" for row in rows.itertuples()]
        ax.set_xticks(x, labels, fontsize=7)
        binned = rows["kind"].iloc[0] == "bin"
        how = f"{rows['scale'].iloc[0]} range, quantile bins" if binned else "per value"
        ax.set_title(f"{key} ({how})", fontsize=9)
        ax.set_ylabel("MixUp - plain")
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("val_acc difference by key (exploratory; 95% t intervals over configurations)")
    return figure


def plot_importance(importance_df: pd.DataFrame) -> Figure:
    """The keys' importance for val_acc as horizontal bars, the most important at the top."""
    if importance_df.empty:
        raise ValueError("no importance rows to plot (a space without random keys)")
    rows = importance_df.sort_values("importance")
    figure = Figure(figsize=(6, 1.0 + 0.35 * len(rows)), layout="constrained")
    ax = figure.subplots()
    ax.barh(rows["key"], rows["importance"], color="tab:blue")
    ax.set_xlabel("importance for val_acc (PED-ANOVA, normalised to sum 1)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{int(rows['n_arms'].iloc[0])} arms (exploratory)", fontsize=9)
    return figure


SEARCH_PLOTS = {"dependence": plot_dependence, "importance": plot_importance}


def plot_reliability(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Reliability diagrams, one panel per arm, from ``metrics.reliability_table`` outputs.

    Bars are the accuracy of each confidence bin; the diagonal is perfect calibration, and the
    red part of a bar shows the gap to it. Each title carries the ECE the table implies.
    """
    if not tables:
        raise ValueError("no reliability tables to plot")
    figure, axes = _panel_grid(len(tables), max_columns=2)
    for ax, (name, table) in zip(axes, tables.items(), strict=True):
        filled = table[table["count"] > 0]
        centers = (filled["bin_low"] + filled["bin_high"]) / 2
        width = filled["bin_high"] - filled["bin_low"]
        ax.bar(
            centers,
            filled["accuracy"],
            width=width,
            color="tab:blue",
            edgecolor="white",
            label="accuracy",
        )
        # Outline and hatch only: a filled gap bar over the accuracy bar would blend into a
        # third colour.
        ax.bar(
            centers,
            filled["confidence"] - filled["accuracy"],
            bottom=filled["accuracy"],
            width=width,
            facecolor="none",
            edgecolor="tab:red",
            hatch="//",
            label="gap to mean confidence",
        )
        ax.plot(
            [0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration"
        )
        gaps = (filled["accuracy"] - filled["confidence"]).abs()
        ece = (filled["count"] * gaps).sum() / table["count"].sum()
        ax.set_title(textwrap.fill(f"{name}  (ECE {ece:.4f})", 60), fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    # One legend for all panels, below them, where it cannot cover a bar.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    return figure


def plot_confusion(
    confusion_long_df: pd.DataFrame,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "confusion matrix",
) -> Figure:
    """Confusion matrix heat map from long format (columns ``true``, ``predicted``, ``count``)."""
    matrix = confusion_long_df.pivot_table(
        index="true", columns="predicted", values="count", aggfunc="sum", fill_value=0
    )
    classes = sorted(set(matrix.index) | set(matrix.columns))
    matrix = matrix.reindex(index=classes, columns=classes, fill_value=0)
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    side = 1.5 + 0.55 * len(classes)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = figure.subplots()
    counts = matrix.to_numpy()
    image = ax.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8)
    threshold = counts.max() / 2
    for (row, column), count in np.ndenumerate(counts):
        if count:
            color = "white" if count > threshold else "black"
            ax.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(classes)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return figure


def plot_misclassified(
    images: np.ndarray,
    true: Sequence[int],
    predicted: Sequence[int],
    class_names: Sequence[str] | None = None,
    *,
    limit: int = 25,
) -> Figure:
    """A grid of up to ``limit`` images, each titled with its true and predicted class.

    ``images`` has shape (n, height, width) or (n, height, width, channels); one channel is
    drawn in grey.
    """
    images = np.asarray(images)[:limit]
    if len(images) == 0:
        raise ValueError("no images to plot")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]

    def name(label: int) -> str:
        return class_names[label] if class_names is not None else str(label)

    columns = min(5, len(images))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(1.8 * columns, 2.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, guess in zip(axes.flat, images, true, predicted, strict=False):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(f"true {name(int(label))}\npred {name(int(guess))}", fontsize=8)
    return figure


def plot_parallel_coordinates(
    trials_df: pd.DataFrame,
    keys: Sequence[str],
    *,
    log_keys: Collection[str] = (),
    metric: str = "val_acc",
) -> Figure:
    """One line per finished pair across ``keys`` and both arms' last ``metric``.

    The colour is the pair's difference MixUp - plain (red: MixUp higher, blue: plain higher), so a
    random space shows where in it MixUp helps. Reads one row per arm: ``pair_id``, ``arm``,
    ``status``, ``config/<key>``, ``last_<metric>``; only pairs whose arms both finished
    (TERMINATED) are drawn. Each key's axis spans its own range (log scale for ``log_keys``);
    text and true/false values sit evenly spaced. Both metric axes share one range.
    """
    pairs = _finished_pairs(trials_df, keys, metric)
    if pairs.empty:
        raise ValueError("no pair with both arms finished (TERMINATED) to plot")
    labels = [*keys, f"plain {metric}", f"MixUp {metric}"]
    axes = [_axis_scale(pairs[key], log=key in log_keys) for key in keys]
    both = pd.concat([pairs["plain"], pairs["mixup"]])
    axes += [_axis_scale(pairs[arm], span=(both.min(), both.max())) for arm in ("plain", "mixup")]
    difference = pairs["mixup"] - pairs["plain"]
    limit = max(float(difference.abs().max()), 1e-9)  # symmetric: white is "no difference"
    colors = ScalarMappable(Normalize(-limit, limit), "coolwarm")
    figure = Figure(figsize=(min(2 + 0.9 * len(labels), 15), 5), layout="constrained")
    ax = figure.subplots()
    figure.colorbar(colors, ax=ax, shrink=0.9, label=f"MixUp - plain ({metric})")
    # A dark outline keeps the pale lines of small differences visible on white.
    outline = [patheffects.Stroke(linewidth=2.8, foreground="0.4"), patheffects.Normal()]
    for y, diff in zip(np.column_stack([p for p, _ in axes]), difference, strict=True):
        ax.plot(
            range(len(labels)), y, color=colors.to_rgba(diff), linewidth=1.8, path_effects=outline
        )
    for x, (_, tick) in enumerate(axes):
        ax.axvline(x, color="grey", linewidth=0.8)
        for y, text in tick:
            ax.text(x, y, text, fontsize=7, ha="center", va="center", backgroundcolor="white")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    ax.set_title(f"{len(pairs)} finished pairs, last epoch; axes scaled to their range", fontsize=9)
    return figure


def _finished_pairs(trials_df: pd.DataFrame, keys: Sequence[str], metric: str) -> pd.DataFrame:
    """One row per pair whose arms both finished: its ``keys`` and each arm's last ``metric``."""
    done = trials_df[trials_df["status"] == "TERMINATED"]
    arms = done.pivot_table(
        index="pair_id", columns="arm", values=f"last_{metric}", aggfunc="first"
    ).reindex(columns=["plain", "mixup"])
    config = done.drop_duplicates("pair_id").set_index("pair_id")[[f"config/{k}" for k in keys]]
    config.columns = list(keys)
    return config.join(arms, how="inner").dropna(subset=["plain", "mixup"])


def _axis_scale(
    values: pd.Series, *, log: bool = False, span: tuple[float, float] | None = None
) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Positions in [0, 1] for one axis and its tick labels ``(position, text)``."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        levels = sorted(values.astype(str).unique())
        where = {level: (i + 0.5) / len(levels) for i, level in enumerate(levels)}
        return values.astype(str).map(where).to_numpy(float), [(where[v], v) for v in levels]
    numbers = values.to_numpy(float)
    low, high = span if span is not None else (numbers.min(), numbers.max())
    scale = np.log10 if log else (lambda v: v)
    if high <= low:  # one value: the middle of the axis
        return np.full(len(numbers), 0.5), [(0.5, f"{low:.3g}")]
    position = (scale(numbers) - scale(low)) / (scale(high) - scale(low))
    return position, [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")]


def run_figures(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    comparison: pd.DataFrame,
    test_eval: pd.DataFrame | None,
    confusion: pd.DataFrame | None,
    test_predictions: pd.DataFrame | None,
    *,
    test_images: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    metric: str = "val_acc",
) -> dict[str, Figure | str]:
    """The five figures of a run by name (keys of ``FIGURE_FILES``): a Figure, or why there is none.

    The test figures (reliability, confusion, misclassified) need the test tables (``None`` when
    the run has no test evaluation) and, for the misclassified images, ``test_images``: the
    run's uint8 test images (n, 28, 28), indexed by ``test_predictions["test_index"]``.
    Confusion and misclassified images show the arm whose model had the higher
    ``val_acc``, so the test set chooses nothing, not even what is shown.
    """
    figures: dict[str, Figure | str] = {}
    if epochs.empty:
        figures["learning_curves"] = "no trial reported an epoch"
    else:
        figures["learning_curves"] = plot_learning_curves(epochs, trials, metric=metric)
    shown = forest_rows(comparison, metric)
    if not shown.loc[shown["role"] != "pooled", "n_pairs"].sum():
        figures["forest"] = "no MixUp/plain pair finished"
    else:
        figures["forest"] = plot_forest(comparison, metric=metric)
    if test_eval is None or confusion is None or test_predictions is None:
        reason = "no test evaluation (no finished trial with a checkpoint)"
        return figures | dict.fromkeys(("reliability", "confusion", "misclassified"), reason)
    return figures | _test_figures(test_eval, confusion, test_predictions, test_images, class_names)


def write_figures(
    run_dir: str | PathLike[str],
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    comparison: pd.DataFrame,
    test_eval: pd.DataFrame | None,
    confusion: pd.DataFrame | None,
    test_predictions: pd.DataFrame | None,
    *,
    test_images: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    metric: str = "val_acc",
    dependence: pd.DataFrame | None = None,
    importance: pd.DataFrame | None = None,
) -> list[str]:
    """Write the five figures of ``run_figures`` into ``run_dir``, and the figures of
    ``dependence`` and ``importance`` (tune_mnist.dependence) when they have rows (a random or
    TPE search); one line per figure: its path, or why not."""
    figures = run_figures(
        trials, epochs, comparison, test_eval, confusion, test_predictions,
        test_images=test_images, class_names=class_names, metric=metric,
    )  # fmt: skip
    lines = []
    for name, figure in figures.items():
        path = Path(run_dir) / FIGURE_FILES[name]
        if isinstance(figure, str):
            lines.append(f"skipped {path.name}: {figure}")
        else:
            lines.append(str(save_figure(figure, path)))
    for name, table in {"dependence": dependence, "importance": importance}.items():
        if table is not None and not table.empty:
            figure = SEARCH_PLOTS[name](table)
            lines.append(str(save_figure(figure, Path(run_dir) / SEARCH_FIGURE_FILES[name])))
    return lines


def _test_figures(
    test_eval: pd.DataFrame,
    confusion: pd.DataFrame,
    predictions: pd.DataFrame,
    test_images: np.ndarray | None,
    class_names: Sequence[str] | None,
) -> dict[str, Figure | str]:
    """Reliability diagrams of both arms; confusion and misclassified images of the better arm."""
    prob_columns = [c for c in predictions.columns if c.startswith("prob_")]
    reliability = {}
    for arm, row in test_eval.set_index("arm").iterrows():
        of_arm = predictions[predictions["arm"] == arm]
        reliability[f"{arm} ({row['architecture']}, test)"] = reliability_table(
            of_arm[prob_columns].to_numpy(), of_arm["true"].to_numpy()
        )
    figures: dict[str, Figure | str] = {"reliability": plot_reliability(reliability)}
    best = test_eval.sort_values(["val_acc", "arm"], ascending=[False, True]).iloc[0]
    arm = best["arm"]
    title = textwrap.fill(f"test set, best model by val_acc: {arm}, {best['architecture']}", 60)
    figures["confusion"] = plot_confusion(
        confusion[confusion["arm"] == arm], class_names=class_names, title=title
    )
    wrong = predictions[
        (predictions["arm"] == arm) & (predictions["true"] != predictions["predicted"])
    ]
    if wrong.empty:
        figures["misclassified"] = f"the {arm} model classified every test image correctly"
    elif test_images is None:
        figures["misclassified"] = "no test images given"
    else:
        images = np.asarray(test_images)[wrong["test_index"].to_numpy()]
        figures["misclassified"] = plot_misclassified(
            images, wrong["true"].tolist(), wrong["predicted"].tolist(), class_names
        )
    return figures
