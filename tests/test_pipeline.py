import keras
import numpy as np

from tune_mnist import data
from tune_mnist.pipeline import training_dataset, with_label_noise


def sample(n=200):
    arrays = data.load_arrays("mnist_sample")
    return arrays.x_train[:n], arrays.y_train[:n]


def test_plain_batches_are_scaled_one_hot():
    x, y = sample()
    images, labels = next(iter(training_dataset(x, y, batch_size=50, seed=0, mixup=False)))
    assert images.shape == (50, 28, 28, 1) and 0 <= images.numpy().min() and images.numpy().max() <= 1
    assert set(np.unique(labels.numpy())) == {0.0, 1.0}


def test_mixup_gives_soft_labels_with_weights_in_unit_interval():
    x, y = sample()
    batches = list(training_dataset(x, y, batch_size=50, seed=0, mixup=True, mixup_alpha=0.4))
    labels = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert labels.min() >= 0 and labels.max() <= 1
    assert (labels.max(axis=1) < 0.999).mean() > 0.3  # most samples really are mixed
    images = np.concatenate([b[0].numpy() for b in batches])
    assert images.min() >= 0 and images.max() <= 1


def test_mixup_draws_fresh_mix_every_epoch():
    x, y = sample(100)
    dataset = training_dataset(x, y, batch_size=100, seed=0, mixup=True, mixup_alpha=1.0)
    first = next(iter(dataset))[1].numpy()
    second = next(iter(dataset))[1].numpy()
    assert not np.allclose(np.sort(first.max(axis=1)), np.sort(second.max(axis=1)))


def test_label_noise_is_seeded_and_near_the_fraction():
    y = np.resize(np.arange(10, dtype=np.uint8), 5000)
    noisy = with_label_noise(y, 0.3, seed=1)
    assert np.array_equal(noisy, with_label_noise(y, 0.3, seed=1))
    changed = (noisy != y).mean()
    assert 0.22 < changed < 0.32  # a random replacement keeps the label 1 time in 10


def test_mixup_is_reproducible_for_a_seed():
    """Same seed, same mixes: a rerun (or the next trial in a reused worker) trains the same model.

    The draws come from the MixUp layer's seed state, so they must be made in batch order, not by
    parallel map calls racing for it.
    """
    x, y = sample()

    def epoch_labels() -> list[np.ndarray]:
        keras.utils.set_random_seed(0)
        dataset = training_dataset(x, y, batch_size=50, seed=0, mixup=True, mixup_alpha=0.4)
        return [labels.numpy() for _, labels in dataset]

    first, second = epoch_labels(), epoch_labels()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
