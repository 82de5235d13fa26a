"""What every section receives: the run's settings, the figures so far, and shared data."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bench.configs import fashion
from tune_mnist.data import SearchData


@dataclass(frozen=True)
class RaceOptions:
    """The race section's settings (bench/race.py): run only when named in --sections."""

    minutes: float = 30.0  # wall-clock budget of each path
    figure: Path = Path("race.png")
    max_epochs: int = 9  # ASHA's and Hyperband's largest rung (grace period 1, factor 3)
    train_subset: int | None = None  # the first N training images (a quick try of the section)
    target: float = 0.92  # test accuracy of the model chosen on validation


@dataclass
class Context:
    """One benchmark run. Sections read it and return their own figures."""

    quick: bool
    sections: frozenset[str]  # the sections selected for this run
    scratch: Path  # a temporary folder, removed after the run
    figures: dict[str, Any]  # everything measured so far (the JSON document)
    # Figures one section measured for a later one, e.g. the baselines the pipeline section times
    # in turns with its own arms when both sections run.
    carried: dict[str, Any] = field(default_factory=dict)
    race: RaceOptions = field(default_factory=RaceOptions)

    @property
    def cores(self) -> int:
        return os.cpu_count() or 1

    @property
    def measure_s(self) -> float:
        """About how long one timed epoch or window lasts."""
        return 2.5 if self.quick else 10.0

    @property
    def rounds(self) -> int:
        """How many turns `interleaved` times each arm (the best counts)."""
        return 2 if self.quick else 3

    @cached_property
    def search(self) -> SearchData:
        """The Fashion-MNIST training subset the in-process sections share (loaded once)."""
        return fashion(3000 if self.quick else 20000)


def log(*parts: object) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print("  ..", *parts, file=sys.stderr, flush=True)
