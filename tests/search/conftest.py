"""Searches shared by every test of the session that only reads their outcome (a tiny search
takes ~30 s): one live MLflow server and the searches logged to it, and a search whose every
trial errored."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY
from tests.mlflow_server import free_port, start_mlflow_server, stop

STUDY = "study-a"


def write_manifest(directory: Path, config, *, dense_costs: dict[str, float] | None = None) -> Path:
    """A hand-made experiment manifest (``prunetune.json``) for the parsed ``config``: what
    ``status``, ``resume`` and the store read, without training a base model."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "version": 1,
        "config": config.model_dump(mode="json"),
        "base_checkpoint": str(directory.parent / "none.pt"),
        "num_classes": 10,
        "dense_costs": dense_costs or {"macs": 1000.0, "params": 100.0},
        "groups": {"stem.0": 4},
    }
    path = directory / "prunetune.json"
    path.write_text(json.dumps(manifest))
    return path


def prunetune(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunetune", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The URI of a real ``mlflow server`` (SQLite backend, artifacts under a temp folder)."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield server.uri
    stop(server.process)


@dataclass(frozen=True)
class TrackedSearch:
    name: str
    directory: Path  # the experiment folder
    output: subprocess.CompletedProcess


def run_tiny_search(tmp: Path, tiny_base: Path, name: str, uri: str, seed: int) -> TrackedSearch:
    """A 3-trial search of a quarter-width ResNet-20 on 8 px digits, through the CLI."""
    config = {
        **TINY,
        "name": name,
        "base": {**TINY["base"], "checkpoint": str(tiny_base)},
        "finetune": {**TINY["finetune"], "steps": 3},
        "budgets": [{"cost": "macs", "max": 0.7, "relative": True}],
        "searcher": {"name": "random", "seed": seed},
        "storage_path": str(tmp / "results"),
        "tracking": {"tracking_uri": uri, "experiment": STUDY, "frontier_every_s": 0.001},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    out = prunetune("search", str(path), cwd=tmp)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return TrackedSearch(name, tmp / "results" / name, out)


@pytest.fixture(scope="session")
def tracked_search(tmp_path_factory, tiny_base, mlflow_server) -> TrackedSearch:
    """A search tracked live on the test server (study ``study-a``, search ``s1``)."""
    return run_tiny_search(tmp_path_factory.mktemp("tracked"), tiny_base, "s1", mlflow_server, seed=1)


@pytest.fixture(scope="session")
def outage_search(tmp_path_factory, tiny_base) -> TrackedSearch:
    """A search whose tracking server was down throughout (a closed port on 127.0.0.1)."""
    closed = f"http://127.0.0.1:{free_port()}"
    return run_tiny_search(tmp_path_factory.mktemp("outage"), tiny_base, "s2", closed, seed=2)


@pytest.fixture(scope="session")
def diverged_search(tmp_path_factory, tiny_base) -> TrackedSearch:
    """A 2-trial search whose fine-tunes diverge (lr 1e12): every trial errors, exit code 1.
    Its ``config.yaml`` is beside the results; a test that resumes it runs after those that read it."""
    tmp = tmp_path_factory.mktemp("diverged")
    config = {
        **TINY,
        "base": {**TINY["base"], "checkpoint": str(tiny_base)},
        "trials": 2,
        "tracking": {"enabled": False},
        "finetune": {**TINY["finetune"], "lr": 1e12},
        "storage_path": str(tmp / "results"),
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    out = prunetune("search", str(tmp / "config.yaml"), cwd=tmp)
    return TrackedSearch(config["name"], tmp / "results" / config["name"], out)


@pytest.fixture(scope="session")
def quiet_uri_search(tmp_path_factory, tiny_base) -> TrackedSearch:
    """A 2-trial search run with ``--quiet`` whose storage_path is a ``file://`` URI (``bucket/``:
    the trials) and whose local_dir (``local/``) takes the rest; ``directory`` is the local one."""
    tmp = tmp_path_factory.mktemp("uri")
    config = {
        **TINY,
        "base": {**TINY["base"], "checkpoint": str(tiny_base)},
        "trials": 2,
        "tracking": {"enabled": False},
        "storage_path": f"file://{tmp / 'bucket'}",
        "local_dir": str(tmp / "local"),
    }
    (tmp / "uri.yaml").write_text(yaml.safe_dump(config))
    out = prunetune("search", str(tmp / "uri.yaml"), "--quiet", cwd=tmp)
    return TrackedSearch(config["name"], tmp / "local" / config["name"], out)


def done_trials(experiment: Path) -> dict[str, dict]:
    """Trial id -> last report, for every trial folder whose last whole report says done."""
    done = {}
    for path in experiment.glob("trial_*/result.json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        try:
            last = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            continue
        if last.get("done"):
            done[last["trial_id"]] = last
    return done
