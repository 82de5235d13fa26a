"""Figures for a finished search, written as PNG files.

Each function takes the DataFrames that ``results`` and ``comparison`` produce, writes one PNG
and returns its path, so a report or notebook can embed the file. The Agg backend is used:
figures are drawn on clusters and in CI, where there is no display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

if TYPE_CHECKING:
    from tune_mnist.evaluation import Evaluation
    from tune_mnist.results import Tables

__all__ = [
    "plot_learning_curves", "plot_forest", "plot_reliability", "plot_confusion", "plot_misclassified", "write_figures",
]

ARM_COLORS = {False: "tab:blue", True: "tab:orange"}
ARM_NAMES = {False: "plain", True: "MixUp"}


def _save(figure: Figure, path: str | PathLike[str]) -> Path:
    """Write the figure as PNG, creating the folder, and free its memory (plots run in loops)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def _panel_grid(n_panels: int, *, max_columns: int = 3, size: float = 4.0) -> tuple[Figure, list[plt.Axes]]:
    """A figure with ``n_panels`` axes in rows of at most ``max_columns``; spare axes are hidden."""
    columns = min(n_panels, max_columns)
    rows = math.ceil(n_panels / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(size * columns, size * 0.8 * rows), squeeze=False, layout="constrained"
    )
    flat = list(axes.flat)
    for spare in flat[n_panels:]:
        spare.set_visible(False)
    return figure, flat[:n_panels]


def plot_learning_curves(
    epochs_df: pd.DataFrame,
    trials_df: pd.DataFrame,
    path: str | PathLike[str],
    *,
    metric: str = "val_acc",
) -> Path:
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
    for ax, architecture in zip(axes, architectures):
        for mixup, arm in curves[curves["architecture"] == architecture].groupby("config/mixup"):
            summary = arm.groupby("epoch")[metric].agg(["mean", "min", "max"])
            color = ARM_COLORS[bool(mixup)]
            ax.plot(summary.index, summary["mean"], color=color, label=ARM_NAMES[bool(mixup)], marker=".")
            ax.fill_between(summary.index, summary["min"], summary["max"], color=color, alpha=0.2, linewidth=0)
        ax.set_title(architecture, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"{metric}: mean over seeds, band = min to max")
    return _save(figure, path)


def plot_forest(comparison_df: pd.DataFrame, path: str | PathLike[str], *, metric: str = "val_acc") -> Path:
    """Paired difference MixUp - plain per architecture with its interval, and a line at 0.

    Rows without an interval (one seed) show the point only. The pooled row comes last, in black.
    """
    table = comparison_df.reset_index(drop=True)
    positions = np.arange(len(table))[::-1]  # first row at the top
    difference = table[f"diff_{metric}"].to_numpy(dtype=np.float64)
    low = table[f"ci_low_{metric}"].to_numpy(dtype=np.float64)
    high = table[f"ci_high_{metric}"].to_numpy(dtype=np.float64)
    pooled = (table["architecture"] == "all").to_numpy()
    figure, ax = plt.subplots(figsize=(7, 1.0 + 0.45 * len(table)), layout="constrained")
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    has_interval = np.isfinite(low) & np.isfinite(high)
    # matplotlib wants non-negative distances from the point to each end of the interval.
    errors = np.vstack([np.where(has_interval, difference - low, 0), np.where(has_interval, high - difference, 0)])
    for rows, color, marker in ((~pooled, "tab:blue", "o"), (pooled, "black", "D")):
        ax.errorbar(difference[rows], positions[rows], xerr=errors[:, rows], fmt=marker, color=color, capsize=4)
    labels = [f"{name}  (n={n})" for name, n in zip(table["architecture"], table["n_pairs"])]
    ax.set_yticks(positions, labels, fontsize=8)
    ax.set_xlabel(f"{metric}: MixUp - plain (paired by seed)")
    ax.grid(axis="x", alpha=0.3)
    methods = sorted(set(table["ci_method"]) - {"none"}) if "ci_method" in table else []
    ax.set_title("intervals: " + ", ".join(methods) if methods else "no intervals: run more seeds", fontsize=9)
    return _save(figure, path)


def plot_reliability(tables: Mapping[str, pd.DataFrame], path: str | PathLike[str]) -> Path:
    """Reliability diagrams, one panel per arm, from ``calibration.reliability_table`` outputs.

    Bars are the accuracy of each confidence bin; the diagonal is perfect calibration, and the
    red part of a bar shows the gap to it. Each title carries the ECE the table implies.
    """
    if not tables:
        raise ValueError("no reliability tables to plot")
    figure, axes = _panel_grid(len(tables), max_columns=2)
    for ax, (name, table) in zip(axes, tables.items()):
        filled = table[table["count"] > 0]
        centers = (filled["bin_low"] + filled["bin_high"]) / 2
        width = filled["bin_high"] - filled["bin_low"]
        ax.bar(centers, filled["accuracy"], width=width, color="tab:blue", edgecolor="white", label="accuracy")
        # Outline and hatch only: a filled gap bar over the accuracy bar would blend into a third colour.
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
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        ece = (filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / table["count"].sum()
        ax.set_title(f"{name}  (ECE {ece:.4f})", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
    # One legend for all panels, below them, where it cannot cover a bar.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    return _save(figure, path)


def plot_confusion(
    confusion_long_df: pd.DataFrame,
    path: str | PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    title: str = "confusion matrix",
) -> Path:
    """Confusion matrix heat map from long format (columns ``true``, ``predicted``, ``count``)."""
    matrix = confusion_long_df.pivot_table(index="true", columns="predicted", values="count", aggfunc="sum", fill_value=0)
    classes = sorted(set(matrix.index) | set(matrix.columns))
    matrix = matrix.reindex(index=classes, columns=classes, fill_value=0)
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    side = 1.5 + 0.55 * len(classes)
    figure, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    image = ax.imshow(matrix.to_numpy(), cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8)
    threshold = matrix.to_numpy().max() / 2
    for (row, column), count in np.ndenumerate(matrix.to_numpy()):
        if count:
            ax.text(column, row, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > threshold else "black")
    ax.set_xticks(range(len(classes)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(figure, path)


def plot_misclassified(
    images: np.ndarray,
    true: Sequence[int],
    predicted: Sequence[int],
    path: str | PathLike[str],
    class_names: Sequence[str] | None = None,
    *,
    limit: int = 25,
) -> Path:
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
    figure, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 2.0 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, guess in zip(axes.flat, images, true, predicted):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(f"true {name(int(label))}\npred {name(int(guess))}", fontsize=8)
    return _save(figure, path)


FIGURE_FILES = {
    "learning_curves": "learning_curves.png",
    "forest": "forest.png",
    "reliability": "reliability.png",
    "confusion": "confusion.png",
    "misclassified": "misclassified.png",
}


def write_figures(run_dir: str | PathLike[str], tables: Tables, evaluation: Evaluation | None, *, metric: str = "val_acc") -> list[str]:
    """Write the five figures of a run into ``run_dir``; one line per figure: its path, or why not.

    The test figures (reliability, confusion, misclassified) need the test evaluation. Confusion
    and misclassified images show the arm whose model had the higher ``best_val_acc``, so the
    test set chooses nothing, not even what is shown.
    """
    from tune_mnist.space import POOLED

    run_dir = Path(run_dir)
    files = {name: run_dir / file for name, file in FIGURE_FILES.items()}
    lines = []
    if tables.epochs.empty:
        lines.append(f"skipped {files['learning_curves'].name}: no trial reported an epoch")
    else:
        lines.append(str(plot_learning_curves(tables.epochs, tables.trials, files["learning_curves"], metric=metric)))
    compared = tables.comparison[tables.comparison["architecture"] != POOLED]
    if not compared["n_pairs"].sum():
        lines.append(f"skipped {files['forest'].name}: no MixUp/plain pair finished")
    else:
        lines.append(str(plot_forest(tables.comparison, files["forest"], metric=metric)))
    if evaluation is None:
        reason = "no test evaluation (no finished trial with a checkpoint)"
        return lines + [f"skipped {files[name].name}: {reason}" for name in ("reliability", "confusion", "misclassified")]
    return lines + _test_figures(run_dir, evaluation, files)


def _test_figures(run_dir: Path, evaluation: Evaluation, files: Mapping[str, Path]) -> list[str]:
    """Reliability diagrams of both arms; confusion matrix and misclassified images of the better one."""
    from tune_mnist.metrics import reliability_table
    from tune_mnist.evaluation import load_test_arrays

    predictions = evaluation.predictions
    prob_columns = [c for c in predictions.columns if c.startswith("prob_")]
    reliability = {
        f"{arm} ({row.architecture}, test)": reliability_table(
            predictions.loc[predictions["arm"] == arm, prob_columns].to_numpy(),
            predictions.loc[predictions["arm"] == arm, "true"].to_numpy(),
        )
        for arm, row in evaluation.test_eval.set_index("arm").iterrows()
    }
    lines = [str(plot_reliability(reliability, files["reliability"]))]
    shown = evaluation.test_eval.sort_values(["best_val_acc", "arm"], ascending=[False, True]).iloc[0]
    arm = shown["arm"]
    arrays, _, class_names = load_test_arrays(run_dir)
    title = f"test set, best model by val_acc: {arm}, {shown['architecture']}"
    confusion = evaluation.confusion[evaluation.confusion["arm"] == arm]
    lines.append(str(plot_confusion(confusion, files["confusion"], class_names=class_names, title=title)))
    wrong = predictions[(predictions["arm"] == arm) & (predictions["true"] != predictions["predicted"])]
    if wrong.empty:
        lines.append(f"skipped {files['misclassified'].name}: the {arm} model classified every test image correctly")
    else:
        images = arrays.x_test[wrong["test_index"].to_numpy()]
        lines.append(str(plot_misclassified(images, wrong["true"].tolist(), wrong["predicted"].tolist(), files["misclassified"], class_names)))
    return lines
