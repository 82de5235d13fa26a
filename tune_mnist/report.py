"""One HTML page per run, ``RUN_DIR/report.html``, that opens with no network.

    python -m tune_mnist.results RUN_DIR --report     # or: python -m tune_mnist.run ... --report

The page is a list of sections, each made by a function ``(tables, context) -> Section`` in
``SECTIONS``, in the order a reader needs them: what was run, the protocol's primary result, then
the figures that explain it, then the test set. Figures are embedded as base64 PNG and the CSS is
inline, and a Content-Security-Policy forbids loading anything else: the file alone, copied or
mailed, shows everything. Every text that comes from the run (command, arguments, error messages)
is escaped.

This module reads tables; it never imports the Ray side, nor ``results`` (which calls it).
"""

from __future__ import annotations

import base64
import html
import io
import json
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tune_mnist import plots
from tune_mnist.comparison import FAILED, UNREADABLE, format_comparison
from tune_mnist.evaluation import format_confirmation
from tune_mnist.files import REPORT_FILE, ManifestError, atomic_write, read_manifest
from tune_mnist.space import ARM_KEYS, KEYS

__all__ = ["SECTIONS", "Context", "Section", "build_report", "write_report"]

# Nothing but the page itself, its inline styles and data: images may load.
CONTENT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
pre.command { white-space: pre-wrap; overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .2em .5em; text-align: left; vertical-align: top; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.primary { font-size: 1.1em; font-weight: 600; background: #eef5ff; padding: .6em; }
.note { color: #666; font-style: italic; }
nav a { margin-right: 1em; }
"""
TEST_COLUMNS = [
    "arm", "trial_id", "architecture", "checkpoint_epoch", "val_acc", "test_acc",
    "test_mixed_acc", "test_ece",
]  # fmt: skip


class RunTables(Protocol):
    """What the sections read: a ``results.Tables`` (not imported: ``results`` imports this)."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    comparison: pd.DataFrame
    test_eval: pd.DataFrame | None
    confusion: pd.DataFrame | None
    test_predictions: pd.DataFrame | None
    dependence: pd.DataFrame
    importance: pd.DataFrame


@dataclass(frozen=True)
class Section:
    """One part of the page: its title (plain text) and its body (HTML, already escaped)."""

    title: str
    html: str


@dataclass
class Context:
    """What the sections read besides the tables.

    ``manifest`` is the run's ``run_manifest.json`` (None when unreadable: ``manifest_problem``
    says why); ``figures`` are ``plots.run_figures``' figures, drawn once for every section.
    """

    run_dir: Path
    manifest: dict[str, Any] | None
    manifest_problem: str
    metric: str
    figures: Mapping[str, Figure | str]


SectionFunction = Callable[[RunTables, Context], Section]


def _text(value: Any) -> str:
    return html.escape(str(value))


def _note(text: str) -> str:
    return f'<p class="note">{_text(text)}</p>'


def _figure(figure: Figure | str, alt: str) -> str:
    """The figure as an embedded PNG, or a note saying why there is none."""
    if isinstance(figure, str):
        return _note(f"No figure: {figure}.")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_text(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    # pandas escapes every cell and header (escape=True); numbers show 4 decimals like the console.
    return frame.to_html(
        index=False, escape=True, border=0, na_rep="-", float_format="{:.4f}".format
    )


def _key_values(pairs: Mapping[str, Any]) -> str:
    """A two-column table; values that are not text are shown as JSON."""
    shown = {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in pairs.items()}
    rows = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in shown.items())
    return f"<table>{rows}</table>"


def random_keys(manifest: Mapping[str, Any] | None) -> list[str]:
    """The keys the run's space draws at random (every distribution but ``grid``)."""
    space = (manifest or {}).get("space", {})
    return [k for k, v in space.items() if isinstance(v, dict) and "grid" not in v]


def varying_keys(trials: pd.DataFrame) -> list[str]:
    """The configuration keys that differ between pairs, less the arm and the seed."""
    return [
        k for k in KEYS if k not in ARM_KEYS and trials[f"config/{k}"].nunique(dropna=False) > 1
    ]


# ---- sections ------------------------------------------------------------------------------------


def run_section(tables: RunTables, context: Context) -> Section:
    """The command, when it ran, the data, the space and the versions (from the manifest)."""
    manifest = context.manifest
    if manifest is None:
        return Section("Run", _note(f"No manifest: {context.manifest_problem}."))
    command = manifest.get("command") or []
    when = {
        "run folder": str(context.run_dir),
        "started": manifest.get("started"),
        "ended": manifest.get("ended") or "not recorded (interrupted, or still running)",
        "seconds": manifest.get("seconds", "not recorded"),
        "git commit": manifest.get("git_commit") or "unknown",
        "space": manifest.get("space_source", "not recorded"),
    }
    parts = [
        f'<pre class="command">{_text(shlex.join(map(str, command)))}</pre>',
        _key_values(when),
        "<h3>Dataset</h3>",
        _key_values(manifest.get("dataset", {})),
        "<h3>Search space</h3>",
        _key_values(manifest.get("space", {})),
        "<details><summary>Every argument</summary>",
        _key_values(manifest.get("args", {})),
        "</details>",
        "<h3>Versions</h3>",
        _key_values(manifest.get("versions", {})),
    ]
    return Section("Run", "\n".join(parts))


def primary_section(tables: RunTables, context: Context) -> Section:
    """The protocol's primary result first, beside it its confirmation on the test set, then the
    rest of the comparison and what failed."""
    trials = tables.trials
    counts = trials.drop_duplicates("pair_id")["status"].value_counts().sort_index()
    pairs = "<p>" + _text("Pairs: " + ", ".join(f"{n} {s}" for s, n in counts.items())) + "</p>"
    if not trials["status"].eq("TERMINATED").any():
        return Section("Primary result", pairs + _note("No pair finished."))
    primary, *rest = format_comparison(tables.comparison).splitlines()
    details = "\n".join(rest).strip("\n")
    parts = [f'<p class="primary">{_text(primary)}</p>']
    confirmation = format_confirmation(tables.comparison)
    parts += [f'<p class="primary">{_text(confirmation)}</p>'] if confirmation else []
    parts += [pairs, f"<pre>{_text(details)}</pre>"]
    failed = trials[trials["status"].isin((*FAILED, UNREADABLE))]
    if len(failed):
        columns = ["trial_id", "architecture", "status", "error"]
        parts += ["<h3>Failed arms</h3>", _table(failed[columns])]
    return Section("Primary result", "\n".join(parts))


def forest_section(tables: RunTables, context: Context) -> Section:
    alt = f"forest plot of the paired differences in {context.metric}"
    return Section("Paired differences", _figure(context.figures["forest"], alt))


def learning_curves_section(tables: RunTables, context: Context) -> Section:
    """A panel per architecture; for a random space (each draw its own), every pair in one."""
    alt = f"learning curves of {context.metric}, plain and MixUp"
    figure = context.figures["learning_curves"]
    if random_keys(context.manifest) and not isinstance(figure, str):
        figure = plots.plot_pair_curves(tables.epochs, tables.trials, metric=context.metric)
    return Section("Learning curves", _figure(figure, alt))


def parallel_coordinates_section(tables: RunTables, context: Context) -> Section:
    """Where in the space MixUp helped: every key that varies, one line per finished pair."""
    title = "Configurations and the MixUp difference"
    keys = varying_keys(tables.trials)
    if not keys:
        return Section(title, _note("Every pair has the same configuration but its seed."))
    space = (context.manifest or {}).get("space", {})
    log_keys = [k for k in keys if isinstance(space.get(k), dict) and "loguniform" in space[k]]
    try:
        figure = plots.plot_parallel_coordinates(
            tables.trials, keys, log_keys=log_keys, metric=context.metric
        )
    except ValueError as e:  # no finished pair
        return Section(title, _note(f"No figure: {e}."))
    return Section(title, _figure(figure, "parallel coordinates of the varying keys"))


def dependence_section(tables: RunTables, context: Context) -> Section:
    """MixUp − plain per bin or value of each searched key (a random or TPE search)."""
    title = "How the MixUp difference depends on each key"
    if tables.dependence.empty:
        return Section(title, _note("Not a random or TPE search: no key was drawn."))
    text = (
        "<p>Exploratory: mean of each configuration's MixUp − plain in val_acc at the compared "
        "epoch (its seeds averaged first), with a 95% t interval over configurations.</p>"
    )
    columns = ["key", "level", "n_configurations", "n_pairs", "diff", "ci_low", "ci_high"]
    figure = _figure(plots.plot_dependence(tables.dependence), "MixUp difference by key")
    return Section(title, text + figure + _table(tables.dependence[columns]))


def importance_section(tables: RunTables, context: Context) -> Section:
    """Which keys matter for val_acc (a random or TPE search)."""
    title = "Which keys matter for val_acc"
    if tables.importance.empty:
        return Section(title, _note("Not a random or TPE search: no key was drawn."))
    method = tables.importance["method"].iloc[0]
    figure = _figure(plots.plot_importance(tables.importance), "importance of each key")
    text = f"<p>{_text(method)}; exploratory.</p>"
    return Section(title, text + figure + _table(tables.importance[["key", "importance", "rank"]]))


def evaluation_section(tables: RunTables, context: Context) -> Section:
    """The final model of each arm on the test set, its confusion matrix and its mistakes."""
    title = "Test set"
    if tables.test_eval is None:
        return Section(title, _note("No test evaluation (no finished pair with a checkpoint)."))
    parts = [
        "<p>The final model of each arm with the best val_acc, evaluated once:</p>",
        _table(tables.test_eval[TEST_COLUMNS]),
        _figure(context.figures["confusion"], "confusion matrix of the better arm"),
        _figure(context.figures["misclassified"], "misclassified test images"),
    ]
    return Section(title, "\n".join(parts))


def calibration_section(tables: RunTables, context: Context) -> Section:
    text = "<p>Reliability of each arm's final model on the test set (15 confidence bins).</p>"
    figure = _figure(context.figures["reliability"], "reliability diagrams of both arms")
    return Section("Calibration", text + figure)


SECTIONS: list[SectionFunction] = [
    run_section,
    primary_section,
    forest_section,
    learning_curves_section,
    parallel_coordinates_section,
    dependence_section,
    importance_section,
    evaluation_section,
    calibration_section,
]


# ---- the page --------------------------------------------------------------------------------


def build_report(
    tables: RunTables, context: Context, sections: Sequence[SectionFunction] = SECTIONS
) -> str:
    """The whole page as one HTML string."""
    made = [section(tables, context) for section in sections]
    nav = " ".join(f'<a href="#s{i}">{_text(s.title)}</a>' for i, s in enumerate(made))
    body = "\n".join(
        f'<section id="s{i}"><h2>{_text(s.title)}</h2>\n{s.html}</section>'
        for i, s in enumerate(made)
    )
    name = _text(context.run_dir.name)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">
<link rel="icon" href="data:,">
<title>tune_mnist report: {name}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>tune_mnist report: {name}</h1>
<p class="note">Written {_text(time.strftime("%Y-%m-%d %H:%M:%S %z"))}. Differences are MixUp −
plain, paired: both arms of a pair share initial weights, batches and seed.</p>
<nav>{nav}</nav>
{body}
</body>
</html>
"""


def write_report(
    run_dir: str | Path,
    tables: RunTables,
    *,
    metric: str = "val_acc",
    test_images: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    sections: Sequence[SectionFunction] = SECTIONS,
) -> Path:
    """Write ``RUN_DIR/report.html`` (atomically) and return its path.

    ``test_images`` and ``class_names`` are as in ``plots.run_figures`` (the misclassified images
    need the images).
    """
    run_dir = Path(run_dir)
    try:
        manifest, problem = read_manifest(run_dir), ""
    except ManifestError as e:
        manifest, problem = None, str(e)
    figures = plots.run_figures(
        tables.trials, tables.epochs, tables.comparison, tables.test_eval, tables.confusion,
        tables.test_predictions, test_images=test_images, class_names=class_names, metric=metric,
    )  # fmt: skip
    context = Context(run_dir, manifest, problem, metric, figures)
    page = build_report(tables, context, sections)
    path = run_dir / REPORT_FILE
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return path
