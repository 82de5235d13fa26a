"""One driver per run: a lock file in a local run folder, held while a search writes there.

The lock is created with ``O_CREAT | O_EXCL``, which the filesystem grants to one process only
(NFS v3 and later too), and holds JSON naming its holder: pid, host and start time. It is removed
when the search ends, on an exception, Ctrl-C or SIGTERM (``ray job stop``). A driver killed
outright (SIGKILL, a lost node) leaves it behind; the next driver takes it over when it is stale:

- same host: its pid is gone, or now belongs to a process that started after the lock was taken;
- another host (a pod restarted elsewhere): the holder refreshes the file's time every
  `HEARTBEAT_S` seconds, so a lock untouched for `LEASE_S` seconds is a dead driver's.

A run at a URI (``s3://``...) is not locked: object stores have no exclusive create, and the
driver never starts a second search on a run by itself; never run two drivers on one URI run.

>>> import tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> with hold(str(run)):
...     holder(str(run)) is not None
True
>>> holder(str(run)) is None
True
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tune_mnist.storage import is_uri

LOCK_FILE = ".driver.lock"
HEARTBEAT_S = 60.0
# Five missed heartbeats: a lease clock skew between hosts or a slow shared filesystem cannot end.
LEASE_S = 300.0


class RunLockedError(Exception):
    """Another driver is running on this run folder; the message names it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock, as written in the lock file."""

    pid: int
    host: str
    started: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, since {since}"


def holder(run_dir: str) -> Holder | None:
    """The live driver holding the run's lock, or None (no lock, a stale one, or a URI run)."""
    if is_uri(run_dir):
        return None
    try:
        found = _read(Path(run_dir, LOCK_FILE))
    except OSError:  # an unreadable folder: the search's write probe says what is wrong
        return None
    return None if found is None or _is_stale(*found) else found[0]


@contextmanager
def hold(run_dir: str) -> Iterator[None]:
    """Hold the run's lock for the block; RunLockedError when a live driver holds it.

    Nothing is locked for a URI run (see the module's docstring).
    """
    if is_uri(run_dir):
        yield
        return
    path = Path(run_dir, LOCK_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    _acquire(path)
    stop = threading.Event()
    heartbeat = threading.Thread(target=_beat, args=(path, stop), daemon=True)
    heartbeat.start()
    try:
        with _released_on_sigterm(path, stop):
            yield
    finally:
        stop.set()
        _release(path)


def _acquire(path: Path) -> None:
    mine = Holder(os.getpid(), socket.gethostname(), time.time())
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found = _read(path)
            if found is not None and not _is_stale(*found):
                raise RunLockedError(
                    f"{path.parent} is in use by another driver ({found[0].describe()}); wait "
                    f"for it to end, or if it no longer runs, delete {path}"
                ) from None
            _remove_stale(path, found)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(vars(mine), f)
        return
    raise RunLockedError(f"{path.parent} is in use: another driver took its lock {path} just now")


def _read(path: Path) -> tuple[Holder, os.stat_result] | None:
    """The lock's holder and the file's stat, or None when there is no lock.

    A lock that exists but cannot be parsed (its writer was killed between create and write)
    reads as pid 0 on an unknown host: stale once its lease ran out.
    """
    try:
        with open(path) as f:
            stat = os.fstat(f.fileno())
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        data: Any = json.loads(text)
        found = Holder(int(data["pid"]), str(data["host"]), float(data["started"]))
    except (ValueError, KeyError, TypeError):
        found = Holder(0, "an unknown host", stat.st_mtime)
    return found, stat


def _is_stale(found: Holder, stat: os.stat_result) -> bool:
    if found.host != socket.gethostname() or found.pid <= 0:
        return time.time() - stat.st_mtime > LEASE_S
    try:
        os.kill(found.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    started = _process_start(found.pid)
    # The pid was reused (a restarted container numbers its processes from 1 again): its process
    # started after the lock was taken (1 s: /proc's clock ticks and btime's whole seconds).
    return started is not None and started > found.started + 1.0


def _process_start(pid: int) -> float | None:
    """When a process started (seconds since the epoch) from Linux's /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    ticks = float(stat.rpartition(")")[2].split()[19])  # field 22: starttime, after "pid (comm)"
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _remove_stale(path: Path, found: tuple[Holder, os.stat_result] | None) -> None:
    """Remove the stale lock just read, unless another driver replaced it meanwhile."""
    if found is None:
        return
    try:
        if os.stat(path).st_ino == found[1].st_ino:
            path.unlink()
    except FileNotFoundError:
        pass


def _beat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(path)
        except OSError:  # the storage is failing; the search reports that itself
            pass


def _release(path: Path) -> None:
    found = _read(path)
    if found is not None and (found[0].pid, found[0].host) == (os.getpid(), socket.gethostname()):
        path.unlink(missing_ok=True)


@contextmanager
def _released_on_sigterm(path: Path, stop: threading.Event) -> Iterator[None]:
    """SIGTERM (``ray job stop``, a pod's shutdown) removes the lock, then ends the process as
    before; Python's default would end it without running any ``finally``."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()
        _release(path)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
