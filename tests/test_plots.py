"""The figures draw the numbers of the tables they are given (not just some PNG)."""

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_mnist import plots
from tune_mnist.metrics import expected_calibration_error, reliability_table
from tune_mnist.plots import (
    FIGURE_FILES,
    plot_confusion,
    plot_forest,
    plot_learning_curves,
    plot_misclassified,
    plot_reliability,
    save_figure,
    write_figures,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARCHITECTURES = {"num_conv=1 num_dense=0": 0.80, "num_conv=2 num_dense=1": 0.85}
EPOCHS = np.arange(1, 5)
SEED_OFFSETS = (-0.005, 0.0, 0.005)  # mean 0: the mean over seeds is the arm's curve itself
NAN = math.nan


def arm_curve(architecture: str, mixup: bool, epochs: np.ndarray) -> np.ndarray:
    return ARCHITECTURES[architecture] + 0.01 * mixup + 0.02 * np.asarray(epochs, dtype=float)


@pytest.fixture
def trials_and_epochs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two architectures x three seeds x two arms, 4 epochs; seeds shift a curve by -/0/+0.005."""
    trials, epochs = [], []
    for architecture in ARCHITECTURES:
        for seed, offset in enumerate(SEED_OFFSETS):
            for mixup in (False, True):
                trial_id = f"{architecture}-{seed}-{mixup}"
                curve = arm_curve(architecture, mixup, EPOCHS) + offset
                epochs += [
                    {"trial_id": trial_id, "epoch": int(e), "val_acc": a}
                    for e, a in zip(EPOCHS, curve, strict=True)
                ]
                trials.append(
                    {
                        "trial_id": trial_id,
                        "status": "TERMINATED",
                        "architecture": architecture,
                        "config/mixup": mixup,
                        "config/seed": seed,
                        "epochs_run": len(EPOCHS),
                        "best_epoch": len(EPOCHS),
                        "best_val_acc": curve.max(),
                    }
                )
    return pd.DataFrame(trials), pd.DataFrame(epochs)


def comparison_row(metric, role, architecture, n_pairs, diff, low, high, method) -> dict:
    """One row of the long comparison table; columns the forest plot does not read are filler."""
    return {
        "metric": metric,
        "role": role,
        "architecture": architecture,
        "n_pairs": n_pairs,
        "n_seeds": n_pairs,
        "plain": 0.9,
        "mixup": 0.9 + diff,
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "ci_method": method,
        "df": 10.0,
        "replicate_ci_low": NAN,
        "replicate_ci_high": NAN,
        "ci_note": "",
        "p_value": 0.5,
        "p_holm": 0.5,
    }


@pytest.fixture
def comparison() -> pd.DataFrame:
    """val_acc: three primary rows (one without interval), a sensitivity row that must not be
    drawn, the pooled row before an exploratory one; and rows of another metric."""
    return pd.DataFrame(
        [
            comparison_row(
                "val_acc", "primary", "num_conv=1 num_dense=0", 3, 0.010, -0.002, 0.022, "student-t"
            ),
            comparison_row(
                "val_acc", "primary", "num_conv=2 num_dense=1", 1, 0.004, NAN, NAN, "none"
            ),
            comparison_row(
                "val_acc",
                "primary",
                "num_conv=3 num_dense=2",
                3,
                -0.006,
                -0.015,
                0.003,
                "student-t",
            ),
            comparison_row(
                "val_acc", "sensitivity", "num_conv=1 num_dense=0", 3, 0.5, 0.4, 0.6, "wilcoxon"
            ),
            comparison_row("val_acc", "pooled", "all", 7, 0.003, -0.001, 0.007, "student-t"),
            comparison_row(
                "val_acc",
                "exploratory",
                "num_conv=4 num_dense=0",
                2,
                0.020,
                0.012,
                0.031,
                "student-t",
            ),
            comparison_row(
                "val_mixed_acc", "primary", "num_conv=1 num_dense=0", 3, 0.3, 0.2, 0.4, "bootstrap"
            ),
            comparison_row("val_mixed_acc", "pooled", "all", 7, 0.25, 0.15, 0.35, "bootstrap"),
        ]
    )


def forest_marks(figure) -> tuple[dict, dict, dict, list[str]]:
    """What a forest plot draws: per y position the point's x and colour and the interval's ends;
    and the tick labels, top row first."""
    (ax,) = figure.axes
    points, colors, intervals = {}, {}, {}
    for line in ax.get_lines():
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if len(x) == 1:
            points[float(y[0])] = float(x[0])
            colors[float(y[0])] = line.get_color()
        elif len(x) == 2 and y[0] == y[1]:
            intervals[float(y[0])] = (float(x[0]), float(x[1]))
    ticks = sorted(
        zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True),
        reverse=True,
    )
    return points, colors, intervals, [label for _, label in ticks]


def test_learning_curves_draw_each_arms_mean_over_seeds_per_architecture(trials_and_epochs):
    """Rule: a panel per architecture, a line per arm at the mean over seeds, band = min..max."""
    trials, epochs = trials_and_epochs
    figure = plot_learning_curves(epochs, trials)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == sorted(ARCHITECTURES)
    for ax in panels:
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert sorted(lines) == ["MixUp", "plain"]
        for (label, mixup), band in zip(
            (("plain", False), ("MixUp", True)), ax.collections, strict=True
        ):
            x, y = lines[label].get_data()
            np.testing.assert_array_equal(x, EPOCHS)
            np.testing.assert_allclose(y, arm_curve(ax.get_title(), mixup, EPOCHS))
            band_y = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
            assert band_y.min() == pytest.approx(y.min() + min(SEED_OFFSETS))
            assert band_y.max() == pytest.approx(y.max() + max(SEED_OFFSETS))


def test_forest_draws_diff_and_interval_of_the_metrics_rows_pooled_last(comparison):
    """Rule: one point per primary/exploratory/pooled row of the metric at x = diff, its interval
    line from ci_low to ci_high (none where NaN), sensitivity rows left out, pooled last in black.
    """
    figure = plot_forest(comparison, metric="val_acc")
    points, colors, intervals, labels = forest_marks(figure)
    shown = comparison.loc[[0, 1, 2, 5, 4]]  # table order, pooled row moved last
    assert [label.split("  ")[0] for label in labels] == list(shown["architecture"])
    assert "exploratory" in labels[3] and "n=7" in labels[4]
    by_height = sorted(points)[::-1]  # top row first
    assert [points[y] for y in by_height] == pytest.approx(list(shown["diff"]))
    expected_intervals = {
        y: (row.ci_low, row.ci_high)
        for y, row in zip(by_height, shown.itertuples(), strict=True)
        if not math.isnan(row.ci_low)
    }
    assert sorted(intervals) == sorted(expected_intervals)
    for y, ends in expected_intervals.items():
        np.testing.assert_allclose(intervals[y], ends)
    assert len(intervals) == 4  # the one-seed row has its point only
    assert [colors[y] == "black" for y in by_height] == [False] * 4 + [True]
    assert figure.axes[0].get_title() == "intervals: student-t"


def test_forest_of_another_metric_reads_only_its_rows(comparison):
    """Rule: plot_forest(metric=m) draws the rows of metric m, and names their interval method."""
    figure = plot_forest(comparison, metric="val_mixed_acc")
    points, _, intervals, _ = forest_marks(figure)
    assert sorted(points.values()) == pytest.approx([0.25, 0.3])
    np.testing.assert_allclose(sorted(intervals.values()), [(0.15, 0.35), (0.2, 0.4)])
    assert figure.axes[0].get_title() == "intervals: bootstrap"


def test_forest_without_intervals_draws_points_only(comparison):
    """Rule: with no finite interval, only points are drawn and the title asks for more seeds."""
    one_seed = comparison.assign(ci_low=NAN, ci_high=NAN, ci_method="none")
    figure = plot_forest(one_seed, metric="val_acc")
    points, _, intervals, _ = forest_marks(figure)
    assert len(points) == 5 and intervals == {}
    assert figure.axes[0].get_title() == "no intervals: run more seeds"


def test_reliability_bars_are_the_tables_accuracy_and_gap(tmp_path):
    """Rule: per arm, bar heights are the table's accuracy per filled bin, the gap bars go from
    accuracy to confidence, and the title carries the ECE of the predictions."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    tables, eces = {}, {}
    for name, sharpness in (("plain", 6.0), ("MixUp", 2.0)):
        logits = rng.normal(size=(2000, 10)) + sharpness * np.eye(10)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        tables[name] = reliability_table(probs, labels)
        eces[name] = expected_calibration_error(probs, labels)
    figure = plot_reliability(tables)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == 2
    for ax, (name, table) in zip(panels, tables.items(), strict=True):
        filled = table[table["count"] > 0]
        accuracy_bars, gap_bars = ax.containers
        np.testing.assert_allclose([bar.get_height() for bar in accuracy_bars], filled["accuracy"])
        np.testing.assert_allclose([bar.get_y() for bar in gap_bars], filled["accuracy"])
        tops = [bar.get_y() + bar.get_height() for bar in gap_bars]
        np.testing.assert_allclose(tops, filled["confidence"])
        assert ax.get_title() == f"{name}  (ECE {eces[name]:.4f})"


def test_confusion_image_is_the_count_matrix():
    """Rule: heat map cell (true, predicted) counts those predictions; class names on the axes."""
    rng = np.random.default_rng(0)
    true = rng.integers(0, 10, 500)
    predicted = np.where(rng.random(500) < 0.9, true, rng.integers(0, 10, 500))
    long = (
        pd.DataFrame({"true": true, "predicted": predicted})
        .value_counts()
        .rename("count")
        .reset_index()
    )
    names = [f"class {i}" for i in range(10)]
    expected = np.zeros((10, 10), dtype=int)
    np.add.at(expected, (true, predicted), 1)
    figure = plot_confusion(long, class_names=names, title="the title")
    ax = figure.axes[0]
    (image,) = ax.get_images()
    np.testing.assert_array_equal(np.asarray(image.get_array()), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(expected[expected > 0].tolist())
    assert ax.get_title() == "the title"


@pytest.mark.parametrize("shape", [(30, 28, 28), (7, 28, 28, 1), (4, 32, 32, 3)])
def test_misclassified_shows_each_image_with_its_true_and_predicted_names(shape):
    """Rule: up to 25 images in order, each titled 'true NAME / pred NAME' with the class names."""
    rng = np.random.default_rng(0)
    images = rng.random(shape)
    true, predicted = rng.integers(0, 10, shape[0]), rng.integers(0, 10, shape[0])
    names = [f"class {i}" for i in range(10)]
    figure = plot_misclassified(images, true, predicted, names)
    drawn = [ax for ax in figure.axes if ax.get_images()]
    assert len(drawn) == min(shape[0], 25)
    for i, ax in enumerate(drawn):
        assert ax.get_title() == f"true {names[true[i]]}\npred {names[predicted[i]]}"
        expected = images[i][..., 0] if shape[-1] == 1 else images[i]
        np.testing.assert_array_equal(np.asarray(ax.get_images()[0].get_array()), expected)


def test_save_figure_writes_a_png_at_the_path(tmp_path, trials_and_epochs):
    """Rule: save_figure writes PNG bytes at the path, creating missing folders, and returns it."""
    trials, epochs = trials_and_epochs
    path = save_figure(plot_learning_curves(epochs, trials), tmp_path / "nested" / "curves.png")
    assert path == tmp_path / "nested" / "curves.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def make_test_tables(arm_wrong: dict[str, list[int]], n: int = 20):
    """Hand-made test tables: plain (val_acc 0.97) and mixup (0.98), wrong where told."""
    labels = np.arange(n) % 10
    test_eval, confusion, predictions = [], [], []
    for arm, best in (("plain", 0.97), ("mixup", 0.98)):
        predicted = labels.copy()
        predicted[arm_wrong[arm]] = (labels[arm_wrong[arm]] + 1) % 10
        probs = np.full((n, 10), 0.02)
        probs[np.arange(n), predicted] = 0.82
        test_eval.append({"arm": arm, "architecture": f"arch-{arm}", "val_acc": best})
        counts = np.zeros((10, 10), dtype=int)
        np.add.at(counts, (labels, predicted), 1)
        confusion.append(
            pd.DataFrame(
                {
                    "arm": arm,
                    "true": np.repeat(np.arange(10), 10),
                    "predicted": np.tile(np.arange(10), 10),
                    "count": counts.ravel(),
                }
            )
        )
        frame = pd.DataFrame(
            {"arm": arm, "test_index": np.arange(n), "true": labels, "predicted": predicted}
        )
        predictions.append(
            frame.join(pd.DataFrame(probs, columns=[f"prob_{c}" for c in range(10)]))
        )
    return pd.DataFrame(test_eval), pd.concat(confusion), pd.concat(predictions, ignore_index=True)


def test_write_figures_shows_the_arm_with_the_best_val_acc(
    tmp_path, monkeypatch, trials_and_epochs, comparison
):
    """Rule: all five figures are written (one path per line); confusion and misclassified images
    are those of the arm with the higher val_acc (mixup here), never the other arm's."""
    trials, epochs = trials_and_epochs
    test_eval, confusion, predictions = make_test_tables({"plain": [0, 1, 2, 4], "mixup": [3, 7]})
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    names = [f"c{i}" for i in range(10)]
    saved = {}

    def keep(figure, path):
        saved[Path(path).name] = figure
        return save_figure(figure, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    lines = write_figures(
        tmp_path,
        trials,
        epochs,
        comparison,
        test_eval,
        confusion,
        predictions,
        test_images=images,
        class_names=names,
    )
    assert lines == [str(tmp_path / file) for file in FIGURE_FILES.values()]
    assert all(
        (tmp_path / file).read_bytes()[:8] == PNG_SIGNATURE for file in FIGURE_FILES.values()
    )
    confusion_ax = saved["confusion.png"].axes[0]
    assert "mixup, arch-mixup" in confusion_ax.get_title()
    assert np.trace(np.asarray(confusion_ax.get_images()[0].get_array())) == 18
    shown = [ax for ax in saved["misclassified.png"].axes if ax.get_images()]
    assert [np.asarray(ax.get_images()[0].get_array()).tolist() for ax in shown] == [
        images[3].tolist(),
        images[7].tolist(),
    ]
    assert [ax.get_title() for ax in shown] == ["true c3\npred c4", "true c7\npred c8"]
    reliability_titles = [
        ax.get_title() for ax in saved["reliability.png"].axes if ax.get_visible()
    ]
    assert [t.split("  ")[0] for t in reliability_titles] == [
        "plain (arch-plain, test)",
        "mixup (arch-mixup, test)",
    ]


def test_write_figures_skips_test_figures_without_test_tables(
    tmp_path, trials_and_epochs, comparison
):
    """Rule: without a test evaluation the three test figures are skipped, each with the reason."""
    trials, epochs = trials_and_epochs
    lines = write_figures(tmp_path, trials, epochs, comparison, None, None, None)
    assert lines[:2] == [
        str(tmp_path / FIGURE_FILES["learning_curves"]),
        str(tmp_path / FIGURE_FILES["forest"]),
    ]
    assert lines[2:] == [
        f"skipped {FIGURE_FILES[name]}: no test evaluation (no finished trial with a checkpoint)"
        for name in ("reliability", "confusion", "misclassified")
    ]
    assert not (tmp_path / FIGURE_FILES["reliability"]).exists()


def test_write_figures_skips_forest_and_misclassified_when_there_is_nothing_to_show(
    tmp_path, trials_and_epochs, comparison
):
    """Rule: no finished pair: forest skipped; best model without errors: misclassified skipped."""
    trials, epochs = trials_and_epochs
    no_pairs = comparison.assign(n_pairs=0, diff=NAN, ci_low=NAN, ci_high=NAN)
    test_eval, confusion, predictions = make_test_tables({"plain": [0], "mixup": []})
    lines = write_figures(
        tmp_path,
        trials,
        epochs,
        no_pairs,
        test_eval,
        confusion,
        predictions,
        test_images=np.zeros((20, 28, 28), np.uint8),
    )
    assert lines[1] == "skipped forest.png: no MixUp/plain pair finished"
    assert (
        lines[4]
        == "skipped misclassified.png: the mixup model classified every test image correctly"
    )


def test_figures_are_not_kept_open_by_pyplot(tmp_path, trials_and_epochs, comparison):
    """Rule: drawing and saving figures leaves no figure open in pyplot (loops must not grow)."""
    import matplotlib.pyplot as plt

    trials, epochs = trials_and_epochs
    before = plt.get_fignums()
    test_eval, confusion, predictions = make_test_tables({"plain": [0], "mixup": [1]})
    write_figures(
        tmp_path,
        trials,
        epochs,
        comparison,
        test_eval,
        confusion,
        predictions,
        test_images=np.zeros((20, 28, 28), np.uint8),
    )
    assert plt.get_fignums() == before


def test_plots_imports_nothing_from_the_modules_that_call_it():
    """Rule: plots.py imports nothing from results, evaluation or comparison (one-way arrows)."""
    tree = ast.parse(Path(plots.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    forbidden = ("tune_mnist.results", "tune_mnist.evaluation", "tune_mnist.comparison")
    assert not [name for name in imported if name.startswith(forbidden)]


def random_space_trials() -> pd.DataFrame:
    """Three pairs of a random space (MixUp +0.02, -0.01, and one whose MixUp arm failed)."""
    rows = []
    pairs = [
        ("p0", 0.1, 1e-4, "adam", {"plain": 0.80, "mixup": 0.82}, "TERMINATED"),
        ("p1", 0.4, 1e-2, "sgd", {"plain": 0.85, "mixup": 0.84}, "TERMINATED"),
        ("p2", 0.2, 1e-3, "adam", {"plain": 0.70, "mixup": NAN}, "ERROR"),
    ]
    for pair_id, dropout, learning_rate, optimizer, last, status in pairs:
        for arm, value in last.items():
            rows.append(
                {
                    "pair_id": pair_id,
                    "arm": arm,
                    "status": status,
                    "config/dropout": dropout,
                    "config/learning_rate": learning_rate,
                    "config/optimizer": optimizer,
                    "last_val_acc": value,
                }
            )
    return pd.DataFrame(rows)


def test_parallel_coordinates_draw_each_finished_pair_coloured_by_its_difference():
    """Rule: one line per pair whose arms both finished, through every key and both arms' metric
    (log keys on a log scale, text keys evenly spaced); red where MixUp is higher, blue where
    lower."""
    keys = ["dropout", "learning_rate", "optimizer"]
    figure = plots.plot_parallel_coordinates(
        random_space_trials(), keys, log_keys=["learning_rate"]
    )
    ax = figure.axes[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == len(keys) + 2]
    assert len(lines) == 2  # p2 failed: not drawn
    by_dropout = {round(float(line.get_ydata()[0]), 6): line for line in lines}
    mixup_better, plain_better = by_dropout[0.0], by_dropout[1.0]  # dropout 0.1 and 0.4
    # learning rates 1e-4 and 1e-2 are the ends of a log axis; adam and sgd sit at 1/4 and 3/4;
    # the metric axes share one range, 0.80 to 0.85.
    np.testing.assert_allclose(mixup_better.get_ydata(), [0, 0, 0.25, 0, 0.4])
    np.testing.assert_allclose(plain_better.get_ydata(), [1, 1, 0.75, 1, 0.8])
    red, green, blue, _ = mixup_better.get_color()
    assert red > blue
    red, green, blue, _ = plain_better.get_color()
    assert blue > red
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [*keys, "plain val_acc", "MixUp val_acc"]


def test_parallel_coordinates_without_a_finished_pair_say_so():
    """Rule: with no pair whose arms both finished nothing is drawn; a ValueError says so."""
    trials = random_space_trials()
    with pytest.raises(ValueError, match="no pair with both arms finished"):
        plots.plot_parallel_coordinates(trials[trials["pair_id"] == "p2"], ["dropout"])


def test_pair_curves_show_every_arm_and_each_pairs_difference(trials_and_epochs):
    """Rule: left, one line per arm of every pair; right, one line per pair of MixUp - plain per
    epoch and their mean, the mean of the per-pair differences."""
    trials, epochs = trials_and_epochs
    pair_ids = trials["trial_id"].str.rsplit("-", n=1).str[0]  # architecture-seed
    trials = trials.assign(pair_id=pair_ids)
    figure = plots.plot_pair_curves(epochs, trials)
    both, difference = figure.axes
    drawn = [line for line in both.get_lines() if len(line.get_xdata())]
    assert len(drawn) == len(trials)
    mean = next(line for line in difference.get_lines() if line.get_label() == "mean")
    pair_lines = [line for line in difference.get_lines() if line.get_color() == "grey"]
    assert len(pair_lines) == trials["pair_id"].nunique()
    # arm_curve: MixUp is 0.01 above plain at every epoch, in every pair.
    np.testing.assert_allclose(mean.get_ydata(), 0.01)
    np.testing.assert_allclose(mean.get_xdata(), EPOCHS)


def test_search_figures_draw_their_tables(tmp_path, trials_and_epochs, comparison):
    """Rule: one dependence panel per key with each bin's difference and interval; one bar per key
    in importance order; write_figures adds both after the others when their tables have rows."""
    dependence = pd.DataFrame(
        {
            "key": ["dropout"] * 3 + ["optimizer"] * 2,
            "kind": ["bin"] * 3 + ["value"] * 2,
            "scale": ["linear"] * 3 + [""] * 2,
            "level": ["0–0.1", "0.1–0.3", "0.3–0.5", "adam", "sgd"],
            "n_pairs": [4, 4, 4, 6, 6],
            "diff": [-0.02, 0.0, 0.03, 0.01, NAN],
            "ci_low": [-0.04, -0.01, 0.01, NAN, NAN],
            "ci_high": [0.0, 0.01, 0.05, NAN, NAN],
        }
    )
    figure = plots.plot_dependence(dependence)
    dropout, optimizer = [ax for ax in figure.axes if ax.get_visible()]
    assert dropout.get_title() == "dropout (linear range, quantile bins)"
    assert optimizer.get_title() == "optimizer (per value)"
    assert dropout.lines[0].get_ydata().tolist() == [-0.02, 0.0, 0.03]
    (segments,) = [c.get_segments() for c in dropout.collections]
    assert [s[:, 1].tolist() for s in segments] == [[-0.04, 0.0], [-0.01, 0.01], [0.01, 0.05]]
    assert [t.get_text() for t in optimizer.get_xticklabels()] == ["adam\n(n=6)", "sgd\n(n=6)"]
    importance = pd.DataFrame(
        {"key": ["learning_rate", "mixup"], "importance": [0.7, 0.3], "n_arms": [24, 24]}
    )
    (ax,) = plots.plot_importance(importance).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mixup", "learning_rate"]
    assert [p.get_width() for p in ax.patches] == [0.3, 0.7]
    trials, epochs = trials_and_epochs
    lines = write_figures(
        tmp_path, trials, epochs, comparison, None, None, None,
        dependence=dependence, importance=importance,
    )  # fmt: skip
    assert lines[-2:] == [str(tmp_path / f) for f in plots.SEARCH_FIGURE_FILES.values()]
