"""Floating-point work: what one training image costs, and what the CPU's matmul peak is."""

from __future__ import annotations

import time
from typing import Any

from bench.configs import BENCHMARKED


def training_flops_per_image(cfg: dict[str, Any]) -> float:
    """2 x multiply-adds of every Conv2D and Dense layer, from the layer shapes, times 3 for
    training (forward, and backward to activations and to weights).

    Batch norm, activations, pooling and dropout are elementwise and ignored (a few percent).
    """
    from keras import layers

    from tune_mnist.model import build_model

    forward = 0.0
    for layer in build_model(cfg).layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            forward += 2.0 * h * w * kh * kw * c_in * c_out
        elif isinstance(layer, layers.Dense):
            n_in, n_out = layer.kernel.shape
            forward += 2.0 * n_in * n_out
    return 3 * forward


def flops_by_config() -> dict[str, float]:
    """Training FLOPs per image of every benchmarked configuration."""
    return {name: training_flops_per_image(cfg) for name, cfg in BENCHMARKED.items()}


def matmul_peak(n: int, seconds: float) -> float:
    """GFLOP/s of an n x n float32 matmul, best of a few timed blocks."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n)) / n**0.5  # keeps the chained products finite

    @tf.function
    def block(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        # Chained, so the optimizer cannot merge identical matmuls into one.
        c = a
        for _ in range(4):
            c = tf.matmul(c, b)
        return tf.reduce_sum(c)

    block(a, b).numpy()  # trace and warm up outside the timed blocks
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        block(a, b).numpy()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best
