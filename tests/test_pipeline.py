"""The batches of an epoch: shared by both arms, a function of (seed, epoch), fresh MixUp draws."""

import numpy as np

from tune_mnist import data
from tune_mnist.pipeline import TrainingSet, with_label_noise


def sample(n=200):
    arrays = data.load_arrays("mnist_sample")
    return arrays.x_train[:n], arrays.y_train[:n]


def epoch_batches(training, **kwargs) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images.numpy(), labels.numpy()) for images, labels in training.epoch(**kwargs)]


def mixing_weights(training, **kwargs) -> np.ndarray:
    """The MixUp weight of every sample of an epoch, read off its soft label.

    With labels that are all distinct classes within a batch (ids 0..9 for 10 images), a mixed
    row holds lambda on the sample's class and 1 - lambda on its partner's (or 1 when the partner
    is itself), so the larger entry is max(lambda, 1 - lambda).
    """
    return np.concatenate([labels.max(axis=1) for _, labels in epoch_batches(training, **kwargs)])


def test_plain_batches_are_scaled_one_hot():
    training = TrainingSet.from_arrays(*sample())
    images, labels = epoch_batches(training, epoch=1, seed=0, batch_size=50)[0]
    assert images.shape == (50, 28, 28, 1) and images.min() >= 0 and images.max() <= 1
    assert images.max() == 1.0  # scaled by 255, not left in 0..255
    assert set(np.unique(labels)) == {0.0, 1.0} and (labels.sum(axis=1) == 1).all()


def test_the_batch_order_is_a_function_of_seed_and_epoch():
    x, y = sample(100)
    training = TrainingSet.from_arrays(x, y)
    first = epoch_batches(training, epoch=3, seed=7, batch_size=25)
    again = epoch_batches(TrainingSet.from_arrays(x, y), epoch=3, seed=7, batch_size=25)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    next_epoch = epoch_batches(training, epoch=4, seed=7, batch_size=25)
    assert not np.array_equal(first[0][0], next_epoch[0][0])
    # Every image once per epoch.
    assert sum(len(b[0]) for b in first) == 100


def test_the_mixup_arm_mixes_the_plain_arms_batches():
    x, y = sample(100)
    training = TrainingSet.from_arrays(x, y)
    plain = epoch_batches(training, epoch=2, seed=1, batch_size=50)
    mixed = epoch_batches(training, epoch=2, seed=1, batch_size=50, mixup_alpha=0.4)
    for (plain_images, plain_labels), (mixed_images, mixed_labels) in zip(
        plain, mixed, strict=True
    ):
        # The mixed batch is made of the plain batch's images: same classes present, same total.
        assert set(np.flatnonzero(mixed_labels.sum(axis=0))) <= set(
            np.flatnonzero(plain_labels.sum(axis=0))
        )
        np.testing.assert_allclose(mixed_labels.sum(), plain_labels.sum(), rtol=1e-5)
        assert not np.array_equal(mixed_images, plain_images)


def test_mixup_weights_are_redrawn_every_epoch_and_repeat_for_the_same_epoch():
    x = np.zeros((10, 28, 28), np.uint8)
    y = np.arange(10, dtype=np.uint8)
    training = TrainingSet.from_arrays(x, y)
    options = dict(seed=0, batch_size=10, mixup_alpha=0.4)
    epoch_1 = mixing_weights(training, epoch=1, **options)
    assert (epoch_1 < 0.999).sum() >= 5  # really mixed
    np.testing.assert_array_equal(epoch_1, mixing_weights(training, epoch=1, **options))
    assert not np.allclose(np.sort(epoch_1), np.sort(mixing_weights(training, epoch=2, **options)))


def test_label_noise_is_seeded_and_near_the_fraction():
    y = np.resize(np.arange(10, dtype=np.uint8), 5000)
    noisy = with_label_noise(y, 0.3, seed=1)
    assert np.array_equal(noisy, with_label_noise(y, 0.3, seed=1))
    changed = (noisy != y).mean()
    assert 0.22 < changed < 0.32  # a random replacement keeps the label 1 time in 10
