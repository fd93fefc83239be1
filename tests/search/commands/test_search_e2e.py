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

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def _search(config: dict, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(path), *extra],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # user cost functions live in tests/
    )


def _mlflow_runs(storage: Path, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{storage / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_cli_search_runs_trials_logs_mlflow_and_writes_frontier(tiny_config, tmp_path):
    tiny_config["budgets"] = [{"cost": "macs", "max": 0.6, "relative": True}]
    out = _search(tiny_config, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Frontier: accuracy vs macs" in out.stdout
    storage = Path(tiny_config["storage_path"])
    experiment = storage / "tiny"
    rows = list(csv.DictReader((experiment / "frontier.csv").open()))
    assert rows, out.stdout
    front = json.loads((experiment / "frontier.json").read_text())["frontier"]
    assert all(r["feasible"] and r["relative"]["macs"] <= 0.6 for r in front)
    assert (experiment / "frontier.png").stat().st_size > 1000
    runs = _mlflow_runs(storage, "tiny")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) - len(children) == 1  # one parent run for the search
    assert len(children) == tiny_config["trials"]  # one child run per trial
    run = children[0]
    assert "accuracy" in run.data.metrics and "cost/macs" in run.data.metrics
    assert any(k.startswith("profile.") for k in run.data.params)
    # Every trial left a checkpoint with the profile and the pruned weights.
    checkpoints = list(experiment.glob("trial_*/checkpoint_*/model.pt"))
    assert len(checkpoints) == tiny_config["trials"]


def test_measured_and_user_budgets_are_reported_and_a_raising_cost_ends_only_its_trial(tiny_config, tmp_path):
    tiny_config["budgets"] = [
        {"cost": "latency", "max": 10_000, "options": {"repeats": 3, "warmup": 1}},
        {"cost": "tests.budgets.userfuncs:bias_count", "max": 1e9},
    ]
    tiny_config["tracking"] = {"enabled": False}
    out = _search(tiny_config, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(p.read_text().splitlines()[-1]) for p in Path(tiny_config["storage_path"]).glob("tiny/trial_*/result.json")]
    assert len(results) == tiny_config["trials"]
    for result in results:
        assert result["cost/latency"] > 0 and "cost/bias_count" in result
        assert result["meets/latency"] == 1.0 and result["feasible"] == 1.0


def test_a_cost_function_that_raises_errors_its_trial_and_the_search_goes_on(tiny_config, tmp_path):
    tiny_config.update(trials=4, tracking={"enabled": False}, space={"levels": [0.5, 1.0]})
    tiny_config["budgets"] = [{"cost": "tests.search.costfuncs:stem_width_meter", "max": 100}]
    out = _search(tiny_config, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "meter cannot handle a stem of 2 channels" in out.stdout  # the errored trial's reason
    finished = list(Path(tiny_config["storage_path"]).glob("tiny/trial_*/checkpoint_*"))
    assert 0 < len(finished) < 4
