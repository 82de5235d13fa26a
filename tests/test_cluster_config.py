"""The cluster definitions in cluster/ are valid for the tools that read them.

The tools: Ray's cluster launcher (checked with Ray's own schema, as `ray up` does before touching
any machine) and KubeRay."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tune_mnist.space import builtin_spaces

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"
LAUNCHER_CONFIGS = ["aws.yaml", "onprem.yaml"]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER_DIR / name).read_text())


def validate_like_ray_up(config: dict[str, Any]) -> dict[str, Any]:
    """`ray up`'s own first steps: fill in the provider's defaults, then check the schema."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_configs_pass_rays_schema(name):
    validate_like_ray_up(load(name))


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_the_schema_check_catches_a_misspelt_key(name):
    config = load(name)
    config["auth"]["ssh_usr"] = config["auth"].pop("ssh_user")
    with pytest.raises(jsonschema.ValidationError, match="ssh_usr"):
        validate_like_ray_up(config)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_every_node_installs_the_project_and_starts_ray_with_token_auth(name):
    config = load(name)
    setup = "\n".join(config["setup_commands"])
    assert "pip install" in setup and "~/tune_mnist" in setup
    assert "apt-get install -y" in setup and "dataset-fashion-mnist" in setup
    assert config["file_mounts"]["~/tune_mnist"] == "."
    # Without the same token on every node, workers cannot join a token-auth head.
    assert "~/.ray/auth_token" in config["file_mounts"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start, key
    head_start = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head_start


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_no_node_writes_core_dumps(name):
    """A core dump holds the process's memory: the auth token, credentials in its environment."""
    config = load(name)
    text = (CLUSTER_DIR / name).read_text()
    assert "ulimit -c unlimited" not in text
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert start.index("ulimit -c 0") < start.index("ray start"), key


def test_aws_has_autoscaling_cpu_and_gpu_worker_types():
    prepared = validate_like_ray_up(load("aws.yaml"))
    types = prepared["available_node_types"]
    assert set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert prepared["head_node_type"] == "head"
    cpu, gpu = types["cpu_worker"], types["gpu_worker"]
    assert cpu["min_workers"] < cpu["max_workers"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families


def test_onprem_lists_its_machines_and_ssh_login():
    config = load("onprem.yaml")
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"]
    assert config["provider"]["worker_ips"]
    assert config["auth"]["ssh_user"] and config["auth"]["ssh_private_key"]


def test_rayjob_has_what_kuberay_requires():
    job = load("kuberay-rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1"
    assert job["kind"] == "RayJob"
    assert job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m tune_mnist.run ")
    assert "--address auto" in spec["entrypoint"]
    # Applied again, the job continues its run; without this it would be refused (exit 2).
    assert "--resume-if-exists" in spec["entrypoint"].split()
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    # authOptions needs Ray >= 2.52; KubeRay reads the version from here.
    major, minor = (int(part) for part in cluster["rayVersion"].split(".")[:2])
    assert (major, minor) >= (2, 52)

    head = cluster["headGroupSpec"]
    assert "rayStartParams" in head
    groups = [("head", head["template"])] + [
        (group["groupName"], group["template"]) for group in cluster["workerGroupSpecs"]
    ]
    for name, template in groups:
        containers = template["spec"]["containers"]
        assert containers, name
        for container in containers:
            assert container["image"], name
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
    for group in cluster["workerGroupSpecs"]:
        assert "rayStartParams" in group
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    gpu_requests = [
        c["resources"]["requests"]
        for g in cluster["workerGroupSpecs"]
        for c in g["template"]["spec"]["containers"]
        if "nvidia.com/gpu" in c["resources"]["requests"]
    ]
    assert gpu_requests, "a GPU worker group should request nvidia.com/gpu"


def _every_pod_template(job: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    cluster = job["spec"]["rayClusterSpec"]
    return [
        ("submitter", job["spec"]["submitterPodTemplate"]),
        ("head", cluster["headGroupSpec"]["template"]),
        *((group["groupName"], group["template"]) for group in cluster["workerGroupSpecs"]),
    ]


def test_every_rayjob_container_runs_restricted():
    """Rule: every container (submitter, head, workers) runs as a non-root user, without
    privilege escalation or capabilities, under the runtime's default seccomp filter (Kubernetes'
    "restricted" Pod Security Standard)."""
    job = load("kuberay-rayjob.yaml")
    for name, template in _every_pod_template(job):
        pod = template["spec"].get("securityContext", {})
        assert pod.get("runAsUser", 0) != 0 and pod.get("runAsNonRoot") is True, name
        for container in [
            *template["spec"]["containers"],
            *template["spec"].get("initContainers", []),
        ]:
            context = {**pod, **container.get("securityContext", {})}
            assert context["runAsNonRoot"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert not context["capabilities"].get("add"), (name, container["name"])
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, (
                name,
                container["name"],
            )
            assert not context.get("privileged", False), (name, container["name"])
    assert job["spec"]["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"  # KubeRay's rule


def test_rayjob_entrypoint_uses_a_space_and_data_the_image_contains():
    """Rule: the entrypoint names a built-in space (package data of the package the image
    installs) and a dataset the image's apt step installs."""
    job = load("kuberay-rayjob.yaml")
    entry = job["spec"]["entrypoint"].split()
    assert entry[entry.index("--space") + 1] in builtin_spaces()
    dockerfile = (CLUSTER_DIR / "Dockerfile").read_text()
    assert "COPY --chown=ray:users tune_mnist ./tune_mnist" in dockerfile
    assert "RUN pip install --no-cache-dir . " in dockerfile  # not editable: a wheel's contents
    assert "dataset-fashion-mnist" in dockerfile
