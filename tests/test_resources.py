"""Resource plans: what a trial asks Ray for and how TensorFlow is held to it (no GPU needed)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tune_mnist.resources import ResourcePlan

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_tune_resources_carry_fractional_gpus():
    assert ResourcePlan(cpus_per_trial=2, gpus_per_trial=0.5).tune_resources() == {
        "cpu": 2.0,
        "gpu": 0.5,
    }
    assert ResourcePlan().tune_resources() == {"cpu": 1.0, "gpu": 0.0}


@pytest.mark.parametrize(
    ("cpus", "intra", "inter"),
    [(0.5, 1, 1), (1, 1, 1), (1.9, 1, 1), (2, 2, 2), (8, 8, 2)],
)
def test_tensorflow_threads_match_the_trials_cpus(cpus, intra, inter):
    plan = ResourcePlan(cpus_per_trial=cpus)
    assert (plan.intra_op_threads, plan.inter_op_threads) == (intra, inter)


def test_half_a_gpu_gets_half_the_memory_minus_headroom():
    half = ResourcePlan(gpus_per_trial=0.5).gpu_memory_limit_mib(total_mib=80_000)
    assert half == 36_000
    # Two trials sharing the card must fit on it together.
    assert 2 * half < 80_000


def test_whole_gpus_are_capped_at_one_card():
    whole = ResourcePlan(gpus_per_trial=1).gpu_memory_limit_mib(total_mib=16_000)
    assert whole == ResourcePlan(gpus_per_trial=2).gpu_memory_limit_mib(total_mib=16_000)
    assert 0 < whole < 16_000


def test_only_fractional_gpus_are_shared():
    assert ResourcePlan(gpus_per_trial=0.25).shares_gpu
    assert not ResourcePlan(gpus_per_trial=1).shares_gpu
    assert not ResourcePlan(gpus_per_trial=0).uses_gpu


@pytest.mark.parametrize(
    ("cpus", "gpus", "message"),
    [
        (0, 0, "cpus_per_trial must be a positive number"),
        (-1, 0, "cpus_per_trial must be a positive number"),
        (float("nan"), 0, "cpus_per_trial must be a positive number"),
        (1, -0.5, "gpus_per_trial must be 0 or more"),
        (1, 1.5, "above 1 it must be a whole number"),
    ],
)
def test_impossible_plans_say_what_to_use_instead(cpus, gpus, message):
    with pytest.raises(ValueError, match=message):
        ResourcePlan(cpus_per_trial=cpus, gpus_per_trial=gpus)


def test_memory_cap_needs_a_gpu_and_a_positive_total():
    with pytest.raises(ValueError, match="uses no GPU"):
        ResourcePlan().gpu_memory_limit_mib(total_mib=16_000)
    with pytest.raises(ValueError, match="must be positive"):
        ResourcePlan(gpus_per_trial=0.5).gpu_memory_limit_mib(total_mib=0)


def test_importing_the_module_loads_neither_ray_nor_tensorflow():
    code = (
        "import sys, tune_mnist.resources; "
        "print(sorted(m for m in ('ray', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "[]"


def test_configuring_gpus_without_any_visible_is_a_no_op():
    code = (
        "import os; os.environ['CUDA_VISIBLE_DEVICES'] = ''; "
        "from tune_mnist.resources import ResourcePlan, configure_tensorflow_gpus; "
        "print(configure_tensorflow_gpus(ResourcePlan(gpus_per_trial=0.5)))"
    )
    # A fresh interpreter: TensorFlow's device setup can only happen once per process.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
