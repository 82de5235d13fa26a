"""Test-set evaluation of a real run: the final model of each arm, scored once on the test set."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tune_mnist.checkpoint import CheckpointMissing, latest_checkpoint, load_model
from tune_mnist.data import SAMPLE_TEST_SIZE
from tune_mnist.evaluation import final_models, format_confirmation
from tune_mnist.files import best_model_file, best_savedmodel_dir
from tune_mnist.results import load, main


def test_both_arms_are_evaluated_with_metrics_in_0_1(small_run):
    test_eval = load(small_run).test_eval
    assert sorted(test_eval["arm"]) == ["mixup", "plain"]
    metrics = ["test_acc", "test_mixed_acc", "test_ece", *(f"recall_{c}" for c in range(10))]
    values = test_eval[metrics].to_numpy(dtype=float)
    assert ((values >= 0) & (values <= 1)).all()


def test_the_evaluated_models_are_each_arms_best_by_validation_at_their_last_epoch(small_run):
    r = load(small_run)
    chosen = final_models(r.trials)
    for _, row in r.test_eval.iterrows():
        trial = chosen[row["arm"]]
        assert row["trial_id"] == trial["trial_id"] and row["val_acc"] == trial["last_val_acc"]
        arm = r.trials[r.trials["arm"] == row["arm"]]
        assert trial["last_val_acc"] == arm["last_val_acc"].max()
        # The model as trained: the last checkpoint, no epoch chosen on the validation images.
        assert row["checkpoint_epoch"] == trial["epochs_run"]


def test_confusion_counts_sum_to_the_test_set_per_arm(small_run):
    confusion = load(small_run).confusion
    assert confusion.groupby("arm")["count"].sum().to_dict() == {
        "mixup": SAMPLE_TEST_SIZE,
        "plain": SAMPLE_TEST_SIZE,
    }
    assert set(confusion["true"]) == set(range(10)) and set(confusion["predicted"]) == set(
        range(10)
    )


def test_confusion_diagonal_matches_test_acc(small_run):
    r = load(small_run)
    for _, row in r.test_eval.iterrows():
        cells = r.confusion[r.confusion["arm"] == row["arm"]]
        correct = cells.loc[cells["true"] == cells["predicted"], "count"].sum()
        assert correct / SAMPLE_TEST_SIZE == pytest.approx(row["test_acc"])


def test_the_latest_complete_checkpoint_is_the_one_read(tmp_path):
    # What Tune leaves with num_to_keep=1: the latest checkpoint; an older one may linger.
    for name, epoch in (
        ("checkpoint_000000", 1),
        ("checkpoint_000002", 3),
        ("checkpoint_000003", 4),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.json").write_text(f'{{"epoch": {epoch}}}')
        if epoch != 4:  # epoch 4's checkpoint was cut off before its predictions were written
            np.savez(tmp_path / name / "val_predictions.npz", true=np.zeros(3, np.int8))
    assert latest_checkpoint(tmp_path) == (tmp_path / "checkpoint_000002", 3)


def test_a_trial_without_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointMissing, match="no checkpoint"):
        latest_checkpoint(tmp_path)


@pytest.mark.parametrize("arm", ["plain", "mixup"])
def test_best_models_load_without_tune_mnist_and_predict_as_the_checkpoint(small_run, arm):
    """Rule: best_<arm>.keras holds Keras' own layers only (a notebook without tune_mnist loads
    it) and gives the probabilities of the checkpoint's model it was made from."""
    images = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)
    np.save(small_run.parent / "images.npy", images)
    script = (
        "import sys, keras, numpy as np; "
        "m = keras.models.load_model(sys.argv[1], safe_mode=True); "
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0)); "
        "print(sorted(n for n in sys.modules if n.startswith('tune_mnist')))"
    )
    probs_file = small_run.parent / f"probs_{arm}.npy"
    done = subprocess.run(
        [sys.executable, "-c", script, str(small_run / best_model_file(arm))]
        + [str(small_run.parent / "images.npy"), str(probs_file)],
        capture_output=True, text=True, cwd=small_run.parent, timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("[]"), done.stdout
    trial = final_models(load(small_run).trials)[arm]
    directory, _ = latest_checkpoint(small_run / trial["trial_dir"])
    expected = load_model(directory, arm).predict(images, verbose=0)
    np.testing.assert_allclose(np.load(probs_file), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arm", ["plain", "mixup"])
def test_best_models_are_also_savedmodels_serving_the_same_probabilities(small_run, arm):
    """Rule: best_<arm>_savedmodel/ loads with TensorFlow alone, and its `serve` signature gives
    the .keras model's class probabilities (atol 1e-5); no temporary export folder is left."""
    import keras
    import tensorflow as tf

    images = np.zeros((2, 28, 28, 1), dtype=np.float32)
    images[1] = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28, 1)  # not only zeros
    exported = tf.saved_model.load(str(small_run / best_savedmodel_dir(arm)))
    served = np.asarray(exported.serve(tf.constant(images)))
    model = keras.models.load_model(small_run / best_model_file(arm), safe_mode=True)
    assert served.shape == (2, 10)
    np.testing.assert_allclose(served.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(served, model.predict(images, verbose=0), atol=1e-5)
    assert not list(small_run.glob(f".{best_savedmodel_dir(arm)}*"))


def test_without_checkpoints_the_cli_says_what_is_missing(small_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "interrupted"
    shutil.copytree(
        small_run,
        copy,
        ignore=shutil.ignore_patterns(
            "checkpoint_*", "*.parquet", "*.png", "best_*.keras", "best_*_savedmodel"
        ),
    )
    assert main([str(copy), "--plot"]) == 0
    out = capsys.readouterr().out
    assert "no test evaluation" in out and "no checkpoint" in out
    assert "skipped reliability.png: no test evaluation" in out
    assert (copy / "learning_curves.png").is_file() and not (copy / "confusion.png").exists()
    with pytest.warns(UserWarning, match="no test evaluation"):
        assert load(copy).test_eval is None


def test_test_eval_keeps_one_row_per_arm_with_typed_columns(small_run):
    test_eval = pd.read_parquet(small_run / "test_eval.parquet")
    assert len(test_eval) == 2
    assert test_eval["checkpoint_epoch"].dtype == np.int64
    assert test_eval["test_acc"].dtype == np.float64


# ---- confirmation: both arms of every compared pair, scored once on the test set ----------------


def test_both_arms_of_every_compared_pair_are_scored_on_every_test_image(small_run):
    """Rule: test_pairs holds each compared pair's two arms at the compared epoch, one predicted
    class per test image, and test_acc is the share of them that are right."""
    test_pairs = load(small_run).test_pairs
    trials = load(small_run).trials
    assert set(test_pairs["pair_id"]) == set(trials["pair_id"])
    counts = test_pairs.groupby(["pair_id", "arm"]).size()
    assert len(counts) == 2 * trials["pair_id"].nunique() and (counts == SAMPLE_TEST_SIZE).all()
    assert (test_pairs["compared_epoch"] == 2).all()
    assert test_pairs["predicted"].dtype == np.int8
    hits = (test_pairs["predicted"] == test_pairs["true"]).groupby(
        [test_pairs["pair_id"], test_pairs["arm"]]
    )
    np.testing.assert_allclose(
        hits.mean().to_numpy(), test_pairs.groupby(["pair_id", "arm"])["test_acc"].first()
    )
    # Grid space: the interval's strata are the architectures.
    assert (test_pairs["stratum"] == test_pairs["architecture"]).all()


def test_the_scored_models_are_those_of_the_compared_epoch_checkpoint(small_run):
    """Rule: the predictions of a pair's arm are those of its checkpoint of the compared epoch."""
    from tune_mnist.data import load_arrays, scale_images

    r = load(small_run)
    pair_id = sorted(r.test_pairs["pair_id"].unique())[0]
    trial_dir = r.trials.loc[r.trials["pair_id"] == pair_id, "trial_dir"].iloc[0]
    directory, epoch = latest_checkpoint(small_run / trial_dir)
    images = scale_images(load_arrays("mnist_sample").x_test)
    for arm in ("plain", "mixup"):
        expected = load_model(directory, arm).predict(images, verbose=0).argmax(axis=1)
        rows = r.test_pairs[(r.test_pairs["pair_id"] == pair_id) & (r.test_pairs["arm"] == arm)]
        assert (rows["compared_epoch"] == epoch).all()
        np.testing.assert_array_equal(rows.sort_values("test_index")["predicted"], expected)


def test_the_confirmatory_row_is_mixup_minus_plain_on_test_with_a_finite_interval(small_run):
    comparison = pd.read_parquet(small_run / "comparison.parquet")
    (row,) = comparison[comparison["role"] == "confirmatory"].itertuples()
    assert (row.metric, row.architecture, row.n_pairs) == ("test_acc", "all", 4)
    assert np.isfinite([row.ci_low, row.ci_high]).all() and row.ci_low <= row.diff <= row.ci_high
    assert row.mixup - row.plain == pytest.approx(row.diff, abs=1e-12)
    per_arm = load(small_run).test_pairs.drop_duplicates(["pair_id", "arm"])
    assert row.mixup == pytest.approx(per_arm.loc[per_arm["arm"] == "mixup", "test_acc"].mean())
    # The primary row stays the first: the test set confirms, it does not replace.
    assert comparison.iloc[0]["role"] == "primary"
    assert "descriptive only" not in format_confirmation(comparison)
    # In an until-decided run the fixed-n numbers are descriptive, the test set's interval too.
    until = pd.concat([comparison, comparison.iloc[[0]].assign(role="descriptive")])
    assert format_confirmation(until).endswith("(descriptive only: fixed-n over the rounds run)")


def test_missing_paired_scores_are_remade_without_scoring_the_final_models_again(
    small_run, tmp_path, capsys
):
    import shutil

    copy = tmp_path / "no_pairs"
    shutil.copytree(small_run, copy)
    saved = pd.read_parquet(copy / "test_pairs.parquet")
    evaluated = (copy / "test_eval.parquet").stat().st_mtime_ns
    (copy / "test_pairs.parquet").unlink()
    comparison = pd.read_parquet(copy / "comparison.parquet")
    comparison[comparison["role"] != "confirmatory"].to_parquet(copy / "comparison.parquet")
    assert main([str(copy)]) == 0
    assert "Confirmation on the test set (both arms of 4 compared pairs" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "test_pairs.parquet"), saved)
    assert (copy / "test_eval.parquet").stat().st_mtime_ns == evaluated
    assert "confirmatory" in set(pd.read_parquet(copy / "comparison.parquet")["role"])
