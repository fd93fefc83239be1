"""Shared fixtures: a tiny search config and its trained base checkpoint (once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A private local Ray on loopback, without token auth; must be set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The data sets' node cache (one decoded copy per machine): a folder of this session's, not the
# user's ~/.cache; Ray's workers and the CLI's subprocesses inherit it.
if "PRUNETUNE_CACHE" not in os.environ:
    import tempfile

    os.environ["PRUNETUNE_CACHE"] = tempfile.mkdtemp(prefix="prunetune-cache-")

# The loopback multi-node cluster fixture (``ray_cluster``), for the tests that take it.
pytest_plugins = ["tests.cluster_fixtures"]

TINY = {
    "name": "tiny",
    "model": {"name": "resnet20", "width": 0.25, "input_size": 8},
    # No augmentation: a 1-pixel shift of an 8-pixel digit is a large one, and 60 steps are too
    # few to learn past it (the tests of augmentation use their own configs).
    "data": {"name": "digits", "augment": "none"},
    "base": {"steps": 60, "lr": 0.05, "batch_size": 64},
    "finetune": {"steps": 4, "lr": 0.01, "batch_size": 32},
    "space": {"low": 0.3, "high": 1.0},
    "trials": 3,
    "concurrency": 2,
}


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test``), the integration tests first: they are the long ones,
    and a long file dealt out last keeps one worker busy while the other has nothing left."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("integration") is None)  # a stable sort


@pytest.fixture(autouse=True)
def _environment_of_its_own():
    """Each test starts from the session's environment: a CLI run in this process sets variables
    (the console mode, Ray's output engine, mlflow.set_tracking_uri's MLFLOW_TRACKING_URI) that
    the subprocesses of later tests would otherwise inherit, sending their runs elsewhere."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A dense resnet20 (width 0.25, 8 px) trained briefly on digits, saved once per session."""
    from prunetune.search.config import parse_config
    from prunetune.search.setup import specs
    from prunetune.trainables import ensure_base_checkpoint

    model, data, recipe = specs(parse_config(TINY))
    directory = tmp_path_factory.mktemp("base")
    return ensure_base_checkpoint(model, data, recipe, directory, show_progress=False)


@pytest.fixture
def tiny_config(tmp_path, tiny_base) -> dict:
    """The tiny config as a dict, storing results under tmp_path and using the shared base."""
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    config["base"] = {**config["base"], "checkpoint": str(tiny_base)}
    config["storage_path"] = str(tmp_path / "results")
    return config
