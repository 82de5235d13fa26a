"""Failures a user meets on a real cluster, made to happen for real: killed trial workers, a killed
or interrupted driver, trials that always fail or diverge, a writer killed mid-write.

Every search here is a real `python -m tune_mnist.run` with real Ray and real training on a few
hundred embedded digits; whatever a test starts is killed when it ends, passed or failed.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Driver

from tune_mnist.trainable import FAULT_ENV

TINY_SPACE = """
num_conv: 0
num_dense: 0
batch_size: 50
seed: {grid: [0, 1, 2]}
"""


def _poll(condition, timeout: float, what: str, driver: Driver):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if driver.proc.poll() is not None:
            pytest.fail(
                f"search ended (status {driver.proc.returncode}) before {what}:\n"
                f"{driver.output()[-3000:]}"
            )
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{driver.output()[-3000:]}")


def _result_rows(trial_dir: Path) -> list[dict]:
    rows = []
    for line in (
        (trial_dir / "result.json").read_text().splitlines()
        if (trial_dir / "result.json").is_file()
        else []
    ):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def _settled_last_row(trial_dir: Path, *, settle_s: float, timeout_s: float) -> dict:
    """The last row of a trial's result.json once it has not changed for ``settle_s``."""
    deadline = time.monotonic() + timeout_s
    rows, since = _result_rows(trial_dir), time.monotonic()
    while time.monotonic() - since < settle_s:
        assert time.monotonic() < deadline, f"result.json kept changing: {rows[-1:]}"
        time.sleep(0.5)
        now = _result_rows(trial_dir)
        if now != rows:
            rows, since = now, time.monotonic()
    return rows[-1]


def _statuses(run_dir: Path) -> dict[str, str]:
    found = {}
    for state in run_dir.glob("experiment_state-*.json"):
        try:
            trials = json.loads(state.read_text())["trial_data"]
        except (json.JSONDecodeError, KeyError, OSError):
            continue
        found.update(
            {t["trial_id"]: t["status"] for t in (json.loads(entry[0]) for entry in trials)}
        )
    return found


def _assert_epochs_continuous(epochs: pd.DataFrame, trials: pd.DataFrame) -> None:
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    for trial_id, group in epochs.groupby("trial_id"):
        run = trials.set_index("trial_id").loc[trial_id, "epochs_run"]
        assert list(group["epoch"]) == list(range(1, run + 1)), (trial_id, list(group["epoch"]))


@pytest.mark.slow
def test_killed_worker_is_retried_and_failing_trials_end_as_error_or_diverged(tmp_path, drivers):
    """Cases 1 and 4 in one search: seed 0's worker is SIGKILLed mid-training, seed 1 fails on every
    attempt, seed 2's MixUp loss is NaN from epoch 2 on (its compared epoch is 1)."""
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    run_dir = tmp_path / "runs" / "faults"
    driver = drivers(
        [
            "--space",
            str(tmp_path / "space.yaml"),
            "--train-subset",
            "300",
            "--max-epochs",
            "3",
            "--max-failures",
            "1",
            "--storage-path",
            str(tmp_path / "runs"),
            "--name",
            "faults",
        ],
        tmp_path / "log.txt",
        env={FAULT_ENV: "error:seed=1,nan@2:seed=2"},
    )

    def first_epoch_of_seed_0():
        for trial_dir in run_dir.glob("*_seed=0_*"):
            rows = _result_rows(trial_dir)
            if rows:
                return trial_dir, rows[0]["pid"]
        return None

    victim_dir, pid = _poll(first_epoch_of_seed_0, 300, "seed 0's first epoch", driver)
    os.kill(pid, signal.SIGKILL)
    status = driver.wait(400)
    output = driver.output()

    assert status == 3, output[-3000:]
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index(["config/seed", "arm"])
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert len(trials) == 6 and trials["trial_id"].is_unique
    for arm in ("plain", "mixup"):
        assert (
            trials.loc[(0, arm), "status"] == "TERMINATED"
            and trials.loc[(0, arm), "epochs_run"] == 3
        )
        assert (
            trials.loc[(1, arm), "status"] == "ERROR"
            and "InjectedFault" in trials.loc[(1, arm), "error"]
        )
    # Seed 2's MixUp arm diverges; its plain arm trains on alone.
    assert trials.loc[(2, "mixup"), "status"] == "DIVERGED" and pd.isna(
        trials.loc[(2, "mixup"), "error"]
    )
    assert trials.loc[(2, "mixup"), "epochs_run"] == 2
    assert (
        trials.loc[(2, "plain"), "status"] == "TERMINATED"
        and trials.loc[(2, "plain"), "epochs_run"] == 3
    )
    _assert_epochs_continuous(epochs, trials.reset_index())
    # The killed trial really ran again, in another process, from its checkpoint.
    pids = {row["pid"] for row in _result_rows(victim_dir)}
    assert pid in pids and len(pids) == 2
    assert f"ERROR: {trials.loc[(1, 'plain'), 'trial_id']}" in output and "DIVERGED" in output
    _assert_compared_models_scored(run_dir, trials.loc[2, "trial_dir"].iloc[0])


def _assert_compared_models_scored(run_dir: Path, diverged_trial: str) -> None:
    """Seed 2's compared epoch 1 outlives Tune's two kept checkpoints (epochs 2 and 3): its latest
    checkpoint carries both arms' epoch-1 models, and the test set scores them."""
    from tune_mnist import data
    from tune_mnist.checkpoint import latest_checkpoint, load_model, load_state

    test_pairs = pd.read_parquet(run_dir / "test_pairs.parquet").set_index(["seed", "arm"])
    assert set(test_pairs.index.unique()) == {(s, a) for s in (0, 2) for a in ("plain", "mixup")}
    assert (test_pairs.loc[2, "compared_epoch"] == 1).all()
    assert (test_pairs.loc[0, "compared_epoch"] == 3).all()
    directory, epoch = latest_checkpoint(run_dir / diverged_trial)
    assert epoch == 3 and load_state(directory)["compared_epoch"] == 1
    kept = {load_state(c)["epoch"] for c in (run_dir / diverged_trial).glob("checkpoint_*")}
    # The premise: Tune kept epochs 2 and 3 only, so the epoch-1 models scored below can come from
    # nowhere but the copy the latest checkpoint carries.
    assert kept == {2, 3}, kept
    args = json.loads((run_dir / "run_manifest.json").read_text())["args"]
    arrays = data.load_arrays(args["dataset"], seed=args["seed"])
    val_fraction, seed = args["val_fraction"], args["seed"]
    search = data.split(arrays, args["dataset"], val_fraction=val_fraction, seed=seed)
    val_predictions = pd.read_parquet(run_dir / "val_predictions.parquet")
    test_images = data.scale_images(arrays.x_test)
    for arm in ("plain", "mixup"):
        model = load_model(directory, arm, compared=True)
        # The epoch-1 model: it predicts the validation classes recorded at epoch 1, not NaN's.
        recorded = val_predictions[
            (val_predictions["trial_id"] == test_pairs.loc[(2, arm), "trial_id"].iloc[0])
            & (val_predictions["epoch"] == 1)
        ].sort_values("image")["predicted"]
        val_images = data.scale_images(search.x_val)
        predicted = model.predict(val_images, batch_size=500, verbose=0).argmax(axis=1)
        np.testing.assert_array_equal(predicted, recorded)
        scored = test_pairs.loc[(2, arm)].sort_values("test_index")["predicted"]
        np.testing.assert_array_equal(scored, model.predict(test_images, verbose=0).argmax(axis=1))
    comparison = pd.read_parquet(run_dir / "comparison.parquet")
    (confirmatory,) = comparison[comparison["role"] == "confirmatory"].itertuples()
    assert confirmatory.n_pairs == 2 and confirmatory.n_diverged_mixup == 1


@pytest.mark.slow
def test_interrupted_and_killed_driver_resume_without_rerunning_finished_trials(tmp_path, drivers):
    """Case 2: Ctrl-C, a --resume whose driver is SIGKILLed mid-trial, then one that finishes."""
    # Six trials: a tiny trial takes about a second, and Tune's state shows the first one finished
    # only seconds later; with fewer, all of them could finish before the Ctrl-C lands.
    (tmp_path / "space.yaml").write_text(TINY_SPACE.replace("[0, 1, 2]", "[0, 1, 2, 3, 4, 5]"))
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "r"
    resume = ["--resume", "--storage-path", str(storage), "--name", "r"]

    def terminated(at_least: int):
        def check():
            done = sorted(t for t, s in _statuses(run_dir).items() if s == "TERMINATED")
            return done if len(done) >= at_least else None

        return check

    first = drivers(
        [
            "--space",
            str(tmp_path / "space.yaml"),
            "--train-subset",
            "200",
            "--max-epochs",
            "2",
            "--max-concurrent",
            "1",
            "--storage-path",
            str(storage),
            "--name",
            "r",
        ],
        tmp_path / "log1.txt",
    )
    done_first = _poll(terminated(1), 300, "a first finished trial", first)
    first.proc.send_signal(signal.SIGINT)
    assert first.wait(120) == 130, first.output()[-3000:]
    assert f"--resume --storage-path {storage} --name r" in first.output()
    interrupted = pd.read_parquet(run_dir / "trials.parquet")
    assert set(done_first) <= set(interrupted.loc[interrupted["status"] == "TERMINATED", "pair_id"])
    first.kill_all()
    finished_rows = {t: len(_result_rows(d)) for t in done_first for d in run_dir.glob(f"*_{t}_*")}

    def reported_epochs() -> int:
        return sum(len(_result_rows(d)) for d in run_dir.glob("train_pair_*"))

    before_second = reported_epochs()
    second = drivers(resume, tmp_path / "log2.txt")
    _poll(lambda: reported_epochs() > before_second, 300, "an epoch of the resumed run", second)
    second.proc.kill()  # the driver alone, as a crash would; kill_all then clears its Ray
    second.proc.wait(timeout=30)
    second.kill_all()

    third = drivers(resume, tmp_path / "log3.txt")
    assert third.wait(400) == 0, third.output()[-3000:]
    trials = pd.read_parquet(run_dir / "trials.parquet")
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert len(trials) == 12 and trials["trial_id"].is_unique
    assert sorted(trials["config/seed"].unique()) == [0, 1, 2, 3, 4, 5]
    assert set(trials["status"]) == {"TERMINATED"} and (trials["epochs_run"] == 2).all()
    _assert_epochs_continuous(epochs, trials)
    for trial_id, rows in finished_rows.items():  # finished before the interruption: never re-run
        (trial_dir,) = run_dir.glob(f"*_{trial_id}_*")
        assert len(_result_rows(trial_dir)) == rows


def _corrupt(folder: Path, seed: int = 0) -> None:
    """Overwrite every file under `folder` with random bytes of the same length (a disk fault)."""
    rng = np.random.default_rng(seed)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        path.write_bytes(rng.integers(0, 256, max(path.stat().st_size, 16), np.uint8).tobytes())


def _metrics_by_seed(run_dir: Path) -> pd.DataFrame:
    """epochs.parquet indexed by (seed, arm, epoch): trial ids differ between runs, seeds do not."""
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("trial_id")
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    epochs["seed"] = epochs["trial_id"].map(trials["config/seed"])
    epochs["arm"] = epochs["trial_id"].map(trials["arm"])
    return epochs.set_index(["seed", "arm", "epoch"]).sort_index()


CHECKED_METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "val_mixed_acc"]


@pytest.mark.slow
def test_a_corrupted_latest_checkpoint_is_retried_from_the_previous_one(tmp_path, drivers):
    """Seed 0's worker is frozen, the checkpoint its retry would start from is overwritten with
    garbage, the worker is killed: the retry starts from the checkpoint before, and every epoch of
    both pairs equals a quiet run's (an epoch's random draws depend on the seed and epoch only)."""
    (tmp_path / "space.yaml").write_text(TINY_SPACE.replace("[0, 1, 2]", "[0, 1]"))
    args = ["--space", str(tmp_path / "space.yaml"), "--train-subset", "300", "--max-epochs", "5"]
    args += ["--max-concurrent", "1", "--storage-path", str(tmp_path / "runs")]
    quiet = drivers([*args, "--name", "quiet"], tmp_path / "quiet.txt")
    assert quiet.wait(400) == 0, quiet.output()[-3000:]
    run_dir = tmp_path / "runs" / "faulty"
    driver = drivers([*args, "--max-failures", "1", "--name", "faulty"], tmp_path / "log.txt")

    def two_epochs_of_seed_0():
        for trial_dir in run_dir.glob("*_seed=0_*"):
            rows = _result_rows(trial_dir)
            if len(rows) >= 2:
                return trial_dir, rows[0]["pid"]
        return None

    victim_dir, pid = _poll(two_epochs_of_seed_0, 300, "seed 0's second epoch", driver)
    os.kill(pid, signal.SIGSTOP)
    # A frozen worker sends no report, but the driver still writes those it already took, as
    # late as a loaded machine makes it: wait until result.json stays the same for 5 s.
    last = _settled_last_row(victim_dir, settle_s=5, timeout_s=120)
    corrupted_epoch = last["epoch"]
    assert 2 <= corrupted_epoch < 5, last
    _corrupt(victim_dir / last["checkpoint_dir_name"])
    os.kill(pid, signal.SIGKILL)
    status = driver.wait(400)
    output = driver.output()

    assert status == 0, output[-3000:]
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert set(trials["status"]) == {"TERMINATED"} and (trials["epochs_run"] == 5).all()
    retried = [row for row in _result_rows(victim_dir) if row["pid"] != pid]
    # The retry began with the corrupted checkpoint's own epoch: it started from the one before.
    assert retried and retried[0]["epoch"] == corrupted_epoch, [r["epoch"] for r in retried]
    # ... and said so in the terminal, naming the damaged checkpoint's file.
    said = [line for line in output.splitlines() if "resumed from the earlier" in line]
    assert len(said) == 1 and last["checkpoint_dir_name"] in said[0], said
    faulty, calm = _metrics_by_seed(run_dir), _metrics_by_seed(tmp_path / "runs" / "quiet")
    assert list(faulty.index) == list(calm.index)
    np.testing.assert_allclose(faulty[CHECKED_METRICS], calm[CHECKED_METRICS], rtol=1e-5)


WRITER = """
import sys
from pathlib import Path
import numpy as np, pandas as pd
from tune_mnist.files import write_parquet
path = Path(sys.argv[1])
n = 200_000
frames = [pd.DataFrame({"version": np.full(n, v), "x": np.arange(n) * v}) for v in (1, 2)]
write_parquet(path, frames[0])
print("ready", flush=True)
i = 0
while True:
    i += 1
    write_parquet(path, frames[i % 2])
"""


def test_a_writer_killed_mid_write_leaves_a_complete_file(tmp_path):
    """Case 6: SIGKILL the results writer at random moments; the file is always one full version."""
    import random

    target = tmp_path / "trials.parquet"
    rng = random.Random(0)
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert writer.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            writer.kill()
            writer.wait(timeout=30)
        frame = pd.read_parquet(target)
        assert len(frame) == 200_000 and frame["version"].nunique() == 1
        assert (frame["x"] == frame.index * frame["version"]).all()
