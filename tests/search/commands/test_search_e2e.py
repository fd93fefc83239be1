"""A real search, as a user runs it: CLI -> local Ray on loopback -> Tune trials -> MLflow."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.search.conftest import STUDY

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def _search(config: dict, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # user cost functions live in tests/
    )


def test_cli_search_runs_trials_logs_mlflow_and_writes_frontier(tracked_search, mlflow_server):
    """The session's tracked search (tests/search/conftest.py): 3 trials under a 70% MACs budget."""
    from mlflow.tracking import MlflowClient

    out = tracked_search.output
    assert "Frontier: accuracy vs macs" in out.stdout
    experiment = tracked_search.directory
    rows = list(csv.DictReader((experiment / "frontier.csv").open()))
    assert rows, out.stdout
    front = json.loads((experiment / "frontier.json").read_text())["frontier"]
    assert all(r["feasible"] and r["relative"]["macs"] <= 0.7 for r in front)
    assert (experiment / "frontier.png").stat().st_size > 1000
    client = MlflowClient(tracking_uri=mlflow_server)
    study = client.get_experiment_by_name(STUDY)
    runs = client.search_runs(
        [study.experiment_id], f"tags.`prunetune.search` = '{tracked_search.name}'", max_results=1000
    )
    [parent] = [r for r in runs if r.data.tags.get("prunetune.role") == "search"]  # one parent run for the search
    children = client.search_runs([study.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 3  # one child run per trial
    run = children[0]
    assert "accuracy" in run.data.metrics and "cost/macs" in run.data.metrics
    assert any(k.startswith("profile.") for k in run.data.params)
    assert parent.data.params["data.augment"] == "none"  # as the tiny config asks
    assert parent.data.params["data.mode"] == "auto"
    # Every trial left a checkpoint with the profile and the pruned weights.
    checkpoints = list(experiment.glob("trial_*/checkpoint_*/model.pt"))
    assert len(checkpoints) == 3


def test_measured_and_user_budgets_are_reported_and_a_raising_cost_ends_only_its_trial(tiny_config, tmp_path):
    """A measured budget (latency), a user cost and a user cost that raises for a half-width
    stem: the trials it raises for error with its reason, the search goes on, and every other
    trial reports each cost."""
    tiny_config.update(
        trials=4, tracking={"enabled": False}, space={"levels": [0.5, 1.0]}, searcher={"name": "random", "seed": 0}
    )
    tiny_config["budgets"] = [
        {"cost": "latency", "max": 10_000, "options": {"repeats": 3, "warmup": 1}},
        {"cost": "tests.budgets.userfuncs:bias_count", "max": 1e9},
        {"cost": "tests.search.costfuncs:stem_width_meter", "max": 100},
    ]
    out = _search(tiny_config, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "meter cannot handle a stem of 2 channels" in out.stdout  # the errored trial's reason
    experiment = Path(tiny_config["storage_path"]) / "tiny"
    finished = list(experiment.glob("trial_*/checkpoint_*"))
    assert 0 < len(finished) < 4
    results = [
        json.loads(p.read_text().splitlines()[-1])
        for p in experiment.glob("trial_*/result.json")
        if p.read_text().strip()
    ]
    results = [r for r in results if "accuracy" in r]
    assert len(results) == len(finished)
    for result in results:
        assert result["cost/latency"] > 0 and "cost/bias_count" in result and result["cost/stem_width_meter"] == 4
        assert result["meets/latency"] == 1.0 and result["feasible"] == 1.0


def test_a_search_on_fashion_mnist_trains_with_augmentation_and_reaches_its_frontier(tiny_config, tmp_path):
    """The first real data set: Fashion-MNIST as Debian's dataset-fashion-mnist installs it."""
    from tests.trainables.test_idx import _debian_files

    if not _debian_files():
        pytest.skip("apt-get install dataset-fashion-mnist to run this test")
    config = {
        **tiny_config,
        "name": "fashion",
        "model": {"name": "resnet20", "width": 0.25, "input_size": 28},
        "data": {"name": "fashion_mnist", "options": {"limit_train": 2000}, "mode": "memory"},
        "evaluate": {"val_images": 500},
        "trials": 2,
        "tracking": {"enabled": False},
    }
    out = _search(config, tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert (
        "data: fashion_mnist, 2,000 train / 5,000 val / 10,000 test images, one decoded copy per node; "
        "augmentation: random crop (pad 1/8) + flip; trials evaluate on 500 val images"
    ) in out.stdout
    experiment = Path(config["storage_path"]) / "fashion"
    assert json.loads((experiment / "frontier.json").read_text())["frontier"]
    manifest = json.loads((experiment / "prunetune.json").read_text())
    assert manifest["config"]["data"]["augment"] == "standard" and manifest["config"]["data"]["mode"] == "memory"
