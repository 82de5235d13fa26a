"""The two baselines the service is compared with, timed on the same images in the same run.

The tutorials' `model.fit` on float NumPy arrays, and the original study's MixUp loader: two
shuffled tf.data iterators mixed in NumPy per batch, behind a `keras.utils.PyDataset`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.timing import EpochTimer, timed

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


def tutorial_timer(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> EpochTimer:
    """The tutorials' way: float arrays in memory, `model.fit(x, y, batch_size=50)`."""
    from tune_mnist.model import compile_model

    model = compile_model(cfg)
    xf, yo = x.astype(np.float32)[..., None] / 255.0, np.eye(10, dtype=np.float32)[y]
    model.fit(xf[:100], yo[:100], batch_size=50, verbose=0)  # trace outside the timed epochs

    def fit() -> None:
        model.fit(xf, yo, batch_size=50, epochs=1, shuffle=True, verbose=0)

    return timed(fit, len(x))


def original_loader_timer(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> EpochTimer:
    """One `model.fit` epoch fed by the original study's MixUp loader."""
    from tune_mnist.model import compile_model

    model = compile_model(cfg)
    bs = cfg["batch_size"]
    loader = original_mixup_loader(x, y, batch_size=bs, alpha=cfg["mixup_alpha"])
    model.fit(loader, epochs=1, steps_per_epoch=2, verbose=0)  # trace outside the timed epochs
    return timed(lambda: model.fit(loader, epochs=1, verbose=0), len(loader) * bs)


def input_only(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Images/s of the MixUp input paths alone, no model: one epoch of batches, best of 3."""
    from bench.timing import service_dataset

    bs = cfg["batch_size"]
    service = service_dataset(
        x, y, batch_size=bs, seed=0, mixup=True, mixup_alpha=cfg["mixup_alpha"]
    )
    loader = original_mixup_loader(x, y, batch_size=bs, alpha=cfg["mixup_alpha"])

    def drain_service() -> None:
        for _ in service:
            pass

    def drain_loader() -> None:
        for index in range(len(loader)):
            loader[index]

    found = {
        "service_mixup": max(timed(drain_service, len(x))() for _ in range(3)),
        "original_mixup_loader": max(timed(drain_loader, len(loader) * bs)() for _ in range(3)),
    }
    found["service_vs_original_loader"] = found["service_mixup"] / found["original_mixup_loader"]
    return found


def original_mixup_loader(
    x: np.ndarray, y: np.ndarray, *, batch_size: int, alpha: float, seed: int = 0
) -> keras.utils.PyDataset:
    """The original study's loader: two shuffled tf.data iterators per batch, mixed in NumPy with
    per-sample Beta weights, served through a keras.utils.PyDataset."""
    # The class is defined here, not at module level, so that importing this module (for --help
    # or in a worker before its thread counts are set) does not import Keras.
    import keras

    class MixUpLoader(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.x = x.astype(np.float32)[..., None] / 255.0
            self.y = np.eye(10, dtype=np.float32)[y]
            self.rng = np.random.default_rng(seed)
            self.first = _shuffled_batches(self.x, self.y, batch_size, seed)
            self.second = _shuffled_batches(self.x, self.y, batch_size, seed + 1)

        def __len__(self) -> int:
            return len(self.x) // batch_size

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            x1, y1 = (t.numpy() for t in next(self.first))
            x2, y2 = (t.numpy() for t in next(self.second))
            weight = self.rng.beta(alpha, alpha, size=batch_size).astype(np.float32)
            images = weight[:, None, None, None] * x1 + (1 - weight[:, None, None, None]) * x2
            return images, weight[:, None] * y1 + (1 - weight[:, None]) * y2

    return MixUpLoader()


def _shuffled_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int
) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
    """Endless full batches of (x, y), reshuffled every pass, as the original loader drew them."""
    import tensorflow as tf

    batches = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed)
        .batch(batch_size, drop_remainder=True)
        .repeat()
    )
    return iter(batches)
