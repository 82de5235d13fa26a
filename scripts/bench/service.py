"""Running the service itself, `python -m tune_mnist.run`, and watching its processes' memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench import REPO


class PeakRSS:
    """Samples the RSS of a process tree; keeps each process's peak and its command line."""

    def __init__(self, root_pid: int, interval: float = 0.2) -> None:
        self.root, self.interval = psutil.Process(root_pid), interval
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return  # the root has exited: the run is over
            for proc in procs:
                self._sample(proc)
            self._stop.wait(self.interval)

    def _sample(self, proc: psutil.Process) -> None:
        try:
            rss = proc.memory_info().rss
            name = " ".join(proc.cmdline())[:120] or proc.name()
        except psutil.Error:
            return  # exited between listing and sampling
        old = self.peaks.get(proc.pid, (0, name))
        # Ray renames its workers "ray::<task>" once they run one: keep that name, it says which
        # process was a trial.
        self.peaks[proc.pid] = (
            max(old[0], rss),
            name if name.startswith("ray::") else old[1] or name,
        )

    def stop(self) -> dict[int, tuple[int, str]]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def service_env() -> dict[str, str]:
    """The environment with this checkout first on PYTHONPATH, so the service runs its code."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_service(
    args: list[str], storage: Path, name: str, *, watch_memory: bool = False
) -> dict[str, Any]:
    """`python -m tune_mnist.run ...` timed from the command's start; first epoch from Tune's
    result.json, phases from the run's manifest, peak RSS of its processes if `watch_memory`."""
    started = time.time()
    command = [sys.executable, "-m", "tune_mnist.run", *args]
    proc = subprocess.Popen(
        [*command, "--storage-path", str(storage), "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=service_env(),
        cwd=REPO,
    )
    monitor = PeakRSS(proc.pid) if watch_memory else None
    output, _ = proc.communicate()
    wall = time.time() - started
    if proc.returncode:
        raise RuntimeError(f"tune_mnist.run failed ({proc.returncode}):\n{output[-3000:]}")
    found: dict[str, Any] = {
        "wall_seconds": wall,
        "seconds": _phase_seconds(storage / name),
        "first_epoch_seconds": _first_epoch_seconds(storage / name, started),
    }
    if monitor:
        found.update(_memory_figures(monitor.stop(), proc.pid))
    return found


def _phase_seconds(run_dir: Path) -> dict[str, float]:
    """Where the run's wall time went, by phase, as its manifest records it."""
    from tune_mnist.files import read_manifest

    return read_manifest(run_dir)["seconds"]


def _first_epoch_seconds(run_dir: Path, started: float) -> float | None:
    """Seconds from `started` to the first epoch any trial reported (None: no trial reported)."""
    firsts = []
    for result in run_dir.glob("*/result.json"):
        lines = result.read_text().splitlines()
        if lines:
            firsts.append(json.loads(lines[0])["timestamp"])
    return (min(firsts) - started) if firsts else None


def _memory_figures(peaks: dict[int, tuple[int, str]], driver_pid: int) -> dict[str, Any]:
    """Peak RSS in MiB of the driver, of the largest trial process, and of all processes summed."""
    # A trial runs in a Ray worker named after the trainable (or Tune's function wrapper).
    trials = [rss for rss, name in peaks.values() if "train_pair" in name or "ImplicitFunc" in name]
    return {
        "driver_peak_rss_mib": peaks.get(driver_pid, (0, ""))[0] / 2**20,
        "trial_peak_rss_mib": max(trials) / 2**20 if trials else None,
        "all_processes_peak_rss_mib": sum(rss for rss, _ in peaks.values()) / 2**20,
    }


def write_space(directory: Path, name: str, keys: dict[str, Any]) -> Path:
    """A search-space YAML file for the service, `directory/name.yaml`."""
    import yaml

    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(keys))
    return path
