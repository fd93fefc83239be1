"""``method: taper`` in a search: config validation, the sweep's grid, and one end-to-end run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from budgets.errors import ConfigError
from search.config import parse_config
from search.tapering import taper_param_space, taper_trial_count


def test_a_taper_sweep_becomes_one_grid_trial_per_combination():
    config = parse_config({"method": "taper", "taper": {"sweep": {"rate": [0.001, 0.003], "tolerance": [0.0, 0.01]}}})
    space = taper_param_space(config)
    assert space["method"] == "taper"
    assert space["taper"]["rate"] == {"grid_search": [0.001, 0.003]}
    assert space["taper"]["levels"] == [0.75, 0.5, 0.3]
    assert taper_trial_count(config) == 4


@pytest.mark.parametrize(
    ("taper", "message"),
    [
        ({"sweep": {"ratee": [0.1]}}, "unknown option 'ratee'"),
        ({"sweep": {"rate": [2.0]}}, "taper.sweep.rate value 2.0"),
        ({"levels": [0.5, 1.2]}, "fractions of the dense cost"),
        ({"gate_optimiser": "sgd"}, "did you mean 'gate_optimizer'"),
    ],
)
def test_taper_config_mistakes_are_one_line_errors(taper, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_config({"method": "taper", "taper": taper})
    assert "\n" not in str(error.value)


@pytest.mark.integration
def test_cli_taper_run_leaves_a_pruned_checkpoint_at_every_level(tiny_config, tmp_path):
    from search.experiment import read_manifest
    from search.results import read_trials
    from budgets import get_cost
    from trainables import rebuild_from_checkpoint
    from trainables.trial import example_input

    config = {
        **tiny_config,
        "name": "taper",
        "method": "taper",
        "taper": {"levels": [0.7, 0.5], "rate": 0.01, "control_every": 5, "holdout": 64},
    }
    path = tmp_path / "taper.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "search.cli", "search", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "1 taper run(s) through levels [0.7, 0.5]" in out.stdout
    experiment = Path(config["storage_path"]) / "taper"
    points = read_trials(experiment)
    assert sorted(p.metrics["level"] for p in points.values()) == [0.5, 0.7]
    manifest = read_manifest(experiment)
    setup = manifest.setup()
    for point in points.values():
        metrics = point.metrics
        assert metrics["gated_macs"] == metrics["counted_macs"] == metrics["cost/macs"]
        assert metrics["rel/macs"] <= metrics["level"] and metrics["feasible"] == 1.0
        model = rebuild_from_checkpoint(setup, point.checkpoint, manifest.num_classes)
        assert get_cost("macs")(model, example_input(setup)) == metrics["counted_macs"]
    frontier = json.loads((experiment / "frontier.json").read_text())["frontier"]
    assert frontier and all("@" in r["trial_id"] for r in frontier)
    _assert_each_point_is_in_mlflow(tmp_path, len(points))


def _assert_each_point_is_in_mlflow(tmp_path: Path, count: int) -> None:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("taper")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name.startswith("trial_")]
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "accuracy")
    assert len({m.step for m in history}) == count
