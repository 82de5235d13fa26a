"""`tune-mnist`: the console script, one command for both entry points.

tune-mnist run [OPTIONS]          # = python -m tune_mnist.run [OPTIONS]
tune-mnist results RUN_DIR        # = python -m tune_mnist.results RUN_DIR
tune-mnist --version
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata


def _run(argv: list[str]) -> int:
    from tune_mnist import run

    return run.main(argv, prog="tune-mnist run")


def _results(argv: list[str]) -> int:
    from tune_mnist import results

    return results.main(argv, prog="tune-mnist results")


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "run": (_run, "run a search and write its results (tune-mnist run --help)"),
    "results": (_results, "summarize a run folder again (tune-mnist results --help)"),
}


def version() -> str:
    """The installed distribution's version; a plain checkout that was never installed has none."""
    try:
        return metadata.version("tune_mnist")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tune-mnist",
        description=(
            "Tune small Keras CNNs on MNIST-family images with Ray Tune, each configuration with "
            "and without MixUp, and compare the two arms."
        ),
        epilog=(
            "Exit status: the command's own (tune-mnist COMMAND --help lists them); 2 without a "
            "known command first."
        ),
        allow_abbrev=False,  # `--vers` is a typo, not --version
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    # Not required here: main() says what is wrong, an unknown option or a missing command.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        # Listed for --help only: main() hands everything after the name to that command's parser.
        commands.add_parser(name, help=help_text, add_help=False, allow_abbrev=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        command, _ = COMMANDS[argv[0]]
        return command(argv[1:])
    parser = build_parser()
    _, unknown = parser.parse_known_args(argv)  # --help, --version, an unknown command: exits
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    parser.error("put the command first: tune-mnist COMMAND [OPTIONS]")  # none, or `-- run`


if __name__ == "__main__":
    sys.exit(main())
