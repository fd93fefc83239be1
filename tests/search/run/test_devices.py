"""A latency budget measured on the deployment device: a loopback cluster whose device node
offers the resource ``device:test`` and no CPU, two one-CPU worker nodes that train the trials,
ONNX Runtime as the runtime, and the measurement cache answering a second search."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from prunetune.budgets import Budget
from prunetune.budgets import report as R
from tests.cluster_fixtures import Node, env, start_cluster

pytestmark = pytest.mark.integration
DEVICE = "device:test"


@pytest.fixture(scope="module")
def device_cluster():
    root = Path(tempfile.mkdtemp(prefix="pt9", dir="/tmp"))
    cluster = None
    try:
        cluster = start_cluster(root, device=DEVICE)
        yield cluster
    finally:
        for node in reversed(cluster.nodes if cluster else [Node(n, root / n) for n in ("h", "w1", "w2", "d")]):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


def _search(config: dict, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env(),
    )


def _last_reports(experiment: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text().splitlines()[-1]) for p in experiment.glob("trial_*/result.json")}


def test_latency_is_measured_only_on_the_device_node_and_cached_for_the_next_search(
    device_cluster, tiny_config, tmp_path
):
    cache = tmp_path / "cache"
    options = {"on": DEVICE, "runtime": "onnxruntime", "warmup": 1, "repeats": 3, "max_repeats": 9}
    budget = {"cost": "latency", "max": 1.0, "relative": True, "options": {**options, "cache": str(cache)}}
    key = Budget.parse(budget).key
    config = {
        **tiny_config,
        "name": "on-device",
        "shared_storage": True,
        "tracking": {"enabled": False},
        "trials": 3,
        "budgets": [budget],
    }
    results = Path(config["storage_path"])

    # No node offers the resource, or the runtime is unknown: one line, exit 2, nothing written.
    missing = {**budget, "options": {**budget["options"], "on": "device:nowhere"}}
    refused = _search({**config, "budgets": [missing]}, tmp_path, "--address", device_cluster.address)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "no node of the cluster" in refused.stderr and "ray start --address=" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    unknown = {**budget, "options": {**budget["options"], "runtime": "onnx"}}
    refused = _search({**config, "budgets": [unknown]}, tmp_path, "--address", device_cluster.address)
    assert refused.returncode == 2 and "unknown runtime 'onnx'" in refused.stderr, refused.stderr[-2000:]
    assert not results.exists()

    out = _search(config, tmp_path, "--address", device_cluster.address)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    first = _last_reports(results / "on-device")
    assert len(first) == 3
    workers = {w.node_id for w in device_cluster.workers}
    for report in first.values():
        assert report[R.MEASURED_ON + key] == device_cluster.device.node_id  # measured on the device only
        assert report[R.NODE_ID] in workers  # trained elsewhere
        low, value, high = report[R.LOW + key], report[R.cost_key(key)], report[R.HIGH + key]
        assert 0 < low <= value <= high and report[R.REPEATS + key] >= 3
        assert report[R.meets_key(key)] == float(high <= report[R.limit_key(key)] * (1 + 1e-9))  # the upper end
    measured = sorted(cache.glob("*.json"))
    assert len(measured) >= 2  # the dense model and at least one profile (two trials may share one)

    # The same seed proposes the same profiles: the cache answers every one, nothing is measured.
    out = _search({**config, "name": "on-device-again"}, tmp_path, "--address", device_cluster.address)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    second = _last_reports(results / "on-device-again")
    profiles = lambda reports: sorted(json.dumps(r["config"]["profile"], sort_keys=True) for r in reports.values())  # noqa: E731
    assert profiles(second) == profiles(first)
    assert all(
        r[R.CACHED + key] == 1.0 and r[R.MEASURED_ON + key] == device_cluster.device.node_id for r in second.values()
    )
    assert sorted(cache.glob("*.json")) == measured
    assert {r[R.cost_key(key)] for r in second.values()} == {r[R.cost_key(key)] for r in first.values()}
