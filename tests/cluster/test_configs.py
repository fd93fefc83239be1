"""The cluster configs a user launches: Ray's own schema for the launcher, pins for KubeRay."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pin(package: str) -> str:
    """The exact version constraints.txt pins for ``package`` (what CI and the image install),
    checked to fall in the range pyproject declares."""
    from packaging.requirements import Requirement

    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split() if "==" in line)
    declared = {Requirement(r).name: Requirement(r).specifier for r in PYPROJECT["dependencies"]}
    if package not in pins:
        raise AssertionError(f"{package} is not pinned in constraints.txt")
    assert pins[package] in declared[package], f"{package}=={pins[package]} is outside pyproject's {declared[package]}"
    return pins[package]


def _launcher_config() -> dict:
    return yaml.safe_load((REPO / "cluster" / "aws-gpu.yaml").read_text())


def _validate(config: dict) -> dict:
    """What `ray up` does before touching the cloud: fill defaults, then Ray's schema check."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_the_aws_launcher_config_passes_rays_own_validation():
    prepared = _validate(_launcher_config())
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["node_config"]["InstanceType"].startswith(("g4dn", "g5", "g6", "p3", "p4", "p5"))
    assert workers["min_workers"] == 0 and workers["max_workers"] > 0  # autoscaling GPU workers
    assert prepared["available_node_types"]["head"]["resources"] == {"CPU": 0}


def test_rays_validation_would_catch_a_broken_launcher_config():
    broken = _launcher_config()
    broken["available_node_types"]["gpu_worker"]["min_wokers"] = 1  # a typo
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)


def test_the_launcher_config_shares_results_storage_and_runs_the_project_image():
    config = _launcher_config()
    assert any("/mnt/efs" in option for option in config["docker"]["run_options"])
    assert any("mount -t nfs4" in command for command in config["initialization_commands"])
    assert config["docker"]["image"].endswith(f":{PYPROJECT['version']}")


def _kuberay() -> list[dict]:
    return list(yaml.safe_load_all((REPO / "cluster" / "kuberay-rayjob.yaml").read_text()))


def test_the_kuberay_job_runs_the_pinned_ray_and_project_image_on_gpu_workers():
    job = next(d for d in _kuberay() if d["kind"] == "RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"].startswith(_pin("ray") + ".") or cluster["rayVersion"] == _pin("ray")
    pods = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    images = {c["image"] for pod in pods for c in pod["spec"]["containers"]}
    assert images == {f"ghcr.io/your-org/prunetune-gpu:{PYPROJECT['version']}"}
    gpu = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"
    assert job["spec"]["entrypoint"].startswith("prunetune search ") and "--address auto" in job["spec"]["entrypoint"]


def test_the_kuberay_search_config_is_a_valid_prunetune_config_on_shared_storage():
    from prunetune.search.config import parse_config

    config_map = next(d for d in _kuberay() if d["kind"] == "ConfigMap")
    config = parse_config(yaml.safe_load(config_map["data"]["search.yaml"]))
    claim = next(d for d in _kuberay() if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert config.shared_storage and config.storage_path == "/results" and 0 < config.resources.gpu <= 1
