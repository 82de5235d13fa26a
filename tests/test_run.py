"""Bad input: one line on stderr, exit status 2, before Ray or training starts."""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import run_search, search_failed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tune_mnist.space import KEYS

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return run_search(*args, timeout=120, cwd=cwd)


# main() in a fresh interpreter that says, after main returns, whether Ray was ever imported.
REPORT_RAY = """
import sys
from tune_mnist.run import main
status = main(sys.argv[1:])
print("ray imported:", any(m == "ray" or m.startswith("ray.") for m in sys.modules), flush=True)
sys.exit(status)
"""


def run_main_reporting_ray(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", REPORT_RAY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,  # "-c" imports tune_mnist from the working directory: this checkout
    )


def test_help_explains_every_option():
    """Rule: every option of the parser has a help text, and --help shows each option string."""
    from tune_mnist.run import build_parser

    out = run_cli("--help").stdout
    options = [action for action in build_parser()._actions if action.option_strings]
    assert len(options) > 20  # the parser's own options, not an empty list
    for action in options:
        assert action.help and action.help.strip(), action.option_strings
        for option in action.option_strings:
            # Whole word: "--seed" must not match inside "--seeds", nor "--name" inside "--names".
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", out), option


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
        ("num_conv: {grid: [1, 2]}\n", ["--search-alg", "tpe"], "no random key"),
        ("num_conv: 2\n", ["--search-alg", "bayes"], "--search-alg"),
        ("num_conv: 2\n", ["--max-failures", "-1"], "--max-failures -1 (unlimited) is refused"),
        ("num_conv: 2\n", ["--trial-timeout", "0"], "--trial-timeout"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, space_text, args, message, monkeypatch):
    """Rule: bad input ends in one 'error:' line and exit 2, before Ray is imported and before
    anything is written under --storage-path (no manifest, no trial folder)."""
    space = tmp_path / "space.yaml"
    space.write_text(space_text)
    monkeypatch.setenv("HOME", str(tmp_path))  # no Keras cache to fall back on
    out = tmp_path / "out"
    result = run_main_reporting_ray("--space", str(space), "--storage-path", str(out), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ray imported: False", result.stdout
    # The run folder itself may exist (the write probe makes it); nothing may be in it.
    written = [p for p in out.rglob("*") if p.is_file() or len(p.relative_to(out).parts) > 1]
    assert written == [], written


def test_unwritable_storage_path_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("--storage-path", str(blocker / "runs"), "--name", "x")
    assert result.returncode == 2 and "cannot write there" in result.stderr


def test_huge_grids_need_yes(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("num_conv: {grid: [0, 1]}\nseeds: 2\n")
    result = run_cli(
        "--space", str(space), "--max-trials", "3", "--storage-path", str(tmp_path / "out")
    )
    assert result.returncode == 2 and "4 trials" in result.stderr and "--yes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_yaml_tags_never_construct_objects(tmp_path):
    marker = tmp_path / "executed"
    space = tmp_path / "space.yaml"
    space.write_text(f"num_conv: !!python/object/apply:os.system ['touch {marker}']\n")
    result = run_cli("--space", str(space), "--storage-path", str(tmp_path / "out"))
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    assert not marker.exists()


def test_truncated_dataset_file_is_one_line(tmp_path):
    import numpy as np

    good = tmp_path / "good.npz"
    images, labels = np.zeros((20, 28, 28), np.uint8), np.zeros(20, np.uint8)
    np.savez(good, x_train=images, y_train=labels, x_test=images, y_test=labels)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "mnist.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    result = run_cli(
        "--dataset", "mnist", "--data-dir", str(data_dir), "--storage-path", str(tmp_path / "out")
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "mnist.npz" in result.stderr


def test_resume_refuses_a_different_space(tmp_path):
    from tune_mnist.run import build_parser
    from tune_mnist.space import DEFAULT_SPACE, load_space

    run_dir = tmp_path / "out" / "old"
    run_dir.mkdir(parents=True)
    args = vars(build_parser().parse_args(["--name", "old"])) | {"space": DEFAULT_SPACE}
    manifest = {"args": args, "space": load_space(DEFAULT_SPACE).to_dict()}
    (run_dir / "run_manifest.json").write_text(json.dumps(manifest))
    other = tmp_path / "other.yaml"
    other.write_text("num_conv: {grid: [0, 1]}\n")
    result = run_cli(
        "--resume", "--space", str(other), "--storage-path", str(tmp_path / "out"), "--name", "old"
    )
    assert result.returncode == 2 and "different search space" in result.stderr
    (run_dir / "run_manifest.json").write_text('{"args": [1, 2')
    result = run_cli("--resume", "--storage-path", str(tmp_path / "out"), "--name", "old")
    assert result.returncode == 2 and "unreadable" in result.stderr


def test_resuming_a_run_from_before_search_alg_keeps_random_search(tmp_path):
    """A manifest written before --search-alg existed resumes as the random search it was."""
    from tune_mnist.run import build_parser, parse_config
    from tune_mnist.space import load_space
    from tune_mnist.tuning import prepare

    run_dir = tmp_path / "out" / "old"
    run_dir.mkdir(parents=True)
    args = vars(build_parser().parse_args(["--name", "old"])) | {"space": "asha_wide"}
    del args["search_alg"]
    manifest = {"args": args, "space": load_space("asha_wide").to_dict()}
    (run_dir / "run_manifest.json").write_text(json.dumps(manifest))
    resume = ["--resume", "--storage-path", str(tmp_path / "out"), "--name", "old"]
    resumed, _, _ = prepare(parse_config(resume))
    assert resumed.search_alg == "random"


def test_resuming_a_run_from_before_reused_workers_keeps_fresh_workers(tmp_path):
    """A manifest written before workers were reused by default resumes with a process per trial,
    as it started; a new run reuses them, within the default bounds."""
    from tune_mnist.config import WORKER_MAX_TRIALS
    from tune_mnist.run import build_parser, parse_config
    from tune_mnist.space import load_space
    from tune_mnist.tuning import prepare

    fresh = parse_config(["--name", "new"])
    assert (fresh.reuse_workers, fresh.worker_max_trials) == (True, WORKER_MAX_TRIALS)
    run_dir = tmp_path / "out" / "old"
    run_dir.mkdir(parents=True)
    args = vars(build_parser().parse_args(["--name", "old"])) | {"space": "asha_wide"}
    for option in ("reuse_workers", "worker_max_trials", "worker_max_rss_mib"):
        del args[option]
    manifest = {"args": args, "space": load_space("asha_wide").to_dict()}
    (run_dir / "run_manifest.json").write_text(json.dumps(manifest))
    resume = ["--resume", "--storage-path", str(tmp_path / "out"), "--name", "old"]
    resumed, _, _ = prepare(parse_config(resume))
    assert resumed.reuse_workers is False


def test_scheduler_grid_is_the_old_name_of_fifo(capsys):
    """`--scheduler grid` still works: it runs fifo and says once that grid is fifo's old name."""
    from tune_mnist.run import parse_config

    assert parse_config(["--scheduler", "grid"]).scheduler == "fifo"
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "old name" in notes[0] and "fifo" in notes[0], notes


def test_resuming_a_run_made_with_scheduler_grid_runs_fifo(tmp_path):
    """A manifest that recorded --scheduler grid resumes with Tune's FIFO scheduler."""
    from ray.tune.schedulers import FIFOScheduler

    from tune_mnist.run import build_parser, parse_config
    from tune_mnist.schedulers import make_scheduler
    from tune_mnist.space import load_space
    from tune_mnist.tuning import prepare

    run_dir = tmp_path / "out" / "old"
    run_dir.mkdir(parents=True)
    args = vars(build_parser().parse_args(["--name", "old"])) | {"space": "quickstart"}
    manifest = {"args": args | {"scheduler": "grid"}, "space": load_space("quickstart").to_dict()}
    (run_dir / "run_manifest.json").write_text(json.dumps(manifest))
    resume = ["--resume", "--storage-path", str(tmp_path / "out"), "--name", "old"]
    resumed, _, _ = prepare(parse_config(resume))
    assert resumed.scheduler == "fifo"
    scheduler = make_scheduler(resumed.scheduler, max_epochs=2, grace_period=1, reduction_factor=3)
    assert isinstance(scheduler, FIFOScheduler)


def test_a_run_from_before_independent_replicates_resumes_seeded_and_sampled_as_it_began(tmp_path):
    """A manifest without the replicates mark resumes as it started: pairs seeded with their
    replicate number, --num-samples as copies; a new run's --num-samples adds replicates."""
    from tune_mnist.run import build_parser, parse_config
    from tune_mnist.space import load_space
    from tune_mnist.tuning import prepare, samples_to_draw

    new = ["--name", "new", "--num-samples", "2", "--space", "quickstart"]
    fresh, space, _ = prepare(parse_config([*new, "--storage-path", str(tmp_path)]))
    assert fresh.independent_replicates and samples_to_draw(fresh, space) == 1
    assert space.grids["seed"] == [0, 1]
    for mark, independent, seeds, samples in (({}, False, [0], 2), (MARK, True, [0, 1], 1)):
        run_dir = tmp_path / "out" / "old"
        run_dir.mkdir(parents=True, exist_ok=True)
        args = vars(build_parser().parse_args(["--name", "old", "--num-samples", "2"]))
        args |= {"space": "quickstart"}
        manifest = {**mark, "args": args, "space": load_space("quickstart").to_dict()}
        (run_dir / "run_manifest.json").write_text(json.dumps(manifest))
        resume = ["--resume", "--storage-path", str(tmp_path / "out"), "--name", "old"]
        resumed, space, _ = prepare(parse_config(resume))
        assert resumed.independent_replicates is independent
        assert space.grids["seed"] == seeds and samples_to_draw(resumed, space) == samples


MARK = {"replicates": "independent"}


# Property-based: whatever the arguments or the YAML, the answer is a valid plan or one line and
# exit 2, never a traceback. `tune_mnist.search` is replaced by its checks (tuning.prepare):
# nothing is trained.

FLAGS = [
    "--space",
    "--seeds",
    "--num-samples",
    "--max-trials",
    "--yes",
    "--dataset",
    "--val-fraction",
    "--train-subset",
    "--scheduler",
    "--search-alg",
    "--max-epochs",
    "--grace-period",
    "--reduction-factor",
    "--patience",
    "--cpus-per-trial",
    "--gpus-per-trial",
    "--max-failures",
    "--retry-delay",
    "--trial-timeout",
    "--pending-timeout",
    "--time-budget",
    "--max-concurrent",
    "--name",
    "--resume",
    "--resume-if-exists",
    "--seed",
    "--bogus",
    "-x",
    "--",
]
ODD_VALUES = [
    "",
    "-1",
    "0",
    "1",
    "2",
    "0.5",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "..",
    "a/b",
    "/",
    "../x",
    "x" * 300,
    "mnist_sample",
    "asha",
    "tpe",
    "\x00",
    "99999999999999999999",
]
argument = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(ODD_VALUES),
    st.text(max_size=10),
    st.integers().map(str),
    st.floats().map(str),
)


def _checks_only(monkeypatch):
    import tune_mnist
    from tune_mnist import run, tuning

    def prepare_only(config, *, command):
        tuning.prepare(config)
        return SimpleNamespace(trials=None)

    monkeypatch.setattr(tune_mnist, "search", prepare_only)
    monkeypatch.setattr(run, "has_failed_pairs", lambda tables: False)
    return run.main


def _assert_valid_or_one_line(main, argv, capsys):
    try:
        status = main(argv)
    except SystemExit as e:  # --help
        assert e.code == 0 and ("--help" in argv or "-h" in argv)
        capsys.readouterr()
        return
    err = capsys.readouterr().err
    assert status in (0, 2), (argv, status, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argv=st.lists(argument, max_size=8))
def test_random_arguments_are_valid_or_one_line_exit_2(argv, tmp_path, monkeypatch, capsys):
    main = _checks_only(monkeypatch)
    # Last, so a random --storage-path cannot point the write probe elsewhere.
    _assert_valid_or_one_line(main, [*argv, "--storage-path", str(tmp_path / "out")], capsys)


yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
yaml_value = st.recursive(
    yaml_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["grid", "choice", "uniform", "loguniform", "randint", "x"]),
            inner,
            max_size=2,
        ),
    ),
    max_leaves=10,
)
yaml_document = st.one_of(
    st.dictionaries(
        st.one_of(st.sampled_from([*KEYS, "seeds"]), st.text(max_size=6)), yaml_value, max_size=6
    ).map(lambda d: yaml.safe_dump(d)),
    st.text(max_size=60),
    st.sampled_from(
        [
            "!!python/object/apply:os.system ['true']",
            "a: !!binary x",
            "&a [*a]",
            "{",
            "- - -",
            "num_conv: {grid: [" + ", ".join(["0"] * 5000) + "]}",
            "\ufeffnum_conv: 1",
            "...",
            "%YAML 9.9",
        ]
    ),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=yaml_document)
def test_random_yaml_is_valid_or_one_line_exit_2(document, tmp_path, monkeypatch, capsys):
    main = _checks_only(monkeypatch)
    space = tmp_path / "space.yaml"
    space.write_text(document, encoding="utf-8", errors="surrogatepass")
    _assert_valid_or_one_line(
        main, ["--space", str(space), "--storage-path", str(tmp_path / "out")], capsys
    )


def test_an_unknown_space_name_lists_the_built_in_spaces(tmp_path):
    """Rule: --space that is neither a built-in name nor a file: one line naming every built-in."""
    result = run_cli("--space", "nosuch", "--storage-path", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: nosuch: no such search-space file, and not a built-in space "
        "(built-in: asha_wide, keras_io_mixup, quickstart, seed_grid)"
    ]


def test_run_py_works_as_a_plain_script_from_another_folder(tmp_path):
    """Rule: a copy of run.py started as a script, as `ray submit` runs it in the remote home,
    needs only the package: its --help names the built-in spaces and a bad --space exits 2."""
    script = tmp_path / "remote_home" / "run.py"
    script.parent.mkdir()
    shutil.copy(REPO / "tune_mnist" / "run.py", script)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the package as a node has it: importable

    def run_script(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(script), *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)

    shown = run_script("--help")
    assert shown.returncode == 0, shown.stderr
    built_in = "asha_wide, keras_io_mixup, quickstart, seed_grid"
    assert f"({built_in})" in " ".join(shown.stdout.split())
    bad = run_script("--space", "nosuch", "--storage-path", str(tmp_path / "out"))
    assert bad.returncode == 2 and f"built-in: {built_in}" in bad.stderr


def _hashes(run_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_an_existing_run_is_refused_without_resume_and_left_untouched(tmp_path):
    """Rule: a finished run's name used again without --resume: exit 2 naming --resume and a free
    name, before anything is written; --resume-if-exists continues it, or starts a new one."""
    (tmp_path / "space.yaml").write_text("num_conv: 0\nfilters: 8\nbatch_size: 64\nseeds: 1\n")
    command = [
        "--space", str(tmp_path / "space.yaml"), "--train-subset", "100", "--max-epochs", "1",
        "--storage-path", str(tmp_path / "runs"), "--name", "study",
    ]  # fmt: skip
    started = run_search(*command, "--resume-if-exists")
    assert started.returncode == 0, search_failed(started)
    run_dir = tmp_path / "runs" / "study"
    before = _hashes(run_dir)
    assert "run_manifest.json" in before

    again = run_cli(*command)
    assert again.returncode == 2, search_failed(again)
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and "--name study-2" in lines[0], lines
    assert _hashes(run_dir) == before
    assert not (tmp_path / "runs" / "study-2").exists()

    resumed = run_search(*command, "--resume-if-exists")
    assert resumed.returncode == 0, search_failed(resumed)
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["args"]["resume"] is True  # continued, not started again


def test_a_run_a_live_driver_holds_is_refused_naming_it(tmp_path):
    """Rule: a second driver on a running run: exit 2 naming the holder, its lock left alone."""
    from tune_mnist.run_lock import LOCK_FILE

    run_dir = tmp_path / "runs" / "study"
    run_dir.mkdir(parents=True)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    (run_dir / LOCK_FILE).write_text(json.dumps(holder))
    before = _hashes(run_dir)
    result = run_cli("--storage-path", str(tmp_path / "runs"), "--name", "study")
    assert result.returncode == 2, search_failed(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {os.getpid()} on {socket.gethostname()}" in lines[0], lines
    assert "--name study-2" in lines[0]
    assert _hashes(run_dir) == before


def test_a_dead_drivers_lock_does_not_block_the_run(tmp_path):
    from tune_mnist.run import parse_config
    from tune_mnist.run_lock import LOCK_FILE
    from tune_mnist.tuning import prepare

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "runs" / "study"
    run_dir.mkdir(parents=True)
    holder = {"pid": dead.pid, "host": socket.gethostname(), "started": time.time()}
    (run_dir / LOCK_FILE).write_text(json.dumps(holder))
    argv = ["--storage-path", str(tmp_path / "runs"), "--name", "study", "--space", "quickstart"]
    _, _, prepared = prepare(parse_config(argv))
    assert prepared == str(run_dir)


def test_default_names_differ_within_the_same_second():
    from tune_mnist.tuning import default_name

    names = {default_name("quickstart", "mnist_sample") for _ in range(20)}
    assert len(names) > 1
