"""The Python API, `tune_mnist.search` and `SearchConfig`; the command line as a layer over it."""

import json
import re
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

import tune_mnist
from tune_mnist import run, tuning
from tune_mnist.config import (
    WORKER_MAX_TRIALS,
    SearchConfig,
    UsageError,
    option_fields,
)
from tune_mnist.data import DataError
from tune_mnist.results import Tables

REPO = Path(__file__).resolve().parent.parent


def _dests() -> dict[str, object]:
    """Every option of the command line: its dest and its default."""
    parser = run.build_parser()
    return {a.dest: a.default for a in parser._actions if a.option_strings and a.dest != "help"}


def test_every_option_is_a_config_field_with_the_same_default_and_back():
    """Rule: each dest of `python -m tune_mnist.run`'s parser is a SearchConfig field of the same
    name and default, and each field but the manifest's own is an option."""
    dests = _dests()
    assert len(dests) > 30
    assert sorted(dests) == sorted(option_fields())
    defaults = {item.name: item.default for item in fields(SearchConfig)}
    differing = {name: (default, defaults[name]) for name, default in dests.items()
                 if default != defaults[name]}  # fmt: skip
    assert not differing, differing


@pytest.mark.parametrize(
    "config",
    [
        SearchConfig(),
        SearchConfig(space="seed_grid", seeds=3, max_epochs=4, yes=True, train_subset=100),
        SearchConfig(scheduler="asha", reduction_factor=2.0, reuse_workers=False, patience=2),
        SearchConfig(name="study", resume=True, report=True, gpus_per_trial=0.5, seed=7),
        SearchConfig(until_decided=True, precision=0.01, worker_max_trials=WORKER_MAX_TRIALS + 1),
    ],
    ids=["defaults", "what", "scheduling", "resume", "rounds"],
)
def test_a_configs_command_line_parses_back_to_it(config):
    """Rule: the command a run started from Python records (`command_line`) is the same search
    when run from the shell."""
    command = config.command_line()
    assert command[:3] == ["python", "-m", "tune_mnist.run"]
    assert run.parse_config(command[3:]) == config


def test_an_old_manifests_arguments_resume_with_new_options_and_new_names():
    """Rule: a manifest from before newer options (missing keys), with renamed values (scheduler
    'grid') and options since removed, reads back as a SearchConfig that runs it as it began."""
    old = asdict(SearchConfig(space="quickstart", name="old", scheduler="asha"))
    for newer in ("reuse_workers", "worker_max_trials", "search_alg", "until_decided"):
        del old[newer]
    old |= {"scheduler": "grid", "a_removed_option": 1}
    resumed = SearchConfig.from_manifest(old, resume=True)
    assert resumed.scheduler == "fifo" and resumed.search_alg == "random"
    assert resumed.reuse_workers is False  # as runs before reused workers ran: a fresh process
    assert resumed.worker_max_trials == WORKER_MAX_TRIALS and resumed.resume is True
    assert SearchConfig.from_manifest(resumed.to_manifest()) == resumed  # JSON round trip
    assert json.loads(json.dumps(resumed.to_manifest())) == resumed.to_manifest()


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"max_epochs": 0}, UsageError, "max_epochs (--max-epochs) must be a positive integer"),
        ({"max_epochs": "2"}, UsageError, "max_epochs (--max-epochs) must be int"),
        ({"yes": 1}, UsageError, "yes (--yes) must be bool"),
        ({"scheduler": "hyperband"}, UsageError, "one of fifo, asha"),
        ({"dataset": "cifar"}, UsageError, "one of mnist_sample"),
        ({"name": "../x"}, UsageError, "--name"),
        ({"resume": True}, UsageError, "--resume needs --name"),
        ({"val_fraction": 1.5}, DataError, "--val-fraction"),
        ({"cpus_per_trial": 0}, UsageError, "--cpus-per-trial"),
        ({"learning_rate": 0.1}, TypeError, "learning_rate"),
    ],
)
def test_bad_input_raises_before_anything_starts(options, error, message, tmp_path):
    """Rule: `search` with a bad option raises one exception naming the option (the command line
    turns it into exit status 2), and writes nothing."""
    with pytest.raises(error, match=re.escape(message)):
        tune_mnist.search(storage_path=tmp_path / "runs", **options)
    assert not (tmp_path / "runs").exists()


def test_importing_the_package_and_its_config_starts_neither_ray_nor_tensorflow():
    code = (
        "import sys; from tune_mnist import SearchConfig, search; SearchConfig(max_epochs=3); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'tensorflow', 'keras'}))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert shown.returncode == 0 and shown.stdout.strip() == "[]", shown.stderr[-2000:]
    assert tune_mnist.search is tuning.search


def _recording_search(monkeypatch, outcome):
    """Replaces `tune_mnist.search` by one that records its call and returns or raises."""
    calls = []

    def search(config, *, command):
        calls.append((config, command))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(tune_mnist, "search", search)
    return calls


def _tables(run_dir: Path, statuses: list[str]) -> Tables:
    trials = pd.DataFrame({"pair_id": [f"p{i}" for i in range(len(statuses))], "status": statuses})
    return SimpleNamespace(trials=trials, run_dir=str(run_dir))


def test_the_command_line_runs_tune_mnist_search_with_its_config(monkeypatch, tmp_path, capsys):
    """Rule: `python -m tune_mnist.run ARGS` is `tune_mnist.search(parse_config(ARGS))`, with the
    outcome as the exit status: 0 all finished, 3 a pair failed, 130 interrupted, 2 bad input."""
    argv = ["--space", "seed_grid", "--max-epochs", "3", "--storage-path", str(tmp_path)]
    calls = _recording_search(monkeypatch, _tables(tmp_path, ["TERMINATED", "TERMINATED"]))
    assert run.main(argv) == 0
    [(config, command)] = calls
    assert config == SearchConfig(space="seed_grid", max_epochs=3, storage_path=str(tmp_path))
    assert command == ["tune_mnist.run", *argv]  # the manifest records the command as typed

    _recording_search(monkeypatch, _tables(tmp_path, ["TERMINATED", "ERROR"]))
    assert run.main(argv) == tuning.EXIT_PARTIAL

    interrupted = tuning.SearchInterrupted(_tables(tmp_path / "study", ["RUNNING"]), 1)
    _recording_search(monkeypatch, interrupted)
    capsys.readouterr()
    assert run.main(argv) == tuning.EXIT_INTERRUPTED
    assert capsys.readouterr().out.strip() == (
        f"Interrupted: 1 pairs unfinished. Resume with: python -m tune_mnist.run --resume "
        f"--storage-path {tmp_path} --name study"
    )

    _recording_search(monkeypatch, UsageError("--space x: no such file"))
    assert run.main(argv) == tuning.EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: --space x: no such file\n"


def _from_python_example() -> str:
    """The first code block of docs/running.md's 'From Python'."""
    text = (REPO / "docs" / "running.md").read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL).group(1)


CHECK = """
from tune_mnist import results
loaded = results.load(tables.run_dir)
for name in ("trials", "epochs", "val_predictions", "comparison", "test_eval", "test_pairs"):
    pd.testing.assert_frame_equal(getattr(tables, name), getattr(loaded, name), check_dtype=False)
print("RUN_DIR=" + tables.run_dir)
"""


def test_a_notebook_cell_runs_a_quick_search_and_reads_its_results(tmp_path, monkeypatch):
    """Rule: the documented example runs as it stands in a notebook (a real search on real digits,
    real Ray and TensorFlow), returns the tables that `results.load` reads from the run, and
    records the command line that repeats it."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(_from_python_example()),
        nbformat.v4.new_code_cell("import pandas as pd\n" + CHECK),
    ]
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    example, check = (cell.outputs for cell in notebook.cells)
    shown = [o.get("data", {}).get("text/plain", "") for o in example]
    assert any("mixup" in text or "val_acc" in text for text in shown), example
    printed = "".join(o.get("text", "") for o in check)
    run_dir = Path(tmp_path, re.search(r"RUN_DIR=(\S+)", printed).group(1))
    assert run_dir.parent == tmp_path / "tune_results"

    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}  # 2 pairs, 2 arms each
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    command = ["python", "-m", "tune_mnist.run",
               "--space", "quickstart", "--train-subset", "200", "--max-epochs", "1"]  # fmt: skip
    assert manifest["command"] == command
    config = SearchConfig.from_manifest(manifest["args"])
    assert config == run.parse_config(command[3:])
