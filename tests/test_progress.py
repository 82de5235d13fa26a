"""Live progress: the time-left estimate and the line per pair (pure), and a real search."""

import re
import subprocess
import sys

from conftest import SMALL_SPACE, run_search, search_failed

from tune_mnist.progress import (
    format_duration,
    last_error_line,
    pair_done_line,
    pair_failed_line,
    seconds_left,
)


def test_durations_read_like_a_person_says_them():
    assert format_duration(0) == "0 s"
    assert format_duration(44.6) == "45 s"
    assert format_duration(120) == "2 min"
    assert format_duration(130) == "2 min 10 s"
    assert format_duration(3900) == "1 h 05 min"


def test_time_left_counts_remaining_pair_epochs_shared_by_the_pairs_running_at_once():
    # 9 pairs of 4 epochs, 3 finished, 2 running (1 and 3 epochs done), 4 not started:
    # 4 * 4 + (3 + 1) = 20 pair-epochs of 10 s, 2 at once.
    left = seconds_left(
        pairs_total=9, pairs_finished=3, running_epochs=[1, 3], max_epochs=4,
        seconds_per_pair_epoch=10.0, at_once=2,
    )  # fmt: skip
    assert left == 100.0
    one_at_a_time = seconds_left(
        pairs_total=9, pairs_finished=3, running_epochs=[1, 3], max_epochs=4,
        seconds_per_pair_epoch=10.0, at_once=1,
    )  # fmt: skip
    assert one_at_a_time == 200.0
    # Nothing left; a running pair past max_epochs (never negative); no concurrency seen yet.
    assert seconds_left(
        pairs_total=2, pairs_finished=2, running_epochs=[], max_epochs=4,
        seconds_per_pair_epoch=10.0, at_once=2,
    ) == 0  # fmt: skip
    assert seconds_left(
        pairs_total=2, pairs_finished=1, running_epochs=[5], max_epochs=4,
        seconds_per_pair_epoch=10.0, at_once=0,
    ) == 0  # fmt: skip


def test_pair_lines_say_what_finished_how_well_and_how_long_is_left():
    line = pair_done_line(
        number=3, total=9, label="num_conv=2 num_dense=1", seed=0,
        val_acc={"plain": 0.85734, "mixup": 0.84661}, epochs=4, elapsed=130, left=240,
    )  # fmt: skip
    assert line == (
        "pair 3/9 done (num_conv=2 num_dense=1, seed 0): plain val_acc 0.8573, mixup 0.8466 "
        "after 4 epochs; 2 min 10 s elapsed, about 4 min left"
    )
    asha = pair_done_line(
        number=9, total=9, label="base", seed=2, val_acc={"plain": 0.5, "mixup": None},
        epochs=1, elapsed=59, left=None, upper_bound=True,
    )  # fmt: skip
    assert asha.endswith("mixup diverged after 1 epoch; 59 s elapsed"), asha
    failed = pair_failed_line(
        number=4, total=9, label="num_conv=1", seed=1, error="ValueError: bad", epochs=0,
        elapsed=61, left=30, upper_bound=True,
    )  # fmt: skip
    assert failed == (
        "pair 4/9 failed (num_conv=1, seed 1) after 0 epochs: ValueError: bad; "
        "1 min 1 s elapsed, at most 30 s left"
    )


def test_a_failed_pair_shows_its_errors_last_line(tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  File x\nKeyError: 'a'\n\n")
    assert last_error_line(error_file) == "KeyError: 'a'"
    assert last_error_line(tmp_path / "missing.txt").startswith("unknown error")
    assert last_error_line(None).startswith("unknown error")


def test_a_search_prints_one_line_per_pair_and_none_of_tunes_tables(tmp_path):
    (tmp_path / "space.yaml").write_text(SMALL_SPACE)
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), "--seeds", "1", "--dataset", "mnist_sample",
        "--train-subset", "100", "--max-epochs", "2", "--storage-path", str(tmp_path / "runs"),
        "--name", "quiet",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    done = [line for line in result.stdout.splitlines() if re.match(r"pair \d/2 done ", line)]
    assert [line[:15] for line in done] == ["pair 1/2 done (", "pair 2/2 done ("], result.stdout
    assert all("after 2 epochs" in line and "elapsed" in line for line in done), done
    assert "left" in done[0] and "left" not in done[1], done
    assert "╭" not in result.stdout and "│" not in result.stdout, result.stdout
    assert "Trial status" not in result.stdout, result.stdout
    assert "Pairs: 2 TERMINATED" in result.stdout  # the comparison still follows
    # Neither the driver nor the workers (whose lines Ray relays) show TensorFlow's start-up lines
    # or Ray's INFO lines.
    noise = ("oneDNN custom operations", "cuInit", "cuda drivers", "Started a local Ray instance")
    output = (result.stdout + result.stderr).splitlines()
    assert not [line for line in output if any(word in line for word in noise)], output


def test_a_worker_that_trains_many_pairs_shows_no_warnings(tmp_path):
    """Rule: by default a search shows its own lines only. One reused worker trains 7 pairs here,
    each with new models: TensorFlow warns of retracing after the fifth traced function, and Ray
    relays what a worker prints (prefixed "(train_pair pid=N)"): neither reaches the terminal."""
    (tmp_path / "space.yaml").write_text("num_conv: 0\nnum_dense: 0\nbatch_size: 50\nseeds: 7\n")
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), "--train-subset", "100", "--max-epochs", "1",
        "--max-concurrent", "1", "--storage-path", str(tmp_path / "runs"), "--name", "many",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    output = (result.stdout + result.stderr).splitlines()
    relayed = [line for line in output if "pid=" in line or "retracing" in line]
    assert not relayed, relayed
    assert not [line for line in output if "WARNING" in line or "\x1b[" in line], output


EXITING = """
import sys
from tune_mnist.trainable import _no_exit_reports

class Finalized:
    def __init__(self, error):
        self.error = error

    def __del__(self):
        raise self.error

if sys.argv[1] == "quiet":
    _no_exit_reports()
    _no_exit_reports()  # a reused worker sets it up for every pair
Finalized(SystemExit(1))  # Ray's SIGTERM handler, landing in a finalizer
Finalized(ValueError("a finalizer's bug"))
"""


def test_a_worker_told_to_exit_inside_a_finalizer_prints_no_report():
    """Rule: when Ray's SIGTERM handler raises SystemExit inside a weakref callback or finalizer,
    Python reports it as "Exception ignored in ..." with a traceback, which Ray relays to the
    search's terminal; workers drop that report and keep every other one."""
    runs = {
        mode: subprocess.run([sys.executable, "-c", EXITING, mode], capture_output=True, text=True)
        for mode in ("plain", "quiet")
    }
    assert "SystemExit" in runs["plain"].stderr  # what the workers printed before
    assert "SystemExit" not in runs["quiet"].stderr, runs["quiet"].stderr
    assert "ValueError: a finalizer's bug" in runs["quiet"].stderr, runs["quiet"].stderr
    assert runs["quiet"].stderr.count("Exception ignored in") == 1, runs["quiet"].stderr
