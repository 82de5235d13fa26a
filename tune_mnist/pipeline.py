"""Input pipelines: the batches of one epoch, the same for both arms of a pair.

Both arms of a pair train on the same batches in the same order; the MixUp arm blends them with
`keras.layers.MixUp`. The batch order and the MixUp draws of epoch e are a function of (seed, e)
alone, so a trial retried or resumed from its checkpoint after epoch e continues exactly where an
uninterrupted one would be, and the pair keeps sharing its batches. Scaling to [0, 1] happens per
batch so the shared arrays stay uint8.

tf.data's autotuner is off: its background thread sleeps up to ~10 s between optimization rounds,
and the iterator Keras drops at the end of every `model.fit` call waits for that thread to wake.
With one `fit` per epoch that stalled epochs of a few seconds by up to 10 s (scripts/benchmark.py,
lever "tf.data autotune"). The pipeline is cheap next to training, so fixed parallelism loses
nothing.

>>> epoch_order(5, seed=0, epoch=1).tolist() == epoch_order(5, seed=0, epoch=1).tolist()
True
>>> epoch_order(5, seed=0, epoch=1).tolist() != epoch_order(5, seed=0, epoch=2).tolist()
True
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tune_mnist.data import NUM_CLASSES, PIXEL_MAX

# Streams drawn from one (seed, epoch): separate so that, say, adding a dropout layer does not
# change the batch order.
_ORDER, _MIXUP, _LAYERS = 0, 1, 2


def epoch_seed(seed: int, epoch: int, stream: int, index: int = 0) -> int:
    """A 31-bit seed that depends on (seed, epoch, stream, index) only."""
    return int(np.random.default_rng([seed, epoch, stream, index]).integers(2**31 - 1))


def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the n training images."""
    return np.random.default_rng([seed, epoch, _ORDER]).permutation(n)


@dataclass
class TrainingSet:
    """A trial's training images and labels, held once as tensors for every epoch's batches."""

    images: tf.Tensor
    labels: tf.Tensor

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray) -> TrainingSet:
        return cls(tf.constant(x), tf.constant(y.astype(np.int32)))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def epoch(
        self, *, epoch: int, seed: int, batch_size: int, mixup_alpha: float | None = None
    ) -> tf.data.Dataset:
        """Batches of (images in [0, 1], one-hot labels) of one epoch; MixUp-ed with an alpha."""
        order = epoch_order(len(self), seed=seed, epoch=epoch)
        dataset = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(self._gather)
        if mixup_alpha is not None:
            dataset = dataset.map(_mixup(mixup_alpha, epoch_seed(seed, epoch, _MIXUP)))
        options = tf.data.Options()
        options.autotune.enabled = False
        # Two batches ahead keep the training step fed; the input work runs on tf.data's thread.
        return dataset.prefetch(2).with_options(options)

    def _gather(self, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.cast(tf.gather(self.images, index), tf.float32)[..., tf.newaxis] / PIXEL_MAX
        return images, tf.one_hot(tf.gather(self.labels, index), NUM_CLASSES)


def _mixup(alpha: float, seed: int):
    """A map function that mixes each batch with `keras.layers.MixUp`, seeded for one epoch.

    Used in a sequential map on purpose: each call advances the layer's seed state, and parallel
    calls would race for it, so the same seed would give different mixes run to run.
    """
    layer = keras.layers.MixUp(alpha=alpha, seed=seed)

    def mix(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        mixed = layer({"images": images, "labels": labels}, training=True)
        return mixed["images"], mixed["labels"]

    return mix


def reseed_layers(model: keras.Model, *, seed: int, epoch: int) -> None:
    """Set every random layer's state (dropout, noise, augmentation) from (seed, epoch).

    Keras does not restore these states from a saved model, so without this a resumed trial would
    draw other dropout masks than an uninterrupted one; and both arms of a pair draw the same ones.
    """
    states = [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]
    for index, state in enumerate(states):
        value = np.array([epoch_seed(seed, epoch, _LAYERS, index), 0])
        state.assign(value.astype(state.dtype))


def with_label_noise(y: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """A copy of y where a seeded random `fraction` of labels is replaced by random classes."""
    if fraction <= 0:
        return y
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    chosen = rng.random(len(y)) < fraction
    noisy[chosen] = rng.integers(0, NUM_CLASSES, size=int(chosen.sum()), dtype=y.dtype)
    return noisy
