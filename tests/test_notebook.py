"""scripts/analysis.ipynb runs top to bottom against a real run."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "scripts" / "analysis.ipynb"


def test_analysis_notebook_runs(small_run, monkeypatch):
    monkeypatch.setenv("TUNE_MNIST_RUN_DIR", str(small_run))
    # The kernel imports tune_mnist from this checkout, whatever is installed.
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(NOTEBOOK.parent.parent), os.environ.get("PYTHONPATH")])),
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "test_acc" in text and "mixup" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
