"""A budget on a user's cost function (``cost: mycost:energy``) whose module is not importable
here: the read-only verbs (status, export-profiles) work without it, a search refuses it in one
line before writing anything. Experiment folders are written by hand (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from prunetune.search import cli
from prunetune.search.config import parse_config
from tests.conftest import TINY
from tests.search.conftest import write_manifest

BUDGETS = [{"cost": "mycost_not_here:energy", "max": 5.0}, {"cost": "macs", "max": 0.9, "relative": True}]


def _experiment(root: Path) -> Path:
    """A finished experiment whose config names the missing module, with one feasible trial."""
    directory = root / "exp"
    (directory / "trial_a").mkdir(parents=True)
    config = parse_config({**TINY, "name": "exp", "trials": 1, "storage_path": str(root), "budgets": BUDGETS})
    write_manifest(directory, config, dense_costs={"macs": 1000.0, "params": 100.0, "energy": 8.0})
    report = {
        "trial_id": "a",
        "accuracy": 0.75,
        "feasible": 1.0,
        "done": True,
        "finetune_steps": 4,
        "cost/macs": 600.0,
        "rel/macs": 0.6,
        "cost/energy": 4.0,
        "config": {"profile": {"stem.0": 0.5}},
    }
    (directory / "trial_a" / "result.json").write_text(json.dumps(report) + "\n")
    (directory / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [[json.dumps({"trial_id": "a", "status": "TERMINATED"}), "{}"]]})
    )
    (directory / "frontier.json").write_text(json.dumps({"cost": "energy", "partial": False, "frontier": []}))
    return directory


def test_status_and_export_profiles_need_no_cost_module(tmp_path, capsys):
    directory = _experiment(tmp_path)
    assert cli.main(["status", str(directory)]) == 0
    out = capsys.readouterr()
    assert "(finished)" in out.out and "cannot import" not in out.out + out.err
    assert cli.main(["export-profiles", str(directory), "--top", "1", "--out", str(tmp_path / "lib")]) == 0
    (written,) = (tmp_path / "lib").glob("*.json")
    profile = json.loads(written.read_text())
    assert profile["accuracy"] == 0.75 and "energy<=5" in profile["budgets"]


def test_a_search_refuses_the_missing_module_in_one_line_before_any_write(tmp_path, capsys):
    path = tmp_path / "search.yaml"
    config = {**TINY, "storage_path": str(tmp_path / "results"), "tracking": {"enabled": False}, "budgets": BUDGETS}
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["search", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prunetune: error: cost 'mycost_not_here:energy': cannot import module 'mycost_not_here'"), (
        err
    )
    assert "\n" not in err and "PYTHONPATH" in err
    assert not (tmp_path / "results").exists()


def test_resuming_with_the_module_gone_is_one_line_before_ray_starts(tmp_path):
    import pytest

    from prunetune.budgets.errors import PrunetuneError
    from prunetune.search.run.prepare import from_manifest
    from prunetune.search.store.manifest import read_manifest

    with pytest.raises(PrunetuneError, match="cannot import module 'mycost_not_here'"):
        from_manifest(read_manifest(_experiment(tmp_path)))
