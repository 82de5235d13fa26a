"""The sections timed in this process: matmul peak, service pipeline, baselines, levers.

Each takes the run's Context and returns its figures (images/s unless named otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bench.baselines import input_only, original_loader_timer, tutorial_timer
from bench.configs import BENCHMARKED, REFERENCE
from bench.context import Context, log
from bench.flops import matmul_peak
from bench.timing import (
    EpochTimer,
    autotuned_dataset,
    epoch_images,
    interleaved,
    service_timer,
    step_timer,
)
from bench.workers import collect, spawn

if TYPE_CHECKING:
    import keras


def peak_section(ctx: Context) -> dict[str, Any]:
    """The float32 matmul peak on all cores, the yardstick for % of peak."""
    log("matmul peak")
    n = 2048 if ctx.quick else 4096
    return {"matmul_n": n, "gflops_all_cores": matmul_peak(n, 3.0 if ctx.quick else 10.0)}


def pipeline_section(ctx: Context) -> dict[str, Any]:
    """Plain and MixUp images/s of every benchmarked configuration through the service's path."""
    rows = {}
    for name in BENCHMARKED:
        # When both sections run, the baselines are timed in turns with the reference
        # configuration's arms, so their ratios come from the same moments of machine load.
        together = name == REFERENCE and "baselines" in ctx.sections
        best = _time_config(ctx, name, baselines=together)
        rows[name] = _pipeline_row(ctx, name, best)
        if together:
            ctx.carried["baselines"] = _baseline_figures(ctx, best)
    return {
        "batch_size": 50,
        "threads": "all cores",
        "rounds": ctx.rounds,
        "images_per_second": rows,
    }


def baselines_section(ctx: Context) -> dict[str, Any]:
    """The service against the tutorials' model.fit and the original study's MixUp loader."""
    if "baselines" in ctx.carried:  # already timed by the pipeline section
        return ctx.carried.pop("baselines")
    return _baseline_figures(ctx, _time_config(ctx, REFERENCE, baselines=True))


def _time_config(ctx: Context, name: str, *, baselines: bool) -> dict[str, float]:
    """Best images/s of one configuration's plain and MixUp arms (and the baselines), in turns."""
    cfg = BENCHMARKED[name]
    x, y = ctx.search.x_train, ctx.search.y_train
    n = epoch_images(cfg, x, y, ctx.measure_s)
    log(f"pipeline {name}: {n} images per timed epoch")
    timers = {
        "plain": service_timer(cfg, x[:n], y[:n], mixup=False),
        "mixup": service_timer(cfg, x[:n], y[:n], mixup=True),
    }
    if baselines:
        timers["tutorial"] = tutorial_timer(cfg, x[:n], y[:n])
        timers["loader"] = original_loader_timer(cfg, x[:n], y[:n])
    return interleaved(timers, ctx.rounds)


def _pipeline_row(ctx: Context, name: str, best: dict[str, float]) -> dict[str, float]:
    """One configuration's row: both arms, MixUp's cost and, with a measured peak, % of it."""
    row = {
        "plain": best["plain"],
        "mixup": best["mixup"],
        "mixup_cost": 1 - best["mixup"] / best["plain"],
    }
    peak = ctx.figures.get("peak", {}).get("gflops_all_cores")
    if peak:
        row["percent_of_peak"] = 100 * row["plain"] * ctx.figures["flops"][name] / 1e9 / peak
    return row


def _baseline_figures(ctx: Context, best: dict[str, float]) -> dict[str, Any]:
    """The baselines section's figures from the reference configuration's timings."""
    x, y = ctx.search.x_train, ctx.search.y_train
    return {
        "config": "num_conv=2",
        "tutorial_numpy_fit": best["tutorial"],
        "original_mixup_loader": best["loader"],
        "service_plain": best["plain"],
        "service_mixup": best["mixup"],
        "plain_vs_tutorial": best["plain"] / best["tutorial"],
        "mixup_vs_original_loader": best["mixup"] / best["loader"],
        "input_only": input_only(BENCHMARKED[REFERENCE], x, y),
    }


def levers_section(ctx: Context) -> dict[str, Any]:
    """What batch size, steps_per_execution, tf.data's autotuner, the batch norm kernel, dropout,
    bfloat16 and oneDNN change."""
    cfg = BENCHMARKED[REFERENCE]
    x, y = ctx.search.x_train, ctx.search.y_train
    n = epoch_images(cfg, x, y, ctx.measure_s)
    timers = _batch_levers(ctx, cfg, x[:n], y[:n])
    timers.update(_autotune_levers(cfg, x, y, n))
    timers.update(_batch_norm_levers(ctx, cfg, x, y))
    if ctx.figures["machine"]["bfloat16_hardware"]:
        timers.update(_bfloat16_lever(cfg, x[:n], y[:n]))
    levers = interleaved(timers, ctx.rounds)
    if not ctx.quick:
        levers.update(_onednn_levers(ctx))
    return {"config": "num_conv=2 plain", "images_per_second": levers}


def _batch_levers(
    ctx: Context, cfg: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> dict[str, EpochTimer]:
    """Batch sizes, each with one and with 8 steps per execution."""
    timers = {}
    for batch in (50, 256) if ctx.quick else (50, 128, 256):
        for spe in (1, 8):
            log(f"lever batch {batch} steps_per_execution {spe}")
            model = _compiled(cfg, steps_per_execution=spe)
            timers[f"batch={batch} steps_per_execution={spe}"] = service_timer(
                {**cfg, "batch_size": batch}, x, y, mixup=False, compiled=model
            )
    return timers


def _compiled(cfg: dict[str, Any], *, steps_per_execution: int) -> keras.Model:
    """The service's model, compiled as compile_model does but with `steps_per_execution`."""
    import keras

    from tune_mnist.model import build_model

    model = build_model(cfg)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="acc")],
        steps_per_execution=steps_per_execution,
    )
    return model


def _batch_norm_levers(
    ctx: Context, cfg: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> dict[str, EpochTimer]:
    """The training step alone (no tf.data) with TensorFlow's fused batch norm kernel (the
    default), Keras' unfused layer, and without batch norm or dropout (what they cost)."""
    from tune_mnist.data import one_hot, scale_images
    from tune_mnist.model import compile_model

    batch = 128
    images, labels = scale_images(x[:batch]), one_hot(y[:batch])
    variants = {
        "fused batch norm": (cfg, "fused"),
        "keras batch norm": (cfg, "keras"),
        "no batch norm": ({**cfg, "batch_norm": False}, "fused"),
        "no dropout": ({**cfg, "dropout": 0.0}, "fused"),
    }
    timers = {}
    for name, (variant, kernel) in variants.items():
        log(f"lever {name}, train step at batch {batch}")
        model = compile_model(variant, bn_kernel=kernel)
        timers[f"train step, batch {batch}: {name}"] = step_timer(
            model, images, labels, ctx.measure_s
        )
    return timers


def _autotune_levers(
    cfg: dict[str, Any], x: np.ndarray, y: np.ndarray, n: int
) -> dict[str, EpochTimer]:
    """The service's pipeline (autotuner off) against the same with the autotuner on."""
    # The autotuner's stall hits the end of an epoch once its optimization period has grown
    # (seconds into a search): time 4 consecutive short epochs, as a trial runs them.
    log("lever tf.data autotuner off (the service) vs on (before), 4 consecutive epochs")
    quarter = max(cfg["batch_size"], n // 4)
    xq, yq = x[:quarter], y[:quarter]
    return {
        "tf.data autotune off: 4 consecutive epochs": service_timer(
            cfg, xq, yq, mixup=False, epochs=4
        ),
        "tf.data autotune on: 4 consecutive epochs": service_timer(
            cfg, xq, yq, mixup=False, dataset=autotuned_dataset, epochs=4
        ),
    }


def _bfloat16_lever(cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, EpochTimer]:
    """The mixed_bfloat16 policy (only where the CPU computes in bfloat16)."""
    import keras

    log("lever mixed_bfloat16")
    # The policy applies to models built while it is set: build this one, then restore float32.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    timer = service_timer(cfg, x, y, mixup=False)
    keras.mixed_precision.set_global_policy("float32")
    return {"mixed_bfloat16 policy": timer}


def _onednn_levers(ctx: Context) -> dict[str, float]:
    """oneDNN off and on, each in a fresh process (TensorFlow reads the variable at import)."""
    spec = {
        "kind": "throughput",
        "config": {"num_conv": 2},
        "images": 3000,
        "mixup": False,
        "seconds": ctx.measure_s,
    }
    levers = {}
    for onednn in ("0", "1"):
        log(f"lever TF_ENABLE_ONEDNN_OPTS={onednn}")
        worker = spawn(spec, {"TF_ENABLE_ONEDNN_OPTS": onednn})
        levers[f"TF_ENABLE_ONEDNN_OPTS={onednn} (fresh process)"] = collect(worker)[
            "images_per_second"
        ]
    return levers
