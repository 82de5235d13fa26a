"""The `tune-mnist` console script: subcommands dispatch to the two entry points."""

import re

import pytest

from tune_mnist import cli


def test_help_lists_the_subcommands(capsys):
    """Rule: `tune-mnist --help` names every subcommand."""
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("run", "results", "--version"))


def test_version_is_the_installed_distributions(capsys):
    """Rule: `tune-mnist --version` prints importlib.metadata's version of tune_mnist."""
    from importlib import metadata

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tune-mnist {metadata.version('tune_mnist')}"


@pytest.mark.parametrize("argv", [[], ["bogus"], ["--", "run"]])
def test_without_a_known_command_first_it_exits_2(argv, capsys):
    """Rule: no subcommand, an unknown one, or one not in first place: usage error, status 2."""
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2 and "usage: tune-mnist" in capsys.readouterr().err


def test_subcommands_reach_their_entry_points_with_their_arguments(tmp_path, capsys):
    """Rule: `tune-mnist run ARGS` is `python -m tune_mnist.run ARGS`, and so for results."""
    out = tmp_path / "out"
    assert cli.main(["run", "--space", "nosuch", "--storage-path", str(out)]) == 2
    assert "not a built-in space" in capsys.readouterr().err
    assert cli.main(["results", str(tmp_path)]) == 2
    assert "no trials found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "usage: tune-mnist run" in capsys.readouterr().out


# The command line without surprises, for both commands (and the `tune-mnist` dispatcher).


def _exit_status(argv: list[str]) -> int:
    """What the shell would see: main's return value, or argparse's SystemExit code."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code


def _help(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # each option's help on one line
    assert _exit_status([command, "--help"]) == 0
    return capsys.readouterr().out


def _entries(help_text: str) -> dict[str, str]:
    """Each option's entry in --help, lines joined: {"--space": "--space SPACE a built-in..."}."""
    entries: dict[str, str] = {}
    option = None
    for line in help_text.splitlines():
        if re.match(r"  -", line):
            option = line.split()[0].rstrip(",")
            entries[option] = line.strip()
        elif option and line.startswith("   "):
            entries[option] += " " + line.strip()
        else:
            option = None
    return entries


@pytest.mark.parametrize(
    "argv, typed",
    [
        (["run", "--num-sample", "3", "--space", "nosuch"], "--num-sample"),
        (["results", "RUN_DIR", "--plo"], "--plo"),
        (["--vers"], "--vers"),
    ],
)
def test_an_abbreviated_option_is_refused_with_exit_2(argv, typed, capsys, tmp_path):
    """Rule: only whole option names count: `--num-sample 3` is an error, not --num-samples."""
    argv = [str(tmp_path) if a == "RUN_DIR" else a for a in argv]
    assert _exit_status(argv) == 2
    assert typed in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "results"])
def test_each_option_shows_one_default(command, capsys, monkeypatch):
    """Rule: an option's help states its default once, and never as a bare None."""
    entries = _entries(_help(command, capsys, monkeypatch))
    assert len(entries) > 4
    twice = [entry for entry in entries.values() if entry.count("(default:") > 1]
    assert not twice, twice
    assert not [entry for entry in entries.values() if "(default: None)" in entry]


def test_defaults_that_are_not_values_are_said_in_words(capsys, monkeypatch):
    entries = _entries(_help("run", capsys, monkeypatch))
    assert entries["--space"].endswith("(default: quickstart, or the resumed run's)")
    assert entries["--max-trials"].endswith("(default: 1000)")
    assert entries["--address"].endswith("(default: start a local Ray)")


@pytest.mark.parametrize("command", ["run", "results"])
def test_help_lists_every_exit_status(command, capsys, monkeypatch):
    """Rule: every status the command can end with is explained at the end of its --help."""
    from tune_mnist import results, tuning

    statuses = {
        "run": (0, tuning.EXIT_BAD_INPUT, tuning.EXIT_PARTIAL, tuning.EXIT_STORAGE,
                tuning.EXIT_TIME_BUDGET, tuning.EXIT_INTERRUPTED),
        "results": (0, results.EXIT_BAD_INPUT, results.EXIT_PARTIAL, results.EXIT_INTERRUPTED),
    }[command]  # fmt: skip
    text = _help(command, capsys, monkeypatch)
    assert "Exit status" in text
    epilog = text[text.index("Exit status") :]
    missing = [s for s in statuses if not re.search(rf"(?<![\d.]){s}(?![\d.])", epilog)]
    assert not missing, epilog


def test_scheduler_names_are_ray_tunes(capsys, monkeypatch):
    """Rule: --scheduler offers Tune's names, fifo and asha; the old name grid is not offered."""
    entry = _entries(_help("run", capsys, monkeypatch))["--scheduler"]
    assert entry.startswith("--scheduler {fifo,asha} ") and "FIFOScheduler" in entry
    assert "grid" not in entry and entry.endswith("(default: fifo)")


def test_patience_says_what_it_watches(capsys, monkeypatch):
    """Rule: --patience's help names the score it waits on: pair_val_acc, the arms' mean val_acc."""
    entry = _entries(_help("run", capsys, monkeypatch))["--patience"]
    assert "pair_val_acc" in entry and "mean of the two arms' val_acc" in entry
