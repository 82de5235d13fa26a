"""Input pipelines: a chain of tf.data transformations over the uint8 arrays a trial receives.

Training: shuffle (reshuffled every epoch), batch, scale to [0, 1] and one-hot, then, in the MixUp
arm, `keras.layers.MixUp`: a fresh per-sample Beta(alpha, alpha) mix in every batch of every epoch.
Scaling happens per batch so the shared arrays stay uint8.

tf.data's autotuner is off: its background thread sleeps up to ~10 s between optimization rounds,
and the iterator Keras drops at the end of every `model.fit` call waits for that thread to wake.
With one `fit` per epoch that stalled epochs of a few seconds by up to 10 s (scripts/benchmark.py,
lever "tf.data autotune"). The pipeline is cheap next to training, so fixed parallelism loses nothing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

from tune_mnist.data import NUM_CLASSES


def _scale(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    images = tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0
    return images, tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES)


def training_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    mixup: bool,
    mixup_alpha: float = 0.2,
) -> tf.data.Dataset:
    """Batches of (images, one-hot or MixUp soft labels), reshuffled every epoch."""
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(_scale)
    )
    if mixup:
        mix = keras.layers.MixUp(alpha=mixup_alpha, seed=seed)

        def _mix(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            mixed = mix({"images": images, "labels": labels}, training=True)
            return mixed["images"], mixed["labels"]

        # Sequential on purpose: each call advances the layer's seed state, and parallel calls
        # would race for it, so the same seed would give different mixes (and models) run to run.
        # MixUp is cheap next to a training step (this pipeline alone: ~50,000 images/s on 2 cores).
        dataset = dataset.map(_mix)
    options = tf.data.Options()
    options.autotune.enabled = False
    # Two batches ahead keep the training step fed; the input work runs on tf.data's own thread.
    return dataset.prefetch(2).with_options(options)


def with_label_noise(y: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """A copy of y where a seeded random `fraction` of labels is replaced by random classes."""
    if fraction <= 0:
        return y
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    chosen = rng.random(len(y)) < fraction
    noisy[chosen] = rng.integers(0, NUM_CLASSES, size=int(chosen.sum()), dtype=y.dtype)
    return noisy
