"""A real Ray Tune search end to end: real Ray, real TensorFlow training, real digits."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_search, search_failed

from tune_mnist.metrics import METRICS
from tune_mnist.replicates import pair_seed

SPACE = """
num_conv: {grid: [0, 1]}
filters: 8
kernel_size: 3
pooling: max
num_dense: 0
batch_size: 64
seeds: 1
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    (root / "space.yaml").write_text(SPACE)
    result = run_search(
        "--space", str(root / "space.yaml"), "--dataset", "mnist_sample", "--train-subset", "400",
        "--max-epochs", "2", "--storage-path", str(root / "runs"), "--name", "it", "--verbose",
        "--no-reuse-workers",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    assert "Pairs: 2 TERMINATED" in result.stdout and str(root / "runs" / "it") in result.stdout
    # --verbose: Tune's own status table instead of one line per pair.
    assert "Trial status" in result.stdout and "│" in result.stdout, result.stdout[-3000:]
    assert not re.search(r"^pair \d+/\d+ done", result.stdout, re.M), result.stdout[-3000:]
    return root / "runs" / "it"


def test_trials_parquet_has_one_row_per_arm_and_two_arms_per_pair(run_dir):
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert all(sorted(arms) == ["mixup", "plain"] for _, arms in trials.groupby("pair_id")["arm"])
    assert set(trials["status"]) == {"TERMINATED"}
    assert sorted(zip(trials["config/num_conv"], trials["config/mixup"], strict=True)) == [
        (0, False),
        (0, True),
        (1, False),
        (1, True),
    ]
    for _, row in trials.iterrows():
        assert row["epochs_run"] == 2 and row["best_epoch"] in (1, 2)
        assert 0.3 < row["best_val_acc"] <= 1, row  # real learning on real digits
        assert 0 <= row["best_val_mixed_acc"] <= 1 and row["best_val_loss"] > 0
        assert row["wall_seconds"] > 0 and row["node_id"] and pd.isna(row["error"])
        assert row["architecture"] == f"num_conv={row['config/num_conv']}"


def test_epochs_parquet_has_every_metric_per_epoch(run_dir):
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert len(epochs) == 8
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(epochs["trial_id"]) == set(trials["trial_id"])
    for metric in METRICS:
        assert epochs[metric].notna().all(), metric
    for metric in ("train_acc", "val_acc", "val_mixed_acc"):
        assert epochs[metric].between(0, 1).all()
    assert (epochs["images_per_second"] > 0).all() and (epochs["epoch_seconds"] > 0).all()
    best = epochs.loc[epochs.groupby("trial_id")["val_acc"].idxmax()].set_index("trial_id")
    chosen = trials.set_index("trial_id")["best_val_acc"].reindex(best.index)
    assert (best["val_acc"] == chosen).all()


@pytest.mark.slow
def test_reused_workers_train_the_same_models_and_retire_after_n_trials(run_dir):
    """Reused workers (the default) only change where trials run: seeded trials match those in
    fresh workers, and a worker is replaced after --worker-max-trials trials, no trial failing."""
    root = run_dir.parent.parent
    result = run_search(
        "--space", str(root / "space.yaml"), "--dataset", "mnist_sample", "--train-subset", "400",
        "--max-epochs", "2", "--max-concurrent", "1", "--seeds", "2", "--worker-max-trials", "2",
        "--storage-path", str(root / "runs"), "--name", "reused",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    run = root / "runs" / "reused"
    args = json.loads((run / "run_manifest.json").read_text())["args"]
    assert (args["reuse_workers"], args["worker_max_trials"]) == (True, 2)
    keys = ["config/num_conv", "config/mixup", "epoch"]
    metrics = ["train_loss", "val_acc", "val_mixed_acc", "val_loss"]

    def by_config(run, seed):
        epochs = pd.read_parquet(run / "epochs.parquet")
        configs = pd.read_parquet(run / "trials.parquet")
        configs = configs[configs["config/seed"] == seed][["trial_id", *keys[:2]]]
        return epochs.merge(configs, on="trial_id").set_index(keys).sort_index()[metrics]

    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 8 and trials["status"].eq("TERMINATED").all()
    # --max-concurrent 1: one pair at a time; 4 pairs, a worker retired after 2 of them.
    files = run.glob("train_pair_*/result.json")
    reports = [json.loads(f.read_text().splitlines()[0]) for f in files]
    pids = pd.Series([r["pid"] for r in reports]).value_counts()
    assert sorted(pids) == [2, 2], pids
    assert all(r["worker_rss_mib"] > 0 for r in reports)
    seed = int(pd.read_parquet(run_dir / "trials.parquet")["config/seed"].iloc[0])
    pd.testing.assert_frame_equal(by_config(run, seed), by_config(run_dir, seed), rtol=1e-5)


ASHA_SPACE = """
num_conv: 0
num_dense: 0
batch_size: 50
learning_rate: {grid: [0.002, 0.0000001]}
seeds: 1
"""


@pytest.mark.slow
def test_asha_stops_a_poor_pair_as_a_whole(tmp_path):
    """Paired ASHA: the pair that cannot learn (learning rate 1e-7) stops at the first rung, both
    arms together; the good pair, which reached the rung first, runs to --max-epochs.

    Two CPUs per trial on a 2-CPU Ray: one pair at a time, in grid order, so the rung decision
    is always the same."""
    (tmp_path / "space.yaml").write_text(ASHA_SPACE)
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), "--scheduler", "asha", "--dataset", "mnist_sample",
        "--train-subset", "200", "--max-epochs", "3", "--reduction-factor", "2",
        "--cpus-per-trial", "2", "--storage-path", str(tmp_path / "runs"), "--name", "asha",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    trials = pd.read_parquet(tmp_path / "runs" / "asha" / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    runs = trials.groupby("config/learning_rate")["epochs_run"].agg(["min", "max"])
    assert runs.loc[0.002].tolist() == [3, 3] and runs.loc[1e-7].tolist() == [1, 1]
    assert (tmp_path / "runs" / "asha" / "comparison.parquet").is_file()


def reported_pair_seeds(run: Path) -> list[int]:
    """The seed each pair reported training with, checked against its recorded configuration."""
    seeds = []
    for trial_dir in sorted(run.glob("train_pair_*")):
        config = json.loads((trial_dir / "params.json").read_text())
        report = json.loads((trial_dir / "result.json").read_text().splitlines()[-1])
        assert report["pair_seed"] == pair_seed(config, run_seed=0), trial_dir.name
        seeds.append(report["pair_seed"])
    return seeds


def plain_metrics(run: Path) -> pd.DataFrame:
    trials = pd.read_parquet(run / "trials.parquet").query("arm == 'plain'")
    return trials[["config/seed", "last_train_loss", "last_val_loss"]]


@pytest.mark.slow
def test_num_samples_on_a_fixed_space_gives_new_replicates_never_copies(tmp_path):
    """--num-samples 2 on a space without random keys: replicate numbers 0 and 1, two pairs with
    their own seeds that learn differently (not copies of one pair), both compared (the comparison
    once failed on a duplicate pair key, losing every result)."""
    (tmp_path / "space.yaml").write_text("num_conv: 0\nnum_dense: 0\nbatch_size: 100\nseeds: 1\n")
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), "--num-samples", "2", "--dataset", "mnist_sample",
        "--train-subset", "500", "--max-epochs", "1", "--storage-path", str(tmp_path / "runs"),
        "--name", "twice",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    assert "2 pairs from " in result.stdout and "(2 replicates of each configuration;" in (
        result.stdout
    )
    run = tmp_path / "runs" / "twice"
    trials = pd.read_parquet(run / "trials.parquet")
    assert trials["pair_id"].nunique() == 2 and len(trials) == 4
    plain = plain_metrics(run)
    assert sorted(plain["config/seed"]) == [0, 1]
    assert plain["last_train_loss"].nunique() == 2 and plain["last_val_loss"].nunique() == 2
    assert len(set(reported_pair_seeds(run))) == 2
    assert json.loads((run / "run_manifest.json").read_text())["replicates"] == "independent"
    comparison = pd.read_parquet(run / "comparison.parquet")
    assert comparison.query("role == 'primary'")["n_pairs"].tolist() == [2]
    assert (run / "test_eval.parquet").is_file()


@pytest.mark.slow
def test_equal_random_draws_are_distinct_replicates(tmp_path):
    """A random space whose draws are always equal (one choice), seeds: 1, --num-samples 3: three
    pairs of one configuration, yet three pair seeds and three different trainings."""
    (tmp_path / "space.yaml").write_text(
        "num_conv: 0\nnum_dense: 0\nbatch_size: 100\nlearning_rate: {choice: [0.002]}\nseeds: 1\n"
    )
    result = run_search(
        "--space", str(tmp_path / "space.yaml"), "--num-samples", "3", "--dataset", "mnist_sample",
        "--train-subset", "500", "--max-epochs", "1", "--storage-path", str(tmp_path / "runs"),
        "--name", "draws",
    )  # fmt: skip
    assert result.returncode == 0, search_failed(result)
    assert "(3 draws of the random keys, 1 replicate of each;" in result.stdout
    run = tmp_path / "runs" / "draws"
    plain = plain_metrics(run)
    assert plain["config/seed"].tolist() == [0, 0, 0]
    assert len(set(reported_pair_seeds(run))) == 3
    assert plain["last_train_loss"].nunique() == 3 and plain["last_val_loss"].nunique() == 3


def test_manifest_records_how_the_run_was_made(run_dir):
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    assert manifest["dataset"]["name"] == "mnist_sample" and manifest["dataset"]["train"] == 400
    assert manifest["space"]["num_conv"] == {"grid": [0, 1]} and "mixup" not in manifest["space"]
    assert (
        manifest["versions"]["ray"]
        and manifest["ended"]
        and "--train-subset" in manifest["command"]
    )


def test_results_cli_rebuilds_the_same_tables(run_dir):
    """Rule: the results command finds a run as the search was told where to put it
    (--storage-path, --name) as well as by its folder, and rebuilds the same tables."""
    before = pd.read_parquet(run_dir / "trials.parquet")
    (run_dir / "trials.parquet").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "tune_mnist.results", "--storage-path", str(run_dir.parent),
         "--name", run_dir.name],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "trials.parquet"), before)
    by_folder = subprocess.run(
        [sys.executable, "-m", "tune_mnist.results", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert by_folder.returncode == 0 and by_folder.stdout == result.stdout, by_folder.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["RUN", "--name", "N"], "not both"),
        ([], "which run? give RUN_DIR (STORAGE_PATH/NAME) or --name NAME"),
        (["--storage-path", "P"], "which run?"),
    ],
)
def test_results_cli_needs_one_way_to_name_the_run(argv, message, capsys):
    from tune_mnist.results import main

    with pytest.raises(SystemExit) as exit_status:
        main(argv)
    assert exit_status.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("python -m tune_mnist.results: error: ") and message in error, error


def test_manifest_environment_never_records_secrets(monkeypatch):
    """Rule: only variables on the allow-list reach the manifest (and MLflow, which logs it);
    RAY_ADDRESS without its credentials."""
    from tune_mnist.tuning import RECORDED_ENVIRONMENT, recorded_environment

    monkeypatch.setenv("RAY_AUTH_TOKEN", "hunter2")
    monkeypatch.setenv("TUNE_MNIST_API_KEY", "hunter2")
    monkeypatch.setenv("RAY_redis_password", "hunter2")
    monkeypatch.setenv("TUNE_MNIST_SECRET_X", "hunter2")
    # Names a prefix rule let through: Ray Jobs' HTTP headers carry bearer tokens.
    monkeypatch.setenv("RAY_JOB_HEADERS", '{"Authorization": "Bearer hunter2"}')
    monkeypatch.setenv("TF_SOMETHING_NEW", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("RAY_ADDRESS", "https://admin:hunter2@head.example:8265?token=hunter2")
    monkeypatch.setenv("TUNE_MNIST_DATA_DIR", "/data")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    recorded = recorded_environment()
    assert recorded["TUNE_MNIST_DATA_DIR"] == "/data"
    assert recorded["CUDA_VISIBLE_DEVICES"] == "0"
    assert recorded["RAY_ADDRESS"] == "https://head.example:8265"
    assert set(recorded) <= set(RECORDED_ENVIRONMENT)
    assert "hunter2" not in json.dumps(recorded)


# A local Ray as a search starts it (tuning._init_ray without --address), asked from a worker.
LOCAL_RAY_AUTH = """
import os, ray
from tune_mnist.tuning import _init_ray
_init_ray(None)
mode = ray.remote(lambda: os.environ.get("RAY_AUTH_MODE")).remote()
print("worker RAY_AUTH_MODE:", ray.get(mode))
ray.shutdown()
"""


def test_a_local_ray_requires_a_token(tmp_path):
    """Rule: a search without --address starts its Ray with token authentication, its token made
    for it, even where the user never set RAY_AUTH_MODE (anyone reaching the ports of an open Ray
    can run code as this user)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # where Ray writes the token it makes (~/.ray/auth_token)
    result = subprocess.run(
        [sys.executable, "-c", LOCAL_RAY_AUTH],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "worker RAY_AUTH_MODE: token" in result.stdout
    assert len((tmp_path / ".ray" / "auth_token").read_text().strip()) >= 32
