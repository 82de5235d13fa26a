"""Bad input: one line on stderr, exit status 2, before Ray or training starts."""

import subprocess
import sys

import pytest


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tune_mnist.run", *args], capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def test_help_explains_every_option():
    out = run_cli("--help").stdout
    for flag in ("--space", "--dataset", "--data-dir", "--val-fraction", "--train-subset", "--scheduler",
                 "--max-epochs", "--grace-period", "--reduction-factor", "--num-samples", "--seeds",
                 "--max-concurrent", "--cpus-per-trial", "--gpus-per-trial", "--patience",
                 "--storage-path", "--name", "--resume", "--address", "--seed"):
        assert flag in out


@pytest.mark.parametrize(
    "space_text, args, message",
    [
        ("num_conv: [2\n", [], "not valid YAML"),
        ("colour: red\n", [], "unknown key 'colour'"),
        ("dropout: 1.5\n", [], "key 'dropout'"),
        ("learning_rate: -1\n", [], "key 'learning_rate'"),
        ("num_conv: {grid: []}\n", [], "non-empty list"),
        ("num_conv: 2\n", ["--name", "../escape"], "--name"),
        ("num_conv: 2\n", ["--name", "a/b"], "--name"),
        ("num_conv: 2\n", ["--val-fraction", "1.5"], "--val-fraction"),
        ("num_conv: 2\n", ["--dataset", "mnist", "--data-dir", "/nonexistent"], "--data-dir"),
        ("num_conv: 2\n", ["--resume", "--name", "never-ran"], "no run at"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, space_text, args, message, monkeypatch):
    space = tmp_path / "space.yaml"
    space.write_text(space_text)
    monkeypatch.setenv("HOME", str(tmp_path))  # no Keras cache to fall back on
    result = run_cli("--space", str(space), "--storage-path", str(tmp_path / "out"), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


def test_unwritable_storage_path_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("--storage-path", str(blocker / "runs"), "--name", "x")
    assert result.returncode == 2 and "cannot write there" in result.stderr
