"""scripts/analysis.ipynb: executed against the committed run tests/fixtures/run, its saved
outputs are those of a fresh execution; it reads a run at a URI as well, writes nothing into the
run, and runs top to bottom against a fresh real search too.

`python tests/test_notebook.py --save` executes the notebook against the fixture and saves its
outputs into it (after a change of the notebook, or of the fixture: tests/fixtures/make_run.sh).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "scripts" / "analysis.ipynb"
FIXTURE = REPO / "tests" / "fixtures" / "run"
# As the saved outputs print it: relative to scripts/, where the kernel runs.
FIXTURE_FROM_NOTEBOOK = os.path.relpath(FIXTURE, NOTEBOOK.parent)
TEXT_TYPES = ("text/plain",)  # what is compared; HTML tables repeat it, figures are only counted


def execute(run_dir: str) -> NotebookNode:
    """The notebook executed top to bottom against ``run_dir``, in a kernel that imports
    tune_mnist from this checkout whatever is installed."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = {**os.environ, "TUNE_MNIST_RUN_DIR": run_dir, "PYTHONPATH": path}
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            notebook,
            timeout=120,
            kernel_name="python3",
            record_timing=False,  # the saved file holds outputs, not when they were made
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def texts(notebook: NotebookNode) -> list[list[str]]:
    """Per code cell, the text of each output: a stream's text, a result's text/plain."""
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    return [
        [
            o.get("text", "") if o.output_type == "stream" else
            "".join(o.get("data", {}).get(kind, "") for kind in TEXT_TYPES)
            for o in cell.outputs
            if o.output_type != "display_data" or "image/png" not in o.get("data", {})
        ]
        for cell in cells
    ]  # fmt: skip


def figures(notebook: NotebookNode) -> list[int]:
    """Per code cell, how many PNG figures it shows."""
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    return [sum("image/png" in o.get("data", {}) for o in cell.outputs) for cell in cells]


def files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def test_saved_outputs_are_those_of_a_fresh_execution():
    """Rule: the committed notebook holds its outputs, made against tests/fixtures/run: the same
    text as a fresh execution, the primary result and its forest plot first, then the learning
    curves of both arms; executing it writes nothing into the run."""
    saved = nbformat.read(NOTEBOOK, as_version=4)
    before = files(FIXTURE)
    fresh = execute(FIXTURE_FROM_NOTEBOOK)
    assert files(FIXTURE) == before
    assert texts(saved) == texts(fresh)
    assert figures(saved) == figures(fresh) == [0, 1, 2, 0, 0, 0]
    shown = "\n".join(sum(texts(saved), []))
    assert f"{FIXTURE_FROM_NOTEBOOK}\nspace quickstart, dataset mnist_sample, 4 pairs" in shown
    assert shown.index("Primary result (fixed in advance)") < shown.index("Confirmation on")
    assert "test_acc" in shown and "num_conv=2" in shown


def test_reads_a_run_at_a_uri(tmp_path):
    """Rule: the same notebook reads a run given as a URI (here file://, pyarrow.fs as for s3://)
    and shows the same results as for the folder."""
    run = tmp_path / "copy" / "run"
    run.mkdir(parents=True)
    for file in FIXTURE.iterdir():
        (run / file.name).write_bytes(file.read_bytes())
    before = files(run)
    fresh = execute(run.as_uri())
    assert files(run) == before
    saved, shown = texts(nbformat.read(NOTEBOOK, as_version=4)), texts(fresh)
    assert shown[0][0].startswith(run.as_uri() + "\n")
    assert shown[0][0].split("\n", 1)[1] == saved[0][0].split("\n", 1)[1]
    assert shown[1:] == saved[1:]
    assert figures(fresh) == [0, 1, 2, 0, 0, 0]


def test_the_fixture_has_the_schema_of_a_fresh_run(small_run):
    """Rule: tests/fixtures/run has every table of a run made by today's code, with the same
    columns, so the saved outputs show what a user's run would (if not: remake it with
    tests/fixtures/make_run.sh)."""
    for table in sorted(p.name for p in small_run.glob("*.parquet")):
        fixture = FIXTURE / table
        assert fixture.is_file(), f"{table} is missing from the fixture"
        fresh = pd.read_parquet(small_run / table).columns
        assert list(pd.read_parquet(fixture).columns) == list(fresh), table


def test_runs_top_to_bottom_against_a_fresh_search(small_run):
    """Rule: against a run made now (another space and size than the fixture) the notebook runs
    through, shows its tables and both figures' cells, and writes nothing into the run."""
    before = files(small_run)
    fresh = execute(str(small_run))
    assert files(small_run) == before
    shown = "\n".join(sum(texts(fresh), []))
    assert "Primary result" in shown and "test_acc" in shown and "mixup" in shown
    assert figures(fresh)[1:3] == [1, 2]


def save() -> None:
    """Execute the notebook against the fixture and save it with its outputs."""
    notebook = execute(FIXTURE_FROM_NOTEBOOK)
    nbformat.write(notebook, NOTEBOOK)
    print(f"saved {NOTEBOOK} with the outputs of {FIXTURE_FROM_NOTEBOOK}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--save"]:
        sys.exit("usage: python tests/test_notebook.py --save")
    save()
