"""The GPU image and the local compose stack: they parse, and their versions agree with the pins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
CONSTRAINTS = dict(
    line.split("==", 1)
    for line in (REPO / "constraints.txt").read_text().splitlines()
    if "==" in line and not line.startswith("#")
)
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "ENTRYPOINT", "CMD", "LABEL", "USER", "EXPOSE"}


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in (REPO / "docker" / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            out.append((keyword, arguments.strip()))
            pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for k, a in _instructions() if k == "ARG" and "=" in a)


def test_the_dockerfile_parses_into_known_instructions_from_a_cuda_base():
    instructions = _instructions()
    assert {k for k, _ in instructions} <= INSTRUCTIONS
    assert instructions[0][0] == "ARG" and instructions[1] == ("FROM", "${CUDA_IMAGE}")
    assert any(k == "COPY" and "constraints.txt" in a for k, a in instructions)
    install = next(a for k, a in instructions if k == "RUN" and "pip install" in a)
    assert "-c constraints.txt" in install  # the project with the exact pinned versions


def test_the_image_pins_agree_with_pyproject_and_constraints():
    from packaging.requirements import Requirement

    args = _args()
    declared = {Requirement(r).name: Requirement(r).specifier for r in PYPROJECT["dependencies"]}
    assert args["RAY_VERSION"] == CONSTRAINTS["ray"] and args["RAY_VERSION"] in declared["ray"]
    assert args["TORCH_VERSION"] == CONSTRAINTS["torch"] and args["TORCH_VERSION"] in declared["torch"]
    minimum = tuple(int(p) for p in PYPROJECT["requires-python"].removeprefix(">=").split("."))
    assert tuple(int(p) for p in args["PYTHON_VERSION"].split(".")) >= minimum


def test_the_image_copies_every_folder_the_package_is_built_from():
    import tomllib

    folders = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    copied = {a.split()[0] for k, a in _instructions() if k == "COPY"}
    assert folders <= copied, f"the image would install without {sorted(folders - copied)}"


def test_the_cuda_base_matches_the_cuda_build_of_the_pinned_torch():
    import torch

    cuda = re.search(r"nvidia/cuda:(\d+\.\d+)", _args()["CUDA_IMAGE"]).group(1)
    assert torch.version.cuda is not None, "the installed torch is a CPU build; cannot compare"
    assert cuda == ".".join(torch.version.cuda.split(".")[:2])


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())


def test_compose_runs_a_ray_head_two_gpu_workers_and_mlflow_on_postgres():
    services = _compose()["services"]
    assert "--head" in services["ray-head"]["command"]
    workers = [s for name, s in services.items() if name.startswith("ray-worker")]
    assert len(workers) == 2
    for worker in workers:
        assert "--address=ray-head:6379" in worker["command"]
        assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "postgresql://" in services["mlflow"]["command"] and "postgres" in services["mlflow"]["depends_on"]
    ray_images = {s["image"] for name, s in services.items() if name.startswith("ray-")}
    assert ray_images == {f"prunetune-gpu:{PYPROJECT['version']}"}
    assert {s["build"]["dockerfile"] for name, s in services.items() if "build" in s} == {"docker/Dockerfile"}


def test_every_published_compose_port_is_bound_to_loopback():
    published = [port for s in _compose()["services"].values() for port in s.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published)
