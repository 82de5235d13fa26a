"""A pair trial without Ray: both arms start equal, and a resumed pair continues exactly."""

import keras
import numpy as np
import pytest

from tune_mnist import data
from tune_mnist.space import KEYS
from tune_mnist.trainable import PairTrainer

CONFIG = {k: spec.default for k, spec in KEYS.items()} | {
    "num_conv": 1, "filters": 8, "kernel_size": 3, "pooling": "max", "dropout": 0.3,
    "batch_size": 50, "seed": 3,
}  # fmt: skip
SEED = 12345  # a pair seed (tune_mnist.replicates); the trainable derives it from the config


@pytest.fixture(scope="module")
def search_data() -> data.SearchData:
    arrays = data.load_arrays("mnist_sample")
    return data.split(arrays, "mnist_sample", val_fraction=0.05, train_subset=300, seed=0)


def test_both_arms_start_from_identical_weights(search_data):
    pair = PairTrainer.build(CONFIG, search_data, seed=SEED)
    plain, mixup = (pair.models[arm].get_weights() for arm in ("plain", "mixup"))
    assert len(plain) == len(mixup) > 0
    assert all(np.array_equal(a, b) for a, b in zip(plain, mixup, strict=True))


def test_a_pair_resumed_from_its_checkpoint_continues_as_if_never_stopped(search_data, tmp_path):
    """Epoch 3 after a checkpoint of epoch 2 equals an uninterrupted run's epoch 3.

    Batch order, MixUp draws and dropout masks are functions of (seed, epoch), and the checkpoint
    holds weights, optimizer and batch-norm state: equal to float32 round-off (rtol 1e-5).
    """
    keras.backend.clear_session()
    straight = PairTrainer.build(CONFIG, search_data, seed=SEED)
    reports = [straight.train_epoch(epoch) for epoch in (1, 2, 3)]

    keras.backend.clear_session()
    interrupted = PairTrainer.build(CONFIG, search_data, seed=SEED)
    for epoch in (1, 2):
        interrupted.train_epoch(epoch)
    interrupted.save(tmp_path)
    keras.backend.clear_session()
    resumed = PairTrainer.restore(CONFIG, search_data, tmp_path, seed=SEED)
    assert resumed.state.epoch == 2
    third = resumed.train_epoch(3)

    for arm in ("plain", "mixup"):
        for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "val_mixed_loss"):
            assert third[arm][metric] == pytest.approx(reports[2][arm][metric], rel=1e-5), (
                arm,
                metric,
            )
        np.testing.assert_array_equal(resumed.predictions[arm], straight.predictions[arm])
    assert resumed.predictions["plain"].shape == (3, len(search_data.y_val))


def test_validation_metrics_are_those_of_the_clean_and_the_mixed_set_scored_apart(search_data):
    """One predict call per arm scores both validation sets as two separate calls would."""
    from tune_mnist.metrics import score

    keras.backend.clear_session()
    pair = PairTrainer.build(CONFIG, search_data, seed=SEED)
    report = pair.train_epoch(1)
    clean_x = data.scale_images(search_data.x_val)
    mixed_x, mixed_y = data.apply_mix(search_data.x_val, search_data.y_val, search_data.val_mix)
    for arm, model in pair.models.items():
        probs = model.predict(clean_x, batch_size=500, verbose=0)
        clean = score(probs, data.one_hot(search_data.y_val))
        mixed = score(model.predict(mixed_x, batch_size=500, verbose=0), mixed_y)
        assert report[arm]["val_acc"] == pytest.approx(clean["acc"], abs=1e-12)
        assert report[arm]["val_mixed_acc"] == pytest.approx(mixed["acc"], abs=1e-12)
        assert report[arm]["val_loss"] == pytest.approx(clean["loss"], rel=1e-5)
        assert report[arm]["val_mixed_loss"] == pytest.approx(mixed["loss"], rel=1e-5)
        np.testing.assert_array_equal(pair.predictions[arm][0], probs.argmax(axis=1))


def test_after_an_arm_diverges_every_checkpoint_carries_both_arms_at_the_compared_epoch(
    search_data, tmp_path
):
    """Rule: when the MixUp arm diverges at epoch 2 and the plain arm trains on, the checkpoints
    of epochs 2 and 3 (the latter written by a restored pair) hold both arms' epoch-1 models,
    the pair's compared epoch, which Tune's two kept checkpoints would otherwise have lost."""
    from tune_mnist.checkpoint import compared_models, load_model, load_state

    keras.backend.clear_session()
    pair = PairTrainer.build(CONFIG, search_data, seed=SEED)
    pair.train_epoch(1)
    pair.models["mixup"].set_weights(
        [np.full_like(w, np.nan) for w in pair.models["mixup"].get_weights()]
    )
    assert pair.train_epoch(2)["mixup"]["diverged"]
    epoch_2, epoch_3 = tmp_path / "checkpoint_000001", tmp_path / "checkpoint_000002"
    epoch_2.mkdir(), epoch_3.mkdir()
    pair.save(epoch_2)
    keras.backend.clear_session()
    resumed = PairTrainer.restore(CONFIG, search_data, epoch_2, seed=SEED)
    resumed.train_epoch(3)
    resumed.save(epoch_3)
    assert load_state(epoch_3)["compared_epoch"] == 1
    assert compared_models(tmp_path, 1) == (epoch_3, True)
    validation = data.scale_images(search_data.x_val)
    for arm in ("plain", "mixup"):
        for checkpoint in (epoch_2, epoch_3):
            model = load_model(checkpoint, arm, compared=True)
            predicted = model.predict(validation, batch_size=500, verbose=0).argmax(axis=1)
            # The epoch-1 model: it predicts the validation classes recorded after epoch 1.
            np.testing.assert_array_equal(predicted, resumed.predictions[arm][0])
    assert resumed.predictions["plain"].shape[0] == 3 and resumed.predictions["mixup"].shape[0] == 1
