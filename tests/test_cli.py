"""The `tune-mnist` console script: subcommands dispatch to the two entry points."""

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
