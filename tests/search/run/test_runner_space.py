"""prepare(): the profile space carries the exact cost model and the analytic budgets' limits,
and a budget no profile can meet is refused before anything is trained or written."""

from __future__ import annotations

import pytest

from prunetune.budgets.errors import BudgetError
from prunetune.search.config import parse_config
from prunetune.search.run.prepare import prepare
from tests.conftest import TINY


def test_unreachable_budget_is_refused_before_any_file_is_written(tmp_path):
    storage = tmp_path / "results"
    config = parse_config(
        {
            **TINY,
            "base": {**TINY["base"], "steps": 2},  # no checkpoint: prepare would train and save one
            "space": {"low": 0.5},
            "budgets": [{"cost": "params", "max": 0.05, "relative": True}],
            "storage_path": str(storage),
        }
    )
    with pytest.raises(
        BudgetError, match=r"params<=5%.*smallest ratio.*raise the budget's max to at least 0\.\d+.*space\.low"
    ):
        prepare(config, show_progress=False)
    assert not storage.exists()


def test_space_screens_with_the_analytic_budgets(tiny_config):
    tiny_config["prune"] = {"round_to": 2}
    tiny_config["budgets"] = [{"cost": "macs", "max": 0.5, "relative": True}, {"cost": "latency", "max": 100.0}]
    prepared = prepare(parse_config(tiny_config), show_progress=False)
    space = prepared.space
    assert space.round_to == 2 and space.cost_model is not None
    # Only the analytic budget becomes a limit; latency is measured by trials.
    assert space.limits == {"macs": pytest.approx(0.5 * prepared.dense_costs["macs"])}
    dense = space.cost_model.dense()
    assert dense["macs"] == prepared.dense_costs["macs"] and dense["params"] == prepared.dense_costs["params"]
    assert space.feasible(space.smallest()) and not space.feasible({})
