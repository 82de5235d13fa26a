"""TensorBoard's own reader finds every arm's per-epoch metrics and its HParams, mixup included."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import SMALL_SPACE, synthetic_tables
from tensorboard.backend.event_processing import plugin_event_accumulator, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from tune_mnist.tensorboard_events import (
    SCALARS,
    TENSORBOARD_DIR,
    TensorBoardMissing,
    write_event_files,
    write_live_epoch,
)


def accumulator(folder) -> EventAccumulator:
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def logged_values(events: EventAccumulator, metric: str) -> dict[int, float]:
    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(metric)}


def session_hparams(events: EventAccumulator) -> dict:
    content = events.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    start = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for name, value in start.hparams.items()}  # fmt: skip


def assert_arm_runs_match(run_dir, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    for _, trial in trials.iterrows():
        events = accumulator(run_dir / TENSORBOARD_DIR / trial["pair_id"] / trial["arm"])
        rows = epochs[epochs["trial_id"] == trial["trial_id"]].set_index("epoch")
        for metric in SCALARS:
            expected = {e: np.float32(v) for e, v in rows[metric].items() if not math.isnan(v)}
            assert logged_values(events, metric) == pytest.approx(expected), (trial, metric)
        hparams = session_hparams(events)
        assert hparams["mixup"] is bool(trial["config/mixup"])
        assert hparams["seed"] == trial["config/seed"]
        assert hparams["architecture"] == trial["architecture"]


def test_every_arm_is_a_run_with_each_epochs_metrics_and_its_hparams(tmp_path):
    trials, epochs = synthetic_tables()
    write_event_files(tmp_path, trials, epochs)
    assert_arm_runs_match(tmp_path, trials, epochs)


def test_the_hparams_experiment_shows_mixup_seed_architecture_and_the_varying_keys(tmp_path):
    trials, epochs = synthetic_tables()
    write_event_files(tmp_path, trials, epochs)
    content = accumulator(tmp_path / TENSORBOARD_DIR).PluginTagToContent("hparams")
    experiment = hparams_metadata.parse_experiment_plugin_data(
        content[hparams_metadata.EXPERIMENT_TAG]
    )
    infos = {info.name: info for info in experiment.hparam_infos}
    assert set(infos) == {"mixup", "seed", "architecture", "num_conv"}  # constants left out
    assert [v.bool_value for v in infos["mixup"].domain_discrete.values] == [False, True]
    metrics = {info.name.tag for info in experiment.metric_infos}
    assert {"val_acc", "val_mixed_acc", "val_ece", "train_loss"} <= metrics


def test_writing_again_replaces_the_files(tmp_path):
    trials, epochs = synthetic_tables()
    write_event_files(tmp_path, trials, epochs)
    write_event_files(tmp_path, trials, epochs.assign(val_acc=0.5))
    arm = tmp_path / TENSORBOARD_DIR / "aaaaa_00000" / "mixup"
    assert len(list(arm.glob("events.out.tfevents.*"))) == 1
    assert set(logged_values(accumulator(arm), "val_acc").values()) == {0.5}


def test_without_tensorboard_installed_it_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what an absent package looks like
    with pytest.raises(TensorBoardMissing, match=r"pip install 'tune_mnist\[tensorboard\]'"):
        write_event_files(tmp_path, *synthetic_tables())
    assert not (tmp_path / TENSORBOARD_DIR).exists()


def test_a_real_search_writes_the_event_files_of_its_epochs_table(small_run):
    tables = (
        pd.read_parquet(small_run / "trials.parquet"),
        pd.read_parquet(small_run / "epochs.parquet"),
    )
    assert len(tables[0]) == 8
    assert_arm_runs_match(small_run, *tables)


def test_writing_does_not_import_tensorflow(tmp_path):
    """The driver pays no TensorFlow start-up for the event files (see the module's docstring)."""
    script = (
        "import sys; from conftest import synthetic_tables; "
        "from tune_mnist.tensorboard_events import write_event_files; "
        f"write_event_files({str(tmp_path)!r}, *synthetic_tables()); "
        "print('tensorflow' in sys.modules)"
    )
    tests = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{tests.parent}"},
    )
    assert result.stdout.strip() == "False", result.stderr[-2000:]


def epoch_report(epoch: int, arms=("plain", "mixup")) -> dict:
    """A report as `PairTrainer.train_epoch` makes it: each arm's metrics under its name."""
    return {"epoch": epoch, **{arm: {m: epoch / 10 + (arm == "mixup") / 100 for m in SCALARS}
                               for arm in arms}}  # fmt: skip


def test_live_epochs_are_scalars_per_arm_and_the_final_files_replace_them(tmp_path):
    write_live_epoch(str(tmp_path), "aaaaa_00000", epoch_report(1))
    write_live_epoch(str(tmp_path), "aaaaa_00000", epoch_report(2, arms=("plain",)))  # diverged
    pair = tmp_path / TENSORBOARD_DIR / "aaaaa_00000"
    assert logged_values(accumulator(pair / "plain"), "val_acc") == pytest.approx({1: 0.1, 2: 0.2})
    assert logged_values(accumulator(pair / "mixup"), "val_acc") == pytest.approx({1: 0.11})
    trials, epochs = synthetic_tables()
    write_event_files(tmp_path, trials, epochs)
    assert not pair.exists() or not any(pair.rglob("*epoch0001*"))
    assert_arm_runs_match(tmp_path, trials, epochs)


def test_a_pair_retried_from_an_earlier_epoch_replaces_the_epochs_after_it(tmp_path):
    """A pair retried from its checkpoint of epoch 1 trains epoch 2 again: its first live epoch
    marks the restart, and TensorBoard forgets the earlier attempt's epochs 2 and 3."""
    for epoch in (1, 2, 3):
        write_live_epoch(str(tmp_path), "p", epoch_report(epoch), restart=epoch == 1)
    again = epoch_report(2)
    again["plain"]["val_acc"] = 0.9
    write_live_epoch(str(tmp_path), "p", again, restart=True)
    # The accumulator TensorBoard's server loads a run with.
    events = plugin_event_accumulator.EventAccumulator(str(tmp_path / TENSORBOARD_DIR / "p/plain"))
    events.Reload()
    assert [e.step for e in events.Tensors("val_acc")] == [1, 2]
    assert logged_values(events, "val_acc") == pytest.approx({1: 0.1, 2: 0.9})


@pytest.mark.slow
def test_tensorboard_shows_the_scalars_of_a_search_still_running(tmp_path, drivers):
    """`tensorboard --logdir RUN_DIR` during a search: the multiplexer TensorBoard's server loads
    the runs with finds a run per arm with the epochs trained so far."""
    (tmp_path / "space.yaml").write_text(SMALL_SPACE)
    run_dir = tmp_path / "runs" / "live"
    driver = drivers(
        ["--space", str(tmp_path / "space.yaml"), "--dataset", "mnist_sample",
         "--train-subset", "300", "--max-epochs", "50", "--max-concurrent", "1",
         "--storage-path", str(tmp_path / "runs"), "--name", "live"],
        tmp_path / "search.log",
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while True:
        runs = sorted(run_dir.glob(f"{TENSORBOARD_DIR}/*/*/events.out.tfevents.*"))
        # The worker writes its scalars once tune.report returns; the driver writes the same
        # epoch to result.json when it processes the report, which may come a little later.
        results = [
            run_dir.glob(f"train_pair_{pair}_*/result.json")
            for pair in {path.parent.parent.name for path in runs}
        ]
        reported = all(any(result.read_text() for result in found) for found in results)
        if {path.parent.name for path in runs} == {"plain", "mixup"} and reported:
            break
        assert driver.proc.poll() is None, driver.output()[-3000:]
        assert time.monotonic() < deadline, driver.output()[-3000:]
        time.sleep(1)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run_dir))
    multiplexer.Reload()
    arms = {run: tags for run, tags in multiplexer.Runs().items() if tags.get("tensors")}
    assert {Path(run).name for run in arms} == {"plain", "mixup"}, multiplexer.Runs()
    for run in arms:
        val_acc = logged_values(multiplexer.GetAccumulator(run), "val_acc")
        pair_id, arm = Path(run).parent.name, Path(run).name
        (trial_dir,) = run_dir.glob(f"train_pair_{pair_id}_*")
        reported = json.loads((trial_dir / "result.json").read_text().splitlines()[0])
        # The scalar TensorBoard shows is the one the pair reported for its first epoch.
        assert val_acc[1] == pytest.approx(reported[arm]["val_acc"], rel=1e-6), (run, val_acc)
    assert driver.proc.poll() is None, "the search ended: the scalars were not live"
    assert not (run_dir / "trials.parquet").exists()  # the tables come at the end


@pytest.mark.tracking
def test_a_real_tensorboard_shows_mixup_in_its_hparams_view(tmp_path):
    """What the HParams view asks the server for: the columns, and one session per arm."""
    trials, epochs = synthetic_tables()
    folder = write_event_files(tmp_path, trials, epochs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        # The tensorboard of this interpreter, whether or not its venv's bin is on PATH.
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(folder)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    hparams = f"http://127.0.0.1:{port}/data/plugin/hparams"
    try:
        # TensorBoard loads the runs in the background: ask until all of them are there.
        experiment = _post_until(
            f"{hparams}/experiment", {"experimentName": ""}, server, lambda a: a["hparamInfos"]
        )
        assert {"mixup", "seed", "architecture", "num_conv"} == {
            info["name"] for info in experiment["hparamInfos"]
        }
        groups = _post_until(
            f"{hparams}/session_groups",
            SESSION_QUERY,
            server,
            lambda a: len(a["sessionGroups"]) == len(trials),
        )
        mixup = {g["name"]: g["hparams"]["mixup"] for g in groups["sessionGroups"]}
        assert mixup == dict(zip(trials["trial_id"], trials["config/mixup"], strict=True))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


SESSION_QUERY = {
    "experimentName": "",
    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
    "colParams": [{"hparam": "mixup", "includeInResult": True}],
    "startIndex": 0,
    "sliceSize": 100,
}


def _post_until(url: str, body: dict, server: subprocess.Popen, done) -> dict:
    deadline = time.monotonic() + 120
    while True:
        try:
            answer = requests.post(url, json=body, timeout=5)
            if answer.ok and done(answer.json()):
                return answer.json()
        except (requests.ConnectionError, requests.Timeout):  # still starting (a busy machine)
            pass
        assert server.poll() is None and time.monotonic() < deadline, "tensorboard did not answer"
        time.sleep(0.5)
