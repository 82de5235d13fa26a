"""What machine the figures come from: CPU, SIMD flags, memory, load and library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PACKAGES = ("ray", "tensorflow", "keras", "numpy", "pandas", "pyarrow")


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages the figures depend on."""
    # A copy of tune_mnist.tuning's private lookup: the benchmark only uses public names.
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo; no flags where it is missing."""
    cpu_model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return cpu_model, flags


def machine() -> dict[str, Any]:
    """The machine description every result carries (its figures only compare on one machine)."""
    cpu_model, flags = cpu_model_and_flags()
    return {
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "simd": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
        "bfloat16_hardware": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "float16_hardware": bool(flags & {"avx512_fp16", "amx_fp16"}),
        "load_average_at_start": os.getloadavg(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(default)"),
        "versions": versions(),
    }
