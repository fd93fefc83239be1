"""``method: taper`` in a search: config validation, the sweep's grid, and one end-to-end run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.run.methods import get_method


def test_a_taper_sweep_becomes_one_grid_trial_per_combination():
    config = parse_config({"method": "taper", "taper": {"sweep": {"rate": [0.001, 0.003], "tolerance": [0.0, 0.01]}}})
    taper = get_method("taper")
    space = taper.param_space(config)
    assert space["method"] == "taper"
    assert space["taper"]["rate"] == {"grid_search": [0.001, 0.003]}
    assert space["taper"]["levels"] == [0.75, 0.5, 0.3]
    assert taper.trial_count(config) == 4


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
    from prunetune.budgets import get_cost
    from prunetune.search.store.manifest import read_manifest
    from prunetune.search.store.trials import read_trials
    from prunetune.trainables import rebuild_from_checkpoint
    from prunetune.trainables.trial import example_input

    config = {
        **tiny_config,
        "name": "taper",
        "method": "taper",
        "taper": {"levels": [0.7, 0.5], "rate": 0.01, "control_every": 5, "holdout": 64},
    }
    path = tmp_path / "taper.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
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
    # A searched run in the same study: the dashboard compares both searches' points directly.
    searched = {**tiny_config, "name": "searched", "trials": 2, "tracking": {"experiment": "taper"}}
    path.write_text(yaml.safe_dump(searched))
    out = subprocess.run(
        [sys.executable, "-m", "prunetune", "search", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    _assert_points_sit_beside_searched_trials_in_mlflow(tmp_path, points)
    # Backfilled from disk into another store, the taper run brings the same points.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    out = subprocess.run(
        [sys.executable, "-m", "prunetune", "sync", str(experiment), "--tracking-uri", other],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0 and f"synced 1 trial and {len(points)} taper points" in out.stdout, out.stderr[-2000:]
    import mlflow

    client = mlflow.MlflowClient(other)
    runs = client.search_runs(
        [client.get_experiment_by_name("taper").experiment_id], "tags.`prunetune.role` = 'taper_point'"
    )
    assert sorted(r.data.tags["prunetune.trial_id"] for r in runs) == sorted(points)


def _assert_points_sit_beside_searched_trials_in_mlflow(tmp_path: Path, points: dict) -> None:
    import mlflow

    from prunetune.search.tracking.compare import load_searches

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("taper")
    runs = client.search_runs([experiment.experiment_id])
    by_role = {}
    for run in runs:
        by_role.setdefault(run.data.tags["prunetune.role"], []).append(run)
    assert len(by_role["search"]) == 2 and len(by_role["taper"]) == 1 and len(by_role["trial"]) == 2
    taper_parent = by_role["taper"][0].data.tags["mlflow.parentRunId"]
    for run in by_role["taper_point"]:  # one child run of the taper search per level
        point = points[run.data.tags["prunetune.trial_id"]]
        metrics = run.data.metrics
        assert run.data.tags["mlflow.parentRunId"] == taper_parent and run.info.status == "FINISHED"
        assert metrics["level"] == point.metrics["level"] and metrics["accuracy"] == point.metrics["accuracy"]
        assert metrics["gated_macs"] == metrics["counted_macs"] == metrics["cost/macs"]
        assert {k.removeprefix("profile.") for k in run.data.params} == set(point.profile)
        assert run.data.tags["prunetune.checkpoint"] == str(point.checkpoint)
    assert len(by_role["taper_point"]) == len(points)
    searches = {s.label.split("/")[1]: s for s in load_searches(client, ["taper"], "macs")}
    assert sorted(t.trial_id for t in searches["taper"].trials) == sorted(points)
    assert len(searches["searched"].trials) == 2


def test_the_config_accepts_exactly_the_registered_methods():
    from prunetune.search.run.methods import METHODS, check_config

    for name in METHODS.names():  # an unknown one is refused: tests/search/run/test_check_config.py
        assert check_config(parse_config({"method": name})).name == name
