"""A search whose trials each evaluate their profile on two base models (the out-of-the-box
profiles paper's multi-model RL): the RL searcher learns from the mean accuracy, every base's
accuracy is reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration


def test_an_rl_search_over_two_data_sets_reports_each_base_and_ranks_by_their_mean(tiny_config, tmp_path):
    config = {
        **tiny_config,
        "name": "multi",
        "trials": 4,
        "bases": [{"data": {"name": "shapes"}}],
        "base": {**tiny_config["base"], "steps": 10},  # trains only the shapes base: its own is the session's
        "searcher": {"name": "rl", "seed": 0, "options": {"batch_episodes": 2, "num_epochs": 1}},
    }
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    storage = Path(config["storage_path"])
    experiment = storage / "multi"
    results = [json.loads(p.read_text().splitlines()[-1]) for p in experiment.glob("trial_*/result.json")]
    assert len(results) == 4
    for result in results:
        own, other = result["accuracy/digits-s0"], result["accuracy/shapes-s0"]
        assert result["accuracy"] == pytest.approx((own + other) / 2)
    manifest = json.loads((experiment / "prunetune.json").read_text())
    assert len(manifest["extra_bases"]) == 1 and Path(manifest["extra_bases"][0]).is_file()
    state = json.loads((experiment / "tracking.json").read_text())  # tracked like any search
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    children = client.search_runs(
        [client.get_experiment_by_name("multi").experiment_id], "tags.`prunetune.role` = 'trial'"
    )
    assert state["parent_runs"] and len(children) == 4
    assert all("accuracy/shapes-s0" in run.data.metrics for run in children)
