"""What one trial may use: CPUs, a (fraction of a) GPU, memory, TensorFlow threads and GPU memory.

Ray only *accounts* for resources: a trial asking for 0.5 GPU gets half a GPU in the scheduler's
books, but TensorFlow would still grab all of the card's memory and as many threads as there are
cores, and concurrent trials would fight (the lesson of Ray's old tune_mnist_keras example). A
``ResourcePlan`` turns the numbers a user gives into the settings that make the accounting true.

>>> plan = ResourcePlan(cpus_per_trial=2, gpus_per_trial=0.5, memory_mib=1024)
>>> plan.tune_resources()
{'cpu': 2.0, 'gpu': 0.5, 'memory': 1073741824.0}
>>> plan.intra_op_threads, plan.inter_op_threads
(2, 2)
>>> plan.gpu_memory_limit_mib(total_mib=81_920)
36864

No Ray or TensorFlow import at module level: the CLI validates a plan before either is loaded.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

# Memory a trial leaves unclaimed on its share of a GPU: the CUDA context, cuDNN workspaces and
# allocator fragmentation live outside TensorFlow's limit, and two trials sharing a card must not
# push each other into out-of-memory errors.
GPU_MEMORY_HEADROOM = 0.10
# The report key of a trial's process RSS (process_rss_mib), which retires a reused worker.
WORKER_RSS = "worker_rss_mib"


@dataclass(frozen=True)
class ResourcePlan:
    """CPUs and GPUs for one trial; fractional GPUs (0.5, 0.25) share a card between trials."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # Ray's memory resource (logical, like its CPUs): trials only start where enough is unclaimed,
    # so concurrent trials are not planned past a node's memory. 0: no request.
    memory_mib: float = 0.0

    def __post_init__(self) -> None:
        cpus, gpus = self.cpus_per_trial, self.gpus_per_trial
        if not math.isfinite(self.memory_mib) or self.memory_mib < 0:
            raise ValueError(f"memory must be a number of MiB >= 0, got {self.memory_mib!r}")
        if not math.isfinite(cpus) or cpus <= 0:
            raise ValueError(
                f"cpus_per_trial must be a positive number, got {cpus!r}; "
                "every trial needs at least part of a CPU (e.g. --cpus-per-trial 1)"
            )
        if not math.isfinite(gpus) or gpus < 0:
            raise ValueError(
                f"gpus_per_trial must be 0 or more, got {gpus!r}; use 0 to train on CPUs only"
            )
        if gpus > 1 and not float(gpus).is_integer():
            raise ValueError(
                f"gpus_per_trial {gpus!r} is not possible: above 1 it must be a whole number of "
                "GPUs (2, 3, ...); fractions (0.5, 0.25) only share a single GPU"
            )

    def tune_resources(self) -> dict[str, float]:
        """The per-trial request for ``tune.with_resources`` (memory in bytes, as Ray counts it)."""
        request = {"cpu": float(self.cpus_per_trial), "gpu": float(self.gpus_per_trial)}
        return request | ({"memory": float(self.memory_mib) * 2**20} if self.memory_mib else {})

    def ray_request(self) -> dict[str, float]:
        """The same request in the names of Ray's node resources (``ray.nodes()``)."""
        names = {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}
        return {names[key]: value for key, value in self.tune_resources().items()}

    @property
    def intra_op_threads(self) -> int:
        """Threads inside one op (matmul, conv): one per CPU the trial owns, at least one."""
        return max(1, int(self.cpus_per_trial))

    @property
    def inter_op_threads(self) -> int:
        """Ops run concurrently: a second one only pays off when the trial has spare cores."""
        return 2 if self.cpus_per_trial >= 2 else 1

    @property
    def uses_gpu(self) -> bool:
        return self.gpus_per_trial > 0

    @property
    def shares_gpu(self) -> bool:
        """Whether this trial gets only part of a GPU, so its memory must be capped."""
        return 0 < self.gpus_per_trial < 1

    def gpu_memory_limit_mib(self, total_mib: int) -> int:
        """TensorFlow memory cap on a GPU of ``total_mib`` MiB for this trial's share of it.

        Whole GPUs get the full card minus headroom; a fraction gets that fraction of it, so
        ``1 / fraction`` trials fit side by side.
        """
        if total_mib <= 0:
            raise ValueError(f"GPU total memory must be positive, got {total_mib} MiB")
        if not self.uses_gpu:
            raise ValueError(
                "this plan uses no GPU (gpus_per_trial=0), so it has no GPU memory cap"
            )
        share = min(self.gpus_per_trial, 1.0)
        return max(1, int(total_mib * share * (1 - GPU_MEMORY_HEADROOM)))


def configure_tensorflow_threads(plan: ResourcePlan) -> None:
    """Limit TensorFlow to the trial's CPUs; call in the trial before building any model."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(plan.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(plan.inter_op_threads)


def configure_tensorflow_gpus(plan: ResourcePlan) -> list[Any]:
    """Keep this trial within its share of each visible GPU; returns the GPUs configured.

    A trial with a whole GPU grows its memory on demand instead of reserving the card up front; a
    trial with a fraction gets a hard logical-device limit, because memory growth alone would let
    one trial's peak starve its neighbour. Must run before TensorFlow initialises the GPUs (before
    any op); with no GPU visible it does nothing, so CPU-only trials can call it unconditionally.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        if plan.shares_gpu:
            total_mib = _gpu_total_memory_mib(gpu)
            tf.config.set_logical_device_configuration(
                gpu,
                [
                    tf.config.LogicalDeviceConfiguration(
                        memory_limit=plan.gpu_memory_limit_mib(total_mib)
                    )
                ],
            )
        else:
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def _gpu_total_memory_mib(gpu: Any) -> int:
    """Total memory of a physical GPU, from the driver via NVML (NVIDIA's nvidia-ml-py).

    TensorFlow numbers GPUs among the visible ones; NVML numbers all of them, so translate
    through CUDA_VISIBLE_DEVICES, which Ray sets to the GPUs it assigned to this trial.
    """
    import pynvml  # the nvidia-ml-py package

    visible_index = int(gpu.name.rsplit(":", 1)[-1])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    device = visible[visible_index].strip() if visible_index < len(visible) else ""
    pynvml.nvmlInit()
    try:
        if device.startswith("GPU-"):
            handle = pynvml.nvmlDeviceGetHandleByUUID(device)
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(device) if device else visible_index)
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024))
    finally:
        pynvml.nvmlShutdown()


# Words of Ray's memory monitor when it kills a worker for memory (an actor's death cause, or
# ray.exceptions.OutOfMemoryError for a task); the message itself is many lines long.
OOM_MARKERS = ("killed due to memory pressure", "running low on memory", "OutOfMemoryError")
OOM_DETAIL = re.compile(
    r"Memory on the node \(IP: ([^,]+), ID: [^)]*\) was ([\d.]+GB used / [\d.]+GB limit)"
)


def describe_error(text: str) -> str:
    """One line for a trial's error (its error file's text): the exception's last line, or, when
    Ray's memory monitor killed the worker, that it ran out of memory and what to change.

    >>> describe_error("Traceback ...\\nValueError: bad")
    'ValueError: bad'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not any(marker in text for marker in OOM_MARKERS):
        return lines[-1] if lines else "unknown error"
    detail = OOM_DETAIL.search(text)
    where = f" (node {detail[1]}: {detail[2]})" if detail else ""
    return (
        f"out of memory: Ray's memory monitor killed the trial's worker{where}; fewer trials "
        "share a node with a larger --memory-per-trial or a smaller --max-concurrent, and "
        "reused workers stay smaller with a lower --worker-max-rss-mib"
    )


def process_rss_mib() -> float | None:
    """This process's resident memory in MiB (Linux's /proc); None where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
