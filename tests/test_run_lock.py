"""One driver per run: a live driver's lock refuses a second one; a dead driver's is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tune_mnist import run_lock
from tune_mnist.run_lock import LEASE_S, LOCK_FILE, RunLockedError, hold, holder


def write_lock(run_dir, pid: int, host: str | None = None, started: float | None = None):
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    lock.write_text(
        json.dumps(
            {
                "pid": pid,
                "host": host or socket.gethostname(),
                "started": time.time() if started is None else started,
            }
        )
    )
    return lock


def dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_drivers_lock_refuses_a_second_driver_naming_it(tmp_path):
    lock = write_lock(tmp_path / "run", os.getpid())
    before = lock.read_bytes()
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
        with hold(str(tmp_path / "run")):
            pass
    assert lock.read_bytes() == before  # the holder's lock is left alone


def test_a_dead_drivers_lock_is_taken_over_and_removed_at_the_end(tmp_path):
    write_lock(tmp_path / "run", dead_pid())
    assert holder(str(tmp_path / "run")) is None
    with hold(str(tmp_path / "run")):
        held = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_lock_whose_pid_now_belongs_to_a_later_process_is_stale(tmp_path):
    """A restarted container numbers its processes anew: the pid is alive, but not the driver."""
    write_lock(tmp_path / "run", os.getpid(), started=time.time() - 10 * 24 * 3600)
    assert holder(str(tmp_path / "run")) is None


def test_another_hosts_lock_holds_while_its_heartbeat_is_fresh(tmp_path):
    lock = write_lock(tmp_path / "run", 1, host="other-host")
    assert holder(str(tmp_path / "run")).host == "other-host"
    stale = time.time() - LEASE_S - 1
    os.utime(lock, (stale, stale))
    assert holder(str(tmp_path / "run")) is None
    with hold(str(tmp_path / "run")):
        assert holder(str(tmp_path / "run")).pid == os.getpid()


def test_the_holder_refreshes_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.05)
    with hold(str(tmp_path / "run")):
        lock = tmp_path / "run" / LOCK_FILE
        old = time.time() - 1000
        os.utime(lock, (old, old))
        time.sleep(0.5)
        assert time.time() - lock.stat().st_mtime < 5


def test_the_lock_is_removed_on_an_exception(tmp_path):
    with pytest.raises(ValueError), hold(str(tmp_path / "run")):
        raise ValueError("a search failed")
    assert not (tmp_path / "run" / LOCK_FILE).exists()


HOLD_AND_WAIT = """
import sys, time
from tune_mnist.run_lock import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_lock_is_removed_when_the_driver_is_stopped(tmp_path, signum):
    """SIGTERM is what `ray job stop` and a pod's shutdown send; SIGINT is Ctrl-C."""
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_AND_WAIT), str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout.readline().strip() == "held"
    assert holder(str(tmp_path / "run")).pid == driver.pid
    driver.send_signal(signum)
    assert driver.wait(timeout=30) != 0
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_uri_run_is_not_locked():
    with hold("s3://bucket/runs/study"):
        assert holder("s3://bucket/runs/study") is None


def test_a_half_written_lock_holds_until_its_lease_runs_out(tmp_path):
    """A driver between creating its lock and writing it: not yet taken over."""
    lock = tmp_path / "run" / LOCK_FILE
    lock.parent.mkdir()
    lock.write_text("")
    with pytest.raises(RunLockedError, match="an unknown host"), hold(str(tmp_path / "run")):
        pass
    stale = time.time() - LEASE_S - 1
    os.utime(lock, (stale, stale))
    with hold(str(tmp_path / "run")):
        assert holder(str(tmp_path / "run")).pid == os.getpid()
